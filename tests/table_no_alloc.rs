//! After construction, TTL table operations allocate nothing (DESIGN rule 3): inserts
//! (new keys, replacements, evictions), gets, removes, touches, sweeps, soft-capacity
//! changes and metrics, with an eviction hook installed.
//!
//! The counting global allocator of `tests/support/counting_alloc.rs` counts the test
//! thread's allocations only.

#[path = "support/counting_alloc.rs"]
mod counting_alloc;

use counting_alloc::{allocations, Counting};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use membound::capacity::SoftCapacity;
use membound::clock::{Clock, ManualClock};
use membound::table::{SeededHashBuilder, TableConfig, TtlTable};

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
    let before = allocations();
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
    let after = allocations();
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
    assert!(allocations() > after);
    drop(v);
}
