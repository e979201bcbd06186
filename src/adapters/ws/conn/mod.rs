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
//! The core is generic over [`Transport`]: a `Stream` of incoming messages (whose
//! type implements [`WireMessage`], whose error implements [`WireError`]) and a
//! [`WireOut`](transport::WireOut) the writer stages frames into and flushes.
//!
//! - The server's own listener uses [`RawSocket`]: tungstenite reads, checks and
//!   answers the peer, and the writer sends the shared log's prepared frames itself,
//!   many in one vectored write, with tungstenite's replies between frames (see
//!   `raw`).
//! - With feature `axum`, a Server-Sent Events stream (`sse`): the writer fills an
//!   HTTP response body with the same prepared frames, in their SSE form, and
//!   nothing is read.
//! - Sockets that are a `Sink` of messages ([`SinkSocket`](transport::SinkSocket):
//!   tokio-tungstenite's `WebSocketStream` for the client, axum's `WebSocket` with
//!   feature `axum`) write message by message through tungstenite.

mod driver;
mod raw;
mod shared;
#[cfg(feature = "axum")]
mod sse;
mod transport;

pub(crate) use driver::{drive, refuse};
pub(crate) use raw::{frame_header, RawSocket, COPY_BELOW};
pub(crate) use shared::{next_conn_id, Core, CoreParts, Flag, LastEventId};
pub use shared::{Connection, ConnectionMetrics, Traffic};
#[cfg(feature = "axum")]
pub(crate) use sse::sse_pair;
pub(crate) use transport::{websocket_config, Transport};
#[cfg(feature = "axum")]
pub(crate) use transport::{Incoming, SinkMessage, SinkSocket, WireError, WireMessage};
