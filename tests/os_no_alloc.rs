//! Sampling the OS allocates nothing after construction (DESIGN rule 3).
//!
//! The global allocator is the crate's own `TrackingAllocator` over `System`: the
//! same counters a production program would leave on. One test in this file so no
//! other test's allocations run concurrently in this process.
#![cfg(all(feature = "std", target_os = "linux"))]

use std::alloc::System;
use std::path::Path;

use membound::clock::{Clock, ManualClock};
use membound::heap::TrackingAllocator;
use membound::os::{Sampler, SamplerConfig};
use membound::pressure::{PressureConfig, PressureGauge};

#[global_allocator]
static HEAP: TrackingAllocator<System> = TrackingAllocator::new(System);

#[test]
fn samples_and_gauge_updates_allocate_nothing() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v2-nested");
    let mut samplers = [
        Sampler::new(SamplerConfig::default())
            .unwrap()
            .with_heap(&HEAP),
        Sampler::new(SamplerConfig::lean()).unwrap(),
        Sampler::new(
            SamplerConfig::default()
                .with_proc_root(fixture.join("proc"))
                .with_mount_root(&fixture),
        )
        .unwrap(),
    ];
    let clock = ManualClock::default();
    let mut gauge = PressureGauge::new(&PressureConfig::development(), &clock).unwrap();

    let before = HEAP.stats().allocations + HEAP.stats().reallocations;
    let mut checksum = 0u64;
    for i in 0..2_000u64 {
        let sampler = &mut samplers[(i % 3) as usize];
        let sample = sampler.sample();
        checksum += sample.rss.unwrap_or(0) + sample.heap.unwrap_or(0) + u64::from(sample.errors);
        // A synthetic signal, so transitions happen too.
        let u = sample.utilization.unwrap_or(0.0) + if i % 200 < 100 { 0.0 } else { 0.95 };
        checksum += gauge.observe(u, clock.now()).is_some() as u64;
        clock.advance(500);
    }
    let after = HEAP.stats().allocations + HEAP.stats().reallocations;
    assert!(checksum > 0);
    assert!(
        gauge
            .stats(clock.now())
            .transitions_into
            .iter()
            .sum::<u64>()
            > 0
    );
    assert_eq!(after - before, 0, "sampling allocated");

    // The counter works: an allocation is seen.
    let v = std::hint::black_box(vec![0u8; 64]);
    assert!(HEAP.stats().allocations + HEAP.stats().reallocations > after);
    drop(v);
}
