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

use futures_util::{Sink, Stream};
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
use crate::adapters::ws::types::CloseReason;

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
