//! Inserts: one attempt under the segment lock, and the retries that make room.

use core::hash::{BuildHasher, Hash};

use super::slot::{kind, tag, word, LockGuard, BUSY, EMPTY, READY, TOMB};
use super::storage::bump;
use super::vacate::Gone;
use super::{Place, Storage, TtlTableCore};
use crate::clock::Clock;
use crate::policy::OverflowPolicy;
use crate::sync::{Backoff, Ordering};
use crate::table::{EvictionCause, EvictionHook, InsertError};

/// Slots an insert into a full `Reject` table searches for an expired entry.
const EXPIRED_SCAN: usize = 256;
/// Evictions one insert may make before it gives up (under contention, or while the
/// table shrinks toward a lowered soft capacity).
const MAX_EVICTIONS: usize = 4;
/// Times an insert waits (backs off and probes again) for a slot of its segment to be
/// vacated by a thread waiting for the slot's readers, before it is refused. It never
/// evicts for such a slot.
const VACATE_WAITS: usize = 16;

impl<K: Hash + Eq, V, C: Clock, S: BuildHasher, H: EvictionHook<K, V>, St: Storage<K, V>>
    TtlTableCore<K, V, C, S, H, St>
{
    /// Stores `value` under `key` with the table's default TTL. Returns the value it
    /// replaced, if `key` had a live entry.
    ///
    /// A new key needs room: with [`OverflowPolicy::Reject`] a full table refuses it,
    /// with [`OverflowPolicy::DropOldest`] it evicts an entry first (see
    /// [`TableConfig`](crate::table::TableConfig#overflow-policies)). Replacing a
    /// live key evicts another only if entries fill every slot of the key's segment
    /// (a pathological hash distribution). Replaced, expired and evicted entries go to
    /// the eviction hook with their cause.
    ///
    /// # Errors
    ///
    /// [`InsertError::Full`] with the key and value when no room could be made,
    /// including, transiently, when the key's segment has no free slot because slots
    /// of it wait for their readers to leave (see the type's documentation).
    ///
    /// # Examples
    ///
    /// ```
    /// use core::time::Duration;
    /// use membound::clock::ManualClock;
    /// use membound::table::{InsertError, TableConfig, TtlTable};
    /// use membound::OverflowPolicy;
    ///
    /// let config =
    ///     TableConfig::new(1, Duration::from_secs(1)).with_policy(OverflowPolicy::Reject);
    /// let table = TtlTable::with_config(config, ManualClock::default())?;
    /// assert_eq!(table.insert(1, 'a')?, None);
    /// assert_eq!(table.insert(1, 'b')?, Some('a'));
    /// match table.insert(2, 'c') {
    ///     Err(InsertError::Full { key, value }) => assert_eq!((key, value), (2, 'c')),
    ///     other => panic!("{other:?}"),
    /// }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[inline]
    pub fn insert(&self, key: K, value: V) -> Result<Option<V>, InsertError<K, V>> {
        self.insert_ticks(key, value, self.default_ttl)
    }

    /// Stores `value` under `key`, expiring `ttl` from now; otherwise as
    /// [`insert`](Self::insert).
    ///
    /// # Errors
    ///
    /// As [`insert`](Self::insert).
    pub fn insert_with_ttl(
        &self,
        key: K,
        value: V,
        ttl: core::time::Duration,
    ) -> Result<Option<V>, InsertError<K, V>> {
        self.insert_ticks(key, value, self.clock.ticks_for(ttl))
    }

    fn insert_ticks(&self, key: K, value: V, ttl: u64) -> Result<Option<V>, InsertError<K, V>> {
        let now = self.clock.now();
        let p = self.place(&key);
        let expires = now.saturating_add(ttl);
        let mut entry = (key, value);
        let mut evictions = 0;
        let mut waits = 0;
        let mut backoff = Backoff::new();
        let result = loop {
            let (outcome, gone) = self.insert_locked(&p, entry, expires, now);
            let old = gone.and_then(|g| self.settle(g));
            match outcome {
                Attempt::Stored => break Ok(None),
                Attempt::Replaced => break Ok(old),
                Attempt::NoRoom(back, shortage) => {
                    // `Reject` refuses only when full of live entries: an expired one
                    // near the key's slot makes room first.
                    let (limit, expired_only) = match self.policy {
                        OverflowPolicy::Reject => (EXPIRED_SCAN, true),
                        // `DropOldest`: construction refused every other policy.
                        _ => (self.geo.total(), false),
                    };
                    let start = p.base + p.home;
                    let room = match shortage {
                        // Live entries fill the soft capacity: evict anywhere.
                        Shortage::Capacity => {
                            evictions += 1;
                            evictions <= MAX_EVICTIONS
                                && self.evict_one(start, limit, now, None, expired_only)
                        }
                        // Entries fill every slot of the segment (a pathological hash
                        // distribution): evict in it, or wait for a reader of a
                        // candidate to leave.
                        Shortage::Slots => {
                            evictions += 1;
                            evictions <= MAX_EVICTIONS
                                && (self.evict_one(start, limit, now, Some(p.seg), expired_only)
                                    || {
                                        backoff.snooze();
                                        true
                                    })
                        }
                        // A slot that left the table still waits for its readers: it
                        // is free once they leave, so wait for it, a bounded number of
                        // times. Evicting would drop a live entry with no need.
                        Shortage::Vacating => {
                            waits += 1;
                            waits <= VACATE_WAITS && {
                                backoff.snooze();
                                true
                            }
                        }
                    };
                    if !room {
                        self.stripe().rejected.fetch_add(1, Ordering::Relaxed);
                        let (key, value) = back;
                        break Err(InsertError::Full { key, value });
                    }
                    entry = back;
                }
            }
        };
        if self.amortized_sweep > 0 {
            self.sweep_near(p.base + p.home, now);
        }
        result
    }

    /// One insert attempt under the segment lock.
    fn insert_locked(
        &self,
        p: &Place,
        entry: (K, V),
        expires: u64,
        now: u64,
    ) -> (Attempt<K, V>, Option<Gone<K, V>>) {
        let w = self.segment(p.seg);
        let _lock = LockGuard::lock(&w.lock);
        // The first free slot of the chain, for a new key; and the first free slot
        // after the key's current slot, for a replacement.
        let mut free = None;
        let mut free_after = None;
        let mut found = None;
        // Whether a slot passed is being vacated (doomed, its readers not yet gone).
        // Only seen complete when there is no free slot: then the scan covers the
        // segment.
        let mut vacating = false;
        let mut offset = p.home;
        for _ in 0..self.geo.seg_len {
            let index = p.base + offset;
            let s = self.state(index).load(Ordering::Acquire);
            match kind(s) {
                EMPTY => {
                    free.get_or_insert(index);
                    if found.is_some() {
                        free_after = Some(index);
                    }
                    break;
                }
                TOMB => {
                    free.get_or_insert(index);
                    if found.is_some() {
                        free_after = Some(index);
                        break;
                    }
                }
                READY if found.is_none() && tag(s) == p.tag && self.key_is(index, &entry.0) => {
                    found = Some(index);
                }
                // Under the lock, a `BUSY` slot is one a thread doomed and vacates once
                // its readers leave (a cleaner's claim never outlives its lock).
                BUSY => vacating = true,
                _ => {}
            }
            offset = self.next_offset(offset);
        }
        // Why there is no free slot, if there is none.
        let no_slot = if vacating {
            Shortage::Vacating
        } else {
            Shortage::Slots
        };

        let old_expired = match found {
            Some(index) if self.slot(index).expires.load(Ordering::Relaxed) > now => {
                // Publish the new entry first, then retire the old one. If the new
                // slot lies after the old one, a lookup reaches the old slot first and
                // reads the old value there, or walks past it to the new one, published
                // before the doom it saw (the old slot cannot turn `EMPTY` while the new
                // entry's chain passes it). If it lies before, a lookup may have passed
                // it unpublished: bumping `moves` between the publish and the doom
                // makes such a lookup, which then misses, probe again.
                let Some(free) = free else {
                    return (Attempt::NoRoom(entry, no_slot), None);
                };
                self.fill(free, p.tag, entry, expires);
                if free_after != Some(free) {
                    let moves = &self.storage.segments()[p.seg].moves;
                    // Release: a lookup that reads the new count sees the publish.
                    moves.store(moves.load(Ordering::Relaxed) + 1, Ordering::Release);
                }
                bump(&w.replaced);
                let gone = self.retire(index, p.seg, EvictionCause::Replaced);
                return (Attempt::Replaced, Some(gone));
            }
            Some(index) => {
                // Expired: it leaves as `Expired` and the insert is of a new key. It is
                // retired after the fill below, so that purging its tombstone cannot
                // cut the chain the new entry is about to join.
                bump(&w.expired);
                self.len.fetch_sub(1, Ordering::Relaxed);
                Some(index)
            }
            None => None,
        };
        let outcome = match free {
            None => Attempt::NoRoom(entry, no_slot),
            Some(_) if !self.reserve() => Attempt::NoRoom(entry, Shortage::Capacity),
            Some(free) => {
                bump(&w.inserts);
                self.fill(free, p.tag, entry, expires);
                Attempt::Stored
            }
        };
        let gone = old_expired.map(|index| self.retire(index, p.seg, EvictionCause::Expired));
        (outcome, gone)
    }

    /// Counts a new entry against the soft capacity, if there is room.
    #[inline]
    fn reserve(&self) -> bool {
        let cap = self.control.soft_capacity.load(Ordering::Relaxed);
        let mut len = self.len.load(Ordering::Relaxed);
        loop {
            if len >= cap {
                return false;
            }
            match self
                .len
                .compare_exchange_weak(len, len + 1, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return true,
                Err(seen) => len = seen,
            }
        }
    }

    /// Writes an entry into a free (`EMPTY` or `TOMB`) slot and publishes it. The
    /// caller holds the segment lock, so nobody else claims the slot.
    #[inline]
    fn fill(&self, index: usize, tag: u32, entry: (K, V), expires: u64) {
        let slot = self.slot(index);
        slot.entry.with_mut(|cell| {
            // SAFETY: the slot holds no entry and only the lock holder writes free
            // slots; readers skip it until the store below publishes it.
            unsafe { (*cell).write(entry) };
        });
        slot.expires.store(expires, Ordering::Relaxed);
        // Release: publishes the entry and its expiry to readers' Acquire CAS.
        self.state(index).store(word(tag, READY), Ordering::Release);
    }
}

/// How one insert attempt under the lock ended.
enum Attempt<K, V> {
    /// Stored a new key.
    Stored,
    /// Stored the new value; the old entry is the attempt's `Gone`.
    Replaced,
    /// No room: the entry comes back, with what was short.
    NoRoom((K, V), Shortage),
}

/// Why an insert attempt found no room.
#[derive(Clone, Copy)]
enum Shortage {
    /// A new key, and entries fill the soft capacity.
    Capacity,
    /// The segment has no free slot, and entries fill all of its slots.
    Slots,
    /// The segment has no free slot, but some of its slots are being vacated: they
    /// are free once their readers leave. Never a reason to evict.
    Vacating,
}
