//! Tests of the registry, which is crate-private until the store exposes it: lag and
//! resume, idle expiry on a manual clock, the cap, waking, callbacks, and a stress
//! test of subscribing and unsubscribing during publishing.

use alloc::string::ToString;
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;
use core::future::Future;
use core::pin::pin;
use core::task::{Context, Poll, Waker};
use core::time::Duration;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Mutex, RwLock};
use std::thread;

use json_patch::PatchOperation;
use serde_json::json;

use super::*;
use crate::clock::{ManualClock, MonotonicClock};

#[path = "../../../../tests/support/executor.rs"]
mod executor;

fn op(value: serde_json::Value) -> PatchOperation {
    serde_json::from_value(value).expect("a valid operation")
}

fn replace(path: &str, value: u64) -> PatchOperation {
    op(json!({"op": "replace", "path": path, "value": value}))
}

fn registry(config: SubscriptionConfig) -> (Subscriptions<Arc<ManualClock>>, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::default()); // 1 ms ticks
    (Subscriptions::new(config, clock.clone()).unwrap(), clock)
}

/// The idle TTL of the expiry tests: 100 ticks of the manual clock.
const TTL: Duration = Duration::from_millis(100);

fn live(subs: &Subscriptions<Arc<ManualClock>>, pattern: &str) -> Subscription {
    subs.subscribe(pattern, SubscribeOptions::new(), None)
        .unwrap()
}

#[test]
fn handles_and_errors_can_cross_threads() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Subscription>();
    send_sync::<CallbackSubscription>();
    send_sync::<Change>();
    send_sync::<RecvError>();
    send_sync::<SubscribeError>();
    send_sync::<Subscriptions<MonotonicClock>>();
}

#[test]
fn a_change_carries_only_the_matching_operations() {
    let (subs, _) = registry(SubscriptionConfig::new());
    let mut user = live(&subs, "/user");
    let mut all = live(&subs, "");
    let ops = [
        replace("/user/name", 1),
        replace("/username", 2),
        op(json!({"op": "test", "path": "/user/name", "value": 1})),
    ];
    subs.publish(Revision(1), &ops);
    subs.publish(Revision(2), &[replace("/other", 3)]);
    let change = user.try_recv().unwrap().unwrap();
    assert_eq!(change.revision, Revision(1));
    assert_eq!(change.ops, [ops[0].clone()]);
    assert_eq!(
        user.try_recv(),
        Ok(None),
        "/other and /username do not match"
    );
    assert_eq!(all.try_recv().unwrap().unwrap().ops, ops[..2]);
    assert_eq!(all.try_recv().unwrap().unwrap().revision, Revision(2));
    assert_eq!(all.last_revision(), Revision(2));
}

#[test]
fn a_live_subscription_starts_after_the_last_published_revision() {
    let (subs, _) = registry(SubscriptionConfig::new());
    subs.publish(Revision(7), &[replace("/a", 7)]);
    let mut sub = live(&subs, "/a");
    assert_eq!(sub.last_revision(), Revision(7));
    // A revision already published (a late duplicate) is not delivered.
    subs.publish(Revision(7), &[replace("/a", 7)]);
    subs.publish(Revision(8), &[replace("/a", 8)]);
    assert_eq!(sub.try_recv().unwrap().unwrap().revision, Revision(8));
    assert_eq!(sub.try_recv(), Ok(None));
}

#[test]
fn backlog_then_live_changes_each_exactly_once_in_order() {
    let (subs, _) = registry(SubscriptionConfig::new());
    let history: Vec<(Revision, Vec<PatchOperation>)> = (1..=5)
        .map(|r| (Revision(r), vec![replace("/a", r)]))
        .collect();
    for (r, ops) in &history[..4] {
        subs.publish(*r, ops);
    }
    // Revision 5 is in the history but not yet published when the subscriber
    // arrives (the store appends, then publishes).
    let backlog = history[2..].iter().map(|(r, ops)| (*r, ops.as_slice()));
    let options = SubscribeOptions::new().with_from(Revision(2));
    let mut sub = subs.subscribe("/a", options, backlog).unwrap();
    subs.publish(Revision(5), &history[4].1);
    subs.publish(Revision(6), &[replace("/a", 6)]);
    let got: Vec<u64> = core::iter::from_fn(|| sub.try_recv().unwrap())
        .map(|c| c.revision.0)
        .collect();
    assert_eq!(got, [3, 4, 5, 6]);
    assert_eq!(subs.metrics().delivered, 4);
}

#[test]
fn a_backlog_short_of_the_published_revisions_is_reported_as_lag() {
    let (subs, _) = registry(SubscriptionConfig::new());
    for r in 1..=4 {
        subs.publish(Revision(r), &[replace("/a", r)]);
    }
    // The store broke the contract: revisions 3 and 4 were published but are
    // missing from the backlog.
    let ops = [replace("/a", 2)];
    let backlog = [(Revision(2), &ops[..])];
    let options = SubscribeOptions::new().with_from(Revision(1));
    let mut sub = subs.subscribe("/a", options, backlog).unwrap();
    subs.publish(Revision(5), &[replace("/a", 5)]);
    assert_eq!(sub.try_recv().unwrap().unwrap().revision, Revision(2));
    assert_eq!(
        sub.try_recv(),
        Err(RecvError::Lagged {
            skipped: 2,
            resume: Revision(2)
        })
    );
    assert_eq!(sub.try_recv().unwrap().unwrap().revision, Revision(5));
}

#[test]
fn overflow_reports_lag_with_the_revision_to_resume_from_then_continues() {
    let (subs, _) = registry(SubscriptionConfig::new().with_queue_capacity(2));
    let mut sub = live(&subs, "/a");
    subs.publish(Revision(1), &[replace("/a", 1)]);
    assert_eq!(sub.try_recv().unwrap().unwrap().revision, Revision(1));
    for r in 2..=6 {
        subs.publish(Revision(r), &[replace("/a", r)]);
    }
    // 2, 3 and 4 were dropped; 5 and 6 are queued. Nothing after 1 was received.
    assert_eq!(
        sub.try_recv(),
        Err(RecvError::Lagged {
            skipped: 3,
            resume: Revision(1)
        })
    );
    assert_eq!(sub.len(), 2);
    assert_eq!(sub.recv().unwrap().revision, Revision(5));
    assert_eq!(sub.recv().unwrap().revision, Revision(6));
    subs.publish(Revision(7), &[replace("/a", 7)]);
    assert_eq!(sub.try_recv().unwrap().unwrap().revision, Revision(7));
    let m = subs.metrics();
    assert_eq!((m.delivered, m.lagged, m.published), (7, 3, 7));
}

#[test]
fn a_lag_before_anything_was_received_resumes_from_the_start() {
    let (subs, _) = registry(SubscriptionConfig::new().with_queue_capacity(1));
    subs.publish(Revision(10), &[replace("/b", 0)]);
    let mut sub = live(&subs, "/a");
    subs.publish(Revision(11), &[replace("/a", 11)]);
    subs.publish(Revision(12), &[replace("/a", 12)]);
    let lag = sub.try_recv().unwrap_err();
    assert_eq!(
        lag,
        RecvError::Lagged {
            skipped: 1,
            resume: Revision(10)
        }
    );
    assert!(
        lag.to_string().contains("resume after revision r10"),
        "{lag}"
    );
}

#[test]
fn an_active_subscriber_is_not_expired_and_an_idle_one_is() {
    let (subs, clock) = registry(SubscriptionConfig::new().with_idle_ttl(TTL));
    let mut active = live(&subs, "/a");
    let mut idle = live(&subs, "/a");
    for r in 1..=10 {
        clock.advance(60); // 600 ms in all, six TTLs
        subs.publish(Revision(r), &[replace("/a", r)]);
        assert_eq!(active.try_recv().unwrap().unwrap().revision, Revision(r));
        subs.sweep();
    }
    assert_eq!(subs.metrics().expired, 1);
    assert!(idle.is_closed());
    assert!(!active.is_closed());
    // Its queued changes were discarded: it learns that it expired.
    assert_eq!(idle.try_recv(), Err(RecvError::Expired));
    assert_eq!(idle.recv(), Err(RecvError::Expired));
    assert_eq!(subs.metrics().active, 1);
}

#[test]
fn publishing_to_a_subscriber_is_not_activity() {
    let (subs, clock) = registry(SubscriptionConfig::new().with_idle_ttl(TTL));
    let mut sub = live(&subs, "/a");
    clock.advance(50);
    subs.publish(Revision(1), &[replace("/a", 1)]);
    clock.advance(50);
    assert_eq!(subs.sweep(), 1);
    assert_eq!(sub.try_recv(), Err(RecvError::Expired));
}

#[test]
fn a_receiver_finds_its_expiry_before_any_sweep() {
    let (subs, clock) = registry(SubscriptionConfig::new().with_idle_ttl(TTL));
    let mut sub = subs
        .subscribe(
            "/a",
            SubscribeOptions::new().with_idle_ttl(Duration::from_millis(10)),
            None,
        )
        .unwrap();
    subs.publish(Revision(1), &[replace("/a", 1)]);
    clock.advance(10);
    assert_eq!(sub.try_recv(), Err(RecvError::Expired));
    let m = subs.metrics();
    assert_eq!((m.expired, m.active), (1, 0));
    assert_eq!(subs.sweep(), 0, "already gone");
}

/// Polls `fut` once, with a waker that does nothing.
fn poll_once(fut: Pin<&mut RecvFuture<'_>>) -> Poll<Event> {
    fut.poll(&mut Context::from_waker(Waker::noop()))
}

#[test]
fn a_receiver_waiting_counts_as_active_and_its_ttl_restarts_after() {
    let (subs, clock) = registry(SubscriptionConfig::new().with_idle_ttl(TTL));
    let mut sub = live(&subs, "/a");
    {
        let mut fut = pin!(sub.recv_async());
        assert!(poll_once(fut.as_mut()).is_pending());
        clock.advance(1_000);
        assert_eq!(subs.sweep(), 0, "a waiting receiver is active");
        subs.publish(Revision(1), &[replace("/a", 1)]);
        match poll_once(fut.as_mut()) {
            Poll::Ready(Ok(change)) => assert_eq!(change.revision, Revision(1)),
            other => panic!("{other:?}"),
        }
    }
    clock.advance(99);
    assert_eq!(subs.sweep(), 0, "the TTL restarted when the wait ended");
    clock.advance(1);
    assert_eq!(subs.sweep(), 1);
}

#[test]
fn a_dropped_pending_future_restarts_the_ttl() {
    let (subs, clock) = registry(SubscriptionConfig::new().with_idle_ttl(TTL));
    let mut sub = live(&subs, "/a");
    {
        let mut fut = pin!(sub.recv_async());
        assert!(poll_once(fut.as_mut()).is_pending());
        clock.advance(500);
    }
    clock.advance(100);
    assert_eq!(subs.sweep(), 1);
    assert_eq!(sub.try_recv(), Err(RecvError::Expired));
}

#[test]
fn the_cap_refuses_more_subscriptions_until_one_ends() {
    let config = SubscriptionConfig::new()
        .with_max_subscriptions(2)
        .with_idle_ttl(TTL);
    let (subs, clock) = registry(config);
    let a = live(&subs, "/a");
    let _b = live(&subs, "/b");
    let err = subs
        .subscribe("/c", SubscribeOptions::new(), None)
        .unwrap_err();
    assert_eq!(err, SubscribeError::Limit { max: 2 });
    assert_eq!(err.to_string(), "the limit of 2 subscriptions is reached");
    drop(a);
    let _c = live(&subs, "/c");
    // An idle subscription's room is reclaimed when the cap is reached.
    clock.advance(100);
    let _d = live(&subs, "/d");
    let m = subs.metrics();
    assert_eq!(
        (
            m.subscribed,
            m.rejected,
            m.unsubscribed,
            m.expired,
            m.active
        ),
        (4, 1, 1, 2, 1)
    );
}

#[test]
fn bad_patterns_and_options_are_typed_errors() {
    let (subs, _) = registry(SubscriptionConfig::new());
    let sub = |pattern: &str, options| subs.subscribe(pattern, options, None).unwrap_err();
    assert_eq!(
        sub("user", SubscribeOptions::new()),
        SubscribeError::Pattern(PatternError::NoLeadingSlash)
    );
    assert_eq!(
        sub("/a~", SubscribeOptions::new()),
        SubscribeError::Pattern(PatternError::InvalidEscape { offset: 2 })
    );
    assert_eq!(
        sub("/a", SubscribeOptions::new().with_queue_capacity(0)),
        SubscribeError::Queue(crate::ConfigError::ZeroCapacity)
    );
    assert_eq!(
        sub("/a", SubscribeOptions::new().with_idle_ttl(Duration::ZERO)),
        SubscribeError::ZeroIdleTtl
    );
    assert_eq!(subs.metrics().subscribed, 0);
}

#[test]
fn config_errors_are_typed() {
    let clock = Arc::new(ManualClock::default());
    let new = |config| {
        Subscriptions::new(config, clock.clone())
            .map(|_| ())
            .unwrap_err()
    };
    assert_eq!(
        new(SubscriptionConfig::new().with_max_subscriptions(0)),
        SubscriptionConfigError::Table(crate::ConfigError::ZeroCapacity)
    );
    assert_eq!(
        new(SubscriptionConfig::new().with_idle_ttl(Duration::ZERO)),
        SubscriptionConfigError::Table(crate::ConfigError::ZeroTtl)
    );
    let err = new(SubscriptionConfig::new().with_queue_capacity(0));
    assert_eq!(
        err,
        SubscriptionConfigError::Queue(crate::ConfigError::ZeroCapacity)
    );
    assert!(err.to_string().starts_with("subscription queue: "));
}

/// Spins until `shared`'s receiver sleeps in its queue's wait.
fn wait_until_waiting(shared: &Shared) {
    let deadline = std::time::Instant::now() + WAIT;
    while shared.queue.metrics().consumers_waiting == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the receiver never waited"
        );
        thread::yield_now();
    }
}

/// A receiver, calling `receive` on its own thread, sleeps until a publish wakes it,
/// then until the store closing does.
fn woken_by_a_publish_and_by_the_store_closing(receive: fn(&mut Subscription) -> Event) {
    let subs = Subscriptions::new(SubscriptionConfig::new(), MonotonicClock::new()).unwrap();
    let mut sub = subs.subscribe("/a", SubscribeOptions::new(), None).unwrap();
    let shared = sub.shared.clone();
    let (tx, rx) = mpsc::channel();
    let receiver = thread::spawn(move || {
        for _ in 0..2 {
            tx.send(receive(&mut sub)).unwrap();
        }
    });
    wait_until_waiting(&shared);
    subs.publish(Revision(1), &[replace("/a", 1)]);
    assert_eq!(
        rx.recv_timeout(WAIT).unwrap().unwrap().revision,
        Revision(1)
    );
    wait_until_waiting(&shared);
    drop(subs);
    assert_eq!(rx.recv_timeout(WAIT).unwrap(), Err(RecvError::Closed));
    receiver.join().unwrap();
}

#[test]
fn a_blocked_receiver_is_woken_by_a_publish_and_by_the_store_closing() {
    woken_by_a_publish_and_by_the_store_closing(Subscription::recv);
}

#[test]
fn an_async_receiver_is_woken_by_a_publish_and_by_the_store_closing() {
    woken_by_a_publish_and_by_the_store_closing(|sub| executor::block_on(sub.recv_async()));
}

#[test]
fn closing_the_store_delivers_what_was_queued_first() {
    let (subs, _) = registry(SubscriptionConfig::new());
    let mut sub = live(&subs, "/a");
    subs.publish(Revision(1), &[replace("/a", 1)]);
    drop(subs);
    assert!(sub.is_closed());
    assert_eq!(sub.recv().unwrap().revision, Revision(1));
    assert_eq!(sub.recv(), Err(RecvError::Closed));
    assert_eq!(
        sub.recv_timeout(Duration::from_secs(60)),
        Err(RecvError::Closed)
    );
}

#[test]
fn recv_timeout_returns_none_when_nothing_arrives() {
    let (subs, _) = registry(SubscriptionConfig::new());
    let mut sub = live(&subs, "/a");
    assert_eq!(sub.recv_timeout(Duration::from_millis(1)), Ok(None));
    subs.publish(Revision(1), &[replace("/a", 1)]);
    let change = sub.recv_timeout(Duration::from_millis(1)).unwrap().unwrap();
    assert_eq!(change.revision, Revision(1));
}

#[test]
fn an_async_receiver_gets_the_change_kept_back_by_a_lag_report() {
    let (subs, _) = registry(SubscriptionConfig::new().with_queue_capacity(1));
    let mut sub = live(&subs, "/a");
    subs.publish(Revision(1), &[replace("/a", 1)]);
    subs.publish(Revision(2), &[replace("/a", 2)]);
    let lag = executor::block_on(sub.recv_async());
    assert!(matches!(lag, Err(RecvError::Lagged { skipped: 1, .. })));
    assert_eq!(
        executor::block_on(sub.recv_async()).unwrap().revision,
        Revision(2)
    );
}

#[test]
fn unsubscribing_forgets_the_subscription() {
    let (subs, _) = registry(SubscriptionConfig::new());
    let sub = live(&subs, "/a");
    let _other = live(&subs, "/a");
    sub.unsubscribe();
    subs.publish(Revision(1), &[replace("/a", 1)]);
    let m = subs.metrics();
    assert_eq!((m.active, m.unsubscribed, m.delivered), (1, 1, 1));
}

#[test]
fn queues_shrink_under_memory_pressure_and_recover() {
    use crate::pressure::{CapacityTargets, PressureLevel};
    let (subs, _) = registry(SubscriptionConfig::new().with_queue_capacity(8));
    let mut full = live(&subs, "/a");
    let mut half = subs
        .subscribe("/a", SubscribeOptions::new().with_queue_capacity(4), None)
        .unwrap();
    for r in 1..=4 {
        subs.publish(Revision(r), &[replace("/a", r)]);
    }
    let queues = subs.queue_capacity();
    let mut targets = CapacityTargets::new();
    targets.register(&queues);
    targets.apply(PressureLevel::Critical); // 25 %
    assert_eq!((full.capacity(), half.capacity()), (2, 1));
    let newcomer = live(&subs, "/a");
    assert_eq!(
        newcomer.capacity(),
        2,
        "new queues start at the reduced size"
    );
    // What the shrink dropped is reported as lag.
    assert_eq!(
        full.try_recv(),
        Err(RecvError::Lagged {
            skipped: 2,
            resume: Revision(0)
        })
    );
    assert_eq!(full.try_recv().unwrap().unwrap().revision, Revision(3));
    assert!(matches!(
        half.try_recv(),
        Err(RecvError::Lagged { skipped: 3, .. })
    ));
    assert_eq!(half.try_recv().unwrap().unwrap().revision, Revision(4));
    assert_eq!(subs.metrics().lagged, 2 + 3);
    targets.apply(PressureLevel::Normal);
    assert_eq!(
        (full.capacity(), half.capacity(), newcomer.capacity()),
        (8, 4, 8)
    );
    assert_eq!(queues.set_capacity(0), Err(CapacityError::Zero));
    assert_eq!(queues.max_capacity(), 8);
}

/// What a callback receives.
type Event = Result<Change, RecvError>;

/// Collects what a callback receives, and signals each call.
fn recorder() -> (
    impl FnMut(Result<Change, RecvError>) + Send + 'static,
    mpsc::Receiver<Event>,
) {
    let (tx, rx) = mpsc::channel();
    (move |event| drop(tx.send(event)), rx)
}

const WAIT: Duration = Duration::from_secs(30);

#[test]
fn a_callback_gets_each_change_then_the_end() {
    let (subs, _) = registry(SubscriptionConfig::new());
    let (callback, rx) = recorder();
    let handle = subs
        .subscribe_with("/a", SubscribeOptions::new(), None, callback)
        .unwrap();
    subs.publish(Revision(1), &[replace("/a", 1)]);
    subs.publish(Revision(2), &[replace("/b", 2)]);
    subs.publish(Revision(3), &[replace("/a", 3)]);
    assert_eq!(
        rx.recv_timeout(WAIT).unwrap().unwrap().revision,
        Revision(1)
    );
    assert_eq!(
        rx.recv_timeout(WAIT).unwrap().unwrap().revision,
        Revision(3)
    );
    drop(subs);
    assert_eq!(rx.recv_timeout(WAIT).unwrap(), Err(RecvError::Closed));
    // The thread ended and dropped the callback, and with it the sender.
    assert!(rx.recv_timeout(WAIT).is_err());
    assert!(handle.is_closed() && !handle.panicked());
}

#[test]
fn a_panicking_callback_is_isolated_and_its_subscription_closed() {
    let (subs, _) = registry(SubscriptionConfig::new());
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let bad = subs
        .subscribe_with("/a", SubscribeOptions::new(), None, move |_| {
            counted.fetch_add(1, Ordering::SeqCst);
            panic!("callback bug");
        })
        .unwrap();
    let panicked = |handle: &CallbackSubscription| {
        let deadline = std::time::Instant::now() + WAIT;
        while !handle.panicked() && std::time::Instant::now() < deadline {
            thread::yield_now();
        }
        handle.panicked()
    };
    let (callback, rx) = recorder();
    let _good = subs
        .subscribe_with("/a", SubscribeOptions::new(), None, callback)
        .unwrap();
    subs.publish(Revision(1), &[replace("/a", 1)]);
    assert_eq!(
        rx.recv_timeout(WAIT).unwrap().unwrap().revision,
        Revision(1)
    );
    assert!(panicked(&bad));
    bad.unsubscribe(); // joins the thread, which has ended after the panic
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    subs.publish(Revision(2), &[replace("/a", 2)]);
    assert_eq!(
        rx.recv_timeout(WAIT).unwrap().unwrap().revision,
        Revision(2)
    );
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "not called after its panic"
    );
    let m = subs.metrics();
    assert_eq!((m.callback_panics, m.active), (1, 1));
}

#[test]
fn a_panicking_callback_reports_panicked() {
    let (subs, _) = registry(SubscriptionConfig::new());
    let (tx, rx) = mpsc::channel::<()>();
    let handle = subs
        .subscribe_with("/a", SubscribeOptions::new(), None, move |_| {
            let _tx = &tx; // dropped with the callback after the panic
            panic!("callback bug");
        })
        .unwrap();
    subs.publish(Revision(1), &[replace("/a", 1)]);
    // The sender is dropped when the thread ends.
    assert!(rx.recv_timeout(WAIT).is_err());
    assert!(handle.panicked() && handle.is_closed());
}

#[test]
fn a_callback_may_subscribe_and_unsubscribe_without_deadlocking() {
    let (subs, _) = registry(SubscriptionConfig::new());
    let subs = Arc::new(subs);
    let inner = subs.clone();
    let (tx, rx) = mpsc::channel();
    let own: Arc<Mutex<Option<CallbackSubscription>>> = Arc::new(Mutex::new(None));
    let own_in_callback = own.clone();
    let handle = subs
        .subscribe_with("/a", SubscribeOptions::new(), None, move |event| {
            let change = event.unwrap();
            // Re-entry: subscribe and unsubscribe on the registry from inside.
            let mut nested = inner
                .subscribe("/a", SubscribeOptions::new(), None)
                .unwrap();
            inner.publish(Revision(change.revision.0 + 1), &[replace("/b", 0)]);
            assert_eq!(nested.try_recv(), Ok(None));
            drop(nested);
            // And end its own subscription.
            if let Some(me) = own_in_callback.lock().unwrap().take() {
                me.unsubscribe(); // from its own thread: does not wait for itself
            }
            tx.send(change.revision).unwrap();
        })
        .unwrap();
    *own.lock().unwrap() = Some(handle);
    subs.publish(Revision(1), &[replace("/a", 1)]);
    assert_eq!(rx.recv_timeout(WAIT).unwrap(), Revision(1));
    subs.publish(Revision(5), &[replace("/a", 5)]);
    // Unsubscribed from inside: no further call, and the thread ends.
    assert!(rx.recv_timeout(WAIT).is_err());
    let m = subs.metrics();
    assert_eq!((m.active, m.unsubscribed), (0, 2));
}

#[test]
fn a_stuck_callback_expires_its_subscription() {
    let (subs, clock) = registry(SubscriptionConfig::new().with_idle_ttl(TTL));
    let (entered_tx, entered) = mpsc::channel();
    let (release, release_rx) = mpsc::channel::<()>();
    let (callback, rx) = recorder();
    let mut callback = callback;
    let handle = subs
        .subscribe_with("/a", SubscribeOptions::new(), None, move |event| {
            let first = event.is_ok();
            callback(event);
            if first {
                entered_tx.send(()).unwrap();
                release_rx.recv().unwrap();
            }
        })
        .unwrap();
    subs.publish(Revision(1), &[replace("/a", 1)]);
    entered.recv_timeout(WAIT).unwrap();
    assert!(rx.recv_timeout(WAIT).unwrap().is_ok());
    clock.advance(100);
    assert_eq!(subs.sweep(), 1);
    release.send(()).unwrap();
    assert_eq!(rx.recv_timeout(WAIT).unwrap(), Err(RecvError::Expired));
    handle.unsubscribe();
}

#[test]
fn a_waiting_callback_is_not_expired() {
    let (subs, clock) = registry(SubscriptionConfig::new().with_idle_ttl(TTL));
    let (callback, rx) = recorder();
    let handle = subs
        .subscribe_with("/a", SubscribeOptions::new(), None, callback)
        .unwrap();
    // Wait until the thread is waiting: the first change round-trips.
    subs.publish(Revision(1), &[replace("/a", 1)]);
    assert!(rx.recv_timeout(WAIT).unwrap().is_ok());
    // Once its thread sleeps in the queue's wait, its TTL is suspended.
    wait_until_waiting(&handle.shared);
    clock.advance(1_000);
    assert_eq!(subs.sweep(), 0, "a waiting callback is active");
    assert_eq!(subs.metrics().active, 1);
    subs.publish(Revision(2), &[replace("/a", 2)]);
    assert_eq!(
        rx.recv_timeout(WAIT).unwrap().unwrap().revision,
        Revision(2)
    );
}

/// What one subscriber of the stress test checks: every matching revision after
/// its start, exactly once and in order, or a lag report that covers the gap.
struct Expect {
    /// The next matching revision it must receive.
    next: u64,
    /// Revisions match when `r % MODULUS == RESIDUE`.
    residue: u64,
    last: Revision,
    lagged: bool,
}

const MODULUS: u64 = 3;

impl Expect {
    fn new(start: Revision, residue: u64) -> Self {
        let mut next = start.0 + 1;
        while next % MODULUS != residue {
            next += 1;
        }
        Self {
            next,
            residue,
            last: start,
            lagged: false,
        }
    }

    fn check(&mut self, got: Result<Change, RecvError>) {
        match got {
            Ok(change) => {
                let r = change.revision.0;
                assert_eq!(r % MODULUS, self.residue);
                // After a lag report too: `skipped` counts exactly the matching
                // revisions dropped.
                assert_eq!(r, self.next, "missed or repeated a revision");
                assert_eq!(
                    change.ops,
                    [replace(&alloc::format!("/k{}", self.residue), r)]
                );
                self.lagged = false;
                self.last = change.revision;
                self.next = r + MODULUS;
            }
            Err(RecvError::Lagged { skipped, resume }) => {
                assert!(!self.lagged, "two lag reports in a row");
                assert_eq!(resume, self.last, "resume is the last revision received");
                assert!(skipped > 0);
                // The change after the gap must be `skipped` matching revisions on.
                self.next += skipped * MODULUS;
                self.lagged = true;
            }
            Err(e) => panic!("unexpected {e}"),
        }
    }
}

type History = Vec<(Revision, Vec<PatchOperation>)>;

#[test]
fn subscribing_and_unsubscribing_while_publishing_delivers_each_change_once() {
    const REVISIONS: u64 = if cfg!(debug_assertions) {
        3_000
    } else {
        30_000
    };
    let config = SubscriptionConfig::new()
        .with_queue_capacity(8)
        .with_max_subscriptions(64);
    let subs = Arc::new(Subscriptions::new(config, MonotonicClock::new()).unwrap());
    // The store's history: appended under the write lock, then published.
    let history: Arc<RwLock<History>> = Arc::default();
    let done = Arc::new(AtomicBool::new(false));

    // One long-lived subscriber from revision 0, receiving until the store closes.
    let long_lived = {
        let mut sub = subs
            .subscribe("/k1", SubscribeOptions::new().with_from(Revision(0)), None)
            .unwrap();
        thread::spawn(move || {
            let mut expect = Expect::new(Revision(0), 1);
            loop {
                match sub.recv() {
                    Err(RecvError::Closed) => break,
                    got => expect.check(got),
                }
            }
            expect
        })
    };

    let churners: Vec<_> = (0..3u64)
        .map(|t| {
            let subs = subs.clone();
            let history = history.clone();
            let done = done.clone();
            thread::spawn(move || {
                let residue = t % MODULUS;
                let pattern = alloc::format!("/k{residue}");
                let mut round = 0u64;
                while !done.load(Ordering::Relaxed) {
                    round += 1;
                    // Half start from a recent revision with the history as backlog,
                    // read under the lock that orders appends (the store's
                    // contract); half start live.
                    let (mut sub, start) = if round % 2 == 0 {
                        let history = history.read().unwrap();
                        let from = history.len().saturating_sub(5);
                        let options = SubscribeOptions::new().with_from(Revision(from as u64));
                        let backlog = history[from..].iter().map(|(r, ops)| (*r, ops.as_slice()));
                        let sub = subs.subscribe(&pattern, options, backlog).unwrap();
                        (sub, Revision(from as u64))
                    } else {
                        let sub = subs
                            .subscribe(&pattern, SubscribeOptions::new(), None)
                            .unwrap();
                        let start = sub.last_revision();
                        (sub, start)
                    };
                    let mut expect = Expect::new(start, residue);
                    for _ in 0..(round % 7) * 5 {
                        match sub.try_recv() {
                            Ok(None) => thread::yield_now(),
                            got => expect.check(got.map(|c| c.expect("not empty"))),
                        }
                    }
                    // Dropped while the publisher may be delivering to it.
                }
            })
        })
        .collect();

    for r in 1..=REVISIONS {
        let ops = vec![
            replace(&alloc::format!("/k{}", r % MODULUS), r),
            replace("/unwatched", r),
        ];
        history.write().unwrap().push((Revision(r), ops.clone()));
        // Published in order, after the history append, from this one thread.
        subs.publish(Revision(r), &ops);
    }
    done.store(true, Ordering::Relaxed);
    for c in churners {
        c.join().unwrap();
    }
    let m = subs.metrics();
    assert_eq!(m.active, 1, "every churned subscription was forgotten");
    assert_eq!(m.published, REVISIONS);
    drop(Arc::into_inner(subs).expect("the only reference left"));
    let expect = long_lived.join().unwrap();
    // It saw the end: the last matching revision, or a lag report covering it.
    let last_matching = (1..=REVISIONS).rev().find(|r| r % MODULUS == 1).unwrap();
    assert!(expect.next > last_matching);
}
