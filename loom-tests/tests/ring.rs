//! Loom models of the MPMC ring (`membound::ring::Ring`).
//!
//! Rings have capacity 1 or 2 so the wrap-around paths (lap changes, the full check,
//! eviction) are reached within a few operations. Every model checks an invariant
//! on the items, not only the absence of a crash: each pushed item is accounted for
//! exactly once, as popped, evicted, or still stored.
#![cfg(loom)]
// Without `--cfg loom` this file is empty; the crate's lib refuses to build then, so
// a run without the flag cannot pass by testing nothing.

use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::sync::Arc;
use loom::thread;
use membound::ring::{Closed, PopError, PushError, Ring};
use membound_loom_tests::{account, model_without_waiters};

type ForcePusher = thread::JoinHandle<Result<Option<u32>, Closed<u32>>>;

/// A ring of 2 holding items 1 and 2, and two threads force-pushing 4 and 8.
fn full_ring_with_two_force_pushers() -> (Arc<Ring<u32>>, Vec<ForcePusher>) {
    let ring = Arc::new(Ring::new(2).unwrap());
    ring.try_push(1u32).unwrap();
    ring.try_push(2).unwrap();
    let pushers = [4u32, 8]
        .into_iter()
        .map(|item| {
            let ring = ring.clone();
            thread::spawn(move || ring.force_push(item))
        })
        .collect();
    (ring, pushers)
}

fn drain_all(ring: &Ring<u32>, seen: &mut u32) {
    while let Some(item) = ring.try_pop() {
        account(seen, item);
    }
}

#[test]
fn two_producers_one_consumer_deliver_each_item_once() {
    loom::model(|| {
        let ring = Arc::new(Ring::new(2).unwrap());
        let producers: Vec<_> = [1u32, 2]
            .into_iter()
            .map(|item| {
                let ring = ring.clone();
                thread::spawn(move || ring.try_push(item).is_ok())
            })
            .collect();
        let mut seen = 0;
        if let Some(item) = ring.try_pop() {
            account(&mut seen, item);
        }
        let stored: u32 = producers
            .into_iter()
            .zip([1u32, 2])
            .map(|(h, item)| if h.join().unwrap() { item } else { 0 })
            .sum();
        assert_eq!(stored, 3, "capacity 2 holds both items");
        drain_all(&ring, &mut seen);
        assert_eq!(seen, 3);
        let m = ring.metrics();
        assert_eq!((m.pushed, m.popped, m.len), (2, 2, 0));
    });
}

#[test]
fn slot_reuse_across_laps_hands_items_over_in_order() {
    // Capacity 1: every push reuses the slot the consumer just freed, so the
    // stamp hand-off in both directions is exercised twice.
    loom::model(|| {
        let ring = Arc::new(Ring::new(1).unwrap());
        let producer = {
            let ring = ring.clone();
            thread::spawn(move || {
                for item in [1u32, 2, 3] {
                    let mut item = item;
                    while let Err(e) = ring.try_push(item) {
                        item = e.into_inner();
                        thread::yield_now();
                    }
                }
            })
        };
        for expected in [1u32, 2, 3] {
            loop {
                match ring.try_pop() {
                    Some(item) => {
                        assert_eq!(item, expected);
                        break;
                    }
                    None => thread::yield_now(),
                }
            }
        }
        producer.join().unwrap();
        assert!(ring.is_empty());
    });
}

#[test]
fn force_push_racing_pop_neither_loses_nor_duplicates() {
    loom::model(|| {
        let ring = Arc::new(Ring::new(2).unwrap());
        ring.try_push(1u32).unwrap();
        ring.try_push(2).unwrap();
        let pusher = {
            let ring = ring.clone();
            thread::spawn(move || ring.force_push(4).unwrap())
        };
        let mut seen = 0;
        if let Some(item) = ring.try_pop() {
            account(&mut seen, item);
        }
        if let Some(evicted) = pusher.join().unwrap() {
            account(&mut seen, evicted);
        }
        drain_all(&ring, &mut seen);
        assert_eq!(seen, 1 | 2 | 4);
        let m = ring.metrics();
        assert_eq!(m.pushed, 3);
        assert_eq!(m.popped + m.evicted, 3);
    });
}

#[test]
fn two_force_pushers_on_a_full_ring_evict_in_order() {
    loom::model(|| {
        let (ring, pushers) = full_ring_with_two_force_pushers();
        let evicted: Vec<u32> = pushers
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap()
                    .unwrap()
                    .expect("the ring was full, nobody pops")
            })
            .collect();
        let mut seen = 0;
        for &old in &evicted {
            account(&mut seen, old);
        }
        // Both old items were evicted, and in order: whichever new item was queued
        // first evicted the oldest item, 1.
        assert_eq!(seen, 1 | 2);
        let stored: Vec<u32> = ring.drain().collect();
        let first_queued = if evicted[0] == 1 { 4 } else { 8 };
        assert_eq!(
            stored[0], first_queued,
            "evicted {evicted:?}, stored {stored:?}"
        );
        assert_eq!(stored.len(), 2);
        assert_eq!(ring.metrics().evicted, 2);
    });
}

#[test]
fn force_push_racing_force_push_and_pop() {
    model_without_waiters(1, || {
        let ring = Arc::new(Ring::new(1).unwrap());
        ring.try_push(1u32).unwrap();
        let pusher = {
            let ring = ring.clone();
            thread::spawn(move || ring.force_push(2).unwrap())
        };
        let popper = {
            let ring = ring.clone();
            thread::spawn(move || ring.try_pop())
        };
        let mine = ring.force_push(4).unwrap();
        let mut seen = 0;
        for item in [pusher.join().unwrap(), popper.join().unwrap(), mine]
            .into_iter()
            .flatten()
        {
            account(&mut seen, item);
        }
        drain_all(&ring, &mut seen);
        assert_eq!(seen, 1 | 2 | 4);
    });
}

#[test]
fn close_racing_push_and_pop_delivers_every_accepted_item() {
    loom::model(|| {
        let ring = Arc::new(Ring::new(2).unwrap());
        let producer = {
            let ring = ring.clone();
            thread::spawn(move || {
                let mut accepted = 0;
                for item in [1u32, 2] {
                    match ring.try_push(item) {
                        Ok(()) => accepted |= item,
                        Err(PushError::Closed(back)) => assert_eq!(back, item),
                        Err(PushError::Full(_)) => unreachable!("capacity 2, two items"),
                    }
                }
                accepted
            })
        };
        let closer = {
            let ring = ring.clone();
            thread::spawn(move || assert!(ring.close()))
        };
        // The consumer pops until the ring reports Closed: at that point every
        // accepted item must have been delivered.
        let mut seen = 0;
        loop {
            match ring.pop() {
                Ok(item) => account(&mut seen, item),
                Err(PopError::Closed) => break,
                Err(PopError::Empty) => thread::yield_now(),
            }
        }
        closer.join().unwrap();
        let accepted = producer.join().unwrap();
        assert_eq!(seen, accepted);
        assert_eq!(ring.try_push(8), Err(PushError::Closed(8)));
    });
}

#[test]
fn close_racing_force_push_on_a_full_ring_evicts_nothing_after_close() {
    loom::model(|| {
        let ring = Arc::new(Ring::new(1).unwrap());
        ring.try_push(1u32).unwrap();
        let pusher = {
            let ring = ring.clone();
            thread::spawn(move || ring.force_push(2))
        };
        ring.close();
        let mut seen = 0;
        loop {
            match ring.pop() {
                Ok(item) => account(&mut seen, item),
                Err(PopError::Closed) => break,
                Err(PopError::Empty) => thread::yield_now(),
            }
        }
        match pusher.join().unwrap() {
            // Accepted before the close: it either evicted item 1 or found it popped
            // by the drain first; either way both items are accounted for.
            Ok(evicted) => {
                if let Some(evicted) = evicted {
                    account(&mut seen, evicted);
                }
                assert_eq!(seen, 1 | 2);
            }
            // Refused: nothing was evicted, item 1 was delivered by the drain.
            Err(Closed(back)) => {
                assert_eq!(back, 2);
                assert_eq!(seen, 1);
            }
        }
    });
}

#[test]
fn chained_evictions_racing_a_pop_on_capacity_two() {
    // Two evicting producers on a full ring of 2: the second claims its tail while the
    // first may not have moved `head` yet (the wait for earlier evictions), and a
    // consumer may take either old item first (the "consumer won" branch).
    model_without_waiters(3, || {
        let (ring, pushers) = full_ring_with_two_force_pushers();
        let mut seen = 0;
        if let Some(item) = ring.try_pop() {
            account(&mut seen, item);
        }
        for h in pushers {
            if let Some(old) = h.join().unwrap().unwrap() {
                account(&mut seen, old);
            }
        }
        drain_all(&ring, &mut seen);
        assert_eq!(seen, 1 | 2 | 4 | 8);
        let m = ring.metrics();
        assert_eq!((m.pushed, m.popped + m.evicted, m.len), (4, 4, 0));
    });
}

#[test]
fn close_racing_chained_evictions_refuses_or_delivers_each_item() {
    model_without_waiters(2, || {
        let (ring, pushers) = full_ring_with_two_force_pushers();
        ring.close();
        let mut seen = 0;
        let mut refused = 0;
        for (h, item) in pushers.into_iter().zip([4u32, 8]) {
            match h.join().unwrap() {
                Ok(Some(old)) => account(&mut seen, old),
                Ok(None) => unreachable!("full ring, nobody pops before the joins"),
                Err(Closed(back)) => {
                    assert_eq!(back, item);
                    refused |= item;
                }
            }
        }
        loop {
            match ring.pop() {
                Ok(item) => account(&mut seen, item),
                Err(PopError::Closed) => break,
                Err(PopError::Empty) => unreachable!("all pushers have finished"),
            }
        }
        assert_eq!(seen | refused, 1 | 2 | 4 | 8);
        assert_eq!(seen & refused, 0);
    });
}

/// Counts drops of its payload, to prove each value is dropped exactly once.
struct Counted(Arc<AtomicUsize>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

#[test]
fn values_left_in_the_ring_are_dropped_exactly_once() {
    loom::model(|| {
        let drops = Arc::new(AtomicUsize::new(0));
        let ring = Arc::new(Ring::new(2).unwrap());
        let pusher = {
            let ring = ring.clone();
            let drops = drops.clone();
            thread::spawn(move || {
                for _ in 0..3 {
                    drop(ring.force_push(Counted(drops.clone())).unwrap());
                }
            })
        };
        drop(ring.try_pop());
        pusher.join().unwrap();
        drop(ring);
        assert_eq!(drops.load(Ordering::Relaxed), 3);
    });
}
