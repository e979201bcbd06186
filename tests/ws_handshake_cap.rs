//! The server against peers that misbehave (issue 14): TCP connections that never
//! finish the WebSocket handshake are capped.
#![cfg(feature = "ws")]

#[path = "support/ws.rs"]
mod support;

use std::io::ErrorKind;

use membound::adapters::ws::Server;
use support::*;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshakes_beyond_the_pending_cap_are_refused_at_once_and_counted() {
    const CAP: usize = 4;
    const EXTRA: usize = 3;
    let mut config = fast_config();
    config.max_pending_handshakes = CAP;
    let (server, mut conns) = serve(Server::builder(config)).await;
    let addr = server.local_addr();

    // Peers that connect and never send the handshake, one after the other (the
    // server accepts them in this order).
    let mut silent = Vec::new();
    for _ in 0..CAP + EXTRA {
        silent.push(
            within("TCP connect", TcpStream::connect(addr))
                .await
                .unwrap(),
        );
    }
    eventually("the refusals to be counted", || {
        server.metrics().refused_handshakes == EXTRA as u64
    })
    .await;
    let m = server.metrics();
    assert_eq!(m.pending_handshakes, CAP);
    assert_eq!(m.handshake_failures, 0);

    // The ones beyond the cap were closed without a byte ...
    let mut held = silent;
    let refused = held.split_off(CAP);
    for mut tcp in refused {
        let mut buf = [0u8; 16];
        match within("the refused socket to close", tcp.read(&mut buf)).await {
            Ok(0) => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
            other => panic!("a refused peer read {other:?}"),
        }
    }
    // ... the ones within it are still held.
    for tcp in &held {
        let mut buf = [0u8; 16];
        match tcp.try_read(&mut buf) {
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            other => panic!("a pending handshake was closed: {other:?}"),
        }
    }
    assert_eq!(server.metrics().refused_handshakes, EXTRA as u64);

    // Once the pending peers go, their places are free for real handshakes.
    drop(held);
    eventually("the pending handshakes to end", || {
        server.metrics().pending_handshakes == 0
    })
    .await;
    assert_eq!(server.metrics().handshake_failures, CAP as u64);
    let mut clients = Vec::new();
    for _ in 0..CAP + 1 {
        clients.push(client(addr).await);
        next_conn(&mut conns).await;
    }
    let m = server.metrics();
    assert_eq!((m.connections, m.pending_handshakes), (CAP + 1, 0));
    assert_eq!(m.refused_handshakes, EXTRA as u64);
    drop(clients);
    server.shutdown().await;
}
