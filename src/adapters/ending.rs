//! What the adapters' subscriptions share: a queue whose end is decided once, by
//! the first cause, and the running totals they count with.

use crate::ring::Ring;
use crate::sync::{AtomicU64, AtomicU8, Ordering};

/// The end of a subscription's queue: open until the first cause ends it, which
/// closes the queue. A cause is the adapter's own `#[repr(u8)]` value, never
/// [`OPEN`](Self::OPEN).
pub(crate) struct Ending(AtomicU8);

impl Ending {
    /// The cause of a queue not ended yet.
    pub(crate) const OPEN: u8 = 0;

    /// An open end.
    pub(crate) const fn new() -> Self {
        Self(AtomicU8::new(Self::OPEN))
    }

    /// The cause that ended the queue, or [`OPEN`](Self::OPEN).
    pub(crate) fn cause(&self) -> u8 {
        self.0.load(Ordering::Acquire)
    }

    /// Whether no cause has ended the queue yet.
    #[cfg(feature = "ws")]
    pub(crate) fn is_open(&self) -> bool {
        self.cause() == Self::OPEN
    }

    /// Ends the queue for `cause` unless it already ended; returns whether this call
    /// ended it. Closing the queue wakes a waiting receiver; what the queue holds is
    /// discarded unless `drain` (the receiver may still take it).
    pub(crate) fn end<T>(&self, cause: u8, queue: &Ring<T>, drain: bool) -> bool {
        debug_assert_ne!(cause, Self::OPEN);
        let won = self
            .0
            .compare_exchange(Self::OPEN, cause, Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
        if won {
            queue.close();
            if !drain {
                queue.clear();
            }
        }
        won
    }
}

/// Adds `n` to a running total (no write for 0).
pub(crate) fn bump(counter: &AtomicU64, n: u64) {
    if n > 0 {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}
