//! The connection core shared by the server, the client and the axum adapter.
//!
//! One connection is one tokio task that runs three futures side by side:
//!
//! - the **reader** takes messages from the socket, parses texts as [`Event`]s and
//!   hands them to the connection's [`Inbound`] (which waits while its bounded queue
//!   is full, so a fast sender is slowed down by TCP), and in raw mode
//!   ([`MalformedPolicy::Raw`]) the messages that are not events too, as
//!   [`RawMessage`]s; it records activity for the
//!   idle timeout and turns protocol errors, oversized messages, malformed events and
//!   the peer's close frame into a [`CloseReason`];
//! - the **writer** takes frames from the connection's [`Outbound`] queue and writes
//!   them, each write under the write timeout; it answers [`Next::Resync`] with a
//!   snapshot from the [`SnapshotSource`], sends keepalive pings, enforces the idle
//!   timeout, checks the queue's soft byte limit, and ends the connection with a close
//!   frame and the close handshake;
//! - the **dispatcher**, [`Inbound::run`], delivers inbound events to handlers and
//!   subscriptions.
//!
//! Running them in one task (rather than three spawned ones) keeps a connection's
//! cost at one task and makes its end simple: when the writer is done, the reader is
//! dropped, the inbound queue is closed and drained, and the task ends.
//!
//! # Who decides that a connection ends
//!
//! Every reason to close goes through [`Outbound::close`], whose first reason wins:
//! the program ([`Connection::close`]), the queue itself (a slow consumer), the reader
//! (the peer's close frame, an oversized or malformed message, a lost socket) and
//! the writer (idle timeout, a failed write). The writer learns it from
//! [`Outbound::next`], at once for a reason that discards the queue and after the
//! queue has drained for [`CloseReason::drains`] ones (after a protocol error, which
//! ends the reader, the drain gets at most the close timeout). While a write is
//! blocked on a peer that does not read, the writer keeps watching the queue, so a
//! slow-consumer close is acted on without waiting for the write.
//!
//! # The socket seam
//!
//! The core is generic over [`Transport`]: a `Stream` of incoming messages and a
//! `Sink` of outgoing ones whose message type implements [`WireMessage`] and whose
//! error implements [`WireError`]. tokio-tungstenite's `WebSocketStream` is one
//! implementation; axum's `WebSocket` (feature `axum`) is another.

use core::future::Future;
use core::pin::Pin;
use core::task::Poll;
use core::time::Duration;
use std::collections::VecDeque;
use std::fmt;
use std::net::SocketAddr;
use std::prelude::rust_2021::*;
// `tokio::select!` expands to `panic!`, which the prelude glob and the crate's
// `no_std` prelude both provide; an explicit import settles which.
#[allow(unused_imports)]
use core::panic;
use std::sync::Arc;

use futures_util::{Sink, SinkExt, Stream, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{watch, Notify};
use tokio::time::{sleep_until, timeout, timeout_at, Instant};
use tokio_tungstenite::tungstenite::{
    self,
    protocol::frame::coding::{Data as OpData, OpCode},
    protocol::frame::Frame as WsFrame,
    protocol::{CloseFrame, WebSocketConfig},
    Bytes, Message,
};
use tokio_tungstenite::WebSocketStream;

use super::{
    CloseReason, ConnId, ConnectionConfig, Event, EventSubscription, EventType, Frame, HandlerId,
    Inbound, InboundError, InboundMetrics, MalformedPolicy, Next, OfferError, Offered, Outbound,
    OutboundMetrics, RawMessage, SlowConsumer, SnapshotSource,
};
use crate::adapters::ending::bump;
use crate::sync::{AtomicBool, AtomicU64, Ordering};

// ---------------------------------------------------------------------------------
// The socket seam
// ---------------------------------------------------------------------------------

/// A WebSocket message type the core can read and write.
pub(crate) trait WireMessage: Sized + Send + 'static {
    /// The message that carries an encoded event as one text message.
    fn text(frame: &Frame) -> Self;

    /// The event as a fragmented text message (a first frame and continuation
    /// frames of at most `max_part` payload bytes each), for events larger than the
    /// socket's write buffer cap. `None` when the socket cannot send raw frames; the
    /// event then goes out as one message.
    fn fragments(frame: &Frame, max_part: usize) -> Option<Vec<Self>>;

    /// A ping with a short payload.
    fn ping(payload: u64) -> Self;

    /// A close frame with `code` and `reason` (at most 123 bytes).
    fn close(code: u16, reason: String) -> Self;

    /// What was received.
    fn kind(&self) -> Incoming<'_>;

    /// A text or binary message as a [`RawMessage`], without copying its payload;
    /// `None` for a control frame.
    fn into_raw(self) -> Option<RawMessage>;
}

/// A received message, as the reader sees it.
pub(crate) enum Incoming<'a> {
    Text(&'a str),
    Binary(usize),
    Ping(usize),
    Pong(usize),
    /// The peer's close frame: its code and reason, if it had any.
    Close(Option<(u16, &'a str)>),
}

/// A socket error, as the core sees it.
pub(crate) trait WireError: fmt::Display + Send + 'static {
    /// Why the connection ends because of this error.
    fn close_reason(&self) -> CloseReason;
}

/// A WebSocket the core can run: messages in, messages out.
pub(crate) trait Transport:
    Stream<Item = Result<Self::Msg, Self::Fault>>
    + Sink<Self::Msg, Error = Self::Fault>
    + Send
    + Unpin
    + Sized
    + 'static
{
    /// The message type.
    type Msg: WireMessage;
    /// The error type of both directions.
    type Fault: WireError;

    /// After a read error ended the message stream while the socket is still open
    /// (an oversized or invalid message), and after this side's close frame is sent:
    /// half-close the socket and discard what the peer still sends until it closes or
    /// `deadline` passes. Closing a socket with unread input makes the kernel send a
    /// reset, which can destroy the close frame before the peer reads it.
    fn linger(self, deadline: Instant) -> impl Future<Output = ()> + Send;
}

impl WireMessage for Message {
    fn text(frame: &Frame) -> Self {
        Message::Text(frame.text().clone())
    }

    fn fragments(frame: &Frame, max_part: usize) -> Option<Vec<Self>> {
        let bytes: Bytes = frame.text().clone().into();
        let max_part = max_part.max(1);
        let count = bytes.len().div_ceil(max_part);
        let mut parts = Vec::with_capacity(count);
        let mut start = 0;
        while start < bytes.len() {
            let end = (start + max_part).min(bytes.len());
            let opcode = if start == 0 {
                OpCode::Data(OpData::Text)
            } else {
                OpCode::Data(OpData::Continue)
            };
            let part = WsFrame::message(bytes.slice(start..end), opcode, end == bytes.len());
            parts.push(Message::Frame(part));
            start = end;
        }
        Some(parts)
    }

    fn ping(payload: u64) -> Self {
        Message::Ping(Bytes::copy_from_slice(&payload.to_be_bytes()))
    }

    fn close(code: u16, reason: String) -> Self {
        Message::Close(Some(CloseFrame {
            code: code.into(),
            reason: reason.into(),
        }))
    }

    fn kind(&self) -> Incoming<'_> {
        match self {
            Message::Text(text) => Incoming::Text(text.as_str()),
            Message::Binary(data) => Incoming::Binary(data.len()),
            Message::Ping(data) => Incoming::Ping(data.len()),
            Message::Pong(data) => Incoming::Pong(data.len()),
            Message::Close(frame) => Incoming::Close(
                frame
                    .as_ref()
                    .map(|f| (u16::from(f.code), f.reason.as_str())),
            ),
            // Never produced by reading.
            Message::Frame(frame) => Incoming::Binary(frame.payload().len()),
        }
    }

    fn into_raw(self) -> Option<RawMessage> {
        match self {
            Message::Text(text) => Some(RawMessage::Text(text)),
            Message::Binary(data) => Some(RawMessage::Binary(data)),
            _ => None,
        }
    }
}

impl WireError for tungstenite::Error {
    fn close_reason(&self) -> CloseReason {
        use tungstenite::error::ProtocolError;
        use tungstenite::Error as E;
        match self {
            E::Capacity(_) => CloseReason::MessageTooBig,
            E::Utf8(_) => CloseReason::InvalidPayload("text message is not valid UTF-8".into()),
            E::Protocol(ProtocolError::ResetWithoutClosingHandshake) => {
                CloseReason::Lost("connection reset without a close handshake".into())
            }
            E::Protocol(e) => CloseReason::Protocol(e.to_string()),
            E::ConnectionClosed | E::AlreadyClosed => CloseReason::Lost("connection closed".into()),
            other => CloseReason::Lost(other.to_string()),
        }
    }
}

impl<S> Transport for WebSocketStream<S>
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    type Msg = Message;
    type Fault = tungstenite::Error;

    fn linger(self, deadline: Instant) -> impl Future<Output = ()> + Send {
        let raw = self.into_inner();
        async move {
            let _ = timeout_at(deadline, discard_until_eof(raw)).await;
        }
    }
}

/// Half-closes `io` and reads it to its end, discarding what arrives.
async fn discard_until_eof<S: AsyncRead + AsyncWrite + Unpin>(mut io: S) {
    let _ = core::future::poll_fn(|cx| Pin::new(&mut io).poll_shutdown(cx)).await;
    let mut buf = [0u8; 2048];
    loop {
        let mut read = ReadBuf::new(&mut buf);
        match core::future::poll_fn(|cx| Pin::new(&mut io).poll_read(cx, &mut read)).await {
            Ok(()) if !read.filled().is_empty() => {}
            _ => return,
        }
    }
}

/// tungstenite's settings for a connection: the inbound size limits and the write
/// buffer, whose default cap (none) is the unbounded buffer this transport avoids.
pub(crate) fn websocket_config(config: &ConnectionConfig) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(config.write_buffer_bytes.clamp(4 << 10, 128 << 10))
        .write_buffer_size(config.write_buffer_bytes)
        .max_write_buffer_size(config.max_write_buffer_bytes)
        .max_message_size(Some(config.inbound.max_message_bytes))
        .max_frame_size(Some(config.inbound.max_frame_bytes))
}

// ---------------------------------------------------------------------------------
// The connection's shared state and its handle
// ---------------------------------------------------------------------------------

/// Traffic counters of one connection.
#[derive(Debug, Default)]
struct Io {
    bytes_in: AtomicU64,
    frames_in: AtomicU64,
    bytes_out: AtomicU64,
    frames_out: AtomicU64,
    pings_sent: AtomicU64,
    pongs_received: AtomicU64,
    malformed_in: AtomicU64,
    raw_in: AtomicU64,
    resyncs_sent: AtomicU64,
    /// The peer's close frame arrived.
    peer_closed: AtomicBool,
    /// This side's close frame was sent.
    close_sent: AtomicBool,
}

fn read(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

/// `start + duration`, saturating far in the future instead of panicking for a huge
/// configured duration.
pub(crate) fn later(start: Instant, duration: Duration) -> Instant {
    start
        .checked_add(duration)
        .unwrap_or_else(|| start + Duration::from_secs(30 * 365 * 86_400))
}

/// `duration` from now (see [`later`]).
pub(crate) fn after(duration: Duration) -> Instant {
    later(Instant::now(), duration)
}

/// The next connection identifier, unique in the process (servers and clients).
pub(crate) fn next_conn_id() -> ConnId {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    // Relaxed: only uniqueness matters.
    ConnId(NEXT.fetch_add(1, Ordering::Relaxed))
}

/// Traffic of one connection, or of a server's connections together.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Traffic {
    /// Payload bytes received (text and binary messages, pings and pongs).
    pub bytes_in: u64,
    /// Messages received (the fragments of one message count once).
    pub frames_in: u64,
    /// Event bytes handed to the socket (the JSON texts).
    pub bytes_out: u64,
    /// Events handed to the socket, resynchronising snapshots included.
    pub frames_out: u64,
    /// Keepalive pings sent.
    pub pings_sent: u64,
    /// Pongs received.
    pub pongs_received: u64,
    /// Inbound messages that were not events (malformed JSON, no `type`, binary),
    /// unless raw mode took them.
    pub malformed_in: u64,
    /// Inbound messages that were not events and went to the raw handlers
    /// ([`MalformedPolicy::Raw`]).
    pub raw_in: u64,
    /// Snapshots sent to resynchronise after discarded state deltas.
    pub resyncs_sent: u64,
}

impl Traffic {
    pub(crate) fn add(&mut self, other: &Traffic) {
        self.bytes_in += other.bytes_in;
        self.frames_in += other.frames_in;
        self.bytes_out += other.bytes_out;
        self.frames_out += other.frames_out;
        self.pings_sent += other.pings_sent;
        self.pongs_received += other.pongs_received;
        self.malformed_in += other.malformed_in;
        self.raw_in += other.raw_in;
        self.resyncs_sent += other.resyncs_sent;
    }
}

/// What a connection's task and its handles share.
pub(crate) struct Core {
    id: ConnId,
    peer: Option<SocketAddr>,
    config: ConnectionConfig,
    outbound: Arc<Outbound>,
    inbound: Arc<Inbound>,
    /// Whether the connection closes its `Inbound` when it ends. A client's inbound
    /// side outlives each connection, so handlers survive a reconnect.
    owns_inbound: bool,
    snapshots: Option<Arc<dyn SnapshotSource>>,
    io: Io,
    /// When the connection started: the origin of `last_rx`.
    epoch: Instant,
    /// Nanoseconds after `epoch` at which something last arrived.
    last_rx: AtomicU64,
    /// Set to stop draining: the writer abandons what is queued and sends its close
    /// frame.
    forced: Flag,
    /// `Some(reason)` once the connection's task has ended.
    done: watch::Sender<Option<CloseReason>>,
}

impl fmt::Debug for Core {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("id", &self.id)
            .field("peer", &self.peer)
            .field("closed", &self.done.borrow().clone())
            .finish_non_exhaustive()
    }
}

/// How to build a connection's core.
pub(crate) struct CoreParts {
    pub(crate) id: ConnId,
    pub(crate) peer: Option<SocketAddr>,
    pub(crate) config: ConnectionConfig,
    pub(crate) outbound: Arc<Outbound>,
    pub(crate) inbound: Arc<Inbound>,
    pub(crate) owns_inbound: bool,
    pub(crate) snapshots: Option<Arc<dyn SnapshotSource>>,
}

impl Core {
    pub(crate) fn new(parts: CoreParts) -> Arc<Self> {
        Arc::new(Self {
            id: parts.id,
            peer: parts.peer,
            config: parts.config,
            outbound: parts.outbound,
            inbound: parts.inbound,
            owns_inbound: parts.owns_inbound,
            snapshots: parts.snapshots,
            io: Io::default(),
            epoch: Instant::now(),
            last_rx: AtomicU64::new(0),
            forced: Flag::default(),
            done: watch::Sender::new(None),
        })
    }

    pub(crate) fn outbound(&self) -> &Arc<Outbound> {
        &self.outbound
    }

    pub(crate) fn inbound(&self) -> &Arc<Inbound> {
        &self.inbound
    }

    /// Records that something arrived.
    fn touch(&self) {
        let nanos = u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
        // Relaxed: only the connection's own task reads it, for a timeout.
        self.last_rx.fetch_max(nanos, Ordering::Relaxed);
    }

    /// When the idle timeout runs out if nothing more arrives.
    fn idle_deadline(&self) -> Instant {
        let last = Duration::from_nanos(self.last_rx.load(Ordering::Relaxed));
        later(self.epoch, last.saturating_add(self.config.idle_timeout))
    }

    /// Stops draining: the writer drops what is queued and closes now.
    pub(crate) fn force_close(&self) {
        self.forced.set();
    }

    async fn forced(&self) {
        self.forced.wait().await;
    }

    /// Marks the connection as ended (idempotent; the first reason stays).
    pub(crate) fn finish(&self, reason: CloseReason) {
        self.done.send_if_modified(|done| {
            if done.is_none() {
                *done = Some(reason);
                true
            } else {
                false
            }
        });
    }

    /// The reason the connection ended with, from the queue (first reason wins).
    pub(crate) fn final_reason(&self) -> CloseReason {
        self.outbound
            .close_reason()
            .unwrap_or_else(|| CloseReason::Lost("connection task ended".into()))
    }

    pub(crate) fn id(&self) -> ConnId {
        self.id
    }

    pub(crate) fn traffic(&self) -> Traffic {
        Traffic {
            bytes_in: read(&self.io.bytes_in),
            frames_in: read(&self.io.frames_in),
            bytes_out: read(&self.io.bytes_out),
            frames_out: read(&self.io.frames_out),
            pings_sent: read(&self.io.pings_sent),
            pongs_received: read(&self.io.pongs_received),
            malformed_in: read(&self.io.malformed_in),
            raw_in: read(&self.io.raw_in),
            resyncs_sent: read(&self.io.resyncs_sent),
        }
    }

    pub(crate) fn metrics(&self) -> ConnectionMetrics {
        ConnectionMetrics {
            id: self.id,
            peer: self.peer,
            traffic: self.traffic(),
            close_handshake: self.io.peer_closed.load(Ordering::Relaxed)
                && (self.io.close_sent.load(Ordering::Relaxed)
                    || matches!(
                        self.done.borrow().as_ref(),
                        Some(CloseReason::Remote { .. })
                    )),
            outbound: self.outbound.metrics(),
            inbound: self.inbound.metrics(),
            close_reason: self.done.borrow().clone(),
        }
    }
}

/// One connection's traffic and queues, and why it ended.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ConnectionMetrics {
    /// The connection.
    pub id: ConnId,
    /// The peer's address, when known.
    pub peer: Option<SocketAddr>,
    /// Bytes and messages in and out.
    pub traffic: Traffic,
    /// Whether the close handshake completed: both sides' close frames went out (the
    /// peer's reply to ours, or tungstenite's reply to the peer's).
    pub close_handshake: bool,
    /// The outbound queue's own metrics.
    pub outbound: OutboundMetrics,
    /// The inbound side's metrics.
    pub inbound: InboundMetrics,
    /// Why the connection ended; `None` while it is open.
    pub close_reason: Option<CloseReason>,
}

/// The connection's own names (`queued_events`, `sent`, `inbound_*`); the server
/// exports them per connection as `conn_*`, a client as `conn_*` too.
impl crate::metrics::Metrics for ConnectionMetrics {
    const KIND: &'static str = "ws_connection";

    fn visit(&self, out: &mut dyn crate::metrics::Visitor) {
        use crate::metrics::{Metric, Scoped};
        let ConnectionMetrics {
            // Identities, not figures: a reader labels the series with them.
            id: _,
            peer: _,
            traffic:
                Traffic {
                    bytes_in,
                    frames_in,
                    bytes_out,
                    frames_out,
                    pings_sent,
                    pongs_received,
                    malformed_in,
                    raw_in,
                    resyncs_sent,
                },
            close_handshake,
            outbound,
            inbound,
            // Why it ended: the server's `closed` counts reasons.
            close_reason: _,
        } = self;
        #[rustfmt::skip]
        let metrics = [
            Metric::counter("sent_events", "Events written to the connection.", *frames_out),
            Metric::counter("sent", "Event bytes written to the connection.", *bytes_out).bytes(),
            Metric::counter("sent_pings", "Keepalive pings sent to the connection.", *pings_sent),
            Metric::counter("sent_resyncs", "Snapshots sent to resynchronise the connection.", *resyncs_sent),
            Metric::counter("received_messages", "Messages received from the connection.", *frames_in),
            Metric::counter("received", "Payload bytes received from the connection.", *bytes_in).bytes(),
            Metric::counter("received_pongs", "Pongs received from the connection.", *pongs_received),
            Metric::counter("received_malformed", "Inbound messages that were not events.", *malformed_in),
            Metric::counter("received_raw", "Inbound messages that were not events, taken by raw mode.", *raw_in),
            Metric::gauge("close_handshake", "1 once the close handshake completed.", *close_handshake),
        ];
        metrics.into_iter().for_each(|m| out.metric(m));
        crate::metrics::Metrics::visit(outbound, out);
        crate::metrics::Metrics::visit(inbound, &mut Scoped::new(out).prefix("inbound_"));
    }
}

/// A handle to one connection, on the server's or the client's side: cheap to clone,
/// valid after the connection ended (sends then fail with `Closed`).
///
/// Events sent through it go to this connection only; [`Server::broadcast`] sends
/// to every connection.
///
/// [`Server::broadcast`]: super::Server::broadcast
#[derive(Clone, Debug)]
pub struct Connection {
    core: Arc<Core>,
}

impl Connection {
    pub(crate) fn from_core(core: Arc<Core>) -> Self {
        Self { core }
    }

    pub(crate) fn core(&self) -> &Arc<Core> {
        &self.core
    }

    /// The connection's identifier, unique in this process.
    pub fn id(&self) -> ConnId {
        self.core.id
    }

    /// The peer's address (`None` when the socket was handed over without one, as
    /// with axum unless `ConnectInfo` is used).
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.core.peer
    }

    /// Queues `event` for this connection. A lossless event that finds the queue
    /// full waits up to the queue's lossless timeout; then the connection is closed
    /// as a slow consumer and the event is handed back. Each send consumes a unit of
    /// the task's tokio budget, so a task that sends in a loop never starves the
    /// connection's writer.
    ///
    /// # Errors
    ///
    /// [`OfferError`] with the encoded event: the connection is closed, or was closed
    /// as a slow consumer while waiting.
    pub async fn send(&self, event: &Event) -> Result<Offered, OfferError> {
        self.core.outbound.send(event.encode()).await
    }

    /// Queues `event` without waiting (a full queue applies the event's class
    /// policy; a lossless event that finds no room is handed back).
    ///
    /// # Errors
    ///
    /// [`OfferError::Full`] for a lossless event without room; `Closed` when the
    /// connection is closed.
    pub fn try_send(&self, event: &Event) -> Result<Offered, OfferError> {
        self.core.outbound.offer(event.encode())
    }

    /// Calls `handler` with every inbound event of type `kind`.
    ///
    /// # Errors
    ///
    /// [`InboundError`] when the connection has as many handlers as allowed, or its
    /// inbound side is closed.
    pub fn on<F, Fut>(&self, kind: EventType, handler: F) -> Result<HandlerId, InboundError>
    where
        F: Fn(Event) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.core.inbound.on(kind, handler)
    }

    /// Calls `handler` with every inbound event.
    ///
    /// # Errors
    ///
    /// As [`on`](Self::on).
    pub fn on_any<F, Fut>(&self, handler: F) -> Result<HandlerId, InboundError>
    where
        F: Fn(Event) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.core.inbound.on_any(handler)
    }

    /// Calls `handler` with every inbound message that is not an event, as it
    /// arrived, when the connection is in raw mode
    /// ([`MalformedPolicy::Raw`]); see [`Inbound::on_raw`].
    ///
    /// # Errors
    ///
    /// As [`on`](Self::on).
    pub fn on_raw<F, Fut>(&self, handler: F) -> Result<HandlerId, InboundError>
    where
        F: Fn(RawMessage) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.core.inbound.on_raw(handler)
    }

    /// Removes a handler; `false` if it was not registered.
    pub fn remove_handler(&self, id: HandlerId) -> bool {
        self.core.inbound.remove_handler(id)
    }

    /// Subscribes to inbound events of the given types (all types when empty).
    ///
    /// # Errors
    ///
    /// [`InboundError`] when the connection has as many subscriptions as allowed, or
    /// its inbound side is closed.
    pub fn subscribe(
        &self,
        kinds: impl IntoIterator<Item = EventType>,
    ) -> Result<EventSubscription, InboundError> {
        self.core.inbound.subscribe(kinds)
    }

    /// Closes the connection. With [`CloseReason::Normal`] what is queued is sent
    /// first; the close frame carries `reason`'s code. The first reason given to a
    /// connection wins.
    pub fn close(&self, reason: CloseReason) {
        self.core.outbound.close(reason);
    }

    /// Waits until the connection has ended, and says why.
    pub async fn closed(&self) -> CloseReason {
        let mut rx = self.core.done.subscribe();
        let reason = match rx.wait_for(Option::is_some).await {
            Ok(reason) => reason.clone(),
            // The sender lives in `core`, which `self` keeps alive.
            Err(_) => None,
        };
        reason.unwrap_or_else(|| self.core.final_reason())
    }

    /// Whether the connection has ended.
    pub fn is_closed(&self) -> bool {
        self.core.done.borrow().is_some()
    }

    /// The connection's traffic, queues and close reason.
    pub fn metrics(&self) -> ConnectionMetrics {
        self.core.metrics()
    }

    /// Events waiting in the outbound queue.
    pub fn queued(&self) -> usize {
        self.core.outbound.len()
    }
}

// ---------------------------------------------------------------------------------
// Driving a connection
// ---------------------------------------------------------------------------------

/// How a connection ended: why, and what is left to do with its socket.
pub(crate) struct Ended {
    pub(crate) reason: CloseReason,
    /// After a read error, the socket still has to linger (see
    /// [`Transport::linger`]) so the close frame reaches the peer. The caller records
    /// the end first, then awaits this (it is bounded by the close timeout).
    pub(crate) linger: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
}

/// Runs the connection until it has ended; returns why. The caller records the end
/// ([`Core::finish`]) after its own clean-up, then awaits [`Ended::linger`].
pub(crate) async fn drive<T: Transport>(socket: T, core: Arc<Core>) -> Ended {
    let (sink, stream) = socket.split();
    let reader_done = Flag::default();
    let mut reader = ReaderState {
        stream,
        read_error: false,
    };
    let mut sink = sink;
    let io = async {
        let reading = read_loop(&core, &mut reader, &reader_done);
        let writing = write_loop(&core, &mut sink, &reader_done);
        tokio::pin!(reading, writing);
        // The writer decides when the connection is over; the reader ends first only
        // when the stream does, and then waits here for the writer.
        let reason = tokio::select! {
            biased;
            reason = &mut writing => reason,
            read_error = &mut reading => {
                if read_error {
                    // The peer broke the protocol: what is queued for it (replies to
                    // its earlier messages) goes out before the close frame, but
                    // within the close timeout; then the writer abandons the rest.
                    match timeout(core.config.close_timeout, &mut writing).await {
                        Ok(reason) => reason,
                        Err(_) => {
                            core.force_close();
                            writing.await
                        }
                    }
                } else {
                    writing.await
                }
            }
        };
        if core.owns_inbound {
            core.inbound.close();
        }
        reason
    };
    let reason = if core.owns_inbound {
        tokio::join!(io, core.inbound.run()).0
    } else {
        io.await
    };
    let mut linger = None;
    if reader.read_error {
        // The stream ended on an error with the socket still open: let the close
        // frame reach the peer before the socket goes.
        if let Ok(socket) = reader.stream.reunite(sink) {
            let deadline = after(core.config.close_timeout);
            linger = Some(Box::pin(socket.linger(deadline)) as Pin<Box<_>>);
        }
    }
    Ended { reason, linger }
}

/// Refuses a connection whose handshake is done: sends a close frame for `reason`
/// and waits (within `close_timeout`) for the peer's reply and the end of the stream.
pub(crate) async fn refuse<T: Transport>(
    mut socket: T,
    reason: &CloseReason,
    close_timeout: Duration,
) {
    let deadline = after(close_timeout);
    let close = T::Msg::close(reason.code(), reason.reason());
    if let Ok(Ok(())) = timeout_at(deadline, socket.send(close)).await {
        let _ = timeout_at(deadline, async {
            while let Some(Ok(_)) = socket.next().await {}
        })
        .await;
    }
}

/// A one-shot event flag: set once, awaited by any number of tasks.
#[derive(Default)]
pub(crate) struct Flag {
    set: AtomicBool,
    notify: Notify,
}

impl Flag {
    pub(crate) fn set(&self) {
        self.set.store(true, Ordering::Release);
        self.notify.notify_waiters();
    }

    pub(crate) fn is_set(&self) -> bool {
        self.set.load(Ordering::Acquire)
    }

    pub(crate) async fn wait(&self) {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.is_set() {
                return;
            }
            notified.await;
        }
    }
}

struct ReaderState<T: Transport> {
    stream: futures_util::stream::SplitStream<T>,
    /// The stream ended on an error (not on the peer's close or EOF).
    read_error: bool,
}

/// Reads until the stream ends; returns whether it ended on a read error.
async fn read_loop<T: Transport>(core: &Core, state: &mut ReaderState<T>, done: &Flag) -> bool {
    let end = loop {
        let message = match state.stream.next().await {
            None => break None,
            Some(Err(error)) => {
                state.read_error = true;
                break Some(error.close_reason());
            }
            Some(Ok(message)) => message,
        };
        core.touch();
        match message.kind() {
            Incoming::Text(text) => {
                bump(&core.io.frames_in, 1);
                bump(&core.io.bytes_in, text.len() as u64);
                if closing(core) {
                    continue;
                }
                let len = text.len();
                match Event::parse(text) {
                    Ok(event) => {
                        // A closed inbound side (the connection is ending) drops it.
                        let _ = core.inbound.push_sized(event, len).await;
                    }
                    Err(error) => not_an_event(core, message, error.to_string()).await,
                }
            }
            Incoming::Binary(len) => {
                bump(&core.io.frames_in, 1);
                bump(&core.io.bytes_in, len as u64);
                if !closing(core) {
                    not_an_event(core, message, "binary messages are not events".into()).await;
                }
            }
            Incoming::Ping(len) => bump(&core.io.bytes_in, len as u64),
            Incoming::Pong(len) => {
                bump(&core.io.bytes_in, len as u64);
                bump(&core.io.pongs_received, 1);
            }
            Incoming::Close(frame) => {
                core.io.peer_closed.store(true, Ordering::Relaxed);
                let (code, reason) = frame.map_or((1005, ""), |(c, r)| (c, r));
                core.outbound.close(CloseReason::Remote {
                    code,
                    reason: reason.into(),
                });
                // Keep reading: tungstenite sends the reply and then ends the stream.
            }
        }
    };
    core.outbound.close(
        end.unwrap_or_else(|| CloseReason::Lost("connection closed without a close frame".into())),
    );
    done.set();
    state.read_error
}

/// Whether the connection is closing for a reason that discards what is queued:
/// inbound data is then ignored.
fn closing(core: &Core) -> bool {
    core.outbound.close_reason().is_some_and(|r| !r.drains())
}

/// A text or binary `message` that is not an event (`why`), by the malformed
/// policy: to the raw handlers in raw mode, otherwise a close or an error event.
async fn not_an_event<M: WireMessage>(core: &Core, message: M, why: String) {
    match core.config.inbound.on_malformed {
        MalformedPolicy::Raw => {
            // Only text and binary messages come here, so `into_raw` has one.
            if let Some(raw) = message.into_raw() {
                bump(&core.io.raw_in, 1);
                // As for an event: a closed inbound side (the connection is
                // ending) drops it.
                let _ = core.inbound.push_raw(raw).await;
            }
        }
        MalformedPolicy::Close => {
            bump(&core.io.malformed_in, 1);
            core.outbound.close(CloseReason::InvalidPayload(why));
        }
        MalformedPolicy::ErrorEvent => {
            bump(&core.io.malformed_in, 1);
            let reply = Event::new(EventType::RunError)
                .with("message", why)
                .with("code", "MALFORMED_EVENT");
            // A full queue is the slow-consumer path; a closed one needs no reply.
            let _ = core.outbound.send(reply.encode()).await;
        }
    }
}

/// How a write ended early.
enum Stop {
    /// The connection is closing for this reason (it discards the queue).
    Close(CloseReason),
    /// The shutdown deadline passed: close now with the queue's reason.
    Forced,
}

/// A tick for [`Outbound::check_limits`]: often enough to enforce the soft limit's
/// duration to within a quarter, never busier than every 10 ms.
fn limits_period(config: &ConnectionConfig) -> Duration {
    (config.outbound.soft_limit_for / 4).clamp(Duration::from_millis(10), Duration::from_secs(1))
}

async fn write_loop<K, M>(core: &Core, sink: &mut K, reader_done: &Flag) -> CloseReason
where
    K: Sink<M> + Unpin,
    K::Error: WireError,
    M: WireMessage,
{
    let config = &core.config;
    let mut writer = Writer {
        core,
        sink,
        lookahead: None,
        batch: VecDeque::new(),
        unflushed: 0,
        max_part: max_part(config),
        _msg: core::marker::PhantomData,
    };
    // The timers live across iterations, so a busy connection does not register
    // three timers per event.
    let ping = sleep_until(after(config.keepalive_interval));
    let idle = sleep_until(core.idle_deadline());
    let limits_every = limits_period(config);
    let limits = sleep_until(after(limits_every));
    tokio::pin!(ping, idle, limits);
    let mut ping_seq = 0u64;

    let outcome: Result<CloseReason, Stop> = loop {
        let mut item = writer.take_buffered();
        if item.is_none() && !core.forced.is_set() && writer.ready(timers(&ping, &idle, &limits)) {
            item = writer.take_buffered();
        }
        let item = match item {
            Some(item) => item,
            // The timers come before the queue: a queue that never runs dry must
            // not starve the keepalive, the idle check or the limits.
            None => tokio::select! {
                biased;
                () = core.forced() => break Err(Stop::Forced),
                () = &mut idle => {
                    let deadline = core.idle_deadline();
                    if Instant::now() >= deadline {
                        core.outbound.close(CloseReason::IdleTimeout);
                        // Disarmed, so the queue's close is taken next (an elapsed
                        // timer would win this biased select again and again).
                        idle.as_mut().reset(after(config.idle_timeout));
                    } else {
                        idle.as_mut().reset(deadline);
                    }
                    continue;
                }
                () = &mut ping => {
                    ping_seq += 1;
                    let sent = match writer.write(M::ping(ping_seq), 0).await {
                        Ok(()) => writer.flush().await,
                        Err(stop) => Err(stop),
                    };
                    if let Err(stop) = sent {
                        break Err(stop);
                    }
                    bump(&core.io.pings_sent, 1);
                    ping.as_mut().reset(after(config.keepalive_interval));
                    continue;
                }
                () = &mut limits => {
                    let _ = core.outbound.check_limits();
                    limits.as_mut().reset(after(limits_every));
                    continue;
                }
                item = core.outbound.next() => item,
            },
        };
        let written = match item {
            Next::Frame(frame) => writer.write_frame(&frame).await,
            Next::Resync => match core.snapshots.as_ref().and_then(|s| s.snapshot()) {
                Some(snapshot) => {
                    // Mark the resync before the write: deltas queued from now on are
                    // newer than the snapshot and must not be skipped.
                    let frame = snapshot.encode();
                    core.outbound.resynced(frame.revision());
                    bump(&core.io.resyncs_sent, 1);
                    writer.write_frame(&frame).await
                }
                None => {
                    core.outbound
                        .close(CloseReason::SlowConsumer(SlowConsumer::NoSnapshot));
                    Ok(())
                }
            },
            Next::Closed(reason) => break Ok(reason),
        };
        if let Err(stop) = written {
            break Err(stop);
        }
        // Batch: keep feeding while more is ready and the buffer is small; flush when
        // the queue runs dry.
        if writer.unflushed > 0 {
            if writer.unflushed < config.write_buffer_bytes && writer.lookahead.is_none() {
                if writer.ready(timers(&ping, &idle, &limits)) {
                    continue;
                }
                // The queue ran dry: give a publisher in the middle of a burst one
                // turn of the scheduler before paying a system call for the flush,
                // so a burst goes out in few writes rather than one per event.
                tokio::task::yield_now().await;
                if writer.ready(timers(&ping, &idle, &limits)) {
                    continue;
                }
            }
            if let Err(stop) = writer.flush().await {
                break Err(stop);
            }
        }
    };

    let reason = match outcome {
        Ok(reason) | Err(Stop::Close(reason)) => reason,
        Err(Stop::Forced) => core.final_reason(),
    };
    // Make a reason final for everyone (senders fail from now on); the first one
    // given to the queue stays its reason.
    core.outbound.close(reason.clone());
    match &reason {
        // The peer closed (tungstenite replies by itself): let the reader see the
        // reply go out and the stream end.
        CloseReason::Remote { .. } => {
            let _ = timeout(config.close_timeout, reader_done.wait()).await;
        }
        // The socket is gone: nothing can be sent.
        CloseReason::Lost(_) => {}
        reason => {
            let close = M::close(reason.code(), reason.reason());
            let sent = timeout(config.close_timeout, writer.sink.send(close)).await;
            if matches!(sent, Ok(Ok(()))) {
                core.io.close_sent.store(true, Ordering::Relaxed);
                // The close handshake: the reader sees the peer's close frame, then
                // the end of the stream.
                let _ = timeout(config.close_timeout, reader_done.wait()).await;
            }
        }
    }
    reason
}

/// The largest payload of one written frame: what fits in tungstenite's capped write
/// buffer next to a pending control frame (a pong or close reply, at most 131
/// bytes) and the frame's own header.
fn max_part(config: &ConnectionConfig) -> usize {
    let cap = config.max_write_buffer_bytes;
    cap.saturating_sub(256).max(cap / 2).max(1)
}

/// Most frames the writer takes from its queue at once; it also stops once it holds
/// `write_buffer_bytes` of text. Small, because frames taken are out of the queue's
/// reach (its byte limits do not count them, a discarding close does not remove
/// them): the writer holds at most about one write buffer more than tungstenite.
const WRITE_BATCH: usize = 32;

struct Writer<'a, K, M> {
    core: &'a Core,
    sink: &'a mut K,
    /// One queue item taken while a write was in progress, or by batching.
    lookahead: Option<Next>,
    /// Frames taken from the queue in one batch and not yet written (at most
    /// [`WRITE_BATCH`]): one lock per batch instead of one per frame, so the
    /// publisher and the writer contend less on the queue.
    batch: VecDeque<Frame>,
    /// Bytes fed to the sink since the last flush.
    unflushed: usize,
    max_part: usize,
    _msg: core::marker::PhantomData<fn(M)>,
}

impl<K, M> Writer<'_, K, M>
where
    K: Sink<M> + Unpin,
    K::Error: WireError,
    M: WireMessage,
{
    /// The next item already taken from the queue. The batch comes first: the
    /// lookahead, when `guarded` took it during a write, is newer than every frame
    /// of the batch (and a draining close in it must come after them).
    fn take_buffered(&mut self) -> Option<Next> {
        self.batch
            .pop_front()
            .map(Next::Frame)
            .or_else(|| self.lookahead.take())
    }

    /// Whether an item is ready without waiting: one already taken, else a new
    /// batch from the queue (a resync or a close goes to the lookahead), unless
    /// `timers` (the earliest timer deadline) has passed: then the caller goes to
    /// its `select`, where the timers run first. One clock read per batch.
    fn ready(&mut self, timers: Instant) -> bool {
        if !self.batch.is_empty() || self.lookahead.is_some() {
            return true;
        }
        if Instant::now() >= timers {
            return false;
        }
        match self.core.outbound.try_next_batch(
            &mut self.batch,
            WRITE_BATCH,
            self.core.config.write_buffer_bytes,
        ) {
            Some(next) => {
                self.lookahead = Some(next);
                true
            }
            None => !self.batch.is_empty(),
        }
    }

    async fn write_frame(&mut self, frame: &Frame) -> Result<(), Stop> {
        // tungstenite refuses a frame that would take its buffer past the cap: flush
        // what is batched first when the two together might not fit.
        if self.unflushed > 0 && self.unflushed + frame.len() > self.max_part {
            self.flush().await?;
        }
        // Counted when handed to the socket (before its bytes can reach the peer).
        self.sent(frame);
        if frame.len() > self.max_part {
            if let Some(parts) = M::fragments(frame, self.max_part) {
                for part in parts {
                    self.write(part, 0).await?;
                    self.flush().await?;
                }
                return Ok(());
            }
        }
        self.write(M::text(frame), frame.len()).await
    }

    fn sent(&self, frame: &Frame) {
        bump(&self.core.io.frames_out, 1);
        bump(&self.core.io.bytes_out, frame.len() as u64);
    }

    /// Feeds one message (without flushing), under the write timeout.
    async fn write(&mut self, message: M, len: usize) -> Result<(), Stop> {
        let Self {
            core,
            sink,
            lookahead,
            ..
        } = self;
        // Fast path: while tungstenite's buffer has room, `poll_ready` is ready at
        // once and `start_send` only appends to the buffer. Feeding then needs no
        // timer and no select (which cost a clock read and a runtime lookup per
        // event); only a feed that has to wait for the socket goes through `guarded`.
        let ready = std::future::poll_fn(|cx| Poll::Ready(sink.poll_ready_unpin(cx))).await;
        match ready {
            Poll::Ready(Ok(())) => {
                if let Err(error) = sink.start_send_unpin(message) {
                    return Err(Stop::Close(write_failed(&error)));
                }
            }
            Poll::Ready(Err(error)) => return Err(Stop::Close(write_failed(&error))),
            Poll::Pending => guarded(core, lookahead, sink.feed(message)).await?,
        }
        self.unflushed += len.max(1);
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), Stop> {
        let Self {
            core,
            sink,
            lookahead,
            ..
        } = self;
        // As in `write`: a flush the socket takes at once needs no timer.
        match std::future::poll_fn(|cx| Poll::Ready(sink.poll_flush_unpin(cx))).await {
            Poll::Ready(Ok(())) => {}
            Poll::Ready(Err(error)) => return Err(Stop::Close(write_failed(&error))),
            Poll::Pending => guarded(core, lookahead, sink.flush()).await?,
        }
        self.unflushed = 0;
        Ok(())
    }
}

/// The earliest deadline of the writer's timers.
fn timers(
    ping: &tokio::time::Sleep,
    idle: &tokio::time::Sleep,
    limits: &tokio::time::Sleep,
) -> Instant {
    ping.deadline().min(idle.deadline()).min(limits.deadline())
}

/// Runs one write under the write timeout while watching the queue: a close that
/// discards the queue, or the end of a shutdown's drain, abandons the write.
async fn guarded<F, E>(core: &Core, lookahead: &mut Option<Next>, write: F) -> Result<(), Stop>
where
    F: Future<Output = Result<(), E>>,
    E: WireError,
{
    let write = timeout(core.config.write_timeout, write);
    // While the write is blocked: the soft limit's timer, and a close that `next`
    // cannot report because an item is already held. (Never registered when the
    // write completes at once: the write is polled first.)
    let tick = limits_period(&core.config).min(Duration::from_millis(100));
    let check = tokio::time::sleep(tick);
    tokio::pin!(write, check);
    loop {
        tokio::select! {
            biased;
            result = &mut write => {
                return match result {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(error)) => Err(Stop::Close(write_failed(&error))),
                    Err(_) => Err(Stop::Close(CloseReason::Lost("write timed out".into()))),
                };
            }
            () = core.forced() => return Err(Stop::Forced),
            item = core.outbound.next(), if lookahead.is_none() => match item {
                Next::Closed(reason) if !reason.drains() => return Err(Stop::Close(reason)),
                item => *lookahead = Some(item),
            },
            () = &mut check => {
                if let Err(reason) = core.outbound.check_limits() {
                    if !reason.drains() {
                        return Err(Stop::Close(reason));
                    }
                }
                check.as_mut().reset(after(tick));
            }
        }
    }
}

/// The reason for a failed write: the peer's close when the reader saw one first,
/// otherwise a lost connection.
fn write_failed<E: WireError>(error: &E) -> CloseReason {
    match error.close_reason() {
        CloseReason::Lost(why) => CloseReason::Lost(why),
        other => CloseReason::Lost(other.reason()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fragments_carry_the_text_in_order_with_one_final_frame() {
        let text: String = "é✓".repeat(1000); // multi-byte characters across part edges
        let frame = Event::new(EventType::Custom)
            .with("data", text.as_str())
            .encode();
        let parts = <Message as WireMessage>::fragments(&frame, 1000).unwrap();
        assert_eq!(parts.len(), frame.len().div_ceil(1000));
        let mut joined = Vec::new();
        for (i, part) in parts.iter().enumerate() {
            let Message::Frame(f) = part else {
                panic!("raw frames")
            };
            let expected = if i == 0 {
                OpCode::Data(OpData::Text)
            } else {
                OpCode::Data(OpData::Continue)
            };
            assert_eq!(f.header().opcode, expected);
            assert_eq!(f.header().is_final, i == parts.len() - 1);
            assert!(f.payload().len() <= 1000);
            joined.extend_from_slice(f.payload());
        }
        assert_eq!(joined, frame.as_str().as_bytes());
    }

    #[test]
    fn the_largest_part_fits_the_write_buffer_cap() {
        let mut config = ConnectionConfig::default();
        for cap in [2, 100, 300, 4096, 64 << 10] {
            config.max_write_buffer_bytes = cap;
            let part = max_part(&config);
            assert!(part >= 1 && part <= cap, "cap {cap}: {part}");
            if cap > 512 {
                assert!(part + 256 <= cap, "room for a header and a control frame");
            }
        }
    }

    #[test]
    fn deadlines_saturate_instead_of_overflowing() {
        let now = Instant::now();
        assert!(later(now, Duration::MAX) > now);
        assert_eq!(
            later(now, Duration::from_secs(1)),
            now + Duration::from_secs(1)
        );
    }

    #[test]
    fn read_errors_map_to_close_reasons() {
        use tungstenite::error::{CapacityError, ProtocolError};
        let too_big = tungstenite::Error::Capacity(CapacityError::MessageTooLong {
            size: 2,
            max_size: 1,
        });
        assert_eq!(too_big.close_reason(), CloseReason::MessageTooBig);
        let utf8 = tungstenite::Error::Utf8("bad".into());
        assert_eq!(utf8.close_reason().code(), 1007);
        let reset = tungstenite::Error::Protocol(ProtocolError::ResetWithoutClosingHandshake);
        assert!(matches!(reset.close_reason(), CloseReason::Lost(_)));
        let unmasked = tungstenite::Error::Protocol(ProtocolError::UnmaskedFrameFromClient);
        assert_eq!(unmasked.close_reason().code(), 1002);
    }

    #[test]
    fn handles_and_their_futures_cross_threads() {
        fn send_sync<T: Send + Sync>(_: &T) {}
        fn send<T: Send>(_: &T) {}
        fn types<T: Send + Sync>() {}
        types::<Connection>();
        types::<ConnectionMetrics>();
        types::<super::super::Server>();
        types::<super::super::ServerMetrics>();
        types::<super::super::Client>();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let server = super::super::Server::bind(Default::default())
                .await
                .unwrap();
            send_sync(&server);
            send(&server.broadcast(&Event::new(EventType::RunStarted)));
            send(&server.shutdown());
            server.shutdown().await;
        });
    }
}
