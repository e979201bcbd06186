//! Properties of the outbound queue under random sequences of offers, pops,
//! resyncs, pressure changes, clock steps and closes: the counts always balance,
//! the byte limits hold, no lossless frame is lost while the queue is open, every
//! frame is delivered at most once, classes stay FIFO, and a resync comes first.
#![cfg(feature = "ws")]

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use membound::adapters::ws::{
    CloseReason, DeliveryClass, Event, EventType, Frame, Next, OfferError, Offered, Outbound,
    QueueConfig, SlowConsumer,
};
use membound::capacity::SoftCapacity;
use membound::clock::ManualClock;
use membound::pressure::{adaptive_size, PressureLevel};
use membound::OverflowPolicy;
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    /// Class (0..4, plus 4 = MESSAGES_SNAPSHOT), padding bytes, tag a revision.
    Offer(u8, usize, bool),
    TryNext,
    Resynced(bool),
    Pressure(usize),
    SetCapacity(usize),
    Advance(u64),
    CheckLimits,
    Close(bool),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        10 => (0u8..5, 0usize..40, any::<bool>()).prop_map(|(c, pad, tag)| Op::Offer(c, pad, tag)),
        6 => Just(Op::TryNext),
        1 => any::<bool>().prop_map(Op::Resynced),
        1 => (0usize..4).prop_map(Op::Pressure),
        1 => (0usize..10).prop_map(Op::SetCapacity),
        1 => (0u64..400).prop_map(Op::Advance),
        1 => Just(Op::CheckLimits),
        // Rare, so most runs exercise an open queue for long.
        1 => (0u8..8).prop_map(|n| Op::Close(n == 0)),
    ]
}

fn make(class: u8, id: u64, pad: usize, tag: bool) -> Frame {
    let kind = match class {
        0 => EventType::TextMessageContent,
        1 => EventType::StateDelta,
        2 => EventType::StateSnapshot,
        3 => EventType::Raw,
        _ => EventType::MessagesSnapshot,
    };
    let ev = Event::new(kind).with("n", id).with("pad", "x".repeat(pad));
    if tag {
        ev.with_revision(id).encode()
    } else {
        ev.encode()
    }
}

fn id_of(frame: &Frame) -> u64 {
    let v: serde_json::Value = serde_json::from_str(frame.as_str()).unwrap();
    v["n"].as_u64().unwrap()
}

fn run(ops: Vec<Op>, capacity: usize, hard: usize, soft: usize, policy: OverflowPolicy) {
    let clock = Arc::new(ManualClock::default());
    let config = QueueConfig {
        capacity,
        hard_limit_bytes: hard,
        soft_limit_bytes: soft.min(hard),
        soft_limit_for: Duration::from_millis(500),
        lossless_timeout: Duration::from_secs(1),
        droppable: policy,
    };
    let q = Outbound::new(config, clock.clone()).unwrap();
    let mut next_id = 0u64;
    let mut delivered = HashSet::new();
    let mut last_delivered = [None::<u64>; 4];
    let mut resync_owed = false;
    let mut accepted_lossless = 0u64;

    for op in ops {
        let before = q.metrics();
        match op {
            Op::Offer(class, pad, tag) => {
                next_id += 1;
                let frame = make(class, next_id, pad, tag);
                let c = frame.class();
                let len = frame.len();
                match q.offer(frame.clone()) {
                    Ok(offered) => {
                        let after = q.metrics();
                        assert!(before.closed.is_none());
                        match offered {
                            Offered::Queued => {
                                assert_eq!(after.len, before.len + 1);
                                assert_eq!(after.queued_bytes, before.queued_bytes + len);
                            }
                            Offered::DroppedOldest => {
                                assert!(before.class(DeliveryClass::Droppable).queued > 0);
                                assert!(
                                    after.class(DeliveryClass::Droppable).dropped
                                        > before.class(DeliveryClass::Droppable).dropped
                                );
                            }
                            Offered::DroppedNewest => {
                                assert!(matches!(
                                    c,
                                    DeliveryClass::Droppable | DeliveryClass::Snapshot
                                ));
                                assert_eq!(after.len, before.len);
                            }
                            Offered::ReplacedSnapshot => {
                                assert_eq!(c, DeliveryClass::Snapshot);
                                assert_eq!(after.len, before.len);
                            }
                            Offered::Resync => {
                                assert_eq!(c, DeliveryClass::StateDelta);
                                assert_eq!(after.class(c).queued, 0);
                                resync_owed = true;
                            }
                        }
                        if c == DeliveryClass::Lossless {
                            accepted_lossless += 1;
                        }
                    }
                    Err(OfferError::Full(back)) => {
                        assert_eq!(back, frame);
                        assert!(matches!(
                            c,
                            DeliveryClass::Lossless | DeliveryClass::Snapshot
                        ));
                        // Nothing droppable was left to make room.
                        let after = q.metrics();
                        assert!(after.len >= after.capacity || after.queued_bytes + len > hard);
                        assert!(
                            after.class(DeliveryClass::Droppable).queued == 0
                                || after.queued_bytes + len > hard
                        );
                    }
                    Err(OfferError::Closed(back)) => {
                        assert_eq!(back, frame);
                        assert!(before.closed.is_some());
                    }
                    Err(OfferError::SlowConsumer(back)) => {
                        assert_eq!(back, frame);
                        assert!(matches!(
                            q.close_reason(),
                            Some(CloseReason::SlowConsumer(
                                SlowConsumer::HardLimit | SlowConsumer::SoftLimit
                            ))
                        ));
                    }
                }
            }
            Op::TryNext => match q.try_next() {
                Some(Next::Frame(f)) => {
                    assert!(!resync_owed, "a frame before the owed resync");
                    let id = id_of(&f);
                    assert!(delivered.insert(id), "frame {id} delivered twice");
                    let c = f.class();
                    if c != DeliveryClass::Snapshot {
                        assert!(last_delivered[c.index()] < Some(id), "{c:?} out of order");
                        last_delivered[c.index()] = Some(id);
                    }
                }
                Some(Next::Resync) => {
                    assert!(resync_owed, "a resync nobody caused");
                    resync_owed = false;
                }
                Some(Next::Closed(reason)) => {
                    assert!(!resync_owed || !reason.drains());
                    resync_owed = false;
                    assert_eq!(q.len(), 0);
                }
                None => {
                    assert!(!resync_owed);
                    assert_eq!(q.len(), 0);
                    assert!(q.close_reason().is_none());
                }
            },
            Op::Resynced(tag) => q.resynced(tag.then_some(next_id)),
            Op::Pressure(level) => {
                // As a manager the queue is registered with applies it.
                let level = PressureLevel::ALL[level];
                q.apply_pressure(level, adaptive_size(q.max_capacity(), level))
                    .unwrap();
            }
            Op::SetCapacity(n) => {
                let _ = q.set_capacity(n);
            }
            Op::Advance(ms) => {
                clock.advance(ms);
            }
            Op::CheckLimits => {
                if let Err(reason) = q.check_limits() {
                    assert_eq!(q.close_reason(), Some(reason));
                }
            }
            Op::Close(drains) => {
                let reason = if drains {
                    CloseReason::Normal
                } else {
                    CloseReason::IdleTimeout
                };
                q.close(reason.clone());
                if before.closed.is_none() {
                    assert_eq!(q.close_reason(), Some(reason));
                    if !drains {
                        resync_owed = false;
                    }
                }
            }
        }

        // Invariants after every step.
        let m = q.metrics();
        for class in DeliveryClass::ALL {
            let c = m.class(class);
            assert_eq!(c.offered, c.sent + c.dropped + c.queued, "{class:?}: {c:?}");
        }
        assert_eq!(
            m.len as u64,
            m.classes.iter().map(|c| c.queued).sum::<u64>()
        );
        assert!(m.queued_bytes <= hard, "hard limit broken");
        assert!(m.peak_bytes <= hard);
        assert!(m.class(DeliveryClass::Droppable).queued as usize <= m.droppable_capacity);
        assert!(m.capacity >= 1 && m.capacity <= m.max_capacity);
        let discarding_close = m.closed.as_ref().is_some_and(|r| !r.drains());
        if discarding_close {
            // A close that discards the queue discards the owed resync too.
            resync_owed = false;
        } else {
            assert_eq!(m.class(DeliveryClass::Lossless).dropped, 0, "lossless lost");
        }
        assert_eq!(m.class(DeliveryClass::Lossless).offered, accepted_lossless);
        assert_eq!(m.resync_pending, resync_owed);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_sequences_keep_every_invariant(
        ops in proptest::collection::vec(op(), 1..300),
        capacity in 1usize..10,
        hard in 60usize..600,
        soft in 40usize..600,
        newest in any::<bool>(),
    ) {
        let policy = if newest { OverflowPolicy::DropNewest } else { OverflowPolicy::DropOldest };
        run(ops, capacity, hard, soft, policy);
    }
}
