//! The server: accepts WebSocket connections, fans events out to all of them through
//! the [`Hub`], refuses connections at its cap or under critical memory pressure,
//! and shuts down gracefully.

use core::time::Duration;
use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::prelude::rust_2021::*;
// `tokio::select!` expands to `panic!`, which the prelude glob and the crate's
// `no_std` prelude both provide; an explicit import settles which.
#[allow(unused_imports)]
use core::panic;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::{AbortHandle, JoinHandle};
use tokio::time::timeout;

use super::conn::{self, drive, next_conn_id, refuse, Core, CoreParts, Flag, Traffic};
pub(crate) use super::engine::Join;
use super::engine::{gap_notice, Attached, Member};
use super::{
    Broadcast, ClassMap, CloseReason, ConnId, Connection, ConnectionMetrics, Engine, EngineConfig,
    EngineError, EngineMetrics, Event, Frame, Hub, HubMetrics, Inbound, MemoryEngine, Outbound,
    Published, ServerConfig, SharedLog, SnapshotSource, WsConfigError,
};
use crate::capacity::{self, CapacityError, SoftCapacity};
use crate::clock::{Clock, MonotonicClock};
use crate::monitor::MemoryManager;
use crate::pressure::{adaptive_size, PressureLevel};
use crate::sync::{AtomicU64, Ordering};

/// Why a server could not start.
#[derive(Debug)]
#[non_exhaustive]
pub enum ServeError {
    /// The configuration cannot work.
    Config(WsConfigError),
    /// The listening socket could not be bound.
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The operating system's error.
        source: io::Error,
    },
    /// The listening socket's address could not be read.
    LocalAddr(io::Error),
}

impl fmt::Display for ServeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Config(e) => write!(f, "cannot start the WebSocket server: {e}"),
            Self::Bind { addr, source } => write!(f, "cannot listen on {addr}: {source}"),
            Self::LocalAddr(e) => write!(f, "cannot read the listening address: {e}"),
        }
    }
}

impl std::error::Error for ServeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Config(e) => Some(e),
            Self::Bind { source, .. } => Some(source),
            Self::LocalAddr(e) => Some(e),
        }
    }
}

impl From<WsConfigError> for ServeError {
    fn from(e: WsConfigError) -> Self {
        Self::Config(e)
    }
}

/// How many connections ended, by reason.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, crate::metrics::Metrics)]
#[metrics(
    kind = "ws_close_counts",
    help(closed = "Connections ended, by reason.")
)]
#[non_exhaustive]
pub struct CloseCounts {
    /// Closed by the program ([`CloseReason::Normal`]).
    #[metric(counter, name = "closed", label("reason", "normal"))]
    pub normal: u64,
    /// Closed by the server's shutdown.
    #[metric(counter, name = "closed", label("reason", "shutdown"))]
    pub shutdown: u64,
    /// Closed as slow consumers (code 4008).
    #[metric(counter, name = "closed", label("reason", "slow_consumer"))]
    pub slow_consumer: u64,
    /// Closed after the idle timeout.
    #[metric(counter, name = "closed", label("reason", "idle_timeout"))]
    pub idle_timeout: u64,
    /// Closed for a malformed inbound event (code 1007).
    #[metric(counter, name = "closed", label("reason", "invalid_payload"))]
    pub invalid_payload: u64,
    /// Closed for an oversized inbound message (code 1009).
    #[metric(counter, name = "closed", label("reason", "message_too_big"))]
    pub message_too_big: u64,
    /// Closed for a protocol error (code 1002).
    #[metric(counter, name = "closed", label("reason", "protocol"))]
    pub protocol: u64,
    /// Closed by the peer.
    #[metric(counter, name = "closed", label("reason", "remote"))]
    pub remote: u64,
    /// Lost without a close handshake.
    #[metric(counter, name = "closed", label("reason", "lost"))]
    pub lost: u64,
}

impl CloseCounts {
    fn slot(&mut self, reason: &CloseReason) -> &mut u64 {
        match reason {
            CloseReason::Normal => &mut self.normal,
            CloseReason::Shutdown => &mut self.shutdown,
            CloseReason::SlowConsumer(_) => &mut self.slow_consumer,
            CloseReason::IdleTimeout => &mut self.idle_timeout,
            CloseReason::InvalidPayload(_) => &mut self.invalid_payload,
            CloseReason::MessageTooBig => &mut self.message_too_big,
            CloseReason::Protocol(_) => &mut self.protocol,
            CloseReason::Remote { .. } => &mut self.remote,
            // `Refused` never reaches a registered connection; count it as lost.
            _ => &mut self.lost,
        }
    }

    /// Every ended connection.
    pub fn total(&self) -> u64 {
        self.normal
            + self.shutdown
            + self.slow_consumer
            + self.idle_timeout
            + self.invalid_payload
            + self.message_too_big
            + self.protocol
            + self.remote
            + self.lost
    }
}

/// The server's totals: connections, refusals, traffic (of open and ended
/// connections together), queues and fan-out.
#[derive(Clone, Debug, crate::metrics::Metrics)]
#[metrics(
    kind = "ws_server",
    help(refused = "Connections refused after the handshake, by cause.")
)]
#[non_exhaustive]
pub struct ServerMetrics {
    /// Connections open now.
    #[metric(gauge)]
    pub connections: usize,
    /// Connections admitted since the start.
    #[metric(counter)]
    pub accepted: u64,
    /// Connections refused at `max_connections` (code 1013).
    #[metric(counter, name = "refused", label("cause", "capacity"))]
    pub refused_capacity: u64,
    /// Connections refused under critical memory pressure (code 1013).
    #[metric(counter, name = "refused", label("cause", "pressure"))]
    pub refused_pressure: u64,
    /// Connections refused because the server was shutting down (code 1001).
    #[metric(counter, name = "refused", label("cause", "shutdown"))]
    pub refused_shutdown: u64,
    /// Connections refused because their channel could not be joined (the engine's
    /// broker unreachable; code 1013).
    #[metric(counter, name = "refused", label("cause", "engine"))]
    pub refused_engine: u64,
    /// TCP connections closed at once, before any handshake, because
    /// [`max_pending_handshakes`](ServerConfig::max_pending_handshakes) handshakes
    /// were under way.
    #[metric(counter, name = "handshakes_refused")]
    pub refused_handshakes: u64,
    /// WebSocket handshakes under way now (TCP connections accepted, not yet
    /// upgraded or failed).
    #[metric(gauge, name = "handshakes_pending")]
    pub pending_handshakes: usize,
    /// TCP connections whose WebSocket handshake failed or timed out.
    #[metric(counter)]
    pub handshake_failures: u64,
    /// Errors from the listening socket's `accept`.
    #[metric(counter)]
    pub accept_errors: u64,
    /// Bytes and messages in and out, of open and ended connections together.
    #[metric(nested)]
    pub traffic: Traffic,
    /// Events open connections have not taken yet, summed over the connections
    /// ([`Outbound::backlog`](super::Outbound::backlog): a broadcast event in the
    /// shared log counts once for each connection still to take it; the log's own
    /// memory is in `hub.log`).
    #[metric(gauge)]
    pub queued_events: u64,
    /// Their bytes, summed the same way.
    #[metric(gauge, name = "queued", unit = "bytes")]
    pub queued_bytes: u64,
    /// Ended connections by reason.
    #[metric(nested)]
    pub closed: CloseCounts,
    /// The fan-out's metrics.
    #[metric(visit = visit_fan_out)]
    pub hub: HubMetrics,
    /// The memory pressure level last applied ([`Server::pressure`]).
    #[metric(gauge, name = "pressure_level", with = PressureLevel::index)]
    pub pressure: PressureLevel,
    /// The engine's figures: channels, publishes, resumes
    /// ([`ServerBuilder::engine`]).
    #[metric(nested(prefix = "engine_"))]
    pub engine: EngineMetrics,
}

/// `hub`: the fan-out's figures, less its count of attached queues (the server's
/// `connections`).
fn visit_fan_out(hub: &HubMetrics, out: &mut dyn crate::metrics::Visitor) {
    let mut fan_out = crate::metrics::Scoped::new(out).filter(|name| name != "connections");
    crate::metrics::Metrics::visit(hub, &mut fan_out);
}

type OnConnect = Arc<dyn Fn(Connection) + Send + Sync>;

/// Builds a [`Server`] with a snapshot source, a connection callback, a clock or a
/// memory manager.
///
/// # Examples
///
/// ```
/// use membound::adapters::ws::{Server, ServerConfig};
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let server = Server::builder(ServerConfig::default())
///     .on_connect(|conn| println!("{} connected from {:?}", conn.id(), conn.peer_addr()))
///     .bind()
///     .await?;
/// assert!(server.local_addr().ip().is_loopback());
/// server.shutdown().await;
/// # Ok::<(), membound::adapters::ws::ServeError>(())
/// # }).unwrap();
/// ```
#[must_use = "a builder does nothing until `bind` is called"]
pub struct ServerBuilder<'m> {
    config: ServerConfig,
    snapshots: Option<Arc<dyn SnapshotSource>>,
    classes: ClassMap,
    on_connect: Option<OnConnect>,
    clock: Arc<dyn Clock + Send + Sync>,
    manager: Option<&'m MemoryManager>,
    engine: Option<Arc<dyn Engine>>,
}

impl fmt::Debug for ServerBuilder<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerBuilder")
            .field("config", &self.config)
            .field("snapshot_source", &self.snapshots.is_some())
            .field("classes", &self.classes)
            .field("on_connect", &self.on_connect.is_some())
            .field("memory_manager", &self.manager.is_some())
            .finish_non_exhaustive()
    }
}

impl<'m> ServerBuilder<'m> {
    /// Where connections that missed state deltas get a fresh `STATE_SNAPSHOT`
    /// (for instance a [`StateStore`](crate::adapters::state::StateStore)). Without
    /// one, such a connection is closed as a slow consumer.
    pub fn snapshot_source(mut self, source: Arc<dyn SnapshotSource>) -> Self {
        self.snapshots = Some(source);
        self
    }

    /// The delivery class of each event type, where it differs from
    /// [`EventType::class`](super::EventType::class): applied to every event the
    /// server broadcasts or sends to a connection (an encoded frame that is
    /// broadcast gets its type's override, if any). For a type a newer protocol
    /// version adds, or an application's own.
    ///
    /// # Examples
    ///
    /// ```
    /// use membound::adapters::ws::{ClassMap, DeliveryClass, Event, EventType, Server, ServerConfig};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let server = Server::builder(ServerConfig::default())
    ///     .classes(ClassMap::new().with("AUDIT_RECORD", DeliveryClass::Lossless))
    ///     .bind()
    ///     .await?;
    /// let sent = server.broadcast(&Event::new(EventType::parse("AUDIT_RECORD"))).await;
    /// let log = server.hub().log();
    /// let mut cursor = log.cursor_at_tail();
    /// let mut read = Vec::new();
    /// log.read(&mut cursor, 1, usize::MAX, &mut read);
    /// assert_eq!(read[0].offset(), sent.offset);
    /// assert_eq!(read[0].frame().class(), DeliveryClass::Lossless);
    /// server.shutdown().await;
    /// # Ok::<(), membound::adapters::ws::ServeError>(())
    /// # }).unwrap();
    /// ```
    pub fn classes(mut self, classes: ClassMap) -> Self {
        self.classes = classes;
        self
    }

    /// Called with each admitted connection before it starts reading, so handlers
    /// registered here see every inbound event. It runs on the connection's task:
    /// keep it short.
    pub fn on_connect<F>(mut self, callback: F) -> Self
    where
        F: Fn(Connection) + Send + Sync + 'static,
    {
        self.on_connect = Some(Arc::new(callback));
        self
    }

    /// The engine that carries channel events ([`Server::publish`]) between the
    /// nodes serving a channel's connections, with offsets and a bounded history
    /// for resume. Default: a [`MemoryEngine`] with the server's log bounds (one
    /// node).
    pub fn engine(mut self, engine: Arc<dyn Engine>) -> Self {
        self.engine = Some(engine);
        self
    }

    /// The clock of the queues' soft-limit timers and the subscriptions' idle TTL
    /// (default [`MonotonicClock`]).
    pub fn clock(mut self, clock: Arc<dyn Clock + Send + Sync>) -> Self {
        self.clock = clock;
        self
    }

    /// Registers the server with `manager` when it is built
    /// ([`MemoryManager::register_capacity`]), so that every level transition
    /// reaches every connection with no callback written by the caller: each
    /// outbound and inbound queue shrinks to the level's share of its capacity
    /// (100, 75, 50 or 25 %), at `Critical` droppable events get at most half of
    /// each outbound queue and new connections are refused with code 1013.
    /// Connections accepted later start at the level then in force. The server is
    /// sized for the manager's current level at once. The registration is weak:
    /// dropping the server ends it. See the server's [`SoftCapacity`] impl.
    ///
    /// # Examples
    ///
    /// ```
    /// use membound::adapters::ws::{Server, ServerConfig};
    /// use membound::monitor::{MemoryManager, MonitorConfig};
    /// use membound::pressure::PressureLevel;
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let manager = MemoryManager::new(MonitorConfig::development())?;
    /// let server = Server::builder(ServerConfig::default())
    ///     .memory_manager(&manager) // its queues follow the pressure
    ///     .bind()
    ///     .await?;
    /// manager.start()?;
    /// assert_eq!(server.pressure(), manager.level());
    /// server.shutdown().await;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub fn memory_manager<'n>(self, manager: &'n MemoryManager) -> ServerBuilder<'n> {
        ServerBuilder {
            config: self.config,
            snapshots: self.snapshots,
            classes: self.classes,
            on_connect: self.on_connect,
            clock: self.clock,
            manager: Some(manager),
            engine: self.engine,
        }
    }

    /// Checks the configuration, binds the listening socket and starts accepting.
    /// Must be called inside a tokio runtime.
    ///
    /// # Errors
    ///
    /// [`ServeError::Config`] for a configuration that cannot work,
    /// [`ServeError::Bind`] when the address cannot be bound.
    pub async fn bind(self) -> Result<Server, ServeError> {
        let shared = self.build_shared()?;
        let addr = shared.config.bind;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| ServeError::Bind { addr, source })?;
        let local_addr = listener.local_addr().map_err(ServeError::LocalAddr)?;
        let accept = tokio::spawn(accept_loop(Arc::clone(&shared), listener));
        Ok(Server {
            shared,
            local_addr: Some(local_addr),
            accept: Mutex::new(Some(accept)),
        })
    }

    /// A server without a listening socket, whose connections come from axum
    /// ([`axum::upgrade`](super::axum::upgrade)). Everything else works as for a
    /// bound server; [`Server::local_addr`] is `0.0.0.0:0`.
    ///
    /// # Errors
    ///
    /// [`ServeError::Config`] for a configuration that cannot work.
    #[cfg(feature = "axum")]
    pub fn build(self) -> Result<Server, ServeError> {
        Ok(Server {
            shared: self.build_shared()?,
            local_addr: None,
            accept: Mutex::new(None),
        })
    }

    fn build_shared(self) -> Result<Arc<Shared>, ServeError> {
        self.config.validate()?;
        let engine = match self.engine {
            Some(engine) => engine,
            None => Arc::new(MemoryEngine::new(EngineConfig {
                log: self.config.log,
                ..EngineConfig::default()
            })?),
        };
        let shared = Arc::new(Shared {
            engine,
            config: self.config,
            hub: Hub::with_shared_log(Arc::new(SharedLog::build(self.config.log)))
                .with_classes(self.classes.clone()),
            classes: Arc::new(self.classes),
            registry: Mutex::new(HashMap::new()),
            tasks: Tracker::default(),
            open: AtomicU64::new(0),
            pending: AtomicU64::new(0),
            pressure: Mutex::new(Applied {
                level: PressureLevel::Normal,
                capacity: self.config.connection.outbound.capacity,
            }),
            stopping: Flag::default(),
            snapshots: self.snapshots,
            on_connect: self.on_connect,
            clock: self.clock,
            totals: Mutex::new(Totals::default()),
        });
        if let Some(manager) = self.manager {
            // Weak: the manager never keeps the server alive.
            manager.register_capacity(&shared);
            // The shared log's byte bound: the broadcasts' memory, on the same route.
            manager.register_named("ws_log", shared.hub.log());
        }
        Ok(shared)
    }
}

/// A WebSocket server that keeps every connection's memory bounded.
///
/// It listens on `127.0.0.1:0` by default (the port is [`local_addr`]). Each
/// connection gets a bounded outbound queue with byte limits and delivery classes
/// (see the [module docs](super)), a bounded inbound queue with handlers and
/// subscriptions, keepalive pings and an idle timeout. [`broadcast`] encodes an event
/// once and queues it for every connection.
///
/// Connections over `max_connections`, and every new connection while the memory
/// pressure is `Critical`, complete the handshake and are closed at once with code
/// 1013 (try again later). Handshakes are capped too: a TCP connection accepted
/// while `max_pending_handshakes` handshakes are under way is closed at once, without
/// a handshake. [`shutdown`] delivers what is queued (within the shutdown timeout)
/// and closes every connection with 1001.
///
/// Dropping the server without [`shutdown`] stops accepting and closes the
/// connections without delivering what is queued.
///
/// [`local_addr`]: Self::local_addr
/// [`broadcast`]: Self::broadcast
/// [`shutdown`]: Self::shutdown
///
/// # Examples
///
/// A server and a plain tokio-tungstenite client on loopback:
///
/// ```
/// use futures_util::StreamExt;
/// use membound::adapters::ws::{Event, EventType, Server, ServerConfig};
/// use tokio_tungstenite::tungstenite::Message;
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let (connected, mut on_connected) = tokio::sync::mpsc::unbounded_channel();
/// let server = Server::builder(ServerConfig::default())
///     .on_connect(move |conn| { let _ = connected.send(conn.id()); })
///     .bind()
///     .await?;
///
/// let url = format!("ws://{}", server.local_addr());
/// let (mut socket, _) = tokio_tungstenite::connect_async(url).await.expect("connect");
/// on_connected.recv().await; // registered: broadcasts reach it from now on
///
/// let sent = server
///     .broadcast(&Event::new(EventType::RunStarted).with("runId", "r1"))
///     .await;
/// assert_eq!(sent.offset, 0); // the first event of the shared log
///
/// let Some(Ok(Message::Text(text))) = socket.next().await else { panic!("no event") };
/// assert_eq!(Event::parse(&text).unwrap().get("runId").unwrap(), "r1");
///
/// // Shut down: the client reads the close frame (code 1001) and answers it.
/// let (_, close) = tokio::join!(server.shutdown(), async {
///     let close = socket.next().await;
///     while socket.next().await.is_some() {} // sends the reply, then sees the end
///     close
/// });
/// let Some(Ok(Message::Close(Some(frame)))) = close else { panic!("no close frame") };
/// assert_eq!(u16::from(frame.code), 1001);
/// # Ok::<(), membound::adapters::ws::ServeError>(())
/// # }).unwrap();
/// ```
pub struct Server {
    shared: Arc<Shared>,
    local_addr: Option<SocketAddr>,
    accept: Mutex<Option<JoinHandle<()>>>,
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("local_addr", &self.local_addr)
            .field("connections", &self.connection_count())
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Starts a server with `config` (see [`ServerBuilder::bind`]).
    ///
    /// # Errors
    ///
    /// As [`ServerBuilder::bind`].
    pub async fn bind(config: ServerConfig) -> Result<Self, ServeError> {
        Self::builder(config).bind().await
    }

    /// A builder, for a snapshot source, a connection callback, a clock or a
    /// memory manager.
    pub fn builder(config: ServerConfig) -> ServerBuilder<'static> {
        ServerBuilder {
            config,
            snapshots: None,
            classes: ClassMap::new(),
            on_connect: None,
            clock: Arc::new(MonotonicClock::new()),
            manager: None,
            engine: None,
        }
    }

    /// The address the server listens on (with the port the OS picked); `0.0.0.0:0`
    /// for a server without a listener (axum's).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
            .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    #[cfg(feature = "axum")]
    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// The server's settings.
    pub fn config(&self) -> &ServerConfig {
        &self.shared.config
    }

    /// Encodes `event` once (with the server's [`ClassMap`]) and appends it to the
    /// hub's shared log, for every connection that did not join a channel (those
    /// read their channel's log: see [`publish`](Self::publish)): it never waits
    /// for one. A connection
    /// that falls behind is dealt with on its side, by its delivery classes (see
    /// [`Hub`]'s design). Each broadcast consumes a unit of the task's tokio budget,
    /// so a task that publishes in a loop never starves the connections' writers.
    pub async fn broadcast(&self, event: &Event) -> Broadcast {
        self.shared.hub.broadcast(event).await
    }

    /// [`broadcast`](Self::broadcast) for an event already encoded.
    pub async fn broadcast_frame(&self, frame: Frame) -> Broadcast {
        self.shared.hub.broadcast_frame(frame).await
    }

    /// Publishes `event` on `channel` through the server's engine
    /// ([`ServerBuilder::engine`]): encoded once with the server's [`ClassMap`], it
    /// reaches the connections that joined the channel ([`Join`]) on every node,
    /// stamped with its id ([`EVENT_ID_FIELD`](super::EVENT_ID_FIELD)).
    ///
    /// # Errors
    ///
    /// The engine's: [`EngineError::Timeout`] for a lossless event the broker did
    /// not take in time, [`EngineError::Dropped`] for a droppable one it dropped,
    /// [`EngineError::InvalidChannel`], ...
    ///
    /// # Examples
    ///
    /// ```
    /// use membound::adapters::ws::{Event, EventType, Server, ServerConfig};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let server = Server::bind(ServerConfig::default()).await?;
    /// // A client connects to `ws://<addr>/?channel=run-1` (and, to resume,
    /// // `&lastEventId=<the eventId of the last event it saw>`).
    /// let first = server.publish("run-1", &Event::new(EventType::RunStarted)).await?;
    /// let next = server.publish("run-1", &Event::new(EventType::RunFinished)).await?;
    /// assert_eq!((next.epoch, next.offset), (first.epoch, first.offset + 1));
    /// server.shutdown().await;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub async fn publish(&self, channel: &str, event: &Event) -> Result<Published, EngineError> {
        self.publish_frame(channel, event.encode_with(&self.shared.classes))
            .await
    }

    /// [`publish`](Self::publish) for an event already encoded.
    ///
    /// # Errors
    ///
    /// As [`publish`](Self::publish).
    pub async fn publish_frame(
        &self,
        channel: &str,
        frame: Frame,
    ) -> Result<Published, EngineError> {
        let frame = frame.classed(&self.shared.classes);
        self.shared.engine.publish(channel, frame).await
    }

    /// The engine under [`publish`](Self::publish).
    pub fn engine(&self) -> &Arc<dyn Engine> {
        &self.shared.engine
    }

    /// The fan-out to every connection.
    pub fn hub(&self) -> &Hub {
        &self.shared.hub
    }

    /// The memory pressure level last applied: by the manager the server was
    /// registered with ([`ServerBuilder::memory_manager`]), or through its
    /// [`SoftCapacity`] impl. `Normal` until then.
    pub fn pressure(&self) -> PressureLevel {
        self.shared.pressure()
    }

    /// The open connection `id`.
    pub fn connection(&self, id: ConnId) -> Option<Connection> {
        self.shared.registry().get(&id).cloned()
    }

    /// Every open connection.
    pub fn connections(&self) -> Vec<Connection> {
        let mut all: Vec<Connection> = self.shared.registry().values().cloned().collect();
        all.sort_by_key(Connection::id);
        all
    }

    /// The metrics of every open connection.
    pub fn connection_metrics(&self) -> Vec<ConnectionMetrics> {
        self.connections().iter().map(Connection::metrics).collect()
    }

    /// How many connections are open.
    pub fn connection_count(&self) -> usize {
        self.shared.registry().len()
    }

    /// Connection tasks still running (open connections, handshakes, refusals).
    pub fn task_count(&self) -> usize {
        self.shared.tasks.len()
    }

    /// The server's totals.
    pub fn metrics(&self) -> ServerMetrics {
        self.shared.metrics()
    }

    /// Shuts the server down gracefully: stops accepting; asks every connection to
    /// close with [`CloseReason::Shutdown`], which delivers what is queued first;
    /// after `shutdown_timeout` abandons what is still queued; sends every close frame
    /// (code 1001) and completes the close handshakes within `close_timeout`; and
    /// waits for every connection task to end. Calling it again does nothing more.
    pub async fn shutdown(&self) {
        let shared = &self.shared;
        shared.stopping.set();
        let accept = lock(&self.accept).take();
        if let Some(accept) = accept {
            let _ = accept.await;
        }
        for conn in self.connections() {
            conn.close(CloseReason::Shutdown);
        }
        let config = &shared.config;
        if timeout(config.shutdown_timeout, shared.tasks.wait_idle())
            .await
            .is_ok()
        {
            return;
        }
        for conn in self.connections() {
            conn.core().force_close();
        }
        // The close frames and handshakes, then a margin for the tasks to finish.
        let grace = config
            .connection
            .close_timeout
            .saturating_mul(2)
            .saturating_add(Duration::from_millis(100));
        if timeout(grace, shared.tasks.wait_idle()).await.is_err() {
            shared.tasks.abort_all();
            shared.tasks.wait_idle().await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shared.stopping.set();
        if let Some(accept) = lock(&self.accept).take() {
            accept.abort();
        }
        for conn in self.connections() {
            conn.close(CloseReason::Shutdown);
            conn.core().force_close();
        }
    }
}

/// The server on the crate's one pressure route.
///
/// Its capacity is each connection's outbound soft capacity, in frames: at most
/// [`outbound.capacity`](super::QueueConfig::capacity), the base a
/// [`MemoryManager`] registers. [`apply_pressure`](SoftCapacity::apply_pressure)
/// applies a level as a whole, to every open connection and to those accepted
/// later:
///
/// - each outbound queue gets the level and the capacity given (for a registered
///   server, 100, 75, 50 or 25 % of the configured one), so at `Critical`
///   droppable events get at most half of it (see
///   [Memory pressure](Outbound#memory-pressure));
/// - each inbound queue gets the level's share of its
///   [`queue_capacity`](super::InboundConfig::queue_capacity);
/// - at `Critical`, new connections are refused with code 1013, until a lower
///   level is applied.
///
/// [`set_capacity`](SoftCapacity::set_capacity) changes the outbound capacity
/// alone and keeps the level. Register a server by building it with
/// [`memory_manager`](ServerBuilder::memory_manager).
impl SoftCapacity for Server {
    crate::capacity::forward_soft_capacity!(self => self.shared);
}

/// What a manager registered by [`ServerBuilder::memory_manager`] holds (weakly);
/// see the [`Server`]'s impl.
impl SoftCapacity for Shared {
    fn capacity(&self) -> usize {
        lock(&self.pressure).capacity
    }

    /// The bytes queued for every connection now; at most `max_connections` times
    /// a connection's hard byte limit.
    fn footprint(&self) -> Option<crate::capacity::Footprint> {
        let queued = self.metrics().queued_bytes;
        let per_connection = self.config.connection.outbound.hard_limit_bytes as u64;
        Some(crate::capacity::Footprint {
            bytes: queued,
            max_bytes: per_connection.saturating_mul(self.config.max_connections as u64),
        })
    }

    fn kind(&self) -> &'static str {
        <ServerMetrics as crate::metrics::Metrics>::KIND
    }

    fn max_capacity(&self) -> usize {
        self.config.connection.outbound.capacity
    }

    fn set_capacity(&self, capacity: usize) -> Result<(), CapacityError> {
        self.apply(None, capacity)
    }

    fn apply_pressure(&self, level: PressureLevel, capacity: usize) -> Result<(), CapacityError> {
        self.apply(Some(level), capacity)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // No code panics while holding these locks; recover the data if one ever did.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Counters of the server as a whole.
#[derive(Debug, Default)]
struct Totals {
    accepted: u64,
    refused_capacity: u64,
    refused_pressure: u64,
    refused_shutdown: u64,
    refused_engine: u64,
    refused_handshakes: u64,
    handshake_failures: u64,
    accept_errors: u64,
    /// Traffic of the connections that have ended.
    retired: Traffic,
    closed: CloseCounts,
}

/// The server's state, shared by its handle, its accept loop and its connections.
pub(crate) struct Shared {
    config: ServerConfig,
    engine: Arc<dyn Engine>,
    hub: Hub,
    registry: Mutex<HashMap<ConnId, Connection>>,
    tasks: Tracker,
    /// Admitted connections not yet ended (the cap counts these).
    open: AtomicU64,
    /// Handshakes under way on the listener's connections (held by
    /// [`PendingHandshake`]s; `max_pending_handshakes` caps it).
    pending: AtomicU64,
    /// The pressure last applied; every connection's queues follow it. Locked
    /// while a transition reaches the connections and while a new connection
    /// catches up with it, so none is left at an older level.
    pressure: Mutex<Applied>,
    stopping: Flag,
    snapshots: Option<Arc<dyn SnapshotSource>>,
    classes: Arc<ClassMap>,
    on_connect: Option<OnConnect>,
    clock: Arc<dyn Clock + Send + Sync>,
    totals: Mutex<Totals>,
}

/// The pressure a server applied last: its level, and the outbound capacity the
/// manager gave for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Applied {
    level: PressureLevel,
    /// Each connection's outbound soft capacity, `1..=outbound.capacity`.
    capacity: usize,
}

impl Applied {
    /// Sets one connection's queues to this pressure: the outbound queue to the
    /// level and the capacity, the inbound queue to the level's share of its own.
    fn apply_to(&self, outbound: &Outbound, inbound: &Inbound) {
        // Within `1..=max` by construction (the server checked `capacity` against
        // the same configuration), so neither can fail.
        let _ = outbound.apply_pressure(self.level, self.capacity);
        let _ = inbound.apply_pressure(
            self.level,
            adaptive_size(inbound.max_capacity(), self.level),
        );
    }
}

/// Why a connection is refused.
enum Refusal {
    Capacity,
    Pressure,
    Shutdown,
}

impl Shared {
    fn registry(&self) -> MutexGuard<'_, HashMap<ConnId, Connection>> {
        lock(&self.registry)
    }

    fn count(&self, f: impl FnOnce(&mut Totals)) {
        f(&mut lock(&self.totals));
    }

    fn pressure(&self) -> PressureLevel {
        lock(&self.pressure).level
    }

    /// Applies `level` (or, for `None`, the level in force) with `capacity` to
    /// every connection, under the pressure lock.
    fn apply(&self, level: Option<PressureLevel>, capacity: usize) -> Result<(), CapacityError> {
        capacity::check(capacity, self.config.connection.outbound.capacity)?;
        let mut applied = lock(&self.pressure);
        *applied = Applied {
            level: level.unwrap_or(applied.level),
            capacity,
        };
        // A connection registered after this snapshot catches up by itself (see
        // `run_connection`), under the same lock.
        let live: Vec<Connection> = self.registry().values().cloned().collect();
        for conn in live {
            applied.apply_to(conn.core().outbound(), conn.core().inbound());
        }
        Ok(())
    }

    /// Takes a place for a new connection, or says why there is none.
    fn admit(&self) -> Result<(), Refusal> {
        if self.stopping.is_set() {
            return Err(Refusal::Shutdown);
        }
        if self.pressure() == PressureLevel::Critical {
            return Err(Refusal::Pressure);
        }
        let max = self.config.max_connections as u64;
        // AcqRel: the cap is exact even when handshakes finish together.
        if self.open.fetch_add(1, Ordering::AcqRel) >= max {
            self.open.fetch_sub(1, Ordering::AcqRel);
            return Err(Refusal::Capacity);
        }
        Ok(())
    }

    /// Takes a place for a handshake, or counts a refusal and returns `None` when
    /// `max_pending_handshakes` are under way.
    fn begin_handshake(self: &Arc<Self>) -> Option<PendingHandshake> {
        let max = self.config.max_pending_handshakes as u64;
        // Relaxed: the read-modify-writes of one counter are totally ordered, so
        // the cap is exact; nothing else is published through it.
        if self.pending.fetch_add(1, Ordering::Relaxed) >= max {
            self.pending.fetch_sub(1, Ordering::Relaxed);
            self.count(|t| t.refused_handshakes += 1);
            return None;
        }
        Some(PendingHandshake(Arc::clone(self)))
    }

    /// Runs one connection whose WebSocket handshake is done (or an SSE stream
    /// whose response has begun), from admission to its end (or refuses it).
    pub(crate) async fn run_connection<T: conn::Transport>(
        self: &Arc<Self>,
        socket: T,
        peer: Option<SocketAddr>,
        mut opening: Opening,
    ) {
        let admitted = self.admit();
        // A channel is joined once admitted (a refusal leaves one joined before).
        let channel = match (opening.channel.take(), &admitted) {
            (Some(OpenChannel::Joined(member)), Ok(())) => Some(member),
            (Some(OpenChannel::Name(name)), Ok(())) => {
                match Member::join(&self.engine, &name).await {
                    Ok(member) => Some(member),
                    Err(_) => {
                        self.open.fetch_sub(1, Ordering::AcqRel);
                        self.count(|t| t.refused_engine += 1);
                        refuse(socket, &CloseReason::Refused, &self.config.connection).await;
                        return;
                    }
                }
            }
            _ => None,
        };
        if let Err(refusal) = admitted {
            let reason = match refusal {
                Refusal::Capacity => {
                    self.count(|t| t.refused_capacity += 1);
                    CloseReason::Refused
                }
                Refusal::Pressure => {
                    self.count(|t| t.refused_pressure += 1);
                    CloseReason::Refused
                }
                Refusal::Shutdown => {
                    self.count(|t| t.refused_shutdown += 1);
                    CloseReason::Shutdown
                }
            };
            refuse(socket, &reason, &self.config.connection).await;
            return;
        }
        let config = self.config.connection;
        let queues = Outbound::new(config.outbound, Arc::clone(&self.clock)).and_then(|out| {
            Inbound::new(config.inbound, Arc::clone(&self.clock)).map(|inb| (out, inb))
        });
        let Ok((outbound, inbound)) = queues else {
            // Unreachable: the configuration was validated when the server was built.
            self.open.fetch_sub(1, Ordering::AcqRel);
            refuse(socket, &CloseReason::Refused, &config).await;
            return;
        };
        let outbound = Arc::new(outbound);
        // New connections start at the pressure in force.
        let applied = *lock(&self.pressure);
        applied.apply_to(&outbound, &inbound);
        let core = Core::new(CoreParts {
            id: next_conn_id(),
            peer,
            config,
            outbound,
            inbound: Arc::new(inbound),
            owns_inbound: true,
            snapshots: self.snapshots.clone(),
            classes: Arc::clone(&self.classes),
            last_event_id: None,
        });
        let conn = Connection::from_core(Arc::clone(&core));
        let mut registration = Registration {
            shared: Arc::clone(self),
            core: Arc::clone(&core),
            reason: None,
            channel,
        };
        self.registry().insert(core.id(), conn.clone());
        let resume = opening.resume.as_deref();
        let attached = match &registration.channel {
            Some(member) => member
                .channel()
                .attach(core.id(), Arc::clone(core.outbound()), resume),
            None => {
                let cursor = resume.map(|id| self.hub.log().cursor_after(id));
                match cursor {
                    Some(Some(cursor)) => {
                        self.hub
                            .attach_at(core.id(), Arc::clone(core.outbound()), cursor);
                        Attached::Resumed
                    }
                    Some(None) => {
                        self.hub.attach(core.id(), Arc::clone(core.outbound()));
                        Attached::Gap
                    }
                    None => {
                        self.hub.attach(core.id(), Arc::clone(core.outbound()));
                        Attached::Fresh
                    }
                }
            }
        };
        if let (Attached::Gap, Some(id)) = (attached, resume) {
            // The client names an event this log no longer holds the sequel of (or
            // never held): it is told so, and gets the state afresh.
            let channel = registration
                .channel
                .as_ref()
                .map_or("", |m| m.channel().name());
            let _ = conn.try_send(&gap_notice(channel, id));
            if let Some(snapshot) = self.snapshots.as_ref().and_then(|s| s.snapshot()) {
                let _ = conn.try_send(&snapshot);
            }
        }
        {
            // A transition between the first application and the registration did
            // not see this connection: catch up. Once registered, every later
            // transition reaches it.
            let now = lock(&self.pressure);
            if *now != applied {
                now.apply_to(core.outbound(), core.inbound());
            }
        }
        self.count(|t| t.accepted += 1);
        if self.stopping.is_set() {
            // Shutdown began while this one was being admitted: it gets its close
            // frame like the others.
            conn.close(CloseReason::Shutdown);
        }
        if let Some(on_connect) = &self.on_connect {
            on_connect(conn.clone());
        }
        if let Some(on_open) = opening.on_open {
            on_open(conn);
        }
        let ended = drive(socket, core).await;
        registration.reason = Some(ended.reason);
        drop(registration);
        if let Some(linger) = ended.linger {
            linger.await;
        }
    }

    fn metrics(&self) -> ServerMetrics {
        let live: Vec<Connection> = self.registry().values().cloned().collect();
        let mut io = Traffic::default();
        let mut queued_events = 0u64;
        let mut queued_bytes = 0u64;
        for conn in &live {
            io.add(&conn.core().traffic());
            let backlog = conn.core().outbound().backlog();
            queued_events += backlog.events;
            queued_bytes += backlog.bytes;
        }
        let totals = lock(&self.totals);
        io.add(&totals.retired);
        ServerMetrics {
            connections: live.len(),
            accepted: totals.accepted,
            refused_capacity: totals.refused_capacity,
            refused_pressure: totals.refused_pressure,
            refused_shutdown: totals.refused_shutdown,
            refused_engine: totals.refused_engine,
            refused_handshakes: totals.refused_handshakes,
            pending_handshakes: self.pending.load(Ordering::Relaxed) as usize,
            handshake_failures: totals.handshake_failures,
            accept_errors: totals.accept_errors,
            traffic: io,
            queued_events,
            queued_bytes,
            closed: totals.closed,
            hub: self.hub.metrics(),
            pressure: self.pressure(),
            engine: self.engine.metrics(),
        }
    }

    #[cfg(feature = "axum")]
    pub(crate) fn config(&self) -> &ServerConfig {
        &self.config
    }

    /// Spawns a connection task that shutdown can wait for and abort.
    pub(crate) fn spawn<F>(self: &Arc<Self>, task: F)
    where
        F: core::future::Future<Output = ()> + Send + 'static,
    {
        // Relaxed: keys only need to be unique.
        let key = self.tasks.next.fetch_add(1, Ordering::Relaxed);
        let guard = TaskGuard {
            shared: Arc::clone(self),
            key,
        };
        // The lock is held until the handle is stored, so a task that ends at once
        // removes its entry only after it was inserted.
        let mut tasks = lock(&self.tasks.tasks);
        let handle = tokio::spawn(async move {
            let _guard = guard;
            task.await;
        });
        tasks.insert(key, handle.abort_handle());
    }
}

/// How a connection begins, besides the server's own `on_connect`.
#[derive(Default)]
pub(crate) struct Opening {
    /// The id of the last event the client saw (SSE's `Last-Event-ID`): it reads
    /// the broadcasts that followed, where the log still holds them.
    pub(crate) resume: Option<String>,
    /// Called with the connection once it is registered (after `on_connect`).
    pub(crate) on_open: Option<Box<dyn FnOnce(Connection) + Send>>,
    /// The channel it reads instead of the server's hub.
    pub(crate) channel: Option<OpenChannel>,
}

impl Opening {
    /// Opening on `join`'s channel, resuming after its last event id.
    pub(crate) fn join(join: Join) -> Self {
        Self {
            resume: join.last_event_id,
            on_open: None,
            channel: Some(OpenChannel::Name(join.channel)),
        }
    }
}

/// The channel a connection opens on.
pub(crate) enum OpenChannel {
    /// To join once admitted.
    Name(String),
    /// Joined already (an SSE stream, whose body reads the channel's log).
    #[cfg_attr(not(feature = "axum"), allow(dead_code))]
    Joined(Member),
}

/// The `name` of the `CUSTOM` event a resuming client gets when the shared log no
/// longer holds what followed its last event (or the id is not this log's): what
/// it missed is lost, and a `STATE_SNAPSHOT` follows where the server has a
/// [`SnapshotSource`].
pub const RESUME_GAP: &str = "membound.resume_gap";

/// A registered connection; dropping it (at the connection's end, or when its task
/// is aborted) removes it from the registry and the hub and records its end.
struct Registration {
    shared: Arc<Shared>,
    core: Arc<Core>,
    reason: Option<CloseReason>,
    /// The channel the connection reads, if it joined one (left after the
    /// registration's own drop).
    channel: Option<Member>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let reason = self
            .reason
            .take()
            .unwrap_or_else(|| CloseReason::Lost("connection task aborted".into()));
        let id = self.core.id();
        self.core.outbound().close(reason.clone());
        self.shared.registry().remove(&id);
        match &self.channel {
            Some(member) => member.channel().detach(id),
            None => {
                self.shared.hub.detach(id);
            }
        }
        self.shared.open.fetch_sub(1, Ordering::AcqRel);
        let io = self.core.traffic();
        self.shared.count(|t| {
            t.retired.add(&io);
            *t.closed.slot(&reason) += 1;
        });
        self.core.finish(reason);
    }
}

async fn accept_loop(shared: Arc<Shared>, listener: TcpListener) {
    loop {
        let accepted = tokio::select! {
            biased;
            () = shared.stopping.wait() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((tcp, peer)) => match shared.begin_handshake() {
                Some(pending) => {
                    let task = serve_tcp(Arc::clone(&shared), tcp, peer, pending);
                    shared.spawn(task);
                }
                // Closed at once: a refused peer costs no task and no buffers.
                None => drop(tcp),
            },
            Err(error) => {
                shared.count(|t| t.accept_errors += 1);
                // Out of file descriptors or memory: give the system a moment instead
                // of spinning. A connection reset before accept needs no pause.
                if !matches!(
                    error.kind(),
                    io::ErrorKind::ConnectionAborted
                        | io::ErrorKind::ConnectionReset
                        | io::ErrorKind::Interrupted
                ) {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
}

/// A handshake's place under `max_pending_handshakes`, given back when dropped (the
/// handshake finished or failed, or its task was aborted).
struct PendingHandshake(Arc<Shared>);

impl Drop for PendingHandshake {
    fn drop(&mut self) {
        // Relaxed: see `Shared::begin_handshake`.
        self.0.pending.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn serve_tcp(
    shared: Arc<Shared>,
    tcp: TcpStream,
    peer: SocketAddr,
    pending: PendingHandshake,
) {
    // Events are small and latency matters more than packet count.
    let _ = tcp.set_nodelay(true);
    let ws_config = conn::websocket_config(&shared.config.connection);
    // The server's own sockets write prepared frames (see `conn::RawSocket`).
    let handshake = conn::RawSocket::accept(tcp, ws_config);
    let handshake = timeout(shared.config.handshake_timeout, handshake).await;
    // From here `max_connections` counts it, if it is admitted.
    drop(pending);
    match handshake {
        Ok(Ok(socket)) => {
            let opening = socket
                .query()
                .and_then(Join::from_query)
                .map(Opening::join)
                .unwrap_or_default();
            shared.run_connection(socket, Some(peer), opening).await;
        }
        _ => shared.count(|t| t.handshake_failures += 1),
    }
}

/// The server's connection tasks: counted, awaitable and abortable, so shutdown can
/// join them. Each task removes itself when it ends, so nothing accumulates.
#[derive(Default)]
struct Tracker {
    tasks: Mutex<HashMap<u64, AbortHandle>>,
    next: AtomicU64,
    idle: tokio::sync::Notify,
}

/// Removes its task from the tracker when the task's future is dropped (it ended,
/// or was aborted, even before it first ran).
struct TaskGuard {
    shared: Arc<Shared>,
    key: u64,
}

impl Drop for TaskGuard {
    fn drop(&mut self) {
        let tracker = &self.shared.tasks;
        let mut tasks = lock(&tracker.tasks);
        tasks.remove(&self.key);
        if tasks.is_empty() {
            tracker.idle.notify_waiters();
        }
    }
}

impl Tracker {
    fn len(&self) -> usize {
        lock(&self.tasks).len()
    }

    async fn wait_idle(&self) {
        loop {
            let notified = self.idle.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if lock(&self.tasks).is_empty() {
                return;
            }
            notified.await;
        }
    }

    fn abort_all(&self) {
        for handle in lock(&self.tasks).values() {
            handle.abort();
        }
    }
}
