//! The per-connection outbound queue and the fan-out hub: class policies at a full
//! queue, order, resync with revisions, byte limits on a manual clock, lossless waits
//! on tokio's paused time, closing, memory pressure, metrics, and concurrent
//! exactly-once delivery.
#![cfg(feature = "ws")]

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use membound::adapters::ws::{
    CloseReason, ConnId, DeliveryClass, Event, EventType, Frame, Hub, LogConfig, Next, OfferError,
    Offered, Outbound, QueueConfig, SlowConsumer,
};
use membound::capacity::{CapacityError, SoftCapacity};
use membound::clock::{Clock, ManualClock, MonotonicClock};
use membound::pressure::{adaptive_size, PressureLevel};
use membound::{ConfigError, OverflowPolicy};

#[path = "support/scripted_memory.rs"]
mod scripted_memory;
use scripted_memory::Scripted;

fn cfg(capacity: usize) -> QueueConfig {
    QueueConfig {
        capacity,
        ..QueueConfig::default()
    }
}

fn queue(config: QueueConfig) -> Outbound {
    Outbound::new(config, Arc::new(ManualClock::default())).unwrap()
}

/// Applies `level` as a memory manager the queue is registered with does: with the
/// level's share of the configured capacity.
fn pressure(q: &Outbound, level: PressureLevel) {
    q.apply_pressure(level, adaptive_size(q.max_capacity(), level))
        .unwrap();
}

/// An encoded event of `kind` carrying `n` in field `n`.
fn frame(kind: EventType, n: u64) -> Frame {
    Event::new(kind).with("n", n).encode()
}

fn text(n: u64) -> Frame {
    frame(EventType::TextMessageContent, n)
}
fn raw(n: u64) -> Frame {
    frame(EventType::Raw, n)
}
fn delta(n: u64, revision: Option<u64>) -> Frame {
    let ev = Event::new(EventType::StateDelta).with("n", n);
    match revision {
        Some(r) => ev.with_revision(r).encode(),
        None => ev.encode(),
    }
}
fn snapshot(kind: EventType, n: u64, revision: Option<u64>) -> Frame {
    let ev = Event::new(kind).with("n", n);
    match revision {
        Some(r) => ev.with_revision(r).encode(),
        None => ev.encode(),
    }
}

/// `(type, n)` of a frame, for readable assertions.
fn tag(frame: &Frame) -> (String, u64) {
    let value: serde_json::Value = serde_json::from_str(frame.as_str()).unwrap();
    (
        frame.kind().as_str().to_owned(),
        value["n"].as_u64().unwrap(),
    )
}

/// Every frame the writer gets until the queue is empty (or closed), with resyncs as
/// `("RESYNC", 0)`.
fn drain(q: &Outbound) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    while let Some(next) = q.try_next() {
        match next {
            Next::Frame(f) => out.push(tag(&f)),
            Next::Resync => out.push(("RESYNC".into(), 0)),
            Next::Closed(_) => break,
        }
    }
    out
}

fn t(kind: &str, n: u64) -> (String, u64) {
    (kind.to_owned(), n)
}

/// At any moment, per class: offered == sent + dropped + queued.
fn assert_balanced(q: &Outbound) {
    let m = q.metrics();
    for class in DeliveryClass::ALL {
        let c = m.class(class);
        assert_eq!(
            c.offered,
            c.sent + c.dropped + c.queued,
            "{class:?} unbalanced: {c:?}"
        );
    }
    assert_eq!(
        m.len as u64,
        m.classes.iter().map(|c| c.queued).sum::<u64>()
    );
}

// ---------------------------------------------------------------------------
// Class policies at a full queue
// ---------------------------------------------------------------------------

#[test]
fn lossless_at_a_full_queue_is_handed_back() {
    let q = queue(cfg(2));
    assert_eq!(q.offer(text(1)), Ok(Offered::Queued));
    assert_eq!(q.offer(text(2)), Ok(Offered::Queued));
    let back = q.offer(text(3)).unwrap_err();
    assert_eq!(back, OfferError::Full(text(3)));
    assert_eq!(back.into_frame(), text(3));
    assert_eq!(q.len(), 2);
    let m = q.metrics();
    assert_eq!(m.class(DeliveryClass::Lossless).rejected, 1);
    assert_eq!(m.class(DeliveryClass::Lossless).dropped, 0);
    assert_eq!(
        drain(&q),
        [t("TEXT_MESSAGE_CONTENT", 1), t("TEXT_MESSAGE_CONTENT", 2)]
    );
    assert_balanced(&q);
}

#[test]
fn delta_at_a_full_queue_discards_every_delta_and_marks_a_resync() {
    let q = queue(cfg(4));
    q.offer(delta(1, None)).unwrap();
    q.offer(text(1)).unwrap();
    q.offer(delta(2, None)).unwrap();
    q.offer(text(2)).unwrap();
    assert_eq!(q.offer(delta(3, None)), Ok(Offered::Resync));
    assert_eq!(q.len(), 2, "both queued deltas gone");
    // A second overflowing delta does not owe a second resync... the queue has
    // room again, so the delta is simply queued.
    assert_eq!(q.offer(delta(4, None)), Ok(Offered::Queued));
    let m = q.metrics();
    assert_eq!(m.resyncs, 1);
    assert!(m.resync_pending);
    assert_eq!(m.discarded_deltas, 3);
    assert_eq!(m.class(DeliveryClass::StateDelta).dropped, 3);
    // Resync comes before any frame.
    assert_eq!(q.try_next(), Some(Next::Resync));
    assert_balanced(&q);
}

#[test]
fn snapshot_at_a_full_queue_replaces_its_predecessor_or_is_handed_back() {
    let q = queue(cfg(2));
    q.offer(snapshot(EventType::StateSnapshot, 1, None))
        .unwrap();
    q.offer(text(1)).unwrap();
    assert_eq!(
        q.offer(snapshot(EventType::StateSnapshot, 2, None)),
        Ok(Offered::ReplacedSnapshot)
    );
    // Another snapshot type has nothing to replace: treated like a lossless frame.
    let messages = snapshot(EventType::MessagesSnapshot, 1, None);
    assert_eq!(q.offer(messages.clone()), Err(OfferError::Full(messages)));
    assert_eq!(
        drain(&q),
        [t("STATE_SNAPSHOT", 2), t("TEXT_MESSAGE_CONTENT", 1)]
    );
    let m = q.metrics();
    assert_eq!(m.replaced_snapshots, 1);
    assert_eq!(m.class(DeliveryClass::Snapshot).dropped, 1);
    assert_eq!(m.class(DeliveryClass::Snapshot).rejected, 1);
    assert_balanced(&q);
}

#[test]
fn droppable_oldest_evicts_the_oldest_droppable_behind_lossless_frames() {
    let q = queue(cfg(3));
    q.offer(text(1)).unwrap();
    q.offer(raw(1)).unwrap();
    q.offer(frame(EventType::Custom, 2)).unwrap();
    assert_eq!(q.offer(raw(3)), Ok(Offered::DroppedOldest));
    assert_eq!(
        drain(&q),
        [t("TEXT_MESSAGE_CONTENT", 1), t("CUSTOM", 2), t("RAW", 3)]
    );
    // No droppable queued: the incoming one is dropped.
    q.offer(text(2)).unwrap();
    q.offer(text(3)).unwrap();
    q.offer(text(4)).unwrap();
    assert_eq!(q.offer(raw(4)), Ok(Offered::DroppedNewest));
    let m = q.metrics();
    assert_eq!(m.class(DeliveryClass::Droppable).dropped, 2);
    assert_eq!(m.class(DeliveryClass::Droppable).offered, 4);
    assert_balanced(&q);
}

#[test]
fn droppable_newest_drops_the_incoming_frame() {
    let q = queue(QueueConfig {
        droppable: OverflowPolicy::DropNewest,
        ..cfg(2)
    });
    q.offer(raw(1)).unwrap();
    q.offer(raw(2)).unwrap();
    assert_eq!(q.offer(raw(3)), Ok(Offered::DroppedNewest));
    assert_eq!(drain(&q), [t("RAW", 1), t("RAW", 2)]);
    let m = q.metrics();
    assert_eq!(m.class(DeliveryClass::Droppable).dropped, 1);
    assert_eq!(m.class(DeliveryClass::Droppable).sent, 2);
    assert_balanced(&q);
}

// ---------------------------------------------------------------------------
// Order
// ---------------------------------------------------------------------------

#[test]
fn order_is_fifo_within_a_class_and_offer_order_across_classes() {
    let q = queue(cfg(64));
    let mut expected = Vec::new();
    for n in 0..10 {
        let f = match n % 4 {
            0 => text(n),
            1 => delta(n, None),
            2 => raw(n),
            _ => frame(EventType::ToolCallArgs, n),
        };
        expected.push(tag(&f));
        q.offer(f).unwrap();
    }
    assert_eq!(drain(&q), expected);
}

#[test]
fn a_replaced_snapshot_keeps_its_position_even_when_not_full() {
    let q = queue(cfg(16));
    q.offer(text(1)).unwrap();
    q.offer(snapshot(EventType::MessagesSnapshot, 1, None))
        .unwrap();
    q.offer(snapshot(EventType::StateSnapshot, 1, Some(5)))
        .unwrap();
    q.offer(text(2)).unwrap();
    assert_eq!(
        q.offer(snapshot(EventType::StateSnapshot, 2, Some(7))),
        Ok(Offered::ReplacedSnapshot)
    );
    // Older than the queued one: latest wins, the incoming one is dropped.
    assert_eq!(
        q.offer(snapshot(EventType::StateSnapshot, 3, Some(6))),
        Ok(Offered::DroppedNewest)
    );
    assert_eq!(
        q.offer(snapshot(EventType::MessagesSnapshot, 2, None)),
        Ok(Offered::ReplacedSnapshot)
    );
    assert_eq!(
        drain(&q),
        [
            t("TEXT_MESSAGE_CONTENT", 1),
            t("MESSAGES_SNAPSHOT", 2),
            t("STATE_SNAPSHOT", 2),
            t("TEXT_MESSAGE_CONTENT", 2),
        ]
    );
    assert_eq!(q.metrics().replaced_snapshots, 3);
    assert_balanced(&q);
}

// ---------------------------------------------------------------------------
// Resync and revisions
// ---------------------------------------------------------------------------

#[test]
fn delta_overflow_then_resync_then_stale_deltas_are_skipped() {
    let q = queue(cfg(8));
    // 8 = 4 deltas and 4 texts; after the overflow the 4 texts leave room for 4.
    q.offer(delta(0, Some(0))).unwrap();
    for rev in 1..=3 {
        q.offer(delta(rev, Some(rev))).unwrap();
    }
    q.offer(text(1)).unwrap();
    for n in 2..=4 {
        q.offer(text(n)).unwrap();
    }
    assert_eq!(q.offer(delta(4, Some(4))), Ok(Offered::Resync));
    // While the resync is pending, more state arrives.
    q.offer(delta(5, Some(5))).unwrap();
    q.offer(delta(50, None)).unwrap(); // untagged, before the resync call
    q.offer(snapshot(EventType::StateSnapshot, 6, Some(6)))
        .unwrap();

    // The writer gets Resync before anything else, sends a snapshot taken at
    // revision 6, and reports it.
    assert_eq!(q.try_next(), Some(Next::Resync));
    q.resynced(Some(6));
    q.offer(delta(7, Some(7))).unwrap(); // fills the queue
    for n in 1..=4 {
        assert!(
            matches!(q.try_next(), Some(Next::Frame(f)) if tag(&f) == t("TEXT_MESSAGE_CONTENT", n))
        );
    }
    q.offer(delta(60, None)).unwrap(); // untagged, after the call: delivered
    q.offer(delta(6, Some(6))).unwrap(); // tagged, covered: skipped

    assert_eq!(drain(&q), [t("STATE_DELTA", 7), t("STATE_DELTA", 60)]);
    let m = q.metrics();
    assert_eq!(m.resyncs, 1);
    assert!(!m.resync_pending);
    // 4 queued + 1 incoming at the overflow, then 5, 50 and 6 skipped as stale.
    assert_eq!(m.discarded_deltas, 8);
    assert_eq!(m.class(DeliveryClass::StateDelta).dropped, 8);
    assert_eq!(m.class(DeliveryClass::StateDelta).sent, 2);
    // The queued snapshot at revision 6 was covered by the resync snapshot.
    assert_eq!(m.replaced_snapshots, 1);
    assert_balanced(&q);
}

#[test]
fn resynced_without_a_revision_skips_every_state_frame_queued_before_it() {
    let q = queue(cfg(3));
    q.offer(delta(1, Some(1))).unwrap();
    q.offer(delta(2, Some(2))).unwrap();
    q.offer(delta(3, Some(3))).unwrap();
    assert_eq!(q.offer(delta(30, Some(30))), Ok(Offered::Resync));
    q.offer(delta(4, Some(4))).unwrap();
    q.offer(delta(5, None)).unwrap();
    assert_eq!(q.try_next(), Some(Next::Resync));
    q.resynced(None);
    q.offer(delta(6, Some(6))).unwrap();
    assert_eq!(drain(&q), [t("STATE_DELTA", 6)]);
    assert_balanced(&q);
}

#[test]
fn a_second_overflow_after_the_resync_owes_a_second_resync() {
    let q = queue(cfg(1));
    q.offer(delta(1, Some(1))).unwrap();
    assert_eq!(q.offer(delta(2, Some(2))), Ok(Offered::Resync));
    assert_eq!(q.offer(delta(3, Some(3))), Ok(Offered::Queued));
    assert_eq!(q.offer(delta(4, Some(4))), Ok(Offered::Resync));
    assert_eq!(q.metrics().resyncs, 1, "still the same pending resync");
    assert_eq!(q.try_next(), Some(Next::Resync));
    assert_eq!(q.try_next(), None);
    q.resynced(Some(4));
    q.offer(delta(5, Some(5))).unwrap();
    assert_eq!(q.offer(delta(6, Some(6))), Ok(Offered::Resync));
    assert_eq!(q.metrics().resyncs, 2);
    assert_eq!(drain(&q), [t("RESYNC", 0)]);
}

// ---------------------------------------------------------------------------
// Byte limits
// ---------------------------------------------------------------------------

#[test]
fn a_frame_larger_than_the_hard_limit_closes_at_once_and_discards_the_queue() {
    let one = text(1).len();
    let q = queue(QueueConfig {
        capacity: 100,
        hard_limit_bytes: 2 * one + 1,
        soft_limit_bytes: 2 * one + 1,
        ..QueueConfig::default()
    });
    q.offer(text(1)).unwrap();
    q.offer(text(2)).unwrap();
    assert_eq!(q.queued_bytes(), 2 * one);
    // A droppable that cannot fit is dropped, not a reason to close.
    assert_eq!(q.offer(raw(1)), Ok(Offered::DroppedNewest));
    assert_eq!(q.close_reason(), None);
    // A lossless frame that does not fit now is full, as in a queue full in events.
    assert_eq!(q.offer(text(3)), Err(OfferError::Full(text(3))));
    assert_eq!(q.close_reason(), None);
    // One that could never fit breaks the hard limit.
    let huge = Event::new(EventType::TextMessageContent)
        .with("n", 4)
        .with("delta", "h".repeat(2 * one))
        .encode();
    assert_eq!(q.offer(huge.clone()), Err(OfferError::SlowConsumer(huge)));
    let reason = CloseReason::SlowConsumer(SlowConsumer::HardLimit);
    assert_eq!(q.close_reason(), Some(reason.clone()));
    assert_eq!(q.len(), 0);
    assert_eq!(q.queued_bytes(), 0);
    assert_eq!(q.try_next(), Some(Next::Closed(reason.clone())));
    assert_eq!(q.check_limits(), Err(reason));
    let m = q.metrics();
    assert_eq!(m.class(DeliveryClass::Lossless).dropped, 2);
    assert_eq!(m.peak_bytes, 2 * one);
    assert_balanced(&q);
}

#[test]
fn a_delta_at_the_hard_limit_resyncs_instead_of_closing() {
    let one = delta(1, None).len();
    let q = queue(QueueConfig {
        capacity: 100,
        hard_limit_bytes: 2 * one,
        soft_limit_bytes: 2 * one,
        ..QueueConfig::default()
    });
    q.offer(delta(1, None)).unwrap();
    q.offer(delta(2, None)).unwrap();
    assert_eq!(q.offer(delta(3, None)), Ok(Offered::Resync));
    assert_eq!(q.queued_bytes(), 0);
    assert_eq!(q.close_reason(), None);
}

#[test]
fn droppable_oldest_evicts_enough_bytes_for_the_hard_limit() {
    let small = raw(1).len();
    let big = Event::new(EventType::Raw)
        .with("n", 9)
        .with("pad", "x".repeat(small))
        .encode();
    let q = queue(QueueConfig {
        capacity: 100,
        hard_limit_bytes: 3 * small,
        soft_limit_bytes: 3 * small,
        ..QueueConfig::default()
    });
    for n in 1..=3 {
        q.offer(raw(n)).unwrap();
    }
    assert!(big.len() > small && big.len() <= 2 * small + 2 * small);
    assert_eq!(q.offer(big.clone()), Ok(Offered::DroppedOldest));
    assert!(q.queued_bytes() <= 3 * small);
    let left = drain(&q);
    assert_eq!(left.last(), Some(&t("RAW", 9)));
    assert_eq!(
        q.metrics().class(DeliveryClass::Droppable).dropped as usize,
        4 - left.len()
    );
}

#[test]
fn the_soft_limit_held_for_its_duration_closes() {
    let clock = Arc::new(ManualClock::default());
    let one = text(1).len();
    let q = Outbound::new(
        QueueConfig {
            capacity: 100,
            hard_limit_bytes: 10 * one,
            soft_limit_bytes: 2 * one,
            soft_limit_for: Duration::from_secs(10),
            ..QueueConfig::default()
        },
        clock.clone(),
    )
    .unwrap();
    for n in 0..3 {
        q.offer(text(n)).unwrap(); // the third goes above the soft limit at t = 0
    }
    clock.advance_by(Duration::from_millis(9_999));
    assert_eq!(q.check_limits(), Ok(()));
    // Back at the limit: the timer stops.
    assert!(matches!(q.try_next(), Some(Next::Frame(_))));
    clock.advance_by(Duration::from_secs(60));
    assert_eq!(q.check_limits(), Ok(()));
    // Above again from t = 69.999 s: it takes another full 10 s.
    q.offer(text(3)).unwrap();
    clock.advance_by(Duration::from_millis(9_999));
    assert_eq!(q.check_limits(), Ok(()));
    assert_eq!(q.offer(text(4)), Ok(Offered::Queued));
    clock.advance(1);
    let reason = CloseReason::SlowConsumer(SlowConsumer::SoftLimit);
    // An offer checks the timer too.
    assert_eq!(q.offer(text(5)), Err(OfferError::SlowConsumer(text(5))));
    assert_eq!(q.check_limits(), Err(reason.clone()));
    assert_eq!(q.len(), 0);
    assert_eq!(q.try_next(), Some(Next::Closed(reason)));
    assert_balanced(&q);
}

#[test]
fn a_smaller_snapshot_replacing_a_larger_one_stops_the_soft_limit_timer() {
    let clock = Arc::new(ManualClock::default());
    let small = Event::new(EventType::StateSnapshot).with("s", "x").encode();
    let big = Event::new(EventType::StateSnapshot)
        .with("s", "x".repeat(200))
        .encode();
    // Other frames keep more bytes queued than the big snapshot alone.
    let texts: Vec<Frame> = (0..20).map(text).collect();
    let others: usize = texts.iter().map(Frame::len).sum();
    assert!(others > big.len());
    let q = Outbound::new(
        QueueConfig {
            capacity: 100,
            hard_limit_bytes: 10 * (others + big.len()),
            soft_limit_bytes: others + small.len(),
            soft_limit_for: Duration::from_secs(10),
            ..QueueConfig::default()
        },
        clock.clone(),
    )
    .unwrap();
    for t in texts {
        q.offer(t).unwrap();
    }
    q.offer(big).unwrap(); // above the soft limit at t = 0
    assert_eq!(q.offer(small), Ok(Offered::ReplacedSnapshot));
    assert_eq!(q.queued_bytes(), q.config().soft_limit_bytes);
    clock.advance_by(Duration::from_secs(60));
    assert_eq!(
        q.check_limits(),
        Ok(()),
        "at the soft limit since the replacement"
    );
}

// ---------------------------------------------------------------------------
// Lossless waits (tokio's paused clock)
// ---------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn a_lossless_wait_is_woken_by_the_writer() {
    let q = Arc::new(queue(QueueConfig {
        lossless_timeout: Duration::from_secs(5),
        ..cfg(1)
    }));
    q.offer(text(1)).unwrap();
    let start = tokio::time::Instant::now();
    let sender = tokio::spawn({
        let q = q.clone();
        async move { q.send(text(2)).await }
    });
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert!(!sender.is_finished(), "the sender waits for room");
    assert_eq!(q.metrics().lossless_waits, 1);
    // The writer takes a frame: the sender is woken, well before its timeout.
    assert!(matches!(q.next().await, Next::Frame(f) if tag(&f) == t("TEXT_MESSAGE_CONTENT", 1)));
    assert_eq!(sender.await.unwrap(), Ok(Offered::Queued));
    assert_eq!(start.elapsed(), Duration::ZERO, "no time passed");
    assert!(matches!(q.next().await, Next::Frame(f) if tag(&f) == t("TEXT_MESSAGE_CONTENT", 2)));
    assert_eq!(q.close_reason(), None);
    assert_eq!(q.metrics().lossless_timeouts, 0);
}

#[tokio::test(start_paused = true)]
async fn a_lossless_timeout_closes_as_a_slow_consumer() {
    let timeout = Duration::from_secs(5);
    let q = queue(QueueConfig {
        lossless_timeout: timeout,
        ..cfg(1)
    });
    q.offer(text(1)).unwrap();
    let start = tokio::time::Instant::now();
    assert_eq!(
        q.send(text(2)).await,
        Err(OfferError::SlowConsumer(text(2)))
    );
    assert_eq!(start.elapsed(), timeout);
    let reason = CloseReason::SlowConsumer(SlowConsumer::LosslessTimeout);
    assert_eq!(q.close_reason(), Some(reason.clone()));
    assert_eq!(q.next().await, Next::Closed(reason));
    let m = q.metrics();
    assert_eq!((m.lossless_waits, m.lossless_timeouts), (1, 1));
    assert_eq!(
        m.class(DeliveryClass::Lossless).dropped,
        1,
        "the queued one"
    );
    assert_eq!(
        m.class(DeliveryClass::Lossless).rejected,
        1,
        "the waiting one"
    );
}

#[tokio::test(start_paused = true)]
async fn a_raised_capacity_wakes_a_waiting_sender() {
    let q = Arc::new(queue(cfg(4)));
    pressure(&q, PressureLevel::Critical); // capacity 1
    q.offer(text(1)).unwrap();
    let sender = tokio::spawn({
        let q = q.clone();
        async move { q.send(text(2)).await }
    });
    tokio::task::yield_now().await;
    assert!(!sender.is_finished());
    pressure(&q, PressureLevel::Normal);
    assert_eq!(sender.await.unwrap(), Ok(Offered::Queued));
    assert_eq!(q.len(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_close_wakes_waiting_senders_and_the_writer() {
    let q = Arc::new(queue(cfg(1)));
    let writer = tokio::spawn({
        let q = q.clone();
        async move { q.next().await }
    });
    tokio::task::yield_now().await;
    assert!(!writer.is_finished());
    q.offer(text(1)).unwrap();
    assert!(matches!(writer.await.unwrap(), Next::Frame(_)));

    q.offer(text(2)).unwrap();
    let sender = tokio::spawn({
        let q = q.clone();
        async move { q.send(text(3)).await }
    });
    tokio::task::yield_now().await;
    q.close(CloseReason::Lost("gone".into()));
    assert_eq!(sender.await.unwrap(), Err(OfferError::Closed(text(3))));
    assert_eq!(
        q.next().await,
        Next::Closed(CloseReason::Lost("gone".into()))
    );
}

// ---------------------------------------------------------------------------
// Closing
// ---------------------------------------------------------------------------

#[test]
fn a_close_that_drains_delivers_the_queue_then_closed() {
    let q = queue(cfg(8));
    q.offer(text(1)).unwrap();
    q.offer(raw(2)).unwrap();
    q.offer(delta(3, None)).unwrap();
    q.close(CloseReason::Shutdown);
    q.close(CloseReason::Normal); // the first reason wins
    assert_eq!(q.offer(text(4)), Err(OfferError::Closed(text(4))));
    assert_eq!(
        drain(&q),
        [
            t("TEXT_MESSAGE_CONTENT", 1),
            t("RAW", 2),
            t("STATE_DELTA", 3)
        ]
    );
    assert_eq!(q.try_next(), Some(Next::Closed(CloseReason::Shutdown)));
    assert_eq!(q.try_next(), Some(Next::Closed(CloseReason::Shutdown)));
    assert_eq!(q.metrics().dropped_total(), 0);
    assert_balanced(&q);
}

#[test]
fn a_close_that_does_not_drain_discards_at_once() {
    let q = queue(cfg(8));
    q.offer(text(1)).unwrap();
    q.offer(raw(2)).unwrap();
    q.offer(delta(3, None)).unwrap();
    let reason = CloseReason::IdleTimeout;
    q.close(reason.clone());
    assert_eq!(q.len(), 0);
    assert_eq!(q.queued_bytes(), 0);
    assert_eq!(q.try_next(), Some(Next::Closed(reason.clone())));
    let m = q.metrics();
    assert_eq!(m.dropped_total(), 3);
    assert_eq!(m.sent_total(), 0);
    assert_eq!(m.closed, Some(reason));
    assert_balanced(&q);
}

// ---------------------------------------------------------------------------
// Memory pressure
// ---------------------------------------------------------------------------

#[test]
fn pressure_shrinks_the_capacity_and_halves_droppables_at_critical() {
    let q = queue(cfg(100));
    for n in 0..20 {
        q.offer(raw(n)).unwrap();
    }
    pressure(&q, PressureLevel::High);
    assert_eq!(q.capacity(), 50);
    assert_eq!(q.len(), 20, "within the capacity: nothing evicted");
    pressure(&q, PressureLevel::Critical);
    assert_eq!(q.capacity(), 25);
    let m = q.metrics();
    assert_eq!(m.droppable_capacity, 12);
    assert_eq!(m.len, 12, "the oldest 8 droppables evicted");
    assert_eq!(m.class(DeliveryClass::Droppable).dropped, 8);
    // The 13th droppable evicts the oldest again; lossless frames still get the
    // rest of the capacity.
    assert_eq!(q.offer(raw(20)), Ok(Offered::DroppedOldest));
    for n in 0..13 {
        assert_eq!(q.offer(text(n)), Ok(Offered::Queued), "lossless {n}");
    }
    // Full: the next lossless frame evicts the oldest droppable.
    assert_eq!(q.offer(text(13)), Ok(Offered::DroppedOldest));
    let got = drain(&q);
    let raws: Vec<u64> = got
        .iter()
        .filter(|(k, _)| k == "RAW")
        .map(|(_, n)| *n)
        .collect();
    assert_eq!(raws, (10..=20).collect::<Vec<_>>());
    // Back to normal: the whole capacity again.
    pressure(&q, PressureLevel::Normal);
    assert_eq!(q.capacity(), 100);
    for n in 0..100 {
        assert_eq!(q.offer(raw(n)), Ok(Offered::Queued));
    }
    assert_balanced(&q);
}

#[test]
fn a_queue_registered_with_a_manager_applies_the_critical_droppable_rule() {
    // Registered the generic way, with no server in between: the manager's
    // `apply_pressure` carries the level, so at Critical droppables get half the
    // queue, as they do through a server.
    let q = Arc::new(queue(cfg(100)));
    let memory = Scripted::new();
    memory.manager.register_capacity(&q);
    for n in 0..20 {
        q.offer(raw(n)).unwrap();
    }
    memory.drive(PressureLevel::High);
    assert_eq!((q.capacity(), q.metrics().droppable_capacity), (50, 50));
    assert_eq!(q.len(), 20);
    memory.drive(PressureLevel::Critical);
    let m = q.metrics();
    assert_eq!(m.capacity, 25);
    assert_eq!(m.droppable_capacity, 12, "half the queue for droppables");
    assert_eq!(m.len, 12, "the oldest 8 droppables evicted");
    assert_eq!(m.class(DeliveryClass::Droppable).dropped, 8);
    assert_eq!(q.offer(raw(20)), Ok(Offered::DroppedOldest));
    assert_eq!(q.len(), 12);
    memory.drive(PressureLevel::Normal);
    let m = q.metrics();
    assert_eq!((m.capacity, m.droppable_capacity), (100, 100));
    assert_balanced(&q);
}

#[test]
fn set_capacity_keeps_the_level_and_its_droppable_rule() {
    let q = queue(cfg(100));
    pressure(&q, PressureLevel::Critical);
    q.set_capacity(40).unwrap();
    assert_eq!(q.metrics().droppable_capacity, 20);
    pressure(&q, PressureLevel::Normal);
    q.set_capacity(40).unwrap();
    assert_eq!(q.metrics().droppable_capacity, 40);
}

#[test]
fn a_droppable_policy_that_would_wait_or_refuse_is_refused_by_name() {
    for policy in [
        OverflowPolicy::Reject,
        OverflowPolicy::Block,
        OverflowPolicy::BlockTimeout(Duration::from_millis(5)),
    ] {
        let config = QueueConfig {
            droppable: policy,
            ..cfg(4)
        };
        let err = Outbound::new(config, Arc::new(ManualClock::default())).unwrap_err();
        assert_eq!(err.field, "outbound.droppable");
        assert!(
            matches!(
                err.source,
                Some(ConfigError::UnsupportedPolicy { policy: p, .. }) if p == policy
            ),
            "{err}"
        );
    }
}

#[test]
fn a_lowered_capacity_keeps_lossless_frames_and_refuses_new_ones() {
    let q = queue(cfg(8));
    for n in 0..6 {
        q.offer(text(n)).unwrap();
    }
    q.offer(raw(0)).unwrap();
    q.set_capacity(4).unwrap();
    assert_eq!(q.len(), 6, "the droppable evicted, lossless frames kept");
    assert!(matches!(q.offer(text(6)), Err(OfferError::Full(_))));
    assert_eq!(q.set_capacity(0), Err(CapacityError::Zero));
    assert_eq!(
        q.set_capacity(9),
        Err(CapacityError::AboveMax {
            requested: 9,
            max: 8
        })
    );
    assert_eq!(q.max_capacity(), 8);
    assert_balanced(&q);
}

// ---------------------------------------------------------------------------
// Metrics
// ---------------------------------------------------------------------------

#[test]
fn metrics_equal_what_happened() {
    let q = queue(QueueConfig {
        droppable: OverflowPolicy::DropOldest,
        ..cfg(3)
    });
    let l = DeliveryClass::Lossless;
    let d = DeliveryClass::StateDelta;
    let s = DeliveryClass::Snapshot;
    let r = DeliveryClass::Droppable;

    q.offer(text(1)).unwrap(); // queued
    q.offer(raw(1)).unwrap(); // queued
    q.offer(snapshot(EventType::StateSnapshot, 1, None))
        .unwrap(); // queued
    q.offer(snapshot(EventType::StateSnapshot, 2, None))
        .unwrap(); // replaces
    q.offer(raw(2)).unwrap(); // evicts raw 1
    q.offer(text(2)).unwrap(); // evicts raw 2
    q.offer(text(3)).unwrap_err(); // full, nothing droppable: rejected
    q.offer(delta(1, None)).unwrap(); // overflow: resync, dropped
    assert!(matches!(q.try_next(), Some(Next::Resync)));
    q.resynced(Some(0));
    assert!(matches!(q.try_next(), Some(Next::Frame(_)))); // text 1
    q.offer(raw(3)).unwrap(); // queued again

    let m = q.metrics();
    let expect = |c: DeliveryClass, offered, sent, dropped, queued, rejected| {
        let got = m.class(c);
        assert_eq!(
            (got.offered, got.sent, got.dropped, got.queued, got.rejected),
            (offered, sent, dropped, queued, rejected),
            "{c:?}"
        );
    };
    expect(l, 2, 1, 0, 1, 1);
    expect(d, 1, 0, 1, 0, 0);
    expect(s, 2, 0, 1, 1, 0);
    expect(r, 3, 0, 2, 1, 0);
    assert_eq!(m.replaced_snapshots, 1);
    assert_eq!(m.resyncs, 1);
    assert_eq!(m.discarded_deltas, 1);
    assert_eq!(m.lossless_waits, 0);
    assert_eq!(m.len, 3);
    let snap = snapshot(EventType::StateSnapshot, 2, None).len();
    let bytes = snap + text(2).len() + raw(3).len();
    assert_eq!(m.queued_bytes, bytes);
    assert_eq!(q.queued_bytes(), bytes);
    // Two texts and the snapshot, before text 1 was sent.
    assert_eq!(m.peak_bytes, snap + 2 * text(1).len());
    assert_eq!(
        (m.capacity, m.max_capacity, m.droppable_capacity),
        (3, 3, 3)
    );
    assert!(!m.resync_pending);
    assert_eq!(m.closed, None);
}

#[test]
fn bad_configs_are_refused() {
    let clock: Arc<dyn Clock + Send + Sync> = Arc::new(MonotonicClock::new());
    let err = Outbound::new(cfg(0), clock.clone()).unwrap_err();
    assert_eq!(err.field, "outbound.capacity");
    let err = Outbound::new(
        QueueConfig {
            lossless_timeout: Duration::ZERO,
            ..cfg(1)
        },
        clock,
    )
    .unwrap_err();
    assert_eq!(err.field, "outbound.lossless_timeout");
}

#[test]
fn nothing_is_reserved_up_front_and_a_drained_burst_gives_its_memory_back() {
    let q = queue(cfg(4096));
    assert_eq!(q.metrics().buffer_slots, 0);
    for n in 0..4096 {
        q.offer(text(n)).unwrap();
    }
    assert!(q.metrics().buffer_slots >= 4096);
    // While a burst drains, and right after, the buffer stays: the next burst
    // reuses it without reallocating.
    for _ in 0..3072 {
        q.try_next().unwrap();
    }
    assert!(q.metrics().buffer_slots >= 4096);
    assert_eq!(drain(&q).len(), 1024);
    assert!(q.metrics().buffer_slots >= 4096);
    for n in 0..4096 {
        q.offer(text(n)).unwrap();
    }
    assert_eq!(drain(&q).len(), 4096);
    assert!(q.metrics().buffer_slots >= 4096);
    // Quiet traffic: the next time the queue runs empty, the burst's buffer goes.
    q.offer(text(1)).unwrap();
    assert_eq!(drain(&q), [t("TEXT_MESSAGE_CONTENT", 1)]);
    assert!(
        q.metrics().buffer_slots <= 64,
        "{}",
        q.metrics().buffer_slots
    );
    // A discarding close frees the buffer.
    for n in 0..100 {
        q.offer(text(n)).unwrap();
    }
    q.close(CloseReason::Lost("reset".into()));
    assert_eq!(q.metrics().buffer_slots, 0);
}

// ---------------------------------------------------------------------------
// Hub
// ---------------------------------------------------------------------------

fn shared_queue(config: QueueConfig) -> Arc<Outbound> {
    Arc::new(Outbound::new(config, Arc::new(MonotonicClock::new())).unwrap())
}

fn hub_with(max_events: usize, max_bytes: u64) -> Hub {
    Hub::with_log(LogConfig::new(max_events, max_bytes)).unwrap()
}

#[tokio::test]
async fn a_broadcast_visits_no_connection() {
    let hub = hub_with(16, 1 << 20);
    let queues: Vec<_> = (0..1_000).map(|_| shared_queue(cfg(4))).collect();
    for (i, q) in queues.iter().enumerate() {
        hub.attach(ConnId(i as u64), q.clone());
    }
    for n in 0..3 {
        let b = hub.broadcast_frame(text(n)).await;
        assert_eq!(b.offset, n);
    }
    // Nothing was offered to any queue: each only has a backlog in the log,
    // which its writer reads when it gets to it.
    for q in &queues {
        let m = q.metrics();
        assert_eq!(m.class(DeliveryClass::Lossless).offered, 0);
        assert_eq!((m.len, m.log_backlog_events), (0, 3));
        assert_eq!(q.backlog().events, 3);
    }
    let m = hub.metrics();
    assert_eq!(
        (m.connections, m.events, m.log.appended, m.log.held),
        (1_000, 3, 3, 3)
    );
    assert_eq!(
        drain(&queues[7]),
        [
            t("TEXT_MESSAGE_CONTENT", 0),
            t("TEXT_MESSAGE_CONTENT", 1),
            t("TEXT_MESSAGE_CONTENT", 2)
        ]
    );
    let m = queues[7].metrics();
    assert_eq!(m.class(DeliveryClass::Lossless).sent, 3);
    assert_eq!(m.log_backlog_events, 0);
    assert_balanced(&queues[7]);
}

#[tokio::test(start_paused = true)]
async fn a_stalled_connection_costs_the_publisher_nothing_and_is_closed_as_lagged() {
    let hub = Arc::new(hub_with(8, 1 << 20));
    let fast: Vec<Arc<Outbound>> = (0..3).map(|_| shared_queue(cfg(4))).collect();
    let stalled = shared_queue(cfg(4));
    for (i, q) in fast.iter().enumerate() {
        hub.attach(ConnId(i as u64), q.clone());
    }
    hub.attach(ConnId(99), stalled.clone());
    let writers: Vec<_> = fast
        .iter()
        .map(|q| {
            let q = q.clone();
            tokio::spawn(async move {
                let mut got = Vec::new();
                loop {
                    match q.next().await {
                        Next::Frame(f) => got.push(tag(&f).1),
                        Next::Resync => unreachable!("no deltas"),
                        Next::Closed(reason) => return (got, reason),
                    }
                }
            })
        })
        .collect();
    let start = tokio::time::Instant::now();
    let events = 20;
    for n in 0..events {
        hub.broadcast(&Event::new(EventType::TextMessageContent).with("n", n))
            .await;
        // The writers run between events (a real publisher awaits its source).
        tokio::task::yield_now().await;
    }
    assert_eq!(
        start.elapsed(),
        Duration::ZERO,
        "the publisher never waited"
    );
    // The stalled connection missed 12 lossless events: its next step is the close.
    assert_eq!(
        stalled.try_next(),
        Some(Next::Closed(CloseReason::SlowConsumer(
            SlowConsumer::Lagged
        )))
    );
    let m = stalled.metrics();
    assert_eq!(m.lags, 1);
    assert_eq!(m.class(DeliveryClass::Lossless).dropped, 12);
    assert_eq!(m.log_backlog_events, 0, "a closed queue reads no more");
    assert_balanced(&stalled);
    for q in &fast {
        q.close(CloseReason::Normal);
    }
    for w in writers {
        let (got, reason) = w.await.unwrap();
        assert_eq!(
            got,
            (0..events).collect::<Vec<_>>(),
            "every event, in order"
        );
        assert_eq!(reason, CloseReason::Normal);
    }
    // Detach frees the entry: the hub holds no reference any more.
    assert_eq!(Arc::strong_count(&stalled), 2);
    assert!(hub.detach(ConnId(99)));
    assert!(!hub.detach(ConnId(99)));
    assert_eq!(hub.len(), 3);
    assert_eq!(Arc::strong_count(&stalled), 1);
    assert!(hub.get(ConnId(99)).is_none());
}

#[tokio::test]
async fn a_lagging_cursor_applies_each_class_rule() {
    // Droppables lost: counted, nothing else.
    let hub = hub_with(2, 1 << 20);
    let q = shared_queue(cfg(4));
    hub.attach(ConnId(1), q.clone());
    for n in 0..5 {
        hub.broadcast_frame(raw(n)).await;
    }
    assert_eq!(drain(&q), [t("RAW", 3), t("RAW", 4)]);
    assert_eq!(q.metrics().class(DeliveryClass::Droppable).dropped, 3);
    assert_eq!(q.close_reason(), None);
    assert_balanced(&q);

    // Deltas and state snapshots lost: a resync first, then what is left, with
    // the untagged state frames from before the resync skipped as stale.
    for n in 0..4 {
        hub.broadcast_frame(delta(n, None)).await;
    }
    hub.broadcast_frame(text(9)).await;
    assert_eq!(q.try_next(), Some(Next::Resync));
    q.resynced(Some(10));
    assert_eq!(drain(&q), [t("TEXT_MESSAGE_CONTENT", 9)]);
    hub.broadcast_frame(delta(5, Some(11))).await;
    assert_eq!(drain(&q), [t("STATE_DELTA", 5)]);
    let m = q.metrics();
    assert_eq!((m.resyncs, m.lags, m.discarded_deltas), (1, 2, 4));
    assert_eq!(m.class(DeliveryClass::StateDelta).dropped, 4);
    assert_balanced(&q);

    // A lost MESSAGES_SNAPSHOT: no resync makes up for it.
    for n in 0..3 {
        hub.broadcast_frame(snapshot(EventType::MessagesSnapshot, n, None))
            .await;
    }
    assert_eq!(
        q.try_next(),
        Some(Next::Closed(CloseReason::SlowConsumer(
            SlowConsumer::Lagged
        )))
    );
    assert_balanced(&q);
}

#[tokio::test]
async fn direct_sends_and_broadcasts_arrive_in_the_order_they_were_made() {
    let hub = hub_with(64, 1 << 20);
    let q = shared_queue(cfg(8));
    q.offer(text(0)).unwrap(); // before the attach: first
    hub.attach(ConnId(1), q.clone());
    hub.broadcast_frame(text(1)).await;
    q.offer(text(2)).unwrap();
    hub.broadcast_frame(text(3)).await;
    hub.broadcast_frame(text(4)).await;
    q.offer(text(5)).unwrap();
    q.offer(text(6)).unwrap();
    hub.broadcast_frame(text(7)).await;
    let got: Vec<u64> = drain(&q).into_iter().map(|(_, n)| n).collect();
    assert_eq!(got, (0..8).collect::<Vec<_>>());
    // Batches merge the same way.
    hub.broadcast_frame(text(8)).await;
    q.offer(text(9)).unwrap();
    hub.broadcast_frame(text(10)).await;
    let mut batch = std::collections::VecDeque::new();
    assert_eq!(q.try_next_batch(&mut batch, 16, usize::MAX), None);
    assert_eq!(
        batch.iter().map(|f| tag(f).1).collect::<Vec<_>>(),
        [8, 9, 10]
    );
    assert_balanced(&q);
}

#[tokio::test]
async fn detach_and_close_decide_what_of_the_log_is_delivered() {
    let hub = hub_with(64, 1 << 20);
    let detached = shared_queue(cfg(8));
    let drained = shared_queue(cfg(8));
    let discarded = shared_queue(cfg(8));
    hub.attach(ConnId(1), detached.clone());
    hub.attach(ConnId(2), drained.clone());
    hub.attach(ConnId(3), discarded.clone());
    hub.broadcast_frame(text(1)).await;
    assert!(hub.detach(ConnId(1)));
    drained.close(CloseReason::Normal);
    discarded.close(CloseReason::Lost("reset".into()));
    hub.broadcast_frame(text(2)).await;
    // Detached: what came before, nothing after; the queue stays open.
    assert_eq!(drain(&detached), [t("TEXT_MESSAGE_CONTENT", 1)]);
    assert_eq!(detached.try_next(), None);
    // A draining close delivers what was broadcast before it, then closes.
    assert_eq!(drained.try_next(), Some(Next::Frame(text(1))));
    assert_eq!(drained.try_next(), Some(Next::Closed(CloseReason::Normal)));
    // A discarding close reads nothing more.
    assert_eq!(
        discarded.try_next(),
        Some(Next::Closed(CloseReason::Lost("reset".into())))
    );
    assert_eq!(discarded.backlog().events, 0);
    // Re-attached, a queue reads on.
    hub.attach(ConnId(1), detached.clone());
    hub.broadcast_frame(text(3)).await;
    assert_eq!(
        drain(&detached),
        [t("TEXT_MESSAGE_CONTENT", 2), t("TEXT_MESSAGE_CONTENT", 3)]
    );
}

#[tokio::test]
async fn the_hard_limit_counts_the_log_backlog_and_skips_by_class() {
    let one = raw(0).len();
    let config = QueueConfig {
        hard_limit_bytes: 3 * one,
        soft_limit_bytes: 3 * one,
        ..cfg(8)
    };
    let hub = hub_with(1_000, 1 << 20);
    let q = shared_queue(config);
    hub.attach(ConnId(1), q.clone());
    for n in 0..10 {
        hub.broadcast_frame(raw(n)).await;
    }
    assert_eq!(q.backlog().bytes, 10 * one as u64);
    // The limits' tick skips what is beyond the hard limit: droppables, counted.
    assert_eq!(q.check_limits(), Ok(()));
    assert_eq!(q.backlog().bytes, 3 * one as u64);
    let m = q.metrics();
    assert_eq!((m.lags, m.class(DeliveryClass::Droppable).dropped), (1, 7));
    // A direct lossless send finds no room while the log backlog fills the limit.
    assert!(matches!(q.offer(text(0)), Err(OfferError::Full(_))));
    assert_eq!(drain(&q), [t("RAW", 7), t("RAW", 8), t("RAW", 9)]);
    assert_eq!(q.offer(text(0)), Ok(Offered::Queued));
    assert_eq!(drain(&q), [t("TEXT_MESSAGE_CONTENT", 0)]);
    // Lossless events beyond the hard limit: a slow consumer.
    for n in 0..5 {
        hub.broadcast_frame(text(n)).await;
    }
    assert_eq!(
        q.check_limits(),
        Err(CloseReason::SlowConsumer(SlowConsumer::HardLimit))
    );
    assert_balanced(&q);
}

#[tokio::test]
async fn a_backlog_over_the_soft_limit_for_too_long_closes() {
    let one = text(0).len();
    let config = QueueConfig {
        soft_limit_bytes: 2 * one,
        soft_limit_for: Duration::from_secs(10),
        ..cfg(8)
    };
    let clock = Arc::new(ManualClock::default());
    let q = Arc::new(Outbound::new(config, clock.clone()).unwrap());
    let hub = hub_with(1_000, 1 << 20);
    hub.attach(ConnId(1), q.clone());
    for n in 0..3 {
        hub.broadcast_frame(text(n)).await;
    }
    assert_eq!(q.check_limits(), Ok(()), "the timer starts");
    clock.advance_by(Duration::from_secs(9));
    assert_eq!(q.check_limits(), Ok(()));
    // Taken below the soft limit: the timer stops.
    assert!(matches!(q.try_next(), Some(Next::Frame(_))));
    clock.advance_by(Duration::from_secs(5));
    assert_eq!(q.check_limits(), Ok(()));
    // Over again, and for the whole duration: closed.
    hub.broadcast_frame(text(3)).await;
    assert_eq!(q.check_limits(), Ok(()));
    clock.advance_by(Duration::from_secs(10));
    assert_eq!(
        q.check_limits(),
        Err(CloseReason::SlowConsumer(SlowConsumer::SoftLimit))
    );
}

#[tokio::test(start_paused = true)]
async fn a_direct_lossless_send_waits_for_the_writer_to_take_the_log() {
    let one = text(0).len();
    let config = QueueConfig {
        hard_limit_bytes: 2 * one,
        soft_limit_bytes: 2 * one,
        lossless_timeout: Duration::from_secs(5),
        ..cfg(8)
    };
    let hub = hub_with(1_000, 1 << 20);
    let q = shared_queue(config);
    hub.attach(ConnId(1), q.clone());
    hub.broadcast_frame(text(0)).await;
    hub.broadcast_frame(text(1)).await;
    let sender = tokio::spawn({
        let q = q.clone();
        async move { q.send(text(2)).await }
    });
    tokio::task::yield_now().await;
    assert!(!sender.is_finished());
    assert_eq!(q.try_next(), Some(Next::Frame(text(0))));
    assert_eq!(sender.await.unwrap(), Ok(Offered::Queued));
    assert_eq!(
        drain(&q),
        [t("TEXT_MESSAGE_CONTENT", 1), t("TEXT_MESSAGE_CONTENT", 2)]
    );
    assert_eq!(q.metrics().lossless_waits, 1);
}

#[tokio::test]
async fn pressure_lowers_the_log_bound_through_the_manager() {
    let hub = hub_with(1_000, 100 * raw(0).len() as u64);
    for n in 0..100 {
        hub.broadcast_frame(raw(n)).await;
    }
    let memory = Scripted::new();
    memory.manager.register_capacity(hub.log());
    memory.drive(PressureLevel::Critical);
    let m = hub.metrics().log;
    assert_eq!(m.bound_bytes, m.max_bytes / 4);
    assert!(m.held_bytes <= m.bound_bytes);
    assert_eq!(m.evicted + m.held, 100);
    assert!(m.evicted >= 75, "{m:?}");
}

/// One publisher of every class on a multi-threaded runtime, four writers reading
/// the log at different speeds: every writer accounts for every event exactly once
/// (sent, or dropped by its class rules), lossless events arrive in order, and a
/// writer that lost a lossless event was closed for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_writer_accounts_for_every_broadcast_exactly_once() {
    const EVENTS: u64 = 20_000;
    let hub = Arc::new(hub_with(256, 1 << 20));
    let queues: Vec<_> = (0..4).map(|_| shared_queue(cfg(16))).collect();
    for (i, q) in queues.iter().enumerate() {
        hub.attach(ConnId(i as u64), q.clone());
    }
    let writers: Vec<_> = queues
        .iter()
        .enumerate()
        .map(|(w, q)| {
            let q = q.clone();
            tokio::spawn(async move {
                let mut lossless = Vec::new();
                let mut batch = std::collections::VecDeque::new();
                loop {
                    let next = match q.try_next_batch(&mut batch, 1 + w * 5, usize::MAX) {
                        Some(next) => next,
                        None if batch.is_empty() => q.next().await,
                        None => {
                            for f in batch.drain(..) {
                                if f.class() == DeliveryClass::Lossless {
                                    lossless.push(tag(&f).1);
                                }
                            }
                            if w == 3 {
                                tokio::task::yield_now().await;
                            }
                            continue;
                        }
                    };
                    match next {
                        Next::Frame(f) => {
                            if f.class() == DeliveryClass::Lossless {
                                lossless.push(tag(&f).1);
                            }
                        }
                        Next::Resync => q.resynced(None),
                        Next::Closed(reason) => return (lossless, reason),
                    }
                }
            })
        })
        .collect();
    let mut published = [0u64; 4];
    for n in 0..EVENTS {
        let f = mixed(0, n);
        published[f.class().index()] += 1;
        hub.broadcast_frame(f).await;
        if n % 64 == 0 {
            tokio::task::yield_now().await;
        }
    }
    for q in &queues {
        q.close(CloseReason::Normal);
    }
    for (q, w) in queues.iter().zip(writers) {
        let (lossless, reason) = w.await.unwrap();
        let m = q.metrics();
        assert_balanced(q);
        assert_eq!(m.len, 0);
        for i in 1..lossless.len() {
            assert!(lossless[i - 1] < lossless[i], "lossless out of order");
        }
        match reason {
            CloseReason::Normal => {
                // Read to the end: every event offered, none lost unsaid.
                for class in DeliveryClass::ALL {
                    assert_eq!(
                        m.class(class).offered,
                        published[class.index()],
                        "{class:?}"
                    );
                }
                assert_eq!(m.class(DeliveryClass::Lossless).dropped, 0);
                assert_eq!(
                    lossless.len() as u64,
                    published[DeliveryClass::Lossless.index()]
                );
            }
            CloseReason::SlowConsumer(SlowConsumer::Lagged) => {
                assert!(m.class(DeliveryClass::Lossless).dropped > 0);
            }
            other => unreachable!("closed for {other:?}"),
        }
    }
}

// ---------------------------------------------------------------------------
// Concurrency: every frame delivered exactly once or dropped exactly once
// ---------------------------------------------------------------------------

const SENDERS: u64 = 4;
const PER_SENDER: u64 = 3_000;

/// Frame `i` of sender `s`, its class chosen by `i`.
fn mixed(s: u64, i: u64) -> Frame {
    let id = s * 1_000_000 + i;
    match i % 5 {
        0 | 1 => text(id),
        2 => delta(id, None),
        3 => snapshot(EventType::StateSnapshot, id, None),
        _ => raw(id),
    }
}

fn sender_of(id: u64) -> u64 {
    id / 1_000_000
}

#[test]
fn threads_deliver_every_frame_exactly_once_or_count_it_dropped() {
    let q = Arc::new(queue(cfg(16)));
    let senders: Vec<_> = (0..SENDERS)
        .map(|s| {
            let q = q.clone();
            std::thread::spawn(move || {
                let mut accepted = [0u64; 4];
                for i in 0..PER_SENDER {
                    let mut f = mixed(s, i);
                    loop {
                        let class = f.class();
                        match q.offer(f) {
                            Ok(_) => {
                                accepted[class.index()] += 1;
                                break;
                            }
                            Err(OfferError::Full(back)) => {
                                f = back;
                                std::thread::yield_now();
                            }
                            Err(e) => panic!("unexpected {e}"),
                        }
                    }
                }
                accepted
            })
        })
        .collect();
    let drainer = std::thread::spawn({
        let q = q.clone();
        move || {
            let mut seen = HashSet::new();
            let mut per_class = [0u64; 4];
            let mut last_lossless = vec![None::<u64>; SENDERS as usize];
            loop {
                match q.try_next() {
                    Some(Next::Frame(f)) => {
                        let (_, id) = tag(&f);
                        assert!(seen.insert((f.kind().clone(), id)), "{id} twice");
                        per_class[f.class().index()] += 1;
                        if f.class() == DeliveryClass::Lossless {
                            let s = sender_of(id) as usize;
                            assert!(last_lossless[s] < Some(id), "lossless out of order");
                            last_lossless[s] = Some(id);
                        }
                    }
                    Some(Next::Resync) => q.resynced(None),
                    Some(Next::Closed(reason)) => return (per_class, reason),
                    None => std::thread::yield_now(),
                }
            }
        }
    });
    let mut accepted = [0u64; 4];
    for s in senders {
        for (total, n) in accepted.iter_mut().zip(s.join().unwrap()) {
            *total += n;
        }
    }
    q.close(CloseReason::Normal);
    let (delivered, reason) = drainer.join().unwrap();
    assert_eq!(reason, CloseReason::Normal);
    let m = q.metrics();
    for class in DeliveryClass::ALL {
        let c = m.class(class);
        assert_eq!(c.offered, accepted[class.index()], "{class:?} offered");
        assert_eq!(c.sent, delivered[class.index()], "{class:?} sent");
        assert_eq!(c.queued, 0, "{class:?} left");
        assert_eq!(c.offered, c.sent + c.dropped, "{class:?} exactly once");
    }
    let lossless = m.class(DeliveryClass::Lossless);
    assert_eq!(lossless.dropped, 0);
    assert_eq!(lossless.sent, SENDERS * PER_SENDER * 2 / 5);
}

#[test]
fn async_senders_and_writer_lose_no_wake_up() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(3)
        .enable_time()
        .build()
        .unwrap();
    runtime.block_on(async {
        let q = Arc::new(queue(QueueConfig {
            // A lost wake-up would show as a slow-consumer close.
            lossless_timeout: Duration::from_secs(20),
            ..cfg(4)
        }));
        let senders: Vec<_> = (0..SENDERS)
            .map(|s| {
                let q = q.clone();
                tokio::spawn(async move {
                    for i in 0..PER_SENDER / 3 {
                        q.send(text(s * 1_000_000 + i)).await.unwrap();
                    }
                })
            })
            .collect();
        let writer = tokio::spawn({
            let q = q.clone();
            async move {
                let mut next_of = vec![0u64; SENDERS as usize];
                loop {
                    match q.next().await {
                        Next::Frame(f) => {
                            let id = tag(&f).1;
                            let s = sender_of(id) as usize;
                            assert_eq!(id % 1_000_000, next_of[s], "exactly once, in order");
                            next_of[s] += 1;
                        }
                        Next::Resync => unreachable!(),
                        Next::Closed(_) => return next_of,
                    }
                }
            }
        });
        for s in senders {
            s.await.unwrap();
        }
        q.close(CloseReason::Normal);
        let counts = writer.await.unwrap();
        assert!(counts.iter().all(|&n| n == PER_SENDER / 3));
        assert_eq!(q.metrics().lossless_timeouts, 0);
    });
}

#[test]
fn droppables_yield_room_to_every_other_class() {
    for policy in [OverflowPolicy::DropOldest, OverflowPolicy::DropNewest] {
        let q = queue(QueueConfig {
            droppable: policy,
            ..cfg(3)
        });
        q.offer(raw(1)).unwrap();
        q.offer(raw(2)).unwrap();
        q.offer(raw(3)).unwrap();
        assert_eq!(q.offer(text(1)), Ok(Offered::DroppedOldest), "{policy:?}");
        assert_eq!(q.offer(delta(1, None)), Ok(Offered::DroppedOldest));
        assert_eq!(
            q.offer(snapshot(EventType::StateSnapshot, 1, None)),
            Ok(Offered::DroppedOldest)
        );
        assert_eq!(q.offer(raw(4)), Ok(Offered::DroppedNewest));
        assert_eq!(q.metrics().resyncs, 0);
        assert_eq!(
            drain(&q),
            [
                t("TEXT_MESSAGE_CONTENT", 1),
                t("STATE_DELTA", 1),
                t("STATE_SNAPSHOT", 1)
            ]
        );
        assert_eq!(q.metrics().class(DeliveryClass::Droppable).dropped, 4);
        assert_balanced(&q);
    }
}

#[test]
fn attach_and_detach_race_broadcasts_without_lost_updates() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap();
    let hub = Arc::new(Hub::new());
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let publisher = runtime.spawn({
        let hub = hub.clone();
        let stop = stop.clone();
        async move {
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                hub.broadcast_frame(raw(n)).await;
                n += 1;
                tokio::task::yield_now().await;
            }
            n
        }
    });
    const THREADS: u64 = 4;
    const EACH: u64 = 200;
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let hub = hub.clone();
            std::thread::spawn(move || {
                let mut detached = Vec::new();
                for i in 0..EACH {
                    let id = ConnId(t * 1_000 + i);
                    hub.attach(id, shared_queue(cfg(8)));
                    if i % 2 == 1 {
                        let q = hub.get(id).unwrap();
                        assert!(hub.detach(id));
                        detached.push(q);
                    }
                }
                detached
            })
        })
        .collect();
    let detached: Vec<Arc<Outbound>> = workers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let broadcasts = runtime.block_on(publisher).unwrap();
    assert!(broadcasts > 0);
    assert_eq!(hub.len() as u64, THREADS * EACH / 2);
    for t in 0..THREADS {
        for i in 0..EACH {
            assert_eq!(hub.get(ConnId(t * 1_000 + i)).is_some(), i % 2 == 0);
        }
    }
    // No snapshot outlives the broadcasts: the detached queues are ours alone.
    assert!(detached.iter().all(|q| Arc::strong_count(q) == 1));
    assert_eq!(hub.metrics().events, broadcasts);
}

#[test]
fn queues_hubs_and_their_futures_can_cross_threads() {
    fn send_sync<T: Send + Sync>(_: &T) {}
    fn send<T: Send>(_: T) {}
    let q = queue(cfg(1));
    let hub = Hub::new();
    send_sync(&q);
    send_sync(&hub);
    send(q.send(text(1)));
    send(q.send_until(text(1), tokio::time::Instant::now()));
    send(q.next());
    send(hub.broadcast_frame(text(1)));
}

#[test]
fn a_batch_takes_frames_in_order_up_to_its_max_and_stops_at_a_resync_or_the_close() {
    use std::collections::VecDeque;
    let q = queue(cfg(4));
    for n in 0..3 {
        q.offer(text(n)).unwrap();
    }
    let mut out = VecDeque::new();
    assert_eq!(q.try_next_batch(&mut out, 2, usize::MAX), None);
    assert_eq!(
        out.iter().map(tag).collect::<Vec<_>>(),
        [text(0), text(1)].iter().map(tag).collect::<Vec<_>>()
    );
    out.clear();
    // A delta overflow: the resync comes before the frame still queued.
    q.offer(delta(10, None)).unwrap();
    q.offer(delta(11, None)).unwrap();
    q.offer(delta(12, None)).unwrap();
    assert_eq!(q.offer(delta(13, None)), Ok(Offered::Resync));
    assert!(matches!(
        q.try_next_batch(&mut out, 8, usize::MAX),
        Some(Next::Resync)
    ));
    assert!(out.is_empty());
    q.resynced(None);
    assert_eq!(q.try_next_batch(&mut out, 8, usize::MAX), None);
    assert_eq!(out.iter().map(tag).collect::<Vec<_>>(), [tag(&text(2))]);
    assert_eq!(q.metrics().class(DeliveryClass::Lossless).sent, 3);
    // Empty and open: nothing; empty and closed: the close.
    out.clear();
    assert_eq!(q.try_next_batch(&mut out, 8, usize::MAX), None);
    q.close(CloseReason::Normal);
    assert!(matches!(
        q.try_next_batch(&mut out, 8, usize::MAX),
        Some(Next::Closed(CloseReason::Normal))
    ));
    assert!(out.is_empty());
}

#[test]
fn a_batch_stops_at_its_byte_budget_but_takes_at_least_one_frame() {
    use std::collections::VecDeque;
    let q = queue(cfg(8));
    for n in 0..4 {
        q.offer(text(n)).unwrap();
    }
    let one = text(0).len();
    let mut out = VecDeque::new();
    assert_eq!(q.try_next_batch(&mut out, 8, 1), None);
    assert_eq!(out.len(), 1, "a budget below one frame still takes one");
    out.clear();
    assert_eq!(q.try_next_batch(&mut out, 8, one + 1), None);
    assert_eq!(out.len(), 2, "stops once the budget is reached");
    assert_eq!(q.len(), 1);
    assert_eq!(q.queued_bytes(), text(3).len());
}
