//! The server's own sockets: tungstenite reads and answers the peer, the writer
//! writes the frames itself.
//!
//! A server's frames are unmasked, so an event's frame is the same bytes for every
//! connection: the shared log encodes it once ([`LogEntry::wire`]), and the writer
//! hands those bytes to the socket as they are, many frames in one vectored write,
//! with no copy into a per-connection buffer. What the writer holds while it writes
//! is reference counts on the log's bytes, at most [`RawOut`]'s gather limits.
//!
//! tungstenite still reads: it parses and checks the peer's frames, and answers
//! pings and the close handshake. It writes those answers into a [`Tap`] that keeps
//! them ([`Control`], bounded) for the writer, which sends them between two of its
//! own frames, never inside one. The writer encodes its own control frames (pings,
//! the close frame); tungstenite never writes a data frame on these sockets.
//!
//! [`LogEntry::wire`]: crate::adapters::ws::LogEntry::wire

use core::future::Future;
use core::pin::Pin;
use core::task::{ready, Context, Poll};
use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::prelude::rust_2021::*;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::time::{timeout_at, Instant};
use tokio_tungstenite::tungstenite::{self, protocol::WebSocketConfig, Bytes};
use tokio_tungstenite::WebSocketStream;

use super::transport::{discard_until_eof, gather_bytes, Transport, WireOut};
use crate::adapters::ws::config::ConnectionConfig;
use crate::adapters::ws::outbound::Staged;
use crate::adapters::ws::types::CloseReason;

/// Opcodes of RFC 6455 §5.2.
const OP_TEXT: u8 = 0x1;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;

/// The header of an unmasked, final frame with `opcode` and a payload of `len`
/// bytes (RFC 6455 §5.2): the bytes and how many of them there are.
pub(crate) fn frame_header(opcode: u8, len: usize) -> ([u8; 10], usize) {
    let mut head = [0u8; 10];
    head[0] = 0x80 | opcode;
    let used = if len < 126 {
        head[1] = len as u8;
        2
    } else if let Ok(len) = u16::try_from(len) {
        head[1] = 126;
        head[2..4].copy_from_slice(&len.to_be_bytes());
        4
    } else {
        head[1] = 127;
        head[2..10].copy_from_slice(&(len as u64).to_be_bytes());
        10
    };
    (head, used)
}

/// The most control bytes kept for the writer before tungstenite's writes wait.
const MAX_CONTROL: usize = 1024;

/// Control frames tungstenite wrote and the writer has not sent yet: its replies
/// to pings (it keeps only the latest pending one) and to the peer's close. Bounded
/// by [`MAX_CONTROL`]: past it, tungstenite's writes wait, and so its reading does,
/// until the writer has taken them (a peer that floods pings while it does not read
/// is slowed down, as a full socket would). Its wait/wake protocol has a loom model
/// (`handoff::loom_models`).
pub(crate) type Control = crate::handoff::Handoff;

/// The socket tungstenite runs on: it reads from the TCP stream's read half, and
/// writes to its write half during the handshake only; from then on what it writes
/// goes to [`Control`].
pub(crate) struct Tap {
    read: OwnedReadHalf,
    write: Option<OwnedWriteHalf>,
    control: Arc<Control>,
}

impl AsyncRead for Tap {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.read).poll_read(cx, buf)
    }
}

impl AsyncWrite for Tap {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if let Some(write) = &mut self.write {
            return Pin::new(write).poll_write(cx, buf);
        }
        // Whole: tungstenite hands over whole frames, and the writer must only ever
        // see whole frames here.
        self.control.poll_put(cx, buf).map(Ok)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.write {
            Some(write) => Pin::new(write).poll_flush(cx),
            None => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.write {
            Some(write) => Pin::new(write).poll_shutdown(cx),
            None => Poll::Ready(Ok(())),
        }
    }
}

/// A server connection whose handshake is done: tungstenite's reading half over a
/// [`Tap`], and the socket's write half for the [`RawOut`].
pub(crate) struct RawSocket {
    ws: WebSocketStream<Tap>,
    write: OwnedWriteHalf,
    control: Arc<Control>,
    /// The query string of the upgrade request's URI (what follows `?`).
    query: Option<String>,
}

impl RawSocket {
    /// Runs the server's side of the WebSocket handshake on `tcp`.
    ///
    /// # Errors
    ///
    /// tungstenite's, for a failed handshake.
    pub(crate) async fn accept(
        tcp: TcpStream,
        config: WebSocketConfig,
    ) -> Result<Self, tungstenite::Error> {
        let (read, write) = tcp.into_split();
        let control = Arc::new(Control::new(MAX_CONTROL));
        let tap = Tap {
            read,
            write: Some(write),
            control: Arc::clone(&control),
        };
        let mut query = None;
        // The callback's type is tungstenite's (its error is a whole HTTP response).
        #[allow(clippy::result_large_err)]
        let read_query =
            |request: &tungstenite::handshake::server::Request,
             response: tungstenite::handshake::server::Response| {
                query = request.uri().query().map(str::to_owned);
                Ok(response)
            };
        let mut ws =
            tokio_tungstenite::accept_hdr_async_with_config(tap, read_query, Some(config)).await?;
        // The handshake wrote its response through the tap; the write half now
        // belongs to the writer.
        let Some(write) = ws.get_mut().write.take() else {
            return Err(tungstenite::Error::AlreadyClosed);
        };
        Ok(Self {
            ws,
            write,
            control,
            query,
        })
    }

    /// The upgrade request's query string, if it had one.
    pub(crate) fn query(&self) -> Option<&str> {
        self.query.as_deref()
    }
}

impl Transport for RawSocket {
    type Msg = tungstenite::Message;
    type Fault = tungstenite::Error;
    type Reader = WebSocketStream<Tap>;
    type Writer = RawOut;

    fn split(self, config: &ConnectionConfig) -> (Self::Reader, Self::Writer) {
        let out = RawOut::new(self.write, self.control, gather_bytes(config));
        (self.ws, out)
    }

    fn linger(
        reader: Self::Reader,
        writer: Self::Writer,
        deadline: Instant,
    ) -> impl Future<Output = ()> + Send {
        let tcp = reader.into_inner().read.reunite(writer.io).ok();
        async move {
            if let Some(tcp) = tcp {
                let _ = timeout_at(deadline, discard_until_eof(tcp)).await;
            }
        }
    }
}

/// One whole frame to write: a header the writer encoded (empty for a log entry,
/// whose wire bytes have theirs) and a payload it shares.
struct Seg {
    head: [u8; 10],
    head_len: u8,
    body: Bytes,
}

impl Seg {
    fn len(&self) -> usize {
        usize::from(self.head_len) + self.body.len()
    }

    fn parts(&self) -> [&[u8]; 2] {
        [&self.head[..usize::from(self.head_len)], &self.body]
    }
}

/// Frames one [`RawOut`] holds at most before it writes them.
const MAX_SEGS: usize = 256;

/// Frames whose payload is shorter than this are copied (header and payload) into
/// the writer's run buffer instead of being handed to the kernel as slices of their
/// own; the log therefore encodes such a frame's wire bytes only on demand. For a
/// 100-byte frame the kernel's per-slice cost dominates: profiled at 32 connections and 100-byte
/// events, `_copy_from_iter` over one slice per frame took 23 % of the server's
/// time, and each shared slice also costs a reference count taken and dropped.
/// One contiguous copy in user space is cheaper than both.
pub(crate) const COPY_BELOW: usize = 1024;

/// Slices given to one vectored write (Linux takes up to 1024).
const MAX_IOV: usize = 128;

/// The writer of a [`RawSocket`]: staged frames are whole frames (mostly the log's
/// wire bytes, shared); a flush writes them with vectored writes, sending
/// tungstenite's replies ([`Control`]) between two frames.
pub(crate) struct RawOut {
    io: OwnedWriteHalf,
    control: Arc<Control>,
    segs: VecDeque<Seg>,
    /// Small frames ([`COPY_BELOW`]) staged after the last of `segs`, copied
    /// back to back; sealed into one segment when something else is staged or a
    /// flush begins.
    run: Vec<u8>,
    /// Bytes of the first segment already written.
    front_done: usize,
    staged_bytes: usize,
    /// A close frame is staged (ours, or tungstenite's reply to the peer's):
    /// nothing is staged after it.
    closing: bool,
    gather: usize,
}

impl RawOut {
    fn new(io: OwnedWriteHalf, control: Arc<Control>, gather: usize) -> Self {
        Self {
            io,
            control,
            segs: VecDeque::new(),
            run: Vec::new(),
            front_done: 0,
            staged_bytes: 0,
            closing: false,
            gather,
        }
    }

    fn push(&mut self, seg: Seg) {
        if self.closing {
            return;
        }
        self.seal_run();
        self.staged_bytes += seg.len();
        self.segs.push_back(seg);
    }

    /// Copies a small frame (`parts`: its header, then its payload) onto the run.
    fn copy(&mut self, parts: [&[u8]; 2]) {
        if self.closing {
            return;
        }
        if self.run.capacity() == 0 {
            // Room for a few frames; a burst grows it as a Vec grows. (A run's
            // buffer goes with its segment, so a reserve of the whole gather
            // would be allocated for every lone small frame.)
            self.run.reserve(4 * COPY_BELOW);
        }
        for part in parts {
            self.run.extend_from_slice(part);
            self.staged_bytes += part.len();
        }
    }

    /// Ends the run of copied frames: one segment (of whole frames) after the
    /// others. Its buffer goes with it; the next run starts a new one.
    fn seal_run(&mut self) {
        if !self.run.is_empty() {
            let body = Bytes::from(core::mem::take(&mut self.run));
            self.segs.push_back(Seg {
                head: [0; 10],
                head_len: 0,
                body,
            });
        }
    }

    /// At a frame boundary: puts tungstenite's pending replies first. After its
    /// reply to the peer's close, nothing else is sent; after ours, its replies are
    /// not either.
    fn take_control(&mut self) {
        let bytes = self.control.take();
        if bytes.is_empty() {
            return;
        }
        if self.closing {
            return;
        }
        if has_close(&bytes) {
            self.discard_staged();
            self.closing = true;
        }
        self.staged_bytes += bytes.len();
        self.segs.push_front(Seg {
            head: [0; 10],
            head_len: 0,
            body: Bytes::from(bytes),
        });
    }

    /// Marks `n` bytes written.
    fn advance(&mut self, mut n: usize) {
        while n > 0 {
            let Some(front) = self.segs.front() else {
                return;
            };
            let left = front.len() - self.front_done;
            if n < left {
                self.front_done += n;
                return;
            }
            n -= left;
            self.staged_bytes -= front.len();
            self.front_done = 0;
            self.segs.pop_front();
        }
    }
}

/// The frames of `bytes` (whole unmasked frames, back to back): each one's opcode
/// and where it ends. A header cut short ends the last one at the end of `bytes`.
fn frames(bytes: &[u8]) -> impl Iterator<Item = (u8, usize)> + '_ {
    let mut start = 0;
    core::iter::from_fn(move || {
        if start + 2 > bytes.len() {
            return None;
        }
        let opcode = bytes[start] & 0x0f;
        let (len, head) = match bytes[start + 1] & 0x7f {
            126 if start + 4 <= bytes.len() => (
                usize::from(u16::from_be_bytes([bytes[start + 2], bytes[start + 3]])),
                4,
            ),
            127 if start + 10 <= bytes.len() => {
                let mut len = [0u8; 8];
                len.copy_from_slice(&bytes[start + 2..start + 10]);
                (
                    usize::try_from(u64::from_be_bytes(len)).unwrap_or(usize::MAX),
                    10,
                )
            }
            126 | 127 => (usize::MAX, 0),
            short => (usize::from(short), 2),
        };
        start = start
            .saturating_add(head)
            .saturating_add(len)
            .min(bytes.len());
        Some((opcode, start))
    })
}

/// Where the frame that holds byte `at` of `bytes` (whole unmasked frames, back
/// to back) ends.
fn frame_end(bytes: &[u8], at: usize) -> usize {
    frames(bytes)
        .map(|(_, end)| end)
        .find(|&end| end > at)
        .unwrap_or(bytes.len())
}

/// Whether `bytes` (whole control frames, unmasked) hold a close frame.
fn has_close(bytes: &[u8]) -> bool {
    frames(bytes).any(|(opcode, _)| opcode == OP_CLOSE)
}

impl WireOut for RawOut {
    type Fault = tungstenite::Error;

    fn gather_bytes(&self) -> usize {
        self.gather
    }

    fn is_full(&self) -> bool {
        self.staged_bytes >= self.gather || self.segs.len() >= MAX_SEGS
    }

    fn stage(&mut self, item: Staged<'_>) {
        let frame = item.frame();
        if frame.len() < COPY_BELOW {
            let (head, used) = frame_header(OP_TEXT, frame.len());
            return self.copy([&head[..used], frame.as_str().as_bytes()]);
        }
        let seg = match item {
            Staged::Entry(entry) => Seg {
                head: [0; 10],
                head_len: 0,
                body: entry.wire().clone(),
            },
            Staged::Frame(frame) => {
                let (head, used) = frame_header(OP_TEXT, frame.len());
                Seg {
                    head,
                    head_len: used as u8,
                    body: frame.text().clone().into(),
                }
            }
        };
        self.push(seg);
    }

    fn stage_ping(&mut self, payload: u64) {
        let (mut head, _) = frame_header(OP_PING, 8);
        head[2..10].copy_from_slice(&payload.to_be_bytes());
        self.push(Seg {
            head,
            head_len: 10,
            body: Bytes::new(),
        });
    }

    fn stage_close(&mut self, reason: &CloseReason) {
        let text = reason.reason();
        let mut body = Vec::with_capacity(2 + text.len());
        body.extend_from_slice(&reason.code().to_be_bytes());
        body.extend_from_slice(text.as_bytes());
        let (head, used) = frame_header(OP_CLOSE, body.len());
        self.push(Seg {
            head,
            head_len: used as u8,
            body: Bytes::from(body),
        });
        self.closing = true;
    }

    fn discard_staged(&mut self) {
        self.staged_bytes -= self.run.len();
        self.run = Vec::new();
        // A frame partly written must be finished; the rest of its segment (a run
        // of copied frames) goes.
        let keep = usize::from(self.front_done > 0);
        while self.segs.len() > keep {
            if let Some(seg) = self.segs.pop_back() {
                self.staged_bytes -= seg.len();
            }
        }
        if let Some(front) = self.segs.front_mut().filter(|_| keep == 1) {
            if front.head_len == 0 {
                let end = frame_end(&front.body, self.front_done);
                self.staged_bytes -= front.body.len() - end;
                front.body.truncate(end);
            }
        }
    }

    fn staged(&self) -> usize {
        self.staged_bytes
    }

    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Fault>> {
        self.seal_run();
        loop {
            if self.front_done == 0 {
                self.take_control();
            }
            if self.segs.is_empty() {
                // Drop the frame list's buffer once a burst is out: an idle
                // connection holds none.
                if self.segs.capacity() > 16 {
                    self.segs = VecDeque::new();
                }
                return Pin::new(&mut self.io)
                    .poll_flush(cx)
                    .map_err(tungstenite::Error::Io);
            }
            let mut slices = [IoSlice::new(&[]); MAX_IOV];
            let mut used = 0;
            let mut skip = self.front_done;
            'fill: for seg in &self.segs {
                for part in seg.parts() {
                    if skip >= part.len() {
                        skip -= part.len();
                        continue;
                    }
                    if used == MAX_IOV {
                        break 'fill;
                    }
                    slices[used] = IoSlice::new(&part[skip..]);
                    skip = 0;
                    used += 1;
                }
            }
            let written = ready!(Pin::new(&mut self.io).poll_write_vectored(cx, &slices[..used]))
                .map_err(tungstenite::Error::Io)?;
            if written == 0 {
                return Poll::Ready(Err(tungstenite::Error::Io(io::ErrorKind::WriteZero.into())));
            }
            self.advance(written);
        }
    }

    fn poll_control(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.closing {
            // Nothing more is sent: what tungstenite writes now is dropped.
            self.take_control();
            return Poll::Pending;
        }
        self.control.poll_ready(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_use_the_shortest_length_form() {
        assert_eq!(
            frame_header(OP_TEXT, 5),
            ([0x81, 5, 0, 0, 0, 0, 0, 0, 0, 0], 2)
        );
        let (head, used) = frame_header(OP_TEXT, 300);
        assert_eq!((&head[..used], used), (&[0x81, 126, 1, 44][..], 4));
        let (head, used) = frame_header(OP_CLOSE, 70_000);
        assert_eq!(&head[..used], &[0x88, 127, 0, 0, 0, 0, 0, 1, 0x11, 0x70]);
    }

    /// A `RawOut` on one end of a loopback connection, and the other end.
    async fn raw_pair() -> (RawOut, TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap());
        let (client, accepted) = tokio::join!(client, listener.accept());
        let (_read, write) = accepted.unwrap().0.into_split();
        let out = RawOut::new(write, Arc::new(Control::new(MAX_CONTROL)), 64 << 10);
        (out, client.unwrap())
    }

    fn text(payload: &str) -> Frame {
        crate::adapters::ws::Event::new(crate::adapters::ws::EventType::Custom)
            .with("value", payload)
            .encode()
    }

    use crate::adapters::ws::Frame;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn control_replies_go_first_and_a_close_reply_ends_what_is_staged() {
        let (mut out, mut peer) = raw_pair().await;
        out.stage(Staged::Frame(text("a")));
        out.stage(Staged::Frame(text("b")));
        // tungstenite answered a ping, then the peer's close.
        let pong = [0x8a, 1, 7];
        let close = [0x88, 2, 0x03, 0xe8];
        let replies = [&pong[..], &close[..]].concat();
        let put = core::future::poll_fn(|cx| out.control.poll_put(cx, &replies)).await;
        assert_eq!(put, replies.len());
        assert!(core::future::poll_fn(|cx| out.poll_flush(cx)).await.is_ok());
        assert_eq!(out.staged(), 0);
        // Staged after the close reply: dropped.
        out.stage(Staged::Frame(text("c")));
        assert_eq!(out.staged(), 0);
        drop(out);
        let mut got = Vec::new();
        peer.read_to_end(&mut got).await.unwrap();
        assert_eq!(
            got,
            [&pong[..], &close[..]].concat(),
            "the frames staged before it are dropped"
        );
    }

    #[tokio::test]
    async fn frames_go_out_whole_and_in_order_with_pings_and_the_close_last() {
        let (mut out, mut peer) = raw_pair().await;
        let (a, big) = (text("a"), text(&"x".repeat(70_000)));
        out.stage(Staged::Frame(a.clone()));
        out.stage_ping(5);
        out.stage(Staged::Frame(big.clone()));
        out.stage_close(&CloseReason::Shutdown);
        out.stage(Staged::Frame(text("late")));
        assert!(core::future::poll_fn(|cx| out.poll_flush(cx)).await.is_ok());
        drop(out);
        let mut got = Vec::new();
        peer.read_to_end(&mut got).await.unwrap();
        let mut expected = Vec::new();
        for (op, payload) in [
            (OP_TEXT, a.as_str().as_bytes().to_vec()),
            (OP_PING, 5u64.to_be_bytes().to_vec()),
            (OP_TEXT, big.as_str().as_bytes().to_vec()),
            (
                OP_CLOSE,
                [&1001u16.to_be_bytes()[..], b"server shutting down"].concat(),
            ),
        ] {
            let (head, used) = frame_header(op, payload.len());
            expected.extend_from_slice(&head[..used]);
            expected.extend_from_slice(&payload);
        }
        assert_eq!(got.len(), expected.len());
        assert!(got == expected, "nothing after the close frame");
    }

    /// `payload` as a whole unmasked text frame.
    fn wire(payload: &[u8]) -> Vec<u8> {
        let (head, used) = frame_header(OP_TEXT, payload.len());
        [&head[..used], payload].concat()
    }

    #[tokio::test]
    async fn small_frames_are_copied_into_one_run_and_a_discard_keeps_only_the_frame_begun() {
        let (mut out, _peer) = raw_pair().await;
        let (a, b, big) = (text("a"), text("b"), text(&"x".repeat(2 * COPY_BELOW)));
        out.stage(Staged::Frame(a.clone()));
        out.stage(Staged::Frame(b.clone()));
        out.stage(Staged::Frame(big.clone()));
        out.stage(Staged::Frame(text("c")));
        out.seal_run();
        // The two small frames are one segment, the large one shares its payload,
        // the last small one starts a new run.
        let lens: Vec<usize> = out.segs.iter().map(Seg::len).collect();
        let (wa, wb) = (wire(a.as_str().as_bytes()), wire(b.as_str().as_bytes()));
        let wbig = wire(big.as_str().as_bytes());
        assert_eq!(lens[..2], [wa.len() + wb.len(), wbig.len()]);
        assert_eq!(lens.len(), 3);
        assert_eq!(&out.segs[0].body[..], &[&wa[..], &wb[..]].concat()[..]);
        assert_eq!(out.staged(), lens.iter().sum::<usize>());
        // Three bytes of `a` are out: a discard finishes `a` and drops the rest.
        out.front_done = 3;
        out.discard_staged();
        assert_eq!(out.segs.len(), 1);
        assert_eq!(&out.segs[0].body[..], &wa[..]);
        assert_eq!(out.staged(), wa.len());
    }

    #[test]
    fn a_frame_end_is_found_for_every_length_form() {
        let (short, medium, long) = (wire(b"ab"), wire(&[b'y'; 300]), wire(&[b'z'; 70_000]));
        let all = [&short[..], &medium[..], &long[..]].concat();
        assert_eq!(frame_end(&all, 0), short.len());
        assert_eq!(frame_end(&all, short.len() - 1), short.len());
        assert_eq!(frame_end(&all, short.len()), short.len() + medium.len());
        assert_eq!(frame_end(&all, short.len() + medium.len() + 5), all.len());
        // A header cut short: the rest is kept.
        assert_eq!(
            frame_end(&all[..short.len() + 3], short.len() + 1),
            short.len() + 3
        );
    }

    #[test]
    fn a_close_is_found_among_control_frames() {
        let pong = [0x8a, 2, 1, 2];
        let close = [0x88, 2, 0x03, 0xe8];
        assert!(!has_close(&pong));
        assert!(has_close(&[&pong[..], &close[..]].concat()));
        assert!(has_close(&close));
        assert!(!has_close(&[]));
    }
}
