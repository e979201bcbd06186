//! The history and memory pressure: catching up from a revision, the store's
//! [`SoftCapacity`] (the one route by which pressure reaches it), and periodic
//! upkeep.

use alloc::vec::Vec;

use super::{lock, Retention, StateStore};
use crate::adapters::state::error::HistoryError;
use crate::adapters::state::history::{Backlog, Change, Entry};
use crate::adapters::state::Revision;
use crate::capacity::{self, CapacityError, SoftCapacity};
use crate::clock::Clock;
use crate::pressure::{adaptive_size, PressureLevel};
use crate::sync::Ordering;

impl<C: Clock + Send + Sync + 'static> StateStore<C> {
    /// The patches committed after `revision`, oldest first.
    ///
    /// # Errors
    ///
    /// [`HistoryError::Compacted`] when some of them were trimmed away (send a
    /// snapshot instead); [`HistoryError::Future`] for a revision the store has not
    /// reached.
    pub fn changes_since(&self, revision: Revision) -> Result<Vec<Change>, HistoryError> {
        let mut sequencer = lock(&self.retention.sequencer);
        sequencer.history.trim(self.clock.now());
        let current = self.revision.load(Ordering::Relaxed);
        Ok(sequencer
            .history
            .entries_since(revision, current)?
            .map(Entry::change)
            .collect())
    }

    /// Runs `f` with the history after `from`, under the sequencer lock: no commit
    /// is announced (see `after_commit`) while `f` runs, so a subscriber registered
    /// inside `f` sees the backlog and then every later change, without a gap or a
    /// repeat.
    pub(crate) fn with_backlog<R>(
        &self,
        from: Revision,
        f: impl FnOnce(Result<Backlog<'_>, HistoryError>) -> R,
    ) -> R {
        let mut sequencer = lock(&self.retention.sequencer);
        sequencer.history.trim(self.clock.now());
        let current = self.revision.load(Ordering::Relaxed);
        f(sequencer.history.since(from, current))
    }

    /// The pressure level last applied (see the [`SoftCapacity`] impl).
    pub fn pressure(&self) -> PressureLevel {
        self.retention.level()
    }

    /// Periodic upkeep for idle stores: trims the history by age and removes expired
    /// transactions (both also happen as the store is used).
    pub fn sweep(&self) {
        lock(&self.retention.sequencer)
            .history
            .trim(self.clock.now());
        self.txns.sweep();
        self.subscriptions.sweep();
    }
}

impl<C: Clock> Retention<C> {
    fn level(&self) -> PressureLevel {
        let index = usize::from(self.level.load(Ordering::Relaxed));
        PressureLevel::from_index(index).unwrap_or_default()
    }
}

/// See the store's impl.
impl<C: Clock> SoftCapacity for Retention<C> {
    fn capacity(&self) -> usize {
        lock(&self.sequencer).history.max_entries()
    }

    fn max_capacity(&self) -> usize {
        self.max_entries
    }

    /// The history's bytes (compact JSON), at most its byte limit: what a store
    /// registered by its builder reports (the store itself, registered as an `Arc`,
    /// adds its document).
    fn footprint(&self) -> Option<crate::capacity::Footprint> {
        Some(crate::capacity::Footprint {
            bytes: lock(&self.sequencer).history.bytes() as u64,
            max_bytes: self.max_bytes as u64,
        })
    }

    fn kind(&self) -> &'static str {
        "state_history"
    }

    fn set_capacity(&self, entries: usize) -> Result<(), CapacityError> {
        capacity::check(entries, self.max_entries)?;
        let mut sequencer = lock(&self.sequencer);
        sequencer.history.set_entries(entries, self.clock.now());
        Ok(())
    }

    fn apply_pressure(&self, level: PressureLevel, entries: usize) -> Result<(), CapacityError> {
        capacity::check(entries, self.max_entries)?;
        {
            let mut sequencer = lock(&self.sequencer);
            self.level.store(level as u8, Ordering::Relaxed);
            sequencer
                .history
                .set_pressure(level, entries, self.clock.now());
        }
        let queues = adaptive_size(self.queues.max_capacity(), level);
        self.queues.apply_pressure(level, queues)
    }
}

/// The store on the crate's one pressure route.
///
/// Its capacity is the history's bound on entries: at most
/// [`HistoryLimits::entries`](crate::adapters::state::HistoryLimits::entries), the
/// capacity a [`MemoryManager`](crate::monitor::MemoryManager) registers as its
/// base. [`set_capacity`](SoftCapacity::set_capacity) changes that bound alone (the
/// history is trimmed to it at once). [`apply_pressure`](SoftCapacity::apply_pressure)
/// applies a level as a whole:
///
/// - the entry bound becomes the capacity given (for a registered store, 100, 75,
///   50 or 25 % of the configured one at `Normal`, `Low`, `High` and `Critical`),
///   and the byte and age bounds the level's share of theirs; the history is
///   trimmed at once;
/// - every subscription queue is set to the level's share of its capacity (what
///   that drops, receivers learn as lag);
/// - at `Critical`, [`begin`](StateStore::begin) is refused, until a lower level is
///   applied.
///
/// Register a store by building it with
/// [`memory_manager`](super::StateStoreBuilder::memory_manager), or, in an `Arc`,
/// with any [`CapacityTargets`](crate::pressure::CapacityTargets).
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use membound::adapters::state::{HistoryLimits, StateConfig, StateStore};
/// use membound::pressure::{CapacityTargets, PressureLevel};
///
/// let config = StateConfig {
///     history: HistoryLimits { entries: 100, ..Default::default() },
///     ..Default::default()
/// };
/// let store = Arc::new(StateStore::new(config)?);
/// for i in 0..100 {
///     store.apply_json(&format!(r#"[{{"op":"add","path":"/n","value":{i}}}]"#))?;
/// }
/// let mut targets = CapacityTargets::new();
/// targets.register(&store);
/// targets.apply(PressureLevel::High);
/// assert_eq!(store.metrics().history_entries, 50);
/// assert!(store.begin().is_ok());
/// targets.apply(PressureLevel::Critical);
/// assert_eq!(store.metrics().history_entries, 25);
/// assert!(store.begin().is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
impl<C: Clock + Send + Sync + 'static> SoftCapacity for StateStore<C> {
    fn capacity(&self) -> usize {
        self.retention.capacity()
    }

    fn max_capacity(&self) -> usize {
        self.retention.max_capacity()
    }

    fn set_capacity(&self, capacity: usize) -> Result<(), CapacityError> {
        self.retention.set_capacity(capacity)
    }

    fn apply_pressure(&self, level: PressureLevel, capacity: usize) -> Result<(), CapacityError> {
        self.retention.apply_pressure(level, capacity)
    }

    /// The document and the history, in compact JSON bytes (what the limits bound);
    /// at most the document limit plus the history's byte limit.
    fn footprint(&self) -> Option<crate::capacity::Footprint> {
        let metrics = self.metrics();
        Some(crate::capacity::Footprint {
            bytes: (metrics.document_bytes + metrics.history_bytes) as u64,
            max_bytes: (self.config.limits.document_bytes + self.config.history.bytes) as u64,
        })
    }

    fn kind(&self) -> &'static str {
        <crate::adapters::state::StateMetrics as crate::metrics::Metrics>::KIND
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::state::StateConfig;

    #[test]
    fn the_backlog_is_the_history_in_order() {
        let store = StateStore::new(StateConfig::default()).unwrap();
        for i in 0..3 {
            let patch = alloc::format!(r#"[{{"op":"add","path":"/n","value":{i}}}]"#);
            store.apply_json(&patch).unwrap();
        }
        let seen: Vec<(u64, usize)> = store.with_backlog(Revision(1), |backlog| {
            backlog
                .unwrap()
                .map(|(revision, ops)| (revision.0, ops.len()))
                .collect()
        });
        assert_eq!(seen, [(2, 1), (3, 1)]);
        let future = store.with_backlog(Revision(4), |backlog| backlog.err());
        assert!(matches!(future, Some(HistoryError::Future { .. })));
    }
}
