//! Loom models that need the table's internals (where keys land in the chain): a
//! replacement that lands *before* the old slot (the case the `moves` count exists
//! for), which a racing lookup must never miss; and a tombstone that a remover left
//! after waiting for a reader, purged by another lock holder and filled again. Run with
//! `RUSTFLAGS="--cfg loom" cargo test --release --lib table::core::loom_models`.

use core::hash::BuildHasher;
use core::time::Duration;

use loom::sync::Arc;

use super::super::{NoHook, TableConfig};
use super::{SeededHashBuilder, Storage, TtlTable};
use crate::clock::ManualClock;

type Table = TtlTable<u32, u32, std::sync::Arc<ManualClock>, SeededHashBuilder, NoHook>;

/// A table of capacity 2 (one segment of 3 slots) hashed with seed 1, on a clock
/// that never moves, with no amortized sweeps: the slots a model's keys land in
/// are fixed.
fn two_entry_table() -> Arc<Table> {
    Arc::new(
        TtlTable::with_parts(
            TableConfig::new(2, Duration::from_secs(1)).with_amortized_sweep(0),
            std::sync::Arc::new(ManualClock::default()),
            SeededHashBuilder::with_seed(1),
            NoHook,
        )
        .unwrap(),
    )
}

#[test]
fn lookup_racing_a_replacement_into_an_earlier_slot_never_misses() {
    // Capacity 2: one segment of 3 slots. Find keys `a` and `x` with the same home
    // slot, so that `a` then `x` fill two consecutive slots of one chain.
    let hasher = SeededHashBuilder::with_seed(1);
    let home = |k: u32| ((u64::from(hasher.hash_one(k) as u32) * 3) >> 32) as usize;
    let a = 0u32;
    let x = (1..).find(|&k| home(k) == home(a)).unwrap();
    loom::model(move || {
        let table = two_entry_table();
        table.insert(a, 1u32).unwrap();
        table.insert(x, 10).unwrap();
        // `a`'s slot becomes a tombstone before `x` in its chain (not purgeable:
        // `x`'s chain passes it), so replacing `x` fills it: an earlier slot.
        assert_eq!(table.remove(&a), Some(1));
        let reader = {
            let table = table.clone();
            loom::thread::spawn(move || table.get(&x))
        };
        assert_eq!(table.insert(x, 20).unwrap(), Some(10));
        let seen = reader.join().unwrap();
        assert!(seen == Some(10) || seen == Some(20), "{seen:?}");
        let moves = table.storage.segments()[0]
            .moves
            .load(super::Ordering::Relaxed);
        assert_eq!(moves, 1, "the replacement went to an earlier slot");
    });
}

/// A remover that waited for a reader moves the entry out with no lock held and
/// finds the lock taken, so another lock holder purges its tombstone to `EMPTY`;
/// an insert then fills that slot. The move-out must happen before the fill: the
/// purge's load of the tombstone is what carries it (see `purge`).
#[test]
fn move_out_after_a_reader_happens_before_the_next_fill_of_the_slot() {
    // Capacity 2: one segment of 3 slots. `a` lives in slot 0, `c` in slot 1, slot
    // 2 is empty, so removing `c` purges slot 1 and, if `a` is a tombstone by then,
    // slot 0 too.
    let hasher = SeededHashBuilder::with_seed(1);
    let home = |k: u32| ((u64::from(hasher.hash_one(k) as u32) * 3) >> 32) as usize;
    let a = (0..).find(|&k| home(k) == 0).unwrap();
    let c = (0..).find(|&k| home(k) == 1).unwrap();
    loom::model(move || {
        let table = two_entry_table();
        table.insert(a, 1u32).unwrap();
        table.insert(c, 10).unwrap();
        let remover = {
            let table = table.clone();
            loom::thread::spawn(move || table.remove(&a))
        };
        let inserter = {
            let table = table.clone();
            loom::thread::spawn(move || {
                assert_eq!(table.remove(&c), Some(10));
                table.insert(a, 2).unwrap()
            })
        };
        let seen = table.get(&a);
        assert!(matches!(seen, None | Some(1) | Some(2)), "{seen:?}");
        let removed = remover.join().unwrap();
        let replaced = inserter.join().unwrap();
        match (removed, replaced) {
            // The remove came first: `a` was new again for the insert.
            (Some(1), None) => assert_eq!(table.get(&a), Some(2)),
            // The insert replaced `a`, then the remove took the new value.
            (Some(2), Some(1)) => assert_eq!(table.get(&a), None),
            other => panic!("{other:?}"),
        }
    });
}

/// A policy sweep claims an entry, touches it and puts it back, while a reader
/// looks it up and a writer replaces it: the reader sees the old or the new value,
/// never a torn or foreign one (or, if every probe met the claim, none: a lookup
/// racing a cleaner's claim may miss, as documented); the policy only ever sees a
/// whole entry; and afterwards the table holds exactly the new value, whose deadline
/// is the writer's or the touch's.
#[test]
fn a_policy_touch_racing_a_reader_and_a_replacement_loses_nothing() {
    use crate::table::{EntryView, Sweep};
    loom::model(|| {
        let table = two_entry_table();
        table.insert(7, 1u32).unwrap();
        let reader = {
            let table = table.clone();
            loom::thread::spawn(move || table.get(&7))
        };
        let sweeper = {
            let table = table.clone();
            loom::thread::spawn(move || {
                let mut touch = |e: &EntryView<'_, u32, u32>| {
                    assert!(*e.value == 1 || *e.value == 2, "{}", e.value);
                    Sweep::Touch(Duration::from_secs(5))
                };
                table.sweep_with(0, usize::MAX, &mut touch).touched
            })
        };
        let old = table.insert(7, 2).unwrap();
        assert_eq!(old, Some(1));
        let seen = reader.join().unwrap();
        assert!(matches!(seen, None | Some(1) | Some(2)), "{seen:?}");
        assert!(sweeper.join().unwrap() <= 1);
        assert_eq!(table.get(&7), Some(2));
        assert_eq!(table.len(), 1);
    });
}
