//! After construction, TTL table operations allocate nothing (DESIGN rule 3): inserts
//! (new keys, replacements, evictions), gets, removes, touches, sweeps, soft-capacity
//! changes and metrics, with an eviction hook installed.
//!
//! A counting global allocator wraps the system one. This file holds a single test so
//! no other test's allocations run concurrently in this process.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use membound::capacity::SoftCapacity;
use membound::clock::{Clock, ManualClock};
use membound::table::{SeededHashBuilder, TableConfig, TtlTable};

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
fn a_million_table_operations_allocate_nothing() {
    let clock = ManualClock::default();
    let evictions = AtomicU64::new(0);
    let table = TtlTable::with_parts(
        TableConfig::new(500, Duration::from_millis(200)),
        &clock,
        SeededHashBuilder::with_seed(5),
        |_: &u64, _: &u64, _| {
            evictions.fetch_add(1, Ordering::Relaxed);
        },
    )
    .unwrap();
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    let mut checksum = 0u64;
    let mut x = 1u64;
    for i in 0..1_000_000u64 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let key = x % 1000; // twice the capacity: the table fills and evicts
        match i % 10 {
            0..=2 => checksum += table.insert(key, i).map_or(1, |old| old.unwrap_or(2)),
            3 => checksum += table.get(&key).unwrap_or(3),
            4 => checksum += table.get_with(&key, |v| v + 1).unwrap_or(4),
            5 => checksum += table.remove(&key).unwrap_or(5),
            6 => checksum += u64::from(table.touch(&key)),
            7 => checksum += table.sweep(clock.now(), 16).removed as u64,
            8 => {
                clock.advance(1);
                checksum += u64::from(table.contains(&key));
            }
            _ => {
                let cap = if i % 20_000 == 9 { 100 } else { 500 };
                if i % 10_000 == 9 {
                    table.set_capacity(cap).unwrap();
                }
                checksum += table.metrics().len;
            }
        }
    }
    let after = ALLOCATIONS.load(Ordering::Relaxed);
    assert!(checksum > 0);
    let m = table.metrics();
    assert!(
        m.evicted > 0 && m.expired > 0 && m.replaced > 0 && m.removed > 0,
        "{m:?}"
    );
    assert!(evictions.load(Ordering::Relaxed) > 0);
    assert_eq!(after - before, 0, "table operations allocated");
    // The counter itself works: a Vec allocation is seen.
    let v = std::hint::black_box(vec![1u8; 16]);
    assert!(ALLOCATIONS.load(Ordering::Relaxed) > after);
    drop(v);
}
