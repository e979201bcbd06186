//! The ring configuration.

use crate::policy::OverflowPolicy;
use crate::ConfigError;

/// What a successful [`push`](super::RingCore::push) did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Pushed {
    /// The item was stored and nothing was lost.
    Stored,
    /// The item was stored after the oldest item was evicted and dropped.
    DroppedOldest,
    /// The ring was full and the new item was dropped, as the policy asks.
    DroppedNewest,
    /// The ring was full, grew (a ring configured
    /// [`with_growth`](RingConfig::with_growth)), and stored the item.
    Grew,
}

/// The largest capacity a ring accepts: 2^32 slots on 64-bit targets, 2^30 on
/// 32-bit ones (2^14 on 16-bit ones).
///
/// Positions are 64-bit and encode a lap number above the slot index; this bound
/// leaves at least 2^30 laps' worth of positions (2^62 items), so a ring pushing a
/// billion items a second runs for over a century before its positions wrap.
pub const MAX_CAPACITY: usize = if usize::BITS >= 64 {
    // Through u64 so that 32-bit targets never evaluate an overflowing shift.
    (1u64 << 32) as usize
} else {
    1 << (usize::BITS - 2)
};

/// Configuration of a heap-backed [`Ring`](super::Ring).
///
/// # Examples
///
/// ```
/// use membound::ring::{Ring, RingConfig};
/// use membound::OverflowPolicy;
///
/// let ring: Ring<u32> = Ring::with_config(
///     RingConfig::new(64).with_policy(OverflowPolicy::Reject),
/// )?;
/// assert_eq!(ring.capacity(), 64);
/// assert_eq!(ring.policy(), OverflowPolicy::Reject);
///
/// // Growth is a capacity setting: double up to 256, then the policy applies.
/// let growing: Ring<u32> = Ring::with_config(RingConfig::new(64).with_growth(256))?;
/// assert_eq!((growing.capacity(), growing.capacity_limit()), (64, 256));
/// # Ok::<(), membound::ConfigError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
#[non_exhaustive]
pub struct RingConfig {
    /// Number of items the ring holds, at least 1. Not rounded.
    pub capacity: usize,
    /// What `push` does when the ring is full (at its growth maximum, if it grows).
    /// A ring supports every [`OverflowPolicy`].
    pub policy: OverflowPolicy,
    /// Slots to reserve beyond `capacity`, so that
    /// [`set_capacity`](super::RingCore::set_capacity) can raise the capacity up to
    /// this at runtime. `None` reserves exactly `capacity` (or `growth`). Reserved
    /// slots cost memory from the start: `size_of::<T>() + 8` bytes each, rounded to
    /// `T`'s alignment.
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub max_capacity: Option<usize>,
    /// Grow instead of applying the policy: when the ring is full, double its
    /// capacity, up to this many items (`>= capacity`); at this maximum, the policy
    /// applies. `None`: the ring does not grow.
    ///
    /// Growth activates slots reserved at construction (a growing ring allocates room
    /// for the maximum up front and uses `capacity` of them): nothing is copied and
    /// nothing is allocated on the push path. The memory cost is the reservation,
    /// from the start. Counted in
    /// [`RingMetrics::grows`](super::RingMetrics::grows).
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub growth: Option<usize>,
}

impl RingConfig {
    /// A configuration with `capacity` and the default policy (`DropOldest`).
    pub const fn new(capacity: usize) -> Self {
        Self {
            capacity,
            policy: OverflowPolicy::DropOldest,
            max_capacity: None,
            growth: None,
        }
    }

    /// The same configuration growing (doubling its capacity when full) up to `max`
    /// items before its policy applies; see [`growth`](Self::growth).
    #[must_use]
    pub const fn with_growth(mut self, max: usize) -> Self {
        self.growth = Some(max);
        self
    }

    /// The same configuration reserving room for `max` items, the most
    /// [`set_capacity`](super::RingCore::set_capacity) can raise the capacity to.
    #[must_use]
    pub const fn with_max_capacity(mut self, max: usize) -> Self {
        self.max_capacity = Some(max);
        self
    }

    /// The number of slots a ring built from this configuration reserves: the
    /// largest of `capacity`, `max_capacity` and `growth`.
    pub const fn reserved(&self) -> usize {
        let mut reserved = self.capacity;
        if let Some(max) = self.max_capacity {
            if max > reserved {
                reserved = max;
            }
        }
        if let Some(max) = self.growth {
            if max > reserved {
                reserved = max;
            }
        }
        reserved
    }

    /// The same configuration with another overflow policy.
    #[must_use]
    pub const fn with_policy(mut self, policy: OverflowPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Checks that a ring can be built from this configuration.
    ///
    /// # Errors
    ///
    /// [`ConfigError::ZeroCapacity`] for a capacity of 0,
    /// [`ConfigError::CapacityTooLarge`] when the reservation exceeds
    /// [`MAX_CAPACITY`], [`ConfigError::MaxBelowCapacity`] when `max_capacity` or
    /// `growth` is below `capacity`.
    pub const fn validate(&self) -> Result<(), ConfigError> {
        if self.capacity == 0 {
            return Err(ConfigError::ZeroCapacity);
        }
        if let Some(max) = self.max_capacity {
            if max < self.capacity {
                return Err(ConfigError::MaxBelowCapacity {
                    capacity: self.capacity,
                    max,
                });
            }
        }
        if let Some(max) = self.growth {
            if max < self.capacity {
                return Err(ConfigError::MaxBelowCapacity {
                    capacity: self.capacity,
                    max,
                });
            }
        }
        if self.reserved() > MAX_CAPACITY {
            return Err(ConfigError::CapacityTooLarge {
                requested: self.reserved(),
                max: MAX_CAPACITY,
            });
        }
        Ok(())
    }
}

impl Default for RingConfig {
    /// 1024 items, `DropOldest`.
    fn default() -> Self {
        Self::new(1024)
    }
}
