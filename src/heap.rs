//! Heap accounting: a global-allocator wrapper that counts live bytes (no_std).
//!
//! [`TrackingAllocator`] wraps any [`GlobalAlloc`] and keeps live bytes, the peak,
//! and allocation counts in relaxed atomics: a few uncontended atomic adds per
//! allocation, cheap enough to leave on in production. It serves three purposes:
//!
//! - **The memory source where there is no OS**: an embedded heap of known size gives
//!   its utilization as live bytes against that size
//!   ([`TrackingAllocator::utilization`]), which a
//!   [`PressureGauge`](crate::pressure::PressureGauge) turns into a level.
//! - **A precise heap figure next to the OS view** under std (RSS includes code,
//!   stacks and allocator slack; this is what the program holds).
//! - **Zero-allocation tests**: count allocations around a hot path.
//!
//! Cost: single-threaded, a 64-byte allocation and its release take about 1.6 ns more
//! than through `System` alone (`cargo bench --bench pressure -- tracking`). The
//! counters share one cache line that every allocation writes, so under heavy
//! allocation from many threads at once that line becomes a point of contention.
//!
//! # Why not `crate::sync`'s atomics
//!
//! The counters come from `sync::counters`, which stays portable-atomic's under loom:
//! a global allocator lives in a `static` built by a `const fn`, and loom's atomics are
//! neither const nor allocation-free. Every access is `Relaxed`: the counters order
//! nothing, they only count. Live bytes never underflow even so: memory is freed
//! only after its allocation returned and the pointer reached the freeing thread,
//! which is a happens-before edge, and a single atomic's modification order respects
//! happens-before, so each subtraction follows its addition.

use core::alloc::{GlobalAlloc, Layout};

use crate::sync::counters::{AtomicU64, AtomicUsize};
use crate::sync::Ordering::Relaxed;

/// A snapshot of a [`TrackingAllocator`]'s counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HeapStats {
    /// Bytes allocated and not yet freed (as requested by layouts, not including the
    /// inner allocator's own overhead).
    pub live_bytes: usize,
    /// The most `live_bytes` has been since creation or the last
    /// [`reset_peak`](TrackingAllocator::reset_peak).
    pub peak_bytes: usize,
    /// Successful allocations (`alloc` and `alloc_zeroed`).
    pub allocations: u64,
    /// Deallocations.
    pub deallocations: u64,
    /// Successful reallocations.
    pub reallocations: u64,
    /// Allocations and reallocations the inner allocator refused (returned null).
    pub failures: u64,
    /// The heap size given at construction, if any.
    pub heap_size: Option<usize>,
}

impl crate::metrics::Metrics for HeapStats {
    const KIND: &'static str = "heap";

    fn visit(&self, out: &mut dyn crate::metrics::Visitor) {
        use crate::metrics::Metric;
        #[rustfmt::skip]
        let HeapStats { live_bytes, peak_bytes, allocations, deallocations, reallocations,
            failures, heap_size } = *self;
        #[rustfmt::skip]
        let metrics = [
            Metric::counter("allocations", "Successful allocations.", allocations),
            Metric::counter("deallocations", "Deallocations.", deallocations),
            Metric::counter("reallocations", "Successful reallocations.", reallocations),
            Metric::counter("failures", "Allocations the inner allocator refused.", failures),
            Metric::gauge("live", "Bytes allocated and not yet freed.", live_bytes).bytes(),
            Metric::gauge("peak", "Most live bytes since creation or reset.", peak_bytes).bytes(),
        ];
        metrics.into_iter().for_each(|m| out.metric(m));
        if let Some(size) = heap_size {
            out.metric(Metric::gauge("size", "The heap size given at construction.", size).bytes());
        }
        // Derived from `live_bytes` and `heap_size`.
        if let Some(ratio) = self.utilization() {
            out.metric(Metric::gauge(
                "utilization_ratio",
                "Live bytes as a share of the heap.",
                ratio,
            ));
        }
    }
}

impl HeapStats {
    /// Live bytes as a fraction of the heap size; `None` without a (non-zero) size.
    pub fn utilization(&self) -> Option<f64> {
        match self.heap_size {
            Some(size) if size > 0 => Some(self.live_bytes as f64 / size as f64),
            _ => None,
        }
    }
}

/// A source of [`HeapStats`]: a [`TrackingAllocator`] (of any inner allocator) as a
/// trait object, so the OS sampler can show the heap next to RSS without naming the
/// allocator's type.
pub trait HeapUsage: Sync {
    /// The counters now.
    fn heap_stats(&self) -> HeapStats;
}

impl<A: Sync> HeapUsage for TrackingAllocator<A> {
    fn heap_stats(&self) -> HeapStats {
        self.stats()
    }
}

/// A [`GlobalAlloc`] wrapper that counts live heap bytes, the peak, and allocation
/// counts with relaxed atomics.
///
/// # Examples
///
/// ```
/// use std::alloc::System;
/// use membound::heap::TrackingAllocator;
///
/// // An embedded program would wrap its own heap allocator and give its size.
/// #[global_allocator]
/// static HEAP: TrackingAllocator<System> = TrackingAllocator::with_heap_size(System, 1 << 30);
///
/// fn main() {
///     let before = HEAP.stats();
///     let buffer = vec![0u8; 4096];
///     let during = HEAP.stats();
///     assert!(during.live_bytes >= before.live_bytes + 4096);
///     assert!(during.allocations > before.allocations);
///     assert!(HEAP.utilization().unwrap() > 0.0);
///     drop(buffer);
///     assert!(HEAP.stats().peak_bytes >= during.live_bytes);
/// }
/// ```
#[derive(Debug)]
pub struct TrackingAllocator<A> {
    inner: A,
    /// The heap's size in bytes; 0 when unknown.
    heap_size: usize,
    /// Sum of the sizes of live allocations.
    live: AtomicUsize,
    /// Maximum of `live` observed after an increase; only raised with `fetch_max`.
    peak: AtomicUsize,
    allocations: AtomicU64,
    deallocations: AtomicU64,
    reallocations: AtomicU64,
    failures: AtomicU64,
}

impl<A> TrackingAllocator<A> {
    /// Wraps `inner`, with no known heap size.
    pub const fn new(inner: A) -> Self {
        Self::with_heap_size(inner, 0)
    }

    /// Wraps `inner`, whose heap holds `heap_size` bytes: the denominator of
    /// [`utilization`](Self::utilization). A size of 0 means unknown.
    pub const fn with_heap_size(inner: A, heap_size: usize) -> Self {
        Self {
            inner,
            heap_size,
            live: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
            allocations: AtomicU64::new(0),
            deallocations: AtomicU64::new(0),
            reallocations: AtomicU64::new(0),
            failures: AtomicU64::new(0),
        }
    }

    /// The wrapped allocator.
    pub const fn inner(&self) -> &A {
        &self.inner
    }

    /// Bytes allocated and not yet freed.
    #[inline]
    pub fn live_bytes(&self) -> usize {
        self.live.load(Relaxed)
    }

    /// Live bytes as a fraction of the heap size; `None` if the size is unknown.
    pub fn utilization(&self) -> Option<f64> {
        self.stats().utilization()
    }

    /// A snapshot of every counter. Each is read separately, so under concurrent
    /// allocation they are individually exact but not one atomic picture.
    pub fn stats(&self) -> HeapStats {
        HeapStats {
            live_bytes: self.live.load(Relaxed),
            peak_bytes: self.peak.load(Relaxed),
            allocations: self.allocations.load(Relaxed),
            deallocations: self.deallocations.load(Relaxed),
            reallocations: self.reallocations.load(Relaxed),
            failures: self.failures.load(Relaxed),
            heap_size: (self.heap_size > 0).then_some(self.heap_size),
        }
    }

    /// Starts a new peak from the current live bytes.
    pub fn reset_peak(&self) {
        self.peak.store(self.live.load(Relaxed), Relaxed);
    }

    #[inline]
    fn grew(&self, bytes: usize) {
        let live = self.live.fetch_add(bytes, Relaxed).wrapping_add(bytes);
        // Read first: the peak is rarely beaten, and a plain load keeps the cache
        // line shared instead of taking it exclusive on every allocation.
        if live > self.peak.load(Relaxed) {
            self.peak.fetch_max(live, Relaxed);
        }
    }
}

impl<A> TrackingAllocator<A> {
    /// Counts the outcome of an allocation of `size` bytes and passes `ptr` through.
    #[inline]
    fn allocated(&self, ptr: *mut u8, size: usize) -> *mut u8 {
        if ptr.is_null() {
            self.failures.fetch_add(1, Relaxed);
        } else {
            self.allocations.fetch_add(1, Relaxed);
            self.grew(size);
        }
        ptr
    }
}

// SAFETY: every method forwards to `inner` with the caller's arguments unchanged and
// returns its result unchanged, so `inner`'s `GlobalAlloc` contract carries over; the
// counting around it touches only atomics and never allocates.
unsafe impl<A: GlobalAlloc> GlobalAlloc for TrackingAllocator<A> {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract for `layout`.
        let ptr = unsafe { self.inner.alloc(layout) };
        self.allocated(ptr, layout.size())
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let ptr = unsafe { self.inner.alloc_zeroed(layout) };
        self.allocated(ptr, layout.size())
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller guarantees `ptr` came from this allocator with `layout`,
        // so from `inner` with `layout`.
        unsafe { self.inner.dealloc(ptr, layout) };
        self.deallocations.fetch_add(1, Relaxed);
        self.live.fetch_sub(layout.size(), Relaxed);
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller upholds `GlobalAlloc::realloc`'s contract; `ptr` came
        // from `inner` with `layout`.
        let new = unsafe { self.inner.realloc(ptr, layout, new_size) };
        if new.is_null() {
            // The old block is untouched and still live.
            self.failures.fetch_add(1, Relaxed);
        } else {
            self.reallocations.fetch_add(1, Relaxed);
            let old_size = layout.size();
            if new_size >= old_size {
                self.grew(new_size - old_size);
            } else {
                self.live.fetch_sub(old_size - new_size, Relaxed);
            }
        }
        new
    }
}

#[cfg(test)]
mod tests {
    use core::ptr;

    use super::*;

    /// A bump allocator over a fixed arena that never frees: enough to test the
    /// accounting without touching the process's global allocator.
    struct Arena {
        memory: core::cell::UnsafeCell<[u8; 4096]>,
        used: AtomicUsize,
    }

    // SAFETY: `used` hands out disjoint ranges with an atomic bump.
    unsafe impl Sync for Arena {}

    // SAFETY: returns disjoint, suitably aligned blocks inside `memory`, or null.
    unsafe impl GlobalAlloc for Arena {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            let base = self.memory.get() as usize;
            let mut used = self.used.load(Relaxed);
            loop {
                let start = (base + used).next_multiple_of(layout.align()) - base;
                let end = start + layout.size();
                if end > 4096 {
                    return ptr::null_mut();
                }
                match self.used.compare_exchange(used, end, Relaxed, Relaxed) {
                    // SAFETY: `start..end` is inside the arena.
                    Ok(_) => return unsafe { self.memory.get().cast::<u8>().add(start) },
                    Err(seen) => used = seen,
                }
            }
        }
        unsafe fn dealloc(&self, _: *mut u8, _: Layout) {}
    }

    fn tracker(size: usize) -> TrackingAllocator<Arena> {
        TrackingAllocator::with_heap_size(
            Arena {
                memory: core::cell::UnsafeCell::new([0; 4096]),
                used: AtomicUsize::new(0),
            },
            size,
        )
    }

    #[test]
    fn counts_live_peak_and_calls() {
        let heap = tracker(4096);
        let l100 = Layout::from_size_align(100, 8).unwrap();
        let l300 = Layout::from_size_align(300, 8).unwrap();
        // SAFETY: non-zero layouts; each pointer is freed once with its layout.
        unsafe {
            let a = heap.alloc(l100);
            let b = heap.alloc_zeroed(l300);
            assert!(!a.is_null() && !b.is_null());
            assert_eq!(heap.live_bytes(), 400);
            heap.dealloc(a, l100);
            let b = heap.realloc(b, l300, 1000);
            assert!(!b.is_null());
            assert_eq!(heap.live_bytes(), 1000);
            let b = heap.realloc(b, Layout::from_size_align(1000, 8).unwrap(), 10);
            assert_eq!(heap.live_bytes(), 10);
            heap.dealloc(b, Layout::from_size_align(10, 8).unwrap());
        }
        let s = heap.stats();
        assert_eq!(s.live_bytes, 0);
        assert_eq!(s.peak_bytes, 1000);
        assert_eq!((s.allocations, s.deallocations, s.reallocations), (2, 2, 2));
        assert_eq!(s.failures, 0);
        heap.reset_peak();
        assert_eq!(heap.stats().peak_bytes, 0);
    }

    #[test]
    fn failures_are_counted_and_change_nothing_else() {
        let heap = tracker(4096);
        let big = Layout::from_size_align(8192, 8).unwrap();
        // SAFETY: a valid layout; a null result is not used.
        let p = unsafe { heap.alloc(big) };
        assert!(p.is_null());
        let s = heap.stats();
        assert_eq!((s.failures, s.allocations, s.live_bytes), (1, 0, 0));
    }

    #[test]
    fn utilization_against_the_heap_size() {
        let heap = tracker(1000);
        let l = Layout::from_size_align(250, 1).unwrap();
        // SAFETY: a valid layout; the arena never frees, so leaking is fine.
        let p = unsafe { heap.alloc(l) };
        assert!(!p.is_null());
        assert_eq!(heap.utilization(), Some(0.25));
        assert_eq!(tracker(0).utilization(), None);
    }
}
