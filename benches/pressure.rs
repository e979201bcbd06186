//! Cost of one memory sample against the peers, measured in the same run.
//!
//! - `membound_sample`: [`Sampler::sample`] with the default config, amortized over a
//!   steady level: statm, PSI and the cgroup's usage every sample; meminfo,
//!   `memory.stat` and every limit file up the tree (on a cgroup v1 host: stat and
//!   one `memory.limit_in_bytes` per level) every 8th sample ([`Refresh`]'s default;
//!   sooner if the usage moves by 1 % of the limit).
//! - `membound_sample_full`: the same with [`Refresh::ALWAYS`]: every file, every
//!   sample.
//! - `membound_sample_lean`: [`SamplerConfig::lean`]: statm, the cgroup's usage and
//!   limit files; no `memory.stat`, `meminfo` or PSI.
//! - `sysinfo_refresh_memory_cgroup_limits`: sysinfo's `refresh_memory` (meminfo,
//!   swap) then `cgroup_limits` (total, free and RSS of the cgroup): the closest
//!   sysinfo offers to the same picture. No PSI, no working set, no walk up the tree.
//! - `membound_rss` and `memory_stats`: RSS alone, from `/proc/self/statm` in both
//!   (memory-stats built with `always_use_statm`; by default it reads smaps).
//!
//!
//! `tracking_allocator`: one 64-byte allocation and its deallocation through
//! `System` directly and through a `TrackingAllocator<System>`, single-threaded: the
//! cost of leaving the counters on.
//!
//! Run: `cargo bench --bench pressure`. Figures depend on the kernel and on how deep
//! the cgroup tree is; the README quotes them with the machine.
#![allow(missing_docs)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use membound::heap::TrackingAllocator;
use membound::os::{Refresh, Sampler, SamplerConfig};

fn os_sample(c: &mut Criterion) {
    let mut group = c.benchmark_group("os_sample");

    let mut sampler = Sampler::new(SamplerConfig::default()).expect("sampler");
    group.bench_function("membound_sample", |b| {
        b.iter(|| black_box(sampler.sample()));
    });
    let always = SamplerConfig::default().with_refresh(Refresh::ALWAYS);
    let mut full = Sampler::new(always).expect("sampler");
    group.bench_function("membound_sample_full", |b| {
        b.iter(|| black_box(full.sample()));
    });
    let mut lean = Sampler::new(SamplerConfig::lean()).expect("sampler");
    group.bench_function("membound_sample_lean", |b| {
        b.iter(|| black_box(lean.sample()));
    });
    group.bench_function("membound_rss", |b| {
        b.iter(|| black_box(sampler.rss()));
    });

    let mut system = sysinfo::System::new();
    system.refresh_memory();
    group.bench_function("sysinfo_refresh_memory_cgroup_limits", |b| {
        b.iter(|| {
            system.refresh_memory();
            black_box(system.cgroup_limits())
        });
    });

    group.bench_function("memory_stats", |b| {
        b.iter(|| black_box(memory_stats::memory_stats()));
    });
    group.finish();
}

static TRACKED: TrackingAllocator<System> = TrackingAllocator::new(System);

fn tracking_allocator(c: &mut Criterion) {
    let mut group = c.benchmark_group("tracking_allocator");
    let layout = Layout::from_size_align(64, 8).unwrap();
    group.bench_function("system_alloc_dealloc", |b| {
        b.iter(|| {
            // SAFETY: a non-zero layout; the block is freed at once with it.
            unsafe {
                let p = System.alloc(black_box(layout));
                System.dealloc(black_box(p), layout);
            }
        });
    });
    group.bench_function("tracking_alloc_dealloc", |b| {
        b.iter(|| {
            // SAFETY: as above, through the tracking wrapper.
            unsafe {
                let p = TRACKED.alloc(black_box(layout));
                TRACKED.dealloc(black_box(p), layout);
            }
        });
    });
    group.finish();
    assert_eq!(TRACKED.live_bytes(), 0);
}

criterion_group!(benches, os_sample, tracking_allocator);
criterion_main!(benches);
