//! Engines under the fan-out: events published to named channels, with offsets, an
//! epoch and a bounded history, on one node ([`MemoryEngine`]) or across many
//! (`RedisEngine`, feature `redis`).
//!
//! A channel (a run's or a thread's id, say) is what a connection reads. On every
//! node, each channel in use has its own [`Hub`] and [`SharedLog`], whose offsets are
//! the channel's own, assigned by the engine: the same event has the same offset on
//! every node. So a client that reconnects, to this node or another, names the last
//! event it saw (its id, `<epoch in hex>-<offset>`, which every channel event
//! carries in its [`EVENT_ID_FIELD`] and SSE in its `id:` line) and reads on from
//! there, or is told, with a `CUSTOM` event named [`RESUME_GAP`](super::RESUME_GAP)
//! and a fresh snapshot, that what it missed is gone. The delivery classes and the
//! per-connection limits then apply to a channel's log as to the server's own.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::prelude::rust_2021::*;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::config::{LogConfig, WsConfigError};
use super::event::{ClassMap, Event, EventType, Frame};
use super::hub::Hub;
use super::log::{random_epoch, SharedLog};
use super::outbound::Outbound;
use super::types::ConnId;
pub(crate) use crate::adapters::ending::bump;
use crate::sync::{AtomicU64, Ordering};

/// The top-level field every channel event carries its id in: `<epoch in
/// hex>-<offset>`, the same string as its SSE `id:` line. A client names the last
/// one it saw to resume ([`Join::last_event_id`]); membound's
/// [`Client`](super::Client) does so by itself when it reconnects. AG-UI's event
/// models allow extra fields, so the event stays valid.
pub const EVENT_ID_FIELD: &str = "eventId";

/// A boxed future, as the [`Engine`] trait's methods return (the trait is used as
/// `dyn Engine`).
pub type EngineFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why an engine could not publish or join.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum EngineError {
    /// The broker could not be reached, or failed the command.
    Unavailable(String),
    /// A lossless publish waited its whole timeout (the broker is down, or the
    /// publish buffer stayed full) and was not published.
    Timeout,
    /// A droppable publish was dropped (the publish buffer was full, or the broker
    /// down), and counted.
    Dropped,
    /// The node already tracks its limit of channels, each in use.
    TooManyChannels {
        /// The limit ([`EngineConfig::max_channels`]).
        max: usize,
    },
    /// A channel name that is empty, longer than [`MAX_CHANNEL_BYTES`], or holds a
    /// control character.
    InvalidChannel(String),
}

impl fmt::Display for EngineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unavailable(why) => write!(f, "engine unavailable: {why}"),
            Self::Timeout => f.write_str("lossless publish timed out"),
            Self::Dropped => f.write_str("droppable publish dropped"),
            Self::TooManyChannels { max } => write!(f, "too many channels in use (max {max})"),
            Self::InvalidChannel(name) => write!(f, "invalid channel name {name:?}"),
        }
    }
}

impl core::error::Error for EngineError {}

/// The longest channel name, in bytes.
pub const MAX_CHANNEL_BYTES: usize = 256;

/// Checks a channel name: 1 to [`MAX_CHANNEL_BYTES`] bytes, no control characters.
///
/// # Errors
///
/// [`EngineError::InvalidChannel`].
pub fn check_channel(name: &str) -> Result<(), EngineError> {
    if name.is_empty() || name.len() > MAX_CHANNEL_BYTES || name.chars().any(char::is_control) {
        return Err(EngineError::InvalidChannel(name.chars().take(64).collect()));
    }
    Ok(())
}

/// Where a published event landed in its channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Published {
    /// The channel's epoch: a new one when its history was lost.
    pub epoch: u64,
    /// The event's offset in the channel (increasing, one by one, within an epoch).
    pub offset: u64,
}

impl Published {
    /// The event's id, `<epoch in hex>-<offset>` (see [`EVENT_ID_FIELD`]).
    pub fn event_id(&self) -> String {
        super::log::event_id(self.epoch, self.offset)
    }
}

/// What a connection asks for when it opens: a channel, and where to resume.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Join {
    /// The channel to read.
    pub channel: String,
    /// The id of the last event the client saw ([`EVENT_ID_FIELD`]): it reads what
    /// followed, where the channel's history still holds it.
    pub last_event_id: Option<String>,
}

impl Join {
    /// Reads `channel` and `lastEventId` from a URL's query string (the part after
    /// `?`, percent-encoded), as a WebSocket client names them when it connects
    /// (`ws://host/events?channel=run-1&lastEventId=1f-42`). `None` without a
    /// `channel`.
    ///
    /// # Examples
    ///
    /// ```
    /// use membound::adapters::ws::Join;
    ///
    /// let join = Join::from_query("channel=run%201&lastEventId=a-7").unwrap();
    /// assert_eq!(join.channel, "run 1");
    /// assert_eq!(join.last_event_id.as_deref(), Some("a-7"));
    /// assert_eq!(Join::from_query("x=1"), None);
    /// ```
    pub fn from_query(query: &str) -> Option<Self> {
        let mut join = Self::default();
        for pair in query.split('&') {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            match key {
                "channel" => join.channel = percent_decode(value)?,
                "lastEventId" => join.last_event_id = Some(percent_decode(value)?),
                _ => {}
            }
        }
        (!join.channel.is_empty()).then_some(join)
    }

    /// The query string that [`from_query`](Self::from_query) reads back.
    pub fn to_query(&self) -> String {
        let mut out = format!("channel={}", percent_encode(&self.channel));
        if let Some(id) = &self.last_event_id {
            out.push_str("&lastEventId=");
            out.push_str(&percent_encode(id));
        }
        out
    }
}

/// `%XX` and `+` decoding of a query component; `None` for a bad escape or bytes
/// that are not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = s.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// Encodes every byte but the unreserved ones (RFC 3986 §2.3).
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// An engine's counters, shared by the engine and its channels.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) published: AtomicU64,
    pub(crate) received: AtomicU64,
    pub(crate) buffered: AtomicU64,
    pub(crate) dropped: AtomicU64,
    pub(crate) failed: AtomicU64,
    pub(crate) reconnects: AtomicU64,
    pub(crate) resume_hits: AtomicU64,
    pub(crate) resume_misses: AtomicU64,
    pub(crate) gaps_filled: AtomicU64,
    pub(crate) restarts: AtomicU64,
    pub(crate) lag_micros: AtomicU64,
}

fn get(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

/// A snapshot of an engine's figures, from [`Engine::metrics`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, crate::metrics::Metrics)]
#[metrics(kind = "ws_engine")]
#[non_exhaustive]
pub struct EngineMetrics {
    /// Channels this node has a log for now.
    #[metric(gauge)]
    pub channels: u64,
    /// Events this node published.
    #[metric(counter)]
    pub published: u64,
    /// Events this node received into its channel logs (its own included).
    #[metric(counter)]
    pub received: u64,
    /// Publishes waiting for the broker now (the bounded publish buffer).
    #[metric(gauge)]
    pub buffered: u64,
    /// Droppable publishes dropped (buffer full, or broker down).
    #[metric(counter)]
    pub dropped: u64,
    /// Lossless publishes that failed (timed out, or the broker refused them).
    #[metric(counter)]
    pub failed: u64,
    /// Reconnections to the broker.
    #[metric(counter)]
    pub reconnects: u64,
    /// Connections that resumed where they left off.
    #[metric(counter)]
    pub resume_hits: u64,
    /// Connections that named an event whose sequel is gone (or of another epoch):
    /// they got `RESUME_GAP` and a snapshot.
    #[metric(counter)]
    pub resume_misses: u64,
    /// Gaps in a channel's stream (missed while the broker was unreachable) filled
    /// from its history.
    #[metric(counter)]
    pub gaps_filled: u64,
    /// Channel logs restarted because their history was lost (a new epoch, or a
    /// gap the history no longer covers): their readers were resynchronised.
    #[metric(counter)]
    pub restarts: u64,
    /// Time from publish to receipt of the last event received (zero for an
    /// engine without a broker).
    #[metric(gauge, unit = "seconds")]
    pub lag: core::time::Duration,
}

impl Counters {
    pub(crate) fn snapshot(&self, channels: usize) -> EngineMetrics {
        EngineMetrics {
            channels: channels as u64,
            published: get(&self.published),
            received: get(&self.received),
            buffered: get(&self.buffered),
            dropped: get(&self.dropped),
            failed: get(&self.failed),
            reconnects: get(&self.reconnects),
            resume_hits: get(&self.resume_hits),
            resume_misses: get(&self.resume_misses),
            gaps_filled: get(&self.gaps_filled),
            restarts: get(&self.restarts),
            lag: core::time::Duration::from_micros(get(&self.lag_micros)),
        }
    }
}

/// One channel on one node: the [`Hub`] its connections read, whose log's offsets
/// are the channel's.
///
/// The hub is replaced when the channel's history is lost (a new epoch, or a gap the
/// history no longer covers): its connections move to the new hub, and each gets a
/// `CUSTOM` [`RESUME_GAP`](super::RESUME_GAP) event and a state resync, never a
/// silent gap.
pub struct Channel {
    name: Arc<str>,
    /// The log's bounds and the classes of what is received, for a restart.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    config: LogConfig,
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    classes: ClassMap,
    current: Mutex<Arc<Hub>>,
    counters: Arc<Counters>,
}

impl fmt::Debug for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Channel")
            .field("name", &self.name)
            .field("hub", &*self.lock())
            .finish_non_exhaustive()
    }
}

/// How a connection was attached to a channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Attached {
    /// From now on (no event named).
    Fresh,
    /// Right after the event the client named.
    Resumed,
    /// From now on: the sequel of the event it named is gone.
    Gap,
}

impl Channel {
    pub(crate) fn new(
        name: &str,
        config: LogConfig,
        classes: ClassMap,
        epoch: u64,
        next: u64,
        counters: Arc<Counters>,
    ) -> Self {
        let hub = Self::hub_at(&config, &classes, epoch, next);
        Self {
            name: Arc::from(name),
            config,
            classes,
            current: Mutex::new(hub),
            counters,
        }
    }

    fn hub_at(config: &LogConfig, classes: &ClassMap, epoch: u64, next: u64) -> Arc<Hub> {
        let log = SharedLog::build_at(*config, epoch, next);
        Arc::new(Hub::with_shared_log(Arc::new(log)).with_classes(classes.clone()))
    }

    fn lock(&self) -> MutexGuard<'_, Arc<Hub>> {
        self.current.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The channel's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The hub this node's connections to the channel read now.
    pub fn hub(&self) -> Arc<Hub> {
        Arc::clone(&self.lock())
    }

    /// The channel's epoch on this node.
    pub fn epoch(&self) -> u64 {
        self.lock().log().epoch()
    }

    /// The offset the channel's next event gets, as far as this node knows.
    pub fn next_offset(&self) -> u64 {
        self.lock().log().head()
    }

    /// Attaches a connection's queue, after the event `resume` names where the log
    /// still holds its sequel.
    pub(crate) fn attach(
        &self,
        id: ConnId,
        outbound: Arc<Outbound>,
        resume: Option<&str>,
    ) -> Attached {
        let hub = self.lock();
        let attached = match resume.map(|id| hub.log().cursor_after(id)) {
            None => {
                hub.attach(id, outbound);
                Attached::Fresh
            }
            Some(Some(cursor)) => {
                hub.attach_at(id, outbound, cursor);
                Attached::Resumed
            }
            Some(None) => {
                hub.attach(id, outbound);
                Attached::Gap
            }
        };
        match attached {
            Attached::Resumed => bump(&self.counters.resume_hits, 1),
            Attached::Gap => bump(&self.counters.resume_misses, 1),
            Attached::Fresh => {}
        }
        attached
    }

    /// Detaches a connection's queue from the hub it reads.
    pub(crate) fn detach(&self, id: ConnId) {
        self.lock().detach(id);
    }

    /// Connections attached now.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no connection is attached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends `frame` at the channel's next offset, stamped with its id: the
    /// in-memory engine's publish, under the channel's lock so that offsets and the
    /// log's order agree.
    fn append_next(&self, frame: &Frame) -> Published {
        let hub = self.lock();
        let log = hub.log();
        let at = Published {
            epoch: log.epoch(),
            offset: log.head(),
        };
        log.append(
            frame
                .stamped(EVENT_ID_FIELD, &at.event_id())
                .classed(hub.classes()),
        );
        at
    }

    /// Appends an event received from the broker at `offset` of `epoch` (stamped
    /// with its id already): `Ok(true)` when appended, `Ok(false)` for one already
    /// held (a duplicate), `Err(next)` when events from `next` on are missing
    /// before it (or its epoch is new): the caller fills the gap from history, or
    /// [`restart`](Self::restart)s.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn ingest(
        &self,
        epoch: u64,
        offset: u64,
        frame: Frame,
        wire: Option<tokio_tungstenite::tungstenite::Bytes>,
    ) -> Result<bool, u64> {
        let hub = self.lock();
        let log = hub.log();
        let next = log.head();
        if epoch != log.epoch() || offset > next {
            return Err(next);
        }
        if offset < next {
            return Ok(false);
        }
        log.append_prepared(frame, wire);
        bump(&self.counters.received, 1);
        Ok(true)
    }

    /// Starts the channel's log afresh at `next` of `epoch`, because what lies
    /// between the old log's head and `next` (or the old epoch) is lost. The
    /// connections move to the new log; each is told with a `CUSTOM`
    /// [`RESUME_GAP`](super::RESUME_GAP) event and resynchronised from its snapshot
    /// source (or closed as a slow consumer without one).
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn restart(&self, epoch: u64, next: u64) {
        let mut hub = self.lock();
        let old = Arc::clone(&hub);
        let lost_from = old.log().event_id(old.log().head());
        *hub = Self::hub_at(&self.config, &self.classes, epoch, next);
        bump(&self.counters.restarts, 1);
        let notice = gap_notice(&self.name, &lost_from)
            .encode()
            .with_class(super::event::DeliveryClass::Lossless);
        for (id, outbound) in old.drain() {
            hub.attach(id, Arc::clone(&outbound));
            outbound.notify_then_resync(notice.clone());
        }
        old.log().close();
    }
}

/// The `CUSTOM` event that tells a client its resume point is gone.
pub(crate) fn gap_notice(channel: &str, last_event_id: &str) -> Event {
    Event::new(EventType::Custom)
        .with("name", super::server::RESUME_GAP)
        .with(
            "value",
            serde_json::json!({ "lastEventId": last_event_id, "channel": channel }),
        )
}

/// Carries events between the nodes that serve a channel's connections, and gives
/// them offsets, an epoch and a bounded history.
///
/// Two implementations: [`MemoryEngine`] (one process; nothing to install; the
/// default) and `RedisEngine` (feature `redis`: several nodes through one Redis).
/// A [`Server`](super::Server) is given one with
/// [`ServerBuilder::engine`](super::ServerBuilder::engine); connections then name a
/// [`Join`], and [`Server::publish`](super::Server::publish) publishes.
pub trait Engine: Send + Sync + 'static {
    /// Publishes `frame` on `channel`: it reaches the channel's connections on every
    /// node, at the returned position.
    fn publish<'a>(
        &'a self,
        channel: &'a str,
        frame: Frame,
    ) -> EngineFuture<'a, Result<Published, EngineError>>;

    /// The channel's log on this node, for one more connection: the node starts
    /// following the channel (once, whatever the number of its connections) if it
    /// did not. Each `join` is matched by one [`leave`](Self::leave).
    fn join<'a>(&'a self, channel: &'a str) -> EngineFuture<'a, Result<Arc<Channel>, EngineError>>;

    /// One connection less on `channel`; the last one's leave may stop the node
    /// following it.
    fn leave(&self, channel: &Channel);

    /// A snapshot of the engine's figures.
    fn metrics(&self) -> EngineMetrics;
}

/// The bounds of an engine's channels on one node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default))]
#[non_exhaustive]
pub struct EngineConfig {
    /// Each channel's log on this node (its history, for [`MemoryEngine`]).
    pub log: LogConfig,
    /// Channels a node keeps a log for at once. [`MemoryEngine`] forgets the one
    /// least recently published to among those without connections to make room; a
    /// publish or join beyond it, with every channel in use, is
    /// [`EngineError::TooManyChannels`]. The channels' logs together hold at most
    /// `max_channels × log.max_bytes` bytes of events: size both for the node (the
    /// channel logs are not registered with a memory manager; the server's own
    /// log is).
    pub max_channels: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            log: LogConfig::default(),
            max_channels: 1024,
        }
    }
}

impl EngineConfig {
    /// Checks the bounds.
    ///
    /// # Errors
    ///
    /// [`WsConfigError`] for a bound of zero.
    pub fn validate(&self) -> Result<(), WsConfigError> {
        self.log.validate()?;
        if self.max_channels == 0 {
            return Err(WsConfigError::new(
                "engine.max_channels",
                "must be at least 1",
            ));
        }
        Ok(())
    }
}

struct Slot {
    channel: Arc<Channel>,
    members: usize,
    /// When it was last published to or joined (a tick of `Slots::ticks`).
    used: u64,
}

/// The in-process engine: each channel's history is its log on this node, and a
/// publish appends to it directly. Nothing to install; what a single node needs.
///
/// # Examples
///
/// ```
/// use membound::adapters::ws::{Engine, EngineConfig, Event, EventType, MemoryEngine};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let engine = MemoryEngine::new(EngineConfig::default())?;
/// let at = engine.publish("run-1", Event::new(EventType::RunStarted).encode()).await?;
/// let again = engine.publish("run-1", Event::new(EventType::RunFinished).encode()).await?;
/// assert_eq!(again.offset, at.offset + 1);
/// let channel = engine.join("run-1").await?;
/// assert_eq!(channel.next_offset(), again.offset + 1);
/// engine.leave(&channel);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
pub struct MemoryEngine {
    config: EngineConfig,
    channels: Mutex<Slots>,
    counters: Arc<Counters>,
}

/// The channels a [`MemoryEngine`] keeps, and its clock for "least recently used".
#[derive(Default)]
struct Slots {
    slots: HashMap<Arc<str>, Slot>,
    /// Publishes and joins so far (counted under the same lock).
    ticks: u64,
}

impl fmt::Debug for MemoryEngine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryEngine")
            .field("metrics", &self.metrics())
            .finish_non_exhaustive()
    }
}

impl MemoryEngine {
    /// An engine with `config`'s bounds.
    ///
    /// # Errors
    ///
    /// [`WsConfigError`] for a bound of zero.
    pub fn new(config: EngineConfig) -> Result<Self, WsConfigError> {
        config.validate()?;
        Ok(Self {
            config,
            channels: Mutex::new(Slots::default()),
            counters: Arc::default(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Slots> {
        self.channels.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The channel's slot, made (forgetting an idle one when full) if new.
    fn slot(&self, name: &str, member: bool) -> Result<Arc<Channel>, EngineError> {
        check_channel(name)?;
        let mut guard = self.lock();
        guard.ticks += 1;
        let tick = guard.ticks;
        let channels = &mut guard.slots;
        if !channels.contains_key(name) && channels.len() >= self.config.max_channels {
            let idle = channels
                .iter()
                .filter(|(_, slot)| slot.members == 0)
                .min_by_key(|(_, slot)| slot.used)
                .map(|(key, _)| Arc::clone(key));
            match idle {
                Some(key) => {
                    channels.remove(&key);
                }
                None => {
                    return Err(EngineError::TooManyChannels {
                        max: self.config.max_channels,
                    })
                }
            }
        }
        let slot = channels.entry(Arc::from(name)).or_insert_with(|| Slot {
            channel: Arc::new(Channel::new(
                name,
                self.config.log,
                ClassMap::new(),
                random_epoch(),
                1,
                Arc::clone(&self.counters),
            )),
            members: 0,
            used: tick,
        });
        slot.used = tick;
        if member {
            slot.members += 1;
        }
        Ok(Arc::clone(&slot.channel))
    }
}

impl Engine for MemoryEngine {
    fn publish<'a>(
        &'a self,
        channel: &'a str,
        frame: Frame,
    ) -> EngineFuture<'a, Result<Published, EngineError>> {
        Box::pin(async move {
            // One unit of the task's budget per event, as a hub broadcast takes.
            tokio::task::coop::consume_budget().await;
            let channel = self.slot(channel, false)?;
            let at = channel.append_next(&frame);
            bump(&self.counters.published, 1);
            bump(&self.counters.received, 1);
            Ok(at)
        })
    }

    fn join<'a>(&'a self, channel: &'a str) -> EngineFuture<'a, Result<Arc<Channel>, EngineError>> {
        Box::pin(async move { self.slot(channel, true) })
    }

    fn leave(&self, channel: &Channel) {
        if let Some(slot) = self.lock().slots.get_mut(channel.name()) {
            slot.members = slot.members.saturating_sub(1);
        }
    }

    fn metrics(&self) -> EngineMetrics {
        let channels = self.lock().slots.len();
        self.counters.snapshot(channels)
    }
}

/// One connection's membership of a channel: joined when made, left when dropped
/// (at the connection's end, or if its task is aborted first).
pub(crate) struct Member {
    engine: Arc<dyn Engine>,
    channel: Arc<Channel>,
}

impl Member {
    /// Joins `name` on `engine`.
    pub(crate) async fn join(engine: &Arc<dyn Engine>, name: &str) -> Result<Self, EngineError> {
        let channel = engine.join(name).await?;
        Ok(Self {
            engine: Arc::clone(engine),
            channel,
        })
    }

    pub(crate) fn channel(&self) -> &Arc<Channel> {
        &self.channel
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.engine.leave(&self.channel);
    }
}
