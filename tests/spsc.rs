//! The SPSC channel: single-thread behaviour against a `VecDeque` model (both
//! policies, batches, chunks, chunks held across a push, lag reports), and
//! two-thread exactly-once delivery through every way of pushing and popping,
//! including drop-oldest, where every item is either received in order or reported
//! lost.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::Duration;

#[path = "support/executor.rs"]
mod executor;
#[path = "support/spsc_model.rs"]
mod model;

use executor::block_on;
#[cfg(feature = "std")]
use membound::policy::Wait;
use membound::ring::spsc::{self, StaticChannel};
use membound::ring::PushError;
use membound::OverflowPolicy;
use model::{run_model, Op};
use proptest::prelude::*;

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        any::<u32>().prop_map(Op::TryPush),
        any::<u32>().prop_map(Op::Push),
        any::<u32>().prop_map(Op::ForcePush),
        (0u8..6).prop_map(Op::PushIter),
        (0u8..6).prop_map(Op::PushSlice),
        (0u8..6).prop_map(Op::WriteChunk),
        Just(Op::Pop),
        Just(Op::Pop),
        (0u8..6).prop_map(Op::PopBatch),
        (0u8..6).prop_map(Op::PopSlice),
        (0u8..6).prop_map(Op::ReadChunk),
        (0u8..6, any::<u32>()).prop_map(|(n, v)| Op::PushHoldingChunk(n, v)),
        (0u8..6, any::<u32>()).prop_map(|(n, v)| Op::PushHoldingBatch(n, v)),
        Just(Op::Peek),
        any::<u32>().prop_map(Op::PushHoldingPeek),
        (0u8..6, any::<u8>()).prop_map(|(n, m)| Op::ReadCommit(n, m)),
        (0u8..6, any::<u8>()).prop_map(|(n, m)| Op::PopBatchTake(n, m)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn spsc_matches_vecdeque(
        cap in 1usize..7,
        drop_oldest in any::<bool>(),
        ops in prop::collection::vec(op(), 0..150),
    ) {
        let policy = if drop_oldest { OverflowPolicy::DropOldest } else { OverflowPolicy::Reject };
        run_model(cap, policy, &ops);
    }
}

/// Runs `scenario` on its own thread and returns its result, or fails the test if it
/// has not returned after a generous grace period: a regression that makes it spin
/// forever fails instead of hanging the suite (the spinning thread is abandoned).
fn returns<R: Send + 'static>(scenario: impl FnOnce() -> R + Send + 'static) -> R {
    let (done, result) = mpsc::channel();
    thread::spawn(move || {
        let _ = done.send(scenario());
    });
    match result.recv_timeout(Duration::from_secs(20)) {
        Ok(value) => value,
        Err(mpsc::RecvTimeoutError::Timeout) => {
            panic!("the scenario never returned: a push waited for the consumer")
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => panic!("the scenario panicked"),
    }
}

/// Under drop-oldest, a push that finds the oldest item claimed by the consumer (a
/// held `ReadChunk`, or a `PopBatch` not yet taken past it) returns at once with the
/// item handed back, on the consumer's own thread too; the claimed items are not
/// evicted, and nothing is counted as dropped.
#[test]
fn drop_oldest_push_does_not_wait_for_a_held_chunk() {
    returns(|| {
        let (mut tx, mut rx) = spsc::channel_with_policy(2, OverflowPolicy::DropOldest).unwrap();
        tx.push(1u32).unwrap();
        tx.push(2).unwrap();
        let chunk = rx.read_chunk(2).unwrap();
        assert_eq!(tx.push(3), Err(PushError::Full(3)));
        assert_eq!(tx.force_push(3), Err(PushError::Full(3)));
        assert_eq!(tx.dropped(), 0);
        let (a, b) = chunk.as_slices();
        assert_eq!([a, b].concat(), [1, 2], "claimed items are not evicted");
        chunk.commit_all();
        tx.push(3).unwrap();
        tx.push(4).unwrap();

        // A batch releases item by item: once it is past the oldest, a push gets in.
        let mut batch = rx.pop_batch(2);
        assert_eq!(tx.push(5), Err(PushError::Full(5)));
        assert_eq!(batch.next(), Some(3));
        assert_eq!(tx.push(5), Ok(()));
        assert_eq!(tx.push(6), Err(PushError::Full(6)), "4 is still claimed");
        // Dropped untaken, 4 is given back to the channel, and so evictable again.
        drop(batch);
        assert_eq!(tx.push(6), Ok(()), "evicts 4");
        assert_eq!(tx.push(7), Ok(()), "evicts 5");
        assert_eq!(tx.dropped(), 2);
        assert_eq!(rx.pop(), Err(spsc::PopError::Lagged(2)));
        assert_eq!(rx.pop(), Ok(6));
        assert_eq!(rx.pop(), Ok(7));
    });
}

const ITEMS: u64 = 200_000;

/// Sends `0..ITEMS` through `send` on one thread and checks the receiver got them
/// all, in order, each once.
fn transfer(
    cap: usize,
    send: impl FnOnce(spsc::Producer<'static, u64>) + Send + 'static,
    recv: impl FnOnce(&mut spsc::Consumer<'static, u64>) -> Vec<u64>,
) {
    let (tx, mut rx) = spsc::channel(cap).unwrap();
    let producer = thread::spawn(move || send(tx));
    let got = recv(&mut rx);
    producer.join().unwrap();
    assert_eq!(got.len() as u64, ITEMS, "items lost or duplicated");
    assert!(got.iter().copied().eq(0..ITEMS), "items out of order");
}

#[cfg(feature = "std")]
#[test]
fn blocking_single_items_arrive_exactly_once_in_order() {
    transfer(
        3,
        |mut tx| {
            for i in 0..ITEMS {
                tx.push_wait(i, Wait::Forever).unwrap();
            }
        },
        |rx| {
            let mut got = Vec::new();
            while let Ok(item) = rx.pop_wait(Wait::Forever) {
                got.push(item);
            }
            got
        },
    );
}

#[test]
fn batches_and_chunks_arrive_exactly_once_in_order() {
    transfer(
        7,
        |mut tx| {
            let mut items = 0..ITEMS;
            let mut round = 0u64;
            while !items.is_empty() {
                round += 1;
                match round % 3 {
                    0 => {
                        tx.push_iter(&mut items);
                    }
                    1 => {
                        let chunk: Vec<u64> = items.clone().take(5).collect();
                        let n = tx.push_slice(&chunk);
                        if n > 0 {
                            items.nth(n - 1);
                        }
                    }
                    _ => {
                        let n = tx
                            .write_chunk_uninit(tx.slots().min(4))
                            .map_or(0, |chunk| chunk.fill_from_iter(items.clone()));
                        if n > 0 {
                            items.nth(n - 1);
                        }
                    }
                }
                if tx.slots() == 0 {
                    thread::yield_now();
                }
            }
        },
        |rx| {
            let mut got = Vec::new();
            let mut round = 0u64;
            loop {
                round += 1;
                let before = got.len();
                match round % 3 {
                    0 => got.extend(rx.pop_batch(4)),
                    1 => {
                        let mut out = [0; 6];
                        let n = rx.pop_slice(&mut out);
                        got.extend_from_slice(&out[..n]);
                    }
                    _ => {
                        if let Ok(chunk) = rx.read_chunk(rx.len().min(5)) {
                            let (a, b) = chunk.as_slices();
                            got.extend_from_slice(a);
                            got.extend_from_slice(b);
                            chunk.commit_all();
                        }
                    }
                }
                if got.len() == before {
                    if rx.is_abandoned() && rx.is_empty() {
                        return got;
                    }
                    thread::yield_now();
                }
            }
        },
    );
}

#[test]
fn async_items_arrive_exactly_once_in_order() {
    transfer(
        2,
        |mut tx| {
            block_on(async {
                for i in 0..ITEMS {
                    tx.push_async(i).await.unwrap();
                }
            })
        },
        |rx| {
            block_on(async {
                let mut got = Vec::new();
                while let Ok(item) = rx.pop_async().await {
                    got.push(item);
                }
                got
            })
        },
    );
}

/// Under drop-oldest with a slow consumer, every item is either received (in order)
/// or reported in a `Lagged` count, and the counts add up exactly. A push that meets
/// the oldest item mid-pop gets it back as `Full` and pushes it again.
#[test]
fn drop_oldest_reports_every_lost_item() {
    let (mut tx, mut rx) = spsc::channel_with_policy(4, OverflowPolicy::DropOldest).unwrap();
    let producer = thread::spawn(move || {
        for i in 0..ITEMS {
            let mut item = i;
            while let Err(e) = tx.push(item) {
                let PushError::Full(back) = e else {
                    panic!("consumer gone early")
                };
                item = back;
                std::hint::spin_loop();
            }
        }
        tx.dropped()
    });
    let mut received = Vec::new();
    let mut lagged = 0u64;
    loop {
        match rx.pop() {
            Ok(item) => received.push(item),
            Err(spsc::PopError::Lagged(n)) => lagged += n,
            Err(spsc::PopError::Empty) => thread::yield_now(),
            Err(spsc::PopError::Closed) => break,
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    let dropped = producer.join().unwrap();
    assert_eq!(lagged, dropped, "every eviction is reported once");
    assert_eq!(received.len() as u64 + lagged, ITEMS);
    assert!(received.windows(2).all(|w| w[0] < w[1]), "order kept");
    assert_eq!(
        received.last(),
        Some(&(ITEMS - 1)),
        "the newest item survives"
    );
}

/// Each side learns that the other is gone: a waiting pop ends with `Closed` after
/// the last item, a waiting push gets its item back.
#[cfg(feature = "std")]
#[test]
fn the_other_side_going_away_ends_waits() {
    let (mut tx, mut rx) = spsc::channel::<u32>(1).unwrap();
    let consumer = thread::spawn(move || {
        let first = rx.pop_wait(Wait::Forever);
        let second = rx.pop_wait(Wait::Forever);
        (first, second)
    });
    tx.push_wait(1, Wait::Forever).unwrap();
    drop(tx);
    assert_eq!(
        consumer.join().unwrap(),
        (Ok(1), Err(spsc::PopError::Closed))
    );

    let (mut tx, rx) = spsc::channel::<u32>(1).unwrap();
    tx.push(1).unwrap();
    let producer = thread::spawn(move || tx.push_wait(2, Wait::Forever));
    thread::yield_now();
    drop(rx);
    assert_eq!(
        producer.join().unwrap(),
        Err(membound::ring::PushWaitError::Closed(2))
    );
}

struct Counted(Arc<AtomicUsize>);
impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

/// Items are dropped exactly once: popped, evicted, left in a heap channel when
/// both handles are gone (in either order), or left in a static channel.
#[test]
fn every_item_is_dropped_exactly_once() {
    for consumer_first in [false, true] {
        let drops = Arc::new(AtomicUsize::new(0));
        let (mut tx, mut rx) = spsc::channel_with_policy(3, OverflowPolicy::DropOldest).unwrap();
        for _ in 0..5 {
            tx.push(Counted(drops.clone())).unwrap(); // 2 evicted
        }
        assert_eq!(drops.load(Ordering::Relaxed), 2);
        drop(rx.try_pop());
        assert_eq!(drops.load(Ordering::Relaxed), 3);
        if consumer_first {
            drop(rx);
            drop(tx);
        } else {
            drop(tx);
            drop(rx);
        }
        assert_eq!(drops.load(Ordering::Relaxed), 5);
    }
    let drops = Arc::new(AtomicUsize::new(0));
    {
        let mut channel = StaticChannel::<Counted, 4>::new();
        {
            let (mut tx, _rx) = channel.split();
            tx.push(Counted(drops.clone())).unwrap();
            tx.push(Counted(drops.clone())).unwrap();
        }
        let (_tx, mut rx) = channel.split();
        drop(rx.try_pop());
        assert_eq!(drops.load(Ordering::Relaxed), 1, "items survive a re-split");
    }
    assert_eq!(drops.load(Ordering::Relaxed), 2);
}

/// The channel supports `Reject` and `DropOldest` and refuses every other policy
/// at construction, heap and static alike.
#[test]
fn unsupported_policies_are_refused_at_construction() {
    use membound::ConfigError;
    for policy in [
        OverflowPolicy::DropNewest,
        OverflowPolicy::Block,
        #[cfg(feature = "std")]
        OverflowPolicy::BlockTimeout(Duration::from_millis(1)),
    ] {
        let expected = ConfigError::UnsupportedPolicy {
            policy,
            structure: "spsc channel",
        };
        assert_eq!(
            spsc::channel_with_policy::<u8>(4, policy).err(),
            Some(expected)
        );
        assert_eq!(
            StaticChannel::<u8, 4>::with_policy(policy).err(),
            Some(expected)
        );
    }
    for policy in [OverflowPolicy::Reject, OverflowPolicy::DropOldest] {
        assert!(spsc::channel_with_policy::<u8>(4, policy).is_ok());
        assert!(StaticChannel::<u8, 4>::with_policy(policy).is_ok());
    }
}

/// What a user moving over from rtrb expects: `peek`, `is_full`, `&self` lengths,
/// exact chunks with `TooFewSlots`, an initialised `write_chunk`, partial commits,
/// chunks that leave unread items in place, `into_iter`, exact-size batches,
/// `Debug` on chunks, and `io::Read`/`io::Write` for bytes.
#[test]
fn rtrb_parity_api() {
    use membound::ring::spsc::ChunkError;

    let (mut tx, mut rx) = spsc::channel::<u32>(4).unwrap();
    assert!(!tx.is_full());
    assert!(rx.is_empty());
    tx.push_iter(&mut (1..=4));
    assert!(tx.is_full());
    let (txr, rxr) = (&tx, &rx);
    assert_eq!((txr.slots(), rxr.len()), (0, 4), "lengths through `&`");
    assert_eq!(rx.peek(), Ok(&1));
    assert_eq!(rx.peek(), Ok(&1), "a peek does not take");
    assert_eq!(rx.pop(), Ok(1));

    // Exact chunks.
    assert_eq!(
        tx.write_chunk_uninit(2).map(|_| ()),
        Err(ChunkError::TooFewSlots(1))
    );
    assert_eq!(
        rx.read_chunk(4).map(|_| ()),
        Err(ChunkError::TooFewSlots(3))
    );
    assert_eq!(rx.len(), 3, "a refused chunk takes nothing");

    // A chunk dropped uncommitted leaves its items; `as_mut_slices` edits in place.
    {
        let mut chunk = rx.read_chunk(2).unwrap();
        assert!(format!("{chunk:?}").contains("ReadChunk"));
        chunk.as_mut_slices().0[0] = 20;
    }
    assert_eq!(rx.read_chunk(1).unwrap().as_slices().0, [20]);
    let chunk = rx.read_chunk(3).unwrap();
    chunk.commit(1);
    assert_eq!(rx.len(), 2);
    let mut iter = rx.read_chunk(2).unwrap().into_iter();
    assert_eq!(iter.len(), 2);
    assert_eq!(iter.next(), Some(3));
    assert_eq!(iter.iterated(), 1);
    drop(iter);
    assert_eq!(rx.pop(), Ok(4), "what the iterator did not take stays");

    // An initialised write chunk: committed slots are published, the rest dropped.
    let mut chunk = tx.write_chunk(3).unwrap();
    assert_eq!(chunk.as_mut_slices().0.iter().sum::<u32>(), 0, "defaults");
    let (a, b) = chunk.as_mut_slices();
    for (i, slot) in a.iter_mut().chain(b).enumerate() {
        *slot = 100 + i as u32;
    }
    assert!(format!("{chunk:?}").contains("WriteChunk"));
    chunk.commit(2);
    let mut batch = rx.pop_batch(8);
    assert_eq!(batch.len(), 2);
    assert_eq!(batch.next(), Some(100));
    assert_eq!(batch.len(), 1);
    assert_eq!(batch.next(), Some(101));
    assert_eq!(batch.next(), None);
    assert_eq!(batch.next(), None, "fused");
}

/// Chunks, peeks and batches drop every value exactly once: committed ones at the
/// commit, uncommitted write slots with the chunk, what stays in the channel with it.
#[test]
fn chunks_and_peeks_drop_every_value_exactly_once() {
    #[derive(Default)]
    struct Tracked(Option<Arc<AtomicUsize>>);
    impl Drop for Tracked {
        fn drop(&mut self) {
            if let Some(d) = &self.0 {
                d.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    for policy in [OverflowPolicy::Reject, OverflowPolicy::DropOldest] {
        let drops = Arc::new(AtomicUsize::new(0));
        let (mut tx, mut rx) = spsc::channel_with_policy::<Tracked>(4, policy).unwrap();
        let mut chunk = tx.write_chunk(4).unwrap();
        let (a, b) = chunk.as_mut_slices();
        for slot in a.iter_mut().chain(b) {
            *slot = Tracked(Some(drops.clone())); // the default it replaces drops nothing
        }
        chunk.commit(3); // the fourth is dropped
        assert_eq!(drops.load(Ordering::Relaxed), 1);
        drop(tx.write_chunk(1).unwrap()); // a default, dropped uncounted
        assert!(rx.peek().is_ok());
        rx.read_chunk(2).unwrap().commit(1);
        assert_eq!(drops.load(Ordering::Relaxed), 2);
        drop(rx.pop_batch(2)); // untaken: both stay
        assert_eq!(rx.len(), 2);
        assert!(rx.peek().is_ok());
        drop(rx); // a peeked (claimed) item and the one after it
        drop(tx);
        assert_eq!(drops.load(Ordering::Relaxed), 4, "{policy:?}");
    }
}

/// `u8` channels are byte streams: `Write` copies what fits and says `WouldBlock`
/// when full, `Read` copies what is stored, says `WouldBlock` when empty, and
/// reads 0 once the producer is gone; a write after the consumer left is a broken
/// pipe.
#[cfg(feature = "std")]
#[test]
fn byte_channels_are_io_streams() {
    use std::io::{ErrorKind, Read, Write};

    let (mut tx, mut rx) = spsc::channel::<u8>(4).unwrap();
    assert_eq!(tx.write(b"hello").unwrap(), 4);
    assert_eq!(tx.write(b"o").unwrap_err().kind(), ErrorKind::WouldBlock);
    let mut buf = [0u8; 3];
    assert_eq!(rx.read(&mut buf).unwrap(), 3);
    assert_eq!(&buf, b"hel");
    tx.write_all(b"o!").unwrap();
    tx.flush().unwrap();
    let mut rest = [0u8; 8];
    assert_eq!(rx.read(&mut rest).unwrap(), 3);
    assert_eq!(&rest[..3], b"lo!");
    assert_eq!(
        rx.read(&mut rest).unwrap_err().kind(),
        ErrorKind::WouldBlock
    );
    drop(tx);
    assert_eq!(rx.read(&mut rest).unwrap(), 0, "end of stream");

    let (mut tx, rx) = spsc::channel::<u8>(4).unwrap();
    drop(rx);
    assert_eq!(tx.write(b"x").unwrap_err().kind(), ErrorKind::BrokenPipe);
}
