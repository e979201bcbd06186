//! `GET /metrics` over std's `TcpListener`: a deliberately small HTTP/1.x responder
//! (one request per connection, `Connection: close`), enough for Prometheus and
//! `curl`, with no HTTP crate.
//!
//! Requests come from the network, so nothing in them can panic the server: the head
//! is read into a fixed 8 KiB buffer under one deadline for the whole head, parsed
//! into a typed [`RequestError`] when it is not HTTP, and answered with `400`, `404`,
//! `405` or `431`.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::string::{String, ToString};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};
use std::vec::Vec;

use prometheus_client::encoding::{prometheus_text, text};
use prometheus_client::registry::Registry;

use crate::sync::blocking::AtomicBool;
use crate::sync::Ordering;

/// The longest request head accepted (request line and headers).
const MAX_HEAD: usize = 8 * 1024;
/// How long a client may take to send its request head, and to take the response.
const DEADLINE: Duration = Duration::from_secs(5);
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What is wrong with a request head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RequestError {
    /// No end of the head within [`MAX_HEAD`] bytes.
    HeadTooLarge,
    /// The client closed the connection in the middle of the head.
    Truncated,
    /// The head is not UTF-8.
    NotUtf8,
    /// The request line is not `METHOD SP TARGET SP VERSION`.
    RequestLine,
    /// The version is not `HTTP/1.0` or `HTTP/1.1`.
    Version,
    /// The target is not a path (`/...`).
    Target,
    /// A header line without a `name:`.
    Header,
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::HeadTooLarge => "request head larger than 8 KiB",
            Self::Truncated => "connection closed inside the request head",
            Self::NotUtf8 => "request head is not UTF-8",
            Self::RequestLine => "malformed request line",
            Self::Version => "unsupported HTTP version",
            Self::Target => "request target is not a path",
            Self::Header => "malformed header line",
        })
    }
}

impl std::error::Error for RequestError {}

/// The parts of a request this server looks at.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Request<'a> {
    method: &'a str,
    /// The target without its query.
    path: &'a str,
    /// Whether an `Accept` header asks for OpenMetrics.
    openmetrics: bool,
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Parses a request head (everything before the blank line).
pub(crate) fn parse_head(head: &[u8]) -> Result<Request<'_>, RequestError> {
    let head = core::str::from_utf8(head).map_err(|_| RequestError::NotUtf8)?;
    let mut lines = head.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let line = lines.next().unwrap_or("");
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(RequestError::RequestLine);
    };
    if !is_token(method) {
        return Err(RequestError::RequestLine);
    }
    if version != "HTTP/1.1" && version != "HTTP/1.0" {
        return Err(RequestError::Version);
    }
    if !target.starts_with('/') {
        return Err(RequestError::Target);
    }
    let path = target.split_once('?').map_or(target, |(path, _)| path);
    let mut openmetrics = false;
    for line in lines.filter(|l| !l.is_empty()) {
        let (name, value) = line.split_once(':').ok_or(RequestError::Header)?;
        if !is_token(name) {
            return Err(RequestError::Header);
        }
        if name.eq_ignore_ascii_case("accept") {
            openmetrics |= value
                .to_ascii_lowercase()
                .contains("application/openmetrics-text");
        }
    }
    Ok(Request {
        method,
        path,
        openmetrics,
    })
}

/// The end of the head in `buf` (the index of the blank line's last byte + 1).
fn head_end(buf: &[u8]) -> Option<(usize, usize)> {
    // `\n\n` as well as `\r\n\r\n`: RFC 9112 lets a server accept bare LF.
    let lf = buf
        .windows(2)
        .position(|w| w == b"\n\n")
        .map(|i| (i, i + 2));
    let crlf = buf
        .windows(3)
        .position(|w| w == b"\n\r\n")
        .map(|i| (i, i + 3));
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
        (a, b) => a.or(b),
    }
}

enum ReadError {
    /// The client closed without sending a byte (a health check, a port probe).
    Closed,
    Request(RequestError),
    Io(io::Error),
}

/// Reads a request head into `buf`; returns its length (without the blank line).
fn read_head(stream: &mut TcpStream, buf: &mut [u8; MAX_HEAD]) -> Result<usize, ReadError> {
    let deadline = Instant::now() + DEADLINE;
    let mut filled = 0;
    loop {
        if let Some((end, _)) = head_end(&buf[..filled]) {
            return Ok(end);
        }
        if filled == buf.len() {
            return Err(ReadError::Request(RequestError::HeadTooLarge));
        }
        // One deadline for the whole head: a client trickling a byte at a time
        // cannot hold the (single-threaded) server for longer.
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(ReadError::Io(io::ErrorKind::TimedOut.into()));
        }
        stream.set_read_timeout(Some(left)).map_err(ReadError::Io)?;
        match stream.read(&mut buf[filled..]) {
            Ok(0) if filled == 0 => return Err(ReadError::Closed),
            Ok(0) => return Err(ReadError::Request(RequestError::Truncated)),
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(ReadError::Io(e)),
        }
    }
}

fn respond(
    stream: &mut TcpStream,
    status: u16,
    reason: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    send_body: bool,
) -> io::Result<()> {
    let mut head = std::format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(name);
        head.push_str(": ");
        head.push_str(value);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    let mut response = Vec::with_capacity(head.len() + body.len());
    response.extend_from_slice(head.as_bytes());
    if send_body {
        response.extend_from_slice(body);
    }
    stream.set_write_timeout(Some(DEADLINE))?;
    stream.write_all(&response)?;
    stream.flush()
}

fn error_response(
    stream: &mut TcpStream,
    status: u16,
    reason: &str,
    detail: &str,
) -> io::Result<()> {
    let body = std::format!("{reason}: {detail}\n");
    let text = [("Content-Type", "text/plain; charset=utf-8")];
    respond(stream, status, reason, &text, body.as_bytes(), true)
}

/// Closes after the response without resetting it away: unread request bytes in
/// the socket would make the kernel send a reset, which may discard the response
/// before the client read it. So: half-close, then drain briefly.
fn close_gracefully(mut stream: TcpStream) {
    let _ = stream.shutdown(Shutdown::Write);
    let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
    let mut sink = [0u8; 1024];
    for _ in 0..64 {
        match stream.read(&mut sink) {
            Ok(n) if n > 0 => {}
            _ => break,
        }
    }
}

/// Answers one HTTP/1.x request on `stream`, then closes it: `GET` or `HEAD
/// /metrics` gets `registry` encoded in the OpenMetrics text format if the `Accept`
/// header asks for it, else in the Prometheus text format 0.0.4. Any other path is
/// `404`, any other method `405`, a request that is not HTTP `400`, a head over
/// 8 KiB `431`.
///
/// For programs with an accept loop of their own; [`MetricsServer`] runs one.
///
/// Returns the status sent, or `None` if the client closed the connection without
/// sending anything.
///
/// # Errors
///
/// Whatever the socket returns, including a timeout if the client takes longer than
/// 5 s to send its request head.
///
/// # Examples
///
/// ```no_run
/// use std::net::TcpListener;
/// use membound::export::prometheus::{serve_connection, Exporter};
/// use prometheus_client::registry::Registry;
///
/// let mut registry = Registry::default();
/// let _exporter = Exporter::register(&mut registry);
/// let listener = TcpListener::bind("127.0.0.1:9898")?;
/// for stream in listener.incoming() {
///     let _ = serve_connection(stream?, &registry); // a bad client affects only itself
/// }
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn serve_connection(mut stream: TcpStream, registry: &Registry) -> io::Result<Option<u16>> {
    let mut buf = [0u8; MAX_HEAD];
    let status = match read_head(&mut stream, &mut buf) {
        Err(ReadError::Closed) => return Ok(None),
        Err(ReadError::Io(e)) => return Err(e),
        Err(ReadError::Request(RequestError::HeadTooLarge)) => {
            let detail = RequestError::HeadTooLarge.to_string();
            error_response(&mut stream, 431, "Request Header Fields Too Large", &detail)?;
            431
        }
        Err(ReadError::Request(e)) => {
            error_response(&mut stream, 400, "Bad Request", &e.to_string())?;
            400
        }
        Ok(len) => match parse_head(&buf[..len]) {
            Err(e) => {
                error_response(&mut stream, 400, "Bad Request", &e.to_string())?;
                400
            }
            Ok(request) => answer(&mut stream, &request, registry)?,
        },
    };
    close_gracefully(stream);
    Ok(Some(status))
}

fn answer(stream: &mut TcpStream, request: &Request<'_>, registry: &Registry) -> io::Result<u16> {
    let head_only = match request.method {
        "GET" => false,
        "HEAD" => true,
        _ => {
            let allow = [
                ("Allow", "GET, HEAD"),
                ("Content-Type", "text/plain; charset=utf-8"),
            ];
            respond(
                stream,
                405,
                "Method Not Allowed",
                &allow,
                b"only GET and HEAD\n",
                true,
            )?;
            return Ok(405);
        }
    };
    if request.path != "/metrics" {
        error_response(stream, 404, "Not Found", "metrics are at /metrics")?;
        return Ok(404);
    }
    let mut body = String::new();
    let (encoded, content_type) = if request.openmetrics {
        (text::encode(&mut body, registry), OPENMETRICS)
    } else {
        (
            prometheus_text::encode(&mut body, registry),
            PROMETHEUS_TEXT,
        )
    };
    if encoded.is_err() {
        error_response(stream, 500, "Internal Server Error", "encoding failed")?;
        return Ok(500);
    }
    let headers = [("Content-Type", content_type)];
    respond(stream, 200, "OK", &headers, body.as_bytes(), !head_only)?;
    Ok(200)
}

/// Serves a [`Registry`] at `/metrics` on a thread of its own until shut down
/// (explicitly or by dropping it). Connections are answered one at a time by
/// [`serve_connection`]; a client is given 5 s to send its request.
///
/// # Examples
///
/// ```
/// use std::io::{Read, Write};
/// use std::net::{TcpListener, TcpStream};
/// use std::sync::Arc;
/// use membound::export::prometheus::{Exporter, MetricsServer};
/// use membound::ring::Ring;
/// use prometheus_client::registry::Registry;
///
/// let mut registry = Registry::default();
/// let exporter = Exporter::register(&mut registry);
/// let events = Arc::new(Ring::<u32>::new(8)?);
/// exporter.add("events", &events, Ring::metrics)?;
///
/// let server = MetricsServer::spawn(TcpListener::bind("127.0.0.1:0")?, Arc::new(registry))?;
/// let mut client = TcpStream::connect(server.local_addr())?;
/// client.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n")?;
/// let mut response = String::new();
/// client.read_to_string(&mut response)?;
/// assert!(response.starts_with("HTTP/1.1 200 OK\r\n"));
/// assert!(response.contains("membound_ring_capacity{ring=\"events\"} 8\n"));
/// server.shutdown();
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct MetricsServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl MetricsServer {
    /// Starts serving `registry` on `listener` (bind it to port 0 for any free port,
    /// then ask [`local_addr`](Self::local_addr)).
    ///
    /// # Errors
    ///
    /// If the listener's address cannot be read or the thread cannot be spawned.
    pub fn spawn(listener: TcpListener, registry: Arc<Registry>) -> io::Result<Self> {
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = thread::Builder::new()
            .name(String::from("membound-metrics"))
            .spawn(move || accept_loop(&listener, &registry, &flag))?;
        Ok(Self {
            addr,
            stop,
            thread: Some(thread),
        })
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting connections and waits for the serving thread to finish the
    /// connection in hand.
    pub fn shutdown(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        let Some(thread) = self.thread.take() else {
            return;
        };
        // Release pairs with the accept loop's Acquire: it sees the flag once the
        // wake-up connection below gets it out of `accept`.
        self.stop.store(true, Ordering::Release);
        let mut wake = self.addr;
        if wake.ip().is_unspecified() {
            let loopback = match wake {
                SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
            };
            wake.set_ip(loopback);
        }
        // If the wake-up cannot connect, the thread stays blocked in `accept`;
        // joining it would hang, so it is left to end with the process.
        if TcpStream::connect_timeout(&wake, DEADLINE).is_ok() {
            let _ = thread.join();
        }
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

fn accept_loop(listener: &TcpListener, registry: &Registry, stop: &AtomicBool) {
    for stream in listener.incoming() {
        if stop.load(Ordering::Acquire) {
            return;
        }
        match stream {
            // One client's failure (a timeout, a reset) is its own.
            Ok(stream) => {
                let _ = serve_connection(stream, registry);
            }
            // Out of descriptors and the like: back off instead of spinning.
            Err(_) => thread::sleep(Duration::from_millis(10)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_scrape_request() {
        let head = b"GET /metrics?name[]=x HTTP/1.1\r\nHost: a\r\nAccept: application/openmetrics-text;version=1.0.0,text/plain;q=0.5";
        assert_eq!(
            parse_head(head),
            Ok(Request {
                method: "GET",
                path: "/metrics",
                openmetrics: true,
            })
        );
        let plain = parse_head(b"HEAD /metrics HTTP/1.0\nAccept: */*").unwrap();
        assert_eq!((plain.method, plain.openmetrics), ("HEAD", false));
    }

    #[test]
    fn rejects_what_is_not_http() {
        let cases: [(&[u8], RequestError); 9] = [
            (b"", RequestError::RequestLine),
            (b"GET /metrics", RequestError::RequestLine),
            (b"GET  /metrics HTTP/1.1", RequestError::RequestLine),
            (b"GET /metrics HTTP/1.1 extra", RequestError::RequestLine),
            (b"G(T /metrics HTTP/1.1", RequestError::RequestLine),
            (b"GET /metrics HTTP/2.0", RequestError::Version),
            (b"GET metrics HTTP/1.1", RequestError::Target),
            (
                b"GET /metrics HTTP/1.1\r\nno colon here",
                RequestError::Header,
            ),
            (b"GET /\xff HTTP/1.1", RequestError::NotUtf8),
        ];
        for (head, error) in cases {
            assert_eq!(
                parse_head(head),
                Err(error),
                "{:?}",
                String::from_utf8_lossy(head)
            );
        }
    }

    #[test]
    fn finds_the_end_of_the_head() {
        assert_eq!(
            head_end(b"GET / HTTP/1.1\r\nA: b\r\n\r\nbody"),
            Some((21, 24))
        );
        assert_eq!(head_end(b"GET / HTTP/1.1\n\n"), Some((14, 16)));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nA: b\r\n"), None);
    }
}
