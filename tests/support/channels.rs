//! Channel scenarios every engine must pass (issue 16): ids in order, resume within
//! the history with exactly the missed events, a gap with `RESUME_GAP` and a
//! snapshot outside it, and membound's `Client` resuming by itself. Each test file
//! runs them against one engine ([`Nodes`] makes servers sharing it).
#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use membound::adapters::ws::{
    Client, ClientConfig, CloseReason, Event, EventType, Published, Server, SnapshotSource,
    EVENT_ID_FIELD, RESUME_GAP,
};

use super::*;

/// Makes servers ("nodes") on one engine backend: each call a new node.
pub trait Nodes {
    fn node(&self, history: usize) -> Pin<Box<dyn Future<Output = Server> + '_>>;
}

/// A fixed snapshot, so a resync is visible.
pub struct FixedSnapshot;

impl SnapshotSource for FixedSnapshot {
    fn snapshot(&self) -> Option<Event> {
        Some(
            Event::new(EventType::StateSnapshot)
                .with("snapshot", serde_json::json!({"fresh": true}))
                .with_revision(1),
        )
    }
}

pub fn channel_url(addr: SocketAddr, channel: &str, last: Option<&str>) -> String {
    match last {
        Some(id) => format!("ws://{addr}/?channel={channel}&lastEventId={id}"),
        None => format!("ws://{addr}/?channel={channel}"),
    }
}

pub async fn join(addr: SocketAddr, channel: &str, last: Option<&str>) -> Ws {
    let url = channel_url(addr, channel, last);
    let (ws, _) = within("the handshake", tokio_tungstenite::connect_async(url))
        .await
        .expect("handshake succeeds");
    ws
}

/// A numbered lossless event.
pub fn numbered(n: u64) -> Event {
    Event::new(EventType::TextMessageContent)
        .with("messageId", "m")
        .with("delta", n.to_string())
}

pub fn number_of(event: &Event) -> Option<u64> {
    event.get("delta")?.as_str()?.parse().ok()
}

pub fn id_of(event: &Event) -> Option<String> {
    Some(event.get(EVENT_ID_FIELD)?.as_str()?.to_owned())
}

/// Waits until `server`'s engine has `channel` joined by `n` of its connections
/// (so that what is published next reaches them).
pub async fn joined(server: &Server, n: usize) {
    let what = format!("{n} connection(s) to join the channel");
    let waited = tokio::time::timeout(LIMIT, async {
        while !(server.connection_count() >= n && server.engine().metrics().channels >= 1) {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    })
    .await;
    if waited.is_err() {
        panic!(
            "timed out waiting for {what}: {:?} {:?}",
            server.metrics().refused_engine,
            server.engine().metrics()
        );
    }
}

pub async fn publish(server: &Server, channel: &str, n: u64) -> Published {
    server
        .publish(channel, &numbered(n))
        .await
        .expect("the engine publishes")
}

/// Events arrive in order, each stamped with the id `publish` returned.
pub async fn ids_in_order(nodes: &dyn Nodes) {
    let server = nodes.node(64).await;
    let mut ws = join(server.local_addr(), "ids", None).await;
    joined(&server, 1).await;
    let mut sent = Vec::new();
    for n in 0..5 {
        sent.push(publish(&server, "ids", n).await);
    }
    for (n, at) in sent.iter().enumerate() {
        let event = next_event(&mut ws).await;
        assert_eq!(number_of(&event), Some(n as u64));
        assert_eq!(id_of(&event), Some(at.event_id()));
    }
    for pair in sent.windows(2) {
        assert_eq!(pair[1].offset, pair[0].offset + 1);
        assert_eq!(pair[1].epoch, pair[0].epoch);
    }
    server.shutdown().await;
}

/// A client that names the id of the last event it saw gets exactly what followed,
/// from another node when `other_node` (else the same one).
pub async fn resume_exactly(nodes: &dyn Nodes, other_node: bool) {
    let a = nodes.node(64).await;
    let b = if other_node {
        Some(nodes.node(64).await)
    } else {
        None
    };
    let mut ws = join(a.local_addr(), "resume", None).await;
    joined(&a, 1).await;
    let mut last = None;
    for n in 0..3 {
        publish(&a, "resume", n).await;
    }
    for n in 0..3 {
        let event = next_event(&mut ws).await;
        assert_eq!(number_of(&event), Some(n));
        last = id_of(&event);
    }
    drop(ws);
    eventually("the client to go", || a.connection_count() == 0).await;
    for n in 3..7 {
        publish(&a, "resume", n).await;
    }
    let second = b.as_ref().unwrap_or(&a);
    let mut ws = join(second.local_addr(), "resume", last.as_deref()).await;
    for n in 3..7 {
        let event = next_event(&mut ws).await;
        assert_eq!(number_of(&event), Some(n), "got {event:?}");
    }
    // Nothing more than what was missed: the next event is the one published now.
    joined(second, 1).await;
    publish(&a, "resume", 7).await;
    assert_eq!(number_of(&next_event(&mut ws).await), Some(7));
    assert!(second.engine().metrics().resume_hits >= 1);
    a.shutdown().await;
    if let Some(b) = b {
        b.shutdown().await;
    }
}

/// A client whose resume point is older than the history gets `RESUME_GAP`, then
/// a snapshot, then live events; so does one naming an id of another epoch.
pub async fn gap_then_snapshot(nodes: &dyn Nodes) {
    let server = nodes.node(4).await;
    let first = publish(&server, "gap", 0).await;
    for n in 1..12 {
        publish(&server, "gap", n).await;
    }
    for last in [first.event_id(), format!("{:x}-3", first.epoch ^ 1)] {
        let mut ws = join(server.local_addr(), "gap", Some(&last)).await;
        let notice = next_event(&mut ws).await;
        assert_eq!(notice.kind(), &EventType::Custom, "got {notice:?}");
        assert_eq!(
            notice.get("name").and_then(|v| v.as_str()),
            Some(RESUME_GAP)
        );
        let value = notice.get("value").expect("the gap names the id");
        assert_eq!(value["lastEventId"], serde_json::json!(last));
        assert_eq!(value["channel"], serde_json::json!("gap"));
        let snapshot = next_event(&mut ws).await;
        assert_eq!(snapshot.kind(), &EventType::StateSnapshot);
        joined(&server, 1).await;
        let live = publish(&server, "gap", 100).await;
        let event = next_event(&mut ws).await;
        assert_eq!(id_of(&event), Some(live.event_id()));
        drop(ws);
        eventually("the client to go", || server.connection_count() == 0).await;
    }
    let metrics = server.engine().metrics();
    assert_eq!(metrics.resume_misses, 2);
    server.shutdown().await;
}

/// membound's `Client` names its last event id when it reconnects: across a
/// dropped connection it receives every event exactly once, in order.
pub async fn client_resumes_by_itself(nodes: &dyn Nodes) {
    let server = nodes.node(64).await;
    let got = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&got);
    let builder = Client::builder(ClientConfig::default()).expect("config");
    builder
        .on(EventType::TextMessageContent, move |event| {
            let sink = Arc::clone(&sink);
            async move {
                sink.lock().unwrap().push(number_of(&event).unwrap());
            }
        })
        .expect("handler");
    let client = builder
        .connect(&channel_url(server.local_addr(), "auto", None))
        .await
        .expect("connects");
    joined(&server, 1).await;
    for n in 0..3 {
        publish(&server, "auto", n).await;
    }
    eventually("three events", || got.lock().unwrap().len() == 3).await;
    assert!(client.last_event_id().is_some());
    // The server drops the connection; what is published meanwhile is missed live.
    for conn in server.connections() {
        conn.close(CloseReason::Shutdown);
    }
    eventually("the connection to end", || server.connection_count() == 0).await;
    for n in 3..6 {
        publish(&server, "auto", n).await;
    }
    eventually("the client to reconnect", || {
        client.metrics().reconnects >= 1 && server.connection_count() == 1
    })
    .await;
    joined(&server, 1).await;
    publish(&server, "auto", 6).await;
    eventually("seven events", || got.lock().unwrap().len() >= 7).await;
    assert_eq!(*got.lock().unwrap(), (0..7).collect::<Vec<u64>>());
    assert!(server.engine().metrics().resume_hits >= 1);
    client.close(CloseReason::Normal);
    server.shutdown().await;
}

/// A connected client whose channel lost its history: it is told (`RESUME_GAP`),
/// gets a snapshot, then reads on from `next`, the first event of the new log.
pub async fn told_then_resynced(ws: &mut Ws, next: &Published) {
    let notice = next_event(ws).await;
    assert_eq!(
        notice.get("name").and_then(|v| v.as_str()),
        Some(RESUME_GAP),
        "{notice:?}"
    );
    assert_eq!(next_event(ws).await.kind(), &EventType::StateSnapshot);
    let event = next_event(ws).await;
    assert_eq!(id_of(&event), Some(next.event_id()));
}
