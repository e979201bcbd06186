//! Backpressure that acts: a bounded channel whose water marks slow producers down.
//!
//! [`Backpressure<T>`] puts flow control in front of a [`Ring`]. Two mechanisms work
//! together:
//!
//! - a **strategy** ([`Strategy`]) says what a send does when the ring is full:
//!   refuse with an error, drop the oldest item, drop the new one, or wait for room
//!   (forever or up to a timeout);
//! - **water marks** ([`WaterMarks`]) add hysteresis: when the fill reaches `high`,
//!   the channel *pauses*. Only the waiting strategies ([`Strategy::Block`],
//!   [`Strategy::BlockWithTimeout`]) wait out a pause: while paused, their sends
//!   ([`send`], [`send_timeout`], [`send_async`]) wait until consumers have drained
//!   the fill down to `low`, and [`try_send`] fails with [`SendError::Paused`].
//!   Producers therefore stop in bulk and restart in bulk, instead of flapping at
//!   the edge of a full ring. The other strategies never block a sender:
//!   [`Strategy::None`], which refuses rather than waits, refuses every send with
//!   [`SendError::Paused`] while paused, and [`Strategy::DropOldest`] and
//!   [`Strategy::DropNewest`] are not held back at all (they drop, as when full).
//!   The [`is_paused`] flag and an optional callback report each transition under
//!   every strategy.
//!
//! The original Go handler only toggled a flag at its water marks and never slowed a
//! producer; here the pause is the point.
//!
//! [`send`]: Backpressure::send
//! [`send_timeout`]: Backpressure::send_timeout
//! [`send_async`]: Backpressure::send_async
//! [`try_send`]: Backpressure::try_send
//! [`is_paused`]: Backpressure::is_paused
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
//! producer links a waiter into the channel's queue, re-checks, and sleeps. Receives
//! notify it (one load when nobody waits), resuming notifies all, and
//! [`close`](Backpressure::close) wakes everyone with [`SendError::Closed`], which
//! hands the item back. Consumers wait on the ring's own queue.
//!
//! # Costs
//!
//! With water marks, a send reads the fill (both ends of the ring) after storing; a
//! receive loads the pause flag and the producers' waiter count. Without water marks
//! a send costs what a ring push costs. Sent, received and dropped counts are the
//! ring's own position-derived metrics; only slow paths (waits, transitions,
//! timeouts, refusals) bump counters of their own.

use alloc::boxed::Box;
use core::fmt;
use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll};
use core::time::Duration;

use crate::capacity::{CapacityError, SoftCapacity};
use crate::clock::Clock;
use crate::ring::wait::{cancel_waiter, poll_waiting, WaitQueue, Waiter};
use crate::ring::{
    Closed, ConfigError as RingConfigError, OverflowPolicy, PopError, PushError, Pushed, Ring,
    RingConfig,
};
use crate::sync::{fence, AtomicBool, AtomicU64, Ordering};

/// What a send does when the ring is full.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub enum Strategy {
    /// Refuse the item with [`SendError::Full`] (it comes back to the caller), and
    /// while the channel is paused with [`SendError::Paused`]. Never waits.
    None,
    /// Make room by dropping the oldest stored item (counted). Never waits, and a
    /// pause does not hold it back: the water marks only report.
    DropOldest,
    /// Drop the new item (counted); the send still reports success as
    /// [`Pushed::DroppedNewest`]. Never waits, and a pause does not hold it back:
    /// the water marks only report.
    DropNewest,
    /// Wait for room, and while the channel is paused.
    /// [`try_send`](Backpressure::try_send) never waits and returns
    /// [`SendError::Full`] or [`SendError::Paused`].
    #[default]
    Block,
    /// Wait for room at most this long, then fail with [`SendError::Timeout`]. The
    /// time covers the whole send, a pause included. Blocking sends only (`std`):
    /// [`send_async`](Backpressure::send_async) has no timer and waits like
    /// [`Block`](Strategy::Block); wrap it in your runtime's timeout.
    BlockWithTimeout(Duration),
}

impl Strategy {
    /// The ring policy behind the strategy: waiting is done here, not in the ring.
    const fn ring_policy(self) -> OverflowPolicy {
        match self {
            Self::DropOldest => OverflowPolicy::DropOldest,
            Self::DropNewest => OverflowPolicy::DropNewest,
            Self::None | Self::Block | Self::BlockWithTimeout(_) => OverflowPolicy::Reject,
        }
    }

    /// Whether a full ring (or a pause) makes a send wait rather than fail or drop.
    const fn waits_for_room(self) -> bool {
        matches!(self, Self::Block | Self::BlockWithTimeout(_))
    }

    /// Whether a pause holds a send back (to wait, or to be refused): all but the
    /// dropping strategies, which drop as when full.
    const fn held_back_by_pause(self) -> bool {
        !matches!(self, Self::DropOldest | Self::DropNewest)
    }
}

/// High and low water marks, as fractions of the capacity in force:
/// `0 <= low < high <= 1`.
///
/// The channel pauses when the fill reaches `ceil(high × capacity)` items and resumes
/// when it falls to `floor(low × capacity)`, so the two counts differ for every
/// capacity and the hysteresis never collapses. A pause makes the sends of the
/// waiting strategies wait and those of [`Strategy::None`] fail; the dropping
/// strategies go on (the pause is still reported). No send waits unless its strategy
/// waits.
///
/// # Examples
///
/// ```
/// use membound::backpressure::WaterMarks;
///
/// let marks = WaterMarks::new(0.25, 0.75)?;
/// assert_eq!((marks.low(), marks.high()), (0.25, 0.75));
/// assert!(WaterMarks::new(0.8, 0.5).is_err());
/// assert!(WaterMarks::new(0.2, f64::NAN).is_err());
/// # Ok::<(), membound::backpressure::ConfigError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(try_from = "RawWaterMarks"))]
pub struct WaterMarks {
    low: f64,
    high: f64,
}

/// `WaterMarks` as read from a file, validated by `TryFrom`.
#[cfg(feature = "serde")]
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWaterMarks {
    low: f64,
    high: f64,
}

#[cfg(feature = "serde")]
impl TryFrom<RawWaterMarks> for WaterMarks {
    type Error = ConfigError;
    fn try_from(raw: RawWaterMarks) -> Result<Self, ConfigError> {
        Self::new(raw.low, raw.high)
    }
}

impl WaterMarks {
    /// Validated water marks.
    ///
    /// # Errors
    ///
    /// [`ConfigError::WaterMarks`] unless `0 <= low < high <= 1` (NaN fails).
    pub fn new(low: f64, high: f64) -> Result<Self, ConfigError> {
        // Written so that NaN fails every comparison and so the check.
        if low >= 0.0 && low < high && high <= 1.0 {
            Ok(Self { low, high })
        } else {
            Err(ConfigError::WaterMarks { low, high })
        }
    }

    /// The resume mark.
    pub const fn low(&self) -> f64 {
        self.low
    }

    /// The pause mark.
    pub const fn high(&self) -> f64 {
        self.high
    }

    /// The fill at which the channel pauses: at least 1.
    fn high_count(&self, capacity: usize) -> usize {
        let count = self.high * capacity as f64;
        // ceil without std; the product is in [0, capacity].
        let floor = count as usize;
        let ceil = if (floor as f64) < count {
            floor + 1
        } else {
            floor
        };
        ceil.clamp(1, capacity)
    }

    /// The fill at which a paused channel resumes: below `high_count`.
    fn low_count(&self, capacity: usize) -> usize {
        // floor(low × cap) < ceil(high × cap) because low < high.
        ((self.low * capacity as f64) as usize).min(self.high_count(capacity) - 1)
    }
}

/// Configuration of a [`Backpressure`] channel.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use membound::backpressure::{BackpressureConfig, Strategy, WaterMarks};
///
/// let config = BackpressureConfig::new(1024)
///     .with_strategy(Strategy::BlockWithTimeout(Duration::from_millis(50)))
///     .with_water_marks(WaterMarks::new(0.5, 0.9)?);
/// assert!(config.validate().is_ok());
/// # Ok::<(), membound::backpressure::ConfigError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
#[non_exhaustive]
pub struct BackpressureConfig {
    /// Items the channel holds: at least 1.
    pub capacity: usize,
    /// Slots reserved up front so [`SoftCapacity::set_capacity`] can raise the
    /// capacity later; `0` means "the capacity".
    pub max_capacity: usize,
    /// What a send does when the ring is full.
    pub strategy: Strategy,
    /// Pause and resume marks (see [`WaterMarks`] for which strategies a pause holds
    /// back); `None` disables pausing.
    pub water_marks: Option<WaterMarks>,
}

impl Default for BackpressureConfig {
    /// 1024 items, [`Strategy::Block`], pause at 90 % and resume at 50 %.
    fn default() -> Self {
        Self {
            capacity: 1024,
            max_capacity: 0,
            strategy: Strategy::Block,
            water_marks: Some(WaterMarks {
                low: 0.5,
                high: 0.9,
            }),
        }
    }
}

impl BackpressureConfig {
    /// `capacity` items, otherwise the [`Default`].
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            ..Self::default()
        }
    }

    /// Sets the strategy.
    #[must_use]
    pub fn with_strategy(mut self, strategy: Strategy) -> Self {
        self.strategy = strategy;
        self
    }

    /// Sets the water marks.
    #[must_use]
    pub fn with_water_marks(mut self, marks: WaterMarks) -> Self {
        self.water_marks = Some(marks);
        self
    }

    /// Disables pausing: only the strategy acts, when the ring is full.
    #[must_use]
    pub fn without_water_marks(mut self) -> Self {
        self.water_marks = None;
        self
    }

    /// Reserves `max` slots so the capacity can later be raised up to `max`.
    #[must_use]
    pub fn with_max_capacity(mut self, max: usize) -> Self {
        self.max_capacity = max;
        self
    }

    fn ring_config(&self) -> RingConfig {
        let ring = RingConfig::new(self.capacity).with_policy(self.strategy.ring_policy());
        if self.max_capacity == 0 {
            ring
        } else {
            ring.with_max_capacity(self.max_capacity)
        }
    }

    /// Checks the configuration without building anything.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Ring`] for a capacity the ring refuses (0, or above the
    /// reservation), [`ConfigError::WaterMarks`] for marks outside
    /// `0 <= low < high <= 1` (possible when the fields were set directly).
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(marks) = self.water_marks {
            WaterMarks::new(marks.low, marks.high)?;
        }
        self.ring_config().validate().map_err(ConfigError::Ring)
    }
}

/// Why a [`BackpressureConfig`] was refused.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub enum ConfigError {
    /// The ring's configuration is invalid (capacity 0, above the reservation, ...).
    Ring(RingConfigError),
    /// Water marks outside `0 <= low < high <= 1`.
    WaterMarks {
        /// The low mark given.
        low: f64,
        /// The high mark given.
        high: f64,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ring(e) => write!(f, "backpressure ring: {e}"),
            Self::WaterMarks { low, high } => write!(
                f,
                "water marks must satisfy 0 <= low < high <= 1, got low {low} and high {high}"
            ),
        }
    }
}

impl core::error::Error for ConfigError {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            Self::Ring(e) => Some(e),
            Self::WaterMarks { .. } => None,
        }
    }
}

/// A send that did not store its item; the item comes back inside.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub enum SendError<T> {
    /// The ring was full and the strategy does not wait ([`Strategy::None`], or any
    /// strategy through [`try_send`](Backpressure::try_send)).
    Full(T),
    /// The channel is paused (the fill reached the high mark and has not fallen to
    /// the low mark yet). [`try_send`](Backpressure::try_send) returns it under the
    /// waiting strategies (their other sends wait instead), and every send under
    /// [`Strategy::None`]; the dropping strategies are not held back by a pause.
    Paused(T),
    /// The wait ran out: [`Strategy::BlockWithTimeout`] or
    /// [`send_timeout`](Backpressure::send_timeout).
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
    /// of the waiting strategies wait, those of [`Strategy::None`] are refused, those
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
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct BackpressureMetrics {
    /// Items stored by sends.
    pub sent: u64,
    /// Items taken by receives.
    pub received: u64,
    /// Stored items dropped to make room ([`Strategy::DropOldest`]).
    pub dropped_oldest: u64,
    /// New items dropped because the ring was full ([`Strategy::DropNewest`]).
    pub dropped_newest: u64,
    /// Sends refused with [`SendError::Full`].
    pub rejected_full: u64,
    /// Sends refused with [`SendError::Paused`]: `try_send` calls, and any send
    /// under [`Strategy::None`].
    pub rejected_paused: u64,
    /// Sends that could not proceed at once and waited (paused, or full under a
    /// blocking strategy).
    pub blocked: u64,
    /// Total time those sends spent waiting, on the channel's clock.
    pub blocked_time: Duration,
    /// Sends that gave up at their deadline.
    pub timeouts: u64,
    /// Transitions to [`FlowState::Paused`] (the high mark was reached).
    pub high_water_hits: u64,
    /// Transitions back to [`FlowState::Flowing`] (the fill fell to the low mark).
    pub low_water_hits: u64,
    /// Whether the channel is paused now.
    pub paused: bool,
    /// Items stored now.
    pub len: u64,
    /// The capacity in force.
    pub capacity: u64,
    /// Producers sleeping now, waiting to send.
    pub producers_waiting: u64,
}

impl crate::metrics::Metrics for BackpressureMetrics {
    const KIND: &'static str = "backpressure";

    fn visit(&self, out: &mut dyn crate::metrics::Visitor) {
        use crate::metrics::Metric;
        let BackpressureMetrics {
            sent,
            received,
            dropped_oldest,
            dropped_newest,
            rejected_full,
            rejected_paused,
            blocked,
            blocked_time,
            timeouts,
            high_water_hits,
            low_water_hits,
            paused,
            len,
            capacity,
            producers_waiting,
        } = *self;
        let dropped =
            |n: u64| Metric::counter("dropped", "Items the strategy dropped, by cause.", n);
        let refused = |n: u64| {
            Metric::counter(
                "refused",
                "Sends refused with the item handed back, by cause.",
                n,
            )
        };
        #[rustfmt::skip]
        let metrics = [
            Metric::counter("sent", "Items stored by sends.", sent),
            Metric::counter("received", "Items taken by receives.", received),
            Metric::counter("blocked", "Sends that waited (paused, or full under a blocking strategy).", blocked),
            Metric::counter("timeouts", "Sends that gave up at their deadline.", timeouts),
            Metric::counter("high_water_hits", "Transitions to paused: the fill reached the high mark.", high_water_hits),
            Metric::counter("low_water_hits", "Transitions back to flowing: the fill fell to the low mark.", low_water_hits),
            Metric::gauge("paused", "1 while producers are paused by the water marks.", paused),
            Metric::gauge("len", "Items stored now.", len),
            Metric::gauge("capacity", "The capacity in force.", capacity),
            Metric::gauge("producers_waiting", "Sends sleeping now.", producers_waiting),
            dropped(dropped_oldest).with_labels(&[("cause", "drop_oldest")]),
            dropped(dropped_newest).with_labels(&[("cause", "drop_newest")]),
            refused(rejected_full).with_labels(&[("cause", "full")]),
            refused(rejected_paused).with_labels(&[("cause", "paused")]),
            Metric::counter("blocked_time", "Total time sends spent waiting.", blocked_time).seconds(),
        ];
        metrics.into_iter().for_each(|m| out.metric(m));
    }
}

type TransitionHook = Box<dyn Fn(Transition) + Send + Sync>;

/// A bounded channel with an overflow [`Strategy`] and [`WaterMarks`] that pause
/// producers. See the [module docs](self).
///
/// # Examples
///
/// ```
/// use membound::backpressure::{
///     Backpressure, BackpressureConfig, SendError, Strategy, WaterMarks,
/// };
///
/// let channel = Backpressure::new(
///     BackpressureConfig::new(4)
///         .with_strategy(Strategy::Block)
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
    /// The storage. Its policy is the strategy's dropping part; waiting for room is
    /// done here, on `producers`.
    ring: Ring<T>,
    strategy: Strategy,
    marks: Option<WaterMarks>,
    /// The flow state: set by the producer that saw the fill reach the high mark,
    /// cleared by the consumer (or producer) that saw it at the low mark. Both by
    /// `SeqCst` CAS (module docs).
    paused: AtomicBool,
    /// Producers waiting for the pause to end or for room. Notified by receives,
    /// by resuming and by closing.
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

/// What one send attempt achieved.
enum Attempt<T> {
    /// Finished: stored, dropped per the strategy, or refused for good.
    Done(Result<Pushed, SendError<T>>),
    /// Must wait: the channel is paused.
    Paused(T),
    /// Must wait: the ring is full and the strategy waits for room.
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
        let ring = Ring::with_config(config.ring_config()).map_err(ConfigError::Ring)?;
        Ok(Self {
            ring,
            strategy: config.strategy,
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
    /// [`SendError::Paused`] while paused, unless the strategy drops,
    /// [`SendError::Full`] when the ring is full and the strategy neither drops nor
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
        // The dropping strategies are not held back by a pause (the marks still
        // report its transitions, in `after_send`); `None` is refused, not made to
        // wait.
        if self.strategy.held_back_by_pause()
            && self.marks.is_some()
            && self.paused.load(Ordering::Acquire)
        {
            // A closed channel answers Closed even while paused.
            if self.ring.is_closed() {
                return Attempt::Done(Err(SendError::Closed(item)));
            }
            if !self.strategy.waits_for_room() {
                return Attempt::Done(Err(self.refused_paused(item)));
            }
            return Attempt::Paused(item);
        }
        // The dropping strategies are the ring's policies; the others refuse here
        // with `try_push`, which counts nothing (the refusal is counted below).
        let pushed = match self.strategy {
            Strategy::DropOldest | Strategy::DropNewest => self.ring.push(item),
            _ => self.ring.try_push(item).map(|()| Pushed::Stored),
        };
        match pushed {
            Ok(pushed) => {
                if pushed != Pushed::DroppedNewest {
                    self.after_send();
                }
                Attempt::Done(Ok(pushed))
            }
            Err(PushError::Full(item)) if self.strategy.waits_for_room() => Attempt::Full(item),
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
    /// low mark, or wakes one producer waiting for room.
    #[inline]
    fn after_recv(&self) {
        if let Some(marks) = self.marks {
            // Under loom SeqCst loads are only Acquire; its fences are exact (see
            // `ring::wait`). In production the pop's SeqCst CAS and this SeqCst load
            // are enough (module docs).
            #[cfg(loom)]
            fence(Ordering::SeqCst);
            if self.paused.load(Ordering::SeqCst) {
                // Every waiting producer fails on the pause, so waking one would
                // only make it sleep again; the resume, if it comes, wakes them all.
                // A producer that registered after a resume we read as "paused"
                // sees our pop on its re-check: the resume's CAS follows our load in
                // the total order, and its registration follows the resume.
                self.try_resume(marks);
                return;
            }
        }
        // Producers waiting for room: the pop's SeqCst CAS precedes this check, as
        // the wait protocol requires.
        self.producers.notify_one();
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

    /// Waits for the oldest item (`core::task`, any executor). Cancel-safe.
    ///
    /// # Errors
    ///
    /// [`Closed`] once the channel is closed and drained.
    pub async fn recv_async(&self) -> Result<T, Closed> {
        let item = self.ring.pop_async().await?;
        self.after_recv();
        Ok(item)
    }

    /// A future that sends `item`; under the waiting strategies it waits while the
    /// channel is paused or the ring full, under the others it is ready at once
    /// with [`try_send`](Self::try_send)'s answer. No allocation, no runtime
    /// dependency; dropping it cancels the wait without losing a wake-up another
    /// producer needed (the item is dropped with the future).
    ///
    /// [`Strategy::BlockWithTimeout`]'s timeout does not apply: there is no timer in
    /// `core`. Wrap the future in your runtime's timeout.
    ///
    /// # Examples
    ///
    /// ```
    /// # fn block_on<F: core::future::Future>(f: F) -> F::Output {
    /// #     let mut f = core::pin::pin!(f);
    /// #     let mut cx = core::task::Context::from_waker(core::task::Waker::noop());
    /// #     loop { if let core::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) { return v } }
    /// # }
    /// use membound::backpressure::{Backpressure, BackpressureConfig};
    /// use membound::ring::Pushed;
    ///
    /// let channel = Backpressure::new(BackpressureConfig::new(8))?;
    /// block_on(async {
    ///     assert_eq!(channel.send_async("hi").await?, Pushed::Stored);
    ///     assert_eq!(channel.recv_async().await?, "hi");
    ///     Ok::<(), Box<dyn std::error::Error>>(())
    /// })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn send_async(&self, item: T) -> SendFuture<'_, T> {
        SendFuture {
            channel: self,
            item: Some(item),
            waiter: Waiter::new(),
            blocked_since: None,
        }
    }

    /// Closes the channel: sends fail with [`SendError::Closed`] from now on, and
    /// every waiting producer wakes with its item handed back. Receivers drain what
    /// is stored, then get [`Closed`]. Returns `false` if it was already closed.
    pub fn close(&self) -> bool {
        let closed_now = self.ring.close();
        // The ring's close is a SeqCst RMW on its tail; waiting producers re-check
        // `is_closed` after their registration fence.
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

    /// The strategy.
    pub fn strategy(&self) -> Strategy {
        self.strategy
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
            producers_waiting: self.producers.len(),
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

#[cfg(feature = "std")]
impl<T> Backpressure<T> {
    /// Sends. Under the waiting strategies it waits while the channel is paused or
    /// the ring full, under [`Strategy::BlockWithTimeout`]`(d)` for at most `d`;
    /// under the others it never waits, paused or not.
    ///
    /// # Errors
    ///
    /// [`SendError::Full`] under [`Strategy::None`] when the ring is full, and
    /// [`SendError::Paused`] when the channel is paused,
    /// [`SendError::Timeout`] when a `BlockWithTimeout` wait ran out,
    /// [`SendError::Closed`] once closed (also while waiting); each hands the item
    /// back.
    ///
    /// # Examples
    ///
    /// ```
    /// use membound::backpressure::{Backpressure, BackpressureConfig, WaterMarks};
    ///
    /// let channel = Backpressure::new(
    ///     BackpressureConfig::new(8).with_water_marks(WaterMarks::new(0.25, 0.5)?),
    /// )?;
    /// std::thread::scope(|s| {
    ///     s.spawn(|| {
    ///         for i in 0..1000 {
    ///             channel.send(i).unwrap(); // pauses at 4 items until drained to 2
    ///         }
    ///         channel.close();
    ///     });
    ///     let mut sum = 0;
    ///     while let Ok(i) = channel.recv() {
    ///         sum += i;
    ///     }
    ///     assert_eq!(sum, 499_500);
    /// });
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn send(&self, item: T) -> Result<Pushed, SendError<T>> {
        let deadline = match self.strategy {
            Strategy::BlockWithTimeout(timeout) => std::time::Instant::now().checked_add(timeout),
            _ => None,
        };
        self.send_until(item, deadline)
    }

    /// Sends, waiting at most `timeout` (in place of a `BlockWithTimeout`'s own)
    /// while the channel is paused or full, under the waiting strategies; under the
    /// others it never waits, as [`send`](Self::send).
    ///
    /// # Errors
    ///
    /// As [`send`](Self::send), with [`SendError::Timeout`] at the deadline.
    pub fn send_timeout(&self, item: T, timeout: Duration) -> Result<Pushed, SendError<T>> {
        self.send_until(item, std::time::Instant::now().checked_add(timeout))
    }

    fn send_until(
        &self,
        item: T,
        deadline: Option<std::time::Instant>,
    ) -> Result<Pushed, SendError<T>> {
        let item = match self.attempt(item) {
            Attempt::Done(done) => return done,
            Attempt::Paused(item) | Attempt::Full(item) => item,
        };
        self.blocked.fetch_add(1, Ordering::Relaxed);
        let since = self.now();
        let outcome =
            crate::ring::wait::block_on(&self.producers, deadline, item, |item| {
                match self.attempt(item) {
                    Attempt::Done(done) => Ok(done),
                    Attempt::Paused(item) | Attempt::Full(item) => Err(item),
                }
            });
        self.account_blocked(since);
        match outcome {
            Ok(done) => done,
            Err(item) => {
                self.timeouts.fetch_add(1, Ordering::Relaxed);
                Err(SendError::Timeout(item))
            }
        }
    }

    /// Takes the oldest item, parking the thread while the channel is empty.
    ///
    /// # Errors
    ///
    /// [`Closed`] once closed and drained.
    pub fn recv(&self) -> Result<T, Closed> {
        let item = self.ring.pop_wait()?;
        self.after_recv();
        Ok(item)
    }

    /// Takes the oldest item, waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`PopTimeoutError`](crate::ring::PopTimeoutError) on timeout or once closed
    /// and drained.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<T, crate::ring::PopTimeoutError> {
        let item = self.ring.pop_timeout(timeout)?;
        self.after_recv();
        Ok(item)
    }
}

impl<T> SoftCapacity for Backpressure<T> {
    fn capacity(&self) -> usize {
        self.ring.capacity()
    }

    fn max_capacity(&self) -> usize {
        self.ring.max_capacity()
    }

    /// Sets the ring's capacity (see [`Ring::set_capacity`]); the water marks apply
    /// to the new capacity at once: a raise can end a pause, a cut can start one at
    /// the next send.
    fn set_capacity(&self, capacity: usize) -> Result<(), CapacityError> {
        self.ring.set_capacity(capacity)?;
        // More room, or items evicted (DropOldest): room for waiting producers.
        self.producers.notify_all();
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
            .field("strategy", &self.strategy)
            .field("water_marks", &self.marks)
            .field("paused", &self.is_paused())
            .field("closed", &self.is_closed())
            .finish_non_exhaustive()
    }
}

/// Future of [`Backpressure::send_async`].
#[must_use = "futures do nothing unless polled"]
pub struct SendFuture<'a, T> {
    channel: &'a Backpressure<T>,
    /// The item until it is sent or handed back. Not structurally pinned.
    item: Option<T>,
    /// Structurally pinned: linked into `channel.producers` while pending.
    waiter: Waiter,
    /// The clock's time at the first `Pending`, to account blocked time.
    blocked_since: Option<Option<u64>>,
}

impl<T> Future for SendFuture<'_, T> {
    type Output = Result<Pushed, SendError<T>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // SAFETY: `waiter` is the only structurally pinned field and is only used
        // through the `Pin` built below; `item` and `blocked_since` are not pinned
        // and move freely; nothing is moved out of `self`.
        let this = unsafe { self.get_unchecked_mut() };
        let channel = this.channel;
        // SAFETY: see above; `this` is never moved.
        let waiter = unsafe { Pin::new_unchecked(&this.waiter) };
        let item = &mut this.item;
        let poll = poll_waiting(&channel.producers, waiter, cx, || {
            let pending = item.take().expect("SendFuture polled after it completed");
            match channel.attempt(pending) {
                Attempt::Done(done) => Some(done),
                Attempt::Paused(back) | Attempt::Full(back) => {
                    *item = Some(back);
                    None
                }
            }
        });
        match (&poll, this.blocked_since) {
            (Poll::Pending, None) => {
                channel.blocked.fetch_add(1, Ordering::Relaxed);
                this.blocked_since = Some(channel.now());
            }
            (Poll::Ready(_), Some(since)) => channel.account_blocked(since),
            _ => {}
        }
        poll
    }
}

impl<T> Drop for SendFuture<'_, T> {
    fn drop(&mut self) {
        cancel_waiter(&self.channel.producers, &self.waiter);
    }
}

impl<T> fmt::Debug for SendFuture<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SendFuture")
            .field("pending", &self.item.is_some())
            .finish_non_exhaustive()
    }
}
