//! AG-UI 1.0's event types in the transport: every type named and classified, the
//! class map, reasoning and sub-agent events lossless under lag, and activities
//! (snapshots and deltas keyed by `messageId`) resynchronised from the shared
//! log's tracked contents, never left with a silent gap.
#![cfg(feature = "ws")]

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use membound::adapters::ws::{
    ClassMap, CloseReason, ConnId, DeliveryClass, Event, EventType, Hub, LogConfig, Next,
    OfferError, Offered, Outbound, QueueConfig, SlowConsumer,
};
use membound::clock::MonotonicClock;
use serde_json::{json, Value};

fn outbound() -> Arc<Outbound> {
    Arc::new(Outbound::new(QueueConfig::default(), Arc::new(MonotonicClock::new())).unwrap())
}

fn hub(max_events: usize) -> Hub {
    Hub::with_log(LogConfig::new(max_events, 1 << 20)).unwrap()
}

/// Every frame the queue hands out now, as JSON; panics on a resync or close.
fn drain(q: &Outbound) -> Vec<Value> {
    let mut out = Vec::new();
    while let Some(next) = q.try_next() {
        match next {
            Next::Frame(f) => out.push(serde_json::from_str(f.as_str()).unwrap()),
            other => panic!("unexpected {other:?}"),
        }
    }
    out
}

#[test]
fn all_31_types_are_named_round_trip_and_have_their_class() {
    use DeliveryClass::*;
    // The class of each AG-UI 1.0 type, written out here (not derived from the
    // code under test).
    let expected: [(&str, DeliveryClass); 31] = [
        ("RUN_STARTED", Lossless),
        ("RUN_FINISHED", Lossless),
        ("RUN_ERROR", Lossless),
        ("STEP_STARTED", Lossless),
        ("STEP_FINISHED", Lossless),
        ("TEXT_MESSAGE_START", Lossless),
        ("TEXT_MESSAGE_CONTENT", Lossless),
        ("TEXT_MESSAGE_END", Lossless),
        ("TEXT_MESSAGE_CHUNK", Lossless),
        ("TOOL_CALL_START", Lossless),
        ("TOOL_CALL_ARGS", Lossless),
        ("TOOL_CALL_END", Lossless),
        ("TOOL_CALL_CHUNK", Lossless),
        ("TOOL_CALL_RESULT", Lossless),
        ("STATE_SNAPSHOT", Snapshot),
        ("STATE_DELTA", StateDelta),
        ("MESSAGES_SNAPSHOT", Snapshot),
        ("ACTIVITY_SNAPSHOT", Snapshot),
        ("ACTIVITY_DELTA", StateDelta),
        ("REASONING_START", Lossless),
        ("REASONING_MESSAGE_START", Lossless),
        ("REASONING_MESSAGE_CONTENT", Lossless),
        ("REASONING_MESSAGE_END", Lossless),
        ("REASONING_MESSAGE_CHUNK", Lossless),
        ("REASONING_END", Lossless),
        ("REASONING_ENCRYPTED_VALUE", Lossless),
        ("SUBAGENT_STARTED", Lossless),
        ("SUBAGENT_FINISHED", Lossless),
        ("SUBAGENT_ERROR", Lossless),
        ("RAW", Droppable),
        ("CUSTOM", Droppable),
    ];
    for (name, class) in expected {
        let t = EventType::parse(name);
        assert!(
            !matches!(t, EventType::Other(_)),
            "{name} is not a named type"
        );
        assert_eq!(t.as_str(), name);
        assert_eq!(t.class(), class, "{name}");
        assert_eq!(t.is_activity(), name.starts_with("ACTIVITY_"), "{name}");
        let frame = Event::new(t.clone()).encode();
        assert_eq!(frame.class(), class, "{name}'s frame");
    }
    let named: Vec<&str> = EventType::named().map(EventType::as_str).collect();
    assert_eq!(named.len(), 31);
    let expected_names: HashSet<&str> = expected.iter().map(|(n, _)| *n).collect();
    assert_eq!(
        named.iter().copied().collect::<HashSet<_>>(),
        expected_names
    );
    // Unknown types stay `Other`, droppable.
    let other = EventType::parse("REASONING_SOMETHING_NEW");
    assert!(matches!(other, EventType::Other(_)));
    assert_eq!(other.class(), Droppable);
}

#[test]
fn the_class_map_overrides_per_type_and_the_hub_applies_it() {
    let classes = ClassMap::new()
        .with("NEXT_VERSION_EVENT", DeliveryClass::Lossless)
        .with("ACTIVITY_DELTA", DeliveryClass::Droppable);
    assert_eq!(
        classes.get("NEXT_VERSION_EVENT"),
        Some(DeliveryClass::Lossless)
    );
    assert_eq!(classes.get("RAW"), None);
    assert_eq!(
        classes.class_of(&EventType::StateDelta),
        DeliveryClass::StateDelta
    );

    // A lossless override means a lagging reader is closed, not silently skipped.
    let hub = hub(2).with_classes(classes);
    let q = outbound();
    hub.attach(ConnId(1), q.clone());
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(async {
        for i in 0..3 {
            hub.broadcast(&Event::new(EventType::parse("NEXT_VERSION_EVENT")).with("i", i))
                .await;
        }
    });
    assert_eq!(
        q.try_next(),
        Some(Next::Closed(CloseReason::SlowConsumer(
            SlowConsumer::Lagged
        )))
    );
    let lossless = q.metrics().classes[DeliveryClass::Lossless.index()];
    // The skipped one; the close discards the cursor and what it had not read.
    assert_eq!((lossless.offered, lossless.dropped), (1, 1));

    // Without the override the same lag is droppable: counted, the reader goes on.
    let hub = self::hub(2);
    let q = outbound();
    hub.attach(ConnId(2), q.clone());
    rt.block_on(async {
        for i in 0..3 {
            hub.broadcast(&Event::new(EventType::parse("NEXT_VERSION_EVENT")).with("i", i))
                .await;
        }
    });
    assert_eq!(drain(&q).len(), 2);
    assert!(!q.is_closed());
    assert_eq!(
        q.metrics().classes[DeliveryClass::Droppable.index()].dropped,
        1
    );
}

#[cfg(feature = "serde")]
#[test]
fn the_class_map_reads_from_config_as_type_to_class_name() {
    let classes: ClassMap =
        serde_json::from_value(json!({"AUDIT": "lossless", "RAW": "snapshot"})).unwrap();
    assert_eq!(classes.get("AUDIT"), Some(DeliveryClass::Lossless));
    assert_eq!(classes.get("RAW"), Some(DeliveryClass::Snapshot));
    assert_eq!(
        serde_json::to_value(&classes).unwrap(),
        json!({"AUDIT": "lossless", "RAW": "snapshot"})
    );
    assert!(serde_json::from_value::<ClassMap>(json!({"X": "sometimes"})).is_err());
}

#[tokio::test]
async fn reasoning_and_subagent_events_are_never_silently_skipped() {
    for kind in [
        EventType::ReasoningMessageContent,
        EventType::ReasoningEncryptedValue,
        EventType::SubagentFinished,
    ] {
        let hub = hub(4);
        let q = outbound();
        hub.attach(ConnId(1), q.clone());
        for i in 0..6 {
            hub.broadcast(&Event::new(kind.clone()).with("delta", i))
                .await;
        }
        assert_eq!(
            q.try_next(),
            Some(Next::Closed(CloseReason::SlowConsumer(
                SlowConsumer::Lagged
            ))),
            "{kind}"
        );
    }
}

fn snapshot(id: &str, content: Value) -> Event {
    Event::new(EventType::ActivitySnapshot)
        .with("messageId", id)
        .with("activityType", "PLAN")
        .with("content", content)
}

fn delta(id: &str, patch: Value) -> Event {
    Event::new(EventType::ActivityDelta)
        .with("messageId", id)
        .with("activityType", "PLAN")
        .with("patch", patch)
}

/// What a client makes of activity events, as AG-UI's client does: a snapshot sets
/// the content (unless `replace` is false and it exists), a delta patches it.
#[derive(Default)]
struct Model {
    activities: BTreeMap<String, Value>,
}

impl Model {
    fn apply(&mut self, ev: &Value) {
        let id = ev["messageId"].as_str().unwrap().to_owned();
        match ev["type"].as_str().unwrap() {
            "ACTIVITY_SNAPSHOT" => {
                let replace = ev.get("replace").and_then(Value::as_bool).unwrap_or(true);
                if replace || !self.activities.contains_key(&id) {
                    self.activities.insert(id, ev["content"].clone());
                }
            }
            "ACTIVITY_DELTA" => {
                let doc = self
                    .activities
                    .get_mut(&id)
                    .unwrap_or_else(|| panic!("a delta of {id} before any snapshot"));
                let patch: json_patch::Patch = serde_json::from_value(ev["patch"].clone()).unwrap();
                json_patch::patch(doc, &patch)
                    .unwrap_or_else(|e| panic!("a delta of {id} that does not apply: {e}"));
            }
            _ => {}
        }
    }
}

#[tokio::test]
async fn a_lagging_reader_gets_fresh_activity_snapshots_and_skips_what_they_contain() {
    let hub = hub(4);
    let q = outbound();
    hub.attach(ConnId(1), q.clone());
    let mut truth = Model::default();
    let publish = |ev: Event, truth: &mut Model| {
        truth.apply(&ev.to_json());
        ev
    };
    hub.broadcast(&publish(
        snapshot("m1", json!({"n": 0, "steps": []})),
        &mut truth,
    ))
    .await;
    hub.broadcast(&publish(snapshot("m2", json!({"done": false})), &mut truth))
        .await;
    for i in 1..=10 {
        let ev = delta(
            "m1",
            json!([{"op": "replace", "path": "/n", "value": i}, {"op": "add", "path": "/steps/-", "value": i}]),
        );
        hub.broadcast(&publish(ev, &mut truth)).await;
    }
    // The log holds 4 of the 12 events: the reader missed 8, m2's snapshot among
    // them. It is resynchronised, not closed.
    let got = drain(&q);
    assert!(!q.is_closed());
    let m = q.metrics();
    assert_eq!(m.activity_resyncs, 1);
    assert_eq!(m.lags, 1);
    // First the snapshots (oldest update first: m2, then m1, current to the head),
    // and nothing else: the 4 deltas still in the log are already in them.
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(got
        .iter()
        .all(|e| e["type"] == "ACTIVITY_SNAPSHOT" && e["replace"] == true));
    assert_eq!(got[0]["messageId"], "m2");
    assert_eq!(got[1]["messageId"], "m1");
    assert_eq!(got[1]["activityType"], "PLAN");
    let mut seen = Model::default();
    for ev in &got {
        seen.apply(ev);
    }
    assert_eq!(seen.activities, truth.activities);

    // Later deltas apply on top of the resync.
    let ev = delta(
        "m2",
        json!([{"op": "replace", "path": "/done", "value": true}]),
    );
    hub.broadcast(&publish(ev, &mut truth)).await;
    for ev in drain(&q) {
        seen.apply(&ev);
    }
    assert_eq!(seen.activities, truth.activities);
    assert_eq!(hub.metrics().log.activities, 2);
}

/// Readers that read at different paces, against a publisher of random activity
/// events (snapshots, deltas, `replace: false`): every reader's model ends equal to
/// the publisher's, and no reader is closed.
#[tokio::test]
async fn every_reader_ends_with_the_publishers_activities_whatever_its_pace() {
    let hub = hub(8);
    let readers: Vec<Arc<Outbound>> = (0..5).map(|_| outbound()).collect();
    for (i, q) in readers.iter().enumerate() {
        hub.attach(ConnId(i as u64), q.clone());
    }
    let mut models: Vec<Model> = (0..5).map(|_| Model::default()).collect();
    let mut truth = Model::default();
    let mut rng = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let ids = ["a", "b", "c"];
    for step in 0..2_000u64 {
        let id = ids[(next() % 3) as usize];
        let ev = if !truth.activities.contains_key(id) || next() % 10 == 0 {
            let replace = next() % 4 != 0;
            snapshot(id, json!({"v": step, "items": []})).with("replace", replace)
        } else {
            delta(
                id,
                json!([{"op": "replace", "path": "/v", "value": step}, {"op": "add", "path": "/items/0", "value": step}]),
            )
        };
        truth.apply(&ev.to_json());
        hub.broadcast(&ev).await;
        // Reader i reads every 2^i steps: reader 0 never lags, reader 4 often.
        for (i, q) in readers.iter().enumerate() {
            if step % (1 << i) == 0 {
                for ev in drain(q) {
                    models[i].apply(&ev);
                }
            }
        }
    }
    for (i, q) in readers.iter().enumerate() {
        for ev in drain(q) {
            models[i].apply(&ev);
        }
        assert!(!q.is_closed(), "reader {i}");
        assert_eq!(models[i].activities, truth.activities, "reader {i}");
    }
    assert_eq!(readers[0].metrics().activity_resyncs, 0);
    assert!(readers[4].metrics().activity_resyncs > 0);
}

#[tokio::test]
async fn a_skip_that_touches_a_forgotten_activity_closes_rather_than_leaves_a_gap() {
    // The log tracks one activity: m1 is forgotten when m2 starts.
    let hub = Hub::with_log(LogConfig::new(2, 1 << 20).with_activities(1, 1 << 20)).unwrap();
    let q = outbound();
    hub.attach(ConnId(1), q.clone());
    hub.broadcast(&snapshot("m1", json!({"n": 0}))).await;
    hub.broadcast(&snapshot("m2", json!({"n": 0}))).await;
    hub.broadcast(&delta(
        "m2",
        json!([{"op": "replace", "path": "/n", "value": 1}]),
    ))
    .await;
    assert_eq!(hub.metrics().log.activities, 1);
    assert_eq!(hub.metrics().log.activities_lost, 1);
    assert_eq!(
        q.try_next(),
        Some(Next::Closed(CloseReason::SlowConsumer(
            SlowConsumer::NoSnapshot
        )))
    );

    // A reader whose skip lies wholly after the forgotten activity's last event
    // is resynchronised.
    let late = outbound();
    hub.attach(ConnId(2), late.clone());
    for n in 2..6 {
        hub.broadcast(&delta(
            "m2",
            json!([{"op": "replace", "path": "/n", "value": n}]),
        ))
        .await;
    }
    let got = drain(&late);
    assert!(!late.is_closed());
    assert_eq!(
        got,
        vec![
            json!({"type": "ACTIVITY_SNAPSHOT", "messageId": "m2", "activityType": "PLAN", "content": {"n": 5}, "replace": true})
        ]
    );
}

#[tokio::test]
async fn a_delta_that_does_not_apply_forgets_its_activity() {
    let hub = hub(2);
    let q = outbound();
    hub.attach(ConnId(1), q.clone());
    hub.broadcast(&snapshot("m1", json!({"n": 0}))).await;
    // Removes a member that is not there: the activity is no longer tracked.
    hub.broadcast(&delta("m1", json!([{"op": "remove", "path": "/missing"}])))
        .await;
    // A delta with no snapshot before it: nothing to build a snapshot from.
    hub.broadcast(&delta(
        "m9",
        json!([{"op": "add", "path": "/x", "value": 1}]),
    ))
    .await;
    hub.broadcast(&Event::new(EventType::RunStarted)).await;
    assert_eq!(hub.metrics().log.activities, 0);
    assert_eq!(hub.metrics().log.activities_lost, 1);
    assert_eq!(
        q.try_next(),
        Some(Next::Closed(CloseReason::SlowConsumer(
            SlowConsumer::NoSnapshot
        )))
    );
}

#[test]
fn direct_activity_snapshots_replace_per_message_id_and_deltas_wait() {
    let q = Outbound::new(
        QueueConfig {
            capacity: 3,
            ..QueueConfig::default()
        },
        Arc::new(MonotonicClock::new()),
    )
    .unwrap();
    assert_eq!(
        q.offer(snapshot("m1", json!({"v": 1})).encode()),
        Ok(Offered::Queued)
    );
    assert_eq!(
        q.offer(snapshot("m2", json!({"v": 1})).encode()),
        Ok(Offered::Queued)
    );
    // A newer snapshot of m1 replaces m1's, not m2's.
    assert_eq!(
        q.offer(snapshot("m1", json!({"v": 2})).encode()),
        Ok(Offered::ReplacedSnapshot)
    );
    assert_eq!(q.len(), 2);
    assert_eq!(
        q.offer(Event::new(EventType::RunStarted).encode()),
        Ok(Offered::Queued)
    );
    // Full: a direct activity delta is handed back to wait, not discarded for a
    // state resync (nothing could resynchronise it).
    let d = delta("m1", json!([{"op": "replace", "path": "/v", "value": 3}])).encode();
    assert!(matches!(q.offer(d), Err(OfferError::Full(_))));
    assert!(!q.metrics().resync_pending);
    let got = drain(&q);
    assert_eq!(got.len(), 3);
    assert_eq!(
        (got[0]["messageId"].clone(), got[0]["content"].clone()),
        (json!("m1"), json!({"v": 2}))
    );
    assert_eq!(got[1]["messageId"], "m2");
}

#[tokio::test]
async fn a_state_resync_leaves_activity_deltas_alone() {
    // STATE_DELTA and ACTIVITY_DELTA share a class; a state resync must not drop
    // activity deltas as stale, nor an activity resync state deltas.
    let hub = hub(64);
    let q = outbound();
    hub.attach(ConnId(1), q.clone());
    hub.broadcast(&snapshot("m1", json!({"n": 0}))).await;
    hub.broadcast(&delta(
        "m1",
        json!([{"op": "replace", "path": "/n", "value": 1}]),
    ))
    .await;
    hub.broadcast(&Event::new(EventType::StateDelta).with("delta", json!([])))
        .await;
    // The writer's snapshot source answered a resync: state frames from before
    // are stale, activity ones are not.
    q.resynced(None);
    let got = drain(&q);
    let kinds: Vec<&str> = got.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["ACTIVITY_SNAPSHOT", "ACTIVITY_DELTA"]);
}

/// Two threads append deltas of one activity while a reader takes them at its own
/// pace: the log's order is the truth. The reader's model (raw deltas, or resyncs
/// and what follows them) ends equal to that of a reader that only ever got a
/// resync at the end, and every delta is in it exactly once.
#[test]
fn concurrent_appends_fold_activities_in_log_order() {
    let log =
        Arc::new(membound::adapters::ws::SharedLog::new(LogConfig::new(16, 1 << 20)).unwrap());
    let hub = Hub::with_shared_log(Arc::clone(&log));
    let reader = outbound();
    let late = outbound();
    hub.attach(ConnId(1), reader.clone());
    hub.attach(ConnId(2), late.clone());
    log.append(snapshot("a", json!({"items": []})).encode());
    const PER_THREAD: u64 = 3_000;
    let publishers: Vec<_> = (0..2u64)
        .map(|t| {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                for i in 0..PER_THREAD {
                    let v = t * PER_THREAD + i;
                    log.append(
                        delta("a", json!([{"op": "add", "path": "/items/-", "value": v}])).encode(),
                    );
                }
            })
        })
        .collect();
    let mut model = Model::default();
    while publishers.iter().any(|p| !p.is_finished()) {
        for ev in drain(&reader) {
            model.apply(&ev);
        }
        std::thread::yield_now();
    }
    for p in publishers {
        p.join().unwrap();
    }
    for ev in drain(&reader) {
        model.apply(&ev);
    }
    let mut at_end = Model::default();
    for ev in drain(&late) {
        at_end.apply(&ev);
    }
    assert!(!reader.is_closed() && !late.is_closed());
    assert_eq!(late.metrics().activity_resyncs, 1);
    let items = at_end.activities["a"]["items"].as_array().unwrap().clone();
    assert_eq!(items.len() as u64, 2 * PER_THREAD);
    let distinct: HashSet<u64> = items.iter().map(|v| v.as_u64().unwrap()).collect();
    assert_eq!(distinct.len() as u64, 2 * PER_THREAD);
    // Compared without printing: the documents hold 6000 items.
    assert!(
        model.activities == at_end.activities,
        "the reader's activity differs from the one folded in log order"
    );
}
