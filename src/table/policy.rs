//! Pluggable cleanup: a [`SweepPolicy`] decides, per entry, at sweep time, whether
//! to keep it, expire it or touch it ([`TtlTableCore::sweep_with`]).
//!
//! [`TtlTableCore::sweep_with`]: super::TtlTableCore::sweep_with

use core::time::Duration;

/// What a [`SweepPolicy`] does with one entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Sweep {
    /// Leave it as it is.
    Keep,
    /// Remove it now: reported to the eviction hook as
    /// [`Expired`](super::EvictionCause::Expired) if its deadline has passed, as
    /// [`Evicted`](super::EvictionCause::Evicted) if the policy removed it early.
    Expire,
    /// Keep it, with a new deadline this long from the sweep's `now`.
    Touch(Duration),
}

/// One live entry, as a [`SweepPolicy`] sees it. Times are ticks of the table's clock.
#[derive(Debug)]
#[non_exhaustive]
pub struct EntryView<'a, K, V> {
    /// The key.
    pub key: &'a K,
    /// The value.
    pub value: &'a V,
    /// The tick at which the entry expires.
    pub expires_at: u64,
    /// The sweep's `now`.
    pub now: u64,
}

impl<K, V> EntryView<'_, K, V> {
    /// Whether the deadline has passed at the sweep's `now`.
    pub fn is_expired(&self) -> bool {
        self.expires_at <= self.now
    }

    /// Ticks left until the deadline (0 once it has passed).
    pub fn remaining(&self) -> u64 {
        self.expires_at.saturating_sub(self.now)
    }
}

/// The table as a sweep starts, for a [`SweepPolicy`] that decides relative to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct SweepView {
    /// Entries held.
    pub len: usize,
    /// The soft capacity in force.
    pub soft_capacity: usize,
    /// The table's default TTL, in ticks.
    pub default_ttl: u64,
    /// The sweep's `now`.
    pub now: u64,
}

/// A user's cleanup policy: asked about each live entry a
/// [`sweep_with`](super::TtlTableCore::sweep_with) scans.
///
/// The built-in rule (remove what has expired) is [`Expired`]; any
/// `FnMut(&EntryView<K, V>) -> Sweep` is a policy too. The table's own
/// [`sweep`](super::TtlTableCore::sweep) and the amortized sweeps of inserts keep
/// their built-in rule without consulting a policy, so their cost is unchanged.
///
/// A decision is taken with the entry claimed (no reader holds it, and lookups of
/// it wait a moment or miss), so keep [`decide`](Self::decide) short. It may panic:
/// the entry is then left as it was.
///
/// # Examples
///
/// Expire, early, every entry whose value says it is done:
///
/// ```
/// use core::time::Duration;
/// use membound::clock::{Clock, ManualClock};
/// use membound::table::{EntryView, Sweep, TableConfig, TtlTable};
///
/// let clock = ManualClock::default();
/// let table = TtlTable::with_config(TableConfig::new(16, Duration::from_secs(60)), &clock)?;
/// table.insert("a", true)?;
/// table.insert("b", false)?;
/// let mut done = |e: &EntryView<&str, bool>| if *e.value { Sweep::Expire } else { Sweep::Keep };
/// let stats = table.sweep_with(clock.now(), usize::MAX, &mut done);
/// assert_eq!((stats.removed, table.len()), (1, 1));
/// assert!(table.contains("b"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub trait SweepPolicy<K, V> {
    /// Called once as a sweep starts. The default does nothing.
    fn begin(&mut self, view: SweepView) {
        let _ = view;
    }

    /// What to do with `entry`.
    fn decide(&mut self, entry: &EntryView<'_, K, V>) -> Sweep;
}

/// The built-in cleanup: expire an entry once its deadline has passed, keep it
/// otherwise.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Expired;

impl<K, V> SweepPolicy<K, V> for Expired {
    #[inline]
    fn decide(&mut self, entry: &EntryView<'_, K, V>) -> Sweep {
        if entry.is_expired() {
            Sweep::Expire
        } else {
            Sweep::Keep
        }
    }
}

impl<K, V, F: FnMut(&EntryView<'_, K, V>) -> Sweep> SweepPolicy<K, V> for F {
    #[inline]
    fn decide(&mut self, entry: &EntryView<'_, K, V>) -> Sweep {
        self(entry)
    }
}
