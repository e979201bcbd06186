//! The server's fan-out ([`Hub`]): one event, encoded once, appended once to a
//! [`SharedLog`] that every attached connection reads through its own cursor.

use std::fmt;
use std::prelude::rust_2021::*;
use std::sync::Arc;

use super::config::{LogConfig, WsConfigError};
use super::event::{ClassMap, Event, Frame};
use super::log::{Cursor, LogMetrics, SharedLog};
use super::outbound::Outbound;
use super::types::ConnId;
use crate::slice::SnapshotVec;
use crate::sync::{AtomicU64, Ordering};

/// Fan-out of events to many connections, at a cost per event that does not depend
/// on the number of connections.
///
/// # Design
///
/// - **One log, many cursors.** [`broadcast`](Self::broadcast) encodes the event
///   once and appends it once to the hub's [`SharedLog`] (bounded in events and in
///   bytes, [`LogConfig`]); no connection is visited. Each attached connection's
///   [`Outbound`] holds a cursor into the log, and its writer reads on from there,
///   merging the log with the connection's private queue of direct sends in order
///   (see [Shared log](Outbound#the-shared-log)). This is the shape of tokio's
///   `broadcast` channel and of a Disruptor; the wake-up of waiting writers is
///   tokio's `Notify::notify_waiters`, one per waiting writer task, as a
///   `broadcast` send does.
/// - **The publisher never waits.** A connection that falls behind is dealt with
///   on its own side, by its delivery classes, when its writer (or its limits'
///   tick) next looks: what it can no longer take (evicted from the log, or beyond
///   its hard byte limit) is skipped; a skipped lossless event (or a snapshot no
///   resync replaces) closes it as a slow consumer (close code 4008:
///   [`SlowConsumer::Lagged`](super::SlowConsumer::Lagged), or
///   [`HardLimit`](super::SlowConsumer::HardLimit) when its backlog passed the
///   hard limit); skipped deltas and state snapshots resynchronise it from its
///   [`SnapshotSource`](super::SnapshotSource); skipped droppables are counted. A
///   backlog over the soft limit for longer than
///   [`soft_limit_for`](super::QueueConfig::soft_limit_for) closes it too. So a
///   stalled client costs the publisher nothing and the others nothing, and it
///   never silently loses a lossless event. (Direct sends to one connection still
///   wait for room, up to [`lossless_timeout`](super::QueueConfig::lossless_timeout).)
/// - **Memory.** What broadcasts hold is the log, bounded and shared, not one copy
///   per connection. The log's byte bound is a [`SoftCapacity`](crate::capacity::SoftCapacity):
///   register [`log`](Self::log) with a [`MemoryManager`](crate::monitor::MemoryManager)
///   (a [`Server`](super::Server) built with a manager does) and pressure lowers it.
/// - **The registry** is a [`SnapshotVec`] of `(ConnId, Arc<Outbound>)`, updated
///   read-copy-update; a broadcast does not read it.
/// - **Cooperative.** Each broadcast consumes a unit of the tokio task's budget
///   ([`consume_budget`](tokio::task::coop::consume_budget)), so a task that
///   publishes in a loop yields to the runtime now and then, and the writers it
///   woke keep sending while it runs.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use membound::adapters::ws::{ConnId, Event, EventType, Hub, Next, Outbound, QueueConfig};
/// use membound::clock::MonotonicClock;
///
/// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
/// let hub = Hub::new();
/// let clock = Arc::new(MonotonicClock::new());
/// let a = Arc::new(Outbound::new(QueueConfig::default(), clock.clone())?);
/// let b = Arc::new(Outbound::new(QueueConfig::default(), clock)?);
/// hub.attach(ConnId(1), a.clone());
/// hub.attach(ConnId(2), b.clone());
///
/// let sent = hub.broadcast(&Event::new(EventType::RunStarted).with("runId", "r1")).await;
/// assert_eq!(sent.offset, 0);
/// assert!(matches!(a.try_next(), Some(Next::Frame(f)) if f.kind() == &EventType::RunStarted));
/// assert_eq!(b.backlog().events, 1);
///
/// assert!(hub.detach(ConnId(2)));
/// assert_eq!(hub.len(), 1);
/// // Detached after the event: `b` still gets what was broadcast before.
/// assert!(matches!(b.try_next(), Some(Next::Frame(_))));
/// hub.broadcast(&Event::new(EventType::RunFinished)).await;
/// assert_eq!(b.try_next(), None);
/// # Ok::<(), membound::adapters::ws::WsConfigError>(())
/// # }).unwrap();
/// ```
pub struct Hub {
    entries: SnapshotVec<(ConnId, Arc<Outbound>)>,
    log: Arc<SharedLog>,
    /// The class overrides applied to every broadcast.
    classes: ClassMap,
    /// Broadcasts made since construction.
    broadcasts: AtomicU64,
}

/// What one broadcast did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Broadcast {
    /// The event's offset in the hub's [`SharedLog`].
    pub offset: u64,
}

/// A snapshot of the hub's totals, from [`Hub::metrics`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, crate::metrics::Metrics)]
#[metrics(kind = "ws_hub")]
pub struct HubMetrics {
    /// Connections attached now.
    #[metric(gauge)]
    pub connections: usize,
    /// Broadcasts made (events).
    #[metric(counter, name = "broadcasts")]
    pub events: u64,
    /// The shared log's figures. What each connection skipped or dropped is in
    /// its [`OutboundMetrics`](super::OutboundMetrics).
    #[metric(nested(prefix = "log_"))]
    pub log: LogMetrics,
}

impl Default for Hub {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Hub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hub")
            .field("connections", &self.len())
            .field("log", &self.log)
            .finish_non_exhaustive()
    }
}

impl Hub {
    /// An empty hub with a log of the default bounds ([`LogConfig::default`]).
    pub fn new() -> Self {
        Self::with_shared_log(Arc::new(SharedLog::build(LogConfig::default())))
    }

    /// An empty hub with a log of `config`'s bounds.
    ///
    /// # Errors
    ///
    /// [`WsConfigError`] for a bound of zero.
    pub fn with_log(config: LogConfig) -> Result<Self, WsConfigError> {
        Ok(Self::with_shared_log(Arc::new(SharedLog::new(config)?)))
    }

    /// An empty hub broadcasting into `log`.
    pub fn with_shared_log(log: Arc<SharedLog>) -> Self {
        Self {
            entries: SnapshotVec::new(),
            log,
            classes: ClassMap::new(),
            broadcasts: AtomicU64::new(0),
        }
    }

    /// This hub, giving every event it broadcasts the class `classes` says (see
    /// [`ClassMap`]).
    #[must_use]
    pub fn with_classes(mut self, classes: ClassMap) -> Self {
        self.classes = classes;
        self
    }

    /// The class overrides applied to broadcasts.
    pub fn classes(&self) -> &ClassMap {
        &self.classes
    }

    /// The shared log broadcasts go to (register it with a memory manager to put
    /// its byte bound under pressure).
    pub fn log(&self) -> &Arc<SharedLog> {
        &self.log
    }

    /// Attaches a connection's queue, which reads broadcasts from now on; a queue
    /// already attached under `id` is replaced (and detached).
    pub fn attach(&self, id: ConnId, outbound: Arc<Outbound>) {
        let cursor = self.log.cursor();
        self.attach_at(id, outbound, cursor);
    }

    /// As [`attach`](Self::attach), reading broadcasts from `cursor` (from
    /// [`SharedLog::cursor_after`] on this hub's log, to resume a client where it
    /// left off).
    pub fn attach_at(&self, id: ConnId, outbound: Arc<Outbound>, cursor: Cursor) {
        outbound.attach_log_at(Arc::clone(&self.log), cursor);
        let mut replaced = None;
        self.entries.update(|current| {
            replaced = current
                .iter()
                .find(|(other, q)| *other == id && !Arc::ptr_eq(q, &outbound))
                .map(|(_, q)| Arc::clone(q));
            current
                .iter()
                .filter(|(other, _)| *other != id)
                .cloned()
                .chain(core::iter::once((id, outbound.clone())))
                .collect()
        });
        if let Some(old) = replaced {
            old.detach_from_log();
        }
    }

    /// Detaches a connection's queue: it still delivers what was broadcast before,
    /// nothing later. `false` if `id` was not attached.
    pub fn detach(&self, id: ConnId) -> bool {
        match self.entries.remove_first(|(other, _)| *other == id) {
            Some((_, outbound)) => {
                outbound.detach_from_log();
                true
            }
            None => false,
        }
    }

    /// Takes every attached queue out of the registry, leaving them where they
    /// read (for a caller that attaches them elsewhere).
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn drain(&self) -> Vec<(ConnId, Arc<Outbound>)> {
        let mut all = Vec::new();
        self.entries.update(|current| {
            all = current.to_vec();
            Vec::new()
        });
        all
    }

    /// The queue attached under `id`.
    pub fn get(&self, id: ConnId) -> Option<Arc<Outbound>> {
        self.entries
            .load()
            .find(|(other, _)| *other == id)
            .map(|(_, q)| q.clone())
    }

    /// Queues attached now.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no queue is attached.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Encodes `event` once and appends it to the shared log, for every attached
    /// connection (see [Design](Hub#design)).
    pub async fn broadcast(&self, event: &Event) -> Broadcast {
        self.broadcast_frame(event.encode_with(&self.classes)).await
    }

    /// Appends an encoded frame to the shared log. Costs the same whatever the
    /// number of connections, and never waits for one.
    ///
    /// Cancel-safe: a future dropped before it completes has appended nothing.
    pub async fn broadcast_frame(&self, frame: Frame) -> Broadcast {
        // One unit of the task's budget per event, taken before anything is
        // appended (so a future dropped here has done nothing): a loop of broadcasts
        // returns `Pending` when the budget runs out, and the writers it woke get to
        // run.
        tokio::task::coop::consume_budget().await;
        let offset = self.log.append(frame.classed(&self.classes));
        // Statistics only: nothing is ordered by this counter.
        self.broadcasts.fetch_add(1, Ordering::Relaxed);
        Broadcast { offset }
    }

    /// A snapshot of the totals.
    pub fn metrics(&self) -> HubMetrics {
        HubMetrics {
            connections: self.len(),
            events: self.broadcasts.load(Ordering::Relaxed),
            log: self.log.metrics(),
        }
    }
}
