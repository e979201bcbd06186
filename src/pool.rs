//! A bounded, lock-free object pool that keeps allocations for reuse.
//!
//! [`Pool`] keeps up to a capacity of idle objects in the crate's lock-free MPMC
//! [`Ring`]. [`get`](Pool::get) hands one out in a [`Pooled`] guard, or makes a new
//! one when none is idle; dropping the guard [recycles](Recycle) the object (clears
//! it, keeping its allocation: a `Vec` keeps its capacity) and puts it back. The pool
//! never holds more than its capacity: returning to a full pool drops one object.
//!
//! - The hot path, a hit and a return, is a pop and a push on the ring and the
//!   object's [`Recycle::recycle`]: no lock and no allocation (an integration test
//!   counts allocations).
//! - The capacity is soft ([`SoftCapacity`]): under memory pressure a manager lowers
//!   it, and the idle objects beyond it are dropped at once, releasing their memory;
//!   raising it again lets the pool refill as objects come back.
//! - [`metrics`](Pool::metrics) derives hits, returns and discards from the ring's
//!   positions and counters; only misses (which allocate anyway) and
//!   [`fill`](Pool::fill) keep counters of their own.
//!
//! # Performance
//!
//! The ring is FIFO: an object goes to whichever thread asks next, after every
//! other idle object. Objects whose contents are large and hot (buffers) then move
//! between cores with their cache lines, which on a machine with a thread-caching
//! allocator can cost more than a fresh allocation. Give each worker thread its own
//! pool when that matters; a shared pool still bounds idle memory and answers to
//! memory pressure. The crate's `benches/pool.rs` measures both.
//!
//! # Examples
//!
//! ```
//! use membound::pool::Pool;
//!
//! let buffers: Pool<Vec<u8>> = Pool::new(16)?;
//! {
//!     let mut buf = buffers.get(); // none idle: a new, empty Vec
//!     buf.extend_from_slice(b"hello");
//! } // back to the pool, cleared but with its capacity
//! let buf = buffers.get();
//! assert!(buf.is_empty() && buf.capacity() >= 5);
//! let m = buffers.metrics();
//! assert_eq!((m.misses, m.hits, m.returns), (1, 1, 1));
//! # Ok::<(), membound::ConfigError>(())
//! ```

use alloc::boxed::Box;
use alloc::collections::{BinaryHeap, VecDeque};
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use core::mem::ManuallyDrop;
use core::ops::{Deref, DerefMut};

use crate::capacity::{CapacityError, SoftCapacity};
use crate::ring::{Ring, RingConfig};
use crate::sync::{AtomicU64, Ordering};
use crate::ConfigError;

/// An object that can be reset for reuse while keeping its allocations.
///
/// [`Pool`] calls [`recycle`](Self::recycle) on every object given back to it, so
/// the next [`get`](Pool::get) receives it as if new. Implement it for your own
/// types by resetting every field (clearing collections rather than replacing
/// them, so their capacity is kept).
///
/// A pool keeps what an object has grown to. If an object can grow without bound,
/// cap what it keeps in `recycle` (for example `shrink_to` a limit) so that the
/// pool's memory stays bounded too.
///
/// # Examples
///
/// ```
/// use membound::pool::{Pool, Recycle};
///
/// #[derive(Default)]
/// struct Request {
///     headers: Vec<(String, String)>,
///     body: Vec<u8>,
/// }
///
/// impl Recycle for Request {
///     fn recycle(&mut self) {
///         self.headers.clear();
///         self.body.clear();
///         self.body.shrink_to(64 * 1024); // keep at most 64 KiB per pooled body
///     }
/// }
///
/// let pool: Pool<Request> = Pool::new(8)?;
/// pool.get().body.extend_from_slice(b"payload");
/// assert!(pool.get().body.is_empty());
/// # Ok::<(), membound::ConfigError>(())
/// ```
pub trait Recycle {
    /// Resets `self` to its empty state, keeping allocations it can reuse.
    fn recycle(&mut self);
}

impl<T> Recycle for Vec<T> {
    /// Clears the vector (dropping its elements), keeping its capacity.
    fn recycle(&mut self) {
        self.clear();
    }
}

impl Recycle for String {
    /// Clears the string, keeping its capacity.
    fn recycle(&mut self) {
        self.clear();
    }
}

impl<T> Recycle for VecDeque<T> {
    /// Clears the deque (dropping its elements), keeping its capacity.
    fn recycle(&mut self) {
        self.clear();
    }
}

impl<T> Recycle for BinaryHeap<T> {
    /// Clears the heap (dropping its elements), keeping its capacity.
    fn recycle(&mut self) {
        self.clear();
    }
}

impl<T: Recycle + ?Sized> Recycle for Box<T> {
    /// Recycles the boxed value in place, keeping the box's allocation.
    fn recycle(&mut self) {
        (**self).recycle();
    }
}

#[cfg(feature = "std")]
impl<K, V, S> Recycle for std::collections::HashMap<K, V, S> {
    /// Clears the map (dropping its entries), keeping its capacity.
    fn recycle(&mut self) {
        self.clear();
    }
}

#[cfg(feature = "std")]
impl<T, S> Recycle for std::collections::HashSet<T, S> {
    /// Clears the set (dropping its elements), keeping its capacity.
    fn recycle(&mut self) {
        self.clear();
    }
}

/// Configuration of a [`Pool`].
///
/// # Examples
///
/// ```
/// use membound::pool::{Pool, PoolConfig};
///
/// // Keep up to 32 idle buffers; the memory monitor may raise that to 128.
/// let pool = Pool::with_config(PoolConfig::new(32).with_max_capacity(128), || {
///     Vec::<u8>::with_capacity(4096)
/// })?;
/// assert_eq!((pool.capacity(), pool.max_capacity()), (32, 128));
/// # Ok::<(), membound::ConfigError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
#[non_exhaustive]
pub struct PoolConfig {
    /// The most idle objects the pool keeps, at least 1.
    pub capacity: usize,
    /// The most [`set_capacity`](Pool::set_capacity) may raise the capacity to.
    /// `None`: the capacity itself. Each reserved place costs
    /// `size_of::<T>() + 8` bytes (rounded to `T`'s alignment) from the start.
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub max_capacity: Option<usize>,
}

impl PoolConfig {
    /// A configuration keeping up to `capacity` idle objects.
    pub const fn new(capacity: usize) -> Self {
        Self {
            capacity,
            max_capacity: None,
        }
    }

    /// The same configuration reserving room for `max` idle objects, the most
    /// [`set_capacity`](Pool::set_capacity) can raise the capacity to.
    #[must_use]
    pub const fn with_max_capacity(mut self, max: usize) -> Self {
        self.max_capacity = Some(max);
        self
    }

    /// The configuration of the ring that holds the idle objects. `DropOldest`:
    /// lowering the capacity drops the excess idle objects at once.
    const fn ring(&self) -> RingConfig {
        let ring = RingConfig::new(self.capacity);
        match self.max_capacity {
            Some(max) => ring.with_max_capacity(max),
            None => ring,
        }
    }

    /// Checks that a pool can be built from this configuration.
    ///
    /// # Errors
    ///
    /// As [`RingConfig::validate`]: [`ConfigError::ZeroCapacity`],
    /// [`ConfigError::CapacityTooLarge`], [`ConfigError::MaxBelowCapacity`].
    pub const fn validate(&self) -> Result<(), ConfigError> {
        self.ring().validate()
    }
}

impl Default for PoolConfig {
    /// 64 idle objects.
    fn default() -> Self {
        Self::new(64)
    }
}

/// A bounded, lock-free pool of reusable objects; see the
/// [module documentation](self).
///
/// `F` makes new objects when none is idle: a closure given to
/// [`with_factory`](Self::with_factory), or `T::default` for [`new`](Self::new).
pub struct Pool<T, F = fn() -> T> {
    /// The idle objects, each recycled. Never closed. Returns go in with
    /// `force_push`, which keeps it within the capacity in force even while
    /// `set_capacity` races them (an evicting push checks the capacity after its
    /// claim); what it evicts is dropped and counted by the ring.
    idle: Ring<T>,
    /// Makes an object when none is idle.
    factory: F,
    /// Gets that found no idle object and called the factory. Bumped only on that
    /// path, which allocates anyway.
    misses: AtomicU64,
    /// Objects the factory made for [`fill`](Self::fill) and the ring took, so that
    /// returns can be derived from the ring's pushes.
    filled: AtomicU64,
}

/// A snapshot of a [`Pool`]'s counters.
///
/// Consistent when the pool is quiescent; taken while other threads use the pool,
/// the fields are read one by one and may disagree by the operations in flight.
///
/// How each is kept: `hits` is the ring's pops, `returns` its pushes less what
/// [`fill`](Pool::fill) put in, `discarded` its evictions, shrink drops and clears
/// (all derived from its positions and slow-path counters); `misses` and `filled`
/// are the pool's own counters, bumped only on paths that call the factory.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, crate::metrics::Metrics)]
#[non_exhaustive]
#[metrics(kind = "pool", counters)]
pub struct PoolMetrics {
    /// Gets served by an idle object.
    pub hits: u64,
    /// Gets that found no idle object and made a new one.
    pub misses: u64,
    /// Objects given back and kept (recycled into the pool).
    pub returns: u64,
    /// Idle objects dropped: to make room for a return to a full pool, to meet a
    /// lowered capacity, or by [`clear`](Pool::clear).
    pub discarded: u64,
    /// Objects made by [`fill`](Pool::fill).
    pub filled: u64,
    /// Idle objects now.
    #[metric(gauge)]
    pub size: u64,
    /// The most idle objects kept now (the soft capacity).
    #[metric(gauge)]
    pub capacity: u64,
    /// The most the capacity may be raised to.
    #[metric(gauge)]
    pub max_capacity: u64,
}

impl<T: Default> Pool<T> {
    /// A pool keeping up to `capacity` idle objects, making new ones with
    /// `T::default()`.
    ///
    /// Allocates its ring once, here; no object is made until needed (see
    /// [`fill`](Self::fill)).
    ///
    /// # Errors
    ///
    /// [`ConfigError::ZeroCapacity`] for 0, [`ConfigError::CapacityTooLarge`] above
    /// [`MAX_CAPACITY`](crate::ring::MAX_CAPACITY).
    ///
    /// # Examples
    ///
    /// ```
    /// use membound::pool::Pool;
    ///
    /// let names: Pool<String> = Pool::new(4)?;
    /// names.get().push_str("temporary");
    /// assert_eq!(names.len(), 1);
    /// assert!(Pool::<String>::new(0).is_err());
    /// # Ok::<(), membound::ConfigError>(())
    /// ```
    pub fn new(capacity: usize) -> Result<Self, ConfigError> {
        Self::with_factory(capacity, T::default)
    }
}

impl<T, F: Fn() -> T> Pool<T, F> {
    /// A pool keeping up to `capacity` idle objects, making new ones with
    /// `factory`.
    ///
    /// # Errors
    ///
    /// As [`new`](Pool::new).
    ///
    /// # Examples
    ///
    /// ```
    /// use membound::pool::Pool;
    ///
    /// let pages = Pool::with_factory(8, || Vec::<u8>::with_capacity(4096))?;
    /// assert!(pages.get().capacity() >= 4096);
    /// # Ok::<(), membound::ConfigError>(())
    /// ```
    pub fn with_factory(capacity: usize, factory: F) -> Result<Self, ConfigError> {
        Self::with_config(PoolConfig::new(capacity), factory)
    }

    /// A pool built from `config`, making new objects with `factory`.
    ///
    /// # Errors
    ///
    /// As [`PoolConfig::validate`].
    pub fn with_config(config: PoolConfig, factory: F) -> Result<Self, ConfigError> {
        Ok(Self {
            idle: Ring::with_config(config.ring())?,
            factory,
            misses: AtomicU64::new(0),
            filled: AtomicU64::new(0),
        })
    }

    /// Makes objects until the pool holds its capacity of idle ones, so that the
    /// first gets do not allocate; returns how many it made (at most the
    /// capacity, even while other threads take objects out).
    ///
    /// # Examples
    ///
    /// ```
    /// use membound::pool::Pool;
    ///
    /// let pool: Pool<Vec<u8>> = Pool::new(3)?;
    /// assert_eq!(pool.fill(), 3);
    /// assert_eq!(pool.fill(), 0);
    /// drop(pool.get());
    /// assert_eq!(pool.metrics().misses, 0);
    /// # Ok::<(), membound::ConfigError>(())
    /// ```
    pub fn fill(&self) -> usize {
        let mut made = 0;
        let capacity = self.idle.capacity();
        while made < capacity && self.idle.len() < capacity {
            // `try_push`, never evicting: a concurrent return may fill the last
            // place first, and then this object is simply not needed.
            if self.idle.try_push((self.factory)()).is_err() {
                break;
            }
            self.filled.fetch_add(1, Ordering::Relaxed);
            made += 1;
        }
        made
    }

    /// An object from the pool, or a new one from the factory when none is idle.
    /// It goes back to the pool when the guard is dropped (unless
    /// [detached](Pooled::detach)).
    ///
    /// # Examples
    ///
    /// ```
    /// use membound::pool::Pool;
    ///
    /// let pool: Pool<String> = Pool::new(2)?;
    /// let mut s = pool.get();
    /// s.push_str("abc");
    /// assert_eq!(&*s, "abc");
    /// drop(s);
    /// assert_eq!(pool.len(), 1);
    /// # Ok::<(), membound::ConfigError>(())
    /// ```
    #[inline]
    pub fn get(&self) -> Pooled<'_, T, F>
    where
        T: Recycle,
    {
        let value = match self.idle.try_pop() {
            Some(value) => value,
            None => self.make(),
        };
        Pooled::new(self, value)
    }

    #[cold]
    fn make(&self) -> T {
        self.misses.fetch_add(1, Ordering::Relaxed);
        (self.factory)()
    }
}

impl<T, F> Pool<T, F> {
    /// An idle object from the pool, or `None` when none is idle (the factory is not
    /// called and nothing is counted).
    ///
    /// # Examples
    ///
    /// ```
    /// use membound::pool::Pool;
    ///
    /// let pool: Pool<Vec<u32>> = Pool::new(2)?;
    /// assert!(pool.try_get().is_none());
    /// pool.put(Vec::with_capacity(10));
    /// assert!(pool.try_get().unwrap().capacity() >= 10);
    /// # Ok::<(), membound::ConfigError>(())
    /// ```
    #[inline]
    pub fn try_get(&self) -> Option<Pooled<'_, T, F>>
    where
        T: Recycle,
    {
        self.idle.try_pop().map(|value| Pooled::new(self, value))
    }

    /// Recycles `value` and keeps it as an idle object. If the pool is full, the
    /// idle object returned longest ago is dropped to make room (counted in
    /// [`PoolMetrics::discarded`]): the pool stays within its capacity and keeps
    /// the objects most recently in use.
    ///
    /// Dropping a [`Pooled`] guard calls this.
    #[inline]
    pub fn put(&self, mut value: T)
    where
        T: Recycle,
    {
        value.recycle();
        // The ring is never closed, so `force_push` always stores the value.
        if let Ok(Some(evicted)) = self.idle.force_push(value) {
            drop(evicted);
        }
    }

    /// Drops every idle object, releasing its memory; returns how many. Counted in
    /// [`PoolMetrics::discarded`].
    pub fn clear(&self) -> usize {
        self.idle.clear()
    }

    /// Idle objects now.
    pub fn len(&self) -> usize {
        self.idle.len()
    }

    /// Whether no object is idle.
    pub fn is_empty(&self) -> bool {
        self.idle.is_empty()
    }

    /// The most idle objects the pool keeps now.
    pub fn capacity(&self) -> usize {
        self.idle.capacity()
    }

    /// The most [`set_capacity`](Self::set_capacity) accepts: what was reserved at
    /// construction.
    pub fn max_capacity(&self) -> usize {
        self.idle.max_capacity()
    }

    /// Changes how many idle objects the pool keeps, within what was reserved: the
    /// knob the memory monitor turns. Lowering it drops the idle objects beyond the
    /// new capacity at once (counted in [`PoolMetrics::discarded`]); objects handed
    /// out are unaffected and come back under the new capacity.
    ///
    /// # Errors
    ///
    /// [`CapacityError::Zero`] for 0, [`CapacityError::AboveMax`] beyond
    /// [`max_capacity`](Self::max_capacity); nothing changes then.
    ///
    /// # Examples
    ///
    /// ```
    /// use membound::pool::{Pool, PoolConfig};
    ///
    /// let pool = Pool::with_config(PoolConfig::new(4), Vec::<u8>::new)?;
    /// pool.fill();
    /// pool.set_capacity(1)?; // three idle objects are dropped now
    /// assert_eq!(pool.len(), 1);
    /// assert_eq!(pool.metrics().discarded, 3);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn set_capacity(&self, capacity: usize) -> Result<(), CapacityError> {
        self.idle.set_capacity(capacity)
    }

    /// A snapshot of the counters; see [`PoolMetrics`] for how each is kept.
    pub fn metrics(&self) -> PoolMetrics {
        let ring = self.idle.metrics();
        let filled = self.filled.load(Ordering::Relaxed);
        PoolMetrics {
            hits: ring.popped,
            misses: self.misses.load(Ordering::Relaxed),
            returns: ring.pushed.saturating_sub(filled),
            discarded: ring.evicted + ring.dropped_oldest + ring.cleared,
            filled,
            size: ring.len,
            capacity: ring.capacity,
            max_capacity: ring.max_capacity,
        }
    }
}

impl<T, F> SoftCapacity for Pool<T, F> {
    fn capacity(&self) -> usize {
        Pool::capacity(self)
    }

    /// The pool and its ring of idle slots, reserved at construction: constant. The
    /// objects' own heap allocations (a pooled `Vec`'s buffer) are not counted.
    fn footprint(&self) -> Option<crate::capacity::Footprint> {
        let ring = SoftCapacity::footprint(&self.idle)?;
        let own = (core::mem::size_of::<Self>() - core::mem::size_of::<Ring<T>>()) as u64;
        Some(crate::capacity::Footprint::reserved(ring.bytes + own))
    }

    fn kind(&self) -> &'static str {
        <PoolMetrics as crate::metrics::Metrics>::KIND
    }

    fn max_capacity(&self) -> usize {
        Pool::max_capacity(self)
    }

    fn set_capacity(&self, capacity: usize) -> Result<(), CapacityError> {
        Pool::set_capacity(self, capacity)
    }
}

impl<T, F> fmt::Debug for Pool<T, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("len", &self.len())
            .field("capacity", &self.capacity())
            .field("max_capacity", &self.max_capacity())
            .finish_non_exhaustive()
    }
}

/// An object lent by a [`Pool`]: dereferences to it, and puts it back (recycled)
/// when dropped.
///
/// Holding a guard holds nothing in the pool: no lock, no place. Use
/// [`detach`](Self::detach) to keep the object instead.
pub struct Pooled<'a, T: Recycle, F = fn() -> T> {
    /// Taken out exactly once: by `Drop` (back to the pool) or by `detach`.
    value: ManuallyDrop<T>,
    pool: &'a Pool<T, F>,
}

impl<'a, T: Recycle, F> Pooled<'a, T, F> {
    #[inline]
    fn new(pool: &'a Pool<T, F>, value: T) -> Self {
        Self {
            value: ManuallyDrop::new(value),
            pool,
        }
    }

    /// Takes the object out of the guard: it will not go back to the pool.
    /// (An associated function, so it does not shadow a method of `T`.)
    ///
    /// # Examples
    ///
    /// ```
    /// use membound::pool::{Pool, Pooled};
    ///
    /// let pool: Pool<Vec<u8>> = Pool::new(2)?;
    /// let mut buf = pool.get();
    /// buf.push(1);
    /// let kept: Vec<u8> = Pooled::detach(buf);
    /// assert_eq!(kept, [1]);
    /// assert!(pool.is_empty());
    /// # Ok::<(), membound::ConfigError>(())
    /// ```
    pub fn detach(this: Self) -> T {
        let mut this = ManuallyDrop::new(this);
        // SAFETY: `this` is never dropped, so its `Drop` (the only other place that
        // takes `value`) does not run; the value is taken exactly once, here.
        unsafe { ManuallyDrop::take(&mut this.value) }
    }

    /// The pool the object goes back to.
    pub fn pool(this: &Self) -> &'a Pool<T, F> {
        this.pool
    }
}

impl<T: Recycle, F> Deref for Pooled<'_, T, F> {
    type Target = T;

    #[inline]
    fn deref(&self) -> &T {
        &self.value
    }
}

impl<T: Recycle, F> DerefMut for Pooled<'_, T, F> {
    #[inline]
    fn deref_mut(&mut self) -> &mut T {
        &mut self.value
    }
}

impl<T: Recycle, F> Drop for Pooled<'_, T, F> {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: `value` is taken only here and in `detach`, which forgets the
        // guard, so it is still initialised and is not used after this.
        let value = unsafe { ManuallyDrop::take(&mut self.value) };
        self.pool.put(value);
    }
}

impl<T: Recycle + fmt::Debug, F> fmt::Debug for Pooled<'_, T, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Pooled").field(&*self.value).finish()
    }
}
