//! The channel's waiting sends and receives: blocking for as long as a
//! [`Wait`](crate::policy::Wait) says (std), and async (`core::task`).
//!
//! A send waits for one of two things, each on its own queue: for room, on the
//! ring's producers' queue (the ring's pops notify it, so this is the ring's own
//! waiting), or for a pause to end, on the channel's queue (the ring knows nothing of
//! the pause; resuming and closing notify it). A send woken for one that finds the
//! other moves to the other queue. It passes no notification on when it moves: every
//! send of a channel has the same policy, so a send woken for room that finds the
//! pause would leave any other send waiting for room to find the pause too.

use core::fmt;
use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll};

use super::{Attempt, Backpressure, SendError};
#[cfg(feature = "std")]
use crate::policy::Wait;
use crate::ring::wait::{cancel_waiter, poll_waiting, WaitQueue, Waiter};
#[cfg(feature = "std")]
use crate::ring::PopWaitError;
use crate::ring::{Closed, Pushed};
use crate::sync::Ordering;

impl<T> Backpressure<T> {
    /// The queue a send held back by `paused` (the pause) or not (a full ring)
    /// waits on.
    fn queue(&self, paused: bool) -> &WaitQueue {
        if paused {
            &self.producers
        } else {
            self.ring.producers()
        }
    }

    /// Waits for the oldest item (`core::task`, any executor). Cancel-safe.
    ///
    /// # Errors
    ///
    /// [`Closed`] once the channel is closed and drained.
    pub async fn recv_async(&self) -> Result<T, Closed> {
        let item = self.ring.pop_async().await?;
        self.after_recv();
        Ok(item)
    }

    /// A future that sends `item`; under the waiting policies it waits while the
    /// channel is paused or the ring full, under the others it is ready at once
    /// with [`try_send`](Self::try_send)'s answer. No allocation, no runtime
    /// dependency; dropping it cancels the wait without losing a wake-up another
    /// producer needed (the item is dropped with the future).
    ///
    /// [`OverflowPolicy::BlockTimeout`](crate::OverflowPolicy::BlockTimeout)'s
    /// timeout does not apply: there is no timer in `core`. Wrap the future in your
    /// runtime's timeout.
    ///
    /// # Examples
    ///
    /// ```
    /// # fn block_on<F: core::future::Future>(f: F) -> F::Output {
    /// #     let mut f = core::pin::pin!(f);
    /// #     let mut cx = core::task::Context::from_waker(core::task::Waker::noop());
    /// #     loop { if let core::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) { return v } }
    /// # }
    /// use membound::backpressure::{Backpressure, BackpressureConfig};
    /// use membound::ring::Pushed;
    ///
    /// let channel = Backpressure::new(BackpressureConfig::new(8))?;
    /// block_on(async {
    ///     assert_eq!(channel.send_async("hi").await?, Pushed::Stored);
    ///     assert_eq!(channel.recv_async().await?, "hi");
    ///     Ok::<(), Box<dyn std::error::Error>>(())
    /// })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn send_async(&self, item: T) -> SendFuture<'_, T> {
        SendFuture {
            channel: self,
            item: Some(item),
            waiter: Waiter::new(),
            on_pause_queue: false,
            blocked_since: None,
        }
    }
}

#[cfg(feature = "std")]
impl<T> Backpressure<T> {
    /// Sends under the channel's policy: [`Block`](crate::OverflowPolicy::Block)
    /// waits while the channel is paused or the ring full,
    /// [`BlockTimeout`](crate::OverflowPolicy::BlockTimeout)`(d)` for at most `d`;
    /// the others never wait, paused or not. As [`send_wait`](Self::send_wait) with
    /// the policy's wait.
    ///
    /// # Errors
    ///
    /// [`SendError::Full`] under `Reject` when the ring is full, and
    /// [`SendError::Paused`] when the channel is paused,
    /// [`SendError::Timeout`] when a `BlockTimeout` wait ran out,
    /// [`SendError::Closed`] once closed (also while waiting); each hands the item
    /// back.
    ///
    /// # Examples
    ///
    /// ```
    /// use membound::backpressure::{Backpressure, BackpressureConfig, WaterMarks};
    /// use membound::policy::Wait;
    ///
    /// let channel = Backpressure::new(
    ///     BackpressureConfig::new(8).with_water_marks(WaterMarks::new(0.25, 0.5)?),
    /// )?;
    /// std::thread::scope(|s| {
    ///     s.spawn(|| {
    ///         for i in 0..1000 {
    ///             channel.send(i).unwrap(); // pauses at 4 items until drained to 2
    ///         }
    ///         channel.close();
    ///     });
    ///     let mut sum = 0;
    ///     while let Ok(i) = channel.recv_wait(Wait::Forever) {
    ///         sum += i;
    ///     }
    ///     assert_eq!(sum, 499_500);
    /// });
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn send(&self, item: T) -> Result<Pushed, SendError<T>> {
        self.send_wait(item, self.policy.wait().unwrap_or(Wait::Forever))
    }

    /// Sends, waiting as `wait` says (in place of a `BlockTimeout`'s own time) while
    /// the channel is paused or full, under the waiting policies; under the others
    /// it never waits, as [`send`](Self::send).
    ///
    /// # Errors
    ///
    /// As [`send`](Self::send), with [`SendError::Timeout`] at the deadline.
    pub fn send_wait(&self, item: T, wait: Wait) -> Result<Pushed, SendError<T>> {
        let deadline = wait.deadline();
        let mut held = match self.attempt(item) {
            Attempt::Done(done) => return done,
            held => held,
        };
        self.blocked.fetch_add(1, Ordering::Relaxed);
        let since = self.now();
        let outcome = loop {
            let (paused, item) = match held {
                Attempt::Done(done) => break Ok(done),
                Attempt::Paused(item) => (true, item),
                Attempt::Full(item) => (false, item),
            };
            // Wait on the queue of what holds the send back; an attempt held back
            // by the other reason ends this wait and starts one on the other queue.
            let waited =
                crate::ring::wait::block_on(self.queue(paused), deadline, item, |item| match self
                    .attempt(item)
                {
                    Attempt::Paused(item) if paused => Err(item),
                    Attempt::Full(item) if !paused => Err(item),
                    other => Ok(other),
                });
            match waited {
                Ok(next) => held = next,
                Err(item) => break Err(item),
            }
        };
        self.account_blocked(since);
        match outcome {
            Ok(done) => done,
            Err(item) => {
                self.timeouts.fetch_add(1, Ordering::Relaxed);
                Err(SendError::Timeout(item))
            }
        }
    }

    /// Takes the oldest item, parking the thread while the channel is empty, for as
    /// long as `wait` says.
    ///
    /// # Errors
    ///
    /// [`PopWaitError::Timeout`] at the deadline, [`PopWaitError::Closed`] once
    /// closed and drained.
    pub fn recv_wait(&self, wait: Wait) -> Result<T, PopWaitError> {
        let item = self.ring.pop_wait(wait)?;
        self.after_recv();
        Ok(item)
    }
}

/// Future of [`Backpressure::send_async`].
#[must_use = "futures do nothing unless polled"]
pub struct SendFuture<'a, T> {
    channel: &'a Backpressure<T>,
    /// The item until it is sent or handed back. Not structurally pinned.
    item: Option<T>,
    /// Structurally pinned: linked into `channel.queue(on_pause_queue)` while
    /// pending.
    waiter: Waiter,
    /// Which queue the waiter uses: the channel's (the pause) or the ring's (room).
    /// Changed only while the waiter is in no queue.
    on_pause_queue: bool,
    /// The clock's time at the first `Pending`, to account blocked time.
    blocked_since: Option<Option<u64>>,
}

impl<T> Future for SendFuture<'_, T> {
    type Output = Result<Pushed, SendError<T>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // SAFETY: `waiter` is the only structurally pinned field and is only used
        // through the `Pin` built below; `item`, `on_pause_queue` and
        // `blocked_since` are not pinned and move freely; nothing is moved out of
        // `self`.
        let this = unsafe { self.get_unchecked_mut() };
        let channel = this.channel;
        // SAFETY: see above; `this` is never moved.
        let waiter = unsafe { Pin::new_unchecked(&this.waiter) };
        let item = &mut this.item;
        let poll = loop {
            let paused = this.on_pause_queue;
            // `Some(None)`: held back by the other reason; `poll_waiting` has taken
            // the waiter out of this queue, so it may move to the other one.
            let poll = poll_waiting(channel.queue(paused), waiter, cx, || {
                let pending = item.take().expect("SendFuture polled after it completed");
                match channel.attempt(pending) {
                    Attempt::Done(done) => Some(Some(done)),
                    Attempt::Paused(back) => {
                        *item = Some(back);
                        (!paused).then_some(None)
                    }
                    Attempt::Full(back) => {
                        *item = Some(back);
                        paused.then_some(None)
                    }
                }
            });
            match poll {
                Poll::Ready(Some(done)) => break Poll::Ready(done),
                Poll::Ready(None) => this.on_pause_queue = !paused,
                Poll::Pending => break Poll::Pending,
            }
        };
        match (&poll, this.blocked_since) {
            (Poll::Pending, None) => {
                channel.blocked.fetch_add(1, Ordering::Relaxed);
                this.blocked_since = Some(channel.now());
            }
            (Poll::Ready(_), Some(since)) => channel.account_blocked(since),
            _ => {}
        }
        poll
    }
}

impl<T> Drop for SendFuture<'_, T> {
    fn drop(&mut self) {
        cancel_waiter(self.channel.queue(self.on_pause_queue), &self.waiter);
    }
}

impl<T> fmt::Debug for SendFuture<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SendFuture")
            .field("pending", &self.item.is_some())
            .finish_non_exhaustive()
    }
}
