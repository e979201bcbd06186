//! Serving the transport from an axum router (feature `axum`): WebSocket with
//! [`upgrade`], and Server-Sent Events, AG-UI's HTTP transport, with [`sse`].
//!
//! [`upgrade`] completes axum's WebSocket upgrade with the server's connection
//! settings and runs the connection on the same core as [`Server`]'s own listener:
//! the same queues, delivery classes, limits, keepalive, close handling, registry,
//! fan-out, caps and shutdown. A server for axum only is built without a listener
//! by [`ServerBuilder::build`](super::ServerBuilder::build).
//!
//! One difference: axum's socket cannot send raw continuation frames, so an event
//! larger than the write buffer cap cannot be split as on the server's own listener.
//! axum's write buffer cap is therefore raised to fit the largest event a queue
//! admits (`hard_limit_bytes`); the writer still flushes after each batch, so the
//! buffer holds at most one batch or one event.
//!
//! # Examples
//!
//! ```
//! use std::sync::Arc;
//!
//! use axum::extract::{State, WebSocketUpgrade};
//! use axum::response::Response;
//! use axum::{routing::get, Router};
//! use membound::adapters::ws::{axum::upgrade, Server, ServerConfig};
//!
//! async fn events(ws: WebSocketUpgrade, State(server): State<Arc<Server>>) -> Response {
//!     upgrade(ws, &server, None)
//! }
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let server = Arc::new(Server::builder(ServerConfig::default()).build()?);
//! let app: Router = Router::new().route("/events", get(events)).with_state(Arc::clone(&server));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
//! # let _ = (app, listener);
//! // axum::serve(listener, app).await?;  // broadcast with server.broadcast(&event)
//! # Ok::<(), membound::adapters::ws::ServeError>(())
//! # }).unwrap();
//! ```

use std::net::SocketAddr;
use std::prelude::rust_2021::*;
use std::sync::Arc;

use ::axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use ::axum::response::Response;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::{self, Bytes};

use super::conn::{sse_pair, Incoming, SinkMessage, SinkSocket, WireError, WireMessage};
use super::engine::Member;
use super::server::{OpenChannel, Opening};
use super::{CloseReason, Connection, EngineError, Frame, Join, RawMessage, Server};

/// Completes `ws`'s upgrade and runs the connection with `server`'s settings,
/// registry and fan-out; `peer` is the client's address when the router provides it
/// (axum's `ConnectInfo`). Returns the response for axum to send.
///
/// The connection is admitted like one on the server's own listener: refused with
/// 1013 at the connection cap or under critical memory pressure, with 1001 once the
/// server is shutting down.
pub fn upgrade(ws: WebSocketUpgrade, server: &Server, peer: Option<SocketAddr>) -> Response {
    upgrade_with(ws, server, peer, Opening::default())
}

/// As [`upgrade`], the connection reading `join`'s channel (through the server's
/// [`Engine`](super::Engine)) instead of the server's hub, from after
/// `join.last_event_id` where the channel's history still holds it (else after a
/// `CUSTOM` [`RESUME_GAP`](super::RESUME_GAP) event and a snapshot). A request's
/// query string gives the join with [`Join::from_query`].
pub fn upgrade_channel(
    ws: WebSocketUpgrade,
    server: &Server,
    peer: Option<SocketAddr>,
    join: Join,
) -> Response {
    upgrade_with(ws, server, peer, Opening::join(join))
}

fn upgrade_with(
    ws: WebSocketUpgrade,
    server: &Server,
    peer: Option<SocketAddr>,
    opening: Opening,
) -> Response {
    let shared = Arc::clone(server.shared());
    let config = shared.config().connection;
    let write_cap = config.max_write_buffer_bytes.max(
        config
            .outbound
            .hard_limit_bytes
            .saturating_add(config.write_buffer_bytes),
    );
    ws.read_buffer_size(config.write_buffer_bytes.clamp(4 << 10, 128 << 10))
        .write_buffer_size(config.write_buffer_bytes)
        .max_write_buffer_size(write_cap)
        .max_message_size(config.inbound.max_message_bytes)
        .max_frame_size(config.inbound.max_frame_bytes)
        .on_upgrade(move |socket| {
            let task_shared = Arc::clone(&shared);
            shared.spawn(async move {
                task_shared.run_connection(socket, peer, opening).await;
            });
            async {}
        })
}

/// The header a reconnecting `EventSource` names its last event id in.
const LAST_EVENT_ID: &str = "last-event-id";

/// Serves one Server-Sent Events stream (the transport AG-UI's `HttpAgent` reads):
/// returns the `text/event-stream` response for axum to send, and calls `on_open`
/// with the stream's [`Connection`] once it is registered.
///
/// The stream is a connection like a WebSocket one, on the same core: admitted the
/// same way, with the same queues, delivery classes, byte limits, metrics and
/// shutdown, and it reads the server's broadcasts from the same shared log. The
/// application sends the run's events with [`Connection::send`] (or broadcasts
/// them) and ends the stream with [`Connection::close`]`(`[`CloseReason::Normal`]`)`
/// once what it sent is delivered. The differences come from SSE itself:
///
/// - each event is one frame, `data: <event JSON>\n\n`, as `@ag-ui/encoder` writes
///   them; a broadcast also carries `id: <epoch>-<offset>`
///   ([`SharedLog::event_id`](super::SharedLog::event_id));
/// - there is no close code: a stream ended for any reason but a normal close gets a
///   final `RUN_ERROR` whose `code` is the reason's
///   [`error_code`](CloseReason::error_code) (`"SLOW_CONSUMER"` for a client that
///   does not keep up, `"TRY_AGAIN_LATER"` when refused, `"SHUTDOWN"`);
/// - a request with `Last-Event-ID` resumes after that broadcast where the log still
///   holds what followed; otherwise it first gets a `CUSTOM` event named
///   [`RESUME_GAP`](super::RESUME_GAP) and, where the server has a snapshot source,
///   a `STATE_SNAPSHOT`;
/// - keepalive pings are SSE comments, and the idle timeout counts the ones the
///   client took: a client that stops reading is closed (as a slow consumer first,
///   when its backlog passes the byte limits).
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
///
/// use axum::extract::State;
/// use axum::http::HeaderMap;
/// use axum::response::Response;
/// use axum::{routing::post, Router};
/// use membound::adapters::ws::{axum::sse, CloseReason, Event, EventType, Server, ServerConfig};
///
/// async fn run(State(server): State<Arc<Server>>, headers: HeaderMap) -> Response {
///     sse(&server, &headers, None, |conn| {
///         tokio::spawn(async move {
///             let started = Event::new(EventType::RunStarted)
///                 .with("threadId", "t1")
///                 .with("runId", "r1");
///             let _ = conn.send(&started).await;
///             // ... the run's events ...
///             conn.close(CloseReason::Normal);
///         });
///     })
/// }
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let server = Arc::new(Server::builder(ServerConfig::default()).build()?);
/// let app: Router = Router::new().route("/run", post(run)).with_state(server);
/// # let _ = app;
/// # Ok::<(), membound::adapters::ws::ServeError>(())
/// # }).unwrap();
/// ```
pub fn sse<F>(
    server: &Server,
    headers: &::axum::http::HeaderMap,
    peer: Option<SocketAddr>,
    on_open: F,
) -> Response
where
    F: FnOnce(Connection) + Send + 'static,
{
    let opening = Opening {
        resume: last_event_id(headers),
        on_open: Some(Box::new(on_open)),
        channel: None,
    };
    sse_with(server, server.hub().log(), peer, opening)
}

/// As [`sse`], the stream reading `channel` (through the server's
/// [`Engine`](super::Engine)) instead of the server's hub: the `id:` of each
/// event is its channel id ([`EVENT_ID_FIELD`](super::EVENT_ID_FIELD)), so a
/// `Last-Event-ID` (or `last_event_id`, from a query string, which wins) resumes on
/// any node of the channel.
///
/// # Errors
///
/// The engine's, when the channel cannot be joined (its broker unreachable): the
/// caller answers with an error status (503, say).
pub async fn sse_channel<F>(
    server: &Server,
    headers: &::axum::http::HeaderMap,
    peer: Option<SocketAddr>,
    join: Join,
    on_open: F,
) -> Result<Response, EngineError>
where
    F: FnOnce(Connection) + Send + 'static,
{
    let member = Member::join(server.engine(), &join.channel).await?;
    let log = member.channel().hub().log().clone();
    let opening = Opening {
        resume: join.last_event_id.or_else(|| last_event_id(headers)),
        on_open: Some(Box::new(on_open)),
        channel: Some(OpenChannel::Joined(member)),
    };
    Ok(sse_with(server, &log, peer, opening))
}

fn last_event_id(headers: &::axum::http::HeaderMap) -> Option<String> {
    headers
        .get(LAST_EVENT_ID)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

fn sse_with(
    server: &Server,
    log: &Arc<super::SharedLog>,
    peer: Option<SocketAddr>,
    opening: Opening,
) -> Response {
    use ::axum::http::header;
    let shared = Arc::clone(server.shared());
    let (socket, body) = sse_pair(log);
    let task_shared = Arc::clone(&shared);
    shared.spawn(async move { task_shared.run_connection(socket, peer, opening).await });
    let mut response = Response::new(::axum::body::Body::from_stream(body));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-cache"),
    );
    // Proxies such as nginx would otherwise buffer the stream.
    headers.insert("x-accel-buffering", header::HeaderValue::from_static("no"));
    response
}

impl SinkMessage for Message {
    fn text(frame: &Frame) -> Self {
        let bytes: Bytes = frame.text().clone().into();
        // The text is UTF-8 already; the check does not copy it.
        let text = Utf8Bytes::try_from(bytes).unwrap_or_else(|_| Utf8Bytes::from(frame.as_str()));
        Message::Text(text)
    }

    fn fragments(_frame: &Frame, _max_part: usize) -> Option<Vec<Self>> {
        None
    }

    fn ping(payload: u64) -> Self {
        Message::Ping(Bytes::copy_from_slice(&payload.to_be_bytes()))
    }

    fn close(code: u16, reason: String) -> Self {
        Message::Close(Some(CloseFrame {
            code,
            reason: reason.into(),
        }))
    }
}

impl WireMessage for Message {
    fn kind(&self) -> Incoming<'_> {
        match self {
            Message::Text(text) => Incoming::Text(text.as_str()),
            Message::Binary(data) => Incoming::Binary(data.len()),
            Message::Ping(data) => Incoming::Ping(data.len()),
            Message::Pong(data) => Incoming::Pong(data.len()),
            Message::Close(frame) => {
                Incoming::Close(frame.as_ref().map(|f| (f.code, f.reason.as_str())))
            }
        }
    }

    fn into_raw(self) -> Option<RawMessage> {
        match self {
            Message::Text(text) => {
                let bytes: Bytes = text.into();
                // axum checked the UTF-8 already; the check does not copy it.
                tungstenite::Utf8Bytes::try_from(bytes)
                    .ok()
                    .map(RawMessage::Text)
            }
            Message::Binary(data) => Some(RawMessage::Binary(data)),
            _ => None,
        }
    }
}

impl WireError for ::axum::Error {
    fn close_reason(&self) -> CloseReason {
        // axum wraps tungstenite's error, of the same version as ours.
        match std::error::Error::source(self).and_then(|e| e.downcast_ref::<tungstenite::Error>()) {
            Some(inner) => inner.close_reason(),
            None => CloseReason::Lost(self.to_string()),
        }
    }
}

impl SinkSocket for WebSocket {
    type Msg = Message;
    type Fault = ::axum::Error;

    async fn linger_whole(self, deadline: Instant) {
        // axum does not hand out the raw socket, and its stream has ended: keep the
        // socket open until the deadline, so the peer can read the close frame before
        // a reset (for unread input) can overtake it.
        tokio::time::sleep_until(deadline).await;
        drop(self);
    }
}
