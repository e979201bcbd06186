//! The one vocabulary of "what to do when full", shared by every bounded structure.
//!
//! Each structure documents which policies it supports; one that supports only some
//! refuses the rest at construction with
//! [`ConfigError::UnsupportedPolicy`](crate::ConfigError::UnsupportedPolicy).

/// What [`push`](crate::ring::RingCore::push) does when the ring is full.
///
/// The enum is `#[non_exhaustive]`: waiting and growing policies join it without
/// breaking code that matches on it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub enum OverflowPolicy {
    /// Evict the oldest item to make room for the new one (the default, as in the
    /// original). The evicted item is dropped and counted in
    /// [`RingMetrics::dropped_oldest`](crate::ring::RingMetrics::dropped_oldest).
    #[default]
    DropOldest,
    /// Discard the new item, keep what is stored. Counted in
    /// [`RingMetrics::dropped_newest`](crate::ring::RingMetrics::dropped_newest).
    DropNewest,
    /// Refuse the new item and hand it back as [`PushError::Full`](crate::ring::PushError::Full).
    /// Counted in [`RingMetrics::rejected`](crate::ring::RingMetrics::rejected).
    Reject,
    /// Wait for room, as [`push_wait`](crate::ring::RingCore::push_wait) does (parking the
    /// thread under `std`; without `std`, spinning with [`Spin`](crate::ring::Spin)). Waits
    /// are counted in [`RingMetrics::push_waits`](crate::ring::RingMetrics::push_waits).
    Block,
    /// Wait for room up to the given time (`std` only), then hand the item back as
    /// [`PushError::Full`](crate::ring::PushError::Full), counted in
    /// [`RingMetrics::timeouts`](crate::ring::RingMetrics::timeouts).
    #[cfg(feature = "std")]
    BlockTimeout(core::time::Duration),
    /// Grow instead of dropping: when the ring is full, double its capacity, up to
    /// `max`; at `max`, do what `then` says.
    ///
    /// Growth activates slots reserved at construction (a ring with this policy
    /// allocates room for `max` items up front and uses `capacity` of them): nothing
    /// is copied and nothing is allocated on the push path. The memory cost is the
    /// reservation, `max` slots of `size_of::<T>() + 8` bytes each (rounded to `T`'s
    /// alignment), from the start. Counted in
    /// [`RingMetrics::grows`](crate::ring::RingMetrics::grows).
    Grow {
        /// The most items the ring may hold, `>= capacity`.
        max: usize,
        /// What a push does once the ring is full at `max`.
        then: Fallback,
    },
}

impl OverflowPolicy {
    /// Whether items beyond a lowered capacity are evicted at once (`DropOldest`, or
    /// growth that falls back to it) rather than kept until consumers drain them.
    pub(crate) const fn evicts_excess(self) -> bool {
        matches!(
            self,
            Self::DropOldest
                | Self::Grow {
                    then: Fallback::DropOldest,
                    ..
                }
        )
    }
}

/// What a [`Grow`](OverflowPolicy::Grow) ring does once it is full at its maximum.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub enum Fallback {
    /// As [`OverflowPolicy::DropOldest`].
    #[default]
    DropOldest,
    /// As [`OverflowPolicy::DropNewest`].
    DropNewest,
    /// As [`OverflowPolicy::Reject`].
    Reject,
}
