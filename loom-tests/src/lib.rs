//! Loom models of grove's lock-free protocols live in `tests/`; this crate has no code of its own.

#![forbid(unsafe_code)]
