//! The state store on many nodes through Redis (issue 16, part 4), against a real
//! Redis (`MEMBOUND_REDIS_URL`; `.ci/run` starts one): one winner and one
//! `Conflict` for concurrent writes against the same revision, the same document at
//! the same revision on every node, each node's document the replay of its
//! history, a late node loading the snapshot, a failing patch a revision on every
//! node alike. Without Redis the tests fail under `CI=true` and are skipped, with a
//! message, elsewhere.
#![cfg(feature = "redis")]

#[path = "support/redis.rs"]
mod redis_support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use json_patch::Patch;
use membound::adapters::state::{
    RedisState, RedisStateConfig, RedisStateError, Revision, StateError, StateStore,
};
use redis_support::{redis_url, unique};
use serde_json::{from_value, json, Value};

fn config(url: &str, name: &str) -> RedisStateConfig {
    let mut config = RedisStateConfig::new(url, name);
    config.prefix = "mbtest".into();
    config
}

async fn node(config: RedisStateConfig) -> RedisState {
    let store = Arc::new(StateStore::new(Default::default()).unwrap());
    RedisState::open(store, config).await.expect("opens")
}

fn patch(value: Value) -> Patch {
    from_value(value).unwrap()
}

/// Waits until every node shows revision `at`.
async fn converge(nodes: &[&RedisState], at: Revision) {
    tokio::time::timeout(Duration::from_secs(20), async {
        while nodes.iter().any(|n| n.store().revision() < at) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("every node catches up");
}

/// The document a store's history replays to, from an empty one.
fn replay(store: &StateStore) -> Value {
    let mut doc = json!({});
    for change in store
        .changes_since(Revision(0))
        .expect("the whole history is kept")
    {
        json_patch::patch(&mut doc, &change.ops).expect("each change applies");
    }
    doc
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_against_one_revision_give_one_winner_and_one_conflict() {
    let Some(url) = redis_url() else { return };
    let name = unique("doc");
    let a = node(config(&url, &name)).await;
    let b = node(config(&url, &name)).await;
    let seed = a
        .apply(&patch(
            json!([{"op": "add", "path": "/owner", "value": "none"}]),
        ))
        .await
        .unwrap();
    converge(&[&a, &b], seed).await;
    for round in 0..20 {
        let base = a.store().revision();
        assert_eq!(b.store().revision(), base);
        let pa = patch(json!([{"op": "replace", "path": "/owner", "value": format!("a{round}")}]));
        let pb = patch(json!([{"op": "replace", "path": "/owner", "value": format!("b{round}")}]));
        let (ra, rb) = tokio::join!(a.apply_at(base, &pa), b.apply_at(base, &pb));
        let (won, lost) = match (ra, rb) {
            (Ok(r), Err(e)) | (Err(e), Ok(r)) => (r, e),
            other => panic!("expected one winner and one conflict, got {other:?}"),
        };
        assert_eq!(won, Revision(base.0 + 1));
        assert!(
            matches!(lost, RedisStateError::State(StateError::Conflict { base: b, current, .. }) if b == base && current == won),
            "{lost:?}"
        );
        converge(&[&a, &b], won).await;
        assert_eq!(a.store().snapshot(), b.store().snapshot());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writers_on_two_nodes_end_with_the_same_document_and_its_history() {
    let Some(url) = redis_url() else { return };
    let name = unique("doc");
    let a = Arc::new(node(config(&url, &name)).await);
    let b = Arc::new(node(config(&url, &name)).await);
    a.apply(&patch(json!([{"op": "add", "path": "/n", "value": 0}, {"op": "add", "path": "/log", "value": []}])))
        .await
        .unwrap();
    converge(&[&a, &b], Revision(1)).await;
    let conflicts = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for (who, shared) in [
        ("a", a.clone()),
        ("b", b.clone()),
        ("a", a.clone()),
        ("b", b.clone()),
    ] {
        let conflicts = conflicts.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..25 {
                // Read, compute, write against what was read; retry on conflict.
                loop {
                    let (base, doc) = shared.store().snapshot();
                    let n = doc["n"].as_u64().unwrap();
                    let p = patch(json!([
                        {"op": "test", "path": "/n", "value": n},
                        {"op": "replace", "path": "/n", "value": n + 1},
                        {"op": "add", "path": "/log/-", "value": format!("{who}{i}")}
                    ]));
                    match shared.apply_at(base, &p).await {
                        Ok(_) => break,
                        Err(RedisStateError::State(StateError::Conflict { .. })) => {
                            conflicts.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => panic!("{e}"),
                    }
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let last = Revision(1 + 100);
    converge(&[&a, &b], last).await;
    let (ra, da) = a.store().snapshot();
    let (rb, db) = b.store().snapshot();
    assert_eq!(
        (ra, &da),
        (rb, &db),
        "the same document at the same revision"
    );
    assert_eq!(ra, last, "every write is one revision");
    assert_eq!(da["n"], json!(100), "no increment lost");
    assert_eq!(da["log"].as_array().unwrap().len(), 100);
    for shared in [&a, &b] {
        assert_eq!(replay(shared.store()), shared.store().snapshot().1);
    }
    assert!(
        conflicts.load(Ordering::Relaxed) > 0,
        "the writers did contend"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_node_loads_the_snapshot_when_the_stream_is_trimmed() {
    let Some(url) = redis_url() else { return };
    let name = unique("doc");
    let mut small = config(&url, &name);
    small.stream_len = 8;
    small.snapshot_every = 4;
    let a = node(small.clone()).await;
    a.apply(&patch(json!([{"op": "add", "path": "/n", "value": 0}])))
        .await
        .unwrap();
    for n in 1..50 {
        a.apply(&patch(json!([{"op": "replace", "path": "/n", "value": n}])))
            .await
            .unwrap();
    }
    // The stream is bounded (its last 8 patches and what follows the snapshot, at
    // most 4 x 8); a node that starts now needs the snapshot.
    let mut conn = redis::Client::open(url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let len: u64 = redis::cmd("XLEN")
        .arg(format!("mbtest:state:{name}:log"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!((8..=32).contains(&len), "stream length {len}");
    let late = node(small).await;
    converge(&[&late], Revision(50)).await;
    assert_eq!(late.store().snapshot(), a.store().snapshot());
    let next = late
        .apply(&patch(
            json!([{"op": "replace", "path": "/n", "value": "late"}]),
        ))
        .await
        .unwrap();
    converge(&[&a], next).await;
    assert_eq!(a.store().get("/n").unwrap(), Some(json!("late")));
    assert!(matches!(
        RedisState::open(Arc::new(StateStore::new(Default::default()).unwrap()), {
            let mut bad = config(&url, &name);
            bad.stream_len = 8;
            bad.snapshot_every = 5;
            bad
        })
        .await,
        Err(RedisStateError::Config(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_patch_is_an_empty_revision_on_every_node() {
    let Some(url) = redis_url() else { return };
    let name = unique("doc");
    let a = node(config(&url, &name)).await;
    let b = node(config(&url, &name)).await;
    a.apply(&patch(json!([{"op": "add", "path": "/x", "value": 1}])))
        .await
        .unwrap();
    let failed = b
        .apply_at(
            Revision(1),
            &patch(json!([{"op": "test", "path": "/x", "value": 2}])),
        )
        .await;
    assert!(
        matches!(
            failed,
            Err(RedisStateError::State(StateError::Patch { .. }))
        ),
        "{failed:?}"
    );
    converge(&[&a, &b], Revision(2)).await;
    assert_eq!(a.store().snapshot(), (Revision(2), json!({"x": 1})));
    assert_eq!(b.store().snapshot(), a.store().snapshot());
}
