//! A wait-free single-producer single-consumer ring: [`channel`] (heap) and
//! [`StaticChannel`] (inline, `no_std`), split into a [`Producer`] and a
//! [`Consumer`] so the one-producer one-consumer contract is enforced by types.
//!
//! # Algorithm
//!
//! Lamport's ring with the cached-index refinement of rigtorp's `SPSCQueue` and
//! `rtrb`: the producer owns `tail`, the consumer owns `head`, and each keeps a
//! private copy of the other's index, reloading it only when the copy says the ring
//! is full (or empty). A push or pop in steady state touches no cache line the other
//! side writes, except the slot itself. Positions are 64-bit and never wrap (DESIGN
//! rule 4); each side tracks its slot index separately, so any capacity `>= 1` works
//! with no division and no wasted slot.
//!
//! Batches ([`Producer::push_iter`], [`Producer::push_slice`],
//! [`Consumer::pop_slice`], [`Consumer::pop_batch`]) and chunks
//! ([`Producer::write_chunk_uninit`], [`Consumer::read_chunk`]) publish their index
//! once per batch.
//!
//! # Dropping the oldest
//!
//! The channel supports two [`OverflowPolicy`]s: `Reject` (the default of
//! [`channel`] and [`StaticChannel::new`]) and `DropOldest`; it refuses the others at
//! construction with [`ConfigError::UnsupportedPolicy`].
//!
//! A channel built with [`OverflowPolicy::DropOldest`] lets [`Producer::push`] evict the
//! oldest item when the ring is full, without a lock and without costing a push that
//! finds room anything. The consumer then claims each position with a CAS on `head`
//! (the producer's eviction claims the oldest position with the same CAS, so an item
//! is either read or evicted, never both) and publishes a separate `released` index
//! once it has read the slot; the producer reuses a slot only once it is released or
//! evicted by itself. It never waits for a release (a push is wait-free, whatever
//! the consumer holds): while the oldest position is claimed and not yet released
//! (a held [`ReadChunk`], a [`PopBatch`] not yet taken past it, a pop still copying
//! it out after a bounded number of the producer's spins), there is nothing it may
//! evict in its place, so the push hands its item back as [`PushError::Full`] (see
//! [`Producer::push`] for why not drop the new item instead). The consumer learns how many items it
//! lost, and where: the next [`Consumer::pop`] after an eviction returns
//! [`PopError::Lagged`]`(n)` (tokio broadcast's idea), then the items that
//! follow.
//!
//! # Waiting
//!
//! Both sides wait as the MPMC ring does, one pair each way: blocking for as long as
//! a [`Wait`](crate::policy::Wait) says ([`Producer::push_wait`],
//! [`Consumer::pop_wait`], std), async ([`Producer::push_async`],
//! [`Consumer::pop_async`]), or with a [`WaitStrategy`](super::WaitStrategy)
//! ([`Producer::push_wait_with`], [`Consumer::pop_wait_with`]), through the ring's
//! eventcount (see the
//! `wait` module): a push or pop costs one load of the other side's waiter count when
//! nobody waits. The protocol needs a store-load barrier between publishing an
//! index and that load. Here the index is a plain release store, so under `std` on
//! Linux the barrier is *asymmetric*: the fast side has only a compiler fence, and a
//! side about to sleep calls `membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED)`, which
//! makes every running thread of the process execute a full barrier (the technique
//! of liburcu and folly). Elsewhere, or if the kernel refuses, both sides use a
//! `SeqCst` fence. Dropping a handle marks its side gone: the other side's waits end
//! with `Closed`, and a consumer drains what is left first.

use core::fmt;
use core::marker::PhantomData;
use core::mem::MaybeUninit;
use core::ptr::NonNull;

use crossbeam_utils::CachePadded;

use super::wait::WaitQueue;
use super::{PushError, MAX_CAPACITY};
use crate::policy::OverflowPolicy;
use crate::sync::{AtomicBool, AtomicU64, Backoff, Ordering, UnsafeCell};
use crate::ConfigError;

mod chunk;
mod waiting;

pub use chunk::PopBatch;
#[cfg(not(loom))]
pub use chunk::{ReadChunk, ReadChunkIntoIter, WriteChunk, WriteChunkUninit};
pub use waiting::{PopFuture, PushFuture};

/// How many backoff spins a `DropOldest` push gives a claimed oldest item to be
/// released before handing its own item back: enough for a pop that is copying the
/// item out (a few instructions), bounded so that a held chunk costs a push about
/// two hundred spin hints at most.
const MID_POP_SPINS: u32 = 8;

/// The structure named in [`ConfigError::UnsupportedPolicy`].
const STRUCTURE: &str = "spsc channel";

/// Checks that the channel supports `policy`: `Reject` (pops are plain stores)
/// or `DropOldest` (pops claim positions with a CAS). Returns whether it drops the
/// oldest.
const fn drops_oldest(policy: OverflowPolicy) -> Result<bool, ConfigError> {
    match policy {
        OverflowPolicy::Reject => Ok(false),
        OverflowPolicy::DropOldest => Ok(true),
        _ => Err(ConfigError::UnsupportedPolicy {
            policy,
            structure: STRUCTURE,
        }),
    }
}

/// Why a [`Consumer::pop`] returned no item.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PopError {
    /// Nothing is stored right now.
    Empty,
    /// The producer is gone and everything it pushed has been taken.
    Closed,
    /// The producer evicted this many items since the last pop (under
    /// [`OverflowPolicy::DropOldest`]); they were older than the next item, which
    /// the next pop returns.
    Lagged(u64),
    /// A blocking pop ([`Consumer::pop_wait`]) waited until its deadline and nothing
    /// arrived.
    Timeout,
}

impl fmt::Display for PopError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("channel is empty"),
            Self::Closed => f.write_str("producer is gone and the channel is drained"),
            Self::Lagged(n) => write!(f, "{n} items were dropped before the next one"),
            Self::Timeout => f.write_str("timed out waiting for an item"),
        }
    }
}

impl core::error::Error for PopError {}

/// Why a chunk of exactly `n` slots could not be had
/// ([`Producer::write_chunk`], [`Producer::write_chunk_uninit`],
/// [`Consumer::read_chunk`]), in rtrb's shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ChunkError {
    /// Fewer slots (free ones, or stored items) than asked for: this many.
    TooFewSlots(usize),
}

impl fmt::Display for ChunkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooFewSlots(n) => write!(f, "only {n} slots available in the spsc channel"),
        }
    }
}

impl core::error::Error for ChunkError {}

/// One slot: written by the producer, read by the consumer, in turn. Transparent
/// (outside loom), so a run of slots is a run of `MaybeUninit<T>` for chunks.
#[cfg_attr(not(loom), repr(transparent))]
pub struct Slot<T>(UnsafeCell<MaybeUninit<T>>);

impl<T> Slot<T> {
    crate::sync::const_unless_loom! {
        fn new() -> Self {
            Self(UnsafeCell::new(MaybeUninit::uninit()))
        }
    }
}

impl<T> fmt::Debug for Slot<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("spsc::Slot")
    }
}

/// The indices and flags both handles share.
struct Shared {
    /// Next position to read. Written by the consumer; under `DropOldest` claimed by
    /// CAS by the consumer (a read) and the producer (an eviction).
    head: CachePadded<AtomicU64>,
    /// Next position to write. Written by the producer only.
    tail: CachePadded<AtomicU64>,
    /// `DropOldest` only: every position below this has been read out by the
    /// consumer (or evicted). Written by the consumer only.
    released: CachePadded<AtomicU64>,
    /// Rarely written: who is gone, who waits, what was dropped.
    control: CachePadded<Control>,
    /// Number of slots, `1..=MAX_CAPACITY`. Read-only.
    cap: u64,
    /// Whether the policy is `DropOldest` (otherwise `Reject`). Read-only.
    drop_oldest: bool,
}

struct Control {
    producer_gone: AtomicBool,
    consumer_gone: AtomicBool,
    /// The consumer, waiting for items; notified by pushes.
    consumers: WaitQueue,
    /// The producer, waiting for room; notified by pops.
    producers: WaitQueue,
    /// Items evicted by the producer.
    dropped: AtomicU64,
}

impl Shared {
    crate::sync::const_unless_loom! {
        fn new(cap: usize, drop_oldest: bool) -> Self {
            Self {
                head: CachePadded::new(AtomicU64::new(0)),
                tail: CachePadded::new(AtomicU64::new(0)),
                released: CachePadded::new(AtomicU64::new(0)),
                control: CachePadded::new(Control {
                    producer_gone: AtomicBool::new(false),
                    consumer_gone: AtomicBool::new(false),
                    consumers: WaitQueue::with_barrier(true),
                    producers: WaitQueue::with_barrier(true),
                    dropped: AtomicU64::new(0),
                }),
                cap: cap as u64,
                drop_oldest,
            }
        }
    }

    /// The index the producer waits on for free slots.
    #[inline(always)]
    fn free_index(&self) -> &AtomicU64 {
        if self.drop_oldest {
            &self.released
        } else {
            &self.head
        }
    }

    /// Drops the items still stored. Only with both handles gone (`&mut`).
    fn drop_items<T>(&mut self, slots: &[Slot<T>]) {
        let head = self.head.load(Ordering::Relaxed);
        let tail = self.tail.load(Ordering::Relaxed);
        for pos in head..tail {
            let slot = &slots[(pos % self.cap) as usize];
            // SAFETY: with no handle left, the positions `head..tail` hold the
            // initialised items not yet read or evicted, each once.
            slot.0.with_mut(|p| unsafe { (*p).assume_init_drop() });
        }
        self.head.store(tail, Ordering::Relaxed);
        self.released.store(tail, Ordering::Relaxed);
    }
}

/// Keeps a heap channel alive while a handle exists.
#[cfg(feature = "alloc")]
struct HeapChannel<T> {
    shared: Shared,
    slots: alloc::boxed::Box<[Slot<T>]>,
}

#[cfg(feature = "alloc")]
impl<T> Drop for HeapChannel<T> {
    fn drop(&mut self) {
        self.shared.drop_items(&self.slots);
    }
}

/// A channel of `N` slots that needs no allocator: split it into its two handles.
///
/// The handles borrow it, so it can live on the stack, or in a `static` reached
/// through a `&'static mut` (e.g. from `static_cell`). Items left when the handles
/// are gone stay, and are delivered after the next [`split`](Self::split) or
/// dropped with the channel.
///
/// # Examples
///
/// ```
/// use membound::ring::spsc::StaticChannel;
///
/// let mut channel = StaticChannel::<u32, 4>::new();
/// let (mut tx, mut rx) = channel.split();
/// tx.push(1)?;
/// assert_eq!(rx.pop(), Ok(1));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct StaticChannel<T, const N: usize> {
    shared: Shared,
    slots: [Slot<T>; N],
}

#[cfg(not(loom))]
impl<T, const N: usize> StaticChannel<T, N> {
    /// An empty channel of `N` slots that rejects pushes when full. `N == 0` does not
    /// compile.
    pub const fn new() -> Self {
        Self::build(false)
    }

    /// An empty channel of `N` slots with the given policy.
    ///
    /// # Errors
    ///
    /// [`ConfigError::UnsupportedPolicy`] for a policy other than `Reject` and
    /// `DropOldest`.
    ///
    /// # Examples
    ///
    /// ```
    /// use membound::ring::spsc::StaticChannel;
    /// use membound::{ConfigError, OverflowPolicy};
    ///
    /// let mut channel = StaticChannel::<u8, 2>::with_policy(OverflowPolicy::DropOldest)?;
    /// let (mut tx, _rx) = channel.split();
    /// for i in 0..3 {
    ///     tx.push(i)?; // evicts the oldest
    /// }
    /// assert!(matches!(
    ///     StaticChannel::<u8, 2>::with_policy(OverflowPolicy::DropNewest),
    ///     Err(ConfigError::UnsupportedPolicy { .. })
    /// ));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub const fn with_policy(policy: OverflowPolicy) -> Result<Self, ConfigError> {
        match drops_oldest(policy) {
            Ok(drop_oldest) => Ok(Self::build(drop_oldest)),
            Err(e) => Err(e),
        }
    }

    const fn build(drop_oldest: bool) -> Self {
        const {
            assert!(N > 0, "a StaticChannel needs a capacity of at least 1");
            assert!(
                N <= MAX_CAPACITY,
                "StaticChannel capacity above MAX_CAPACITY"
            );
        }
        Self {
            shared: Shared::new(N, drop_oldest),
            slots: [const { Slot::new() }; N],
        }
    }
}

#[cfg(not(loom))]
impl<T, const N: usize> Default for StaticChannel<T, N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T, const N: usize> StaticChannel<T, N> {
    /// The producer and consumer handles, borrowing the channel.
    pub fn split(&mut self) -> (Producer<'_, T>, Consumer<'_, T>) {
        crate::sync::asymmetric_barrier_init();
        // No handle exists: every position below `head` is read out or evicted.
        let head = self.shared.head.load(Ordering::Relaxed);
        self.shared.released.store(head, Ordering::Relaxed);
        self.shared
            .control
            .producer_gone
            .store(false, Ordering::Relaxed);
        self.shared
            .control
            .consumer_gone
            .store(false, Ordering::Relaxed);
        let shared = NonNull::from(&self.shared);
        let slots = NonNull::from(&self.slots[..]).cast::<Slot<T>>();
        // SAFETY: `shared` and `slots` stay borrowed (`'_`) while the handles live;
        // there is exactly one producer and one consumer.
        unsafe { handles(shared, slots, Owner::Borrowed) }
    }
}

impl<T, const N: usize> Drop for StaticChannel<T, N> {
    fn drop(&mut self) {
        self.shared.drop_items(&self.slots);
    }
}

impl<T, const N: usize> fmt::Debug for StaticChannel<T, N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StaticChannel")
            .field("capacity", &N)
            .finish_non_exhaustive()
    }
}

/// A heap channel of `capacity` slots that rejects pushes when full. Allocates once,
/// here.
///
/// # Errors
///
/// [`ConfigError::ZeroCapacity`] for 0, [`ConfigError::CapacityTooLarge`] above
/// [`MAX_CAPACITY`].
///
/// # Examples
///
/// ```
/// use membound::policy::Wait;
/// use membound::ring::spsc;
///
/// let (mut tx, mut rx) = spsc::channel(3)?; // any capacity, no wasted slot
/// std::thread::spawn(move || {
///     for i in 0..100u64 {
///         tx.push_wait(i, Wait::Forever).unwrap();
///     }
/// });
/// let sum: u64 = (0..100).map(|_| rx.pop_wait(Wait::Forever).unwrap()).sum();
/// assert_eq!(sum, 4950);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[cfg(feature = "alloc")]
pub fn channel<T>(
    capacity: usize,
) -> Result<(Producer<'static, T>, Consumer<'static, T>), ConfigError> {
    channel_with_policy(capacity, OverflowPolicy::Reject)
}

/// A heap channel of `capacity` slots with the given policy: `Reject` or
/// `DropOldest`.
///
/// # Errors
///
/// As [`channel`], and [`ConfigError::UnsupportedPolicy`] for any other policy.
///
/// # Examples
///
/// ```
/// use membound::ring::spsc::{self, PopError};
/// use membound::{ConfigError, OverflowPolicy};
///
/// let (mut tx, mut rx) = spsc::channel_with_policy(2, OverflowPolicy::DropOldest)?;
/// for i in 0..5 {
///     tx.push(i)?; // never full: evicts the oldest
/// }
/// assert_eq!(rx.pop(), Err(PopError::Lagged(3)));
/// assert_eq!(rx.pop(), Ok(3));
/// assert_eq!(rx.pop(), Ok(4));
///
/// assert!(matches!(
///     spsc::channel_with_policy::<u8>(2, OverflowPolicy::Block),
///     Err(ConfigError::UnsupportedPolicy { .. })
/// ));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[cfg(feature = "alloc")]
pub fn channel_with_policy<T>(
    capacity: usize,
    policy: OverflowPolicy,
) -> Result<(Producer<'static, T>, Consumer<'static, T>), ConfigError> {
    if capacity == 0 {
        return Err(ConfigError::ZeroCapacity);
    }
    if capacity > MAX_CAPACITY {
        return Err(ConfigError::CapacityTooLarge {
            requested: capacity,
            max: MAX_CAPACITY,
        });
    }
    let drop_oldest = drops_oldest(policy)?;
    crate::sync::asymmetric_barrier_init();
    let channel = alloc::sync::Arc::new(HeapChannel {
        shared: Shared::new(capacity, drop_oldest),
        slots: (0..capacity).map(|_| Slot::new()).collect(),
    });
    let shared = NonNull::from(&channel.shared);
    let slots = NonNull::from(&channel.slots[..]).cast::<Slot<T>>();
    // SAFETY: each handle keeps the `Arc` alive, so `shared` and `slots` outlive
    // them; there is exactly one producer and one consumer.
    Ok(unsafe { handles(shared, slots, Owner::Heap(channel)) })
}

/// Who keeps the channel's memory alive.
enum Owner<T> {
    /// A `StaticChannel` borrowed for the handles' lifetime.
    Borrowed,
    #[cfg(feature = "alloc")]
    Heap(alloc::sync::Arc<HeapChannel<T>>),
    #[cfg(not(feature = "alloc"))]
    #[allow(dead_code)]
    Never(PhantomData<T>, core::convert::Infallible),
}

impl<T> Owner<T> {
    fn duplicate(&self) -> Self {
        match self {
            Self::Borrowed => Self::Borrowed,
            #[cfg(feature = "alloc")]
            Self::Heap(arc) => Self::Heap(arc.clone()),
            #[cfg(not(feature = "alloc"))]
            Self::Never(_, never) => match *never {},
        }
    }
}

/// Builds the two handles.
///
/// # Safety
///
/// `shared` and `slots[..shared.cap]` must stay valid while the handles (bounded by
/// `'a`, and by `owner`) live, and no other handle may exist for them.
unsafe fn handles<'a, T>(
    shared: NonNull<Shared>,
    slots: NonNull<Slot<T>>,
    owner: Owner<T>,
) -> (Producer<'a, T>, Consumer<'a, T>) {
    // SAFETY: valid by the contract.
    let s = unsafe { shared.as_ref() };
    let tail = s.tail.load(Ordering::Relaxed);
    let head = s.head.load(Ordering::Relaxed);
    let end = |owner| End {
        shared,
        slots,
        cap: s.cap,
        cheap_barrier: crate::sync::asymmetric_barrier_is_cheap(),
        _owner: owner,
    };
    let producer = Producer {
        end: end(owner.duplicate()),
        tail,
        index: tail % s.cap,
        free: s.free_index().load(Ordering::Relaxed),
        evicted_upto: 0,
        _borrow: PhantomData,
    };
    let consumer = Consumer {
        end: end(owner),
        head,
        index: head % s.cap,
        filled: tail,
        claims: s.drop_oldest,
        claimed: 0,
        _borrow: PhantomData,
    };
    (producer, consumer)
}

/// What both handles hold: the shared state and the slots, valid while the handle
/// lives (`handles` contract), and what they copy from it.
struct End<T> {
    shared: NonNull<Shared>,
    slots: NonNull<Slot<T>>,
    /// `shared.cap`, copied so the hot paths need not follow the pointer.
    cap: u64,
    /// `sync::asymmetric_barrier_is_cheap()` when the handle was made.
    cheap_barrier: bool,
    /// Keeps a heap channel alive.
    _owner: Owner<T>,
}

impl<T> End<T> {
    #[inline(always)]
    fn shared(&self) -> &Shared {
        // SAFETY: valid while the handle lives (`handles` contract).
        unsafe { self.shared.as_ref() }
    }

    #[inline(always)]
    fn slot(&self, index: u64) -> &Slot<T> {
        debug_assert!(index < self.shared().cap);
        // SAFETY: `index < cap`, and the buffer holds `cap` slots (`handles`).
        unsafe { &*self.slots.as_ptr().add(index as usize) }
    }
}

/// The writing half of an SPSC channel.
pub struct Producer<'a, T> {
    end: End<T>,
    /// Next position to write; equals `shared.tail` between calls.
    tail: u64,
    /// `tail`'s slot index, kept beside it so no division is needed.
    index: u64,
    /// Positions below this are free for reuse: a past value of the free index
    /// (`head`, or `released` under `DropOldest`), or past the last position this
    /// producer evicted, whichever is further.
    free: u64,
    /// `DropOldest`: positions below this were evicted by this producer.
    evicted_upto: u64,
    _borrow: PhantomData<&'a ()>,
}

/// The reading half of an SPSC channel.
pub struct Consumer<'a, T> {
    end: End<T>,
    /// Next position to read; `shared.head` unless the producer evicted past it.
    head: u64,
    /// `head`'s slot index.
    index: u64,
    /// A past value of `shared.tail`: positions below it hold written items.
    filled: u64,
    /// Whether the policy is `DropOldest` (positions are claimed by CAS).
    claims: bool,
    /// `DropOldest`: positions from `head` already claimed and not yet read (a
    /// peek, or what a chunk or batch left unread); the producer cannot evict
    /// them. Always 0 under `Reject`.
    claimed: u64,
    _borrow: PhantomData<&'a ()>,
}

// SAFETY: a handle is the only one of its side; items cross threads (`T: Send`), and
// the shared state is atomics and slots handed over by the index protocol.
unsafe impl<T: Send> Send for Producer<'_, T> {}
// SAFETY: as above.
unsafe impl<T: Send> Send for Consumer<'_, T> {}

impl<'a, T> Producer<'a, T> {
    /// Number of slots.
    pub fn capacity(&self) -> usize {
        self.end.cap as usize
    }

    /// Free slots now (at least this many pushes succeed).
    pub fn slots(&self) -> usize {
        let free = self
            .end
            .shared()
            .free_index()
            .load(Ordering::Acquire)
            .max(self.evicted_upto);
        (self.end.cap - (self.tail - free)) as usize
    }

    /// Whether no slot is free now (a [`try_push`](Self::try_push) would hand its
    /// item back; under `DropOldest` a [`push`](Self::push) would evict).
    pub fn is_full(&self) -> bool {
        self.slots() == 0
    }

    /// Free slots now, refreshing the cached free index.
    #[inline(always)]
    fn room(&mut self) -> usize {
        self.refresh_free();
        (self.end.cap - (self.tail - self.free)) as usize
    }

    /// Reloads the free index. Acquire: the consumer's reads of the freed slots
    /// happen before our writes to them.
    #[inline(always)]
    fn refresh_free(&mut self) {
        let released = self.end.shared().free_index().load(Ordering::Acquire);
        self.free = released.max(self.evicted_upto);
    }

    /// Whether the consumer has been dropped.
    pub fn is_abandoned(&self) -> bool {
        self.end
            .shared()
            .control
            .consumer_gone
            .load(Ordering::Acquire)
    }

    /// Items evicted by this producer so far (`DropOldest`).
    pub fn dropped(&self) -> u64 {
        self.end.shared().control.dropped.load(Ordering::Relaxed)
    }

    /// Whether `n` more positions are free, refreshing the cached free index only
    /// when the cached one says no. Wait-free.
    #[inline(always)]
    fn has_room(&mut self, n: u64) -> bool {
        if self.tail + n - self.free <= self.end.cap {
            return true;
        }
        self.refresh_free();
        self.tail + n - self.free <= self.end.cap
    }

    /// Writes `item` at `tail` (known free) and advances the local index; the
    /// caller publishes.
    #[inline(always)]
    fn write(&mut self, item: T) {
        let slot = self.end.slot(self.index);
        // SAFETY: the position is free (`has_room` or an eviction), and only this
        // producer writes slots.
        slot.0
            .with_mut(|p| unsafe { p.write(MaybeUninit::new(item)) });
        self.tail += 1;
        self.index += 1;
        if self.index == self.end.cap {
            self.index = 0;
        }
    }

    /// Publishes the local `tail` and wakes a waiting consumer.
    #[inline(always)]
    fn publish(&self) {
        // Release: the written items are visible to the consumer that loads it.
        self.end.shared().tail.store(self.tail, Ordering::Release);
        crate::sync::asymmetric_barrier_light(self.end.cheap_barrier);
        self.end.shared().control.consumers.notify_one();
    }

    /// Stores `item` if there is room, otherwise hands it back. Never evicts.
    /// Wait-free.
    ///
    /// # Errors
    ///
    /// [`PushError::Full`] with the item when the ring is full (even if the
    /// consumer is gone: check [`is_abandoned`](Self::is_abandoned)).
    #[inline]
    pub fn try_push(&mut self, item: T) -> Result<(), PushError<T>> {
        if !self.has_room(1) {
            return Err(self.full(item));
        }
        self.write(item);
        self.publish();
        Ok(())
    }

    /// `Full`, or `Closed` if the consumer is gone.
    #[cold]
    fn full(&self, item: T) -> PushError<T> {
        if self.is_abandoned() {
            PushError::Closed(item)
        } else {
            PushError::Full(item)
        }
    }

    /// Stores `item` under the channel's policy: `Reject` hands it back when full,
    /// `DropOldest` evicts the oldest stored item (counted in
    /// [`dropped`](Self::dropped); the consumer sees [`PopError::Lagged`]).
    /// Wait-free under both: it never waits for the consumer.
    ///
    /// # Errors
    ///
    /// [`PushError::Full`] with the item when the ring is full and nothing can be
    /// evicted ([`PushError::Closed`] if the consumer is gone): always under
    /// `Reject`, as [`try_push`](Self::try_push); under `DropOldest` only while the
    /// consumer holds the oldest item claimed: in a [`ReadChunk`], in a
    /// [`PopBatch`] not yet taken past it, or in a [`Consumer::pop`] copying it out
    /// (the push gives such a pop a bounded number of spins to finish, so this is
    /// rare: mostly a consumer descheduled mid-pop). A claimed item is no longer
    /// the ring's to drop, and its slot is the one the new item needs, so the push
    /// hands the new item back instead of waiting for the consumer. It does not
    /// drop the new item instead: `DropOldest` keeps the newest items, and the
    /// consumer would never hear of that loss; handed back, the item can be pushed
    /// again once the consumer lets go.
    ///
    /// # Examples
    ///
    /// ```
    /// use membound::ring::spsc;
    /// use membound::ring::PushError;
    /// use membound::OverflowPolicy;
    ///
    /// let (mut tx, mut rx) = spsc::channel_with_policy(2, OverflowPolicy::DropOldest)?;
    /// tx.push(1)?;
    /// tx.push(2)?;
    /// tx.push(3)?; // evicts 1
    /// let chunk = rx.read_chunk(2); // claims 2 and 3
    /// assert_eq!(tx.push(4), Err(PushError::Full(4))); // nothing left to evict
    /// drop(chunk);
    /// tx.push(4)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[inline]
    pub fn push(&mut self, item: T) -> Result<(), PushError<T>> {
        match self.force_push(item) {
            Ok(evicted) => {
                drop(evicted);
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Stores `item`; under `DropOldest` a full ring evicts its oldest item, which
    /// is returned. Costs a push that finds room nothing extra; wait-free.
    ///
    /// # Errors
    ///
    /// As [`push`](Self::push): under `Reject` as [`try_push`](Self::try_push);
    /// under `DropOldest` [`PushError::Full`] only while the consumer holds the
    /// oldest item claimed.
    #[inline]
    pub fn force_push(&mut self, item: T) -> Result<Option<T>, PushError<T>> {
        if self.has_room(1) {
            self.write(item);
            self.publish();
            return Ok(None);
        }
        if !self.end.shared().drop_oldest {
            return Err(self.full(item));
        }
        match self.evict_oldest() {
            Ok(evicted) => {
                self.write(item);
                self.publish();
                Ok(evicted)
            }
            Err(()) => Err(self.full(item)),
        }
    }

    /// Frees the slot of `tail` on a full `DropOldest` ring in a bounded number of
    /// steps: evicts the item of `tail - cap` (`Ok(Some)`) unless the consumer has
    /// claimed it. A claimed item's slot is free only once the consumer releases
    /// it (`Ok(None)` if it already has); until then it is the consumer's, however
    /// long it holds it (a chunk may be held across this very push), so `Err`.
    #[cold]
    fn evict_oldest(&mut self) -> Result<Option<T>, ()> {
        let oldest = self.tail - self.end.cap;
        // AcqRel: our claim orders against the consumer's claims of `head`.
        let won = self
            .end
            .shared()
            .head
            .compare_exchange(oldest, oldest + 1, Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
        if won {
            self.evicted_upto = oldest + 1;
            self.free = self.free.max(self.evicted_upto);
            self.end
                .shared()
                .control
                .dropped
                .fetch_add(1, Ordering::Relaxed);
            // SAFETY: winning `head` at `oldest` makes this producer the owner of
            // that item, which it wrote itself; its slot is `tail`'s.
            let item = self
                .end
                .slot(self.index)
                .0
                .with(|p| unsafe { p.read().assume_init() });
            return Ok(Some(item));
        }
        // The consumer claimed `oldest`. A pop copies it out and releases it within
        // a few of its steps, so give it a bounded number of ours (a chunk or batch
        // may be held across this very push, on this very thread: never more).
        let mut backoff = Backoff::new();
        for _ in 0..MID_POP_SPINS {
            if self.has_room(1) {
                return Ok(None);
            }
            backoff.spin();
        }
        if self.has_room(1) {
            Ok(None)
        } else {
            Err(())
        }
    }
}

impl<'a, T> Consumer<'a, T> {
    /// Number of slots.
    pub fn capacity(&self) -> usize {
        self.end.cap as usize
    }

    /// Items stored now (at least this many pops succeed, less any the producer
    /// evicts under `DropOldest`).
    pub fn len(&self) -> usize {
        let shared = self.end.shared();
        let tail = shared.tail.load(Ordering::Acquire);
        if self.claims {
            // `shared.head` is at least `head + claimed`: what we claimed and have
            // not read, then what is not claimed yet.
            (tail
                - shared
                    .head
                    .load(Ordering::Acquire)
                    .max(self.head + self.claimed)
                + self.claimed) as usize
        } else {
            (tail - self.head) as usize
        }
    }

    /// Whether nothing is stored now.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the producer has been dropped (what it pushed may still be here).
    pub fn is_abandoned(&self) -> bool {
        self.end
            .shared()
            .control
            .producer_gone
            .load(Ordering::Acquire)
    }

    /// Items written and not yet read, refreshing the cached `tail` only when the
    /// cached one shows fewer than `n`. Wait-free.
    #[inline(always)]
    fn available(&mut self, n: u64) -> u64 {
        if self.filled - self.head < n {
            // Acquire: the producer's writes of those items happen before our reads.
            self.filled = self.end.shared().tail.load(Ordering::Acquire);
        }
        self.filled - self.head
    }

    /// Why there is nothing to pop: `Closed` once the producer is gone and its last
    /// items are read, otherwise `Empty`.
    #[cold]
    fn nothing(&mut self) -> PopError {
        if self.is_abandoned() && self.available(1) == 0 {
            PopError::Closed
        } else {
            PopError::Empty
        }
    }

    /// Moves the local `head` (and its index) forward by `n`.
    #[inline(always)]
    fn advance(&mut self, n: u64) {
        let cap = self.end.cap;
        self.head += n;
        self.claimed = self.claimed.saturating_sub(n);
        if n < cap {
            self.index += n;
            if self.index >= cap {
                self.index -= cap;
            }
        } else {
            // Only a lag can skip a lap or more.
            self.index = (self.index + n % cap) % cap;
        }
    }

    /// Claims `n` written positions from `head` (`DropOldest`: by CAS, because the
    /// producer may evict them); returns how many are claimed: `n`, or fewer when
    /// some were already claimed (a peek, an unread rest) and the producer evicted
    /// the ones after them. With none claimed, a lost race records how far the
    /// producer evicted and returns the lag.
    #[inline(always)]
    fn claim(&mut self, n: u64) -> Result<u64, u64> {
        if !self.claims || n <= self.claimed {
            return Ok(n);
        }
        let shared = self.end.shared();
        // AcqRel: orders against the producer's eviction claims.
        match shared.head.compare_exchange(
            self.head + self.claimed,
            self.head + n,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => {
                self.claimed = n;
                Ok(n)
            }
            // Ours still; the producer evicted what came after them.
            Err(_) if self.claimed > 0 => Ok(self.claimed),
            Err(actual) => {
                let lag = actual - self.head;
                self.advance(lag);
                self.filled = self.filled.max(actual);
                Err(lag)
            }
        }
    }

    /// Gives back the positions claimed and not read (`DropOldest`), so the
    /// producer may evict them again; if it has evicted past them meanwhile they
    /// stay claimed (they can no longer be given back in order) and are read next.
    fn unclaim(&mut self) {
        if self.claimed == 0 {
            return;
        }
        // AcqRel: what we wrote into claimed items (a chunk's `as_mut_slices`)
        // happens before a producer that evicts them reads them.
        if self
            .end
            .shared()
            .head
            .compare_exchange(
                self.head + self.claimed,
                self.head,
                Ordering::AcqRel,
                Ordering::Relaxed,
            )
            .is_ok()
        {
            self.claimed = 0;
        }
    }

    /// Publishes that every position below the local `head` has been read, and
    /// wakes a waiting producer.
    #[inline(always)]
    fn release(&self) {
        let shared = self.end.shared();
        let free = if self.claims {
            &shared.released
        } else {
            &shared.head
        };
        // Release: our reads of those slots happen before the producer reuses them.
        free.store(self.head, Ordering::Release);
        crate::sync::asymmetric_barrier_light(self.end.cheap_barrier);
        self.end.shared().control.producers.notify_one();
    }

    /// Takes the oldest item.
    ///
    /// # Errors
    ///
    /// [`PopError::Empty`] when nothing is stored, [`PopError::Closed`] once
    /// the producer is gone and everything it pushed is taken, and (`DropOldest`)
    /// [`PopError::Lagged`] once after the producer evicted items: the next pop
    /// returns the item that follows them.
    ///
    /// # Examples
    ///
    /// ```
    /// use membound::ring::spsc::{self, PopError};
    ///
    /// let (mut tx, mut rx) = spsc::channel(2)?;
    /// assert_eq!(rx.pop(), Err(PopError::Empty));
    /// tx.push('a')?;
    /// drop(tx);
    /// assert_eq!(rx.pop(), Ok('a'));
    /// assert_eq!(rx.pop(), Err(PopError::Closed));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[inline]
    pub fn pop(&mut self) -> Result<T, PopError> {
        if self.available(1) == 0 {
            return Err(self.nothing());
        }
        if let Err(lag) = self.claim(1) {
            return Err(PopError::Lagged(lag));
        }
        // SAFETY: position `head` is written (below `filled`, read with Acquire)
        // and ours alone (the producer writes it again only after `release`, and
        // under DropOldest our claim, or an earlier one, won it).
        let item = self
            .end
            .slot(self.index)
            .0
            .with(|p| unsafe { p.read().assume_init() });
        self.advance(1);
        self.release();
        Ok(item)
    }

    /// The oldest item, left in place: the next [`pop`](Self::pop) returns it.
    ///
    /// Takes `&mut self` where rtrb's takes `&self`: under `DropOldest` the item
    /// must be claimed so that the producer cannot evict (and overwrite) it while
    /// it is borrowed; it stays claimed until it is popped, so a full producer
    /// hands its pushes back meanwhile, as with a held [`ReadChunk`].
    ///
    /// # Errors
    ///
    /// As [`pop`](Self::pop): [`PopError::Empty`], [`PopError::Closed`], or
    /// [`PopError::Lagged`] once after an eviction (peek again for the item).
    ///
    /// # Examples
    ///
    /// ```
    /// use membound::ring::spsc::{self, PopError};
    ///
    /// let (mut tx, mut rx) = spsc::channel(2)?;
    /// assert_eq!(rx.peek(), Err(PopError::Empty));
    /// tx.push(7)?;
    /// assert_eq!(rx.peek(), Ok(&7));
    /// assert_eq!(rx.len(), 1);
    /// assert_eq!(rx.pop(), Ok(7));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[cfg(not(loom))]
    pub fn peek(&mut self) -> Result<&T, PopError> {
        if self.available(1) == 0 {
            return Err(self.nothing());
        }
        if let Err(lag) = self.claim(1) {
            return Err(PopError::Lagged(lag));
        }
        let slot = self.end.slot(self.index);
        // SAFETY: as in `pop`, position `head` is written and ours; it is neither
        // moved out nor overwritten while the returned borrow of `self` lives (a
        // pop needs `&mut self`, and the producer reuses it only after a release).
        Ok(slot.0.with(|p| unsafe { (*p).assume_init_ref() }))
    }

    /// Takes the oldest item if there is one, skipping over lag reports.
    #[inline]
    pub fn try_pop(&mut self) -> Option<T> {
        loop {
            match self.pop() {
                Ok(item) => return Some(item),
                Err(PopError::Lagged(_)) => continue,
                Err(_) => return None,
            }
        }
    }
}

impl<T> Drop for Producer<'_, T> {
    fn drop(&mut self) {
        let control = &self.end.shared().control;
        // Release: our last pushes are visible to a consumer that sees the flag.
        control.producer_gone.store(true, Ordering::Release);
        crate::sync::asymmetric_barrier_light(self.end.cheap_barrier);
        control.consumers.notify_all();
    }
}

impl<T> Drop for Consumer<'_, T> {
    fn drop(&mut self) {
        // Items claimed and not read are no longer the channel's to drop (it drops
        // `head..tail` of the shared index): give them back, or drop them here.
        self.unclaim();
        if self.claimed > 0 {
            while self.claimed > 0 {
                // SAFETY: a claimed position holds an initialised item that is ours.
                self.end
                    .slot(self.index)
                    .0
                    .with_mut(|p| unsafe { (*p).assume_init_drop() });
                self.advance(1);
            }
            self.release();
        }
        let control = &self.end.shared().control;
        control.consumer_gone.store(true, Ordering::Release);
        crate::sync::asymmetric_barrier_light(self.end.cheap_barrier);
        control.producers.notify_all();
    }
}

impl<T> fmt::Debug for Producer<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Producer")
            .field("capacity", &self.capacity())
            .field("abandoned", &self.is_abandoned())
            .finish_non_exhaustive()
    }
}

impl<T> fmt::Debug for Consumer<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Consumer")
            .field("capacity", &self.capacity())
            .field("abandoned", &self.is_abandoned())
            .finish_non_exhaustive()
    }
}
