//! Loom models of the memory manager's subscription protocol
//! (`membound::monitor::MemoryManager::on_pressure`).
//!
//! A delivery round snapshots the subscribers and calls each one still active;
//! `unsubscribe` (or dropping the `Subscription`) removes the entry, clears its
//! `active` flag and then waits for a round in progress to end. The models check
//! the promise that follows: once `unsubscribe` has returned, the callback never runs,
//! and a subscriber left alone is called exactly once per transition.
#![cfg(loom)]

use std::sync::Arc;

use loom::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use loom::thread;
use membound::clock::ManualClock;
use membound::monitor::{MemoryManager, MemorySource, MonitorConfig};
use membound::os::{EffectiveLimit, LimitSource, MemorySample};
use membound::pressure::PressureConfig;

/// Always 97 %: the first sample is a transition to critical.
struct Critical;

impl MemorySource for Critical {
    fn sample(&mut self) -> MemorySample {
        MemorySample::from_usage(
            97,
            EffectiveLimit {
                bytes: 100,
                source: LimitSource::User,
            },
        )
    }
}

fn manager() -> Arc<MemoryManager> {
    let config = MonitorConfig::production().with_pressure(PressureConfig::production());
    Arc::new(MemoryManager::with_source(config, Critical, ManualClock::default()).unwrap())
}

#[test]
fn unsubscribe_racing_a_delivery_is_never_followed_by_a_call() {
    loom::model(|| {
        let m = manager();
        let dead = Arc::new(AtomicBool::new(false));
        let late_calls = Arc::new(AtomicUsize::new(0));
        let subscription = {
            let (dead, late_calls) = (Arc::clone(&dead), Arc::clone(&late_calls));
            m.on_pressure(move |_| {
                if dead.load(Ordering::SeqCst) {
                    late_calls.fetch_add(1, Ordering::SeqCst);
                }
            })
        };
        let driver = {
            let m = Arc::clone(&m);
            thread::spawn(move || {
                let step = m.sample_now().expect("not inside a callback");
                assert!(step.transition.is_some());
            })
        };
        subscription.unsubscribe();
        dead.store(true, Ordering::SeqCst);
        driver.join().unwrap();
        assert_eq!(late_calls.load(Ordering::SeqCst), 0);
        assert_eq!(m.metrics().subscribers, 0);
    });
}

#[test]
fn a_subscriber_left_alone_is_called_once_while_another_unsubscribes() {
    loom::model(|| {
        let m = manager();
        let kept_calls = Arc::new(AtomicUsize::new(0));
        let _kept = {
            let kept_calls = Arc::clone(&kept_calls);
            m.on_pressure(move |_| {
                kept_calls.fetch_add(1, Ordering::SeqCst);
            })
        };
        let leaving = m.on_pressure(|_| {});
        let driver = {
            let m = Arc::clone(&m);
            thread::spawn(move || {
                m.sample_now();
            })
        };
        drop(leaving);
        driver.join().unwrap();
        assert_eq!(kept_calls.load(Ordering::SeqCst), 1);
        assert_eq!(m.metrics().callback_panics, 0);
    });
}
