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
//! A channel built with [`SpscPolicy::DropOldest`] lets [`Producer::push`] evict the
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
//! [`SpscPopError::Lagged`]`(n)` (tokio broadcast's idea), then the items that
//! follow.
//!
//! # Waiting
//!
//! Both sides can wait, blocking (std), timed (std), async, or with a
//! [`WaitStrategy`], through the ring's eventcount (see the
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
use core::future::Future;
use core::marker::PhantomData;
use core::mem::MaybeUninit;
use core::pin::Pin;
use core::ptr::NonNull;
use core::task::{Context, Poll};

use crossbeam_utils::CachePadded;

#[cfg(feature = "std")]
use super::wait::block_on;
use super::wait::{cancel_waiter, poll_waiting, spin_on, WaitQueue, WaitStrategy, Waiter};
#[cfg(feature = "alloc")]
use super::ConfigError;
#[cfg(feature = "std")]
use super::PushTimeoutError;
use super::{Closed, PushError, MAX_CAPACITY};
use crate::sync::{AtomicBool, AtomicU64, Backoff, Ordering, UnsafeCell};

/// How many backoff spins a `DropOldest` push gives a claimed oldest item to be
/// released before handing its own item back: enough for a pop that is copying the
/// item out (a few instructions), bounded so that a held chunk costs a push about
/// two hundred spin hints at most.
const MID_POP_SPINS: u32 = 8;

/// What [`Producer::push`] does when the ring is full.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub enum SpscPolicy {
    /// Hand the item back (`PushError::Full`). Pops are plain stores.
    #[default]
    Reject,
    /// Evict the oldest item; the consumer sees [`SpscPopError::Lagged`]. Pops claim
    /// positions with a CAS. An item the consumer has claimed (a held chunk or
    /// batch) is not evictable: while the oldest is claimed, a push returns
    /// [`PushError::Full`] rather than wait (see [`Producer::push`]).
    DropOldest,
}

/// Why a [`Consumer::pop`] returned no item.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SpscPopError {
    /// Nothing is stored right now.
    Empty,
    /// The producer is gone and everything it pushed has been taken.
    Closed,
    /// The producer evicted this many items since the last pop (under
    /// [`SpscPolicy::DropOldest`]); they were older than the next item, which the
    /// next pop returns.
    Lagged(u64),
    /// A timed pop waited until its deadline and nothing arrived.
    Timeout,
}

impl fmt::Display for SpscPopError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("channel is empty"),
            Self::Closed => f.write_str("producer is gone and the channel is drained"),
            Self::Lagged(n) => write!(f, "{n} items were dropped before the next one"),
            Self::Timeout => f.write_str("timed out waiting for an item"),
        }
    }
}

impl core::error::Error for SpscPopError {}

/// One slot: written by the producer, read by the consumer, in turn. Transparent
/// (outside loom), so a run of slots is a run of `MaybeUninit<T>` for chunks.
#[cfg_attr(not(loom), repr(transparent))]
pub struct SpscSlot<T>(UnsafeCell<MaybeUninit<T>>);

impl<T> SpscSlot<T> {
    crate::sync::const_unless_loom! {
        fn new() -> Self {
            Self(UnsafeCell::new(MaybeUninit::uninit()))
        }
    }
}

impl<T> fmt::Debug for SpscSlot<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SpscSlot")
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
    /// Read-only.
    policy: SpscPolicy,
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
        fn new(cap: usize, policy: SpscPolicy) -> Self {
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
                policy,
            }
        }
    }

    /// The index the producer waits on for free slots.
    #[inline(always)]
    fn free_index(&self) -> &AtomicU64 {
        match self.policy {
            SpscPolicy::DropOldest => &self.released,
            _ => &self.head,
        }
    }

    /// Drops the items still stored. Only with both handles gone (`&mut`).
    fn drop_items<T>(&mut self, slots: &[SpscSlot<T>]) {
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
    slots: alloc::boxed::Box<[SpscSlot<T>]>,
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
    slots: [SpscSlot<T>; N],
}

#[cfg(not(loom))]
impl<T, const N: usize> StaticChannel<T, N> {
    /// An empty channel of `N` slots that rejects pushes when full. `N == 0` does not
    /// compile.
    pub const fn new() -> Self {
        Self::with_policy(SpscPolicy::Reject)
    }

    /// An empty channel of `N` slots with the given policy.
    pub const fn with_policy(policy: SpscPolicy) -> Self {
        const {
            assert!(N > 0, "a StaticChannel needs a capacity of at least 1");
            assert!(
                N <= MAX_CAPACITY,
                "StaticChannel capacity above MAX_CAPACITY"
            );
        }
        Self {
            shared: Shared::new(N, policy),
            slots: [const { SpscSlot::new() }; N],
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
        let slots = NonNull::from(&self.slots[..]).cast::<SpscSlot<T>>();
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
/// use membound::ring::spsc;
///
/// let (mut tx, mut rx) = spsc::channel(3)?; // any capacity, no wasted slot
/// std::thread::spawn(move || {
///     for i in 0..100u64 {
///         tx.push_wait(i).unwrap();
///     }
/// });
/// let sum: u64 = (0..100).map(|_| rx.pop_wait().unwrap()).sum();
/// assert_eq!(sum, 4950);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[cfg(feature = "alloc")]
pub fn channel<T>(
    capacity: usize,
) -> Result<(Producer<'static, T>, Consumer<'static, T>), ConfigError> {
    channel_with_policy(capacity, SpscPolicy::Reject)
}

/// A heap channel of `capacity` slots with the given policy.
///
/// # Errors
///
/// As [`channel`].
///
/// # Examples
///
/// ```
/// use membound::ring::spsc::{self, SpscPolicy, SpscPopError};
///
/// let (mut tx, mut rx) = spsc::channel_with_policy(2, SpscPolicy::DropOldest)?;
/// for i in 0..5 {
///     tx.push(i)?; // never full: evicts the oldest
/// }
/// assert_eq!(rx.pop(), Err(SpscPopError::Lagged(3)));
/// assert_eq!(rx.pop(), Ok(3));
/// assert_eq!(rx.pop(), Ok(4));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[cfg(feature = "alloc")]
pub fn channel_with_policy<T>(
    capacity: usize,
    policy: SpscPolicy,
) -> Result<(Producer<'static, T>, Consumer<'static, T>), ConfigError> {
    if capacity == 0 {
        return Err(ConfigError::ZeroCapacity);
    }
    if capacity > MAX_CAPACITY {
        return Err(ConfigError::CapacityTooLarge {
            requested: capacity,
        });
    }
    crate::sync::asymmetric_barrier_init();
    let channel = alloc::sync::Arc::new(HeapChannel {
        shared: Shared::new(capacity, policy),
        slots: (0..capacity).map(|_| SpscSlot::new()).collect(),
    });
    let shared = NonNull::from(&channel.shared);
    let slots = NonNull::from(&channel.slots[..]).cast::<SpscSlot<T>>();
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
    slots: NonNull<SpscSlot<T>>,
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
        claims: s.policy == SpscPolicy::DropOldest,
        _borrow: PhantomData,
    };
    (producer, consumer)
}

/// What both handles hold: the shared state and the slots, valid while the handle
/// lives (`handles` contract), and what they copy from it.
struct End<T> {
    shared: NonNull<Shared>,
    slots: NonNull<SpscSlot<T>>,
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
    fn slot(&self, index: u64) -> &SpscSlot<T> {
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
    pub fn slots(&mut self) -> usize {
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
    /// [`dropped`](Self::dropped); the consumer sees [`SpscPopError::Lagged`]).
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
    /// use membound::ring::spsc::{self, SpscPolicy};
    /// use membound::ring::PushError;
    ///
    /// let (mut tx, mut rx) = spsc::channel_with_policy(2, SpscPolicy::DropOldest)?;
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
        match self.end.shared().policy {
            SpscPolicy::DropOldest => match self.evict_oldest() {
                Ok(evicted) => {
                    self.write(item);
                    self.publish();
                    Ok(evicted)
                }
                Err(()) => Err(self.full(item)),
            },
            _ => Err(self.full(item)),
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

    /// Pushes items from `iter` while there is room, publishing once; returns how
    /// many. Items that did not fit stay in the iterator (it is not advanced past
    /// them). Never evicts.
    ///
    /// # Examples
    ///
    /// ```
    /// use membound::ring::spsc;
    ///
    /// let (mut tx, mut rx) = spsc::channel(4)?;
    /// let mut items = 0..10;
    /// assert_eq!(tx.push_iter(&mut items), 4);
    /// assert_eq!(items.next(), Some(4));
    /// let mut out = [0; 8];
    /// assert_eq!(rx.pop_slice(&mut out), 4);
    /// assert_eq!(out[..4], [0, 1, 2, 3]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn push_iter<I: Iterator<Item = T>>(&mut self, iter: &mut I) -> usize {
        let room = self.slots();
        let mut pushed = 0;
        while pushed < room {
            let Some(item) = iter.next() else { break };
            self.write(item);
            pushed += 1;
        }
        if pushed > 0 {
            self.publish();
        }
        pushed
    }

    /// Copies as many items of `items` as fit, publishing once; returns how many.
    #[cfg(not(loom))]
    pub fn push_slice(&mut self, items: &[T]) -> usize
    where
        T: Copy,
    {
        let mut chunk = self.write_chunk_uninit(items.len());
        let n = chunk.len();
        let (first, second) = chunk.as_mut_slices();
        let split = first.len();
        for (dst, src) in first.iter_mut().zip(items) {
            dst.write(*src);
        }
        for (dst, src) in second.iter_mut().zip(&items[split..n]) {
            dst.write(*src);
        }
        // SAFETY: the first `n` slots of the chunk were just initialised.
        unsafe { chunk.commit(n) };
        n
    }

    /// Reserves up to `n` free slots for zero-copy writing (fewer if fewer are
    /// free); the slots are published by [`WriteChunkUninit::commit`].
    #[cfg(not(loom))]
    pub fn write_chunk_uninit(&mut self, n: usize) -> WriteChunkUninit<'_, 'a, T> {
        let n = n.min(self.slots());
        WriteChunkUninit {
            producer: self,
            len: n,
        }
    }
}

/// Free slots of a [`Producer`], reserved for writing in place. Not available
/// under loom (its cells are not plain memory).
#[cfg(not(loom))]
pub struct WriteChunkUninit<'p, 'a, T> {
    producer: &'p mut Producer<'a, T>,
    len: usize,
}

#[cfg(not(loom))]
impl<T> WriteChunkUninit<'_, '_, T> {
    /// Number of reserved slots.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no slot could be reserved.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The reserved slots, in order, as two slices (the second is non-empty when
    /// the reservation wraps around the end of the buffer).
    pub fn as_mut_slices(&mut self) -> (&mut [MaybeUninit<T>], &mut [MaybeUninit<T>]) {
        let p = &*self.producer;
        let cap = p.end.shared().cap as usize;
        let start = p.index as usize;
        let first = self.len.min(cap - start);
        let base = p.end.slots.as_ptr().cast::<MaybeUninit<T>>();
        // SAFETY: `SpscSlot<T>` is a transparent wrapper of an `UnsafeCell` of
        // `MaybeUninit<T>` (transparent outside loom), so the buffer is `cap`
        // consecutive `MaybeUninit<T>` with interior mutability. The reserved
        // positions are free (the consumer reads them only once published), only
        // this producer writes them, and the two ranges do not overlap.
        unsafe {
            (
                core::slice::from_raw_parts_mut(base.add(start), first),
                core::slice::from_raw_parts_mut(base, self.len - first),
            )
        }
    }

    /// Publishes the first `n` reserved slots, which the caller initialised.
    ///
    /// # Safety
    ///
    /// The first `n` slots (in the order of [`as_mut_slices`](Self::as_mut_slices))
    /// must be initialised; `n <= len()`.
    pub unsafe fn commit(self, n: usize) {
        assert!(n <= self.len, "commit beyond the reserved chunk");
        let p = self.producer;
        let cap = p.end.shared().cap;
        p.tail += n as u64;
        p.index += n as u64;
        if p.index >= cap {
            p.index -= cap;
        }
        if n > 0 {
            p.publish();
        }
    }

    /// Fills the reserved slots from `iter` and publishes them; returns how many
    /// were filled.
    pub fn fill_from_iter<I: IntoIterator<Item = T>>(mut self, iter: I) -> usize {
        let mut iter = iter.into_iter();
        let mut n = 0;
        let (first, second) = self.as_mut_slices();
        for dst in first.iter_mut().chain(second.iter_mut()) {
            match iter.next() {
                Some(item) => {
                    dst.write(item);
                    n += 1;
                }
                None => break,
            }
        }
        // SAFETY: exactly the first `n` slots were written above.
        unsafe { self.commit(n) };
        n
    }
}

impl<'a, T> Consumer<'a, T> {
    /// Number of slots.
    pub fn capacity(&self) -> usize {
        self.end.cap as usize
    }

    /// Items stored now (at least this many pops succeed, less any the producer
    /// evicts under `DropOldest`).
    pub fn len(&mut self) -> usize {
        self.filled = self.end.shared().tail.load(Ordering::Acquire);
        let head = self
            .head
            .max(self.end.shared().head.load(Ordering::Acquire));
        (self.filled - head) as usize
    }

    /// Whether nothing is stored now.
    pub fn is_empty(&mut self) -> bool {
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
    fn nothing(&mut self) -> SpscPopError {
        if self.is_abandoned() && self.available(1) == 0 {
            SpscPopError::Closed
        } else {
            SpscPopError::Empty
        }
    }

    /// Moves the local `head` (and its index) forward by `n`.
    #[inline(always)]
    fn advance(&mut self, n: u64) {
        let cap = self.end.cap;
        self.head += n;
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

    /// Claims `n` positions from `head` (`DropOldest`: by CAS, because the producer
    /// may evict them). On a lost race, records how far the producer evicted and
    /// returns the lag.
    #[inline(always)]
    fn claim(&mut self, n: u64) -> Result<(), u64> {
        if !self.claims {
            return Ok(());
        }
        let shared = self.end.shared();
        // AcqRel: orders against the producer's eviction claims.
        match shared.head.compare_exchange(
            self.head,
            self.head + n,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => Ok(()),
            Err(actual) => {
                let lag = actual - self.head;
                self.advance(lag);
                self.filled = self.filled.max(actual);
                Err(lag)
            }
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
    /// [`SpscPopError::Empty`] when nothing is stored, [`SpscPopError::Closed`] once
    /// the producer is gone and everything it pushed is taken, and (`DropOldest`)
    /// [`SpscPopError::Lagged`] once after the producer evicted items: the next pop
    /// returns the item that follows them.
    ///
    /// # Examples
    ///
    /// ```
    /// use membound::ring::spsc::{self, SpscPopError};
    ///
    /// let (mut tx, mut rx) = spsc::channel(2)?;
    /// assert_eq!(rx.pop(), Err(SpscPopError::Empty));
    /// tx.push('a')?;
    /// drop(tx);
    /// assert_eq!(rx.pop(), Ok('a'));
    /// assert_eq!(rx.pop(), Err(SpscPopError::Closed));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[inline]
    pub fn pop(&mut self) -> Result<T, SpscPopError> {
        if self.available(1) == 0 {
            return Err(self.nothing());
        }
        if let Err(lag) = self.claim(1) {
            return Err(SpscPopError::Lagged(lag));
        }
        // SAFETY: position `head` is written (below `filled`, read with Acquire)
        // and ours alone (the producer writes it again only after `release`, and
        // under DropOldest our claim won it).
        let item = self
            .end
            .slot(self.index)
            .0
            .with(|p| unsafe { p.read().assume_init() });
        self.advance(1);
        self.release();
        Ok(item)
    }

    /// Takes the oldest item if there is one, skipping over lag reports.
    #[inline]
    pub fn try_pop(&mut self) -> Option<T> {
        loop {
            match self.pop() {
                Ok(item) => return Some(item),
                Err(SpscPopError::Lagged(_)) => continue,
                Err(_) => return None,
            }
        }
    }

    /// Claims up to `max` available items in one step; returns how many (0 when
    /// empty) and the lag met on the way, if any.
    fn claim_batch(&mut self, max: usize) -> (u64, u64) {
        let mut lagged = 0;
        loop {
            let n = self.available(max as u64).min(max as u64);
            if n == 0 {
                return (0, lagged);
            }
            match self.claim(n) {
                Ok(()) => return (n, lagged),
                Err(lag) => lagged += lag,
            }
        }
    }

    /// Pops up to `max` items, claiming and releasing their positions once for the
    /// whole batch. The iterator yields the claimed items; those not taken from it
    /// are dropped when it is. Under `DropOldest`, items evicted before the batch
    /// are reported by [`PopBatch::lagged`].
    ///
    /// # Examples
    ///
    /// ```
    /// use membound::ring::spsc;
    ///
    /// let (mut tx, mut rx) = spsc::channel(8)?;
    /// tx.push_iter(&mut (0..6));
    /// let batch: Vec<i32> = rx.pop_batch(4).collect();
    /// assert_eq!(batch, [0, 1, 2, 3]);
    /// assert_eq!(rx.pop_batch(10).count(), 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn pop_batch(&mut self, max: usize) -> PopBatch<'_, 'a, T> {
        let (claimed, lagged) = self.claim_batch(max);
        PopBatch {
            consumer: self,
            remaining: claimed,
            lagged,
        }
    }

    /// Copies up to `out.len()` items into `out`, releasing once; returns how many.
    /// Lag met on the way is skipped (see [`pop`](Self::pop) to observe it).
    pub fn pop_slice(&mut self, out: &mut [T]) -> usize
    where
        T: Copy,
    {
        #[cfg(not(loom))]
        {
            let chunk = self.read_chunk(out.len());
            let (first, second) = chunk.as_slices();
            out[..first.len()].copy_from_slice(first);
            out[first.len()..chunk.len()].copy_from_slice(second);
            chunk.len()
        }
        #[cfg(loom)]
        {
            let mut batch = self.pop_batch(out.len());
            let mut n = 0;
            for (dst, item) in out.iter_mut().zip(&mut batch) {
                *dst = item;
                n += 1;
            }
            n
        }
    }

    /// The stored items, up to `n`, claimed for reading in place; released by
    /// [`ReadChunk::commit`] or when the chunk is dropped.
    #[cfg(not(loom))]
    pub fn read_chunk(&mut self, n: usize) -> ReadChunk<'_, 'a, T> {
        let (len, lagged) = self.claim_batch(n);
        ReadChunk {
            consumer: self,
            len: len as usize,
            lagged,
        }
    }
}

/// Items claimed by [`Consumer::pop_batch`], yielded in order.
pub struct PopBatch<'c, 'a, T> {
    consumer: &'c mut Consumer<'a, T>,
    remaining: u64,
    lagged: u64,
}

impl<T> PopBatch<'_, '_, T> {
    /// Items the producer evicted before this batch (`DropOldest`).
    pub fn lagged(&self) -> u64 {
        self.lagged
    }
}

impl<T> Iterator for PopBatch<'_, '_, T> {
    type Item = T;

    fn next(&mut self) -> Option<T> {
        if self.remaining == 0 {
            return None;
        }
        let c = &mut *self.consumer;
        // SAFETY: the batch claimed `remaining` written positions from `head`.
        let item = c
            .end
            .slot(c.index)
            .0
            .with(|p| unsafe { p.read().assume_init() });
        c.advance(1);
        self.remaining -= 1;
        // Under DropOldest a full producer may be waiting for exactly this slot:
        // release item by item rather than at the end of the batch.
        if c.claims {
            c.release();
        }
        Some(item)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining as usize, Some(self.remaining as usize))
    }
}

impl<T> Drop for PopBatch<'_, '_, T> {
    fn drop(&mut self) {
        // Items not taken are dropped: they were claimed.
        for item in self.by_ref() {
            drop(item);
        }
        self.consumer.release();
    }
}

impl<T> fmt::Debug for PopBatch<'_, '_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PopBatch")
            .field("remaining", &self.remaining)
            .finish_non_exhaustive()
    }
}

/// Stored items of a [`Consumer`], claimed for reading in place. Not available under
/// loom.
#[cfg(not(loom))]
pub struct ReadChunk<'c, 'a, T> {
    consumer: &'c mut Consumer<'a, T>,
    len: usize,
    lagged: u64,
}

#[cfg(not(loom))]
impl<T> ReadChunk<'_, '_, T> {
    /// Number of claimed items.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing was stored.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Items the producer evicted before this chunk (`DropOldest`).
    pub fn lagged(&self) -> u64 {
        self.lagged
    }

    /// The claimed items, in order, as two slices (the second is non-empty when the
    /// chunk wraps around the end of the buffer).
    pub fn as_slices(&self) -> (&[T], &[T]) {
        let c = &*self.consumer;
        let cap = c.end.shared().cap as usize;
        let start = c.index as usize;
        let first = self.len.min(cap - start);
        let base = c.end.slots.as_ptr().cast::<T>();
        // SAFETY: `SpscSlot<T>` is transparent over `MaybeUninit<T>` outside loom;
        // the claimed positions hold initialised items that no one else touches until
        // we release them.
        unsafe {
            (
                core::slice::from_raw_parts(base.add(start), first),
                core::slice::from_raw_parts(base, self.len - first),
            )
        }
    }

    /// Consumes the whole chunk: drops its items and releases their slots to the
    /// producer. Dropping the chunk does the same.
    pub fn commit(self) {}
}

#[cfg(not(loom))]
impl<T> Drop for ReadChunk<'_, '_, T> {
    fn drop(&mut self) {
        let c = &mut *self.consumer;
        if core::mem::needs_drop::<T>() {
            for _ in 0..self.len {
                // SAFETY: each claimed position holds an initialised item, dropped
                // once as `advance` moves past it.
                c.end
                    .slot(c.index)
                    .0
                    .with_mut(|p| unsafe { (*p).assume_init_drop() });
                c.advance(1);
            }
        } else {
            c.advance(self.len as u64);
        }
        if self.len > 0 {
            c.release();
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

/// A reference to the shared state that does not borrow the handle, so a wait can
/// hold the queue while its attempt borrows the handle mutably.
///
/// # Safety
///
/// The returned reference must not outlive the handle `ptr` came from.
unsafe fn detached<'s>(ptr: NonNull<Shared>) -> &'s Shared {
    // SAFETY: valid while the handle lives (`handles` contract); the caller bounds
    // the lifetime.
    unsafe { ptr.as_ref() }
}

impl<'a, T> Producer<'a, T> {
    /// One attempt for the waiting pushes: `Err(item)` means full.
    fn attempt_push(&mut self, item: T) -> Result<Result<(), Closed<T>>, T> {
        match self.try_push(item) {
            Ok(()) => Ok(Ok(())),
            Err(PushError::Full(item)) => Err(item),
            Err(PushError::Closed(item)) => Ok(Err(Closed(item))),
        }
    }

    /// Stores `item`, calling `strategy` between attempts while the ring is full
    /// (`no_std`). Never evicts.
    ///
    /// # Errors
    ///
    /// [`Closed`] with the item once the consumer is gone.
    pub fn push_wait_with(
        &mut self,
        item: T,
        strategy: &mut impl WaitStrategy,
    ) -> Result<(), Closed<T>> {
        spin_on(strategy, item, |item| self.attempt_push(item))
    }

    /// A future that stores `item`, waiting for room (never evicting); resolves to
    /// `Err(Closed(item))` once the consumer is gone. No allocation, no runtime
    /// dependency, cancel-safe.
    pub fn push_async(&mut self, item: T) -> SpscPushFuture<'_, 'a, T> {
        SpscPushFuture {
            producer: self,
            item: Some(item),
            waiter: Waiter::new(),
        }
    }
}

#[cfg(feature = "std")]
impl<T> Producer<'_, T> {
    /// Stores `item`, parking the thread while the ring is full (never evicting).
    ///
    /// # Errors
    ///
    /// [`Closed`] with the item once the consumer is gone.
    pub fn push_wait(&mut self, item: T) -> Result<(), Closed<T>> {
        self.push_until(item, None)
            .map_err(|e| Closed(e.into_inner()))
    }

    /// Stores `item`, waiting at most `timeout` for room.
    ///
    /// # Errors
    ///
    /// [`PushTimeoutError::Timeout`] or [`PushTimeoutError::Closed`], with the item.
    pub fn push_timeout(
        &mut self,
        item: T,
        timeout: core::time::Duration,
    ) -> Result<(), PushTimeoutError<T>> {
        self.push_until(item, std::time::Instant::now().checked_add(timeout))
    }

    /// Stores `item`, waiting for room until `deadline`.
    ///
    /// # Errors
    ///
    /// As [`push_timeout`](Self::push_timeout).
    pub fn push_deadline(
        &mut self,
        item: T,
        deadline: std::time::Instant,
    ) -> Result<(), PushTimeoutError<T>> {
        self.push_until(item, Some(deadline))
    }

    fn push_until(
        &mut self,
        item: T,
        deadline: Option<std::time::Instant>,
    ) -> Result<(), PushTimeoutError<T>> {
        let item = match self.attempt_push(item) {
            Ok(done) => return done.map_err(PushTimeoutError::from),
            Err(item) => item,
        };
        // SAFETY: `shared` is used only inside this call, while `self` lives.
        let shared = unsafe { detached(self.end.shared) };
        match block_on(&shared.control.producers, deadline, item, |item| {
            self.attempt_push(item)
        }) {
            Ok(done) => done.map_err(PushTimeoutError::from),
            Err(item) => Err(PushTimeoutError::Timeout(item)),
        }
    }
}

impl<'a, T> Consumer<'a, T> {
    /// One attempt for the waiting pops: `Err(())` means empty.
    fn attempt_pop(&mut self) -> Result<Result<T, SpscPopError>, ()> {
        match self.pop() {
            Err(SpscPopError::Empty) => Err(()),
            done => Ok(done),
        }
    }

    /// Takes the oldest item, calling `strategy` between attempts while the ring is
    /// empty (`no_std`).
    ///
    /// # Errors
    ///
    /// [`SpscPopError::Closed`] once the producer is gone and the ring drained;
    /// [`SpscPopError::Lagged`] as for [`pop`](Self::pop).
    pub fn pop_wait_with(&mut self, strategy: &mut impl WaitStrategy) -> Result<T, SpscPopError> {
        spin_on(strategy, (), |()| self.attempt_pop())
    }

    /// A future that takes the oldest item, waiting while the ring is empty;
    /// resolves as [`pop_wait_with`](Self::pop_wait_with) returns. No allocation,
    /// cancel-safe.
    pub fn pop_async(&mut self) -> SpscPopFuture<'_, 'a, T> {
        SpscPopFuture {
            consumer: self,
            waiter: Waiter::new(),
        }
    }
}

#[cfg(feature = "std")]
impl<T> Consumer<'_, T> {
    /// Takes the oldest item, parking the thread while the ring is empty.
    ///
    /// # Errors
    ///
    /// [`SpscPopError::Closed`] once the producer is gone and the ring drained;
    /// [`SpscPopError::Lagged`] as for [`pop`](Self::pop).
    pub fn pop_wait(&mut self) -> Result<T, SpscPopError> {
        self.pop_until(None)
    }

    /// Takes the oldest item, waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// As [`pop_wait`](Self::pop_wait), and [`SpscPopError::Timeout`].
    pub fn pop_timeout(&mut self, timeout: core::time::Duration) -> Result<T, SpscPopError> {
        self.pop_until(std::time::Instant::now().checked_add(timeout))
    }

    /// Takes the oldest item, waiting until `deadline`.
    ///
    /// # Errors
    ///
    /// As [`pop_timeout`](Self::pop_timeout).
    pub fn pop_deadline(&mut self, deadline: std::time::Instant) -> Result<T, SpscPopError> {
        self.pop_until(Some(deadline))
    }

    fn pop_until(&mut self, deadline: Option<std::time::Instant>) -> Result<T, SpscPopError> {
        if let Ok(done) = self.attempt_pop() {
            return done;
        }
        // SAFETY: `shared` is used only inside this call, while `self` lives.
        let shared = unsafe { detached(self.end.shared) };
        block_on(&shared.control.consumers, deadline, (), |()| {
            self.attempt_pop()
        })
        .unwrap_or(Err(SpscPopError::Timeout))
    }
}

/// Future of [`Producer::push_async`].
#[must_use = "futures do nothing unless polled"]
pub struct SpscPushFuture<'p, 'a, T> {
    producer: &'p mut Producer<'a, T>,
    /// Not structurally pinned.
    item: Option<T>,
    /// Structurally pinned: linked into the producers' queue while pending.
    waiter: Waiter,
}

/// Future of [`Consumer::pop_async`].
#[must_use = "futures do nothing unless polled"]
pub struct SpscPopFuture<'c, 'a, T> {
    consumer: &'c mut Consumer<'a, T>,
    /// Structurally pinned: linked into the consumers' queue while pending.
    waiter: Waiter,
}

impl<T> Future for SpscPushFuture<'_, '_, T> {
    type Output = Result<(), Closed<T>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // SAFETY: only `waiter` is structurally pinned, and it is only used through
        // the `Pin` below; nothing is moved out of `self`.
        let this = unsafe { self.get_unchecked_mut() };
        // SAFETY: see above.
        let waiter = unsafe { Pin::new_unchecked(&this.waiter) };
        // SAFETY: used only inside this call, while the producer lives.
        let shared = unsafe { detached(this.producer.end.shared) };
        let (producer, item) = (&mut *this.producer, &mut this.item);
        poll_waiting(&shared.control.producers, waiter, cx, || {
            let pending = item
                .take()
                .expect("SpscPushFuture polled after it completed");
            match producer.attempt_push(pending) {
                Ok(done) => Some(done),
                Err(back) => {
                    *item = Some(back);
                    None
                }
            }
        })
    }
}

impl<T> Future for SpscPopFuture<'_, '_, T> {
    type Output = Result<T, SpscPopError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // SAFETY: as for `SpscPushFuture`.
        let this = unsafe { self.get_unchecked_mut() };
        // SAFETY: see above.
        let waiter = unsafe { Pin::new_unchecked(&this.waiter) };
        // SAFETY: used only inside this call, while the consumer lives.
        let shared = unsafe { detached(this.consumer.end.shared) };
        let consumer = &mut *this.consumer;
        poll_waiting(&shared.control.consumers, waiter, cx, || {
            consumer.attempt_pop().ok()
        })
    }
}

impl<T> Drop for SpscPushFuture<'_, '_, T> {
    fn drop(&mut self) {
        cancel_waiter(&self.producer.end.shared().control.producers, &self.waiter);
    }
}

impl<T> Drop for SpscPopFuture<'_, '_, T> {
    fn drop(&mut self) {
        cancel_waiter(&self.consumer.end.shared().control.consumers, &self.waiter);
    }
}

impl<T> fmt::Debug for SpscPushFuture<'_, '_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SpscPushFuture").finish_non_exhaustive()
    }
}

impl<T> fmt::Debug for SpscPopFuture<'_, '_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SpscPopFuture").finish_non_exhaustive()
    }
}
