//! Helpers of the WebSocket transport's end-to-end tests: servers with short timeouts
//! on loopback, plain tokio-tungstenite clients (one with a tiny receive buffer, to
//! stall), and waits that are bounded so a broken test fails instead of hanging.
#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use membound::adapters::ws::{ClientState, Connection, Event, Server, ServerBuilder, ServerConfig};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// The safety net of every wait: far above what any step needs on a loaded machine.
pub const LIMIT: Duration = Duration::from_secs(20);

/// Awaits `fut` within [`LIMIT`], failing the test with `what` otherwise.
pub async fn within<F: Future>(what: &str, fut: F) -> F::Output {
    match tokio::time::timeout(LIMIT, fut).await {
        Ok(out) => out,
        Err(_) => panic!("timed out waiting for {what}"),
    }
}

/// A server configuration with timeouts short enough for tests on real loopback.
pub fn fast_config() -> ServerConfig {
    let mut config = ServerConfig::default();
    let conn = &mut config.connection;
    conn.keepalive_interval = Duration::from_secs(5);
    conn.idle_timeout = Duration::from_secs(15);
    conn.close_timeout = Duration::from_secs(3);
    conn.write_timeout = Duration::from_secs(30);
    conn.outbound.lossless_timeout = Duration::from_millis(300);
    config.shutdown_timeout = Duration::from_secs(5);
    config
}

/// A server whose admitted connections arrive on the returned channel.
pub async fn serve(builder: ServerBuilder<'_>) -> (Server, mpsc::UnboundedReceiver<Connection>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let server = builder
        .on_connect(move |conn| {
            let _ = tx.send(conn);
        })
        .bind()
        .await
        .expect("server binds on loopback");
    (server, rx)
}

/// The next admitted connection.
pub async fn next_conn(rx: &mut mpsc::UnboundedReceiver<Connection>) -> Connection {
    within("a connection to be admitted", rx.recv())
        .await
        .expect("server is running")
}

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;
pub type RawWs = WebSocketStream<TcpStream>;

pub fn url(addr: SocketAddr) -> String {
    format!("ws://{addr}/")
}

/// A plain tokio-tungstenite client.
pub async fn client(addr: SocketAddr) -> Ws {
    let (ws, _) = within("the handshake", tokio_tungstenite::connect_async(url(addr)))
        .await
        .expect("handshake succeeds");
    ws
}

/// A client whose socket receive buffer is as small as the kernel allows, so a
/// client that does not read stalls the server's writes after a few kilobytes.
pub async fn stalled_client(addr: SocketAddr) -> RawWs {
    let socket = TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    let tcp = within("TCP connect", socket.connect(addr))
        .await
        .expect("connect");
    let (ws, _) = within(
        "the handshake",
        tokio_tungstenite::client_async(url(addr), tcp),
    )
    .await
    .expect("handshake succeeds");
    ws
}

/// What a client read, control frames aside.
#[derive(Debug)]
pub enum Got {
    Event(Event),
    Close(u16, String),
    /// The stream ended (after a close frame: the handshake is over).
    End,
    Error(String),
}

/// Reads the next event or close frame, skipping pings and pongs (all within one
/// [`LIMIT`], so keepalive pings cannot keep a broken test waiting).
pub async fn next_got<S>(ws: &mut WebSocketStream<S>) -> Got
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    within("a message", async {
        loop {
            match ws.next().await {
                None => return Got::End,
                Some(Err(e)) => return Got::Error(e.to_string()),
                Some(Ok(Message::Text(text))) => {
                    return Got::Event(Event::parse(&text).expect("the server sends events"))
                }
                Some(Ok(Message::Close(frame))) => {
                    return match frame {
                        Some(f) => Got::Close(u16::from(f.code), f.reason.to_string()),
                        None => Got::Close(1005, String::new()),
                    }
                }
                Some(Ok(_)) => {}
            }
        }
    })
    .await
}

/// Reads the next message, which must be an event.
pub async fn next_event<S>(ws: &mut WebSocketStream<S>) -> Event
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    match next_got(ws).await {
        Got::Event(e) => e,
        other => panic!("expected an event, got {other:?}"),
    }
}

/// Reads events until the close frame; returns the events and the close code and
/// reason, and checks that the stream then ends cleanly (the close handshake).
pub async fn read_to_close<S>(ws: &mut WebSocketStream<S>) -> (Vec<Event>, u16, String)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut events = Vec::new();
    loop {
        match next_got(ws).await {
            Got::Event(e) => events.push(e),
            Got::Close(code, reason) => {
                let end = next_got(ws).await;
                assert!(matches!(end, Got::End), "after the close frame: {end:?}");
                return (events, code, reason);
            }
            other => panic!("expected events and a close frame, got {other:?}"),
        }
    }
}

pub async fn send_text<S>(ws: &mut WebSocketStream<S>, text: &str)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    within("a send", ws.send(Message::Text(Utf8Bytes::from(text))))
        .await
        .expect("send");
}

/// Waits until `cond` holds, checking at short intervals: for counters that change
/// on another task without an event to wait on (metrics).
pub async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    within(what, async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
}

/// Reads a server's frames from the raw socket of `ws` without ever answering
/// anything (a silent peer: no pongs, no close reply), until the server's close frame.
/// Returns the opcodes seen (`0x9` ping, `0x1` text, ...) and the close code.
pub async fn read_silently_until_close(ws: RawWs) -> (Vec<u8>, u16) {
    let tcp = ws.into_inner();
    let mut buf: Vec<u8> = Vec::new();
    let mut opcodes = Vec::new();
    within("the server's close frame", async {
        loop {
            // Parse every complete frame in `buf` (server frames are not masked).
            loop {
                if buf.len() < 2 {
                    break;
                }
                let opcode = buf[0] & 0x0f;
                let (len, header) = match buf[1] & 0x7f {
                    126 if buf.len() >= 4 => (u16::from_be_bytes([buf[2], buf[3]]) as usize, 4),
                    127 if buf.len() >= 10 => {
                        let mut b = [0u8; 8];
                        b.copy_from_slice(&buf[2..10]);
                        (u64::from_be_bytes(b) as usize, 10)
                    }
                    126 | 127 => break,
                    n => (n as usize, 2),
                };
                if buf.len() < header + len {
                    break;
                }
                opcodes.push(opcode);
                if opcode == 0x8 {
                    let p = &buf[header..header + len];
                    let code = if p.len() >= 2 {
                        u16::from_be_bytes([p[0], p[1]])
                    } else {
                        1005
                    };
                    return (opcodes.clone(), code);
                }
                buf.drain(..header + len);
            }
            tcp.readable().await.expect("readable");
            let mut chunk = [0u8; 4096];
            match tcp.try_read(&mut chunk) {
                Ok(0) => panic!("the server closed without a close frame"),
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("read: {e}"),
            }
        }
    })
    .await
}

/// Waits until the client's state satisfies `pred`; returns that state.
pub async fn state_where(
    rx: &mut watch::Receiver<ClientState>,
    pred: impl FnMut(&ClientState) -> bool,
) -> ClientState {
    within("a client state", rx.wait_for(pred))
        .await
        .expect("client alive")
        .clone()
}
