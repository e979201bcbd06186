//! Loom models of the TTL table (`membound::table::TtlTable`).
//!
//! Tables are tiny (capacity 1 or 2, so 2 or 3 slots in one segment) and amortized
//! sweeping is off unless a model is about sweeping, so every race is reached within a
//! few operations. Values carry their id on the heap (a torn or stale read shows as
//! a wrong string) and count their drops: every model checks that each value is
//! accounted for exactly once, as returned, reported to the hook, or still stored,
//! and that the table's `Drop` drops what is left exactly once.
//!
//! Two more models need the table's internals (to force a replacement into an earlier
//! slot of the chain, and a tombstone purged by another thread than the one that left
//! it) and live in `src/table/core/loom_models.rs`, run by
//! `.ci/run` with `cargo test --release --lib table::core::loom_models`.
#![cfg(loom)]

use std::time::Duration;

use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::sync::Arc;
use loom::thread;
use membound::capacity::SoftCapacity;
use membound::clock::ManualClock;
use membound::table::{EvictionCause, SeededHashBuilder, TableConfig, TtlTable};
use membound::OverflowPolicy;
use membound_loom_tests::model_bounded;

/// A value that knows its id, keeps it on the heap, and counts its drop.
struct Val {
    id: u32,
    text: String,
    drops: Arc<AtomicUsize>,
}

impl Val {
    fn new(id: u32, drops: &Arc<AtomicUsize>) -> Self {
        Self {
            id,
            text: id.to_string(),
            drops: drops.clone(),
        }
    }

    /// The id, after checking the value is whole.
    fn id(&self) -> u32 {
        assert_eq!(self.text, self.id.to_string(), "torn value");
        self.id
    }
}

impl Clone for Val {
    fn clone(&self) -> Self {
        // A clone is a new value; count it so drops balance.
        Self {
            id: self.id(),
            text: self.text.clone(),
            drops: Arc::new(AtomicUsize::new(0)),
        }
    }
}

impl Drop for Val {
    fn drop(&mut self) {
        self.drops.fetch_add(1, Ordering::Relaxed);
    }
}

/// Hook events as a bit set of ids and a count per cause.
#[derive(Default)]
struct Log {
    ids: AtomicUsize,
    expired: AtomicUsize,
    removed: AtomicUsize,
    replaced: AtomicUsize,
    evicted: AtomicUsize,
}

type Hook = Box<dyn Fn(&u32, &Val, EvictionCause) + Send + Sync>;
// The clock is shared through std's `Arc`: its own atomics are loom's already.
type Clk = std::sync::Arc<ManualClock>;
type Table = TtlTable<u32, Val, Clk, SeededHashBuilder, Hook>;

fn table(capacity: usize, policy: OverflowPolicy, sweep: usize) -> (Arc<Table>, Clk, Arc<Log>) {
    let clock = Clk::new(ManualClock::default());
    let log = Arc::new(Log::default());
    let seen = log.clone();
    let hook: Hook = Box::new(move |_, v, cause| {
        let bit = 1 << v.id();
        assert_eq!(
            seen.ids.fetch_or(bit, Ordering::Relaxed) & bit,
            0,
            "reported twice"
        );
        match cause {
            EvictionCause::Expired => &seen.expired,
            EvictionCause::Removed => &seen.removed,
            EvictionCause::Replaced => &seen.replaced,
            _ => &seen.evicted,
        }
        .fetch_add(1, Ordering::Relaxed);
    });
    let config = TableConfig::new(capacity, Duration::from_millis(10))
        .with_policy(policy)
        .with_amortized_sweep(sweep);
    let table =
        TtlTable::with_parts(config, clock.clone(), SeededHashBuilder::with_seed(1), hook).unwrap();
    (Arc::new(table), clock, log)
}

fn spawn<T: Send + 'static>(
    t: &Arc<Table>,
    f: impl FnOnce(&Table) -> T + Send + 'static,
) -> thread::JoinHandle<T> {
    let t = t.clone();
    thread::spawn(move || f(&t))
}

/// Drops the table (the last `Arc`) and checks every value was dropped exactly once.
fn drop_all(table: Arc<Table>, drops: &Arc<AtomicUsize>, created: usize) {
    drop(Arc::try_unwrap(table).ok().expect("threads joined"));
    assert_eq!(drops.load(Ordering::Relaxed), created, "drops");
}

#[test]
fn get_racing_insert_and_remove_sees_whole_values_and_drops_each_once() {
    model_bounded(3, || {
        let drops = Arc::new(AtomicUsize::new(0));
        let (t, _, log) = table(2, OverflowPolicy::Reject, 0);
        let inserter = {
            let drops = drops.clone();
            spawn(&t, move |t| t.insert(1, Val::new(1, &drops)).is_ok())
        };
        let remover = spawn(&t, |t| t.remove(&1).map(|v| v.id()));
        let got = t.get_with(&1, Val::id);
        assert!(got.is_none() || got == Some(1));
        assert!(inserter.join().unwrap());
        let removed = remover.join().unwrap();
        // The value is either still stored or was removed (and reported) once.
        assert_eq!(t.len(), usize::from(removed.is_none()));
        assert_eq!(
            log.removed.load(Ordering::Relaxed),
            usize::from(removed.is_some())
        );
        drop_all(t, &drops, 1);
    });
}

#[test]
fn get_racing_replace_never_misses_the_key() {
    model_bounded(3, || {
        let drops = Arc::new(AtomicUsize::new(0));
        let (t, _, log) = table(2, OverflowPolicy::Reject, 0);
        t.insert(1, Val::new(1, &drops)).unwrap();
        let replacer = {
            let drops = drops.clone();
            spawn(&t, move |t| {
                t.insert(1, Val::new(2, &drops)).unwrap().map(|v| v.id())
            })
        };
        // Present before, during and after: a lookup sees the old or the new value.
        let got = t.get_with(&1, Val::id);
        assert!(got == Some(1) || got == Some(2), "{got:?}");
        let after_first = t.get_with(&1, Val::id);
        assert_eq!(replacer.join().unwrap(), Some(1));
        assert_eq!(t.get_with(&1, Val::id), Some(2));
        // Reads are monotonic: once the new value was seen, never the old one.
        if got == Some(2) {
            assert_eq!(after_first, Some(2));
        }
        assert_eq!(log.replaced.load(Ordering::Relaxed), 1);
        drop_all(t, &drops, 2);
    });
}

#[test]
fn replace_racing_remove_accounts_for_both_values_once() {
    model_bounded(3, || {
        let drops = Arc::new(AtomicUsize::new(0));
        let (t, _, log) = table(2, OverflowPolicy::Reject, 0);
        t.insert(1, Val::new(1, &drops)).unwrap();
        let replacer = {
            let drops = drops.clone();
            spawn(&t, move |t| {
                t.insert(1, Val::new(2, &drops)).unwrap().map(|v| v.id())
            })
        };
        let removed = t.remove(&1).map(|v| v.id());
        let replaced = replacer.join().unwrap();
        match (replaced, removed) {
            // Remove first: the insert is new and value 2 stays.
            (None, Some(1)) => assert_eq!(t.get_with(&1, Val::id), Some(2)),
            // Replace first: remove takes the new value.
            (Some(1), Some(2)) => assert!(t.is_empty()),
            other => panic!("impossible outcome {other:?}"),
        }
        let events = log.removed.load(Ordering::Relaxed) + log.replaced.load(Ordering::Relaxed);
        assert_eq!(events + t.len(), 2);
        drop_all(t, &drops, 2);
    });
}

#[test]
fn sweep_racing_touch_and_get_removes_only_expired_entries() {
    model_bounded(3, || {
        let drops = Arc::new(AtomicUsize::new(0));
        let (t, clock, log) = table(2, OverflowPolicy::Reject, 0);
        t.insert(1, Val::new(1, &drops)).unwrap(); // expires at 10
        clock.advance(5);
        // The sweeper works as of tick 10 (entry 1 expired); the toucher's clock says
        // 5 (entry 1 live), so the two race on the claim.
        let sweeper = spawn(&t, |t| t.sweep(10, 8).removed);
        let toucher = spawn(&t, |t| t.touch(&1));
        let got = t.get_with(&1, Val::id);
        assert!(got.is_none() || got == Some(1));
        let removed = sweeper.join().unwrap();
        let touched = toucher.join().unwrap();
        if touched && removed == 1 {
            panic!("a touched entry was swept");
        }
        assert_eq!(removed + t.len(), 1);
        assert_eq!(log.expired.load(Ordering::Relaxed), removed);
        if removed == 0 {
            // Extended by the touch to 5 + 10.
            assert!(touched);
            assert_eq!(t.sweep(14, 8).removed, 0);
        }
        drop_all(t, &drops, 1);
    });
}

#[test]
fn sweep_racing_insert_of_an_expired_key_reports_it_once() {
    model_bounded(3, || {
        let drops = Arc::new(AtomicUsize::new(0));
        let (t, clock, log) = table(1, OverflowPolicy::Reject, 0);
        t.insert(1, Val::new(1, &drops)).unwrap();
        clock.advance(10); // value 1 expired
        let sweeper = spawn(&t, |t| t.sweep(10, 8).removed);
        // The insert finds the key expired (and removes it itself), or finds it
        // claimed by the sweeper. In that case, until the sweeper has vacated it, the
        // old entry still counts against capacity 1 and the insert may be refused:
        // `Full` is then only possible because the sweeper removed the entry.
        let first = t.insert(1, Val::new(2, &drops)).map(|old| old.is_none());
        let removed = sweeper.join().unwrap();
        assert!(removed <= 1);
        match first {
            Ok(true) => {}
            Err(e) => {
                assert_eq!(removed, 1, "refused while the expired entry stayed");
                let (_, v) = e.into_inner();
                assert!(t.insert(1, v).unwrap().is_none());
            }
            Ok(false) => panic!("an expired value was returned as replaced"),
        }
        assert_eq!(
            log.expired.load(Ordering::Relaxed),
            1,
            "value 1 reported once"
        );
        assert_eq!(t.get_with(&1, Val::id), Some(2));
        drop_all(t, &drops, 2);
    });
}

#[test]
fn soft_capacity_change_racing_insert_keeps_every_value_accounted() {
    model_bounded(2, || {
        let drops = Arc::new(AtomicUsize::new(0));
        let (t, _, log) = table(2, OverflowPolicy::DropOldest, 0);
        t.insert(1, Val::new(1, &drops)).unwrap();
        t.insert(2, Val::new(2, &drops)).unwrap();
        let shrinker = spawn(&t, |t| t.set_capacity(1).unwrap());
        let inserted = t.insert(3, Val::new(3, &drops)).is_ok();
        shrinker.join().unwrap();
        let evicted = log.evicted.load(Ordering::Relaxed);
        assert_eq!(t.len() + evicted, 2 + usize::from(inserted));
        // Whatever the interleaving, a sweep brings the table to the new capacity.
        t.sweep(0, 8);
        assert!(t.len() <= 1);
        drop_all(t, &drops, 3);
    });
}
