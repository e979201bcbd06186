//! The Server-Sent Events transport behind an axum router (issue 18, part 3): the
//! same connection core as the WebSocket side, read by a plain HTTP/1.1 client that
//! parses the `text/event-stream` bytes itself.
#![cfg(feature = "axum")]

#[path = "support/ws.rs"]
mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::post;
use axum::Router;
use membound::adapters::ws::{
    axum::sse, CloseReason, Connection, Event, EventType, Server, ServerConfig, SlowConsumer,
    SnapshotSource, RESUME_GAP,
};
use serde_json::{json, Value};
use support::*;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::mpsc;

type Opened = mpsc::UnboundedSender<Connection>;

async fn run(
    State((server, opened)): State<(Arc<Server>, Opened)>,
    headers: HeaderMap,
) -> Response {
    sse(&server, &headers, None, move |conn| {
        let _ = opened.send(conn);
    })
}

/// An axum app serving SSE streams at `/run`; each stream's connection arrives on
/// the returned channel.
async fn serve_sse(server: &Arc<Server>) -> (SocketAddr, mpsc::UnboundedReceiver<Connection>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let app = Router::new()
        .route("/run", post(run))
        .with_state((Arc::clone(server), tx));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, rx)
}

/// One SSE frame as a client parses it: its `id` and `data` fields, or a comment.
#[derive(Debug, PartialEq)]
enum Sse {
    Event { id: Option<String>, data: Value },
    Comment(String),
}

/// A client's view of one response: the status line, then the body's frames as
/// they come (the chunked transfer encoding decoded).
struct Stream {
    io: BufReader<TcpStream>,
    status: String,
    content_type: String,
    /// Body bytes decoded and not yet parsed into frames.
    pending: Vec<u8>,
    ended: bool,
}

async fn post_run(
    addr: SocketAddr,
    last_event_id: Option<&str>,
    recv_buffer: Option<u32>,
) -> Stream {
    let socket = TcpSocket::new_v4().unwrap();
    if let Some(size) = recv_buffer {
        socket.set_recv_buffer_size(size).unwrap();
    }
    let mut tcp = within("connect", socket.connect(addr)).await.unwrap();
    let body = r#"{"threadId":"t","runId":"r","messages":[]}"#;
    let resume = last_event_id.map_or(String::new(), |id| format!("Last-Event-ID: {id}\r\n"));
    let request = format!(
        "POST /run HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n{resume}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut io = BufReader::new(tcp);
    let mut status = String::new();
    within("the status line", io.read_line(&mut status))
        .await
        .unwrap();
    let mut content_type = String::new();
    loop {
        let mut line = String::new();
        within("a header", io.read_line(&mut line)).await.unwrap();
        if line == "\r\n" {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-type:") {
            content_type = v.trim().to_owned();
        }
    }
    Stream {
        io,
        status,
        content_type,
        pending: Vec::new(),
        ended: false,
    }
}

impl Stream {
    /// The next body chunk into `pending`; false at the body's end.
    async fn chunk(&mut self) -> bool {
        let mut size = String::new();
        if self.io.read_line(&mut size).await.unwrap_or(0) == 0 {
            return false;
        }
        let size = usize::from_str_radix(size.trim(), 16).expect("a chunk size line");
        let mut data = vec![0; size + 2];
        self.io.read_exact(&mut data).await.unwrap();
        assert_eq!(&data[size..], b"\r\n");
        self.pending.extend_from_slice(&data[..size]);
        size > 0
    }

    /// The next frame, or `None` at the end of the stream.
    async fn next(&mut self) -> Option<Sse> {
        within("the next SSE frame", async {
            loop {
                if let Some(end) = self.pending.windows(2).position(|w| w == b"\n\n") {
                    let frame: Vec<u8> = self.pending.drain(..end + 2).collect();
                    return Some(parse(std::str::from_utf8(&frame[..end]).unwrap()));
                }
                if self.ended || !self.chunk().await {
                    self.ended = true;
                    assert!(self.pending.is_empty(), "a partial frame at the end");
                    return None;
                }
            }
        })
        .await
    }

    /// The events up to the end of the stream, comments skipped.
    async fn events_to_end(&mut self) -> Vec<(Option<String>, Value)> {
        let mut out = Vec::new();
        while let Some(frame) = self.next().await {
            if let Sse::Event { id, data } = frame {
                out.push((id, data));
            }
        }
        out
    }
}

fn parse(frame: &str) -> Sse {
    if let Some(comment) = frame.strip_prefix(':') {
        assert!(!comment.contains('\n'), "{frame:?}");
        return Sse::Comment(comment.trim().to_owned());
    }
    let (mut id, mut data) = (None, None);
    for line in frame.split('\n') {
        let (field, value) = line.split_once(": ").expect("field: value");
        match field {
            "id" => id = Some(value.to_owned()),
            "data" => {
                assert!(data.is_none(), "one data line per event: {frame:?}");
                data = Some(serde_json::from_str(value).expect("the data is JSON"));
            }
            other => panic!("unexpected field {other:?} in {frame:?}"),
        }
    }
    Sse::Event {
        id,
        data: data.expect("a data line"),
    }
}

fn text(message_id: &str, delta: &str) -> Event {
    Event::new(EventType::TextMessageContent)
        .with("messageId", message_id)
        .with("delta", delta)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_streams_its_events_in_order_and_ends_cleanly() {
    let server = Arc::new(Server::builder(fast_config()).build().unwrap());
    let (addr, mut opened) = serve_sse(&server).await;
    let mut stream = post_run(addr, None, None).await;
    assert!(
        stream.status.starts_with("HTTP/1.1 200"),
        "{}",
        stream.status
    );
    assert_eq!(stream.content_type, "text/event-stream");
    let conn = within("the stream's connection", opened.recv())
        .await
        .unwrap();
    assert_eq!(server.connection_count(), 1);

    let started = Event::new(EventType::RunStarted)
        .with("threadId", "t")
        .with("runId", "r");
    conn.send(&started).await.unwrap();
    for i in 0..100 {
        conn.send(&text("m", &format!("{i} ✓\nline")))
            .await
            .unwrap();
    }
    // A broadcast reaches the stream too, with its id, in order with the sends.
    server.broadcast(&text("b", "to all")).await;
    conn.close(CloseReason::Normal);
    let events = stream.events_to_end().await;
    assert_eq!(events.len(), 102, "{events:?}");
    assert_eq!(events[0].1["type"], "RUN_STARTED");
    for (i, (id, event)) in events[1..101].iter().enumerate() {
        assert_eq!(id, &None, "direct sends carry no id");
        assert_eq!(
            event["delta"],
            format!("{i} ✓\nline"),
            "newlines survive in JSON"
        );
    }
    let (id, last) = &events[101];
    assert_eq!(last["delta"], "to all");
    assert_eq!(id.as_deref(), Some(server.hub().log().event_id(0).as_str()));
    assert!(
        !events.iter().any(|(_, e)| e["type"] == "RUN_ERROR"),
        "a normal close ends the stream without an error"
    );
    assert_eq!(conn.closed().await, CloseReason::Normal);
    eventually("the stream to be unregistered", || {
        server.connection_count() == 0
    })
    .await;
    server.shutdown().await;
}

struct Fixed;
impl SnapshotSource for Fixed {
    fn snapshot(&self) -> Option<Event> {
        Some(
            Event::new(EventType::StateSnapshot)
                .with("snapshot", json!({"n": 1}))
                .with_revision(1),
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_event_id_resumes_after_that_broadcast_or_reports_the_gap() {
    let mut config = fast_config();
    config.log.max_events = 8;
    let server = Arc::new(
        Server::builder(config)
            .snapshot_source(Arc::new(Fixed))
            .build()
            .unwrap(),
    );
    let (addr, mut opened) = serve_sse(&server).await;
    let mut first = post_run(addr, None, None).await;
    let conn = within("the first stream", opened.recv()).await.unwrap();
    for i in 0..5 {
        server.broadcast(&text("m", &i.to_string())).await;
    }
    let mut ids = Vec::new();
    for i in 0..5 {
        let Some(Sse::Event { id, data }) = first.next().await else {
            panic!("an event")
        };
        assert_eq!(data["delta"], i.to_string());
        ids.push(id.expect("a broadcast has an id"));
    }
    // The client drops after event 1, and reconnects naming it: it gets 2, 3, 4.
    drop(first);
    within("the first stream to end", conn.closed()).await;
    let mut again = post_run(addr, Some(&ids[1]), None).await;
    let resumed = within("the resumed stream", opened.recv()).await.unwrap();
    for (i, expected) in ids.iter().enumerate().skip(2) {
        let Some(Sse::Event { id, data }) = again.next().await else {
            panic!("an event")
        };
        assert_eq!(data["delta"], i.to_string());
        assert_eq!(id.as_ref(), Some(expected));
    }
    server.broadcast(&text("m", "5")).await;
    let Some(Sse::Event { data, .. }) = again.next().await else {
        panic!("an event")
    };
    assert_eq!(data["delta"], "5", "and then what follows, live");
    resumed.close(CloseReason::Normal);
    assert!(again.events_to_end().await.is_empty());

    // An id whose sequel the log no longer holds (8 events kept), or that is not
    // this log's: the gap is reported, then the state afresh, then live events.
    for _ in 0..10 {
        server.broadcast(&text("m", "old")).await;
    }
    for stale in [ids[0].as_str(), "abc-1", "garbage"] {
        let mut stream = post_run(addr, Some(stale), None).await;
        let conn = within("the stream", opened.recv()).await.unwrap();
        let Some(Sse::Event { data: gap, id }) = stream.next().await else {
            panic!("the gap")
        };
        assert_eq!(id, None);
        assert_eq!(gap["type"], "CUSTOM");
        assert_eq!(gap["name"], RESUME_GAP);
        assert_eq!(gap["value"]["lastEventId"], stale);
        let Some(Sse::Event { data: snapshot, .. }) = stream.next().await else {
            panic!("the snapshot")
        };
        assert_eq!(snapshot["type"], "STATE_SNAPSHOT");
        assert_eq!(snapshot["snapshot"], json!({"n": 1}));
        conn.close(CloseReason::Normal);
        assert!(stream.events_to_end().await.is_empty(), "no old events");
    }
    server.shutdown().await;
}

/// The SSE twin of the 4008 test: a client that stops reading is ended with a
/// final `RUN_ERROR` carrying `SLOW_CONSUMER`, and what the server holds for it
/// stays within the shared log's bound meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_ended_with_a_slow_consumer_run_error() {
    let mut config = ServerConfig::default();
    let limits = &mut config.connection.outbound;
    limits.hard_limit_bytes = 256 << 10;
    limits.soft_limit_bytes = 128 << 10;
    limits.soft_limit_for = Duration::from_millis(200);
    config.connection.write_timeout = Duration::from_secs(30);
    config.log.max_bytes = 4 << 20;
    let log_bound = config.log.max_bytes;
    let server = Arc::new(Server::builder(config).build().unwrap());
    let (addr, mut opened) = serve_sse(&server).await;
    let mut stalled = post_run(addr, None, Some(4096)).await;
    let conn = within("the stream", opened.recv()).await.unwrap();

    // Lossless events, 16 KiB each, until the connection gives up on the client.
    let payload = "x".repeat(16 << 10);
    let mut sent = 0u64;
    let mut most = 0u64;
    while !conn.is_closed() {
        assert!(sent < 20_000, "the stalled stream was never closed");
        server.broadcast(&text("m", &payload)).await;
        sent += 1;
        // What the server holds for the stalled client: the shared log's bytes,
        // bounded whatever the client does.
        most = most.max(server.hub().log().metrics().held_bytes);
        tokio::task::yield_now().await;
    }
    let why = within("the stalled stream to end", conn.closed()).await;
    assert!(
        matches!(
            why,
            CloseReason::SlowConsumer(SlowConsumer::SoftLimit | SlowConsumer::HardLimit)
        ),
        "{why:?}"
    );
    assert!(
        most <= log_bound,
        "the log held {most}, over its bound {log_bound}"
    );
    assert_eq!(server.metrics().closed.slow_consumer, 1);

    // The client reads again: what was in flight, then the final error, then the
    // end. The discarded backlog is not sent.
    let events = stalled.events_to_end().await;
    let (_, last) = events.last().expect("the final error");
    assert_eq!(last["type"], "RUN_ERROR");
    assert_eq!(last["code"], "SLOW_CONSUMER");
    assert!(last["message"].as_str().unwrap().contains("4008"), "{last}");
    assert!((events.len() as u64) < sent, "{} of {sent}", events.len());
    for (_, event) in &events[..events.len() - 1] {
        assert_eq!(event["type"], "TEXT_MESSAGE_CONTENT");
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_stream_gets_try_again_later_and_shutdown_ends_streams() {
    let mut config = fast_config();
    config.max_connections = 1;
    let server = Arc::new(Server::builder(config).build().unwrap());
    let (addr, mut opened) = serve_sse(&server).await;
    let mut first = post_run(addr, None, None).await;
    let _conn = within("the first stream", opened.recv()).await.unwrap();
    let mut refused = post_run(addr, None, None).await;
    let events = refused.events_to_end().await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].1["type"], "RUN_ERROR");
    assert_eq!(events[0].1["code"], "TRY_AGAIN_LATER");
    assert_eq!(server.metrics().refused_capacity, 1);

    server.broadcast(&text("m", "before shutdown")).await;
    server.shutdown().await;
    let events = first.events_to_end().await;
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(events[0].1["delta"], "before shutdown", "drained first");
    assert_eq!(events[1].1["code"], "SHUTDOWN");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_goes_away_ends_its_connection() {
    let server = Arc::new(Server::builder(fast_config()).build().unwrap());
    let (addr, mut opened) = serve_sse(&server).await;
    let stream = post_run(addr, None, None).await;
    let conn = within("the stream", opened.recv()).await.unwrap();
    drop(stream);
    // The body is dropped when hyper sees the socket closed, at its next write at
    // the latest: keep broadcasting.
    let why = within("the connection to end", async {
        loop {
            server.broadcast(&text("m", "x")).await;
            tokio::select! {
                why = conn.closed() => break why,
                () = tokio::time::sleep(Duration::from_millis(20)) => {}
            }
        }
    })
    .await;
    assert!(matches!(why, CloseReason::Lost(_)), "{why:?}");
    eventually("the stream to be unregistered", || {
        server.connection_count() == 0
    })
    .await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keepalive_comments_count_as_activity_for_the_idle_timeout() {
    let mut config = fast_config();
    config.connection.keepalive_interval = Duration::from_millis(50);
    config.connection.idle_timeout = Duration::from_millis(400);
    let server = Arc::new(Server::builder(config).build().unwrap());
    let (addr, mut opened) = serve_sse(&server).await;
    let mut stream = post_run(addr, None, None).await;
    let conn = within("the stream", opened.recv()).await.unwrap();
    let mut comments = 0;
    while comments < 20 {
        match stream.next().await {
            Some(Sse::Comment(c)) => {
                assert_eq!(c, "ping");
                comments += 1;
            }
            other => panic!("only keepalive comments: {other:?}"),
        }
    }
    // 20 pings at 50 ms is past the 400 ms idle timeout: the pings the client took
    // kept the stream alive.
    assert!(!conn.is_closed());
    assert!(conn.metrics().traffic.pongs_received >= 19);
    conn.close(CloseReason::Normal);
    stream.events_to_end().await;
    server.shutdown().await;
}
