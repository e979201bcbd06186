//! The table's configuration, errors, causes and metrics.

use core::fmt;
use core::time::Duration;

use crate::config::ConfigError;
use crate::policy::OverflowPolicy;

/// Why an entry left the table, as reported to the eviction hook.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EvictionCause {
    /// Its TTL ran out; removed by a sweep, or found expired by an insert or remove of
    /// its key, or preferred as an eviction victim.
    Expired,
    /// Taken out by [`remove`](super::TtlTableCore::remove).
    Removed,
    /// Its key was inserted again with a new value.
    Replaced,
    /// Evicted while live to make room: a full table under
    /// [`OverflowPolicy::DropOldest`], or a lowered soft capacity.
    Evicted,
}

/// Called with every entry that leaves the table, and why, after the table has let go
/// of the entry's slot: a hook may call back into the table (including for the same
/// key) without deadlocking.
///
/// Entries still stored when the table is dropped are dropped without a call.
/// Implemented for [`NoHook`] and for every `Fn(&K, &V, EvictionCause)`.
pub trait EvictionHook<K, V> {
    /// Sees the entry just before it is dropped (or returned to the caller that
    /// removed or replaced it).
    fn on_evict(&self, key: &K, value: &V, cause: EvictionCause);
}

/// The hook that does nothing: the default.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct NoHook;

impl<K, V> EvictionHook<K, V> for NoHook {
    #[inline(always)]
    fn on_evict(&self, _: &K, _: &V, _: EvictionCause) {}
}

impl<K, V, F: Fn(&K, &V, EvictionCause)> EvictionHook<K, V> for F {
    #[inline]
    fn on_evict(&self, key: &K, value: &V, cause: EvictionCause) {
        self(key, value, cause);
    }
}

/// Configuration of a heap-backed [`TtlTable`](super::TtlTable).
///
/// # Overflow policies
///
/// What an insert of a new key does when the table holds its capacity. A table
/// supports two of the crate's [`OverflowPolicy`] values and refuses the others at
/// construction with [`ConfigError::UnsupportedPolicy`]:
///
/// - [`OverflowPolicy::DropOldest`] (the default): evict an entry to make room.
///   Expired entries go first (reported as [`EvictionCause::Expired`]); otherwise the
///   soonest-expiring of a sample of up to eight live entries near the new key's
///   slot, reported as [`EvictionCause::Evicted`]. For entries of one TTL the
///   soonest-expiring is the oldest written, hence the name. Sampling keeps an
///   insert's work bounded, as in Redis's approximated eviction; an entry being read
///   at that moment is skipped.
/// - [`OverflowPolicy::Reject`]: refuse the new entry and hand key and value back as
///   [`InsertError::Full`], unless an expired entry among the 256 slots from the new
///   key's home can make room (reported as [`EvictionCause::Expired`]). Counted in
///   [`TableMetrics::rejected`].
///
/// # Examples
///
/// ```
/// use core::time::Duration;
/// use membound::table::TableConfig;
/// use membound::{ConfigError, OverflowPolicy};
///
/// let config = TableConfig::new(10_000, Duration::from_secs(600))
///     .with_policy(OverflowPolicy::Reject)
///     .with_amortized_sweep(0); // sweep only when told to
/// assert_eq!(config.validate(), Ok(()));
///
/// let waiting = config.with_policy(OverflowPolicy::Block);
/// assert_eq!(
///     waiting.validate(),
///     Err(ConfigError::UnsupportedPolicy {
///         policy: OverflowPolicy::Block,
///         structure: "TTL table",
///     })
/// );
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub struct TableConfig {
    /// The most entries the table holds; its memory is reserved for this many.
    pub capacity: usize,
    /// The TTL of entries inserted without one.
    pub default_ttl: Duration,
    /// What an insert of a new key does when the table is full: `DropOldest` or
    /// `Reject` (see [Overflow policies](Self#overflow-policies)).
    pub policy: OverflowPolicy,
    /// Slots after its key's home slot that every insert checks for expired entries
    /// (and removes them), so a table nobody sweeps explicitly still sheds expired
    /// entries. 0 turns it off.
    pub amortized_sweep: usize,
}

impl TableConfig {
    /// Default slots swept per insert.
    pub const DEFAULT_AMORTIZED_SWEEP: usize = 4;

    /// `capacity` entries living `default_ttl` each, evicting the soonest-expiring
    /// when full, sweeping [`DEFAULT_AMORTIZED_SWEEP`](Self::DEFAULT_AMORTIZED_SWEEP)
    /// slots per insert.
    pub const fn new(capacity: usize, default_ttl: Duration) -> Self {
        Self {
            capacity,
            default_ttl,
            policy: OverflowPolicy::DropOldest,
            amortized_sweep: Self::DEFAULT_AMORTIZED_SWEEP,
        }
    }

    /// Sets the policy for a full table: `DropOldest` or `Reject` (see
    /// [Overflow policies](Self#overflow-policies)); [`validate`](Self::validate)
    /// refuses the others.
    pub const fn with_policy(mut self, policy: OverflowPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Sets the slots swept per insert; 0 turns amortized sweeping off.
    pub const fn with_amortized_sweep(mut self, slots: usize) -> Self {
        self.amortized_sweep = slots;
        self
    }

    /// Checks that the configuration can work.
    ///
    /// # Errors
    ///
    /// [`ConfigError::ZeroCapacity`], [`ConfigError::CapacityTooLarge`] above
    /// [`MAX_CAPACITY`](super::MAX_CAPACITY), [`ConfigError::ZeroTtl`],
    /// [`ConfigError::UnsupportedPolicy`] for a policy other than `DropOldest` and
    /// `Reject`.
    pub const fn validate(&self) -> Result<(), ConfigError> {
        if self.capacity == 0 {
            Err(ConfigError::ZeroCapacity)
        } else if self.capacity > super::MAX_CAPACITY {
            Err(ConfigError::CapacityTooLarge {
                requested: self.capacity,
                max: super::MAX_CAPACITY,
            })
        } else if self.default_ttl.is_zero() {
            Err(ConfigError::ZeroTtl)
        } else {
            check_policy(self.policy)
        }
    }
}

/// The name a table gives in [`ConfigError::UnsupportedPolicy`].
pub(super) const STRUCTURE: &str = "TTL table";

/// Whether a table supports `policy`: `DropOldest` and `Reject` only.
pub(super) const fn check_policy(policy: OverflowPolicy) -> Result<(), ConfigError> {
    if matches!(policy, OverflowPolicy::DropOldest | OverflowPolicy::Reject) {
        Ok(())
    } else {
        Err(ConfigError::UnsupportedPolicy {
            policy,
            structure: STRUCTURE,
        })
    }
}

/// An insert that did not store its entry; key and value come back inside.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum InsertError<K, V> {
    /// The table was full and the policy (or contention on every eviction candidate)
    /// left no room; or the key's segment had no free slot while slots of it were
    /// still being vacated (their readers not yet gone), and none freed in time.
    Full {
        /// The key that was not stored.
        key: K,
        /// The value that was not stored.
        value: V,
    },
}

impl<K, V> InsertError<K, V> {
    /// Takes key and value back.
    pub fn into_inner(self) -> (K, V) {
        match self {
            Self::Full { key, value } => (key, value),
        }
    }
}

impl<K, V> fmt::Debug for InsertError<K, V> {
    // No `K: Debug` bound, so `?` works for any key type.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Full { .. } => f.write_str("Full { .. }"),
        }
    }
}

impl<K, V> fmt::Display for InsertError<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Full { .. } => f.write_str("table is full"),
        }
    }
}

impl<K, V> core::error::Error for InsertError<K, V> {}

/// What one [`sweep`](super::TtlTableCore::sweep) did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SweepStats {
    /// Slots looked at.
    pub scanned: usize,
    /// Entries removed: expired ones, plus live ones evicted while the table held more
    /// than its soft capacity (or, in [`sweep_with`](super::TtlTableCore::sweep_with),
    /// those the policy expired).
    pub removed: usize,
    /// Entries given a new deadline by a policy
    /// ([`sweep_with`](super::TtlTableCore::sweep_with)); 0 for `sweep`.
    pub touched: usize,
}

/// A snapshot of a table's counters.
///
/// Read field by field while other threads work, so only approximately consistent
/// then. Counters are striped over the segments' cache lines by thread (a hash of the
/// stack address), so concurrent `get`s mostly bump different lines; the snapshot
/// sums the stripes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, crate::metrics::Metrics)]
#[non_exhaustive]
#[metrics(kind = "table", counters)]
pub struct TableMetrics {
    /// Entries stored now (including expired ones no sweep has removed yet).
    #[metric(gauge)]
    pub len: u64,
    /// The soft capacity in force.
    #[metric(gauge)]
    pub capacity: u64,
    /// The capacity reserved at construction.
    #[metric(gauge)]
    pub max_capacity: u64,
    /// Values stored by successful inserts, new keys and replacements alike.
    pub inserts: u64,
    /// Lookups (`get`, `get_with`, `contains`, `touch`) that found a live entry.
    pub hits: u64,
    /// Lookups that found nothing live.
    pub misses: u64,
    /// Entries removed because their TTL ran out.
    pub expired: u64,
    /// Live entries evicted for room or for a lowered soft capacity.
    pub evicted: u64,
    /// Entries taken out by `remove`.
    pub removed: u64,
    /// Values replaced by an insert of the same key.
    pub replaced: u64,
    /// Inserts refused because the table was full.
    pub rejected: u64,
    /// Calls to [`sweep`](super::TtlTableCore::sweep) (amortized sweeping by inserts
    /// is not counted).
    pub sweeps: u64,
}
