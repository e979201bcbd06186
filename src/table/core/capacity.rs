//! The soft capacity: lowering it evicts toward it.

use core::hash::{BuildHasher, Hash};

use super::evict::EVICT_SAMPLE;
use super::{Storage, TtlTableCore};
use crate::capacity::{self, CapacityError, SoftCapacity};
use crate::clock::Clock;
use crate::sync::Ordering;
use crate::table::EvictionHook;

/// Entries `set_capacity` evicts at once when lowering; sweeps and inserts do the rest.
const SHRINK_STEP: usize = 32;

impl<K: Hash + Eq, V, C: Clock, S: BuildHasher, H: EvictionHook<K, V>, St: Storage<K, V>>
    SoftCapacity for TtlTableCore<K, V, C, S, H, St>
{
    fn capacity(&self) -> usize {
        TtlTableCore::capacity(self)
    }

    fn max_capacity(&self) -> usize {
        self.max_capacity
    }

    /// The table, its slots and segments, reserved at construction: constant. Keys'
    /// and values' own heap allocations are not counted.
    fn footprint(&self) -> Option<crate::capacity::Footprint> {
        let (slots, segments) = (self.storage.slots(), self.storage.segments());
        let buffers = [
            (slots.as_ptr().cast::<u8>(), core::mem::size_of_val(slots)),
            (
                segments.as_ptr().cast::<u8>(),
                core::mem::size_of_val(segments),
            ),
        ];
        Some(crate::capacity::Footprint::reserved(
            crate::capacity::reserved_bytes(self, &buffers),
        ))
    }

    fn kind(&self) -> &'static str {
        <crate::table::TableMetrics as crate::metrics::Metrics>::KIND
    }

    /// Sets the soft capacity. Lowering it below `len()` evicts up to 32 entries at
    /// once (expired first, then the soonest-expiring of samples); later sweeps and
    /// inserts evict the rest. Never allocates.
    fn set_capacity(&self, capacity: usize) -> Result<(), CapacityError> {
        capacity::check(capacity, self.max_capacity)?;
        self.control
            .soft_capacity
            .store(capacity as u64, Ordering::Relaxed);
        let now = self.clock.now();
        let total = self.geo.total();
        for _ in 0..SHRINK_STEP {
            if self.len() <= capacity {
                break;
            }
            let start = (self
                .control
                .cursor
                .fetch_add(EVICT_SAMPLE as u64, Ordering::Relaxed)
                % total as u64) as usize;
            if !self.evict_one(start, total, now, None, false) {
                break;
            }
        }
        Ok(())
    }
}
