//! Interleavings forced step by step on OS threads, for ThreadSanitizer (the gate in
//! `.ci/run` runs them): each test drives the table's internals into one race window
//! and checks it got there, so a missing happens-before edge is reported on every run,
//! not by luck. The steps are ordered by Relaxed atomics and polling, which give
//! TSan no edge of their own.

use core::hash::BuildHasher;
use core::time::Duration;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Barrier;

use super::super::{NoHook, TableConfig};
use super::slot::{kind, LockGuard, EMPTY, READY, TOMB};
use super::{SeededHashBuilder, TtlTable};
use crate::clock::ManualClock;

#[test]
fn move_out_after_a_reader_happens_before_a_refill_by_another_thread() {
    // Capacity 2: one segment of 3 slots. `a` in slot 0, `c` in slot 1.
    let hasher = SeededHashBuilder::with_seed(1);
    let home = |k: u32| ((u64::from(hasher.hash_one(k) as u32) * 3) >> 32) as usize;
    let a = (0..).find(|&k| home(k) == 0).unwrap();
    let c = (0..).find(|&k| home(k) == 1).unwrap();
    let table = TtlTable::with_parts(
        TableConfig::new(2, Duration::from_secs(1)).with_amortized_sweep(0),
        ManualClock::default(),
        SeededHashBuilder::with_seed(1),
        NoHook,
    )
    .unwrap();
    table.insert(a, 1u32).unwrap();
    table.insert(c, 10).unwrap();
    let kinds = |t: &TtlTable<u32, u32, ManualClock, SeededHashBuilder>| {
        [0, 1, 2].map(|i| kind(t.state(i).load(Relaxed)))
    };
    assert_eq!(kinds(&table), [READY, READY, EMPTY]);
    let (entered, leave) = (Barrier::new(2), Barrier::new(2));
    let removed = AtomicBool::new(false);
    std::thread::scope(|s| {
        let reader = s.spawn(|| {
            table.get_with(&a, |v| {
                entered.wait();
                leave.wait();
                *v
            })
        });
        entered.wait();
        // The remover dooms `a` (counted under the lock, in the same critical
        // section), then waits for the reader with no lock held.
        let remover = s.spawn(|| {
            let v = table.remove(&a);
            removed.store(true, Relaxed);
            v
        });
        while table.metrics().removed == 0 {
            std::thread::yield_now();
        }
        // Hold the segment lock while the remover moves the entry out, so that it
        // finds the lock taken and leaves its tombstone to a later purge.
        let lock = LockGuard::lock(&table.segment(0).lock);
        leave.wait();
        while !removed.load(Relaxed) {
            std::thread::yield_now();
        }
        drop(lock);
        assert_eq!(kinds(&table), [TOMB, READY, EMPTY]);
        // Removing `c` purges slot 1 and, walking back, `a`'s tombstone; then `a`
        // is stored again in slot 0. Nothing but the purge's load of the tombstone
        // orders the remover's move-out before this fill.
        assert_eq!(table.remove(&c), Some(10));
        assert_eq!(kinds(&table), [EMPTY, EMPTY, EMPTY]);
        assert_eq!(table.insert(a, 2), Ok(None));
        assert_eq!(kinds(&table), [READY, EMPTY, EMPTY]);
        assert_eq!(reader.join().unwrap(), Some(1));
        assert_eq!(remover.join().unwrap(), Some(1));
    });
    assert_eq!(table.get(&a), Some(2));
    assert_eq!(table.len(), 1);
}
