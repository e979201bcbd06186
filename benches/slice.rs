//! `SnapshotVec` read throughput against `std::sync::RwLock<Vec<T>>`, measured in
//! the same run.
//!
//! A read takes the current contents (a snapshot, a caching `Reader`'s slice, or a
//! read guard) and searches 32 `u64`s for a key. Scenarios:
//! - `read_1_thread`: one reader, no writer (the uncontended cost of a read);
//! - `read_2_threads_writer`: two readers (pinned to cores 0 and 1) each make
//!   `READS` reads while a third thread writes about every 50 µs (replaces one
//!   element), so the readers' throughput is measured under occasional writes.
//!
//! `parking_lot` is not a dependency of the crate, so it is not a peer here.
//!
//! Run: `cargo bench --bench slice`. The README quotes medians and ratios.
#![allow(missing_docs)]

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Barrier, RwLock};
use std::thread;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use membound::slice::SnapshotVec;

mod support;
use support::{config, pin};

const LEN: u64 = 32;
const READS: u64 = 100_000;

/// What every peer offers: `n` reads, each searching the contents for a key, and a
/// write.
trait Shared: Sync {
    fn reads(&self, n: u64) -> usize;
    fn write(&self, round: u64);
}

#[inline(always)]
fn search(items: &[u64], i: u64) -> usize {
    let key = black_box(i % LEN);
    items.iter().position(|x| *x == key).unwrap_or(0)
}

fn replace_one(items: &[u64], round: u64) -> Vec<u64> {
    let mut next = items.to_vec();
    next[(round % LEN) as usize] = round % LEN;
    next
}

impl Shared for SnapshotVec<u64> {
    fn reads(&self, n: u64) -> usize {
        (0..n).map(|i| search(&self.load(), i)).sum()
    }
    fn write(&self, round: u64) {
        self.update(|items| replace_one(items, round));
    }
}

/// `SnapshotVec` read through a caching `Reader`, one per reading thread.
struct Cached(SnapshotVec<u64>);

impl Shared for Cached {
    fn reads(&self, n: u64) -> usize {
        let mut reader = self.0.reader();
        (0..n).map(|i| search(reader.load(), i)).sum()
    }
    fn write(&self, round: u64) {
        self.0.write(round);
    }
}

impl Shared for RwLock<Vec<u64>> {
    fn reads(&self, n: u64) -> usize {
        (0..n).map(|i| search(&self.read().unwrap(), i)).sum()
    }
    fn write(&self, round: u64) {
        RwLock::write(self).unwrap()[(round % LEN) as usize] = round % LEN;
    }
}

/// Two pinned readers make `READS` reads each while a writer writes every ~50 µs;
/// returns the readers' time from the common start to the last one's finish.
fn read_with_writer(shared: &impl Shared) -> Duration {
    let start = Barrier::new(3);
    let done = AtomicBool::new(false);
    thread::scope(|s| {
        s.spawn(|| {
            start.wait();
            let mut round = 0;
            while !done.load(Ordering::Relaxed) {
                shared.write(round);
                round += 1;
                thread::sleep(Duration::from_micros(50));
            }
        });
        let readers: Vec<_> = (0..2)
            .map(|core| {
                let start = &start;
                s.spawn(move || {
                    pin(core);
                    start.wait();
                    let began = Instant::now();
                    black_box(shared.reads(READS));
                    began.elapsed()
                })
            })
            .collect();
        let elapsed = readers
            .into_iter()
            .map(|r| r.join().unwrap())
            .max()
            .unwrap();
        done.store(true, Ordering::Relaxed);
        elapsed
    })
}

fn contents() -> Vec<u64> {
    (0..LEN).collect()
}

fn read_1_thread(c: &mut Criterion) {
    let mut g = c.benchmark_group("read_1_thread");
    g.throughput(Throughput::Elements(1));
    let snapshot = SnapshotVec::from_vec(contents());
    g.bench_function("membound_SnapshotVec", |b| {
        b.iter(|| black_box(snapshot.reads(1)))
    });
    let cached = Cached(SnapshotVec::from_vec(contents()));
    g.bench_function("membound_SnapshotVec_Reader", |b| {
        let mut reader = cached.0.reader();
        let mut i = 0;
        b.iter(|| {
            i += 1;
            black_box(search(reader.load(), i))
        })
    });
    let lock = RwLock::new(contents());
    g.bench_function("std_RwLock_Vec", |b| b.iter(|| black_box(lock.reads(1))));
    g.finish();
}

fn read_2_threads_writer(c: &mut Criterion) {
    let mut g = c.benchmark_group("read_2_threads_writer");
    g.throughput(Throughput::Elements(2 * READS));
    g.sample_size(20);
    let id = |peer| BenchmarkId::new(peer, READS);
    let snapshot = SnapshotVec::from_vec(contents());
    g.bench_function(id("membound_SnapshotVec"), |b| {
        b.iter_custom(|n| (0..n).map(|_| read_with_writer(&snapshot)).sum())
    });
    let cached = Cached(SnapshotVec::from_vec(contents()));
    g.bench_function(id("membound_SnapshotVec_Reader"), |b| {
        b.iter_custom(|n| (0..n).map(|_| read_with_writer(&cached)).sum())
    });
    let lock = RwLock::new(contents());
    g.bench_function(id("std_RwLock_Vec"), |b| {
        b.iter_custom(|n| (0..n).map(|_| read_with_writer(&lock)).sum())
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = config();
    targets = read_1_thread, read_2_threads_writer
}
criterion_main!(benches);
