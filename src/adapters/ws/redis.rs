//! The Redis engine (feature `redis`): channels across nodes through one Redis,
//! with offsets, an epoch and a bounded history kept there.
//!
//! See [`RedisEngine`] for the design.

use core::time::Duration;
// `tokio::select!` names `panic!`; the std prelude and core both have one.
#[allow(unused_imports)]
use core::panic;
use std::collections::HashMap;
use std::fmt;
use std::prelude::rust_2021::*;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use futures_util::stream::FuturesUnordered;
use futures_util::StreamExt;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio::task::JoinHandle;
use tokio::time::{sleep, timeout, Instant};

use super::engine::{bump, check_channel, Channel, Counters};
use super::event::{ClassMap, DeliveryClass, EventType, Frame};
use super::EVENT_ID_FIELD;
use super::{Engine, EngineConfig, EngineError, EngineFuture, EngineMetrics, Published};
use crate::adapters::ws::WsConfigError;
use crate::sync::{AtomicBool, Ordering};
use tokio_tungstenite::tungstenite::{Bytes, Utf8Bytes};

/// The publish script, for a batch of events on one channel. KEYS: the history
/// stream, the meta hash. ARGV: the pub/sub channel, the history's length, its time
/// to live in seconds, an epoch to use if the channel has none, the publish time in
/// microseconds, then the events (each `<class>:<revision>:<json>`). It returns the
/// epoch and the first event's offset, and publishes one message for the batch: a
/// line `<epoch>:<first offset>:<time>`, then the events, a line each.
const PUBLISH: &str = r"
local epoch = redis.call('hget', KEYS[2], 'e')
if not epoch then
  epoch = ARGV[4]
  redis.call('del', KEYS[1])
  redis.call('hset', KEYS[2], 'e', epoch, 's', 0)
end
local n = #ARGV - 5
local last = redis.call('hincrby', KEYS[2], 's', n)
local first = last - n + 1
for i = 1, n do
  redis.call('xadd', KEYS[1], string.format('%d-0', first + i - 1), 'd', ARGV[5 + i])
end
redis.call('xtrim', KEYS[1], 'MAXLEN', ARGV[2])
redis.call('expire', KEYS[1], ARGV[3])
redis.call('expire', KEYS[2], ARGV[3])
local head = epoch .. ':' .. string.format('%d', first) .. ':' .. ARGV[5]
redis.call('publish', ARGV[1], head .. '\n' .. table.concat(ARGV, '\n', 6))
return {epoch, first}
";

/// Events one publish script carries at most: a batch is what queued while the
/// previous one ran, never a wait for more.
const MAX_BATCH: usize = 128;
/// And their bytes at most (a batch takes at least one event).
const MAX_BATCH_BYTES: usize = 1 << 20;
/// Publish scripts in flight at once.
const MAX_IN_FLIGHT: usize = 4;

/// The open script: the channel's epoch (drawn now if it has none) and its last
/// offset. KEYS: the history stream, the meta hash. ARGV: an epoch, the time to live.
const OPEN: &str = r"
if redis.call('hsetnx', KEYS[2], 'e', ARGV[1]) == 1 then
  redis.call('del', KEYS[1])
  redis.call('hset', KEYS[2], 's', 0)
  redis.call('expire', KEYS[2], ARGV[2])
end
return {redis.call('hget', KEYS[2], 'e'), redis.call('hget', KEYS[2], 's')}
";

/// How a [`RedisEngine`] reaches Redis and bounds what it keeps.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct RedisConfig {
    /// `redis://host:port/db`.
    pub url: String,
    /// Prefix of every key and pub/sub channel name (`<prefix>:s:<channel>` for
    /// the history, `:m:` for the meta hash, `:c:` for pub/sub).
    pub prefix: String,
    /// Each channel's log on this node, and how many channels at once.
    pub engine: EngineConfig,
    /// Events each channel's history keeps in Redis (`XADD MAXLEN`, exact).
    pub history_len: usize,
    /// How long a channel's history outlives its last publish.
    pub history_ttl: Duration,
    /// The delivery class of each event type received, where it differs from its
    /// default (as the server's [`ServerBuilder::classes`](super::ServerBuilder::classes)).
    pub classes: ClassMap,
    /// How long a lossless publish waits for Redis (for room in the buffer, and
    /// across retries) before [`EngineError::Timeout`].
    pub publish_timeout: Duration,
    /// Publishes waiting for Redis at once; a droppable one beyond it is dropped.
    pub max_buffered: usize,
    /// How long one Redis command may take.
    pub command_timeout: Duration,
    /// The first delay before reconnecting the pub/sub connection (doubling, up to
    /// two seconds).
    pub reconnect_delay: Duration,
}

impl RedisConfig {
    /// Defaults for the Redis at `url`: prefix `membound`, histories of 1,024
    /// events kept an hour, lossless publishes waiting up to 5 s.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            prefix: "membound".into(),
            engine: EngineConfig::default(),
            history_len: 1024,
            history_ttl: Duration::from_secs(3600),
            classes: ClassMap::new(),
            publish_timeout: Duration::from_secs(5),
            max_buffered: 1024,
            command_timeout: Duration::from_secs(2),
            reconnect_delay: Duration::from_millis(50),
        }
    }

    fn validate(&self) -> Result<(), WsConfigError> {
        self.engine.validate()?;
        let checks: [(bool, &'static str); 5] = [
            (self.history_len == 0, "redis.history_len"),
            (self.history_ttl.as_secs() == 0, "redis.history_ttl"),
            (self.max_buffered == 0, "redis.max_buffered"),
            (self.command_timeout.is_zero(), "redis.command_timeout"),
            (self.reconnect_delay.is_zero(), "redis.reconnect_delay"),
        ];
        match checks.iter().find(|(bad, _)| *bad) {
            Some((_, field)) => Err(WsConfigError::new(
                field,
                "must be at least 1 (one second for the ttl)",
            )),
            None => Ok(()),
        }
    }
}

/// Why a [`RedisEngine`] could not be made.
#[derive(Debug)]
#[non_exhaustive]
pub enum RedisEngineError {
    /// The configuration cannot work.
    Config(WsConfigError),
    /// The URL is not a Redis URL.
    Url(redis::RedisError),
}

impl fmt::Display for RedisEngineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Config(e) => write!(f, "redis engine config: {e}"),
            Self::Url(e) => write!(f, "redis url: {e}"),
        }
    }
}

impl core::error::Error for RedisEngineError {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            Self::Config(e) => Some(e),
            Self::Url(e) => Some(e),
        }
    }
}

struct Slot {
    channel: Arc<Channel>,
    members: usize,
}

enum Command {
    /// Subscribe the node to a channel, open its log, and count one member.
    Join(Arc<str>, oneshot::Sender<Result<Arc<Channel>, EngineError>>),
    /// Unsubscribe from a channel no connection reads any more.
    Leave(Arc<str>),
}

/// A publish waiting for its batch.
struct Pending {
    channel: Arc<str>,
    /// `<class>:<revision>:<json>`.
    line: String,
    droppable: bool,
    deadline: Instant,
    reply: oneshot::Sender<Result<Published, EngineError>>,
}

struct Inner {
    config: RedisConfig,
    conn: ConnectionManager,
    /// To the batcher task.
    batches: mpsc::UnboundedSender<Pending>,
    /// Set while Redis fails publishes: a droppable one is dropped at once.
    down: AtomicBool,
    publish: redis::Script,
    open: redis::Script,
    channels: Mutex<HashMap<Arc<str>, Slot>>,
    commands: mpsc::UnboundedSender<Command>,
    permits: Semaphore,
    counters: Arc<Counters>,
}

/// The engine that carries channel events between nodes through Redis.
///
/// # Design
///
/// The shape is Centrifugo's Redis engine:
///
/// - **Publish** is one Lua script, atomic in Redis: it takes the channel's next
///   offset (`HINCRBY` on the channel's meta hash, which also holds its epoch), adds
///   the event to the channel's history (a stream capped with `XADD MAXLEN`, entry id
///   `<offset>-0`), sets both keys' time to live, and `PUBLISH`es
///   `<epoch>:<offset>:<publish time>:<event JSON>` on the channel.
/// - **Each node subscribes once per channel** that any of its connections reads,
///   on one pub/sub connection, and appends what arrives to that channel's
///   [`SharedLog`](super::SharedLog): an event crosses the network once per node,
///   and the delivery classes and per-connection limits then apply as on one node.
/// - **Offsets and epoch.** A channel's offsets go up one by one. When its history
///   is lost (the keys expired, Redis restarted without persistence), the next
///   publish draws a new epoch, which makes every id of the old one void. A node
///   that sees an offset beyond the next it expects (it missed messages while its
///   pub/sub connection was down) fills the gap from the history; where the history
///   no longer reaches back, or the epoch is new, it restarts the channel's log, and
///   every connection on it gets a `CUSTOM` [`RESUME_GAP`](super::RESUME_GAP) event
///   and a state resync: never a silent gap.
/// - **Joining** a channel reads its recent history into the node's log, so a
///   client that reconnects to another node resumes there.
/// - **Faults.** Publishes wait for Redis in a bounded buffer
///   ([`RedisConfig::max_buffered`]): a lossless one up to
///   [`RedisConfig::publish_timeout`] (then [`EngineError::Timeout`]), a droppable
///   one not at all (dropped and counted, [`EngineError::Dropped`]). The pub/sub
///   connection reconnects with backoff, re-subscribes, and fills each channel's gap.
///   Connections keep being served from the node's logs throughout. Redis's own
///   output-buffer limit for pub/sub clients, which disconnects a node that reads too
///   slowly, is handled as an outage like any other.
///
/// # Examples
///
/// ```no_run
/// use std::sync::Arc;
/// use membound::adapters::ws::{Event, EventType, RedisConfig, RedisEngine, Server, ServerConfig};
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let engine = RedisEngine::new(RedisConfig::new("redis://127.0.0.1:6379"))?;
/// let server = Server::builder(ServerConfig::default()).engine(Arc::new(engine)).bind().await?;
/// // Clients connect to ws://<addr>/?channel=run-1 on any node.
/// server.publish("run-1", &Event::new(EventType::RunStarted)).await?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
pub struct RedisEngine {
    inner: Arc<Inner>,
    tasks: [JoinHandle<()>; 2],
}

impl fmt::Debug for RedisEngine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisEngine")
            .field("url", &self.inner.config.url)
            .field("metrics", &self.metrics())
            .finish_non_exhaustive()
    }
}

impl Drop for RedisEngine {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl RedisEngine {
    /// An engine on the Redis at `config.url`. It connects lazily: Redis need not
    /// be up yet (publishes wait for it, joins fail until it is). Must be called
    /// inside a tokio runtime.
    ///
    /// # Errors
    ///
    /// [`RedisEngineError`] for a configuration that cannot work or a bad URL.
    pub fn new(config: RedisConfig) -> Result<Self, RedisEngineError> {
        config.validate().map_err(RedisEngineError::Config)?;
        let client = redis::Client::open(config.url.as_str()).map_err(RedisEngineError::Url)?;
        let manager = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.command_timeout))
            .set_response_timeout(Some(config.command_timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let conn = ConnectionManager::new_lazy_with_config(client.clone(), manager)
            .map_err(RedisEngineError::Url)?;
        let (commands, received) = mpsc::unbounded_channel();
        let (batches, queued) = mpsc::unbounded_channel();
        let inner = Arc::new(Inner {
            batches,
            down: AtomicBool::new(false),
            permits: Semaphore::new(config.max_buffered),
            config,
            conn,
            publish: redis::Script::new(PUBLISH),
            open: redis::Script::new(OPEN),
            channels: Mutex::new(HashMap::new()),
            commands,
            counters: Arc::default(),
        });
        let tasks = [
            tokio::spawn(follow(Arc::clone(&inner), client, received)),
            tokio::spawn(batcher(Arc::clone(&inner), queued)),
        ];
        Ok(Self { inner, tasks })
    }

    /// The Redis keys of `channel`: its history stream and its meta hash (for
    /// tools and tests that look at what Redis holds).
    pub fn keys(&self, channel: &str) -> (String, String) {
        self.inner.keys(channel)
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, HashMap<Arc<str>, Slot>> {
        self.channels.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn keys(&self, channel: &str) -> (String, String) {
        let p = &self.config.prefix;
        (format!("{p}:s:{channel}"), format!("{p}:m:{channel}"))
    }

    fn pubsub_name(&self, channel: &str) -> String {
        format!("{}:c:{channel}", self.config.prefix)
    }

    fn ttl_secs(&self) -> u64 {
        self.config.history_ttl.as_secs().max(1)
    }

    /// One member less; the last one's leave unsubscribes the node.
    fn leave(&self, name: &str) {
        let mut channels = self.lock();
        let Some(slot) = channels.get_mut(name) else {
            return;
        };
        slot.members = slot.members.saturating_sub(1);
        if slot.members == 0 {
            if let Some((name, _)) = channels.remove_entry(name) {
                let _ = self.commands.send(Command::Leave(name));
            }
        }
    }

    /// One command with the command timeout.
    async fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, EngineError> {
        let mut conn = self.conn.clone();
        match timeout(self.config.command_timeout, cmd.query_async(&mut conn)).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(EngineError::Unavailable(e.to_string())),
            Err(_) => Err(EngineError::Unavailable("redis command timed out".into())),
        }
    }

    /// One run of the publish script for `lines` on `channel`.
    async fn publish_batch(&self, channel: &str, lines: &[&str]) -> Result<Published, EngineError> {
        let (stream, meta) = self.keys(channel);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64);
        let mut conn = self.conn.clone();
        let mut invocation = self.publish.key(stream);
        invocation
            .key(meta)
            .arg(self.pubsub_name(channel))
            .arg(self.config.history_len)
            .arg(self.ttl_secs())
            .arg(format!("{:x}", super::log::random_epoch()))
            .arg(now);
        for line in lines {
            invocation.arg(*line);
        }
        let run = invocation.invoke_async::<(String, u64)>(&mut conn);
        match timeout(self.config.command_timeout, run).await {
            Ok(Ok((epoch, offset))) => Ok(Published {
                epoch: parse_epoch(&epoch)?,
                offset,
            }),
            Ok(Err(e)) => Err(EngineError::Unavailable(e.to_string())),
            Err(_) => Err(EngineError::Unavailable("redis publish timed out".into())),
        }
    }

    /// Queues `frame` for the batcher and waits for its place in the channel. The
    /// publish buffer is bounded ([`RedisConfig::max_buffered`]): a lossless
    /// publish waits for room up to its timeout, a droppable one does not wait, and
    /// is dropped at once while Redis is failing.
    async fn publish(&self, channel: &str, frame: Frame) -> Result<Published, EngineError> {
        check_channel(channel)?;
        let droppable = frame.class() == DeliveryClass::Droppable;
        if droppable && self.down.load(Ordering::Relaxed) {
            return Err(self.fail(true, EngineError::Dropped));
        }
        let deadline = Instant::now() + self.config.publish_timeout;
        let permit = if droppable {
            self.permits.try_acquire().ok()
        } else {
            tokio::time::timeout_at(deadline, self.permits.acquire())
                .await
                .ok()
                .and_then(Result::ok)
        };
        let Some(_permit) = permit else {
            return Err(self.fail(droppable, EngineError::Timeout));
        };
        bump(&self.counters.buffered, 1);
        let _buffered = Unbuffer(&self.counters);
        let (reply, placed) = oneshot::channel();
        let pending = Pending {
            channel: Arc::from(channel),
            line: encode_line(&frame),
            droppable,
            deadline,
            reply,
        };
        self.batches
            .send(pending)
            .map_err(|_| EngineError::Unavailable("engine stopped".into()))?;
        placed
            .await
            .unwrap_or_else(|_| Err(EngineError::Unavailable("engine stopped".into())))
    }

    /// Counts a publish that did not happen, and says why.
    fn fail(&self, droppable: bool, why: EngineError) -> EngineError {
        if droppable {
            bump(&self.counters.dropped, 1);
            EngineError::Dropped
        } else {
            bump(&self.counters.failed, 1);
            why
        }
    }

    /// Publishes one channel's share of a batch, in order, retrying while Redis
    /// fails: droppables are dropped at the first failure, a lossless publish past
    /// its deadline fails with [`EngineError::Timeout`].
    async fn publish_group(&self, channel: &str, mut group: Vec<Pending>) {
        let mut delay = self.config.reconnect_delay;
        while !group.is_empty() {
            let lines: Vec<&str> = group.iter().map(|p| p.line.as_str()).collect();
            match self.publish_batch(channel, &lines).await {
                Ok(at) => {
                    self.down.store(false, Ordering::Relaxed);
                    bump(&self.counters.published, group.len() as u64);
                    for (i, pending) in group.into_iter().enumerate() {
                        let _ = pending.reply.send(Ok(Published {
                            epoch: at.epoch,
                            offset: at.offset + i as u64,
                        }));
                    }
                    return;
                }
                Err(_) => {
                    self.down.store(true, Ordering::Relaxed);
                    let now = Instant::now();
                    let (keep, failed): (Vec<Pending>, Vec<Pending>) = group
                        .into_iter()
                        .partition(|p| !p.droppable && now < p.deadline);
                    for pending in failed {
                        let why = if pending.droppable {
                            EngineError::Dropped
                        } else {
                            EngineError::Timeout
                        };
                        let _ = pending.reply.send(Err(self.fail(pending.droppable, why)));
                    }
                    group = keep;
                    let Some(next) = group.iter().map(|p| p.deadline).min() else {
                        return;
                    };
                    sleep(delay.min(next.saturating_duration_since(now))).await;
                    delay = (delay * 2).min(Duration::from_millis(500));
                }
            }
        }
    }

    /// The channel's log on this node, opened from Redis: its epoch, and its recent
    /// history, so that a client that left another node resumes here.
    async fn open_channel(&self, name: &str) -> Result<Arc<Channel>, EngineError> {
        let (stream, meta) = self.keys(name);
        let mut conn = self.conn.clone();
        let mut invocation = self.open.key(&stream);
        invocation
            .key(&meta)
            .arg(format!("{:x}", super::log::random_epoch()))
            .arg(self.ttl_secs());
        let run = invocation.invoke_async::<(String, u64)>(&mut conn);
        let (epoch, last) = match timeout(self.config.command_timeout, run).await {
            Ok(Ok(found)) => found,
            Ok(Err(e)) => return Err(EngineError::Unavailable(e.to_string())),
            Err(_) => return Err(EngineError::Unavailable("redis open timed out".into())),
        };
        let epoch = parse_epoch(&epoch)?;
        let keep = self
            .config
            .engine
            .log
            .max_events
            .min(self.config.history_len);
        let recent: Vec<(String, Vec<(String, String)>)> = self
            .query(
                redis::cmd("XREVRANGE")
                    .arg(&stream)
                    .arg("+")
                    .arg("-")
                    .arg("COUNT")
                    .arg(keep),
            )
            .await?;
        let first = recent
            .last()
            .and_then(|(id, _)| parse_entry_id(id))
            .unwrap_or(last + 1);
        let channel = Arc::new(Channel::new(
            name,
            self.config.engine.log,
            self.config.classes.clone(),
            epoch,
            first,
            Arc::clone(&self.counters),
        ));
        for (id, fields) in recent.iter().rev() {
            let Some(offset) = parse_entry_id(id) else {
                continue;
            };
            if let Some((frame, wire)) = self.entry_frame(fields, epoch, offset) {
                let _ = channel.ingest(epoch, offset, frame, Some(wire));
            }
        }
        Ok(channel)
    }

    /// A history entry's event at `offset` of `epoch`.
    fn entry_frame(
        &self,
        fields: &[(String, String)],
        epoch: u64,
        offset: u64,
    ) -> Option<(Frame, Bytes)> {
        let (_, line) = fields.iter().find(|(k, _)| k == "d")?;
        decode_line(line, &self.config.classes, epoch, offset)
    }

    /// Appends a received batch to its channel's log, filling a gap before it from
    /// the history first, or restarting the log where the history is lost. An
    /// error means the gap could not be looked at: the caller reconnects, and the
    /// catch-up after it fills the gap.
    async fn receive(&self, name: &str, payload: &str) -> Result<(), EngineError> {
        let Some(channel) = self.lock().get(name).map(|s| Arc::clone(&s.channel)) else {
            return Ok(());
        };
        let mut lines = payload.split('\n');
        let mut head = lines.next().unwrap_or("").splitn(3, ':');
        let (Some(Ok(epoch)), Some(Ok(first)), sent) = (
            head.next().map(|e| u64::from_str_radix(e, 16)),
            head.next().map(str::parse::<u64>),
            head.next().and_then(|t| t.parse::<u64>().ok()),
        ) else {
            return Ok(());
        };
        if let Some(sent) = sent {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_micros() as u64);
            self.counters
                .lag_micros
                .store(now.saturating_sub(sent), Ordering::Relaxed);
        }
        let frames: Vec<(u64, Frame, Bytes)> = lines
            .enumerate()
            .filter_map(|(i, line)| {
                let offset = first + i as u64;
                decode_line(line, &self.config.classes, epoch, offset).map(|(f, w)| (offset, f, w))
            })
            .collect();
        let Some(&(last, _, _)) = frames.last() else {
            return Ok(());
        };
        // Only this task appends to the node's channel logs, so what the log
        // expects next cannot change under this check.
        if epoch != channel.epoch() || first > channel.next_offset() {
            // Missing events before the batch (or a new epoch): from the history,
            // up to the end of the batch, which the log then holds already.
            self.catch_up(&channel, Some((epoch, last))).await?;
        }
        for (offset, frame, wire) in frames {
            // A duplicate (already read from the history) is skipped.
            let _ = channel.ingest(epoch, offset, frame, Some(wire));
        }
        Ok(())
    }

    /// Reads what the channel's log lacks from the history, up to `until` (an
    /// event just received) or the history's end: appended in order where it
    /// follows on; where it does not (lost history, or a new epoch), the log
    /// restarts at the oldest event the history holds.
    async fn catch_up(
        &self,
        channel: &Channel,
        until: Option<(u64, u64)>,
    ) -> Result<(), EngineError> {
        let (stream, meta) = self.keys(channel.name());
        let epoch = self
            .query::<Option<String>>(redis::cmd("HGET").arg(&meta).arg("e"))
            .await?;
        let Some(epoch) = epoch.and_then(|e| parse_epoch(&e).ok()) else {
            // No history at all (expired, or Redis lost it): the epoch of the event
            // received, if any, starts a new log.
            if let Some((epoch, offset)) = until {
                if epoch != channel.epoch() || offset > channel.next_offset() {
                    channel.restart(epoch, offset);
                }
            }
            return Ok(());
        };
        let same_epoch = epoch == channel.epoch();
        let from = if same_epoch { channel.next_offset() } else { 1 };
        let count = self.config.history_len;
        let entries = self
            .query::<Vec<(String, Vec<(String, String)>)>>(
                redis::cmd("XRANGE")
                    .arg(&stream)
                    .arg(format!("{from}-0"))
                    .arg("+")
                    .arg("COUNT")
                    .arg(count),
            )
            .await?;
        let first = entries.first().and_then(|(id, _)| parse_entry_id(id));
        let start = match (first, until) {
            (Some(first), _) => first,
            (None, Some((e, offset))) if e == epoch => offset,
            (None, _) => return Ok(()),
        };
        if !same_epoch || start > channel.next_offset() {
            channel.restart(epoch, start);
        } else {
            bump(&self.counters.gaps_filled, 1);
        }
        for (id, fields) in &entries {
            let Some(offset) = parse_entry_id(id) else {
                continue;
            };
            if until.is_some_and(|(_, upto)| offset > upto) {
                break;
            }
            if let Some((frame, wire)) = self.entry_frame(fields, epoch, offset) {
                let _ = channel.ingest(epoch, offset, frame, Some(wire));
            }
        }
        Ok(())
    }
}

/// Decrements the buffered publishes when dropped.
struct Unbuffer<'a>(&'a Counters);

impl Drop for Unbuffer<'_> {
    fn drop(&mut self) {
        self.0.buffered.fetch_sub(1, Ordering::Relaxed);
    }
}

fn parse_epoch(s: &str) -> Result<u64, EngineError> {
    u64::from_str_radix(s, 16)
        .map_err(|_| EngineError::Unavailable(format!("bad epoch {s:?} in redis")))
}

/// The offset of a history entry id, `<offset>-0`.
fn parse_entry_id(id: &str) -> Option<u64> {
    id.split_once('-')?.0.parse().ok()
}

/// The node's pub/sub task: one connection to Redis for every channel the node
/// follows; it reconnects after a loss, re-subscribes and catches each channel up.
async fn follow(
    inner: Arc<Inner>,
    client: redis::Client,
    mut commands: mpsc::UnboundedReceiver<Command>,
) {
    let mut delay = inner.config.reconnect_delay;
    let mut connected_before = false;
    loop {
        // A join that arrives while connecting waits for the connection (up to
        // its own timeout); one that arrives while Redis is down fails at once.
        let connecting = timeout(inner.config.command_timeout, client.get_async_pubsub());
        let Some(pubsub) = connecting.await.ok().and_then(Result::ok) else {
            let pause = sleep(delay);
            tokio::pin!(pause);
            loop {
                tokio::select! {
                    () = &mut pause => break,
                    command = commands.recv() => match command {
                        Some(Command::Join(_, reply)) => {
                            let down = EngineError::Unavailable("redis pub/sub down".into());
                            let _ = reply.send(Err(down));
                        }
                        Some(Command::Leave(_)) => {}
                        None => return,
                    },
                }
            }
            delay = (delay * 2).min(Duration::from_secs(2));
            continue;
        };
        if connected_before {
            bump(&inner.counters.reconnects, 1);
        }
        connected_before = true;
        let (mut sink, mut stream) = pubsub.split();
        // Re-subscribe to every channel followed, and fill what was missed.
        let followed: Vec<Arc<Channel>> = inner
            .lock()
            .values()
            .map(|slot| Arc::clone(&slot.channel))
            .collect();
        let mut ok = true;
        for channel in &followed {
            if sink
                .subscribe(inner.pubsub_name(channel.name()))
                .await
                .is_err()
            {
                ok = false;
                break;
            }
        }
        if ok {
            for channel in &followed {
                if inner.catch_up(channel, None).await.is_err() {
                    // Redis answers pub/sub but not commands yet: try it all again.
                    ok = false;
                    break;
                }
            }
        }
        if ok {
            delay = inner.config.reconnect_delay;
        } else {
            sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(2));
        }
        while ok {
            tokio::select! {
                message = stream.next() => match message {
                    Some(message) => {
                        let Some(name) = message
                            .get_channel_name()
                            .strip_prefix(&format!("{}:c:", inner.config.prefix))
                            .map(str::to_owned)
                        else {
                            continue;
                        };
                        if let Ok(payload) = std::str::from_utf8(message.get_payload_bytes()) {
                            if inner.receive(&name, payload).await.is_err() {
                                // The gap could not be filled now: reconnect, and
                                // the catch-up fills it (this event included).
                                ok = false;
                            }
                        }
                    }
                    None => ok = false,
                },
                command = commands.recv() => match command {
                    Some(Command::Join(name, reply)) => {
                        let joined = join_here(&inner, &mut sink, &name).await;
                        if matches!(joined, Err(EngineError::Unavailable(_))) {
                            ok = false;
                        }
                        // A joiner that gave up waiting leaves what it joined.
                        if let Err(Ok(channel)) = reply.send(joined) {
                            inner.leave(channel.name());
                        }
                    }
                    Some(Command::Leave(name)) => {
                        if !inner.lock().contains_key(&name)
                            && sink.unsubscribe(inner.pubsub_name(&name)).await.is_err()
                        {
                            ok = false;
                        }
                    }
                    None => return,
                },
            }
        }
        // Lost: wait before reconnecting (as after a failed attempt), so a node
        // that Redis keeps dropping does not hammer it; the catch-up after the
        // reconnect fills what was published meanwhile.
        sleep(inner.config.reconnect_delay).await;
    }
}

/// Joins `name` on the pub/sub task: counts a member of a channel followed
/// already, or subscribes and opens it.
async fn join_here(
    inner: &Inner,
    sink: &mut redis::aio::PubSubSink,
    name: &Arc<str>,
) -> Result<Arc<Channel>, EngineError> {
    if let Some(slot) = inner.lock().get_mut(name) {
        slot.members += 1;
        return Ok(Arc::clone(&slot.channel));
    }
    let max = inner.config.engine.max_channels;
    if inner.lock().len() >= max {
        return Err(EngineError::TooManyChannels { max });
    }
    sink.subscribe(inner.pubsub_name(name))
        .await
        .map_err(|e| EngineError::Unavailable(e.to_string()))?;
    // Subscribed first: what is published from now on arrives after the history
    // read here, and what both hold is appended once (by offset).
    let channel = inner.open_channel(name).await?;
    inner.lock().insert(
        Arc::clone(name),
        Slot {
            channel: Arc::clone(&channel),
            members: 1,
        },
    );
    Ok(channel)
}

impl Engine for RedisEngine {
    fn publish<'a>(
        &'a self,
        channel: &'a str,
        frame: Frame,
    ) -> EngineFuture<'a, Result<Published, EngineError>> {
        Box::pin(async move {
            tokio::task::coop::consume_budget().await;
            self.inner.publish(channel, frame).await
        })
    }

    fn join<'a>(&'a self, channel: &'a str) -> EngineFuture<'a, Result<Arc<Channel>, EngineError>> {
        Box::pin(async move {
            check_channel(channel)?;
            if let Some(slot) = self.inner.lock().get_mut(channel) {
                slot.members += 1;
                return Ok(Arc::clone(&slot.channel));
            }
            let (reply, joined) = oneshot::channel();
            self.inner
                .commands
                .send(Command::Join(Arc::from(channel), reply))
                .map_err(|_| EngineError::Unavailable("engine stopped".into()))?;
            match timeout(self.inner.config.command_timeout * 3, joined).await {
                Ok(Ok(joined)) => joined,
                _ => Err(EngineError::Unavailable("redis join timed out".into())),
            }
        })
    }

    fn leave(&self, channel: &Channel) {
        self.inner.leave(channel.name());
    }

    fn metrics(&self) -> EngineMetrics {
        let channels = self.inner.lock().len();
        self.inner.counters.snapshot(channels)
    }
}

/// The batcher: takes what queued, groups it by channel (in queue order) and runs
/// one publish script per channel's group. Up to [`MAX_IN_FLIGHT`] scripts are in
/// flight at once, pipelined on the one connection, so Redis runs them in the order
/// they were queued: a channel's offsets follow the order of its publishes (of
/// publishes made one after the other; concurrent ones have no order to keep, and a
/// group retried after a failure may land after a later one).
async fn batcher(inner: Arc<Inner>, mut queued: mpsc::UnboundedReceiver<Pending>) {
    let mut in_flight = FuturesUnordered::new();
    loop {
        tokio::select! {
            first = queued.recv(), if in_flight.len() < MAX_IN_FLIGHT => {
                let Some(first) = first else { break };
                let mut bytes = first.line.len();
                let mut batch = vec![first];
                while batch.len() < MAX_BATCH && bytes < MAX_BATCH_BYTES {
                    match queued.try_recv() {
                        Ok(next) => {
                            bytes += next.line.len();
                            batch.push(next);
                        }
                        Err(_) => break,
                    }
                }
                let mut groups: Vec<(Arc<str>, Vec<Pending>)> = Vec::new();
                for pending in batch {
                    match groups.iter_mut().find(|(c, _)| *c == pending.channel) {
                        Some((_, group)) => group.push(pending),
                        None => groups.push((Arc::clone(&pending.channel), vec![pending])),
                    }
                }
                for (channel, group) in groups {
                    let inner = Arc::clone(&inner);
                    in_flight.push(async move { inner.publish_group(&channel, group).await });
                }
            }
            Some(()) = in_flight.next(), if !in_flight.is_empty() => {}
        }
    }
    while in_flight.next().await.is_some() {}
}

/// A publish's wire form, in the pub/sub message and the history alike:
/// `<class index>:<revision, or nothing>:<event JSON>` (an encoded event holds no
/// raw newline, so lines separate the events of a batch).
fn encode_line(frame: &Frame) -> String {
    let revision = frame.revision().map(|r| r.to_string()).unwrap_or_default();
    format!("{}:{revision}:{}", frame.class().index(), frame.as_str())
}

/// The event of a wire line at `offset` of `epoch`, stamped with its id, keeping
/// the publisher's class and revision (a receiver's [`ClassMap`] overrides the
/// class of a type it names), and its WebSocket frame: the stamped text is written
/// once, behind the frame's header, and the frame's text is a slice of that buffer
/// (gorilla/websocket's `PreparedMessage`, without a second copy). `None` for a
/// line that is not one.
fn decode_line(line: &str, classes: &ClassMap, epoch: u64, offset: u64) -> Option<(Frame, Bytes)> {
    #[derive(serde::Deserialize)]
    struct Head<'a> {
        #[serde(rename = "type", borrow)]
        kind: std::borrow::Cow<'a, str>,
        #[serde(rename = "messageId", borrow, default)]
        message_id: Option<std::borrow::Cow<'a, str>>,
    }
    let (class, rest) = line.split_once(':')?;
    let (revision, json) = rest.split_once(':')?;
    let class = *DeliveryClass::ALL.get(class.parse::<usize>().ok()?)?;
    let revision = if revision.is_empty() {
        None
    } else {
        Some(revision.parse().ok()?)
    };
    let head: Head<'_> = serde_json::from_str(json).ok()?;
    let kind = EventType::parse(&head.kind);
    let key = if kind.is_activity() {
        head.message_id.as_deref().map(str::to_owned)
    } else {
        None
    };
    let id = super::log::event_id(epoch, offset);
    let parts = super::event::stamp_parts(json, EVENT_ID_FIELD, &id);
    let len = parts.iter().map(|p| p.len()).sum();
    let (header, used) = super::conn::frame_header(0x1, len);
    let mut buf = Vec::with_capacity(used + len);
    buf.extend_from_slice(&header[..used]);
    for part in parts {
        buf.extend_from_slice(part.as_bytes());
    }
    let wire = Bytes::from(buf);
    // SAFETY: the payload is the concatenation of `&str`s, so it is UTF-8.
    let text = unsafe { Utf8Bytes::from_bytes_unchecked(wire.slice(used..)) };
    let frame = Frame::from_utf8(kind, class, key.as_deref(), text, revision).classed(classes);
    Some((frame, wire))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::ws::Event;

    #[test]
    fn a_wire_line_keeps_class_revision_and_key_and_prepares_the_frame() {
        let frame = Event::new(EventType::ActivityDelta)
            .with("messageId", "a1")
            .with("patch", serde_json::json!([]))
            .with_revision(7)
            .encode()
            .with_class(DeliveryClass::Lossless);
        let line = encode_line(&frame);
        let (back, wire) = decode_line(&line, &ClassMap::new(), 0xab, 42).unwrap();
        assert_eq!(back.kind(), &EventType::ActivityDelta);
        assert_eq!(back.class(), DeliveryClass::Lossless);
        assert_eq!(back.revision(), Some(7));
        assert_eq!(back.key(), Some("a1"));
        let json: serde_json::Value = serde_json::from_str(back.as_str()).unwrap();
        assert_eq!(json[EVENT_ID_FIELD], "ab-42");
        // The prepared frame: a final text frame's header, then the same text.
        assert_eq!(wire[0], 0x81);
        assert_eq!(&wire[wire.len() - back.len()..], back.as_str().as_bytes());
        for junk in [
            "",
            "x",
            "9:1:{}",
            "0:x:{}",
            "0::not json",
            "0::{\"no\":\"type\"}",
        ] {
            assert!(
                decode_line(junk, &ClassMap::new(), 1, 1).is_none(),
                "{junk:?}"
            );
        }
    }
}
