//! Helpers shared by the benchmark targets.
#![allow(dead_code)]

use std::thread;
use std::time::Duration;

use criterion::Criterion;

/// Pins the calling thread to `core` (modulo the cores available); best effort.
#[cfg(target_os = "linux")]
pub fn pin(core: usize) {
    let cores = thread::available_parallelism().map_or(1, |n| n.get());
    // SAFETY: `cpu_set_t` is plain data for which all-zero is the empty set, and
    // `sched_setaffinity(0, ..)` only changes the calling thread's affinity.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(core % cores, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

#[cfg(not(target_os = "linux"))]
pub fn pin(_core: usize) {}

/// Retries `attempt` until it succeeds: spin a little, then yield the thread. The
/// one retry loop every peer in every threaded scenario goes through.
#[inline(always)]
pub fn retry(mut attempt: impl FnMut() -> bool) {
    let mut tries = 0u32;
    while !attempt() {
        tries += 1;
        if tries < 64 {
            std::hint::spin_loop();
        } else {
            thread::yield_now();
        }
    }
}

/// Criterion settings for every target: short warm-up, 3 s of measurement.
pub fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}
