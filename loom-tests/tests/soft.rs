//! Loom models of the ring's soft capacity: `set_capacity` racing pushes and pops.
//!
//! Items are distinct powers of two; every model checks that each is accounted for
//! exactly once: popped, handed back, still stored, or counted as dropped.
#![cfg(loom)]

use loom::sync::Arc;
use loom::thread;
use membound::ring::{Ring, RingConfig};
use membound::OverflowPolicy;
use membound_loom_tests::{account, model_bounded, model_without_waiters};

/// Shrinking a full `DropOldest` ring (evicting the excess) while a producer
/// force-pushes and a consumer pops: the evictions of both, and the pop, never take
/// the same item, and never more than needed.
#[test]
fn shrink_racing_force_push_and_pop() {
    model_without_waiters(2, || {
        let ring = Arc::new(Ring::new(2).unwrap());
        ring.try_push(1u32).unwrap();
        ring.try_push(2).unwrap();
        let shrinker = {
            let ring = ring.clone();
            thread::spawn(move || ring.set_capacity(1).unwrap())
        };
        let pusher = {
            let ring = ring.clone();
            thread::spawn(move || ring.force_push(4).unwrap())
        };
        let mut seen = 0;
        if let Some(item) = ring.try_pop() {
            account(&mut seen, item);
        }
        shrinker.join().unwrap();
        if let Some(item) = pusher.join().unwrap() {
            account(&mut seen, item);
        }
        let left: Vec<u32> = ring.drain().collect();
        assert!(left.len() <= 1, "over the new capacity: {left:?}");
        for item in left {
            account(&mut seen, item);
        }
        let dropped = ring.metrics().dropped_oldest as u32;
        assert_eq!(
            seen.count_ones() + dropped,
            3,
            "seen {seen:#b}, dropped {dropped}"
        );
    });
}

/// A push under a lowered soft capacity (below the reserved slots) racing a pop:
/// the room check reads `head` only when the cached one says "full", and never
/// lets the ring exceed the capacity in force.
#[test]
fn soft_full_push_racing_pop() {
    model_without_waiters(usize::MAX, || {
        let ring = Arc::new(
            Ring::with_config(
                RingConfig::new(1)
                    .with_max_capacity(2)
                    .with_policy(OverflowPolicy::Reject),
            )
            .unwrap(),
        );
        ring.try_push(1u32).unwrap();
        let pusher = {
            let ring = ring.clone();
            thread::spawn(move || ring.try_push(2).map_err(|e| e.into_inner()))
        };
        let popped = ring.try_pop();
        let mut seen = 0;
        account(&mut seen, popped.unwrap());
        match pusher.join().unwrap() {
            Ok(()) => account(&mut seen, ring.try_pop().unwrap()),
            Err(item) => account(&mut seen, item),
        }
        assert_eq!(seen, 0b11);
        assert!(ring.is_empty());
    });
}

/// Raising the capacity wakes a producer blocked on the lower one (a lost wake-up
/// would leave it parked forever: loom reports the deadlock).
#[test]
fn raising_capacity_wakes_a_blocked_producer() {
    model_bounded(usize::MAX, || {
        let ring = Arc::new(
            Ring::with_config(
                RingConfig::new(1)
                    .with_max_capacity(2)
                    .with_policy(OverflowPolicy::Block),
            )
            .unwrap(),
        );
        ring.try_push(1u32).unwrap();
        let producer = {
            let ring = ring.clone();
            thread::spawn(move || ring.push(2).unwrap())
        };
        ring.set_capacity(2).unwrap();
        producer.join().unwrap();
        assert_eq!(ring.drain().collect::<Vec<_>>(), [1, 2]);
    });
}
