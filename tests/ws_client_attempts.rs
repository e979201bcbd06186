//! The client against servers that misbehave (issue 14): reconnections stay bounded
//! against a server that accepts and then fails, and handlers and subscriptions
//! registered before the connection opens see what the server sends at once.
#![cfg(feature = "ws")]

#[path = "support/ws.rs"]
mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use membound::adapters::ws::{
    backoff_delay, Client, ClientConfig, ClientState, CloseReason, Connection, Event, EventType,
    ReconnectPolicy, Server,
};
use membound::clock::ManualClock;
use support::*;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

fn policy(max_attempts: u32) -> ReconnectPolicy {
    ReconnectPolicy {
        max_attempts,
        initial_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_secs(1),
        multiplier: 2.0,
        jitter: 0.0,
        stable_after: Duration::from_secs(1),
    }
}

fn client_config(max_attempts: u32) -> ClientConfig {
    ClientConfig {
        dial_timeout: Duration::from_secs(5),
        reconnect: policy(max_attempts),
        connection: fast_config().connection,
    }
}

/// A server that completes every handshake, then sends a text that is not JSON
/// (the client closes with 1007) and answers the close. Records when each
/// handshake completed.
async fn failing_server() -> (String, Arc<Mutex<Vec<Instant>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let handshakes = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&handshakes);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let seen = Arc::clone(&seen);
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
                    return;
                };
                seen.lock().unwrap().push(Instant::now());
                let _ = ws.send(Message::text("this is not JSON")).await;
                while let Some(Ok(_)) = ws.next().await {}
            });
        }
    });
    (url(addr), handshakes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_that_die_at_once_count_as_failed_attempts_with_growing_backoff() {
    let (url, handshakes) = failing_server().await;
    // A manual clock that never moves: every connection ends "at once".
    let clock = Arc::new(ManualClock::default());
    let client = Client::connect_with_clock(&url, client_config(3), clock)
        .await
        .unwrap();
    let mut states = client.watch_state();

    let mut attempts_seen = Vec::new();
    let last = within("the client to give up", async {
        loop {
            let state = states.borrow_and_update().clone();
            match state {
                ClientState::Reconnecting { attempt, .. }
                    if attempts_seen.last() != Some(&attempt) =>
                {
                    attempts_seen.push(attempt);
                }
                ref s if s.is_final() => return state,
                _ => {}
            }
            states.changed().await.expect("client alive");
        }
    })
    .await;
    match &last {
        ClientState::GaveUp { attempts: 3, after } => assert_eq!(after.code(), 1007, "{after:?}"),
        other => panic!("expected to give up after 3 attempts, got {other:?}"),
    }
    // The first connection and exactly three reconnections, each made and failed.
    let times = handshakes.lock().unwrap().clone();
    assert_eq!(times.len(), 4, "handshakes: {}", times.len());
    let m = client.metrics();
    assert_eq!((m.reconnects, m.failed_attempts), (3, 3));
    // The attempts count up (the watch may skip a state, never reorder them) ...
    assert!(
        attempts_seen.windows(2).all(|w| w[0] < w[1]),
        "{attempts_seen:?}"
    );
    assert!(attempts_seen.iter().all(|a| (1..=3).contains(a)));
    // ... and each waited its own, growing backoff before it dialled.
    let p = policy(3);
    for attempt in 1..=3u32 {
        let gap = times[attempt as usize] - times[attempt as usize - 1];
        let delay = backoff_delay(&p, attempt, 0.0);
        assert!(gap >= delay, "attempt {attempt}: {gap:?} < {delay:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_held_for_stable_after_starts_the_attempt_count_afresh() {
    let (server, mut conns) = serve(Server::builder(fast_config())).await;
    let clock = Arc::new(ManualClock::default());
    let client = Client::connect_with_clock(
        &url(server.local_addr()),
        client_config(1),
        Arc::clone(&clock) as _,
    )
    .await
    .unwrap();
    let mut states = client.watch_state();
    let first = client.connection().id();
    let conn = next_conn(&mut conns).await;

    // Dropped at once: the one attempt allowed reconnects.
    conn.close(CloseReason::Normal);
    let second = state_where(
        &mut states,
        |s| matches!(s, ClientState::Connected(id) if *id != first),
    )
    .await;
    let conn = next_conn(&mut conns).await;

    // This connection holds for `stable_after`: its loss starts the count afresh.
    clock.advance_by(Duration::from_secs(1));
    conn.close(CloseReason::Normal);
    state_where(
        &mut states,
        |s| matches!(s, ClientState::Connected(_) if *s != second),
    )
    .await;
    let conn = next_conn(&mut conns).await;
    assert_eq!(client.metrics().failed_attempts, 0);

    // Dropped at once again: that attempt failed, and it was the only one allowed.
    conn.close(CloseReason::Normal);
    let last = within("the client to give up", client.closed()).await;
    assert!(
        matches!(last, ClientState::GaveUp { attempts: 1, .. }),
        "{last:?}"
    );
    let m = client.metrics();
    assert_eq!((m.reconnects, m.failed_attempts), (2, 1));
    server.shutdown().await;
}

/// A server that sends each connection a `RUN_STARTED` numbered from 1 as soon as
/// it is admitted (before it reads or writes anything else).
async fn greeting_server() -> (Server, mpsc::UnboundedReceiver<Connection>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let greeted = std::sync::atomic::AtomicU64::new(0);
    let server = Server::builder(fast_config())
        .on_connect(move |conn| {
            let n = greeted.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            let _ = conn.try_send(&Event::new(EventType::RunStarted).with("n", n));
            let _ = tx.send(conn);
        })
        .bind()
        .await
        .expect("server binds on loopback");
    (server, rx)
}

/// A handler that forwards the `n` of each event it gets.
fn forwarding() -> (
    impl Fn(Event) -> std::future::Ready<()> + Send + Sync + 'static,
    mpsc::UnboundedReceiver<u64>,
) {
    let (tx, rx) = mpsc::unbounded_channel();
    let handler = move |event: Event| {
        let _ = tx.send(event.get("n").and_then(|n| n.as_u64()).unwrap_or(0));
        std::future::ready(())
    };
    (handler, rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handlers_and_subscriptions_registered_before_connecting_see_the_event_sent_on_connect() {
    let (server, mut conns) = greeting_server().await;
    for attempt in 1..=20u64 {
        let builder = Client::builder(client_config(0)).unwrap();
        let runs = builder.subscribe([EventType::RunStarted]).unwrap();
        let (handler, mut handled) = forwarding();
        builder.on(EventType::RunStarted, handler).unwrap();
        let client = builder.connect(&url(server.local_addr())).await.unwrap();
        let conn = next_conn(&mut conns).await;
        // After the greeting, a second event: had the greeting been missed, this one
        // would come first.
        conn.send(&Event::new(EventType::RunFinished))
            .await
            .unwrap();

        let first = within("the greeting", runs.recv()).await.unwrap();
        assert_eq!(first.get("n").unwrap(), attempt, "try {attempt}");
        assert_eq!(within("the handler", handled.recv()).await, Some(attempt));
        client.close(CloseReason::Normal);
        within("the client to close", client.closed()).await;
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handlers_registered_before_connecting_still_fire_after_a_reconnect() {
    let (server, mut conns) = greeting_server().await;
    let builder = Client::builder(client_config(3)).unwrap();
    let (handler, mut handled) = forwarding();
    builder.on(EventType::RunStarted, handler).unwrap();
    let runs = builder.subscribe([]).unwrap();
    let client = builder.connect(&url(server.local_addr())).await.unwrap();
    let mut states = client.watch_state();
    let first = client.connection().id();
    let conn = next_conn(&mut conns).await;
    assert_eq!(within("the first greeting", handled.recv()).await, Some(1));

    conn.close(CloseReason::Normal);
    state_where(
        &mut states,
        |s| matches!(s, ClientState::Connected(id) if *id != first),
    )
    .await;
    next_conn(&mut conns).await;
    assert_eq!(within("the second greeting", handled.recv()).await, Some(2));
    for n in 1..=2u64 {
        let event = within("the subscription", runs.recv()).await.unwrap();
        assert_eq!(event.get("n").unwrap(), n);
    }
    assert_eq!(client.metrics().reconnects, 1);
    client.close(CloseReason::Normal);
    within("the client to close", client.closed()).await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_builder_refuses_a_bad_config_and_a_failed_connect_closes_what_it_registered() {
    let mut config = client_config(1);
    config.reconnect.stable_after = Duration::ZERO;
    let err = Client::builder(config).unwrap_err();
    assert_eq!(err.field, "reconnect.stable_after");

    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let builder = Client::builder(client_config(1)).unwrap();
    let runs = builder.subscribe([]).unwrap();
    assert!(builder.connect(&url(addr)).await.is_err());
    assert!(runs.is_closed());
}
