//! Lookups: `get`, `get_with`, `contains` and `touch`, lock-free.

use core::borrow::Borrow;
use core::hash::{BuildHasher, Hash};

use super::slot::{join, Slot, Step};
use super::{Storage, TtlTableCore};
use crate::clock::Clock;
use crate::sync::Ordering;
use crate::table::EvictionHook;

/// A lookup that missed probes again, at most this many times, when its segment's
/// `moves` count changed meanwhile (a key was replaced into a slot the lookup may have
/// passed) or it passed a `BUSY` slot with its tag (a cleaner may be putting back an
/// entry a `touch` extended).
const READ_RETRIES: usize = 2;

impl<K: Hash + Eq, V, C: Clock, S: BuildHasher, H: EvictionHook<K, V>, St: Storage<K, V>>
    TtlTableCore<K, V, C, S, H, St>
{
    /// Runs `f` on the live value of `key`, or returns `None`.
    fn read<Q, R>(&self, key: &Q, now: u64, f: impl FnOnce(&Slot<K, V>, &V) -> R) -> Option<R>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let p = self.place(key);
        let counters = self.stripe();
        let moves = &self.storage.segments()[p.seg].moves;
        for _ in 0..=READ_RETRIES {
            // Acquire: pairs with the Release bump, see `insert_locked`.
            let before = moves.load(Ordering::Acquire);
            let mut busy_match = false;
            let mut offset = p.home;
            for _ in 0..self.geo.seg_len {
                let index = p.base + offset;
                match join(self.state(index), p.tag) {
                    Step::End => break,
                    Step::Skip => {}
                    Step::BusyMatch => busy_match = true,
                    Step::Joined(guard) => {
                        if self.key_is(index, key) {
                            let slot = self.slot(index);
                            if slot.expires.load(Ordering::Relaxed) <= now {
                                drop(guard);
                                counters.misses.fetch_add(1, Ordering::Relaxed);
                                return None;
                            }
                            counters.hits.fetch_add(1, Ordering::Relaxed);
                            let result = slot.entry.with(|entry| {
                                // SAFETY: as in `key_is`: we hold a read.
                                let (_, v) = unsafe { (*entry).assume_init_ref() };
                                f(slot, v)
                            });
                            drop(guard);
                            return Some(result);
                        }
                    }
                }
                offset = self.next_offset(offset);
            }
            if !busy_match && moves.load(Ordering::Acquire) == before {
                break;
            }
        }
        counters.misses.fetch_add(1, Ordering::Relaxed);
        None
    }

    /// A clone of the live value of `key`.
    ///
    /// Lock-free; see the type's documentation. Expired entries are invisible.
    ///
    /// # Examples
    ///
    /// ```
    /// use core::time::Duration;
    /// use membound::clock::ManualClock;
    /// use membound::table::TtlTable;
    ///
    /// let table = TtlTable::new(10, Duration::from_secs(1), ManualClock::default())?;
    /// table.insert("k".to_string(), vec![1, 2])?;
    /// assert_eq!(table.get("k"), Some(vec![1, 2]));
    /// assert_eq!(table.get("other"), None);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[inline]
    pub fn get<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
        V: Clone,
    {
        self.read(key, self.clock.now(), |_, v| v.clone())
    }

    /// Runs `f` on the live value of `key` and returns its result, without cloning.
    ///
    /// `f` runs while this thread is counted as a reader of the entry: other readers
    /// are unaffected and no lock is held, so `f` may call any method of the table,
    /// except `remove` or `insert` of this same key, which wait for the entry's
    /// readers to leave and would so wait for `f` itself.
    ///
    /// # Examples
    ///
    /// ```
    /// use core::time::Duration;
    /// use membound::clock::ManualClock;
    /// use membound::table::TtlTable;
    ///
    /// let table = TtlTable::new(10, Duration::from_secs(1), ManualClock::default())?;
    /// table.insert(1, "a long string".to_string())?;
    /// assert_eq!(table.get_with(&1, |s| s.len()), Some(13));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[inline]
    pub fn get_with<Q, R>(&self, key: &Q, f: impl FnOnce(&V) -> R) -> Option<R>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.read(key, self.clock.now(), |_, v| f(v))
    }

    /// Whether `key` has a live entry.
    #[inline]
    pub fn contains<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.read(key, self.clock.now(), |_, _| ()).is_some()
    }

    /// Restarts the default TTL of `key`'s live entry from now. Returns whether there
    /// was one; an expired entry is not revived.
    ///
    /// Lock-free, like `get`.
    ///
    /// # Examples
    ///
    /// ```
    /// use core::time::Duration;
    /// use std::sync::Arc;
    /// use membound::clock::ManualClock;
    /// use membound::table::TtlTable;
    ///
    /// let clock = Arc::new(ManualClock::default());
    /// let table = TtlTable::new(10, Duration::from_millis(100), clock.clone())?;
    /// table.insert(1, ())?;
    /// clock.advance(60);
    /// assert!(table.touch(&1));
    /// clock.advance(60);
    /// assert!(table.contains(&1)); // 120 ms after insert, 60 after the touch
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn touch<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.touch_ticks(key, self.default_ttl)
    }

    /// Sets the TTL of `key`'s live entry to `ttl` from now. Returns whether there was
    /// one.
    pub fn touch_with_ttl<Q>(&self, key: &Q, ttl: core::time::Duration) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.touch_ticks(key, self.clock.ticks_for(ttl))
    }

    fn touch_ticks<Q>(&self, key: &Q, ttl: u64) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let now = self.clock.now();
        // Relaxed: the store is published to a cleaner by the reader's Release
        // `fetch_sub`, which its claiming CAS (Acquire) reads from.
        self.read(key, now, |slot, _| {
            slot.expires
                .store(now.saturating_add(ttl), Ordering::Relaxed)
        })
        .is_some()
    }
}
