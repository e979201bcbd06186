//! The transport's configuration: per-connection queue and byte limits, inbound limits,
//! timeouts, and the server's and client's own settings. Every struct has a `Default`
//! and is checked by `validate` when a server or client is built.

use core::time::Duration;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::prelude::rust_2021::*;

use crate::config::ConfigError;
use crate::policy::OverflowPolicy;

/// The structure named in [`ConfigError::UnsupportedPolicy`] for an outbound queue's
/// [`droppable`](QueueConfig::droppable) policy.
const OUTBOUND_QUEUE: &str = "WebSocket outbound queue";

/// What a connection does with an inbound message that is not an event: a text
/// that is malformed JSON, not an object or without a string `type`, or a binary
/// message.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum MalformedPolicy {
    /// Close the connection with code 1007 (invalid payload) and the error as reason
    /// (default).
    #[default]
    Close,
    /// Keep the connection and send back a `RUN_ERROR` event whose `message` says
    /// what was wrong and whose `code` is `"MALFORMED_EVENT"`.
    ErrorEvent,
    /// Raw mode, for a transport that carries more than events (binary payloads,
    /// protocols without JSON): keep the connection and hand the message as it
    /// arrived ([`RawMessage`](super::RawMessage)) to the connection's raw handlers
    /// ([`Connection::on_raw`](super::Connection::on_raw)), through the same bounded
    /// inbound queue and byte budget as events, in arrival order with them. The
    /// size limits apply as to events. Counted in
    /// [`Traffic::raw_in`](super::Traffic::raw_in), not as malformed.
    Raw,
}

/// One connection's outbound queue and its byte limits, in the manner of Redis'
/// `client-output-buffer-limit`.
///
/// Bytes are the JSON text of the queued events.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct QueueConfig {
    /// Most queued events. Default 1024.
    pub capacity: usize,
    /// The most bytes the queue holds. A frame that would take it past this is
    /// treated as one that finds the queue full: droppables yield, and a lossless
    /// sender waits for room (up to [`lossless_timeout`](Self::lossless_timeout)),
    /// as it does when the queue is full in events. Only a frame that can never fit
    /// (larger than the limit itself, or a replacing snapshot that would still break
    /// it) closes the connection at once as a slow consumer. Default 8 MiB.
    pub hard_limit_bytes: usize,
    /// Queued bytes that, held continuously for
    /// [`soft_limit_for`](Self::soft_limit_for), close the connection as a slow
    /// consumer. Default 2 MiB; at most `hard_limit_bytes`.
    pub soft_limit_bytes: usize,
    /// How long the soft limit may be exceeded. Default 10 s; must be below the
    /// connection's [`write_timeout`](ConnectionConfig::write_timeout).
    pub soft_limit_for: Duration,
    /// How long a sender of a lossless event waits for room (in events or in bytes)
    /// before the connection is closed as a slow consumer. Default 5 s.
    pub lossless_timeout: Duration,
    /// What happens to a droppable event (`RAW`, `CUSTOM`, unknown types) that finds
    /// the queue full; either way the drop is counted.
    /// [`OverflowPolicy::DropOldest`] (default) evicts the oldest queued droppable
    /// events to make room; [`OverflowPolicy::DropNewest`] drops the event that found
    /// the queue full. Any other policy is refused by
    /// [`validate`](Self::validate) with [`ConfigError::UnsupportedPolicy`] (in
    /// [`WsConfigError::source`]): a droppable event never waits and is never handed
    /// back.
    pub droppable: OverflowPolicy,
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self {
            capacity: 1024,
            hard_limit_bytes: 8 << 20,
            soft_limit_bytes: 2 << 20,
            soft_limit_for: Duration::from_secs(10),
            lossless_timeout: Duration::from_secs(5),
            droppable: OverflowPolicy::DropOldest,
        }
    }
}

impl QueueConfig {
    /// Checks the settings.
    ///
    /// # Errors
    ///
    /// [`WsConfigError`] naming the first field that is zero or inconsistent; for a
    /// [`droppable`](Self::droppable) policy other than `DropOldest` and
    /// `DropNewest`, field `outbound.droppable` with
    /// [`ConfigError::UnsupportedPolicy`] as its [`source`](WsConfigError::source).
    ///
    /// # Examples
    ///
    /// ```
    /// use membound::adapters::ws::QueueConfig;
    /// use membound::{ConfigError, OverflowPolicy};
    ///
    /// let config = QueueConfig { droppable: OverflowPolicy::Reject, ..QueueConfig::default() };
    /// let err = config.validate().unwrap_err();
    /// assert_eq!(err.field, "outbound.droppable");
    /// assert!(matches!(
    ///     err.source,
    ///     Some(ConfigError::UnsupportedPolicy { policy: OverflowPolicy::Reject, .. })
    /// ));
    /// ```
    pub fn validate(&self) -> Result<(), WsConfigError> {
        nonzero("outbound.capacity", self.capacity)?;
        match self.droppable {
            OverflowPolicy::DropOldest | OverflowPolicy::DropNewest => {}
            policy => {
                return Err(WsConfigError::unsupported(
                    "outbound.droppable",
                    ConfigError::UnsupportedPolicy {
                        policy,
                        structure: OUTBOUND_QUEUE,
                    },
                ))
            }
        }
        nonzero("outbound.hard_limit_bytes", self.hard_limit_bytes)?;
        nonzero("outbound.soft_limit_bytes", self.soft_limit_bytes)?;
        if self.soft_limit_bytes > self.hard_limit_bytes {
            return Err(WsConfigError::new(
                "outbound.soft_limit_bytes",
                "must not exceed hard_limit_bytes",
            ));
        }
        nonzero_duration("outbound.lossless_timeout", self.lossless_timeout)
    }
}

/// Limits and dispatch settings for inbound events.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct InboundConfig {
    /// Largest inbound message in bytes (tungstenite's `max_message_size`); a larger
    /// one closes the connection with 1009. Default 1 MiB.
    pub max_message_bytes: usize,
    /// Largest inbound frame in bytes (tungstenite's `max_frame_size`). Default
    /// 256 KiB; at most `max_message_bytes`.
    pub max_frame_bytes: usize,
    /// Events parsed but not yet dispatched to handlers; when full the connection
    /// stops reading (the peer is slowed by TCP). Default 256.
    pub queue_capacity: usize,
    /// Bytes of received text that may wait in the inbound queue: a push that would
    /// take the queued bytes past this waits, as a push into a full queue does,
    /// unless the queue holds no bytes (so one message always gets through). Bounds a
    /// connection's queued text, which `queue_capacity` full-size messages would
    /// otherwise put at `queue_capacity * max_message_bytes`. Default 4 MiB; at
    /// least `max_message_bytes`, so that any message the connection accepts fits.
    pub max_queued_bytes: usize,
    /// What to do with a message that is not an event. Default
    /// [`MalformedPolicy::Close`]; [`MalformedPolicy::Raw`] turns raw mode on.
    pub on_malformed: MalformedPolicy,
    /// Most handlers on one connection. Default 64.
    pub max_handlers: usize,
    /// Most subscriptions on one connection. Default 64.
    pub max_subscriptions: usize,
    /// Events queued for one subscription; the oldest is dropped (and counted) when
    /// the subscriber falls behind. Default 256.
    pub subscription_capacity: usize,
    /// A subscription that has had no event delivered for this long expires.
    /// Default 5 min.
    pub subscription_ttl: Duration,
    /// Longest one handler may run on one event before it is abandoned (counted), so
    /// that a slow handler cannot stall the others. Default 5 s.
    pub handler_timeout: Duration,
    /// Strict mode: every inbound event of a type AG-UI 1.0 names must match the
    /// schema ([`agui::validate`](super::agui::validate): required fields present,
    /// fields of the right JSON types); one that does not is malformed, and
    /// `on_malformed` says what happens to it (a close with 1007, a `RUN_ERROR`
    /// reply, or the raw handlers), as for a message that is not JSON. Events of
    /// other types still pass. Default `false`: events are only checked to be JSON
    /// objects with a string `type`. Applies to a server's connections and to a
    /// client alike.
    #[cfg_attr(feature = "serde", serde(default))]
    pub strict: bool,
}

impl Default for InboundConfig {
    fn default() -> Self {
        Self {
            max_message_bytes: 1 << 20,
            max_frame_bytes: 256 << 10,
            queue_capacity: 256,
            max_queued_bytes: 4 << 20,
            on_malformed: MalformedPolicy::Close,
            max_handlers: 64,
            max_subscriptions: 64,
            subscription_capacity: 256,
            subscription_ttl: Duration::from_secs(300),
            handler_timeout: Duration::from_secs(5),
            strict: false,
        }
    }
}

impl InboundConfig {
    /// Checks the settings.
    ///
    /// # Errors
    ///
    /// [`WsConfigError`] naming the first field that is zero or inconsistent.
    pub fn validate(&self) -> Result<(), WsConfigError> {
        nonzero("inbound.max_message_bytes", self.max_message_bytes)?;
        nonzero("inbound.max_frame_bytes", self.max_frame_bytes)?;
        if self.max_frame_bytes > self.max_message_bytes {
            return Err(WsConfigError::new(
                "inbound.max_frame_bytes",
                "must not exceed max_message_bytes",
            ));
        }
        nonzero("inbound.queue_capacity", self.queue_capacity)?;
        nonzero("inbound.max_queued_bytes", self.max_queued_bytes)?;
        if self.max_queued_bytes < self.max_message_bytes {
            return Err(WsConfigError::new(
                "inbound.max_queued_bytes",
                "must be at least max_message_bytes",
            ));
        }
        nonzero("inbound.max_handlers", self.max_handlers)?;
        nonzero("inbound.max_subscriptions", self.max_subscriptions)?;
        nonzero("inbound.subscription_capacity", self.subscription_capacity)?;
        nonzero_duration("inbound.subscription_ttl", self.subscription_ttl)?;
        nonzero_duration("inbound.handler_timeout", self.handler_timeout)
    }
}

/// Settings of one connection, shared by the server's and the client's.
///
/// The socket's read buffer follows from the inbound frame limit: one read takes at
/// most 4 KiB, or one largest frame and its header when
/// [`InboundConfig::max_frame_bytes`] is smaller. A larger frame is still read
/// whole, in pieces; the small buffer is what keeps an idle connection cheap
/// (tungstenite's default allocates 128 KiB for every connection).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct ConnectionConfig {
    /// The outbound queue and its byte limits.
    pub outbound: QueueConfig,
    /// Inbound limits and dispatch.
    pub inbound: InboundConfig,
    /// tungstenite's `write_buffer_size`: bytes buffered before a write reaches the
    /// socket, where tungstenite writes the frames (the client, axum); what the
    /// writer gathers before one write there. Default 16 KiB.
    pub write_buffer_bytes: usize,
    /// tungstenite's `max_write_buffer_size`, which tungstenite leaves unlimited:
    /// capped small, since the outbound queue is where events wait. Default 64 KiB;
    /// must exceed `write_buffer_bytes`.
    ///
    /// On the server's own listener the writer writes the shared log's prepared
    /// frames itself: this is then the most it gathers for one vectored write (and
    /// at most 256 frames), mostly as references to the log's bytes rather than
    /// copies.
    pub max_write_buffer_bytes: usize,
    /// A ping is sent after this long without one. Default 20 s.
    pub keepalive_interval: Duration,
    /// The connection is closed when nothing (no frame, no pong) has arrived for this
    /// long. Default 60 s; must exceed `keepalive_interval`.
    pub idle_timeout: Duration,
    /// Longest one write (a frame reaching the socket) may take before the connection
    /// is dropped, without a close frame (counted as lost, 1006). Default 30 s; must
    /// exceed [`outbound.soft_limit_for`](QueueConfig::soft_limit_for).
    ///
    /// Which limit wins for a peer that stops reading: its writes block first, then
    /// its queue grows. Once the queue holds more than `soft_limit_bytes` for
    /// `soft_limit_for` (or a lossless event waits `lossless_timeout` for room), the
    /// connection is closed as a slow consumer (4008), which is what the defaults
    /// give a stalled peer with events still coming. A peer that stalls while so
    /// little is queued that the soft limit is not passed within
    /// `write_timeout - soft_limit_for` is dropped by this timeout instead.
    pub write_timeout: Duration,
    /// How long a closing side waits for the peer's close frame. Default 5 s.
    pub close_timeout: Duration,
}

impl Default for ConnectionConfig {
    fn default() -> Self {
        Self {
            outbound: QueueConfig::default(),
            inbound: InboundConfig::default(),
            write_buffer_bytes: 16 << 10,
            max_write_buffer_bytes: 64 << 10,
            keepalive_interval: Duration::from_secs(20),
            idle_timeout: Duration::from_secs(60),
            write_timeout: Duration::from_secs(30),
            close_timeout: Duration::from_secs(5),
        }
    }
}

impl ConnectionConfig {
    /// Checks the settings.
    ///
    /// # Errors
    ///
    /// [`WsConfigError`] naming the first field that is zero or inconsistent.
    pub fn validate(&self) -> Result<(), WsConfigError> {
        self.outbound.validate()?;
        self.inbound.validate()?;
        if self.max_write_buffer_bytes <= self.write_buffer_bytes {
            return Err(WsConfigError::new(
                "max_write_buffer_bytes",
                "must exceed write_buffer_bytes",
            ));
        }
        nonzero_duration("keepalive_interval", self.keepalive_interval)?;
        if self.idle_timeout <= self.keepalive_interval {
            return Err(WsConfigError::new(
                "idle_timeout",
                "must exceed keepalive_interval",
            ));
        }
        nonzero_duration("write_timeout", self.write_timeout)?;
        if self.outbound.soft_limit_for >= self.write_timeout {
            // A stalled peer's write blocks before its queue grows past the soft
            // limit, so the write timeout would always drop it first (1006) and the
            // slow-consumer close (4008) could not happen.
            return Err(WsConfigError::new(
                "outbound.soft_limit_for",
                "must be below write_timeout, or a stalled consumer is dropped by the \
                 write timeout before the soft limit can close it",
            ));
        }
        nonzero_duration("close_timeout", self.close_timeout)
    }
}

/// The server's settings.
///
/// # Examples
///
/// ```
/// use membound::adapters::ws::ServerConfig;
///
/// let config = ServerConfig { max_connections: 100, ..ServerConfig::default() };
/// assert!(config.bind.ip().is_loopback());
/// config.validate()?;
/// # Ok::<(), membound::adapters::ws::WsConfigError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct ServerConfig {
    /// Where to listen. Default `127.0.0.1:0` (loopback, a port the OS picks; the
    /// server reports it). Listening beyond loopback is a deliberate choice.
    pub bind: SocketAddr,
    /// Most open connections; one more is refused with close code 1013. Default
    /// 10 000.
    pub max_connections: usize,
    /// Most TCP connections whose WebSocket handshake is under way (accepted, not
    /// yet upgraded); one more is closed at once, before any handshake, and counted
    /// ([`ServerMetrics::refused_handshakes`](super::ServerMetrics::refused_handshakes)).
    /// `max_connections` counts only connections whose handshake is done, so
    /// without this cap peers that open TCP connections and never finish the
    /// handshake would each hold a task, a socket and its buffers (about 24 KB)
    /// until `handshake_timeout`. Default 64: a handshake takes well under a
    /// millisecond of CPU, so 64 at once let a 2-core server admit bursts of
    /// thousands of real clients a second, while peers that stall can hold at most
    /// about 1.5 MB. Connections handed over by axum are upgraded by axum and not
    /// counted here.
    pub max_pending_handshakes: usize,
    /// Longest a WebSocket handshake may take. Default 10 s.
    pub handshake_timeout: Duration,
    /// On shutdown, how long connections may take to deliver what they had queued
    /// before their close frame. Default 5 s.
    pub shutdown_timeout: Duration,
    /// Settings of each accepted connection.
    pub connection: ConnectionConfig,
    /// Bounds of the fan-out's shared log ([`SharedLog`](super::SharedLog)), which
    /// holds the broadcast events the connections have yet to take. Default 4096
    /// events, 16 MiB. A connection whose cursor falls behind the log's tail
    /// misses events (handled by its delivery classes), so keep the byte bound at
    /// least the connections' hard limit for that limit to be the one that acts.
    pub log: LogConfig,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            max_connections: 10_000,
            max_pending_handshakes: 64,
            handshake_timeout: Duration::from_secs(10),
            shutdown_timeout: Duration::from_secs(5),
            connection: ConnectionConfig::default(),
            log: LogConfig::default(),
        }
    }
}

impl ServerConfig {
    /// Checks the settings.
    ///
    /// # Errors
    ///
    /// [`WsConfigError`] naming the first field that is zero or inconsistent.
    pub fn validate(&self) -> Result<(), WsConfigError> {
        nonzero("max_connections", self.max_connections)?;
        nonzero("max_pending_handshakes", self.max_pending_handshakes)?;
        nonzero_duration("handshake_timeout", self.handshake_timeout)?;
        self.log.validate()?;
        self.connection.validate()
    }
}

/// How a client reconnects after losing its connection: exponential backoff with
/// jitter, a bounded number of times.
///
/// An attempt counts as made only when its connection stays open for
/// [`stable_after`](Self::stable_after): a connection that ends sooner (a server
/// that completes the handshake and then fails) is a failed attempt, so the delays
/// keep growing and `max_attempts` bounds the reconnections against a server that
/// keeps failing. A connection that lasts `stable_after` starts the count afresh
/// after its loss.
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct ReconnectPolicy {
    /// Reconnection attempts after a loss before the client gives up; 0 never
    /// reconnects. Attempts whose connection ends within `stable_after` count as
    /// failed, so this also bounds the reconnections to a server that accepts and
    /// then drops the client. Default 10.
    pub max_attempts: u32,
    /// Delay before the first attempt. Default 100 ms.
    pub initial_backoff: Duration,
    /// Longest delay between attempts. Default 10 s.
    pub max_backoff: Duration,
    /// Factor applied to the delay after each failed attempt, at least 1. Default 2.
    pub multiplier: f64,
    /// Fraction of each delay that is randomised, in `0..=1`: a delay `d` becomes a
    /// uniform pick in `[d × (1 − jitter), d]`. Default 0.5.
    pub jitter: f64,
    /// How long a connection must stay open to count as made, timed by the
    /// client's clock ([`Client::connect_with_clock`](super::Client::connect_with_clock)).
    /// A connection that ends sooner counts as a failed attempt; the next delay
    /// grows and the attempt count goes on. Default 5 s (longer than a handshake
    /// and a first exchange take, shorter than the least a working session lasts);
    /// must be greater than zero.
    pub stable_after: Duration,
}

impl Default for ReconnectPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 10,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(10),
            multiplier: 2.0,
            jitter: 0.5,
            stable_after: Duration::from_secs(5),
        }
    }
}

impl ReconnectPolicy {
    /// Checks the settings.
    ///
    /// # Errors
    ///
    /// [`WsConfigError`] naming the first field that is out of range.
    pub fn validate(&self) -> Result<(), WsConfigError> {
        if self.max_attempts > 0 {
            nonzero_duration("reconnect.initial_backoff", self.initial_backoff)?;
        }
        if self.max_backoff < self.initial_backoff {
            return Err(WsConfigError::new(
                "reconnect.max_backoff",
                "must not be below initial_backoff",
            ));
        }
        if !(self.multiplier >= 1.0 && self.multiplier.is_finite()) {
            return Err(WsConfigError::new(
                "reconnect.multiplier",
                "must be a finite number >= 1",
            ));
        }
        if !(0.0..=1.0).contains(&self.jitter) {
            return Err(WsConfigError::new("reconnect.jitter", "must be in 0..=1"));
        }
        nonzero_duration("reconnect.stable_after", self.stable_after)
    }
}

/// The client's settings.
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct ClientConfig {
    /// Longest a connection attempt (TCP connect and WebSocket handshake) may take.
    /// Default 10 s.
    pub dial_timeout: Duration,
    /// Reconnection after a lost connection.
    pub reconnect: ReconnectPolicy,
    /// Settings of the connection.
    pub connection: ConnectionConfig,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            dial_timeout: Duration::from_secs(10),
            reconnect: ReconnectPolicy::default(),
            connection: ConnectionConfig::default(),
        }
    }
}

impl ClientConfig {
    /// Checks the settings.
    ///
    /// # Errors
    ///
    /// [`WsConfigError`] naming the first field that is zero or out of range.
    pub fn validate(&self) -> Result<(), WsConfigError> {
        nonzero_duration("dial_timeout", self.dial_timeout)?;
        self.reconnect.validate()?;
        self.connection.validate()
    }
}

/// The bounds of a [`SharedLog`](super::SharedLog): the most events it holds, and the
/// most payload bytes (the byte bound is also its soft capacity, lowered under memory
/// pressure).
///
/// # Examples
///
/// ```
/// use membound::adapters::ws::LogConfig;
///
/// let config = LogConfig::new(4096, 8 << 20);
/// assert!(config.validate().is_ok());
/// assert_eq!(LogConfig::new(0, 1).validate().unwrap_err().field, "log.max_events");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default))]
#[non_exhaustive]
pub struct LogConfig {
    /// The most events held. Non-zero.
    pub max_events: usize,
    /// The most payload bytes held. Non-zero.
    pub max_bytes: u64,
    /// The most activities whose content the log tracks for activity resyncs (see
    /// [`SharedLog`](super::SharedLog#activities)); the one updated longest ago is
    /// forgotten first. Zero tracks none: a connection that misses an activity
    /// event is then closed as a slow consumer. Default 256.
    pub max_activities: usize,
    /// The most bytes the tracked activities may hold (estimated: each one's last
    /// snapshot plus the deltas folded in since). Default 1 MiB.
    pub max_activity_bytes: u64,
}

impl LogConfig {
    /// Bounds of `max_events` events and `max_bytes` payload bytes, and the default
    /// activity bounds.
    pub const fn new(max_events: usize, max_bytes: u64) -> Self {
        Self {
            max_events,
            max_bytes,
            max_activities: 256,
            max_activity_bytes: 1 << 20,
        }
    }

    /// These bounds, tracking at most `max_activities` activities holding at most
    /// `max_bytes` bytes.
    #[must_use]
    pub const fn with_activities(mut self, max_activities: usize, max_bytes: u64) -> Self {
        self.max_activities = max_activities;
        self.max_activity_bytes = max_bytes;
        self
    }

    /// Checks the bounds.
    ///
    /// # Errors
    ///
    /// [`WsConfigError`] naming a bound that is zero.
    pub fn validate(&self) -> Result<(), WsConfigError> {
        nonzero("log.max_events", self.max_events)?;
        if self.max_bytes == 0 {
            return Err(WsConfigError::new(
                "log.max_bytes",
                "must be greater than zero",
            ));
        }
        Ok(())
    }
}

impl Default for LogConfig {
    /// 4096 events, 16 MiB.
    fn default() -> Self {
        Self::new(4096, 16 << 20)
    }
}

/// A transport configuration that cannot work: which field, and why.
///
/// Not `Eq`: the crate's [`ConfigError`] it may carry is not (it has `f64` water
/// marks).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct WsConfigError {
    /// The field, dotted from the connection settings (`outbound.capacity`).
    pub field: &'static str,
    /// What is wrong with it.
    pub reason: &'static str,
    /// The crate-wide error behind it, where there is one: for an unsupported
    /// overflow policy, [`ConfigError::UnsupportedPolicy`] naming the policy.
    pub source: Option<ConfigError>,
}

impl WsConfigError {
    pub(crate) const fn new(field: &'static str, reason: &'static str) -> Self {
        Self {
            field,
            reason,
            source: None,
        }
    }

    const fn unsupported(field: &'static str, source: ConfigError) -> Self {
        Self {
            field,
            reason: "unsupported overflow policy (DropOldest and DropNewest only)",
            source: Some(source),
        }
    }
}

impl fmt::Display for WsConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.source {
            Some(source) => write!(f, "invalid transport setting `{}`: {source}", self.field),
            None => write!(
                f,
                "invalid transport setting `{}`: {}",
                self.field, self.reason
            ),
        }
    }
}

impl std::error::Error for WsConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_ref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

fn nonzero(field: &'static str, value: usize) -> Result<(), WsConfigError> {
    if value == 0 {
        Err(WsConfigError::new(field, "must be greater than zero"))
    } else {
        Ok(())
    }
}

fn nonzero_duration(field: &'static str, value: Duration) -> Result<(), WsConfigError> {
    if value.is_zero() {
        Err(WsConfigError::new(field, "must be greater than zero"))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        ServerConfig::default().validate().unwrap();
        ClientConfig::default().validate().unwrap();
    }

    #[test]
    fn bad_settings_name_their_field() {
        let mut c = ServerConfig::default();
        c.connection.outbound.capacity = 0;
        assert_eq!(c.validate().unwrap_err().field, "outbound.capacity");

        let mut c = ServerConfig::default();
        c.connection.outbound.soft_limit_bytes = c.connection.outbound.hard_limit_bytes + 1;
        assert_eq!(c.validate().unwrap_err().field, "outbound.soft_limit_bytes");

        let mut c = ServerConfig::default();
        c.connection.idle_timeout = c.connection.keepalive_interval;
        assert_eq!(c.validate().unwrap_err().field, "idle_timeout");

        let c = ServerConfig {
            max_pending_handshakes: 0,
            ..ServerConfig::default()
        };
        assert_eq!(c.validate().unwrap_err().field, "max_pending_handshakes");

        let mut c = ClientConfig::default();
        c.reconnect.jitter = f64::NAN;
        assert_eq!(c.validate().unwrap_err().field, "reconnect.jitter");
        c.reconnect.jitter = 0.5;
        c.reconnect.multiplier = 0.5;
        assert_eq!(c.validate().unwrap_err().field, "reconnect.multiplier");
        c.reconnect.multiplier = 2.0;
        c.reconnect.stable_after = Duration::ZERO;
        assert_eq!(c.validate().unwrap_err().field, "reconnect.stable_after");
    }

    #[test]
    fn unsupported_droppable_policies_are_refused_by_name() {
        for policy in [OverflowPolicy::DropOldest, OverflowPolicy::DropNewest] {
            let mut c = ServerConfig::default();
            c.connection.outbound.droppable = policy;
            c.validate().unwrap();
        }
        for policy in [
            OverflowPolicy::Reject,
            OverflowPolicy::Block,
            OverflowPolicy::BlockTimeout(Duration::from_secs(1)),
        ] {
            let mut c = ClientConfig::default();
            c.connection.outbound.droppable = policy;
            let err = c.validate().unwrap_err();
            assert_eq!(err.field, "outbound.droppable");
            assert_eq!(
                err.source,
                Some(ConfigError::UnsupportedPolicy {
                    policy,
                    structure: OUTBOUND_QUEUE,
                })
            );
            assert!(err.to_string().contains(&format!("{policy:?}")));
        }
    }
}
