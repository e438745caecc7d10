//! grove-reactor
