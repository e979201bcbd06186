//! The SPSC channel's waiting operations, one pair each way as for the MPMC ring
//! (`mpmc/waiting.rs`): blocking for as long as a [`Wait`](crate::policy::Wait)
//! says (std), async (`core::task`) and strategy-driven (`no_std`), all through the
//! ring's eventcount (the `wait` module).

use core::fmt;
use core::future::Future;
use core::pin::Pin;
use core::ptr::NonNull;
use core::task::{Context, Poll};

use super::{Consumer, PopError, Producer, Shared};
#[cfg(feature = "std")]
use crate::policy::Wait;
#[cfg(feature = "std")]
use crate::ring::wait::block_on;
use crate::ring::wait::{cancel_waiter, poll_waiting, spin_on, WaitStrategy, Waiter};
#[cfg(feature = "std")]
use crate::ring::PushWaitError;
use crate::ring::{Closed, PushError};

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
    pub fn push_async(&mut self, item: T) -> PushFuture<'_, 'a, T> {
        PushFuture {
            producer: self,
            item: Some(item),
            waiter: Waiter::new(),
        }
    }
}

#[cfg(feature = "std")]
impl<T> Producer<'_, T> {
    /// Stores `item`, parking the thread while the ring is full (never evicting),
    /// for as long as `wait` says.
    ///
    /// # Errors
    ///
    /// [`PushWaitError::Timeout`] at the deadline, [`PushWaitError::Closed`] once
    /// the consumer is gone; both with the item.
    pub fn push_wait(&mut self, item: T, wait: Wait) -> Result<(), PushWaitError<T>> {
        let deadline = wait.deadline();
        let item = match self.attempt_push(item) {
            Ok(done) => return done.map_err(PushWaitError::from),
            Err(item) => item,
        };
        // SAFETY: `shared` is used only inside this call, while `self` lives.
        let shared = unsafe { detached(self.end.shared) };
        match block_on(&shared.control.producers, deadline, item, |item| {
            self.attempt_push(item)
        }) {
            Ok(done) => done.map_err(PushWaitError::from),
            Err(item) => Err(PushWaitError::Timeout(item)),
        }
    }
}

impl<'a, T> Consumer<'a, T> {
    /// One attempt for the waiting pops: `Err(())` means empty.
    fn attempt_pop(&mut self) -> Result<Result<T, PopError>, ()> {
        match self.pop() {
            Err(PopError::Empty) => Err(()),
            done => Ok(done),
        }
    }

    /// Takes the oldest item, calling `strategy` between attempts while the ring is
    /// empty (`no_std`).
    ///
    /// # Errors
    ///
    /// [`PopError::Closed`] once the producer is gone and the ring drained;
    /// [`PopError::Lagged`] as for [`pop`](Self::pop).
    pub fn pop_wait_with(&mut self, strategy: &mut impl WaitStrategy) -> Result<T, PopError> {
        spin_on(strategy, (), |()| self.attempt_pop())
    }

    /// A future that takes the oldest item, waiting while the ring is empty;
    /// resolves as [`pop_wait_with`](Self::pop_wait_with) returns. No allocation,
    /// cancel-safe.
    pub fn pop_async(&mut self) -> PopFuture<'_, 'a, T> {
        PopFuture {
            consumer: self,
            waiter: Waiter::new(),
        }
    }
}

#[cfg(feature = "std")]
impl<T> Consumer<'_, T> {
    /// Takes the oldest item, parking the thread while the ring is empty, for as
    /// long as `wait` says.
    ///
    /// # Errors
    ///
    /// [`PopError::Closed`] once the producer is gone and the ring drained;
    /// [`PopError::Lagged`] as for [`pop`](Self::pop); [`PopError::Timeout`] at
    /// the deadline.
    pub fn pop_wait(&mut self, wait: Wait) -> Result<T, PopError> {
        let deadline = wait.deadline();
        if let Ok(done) = self.attempt_pop() {
            return done;
        }
        // SAFETY: `shared` is used only inside this call, while `self` lives.
        let shared = unsafe { detached(self.end.shared) };
        block_on(&shared.control.consumers, deadline, (), |()| {
            self.attempt_pop()
        })
        .unwrap_or(Err(PopError::Timeout))
    }
}

/// Future of [`Producer::push_async`].
#[must_use = "futures do nothing unless polled"]
pub struct PushFuture<'p, 'a, T> {
    producer: &'p mut Producer<'a, T>,
    /// Not structurally pinned.
    item: Option<T>,
    /// Structurally pinned: linked into the producers' queue while pending.
    waiter: Waiter,
}

/// Future of [`Consumer::pop_async`].
#[must_use = "futures do nothing unless polled"]
pub struct PopFuture<'c, 'a, T> {
    consumer: &'c mut Consumer<'a, T>,
    /// Structurally pinned: linked into the consumers' queue while pending.
    waiter: Waiter,
}

impl<T> Future for PushFuture<'_, '_, T> {
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
            let pending = item.take().expect("PushFuture polled after it completed");
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

impl<T> Future for PopFuture<'_, '_, T> {
    type Output = Result<T, PopError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // SAFETY: as for `PushFuture`.
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

impl<T> Drop for PushFuture<'_, '_, T> {
    fn drop(&mut self) {
        cancel_waiter(&self.producer.end.shared().control.producers, &self.waiter);
    }
}

impl<T> Drop for PopFuture<'_, '_, T> {
    fn drop(&mut self) {
        cancel_waiter(&self.consumer.end.shared().control.consumers, &self.waiter);
    }
}

impl<T> fmt::Debug for PushFuture<'_, '_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("spsc::PushFuture").finish_non_exhaustive()
    }
}

impl<T> fmt::Debug for PopFuture<'_, '_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("spsc::PopFuture").finish_non_exhaustive()
    }
}
