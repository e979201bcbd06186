//! Backpressure that acts: a bounded channel whose water marks slow producers down.
//!
//! [`Backpressure<T>`] puts flow control in front of a [`Ring`]. Two mechanisms work
//! together:
//!
//! - an **overflow policy** ([`OverflowPolicy`], every one supported) says what a
//!   send does when the ring is full: refuse with an error (`Reject`), drop the
//!   oldest item, drop the new one, or wait for room (`Block` forever,
//!   `BlockTimeout` up to a time);
//! - **water marks** ([`WaterMarks`]) add hysteresis: when the fill reaches `high`,
//!   the channel *pauses*. Only the waiting policies (`Block`, `BlockTimeout`) wait
//!   out a pause: while paused, their sends ([`send`], [`send_wait`],
//!   [`send_async`]) wait until consumers have drained the fill down to `low`, and
//!   [`try_send`] fails with [`SendError::Paused`]. Producers therefore stop in bulk
//!   and restart in bulk, instead of flapping at the edge of a full ring. The other
//!   policies never block a sender: `Reject`, which refuses rather than waits,
//!   refuses every send with [`SendError::Paused`] while paused, and `DropOldest` and
//!   `DropNewest` are not held back at all (they drop, as when full). The
//!   [`is_paused`] flag and an optional callback report each transition under every
//!   policy.
//!
//! The original Go handler only toggled a flag at its water marks and never slowed a
//! producer; here the pause is the point.
//!
//! [`send`]: Backpressure::send
//! [`send_wait`]: Backpressure::send_wait
//! [`send_async`]: Backpressure::send_async
//! [`try_send`]: Backpressure::try_send
//! [`is_paused`]: Backpressure::is_paused
//! [`OverflowPolicy`]: crate::OverflowPolicy
//!
//! # The pause protocol
//!
//! `paused` is one atomic flag. A send that stored its item and finds the fill at
//! or above the high mark sets it (a `SeqCst` CAS: one producer wins and reports the
//! transition). A receive that took an item and finds the flag set and the fill at or
//! below the low mark clears it (a `SeqCst` CAS), then wakes every waiting producer.
//!
//! The race to rule out is a pause that nobody will ever lift: the last consumer pops
//! the fill down to the low mark and reads `paused == false`, then a producer that
//! had seen a high fill sets the flag, and no more pops come. The producer therefore
//! re-reads the fill after its CAS and a `SeqCst` fence, and lifts the pause itself
//! when it is already low. The pop moved `head` with a `SeqCst` CAS and then loads
//! `paused` with `SeqCst`; if that load missed the producer's CAS, the pop precedes the
//! producer's fence in the single total order of `SeqCst` operations, so the
//! producer's re-read sees it (C++20 \[atomics.order\]). One of the two sees the
//! other: a pause ends whenever the fill is low.
//!
//! Waiting uses the crate's eventcount ([`ring`](crate::ring)'s wait queues): a
//! producer links a waiter into a queue, re-checks, and sleeps, on the queue of what
//! holds it back. Waiting for room is the ring's own: a send that finds the ring full
//! waits on the ring's producers' queue, which the ring's pops notify (one load when
//! nobody waits). Waiting out a pause is the channel's: the ring knows nothing of the
//! pause, so a paused send waits on the channel's own queue, which only a resume
//! (notifying all) and [`close`](Backpressure::close) wake; receives during a pause
//! do not wake it to fail again. A send that wakes for one reason and finds the other
//! moves to the other queue. `close` wakes everyone with [`SendError::Closed`], which
//! hands the item back. Consumers wait on the ring's own queue.
//!
//! # Costs
//!
//! With water marks, a send reads the fill (both ends of the ring) after storing; a
//! receive loads the pause flag. Without water marks
//! a send costs what a ring push costs. Sent, received and dropped counts are the
//! ring's own position-derived metrics; only slow paths (waits, transitions,
//! timeouts, refusals) bump counters of their own.

use alloc::boxed::Box;
use core::fmt;
use core::time::Duration;

use crate::capacity::{CapacityError, SoftCapacity};
use crate::clock::Clock;
use crate::policy::OverflowPolicy;
use crate::ring::wait::WaitQueue;
use crate::ring::{PopError, PushError, Pushed, Ring};
use crate::sync::{fence, AtomicBool, AtomicU64, Ordering};
use crate::ConfigError;

mod config;
mod waiting;

pub use config::{BackpressureConfig, WaterMarks};
pub use waiting::SendFuture;

/// A send that did not store its item; the item comes back inside.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub enum SendError<T> {
    /// The ring was full and the policy does not wait
    /// ([`OverflowPolicy::Reject`], or any policy through
    /// [`try_send`](Backpressure::try_send)).
    Full(T),
    /// The channel is paused (the fill reached the high mark and has not fallen to
    /// the low mark yet). [`try_send`](Backpressure::try_send) returns it under the
    /// waiting strategies (their other sends wait instead), and every send under
    /// [`OverflowPolicy::Reject`]; the dropping policies are not held back by a
    /// pause.
    Paused(T),
    /// The wait ran out: [`OverflowPolicy::BlockTimeout`] or
    /// [`send_wait`](Backpressure::send_wait).
    Timeout(T),
    /// The channel was closed.
    Closed(T),
}

impl<T> SendError<T> {
    /// Takes the refused item back.
    pub fn into_inner(self) -> T {
        match self {
            Self::Full(item) | Self::Paused(item) | Self::Timeout(item) | Self::Closed(item) => {
                item
            }
        }
    }
}

impl<T> fmt::Debug for SendError<T> {
    // No `T: Debug` bound, so `?` works for any item type.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Full(_) => "Full(..)",
            Self::Paused(_) => "Paused(..)",
            Self::Timeout(_) => "Timeout(..)",
            Self::Closed(_) => "Closed(..)",
        })
    }
}

impl<T> fmt::Display for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Full(_) => "channel is full",
            Self::Paused(_) => "channel is paused above its high water mark",
            Self::Timeout(_) => "timed out waiting to send",
            Self::Closed(_) => "channel is closed",
        })
    }
}

impl<T> core::error::Error for SendError<T> {}

/// Whether producers may send.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FlowState {
    /// Below the high mark, or fallen back to the low mark since.
    Flowing,
    /// The fill reached the high mark and has not fallen to the low mark since. Sends
    /// of the waiting policies wait, those of [`OverflowPolicy::Reject`] are refused, those
    /// of the dropping strategies go on.
    Paused,
}

/// A change of [`FlowState`], as reported to the transition callback.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Transition {
    /// The state left.
    pub from: FlowState,
    /// The state entered.
    pub to: FlowState,
    /// The fill seen when deciding.
    pub len: usize,
    /// The capacity in force then.
    pub capacity: usize,
}

/// A snapshot of a channel's counters.
///
/// `sent`, `received` and the drop counts come from the ring's positions and
/// counters ([`RingMetrics`](crate::ring::RingMetrics)); the rest are the channel's
/// slow-path counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, crate::metrics::Metrics)]
#[non_exhaustive]
#[metrics(
    kind = "backpressure",
    counters,
    help(
        dropped = "Items the strategy dropped, by cause.",
        refused = "Sends refused with the item handed back, by cause."
    )
)]
pub struct BackpressureMetrics {
    /// Items stored by sends.
    pub sent: u64,
    /// Items taken by receives.
    pub received: u64,
    /// Stored items dropped to make room ([`OverflowPolicy::DropOldest`]).
    #[metric(name = "dropped", label("cause", "drop_oldest"))]
    pub dropped_oldest: u64,
    /// New items dropped because the ring was full ([`OverflowPolicy::DropNewest`]).
    #[metric(name = "dropped", label("cause", "drop_newest"))]
    pub dropped_newest: u64,
    /// Sends refused with [`SendError::Full`].
    #[metric(name = "refused", label("cause", "full"))]
    pub rejected_full: u64,
    /// Sends refused with [`SendError::Paused`]: `try_send` calls, and any send
    /// under [`OverflowPolicy::Reject`].
    #[metric(name = "refused", label("cause", "paused"))]
    pub rejected_paused: u64,
    /// Sends that could not proceed at once and waited (paused, or full under a
    /// waiting policy).
    pub blocked: u64,
    /// Total time those sends spent waiting, on the channel's clock.
    #[metric(unit = "seconds")]
    pub blocked_time: Duration,
    /// Sends that gave up at their deadline.
    pub timeouts: u64,
    /// Transitions to [`FlowState::Paused`] (the high mark was reached).
    pub high_water_hits: u64,
    /// Transitions back to [`FlowState::Flowing`] (the fill fell to the low mark).
    pub low_water_hits: u64,
    /// Whether the channel is paused now.
    #[metric(gauge)]
    pub paused: bool,
    /// Items stored now.
    #[metric(gauge)]
    pub len: u64,
    /// The capacity in force.
    #[metric(gauge)]
    pub capacity: u64,
    /// Producers sleeping now, waiting to send.
    #[metric(gauge)]
    pub producers_waiting: u64,
}

type TransitionHook = Box<dyn Fn(Transition) + Send + Sync>;

/// A bounded channel with an [`OverflowPolicy`] and [`WaterMarks`] that pause
/// producers. See the [module docs](self).
///
/// # Examples
///
/// ```
/// use membound::backpressure::{
///     Backpressure, BackpressureConfig, SendError, WaterMarks,
/// };
/// use membound::OverflowPolicy;
///
/// let channel = Backpressure::new(
///     BackpressureConfig::new(4)
///         .with_policy(OverflowPolicy::Block)
///         .with_water_marks(WaterMarks::new(0.25, 0.75)?),
/// )?;
/// channel.try_send(1)?;
/// channel.try_send(2)?;
/// channel.try_send(3)?; // 3 of 4: the high mark; the channel pauses
/// assert!(channel.is_paused());
/// assert!(matches!(channel.try_send(4), Err(SendError::Paused(4))));
///
/// assert_eq!(channel.try_recv(), Some(1));
/// assert!(channel.is_paused()); // 2 left: above the low mark (1)
/// assert_eq!(channel.try_recv(), Some(2));
/// assert!(!channel.is_paused()); // resumed
/// channel.try_send(4)?;
/// assert_eq!(channel.metrics().high_water_hits, 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Backpressure<T> {
    /// The storage, under the channel's policy. Sends that wait for room wait on its
    /// producers' queue, which its pops notify.
    ring: Ring<T>,
    policy: OverflowPolicy,
    marks: Option<WaterMarks>,
    /// The flow state: set by the producer that saw the fill reach the high mark,
    /// cleared by the consumer (or producer) that saw it at the low mark. Both by
    /// `SeqCst` CAS (module docs).
    paused: AtomicBool,
    /// Producers waiting for the pause to end (the ring knows nothing of the pause,
    /// so this wait is the channel's own). Notified by resuming and by closing.
    producers: WaitQueue,
    /// Measures time spent blocked; `None` leaves `blocked_time` at zero.
    clock: Option<Box<dyn Clock + Send + Sync>>,
    on_transition: Option<TransitionHook>,
    rejected_full: AtomicU64,
    rejected_paused: AtomicU64,
    blocked: AtomicU64,
    blocked_ticks: AtomicU64,
    timeouts: AtomicU64,
    high_water_hits: AtomicU64,
    low_water_hits: AtomicU64,
}

/// Whether a pause holds a send back (to wait, or to be refused): all but the
/// dropping policies, which drop as when full.
const fn held_back_by_pause(policy: OverflowPolicy) -> bool {
    !matches!(
        policy,
        OverflowPolicy::DropOldest | OverflowPolicy::DropNewest
    )
}

/// What one send attempt achieved.
enum Attempt<T> {
    /// Finished: stored, dropped per the policy, or refused for good.
    Done(Result<Pushed, SendError<T>>),
    /// Must wait: the channel is paused.
    Paused(T),
    /// Must wait: the ring is full and the policy waits for room.
    Full(T),
}

impl<T> Backpressure<T> {
    /// A channel as configured. Under `std` it measures blocked time on a
    /// [`MonotonicClock`](crate::clock::MonotonicClock); without `std`, use
    /// [`with_clock`](Self::with_clock) to measure it.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] for a configuration that cannot work.
    pub fn new(config: BackpressureConfig) -> Result<Self, ConfigError> {
        #[cfg(feature = "std")]
        let clock: Option<Box<dyn Clock + Send + Sync>> =
            Some(Box::new(crate::clock::MonotonicClock::new()));
        #[cfg(not(feature = "std"))]
        let clock = None;
        Self::build(config, clock)
    }

    /// A channel that measures blocked time on `clock` (a
    /// [`ManualClock`](crate::clock::ManualClock) in tests).
    ///
    /// # Errors
    ///
    /// As [`new`](Self::new).
    pub fn with_clock(
        config: BackpressureConfig,
        clock: impl Clock + Send + Sync + 'static,
    ) -> Result<Self, ConfigError> {
        Self::build(config, Some(Box::new(clock)))
    }

    fn build(
        config: BackpressureConfig,
        clock: Option<Box<dyn Clock + Send + Sync>>,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        let ring = Ring::with_config(config.ring_config())?;
        Ok(Self {
            ring,
            policy: config.policy,
            marks: config.water_marks,
            paused: AtomicBool::new(false),
            producers: WaitQueue::new(),
            clock,
            on_transition: None,
            rejected_full: AtomicU64::new(0),
            rejected_paused: AtomicU64::new(0),
            blocked: AtomicU64::new(0),
            blocked_ticks: AtomicU64::new(0),
            timeouts: AtomicU64::new(0),
            high_water_hits: AtomicU64::new(0),
            low_water_hits: AtomicU64::new(0),
        })
    }

    /// Calls `hook` on every [`Transition`], on the thread that caused it (a
    /// producer pausing, a consumer resuming), after waiting producers have been
    /// woken and without any lock held, so the hook may use the channel. Keep it
    /// short; a panic in it propagates to that caller, the transition stands.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::atomic::{AtomicUsize, Ordering};
    /// use std::sync::Arc;
    /// use membound::backpressure::{Backpressure, BackpressureConfig, FlowState, WaterMarks};
    ///
    /// let pauses = Arc::new(AtomicUsize::new(0));
    /// let seen = Arc::clone(&pauses);
    /// let channel = Backpressure::new(
    ///     BackpressureConfig::new(2).with_water_marks(WaterMarks::new(0.0, 1.0)?),
    /// )?
    /// .on_transition(move |t| {
    ///     if t.to == FlowState::Paused {
    ///         seen.fetch_add(1, Ordering::Relaxed);
    ///     }
    /// });
    /// channel.try_send('a')?;
    /// channel.try_send('b')?;
    /// assert_eq!(pauses.load(Ordering::Relaxed), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn on_transition(mut self, hook: impl Fn(Transition) + Send + Sync + 'static) -> Self {
        self.on_transition = Some(Box::new(hook));
        self
    }

    /// Sends without waiting.
    ///
    /// Returns how the item was handled: [`Pushed::Stored`], or under the dropping
    /// strategies [`Pushed::DroppedOldest`] / [`Pushed::DroppedNewest`].
    ///
    /// # Errors
    ///
    /// [`SendError::Paused`] while paused, unless the policy drops,
    /// [`SendError::Full`] when the ring is full and the policy neither drops nor
    /// (here) waits, [`SendError::Closed`] once closed; each hands the item back.
    pub fn try_send(&self, item: T) -> Result<Pushed, SendError<T>> {
        match self.attempt(item) {
            Attempt::Done(done) => done,
            Attempt::Paused(item) => Err(self.refused_paused(item)),
            Attempt::Full(item) => {
                self.rejected_full.fetch_add(1, Ordering::Relaxed);
                Err(SendError::Full(item))
            }
        }
    }

    /// One send attempt: never waits.
    #[inline]
    fn attempt(&self, item: T) -> Attempt<T> {
        // The dropping policies are not held back by a pause (the marks still
        // report its transitions, in `after_send`); `Reject` is refused, not made to
        // wait.
        if held_back_by_pause(self.policy)
            && self.marks.is_some()
            && self.paused.load(Ordering::Acquire)
        {
            // A closed channel answers Closed even while paused.
            if self.ring.is_closed() {
                return Attempt::Done(Err(SendError::Closed(item)));
            }
            if !self.policy.waits() {
                return Attempt::Done(Err(self.refused_paused(item)));
            }
            return Attempt::Paused(item);
        }
        // The dropping policies act in the ring's `push`; the others refuse here
        // with `try_push`, which counts nothing (the refusal is counted below) and
        // never waits: a waiting send waits in `waiting`, on the ring's queue for
        // room and on ours for the pause.
        let pushed = match self.policy {
            OverflowPolicy::DropOldest | OverflowPolicy::DropNewest => self.ring.push(item),
            _ => self.ring.try_push(item).map(|()| Pushed::Stored),
        };
        match pushed {
            Ok(pushed) => {
                if pushed != Pushed::DroppedNewest {
                    self.after_send();
                }
                Attempt::Done(Ok(pushed))
            }
            Err(PushError::Full(item)) if self.policy.waits() => Attempt::Full(item),
            Err(PushError::Full(item)) => {
                self.rejected_full.fetch_add(1, Ordering::Relaxed);
                Attempt::Done(Err(SendError::Full(item)))
            }
            Err(PushError::Closed(item)) => Attempt::Done(Err(SendError::Closed(item))),
        }
    }

    /// Counts a send refused because the channel is paused.
    fn refused_paused(&self, item: T) -> SendError<T> {
        self.rejected_paused.fetch_add(1, Ordering::Relaxed);
        SendError::Paused(item)
    }

    /// Pauses when a send brought the fill to the high mark.
    #[inline]
    fn after_send(&self) {
        let Some(marks) = self.marks else { return };
        if self.paused.load(Ordering::Relaxed) {
            return;
        }
        let capacity = self.ring.capacity();
        let len = self.ring.len();
        if len >= marks.high_count(capacity) {
            self.pause(marks);
        }
    }

    #[cold]
    fn pause(&self, marks: WaterMarks) {
        // SeqCst: one half of the Dekker pair with a receive (module docs).
        if self
            .paused
            .compare_exchange(false, true, Ordering::SeqCst, Ordering::Relaxed)
            .is_err()
        {
            return;
        }
        self.high_water_hits.fetch_add(1, Ordering::Relaxed);
        let capacity = self.ring.capacity();
        // The fence orders our CAS before the re-read: a receive whose `paused`
        // load missed the CAS popped before this fence, so `len` sees that pop.
        fence(Ordering::SeqCst);
        let len = self.ring.len();
        self.report(FlowState::Flowing, FlowState::Paused, len, capacity);
        if len <= marks.low_count(capacity) {
            // Consumers drained the ring before they could see the pause.
            self.resume(len, capacity);
        }
    }

    /// After every successful receive: resumes a paused channel whose fill is at the
    /// low mark. Producers waiting for room need nothing from here: the ring's pop
    /// has notified its own queue.
    #[inline]
    fn after_recv(&self) {
        let Some(marks) = self.marks else { return };
        // Under loom SeqCst loads are only Acquire; its fences are exact (see
        // `ring::wait`). In production the pop's SeqCst CAS and this SeqCst load
        // are enough (module docs).
        #[cfg(loom)]
        fence(Ordering::SeqCst);
        if self.paused.load(Ordering::SeqCst) {
            // Producers waiting out the pause are not woken for this pop: they would
            // only find the pause and sleep again; the resume, if it comes, wakes
            // them all. A producer that registered after a resume we read as
            // "paused" sees our pop on its re-check: the resume's CAS follows our
            // load in the total order, and its registration follows the resume.
            self.try_resume(marks);
        }
    }

    #[cold]
    fn try_resume(&self, marks: WaterMarks) {
        let capacity = self.ring.capacity();
        let len = self.ring.len();
        if len <= marks.low_count(capacity) {
            self.resume(len, capacity);
        }
    }

    fn resume(&self, len: usize, capacity: usize) {
        // SeqCst: a waiting producer re-checks `paused` after its registration
        // fence; this RMW precedes the waiter-count load in `notify_all`.
        if self
            .paused
            .compare_exchange(true, false, Ordering::SeqCst, Ordering::Relaxed)
            .is_ok()
        {
            self.low_water_hits.fetch_add(1, Ordering::Relaxed);
            self.producers.notify_all();
            self.report(FlowState::Paused, FlowState::Flowing, len, capacity);
        }
    }

    fn report(&self, from: FlowState, to: FlowState, len: usize, capacity: usize) {
        if let Some(hook) = &self.on_transition {
            hook(Transition {
                from,
                to,
                len,
                capacity,
            });
        }
    }

    /// Takes the oldest item without waiting.
    pub fn try_recv(&self) -> Option<T> {
        self.recv_now().ok()
    }

    /// Takes the oldest item, or says why there is none ([`PopError::Empty`], or
    /// [`PopError::Closed`] once closed and drained).
    ///
    /// # Errors
    ///
    /// As described.
    pub fn recv_now(&self) -> Result<T, PopError> {
        let item = self.ring.pop()?;
        self.after_recv();
        Ok(item)
    }

    /// Closes the channel: sends fail with [`SendError::Closed`] from now on, and
    /// every waiting producer wakes with its item handed back. Receivers drain what
    /// is stored, then get [`PopWaitError::Closed`](crate::ring::PopWaitError::Closed).
    /// Returns `false` if it was already closed.
    pub fn close(&self) -> bool {
        let closed_now = self.ring.close();
        // The ring's close is a SeqCst RMW on its tail and wakes the producers
        // waiting for room; those waiting out the pause re-check `is_closed` after
        // their registration fence.
        self.producers.notify_all();
        closed_now
    }

    /// Whether [`close`](Self::close) has been called.
    pub fn is_closed(&self) -> bool {
        self.ring.is_closed()
    }

    /// Whether the channel is paused (see [`WaterMarks`]).
    pub fn is_paused(&self) -> bool {
        self.paused.load(Ordering::Acquire)
    }

    /// The flow state now.
    pub fn state(&self) -> FlowState {
        if self.is_paused() {
            FlowState::Paused
        } else {
            FlowState::Flowing
        }
    }

    /// Items stored now.
    pub fn len(&self) -> usize {
        self.ring.len()
    }

    /// Whether nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.ring.is_empty()
    }

    /// The capacity in force.
    pub fn capacity(&self) -> usize {
        self.ring.capacity()
    }

    /// The overflow policy (the ring's as well).
    pub fn policy(&self) -> OverflowPolicy {
        self.policy
    }

    /// The water marks, if pausing is enabled.
    pub fn water_marks(&self) -> Option<WaterMarks> {
        self.marks
    }

    /// A snapshot of the counters.
    pub fn metrics(&self) -> BackpressureMetrics {
        let ring = self.ring.metrics();
        let ticks = self.blocked_ticks.load(Ordering::Relaxed);
        BackpressureMetrics {
            sent: ring.pushed,
            received: ring.popped,
            dropped_oldest: ring.dropped_oldest,
            dropped_newest: ring.dropped_newest,
            rejected_full: self.rejected_full.load(Ordering::Relaxed),
            rejected_paused: self.rejected_paused.load(Ordering::Relaxed),
            blocked: self.blocked.load(Ordering::Relaxed),
            blocked_time: self
                .clock
                .as_ref()
                .map_or(Duration::ZERO, |clock| clock.duration_of(ticks)),
            timeouts: self.timeouts.load(Ordering::Relaxed),
            high_water_hits: self.high_water_hits.load(Ordering::Relaxed),
            low_water_hits: self.low_water_hits.load(Ordering::Relaxed),
            paused: self.is_paused(),
            len: ring.len,
            capacity: ring.capacity,
            producers_waiting: self.producers.len() + ring.producers_waiting,
        }
    }

    /// The clock's time, if there is a clock.
    fn now(&self) -> Option<u64> {
        self.clock.as_ref().map(|clock| clock.now())
    }

    /// Accounts a send that had to wait, from `since` (the clock's time then).
    fn account_blocked(&self, since: Option<u64>) {
        if let (Some(since), Some(now)) = (since, self.now()) {
            self.blocked_ticks
                .fetch_add(now.saturating_sub(since), Ordering::Relaxed);
        }
    }
}

impl<T> SoftCapacity for Backpressure<T> {
    fn capacity(&self) -> usize {
        self.ring.capacity()
    }

    /// The channel, its ring's slots, its boxed clock and transition hook, reserved at
    /// construction: constant.
    fn footprint(&self) -> Option<crate::capacity::Footprint> {
        let ring = SoftCapacity::footprint(&self.ring)?;
        let own = core::mem::size_of::<Self>() - core::mem::size_of::<Ring<T>>();
        // The boxed clock, and the boxed transition hook's closure.
        let clock = self.clock.as_deref().map_or(0, core::mem::size_of_val);
        let hook = self
            .on_transition
            .as_deref()
            .map_or(0, core::mem::size_of_val);
        Some(crate::capacity::Footprint::reserved(
            ring.bytes + (own + clock + hook) as u64,
        ))
    }

    fn kind(&self) -> &'static str {
        <BackpressureMetrics as crate::metrics::Metrics>::KIND
    }

    fn max_capacity(&self) -> usize {
        self.ring.max_capacity()
    }

    /// Sets the ring's capacity (see [`Ring::set_capacity`]); the water marks apply
    /// to the new capacity at once: a raise can end a pause, a cut can start one at
    /// the next send.
    fn set_capacity(&self, capacity: usize) -> Result<(), CapacityError> {
        // A raise wakes the producers waiting for room: they wait on the ring's
        // queue, which the ring's `set_capacity` notifies.
        self.ring.set_capacity(capacity)?;
        if let Some(marks) = self.marks {
            // Read `paused` only after the capacity change, with the same fence
            // discipline as a receive.
            fence(Ordering::SeqCst);
            if self.paused.load(Ordering::SeqCst) {
                self.try_resume(marks);
            }
        }
        Ok(())
    }
}

impl<T> fmt::Debug for Backpressure<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Backpressure")
            .field("len", &self.len())
            .field("capacity", &self.capacity())
            .field("policy", &self.policy)
            .field("water_marks", &self.marks)
            .field("paused", &self.is_paused())
            .field("closed", &self.is_closed())
            .finish_non_exhaustive()
    }
}
