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
            let n = (byte >> 5) + (byte >> 7);
            let m = byte >> 3;
            match byte & 15 {
                0 => Op::TryPush(v),
                1 => Op::Push(v),
                2 => Op::ForcePush(v),
                3 => Op::PushIter(n),
                4 => Op::PushSlice(n),
                5 => Op::WriteChunk(n),
                6 | 7 => Op::Pop,
                8 => Op::PopBatch(n),
                9 => Op::PopSlice(n),
                10 => Op::ReadChunk(n),
                11 => Op::PushHoldingChunk(n, v),
                12 => Op::PushHoldingBatch(n, v),
                13 => {
                    if byte & 16 == 0 {
                        Op::Peek
                    } else {
                        Op::PushHoldingPeek(v)
                    }
                }
                14 => Op::ReadCommit(n, m),
                _ => Op::PopBatchTake(n, m),
            }
        })
        .collect();
    run_model(cap, policy, &ops);
});
