//! grove-primitives
