//! Sampling the OS allocates nothing after construction (DESIGN rule 3).
//!
//! The global allocator is the crate's own `TrackingAllocator` over `System`: the
//! same counters a production program would leave on. One test in this file so no
//! other test's allocations run concurrently in this process.
//!
//! The libtest harness's main thread still runs beside the test: when it first
//! blocks waiting for the test's result it registers itself with the channel, which
//! allocates, and on a busy machine that can land inside the measured window. So the
//! assertion counts this thread's allocations (a const thread-local counter bumped
//! by a thin layer above the tracker), and the tracker's process-wide count checks
//! that the layer sees allocations at all.
#![cfg(all(feature = "std", target_os = "linux"))]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::path::Path;

use membound::clock::{Clock, ManualClock};
use membound::heap::TrackingAllocator;
use membound::os::{Sampler, SamplerConfig};
use membound::pressure::{PressureConfig, PressureGauge};

static HEAP: TrackingAllocator<System> = TrackingAllocator::new(System);

thread_local! {
    /// Allocations made by the current thread. Const-initialized and without a
    /// destructor, so touching it from inside the allocator allocates nothing.
    static THIS_THREAD: Cell<u64> = const { Cell::new(0) };
}

fn this_thread() -> u64 {
    THIS_THREAD.with(Cell::get)
}

struct PerThread;

// SAFETY: forwards every call to `HEAP` unchanged, only counting.
unsafe impl GlobalAlloc for PerThread {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = THIS_THREAD.try_with(|n| n.set(n.get() + 1));
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract.
        unsafe { HEAP.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `alloc`/`realloc` above, so from `HEAP`, with `layout`.
        unsafe { HEAP.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = THIS_THREAD.try_with(|n| n.set(n.get() + 1));
        // SAFETY: the caller upholds `GlobalAlloc::realloc`'s contract.
        unsafe { HEAP.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: PerThread = PerThread;

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

    let before = this_thread();
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
    let after = this_thread();
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

    // The counters work: an allocation is seen by both.
    let tracked = HEAP.stats().allocations;
    let v = std::hint::black_box(vec![0u8; 64]);
    assert_eq!(this_thread(), after + 1);
    assert!(HEAP.stats().allocations > tracked);
    drop(v);
}
