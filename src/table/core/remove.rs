//! `remove`, with its lock-free pre-check.

use core::borrow::Borrow;
use core::hash::{BuildHasher, Hash};

use super::slot::{kind, tag, LockGuard, BUSY, EMPTY, READY};
use super::storage::bump;
use super::{Place, Storage, TtlTableCore};
use crate::clock::Clock;
use crate::sync::Ordering;
use crate::table::{EvictionCause, EvictionHook};

impl<K: Hash + Eq, V, C: Clock, S: BuildHasher, H: EvictionHook<K, V>, St: Storage<K, V>>
    TtlTableCore<K, V, C, S, H, St>
{
    /// Whether the key's chain may hold it: a lock-free pre-check (tags only) so that
    /// removing an absent key takes no lock. A key present throughout the probe shows
    /// a `READY` or `BUSY` slot with its tag unless a replacement moved it behind the
    /// probe, which changes `moves`; so `false` means the key was absent at some point
    /// during the call.
    fn maybe_present(&self, p: &Place) -> bool {
        let moves = &self.storage.segments()[p.seg].moves;
        let before = moves.load(Ordering::Acquire);
        let mut offset = p.home;
        for _ in 0..self.geo.seg_len {
            let s = self.state(p.base + offset).load(Ordering::Acquire);
            match kind(s) {
                EMPTY => return moves.load(Ordering::Acquire) != before,
                READY | BUSY if tag(s) == p.tag => return true,
                _ => {}
            }
            offset = self.next_offset(offset);
        }
        true
    }

    /// Removes `key`'s entry and returns its value if it was live. An expired entry is
    /// removed too (reported as [`EvictionCause::Expired`]) and `None` is returned.
    ///
    /// If other threads are reading this entry (cloning it or in a `get_with`
    /// closure), waits for them to leave before moving the value out, holding no lock
    /// meanwhile.
    ///
    /// # Examples
    ///
    /// ```
    /// use core::time::Duration;
    /// use membound::clock::ManualClock;
    /// use membound::table::TtlTable;
    ///
    /// let table = TtlTable::new(10, Duration::from_secs(1), ManualClock::default())?;
    /// table.insert(1, "one")?;
    /// assert_eq!(table.remove(&1), Some("one"));
    /// assert_eq!(table.remove(&1), None);
    /// assert_eq!(table.metrics().removed, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn remove<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let now = self.clock.now();
        let p = self.place(key);
        if !self.maybe_present(&p) {
            return None;
        }
        let gone = {
            let w = self.segment(p.seg);
            let _lock = LockGuard::lock(&w.lock);
            let mut offset = p.home;
            let mut gone = None;
            for _ in 0..self.geo.seg_len {
                let index = p.base + offset;
                let s = self.state(index).load(Ordering::Acquire);
                match kind(s) {
                    EMPTY => break,
                    READY if tag(s) == p.tag && self.key_is(index, key) => {
                        let cause = if self.slot(index).expires.load(Ordering::Relaxed) <= now {
                            bump(&w.expired);
                            EvictionCause::Expired
                        } else {
                            bump(&w.removed);
                            EvictionCause::Removed
                        };
                        self.len.fetch_sub(1, Ordering::Relaxed);
                        gone = Some(self.retire(index, p.seg, cause));
                        break;
                    }
                    _ => {}
                }
                offset = self.next_offset(offset);
            }
            gone
        };
        gone.and_then(|g| self.settle(g))
    }
}
