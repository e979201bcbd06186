//! Loom models of the ring's wait/wake path (`membound::ring`'s eventcount).
//!
//! A lost wake-up shows up as a deadlock: every thread parked, which loom reports as
//! a failure. Each model also checks where every item went.
#![cfg(loom)]

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use loom::sync::atomic::{AtomicBool, Ordering};
use loom::sync::Arc;
use loom::thread;
use membound::policy::Wait;
use membound::ring::{PopWaitError, PushWaitError, Ring};
use membound_loom_tests::model_bounded;

/// The eventcount's core promise: a consumer that finds the ring empty and parks is
/// woken by the push that follows, wherever that push interleaves with its
/// register / re-check / park steps.
#[test]
fn pop_wait_never_misses_the_push() {
    model_bounded(usize::MAX, || {
        let ring = Arc::new(Ring::new(1).unwrap());
        let consumer = {
            let ring = ring.clone();
            thread::spawn(move || ring.pop_wait(Wait::Forever))
        };
        ring.try_push(7u32).unwrap();
        assert_eq!(consumer.join().unwrap(), Ok(7));
        assert!(ring.is_empty());
    });
}

/// The same on the producer side: a producer waiting on a full ring is woken by the
/// pop that makes room.
#[test]
fn push_wait_never_misses_the_pop() {
    model_bounded(usize::MAX, || {
        let ring = Arc::new(Ring::new(1).unwrap());
        ring.try_push(1u32).unwrap();
        let producer = {
            let ring = ring.clone();
            thread::spawn(move || ring.push_wait(2, Wait::Forever))
        };
        assert_eq!(
            ring.try_pop().or_else(|| ring.pop_wait(Wait::Forever).ok()),
            Some(1)
        );
        assert_eq!(producer.join().unwrap(), Ok(()));
        assert_eq!(ring.try_pop(), Some(2));
    });
}

/// `close` wakes every waiter on both sides: a consumer parked on an empty ring gets
/// `Closed`, a producer parked on a full one gets its item back.
#[test]
fn close_wakes_every_waiter() {
    model_bounded(3, || {
        let empty = Arc::new(Ring::<u32>::new(1).unwrap());
        let full = Arc::new(Ring::new(1).unwrap());
        full.try_push(1u32).unwrap();
        let consumer = {
            let empty = empty.clone();
            thread::spawn(move || empty.pop_wait(Wait::Forever))
        };
        let producer = {
            let full = full.clone();
            thread::spawn(move || full.push_wait(2, Wait::Forever))
        };
        empty.close();
        full.close();
        assert_eq!(consumer.join().unwrap(), Err(PopWaitError::Closed));
        assert_eq!(producer.join().unwrap(), Err(PushWaitError::Closed(2)));
        assert_eq!(full.try_pop(), Some(1));
    });
}

/// Two consumers wait, a timed thread and a future; one item arrives. If the timed
/// waiter is notified and times out at the same moment, it must pass the
/// notification on: whenever the item is left in the ring, the future's waker must
/// have been called. Under loom a deadline expires at the first park.
#[test]
fn timed_out_waiter_passes_its_wakeup_on() {
    model_bounded(usize::MAX, || {
        let ring = Arc::new(Ring::new(1).unwrap());
        let timed = {
            let ring = ring.clone();
            thread::spawn(move || ring.pop_wait(Wait::Timeout(std::time::Duration::from_secs(1))))
        };
        let flag = std::sync::Arc::new(WakeFlag(AtomicBool::new(false)));
        let waker = Waker::from(flag.clone());
        let mut cx = Context::from_waker(&waker);
        let mut patient = pin!(ring.pop_async());
        assert!(patient.as_mut().poll(&mut cx).is_pending());
        ring.try_push(5u32).unwrap();
        match timed.join().unwrap() {
            Ok(5) => {}
            Err(PopWaitError::Timeout) => {
                assert!(
                    flag.0.load(Ordering::Acquire),
                    "the item waits in the ring and its waiter was never woken"
                );
                assert_eq!(patient.as_mut().poll(&mut cx), Poll::Ready(Ok(5)));
            }
            other => panic!("unexpected {other:?}"),
        }
    });
}

/// A waker that records that it was called (loom's `join` and a real unpark do not
/// mix, so models check the flag instead of parking on it).
struct WakeFlag(AtomicBool);

impl std::task::Wake for WakeFlag {
    fn wake(self: std::sync::Arc<Self>) {
        self.0.store(true, Ordering::Release);
    }
}

/// A timed push on a full ring races the pop that makes room: it either stores its
/// item or times out with it; never both, never neither.
#[test]
fn timed_out_push_racing_a_pop_keeps_its_item() {
    model_bounded(usize::MAX, || {
        let ring = Arc::new(Ring::new(1).unwrap());
        ring.try_push(1u32).unwrap();
        let producer = {
            let ring = ring.clone();
            thread::spawn(move || {
                ring.push_wait(2, Wait::Timeout(std::time::Duration::from_secs(1)))
            })
        };
        assert_eq!(ring.try_pop(), Some(1));
        match producer.join().unwrap() {
            Ok(()) => assert_eq!(ring.try_pop(), Some(2)),
            Err(PushWaitError::Timeout(2)) => assert!(ring.is_empty()),
            other => panic!("unexpected {other:?}"),
        }
    });
}

/// An async consumer (a future polled by loom's executor, which parks the thread
/// until its waker runs) receives the item a producer pushes concurrently.
#[test]
fn pop_async_is_woken_by_a_push() {
    model_bounded(usize::MAX, || {
        let ring = Arc::new(Ring::new(1).unwrap());
        let consumer = {
            let ring = ring.clone();
            thread::spawn(move || loom::future::block_on(ring.pop_async()))
        };
        ring.try_push(3u32).unwrap();
        assert_eq!(consumer.join().unwrap(), Ok(3));
    });
}

/// A pending future that is dropped after a push notified it must pass the
/// notification on to the thread waiting behind it, or that thread sleeps forever.
#[test]
fn dropped_future_passes_its_wakeup_on() {
    model_bounded(usize::MAX, || {
        let ring = Arc::new(Ring::new(1).unwrap());
        let mut cx = Context::from_waker(Waker::noop());
        let mut first = Box::pin(ring.pop_async());
        assert!(first.as_mut().poll(&mut cx).is_pending()); // registered first
        let patient = {
            let ring = ring.clone();
            thread::spawn(move || ring.pop_wait(Wait::Forever))
        };
        ring.try_push(9u32).unwrap();
        drop(first);
        assert_eq!(patient.join().unwrap(), Ok(9));
    });
}
