//! The state store on the crate's one pressure route: registered with a
//! `MemoryManager`, it shrinks on a level transition with no user closure.
#![cfg(feature = "state")]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use membound::adapters::state::subscription::{RecvError, SubscribeOptions, SubscriptionConfig};
use membound::adapters::state::{HistoryLimits, StateConfig, StateError, StateStore};
use membound::capacity::{CapacityError, SoftCapacity};
use membound::clock::ManualClock;
use membound::monitor::{MemoryManager, MemorySource, MonitorConfig};
use membound::os::{EffectiveLimit, LimitSource, MemorySample};
use membound::pressure::{PressureConfig, PressureLevel};

const LIMIT: u64 = 1 << 30;

/// A memory source whose utilization the test sets.
#[derive(Clone, Default)]
struct Script(Arc<Mutex<f64>>);

impl Script {
    fn set(&self, utilization: f64) {
        *self.0.lock().unwrap() = utilization;
    }
}

impl MemorySource for Script {
    fn sample(&mut self) -> MemorySample {
        let limit = EffectiveLimit {
            bytes: LIMIT,
            source: LimitSource::User,
        };
        MemorySample::from_usage((*self.0.lock().unwrap() * LIMIT as f64) as u64, limit)
    }

    fn rss(&mut self) -> Option<u64> {
        None
    }
}

fn manager() -> (MemoryManager, Script) {
    let config = MonitorConfig::production().with_pressure(
        PressureConfig::production()
            .with_sustain(Duration::ZERO)
            .with_dwell(Duration::ZERO),
    );
    let script = Script::default();
    let clock = Arc::new(ManualClock::default());
    (
        MemoryManager::with_source(config, script.clone(), clock).unwrap(),
        script,
    )
}

fn config() -> StateConfig {
    StateConfig {
        history: HistoryLimits {
            entries: 100,
            ..HistoryLimits::default()
        },
        ..StateConfig::default()
    }
}

fn write(store: &StateStore, n: usize) {
    for i in 0..n {
        store
            .apply_json(&format!(r#"[{{"op":"add","path":"/n","value":{i}}}]"#))
            .unwrap();
    }
}

/// The regression: registered with a manager (built with one), the store shrinks
/// its history and refuses transactions at Critical on a level transition, with no
/// callback written by the caller, and restores both at Normal. On main the store
/// had no such target: its only generic one, the subscription queues, left the
/// history at 100 entries at Critical (`left: 100, right: 25`).
#[test]
fn a_store_given_a_manager_shrinks_with_no_callback() {
    let (m, script) = manager();
    let store = StateStore::builder(config())
        .memory_manager(&m)
        .build()
        .unwrap();
    write(&store, 150);
    assert_eq!(store.metrics().history_entries, 100);
    for (utilization, level, kept) in [
        (0.75, PressureLevel::Low, 75),
        (0.90, PressureLevel::High, 50),
        (0.97, PressureLevel::Critical, 25),
    ] {
        script.set(utilization);
        m.sample_now().unwrap();
        assert_eq!(m.level(), level);
        let metrics = store.metrics();
        assert_eq!(
            (metrics.history_entries, metrics.pressure),
            (kept, level),
            "{level}"
        );
        assert_eq!(store.capacity(), kept);
    }
    assert_eq!(store.begin().unwrap_err(), StateError::CriticalPressure);
    script.set(0.10);
    m.sample_now().unwrap();
    assert_eq!(store.pressure(), PressureLevel::Normal);
    assert!(store.begin().is_ok());
    write(&store, 150);
    assert_eq!(store.metrics().history_entries, 100);
}

/// A registered store's subscription queues follow the level too: at Critical a
/// queue of 8 holds 2, and what the shrink dropped is reported as lag.
#[test]
fn a_registered_stores_queues_follow_the_level() {
    let (m, script) = manager();
    let store = StateStore::builder(StateConfig {
        subscriptions: SubscriptionConfig::new().with_queue_capacity(8),
        ..config()
    })
    .memory_manager(&m)
    .build()
    .unwrap();
    let mut sub = store.subscribe("", SubscribeOptions::new()).unwrap();
    write(&store, 4);
    script.set(0.97);
    m.sample_now().unwrap();
    assert_eq!(sub.capacity(), 2);
    assert!(matches!(
        sub.try_recv(),
        Err(RecvError::Lagged { skipped: 2, .. })
    ));
    assert_eq!(store.subscription_metrics().lagged, 2);
    script.set(0.10);
    m.sample_now().unwrap();
    assert_eq!(sub.capacity(), 8);
}

/// The manager holds the store weakly: a store dropped while registered is
/// forgotten at the next transition, without keeping its memory alive.
#[test]
fn a_dropped_store_is_forgotten() {
    let (m, script) = manager();
    let store = StateStore::builder(config())
        .memory_manager(&m)
        .build()
        .unwrap();
    let mut sub = store.subscribe("", SubscribeOptions::new()).unwrap();
    drop(store);
    assert_eq!(sub.try_recv(), Err(RecvError::Closed));
    script.set(0.97);
    let step = m.sample_now().unwrap();
    assert_eq!(step.transition.map(|t| t.to), Some(PressureLevel::Critical));
}

/// `set_capacity` moves the entry bound alone; out-of-range capacities are refused.
#[test]
fn set_capacity_is_the_history_entry_bound() {
    let store = StateStore::new(config()).unwrap();
    assert_eq!((store.capacity(), store.max_capacity()), (100, 100));
    write(&store, 100);
    store.set_capacity(10).unwrap();
    assert_eq!(store.metrics().history_entries, 10);
    assert_eq!(store.pressure(), PressureLevel::Normal);
    assert!(store.begin().is_ok());
    assert_eq!(store.set_capacity(0), Err(CapacityError::Zero));
    assert_eq!(
        store.apply_pressure(PressureLevel::High, 101),
        Err(CapacityError::AboveMax {
            requested: 101,
            max: 100
        })
    );
}
