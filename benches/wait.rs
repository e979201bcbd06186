//! Waiting rings against their peers, measured in the same run.
//!
//! - `blocking_2p1c`: two producer threads move 100 000 u64 in total to one consumer
//!   thread through a queue of 64 slots, every side using its blocking operations
//!   (ours: `push_wait`/`pop_wait`; `std::sync::mpsc::sync_channel`:
//!   `send`/`recv`; crossbeam-channel's `bounded`: `send`/`recv`). The small
//!   capacity makes both sides wait often, so the wake-up path is what is measured.
//!   `membound_backpressure` is the same transfer through `Backpressure`
//!   (`OverflowPolicy::Block`, water marks 50 % / 90 %: producers pause at 58 items until
//!   the consumer drains to 32), `send`/`recv`: what flow control costs.
//! - `async_1p1c`: one producer task moves 100 000 u64 to one consumer task on a
//!   two-worker tokio runtime (ours: `push_async`/`pop_async`; tokio's bounded
//!   `mpsc`: `send`/`recv`), capacity 64.
//!
//! Run: `cargo bench --bench wait`.
#![allow(missing_docs)]

use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use membound::backpressure::{Backpressure, BackpressureConfig, WaterMarks};
use membound::policy::Wait;
use membound::ring::Ring;
use membound::OverflowPolicy;

mod support;
use support::{config, pin};

const CAP: usize = 64;
const ITEMS: u64 = 100_000;
const PRODUCERS: u64 = 2;

/// Blocking send/receive over one queue flavour.
trait Blocking: Send + Sync + 'static {
    fn send(&self, v: u64);
    fn recv(&self) -> u64;
}

impl Blocking for Ring<u64> {
    fn send(&self, v: u64) {
        self.push_wait(v, Wait::Forever).unwrap();
    }
    fn recv(&self) -> u64 {
        self.pop_wait(Wait::Forever).unwrap()
    }
}

impl Blocking for Backpressure<u64> {
    fn send(&self, v: u64) {
        Backpressure::send(self, v).unwrap();
    }
    fn recv(&self) -> u64 {
        Backpressure::recv_wait(self, Wait::Forever).unwrap()
    }
}

struct Std(
    std::sync::mpsc::SyncSender<u64>,
    std::sync::Mutex<std::sync::mpsc::Receiver<u64>>,
);
impl Blocking for Std {
    fn send(&self, v: u64) {
        self.0.send(v).unwrap();
    }
    fn recv(&self) -> u64 {
        // Only the one consumer thread locks this: uncontended.
        self.1.lock().unwrap().recv().unwrap()
    }
}

struct Crossbeam(
    crossbeam_channel::Sender<u64>,
    crossbeam_channel::Receiver<u64>,
);
impl Blocking for Crossbeam {
    fn send(&self, v: u64) {
        self.0.send(v).unwrap();
    }
    fn recv(&self) -> u64 {
        self.1.recv().unwrap()
    }
}

/// Producers on core 0 and 1, the consumer on core 1; returns the transfer time.
fn transfer<Q: Blocking>(q: &Arc<Q>) -> Duration {
    let per_producer = ITEMS / PRODUCERS;
    let start = Instant::now();
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            let q = q.clone();
            thread::spawn(move || {
                pin(p as usize);
                for i in 0..per_producer {
                    q.send(i);
                }
            })
        })
        .collect();
    pin(1);
    let mut sum = 0u64;
    for _ in 0..ITEMS {
        sum = sum.wrapping_add(q.recv());
    }
    for p in producers {
        p.join().unwrap();
    }
    let elapsed = start.elapsed();
    assert_eq!(sum, PRODUCERS * per_producer * (per_producer - 1) / 2);
    elapsed
}

fn blocking(c: &mut Criterion) {
    let mut g = c.benchmark_group("blocking_2p1c");
    g.throughput(Throughput::Elements(ITEMS));
    g.sample_size(20);
    g.bench_function("membound", |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| transfer(&Arc::new(Ring::new(CAP).unwrap())))
                .sum()
        })
    });
    g.bench_function("membound_backpressure", |b| {
        let config = BackpressureConfig::new(CAP)
            .with_policy(OverflowPolicy::Block)
            .with_water_marks(WaterMarks::new(0.5, 0.9).unwrap());
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| transfer(&Arc::new(Backpressure::new(config).unwrap())))
                .sum()
        })
    });
    g.bench_function("std_sync_channel", |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| {
                    let (tx, rx) = std::sync::mpsc::sync_channel(CAP);
                    transfer(&Arc::new(Std(tx, std::sync::Mutex::new(rx))))
                })
                .sum()
        })
    });
    g.bench_function("crossbeam_channel", |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| {
                    let (tx, rx) = crossbeam_channel::bounded(CAP);
                    transfer(&Arc::new(Crossbeam(tx, rx)))
                })
                .sum()
        })
    });
    g.finish();
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap()
}

/// Spawns `produce` and `consume` on `rt`, waits for both, checks the consumer's sum
/// of `0..ITEMS`, and returns the time from spawning to the last item.
fn run_tasks(
    rt: &tokio::runtime::Runtime,
    produce: impl std::future::Future<Output = ()> + Send + 'static,
    consume: impl std::future::Future<Output = u64> + Send + 'static,
) -> Duration {
    let start = Instant::now();
    let producer = rt.spawn(produce);
    let consumer = rt.spawn(consume);
    rt.block_on(producer).unwrap();
    let sum = rt.block_on(consumer).unwrap();
    let elapsed = start.elapsed();
    assert_eq!(sum, ITEMS * (ITEMS - 1) / 2);
    elapsed
}

fn async_1p1c(c: &mut Criterion) {
    let rt = runtime();
    let mut g = c.benchmark_group("async_1p1c");
    g.throughput(Throughput::Elements(ITEMS));
    g.sample_size(20);
    g.bench_function("membound", |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| {
                    let ring = Arc::new(Ring::new(CAP).unwrap());
                    let tx = ring.clone();
                    run_tasks(
                        &rt,
                        async move {
                            for i in 0..ITEMS {
                                tx.push_async(i).await.unwrap();
                            }
                        },
                        async move {
                            let mut sum = 0u64;
                            for _ in 0..ITEMS {
                                sum = sum.wrapping_add(ring.pop_async().await.unwrap());
                            }
                            sum
                        },
                    )
                })
                .sum()
        })
    });
    g.bench_function("tokio_mpsc", |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| {
                    let (tx, mut rx) = tokio::sync::mpsc::channel(CAP);
                    run_tasks(
                        &rt,
                        async move {
                            for i in 0..ITEMS {
                                tx.send(i).await.unwrap();
                            }
                        },
                        async move {
                            let mut sum = 0u64;
                            for _ in 0..ITEMS {
                                sum = sum.wrapping_add(rx.recv().await.unwrap());
                            }
                            sum
                        },
                    )
                })
                .sum()
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = config();
    targets = blocking, async_1p1c
}
criterion_main!(benches);
