//! Per-id accounting of live values for the exactly-once drop tests.
//!
//! A [`Ledger`] issues [`Tracked`] values with fresh ids and counts, per id, the
//! instances alive (clones included). Dropping more instances than were made panics
//! at once; [`Ledger::assert_all_dropped`] checks that nothing issued is left alive.
//!
//! Use: `#[path = "support/drop_ledger.rs"] mod drop_ledger;`.
#![allow(dead_code)]

use std::fmt;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::Arc;

/// Live instances per id, for up to a fixed number of ids.
pub struct Ledger {
    live: Vec<AtomicI64>,
    issued: AtomicUsize,
}

impl Ledger {
    /// A ledger for at most `ids` values.
    pub fn new(ids: usize) -> Arc<Self> {
        Arc::new(Self {
            live: (0..ids).map(|_| AtomicI64::new(0)).collect(),
            issued: AtomicUsize::new(0),
        })
    }

    /// A new value with the next id.
    ///
    /// # Panics
    ///
    /// When the ledger's ids are used up.
    pub fn issue(self: &Arc<Self>) -> Tracked {
        let id = self.issued.fetch_add(1, Ordering::Relaxed);
        assert!(id < self.live.len(), "ledger full");
        self.live[id].fetch_add(1, Ordering::Relaxed);
        Tracked {
            id,
            ledger: self.clone(),
        }
    }

    /// Instances of `id` alive now.
    pub fn live(&self, id: usize) -> i64 {
        self.live[id].load(Ordering::Relaxed)
    }

    /// How many values were issued.
    pub fn issued(&self) -> usize {
        self.issued.load(Ordering::Relaxed)
    }

    /// Instances alive now, all ids together.
    pub fn total_live(&self) -> i64 {
        self.live.iter().map(|n| n.load(Ordering::Relaxed)).sum()
    }

    /// Every issued value, and every clone of it, was dropped exactly once.
    pub fn assert_all_dropped(&self) {
        for id in 0..self.issued() {
            assert_eq!(self.live(id), 0, "value {id} not dropped");
        }
    }
}

/// A value whose instances are counted in its [`Ledger`].
pub struct Tracked {
    id: usize,
    ledger: Arc<Ledger>,
}

impl Tracked {
    /// The id the ledger gave it.
    pub fn id(&self) -> usize {
        self.id
    }
}

impl Clone for Tracked {
    fn clone(&self) -> Self {
        self.ledger.live[self.id].fetch_add(1, Ordering::Relaxed);
        Self {
            id: self.id,
            ledger: self.ledger.clone(),
        }
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        let before = self.ledger.live[self.id].fetch_sub(1, Ordering::Relaxed);
        assert!(before > 0, "value {} dropped more often than made", self.id);
    }
}

impl PartialEq for Tracked {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
    }
}

impl fmt::Debug for Tracked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tracked({})", self.id)
    }
}
