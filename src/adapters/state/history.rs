//! The bounded history of forward patches: revision, timestamp, size, operations.

use alloc::collections::vec_deque::{self, VecDeque};
use alloc::sync::Arc;

use json_patch::PatchOperation;

use super::config::HistoryLimits;
use super::error::HistoryError;
use super::Revision;
use crate::pressure::{adaptive_size, PressureLevel};

/// One committed patch, as kept by the history.
///
/// The operations are shared (`Arc`), so handing changes out copies no values.
#[derive(Clone, Debug, PartialEq)]
pub struct Change {
    /// The revision the patch produced.
    pub revision: Revision,
    /// When it was committed, in ticks of the store's clock.
    pub timestamp: u64,
    /// Its size as compact JSON, what the history's byte bound counts.
    pub bytes: usize,
    /// The operations, exactly as applied.
    pub ops: Arc<[PatchOperation]>,
}

/// The changes after a revision, oldest first, as the subscription seam takes them.
pub(crate) type Backlog<'a> =
    core::iter::Map<vec_deque::Iter<'a, Change>, fn(&Change) -> (Revision, &[PatchOperation])>;

fn backlog_item(change: &Change) -> (Revision, &[PatchOperation]) {
    (change.revision, &change.ops)
}

/// Forward patches with contiguous revisions `floor + 1 ..= floor + len`, bounded by
/// count, bytes and age (the tightest wins), each cut to the pressure level's share.
#[derive(Debug)]
pub(crate) struct History {
    entries: VecDeque<Change>,
    /// Sum of `entries[..].bytes`.
    bytes: usize,
    /// Every revision above `floor` is in `entries`; the ones at or below it were
    /// trimmed (or predate an import).
    floor: u64,
    base: HistoryLimits,
    /// `base.age` in clock ticks.
    base_age: u64,
    level: PressureLevel,
}

impl History {
    pub(crate) fn new(base: HistoryLimits, base_age: u64) -> Self {
        Self {
            entries: VecDeque::new(),
            bytes: 0,
            floor: 0,
            base,
            base_age,
            level: PressureLevel::Normal,
        }
    }

    /// The bounds in force: the base cut to the level's share.
    pub(crate) fn limits(&self) -> (usize, usize, u64) {
        let age = u128::from(self.base_age) * u128::from(self.level.size_percent()) / 100;
        (
            adaptive_size(self.base.entries, self.level),
            adaptive_size(self.base.bytes, self.level),
            u64::try_from(age).unwrap_or(u64::MAX).max(1),
        )
    }

    pub(crate) fn push(&mut self, change: Change, now: u64) {
        self.bytes += change.bytes;
        self.entries.push_back(change);
        self.trim(now);
    }

    /// Drops the oldest entries beyond any bound.
    pub(crate) fn trim(&mut self, now: u64) {
        let (max_entries, max_bytes, max_age) = self.limits();
        while let Some(oldest) = self.entries.front() {
            let stale = now.saturating_sub(oldest.timestamp) >= max_age;
            if self.entries.len() <= max_entries && self.bytes <= max_bytes && !stale {
                break;
            }
            self.bytes -= oldest.bytes;
            self.floor = oldest.revision.0;
            self.entries.pop_front();
        }
    }

    pub(crate) fn set_level(&mut self, level: PressureLevel, now: u64) {
        self.level = level;
        self.trim(now);
    }

    /// Forgets everything: the history restarts after `floor`.
    pub(crate) fn reset(&mut self, floor: u64) {
        self.entries.clear();
        self.bytes = 0;
        self.floor = floor;
    }

    /// The index of the first entry after `from`, given the store is at `current`.
    fn start(&self, from: Revision, current: u64) -> Result<usize, HistoryError> {
        if from.0 > current {
            return Err(HistoryError::Future {
                requested: from,
                current: Revision(current),
            });
        }
        if from.0 < self.floor {
            return Err(HistoryError::Compacted {
                requested: from,
                oldest: Revision(self.floor),
            });
        }
        // Contiguous revisions: `from` is that many entries past the floor.
        let skip = usize::try_from(from.0 - self.floor).unwrap_or(usize::MAX);
        Ok(skip.min(self.entries.len()))
    }

    /// The changes after `from`, oldest first.
    pub(crate) fn since(&self, from: Revision, current: u64) -> Result<Backlog<'_>, HistoryError> {
        let item: fn(&Change) -> (Revision, &[PatchOperation]) = backlog_item;
        Ok(self.entries.range(self.start(from, current)?..).map(item))
    }

    /// The entries after `from`, oldest first.
    pub(crate) fn entries_since(
        &self,
        from: Revision,
        current: u64,
    ) -> Result<vec_deque::Iter<'_, Change>, HistoryError> {
        Ok(self.entries.range(self.start(from, current)?..))
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    pub(crate) fn floor(&self) -> Revision {
        Revision(self.floor)
    }
}
