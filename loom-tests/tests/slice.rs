//! Loom models of the snapshot vector (`membound::slice::SnapshotVec`). Under loom
//! (as without `std`) its atomic `Arc` swap is the crate's own spin-locked one, so
//! these models check that swap and the copy-on-write loop over it.
//!
//! Each model checks that no update is lost and that every value, clones included,
//! is dropped exactly once, and not while a snapshot still holds it.
#![cfg(loom)]

use loom::sync::Arc;
use loom::thread;
use membound::slice::SnapshotVec;
use membound_loom_tests::{assert_all_dropped, ledger, model_without_waiters, Tracked};

/// Two writers push at once: both items end up in the vector (the loser of the
/// compare-and-swap builds again from the winner's contents).
#[test]
fn racing_pushes_lose_no_update() {
    model_without_waiters(usize::MAX, || {
        let ledger = ledger(2);
        let v = Arc::new(SnapshotVec::new());
        let other = {
            let (v, item) = (v.clone(), Tracked::new(&ledger, 1));
            thread::spawn(move || v.push(item))
        };
        v.push(Tracked::new(&ledger, 0));
        other.join().unwrap();
        let mut ids: Vec<usize> = v.load().iter().map(|t| t.id).collect();
        ids.sort_unstable();
        assert_eq!(ids, [0, 1]);
        drop(v);
        assert_all_dropped(&ledger);
    });
}

/// A reader takes a snapshot while a writer removes the only element: the reader
/// sees the element whole or not at all, the element lives while the reader's
/// snapshot does, and it is dropped exactly once, by whichever side lets go last.
#[test]
fn snapshot_racing_remove() {
    model_without_waiters(usize::MAX, || {
        let ledger = ledger(1);
        let v = Arc::new(SnapshotVec::from_vec(vec![Tracked::new(&ledger, 0)]));
        let reader = {
            let (v, ledger) = (v.clone(), ledger.clone());
            thread::spawn(move || {
                let snap = v.load();
                if let Some(t) = snap.first() {
                    assert_eq!(t.id, 0);
                    let live = ledger[0].load(std::sync::atomic::Ordering::Relaxed);
                    assert!(live >= 1, "a snapshot's element was freed");
                }
                snap.len()
            })
        };
        let removed = v.remove_at(0);
        assert_eq!(removed.map(|t| t.id), Some(0));
        assert!(reader.join().unwrap() <= 1);
        assert!(v.is_empty());
        assert_all_dropped(&ledger);
    });
}

/// `retain` racing a push: the push is never undone by the retain's copy, and what
/// the retain drops is dropped once.
#[test]
fn retain_racing_push() {
    model_without_waiters(usize::MAX, || {
        let ledger = ledger(3);
        let v = Arc::new(SnapshotVec::from_vec(vec![
            Tracked::new(&ledger, 0),
            Tracked::new(&ledger, 1),
        ]));
        let pusher = {
            let (v, item) = (v.clone(), Tracked::new(&ledger, 2));
            thread::spawn(move || v.push(item))
        };
        let removed = v.retain(|t| t.id != 0);
        assert_eq!(removed, 1);
        pusher.join().unwrap();
        let mut ids: Vec<usize> = v.load().iter().map(|t| t.id).collect();
        ids.sort_unstable();
        assert_eq!(ids, [1, 2]);
        drop(v);
        assert_all_dropped(&ledger);
    });
}

/// A caching reader racing a push: while the push is in flight the reader sees the
/// old or the new contents, once it is joined the reader sees the new ones (the
/// version bump after the swap is Release, the reader's check Acquire), and the
/// contents it kept are dropped exactly once.
#[test]
fn cached_reader_racing_push() {
    model_without_waiters(usize::MAX, || {
        let ledger = ledger(2);
        let v = Arc::new(SnapshotVec::from_vec(vec![Tracked::new(&ledger, 0)]));
        let pusher = {
            let (v, item) = (v.clone(), Tracked::new(&ledger, 1));
            thread::spawn(move || v.push(item))
        };
        let mut reader = v.reader();
        let during = reader.load().len();
        assert!(during == 1 || during == 2, "{during}");
        pusher.join().unwrap();
        let after: Vec<usize> = reader.load().iter().map(|t| t.id).collect();
        assert_eq!(after, [0, 1]);
        drop(reader);
        drop(v);
        assert_all_dropped(&ledger);
    });
}

/// Two capped pushes race for the last free place: exactly one gets in, the other
/// gets its item back, and the vector never exceeds the cap.
#[test]
fn capped_pushes_racing_for_the_last_place() {
    model_without_waiters(usize::MAX, || {
        let ledger = ledger(3);
        let v = Arc::new(SnapshotVec::from_vec(vec![Tracked::new(&ledger, 0)]));
        let other = {
            let (v, item) = (v.clone(), Tracked::new(&ledger, 1));
            thread::spawn(move || v.push_within(item, 2).map_err(|t| t.id))
        };
        let mine = v.push_within(Tracked::new(&ledger, 2), 2).map_err(|t| t.id);
        let theirs = other.join().unwrap();
        assert!(
            mine.is_ok() != theirs.is_ok(),
            "exactly one capped push wins"
        );
        let refused = mine.err().or(theirs.err()).unwrap();
        let ids: Vec<usize> = v.load().iter().map(|t| t.id).collect();
        assert_eq!(ids.len(), 2);
        assert_eq!(ids[0], 0);
        assert_ne!(ids[1], refused);
        drop(v);
        assert_all_dropped(&ledger);
    });
}

/// A capped push races a remove on a full vector: the push gets in only if the
/// remove made room first, and the result never holds more than the cap.
#[test]
fn capped_push_racing_remove() {
    model_without_waiters(usize::MAX, || {
        let ledger = ledger(2);
        let v = Arc::new(SnapshotVec::from_vec(vec![Tracked::new(&ledger, 0)]));
        let remover = {
            let v = v.clone();
            thread::spawn(move || v.remove_at(0).map(|t| t.id))
        };
        let pushed = v.push_within(Tracked::new(&ledger, 1), 1).is_ok();
        assert_eq!(remover.join().unwrap(), Some(0));
        let ids: Vec<usize> = v.load().iter().map(|t| t.id).collect();
        assert_eq!(ids, if pushed { vec![1] } else { vec![] });
        drop(v);
        assert_all_dropped(&ledger);
    });
}
