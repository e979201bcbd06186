//! The slow-consumer limits (hardening, issue 14, item 10): under the default
//! timings a peer that stops reading is closed as a slow consumer (4008), not dropped
//! by the write timeout (1006); a configuration under which that cannot happen is
//! refused; a lossless sender waits for room when the queue is full in bytes, as it
//! does when it is full in events; and a broadcast past the hard limit closes the
//! connection, never holding up the publisher.
#![cfg(feature = "ws")]

#[path = "support/ws.rs"]
mod support;

use std::sync::Arc;
use std::time::Duration;

use membound::adapters::ws::{
    CloseReason, ConnId, Event, EventType, Frame, Hub, Next, OfferError, Outbound, QueueConfig,
    Server, ServerConfig, SlowConsumer,
};
use membound::clock::ManualClock;
use support::*;

fn text(n: u64) -> Frame {
    Event::new(EventType::TextMessageContent)
        .with("n", n)
        .encode()
}

/// A queue of 100 events whose hard limit is two `text` frames: full in bytes long
/// before it is full in events.
fn two_frames_in_bytes(lossless_timeout: Duration) -> Outbound {
    let one = text(1).len();
    Outbound::new(
        QueueConfig {
            capacity: 100,
            hard_limit_bytes: 2 * one,
            soft_limit_bytes: 2 * one,
            lossless_timeout,
            ..QueueConfig::default()
        },
        Arc::new(ManualClock::default()),
    )
    .unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_lossless_broadcast_past_the_hard_limit_closes_the_connection_not_the_publisher() {
    let q = Arc::new(two_frames_in_bytes(Duration::from_secs(5)));
    let hub = Arc::new(Hub::new());
    hub.attach(ConnId(1), q.clone());
    q.offer(text(1)).unwrap();
    q.offer(text(2)).unwrap();
    // Full in bytes, not in events: a direct lossless frame is not taken, and the
    // queue stays open.
    assert_eq!(q.offer(text(3)), Err(OfferError::Full(text(3))));
    assert_eq!(q.close_reason(), None);

    // A broadcast never waits for a connection: it is appended to the shared log,
    // and the connection's backlog (its queue and the log) is over the hard limit.
    let start = tokio::time::Instant::now();
    hub.broadcast_frame(text(3)).await;
    assert_eq!(start.elapsed(), Duration::ZERO, "no time passed");
    assert_eq!(q.backlog().bytes, 3 * text(1).len() as u64);
    // The connection's next look (its writer, or its limits' tick) skips what is
    // beyond the limit: a lossless event, so it is closed as a slow consumer.
    assert_eq!(
        q.check_limits(),
        Err(CloseReason::SlowConsumer(SlowConsumer::HardLimit))
    );
    assert_eq!(
        q.try_next(),
        Some(Next::Closed(CloseReason::SlowConsumer(
            SlowConsumer::HardLimit
        )))
    );
}

#[tokio::test(start_paused = true)]
async fn a_lossless_send_full_in_bytes_closes_only_after_the_lossless_timeout() {
    let timeout = Duration::from_secs(5);
    let q = two_frames_in_bytes(timeout);
    q.offer(text(1)).unwrap();
    q.offer(text(2)).unwrap();
    let start = tokio::time::Instant::now();
    assert_eq!(
        q.send(text(3)).await,
        Err(OfferError::SlowConsumer(text(3)))
    );
    assert_eq!(start.elapsed(), timeout, "it waited the whole timeout");
    assert_eq!(
        q.close_reason(),
        Some(CloseReason::SlowConsumer(SlowConsumer::LosslessTimeout))
    );
    let m = q.metrics();
    assert_eq!((m.lossless_waits, m.lossless_timeouts), (1, 1));
}

#[test]
fn a_soft_limit_hold_not_below_the_write_timeout_is_refused() {
    let mut config = ServerConfig::default();
    let conn = &mut config.connection;
    assert!(
        conn.outbound.soft_limit_for < conn.write_timeout,
        "the defaults let the soft limit close a stalled consumer first"
    );
    conn.outbound.soft_limit_for = conn.write_timeout;
    let err = config.validate().unwrap_err();
    assert_eq!(err.field, "outbound.soft_limit_for");
    assert!(err.reason.contains("write_timeout"), "{err}");
}

/// Under the default limits and timeouts, a peer that stops reading while events
/// keep coming is closed as a slow consumer: the queue stays above the soft limit
/// for `soft_limit_for` before its blocked write reaches `write_timeout`.
///
/// Time is virtual: tokio's clock is paused once the connection is up (the write
/// timeout and the writer's checks run on it), and the queues' [`ManualClock`] is
/// advanced in step with it by a ticker.
#[tokio::test(flavor = "current_thread")]
async fn under_the_default_timings_a_stalled_consumer_is_closed_with_4008_not_1006() {
    let clock = Arc::new(ManualClock::default());
    let config = ServerConfig::default();
    let (server, mut conns) = serve(Server::builder(config).clock(clock.clone())).await;
    let stalled = stalled_client(server.local_addr()).await;
    let conn = next_conn(&mut conns).await;
    tokio::time::pause();
    let ticker = tokio::spawn({
        let clock = clock.clone();
        async move {
            let step = Duration::from_millis(10);
            loop {
                tokio::time::sleep(step).await;
                clock.advance_by(step);
            }
        }
    });

    // Droppable events never wait and never close the queue by themselves: only the
    // soft limit or the write timeout can end the connection.
    let soft = config.connection.outbound.soft_limit_bytes;
    let payload = "s".repeat(4 << 10);
    let mut sent = 0u64;
    while conn.metrics().outbound.backlog_bytes() <= soft as u64 {
        assert!(sent < 100_000, "the queue never passed the soft limit");
        server
            .broadcast(&Event::new(EventType::Raw).with("data", payload.as_str()))
            .await;
        sent += 1;
    }
    let why = within("the stalled connection to end", conn.closed()).await;
    ticker.abort();
    assert_eq!(why, CloseReason::SlowConsumer(SlowConsumer::SoftLimit));
    assert_eq!(server.metrics().closed.slow_consumer, 1);
    drop(stalled);
    server.shutdown().await;
}
