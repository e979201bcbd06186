//! The one vocabulary of "what to do when full" ([`OverflowPolicy`]) and of "how long
//! to wait" ([`Wait`]), shared by every bounded structure.
//!
//! Each structure documents which policies it supports; one that supports only some
//! refuses the rest at construction with
//! [`ConfigError::UnsupportedPolicy`](crate::ConfigError::UnsupportedPolicy).
//!
//! | structure | policies |
//! |---|---|
//! | [`Ring`](crate::ring::RingCore) | all |
//! | [`spsc`](crate::ring::spsc) channel | `Reject`, `DropOldest` |
//! | [`Backpressure`](crate::backpressure::Backpressure) | all |
//!
//! Growth is not an overflow policy but a capacity setting: a ring configured with
//! [`RingConfig::with_growth`](crate::ring::RingConfig::with_growth) doubles its
//! capacity up to a maximum *before* its policy applies.

/// What a bounded structure does with a new item when it is full.
///
/// The enum is `#[non_exhaustive]`: policies may join it without breaking code that
/// matches on it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub enum OverflowPolicy {
    /// Evict the oldest item to make room for the new one (the default, as in the
    /// original). The evicted item is dropped and counted (for a ring in
    /// [`RingMetrics::dropped_oldest`](crate::ring::RingMetrics::dropped_oldest)).
    #[default]
    DropOldest,
    /// Discard the new item, keep what is stored. Counted (for a ring in
    /// [`RingMetrics::dropped_newest`](crate::ring::RingMetrics::dropped_newest)).
    DropNewest,
    /// Refuse the new item and hand it back (for a ring as
    /// [`PushError::Full`](crate::ring::PushError::Full), counted in
    /// [`RingMetrics::rejected`](crate::ring::RingMetrics::rejected)).
    Reject,
    /// Wait for room, as [`Wait::Forever`] (for a ring as
    /// [`push_wait`](crate::ring::RingCore::push_wait) does, parking the thread under
    /// `std`; without `std`, spinning with [`Spin`](crate::ring::Spin)). Waits are
    /// counted (for a ring in
    /// [`RingMetrics::push_waits`](crate::ring::RingMetrics::push_waits)).
    Block,
    /// Wait for room up to the given time (`std` only), as [`Wait::Timeout`], then
    /// hand the item back (for a ring as [`PushError::Full`](crate::ring::PushError::Full),
    /// counted in [`RingMetrics::timeouts`](crate::ring::RingMetrics::timeouts)).
    #[cfg(feature = "std")]
    BlockTimeout(core::time::Duration),
}

impl OverflowPolicy {
    /// Whether items beyond a lowered capacity are evicted at once (`DropOldest`)
    /// rather than kept until consumers drain them.
    pub(crate) const fn evicts_excess(self) -> bool {
        matches!(self, Self::DropOldest)
    }

    /// Whether a full structure makes the new item wait for room (`Block`,
    /// `BlockTimeout`) rather than be dropped or refused.
    #[cfg(feature = "alloc")]
    pub(crate) const fn waits(self) -> bool {
        match self {
            Self::Block => true,
            #[cfg(feature = "std")]
            Self::BlockTimeout(_) => true,
            _ => false,
        }
    }

    /// How long a push under this policy waits for room: `Block` forever,
    /// `BlockTimeout` its time; the other policies do not wait (`None`).
    #[cfg(feature = "std")]
    pub(crate) const fn wait(self) -> Option<Wait> {
        match self {
            Self::Block => Some(Wait::Forever),
            Self::BlockTimeout(timeout) => Some(Wait::Timeout(timeout)),
            _ => None,
        }
    }
}

/// A user's overflow policy: asked, when a structure is full, what to do with the
/// item that does not fit, given the item itself (its priority, its class, whatever
/// the caller can read off it). The answer is one of the built-in policies, so a rule
/// extends the vocabulary rather than adding a second one.
///
/// [`OverflowPolicy`] is itself a rule (the same answer for every item), and so is
/// any `Fn(&T) -> OverflowPolicy`. A structure's plain `push` applies its configured
/// policy without consulting a rule (its fast path is untouched); `push_with`
/// ([`RingCore::push_with`](crate::ring::RingCore::push_with)) consults the rule,
/// and only when the structure is full.
///
/// # Examples
///
/// Low-priority items are dropped when the ring is full; the others evict the oldest.
///
/// ```
/// use membound::policy::{OverflowPolicy, OverflowRule};
/// use membound::ring::{Pushed, Ring, RingConfig};
///
/// #[derive(Debug)]
/// struct Job { priority: u8 }
///
/// let by_priority = |job: &Job| match job.priority {
///     0 => OverflowPolicy::DropNewest,
///     _ => OverflowPolicy::DropOldest,
/// };
/// let ring = Ring::with_config(RingConfig::new(2).with_policy(OverflowPolicy::Reject))?;
/// ring.push_with(Job { priority: 1 }, &by_priority)?;
/// ring.push_with(Job { priority: 1 }, &by_priority)?;
/// assert_eq!(ring.push_with(Job { priority: 0 }, &by_priority)?, Pushed::DroppedNewest);
/// assert_eq!(ring.push_with(Job { priority: 2 }, &by_priority)?, Pushed::DroppedOldest);
/// assert_eq!(by_priority.on_full(&Job { priority: 0 }), OverflowPolicy::DropNewest);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub trait OverflowRule<T: ?Sized> {
    /// The policy for `item`, which found the structure full.
    fn on_full(&self, item: &T) -> OverflowPolicy;
}

/// The built-in policy, whatever the item.
impl<T: ?Sized> OverflowRule<T> for OverflowPolicy {
    #[inline]
    fn on_full(&self, _item: &T) -> OverflowPolicy {
        *self
    }
}

impl<T: ?Sized, F: Fn(&T) -> OverflowPolicy> OverflowRule<T> for F {
    #[inline]
    fn on_full(&self, item: &T) -> OverflowPolicy {
        self(item)
    }
}

/// How long a blocking call waits: the argument of every blocking push and pop
/// ([`RingCore::push_wait`](crate::ring::RingCore::push_wait),
/// [`RingCore::pop_wait`](crate::ring::RingCore::pop_wait), the
/// [`spsc`](crate::ring::spsc) ends' `push_wait` and `pop_wait`,
/// [`Backpressure::send_wait`](crate::backpressure::Backpressure::send_wait) and
/// [`Backpressure::recv_wait`](crate::backpressure::Backpressure::recv_wait)).
///
/// Futures (`*_async`) and [`WaitStrategy`](crate::ring::WaitStrategy) waits (the
/// `no_std` way, `*_wait_with`) take no `Wait`: they wait until done or closed; put a
/// future under your runtime's timeout.
///
/// A deadline is an [`Instant`](std::time::Instant) because a parked thread wakes on
/// the OS clock: the crate's time rule (see the crate docs) reads time from a
/// [`Clock`](crate::clock::Clock) for everything else.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use membound::policy::Wait;
/// use membound::ring::{PopWaitError, Ring};
///
/// let ring = Ring::<u8>::new(1)?;
/// assert_eq!(
///     ring.pop_wait(Wait::Timeout(Duration::from_millis(1))),
///     Err(PopWaitError::Timeout)
/// );
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Wait {
    /// Until the call succeeds or the structure is closed.
    #[default]
    Forever,
    /// At most this long from the call (`std`). A timeout too large for an
    /// `Instant` waits forever.
    #[cfg(feature = "std")]
    Timeout(core::time::Duration),
    /// Until this instant (`std`).
    #[cfg(feature = "std")]
    Deadline(std::time::Instant),
}

impl Wait {
    /// The instant a parked thread gives up at; `None` waits forever. Reads the OS
    /// clock for a `Timeout`: a parking deadline, which the time rule allows.
    #[cfg(feature = "std")]
    pub(crate) fn deadline(self) -> Option<std::time::Instant> {
        match self {
            Self::Forever => None,
            Self::Timeout(timeout) => std::time::Instant::now().checked_add(timeout),
            Self::Deadline(deadline) => Some(deadline),
        }
    }
}
