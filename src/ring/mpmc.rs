//! The bounded multi-producer multi-consumer ring; the algorithm is documented on
//! [`RingCore`].

use core::fmt;
use core::marker::PhantomData;
use core::mem::{self, MaybeUninit};

use crossbeam_utils::CachePadded;

use super::wait::WaitQueue;
#[cfg(feature = "alloc")]
use super::RingConfig;
use super::{Closed, PopError, PushError, Pushed};
use crate::capacity::{CapacityError, SoftCapacity};
use crate::policy::OverflowPolicy;
use crate::sync::{const_unless_loom, fence, AtomicU64, Backoff, Ordering, UnsafeCell};
#[cfg(feature = "alloc")]
use crate::ConfigError;

/// One cell of a ring's storage. Opaque: it only appears in storage types.
pub struct Slot<T> {
    /// The position this slot is ready for: `pos` means "free, the producer of `pos`
    /// may write", `pos + 1` means "holds the item of `pos`, its consumer may read".
    stamp: AtomicU64,
    /// Initialised exactly when `stamp == pos + 1` for the slot's current position.
    value: UnsafeCell<MaybeUninit<T>>,
}

impl<T> Slot<T> {
    const_unless_loom! {
        fn new(stamp: u64) -> Self {
            Self {
                stamp: AtomicU64::new(stamp),
                value: UnsafeCell::new(MaybeUninit::uninit()),
            }
        }
    }
}

impl<T> fmt::Debug for Slot<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Slot")
    }
}

mod sealed {
    pub trait Sealed {}
}

/// Where a ring keeps its slots: a boxed slice ([`Ring`]) or an inline array
/// ([`StaticRing`]). Sealed; the algorithm is the same for both.
pub trait Storage<T>: sealed::Sealed {
    #[doc(hidden)]
    fn slots(&self) -> &[Slot<T>];
}

impl<T, const N: usize> sealed::Sealed for [Slot<T>; N] {}
impl<T, const N: usize> Storage<T> for [Slot<T>; N] {
    #[inline(always)]
    fn slots(&self) -> &[Slot<T>] {
        self
    }
}

#[cfg(feature = "alloc")]
impl<T> sealed::Sealed for alloc::boxed::Box<[Slot<T>]> {}
#[cfg(feature = "alloc")]
impl<T> Storage<T> for alloc::boxed::Box<[Slot<T>]> {
    #[inline(always)]
    fn slots(&self) -> &[Slot<T>] {
        self
    }
}

/// A ring with a runtime capacity, allocated once in [`new`](RingCore::new).
///
/// All methods are documented on [`RingCore`].
///
/// **[`push`](RingCore::push) on a full ring evicts the oldest item by default**
/// ([`OverflowPolicy::DropOldest`], the Go original's default; counted in
/// [`RingMetrics::dropped_oldest`](super::RingMetrics::dropped_oldest)). Coming
/// from crossbeam's `ArrayQueue`: its `push`, which hands the item back when full,
/// is [`try_push`](RingCore::try_push) here (or build the ring with
/// [`OverflowPolicy::Reject`] and `push` does the same), and its `force_push` is
/// [`force_push`](RingCore::force_push). A ring can be iterated by value
/// (`for item in ring`), as an `ArrayQueue` can.
///
/// # Examples
///
/// ```
/// use membound::ring::Ring;
///
/// let ring = Ring::new(3)?; // any capacity >= 1, not rounded
/// for i in 0..5 {
///     ring.push(i)?; // default policy: drop the oldest when full
/// }
/// assert_eq!(ring.drain().collect::<Vec<_>>(), [2, 3, 4]);
/// assert_eq!(ring.metrics().dropped_oldest, 2);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[cfg(feature = "alloc")]
pub type Ring<T> = RingCore<T, alloc::boxed::Box<[Slot<T>]>>;

/// A ring with a compile-time capacity `N` that needs no allocator and can live in a
/// `static`.
///
/// All methods are documented on [`RingCore`]. Not available under `cfg(loom)`
/// (loom's atomics cannot be built in a `const fn`); the models check [`Ring`], which
/// runs the same code.
///
/// # Examples
///
/// ```
/// use membound::ring::StaticRing;
///
/// static EVENTS: StaticRing<u32, 4> = StaticRing::new();
///
/// EVENTS.try_push(7).unwrap();
/// assert_eq!(EVENTS.try_pop(), Some(7));
/// ```
///
/// A capacity of zero does not compile:
///
/// ```compile_fail,E0080
/// use membound::ring::StaticRing;
/// static NOTHING: StaticRing<u32, 0> = StaticRing::new();
/// ```
pub type StaticRing<T, const N: usize> = RingCore<T, [Slot<T>; N]>;

/// The ring itself, generic over its [`Storage`]. Use it through [`Ring`] or
/// [`StaticRing`].
///
/// # Algorithm
///
/// Dmitry Vyukov's bounded MPMC queue
/// (<https://www.1024cores.net/home/lock-free-algorithms/queues/bounded-mpmc-queue>):
/// every slot carries a *stamp* saying which position it is ready for, and producers
/// and consumers claim positions with a CAS on `tail` and `head`. The data hand-off
/// goes through the slot stamp (release on write, acquire on read), so the positions
/// themselves only need to be claimed atomically.
///
/// Positions are 64-bit and encode `lap * one_lap + index`, with `one_lap` a power of
/// two above the capacity (the encoding crossbeam's `ArrayQueue` uses). That gives any
/// capacity `>= 1` with no rounding, no wasted slot and no division on the hot path.
/// One bit between the index and the lap, `mark_bit`, is set in `tail` by
/// [`close`](Self::close) (the trick of crossbeam-channel's array flavour): a
/// producer's CAS on `tail` fails once the ring is closed, so no push can slip in after
/// it.
///
/// # Evicting the oldest item
///
/// [`force_push`](Self::force_push) on a full ring claims the next tail position
/// *first*, then claims the oldest position from `head` by CAS. Whoever wins `head`,
/// this producer or a consumer that got there first, owns the old item, so it is either
/// returned as evicted or popped, never both and never neither. Claiming `tail` first
/// means a closed ring refuses the push before anything is evicted, and that `head` and
/// `tail` never meet mid-eviction (a consumer never sees a false "empty, closed"). It
/// costs two CASes and no fence, one fewer full barrier than moving `head` first.
/// The `loom-tests/` crate model-checks this against concurrent pops, pushes and close.
///
/// # Progress
///
/// No locks on targets with native 64-bit atomics (elsewhere portable-atomic's
/// fallback emulates them with a short global lock), and no allocation. As in every
/// Vyukov-style queue, progress is not strictly lock-free: a thread suspended between
/// claiming a position and publishing its stamp delays the threads that reach that
/// slot after it, and on a full ring a producer suspended between its two eviction
/// CASes delays the evicting producers that claimed later positions. Those waits go
/// through one backoff helper, which yields the OS thread under `std` once spinning
/// has not helped. For the same reason, do not push from an interrupt handler that
/// can preempt a consumer of the same ring: the push may wait for that consumer.
pub struct RingCore<T, S: Storage<T>> {
    /// Consumers' side. Written by consumers on every pop and by evicting producers.
    head: CachePadded<HeadSide>,
    /// Producers' side. Written by producers on every push.
    tail: CachePadded<TailSide>,
    /// Read-only after construction.
    geo: Geometry,
    /// Read-only after construction.
    policy: OverflowPolicy,
    /// How `push` dispatches: `policy`, and whether the ring grows first.
    /// Read-only after construction.
    mode: Mode,
    /// Whether the ring grows (doubling, up to `tail.limit`) before its policy
    /// applies. Read-only after construction.
    grows: bool,
    slots: S,
    _owns: PhantomData<T>,
}

/// What [`RingCore::push`] does when the ring is full: the dropping policies inline
/// into the caller; the others (waiting, or growing first) go out of line.
#[derive(Clone, Copy)]
enum Mode {
    DropOldest,
    DropNewest,
    Reject,
    /// A waiting policy, or a ring that grows before its policy applies.
    WaitOrGrow,
}

impl Mode {
    const fn new(policy: OverflowPolicy, grows: bool) -> Self {
        match policy {
            _ if grows => Self::WaitOrGrow,
            OverflowPolicy::DropOldest => Self::DropOldest,
            OverflowPolicy::DropNewest => Self::DropNewest,
            OverflowPolicy::Reject => Self::Reject,
            _ => Self::WaitOrGrow,
        }
    }
}

/// `head` and the counters only its writers touch, on one cache line.
struct HeadSide {
    /// Next position to pop. Never carries `mark_bit`. Monotonic.
    pos: AtomicU64,
    /// Items removed by `force_push` and handed back to its caller.
    evicted: AtomicU64,
    /// Items removed by `push` under `DropOldest` and dropped.
    dropped_oldest: AtomicU64,
    /// Items removed by `clear`.
    cleared: AtomicU64,
    /// Producers waiting for room; notified by every pop. On this line because
    /// consumers read its waiter count after each pop.
    producers: WaitQueue,
}

/// `tail` and the counters only producers touch, on one cache line.
struct TailSide {
    /// Next position to push, plus `mark_bit` once closed. Monotonic.
    pos: AtomicU64,
    /// Items discarded by `push` under `DropNewest`.
    dropped_newest: AtomicU64,
    /// Items handed back by `push` under `Reject`.
    rejected: AtomicU64,
    /// Highest length seen: set to `cap` when a push finds the ring full, otherwise
    /// sampled by producers every [`HIGH_WATER_STRIDE`] positions (and folded with
    /// `len` in `metrics`).
    high_water: AtomicU64,
    /// Consumers waiting for an item; notified by every push. On this line because
    /// producers read its waiter count after each push.
    consumers: WaitQueue,
    /// The capacity in force, `1..=geo.cap`. When below `geo.cap` ("soft mode"),
    /// pushes also check the length against it. Read by every push, hence here.
    soft: AtomicU64,
    /// The most `soft` may reach: equal to it, except in a growing ring, where
    /// `soft` grows toward it on demand. Set by `set_capacity`.
    limit: AtomicU64,
    /// A recent `head` (a lower bound of the current one) for soft-mode length
    /// checks, so that a push reads the consumers' cache line only when the ring
    /// looks full. Refreshed by producers on that slow path.
    head_cache: AtomicU64,
    /// Capacity increases: growth steps and raising `set_capacity` calls.
    grows: AtomicU64,
    /// Capacity decreases by `set_capacity`.
    shrinks: AtomicU64,
    /// Timed waits, pushes and pops, that reached their deadline.
    timeouts: AtomicU64,
}

/// Producers refresh the high-water mark at positions whose index is a multiple of
/// this, so a push reads `head` (the consumers' cache line) at most once per stride.
const HIGH_WATER_STRIDE: u64 = 64;

/// How positions map to slots. Read-only after construction.
#[derive(Clone, Copy)]
struct Geometry {
    /// Number of slots, >= 1.
    cap: u64,
    /// Power of two > `cap`. Set in `tail` when the ring is closed; the bits below it
    /// hold the slot index.
    mark_bit: u64,
    /// `2 * mark_bit`: the position distance between two laps over the same slot.
    one_lap: u64,
}

impl Geometry {
    const fn new(cap: usize) -> Self {
        let cap = cap as u64;
        let mark_bit = (cap + 1).next_power_of_two();
        Self {
            cap,
            mark_bit,
            one_lap: mark_bit * 2,
        }
    }

    #[inline(always)]
    fn index(&self, pos: u64) -> u64 {
        pos & (self.mark_bit - 1)
    }

    /// The position after `pos`, whose index is `index`.
    #[inline(always)]
    fn next(&self, pos: u64, index: u64) -> u64 {
        if index + 1 < self.cap {
            pos + 1
        } else {
            (pos & !(self.one_lap - 1)).wrapping_add(self.one_lap)
        }
    }

    /// How many positions precede `pos` (which must not carry `mark_bit`).
    #[inline]
    fn count(&self, pos: u64) -> u64 {
        (pos >> self.one_lap.trailing_zeros()) * self.cap + self.index(pos)
    }
}

/// A snapshot of a ring's counters.
///
/// Consistent when the ring is quiescent: then
/// `pushed == popped + evicted + dropped_oldest + cleared + len`. Taken while other
/// threads push and pop, the fields are read one by one and are approximate: the
/// removal counters are bumped just after `head` moves, so `popped` may be off by the
/// number of evictions or clears in flight during the call.
///
/// How each is kept, so that counting costs the fast path nothing:
/// `pushed` is derived from the tail position and `popped` from the head position
/// minus the removals below; `evicted`, `dropped_oldest` and `cleared` are counters on
/// the head's cache line, bumped only on those slow paths; `dropped_newest` and
/// `rejected` are counters on the tail's cache line, bumped only when the ring is full.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, crate::metrics::Metrics)]
#[non_exhaustive]
#[metrics(
    kind = "ring",
    counters,
    help(
        dropped = "Items the overflow policy dropped, by policy.",
        waits = "Waits that went to sleep, by operation.",
        waiting = "Pushes and pops sleeping now, by operation."
    )
)]
pub struct RingMetrics {
    /// Items stored by any push.
    pub pushed: u64,
    /// Items taken out by pops, drains and batch pops.
    pub popped: u64,
    /// Items removed by [`force_push`](RingCore::force_push) and handed to its caller.
    pub evicted: u64,
    /// Items evicted and dropped by [`push`](RingCore::push) under `DropOldest`.
    #[metric(name = "dropped", label("cause", "drop_oldest"))]
    pub dropped_oldest: u64,
    /// New items dropped by [`push`](RingCore::push) under `DropNewest`.
    #[metric(name = "dropped", label("cause", "drop_newest"))]
    pub dropped_newest: u64,
    /// New items handed back by [`push`](RingCore::push) under `Reject`.
    pub rejected: u64,
    /// Items discarded by [`clear`](RingCore::clear).
    pub cleared: u64,
    /// Items stored now.
    #[metric(gauge)]
    pub len: u64,
    /// The capacity in force (see [`RingCore::capacity`]).
    #[metric(gauge)]
    pub capacity: u64,
    /// The most the capacity may grow to on its own (see
    /// [`RingCore::capacity_limit`]).
    #[metric(gauge)]
    pub capacity_limit: u64,
    /// Slots reserved at construction.
    #[metric(gauge)]
    pub max_capacity: u64,
    /// Capacity increases: growth steps, and `set_capacity` calls that raised it.
    pub grows: u64,
    /// `set_capacity` calls that lowered the capacity.
    pub shrinks: u64,
    /// Highest length seen. Exact once a push has found the ring full (it is then
    /// `capacity`); otherwise sampled by producers every 64 positions (once a lap
    /// for smaller rings) and folded with the current `len`, so it may be up to that
    /// many items below the true peak.
    #[metric(gauge)]
    pub high_water: u64,
    /// Times a waiting push went to sleep (registered to be woken) because the ring
    /// was full. A wait that succeeds while spinning first is not counted.
    #[metric(name = "waits", label("op", "push"))]
    pub push_waits: u64,
    /// Times a waiting pop went to sleep because the ring was empty.
    #[metric(name = "waits", label("op", "pop"))]
    pub pop_waits: u64,
    /// Timed pushes and pops that reached their deadline.
    pub timeouts: u64,
    /// Pushes sleeping now, waiting for room (threads and pending futures).
    #[metric(gauge, name = "waiting", label("op", "push"))]
    pub producers_waiting: u64,
    /// Pops sleeping now, waiting for an item.
    #[metric(gauge, name = "waiting", label("op", "pop"))]
    pub consumers_waiting: u64,
}

#[cfg(not(loom))]
impl<T, const N: usize> RingCore<T, [Slot<T>; N]> {
    /// An empty ring of `N` slots with the default policy (`DropOldest`); usable in a
    /// `static`.
    ///
    /// `N == 0` or `N > MAX_CAPACITY` is a compile-time error.
    pub const fn new() -> Self {
        Self::with_policy(OverflowPolicy::DropOldest)
    }

    /// An empty ring of `N` slots with the given overflow policy; usable in a `static`.
    ///
    /// # Examples
    ///
    /// ```
    /// use membound::ring::{PushError, StaticRing};
    /// use membound::OverflowPolicy;
    ///
    /// static RING: StaticRing<u8, 1> = StaticRing::with_policy(OverflowPolicy::Reject);
    /// RING.push(1).unwrap();
    /// assert_eq!(RING.push(2), Err(PushError::Full(2)));
    /// ```
    pub const fn with_policy(policy: OverflowPolicy) -> Self {
        const {
            assert!(N > 0, "a StaticRing needs a capacity of at least 1");
            assert!(
                N <= super::MAX_CAPACITY,
                "StaticRing capacity above MAX_CAPACITY"
            );
        }
        let mut slots = [const { Slot::new(0) }; N];
        let mut i = 0;
        while i < N {
            slots[i] = Slot::new(i as u64);
            i += 1;
        }
        Self::from_parts(Geometry::new(N), policy, false, slots, N as u64, N as u64)
    }
}

#[cfg(not(loom))]
impl<T, const N: usize> Default for RingCore<T, [Slot<T>; N]> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(feature = "alloc")]
impl<T> RingCore<T, alloc::boxed::Box<[Slot<T>]>> {
    /// An empty ring of `capacity` slots with the default policy (`DropOldest`).
    ///
    /// Allocates once, here; nothing allocates afterwards.
    ///
    /// # Errors
    ///
    /// [`ConfigError::ZeroCapacity`] for 0, [`ConfigError::CapacityTooLarge`] above
    /// [`MAX_CAPACITY`](super::MAX_CAPACITY). The capacity is never adjusted.
    ///
    /// # Examples
    ///
    /// ```
    /// use membound::ring::Ring;
    /// use membound::ConfigError;
    ///
    /// assert_eq!(Ring::<u8>::new(0).unwrap_err(), ConfigError::ZeroCapacity);
    /// assert_eq!(Ring::<u8>::new(1000).unwrap().capacity(), 1000);
    /// ```
    pub fn new(capacity: usize) -> Result<Self, ConfigError> {
        Self::with_config(RingConfig::new(capacity))
    }

    /// An empty ring built from `config`.
    ///
    /// # Errors
    ///
    /// As [`RingConfig::validate`].
    pub fn with_config(config: RingConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        let reserved = config.reserved();
        let slots = (0..reserved as u64).map(Slot::new).collect();
        let limit = config.growth.unwrap_or(config.capacity);
        Ok(Self::from_parts(
            Geometry::new(reserved),
            config.policy,
            config.growth.is_some(),
            slots,
            config.capacity as u64,
            limit as u64,
        ))
    }
}

impl<T, S: Storage<T>> RingCore<T, S> {
    const_unless_loom! {
        /// A ring over `slots` (all of them reserved) using `capacity` of them, up
        /// to `limit`, growing toward it on demand if `grows`.
        fn from_parts(
            geo: Geometry,
            policy: OverflowPolicy,
            grows: bool,
            slots: S,
            capacity: u64,
            limit: u64,
        ) -> Self {
            Self {
                head: CachePadded::new(HeadSide {
                    pos: AtomicU64::new(0),
                    evicted: AtomicU64::new(0),
                    dropped_oldest: AtomicU64::new(0),
                    cleared: AtomicU64::new(0),
                    producers: WaitQueue::new(),
                }),
                tail: CachePadded::new(TailSide {
                    pos: AtomicU64::new(0),
                    dropped_newest: AtomicU64::new(0),
                    rejected: AtomicU64::new(0),
                    high_water: AtomicU64::new(0),
                    consumers: WaitQueue::new(),
                    timeouts: AtomicU64::new(0),
                    soft: AtomicU64::new(capacity),
                    limit: AtomicU64::new(limit),
                    head_cache: AtomicU64::new(0),
                    grows: AtomicU64::new(0),
                    shrinks: AtomicU64::new(0),
                }),
                geo,
                policy,
                mode: Mode::new(policy, grows),
                grows,
                slots,
                _owns: PhantomData,
            }
        }
    }

    #[inline(always)]
    fn slot(&self, index: u64) -> &Slot<T> {
        let slots = self.slots.slots();
        debug_assert!((index as usize) < slots.len());
        // SAFETY: every index is `pos & (mark_bit - 1)` of a position built by
        // `Geometry::next`, which keeps the index below `cap == slots.len()`.
        unsafe { slots.get_unchecked(index as usize) }
    }

    /// Stores `item` if there is room, otherwise hands it back.
    ///
    /// Ignores the overflow policy and counts nothing as dropped: a `Full` item is the
    /// caller's to keep or discard.
    ///
    /// # Errors
    ///
    /// [`PushError::Full`] when every slot is taken, [`PushError::Closed`] after
    /// [`close`](Self::close); both return the item.
    ///
    /// # Examples
    ///
    /// ```
    /// use membound::ring::{PushError, Ring};
    ///
    /// let ring = Ring::new(1)?;
    /// assert_eq!(ring.try_push('a'), Ok(()));
    /// assert_eq!(ring.try_push('b'), Err(PushError::Full('b')));
    /// # Ok::<(), membound::ConfigError>(())
    /// ```
    #[inline]
    pub fn try_push(&self, item: T) -> Result<(), PushError<T>> {
        self.push_inner::<false>(item).map(|evicted| {
            debug_assert!(evicted.is_none());
        })
    }

    /// Stores `item`, evicting the oldest item when the ring is full, and returns the
    /// evicted item (drop-oldest that lets the caller keep what was evicted).
    ///
    /// Costs the same as [`try_push`](Self::try_push) when the ring is not full.
    /// Evictions are counted in [`RingMetrics::evicted`].
    ///
    /// # Errors
    ///
    /// [`Closed`] after [`close`](Self::close), with the item; nothing is evicted then.
    ///
    /// # Examples
    ///
    /// ```
    /// use membound::ring::Ring;
    ///
    /// let ring = Ring::new(2)?;
    /// assert_eq!(ring.force_push(1), Ok(None));
    /// assert_eq!(ring.force_push(2), Ok(None));
    /// assert_eq!(ring.force_push(3), Ok(Some(1)));
    /// assert_eq!(ring.drain().collect::<Vec<_>>(), [2, 3]);
    /// # Ok::<(), membound::ConfigError>(())
    /// ```
    #[inline]
    pub fn force_push(&self, item: T) -> Result<Option<T>, Closed<T>> {
        match self.push_inner::<true>(item) {
            Ok(Some(old)) => {
                self.head.evicted.fetch_add(1, Ordering::Relaxed);
                Ok(Some(old))
            }
            Ok(None) => Ok(None),
            Err(e) => Err(Closed(e.into_inner())),
        }
    }

    /// Stores `item` under the ring's [`OverflowPolicy`] and says what happened. A
    /// ring [`with_growth`](super::RingConfig::with_growth) first grows, up to its maximum.
    ///
    /// Under [`Block`](OverflowPolicy::Block) it waits as
    /// [`push_wait`](Self::push_wait) with [`Wait::Forever`](crate::policy::Wait)
    /// (without `std`, as [`push_wait_with`](Self::push_wait_with) with
    /// [`Spin`](super::Spin)); under [`BlockTimeout`](OverflowPolicy::BlockTimeout)
    /// as `push_wait` with its timeout.
    ///
    /// # Errors
    ///
    /// [`PushError::Closed`] after [`close`](Self::close); [`PushError::Full`] when the
    /// ring is full under [`OverflowPolicy::Reject`], or stayed full for a
    /// `BlockTimeout`'s time. Both return the item.
    ///
    /// # Examples
    ///
    /// ```
    /// use membound::ring::{Pushed, Ring, RingConfig};
    /// use membound::OverflowPolicy;
    ///
    /// let ring = Ring::with_config(RingConfig::new(1).with_policy(OverflowPolicy::DropNewest))?;
    /// assert_eq!(ring.push("first")?, Pushed::Stored);
    /// assert_eq!(ring.push("second")?, Pushed::DroppedNewest);
    /// assert_eq!(ring.try_pop(), Some("first"));
    /// assert_eq!(ring.metrics().dropped_newest, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[inline]
    pub fn push(&self, item: T) -> Result<Pushed, PushError<T>> {
        // The dropping policies inline into the caller; the others, which wait or
        // grow, stay out of line so they do not bloat every call site.
        match self.mode {
            Mode::DropOldest => self.push_drop_oldest(item),
            Mode::DropNewest => self.push_drop_newest(item),
            Mode::Reject => self.push_reject(item),
            Mode::WaitOrGrow => self.push_waiting_or_growing(item),
        }
    }

    /// `push` under `Block` and `BlockTimeout`, and in a growing ring.
    #[inline(never)]
    fn push_waiting_or_growing(&self, item: T) -> Result<Pushed, PushError<T>> {
        let mut item = item;
        if self.grows {
            let mut grew = false;
            loop {
                match self.push_inner::<false>(item) {
                    Ok(_) if grew => return Ok(Pushed::Grew),
                    Ok(_) => return Ok(Pushed::Stored),
                    Err(PushError::Full(back)) if self.grow() => {
                        item = back;
                        grew = true;
                    }
                    Err(PushError::Full(back)) => {
                        item = back;
                        break;
                    }
                    Err(closed) => return Err(closed),
                }
            }
        }
        // At the maximum (or not growing): the policy applies.
        self.push_full_by(self.policy, item)
    }

    /// [`push`](Self::push), except that when the ring is full (after growing, if it
    /// grows) the policy comes from `rule`, asked about this item, instead of the
    /// ring's own. The rule is not consulted while there is room, so a push that fits
    /// costs what [`push`](Self::push) costs; each outcome is counted as under that
    /// policy.
    ///
    /// # Errors
    ///
    /// As [`push`](Self::push) under the policy the rule chose.
    ///
    /// # Examples
    ///
    /// See [`OverflowRule`](crate::policy::OverflowRule).
    pub fn push_with<R>(&self, item: T, rule: &R) -> Result<Pushed, PushError<T>>
    where
        R: crate::policy::OverflowRule<T> + ?Sized,
    {
        let mut item = item;
        let mut grew = false;
        loop {
            match self.push_inner::<false>(item) {
                Ok(_) if grew => return Ok(Pushed::Grew),
                Ok(_) => return Ok(Pushed::Stored),
                Err(PushError::Full(back)) if self.grows && self.grow() => {
                    item = back;
                    grew = true;
                }
                Err(PushError::Full(back)) => {
                    let policy = rule.on_full(&back);
                    return self.push_full_by(policy, back);
                }
                Err(closed) => return Err(closed),
            }
        }
    }

    /// A push that found the ring full, under `policy`.
    fn push_full_by(&self, policy: OverflowPolicy, item: T) -> Result<Pushed, PushError<T>> {
        match policy {
            OverflowPolicy::DropOldest => self.push_drop_oldest(item),
            OverflowPolicy::DropNewest => self.push_drop_newest(item),
            OverflowPolicy::Reject => self.push_reject(item),
            #[cfg(feature = "std")]
            OverflowPolicy::BlockTimeout(timeout) => {
                match self.push_wait(item, crate::policy::Wait::Timeout(timeout)) {
                    Ok(()) => Ok(Pushed::Stored),
                    Err(super::PushWaitError::Timeout(item)) => Err(PushError::Full(item)),
                    Err(super::PushWaitError::Closed(item)) => Err(PushError::Closed(item)),
                }
            }
            OverflowPolicy::Block => {
                #[cfg(feature = "std")]
                let stored = self
                    .push_wait(item, crate::policy::Wait::Forever)
                    .map_err(|e| PushError::Closed(e.into_inner()));
                #[cfg(not(feature = "std"))]
                let stored = self
                    .push_wait_with(item, &mut super::Spin::new())
                    .map_err(PushError::from);
                stored.map(|()| Pushed::Stored)
            }
        }
    }

    #[inline]
    fn push_drop_oldest(&self, item: T) -> Result<Pushed, PushError<T>> {
        match self.push_inner::<true>(item)? {
            None => Ok(Pushed::Stored),
            Some(old) => {
                self.head.dropped_oldest.fetch_add(1, Ordering::Relaxed);
                drop(old);
                Ok(Pushed::DroppedOldest)
            }
        }
    }

    #[inline]
    fn push_drop_newest(&self, item: T) -> Result<Pushed, PushError<T>> {
        match self.push_inner::<false>(item) {
            Ok(_) => Ok(Pushed::Stored),
            Err(PushError::Full(item)) => {
                self.tail.dropped_newest.fetch_add(1, Ordering::Relaxed);
                drop(item);
                Ok(Pushed::DroppedNewest)
            }
            Err(closed) => Err(closed),
        }
    }

    #[inline]
    fn push_reject(&self, item: T) -> Result<Pushed, PushError<T>> {
        match self.push_inner::<false>(item) {
            Ok(_) => Ok(Pushed::Stored),
            Err(PushError::Full(item)) => {
                self.tail.rejected.fetch_add(1, Ordering::Relaxed);
                Err(PushError::Full(item))
            }
            Err(closed) => Err(closed),
        }
    }

    /// The one push algorithm. With `EVICT`, a full ring makes room by evicting the
    /// oldest item, which is returned; without it, a full ring returns `Full`.
    #[inline(always)]
    fn push_inner<const EVICT: bool>(&self, item: T) -> Result<Option<T>, PushError<T>> {
        let geo = self.geo;
        let mut backoff = Backoff::new();
        let mut tail = self.tail.pos.load(Ordering::Relaxed);
        loop {
            if tail & geo.mark_bit != 0 {
                return Err(PushError::Closed(item));
            }
            let index = geo.index(tail);
            let new_tail = geo.next(tail, index);
            let slot = self.slot(index);
            // Acquire: if the slot is free for `tail`, its last consumer's read of the
            // previous item happens before our write below.
            let stamp = slot.stamp.load(Ordering::Acquire);

            if stamp == tail {
                // Free for this lap. Below the reserved capacity, the soft capacity
                // decides whether there is room (same cache line as `tail`); an
                // evicting push checks it after its claim instead.
                if !EVICT {
                    let soft = self.tail.soft.load(Ordering::Relaxed);
                    if soft < geo.cap && !self.soft_room(tail, soft) {
                        self.note_full(soft);
                        return Err(PushError::Full(item));
                    }
                }
                // The CAS claims the position; it cannot succeed once `close` has
                // set `mark_bit`.
                match self.tail.pos.compare_exchange_weak(
                    tail,
                    new_tail,
                    Ordering::SeqCst,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => {
                        // SAFETY: the CAS made this thread the only producer of
                        // position `tail`, and the stamp showed the slot free for it,
                        // so no other thread reads or writes the value now.
                        slot.value
                            .with_mut(|p| unsafe { p.write(MaybeUninit::new(item)) });
                        // Release: publishes the value to the consumer of `tail`.
                        slot.stamp.store(tail + 1, Ordering::Release);
                        // Evicting: the item is in; take the oldest out if that put
                        // the ring over its capacity in force.
                        let evicted = if EVICT {
                            self.evict_to_capacity(None)
                        } else {
                            None
                        };
                        if index % HIGH_WATER_STRIDE == 0 {
                            self.sample_high_water(new_tail);
                        }
                        // After the SeqCst CAS above: see `wait`'s module docs.
                        self.tail.consumers.notify_one();
                        return Ok(evicted);
                    }
                    Err(current) => {
                        tail = current;
                        backoff.spin();
                    }
                }
            } else if stamp.wrapping_add(geo.one_lap) == tail + 1 {
                // The slot still holds the previous lap's item: the ring is full, or
                // a consumer has claimed that item and not yet released the slot.
                if EVICT {
                    match self.tail.pos.compare_exchange_weak(
                        tail,
                        new_tail,
                        Ordering::SeqCst,
                        Ordering::Relaxed,
                    ) {
                        Ok(_) => {
                            let evicted = self.replace_oldest(slot, tail, item);
                            let evicted = self.evict_to_capacity(evicted);
                            self.tail.consumers.notify_one();
                            return Ok(evicted);
                        }
                        Err(current) => {
                            tail = current;
                            backoff.spin();
                            continue;
                        }
                    }
                }
                // SeqCst fence: orders our loads of the stamp and of `head` with the
                // consumers' SeqCst CAS on `head`, so "full" is only reported if
                // the ring really was full at one point during the call.
                fence(Ordering::SeqCst);
                let head = self.head.pos.load(Ordering::Relaxed);
                if head.wrapping_add(geo.one_lap) == tail {
                    self.note_full(geo.cap);
                    return Err(PushError::Full(item));
                }
                // A consumer (or an evicting producer) has moved `head` but not yet
                // released the slot: wait for it.
                backoff.snooze();
                tail = self.tail.pos.load(Ordering::Relaxed);
            } else {
                // Another producer got this position first; our `tail` is stale.
                backoff.snooze();
                tail = self.tail.pos.load(Ordering::Relaxed);
            }
        }
    }

    /// Second half of an evicting push: this thread owns position `tail`, whose slot
    /// held the item of position `tail - one_lap` when the claim was made. Takes that
    /// old position from `head` (evicting its item) unless a consumer took it first.
    #[inline]
    fn replace_oldest(&self, slot: &Slot<T>, tail: u64, item: T) -> Option<T> {
        let geo = self.geo;
        let old = tail.wrapping_sub(geo.one_lap);
        let after_old = geo.next(old, geo.index(old));
        let mut backoff = Backoff::new();
        loop {
            match self.head.pos.compare_exchange(
                old,
                after_old,
                Ordering::SeqCst,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    // The ring held `cap` items until this eviction.
                    self.note_full(geo.cap);
                    // SAFETY: winning `head` at `old` makes this thread the only
                    // owner of the item of `old` (no consumer can claim it now), and
                    // the Acquire load of the stamp (`old + 1`) before our tail claim
                    // synchronised with its producer's write. Owning `tail` means no
                    // other producer writes this slot.
                    let evicted = slot.value.with_mut(|p| unsafe {
                        mem::replace(&mut *p, MaybeUninit::new(item)).assume_init()
                    });
                    // Release: publishes the new item to the consumer of `tail`.
                    slot.stamp.store(tail + 1, Ordering::Release);
                    return Some(evicted);
                }
                Err(head) if head < old => {
                    // Producers that claimed earlier positions are still evicting
                    // the items before `old`; `head` reaches `old` once they finish.
                    backoff.snooze();
                }
                Err(_) => {
                    // A consumer claimed `old` first and will free the slot for
                    // `tail`; then this is an ordinary push.
                    while slot.stamp.load(Ordering::Acquire) != tail {
                        backoff.snooze();
                    }
                    // SAFETY: the stamp says the slot is free for `tail` (the
                    // consumer's read happened before, by Acquire), and this thread
                    // owns position `tail`.
                    slot.value
                        .with_mut(|p| unsafe { p.write(MaybeUninit::new(item)) });
                    slot.stamp.store(tail + 1, Ordering::Release);
                    return None;
                }
            }
        }
    }

    /// Records that the ring has been full at `len` items.
    #[inline]
    fn note_full(&self, len: u64) {
        if self.tail.high_water.load(Ordering::Relaxed) < len {
            self.tail.high_water.fetch_max(len, Ordering::Relaxed);
        }
    }

    /// Whether a push at `tail` stays within the soft capacity `soft`. Checks the
    /// cached `head` first (a lower bound, so it may only say "full" wrongly), and
    /// the real one before answering "full".
    #[inline]
    fn soft_room(&self, tail: u64, soft: u64) -> bool {
        let geo = self.geo;
        let cached = self.tail.head_cache.load(Ordering::Relaxed);
        // A cached head newer than our stale `tail` gives 0 here; the claim CAS
        // then fails on the stale `tail` anyway.
        geo.count(tail).saturating_sub(geo.count(cached)) < soft || self.soft_room_slow(tail, soft)
    }

    #[cold]
    fn soft_room_slow(&self, tail: u64, soft: u64) -> bool {
        let geo = self.geo;
        // Read after `tail`: if it shows `soft` items, the ring held at least that
        // many when it was read. A waiting producer reads it after its SeqCst
        // fence (the wait protocol), so it sees any pop the notifier missed it for.
        let head = self.head.pos.load(Ordering::Relaxed);
        self.tail.head_cache.store(head, Ordering::Relaxed);
        geo.count(tail).saturating_sub(geo.count(head)) < soft
    }

    /// The end of every evicting push: one that has not evicted yet (the slots
    /// were not all taken) evicts the oldest item if its own put the ring over the
    /// capacity in force. An evicting push evicts one item at most, so a ring kept
    /// above a lowered capacity (a policy that keeps the excess) stays at its
    /// length under `force_push`.
    ///
    /// The `SeqCst` load follows the push's `SeqCst` claim, and `set_capacity`
    /// fences after its `SeqCst` store: either this load sees the new capacity, or
    /// `set_capacity`'s eviction sees this push's position (and it does if it saw
    /// this push's own eviction, which follows the claim). So no evicting push that
    /// ends after `set_capacity` returns leaves the ring above the new capacity.
    #[inline]
    fn evict_to_capacity(&self, evicted: Option<T>) -> Option<T> {
        if evicted.is_some() {
            return evicted;
        }
        // Only under loom: its SeqCst loads are AcqRel (see `wait`'s module docs).
        #[cfg(loom)]
        fence(Ordering::SeqCst);
        let soft = self.tail.soft.load(Ordering::SeqCst);
        if soft >= self.geo.cap {
            return None;
        }
        self.evict_above(soft)
    }

    /// Evicts the oldest item while the ring holds more than `soft` items, one at
    /// most: the second half of an evicting push under a soft capacity, and the
    /// step `set_capacity` repeats to shed the excess.
    ///
    /// Takes the item as a consumer would (claim `head` by CAS, read, free the
    /// slot), but only while over capacity: `tail` is read after `head`, and the
    /// CAS succeeds only if `head` has not moved, so the ring really held more than
    /// `soft` items when the item was taken.
    #[cold]
    fn evict_above(&self, soft: u64) -> Option<T> {
        let geo = self.geo;
        let mut backoff = Backoff::new();
        loop {
            let head = self.head.pos.load(Ordering::Acquire);
            let tail = self.tail.pos.load(Ordering::Acquire) & !geo.mark_bit;
            if geo.count(tail).saturating_sub(geo.count(head)) <= soft {
                return None;
            }
            let index = geo.index(head);
            let slot = self.slot(index);
            if slot.stamp.load(Ordering::Acquire) != head + 1 {
                // Its producer is still writing it, or `head` is stale: wait.
                backoff.snooze();
                continue;
            }
            if self
                .head
                .pos
                .compare_exchange(
                    head,
                    geo.next(head, index),
                    Ordering::SeqCst,
                    Ordering::Relaxed,
                )
                .is_ok()
            {
                self.note_full(soft);
                // SAFETY: as in `pop`: the CAS made this thread the only owner of
                // position `head`, whose item the stamp (Acquire) showed written.
                let item = slot.value.with(|p| unsafe { p.read().assume_init() });
                slot.stamp
                    .store(head.wrapping_add(geo.one_lap), Ordering::Release);
                self.head.producers.notify_one();
                return Some(item);
            }
            backoff.spin();
        }
    }

    /// One step of growth: doubles the capacity in force, up to the limit.
    /// Returns `false` when it is already at the limit.
    fn grow(&self) -> bool {
        let limit = self.tail.limit.load(Ordering::Relaxed);
        let soft = self.tail.soft.load(Ordering::Relaxed);
        if soft >= limit {
            return false;
        }
        let grown = soft.saturating_mul(2).min(limit);
        // SeqCst: a producer waiting for room re-checks after its fence (the wait
        // protocol); the notify below must not miss it.
        if self
            .tail
            .soft
            .compare_exchange(soft, grown, Ordering::SeqCst, Ordering::Relaxed)
            .is_ok()
        {
            self.tail.grows.fetch_add(1, Ordering::Relaxed);
            self.head.producers.notify_all();
        }
        // Lost the race: someone else changed the capacity; the caller retries.
        true
    }

    /// Refreshes the high-water mark from `head`; called once per stride of pushes.
    #[cold]
    fn sample_high_water(&self, tail: u64) {
        let len = self.len_between(self.head.pos.load(Ordering::Relaxed), tail);
        if len > self.tail.high_water.load(Ordering::Relaxed) {
            self.tail.high_water.fetch_max(len, Ordering::Relaxed);
        }
    }

    /// Takes the oldest item, if there is one.
    ///
    /// Use [`pop`](Self::pop) to tell an empty ring from a closed and drained one.
    ///
    /// # Examples
    ///
    /// ```
    /// use membound::ring::Ring;
    ///
    /// let ring = Ring::new(4)?;
    /// assert_eq!(ring.try_pop(), None::<u8>);
    /// ring.try_push(9)?;
    /// assert_eq!(ring.try_pop(), Some(9));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[inline]
    pub fn try_pop(&self) -> Option<T> {
        self.pop().ok()
    }

    /// Takes the oldest item, or says why there is none.
    ///
    /// # Errors
    ///
    /// [`PopError::Empty`] when nothing is stored, [`PopError::Closed`] when the ring is
    /// closed and everything in it has been taken.
    ///
    /// # Examples
    ///
    /// ```
    /// use membound::ring::{PopError, Ring};
    ///
    /// let ring = Ring::new(4)?;
    /// ring.try_push(1)?;
    /// ring.close();
    /// assert_eq!(ring.pop(), Ok(1)); // what was stored is still delivered
    /// assert_eq!(ring.pop(), Err(PopError::Closed));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[inline]
    pub fn pop(&self) -> Result<T, PopError> {
        let geo = self.geo;
        let mut backoff = Backoff::new();
        let mut head = self.head.pos.load(Ordering::Relaxed);
        loop {
            let index = geo.index(head);
            let slot = self.slot(index);
            // Acquire: pairs with the producer's Release of `head + 1`.
            let stamp = slot.stamp.load(Ordering::Acquire);

            if stamp == head + 1 {
                let new_head = geo.next(head, index);
                match self.head.pos.compare_exchange_weak(
                    head,
                    new_head,
                    Ordering::SeqCst,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => {
                        // SAFETY: the CAS made this thread the only consumer of
                        // position `head`, and the stamp (read with Acquire) showed
                        // its item written. No producer writes the slot until the
                        // stamp below frees it.
                        let item = slot.value.with(|p| unsafe { p.read().assume_init() });
                        // Release: our read happens before the next lap's write.
                        slot.stamp
                            .store(head.wrapping_add(geo.one_lap), Ordering::Release);
                        // After the SeqCst CAS above: see `wait`'s module docs.
                        self.head.producers.notify_one();
                        return Ok(item);
                    }
                    Err(current) => {
                        head = current;
                        backoff.spin();
                    }
                }
            } else {
                head = self.pop_slow(head, stamp, &mut backoff)?;
            }
        }
    }

    /// The slow branches of [`pop`](Self::pop), out of line so the fast path stays
    /// small enough to inline: reports an empty or closed ring, or waits one backoff
    /// step for another thread and returns the `head` to retry from.
    #[cold]
    fn pop_slow(&self, head: u64, stamp: u64, backoff: &mut Backoff) -> Result<u64, PopError> {
        let geo = self.geo;
        if stamp == head {
            // Nothing written at `head` yet: empty, or a producer is mid-write.
            // SeqCst fence: see the matching fence in `push_inner`.
            fence(Ordering::SeqCst);
            let tail = self.tail.pos.load(Ordering::Relaxed);
            if tail & !geo.mark_bit == head {
                return Err(if tail & geo.mark_bit != 0 {
                    PopError::Closed
                } else {
                    PopError::Empty
                });
            }
            // A producer has claimed `head` and not yet written it: wait.
        }
        // Otherwise another consumer took this position and our `head` is stale, or
        // its previous item is still being evicted.
        backoff.snooze();
        Ok(self.head.pos.load(Ordering::Relaxed))
    }

    /// An iterator that pops up to `max` items, stopping early when the ring is empty.
    ///
    /// Items are taken one by one as the iterator advances; dropping it early leaves
    /// the rest in the ring. Feed a caller buffer with `extend`.
    ///
    /// # Examples
    ///
    /// ```
    /// use membound::ring::Ring;
    ///
    /// let ring = Ring::new(8)?;
    /// for i in 0..6 {
    ///     ring.try_push(i)?;
    /// }
    /// let mut batch = Vec::with_capacity(4);
    /// batch.extend(ring.pop_batch(4));
    /// assert_eq!(batch, [0, 1, 2, 3]);
    /// assert_eq!(ring.len(), 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn pop_batch(&self, max: usize) -> Drain<'_, T, S> {
        Drain {
            ring: self,
            remaining: max,
        }
    }

    /// An iterator that pops at most as many items as [`len`](Self::len) returned at
    /// the call, so producers that keep pushing cannot make it endless. With other
    /// consumers running it may take items pushed after the call, never more than
    /// that count.
    ///
    /// # Examples
    ///
    /// ```
    /// use membound::ring::Ring;
    ///
    /// let ring = Ring::new(3)?;
    /// ring.try_push(1)?;
    /// ring.try_push(2)?;
    /// assert_eq!(ring.drain().sum::<i32>(), 3);
    /// assert!(ring.is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn drain(&self) -> Drain<'_, T, S> {
        self.pop_batch(self.len())
    }

    /// Pops and drops at most as many items as [`len`](Self::len) returned at the
    /// call (the whole content when no one else pushes), and returns how many,
    /// counted in [`RingMetrics::cleared`].
    ///
    /// # Examples
    ///
    /// ```
    /// use membound::ring::Ring;
    ///
    /// let ring = Ring::new(3)?;
    /// ring.try_push(1)?;
    /// ring.try_push(2)?;
    /// assert_eq!(ring.clear(), 2);
    /// assert!(ring.is_empty());
    /// assert_eq!(ring.metrics().cleared, 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn clear(&self) -> usize {
        let cleared = self.drain().count();
        if cleared > 0 {
            self.head
                .cleared
                .fetch_add(cleared as u64, Ordering::Relaxed);
        }
        cleared
    }

    /// Closes the ring: every later push fails with `Closed` and hands its item back;
    /// pops deliver what is stored, then report [`PopError::Closed`].
    ///
    /// Returns `true` if this call closed it, `false` if it was already closed.
    ///
    /// # Examples
    ///
    /// ```
    /// use membound::ring::{Closed, Ring};
    ///
    /// let ring = Ring::new(2)?;
    /// assert!(ring.close());
    /// assert!(!ring.close());
    /// assert_eq!(ring.force_push(5), Err(Closed(5)));
    /// # Ok::<(), membound::ConfigError>(())
    /// ```
    pub fn close(&self) -> bool {
        // No push gets in afterwards because pushes claim positions by CAS on this
        // same atomic: a CAS ordered after the mark sees it and fails, one ordered
        // before it was accepted and is drained. SeqCst so that the SeqCst fence in
        // `pop`'s empty check sees the mark as soon as it sees the last position.
        let closed_now =
            self.tail.pos.fetch_or(self.geo.mark_bit, Ordering::SeqCst) & self.geo.mark_bit == 0;
        // Every waiter, on both sides, wakes and finds the ring closed (a consumer
        // after draining). The SeqCst RMW above precedes these loads, as the wait
        // protocol requires.
        self.tail.consumers.notify_all();
        self.head.producers.notify_all();
        closed_now
    }

    /// Whether [`close`](Self::close) has been called.
    pub fn is_closed(&self) -> bool {
        self.tail.pos.load(Ordering::Acquire) & self.geo.mark_bit != 0
    }

    /// Number of items stored now.
    ///
    /// Under concurrent pushes and pops this is a value the length had during the
    /// call.
    pub fn len(&self) -> usize {
        let mut backoff = Backoff::new();
        loop {
            let tail = self.tail.pos.load(Ordering::Acquire);
            let head = self.head.pos.load(Ordering::Acquire);
            // Retry until `tail` did not move while `head` was read, so the pair is a
            // snapshot.
            if self.tail.pos.load(Ordering::Acquire) == tail {
                return self.len_between(head, tail) as usize;
            }
            backoff.spin();
        }
    }

    /// Items between `head` and `tail`, clamped to the capacity (producers that are
    /// evicting have claimed `tail` before moving `head`).
    #[inline]
    fn len_between(&self, head: u64, tail: u64) -> u64 {
        let geo = self.geo;
        geo.count(tail & !geo.mark_bit)
            .saturating_sub(geo.count(head))
            .min(geo.cap)
    }

    /// Whether no item is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the ring holds as many items as its capacity in force.
    pub fn is_full(&self) -> bool {
        self.len() >= self.capacity()
    }

    /// The capacity in force: how many items the ring holds before its policy
    /// acts. As configured, unless changed by [`set_capacity`](Self::set_capacity)
    /// or grown (a ring [`with_growth`](super::RingConfig::with_growth)).
    pub fn capacity(&self) -> usize {
        self.tail.soft.load(Ordering::Relaxed) as usize
    }

    /// The most [`capacity`](Self::capacity) may grow to on its own: in a
    /// growing ring its growth maximum (or what
    /// [`set_capacity`](Self::set_capacity) set since), otherwise the capacity
    /// itself.
    pub fn capacity_limit(&self) -> usize {
        self.tail.limit.load(Ordering::Relaxed) as usize
    }

    /// The slots reserved at construction: the most
    /// [`set_capacity`](Self::set_capacity) accepts. Fixed for the ring's life.
    pub fn max_capacity(&self) -> usize {
        self.geo.cap as usize
    }

    /// Changes the capacity at runtime, within what was reserved: the knob the
    /// memory monitor turns under pressure. Takes effect for every push that starts
    /// after the call (pushes already past their room check may complete under the
    /// old capacity); never allocates.
    ///
    /// In a growing ring this sets the limit growth may
    /// reach, and lowers the capacity in force to it if above; otherwise it sets
    /// the capacity itself.
    ///
    /// When the new capacity is below the current length, the policy decides what
    /// happens to the excess:
    /// - `DropOldest` (growing or not): the oldest items are evicted
    ///   now, counted in [`RingMetrics::dropped_oldest`];
    /// - every other policy keeps them: consumers drain them as usual, and pushes
    ///   find the ring full until the length falls below the new capacity.
    ///
    /// Raising the capacity wakes producers waiting for room.
    ///
    /// # Errors
    ///
    /// [`CapacityError::Zero`] for 0, [`CapacityError::AboveMax`] beyond
    /// [`max_capacity`](Self::max_capacity); nothing changes then.
    ///
    /// # Examples
    ///
    /// ```
    /// use membound::ring::{Ring, RingConfig};
    /// use membound::OverflowPolicy;
    ///
    /// let ring = Ring::with_config(RingConfig::new(4).with_max_capacity(8))?;
    /// for i in 0..4 {
    ///     ring.push(i)?;
    /// }
    /// ring.set_capacity(2)?; // DropOldest: sheds the two oldest now
    /// assert_eq!(ring.len(), 2);
    /// assert_eq!(ring.metrics().dropped_oldest, 2);
    /// ring.set_capacity(8)?; // within the reservation
    /// assert!(ring.set_capacity(9).is_err());
    ///
    /// let keep = Ring::with_config(RingConfig::new(4).with_policy(OverflowPolicy::Reject))?;
    /// for i in 0..4 {
    ///     keep.push(i)?;
    /// }
    /// keep.set_capacity(2)?; // Reject: keeps what it holds, refuses new items
    /// assert_eq!(keep.len(), 4);
    /// assert!(keep.push(4).is_err());
    /// assert_eq!(keep.drain().collect::<Vec<_>>(), [0, 1, 2, 3]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn set_capacity(&self, capacity: usize) -> Result<(), CapacityError> {
        crate::capacity::check(capacity, self.max_capacity())?;
        let new = capacity as u64;
        let grows = self.grows;
        self.tail.limit.store(new, Ordering::Relaxed);
        // SeqCst RMWs: producers waiting for room re-check after their fence (the
        // wait protocol), so the notify below cannot miss one.
        let old = if grows {
            self.tail.soft.fetch_min(new, Ordering::SeqCst)
        } else {
            self.tail.soft.swap(new, Ordering::SeqCst)
        };
        // SeqCst fence: pairs with the load in `evict_to_capacity` (see there), so
        // the eviction below sees every push that missed the new capacity.
        fence(Ordering::SeqCst);
        if new < old {
            self.tail.shrinks.fetch_add(1, Ordering::Relaxed);
            if self.policy.evicts_excess() {
                while let Some(item) = self.evict_above(new) {
                    self.head.dropped_oldest.fetch_add(1, Ordering::Relaxed);
                    drop(item);
                }
            }
        } else if new > old && !grows {
            self.tail.grows.fetch_add(1, Ordering::Relaxed);
            self.head.producers.notify_all();
        }
        Ok(())
    }

    /// The policy [`push`](Self::push) applies when the ring is full.
    pub fn policy(&self) -> OverflowPolicy {
        self.policy
    }

    /// A snapshot of the counters; see [`RingMetrics`] for how each is kept.
    ///
    /// # Examples
    ///
    /// ```
    /// use membound::ring::Ring;
    ///
    /// let ring = Ring::new(2)?;
    /// for i in 0..3 {
    ///     ring.push(i)?;
    /// }
    /// ring.try_pop();
    /// let m = ring.metrics();
    /// assert_eq!((m.pushed, m.popped, m.dropped_oldest, m.len), (3, 1, 1, 1));
    /// assert_eq!(m.high_water, 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn metrics(&self) -> RingMetrics {
        let geo = self.geo;
        let head = self.head.pos.load(Ordering::Acquire);
        let tail = self.tail.pos.load(Ordering::Acquire) & !geo.mark_bit;
        let evicted = self.head.evicted.load(Ordering::Relaxed);
        let dropped_oldest = self.head.dropped_oldest.load(Ordering::Relaxed);
        let cleared = self.head.cleared.load(Ordering::Relaxed);
        let len = self.len_between(head, tail);
        let removed = geo.count(head);
        RingMetrics {
            pushed: geo.count(tail),
            popped: removed.saturating_sub(evicted + dropped_oldest + cleared),
            evicted,
            dropped_oldest,
            dropped_newest: self.tail.dropped_newest.load(Ordering::Relaxed),
            rejected: self.tail.rejected.load(Ordering::Relaxed),
            cleared,
            len,
            capacity: self.tail.soft.load(Ordering::Relaxed),
            capacity_limit: self.tail.limit.load(Ordering::Relaxed),
            max_capacity: geo.cap,
            grows: self.tail.grows.load(Ordering::Relaxed),
            shrinks: self.tail.shrinks.load(Ordering::Relaxed),
            high_water: self.tail.high_water.load(Ordering::Relaxed).max(len),
            push_waits: self.head.producers.sleeps(),
            pop_waits: self.tail.consumers.sleeps(),
            timeouts: self.tail.timeouts.load(Ordering::Relaxed),
            producers_waiting: self.head.producers.len(),
            consumers_waiting: self.tail.consumers.len(),
        }
    }
}

/// The items of a ring taken by value, oldest first ([`IntoIterator`] for a
/// [`RingCore`], as crossbeam's `ArrayQueue` has it).
///
/// # Examples
///
/// ```
/// use membound::ring::Ring;
///
/// let ring = Ring::new(4)?;
/// ring.try_push("a")?;
/// ring.try_push("b")?;
/// let mut items = ring.into_iter();
/// assert_eq!(items.len(), 2);
/// assert_eq!(items.collect::<Vec<_>>(), ["a", "b"]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct IntoIter<T, S: Storage<T>> {
    ring: RingCore<T, S>,
}

impl<T, S: Storage<T>> Iterator for IntoIter<T, S> {
    type Item = T;

    fn next(&mut self) -> Option<T> {
        self.ring.try_pop()
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        // Owned: nobody else pushes or pops, so the length is exact.
        let len = self.ring.len();
        (len, Some(len))
    }
}

impl<T, S: Storage<T>> ExactSizeIterator for IntoIter<T, S> {}

impl<T, S: Storage<T>> core::iter::FusedIterator for IntoIter<T, S> {}

impl<T, S: Storage<T>> fmt::Debug for IntoIter<T, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IntoIter")
            .field("len", &self.ring.len())
            .finish_non_exhaustive()
    }
}

impl<T, S: Storage<T>> IntoIterator for RingCore<T, S> {
    type Item = T;
    type IntoIter = IntoIter<T, S>;

    fn into_iter(self) -> IntoIter<T, S> {
        IntoIter { ring: self }
    }
}

/// Iterator returned by [`RingCore::pop_batch`] and [`RingCore::drain`].
pub struct Drain<'a, T, S: Storage<T>> {
    ring: &'a RingCore<T, S>,
    remaining: usize,
}

impl<T, S: Storage<T>> Iterator for Drain<'_, T, S> {
    type Item = T;

    fn next(&mut self) -> Option<T> {
        if self.remaining == 0 {
            return None;
        }
        match self.ring.try_pop() {
            Some(item) => {
                self.remaining -= 1;
                Some(item)
            }
            None => {
                self.remaining = 0;
                None
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.remaining))
    }
}

impl<T, S: Storage<T>> fmt::Debug for Drain<'_, T, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Drain")
            .field("remaining", &self.remaining)
            .finish_non_exhaustive()
    }
}

impl<T, S: Storage<T>> Drop for RingCore<T, S> {
    fn drop(&mut self) {
        if !mem::needs_drop::<T>() {
            return;
        }
        let geo = self.geo;
        // `&mut self`: no operation is in flight, so every position in
        // `head..tail` holds an initialised item exactly once.
        let mut pos = self.head.pos.load(Ordering::Relaxed);
        let tail = self.tail.pos.load(Ordering::Relaxed) & !geo.mark_bit;
        while pos != tail {
            let index = geo.index(pos);
            // SAFETY: as above; each item is dropped once because `pos` advances.
            self.slot(index)
                .value
                .with_mut(|p| unsafe { (*p).assume_init_drop() });
            pos = geo.next(pos, index);
        }
    }
}

// SAFETY: items move between threads through the ring (hence `T: Send`), and every
// access to a slot's value is made exclusive by the position and stamp protocol above.
unsafe impl<T: Send, S: Storage<T>> Sync for RingCore<T, S> {}

// Only foreign code can panic inside a ring operation (an item's `Drop`, when `push`
// drops the item it evicted; an `OverflowRule`, asked between steps), and it runs
// when the ring's state is consistent: a ring observed after a caught panic is
// whole, as crossbeam's `ArrayQueue` declares.
impl<T, S: Storage<T>> core::panic::UnwindSafe for RingCore<T, S> {}
impl<T, S: Storage<T>> core::panic::RefUnwindSafe for RingCore<T, S> {}

impl<T, S: Storage<T>> fmt::Debug for RingCore<T, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ring")
            .field("capacity", &self.capacity())
            .field("len", &self.len())
            .field("policy", &self.policy)
            .field("closed", &self.is_closed())
            .finish()
    }
}

/// The memory monitor's view of a ring: its capacity limit, lowered under pressure
/// and restored after. For rings that do not grow the limit is the capacity in
/// force; for growing ones it is the most the ring may grow to.
impl<T, S: Storage<T>> SoftCapacity for RingCore<T, S> {
    fn capacity(&self) -> usize {
        self.capacity_limit()
    }

    fn max_capacity(&self) -> usize {
        RingCore::max_capacity(self)
    }

    fn set_capacity(&self, capacity: usize) -> Result<(), CapacityError> {
        RingCore::set_capacity(self, capacity)
    }

    /// The ring and its slots, reserved at construction (for a growing ring, up to
    /// its maximum): constant. Items' own heap allocations are not counted.
    fn footprint(&self) -> Option<crate::capacity::Footprint> {
        let slots = self.slots.slots();
        let buffer = (slots.as_ptr().cast::<u8>(), core::mem::size_of_val(slots));
        Some(crate::capacity::Footprint::reserved(
            crate::capacity::reserved_bytes(self, &[buffer]),
        ))
    }

    fn kind(&self) -> &'static str {
        <RingMetrics as crate::metrics::Metrics>::KIND
    }
}

mod waiting;
pub use waiting::{PopFuture, PushFuture};

#[cfg(all(test, not(loom)))]
mod tests {
    use super::Geometry;

    /// Walks `n` positions from 0 with `next`, checking each against the count.
    fn walk(cap: usize, n: u64) {
        let geo = Geometry::new(cap);
        assert!(geo.mark_bit > geo.cap && geo.mark_bit.is_power_of_two());
        assert_eq!(geo.one_lap, 2 * geo.mark_bit);
        let mut pos = 0u64;
        for i in 0..n {
            assert_eq!(geo.count(pos), i, "cap {cap}, position {pos:#x}");
            let index = geo.index(pos);
            assert_eq!(index, i % cap as u64, "index never reaches cap");
            assert_eq!(pos & geo.mark_bit, 0, "positions never carry the close bit");
            let next = geo.next(pos, index);
            assert!(next > pos, "positions are monotonic");
            pos = next;
        }
    }

    #[test]
    fn positions_count_and_index_every_capacity_shape() {
        for cap in [1, 2, 3, 4, 5, 7, 8, 9, 63, 64, 65, 1000, 1024] {
            walk(cap, 5 * cap as u64 + 3);
        }
    }

    #[test]
    fn len_between_clamps_to_capacity() {
        // An evicting producer claims `tail` before it moves `head`, so for a moment
        // the positions are `cap + 1` apart; the length reported stays `cap`.
        let ring = super::StaticRing::<u8, 3>::new();
        let one_lap = ring.geo.one_lap;
        assert_eq!(ring.geo.count(one_lap + 1), 4);
        assert_eq!(ring.len_between(0, one_lap + 1), 3);
        assert_eq!(ring.len_between(1, one_lap + 1), 3);
        assert_eq!(ring.len_between(2, one_lap + 1), 2);
        // A stale `head` read after `tail` never makes the length negative.
        assert_eq!(ring.len_between(one_lap, 2), 0);
    }
}
