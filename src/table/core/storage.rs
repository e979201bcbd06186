//! Where the slots live: segments with their locks and counters, the sealed
//! [`Storage`] trait with its inline and heap implementations, and the geometry that
//! maps hashes to segments and slots.

use core::fmt;

use crossbeam_utils::CachePadded;

use super::slot::Slot;
use crate::sync::{const_unless_loom, AtomicU64, Ordering};

#[cfg(feature = "alloc")]
/// Slots per segment the geometry aims for (a segment holds its share of the entries
/// with a margin of ~6 standard deviations at full load).
const MIN_SEGMENT_SLOTS: usize = 2048;
#[cfg(feature = "alloc")]
/// The most segments (writer locks) a table is split into.
const MAX_SEGMENTS: usize = 64;

/// A segment's writer lock with the counters its holder keeps, and one stripe of the
/// table's lock-free counters. Opaque: it only appears in storage types.
pub struct Segment {
    pub(super) writer: CachePadded<WriterSide>,
    pub(super) stripe: CachePadded<Stripe>,
    /// Replacements that put a key *before* its old slot in its chain. Written by lock
    /// holders only then, so lookups read it from a line that rarely changes.
    pub(super) moves: CachePadded<AtomicU64>,
}

/// The lock and the counters only its holder changes, on one cache line: bumped with
/// a plain load and store (no RMW), which the lock makes exact.
pub(super) struct WriterSide {
    /// 1 while a writer holds the segment: inserts, removes, and cleaners removing an
    /// entry. Readers never take it.
    pub(super) lock: AtomicU64,
    /// New keys stored.
    pub(super) inserts: AtomicU64,
    pub(super) replaced: AtomicU64,
    pub(super) removed: AtomicU64,
    pub(super) expired: AtomicU64,
    pub(super) evicted: AtomicU64,
}

/// Counters bumped without the lock, striped by thread (see `stripe`).
pub(super) struct Stripe {
    pub(super) hits: AtomicU64,
    pub(super) misses: AtomicU64,
    pub(super) rejected: AtomicU64,
}

impl Segment {
    const_unless_loom! {
        pub(super) fn new() -> Self {
            Self {
                writer: CachePadded::new(WriterSide {
                    lock: AtomicU64::new(0),
                    inserts: AtomicU64::new(0),
                    replaced: AtomicU64::new(0),
                    removed: AtomicU64::new(0),
                    expired: AtomicU64::new(0),
                    evicted: AtomicU64::new(0),
                }),
                stripe: CachePadded::new(Stripe {
                    hits: AtomicU64::new(0),
                    misses: AtomicU64::new(0),
                    rejected: AtomicU64::new(0),
                }),
                moves: CachePadded::new(AtomicU64::new(0)),
            }
        }
    }
}

/// Adds one to a counter only the segment lock holder changes.
#[inline(always)]
pub(super) fn bump(counter: &AtomicU64) {
    counter.store(counter.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
}

impl fmt::Debug for Segment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Segment")
    }
}

mod sealed {
    pub trait Sealed {}
}

/// Where a table keeps its slots: boxed slices ([`TtlTable`](super::TtlTable)) or
/// inline arrays ([`StaticTtlTable`](super::StaticTtlTable)). Sealed; the algorithm
/// is the same for both.
pub trait Storage<K, V>: sealed::Sealed {
    #[doc(hidden)]
    fn slots(&self) -> &[Slot<K, V>];
    #[doc(hidden)]
    fn segments(&self) -> &[Segment];
}

/// Inline storage of `N` slots in one segment, for
/// [`StaticTtlTable`](super::StaticTtlTable).
pub struct InlineStorage<K, V, const N: usize> {
    pub(super) slots: [Slot<K, V>; N],
    pub(super) segment: [Segment; 1],
}

impl<K, V, const N: usize> fmt::Debug for InlineStorage<K, V, N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("InlineStorage")
    }
}

impl<K, V, const N: usize> sealed::Sealed for InlineStorage<K, V, N> {}
impl<K, V, const N: usize> Storage<K, V> for InlineStorage<K, V, N> {
    #[inline(always)]
    fn slots(&self) -> &[Slot<K, V>] {
        &self.slots
    }
    #[inline(always)]
    fn segments(&self) -> &[Segment] {
        &self.segment
    }
}

/// Heap storage allocated once at construction, for [`TtlTable`](super::TtlTable).
#[cfg(feature = "alloc")]
pub struct HeapStorage<K, V> {
    pub(super) slots: alloc::boxed::Box<[Slot<K, V>]>,
    pub(super) segments: alloc::boxed::Box<[Segment]>,
}

#[cfg(feature = "alloc")]
impl<K, V> fmt::Debug for HeapStorage<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HeapStorage")
    }
}

#[cfg(feature = "alloc")]
impl<K, V> sealed::Sealed for HeapStorage<K, V> {}
#[cfg(feature = "alloc")]
impl<K, V> Storage<K, V> for HeapStorage<K, V> {
    #[inline(always)]
    fn slots(&self) -> &[Slot<K, V>] {
        &self.slots
    }
    #[inline(always)]
    fn segments(&self) -> &[Segment] {
        &self.segments
    }
}

/// How hashes map to segments and slots. Read-only after construction.
#[derive(Clone, Copy, Debug)]
pub(super) struct Geometry {
    /// `segments - 1`; segments are a power of two.
    pub(super) seg_mask: usize,
    /// Slots per segment, >= 1.
    pub(super) seg_len: usize,
}

impl Geometry {
    /// The geometry for `capacity` entries at a load of at most 7/8.
    #[cfg(feature = "alloc")]
    pub(super) fn for_capacity(capacity: usize) -> Self {
        let slots = capacity + capacity.div_ceil(7);
        let mut segments = 1;
        while segments * 2 <= MAX_SEGMENTS && slots / (segments * 2) >= MIN_SEGMENT_SLOTS {
            segments *= 2;
        }
        Self {
            seg_mask: segments - 1,
            seg_len: slots.div_ceil(segments),
        }
    }

    pub(super) fn total(&self) -> usize {
        (self.seg_mask + 1) * self.seg_len
    }
}
