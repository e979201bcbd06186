//! Arbitrary operation sequences with clock advances on a small TTL table,
//! differential against the `HashMap` model shared with the proptest
//! (`tests/support/table_model.rs`).
//!
//! The first byte picks the capacity (1..=32) and the full policy, the second the
//! hash seed; then every two bytes are one operation (kind, key/argument). Any
//! divergence in results, hook events, length or counters is a crash.
#![no_main]

#[path = "../../tests/support/table_model.rs"]
mod model;

use libfuzzer_sys::fuzz_target;
use membound::OverflowPolicy;
use model::{Harness, Op};

fuzz_target!(|data: &[u8]| {
    let [first, seed, rest @ ..] = data else {
        return;
    };
    let cap = usize::from(first & 31) + 1;
    let policy = if first & 32 == 0 {
        OverflowPolicy::Reject
    } else {
        OverflowPolicy::DropOldest
    };
    let mut h = Harness::new(cap, policy, u64::from(*seed));
    for (i, pair) in rest.chunks_exact(2).enumerate() {
        let (kind, arg) = (pair[0], pair[1]);
        let key = arg % 48;
        let op = match kind % 16 {
            0..=3 => Op::Insert(key, i as u32),
            4 => Op::InsertTtl(key, i as u32, arg >> 2),
            5..=6 => Op::Get(key),
            7 => Op::GetWith(key),
            8 => Op::Contains(key),
            9 | 10 => Op::Remove(key),
            11 => Op::Touch(key),
            12 => Op::Advance(arg % 16),
            13 => Op::Sweep(u16::from(arg % 40)),
            14 => Op::SweepAll,
            _ => Op::SetCapacity(arg),
        };
        h.apply(&op);
    }
});
