//! Single-thread properties of the TTL table against a `HashMap` model, on a
//! `ManualClock`: every operation, clock advance, sweep and capacity change must give
//! the model's answer and the right eviction-hook events.

#[path = "support/table_model.rs"]
mod support;

use membound::OverflowPolicy;
use proptest::prelude::*;
use support::{Harness, Op};

fn op(keys: u8) -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..keys, any::<u32>()).prop_map(|(k, v)| Op::Insert(k, v)),
        3 => (0..keys, any::<u32>(), 0u8..40).prop_map(|(k, v, t)| Op::InsertTtl(k, v, t)),
        5 => (0..keys).prop_map(Op::Get),
        1 => (0..keys).prop_map(Op::GetWith),
        1 => (0..keys).prop_map(Op::Contains),
        3 => (0..keys).prop_map(Op::Remove),
        2 => (0..keys).prop_map(Op::Touch),
        3 => (0u8..12).prop_map(Op::Advance),
        2 => (0u16..40).prop_map(Op::Sweep),
        1 => Just(Op::SweepAll),
        1 => any::<u8>().prop_map(Op::SetCapacity),
    ]
}

fn policy() -> impl Strategy<Value = OverflowPolicy> {
    prop_oneof![
        Just(OverflowPolicy::Reject),
        Just(OverflowPolicy::DropOldest)
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Small tables, few keys: fullness, replacement, expiry and eviction all happen.
    #[test]
    fn small_tables_match_the_model(
        cap in 1usize..12,
        policy in policy(),
        seed in any::<u64>(),
        ops in proptest::collection::vec(op(16), 1..200),
    ) {
        let mut h = Harness::new(cap, policy, seed);
        for op in &ops {
            h.apply(op);
        }
    }

    /// Larger tables with long probe chains and tombstone purging.
    #[test]
    fn larger_tables_match_the_model(
        cap in 40usize..120,
        policy in policy(),
        seed in any::<u64>(),
        ops in proptest::collection::vec(op(160), 100..600),
    ) {
        let mut h = Harness::new(cap, policy, seed);
        for op in &ops {
            h.apply(op);
        }
    }
}
