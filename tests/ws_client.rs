//! End-to-end tests of the client against the server on loopback: both directions,
//! reconnection that keeps handlers and subscriptions, bounded attempts, the dial
//! timeout, and connection errors.
#![cfg(feature = "ws")]

#[path = "support/ws.rs"]
mod support;

use std::time::Duration;

use membound::adapters::ws::{
    Client, ClientConfig, ClientState, CloseReason, ConnectError, Event, EventType,
    ReconnectPolicy, Server, SubscriptionError,
};
use support::*;

fn client_config(max_attempts: u32) -> ClientConfig {
    ClientConfig {
        dial_timeout: Duration::from_secs(5),
        reconnect: ReconnectPolicy {
            max_attempts,
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(50),
            multiplier: 2.0,
            jitter: 0.5,
            ..ReconnectPolicy::default()
        },
        connection: fast_config().connection,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_receives_broadcasts_and_sends_events() {
    let (server, mut conns) = serve(Server::builder(fast_config())).await;
    let client = Client::connect(&url(server.local_addr()), client_config(3))
        .await
        .unwrap();
    let text = client.subscribe([EventType::TextMessageContent]).unwrap();
    let conn = next_conn(&mut conns).await;
    let from_client = conn.subscribe([]).unwrap();
    assert_eq!(client.connection().peer_addr(), Some(server.local_addr()));

    for i in 0..20 {
        server
            .broadcast(&Event::new(EventType::TextMessageContent).with("i", i))
            .await;
    }
    for i in 0..20 {
        let event = within("a broadcast", text.recv()).await.unwrap();
        assert_eq!(event.get("i").unwrap(), i);
    }
    client
        .send(&Event::new(EventType::Custom).with("name", "hello"))
        .await
        .unwrap();
    let event = within("the client's event", from_client.recv())
        .await
        .unwrap();
    assert_eq!(event.get("name").unwrap(), "hello");

    // Closing the client closes the connection with 1000 and no reconnection.
    client.close(CloseReason::Normal);
    assert!(matches!(
        within("the client to close", client.closed()).await,
        ClientState::Closed(CloseReason::Normal)
    ));
    let why = within("the server side", conn.closed()).await;
    assert!(
        matches!(why, CloseReason::Remote { code: 1000, .. }),
        "{why:?}"
    );
    assert!(client.connection().metrics().close_handshake);
    assert!(matches!(
        within("the subscription end", text.recv()).await,
        Err(SubscriptionError::Closed)
    ));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_reconnects_and_keeps_its_handlers_and_subscriptions() {
    let (server, mut conns) = serve(Server::builder(fast_config())).await;
    let client = Client::connect(&url(server.local_addr()), client_config(5))
        .await
        .unwrap();
    let mut states = client.watch_state();
    let first = client.connection().id();
    let runs = client.subscribe([EventType::RunStarted]).unwrap();
    let (tx, mut handled) = tokio::sync::mpsc::unbounded_channel();
    client
        .on(EventType::RunFinished, move |event| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(event);
            }
        })
        .unwrap();
    let conn = next_conn(&mut conns).await;

    // The server drops this client (as a slow consumer would be): it reconnects.
    conn.close(CloseReason::Refused);
    let state = state_where(
        &mut states,
        |s| matches!(s, ClientState::Connected(id) if *id != first),
    )
    .await;
    let ClientState::Connected(second) = state else {
        unreachable!()
    };
    assert_ne!(second, first);
    let _conn2 = next_conn(&mut conns).await;
    assert_eq!(client.metrics().reconnects, 1);

    server
        .broadcast(&Event::new(EventType::RunStarted).with("n", 1))
        .await;
    server
        .broadcast(&Event::new(EventType::RunFinished).with("n", 2))
        .await;
    let event = within("the subscription", runs.recv()).await.unwrap();
    assert_eq!(event.get("n").unwrap(), 1);
    let event = within("the handler", handled.recv()).await.unwrap();
    assert_eq!(event.get("n").unwrap(), 2);

    client.close(CloseReason::Normal);
    within("the client to close", client.closed()).await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_gives_up_after_its_bounded_attempts() {
    let (server, mut conns) = serve(Server::builder(fast_config())).await;
    let client = Client::connect(&url(server.local_addr()), client_config(3))
        .await
        .unwrap();
    let mut states = client.watch_state();
    let runs = client.subscribe([]).unwrap();
    next_conn(&mut conns).await;

    // The server goes away for good: every attempt is refused by the OS.
    server.shutdown().await;
    drop(server);
    let mut attempts_seen = Vec::new();
    let last = within("the client to give up", async {
        loop {
            let state = states.borrow_and_update().clone();
            match state {
                ClientState::Reconnecting { attempt, ref after } => {
                    assert_eq!(after.code(), 1001, "the shutdown's close");
                    if attempts_seen.last() != Some(&attempt) {
                        attempts_seen.push(attempt);
                    }
                }
                ClientState::GaveUp { .. } => return state,
                _ => {}
            }
            states.changed().await.expect("client alive");
        }
    })
    .await;
    assert!(
        matches!(last, ClientState::GaveUp { attempts: 3, .. }),
        "{last:?}"
    );
    // Each attempt is announced (a fast transition may be skipped by the watch,
    // never reordered).
    assert!(
        attempts_seen.windows(2).all(|w| w[0] < w[1]),
        "{attempts_seen:?}"
    );
    assert!(attempts_seen.iter().all(|a| (1..=3).contains(a)));
    assert_eq!(client.metrics().failed_attempts, 3);
    assert_eq!(client.metrics().reconnects, 0);
    // Handlers and subscriptions are closed with the client.
    assert!(matches!(
        within("the subscription end", runs.recv()).await,
        Err(SubscriptionError::Closed)
    ));
    assert!(client
        .send(&Event::new(EventType::RunStarted))
        .await
        .is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_without_reconnects_gives_up_at_once() {
    let (server, mut conns) = serve(Server::builder(fast_config())).await;
    let client = Client::connect(&url(server.local_addr()), client_config(0))
        .await
        .unwrap();
    let conn = next_conn(&mut conns).await;
    conn.close(CloseReason::Normal);
    let last = within("the client to give up", client.closed()).await;
    assert!(
        matches!(last, ClientState::GaveUp { attempts: 0, ref after } if after.code() == 1000),
        "{last:?}"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connecting_fails_with_typed_errors() {
    // Nothing listens: the OS refuses.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let err = Client::connect(&url(addr), client_config(1))
        .await
        .unwrap_err();
    assert!(matches!(err, ConnectError::Io(_)), "{err}");

    // A listener that accepts but never answers the handshake: the dial timeout.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = silent.local_addr().unwrap();
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((tcp, _)) = silent.accept().await {
            held.push(tcp);
        }
    });
    let mut config = client_config(1);
    config.dial_timeout = Duration::from_millis(100);
    let err = Client::connect(&url(addr), config).await.unwrap_err();
    assert!(matches!(err, ConnectError::Timeout(_)), "{err}");
    hold.abort();

    let err = Client::connect("not a url", client_config(1))
        .await
        .unwrap_err();
    assert!(matches!(err, ConnectError::Url(_)), "{err}");

    let mut config = client_config(1);
    config.reconnect.jitter = 2.0;
    let err = Client::connect("ws://127.0.0.1:1/", config)
        .await
        .unwrap_err();
    assert!(matches!(err, ConnectError::Config(_)), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_last_client_handle_closes_it() {
    let (server, mut conns) = serve(Server::builder(fast_config())).await;
    let client = Client::connect(&url(server.local_addr()), client_config(5))
        .await
        .unwrap();
    let conn = next_conn(&mut conns).await;
    let other = client.clone();
    drop(client);
    assert!(!conn.is_closed(), "a handle is left");
    drop(other);
    let why = within("the server side", conn.closed()).await;
    assert!(
        matches!(why, CloseReason::Remote { code: 1000, .. }),
        "{why:?}"
    );
    assert_eq!(server.connection_count(), 0);
    server.shutdown().await;
}
