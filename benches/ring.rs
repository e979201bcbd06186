//! Ring throughput against its peers, measured in the same run.
//!
//! Scenarios (u64 items, capacity 1024 everywhere; heapless's SPSC queue holds
//! `N - 1`, so 1023):
//! - `single_thread`: one push then one pop, on one thread.
//! - `spsc_1p1c`: one producer thread moves 100 000 items to one consumer thread.
//! - `mpmc_2p2c`: two producers move 100 000 items to two consumers.
//! - `full_drop_oldest`: push into a full ring, evicting the oldest item.
//!
//! Threaded scenarios spin with `spin_loop` and yield after a few failed tries, the
//! same loop for every peer, so an oversubscribed machine still makes progress.
//! Threads are pinned (Linux; one producer and one consumer per core on two cores),
//! so thread migration does not decide the result.
//! `std::sync::mpsc::sync_channel` uses its own blocking `send`/`recv`, as intended;
//! it has one receiver, so it sits out `mpmc_2p2c`. The channels that also offer
//! non-blocking calls (thingbuf's `ThingBuf`, flume, kanal, async-channel, all
//! bounded to the same capacity) go through the same spin-then-yield loop as the
//! queues, by their `try_` calls.
//!
//! Run: `cargo bench --bench ring`. The README quotes medians and ratios.
#![allow(missing_docs)]
// heapless deprecates `mpmc::Queue::new` because the Vyukov queue is not strictly
// lock-free (a preempted thread can stall others); the same holds for every peer here.
#![allow(deprecated)]

use std::hint::black_box;
use std::sync::mpsc::sync_channel;
use std::thread;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use crossbeam_queue::ArrayQueue;
use membound::ring::{Ring, StaticRing};

mod support;
use support::{config, pin, retry};

const CAP: usize = 1024;
const ITEMS: u64 = 100_000;

/// Producer `p` runs on core `p`, consumer `c` on core `c + 1` (modulo the cores):
/// with 2 cores and 2+2 threads, each core hosts one producer and one consumer, so
/// producers contend with each other across cores, and so do consumers.
fn producer_core(p: u64) -> usize {
    p as usize
}

fn consumer_core(c: u64) -> usize {
    c as usize + 1
}

/// The operations every peer offers, for the threaded scenarios.
trait Queue: Sync {
    fn push(&self, v: u64) -> bool;
    fn pop(&self) -> Option<u64>;
}

impl Queue for Ring<u64> {
    fn push(&self, v: u64) -> bool {
        self.try_push(v).is_ok()
    }
    fn pop(&self) -> Option<u64> {
        self.try_pop()
    }
}

impl Queue for ArrayQueue<u64> {
    fn push(&self, v: u64) -> bool {
        ArrayQueue::push(self, v).is_ok()
    }
    fn pop(&self) -> Option<u64> {
        ArrayQueue::pop(self)
    }
}

impl Queue for heapless::mpmc::Queue<u64, CAP> {
    fn push(&self, v: u64) -> bool {
        self.enqueue(v).is_ok()
    }
    fn pop(&self) -> Option<u64> {
        self.dequeue()
    }
}

impl Queue for thingbuf::ThingBuf<u64> {
    fn push(&self, v: u64) -> bool {
        thingbuf::ThingBuf::push(self, v).is_ok()
    }
    fn pop(&self) -> Option<u64> {
        thingbuf::ThingBuf::pop(self)
    }
}

/// Both ends of a bounded flume channel.
struct Flume(flume::Sender<u64>, flume::Receiver<u64>);

impl Queue for Flume {
    fn push(&self, v: u64) -> bool {
        self.0.try_send(v).is_ok()
    }
    fn pop(&self) -> Option<u64> {
        self.1.try_recv().ok()
    }
}

/// Both ends of a bounded kanal channel.
struct Kanal(kanal::Sender<u64>, kanal::Receiver<u64>);

impl Queue for Kanal {
    fn push(&self, v: u64) -> bool {
        matches!(self.0.try_send(v), Ok(true))
    }
    fn pop(&self) -> Option<u64> {
        self.1.try_recv().ok().flatten()
    }
}

/// Both ends of a bounded async-channel.
struct AsyncChannel(async_channel::Sender<u64>, async_channel::Receiver<u64>);

impl Queue for AsyncChannel {
    fn push(&self, v: u64) -> bool {
        self.0.try_send(v).is_ok()
    }
    fn pop(&self) -> Option<u64> {
        self.1.try_recv().ok()
    }
}

/// Ends a consumer's loop; pushed once per consumer after every item.
const STOP: u64 = u64::MAX;

/// Moves `ITEMS` items from `producers` threads to `consumers` threads; returns the
/// time taken and checks the sum so nothing can be optimised away or lost.
///
/// Consumers share nothing but the queue: after the producers finish, one `STOP`
/// per consumer is pushed behind the items (FIFO, so a consumer that takes a `STOP`
/// knows every item was already claimed), and each consumer sums what it got.
fn transfer<Q: Queue>(q: &Q, producers: u64, consumers: u64) -> Duration {
    let per_producer = ITEMS / producers;
    let total = per_producer * producers;
    let start = Instant::now();
    let sum: u64 = thread::scope(|s| {
        let producer_handles: Vec<_> = (0..producers)
            .map(|p| {
                s.spawn(move || {
                    pin(producer_core(p));
                    for i in 0..per_producer {
                        let v = p * per_producer + i;
                        retry(|| q.push(v));
                    }
                })
            })
            .collect();
        let consumer_handles: Vec<_> = (0..consumers)
            .map(|c| {
                s.spawn(move || {
                    pin(consumer_core(c));
                    let mut sum = 0u64;
                    loop {
                        let mut v = 0;
                        retry(|| q.pop().map(|x| v = x).is_some());
                        if v == STOP {
                            return sum;
                        }
                        sum += v;
                    }
                })
            })
            .collect();
        for h in producer_handles {
            h.join().unwrap();
        }
        for _ in 0..consumers {
            retry(|| q.push(STOP));
        }
        consumer_handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .sum()
    });
    let elapsed = start.elapsed();
    assert_eq!(sum, total * (total - 1) / 2);
    elapsed
}

/// Popped items are reduced to a `u64` before `black_box`, for the reason given on
/// `full_drop_oldest`.
fn single_thread(c: &mut Criterion) {
    let mut g = c.benchmark_group("single_thread");
    g.throughput(Throughput::Elements(1));
    let ring = Ring::<u64>::new(CAP).unwrap();
    g.bench_function("membound_Ring", |b| {
        b.iter(|| {
            ring.try_push(black_box(1)).unwrap();
            black_box(ring.try_pop().unwrap_or(0))
        })
    });
    // In a `static`, as embedded users keep it.
    static STATIC_RING: StaticRing<u64, CAP> = StaticRing::new();
    g.bench_function("membound_StaticRing", |b| {
        b.iter(|| {
            STATIC_RING.try_push(black_box(1)).unwrap();
            black_box(STATIC_RING.try_pop().unwrap_or(0))
        })
    });
    let q = ArrayQueue::<u64>::new(CAP);
    g.bench_function("crossbeam_ArrayQueue", |b| {
        b.iter(|| {
            q.push(black_box(1)).unwrap();
            black_box(q.pop().unwrap_or(0))
        })
    });
    let q = heapless::mpmc::Queue::<u64, CAP>::new();
    g.bench_function("heapless_mpmc", |b| {
        b.iter(|| {
            q.enqueue(black_box(1)).unwrap();
            black_box(q.dequeue().unwrap_or(0))
        })
    });
    let mut q = heapless::spsc::Queue::<u64, CAP>::new();
    g.bench_function("heapless_spsc", |b| {
        b.iter(|| {
            q.enqueue(black_box(1)).unwrap();
            black_box(q.dequeue().unwrap_or(0))
        })
    });
    let (tx, rx) = sync_channel::<u64>(CAP);
    g.bench_function("std_sync_channel", |b| {
        b.iter(|| {
            tx.try_send(black_box(1)).unwrap();
            black_box(rx.try_recv().unwrap_or(0))
        })
    });
    g.finish();
}

fn threaded(c: &mut Criterion) {
    for (name, producers, consumers) in [("spsc_1p1c", 1, 1), ("mpmc_2p2c", 2, 2)] {
        let mut g = c.benchmark_group(name);
        g.throughput(Throughput::Elements(ITEMS));
        g.sample_size(20);
        g.measurement_time(Duration::from_secs(4));
        let id = |peer| BenchmarkId::new(peer, ITEMS);

        let ring = Ring::<u64>::new(CAP).unwrap();
        g.bench_function(id("membound_Ring"), |b| {
            b.iter_custom(|n| (0..n).map(|_| transfer(&ring, producers, consumers)).sum())
        });
        let q = ArrayQueue::<u64>::new(CAP);
        g.bench_function(id("crossbeam_ArrayQueue"), |b| {
            b.iter_custom(|n| (0..n).map(|_| transfer(&q, producers, consumers)).sum())
        });
        let q = heapless::mpmc::Queue::<u64, CAP>::new();
        g.bench_function(id("heapless_mpmc"), |b| {
            b.iter_custom(|n| (0..n).map(|_| transfer(&q, producers, consumers)).sum())
        });
        let q = thingbuf::ThingBuf::<u64>::new(CAP);
        g.bench_function(id("thingbuf"), |b| {
            b.iter_custom(|n| (0..n).map(|_| transfer(&q, producers, consumers)).sum())
        });
        let (tx, rx) = flume::bounded(CAP);
        let q = Flume(tx, rx);
        g.bench_function(id("flume"), |b| {
            b.iter_custom(|n| (0..n).map(|_| transfer(&q, producers, consumers)).sum())
        });
        let (tx, rx) = kanal::bounded(CAP);
        let q = Kanal(tx, rx);
        g.bench_function(id("kanal"), |b| {
            b.iter_custom(|n| (0..n).map(|_| transfer(&q, producers, consumers)).sum())
        });
        let (tx, rx) = async_channel::bounded(CAP);
        let q = AsyncChannel(tx, rx);
        g.bench_function(id("async_channel"), |b| {
            b.iter_custom(|n| (0..n).map(|_| transfer(&q, producers, consumers)).sum())
        });
        if producers == 1 && consumers == 1 {
            g.bench_function(id("heapless_spsc"), |b| {
                b.iter_custom(|n| (0..n).map(|_| spsc_heapless()).sum())
            });
            g.bench_function(id("std_sync_channel"), |b| {
                b.iter_custom(|n| (0..n).map(|_| spsc_std()).sum())
            });
        }
        g.finish();
    }
}

fn spsc_heapless() -> Duration {
    let mut q = heapless::spsc::Queue::<u64, CAP>::new();
    let (mut tx, mut rx) = q.split();
    let start = Instant::now();
    let sum = thread::scope(|s| {
        s.spawn(move || {
            pin(producer_core(0));
            for i in 0..ITEMS {
                retry(|| tx.enqueue(i).is_ok());
            }
        });
        s.spawn(move || {
            pin(consumer_core(0));
            let mut sum = 0;
            for _ in 0..ITEMS {
                let mut v = 0;
                retry(|| rx.dequeue().map(|x| v = x).is_some());
                sum += v;
            }
            sum
        })
        .join()
        .unwrap()
    });
    let elapsed = start.elapsed();
    assert_eq!(sum, ITEMS * (ITEMS - 1) / 2);
    elapsed
}

fn spsc_std() -> Duration {
    let (tx, rx) = sync_channel::<u64>(CAP);
    let start = Instant::now();
    let sum: u64 = thread::scope(|s| {
        s.spawn(move || {
            pin(producer_core(0));
            for i in 0..ITEMS {
                tx.send(i).unwrap();
            }
        });
        s.spawn(move || {
            pin(consumer_core(0));
            rx.iter().sum()
        })
        .join()
        .unwrap()
    });
    let elapsed = start.elapsed();
    assert_eq!(sum, ITEMS * (ITEMS - 1) / 2);
    elapsed
}

/// The evicted item is reduced to a `u64` before `black_box`: black-boxing the
/// 16-byte `Option` itself measured a store-forwarding stall of the benchmark loop
/// (perf), not the queue.
fn full_drop_oldest(c: &mut Criterion) {
    let mut g = c.benchmark_group("full_drop_oldest");
    g.throughput(Throughput::Elements(1));
    let ring = Ring::<u64>::new(CAP).unwrap();
    (0..CAP as u64).for_each(|i| ring.try_push(i).unwrap());
    g.bench_function("membound_force_push", |b| {
        b.iter(|| black_box(ring.force_push(black_box(7)).unwrap().unwrap_or(0)))
    });
    let ring = Ring::<u64>::new(CAP).unwrap(); // default policy: DropOldest
    (0..CAP as u64).for_each(|i| ring.try_push(i).unwrap());
    g.bench_function("membound_push_DropOldest", |b| {
        b.iter(|| black_box(ring.push(black_box(7)).unwrap()))
    });
    let q = ArrayQueue::<u64>::new(CAP);
    (0..CAP as u64).for_each(|i| q.push(i).unwrap());
    g.bench_function("crossbeam_force_push", |b| {
        b.iter(|| black_box(q.force_push(black_box(7)).unwrap_or(0)))
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = config();
    targets = single_thread, threaded, full_drop_oldest
}
criterion_main!(benches);
