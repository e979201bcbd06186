//! Inbound events of one connection: the bounded queue to the handlers, the handler
//! registry keyed by event type, and subscriptions that expire when idle. The design
//! (dispatch model, TTL semantics) is documented on [`Inbound`], which is public.

// Why not the state store's subscription registry: it is built around JSON Pointer
// patterns, revisions and a backlog, and times idleness by the receiver's activity in
// a `TtlTable` reserved up front. Here the filter is a set of types, activity is a
// delivery, and a connection's registry must cost nothing while nobody subscribes
// (thousands of idle connections), so each subscription keeps the tick of its last
// delivery and a sweep scans the (capped) list. What both share is in
// `adapters::ending`: a subscription's queue is a `Ring` fed with `force_push`, and
// the first cause that ends it closes the queue.

use std::prelude::rust_2021::*;

use core::fmt;
use core::future::Future;
use core::pin::Pin;
use core::time::Duration;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Weak};

use futures_util::future::{join_all, FutureExt};
use tokio::sync::{Semaphore, TryAcquireError};
use tokio_tungstenite::tungstenite::{Bytes, Utf8Bytes};

use super::config::{InboundConfig, WsConfigError};
use super::event::{Event, EventType};
use super::time::after;
use crate::adapters::ending::{bump, Ending};
use crate::capacity::SoftCapacity;
use crate::clock::Clock;
use crate::ring::{Ring, RingConfig};
use crate::slice::SnapshotVec;
use crate::sync::{AtomicBool, AtomicU64, Ordering};
use crate::OverflowPolicy;

/// Identifies a handler on its connection; returned by [`Inbound::on`] and
/// [`Inbound::on_any`], taken by [`Inbound::remove_handler`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HandlerId(u64);

impl HandlerId {
    /// The number behind the id (unique per connection).
    pub const fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for HandlerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "handler-{}", self.0)
    }
}

/// Identifies a subscription on its connection ([`EventSubscription::id`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SubscriptionId(u64);

impl SubscriptionId {
    /// The number behind the id (unique per connection).
    pub const fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for SubscriptionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "subscription-{}", self.0)
    }
}

/// Why a handler or subscription was not added.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum InboundError {
    /// The connection has [`max_handlers`](InboundConfig::max_handlers) handlers.
    TooManyHandlers,
    /// The connection has [`max_subscriptions`](InboundConfig::max_subscriptions)
    /// open subscriptions (after expiring the idle ones).
    TooManySubscriptions,
    /// The connection's inbound side is closed.
    Closed,
}

impl fmt::Display for InboundError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::TooManyHandlers => "the connection's handler limit is reached",
            Self::TooManySubscriptions => "the connection's subscription limit is reached",
            Self::Closed => "the connection's inbound side is closed",
        })
    }
}

impl std::error::Error for InboundError {}

/// [`Inbound::push`] after [`Inbound::close`]: the event was not queued and is
/// handed back.
#[derive(Clone, Debug, PartialEq)]
pub struct InboundClosed(pub Event);

impl InboundClosed {
    /// The event that was not queued.
    pub fn into_inner(self) -> Event {
        self.0
    }
}

impl fmt::Display for InboundClosed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "inbound queue is closed; {} event not queued",
            self.0.kind()
        )
    }
}

impl std::error::Error for InboundClosed {}

/// Why [`EventSubscription::recv`] returned no event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SubscriptionError {
    /// No event was delivered to the subscription for its idle TTL; its queued
    /// events were discarded.
    Expired,
    /// The connection's inbound side ended, and every event queued before has been
    /// received.
    Closed,
}

impl fmt::Display for SubscriptionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Expired => "subscription expired: no event delivered within its idle TTL",
            Self::Closed => "subscription closed: the connection's inbound side ended",
        })
    }
}

impl std::error::Error for SubscriptionError {}

/// A snapshot of one connection's inbound counters.
///
/// Counts are running totals since the [`Inbound`] was made, except the ones
/// described as "now".
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, crate::metrics::Metrics)]
#[non_exhaustive]
#[metrics(kind = "ws_inbound")]
pub struct InboundMetrics {
    /// Events accepted by [`Inbound::push`] into the inbound queue (with raw
    /// messages, in raw mode).
    #[metric(counter, name = "events")]
    pub events_in: u64,
    /// Events waiting in the inbound queue now.
    #[metric(gauge, name = "queued_events")]
    pub queued: u64,
    /// The inbound queue's capacity in events.
    #[metric(gauge)]
    pub queue_capacity: u64,
    /// Pushes that found the queue full and waited for room (the reader was held
    /// back, which slows the peer through TCP).
    #[metric(counter)]
    pub push_waits: u64,
    /// Bytes of the events in the inbound queue now: each event counts its size
    /// (as given to [`Inbound::push_sized`], or its encoded length for
    /// [`Inbound::push`]) from when the byte budget admits it until the dispatcher
    /// takes it out. At most [`max_queued_bytes`](Self::max_queued_bytes), except
    /// while the one event queued is larger than the whole budget.
    #[metric(gauge, name = "queued", unit = "bytes")]
    pub queued_bytes: u64,
    /// The highest [`queued_bytes`](Self::queued_bytes) seen so far.
    #[metric(gauge, name = "peak_queued", unit = "bytes")]
    pub peak_queued_bytes: u64,
    /// The byte budget, [`InboundConfig::max_queued_bytes`].
    #[metric(gauge, name = "max_queued", unit = "bytes")]
    pub max_queued_bytes: u64,
    /// Pushes that found the byte budget short and waited for the dispatcher to
    /// free bytes (the reader was held back, as for
    /// [`push_waits`](Self::push_waits)). A push can wait for bytes and then for an
    /// event slot, and count in both.
    #[metric(counter)]
    pub byte_waits: u64,
    /// Events the dispatcher finished with: delivered to every matching
    /// subscription, and every matching handler completed, timed out or panicked
    /// (raw messages count too, in raw mode).
    #[metric(counter)]
    pub dispatched: u64,
    /// Handler invocations started (one per matching handler per event).
    #[metric(counter)]
    pub handler_calls: u64,
    /// Handler invocations abandoned at
    /// [`handler_timeout`](InboundConfig::handler_timeout) (their futures were
    /// dropped).
    #[metric(counter)]
    pub handler_timeouts: u64,
    /// Handler invocations that panicked (caught; the dispatcher went on).
    #[metric(counter)]
    pub handler_panics: u64,
    /// Events queued to subscriptions (one per matching subscription per event).
    #[metric(counter)]
    pub subscription_events: u64,
    /// Subscriptions that expired after their idle TTL.
    #[metric(counter)]
    pub subscriptions_expired: u64,
    /// Events dropped from full subscription queues (the oldest queued, each
    /// reported to its subscription as lag).
    #[metric(counter)]
    pub lagged: u64,
    /// Handlers registered now.
    #[metric(gauge)]
    pub handlers: u64,
    /// Subscriptions open now.
    #[metric(gauge)]
    pub subscriptions: u64,
    /// Handler registrations refused at the cap.
    #[metric(counter)]
    pub handlers_rejected: u64,
    /// Subscriptions refused at the cap.
    #[metric(counter)]
    pub subscriptions_rejected: u64,
}

/// An inbound message that is not an event, as it arrived, for the raw handlers
/// ([`Inbound::on_raw`]) of a connection whose
/// [`on_malformed`](InboundConfig::on_malformed) is [`MalformedPolicy::Raw`].
///
/// Cloning shares the payload (no copy).
///
/// [`MalformedPolicy::Raw`]: super::MalformedPolicy::Raw
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RawMessage {
    /// A text message that is not an event (not JSON, not an object, no string
    /// `type`).
    Text(Utf8Bytes),
    /// A binary message.
    Binary(Bytes),
}

impl RawMessage {
    /// The payload's length in bytes, which the inbound byte budget counts.
    pub fn len(&self) -> usize {
        match self {
            Self::Text(text) => text.len(),
            Self::Binary(data) => data.len(),
        }
    }

    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The payload's bytes (for a text, its UTF-8).
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Self::Text(text) => text.as_bytes(),
            Self::Binary(data) => data,
        }
    }
}

/// A handler's boxed future.
type HandlerFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// What a handler is called with.
enum Call {
    /// Events (of its type, or of every type).
    Event(Box<dyn Fn(Event) -> HandlerFuture + Send + Sync>),
    /// Raw messages ([`Inbound::on_raw`]).
    Raw(Box<dyn Fn(RawMessage) -> HandlerFuture + Send + Sync>),
}

/// A registered handler.
struct Handler {
    id: HandlerId,
    /// The type it handles; `None` for every type (and for a raw handler).
    kind: Option<EventType>,
    call: Call,
}

impl Handler {
    fn wants(&self, kind: &EventType) -> bool {
        matches!(self.call, Call::Event(_)) && self.kind.as_ref().is_none_or(|k| k == kind)
    }
}

/// How a subscription ended ([`Sub::end`]'s cause).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
enum End {
    /// Its receiver was dropped.
    Unsubscribed = 1,
    /// The connection's inbound side ended.
    Closed = 2,
    /// Idle past its TTL.
    Expired = 3,
}

/// One subscription, shared by the registry's list and its receiver.
struct Sub {
    id: SubscriptionId,
    /// The types it receives; empty for every type.
    kinds: Box<[EventType]>,
    /// Its bounded queue: the dispatcher `force_push`es (the oldest is dropped when
    /// full), the receiver pops. Closed when the subscription ends.
    queue: Ring<Box<Event>>,
    /// Clock tick of the last delivery (or of the subscription's start).
    last_delivery: AtomicU64,
    /// Open, or the [`End`] that closed `queue`; set once.
    end: Ending,
}

impl Sub {
    fn wants(&self, kind: &EventType) -> bool {
        self.kinds.is_empty() || self.kinds.contains(kind)
    }

    fn is_open(&self) -> bool {
        self.end.is_open()
    }

    fn idle_at(&self, now: u64, ttl_ticks: u64) -> bool {
        now.saturating_sub(self.last_delivery.load(Ordering::Relaxed)) >= ttl_ticks
    }

    /// Ends the subscription for `why` unless it already ended; returns whether this
    /// call ended it. Wakes a waiting receiver; but for `Closed`, whose receiver may
    /// still drain, the queued events are discarded.
    fn finish(&self, why: End) -> bool {
        self.end.end(why as u8, &self.queue, why == End::Closed)
    }

    fn end_error(&self) -> SubscriptionError {
        if self.end.cause() == End::Expired as u8 {
            SubscriptionError::Expired
        } else {
            SubscriptionError::Closed
        }
    }
}

/// Running totals.
#[derive(Default)]
struct Counters {
    dispatched: AtomicU64,
    handler_calls: AtomicU64,
    handler_timeouts: AtomicU64,
    handler_panics: AtomicU64,
    subscription_events: AtomicU64,
    expired: AtomicU64,
    lagged: AtomicU64,
    handlers_rejected: AtomicU64,
    subscriptions_rejected: AtomicU64,
}

/// What handlers and subscriptions share; subscriptions hold it weakly, so that a
/// receiver kept after its connection ended keeps nothing else alive.
struct Registry {
    config: InboundConfig,
    clock: Arc<dyn Clock + Send + Sync>,
    ttl_ticks: u64,
    handlers: SnapshotVec<Arc<Handler>>,
    subs: SnapshotVec<Arc<Sub>>,
    next_id: AtomicU64,
    /// Set when the inbound side ended: no more handlers or subscriptions.
    closed: AtomicBool,
    counters: Counters,
}

impl Registry {
    fn expire(&self, sub: &Sub) -> bool {
        let won = sub.finish(End::Expired);
        if won {
            bump(&self.counters.expired, 1);
        }
        won
    }

    /// Expires the idle subscriptions and removes every ended one from the list.
    fn sweep(&self, now: u64) -> usize {
        let mut expired = 0;
        for sub in self.subs.load().iter() {
            if sub.is_open() && sub.idle_at(now, self.ttl_ticks) && self.expire(sub) {
                expired += 1;
            }
        }
        if expired > 0 {
            self.subs.retain(|s| s.is_open());
        }
        expired
    }

    fn forget(&self, sub: &Arc<Sub>) {
        self.subs.retain(|s| !Arc::ptr_eq(s, sub) && s.is_open());
    }

    /// Ends every subscription as closed (receivers drain, then get `Closed`) and
    /// drops every handler, which breaks any reference cycle through a handler that
    /// holds its own connection.
    fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.handlers.clear();
        let subs = self.subs.store(Vec::new());
        for sub in subs.iter() {
            sub.finish(End::Closed);
        }
    }

    fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }
}

/// Clears [`Inbound::running`] when dropped.
struct Running<'a>(&'a AtomicBool);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// The inbound side of one connection: a bounded queue to the handlers, a handler
/// registry keyed by event type, and subscriptions that expire when idle.
///
/// It sits between a connection's reader task and the program. The reader
/// [`push`](Inbound::push)es every parsed event into a bounded queue; one dispatcher
/// task ([`run`](Inbound::run)) takes them out in order and hands each to the
/// handlers registered for its type ([`on`](Inbound::on), and the catch-all
/// [`on_any`](Inbound::on_any)) and to every [`EventSubscription`] whose set of
/// types matches. `Send + Sync`: share it as `Arc<Inbound>` between the reader, the
/// dispatcher and the program.
///
/// # The inbound queue
///
/// A [`Ring`] of [`InboundConfig::queue_capacity`] events, pushed with
/// [`push_async`](crate::ring::RingCore::push_async) and popped with
/// [`pop_async`](crate::ring::RingCore::pop_async). When it is full, `push` waits:
/// the reader stops reading the socket, and TCP slows a fast sender down. Nothing is
/// dropped on the way in. [`close`](Inbound::close) refuses further pushes (the event
/// is handed back in [`InboundClosed`]) while the dispatcher delivers what was
/// queued, then `run` returns.
///
/// # The byte budget
///
/// The queue is also bounded in bytes of text,
/// [`InboundConfig::max_queued_bytes`] (4 MiB by default): without it, a queue of
/// 256 events of up to 1 MiB each could hold 256 MiB per connection. The reader
/// calls [`push_sized`](Inbound::push_sized) with the length of the text it
/// received. A push whose bytes would take the queued bytes past the budget waits,
/// like a push into a full queue, until the dispatcher has taken enough out; the
/// bytes of an event are freed when the dispatcher takes it, before its handlers
/// run. When no bytes are queued, any one message goes through, so a message
/// larger than what is left of the budget waits for the queue to drain rather
/// than forever. [`push`](Inbound::push) counts the event's encoded length.
///
/// The budget is a [`tokio::sync::Semaphore`] holding the free bytes as permits:
/// a push takes its bytes with `acquire_many` (a message larger than the whole
/// budget takes all of it, so it waits for an empty queue and then goes through
/// alone), and the dispatcher gives them back with `add_permits`. The semaphore
/// is fair, so pushes are admitted in the order they asked, and a large message
/// is not overtaken by later small ones. Its wait/wake protocol is tokio's and is
/// checked with loom in tokio's own suite (`tokio/src/sync/tests/`
/// `loom_semaphore_batch.rs`); this crate adds no wait/wake code for it.
/// [`close`](Inbound::close) closes the semaphore too, so a push waiting for
/// bytes fails with [`InboundClosed`]. The budget does not follow memory
/// pressure; the [`SoftCapacity`] impl sizes the queue in events.
///
/// # Dispatch model
///
/// - **One event at a time, in arrival order.** The dispatcher takes the next event
///   only when every handler has finished with (or been abandoned on) the current
///   one. So each handler sees the events of its type in the order they arrived, and
///   never runs on two events at once.
/// - **The handlers of one event run concurrently**, in the dispatcher's task
///   (polled together, not spawned), **each under its own
///   [`handler_timeout`](InboundConfig::handler_timeout)**. A slow handler therefore
///   costs the others at most `handler_timeout` per event, and the queue behind it
///   waits at most that long.
/// - **A handler that times out is cancelled**: its future is dropped at the
///   deadline, so it stops at the `.await` where it was waiting and runs no further
///   (its destructors run). The timeout is counted
///   ([`InboundMetrics::handler_timeouts`]). Handlers should therefore keep no state
///   that a cancellation at an `.await` would leave inconsistent, and must not block
///   the thread: a handler that blocks (a synchronous sleep, a busy loop) cannot be
///   cancelled and stalls the dispatcher; hand such work to
///   `tokio::task::spawn_blocking`.
/// - **A handler that panics** (when called, or while its future is polled) is
///   caught and counted ([`InboundMetrics::handler_panics`]); the other handlers and
///   the dispatcher go on, and the handler stays registered.
/// - **Subscriptions get the event before the handlers run.** Delivering to a
///   subscription never waits: its queue is bounded and a full one drops its oldest
///   event, counted as lag ([`EventSubscription::lagged`],
///   [`InboundMetrics::lagged`]).
/// - The handlers are called (the synchronous part that returns their future) one
///   after the other in the order they were added, then their futures are polled
///   together. Each handler and subscription gets its own copy of the event (the
///   last one served gets the original).
///
/// # Registry
///
/// Handlers and subscriptions live in [`SnapshotVec`]s: the dispatcher iterates an
/// immutable snapshot without a lock, and adds and removes are read-copy-update
/// writes that retry when another writer got in first, so no add or remove is lost
/// however they race with each other and with dispatch. An event pushed after
/// [`on`](Inbound::on) or [`subscribe`](Inbound::subscribe) returned reaches the new
/// handler or subscription; an event whose dispatch began before an add or a remove
/// may or may not reach it. The caps
/// ([`max_handlers`](InboundConfig::max_handlers),
/// [`max_subscriptions`](InboundConfig::max_subscriptions)) are checked in the same
/// write as the append ([`SnapshotVec::push_within`]), so racing adds never exceed
/// them; a refused add is a typed error ([`InboundError`]).
///
/// The structure is a composition of loom-checked parts and adds no lock-free code
/// of its own: the byte budget's semaphore (tokio's, see above), the ring and its
/// async waits (`loom-tests/tests/ring.rs`, `wait.rs`),
/// the ring as a subscription queue, fed by `force_push` while a third party closes
/// and clears it under a waiting receiver (`subscription.rs`), and the snapshot
/// vector with its capped push (`slice.rs`). Its only other atomics are counters and
/// each subscription's end state, set once by a compare-and-swap.
///
/// # Idle TTL of subscriptions
///
/// *Activity is an event delivered to the subscription*, timed by the crate
/// [`Clock`] given to [`Inbound::new`]. A subscription that has had no event
/// delivered for [`subscription_ttl`](InboundConfig::subscription_ttl) expires: it
/// leaves the registry, its queued events are discarded, and its receiver gets
/// [`SubscriptionError::Expired`]. Receiving does not count as activity: a
/// subscription to a rare type needs a TTL longer than the gaps between its events.
/// Expiry is found by
///
/// - [`sweep`](Inbound::sweep), which the dispatcher also runs every eighth of the TTL
///   (at most once a minute) while it waits for events;
/// - the dispatcher's pass over the subscriptions for each event;
/// - the receiver itself, at each [`recv`](EventSubscription::recv) and
///   [`try_recv`](EventSubscription::try_recv),
///
/// so the outcome does not depend on whether a sweep has run yet. Dropping an
/// [`EventSubscription`] removes it from the registry at once.
///
/// # Examples
///
/// ```
/// use std::sync::atomic::{AtomicUsize, Ordering};
/// use std::sync::Arc;
/// use membound::adapters::ws::{Event, EventType, Inbound, InboundConfig};
/// use membound::clock::MonotonicClock;
///
/// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
/// let inbound = Arc::new(Inbound::new(InboundConfig::default(), Arc::new(MonotonicClock::new()))?);
/// let seen = Arc::new(AtomicUsize::new(0));
/// let counter = seen.clone();
/// inbound.on(EventType::RunStarted, move |_event| {
///     counter.fetch_add(1, Ordering::Relaxed);
///     async {}
/// })?;
/// let sub = inbound.subscribe([EventType::Custom])?;
///
/// let dispatcher = tokio::spawn({
///     let inbound = inbound.clone();
///     async move { inbound.run().await }
/// });
/// inbound.push(Event::new(EventType::RunStarted)).await?;
/// inbound.push(Event::new(EventType::Custom).with("value", 7)).await?;
/// assert_eq!(sub.recv().await?.get("value"), Some(&serde_json::json!(7)));
/// inbound.close();
/// dispatcher.await?;
/// assert_eq!(seen.load(Ordering::Relaxed), 1);
/// assert_eq!(inbound.metrics().dispatched, 2);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
pub struct Inbound {
    /// Boxed, so that an idle connection's queue costs 16 bytes a slot, not an
    /// event's size.
    queue: Ring<Box<Queued>>,
    /// The byte budget's free bytes, as permits: `budget` minus the permits held
    /// by the admitted events (each holds [`Inbound::permits_for`] its bytes) until
    /// the dispatcher takes it out. Closed by [`close`](Self::close).
    free_bytes: Semaphore,
    /// [`InboundConfig::max_queued_bytes`] as permits (checked to fit a `u32`).
    budget: u32,
    /// Sum of the bytes of the admitted events not yet taken by the dispatcher:
    /// added before the event enters the ring, subtracted after it leaves, so it
    /// never goes below zero.
    queued_bytes: AtomicU64,
    /// Highest `queued_bytes` seen.
    peak_queued_bytes: AtomicU64,
    /// Pushes that waited for bytes.
    byte_waits: AtomicU64,
    registry: Arc<Registry>,
    /// Set while a [`run`](Self::run) is dispatching.
    running: AtomicBool,
}

/// What the inbound queue carries.
enum Item {
    Event(Event),
    Raw(RawMessage),
}

/// An item in the inbound queue, with the bytes it holds of the budget.
struct Queued {
    item: Item,
    bytes: usize,
}

/// Gives back an admitted push's bytes unless the event was queued: a push that
/// fails or is cancelled while it waits for an event slot leaves the budget as it
/// found it.
struct Admitted<'a> {
    inbound: &'a Inbound,
    bytes: usize,
    queued: bool,
}

impl Drop for Admitted<'_> {
    fn drop(&mut self) {
        if !self.queued {
            self.inbound.release(self.bytes);
        }
    }
}

impl Inbound {
    /// An inbound side with `config`'s limits; `clock` times the subscriptions' idle
    /// TTL.
    ///
    /// Allocates the inbound queue here: `queue_capacity` slots of two words each
    /// (events are boxed), 4 KiB at the default capacity on 64-bit targets. Handlers
    /// and subscriptions cost nothing until added; each subscription allocates its
    /// own queue (`subscription_capacity` slots, as small) when made.
    ///
    /// # Errors
    ///
    /// [`WsConfigError`] when `config` does not validate, or a queue capacity is
    /// beyond what a [`Ring`] can hold.
    pub fn new(
        config: InboundConfig,
        clock: Arc<dyn Clock + Send + Sync>,
    ) -> Result<Self, WsConfigError> {
        config.validate()?;
        let too_large = |field, source| WsConfigError {
            field,
            reason: "is larger than a ring can hold",
            source: Some(source),
        };
        RingConfig::new(config.subscription_capacity)
            .validate()
            .map_err(|e| too_large("inbound.subscription_capacity", e))?;
        // `Reject`: a lowered capacity keeps what is queued (pushes wait until the
        // dispatcher drains below it) instead of evicting, which `DropOldest` would.
        let queue = Ring::with_config(
            RingConfig::new(config.queue_capacity).with_policy(OverflowPolicy::Reject),
        )
        .map_err(|e| too_large("inbound.queue_capacity", e))?;
        // `acquire_many` takes a `u32`, and a semaphore holds at most MAX_PERMITS.
        let budget = u32::try_from(config.max_queued_bytes)
            .ok()
            .filter(|&b| b as usize <= Semaphore::MAX_PERMITS)
            .ok_or(WsConfigError {
                field: "inbound.max_queued_bytes",
                reason: "is larger than the byte budget can hold (u32::MAX)",
                source: None,
            })?;
        let ttl_ticks = clock.ticks_for(config.subscription_ttl).max(1);
        Ok(Self {
            queue,
            free_bytes: Semaphore::new(budget as usize),
            budget,
            queued_bytes: AtomicU64::new(0),
            peak_queued_bytes: AtomicU64::new(0),
            byte_waits: AtomicU64::new(0),
            registry: Arc::new(Registry {
                config,
                clock,
                ttl_ticks,
                handlers: SnapshotVec::new(),
                subs: SnapshotVec::new(),
                next_id: AtomicU64::new(0),
                closed: AtomicBool::new(false),
                counters: Counters::default(),
            }),
            running: AtomicBool::new(false),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &InboundConfig {
        &self.registry.config
    }

    /// Queues `event` for dispatch, waiting while the queue is full or the byte
    /// budget is short; as [`push_sized`](Self::push_sized) with the length of the
    /// event's compact JSON encoding as its size. That encoding is built here to be
    /// measured, so a caller that has the received text should call `push_sized`
    /// with its length instead.
    ///
    /// # Errors
    ///
    /// As [`push_sized`](Self::push_sized).
    pub async fn push(&self, event: Event) -> Result<(), InboundClosed> {
        let bytes = event.encode().len();
        self.push_sized(event, bytes).await
    }

    /// Queues `event`, which arrived as `bytes` bytes of text, for dispatch. Waits
    /// while the queue is full, and while the queued bytes plus `bytes` would
    /// exceed [`max_queued_bytes`](InboundConfig::max_queued_bytes) unless no bytes
    /// are queued (see the [`Inbound`] documentation on the byte budget). Called by
    /// the connection's reader task: while it waits it reads nothing more from the
    /// socket, so a peer that sends faster than the handlers keep up is slowed by
    /// TCP. Cancel-safe: dropping the future before it resolves queues nothing and
    /// gives back any bytes it had been granted.
    ///
    /// # Errors
    ///
    /// [`InboundClosed`] with the event after [`close`](Self::close), including
    /// while waiting.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use membound::adapters::ws::{Event, Inbound, InboundConfig};
    /// use membound::clock::ManualClock;
    ///
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let inbound = Inbound::new(InboundConfig::default(), Arc::new(ManualClock::default()))?;
    /// let text = r#"{"type":"RUN_STARTED","threadId":"t1","runId":"r1"}"#;
    /// inbound.push_sized(Event::parse(text)?, text.len()).await?;
    /// assert_eq!(inbound.queued_bytes(), text.len());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub async fn push_sized(&self, event: Event, bytes: usize) -> Result<(), InboundClosed> {
        match self.push_item(Item::Event(event), bytes).await {
            Err(Item::Event(event)) => Err(InboundClosed(event)),
            // Queued (an event never comes back as a raw message).
            _ => Ok(()),
        }
    }

    /// Queues a raw message for the raw handlers, as
    /// [`push_sized`](Self::push_sized) queues an event: in the same queue, under the
    /// same byte budget (its length), in arrival order. Called by the reader with
    /// [`MalformedPolicy::Raw`](super::MalformedPolicy::Raw).
    pub(crate) async fn push_raw(&self, message: RawMessage) -> Result<(), RawMessage> {
        let bytes = message.len();
        match self.push_item(Item::Raw(message), bytes).await {
            Err(Item::Raw(message)) => Err(message),
            _ => Ok(()),
        }
    }

    /// Queues `item`, of `bytes` bytes (see [`push_sized`](Self::push_sized));
    /// hands it back after [`close`](Self::close).
    async fn push_item(&self, item: Item, bytes: usize) -> Result<(), Item> {
        let permits = self.permits_for(bytes);
        let granted = match self.free_bytes.try_acquire_many(permits) {
            Ok(granted) => granted,
            Err(TryAcquireError::Closed) => return Err(item),
            Err(TryAcquireError::NoPermits) => {
                bump(&self.byte_waits, 1);
                match self.free_bytes.acquire_many(permits).await {
                    Ok(granted) => granted,
                    Err(_closed) => return Err(item),
                }
            }
        };
        // From here the bytes are accounted to this event: the dispatcher releases
        // them when it takes the event out, `Admitted` when it never goes in.
        granted.forget();
        let mut admitted = Admitted {
            inbound: self,
            bytes,
            queued: false,
        };
        let now = self
            .queued_bytes
            .fetch_add(bytes as u64, Ordering::Relaxed)
            .saturating_add(bytes as u64);
        if now > self.peak_queued_bytes.load(Ordering::Relaxed) {
            self.peak_queued_bytes.fetch_max(now, Ordering::Relaxed);
        }
        match self
            .queue
            .push_async(Box::new(Queued { item, bytes }))
            .await
        {
            Ok(()) => {
                admitted.queued = true;
                Ok(())
            }
            Err(closed) => Err(closed.0.item),
        }
    }

    /// The permits `bytes` hold of the budget: all of it at most, so that a
    /// message larger than the budget waits for an empty queue, not forever.
    fn permits_for(&self, bytes: usize) -> u32 {
        u32::try_from(bytes).map_or(self.budget, |b| b.min(self.budget))
    }

    /// Gives an event's bytes back to the budget. The count drops first, so that
    /// a push woken by the permits never sees it above the budget.
    fn release(&self, bytes: usize) {
        self.queued_bytes.fetch_sub(bytes as u64, Ordering::Relaxed);
        self.free_bytes
            .add_permits(self.permits_for(bytes) as usize);
    }

    /// The dispatcher: takes the queued events in order and dispatches each (see
    /// the [`Inbound`] documentation), and sweeps idle subscriptions every eighth
    /// of their TTL (at most every minute) while it waits. The connection spawns it
    /// once.
    ///
    /// Returns after [`close`](Self::close), once every event queued before it has
    /// been dispatched; then every subscription ends as closed (its receiver drains
    /// what it holds, then gets [`SubscriptionError::Closed`]), every handler is
    /// dropped (so a handler may hold the connection's own handle without a
    /// reference cycle outliving the connection), and no handler or subscription can
    /// be added. A second `run` while one is dispatching returns at once.
    pub async fn run(&self) {
        if self.running.swap(true, Ordering::AcqRel) {
            return;
        }
        // Cleared however this ends, a dropped (aborted) `run` included.
        let _running = Running(&self.running);
        let period = (self.registry.config.subscription_ttl / 8)
            .clamp(Duration::from_millis(1), Duration::from_secs(60));
        let mut next_sweep = after(period);
        loop {
            // `pop_async` is cancel-safe: a timeout that drops it loses no event.
            match tokio::time::timeout_at(next_sweep, self.queue.pop_async()).await {
                Ok(Ok(queued)) => {
                    let Queued { item, bytes } = *queued;
                    self.release(bytes);
                    match item {
                        Item::Event(event) => self.dispatch(event).await,
                        Item::Raw(message) => self.dispatch_raw(message).await,
                    }
                }
                Ok(Err(_closed)) => break,
                Err(_elapsed) => {
                    self.sweep();
                    next_sweep = after(period);
                }
            }
        }
        self.registry.close();
    }

    /// Closes the inbound side: later pushes fail with [`InboundClosed`], a
    /// [`run`](Self::run) dispatches what is queued and returns. Idempotent.
    pub fn close(&self) {
        self.queue.close();
        // Wakes the pushes waiting for bytes; the dispatcher's releases still work.
        self.free_bytes.close();
    }

    /// Whether [`close`](Self::close) has been called.
    pub fn is_closed(&self) -> bool {
        self.queue.is_closed()
    }

    /// Registers `handler` for the events of type `kind`; returns its id for
    /// [`remove_handler`](Self::remove_handler). Events pushed after this returns
    /// reach it.
    ///
    /// # Errors
    ///
    /// [`InboundError::TooManyHandlers`] at [`InboundConfig::max_handlers`];
    /// [`InboundError::Closed`] once the inbound side has ended.
    pub fn on<F, Fut>(&self, kind: EventType, handler: F) -> Result<HandlerId, InboundError>
    where
        F: Fn(Event) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.add_handler(Some(kind), handler)
    }

    /// Registers `handler` for events of every type (a catch-all).
    ///
    /// # Errors
    ///
    /// As [`on`](Self::on).
    pub fn on_any<F, Fut>(&self, handler: F) -> Result<HandlerId, InboundError>
    where
        F: Fn(Event) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.add_handler(None, handler)
    }

    /// Registers `handler` for the inbound messages that are not events, when the
    /// connection's [`on_malformed`](InboundConfig::on_malformed) is
    /// [`MalformedPolicy::Raw`](super::MalformedPolicy::Raw): each comes as it
    /// arrived ([`RawMessage`]), in arrival order with the events, through the same
    /// queue and byte budget, and is dispatched as an event is (one at a time, each
    /// handler under the handler timeout). Counts toward
    /// [`max_handlers`](InboundConfig::max_handlers).
    ///
    /// # Errors
    ///
    /// As [`on`](Self::on).
    pub fn on_raw<F, Fut>(&self, handler: F) -> Result<HandlerId, InboundError>
    where
        F: Fn(RawMessage) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.register(None, Call::Raw(Box::new(move |m| Box::pin(handler(m)))))
    }

    fn add_handler<F, Fut>(
        &self,
        kind: Option<EventType>,
        handler: F,
    ) -> Result<HandlerId, InboundError>
    where
        F: Fn(Event) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.register(kind, Call::Event(Box::new(move |e| Box::pin(handler(e)))))
    }

    fn register(&self, kind: Option<EventType>, call: Call) -> Result<HandlerId, InboundError> {
        let reg = &*self.registry;
        if reg.closed.load(Ordering::Acquire) {
            return Err(InboundError::Closed);
        }
        let id = HandlerId(reg.next_id());
        let entry = Arc::new(Handler { id, kind, call });
        match reg.handlers.push_within(entry, reg.config.max_handlers) {
            Ok(()) => Ok(id),
            Err(_) => {
                bump(&reg.counters.handlers_rejected, 1);
                Err(InboundError::TooManyHandlers)
            }
        }
    }

    /// Removes handler `id`; returns whether it was registered. An event already
    /// being dispatched may still reach it.
    pub fn remove_handler(&self, id: HandlerId) -> bool {
        self.registry
            .handlers
            .remove_first(|h| h.id == id)
            .is_some()
    }

    /// Subscribes to the events of the types in `kinds` (all types when empty).
    /// Events pushed after this returns are queued to it; see [`EventSubscription`].
    ///
    /// # Errors
    ///
    /// [`InboundError::TooManySubscriptions`] when
    /// [`InboundConfig::max_subscriptions`] are open after expiring the idle ones;
    /// [`InboundError::Closed`] once the inbound side has ended.
    pub fn subscribe(
        &self,
        kinds: impl IntoIterator<Item = EventType>,
    ) -> Result<EventSubscription, InboundError> {
        let reg = &*self.registry;
        if reg.closed.load(Ordering::Acquire) {
            return Err(InboundError::Closed);
        }
        let mut list: Vec<EventType> = Vec::new();
        for kind in kinds {
            if !list.contains(&kind) {
                list.push(kind);
            }
        }
        // Validated in `new`.
        let queue =
            Ring::new(reg.config.subscription_capacity).map_err(|_| InboundError::Closed)?;
        let sub = Arc::new(Sub {
            id: SubscriptionId(reg.next_id()),
            kinds: list.into_boxed_slice(),
            queue,
            last_delivery: AtomicU64::new(reg.clock.now()),
            end: Ending::new(),
        });
        let max = reg.config.max_subscriptions;
        let admitted = match reg.subs.push_within(sub.clone(), max) {
            Ok(()) => true,
            // Full: make room by expiring the idle ones, once.
            Err(sub) => reg.sweep(reg.clock.now()) > 0 && reg.subs.push_within(sub, max).is_ok(),
        };
        if !admitted {
            bump(&reg.counters.subscriptions_rejected, 1);
            return Err(InboundError::TooManySubscriptions);
        }
        // A close that raced this call may have missed it in the list.
        if reg.closed.load(Ordering::Acquire) {
            sub.finish(End::Closed);
            reg.forget(&sub);
        }
        Ok(EventSubscription {
            shared: sub,
            registry: Arc::downgrade(&self.registry),
        })
    }

    /// Expires the subscriptions that have had no event delivered for their idle
    /// TTL, by the crate clock now, and returns how many. [`run`](Self::run) calls it
    /// periodically; call it yourself to expire at a moment of your choosing.
    pub fn sweep(&self) -> usize {
        self.registry.sweep(self.registry.clock.now())
    }

    /// Handlers registered now.
    pub fn handler_count(&self) -> usize {
        self.registry.handlers.len()
    }

    /// Subscriptions in the registry now: the open ones (an ended one leaves it
    /// when it ends).
    pub fn subscription_count(&self) -> usize {
        self.registry.subs.len()
    }

    /// Events waiting in the inbound queue now.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Bytes of the events waiting in the inbound queue now; see
    /// [`InboundMetrics::queued_bytes`].
    pub fn queued_bytes(&self) -> usize {
        // At most the sum of the sizes of the queued events, which are `usize`s
        // of text held in memory.
        self.queued_bytes.load(Ordering::Relaxed) as usize
    }

    /// A snapshot of the counters.
    pub fn metrics(&self) -> InboundMetrics {
        let reg = &*self.registry;
        let c = &reg.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let queue = self.queue.metrics();
        InboundMetrics {
            events_in: queue.pushed,
            queued: queue.len,
            queue_capacity: queue.capacity,
            push_waits: queue.push_waits,
            queued_bytes: get(&self.queued_bytes),
            peak_queued_bytes: get(&self.peak_queued_bytes),
            max_queued_bytes: u64::from(self.budget),
            byte_waits: get(&self.byte_waits),
            dispatched: get(&c.dispatched),
            handler_calls: get(&c.handler_calls),
            handler_timeouts: get(&c.handler_timeouts),
            handler_panics: get(&c.handler_panics),
            subscription_events: get(&c.subscription_events),
            subscriptions_expired: get(&c.expired),
            lagged: get(&c.lagged),
            handlers: self.handler_count() as u64,
            subscriptions: self.subscription_count() as u64,
            handlers_rejected: get(&c.handlers_rejected),
            subscriptions_rejected: get(&c.subscriptions_rejected),
        }
    }

    /// Delivers `event` to the matching subscriptions, then runs the matching
    /// handlers concurrently, each under the handler timeout.
    async fn dispatch(&self, event: Event) {
        let reg = &*self.registry;
        let kind = event.kind().clone();
        let subs = reg.subs.load();
        // The time matters only to subscriptions (activity and idleness).
        let now = if subs.is_empty() { 0 } else { reg.clock.now() };
        let handlers = reg.handlers.load();
        let targets = handlers.iter().filter(|h| h.wants(&kind)).count();
        let wanted = subs
            .iter()
            .filter(|s| s.is_open() && s.wants(&kind))
            .count();
        // Each target gets a clone; the last one served gets the original.
        let mut remaining = wanted + targets;
        let mut event = Some(event);
        let mut next_copy = || {
            remaining -= 1;
            if remaining == 0 {
                event.take()
            } else {
                event.clone()
            }
        };

        let (mut delivered, mut lagged, mut expired) = (0, 0, 0);
        for sub in subs.iter() {
            if !sub.is_open() {
                continue;
            }
            if sub.wants(&kind) {
                let Some(copy) = next_copy() else { break };
                match sub.queue.force_push(Box::new(copy)) {
                    Ok(evicted) => {
                        sub.last_delivery.fetch_max(now, Ordering::Relaxed);
                        delivered += 1;
                        lagged += u64::from(evicted.is_some());
                    }
                    // Ended meanwhile (unsubscribed or expired): it goes nowhere.
                    Err(_closed) => {}
                }
            } else if sub.idle_at(now, reg.ttl_ticks) && reg.expire(sub) {
                expired += 1;
            }
        }
        drop(subs);
        if expired > 0 {
            reg.subs.retain(|s| s.is_open());
        }
        bump(&reg.counters.subscription_events, delivered);
        bump(&reg.counters.lagged, lagged);

        // Call every matching handler here, then let go of the snapshot: only the
        // futures are held while they run.
        let (mut calls, mut panics) = (0, 0);
        let mut running = Vec::with_capacity(targets);
        for handler in handlers.iter().filter(|h| h.wants(&kind)) {
            let Call::Event(call) = &handler.call else {
                continue;
            };
            let Some(copy) = next_copy() else { break };
            calls += 1;
            match std::panic::catch_unwind(AssertUnwindSafe(|| call(copy))) {
                Ok(future) => running.push(self.supervise(future)),
                Err(_panic) => panics += 1,
            }
        }
        drop(handlers);
        self.finish_dispatch(calls, panics, running).await;
    }

    /// Runs the raw handlers on `message` as [`dispatch`](Self::dispatch) runs the
    /// handlers of an event; each gets a clone (which shares the payload).
    async fn dispatch_raw(&self, message: RawMessage) {
        let handlers = self.registry.handlers.load();
        let (mut calls, mut panics) = (0, 0);
        let mut running = Vec::new();
        for handler in handlers.iter() {
            let Call::Raw(call) = &handler.call else {
                continue;
            };
            calls += 1;
            let copy = message.clone();
            match std::panic::catch_unwind(AssertUnwindSafe(|| call(copy))) {
                Ok(future) => running.push(self.supervise(future)),
                Err(_panic) => panics += 1,
            }
        }
        drop(handlers);
        self.finish_dispatch(calls, panics, running).await;
    }

    /// Counts the handler calls of one item, polls their futures together, then
    /// counts the item as dispatched.
    async fn finish_dispatch<F>(&self, calls: u64, panics: u64, running: Vec<F>)
    where
        F: Future<Output = ()>,
    {
        let c = &self.registry.counters;
        bump(&c.handler_calls, calls);
        bump(&c.handler_panics, panics);
        if !running.is_empty() {
            join_all(running).await;
        }
        bump(&c.dispatched, 1);
    }

    /// Runs one handler's future under the handler timeout, catching a panic.
    async fn supervise(&self, future: HandlerFuture) {
        let c = &self.registry.counters;
        let timeout = self.registry.config.handler_timeout;
        match tokio::time::timeout(timeout, AssertUnwindSafe(future).catch_unwind()).await {
            Ok(Ok(())) => {}
            Ok(Err(_panic)) => bump(&c.handler_panics, 1),
            // The elapsed timeout dropped the handler's future: cancelled.
            Err(_elapsed) => bump(&c.handler_timeouts, 1),
        }
    }
}

/// The inbound queue's capacity in events, within `1..=queue_capacity`: the
/// inbound side's place on the crate's one pressure route. A
/// [`Server`](super::Server) built with
/// [`memory_manager`](super::ServerBuilder::memory_manager) applies every level
/// transition to each connection's inbound queue as
/// [`apply_pressure`](SoftCapacity::apply_pressure)`(level,`
/// [`adaptive_size`](crate::pressure::adaptive_size)`(queue_capacity, level))` (a quarter at `Critical`); the
/// level has no rule of its own here, so that is
/// [`set_capacity`](SoftCapacity::set_capacity). Nothing queued is dropped: when
/// more is queued than the new capacity, pushes wait until the dispatcher has taken
/// the queue below it, which holds the peer back through TCP.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use membound::adapters::ws::{Inbound, InboundConfig};
/// use membound::capacity::SoftCapacity;
/// use membound::clock::ManualClock;
/// use membound::pressure::{adaptive_size, PressureLevel};
///
/// let config = InboundConfig { queue_capacity: 100, ..InboundConfig::default() };
/// let inbound = Inbound::new(config, Arc::new(ManualClock::default()))?;
/// let critical = PressureLevel::Critical;
/// inbound.apply_pressure(critical, adaptive_size(100, critical))?;
/// assert_eq!(inbound.capacity(), 25);
/// inbound.apply_pressure(PressureLevel::Normal, 100)?;
/// assert_eq!(inbound.capacity(), 100);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
impl SoftCapacity for Inbound {
    crate::capacity::forward_soft_capacity!(self => self.queue);
}

impl Drop for Inbound {
    fn drop(&mut self) {
        self.queue.close();
        self.registry.close();
    }
}

impl fmt::Debug for Inbound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Inbound")
            .field("config", &self.registry.config)
            .field("closed", &self.is_closed())
            .field("metrics", &self.metrics())
            .finish()
    }
}

/// A subscription to a connection's inbound events of some types: the receiving end
/// of its bounded queue. Made by [`Inbound::subscribe`]; dropping it unsubscribes
/// (its registry entry is freed at once).
///
/// When the receiver falls behind, the queue
/// ([`subscription_capacity`](InboundConfig::subscription_capacity)) drops its
/// oldest event; [`lagged`](Self::lagged) counts them. A subscription that has had
/// no event delivered for its idle TTL expires (see the
/// [`Inbound`] documentation).
pub struct EventSubscription {
    shared: Arc<Sub>,
    registry: Weak<Registry>,
}

impl EventSubscription {
    /// The subscription's id.
    pub fn id(&self) -> SubscriptionId {
        self.shared.id
    }

    /// The types subscribed to; empty for every type.
    pub fn kinds(&self) -> &[EventType] {
        &self.shared.kinds
    }

    /// Takes the next event, waiting while none is queued. Cancel-safe.
    ///
    /// # Errors
    ///
    /// [`SubscriptionError::Expired`] once the subscription has expired (found here
    /// if no sweep found it first); [`SubscriptionError::Closed`] once the
    /// connection's inbound side has ended and the queue is drained.
    pub async fn recv(&self) -> Result<Event, SubscriptionError> {
        self.check_idle();
        self.shared
            .queue
            .pop_async()
            .await
            .map(|event| *event)
            .map_err(|_closed| self.shared.end_error())
    }

    /// Takes the next event if one is queued; `Ok(None)` when none is.
    ///
    /// # Errors
    ///
    /// As [`recv`](Self::recv).
    pub fn try_recv(&self) -> Result<Option<Event>, SubscriptionError> {
        self.check_idle();
        match self.shared.queue.pop() {
            Ok(event) => Ok(Some(*event)),
            Err(crate::ring::PopError::Empty) => Ok(None),
            Err(crate::ring::PopError::Closed) => Err(self.shared.end_error()),
        }
    }

    /// Events dropped from this subscription's full queue so far.
    pub fn lagged(&self) -> u64 {
        self.shared.queue.metrics().evicted
    }

    /// Events queued now.
    pub fn len(&self) -> usize {
        self.shared.queue.len()
    }

    /// Whether no event is queued.
    pub fn is_empty(&self) -> bool {
        self.shared.queue.is_empty()
    }

    /// Whether the subscription has ended (expired or closed); events queued before
    /// a close may still be received.
    pub fn is_closed(&self) -> bool {
        !self.shared.is_open()
    }

    /// Expires the subscription now if its TTL has run out, as a sweep would.
    fn check_idle(&self) {
        if !self.shared.is_open() {
            return;
        }
        if let Some(reg) = self.registry.upgrade() {
            if self.shared.idle_at(reg.clock.now(), reg.ttl_ticks) && reg.expire(&self.shared) {
                reg.forget(&self.shared);
            }
        }
    }
}

impl Drop for EventSubscription {
    fn drop(&mut self) {
        self.shared.finish(End::Unsubscribed);
        if let Some(reg) = self.registry.upgrade() {
            reg.forget(&self.shared);
        }
    }
}

impl fmt::Debug for EventSubscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventSubscription")
            .field("id", &self.shared.id)
            .field("kinds", &self.shared.kinds)
            .field("len", &self.len())
            .field("lagged", &self.lagged())
            .field("closed", &self.is_closed())
            .finish()
    }
}
