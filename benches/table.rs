//! TTL table throughput against its peers, measured in the same run.
//!
//! Peers, all `u64 -> u64`:
//! - `membound`: `TtlTable` with a 10-minute TTL on a `CoarseClock` of 1 ms
//!   resolution, its default randomly seeded foldhash and default amortized sweeping
//!   (4 slots per insert);
//! - `membound_instant`: the same on `MonotonicClock`, which reads `Instant::now()`
//!   on every operation: the difference is the cost of the clock;
//! - `dashmap`: `DashMap` (no TTL), default hasher;
//! - `moka`: `moka::sync::Cache` with `time_to_live` of 10 minutes;
//! - `scc`: `scc::HashMap` (no TTL), default hasher;
//! - `quick_cache`: `quick_cache::sync::Cache` (no TTL; S3-FIFO eviction) with room
//!   for 32 768 entries, so it evicts nothing here either.
//!
//! Workloads over 16 384 keys, prefilled, in tables sized for 32 768 entries (so no
//! policy-driven eviction happens):
//! - `read_heavy`: 98 % `get`, 2 % `insert` (of an existing key: a replacement);
//! - `churn`: one third each `insert`, `remove`, `get` of random keys.
//!
//! Each runs on 1 and 2 threads (pinned on Linux), every thread doing `OPS` operations
//! from the same pre-generated key sequence for every peer. Throughput is operations
//! per second over all threads.
//!
//! Run: `cargo bench --bench table`.
#![allow(missing_docs)]

use std::hint::black_box;
use std::thread;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use membound::clock::{Clock, CoarseClock, MonotonicClock};
use membound::table::TtlTable;

mod support;
use support::pin;

const KEYS: u64 = 16_384;
const CAP: usize = 32_768;
const OPS: usize = 100_000;
const TTL: Duration = Duration::from_secs(600);

/// The operations every peer offers.
trait Map: Sync {
    fn get(&self, k: u64) -> Option<u64>;
    fn insert(&self, k: u64, v: u64);
    fn remove(&self, k: u64);
}

impl<C: Clock + Sync> Map for TtlTable<u64, u64, C> {
    #[inline]
    fn get(&self, k: u64) -> Option<u64> {
        TtlTable::get(self, &k)
    }
    #[inline]
    fn insert(&self, k: u64, v: u64) {
        let _ = TtlTable::insert(self, k, v);
    }
    #[inline]
    fn remove(&self, k: u64) {
        TtlTable::remove(self, &k);
    }
}

impl Map for dashmap::DashMap<u64, u64> {
    #[inline]
    fn get(&self, k: u64) -> Option<u64> {
        dashmap::DashMap::get(self, &k).map(|r| *r)
    }
    #[inline]
    fn insert(&self, k: u64, v: u64) {
        dashmap::DashMap::insert(self, k, v);
    }
    #[inline]
    fn remove(&self, k: u64) {
        dashmap::DashMap::remove(self, &k);
    }
}

impl Map for moka::sync::Cache<u64, u64> {
    #[inline]
    fn get(&self, k: u64) -> Option<u64> {
        moka::sync::Cache::get(self, &k)
    }
    #[inline]
    fn insert(&self, k: u64, v: u64) {
        moka::sync::Cache::insert(self, k, v);
    }
    #[inline]
    fn remove(&self, k: u64) {
        moka::sync::Cache::invalidate(self, &k);
    }
}

impl Map for scc::HashMap<u64, u64> {
    #[inline]
    fn get(&self, k: u64) -> Option<u64> {
        self.read(&k, |_, v| *v)
    }
    #[inline]
    fn insert(&self, k: u64, v: u64) {
        self.upsert(k, v);
    }
    #[inline]
    fn remove(&self, k: u64) {
        scc::HashMap::remove(self, &k);
    }
}

impl Map for quick_cache::sync::Cache<u64, u64> {
    #[inline]
    fn get(&self, k: u64) -> Option<u64> {
        quick_cache::sync::Cache::get(self, &k)
    }
    #[inline]
    fn insert(&self, k: u64, v: u64) {
        quick_cache::sync::Cache::insert(self, k, v);
    }
    #[inline]
    fn remove(&self, k: u64) {
        quick_cache::sync::Cache::remove(self, &k);
    }
}

#[derive(Clone, Copy)]
enum Workload {
    ReadHeavy,
    Churn,
}

/// Pre-generated (key, op selector) pairs for thread `t`, identical for every peer.
fn sequence(t: usize) -> Vec<(u64, u8)> {
    let mut x = 0x9E37_79B9_7F4A_7C15u64 ^ (t as u64 + 1);
    (0..OPS)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % KEYS, (x >> 32) as u8 % 100)
        })
        .collect()
}

fn run_thread<M: Map>(map: &M, ops: &[(u64, u8)], workload: Workload) -> u64 {
    let mut sum = 0u64;
    for &(k, sel) in ops {
        match workload {
            Workload::ReadHeavy => {
                if sel < 2 {
                    map.insert(k, sel.into());
                } else {
                    sum = sum.wrapping_add(map.get(k).unwrap_or(1));
                }
            }
            Workload::Churn => match sel % 3 {
                0 => map.insert(k, sel.into()),
                1 => map.remove(k),
                _ => sum = sum.wrapping_add(map.get(k).unwrap_or(1)),
            },
        }
    }
    sum
}

fn measure<M: Map>(map: &M, seqs: &[Vec<(u64, u8)>], workload: Workload, iters: u64) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let start = Instant::now();
        thread::scope(|s| {
            for (t, ops) in seqs.iter().enumerate() {
                s.spawn(move || {
                    pin(t);
                    black_box(run_thread(map, ops, workload))
                });
            }
        });
        total += start.elapsed();
    }
    total
}

fn prefill<M: Map>(map: &M) {
    for k in 0..KEYS {
        map.insert(k, k);
    }
}

fn bench(c: &mut Criterion) {
    for (name, workload) in [
        ("read_heavy", Workload::ReadHeavy),
        ("churn", Workload::Churn),
    ] {
        let mut group = c.benchmark_group(format!("table_{name}"));
        for threads in [1usize, 2] {
            let seqs: Vec<_> = (0..threads).map(sequence).collect();
            group.throughput(Throughput::Elements((OPS * threads) as u64));

            let clock = CoarseClock::new(Duration::from_millis(1)).unwrap();
            let table: TtlTable<u64, u64, _> = TtlTable::new(CAP, TTL, clock).unwrap();
            prefill(&table);
            group.bench_function(BenchmarkId::new("membound", threads), |b| {
                b.iter_custom(|iters| measure(&table, &seqs, workload, iters))
            });

            let table: TtlTable<u64, u64, _> =
                TtlTable::new(CAP, TTL, MonotonicClock::new()).unwrap();
            prefill(&table);
            group.bench_function(BenchmarkId::new("membound_instant", threads), |b| {
                b.iter_custom(|iters| measure(&table, &seqs, workload, iters))
            });

            let dash = dashmap::DashMap::with_capacity(CAP);
            prefill(&dash);
            group.bench_function(BenchmarkId::new("dashmap", threads), |b| {
                b.iter_custom(|iters| measure(&dash, &seqs, workload, iters))
            });

            let moka = moka::sync::Cache::builder()
                .max_capacity(CAP as u64)
                .time_to_live(TTL)
                .build();
            prefill(&moka);
            group.bench_function(BenchmarkId::new("moka", threads), |b| {
                b.iter_custom(|iters| measure(&moka, &seqs, workload, iters))
            });

            let scc = scc::HashMap::with_capacity(CAP);
            prefill(&scc);
            group.bench_function(BenchmarkId::new("scc", threads), |b| {
                b.iter_custom(|iters| measure(&scc, &seqs, workload, iters))
            });

            let quick = quick_cache::sync::Cache::new(CAP);
            prefill(&quick);
            group.bench_function(BenchmarkId::new("quick_cache", threads), |b| {
                b.iter_custom(|iters| measure(&quick, &seqs, workload, iters))
            });
        }
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
