//! A slot and its state word, and the guards and the join step of the slot protocol
//! described on [`TtlTableCore`](super::TtlTableCore).

use core::fmt;
use core::mem::MaybeUninit;

use crate::sync::{const_unless_loom, AtomicU64, Backoff, Ordering, UnsafeCell};

// The slot state word: | tag: 32 | readers: 30 | kind: 2 |.
pub(super) const KIND_MASK: u64 = 0b11;
/// Never held an entry since the last purge; ends every probe.
pub(super) const EMPTY: u64 = 0;
/// Holds a published entry; readers may join.
pub(super) const READY: u64 = 1;
/// Owned by one writer: being vacated (its entry is still there, readers draining)
/// or, briefly, claimed by a cleaner that may put it back. Readers skip it.
pub(super) const BUSY: u64 = 2;
/// Held an entry once; probes continue past it. Reusable by inserts.
pub(super) const TOMB: u64 = 3;
pub(super) const READER: u64 = 1 << 2;
pub(super) const READERS_MASK: u64 = ((1 << 30) - 1) << 2;

#[inline(always)]
pub(super) const fn kind(s: u64) -> u64 {
    s & KIND_MASK
}
#[inline(always)]
pub(super) const fn readers(s: u64) -> u64 {
    (s & READERS_MASK) >> 2
}
#[inline(always)]
pub(super) const fn tag(s: u64) -> u32 {
    (s >> 32) as u32
}
#[inline(always)]
pub(super) const fn word(tag: u32, kind: u64) -> u64 {
    ((tag as u64) << 32) | kind
}

/// One entry's storage. Opaque: it only appears in storage types.
///
/// Aligned to 32 bytes so that a slot never straddles two cache lines: a probe that
/// hits costs one miss. (For `u64 -> u64` a slot is exactly 32 bytes.)
#[repr(align(32))]
pub struct Slot<K, V> {
    /// The state word `| tag | readers | kind |`.
    pub(super) state: AtomicU64,
    /// Tick at which the entry expires. Written by the slot's writer before
    /// publishing, and by `touch` while holding a read.
    pub(super) expires: AtomicU64,
    /// Initialised exactly while the slot's state is `READY`, or `BUSY` between a
    /// doom and the move-out (or between the write and the publish of an in-place
    /// refill).
    pub(super) entry: UnsafeCell<MaybeUninit<(K, V)>>,
}

impl<K, V> Slot<K, V> {
    const_unless_loom! {
        pub(super) fn new() -> Self {
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

/// Leaves a slot's readers on drop, also when a user's `Eq` or `Clone` panics.
pub(super) struct ReadGuard<'a>(&'a AtomicU64);

impl Drop for ReadGuard<'_> {
    #[inline(always)]
    fn drop(&mut self) {
        // Release: the reader's accesses to the entry happen before a vacating
        // writer's Acquire load that sees the count at zero.
        self.0.fetch_sub(READER, Ordering::Release);
    }
}

/// Holds a segment's writer lock; unlocks on drop, also on a panicking `Eq`.
pub(super) struct LockGuard<'a>(&'a AtomicU64);

impl<'a> LockGuard<'a> {
    #[inline]
    pub(super) fn lock(lock: &'a AtomicU64) -> Self {
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
    pub(super) fn try_lock(lock: &'a AtomicU64) -> Option<Self> {
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
pub(super) enum Step<'a> {
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
pub(super) fn join(state: &AtomicU64, tag: u32) -> Step<'_> {
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
