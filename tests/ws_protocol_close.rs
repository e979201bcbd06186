//! A peer that breaks the protocol still gets the replies queued for its earlier,
//! valid messages before the 1002 close frame, within the close timeout
//! (hardening, issue 14, item 13; Autobahn rates discarding them NON-STRICT).
#![cfg(feature = "ws")]

#[path = "support/ws.rs"]
mod support;

use std::time::Duration;

use futures_util::SinkExt;
use membound::adapters::ws::{
    close_code, CloseReason, Connection, Event, EventType, Server, ServerConfig,
};
use support::*;
use tokio::io::AsyncWriteExt;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

/// Replies to each `RUN_STARTED` with this many lossless events of 16 KiB: about
/// 10 MB, more than twice what the kernel buffers for a client that does not read
/// (a send buffer of at most 4 MiB here), so most of them stay queued.
const REPLIES: u64 = 600;

/// The tests' short timeouts, and byte limits that hold every reply.
fn config() -> ServerConfig {
    let mut config = fast_config();
    let outbound = &mut config.connection.outbound;
    outbound.hard_limit_bytes = 64 << 20;
    outbound.soft_limit_bytes = 32 << 20;
    config
}

/// A masked text frame with the reserved bit RSV1 set, which no negotiated
/// extension allows: a protocol error (tungstenite's "reserved bits are non-zero").
fn frame_with_reserved_bits() -> Vec<u8> {
    let payload = b"bad";
    let mask = [1u8, 2, 3, 4];
    let mut frame = vec![0x80 | 0x40 | 0x1, 0x80 | payload.len() as u8];
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    frame
}

/// Registers the replying handler; its replies are all queued when the returned
/// receiver yields.
fn reply_to_run_started(conn: &Connection) -> tokio::sync::mpsc::UnboundedReceiver<()> {
    let (done, on_done) = tokio::sync::mpsc::unbounded_channel();
    let replier = conn.clone();
    conn.on(EventType::RunStarted, move |_| {
        let (conn, done) = (replier.clone(), done.clone());
        async move {
            let payload = "r".repeat(16 << 10);
            for seq in 0..REPLIES {
                let reply = Event::new(EventType::TextMessageContent)
                    .with("seq", seq)
                    .with("delta", payload.as_str());
                conn.send(&reply).await.expect("the reply is queued");
            }
            let _ = done.send(());
        }
    })
    .expect("handler registered");
    on_done
}

/// Sends a valid message, waits until its replies are queued (and mostly still in
/// the queue: the client does not read), then breaks the protocol and waits until
/// the server has decided to close.
async fn valid_message_then_protocol_error(ws: &mut RawWs, conn: &Connection) {
    let mut replied = reply_to_run_started(conn);
    let hello = Event::new(EventType::RunStarted).with("runId", "r1");
    within(
        "the valid message",
        ws.send(Message::Text(Utf8Bytes::from(hello.encode().as_str()))),
    )
    .await
    .expect("send");
    within("the replies to be queued", replied.recv()).await;
    assert!(conn.queued() > 0, "replies wait in the queue");
    within(
        "the bad frame",
        ws.get_mut().write_all(&frame_with_reserved_bits()),
    )
    .await
    .expect("raw write");
    eventually("the server to close for the protocol error", || {
        conn.metrics().outbound.closed.is_some()
    })
    .await;
    let why = conn.metrics().outbound.closed.unwrap();
    assert!(matches!(why, CloseReason::Protocol(_)), "{why:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_protocol_error_close_delivers_the_replies_queued_before_it() {
    let (server, mut conns) = serve(Server::builder(config())).await;
    let mut ws = stalled_client(server.local_addr()).await;
    let conn = next_conn(&mut conns).await;
    valid_message_then_protocol_error(&mut ws, &conn).await;

    // Now the client reads: every reply, then the close frame.
    let (opcodes, code) = read_silently_until_close(ws).await;
    let texts = opcodes.iter().filter(|&&op| op == 0x1).count() as u64;
    assert_eq!(texts, REPLIES, "every queued reply before the close frame");
    assert_eq!(opcodes.last(), Some(&0x8));
    assert_eq!(code, close_code::PROTOCOL_ERROR);
    let why = within("the connection to end", conn.closed()).await;
    assert!(matches!(why, CloseReason::Protocol(_)), "{why:?}");
    assert_eq!(server.metrics().closed.protocol, 1);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_protocol_error_drain_is_abandoned_after_the_close_timeout() {
    let mut config = config();
    config.connection.close_timeout = Duration::from_millis(200);
    // Far beyond the test's patience: only the close timeout can end the drain.
    config.connection.write_timeout = Duration::from_secs(600);
    let (server, mut conns) = serve(Server::builder(config)).await;
    let mut ws = stalled_client(server.local_addr()).await;
    let conn = next_conn(&mut conns).await;
    valid_message_then_protocol_error(&mut ws, &conn).await;

    // The client never reads: the drain gives up and the connection ends with the
    // protocol error, not a write timeout.
    let why = within("the drain to be abandoned", conn.closed()).await;
    assert!(matches!(why, CloseReason::Protocol(_)), "{why:?}");
    drop(ws);
    server.shutdown().await;
}
