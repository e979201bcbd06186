//! Single-thread properties of the ring against a `VecDeque` model: every operation,
//! including `force_push`, the three policies, `close`, `clear` and batch pops, must
//! give the model's answer and leave consistent metrics.

#[path = "support/ring_model.rs"]
mod support;

use membound::ring::{Closed, PopError, PushError, Ring, RingConfig, StaticRing, MAX_CAPACITY};
use membound::ConfigError;
use membound::OverflowPolicy;
use proptest::prelude::*;
use support::{Model, Op};

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
        1 => (0usize..14).prop_map(Op::SetCapacity),
    ]
}

fn fallback() -> impl Strategy<Value = OverflowPolicy> {
    prop_oneof![
        Just(OverflowPolicy::DropOldest),
        Just(OverflowPolicy::DropNewest),
        Just(OverflowPolicy::Reject),
    ]
}

/// Capacity 1..9; sometimes a reservation above it; every policy that does not
/// block, growing or not.
fn config() -> impl Strategy<Value = RingConfig> {
    (1usize..9, prop::option::of(0usize..5), 0usize..4).prop_flat_map(|(cap, extra, policy)| {
        let policy = match policy {
            0 => Just((OverflowPolicy::DropOldest, None)).boxed(),
            1 => Just((OverflowPolicy::DropNewest, None)).boxed(),
            2 => Just((OverflowPolicy::Reject, None)).boxed(),
            _ => (cap..cap + 9, fallback())
                .prop_map(|(max, then)| (then, Some(max)))
                .boxed(),
        };
        policy.prop_map(move |(policy, growth)| {
            let mut config = RingConfig::new(cap).with_policy(policy);
            if let Some(max) = growth {
                config = config.with_growth(max);
            }
            match extra {
                Some(extra) => config.with_max_capacity(cap + extra),
                None => config,
            }
        })
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Every operation gives the model's answer and leaves consistent metrics
    /// (`Model::apply` asserts; proptest shrinks a panic to a minimal sequence).
    #[test]
    fn ring_matches_vecdeque(
        config in config(),
        ops in prop::collection::vec(op(), 0..200),
    ) {
        let ring = Ring::with_config(config).unwrap();
        let mut model = Model::new(config);
        for op in &ops {
            model.apply(&ring, op);
        }
    }
}

#[test]
fn zero_and_oversized_capacities_are_errors_not_substitutes() {
    assert_eq!(Ring::<u8>::new(0).unwrap_err(), ConfigError::ZeroCapacity);
    assert_eq!(
        Ring::<u8>::new(MAX_CAPACITY + 1).unwrap_err(),
        ConfigError::CapacityTooLarge {
            requested: MAX_CAPACITY + 1,
            max: MAX_CAPACITY,
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
        "capacity must be at least 1"
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

/// What a crossbeam `ArrayQueue` user expects: iteration by value (oldest first,
/// exact length, each item once) and unwind safety, with a ring that stays whole
/// after a panic in an evicted item's `Drop` is caught.
#[cfg(feature = "std")]
#[test]
fn crossbeam_parity_into_iter_and_unwind_safety() {
    use std::panic::{catch_unwind, AssertUnwindSafe, RefUnwindSafe, UnwindSafe};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    fn unwind_safe<T: UnwindSafe + RefUnwindSafe>(_: &T) {}

    let ring = Ring::new(3).unwrap();
    for i in 0..5 {
        ring.push(i).unwrap(); // evicts 0 and 1
    }
    unwind_safe(&ring);
    let mut items = ring.into_iter();
    assert_eq!(items.len(), 3);
    assert_eq!(items.next(), Some(2));
    assert_eq!(items.collect::<Vec<_>>(), [3, 4]);

    // Items left in the iterator are dropped with it, once.
    struct Counted(Arc<AtomicUsize>, bool);
    impl Drop for Counted {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::Relaxed);
            if self.1 {
                panic!("a value's own drop panics");
            }
        }
    }
    let drops = Arc::new(AtomicUsize::new(0));
    let ring = Ring::new(2).unwrap();
    ring.push(Counted(drops.clone(), true)).unwrap();
    ring.push(Counted(drops.clone(), false)).unwrap();
    // The push evicts the first value, whose drop panics: caught, the ring is whole.
    let caught = catch_unwind(AssertUnwindSafe(|| {
        ring.push(Counted(drops.clone(), false)).unwrap();
    }));
    assert!(caught.is_err());
    assert_eq!(drops.load(Ordering::Relaxed), 1);
    assert_eq!(ring.len(), 2);
    let mut items = ring.into_iter();
    assert!(items.next().is_some());
    drop(items);
    assert_eq!(drops.load(Ordering::Relaxed), 3, "every value dropped once");
}
