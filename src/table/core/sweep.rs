//! Sweeping expired entries: explicit sweeps from the shared cursor, and the
//! amortized sweeps of inserts.

use core::hash::{BuildHasher, Hash};

use super::slot::{kind, readers, READY};
use super::{Storage, TtlTableCore};
use crate::clock::Clock;
use crate::sync::Ordering;
use crate::table::{EvictionHook, SweepPolicy, SweepStats, SweepView};

impl<K: Hash + Eq, V, C: Clock, S: BuildHasher, H: EvictionHook<K, V>, St: Storage<K, V>>
    TtlTableCore<K, V, C, S, H, St>
{
    /// Scans up to `budget` slots from the table's shared sweep cursor and removes
    /// the entries expired at tick `now`; while the table holds more than its soft
    /// capacity, it also evicts live entries it scans. Entries being read, and
    /// segments another writer holds at that moment, are skipped (a later sweep gets
    /// them). Never waits and never allocates.
    ///
    /// Concurrent sweeps scan disjoint ranges. A sweep with a budget of at least the
    /// slot count (`capacity + capacity / 7`) visits every slot once.
    ///
    /// # Examples
    ///
    /// ```
    /// use core::time::Duration;
    /// use membound::clock::{Clock, ManualClock};
    /// use membound::table::{TableConfig, TtlTable};
    ///
    /// let clock = ManualClock::default();
    /// let config = TableConfig::new(100, Duration::from_millis(5)).with_amortized_sweep(0);
    /// let table = TtlTable::with_config(config, &clock)?;
    /// for i in 0..10 {
    ///     table.insert(i, i)?;
    /// }
    /// clock.advance(5);
    /// let mut removed = 0;
    /// while removed < 10 {
    ///     removed += table.sweep(clock.now(), 16).removed; // bounded work per call
    /// }
    /// assert!(table.is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn sweep(&self, now: u64, budget: usize) -> SweepStats {
        self.scan_live(budget, |index, stats| {
            let over = self.len.load(Ordering::Relaxed)
                > self.control.soft_capacity.load(Ordering::Relaxed);
            let expired = self.slot(index).expires.load(Ordering::Relaxed) <= now;
            if (expired || over) && self.remove_if(index, now, over, false) {
                stats.removed += 1;
            }
        })
    }

    /// [`sweep`](Self::sweep) with a user's cleanup policy: scans up to `budget`
    /// slots from the shared sweep cursor and asks `policy` about each live entry that
    /// no one is reading, which it keeps, expires (removes now) or touches (gives a new
    /// deadline). Nothing else is removed: the soft-capacity eviction of `sweep` is the
    /// policy's to do (its [`begin`](SweepPolicy::begin) sees the length and the soft
    /// capacity). Entries being read, and segments another writer holds, are skipped
    /// as by `sweep`. Never waits and never allocates.
    ///
    /// Each decision is taken with the entry claimed, as a removal claims it, so an
    /// entry is decided on by one sweep at a time and never while a reader holds it.
    /// A lookup that meets the claim probes again and, if the claim outlasts its
    /// retries, misses the entry, as it may while a cleaner rechecks an expired one:
    /// a policy that keeps most entries makes such misses likelier than `sweep` does,
    /// so sweep with it off the hot path, and keep `decide` short.
    ///
    /// # Examples
    ///
    /// See [`SweepPolicy`].
    pub fn sweep_with<P: SweepPolicy<K, V> + ?Sized>(
        &self,
        now: u64,
        budget: usize,
        policy: &mut P,
    ) -> SweepStats {
        policy.begin(SweepView {
            len: self.len(),
            soft_capacity: self.capacity(),
            default_ttl: self.default_ttl,
            now,
        });
        self.scan_live(budget, |index, stats| {
            match self.decide_claimed(index, now, policy) {
                Some(crate::table::Sweep::Expire) => stats.removed += 1,
                Some(crate::table::Sweep::Touch(_)) => stats.touched += 1,
                _ => {}
            }
        })
    }

    /// A sweep's scan: counts the sweep, claims up to `budget` slots from the shared
    /// cursor (concurrent sweeps get disjoint ranges), and calls `visit` on each
    /// that holds an entry no one is reading at that moment.
    #[inline(always)]
    fn scan_live(
        &self,
        budget: usize,
        mut visit: impl FnMut(usize, &mut SweepStats),
    ) -> SweepStats {
        let (mut index, budget, total) = self.claim_sweep_range(budget);
        let mut stats = SweepStats {
            scanned: budget,
            ..SweepStats::default()
        };
        for _ in 0..budget {
            let s = self.state(index).load(Ordering::Acquire);
            if kind(s) == READY && readers(s) == 0 {
                visit(index, &mut stats);
            }
            index = if index + 1 == total { 0 } else { index + 1 };
        }
        stats
    }

    /// Counts a sweep and claims its range from the shared cursor: `(first slot,
    /// slots to scan, slot count)`. Concurrent sweeps get disjoint ranges.
    fn claim_sweep_range(&self, budget: usize) -> (usize, usize, usize) {
        self.control.sweeps.fetch_add(1, Ordering::Relaxed);
        let total = self.geo.total();
        let budget = budget.min(total);
        let start = (self
            .control
            .cursor
            .fetch_add(budget as u64, Ordering::Relaxed)
            % total as u64) as usize;
        (start, budget, total)
    }

    /// Amortized sweeping: removes expired entries among the `amortized_sweep` slots
    /// after `start`. Inserts land at random slots, so these scans cover the table
    /// at random; unlike [`sweep`](Self::sweep) they touch no shared cursor and are
    /// not counted in `sweeps`.
    pub(super) fn sweep_near(&self, start: usize, now: u64) {
        let total = self.geo.total();
        let mut index = start;
        for _ in 0..self.amortized_sweep.min(total) {
            index = if index + 1 >= total { 0 } else { index + 1 };
            let s = self.state(index).load(Ordering::Acquire);
            if kind(s) == READY
                && readers(s) == 0
                && self.slot(index).expires.load(Ordering::Relaxed) <= now
            {
                self.remove_if(index, now, false, false);
            }
        }
    }
}
