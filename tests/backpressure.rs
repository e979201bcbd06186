//! `membound::backpressure`: strategies, water marks with hysteresis, waiting sends
//! (blocking, timed, async), close, metrics, soft capacity, exactly-once delivery
//! under contention, and zero allocation on the send/receive paths.

#![cfg(feature = "std")]

#[path = "support/counting_alloc.rs"]
mod counting_alloc;
#[path = "support/executor.rs"]
mod executor;

use std::collections::HashSet;
use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::thread;
use std::time::Duration;

use membound::backpressure::{
    Backpressure, BackpressureConfig, FlowState, SendError, Transition, WaterMarks,
};
use membound::capacity::SoftCapacity;
use membound::clock::{Clock, ManualClock};
use membound::policy::Wait;
use membound::ring::{PopWaitError, Pushed};
use membound::ConfigError;
use membound::OverflowPolicy;

#[global_allocator]
static GLOBAL: counting_alloc::Counting = counting_alloc::Counting;

fn config(capacity: usize, strategy: OverflowPolicy, low: f64, high: f64) -> BackpressureConfig {
    BackpressureConfig::new(capacity)
        .with_policy(strategy)
        .with_water_marks(WaterMarks::new(low, high).unwrap())
}

/// Records every transition the hook reports.
fn recording(config: BackpressureConfig) -> (Backpressure<u64>, Arc<Mutex<Vec<Transition>>>) {
    let log = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&log);
    let channel = Backpressure::new(config)
        .unwrap()
        .on_transition(move |t| sink.lock().unwrap().push(t));
    (channel, log)
}

/// Spins (yielding) until `cond` holds: waits for another thread to reach a state,
/// without assuming anything about how long that takes.
fn until(mut cond: impl FnMut() -> bool) {
    while !cond() {
        thread::yield_now();
    }
}

#[test]
fn invalid_configs_are_errors() {
    for (low, high) in [
        (0.5, 0.5),
        (0.8, 0.2),
        (-0.1, 0.5),
        (0.1, 1.1),
        (f64::NAN, 0.5),
        (0.1, f64::NAN),
        (0.0, 0.0),
    ] {
        assert!(
            matches!(
                WaterMarks::new(low, high),
                Err(ConfigError::WaterMarks { .. })
            ),
            "{low} {high}"
        );
    }
    assert!(matches!(
        Backpressure::<u8>::new(BackpressureConfig::new(0)),
        Err(ConfigError::ZeroCapacity)
    ));
    // Fields set directly are validated too.
    let mut bad = BackpressureConfig::new(4);
    bad.water_marks = Some(WaterMarks::new(0.1, 0.2).unwrap());
    assert!(bad.validate().is_ok());
    let err = BackpressureConfig::new(4).with_max_capacity(2).validate();
    assert!(
        matches!(err, Err(ConfigError::MaxBelowCapacity { .. })),
        "{err:?}"
    );
    assert!(!format!("{}", WaterMarks::new(0.9, 0.1).unwrap_err()).is_empty());
}

#[test]
fn strategy_none_refuses_and_hands_the_item_back() {
    let channel = Backpressure::new(
        BackpressureConfig::new(2)
            .with_policy(OverflowPolicy::Reject)
            .without_water_marks(),
    )
    .unwrap();
    assert_eq!(channel.try_send(1).unwrap(), Pushed::Stored);
    assert_eq!(channel.send(2).unwrap(), Pushed::Stored);
    assert!(matches!(channel.try_send(3), Err(SendError::Full(3))));
    assert!(matches!(channel.send(4), Err(SendError::Full(4))));
    let m = channel.metrics();
    assert_eq!((m.sent, m.rejected_full, m.blocked), (2, 2, 0));
    assert_eq!(channel.try_recv(), Some(1));
    assert_eq!(channel.try_recv(), Some(2));
    assert_eq!(channel.try_recv(), None);
}

#[test]
fn dropping_strategies_drop_and_count() {
    let oldest = Backpressure::new(
        BackpressureConfig::new(2)
            .with_policy(OverflowPolicy::DropOldest)
            .without_water_marks(),
    )
    .unwrap();
    for i in 0..5 {
        oldest.send(i).unwrap();
    }
    assert_eq!(oldest.try_send(5).unwrap(), Pushed::DroppedOldest);
    assert_eq!(oldest.try_recv(), Some(4));
    assert_eq!(oldest.try_recv(), Some(5));
    let m = oldest.metrics();
    assert_eq!((m.sent, m.dropped_oldest, m.received), (6, 4, 2));

    let newest = Backpressure::new(
        BackpressureConfig::new(2)
            .with_policy(OverflowPolicy::DropNewest)
            .without_water_marks(),
    )
    .unwrap();
    for i in 0..5 {
        newest.send(i).unwrap();
    }
    assert_eq!(newest.try_send(5).unwrap(), Pushed::DroppedNewest);
    assert_eq!(newest.try_recv(), Some(0));
    assert_eq!(newest.try_recv(), Some(1));
    let m = newest.metrics();
    assert_eq!((m.sent, m.dropped_newest), (2, 4));
}

/// Runs `scenario` on its own thread and returns its result, or fails the test if it
/// has not returned after a generous grace period: a send that blocks for good fails
/// the test instead of hanging the suite (the blocked thread is abandoned).
fn returns<R: Send + 'static>(scenario: impl FnOnce() -> R + Send + 'static) -> R {
    let (done, result) = std::sync::mpsc::channel();
    thread::spawn(move || {
        let _ = done.send(scenario());
    });
    match result.recv_timeout(Duration::from_secs(20)) {
        Ok(value) => value,
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            panic!("the scenario never returned: a send blocked")
        }
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => panic!("the scenario panicked"),
    }
}

/// The water marks make only the waiting strategies wait: with the default marks and
/// no receiver, `send` under `DropOldest`, `DropNewest` and `None` never waits at or
/// past the high mark. The dropping strategies drop (counted) as when full, `None`
/// refuses with `Paused`; the pause is still reported.
#[test]
fn non_waiting_strategies_never_block_at_the_high_mark() {
    returns(|| {
        // Capacity 2, default marks (0.5, 0.9): the channel pauses at 2 items.
        let oldest =
            Backpressure::new(BackpressureConfig::new(2).with_policy(OverflowPolicy::DropOldest))
                .unwrap();
        assert_eq!(oldest.send(0).unwrap(), Pushed::Stored);
        assert_eq!(oldest.send(1).unwrap(), Pushed::Stored);
        assert!(oldest.is_paused(), "the pause is reported");
        for i in 2..5 {
            assert_eq!(oldest.send(i).unwrap(), Pushed::DroppedOldest);
        }
        assert_eq!(oldest.try_send(5).unwrap(), Pushed::DroppedOldest);
        assert_eq!(
            oldest
                .send_wait(6, Wait::Timeout(Duration::from_secs(60)))
                .unwrap(),
            Pushed::DroppedOldest
        );
        let m = oldest.metrics();
        assert_eq!((m.dropped_oldest, m.blocked, m.rejected_paused), (5, 0, 0));
        assert_eq!(m.high_water_hits, 1);
        assert_eq!(oldest.try_recv(), Some(5));
        assert_eq!(oldest.try_recv(), Some(6));

        let newest =
            Backpressure::new(BackpressureConfig::new(2).with_policy(OverflowPolicy::DropNewest))
                .unwrap();
        newest.send(0).unwrap();
        newest.send(1).unwrap();
        assert!(newest.is_paused());
        assert_eq!(newest.send(2).unwrap(), Pushed::DroppedNewest);
        assert_eq!(newest.try_send(3).unwrap(), Pushed::DroppedNewest);
        let m = newest.metrics();
        assert_eq!((m.dropped_newest, m.blocked, m.rejected_paused), (2, 0, 0));

        // `None` refuses rather than waits: while paused, with `Paused`, at once.
        let none =
            Backpressure::new(BackpressureConfig::new(10).with_policy(OverflowPolicy::Reject))
                .unwrap();
        for i in 0..9 {
            none.send(i).unwrap();
        }
        assert!(none.is_paused(), "paused at 9 of 10");
        assert!(matches!(none.send(9), Err(SendError::Paused(9))));
        assert!(matches!(
            none.send_wait(10, Wait::Timeout(Duration::from_secs(60))),
            Err(SendError::Paused(10))
        ));
        assert!(matches!(none.try_send(11), Err(SendError::Paused(11))));
        let m = none.metrics();
        assert_eq!((m.rejected_paused, m.blocked, m.len), (3, 0, 9));
    });
}

/// An async send under a dropping strategy is ready at once while paused.
#[test]
fn async_dropping_sends_are_ready_while_paused() {
    let channel =
        Backpressure::new(BackpressureConfig::new(2).with_policy(OverflowPolicy::DropOldest))
            .unwrap();
    channel.try_send(0).unwrap();
    channel.try_send(1).unwrap();
    assert!(channel.is_paused());
    let mut send = pin!(channel.send_async(2));
    let mut cx = Context::from_waker(Waker::noop());
    assert!(matches!(
        send.as_mut().poll(&mut cx),
        Poll::Ready(Ok(Pushed::DroppedOldest))
    ));
}

#[test]
fn block_try_send_is_full_and_send_waits_for_room() {
    let channel = Arc::new(
        Backpressure::new(
            BackpressureConfig::new(1)
                .with_policy(OverflowPolicy::Block)
                .without_water_marks(),
        )
        .unwrap(),
    );
    channel.send(1).unwrap();
    assert!(matches!(channel.try_send(2), Err(SendError::Full(2))));
    let producer = {
        let channel = Arc::clone(&channel);
        thread::spawn(move || channel.send(3))
    };
    until(|| channel.metrics().producers_waiting == 1);
    assert_eq!(channel.len(), 1, "the waiting send stored nothing");
    assert_eq!(channel.recv_wait(Wait::Forever), Ok(1));
    assert_eq!(producer.join().unwrap().unwrap(), Pushed::Stored);
    assert_eq!(channel.recv_wait(Wait::Forever), Ok(3));
    let m = channel.metrics();
    assert_eq!((m.blocked, m.rejected_full, m.timeouts), (1, 1, 0));
}

#[test]
fn block_with_timeout_gives_the_item_back() {
    let channel = Backpressure::new(
        BackpressureConfig::new(1)
            .with_policy(OverflowPolicy::BlockTimeout(Duration::from_millis(5)))
            .without_water_marks(),
    )
    .unwrap();
    channel.send("kept").unwrap();
    assert!(matches!(
        channel.send("late"),
        Err(SendError::Timeout("late"))
    ));
    assert!(matches!(
        channel.send_wait("later", Wait::Timeout(Duration::ZERO)),
        Err(SendError::Timeout("later"))
    ));
    let m = channel.metrics();
    assert_eq!((m.timeouts, m.blocked, m.sent), (2, 2, 1));
    assert_eq!(channel.try_recv(), Some("kept"));
}

/// The water marks pause at `ceil(high × cap)` and resume at `floor(low × cap)`,
/// reporting each transition once; crossing back and forth between the marks does
/// not flap.
#[test]
fn water_marks_have_hysteresis() {
    // Capacity 10: pause at 8 items, resume at 3.
    let (channel, log) = recording(config(10, OverflowPolicy::Block, 0.3, 0.75));
    for i in 0..7 {
        channel.try_send(i).unwrap();
    }
    assert!(!channel.is_paused());
    channel.try_send(7).unwrap();
    assert_eq!(channel.state(), FlowState::Paused);
    assert!(matches!(channel.try_send(8), Err(SendError::Paused(8))));
    // Between the marks it stays paused, whichever way the fill moves.
    for _ in 0..4 {
        channel.try_recv().unwrap();
        assert!(channel.is_paused());
    }
    channel.try_recv().unwrap(); // 3 left: the low mark
    assert!(!channel.is_paused());
    // Back up to 7 (below the high mark) and down again: no transition.
    for _ in 0..3 {
        for i in 0..4 {
            channel.try_send(i).unwrap();
        }
        for _ in 0..4 {
            channel.try_recv().unwrap();
        }
    }
    let log = log.lock().unwrap().clone();
    assert_eq!(
        log,
        [
            Transition {
                from: FlowState::Flowing,
                to: FlowState::Paused,
                len: 8,
                capacity: 10
            },
            Transition {
                from: FlowState::Paused,
                to: FlowState::Flowing,
                len: 3,
                capacity: 10
            },
        ]
    );
    let m = channel.metrics();
    assert_eq!(
        (m.high_water_hits, m.low_water_hits, m.rejected_paused),
        (1, 1, 1)
    );
}

#[test]
fn marks_round_so_the_hysteresis_never_collapses() {
    for capacity in 1..=64 {
        for (low, high) in [
            (0.0, 1.0),
            (0.49, 0.5),
            (0.5, 0.51),
            (0.0, 0.01),
            (0.99, 1.0),
        ] {
            let channel =
                Backpressure::new(config(capacity, OverflowPolicy::Reject, low, high)).unwrap();
            let mut sent = 0;
            while !channel.is_paused() {
                channel.try_send(sent).unwrap();
                sent += 1;
            }
            let pause_at = sent;
            assert!(
                pause_at >= 1 && pause_at <= capacity,
                "{capacity} {low} {high}"
            );
            assert!(pause_at as f64 >= high * capacity as f64 - 1e-9);
            let mut left = pause_at;
            while channel.is_paused() {
                channel.try_recv().unwrap();
                left -= 1;
            }
            assert!(left < pause_at, "resumed below the pause mark");
            assert!(left as f64 <= low * capacity as f64 + 1e-9);
        }
    }
}

/// A waiting send does not store while paused: it waits until the fill falls to
/// the low mark, then goes through. `try_send` meanwhile says `Paused`.
#[test]
fn paused_producers_wait_until_the_low_mark() {
    let channel = Arc::new(Backpressure::new(config(8, OverflowPolicy::Block, 0.25, 0.5)).unwrap());
    for i in 0..4 {
        channel.send(i).unwrap(); // the 4th reaches the high mark
    }
    assert!(channel.is_paused());
    let producer = {
        let channel = Arc::clone(&channel);
        thread::spawn(move || channel.send(100))
    };
    until(|| channel.metrics().producers_waiting == 1);
    assert_eq!(channel.len(), 4);
    assert_eq!(channel.try_recv(), Some(0));
    assert_eq!(channel.try_recv(), Some(1));
    // 2 left: the low mark (floor(0.25 × 8)); the producer goes through.
    assert_eq!(producer.join().unwrap().unwrap(), Pushed::Stored);
    assert!(!channel.is_paused());
    assert_eq!(channel.len(), 3);
    assert_eq!(channel.metrics().blocked, 1);
}

/// Blocked time is measured on the channel's clock: with a manual clock advanced
/// while the producer waits, it is exactly the advance.
#[test]
fn blocked_time_is_measured_on_the_clock() {
    let clock = Arc::new(ManualClock::new(Duration::from_millis(1)).unwrap());
    let channel = Arc::new(
        Backpressure::with_clock(
            config(2, OverflowPolicy::Block, 0.0, 1.0),
            Arc::clone(&clock),
        )
        .unwrap(),
    );
    channel.send(1).unwrap();
    channel.send(2).unwrap();
    let producer = {
        let channel = Arc::clone(&channel);
        thread::spawn(move || channel.send(3))
    };
    until(|| channel.metrics().producers_waiting == 1);
    clock.advance_by(Duration::from_secs(5));
    channel.recv_wait(Wait::Forever).unwrap();
    channel.recv_wait(Wait::Forever).unwrap();
    producer.join().unwrap().unwrap();
    assert_eq!(channel.metrics().blocked_time, Duration::from_secs(5));
    assert_eq!(clock.now(), 5000);
}

#[test]
fn close_wakes_blocked_producers_with_their_items() {
    let channel = Arc::new(Backpressure::new(config(2, OverflowPolicy::Block, 0.0, 1.0)).unwrap());
    channel.send(1).unwrap();
    channel.send(2).unwrap();
    let producers: Vec<_> = (10..13)
        .map(|i| {
            let channel = Arc::clone(&channel);
            thread::spawn(move || channel.send(i))
        })
        .collect();
    until(|| channel.metrics().producers_waiting == 3);
    assert!(channel.close());
    assert!(!channel.close());
    let mut back: Vec<u64> = producers
        .into_iter()
        .map(|p| match p.join().unwrap() {
            Err(SendError::Closed(item)) => item,
            other => panic!("expected Closed, got {other:?}"),
        })
        .collect();
    back.sort_unstable();
    assert_eq!(back, [10, 11, 12]);
    // Consumers drain what was stored, then see the close.
    assert_eq!(channel.recv_wait(Wait::Forever), Ok(1));
    assert_eq!(channel.recv_wait(Wait::Forever), Ok(2));
    assert_eq!(channel.recv_wait(Wait::Forever), Err(PopWaitError::Closed));
    assert!(matches!(channel.try_send(5), Err(SendError::Closed(5))));
}

struct Flag(AtomicUsize);

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn async_send_waits_out_a_pause_and_is_woken() {
    let channel = Backpressure::new(config(4, OverflowPolicy::Block, 0.0, 0.5)).unwrap();
    channel.try_send(1).unwrap();
    channel.try_send(2).unwrap();
    assert!(channel.is_paused());
    let flag = Arc::new(Flag(AtomicUsize::new(0)));
    let waker = Waker::from(Arc::clone(&flag));
    let mut cx = Context::from_waker(&waker);
    let mut send = pin!(channel.send_async(3));
    assert!(send.as_mut().poll(&mut cx).is_pending());
    assert_eq!(channel.metrics().producers_waiting, 1);
    assert_eq!(channel.try_recv(), Some(1));
    assert_eq!(flag.0.load(Ordering::SeqCst), 0, "woken above the low mark");
    assert_eq!(channel.try_recv(), Some(2));
    assert_eq!(
        flag.0.load(Ordering::SeqCst),
        1,
        "the resume wakes the sender"
    );
    assert_eq!(send.as_mut().poll(&mut cx), Poll::Ready(Ok(Pushed::Stored)));
    assert_eq!(executor::block_on(channel.recv_async()), Ok(3));
    assert_eq!(channel.metrics().blocked, 1);
}

/// A dropped pending send leaves no waiter behind, and passes on a wake-up it got
/// but did not use, so the other waiting sender still goes through.
#[test]
fn dropping_a_woken_async_send_passes_the_wake_on() {
    let channel = Backpressure::new(
        BackpressureConfig::new(1)
            .with_policy(OverflowPolicy::Block)
            .without_water_marks(),
    )
    .unwrap();
    channel.try_send(0u8).unwrap();
    let flags = [
        Arc::new(Flag(AtomicUsize::new(0))),
        Arc::new(Flag(AtomicUsize::new(0))),
    ];
    let wakers = flags.clone().map(Waker::from);
    let mut second = Box::pin(channel.send_async(2));
    {
        let mut first = pin!(channel.send_async(1));
        assert!(first
            .as_mut()
            .poll(&mut Context::from_waker(&wakers[0]))
            .is_pending());
        assert!(second
            .as_mut()
            .poll(&mut Context::from_waker(&wakers[1]))
            .is_pending());
        assert_eq!(channel.try_recv(), Some(0)); // wakes the first only
        assert_eq!(flags[0].0.load(Ordering::SeqCst), 1);
        assert_eq!(flags[1].0.load(Ordering::SeqCst), 0);
    } // the first is dropped without being polled again
    assert_eq!(flags[1].0.load(Ordering::SeqCst), 1, "wake-up passed on");
    assert_eq!(
        second.as_mut().poll(&mut Context::from_waker(&wakers[1])),
        Poll::Ready(Ok(Pushed::Stored))
    );
    assert_eq!(channel.metrics().producers_waiting, 0);
}

#[test]
fn raising_the_capacity_ends_a_pause() {
    let channel =
        Backpressure::new(config(4, OverflowPolicy::Block, 0.25, 0.5).with_max_capacity(16))
            .unwrap();
    for i in 0..2 {
        channel.try_send(i).unwrap();
    }
    assert!(channel.is_paused());
    // At 16 the low mark is 4 items: 2 stored is below it.
    channel.set_capacity(16).unwrap();
    assert!(!channel.is_paused());
    assert_eq!(SoftCapacity::capacity(&channel), 16);
    assert!(channel.set_capacity(17).is_err());
    assert!(channel.set_capacity(0).is_err());
}

/// Counts drops per id, so a test can check every value was dropped exactly once.
struct Tracked {
    id: u64,
    drops: Arc<Vec<AtomicU64>>,
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.drops[self.id as usize].fetch_add(1, Ordering::Relaxed);
    }
}

/// Producers and consumers race on a small channel with water marks; every item is
/// accounted exactly once (received, dropped by the strategy, or handed back), and
/// every value is dropped exactly once.
fn exactly_once(strategy: OverflowPolicy) {
    const PRODUCERS: u64 = 3;
    const PER: u64 = 3_000;
    let total = (PRODUCERS * PER) as usize;
    let drops = Arc::new((0..total).map(|_| AtomicU64::new(0)).collect::<Vec<_>>());
    let channel = Arc::new(Backpressure::new(config(8, strategy, 0.25, 0.75)).unwrap());
    let handed_back = Arc::new(AtomicU64::new(0));
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            let channel = Arc::clone(&channel);
            let drops = Arc::clone(&drops);
            let handed_back = Arc::clone(&handed_back);
            thread::spawn(move || {
                for i in 0..PER {
                    let item = Tracked {
                        id: p * PER + i,
                        drops: Arc::clone(&drops),
                    };
                    let sent = if i % 3 == 0 {
                        channel.try_send(item)
                    } else {
                        channel.send(item)
                    };
                    if let Err(e) = sent {
                        assert!(
                            !matches!(e, SendError::Closed(_)),
                            "closed before the producers finished"
                        );
                        drop(e.into_inner());
                        handed_back.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    let consumers: Vec<_> = (0..2)
        .map(|_| {
            let channel = Arc::clone(&channel);
            thread::spawn(move || {
                let mut seen = Vec::new();
                while let Ok(item) = channel.recv_wait(Wait::Forever) {
                    seen.push(item.id);
                }
                seen
            })
        })
        .collect();
    for p in producers {
        p.join().unwrap();
    }
    channel.close();
    let mut received = HashSet::new();
    for c in consumers {
        for id in c.join().unwrap() {
            assert!(received.insert(id), "item {id} delivered twice");
        }
    }
    let m = channel.metrics();
    let dropped = m.dropped_oldest + m.dropped_newest;
    assert_eq!(
        received.len() as u64 + dropped + handed_back.load(Ordering::Relaxed),
        total as u64,
        "{strategy:?}: {m:?}"
    );
    assert_eq!(m.received, received.len() as u64);
    assert_eq!(m.len, 0);
    for (id, count) in drops.iter().enumerate() {
        assert_eq!(
            count.load(Ordering::Relaxed),
            1,
            "item {id} dropped != once"
        );
    }
    if matches!(strategy, OverflowPolicy::Block) {
        // Only `try_send` can refuse (paused or full); the waiting sends all got in.
        assert_eq!(
            handed_back.load(Ordering::Relaxed),
            m.rejected_paused + m.rejected_full
        );
    }
    assert_eq!(m.high_water_hits, m.low_water_hits + u64::from(m.paused));
}

#[test]
fn exactly_once_under_block() {
    exactly_once(OverflowPolicy::Block);
}

#[test]
fn exactly_once_under_block_with_timeout() {
    exactly_once(OverflowPolicy::BlockTimeout(Duration::from_secs(60)));
}

#[test]
fn exactly_once_under_none() {
    exactly_once(OverflowPolicy::Reject);
}

#[test]
fn exactly_once_under_drop_oldest() {
    exactly_once(OverflowPolicy::DropOldest);
}

#[test]
fn exactly_once_under_drop_newest() {
    exactly_once(OverflowPolicy::DropNewest);
}

/// Sends and receives, including waits that find what they wait for and async
/// registrations, allocate nothing after construction (DESIGN rule 3).
#[test]
fn sends_and_receives_allocate_nothing() {
    let channel = Backpressure::new(config(64, OverflowPolicy::Block, 0.25, 0.75)).unwrap();
    let before = counting_alloc::allocations();
    let mut checksum = 0u64;
    for i in 0..200_000u64 {
        match i % 4 {
            0 => checksum += channel.try_send(i).is_ok() as u64,
            1 if !channel.is_paused() => checksum += channel.send(i).is_ok() as u64,
            2 => checksum += channel.try_recv().unwrap_or(0),
            _ => {
                checksum += channel
                    .recv_wait(Wait::Timeout(Duration::ZERO))
                    .unwrap_or(0)
            }
        }
    }
    // A pending async send registers its waiter in place.
    while !channel.is_paused() {
        channel.try_send(1).unwrap();
    }
    let mut cx = Context::from_waker(Waker::noop());
    {
        let mut send = pin!(channel.send_async(2));
        assert!(send.as_mut().poll(&mut cx).is_pending());
    }
    assert_eq!(
        counting_alloc::allocations() - before,
        0,
        "backpressure operations allocated"
    );
    assert!(checksum > 0);
}

#[cfg(feature = "serde")]
#[test]
fn config_round_trips_through_serde_and_is_validated() {
    let config = BackpressureConfig::new(64)
        .with_policy(OverflowPolicy::BlockTimeout(Duration::from_millis(250)))
        .with_water_marks(WaterMarks::new(0.25, 0.5).unwrap());
    let json = serde_json::to_string(&config).unwrap();
    assert_eq!(
        serde_json::from_str::<BackpressureConfig>(&json).unwrap(),
        config
    );
    // Missing fields take the defaults; bad marks and unknown fields are errors.
    let partial: BackpressureConfig = serde_json::from_str(r#"{"capacity": 8}"#).unwrap();
    assert_eq!(partial, BackpressureConfig::new(8));
    assert!(serde_json::from_str::<BackpressureConfig>(
        r#"{"water_marks": {"low": 0.9, "high": 0.1}}"#
    )
    .is_err());
    assert!(serde_json::from_str::<BackpressureConfig>(r#"{"capasity": 8}"#).is_err());
}
