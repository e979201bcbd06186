//! The reference model of a ring, shared by the proptest (`tests/ring_model.rs`) and
//! the fuzz target (`fuzz/fuzz_targets/ring_ops.rs`): a `VecDeque` plus the counters
//! the ring should report. [`Model::apply`] runs one operation on both and asserts
//! that results, length and every metric agree.

use std::collections::VecDeque;

use membound::capacity::CapacityError;
use membound::ring::{Closed, PopError, PushError, Pushed, Ring, RingConfig};
use membound::OverflowPolicy;

/// One operation on a ring. Values pushed are whatever the caller chooses.
#[derive(Clone, Debug)]
pub enum Op {
    TryPush(u32),
    ForcePush(u32),
    Push(u32),
    Pop,
    PopBatch(usize),
    Drain,
    Clear,
    Close,
    SetCapacity(usize),
}

/// What the ring should hold and report.
pub struct Model {
    /// The capacity in force.
    cap: usize,
    /// What `Grow` may reach; equal to `cap` for other policies.
    limit: usize,
    /// Slots reserved.
    max: usize,
    policy: OverflowPolicy,
    /// Whether the ring grows before its policy applies.
    growing: bool,
    items: VecDeque<u32>,
    closed: bool,
    pushed: u64,
    popped: u64,
    evicted: u64,
    dropped_oldest: u64,
    dropped_newest: u64,
    rejected: u64,
    cleared: u64,
    grows: u64,
    shrinks: u64,
    /// Highest length so far.
    peak: u64,
    /// The largest capacity at which a push found the ring full.
    full_at: u64,
}

impl Model {
    /// The model of `Ring::with_config(config)`.
    pub fn new(config: RingConfig) -> Self {
        let limit = config.growth.unwrap_or(config.capacity);
        Self {
            cap: config.capacity,
            limit,
            max: config.reserved(),
            policy: config.policy,
            growing: config.growth.is_some(),
            items: VecDeque::new(),
            closed: false,
            pushed: 0,
            popped: 0,
            evicted: 0,
            dropped_oldest: 0,
            dropped_newest: 0,
            rejected: 0,
            cleared: 0,
            grows: 0,
            shrinks: 0,
            peak: 0,
            full_at: 0,
        }
    }

    fn is_full(&self) -> bool {
        self.items.len() >= self.cap
    }

    fn grows(&self) -> bool {
        self.growing
    }

    /// What a full ring (at its growth maximum) does under `policy`; returns the
    /// result.
    fn overflow(&mut self, v: u32, policy: OverflowPolicy) -> Result<Pushed, PushError<u32>> {
        match policy {
            OverflowPolicy::DropOldest => {
                self.items.pop_front();
                self.dropped_oldest += 1;
                self.store(v);
                Ok(Pushed::DroppedOldest)
            }
            OverflowPolicy::DropNewest => {
                self.dropped_newest += 1;
                Ok(Pushed::DroppedNewest)
            }
            _ => {
                self.rejected += 1;
                Err(PushError::Full(v))
            }
        }
    }

    fn store(&mut self, v: u32) {
        self.items.push_back(v);
        self.pushed += 1;
    }

    /// Applies `op` to `ring` and to the model; panics on any divergence.
    pub fn apply(&mut self, ring: &Ring<u32>, op: &Op) {
        if matches!(op, Op::TryPush(_) | Op::ForcePush(_) | Op::Push(_))
            && !self.closed
            && self.is_full()
        {
            self.full_at = self.full_at.max(self.cap as u64);
        }
        match *op {
            Op::TryPush(v) => {
                let expected = if self.closed {
                    Err(PushError::Closed(v))
                } else if self.is_full() {
                    Err(PushError::Full(v))
                } else {
                    self.store(v);
                    Ok(())
                };
                assert_eq!(ring.try_push(v), expected, "{op:?}");
            }
            Op::ForcePush(v) => {
                let expected = if self.closed {
                    Err(Closed(v))
                } else {
                    let old = if self.is_full() {
                        self.evicted += 1;
                        self.items.pop_front()
                    } else {
                        None
                    };
                    self.store(v);
                    Ok(old)
                };
                assert_eq!(ring.force_push(v), expected, "{op:?}");
            }
            Op::Push(v) => {
                let expected = if self.closed {
                    Err(PushError::Closed(v))
                } else if !self.is_full() {
                    self.store(v);
                    Ok(Pushed::Stored)
                } else {
                    if self.grows() {
                        while self.is_full() && self.cap < self.limit {
                            self.cap = (self.cap * 2).min(self.limit);
                            self.grows += 1;
                        }
                    }
                    if self.is_full() {
                        self.overflow(v, self.policy)
                    } else {
                        self.store(v);
                        Ok(Pushed::Grew)
                    }
                };
                assert_eq!(ring.push(v), expected, "{op:?}");
            }
            Op::Pop => {
                let expected = match self.items.pop_front() {
                    Some(v) => {
                        self.popped += 1;
                        Ok(v)
                    }
                    None if self.closed => Err(PopError::Closed),
                    None => Err(PopError::Empty),
                };
                assert_eq!(ring.pop(), expected, "{op:?}");
            }
            Op::PopBatch(n) => {
                let k = n.min(self.items.len());
                let expected: Vec<u32> = self.items.drain(..k).collect();
                self.popped += k as u64;
                assert_eq!(ring.pop_batch(n).collect::<Vec<_>>(), expected, "{op:?}");
            }
            Op::Drain => {
                let expected: Vec<u32> = self.items.drain(..).collect();
                self.popped += expected.len() as u64;
                assert_eq!(ring.drain().collect::<Vec<_>>(), expected, "{op:?}");
            }
            Op::Clear => {
                self.cleared += self.items.len() as u64;
                assert_eq!(ring.clear(), self.items.len(), "{op:?}");
                self.items.clear();
            }
            Op::Close => {
                assert_eq!(ring.close(), !self.closed, "{op:?}");
                self.closed = true;
            }
            Op::SetCapacity(n) => {
                let expected = if n == 0 {
                    Err(CapacityError::Zero)
                } else if n > self.max {
                    Err(CapacityError::AboveMax {
                        requested: n,
                        max: self.max,
                    })
                } else {
                    let old = self.cap;
                    self.limit = n;
                    self.cap = if self.grows() { old.min(n) } else { n };
                    if self.cap < old {
                        self.shrinks += 1;
                        if evicts_excess(self.policy) {
                            while self.items.len() > self.cap {
                                self.items.pop_front();
                                self.dropped_oldest += 1;
                            }
                        }
                    } else if self.cap > old {
                        self.grows += 1;
                    }
                    Ok(())
                };
                assert_eq!(ring.set_capacity(n), expected, "{op:?}");
            }
        }
        self.peak = self.peak.max(self.items.len() as u64);
        self.check_state(ring);
    }

    fn check_state(&self, ring: &Ring<u32>) {
        let len = self.items.len();
        assert_eq!(ring.len(), len);
        assert_eq!(ring.is_empty(), len == 0);
        assert_eq!(ring.is_full(), self.is_full());
        assert_eq!(ring.is_closed(), self.closed);
        let m = ring.metrics();
        assert_eq!(
            (m.pushed, m.popped, m.evicted, m.cleared, m.len),
            (
                self.pushed,
                self.popped,
                self.evicted,
                self.cleared,
                len as u64
            )
        );
        assert_eq!(
            (m.capacity, m.capacity_limit, m.max_capacity),
            (self.cap as u64, self.limit as u64, self.max as u64)
        );
        assert_eq!((m.grows, m.shrinks), (self.grows, self.shrinks));
        assert_eq!(
            (m.dropped_oldest, m.dropped_newest, m.rejected),
            (self.dropped_oldest, self.dropped_newest, self.rejected)
        );
        // Sampled, so a lower bound of the true peak (never above it), and at
        // least the capacity at which a push found the ring full.
        assert!(
            m.high_water <= self.peak,
            "{} > {}",
            m.high_water,
            self.peak
        );
        assert!(
            m.high_water >= self.full_at,
            "{} < {}",
            m.high_water,
            self.full_at
        );
    }
}

/// The ring's rule for items beyond a lowered capacity, restated: `DropOldest`
/// (growing or not) evicts them, every other policy keeps them.
fn evicts_excess(policy: OverflowPolicy) -> bool {
    matches!(policy, OverflowPolicy::DropOldest)
}
