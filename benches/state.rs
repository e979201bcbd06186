//! State store write throughput against a `Mutex<serde_json::Value>` applying the
//! same patches with `json_patch::patch`, measured in the same run.
//!
//! The state holds 10 000 top-level keys, each `{"n": 0, "name": "..."}`. Every
//! patch is one `replace` of `/kNNNNN/n`; each thread writes its own keys (disjoint:
//! key % threads == thread). Peers:
//! - `membound`: `StateStore` with default settings (16 shards, history of 10 000
//!   revisions, so every patch is also recorded and the oldest trimmed);
//! - `mutex_value`: one `Mutex<Value>`, `json_patch::patch` under the lock (no
//!   history, no limits).
//!
//! Run on 1 and 2 threads (pinned on Linux); throughput is patches per second over
//! all threads. Bars from the issue: membound at least 1.0x the mutex on 1 thread,
//! at least 1.5x on 2.
//!
//! After the measurements it prints the heap the store's history takes for 10 000
//! revisions of ~100-byte patches over a 1 MB document (also asserted < 5 MB by
//! `tests/state_history_memory.rs`), counted by the crate's `TrackingAllocator`.
//!
//! Run: `cargo bench --bench state --features state`.
#![allow(missing_docs)]

use std::alloc::System;
use std::hint::black_box;
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use json_patch::{Patch, PatchOperation, ReplaceOperation};
use membound::adapters::state::{HistoryLimits, StateConfig, StateStore};
use membound::heap::TrackingAllocator;
use serde_json::{json, Map, Value};

mod support;
use support::{config, pin};

#[global_allocator]
static HEAP: TrackingAllocator<System> = TrackingAllocator::new(System);

const KEYS: usize = 10_000;
const PATCHES: usize = 20_000;

fn key(k: usize) -> String {
    format!("k{k:05}")
}

fn document() -> Value {
    let members: Map<String, Value> = (0..KEYS)
        .map(|k| (key(k), json!({"n": 0, "name": format!("item number {k}")})))
        .collect();
    Value::Object(members)
}

/// Thread `t` of `threads`: single-operation patches on its own keys.
fn patches(t: usize, threads: usize) -> Vec<Patch> {
    let mut x = 0x9E37_79B9_7F4A_7C15u64 ^ (t as u64 + 1);
    (0..PATCHES)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let k = (x as usize % (KEYS / threads)) * threads + t;
            let path = format!("/{}/n", key(k)).parse().unwrap();
            Patch(vec![PatchOperation::Replace(ReplaceOperation {
                path,
                value: json!(i),
            })])
        })
        .collect()
}

trait Peer: Sync {
    fn apply(&self, patch: &Patch);
}

impl Peer for StateStore {
    fn apply(&self, patch: &Patch) {
        black_box(StateStore::apply(self, patch).unwrap());
    }
}

impl Peer for Mutex<Value> {
    fn apply(&self, patch: &Patch) {
        let mut doc = self.lock().unwrap();
        json_patch::patch(&mut doc, patch).unwrap();
    }
}

fn measure<P: Peer>(peer: &P, work: &[Vec<Patch>], iters: u64) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let start = Instant::now();
        thread::scope(|s| {
            for (t, patches) in work.iter().enumerate() {
                s.spawn(move || {
                    pin(t);
                    for patch in patches {
                        peer.apply(patch);
                    }
                });
            }
        });
        total += start.elapsed();
    }
    total
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("state_single_op_10k_keys");
    for threads in [1, 2] {
        let work: Vec<Vec<Patch>> = (0..threads).map(|t| patches(t, threads)).collect();
        group.throughput(Throughput::Elements((PATCHES * threads) as u64));
        let store = StateStore::new(StateConfig::default()).unwrap();
        store
            .import(membound::adapters::state::StateSnapshot {
                revision: Default::default(),
                document: document(),
            })
            .unwrap();
        group.bench_function(BenchmarkId::new("membound", threads), |b| {
            b.iter_custom(|iters| measure(&store, &work, iters))
        });
        let mutex = Mutex::new(document());
        group.bench_function(BenchmarkId::new("mutex_value", threads), |b| {
            b.iter_custom(|iters| measure(&mutex, &work, iters))
        });
    }
    group.finish();
    history_memory();
}

/// Heap taken by 10 000 revisions of ~100-byte patches over a 1 MB document.
fn history_memory() {
    let store = StateStore::new(StateConfig {
        history: HistoryLimits {
            entries: 10_000,
            ..HistoryLimits::default()
        },
        ..StateConfig::default()
    })
    .unwrap();
    let big = "x".repeat(1000);
    let members: Map<String, Value> = (0..1000)
        .map(|k| (key(k), json!({"big": big, "small": format!("{:060}", 0)})))
        .collect();
    store
        .import(membound::adapters::state::StateSnapshot {
            revision: Default::default(),
            document: Value::Object(members),
        })
        .unwrap();
    let before = HEAP.live_bytes();
    let mut bytes = 0;
    for i in 0..10_000 {
        let patch = format!(
            r#"[{{"op":"replace","path":"/{}/small","value":"{:060}"}}]"#,
            key(i % 1000),
            i
        );
        bytes += patch.len();
        store.apply_json(&patch).unwrap();
    }
    let grown = HEAP.live_bytes().saturating_sub(before);
    println!(
        "state history memory: 10000 revisions, {bytes} bytes of patches as JSON, \
         {grown} bytes of heap over a {}-byte document",
        store.metrics().document_bytes
    );
}

criterion_group! {
    name = benches;
    config = config();
    targets = bench
}
criterion_main!(benches);
