//! End-to-end tests of the WebSocket server on loopback, with real tokio-tungstenite
//! clients: delivery order per class, slow consumers, keepalive and idle timeout,
//! oversized and malformed input, connection caps, memory pressure, inbound events and
//! graceful shutdown.
#![cfg(feature = "ws")]

#[path = "support/ws.rs"]
mod support;

#[path = "support/scripted_memory.rs"]
mod scripted_memory;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use membound::adapters::ws::{
    close_code, CloseReason, DeliveryClass, Event, EventType, LogConfig, MalformedPolicy, Server,
    SlowConsumer,
};
use membound::pressure::PressureLevel;
use scripted_memory::Scripted;
use serde_json::json;
use support::*;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

fn seq(event: &Event) -> u64 {
    event
        .get("seq")
        .and_then(|v| v.as_u64())
        .expect("seq field")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_arrive_in_order_within_each_class() {
    let (server, mut conns) = serve(Server::builder(fast_config())).await;
    let mut ws = client(server.local_addr()).await;
    let conn = next_conn(&mut conns).await;

    // An AG-UI mix: text and tool calls (lossless), state deltas, snapshots, raw.
    let kinds = [
        EventType::TextMessageContent,
        EventType::StateDelta,
        EventType::ToolCallArgs,
        EventType::Raw,
        EventType::StateSnapshot,
        EventType::Custom,
    ];
    let total = 600u64;
    let kind_of = |i: u64| kinds[(i % kinds.len() as u64) as usize].clone();
    for i in 0..total {
        let event = Event::new(kind_of(i)).with("seq", i).with_revision(i);
        // Through both paths: the fan-out and the connection's own queue.
        if i % 2 == 0 {
            server.broadcast(&event).await;
        } else {
            conn.send(&event).await.expect("queued");
        }
    }
    server
        .broadcast(&Event::new(EventType::RunFinished).with("seq", total))
        .await;

    let mut got: [Vec<u64>; 4] = Default::default();
    loop {
        let event = next_event(&mut ws).await;
        if event.kind() == &EventType::RunFinished {
            break;
        }
        got[event.class().index()].push(seq(&event));
    }
    let sent = |class: DeliveryClass| -> Vec<u64> {
        (0..total)
            .filter(|i| kind_of(*i).class() == class)
            .collect()
    };
    // The queue never overflowed: lossless events, deltas and droppables all arrive,
    // each class in the order sent.
    for class in [
        DeliveryClass::Lossless,
        DeliveryClass::StateDelta,
        DeliveryClass::Droppable,
    ] {
        assert_eq!(got[class.index()], sent(class), "{}", class.as_str());
    }
    // Snapshots are latest-wins: a subsequence in order, ending with the newest.
    let snapshots = &got[DeliveryClass::Snapshot.index()];
    assert!(snapshots.windows(2).all(|w| w[0] < w[1]), "{snapshots:?}");
    assert_eq!(snapshots.last(), sent(DeliveryClass::Snapshot).last());
    let m = conn.metrics();
    assert_eq!(
        m.traffic.frames_out + m.outbound.replaced_snapshots,
        total + 1,
        "every event sent or replaced"
    );
    assert!(m.traffic.bytes_out > 0);
    drop(ws); // an idle client would hold the shutdown for its close reply
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_reader_is_closed_as_a_slow_consumer_with_4008() {
    let mut config = fast_config();
    config.connection.outbound.capacity = 16;
    config.connection.outbound.lossless_timeout = Duration::from_millis(200);
    let (server, mut conns) = serve(Server::builder(config)).await;
    let mut stalled = stalled_client(server.local_addr()).await;
    let stalled_conn = next_conn(&mut conns).await;
    let mut fast = client(server.local_addr()).await;
    let fast_conn = next_conn(&mut conns).await;

    // The fast client reads everything on its own task.
    let reader = tokio::spawn(async move {
        let mut n = 0u64;
        loop {
            match next_got(&mut fast).await {
                Got::Event(e) => {
                    assert_eq!(seq(&e), n, "the fast client gets every event in order");
                    n += 1;
                }
                Got::Close(code, _) => return (n, code),
                other => panic!("fast client: {other:?}"),
            }
        }
    });

    // The publisher never waits: the stalled connection's backlog in the shared log
    // passes its hard limit (8 MiB) and its writer's limits tick closes it. The
    // publisher is paced by the fast client, as a real one is by its source.
    let payload = "x".repeat(8 << 10);
    let mut sent = 0u64;
    while stalled_conn.metrics().outbound.closed.is_none() {
        assert!(sent < 20_000, "the stalled client was never closed");
        let event = Event::new(EventType::TextMessageContent)
            .with("seq", sent)
            .with("delta", payload.as_str());
        server.broadcast(&event).await;
        sent += 1;
        while fast_conn.queued() > 256 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        if sent % 64 == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    // Now the stalled client reads: what was written before, then the close frame.
    let (events, code, reason) = read_to_close(&mut stalled).await;
    assert_eq!(code, close_code::SLOW_CONSUMER, "reason: {reason}");
    for (i, e) in events.iter().enumerate() {
        assert_eq!(seq(e), i as u64, "a prefix, in order, without gaps");
    }
    assert!((events.len() as u64) < sent);
    let why = within("the stalled connection to end", stalled_conn.closed()).await;
    assert!(
        matches!(
            why,
            CloseReason::SlowConsumer(SlowConsumer::HardLimit | SlowConsumer::Lagged)
        ),
        "{why:?}"
    );
    assert!(
        stalled_conn.metrics().close_handshake,
        "handshake completed"
    );

    // The fast client was not held back and lost nothing.
    assert!(!fast_conn.is_closed());
    server.shutdown().await;
    let (n, code) = within("the fast reader", reader).await.unwrap();
    assert_eq!(n, sent);
    assert_eq!(code, close_code::GOING_AWAY);
    let m = server.metrics();
    assert_eq!(m.closed.slow_consumer, 1);
    assert_eq!(m.closed.shutdown, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keepalive_pings_arrive_and_answered_pings_keep_the_connection() {
    let mut config = fast_config();
    config.connection.keepalive_interval = Duration::from_millis(40);
    config.connection.idle_timeout = Duration::from_millis(200);
    let (server, mut conns) = serve(Server::builder(config)).await;
    let mut ws = client(server.local_addr()).await;
    let conn = next_conn(&mut conns).await;

    // Reading answers pings (tungstenite replies with pongs), so the connection
    // outlives several idle timeouts.
    let mut pings = 0;
    while pings < 15 {
        match within("a ping", ws.next()).await {
            Some(Ok(Message::Ping(_))) => pings += 1,
            other => panic!("expected pings, got {other:?}"),
        }
    }
    assert!(!conn.is_closed());
    let m = conn.metrics();
    assert!(m.traffic.pings_sent >= 15);
    // Most pongs are back (the last ones may still be on their way).
    assert!(
        m.traffic.pongs_received >= 5,
        "pongs: {}",
        m.traffic.pongs_received
    );
    drop(ws);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_peer_is_closed_after_the_idle_timeout() {
    let mut config = fast_config();
    config.connection.keepalive_interval = Duration::from_millis(30);
    config.connection.idle_timeout = Duration::from_millis(150);
    config.connection.close_timeout = Duration::from_millis(200);
    let (server, mut conns) = serve(Server::builder(config)).await;
    // A peer that reads the raw socket and never answers: no pongs, no close reply.
    let ws = stalled_client(server.local_addr()).await;
    let conn = next_conn(&mut conns).await;

    let started = tokio::time::Instant::now();
    let (opcodes, code) = read_silently_until_close(ws).await;
    assert!(started.elapsed() >= Duration::from_millis(100));
    assert_eq!(code, close_code::GOING_AWAY);
    assert!(
        opcodes.iter().filter(|&&op| op == 0x9).count() >= 2,
        "{opcodes:?}"
    );
    let why = within("the idle timeout", conn.closed()).await;
    assert_eq!(why, CloseReason::IdleTimeout);
    assert!(!conn.metrics().close_handshake, "the peer never answered");
    assert_eq!(server.metrics().closed.idle_timeout, 1);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_frame_is_closed_with_1009() {
    let mut config = fast_config();
    config.connection.inbound.max_frame_bytes = 1024;
    config.connection.inbound.max_message_bytes = 4096;
    let (server, mut conns) = serve(Server::builder(config)).await;
    let mut ws = client(server.local_addr()).await;
    let conn = next_conn(&mut conns).await;

    let big = json!({"type": "CUSTOM", "value": "y".repeat(2000)}).to_string();
    send_text(&mut ws, &big).await;
    let (_, code, _) = read_to_close(&mut ws).await;
    assert_eq!(code, close_code::MESSAGE_TOO_BIG);
    assert_eq!(
        within("the close", conn.closed()).await,
        CloseReason::MessageTooBig
    );
    assert_eq!(server.metrics().closed.message_too_big, 1);
    drop(ws);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_fragmented_message_is_closed_with_1009() {
    let mut config = fast_config();
    config.connection.inbound.max_frame_bytes = 1024;
    config.connection.inbound.max_message_bytes = 2048;
    let (server, mut conns) = serve(Server::builder(config)).await;
    let mut ws = client(server.local_addr()).await;
    let conn = next_conn(&mut conns).await;

    use tokio_tungstenite::tungstenite::protocol::frame::{
        coding::{Data, OpCode},
        Frame,
    };
    let part = "z".repeat(900);
    let first = Frame::message(part.clone(), OpCode::Data(Data::Text), false);
    ws.send(Message::Frame(first)).await.unwrap();
    for _ in 0..3 {
        let more = Frame::message(part.clone(), OpCode::Data(Data::Continue), false);
        if ws.send(Message::Frame(more)).await.is_err() {
            break;
        }
    }
    let (_, code, _) = read_to_close(&mut ws).await;
    assert_eq!(code, close_code::MESSAGE_TOO_BIG);
    assert_eq!(
        within("the close", conn.closed()).await,
        CloseReason::MessageTooBig
    );
    drop(ws);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_json_is_closed_with_1007() {
    let (server, mut conns) = serve(Server::builder(fast_config())).await;
    for bad in ["{not json", r#"{"no_type": 1}"#, "[1,2]", r#"{"type": 7}"#] {
        let mut ws = client(server.local_addr()).await;
        let conn = next_conn(&mut conns).await;
        send_text(&mut ws, bad).await;
        let (_, code, reason) = read_to_close(&mut ws).await;
        assert_eq!(code, close_code::INVALID_PAYLOAD, "{bad}");
        assert!(!reason.is_empty());
        assert!(matches!(
            within("the close", conn.closed()).await,
            CloseReason::InvalidPayload(_)
        ));
    }
    // Invalid UTF-8 in a text frame: also 1007.
    let mut ws = client(server.local_addr()).await;
    let conn = next_conn(&mut conns).await;
    use tokio_tungstenite::tungstenite::protocol::frame::{
        coding::{Data, OpCode},
        Frame,
    };
    let raw = Frame::message(vec![b'{', 0xff, 0xfe, b'}'], OpCode::Data(Data::Text), true);
    ws.send(Message::Frame(raw)).await.unwrap();
    let (_, code, _) = read_to_close(&mut ws).await;
    assert_eq!(code, close_code::INVALID_PAYLOAD);
    assert!(matches!(
        within("the close", conn.closed()).await,
        CloseReason::InvalidPayload(_)
    ));
    assert_eq!(server.metrics().closed.invalid_payload, 5);
    drop(ws);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_json_gets_an_error_event_when_so_configured() {
    let mut config = fast_config();
    config.connection.inbound.on_malformed = MalformedPolicy::ErrorEvent;
    let (server, mut conns) = serve(Server::builder(config)).await;
    let mut ws = client(server.local_addr()).await;
    let conn = next_conn(&mut conns).await;
    let inbound = conn.subscribe([]).unwrap();

    send_text(&mut ws, "{oops").await;
    let error = next_event(&mut ws).await;
    assert_eq!(error.kind(), &EventType::RunError);
    assert_eq!(error.get("code").unwrap(), "MALFORMED_EVENT");
    assert!(error
        .get("message")
        .unwrap()
        .as_str()
        .unwrap()
        .contains("JSON"));
    ws.send(Message::Binary(vec![1, 2, 3].into()))
        .await
        .unwrap();
    let error = next_event(&mut ws).await;
    assert_eq!(error.kind(), &EventType::RunError);

    // The connection is still open and reads good events.
    send_text(&mut ws, r#"{"type":"CUSTOM","name":"ping","value":1}"#).await;
    let got = within("the inbound event", inbound.recv()).await.unwrap();
    assert_eq!(got.kind(), &EventType::Custom);
    assert_eq!(conn.metrics().traffic.malformed_in, 2);
    assert!(!conn.is_closed());
    drop(ws);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connection_cap_refuses_with_1013() {
    let mut config = fast_config();
    config.max_connections = 2;
    let (server, mut conns) = serve(Server::builder(config)).await;
    let mut a_ws = client(server.local_addr()).await;
    let a = next_conn(&mut conns).await;
    let b_ws = client(server.local_addr()).await;
    let _b_conn = next_conn(&mut conns).await;

    let mut c = client(server.local_addr()).await;
    let (events, code, _) = read_to_close(&mut c).await;
    assert!(events.is_empty());
    assert_eq!(code, close_code::TRY_AGAIN_LATER);
    assert_eq!(server.metrics().refused_capacity, 1);
    assert_eq!(server.connection_count(), 2);

    // A place frees up: the next one is admitted.
    a.close(CloseReason::Normal);
    let (_, code, _) = read_to_close(&mut a_ws).await;
    assert_eq!(code, close_code::NORMAL);
    within("the close", a.closed()).await;
    let d_ws = client(server.local_addr()).await;
    let d = next_conn(&mut conns).await;
    assert!(!d.is_closed());
    assert_eq!(server.connection_count(), 2);
    drop((b_ws, d_ws));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn critical_pressure_refuses_new_connections_with_1013() {
    // Registered by the builder: the manager's transitions reach the server with
    // no callback.
    let memory = Scripted::new();
    let (server, mut conns) =
        serve(Server::builder(fast_config()).memory_manager(&memory.manager)).await;
    let mut old = client(server.local_addr()).await;
    let old_conn = next_conn(&mut conns).await;

    memory.drive(PressureLevel::Critical);
    assert_eq!(server.pressure(), PressureLevel::Critical);
    assert_eq!(server.metrics().pressure, PressureLevel::Critical);
    // The open connection's queues shrank to a quarter.
    let m = old_conn.metrics();
    assert_eq!(m.outbound.capacity, 1024 / 4);
    assert_eq!(m.inbound.queue_capacity, 256 / 4);
    let mut refused = client(server.local_addr()).await;
    let (_, code, reason) = read_to_close(&mut refused).await;
    assert_eq!(code, close_code::TRY_AGAIN_LATER);
    assert_eq!(reason, "try again later");
    assert_eq!(server.metrics().refused_pressure, 1);

    // Connections already open stay open and keep receiving lossless events.
    server
        .broadcast(&Event::new(EventType::RunStarted).with("seq", 0))
        .await;
    assert_eq!(seq(&next_event(&mut old).await), 0);
    assert!(!old_conn.is_closed());

    memory.drive(PressureLevel::Normal);
    assert_eq!(old_conn.metrics().outbound.capacity, 1024);
    assert_eq!(old_conn.metrics().inbound.queue_capacity, 256);
    let again_ws = client(server.local_addr()).await;
    let again = next_conn(&mut conns).await;
    assert!(!again.is_closed());
    drop((old, again_ws));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_built_with_a_manager_follows_every_transition_with_no_closure() {
    let memory = Scripted::new();
    memory.drive(PressureLevel::High);
    // Sized for the manager's level when built.
    let (server, mut conns) =
        serve(Server::builder(fast_config()).memory_manager(&memory.manager)).await;
    assert_eq!(server.pressure(), PressureLevel::High);
    // A connection accepted later starts at the level in force.
    let _a_ws = client(server.local_addr()).await;
    let a = next_conn(&mut conns).await;
    let m = a.metrics();
    assert_eq!(m.outbound.capacity, 512);
    assert_eq!(m.outbound.droppable_capacity, 512);
    assert_eq!(m.inbound.queue_capacity, 128);

    // Critical: the class rule too (droppables get half the outbound queue).
    memory.drive(PressureLevel::Critical);
    let m = a.metrics();
    assert_eq!(m.outbound.capacity, 256);
    assert_eq!(m.outbound.droppable_capacity, 128);
    assert_eq!(m.inbound.queue_capacity, 64);

    memory.drive(PressureLevel::Low);
    assert_eq!(server.pressure(), PressureLevel::Low);
    let _b_ws = client(server.local_addr()).await;
    let b = next_conn(&mut conns).await;
    for conn in [&a, &b] {
        let m = conn.metrics();
        assert_eq!(m.outbound.capacity, 768);
        assert_eq!(m.outbound.droppable_capacity, 768);
        assert_eq!(m.inbound.queue_capacity, 192);
    }
    server.shutdown().await;
    // Held weakly: the manager does not keep the ended server alive, and its
    // next transition forgets it.
    drop(server);
    memory.drive(PressureLevel::Normal);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbound_events_reach_handlers_and_subscriptions() {
    let (server, mut conns) = serve(Server::builder(fast_config())).await;
    let mut ws = client(server.local_addr()).await;
    let conn = next_conn(&mut conns).await;

    let seen = Arc::new(Mutex::new(Vec::new()));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let log = Arc::clone(&seen);
    conn.on(EventType::ToolCallResult, move |event| {
        let log = Arc::clone(&log);
        let tx = tx.clone();
        async move {
            log.lock().unwrap().push(event.get("n").cloned());
            let _ = tx.send(());
        }
    })
    .unwrap();
    let custom = conn.subscribe([EventType::Custom]).unwrap();

    for n in 0..5 {
        let text = json!({"type": "TOOL_CALL_RESULT", "n": n}).to_string();
        send_text(&mut ws, &text).await;
        send_text(&mut ws, &json!({"type": "CUSTOM", "n": n}).to_string()).await;
    }
    for n in 0..5 {
        within("the handler", rx.recv()).await.unwrap();
        let event = within("the subscription", custom.recv()).await.unwrap();
        assert_eq!(event.get("n").unwrap(), n);
    }
    let got: Vec<_> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|v| v.clone().unwrap())
        .collect();
    assert_eq!(got, (0..5).map(|n| json!(n)).collect::<Vec<_>>());
    let m = conn.metrics();
    assert_eq!(m.traffic.frames_in, 10);
    drop(ws);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_drains_lossless_events_then_sends_1001() {
    let (server, mut conns) = serve(Server::builder(fast_config())).await;
    let mut clients = Vec::new();
    for _ in 0..3 {
        clients.push(stalled_client(server.local_addr()).await);
        next_conn(&mut conns).await;
    }
    // Queue more than the stalled sockets take, so events wait in every queue when
    // the shutdown begins.
    let payload = "p".repeat(2048);
    let mut total = 0u64;
    while !server.connections().iter().all(|c| c.queued() >= 50) {
        assert!(total < 20_000, "the queues never filled");
        let event = Event::new(EventType::TextMessageContent)
            .with("seq", total)
            .with("delta", payload.as_str());
        server.broadcast(&event).await;
        assert!(server.connections().iter().all(|c| !c.is_closed()));
        total += 1;
    }
    let shutting = tokio::spawn(async move {
        server.shutdown().await;
        server
    });
    // The readers start late: the shutdown waits for them (within its timeout).
    for ws in &mut clients {
        let (events, code, reason) = read_to_close(ws).await;
        assert_eq!(code, close_code::GOING_AWAY, "{reason}");
        let seqs: Vec<u64> = events.iter().map(seq).collect();
        assert_eq!(seqs, (0..total).collect::<Vec<_>>(), "every lossless event");
    }
    let server = within("the shutdown", shutting).await.unwrap();
    let m = server.metrics();
    assert_eq!(m.connections, 0);
    assert_eq!(m.closed.shutdown, 3);
    assert_eq!(server.task_count(), 0);
    assert!(server.hub().is_empty());

    // No one is admitted afterwards.
    assert!(
        tokio_tungstenite::connect_async(url(server.local_addr()))
            .await
            .is_err(),
        "the listener is closed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_larger_than_the_write_buffer_cap_go_out_fragmented() {
    let mut config = fast_config();
    config.connection.write_buffer_bytes = 1024;
    config.connection.max_write_buffer_bytes = 4096;
    let (server, mut conns) = serve(Server::builder(config)).await;
    let mut ws = client(server.local_addr()).await;
    let conn = next_conn(&mut conns).await;

    // Small events batched in the write buffer, then events that do not fit beside
    // them (one under the cap, one far over it, sent as continuation frames).
    let big = "b".repeat(50_000);
    let medium = "m".repeat(3_500);
    for i in 0..20 {
        conn.try_send(&Event::new(EventType::TextMessageContent).with("seq", i))
            .unwrap();
    }
    conn.try_send(&Event::new(EventType::ToolCallArgs).with("delta", medium.as_str()))
        .unwrap();
    conn.try_send(&Event::new(EventType::StateSnapshot).with("snapshot", big.as_str()))
        .unwrap();
    conn.try_send(&Event::new(EventType::RunFinished)).unwrap();
    for i in 0..20 {
        assert_eq!(seq(&next_event(&mut ws).await), i);
    }
    let event = next_event(&mut ws).await;
    assert_eq!(event.get("delta").unwrap().as_str().unwrap().len(), 3_500);
    let event = next_event(&mut ws).await;
    assert_eq!(
        event.get("snapshot").unwrap().as_str().unwrap().len(),
        50_000
    );
    assert_eq!(next_event(&mut ws).await.kind(), &EventType::RunFinished);
    assert!(!conn.is_closed());
    drop(ws);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_close_is_answered_and_recorded() {
    let (server, mut conns) = serve(Server::builder(fast_config())).await;
    let mut ws = client(server.local_addr()).await;
    let conn = next_conn(&mut conns).await;
    ws.close(Some(tokio_tungstenite::tungstenite::protocol::CloseFrame {
        code: 4001u16.into(),
        reason: Utf8Bytes::from_static("bye"),
    }))
    .await
    .unwrap();
    // The server's reply ends the client's stream.
    loop {
        match within("the reply", ws.next()).await {
            None => break,
            Some(Ok(Message::Close(Some(f)))) => assert_eq!(u16::from(f.code), 4001),
            Some(Ok(_)) => {}
            Some(Err(e)) => panic!("{e}"),
        }
    }
    let why = within("the close", conn.closed()).await;
    assert_eq!(
        why,
        CloseReason::Remote {
            code: 4001,
            reason: "bye".into()
        }
    );
    assert!(conn.metrics().close_handshake);
    assert_eq!(server.connection_count(), 0);
    assert!(conn.send(&Event::new(EventType::RunStarted)).await.is_err());
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_soft_limit_held_too_long_closes_with_4008() {
    let mut config = fast_config();
    config.connection.outbound.capacity = 4096;
    config.connection.outbound.soft_limit_bytes = 64 << 10;
    config.connection.outbound.hard_limit_bytes = 64 << 20;
    config.connection.outbound.soft_limit_for = std::time::Duration::from_millis(100);
    let (server, mut conns) = serve(Server::builder(config)).await;
    let mut stalled = stalled_client(server.local_addr()).await;
    let conn = next_conn(&mut conns).await;

    // Droppable events never wait: the backlog piles up above the soft limit
    // until it has stayed there for 100 ms (the writer's limits tick closes it).
    let payload = "r".repeat(4096);
    let mut sent = 0u64;
    loop {
        assert!(sent < 1_000_000, "the soft limit never closed the queue");
        let event = Event::new(EventType::Raw)
            .with("seq", sent)
            .with("data", payload.as_str());
        server.broadcast(&event).await;
        if conn.metrics().outbound.closed.is_some() {
            break;
        }
        sent += 1;
        if sent % 64 == 0 {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
    }
    let (_, code, reason) = read_to_close(&mut stalled).await;
    assert_eq!(code, close_code::SLOW_CONSUMER);
    assert_eq!(reason, SlowConsumer::SoftLimit.as_str());
    assert_eq!(
        within("the close", conn.closed()).await,
        CloseReason::SlowConsumer(SlowConsumer::SoftLimit)
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_blocked_past_the_write_timeout_drops_the_connection() {
    let mut config = fast_config();
    config.connection.write_timeout = std::time::Duration::from_millis(150);
    // Below the write timeout, as it must be; never reached: 64 queued events of
    // 8 KiB stay under the soft limit's 2 MiB.
    config.connection.outbound.soft_limit_for = std::time::Duration::from_millis(100);
    config.connection.outbound.capacity = 64;
    let (server, mut conns) = serve(Server::builder(config)).await;
    let stalled = stalled_client(server.local_addr()).await;
    let conn = next_conn(&mut conns).await;

    // Droppable events only: nothing waits for room, so only the blocked write can
    // end the connection.
    let payload = "w".repeat(8192);
    let mut sent = 0u64;
    while !conn.is_closed() {
        assert!(sent < 100_000, "the write never timed out");
        server
            .broadcast(&Event::new(EventType::Custom).with("data", payload.as_str()))
            .await;
        sent += 1;
        if conn.queued() >= 64 {
            // Full: wait for the end instead of spinning.
            break;
        }
    }
    let why = within("the write timeout", conn.closed()).await;
    assert_eq!(why, CloseReason::Lost("write timed out".into()));
    assert_eq!(server.metrics().closed.lost, 1);
    drop(stalled);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_writer_times_the_soft_limit_when_nothing_more_is_offered() {
    let mut config = fast_config();
    config.connection.outbound.capacity = 16_384;
    config.connection.outbound.soft_limit_bytes = 64 << 10;
    config.connection.outbound.hard_limit_bytes = 64 << 20;
    config.connection.outbound.soft_limit_for = std::time::Duration::from_millis(100);
    config.connection.close_timeout = std::time::Duration::from_millis(200);
    // A shared log deep enough for the fills below (the backlog lives there).
    config.log = LogConfig::new(1 << 16, 64 << 20);
    let (server, mut conns) = serve(Server::builder(config)).await;
    let stalled = stalled_client(server.local_addr()).await;
    let conn = next_conn(&mut conns).await;

    // Fill the queue above the soft limit, then offer nothing more: only the
    // connection's own timer can see the limit held too long. The writer may still
    // be moving the queue into socket buffers that had room when the fill ended
    // (the kernel grows them to several MiB); then the queue falls below the limit,
    // the timer stops, and the fill is repeated, twice as deep each round, until
    // the socket buffers are full and the queue stays over the limit.
    let payload = "t".repeat(4096);
    let mut sent = 0u64;
    let mut target = 128usize << 10;
    let why = loop {
        assert!(
            target <= 32 << 20,
            "the soft limit never closed the connection"
        );
        while conn.metrics().outbound.backlog_bytes() < target as u64 {
            assert!(sent < 100_000, "the queue never grew");
            server
                .broadcast(&Event::new(EventType::Raw).with("data", payload.as_str()))
                .await;
            sent += 1;
        }
        if let Ok(why) = tokio::time::timeout(Duration::from_secs(1), conn.closed()).await {
            break why;
        }
        target *= 2;
    };
    assert_eq!(why, CloseReason::SlowConsumer(SlowConsumer::SoftLimit));
    drop(stalled);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binding_fails_with_typed_errors() {
    use membound::adapters::ws::ServeError;
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut config = fast_config();
    config.bind = taken.local_addr().unwrap();
    let err = Server::bind(config).await.unwrap_err();
    assert!(
        matches!(err, ServeError::Bind { addr, .. } if addr == config.bind),
        "{err}"
    );
    assert!(std::error::Error::source(&err).is_some());

    let mut config = fast_config();
    config.connection.outbound.capacity = 0;
    let err = Server::bind(config).await.unwrap_err();
    assert!(matches!(err, ServeError::Config(_)), "{err}");
    assert!(err.to_string().contains("outbound.capacity"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_and_stalled_handshakes_are_counted_and_dropped() {
    let mut config = fast_config();
    config.handshake_timeout = Duration::from_millis(100);
    let (server, _conns) = serve(Server::builder(config)).await;

    // Garbage instead of an HTTP upgrade, and a client that never sends one.
    let garbage = tokio::net::TcpStream::connect(server.local_addr())
        .await
        .unwrap();
    garbage.writable().await.unwrap();
    garbage.try_write(b"NOT HTTP\r\n\r\n").unwrap();
    let silent = tokio::net::TcpStream::connect(server.local_addr())
        .await
        .unwrap();
    for tcp in [&garbage, &silent] {
        // The server drops both: reading sees the end (or a reset).
        within("the server to drop the socket", async {
            let mut buf = [0u8; 256];
            loop {
                tcp.readable().await.unwrap();
                match tcp.try_read(&mut buf) {
                    Ok(0) => break,
                    Err(e) if e.kind() != std::io::ErrorKind::WouldBlock => break,
                    _ => {}
                }
            }
        })
        .await;
    }
    let m = server.metrics();
    assert_eq!(m.handshake_failures, 2);
    assert_eq!(m.accepted, 0);
    server.shutdown().await;
    assert_eq!(server.task_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_gives_up_on_a_client_that_never_reads() {
    let mut config = fast_config();
    config.shutdown_timeout = Duration::from_millis(200);
    config.connection.close_timeout = Duration::from_millis(200);
    let (server, mut conns) = serve(Server::builder(config)).await;
    let stalled = stalled_client(server.local_addr()).await;
    let conn = next_conn(&mut conns).await;
    let payload = "q".repeat(4096);
    while conn.queued() < 32 {
        let event = Event::new(EventType::TextMessageContent).with("delta", payload.as_str());
        server.broadcast(&event).await;
        assert!(!conn.is_closed());
    }
    // The drain cannot finish: after the shutdown timeout the queue is abandoned,
    // the close frame cannot be written either, and the task ends.
    within("the shutdown", server.shutdown()).await;
    assert_eq!(conn.closed().await, CloseReason::Shutdown);
    assert!(!conn.metrics().close_handshake);
    assert_eq!(server.task_count(), 0);
    assert_eq!(server.metrics().closed.shutdown, 1);
    drop(stalled);
}
