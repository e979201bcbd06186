//! The reference model of the SPSC channel, shared by the proptest (`tests/spsc.rs`)
//! and the fuzz target (`fuzz/fuzz_targets/spsc_ops.rs`): a `VecDeque` plus the lag
//! the consumer has not been told of. [`run_model`] applies operations to a channel
//! and the model and panics on any divergence. Items the consumer holds claimed (a
//! chunk or batch kept across a push, a peeked item until it is popped) still
//! occupy their slots and are not evictable: a push that needs the oldest one's
//! slot is refused with `Full`. Chunks and batches dropped with items unread leave
//! those items in the channel, as rtrb's do.

use std::collections::VecDeque;

use membound::ring::spsc::{self, ChunkError};
use membound::ring::PushError;
use membound::OverflowPolicy;

/// One operation on the channel; batch sizes are small numbers.
#[derive(Clone, Debug)]
pub enum Op {
    TryPush(u32),
    Push(u32),
    ForcePush(u32),
    PushIter(u8),
    PushSlice(u8),
    WriteChunk(u8),
    Pop,
    PopBatch(u8),
    PopSlice(u8),
    ReadChunk(u8),
    /// `read_chunk(n)` held across `push(v)`, then committed.
    PushHoldingChunk(u8, u32),
    /// `pop_batch(n)` held, not yet iterated, across `push(v)`, then drained.
    PushHoldingBatch(u8, u32),
    /// `peek()`.
    Peek,
    /// `peek()` held across `push(v)`.
    PushHoldingPeek(u32),
    /// `read_chunk(n)`, then `commit(m % (n + 1))`: the rest stays.
    ReadCommit(u8, u8),
    /// `pop_batch(n)`, `m % (n + 1)` items taken, then dropped: the rest stays.
    PopBatchTake(u8, u8),
}

/// Applies `ops` to a channel and to a `VecDeque` model; any divergence panics.
pub fn run_model(cap: usize, policy: OverflowPolicy, ops: &[Op]) {
    let (mut tx, mut rx) = spsc::channel_with_policy(cap, policy).unwrap();
    let mut model: VecDeque<u32> = VecDeque::new();
    let mut lag = 0u64; // evicted, not yet reported
    let mut next = 1_000_000u32; // values for batch pushes
    let drop_oldest = policy == OverflowPolicy::DropOldest;
    // DropOldest: front items claimed by a peek, until popped or a chunk or batch
    // gives them back.
    let mut held = 0usize;
    for op in ops {
        match *op {
            Op::TryPush(v) => {
                let expected = if model.len() == cap {
                    Err(PushError::Full(v))
                } else {
                    model.push_back(v);
                    Ok(())
                };
                assert_eq!(tx.try_push(v), expected, "{op:?}");
            }
            Op::Push(v) | Op::ForcePush(v) => {
                let expected = if model.len() < cap {
                    model.push_back(v);
                    Ok(None)
                } else if drop_oldest && held == 0 {
                    let old = model.pop_front();
                    lag += 1;
                    model.push_back(v);
                    Ok(old)
                } else {
                    Err(PushError::Full(v))
                };
                if matches!(op, Op::Push(_)) {
                    assert_eq!(tx.push(v), expected.map(|_| ()), "{op:?}");
                } else {
                    assert_eq!(tx.force_push(v), expected, "{op:?}");
                }
            }
            Op::PushIter(n) | Op::PushSlice(n) | Op::WriteChunk(n) => {
                let values: Vec<u32> = (0..u32::from(n)).map(|i| next + i).collect();
                next += u32::from(n);
                let room = cap - model.len();
                // A write chunk is all or nothing.
                let fits = if matches!(op, Op::WriteChunk(_)) && values.len() > room {
                    0
                } else {
                    values.len().min(room)
                };
                model.extend(&values[..fits]);
                let pushed = match op {
                    Op::PushIter(_) => {
                        let mut iter = values.iter().copied();
                        let pushed = tx.push_iter(&mut iter);
                        assert_eq!(
                            iter.next(),
                            values.get(pushed).copied(),
                            "iterator left intact"
                        );
                        pushed
                    }
                    Op::PushSlice(_) => tx.push_slice(&values),
                    _ => match tx.write_chunk_uninit(values.len()) {
                        Ok(chunk) => chunk.fill_from_iter(values.iter().copied()),
                        Err(ChunkError::TooFewSlots(free)) => {
                            assert_eq!(free, room, "{op:?}");
                            0
                        }
                        Err(e) => panic!("{e:?}"),
                    },
                };
                assert_eq!(pushed, fits, "{op:?}");
            }
            Op::Pop => {
                let expected = if lag > 0 {
                    Err(spsc::PopError::Lagged(std::mem::take(&mut lag)))
                } else {
                    model.pop_front().ok_or(spsc::PopError::Empty)
                };
                if expected.is_ok() {
                    held = held.saturating_sub(1);
                }
                assert_eq!(rx.pop(), expected, "{op:?}");
            }
            Op::Peek | Op::PushHoldingPeek(_) => {
                let expected = if lag > 0 {
                    Err(spsc::PopError::Lagged(std::mem::take(&mut lag)))
                } else {
                    model.front().copied().ok_or(spsc::PopError::Empty)
                };
                if expected.is_ok() && drop_oldest {
                    held = held.max(1);
                }
                let peeked = rx.peek().copied();
                assert_eq!(peeked, expected, "{op:?}");
                if let Op::PushHoldingPeek(v) = *op {
                    // Peeked again (a lag, if any, was reported above): held while
                    // the push runs.
                    let front = model.front().copied();
                    if front.is_some() && drop_oldest {
                        held = held.max(1);
                    }
                    let expected = if model.len() < cap {
                        model.push_back(v);
                        Ok(())
                    } else if drop_oldest && held == 0 {
                        model.pop_front();
                        lag += 1;
                        model.push_back(v);
                        Ok(())
                    } else {
                        Err(PushError::Full(v))
                    };
                    let peek = rx.peek();
                    assert_eq!(tx.push(v), expected, "{op:?}");
                    // What a held peek sees is neither evicted nor overwritten.
                    assert_eq!(peek.ok().copied(), front, "{op:?}");
                }
            }
            Op::ReadCommit(n, m) => {
                let n = usize::from(n);
                if n > model.len() {
                    let err = rx.read_chunk(n).map(|_| ()).unwrap_err();
                    assert_eq!(err, ChunkError::TooFewSlots(model.len()), "{op:?}");
                    if !model.is_empty() {
                        // The lag met on the way is skipped.
                        lag = 0;
                    }
                    held = 0;
                } else {
                    let reported = if n > 0 { std::mem::take(&mut lag) } else { 0 };
                    let m = usize::from(m) % (n + 1);
                    let chunk = rx.read_chunk(n).unwrap();
                    assert_eq!(chunk.lagged(), reported);
                    let (a, b) = chunk.as_slices();
                    let got = [a, b].concat();
                    assert_eq!(got, model.iter().take(n).copied().collect::<Vec<_>>());
                    chunk.commit(m);
                    model.drain(..m);
                    held = 0;
                }
            }
            Op::PopBatchTake(n, m) => {
                let k = usize::from(n).min(model.len());
                let m = usize::from(m) % (k + 1);
                let reported = if n > 0 { std::mem::take(&mut lag) } else { 0 };
                let mut batch = rx.pop_batch(usize::from(n));
                assert_eq!(batch.lagged(), reported);
                assert_eq!(batch.len(), k, "{op:?}");
                let got: Vec<u32> = batch.by_ref().take(m).collect();
                drop(batch);
                let expected: Vec<u32> = model.drain(..m).collect();
                assert_eq!(got, expected, "{op:?}");
                held = 0;
            }
            Op::ReadChunk(n) if usize::from(n) > model.len() => {
                let err = rx.read_chunk(usize::from(n)).map(|_| ()).unwrap_err();
                assert_eq!(err, ChunkError::TooFewSlots(model.len()), "{op:?}");
                if !model.is_empty() {
                    lag = 0;
                }
                held = 0;
            }
            Op::PopBatch(n) | Op::PopSlice(n) | Op::ReadChunk(n) => {
                held = 0;
                let k = usize::from(n).min(model.len());
                let expected: Vec<u32> = model.drain(..k).collect();
                // A batch of 0 claims nothing and so reports nothing.
                let reported = if n > 0 { std::mem::take(&mut lag) } else { 0 };
                let got = match op {
                    Op::PopBatch(_) => {
                        let batch = rx.pop_batch(usize::from(n));
                        assert_eq!(batch.lagged(), reported);
                        batch.collect()
                    }
                    Op::PopSlice(_) => {
                        let mut out = vec![0; usize::from(n)];
                        let got = rx.pop_slice(&mut out);
                        out.truncate(got);
                        out
                    }
                    _ => {
                        let chunk = rx.read_chunk(usize::from(n)).unwrap();
                        assert_eq!(chunk.lagged(), reported);
                        let (a, b) = chunk.as_slices();
                        let got = [a, b].concat();
                        chunk.commit_all();
                        got
                    }
                };
                assert_eq!(got, expected, "{op:?}");
            }
            Op::PushHoldingChunk(n, _) if usize::from(n) > model.len() => {
                let err = rx.read_chunk(usize::from(n)).map(|_| ()).unwrap_err();
                assert_eq!(err, ChunkError::TooFewSlots(model.len()), "{op:?}");
                if !model.is_empty() {
                    lag = 0;
                }
                held = 0;
            }
            Op::PushHoldingChunk(n, v) | Op::PushHoldingBatch(n, v) => {
                let k = usize::from(n).min(model.len());
                let peeked = std::mem::take(&mut held);
                let taken: Vec<u32> = model.drain(..k).collect();
                let reported = if n > 0 { std::mem::take(&mut lag) } else { 0 };
                // The held items are the oldest and still fill their slots.
                let expected = if model.len() + k < cap {
                    model.push_back(v);
                    Ok(())
                } else if drop_oldest && k == 0 && peeked == 0 {
                    model.pop_front();
                    lag += 1;
                    model.push_back(v);
                    Ok(())
                } else {
                    Err(PushError::Full(v))
                };
                let got: Vec<u32> = if matches!(op, Op::PushHoldingChunk(..)) {
                    let chunk = rx.read_chunk(usize::from(n)).unwrap();
                    assert_eq!(chunk.lagged(), reported);
                    assert_eq!(tx.push(v), expected, "{op:?}");
                    let (a, b) = chunk.as_slices();
                    let got = [a, b].concat();
                    chunk.commit_all();
                    got
                } else {
                    let batch = rx.pop_batch(usize::from(n));
                    assert_eq!(batch.lagged(), reported);
                    assert_eq!(tx.push(v), expected, "{op:?}");
                    batch.collect()
                };
                assert_eq!(got, taken, "{op:?}");
            }
        }
        assert_eq!(rx.len(), model.len());
        assert_eq!(tx.slots(), cap - model.len());
    }
    drop(tx);
    let rest: Vec<u32> = std::iter::from_fn(|| rx.try_pop()).collect();
    assert_eq!(rest, Vec::from(model));
    assert_eq!(rx.pop(), Err(spsc::PopError::Closed));
}
