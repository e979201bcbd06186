//! Fixed-capacity concurrent tables whose entries expire by TTL, with no epoch-based
//! reclamation, no background thread and no allocation after construction.
//!
//! [`TtlTable`] (heap, runtime capacity, needs `alloc`) and [`StaticTtlTable`]
//! (inline, const slot count, no allocator, `static`-friendly) are two storages of one
//! algorithm, [`TtlTableCore`]; its documentation describes the slot protocol, why
//! readers never wait, and when each value is dropped.
//!
//! - Time comes from a [`Clock`](crate::clock::Clock) the table owns (pass `&clock`
//!   or an `Arc` to share one); every entry stores the tick it expires at, and a
//!   lookup compares it with the clock, so an entry disappears the tick it expires.
//! - [`sweep`](TtlTableCore::sweep) removes expired entries in bounded steps; inserts
//!   also sweep a few slots each unless [`TableConfig::amortized_sweep`] is 0.
//! - Every entry that leaves goes to the [`EvictionHook`] with its
//!   [`EvictionCause`]; a hook runs after the table let go of the slot.
//! - A full table follows its [`OverflowPolicy`](crate::OverflowPolicy): `DropOldest`
//!   (the default) evicts an expired entry, else the soonest-expiring of a sample of
//!   up to eight live entries near the new key's slot, skipping one being read (for
//!   entries of one TTL, the oldest written); `Reject` hands the entry back. Other
//!   policies are refused at construction with
//!   [`ConfigError::UnsupportedPolicy`](crate::ConfigError::UnsupportedPolicy); see
//!   [`TableConfig`](TableConfig#overflow-policies). The soft capacity can be lowered
//!   at runtime through [`SoftCapacity`](crate::capacity::SoftCapacity).
//! - Keys are hashed with foldhash, randomly seeded per table under `std`
//!   ([`DefaultHashBuilder`]); without `std` pass a seed ([`SeededHashBuilder`]) or
//!   any `BuildHasher`.
//!
//! # Examples
//!
//! ```
//! use core::time::Duration;
//! use std::sync::Arc;
//! use membound::capacity::SoftCapacity;
//! use membound::clock::{Clock, ManualClock};
//! use membound::table::{TableConfig, TtlTable};
//!
//! let clock = Arc::new(ManualClock::default()); // 1 ms ticks
//! let table = TtlTable::with_config(
//!     TableConfig::new(4, Duration::from_millis(100)).with_amortized_sweep(0),
//!     clock.clone(),
//! )?;
//! for i in 0..4 {
//!     table.insert_with_ttl(i, i * 10, Duration::from_millis(10 * (i + 1)))?;
//! }
//! table.insert(9, 90)?; // full: evicts the soonest-expiring entry, key 0
//! assert_eq!(table.get(&0), None);
//! clock.advance(20); // key 1 expires now
//! assert!(!table.contains(&1));
//! assert_eq!(table.sweep(clock.now(), 100).removed, 1);
//! table.set_capacity(2)?; // memory pressure: shrink to 2 entries
//! assert_eq!(table.len(), 2);
//! let m = table.metrics();
//! assert_eq!((m.evicted, m.expired), (2, 1));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod config;
mod core;
mod policy;

pub use self::config::{
    EvictionCause, EvictionHook, InsertError, NoHook, SweepStats, TableConfig, TableMetrics,
};
pub use self::core::{
    DefaultHashBuilder, InlineStorage, SeededHashBuilder, Segment, Slot, StaticTtlTable, Storage,
    TtlTableCore,
};
#[cfg(feature = "alloc")]
pub use self::core::{HeapStorage, TtlTable};
pub use self::policy::{EntryView, Expired, Sweep, SweepPolicy, SweepView};

/// The largest capacity a table accepts: 2^32 entries on 64-bit targets, 2^28 on
/// 32-bit ones.
pub const MAX_CAPACITY: usize = if usize::BITS >= 64 {
    // Through u64 so that 32-bit targets never evaluate an overflowing shift.
    (1u64 << 32) as usize
} else {
    1 << (usize::BITS - 4)
};
