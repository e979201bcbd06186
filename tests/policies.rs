//! Pluggable policies: an `OverflowRule` consulted by `Ring::push_with` when the ring
//! is full, and a `SweepPolicy` deciding per entry in `TtlTable::sweep_with`.
#![cfg(feature = "std")]

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::thread;
use std::time::Duration;

use membound::clock::{Clock, ManualClock};
use membound::policy::OverflowRule;
use membound::ring::{PushError, Pushed, Ring, RingConfig};
use membound::table::{
    EntryView, EvictionCause, Expired, SeededHashBuilder, Sweep, SweepPolicy, SweepView,
    TableConfig, TtlTable,
};
use membound::OverflowPolicy;

#[path = "support/drop_ledger.rs"]
mod drop_ledger;
use drop_ledger::Ledger;

/// A full ring of two under `Reject`, holding 1 and 2.
fn full_ring(policy: OverflowPolicy) -> Ring<u32> {
    let ring = Ring::with_config(RingConfig::new(2).with_policy(policy)).unwrap();
    ring.try_push(1).unwrap();
    ring.try_push(2).unwrap();
    ring
}

fn contents(ring: &Ring<u32>) -> Vec<u32> {
    ring.drain().collect()
}

#[test]
fn a_built_in_policy_as_a_rule_does_what_the_configured_policy_does() {
    let policies = [
        OverflowPolicy::DropOldest,
        OverflowPolicy::DropNewest,
        OverflowPolicy::Reject,
        OverflowPolicy::BlockTimeout(Duration::from_millis(1)),
    ];
    for policy in policies {
        // The same push on a full ring: configured, and chosen by a rule on a ring
        // configured otherwise.
        let configured = full_ring(policy);
        let ruled = full_ring(OverflowPolicy::Reject);
        let a = configured.push(3);
        let b = ruled.push_with(3, &policy);
        assert_eq!(a, b, "{policy:?}");
        let (ma, mb) = (configured.metrics(), ruled.metrics());
        assert_eq!(
            (
                ma.dropped_oldest,
                ma.dropped_newest,
                ma.rejected,
                ma.timeouts
            ),
            (
                mb.dropped_oldest,
                mb.dropped_newest,
                mb.rejected,
                mb.timeouts
            ),
            "{policy:?}"
        );
        assert_eq!(contents(&configured), contents(&ruled), "{policy:?}");
    }
}

#[test]
fn the_rule_is_asked_only_when_full_and_sees_the_item() {
    let asked = Cell::new(Vec::new());
    let rule = |item: &u32| {
        let mut seen = asked.take();
        seen.push(*item);
        asked.set(seen);
        if *item % 2 == 0 {
            OverflowPolicy::DropOldest
        } else {
            OverflowPolicy::Reject
        }
    };
    let ring =
        Ring::with_config(RingConfig::new(2).with_policy(OverflowPolicy::DropNewest)).unwrap();
    assert_eq!(ring.push_with(1, &rule), Ok(Pushed::Stored));
    assert_eq!(ring.push_with(2, &rule), Ok(Pushed::Stored));
    assert_eq!(asked.take(), Vec::<u32>::new());
    assert_eq!(ring.push_with(3, &rule), Err(PushError::Full(3)));
    assert_eq!(ring.push_with(4, &rule), Ok(Pushed::DroppedOldest));
    assert_eq!(asked.take(), [3, 4]);
    assert_eq!(contents(&ring), [2, 4]);
    // A growing ring grows first; the rule decides only at its limit.
    let growing = Ring::with_config(
        RingConfig::new(1)
            .with_growth(2)
            .with_policy(OverflowPolicy::Reject),
    )
    .unwrap();
    assert_eq!(growing.push_with(10, &rule), Ok(Pushed::Stored));
    assert_eq!(growing.push_with(12, &rule), Ok(Pushed::Grew));
    assert_eq!(asked.take(), Vec::<u32>::new());
    assert_eq!(growing.push_with(14, &rule), Ok(Pushed::DroppedOldest));
    assert_eq!(asked.take(), [14]);
    // A closed ring refuses before any rule is asked.
    ring.close();
    assert_eq!(ring.push_with(6, &rule), Err(PushError::Closed(6)));
    assert_eq!(asked.take(), Vec::<u32>::new());
    assert_eq!(
        OverflowPolicy::Reject.on_full(&0u32),
        OverflowPolicy::Reject
    );
}

/// Keys and causes the hook saw.
type Seen = Arc<Mutex<Vec<(u32, EvictionCause)>>>;

/// A table of `capacity` with a 10 s TTL on a manual clock, reporting every
/// eviction's cause.
#[allow(clippy::type_complexity)]
fn table(
    clock: &ManualClock,
    capacity: usize,
) -> (
    TtlTable<u32, u32, &ManualClock, SeededHashBuilder, impl Fn(&u32, &u32, EvictionCause)>,
    Seen,
) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let hook = {
        let seen = seen.clone();
        move |k: &u32, _: &u32, cause| seen.lock().unwrap().push((*k, cause))
    };
    let config = TableConfig::new(capacity, Duration::from_secs(10)).with_amortized_sweep(0);
    let table = TtlTable::with_parts(config, clock, SeededHashBuilder::with_seed(5), hook).unwrap();
    (table, seen)
}

#[test]
fn the_built_in_cleanup_as_a_policy_removes_what_expired_and_nothing_else() {
    let clock = ManualClock::default(); // 1 ms ticks
    let (t, seen) = table(&clock, 64);
    for k in 0..10 {
        t.insert_with_ttl(k, k, Duration::from_secs(u64::from(k) + 1))
            .unwrap();
    }
    clock.advance_by(Duration::from_millis(5_500)); // keys 0..=4 expired
    let stats = t.sweep_with(clock.now(), usize::MAX, &mut Expired);
    assert_eq!((stats.removed, stats.touched, t.len()), (5, 0, 5));
    let mut gone: Vec<_> = seen.lock().unwrap().drain(..).collect();
    gone.sort_unstable_by_key(|(k, _)| *k);
    assert_eq!(
        gone,
        (0..5)
            .map(|k| (k, EvictionCause::Expired))
            .collect::<Vec<_>>()
    );
    assert!((5..10).all(|k| t.contains(&k)));
}

#[test]
fn a_policy_keeps_expires_early_or_touches_each_entry() {
    let clock = ManualClock::default();
    let (t, seen) = table(&clock, 64);
    for k in 0..9 {
        t.insert(k, k * 10).unwrap();
    }
    let mut views = Vec::new();
    let mut policy = |e: &EntryView<'_, u32, u32>| {
        assert_eq!(*e.value, *e.key * 10);
        assert!(!e.is_expired() && e.remaining() == 10_000);
        match e.key % 3 {
            0 => Sweep::Keep,
            1 => Sweep::Expire,
            _ => Sweep::Touch(Duration::from_secs(60)),
        }
    };
    struct Recording<'a, P>(&'a mut Vec<SweepView>, P);
    impl<P: FnMut(&EntryView<'_, u32, u32>) -> Sweep> SweepPolicy<u32, u32> for Recording<'_, P> {
        fn begin(&mut self, view: SweepView) {
            self.0.push(view);
        }
        fn decide(&mut self, entry: &EntryView<'_, u32, u32>) -> Sweep {
            (self.1)(entry)
        }
    }
    let stats = t.sweep_with(
        clock.now(),
        usize::MAX,
        &mut Recording(&mut views, &mut policy),
    );
    assert_eq!((stats.removed, stats.touched), (3, 3));
    assert_eq!(views.len(), 1);
    assert_eq!(
        (views[0].len, views[0].default_ttl, views[0].now),
        (9, 10_000, 0)
    );
    // Removed early: reported as evicted, not expired.
    let mut gone: Vec<_> = seen.lock().unwrap().drain(..).collect();
    gone.sort_unstable_by_key(|(k, _)| *k);
    assert_eq!(gone, [1, 4, 7].map(|k| (k, EvictionCause::Evicted)));
    // 30 s later: the kept entries have expired, the touched ones (60 s) live.
    clock.advance_by(Duration::from_secs(30));
    let live: Vec<u32> = (0..9).filter(|k| t.contains(k)).collect();
    assert_eq!(live, [2, 5, 8]);
}

#[test]
fn a_panicking_policy_leaves_the_entry_as_it_was() {
    let clock = ManualClock::default();
    let (t, _seen) = table(&clock, 16);
    t.insert(1, 1).unwrap();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        t.sweep_with(clock.now(), usize::MAX, &mut |_: &EntryView<
            '_,
            u32,
            u32,
        >|
         -> Sweep {
            panic!("policy bug")
        })
    }));
    assert!(result.is_err());
    // The entry is readable, replaceable and removable again.
    assert_eq!(t.get(&1), Some(1));
    assert_eq!(t.insert(1, 2).unwrap(), Some(1));
    assert_eq!(t.remove(&1), Some(2));
}

/// Sweeps that expire and touch entries race readers and writers on other threads:
/// every value is dropped exactly once, and a reader only ever sees the value its key
/// was given.
#[test]
fn policy_sweeps_racing_readers_and_writers_drop_every_value_exactly_once() {
    const KEYS: u32 = 64;
    const ROUNDS: usize = 300;
    let ledger = Ledger::new(KEYS as usize * ROUNDS * 4);
    let clock = Arc::new(ManualClock::default());
    let config = TableConfig::new(KEYS as usize, Duration::from_secs(5)).with_amortized_sweep(0);
    let t = Arc::new(
        TtlTable::with_parts(
            config,
            clock.clone(),
            SeededHashBuilder::with_seed(9),
            membound::table::NoHook,
        )
        .unwrap(),
    );
    let barrier = Arc::new(Barrier::new(3));
    let decided = Arc::new(AtomicUsize::new(0));
    let writer = {
        let (t, ledger, barrier) = (t.clone(), ledger.clone(), barrier.clone());
        thread::spawn(move || {
            barrier.wait();
            for round in 0..ROUNDS {
                for k in 0..KEYS {
                    let _ = t.insert(k, (k, ledger.issue()));
                }
                if round % 7 == 0 {
                    for k in (0..KEYS).step_by(5) {
                        drop(t.remove(&k));
                    }
                }
            }
        })
    };
    let reader = {
        let (t, barrier) = (t.clone(), barrier.clone());
        thread::spawn(move || {
            barrier.wait();
            for _ in 0..ROUNDS * 20 {
                for k in 0..KEYS {
                    if let Some(owner) = t.get_with(&k, |v| v.0) {
                        assert_eq!(owner, k);
                    }
                }
            }
        })
    };
    barrier.wait();
    // Sweep for as long as the writer and the reader run, and at least a while.
    let mut i = 0usize;
    while i < ROUNDS * 4 || !(writer.is_finished() && reader.is_finished()) {
        i += 1;
        let decided = decided.clone();
        let mut policy = move |e: &EntryView<'_, u32, (u32, drop_ledger::Tracked)>| {
            decided.fetch_add(1, Ordering::Relaxed);
            assert_eq!(e.value.0, *e.key);
            match (e.key + i as u32) % 3 {
                0 => Sweep::Expire,
                1 => Sweep::Touch(Duration::from_secs(1)),
                _ => Sweep::Keep,
            }
        };
        t.sweep_with(clock.now(), 32, &mut policy);
        if i % 16 == 0 {
            clock.advance_by(Duration::from_millis(300));
        }
    }
    writer.join().unwrap();
    reader.join().unwrap();
    assert!(decided.load(Ordering::Relaxed) > 0);
    assert_eq!(Arc::strong_count(&t), 1);
    drop(t);
    ledger.assert_all_dropped();
}
