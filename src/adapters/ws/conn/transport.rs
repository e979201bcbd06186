//! The socket seam: what the connection core needs of a WebSocket, and
//! tokio-tungstenite's implementation of it.

use core::future::Future;
use core::pin::Pin;
use std::fmt;
use std::prelude::rust_2021::*;
// `tokio::select!` expands to `panic!`, which the prelude glob and the crate's
// `no_std` prelude both provide; an explicit import settles which.
#[allow(unused_imports)]
use core::panic;

use std::collections::VecDeque;

use core::task::{ready, Context, Poll};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{timeout_at, Instant};
use tokio_tungstenite::tungstenite::{
    self,
    protocol::frame::coding::{Data as OpData, OpCode},
    protocol::frame::Frame as WsFrame,
    protocol::{CloseFrame, WebSocketConfig},
    Bytes, Message,
};
use tokio_tungstenite::WebSocketStream;

use crate::adapters::ws::config::ConnectionConfig;
use crate::adapters::ws::event::Frame;
use crate::adapters::ws::inbound::RawMessage;
use crate::adapters::ws::outbound::Staged;
use crate::adapters::ws::types::CloseReason;

// ---------------------------------------------------------------------------------
// The socket seam
// ---------------------------------------------------------------------------------

/// A message type the core can read: what was received, and the payload of a text
/// or binary message for the raw handlers.
pub(crate) trait WireMessage: Sized + Send + Unpin + 'static {
    /// What was received.
    fn kind(&self) -> Incoming<'_>;

    /// A text or binary message as a [`RawMessage`], without copying its payload;
    /// `None` for a control frame.
    fn into_raw(self) -> Option<RawMessage>;
}

/// A WebSocket message type the core can also write, message by message (through
/// a [`SinkSocket`]).
pub(crate) trait SinkMessage: WireMessage {
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

/// A WebSocket the core can run: a stream of messages in, and a [`WireOut`] that
/// writes frames out. The two halves are driven side by side in one task.
pub(crate) trait Transport: Send + Sized + 'static {
    /// The message type.
    type Msg: WireMessage;
    /// The error type of both directions.
    type Fault: WireError;
    /// The incoming half.
    type Reader: Stream<Item = Result<Self::Msg, Self::Fault>> + Send + Unpin + 'static;
    /// The outgoing half.
    type Writer: WireOut<Fault = Self::Fault>;

    /// The two halves, the writer set up by the connection's `config`.
    fn split(self, config: &ConnectionConfig) -> (Self::Reader, Self::Writer);

    /// After a read error ended the message stream while the socket is still open
    /// (an oversized or invalid message), and after this side's close frame is sent:
    /// half-close the socket and discard what the peer still sends until it closes or
    /// `deadline` passes. Closing a socket with unread input makes the kernel send a
    /// reset, which can destroy the close frame before the peer reads it.
    fn linger(
        reader: Self::Reader,
        writer: Self::Writer,
        deadline: Instant,
    ) -> impl Future<Output = ()> + Send;
}

/// What the writer writes with: frames are staged (no I/O), then written out
/// together by [`poll_flush`](Self::poll_flush), which also sends what the
/// transport has to send by itself (the replies to the peer's pings and close).
pub(crate) trait WireOut: Send + Unpin + 'static {
    /// The error of a write.
    type Fault: WireError;

    /// Most bytes the writer stages before it writes them out.
    fn gather_bytes(&self) -> usize;

    /// Whether staging more should wait for a write: bytes or frames are at the
    /// limit.
    fn is_full(&self) -> bool {
        self.staged() >= self.gather_bytes()
    }

    /// Stages a text frame.
    fn stage(&mut self, item: Staged<'_>);

    /// Stages a ping with a short payload.
    fn stage_ping(&mut self, payload: u64);

    /// Stages the close frame for `reason` (its code, and its reason text of at
    /// most 123 bytes). Nothing is sent after it.
    fn stage_close(&mut self, reason: &CloseReason);

    /// Drops the staged frames that are not yet being written (the peer closed:
    /// only the reply to its close goes out).
    fn discard_staged(&mut self);

    /// Bytes staged and not yet written.
    fn staged(&self) -> usize;

    /// Writes everything staged, and the transport's own replies, and flushes.
    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Fault>>;

    /// Ready when the transport has a reply of its own to send (then flush).
    fn poll_control(&mut self, cx: &mut Context<'_>) -> Poll<()>;
}

/// A socket that is a `Stream` and a `Sink` of messages (tokio-tungstenite's and
/// axum's WebSockets): split with `futures`' lock, and written message by message.
pub(crate) trait SinkSocket:
    Stream<Item = Result<Self::Msg, Self::Fault>>
    + Sink<Self::Msg, Error = Self::Fault>
    + Send
    + Unpin
    + Sized
    + 'static
{
    /// The message type.
    type Msg: SinkMessage;
    /// The error type of both directions.
    type Fault: WireError;

    /// See [`Transport::linger`].
    fn linger_whole(self, deadline: Instant) -> impl Future<Output = ()> + Send;
}

impl<T: SinkSocket> Transport for T {
    type Msg = T::Msg;
    type Fault = T::Fault;
    type Reader = SplitStream<T>;
    type Writer = SinkOut<SplitSink<T, T::Msg>, T::Msg>;

    fn split(self, config: &ConnectionConfig) -> (Self::Reader, Self::Writer) {
        let (sink, stream) = StreamExt::split(self);
        (stream, SinkOut::new(sink, config))
    }

    fn linger(
        reader: Self::Reader,
        writer: Self::Writer,
        deadline: Instant,
    ) -> impl Future<Output = ()> + Send {
        let whole = reader.reunite(writer.sink).ok();
        async move {
            if let Some(whole) = whole {
                whole.linger_whole(deadline).await;
            }
        }
    }
}

/// The [`WireOut`] of a [`SinkSocket`]: staged frames become messages, fed to the
/// sink when flushed. An event larger than [`max_part`](Self::max_part) goes out
/// fragmented where the socket can send raw frames, each part flushed on its own, so
/// tungstenite's capped write buffer never refuses one.
pub(crate) struct SinkOut<K, M> {
    sink: K,
    staged: VecDeque<(M, usize)>,
    staged_bytes: usize,
    /// Bytes fed to the sink since its last flush.
    unflushed: usize,
    max_part: usize,
    gather: usize,
}

impl<K, M> SinkOut<K, M> {
    fn new(sink: K, config: &ConnectionConfig) -> Self {
        Self {
            sink,
            staged: VecDeque::new(),
            staged_bytes: 0,
            unflushed: 0,
            max_part: max_part(config),
            gather: config.write_buffer_bytes,
        }
    }

    fn push(&mut self, message: M, len: usize) {
        self.staged_bytes += len;
        self.staged.push_back((message, len));
    }
}

/// Most bytes a writer that writes many frames at once (the raw WebSocket writer,
/// the SSE writer) stages before it writes: the write buffer cap, or the write
/// buffer when that is larger.
pub(crate) fn gather_bytes(config: &ConnectionConfig) -> usize {
    config.max_write_buffer_bytes.max(config.write_buffer_bytes)
}

/// The largest payload of one written frame: what fits in tungstenite's capped write
/// buffer next to a pending control frame (a pong or close reply, at most 131
/// bytes) and the frame's own header.
fn max_part(config: &ConnectionConfig) -> usize {
    let cap = config.max_write_buffer_bytes;
    cap.saturating_sub(256).max(cap / 2).max(1)
}

impl<K, M> WireOut for SinkOut<K, M>
where
    K: Sink<M> + Send + Unpin + 'static,
    K::Error: WireError,
    M: SinkMessage,
{
    type Fault = K::Error;

    fn gather_bytes(&self) -> usize {
        self.gather
    }

    fn stage(&mut self, item: Staged<'_>) {
        let frame = item.frame();
        if frame.len() > self.max_part {
            if let Some(parts) = M::fragments(frame, self.max_part) {
                let mut left = frame.len();
                for part in parts {
                    let len = left.min(self.max_part);
                    left -= len;
                    self.push(part, len);
                }
                return;
            }
        }
        let message = M::text(frame);
        self.push(message, frame.len());
    }

    fn stage_ping(&mut self, payload: u64) {
        self.push(M::ping(payload), 0);
    }

    fn stage_close(&mut self, reason: &CloseReason) {
        self.push(M::close(reason.code(), reason.reason()), 0);
    }

    fn discard_staged(&mut self) {
        self.staged.clear();
        self.staged_bytes = 0;
    }

    fn staged(&self) -> usize {
        self.staged_bytes
    }

    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Fault>> {
        while let Some(&(_, len)) = self.staged.front() {
            // tungstenite refuses a frame that would take its buffer past the cap:
            // flush what was fed first when the two together might not fit.
            if self.unflushed > 0 && self.unflushed + len > self.max_part {
                ready!(self.sink.poll_flush_unpin(cx))?;
                self.unflushed = 0;
            }
            ready!(self.sink.poll_ready_unpin(cx))?;
            let Some((message, len)) = self.staged.pop_front() else {
                break;
            };
            self.staged_bytes -= len;
            self.unflushed += len.max(1);
            self.sink.start_send_unpin(message)?;
        }
        ready!(self.sink.poll_flush_unpin(cx))?;
        self.unflushed = 0;
        Poll::Ready(Ok(()))
    }

    fn poll_control(&mut self, _cx: &mut Context<'_>) -> Poll<()> {
        // tungstenite sends its replies itself, from the reading half.
        Poll::Pending
    }
}

impl SinkMessage for Message {
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
}

impl WireMessage for Message {
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

impl<S> SinkSocket for WebSocketStream<S>
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    type Msg = Message;
    type Fault = tungstenite::Error;

    fn linger_whole(self, deadline: Instant) -> impl Future<Output = ()> + Send {
        let raw = self.into_inner();
        async move {
            let _ = timeout_at(deadline, discard_until_eof(raw)).await;
        }
    }
}

/// Half-closes `io` and reads it to its end, discarding what arrives.
pub(crate) async fn discard_until_eof<S: AsyncRead + AsyncWrite + Unpin>(mut io: S) {
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

/// The read buffer an idle connection holds: what one read takes from the socket.
/// A frame larger than this is still read whole (tungstenite reserves room for a
/// frame once its header announces the length, and reads it in pieces of this
/// size); the buffer only sets what a connection that receives little costs
/// (tungstenite's default is 128 KiB, allocated up front for every connection). At
/// most [`MAX_READ_BUFFER`], at most one largest frame and its header.
pub(crate) fn read_buffer_bytes(config: &ConnectionConfig) -> usize {
    config
        .inbound
        .max_frame_bytes
        .saturating_add(FRAME_HEADER_MAX)
        .min(MAX_READ_BUFFER)
}

/// The read buffer's ceiling: client events are small, and an idle connection
/// should cost little (issue 15 asks for at most 32 KiB of heap per idle connection,
/// on the server side).
const MAX_READ_BUFFER: usize = 4 << 10;

/// The longest WebSocket frame header: 2 bytes, an 8-byte length and a 4-byte mask.
const FRAME_HEADER_MAX: usize = 14;

/// tungstenite's settings for a connection: the inbound size limits, the read buffer
/// ([`read_buffer_bytes`]) and the write buffer, whose default cap (none) is the
/// unbounded buffer this transport avoids.
pub(crate) fn websocket_config(config: &ConnectionConfig) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(read_buffer_bytes(config))
        .write_buffer_size(config.write_buffer_bytes)
        .max_write_buffer_size(config.max_write_buffer_bytes)
        .max_message_size(Some(config.inbound.max_message_bytes))
        .max_frame_size(Some(config.inbound.max_frame_bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::ws::event::{Event, EventType};

    #[test]
    fn fragments_carry_the_text_in_order_with_one_final_frame() {
        let text: String = "é✓".repeat(1000); // multi-byte characters across part edges
        let frame = Event::new(EventType::Custom)
            .with("data", text.as_str())
            .encode();
        let parts = <Message as SinkMessage>::fragments(&frame, 1000).unwrap();
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
    fn the_read_buffer_is_small_and_fits_the_frame_limit() {
        let mut config = ConnectionConfig::default();
        assert_eq!(
            read_buffer_bytes(&config),
            4 << 10,
            "the default frame limit is larger"
        );
        config.inbound.max_frame_bytes = 100;
        assert_eq!(read_buffer_bytes(&config), 114, "one frame and its header");
        config.inbound.max_frame_bytes = usize::MAX;
        assert_eq!(read_buffer_bytes(&config), 4 << 10);
        assert_eq!(websocket_config(&config).read_buffer_size, 4 << 10);
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
}
