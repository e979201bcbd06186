//! Loom models of membound's lock-free structures live in `tests/`.
//!
//! Run them with
//!
//! ```text
//! cd loom-tests && RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=3 cargo test --release
//! ```
//!
//! Each test is named after the race it checks. Built without `--cfg loom` the crate
//! compiles to nothing, so a plain `cargo test` here is harmless.
#![cfg_attr(not(loom), allow(unused))]
