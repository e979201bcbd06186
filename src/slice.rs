//! A copy-on-write vector whose readers iterate an immutable snapshot without a lock.
//!
//! [`SnapshotVec`] keeps its contents in an `Arc`ed vector. A reader takes a
//! [`Snapshot`] (a reference to the current contents) and iterates it holding no
//! lock, so whatever it calls may read or write the same vector again: the
//! original's thread-safe slice ran callbacks under its lock and deadlocked on
//! re-entry. A writer copies the contents, changes the copy and publishes it with a
//! compare-and-swap on the pointer (read-copy-update); older snapshots keep the
//! contents they were taken from until they are dropped.
//!
//! # Algorithm
//!
//! Read-copy-update over one atomically swappable `Arc<Vec<T>>`:
//!
//! - **Reads** load the current `Arc`. Under `std` the swap is [`arc-swap`]'s
//!   `ArcSwap`, whose `load` records the pointer in a thread-local debt slot instead
//!   of incrementing the shared reference count, so concurrent readers do not write
//!   a shared cache line (the reason the crate is used). Without `std` (and under
//!   loom) a one-word spin lock guards the pointer: the critical section only clones
//!   the `Arc` or exchanges the pointer, never runs user code and never allocates,
//!   and the old value is dropped after the lock is released.
//! - **Cached reads**: a [`Reader`] keeps the contents it loaded last and the
//!   vector's write count at the time; a read checks the count (one atomic load)
//!   and reloads only when a write has happened since.
//! - **Writes** load the current contents, build the next vector from them, and
//!   install it only if the pointer still is the one they loaded (a compare-and-swap;
//!   holding the loaded `Arc` keeps its allocation alive, so the comparison cannot be
//!   fooled by a reused address). A writer that lost the race to another writer
//!   builds again from the newer contents, so no update is lost, and no lock is held
//!   while user closures (predicates, `Clone`) run. Closures passed to writers may
//!   therefore run more than once per call when writers race; keep them free of side
//!   effects.
//!
//! # Memory
//!
//! A removed element is dropped as soon as the last snapshot that contains it is
//! dropped, and no snapshot is kept anywhere but by its holder: the original kept
//! references to removed items. [`clear`](SnapshotVec::clear) installs an empty
//! vector with no allocation. Every write copies the whole contents (`O(n)` clones
//! and one allocation), which is the price of lock-free reads: this is a structure
//! for data read far more often than written (subscriber lists, routing tables,
//! configuration). Wrap large elements in an `Arc` so that the copy only bumps
//! reference counts.
//!
//! # Progress
//!
//! Under `std`, reads are lock-free (wait-free in the common case) and writes are
//! lock-free: a writer retries only because another writer succeeded. Without `std`
//! both take the spin lock for a few instructions; do not read or write from an
//! interrupt handler that may preempt a thread of the same vector.
//!
//! [`arc-swap`]: https://docs.rs/arc-swap
//!
//! # Examples
//!
//! ```
//! use membound::slice::SnapshotVec;
//!
//! let listeners = SnapshotVec::new();
//! listeners.push("audit");
//! listeners.push("metrics");
//!
//! // The snapshot is iterated without a lock: the loop body may write.
//! for name in listeners.load().iter() {
//!     if *name == "metrics" {
//!         listeners.push("metrics-2");
//!     }
//! }
//! assert_eq!(listeners.load().as_slice(), ["audit", "metrics", "metrics-2"]);
//! assert_eq!(listeners.remove_first(|name| name.starts_with("metrics")), Some("metrics"));
//! assert_eq!(listeners.load().position(|name| *name == "metrics-2"), Some(1));
//! ```

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt;
use core::ops::Deref;

use crate::sync::{AtomicU64, Ordering};

/// The atomically swappable `Arc` under `std`: arc-swap's.
#[cfg(all(feature = "std", not(loom)))]
mod cell {
    use alloc::sync::Arc;

    use arc_swap::{ArcSwap, Guard};

    /// An `Arc<V>` that can be loaded and compare-and-swapped atomically.
    pub(super) struct ArcCell<V>(ArcSwap<V>);

    /// What a load returns: a guard that usually holds no reference count.
    pub(super) type Loaded<V> = Guard<Arc<V>>;

    impl<V> ArcCell<V> {
        pub(super) fn new(value: Arc<V>) -> Self {
            Self(ArcSwap::new(value))
        }

        #[inline]
        pub(super) fn load(&self) -> Loaded<V> {
            self.0.load()
        }

        /// A second handle on what `loaded` refers to (a full reference count).
        pub(super) fn duplicate(loaded: &Loaded<V>) -> Loaded<V> {
            Guard::from_inner(Arc::clone(loaded))
        }

        pub(super) fn load_full(&self) -> Arc<V> {
            self.0.load_full()
        }

        /// Installs `new` if the cell still holds `current`: then returns the
        /// replaced `Arc`, otherwise hands `new` back.
        pub(super) fn compare_and_swap(&self, current: &Arc<V>, new: V) -> Result<Arc<V>, V> {
            let new = Arc::new(new);
            let previous = self.0.compare_and_swap(current, Arc::clone(&new));
            if Arc::ptr_eq(&previous, current) {
                drop(new);
                return Ok(Guard::into_inner(previous));
            }
            drop(previous);
            // arc-swap dropped its clone of `new` when the comparison failed and
            // nobody else ever saw it, so this is the only reference.
            match Arc::try_unwrap(new) {
                Ok(new) => Err(new),
                Err(_) => unreachable!("a refused value is referenced only by its writer"),
            }
        }

        pub(super) fn swap(&self, new: V) -> Arc<V> {
            self.0.swap(Arc::new(new))
        }
    }
}

/// The atomically swappable `Arc` without `std` (and under loom): a spin lock
/// around the pointer.
#[cfg(any(not(feature = "std"), loom))]
mod cell {
    use alloc::sync::Arc;
    use core::mem;

    use crate::sync::{AtomicBool, Backoff, Ordering, UnsafeCell};

    /// An `Arc<V>` that can be loaded and compare-and-swapped atomically.
    pub(super) struct ArcCell<V> {
        /// Held while `value` is read (to clone it) or replaced. Nothing else
        /// happens under it: no user code, no allocation, no drop.
        locked: AtomicBool,
        /// The current value; accessed only by the holder of `locked`.
        value: UnsafeCell<Arc<V>>,
    }

    /// What a load returns: a full reference.
    pub(super) type Loaded<V> = Arc<V>;

    // SAFETY: the cell owns an `Arc<V>` and hands out clones of it to any thread, as
    // sending or sharing an `Arc<V>` does, so it needs what `Arc<V>: Send + Sync`
    // needs; every access to `value` is serialized by `locked`.
    unsafe impl<V: Send + Sync> Send for ArcCell<V> {}
    // SAFETY: as above.
    unsafe impl<V: Send + Sync> Sync for ArcCell<V> {}

    impl<V> ArcCell<V> {
        pub(super) fn new(value: Arc<V>) -> Self {
            Self {
                locked: AtomicBool::new(false),
                value: UnsafeCell::new(value),
            }
        }

        /// Runs `f` on the value while holding the lock. `f` must be short and
        /// must neither drop an `Arc` nor run user code.
        #[inline]
        fn locked<R>(&self, f: impl FnOnce(*mut Arc<V>) -> R) -> R {
            let mut backoff = Backoff::new();
            // Acquire: see the value the previous holder left.
            while self
                .locked
                .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_err()
            {
                while self.locked.load(Ordering::Relaxed) {
                    backoff.snooze();
                }
            }
            let result = self.value.with_mut(f);
            // Release: the next holder sees what this one left.
            self.locked.store(false, Ordering::Release);
            result
        }

        #[inline]
        pub(super) fn load(&self) -> Loaded<V> {
            // SAFETY: the lock makes this the only access to `value`, which is
            // always an initialised `Arc`; cloning only increments its count.
            self.locked(|value| unsafe { Arc::clone(&*value) })
        }

        pub(super) fn duplicate(loaded: &Loaded<V>) -> Loaded<V> {
            Arc::clone(loaded)
        }

        pub(super) fn load_full(&self) -> Arc<V> {
            self.load()
        }

        pub(super) fn compare_and_swap(&self, current: &Arc<V>, new: V) -> Result<Arc<V>, V> {
            // Allocated before taking the lock, so the lock is never held across
            // the allocator.
            let new = Arc::new(new);
            let replaced = self.locked(|value| {
                // SAFETY: exclusive access under the lock, as in `load`.
                let value = unsafe { &mut *value };
                if Arc::ptr_eq(value, current) {
                    Ok(mem::replace(value, new))
                } else {
                    Err(new)
                }
            });
            // Dropped (or unwrapped) outside the lock.
            replaced.map_err(|new| match Arc::try_unwrap(new) {
                Ok(new) => new,
                Err(_) => unreachable!("a refused value is referenced only by its writer"),
            })
        }

        pub(super) fn swap(&self, new: V) -> Arc<V> {
            let new = Arc::new(new);
            // SAFETY: exclusive access under the lock, as in `load`.
            self.locked(|value| unsafe { mem::replace(&mut *value, new) })
        }
    }
}

use cell::{ArcCell, Loaded};

/// A vector whose readers take lock-free immutable [`Snapshot`]s and whose writers
/// copy on write; see the [module documentation](self) for the algorithm.
///
/// Writers that change elements need `T: Clone` (they copy the contents);
/// [`store`](Self::store) and [`clear`](Self::clear) do not.
///
/// # Examples
///
/// ```
/// use membound::slice::SnapshotVec;
///
/// let routes: SnapshotVec<(u16, &str)> = [(80, "web"), (443, "tls")].into_iter().collect();
/// let before = routes.load();
/// routes.retain(|(port, _)| *port != 80);
/// assert_eq!(before.len(), 2); // a snapshot never changes
/// assert_eq!(routes.load().find(|(port, _)| *port == 443), Some(&(443, "tls")));
/// assert!(!routes.load().any(|(port, _)| *port == 80));
/// ```
pub struct SnapshotVec<T> {
    /// The current contents; replaced whole by every write.
    current: ArcCell<Vec<T>>,
    /// Writes installed: the version of the contents. Bumped (Release) after each
    /// new contents is in place, so a [`Reader`] that reads it (Acquire) and finds
    /// it changed loads contents at least that new.
    writes: AtomicU64,
    /// Writes that lost the race to another writer and were built again.
    retries: AtomicU64,
}

/// An immutable view of a [`SnapshotVec`]'s contents at one moment: dereferences to
/// a slice and keeps its elements alive until dropped.
///
/// Cheap to take ([`SnapshotVec::load`]) and to clone. Short-lived snapshots are the
/// fastest; one kept for long keeps the elements it saw (including ones removed
/// since) alive, so do not park snapshots in long-lived places by accident.
pub struct Snapshot<T> {
    items: Loaded<Vec<T>>,
}

/// A caching reader of a [`SnapshotVec`], made by [`SnapshotVec::reader`].
pub struct Reader<'a, T> {
    vec: &'a SnapshotVec<T>,
    /// The vector's write count when `items` was loaded (or earlier: `items` may
    /// be newer than `version`, never older).
    version: u64,
    items: Arc<Vec<T>>,
}

impl<T> Reader<'_, T> {
    /// The current contents: the ones loaded last time if no write has happened
    /// since, otherwise freshly loaded. No lock is held while the slice is used.
    #[inline]
    pub fn load(&mut self) -> &[T] {
        // Acquire: pairs with the Release bump after a write's swap, so contents
        // loaded after seeing a new version are at least that new.
        let version = self.vec.writes.load(Ordering::Acquire);
        if version != self.version {
            self.reload(version);
        }
        self.items.as_slice()
    }

    #[cold]
    fn reload(&mut self, version: u64) {
        self.items = self.vec.current.load_full();
        self.version = version;
    }
}

impl<T: fmt::Debug> fmt::Debug for Reader<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reader")
            .field("version", &self.version)
            .field("items", &self.items)
            .finish()
    }
}

/// A snapshot of a [`SnapshotVec`]'s counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, crate::metrics::Metrics)]
#[non_exhaustive]
#[metrics(kind = "snapshot_vec", counters)]
pub struct SnapshotVecMetrics {
    /// Elements in the current contents.
    #[metric(gauge)]
    pub len: u64,
    /// Writes that installed new contents (writes that changed nothing, such as a
    /// `retain` that kept everything, are not counted).
    pub writes: u64,
    /// Times a writer lost the race to another writer and built its copy again.
    pub retries: u64,
}

impl<T> SnapshotVec<T> {
    /// An empty vector. Allocates its (empty) shared contents once.
    ///
    /// # Examples
    ///
    /// ```
    /// let names = membound::slice::SnapshotVec::<String>::new();
    /// assert!(names.is_empty());
    /// ```
    pub fn new() -> Self {
        Self::from_vec(Vec::new())
    }

    /// A vector holding `items`.
    pub fn from_vec(items: Vec<T>) -> Self {
        Self {
            current: ArcCell::new(Arc::new(items)),
            writes: AtomicU64::new(0),
            retries: AtomicU64::new(0),
        }
    }

    /// The current contents, as an immutable snapshot that later writes do not
    /// change. No lock is held while the snapshot lives.
    ///
    /// # Examples
    ///
    /// ```
    /// use membound::slice::SnapshotVec;
    ///
    /// let v = SnapshotVec::from_vec(vec![1, 2, 3]);
    /// let snap = v.load();
    /// v.push(4);
    /// assert_eq!(snap.as_slice(), [1, 2, 3]);
    /// assert_eq!(v.load().iter().sum::<i32>(), 10);
    /// ```
    #[inline]
    pub fn load(&self) -> Snapshot<T> {
        Snapshot {
            items: self.current.load(),
        }
    }

    /// Number of elements now.
    pub fn len(&self) -> usize {
        self.load().len()
    }

    /// Whether the vector is empty now.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Replaces the whole contents with `items`; returns the previous contents as a
    /// snapshot (dropping it frees them unless other snapshots still hold them).
    ///
    /// # Examples
    ///
    /// ```
    /// use membound::slice::SnapshotVec;
    ///
    /// let v = SnapshotVec::from_vec(vec!['a']);
    /// let old = v.store(vec!['b', 'c']);
    /// assert_eq!(old.as_slice(), ['a']);
    /// assert_eq!(v.len(), 2);
    /// ```
    pub fn store(&self, items: Vec<T>) -> Snapshot<T> {
        let old = self.current.swap(items);
        self.installed();
        Snapshot {
            items: Loaded::from(old),
        }
    }

    /// Removes every element; returns how many there were. The vector then holds no
    /// allocation, and each removed element is dropped once no snapshot holds it.
    ///
    /// # Examples
    ///
    /// ```
    /// use membound::slice::SnapshotVec;
    ///
    /// let v = SnapshotVec::from_vec(vec![1, 2]);
    /// assert_eq!(v.clear(), 2);
    /// assert!(v.is_empty());
    /// ```
    pub fn clear(&self) -> usize {
        if self.is_empty() {
            return 0;
        }
        self.store(Vec::new()).len()
    }

    /// A reader that keeps the last contents it loaded and reloads only when a
    /// write has happened since: a read then costs one atomic load, with no write
    /// to any shared or thread-local memory. For a thread that reads the same
    /// vector in a loop.
    ///
    /// The price: the contents a reader last loaded stay alive (with any elements
    /// removed since) until its next [`load`](Reader::load) or until it is dropped.
    ///
    /// # Examples
    ///
    /// ```
    /// use membound::slice::SnapshotVec;
    ///
    /// let routes = SnapshotVec::from_vec(vec![80, 443]);
    /// let mut reader = routes.reader();
    /// assert_eq!(reader.load(), [80, 443]);
    /// routes.push(8080);
    /// assert_eq!(reader.load(), [80, 443, 8080]);
    /// ```
    pub fn reader(&self) -> Reader<'_, T> {
        let version = self.writes.load(Ordering::Acquire);
        Reader {
            vec: self,
            version,
            items: self.current.load_full(),
        }
    }

    /// A snapshot of the counters.
    pub fn metrics(&self) -> SnapshotVecMetrics {
        SnapshotVecMetrics {
            len: self.len() as u64,
            writes: self.writes.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
        }
    }

    /// Records that new contents are in place (after the swap): see `writes`.
    #[inline]
    fn installed(&self) {
        self.writes.fetch_add(1, Ordering::Release);
    }

    /// The read-copy-update loop every changing write goes through: `build` makes
    /// the next contents from the current ones (`None`: nothing to change), and the
    /// result is installed if no other writer got there first; otherwise `build`
    /// runs again on the newer contents. Returns the replaced contents and `build`'s
    /// extra result.
    fn update_with<R>(
        &self,
        mut build: impl FnMut(&[T]) -> Option<(Vec<T>, R)>,
    ) -> Option<(Arc<Vec<T>>, R)> {
        loop {
            let current = self.current.load_full();
            let (next, result) = build(&current)?;
            match self.current.compare_and_swap(&current, next) {
                Ok(replaced) => {
                    self.installed();
                    // Two references to the same contents: ours and the cell's.
                    drop(current);
                    return Some((replaced, result));
                }
                Err(_) => {
                    self.retries.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
}

impl<T: Clone> SnapshotVec<T> {
    /// Appends `item`.
    ///
    /// # Examples
    ///
    /// ```
    /// let v = membound::slice::SnapshotVec::new();
    /// v.push(1);
    /// v.push(2);
    /// assert_eq!(v.load().as_slice(), [1, 2]);
    /// ```
    pub fn push(&self, item: T) {
        self.append(alloc::vec![item]);
    }

    /// Appends `item` unless the vector already holds `max_len` elements; then hands
    /// `item` back and writes nothing. The length check and the append are one write,
    /// so concurrent callers never take the vector past `max_len` (a capped
    /// registry: handlers, subscribers).
    ///
    /// # Errors
    ///
    /// `Err(item)` when the vector holds `max_len` elements or more.
    ///
    /// # Examples
    ///
    /// ```
    /// let v = membound::slice::SnapshotVec::new();
    /// assert_eq!(v.push_within('a', 2), Ok(()));
    /// assert_eq!(v.push_within('b', 2), Ok(()));
    /// assert_eq!(v.push_within('c', 2), Err('c'));
    /// assert_eq!(v.load().as_slice(), ['a', 'b']);
    /// ```
    pub fn push_within(&self, item: T, max_len: usize) -> Result<(), T> {
        self.append_within(alloc::vec![item], max_len)
            .map_err(|mut refused| match refused.pop() {
                Some(item) => item,
                None => unreachable!("a refused append hands back what it was given"),
            })
    }

    /// Appends every item of `items`, in one write.
    ///
    /// # Examples
    ///
    /// ```
    /// let v = membound::slice::SnapshotVec::from_vec(vec![1]);
    /// v.extend([2, 3]);
    /// assert_eq!(v.load().as_slice(), [1, 2, 3]);
    /// ```
    pub fn extend(&self, items: impl IntoIterator<Item = T>) {
        let extra: Vec<T> = items.into_iter().collect();
        if !extra.is_empty() {
            self.append(extra);
        }
    }

    /// Appends `extra`, moving its items (never cloning them) on every attempt.
    fn append(&self, extra: Vec<T>) {
        // Nothing holds `usize::MAX` elements, so the append always happens.
        let _ = self.append_within(extra, usize::MAX);
    }

    /// Appends `extra` if the vector then holds at most `max_len` elements (checked
    /// against the contents the write replaces); otherwise hands `extra` back.
    fn append_within(&self, mut extra: Vec<T>, max_len: usize) -> Result<(), Vec<T>> {
        loop {
            let current = self.current.load_full();
            if current.len().saturating_add(extra.len()) > max_len {
                return Err(extra);
            }
            let mut next = Vec::with_capacity(current.len() + extra.len());
            next.extend_from_slice(&current);
            next.append(&mut extra);
            match self.current.compare_and_swap(&current, next) {
                Ok(replaced) => {
                    self.installed();
                    drop(current);
                    drop(replaced);
                    return Ok(());
                }
                Err(mut refused) => {
                    self.retries.fetch_add(1, Ordering::Relaxed);
                    extra = refused.split_off(current.len());
                }
            }
        }
    }

    /// Removes the element at `index` and returns it, or `None` if `index` is out of
    /// bounds. The element is moved out when no snapshot holds the old contents,
    /// and cloned otherwise (the snapshots' copy is dropped with the last of them).
    ///
    /// # Examples
    ///
    /// ```
    /// let v = membound::slice::SnapshotVec::from_vec(vec!['a', 'b', 'c']);
    /// assert_eq!(v.remove_at(1), Some('b'));
    /// assert_eq!(v.remove_at(5), None);
    /// assert_eq!(v.load().as_slice(), ['a', 'c']);
    /// ```
    pub fn remove_at(&self, index: usize) -> Option<T> {
        let (old, index) = self
            .update_with(|items| (index < items.len()).then(|| (without(items, index), index)))?;
        Some(take(old, index))
    }

    /// Removes the first element for which `pred` returns `true` and returns it.
    /// `pred` runs without any lock held and may run again if another writer races
    /// this one.
    ///
    /// # Examples
    ///
    /// ```
    /// let v = membound::slice::SnapshotVec::from_vec(vec![1, 2, 3, 4]);
    /// assert_eq!(v.remove_first(|x| x % 2 == 0), Some(2));
    /// assert_eq!(v.remove_first(|x| *x > 10), None);
    /// assert_eq!(v.load().as_slice(), [1, 3, 4]);
    /// ```
    pub fn remove_first(&self, mut pred: impl FnMut(&T) -> bool) -> Option<T> {
        let (old, index) = self.update_with(|items| {
            let index = items.iter().position(&mut pred)?;
            Some((without(items, index), index))
        })?;
        Some(take(old, index))
    }

    /// Keeps only the elements for which `keep` returns `true`; returns how many
    /// were removed (0: nothing was written). `keep` runs without any lock held, and
    /// again over the newer contents if another writer races this one.
    ///
    /// # Examples
    ///
    /// ```
    /// let v = membound::slice::SnapshotVec::from_vec(vec![1, 2, 3, 4]);
    /// assert_eq!(v.retain(|x| x % 2 == 1), 2);
    /// assert_eq!(v.load().as_slice(), [1, 3]);
    /// ```
    pub fn retain(&self, mut keep: impl FnMut(&T) -> bool) -> usize {
        self.update_with(|items| {
            let next: Vec<T> = items.iter().filter(|item| keep(item)).cloned().collect();
            let removed = items.len() - next.len();
            (removed > 0).then_some((next, removed))
        })
        .map_or(0, |(_, removed)| removed)
    }

    /// Replaces the contents with what `f` builds from them, retrying on the newer
    /// contents if another writer got there first (so `f` may run more than once;
    /// keep it free of side effects). The general form of every write.
    ///
    /// # Examples
    ///
    /// ```
    /// let v = membound::slice::SnapshotVec::from_vec(vec![3, 1, 2]);
    /// v.update(|items| {
    ///     let mut next = items.to_vec();
    ///     next.sort();
    ///     next
    /// });
    /// assert_eq!(v.load().as_slice(), [1, 2, 3]);
    /// ```
    pub fn update(&self, mut f: impl FnMut(&[T]) -> Vec<T>) {
        self.update_with(|items| Some((f(items), ())));
    }
}

/// `items` without the element at `index`, with exact capacity.
fn without<T: Clone>(items: &[T], index: usize) -> Vec<T> {
    let mut next = Vec::with_capacity(items.len() - 1);
    next.extend_from_slice(&items[..index]);
    next.extend_from_slice(&items[index + 1..]);
    next
}

/// The element at `index` of replaced contents: moved out if nobody else holds
/// them (then the rest is dropped here), cloned otherwise.
fn take<T: Clone>(old: Arc<Vec<T>>, index: usize) -> T {
    match Arc::try_unwrap(old) {
        Ok(mut items) => items.swap_remove(index),
        Err(shared) => shared[index].clone(),
    }
}

impl<T> Default for SnapshotVec<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> From<Vec<T>> for SnapshotVec<T> {
    fn from(items: Vec<T>) -> Self {
        Self::from_vec(items)
    }
}

impl<T> FromIterator<T> for SnapshotVec<T> {
    fn from_iter<I: IntoIterator<Item = T>>(iter: I) -> Self {
        Self::from_vec(iter.into_iter().collect())
    }
}

impl<T: fmt::Debug> fmt::Debug for SnapshotVec<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("SnapshotVec").field(&self.load()).finish()
    }
}

impl<T> Snapshot<T> {
    /// The elements, as a slice (also reachable through `Deref`).
    #[inline]
    pub fn as_slice(&self) -> &[T] {
        self.items.as_slice()
    }

    /// The elements for which `pred` returns `true`, in order.
    ///
    /// # Examples
    ///
    /// ```
    /// let v = membound::slice::SnapshotVec::from_vec(vec![1, 2, 3, 4]);
    /// let evens: Vec<i32> = v.load().filter(|x| x % 2 == 0).copied().collect();
    /// assert_eq!(evens, [2, 4]);
    /// ```
    pub fn filter<'a>(
        &'a self,
        mut pred: impl FnMut(&T) -> bool + 'a,
    ) -> impl Iterator<Item = &'a T> + 'a {
        self.iter().filter(move |item| pred(item))
    }

    /// `f` applied to every element, in order.
    ///
    /// # Examples
    ///
    /// ```
    /// let v = membound::slice::SnapshotVec::from_vec(vec!["a", "bc"]);
    /// assert_eq!(v.load().map(|s| s.len()).sum::<usize>(), 3);
    /// ```
    pub fn map<'a, U>(&'a self, f: impl FnMut(&T) -> U + 'a) -> impl Iterator<Item = U> + 'a {
        self.iter().map(f)
    }

    /// Whether `pred` returns `true` for some element.
    pub fn any(&self, pred: impl FnMut(&T) -> bool) -> bool {
        self.iter().any(pred)
    }

    /// Whether `pred` returns `true` for every element (`true` when empty).
    pub fn all(&self, pred: impl FnMut(&T) -> bool) -> bool {
        self.iter().all(pred)
    }

    /// The first element for which `pred` returns `true`.
    pub fn find(&self, mut pred: impl FnMut(&T) -> bool) -> Option<&T> {
        self.iter().find(|item| pred(item))
    }

    /// The index of the first element for which `pred` returns `true`.
    pub fn position(&self, pred: impl FnMut(&T) -> bool) -> Option<usize> {
        self.iter().position(pred)
    }

    /// How many elements `pred` returns `true` for.
    pub fn count(&self, mut pred: impl FnMut(&T) -> bool) -> usize {
        self.iter().filter(|item| pred(item)).count()
    }

    /// Whether two snapshots were taken from the same version of the contents.
    ///
    /// # Examples
    ///
    /// ```
    /// use membound::slice::{Snapshot, SnapshotVec};
    ///
    /// let v = SnapshotVec::from_vec(vec![1]);
    /// let (a, b) = (v.load(), v.load());
    /// assert!(Snapshot::ptr_eq(&a, &b));
    /// v.push(2);
    /// assert!(!Snapshot::ptr_eq(&a, &v.load()));
    /// ```
    pub fn ptr_eq(a: &Self, b: &Self) -> bool {
        Arc::ptr_eq(&a.items, &b.items)
    }
}

impl<T> Deref for Snapshot<T> {
    type Target = [T];

    #[inline]
    fn deref(&self) -> &[T] {
        self.as_slice()
    }
}

impl<T> AsRef<[T]> for Snapshot<T> {
    fn as_ref(&self) -> &[T] {
        self.as_slice()
    }
}

impl<T> Clone for Snapshot<T> {
    fn clone(&self) -> Self {
        Self {
            items: ArcCell::duplicate(&self.items),
        }
    }
}

impl<'a, T> IntoIterator for &'a Snapshot<T> {
    type Item = &'a T;
    type IntoIter = core::slice::Iter<'a, T>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl<T: fmt::Debug> fmt::Debug for Snapshot<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl<T: PartialEq> PartialEq for Snapshot<T> {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl<T: Eq> Eq for Snapshot<T> {}
