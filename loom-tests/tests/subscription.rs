//! Loom models of how the state store's subscriptions use a ring as a subscriber's
//! queue: the writer `force_push`es sequence-numbered changes, the receiver waits in
//! `pop_wait`, and unsubscribing or expiring `close`s and `clear`s the queue from a
//! third thread. (The registry itself needs the `state` feature and std locks, so
//! it is not built under loom; its wait/wake path is exactly these ring calls.)
#![cfg(loom)]

use loom::sync::atomic::{AtomicU32, Ordering};
use loom::sync::Arc;
use loom::thread;
use membound::policy::Wait;
use membound::ring::Ring;
use membound_loom_tests::model_bounded;

/// A queued change: its sequence number, and a count of drops shared by all.
struct Change(u32, Arc<AtomicU32>);

impl Drop for Change {
    fn drop(&mut self) {
        self.1.fetch_add(1, Ordering::Relaxed);
    }
}

/// The writer: force-pushes changes `0..changes` (dropping what is evicted or
/// refused), then closes the queue if `then_close`, as the store closing does.
fn spawn_writer(
    queue: &Arc<Ring<Change>>,
    drops: &Arc<AtomicU32>,
    changes: u32,
    then_close: bool,
) -> thread::JoinHandle<()> {
    let queue = queue.clone();
    let drops = drops.clone();
    thread::spawn(move || {
        for seq in 0..changes {
            drop(queue.force_push(Change(seq, drops.clone())));
        }
        if then_close {
            queue.close();
        }
    })
}

/// Receives until the queue is closed; checks the sequence numbers only grow (no
/// change twice, none out of order) and returns the last one.
fn receive_all(queue: &Ring<Change>) -> Option<u32> {
    let mut last = None;
    while let Ok(change) = queue.pop_wait(Wait::Forever) {
        assert!(last < Some(change.0), "repeated or reordered change");
        last = Some(change.0);
    }
    last
}

/// Unsubscribing (close, then clear) while the writer delivers: the waiting
/// receiver is always woken and ends, what it got is in order, the writer never
/// blocks, and every change is dropped exactly once (received, evicted, cleared,
/// refused, or left in the queue).
#[test]
fn unsubscribe_racing_a_delivery_wakes_the_receiver_and_drops_each_change_once() {
    model_bounded(2, || {
        let drops = Arc::new(AtomicU32::new(0));
        let queue = Arc::new(Ring::new(1).unwrap());
        let writer = spawn_writer(&queue, &drops, 2, false);
        let receiver = {
            let queue = queue.clone();
            thread::spawn(move || receive_all(&queue))
        };
        // The unsubscribing thread.
        queue.close();
        queue.clear();
        receiver.join().unwrap();
        writer.join().unwrap();
        drop(queue);
        assert_eq!(drops.load(Ordering::Relaxed), 2);
    });
}

/// Overflow while the receiver takes changes: the newest change is never the one
/// lost, so a gap the receiver sees is always followed by a change (which is what
/// its lag report is attached to), and a store close after the writer finishes
/// still delivers it.
#[test]
fn the_newest_change_survives_an_overflow_racing_the_receiver() {
    model_bounded(3, || {
        let drops = Arc::new(AtomicU32::new(0));
        let queue = Arc::new(Ring::new(1).unwrap());
        let writer = spawn_writer(&queue, &drops, 3, true);
        assert_eq!(receive_all(&queue), Some(2));
        writer.join().unwrap();
        assert_eq!(drops.load(Ordering::Relaxed), 3);
    });
}
