//! The reference model of a ring, shared by the proptest (`tests/ring_model.rs`) and
//! the fuzz target (`fuzz/fuzz_targets/ring_ops.rs`): a `VecDeque` plus the counters
//! the ring should report. [`Model::apply`] runs one operation on both and asserts
//! that results, length and every metric agree.

use std::collections::VecDeque;

use membound::ring::{Closed, OverflowPolicy, PopError, PushError, Pushed, Ring};

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
}

/// What the ring should hold and report.
pub struct Model {
    cap: usize,
    policy: OverflowPolicy,
    items: VecDeque<u32>,
    closed: bool,
    pushed: u64,
    popped: u64,
    evicted: u64,
    dropped_oldest: u64,
    dropped_newest: u64,
    rejected: u64,
    cleared: u64,
    /// Highest length so far.
    peak: u64,
    /// Whether a push has found the ring full.
    saw_full: bool,
}

impl Model {
    pub fn new(cap: usize, policy: OverflowPolicy) -> Self {
        Self {
            cap,
            policy,
            items: VecDeque::new(),
            closed: false,
            pushed: 0,
            popped: 0,
            evicted: 0,
            dropped_oldest: 0,
            dropped_newest: 0,
            rejected: 0,
            cleared: 0,
            peak: 0,
            saw_full: false,
        }
    }

    fn is_full(&self) -> bool {
        self.items.len() == self.cap
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
            self.saw_full = true;
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
                    match self.policy {
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
            (m.pushed, m.popped, m.evicted, m.cleared, m.len, m.capacity),
            (
                self.pushed,
                self.popped,
                self.evicted,
                self.cleared,
                len as u64,
                self.cap as u64
            )
        );
        assert_eq!(
            (m.dropped_oldest, m.dropped_newest, m.rejected),
            (self.dropped_oldest, self.dropped_newest, self.rejected)
        );
        // Sampled, so a lower bound of the true peak (never above it), and exact
        // once a push has found the ring full.
        assert!(m.high_water <= self.peak);
        if self.saw_full {
            assert_eq!(m.high_water, self.cap as u64);
        }
    }
}
