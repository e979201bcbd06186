//! The inbound side of a WebSocket connection (feature `ws`): the bounded queue to the
//! handlers, the handler registry, and subscriptions with an idle TTL.
#![cfg(feature = "ws")]

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use membound::adapters::ws::{
    Event, EventType, Inbound, InboundConfig, InboundError, SubscriptionError,
};
use membound::clock::ManualClock;
use serde_json::json;

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

/// Pushes `events`, closes, and runs the dispatcher until it has drained them.
async fn dispatch_all(inbound: &Arc<Inbound>, events: Vec<Event>) {
    let dispatcher = tokio::spawn({
        let inbound = inbound.clone();
        async move { inbound.run().await }
    });
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
    assert_eq!(m.handlers, 4);
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
    assert!(inbound.remove_handler(id_b));
    assert_eq!(inbound.handler_count(), 0);
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
fn handler_flag_types_are_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Inbound>();
    assert_send_sync::<membound::adapters::ws::EventSubscription>();
    let _ = (AtomicBool::new(false), AtomicUsize::new(0), json!(null));
    let _ = Ordering::Relaxed;
}
