//! The client: connects to a URL under a dial timeout, runs the same connection core
//! as the server, and reconnects after a loss with exponential backoff and jitter, a
//! bounded number of times; a connection that ends within the policy's
//! `stable_after` counts as a failed attempt, so a server that accepts and then fails
//! does not reset the count. Handlers and subscriptions belong to the client, not to
//! one connection, so they survive reconnects.

use core::time::Duration;
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::io;
use std::net::SocketAddr;
use std::prelude::rust_2021::*;
// `tokio::select!` expands to `panic!`, which the prelude glob and the crate's
// `no_std` prelude both provide; an explicit import settles which.
#[allow(unused_imports)]
use core::panic;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::{self, client::IntoClientRequest};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::conn::{self, drive, next_conn_id, Core, CoreParts, Flag, LastEventId};
use super::{
    ClientConfig, CloseReason, ConnId, Connection, ConnectionMetrics, Event, EventSubscription,
    EventType, HandlerId, Inbound, InboundError, OfferError, Offered, Outbound, RawMessage,
    ReconnectPolicy, WsConfigError,
};
use crate::clock::{Clock, MonotonicClock};
use crate::sync::{AtomicU64, Ordering};

/// Why a client could not connect.
#[derive(Debug)]
#[non_exhaustive]
pub enum ConnectError {
    /// The configuration cannot work.
    Config(WsConfigError),
    /// The URL is not a `ws://` URL the client can use (`wss://` needs TLS, which
    /// this build does not include).
    Url(tungstenite::Error),
    /// The TCP connection failed.
    Io(io::Error),
    /// The WebSocket handshake failed (an HTTP error, a protocol error).
    Handshake(tungstenite::Error),
    /// Connecting took longer than the dial timeout.
    Timeout(Duration),
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Config(e) => write!(f, "cannot connect: {e}"),
            Self::Url(e) => write!(f, "cannot connect to this URL: {e}"),
            Self::Io(e) => write!(f, "cannot connect: {e}"),
            Self::Handshake(e) => write!(f, "WebSocket handshake failed: {e}"),
            Self::Timeout(after) => write!(f, "connecting timed out after {after:?}"),
        }
    }
}

impl std::error::Error for ConnectError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Config(e) => Some(e),
            Self::Url(e) | Self::Handshake(e) => Some(e),
            Self::Io(e) => Some(e),
            Self::Timeout(_) => None,
        }
    }
}

impl From<WsConfigError> for ConnectError {
    fn from(e: WsConfigError) -> Self {
        Self::Config(e)
    }
}

/// Where a client stands.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientState {
    /// Connected; the connection's identifier (a new one after each reconnect).
    Connected(ConnId),
    /// The connection ended for `after`; waiting for, or making, reconnection
    /// attempt `attempt` (from 1 to the policy's `max_attempts`).
    Reconnecting {
        /// The attempt under way.
        attempt: u32,
        /// Why the last connection ended.
        after: CloseReason,
    },
    /// Closed by the program ([`Client::close`]); the reason of the last connection.
    Closed(CloseReason),
    /// Every reconnection attempt failed (or the policy allows none).
    GaveUp {
        /// Attempts made.
        attempts: u32,
        /// Why the last connection ended.
        after: CloseReason,
    },
}

impl ClientState {
    /// Whether the client is done: closed, or given up. Handlers and subscriptions
    /// are closed then.
    pub fn is_final(&self) -> bool {
        matches!(self, Self::Closed(_) | Self::GaveUp { .. })
    }
}

/// A client's connection and reconnection figures.
#[derive(Clone, Debug, crate::metrics::Metrics)]
#[metrics(kind = "ws_client")]
#[non_exhaustive]
pub struct ClientMetrics {
    /// The current (or last) connection.
    #[metric(nested(prefix = "conn_"))]
    pub connection: ConnectionMetrics,
    /// Connections made after the first.
    #[metric(counter)]
    pub reconnects: u64,
    /// Reconnection attempts that failed: no connection was made, or it ended
    /// within the policy's [`stable_after`](ReconnectPolicy::stable_after).
    #[metric(counter)]
    pub failed_attempts: u64,
}

/// The delay before reconnection attempt `attempt` (1 for the first): the policy's
/// initial backoff times `multiplier^(attempt - 1)`, capped at `max_backoff`, then
/// reduced by up to the `jitter` fraction: `jitter_sample`, in `0..=1` (a uniform
/// random number in the client), picks where in `[d × (1 − jitter), d]` it falls (0
/// gives `d`).
///
/// A pure function, so a schedule can be checked without waiting.
///
/// # Examples
///
/// ```
/// use core::time::Duration;
/// use membound::adapters::ws::{backoff_delay, ReconnectPolicy};
///
/// let policy = ReconnectPolicy {
///     initial_backoff: Duration::from_millis(100),
///     max_backoff: Duration::from_secs(1),
///     multiplier: 2.0,
///     jitter: 0.5,
///     ..ReconnectPolicy::default()
/// };
/// assert_eq!(backoff_delay(&policy, 1, 0.0), Duration::from_millis(100));
/// assert_eq!(backoff_delay(&policy, 3, 0.0), Duration::from_millis(400));
/// assert_eq!(backoff_delay(&policy, 9, 0.0), Duration::from_secs(1)); // capped
/// assert_eq!(backoff_delay(&policy, 3, 1.0), Duration::from_millis(200)); // half off
/// ```
pub fn backoff_delay(policy: &ReconnectPolicy, attempt: u32, jitter_sample: f64) -> Duration {
    let max = policy.max_backoff.as_secs_f64();
    let steps = i32::try_from(attempt.saturating_sub(1)).unwrap_or(i32::MAX);
    let delay = policy.initial_backoff.as_secs_f64() * policy.multiplier.powi(steps);
    let delay = if delay.is_finite() {
        delay.min(max)
    } else {
        max
    };
    let sample = if jitter_sample.is_nan() {
        0.0
    } else {
        jitter_sample.clamp(0.0, 1.0)
    };
    let jitter = policy.jitter.clamp(0.0, 1.0);
    let delay = delay * (1.0 - jitter * sample);
    Duration::try_from_secs_f64(delay).unwrap_or(policy.max_backoff)
}

/// A small random source for the jitter: splitmix64 seeded from std's per-process
/// random hasher keys. Not for anything that must be unpredictable.
struct Jitter(u64);

impl Jitter {
    fn new() -> Self {
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u64(0x6a09_e667_f3bc_c908);
        Self(hasher.finish())
    }

    /// A uniform sample in `[0, 1)`.
    fn sample(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A WebSocket client with the server's bounded queues, keepalive and close
/// handling, which reconnects after a loss.
///
/// Cloning gives another handle to the same client; dropping the last handle closes
/// it (with [`CloseReason::Normal`]). Events sent while the client is reconnecting
/// fail with [`OfferError::Closed`]; handlers and subscriptions stay registered
/// across reconnects and close when the client closes or gives up.
///
/// Handlers and subscriptions added with [`on`](Self::on) or
/// [`subscribe`](Self::subscribe) see the events that arrive after they were added:
/// an event a server sends as soon as the connection opens may already have been
/// dispatched by the time [`connect`](Self::connect) returns. To see every event,
/// register them on a [`ClientBuilder`] ([`Client::builder`]) before it connects.
///
/// # Examples
///
/// A client and a server on loopback; the server broadcasts one event:
///
/// ```
/// use membound::adapters::ws::{Client, ClientConfig, Event, EventType, Server, ServerConfig};
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let (connected, mut on_connected) = tokio::sync::mpsc::unbounded_channel();
/// let server = Server::builder(ServerConfig::default())
///     .on_connect(move |conn| { let _ = connected.send(conn.id()); })
///     .bind()
///     .await?;
///
/// let url = format!("ws://{}", server.local_addr());
/// let client = Client::connect(&url, ClientConfig::default()).await?;
/// let mut runs = client.subscribe([EventType::RunStarted])?;
/// on_connected.recv().await;
///
/// server.broadcast(&Event::new(EventType::RunStarted).with("runId", "r1")).await;
/// let event = runs.recv().await?;
/// assert_eq!(event.get("runId").unwrap(), "r1");
///
/// client.close(membound::adapters::ws::CloseReason::Normal);
/// client.closed().await;
/// server.shutdown().await;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
#[derive(Clone)]
pub struct Client {
    inner: Arc<ClientInner>,
    /// Shared by the handles only (not by the client's task): when the last handle
    /// goes, the client closes.
    _owner: Arc<Owner>,
}

/// Closes the client when the last [`Client`] handle is dropped.
struct Owner(Arc<ClientInner>);

impl Drop for Owner {
    fn drop(&mut self) {
        self.0.closing.set();
        lock(&self.0.current).close(CloseReason::Normal);
    }
}

struct ClientInner {
    url: String,
    config: ClientConfig,
    inbound: Arc<Inbound>,
    clock: Arc<dyn Clock + Send + Sync>,
    /// The current connection (the last one once the client is done).
    current: Mutex<Connection>,
    state: watch::Sender<ClientState>,
    /// Set by [`Client::close`]: no more reconnects.
    closing: Flag,
    reconnects: AtomicU64,
    failed_attempts: AtomicU64,
    /// The id of the last channel event received, named when reconnecting.
    last_event_id: Arc<LastEventId>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("url", &self.inner.url)
            .field("state", &*self.inner.state.borrow())
            .finish_non_exhaustive()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Client {
    /// Connects to `url` (`ws://host:port/path`) within the dial timeout and starts
    /// the connection. Must be called inside a tokio runtime. The same as
    /// `Client::builder(config)?.connect(url)`, with nothing registered before the
    /// connection opens.
    ///
    /// # Errors
    ///
    /// [`ConnectError`] when the configuration is invalid or the first connection
    /// fails; reconnection only follows a connection that was made.
    pub async fn connect(url: &str, config: ClientConfig) -> Result<Self, ConnectError> {
        Self::builder(config)?.connect(url).await
    }

    /// A builder, to register handlers and subscriptions before the first
    /// connection opens; the client's clock is a [`MonotonicClock`].
    ///
    /// # Errors
    ///
    /// [`WsConfigError`] when the configuration cannot work.
    pub fn builder(config: ClientConfig) -> Result<ClientBuilder, WsConfigError> {
        Self::builder_with_clock(config, Arc::new(MonotonicClock::new()))
    }

    /// [`builder`](Self::builder), with the clock of the queue's soft-limit timer,
    /// the subscriptions' idle TTL and the reconnect policy's
    /// [`stable_after`](ReconnectPolicy::stable_after).
    ///
    /// # Errors
    ///
    /// As [`builder`](Self::builder).
    pub fn builder_with_clock(
        config: ClientConfig,
        clock: Arc<dyn Clock + Send + Sync>,
    ) -> Result<ClientBuilder, WsConfigError> {
        config.validate()?;
        let inbound = Arc::new(Inbound::new(config.connection.inbound, Arc::clone(&clock))?);
        Ok(ClientBuilder {
            config,
            inbound,
            clock,
        })
    }

    /// [`connect`](Self::connect), with the clock of the queue's soft-limit timer,
    /// the subscriptions' idle TTL and the reconnect policy's
    /// [`stable_after`](ReconnectPolicy::stable_after).
    ///
    /// # Errors
    ///
    /// As [`connect`](Self::connect).
    pub async fn connect_with_clock(
        url: &str,
        config: ClientConfig,
        clock: Arc<dyn Clock + Send + Sync>,
    ) -> Result<Self, ConnectError> {
        Self::builder_with_clock(config, clock)?.connect(url).await
    }

    /// The id of the last channel event received ([`EVENT_ID_FIELD`](super::EVENT_ID_FIELD)):
    /// a client whose URL joins a channel (`?channel=...`) names it as `lastEventId`
    /// when it reconnects, and so reads on where it left off.
    pub fn last_event_id(&self) -> Option<String> {
        self.inner.last_event_id.get()
    }

    /// The URL the client connects to.
    pub fn url(&self) -> &str {
        &self.inner.url
    }

    /// Where the client stands now.
    pub fn state(&self) -> ClientState {
        self.inner.state.borrow().clone()
    }

    /// A receiver that sees every change of [`state`](Self::state).
    pub fn watch_state(&self) -> watch::Receiver<ClientState> {
        self.inner.state.subscribe()
    }

    /// The current connection (the last one, once the client is done).
    pub fn connection(&self) -> Connection {
        lock(&self.inner.current).clone()
    }

    /// Queues `event` on the current connection (see [`Connection::send`]).
    ///
    /// # Errors
    ///
    /// [`OfferError`]; `Closed` while the client is reconnecting or done.
    pub async fn send(&self, event: &Event) -> Result<Offered, OfferError> {
        self.connection().send(event).await
    }

    /// Queues `event` on the current connection without waiting (see
    /// [`Connection::try_send`]).
    ///
    /// # Errors
    ///
    /// As [`Connection::try_send`].
    pub fn try_send(&self, event: &Event) -> Result<Offered, OfferError> {
        self.connection().try_send(event)
    }

    /// Calls `handler` with every inbound event of type `kind` that arrives from now
    /// on, on every connection the client makes (see [`ClientBuilder::on`] to
    /// register before the first connection opens).
    ///
    /// # Errors
    ///
    /// [`InboundError`] when the client has as many handlers as allowed, or is done.
    pub fn on<F, Fut>(&self, kind: EventType, handler: F) -> Result<HandlerId, InboundError>
    where
        F: Fn(Event) -> Fut + Send + Sync + 'static,
        Fut: core::future::Future<Output = ()> + Send + 'static,
    {
        self.inner.inbound.on(kind, handler)
    }

    /// Calls `handler` with every inbound event.
    ///
    /// # Errors
    ///
    /// As [`on`](Self::on).
    pub fn on_any<F, Fut>(&self, handler: F) -> Result<HandlerId, InboundError>
    where
        F: Fn(Event) -> Fut + Send + Sync + 'static,
        Fut: core::future::Future<Output = ()> + Send + 'static,
    {
        self.inner.inbound.on_any(handler)
    }

    /// Calls `handler` with every inbound message that is not an event, as it
    /// arrived, when the client's connection is in raw mode
    /// ([`MalformedPolicy::Raw`](super::MalformedPolicy::Raw)); see
    /// [`Inbound::on_raw`].
    ///
    /// # Errors
    ///
    /// As [`on`](Self::on).
    pub fn on_raw<F, Fut>(&self, handler: F) -> Result<HandlerId, InboundError>
    where
        F: Fn(RawMessage) -> Fut + Send + Sync + 'static,
        Fut: core::future::Future<Output = ()> + Send + 'static,
    {
        self.inner.inbound.on_raw(handler)
    }

    /// Removes a handler; `false` if it was not registered.
    pub fn remove_handler(&self, id: HandlerId) -> bool {
        self.inner.inbound.remove_handler(id)
    }

    /// Subscribes to inbound events of the given types (all types when empty) that
    /// arrive from now on (see [`ClientBuilder::subscribe`] to subscribe before the
    /// first connection opens).
    ///
    /// # Errors
    ///
    /// [`InboundError`] when the client has as many subscriptions as allowed, or is
    /// done.
    pub fn subscribe(
        &self,
        kinds: impl IntoIterator<Item = EventType>,
    ) -> Result<EventSubscription, InboundError> {
        self.inner.inbound.subscribe(kinds)
    }

    /// Closes the client: the current connection closes with `reason` (with
    /// [`CloseReason::Normal`], what is queued is sent first) and no reconnection
    /// follows.
    pub fn close(&self, reason: CloseReason) {
        self.inner.closing.set();
        self.connection().close(reason);
    }

    /// Waits until the client is done ([`ClientState::Closed`] or
    /// [`ClientState::GaveUp`]) and returns that state.
    pub async fn closed(&self) -> ClientState {
        let mut rx = self.inner.state.subscribe();
        let state = match rx.wait_for(ClientState::is_final).await {
            Ok(state) => state.clone(),
            Err(_) => self.state(),
        };
        state
    }

    /// The current connection's metrics and the reconnection counts.
    pub fn metrics(&self) -> ClientMetrics {
        ClientMetrics {
            connection: self.connection().metrics(),
            reconnects: self.inner.reconnects.load(Ordering::Relaxed),
            failed_attempts: self.inner.failed_attempts.load(Ordering::Relaxed),
        }
    }
}

/// Builds a [`Client`] whose handlers and subscriptions are registered before its
/// first connection opens, so they see every event the server sends, the first one
/// included. Made by [`Client::builder`].
///
/// What is registered here belongs to the client, as with [`Client::on`]: it stays
/// registered across reconnects, and closes when the client closes or gives up, or
/// when [`connect`](Self::connect) fails (the builder is consumed then).
///
/// # Examples
///
/// A server that greets each connection at once; the client sees the greeting:
///
/// ```
/// use membound::adapters::ws::{Client, ClientConfig, CloseReason, Event, EventType, Server, ServerConfig};
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let server = Server::builder(ServerConfig::default())
///     .on_connect(|conn| { let _ = conn.try_send(&Event::new(EventType::RunStarted)); })
///     .bind()
///     .await?;
///
/// let builder = Client::builder(ClientConfig::default())?;
/// let runs = builder.subscribe([EventType::RunStarted])?;
/// let client = builder.connect(&format!("ws://{}", server.local_addr())).await?;
/// assert_eq!(runs.recv().await?.kind(), &EventType::RunStarted);
///
/// client.close(CloseReason::Normal);
/// client.closed().await;
/// server.shutdown().await;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
#[must_use = "a builder does nothing until `connect` is called"]
pub struct ClientBuilder {
    config: ClientConfig,
    inbound: Arc<Inbound>,
    clock: Arc<dyn Clock + Send + Sync>,
}

impl fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("config", &self.config)
            .field("handlers", &self.inbound.handler_count())
            .field("subscriptions", &self.inbound.subscription_count())
            .finish_non_exhaustive()
    }
}

impl ClientBuilder {
    /// Calls `handler` with every inbound event of type `kind`, from the first
    /// connection on (see [`Client::on`]).
    ///
    /// # Errors
    ///
    /// [`InboundError::TooManyHandlers`] when the client has as many handlers as
    /// allowed.
    pub fn on<F, Fut>(&self, kind: EventType, handler: F) -> Result<HandlerId, InboundError>
    where
        F: Fn(Event) -> Fut + Send + Sync + 'static,
        Fut: core::future::Future<Output = ()> + Send + 'static,
    {
        self.inbound.on(kind, handler)
    }

    /// Calls `handler` with every inbound event, from the first connection on.
    ///
    /// # Errors
    ///
    /// As [`on`](Self::on).
    pub fn on_any<F, Fut>(&self, handler: F) -> Result<HandlerId, InboundError>
    where
        F: Fn(Event) -> Fut + Send + Sync + 'static,
        Fut: core::future::Future<Output = ()> + Send + 'static,
    {
        self.inbound.on_any(handler)
    }

    /// Calls `handler` with every inbound message that is not an event, from the
    /// first connection on (see [`Client::on_raw`]).
    ///
    /// # Errors
    ///
    /// As [`on`](Self::on).
    pub fn on_raw<F, Fut>(&self, handler: F) -> Result<HandlerId, InboundError>
    where
        F: Fn(RawMessage) -> Fut + Send + Sync + 'static,
        Fut: core::future::Future<Output = ()> + Send + 'static,
    {
        self.inbound.on_raw(handler)
    }

    /// Subscribes to inbound events of the given types (all types when empty), from
    /// the first connection on (see [`Client::subscribe`]).
    ///
    /// # Errors
    ///
    /// [`InboundError::TooManySubscriptions`] when the client has as many
    /// subscriptions as allowed.
    pub fn subscribe(
        &self,
        kinds: impl IntoIterator<Item = EventType>,
    ) -> Result<EventSubscription, InboundError> {
        self.inbound.subscribe(kinds)
    }

    /// Connects to `url` (`ws://host:port/path`) within the dial timeout and starts
    /// the connection, with what was registered (see [`Client::connect`]). Must be
    /// called inside a tokio runtime.
    ///
    /// # Errors
    ///
    /// [`ConnectError`] when the first connection fails; what was registered is
    /// closed then.
    pub async fn connect(self, url: &str) -> Result<Client, ConnectError> {
        let Self {
            config,
            inbound,
            clock,
        } = self;
        let socket = dial(url, &config).await?;
        let opened = clock.now();
        let last_event_id = Arc::new(LastEventId::default());
        let core = new_core(&config, &socket, &inbound, &clock, &last_event_id)?;
        let inner = Arc::new(ClientInner {
            url: url.to_owned(),
            config,
            inbound,
            clock,
            current: Mutex::new(Connection::from_core(Arc::clone(&core))),
            state: watch::Sender::new(ClientState::Connected(core.id())),
            closing: Flag::default(),
            reconnects: AtomicU64::new(0),
            failed_attempts: AtomicU64::new(0),
            last_event_id,
        });
        tokio::spawn(run(Arc::clone(&inner), socket, core, opened));
        Ok(Client {
            _owner: Arc::new(Owner(Arc::clone(&inner))),
            inner,
        })
    }
}

/// `url` naming `last` as the last event seen (`lastEventId`), where the URL joins
/// a channel ([`Join`](super::Join)) and an event of it was received.
fn resume_url(url: &str, last: Option<&str>) -> String {
    let (Some(last), Some((base, query))) = (last, url.split_once('?')) else {
        return url.to_owned();
    };
    let Some(mut join) = super::Join::from_query(query) else {
        return url.to_owned();
    };
    join.last_event_id = Some(last.to_owned());
    // The other parameters stay as they were; the two the join names are rewritten.
    let mut out = format!("{base}?{}", join.to_query());
    for pair in query.split('&') {
        let key = pair.split_once('=').map_or(pair, |(k, _)| k);
        if !pair.is_empty() && key != "channel" && key != "lastEventId" {
            out.push('&');
            out.push_str(pair);
        }
    }
    out
}

async fn dial(url: &str, config: &ClientConfig) -> Result<Socket, ConnectError> {
    let request = url.into_client_request().map_err(ConnectError::Url)?;
    let ws_config = conn::websocket_config(&config.connection);
    let connecting = tokio_tungstenite::connect_async_with_config(request, Some(ws_config), true);
    match timeout(config.dial_timeout, connecting).await {
        Err(_) => Err(ConnectError::Timeout(config.dial_timeout)),
        Ok(Ok((socket, _response))) => Ok(socket),
        Ok(Err(tungstenite::Error::Io(e))) => Err(ConnectError::Io(e)),
        Ok(Err(e @ tungstenite::Error::Url(_))) => Err(ConnectError::Url(e)),
        Ok(Err(e)) => Err(ConnectError::Handshake(e)),
    }
}

fn peer_of(socket: &Socket) -> Option<SocketAddr> {
    match socket.get_ref() {
        MaybeTlsStream::Plain(tcp) => tcp.peer_addr().ok(),
        #[allow(unreachable_patterns)]
        _ => None,
    }
}

fn new_core(
    config: &ClientConfig,
    socket: &Socket,
    inbound: &Arc<Inbound>,
    clock: &Arc<dyn Clock + Send + Sync>,
    last_event_id: &Arc<LastEventId>,
) -> Result<Arc<Core>, WsConfigError> {
    let outbound = Outbound::new(config.connection.outbound, Arc::clone(clock))?;
    Ok(Core::new(CoreParts {
        id: next_conn_id(),
        peer: peer_of(socket),
        config: config.connection,
        outbound: Arc::new(outbound),
        inbound: Arc::clone(inbound),
        owns_inbound: false,
        snapshots: None,
        classes: Arc::default(),
        last_event_id: Some(Arc::clone(last_event_id)),
    }))
}

/// The client's task: runs each connection, reconnects after it ends, and runs the
/// dispatcher of the client's inbound events throughout. `opened` is the clock's
/// tick when the first connection was made.
async fn run(inner: Arc<ClientInner>, socket: Socket, core: Arc<Core>, opened: u64) {
    let connections = async {
        let mut socket = socket;
        let mut core = core;
        let mut opened = opened;
        let mut jitter = Jitter::new();
        let stable_ticks = inner.clock.ticks_for(inner.config.reconnect.stable_after);
        // Reconnection attempts since the last connection that held for
        // `stable_after`: the count (and the backoff) goes on across connections
        // that end sooner, so a server that accepts and then fails cannot keep the
        // client at its first attempt forever.
        let mut attempts = 0u32;
        let last = loop {
            let ended = drive(socket, Arc::clone(&core)).await;
            let lived = inner.clock.now().saturating_sub(opened);
            let reason = ended.reason;
            core.finish(reason.clone());
            if let Some(linger) = ended.linger {
                // Bounded by the close timeout; the reconnection need not wait.
                tokio::spawn(linger);
            }
            if inner.closing.is_set() {
                break ClientState::Closed(reason);
            }
            if lived >= stable_ticks {
                attempts = 0;
            } else if attempts > 0 {
                // The attempt made this connection, which did not hold.
                inner.failed_attempts.fetch_add(1, Ordering::Relaxed);
            }
            match reconnect(&inner, &reason, &mut jitter, &mut attempts).await {
                Ok((next_socket, next_core)) => {
                    // Read before the new state is published, so that time that
                    // passes once `Connected` is seen counts to this connection.
                    opened = inner.clock.now();
                    socket = next_socket;
                    core = next_core;
                    *lock(&inner.current) = Connection::from_core(Arc::clone(&core));
                    inner.reconnects.fetch_add(1, Ordering::Relaxed);
                    if inner.closing.is_set() {
                        // Closed while this connection was being made.
                        core.outbound().close(CloseReason::Normal);
                    }
                    inner.state.send_replace(ClientState::Connected(core.id()));
                }
                Err(state) => break state,
            }
        };
        inner.inbound.close();
        last
    };
    let (last, ()) = tokio::join!(connections, inner.inbound.run());
    inner.state.send_replace(last);
}

/// Makes connection attempts with backoff, after the `attempts` already made, up
/// to `max_attempts` in all; `attempts` counts the ones made. The final state when
/// none succeeds (or the client is closed meanwhile).
async fn reconnect(
    inner: &ClientInner,
    after: &CloseReason,
    jitter: &mut Jitter,
    attempts: &mut u32,
) -> Result<(Socket, Arc<Core>), ClientState> {
    let policy = &inner.config.reconnect;
    while *attempts < policy.max_attempts {
        *attempts += 1;
        let attempt = *attempts;
        inner.state.send_replace(ClientState::Reconnecting {
            attempt,
            after: after.clone(),
        });
        let delay = backoff_delay(policy, attempt, jitter.sample());
        tokio::select! {
            biased;
            () = inner.closing.wait() => return Err(ClientState::Closed(after.clone())),
            () = tokio::time::sleep(delay) => {}
        }
        let url = resume_url(&inner.url, inner.last_event_id.get().as_deref());
        let made = tokio::select! {
            biased;
            () = inner.closing.wait() => return Err(ClientState::Closed(after.clone())),
            made = dial(&url, &inner.config) => made,
        };
        match made.map_err(|_| ()).and_then(|socket| {
            new_core(
                &inner.config,
                &socket,
                &inner.inbound,
                &inner.clock,
                &inner.last_event_id,
            )
            .map(|core| (socket, core))
            .map_err(|_| ())
        }) {
            Ok(made) => return Ok(made),
            Err(()) => {
                inner.failed_attempts.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    Err(ClientState::GaveUp {
        attempts: policy.max_attempts,
        after: after.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> ReconnectPolicy {
        ReconnectPolicy {
            max_attempts: 10,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
            multiplier: 2.0,
            jitter: 0.5,
            ..ReconnectPolicy::default()
        }
    }

    #[test]
    fn backoff_grows_geometrically_up_to_the_cap() {
        let p = policy();
        let schedule: Vec<u128> = (1..=7)
            .map(|a| backoff_delay(&p, a, 0.0).as_millis())
            .collect();
        assert_eq!(schedule, [100, 200, 400, 800, 1600, 2000, 2000]);
    }

    #[test]
    fn jitter_stays_within_its_fraction() {
        let p = policy();
        for attempt in 1..=8 {
            let full = backoff_delay(&p, attempt, 0.0);
            let least = backoff_delay(&p, attempt, 1.0);
            assert_eq!(least, full / 2, "attempt {attempt}");
            let mid = backoff_delay(&p, attempt, 0.5);
            assert!(least <= mid && mid <= full);
        }
        let mut jitter = Jitter::new();
        for _ in 0..1000 {
            let s = jitter.sample();
            assert!((0.0..1.0).contains(&s));
            let d = backoff_delay(&p, 3, s);
            assert!(d >= Duration::from_millis(200) && d <= Duration::from_millis(400));
        }
    }

    #[test]
    fn extreme_inputs_never_panic() {
        let mut p = policy();
        assert_eq!(backoff_delay(&p, u32::MAX, 0.0), p.max_backoff);
        assert_eq!(backoff_delay(&p, 0, 0.0), p.initial_backoff);
        assert_eq!(backoff_delay(&p, 1, f64::NAN), p.initial_backoff);
        assert_eq!(backoff_delay(&p, 1, 7.0), p.initial_backoff / 2);
        p.multiplier = 1.0;
        p.jitter = 0.0;
        assert_eq!(backoff_delay(&p, 50, 0.9), p.initial_backoff);
    }
}
