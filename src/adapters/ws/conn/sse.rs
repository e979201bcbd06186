//! Server-Sent Events: the connection core writing into an HTTP response body
//! instead of a WebSocket (feature `axum`).
//!
//! An SSE stream is one-way: the client sent its request (an AG-UI `RunAgentInput`)
//! and reads `text/event-stream` frames until the stream ends. The core runs it as
//! it runs a WebSocket, with the same queues, delivery classes, byte limits, shared
//! log and metrics; only the socket differs:
//!
//! - **out**: the writer stages each event as one SSE frame, `data: <json>\n\n`. A
//!   broadcast's frame, `id: <epoch>-<offset>\ndata: <json>\n\n`, is the same bytes
//!   for every stream, so the shared log encodes it once ([`LogEntry::sse`]) and
//!   every stream hands on a reference count, as the WebSocket writer does with the
//!   prepared WebSocket frames. A flush hands the staged frames to a bounded
//!   [`Pipe`] that the response body ([`SseBody`]) drains as hyper asks for data. A
//!   flush waits while the body has not taken the previous one, so a client that
//!   stops reading stops the writer, its backlog grows in the connection's queue and
//!   the shared log (where the byte limits see it), and it is closed as a slow
//!   consumer like a WebSocket.
//! - **close**: SSE has no close frame. A close for a reason with an
//!   [`error_code`](CloseReason::error_code) (a slow consumer, shutdown, an idle
//!   timeout) sends a final `RUN_ERROR` event carrying that stable `code`; a normal
//!   close just ends the stream.
//! - **keepalive**: a ping is an SSE comment (`: ping`). When the body hands one to
//!   hyper, the reader reports it as a pong, which is what the idle timeout counts:
//!   a stream whose client stopped reading for the idle timeout is closed.
//! - **in**: nothing is read. The reader's stream ends when the body is dropped (the
//!   client went away, or hyper finished the response).
//!
//! [`LogEntry::sse`]: crate::adapters::ws::LogEntry

use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll, Waker};
use std::collections::VecDeque;
use std::convert::Infallible;
use std::fmt;
use std::prelude::rust_2021::*;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use futures_util::Stream;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Bytes;

use super::transport::{gather_bytes, Incoming, Transport, WireError, WireMessage, WireOut};
use crate::adapters::ws::config::ConnectionConfig;
use crate::adapters::ws::event::{Event, EventType, Frame};
use crate::adapters::ws::inbound::RawMessage;
use crate::adapters::ws::log::{SharedLog, SseReading};
use crate::adapters::ws::outbound::Staged;
use crate::adapters::ws::types::CloseReason;

/// The keepalive comment.
const PING: &[u8] = b": ping\n\n";

/// Chunks shorter than this are copied together into one body chunk when several
/// wait: hyper writes a chunk-size line and a line end around every body chunk, and
/// at most 16 buffers per write, so chunks handed on one by one would go out about
/// five per system call.
const COALESCE_BELOW: usize = 32 << 10;

/// Most bytes copied into one coalesced body chunk.
const COALESCE_MAX: usize = 128 << 10;

/// A new SSE stream reading `log`'s broadcasts: the socket the core runs, and the
/// response body hyper sends.
pub(crate) fn sse_pair(log: &Arc<SharedLog>) -> (SseSocket, SseBody) {
    let pipe = Arc::new(Pipe::default());
    (
        SseSocket {
            pipe: Arc::clone(&pipe),
            epoch: log.epoch(),
            reading: log.sse_reader(),
        },
        SseBody { pipe },
    )
}

/// What the writer has handed to the body and the body has not yet taken, and who
/// waits for whom.
#[derive(Default)]
struct Pipe(Mutex<PipeState>);

#[derive(Default)]
struct PipeState {
    /// Frames handed over, each marked when it is a keepalive comment.
    chunks: VecDeque<(Bytes, bool)>,
    /// The writer is done: the body ends after the chunks.
    ended: bool,
    /// The body was dropped, or has ended.
    gone: bool,
    /// Keepalive comments the body has taken.
    pings_taken: u64,
    body: Option<Waker>,
    writer: Option<Waker>,
    reader: Option<Waker>,
}

impl Pipe {
    fn lock(&self) -> MutexGuard<'_, PipeState> {
        // The state stays consistent under a panic: every update is a few plain
        // stores.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl PipeState {
    fn body_gone(&mut self) {
        self.gone = true;
        self.chunks.clear();
        wake(&mut self.writer);
        wake(&mut self.reader);
    }
}

fn wake(waker: &mut Option<Waker>) {
    if let Some(waker) = waker.take() {
        waker.wake();
    }
}

fn park(slot: &mut Option<Waker>, cx: &Context<'_>) {
    match slot {
        Some(waker) if waker.will_wake(cx.waker()) => {}
        _ => *slot = Some(cx.waker().clone()),
    }
}

/// The response body of an SSE stream: the frames the writer flushed, in order,
/// then its end. Dropping it (hyper does when the client goes away) ends the
/// connection.
pub(crate) struct SseBody {
    pipe: Arc<Pipe>,
}

impl Stream for SseBody {
    type Item = Result<Bytes, Infallible>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let mut st = self.pipe.lock();
        let Some((first, ping)) = st.chunks.pop_front() else {
            if st.ended {
                st.body_gone();
                return Poll::Ready(None);
            }
            park(&mut st.body, cx);
            return Poll::Pending;
        };
        let mut pings = u64::from(ping);
        // The small chunks that follow, joined to this one within COALESCE_MAX.
        let (mut count, mut total) = (0, first.len());
        if first.len() < COALESCE_BELOW {
            for (next, _) in &st.chunks {
                if next.len() >= COALESCE_BELOW || total + next.len() > COALESCE_MAX {
                    break;
                }
                count += 1;
                total += next.len();
            }
        }
        let chunk = if count == 0 {
            first
        } else {
            let mut joined = Vec::with_capacity(total);
            joined.extend_from_slice(&first);
            for (next, ping) in st.chunks.drain(..count) {
                joined.extend_from_slice(&next);
                pings += u64::from(ping);
            }
            Bytes::from(joined)
        };
        if pings > 0 {
            st.pings_taken += pings;
            wake(&mut st.reader);
        }
        if st.chunks.is_empty() {
            wake(&mut st.writer);
        }
        Poll::Ready(Some(Ok(chunk)))
    }
}

impl Drop for SseBody {
    fn drop(&mut self) {
        self.pipe.lock().body_gone();
    }
}

/// The connection's side of an SSE stream (see the module docs).
pub(crate) struct SseSocket {
    pipe: Arc<Pipe>,
    epoch: u64,
    reading: SseReading,
}

/// What the reader sees: a keepalive comment the body has handed on.
pub(crate) struct SseMessage;

impl WireMessage for SseMessage {
    fn kind(&self) -> Incoming<'_> {
        Incoming::Pong(0)
    }

    fn into_raw(self) -> Option<RawMessage> {
        None
    }
}

/// The only failure: the client went away (the body was dropped).
#[derive(Debug)]
pub(crate) struct Gone;

impl fmt::Display for Gone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the event stream's client went away")
    }
}

impl WireError for Gone {
    fn close_reason(&self) -> CloseReason {
        CloseReason::Lost(self.to_string())
    }
}

/// The reading half: a pong per keepalive comment taken, and the end when the body
/// is gone.
pub(crate) struct SseReader {
    pipe: Arc<Pipe>,
    pings_seen: u64,
}

impl Stream for SseReader {
    type Item = Result<SseMessage, Gone>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let pipe = Arc::clone(&self.pipe);
        let mut st = pipe.lock();
        if st.pings_taken > self.pings_seen {
            self.pings_seen += 1;
            return Poll::Ready(Some(Ok(SseMessage)));
        }
        if st.gone {
            return Poll::Ready(None);
        }
        park(&mut st.reader, cx);
        Poll::Pending
    }
}

/// The writing half (see the module docs).
pub(crate) struct SseOut {
    pipe: Arc<Pipe>,
    epoch: u64,
    /// Held while the stream runs: the log encodes its entries' SSE form on append.
    _reading: SseReading,
    staged: VecDeque<(Bytes, bool)>,
    staged_bytes: usize,
    gather: usize,
    /// The close is staged: once flushed, the body ends.
    closing: bool,
}

impl SseOut {
    fn push(&mut self, chunk: Bytes, ping: bool) {
        if self.closing {
            return;
        }
        self.staged_bytes += chunk.len();
        self.staged.push_back((chunk, ping));
    }
}

/// One SSE frame carrying `json` (an encoded event: no raw newline in it).
fn data_frame(json: &str) -> Bytes {
    let mut out = Vec::with_capacity(json.len() + 8);
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(json.as_bytes());
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}

/// The frame a stream closed for `reason` ends with, if any: a `RUN_ERROR` with the
/// reason's stable code.
pub(crate) fn closing_frame(reason: &CloseReason) -> Option<Frame> {
    let code = reason.error_code()?;
    Some(
        Event::new(EventType::RunError)
            .with("message", reason.to_string())
            .with("code", code)
            .encode(),
    )
}

impl WireOut for SseOut {
    type Fault = Gone;

    fn gather_bytes(&self) -> usize {
        self.gather
    }

    fn stage(&mut self, item: Staged<'_>) {
        let chunk = match item {
            Staged::Entry(entry) => entry.sse(self.epoch).clone(),
            Staged::Frame(frame) => data_frame(frame.as_str()),
        };
        self.push(chunk, false);
    }

    fn stage_ping(&mut self, _payload: u64) {
        self.push(Bytes::from_static(PING), true);
    }

    fn stage_close(&mut self, reason: &CloseReason) {
        if let Some(frame) = closing_frame(reason) {
            self.push(data_frame(frame.as_str()), false);
        }
        self.closing = true;
    }

    fn discard_staged(&mut self) {
        self.staged.clear();
        self.staged_bytes = 0;
        // What the body has not taken is not written yet either: a client that
        // stopped reading gets the closing error next, not the backlog first.
        self.pipe.lock().chunks.clear();
    }

    fn staged(&self) -> usize {
        self.staged_bytes
    }

    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Gone>> {
        let mut st = self.pipe.lock();
        if st.gone {
            return Poll::Ready(Err(Gone));
        }
        if self.staged.is_empty() && !self.closing {
            return Poll::Ready(Ok(()));
        }
        if !st.chunks.is_empty() {
            // The body has not taken the previous flush: the client reads slowly.
            park(&mut st.writer, cx);
            return Poll::Pending;
        }
        st.chunks.append(&mut self.staged);
        self.staged_bytes = 0;
        if self.closing {
            st.ended = true;
        }
        wake(&mut st.body);
        Poll::Ready(Ok(()))
    }

    fn poll_control(&mut self, _cx: &mut Context<'_>) -> Poll<()> {
        // Nothing to answer: the client sends nothing.
        Poll::Pending
    }
}

impl Drop for SseOut {
    fn drop(&mut self) {
        // The connection is over (its close may not have been flushed, for a client
        // that does not read): the body ends after what it holds.
        let mut st = self.pipe.lock();
        st.ended = true;
        wake(&mut st.body);
    }
}

impl Transport for SseSocket {
    type Msg = SseMessage;
    type Fault = Gone;
    type Reader = SseReader;
    type Writer = SseOut;

    fn split(self, config: &ConnectionConfig) -> (SseReader, SseOut) {
        (
            SseReader {
                pipe: Arc::clone(&self.pipe),
                pings_seen: 0,
            },
            SseOut {
                pipe: self.pipe,
                epoch: self.epoch,
                _reading: self.reading,
                staged: VecDeque::new(),
                staged_bytes: 0,
                gather: gather_bytes(config),
                closing: false,
            },
        )
    }

    fn linger(
        _reader: SseReader,
        _writer: SseOut,
        _deadline: Instant,
    ) -> impl Future<Output = ()> + Send {
        // Nothing is read, so no read error leaves a socket to drain.
        core::future::ready(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;

    fn pair() -> (SseSocket, SseBody) {
        let log = Arc::new(SharedLog::new(crate::adapters::ws::LogConfig::default()).unwrap());
        sse_pair(&log)
    }

    fn text(s: &str) -> Frame {
        Event::new(EventType::Custom).with("data", s).encode()
    }

    async fn flush(out: &mut SseOut) -> Result<(), Gone> {
        core::future::poll_fn(|cx| out.poll_flush(cx)).await
    }

    fn poll_once<F: Future + Unpin>(f: &mut F) -> Poll<F::Output> {
        let waker = futures_util::task::noop_waker();
        Pin::new(f).poll(&mut Context::from_waker(&waker))
    }

    #[tokio::test]
    async fn frames_go_out_in_order_then_the_closing_error_and_the_end() {
        let (socket, mut body) = pair();
        let (mut reader, mut out) = socket.split(&ConnectionConfig::default());
        out.stage(Staged::Frame(text("a")));
        out.stage_ping(1);
        out.stage(Staged::Frame(text("b")));
        flush(&mut out).await.unwrap();
        out.stage_close(&CloseReason::SlowConsumer(
            crate::adapters::ws::SlowConsumer::SoftLimit,
        ));
        out.stage(Staged::Frame(text("after the close")));
        // The body has not taken the first flush: the second waits.
        assert!(poll_once(&mut Box::pin(flush(&mut out))).is_pending());
        let mut got = Vec::new();
        got.extend_from_slice(&body.next().await.unwrap().unwrap());
        flush(&mut out).await.unwrap();
        while let Some(chunk) = body.next().await {
            got.extend_from_slice(&chunk.unwrap());
        }
        let got = String::from_utf8(got).unwrap();
        let frames: Vec<&str> = got.split_terminator("\n\n").collect();
        assert_eq!(frames.len(), 4, "{got}");
        assert_eq!(frames[0], format!("data: {}", text("a").as_str()));
        assert_eq!(frames[1], ": ping");
        assert_eq!(frames[2], format!("data: {}", text("b").as_str()));
        let last: serde_json::Value =
            serde_json::from_str(frames[3].strip_prefix("data: ").unwrap()).unwrap();
        assert_eq!(last["type"], "RUN_ERROR");
        assert_eq!(last["code"], "SLOW_CONSUMER");
        // The ping the body took is a pong for the reader; then the stream's end.
        assert!(matches!(reader.next().await, Some(Ok(SseMessage))));
        assert!(reader.next().await.is_none());
    }

    #[tokio::test]
    async fn a_dropped_body_fails_the_writer_and_ends_the_reader() {
        let (socket, body) = pair();
        let (mut reader, mut out) = socket.split(&ConnectionConfig::default());
        out.stage(Staged::Frame(text("a")));
        drop(body);
        assert!(flush(&mut out).await.is_err());
        assert!(reader.next().await.is_none());
    }

    #[tokio::test]
    async fn a_discarding_close_drops_what_the_body_has_not_taken() {
        let (socket, mut body) = pair();
        let (_reader, mut out) = socket.split(&ConnectionConfig::default());
        out.stage(Staged::Frame(text("taken")));
        flush(&mut out).await.unwrap();
        assert_eq!(
            body.next().await.unwrap().unwrap(),
            data_frame(text("taken").as_str())
        );
        out.stage(Staged::Frame(text("handed over")));
        flush(&mut out).await.unwrap();
        out.stage(Staged::Frame(text("staged")));
        out.discard_staged();
        out.stage_close(&CloseReason::SlowConsumer(
            crate::adapters::ws::SlowConsumer::HardLimit,
        ));
        flush(&mut out).await.unwrap();
        let chunk = body.next().await.unwrap().unwrap();
        assert!(std::str::from_utf8(&chunk)
            .unwrap()
            .contains("SLOW_CONSUMER"));
        assert!(body.next().await.is_none());
    }

    #[tokio::test]
    async fn a_normal_close_ends_the_stream_without_an_error() {
        let (socket, mut body) = pair();
        let (_reader, mut out) = socket.split(&ConnectionConfig::default());
        out.stage(Staged::Frame(text("a")));
        out.stage_close(&CloseReason::Normal);
        flush(&mut out).await.unwrap();
        let chunk = body.next().await.unwrap().unwrap();
        assert_eq!(
            &chunk[..],
            format!("data: {}\n\n", text("a").as_str()).as_bytes()
        );
        assert!(body.next().await.is_none());
    }

    #[test]
    fn small_frames_are_joined_and_large_ones_pass_whole() {
        let (socket, mut body) = pair();
        let (_reader, mut out) = socket.split(&ConnectionConfig::default());
        let big = "x".repeat(COALESCE_BELOW);
        for s in ["a", "b", big.as_str(), "c"] {
            out.stage(Staged::Frame(text(s)));
        }
        assert!(poll_once(&mut Box::pin(flush(&mut out))).is_ready());
        let mut next = || match poll_once(&mut body.next()) {
            Poll::Ready(Some(Ok(chunk))) => chunk,
            _ => unreachable!("a chunk"),
        };
        let ab = [
            data_frame(text("a").as_str()),
            data_frame(text("b").as_str()),
        ]
        .concat();
        assert_eq!(&next()[..], &ab[..], "the two small ones in one chunk");
        assert_eq!(next(), data_frame(text(&big).as_str()));
        assert_eq!(next(), data_frame(text("c").as_str()));
    }
}
