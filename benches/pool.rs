//! `Pool<Vec<u8>>` against allocating a fresh buffer each time, measured in the
//! same run.
//!
//! One operation obtains a 4 KiB buffer, writes 4 KiB into it (a copy from a
//! source buffer), reads one byte back, and drops it. Peers:
//! - `membound_Pool`: `get()` a recycled `Vec` (empty, capacity 4096) and
//!   `extend_from_slice` the data; the guard's drop returns it;
//! - `fresh_vec_zeroed`: `vec![0u8; 4096]` then `copy_from_slice` (the issue's
//!   baseline);
//! - `fresh_with_capacity`: `Vec::with_capacity(4096)` then `extend_from_slice`
//!   (the cheapest fresh allocation: no zeroing).
//!
//! Scenarios: `pool_single_thread`, and `pool_two_threads`, where two pinned threads do
//! `OPS` operations each on one shared pool (against the allocator's per-thread
//! caches for the fresh peers); there `membound_Pool_per_thread` gives each thread a
//! pool of its own.
//!
//! Run: `cargo bench --bench pool`. The README quotes medians and ratios.
#![allow(missing_docs)]

use std::hint::black_box;
use std::sync::Barrier;
use std::thread;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use membound::pool::Pool;

mod support;
use support::{config, pin};

const SIZE: usize = 4096;
const OPS: u64 = 50_000;

type Buffers = Pool<Vec<u8>, fn() -> Vec<u8>>;

fn new_buffer() -> Vec<u8> {
    Vec::with_capacity(SIZE)
}

fn buffers() -> Buffers {
    let pool: Buffers = Pool::with_factory(16, new_buffer as fn() -> Vec<u8>).unwrap();
    pool.fill();
    pool
}

#[derive(Clone, Copy, PartialEq)]
enum Peer {
    Pool,
    PoolPerThread,
    FreshZeroed,
    FreshWithCapacity,
}

impl Peer {
    const ALL: [(Peer, &'static str); 3] = [
        (Peer::Pool, "membound_Pool"),
        (Peer::FreshZeroed, "fresh_vec_zeroed"),
        (Peer::FreshWithCapacity, "fresh_with_capacity"),
    ];

    /// One operation: obtain, write 4 KiB, read a byte, drop.
    #[inline(always)]
    fn op(self, pool: &Buffers, src: &[u8; SIZE], i: usize) -> u8 {
        match self {
            Peer::Pool | Peer::PoolPerThread => {
                let mut buf = pool.get();
                buf.extend_from_slice(src);
                black_box(&mut buf[..]);
                buf[i % SIZE]
            }
            Peer::FreshZeroed => {
                let mut buf = vec![0u8; SIZE];
                buf.copy_from_slice(src);
                black_box(&mut buf[..]);
                buf[i % SIZE]
            }
            Peer::FreshWithCapacity => {
                let mut buf = Vec::with_capacity(SIZE);
                buf.extend_from_slice(src);
                black_box(&mut buf[..]);
                buf[i % SIZE]
            }
        }
    }
}

fn source() -> [u8; SIZE] {
    std::array::from_fn(|i| i as u8)
}

fn single_thread(c: &mut Criterion) {
    let mut g = c.benchmark_group("pool_single_thread");
    g.throughput(Throughput::Bytes(SIZE as u64));
    let pool = buffers();
    let src = source();
    for (peer, name) in Peer::ALL {
        let mut i = 0;
        g.bench_function(name, |b| {
            b.iter(|| {
                i += 1;
                black_box(peer.op(&pool, &src, i))
            })
        });
    }
    assert_eq!(pool.metrics().misses, 0);
    g.finish();
}

/// Two pinned threads make `OPS` operations each; returns the time until both are
/// done.
fn two(peer: Peer, pools: &[Buffers; 2], src: &[u8; SIZE]) -> Duration {
    let start = Barrier::new(2);
    thread::scope(|s| {
        let threads: Vec<_> = (0..2)
            .map(|core| {
                let start = &start;
                let pool = if peer == Peer::PoolPerThread {
                    &pools[core]
                } else {
                    &pools[0]
                };
                s.spawn(move || {
                    pin(core);
                    start.wait();
                    let began = Instant::now();
                    let mut sum = 0u64;
                    for i in 0..OPS as usize {
                        sum += u64::from(peer.op(pool, src, i));
                    }
                    black_box(sum);
                    began.elapsed()
                })
            })
            .collect();
        threads
            .into_iter()
            .map(|t| t.join().unwrap())
            .max()
            .unwrap()
    })
}

fn two_threads(c: &mut Criterion) {
    let mut g = c.benchmark_group("pool_two_threads");
    g.throughput(Throughput::Bytes(2 * OPS * SIZE as u64));
    g.sample_size(20);
    let pools = [buffers(), buffers()];
    let src = source();
    let peers = Peer::ALL
        .into_iter()
        .chain([(Peer::PoolPerThread, "membound_Pool_per_thread")]);
    for (peer, name) in peers {
        g.bench_function(BenchmarkId::new(name, OPS), |b| {
            b.iter_custom(|n| (0..n).map(|_| two(peer, &pools, &src)).sum())
        });
    }
    assert!(pools.iter().all(|p| p.metrics().misses == 0));
    g.finish();
}

criterion_group! {
    name = benches;
    config = config();
    targets = single_thread, two_threads
}
criterion_main!(benches);
