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

/// Runs `f` under loom with the environment's preemption bound, at most `max`.
///
/// Models with three threads spinning on one slot explode combinatorially beyond a
/// small bound, so those cap it; the two-thread models take `LOOM_MAX_PREEMPTIONS`
/// as given.
#[cfg(loom)]
pub fn model_bounded<F>(max: usize, f: F)
where
    F: Fn() + Sync + Send + 'static,
{
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(builder.preemption_bound.unwrap_or(max).min(max));
    builder.max_branches = builder.max_branches.max(50_000);
    builder.check(f);
}

/// [`model_bounded`] for models in which no thread waits: switches off the
/// loom-only `SeqCst` fences of the notify path (`membound::loom_assume_no_waiters`),
/// which loom would let synchronise everything and so hide a missing Release or
/// Acquire elsewhere.
#[cfg(loom)]
pub fn model_without_waiters<F>(max: usize, f: F)
where
    F: Fn() + Sync + Send + 'static,
{
    model_bounded(max, move || {
        membound::loom_assume_no_waiters(true);
        f();
    });
}

/// Records `item` (a distinct power of two) in `seen`; panics if it was already
/// there. A duplicate shows up as a bit seen twice, a loss as a bit never seen.
pub fn account(seen: &mut u32, item: u32) {
    assert_eq!(*seen & item, 0, "item {item} delivered twice");
    *seen |= item;
}
