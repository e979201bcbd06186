//! Soft capacities under concurrency: `set_capacity` churning while producers and
//! consumers run, and `Grow` rings filling from several threads. Every item is
//! accounted for exactly once: received by a consumer, handed back to its producer,
//! or dropped by the ring (and then its `Drop` ran exactly once).

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Arc;
use std::thread;

use membound::ring::{PushError, Pushed, Ring, RingConfig};
use membound::OverflowPolicy;

const PRODUCERS: u64 = 3;
const PER_PRODUCER: u64 = 20_000;
const TOTAL: u64 = PRODUCERS * PER_PRODUCER;

/// An item whose drops are counted per id.
struct Tracked {
    id: u64,
    drops: Arc<Vec<AtomicU8>>,
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.drops[self.id as usize].fetch_add(1, Ordering::Relaxed);
    }
}

fn drop_counters() -> Arc<Vec<AtomicU8>> {
    Arc::new((0..TOTAL).map(|_| AtomicU8::new(0)).collect())
}

/// Starts consumers that pop until `stop` is set and the ring is empty, returning
/// the ids they received (the items are dropped as they are received).
fn consumers(
    ring: &Arc<Ring<Tracked>>,
    stop: &Arc<AtomicBool>,
    n: usize,
) -> Vec<thread::JoinHandle<Vec<u64>>> {
    (0..n)
        .map(|_| {
            let (ring, stop) = (ring.clone(), stop.clone());
            thread::spawn(move || {
                let mut got = Vec::new();
                loop {
                    match ring.try_pop() {
                        Some(item) => got.push(item.id),
                        None if stop.load(Ordering::Acquire) && ring.is_empty() => return got,
                        None => thread::yield_now(),
                    }
                }
            })
        })
        .collect()
}

/// Starts a thread that cycles the capacity through `sizes` until `stop` is set,
/// and at least once through all of them (so the ring both shrinks and grows even
/// when the producers finish before this thread is first scheduled).
fn churn(
    ring: &Arc<Ring<Tracked>>,
    stop: &Arc<AtomicBool>,
    sizes: &'static [usize],
) -> thread::JoinHandle<u64> {
    let (ring, stop) = (ring.clone(), stop.clone());
    thread::spawn(move || {
        let mut changes = 0;
        let mut cycle = sizes.iter().cycle();
        while changes < sizes.len() as u64 || !stop.load(Ordering::Acquire) {
            ring.set_capacity(*cycle.next().unwrap()).unwrap();
            changes += 1;
            thread::yield_now();
        }
        changes
    })
}

fn assert_each_dropped_once(drops: &[AtomicU8]) {
    for (id, count) in drops.iter().enumerate() {
        assert_eq!(
            count.load(Ordering::Relaxed),
            1,
            "item {id} dropped {count:?} times"
        );
    }
}

fn assert_unique(mut ids: Vec<u64>) -> usize {
    let n = ids.len();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), n, "an item was received twice");
    n
}

/// `DropOldest` under capacity churn: items beyond a lowered capacity are evicted
/// and dropped inside the ring; everything else is received; nothing twice.
#[test]
fn capacity_churn_with_drop_oldest_accounts_for_every_item() {
    let drops = drop_counters();
    let ring = Arc::new(Ring::with_config(RingConfig::new(64)).unwrap());
    let stop = Arc::new(AtomicBool::new(false));
    let consumers = consumers(&ring, &stop, 2);
    let churn = churn(&ring, &stop, &[1, 3, 8, 64, 2, 17]);
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            let (ring, drops) = (ring.clone(), drops.clone());
            thread::spawn(move || {
                for i in 0..PER_PRODUCER {
                    let id = p * PER_PRODUCER + i;
                    match ring.push(Tracked {
                        id,
                        drops: drops.clone(),
                    }) {
                        Ok(Pushed::Stored | Pushed::DroppedOldest) => {}
                        other => panic!("unexpected {:?}", other.map_err(|e| e.into_inner().id)),
                    }
                }
            })
        })
        .collect();
    for p in producers {
        p.join().unwrap();
    }
    stop.store(true, Ordering::Release);
    assert!(churn.join().unwrap() > 0);
    let received: Vec<u64> = consumers
        .into_iter()
        .flat_map(|c| c.join().unwrap())
        .collect();
    let received = assert_unique(received) as u64;
    let m = ring.metrics();
    assert_eq!(m.pushed, TOTAL);
    assert_eq!(received + m.dropped_oldest + m.len, TOTAL);
    assert!(m.shrinks > 0 && m.grows > 0);
    drop(ring);
    assert_each_dropped_once(&drops);
}

/// `Block` under capacity churn: producers wait whenever the capacity in force is
/// reached and are woken when it is raised or drained; nothing is dropped at all.
#[test]
fn capacity_churn_with_block_loses_nothing() {
    let drops = drop_counters();
    let ring = Arc::new(
        Ring::with_config(
            RingConfig::new(8)
                .with_max_capacity(32)
                .with_policy(OverflowPolicy::Block),
        )
        .unwrap(),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let consumers = consumers(&ring, &stop, 2);
    let churn = churn(&ring, &stop, &[1, 32, 2, 5]);
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            let (ring, drops) = (ring.clone(), drops.clone());
            thread::spawn(move || {
                for i in 0..PER_PRODUCER {
                    let id = p * PER_PRODUCER + i;
                    assert!(matches!(
                        ring.push(Tracked {
                            id,
                            drops: drops.clone()
                        }),
                        Ok(Pushed::Stored)
                    ));
                }
            })
        })
        .collect();
    for p in producers {
        p.join().unwrap();
    }
    stop.store(true, Ordering::Release);
    churn.join().unwrap();
    let received: Vec<u64> = consumers
        .into_iter()
        .flat_map(|c| c.join().unwrap())
        .collect();
    assert_eq!(assert_unique(received) as u64, TOTAL);
    let m = ring.metrics();
    assert_eq!(
        (m.dropped_oldest, m.dropped_newest, m.rejected, m.len),
        (0, 0, 0, 0)
    );
    drop(ring);
    assert_each_dropped_once(&drops);
}

/// `Grow` from many threads with no consumer: the ring grows by doubling to its
/// maximum and never beyond, then rejects; every item is stored or handed back.
#[test]
fn concurrent_growth_stops_at_max_and_rejects_after() {
    const MAX: usize = 100;
    let ring = Arc::new(
        Ring::with_config(
            RingConfig::new(3)
                .with_policy(OverflowPolicy::Reject)
                .with_growth(MAX),
        )
        .unwrap(),
    );
    let producers: Vec<_> = (0..4u64)
        .map(|p| {
            let ring = ring.clone();
            thread::spawn(move || {
                let mut refused = Vec::new();
                for i in 0..200u64 {
                    match ring.push(p * 1000 + i) {
                        Ok(Pushed::Stored | Pushed::Grew) => {}
                        Err(PushError::Full(v)) => refused.push(v),
                        other => panic!("unexpected {other:?}"),
                    }
                }
                refused
            })
        })
        .collect();
    let refused: Vec<u64> = producers
        .into_iter()
        .flat_map(|p| p.join().unwrap())
        .collect();
    let m = ring.metrics();
    assert_eq!(m.capacity, MAX as u64);
    assert_eq!(m.len, MAX as u64);
    assert!(m.high_water <= MAX as u64);
    // 3 -> 6 -> 12 -> 24 -> 48 -> 96 -> 100.
    assert_eq!(m.grows, 6);
    assert_eq!(refused.len(), 800 - MAX);
    assert_eq!(m.rejected, (800 - MAX) as u64);
    let mut all: Vec<u64> = ring.drain().chain(refused).collect();
    all.sort_unstable();
    let expected: Vec<u64> = (0..4)
        .flat_map(|p| (0..200).map(move |i| p * 1000 + i))
        .collect();
    assert_eq!(all, expected);
}

/// Lowering the limit of a `Grow` ring caps growth; raising it lets it grow again
/// on demand (not at once).
#[test]
fn grow_limit_follows_set_capacity() {
    let ring = Ring::with_config(
        RingConfig::new(2)
            .with_policy(OverflowPolicy::DropNewest)
            .with_growth(16),
    )
    .unwrap();
    ring.set_capacity(4).unwrap();
    for i in 0..6 {
        ring.push(i).unwrap();
    }
    assert_eq!((ring.capacity(), ring.len()), (4, 4));
    assert_eq!(ring.metrics().dropped_newest, 2);
    ring.set_capacity(16).unwrap();
    assert_eq!(ring.capacity(), 4, "growth is on demand");
    assert_eq!(ring.push(6), Ok(Pushed::Grew));
    assert_eq!(ring.capacity(), 8);
    ring.set_capacity(3).unwrap();
    assert_eq!(ring.capacity(), 3);
    assert_eq!(ring.len(), 5, "DropNewest keeps the excess");
    assert_eq!(ring.push(7), Ok(Pushed::DroppedNewest));
    assert_eq!(ring.drain().collect::<Vec<_>>(), [0, 1, 2, 3, 6]);
}

/// `DropNewest` and `Reject` from several threads against consumers: an item is
/// received, or dropped by the ring (counted), or handed back to its producer;
/// never twice, never lost; every value dropped exactly once.
#[test]
fn drop_newest_and_reject_account_for_every_item() {
    for policy in [OverflowPolicy::DropNewest, OverflowPolicy::Reject] {
        let drops = drop_counters();
        let ring = Arc::new(Ring::with_config(RingConfig::new(4).with_policy(policy)).unwrap());
        let stop = Arc::new(AtomicBool::new(false));
        let consumers = consumers(&ring, &stop, 2);
        let producers: Vec<_> = (0..PRODUCERS)
            .map(|p| {
                let (ring, drops) = (ring.clone(), drops.clone());
                thread::spawn(move || {
                    let mut handed_back = 0u64;
                    for i in 0..PER_PRODUCER {
                        let id = p * PER_PRODUCER + i;
                        match ring.push(Tracked {
                            id,
                            drops: drops.clone(),
                        }) {
                            Ok(Pushed::Stored | Pushed::DroppedNewest) => {}
                            Err(PushError::Full(item)) => {
                                assert_eq!(item.id, id, "the refused item is ours");
                                handed_back += 1;
                            }
                            Ok(other) => panic!("unexpected {other:?}"),
                            Err(_) => panic!("closed"),
                        }
                    }
                    handed_back
                })
            })
            .collect();
        let handed_back: u64 = producers.into_iter().map(|p| p.join().unwrap()).sum();
        stop.store(true, Ordering::Release);
        let received: Vec<u64> = consumers
            .into_iter()
            .flat_map(|c| c.join().unwrap())
            .collect();
        let received = assert_unique(received) as u64;
        let m = ring.metrics();
        assert_eq!(m.rejected, handed_back, "{policy:?}");
        assert_eq!(
            received + m.dropped_newest + handed_back + m.len,
            TOTAL,
            "{policy:?}"
        );
        drop(ring);
        assert_each_dropped_once(&drops);
    }
}
