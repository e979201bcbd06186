//! One connection's outbound queue ([`Outbound`]): delivery classes, byte limits,
//! the resync protocol, the merge of direct sends with the hub's shared log, and the
//! waits of lossless senders and of the writer. The design is documented on
//! [`Outbound`].

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::pin::pin;
use std::prelude::rust_2021::*;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::Notify;

use super::config::{QueueConfig, WsConfigError};
use super::event::{DeliveryClass, EventType, Frame};
use super::log::{Backlog, Cursor, LogEntry, SharedLog, Skipped};
use super::time::after;
use super::types::{CloseReason, SlowConsumer};
use crate::capacity::{self, CapacityError, SoftCapacity};
use crate::clock::Clock;
use crate::policy::OverflowPolicy;
use crate::pressure::PressureLevel;

/// A buffer with room for more entries than this is shrunk when the queue runs
/// empty after using at most a quarter of it.
const SHRINK_ABOVE: usize = 64;
/// The least a buffer is shrunk to.
const SHRINK_TO: usize = 8;

/// What [`Outbound::offer`] did with a frame it accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Offered {
    /// Queued; nothing was dropped.
    Queued,
    /// Queued, after evicting the oldest queued droppable frame(s) (counted).
    DroppedOldest,
    /// Not queued: the frame itself was dropped (counted), by
    /// [`OverflowPolicy::DropNewest`], because no droppable could be evicted, or because a
    /// newer snapshot of its type is queued.
    DroppedNewest,
    /// Queued in place of an older snapshot of the same type (counted).
    ReplacedSnapshot,
    /// A state delta found the queue full: it and every queued delta were
    /// discarded, and the writer gets [`Next::Resync`] before its next frame.
    Resync,
}

/// Why [`Outbound`] did not take a frame. The frame is handed back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OfferError {
    /// No room for a lossless frame (or a snapshot with nothing to replace). Retry,
    /// or wait with [`Outbound::send`].
    Full(Frame),
    /// The queue is closed.
    Closed(Frame),
    /// Taking the frame broke a limit (a frame that can never fit under the hard
    /// byte limit, the soft limit's duration, or the lossless timeout): the queue is
    /// now closed with
    /// [`CloseReason::SlowConsumer`].
    SlowConsumer(Frame),
}

impl OfferError {
    /// The frame that was not taken.
    pub fn into_frame(self) -> Frame {
        match self {
            Self::Full(f) | Self::Closed(f) | Self::SlowConsumer(f) => f,
        }
    }

    /// The frame that was not taken, by reference.
    pub fn frame(&self) -> &Frame {
        match self {
            Self::Full(f) | Self::Closed(f) | Self::SlowConsumer(f) => f,
        }
    }
}

impl fmt::Display for OfferError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Full(frame) => write!(f, "outbound queue full ({} event)", frame.kind()),
            Self::Closed(frame) => write!(f, "outbound queue closed ({} event)", frame.kind()),
            Self::SlowConsumer(frame) => write!(
                f,
                "outbound queue closed as a slow consumer ({} event)",
                frame.kind()
            ),
        }
    }
}

impl std::error::Error for OfferError {}

/// What the writer does next, from [`Outbound::next`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Next {
    /// Send this frame.
    Frame(Frame),
    /// Queued state deltas were discarded: send a fresh `STATE_SNAPSHOT`, then call
    /// [`Outbound::resynced`] with its revision.
    Resync,
    /// The queue is closed (and, for a reason that drains, empty): send a close
    /// frame for this reason. Returned again on every later call.
    Closed(CloseReason),
}

/// What the connection's writer takes next ([`Outbound::next_taken`]): a
/// broadcast as its log entry, or any other [`Next`].
pub(crate) enum Taken {
    /// A broadcast event: a clone of its entry (reference counts).
    Entry(LogEntry),
    /// A direct frame, a resync or the close.
    Next(Next),
}

impl Taken {
    /// As [`Outbound::next`] gives it.
    pub(crate) fn into_next(self) -> Next {
        match self {
            Taken::Entry(entry) => Next::Frame(entry.frame().clone()),
            Taken::Next(next) => next,
        }
    }
}

/// A frame the writer takes, as [`Outbound::try_stage`] finds it.
pub(crate) enum Staged<'a> {
    /// A broadcast event, still in the shared log: its wire bytes are ready.
    Entry(&'a LogEntry),
    /// A direct frame, or a resync's snapshot.
    Frame(Frame),
}

impl Staged<'_> {
    /// The frame, owned.
    pub(crate) fn into_frame(self) -> Frame {
        match self {
            Staged::Entry(entry) => entry.frame().clone(),
            Staged::Frame(frame) => frame,
        }
    }

    /// The frame.
    pub(crate) fn frame(&self) -> &Frame {
        match self {
            Staged::Entry(entry) => entry.frame(),
            Staged::Frame(frame) => frame,
        }
    }
}

/// Counts for one [`DeliveryClass`].
///
/// At any moment `offered == sent + dropped + queued`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, crate::metrics::Metrics)]
#[metrics(kind = "ws_class")]
pub struct ClassMetrics {
    /// Frames the queue accepted (every `Ok` from an offer), whether queued or
    /// dropped by the class policy.
    #[metric(counter)]
    pub offered: u64,
    /// Frames handed to the writer ([`Next::Frame`]).
    #[metric(counter, name = "sent_frames")]
    pub sent: u64,
    /// Accepted frames that will never be sent: evicted, dropped on arrival,
    /// replaced, discarded for a resync, skipped as stale, or discarded by a close
    /// that does not drain.
    #[metric(counter)]
    pub dropped: u64,
    /// Frames in the queue now.
    #[metric(gauge, name = "queued_frames")]
    pub queued: u64,
    /// Frames refused and handed back to the caller (`Err` from an offer); not part
    /// of `offered`.
    #[metric(counter)]
    pub rejected: u64,
}

/// A snapshot of one queue's counters, from [`Outbound::metrics`].
#[derive(Clone, Debug, Default, PartialEq, Eq, crate::metrics::Metrics)]
#[metrics(kind = "ws_outbound")]
pub struct OutboundMetrics {
    /// Per-class counts, indexed by [`DeliveryClass::index`]; see
    /// [`class`](Self::class).
    #[metric(visit = super::event::visit_by_class)]
    pub classes: [ClassMetrics; 4],
    /// Snapshots replaced in place by a newer one, or dropped because a newer one
    /// was queued, or skipped as covered by a resync snapshot.
    #[metric(counter)]
    pub replaced_snapshots: u64,
    /// Times the queue was marked for a resync (each leads to one
    /// [`Next::Resync`], unless the queue is closed first).
    #[metric(counter)]
    pub resyncs: u64,
    /// Times the cursor skipped activity events and the queue resynchronised the
    /// activities itself, from the shared log's tracked contents (see
    /// [Activities](SharedLog#activities)).
    #[metric(counter)]
    pub activity_resyncs: u64,
    /// State deltas discarded: at an overflow (the queued ones and the incoming
    /// one), and stale ones skipped after a resync.
    #[metric(counter)]
    pub discarded_deltas: u64,
    /// Lossless sends that found no room and had to wait (each counted once,
    /// however long it waited).
    #[metric(counter)]
    pub lossless_waits: u64,
    /// Lossless waits that ran out of time and closed the queue.
    #[metric(counter)]
    pub lossless_timeouts: u64,
    /// Times the connection's cursor in the shared log fell behind what it could
    /// take (entries evicted before it read them, or a backlog over the hard byte
    /// limit) and skipped ahead; the events skipped are counted as dropped per
    /// class.
    #[metric(counter)]
    pub lags: u64,
    /// Events of the shared log the connection has not taken yet (between its
    /// cursor and the head, or where its reading stops).
    #[metric(gauge)]
    pub log_backlog_events: u64,
    /// Their payload bytes; with `queued_bytes`, what the byte limits apply to.
    #[metric(gauge, name = "log_backlog", unit = "bytes")]
    pub log_backlog_bytes: u64,
    /// Bytes (JSON text) in the private queue (direct sends) now.
    #[metric(gauge, name = "queued", unit = "bytes")]
    pub queued_bytes: usize,
    /// The most bytes ever queued at once.
    #[metric(gauge, name = "peak_queued", unit = "bytes")]
    pub peak_bytes: usize,
    /// Frames in the private queue (direct sends) now.
    #[metric(gauge, name = "queued_events")]
    pub len: usize,
    /// The soft capacity in force, in frames.
    #[metric(gauge)]
    pub capacity: usize,
    /// The configured capacity: the most the soft capacity can be raised to.
    #[metric(gauge)]
    pub max_capacity: usize,
    /// Frames the queue's buffer has room for without growing: what it holds
    /// allocated now (each slot is a [`Frame`] handle and a sequence number; the
    /// frames' text is counted in `queued_bytes`).
    #[metric(gauge)]
    pub buffer_slots: usize,
    /// The most droppable frames that may be queued now (half the capacity at
    /// [`PressureLevel::Critical`], otherwise the capacity).
    #[metric(gauge)]
    pub droppable_capacity: usize,
    /// Whether a [`Next::Resync`] is pending.
    #[metric(gauge)]
    pub resync_pending: bool,
    /// Why the queue was closed, if it was.
    #[metric(visit = visit_closed)]
    pub closed: Option<CloseReason>,
}

/// `closed`: a gauge, 1 once the queue is closed (the reason is the connection's).
fn visit_closed(closed: &Option<CloseReason>, out: &mut dyn crate::metrics::Visitor) {
    let help = "1 once the queue is closed.";
    out.metric(crate::metrics::Metric::gauge(
        "closed",
        help,
        closed.is_some(),
    ));
}

impl OutboundMetrics {
    /// The counts of one class.
    pub fn class(&self, class: DeliveryClass) -> &ClassMetrics {
        &self.classes[class.index()]
    }

    /// Frames dropped in every class.
    pub fn dropped_total(&self) -> u64 {
        self.classes.iter().map(|c| c.dropped).sum()
    }

    /// Frames sent in every class.
    pub fn sent_total(&self) -> u64 {
        self.classes.iter().map(|c| c.sent).sum()
    }

    /// Bytes the connection has not taken yet: its private queue's and its shared
    /// log backlog's, what the byte limits apply to.
    pub fn backlog_bytes(&self) -> u64 {
        self.queued_bytes as u64 + self.log_backlog_bytes
    }
}

/// One queued frame.
#[derive(Debug)]
struct Entry {
    frame: Frame,
    /// Order of admission, to tell which untagged state frames were queued before a
    /// `resynced` call.
    seq: u64,
    /// The log offset this frame comes after: the writer takes every log entry
    /// below it first (0 when not reading a log, or for frames queued before).
    after: u64,
}

/// The shared log this queue reads, and where.
#[derive(Debug)]
struct Feed {
    log: Arc<SharedLog>,
    cursor: Cursor,
    /// Where reading stops (set by a draining close or a detach): nothing appended
    /// after it is read.
    end: Option<Cursor>,
}

impl Feed {
    fn backlog(&self) -> Backlog {
        self.log.backlog_upto(&self.cursor, self.end.as_ref())
    }

    /// Whether the cursor reached its end: nothing more will be read.
    fn done(&self) -> bool {
        self.end
            .is_some_and(|end| self.cursor.offset() >= end.offset())
    }

    /// The offset a direct frame queued now comes after.
    fn mark(&self) -> u64 {
        self.end.map_or_else(|| self.log.head(), |end| end.offset())
    }
}

/// Everything the mutex guards.
#[derive(Debug)]
struct State {
    /// Queued frames, oldest first. Never longer than `max_capacity` plus what a
    /// lowered capacity left behind.
    queue: VecDeque<Entry>,
    /// Sum of `frame.len()` over `queue`; never above the hard limit.
    bytes: usize,
    /// `config.soft_limit_bytes`.
    soft_limit: usize,
    /// Soft capacity in force, `1..=max_capacity`.
    capacity: usize,
    /// The pressure level last applied (decides the droppable share).
    level: PressureLevel,
    /// The writer owes a `Next::Resync`.
    resync_pending: bool,
    /// The writer owes a `Next::Resync` once the queued frame of this `seq` is
    /// taken (a notice that comes before its resync).
    resync_after_seq: Option<u64>,
    /// The writer found the queue empty and is waiting (or about to) in `next`:
    /// only then does an offer notify `data`. Cleared by the offer that notifies.
    writer_waiting: bool,
    /// Most frames queued at once since the queue last ran empty (decides whether
    /// the buffer shrinks then).
    high_water: usize,
    /// Senders inside `send_until` that found no room and wait on `room`: a pop
    /// notifies `room` only while there are some.
    senders_waiting: usize,
    /// State frames tagged with a revision `<=` this are stale.
    floor_revision: Option<u64>,
    /// State frames with a `seq` below this are stale if untagged (or if the
    /// last resync had no revision).
    floor_seq: u64,
    /// Whether the last resync had no revision: then tagged frames below
    /// `floor_seq` are stale too.
    floor_all_before_seq: bool,
    /// The next entry's `seq`.
    next_seq: u64,
    /// Untagged state entries of the log below this offset are stale (the log's
    /// head at the last resync).
    floor_log_offset: u64,
    /// Activity entries of the log below this offset are stale: the last activity
    /// resync's snapshots contain them.
    activity_floor: u64,
    /// The last activity resync's `ACTIVITY_SNAPSHOT`s, handed out before
    /// anything else. Bounded by the log's activity bounds.
    activity_snapshots: VecDeque<Frame>,
    /// The shared log the writer reads broadcast events from, if attached.
    feed: Option<Feed>,
    /// Clock tick at which `bytes` went above the soft limit; `None` while at or
    /// below it.
    soft_since: Option<u64>,
    /// Why the queue was closed.
    closed: Option<CloseReason>,
    /// Counters.
    classes: [ClassMetrics; 4],
    replaced_snapshots: u64,
    resyncs: u64,
    activity_resyncs: u64,
    discarded_deltas: u64,
    lossless_waits: u64,
    lossless_timeouts: u64,
    lags: u64,
    peak_bytes: usize,
}

/// Which call an offer is part of, for counting.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Attempt {
    /// `offer`: an error is handed back.
    Offer,
    /// The first try of a wait: `Full` starts a wait.
    FirstWait,
    /// A later try of the same wait.
    Rewait,
}

/// Which waiters to wake once the lock is released.
#[derive(Clone, Copy, Default)]
#[must_use]
struct Wake {
    /// A frame (or a resync) became available.
    data: bool,
    /// One slot was freed.
    room_one: bool,
    /// Room changed in bulk, or the queue closed: wake every waiter.
    all: bool,
}

impl Wake {
    fn merge(&mut self, other: Wake) {
        self.data |= other.data;
        self.room_one |= other.room_one;
        self.all |= other.all;
    }
}

/// What [`Outbound::fill`] took.
#[derive(Default)]
struct Filled {
    /// Frames handed out.
    taken: usize,
    /// Entries taken off the private queue (handed out or skipped as stale).
    popped: usize,
    /// The log cursor moved (entries read, stale ones skipped, or a lag).
    log_moved: bool,
    wake: Wake,
}

/// One connection's bounded outbound queue.
///
/// `Send + Sync`; share it as `Arc<Outbound>` between the tasks that publish to the
/// connection and its one writer task.
///
/// # Design
///
/// [`Outbound`] is a `std` [`Mutex`] over a bounded [`VecDeque`] of encoded
/// [`Frame`]s, with two [`tokio::sync::Notify`]s: *room* (senders of lossless
/// events wait on it) and *data* (the connection's writer task waits on it).
///
/// Why a lock and not the crate's lock-free [`Ring`](crate::ring::Ring): the class
/// policies remove entries from the *middle* of the queue (a newer snapshot replaces
/// an older one in place, an overflowing delta discards every queued delta, a full
/// queue evicts its oldest *droppable* event behind older lossless ones), and the
/// writer skips stale state frames after a resync. A FIFO ring can only take from
/// its head. The lock is held for short, bounded sections (a scan of the queue at
/// most, for a replacement or an eviction), never across an `.await` and never
/// while user code runs, and it is contended only by one writer and the tasks that
/// publish to this one connection. `benches/ws_outbound.rs` measures an
/// uncontended round against a bounded `tokio::sync::mpsc` channel and the crate's
/// ring. Counting is done on plain integers under the same lock, so metrics cost
/// no extra atomic.
///
/// The deque grows on demand up to the capacity; nothing is reserved up front, so
/// an idle connection costs the struct (about half a KiB on 64-bit targets) and no
/// buffer. A buffer is given back when it is no longer used: when the queue runs
/// empty after holding at most a quarter of its buffer (of more than 64 frames)
/// since it last ran empty, it is cut to twice that high-water mark (at least 8).
/// So a connection that keeps taking bursts keeps its buffer instead of
/// reallocating it during every burst, and a one-off burst's buffer goes at the
/// next quiet moment; a close that discards the queue frees it.
/// [`OutboundMetrics::buffer_slots`] shows what is allocated.
///
/// # Delivery classes
///
/// Each frame's [`DeliveryClass`] decides what happens when the queue is full, in
/// events (the soft capacity) or in bytes (the hard limit, below).
///
/// First, droppable frames yield: a frame of any other class that finds the queue
/// full evicts the oldest queued droppable frames (as many as it needs, counted)
/// and is queued ([`Offered::DroppedOldest`]). A `RAW` event never costs a
/// lossless one its connection, nor a delta its sequence. Only when no droppable
/// frame can make room does the frame's own class policy apply:
///
/// - **lossless**: never dropped. [`offer`](Outbound::offer) returns
///   [`OfferError::Full`] with the frame; [`send`](Outbound::send) and
///   [`send_until`](Outbound::send_until) wait for room (in events and in bytes)
///   until a deadline, then close the queue with [`SlowConsumer::LosslessTimeout`].
///   Only a lossless frame larger than the hard byte limit itself, which could never
///   fit, closes the queue at once ([`SlowConsumer::HardLimit`]).
/// - **state delta**: every queued state delta and the incoming one are discarded,
///   and the queue is marked for a resync ([`Offered::Resync`]); see *Resync*
///   below. A direct `ACTIVITY_DELTA` is treated like a lossless frame instead (no
///   resync could cover it; broadcast ones are resynchronised, see
///   [Activities](SharedLog#activities)).
/// - **snapshot**: latest wins. A snapshot replaces a queued snapshot of the same
///   type and key ([`Frame::key`]: an activity's `messageId`) in place (keeping
///   the old one's position), whether or not the queue is
///   full ([`Offered::ReplacedSnapshot`]); if both carry revisions and the incoming
///   one is older, the incoming one is dropped instead ([`Offered::DroppedNewest`]).
///   A snapshot with no predecessor to replace is treated like a lossless frame.
/// - **droppable**: by [`QueueConfig::droppable`], [`OverflowPolicy::DropOldest`]
///   evicts the oldest queued droppable frames (as many as are needed to make
///   room), or else drops the incoming one; [`OverflowPolicy::DropNewest`] drops the
///   incoming one. Either way it is counted.
///
/// Within a class, frames leave in the order they were queued. Across classes the
/// order is the order of queueing, except that a replacing snapshot takes the
/// position of the one it replaced.
///
/// # The shared log
///
/// A queue attached to a [`Hub`](super::Hub) ([`attach_log`](Outbound::attach_log))
/// also reads the hub's [`SharedLog`] of broadcast events through its own cursor;
/// what is described above is its *private queue*, for the frames sent to this
/// connection alone ([`offer`](Outbound::offer), [`send`](Outbound::send)). The
/// writer ([`next`](Outbound::next), [`try_next_batch`](Outbound::try_next_batch))
/// merges the two in the order they were made: a direct frame comes after every
/// broadcast event appended before it was queued. Broadcast events are not copied
/// into the private queue; the writer takes them from the log when it gets to
/// them, and they are counted (offered, then sent or dropped, in their class) as
/// its cursor passes them. [`backlog`](Outbound::backlog) is what the connection
/// has not taken yet: the private queue and the log between its cursor and the
/// head.
///
/// A broadcast never waits for a connection, so the delivery classes act on the
/// reader's side, whenever the writer takes a frame or runs
/// [`check_limits`](Outbound::check_limits) (its tick, also while a write is
/// blocked). What the cursor can no longer take is skipped, and the skip is
/// judged by class:
///
/// - **what is skipped**: entries the log evicted before the cursor reached them
///   (its bounds, [`LogConfig`](super::LogConfig), or memory pressure on them), and
///   the oldest entries of a backlog over the hard byte limit, down to what fits;
/// - a skipped **lossless** event, or a snapshot other than `STATE_SNAPSHOT` and
///   `ACTIVITY_SNAPSHOT` (no resync makes up for it), closes the queue as a slow
///   consumer (close code 4008): [`SlowConsumer::Lagged`] when the log evicted it,
///   [`SlowConsumer::HardLimit`] when the backlog passed the hard limit;
/// - skipped **state deltas** or `STATE_SNAPSHOT`s mark a resync (see *Resync*
///   below): the writer sends a fresh snapshot, and the untagged state frames from
///   before it are skipped as stale;
/// - skipped **activity** events (`ACTIVITY_DELTA`, `ACTIVITY_SNAPSHOT`) resync
///   the activities at once, from the log's tracked contents: the queue hands out
///   a fresh `ACTIVITY_SNAPSHOT` per tracked activity before anything else, and
///   skips the activity events they contain ([`OutboundMetrics::activity_resyncs`];
///   see [Activities](SharedLog#activities)). If the log no longer tracks an
///   activity the skip may have touched, the queue is closed as a slow consumer
///   ([`SlowConsumer::NoSnapshot`]). These snapshots are outside the byte account;
///   the log's activity bounds bound them;
/// - skipped **droppables** are counted as dropped, nothing more.
///
/// Every skip is counted in [`OutboundMetrics::lags`]. The private queue's
/// capacity in events applies to direct frames only; the log is bounded by its
/// own bounds, once for every connection.
///
/// # Byte limits
///
/// Modelled on Redis' `client-output-buffer-limit`. Bytes are the JSON text of the
/// frames the connection has not taken: its private queue's ([`Frame::len`]) and,
/// when it reads a shared log, its backlog there. A direct frame fits only within
/// what the log backlog leaves of the hard limit (a lossless one waits for the
/// writer to take more); a log backlog over the hard limit is skipped by class, as
/// above. The soft limit's timer (below) runs on the backlog as a whole; it is
/// started and stopped where the backlog is looked at (offers, takes and
/// [`check_limits`](Outbound::check_limits)), since the log grows without visiting
/// its readers.
///
/// - **Hard limit** ([`QueueConfig::hard_limit_bytes`]): the queue never holds more.
///   A frame that would take it past the limit is treated as one that finds the
///   queue full: droppables yield, then its class policy applies (a droppable is
///   dropped, a delta triggers a resync, a snapshot replaces its predecessor). A
///   lossless frame (or a snapshot with nothing to replace) that still does not
///   fit is [`OfferError::Full`], exactly as in a queue full in events: `send`
///   waits for the writer to make room, up to the lossless timeout. Only a frame
///   that can never fit closes the queue at once with [`SlowConsumer::HardLimit`]
///   and is handed back in [`OfferError::SlowConsumer`]: one larger than the hard
///   limit, or a snapshot whose replacement of its predecessor would still break
///   it.
/// - **Soft limit** ([`QueueConfig::soft_limit_bytes`] for
///   [`QueueConfig::soft_limit_for`]): the first time the queued bytes rise above the
///   soft limit, the time is taken from the crate [`Clock`]; when they fall back to
///   the limit or below, the timer is cleared. [`check_limits`](Outbound::check_limits)
///   (called by every offer and on the writer's ticks) closes the queue with
///   [`SlowConsumer::SoftLimit`] once the bytes have stayed above the limit for the
///   whole duration. A client that is slow for a moment survives; one that stays
///   behind does not.
///
/// # Resync and revisions
///
/// State deltas only make sense in sequence. When a delta finds the queue full, the
/// queue drops every queued delta (and the incoming one) and sets a *resync mark*.
/// The writer's next [`next`](Outbound::next) returns [`Next::Resync`] before any
/// frame, including frames queued before the overflow (the snapshot is the current
/// state, so it may overtake them; non-state frames keep their order). The writer
/// then fetches a fresh `STATE_SNAPSHOT` from its
/// [`SnapshotSource`](super::SnapshotSource), sends it, and calls
/// [`resynced`](Outbound::resynced) with the snapshot's revision. From then on the
/// queue skips (and counts as discarded) the *state frames* (`STATE_DELTA` and
/// `STATE_SNAPSHOT`) that the snapshot already covers:
///
/// - a frame tagged with a revision ([`Event::with_revision`](super::Event::with_revision))
///   `<=` the snapshot's revision;
/// - an untagged frame queued before the `resynced` call (an untagged frame cannot
///   say whether it is covered; tag deltas with the state store's revision to make
///   the cut exact);
/// - with `resynced(None)` (a snapshot without a revision), every state frame queued
///   before the call.
///
/// Later tagged frames with higher revisions are delivered, so the client applies
/// exactly the deltas that follow its snapshot. A queued older `STATE_SNAPSHOT` is
/// skipped by the same rule, so the client's state never moves backwards.
///
/// # Closing
///
/// [`close`](Outbound::close) is idempotent; the first reason wins. A reason that
/// [`drains`](CloseReason::drains) (`Normal`, `Shutdown`, `Protocol`) lets the
/// writer deliver what is queued, then gives it [`Next::Closed`]; any other reason
/// discards the queue at once (counted as dropped per class) and the writer gets
/// [`Next::Closed`] on its next call. A draining close also delivers the shared
/// log's events appended before it (none after); a discarding one stops reading the
/// log. Either way, offers fail with
/// [`OfferError::Closed`] from then on, and every waiting sender and writer is
/// woken.
///
/// # Memory pressure
///
/// The queue is on the crate's one pressure route, [`SoftCapacity`]: a
/// [`MemoryManager`](crate::monitor::MemoryManager) it is registered with
/// ([`register_capacity`](crate::monitor::MemoryManager::register_capacity), or a
/// [`Server`](super::Server) built with
/// [`memory_manager`](super::ServerBuilder::memory_manager) for all its
/// connections) calls [`apply_pressure`](SoftCapacity::apply_pressure) on every
/// level transition, with the soft capacity for the level
/// ([`adaptive_size`](crate::pressure::adaptive_size)`(capacity, level)`: 100, 75,
/// 50 or 25 %). The queue takes that capacity and the level: at
/// [`PressureLevel::Critical`] droppable frames may fill at most half of the
/// capacity. Lowering the capacity evicts the oldest droppable frames beyond the
/// new bounds at once; other frames stay and are delivered (new ones wait until the
/// queue has drained below the capacity). Raising it wakes waiting senders.
/// [`set_capacity`](SoftCapacity::set_capacity) changes the capacity alone and
/// keeps the level.
///
/// # Waiting, and why no wake-up is lost
///
/// A waiter (a lossless sender in [`send_until`](Outbound::send_until), the writer in
/// [`next`](Outbound::next)) runs this loop (the writer registers two futures in
/// step 1: the queue's, and the shared log's, which every append notifies with
/// `notify_waiters`; either wakes it):
///
/// 1. create the `Notified` future and [`enable`](tokio::sync::futures::Notified::enable)
///    it, which registers it with the `Notify`;
/// 2. take the lock and re-check the state (room, or a frame, or a close);
/// 3. only if there is nothing to do, release the lock and await the future.
///
/// Every state change that a waiter may be waiting for (a pop frees room, an offer
/// queues a frame, a close, a raised capacity, discarded deltas) is made under the
/// lock and followed by a notification. If the change happens before the waiter's
/// check in step 2, the check sees it; if after, the waiter's future was already
/// registered in step 1 and is woken by the notification
/// ([`notify_one`](tokio::sync::Notify::notify_one) stores a permit even with no
/// registered waiter, and [`notify_waiters`](tokio::sync::Notify::notify_waiters)
/// wakes every future that was created before it). There is no window in which a
/// change is made, notified, and missed. A sender woken by `notify_one` whose future
/// is then dropped (its offer succeeded, or its deadline passed) does not swallow the
/// wake-up: tokio hands an unconsumed `notify_one` on to the next waiter. A permit
/// stored while nobody waited can be consumed by a future that is then dropped,
/// but such a permit was owed to no registered waiter, and every later waiter
/// re-checks the state before it sleeps.
///
/// tokio's `Notify` does not run under loom, so this argument is not model-checked
/// by `loom-tests/`; the module has no lock-free code of its own (the queue state is
/// entirely under the mutex), and the waits are exercised by `tests/ws_outbound.rs`
/// on tokio's paused clock and on a multi-threaded runtime with an exactly-once
/// check.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use membound::adapters::ws::{
///     CloseReason, DeliveryClass, Event, EventType, Next, OfferError, Offered, Outbound,
///     QueueConfig,
/// };
/// use membound::clock::MonotonicClock;
///
/// let queue = Outbound::new(
///     QueueConfig { capacity: 2, ..QueueConfig::default() },
///     Arc::new(MonotonicClock::new()),
/// )?;
/// let text = Event::new(EventType::TextMessageContent).with("delta", "hi").encode();
/// assert_eq!(queue.offer(text.clone()), Ok(Offered::Queued));
/// assert_eq!(queue.offer(Event::new(EventType::Raw).encode()), Ok(Offered::Queued));
/// // Full: a droppable evicts the oldest droppable...
/// assert_eq!(queue.offer(Event::new(EventType::Custom).encode()), Ok(Offered::DroppedOldest));
/// // ... and so does a lossless frame; with no droppable left, it is handed back.
/// assert_eq!(queue.offer(text.clone()), Ok(Offered::DroppedOldest));
/// assert_eq!(queue.offer(text.clone()), Err(OfferError::Full(text.clone())));
///
/// queue.close(CloseReason::Normal); // drains
/// assert_eq!(queue.try_next(), Some(Next::Frame(text.clone())));
/// assert_eq!(queue.try_next(), Some(Next::Frame(text)));
/// assert_eq!(queue.try_next(), Some(Next::Closed(CloseReason::Normal)));
/// assert_eq!(queue.metrics().class(DeliveryClass::Droppable).dropped, 2);
/// # Ok::<(), membound::adapters::ws::WsConfigError>(())
/// ```
pub struct Outbound {
    config: QueueConfig,
    clock: Arc<dyn Clock + Send + Sync>,
    /// `ticks_for(config.soft_limit_for)` on `clock`.
    soft_ticks: u64,
    state: Mutex<State>,
    /// Lossless senders wait here for room.
    room: Notify,
    /// The writer waits here for a frame.
    data: Notify,
}

impl fmt::Debug for Outbound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = self.lock();
        f.debug_struct("Outbound")
            .field("config", &self.config)
            .field("len", &st.queue.len())
            .field("bytes", &st.bytes)
            .field("capacity", &st.capacity)
            .field("closed", &st.closed)
            .finish_non_exhaustive()
    }
}

impl Outbound {
    /// An empty queue with `config`'s limits, timing the soft limit on `clock`.
    ///
    /// # Errors
    ///
    /// [`WsConfigError`] when `config` does not [validate](QueueConfig::validate).
    pub fn new(
        config: QueueConfig,
        clock: Arc<dyn Clock + Send + Sync>,
    ) -> Result<Self, WsConfigError> {
        config.validate()?;
        let soft_ticks = clock.ticks_for(config.soft_limit_for);
        Ok(Self {
            config,
            clock,
            soft_ticks,
            state: Mutex::new(State {
                queue: VecDeque::new(),
                bytes: 0,
                soft_limit: config.soft_limit_bytes,
                capacity: config.capacity,
                level: PressureLevel::Normal,
                resync_pending: false,
                resync_after_seq: None,
                writer_waiting: false,
                high_water: 0,
                senders_waiting: 0,
                floor_revision: None,
                floor_seq: 0,
                floor_all_before_seq: false,
                next_seq: 0,
                floor_log_offset: 0,
                activity_floor: 0,
                activity_snapshots: VecDeque::new(),
                feed: None,
                soft_since: None,
                closed: None,
                classes: [ClassMetrics::default(); 4],
                replaced_snapshots: 0,
                resyncs: 0,
                activity_resyncs: 0,
                discarded_deltas: 0,
                lossless_waits: 0,
                lossless_timeouts: 0,
                lags: 0,
                peak_bytes: 0,
            }),
            room: Notify::new(),
            data: Notify::new(),
        })
    }

    /// The configuration the queue was built with.
    pub fn config(&self) -> &QueueConfig {
        &self.config
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing under the lock panics; if something did, the counters are still
        // consistent enough to keep serving rather than poisoning every connection.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn wake(&self, wake: Wake) {
        if wake.all {
            self.room.notify_waiters();
            self.data.notify_waiters();
        }
        if wake.room_one {
            self.room.notify_one();
        }
        if wake.data {
            self.data.notify_one();
        }
    }

    /// Offers a frame without waiting, applying its class policy (see the
    /// [type docs](Outbound#delivery-classes)).
    ///
    /// # Errors
    ///
    /// - [`OfferError::Full`]: a lossless frame (or a snapshot with nothing to
    ///   replace) found no room, in events or in bytes;
    /// - [`OfferError::Closed`]: the queue is closed;
    /// - [`OfferError::SlowConsumer`]: the frame can never fit under the hard byte
    ///   limit (see [Byte limits](Outbound#byte-limits)), or the soft limit had been
    ///   held too long; the queue is now closed.
    pub fn offer(&self, frame: Frame) -> Result<Offered, OfferError> {
        self.offer_inner(frame, Attempt::Offer)
    }

    fn offer_inner(&self, frame: Frame, attempt: Attempt) -> Result<Offered, OfferError> {
        let mut st = self.lock();
        let (result, mut wake) = self.offer_locked(&mut st, frame);
        st.filter_data_wake(&mut wake);
        if let Err(err) = &result {
            match (err, attempt) {
                // Not handed back: the sender waits (its guard in `send_until`
                // takes it off `senders_waiting` again).
                (OfferError::Full(_), Attempt::FirstWait) => {
                    st.lossless_waits += 1;
                    st.senders_waiting += 1;
                }
                (OfferError::Full(_), Attempt::Rewait) => {}
                _ => st.classes[err.frame().class().index()].rejected += 1,
            }
        }
        drop(st);
        self.wake(wake);
        result
    }

    /// Waits until `deadline` (tokio time) for room for a lossless frame (or a
    /// snapshot with nothing to replace); other frames are offered as by
    /// [`offer`](Self::offer), without waiting.
    ///
    /// Cancel-safe: dropping the future leaves the frame unqueued and the queue
    /// unchanged.
    ///
    /// Cooperative: each call consumes a unit of the tokio task's budget
    /// ([`consume_budget`](tokio::task::coop::consume_budget)), so a task that sends
    /// in a loop yields now and then even when the queue always has room, and the
    /// connection's writer keeps up.
    ///
    /// # Errors
    ///
    /// As [`offer`](Self::offer), except that `Full` becomes a wait; at the deadline
    /// the queue is closed with
    /// [`CloseReason::SlowConsumer`]`(`[`SlowConsumer::LosslessTimeout`]`)` and the
    /// frame handed back in [`OfferError::SlowConsumer`].
    pub async fn send_until(
        &self,
        mut frame: Frame,
        deadline: tokio::time::Instant,
    ) -> Result<Offered, OfferError> {
        // Every send consumes a unit of the task's budget, before the frame is
        // offered (so cancelling here leaves the queue unchanged): a loop of sends
        // that always find room still yields to the runtime, so the writer it wakes
        // gets to run (see `Hub::broadcast_frame`).
        tokio::task::coop::consume_budget().await;
        let mut first = true;
        let mut _waiting = None;
        loop {
            let mut notified = pin!(self.room.notified());
            // Registered before the check below: a pop after the check wakes it.
            notified.as_mut().enable();
            let attempt = if first {
                Attempt::FirstWait
            } else {
                Attempt::Rewait
            };
            match self.offer_inner(frame, attempt) {
                Err(OfferError::Full(back)) => frame = back,
                other => return other,
            }
            if first {
                // Counted in `senders_waiting` by the offer above; uncounted when
                // this future ends, however it ends.
                _waiting = Some(SenderWaiting(self));
            }
            first = false;
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.time_out(frame);
            }
        }
    }

    /// The deadline of a lossless wait has passed: one last try, then close.
    fn time_out(&self, frame: Frame) -> Result<Offered, OfferError> {
        let mut st = self.lock();
        let (result, mut wake) = self.offer_locked(&mut st, frame);
        st.filter_data_wake(&mut wake);
        if let Err(err) = &result {
            st.classes[err.frame().class().index()].rejected += 1;
        }
        let result = match result {
            Err(OfferError::Full(frame)) => {
                st.lossless_timeouts += 1;
                let w = self.close_locked(
                    &mut st,
                    CloseReason::SlowConsumer(SlowConsumer::LosslessTimeout),
                );
                wake.all |= w.all;
                Err(OfferError::SlowConsumer(frame))
            }
            other => other,
        };
        drop(st);
        self.wake(wake);
        result
    }

    /// [`send_until`](Self::send_until) with the deadline
    /// [`lossless_timeout`](QueueConfig::lossless_timeout) from now.
    ///
    /// # Errors
    ///
    /// As [`send_until`](Self::send_until).
    pub async fn send(&self, frame: Frame) -> Result<Offered, OfferError> {
        let deadline = after(self.config.lossless_timeout);
        self.send_until(frame, deadline).await
    }

    /// The writer's next step: a frame, a resync, or the close. Waits while the
    /// queue is empty and open.
    ///
    /// A close whose reason [drains](CloseReason::drains) comes after the queue is
    /// empty; any other comes at once (the queue was discarded). Meant for one
    /// writer; several would each get some of the frames.
    pub async fn next(&self) -> Next {
        self.next_taken().await.into_next()
    }

    /// [`next`](Self::next), a broadcast kept as its log entry (for the writer:
    /// the entry's prepared bytes, and its offset).
    pub(crate) async fn next_taken(&self) -> Taken {
        loop {
            let mut notified = pin!(self.data.notified());
            // Registered before the check: an offer after the check wakes it.
            notified.as_mut().enable();
            // The log's appends wake this writer too, registered before the check
            // in the same way (an attach after this point notifies `data`).
            let log = self.reading_log();
            let mut appended = pin!(log.as_deref().map(SharedLog::notified));
            if let Some(appended) = appended.as_mut().as_pin_mut() {
                appended.enable();
            }
            if let Some(next) = self.take_next(true) {
                return next;
            }
            std::future::poll_fn(|cx| {
                if notified.as_mut().poll(cx).is_ready() {
                    return core::task::Poll::Ready(());
                }
                match appended.as_mut().as_pin_mut() {
                    Some(appended) => appended.poll(cx),
                    None => core::task::Poll::Pending,
                }
            })
            .await;
        }
    }

    /// The log the writer reads, while it has more to read from it.
    fn reading_log(&self) -> Option<Arc<SharedLog>> {
        let st = self.lock();
        st.feed
            .as_ref()
            .filter(|feed| !feed.done())
            .map(|feed| Arc::clone(&feed.log))
    }

    /// [`next`](Self::next) without waiting: `None` while the queue is empty and
    /// open.
    pub fn try_next(&self) -> Option<Next> {
        self.take_next(false).map(Taken::into_next)
    }

    /// The next step, if any; with `waiting`, an empty queue records that the
    /// writer waits (its `Notified` is already enabled), so the next offer wakes it.
    fn take_next(&self, waiting: bool) -> Option<Taken> {
        let mut st = self.lock();
        if st.resync_pending {
            st.resync_pending = false;
            return Some(Taken::Next(Next::Resync));
        }
        let mut found = None;
        let filled = self.fill(&mut st, 1, usize::MAX, &mut |item| {
            found = Some(match item {
                Staged::Entry(entry) => Taken::Entry(entry.clone()),
                Staged::Frame(frame) => Taken::Next(Next::Frame(frame)),
            });
        });
        let next = match found {
            Some(taken) => Some(taken),
            // A lag found on the way asks for a resync before anything else.
            None if st.resync_pending => {
                st.resync_pending = false;
                Some(Taken::Next(Next::Resync))
            }
            None => st.closed.clone().map(|r| Taken::Next(Next::Closed(r))),
        };
        if next.is_none() && waiting {
            st.writer_waiting = true;
        }
        drop(st);
        self.wake(filled.wake);
        next
    }

    /// Hands the writer up to `max` frames (and no more once `max_bytes` are
    /// reached, at least one), merging the shared log and the private queue in
    /// order: a direct frame comes after every log entry below its `after` mark.
    /// Stale state frames are skipped (counted); a lag is handled by the class
    /// rules ([`lagged_locked`](Self::lagged_locked)) and, if it asks for a
    /// resync, ends the fill so the resync comes first.
    fn fill(
        &self,
        st: &mut State,
        max: usize,
        max_bytes: usize,
        out: &mut dyn FnMut(Staged<'_>),
    ) -> Filled {
        let mut filled = Filled::default();
        let mut bytes = 0usize;
        let done = |taken: usize, bytes: usize| taken >= max || (taken > 0 && bytes >= max_bytes);
        loop {
            if st.resync_pending || done(filled.taken, bytes) {
                break;
            }
            // An activity resync's snapshots come before anything read after it.
            if let Some(frame) = st.activity_snapshots.pop_front() {
                let ci = frame.class().index();
                st.classes[ci].offered += 1;
                st.classes[ci].sent += 1;
                filled.taken += 1;
                bytes += frame.len();
                out(Staged::Frame(frame));
                continue;
            }
            if let Some(mut feed) = st.feed.take() {
                let limit = st
                    .queue
                    .front()
                    .map_or(u64::MAX, |e| e.after)
                    .min(feed.end.map_or(u64::MAX, |end| end.offset()));
                let window = self.log_window(st);
                let (mut taken, mut took_bytes) = (filled.taken, bytes);
                let walk = feed.log.walk(
                    &mut feed.cursor,
                    limit,
                    feed.end.as_ref(),
                    window,
                    |entry| {
                        if done(taken, took_bytes) {
                            return false;
                        }
                        let frame = entry.frame();
                        let ci = frame.class().index();
                        st.classes[ci].offered += 1;
                        if st.is_stale(frame, entry.offset() < st.floor_log_offset)
                            || (frame.kind().is_activity() && entry.offset() < st.activity_floor)
                        {
                            st.count_stale(ci);
                        } else {
                            st.classes[ci].sent += 1;
                            taken += 1;
                            took_bytes += frame.len();
                            out(Staged::Entry(entry));
                        }
                        true
                    },
                );
                filled.taken = taken;
                bytes = took_bytes;
                st.feed = Some(feed);
                filled.log_moved |= walk.taken > 0 || walk.skipped.is_some();
                if let Some(skipped) = walk.skipped {
                    let wake = self.lagged_locked(st, skipped, walk.over_window);
                    filled.wake.merge(wake);
                    continue;
                }
                if done(filled.taken, bytes) {
                    break;
                }
                // The walk stopped at the next direct frame's mark, or at the end
                // of the log: walking again would find nothing before that frame.
            }
            // Nothing in the log comes before the next direct frame: take it.
            match st.pop_front_live() {
                Some(Some(frame)) => {
                    filled.popped += 1;
                    filled.taken += 1;
                    bytes += frame.len();
                    out(Staged::Frame(frame));
                }
                Some(None) => filled.popped += 1,
                None => break,
            }
        }
        if filled.popped > 0 || filled.log_moved {
            st.after_removal();
        }
        if st.senders_waiting > 0 {
            // One freed slot wakes one sender; more (or bytes freed in the log)
            // wake them all, to re-check.
            if filled.popped == 1 && !filled.log_moved {
                filled.wake.room_one = true;
            } else if filled.popped > 0 || filled.log_moved {
                filled.wake.all = true;
            }
        }
        filled
    }

    /// The log bytes the connection may have outstanding: the hard limit less its
    /// private queue's bytes.
    fn log_window(&self, st: &State) -> u64 {
        self.config.hard_limit_bytes.saturating_sub(st.bytes) as u64
    }

    /// The class rules for what the cursor skipped (see
    /// [Shared log](Outbound#the-shared-log)): lost lossless events or
    /// non-state snapshots close the queue as a slow consumer, lost deltas or
    /// state snapshots mark a resync, lost droppables are counted. Every skipped
    /// event counts as offered and dropped in its class.
    fn lagged_locked(&self, st: &mut State, skipped: Skipped, over_window: bool) -> Wake {
        st.lags += 1;
        for class in DeliveryClass::ALL {
            let n = skipped.of(class);
            st.classes[class.index()].offered += n;
            st.classes[class.index()].dropped += n;
        }
        st.discarded_deltas += skipped.of(DeliveryClass::StateDelta);
        st.replaced_snapshots += skipped.state_snapshots;
        if skipped.unrecoverable() > 0 {
            let why = if over_window {
                SlowConsumer::HardLimit
            } else {
                SlowConsumer::Lagged
            };
            return self.close_locked(st, CloseReason::SlowConsumer(why));
        }
        let mut wake = Wake::default();
        if skipped.activities() > 0 && st.closed.is_none() {
            let resync = st
                .feed
                .as_ref()
                .and_then(|feed| feed.log.activity_resync(skipped.from));
            match resync {
                Some(resync) => {
                    st.activity_resyncs += 1;
                    st.activity_floor = st.activity_floor.max(resync.through);
                    st.activity_snapshots = resync.frames.into();
                    wake.data = true;
                }
                None => {
                    return self
                        .close_locked(st, CloseReason::SlowConsumer(SlowConsumer::NoSnapshot));
                }
            }
        }
        if skipped.resyncable() > 0 && !st.resync_pending && st.closed.is_none() {
            st.resync_pending = true;
            st.resyncs += 1;
            wake.data = true;
        }
        wake
    }

    /// Applies the log's bounds and the hard byte limit to the cursor without
    /// reading: what it can no longer take is skipped by the class rules.
    fn trim_locked(&self, st: &mut State) -> Wake {
        let Some(mut feed) = st.feed.take() else {
            return Wake::default();
        };
        let window = self.log_window(st);
        let at = feed.cursor.offset();
        let walk = feed
            .log
            .walk(&mut feed.cursor, at, feed.end.as_ref(), window, |_| false);
        st.feed = Some(feed);
        match walk.skipped {
            Some(skipped) => {
                let mut wake = self.lagged_locked(st, skipped, walk.over_window);
                st.after_removal();
                if st.senders_waiting > 0 {
                    wake.all = true;
                }
                wake
            }
            None => Wake::default(),
        }
    }

    /// Reads broadcast events from `log` from now on (its head), merged in order
    /// with the direct sends (see [Shared log](Outbound#the-shared-log)). Called by
    /// [`Hub::attach`](super::Hub::attach). Attached again to the log it already
    /// reads, the cursor stays where it is (also after a
    /// [`detach_from_log`](Self::detach_from_log)); attached to another log, the
    /// old one is left where it is. A closed queue attaches to nothing.
    pub fn attach_log(&self, log: Arc<SharedLog>) {
        let cursor = log.cursor();
        self.attach_log_at(log, cursor);
    }

    /// As [`attach_log`](Self::attach_log), reading from `cursor` (one of `log`'s,
    /// from [`SharedLog::cursor_after`], to resume where a reader left off) rather
    /// than the head, when the queue does not read `log` already.
    pub fn attach_log_at(&self, log: Arc<SharedLog>, cursor: Cursor) {
        let mut st = self.lock();
        if st.closed.is_some() {
            return;
        }
        match &mut st.feed {
            Some(feed) if Arc::ptr_eq(&feed.log, &log) => feed.end = None,
            _ => {
                // Frames queued before come before everything the new log holds.
                for entry in &mut st.queue {
                    entry.after = 0;
                }
                st.feed = Some(Feed {
                    cursor,
                    log,
                    end: None,
                });
            }
        }
        drop(st);
        // A writer waiting only for direct frames now waits for the log too.
        self.data.notify_waiters();
    }

    /// Queues `notice` and asks the writer for a resync from the connection's
    /// snapshot source once the notice is taken (as a skipped delta does): for a
    /// channel whose history was lost, the client learns so first, then gets the
    /// state. A notice that finds no room is dropped, and the resync asked at once.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn notify_then_resync(&self, notice: Frame) {
        let mut st = self.lock();
        if st.closed.is_some() {
            return;
        }
        let seq = st.next_seq;
        let (result, mut wake) = self.offer_locked(&mut st, notice);
        match result {
            Ok(_) => st.resync_after_seq = Some(seq),
            Err(_) if !st.resync_pending && st.closed.is_none() => {
                st.resync_pending = true;
                st.resyncs += 1;
                wake.data = true;
            }
            Err(_) => {}
        }
        drop(st);
        // The writer may be waiting for the log only: wake it either way.
        wake.data = true;
        self.wake(wake);
    }

    /// Stops reading the shared log at its head now: what was appended before is
    /// still delivered (within the limits), nothing later. Called by
    /// [`Hub::detach`](super::Hub::detach).
    pub fn detach_from_log(&self) {
        let mut st = self.lock();
        if let Some(feed) = &mut st.feed {
            if feed.end.is_none() {
                feed.end = Some(feed.log.cursor());
            }
        }
        drop(st);
        self.data.notify_waiters();
    }

    /// What the connection has not taken yet: the private queue and the shared
    /// log's backlog together, the figure the byte limits apply to.
    pub fn backlog(&self) -> Backlog {
        let st = self.lock();
        let log = st.log_backlog();
        Backlog {
            events: st.queue.len() as u64 + log.events,
            bytes: st.bytes as u64 + log.bytes,
        }
    }

    /// Takes up to `max` frames, and no more once `max_bytes` of text are taken
    /// (always at least one frame), in one go: one lock for the batch instead of one
    /// per frame. Appends them to `out` in order. Returns `Some` instead, with
    /// nothing appended, when the next step is a [`Next::Resync`] or the queue is
    /// empty and closed; `None` otherwise (`out` may have got nothing: the queue is
    /// empty and open).
    ///
    /// Frames taken count as sent and leave the byte account; a close that
    /// discards the queue does not reach them. So a writer keeps `max` and
    /// `max_bytes` small: what it holds is outside the queue's limits.
    pub fn try_next_batch(
        &self,
        out: &mut VecDeque<Frame>,
        max: usize,
        max_bytes: usize,
    ) -> Option<Next> {
        self.try_stage(max, max_bytes, &mut |item| out.push_back(item.into_frame()))
    }

    /// [`try_next_batch`](Self::try_next_batch) for the connection's writer: each
    /// frame is handed over as it is found, a broadcast one as its log entry (with
    /// the wire bytes encoded once for every connection), under the queue's lock.
    pub(crate) fn try_stage(
        &self,
        max: usize,
        max_bytes: usize,
        out: &mut dyn FnMut(Staged<'_>),
    ) -> Option<Next> {
        let mut st = self.lock();
        if st.resync_pending {
            st.resync_pending = false;
            return Some(Next::Resync);
        }
        let filled = self.fill(&mut st, max, max_bytes, out);
        let next = if filled.taken > 0 {
            None
        } else if st.resync_pending {
            st.resync_pending = false;
            Some(Next::Resync)
        } else {
            st.closed.clone().map(Next::Closed)
        };
        drop(st);
        self.wake(filled.wake);
        next
    }

    /// The writer sent a snapshot taken at `revision` after [`Next::Resync`]. From
    /// now on the queue skips the state frames the snapshot covers (see
    /// [Resync and revisions](Outbound#resync-and-revisions)).
    pub fn resynced(&self, revision: Option<u64>) {
        let mut st = self.lock();
        st.floor_seq = st.next_seq;
        st.floor_log_offset = st.feed.as_ref().map_or(0, |feed| feed.log.head());
        match revision {
            Some(rev) => {
                st.floor_revision = Some(st.floor_revision.map_or(rev, |r| r.max(rev)));
                st.floor_all_before_seq = false;
            }
            None => st.floor_all_before_seq = true,
        }
    }

    /// Checks the soft byte limit's timer on the crate clock. When the queued bytes
    /// have stayed above [`soft_limit_bytes`](QueueConfig::soft_limit_bytes) for
    /// [`soft_limit_for`](QueueConfig::soft_limit_for), closes the queue.
    ///
    /// # Errors
    ///
    /// The reason the queue is closed, when it is (by this call or earlier).
    pub fn check_limits(&self) -> Result<(), CloseReason> {
        let mut st = self.lock();
        let mut wake = self.trim_locked(&mut st);
        // The log grows without visiting its readers: the soft timer starts here
        // (or at the connection's next offer or take) once the backlog is over.
        st.note_backlog(&*self.clock);
        wake.merge(self.check_soft_locked(&mut st));
        let result = match &st.closed {
            Some(reason) => Err(reason.clone()),
            None => Ok(()),
        };
        drop(st);
        self.wake(wake);
        result
    }

    /// Closes the queue (see [Closing](Outbound#closing)). Idempotent: the first reason
    /// wins. Wakes every waiting sender and the writer.
    pub fn close(&self, reason: CloseReason) {
        let mut st = self.lock();
        let wake = self.close_locked(&mut st, reason);
        drop(st);
        self.wake(wake);
    }

    /// Why the queue was closed, if it was.
    pub fn close_reason(&self) -> Option<CloseReason> {
        self.lock().closed.clone()
    }

    /// Whether the queue is closed.
    pub fn is_closed(&self) -> bool {
        self.lock().closed.is_some()
    }

    /// Frames in the private queue (direct sends) now; the shared log's backlog
    /// is in [`backlog`](Self::backlog).
    pub fn len(&self) -> usize {
        self.lock().queue.len()
    }

    /// Whether the private queue is empty (the log may still hold events for the
    /// connection: see [`backlog`](Self::backlog)).
    pub fn is_empty(&self) -> bool {
        self.lock().queue.is_empty()
    }

    /// Bytes (JSON text) in the private queue now.
    pub fn queued_bytes(&self) -> usize {
        self.lock().bytes
    }

    /// A snapshot of the counters.
    pub fn metrics(&self) -> OutboundMetrics {
        let st = self.lock();
        let log = st.log_backlog();
        OutboundMetrics {
            lags: st.lags,
            log_backlog_events: log.events,
            log_backlog_bytes: log.bytes,
            classes: st.classes,
            replaced_snapshots: st.replaced_snapshots,
            resyncs: st.resyncs,
            activity_resyncs: st.activity_resyncs,
            discarded_deltas: st.discarded_deltas,
            lossless_waits: st.lossless_waits,
            lossless_timeouts: st.lossless_timeouts,
            queued_bytes: st.bytes,
            peak_bytes: st.peak_bytes,
            len: st.queue.len(),
            capacity: st.capacity,
            max_capacity: self.config.capacity,
            buffer_slots: st.queue.capacity(),
            droppable_capacity: st.droppable_capacity(),
            resync_pending: st.resync_pending,
            closed: st.closed.clone(),
        }
    }

    fn set_capacity_locked(&self, st: &mut State, capacity: usize) -> Wake {
        let raised = capacity > st.capacity;
        st.capacity = capacity;
        // Evict droppables beyond the new bounds, oldest first.
        let mut evicted = false;
        while (st.queue.len() > st.capacity
            || st.queued(DeliveryClass::Droppable.index()) > st.droppable_capacity())
            && st.evict_oldest_droppable()
        {
            evicted = true;
        }
        if evicted {
            st.after_removal();
        }
        Wake {
            all: raised || evicted,
            ..Wake::default()
        }
    }

    fn close_locked(&self, st: &mut State, reason: CloseReason) -> Wake {
        if st.closed.is_some() {
            return Wake::default();
        }
        if !reason.drains() {
            st.high_water = 0;
            for entry in core::mem::take(&mut st.queue) {
                let i = entry.frame.class().index();
                st.classes[i].queued -= 1;
                st.classes[i].dropped += 1;
            }
            st.bytes = 0;
            st.soft_since = None;
            st.resync_pending = false;
            st.activity_snapshots = VecDeque::new();
            // The log's backlog is not this queue's to discard: the cursor goes.
            st.feed = None;
        } else if let Some(feed) = &mut st.feed {
            // Drains what was broadcast before the close, nothing later.
            if feed.end.is_none() {
                feed.end = Some(feed.log.cursor());
            }
        }
        st.closed = Some(reason);
        Wake {
            all: true,
            ..Wake::default()
        }
    }

    /// Closes for the hard byte limit; whether every waiter must be woken.
    fn hard_limit_locked(&self, st: &mut State) -> bool {
        self.close_locked(st, CloseReason::SlowConsumer(SlowConsumer::HardLimit))
            .all
    }

    /// The soft limit's timer. The clock is read only while the timer runs, so an
    /// offer below the soft limit costs no clock read.
    fn check_soft_locked(&self, st: &mut State) -> Wake {
        match st.soft_since {
            Some(since)
                if st.closed.is_none()
                    && self.clock.now().saturating_sub(since) >= self.soft_ticks =>
            {
                self.close_locked(st, CloseReason::SlowConsumer(SlowConsumer::SoftLimit))
            }
            _ => Wake::default(),
        }
    }

    /// The class policies, under the lock.
    fn offer_locked(&self, st: &mut State, frame: Frame) -> (Result<Offered, OfferError>, Wake) {
        let class = frame.class();
        let ci = class.index();
        if st.closed.is_some() {
            return (Err(OfferError::Closed(frame)), Wake::default());
        }
        let mut wake = self.check_soft_locked(st);
        if st.closed.is_some() {
            return (Err(OfferError::SlowConsumer(frame)), wake);
        }
        let max_hard = self.config.hard_limit_bytes;
        // The byte limits count the shared log's backlog too: what is left of the
        // hard limit is the private queue's room.
        let log_bytes = usize::try_from(st.log_backlog().bytes).unwrap_or(usize::MAX);
        let hard = max_hard.saturating_sub(log_bytes);

        if class == DeliveryClass::Snapshot && st.queued(ci) > 0 {
            if let Some(pos) = st
                .queue
                .iter()
                .position(|e| e.frame.kind() == frame.kind() && e.frame.key() == frame.key())
            {
                let old_len = st.queue[pos].frame.len();
                if let (Some(old), Some(new)) = (st.queue[pos].frame.revision(), frame.revision()) {
                    if new < old {
                        // The queued one is newer: latest wins.
                        st.classes[ci].offered += 1;
                        st.classes[ci].dropped += 1;
                        st.replaced_snapshots += 1;
                        return (Ok(Offered::DroppedNewest), wake);
                    }
                }
                if st.bytes - old_len + frame.len() > max_hard {
                    wake.all |= self.hard_limit_locked(st);
                    return (Err(OfferError::SlowConsumer(frame)), wake);
                }
                if st.bytes - old_len + frame.len() > hard {
                    // It fits once the writer has taken some of the log.
                    return (Err(OfferError::Full(frame)), wake);
                }
                st.classes[ci].offered += 1;
                st.classes[ci].dropped += 1;
                st.replaced_snapshots += 1;
                let new_len = frame.len();
                st.bytes = st.bytes - old_len + new_len;
                let after = st.queue[pos].after;
                st.queue[pos] = Entry {
                    frame,
                    seq: st.next_seq,
                    after,
                };
                st.next_seq += 1;
                if new_len > old_len {
                    st.after_growth(&*self.clock);
                } else {
                    // Fewer bytes: the soft limit's timer may have to stop.
                    st.after_removal();
                }
                return (Ok(Offered::ReplacedSnapshot), wake);
            }
        }

        let fits = |st: &State| {
            st.queue.len() < st.capacity
                && st.bytes + frame.len() <= hard
                && (class != DeliveryClass::Droppable || st.queued(ci) < st.droppable_capacity())
        };
        if fits(st) {
            st.push(frame, &*self.clock);
            wake.data = true;
            return (Ok(Offered::Queued), wake);
        }

        // Droppable frames yield: a frame of another class evicts the oldest
        // droppables before its own class policy applies.
        if class != DeliveryClass::Droppable && st.can_make_room_for(&frame, hard) {
            while !fits(st) && st.evict_oldest_droppable() {}
            st.after_removal();
            st.push(frame, &*self.clock);
            wake.data = true;
            return (Ok(Offered::DroppedOldest), wake);
        }

        // A direct `ACTIVITY_DELTA`: the log tracks only broadcast activities, so
        // nothing could resynchronise it; it waits for room like a lossless event.
        let class = if frame.kind() == &EventType::ActivityDelta {
            DeliveryClass::Lossless
        } else {
            class
        };
        match class {
            DeliveryClass::Lossless | DeliveryClass::Snapshot => {
                if frame.len() > max_hard {
                    // It would not fit in an empty queue: waiting cannot help.
                    wake.all |= self.hard_limit_locked(st);
                    (Err(OfferError::SlowConsumer(frame)), wake)
                } else {
                    // Full in events or in bytes alike: the sender may wait.
                    (Err(OfferError::Full(frame)), wake)
                }
            }
            DeliveryClass::StateDelta => {
                let discarded = st.discard_deltas();
                st.classes[ci].offered += 1;
                st.classes[ci].dropped += 1;
                st.discarded_deltas += 1;
                if discarded > 0 {
                    st.after_removal();
                    wake.all = true;
                }
                if !st.resync_pending {
                    st.resync_pending = true;
                    st.resyncs += 1;
                    wake.data = true;
                }
                (Ok(Offered::Resync), wake)
            }
            DeliveryClass::Droppable => {
                if self.config.droppable == OverflowPolicy::DropOldest
                    && st.can_make_room_for(&frame, hard)
                {
                    while !fits(st) && st.evict_oldest_droppable() {}
                    st.after_removal();
                    st.push(frame, &*self.clock);
                    wake.data = true;
                    (Ok(Offered::DroppedOldest), wake)
                } else {
                    st.classes[ci].offered += 1;
                    st.classes[ci].dropped += 1;
                    (Ok(Offered::DroppedNewest), wake)
                }
            }
        }
    }
}

impl State {
    /// Droppable frames allowed now.
    fn droppable_capacity(&self) -> usize {
        if self.level >= PressureLevel::Critical {
            (self.capacity / 2).max(1)
        } else {
            self.capacity
        }
    }

    fn push(&mut self, frame: Frame, clock: &dyn Clock) {
        let ci = frame.class().index();
        self.classes[ci].offered += 1;
        self.classes[ci].queued += 1;
        self.bytes += frame.len();
        let after = self.feed.as_ref().map_or(0, Feed::mark);
        self.queue.push_back(Entry {
            frame,
            seq: self.next_seq,
            after,
        });
        self.next_seq += 1;
        self.high_water = self.high_water.max(self.queue.len());
        self.after_growth(clock);
    }

    /// Bookkeeping after the queued bytes grew: the peak, and starting the soft
    /// limit's timer (the only clock read on the offer path, and only when the
    /// bytes cross the soft limit).
    fn after_growth(&mut self, clock: &dyn Clock) {
        self.peak_bytes = self.peak_bytes.max(self.bytes);
        self.note_backlog(clock);
    }

    /// The shared log's backlog for this queue (none when not reading a log).
    fn log_backlog(&self) -> Backlog {
        self.feed
            .as_ref()
            .map_or_else(Backlog::default, Feed::backlog)
    }

    /// The bytes the limits apply to: the private queue's and the log's backlog.
    fn backlog_bytes(&self) -> u64 {
        self.bytes as u64 + self.log_backlog().bytes
    }

    /// Starts the soft limit's timer if the backlog is over the soft limit (the
    /// clock is read only then), and stops it if it is not.
    fn note_backlog(&mut self, clock: &dyn Clock) {
        if self.backlog_bytes() > self.soft_limit as u64 {
            self.soft_since.get_or_insert_with(|| clock.now());
        } else {
            self.soft_since = None;
        }
    }

    /// Frames of class `ci` in the queue (the class's `queued` counter).
    fn queued(&self, ci: usize) -> usize {
        self.classes[ci].queued as usize
    }

    /// Takes the private queue's front entry: `Some(Some(frame))`, counted as
    /// sent; `Some(None)` when it was stale (dropped and counted); `None` when the
    /// queue is empty. `after_removal` and the wake-ups are the caller's.
    fn pop_front_live(&mut self) -> Option<Option<Frame>> {
        let entry = self.queue.pop_front()?;
        let ci = entry.frame.class().index();
        self.bytes -= entry.frame.len();
        self.classes[ci].queued -= 1;
        if self.resync_after_seq.is_some_and(|seq| entry.seq >= seq) {
            self.resync_after_seq = None;
            if !self.resync_pending && self.closed.is_none() {
                self.resync_pending = true;
                self.resyncs += 1;
            }
        }
        if self.is_stale(&entry.frame, entry.seq < self.floor_seq) {
            self.count_stale(ci);
            return Some(None);
        }
        self.classes[ci].sent += 1;
        Some(Some(entry.frame))
    }

    /// Counts a stale state frame of class `ci` as dropped.
    fn count_stale(&mut self, ci: usize) {
        self.classes[ci].dropped += 1;
        if ci == DeliveryClass::StateDelta.index() {
            self.discarded_deltas += 1;
        } else {
            self.replaced_snapshots += 1;
        }
    }

    /// An offer's `data` wake-up is needed only when the writer waits for data;
    /// otherwise it will find the frame by itself (it re-checks under this lock
    /// before it waits). Both sides decide under the lock, so none is lost.
    fn filter_data_wake(&mut self, wake: &mut Wake) {
        if wake.data {
            wake.data = core::mem::take(&mut self.writer_waiting);
        }
    }

    /// Bookkeeping after frames left the queue: the soft timer, and shrinking a
    /// drained buffer.
    fn after_removal(&mut self) {
        // `soft_since` is cleared here, by a discarding close and by a check: a
        // removal (or the cursor's move) is the only way the backlog falls.
        if self.soft_since.is_some() && self.backlog_bytes() <= self.soft_limit as u64 {
            self.soft_since = None;
        }
        // Shrink only when the queue runs empty, and only if it used at most a
        // quarter of its buffer since it last ran empty: a connection that keeps
        // taking bursts keeps its buffer (shrinking while a burst drains would
        // reallocate and copy several times per burst), while one whose burst was
        // a one-off gives the memory back at the next quiet moment.
        if self.queue.is_empty() {
            let slots = self.queue.capacity();
            if slots > SHRINK_ABOVE && self.high_water <= slots / 4 {
                self.queue.shrink_to((self.high_water * 2).max(SHRINK_TO));
            }
            self.high_water = 0;
        }
    }

    /// Removes the oldest queued droppable frame, counting it as dropped.
    fn evict_oldest_droppable(&mut self) -> bool {
        let di = DeliveryClass::Droppable.index();
        if self.queued(di) == 0 {
            return false;
        }
        let Some(pos) = self
            .queue
            .iter()
            .position(|e| e.frame.class() == DeliveryClass::Droppable)
        else {
            return false;
        };
        if let Some(entry) = self.queue.remove(pos) {
            self.bytes -= entry.frame.len();
            self.classes[di].queued -= 1;
            self.classes[di].dropped += 1;
        }
        true
    }

    /// Whether evicting queued droppables (oldest first) can make room for `frame`.
    fn can_make_room_for(&self, frame: &Frame, hard: usize) -> bool {
        let di = DeliveryClass::Droppable.index();
        let mut len = self.queue.len();
        let mut bytes = self.bytes;
        let mut droppables = self.queued(di);
        let droppable = frame.class() == DeliveryClass::Droppable;
        let fits = |len: usize, bytes: usize, droppables: usize| {
            len < self.capacity
                && bytes + frame.len() <= hard
                && (!droppable || droppables < self.droppable_capacity())
        };
        if fits(len, bytes, droppables) {
            return true;
        }
        for e in self
            .queue
            .iter()
            .filter(|e| e.frame.class() == DeliveryClass::Droppable)
        {
            len -= 1;
            bytes -= e.frame.len();
            droppables -= 1;
            if fits(len, bytes, droppables) {
                return true;
            }
        }
        false
    }

    /// Removes every queued state delta (counted; not `ACTIVITY_DELTA`s, which a
    /// state snapshot does not cover); returns how many.
    fn discard_deltas(&mut self) -> usize {
        let ci = DeliveryClass::StateDelta.index();
        if self.queued(ci) == 0 {
            return 0;
        }
        let mut freed = 0;
        let mut n = 0;
        self.queue.retain(|e| {
            if e.frame.class() == DeliveryClass::StateDelta && !e.frame.kind().is_activity() {
                freed += e.frame.len();
                n += 1;
                false
            } else {
                true
            }
        });
        self.bytes -= freed;
        self.classes[ci].queued -= n as u64;
        self.classes[ci].dropped += n as u64;
        self.discarded_deltas += n as u64;
        n
    }

    /// Whether a frame taken (from the queue or the log) is a state frame covered
    /// by the last resync snapshot; `before`: it was queued (or appended) before
    /// the `resynced` call.
    fn is_stale(&self, frame: &Frame, before: bool) -> bool {
        let is_state = (frame.class() == DeliveryClass::StateDelta && !frame.kind().is_activity())
            || frame.kind() == &EventType::StateSnapshot;
        if !is_state {
            return false;
        }
        match frame.revision() {
            Some(rev) => {
                self.floor_revision.is_some_and(|floor| rev <= floor)
                    || (before && self.floor_all_before_seq)
            }
            None => before,
        }
    }
}

/// The soft capacity in frames. Lowering it evicts the oldest droppable frames
/// beyond it (counted); other frames stay queued, and new ones wait until the queue
/// has drained below it. [`apply_pressure`](SoftCapacity::apply_pressure) sets it
/// together with the level, which decides the droppable share (see
/// [Memory pressure](Outbound#memory-pressure)).
impl SoftCapacity for Outbound {
    fn capacity(&self) -> usize {
        self.lock().capacity
    }

    /// The queued frames' bytes now; at most the hard byte limit.
    fn footprint(&self) -> Option<crate::capacity::Footprint> {
        Some(crate::capacity::Footprint {
            bytes: self.queued_bytes() as u64,
            max_bytes: self.config.hard_limit_bytes as u64,
        })
    }

    fn kind(&self) -> &'static str {
        <OutboundMetrics as crate::metrics::Metrics>::KIND
    }

    fn max_capacity(&self) -> usize {
        self.config.capacity
    }

    fn set_capacity(&self, capacity: usize) -> Result<(), CapacityError> {
        capacity::check(capacity, self.config.capacity)?;
        let mut st = self.lock();
        let wake = self.set_capacity_locked(&mut st, capacity);
        drop(st);
        self.wake(wake);
        Ok(())
    }

    fn apply_pressure(&self, level: PressureLevel, capacity: usize) -> Result<(), CapacityError> {
        capacity::check(capacity, self.config.capacity)?;
        let mut st = self.lock();
        st.level = level;
        let wake = self.set_capacity_locked(&mut st, capacity);
        drop(st);
        self.wake(wake);
        Ok(())
    }
}

/// A sender of `send_until` counted in `senders_waiting`; uncounts it when the wait
/// ends, also when its future is dropped.
struct SenderWaiting<'a>(&'a Outbound);

impl Drop for SenderWaiting<'_> {
    fn drop(&mut self) {
        let mut st = self.0.lock();
        st.senders_waiting = st.senders_waiting.saturating_sub(1);
    }
}
