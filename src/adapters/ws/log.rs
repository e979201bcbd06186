//! The fan-out's shared log ([`SharedLog`]): one bounded sequence of encoded events
//! that every connection reads through its own [`Cursor`], so that publishing costs
//! the same whatever the number of connections.
//!
//! This is the shape of tokio's `broadcast` channel and of a Disruptor: the publisher
//! appends once; each reader remembers how far it has read. What a reader has not
//! taken is the log between its cursor and the head, so its backlog in events and
//! bytes is two subtractions ([`SharedLog::backlog`]). A reader that falls behind the
//! log's tail learns exactly what it missed, per delivery class
//! ([`Read::Lagged`]), and decides by the class rules what that means: a lost
//! lossless event closes it as a slow consumer, a lost delta or snapshot asks for a
//! resync, lost droppables are counted.
//!
//! Each event's WebSocket frame (header and payload: a server's frames are unmasked,
//! so they are the same bytes for every connection) is encoded once for all of them
//! ([`LogEntry::wire`]), as gorilla/websocket's `PreparedMessage` does: on append
//! for a payload of [`COPY_BELOW`] bytes or more, on demand below that.

use std::collections::VecDeque;
use std::fmt;
#[cfg(feature = "axum")]
use std::io::Write as _;
use std::pin::pin;
use std::prelude::rust_2021::*;
use std::sync::{OnceLock, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::Bytes;

use super::activity::Activities;
use super::config::LogConfig;
use super::conn::COPY_BELOW;
use super::event::{DeliveryClass, EventType, Frame};
use crate::capacity::{CapacityError, SoftCapacity};
use crate::sync::{AtomicBool, AtomicU64, Ordering};
use crossbeam_utils::CachePadded;

/// Running totals up to some point of the log: bytes and events per class.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
struct Totals {
    /// Payload bytes.
    bytes: u64,
    /// Events per [`DeliveryClass::index`].
    events: [u64; 4],
    /// `STATE_SNAPSHOT` events (part of the snapshot class): a resync replaces them.
    state_snapshots: u64,
    /// `ACTIVITY_DELTA` events of the delta class: an activity resync makes up for
    /// them.
    activity_deltas: u64,
    /// `ACTIVITY_SNAPSHOT` events of the snapshot class: likewise.
    activity_snapshots: u64,
}

impl Totals {
    fn add(&mut self, frame: &Frame) {
        self.bytes += frame.len() as u64;
        let class = frame.class();
        self.events[class.index()] += 1;
        match (frame.kind(), class) {
            (EventType::StateSnapshot, DeliveryClass::Snapshot) => self.state_snapshots += 1,
            (EventType::ActivitySnapshot, DeliveryClass::Snapshot) => {
                self.activity_snapshots += 1;
            }
            (EventType::ActivityDelta, DeliveryClass::StateDelta) => self.activity_deltas += 1,
            _ => {}
        }
    }

    fn since(&self, earlier: &Self) -> Self {
        Self {
            bytes: self.bytes - earlier.bytes,
            events: core::array::from_fn(|i| self.events[i] - earlier.events[i]),
            state_snapshots: self.state_snapshots - earlier.state_snapshots,
            activity_deltas: self.activity_deltas - earlier.activity_deltas,
            activity_snapshots: self.activity_snapshots - earlier.activity_snapshots,
        }
    }
}

/// One event in the log: its offset, the frame, and its wire bytes.
#[derive(Clone)]
pub struct LogEntry {
    offset: u64,
    frame: Frame,
    /// The WebSocket frame: encoded on append for a payload of [`COPY_BELOW`]
    /// bytes or more (every writer shares those bytes); below that, the raw writer
    /// copies header and payload into its own buffer anyway, so the frame is
    /// encoded only if [`LogEntry::wire`] is asked for, and an append of a small
    /// event allocates nothing.
    wire: OnceLock<Bytes>,
    /// The Server-Sent Events form: encoded on append while SSE streams read the
    /// log ([`SharedLog::sse_reader`]), otherwise by the first that reads the entry
    /// (see `sse`); a WebSocket-only server never pays for it.
    #[cfg(feature = "axum")]
    sse: OnceLock<Bytes>,
    /// Totals of the entries before this one, since the log was built.
    before: Totals,
}

impl LogEntry {
    /// The entry's offset: 0 for the first event appended, then one more per event.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The event.
    pub fn frame(&self) -> &Frame {
        &self.frame
    }

    /// The complete WebSocket frame (an unmasked, final text frame: header and
    /// payload), encoded once for every connection. Cloning it is a reference count.
    pub fn wire(&self) -> &Bytes {
        self.wire
            .get_or_init(|| encode_text_frame(self.frame.as_str().as_bytes()))
    }

    /// The entry as one Server-Sent Event, `id: <epoch>-<offset>\ndata: <json>\n\n`
    /// (the JSON encoding has no raw newline, so one `data` line carries it),
    /// encoded once for every SSE stream, by the first that reads it.
    #[cfg(feature = "axum")]
    pub(crate) fn sse(&self, epoch: u64) -> &Bytes {
        self.sse
            .get_or_init(|| encode_sse(epoch, self.offset, &self.frame))
    }

    fn after(&self) -> Totals {
        let mut totals = self.before;
        totals.add(&self.frame);
        totals
    }
}

impl fmt::Debug for LogEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogEntry")
            .field("offset", &self.offset)
            .field("kind", self.frame.kind())
            .field("len", &self.frame.len())
            .finish_non_exhaustive()
    }
}

/// A reader's position in a [`SharedLog`]: the next offset it reads, and the totals
/// of what lies before it (so a lag is counted per class without the lost entries).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cursor {
    next: u64,
    before: Totals,
}

impl Cursor {
    /// The offset this cursor reads next.
    pub fn offset(&self) -> u64 {
        self.next
    }
}

/// What a reader missed: the events that left the log before its cursor reached them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Skipped {
    /// The first offset missed.
    pub from: u64,
    /// The offset the cursor moved to (the log's tail): `to - from` events were missed.
    pub to: u64,
    /// Events missed per class, indexed by [`DeliveryClass::index`].
    pub events: [u64; 4],
    /// Payload bytes missed.
    pub bytes: u64,
    /// `STATE_SNAPSHOT` events missed (counted in the snapshot class too): a
    /// resync makes up for them, unlike a lost `MESSAGES_SNAPSHOT`.
    pub state_snapshots: u64,
    /// `ACTIVITY_DELTA` events missed (counted in the delta class too): an
    /// activity resync makes up for them, not a state one.
    pub activity_deltas: u64,
    /// `ACTIVITY_SNAPSHOT` events missed (counted in the snapshot class too):
    /// likewise.
    pub activity_snapshots: u64,
}

impl Skipped {
    /// Events of `class` missed.
    pub fn of(&self, class: DeliveryClass) -> u64 {
        self.events[class.index()]
    }

    /// Missed events that nothing can make up for: lossless events, and snapshots
    /// other than `STATE_SNAPSHOT` and `ACTIVITY_SNAPSHOT`.
    pub fn unrecoverable(&self) -> u64 {
        self.of(DeliveryClass::Lossless) + self.of(DeliveryClass::Snapshot)
            - self.state_snapshots
            - self.activity_snapshots
    }

    /// Missed events that a state resync makes up for: deltas other than
    /// `ACTIVITY_DELTA`, and state snapshots.
    pub fn resyncable(&self) -> u64 {
        self.of(DeliveryClass::StateDelta) - self.activity_deltas + self.state_snapshots
    }

    /// Missed events that an activity resync makes up for: `ACTIVITY_DELTA` and
    /// `ACTIVITY_SNAPSHOT` (see [Activities](SharedLog#activities)).
    pub fn activities(&self) -> u64 {
        self.activity_deltas + self.activity_snapshots
    }

    /// `self` followed by `later` (which starts where `self` ends).
    fn then(self, later: Self) -> Self {
        Self {
            from: self.from,
            to: later.to,
            events: core::array::from_fn(|i| self.events[i] + later.events[i]),
            bytes: self.bytes + later.bytes,
            state_snapshots: self.state_snapshots + later.state_snapshots,
            activity_deltas: self.activity_deltas + later.activity_deltas,
            activity_snapshots: self.activity_snapshots + later.activity_snapshots,
        }
    }
}

/// What [`SharedLog::walk`] did: what the cursor skipped, and how many entries the
/// visitor took.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Walk {
    /// Events the cursor skipped, having fallen behind the tail (`evicted`) or
    /// beyond the reader's byte window (`over_window`).
    pub skipped: Option<Skipped>,
    /// Part of the skip was for the byte window (not only the log's own eviction).
    pub over_window: bool,
    /// Entries the visitor took.
    pub taken: usize,
}

/// The outcome of [`SharedLog::read`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Read {
    /// This many entries were appended to the output; the cursor moved past them.
    Entries(usize),
    /// The cursor had fallen behind the log's tail: it now points at the tail, and
    /// nothing was read. Read again for what follows.
    Lagged(Skipped),
    /// Nothing new; wait with [`SharedLog::wait`].
    Empty,
    /// Nothing new, and the log is closed: nothing ever will be.
    Closed,
}

/// A reader's backlog: what lies between its cursor and the head.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Backlog {
    /// Events not yet read (including any already evicted).
    pub events: u64,
    /// Their payload bytes.
    pub bytes: u64,
}

/// A snapshot of a [`SharedLog`]'s counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, crate::metrics::Metrics)]
#[metrics(kind = "ws_log")]
pub struct LogMetrics {
    /// Events appended since the log was built.
    #[metric(counter)]
    pub appended: u64,
    /// Events evicted to keep the log within its bounds.
    #[metric(counter)]
    pub evicted: u64,
    /// Events held now.
    #[metric(gauge, name = "held_events")]
    pub held: u64,
    /// Payload bytes held now.
    #[metric(gauge, name = "held", unit = "bytes")]
    pub held_bytes: u64,
    /// The byte bound in force now (lowered under memory pressure).
    #[metric(gauge, name = "bound", unit = "bytes")]
    pub bound_bytes: u64,
    /// The configured byte bound.
    #[metric(gauge, name = "max", unit = "bytes")]
    pub max_bytes: u64,
    /// Activities tracked now (see [Activities](SharedLog#activities)).
    #[metric(gauge)]
    pub activities: u64,
    /// Bytes the tracked activities hold (estimated: each one's last snapshot and
    /// the deltas folded in since).
    #[metric(gauge, name = "activity", unit = "bytes")]
    pub activity_bytes: u64,
    /// Activities no longer tracked: forgotten for the bounds, or whose events
    /// could not be applied. A reader that missed their events cannot be
    /// resynchronised.
    #[metric(counter)]
    pub activities_lost: u64,
}

struct Inner {
    entries: VecDeque<LogEntry>,
    /// The offset of `entries[0]`, or of the next append when empty.
    first: u64,
    /// Totals of everything appended.
    totals: Totals,
    /// Totals of everything evicted (the `before` of the first entry held).
    evicted: Totals,
    held_bytes: u64,
}

impl Inner {
    fn next(&self) -> u64 {
        self.first + self.entries.len() as u64
    }

    /// Evicts from the front until within `max_events` and `bound_bytes`, always
    /// keeping the newest entry. Returns the first one evicted, for the caller to
    /// drop after the lock (an append usually evicts one: its frees then happen
    /// outside the lock the readers wait for).
    fn evict(&mut self, max_events: usize, bound_bytes: u64) -> Option<LogEntry> {
        let mut first = None;
        while self.entries.len() > 1
            && (self.entries.len() > max_events || self.held_bytes > bound_bytes)
        {
            let Some(entry) = self.entries.pop_front() else {
                break;
            };
            self.held_bytes -= entry.frame.len() as u64;
            self.evicted = entry.after();
            self.first += 1;
            if first.is_none() {
                first = Some(entry);
            }
        }
        first
    }
}

/// A bounded log of encoded events, read by many [`Cursor`]s: the fan-out's shape
/// (tokio's `broadcast`, a Disruptor). An append costs the same whatever the number
/// of readers; a reader's backlog is two subtractions ([`backlog`](Self::backlog));
/// a reader that fell behind the tail learns what it missed per delivery class
/// ([`Read::Lagged`]), so the class rules can act on it; and each event's WebSocket
/// frame is encoded once, for every connection ([`LogEntry::wire`]).
///
/// Bounded in events and in payload bytes ([`LogConfig`]); the oldest entries are
/// evicted first. The newest entry is always kept, even if it alone is over the byte
/// bound. The byte bound is a [`SoftCapacity`] (in bytes): under memory pressure the
/// manager lowers it, and the excess is evicted at once.
///
/// # Activities
///
/// AG-UI's `ACTIVITY_SNAPSHOT` and `ACTIVITY_DELTA` are snapshots and deltas like
/// the state's, but each is about one activity, named by its `messageId`. The log
/// keeps each activity's current content: an `ACTIVITY_SNAPSHOT` sets it (unless it
/// says `"replace": false` and the activity exists), an `ACTIVITY_DELTA` applies its
/// RFC 6902 `patch` to it (with the state store's patch code and limits). A reader
/// that skips activity events (the log evicted them, or they were beyond its byte
/// window) is not closed and not left with a gap: it gets a fresh
/// `ACTIVITY_SNAPSHOT` (`"replace": true`) of every tracked activity, then reads
/// on, skipping the activity events those snapshots already contain. This happens
/// inside the reader's [`Outbound`](super::Outbound), with no
/// [`SnapshotSource`](super::SnapshotSource).
///
/// Tracking is bounded ([`LogConfig::max_activities`],
/// [`LogConfig::max_activity_bytes`]); the activity updated longest ago is
/// forgotten first, as is one whose delta does not apply (or comes without a
/// snapshot). A reader whose skip reaches back to an event of a forgotten activity
/// cannot be resynchronised: it is closed as a slow consumer
/// ([`SlowConsumer::NoSnapshot`](super::SlowConsumer::NoSnapshot)), never left
/// with a silent gap. Direct (per-connection) activity events are not tracked: an
/// `ACTIVITY_DELTA` sent to one connection waits for room like a lossless event.
///
/// # Examples
///
/// ```
/// use membound::adapters::ws::{DeliveryClass, Event, EventType, LogConfig, Read, SharedLog};
///
/// let log = SharedLog::new(LogConfig::new(2, 1 << 20))?;
/// let mut fast = log.cursor();
/// let mut slow = log.cursor();
/// for i in 0..3 {
///     log.append(Event::new(EventType::TextMessageContent).with("delta", i).encode());
/// }
/// // The log holds 2 events: the slow reader missed one lossless event.
/// let mut out = Vec::new();
/// let Read::Lagged(skipped) = log.read(&mut slow, 16, usize::MAX, &mut out) else { panic!() };
/// assert_eq!((skipped.from, skipped.to, skipped.of(DeliveryClass::Lossless)), (0, 1, 1));
/// assert_eq!(log.read(&mut slow, 16, usize::MAX, &mut out), Read::Entries(2));
/// assert!(out[1].frame().as_str().contains(r#""delta":2"#));
/// // The WebSocket frame, encoded once: a final text frame, unmasked.
/// assert_eq!(out[1].wire()[0], 0x81);
/// assert_eq!(log.backlog(&fast).events, 3);
/// assert_eq!(log.read(&mut fast, 16, usize::MAX, &mut out), Read::Lagged(skipped));
/// # Ok::<(), membound::adapters::ws::WsConfigError>(())
/// ```
pub struct SharedLog {
    /// Padded, as is `head`: every reader's lock and unlock writes the lock's word,
    /// and every append writes `head`, which every reader with nothing new reads;
    /// neither should drag the other's line (or the fields below) along.
    inner: CachePadded<RwLock<Inner>>,
    notify: Notify,
    closed: AtomicBool,
    max_events: usize,
    max_bytes: u64,
    /// The byte bound in force: `1..=max_bytes`.
    bound_bytes: AtomicU64,
    /// The offset the next append gets, as `Inner::next`, readable without the
    /// lock: a reader with nothing new learns it without contending with the
    /// publisher for the lock.
    head: CachePadded<AtomicU64>,
    /// The activities' current contents, for activity resyncs.
    activities: Activities,
    /// SSE streams reading the log: while there are any, each append encodes its
    /// SSE form too, once for all of them.
    #[cfg(feature = "axum")]
    sse_readers: AtomicU64,
    /// Random, drawn when the log is built: an event id names it with the offset,
    /// so an id from another log (another process, or before a restart) is known
    /// to be void.
    epoch: u64,
}

impl fmt::Debug for SharedLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedLog")
            .field("metrics", &self.metrics())
            .finish_non_exhaustive()
    }
}

fn read_lock(lock: &RwLock<Inner>) -> RwLockReadGuard<'_, Inner> {
    // Every write section leaves `Inner` consistent before anything that could panic.
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

fn write_lock(lock: &RwLock<Inner>) -> RwLockWriteGuard<'_, Inner> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}

impl SharedLog {
    /// An empty log.
    ///
    /// # Errors
    ///
    /// [`WsConfigError`](super::WsConfigError) for a bound of zero.
    pub fn new(config: LogConfig) -> Result<Self, super::WsConfigError> {
        config.validate()?;
        Ok(Self::build(config))
    }

    /// An empty log with bounds already validated.
    pub(crate) fn build(config: LogConfig) -> Self {
        Self::build_at(config, random_epoch(), 0)
    }

    /// An empty log of `epoch` whose first append gets offset `next`: a channel's
    /// log on one node, whose offsets are the channel's (assigned by its
    /// [`Engine`](super::Engine)), so an event id means the same on every node.
    pub(crate) fn build_at(config: LogConfig, epoch: u64, next: u64) -> Self {
        Self {
            inner: CachePadded::new(RwLock::new(Inner {
                entries: VecDeque::new(),
                first: next,
                totals: Totals::default(),
                evicted: Totals::default(),
                held_bytes: 0,
            })),
            notify: Notify::new(),
            closed: AtomicBool::new(false),
            max_events: config.max_events,
            max_bytes: config.max_bytes,
            bound_bytes: AtomicU64::new(config.max_bytes),
            head: CachePadded::new(AtomicU64::new(next)),
            activities: Activities::new(config.max_activities, config.max_activity_bytes),
            #[cfg(feature = "axum")]
            sse_readers: AtomicU64::new(0),
            epoch,
        }
    }

    /// Registers an SSE stream as a reader until the guard is dropped: appends
    /// meanwhile encode their SSE form at once, so that no stream encodes it for
    /// itself (a writer that takes an entry after waiting holds a copy of it).
    #[cfg(feature = "axum")]
    pub(crate) fn sse_reader(self: &std::sync::Arc<Self>) -> SseReading {
        // Relaxed: only a hint for the appender; a late one costs an encode, not
        // correctness (the entry's form is encoded on demand then).
        self.sse_readers.fetch_add(1, Ordering::Relaxed);
        SseReading(std::sync::Arc::clone(self))
    }

    /// This log's epoch: random, drawn when it was built. It is part of every
    /// event id ([`event_id`](Self::event_id)), so that an id from another log is
    /// not mistaken for one of this log's offsets.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The id of the event at `offset`, as Server-Sent Events carry it
    /// (`<epoch in hex>-<offset>`); [`cursor_after`](Self::cursor_after) resumes
    /// after it.
    pub fn event_id(&self, offset: u64) -> String {
        event_id(self.epoch, offset)
    }

    /// A cursor just after the event named by `id` (an [`event_id`](Self::event_id)
    /// of this log): it reads what followed that event. `None` when the id is not
    /// one of this log's, or when the log no longer holds what followed it (some
    /// of it was evicted), so a reader cannot resume without a gap.
    pub fn cursor_after(&self, id: &str) -> Option<Cursor> {
        let (epoch, offset) = id.trim().split_once('-')?;
        if u64::from_str_radix(epoch, 16).ok()? != self.epoch {
            return None;
        }
        let next = offset.parse::<u64>().ok()?.checked_add(1)?;
        let inner = read_lock(&self.inner);
        if next < inner.first || next > inner.next() {
            return None;
        }
        let before = match inner.entries.get((next - inner.first) as usize) {
            Some(entry) => entry.before,
            None => inner.totals,
        };
        Some(Cursor { next, before })
    }

    /// A cursor at the head: it reads what is appended from now on.
    pub fn cursor(&self) -> Cursor {
        let inner = read_lock(&self.inner);
        Cursor {
            next: inner.next(),
            before: inner.totals,
        }
    }

    /// A cursor at the oldest entry held: it reads everything the log still has.
    pub fn cursor_at_tail(&self) -> Cursor {
        let inner = read_lock(&self.inner);
        Cursor {
            next: inner.first,
            before: inner.evicted,
        }
    }

    /// Appends an event, encoding its WebSocket frame once, evicts the oldest entries
    /// beyond the bounds, and wakes the waiting readers. Returns the event's offset.
    ///
    /// The cost does not depend on the number of cursors: they are not visited. (The
    /// wake-up is tokio's `Notify::notify_waiters`, one per waiting reader task, as a
    /// `broadcast` send does.) An append to a closed log is still stored, but no
    /// reader waits for it.
    pub fn append(&self, frame: Frame) -> u64 {
        self.append_prepared(frame, None)
    }

    /// [`append`](Self::append) with the event's WebSocket frame already encoded
    /// (`wire`, whose payload is `frame`'s text), so it is not encoded again.
    pub(crate) fn append_prepared(&self, frame: Frame, wire: Option<Bytes>) -> u64 {
        if !frame.kind().is_activity() {
            return self.push(frame, wire);
        }
        // Parsed before any lock is taken. The tracker's lock is held across the
        // append and the fold, so activities are folded in offset order and a
        // reader's resync (which takes the same lock) sees contents current up to an
        // offset it can compare with its cursor.
        let json = serde_json::from_str(frame.as_str()).ok();
        let mut tracked = self.activities.lock();
        let offset = self.push(frame.clone(), wire);
        self.activities.fold(&mut tracked, offset, &frame, json);
        offset
    }

    /// The append itself.
    fn push(&self, frame: Frame, wire: Option<Bytes>) -> u64 {
        let wire = match wire {
            Some(wire) => OnceLock::from(wire),
            None if frame.len() >= COPY_BELOW => {
                OnceLock::from(encode_text_frame(frame.as_str().as_bytes()))
            }
            None => OnceLock::new(),
        };
        #[cfg(feature = "axum")]
        let sse = OnceLock::new();
        #[cfg(feature = "axum")]
        let with_sse = self.sse_readers.load(Ordering::Relaxed) > 0;
        let bound = self.bound_bytes.load(Ordering::Relaxed);
        let (offset, evicted) = {
            let mut inner = write_lock(&self.inner);
            let offset = inner.next();
            // Room is made before the entry goes in, so the deque never holds more
            // than `max_events` and its buffer stays at that size: the new entry
            // then takes the slot the evicted one just left, still in the cache.
            // Appended before the eviction, it went to a slot a whole buffer (twice
            // the log) away, written that long ago: profiled at 4 connections,
            // the copies in the append were 26 % of the publisher before this
            // change and 19 % after.
            let room = inner.evict(self.max_events.saturating_sub(1).max(1), u64::MAX);
            #[cfg(feature = "axum")]
            if with_sse {
                // The offset is known only under the lock; the encode is a copy of
                // the payload, which the WebSocket frame's encode above also is.
                let _ = sse.set(encode_sse(self.epoch, offset, &frame));
            }
            let before = inner.totals;
            inner.totals.add(&frame);
            inner.held_bytes += frame.len() as u64;
            inner.entries.push_back(LogEntry {
                offset,
                frame,
                wire,
                #[cfg(feature = "axum")]
                sse,
                before,
            });
            // Release: a reader that sees the new head and then takes the lock
            // finds the entry (the lock orders it anyway; the store only has to
            // be no later than the wake-up below, which it is, by program order
            // and `notify_waiters`' own lock).
            self.head.store(offset + 1, Ordering::Release);
            let evicted = (room, inner.evict(self.max_events, bound));
            (offset, evicted)
        };
        // The evicted entry's frees, outside the lock.
        drop(evicted);
        self.notify.notify_waiters();
        offset
    }

    /// Reads from `cursor` into `out`: at most `max_entries` entries (at least one
    /// when any is there), and no more once `max_bytes` of payload are reached
    /// (the entry that reaches it is included). The cursor moves past what was read.
    ///
    /// A cursor that fell behind the tail is moved to it, and the outcome says what
    /// it missed ([`Read::Lagged`]); nothing is read then.
    pub fn read(
        &self,
        cursor: &mut Cursor,
        max_entries: usize,
        max_bytes: usize,
        out: &mut Vec<LogEntry>,
    ) -> Read {
        let inner = read_lock(&self.inner);
        if cursor.next < inner.first {
            return Read::Lagged(Self::skip_to(cursor, inner.first, inner.evicted));
        }
        let start = usize::try_from(cursor.next - inner.first).unwrap_or(usize::MAX);
        let mut bytes = 0usize;
        let mut read = 0;
        for entry in inner.entries.iter().skip(start).take(max_entries.max(1)) {
            if read > 0 && bytes >= max_bytes {
                break;
            }
            bytes = bytes.saturating_add(entry.frame.len());
            cursor.next = entry.offset + 1;
            cursor.before = entry.after();
            out.push(entry.clone());
            read += 1;
        }
        if read > 0 {
            Read::Entries(read)
        } else if self.closed.load(Ordering::Acquire) {
            Read::Closed
        } else {
            Read::Empty
        }
    }

    /// The reader's step, under one read lock: skip what the cursor can no longer
    /// take (and return, so the reader applies its rules first), or else offer
    /// `visit` the entries from the cursor up to `limit`
    /// (exclusive), in order, moving the cursor past each one it takes (`true`);
    /// the first `false` stops the walk and leaves that entry unread.
    ///
    /// What is skipped: the entries evicted before the cursor reached them, and, when
    /// the backlog up to `end` (the head, or a cursor where reading will stop) is
    /// over `window` bytes, the oldest entries beyond it, so that what is left fits
    /// (all of them if the newest alone does not). The skip is counted per class in
    /// [`Walk::skipped`]; what it means is the reader's class rules' business.
    pub(crate) fn walk(
        &self,
        cursor: &mut Cursor,
        limit: u64,
        end: Option<&Cursor>,
        window: u64,
        mut visit: impl FnMut(&LogEntry) -> bool,
    ) -> Walk {
        // Nothing beyond the cursor: nothing to take and nothing to skip (a skip
        // needs entries past the cursor), so the lock is not taken. A stale head
        // only delays the reader to its next look, which every append's wake-up
        // brings.
        if cursor.next >= self.head.load(Ordering::Acquire) {
            return Walk::default();
        }
        let inner = read_lock(&self.inner);
        let mut walk = Walk::default();
        if cursor.next < inner.first {
            let skipped = Self::skip_to(cursor, inner.first, inner.evicted);
            walk.skipped = Some(skipped);
        }
        let upto = end.map_or(inner.totals, |e| e.before);
        if upto.bytes.saturating_sub(cursor.before.bytes) > window {
            // `before.bytes` grows along the log: the first entry from which the
            // rest up to `upto` fits is found by bisection.
            let fits_from = inner
                .entries
                .partition_point(|e| upto.bytes.saturating_sub(e.before.bytes) > window);
            let (to, before) = match inner.entries.get(fits_from) {
                Some(e) if e.offset < end.map_or(u64::MAX, |e| e.next) => (e.offset, e.before),
                _ => end.map_or((inner.next(), inner.totals), |e| (e.next, e.before)),
            };
            if to > cursor.next {
                let more = Self::skip_to(cursor, to, before);
                walk.skipped = Some(walk.skipped.map_or(more, |s| s.then(more)));
                walk.over_window = true;
            }
        }
        if walk.skipped.is_some() {
            // The reader acts on the skip before it reads on.
            return walk;
        }
        let start = usize::try_from(cursor.next - inner.first).unwrap_or(usize::MAX);
        for entry in inner.entries.iter().skip(start) {
            if entry.offset >= limit || !visit(entry) {
                break;
            }
            cursor.next = entry.offset + 1;
            cursor.before = entry.after();
            walk.taken += 1;
        }
        walk
    }

    /// Moves `cursor` to `to`, whose `before` totals are given; what it passed.
    fn skip_to(cursor: &mut Cursor, to: u64, before: Totals) -> Skipped {
        let missed = before.since(&cursor.before);
        let skipped = Skipped {
            from: cursor.next,
            to,
            events: missed.events,
            bytes: missed.bytes,
            state_snapshots: missed.state_snapshots,
            activity_deltas: missed.activity_deltas,
            activity_snapshots: missed.activity_snapshots,
        };
        cursor.next = to;
        cursor.before = before;
        skipped
    }

    /// A future that completes at the next append or close, for a waiter that
    /// [enables](tokio::sync::futures::Notified::enable) it before checking.
    pub(crate) fn notified(&self) -> tokio::sync::futures::Notified<'_> {
        self.notify.notified()
    }

    /// What lies between `cursor` and `end` (a later cursor), or the head.
    pub(crate) fn backlog_upto(&self, cursor: &Cursor, end: Option<&Cursor>) -> Backlog {
        match end {
            Some(end) => Backlog {
                events: end.next.saturating_sub(cursor.next),
                bytes: end.before.bytes.saturating_sub(cursor.before.bytes),
            },
            None => self.backlog(cursor),
        }
    }

    /// Waits until something lies beyond `cursor` (an entry, or a lag) or the log is
    /// closed. Cancel-safe.
    pub async fn wait(&self, cursor: &Cursor) {
        loop {
            let mut notified = pin!(self.notify.notified());
            // Registered before the check, so an append between the check and the
            // await wakes this waiter (`notify_waiters` wakes only registered ones).
            notified.as_mut().enable();
            if self.closed.load(Ordering::Acquire)
                || self.head.load(Ordering::Acquire) > cursor.next
            {
                return;
            }
            notified.await;
        }
    }

    /// What lies between `cursor` and the head: events and payload bytes the reader
    /// has not taken, whether still held or already evicted.
    pub fn backlog(&self, cursor: &Cursor) -> Backlog {
        let inner = read_lock(&self.inner);
        Backlog {
            events: inner.next() - cursor.next,
            bytes: inner.totals.bytes - cursor.before.bytes,
        }
    }

    /// The offset the next append gets.
    pub fn head(&self) -> u64 {
        read_lock(&self.inner).next()
    }

    /// The offset of the oldest entry held (the head when empty).
    pub fn tail(&self) -> u64 {
        read_lock(&self.inner).first
    }

    /// Closes the log: waiting readers wake, and a read with nothing new returns
    /// [`Read::Closed`]. Returns `false` if it was already closed.
    pub fn close(&self) -> bool {
        let first = !self.closed.swap(true, Ordering::AcqRel);
        self.notify.notify_waiters();
        first
    }

    /// Whether [`close`](Self::close) was called.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// A snapshot of the counters.
    pub fn metrics(&self) -> LogMetrics {
        let (appended, evicted, held, held_bytes) = {
            let inner = read_lock(&self.inner);
            (
                inner.totals.events.iter().sum(),
                inner.evicted.events.iter().sum(),
                inner.entries.len() as u64,
                inner.held_bytes,
            )
        };
        let activities = self.activities.figures();
        LogMetrics {
            appended,
            evicted,
            held,
            held_bytes,
            bound_bytes: self.bound_bytes.load(Ordering::Relaxed),
            max_bytes: self.max_bytes,
            activities: activities.tracked,
            activity_bytes: activities.bytes,
            activities_lost: activities.lost,
        }
    }

    /// Fresh `ACTIVITY_SNAPSHOT`s of every tracked activity for a reader that
    /// skipped activity events from offset `from` on, and the offset they are
    /// current up to (the reader skips activity events below it); `None` when some
    /// of what it skipped may belong to an activity no longer tracked.
    pub(crate) fn activity_resync(&self, from: u64) -> Option<super::activity::Resync> {
        self.activities.resync(from)
    }
}

/// The byte bound, in bytes.
impl SoftCapacity for SharedLog {
    fn capacity(&self) -> usize {
        usize::try_from(self.bound_bytes.load(Ordering::Relaxed)).unwrap_or(usize::MAX)
    }

    fn max_capacity(&self) -> usize {
        usize::try_from(self.max_bytes).unwrap_or(usize::MAX)
    }

    /// The payload bytes held now; at most the configured byte bound.
    fn footprint(&self) -> Option<crate::capacity::Footprint> {
        Some(crate::capacity::Footprint {
            bytes: self.metrics().held_bytes,
            max_bytes: self.max_bytes,
        })
    }

    fn kind(&self) -> &'static str {
        <LogMetrics as crate::metrics::Metrics>::KIND
    }

    /// Sets the byte bound and evicts the excess at once.
    fn set_capacity(&self, capacity: usize) -> Result<(), CapacityError> {
        let max = self.max_capacity();
        if capacity == 0 {
            return Err(CapacityError::Zero);
        }
        if capacity > max {
            return Err(CapacityError::AboveMax {
                requested: capacity,
                max,
            });
        }
        let bound = capacity as u64;
        let evicted = {
            let mut inner = write_lock(&self.inner);
            self.bound_bytes.store(bound, Ordering::Relaxed);
            inner.evict(self.max_events, bound)
        };
        drop(evicted);
        Ok(())
    }
}

/// An SSE stream's registration as a reader of a log ([`SharedLog::sse_reader`]).
#[cfg(feature = "axum")]
pub(crate) struct SseReading(std::sync::Arc<SharedLog>);

#[cfg(feature = "axum")]
impl Drop for SseReading {
    fn drop(&mut self) {
        self.0.sse_readers.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The Server-Sent Event for the entry at `offset`: its id, and the JSON on one
/// `data` line (the encoding has no raw newline).
#[cfg(feature = "axum")]
fn encode_sse(epoch: u64, offset: u64, frame: &Frame) -> Bytes {
    let json = frame.as_str();
    let mut out = Vec::with_capacity(json.len() + 48);
    // Writing into a Vec cannot fail.
    let _ = write!(out, "id: {}\ndata: ", event_id(epoch, offset));
    out.extend_from_slice(json.as_bytes());
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}

/// An event id: the log's epoch in hex, a dash, the offset.
pub(crate) fn event_id(epoch: u64, offset: u64) -> String {
    format!("{epoch:x}-{offset}")
}

/// A random epoch (std's per-process random hash keys, and the time).
pub(crate) fn random_epoch() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    hasher.write_u128(now);
    // Never 0, so a default-initialised id is never valid.
    hasher.finish().max(1)
}

/// An unmasked, final text frame (RFC 6455 §5.2) around `payload`: what a server sends
/// for a text message.
fn encode_text_frame(payload: &[u8]) -> Bytes {
    let (head, used) = super::conn::frame_header(0x1, payload.len());
    let mut frame = Vec::with_capacity(used + payload.len());
    frame.extend_from_slice(&head[..used]);
    frame.extend_from_slice(payload);
    Bytes::from(frame)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::ws::{Event, EventType};

    fn frame(kind: EventType, bytes: usize) -> Frame {
        Event::new(kind).with("d", "x".repeat(bytes)).encode()
    }

    #[cfg(feature = "axum")]
    #[test]
    fn appends_encode_the_sse_form_only_while_an_sse_stream_reads() {
        let log = std::sync::Arc::new(SharedLog::build(LogConfig::default()));
        let encoded = |log: &SharedLog| {
            let mut cursor = log.cursor_at_tail();
            let mut out = Vec::new();
            log.read(&mut cursor, usize::MAX, usize::MAX, &mut out);
            out.iter()
                .map(|e| e.sse.get().is_some())
                .collect::<Vec<_>>()
        };
        log.append(frame(EventType::Custom, 1));
        let reading = log.sse_reader();
        log.append(frame(EventType::Custom, 1));
        let second = log.sse_reader();
        drop(reading);
        log.append(frame(EventType::Custom, 1));
        drop(second);
        log.append(frame(EventType::Custom, 1));
        assert_eq!(encoded(&log), [false, true, true, false]);
        // Encoded on append or on demand, the bytes are the same.
        let mut cursor = log.cursor_at_tail();
        let mut out = Vec::new();
        log.read(&mut cursor, usize::MAX, usize::MAX, &mut out);
        let lazy = out[0].sse(log.epoch()).clone();
        assert_eq!(lazy, encode_sse(log.epoch(), 0, out[0].frame()));
        assert_eq!(
            out[1].sse(log.epoch()),
            &encode_sse(log.epoch(), 1, out[1].frame())
        );
    }

    #[test]
    fn a_cursor_resumes_after_an_event_id_only_while_the_sequel_is_held() {
        let log = SharedLog::build(LogConfig {
            max_events: 3,
            ..LogConfig::default()
        });
        let other = SharedLog::build(LogConfig::default());
        assert_ne!(log.epoch(), other.epoch());
        for _ in 0..5 {
            log.append(frame(EventType::Custom, 1));
        }
        // Held: offsets 2, 3, 4. After 1 is 2, the oldest held; after 4 is the head.
        let after1 = log.cursor_after(&log.event_id(1)).unwrap();
        assert_eq!(after1.offset(), 2);
        let mut out = Vec::new();
        let mut cursor = after1;
        assert!(matches!(
            log.read(&mut cursor, 10, usize::MAX, &mut out),
            Read::Entries(3)
        ));
        assert_eq!(log.cursor_after(&log.event_id(4)), Some(log.cursor()));
        assert_eq!(
            log.cursor_after(&log.event_id(0)),
            None,
            "offset 1 was evicted"
        );
        assert_eq!(log.cursor_after(&log.event_id(5)), None, "not yet appended");
        assert_eq!(
            log.cursor_after(&other.event_id(3)),
            None,
            "another log's id"
        );
        for junk in ["", "-", "zz-1", "1", &format!("{:x}-x", log.epoch())] {
            assert_eq!(log.cursor_after(junk), None, "{junk:?}");
        }
        // The SSE form names the event with the same id.
        #[cfg(feature = "axum")]
        {
            let entry = &out[0];
            let sse = entry.sse(log.epoch());
            let expected = format!(
                "id: {}\ndata: {}\n\n",
                log.event_id(2),
                entry.frame().as_str()
            );
            assert_eq!(&sse[..], expected.as_bytes());
        }
    }

    #[test]
    fn wire_bytes_are_what_tungstenite_writes_for_the_same_message() {
        use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
        use tokio_tungstenite::tungstenite::protocol::frame::Frame as WsFrame;
        for len in [0, 1, 125, 126, 127, 65_535, 65_536, 70_000] {
            let payload = vec![b'a'; len];
            let ours = encode_text_frame(&payload);
            let mut theirs = Vec::new();
            WsFrame::message(payload.clone(), OpCode::Data(Data::Text), true)
                .format(&mut theirs)
                .unwrap();
            assert_eq!(&ours[..], &theirs[..], "payload of {len} bytes");
        }
    }

    #[test]
    fn a_full_log_never_holds_more_than_its_bound_so_its_buffer_stays_that_size() {
        // Room is made before an append: the buffer does not grow past the bound
        // (so the new entry takes the slot the evicted one left, still cached).
        let log = SharedLog::new(LogConfig::new(8, 1 << 20)).unwrap();
        for _ in 0..100 {
            log.append(frame(EventType::Custom, 0));
        }
        let inner = read_lock(&log.inner);
        assert_eq!((inner.entries.len(), inner.entries.capacity()), (8, 8));
        drop(inner);
        let m = log.metrics();
        assert_eq!((m.appended, m.evicted, m.held), (100, 92, 8));
    }

    #[test]
    fn small_events_are_encoded_on_demand_and_large_ones_on_append() {
        let log = SharedLog::build(LogConfig::default());
        let small = frame(EventType::Custom, 10);
        let large = frame(EventType::Custom, COPY_BELOW);
        assert!(small.len() < COPY_BELOW && large.len() >= COPY_BELOW);
        log.append(small.clone());
        log.append(large.clone());
        let mut cursor = log.cursor_at_tail();
        let mut out = Vec::new();
        log.read(&mut cursor, usize::MAX, usize::MAX, &mut out);
        // The small event's append allocated no frame; the large one's did.
        assert_eq!(
            out.iter()
                .map(|e| e.wire.get().is_some())
                .collect::<Vec<_>>(),
            [false, true]
        );
        // Asked for, both are the same bytes as an eager encode.
        for (entry, frame) in out.iter().zip([&small, &large]) {
            assert_eq!(entry.wire(), &encode_text_frame(frame.as_str().as_bytes()));
        }
        assert!(out[0].wire.get().is_some());
    }

    #[test]
    fn bounds_in_events_and_bytes_evict_the_oldest_and_keep_the_newest() {
        let log = SharedLog::new(LogConfig::new(3, 1000)).unwrap();
        let one = frame(EventType::Custom, 0).len() as u64;
        for _ in 0..5 {
            log.append(frame(EventType::Custom, 0));
        }
        let m = log.metrics();
        assert_eq!(
            (m.appended, m.evicted, m.held, m.held_bytes),
            (5, 2, 3, 3 * one)
        );
        assert_eq!((log.tail(), log.head()), (2, 5));
        // One frame over the byte bound alone is kept; the rest go.
        log.append(frame(EventType::Custom, 2000));
        let m = log.metrics();
        assert_eq!((m.held, log.tail()), (1, 5));
    }

    #[test]
    fn a_lagging_cursor_learns_what_it_missed_per_class() {
        let log = SharedLog::new(LogConfig::new(2, 1 << 20)).unwrap();
        let mut cursor = log.cursor();
        let kinds = [
            EventType::TextMessageContent, // lossless
            EventType::Custom,             // droppable
            EventType::StateDelta,         // delta
            EventType::StateSnapshot,      // snapshot
            EventType::Custom,
            EventType::RunFinished,
        ];
        let mut bytes = 0;
        for (i, kind) in kinds.into_iter().enumerate() {
            let f = frame(kind, i);
            if i < 4 {
                bytes += f.len() as u64;
            }
            log.append(f);
        }
        assert_eq!(log.backlog(&cursor).events, 6);
        let mut out = Vec::new();
        let Read::Lagged(skipped) = log.read(&mut cursor, 10, usize::MAX, &mut out) else {
            unreachable!("not lagged");
        };
        assert_eq!((skipped.from, skipped.to, skipped.bytes), (0, 4, bytes));
        assert_eq!(skipped.events, [1, 1, 1, 1]);
        assert!(out.is_empty());
        assert_eq!(
            log.read(&mut cursor, 10, usize::MAX, &mut out),
            Read::Entries(2)
        );
        assert_eq!(out.iter().map(LogEntry::offset).collect::<Vec<_>>(), [4, 5]);
        assert_eq!(log.read(&mut cursor, 10, usize::MAX, &mut out), Read::Empty);
        assert_eq!(log.backlog(&cursor), Backlog::default());
        // A second lag counts from where the first left off.
        for _ in 0..3 {
            log.append(frame(EventType::StateDelta, 0));
        }
        let Read::Lagged(again) = log.read(&mut cursor, 10, usize::MAX, &mut out) else {
            unreachable!("not lagged");
        };
        assert_eq!((again.from, again.to), (6, 7));
        assert_eq!(again.of(DeliveryClass::StateDelta), 1);
        assert_eq!(again.events.iter().sum::<u64>(), 1);
    }

    #[test]
    fn reads_stop_at_the_entry_and_byte_budgets() {
        let log = SharedLog::new(LogConfig::new(100, 1 << 20)).unwrap();
        for _ in 0..10 {
            log.append(frame(EventType::Custom, 90));
        }
        let len = log.metrics().held_bytes as usize / 10;
        let mut cursor = log.cursor_at_tail();
        let mut out = Vec::new();
        assert_eq!(
            log.read(&mut cursor, 4, usize::MAX, &mut out),
            Read::Entries(4)
        );
        // The entry that reaches the byte budget is included, none after it.
        assert_eq!(
            log.read(&mut cursor, 100, 2 * len, &mut out),
            Read::Entries(2)
        );
        assert_eq!(log.read(&mut cursor, 100, 0, &mut out), Read::Entries(1));
        assert_eq!(cursor.offset(), 7);
        assert_eq!(
            log.backlog(&cursor),
            Backlog {
                events: 3,
                bytes: 3 * len as u64
            }
        );
    }

    #[test]
    fn lowering_the_byte_bound_evicts_at_once_and_refuses_nonsense() {
        let log = SharedLog::new(LogConfig::new(100, 10_000)).unwrap();
        for _ in 0..10 {
            log.append(frame(EventType::Custom, 90));
        }
        let len = log.metrics().held_bytes as usize / 10;
        log.set_capacity(3 * len).unwrap();
        let m = log.metrics();
        assert_eq!((m.held, m.evicted, m.bound_bytes), (3, 7, 3 * len as u64));
        assert_eq!(log.set_capacity(0), Err(CapacityError::Zero));
        assert!(matches!(
            log.set_capacity(10_001),
            Err(CapacityError::AboveMax { .. })
        ));
        log.set_capacity(10_000).unwrap();
        assert_eq!(log.capacity(), 10_000);
    }

    #[test]
    fn close_ends_reads_after_what_is_held() {
        let log = SharedLog::new(LogConfig::new(4, 1 << 20)).unwrap();
        let mut cursor = log.cursor();
        log.append(frame(EventType::RunFinished, 0));
        assert!(log.close());
        assert!(!log.close());
        let mut out = Vec::new();
        assert_eq!(
            log.read(&mut cursor, 4, usize::MAX, &mut out),
            Read::Entries(1)
        );
        assert_eq!(log.read(&mut cursor, 4, usize::MAX, &mut out), Read::Closed);
    }

    /// One publisher, several readers on a multi-threaded runtime: each reader sees
    /// every offset exactly once, either read (in order) or counted as skipped, and
    /// the per-class counts add up. Waits are never lost: every reader finishes.
    #[test]
    fn every_reader_accounts_for_every_event_exactly_once() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .unwrap();
        runtime.block_on(async {
            const EVENTS: u64 = 20_000;
            let log = std::sync::Arc::new(SharedLog::new(LogConfig::new(64, 1 << 20)).unwrap());
            let kinds = [
                EventType::TextMessageContent,
                EventType::Custom,
                EventType::StateDelta,
            ];
            let readers: Vec<_> = (0..4)
                .map(|r| {
                    let log = log.clone();
                    let mut cursor = log.cursor();
                    tokio::spawn(async move {
                        let (mut read, mut skipped) = (0u64, [0u64; 4]);
                        let mut by_class = [0u64; 4];
                        let mut out = Vec::new();
                        loop {
                            out.clear();
                            match log.read(&mut cursor, 1 + r * 7, usize::MAX, &mut out) {
                                Read::Entries(n) => {
                                    for (i, entry) in out.iter().enumerate() {
                                        assert_eq!(
                                            entry.offset(),
                                            read + skipped.iter().sum::<u64>() + i as u64
                                        );
                                        by_class[entry.frame().class().index()] += 1;
                                    }
                                    read += n as u64;
                                    if r == 0 {
                                        tokio::task::yield_now().await;
                                    }
                                }
                                Read::Lagged(s) => {
                                    assert_eq!(s.to - s.from, s.events.iter().sum::<u64>());
                                    for (total, n) in skipped.iter_mut().zip(s.events) {
                                        *total += n;
                                    }
                                }
                                Read::Empty => log.wait(&cursor).await,
                                Read::Closed => break,
                            }
                        }
                        (read, skipped, by_class)
                    })
                })
                .collect();
            for i in 0..EVENTS {
                log.append(Event::new(kinds[(i % 3) as usize].clone()).encode());
                if i % 256 == 0 {
                    tokio::task::yield_now().await;
                }
            }
            log.close();
            for reader in readers {
                let (read, skipped, by_class) = reader.await.unwrap();
                assert_eq!(read + skipped.iter().sum::<u64>(), EVENTS);
                for class in 0..4 {
                    let published = (0..EVENTS)
                        .filter(|i| kinds[(i % 3) as usize].class().index() == class)
                        .count() as u64;
                    assert_eq!(by_class[class] + skipped[class], published, "class {class}");
                }
            }
        });
    }
}
