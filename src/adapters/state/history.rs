//! The bounded history of forward patches: revision, timestamp, size, operations.

use alloc::boxed::Box;
use alloc::collections::vec_deque::{self, VecDeque};
use alloc::vec::Vec;

use json_patch::PatchOperation;

use super::config::HistoryLimits;
use super::error::HistoryError;
use super::Revision;
use crate::pressure::{adaptive_size, PressureLevel};

/// One committed patch, as [`changes_since`](super::StateStore::changes_since)
/// hands it out.
#[derive(Clone, Debug, PartialEq)]
pub struct Change {
    /// The revision the patch produced.
    pub revision: Revision,
    /// When it was committed, in ticks of the store's clock.
    pub timestamp: u64,
    /// Its size as compact JSON, what the history's byte bound counts.
    pub bytes: usize,
    /// The operations, exactly as applied.
    pub ops: Vec<PatchOperation>,
}

/// One committed patch as the history keeps it: its compact JSON text, one
/// allocation per revision (about half the memory of parsed operations, and fewer
/// allocations on the write path); parsed again only for readers catching up.
#[derive(Debug)]
pub(crate) struct Entry {
    pub(crate) revision: Revision,
    pub(crate) timestamp: u64,
    pub(crate) patch: Box<str>,
}

impl Entry {
    /// The operations; the text was written by the store from valid operations.
    pub(crate) fn ops(&self) -> Vec<PatchOperation> {
        serde_json::from_str(&self.patch).unwrap_or_else(|_| {
            debug_assert!(false, "history holds an unparsable patch");
            Vec::new()
        })
    }

    pub(crate) fn change(&self) -> Change {
        Change {
            revision: self.revision,
            timestamp: self.timestamp,
            bytes: self.patch.len(),
            ops: self.ops(),
        }
    }
}

/// The changes after a revision, oldest first, as `StateStore::subscribe` hands them to the subscriptions.
pub(crate) type Backlog<'a> =
    core::iter::Map<vec_deque::Iter<'a, Entry>, fn(&Entry) -> (Revision, Vec<PatchOperation>)>;

fn backlog_item(entry: &Entry) -> (Revision, Vec<PatchOperation>) {
    (entry.revision, entry.ops())
}

/// Forward patches with contiguous revisions `floor + 1 ..= floor + len`, bounded by
/// count, bytes and age (the tightest wins), each cut to the pressure level's share.
#[derive(Debug)]
pub(crate) struct History {
    entries: VecDeque<Entry>,
    /// Sum of the entries' text lengths.
    bytes: usize,
    /// Every revision above `floor` is in `entries`; the ones at or below it were
    /// trimmed (or predate an import).
    floor: u64,
    base: HistoryLimits,
    /// `base.age` in clock ticks.
    base_age: u64,
    /// The bounds in force (entries, bytes, age in ticks): the base cut to the
    /// pressure level's share.
    limits: (usize, usize, u64),
}

impl History {
    pub(crate) fn new(base: HistoryLimits, base_age: u64) -> Self {
        Self {
            entries: VecDeque::new(),
            bytes: 0,
            floor: 0,
            limits: Self::limits_at(&base, base_age, PressureLevel::Normal),
            base,
            base_age,
        }
    }

    /// The bounds in force at `level`: the base cut to the level's share.
    fn limits_at(base: &HistoryLimits, base_age: u64, level: PressureLevel) -> (usize, usize, u64) {
        let age = u128::from(base_age) * u128::from(level.size_percent()) / 100;
        (
            adaptive_size(base.entries, level),
            adaptive_size(base.bytes, level),
            u64::try_from(age).unwrap_or(u64::MAX).max(1),
        )
    }

    /// Appends `change` and trims. Returns the first entry trimmed, for the caller
    /// to drop after releasing its lock (at steady state, the only one).
    #[must_use]
    pub(crate) fn push(&mut self, entry: Entry, now: u64) -> Option<Entry> {
        self.bytes += entry.patch.len();
        self.entries.push_back(entry);
        let first = self.pop_excess(now);
        if first.is_some() {
            self.trim(now);
        }
        first
    }

    /// Removes the oldest entry if it is beyond a bound.
    fn pop_excess(&mut self, now: u64) -> Option<Entry> {
        let (max_entries, max_bytes, max_age) = self.limits;
        let oldest = self.entries.front()?;
        let stale = now.saturating_sub(oldest.timestamp) >= max_age;
        if self.entries.len() <= max_entries && self.bytes <= max_bytes && !stale {
            return None;
        }
        self.bytes -= oldest.patch.len();
        self.floor = oldest.revision.0;
        self.entries.pop_front()
    }

    /// Drops the oldest entries beyond any bound.
    pub(crate) fn trim(&mut self, now: u64) {
        while self.pop_excess(now).is_some() {}
    }

    /// Cuts the bounds to `level`'s share of the base, the entry bound to `entries`
    /// (the capacity the memory manager computed for the level), and trims now.
    pub(crate) fn set_pressure(&mut self, level: PressureLevel, entries: usize, now: u64) {
        let (_, bytes, age) = Self::limits_at(&self.base, self.base_age, level);
        self.limits = (entries, bytes, age);
        self.trim(now);
    }

    /// Sets the entry bound alone (the byte and age bounds stay), and trims now.
    pub(crate) fn set_entries(&mut self, entries: usize, now: u64) {
        self.limits.0 = entries;
        self.trim(now);
    }

    /// The entry bound in force.
    pub(crate) fn max_entries(&self) -> usize {
        self.limits.0
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
        let item: fn(&Entry) -> (Revision, Vec<PatchOperation>) = backlog_item;
        Ok(self.entries.range(self.start(from, current)?..).map(item))
    }

    /// The entries after `from`, oldest first.
    pub(crate) fn entries_since(
        &self,
        from: Revision,
        current: u64,
    ) -> Result<vec_deque::Iter<'_, Entry>, HistoryError> {
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
