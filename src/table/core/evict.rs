//! Cleaners' removals: an unread entry removed under the lock, and the choice of an
//! eviction victim.

use core::hash::{BuildHasher, Hash};

use super::slot::{kind, readers, LockGuard, BUSY, KIND_MASK, READY};
use super::storage::bump;
use super::vacate::Doomed;
use super::{Storage, TtlTableCore};
use crate::clock::Clock;
use crate::sync::Ordering;
use crate::table::{EntryView, EvictionCause, EvictionHook, Sweep, SweepPolicy};

/// Live entries an eviction compares before choosing the soonest-expiring.
pub(super) const EVICT_SAMPLE: usize = 8;

impl<K: Hash + Eq, V, C: Clock, S: BuildHasher, H: EvictionHook<K, V>, St: Storage<K, V>>
    TtlTableCore<K, V, C, S, H, St>
{
    /// A cleaner's removal of the entry at `index`: takes the segment lock (waiting
    /// only if `wait`), and removes the entry if it is `READY`, unread, and expired at
    /// `now` (as `Expired`) or `evict` is set (as `Evicted`). Never waits for readers:
    /// an entry being read is left for later. Returns whether it removed one.
    pub(super) fn remove_if(&self, index: usize, now: u64, evict: bool, wait: bool) -> bool {
        let seg = index / self.geo.seg_len;
        let w = self.segment(seg);
        let lock = if wait {
            Some(LockGuard::lock(&w.lock))
        } else {
            LockGuard::try_lock(&w.lock)
        };
        let Some(lock) = lock else {
            return false;
        };
        let state = self.state(index);
        let s = state.load(Ordering::Acquire);
        let slot = self.slot(index);
        if kind(s) != READY
            || readers(s) != 0
            || !(evict || slot.expires.load(Ordering::Relaxed) <= now)
        {
            return false;
        }
        // Claim against readers joining meanwhile; Acquire: sees the expiry a `touch`
        // stored before its Release `fetch_sub`.
        if state
            .compare_exchange(
                s,
                (s & !KIND_MASK) | BUSY,
                Ordering::Acquire,
                Ordering::Relaxed,
            )
            .is_err()
        {
            return false;
        }
        let expired = slot.expires.load(Ordering::Relaxed) <= now;
        if !expired && !evict {
            // Touched since we looked: put it back. (Lookups racing this see `BUSY`
            // for a moment, probe again, and may miss it.)
            state.store(s, Ordering::Release);
            return false;
        }
        self.remove_claimed(lock, index, expired);
        true
    }

    /// Removes the entry at `index`, claimed (`BUSY`, no readers) under its segment's
    /// `lock`: counted as expired or evicted, moved out, reported after the lock is
    /// released.
    fn remove_claimed(&self, lock: LockGuard<'_>, index: usize, expired: bool) {
        let seg = index / self.geo.seg_len;
        let w = self.segment(seg);
        let cause = if expired {
            bump(&w.expired);
            EvictionCause::Expired
        } else {
            bump(&w.evicted);
            EvictionCause::Evicted
        };
        self.len.fetch_sub(1, Ordering::Relaxed);
        let doomed = Doomed { index, seg, cause };
        let (k, v) = self.vacate(&doomed, true);
        drop(lock);
        drop(self.report(cause, k, v));
    }

    /// A policy's decision on the entry at `index`: takes the segment lock (without
    /// waiting) and claims the slot as [`remove_if`](Self::remove_if) does, then asks
    /// `policy` and acts: removes the entry, gives it a new deadline, or puts it back
    /// untouched. Returns the decision acted on; `None` if the slot could not be
    /// claimed (locked, read, or changed meanwhile).
    pub(super) fn decide_claimed<P: SweepPolicy<K, V> + ?Sized>(
        &self,
        index: usize,
        now: u64,
        policy: &mut P,
    ) -> Option<Sweep> {
        let seg = index / self.geo.seg_len;
        let w = self.segment(seg);
        let lock = LockGuard::try_lock(&w.lock)?;
        let state = self.state(index);
        let s = state.load(Ordering::Acquire);
        if kind(s) != READY || readers(s) != 0 {
            return None;
        }
        // Acquire: as in `remove_if`, sees the expiry a `touch` stored before its
        // Release `fetch_sub`, and the entry as its writer published it.
        state
            .compare_exchange(
                s,
                (s & !KIND_MASK) | BUSY,
                Ordering::Acquire,
                Ordering::Relaxed,
            )
            .ok()?;
        /// Puts the claimed slot back as it was if the policy panics.
        struct Unclaim<'a>(&'a crate::sync::AtomicU64, u64);
        impl Drop for Unclaim<'_> {
            fn drop(&mut self) {
                self.0.store(self.1, Ordering::Release);
            }
        }
        let unclaim = Unclaim(state, s);
        let slot = self.slot(index);
        let expires_at = slot.expires.load(Ordering::Relaxed);
        let decision = slot.entry.with(|entry| {
            // SAFETY: the slot is `BUSY` under the segment lock with no readers: no
            // reader joins a `BUSY` slot and no writer takes the lock, so the entry,
            // initialised since the slot was `READY`, is ours to read.
            let (key, value) = unsafe { (*entry).assume_init_ref() };
            policy.decide(&EntryView {
                key,
                value,
                expires_at,
                now,
            })
        });
        match decision {
            Sweep::Keep => drop(unclaim),
            Sweep::Touch(ttl) => {
                // Relaxed: published to readers by the Release store that puts the
                // slot back (they join with Acquire).
                let deadline = now.saturating_add(self.clock.ticks_for(ttl));
                slot.expires.store(deadline, Ordering::Relaxed);
                drop(unclaim);
            }
            Sweep::Expire => {
                core::mem::forget(unclaim);
                self.remove_claimed(lock, index, expires_at <= now);
            }
        }
        Some(decision)
    }

    /// Evicts one entry among the first live ones from global slot `start` (within
    /// `limit` slots, or within segment `only`): an expired one if seen, otherwise
    /// (unless `expired_only`) the soonest-expiring of up to [`EVICT_SAMPLE`].
    /// Returns whether one was evicted.
    pub(super) fn evict_one(
        &self,
        start: usize,
        limit: usize,
        now: u64,
        only: Option<usize>,
        expired_only: bool,
    ) -> bool {
        let total = self.geo.total();
        let (lo, span) = match only {
            Some(seg) => (seg * self.geo.seg_len, self.geo.seg_len),
            None => (0, total),
        };
        for _ in 0..3 {
            let mut best: Option<(usize, u64)> = None;
            let mut sampled = 0;
            let mut i = start - lo;
            for _ in 0..limit.min(span) {
                let index = lo + i;
                let s = self.state(index).load(Ordering::Acquire);
                if kind(s) == READY && readers(s) == 0 {
                    let expires = self.slot(index).expires.load(Ordering::Relaxed);
                    if expires <= now {
                        // Expired: the best victim there is.
                        best = Some((index, expires));
                        break;
                    }
                    if !expired_only {
                        if best.is_none_or(|(_, e)| expires < e) {
                            best = Some((index, expires));
                        }
                        sampled += 1;
                        if sampled >= EVICT_SAMPLE {
                            break;
                        }
                    }
                }
                i = if i + 1 == span { 0 } else { i + 1 };
            }
            let Some((index, _)) = best else {
                return false;
            };
            // Rechecked under the lock: if the slot changed meanwhile (read, touched,
            // replaced), look again.
            if self.remove_if(index, now, !expired_only, true) {
                return true;
            }
        }
        false
    }
}
