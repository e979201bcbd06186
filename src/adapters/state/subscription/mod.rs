//! Subscriptions to changes of the state store by segment-aware JSON Pointer pattern.
//!
//! # Design
//!
//! The store owns one registry of subscriptions and hands it every committed patch,
//! in revision order, from the writer's thread. The registry gives each subscription
//! the operations its [`Pattern`] matches, as a [`Change`], through the
//! subscription's own bounded queue: a [`Ring`] of a fixed
//! capacity into which the writer `force_push`es, so a writer never waits for a slow
//! subscriber and a subscriber's memory never grows past its queue.
//!
//! - **Lag.** When a queue is full the oldest change is evicted. Every queued change
//!   carries the subscription's sequence number, so the receiver sees the gap: its
//!   next receive returns [`RecvError::Lagged`] with the number of changes skipped and
//!   the revision to resume from (the last one it received), and the receive after
//!   that continues with the oldest change still queued.
//! - **Exactly once, in order.** A subscription that starts at a revision gets the
//!   store's history after it (the backlog) and then the live changes; the registry
//!   drops any revision it has already queued, so the two never overlap.
//! - **Idle expiry.** Each subscription has an entry in a
//!   [`TtlTable`] whose TTL restarts whenever its receiver
//!   asks for a change; a receiver blocked waiting counts as active for as long as it
//!   waits. An idle subscription expires at its TTL (found by `sweep`, or by its
//!   receiver's next call): its queue is closed and emptied, and its receiver gets
//!   [`RecvError::Expired`]. The table's capacity is the cap on subscriptions.
//! - **Unsubscribing** (dropping the [`Subscription`]) closes the queue and removes
//!   the subscription from the registry. A change being delivered at that moment is
//!   refused by the closed queue or dropped with it; nothing is shared that is not
//!   reference-counted, so there is no use-after-free and no panic.
//! - **Waiting** uses the ring's own waits (blocking, timed and async), which close
//!   wakes: no new wait/wake code, so the ring's loom models cover it.
//! - **Callbacks** ([`CallbackSubscription`]) run on a thread of their own that
//!   receives from the subscription's queue, never on the writer's thread and never
//!   under a registry lock, so a callback may subscribe, unsubscribe or write to the
//!   store. A callback that panics is caught, counted, and its subscription closed.
//!
//! # Cost
//!
//! Publishing a patch of `k` operations costs, for each of the `n` subscriptions,
//! matching each operation against the pattern (a segment-by-segment comparison,
//! no allocation), plus for each subscription that matched one uncontended lock, a
//! clone of the matched operations and one queue push: `O(n · k · depth)`. The list
//! of subscriptions is a shared snapshot (`Arc<[_]>`) taken under a lock held only
//! for the clone; subscribing and unsubscribing copy the list, `O(n)`.

mod callback;
mod pattern;
#[cfg(test)]
mod tests;

pub use callback::CallbackSubscription;
pub use pattern::{Pattern, PatternError};

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt;
use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll};
use core::time::Duration;
use std::sync::{Mutex, MutexGuard, PoisonError};

use json_patch::PatchOperation;

use super::Revision;
use crate::adapters::ending::{bump, Ending};
use crate::capacity::{self, CapacityError, SoftCapacity};
use crate::clock::Clock;
use crate::policy::Wait;
use crate::ring::{self, PopFuture, PopWaitError, Ring, RingConfig, Slot};
use crate::sync::{AtomicU64, Ordering};
use crate::table::{DefaultHashBuilder, EvictionCause, EvictionHook};
use crate::table::{TableConfig, TtlTable};

/// Configuration of the store's subscriptions.
///
/// # Examples
///
/// ```
/// use core::time::Duration;
/// use membound::adapters::state::subscription::SubscriptionConfig;
///
/// let config = SubscriptionConfig::default()
///     .with_max_subscriptions(10_000)
///     .with_queue_capacity(64)
///     .with_idle_ttl(Duration::from_secs(60));
/// assert_eq!(config.validate(), Ok(()));
/// assert!(SubscriptionConfig::default().with_queue_capacity(0).validate().is_err());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub struct SubscriptionConfig {
    /// The most subscriptions open at once; more are refused with
    /// [`SubscribeError::Limit`]. Their table is reserved for this many.
    pub max_subscriptions: usize,
    /// Changes each subscription's queue holds (unless its options say otherwise);
    /// its receiver lags when more are waiting.
    pub queue_capacity: usize,
    /// How long a subscription may go without receiving before it expires (unless
    /// its options say otherwise).
    pub idle_ttl: Duration,
}

impl SubscriptionConfig {
    /// Default [`max_subscriptions`](Self::max_subscriptions).
    pub const DEFAULT_MAX_SUBSCRIPTIONS: usize = 1024;
    /// Default [`queue_capacity`](Self::queue_capacity).
    pub const DEFAULT_QUEUE_CAPACITY: usize = 256;
    /// Default [`idle_ttl`](Self::idle_ttl): ten minutes, the cleanup default of the
    /// production preset.
    pub const DEFAULT_IDLE_TTL: Duration = Duration::from_secs(600);

    /// The defaults: 1024 subscriptions, 256 queued changes each, 10 min idle TTL.
    pub const fn new() -> Self {
        Self {
            max_subscriptions: Self::DEFAULT_MAX_SUBSCRIPTIONS,
            queue_capacity: Self::DEFAULT_QUEUE_CAPACITY,
            idle_ttl: Self::DEFAULT_IDLE_TTL,
        }
    }

    /// Sets the cap on open subscriptions.
    pub const fn with_max_subscriptions(mut self, max: usize) -> Self {
        self.max_subscriptions = max;
        self
    }

    /// Sets the default queue capacity.
    pub const fn with_queue_capacity(mut self, capacity: usize) -> Self {
        self.queue_capacity = capacity;
        self
    }

    /// Sets the default idle TTL.
    pub const fn with_idle_ttl(mut self, ttl: Duration) -> Self {
        self.idle_ttl = ttl;
        self
    }

    /// Checks that the configuration can work.
    ///
    /// # Errors
    ///
    /// [`SubscriptionConfigError::Table`] for a `max_subscriptions` of 0 or above
    /// [`table::MAX_CAPACITY`](crate::table::MAX_CAPACITY), or a zero `idle_ttl`;
    /// [`SubscriptionConfigError::Queue`] for a `queue_capacity` of 0 or above
    /// [`ring::MAX_CAPACITY`].
    pub const fn validate(&self) -> Result<(), SubscriptionConfigError> {
        if let Err(e) = self.table_config().validate() {
            return Err(SubscriptionConfigError::Table(e));
        }
        if let Err(e) = RingConfig::new(self.queue_capacity).validate() {
            return Err(SubscriptionConfigError::Queue(e));
        }
        Ok(())
    }

    /// The table that tracks the subscriptions: one entry each, refusing more than
    /// the cap.
    const fn table_config(&self) -> TableConfig {
        TableConfig::new(self.max_subscriptions, self.idle_ttl)
            .with_policy(crate::OverflowPolicy::Reject)
    }
}

impl Default for SubscriptionConfig {
    fn default() -> Self {
        Self::new()
    }
}

/// A [`SubscriptionConfig`] that cannot work.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub enum SubscriptionConfigError {
    /// The subscription table refused `max_subscriptions` or `idle_ttl`.
    Table(crate::ConfigError),
    /// A queue of `queue_capacity` changes cannot be built.
    Queue(crate::ConfigError),
}

impl fmt::Display for SubscriptionConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Table(e) => write!(f, "subscription table: {e}"),
            Self::Queue(e) => write!(f, "subscription queue: {e}"),
        }
    }
}

impl core::error::Error for SubscriptionConfigError {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            Self::Table(e) => Some(e),
            Self::Queue(e) => Some(e),
        }
    }
}

/// How one subscription starts and what it may hold.
///
/// # Examples
///
/// ```
/// use core::time::Duration;
/// use membound::adapters::state::Revision;
/// use membound::adapters::state::subscription::SubscribeOptions;
///
/// let options = SubscribeOptions::new()
///     .with_from(Revision(41)) // replay the history after revision 41 first
///     .with_queue_capacity(16)
///     .with_idle_ttl(Duration::from_secs(30));
/// assert_eq!(options.from, Some(Revision(41)));
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct SubscribeOptions {
    /// Deliver the changes after this revision, starting with the store's history;
    /// `None`: only changes committed from now on.
    pub from: Option<Revision>,
    /// This subscription's queue capacity; `None`: the configured default.
    pub queue_capacity: Option<usize>,
    /// This subscription's idle TTL; `None`: the configured default.
    pub idle_ttl: Option<Duration>,
}

impl SubscribeOptions {
    /// Live changes only, with the configured queue capacity and TTL.
    pub const fn new() -> Self {
        Self {
            from: None,
            queue_capacity: None,
            idle_ttl: None,
        }
    }

    /// Starts after `revision`: the changes since then are delivered first.
    pub const fn with_from(mut self, revision: Revision) -> Self {
        self.from = Some(revision);
        self
    }

    /// Sets this subscription's queue capacity.
    pub const fn with_queue_capacity(mut self, capacity: usize) -> Self {
        self.queue_capacity = Some(capacity);
        self
    }

    /// Sets this subscription's idle TTL.
    pub const fn with_idle_ttl(mut self, ttl: Duration) -> Self {
        self.idle_ttl = Some(ttl);
        self
    }
}

/// Why a subscription was not made.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum SubscribeError {
    /// The pattern is not a valid JSON Pointer.
    Pattern(PatternError),
    /// As many subscriptions as allowed are open.
    Limit {
        /// The cap ([`SubscriptionConfig::max_subscriptions`]).
        max: usize,
    },
    /// The queue capacity in the options cannot be built.
    Queue(crate::ConfigError),
    /// The idle TTL in the options is zero.
    ZeroIdleTtl,
    /// The thread of a callback subscription could not be started.
    Thread(std::io::ErrorKind),
    /// The start revision ([`SubscribeOptions::from`]) is not in the store's
    /// history: compacted away (take a snapshot and subscribe from its revision) or
    /// not reached yet.
    History(super::HistoryError),
}

impl fmt::Display for SubscribeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Pattern(e) => write!(f, "invalid subscription pattern: {e}"),
            Self::Limit { max } => write!(f, "the limit of {max} subscriptions is reached"),
            Self::Queue(e) => write!(f, "subscription queue: {e}"),
            Self::ZeroIdleTtl => f.write_str("a subscription's idle TTL must not be zero"),
            Self::Thread(kind) => write!(f, "could not start the callback thread: {kind}"),
            Self::History(e) => write!(f, "cannot subscribe from that revision: {e}"),
        }
    }
}

impl core::error::Error for SubscribeError {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            Self::Pattern(e) => Some(e),
            Self::Queue(e) => Some(e),
            Self::History(e) => Some(e),
            _ => None,
        }
    }
}

/// A committed patch as one subscription sees it: its revision and the operations
/// of the patch that matched the subscription's pattern, in patch order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// The revision the patch committed as.
    pub revision: Revision,
    /// The matching operations (never empty).
    pub ops: Vec<PatchOperation>,
}

/// Why a receive returned no change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RecvError {
    /// The queue overflowed: `skipped` changes were dropped before the next one,
    /// which the next receive returns. To catch up, read the store's changes after
    /// `resume` (the last revision received, or the one the subscription started
    /// at), or a snapshot if those were compacted away; changes still queued then
    /// follow, and any at or below the revision caught up to can be skipped.
    Lagged {
        /// Changes dropped (an upper bound if the store's history had a gap when the
        /// subscription started).
        skipped: u64,
        /// The revision to resume from: the store's changes after it include
        /// every change this subscription missed.
        resume: Revision,
    },
    /// The subscription is closed (the store was dropped, or the subscription was
    /// ended) and every change queued before has been received.
    Closed,
    /// The subscription expired: it did not receive for longer than its idle TTL.
    /// Its queued changes were discarded.
    Expired,
}

impl fmt::Display for RecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Lagged { skipped, resume } => write!(
                f,
                "subscriber lagged: {skipped} changes dropped; resume after revision {resume}"
            ),
            Self::Closed => f.write_str("subscription is closed"),
            Self::Expired => f.write_str("subscription expired after being idle"),
        }
    }
}

impl core::error::Error for RecvError {}

/// A snapshot of the subscription counters.
///
/// `active` and `queued` are counted over the open subscriptions when the snapshot
/// is taken (`O(n)`); the others are running totals. Exported under the state
/// store's kind: a store exports its subscriptions with its own counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, crate::metrics::Metrics)]
#[non_exhaustive]
#[metrics(kind = "state", counters)]
pub struct SubscriptionMetrics {
    /// Subscriptions open now.
    #[metric(gauge, name = "subscriptions")]
    pub active: u64,
    /// Changes waiting in the open subscriptions' queues now.
    #[metric(gauge, name = "changes_queued")]
    pub queued: u64,
    /// Subscriptions made.
    #[metric(name = "subscriptions_made")]
    pub subscribed: u64,
    /// Subscriptions refused because the cap was reached.
    #[metric(name = "subscriptions_refused")]
    pub rejected: u64,
    /// Subscriptions ended by their owner (dropped or unsubscribed).
    #[metric(name = "subscriptions_unsubscribed")]
    pub unsubscribed: u64,
    /// Subscriptions that expired after being idle.
    #[metric(name = "subscriptions_expired")]
    pub expired: u64,
    /// Patches published to the registry.
    #[metric(name = "changes_published")]
    pub published: u64,
    /// Changes queued for subscribers (backlog included).
    #[metric(name = "changes_delivered")]
    pub delivered: u64,
    /// Changes dropped from full queues, or by lowering their capacity under
    /// memory pressure (each reported to its receiver as lag).
    #[metric(name = "changes_lagged")]
    pub lagged: u64,
    /// Callbacks that panicked (each closed its subscription).
    pub callback_panics: u64,
}

/// How a subscription ended, first cause wins. Stored in [`Shared::end`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
enum End {
    Open = 0,
    /// Its owner dropped or unsubscribed it.
    Unsubscribed = 1,
    /// The registry (the store) was dropped.
    Closed = 2,
    /// Idle past its TTL.
    Expired = 3,
    /// Its callback panicked.
    Panicked = 4,
}

// `Open` is the queue's open state in `Ending`.
const _: () = assert!(End::Open as u8 == Ending::OPEN);

impl End {
    fn from_u8(v: u8) -> Self {
        match v {
            0 => Self::Open,
            1 => Self::Unsubscribed,
            2 => Self::Closed,
            3 => Self::Expired,
            _ => Self::Panicked,
        }
    }
}

/// A queued change with the subscription's sequence number, by which the receiver
/// counts what an overflow dropped.
struct Entry {
    seq: u64,
    change: Change,
}

/// The writer's side of one subscription, under [`Shared::feed`].
struct Feed {
    /// The highest revision queued (or the start): lower ones are duplicates.
    last: u64,
    /// Sequence number of the next change queued.
    seq: u64,
}

/// One subscription, shared by the registry (its list and table), the writer and
/// the receiving handle.
struct Shared {
    /// Unique within the registry; the table's key.
    id: u64,
    pattern: Pattern,
    /// The bounded queue. The writer (holding `feed`) is its only producer, the
    /// handle its only consumer; `end` closes it.
    queue: Ring<Entry>,
    /// Serialises writers of this queue and orders backlog before live changes.
    feed: Mutex<Feed>,
    /// An [`End`]; set once, from `Open`.
    end: Ending,
    /// Idle TTL.
    ttl: Duration,
}

impl Shared {
    fn ended(&self) -> End {
        End::from_u8(self.end.cause())
    }

    /// Ends the subscription for `why` unless it already ended; returns whether
    /// this call ended it. Closes the queue, which wakes its receiver; all causes but
    /// `Closed` also discard what is queued (nobody will, or should, read it).
    fn end(&self, why: End) -> bool {
        self.end.end(why as u8, &self.queue, why == End::Closed)
    }

    /// Queues `change` unless its revision is not newer than the last queued.
    /// Returns `(queued, evicted)`.
    fn offer(&self, feed: &mut Feed, change: Change) -> (bool, bool) {
        if change.revision.0 <= feed.last {
            return (false, false);
        }
        feed.last = change.revision.0;
        let entry = Entry {
            seq: feed.seq,
            change,
        };
        feed.seq += 1;
        match self.queue.force_push(entry) {
            Ok(evicted) => (true, evicted.is_some()),
            // Ended meanwhile; the change goes nowhere.
            Err(_) => (false, false),
        }
    }

    /// The operations of `ops` this subscription's pattern matches.
    fn matching(&self, ops: &[PatchOperation]) -> Vec<PatchOperation> {
        ops.iter()
            .filter(|op| self.pattern.matches(op))
            .cloned()
            .collect()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing panics while these locks are held except a caller's backlog iterator;
    // the data stays consistent then, so a poisoned lock is used as is.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Running totals, shared by the registry and its table's eviction hook.
#[derive(Default)]
struct Counters {
    subscribed: AtomicU64,
    rejected: AtomicU64,
    unsubscribed: AtomicU64,
    expired: AtomicU64,
    published: AtomicU64,
    delivered: AtomicU64,
    lagged: AtomicU64,
    callback_panics: AtomicU64,
}

/// Ends the subscriptions the table expires (a sweep, or an insert that reuses an
/// expired entry's room). Runs after the table let go of the entry, so it may touch
/// the table.
struct ExpireHook(Arc<Counters>);

impl EvictionHook<u64, Arc<Shared>> for ExpireHook {
    fn on_evict(&self, _: &u64, sub: &Arc<Shared>, cause: EvictionCause) {
        // `Removed` is an unsubscribe, which ends the subscription itself.
        if !matches!(cause, EvictionCause::Removed | EvictionCause::Replaced)
            && sub.end(End::Expired)
        {
            bump(&self.0.expired, 1);
        }
    }
}

/// The open subscriptions, as the writer iterates them.
struct List {
    subs: Arc<[Arc<Shared>]>,
    /// The highest revision published. Read with `subs` under one lock, so a new
    /// subscription knows which revisions may have been published without it.
    published: u64,
    /// Set when the registry is dropped.
    closed: bool,
    /// The queue capacity in force for a subscription of the configured
    /// capacity, `1..=queue_capacity`: lowered under memory pressure. Others scale
    /// in proportion.
    queue_capacity: usize,
}

/// The registry proper, shared with every handle.
struct Registry<C: Clock> {
    config: SubscriptionConfig,
    table: TtlTable<u64, Arc<Shared>, C, DefaultHashBuilder, ExpireHook>,
    list: Mutex<List>,
    next_id: AtomicU64,
    counters: Arc<Counters>,
}

/// What a handle needs from its registry, without the clock type.
trait Hub: Send + Sync {
    /// Restarts `sub`'s idle TTL with `ttl`; `false` if it has expired.
    fn touch(&self, sub: &Shared, ttl: Duration) -> bool;
    /// Expires `sub` (its receiver found it expired before any sweep did).
    fn expire(&self, sub: &Shared);
    /// Ends `sub` as unsubscribed (if still open) and forgets it.
    fn unsubscribe(&self, sub: &Shared);
    /// Counts a callback panic.
    fn note_panic(&self);
}

impl<C: Clock + Send + Sync + 'static> Hub for Registry<C> {
    fn touch(&self, sub: &Shared, ttl: Duration) -> bool {
        self.table.touch_with_ttl(&sub.id, ttl)
    }

    fn expire(&self, sub: &Shared) {
        // The table's hook may end it first (the entry has expired); whichever
        // call ends it counts it.
        self.table.remove(&sub.id);
        if sub.end(End::Expired) {
            bump(&self.counters.expired, 1);
        }
        self.forget(Some(sub.id));
    }

    fn unsubscribe(&self, sub: &Shared) {
        if sub.end(End::Unsubscribed) {
            bump(&self.counters.unsubscribed, 1);
        }
        self.table.remove(&sub.id);
        self.forget(Some(sub.id));
    }

    fn note_panic(&self) {
        bump(&self.counters.callback_panics, 1);
    }
}

impl<C: Clock + Send + Sync + 'static> Registry<C> {
    /// Removes subscription `id` and every ended one from the writer's list.
    fn forget(&self, id: Option<u64>) {
        let gone = |s: &Arc<Shared>| Some(s.id) == id || s.ended() != End::Open;
        let mut list = lock(&self.list);
        if list.subs.iter().any(gone) {
            list.subs = list.subs.iter().filter(|s| !gone(s)).cloned().collect();
        }
    }

    /// Takes a table entry for `sub`, sweeping expired ones once if the table is
    /// full.
    fn admit(&self, sub: &Arc<Shared>) -> Result<(), SubscribeError> {
        let insert = || self.table.insert_with_ttl(sub.id, sub.clone(), sub.ttl);
        if insert().is_ok() || (self.sweep() > 0 && insert().is_ok()) {
            return Ok(());
        }
        bump(&self.counters.rejected, 1);
        Err(SubscribeError::Limit {
            max: self.config.max_subscriptions,
        })
    }

    fn sweep(&self) -> usize {
        // A budget above the slot count visits every slot once.
        let removed = self
            .table
            .sweep(self.table.clock().now(), usize::MAX)
            .removed;
        if removed > 0 {
            self.forget(None);
        }
        removed
    }

    fn subscribe<'a>(
        self: &Arc<Self>,
        pattern: &str,
        options: SubscribeOptions,
        backlog: impl IntoIterator<Item = (Revision, &'a [PatchOperation])>,
    ) -> Result<Subscription, SubscribeError> {
        let pattern = Pattern::parse(pattern).map_err(SubscribeError::Pattern)?;
        let capacity = options.queue_capacity.unwrap_or(self.config.queue_capacity);
        let queue = Ring::with_config(RingConfig::new(capacity)).map_err(SubscribeError::Queue)?;
        let ttl = options.idle_ttl.unwrap_or(self.config.idle_ttl);
        if ttl.is_zero() {
            return Err(SubscribeError::ZeroIdleTtl);
        }
        let shared = Arc::new(Shared {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            pattern,
            queue,
            feed: Mutex::new(Feed { last: 0, seq: 0 }),
            end: Ending::new(),
            ttl,
        });
        // Held until the backlog is queued: a live change for this subscription
        // waits for it, then is dropped if the backlog had it already.
        let mut feed = lock(&shared.feed);
        self.admit(&shared)?;
        let published = {
            let mut list = lock(&self.list);
            if list.closed {
                // Unreachable while a `Subscriptions` exists to call this; keeps
                // the invariant that a closed registry lists nothing.
                shared.end(End::Closed);
            } else {
                let mut subs = Vec::with_capacity(list.subs.len() + 1);
                subs.extend(list.subs.iter().cloned());
                subs.push(shared.clone());
                list.subs = subs.into();
                // Under the lock, so a concurrent `set_capacity` either sees this
                // subscription or set the capacity this reads.
                self.scale_queue(&shared, list.queue_capacity);
            }
            list.published
        };
        let start = options.from.map_or(published, Revision::get);
        feed.last = start;
        // The revisions up to here are accounted for, matching or not.
        let mut covered = start;
        let (mut delivered, mut lagged) = (0, 0);
        for (revision, ops) in backlog {
            covered = covered.max(revision.0);
            let ops = shared.matching(ops);
            if !ops.is_empty() {
                let (queued, evicted) = shared.offer(&mut feed, Change { revision, ops });
                delivered += u64::from(queued);
                lagged += u64::from(evicted);
            }
        }
        feed.last = feed.last.max(covered);
        if published > covered {
            // The backlog stopped short of what was already published, which this
            // subscription may not have seen: report the gap as lag (counting every
            // revision in it, an upper bound of the matching ones).
            feed.seq += published - covered;
            feed.last = published;
        }
        drop(feed);
        bump(&self.counters.subscribed, 1);
        bump(&self.counters.delivered, delivered);
        bump(&self.counters.lagged, lagged);
        let hub: Arc<dyn Hub> = self.clone();
        Ok(Subscription {
            shared,
            hub,
            cursor: Cursor {
                next_seq: 0,
                last: Revision(start),
                pending: None,
            },
        })
    }

    fn publish(&self, revision: Revision, ops: &[PatchOperation]) {
        let subs = {
            let mut list = lock(&self.list);
            list.published = list.published.max(revision.0);
            list.subs.clone()
        };
        let (mut delivered, mut lagged) = (0, 0);
        for sub in subs.iter() {
            if sub.ended() != End::Open {
                continue;
            }
            let ops = sub.matching(ops);
            if ops.is_empty() {
                continue;
            }
            let (queued, evicted) = sub.offer(&mut lock(&sub.feed), Change { revision, ops });
            delivered += u64::from(queued);
            lagged += u64::from(evicted);
        }
        bump(&self.counters.published, 1);
        bump(&self.counters.delivered, delivered);
        bump(&self.counters.lagged, lagged);
    }

    fn metrics(&self) -> SubscriptionMetrics {
        let subs = lock(&self.list).subs.clone();
        let open = subs.iter().filter(|s| s.ended() == End::Open);
        let (active, queued) = open.fold((0, 0), |(n, q), s| (n + 1, q + s.queue.len() as u64));
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        SubscriptionMetrics {
            active,
            queued,
            subscribed: get(&c.subscribed),
            rejected: get(&c.rejected),
            unsubscribed: get(&c.unsubscribed),
            expired: get(&c.expired),
            published: get(&c.published),
            delivered: get(&c.delivered),
            lagged: get(&c.lagged),
            callback_panics: get(&c.callback_panics),
        }
    }

    /// Sets `sub`'s queue to its share of `in_force` (out of the configured
    /// capacity), and returns how many changes that dropped.
    fn scale_queue(&self, sub: &Shared, in_force: usize) -> u64 {
        let max = sub.queue.max_capacity();
        let scaled = (max as u128 * in_force as u128 / self.config.queue_capacity as u128) as usize;
        let scaled = scaled.clamp(1, max);
        if scaled == sub.queue.capacity() {
            return 0;
        }
        let before = sub.queue.metrics().dropped_oldest;
        // Within `1..=max` by construction; an error would leave the capacity as is.
        let _ = sub.queue.set_capacity(scaled);
        sub.queue.metrics().dropped_oldest - before
    }

    /// Ends every subscription as closed: receivers drain what is queued, then get
    /// [`RecvError::Closed`].
    fn close(&self) {
        let subs = {
            let mut list = lock(&self.list);
            list.closed = true;
            core::mem::replace(&mut list.subs, Arc::from(Vec::new()))
        };
        for sub in subs.iter() {
            sub.end(End::Closed);
        }
    }
}

/// The queues' capacity under memory pressure; see [`Subscriptions::queue_capacity`].
impl<C: Clock + Send + Sync + 'static> SoftCapacity for Registry<C> {
    fn capacity(&self) -> usize {
        lock(&self.list).queue_capacity
    }

    fn max_capacity(&self) -> usize {
        self.config.queue_capacity
    }

    fn set_capacity(&self, in_force: usize) -> Result<(), CapacityError> {
        capacity::check(in_force, self.config.queue_capacity)?;
        // Under the lock, so that calls apply in order and none misses a new
        // subscription; it is held `O(n)`, but pressure changes are rare.
        let mut list = lock(&self.list);
        let dropped = list
            .subs
            .iter()
            .map(|s| self.scale_queue(s, in_force))
            .sum();
        list.queue_capacity = in_force;
        drop(list);
        bump(&self.counters.lagged, dropped);
        Ok(())
    }
}

/// The store's registry of subscriptions.
///
/// The store calls [`publish`](Self::publish) after every commit and
/// [`sweep`](Self::sweep) from its cleanup; dropping the registry closes every
/// subscription (receivers drain what is queued, then get [`RecvError::Closed`]).
pub(crate) struct Subscriptions<C: Clock + Send + Sync + 'static> {
    inner: Arc<Registry<C>>,
}

impl<C: Clock + Send + Sync + 'static> Subscriptions<C> {
    /// An empty registry; `clock` times the idle TTLs.
    ///
    /// Reserves the subscription table (`max_subscriptions` entries) here; each
    /// subscription allocates its queue when made.
    ///
    /// # Errors
    ///
    /// As [`SubscriptionConfig::validate`].
    pub(crate) fn new(
        config: SubscriptionConfig,
        clock: C,
    ) -> Result<Self, SubscriptionConfigError> {
        config.validate()?;
        let counters = Arc::new(Counters::default());
        let table = TtlTable::with_parts(
            config.table_config(),
            clock,
            DefaultHashBuilder::default(),
            ExpireHook(counters.clone()),
        )
        .map_err(SubscriptionConfigError::Table)?;
        Ok(Self {
            inner: Arc::new(Registry {
                config,
                table,
                list: Mutex::new(List {
                    subs: Arc::from(Vec::new()),
                    published: 0,
                    closed: false,
                    queue_capacity: config.queue_capacity,
                }),
                next_id: AtomicU64::new(0),
                counters,
            }),
        })
    }

    /// Hands committed patch `revision` to every subscription whose pattern matches
    /// one of `ops`.
    ///
    /// Call it once per commit, in increasing revision order (a revision not above
    /// one already queued to a subscription is ignored for it), after the patch is
    /// in the history that [`subscribe`](Self::subscribe)'s backlog is read from.
    /// Never blocks on a subscriber: a full queue drops its oldest change. It may
    /// wait, briefly, for a [`subscribe`](Self::subscribe) that is queueing its
    /// backlog. See the module docs for the cost.
    pub(crate) fn publish(&self, revision: Revision, ops: &[PatchOperation]) {
        self.inner.publish(revision, ops);
    }

    /// Subscribes to the changes matching `pattern`.
    ///
    /// With [`SubscribeOptions::from`] set, `backlog` must hold the history after
    /// that revision, in order (the store answers `Compacted` itself when it was
    /// trimmed); it is queued before any live change, and a live change already in
    /// the backlog is not queued twice. Without it, pass an empty backlog: the
    /// subscription starts at the last published revision.
    ///
    /// For nothing to be missed, no revision may be published between reading the
    /// backlog and this call returning that the backlog does not contain: the store
    /// reads the backlog lazily, under the lock that orders history appends, while
    /// this call runs. If the backlog falls short of the revisions already
    /// published, the subscriber gets a [`RecvError::Lagged`] for the gap.
    ///
    /// # Errors
    ///
    /// [`SubscribeError::Pattern`], [`SubscribeError::Queue`] and
    /// [`SubscribeError::ZeroIdleTtl`] for bad input; [`SubscribeError::Limit`]
    /// when [`SubscriptionConfig::max_subscriptions`] are open (after expiring the
    /// idle ones).
    pub(crate) fn subscribe<'a>(
        &self,
        pattern: &str,
        options: SubscribeOptions,
        backlog: impl IntoIterator<Item = (Revision, &'a [PatchOperation])>,
    ) -> Result<Subscription, SubscribeError> {
        self.inner.subscribe(pattern, options, backlog)
    }

    /// As [`subscribe`](Self::subscribe), delivering each change to `callback` on a
    /// thread of the subscription's own. See [`CallbackSubscription`].
    ///
    /// # Errors
    ///
    /// As [`subscribe`](Self::subscribe), and [`SubscribeError::Thread`] when the
    /// thread cannot be started.
    // Tests only: the store's `subscribe_with` registers under its sequencer lock,
    // then spawns the thread outside it.
    #[cfg(test)]
    pub(crate) fn subscribe_with<'a, F>(
        &self,
        pattern: &str,
        options: SubscribeOptions,
        backlog: impl IntoIterator<Item = (Revision, &'a [PatchOperation])>,
        callback: F,
    ) -> Result<CallbackSubscription, SubscribeError>
    where
        F: FnMut(Result<Change, RecvError>) + Send + 'static,
    {
        CallbackSubscription::spawn(self.subscribe(pattern, options, backlog)?, callback)
    }

    /// Tells every open subscription that the history broke (the store imported a
    /// snapshot): its next change arrives after a [`RecvError::Lagged`] counting the
    /// break as one skipped change, and the store's changes after its `resume`
    /// answer `Compacted`, so the subscriber takes a snapshot.
    pub(crate) fn discontinuity(&self) {
        let subs = lock(&self.inner.list).subs.clone();
        for sub in subs.iter() {
            lock(&sub.feed).seq += 1;
        }
    }

    /// Expires the subscriptions idle past their TTL and returns how many. Scans the
    /// whole table; call it from the store's cleanup.
    pub(crate) fn sweep(&self) -> usize {
        self.inner.sweep()
    }

    /// A snapshot of the counters.
    pub(crate) fn metrics(&self) -> SubscriptionMetrics {
        self.inner.metrics()
    }

    /// The subscription queues' capacity as one [`SoftCapacity`], for the memory
    /// manager's [`CapacityTargets`](crate::pressure::CapacityTargets): its maximum
    /// is [`SubscriptionConfig::queue_capacity`], and setting it to `c` sets every
    /// queue (present and future) to `c / queue_capacity` of its own capacity, at
    /// least 1. Lowering it drops the oldest queued changes beyond the new
    /// capacity, which their receivers learn as lag.
    pub(crate) fn queue_capacity(&self) -> Arc<impl SoftCapacity + Send + Sync + 'static> {
        self.inner.clone()
    }
}

impl<C: Clock + Send + Sync + 'static> Drop for Subscriptions<C> {
    fn drop(&mut self) {
        self.inner.close();
    }
}

impl<C: Clock + Send + Sync + 'static> fmt::Debug for Subscriptions<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscriptions")
            .field("config", &self.inner.config)
            .field("metrics", &self.metrics())
            .finish()
    }
}

/// The receiver's position in its queue.
struct Cursor {
    /// Sequence number of the next change expected; a larger one means lag.
    next_seq: u64,
    /// The revision of the last change received, or the start.
    last: Revision,
    /// The change after a reported lag, returned by the next receive.
    pending: Option<Change>,
}

impl Cursor {
    /// Takes `entry` as received, or reports the gap before it and keeps it.
    fn accept(&mut self, entry: Entry) -> Result<Change, RecvError> {
        if entry.seq > self.next_seq {
            let skipped = entry.seq - self.next_seq;
            self.next_seq = entry.seq;
            self.pending = Some(entry.change);
            return Err(RecvError::Lagged {
                skipped,
                resume: self.last,
            });
        }
        Ok(self.received(entry.change))
    }

    fn received(&mut self, change: Change) -> Change {
        self.next_seq += 1;
        self.last = change.revision;
        change
    }

    fn take_pending(&mut self) -> Option<Change> {
        let change = self.pending.take()?;
        Some(self.received(change))
    }
}

/// A subscription to the store's changes at a pattern: the receiving end of its
/// queue. Dropping it unsubscribes.
///
/// Receiving restarts the subscription's idle TTL, and a receiver waiting in
/// [`recv`](Self::recv), [`recv_timeout`](Self::recv_timeout) or
/// [`recv_async`](Self::recv_async) counts as active while it waits. A
/// subscription nobody receives from for longer than its TTL expires.
///
/// After a [`RecvError::Lagged`] receiving continues; after
/// [`RecvError::Closed`] or [`RecvError::Expired`] every receive returns the same.
pub struct Subscription {
    shared: Arc<Shared>,
    hub: Arc<dyn Hub>,
    cursor: Cursor,
}

impl Subscription {
    /// The pattern subscribed to.
    pub fn pattern(&self) -> &Pattern {
        &self.shared.pattern
    }

    /// The revision of the last change received, or the revision the subscription
    /// started after: everything matching up to it has been received (or reported
    /// as lag).
    pub fn last_revision(&self) -> Revision {
        self.cursor.last
    }

    /// Changes waiting in the queue now.
    pub fn len(&self) -> usize {
        self.shared.queue.len() + usize::from(self.cursor.pending.is_some())
    }

    /// Whether no change is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The most changes the queue holds before the oldest is dropped.
    pub fn capacity(&self) -> usize {
        self.shared.queue.capacity()
    }

    /// Whether the subscription has ended (closed or expired); queued changes may
    /// still be received after a close.
    pub fn is_closed(&self) -> bool {
        self.shared.ended() != End::Open
    }

    /// Takes the next change, waiting while there is none.
    ///
    /// # Errors
    ///
    /// [`RecvError::Lagged`] after an overflow (then continue receiving);
    /// [`RecvError::Closed`] and [`RecvError::Expired`] at the end.
    pub fn recv(&mut self) -> Result<Change, RecvError> {
        loop {
            // Without a deadline the wait ends only with a change or the end.
            if let Some(change) = self.recv_until(None)? {
                return Ok(change);
            }
        }
    }

    /// Takes the next change, waiting at most `timeout`; `Ok(None)` when none came.
    ///
    /// # Errors
    ///
    /// As [`recv`](Self::recv).
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<Option<Change>, RecvError> {
        self.recv_until(Some(timeout))
    }

    /// Takes the next change if one is queued; `Ok(None)` when none is.
    ///
    /// # Errors
    ///
    /// As [`recv`](Self::recv).
    pub fn try_recv(&mut self) -> Result<Option<Change>, RecvError> {
        if let Some(change) = self.begin() {
            return Ok(Some(change));
        }
        match self.shared.queue.pop() {
            Ok(entry) => self.cursor.accept(entry).map(Some),
            Err(ring::PopError::Empty) => Ok(None),
            Err(ring::PopError::Closed) => Err(self.end_error()),
        }
    }

    /// A future resolving to the next change, as [`recv`](Self::recv) but without
    /// blocking the thread. Needs no particular runtime, allocates nothing, and may
    /// be dropped before it resolves without losing a change.
    pub fn recv_async(&mut self) -> RecvFuture<'_> {
        #[rustfmt::skip]
        let Subscription { shared, hub, cursor } = self;
        RecvFuture {
            pop: shared.queue.pop_async(),
            shared,
            hub: &**hub,
            cursor,
            state: FutureState::Start,
        }
    }

    /// Ends the subscription now (as dropping it does).
    pub fn unsubscribe(self) {
        drop(self);
    }

    /// What every receive starts with: the change kept back by a lag report, if
    /// any, and the activity that restarts the TTL (or the discovery that it ran
    /// out).
    fn begin(&mut self) -> Option<Change> {
        keep_alive(&self.shared, &*self.hub, self.shared.ttl);
        self.cursor.take_pending()
    }

    fn recv_until(&mut self, timeout: Option<Duration>) -> Result<Option<Change>, RecvError> {
        if let Some(change) = self.begin() {
            return Ok(Some(change));
        }
        let queue = &self.shared.queue;
        let popped = match queue.pop() {
            Ok(entry) => Ok(entry),
            Err(ring::PopError::Closed) => Err(PopWaitError::Closed),
            Err(ring::PopError::Empty) => {
                let _waiting = Waiting::start(&self.shared, &*self.hub);
                queue.pop_wait(timeout.map_or(Wait::Forever, Wait::Timeout))
            }
        };
        match popped {
            Ok(entry) => self.cursor.accept(entry).map(Some),
            Err(PopWaitError::Timeout) => Ok(None),
            Err(PopWaitError::Closed) => Err(self.end_error()),
        }
    }

    fn end_error(&self) -> RecvError {
        end_error(&self.shared)
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.hub.unsubscribe(&self.shared);
    }
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("pattern", &self.shared.pattern)
            .field("last_revision", &self.cursor.last)
            .field("len", &self.len())
            .field("closed", &self.is_closed())
            .finish()
    }
}

fn end_error(shared: &Shared) -> RecvError {
    match shared.ended() {
        End::Expired => RecvError::Expired,
        _ => RecvError::Closed,
    }
}

/// Restarts the idle TTL of an open subscription, or expires it if it has run out.
fn keep_alive(shared: &Shared, hub: &dyn Hub, ttl: Duration) {
    if shared.ended() == End::Open && !hub.touch(shared, ttl) {
        hub.expire(shared);
    }
}

/// While alive, the subscription's receiver is waiting: its TTL is suspended (set
/// to forever), and restarted when the wait ends.
struct Waiting<'a> {
    shared: &'a Shared,
    hub: &'a dyn Hub,
}

impl<'a> Waiting<'a> {
    fn start(shared: &'a Shared, hub: &'a dyn Hub) -> Self {
        keep_alive(shared, hub, Duration::MAX);
        Self { shared, hub }
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        keep_alive(self.shared, self.hub, self.shared.ttl);
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum FutureState {
    /// Not polled yet.
    Start,
    /// Polled, not waiting (yet).
    Polling,
    /// Returned `Pending`: the TTL is suspended until it resolves or is dropped.
    Waiting,
    /// Resolved.
    Done,
}

/// Future of [`Subscription::recv_async`].
#[must_use = "futures do nothing unless polled"]
pub struct RecvFuture<'a> {
    /// Structurally pinned: linked into the queue's waiters while pending.
    pop: PopFuture<'a, Entry, alloc::boxed::Box<[Slot<Entry>]>>,
    shared: &'a Shared,
    hub: &'a dyn Hub,
    cursor: &'a mut Cursor,
    state: FutureState,
}

impl Future for RecvFuture<'_> {
    type Output = Result<Change, RecvError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // SAFETY: `pop` is the only structurally pinned field and is only used
        // through the `Pin` built below; nothing is moved out of `self`.
        let this = unsafe { self.get_unchecked_mut() };
        assert!(
            this.state != FutureState::Done,
            "RecvFuture polled after it completed"
        );
        if this.state == FutureState::Start {
            keep_alive(this.shared, this.hub, this.shared.ttl);
            this.state = FutureState::Polling;
            if let Some(change) = this.cursor.take_pending() {
                this.state = FutureState::Done;
                return Poll::Ready(Ok(change));
            }
        }
        // SAFETY: see above; `this` is never moved, so neither is `pop`.
        let pop = unsafe { Pin::new_unchecked(&mut this.pop) };
        match pop.poll(cx) {
            Poll::Pending => {
                if this.state == FutureState::Polling {
                    keep_alive(this.shared, this.hub, Duration::MAX);
                    this.state = FutureState::Waiting;
                }
                Poll::Pending
            }
            Poll::Ready(popped) => {
                if this.state == FutureState::Waiting {
                    keep_alive(this.shared, this.hub, this.shared.ttl);
                }
                this.state = FutureState::Done;
                Poll::Ready(match popped {
                    Ok(entry) => this.cursor.accept(entry),
                    Err(_closed) => Err(end_error(this.shared)),
                })
            }
        }
    }
}

impl Drop for RecvFuture<'_> {
    fn drop(&mut self) {
        if self.state == FutureState::Waiting {
            keep_alive(self.shared, self.hub, self.shared.ttl);
        }
    }
}

impl fmt::Debug for RecvFuture<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecvFuture").finish_non_exhaustive()
    }
}
