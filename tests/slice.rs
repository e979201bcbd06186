//! `SnapshotVec`: every write against a `Vec` model, snapshots that never change,
//! callbacks that re-enter the vector, removed elements that are really freed,
//! concurrent writers that lose no update, and reads that allocate nothing.

#[path = "support/counting_alloc.rs"]
mod counting_alloc;
#[path = "support/drop_ledger.rs"]
mod drop_ledger;

use std::sync::{Arc, Barrier};
use std::thread;

use counting_alloc::{allocations, Counting};
use drop_ledger::{Ledger, Tracked};
use membound::slice::{Snapshot, SnapshotVec};
use proptest::prelude::*;

#[global_allocator]
static GLOBAL: Counting = Counting;

#[derive(Clone, Debug)]
enum Op {
    Push(u8),
    PushWithin(u8, usize),
    Extend(Vec<u8>),
    RemoveAt(usize),
    RemoveFirst(u8),
    Retain(u8),
    Clear,
    Store(Vec<u8>),
    Sort,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => any::<u8>().prop_map(Op::Push),
        2 => (any::<u8>(), 0usize..12).prop_map(|(x, max)| Op::PushWithin(x, max)),
        1 => prop::collection::vec(any::<u8>(), 0..4).prop_map(Op::Extend),
        2 => (0usize..12).prop_map(Op::RemoveAt),
        2 => any::<u8>().prop_map(|x| Op::RemoveFirst(x % 8)),
        1 => (1u8..5).prop_map(Op::Retain),
        1 => Just(Op::Clear),
        1 => prop::collection::vec(any::<u8>(), 0..4).prop_map(Op::Store),
        1 => Just(Op::Sort),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Every write gives the `Vec` model's answer; the snapshot taken before each
    /// write still shows the contents it was taken from; metrics count the writes
    /// that changed something.
    #[test]
    fn writes_match_a_vec(ops in prop::collection::vec(op(), 0..60)) {
        let v = SnapshotVec::new();
        let mut model: Vec<u8> = Vec::new();
        let mut writes = 0;
        for op in ops {
            let before = v.load();
            let model_before = model.clone();
            let changed = match op {
                Op::Push(x) => {
                    v.push(x);
                    model.push(x);
                    true
                }
                Op::PushWithin(x, max) => {
                    let fits = model.len() < max;
                    if fits {
                        model.push(x);
                        prop_assert_eq!(v.push_within(x, max), Ok(()));
                    } else {
                        prop_assert_eq!(v.push_within(x, max), Err(x));
                    }
                    fits
                }
                Op::Extend(xs) => {
                    v.extend(xs.clone());
                    model.extend(&xs);
                    !xs.is_empty()
                }
                Op::RemoveAt(i) => {
                    let expected = (i < model.len()).then(|| model.remove(i));
                    prop_assert_eq!(v.remove_at(i), expected);
                    expected.is_some()
                }
                Op::RemoveFirst(x) => {
                    let expected = model.iter().position(|y| y % 8 == x).map(|i| model.remove(i));
                    prop_assert_eq!(v.remove_first(|y| y % 8 == x), expected);
                    expected.is_some()
                }
                Op::Retain(m) => {
                    let len = model.len();
                    model.retain(|y| y % m == 0);
                    prop_assert_eq!(v.retain(|y| y % m == 0), len - model.len());
                    len != model.len()
                }
                Op::Clear => {
                    let len = model.len();
                    model.clear();
                    prop_assert_eq!(v.clear(), len);
                    len > 0
                }
                Op::Store(xs) => {
                    let old = v.store(xs.clone());
                    prop_assert_eq!(old.as_slice(), &model[..]);
                    model = xs;
                    true
                }
                Op::Sort => {
                    v.update(|items| {
                        let mut next = items.to_vec();
                        next.sort_unstable();
                        next
                    });
                    model.sort_unstable();
                    true
                }
            };
            writes += u64::from(changed);
            prop_assert_eq!(before.as_slice(), &model_before[..]);
            let now = v.load();
            prop_assert_eq!(now.as_slice(), &model[..]);
            prop_assert_eq!(v.len(), model.len());
            let m = v.metrics();
            prop_assert_eq!((m.len, m.writes, m.retries), (model.len() as u64, writes, 0));
        }
    }
}

#[test]
fn snapshot_queries() {
    let v: SnapshotVec<i32> = (1..=6).collect();
    let s = v.load();
    assert_eq!(
        s.filter(|x| x % 3 == 0).copied().collect::<Vec<_>>(),
        [3, 6]
    );
    assert_eq!(
        s.map(|x| x * 10).collect::<Vec<_>>(),
        [10, 20, 30, 40, 50, 60]
    );
    assert!(s.any(|x| *x == 4));
    assert!(!s.any(|x| *x == 7));
    assert!(s.all(|x| *x > 0));
    assert!(!s.all(|x| *x > 1));
    assert_eq!(s.find(|x| *x > 4), Some(&5));
    assert_eq!(s.find(|x| *x > 6), None);
    assert_eq!(s.position(|x| *x == 2), Some(1));
    assert_eq!(s.position(|x| *x == 0), None);
    assert_eq!(s.count(|x| x % 2 == 0), 3);
    assert_eq!((&s).into_iter().count(), 6);
    let empty = SnapshotVec::<i32>::new().load();
    assert!(empty.all(|_| false), "all is true on nothing");
    assert_eq!(empty.count(|_| true), 0);
    assert_eq!(format!("{s:?}"), "[1, 2, 3, 4, 5, 6]");
    assert_eq!(format!("{v:?}"), "SnapshotVec([1, 2, 3, 4, 5, 6])");
}

#[test]
fn clones_of_a_snapshot_share_its_version() {
    let v = SnapshotVec::from(vec![1]);
    let a = v.load();
    let b = a.clone();
    assert!(Snapshot::ptr_eq(&a, &b));
    assert_eq!(a, b);
    v.push(2);
    drop(a);
    assert_eq!(b.as_slice(), [1]);
    assert!(!Snapshot::ptr_eq(&b, &v.load()));
}

/// The original's slice ran callbacks under its lock, so a callback that touched
/// the slice deadlocked. Here every callback runs with no lock held: reads and
/// writes from inside iteration, reads from inside a writer's predicate.
#[test]
fn callbacks_may_reenter_the_vector() {
    let v = SnapshotVec::from(vec![1, 2, 3]);
    for x in v.load().iter() {
        v.push(x * 10);
        assert!(v.load().any(|y| *y == x * 10));
        if *x == 2 {
            assert_eq!(v.remove_first(|y| *y == 1), Some(1));
        }
    }
    assert_eq!(v.load().as_slice(), [2, 3, 10, 20, 30]);

    // A predicate that reads the vector it is filtering.
    let removed = v.retain(|x| v.load().iter().filter(|y| *y > x).count() < 2);
    assert_eq!(removed, 3);
    assert_eq!(v.load().as_slice(), [20, 30]);

    // A snapshot query whose closure writes.
    assert!(v.load().all(|x| {
        v.push(x + 1);
        true
    }));
    assert_eq!(v.len(), 4);
}

/// A removed element is dropped as soon as no snapshot holds it: at once when
/// none does, otherwise when the last one goes. Nothing keeps a reference behind.
#[test]
fn removed_elements_are_really_freed() {
    let ledger = Ledger::new(16);
    let v = SnapshotVec::new();
    let items: Vec<Tracked> = (0..4).map(|_| ledger.issue()).collect();
    v.extend(items);

    // No snapshot alive: the element is moved out, nothing is left behind.
    let removed = v.remove_at(0).unwrap();
    assert_eq!(removed.id(), 0);
    assert_eq!(ledger.live(0), 1);
    drop(removed);
    assert_eq!(ledger.live(0), 0);

    // A snapshot holds the old contents: the caller gets a clone, and the
    // snapshot's copy goes with the snapshot.
    let held = v.load();
    let removed = v.remove_first(|t| t.id() == 1).unwrap();
    assert_eq!(ledger.live(1), 2);
    drop(removed);
    assert_eq!(ledger.live(1), 1, "the snapshot still holds it");
    drop(held);
    assert_eq!(ledger.live(1), 0, "freed with the last snapshot");

    let held = v.load();
    assert_eq!(v.retain(|t| t.id() != 2), 1);
    assert_eq!(ledger.live(2), 1);
    drop(held);
    assert_eq!(ledger.live(2), 0);

    let held = v.load();
    assert_eq!(v.clear(), 1);
    assert_eq!(ledger.live(3), 1);
    drop(held);
    assert_eq!(ledger.live(3), 0, "clear really frees");
    assert_eq!(ledger.total_live(), 0);

    v.push(ledger.issue());
    drop(v);
    ledger.assert_all_dropped();
}

/// Writers racing each other lose no update (each retry starts from the newer
/// contents), and every reader's snapshot is a state some sequence of those
/// writes produced: each writer's items appear in its own order, as a prefix of
/// what it pushed. Afterwards each writer removes its items again and every value,
/// clones included, has been dropped exactly once.
#[test]
fn concurrent_writers_lose_no_update() {
    const WRITERS: usize = 3;
    const PER_WRITER: usize = if cfg!(debug_assertions) { 300 } else { 1500 };
    let ledger = Ledger::new(WRITERS * PER_WRITER);
    let values: Vec<Vec<Tracked>> = (0..WRITERS)
        .map(|_| (0..PER_WRITER).map(|_| ledger.issue()).collect())
        .collect();
    let v = Arc::new(SnapshotVec::new());
    let start = Arc::new(Barrier::new(WRITERS + 1));
    let writers: Vec<_> = values
        .into_iter()
        .map(|mine| {
            let (v, start) = (v.clone(), start.clone());
            thread::spawn(move || {
                let ids: Vec<usize> = mine.iter().map(Tracked::id).collect();
                start.wait();
                for item in mine {
                    v.push(item);
                }
                for id in ids {
                    assert_eq!(v.remove_first(|t| t.id() == id).map(|t| t.id()), Some(id));
                }
            })
        })
        .collect();
    start.wait();
    let mut reader = v.reader();
    loop {
        let finished = writers.iter().all(|w| w.is_finished());
        let snap = v.load();
        // Ids of writer w are w*PER_WRITER.. and were pushed in increasing order;
        // removals take them in the same order, so each writer's ids present form a
        // contiguous increasing run.
        for items in [&snap[..], reader.load()] {
            let mut last = [None::<usize>; WRITERS];
            for t in items {
                let w = t.id() / PER_WRITER;
                if let Some(prev) = last[w] {
                    assert_eq!(t.id(), prev + 1, "writer {w}'s items out of order or lost");
                }
                last[w] = Some(t.id());
            }
        }
        if finished {
            break;
        }
    }
    for w in writers {
        w.join().unwrap();
    }
    assert!(v.is_empty());
    assert!(
        reader.load().is_empty(),
        "a reader sees every completed write"
    );
    drop(reader);
    let m = v.metrics();
    assert_eq!(m.writes, (2 * WRITERS * PER_WRITER) as u64);
    drop(v);
    ledger.assert_all_dropped();
}

/// Pushes from several threads, then a check of the whole: nothing lost, nothing
/// doubled.
#[test]
fn concurrent_pushes_are_all_kept() {
    const THREADS: u32 = 4;
    const PER_THREAD: u32 = 1000;
    let v = SnapshotVec::new();
    let start = Barrier::new(THREADS as usize);
    thread::scope(|s| {
        for t in 0..THREADS {
            let (v, start) = (&v, &start);
            s.spawn(move || {
                start.wait();
                for i in 0..PER_THREAD {
                    v.push(t * PER_THREAD + i);
                }
            });
        }
    });
    let mut all = v.load().to_vec();
    all.sort_unstable();
    assert_eq!(all, (0..THREADS * PER_THREAD).collect::<Vec<_>>());
}

/// Capped pushes from several threads: exactly the cap gets in, each refused item
/// comes back to its pusher, and nothing is lost or doubled.
#[test]
fn concurrent_capped_pushes_stop_exactly_at_the_cap() {
    const THREADS: u32 = 4;
    const PER_THREAD: u32 = 500;
    const CAP: usize = 1000;
    let v = SnapshotVec::new();
    let start = Barrier::new(THREADS as usize);
    let refused: Vec<Vec<u32>> = thread::scope(|s| {
        let pushers: Vec<_> = (0..THREADS)
            .map(|t| {
                let (v, start) = (&v, &start);
                s.spawn(move || {
                    start.wait();
                    (0..PER_THREAD)
                        .filter_map(|i| v.push_within(t * PER_THREAD + i, CAP).err())
                        .collect()
                })
            })
            .collect();
        pushers.into_iter().map(|p| p.join().unwrap()).collect()
    });
    let mut all = v.load().to_vec();
    assert_eq!(all.len(), CAP);
    all.extend(refused.into_iter().flatten());
    all.sort_unstable();
    assert_eq!(all, (0..THREADS * PER_THREAD).collect::<Vec<_>>());
}

/// Taking a snapshot and reading it allocate nothing (after the thread's first
/// load, which may set up per-thread state under `std`).
#[test]
fn reads_allocate_nothing() {
    let v: SnapshotVec<u64> = (0..64).collect();
    let mut sum = v.load().iter().sum::<u64>();
    let before = allocations();
    for i in 0..100_000u64 {
        let snap = v.load();
        sum += snap.find(|x| *x == i % 64).copied().unwrap_or(0);
        sum += snap.count(|x| x % 2 == 0) as u64;
        sum += u64::from(snap.any(|x| *x > 62));
        let again = snap.clone();
        sum += again.len() as u64;
    }
    let mut reader = v.reader();
    for i in 0..100_000u64 {
        sum += reader.load().iter().position(|x| *x == i % 64).unwrap_or(0) as u64;
    }
    assert_eq!(allocations() - before, 0, "reads allocated");
    assert!(sum > 0);
}

/// Vectors and snapshots cross threads: a snapshot may be sent to, and dropped
/// on, another thread.
#[test]
fn vectors_and_snapshots_are_send_and_sync() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<SnapshotVec<String>>();
    send_sync::<Snapshot<String>>();
    let v = SnapshotVec::from(vec![String::from("a")]);
    let snap = v.load();
    v.clear();
    let len = thread::spawn(move || snap.len()).join().unwrap();
    assert_eq!(len, 1);
}

/// A reader reloads exactly when a write happened since its last load, and keeps
/// what it loaded alive until then.
#[test]
fn readers_cache_until_a_write() {
    let ledger = Ledger::new(4);
    let v = SnapshotVec::from_vec(vec![ledger.issue(), ledger.issue()]);
    let mut reader = v.reader();
    let first = reader.load().as_ptr();
    assert_eq!(reader.load().as_ptr(), first, "no write: the same contents");
    assert_eq!(v.remove_at(0).map(|t| t.id()), Some(0));
    assert_eq!(ledger.live(0), 1, "the reader still holds the old contents");
    assert_eq!(
        reader.load().iter().map(Tracked::id).collect::<Vec<_>>(),
        [1]
    );
    assert_eq!(ledger.live(0), 0, "freed once the reader moved on");
    assert_eq!(
        v.retain(|_| true),
        0,
        "a write that changes nothing is no write"
    );
    let before = reader.load().as_ptr();
    assert_eq!(reader.load().as_ptr(), before);
    v.clear();
    assert!(reader.load().is_empty());
    assert!(format!("{reader:?}").starts_with("Reader"));
    drop(reader);
    drop(v);
    ledger.assert_all_dropped();
}
