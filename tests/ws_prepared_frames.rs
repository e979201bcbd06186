//! The server writes its frames itself, from the shared log's prepared bytes, while
//! tungstenite reads and answers the peer (issue 15, part 2). These tests read the
//! server's bytes with a strict frame parser of their own, so that a pong written
//! inside a data frame, a frame after the close frame, or a malformed header fails
//! them, under load: pings interleaved with large batches, and the close handshake
//! (from either side) while a publisher keeps the writer busy.
#![cfg(feature = "ws")]

#[path = "support/ws.rs"]
mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use membound::adapters::ws::{CloseReason, Event, EventType, Server, ServerConfig};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

/// A frame as the server sent it.
#[derive(Debug)]
struct Frame {
    fin: bool,
    opcode: u8,
    payload: Vec<u8>,
}

/// Reads the server's frames and checks each header strictly: no reserved bits, no
/// mask, control frames final and short, known opcodes.
struct Reader {
    read: OwnedReadHalf,
    buf: Vec<u8>,
}

impl Reader {
    async fn fill(&mut self, n: usize) -> bool {
        while self.buf.len() < n {
            self.buf.reserve(64 << 10);
            let got = self.read.read_buf(&mut self.buf).await.expect("read");
            if got == 0 {
                return false;
            }
        }
        true
    }

    /// The next frame, or `None` at the end of the stream (between frames only).
    async fn next(&mut self) -> Option<Frame> {
        if !self.fill(2).await {
            assert!(self.buf.is_empty(), "the stream ended inside a frame");
            return None;
        }
        let (b0, b1) = (self.buf[0], self.buf[1]);
        assert_eq!(b0 & 0x70, 0, "reserved bits set: {b0:#x}");
        assert_eq!(b1 & 0x80, 0, "a server frame is never masked");
        let opcode = b0 & 0x0f;
        assert!(
            matches!(opcode, 0x0 | 0x1 | 0x2 | 0x8 | 0x9 | 0xa),
            "unknown opcode {opcode:#x}: the parser is inside a frame"
        );
        let (len, head) = match b1 & 0x7f {
            126 => {
                assert!(self.fill(4).await);
                (
                    usize::from(u16::from_be_bytes([self.buf[2], self.buf[3]])),
                    4,
                )
            }
            127 => {
                assert!(self.fill(10).await);
                let mut n = [0u8; 8];
                n.copy_from_slice(&self.buf[2..10]);
                (usize::try_from(u64::from_be_bytes(n)).unwrap(), 10)
            }
            n => (usize::from(n), 2),
        };
        if opcode >= 0x8 {
            assert!(
                b0 & 0x80 != 0 && len <= 125,
                "a control frame is final and short"
            );
        }
        assert!(
            self.fill(head + len).await,
            "the stream ended inside a frame"
        );
        let payload = self.buf[head..head + len].to_vec();
        self.buf.drain(..head + len);
        Some(Frame {
            fin: b0 & 0x80 != 0,
            opcode,
            payload,
        })
    }
}

impl Reader {
    /// Reads until `upto` events have arrived, checking they come in order from
    /// `next_seq` on (control frames aside).
    async fn events_upto(&mut self, next_seq: &mut u64, upto: u64) {
        while *next_seq < upto {
            let frame = within("data", self.next()).await.expect("open");
            if frame.opcode == 0x1 {
                assert_eq!(seq_of(&frame.payload), *next_seq, "in order, once each");
                *next_seq += 1;
            }
        }
    }

    /// Reads events (in order from `next_seq`, no gap) and control frames up to the
    /// close frame; returns it.
    async fn until_close(&mut self, next_seq: &mut u64) -> Frame {
        within("the close frame", async {
            loop {
                let frame = self.next().await.expect("a close frame before the end");
                match frame.opcode {
                    0x1 => {
                        assert_eq!(seq_of(&frame.payload), *next_seq, "no gap before the close");
                        *next_seq += 1;
                    }
                    0x8 => break frame,
                    0x9 | 0xa => {}
                    other => panic!("unexpected opcode {other:#x}"),
                }
            }
        })
        .await
    }
}

/// A masked client frame.
fn client_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    assert!(payload.len() <= 125);
    let mask = [0x37u8, 0xfa, 0x21, 0x3d];
    let mut frame = vec![0x80 | opcode, 0x80 | payload.len() as u8];
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    frame
}

/// Connects with a hand-written upgrade request; the bytes after the response
/// stay in the reader.
async fn connect(addr: SocketAddr) -> (Reader, OwnedWriteHalf) {
    let tcp = within("TCP connect", TcpStream::connect(addr))
        .await
        .expect("connect");
    let (read, mut write) = tcp.into_split();
    let request = format!(
        "GET / HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    write.write_all(request.as_bytes()).await.expect("request");
    let mut reader = Reader {
        read,
        buf: Vec::new(),
    };
    let end = within("the handshake response", async {
        loop {
            if let Some(at) = reader.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            let have = reader.buf.len();
            assert!(reader.fill(have + 1).await, "closed during the handshake");
        }
    })
    .await;
    let response = String::from_utf8_lossy(&reader.buf[..end]).to_string();
    assert!(response.starts_with("HTTP/1.1 101"), "{response}");
    reader.buf.drain(..end);
    (reader, write)
}

/// Event `seq` of `bytes` bytes or so.
fn event(seq: u64, bytes: usize) -> Event {
    Event::new(EventType::TextMessageContent)
        .with("messageId", "m")
        .with("seq", seq)
        .with("delta", "x".repeat(bytes))
}

fn seq_of(payload: &[u8]) -> u64 {
    let text = std::str::from_utf8(payload).expect("a text frame is UTF-8");
    let event = Event::parse(text).expect("an event");
    event.get("seq").and_then(|v| v.as_u64()).expect("seq")
}

fn roomy_config() -> ServerConfig {
    let mut config = fast_config();
    let outbound = &mut config.connection.outbound;
    outbound.capacity = 100_000;
    outbound.hard_limit_bytes = 256 << 20;
    outbound.soft_limit_bytes = 128 << 20;
    config
}

async fn one_client(config: ServerConfig) -> (Server, Reader, OwnedWriteHalf) {
    let (server, mut conns) = serve(Server::builder(config)).await;
    let (reader, write) = connect(server.local_addr()).await;
    let _conn = next_conn(&mut conns).await;
    (server, reader, write)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pings_during_large_batches_are_answered_between_whole_frames() {
    const EVENTS: u64 = 600;
    const PINGS: u8 = 60;
    let (server, mut reader, mut write) = one_client(roomy_config()).await;
    // Small and large events (the large ones take several writes each), all
    // published before the client reads: the writer has long batches to write.
    for seq in 0..EVENTS {
        let bytes = if seq % 3 == 0 { 40 << 10 } else { 100 };
        server.broadcast(&event(seq, bytes)).await;
    }
    let pinger = tokio::spawn(async move {
        for i in 0..PINGS {
            write
                .write_all(&client_frame(0x9, &[i, 0xab, i]))
                .await
                .expect("ping");
            tokio::task::yield_now().await;
        }
        write
    });
    let (mut next_seq, mut pongs) = (0u64, 0u8);
    within("every event and every pong", async {
        while next_seq < EVENTS || pongs < PINGS {
            let frame = reader
                .next()
                .await
                .expect("the server keeps the socket open");
            assert!(frame.fin, "events go out as single frames");
            match frame.opcode {
                0x1 => {
                    assert_eq!(seq_of(&frame.payload), next_seq, "in order, once each");
                    next_seq += 1;
                }
                // tungstenite keeps only the latest pending pong: some pings may be
                // answered by a later pong, never out of order.
                0xa => {
                    let [i, 0xab, j] = frame.payload[..] else {
                        panic!("pong payload {:?}", frame.payload)
                    };
                    assert_eq!(i, j);
                    assert!(i >= pongs, "pongs in order");
                    pongs = i + 1;
                }
                0x9 => {}
                other => panic!("unexpected opcode {other:#x}"),
            }
        }
    })
    .await;
    assert_eq!(next_seq, EVENTS);
    let _ = pinger.await;
    server.shutdown().await;
}

/// Keeps broadcasting until stopped.
fn publisher(server: &Arc<Server>, stop: &Arc<AtomicBool>) -> tokio::task::JoinHandle<u64> {
    let server = Arc::clone(server);
    let stop = Arc::clone(stop);
    tokio::spawn(async move {
        let mut seq = 0;
        while !stop.load(Ordering::Relaxed) {
            let bytes = if seq % 5 == 0 { 8 << 10 } else { 120 };
            server.broadcast(&event(seq, bytes)).await;
            seq += 1;
        }
        seq
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_peers_close_under_load_gets_one_reply_and_nothing_after_it() {
    let (server, mut conns) = serve(Server::builder(roomy_config())).await;
    let server = Arc::new(server);
    let (mut reader, mut write) = connect(server.local_addr()).await;
    let conn = next_conn(&mut conns).await;
    let stop = Arc::new(AtomicBool::new(false));
    let publishing = publisher(&server, &stop);
    // Read a while, so the writer is mid-burst, then close.
    let mut next_seq = 0;
    reader.events_upto(&mut next_seq, 300).await;
    write
        .write_all(&client_frame(0x8, &1000u16.to_be_bytes()))
        .await
        .expect("close");
    let close = reader.until_close(&mut next_seq).await;
    assert_eq!(
        &close.payload[..2],
        &1000u16.to_be_bytes(),
        "the code is echoed"
    );
    let after = within("the end of the stream", reader.next()).await;
    assert!(after.is_none(), "nothing after the close reply: {after:?}");
    let reason = within("the connection's end", conn.closed()).await;
    assert!(
        matches!(reason, CloseReason::Remote { code: 1000, .. }),
        "{reason:?}"
    );
    stop.store(true, Ordering::Relaxed);
    assert!(publishing.await.expect("publisher") > 300);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_close_under_load_is_the_last_frame_and_the_handshake_completes() {
    let (server, mut conns) = serve(Server::builder(roomy_config())).await;
    let server = Arc::new(server);
    let (mut reader, mut write) = connect(server.local_addr()).await;
    let conn = next_conn(&mut conns).await;
    let stop = Arc::new(AtomicBool::new(false));
    let publishing = publisher(&server, &stop);
    let mut next_seq = 0;
    reader.events_upto(&mut next_seq, 300).await;
    conn.close(CloseReason::Shutdown);
    let close = reader.until_close(&mut next_seq).await;
    assert_eq!(&close.payload[..2], &1001u16.to_be_bytes());
    // Reply: the server completes the handshake and ends the stream.
    write
        .write_all(&client_frame(0x8, &close.payload[..2]))
        .await
        .expect("close reply");
    let after = within("the end of the stream", reader.next()).await;
    assert!(after.is_none(), "nothing after the close frame: {after:?}");
    assert_eq!(
        within("the end", conn.closed()).await,
        CloseReason::Shutdown
    );
    assert!(conn.metrics().close_handshake, "both close frames went out");
    stop.store(true, Ordering::Relaxed);
    let _ = publishing.await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_close_from_a_peer_that_does_not_read_stops_the_staged_frames() {
    // The client does not read: the writer's socket fills with frames still staged.
    // The peer's close reply then goes out at the next frame boundary, and the rest
    // of what is staged never does.
    let (server, mut reader, mut write) = one_client(roomy_config()).await;
    for seq in 0..400 {
        server.broadcast(&event(seq, 40 << 10)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    write
        .write_all(&client_frame(0x8, &1000u16.to_be_bytes()))
        .await
        .expect("close");
    let mut next_seq = 0;
    reader.until_close(&mut next_seq).await;
    let after = within("the end of the stream", reader.next()).await;
    assert!(after.is_none(), "nothing after the close reply: {after:?}");
    assert!(next_seq < 400, "the close cut the backlog short");
    server.shutdown().await;
}
