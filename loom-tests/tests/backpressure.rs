//! Loom models of `membound::backpressure`: the pause/resume transitions racing sends
//! and receives, and the producers' wait/wake path.
//!
//! A pause nobody lifts, or a lost wake-up, shows up as a deadlock (every thread
//! parked) or as a final state that is paused with the fill at the low mark.
#![cfg(loom)]

use loom::sync::Arc;
use loom::thread::{self, JoinHandle};
use membound::backpressure::{Backpressure, BackpressureConfig, SendError, WaterMarks};
use membound::policy::Wait;
use membound::OverflowPolicy;
use membound_loom_tests::{account, model_bounded};

/// Capacity 2, pause at 2 items, resume at 0.
fn channel(strategy: OverflowPolicy) -> Backpressure<u32> {
    Backpressure::new(
        BackpressureConfig::new(2)
            .with_policy(strategy)
            .with_water_marks(WaterMarks::new(0.0, 1.0).unwrap()),
    )
    .unwrap()
}

/// The Dekker pair of the module docs: a producer reaches the high mark while the
/// consumer drains the ring to the low mark. Whatever the interleaving, the channel
/// does not end paused with an empty ring (which would stall producers for good).
#[test]
fn pause_racing_the_drain_is_never_left_standing() {
    model_bounded(usize::MAX, || {
        let channel = Arc::new(channel(OverflowPolicy::Block));
        channel.try_send(1).unwrap();
        let producer = {
            let channel = channel.clone();
            thread::spawn(move || channel.try_send(2).map(|_| ()))
        };
        let mut seen = 0;
        for _ in 0..2 {
            if let Some(item) = channel.try_recv() {
                account(&mut seen, item);
            }
        }
        producer.join().unwrap().unwrap();
        while let Some(item) = channel.try_recv() {
            account(&mut seen, item);
        }
        assert_eq!(seen, 0b11);
        assert!(!channel.is_paused(), "paused with an empty ring");
        let m = channel.metrics();
        assert_eq!(m.high_water_hits, m.low_water_hits);
    });
}

/// A producer waiting out a pause is woken by the receive that brings the fill to
/// the low mark, and every item arrives once, in order.
#[test]
fn paused_send_is_woken_by_the_resume() {
    model_bounded(usize::MAX, || {
        let channel = Arc::new(channel(OverflowPolicy::Block));
        channel.try_send(1).unwrap();
        channel.try_send(2).unwrap();
        assert!(channel.is_paused());
        let producer = {
            let channel = channel.clone();
            thread::spawn(move || channel.send(4).map(|_| ()))
        };
        let mut got = Vec::new();
        while got.len() < 3 {
            got.push(channel.recv_wait(Wait::Forever).unwrap());
        }
        producer.join().unwrap().unwrap();
        assert_eq!(got, [1, 2, 4]);
        assert!(channel.is_empty());
    });
}

/// A producer waiting for room under `Block` (no water marks) is woken by the pop.
#[test]
fn full_send_is_woken_by_the_receive() {
    model_bounded(usize::MAX, || {
        let channel = Arc::new(
            Backpressure::new(
                BackpressureConfig::new(1)
                    .with_policy(OverflowPolicy::Block)
                    .without_water_marks(),
            )
            .unwrap(),
        );
        channel.try_send(1u32).unwrap();
        let producer = {
            let channel = channel.clone();
            thread::spawn(move || channel.send(2).map(|_| ()))
        };
        assert_eq!(channel.recv_wait(Wait::Forever), Ok(1));
        assert_eq!(channel.recv_wait(Wait::Forever), Ok(2));
        producer.join().unwrap().unwrap();
    });
}

/// `close` wakes a producer waiting out a pause and hands its item back; the
/// consumer still drains what was stored.
#[test]
fn close_wakes_a_paused_sender_with_its_item() {
    model_bounded(3, || {
        let channel = Arc::new(channel(OverflowPolicy::Block));
        channel.try_send(1).unwrap();
        channel.try_send(2).unwrap();
        let producer = {
            let channel = channel.clone();
            thread::spawn(move || channel.send(3))
        };
        channel.close();
        match producer.join().unwrap() {
            Err(SendError::Closed(3)) => {}
            other => panic!("expected Closed(3), got {other:?}"),
        }
        assert_eq!(channel.try_recv(), Some(1));
        assert_eq!(channel.try_recv(), Some(2));
        assert!(channel.recv_wait(Wait::Forever).is_err());
    });
}

/// A channel holding item 1, one below its pause mark, and two producers sending 2
/// and 4 with the waiting `send`.
fn at_the_edge() -> (
    Arc<Backpressure<u32>>,
    Vec<JoinHandle<Result<(), SendError<u32>>>>,
) {
    let channel = Arc::new(channel(OverflowPolicy::Block));
    channel.try_send(1).unwrap();
    let producers = [2, 4]
        .into_iter()
        .map(|item| {
            let channel = channel.clone();
            thread::spawn(move || channel.send(item).map(|_| ()))
        })
        .collect();
    (channel, producers)
}

/// Two producers at the edge: one may find the ring full before the other has
/// set the pause, and waits for room; receives that see the pause do not wake it,
/// the resume does. Every item arrives once.
///
/// Every party is a spawned thread and the main thread only joins: loom's `join`
/// does not tolerate the late `unpark` a woken waiter may still receive. Four
/// threads with waiting loops explode beyond one preemption (over ten minutes at
/// two), so this model is bounded at one; the two-party models above run at the
/// full bound.
#[test]
fn sender_waiting_for_room_is_woken_across_a_pause() {
    model_bounded(1, || {
        let (channel, producers) = at_the_edge();
        let consumer = {
            let channel = channel.clone();
            thread::spawn(move || {
                let mut seen = 0;
                for _ in 0..3 {
                    account(&mut seen, channel.recv_wait(Wait::Forever).unwrap());
                }
                seen
            })
        };
        for producer in producers {
            producer.join().unwrap().unwrap();
        }
        assert_eq!(consumer.join().unwrap(), 0b111);
        assert!(!channel.is_paused());
    });
}

/// The same edge with three threads, so it runs at a higher bound: the main thread
/// consumes with `try_recv` and yields (it never registers a waiter, so no late
/// `unpark` can reach it in `join`).
#[test]
fn senders_at_the_edge_against_a_polling_consumer() {
    model_bounded(3, || {
        let (channel, producers) = at_the_edge();
        let mut seen = 0;
        while seen != 0b111 {
            match channel.try_recv() {
                Some(item) => account(&mut seen, item),
                None => thread::yield_now(),
            }
        }
        for producer in producers {
            producer.join().unwrap().unwrap();
        }
        assert!(!channel.is_paused());
        assert!(channel.is_empty());
    });
}
