//! The leak test: thousands of connect / subscribe / exchange / disconnect cycles
//! against one server. Afterwards every registry is back to empty (connections, the
//! hub, connection tasks) and the process's resident memory has grown by less than a
//! fixed bound, far below what keeping each connection's buffers would cost.
#![cfg(feature = "ws")]

#[path = "support/ws.rs"]
mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use membound::adapters::ws::{
    Client, ClientConfig, CloseReason, Connection, Event, EventType, ReconnectPolicy, Server,
};
use membound::os::{trim_heap, Sampler, SamplerConfig};
use support::*;

/// Concurrent clients, each running its share of the cycles one after another.
const WORKERS: usize = 16;
/// Cycles measured (after the warm-up).
const CYCLES: usize = 4_000;
const WARM_UP: usize = 200;
/// Resident memory the measured cycles may add. An open connection costs about
/// 170 KB of heap for its client and server sides together (`cargo bench --bench ws
/// --features ws` prints it), so keeping even a few percent of the 4 000 cycles'
/// connections would break this bound.
const RSS_BOUND: u64 = 8 << 20;

fn client_config() -> ClientConfig {
    ClientConfig {
        reconnect: ReconnectPolicy {
            max_attempts: 0,
            ..ReconnectPolicy::default()
        },
        connection: fast_config().connection,
        ..ClientConfig::default()
    }
}

/// One cycle: connect, subscribe and register a handler, send an event, receive the
/// server's reply through the subscription, close.
async fn cycle(url: &str, handled: &Arc<AtomicUsize>) {
    let client = Client::connect(url, client_config())
        .await
        .expect("connect");
    let replies = client
        .subscribe([EventType::RunStarted])
        .expect("subscribe");
    let count = Arc::clone(handled);
    client
        .on(EventType::RunStarted, move |_| {
            count.fetch_add(1, Ordering::Relaxed);
            async {}
        })
        .expect("handler");
    client
        .send(&Event::new(EventType::Custom).with("name", "hello"))
        .await
        .expect("send");
    let reply = within("the reply", replies.recv()).await.expect("reply");
    assert_eq!(reply.kind(), &EventType::RunStarted);
    client.close(CloseReason::Normal);
    within("the client to close", client.closed()).await;
}

/// Runs `n` cycles on [`WORKERS`] concurrent clients and waits until the server has
/// ended every one of those connections.
async fn run_cycles(
    server: &Server,
    ended: &mut tokio::sync::mpsc::UnboundedReceiver<Connection>,
    n: usize,
    handled: &Arc<AtomicUsize>,
) {
    let url = url(server.local_addr());
    let workers: Vec<_> = (0..WORKERS)
        .map(|w| {
            let url = url.clone();
            let handled = Arc::clone(handled);
            let share = n / WORKERS + usize::from(w < n % WORKERS);
            tokio::spawn(async move {
                for _ in 0..share {
                    cycle(&url, &handled).await;
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.expect("worker");
    }
    // Every server-side connection ends (its registry entry is removed before its
    // `closed` resolves).
    for _ in 0..n {
        let conn = next_conn(ended).await;
        let why = within("the server side to end", conn.closed()).await;
        assert!(
            matches!(why, CloseReason::Remote { code: 1000, .. }),
            "{why:?}"
        );
    }
}

fn rss(sampler: &mut Sampler) -> u64 {
    trim_heap();
    sampler.rss().expect("RSS is readable")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_connections_leave_nothing_behind() {
    let started = std::time::Instant::now();
    let (tx, mut ended) = tokio::sync::mpsc::unbounded_channel();
    let server = Server::builder(fast_config())
        .on_connect(move |conn| {
            // A server-side handler that answers through the connection it belongs
            // to: the handler holds its connection, and nothing may keep that cycle.
            let reply_to = conn.clone();
            conn.on(EventType::Custom, move |_| {
                let reply_to = reply_to.clone();
                async move {
                    let _ = reply_to.send(&Event::new(EventType::RunStarted)).await;
                }
            })
            .expect("handler");
            let _ = tx.send(conn);
        })
        .bind()
        .await
        .expect("bind");
    let handled = Arc::new(AtomicUsize::new(0));
    let mut sampler = Sampler::new(SamplerConfig::lean()).expect("sampler");

    run_cycles(&server, &mut ended, WARM_UP, &handled).await;
    let baseline = rss(&mut sampler);
    run_cycles(&server, &mut ended, CYCLES, &handled).await;
    let after = rss(&mut sampler);

    assert_eq!(handled.load(Ordering::Relaxed), WARM_UP + CYCLES);
    assert_eq!(server.connection_count(), 0, "connection registry");
    assert!(server.hub().is_empty(), "hub registry");
    assert_eq!(server.task_count(), 0, "connection tasks");
    let m = server.metrics();
    assert_eq!(m.connections, 0);
    assert_eq!(m.accepted, (WARM_UP + CYCLES) as u64);
    assert_eq!(m.closed.remote, (WARM_UP + CYCLES) as u64);
    assert_eq!(m.queued_events, 0);
    let growth = after.saturating_sub(baseline);
    println!(
        "{CYCLES} cycles in {:?}: RSS {} KiB -> {} KiB (+{} KiB, bound {} KiB)",
        started.elapsed(),
        baseline >> 10,
        after >> 10,
        growth >> 10,
        RSS_BOUND >> 10
    );
    assert!(
        growth < RSS_BOUND,
        "RSS grew by {} KiB over {CYCLES} cycles",
        growth >> 10
    );
    server.shutdown().await;
}
