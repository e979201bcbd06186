//! The ring's waiting operations under real threads and a minimal executor:
//! exactly-once delivery through blocking and async waits, `close` releasing every
//! waiter with its item, cancellation leaving no registration, timeouts counted.
//!
//! No test sleeps to "give a thread time": tests wait until the ring's metrics show
//! the other threads parked (`consumers_waiting`, `producers_waiting`).
#![cfg(feature = "std")]

use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread;
use std::time::Duration;

#[path = "support/executor.rs"]
mod executor;

use executor::block_on;
use membound::policy::Wait;
use membound::ring::{Closed, PopWaitError, PushError, PushWaitError, Pushed, Ring, RingConfig};
use membound::OverflowPolicy;

/// Spins (yielding) until `cond` holds: used to know that other threads are parked.
fn wait_until(mut cond: impl FnMut() -> bool) {
    while !cond() {
        thread::yield_now();
    }
}

/// Checks that `received` is exactly `0..n`, each once.
fn assert_exactly_once(mut received: Vec<u64>, n: u64) {
    received.sort_unstable();
    assert_eq!(received.len() as u64, n, "items lost or duplicated");
    assert!(
        received.iter().copied().eq(0..n),
        "items lost or duplicated"
    );
}

const PRODUCERS: u64 = 3;
const CONSUMERS: usize = 3;
const PER_PRODUCER: u64 = 20_000;

/// Blocking producers and consumers on a tiny ring, so both sides park constantly.
#[test]
fn blocking_waits_deliver_every_item_exactly_once() {
    let ring = Arc::new(Ring::new(2).unwrap());
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            let ring = ring.clone();
            thread::spawn(move || {
                for i in 0..PER_PRODUCER {
                    ring.push_wait(p * PER_PRODUCER + i, Wait::Forever).unwrap();
                }
            })
        })
        .collect();
    let consumers: Vec<_> = (0..CONSUMERS)
        .map(|_| {
            let ring = ring.clone();
            thread::spawn(move || {
                let mut got = Vec::new();
                while let Ok(item) = ring.pop_wait(Wait::Forever) {
                    got.push(item);
                }
                got
            })
        })
        .collect();
    for p in producers {
        p.join().unwrap();
    }
    ring.close();
    let received = consumers
        .into_iter()
        .flat_map(|c| c.join().unwrap())
        .collect();
    assert_exactly_once(received, PRODUCERS * PER_PRODUCER);
    let m = ring.metrics();
    assert_eq!((m.producers_waiting, m.consumers_waiting), (0, 0));
}

/// The `Block` policy makes `push` wait instead of dropping; nothing is lost.
#[test]
fn block_policy_waits_instead_of_dropping() {
    let ring =
        Arc::new(Ring::with_config(RingConfig::new(1).with_policy(OverflowPolicy::Block)).unwrap());
    let producer = {
        let ring = ring.clone();
        thread::spawn(move || {
            for i in 0..10_000u64 {
                assert_eq!(ring.push(i), Ok(Pushed::Stored));
            }
            ring.close();
        })
    };
    let mut got = Vec::new();
    while let Ok(item) = ring.pop_wait(Wait::Forever) {
        got.push(item);
    }
    producer.join().unwrap();
    assert_exactly_once(got, 10_000);
    let m = ring.metrics();
    assert_eq!((m.dropped_oldest, m.dropped_newest, m.rejected), (0, 0, 0));
}

/// Async producers and consumers on their own threads, each driving its futures
/// with a parking executor.
#[test]
fn async_waits_deliver_every_item_exactly_once() {
    let ring = Arc::new(Ring::new(3).unwrap());
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            let ring = ring.clone();
            thread::spawn(move || {
                block_on(async {
                    for i in 0..PER_PRODUCER {
                        ring.push_async(p * PER_PRODUCER + i).await.unwrap();
                    }
                })
            })
        })
        .collect();
    let consumers: Vec<_> = (0..CONSUMERS)
        .map(|_| {
            let ring = ring.clone();
            thread::spawn(move || {
                block_on(async {
                    let mut got = Vec::new();
                    while let Ok(item) = ring.pop_async().await {
                        got.push(item);
                    }
                    got
                })
            })
        })
        .collect();
    for p in producers {
        p.join().unwrap();
    }
    ring.close();
    let received = consumers
        .into_iter()
        .flat_map(|c| c.join().unwrap())
        .collect();
    assert_exactly_once(received, PRODUCERS * PER_PRODUCER);
}

/// `close` wakes every parked waiter: consumers on an empty ring get `Closed`,
/// producers on a full ring get their own item back.
#[test]
fn close_releases_every_waiter_with_its_item() {
    let empty = Arc::new(Ring::<u64>::new(1).unwrap());
    let full = Arc::new(Ring::new(1).unwrap());
    full.try_push(0u64).unwrap();
    let consumers: Vec<_> = (0..3)
        .map(|_| {
            let empty = empty.clone();
            thread::spawn(move || empty.pop_wait(Wait::Forever))
        })
        .collect();
    let producers: Vec<_> = (1..=3u64)
        .map(|i| {
            let full = full.clone();
            thread::spawn(move || (i, full.push_wait(i, Wait::Forever)))
        })
        .collect();
    let async_consumer = {
        let empty = empty.clone();
        thread::spawn(move || block_on(empty.pop_async()))
    };
    wait_until(|| empty.metrics().consumers_waiting == 4);
    wait_until(|| full.metrics().producers_waiting == 3);
    empty.close();
    full.close();
    for c in consumers {
        assert_eq!(c.join().unwrap(), Err(PopWaitError::Closed));
    }
    assert_eq!(async_consumer.join().unwrap(), Err(Closed(())));
    for p in producers {
        let (i, result) = p.join().unwrap();
        assert_eq!(result, Err(PushWaitError::Closed(i)));
    }
    assert_eq!(full.try_pop(), Some(0), "what was stored stays");
    assert_eq!(empty.metrics().consumers_waiting, 0);
    assert_eq!(full.metrics().producers_waiting, 0);
}

/// A timed pop on an empty ring and a timed push on a full ring time out, hand the
/// item back, are counted, and leave no registration behind.
#[test]
fn timeouts_hand_items_back_and_leave_no_trace() {
    let ring = Ring::new(1).unwrap();
    assert_eq!(
        ring.pop_wait(Wait::Timeout(Duration::from_millis(5))),
        Err(PopWaitError::Timeout)
    );
    ring.try_push(1u64).unwrap();
    assert_eq!(
        ring.push_wait(2, Wait::Timeout(Duration::from_millis(5))),
        Err(PushWaitError::Timeout(2))
    );
    assert_eq!(
        ring.push_wait(3, Wait::Deadline(std::time::Instant::now())),
        Err(PushWaitError::Timeout(3))
    );
    let m = ring.metrics();
    assert_eq!(m.timeouts, 3);
    assert_eq!((m.producers_waiting, m.consumers_waiting), (0, 0));
    assert_eq!(ring.pop_wait(Wait::Timeout(Duration::from_secs(60))), Ok(1));
    ring.close();
    assert_eq!(
        ring.push_wait(4, Wait::Timeout(Duration::from_secs(60))),
        Err(PushWaitError::Closed(4))
    );
    assert_eq!(
        ring.pop_wait(Wait::Timeout(Duration::from_secs(60))),
        Err(PopWaitError::Closed)
    );
}

/// `BlockTimeout` makes `push` wait, then hand the item back as `Full`.
#[test]
fn block_timeout_policy_returns_full_after_waiting() {
    let ring = Ring::with_config(
        RingConfig::new(1).with_policy(OverflowPolicy::BlockTimeout(Duration::from_millis(5))),
    )
    .unwrap();
    assert_eq!(ring.push(1u8), Ok(Pushed::Stored));
    assert_eq!(ring.push(2), Err(PushError::Full(2)));
    assert_eq!(ring.metrics().timeouts, 1);
    assert_eq!(ring.try_pop(), Some(1));
}

/// A timed waiter that gives up must not take a wake-up another waiter needed: a
/// patient consumer behind many impatient ones still receives every item.
#[test]
fn timed_out_waiters_do_not_steal_wakeups() {
    let ring = Arc::new(Ring::new(4).unwrap());
    let stop = Arc::new(AtomicBool::new(false));
    let impatient: Vec<_> = (0..3)
        .map(|_| {
            let (ring, stop) = (ring.clone(), stop.clone());
            thread::spawn(move || {
                let mut got = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    if let Ok(item) = ring.pop_wait(Wait::Timeout(Duration::from_micros(50))) {
                        got.push(item);
                    }
                }
                got
            })
        })
        .collect();
    let patient = {
        let ring = ring.clone();
        thread::spawn(move || {
            let mut got = Vec::new();
            while let Ok(item) = ring.pop_wait(Wait::Forever) {
                got.push(item);
            }
            got
        })
    };
    for i in 0..20_000u64 {
        ring.push_wait(i, Wait::Forever).unwrap();
    }
    // Everything pushed is eventually taken; then stop the impatient ones and
    // release the patient one.
    wait_until(|| ring.is_empty());
    stop.store(true, Ordering::Relaxed);
    let mut received: Vec<u64> = impatient
        .into_iter()
        .flat_map(|c| c.join().unwrap())
        .collect();
    ring.close();
    received.extend(patient.join().unwrap());
    assert_exactly_once(received, 20_000);
}

/// Dropping a pending future unlinks it; a future polled by different wakers keeps
/// one registration.
#[test]
fn dropped_and_repolled_futures_leave_no_registration() {
    let ring = Ring::<u32>::new(1).unwrap();
    let noop = Waker::from(Arc::new(NoopWake));
    let mut cx = Context::from_waker(&noop);
    {
        let mut pop = pin!(ring.pop_async());
        assert!(pop.as_mut().poll(&mut cx).is_pending());
        assert!(pop.as_mut().poll(&mut cx).is_pending());
        let other = Waker::from(Arc::new(NoopWake));
        assert!(pop
            .as_mut()
            .poll(&mut Context::from_waker(&other))
            .is_pending());
        assert_eq!(ring.metrics().consumers_waiting, 1);
    }
    assert_eq!(ring.metrics().consumers_waiting, 0);

    ring.try_push(1).unwrap();
    {
        let mut push = pin!(ring.push_async(2));
        assert!(push.as_mut().poll(&mut cx).is_pending());
        assert_eq!(ring.metrics().producers_waiting, 1);
        assert_eq!(ring.try_pop(), Some(1)); // notifies the pending push
        assert_eq!(push.as_mut().poll(&mut cx), Poll::Ready(Ok(())));
    }
    assert_eq!(ring.metrics().producers_waiting, 0);
    assert_eq!(ring.try_pop(), Some(2));
    // A pending push dropped before completion drops its item with it: nothing is
    // stored.
    ring.try_push(3).unwrap();
    {
        let mut push = pin!(ring.push_async(4));
        assert!(push.as_mut().poll(&mut cx).is_pending());
    }
    assert_eq!(ring.drain().collect::<Vec<_>>(), [3]);
    assert_eq!(ring.metrics().producers_waiting, 0);
}

struct NoopWake;
impl Wake for NoopWake {
    fn wake(self: Arc<Self>) {}
}
