//! The inbound side of a WebSocket connection (feature `ws`): the bounded queue to the
//! handlers, the handler registry, and subscriptions with an idle TTL.
#![cfg(feature = "ws")]

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use membound::adapters::ws::{
    Event, EventSubscription, EventType, Inbound, InboundClosed, InboundConfig, InboundError,
    SubscriptionError,
};
use membound::capacity::SoftCapacity;
use membound::clock::ManualClock;
use membound::pressure::{adaptive_size, PressureLevel};
use tokio::sync::Notify;
use tokio::time::Instant;

fn config() -> InboundConfig {
    InboundConfig {
        queue_capacity: 8,
        max_handlers: 4,
        max_subscriptions: 2,
        subscription_capacity: 4,
        subscription_ttl: Duration::from_secs(10),
        handler_timeout: Duration::from_secs(1),
        ..InboundConfig::default()
    }
}

/// An inbound side on a manual clock (1 ms ticks).
fn inbound(config: InboundConfig) -> (Arc<Inbound>, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::default());
    let inbound = Inbound::new(config, clock.clone()).expect("valid config");
    (Arc::new(inbound), clock)
}

fn event(kind: EventType, seq: u64) -> Event {
    Event::new(kind).with("seq", seq)
}

fn seq(event: &Event) -> u64 {
    event
        .get("seq")
        .and_then(|v| v.as_u64())
        .expect("a seq field")
}

/// A handler that records the `seq` of every event it gets.
fn recorder() -> (
    Arc<Mutex<Vec<u64>>>,
    impl Fn(Event) -> std::future::Ready<()> + Send + Sync + 'static,
) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    (seen, move |ev: Event| {
        log.lock().unwrap().push(seq(&ev));
        std::future::ready(())
    })
}

/// Runs `inbound`'s dispatcher as a task.
fn spawn_dispatcher(inbound: &Arc<Inbound>) -> tokio::task::JoinHandle<()> {
    let inbound = inbound.clone();
    tokio::spawn(async move { inbound.run().await })
}

/// Pushes `events`, closes, and runs the dispatcher until it has drained them.
async fn dispatch_all(inbound: &Arc<Inbound>, events: Vec<Event>) {
    let dispatcher = spawn_dispatcher(inbound);
    for ev in events {
        inbound.push(ev).await.expect("open");
    }
    inbound.close();
    dispatcher.await.expect("dispatcher did not panic");
}

#[tokio::test]
async fn events_go_to_the_handlers_of_their_type_and_to_catch_alls() {
    let (inbound, _) = inbound(config());
    let (started, on_started) = recorder();
    let (content, on_content) = recorder();
    let (any, on_any) = recorder();
    inbound.on(EventType::RunStarted, on_started).unwrap();
    inbound
        .on(EventType::TextMessageContent, on_content)
        .unwrap();
    inbound.on_any(on_any).unwrap();
    let other = EventType::parse("MY_THING");
    let (mine, on_mine) = recorder();
    inbound.on(other.clone(), on_mine).unwrap();
    assert_eq!(inbound.metrics().handlers, 4);

    dispatch_all(
        &inbound,
        vec![
            event(EventType::RunStarted, 0),
            event(EventType::TextMessageContent, 1),
            event(other, 2),
            event(EventType::TextMessageContent, 3),
            event(EventType::RunFinished, 4),
        ],
    )
    .await;

    assert_eq!(*started.lock().unwrap(), [0]);
    assert_eq!(*content.lock().unwrap(), [1, 3]);
    assert_eq!(*mine.lock().unwrap(), [2]);
    assert_eq!(*any.lock().unwrap(), [0, 1, 2, 3, 4]);
    let m = inbound.metrics();
    assert_eq!(m.events_in, 5);
    assert_eq!(m.dispatched, 5);
    assert_eq!(m.handler_calls, 1 + 2 + 1 + 5);
}

#[tokio::test]
async fn a_removed_handler_gets_nothing_more_and_others_keep_theirs() {
    let (inbound, _) = inbound(config());
    let (a, on_a) = recorder();
    let (b, on_b) = recorder();
    let id_a = inbound.on(EventType::Custom, on_a).unwrap();
    let id_b = inbound.on(EventType::Custom, on_b).unwrap();
    assert_ne!(id_a, id_b);
    assert!(inbound.remove_handler(id_a));
    assert!(!inbound.remove_handler(id_a), "already removed");
    assert_eq!(inbound.handler_count(), 1);

    dispatch_all(&inbound, vec![event(EventType::Custom, 7)]).await;
    assert!(a.lock().unwrap().is_empty());
    assert_eq!(*b.lock().unwrap(), [7]);
}

#[tokio::test]
async fn caps_refuse_with_typed_errors_and_free_room_on_remove() {
    let (inbound, _) = inbound(config());
    let mut ids = Vec::new();
    for _ in 0..4 {
        ids.push(inbound.on_any(|_| async {}).unwrap());
    }
    assert_eq!(
        inbound.on_any(|_| async {}).unwrap_err(),
        InboundError::TooManyHandlers
    );
    assert_eq!(
        inbound.on(EventType::Raw, |_| async {}).unwrap_err(),
        InboundError::TooManyHandlers
    );
    assert!(inbound.remove_handler(ids[0]));
    inbound.on(EventType::Raw, |_| async {}).unwrap();

    let s1 = inbound.subscribe([]).unwrap();
    let _s2 = inbound.subscribe([EventType::Raw]).unwrap();
    assert_eq!(
        inbound.subscribe([]).unwrap_err(),
        InboundError::TooManySubscriptions
    );
    drop(s1);
    let _s3 = inbound.subscribe([]).unwrap();
    let m = inbound.metrics();
    assert_eq!((m.handlers_rejected, m.subscriptions_rejected), (2, 1));
    assert_eq!((m.handlers, m.subscriptions), (4, 2));
}

#[tokio::test]
async fn subscriptions_get_their_types_in_order() {
    let (inbound, _) = inbound(config());
    let all = inbound.subscribe([]).unwrap();
    let custom = inbound
        .subscribe([EventType::Custom, EventType::Custom])
        .unwrap();
    assert_eq!(custom.kinds(), [EventType::Custom]);
    dispatch_all(
        &inbound,
        vec![
            event(EventType::Custom, 0),
            event(EventType::Raw, 1),
            event(EventType::Custom, 2),
        ],
    )
    .await;
    let mut got = Vec::new();
    while let Ok(ev) = all.recv().await {
        got.push(seq(&ev));
    }
    assert_eq!(got, [0, 1, 2]);
    assert_eq!(seq(&custom.recv().await.unwrap()), 0);
    assert_eq!(seq(&custom.try_recv().unwrap().unwrap()), 2);
    assert_eq!(custom.recv().await, Err(SubscriptionError::Closed));
    assert_eq!(inbound.metrics().subscription_events, 5);
}

#[test]
fn inbound_and_subscriptions_are_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Inbound>();
    assert_send_sync::<EventSubscription>();
}

#[test]
fn errors_say_what_went_wrong() {
    assert!(InboundError::TooManyHandlers
        .to_string()
        .contains("handler limit"));
    assert!(InboundError::TooManySubscriptions
        .to_string()
        .contains("subscription limit"));
    assert!(SubscriptionError::Expired.to_string().contains("idle TTL"));
    let closed = InboundClosed(Event::new(EventType::RunStarted));
    assert!(closed.to_string().contains("RUN_STARTED"));
    let _: &dyn std::error::Error = &closed;
}

#[test]
fn a_config_that_cannot_work_is_refused() {
    let clock = Arc::new(ManualClock::default());
    let bad = InboundConfig {
        max_handlers: 0,
        ..InboundConfig::default()
    };
    assert_eq!(
        Inbound::new(bad, clock.clone()).unwrap_err().field,
        "inbound.max_handlers"
    );
    let huge = InboundConfig {
        subscription_capacity: usize::MAX,
        ..InboundConfig::default()
    };
    assert_eq!(
        Inbound::new(huge, clock).unwrap_err().field,
        "inbound.subscription_capacity"
    );
}

/// Sets its flag when dropped: shows that a handler's future was dropped.
struct SetOnDrop(Arc<AtomicBool>);

impl Drop for SetOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

#[tokio::test(start_paused = true)]
async fn a_slow_handler_is_abandoned_at_the_timeout_while_the_others_run() {
    let (inbound, _) = inbound(config()); // handler_timeout: 1 s
    let finished = Arc::new(AtomicBool::new(false));
    let dropped = Arc::new(AtomicBool::new(false));
    // Registered first, so that handlers run one after the other would make the
    // fast one wait for it.
    inbound
        .on(EventType::Custom, {
            let (finished, dropped) = (finished.clone(), dropped.clone());
            move |_| {
                let (finished, guard) = (finished.clone(), SetOnDrop(dropped.clone()));
                async move {
                    let _guard = guard;
                    tokio::time::sleep(Duration::from_secs(60)).await;
                    finished.store(true, Ordering::SeqCst);
                }
            }
        })
        .unwrap();
    let start = Instant::now();
    let fast: Arc<Mutex<Vec<(u64, Duration)>>> = Arc::default();
    inbound
        .on(EventType::Custom, {
            let fast = fast.clone();
            move |ev| {
                let fast = fast.clone();
                async move {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    fast.lock().unwrap().push((seq(&ev), start.elapsed()));
                }
            }
        })
        .unwrap();

    dispatch_all(
        &inbound,
        vec![event(EventType::Custom, 0), event(EventType::Custom, 1)],
    )
    .await;

    // Each event cost one timeout, not the slow handler's 60 s.
    let elapsed = start.elapsed();
    assert!(
        elapsed >= Duration::from_secs(2) && elapsed < Duration::from_secs(3),
        "{elapsed:?}"
    );
    // The fast handler ran alongside the slow one, not after it.
    let fast = fast.lock().unwrap().clone();
    assert_eq!(fast.iter().map(|(s, _)| *s).collect::<Vec<_>>(), [0, 1]);
    assert!(fast[0].1 < Duration::from_secs(1), "{fast:?}");
    assert!(fast[1].1 < Duration::from_secs(2), "{fast:?}");
    // The slow handler's futures were dropped at the timeout: cancelled.
    assert!(dropped.load(Ordering::SeqCst));
    assert!(!finished.load(Ordering::SeqCst));
    let m = inbound.metrics();
    assert_eq!((m.handler_calls, m.handler_timeouts), (4, 2));
    assert_eq!(m.dispatched, 2);
}

#[tokio::test]
async fn a_panicking_handler_is_counted_and_the_dispatcher_goes_on() {
    let (inbound, _) = inbound(config());
    inbound
        .on(EventType::Custom, |_| -> std::future::Ready<()> {
            panic!("handler panics when called")
        })
        .unwrap();
    inbound
        .on_any(|ev| async move {
            if seq(&ev) == 0 {
                panic!("handler panics while polled");
            }
        })
        .unwrap();
    let (seen, on_seen) = recorder();
    inbound.on_any(on_seen).unwrap();
    dispatch_all(
        &inbound,
        vec![event(EventType::Custom, 0), event(EventType::Custom, 1)],
    )
    .await;
    assert_eq!(*seen.lock().unwrap(), [0, 1]);
    let m = inbound.metrics();
    assert_eq!(m.handler_panics, 3);
    // Each event called the handler that panics when called: it stayed registered.
    assert_eq!(m.dispatched, 2);
}

#[tokio::test]
async fn an_idle_subscription_expires_at_its_ttl_and_a_delivery_restarts_it() {
    let (inbound, clock) = inbound(config()); // TTL 10 s = 10 000 ticks
    let busy = inbound.subscribe([EventType::Custom]).unwrap();
    let idle = inbound.subscribe([EventType::Raw]).unwrap();
    let dispatcher = spawn_dispatcher(&inbound);

    clock.advance(9_999);
    assert_eq!(inbound.sweep(), 0, "not idle for the whole TTL yet");
    inbound.push(event(EventType::Custom, 0)).await.unwrap();
    assert_eq!(seq(&busy.recv().await.unwrap()), 0);

    clock.advance(1);
    assert_eq!(inbound.sweep(), 1, "the idle one expires at its TTL");
    assert!(idle.is_closed());
    assert!(!busy.is_closed(), "the delivery restarted its TTL");
    assert_eq!(idle.recv().await, Err(SubscriptionError::Expired));
    assert_eq!(idle.try_recv(), Err(SubscriptionError::Expired));
    assert_eq!(inbound.subscription_count(), 1);

    clock.advance(9_998);
    assert_eq!(inbound.sweep(), 0);
    clock.advance(1);
    assert_eq!(inbound.sweep(), 1);
    assert_eq!(busy.recv().await, Err(SubscriptionError::Expired));
    assert_eq!(inbound.subscription_count(), 0);
    assert_eq!(inbound.metrics().subscriptions_expired, 2);

    inbound.close();
    dispatcher.await.unwrap();
}

#[tokio::test]
async fn a_receiver_finds_its_expiry_without_a_sweep() {
    let (inbound, clock) = inbound(config());
    let sub = inbound.subscribe([]).unwrap();
    let dispatcher = spawn_dispatcher(&inbound);
    inbound.push(event(EventType::Custom, 0)).await.unwrap();
    while sub.is_empty() {
        tokio::task::yield_now().await;
    }
    clock.advance(10_000);
    // The queued event is discarded with the subscription.
    assert_eq!(sub.try_recv(), Err(SubscriptionError::Expired));
    assert_eq!(inbound.subscription_count(), 0);
    assert_eq!(inbound.metrics().subscriptions_expired, 1);
    inbound.close();
    dispatcher.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn the_dispatcher_sweeps_idle_subscriptions_on_its_own() {
    let (inbound, clock) = inbound(config()); // TTL 10 s: swept every 1.25 s
    let sub = inbound.subscribe([EventType::Raw]).unwrap();
    let dispatcher = spawn_dispatcher(&inbound);
    clock.advance(10_000);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(sub.is_closed(), "no sweep ran");
    assert_eq!(inbound.subscription_count(), 0);
    assert_eq!(inbound.metrics().subscriptions_expired, 1);
    inbound.close();
    dispatcher.await.unwrap();
}

#[tokio::test]
async fn a_dispatched_event_expires_idle_subscriptions_of_other_types() {
    let (inbound, clock) = inbound(config());
    let idle = inbound.subscribe([EventType::Raw]).unwrap();
    clock.advance(10_000);
    dispatch_all(&inbound, vec![event(EventType::Custom, 0)]).await;
    assert_eq!(inbound.metrics().subscriptions_expired, 1);
    assert_eq!(idle.try_recv(), Err(SubscriptionError::Expired));
}

#[tokio::test]
async fn a_full_subscription_drops_its_oldest_event_as_lag() {
    let (inbound, _) = inbound(config()); // 4 events per subscription
    let sub = inbound.subscribe([EventType::Custom]).unwrap();
    dispatch_all(
        &inbound,
        (0..7).map(|i| event(EventType::Custom, i)).collect(),
    )
    .await;
    assert_eq!(sub.lagged(), 3);
    assert_eq!(inbound.metrics().lagged, 3);
    let mut got = Vec::new();
    while let Some(ev) = sub.try_recv().unwrap_or(None) {
        got.push(seq(&ev));
    }
    assert_eq!(got, [3, 4, 5, 6]);
    assert_eq!(sub.try_recv(), Err(SubscriptionError::Closed));
}

#[tokio::test]
async fn dropping_a_subscription_frees_its_entry() {
    let (inbound, _) = inbound(config());
    let a = inbound.subscribe([]).unwrap();
    let b = inbound.subscribe([EventType::Custom]).unwrap();
    assert_eq!(inbound.subscription_count(), 2);
    drop(a);
    assert_eq!(inbound.subscription_count(), 1);
    let b_id = b.id();
    drop(b);
    assert_eq!(inbound.subscription_count(), 0);
    assert_eq!(inbound.metrics().subscriptions, 0);
    // The room is free again, and ids are not reused.
    let c = inbound.subscribe([]).unwrap();
    assert_ne!(c.id(), b_id);
    // Dispatching to a dropped subscription is harmless.
    dispatch_all(&inbound, vec![event(EventType::Custom, 0)]).await;
    assert_eq!(inbound.metrics().subscription_events, 1);
}

#[tokio::test]
async fn a_full_inbound_queue_holds_the_pusher_back() {
    let (inbound, _) = inbound(InboundConfig {
        queue_capacity: 2,
        ..config()
    });
    let (seen, on_seen) = recorder();
    inbound.on_any(on_seen).unwrap();
    inbound.push(event(EventType::Custom, 0)).await.unwrap();
    inbound.push(event(EventType::Custom, 1)).await.unwrap();
    let pusher = tokio::spawn({
        let inbound = inbound.clone();
        async move { inbound.push(event(EventType::Custom, 2)).await }
    });
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert!(!pusher.is_finished(), "a push into a full queue must wait");
    let m = inbound.metrics();
    assert_eq!((m.queued, m.events_in, m.push_waits), (2, 2, 1));

    let dispatcher = spawn_dispatcher(&inbound);
    pusher.await.unwrap().unwrap();
    inbound.close();
    dispatcher.await.unwrap();
    assert_eq!(*seen.lock().unwrap(), [0, 1, 2]);
}

#[tokio::test]
async fn pressure_shrinks_the_queue_without_dropping_what_it_holds() {
    let (inbound, _) = inbound(config()); // 8 events
    let (seen, on_seen) = recorder();
    inbound.on_any(on_seen).unwrap();
    for i in 0..6 {
        inbound.push(event(EventType::Custom, i)).await.unwrap();
    }
    // As a server's manager applies it: the level's share of the capacity.
    let critical = PressureLevel::Critical;
    inbound
        .apply_pressure(critical, adaptive_size(8, critical)) // 8 -> 2, with 6 queued
        .unwrap();
    assert_eq!(inbound.capacity(), 2);
    assert_eq!(inbound.queued(), 6, "nothing queued is dropped");
    let pusher = tokio::spawn({
        let inbound = inbound.clone();
        async move { inbound.push(event(EventType::Custom, 6)).await }
    });
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert!(
        !pusher.is_finished(),
        "above the lowered capacity a push waits"
    );
    let dispatcher = spawn_dispatcher(&inbound);
    pusher.await.unwrap().unwrap();
    inbound.close();
    dispatcher.await.unwrap();
    assert_eq!(*seen.lock().unwrap(), [0, 1, 2, 3, 4, 5, 6]);
    inbound.apply_pressure(PressureLevel::Normal, 8).unwrap();
    assert_eq!(inbound.capacity(), 8);
}

#[tokio::test]
async fn close_refuses_pushes_and_the_dispatcher_drains_what_was_queued() {
    let (inbound, _) = inbound(config());
    let (seen, on_seen) = recorder();
    inbound.on_any(on_seen).unwrap();
    let sub = inbound.subscribe([]).unwrap();
    for i in 0..3 {
        inbound.push(event(EventType::Custom, i)).await.unwrap();
    }
    inbound.close();
    assert!(inbound.is_closed());
    let refused = inbound.push(event(EventType::Raw, 9)).await.unwrap_err();
    assert_eq!(seq(&InboundClosed::into_inner(refused)), 9);

    inbound.run().await; // drains, then returns
    assert_eq!(*seen.lock().unwrap(), [0, 1, 2]);
    let mut got = Vec::new();
    while let Ok(ev) = sub.recv().await {
        got.push(seq(&ev));
    }
    assert_eq!(got, [0, 1, 2]);
    assert_eq!(sub.recv().await, Err(SubscriptionError::Closed));
    assert_eq!(inbound.subscription_count(), 0);
    assert_eq!(
        inbound.handler_count(),
        0,
        "handlers are dropped at the end"
    );
    assert_eq!(
        inbound.on_any(|_| async {}).unwrap_err(),
        InboundError::Closed
    );
    assert_eq!(inbound.subscribe([]).unwrap_err(), InboundError::Closed);
    assert_eq!(inbound.metrics().dispatched, 3);
}

#[tokio::test]
async fn a_dispatcher_that_was_aborted_can_be_started_again() {
    let (inbound, _) = inbound(config());
    let (seen, on_seen) = recorder();
    inbound.on_any(on_seen).unwrap();
    let first = spawn_dispatcher(&inbound);
    tokio::task::yield_now().await;
    first.abort();
    assert!(first.await.unwrap_err().is_cancelled());
    // A second dispatcher while none runs is not refused.
    dispatch_all(&inbound, vec![event(EventType::Custom, 0)]).await;
    assert_eq!(*seen.lock().unwrap(), [0]);
}

#[tokio::test]
async fn a_second_dispatcher_while_one_runs_returns_at_once() {
    let (inbound, _) = inbound(config());
    let first = spawn_dispatcher(&inbound);
    tokio::task::yield_now().await;
    inbound.run().await; // returns although the inbound side is open
    assert!(!inbound.is_closed());
    inbound.close();
    first.await.unwrap();
}

#[tokio::test]
async fn a_handler_holding_its_own_inbound_is_freed_when_the_dispatcher_ends() {
    let (inbound, _) = inbound(config());
    let weak = Arc::downgrade(&inbound);
    let own = inbound.clone(); // as a handler replying on its connection would
    inbound
        .on_any(move |_| {
            let _ = own.queued();
            async {}
        })
        .unwrap();
    dispatch_all(&inbound, vec![event(EventType::Custom, 0)]).await;
    drop(inbound);
    assert!(
        weak.upgrade().is_none(),
        "a cycle through a handler kept it alive"
    );
}

#[tokio::test]
async fn dropping_the_inbound_ends_its_subscriptions() {
    let (inbound, _) = inbound(config());
    let sub = inbound.subscribe([]).unwrap();
    drop(inbound);
    assert!(sub.is_closed());
    assert_eq!(sub.recv().await, Err(SubscriptionError::Closed));
}

/// Handlers added and removed by several threads, and subscriptions made and
/// dropped by another, while events are dispatched: no add or remove is lost, and
/// every handler and subscription sees, exactly once and in order, every event
/// pushed after its add returned.
#[test]
fn handlers_added_and_removed_during_dispatch_are_never_lost() {
    const EVENTS: u64 = 2_000;
    const THREADS: u64 = 3;
    const ROUNDS: u64 = 30;
    let (inbound, _) = inbound(InboundConfig {
        queue_capacity: 16,
        max_handlers: 256,
        max_subscriptions: 128,
        subscription_capacity: EVENTS as usize,
        ..config()
    });
    let runtime = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap()
    };
    // The seq of the event being pushed, set before its push: a handler that read
    // `f` after its add returned gets every event after `f`.
    let frontier = Arc::new(Mutex::new(0u64));
    let dispatcher = thread::spawn({
        let inbound = inbound.clone();
        move || runtime().block_on(inbound.run())
    });
    type Log = Arc<Mutex<Vec<u64>>>;
    // Per thread: the kept handlers' logs with the frontier read after each add,
    // the removed handlers' logs, and the kept subscriptions with their frontier.
    type Outcome = (Vec<(Log, u64)>, Vec<Log>, Vec<(EventSubscription, u64)>);
    let adders: Vec<thread::JoinHandle<Outcome>> = (0..THREADS)
        .map(|t| {
            let (inbound, frontier) = (inbound.clone(), frontier.clone());
            thread::spawn(move || {
                let mut kept = Vec::new();
                let mut removed = Vec::new();
                let mut subs = Vec::new();
                for round in 0..ROUNDS {
                    // Spread the adds over the whole run of events.
                    let due = (round * EVENTS / ROUNDS).min(EVENTS - 1);
                    while *frontier.lock().unwrap() < due {
                        thread::yield_now();
                    }
                    let (log, handler) = recorder();
                    let id = if (round + t) % 2 == 0 {
                        inbound.on(EventType::Custom, handler).unwrap()
                    } else {
                        inbound.on_any(handler).unwrap()
                    };
                    let from = *frontier.lock().unwrap();
                    kept.push((id, log, from));
                    if round % 3 == 2 {
                        let (id, log, _) = kept.remove(kept.len() / 2);
                        assert!(inbound.remove_handler(id), "a removal found nothing");
                        removed.push(log);
                    }
                    let sub = inbound.subscribe([]).unwrap();
                    let from = *frontier.lock().unwrap();
                    subs.push((sub, from));
                    if round % 3 == 1 {
                        drop(subs.remove(subs.len() / 2)); // unsubscribed while events flow
                    }
                }
                let kept = kept.into_iter().map(|(_, log, from)| (log, from)).collect();
                (kept, removed, subs)
            })
        })
        .collect();
    runtime().block_on(async {
        for i in 0..EVENTS {
            *frontier.lock().unwrap() = i;
            inbound.push(event(EventType::Custom, i)).await.unwrap();
        }
    });
    let results: Vec<_> = adders.into_iter().map(|a| a.join().unwrap()).collect();
    let kept_count: usize = results.iter().map(|r| r.0.len()).sum();
    assert_eq!(kept_count as u64, THREADS * (ROUNDS - ROUNDS / 3));
    assert_eq!(inbound.handler_count(), kept_count, "a handler was lost");
    let subs: Vec<&(EventSubscription, u64)> = results.iter().flat_map(|r| &r.2).collect();
    assert_eq!(subs.len() as u64, THREADS * (ROUNDS - ROUNDS / 3));
    assert_eq!(
        inbound.subscription_count(),
        subs.len(),
        "a subscription was lost (or an unsubscribe undone)"
    );
    inbound.close();
    dispatcher.join().unwrap();

    // Each expected to hold every event after `from`, in order, exactly once.
    let check = |log: &[u64], from: u64| match log.first() {
        None => assert!(from + 1 >= EVENTS, "missed every event after {from}"),
        Some(&first) => {
            assert!(
                first <= from + 1,
                "missed events after its add: {first} > {from} + 1"
            );
            assert!(
                log.iter().copied().eq(first..EVENTS),
                "not each event once in order"
            );
        }
    };
    for (sub, from) in subs {
        let mut got = Vec::new();
        while let Ok(Some(ev)) = sub.try_recv() {
            got.push(seq(&ev));
        }
        assert_eq!(sub.try_recv(), Err(SubscriptionError::Closed));
        assert_eq!(sub.lagged(), 0);
        check(&got, *from);
    }

    let mut calls = 0;
    for (kept, removed, _) in &results {
        for (log, from) in kept {
            let log = log.lock().unwrap();
            calls += log.len();
            check(&log, *from);
        }
        for log in removed {
            let log = log.lock().unwrap();
            calls += log.len();
            let unique: BTreeSet<u64> = log.iter().copied().collect();
            assert_eq!(unique.len(), log.len(), "an event reached a handler twice");
            if let (Some(&a), Some(&b)) = (log.first(), log.last()) {
                assert!(
                    log.iter().copied().eq(a..=b),
                    "gaps or disorder before removal"
                );
            }
        }
    }
    let m = inbound.metrics();
    assert_eq!(m.handler_calls, calls as u64, "the counts do not add up");
    assert_eq!(m.dispatched, EVENTS);
    assert_eq!(m.events_in, EVENTS);
    assert_eq!((m.handler_timeouts, m.handler_panics), (0, 0));
}

/// A budget of `bytes` bytes, with room for 8 events; messages up to the budget.
fn byte_budget(bytes: usize) -> InboundConfig {
    InboundConfig {
        max_queued_bytes: bytes,
        max_message_bytes: bytes,
        max_frame_bytes: bytes,
        handler_timeout: Duration::from_secs(60),
        ..config()
    }
}

/// Lets the other tasks of this (current-thread) runtime run for a while.
async fn settle() {
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
}

/// Pushes `ev` of `bytes` bytes in a task of its own.
fn spawn_push(
    inbound: &Arc<Inbound>,
    ev: Event,
    bytes: usize,
) -> tokio::task::JoinHandle<Result<(), InboundClosed>> {
    let inbound = inbound.clone();
    tokio::spawn(async move { inbound.push_sized(ev, bytes).await })
}

/// Registers a catch-all handler that records the `seq` of every event and waits,
/// on the event with seq `hold`, until the returned gate opens, so that the
/// dispatcher stays on that event.
fn gated_recorder(inbound: &Inbound, hold: u64) -> (Arc<Mutex<Vec<u64>>>, Arc<Notify>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let gate = Arc::new(Notify::new());
    let (log, open) = (seen.clone(), gate.clone());
    inbound
        .on_any(move |ev: Event| {
            let (log, open) = (log.clone(), open.clone());
            async move {
                let n = seq(&ev);
                if n == hold {
                    open.notified().await;
                }
                log.lock().unwrap().push(n);
            }
        })
        .unwrap();
    (seen, gate)
}

#[test]
fn the_byte_budget_is_validated() {
    let clock = Arc::new(ManualClock::default());
    assert_eq!(InboundConfig::default().max_queued_bytes, 4 << 20);
    assert!(InboundConfig::default().validate().is_ok());
    let zero = InboundConfig {
        max_queued_bytes: 0,
        ..InboundConfig::default()
    };
    assert_eq!(
        zero.validate().unwrap_err().field,
        "inbound.max_queued_bytes"
    );
    let below_a_message = InboundConfig {
        max_queued_bytes: (1 << 20) - 1, // max_message_bytes is 1 MiB
        ..InboundConfig::default()
    };
    assert_eq!(
        below_a_message.validate().unwrap_err().field,
        "inbound.max_queued_bytes"
    );
    let one_message = InboundConfig {
        max_queued_bytes: 1 << 20,
        ..InboundConfig::default()
    };
    assert!(Inbound::new(one_message, clock.clone()).is_ok());
    if let Some(huge) = (u32::MAX as usize).checked_add(1) {
        let huge = InboundConfig {
            max_queued_bytes: huge,
            ..InboundConfig::default()
        };
        assert!(huge.validate().is_ok());
        assert_eq!(
            Inbound::new(huge, clock).unwrap_err().field,
            "inbound.max_queued_bytes"
        );
    }
}

#[tokio::test]
async fn the_byte_budget_holds_a_push_back_until_the_dispatcher_takes_bytes_out() {
    let (inbound, _) = inbound(byte_budget(100));
    let (seen, gate) = gated_recorder(&inbound, 0);
    inbound
        .push_sized(event(EventType::Custom, 0), 60)
        .await
        .unwrap();
    inbound
        .push_sized(event(EventType::Custom, 1), 30)
        .await
        .unwrap();
    let m = inbound.metrics();
    assert_eq!(
        (m.queued, m.queued_bytes, m.byte_waits, m.max_queued_bytes),
        (2, 90, 0, 100)
    );

    // 90 + 20 > 100, with 6 event slots free: only the bytes hold it back.
    let pusher = spawn_push(&inbound, event(EventType::Custom, 2), 20);
    settle().await;
    assert!(
        !pusher.is_finished(),
        "a push past the byte budget must wait"
    );
    let m = inbound.metrics();
    assert_eq!(
        (
            m.events_in,
            m.queued,
            m.queued_bytes,
            m.byte_waits,
            m.push_waits
        ),
        (2, 2, 90, 1, 0)
    );

    // The dispatcher takes event 0 and stays in its handler: its 60 bytes are free.
    let dispatcher = spawn_dispatcher(&inbound);
    pusher.await.unwrap().unwrap();
    let m = inbound.metrics();
    assert_eq!(
        (m.events_in, m.queued, m.queued_bytes, m.peak_queued_bytes),
        (3, 2, 50, 90)
    );
    assert!(seen.lock().unwrap().is_empty(), "still on event 0");

    gate.notify_one();
    inbound.close();
    dispatcher.await.unwrap();
    assert_eq!(*seen.lock().unwrap(), [0, 1, 2]);
    let m = inbound.metrics();
    assert_eq!(
        (
            m.queued_bytes,
            m.peak_queued_bytes,
            m.byte_waits,
            m.dispatched
        ),
        (0, 90, 1, 3)
    );
}

#[tokio::test]
async fn a_message_larger_than_what_is_left_goes_through_once_the_queue_is_empty() {
    let (inbound, _) = inbound(byte_budget(100));
    let (seen, gate) = gated_recorder(&inbound, 0);

    // The whole budget in one message, into an empty queue: no wait.
    inbound
        .push_sized(event(EventType::Custom, 0), 100)
        .await
        .unwrap();
    assert_eq!(inbound.metrics().byte_waits, 0);
    let dispatcher = spawn_dispatcher(&inbound);
    settle().await; // the dispatcher holds event 0; the queue is empty
    assert_eq!((inbound.queued(), inbound.queued_bytes()), (0, 0));

    inbound
        .push_sized(event(EventType::Custom, 1), 50)
        .await
        .unwrap();
    // 50 + 80 > 100: waits while event 1 is queued...
    let pusher = spawn_push(&inbound, event(EventType::Custom, 2), 80);
    settle().await;
    assert!(!pusher.is_finished(), "80 bytes do not fit beside 50");
    assert_eq!(inbound.metrics().byte_waits, 1);

    // ...and goes through when the dispatcher takes event 1 (the queue is empty).
    gate.notify_one();
    pusher.await.unwrap().unwrap();
    settle().await;
    inbound.close();
    dispatcher.await.unwrap();
    assert_eq!(*seen.lock().unwrap(), [0, 1, 2]);
    let m = inbound.metrics();
    assert_eq!(
        (
            m.events_in,
            m.queued_bytes,
            m.peak_queued_bytes,
            m.byte_waits
        ),
        (3, 0, 100, 1)
    );
}

#[tokio::test]
async fn a_message_larger_than_the_budget_waits_for_an_empty_queue_and_goes_alone() {
    let (inbound, _) = inbound(byte_budget(100));
    let (seen, gate) = gated_recorder(&inbound, 0);
    inbound
        .push_sized(event(EventType::Custom, 0), 10)
        .await
        .unwrap();
    let big = spawn_push(&inbound, event(EventType::Custom, 1), 250);
    settle().await;
    assert!(!big.is_finished(), "beside 10 queued bytes it waits");

    // The dispatcher takes event 0 and stays in its handler: the queue is empty.
    let dispatcher = spawn_dispatcher(&inbound);
    big.await.unwrap().unwrap();
    let m = inbound.metrics();
    assert_eq!(
        (m.queued, m.queued_bytes, m.peak_queued_bytes),
        (1, 250, 250)
    );
    // It holds the whole budget: even one byte waits behind it.
    let small = spawn_push(&inbound, event(EventType::Custom, 2), 1);
    settle().await;
    assert!(
        !small.is_finished(),
        "nothing goes beside a message over the budget"
    );

    gate.notify_one();
    small.await.unwrap().unwrap();
    inbound.close();
    dispatcher.await.unwrap();
    assert_eq!(*seen.lock().unwrap(), [0, 1, 2]);
    let m = inbound.metrics();
    assert_eq!(
        (m.queued_bytes, m.peak_queued_bytes, m.byte_waits),
        (0, 250, 2)
    );
}

#[tokio::test]
async fn push_counts_the_encoded_length() {
    let (inbound, _) = inbound(config());
    let ev = Event::new(EventType::TextMessageContent).with("delta", "héllo");
    let len = ev.encode().len();
    assert_eq!(len, ev.encode().as_str().len());
    inbound.push(ev.clone()).await.unwrap();
    inbound.push(ev).await.unwrap();
    let m = inbound.metrics();
    assert_eq!(
        (m.queued_bytes, m.peak_queued_bytes),
        (2 * len as u64, 2 * len as u64)
    );
    inbound.close();
    inbound.run().await;
    assert_eq!(inbound.queued_bytes(), 0);
}

#[tokio::test]
async fn close_fails_a_push_waiting_for_bytes_and_hands_its_event_back() {
    let (inbound, _) = inbound(byte_budget(100));
    inbound
        .push_sized(event(EventType::Custom, 0), 70)
        .await
        .unwrap();
    let pusher = spawn_push(&inbound, event(EventType::Custom, 1), 70);
    settle().await;
    assert!(!pusher.is_finished());
    inbound.close();
    let refused = tokio::time::timeout(Duration::from_secs(10), pusher)
        .await
        .expect("close wakes a push waiting for bytes")
        .unwrap()
        .unwrap_err();
    assert_eq!(seq(&refused.into_inner()), 1);
    let m = inbound.metrics();
    assert_eq!((m.events_in, m.queued_bytes, m.byte_waits), (1, 70, 1));
    inbound.run().await;
    assert_eq!(inbound.metrics().queued_bytes, 0);
}

#[tokio::test]
async fn a_cancelled_push_gives_its_bytes_back() {
    let (inbound, _) = inbound(InboundConfig {
        queue_capacity: 1,
        ..byte_budget(100)
    });
    inbound
        .push_sized(event(EventType::Custom, 0), 40)
        .await
        .unwrap();
    // Cancelled while waiting for bytes.
    let for_bytes = spawn_push(&inbound, event(EventType::Custom, 1), 80);
    // Cancelled after its bytes were granted, while waiting for the event slot.
    let for_slot = spawn_push(&inbound, event(EventType::Custom, 2), 10);
    settle().await;
    let m = inbound.metrics();
    // The fair semaphore keeps the 10 bytes behind the waiting 80.
    assert_eq!((m.queued_bytes, m.byte_waits, m.push_waits), (40, 2, 0));
    for_bytes.abort();
    assert!(for_bytes.await.unwrap_err().is_cancelled());
    settle().await;
    let m = inbound.metrics();
    assert_eq!(
        (m.queued_bytes, m.push_waits),
        (50, 1),
        "admitted by bytes, waiting for the slot"
    );
    for_slot.abort();
    assert!(for_slot.await.unwrap_err().is_cancelled());
    assert_eq!(
        inbound.queued_bytes(),
        40,
        "the cancelled pushes hold nothing"
    );

    let (seen, on_seen) = recorder();
    inbound.on_any(on_seen).unwrap();
    let dispatcher = spawn_dispatcher(&inbound);
    // The whole budget is free again once event 0 is taken.
    inbound
        .push_sized(event(EventType::Custom, 3), 100)
        .await
        .unwrap();
    inbound.close();
    dispatcher.await.unwrap();
    assert_eq!(*seen.lock().unwrap(), [0, 3]);
    assert_eq!(inbound.metrics().queued_bytes, 0);
}

/// A pusher and a dispatcher on two threads, with messages of every size up to
/// the budget: each event arrives once and in order, the queued bytes never pass
/// the budget, and at the end every byte is back.
#[test]
fn queued_bytes_stay_within_the_budget_under_load() {
    const EVENTS: u64 = 3_000;
    const BUDGET: usize = 1_000;
    let (inbound, _) = inbound(InboundConfig {
        queue_capacity: 64,
        ..byte_budget(BUDGET)
    });
    let seen = Arc::new(Mutex::new(Vec::new()));
    let over = Arc::new(AtomicBool::new(false));
    let weak = Arc::downgrade(&inbound);
    inbound
        .on_any({
            let (seen, over) = (seen.clone(), over.clone());
            move |ev| {
                if let Some(inbound) = weak.upgrade() {
                    if inbound.queued_bytes() > BUDGET {
                        over.store(true, Ordering::SeqCst);
                    }
                }
                seen.lock().unwrap().push(seq(&ev));
                std::future::ready(())
            }
        })
        .unwrap();
    let runtime = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap()
    };
    let dispatcher = thread::spawn({
        let inbound = inbound.clone();
        move || runtime().block_on(inbound.run())
    });
    let mut size = 1usize;
    let mut total = 0u64;
    runtime().block_on(async {
        for i in 0..EVENTS {
            // Sizes spread over 1..=BUDGET by a fixed linear congruence.
            size = (size * 7919 + 13) % BUDGET + 1;
            total += size as u64;
            inbound
                .push_sized(event(EventType::Custom, i), size)
                .await
                .unwrap();
            assert!(inbound.queued_bytes() <= BUDGET);
        }
    });
    inbound.close();
    dispatcher.join().unwrap();
    assert!(
        !over.load(Ordering::SeqCst),
        "queued bytes passed the budget"
    );
    assert!(seen.lock().unwrap().iter().copied().eq(0..EVENTS));
    let m = inbound.metrics();
    assert_eq!((m.events_in, m.dispatched), (EVENTS, EVENTS));
    assert_eq!(m.queued_bytes, 0);
    assert!(m.peak_queued_bytes <= BUDGET as u64);
    assert!(total > BUDGET as u64 * 100, "the load was not heavy enough");
}
