//! The table itself; the algorithm is documented on [`TtlTableCore`].

use core::borrow::Borrow;
use core::fmt;
use core::hash::{BuildHasher, Hash};
use core::marker::PhantomData;
use core::mem::MaybeUninit;
use core::ptr;

use crossbeam_utils::CachePadded;

use super::{EvictionCause, EvictionHook, FullPolicy, InsertError, SweepStats, TableMetrics};
use crate::capacity::{self, CapacityError, SoftCapacity};
use crate::clock::Clock;
use crate::sync::{const_unless_loom, AtomicU64, Backoff, Ordering, UnsafeCell};

// The slot state word: | tag: 32 | readers: 30 | kind: 2 |.
const KIND_MASK: u64 = 0b11;
/// Never held an entry since the last purge; ends every probe.
const EMPTY: u64 = 0;
/// Holds a published entry; readers may join.
const READY: u64 = 1;
/// Owned by one writer: being vacated (its entry is still there, readers draining)
/// or, briefly, claimed by a cleaner that may put it back. Readers skip it.
const BUSY: u64 = 2;
/// Held an entry once; probes continue past it. Reusable by inserts.
const TOMB: u64 = 3;
const READER: u64 = 1 << 2;
const READERS_MASK: u64 = ((1 << 30) - 1) << 2;

#[inline(always)]
const fn kind(s: u64) -> u64 {
    s & KIND_MASK
}
#[inline(always)]
const fn readers(s: u64) -> u64 {
    (s & READERS_MASK) >> 2
}
#[inline(always)]
const fn tag(s: u64) -> u32 {
    (s >> 32) as u32
}
#[inline(always)]
const fn word(tag: u32, kind: u64) -> u64 {
    ((tag as u64) << 32) | kind
}

/// A lookup that missed probes again, at most this many times, when its segment's
/// `moves` count changed meanwhile (a key was replaced into a slot the lookup may have
/// passed) or it passed a `BUSY` slot with its tag (a cleaner may be putting back an
/// entry a `touch` extended).
const READ_RETRIES: usize = 2;
/// Live entries an eviction compares before choosing the soonest-expiring.
const EVICT_SAMPLE: usize = 8;
/// How far a purge looks past a tombstone for the end of its cluster.
const PURGE_WALK: usize = 128;
/// Slots an insert into a full `Reject` table searches for an expired entry.
const EXPIRED_SCAN: usize = 256;
/// Evictions one insert may make before it gives up (under contention, or while the
/// table shrinks toward a lowered soft capacity).
const MAX_EVICTIONS: usize = 4;
/// Times an insert waits (backs off and probes again) for a slot of its segment to be
/// vacated by a thread waiting for the slot's readers, before it is refused. It never
/// evicts for such a slot.
const VACATE_WAITS: usize = 16;
/// Entries `set_capacity` evicts at once when lowering; sweeps and inserts do the rest.
const SHRINK_STEP: usize = 32;
#[cfg(feature = "alloc")]
/// Slots per segment the geometry aims for (a segment holds its share of the entries
/// with a margin of ~6 standard deviations at full load).
const MIN_SEGMENT_SLOTS: usize = 2048;
#[cfg(feature = "alloc")]
/// The most segments (writer locks) a table is split into.
const MAX_SEGMENTS: usize = 64;

/// One entry's storage. Opaque: it only appears in storage types.
///
/// Aligned to 32 bytes so that a slot never straddles two cache lines: a probe that
/// hits costs one miss. (For `u64 -> u64` a slot is exactly 32 bytes.)
#[repr(align(32))]
pub struct Slot<K, V> {
    /// The state word `| tag | readers | kind |`.
    state: AtomicU64,
    /// Tick at which the entry expires. Written by the slot's writer before
    /// publishing, and by `touch` while holding a read.
    expires: AtomicU64,
    /// Initialised exactly while the slot's state is `READY`, or `BUSY` between a
    /// doom and the move-out (or between the write and the publish of an in-place
    /// refill).
    entry: UnsafeCell<MaybeUninit<(K, V)>>,
}

impl<K, V> Slot<K, V> {
    const_unless_loom! {
        fn new() -> Self {
            Self {
                state: AtomicU64::new(EMPTY),
                expires: AtomicU64::new(0),
                entry: UnsafeCell::new(MaybeUninit::uninit()),
            }
        }
    }
}

impl<K, V> fmt::Debug for Slot<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Slot")
    }
}

/// A segment's writer lock with the counters its holder keeps, and one stripe of the
/// table's lock-free counters. Opaque: it only appears in storage types.
pub struct Segment {
    writer: CachePadded<WriterSide>,
    stripe: CachePadded<Stripe>,
    /// Replacements that put a key *before* its old slot in its chain. Written by lock
    /// holders only then, so lookups read it from a line that rarely changes.
    moves: CachePadded<AtomicU64>,
}

/// The lock and the counters only its holder changes, on one cache line: bumped with
/// a plain load and store (no RMW), which the lock makes exact.
struct WriterSide {
    /// 1 while a writer holds the segment: inserts, removes, and cleaners removing an
    /// entry. Readers never take it.
    lock: AtomicU64,
    /// New keys stored.
    inserts: AtomicU64,
    replaced: AtomicU64,
    removed: AtomicU64,
    expired: AtomicU64,
    evicted: AtomicU64,
}

/// Counters bumped without the lock, striped by thread (see `stripe`).
struct Stripe {
    hits: AtomicU64,
    misses: AtomicU64,
    rejected: AtomicU64,
}

impl Segment {
    const_unless_loom! {
        fn new() -> Self {
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
fn bump(counter: &AtomicU64) {
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

/// Where a table keeps its slots: boxed slices ([`TtlTable`]) or inline arrays
/// ([`StaticTtlTable`]). Sealed; the algorithm is the same for both.
pub trait Storage<K, V>: sealed::Sealed {
    #[doc(hidden)]
    fn slots(&self) -> &[Slot<K, V>];
    #[doc(hidden)]
    fn segments(&self) -> &[Segment];
}

/// Inline storage of `N` slots in one segment, for [`StaticTtlTable`].
pub struct InlineStorage<K, V, const N: usize> {
    slots: [Slot<K, V>; N],
    segment: [Segment; 1],
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

/// Heap storage allocated once at construction, for [`TtlTable`].
#[cfg(feature = "alloc")]
pub struct HeapStorage<K, V> {
    slots: alloc::boxed::Box<[Slot<K, V>]>,
    segments: alloc::boxed::Box<[Segment]>,
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

/// The hasher a table uses unless given another: foldhash, seeded per table at random
/// under `std` (so keys chosen by a remote peer cannot be made to collide), and from a
/// seed you pass without `std`.
#[cfg(feature = "std")]
pub type DefaultHashBuilder = foldhash::fast::RandomState;
/// The hasher a table uses unless given another: foldhash, seeded per table at random
/// under `std` (so keys chosen by a remote peer cannot be made to collide), and from a
/// seed you pass without `std`.
#[cfg(not(feature = "std"))]
pub type DefaultHashBuilder = foldhash::fast::FixedState;

/// A seeded foldhash builder for `no_std` tables and reproducible tests:
/// `foldhash::fast::FixedState::with_seed`, re-exported so callers need not depend on
/// foldhash.
pub type SeededHashBuilder = foldhash::fast::FixedState;

/// A TTL table with a runtime capacity, allocated once at construction.
///
/// All methods are documented on [`TtlTableCore`].
///
/// # Examples
///
/// ```
/// use core::time::Duration;
/// use std::sync::Arc;
/// use membound::clock::ManualClock;
/// use membound::table::TtlTable;
///
/// let clock = Arc::new(ManualClock::default()); // 1 ms ticks
/// let sessions = TtlTable::new(1000, Duration::from_secs(30), clock.clone())?;
/// sessions.insert("alice", 42)?;
/// assert_eq!(sessions.get("alice"), Some(42));
/// clock.advance_by(Duration::from_secs(30));
/// assert_eq!(sessions.get("alice"), None); // expired, before any sweep
/// assert_eq!(sessions.sweep(clock.now(), 10_000).removed, 1);
/// # use membound::clock::Clock;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[cfg(feature = "alloc")]
pub type TtlTable<K, V, C, S = DefaultHashBuilder, H = super::NoHook> =
    TtlTableCore<K, V, C, S, H, HeapStorage<K, V>>;

/// A TTL table of `N` slots that needs no allocator and can live in a `static`.
///
/// Holds up to `N - N / 8` entries (so probes stay short). All methods are documented
/// on [`TtlTableCore`]. Not available under `cfg(loom)`; the models check
/// [`TtlTable`], which runs the same code.
///
/// # Examples
///
/// ```
/// use core::time::Duration;
/// use membound::clock::Clock;
/// use membound::table::{NoHook, SeededHashBuilder, StaticTtlTable};
///
/// /// A tick source an embedded program would read from a timer.
/// struct Ticks;
/// impl Clock for Ticks {
///     fn now(&self) -> u64 { 0 }
///     fn tick(&self) -> Duration { Duration::from_millis(1) }
/// }
///
/// static ROUTES: StaticTtlTable<u32, u32, Ticks, 16> =
///     StaticTtlTable::new(Ticks, SeededHashBuilder::with_seed(0x5eed), NoHook, 1_000);
///
/// ROUTES.insert(7, 70).unwrap();
/// assert_eq!(ROUTES.get(&7), Some(70));
/// assert_eq!(ROUTES.capacity(), 14);
/// ```
///
/// Zero slots do not compile:
///
/// ```compile_fail,E0080
/// # use core::time::Duration;
/// # use membound::clock::Clock;
/// # use membound::table::{NoHook, SeededHashBuilder, StaticTtlTable};
/// # struct Ticks;
/// # impl Clock for Ticks {
/// #     fn now(&self) -> u64 { 0 }
/// #     fn tick(&self) -> Duration { Duration::from_millis(1) }
/// # }
/// static NONE: StaticTtlTable<u32, u32, Ticks, 0> =
///     StaticTtlTable::new(Ticks, SeededHashBuilder::with_seed(1), NoHook, 1);
/// ```
pub type StaticTtlTable<K, V, C, const N: usize, S = SeededHashBuilder, H = super::NoHook> =
    TtlTableCore<K, V, C, S, H, InlineStorage<K, V, N>>;

/// How hashes map to segments and slots. Read-only after construction.
#[derive(Clone, Copy, Debug)]
struct Geometry {
    /// `segments - 1`; segments are a power of two.
    seg_mask: usize,
    /// Slots per segment, >= 1.
    seg_len: usize,
}

impl Geometry {
    /// The geometry for `capacity` entries at a load of at most 7/8.
    #[cfg(feature = "alloc")]
    fn for_capacity(capacity: usize) -> Self {
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

    fn total(&self) -> usize {
        (self.seg_mask + 1) * self.seg_len
    }
}

/// Where a key lives: its segment's first slot, its home offset in the segment, its
/// tag.
#[derive(Clone, Copy)]
struct Place {
    seg: usize,
    base: usize,
    home: usize,
    tag: u32,
}

/// The table, generic over its [`Storage`]. Use it through [`TtlTable`] or
/// [`StaticTtlTable`].
///
/// # Algorithm
///
/// Open addressing with linear probing over a fixed slot array, split into up to 64
/// *segments* (a key's segment comes from the high half of its hash; it probes only
/// inside that segment). Each slot has a 64-bit *state word* `| tag | readers | kind |`:
/// the kind is `EMPTY`, `READY`, `BUSY` or `TOMB` (tombstone), the tag is the low 32
/// bits of the key's hash (it also gives the key's home offset, so a state word alone
/// says where its key's probe chain starts), and the reader count says how many
/// threads are looking at the entry. A probe compares keys only on a tag match; state,
/// expiry and entry share the slot, so a hit costs one cache miss.
///
/// - **Readers** (`get`, `get_with`, `contains`, `touch`) take no lock. They walk the
///   chain from the home slot until an `EMPTY`; on a `READY` slot with their tag they
///   join it with a CAS that adds one reader, compare the key, check the expiry tick
///   against the clock, clone the value (or run the closure), and leave with a
///   `fetch_sub`. `BUSY` and `TOMB` slots are skipped. A reader never waits for
///   anything: its CAS only fails when the word changed, and it is bounded by the
///   segment length. So readers are lock-free (wait-free but for CAS retries against
///   other readers of the same slot).
/// - **Writers** (`insert`, `remove`, and cleaners removing an entry) take their
///   segment's lock, a spin lock held only for a bounded scan and plain memory moves,
///   never for user code other than the key's `Eq`. Only a lock holder changes the
///   kind of a `READY` slot, so under the lock keys can be compared without joining.
///   An insert either fills the first free slot of its chain and publishes it with a
///   `Release` store of `READY`, or replaces: the new entry is published *first*, in
///   the first free slot of the chain, then the old slot is *doomed* (`READY` ->
///   `BUSY` with one `fetch_add`, keeping its readers). If the new slot lies after the
///   old one, a lookup reads the old value or walks past the old slot to the new one
///   (the old slot cannot turn `EMPTY` while the new entry's chain passes it). If it
///   lies before, a lookup may have passed it before it was published; it then meets
///   the old slot `BUSY`, or as a tombstone that keeps the key's tag and is not purged
///   at once, and probes again. So a replaced key is not missed (see
///   `Doomed::purge` for the one remaining, far-fetched window). A replacement needs a
///   free slot in the segment; the table keeps one in eight slots free, so a segment
///   lacks one only transiently (slots still being vacated) or under a pathological
///   hash distribution. A slot being vacated is free once its readers leave, so an
///   insert (new key or replacement) that finds no other waits for it a bounded
///   number of times and is then refused ([`InsertError::Full`]); it never evicts for
///   it. An insert evicts only when entries fill the room it needs: the soft capacity
///   (a new key, under [`FullPolicy::EvictSoonestExpiring`]) or every slot of its
///   segment.
/// - **Cleaners** (sweeps, amortized sweeps, evictions, capacity shrinking) remove an
///   entry only if it has *no* readers, claimed by CAS under the segment lock, so they
///   never wait for a reader; sweeps also skip a segment whose lock is taken.
///
/// # When values are dropped
///
/// A doomed or claimed slot is vacated by the thread that doomed it: at once, still
/// under the segment lock, if it has no readers (the common case), otherwise after
/// releasing the lock, once the reader count reaches zero (each reader's `fetch_sub`
/// is `Release`, the vacating load `Acquire`, so every read of the entry happens before
/// the move-out). It moves key and value out with one `ptr::read` and stores `TOMB`.
/// From then on the table holds no copy, so each value is dropped exactly once: by
/// `remove` or an insert's replacement (returned to the caller after the hook saw it),
/// by a sweep or eviction (dropped right after the hook), or by the table's `Drop`. No
/// epoch, hazard pointer or deferred list is needed because no reader ever holds a
/// pointer past its `fetch_sub`.
///
/// # Progress
///
/// Readers never wait (see above). Writers wait for each other only on their
/// segment's spin lock, whose holder runs no user code but `Eq` and memory moves. The
/// one wait on user code is that of `remove`/`insert` for readers of the *same* entry,
/// which are cloning it or running a `get_with` closure on it; no lock is held
/// meanwhile, so the closure may call any method, except removing or replacing the
/// very key it is looking at, which would wait for itself. Cleaners never wait for
/// readers. Hooks run after the slot is vacated and no lock is held, so a hook may
/// call back into the table freely.
///
/// # Tombstones
///
/// A vacated slot becomes `TOMB` (probes must continue past it). Under the segment
/// lock a tombstone turns back into `EMPTY` when the cluster after it contains no
/// entry whose chain passes it, which the tags tell without touching keys; this keeps
/// chains short under churn without moving entries (moving would race lock-free
/// readers). Inserts reuse the first tombstone of their chain.
///
/// # Expiry
///
/// Every entry stores the tick it expires at. `get` compares it with
/// [`Clock::now`], so an entry is invisible the tick it expires, before any sweep.
/// Removal of expired entries is bounded work: [`sweep`](Self::sweep) scans a given
/// number of slots from a shared cursor, and with amortized sweeping each insert scans
/// a few.
///
/// # Memory
///
/// One state word (8 bytes), one expiry tick (8 bytes) and `size_of::<(K, V)>()` per
/// slot, rounded up to a multiple of 32 bytes, with `capacity + capacity / 7` slots (a
/// load of at most 7/8), plus 384 bytes per segment: for `u64 -> u64` about 20.6 bytes
/// of overhead per entry. Nothing is allocated after construction.
pub struct TtlTableCore<K, V, C, S, H, St: Storage<K, V>> {
    /// Entries stored (live or expired, not yet vacated). Bumped by inserts of new
    /// keys before they take a slot, so it never exceeds the soft capacity for long.
    len: CachePadded<AtomicU64>,
    /// Soft capacity; the sweep cursor; sweep count.
    control: CachePadded<Control>,
    /// Read-only after construction.
    geo: Geometry,
    max_capacity: usize,
    default_ttl: u64,
    policy: FullPolicy,
    amortized_sweep: usize,
    clock: C,
    hasher: S,
    hook: H,
    storage: St,
    _owns: PhantomData<(K, V)>,
}

struct Control {
    soft_capacity: AtomicU64,
    cursor: AtomicU64,
    sweeps: AtomicU64,
}

// SAFETY: the table hands out `&V` to readers on any thread (so `V: Sync`), moves keys
// and values in and out from any thread (so `Send`), compares keys from any thread
// (`K: Sync`); clock, hasher and hook are shared by reference. All slot access is
// coordinated by the state words as documented on the type.
unsafe impl<K, V, C, S, H, St> Sync for TtlTableCore<K, V, C, S, H, St>
where
    K: Send + Sync,
    V: Send + Sync,
    C: Sync,
    S: Sync,
    H: Sync,
    St: Storage<K, V> + Send,
{
}

// SAFETY: sending the table sends its entries, which are `Send`.
unsafe impl<K, V, C, S, H, St> Send for TtlTableCore<K, V, C, S, H, St>
where
    K: Send,
    V: Send,
    C: Send,
    S: Send,
    H: Send,
    St: Storage<K, V> + Send,
{
}

/// Leaves a slot's readers on drop, also when a user's `Eq` or `Clone` panics.
struct ReadGuard<'a>(&'a AtomicU64);

impl Drop for ReadGuard<'_> {
    #[inline(always)]
    fn drop(&mut self) {
        // Release: the reader's accesses to the entry happen before a vacating
        // writer's Acquire load that sees the count at zero.
        self.0.fetch_sub(READER, Ordering::Release);
    }
}

/// Holds a segment's writer lock; unlocks on drop, also on a panicking `Eq`.
struct LockGuard<'a>(&'a AtomicU64);

impl<'a> LockGuard<'a> {
    #[inline]
    fn lock(lock: &'a AtomicU64) -> Self {
        let mut backoff = Backoff::new();
        loop {
            if lock
                .compare_exchange_weak(0, 1, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                return Self(lock);
            }
            while lock.load(Ordering::Relaxed) != 0 {
                backoff.snooze();
            }
        }
    }

    #[inline]
    fn try_lock(lock: &'a AtomicU64) -> Option<Self> {
        lock.compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed)
            .ok()
            .map(|_| Self(lock))
    }
}

impl Drop for LockGuard<'_> {
    #[inline]
    fn drop(&mut self) {
        self.0.store(0, Ordering::Release);
    }
}

/// What a probe step found.
enum Step<'a> {
    /// `EMPTY`: the chain ends.
    End,
    /// Not a candidate.
    Skip,
    /// `BUSY` with the tag sought: the entry may be put back by a cleaner.
    BusyMatch,
    /// Joined a `READY` slot with the tag sought.
    Joined(ReadGuard<'a>),
}

/// Tries to join the slot as a reader if it is `READY` with `tag`.
#[inline(always)]
fn join(state: &AtomicU64, tag: u32) -> Step<'_> {
    let mut s = state.load(Ordering::Acquire);
    loop {
        match kind(s) {
            EMPTY => return Step::End,
            TOMB => return Step::Skip,
            BUSY if self::tag(s) == tag => return Step::BusyMatch,
            BUSY => return Step::Skip,
            _ if self::tag(s) != tag => return Step::Skip,
            _ => {
                debug_assert!(readers(s) < READERS_MASK >> 2, "reader count overflow");
                // Acquire: synchronises with the Release store that published the
                // entry, so the reader sees it fully written.
                match state.compare_exchange_weak(
                    s,
                    s + READER,
                    Ordering::Acquire,
                    Ordering::Acquire,
                ) {
                    Ok(_) => return Step::Joined(ReadGuard(state)),
                    Err(seen) => s = seen,
                }
            }
        }
    }
}

/// A slot that left the table and must be vacated once its readers are gone.
struct Doomed {
    index: usize,
    seg: usize,
    cause: EvictionCause,
}

#[cfg(not(loom))]
impl<K, V, C: Clock, S: BuildHasher, H: EvictionHook<K, V>, const N: usize>
    TtlTableCore<K, V, C, S, H, InlineStorage<K, V, N>>
{
    /// An empty table of `N` slots (up to `N - N / 8` entries) whose entries live
    /// `default_ttl` ticks unless inserted with their own TTL; usable in a `static`.
    ///
    /// Full policy [`FullPolicy::EvictSoonestExpiring`], amortized sweeping of
    /// [`TableConfig::DEFAULT_AMORTIZED_SWEEP`](super::TableConfig::DEFAULT_AMORTIZED_SWEEP)
    /// slots per insert; change them with [`with_policy`](Self::with_policy) and
    /// [`with_amortized_sweep`](Self::with_amortized_sweep).
    ///
    /// # Panics
    ///
    /// At compile time in a `static` (at run time otherwise) if `N == 0` or
    /// `default_ttl == 0`.
    pub const fn new(clock: C, hasher: S, hook: H, default_ttl: u64) -> Self {
        const {
            assert!(N > 0, "a StaticTtlTable needs at least 1 slot");
            assert!(
                N <= u32::MAX as usize,
                "StaticTtlTable slots above u32::MAX"
            );
        }
        assert!(default_ttl > 0, "default TTL must be greater than zero");
        let capacity = N - N / 8;
        Self {
            len: CachePadded::new(AtomicU64::new(0)),
            control: CachePadded::new(Control {
                soft_capacity: AtomicU64::new(capacity as u64),
                cursor: AtomicU64::new(0),
                sweeps: AtomicU64::new(0),
            }),
            geo: Geometry {
                seg_mask: 0,
                seg_len: N,
            },
            max_capacity: capacity,
            default_ttl,
            policy: FullPolicy::EvictSoonestExpiring,
            amortized_sweep: super::TableConfig::DEFAULT_AMORTIZED_SWEEP,
            clock,
            hasher,
            hook,
            storage: InlineStorage {
                slots: [const { Slot::new() }; N],
                segment: [const { Segment::new() }],
            },
            _owns: PhantomData,
        }
    }

    /// Sets the policy for a full table.
    pub const fn with_policy(mut self, policy: FullPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Sets the slots swept per insert; 0 turns amortized sweeping off.
    pub const fn with_amortized_sweep(mut self, slots: usize) -> Self {
        self.amortized_sweep = slots;
        self
    }
}

#[cfg(feature = "std")]
impl<K: Hash + Eq, V, C: Clock>
    TtlTableCore<K, V, C, DefaultHashBuilder, super::NoHook, HeapStorage<K, V>>
{
    /// An empty table for `capacity` entries living `default_ttl` each, with the
    /// default policy, a randomly seeded hasher and no hook.
    ///
    /// Allocates once, here; nothing allocates afterwards.
    ///
    /// # Errors
    ///
    /// As [`TableConfig::validate`](super::TableConfig::validate).
    ///
    /// # Examples
    ///
    /// ```
    /// use core::time::Duration;
    /// use membound::clock::MonotonicClock;
    /// use membound::table::{ConfigError, TtlTable};
    ///
    /// let table = TtlTable::<u64, u64, _>::new(100, Duration::from_secs(1), MonotonicClock::new())?;
    /// assert_eq!(table.capacity(), 100);
    /// let err = TtlTable::<u64, u64, _>::new(0, Duration::from_secs(1), MonotonicClock::new());
    /// assert_eq!(err.unwrap_err(), ConfigError::ZeroCapacity);
    /// # Ok::<(), ConfigError>(())
    /// ```
    pub fn new(
        capacity: usize,
        default_ttl: core::time::Duration,
        clock: C,
    ) -> Result<Self, super::ConfigError> {
        Self::with_config(super::TableConfig::new(capacity, default_ttl), clock)
    }

    /// An empty table built from `config`, with a randomly seeded hasher and no hook.
    ///
    /// # Errors
    ///
    /// As [`TableConfig::validate`](super::TableConfig::validate).
    pub fn with_config(config: super::TableConfig, clock: C) -> Result<Self, super::ConfigError> {
        Self::with_parts(config, clock, DefaultHashBuilder::default(), super::NoHook)
    }
}

#[cfg(feature = "alloc")]
impl<K: Hash + Eq, V, C: Clock, S: BuildHasher, H: EvictionHook<K, V>>
    TtlTableCore<K, V, C, S, H, HeapStorage<K, V>>
{
    /// An empty table built from `config` with the given hasher and eviction hook.
    ///
    /// Without `std` there is no random seed: pass
    /// [`SeededHashBuilder::with_seed`](foldhash::fast::FixedState::with_seed) with a
    /// seed from your platform's entropy, or any [`BuildHasher`].
    ///
    /// # Errors
    ///
    /// As [`TableConfig::validate`](super::TableConfig::validate).
    ///
    /// # Examples
    ///
    /// ```
    /// use core::time::Duration;
    /// use std::sync::{Arc, Mutex};
    /// use membound::clock::{Clock, ManualClock};
    /// use membound::table::{EvictionCause, SeededHashBuilder, TableConfig, TtlTable};
    ///
    /// let log = Arc::new(Mutex::new(Vec::new()));
    /// let seen = log.clone();
    /// let clock = Arc::new(ManualClock::default());
    /// let table = TtlTable::with_parts(
    ///     TableConfig::new(8, Duration::from_millis(10)),
    ///     clock.clone(),
    ///     SeededHashBuilder::with_seed(7),
    ///     move |k: &u32, _: &String, cause| seen.lock().unwrap().push((*k, cause)),
    /// )?;
    /// table.insert(1, "one".to_string())?;
    /// table.insert(1, "uno".to_string())?;
    /// clock.advance(10);
    /// table.sweep(clock.now(), 100);
    /// assert_eq!(
    ///     *log.lock().unwrap(),
    ///     [(1, EvictionCause::Replaced), (1, EvictionCause::Expired)]
    /// );
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn with_parts(
        config: super::TableConfig,
        clock: C,
        hasher: S,
        hook: H,
    ) -> Result<Self, super::ConfigError> {
        config.validate()?;
        let geo = Geometry::for_capacity(config.capacity);
        let total = geo.total();
        let default_ttl = clock.ticks_for(config.default_ttl).max(1);
        Ok(Self {
            len: CachePadded::new(AtomicU64::new(0)),
            control: CachePadded::new(Control {
                soft_capacity: AtomicU64::new(config.capacity as u64),
                cursor: AtomicU64::new(0),
                sweeps: AtomicU64::new(0),
            }),
            geo,
            max_capacity: config.capacity,
            default_ttl,
            policy: config.policy,
            amortized_sweep: config.amortized_sweep,
            clock,
            hasher,
            hook,
            storage: HeapStorage {
                slots: (0..total).map(|_| Slot::new()).collect(),
                segments: (0..=geo.seg_mask).map(|_| Segment::new()).collect(),
            },
            _owns: PhantomData,
        })
    }

    /// Bytes this table reserved: the table itself plus its heap storage. Constant
    /// from construction on.
    pub fn memory_footprint(&self) -> usize {
        core::mem::size_of::<Self>()
            + core::mem::size_of_val::<[Slot<K, V>]>(&self.storage.slots)
            + core::mem::size_of_val::<[Segment]>(&self.storage.segments)
    }
}

impl<K, V, C, S, H, St> TtlTableCore<K, V, C, S, H, St>
where
    K: Hash + Eq,
    C: Clock,
    S: BuildHasher,
    H: EvictionHook<K, V>,
    St: Storage<K, V>,
{
    #[inline(always)]
    fn state(&self, index: usize) -> &AtomicU64 {
        &self.slot(index).state
    }

    #[inline(always)]
    fn slot(&self, index: usize) -> &Slot<K, V> {
        let slots = self.storage.slots();
        debug_assert!(index < slots.len());
        // SAFETY: every index is `base + offset` with `base = seg * seg_len`,
        // `seg <= seg_mask` and `offset < seg_len`, so below `geo.total()`, the length
        // of the slot array.
        unsafe { slots.get_unchecked(index) }
    }

    /// The counter stripe this thread bumps: that of a segment picked by hashing the
    /// address of the caller's stack frame, so threads (whose stacks lie far apart)
    /// mostly bump different cache lines and a `get` adds no shared-line RMW.
    #[inline(always)]
    fn stripe(&self) -> &Stripe {
        let marker = 0u8;
        let frame = core::ptr::addr_of!(marker) as usize as u64;
        let stripe = ((frame >> 12).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40) as usize;
        &self.storage.segments()[stripe & self.geo.seg_mask].stripe
    }

    #[inline(always)]
    fn segment(&self, seg: usize) -> &WriterSide {
        &self.storage.segments()[seg].writer
    }

    #[inline(always)]
    fn place<Q: Hash + ?Sized>(&self, key: &Q) -> Place {
        let hash = self.hasher.hash_one(key);
        let tag = hash as u32;
        let seg = (hash >> 32) as usize & self.geo.seg_mask;
        Place {
            seg,
            base: seg * self.geo.seg_len,
            home: self.home(tag),
            tag,
        }
    }

    /// The home offset of a tag within its segment.
    #[inline(always)]
    fn home(&self, tag: u32) -> usize {
        ((u64::from(tag) * self.geo.seg_len as u64) >> 32) as usize
    }

    #[inline(always)]
    fn next_offset(&self, offset: usize) -> usize {
        if offset + 1 == self.geo.seg_len {
            0
        } else {
            offset + 1
        }
    }

    /// Whether the entry at `index`, which the caller has joined as a reader, has
    /// `key`.
    #[inline(always)]
    fn key_is<Q>(&self, index: usize, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        self.slot(index).entry.with(|entry| {
            // SAFETY: the caller holds a read on a slot it joined while `READY`, or
            // holds the segment lock and saw the slot `READY`. Either way the entry is
            // initialised and nobody moves it out or writes it meanwhile: only a lock
            // holder takes a `READY` slot, and it waits for readers to leave.
            let (k, _) = unsafe { (*entry).assume_init_ref() };
            k.borrow() == key
        })
    }

    /// Runs `f` on the live value of `key`, or returns `None`.
    fn read<Q, R>(&self, key: &Q, now: u64, f: impl FnOnce(&Slot<K, V>, &V) -> R) -> Option<R>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let p = self.place(key);
        let counters = self.stripe();
        let moves = &self.storage.segments()[p.seg].moves;
        for _ in 0..=READ_RETRIES {
            // Acquire: pairs with the Release bump, see `insert_locked`.
            let before = moves.load(Ordering::Acquire);
            let mut busy_match = false;
            let mut offset = p.home;
            for _ in 0..self.geo.seg_len {
                let index = p.base + offset;
                match join(self.state(index), p.tag) {
                    Step::End => break,
                    Step::Skip => {}
                    Step::BusyMatch => busy_match = true,
                    Step::Joined(guard) => {
                        if self.key_is(index, key) {
                            let slot = self.slot(index);
                            if slot.expires.load(Ordering::Relaxed) <= now {
                                drop(guard);
                                counters.misses.fetch_add(1, Ordering::Relaxed);
                                return None;
                            }
                            counters.hits.fetch_add(1, Ordering::Relaxed);
                            let result = slot.entry.with(|entry| {
                                // SAFETY: as in `key_is`: we hold a read.
                                let (_, v) = unsafe { (*entry).assume_init_ref() };
                                f(slot, v)
                            });
                            drop(guard);
                            return Some(result);
                        }
                    }
                }
                offset = self.next_offset(offset);
            }
            if !busy_match && moves.load(Ordering::Acquire) == before {
                break;
            }
        }
        counters.misses.fetch_add(1, Ordering::Relaxed);
        None
    }

    /// A clone of the live value of `key`.
    ///
    /// Lock-free; see the type's documentation. Expired entries are invisible.
    ///
    /// # Examples
    ///
    /// ```
    /// use core::time::Duration;
    /// use membound::clock::ManualClock;
    /// use membound::table::TtlTable;
    ///
    /// let table = TtlTable::new(10, Duration::from_secs(1), ManualClock::default())?;
    /// table.insert("k".to_string(), vec![1, 2])?;
    /// assert_eq!(table.get("k"), Some(vec![1, 2]));
    /// assert_eq!(table.get("other"), None);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[inline]
    pub fn get<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
        V: Clone,
    {
        self.read(key, self.clock.now(), |_, v| v.clone())
    }

    /// Runs `f` on the live value of `key` and returns its result, without cloning.
    ///
    /// `f` runs while this thread is counted as a reader of the entry: other readers
    /// are unaffected and no lock is held, so `f` may call any method of the table,
    /// except `remove` or `insert` of this same key, which wait for the entry's
    /// readers to leave and would so wait for `f` itself.
    ///
    /// # Examples
    ///
    /// ```
    /// use core::time::Duration;
    /// use membound::clock::ManualClock;
    /// use membound::table::TtlTable;
    ///
    /// let table = TtlTable::new(10, Duration::from_secs(1), ManualClock::default())?;
    /// table.insert(1, "a long string".to_string())?;
    /// assert_eq!(table.get_with(&1, |s| s.len()), Some(13));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[inline]
    pub fn get_with<Q, R>(&self, key: &Q, f: impl FnOnce(&V) -> R) -> Option<R>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.read(key, self.clock.now(), |_, v| f(v))
    }

    /// Whether `key` has a live entry.
    #[inline]
    pub fn contains<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.read(key, self.clock.now(), |_, _| ()).is_some()
    }

    /// Restarts the default TTL of `key`'s live entry from now. Returns whether there
    /// was one; an expired entry is not revived.
    ///
    /// Lock-free, like `get`.
    ///
    /// # Examples
    ///
    /// ```
    /// use core::time::Duration;
    /// use std::sync::Arc;
    /// use membound::clock::ManualClock;
    /// use membound::table::TtlTable;
    ///
    /// let clock = Arc::new(ManualClock::default());
    /// let table = TtlTable::new(10, Duration::from_millis(100), clock.clone())?;
    /// table.insert(1, ())?;
    /// clock.advance(60);
    /// assert!(table.touch(&1));
    /// clock.advance(60);
    /// assert!(table.contains(&1)); // 120 ms after insert, 60 after the touch
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn touch<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.touch_ticks(key, self.default_ttl)
    }

    /// Sets the TTL of `key`'s live entry to `ttl` from now. Returns whether there was
    /// one.
    pub fn touch_with_ttl<Q>(&self, key: &Q, ttl: core::time::Duration) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.touch_ticks(key, self.clock.ticks_for(ttl))
    }

    fn touch_ticks<Q>(&self, key: &Q, ttl: u64) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let now = self.clock.now();
        // Relaxed: the store is published to a cleaner by the reader's Release
        // `fetch_sub`, which its claiming CAS (Acquire) reads from.
        self.read(key, now, |slot, _| {
            slot.expires
                .store(now.saturating_add(ttl), Ordering::Relaxed)
        })
        .is_some()
    }

    /// Stores `value` under `key` with the table's default TTL. Returns the value it
    /// replaced, if `key` had a live entry.
    ///
    /// A new key needs room: with [`FullPolicy::Reject`] a full table refuses it,
    /// with [`FullPolicy::EvictSoonestExpiring`] it evicts an entry first. Replacing a
    /// live key evicts another only if entries fill every slot of the key's segment
    /// (a pathological hash distribution). Replaced, expired and evicted entries go to
    /// the eviction hook with their cause.
    ///
    /// # Errors
    ///
    /// [`InsertError::Full`] with the key and value when no room could be made,
    /// including, transiently, when the key's segment has no free slot because slots
    /// of it wait for their readers to leave (see the type's documentation).
    ///
    /// # Examples
    ///
    /// ```
    /// use core::time::Duration;
    /// use membound::clock::ManualClock;
    /// use membound::table::{FullPolicy, InsertError, TableConfig, TtlTable};
    ///
    /// let config = TableConfig::new(1, Duration::from_secs(1)).with_policy(FullPolicy::Reject);
    /// let table = TtlTable::with_config(config, ManualClock::default())?;
    /// assert_eq!(table.insert(1, 'a')?, None);
    /// assert_eq!(table.insert(1, 'b')?, Some('a'));
    /// match table.insert(2, 'c') {
    ///     Err(InsertError::Full { key, value }) => assert_eq!((key, value), (2, 'c')),
    ///     other => panic!("{other:?}"),
    /// }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[inline]
    pub fn insert(&self, key: K, value: V) -> Result<Option<V>, InsertError<K, V>> {
        self.insert_ticks(key, value, self.default_ttl)
    }

    /// Stores `value` under `key`, expiring `ttl` from now; otherwise as
    /// [`insert`](Self::insert).
    ///
    /// # Errors
    ///
    /// As [`insert`](Self::insert).
    pub fn insert_with_ttl(
        &self,
        key: K,
        value: V,
        ttl: core::time::Duration,
    ) -> Result<Option<V>, InsertError<K, V>> {
        self.insert_ticks(key, value, self.clock.ticks_for(ttl))
    }

    fn insert_ticks(&self, key: K, value: V, ttl: u64) -> Result<Option<V>, InsertError<K, V>> {
        let now = self.clock.now();
        let p = self.place(&key);
        let expires = now.saturating_add(ttl);
        let mut entry = (key, value);
        let mut evictions = 0;
        let mut waits = 0;
        let mut backoff = Backoff::new();
        let result = loop {
            let (outcome, gone) = self.insert_locked(&p, entry, expires, now);
            let old = gone.and_then(|g| self.settle(g));
            match outcome {
                Attempt::Stored => break Ok(None),
                Attempt::Replaced => break Ok(old),
                Attempt::NoRoom(back, shortage) => {
                    // `Reject` refuses only when full of live entries: an expired one
                    // near the key's slot makes room first.
                    let (limit, expired_only) = match self.policy {
                        FullPolicy::Reject => (EXPIRED_SCAN, true),
                        FullPolicy::EvictSoonestExpiring => (self.geo.total(), false),
                    };
                    let start = p.base + p.home;
                    let room = match shortage {
                        // Live entries fill the soft capacity: evict anywhere.
                        Shortage::Capacity => {
                            evictions += 1;
                            evictions <= MAX_EVICTIONS
                                && self.evict_one(start, limit, now, None, expired_only)
                        }
                        // Entries fill every slot of the segment (a pathological hash
                        // distribution): evict in it, or wait for a reader of a
                        // candidate to leave.
                        Shortage::Slots => {
                            evictions += 1;
                            evictions <= MAX_EVICTIONS
                                && (self.evict_one(start, limit, now, Some(p.seg), expired_only)
                                    || {
                                        backoff.snooze();
                                        true
                                    })
                        }
                        // A slot that left the table still waits for its readers: it
                        // is free once they leave, so wait for it, a bounded number of
                        // times. Evicting would drop a live entry with no need.
                        Shortage::Vacating => {
                            waits += 1;
                            waits <= VACATE_WAITS && {
                                backoff.snooze();
                                true
                            }
                        }
                    };
                    if !room {
                        self.stripe().rejected.fetch_add(1, Ordering::Relaxed);
                        let (key, value) = back;
                        break Err(InsertError::Full { key, value });
                    }
                    entry = back;
                }
            }
        };
        if self.amortized_sweep > 0 {
            self.sweep_near(p.base + p.home, now);
        }
        result
    }

    /// Amortized sweeping: removes expired entries among the `amortized_sweep` slots
    /// after `start`. Inserts land at random slots, so these scans cover the table
    /// at random; unlike [`sweep`](Self::sweep) they touch no shared cursor and are
    /// not counted in `sweeps`.
    fn sweep_near(&self, start: usize, now: u64) {
        let total = self.geo.total();
        let mut index = start;
        for _ in 0..self.amortized_sweep.min(total) {
            index = if index + 1 >= total { 0 } else { index + 1 };
            let s = self.state(index).load(Ordering::Acquire);
            if kind(s) == READY
                && readers(s) == 0
                && self.slot(index).expires.load(Ordering::Relaxed) <= now
            {
                self.remove_if(index, now, false, false);
            }
        }
    }

    /// One insert attempt under the segment lock.
    fn insert_locked(
        &self,
        p: &Place,
        entry: (K, V),
        expires: u64,
        now: u64,
    ) -> (Attempt<K, V>, Option<Gone<K, V>>) {
        let w = self.segment(p.seg);
        let _lock = LockGuard::lock(&w.lock);
        // The first free slot of the chain, for a new key; and the first free slot
        // after the key's current slot, for a replacement.
        let mut free = None;
        let mut free_after = None;
        let mut found = None;
        // Whether a slot passed is being vacated (doomed, its readers not yet gone).
        // Only seen complete when there is no free slot: then the scan covers the
        // segment.
        let mut vacating = false;
        let mut offset = p.home;
        for _ in 0..self.geo.seg_len {
            let index = p.base + offset;
            let s = self.state(index).load(Ordering::Acquire);
            match kind(s) {
                EMPTY => {
                    free.get_or_insert(index);
                    if found.is_some() {
                        free_after = Some(index);
                    }
                    break;
                }
                TOMB => {
                    free.get_or_insert(index);
                    if found.is_some() {
                        free_after = Some(index);
                        break;
                    }
                }
                READY if found.is_none() && tag(s) == p.tag && self.key_is(index, &entry.0) => {
                    found = Some(index);
                }
                // Under the lock, a `BUSY` slot is one a thread doomed and vacates once
                // its readers leave (a cleaner's claim never outlives its lock).
                BUSY => vacating = true,
                _ => {}
            }
            offset = self.next_offset(offset);
        }
        // Why there is no free slot, if there is none.
        let no_slot = if vacating {
            Shortage::Vacating
        } else {
            Shortage::Slots
        };

        let old_expired = match found {
            Some(index) if self.slot(index).expires.load(Ordering::Relaxed) > now => {
                // Publish the new entry first, then retire the old one. If the new
                // slot lies after the old one, a lookup reaches the old slot first and
                // reads the old value there, or walks past it to the new one, published
                // before the doom it saw (the old slot cannot turn `EMPTY` while the new
                // entry's chain passes it). If it lies before, a lookup may have passed
                // it unpublished: bumping `moves` between the publish and the doom
                // makes such a lookup, which then misses, probe again.
                let Some(free) = free else {
                    return (Attempt::NoRoom(entry, no_slot), None);
                };
                self.fill(free, p.tag, entry, expires);
                if free_after != Some(free) {
                    let moves = &self.storage.segments()[p.seg].moves;
                    // Release: a lookup that reads the new count sees the publish.
                    moves.store(moves.load(Ordering::Relaxed) + 1, Ordering::Release);
                }
                bump(&w.replaced);
                let gone = self.retire(index, p.seg, EvictionCause::Replaced);
                return (Attempt::Replaced, Some(gone));
            }
            Some(index) => {
                // Expired: it leaves as `Expired` and the insert is of a new key. It is
                // retired after the fill below, so that purging its tombstone cannot
                // cut the chain the new entry is about to join.
                bump(&w.expired);
                self.len.fetch_sub(1, Ordering::Relaxed);
                Some(index)
            }
            None => None,
        };
        let outcome = match free {
            None => Attempt::NoRoom(entry, no_slot),
            Some(_) if !self.reserve() => Attempt::NoRoom(entry, Shortage::Capacity),
            Some(free) => {
                bump(&w.inserts);
                self.fill(free, p.tag, entry, expires);
                Attempt::Stored
            }
        };
        let gone = old_expired.map(|index| self.retire(index, p.seg, EvictionCause::Expired));
        (outcome, gone)
    }

    /// Counts a new entry against the soft capacity, if there is room.
    #[inline]
    fn reserve(&self) -> bool {
        let cap = self.control.soft_capacity.load(Ordering::Relaxed);
        let mut len = self.len.load(Ordering::Relaxed);
        loop {
            if len >= cap {
                return false;
            }
            match self
                .len
                .compare_exchange_weak(len, len + 1, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return true,
                Err(seen) => len = seen,
            }
        }
    }

    /// Writes an entry into a free (`EMPTY` or `TOMB`) slot and publishes it. The
    /// caller holds the segment lock, so nobody else claims the slot.
    #[inline]
    fn fill(&self, index: usize, tag: u32, entry: (K, V), expires: u64) {
        let slot = self.slot(index);
        slot.entry.with_mut(|cell| {
            // SAFETY: the slot holds no entry and only the lock holder writes free
            // slots; readers skip it until the store below publishes it.
            unsafe { (*cell).write(entry) };
        });
        slot.expires.store(expires, Ordering::Relaxed);
        // Release: publishes the entry and its expiry to readers' Acquire CAS.
        self.state(index).store(word(tag, READY), Ordering::Release);
    }

    /// Takes a `READY` slot out of the table under the segment lock the caller holds:
    /// dooms it (`READY` -> `BUSY`, keeping readers and tag) and, if nobody is reading
    /// it (the common case), vacates it at once. Counting is the caller's.
    fn retire(&self, index: usize, seg: usize, cause: EvictionCause) -> Gone<K, V> {
        // Only lock holders change the kind of a `READY` slot, and readers only change
        // its count, so adding `BUSY - READY` turns exactly this `READY` into `BUSY`.
        // AcqRel: a reader that sees the doom (Acquire) also sees a replacement
        // published before it; and we see the reads of readers that already left.
        let s = self.state(index).fetch_add(BUSY - READY, Ordering::AcqRel);
        debug_assert_eq!(kind(s), READY);
        let doomed = Doomed { index, seg, cause };
        if readers(s) == 0 {
            let (k, v) = self.vacate(&doomed, true);
            Gone::Taken(k, v, cause)
        } else {
            Gone::Doomed(doomed)
        }
    }

    /// Finishes what a lock holder took out: vacates it if still doomed (waiting for
    /// its readers, with no lock held), then reports it.
    fn settle(&self, gone: Gone<K, V>) -> Option<V> {
        match gone {
            Gone::Taken(k, v, cause) => self.report(cause, k, v),
            Gone::Doomed(d) => {
                let (k, v) = self.vacate(&d, false);
                self.report(d.cause, k, v)
            }
        }
    }

    /// Waits until a doomed slot has no readers, moves its entry out, stores `TOMB`
    /// and purges it. `locked`: the caller holds the segment lock (then there are no
    /// readers to wait for); otherwise the purge happens only if the lock is free.
    fn vacate(&self, doomed: &Doomed, locked: bool) -> (K, V) {
        let state = self.state(doomed.index);
        let mut backoff = Backoff::new();
        // Acquire: every reader's Release `fetch_sub` happens before the move-out.
        let mut s = state.load(Ordering::Acquire);
        while readers(s) != 0 {
            debug_assert!(!locked, "waiting for readers under the segment lock");
            backoff.snooze();
            s = state.load(Ordering::Acquire);
        }
        debug_assert_eq!(kind(s), BUSY);
        let entry = self.slot(doomed.index).entry.with_mut(|cell| {
            // SAFETY: the slot is `BUSY` with no readers and owned by this thread, and
            // its entry is initialised (dooming requires `READY`). After the read the
            // cell is uninitialised as far as the table knows: the state becomes
            // `TOMB`, and only a later `fill` writes it again.
            unsafe { ptr::read(cell).assume_init() }
        });
        // Release: the move-out happens before a later fill of this slot, and a
        // lookup that sees the tombstone (Acquire) sees what happened before the doom.
        state.store(TOMB, Ordering::Release);
        if locked {
            self.purge(doomed.seg, doomed.index);
        } else if let Some(_lock) = LockGuard::try_lock(&self.segment(doomed.seg).lock) {
            self.purge(doomed.seg, doomed.index);
        }
        entry
    }

    /// Shows an entry that left to the hook (no lock or slot held); returns the value
    /// for `Removed` and `Replaced`, drops it otherwise.
    fn report(&self, cause: EvictionCause, key: K, value: V) -> Option<V> {
        self.hook.on_evict(&key, &value, cause);
        match cause {
            EvictionCause::Removed | EvictionCause::Replaced => Some(value),
            _ => None,
        }
    }

    /// Turns the tombstone at `index` (and tombstones before it) back into `EMPTY`
    /// where no entry's probe chain passes it. The caller holds the segment lock, so
    /// no slot of the segment becomes occupied meanwhile.
    fn purge(&self, seg: usize, index: usize) {
        let base = seg * self.geo.seg_len;
        let len = self.geo.seg_len;
        let mut q = index - base;
        for _ in 0..len {
            // Acquire: the tombstone may come from a thread that vacated it after its
            // readers left, holding no lock, and found the lock taken (`vacate`): the
            // lock then orders its move-out before nothing. This load reads that
            // thread's Release store of `TOMB`; our Release store of `EMPTY` below (and
            // our unlock) then carries the move-out to the next inserter, whose
            // Acquire load of `EMPTY` (or its lock) comes before its `fill`. Relaxed
            // here lets that `fill` race the move-out's `ptr::read`.
            if self.state(base + q).load(Ordering::Acquire) != TOMB {
                return;
            }
            let mut j = self.next_offset(q);
            let mut safe = false;
            for _ in 0..PURGE_WALK.min(len - 1) {
                let s = self.state(base + j).load(Ordering::Relaxed);
                match kind(s) {
                    EMPTY => {
                        safe = true;
                        break;
                    }
                    TOMB => {}
                    _ => {
                        // The entry at j probes from its home up to j; if q lies on
                        // that path it must stay a tombstone.
                        let h = self.home(tag(s));
                        let dist = |from: usize, to: usize| (to + len - from) % len;
                        if dist(h, q) < dist(h, j) {
                            return;
                        }
                    }
                }
                j = self.next_offset(j);
            }
            if !safe {
                return;
            }
            // No chain passes this slot. Release: a lookup that stops here (Acquire)
            // sees the `moves` count of every replacement before this purge, made
            // under the lock we hold.
            self.state(base + q).store(EMPTY, Ordering::Release);
            q = if q == 0 { len - 1 } else { q - 1 };
        }
    }

    /// A cleaner's removal of the entry at `index`: takes the segment lock (waiting
    /// only if `wait`), and removes the entry if it is `READY`, unread, and expired at
    /// `now` (as `Expired`) or `evict` is set (as `Evicted`). Never waits for readers:
    /// an entry being read is left for later. Returns whether it removed one.
    fn remove_if(&self, index: usize, now: u64, evict: bool, wait: bool) -> bool {
        let seg = index / self.geo.seg_len;
        let w = self.segment(seg);
        let lock = if wait {
            Some(LockGuard::lock(&w.lock))
        } else {
            LockGuard::try_lock(&w.lock)
        };
        let Some(lock) = lock else {
            return false;
        };
        let state = self.state(index);
        let s = state.load(Ordering::Acquire);
        let slot = self.slot(index);
        if kind(s) != READY
            || readers(s) != 0
            || !(evict || slot.expires.load(Ordering::Relaxed) <= now)
        {
            return false;
        }
        // Claim against readers joining meanwhile; Acquire: sees the expiry a `touch`
        // stored before its Release `fetch_sub`.
        if state
            .compare_exchange(
                s,
                (s & !KIND_MASK) | BUSY,
                Ordering::Acquire,
                Ordering::Relaxed,
            )
            .is_err()
        {
            return false;
        }
        let expired = slot.expires.load(Ordering::Relaxed) <= now;
        if !expired && !evict {
            // Touched since we looked: put it back. (Lookups racing this see `BUSY`
            // for a moment, probe again, and may miss it.)
            state.store(s, Ordering::Release);
            return false;
        }
        let cause = if expired {
            bump(&w.expired);
            EvictionCause::Expired
        } else {
            bump(&w.evicted);
            EvictionCause::Evicted
        };
        self.len.fetch_sub(1, Ordering::Relaxed);
        let doomed = Doomed { index, seg, cause };
        let (k, v) = self.vacate(&doomed, true);
        drop(lock);
        drop(self.report(cause, k, v));
        true
    }

    /// Evicts one entry among the first live ones from global slot `start` (within
    /// `limit` slots, or within segment `only`): an expired one if seen, otherwise
    /// (unless `expired_only`) the soonest-expiring of up to [`EVICT_SAMPLE`].
    /// Returns whether one was evicted.
    fn evict_one(
        &self,
        start: usize,
        limit: usize,
        now: u64,
        only: Option<usize>,
        expired_only: bool,
    ) -> bool {
        let total = self.geo.total();
        let (lo, span) = match only {
            Some(seg) => (seg * self.geo.seg_len, self.geo.seg_len),
            None => (0, total),
        };
        for _ in 0..3 {
            let mut best: Option<(usize, u64)> = None;
            let mut sampled = 0;
            let mut i = start - lo;
            for _ in 0..limit.min(span) {
                let index = lo + i;
                let s = self.state(index).load(Ordering::Acquire);
                if kind(s) == READY && readers(s) == 0 {
                    let expires = self.slot(index).expires.load(Ordering::Relaxed);
                    if expires <= now {
                        // Expired: the best victim there is.
                        best = Some((index, expires));
                        break;
                    }
                    if !expired_only {
                        if best.is_none_or(|(_, e)| expires < e) {
                            best = Some((index, expires));
                        }
                        sampled += 1;
                        if sampled >= EVICT_SAMPLE {
                            break;
                        }
                    }
                }
                i = if i + 1 == span { 0 } else { i + 1 };
            }
            let Some((index, _)) = best else {
                return false;
            };
            // Rechecked under the lock: if the slot changed meanwhile (read, touched,
            // replaced), look again.
            if self.remove_if(index, now, !expired_only, true) {
                return true;
            }
        }
        false
    }

    /// Whether the key's chain may hold it: a lock-free pre-check (tags only) so that
    /// removing an absent key takes no lock. A key present throughout the probe shows
    /// a `READY` or `BUSY` slot with its tag unless a replacement moved it behind the
    /// probe, which changes `moves`; so `false` means the key was absent at some point
    /// during the call.
    fn maybe_present(&self, p: &Place) -> bool {
        let moves = &self.storage.segments()[p.seg].moves;
        let before = moves.load(Ordering::Acquire);
        let mut offset = p.home;
        for _ in 0..self.geo.seg_len {
            let s = self.state(p.base + offset).load(Ordering::Acquire);
            match kind(s) {
                EMPTY => return moves.load(Ordering::Acquire) != before,
                READY | BUSY if tag(s) == p.tag => return true,
                _ => {}
            }
            offset = self.next_offset(offset);
        }
        true
    }

    /// Removes `key`'s entry and returns its value if it was live. An expired entry is
    /// removed too (reported as [`EvictionCause::Expired`]) and `None` is returned.
    ///
    /// If other threads are reading this entry (cloning it or in a `get_with`
    /// closure), waits for them to leave before moving the value out, holding no lock
    /// meanwhile.
    ///
    /// # Examples
    ///
    /// ```
    /// use core::time::Duration;
    /// use membound::clock::ManualClock;
    /// use membound::table::TtlTable;
    ///
    /// let table = TtlTable::new(10, Duration::from_secs(1), ManualClock::default())?;
    /// table.insert(1, "one")?;
    /// assert_eq!(table.remove(&1), Some("one"));
    /// assert_eq!(table.remove(&1), None);
    /// assert_eq!(table.metrics().removed, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn remove<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let now = self.clock.now();
        let p = self.place(key);
        if !self.maybe_present(&p) {
            return None;
        }
        let gone = {
            let w = self.segment(p.seg);
            let _lock = LockGuard::lock(&w.lock);
            let mut offset = p.home;
            let mut gone = None;
            for _ in 0..self.geo.seg_len {
                let index = p.base + offset;
                let s = self.state(index).load(Ordering::Acquire);
                match kind(s) {
                    EMPTY => break,
                    READY if tag(s) == p.tag && self.key_is(index, key) => {
                        let cause = if self.slot(index).expires.load(Ordering::Relaxed) <= now {
                            bump(&w.expired);
                            EvictionCause::Expired
                        } else {
                            bump(&w.removed);
                            EvictionCause::Removed
                        };
                        self.len.fetch_sub(1, Ordering::Relaxed);
                        gone = Some(self.retire(index, p.seg, cause));
                        break;
                    }
                    _ => {}
                }
                offset = self.next_offset(offset);
            }
            gone
        };
        gone.and_then(|g| self.settle(g))
    }

    /// Scans up to `budget` slots from the table's shared sweep cursor and removes
    /// the entries expired at tick `now`; while the table holds more than its soft
    /// capacity, it also evicts live entries it scans. Entries being read, and
    /// segments another writer holds at that moment, are skipped (a later sweep gets
    /// them). Never waits and never allocates.
    ///
    /// Concurrent sweeps scan disjoint ranges. A sweep with a budget of at least the
    /// slot count (`capacity + capacity / 7`) visits every slot once.
    ///
    /// # Examples
    ///
    /// ```
    /// use core::time::Duration;
    /// use membound::clock::{Clock, ManualClock};
    /// use membound::table::{TableConfig, TtlTable};
    ///
    /// let clock = ManualClock::default();
    /// let config = TableConfig::new(100, Duration::from_millis(5)).with_amortized_sweep(0);
    /// let table = TtlTable::with_config(config, &clock)?;
    /// for i in 0..10 {
    ///     table.insert(i, i)?;
    /// }
    /// clock.advance(5);
    /// let mut removed = 0;
    /// while removed < 10 {
    ///     removed += table.sweep(clock.now(), 16).removed; // bounded work per call
    /// }
    /// assert!(table.is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn sweep(&self, now: u64, budget: usize) -> SweepStats {
        self.control.sweeps.fetch_add(1, Ordering::Relaxed);
        let total = self.geo.total();
        let budget = budget.min(total);
        let start = (self
            .control
            .cursor
            .fetch_add(budget as u64, Ordering::Relaxed)
            % total as u64) as usize;
        let mut stats = SweepStats {
            scanned: budget,
            removed: 0,
        };
        let mut index = start;
        for _ in 0..budget {
            let s = self.state(index).load(Ordering::Acquire);
            if kind(s) == READY && readers(s) == 0 {
                let over = self.len.load(Ordering::Relaxed)
                    > self.control.soft_capacity.load(Ordering::Relaxed);
                let expired = self.slot(index).expires.load(Ordering::Relaxed) <= now;
                if (expired || over) && self.remove_if(index, now, over, false) {
                    stats.removed += 1;
                }
            }
            index = if index + 1 == total { 0 } else { index + 1 };
        }
        stats
    }

    /// Entries stored, including expired ones not yet swept.
    #[inline]
    pub fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed) as usize
    }

    /// Whether no entries are stored.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The soft capacity in force; see [`SoftCapacity`].
    #[inline]
    pub fn capacity(&self) -> usize {
        self.control.soft_capacity.load(Ordering::Relaxed) as usize
    }

    /// The capacity reserved at construction.
    #[inline]
    pub fn max_capacity(&self) -> usize {
        self.max_capacity
    }

    /// The default TTL, in ticks of the table's clock.
    #[inline]
    pub fn default_ttl(&self) -> u64 {
        self.default_ttl
    }

    /// The table's clock.
    #[inline]
    pub fn clock(&self) -> &C {
        &self.clock
    }

    /// A snapshot of the counters.
    pub fn metrics(&self) -> TableMetrics {
        let mut m = TableMetrics {
            len: self.len.load(Ordering::Relaxed),
            capacity: self.control.soft_capacity.load(Ordering::Relaxed),
            max_capacity: self.max_capacity as u64,
            sweeps: self.control.sweeps.load(Ordering::Relaxed),
            ..TableMetrics::default()
        };
        for seg in self.storage.segments() {
            let (w, c) = (&seg.writer, &seg.stripe);
            m.replaced += w.replaced.load(Ordering::Relaxed);
            m.inserts += w.inserts.load(Ordering::Relaxed);
            m.removed += w.removed.load(Ordering::Relaxed);
            m.expired += w.expired.load(Ordering::Relaxed);
            m.evicted += w.evicted.load(Ordering::Relaxed);
            m.hits += c.hits.load(Ordering::Relaxed);
            m.misses += c.misses.load(Ordering::Relaxed);
            m.rejected += c.rejected.load(Ordering::Relaxed);
        }
        // `inserts` counts every stored value; the lock holders count new keys.
        m.inserts += m.replaced;
        m
    }
}

/// How one insert attempt under the lock ended.
enum Attempt<K, V> {
    /// Stored a new key.
    Stored,
    /// Stored the new value; the old entry is the attempt's `Gone`.
    Replaced,
    /// No room: the entry comes back, with what was short.
    NoRoom((K, V), Shortage),
}

/// Why an insert attempt found no room.
#[derive(Clone, Copy)]
enum Shortage {
    /// A new key, and entries fill the soft capacity.
    Capacity,
    /// The segment has no free slot, and entries fill all of its slots.
    Slots,
    /// The segment has no free slot, but some of its slots are being vacated: they
    /// are free once their readers leave. Never a reason to evict.
    Vacating,
}

/// An entry a lock holder took out of the table.
enum Gone<K, V> {
    /// Doomed while being read: to vacate once its readers leave.
    Doomed(Doomed),
    /// Already moved out, to report.
    Taken(K, V, EvictionCause),
}

impl<K, V, C, S, H, St> SoftCapacity for TtlTableCore<K, V, C, S, H, St>
where
    K: Hash + Eq,
    C: Clock,
    S: BuildHasher,
    H: EvictionHook<K, V>,
    St: Storage<K, V>,
{
    fn capacity(&self) -> usize {
        TtlTableCore::capacity(self)
    }

    fn max_capacity(&self) -> usize {
        self.max_capacity
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

impl<K, V, C, S, H, St: Storage<K, V>> Drop for TtlTableCore<K, V, C, S, H, St> {
    fn drop(&mut self) {
        for slot in self.storage.slots() {
            if kind(slot.state.load(Ordering::Relaxed)) == READY {
                slot.entry.with_mut(|cell| {
                    // SAFETY: `&mut self`: no other thread touches the table, and a
                    // `READY` slot holds an initialised entry that nothing else drops.
                    unsafe { (*cell).assume_init_drop() }
                });
            }
        }
    }
}

impl<K, V, C, S, H, St: Storage<K, V>> fmt::Debug for TtlTableCore<K, V, C, S, H, St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TtlTable")
            .field("len", &self.len.load(Ordering::Relaxed))
            .field(
                "capacity",
                &self.control.soft_capacity.load(Ordering::Relaxed),
            )
            .field("max_capacity", &self.max_capacity)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

/// Interleavings forced step by step on OS threads, for ThreadSanitizer (the gate in
/// `.ci/run` runs them): each test drives the table's internals into one race window
/// and checks it got there, so a missing happens-before edge is reported on every run,
/// not by luck. The steps are ordered by Relaxed atomics and polling, which give
/// TSan no edge of their own.
#[cfg(all(test, not(loom), feature = "std"))]
mod races {
    use core::hash::BuildHasher;
    use core::time::Duration;
    use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
    use std::sync::Barrier;

    use super::super::{NoHook, TableConfig};
    use super::{kind, LockGuard, SeededHashBuilder, TtlTable, EMPTY, READY, TOMB};
    use crate::clock::ManualClock;

    #[test]
    fn move_out_after_a_reader_happens_before_a_refill_by_another_thread() {
        // Capacity 2: one segment of 3 slots. `a` in slot 0, `c` in slot 1.
        let hasher = SeededHashBuilder::with_seed(1);
        let home = |k: u32| ((u64::from(hasher.hash_one(k) as u32) * 3) >> 32) as usize;
        let a = (0..).find(|&k| home(k) == 0).unwrap();
        let c = (0..).find(|&k| home(k) == 1).unwrap();
        let table = TtlTable::with_parts(
            TableConfig::new(2, Duration::from_secs(1)).with_amortized_sweep(0),
            ManualClock::default(),
            SeededHashBuilder::with_seed(1),
            NoHook,
        )
        .unwrap();
        table.insert(a, 1u32).unwrap();
        table.insert(c, 10).unwrap();
        let kinds = |t: &TtlTable<u32, u32, ManualClock, SeededHashBuilder>| {
            [0, 1, 2].map(|i| kind(t.state(i).load(Relaxed)))
        };
        assert_eq!(kinds(&table), [READY, READY, EMPTY]);
        let (entered, leave) = (Barrier::new(2), Barrier::new(2));
        let removed = AtomicBool::new(false);
        std::thread::scope(|s| {
            let reader = s.spawn(|| {
                table.get_with(&a, |v| {
                    entered.wait();
                    leave.wait();
                    *v
                })
            });
            entered.wait();
            // The remover dooms `a` (counted under the lock, in the same critical
            // section), then waits for the reader with no lock held.
            let remover = s.spawn(|| {
                let v = table.remove(&a);
                removed.store(true, Relaxed);
                v
            });
            while table.metrics().removed == 0 {
                std::thread::yield_now();
            }
            // Hold the segment lock while the remover moves the entry out, so that it
            // finds the lock taken and leaves its tombstone to a later purge.
            let lock = LockGuard::lock(&table.segment(0).lock);
            leave.wait();
            while !removed.load(Relaxed) {
                std::thread::yield_now();
            }
            drop(lock);
            assert_eq!(kinds(&table), [TOMB, READY, EMPTY]);
            // Removing `c` purges slot 1 and, walking back, `a`'s tombstone; then `a`
            // is stored again in slot 0. Nothing but the purge's load of the tombstone
            // orders the remover's move-out before this fill.
            assert_eq!(table.remove(&c), Some(10));
            assert_eq!(kinds(&table), [EMPTY, EMPTY, EMPTY]);
            assert_eq!(table.insert(a, 2), Ok(None));
            assert_eq!(kinds(&table), [READY, EMPTY, EMPTY]);
            assert_eq!(reader.join().unwrap(), Some(1));
            assert_eq!(remover.join().unwrap(), Some(1));
        });
        assert_eq!(table.get(&a), Some(2));
        assert_eq!(table.len(), 1);
    }
}

/// Loom models that need the table's internals (where keys land in the chain): a
/// replacement that lands *before* the old slot (the case the `moves` count exists
/// for), which a racing lookup must never miss; and a tombstone that a remover left
/// after waiting for a reader, purged by another lock holder and filled again. Run with
/// `RUSTFLAGS="--cfg loom" cargo test --release --lib table::core::loom_models`.
#[cfg(all(test, loom))]
mod loom_models {
    use core::hash::BuildHasher;
    use core::time::Duration;

    use loom::sync::Arc;

    use super::super::{NoHook, TableConfig};
    use super::{SeededHashBuilder, Storage, TtlTable};
    use crate::clock::ManualClock;

    type Table = TtlTable<u32, u32, std::sync::Arc<ManualClock>, SeededHashBuilder, NoHook>;

    /// A table of capacity 2 (one segment of 3 slots) hashed with seed 1, on a clock
    /// that never moves, with no amortized sweeps: the slots a model's keys land in
    /// are fixed.
    fn two_entry_table() -> Arc<Table> {
        Arc::new(
            TtlTable::with_parts(
                TableConfig::new(2, Duration::from_secs(1)).with_amortized_sweep(0),
                std::sync::Arc::new(ManualClock::default()),
                SeededHashBuilder::with_seed(1),
                NoHook,
            )
            .unwrap(),
        )
    }

    #[test]
    fn lookup_racing_a_replacement_into_an_earlier_slot_never_misses() {
        // Capacity 2: one segment of 3 slots. Find keys `a` and `x` with the same home
        // slot, so that `a` then `x` fill two consecutive slots of one chain.
        let hasher = SeededHashBuilder::with_seed(1);
        let home = |k: u32| ((u64::from(hasher.hash_one(k) as u32) * 3) >> 32) as usize;
        let a = 0u32;
        let x = (1..).find(|&k| home(k) == home(a)).unwrap();
        loom::model(move || {
            let table = two_entry_table();
            table.insert(a, 1u32).unwrap();
            table.insert(x, 10).unwrap();
            // `a`'s slot becomes a tombstone before `x` in its chain (not purgeable:
            // `x`'s chain passes it), so replacing `x` fills it: an earlier slot.
            assert_eq!(table.remove(&a), Some(1));
            let reader = {
                let table = table.clone();
                loom::thread::spawn(move || table.get(&x))
            };
            assert_eq!(table.insert(x, 20).unwrap(), Some(10));
            let seen = reader.join().unwrap();
            assert!(seen == Some(10) || seen == Some(20), "{seen:?}");
            let moves = table.storage.segments()[0]
                .moves
                .load(super::Ordering::Relaxed);
            assert_eq!(moves, 1, "the replacement went to an earlier slot");
        });
    }

    /// A remover that waited for a reader moves the entry out with no lock held and
    /// finds the lock taken, so another lock holder purges its tombstone to `EMPTY`;
    /// an insert then fills that slot. The move-out must happen before the fill: the
    /// purge's load of the tombstone is what carries it (see `purge`).
    #[test]
    fn move_out_after_a_reader_happens_before_the_next_fill_of_the_slot() {
        // Capacity 2: one segment of 3 slots. `a` lives in slot 0, `c` in slot 1, slot
        // 2 is empty, so removing `c` purges slot 1 and, if `a` is a tombstone by then,
        // slot 0 too.
        let hasher = SeededHashBuilder::with_seed(1);
        let home = |k: u32| ((u64::from(hasher.hash_one(k) as u32) * 3) >> 32) as usize;
        let a = (0..).find(|&k| home(k) == 0).unwrap();
        let c = (0..).find(|&k| home(k) == 1).unwrap();
        loom::model(move || {
            let table = two_entry_table();
            table.insert(a, 1u32).unwrap();
            table.insert(c, 10).unwrap();
            let remover = {
                let table = table.clone();
                loom::thread::spawn(move || table.remove(&a))
            };
            let inserter = {
                let table = table.clone();
                loom::thread::spawn(move || {
                    assert_eq!(table.remove(&c), Some(10));
                    table.insert(a, 2).unwrap()
                })
            };
            let seen = table.get(&a);
            assert!(matches!(seen, None | Some(1) | Some(2)), "{seen:?}");
            let removed = remover.join().unwrap();
            let replaced = inserter.join().unwrap();
            match (removed, replaced) {
                // The remove came first: `a` was new again for the insert.
                (Some(1), None) => assert_eq!(table.get(&a), Some(2)),
                // The insert replaced `a`, then the remove took the new value.
                (Some(2), Some(1)) => assert_eq!(table.get(&a), None),
                other => panic!("{other:?}"),
            }
        });
    }
}
