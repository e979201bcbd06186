//! The table itself; the algorithm is documented on [`TtlTableCore`].
//!
//! This file holds the type, its construction, the helpers every operation shares
//! and the accessors; each concern has its own file, and each file uses only those
//! before it in this order: `slot` and `storage` (the slot protocol, where slots
//! live), this file, `vacate` (taking an entry out), `evict` (cleaners' removals),
//! `sweep`, then `lookup`, `insert`, `remove` and `capacity`.

use core::borrow::Borrow;
use core::fmt;
use core::hash::{BuildHasher, Hash};
use core::marker::PhantomData;

use crossbeam_utils::CachePadded;

use super::{EvictionHook, TableMetrics};
use crate::clock::Clock;
#[cfg(feature = "alloc")]
use crate::config::ConfigError;
use crate::policy::OverflowPolicy;
use crate::sync::{AtomicU64, Ordering};

mod capacity;
mod evict;
mod insert;
mod lookup;
mod remove;
mod slot;
mod storage;
mod sweep;
mod vacate;

#[cfg(all(test, not(loom), feature = "std"))]
mod races;

#[cfg(all(test, loom))]
mod loom_models;

pub use self::slot::Slot;
use self::slot::{kind, READY};
#[cfg(feature = "alloc")]
pub use self::storage::HeapStorage;
use self::storage::{Geometry, Stripe, WriterSide};
pub use self::storage::{InlineStorage, Segment, Storage};

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
///   number of times and is then refused
///   ([`InsertError::Full`](super::InsertError::Full)); it never evicts for it. An
///   insert evicts only when entries fill the room it needs: the soft capacity (a new
///   key, under [`OverflowPolicy::DropOldest`]) or every slot of its segment.
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
    policy: OverflowPolicy,
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

#[cfg(not(loom))]
impl<K, V, C: Clock, S: BuildHasher, H: EvictionHook<K, V>, const N: usize>
    TtlTableCore<K, V, C, S, H, InlineStorage<K, V, N>>
{
    /// An empty table of `N` slots (up to `N - N / 8` entries) whose entries live
    /// `default_ttl` ticks unless inserted with their own TTL; usable in a `static`.
    ///
    /// Overflow policy [`OverflowPolicy::DropOldest`], amortized sweeping of
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
            policy: OverflowPolicy::DropOldest,
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

    /// Sets the policy for a full table: `DropOldest` or `Reject`, as described on
    /// [`TableConfig`](super::TableConfig#overflow-policies).
    ///
    /// # Panics
    ///
    /// At compile time in a `static` (at run time otherwise) for any other policy,
    /// which a heap table's [`TableConfig::validate`](super::TableConfig::validate)
    /// refuses with
    /// [`ConfigError::UnsupportedPolicy`](crate::ConfigError::UnsupportedPolicy).
    ///
    /// # Examples
    ///
    /// An unsupported policy does not compile in a `static`:
    ///
    /// ```compile_fail,E0080
    /// # use core::time::Duration;
    /// # use membound::clock::Clock;
    /// # use membound::table::{NoHook, SeededHashBuilder, StaticTtlTable};
    /// # use membound::OverflowPolicy;
    /// # struct Ticks;
    /// # impl Clock for Ticks {
    /// #     fn now(&self) -> u64 { 0 }
    /// #     fn tick(&self) -> Duration { Duration::from_millis(1) }
    /// # }
    /// static WAITING: StaticTtlTable<u32, u32, Ticks, 8> =
    ///     StaticTtlTable::new(Ticks, SeededHashBuilder::with_seed(1), NoHook, 1)
    ///         .with_policy(OverflowPolicy::DropNewest);
    /// ```
    pub const fn with_policy(mut self, policy: OverflowPolicy) -> Self {
        assert!(
            super::config::check_policy(policy).is_ok(),
            "a TTL table supports only OverflowPolicy::DropOldest and OverflowPolicy::Reject"
        );
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
    /// use membound::table::TtlTable;
    /// use membound::ConfigError;
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
    ) -> Result<Self, ConfigError> {
        Self::with_config(super::TableConfig::new(capacity, default_ttl), clock)
    }

    /// An empty table built from `config`, with a randomly seeded hasher and no hook.
    ///
    /// # Errors
    ///
    /// As [`TableConfig::validate`](super::TableConfig::validate).
    pub fn with_config(config: super::TableConfig, clock: C) -> Result<Self, ConfigError> {
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
    ) -> Result<Self, ConfigError> {
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

impl<K: Hash + Eq, V, C: Clock, S: BuildHasher, H: EvictionHook<K, V>, St: Storage<K, V>>
    TtlTableCore<K, V, C, S, H, St>
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

    /// The soft capacity in force; see [`SoftCapacity`](crate::capacity::SoftCapacity).
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
