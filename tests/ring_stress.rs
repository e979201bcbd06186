//! Multi-threaded invariants of the ring: N producers x M consumers, every item
//! delivered exactly once (by sum and by seen-set); with `force_push`, every item is
//! popped or returned as evicted exactly once; every value is dropped exactly once,
//! including those left in the ring when it is dropped.
//!
//! Sizes are kept modest so the suite stays fast on a 2-core CI machine; threads
//! outnumber cores on purpose, so preemption mid-operation is exercised.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::thread::{self, JoinHandle};

use membound::ring::{PopError, Ring};

const PRODUCERS: usize = 4;
const CONSUMERS: usize = 3;
const PER_PRODUCER: usize = 20_000;

fn item(producer: usize, seq: usize) -> u64 {
    (producer * PER_PRODUCER + seq) as u64
}

/// Starts `PRODUCERS` threads that wait for `start`, then run `body` with their
/// producer number.
fn spawn_producers<R: Send + 'static>(
    ring: &Arc<Ring<u64>>,
    start: &Arc<Barrier>,
    body: fn(&Ring<u64>, usize) -> R,
) -> Vec<JoinHandle<R>> {
    (0..PRODUCERS)
        .map(|p| {
            let (ring, start) = (ring.clone(), start.clone());
            thread::spawn(move || {
                start.wait();
                body(&ring, p)
            })
        })
        .collect()
}

/// Starts `CONSUMERS` threads that pop until the ring is closed and drained, each
/// returning what it received.
fn spawn_consumers(ring: &Arc<Ring<u64>>, start: &Arc<Barrier>) -> Vec<JoinHandle<Vec<u64>>> {
    (0..CONSUMERS)
        .map(|_| {
            let (ring, start) = (ring.clone(), start.clone());
            thread::spawn(move || {
                start.wait();
                let mut got = Vec::new();
                loop {
                    match ring.pop() {
                        Ok(v) => got.push(v),
                        Err(PopError::Empty) => thread::yield_now(),
                        Err(PopError::Closed) => return got,
                    }
                }
            })
        })
        .collect()
}

/// Checks `items` is exactly `0..PRODUCERS * PER_PRODUCER`, each once.
fn assert_each_once(mut items: Vec<u64>) {
    let total = PRODUCERS * PER_PRODUCER;
    let sum: u64 = items.iter().sum();
    assert_eq!(sum, (total as u64) * (total as u64 - 1) / 2, "sum of items");
    items.sort_unstable();
    let before = items.len();
    items.dedup();
    assert_eq!(items.len(), before, "duplicate items");
    assert_eq!(items.len(), total, "lost items");
}

#[test]
fn mpmc_try_push_delivers_each_item_exactly_once() {
    for cap in [1, 3, 64] {
        let ring = Arc::new(Ring::new(cap).unwrap());
        let start = Arc::new(Barrier::new(PRODUCERS + CONSUMERS));
        let producers = spawn_producers(&ring, &start, |ring, p| {
            for s in 0..PER_PRODUCER {
                let mut v = item(p, s);
                while let Err(e) = ring.try_push(v) {
                    v = e.into_inner();
                    thread::yield_now();
                }
            }
        });
        let consumers = spawn_consumers(&ring, &start);
        for p in producers {
            p.join().unwrap();
        }
        ring.close();
        let all: Vec<u64> = consumers
            .into_iter()
            .flat_map(|c| c.join().unwrap())
            .collect();
        assert_each_once(all);
        let m = ring.metrics();
        assert_eq!(m.pushed, (PRODUCERS * PER_PRODUCER) as u64);
        assert_eq!(m.popped, m.pushed);
        assert_eq!(m.len, 0);
    }
}

#[test]
fn mpmc_force_push_pops_or_evicts_each_item_exactly_once() {
    for cap in [1, 2, 5] {
        let ring = Arc::new(Ring::new(cap).unwrap());
        let start = Arc::new(Barrier::new(PRODUCERS + CONSUMERS));
        let producers = spawn_producers(&ring, &start, |ring, p| {
            let mut evicted = Vec::new();
            for s in 0..PER_PRODUCER {
                if let Some(old) = ring.force_push(item(p, s)).unwrap() {
                    evicted.push(old);
                }
            }
            evicted
        });
        let consumers = spawn_consumers(&ring, &start);
        let mut all: Vec<u64> = producers
            .into_iter()
            .flat_map(|p| p.join().unwrap())
            .collect();
        let evicted = all.len() as u64;
        ring.close();
        all.extend(consumers.into_iter().flat_map(|c| c.join().unwrap()));
        assert_each_once(all);
        let m = ring.metrics();
        assert_eq!(m.evicted, evicted);
        assert_eq!(m.pushed, m.popped + m.evicted);
    }
}

#[test]
fn per_producer_order_is_preserved() {
    // FIFO per producer: a consumer never sees a producer's items out of order.
    let ring = Arc::new(Ring::new(8).unwrap());
    let producers: Vec<_> = (0..2)
        .map(|p| {
            let ring = ring.clone();
            thread::spawn(move || {
                for s in 0..PER_PRODUCER {
                    let mut v = item(p, s);
                    while let Err(e) = ring.try_push(v) {
                        v = e.into_inner();
                        thread::yield_now();
                    }
                }
            })
        })
        .collect();
    let mut last = [None::<u64>; 2];
    let mut received = 0;
    while received < 2 * PER_PRODUCER {
        match ring.try_pop() {
            Some(v) => {
                let p = v as usize / PER_PRODUCER;
                assert!(last[p].is_none_or(|prev| prev < v), "out of order");
                last[p] = Some(v);
                received += 1;
            }
            None => thread::yield_now(),
        }
    }
    for p in producers {
        p.join().unwrap();
    }
}

/// Counts its drops into a shared per-value table.
struct Tracked {
    id: usize,
    drops: Arc<Vec<AtomicUsize>>,
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.drops[self.id].fetch_add(1, Ordering::Relaxed);
    }
}

#[test]
fn every_value_is_dropped_exactly_once() {
    const N: usize = 30_000;
    let drops = Arc::new((0..N + 3).map(|_| AtomicUsize::new(0)).collect::<Vec<_>>());
    let ring = Arc::new(Ring::new(7).unwrap());
    let start = Arc::new(Barrier::new(3));
    let producing = Arc::new(AtomicUsize::new(2));
    let producers: Vec<_> = (0..2)
        .map(|p| {
            let (ring, drops) = (ring.clone(), drops.clone());
            let (start, producing) = (start.clone(), producing.clone());
            thread::spawn(move || {
                start.wait();
                for id in (p..N).step_by(2) {
                    // Mix every push flavour: evicted values are dropped here.
                    let value = Tracked {
                        id,
                        drops: drops.clone(),
                    };
                    match id % 3 {
                        0 => drop(ring.force_push(value).unwrap()),
                        1 => drop(ring.push(value).unwrap()),
                        _ => drop(ring.try_push(value)),
                    }
                }
                producing.fetch_sub(1, Ordering::Release);
            })
        })
        .collect();
    // The consumer pops, drains and clears while both producers run.
    let consumer = {
        let (ring, start, producing) = (ring.clone(), start.clone(), producing.clone());
        thread::spawn(move || {
            start.wait();
            let mut round = 0u32;
            while producing.load(Ordering::Acquire) > 0 {
                round += 1;
                match round % 4 {
                    0 => drop(ring.clear()),
                    1 => ring.pop_batch(3).for_each(drop),
                    _ => drop(ring.try_pop()),
                }
            }
        })
    };
    for p in producers {
        p.join().unwrap();
    }
    consumer.join().unwrap();
    // Make sure values are left in the ring for its drop to handle.
    for id in N..N + 3 {
        let evicted = ring.force_push(Tracked {
            id,
            drops: drops.clone(),
        });
        drop(evicted.unwrap());
    }
    assert!(ring.len() >= 3);
    // Some values are still in the ring: dropping it must drop each once.
    drop(Arc::try_unwrap(ring).unwrap());
    for (id, d) in drops.iter().enumerate() {
        assert_eq!(d.load(Ordering::Relaxed), 1, "value {id}");
    }
}
