//! The ring's waiting operations, one pair each way: blocking for as long as a
//! [`Wait`](crate::policy::Wait) says (std), async (`core::task`) and
//! strategy-driven (`no_std`). All go through the one mechanism in
//! [`wait`](super::super::wait): producers wait on `head.producers` and are woken by
//! pops, consumers wait on `tail.consumers` and are woken by pushes, and `close` wakes
//! both.

use core::fmt;
use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll};

use super::{RingCore, Storage};
#[cfg(feature = "std")]
use crate::policy::Wait;
#[cfg(feature = "std")]
use crate::ring::wait::block_on;
use crate::ring::wait::{cancel_waiter, poll_waiting, spin_on, Waiter};
use crate::ring::{Closed, PopError, PushError, WaitStrategy};
#[cfg(feature = "std")]
use crate::ring::{PopWaitError, PushWaitError};
#[cfg(feature = "std")]
use crate::sync::Ordering;

impl<T, S: Storage<T>> RingCore<T, S> {
    /// One non-waiting push attempt for the waiting pushes: `Err(item)` means full.
    #[inline]
    fn attempt_push(&self, item: T) -> Result<Result<(), Closed<T>>, T> {
        match self.push_inner::<false>(item) {
            Ok(_) => Ok(Ok(())),
            Err(PushError::Full(item)) => Err(item),
            Err(PushError::Closed(item)) => Ok(Err(Closed(item))),
        }
    }

    /// The producers' wait queue, for a structure over the ring that waits for room
    /// with an attempt of its own (the backpressure channel); pops notify it.
    #[cfg(feature = "alloc")]
    pub(crate) fn producers(&self) -> &crate::ring::wait::WaitQueue {
        &self.head.producers
    }

    /// One non-waiting pop attempt for the waiting pops: `None` means empty.
    #[inline]
    fn attempt_pop(&self) -> Option<Result<T, Closed>> {
        match self.pop() {
            Ok(item) => Some(Ok(item)),
            Err(PopError::Closed) => Some(Err(Closed(()))),
            Err(PopError::Empty) => None,
        }
    }

    /// Stores `item`, waiting for room as long as the ring is full, by calling
    /// `strategy` between attempts: the `no_std` way to wait (spin, yield, or sleep
    /// until an interrupt). Registers with nothing, so only the attempts cost.
    ///
    /// # Errors
    ///
    /// [`Closed`] with the item once the ring is closed.
    ///
    /// # Examples
    ///
    /// ```
    /// use membound::ring::{Spin, StaticRing};
    ///
    /// static RING: StaticRing<u32, 2> = StaticRing::new();
    /// RING.push_wait_with(1, &mut Spin::new()).unwrap();
    /// assert_eq!(RING.try_pop(), Some(1));
    /// ```
    pub fn push_wait_with(
        &self,
        item: T,
        strategy: &mut impl WaitStrategy,
    ) -> Result<(), Closed<T>> {
        spin_on(strategy, item, |item| self.attempt_push(item))
    }

    /// Takes the oldest item, waiting while the ring is empty by calling `strategy`
    /// between attempts (`no_std`; see [`push_wait_with`](Self::push_wait_with)).
    ///
    /// # Errors
    ///
    /// [`Closed`] once the ring is closed and drained.
    ///
    /// # Examples
    ///
    /// ```
    /// use membound::ring::{Closed, Ring, Spin};
    ///
    /// let ring = Ring::new(2)?;
    /// ring.try_push('x')?;
    /// ring.close();
    /// assert_eq!(ring.pop_wait_with(&mut Spin::new()), Ok('x'));
    /// assert_eq!(ring.pop_wait_with(&mut Spin::new()), Err(Closed(())));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn pop_wait_with(&self, strategy: &mut impl WaitStrategy) -> Result<T, Closed> {
        spin_on(strategy, (), |()| self.attempt_pop().ok_or(()))
    }

    /// A future that stores `item`, waiting for room as long as the ring is full.
    ///
    /// Works on any executor and without `std`: the future registers its task's
    /// `Waker` with the ring (no allocation; the registration lives in the future) and
    /// a pop or [`close`](Self::close) wakes it. Dropping the future cancels the wait
    /// without losing a wake-up that another waiter needed, and hands nothing back:
    /// the item is dropped with the future.
    ///
    /// Resolves to `Err(Closed(item))` once the ring is closed.
    ///
    /// # Examples
    ///
    /// ```
    /// # fn block_on<F: core::future::Future>(f: F) -> F::Output {
    /// #     let mut f = core::pin::pin!(f);
    /// #     let mut cx = core::task::Context::from_waker(core::task::Waker::noop());
    /// #     loop { if let core::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) { return v } }
    /// # }
    /// use membound::ring::Ring;
    ///
    /// let ring = Ring::new(1)?;
    /// block_on(async {
    ///     ring.push_async("hello").await?;
    ///     assert_eq!(ring.pop_async().await?, "hello");
    ///     Ok::<(), Box<dyn std::error::Error>>(())
    /// })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn push_async(&self, item: T) -> PushFuture<'_, T, S> {
        PushFuture {
            ring: self,
            item: Some(item),
            waiter: Waiter::new(),
        }
    }

    /// A future that takes the oldest item, waiting while the ring is empty.
    ///
    /// As [`push_async`](Self::push_async): no allocation, no runtime dependency,
    /// cancel-safe (dropping the future before it resolves loses no item and no
    /// wake-up). Resolves to `Err(Closed(()))` once the ring is closed and drained.
    pub fn pop_async(&self) -> PopFuture<'_, T, S> {
        PopFuture {
            ring: self,
            waiter: Waiter::new(),
        }
    }
}

#[cfg(feature = "std")]
impl<T, S: Storage<T>> RingCore<T, S> {
    /// Stores `item`, parking the thread as long as the ring is full, for as long
    /// as `wait` says.
    ///
    /// Spins briefly, then sleeps until a pop makes room (or `close`); costs pushes
    /// and pops nothing while nobody waits (one load each).
    ///
    /// # Errors
    ///
    /// [`PushWaitError::Timeout`] when the ring stayed full until the deadline
    /// (counted in [`RingMetrics::timeouts`](super::RingMetrics::timeouts)),
    /// [`PushWaitError::Closed`] once the ring is closed, including while waiting;
    /// both return the item.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use membound::policy::Wait;
    /// use membound::ring::{PushWaitError, Ring};
    ///
    /// let ring = Ring::new(1)?;
    /// std::thread::scope(|s| {
    ///     s.spawn(|| {
    ///         for i in 0..100 {
    ///             ring.push_wait(i, Wait::Forever).unwrap(); // waits whenever the consumer lags
    ///         }
    ///         ring.close();
    ///     });
    ///     let mut sum = 0;
    ///     while let Ok(i) = ring.pop_wait(Wait::Forever) {
    ///         sum += i;
    ///     }
    ///     assert_eq!(sum, 4950);
    /// });
    ///
    /// let full = Ring::new(1)?;
    /// full.push_wait(1, Wait::Timeout(Duration::from_millis(10)))?;
    /// assert_eq!(
    ///     full.push_wait(2, Wait::Timeout(Duration::from_millis(10))),
    ///     Err(PushWaitError::Timeout(2))
    /// );
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn push_wait(&self, item: T, wait: Wait) -> Result<(), PushWaitError<T>> {
        let deadline = wait.deadline();
        let item = match self.attempt_push(item) {
            Ok(done) => return done.map_err(PushWaitError::from),
            Err(item) => item,
        };
        match block_on(&self.head.producers, deadline, item, |item| {
            self.attempt_push(item)
        }) {
            Ok(done) => done.map_err(PushWaitError::from),
            Err(item) => {
                self.tail.timeouts.fetch_add(1, Ordering::Relaxed);
                Err(PushWaitError::Timeout(item))
            }
        }
    }

    /// Takes the oldest item, parking the thread while the ring is empty, for as
    /// long as `wait` says.
    ///
    /// # Errors
    ///
    /// [`PopWaitError::Timeout`] when nothing arrived before the deadline (counted
    /// in [`RingMetrics::timeouts`](super::RingMetrics::timeouts)),
    /// [`PopWaitError::Closed`] once the ring is closed and drained, including while
    /// waiting.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use membound::policy::Wait;
    /// use membound::ring::{PopWaitError, Ring};
    ///
    /// let ring = Ring::<u8>::new(4)?;
    /// assert_eq!(
    ///     ring.pop_wait(Wait::Timeout(Duration::from_millis(10))),
    ///     Err(PopWaitError::Timeout)
    /// );
    /// ring.close();
    /// assert_eq!(ring.pop_wait(Wait::Forever), Err(PopWaitError::Closed));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn pop_wait(&self, wait: Wait) -> Result<T, PopWaitError> {
        let deadline = wait.deadline();
        if let Some(done) = self.attempt_pop() {
            return done.map_err(PopWaitError::from);
        }
        match block_on(&self.tail.consumers, deadline, (), |()| {
            self.attempt_pop().ok_or(())
        }) {
            Ok(done) => done.map_err(PopWaitError::from),
            Err(()) => {
                self.tail.timeouts.fetch_add(1, Ordering::Relaxed);
                Err(PopWaitError::Timeout)
            }
        }
    }
}

/// Future of [`RingCore::push_async`]: resolves to `Ok(())` once the item is stored,
/// or to `Err(Closed(item))`.
#[must_use = "futures do nothing unless polled"]
pub struct PushFuture<'a, T, S: Storage<T>> {
    ring: &'a RingCore<T, S>,
    /// The item until it is stored or handed back. Not structurally pinned.
    item: Option<T>,
    /// Structurally pinned: linked into `ring.head.producers` while pending.
    waiter: Waiter,
}

/// Future of [`RingCore::pop_async`]: resolves to the oldest item, or to
/// `Err(Closed(()))` once the ring is closed and drained.
#[must_use = "futures do nothing unless polled"]
pub struct PopFuture<'a, T, S: Storage<T>> {
    ring: &'a RingCore<T, S>,
    /// Structurally pinned: linked into `ring.tail.consumers` while pending.
    waiter: Waiter,
}

impl<T, S: Storage<T>> Future for PushFuture<'_, T, S> {
    type Output = Result<(), Closed<T>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // SAFETY: `waiter` is the only structurally pinned field and is only used
        // through the `Pin` built below; `item` is moved in and out freely (it is not
        // pinned), and nothing is moved out of `self`.
        let this = unsafe { self.get_unchecked_mut() };
        let ring = this.ring;
        // SAFETY: see above; `this` is never moved.
        let waiter = unsafe { Pin::new_unchecked(&this.waiter) };
        let item = &mut this.item;
        poll_waiting(&ring.head.producers, waiter, cx, || {
            let pending = item.take().expect("PushFuture polled after it completed");
            match ring.attempt_push(pending) {
                Ok(done) => Some(done),
                Err(back) => {
                    *item = Some(back);
                    None
                }
            }
        })
    }
}

impl<T, S: Storage<T>> Future for PopFuture<'_, T, S> {
    type Output = Result<T, Closed>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let ring = self.ring;
        // SAFETY: a projection to the structurally pinned `waiter`; nothing is moved.
        let waiter = unsafe { self.into_ref().map_unchecked(|this| &this.waiter) };
        poll_waiting(&ring.tail.consumers, waiter, cx, || ring.attempt_pop())
    }
}

impl<T, S: Storage<T>> Drop for PushFuture<'_, T, S> {
    fn drop(&mut self) {
        cancel_waiter(&self.ring.head.producers, &self.waiter);
    }
}

impl<T, S: Storage<T>> Drop for PopFuture<'_, T, S> {
    fn drop(&mut self) {
        cancel_waiter(&self.ring.tail.consumers, &self.waiter);
    }
}

impl<T, S: Storage<T>> fmt::Debug for PushFuture<'_, T, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PushFuture")
            .field("pending", &self.item.is_some())
            .finish_non_exhaustive()
    }
}

impl<T, S: Storage<T>> fmt::Debug for PopFuture<'_, T, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PopFuture").finish_non_exhaustive()
    }
}
