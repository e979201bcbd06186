//! After construction, a million ring operations allocate nothing (DESIGN rule 3).
//!
//! A counting global allocator wraps the system one. This file holds a single test so
//! no other test's allocations run concurrently in this process.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};

use membound::ring::{OverflowPolicy, Ring, RingConfig};

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards to the system allocator unchanged, only counting calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `alloc` above with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller upholds `GlobalAlloc::realloc`'s contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn a_million_operations_allocate_nothing() {
    let ring =
        Ring::with_config(RingConfig::new(100).with_policy(OverflowPolicy::DropOldest)).unwrap();
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    let mut checksum = 0u64;
    for i in 0..1_000_000u64 {
        match i % 5 {
            0 => checksum += ring.try_push(i).is_ok() as u64,
            1 => checksum += ring.force_push(i).unwrap().unwrap_or(0),
            2 => checksum += ring.push(i).is_ok() as u64,
            3 => checksum += ring.try_pop().unwrap_or(0),
            _ => checksum += ring.pop_batch(2).sum::<u64>() + ring.metrics().len,
        }
    }
    let after = ALLOCATIONS.load(Ordering::Relaxed);
    assert!(checksum > 0);
    assert_eq!(after - before, 0, "ring operations allocated");
    // The counter itself works: a Vec allocation is seen.
    let v = std::hint::black_box(vec![1u8; 16]);
    assert!(ALLOCATIONS.load(Ordering::Relaxed) > after);
    drop(v);
}
