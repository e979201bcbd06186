//! Arbitrary operation sequences on a small ring, differential against a `VecDeque`.
//!
//! The first byte picks the capacity (1..=8) and the policy; every following byte is
//! one operation. Any divergence in results, length or metrics is a crash.
#![no_main]

use std::collections::VecDeque;

use libfuzzer_sys::fuzz_target;
use membound::ring::{Closed, OverflowPolicy, PopError, PushError, Pushed, Ring, RingConfig};

fuzz_target!(|data: &[u8]| {
    let Some((&first, ops)) = data.split_first() else {
        return;
    };
    let cap = usize::from(first & 7) + 1;
    let policy = match (first >> 3) % 3 {
        0 => OverflowPolicy::DropOldest,
        1 => OverflowPolicy::DropNewest,
        _ => OverflowPolicy::Reject,
    };
    let ring = Ring::with_config(RingConfig::new(cap).with_policy(policy)).unwrap();
    let mut model: VecDeque<u32> = VecDeque::new();
    let mut closed = false;
    let (mut pushed, mut popped, mut evicted, mut cleared) = (0u64, 0u64, 0u64, 0u64);
    let (mut dropped_oldest, mut dropped_newest, mut rejected) = (0u64, 0u64, 0u64);

    for (i, &op) in ops.iter().enumerate() {
        let v = i as u32;
        match op % 8 {
            0 | 1 => {
                let expected = if closed {
                    Err(PushError::Closed(v))
                } else if model.len() == cap {
                    Err(PushError::Full(v))
                } else {
                    model.push_back(v);
                    pushed += 1;
                    Ok(())
                };
                assert_eq!(ring.try_push(v), expected);
            }
            2 => {
                let expected = if closed {
                    Err(Closed(v))
                } else {
                    let old = if model.len() == cap {
                        evicted += 1;
                        model.pop_front()
                    } else {
                        None
                    };
                    model.push_back(v);
                    pushed += 1;
                    Ok(old)
                };
                assert_eq!(ring.force_push(v), expected);
            }
            3 => {
                let expected = if closed {
                    Err(PushError::Closed(v))
                } else if model.len() < cap {
                    model.push_back(v);
                    pushed += 1;
                    Ok(Pushed::Stored)
                } else {
                    match policy {
                        OverflowPolicy::DropOldest => {
                            model.pop_front();
                            model.push_back(v);
                            pushed += 1;
                            dropped_oldest += 1;
                            Ok(Pushed::DroppedOldest)
                        }
                        OverflowPolicy::DropNewest => {
                            dropped_newest += 1;
                            Ok(Pushed::DroppedNewest)
                        }
                        _ => {
                            rejected += 1;
                            Err(PushError::Full(v))
                        }
                    }
                };
                assert_eq!(ring.push(v), expected);
            }
            4 | 5 => {
                let expected = match model.pop_front() {
                    Some(x) => {
                        popped += 1;
                        Ok(x)
                    }
                    None if closed => Err(PopError::Closed),
                    None => Err(PopError::Empty),
                };
                assert_eq!(ring.pop(), expected);
            }
            6 => {
                let n = usize::from(op >> 3) % (cap + 2);
                let k = n.min(model.len());
                let expected: Vec<u32> = model.drain(..k).collect();
                popped += k as u64;
                assert_eq!(ring.pop_batch(n).collect::<Vec<_>>(), expected);
            }
            _ => match op >> 3 {
                0..=9 => {
                    assert_eq!(ring.close(), !closed);
                    closed = true;
                }
                10..=19 => {
                    cleared += model.len() as u64;
                    assert_eq!(ring.clear(), model.len());
                    model.clear();
                }
                _ => {
                    let expected: Vec<u32> = model.drain(..).collect();
                    popped += expected.len() as u64;
                    assert_eq!(ring.drain().collect::<Vec<_>>(), expected);
                }
            },
        }
        assert_eq!(ring.len(), model.len());
        let m = ring.metrics();
        assert_eq!(
            (m.pushed, m.popped, m.evicted, m.cleared, m.len),
            (pushed, popped, evicted, cleared, model.len() as u64)
        );
        assert_eq!(
            (m.dropped_oldest, m.dropped_newest, m.rejected),
            (dropped_oldest, dropped_newest, rejected)
        );
        assert!(m.high_water >= m.len && m.high_water <= cap as u64);
    }
});
