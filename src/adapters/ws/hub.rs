//! The server's fan-out ([`Hub`]): one event, encoded once, offered to every
//! attached connection's [`Outbound`] queue.

use std::fmt;
use std::prelude::rust_2021::*;
use std::sync::Arc;

use futures_util::future::join_all;

use super::event::{DeliveryClass, Event, Frame};
use super::outbound::{OfferError, Offered, Outbound};
use super::time::later;
use super::types::ConnId;
use crate::adapters::ending::bump;
use crate::slice::SnapshotVec;
use crate::sync::{AtomicU64, Ordering};

/// Fan-out of events to many connections' outbound queues.
///
/// # Design
///
/// - **One encoding, shared.** [`broadcast`](Self::broadcast) encodes the event once;
///   every queue holds a clone of the same [`Frame`], which shares the JSON text
///   (a reference count, not a copy). What a subscriber costs is its queue's entries,
///   bounded by the queue's capacity and byte limits, never a private copy of the
///   stream.
/// - **The registry** is a [`SnapshotVec`] of `(ConnId, Arc<Outbound>)`: a broadcast
///   iterates an immutable snapshot without a lock, so attaching and detaching never
///   wait for a broadcast (and a broadcast that is waiting on a slow queue holds no
///   lock). Updates are read-copy-update with a compare-and-swap, so none is lost.
///   [`detach`](Self::detach) removes the entry from the current contents at once;
///   the queue itself is freed when the last snapshot holding it (a broadcast in
///   flight) is dropped.
/// - **Cooperative.** Each broadcast consumes a unit of the tokio task's budget
///   ([`consume_budget`](tokio::task::coop::consume_budget)), so a task that
///   publishes in a loop yields to the runtime now and then even when every queue has
///   room, and the connections' writers (woken by its events) keep sending while it
///   runs.
/// - **Lagging connections.** Each queue applies its class policies: droppable
///   events are dropped and counted, deltas turn into a resync, snapshots replace
///   older ones. Only a lossless event can wait: the queues that are full for it are
///   waited on *concurrently*, with one common deadline (the broadcast's start plus
///   each queue's [`lossless_timeout`](super::QueueConfig::lossless_timeout)). The
///   queues still full at the deadline are closed as slow consumers
///   ([`SlowConsumer::LosslessTimeout`](super::SlowConsumer::LosslessTimeout)). So a
///   stalled client delays a broadcast by at most one timeout, the others get the
///   event at once, and no connection silently loses a lossless event.
///
/// A closed queue stays attached (and is skipped, counted in
/// [`Broadcast::closed`]) until its connection detaches it.
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
/// assert_eq!(sent.queued, 2);
/// assert!(matches!(a.try_next(), Some(Next::Frame(f)) if f.kind() == &EventType::RunStarted));
///
/// assert!(hub.detach(ConnId(2)));
/// assert_eq!(hub.len(), 1);
/// # Ok::<(), membound::adapters::ws::WsConfigError>(())
/// # }).unwrap();
/// ```
pub struct Hub {
    entries: SnapshotVec<(ConnId, Arc<Outbound>)>,
    /// Totals since construction, counted once per broadcast (not per queue).
    broadcasts: AtomicU64,
    queued: AtomicU64,
    replaced: AtomicU64,
    resyncs: AtomicU64,
    closed: AtomicU64,
    slow_consumer_closes: AtomicU64,
    dropped: [AtomicU64; 4],
}

/// What one broadcast did. Each attached queue is counted in exactly one field.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Broadcast {
    /// Queues that queued the event ([`Offered::Queued`]), at once or after a wait.
    pub queued: usize,
    /// Queues where a frame was dropped for the event: older droppable frames
    /// evicted to make room ([`Offered::DroppedOldest`]; the event is queued), or
    /// the event itself ([`Offered::DroppedNewest`]).
    pub dropped: usize,
    /// Queues where the event replaced an older snapshot
    /// ([`Offered::ReplacedSnapshot`]).
    pub replaced: usize,
    /// Queues where the event (a delta) overflowed and the connection will be
    /// resynchronised ([`Offered::Resync`]).
    pub resyncs: usize,
    /// Queues that did not take the event because they were closed, or that this
    /// broadcast closed (slow consumer: lossless timeout or hard byte limit).
    pub closed: usize,
}

impl Broadcast {
    /// Queues counted, in all.
    pub fn total(&self) -> usize {
        self.queued + self.dropped + self.replaced + self.resyncs + self.closed
    }
}

/// A broadcast's outcome, with the splits the hub's totals need.
#[derive(Default)]
struct Tally {
    result: Broadcast,
    /// Queues that evicted droppables for the event (part of `result.dropped`).
    evicted: usize,
    /// Queues that closed as slow consumers during the broadcast (part of
    /// `result.closed`).
    slow: usize,
}

impl Tally {
    fn count(&mut self, offered: Offered) {
        let r = &mut self.result;
        match offered {
            Offered::Queued => r.queued += 1,
            Offered::DroppedOldest => {
                r.dropped += 1;
                self.evicted += 1;
            }
            Offered::DroppedNewest => r.dropped += 1,
            Offered::ReplacedSnapshot => r.replaced += 1,
            Offered::Resync => r.resyncs += 1,
        }
    }

    fn refused(&mut self, err: &OfferError) {
        self.result.closed += 1;
        if matches!(err, OfferError::SlowConsumer(_)) {
            self.slow += 1;
        }
    }
}

/// A snapshot of the hub's totals, from [`Hub::metrics`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, crate::metrics::Metrics)]
#[metrics(kind = "ws_hub")]
pub struct HubMetrics {
    /// Queues attached now.
    #[metric(gauge)]
    pub connections: usize,
    /// Broadcasts made (events, not frames).
    #[metric(counter, name = "broadcasts")]
    pub events: u64,
    /// Frames of broadcast events that entered a queue: queued, queued after
    /// evicting droppables, or replacing an older snapshot.
    #[metric(counter, name = "broadcast_queued")]
    pub frames_queued: u64,
    /// Frames dropped by broadcasts, per class, indexed by [`DeliveryClass::index`]:
    /// the event itself where a queue dropped it (a droppable or an older snapshot
    /// dropped on arrival, a delta that overflowed into a resync), and, under
    /// droppable, the queues that evicted older droppables to make room for it.
    /// The deltas a resync discarded from a queue are in that queue's
    /// [`OutboundMetrics`](super::OutboundMetrics).
    #[metric(visit = visit_dropped)]
    pub dropped: [u64; 4],
    /// Snapshots replaced in queues (the sum of [`Broadcast::replaced`]).
    #[metric(counter, name = "broadcast_replaced")]
    pub replaced: u64,
    /// Resyncs caused by broadcast deltas (the sum of [`Broadcast::resyncs`]).
    #[metric(counter, name = "broadcast_resyncs")]
    pub resyncs: u64,
    /// Queues that did not take a broadcast event because they were closed (the sum
    /// of [`Broadcast::closed`]).
    #[metric(counter, name = "broadcast_closed")]
    pub closed: u64,
    /// Queues that broadcasts closed as slow consumers (a lossless wait that timed
    /// out, or the hard byte limit); part of `closed`.
    #[metric(counter)]
    pub slow_consumer_closes: u64,
}

/// `dropped`: one `broadcast_dropped` counter per delivery class, labelled `class`.
fn visit_dropped(dropped: &[u64; 4], out: &mut dyn crate::metrics::Visitor) {
    let help = "Frames broadcasts dropped, by the event's delivery class.";
    for class in DeliveryClass::ALL {
        let labels = [("class", class.as_str())];
        let metric =
            crate::metrics::Metric::counter("broadcast_dropped", help, dropped[class.index()]);
        out.metric(metric.with_labels(&labels));
    }
}

impl HubMetrics {
    /// Frames dropped for broadcast events of `class`.
    pub fn dropped(&self, class: DeliveryClass) -> u64 {
        self.dropped[class.index()]
    }
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
            .finish_non_exhaustive()
    }
}

impl Hub {
    /// An empty hub.
    pub fn new() -> Self {
        Self {
            entries: SnapshotVec::new(),
            broadcasts: AtomicU64::new(0),
            queued: AtomicU64::new(0),
            replaced: AtomicU64::new(0),
            resyncs: AtomicU64::new(0),
            closed: AtomicU64::new(0),
            slow_consumer_closes: AtomicU64::new(0),
            dropped: [const { AtomicU64::new(0) }; 4],
        }
    }

    /// Attaches a connection's queue; a queue already attached under `id` is
    /// replaced.
    pub fn attach(&self, id: ConnId, outbound: Arc<Outbound>) {
        self.entries.update(|current| {
            current
                .iter()
                .filter(|(other, _)| *other != id)
                .cloned()
                .chain(core::iter::once((id, outbound.clone())))
                .collect()
        });
    }

    /// Detaches a connection's queue; `false` if `id` was not attached.
    pub fn detach(&self, id: ConnId) -> bool {
        self.entries
            .remove_first(|(other, _)| *other == id)
            .is_some()
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

    /// Encodes `event` once and offers it to every attached queue (see
    /// [Lagging connections](Hub#design)).
    pub async fn broadcast(&self, event: &Event) -> Broadcast {
        self.broadcast_frame(event.encode()).await
    }

    /// Offers an encoded frame to every attached queue. Lossless frames that find
    /// queues full wait on all of them concurrently, until one common deadline;
    /// the queues still full then are closed as slow consumers.
    ///
    /// Cancel-safe in the sense of [`Outbound::send_until`]: dropping the future
    /// leaves the frame unqueued in the queues it was still waiting on.
    pub async fn broadcast_frame(&self, frame: Frame) -> Broadcast {
        // One unit of the task's budget per event, taken before anything is queued
        // (so a future dropped here has done nothing): a loop of broadcasts that
        // never finds a queue full returns `Pending` when the budget runs out, and the
        // writers it woke (in its worker's LIFO slot, which no other worker can steal)
        // get to run.
        tokio::task::coop::consume_budget().await;
        let snapshot = self.entries.load();
        let mut tally = Tally::default();
        let mut full: Vec<&Outbound> = Vec::new();
        for (_, queue) in snapshot.iter() {
            match queue.offer(frame.clone()) {
                Ok(offered) => tally.count(offered),
                Err(OfferError::Full(_)) => full.push(queue),
                Err(err) => tally.refused(&err),
            }
        }
        if !full.is_empty() {
            // The clock is read only when someone has to wait: the common case
            // (every queue had room) costs no clock read.
            let start = tokio::time::Instant::now();
            let waits = full.iter().map(|queue| {
                let deadline = later(start, queue.config().lossless_timeout);
                queue.send_until(frame.clone(), deadline)
            });
            for outcome in join_all(waits).await {
                // `send_until` turns `Full` into a wait: only closes are left.
                match outcome {
                    Ok(offered) => tally.count(offered),
                    Err(err) => tally.refused(&err),
                }
            }
        }
        self.record(&tally, frame.class());
        tally.result
    }

    fn record(&self, tally: &Tally, class: DeliveryClass) {
        // Statistics only: nothing is ordered by these counters.
        let add = |counter: &AtomicU64, n: usize| bump(counter, n as u64);
        let r = &tally.result;
        self.broadcasts.fetch_add(1, Ordering::Relaxed);
        add(&self.queued, r.queued + tally.evicted + r.replaced);
        add(&self.replaced, r.replaced);
        add(&self.resyncs, r.resyncs);
        add(&self.closed, r.closed);
        add(&self.slow_consumer_closes, tally.slow);
        add(
            &self.dropped[class.index()],
            r.dropped - tally.evicted + r.resyncs,
        );
        add(
            &self.dropped[DeliveryClass::Droppable.index()],
            tally.evicted,
        );
    }

    /// A snapshot of the totals.
    pub fn metrics(&self) -> HubMetrics {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        HubMetrics {
            connections: self.len(),
            events: load(&self.broadcasts),
            frames_queued: load(&self.queued),
            dropped: [
                load(&self.dropped[0]),
                load(&self.dropped[1]),
                load(&self.dropped[2]),
                load(&self.dropped[3]),
            ],
            replaced: load(&self.replaced),
            resyncs: load(&self.resyncs),
            closed: load(&self.closed),
            slow_consumer_closes: load(&self.slow_consumer_closes),
        }
    }
}
