//! The callback form of a subscription: a thread that receives and calls.

use alloc::sync::Arc;
use core::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::thread::{self, JoinHandle};

use super::{Change, End, Hub, RecvError, Shared, SubscribeError, Subscription};

/// A subscription that delivers its changes to a callback, on a thread of its own.
/// Dropping it unsubscribes.
///
/// The callback receives each change as `Ok(change)`, a lag report as
/// `Err(RecvError::Lagged { .. })` (then the changes that follow), and, as its last
/// call, `Err(RecvError::Closed)` when the store is dropped (after the changes
/// queued before) or `Err(RecvError::Expired)`. Once
/// [`unsubscribe`](Self::unsubscribe) returns the callback is not running and is
/// not called again; after a mere drop, a call already under way may still finish.
///
/// # Isolation
///
/// - The callback runs on the subscription's thread, never on the writer's and
///   never under a lock of the store or the registry: it may read or write the
///   store, subscribe, or unsubscribe (itself included) without deadlocking. A slow
///   callback only makes its own subscription lag.
/// - A callback that panics is caught: the panic is counted
///   ([`SubscriptionMetrics::callback_panics`](super::SubscriptionMetrics)), the
///   subscription is closed (its callback's state may be broken, so it is not
///   called again) and [`panicked`](Self::panicked) says so. Other subscriptions
///   and the store are unaffected. (With `panic = "abort"` there is nothing to
///   catch.)
/// - Its idle TTL runs only while the callback runs: a callback stuck for longer
///   than the TTL expires its subscription.
///
/// Each callback subscription costs one thread, and counts against the cap on
/// subscriptions like any other; for many subscriptions, receive from
/// [`Subscription`]s on threads or tasks of your own.
pub struct CallbackSubscription {
    pub(super) shared: Arc<Shared>,
    hub: Arc<dyn Hub>,
    thread: Option<JoinHandle<()>>,
}

impl CallbackSubscription {
    /// Starts the thread that feeds `sub`'s changes to `callback`.
    pub(crate) fn spawn<F>(sub: Subscription, callback: F) -> Result<Self, SubscribeError>
    where
        F: FnMut(Result<Change, RecvError>) + Send + 'static,
    {
        let shared = sub.shared.clone();
        let hub = sub.hub.clone();
        // If the spawn fails the closure, and with it `sub`, is dropped: that
        // unsubscribes.
        let thread = thread::Builder::new()
            .name(alloc::format!("membound-subscription-{}", shared.id))
            .spawn(move || run(sub, callback))
            .map_err(|e| SubscribeError::Thread(e.kind()))?;
        Ok(Self {
            shared,
            hub,
            thread: Some(thread),
        })
    }

    /// Whether the subscription has ended: unsubscribed, closed, expired, or its
    /// callback panicked.
    pub fn is_closed(&self) -> bool {
        self.shared.ended() != End::Open
    }

    /// Whether the callback panicked (which closed the subscription).
    pub fn panicked(&self) -> bool {
        self.shared.ended() == End::Panicked
    }

    /// Unsubscribes and waits until the callback is no longer running (unless
    /// called from the callback itself, which cannot wait for itself): once it
    /// returns, the callback is not running and will not be called again.
    pub fn unsubscribe(mut self) {
        self.hub.unsubscribe(&self.shared);
        if let Some(thread) = self.thread.take() {
            if thread.thread().id() != thread::current().id() {
                // The thread's outcome is already accounted for: a panic of the
                // callback was caught inside it.
                let _ = thread.join();
            }
        }
    }
}

impl Drop for CallbackSubscription {
    /// Unsubscribes without waiting for a callback call under way (use
    /// [`unsubscribe`](Self::unsubscribe) to wait for it).
    fn drop(&mut self) {
        self.hub.unsubscribe(&self.shared);
    }
}

impl fmt::Debug for CallbackSubscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallbackSubscription")
            .field("pattern", &self.shared.pattern)
            .field("closed", &self.is_closed())
            .field("panicked", &self.panicked())
            .finish()
    }
}

/// The subscription's thread: receive, call, until the end.
fn run<F>(mut sub: Subscription, mut callback: F)
where
    F: FnMut(Result<Change, RecvError>),
{
    loop {
        let event = sub.recv();
        let last = matches!(event, Err(RecvError::Closed | RecvError::Expired));
        if sub.shared.ended() == End::Unsubscribed {
            // Its owner ended it (maybe after this change was taken): no more calls,
            // not even for the end, which nobody is listening for.
            return;
        }
        if catch_unwind(AssertUnwindSafe(|| callback(event))).is_err() {
            sub.hub.note_panic();
            sub.shared.end(End::Panicked);
            return;
        }
        if last {
            return;
        }
    }
}
