//! Batches and chunks of the SPSC channel: pushes and pops of many items that
//! publish their index once per batch, and in-place reads and writes.

use core::fmt;
#[cfg(not(loom))]
use core::mem::MaybeUninit;

#[cfg(not(loom))]
use super::ChunkError;
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
        let room = self.room();
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
        let mut chunk = self.reserve(items.len());
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

    /// Reserves exactly `n` free slots for zero-copy writing; they are published
    /// by [`WriteChunkUninit::commit`] (or `commit_all`, or
    /// [`fill_from_iter`](WriteChunkUninit::fill_from_iter)). Never evicts.
    ///
    /// # Errors
    ///
    /// [`ChunkError::TooFewSlots`] with the number free when fewer than `n` are
    /// (ask for [`slots`](Self::slots) to take what there is).
    ///
    /// # Examples
    ///
    /// ```
    /// use membound::ring::spsc::{self, ChunkError};
    ///
    /// let (mut tx, mut rx) = spsc::channel(4)?;
    /// assert_eq!(tx.write_chunk_uninit(5).unwrap_err(), ChunkError::TooFewSlots(4));
    /// let chunk = tx.write_chunk_uninit(3)?;
    /// assert_eq!(chunk.fill_from_iter(10..), 3);
    /// assert_eq!(rx.pop(), Ok(10));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[cfg(not(loom))]
    pub fn write_chunk_uninit(
        &mut self,
        n: usize,
    ) -> Result<WriteChunkUninit<'_, 'a, T>, ChunkError> {
        let room = self.room();
        if room < n {
            return Err(ChunkError::TooFewSlots(room));
        }
        Ok(WriteChunkUninit {
            producer: self,
            len: n,
        })
    }

    /// Reserves exactly `n` free slots, each holding `T::default()`, for writing
    /// in place (rtrb's `write_chunk`); published by [`WriteChunk::commit`] or
    /// [`WriteChunk::commit_all`]. Slots not committed are dropped.
    ///
    /// # Errors
    ///
    /// [`ChunkError::TooFewSlots`] with the number free when fewer than `n` are.
    ///
    /// # Examples
    ///
    /// ```
    /// use membound::ring::spsc;
    ///
    /// let (mut tx, mut rx) = spsc::channel::<u32>(4)?;
    /// let mut chunk = tx.write_chunk(3)?;
    /// let (first, second) = chunk.as_mut_slices();
    /// for (i, slot) in first.iter_mut().chain(second).enumerate() {
    ///     *slot = i as u32 * 10;
    /// }
    /// chunk.commit(2); // the third slot is dropped, not published
    /// assert_eq!(rx.len(), 2);
    /// assert_eq!(rx.pop(), Ok(0));
    /// assert_eq!(rx.pop(), Ok(10));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[cfg(not(loom))]
    pub fn write_chunk(&mut self, n: usize) -> Result<WriteChunk<'_, 'a, T>, ChunkError>
    where
        T: Default,
    {
        let mut chunk = self.write_chunk_uninit(n)?;
        let (first, second) = chunk.as_mut_slices();
        for slot in first.iter_mut().chain(second.iter_mut()) {
            slot.write(T::default());
        }
        Ok(WriteChunk { chunk: Some(chunk) })
    }

    /// Up to `n` free slots (fewer if fewer are free).
    #[cfg(not(loom))]
    fn reserve(&mut self, n: usize) -> WriteChunkUninit<'_, 'a, T> {
        let n = n.min(self.room());
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

    /// Publishes every reserved slot, which the caller initialised.
    ///
    /// # Safety
    ///
    /// Every slot must be initialised.
    pub unsafe fn commit_all(self) {
        let n = self.len;
        // SAFETY: the caller initialised all `len` slots.
        unsafe { self.commit(n) }
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

#[cfg(not(loom))]
impl<T> fmt::Debug for WriteChunkUninit<'_, '_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WriteChunkUninit")
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

/// Free slots of a [`Producer`], each holding `T::default()`, reserved for writing
/// in place ([`Producer::write_chunk`]). Slots not committed are dropped with it.
/// Not available under loom.
#[cfg(not(loom))]
pub struct WriteChunk<'p, 'a, T> {
    /// `None` once committed.
    chunk: Option<WriteChunkUninit<'p, 'a, T>>,
}

#[cfg(not(loom))]
impl<T> WriteChunk<'_, '_, T> {
    /// Number of reserved slots.
    pub fn len(&self) -> usize {
        self.chunk.as_ref().map_or(0, WriteChunkUninit::len)
    }

    /// Whether no slot was reserved.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The reserved slots, in order, as two slices (the second is non-empty when
    /// the reservation wraps around the end of the buffer).
    pub fn as_mut_slices(&mut self) -> (&mut [T], &mut [T]) {
        match self.chunk.as_mut() {
            Some(chunk) => {
                let (first, second) = chunk.as_mut_slices();
                // SAFETY: every reserved slot was initialised by `write_chunk`, and
                // `MaybeUninit<T>` has `T`'s layout.
                unsafe {
                    (
                        &mut *(core::ptr::from_mut(first) as *mut [T]),
                        &mut *(core::ptr::from_mut(second) as *mut [T]),
                    )
                }
            }
            None => (&mut [], &mut []),
        }
    }

    /// Publishes the first `n` slots; the rest are dropped.
    ///
    /// # Panics
    ///
    /// If `n` is more than [`len`](Self::len).
    pub fn commit(mut self, n: usize) {
        let len = self.len();
        assert!(n <= len, "commit beyond the reserved chunk");
        if let Some(mut chunk) = self.chunk.take() {
            drop_tail(&mut chunk, n);
            // SAFETY: the first `n` slots hold the values `write_chunk` put there
            // (or the caller's replacements).
            unsafe { chunk.commit(n) };
        }
    }

    /// Publishes every slot.
    pub fn commit_all(self) {
        let n = self.len();
        self.commit(n);
    }
}

/// Drops the initialised slots of `chunk` from `from` on.
#[cfg(not(loom))]
fn drop_tail<T>(chunk: &mut WriteChunkUninit<'_, '_, T>, from: usize) {
    let (first, second) = chunk.as_mut_slices();
    for slot in first.iter_mut().chain(second.iter_mut()).skip(from) {
        // SAFETY: a `WriteChunk`'s slots are all initialised, and each is dropped
        // once: the chunk is committed (or dropped) right after.
        unsafe { slot.assume_init_drop() };
    }
}

#[cfg(not(loom))]
impl<T> Drop for WriteChunk<'_, '_, T> {
    fn drop(&mut self) {
        if let Some(mut chunk) = self.chunk.take() {
            drop_tail(&mut chunk, 0);
        }
    }
}

#[cfg(not(loom))]
impl<T> fmt::Debug for WriteChunk<'_, '_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WriteChunk")
            .field("len", &self.len())
            .finish_non_exhaustive()
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
                Ok(claimed) => return (claimed, lagged),
                Err(lag) => lagged += lag,
            }
        }
    }

    /// Pops up to `max` items, claiming their positions once for the whole batch.
    /// The iterator yields the claimed items in order; those not taken from it stay
    /// in the channel (as rtrb's chunk iterator leaves them), to be read next.
    /// Under `DropOldest`, items evicted before the batch are reported by
    /// [`PopBatch::lagged`].
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
    /// let mut rest = rx.pop_batch(10);
    /// assert_eq!(rest.len(), 2);
    /// assert_eq!(rest.next(), Some(4));
    /// drop(rest); // 5 was not taken: it stays
    /// assert_eq!(rx.pop(), Ok(5));
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
            let chunk = self.read_upto(out.len());
            let (first, second) = chunk.as_slices();
            out[..first.len()].copy_from_slice(first);
            out[first.len()..chunk.len()].copy_from_slice(second);
            let n = chunk.len();
            chunk.commit_all();
            n
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

    /// Exactly `n` stored items, claimed for reading in place, as rtrb's
    /// `read_chunk`: [`ReadChunk::commit`] (or `commit_all`, or iterating it)
    /// removes them; a chunk dropped without that leaves them in the channel (a
    /// peek at many).
    ///
    /// # Errors
    ///
    /// [`ChunkError::TooFewSlots`] with the number stored when fewer than `n` are
    /// (ask for [`len`](Self::len) to take what there is). A lag met on the way
    /// (`DropOldest`) is skipped; [`Producer::dropped`] counts every eviction.
    ///
    /// # Examples
    ///
    /// ```
    /// use membound::ring::spsc::{self, ChunkError};
    ///
    /// let (mut tx, mut rx) = spsc::channel(4)?;
    /// tx.push_iter(&mut (1..=3));
    /// assert_eq!(rx.read_chunk(4).unwrap_err(), ChunkError::TooFewSlots(3));
    /// let chunk = rx.read_chunk(3)?;
    /// assert_eq!(chunk.as_slices().0[0], 1);
    /// chunk.commit(1); // removes 1; 2 and 3 stay
    /// let rest: Vec<i32> = rx.read_chunk(2)?.into_iter().collect();
    /// assert_eq!(rest, [2, 3]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[cfg(not(loom))]
    pub fn read_chunk(&mut self, n: usize) -> Result<ReadChunk<'_, 'a, T>, ChunkError> {
        let (len, lagged) = self.claim_batch(n);
        if (len as usize) < n {
            let stored = self.len();
            self.unclaim();
            return Err(ChunkError::TooFewSlots(stored.min(n.saturating_sub(1))));
        }
        Ok(ReadChunk {
            consumer: self,
            len: len as usize,
            lagged,
        })
    }

    /// Up to `n` stored items, claimed.
    #[cfg(not(loom))]
    fn read_upto(&mut self, n: usize) -> ReadChunk<'_, 'a, T> {
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

impl<T> ExactSizeIterator for PopBatch<'_, '_, T> {}

impl<T> core::iter::FusedIterator for PopBatch<'_, '_, T> {}

impl<T> Drop for PopBatch<'_, '_, T> {
    fn drop(&mut self) {
        // Items not taken stay: their positions are given back (or stay claimed,
        // and are read next, if the producer evicted past them meanwhile).
        self.consumer.release();
        self.consumer.unclaim();
    }
}

impl<T> fmt::Debug for PopBatch<'_, '_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PopBatch")
            .field("remaining", &self.remaining)
            .finish_non_exhaustive()
    }
}

/// Stored items of a [`Consumer`], claimed for reading in place
/// ([`Consumer::read_chunk`]). [`commit`](Self::commit) removes the first `n`,
/// [`commit_all`](Self::commit_all) all, [`into_iter`](IntoIterator::into_iter)
/// moves them out; a chunk dropped otherwise leaves its items in the channel.
/// Under `DropOldest` the producer cannot evict claimed items while the chunk is
/// held (a full producer's pushes are handed back meanwhile). Not available under
/// loom.
#[cfg(not(loom))]
pub struct ReadChunk<'c, 'a, T> {
    consumer: &'c mut Consumer<'a, T>,
    len: usize,
    lagged: u64,
}

#[cfg(not(loom))]
impl<'c, 'a, T> ReadChunk<'c, 'a, T> {
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

    /// The first `len` slots from the consumer's index, as two runs of the buffer.
    fn runs(&self) -> (*mut T, usize, *mut T, usize) {
        let c = &*self.consumer;
        let cap = c.end.shared().cap as usize;
        let start = c.index as usize;
        let first = self.len.min(cap - start);
        let base = c.end.slots.as_ptr().cast::<T>();
        // SAFETY: `start < cap`, so `base + start` is inside the buffer.
        (unsafe { base.add(start) }, first, base, self.len - first)
    }

    /// The claimed items, in order, as two slices (the second is non-empty when the
    /// chunk wraps around the end of the buffer).
    pub fn as_slices(&self) -> (&[T], &[T]) {
        let (a, a_len, b, b_len) = self.runs();
        // SAFETY: `Slot<T>` is transparent over `MaybeUninit<T>` outside loom; the
        // claimed positions hold initialised items that no one else touches until
        // we release them.
        unsafe {
            (
                core::slice::from_raw_parts(a, a_len),
                core::slice::from_raw_parts(b, b_len),
            )
        }
    }

    /// The claimed items as two mutable slices, for work in place (decoding,
    /// decryption) before they are committed or left in the channel.
    pub fn as_mut_slices(&mut self) -> (&mut [T], &mut [T]) {
        let (a, a_len, b, b_len) = self.runs();
        // SAFETY: as `as_slices`, and the chunk borrows the consumer uniquely, so
        // these are the only references to the claimed items; the two runs do not
        // overlap.
        unsafe {
            (
                core::slice::from_raw_parts_mut(a, a_len),
                core::slice::from_raw_parts_mut(b, b_len),
            )
        }
    }

    /// Removes the first `n` items (dropping them) and frees their slots for the
    /// producer; the rest stay in the channel.
    ///
    /// # Panics
    ///
    /// If `n` is more than [`len`](Self::len).
    pub fn commit(mut self, n: usize) {
        assert!(n <= self.len, "commit beyond the chunk");
        let c = &mut *self.consumer;
        // Advanced before each drop, so a panicking destructor leaves no item to
        // be dropped twice.
        for _ in 0..n {
            let index = c.index;
            c.advance(1);
            if core::mem::needs_drop::<T>() {
                // SAFETY: the claimed position holds an initialised item, dropped
                // once: `advance` has moved past it.
                c.end
                    .slot(index)
                    .0
                    .with_mut(|p| unsafe { (*p).assume_init_drop() });
            }
        }
        if n > 0 {
            c.release();
        }
        self.len = 0;
    }

    /// Removes every item of the chunk (dropping them).
    pub fn commit_all(self) {
        let n = self.len;
        self.commit(n);
    }
}

#[cfg(not(loom))]
impl<T> Drop for ReadChunk<'_, '_, T> {
    fn drop(&mut self) {
        // Not committed (or the rest after a commit): the items stay.
        self.consumer.unclaim();
    }
}

#[cfg(not(loom))]
impl<T> fmt::Debug for ReadChunk<'_, '_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReadChunk")
            .field("len", &self.len)
            .field("lagged", &self.lagged)
            .finish_non_exhaustive()
    }
}

#[cfg(not(loom))]
impl<'c, 'a, T> IntoIterator for ReadChunk<'c, 'a, T> {
    type Item = T;
    type IntoIter = ReadChunkIntoIter<'c, 'a, T>;

    /// Moves the items out in order; those not iterated stay in the channel.
    fn into_iter(self) -> Self::IntoIter {
        let chunk = core::mem::ManuallyDrop::new(self);
        // SAFETY: `chunk` is never used or dropped again; the reference it held
        // moves into the iterator.
        let consumer = unsafe { core::ptr::read(&chunk.consumer) };
        ReadChunkIntoIter {
            consumer,
            remaining: chunk.len,
            iterated: 0,
        }
    }
}

/// The items of a [`ReadChunk`], moved out in order. Dropping it frees the slots of
/// the items iterated; the others stay in the channel.
#[cfg(not(loom))]
pub struct ReadChunkIntoIter<'c, 'a, T> {
    consumer: &'c mut Consumer<'a, T>,
    remaining: usize,
    iterated: usize,
}

#[cfg(not(loom))]
impl<T> ReadChunkIntoIter<'_, '_, T> {
    /// Items moved out so far.
    pub fn iterated(&self) -> usize {
        self.iterated
    }
}

#[cfg(not(loom))]
impl<T> Iterator for ReadChunkIntoIter<'_, '_, T> {
    type Item = T;

    fn next(&mut self) -> Option<T> {
        if self.remaining == 0 {
            return None;
        }
        let c = &mut *self.consumer;
        // SAFETY: the chunk claimed `remaining` written positions from `head`.
        let item = c
            .end
            .slot(c.index)
            .0
            .with(|p| unsafe { p.read().assume_init() });
        c.advance(1);
        self.remaining -= 1;
        self.iterated += 1;
        Some(item)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}

#[cfg(not(loom))]
impl<T> ExactSizeIterator for ReadChunkIntoIter<'_, '_, T> {}

#[cfg(not(loom))]
impl<T> core::iter::FusedIterator for ReadChunkIntoIter<'_, '_, T> {}

#[cfg(not(loom))]
impl<T> Drop for ReadChunkIntoIter<'_, '_, T> {
    fn drop(&mut self) {
        if self.iterated > 0 {
            self.consumer.release();
        }
        self.consumer.unclaim();
    }
}

#[cfg(not(loom))]
impl<T> fmt::Debug for ReadChunkIntoIter<'_, '_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReadChunkIntoIter")
            .field("remaining", &self.remaining)
            .field("iterated", &self.iterated)
            .finish_non_exhaustive()
    }
}

/// Bytes through an SPSC channel as a byte stream, as rtrb's: a write copies what
/// fits, a read what is stored.
#[cfg(all(feature = "std", not(loom)))]
impl std::io::Write for Producer<'_, u8> {
    /// Copies as many bytes as fit.
    ///
    /// # Errors
    ///
    /// [`WouldBlock`](std::io::ErrorKind::WouldBlock) when `buf` is not empty and
    /// no slot is free; [`BrokenPipe`](std::io::ErrorKind::BrokenPipe) when the
    /// consumer is gone.
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.is_abandoned() {
            return Err(std::io::ErrorKind::BrokenPipe.into());
        }
        let n = self.push_slice(buf);
        if n == 0 && !buf.is_empty() {
            return Err(std::io::ErrorKind::WouldBlock.into());
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(all(feature = "std", not(loom)))]
impl std::io::Read for Consumer<'_, u8> {
    /// Copies as many stored bytes as fit; `Ok(0)` once the producer is gone and
    /// everything is read (end of stream).
    ///
    /// # Errors
    ///
    /// [`WouldBlock`](std::io::ErrorKind::WouldBlock) when `buf` is not empty,
    /// nothing is stored, and the producer is still there.
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.pop_slice(buf);
        if n == 0 && !buf.is_empty() && !self.is_abandoned() {
            return Err(std::io::ErrorKind::WouldBlock.into());
        }
        Ok(n)
    }
}
