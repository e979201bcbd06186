//! The transport behind an axum router: the same connection core, registry, fan-out,
//! limits and shutdown as the server's own listener, with a tokio-tungstenite client.
#![cfg(feature = "axum")]

#[path = "support/ws.rs"]
mod support;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, State, WebSocketUpgrade};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use membound::adapters::ws::{axum::upgrade, close_code, CloseReason, Event, EventType, Server};
use serde_json::json;
use support::*;

async fn events(
    ws: WebSocketUpgrade,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    State(server): State<Arc<Server>>,
) -> Response {
    upgrade(ws, &server, Some(peer))
}

/// An axum app serving the transport at `/events`; returns the app's address.
async fn serve_axum(server: &Arc<Server>) -> SocketAddr {
    let app = Router::new()
        .route("/events", get(events))
        .with_state(Arc::clone(server));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap();
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_axum_route_serves_the_transport() {
    let mut config = fast_config();
    config.max_connections = 1;
    // After the oversized message axum's socket lingers for the close timeout.
    config.connection.close_timeout = std::time::Duration::from_millis(300);
    config.connection.inbound.max_frame_bytes = 1024;
    config.connection.inbound.max_message_bytes = 1024;
    let (tx, mut conns) = tokio::sync::mpsc::unbounded_channel();
    let server = Server::builder(config)
        .on_connect(move |conn| {
            let _ = tx.send(conn);
        })
        .build()
        .unwrap();
    let server = Arc::new(server);
    let addr = serve_axum(&server).await;
    let url = format!("ws://{addr}/events");

    let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .unwrap();
    let conn = next_conn(&mut conns).await;
    assert!(conn.peer_addr().is_some());
    let inbound = conn.subscribe([EventType::Custom]).unwrap();

    // Both directions, through the hub and the connection's own queue.
    server
        .broadcast(&Event::new(EventType::RunStarted).with("seq", 0))
        .await;
    let big = "a".repeat(100_000); // over the write buffer cap, in one message
    conn.send(&Event::new(EventType::StateSnapshot).with("snapshot", big.as_str()))
        .await
        .unwrap();
    assert_eq!(next_event(&mut ws).await.get("seq").unwrap(), 0);
    let snapshot = next_event(&mut ws).await;
    assert_eq!(
        snapshot.get("snapshot").unwrap().as_str().unwrap().len(),
        100_000
    );
    send_text(&mut ws, &json!({"type": "CUSTOM", "n": 1}).to_string()).await;
    let got = within("the inbound event", inbound.recv()).await.unwrap();
    assert_eq!(got.get("n").unwrap(), 1);

    // The connection cap applies to axum's connections too.
    let (mut second, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .unwrap();
    let (_, code, _) = read_to_close(&mut second).await;
    assert_eq!(code, close_code::TRY_AGAIN_LATER);

    // Inbound limits: an oversized message gets 1009.
    send_text(
        &mut ws,
        &json!({"type": "CUSTOM", "pad": "x".repeat(2000)}).to_string(),
    )
    .await;
    let (_, code, _) = read_to_close(&mut ws).await;
    assert_eq!(code, close_code::MESSAGE_TOO_BIG);
    assert_eq!(
        within("the close", conn.closed()).await,
        CloseReason::MessageTooBig
    );
    assert_eq!(server.connection_count(), 0);

    // Shutdown closes axum's connections with 1001.
    let (mut third, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .unwrap();
    next_conn(&mut conns).await;
    let (_, (_, code, _)) = tokio::join!(server.shutdown(), read_to_close(&mut third));
    assert_eq!(code, close_code::GOING_AWAY);
    assert_eq!(server.metrics().closed.shutdown, 1);
    assert_eq!(server.task_count(), 0);
}
