//! `SnapshotVec` read throughput against `std::sync::RwLock<Vec<T>>`, measured in
//! the same run.
//!
//! A read takes the current contents (a snapshot, or a read guard) and searches 32
//! `u64`s for a key. Scenarios:
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

/// What every peer offers: a read that searches the contents, and a write.
trait Shared: Sync {
    fn read(&self, key: u64) -> Option<usize>;
    fn write(&self, round: u64);
}

impl Shared for SnapshotVec<u64> {
    #[inline]
    fn read(&self, key: u64) -> Option<usize> {
        self.load().position(|x| *x == key)
    }
    fn write(&self, round: u64) {
        self.update(|items| {
            let mut next = items.to_vec();
            next[(round % LEN) as usize] = round % LEN;
            next
        });
    }
}

impl Shared for RwLock<Vec<u64>> {
    #[inline]
    fn read(&self, key: u64) -> Option<usize> {
        RwLock::read(self).unwrap().iter().position(|x| *x == key)
    }
    fn write(&self, round: u64) {
        RwLock::write(self).unwrap()[(round % LEN) as usize] = round % LEN;
    }
}

fn reads(shared: &impl Shared, n: u64) -> usize {
    let mut found = 0;
    for i in 0..n {
        found += shared.read(black_box(i % LEN)).unwrap_or(0);
    }
    found
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
                    black_box(reads(shared, READS));
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
    let mut key = 0;
    g.bench_function("membound_SnapshotVec", |b| {
        b.iter(|| {
            key = (key + 1) % LEN;
            black_box(Shared::read(&snapshot, black_box(key)))
        })
    });
    let lock = RwLock::new(contents());
    g.bench_function("std_RwLock_Vec", |b| {
        b.iter(|| {
            key = (key + 1) % LEN;
            black_box(Shared::read(&lock, black_box(key)))
        })
    });
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
