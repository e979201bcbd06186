//! Arbitrary operation sequences on a small ring, differential against the
//! `VecDeque` model shared with the proptest (`tests/support/ring_model.rs`).
//!
//! The first byte picks the capacity (1..=8) and the policy; every following byte is
//! one operation. Any divergence in results, length or metrics is a crash.
#![no_main]

#[path = "../../tests/support/ring_model.rs"]
mod model;

use libfuzzer_sys::fuzz_target;
use membound::ring::{OverflowPolicy, Ring, RingConfig};
use model::{Model, Op};

fuzz_target!(|data: &[u8]| {
    let Some((&first, bytes)) = data.split_first() else {
        return;
    };
    let cap = usize::from(first & 7) + 1;
    let policy = match (first >> 3) % 3 {
        0 => OverflowPolicy::DropOldest,
        1 => OverflowPolicy::DropNewest,
        _ => OverflowPolicy::Reject,
    };
    let ring = Ring::with_config(RingConfig::new(cap).with_policy(policy)).unwrap();
    let mut model = Model::new(cap, policy);
    for (i, &byte) in bytes.iter().enumerate() {
        let v = i as u32;
        let op = match byte % 8 {
            0 | 1 => Op::TryPush(v),
            2 => Op::ForcePush(v),
            3 => Op::Push(v),
            4 | 5 => Op::Pop,
            6 => Op::PopBatch(usize::from(byte >> 3) % (cap + 2)),
            _ => match byte >> 3 {
                0..=9 => Op::Close,
                10..=19 => Op::Clear,
                _ => Op::Drain,
            },
        };
        model.apply(&ring, &op);
    }
});
