//! Taking an entry out of the table: dooming its slot, vacating it once its readers
//! leave, reporting it to the hook, and purging tombstones.

use core::hash::{BuildHasher, Hash};
use core::ptr;

use super::slot::{kind, readers, tag, LockGuard, BUSY, EMPTY, READY, TOMB};
use super::{Storage, TtlTableCore};
use crate::clock::Clock;
use crate::sync::{Backoff, Ordering};
use crate::table::{EvictionCause, EvictionHook};

/// How far a purge looks past a tombstone for the end of its cluster.
const PURGE_WALK: usize = 128;

/// A slot that left the table and must be vacated once its readers are gone.
pub(super) struct Doomed {
    pub(super) index: usize,
    pub(super) seg: usize,
    pub(super) cause: EvictionCause,
}

/// An entry a lock holder took out of the table.
pub(super) enum Gone<K, V> {
    /// Doomed while being read: to vacate once its readers leave.
    Doomed(Doomed),
    /// Already moved out, to report.
    Taken(K, V, EvictionCause),
}

impl<K: Hash + Eq, V, C: Clock, S: BuildHasher, H: EvictionHook<K, V>, St: Storage<K, V>>
    TtlTableCore<K, V, C, S, H, St>
{
    /// Takes a `READY` slot out of the table under the segment lock the caller holds:
    /// dooms it (`READY` -> `BUSY`, keeping readers and tag) and, if nobody is reading
    /// it (the common case), vacates it at once. Counting is the caller's.
    pub(super) fn retire(&self, index: usize, seg: usize, cause: EvictionCause) -> Gone<K, V> {
        // Only lock holders change the kind of a `READY` slot, and readers only change
        // its count, so adding `BUSY - READY` turns exactly this `READY` into `BUSY`.
        // AcqRel: a reader that sees the doom (Acquire) also sees a replacement
        // published before it; and we see the reads of readers that already left.
        let s = self.state(index).fetch_add(BUSY - READY, Ordering::AcqRel);
        debug_assert_eq!(kind(s), READY);
        let doomed = Doomed { index, seg, cause };
        if readers(s) == 0 {
            let (k, v) = self.vacate(&doomed, true);
            Gone::Taken(k, v, cause)
        } else {
            Gone::Doomed(doomed)
        }
    }

    /// Finishes what a lock holder took out: vacates it if still doomed (waiting for
    /// its readers, with no lock held), then reports it.
    pub(super) fn settle(&self, gone: Gone<K, V>) -> Option<V> {
        match gone {
            Gone::Taken(k, v, cause) => self.report(cause, k, v),
            Gone::Doomed(d) => {
                let (k, v) = self.vacate(&d, false);
                self.report(d.cause, k, v)
            }
        }
    }

    /// Waits until a doomed slot has no readers, moves its entry out, stores `TOMB`
    /// and purges it. `locked`: the caller holds the segment lock (then there are no
    /// readers to wait for); otherwise the purge happens only if the lock is free.
    pub(super) fn vacate(&self, doomed: &Doomed, locked: bool) -> (K, V) {
        let state = self.state(doomed.index);
        let mut backoff = Backoff::new();
        // Acquire: every reader's Release `fetch_sub` happens before the move-out.
        let mut s = state.load(Ordering::Acquire);
        while readers(s) != 0 {
            debug_assert!(!locked, "waiting for readers under the segment lock");
            backoff.snooze();
            s = state.load(Ordering::Acquire);
        }
        debug_assert_eq!(kind(s), BUSY);
        let entry = self.slot(doomed.index).entry.with_mut(|cell| {
            // SAFETY: the slot is `BUSY` with no readers and owned by this thread, and
            // its entry is initialised (dooming requires `READY`). After the read the
            // cell is uninitialised as far as the table knows: the state becomes
            // `TOMB`, and only a later `fill` writes it again.
            unsafe { ptr::read(cell).assume_init() }
        });
        // Release: the move-out happens before a later fill of this slot, and a
        // lookup that sees the tombstone (Acquire) sees what happened before the doom.
        state.store(TOMB, Ordering::Release);
        if locked {
            self.purge(doomed.seg, doomed.index);
        } else if let Some(_lock) = LockGuard::try_lock(&self.segment(doomed.seg).lock) {
            self.purge(doomed.seg, doomed.index);
        }
        entry
    }

    /// Shows an entry that left to the hook (no lock or slot held); returns the value
    /// for `Removed` and `Replaced`, drops it otherwise.
    pub(super) fn report(&self, cause: EvictionCause, key: K, value: V) -> Option<V> {
        self.hook.on_evict(&key, &value, cause);
        match cause {
            EvictionCause::Removed | EvictionCause::Replaced => Some(value),
            _ => None,
        }
    }

    /// Turns the tombstone at `index` (and tombstones before it) back into `EMPTY`
    /// where no entry's probe chain passes it. The caller holds the segment lock, so
    /// no slot of the segment becomes occupied meanwhile.
    fn purge(&self, seg: usize, index: usize) {
        let base = seg * self.geo.seg_len;
        let len = self.geo.seg_len;
        let mut q = index - base;
        for _ in 0..len {
            // Acquire: the tombstone may come from a thread that vacated it after its
            // readers left, holding no lock, and found the lock taken (`vacate`): the
            // lock then orders its move-out before nothing. This load reads that
            // thread's Release store of `TOMB`; our Release store of `EMPTY` below (and
            // our unlock) then carries the move-out to the next inserter, whose
            // Acquire load of `EMPTY` (or its lock) comes before its `fill`. Relaxed
            // here lets that `fill` race the move-out's `ptr::read`.
            if self.state(base + q).load(Ordering::Acquire) != TOMB {
                return;
            }
            let mut j = self.next_offset(q);
            let mut safe = false;
            for _ in 0..PURGE_WALK.min(len - 1) {
                let s = self.state(base + j).load(Ordering::Relaxed);
                match kind(s) {
                    EMPTY => {
                        safe = true;
                        break;
                    }
                    TOMB => {}
                    _ => {
                        // The entry at j probes from its home up to j; if q lies on
                        // that path it must stay a tombstone.
                        let h = self.home(tag(s));
                        let dist = |from: usize, to: usize| (to + len - from) % len;
                        if dist(h, q) < dist(h, j) {
                            return;
                        }
                    }
                }
                j = self.next_offset(j);
            }
            if !safe {
                return;
            }
            // No chain passes this slot. Release: a lookup that stops here (Acquire)
            // sees the `moves` count of every replacement before this purge, made
            // under the lock we hold.
            self.state(base + q).store(EMPTY, Ordering::Release);
            q = if q == 0 { len - 1 } else { q - 1 };
        }
    }
}
