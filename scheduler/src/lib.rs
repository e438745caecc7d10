//! grove-scheduler
