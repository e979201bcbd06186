//! Loom models of the SPSC channel (`membound::ring::spsc`): the hand-over of
//! items through cached indices, batch publication, drop-oldest racing the
//! consumer (a pop, and a claimed batch held across the push), and the wait path
//! with its asymmetric barrier (a `SeqCst` fence on both sides under loom).
//!
//! Loom makes every `SeqCst` fence synchronise with the earlier ones, so the
//! notify path's fences would hide a missing Release/Acquire on an index; the
//! models in which nobody waits switch them off (`model_without_waiters`) and so
//! check the indices' own orderings.
#![cfg(loom)]

use loom::sync::atomic::{AtomicBool, Ordering};
use loom::sync::Arc;
use loom::thread;
use membound::policy::Wait;
use membound::ring::spsc;
use membound::ring::PushError;
use membound::OverflowPolicy;
use membound_loom_tests::{model_bounded, model_without_waiters};

/// Items pushed one by one through a ring of 1 arrive in order, each once, and the
/// consumer sees `Closed` only after the last one.
#[test]
fn items_hand_over_through_cached_indices() {
    model_without_waiters(usize::MAX, || {
        let (mut tx, mut rx) = spsc::channel(1).unwrap();
        let producer = thread::spawn(move || {
            for i in 0..3u32 {
                while tx.try_push(i).is_err() {
                    thread::yield_now();
                }
            }
        });
        let mut got = Vec::new();
        loop {
            match rx.pop() {
                Ok(item) => got.push(item),
                Err(spsc::PopError::Empty) => thread::yield_now(),
                Err(spsc::PopError::Closed) => break,
                Err(other) => panic!("unexpected {other:?}"),
            }
        }
        producer.join().unwrap();
        assert_eq!(got, [0, 1, 2]);
    });
}

/// A batch is published with one index store: the consumer sees none or all of
/// it, never a slot before its write.
#[test]
fn batch_publish_is_all_or_nothing() {
    model_without_waiters(usize::MAX, || {
        let (mut tx, mut rx) = spsc::channel(3).unwrap();
        let producer = thread::spawn(move || {
            assert_eq!(tx.push_iter(&mut (10..13u32)), 3);
        });
        let got: Vec<u32> = rx.pop_batch(3).collect();
        assert!(got.is_empty() || got == [10, 11, 12], "{got:?}");
        producer.join().unwrap();
        let rest: Vec<u32> = rx.pop_batch(3).collect();
        assert_eq!([got, rest].concat(), [10, 11, 12]);
    });
}

/// Drop-oldest: the producer evicting from a full ring races the consumer reading
/// the same oldest item. Each item is received, evicted or handed back (`Full`, when
/// the push met it mid-pop) exactly once, received ones in order, and the producer
/// never writes a slot the consumer is reading (loom's cell tracking reports that as
/// a data race).
#[test]
fn drop_oldest_racing_pop() {
    model_without_waiters(3, || {
        let (mut tx, mut rx) = spsc::channel_with_policy(1, OverflowPolicy::DropOldest).unwrap();
        tx.push(0u32).unwrap();
        let producer = thread::spawn(move || {
            let mut evicted = Vec::new();
            let mut handed_back = Vec::new();
            for item in [1, 2] {
                match tx.force_push(item) {
                    Ok(old) => evicted.extend(old),
                    Err(PushError::Full(back)) => handed_back.push(back),
                    Err(other) => panic!("unexpected {other:?}"),
                }
            }
            (evicted, handed_back)
        });
        let mut got = Vec::new();
        let mut lagged = 0;
        for _ in 0..2 {
            match rx.pop() {
                Ok(item) => got.push(item),
                Err(spsc::PopError::Lagged(n)) => lagged += n,
                Err(spsc::PopError::Empty) => {}
                // Both pushes handed their items back and the producer is gone.
                Err(spsc::PopError::Closed) => break,
                Err(other) => panic!("unexpected {other:?}"),
            }
        }
        let (evicted, handed_back) = producer.join().unwrap();
        while let Some(item) = rx.try_pop() {
            got.push(item);
        }
        assert!(got.windows(2).all(|w| w[0] < w[1]), "order: {got:?}");
        let mut all = [got.clone(), evicted.clone(), handed_back.clone()].concat();
        all.sort_unstable();
        assert_eq!(
            all,
            [0, 1, 2],
            "got {got:?}, evicted {evicted:?}, handed back {handed_back:?}"
        );
        assert!(lagged <= evicted.len() as u64);
    });
}

/// Drop-oldest: a push on a full ring whose oldest item the consumer holds claimed
/// in a batch it keeps until the push has returned. The push must finish on its own
/// (a producer that waits for the release never does, and the model never ends):
/// either it evicted the item before the claim, or it hands its own item back. The
/// claimed item is never evicted, and no item is lost or seen twice.
#[test]
fn drop_oldest_push_does_not_wait_for_a_claimed_batch() {
    model_without_waiters(3, || {
        let (mut tx, mut rx) = spsc::channel_with_policy(1, OverflowPolicy::DropOldest).unwrap();
        tx.push(0u32).unwrap();
        let pushed = Arc::new(AtomicBool::new(false));
        let producer = {
            let pushed = pushed.clone();
            thread::spawn(move || {
                let outcome = tx.force_push(1);
                pushed.store(true, Ordering::Release);
                outcome
            })
        };
        let batch = rx.pop_batch(1);
        let lagged = batch.lagged();
        // Hold the claim until the push has returned.
        while !pushed.load(Ordering::Acquire) {
            thread::yield_now();
        }
        let mut got: Vec<u32> = batch.collect();
        match producer.join().unwrap() {
            // Evicted before the batch claimed it; the batch reports it, or comes
            // too early to see either.
            Ok(Some(0)) => {
                got.extend(rx.try_pop());
                assert_eq!(got, [1]);
                assert!(lagged <= 1);
            }
            // The batch claimed 0 first: its slot was not the producer's to take.
            Err(PushError::Full(1)) => {
                assert_eq!(got, [0]);
                assert_eq!(lagged, 0);
                assert_eq!(rx.try_pop(), None);
            }
            other => panic!("unexpected {other:?} (batch got {got:?})"),
        }
    });
}

/// Drop-oldest: a batch dropped with its item untaken gives the claim back while a
/// push on the full ring races it: the push evicts the item (before the claim or
/// after it is given back) or hands its own back (while it is claimed), and every
/// item ends up exactly once with the consumer, as the evicted one, or handed back.
#[test]
fn drop_oldest_unclaim_races_an_eviction() {
    model_without_waiters(3, || {
        let (mut tx, mut rx) = spsc::channel_with_policy(1, OverflowPolicy::DropOldest).unwrap();
        tx.push(0u32).unwrap();
        let producer = thread::spawn(move || tx.force_push(1));
        drop(rx.pop_batch(1));
        let outcome = producer.join().unwrap();
        let mut seen: Vec<u32> = std::iter::from_fn(|| rx.try_pop()).collect();
        match outcome {
            Ok(Some(evicted)) => seen.push(evicted),
            Ok(None) => {}
            Err(PushError::Full(back)) => seen.push(back),
            Err(other) => panic!("unexpected {other:?}"),
        }
        seen.sort_unstable();
        assert_eq!(seen, [0, 1]);
    });
}

/// A consumer parked on an empty channel is woken by the push that follows, with
/// the asymmetric barrier in place of a `SeqCst` RMW.
#[test]
fn pop_wait_is_woken_by_a_plain_store_push() {
    model_bounded(usize::MAX, || {
        let (mut tx, mut rx) = spsc::channel(1).unwrap();
        let consumer = thread::spawn(move || rx.pop_wait(Wait::Forever));
        tx.push(5u32).unwrap();
        assert_eq!(consumer.join().unwrap(), Ok(5));
    });
}

/// A producer parked on a full channel is woken by the pop that makes room, and a
/// consumer parked on an empty one by the producer going away.
#[test]
fn push_wait_is_woken_by_a_pop_and_pop_wait_by_close() {
    model_bounded(usize::MAX, || {
        let (mut tx, mut rx) = spsc::channel(1).unwrap();
        tx.push(1u32).unwrap();
        let producer = thread::spawn(move || {
            tx.push_wait(2, Wait::Forever).unwrap();
            // Dropped here: the consumer's last wait ends with Closed.
        });
        assert_eq!(rx.pop_wait(Wait::Forever), Ok(1));
        assert_eq!(rx.pop_wait(Wait::Forever), Ok(2));
        assert_eq!(rx.pop_wait(Wait::Forever), Err(spsc::PopError::Closed));
        producer.join().unwrap();
    });
}
