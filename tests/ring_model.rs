//! Single-thread properties of the ring against a `VecDeque` model: every operation,
//! including `force_push`, the three policies, `close`, `clear` and batch pops, must
//! give the model's answer and leave consistent metrics.

use std::collections::VecDeque;

use membound::ring::{
    Closed, ConfigError, OverflowPolicy, PopError, PushError, Pushed, Ring, RingConfig, StaticRing,
    MAX_CAPACITY,
};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    TryPush(u32),
    ForcePush(u32),
    Push(u32),
    Pop,
    PopBatch(usize),
    Drain,
    Clear,
    Close,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => any::<u32>().prop_map(Op::TryPush),
        3 => any::<u32>().prop_map(Op::ForcePush),
        3 => any::<u32>().prop_map(Op::Push),
        4 => Just(Op::Pop),
        1 => (0usize..6).prop_map(Op::PopBatch),
        1 => Just(Op::Drain),
        1 => Just(Op::Clear),
        1 => Just(Op::Close),
    ]
}

fn policy() -> impl Strategy<Value = OverflowPolicy> {
    prop_oneof![
        Just(OverflowPolicy::DropOldest),
        Just(OverflowPolicy::DropNewest),
        Just(OverflowPolicy::Reject),
    ]
}

/// The expected counters, kept by the model.
#[derive(Default)]
struct Counts {
    pushed: u64,
    popped: u64,
    evicted: u64,
    dropped_oldest: u64,
    dropped_newest: u64,
    rejected: u64,
    cleared: u64,
    high_water: u64,
    /// A push found the ring full.
    saw_full: bool,
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn ring_matches_vecdeque(cap in 1usize..9, policy in policy(), ops in prop::collection::vec(op(), 0..200)) {
        let ring = Ring::with_config(RingConfig::new(cap).with_policy(policy)).unwrap();
        let mut model = VecDeque::new();
        let mut closed = false;
        let mut c = Counts::default();

        for op in ops {
            if matches!(op, Op::TryPush(_) | Op::ForcePush(_) | Op::Push(_)) && !closed && model.len() == cap {
                c.saw_full = true;
            }
            match op {
                Op::TryPush(v) => {
                    let expected = if closed {
                        Err(PushError::Closed(v))
                    } else if model.len() == cap {
                        Err(PushError::Full(v))
                    } else {
                        model.push_back(v);
                        c.pushed += 1;
                        Ok(())
                    };
                    prop_assert_eq!(ring.try_push(v), expected);
                }
                Op::ForcePush(v) => {
                    let expected = if closed {
                        Err(Closed(v))
                    } else {
                        let evicted = if model.len() == cap { c.evicted += 1; model.pop_front() } else { None };
                        model.push_back(v);
                        c.pushed += 1;
                        Ok(evicted)
                    };
                    prop_assert_eq!(ring.force_push(v), expected);
                }
                Op::Push(v) => {
                    let expected = if closed {
                        Err(PushError::Closed(v))
                    } else if model.len() < cap {
                        model.push_back(v);
                        c.pushed += 1;
                        Ok(Pushed::Stored)
                    } else {
                        match policy {
                            OverflowPolicy::DropOldest => {
                                model.pop_front();
                                model.push_back(v);
                                c.pushed += 1;
                                c.dropped_oldest += 1;
                                Ok(Pushed::DroppedOldest)
                            }
                            OverflowPolicy::DropNewest => {
                                c.dropped_newest += 1;
                                Ok(Pushed::DroppedNewest)
                            }
                            _ => {
                                c.rejected += 1;
                                Err(PushError::Full(v))
                            }
                        }
                    };
                    prop_assert_eq!(ring.push(v), expected);
                }
                Op::Pop => {
                    let expected = match model.pop_front() {
                        Some(v) => { c.popped += 1; Ok(v) }
                        None if closed => Err(PopError::Closed),
                        None => Err(PopError::Empty),
                    };
                    prop_assert_eq!(ring.pop(), expected);
                }
                Op::PopBatch(n) => {
                    let k = n.min(model.len());
                    let expected: Vec<u32> = model.drain(..k).collect();
                    c.popped += k as u64;
                    prop_assert_eq!(ring.pop_batch(n).collect::<Vec<_>>(), expected);
                }
                Op::Drain => {
                    let expected: Vec<u32> = model.drain(..).collect();
                    c.popped += expected.len() as u64;
                    prop_assert_eq!(ring.drain().collect::<Vec<_>>(), expected);
                }
                Op::Clear => {
                    c.cleared += model.len() as u64;
                    prop_assert_eq!(ring.clear(), model.len());
                    model.clear();
                }
                Op::Close => {
                    prop_assert_eq!(ring.close(), !closed);
                    closed = true;
                }
            }
            c.high_water = c.high_water.max(model.len() as u64);

            prop_assert_eq!(ring.len(), model.len());
            prop_assert_eq!(ring.is_empty(), model.is_empty());
            prop_assert_eq!(ring.is_full(), model.len() == cap);
            prop_assert_eq!(ring.is_closed(), closed);
            let m = ring.metrics();
            prop_assert_eq!(
                (m.pushed, m.popped, m.evicted, m.dropped_oldest, m.dropped_newest, m.rejected, m.cleared, m.len, m.capacity),
                (c.pushed, c.popped, c.evicted, c.dropped_oldest, c.dropped_newest, c.rejected, c.cleared, model.len() as u64, cap as u64)
            );
            prop_assert_eq!(m.pushed, m.popped + m.evicted + m.dropped_oldest + m.cleared + m.len);
            // Sampled, so a lower bound of the true peak, but never below what is
            // stored now, and exact once a push has found the ring full.
            prop_assert!(m.high_water <= c.high_water && m.high_water >= m.len);
            if c.saw_full {
                prop_assert_eq!(m.high_water, cap as u64);
            }
        }
    }
}

#[test]
fn zero_and_oversized_capacities_are_errors_not_substitutes() {
    assert_eq!(Ring::<u8>::new(0).unwrap_err(), ConfigError::ZeroCapacity);
    assert_eq!(
        Ring::<u8>::new(MAX_CAPACITY + 1).unwrap_err(),
        ConfigError::CapacityTooLarge {
            requested: MAX_CAPACITY + 1
        }
    );
    for cap in [1, 2, 3, 5, 7, 100, 1000, 1023, 1025] {
        let ring = Ring::new(cap).unwrap();
        assert_eq!(ring.capacity(), cap);
        for i in 0..cap {
            ring.try_push(i).unwrap();
        }
        assert!(ring.is_full(), "capacity {cap} holds exactly {cap} items");
        assert_eq!(ring.try_push(usize::MAX), Err(PushError::Full(usize::MAX)));
        assert_eq!(
            ring.drain().collect::<Vec<_>>(),
            (0..cap).collect::<Vec<_>>()
        );
    }
}

#[test]
fn positions_survive_many_laps() {
    // Odd capacity so the lap encoding's index/lap boundary is crossed unevenly.
    let ring = Ring::new(3).unwrap();
    for i in 0u64..100_000 {
        ring.try_push(i).unwrap();
        if i % 3 == 2 {
            assert_eq!(ring.drain().collect::<Vec<_>>(), [i - 2, i - 1, i]);
        }
    }
    let m = ring.metrics();
    assert_eq!((m.pushed, m.popped, m.len), (100_000, 99_999, 1));
}

#[test]
fn high_water_is_sampled_on_large_rings() {
    let ring = Ring::new(1000).unwrap();
    for i in 0..300 {
        ring.try_push(i).unwrap();
    }
    ring.drain().for_each(drop);
    let hw = ring.metrics().high_water;
    assert!((300 - 64..=300).contains(&hw), "high water {hw}");
}

#[test]
fn static_ring_works_from_a_static() {
    static RING: StaticRing<u64, 3> = StaticRing::new();
    for i in 0..5 {
        RING.push(i).unwrap();
    }
    assert_eq!(RING.metrics().dropped_oldest, 2);
    assert_eq!(RING.drain().collect::<Vec<_>>(), [2, 3, 4]);
    assert_eq!(RING.policy(), OverflowPolicy::DropOldest);
}

#[test]
fn errors_display_and_return_items() {
    let e = PushError::Full(String::from("x"));
    assert_eq!(e.to_string(), "ring is full");
    assert!(e.is_full() && !e.is_closed());
    assert_eq!(e.into_inner(), "x");
    assert_eq!(PushError::Closed(1).to_string(), "ring is closed");
    assert_eq!(Closed(2).to_string(), "ring is closed");
    assert_eq!(PushError::from(Closed(3)), PushError::Closed(3));
    assert_eq!(PopError::Closed.to_string(), "ring is closed and drained");
    assert_eq!(
        ConfigError::ZeroCapacity.to_string(),
        "ring capacity must be at least 1"
    );
    let boxed: Box<dyn std::error::Error> = Box::new(PushError::Full(1));
    assert_eq!(boxed.to_string(), "ring is full");
}

#[test]
fn debug_shows_state_without_items() {
    let ring = Ring::new(2).unwrap();
    ring.try_push(1).unwrap();
    assert_eq!(
        format!("{ring:?}"),
        "Ring { capacity: 2, len: 1, policy: DropOldest, closed: false }"
    );
}

#[cfg(feature = "serde")]
#[test]
fn config_round_trips_through_serde() {
    let cfg = RingConfig::new(7).with_policy(OverflowPolicy::Reject);
    let json = serde_json::to_string(&cfg).unwrap();
    assert_eq!(json, r#"{"capacity":7,"policy":"Reject"}"#);
    assert_eq!(serde_json::from_str::<RingConfig>(&json).unwrap(), cfg);
    assert!(serde_json::from_str::<RingConfig>(r#"{"capacity":7,"bogus":1}"#).is_err());
}
