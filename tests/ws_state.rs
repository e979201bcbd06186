//! End-to-end: a client that falls behind on state deltas gets a fresh
//! `STATE_SNAPSHOT` from the state store, and replaying what it received gives the
//! store's document (lossless recovery); a client that keeps up gets every delta.
#![cfg(all(feature = "ws", feature = "state"))]

#[path = "support/ws.rs"]
mod support;

use std::sync::Arc;
use std::time::Duration;

use membound::adapters::state::{StateConfig, StateStore};
use membound::adapters::ws::{Event, EventType, Server, SnapshotSource};
use serde_json::{json, Value};
use support::*;

/// Applies what a client received to its copy of the state, until `RUN_FINISHED`.
/// Returns the state and how many snapshots and deltas it saw.
async fn replay<S>(ws: &mut tokio_tungstenite::WebSocketStream<S>) -> (Value, usize, usize)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut state = Value::Null;
    let (mut snapshots, mut deltas) = (0, 0);
    loop {
        let event = next_event(ws).await;
        match event.kind() {
            EventType::StateSnapshot => {
                state = event.get("snapshot").expect("snapshot field").clone();
                snapshots += 1;
            }
            EventType::StateDelta => {
                let patch: json_patch::Patch =
                    serde_json::from_value(event.get("delta").expect("delta").clone())
                        .expect("a JSON patch");
                json_patch::patch(&mut state, &patch).expect("the delta applies");
                deltas += 1;
            }
            EventType::RunFinished => return (state, snapshots, deltas),
            other => panic!("unexpected {other}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delta_overflow_is_followed_by_a_snapshot_and_the_replayed_state_matches() {
    let store = Arc::new(StateStore::new(StateConfig::default()).unwrap());
    store
        .apply_json(r#"[{"op":"add","path":"/counter","value":0},{"op":"add","path":"/pad","value":""},{"op":"add","path":"/items","value":{}}]"#)
        .unwrap();
    let mut config = fast_config();
    config.connection.outbound.capacity = 8;
    let builder = Server::builder(config).snapshot_source(Arc::clone(&store) as _);
    let (server, mut conns) = serve(builder).await;

    // Each client starts from a snapshot, as an application would send on connect.
    let mut stalled = stalled_client(server.local_addr()).await;
    let stalled_conn = next_conn(&mut conns).await;
    stalled_conn
        .send(&SnapshotSource::snapshot(&*store).unwrap())
        .await
        .unwrap();
    let mut fast = client(server.local_addr()).await;
    let fast_conn = next_conn(&mut conns).await;
    fast_conn
        .send(&SnapshotSource::snapshot(&*store).unwrap())
        .await
        .unwrap();
    let fast_reader = tokio::spawn(async move { replay(&mut fast).await });

    // Publish deltas, each applied to the store first and tagged with its revision,
    // until the stalled connection's queue has overflowed at least once.
    let pad = "d".repeat(2048);
    let mut published = 0u64;
    while stalled_conn.metrics().outbound.resyncs == 0 || published < 50 {
        assert!(published < 20_000, "the stalled queue never overflowed");
        let delta = json!([
            {"op": "replace", "path": "/counter", "value": published},
            {"op": "replace", "path": "/pad", "value": format!("{pad}{published}")},
            {"op": "add", "path": format!("/items/k{}", published % 16), "value": published},
        ]);
        let revision = store
            .apply(&serde_json::from_value::<Vec<_>>(delta.clone()).unwrap())
            .unwrap();
        let event = Event::new(EventType::StateDelta)
            .with("delta", delta)
            .with_revision(revision.0);
        server.broadcast(&event).await;
        assert!(
            server.connections().iter().all(|c| !c.is_closed()),
            "deltas never close a connection"
        );
        published += 1;
    }
    server.broadcast(&Event::new(EventType::RunFinished)).await;

    let (state, snapshots, deltas) = replay(&mut stalled).await;
    let (_, expected) = store.snapshot();
    assert_eq!(state, expected, "the stalled client's replayed state");
    // At least the resync's snapshot (the first one is skipped when it was still
    // queued, since the fresh one covers it).
    assert!(snapshots >= 1);
    assert!((deltas as u64) < published, "deltas were discarded");
    let m = stalled_conn.metrics();
    assert!(m.traffic.resyncs_sent >= 1);
    assert!(m.outbound.discarded_deltas > 0);
    assert!(!stalled_conn.is_closed());

    // The client that reads as fast as it can ends with the same state. (With a
    // queue of 8 it may fall behind in a burst too: each resync is one more
    // snapshot, and may make a still queued older one redundant.)
    let (state, snapshots, deltas) = within("the fast reader", fast_reader).await.unwrap();
    assert_eq!(state, expected);
    let resyncs = fast_conn.metrics().traffic.resyncs_sent;
    assert!(snapshots >= 1 && snapshots as u64 <= 1 + resyncs);
    if resyncs == 0 {
        assert_eq!((snapshots, deltas as u64), (1, published));
    }
    drop(stalled);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_snapshot_source_a_delta_overflow_closes_as_a_slow_consumer() {
    let mut config = fast_config();
    config.connection.outbound.capacity = 4;
    config.connection.close_timeout = Duration::from_millis(500);
    let (server, mut conns) = serve(Server::builder(config)).await;
    let mut stalled = stalled_client(server.local_addr()).await;
    let conn = next_conn(&mut conns).await;

    let pad = "n".repeat(2048);
    let mut published = 0u64;
    while !conn.is_closed() && conn.metrics().outbound.resyncs == 0 {
        assert!(published < 20_000, "the queue never overflowed");
        let event = Event::new(EventType::StateDelta).with(
            "delta",
            json!([{"op": "replace", "path": "/pad", "value": pad}]),
        );
        server.broadcast(&event).await;
        published += 1;
    }
    let (_, code, reason) = read_to_close(&mut stalled).await;
    assert_eq!(code, membound::adapters::ws::close_code::SLOW_CONSUMER);
    assert_eq!(reason, "slow consumer: state resync unavailable");
    server.shutdown().await;
}
