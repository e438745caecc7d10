//! The public face of a runtime: [`Builder`] configures one and starts its threads
//! (`builder`), [`Runtime`] owns them and shuts them down, [`Handle`] spawns onto it from
//! any thread (`handle`).
//!
//! The state they share lives a layer down (`shared`); the hub loop and the greenlets'
//! switches in `worker`. See "Shutdown" in `worker` for the steps a drop sets off.

mod builder;
mod handle;

pub use self::builder::Builder;
pub use self::handle::Runtime;
pub use crate::shared::{
    Handle, StackMetrics, WorkerMetrics, DEFAULT_SHUTDOWN_GRACE, DEFAULT_STACK_SIZE, EXIT_MARGIN,
    MAX_STACK_SIZE, MIN_STACK_SIZE,
};
