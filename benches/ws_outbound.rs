//! The per-connection outbound queue's own cost against the plain queues it could
//! have been, measured in the same run, next to the cost of encoding one event.
//!
//! One round queues `BATCH` encoded frames (a realistic AG-UI mix: text deltas,
//! tool-call arguments, state deltas, a raw event) and takes them out again on one
//! thread, so what is measured is the queue operation, not contention:
//! - `outbound`: [`Outbound::offer`] then [`Outbound::try_next`] (mutex, class
//!   policies, byte accounting, metrics);
//! - `tokio_mpsc`: a bounded `tokio::sync::mpsc` channel, `try_send`/`try_recv`
//!   (what a plain tokio-tungstenite server would queue frames in);
//! - `ring`: the crate's lock-free MPMC [`Ring`], `try_push`/`pop` (no classes);
//! - `encode`: `BATCH` calls of [`Event::encode`] on a typical text delta, the
//!   work every broadcast does once per event.
//!
//! Run: `cargo bench --features ws --bench ws_outbound`.
#![allow(missing_docs)]

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use membound::adapters::ws::{Event, EventType, Frame, Next, Outbound, QueueConfig};
use membound::clock::MonotonicClock;
use membound::ring::Ring;

mod support;
use support::config;

const BATCH: usize = 64;

fn mix() -> Vec<Frame> {
    (0..BATCH)
        .map(|i| {
            let ev = match i % 8 {
                0..=3 => Event::new(EventType::TextMessageContent)
                    .with("messageId", "m1")
                    .with("delta", "some streamed words "),
                4 | 5 => Event::new(EventType::ToolCallArgs)
                    .with("toolCallId", "t1")
                    .with("delta", "{\"city\":"),
                6 => Event::new(EventType::StateDelta).with(
                    "delta",
                    serde_json::json!([{"op": "replace", "path": "/n", "value": i}]),
                ),
                _ => Event::new(EventType::Raw).with("event", "tick"),
            };
            ev.encode()
        })
        .collect()
}

fn queues(c: &mut Criterion) {
    let frames = mix();
    let mut group = c.benchmark_group("ws_outbound_round");
    group.throughput(Throughput::Elements(BATCH as u64));

    let outbound = Outbound::new(
        QueueConfig {
            capacity: BATCH,
            ..QueueConfig::default()
        },
        Arc::new(MonotonicClock::new()),
    )
    .unwrap();
    group.bench_function("outbound", |b| {
        b.iter(|| {
            for f in &frames {
                black_box(outbound.offer(f.clone()).unwrap());
            }
            while let Some(Next::Frame(f)) = outbound.try_next() {
                black_box(f);
            }
        })
    });

    let (tx, mut rx) = tokio::sync::mpsc::channel::<Frame>(BATCH);
    group.bench_function("tokio_mpsc", |b| {
        b.iter(|| {
            for f in &frames {
                tx.try_send(f.clone()).unwrap();
            }
            while let Ok(f) = rx.try_recv() {
                black_box(f);
            }
        })
    });

    let ring = Ring::<Frame>::new(BATCH).unwrap();
    group.bench_function("ring", |b| {
        b.iter(|| {
            for f in &frames {
                ring.try_push(f.clone()).unwrap();
            }
            while let Ok(f) = ring.pop() {
                black_box(f);
            }
        })
    });

    let event = Event::new(EventType::TextMessageContent)
        .with("messageId", "m1")
        .with("delta", "some streamed words ");
    group.bench_function("encode", |b| {
        b.iter(|| {
            for _ in 0..BATCH {
                black_box(black_box(&event).encode());
            }
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = config();
    targets = queues
}
criterion_main!(benches);
