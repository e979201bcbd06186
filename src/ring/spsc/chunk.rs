//! Batches and chunks of the SPSC channel: pushes and pops of many items that
//! publish their index once per batch, and in-place reads and writes.

use core::fmt;
#[cfg(not(loom))]
use core::mem::MaybeUninit;

use super::{Consumer, Producer};

impl<'a, T> Producer<'a, T> {
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
