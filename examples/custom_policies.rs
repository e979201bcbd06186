//! User-supplied policies beside the built-in vocabulary:
//!
//! 1. **Priority-aware drop.** A bounded buffer of jobs in three priority lanes
//!    (one `Ring` each, sharing one budget). When the budget is spent, the oldest
//!    job of the lowest non-empty lane below the new job's priority is dropped to
//!    make room; when there is none, an `OverflowRule` decides the new job's fate
//!    by its priority (a low one is dropped, a high one evicts the oldest of its
//!    own lane).
//! 2. **LRU-ish cleanup.** A `SweepPolicy` that, while a TTL table holds more than
//!    a soft count, expires the entries touched least recently: with one TTL for
//!    all, the entries with the least time left are the ones touched longest ago.
//!
//! Run: `cargo run --example custom_policies` (it checks what it prints).

use std::time::Duration;

use membound::clock::{Clock, ManualClock};
use membound::policy::{OverflowPolicy, OverflowRule};
use membound::ring::{Ring, RingConfig};
use membound::table::{EntryView, Sweep, SweepPolicy, SweepView, TableConfig, TtlTable};

#[derive(Debug, Clone, PartialEq)]
struct Job {
    priority: usize, // 0 low, 1 normal, 2 high
    id: u32,
}

/// Three lanes, one budget; pops take the highest priority first.
struct PriorityBuffer {
    lanes: [Ring<Job>; 3],
    budget: usize,
    dropped: [u64; 3],
}

impl PriorityBuffer {
    fn new(budget: usize) -> Self {
        let lane = || {
            Ring::with_config(RingConfig::new(budget).with_policy(OverflowPolicy::Reject)).unwrap()
        };
        Self {
            lanes: [lane(), lane(), lane()],
            budget,
            dropped: [0; 3],
        }
    }

    fn len(&self) -> usize {
        self.lanes.iter().map(Ring::len).sum()
    }

    /// Queues `job`, dropping the lowest-priority queued job first when full.
    fn push(&mut self, job: Job, rule: &impl OverflowRule<Job>) {
        if self.len() >= self.budget {
            if let Some(p) = (0..job.priority).find(|&p| !self.lanes[p].is_empty()) {
                let _ = self.lanes[p].try_pop();
                self.dropped[p] += 1;
            } else {
                // Nothing of lower priority to drop: the rule decides for this job.
                match rule.on_full(&job) {
                    OverflowPolicy::DropOldest if !self.lanes[job.priority].is_empty() => {
                        let _ = self.lanes[job.priority].try_pop();
                        self.dropped[job.priority] += 1;
                    }
                    _ => {
                        self.dropped[job.priority] += 1;
                        return;
                    }
                }
            }
        }
        let _ = self.lanes[job.priority].try_push(job);
    }

    fn pop(&self) -> Option<Job> {
        self.lanes.iter().rev().find_map(Ring::try_pop)
    }
}

/// Expires the least recently touched entries while the table holds more than
/// `soft_count`, in two sweeps: one that only looks (each entry's time left, which
/// under one TTL for all orders the entries by their last touch), then one that
/// expires the excess with the least time left.
struct LeastRecentlyTouched {
    soft_count: usize,
    phase: Phase,
}

enum Phase {
    Look(Vec<u64>),
    Expire { cutoff: u64, left: usize },
}

impl LeastRecentlyTouched {
    fn new(soft_count: usize) -> Self {
        Self {
            soft_count,
            phase: Phase::Look(Vec::new()),
        }
    }

    /// After the looking sweep: how many to expire, and below which time left.
    fn plan(&mut self) {
        if let Phase::Look(remaining) = &mut self.phase {
            remaining.sort_unstable();
            let excess = remaining.len().saturating_sub(self.soft_count);
            let cutoff = if excess == 0 {
                0
            } else {
                remaining[excess - 1]
            };
            self.phase = Phase::Expire {
                cutoff,
                left: excess,
            };
        }
    }
}

impl<K, V> SweepPolicy<K, V> for LeastRecentlyTouched {
    fn begin(&mut self, view: SweepView) {
        if let Phase::Look(remaining) = &mut self.phase {
            remaining.reserve(view.len);
        }
    }

    fn decide(&mut self, entry: &EntryView<'_, K, V>) -> Sweep {
        match &mut self.phase {
            Phase::Look(remaining) => {
                remaining.push(entry.remaining());
                Sweep::Keep
            }
            Phase::Expire { cutoff, left }
                if entry.is_expired() || (*left > 0 && entry.remaining() <= *cutoff) =>
            {
                *left = left.saturating_sub(1);
                Sweep::Expire
            }
            Phase::Expire { .. } => Sweep::Keep,
        }
    }
}

fn main() {
    // 1. Priority-aware drop.
    let by_priority = |job: &Job| match job.priority {
        0 => OverflowPolicy::DropNewest,
        _ => OverflowPolicy::DropOldest,
    };
    let mut buffer = PriorityBuffer::new(4);
    for id in 0..4 {
        buffer.push(Job { priority: 0, id }, &by_priority);
    }
    // Full of low-priority jobs: two high ones push out the two oldest low ones.
    buffer.push(
        Job {
            priority: 2,
            id: 10,
        },
        &by_priority,
    );
    buffer.push(
        Job {
            priority: 2,
            id: 11,
        },
        &by_priority,
    );
    // Another low one finds nothing lower to drop: the rule drops it.
    buffer.push(
        Job {
            priority: 0,
            id: 12,
        },
        &by_priority,
    );
    assert_eq!(buffer.dropped, [3, 0, 0]);
    let order: Vec<u32> = std::iter::from_fn(|| buffer.pop()).map(|j| j.id).collect();
    println!(
        "priority buffer delivered {order:?}, dropped per lane {:?}",
        buffer.dropped
    );
    assert_eq!(order, [10, 11, 2, 3]);

    // 2. LRU-ish cleanup.
    let clock = ManualClock::default();
    let config = TableConfig::new(64, Duration::from_secs(100)).with_amortized_sweep(0);
    let sessions = TtlTable::with_config(config, &clock).unwrap();
    for user in 0..10u32 {
        sessions.insert(user, format!("session {user}")).unwrap();
        clock.advance_by(Duration::from_secs(1));
    }
    // Users 0..3 come back: their entries are the most recently touched now.
    for user in 0..3 {
        assert!(sessions.touch(&user));
    }
    let mut lru = LeastRecentlyTouched::new(6);
    sessions.sweep_with(clock.now(), usize::MAX, &mut lru);
    lru.plan();
    let stats = sessions.sweep_with(clock.now(), usize::MAX, &mut lru);
    let mut kept: Vec<u32> = (0..10).filter(|u| sessions.contains(u)).collect();
    kept.sort_unstable();
    println!("lru-ish sweep removed {}, kept {kept:?}", stats.removed);
    // The four touched longest ago (users 3, 4, 5, 6) went; the rest stay.
    assert_eq!(kept, [0, 1, 2, 7, 8, 9]);
}
