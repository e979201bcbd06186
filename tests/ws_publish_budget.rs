//! A task that publishes in a loop, with no await of its own besides the publish,
//! must not starve the connections' writers (hardening, issue 14, item 8): tokio's
//! multi-threaded scheduler puts a woken writer in the publisher's worker's LIFO slot,
//! which the other workers cannot steal, so a publish that never returns `Pending`
//! keeps it from running until the loop ends.
#![cfg(feature = "ws")]

#[path = "support/ws.rs"]
mod support;

use std::sync::Arc;

use membound::adapters::ws::{close_code, DeliveryClass, Event, EventType, QueueConfig, Server};
use support::*;

fn seq(event: &Event) -> u64 {
    event
        .get("seq")
        .and_then(|v| v.as_u64())
        .expect("seq field")
}

/// A server with the default queue limits and the tests' short timeouts.
fn config() -> membound::adapters::ws::ServerConfig {
    let mut config = fast_config();
    config.connection.outbound = QueueConfig::default();
    config
}

/// Reads events on its own task until the close frame; returns their `seq`s and the
/// close code.
fn spawn_reader(mut ws: Ws) -> tokio::task::JoinHandle<(Vec<u64>, u16)> {
    tokio::spawn(async move {
        let mut seqs = Vec::new();
        loop {
            match next_got(&mut ws).await {
                Got::Event(e) => seqs.push(seq(&e)),
                Got::Close(code, _) => return (seqs, code),
                other => panic!("fast reader: {other:?}"),
            }
        }
    })
}

/// How the loop publishes.
#[derive(Clone, Copy)]
enum Via {
    Broadcast,
    /// `Connection::send`, to the one connection.
    Send,
}

/// A task that publishes 2000 lossless events of 16 KiB (32 MiB in all, four times
/// the hard limit, so the writer has to run while the loop does) with no other
/// await; the fast reader must get every one, in order.
async fn lossless_loop_reaches_a_fast_reader(via: Via) {
    const EVENTS: u64 = 2000;
    let (server, mut conns) = serve(Server::builder(config())).await;
    let server = Arc::new(server);
    let reader = spawn_reader(client(server.local_addr()).await);
    let conn = next_conn(&mut conns).await;

    let publisher = tokio::spawn({
        let server = Arc::clone(&server);
        let conn = conn.clone();
        async move {
            let payload = "l".repeat(16 << 10);
            let mut closed = 0;
            for i in 0..EVENTS {
                let event = Event::new(EventType::TextMessageContent)
                    .with("seq", i)
                    .with("delta", payload.as_str());
                closed += match via {
                    Via::Broadcast => {
                        server.broadcast(&event).await;
                        usize::from(conn.is_closed())
                    }
                    Via::Send => usize::from(conn.send(&event).await.is_err()),
                };
            }
            closed
        }
    });
    let closed = within("the publishing loop", publisher).await.unwrap();
    assert_eq!(
        closed,
        0,
        "the fast reader's connection was closed: {:?}",
        conn.metrics().outbound.closed
    );
    server.shutdown().await;
    let (seqs, code) = within("the fast reader", reader).await.unwrap();
    assert_eq!(code, close_code::GOING_AWAY);
    assert_eq!(
        seqs,
        (0..EVENTS).collect::<Vec<_>>(),
        "every event, in order"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broadcasting_loop_delivers_every_lossless_event_to_a_fast_reader() {
    lossless_loop_reaches_a_fast_reader(Via::Broadcast).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sending_loop_delivers_every_lossless_event_to_a_fast_reader() {
    lossless_loop_reaches_a_fast_reader(Via::Send).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publishing_loop_lets_the_writer_send_droppable_events_while_it_runs() {
    const EVENTS: u64 = 20_000;
    let config = config();
    let capacity = config.connection.outbound.capacity as u64;
    let (server, mut conns) = serve(Server::builder(config)).await;
    let server = Arc::new(server);
    let reader = spawn_reader(client(server.local_addr()).await);
    let conn = next_conn(&mut conns).await;

    let publisher = tokio::spawn({
        let server = Arc::clone(&server);
        async move {
            let payload = "d".repeat(4 << 10);
            for i in 0..EVENTS {
                let event = Event::new(EventType::Raw)
                    .with("seq", i)
                    .with("data", payload.as_str());
                server.broadcast(&event).await;
            }
        }
    });
    within("the publishing loop", publisher).await.unwrap();
    server.shutdown().await;
    let (seqs, code) = within("the fast reader", reader).await.unwrap();
    assert_eq!(code, close_code::GOING_AWAY);
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "in order, no repeats");

    // Droppables are dropped only from a full queue, and each drop is counted. A
    // writer that cannot run until the loop is over delivers at most one queueful
    // (the last events); one that runs alongside delivers more.
    let m = conn.metrics().outbound;
    let class = m.class(DeliveryClass::Droppable);
    assert_eq!(class.sent, seqs.len() as u64);
    assert_eq!(
        class.sent + class.dropped,
        EVENTS,
        "every event accounted for"
    );
    assert!(
        seqs.len() as u64 > capacity,
        "the writer ran during the loop: {} of {EVENTS} delivered, queue capacity {capacity}",
        seqs.len()
    );
}
