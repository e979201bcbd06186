//! Raw mode (issue 14): with `MalformedPolicy::Raw`, inbound messages that are not
//! events reach the raw handlers as they arrived, in order with the events, under
//! the same size limits and bounded queue; without it, the malformed policy applies.
#![cfg(feature = "ws")]

#[path = "support/ws.rs"]
mod support;

use std::sync::Arc;
use std::time::Duration;

use futures_util::SinkExt;
use membound::adapters::ws::{Connection, MalformedPolicy, RawMessage, Server, ServerConfig};
use support::*;
use tokio::sync::{mpsc, Semaphore};
use tokio_tungstenite::tungstenite::{Bytes, Message};

/// What the handlers saw, in the order they saw it.
#[derive(Debug, PartialEq)]
enum Seen {
    Event(String),
    Raw(RawMessage),
}

/// A server whose connections forward what their event and raw handlers get; each
/// handler first takes a permit of `gate` (none: never waits).
async fn recording_server(
    config: ServerConfig,
    gate: Option<Arc<Semaphore>>,
) -> (
    Server,
    mpsc::UnboundedReceiver<Connection>,
    mpsc::UnboundedReceiver<Seen>,
) {
    let (conns_tx, conns) = mpsc::unbounded_channel();
    let (seen_tx, seen) = mpsc::unbounded_channel();
    let server = Server::builder(config)
        .on_connect(move |conn: Connection| {
            let tx = seen_tx.clone();
            conn.on_any(move |event| {
                let _ = tx.send(Seen::Event(event.kind().as_str().to_owned()));
                async {}
            })
            .unwrap();
            let (tx, gate) = (seen_tx.clone(), gate.clone());
            conn.on_raw(move |raw| {
                let (tx, gate) = (tx.clone(), gate.clone());
                async move {
                    if let Some(gate) = gate {
                        gate.acquire().await.unwrap().forget();
                    }
                    let _ = tx.send(Seen::Raw(raw));
                }
            })
            .unwrap();
            let _ = conns_tx.send(conn);
        })
        .bind()
        .await
        .expect("server binds on loopback");
    (server, conns, seen)
}

fn raw_config() -> ServerConfig {
    let mut config = fast_config();
    config.connection.inbound.on_malformed = MalformedPolicy::Raw;
    config
}

async fn send<S>(ws: &mut tokio_tungstenite::WebSocketStream<S>, message: Message)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    within("a send", ws.send(message)).await.expect("send");
}

async fn next_seen(seen: &mut mpsc::UnboundedReceiver<Seen>) -> Seen {
    within("a handler call", seen.recv())
        .await
        .expect("server alive")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_raw_mode_binary_and_non_event_texts_reach_the_raw_handler_in_order() {
    let (server, mut conns, mut seen) = recording_server(raw_config(), None).await;
    let mut ws = client(server.local_addr()).await;
    let conn = next_conn(&mut conns).await;

    send(&mut ws, Message::binary(vec![0u8, 1, 2, 255])).await;
    send(&mut ws, Message::text("hello, not JSON")).await;
    send(&mut ws, Message::text(r#"{"type":"CUSTOM","name":"n"}"#)).await;
    send(&mut ws, Message::text("[1,2]")).await;
    send(&mut ws, Message::binary(Vec::new())).await;

    let expected = [
        Seen::Raw(RawMessage::Binary(Bytes::from_static(&[0, 1, 2, 255]))),
        Seen::Raw(RawMessage::Text("hello, not JSON".into())),
        Seen::Event("CUSTOM".into()),
        Seen::Raw(RawMessage::Text("[1,2]".into())),
        Seen::Raw(RawMessage::Binary(Bytes::new())),
    ];
    for want in expected {
        assert_eq!(next_seen(&mut seen).await, want);
    }
    let traffic = conn.metrics().traffic;
    assert_eq!((traffic.raw_in, traffic.malformed_in), (4, 0));
    assert!(!conn.is_closed(), "raw mode keeps the connection");
    assert_eq!(server.metrics().traffic.raw_in, 4);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_raw_mode_a_binary_message_still_closes_with_1007() {
    let (server, mut conns, mut seen) = recording_server(fast_config(), None).await;
    let mut ws = client(server.local_addr()).await;
    let conn = next_conn(&mut conns).await;
    send(&mut ws, Message::binary(vec![1u8, 2, 3])).await;
    let (events, code, _) = read_to_close(&mut ws).await;
    assert!(events.is_empty());
    assert_eq!(code, 1007);
    within("the server side", conn.closed()).await;
    let traffic = conn.metrics().traffic;
    assert_eq!((traffic.raw_in, traffic.malformed_in), (0, 1));
    assert!(seen.try_recv().is_err(), "no handler saw it");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_raw_message_hits_the_message_size_limit() {
    let mut config = raw_config();
    config.connection.inbound.max_message_bytes = 1024;
    config.connection.inbound.max_frame_bytes = 1024;
    let (server, mut conns, mut seen) = recording_server(config, None).await;
    let mut ws = client(server.local_addr()).await;
    let conn = next_conn(&mut conns).await;

    send(&mut ws, Message::binary(vec![7u8; 1024])).await;
    assert_eq!(
        next_seen(&mut seen).await,
        Seen::Raw(RawMessage::Binary(vec![7u8; 1024].into()))
    );
    send(&mut ws, Message::binary(vec![7u8; 1025])).await;
    let (_, code, _) = read_to_close(&mut ws).await;
    assert_eq!(code, 1009);
    within("the server side", conn.closed()).await;
    assert_eq!(conn.metrics().traffic.raw_in, 1);
    assert!(
        seen.try_recv().is_err(),
        "the oversized one reached no handler"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_messages_wait_in_the_bounded_inbound_queue_and_its_byte_budget() {
    const CAPACITY: usize = 2;
    const SIZE: usize = 100;
    const SENT: usize = 10;
    let mut config = raw_config();
    config.connection.inbound.queue_capacity = CAPACITY;
    config.connection.inbound.handler_timeout = Duration::from_secs(60);
    let gate = Arc::new(Semaphore::new(0));
    let (server, mut conns, mut seen) = recording_server(config, Some(Arc::clone(&gate))).await;
    let mut ws = client(server.local_addr()).await;
    let conn = next_conn(&mut conns).await;

    for i in 0..SENT {
        send(&mut ws, Message::binary(vec![i as u8; SIZE])).await;
    }
    // The handler holds the first; the queue fills, and the reader waits with the
    // next one, whose bytes the budget has admitted (they count from then on).
    let held = ((CAPACITY + 1) * SIZE) as u64;
    eventually("the reader to wait for room", || {
        let m = conn.metrics().inbound;
        m.push_waits > 0 && m.queued == CAPACITY as u64 && m.queued_bytes == held
    })
    .await;
    assert!(seen.try_recv().is_err(), "nothing handled yet");

    gate.add_permits(SENT);
    for i in 0..SENT {
        assert_eq!(
            next_seen(&mut seen).await,
            Seen::Raw(RawMessage::Binary(vec![i as u8; SIZE].into())),
            "message {i}"
        );
    }
    // A message counts as dispatched once its handler has returned.
    eventually("every message to be dispatched", || {
        conn.metrics().inbound.dispatched == SENT as u64
    })
    .await;
    let inbound = conn.metrics().inbound;
    assert_eq!((inbound.events_in, inbound.queued), (SENT as u64, 0));
    assert_eq!(inbound.peak_queued_bytes, held);
    assert!(seen.try_recv().is_err(), "each exactly once");
    drop(ws);
    server.shutdown().await;
}

#[test]
fn raw_mode_is_off_by_default() {
    assert_eq!(
        ServerConfig::default().connection.inbound.on_malformed,
        MalformedPolicy::Close
    );
}
