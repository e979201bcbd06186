//! Loom models of membound's lock-free structures live in `tests/`.
//!
//! Run them with
//!
//! ```text
//! cd loom-tests && RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=4 cargo test --release --test ring
//! ```
//!
//! Each test is named after the race it checks. Built without `--cfg loom` the crate
//! refuses to compile, so a run that forgot the flag cannot pass by testing nothing.

#[cfg(not(loom))]
compile_error!("build the loom models with RUSTFLAGS=\"--cfg loom\"");
