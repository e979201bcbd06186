//! The memory budget against the allocator: each component registered with a
//! `MemoryManager` reports, in `MemoryManager::budget`, the bytes the heap really
//! gave it, as a `TrackingAllocator` counts them.
//!
//! Tolerance: each component is built in an `Arc` (the manager holds it weakly), whose
//! two reference counts the component does not count (taken off the allocator's
//! figure); beyond that, 1 % or 64 bytes, whichever is more. A component that forgot its slots, or counted a
//! buffer twice, is off by far more.
#![cfg(feature = "std")]

use std::alloc::System;
use std::sync::Arc;
use std::time::Duration;

use membound::backpressure::{Backpressure, BackpressureConfig};
use membound::clock::ManualClock;
use membound::heap::TrackingAllocator;
use membound::monitor::{Budget, MemoryManager, MemorySource, MonitorConfig};
use membound::os::{EffectiveLimit, LimitSource, MemorySample};
use membound::pool::Pool;
use membound::ring::Ring;
use membound::table::{TableConfig, TtlTable};

/// The same sample every time.
struct Fixed(MemorySample);

impl MemorySource for Fixed {
    fn sample(&mut self) -> MemorySample {
        self.0
    }
}

#[global_allocator]
static HEAP: TrackingAllocator<System> = TrackingAllocator::new(System);

/// Held by every test here: the allocator's count is global, so no other test may
/// allocate while one measures.
static ALONE: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Builds a component and returns it with the heap bytes its construction took,
/// less the `Arc`'s two counts (padded to the component's alignment).
fn measured<T>(build: impl FnOnce() -> T) -> (Arc<T>, usize) {
    let before = HEAP.live_bytes();
    let built = Arc::new(build());
    let after = HEAP.live_bytes();
    let counts = 16usize.next_multiple_of(std::mem::align_of::<T>());
    (built, after - before - counts)
}

fn assert_close(name: &str, reported: u64, allocated: usize) {
    let expected = allocated as u64;
    let slack = (expected / 100).max(64);
    assert!(
        reported.abs_diff(expected) <= slack,
        "{name}: budget says {reported} B, the allocator counted {expected} B (±{slack})"
    );
}

#[test]
fn every_budget_figure_matches_the_allocators_count() {
    let _alone = ALONE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    const GIB: u64 = 1 << 30;
    let limit = EffectiveLimit {
        bytes: GIB,
        source: LimitSource::User,
    };
    let manager = MemoryManager::with_source(
        MonitorConfig::production(),
        Fixed(MemorySample::from_usage(GIB / 4, limit)),
        ManualClock::default(),
    )
    .unwrap();

    let (ring, ring_bytes) = measured(|| Ring::<[u8; 64]>::new(1024).unwrap());
    let (table, table_bytes) = measured(|| {
        TtlTable::<u64, u64, _>::with_config(
            TableConfig::new(1000, Duration::from_secs(60)),
            ManualClock::default(),
        )
        .unwrap()
    });
    let (channel, channel_bytes) =
        measured(|| Backpressure::<u64>::new(BackpressureConfig::new(512)).unwrap());
    let (pool, pool_bytes) = measured(|| Pool::with_factory(128, || [0u8; 256]).unwrap());

    manager.register_named("requests", &ring);
    manager.register_named("sessions", &table);
    manager.register_capacity(&channel);
    manager.register_named("buffers", &pool);
    manager.sample_now().unwrap();

    // Filling them changes nothing: the memory was reserved at construction.
    for i in 0..2000u64 {
        ring.push([i as u8; 64]).unwrap();
        let _ = table.insert(i, i);
        let _ = channel.try_send(i);
    }
    pool.fill();

    let Budget {
        components,
        total_bytes,
        total_max_bytes,
        limit,
        share_of_limit,
        ..
    } = manager.budget();
    let find = |name: &str| {
        components
            .iter()
            .find(|c| &*c.name == name)
            .unwrap_or_else(|| panic!("{name} missing from {components:?}"))
    };
    for (name, kind, allocated) in [
        ("requests", "ring", ring_bytes),
        ("sessions", "table", table_bytes),
        ("backpressure", "backpressure", channel_bytes),
        ("buffers", "pool", pool_bytes),
    ] {
        let entry = find(name);
        assert_eq!(entry.kind, kind, "{name}");
        let footprint = entry.footprint.expect("reports a footprint");
        assert_close(name, footprint.bytes, allocated);
        assert_eq!(
            footprint.max_bytes, footprint.bytes,
            "{name}: reserved once"
        );
    }
    assert_eq!(find("requests").capacity, 1024);
    assert_eq!(find("buffers").max_capacity, 128);
    // Largest first; the totals add up; the share is of the sampled limit.
    assert!(components
        .windows(2)
        .all(|w| w[0].footprint.unwrap().bytes >= w[1].footprint.unwrap().bytes));
    let sum: u64 = components.iter().map(|c| c.footprint.unwrap().bytes).sum();
    assert_eq!((total_bytes, total_max_bytes), (sum, sum));
    assert_eq!(limit, Some(GIB));
    let share = share_of_limit.unwrap();
    assert!((share - sum as f64 / GIB as f64).abs() < 1e-12);
    let allocated = ring_bytes + table_bytes + channel_bytes + pool_bytes;
    assert_close("total", total_bytes, allocated);

    // A dropped component leaves the budget.
    drop(pool);
    assert!(manager
        .budget()
        .components
        .iter()
        .all(|c| &*c.name != "buffers"));
}

/// The state store reports its document and history; registered by its builder, its
/// history alone (the store is not an `Arc` there).
#[cfg(feature = "state")]
#[test]
fn the_state_store_reports_its_document_and_history() {
    use membound::adapters::state::{StateConfig, StateStore};
    use membound::capacity::SoftCapacity;
    let _alone = ALONE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let store = Arc::new(StateStore::new(StateConfig::default()).unwrap());
    let empty = store.footprint().unwrap();
    store
        .apply_json(
            r#"[{"op":"add","path":"/big","value":"0123456789012345678901234567890123456789"}]"#,
        )
        .unwrap();
    let grown = store.footprint().unwrap();
    let m = store.metrics();
    assert_eq!(grown.bytes, (m.document_bytes + m.history_bytes) as u64);
    assert!(
        grown.bytes >= empty.bytes + 2 * 40,
        "document and history both hold the string"
    );
    let config = StateConfig::default();
    assert_eq!(
        grown.max_bytes,
        (config.limits.document_bytes + config.history.bytes) as u64
    );
    assert_eq!(store.kind(), "state");
}
