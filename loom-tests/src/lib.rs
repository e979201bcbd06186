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

/// Live instances per id, for models that check that every value (and every clone
/// of it) is dropped exactly once. Plain std atomics: the ledger only observes, it
/// takes no part in the synchronization being modelled, and is read after `join`.
#[cfg(loom)]
pub type Ledger = std::sync::Arc<Vec<std::sync::atomic::AtomicI64>>;

/// A ledger for ids `0..ids`.
#[cfg(loom)]
pub fn ledger(ids: usize) -> Ledger {
    std::sync::Arc::new(
        (0..ids)
            .map(|_| std::sync::atomic::AtomicI64::new(0))
            .collect(),
    )
}

/// Panics unless no instance of any id is alive.
#[cfg(loom)]
pub fn assert_all_dropped(ledger: &Ledger) {
    for (id, live) in ledger.iter().enumerate() {
        let live = live.load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!(live, 0, "value {id}: {live} instances alive");
    }
}

/// A value whose live instances are counted in a [`Ledger`]; dropping more than
/// were made panics at once.
#[cfg(loom)]
pub struct Tracked {
    /// Its id in the ledger.
    pub id: usize,
    ledger: Ledger,
}

#[cfg(loom)]
impl Tracked {
    /// A new instance of `id`.
    pub fn new(ledger: &Ledger, id: usize) -> Self {
        ledger[id].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Self {
            id,
            ledger: ledger.clone(),
        }
    }
}

#[cfg(loom)]
impl Clone for Tracked {
    fn clone(&self) -> Self {
        Self::new(&self.ledger, self.id)
    }
}

#[cfg(loom)]
impl Drop for Tracked {
    fn drop(&mut self) {
        let before = self.ledger[self.id].fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        assert!(before > 0, "value {} dropped more often than made", self.id);
    }
}
