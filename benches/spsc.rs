//! The SPSC channel against rtrb and ringbuf, measured in the same run.
//!
//! One producer thread (core 0) moves 1 000 000 u64 to one consumer thread (core 1)
//! through a ring of 1024 slots:
//! - `spsc_single`: one item per call (ours: `try_push`/`pop`; rtrb: `push`/`pop`;
//!   ringbuf: `try_push`/`try_pop`);
//! - `spsc_batch`: up to 64 items per call (ours: `push_slice`/`pop_slice`; rtrb:
//!   `write_chunk_uninit().fill_from_iter`/`read_chunk` + `commit_all`; ringbuf:
//!   `push_slice`/`pop_slice`).
//!
//! Every side retries the same way (spin, then yield). Run: `cargo bench --bench spsc`.
#![allow(missing_docs)]

use std::thread;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use membound::ring::spsc;
use ringbuf::traits::{Consumer as _, Producer as _, Split as _};

mod support;
use support::{config, pin, retry};

const CAP: usize = 1024;
const ITEMS: u64 = 1_000_000;
const BATCH: usize = 64;

/// Runs `produce` on core 0 and `consume` on core 1 (this thread), timing both.
fn run(produce: impl FnOnce() + Send + 'static, consume: impl FnOnce() -> u64) -> Duration {
    let start = Instant::now();
    let producer = thread::spawn(move || {
        pin(0);
        produce();
    });
    pin(1);
    let sum = consume();
    producer.join().unwrap();
    let elapsed = start.elapsed();
    assert_eq!(sum, ITEMS * (ITEMS - 1) / 2);
    elapsed
}

/// A single-item run: `push` stores one item or says it could not, `pop` takes one.
fn single(
    mut push: impl FnMut(u64) -> bool + Send + 'static,
    mut pop: impl FnMut() -> Option<u64>,
) -> Duration {
    run(
        move || {
            for i in 0..ITEMS {
                retry(|| push(i));
            }
        },
        move || {
            let mut sum = 0u64;
            for _ in 0..ITEMS {
                retry(|| match pop() {
                    Some(v) => {
                        sum += v;
                        true
                    }
                    None => false,
                });
            }
            sum
        },
    )
}

fn ours_single() -> Duration {
    let (mut tx, mut rx) = spsc::channel(CAP).unwrap();
    single(move |v| tx.try_push(v).is_ok(), move || rx.pop().ok())
}

fn rtrb_single() -> Duration {
    let (mut tx, mut rx) = rtrb::RingBuffer::new(CAP);
    single(move |v| tx.push(v).is_ok(), move || rx.pop().ok())
}

fn ringbuf_single() -> Duration {
    let (mut tx, mut rx) = ringbuf::HeapRb::<u64>::new(CAP).split();
    single(move |v| tx.try_push(v).is_ok(), move || rx.try_pop())
}

/// The producer's side of a batched run: `push` takes the next items (at most
/// `BATCH`) and returns how many it stored.
fn produce_batches(mut push: impl FnMut(&[u64]) -> usize) {
    let mut next = 0u64;
    let mut buf = [0u64; BATCH];
    while next < ITEMS {
        let n = BATCH.min((ITEMS - next) as usize);
        for (k, slot) in buf[..n].iter_mut().enumerate() {
            *slot = next + k as u64;
        }
        let mut done = 0;
        while done < n {
            let mut stored = 0;
            retry(|| {
                stored = push(&buf[done..n]);
                stored > 0
            });
            done += stored;
        }
        next += n as u64;
    }
}

/// The consumer's side of a batched run: `pop` fills the buffer and returns how
/// many it took.
fn consume_batches(mut pop: impl FnMut(&mut [u64]) -> usize) -> u64 {
    let mut buf = [0u64; BATCH];
    let mut sum = 0u64;
    let mut got = 0u64;
    while got < ITEMS {
        let mut n = 0;
        retry(|| {
            n = pop(&mut buf);
            n > 0
        });
        sum += buf[..n].iter().sum::<u64>();
        got += n as u64;
    }
    sum
}

fn ours_batch() -> Duration {
    let (mut tx, mut rx) = spsc::channel(CAP).unwrap();
    run(
        move || produce_batches(|items| tx.push_slice(items)),
        move || consume_batches(|out| rx.pop_slice(out)),
    )
}

fn rtrb_batch() -> Duration {
    let (mut tx, mut rx) = rtrb::RingBuffer::new(CAP);
    run(
        move || {
            produce_batches(|items| {
                let n = items.len().min(tx.slots());
                match tx.write_chunk_uninit(n) {
                    Ok(chunk) => chunk.fill_from_iter(items.iter().copied()),
                    Err(_) => 0,
                }
            })
        },
        move || {
            consume_batches(|out| {
                let n = out.len().min(rx.slots());
                match rx.read_chunk(n) {
                    Ok(chunk) => {
                        let (a, b) = chunk.as_slices();
                        out[..a.len()].copy_from_slice(a);
                        out[a.len()..a.len() + b.len()].copy_from_slice(b);
                        chunk.commit_all();
                        n
                    }
                    Err(_) => 0,
                }
            })
        },
    )
}

fn ringbuf_batch() -> Duration {
    let (mut tx, mut rx) = ringbuf::HeapRb::<u64>::new(CAP).split();
    run(
        move || produce_batches(|items| tx.push_slice(items)),
        move || consume_batches(|out| rx.pop_slice(out)),
    )
}

fn spsc(c: &mut Criterion) {
    for (group, peers) in [
        (
            "spsc_single",
            [
                ("membound", ours_single as fn() -> Duration),
                ("rtrb", rtrb_single),
                ("ringbuf", ringbuf_single),
            ],
        ),
        (
            "spsc_batch",
            [
                ("membound", ours_batch as fn() -> Duration),
                ("rtrb", rtrb_batch),
                ("ringbuf", ringbuf_batch),
            ],
        ),
    ] {
        let mut g = c.benchmark_group(group);
        g.throughput(Throughput::Elements(ITEMS));
        g.sample_size(20);
        for (name, run) in peers {
            g.bench_function(name, |b| {
                b.iter_custom(|iters| (0..iters).map(|_| run()).sum())
            });
        }
        g.finish();
    }
}

criterion_group! {
    name = benches;
    config = config();
    targets = spsc
}
criterion_main!(benches);
