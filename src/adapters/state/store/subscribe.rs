//! Subscribing to the store's changes: the backlog from the history, then the live
//! changes, without a gap or a repeat.

use alloc::vec::Vec;

use json_patch::PatchOperation;

use super::StateStore;
use crate::adapters::state::subscription::{
    CallbackSubscription, Change as SubscribedChange, RecvError, SubscribeError, SubscribeOptions,
    Subscription, SubscriptionMetrics,
};
use crate::adapters::state::Revision;
use crate::clock::Clock;

impl<C: Clock + Send + Sync + 'static> StateStore<C> {
    /// Subscribes to the changes at `pattern`: a segment-aware JSON Pointer pattern
    /// (`/user` matches `/user` and `/user/name`, not `/username`; `*` matches one
    /// segment; `""` matches everything). See [`subscription`](crate::adapters::state::subscription)
    /// for what matches, lag and expiry.
    ///
    /// With [`SubscribeOptions::from`] set to a revision, the changes after it come
    /// first (from the history), then every later one, without a gap or a repeat;
    /// without it, the subscription starts at the current revision.
    ///
    /// # Errors
    ///
    /// [`SubscribeError::History`] when `from` was compacted away (take a
    /// [`snapshot`](Self::snapshot) and subscribe from its revision) or is in the
    /// future; [`SubscribeError::Limit`] at the cap; the pattern and option errors
    /// of [`SubscribeError`].
    ///
    /// # Examples
    ///
    /// ```
    /// use membound::adapters::state::subscription::{RecvError, SubscribeOptions};
    /// use membound::adapters::state::{Revision, StateStore};
    ///
    /// let store = StateStore::new(Default::default())?;
    /// store.apply_json(r#"[{"op":"add","path":"/user","value":{"name":"Ada"}}]"#)?;
    /// let mut user = store.subscribe("/user", SubscribeOptions::new())?;
    /// let mut all = store.subscribe("", SubscribeOptions::new().with_from(Revision(0)))?;
    ///
    /// store.apply_json(r#"[{"op":"replace","path":"/user/name","value":"Grace"},
    ///                      {"op":"add","path":"/username","value":"g"}]"#)?;
    /// let change = user.try_recv()?.expect("a change at /user");
    /// assert_eq!(change.revision, Revision(2));
    /// assert_eq!(change.ops.len(), 1); // `/username` is another member
    ///
    /// // `all` started at revision 0: it gets revision 1 from the history, then 2.
    /// assert_eq!(all.recv()?.revision, Revision(1));
    /// assert_eq!(all.recv()?.revision, Revision(2));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn subscribe(
        &self,
        pattern: &str,
        options: SubscribeOptions,
    ) -> Result<Subscription, SubscribeError> {
        let Some(from) = options.from else {
            return self.subscriptions.subscribe(pattern, options, []);
        };
        // Under the sequencer lock: no commit is announced between reading the
        // backlog and registering, so nothing is missed or repeated.
        self.with_backlog(from, |backlog| {
            let backlog: Vec<(Revision, Vec<PatchOperation>)> =
                backlog.map_err(SubscribeError::History)?.collect();
            self.subscriptions.subscribe(
                pattern,
                options,
                backlog
                    .iter()
                    .map(|(revision, ops)| (*revision, ops.as_slice())),
            )
        })
    }

    /// As [`subscribe`](Self::subscribe), calling `callback` with each change (or
    /// the receive error: a lag report, then the end) on a thread of the
    /// subscription's own: never the writer's, never under a store lock, so the
    /// callback may use the store. A panic in it is caught, counted and ends that
    /// subscription only.
    ///
    /// # Errors
    ///
    /// As [`subscribe`](Self::subscribe), and [`SubscribeError::Thread`] when the
    /// thread cannot be started.
    pub fn subscribe_with<F>(
        &self,
        pattern: &str,
        options: SubscribeOptions,
        callback: F,
    ) -> Result<CallbackSubscription, SubscribeError>
    where
        F: FnMut(Result<SubscribedChange, RecvError>) + Send + 'static,
    {
        // The thread starts outside the sequencer lock.
        CallbackSubscription::spawn(self.subscribe(pattern, options)?, callback)
    }

    /// A snapshot of the subscription counters.
    pub fn subscription_metrics(&self) -> SubscriptionMetrics {
        self.subscriptions.metrics()
    }
}
