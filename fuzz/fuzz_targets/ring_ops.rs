//! Arbitrary operation sequences on a small ring, differential against the
//! `VecDeque` model shared with the proptest (`tests/support/ring_model.rs`).
//!
//! The first byte picks the capacity (1..=8) and the policy, the second the
//! reservation and a growth maximum; every following byte is one operation. Any
//! divergence in results, length or metrics is a crash.
#![no_main]

#[path = "../../tests/support/ring_model.rs"]
mod model;

use libfuzzer_sys::fuzz_target;
use membound::ring::{Ring, RingConfig};
use membound::OverflowPolicy;
use model::{Model, Op};

fuzz_target!(|data: &[u8]| {
    let [first, second, bytes @ ..] = data else {
        return;
    };
    let cap = usize::from(first & 7) + 1;
    let extra = usize::from(second & 7);
    let then = match (second >> 3) % 3 {
        0 => OverflowPolicy::DropOldest,
        1 => OverflowPolicy::DropNewest,
        _ => OverflowPolicy::Reject,
    };
    let (policy, growth) = match (first >> 3) % 4 {
        0 => (OverflowPolicy::DropOldest, None),
        1 => (OverflowPolicy::DropNewest, None),
        2 => (OverflowPolicy::Reject, None),
        _ => (then, Some(cap + extra)),
    };
    let mut config = RingConfig::new(cap).with_policy(policy);
    if let Some(max) = growth {
        config = config.with_growth(max);
    }
    if second & 0x80 != 0 {
        config = config.with_max_capacity(cap + extra);
    }
    let ring = Ring::with_config(config).unwrap();
    let mut model = Model::new(config);
    for (i, &byte) in bytes.iter().enumerate() {
        let v = i as u32;
        let op = match byte % 8 {
            0 | 1 => Op::TryPush(v),
            2 => Op::ForcePush(v),
            3 => Op::Push(v),
            4 | 5 => Op::Pop,
            6 => Op::PopBatch(usize::from(byte >> 3) % (cap + 2)),
            _ => match byte >> 3 {
                0..=5 => Op::Close,
                6..=13 => Op::Clear,
                14..=21 => Op::Drain,
                n => Op::SetCapacity(usize::from(n - 22)),
            },
        };
        model.apply(&ring, &op);
    }
});
