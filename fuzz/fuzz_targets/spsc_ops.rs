//! Arbitrary operation sequences on a small SPSC channel, differential against the
//! `VecDeque` model shared with the proptest (`tests/support/spsc_model.rs`).
//!
//! The first byte picks the capacity (1..=8) and the policy; every following byte is
//! one operation. Any divergence in results, lengths or lag reports is a crash.
#![no_main]

#[path = "../../tests/support/spsc_model.rs"]
mod model;

use libfuzzer_sys::fuzz_target;
use membound::OverflowPolicy;
use model::{run_model, Op};

fuzz_target!(|data: &[u8]| {
    let Some((&first, bytes)) = data.split_first() else {
        return;
    };
    let cap = usize::from(first & 7) + 1;
    let policy = if first & 8 != 0 {
        OverflowPolicy::DropOldest
    } else {
        OverflowPolicy::Reject
    };
    let ops: Vec<Op> = bytes
        .iter()
        .enumerate()
        .map(|(i, &byte)| {
            let v = i as u32;
            let n = byte >> 4;
            match byte & 15 {
                0 => Op::TryPush(v),
                1 | 2 => Op::Push(v),
                3 => Op::ForcePush(v),
                4 => Op::PushIter(n),
                5 => Op::PushSlice(n),
                6 => Op::WriteChunk(n),
                7..=9 => Op::Pop,
                10 => Op::PopBatch(n),
                11 => Op::PopSlice(n),
                12 | 13 => Op::ReadChunk(n),
                14 => Op::PushHoldingChunk(n, v),
                _ => Op::PushHoldingBatch(n, v),
            }
        })
        .collect();
    run_model(cap, policy, &ops);
});
