//! Store-level behaviour: atomicity across shards, aliasing, history bounds and
//! compaction, limits, leniency, export/import, pressure, transactions, metrics.
#![cfg(feature = "state")]

use std::sync::Arc;
use std::time::Duration;

use membound::adapters::state::{
    HistoryError, HistoryLimits, Limit, Limits, PatchFailure, Revision, StateConfig, StateError,
    StateSnapshot, StateStore, TxnConfig,
};
use membound::capacity::SoftCapacity;
use membound::clock::ManualClock;
use membound::pressure::{adaptive_size, CapacityTargets, PressureLevel};
use serde_json::{json, Value};

type Store = StateStore<Arc<ManualClock>>;

fn store(config: StateConfig) -> (Store, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::default()); // 1 ms ticks
    (
        StateStore::builder(config)
            .clock(clock.clone())
            .build()
            .unwrap(),
        clock,
    )
}

/// Applies `level` through the trait, with the capacity a manager computes for it.
fn apply_pressure(s: &Store, level: PressureLevel) {
    s.apply_pressure(level, adaptive_size(s.max_capacity(), level))
        .unwrap();
}

fn default_store() -> Store {
    store(StateConfig::default()).0
}

/// Everything observable about the store's data, to compare before and after a
/// refused write.
fn observe(store: &Store) -> (Revision, Value, usize, usize, usize) {
    let (revision, doc) = store.snapshot();
    let m = store.metrics();
    (
        revision,
        doc,
        m.history_entries,
        m.document_bytes,
        m.top_level_keys,
    )
}

/// The size account must equal the document's compact encoding.
fn assert_account(store: &Store) {
    let (_, doc) = store.snapshot();
    let m = store.metrics();
    assert_eq!(m.document_bytes, doc.to_string().len(), "{doc}");
    assert_eq!(m.top_level_keys, doc.as_object().unwrap().len());
}

#[test]
fn patch_across_shards_is_one_revision() {
    let s = default_store();
    let ops: Vec<String> = (0..64)
        .map(|i| format!(r#"{{"op":"add","path":"/k{i}","value":{i}}}"#))
        .collect();
    let r = s.apply_json(&format!("[{}]", ops.join(","))).unwrap();
    assert_eq!(r, Revision(1));
    let (rev, doc) = s.snapshot();
    assert_eq!(rev, Revision(1));
    assert_eq!(doc.as_object().unwrap().len(), 64);
    assert_eq!(s.get("/k63").unwrap(), Some(json!(63)));
    // A move and a copy between top-level keys (different shards, most likely).
    s.apply_json(r#"[{"op":"move","from":"/k1","path":"/moved"},{"op":"copy","from":"/k2","path":"/copied"}]"#)
        .unwrap();
    assert_eq!(s.get("/k1").unwrap(), None);
    assert_eq!(s.get("/moved").unwrap(), Some(json!(1)));
    assert_eq!(s.get("/copied").unwrap(), Some(json!(2)));
    assert_account(&s);
}

#[test]
fn failing_last_operation_changes_nothing() {
    let s = default_store();
    s.apply_json(
        r#"[{"op":"add","path":"/a","value":{"x":[1,2]}},{"op":"add","path":"/b","value":"b"}]"#,
    )
    .unwrap();
    let before = observe(&s);
    let patch = r#"[
        {"op":"add","path":"/c","value":3},
        {"op":"remove","path":"/b"},
        {"op":"replace","path":"/a/x/0","value":"one"},
        {"op":"move","from":"/a/x","path":"/d"},
        {"op":"copy","from":"/d","path":"/e"},
        {"op":"add","path":"/d/-","value":9},
        {"op":"add","path":"","value":{"wiped":true}},
        {"op":"test","path":"/wiped","value":false}
    ]"#;
    let err = s.apply_json(patch).unwrap_err();
    assert_eq!(
        err,
        StateError::Patch {
            op: 7,
            path: "/wiped".into(),
            failure: PatchFailure::TestFailed
        }
    );
    assert_eq!(observe(&s), before);
    assert_eq!(s.metrics().rejected_failed, 1);
    assert_account(&s);
}

#[test]
fn json_patch_5_gaps_are_atomic_here() {
    // json-patch 5.0.0 loses `/a` when a move's target parent is missing, and panics
    // undoing a move into an ancestor when a later operation fails. The store does
    // neither.
    let s = default_store();
    s.apply_json(r#"[{"op":"add","path":"/a","value":{"b":1}}]"#)
        .unwrap();
    let before = observe(&s);
    let err = s
        .apply_json(r#"[{"op":"move","from":"/a","path":"/x/y"}]"#)
        .unwrap_err();
    assert!(matches!(
        err,
        StateError::Patch {
            op: 0,
            failure: PatchFailure::InvalidPointer,
            ..
        }
    ));
    assert_eq!(observe(&s), before);
    let err = s
        .apply_json(
            r#"[{"op":"move","from":"/a/b","path":"/a"},{"op":"test","path":"/zz","value":1}]"#,
        )
        .unwrap_err();
    assert!(matches!(err, StateError::Patch { op: 1, .. }));
    assert_eq!(observe(&s), before);
    // And the move into an ancestor itself works.
    s.apply_json(r#"[{"op":"move","from":"/a/b","path":"/a"}]"#)
        .unwrap();
    assert_eq!(s.snapshot().1, json!({"a": 1}));
    assert_account(&s);
}

#[test]
fn copy_then_mutate_does_not_alias() {
    let s = default_store();
    s.apply_json(r#"[{"op":"add","path":"/a","value":{"list":[1]}}]"#)
        .unwrap();
    s.apply_json(
        r#"[{"op":"copy","from":"/a","path":"/b"},{"op":"add","path":"/b/list/-","value":2}]"#,
    )
    .unwrap();
    s.apply_json(r#"[{"op":"copy","from":"/a/list","path":"/a/again"},{"op":"replace","path":"/a/again/0","value":7}]"#)
        .unwrap();
    assert_eq!(
        s.snapshot().1,
        json!({"a": {"list": [1], "again": [7]}, "b": {"list": [1, 2]}})
    );
    // The history holds what was sent, not what the document became.
    let changes = s.changes_since(Revision(1)).unwrap();
    assert_eq!(
        serde_json::to_value(&*changes[0].ops).unwrap(),
        json!([{"op":"copy","from":"/a","path":"/b"},{"op":"add","path":"/b/list/-","value":2}])
    );
    assert_account(&s);
}

#[test]
fn root_operations() {
    let s = default_store();
    s.apply_json(r#"[{"op":"add","path":"/a","value":1}]"#)
        .unwrap();
    s.apply_json(r#"[{"op":"replace","path":"","value":{"x":{"y":2}}}]"#)
        .unwrap();
    assert_eq!(s.snapshot(), (Revision(2), json!({"x": {"y": 2}})));
    assert_account(&s);
    let before = observe(&s);
    for (patch, op) in [
        (r#"[{"op":"replace","path":"","value":[1]}]"#, 0),
        (
            r#"[{"op":"add","path":"/n","value":1},{"op":"add","path":"","value":"s"}]"#,
            1,
        ),
        (r#"[{"op":"copy","from":"/x/y","path":""}]"#, 0),
        (r#"[{"op":"move","from":"/x/y","path":""}]"#, 0),
    ] {
        assert_eq!(
            s.apply_json(patch),
            Err(StateError::RootNotObject { op }),
            "{patch}"
        );
        assert_eq!(observe(&s), before);
    }
    let err = s.apply_json(r#"[{"op":"remove","path":""}]"#).unwrap_err();
    assert!(matches!(
        err,
        StateError::Patch {
            failure: PatchFailure::InvalidPointer,
            ..
        }
    ));
    s.apply_json(r#"[{"op":"move","from":"/x","path":""}]"#)
        .unwrap();
    assert_eq!(s.snapshot().1, json!({"y": 2}));
    assert_eq!(s.get("").unwrap(), Some(json!({"y": 2})));
    assert_account(&s);
}

#[test]
fn size_account_follows_every_kind_of_operation() {
    let s = default_store();
    let steps = [
        r#"[{"op":"add","path":"/a","value":{}}]"#,
        r#"[{"op":"add","path":"/a/x","value":"é\"\n"}]"#,
        r#"[{"op":"add","path":"/a/y","value":[]}]"#,
        r#"[{"op":"add","path":"/a/y/-","value":1.5}]"#,
        r#"[{"op":"add","path":"/a/y/0","value":null}]"#,
        r#"[{"op":"add","path":"/we~1ird\u0001","value":{"k":true}}]"#,
        r#"[{"op":"copy","from":"/a","path":"/a/y/1"}]"#,
        r#"[{"op":"move","from":"/a/y/1","path":"/b"}]"#,
        r#"[{"op":"move","from":"/b/x","path":"/b/z"}]"#,
        r#"[{"op":"move","from":"/b","path":"/a/y/0"}]"#,
        r#"[{"op":"replace","path":"/a/x","value":12345}]"#,
        r#"[{"op":"add","path":"/a/x","value":[1,2,3]}]"#,
        r#"[{"op":"remove","path":"/a/y/0"}]"#,
        r#"[{"op":"remove","path":"/a/y/0"}]"#,
        r#"[{"op":"remove","path":"/a/y"}]"#,
        r#"[{"op":"move","from":"/a/x","path":"/a"}]"#,
        r#"[{"op":"remove","path":"/a"}]"#,
        r#"[{"op":"remove","path":"/we~1ird\u0001"}]"#,
    ];
    for step in steps {
        s.apply_json(step).unwrap_or_else(|e| panic!("{step}: {e}"));
        assert_account(&s);
    }
    assert_eq!(s.snapshot().1, json!({}));
    assert_eq!(s.metrics().document_bytes, 2);
}

#[test]
fn history_compaction_boundaries() {
    let (s, clock) = store(StateConfig {
        history: HistoryLimits {
            entries: 3,
            bytes: 1 << 20,
            age: Duration::from_secs(10),
        },
        ..StateConfig::default()
    });
    assert_eq!(s.changes_since(Revision(0)).unwrap(), vec![]);
    for i in 1..=5 {
        s.apply_json(&format!(r#"[{{"op":"add","path":"/n","value":{i}}}]"#))
            .unwrap();
        clock.advance(1000);
    }
    let revs = |from| -> Vec<u64> {
        s.changes_since(Revision(from))
            .unwrap()
            .iter()
            .map(|c| c.revision.0)
            .collect()
    };
    assert_eq!(revs(2), [3, 4, 5]);
    assert_eq!(revs(4), [5]);
    assert!(revs(5).is_empty());
    assert_eq!(
        s.changes_since(Revision(1)),
        Err(HistoryError::Compacted {
            requested: Revision(1),
            oldest: Revision(2)
        })
    );
    assert_eq!(
        s.changes_since(Revision(6)),
        Err(HistoryError::Future {
            requested: Revision(6),
            current: Revision(5)
        })
    );
    let changes = s.changes_since(Revision(2)).unwrap();
    assert_eq!(changes[0].timestamp, 2000);
    assert_eq!(
        changes[0].bytes,
        r#"[{"op":"add","path":"/n","value":3}]"#.len()
    );
    // Age: r3 was committed at 2000 ms; at 12000 it is 10 s old and goes.
    clock.set(11_999);
    assert_eq!(revs(2), [3, 4, 5]);
    clock.set(12_000);
    assert_eq!(
        s.changes_since(Revision(2)),
        Err(HistoryError::Compacted {
            requested: Revision(2),
            oldest: Revision(3)
        })
    );
    clock.set(100_000);
    s.sweep();
    assert_eq!(s.metrics().history_entries, 0);
    assert!(revs(5).is_empty());
}

#[test]
fn history_byte_bound() {
    let patch = r#"[{"op":"add","path":"/n","value":"0123456789"}]"#;
    let (s, _) = store(StateConfig {
        history: HistoryLimits {
            bytes: patch.len() * 2,
            ..HistoryLimits::default()
        },
        ..StateConfig::default()
    });
    for _ in 0..5 {
        s.apply_json(patch).unwrap();
    }
    let m = s.metrics();
    assert_eq!((m.history_entries, m.history_bytes), (2, patch.len() * 2));
    assert_eq!(m.history_oldest, Revision(3));
    // A patch larger than the whole bound is applied but not kept.
    let big = format!(
        r#"[{{"op":"add","path":"/n","value":"{}"}}]"#,
        "x".repeat(100)
    );
    s.apply_json(&big).unwrap();
    assert_eq!(s.metrics().history_entries, 0);
    assert!(s.changes_since(Revision(6)).unwrap().is_empty());
    assert!(matches!(
        s.changes_since(Revision(5)),
        Err(HistoryError::Compacted { .. })
    ));
}

#[test]
fn pressure_cuts_history_and_restores() {
    let (s, _) = store(StateConfig {
        history: HistoryLimits {
            entries: 100,
            ..HistoryLimits::default()
        },
        ..StateConfig::default()
    });
    let s = Arc::new(s);
    let mut targets = CapacityTargets::new();
    targets.register(&s);
    let write = |n: usize| {
        for i in 0..n {
            s.apply_json(&format!(r#"[{{"op":"add","path":"/n","value":{i}}}]"#))
                .unwrap();
        }
    };
    write(150);
    assert_eq!(s.metrics().history_entries, 100);
    for (level, kept) in [
        (PressureLevel::Low, 75),
        (PressureLevel::High, 50),
        (PressureLevel::Critical, 25),
    ] {
        targets.apply(level);
        assert_eq!(s.metrics().history_entries, kept, "{level}");
        assert_eq!(s.metrics().pressure, level);
        write(50);
        assert_eq!(s.metrics().history_entries, kept, "{level} while writing");
    }
    targets.apply(PressureLevel::Normal);
    write(150);
    assert_eq!(s.metrics().history_entries, 100);
}

#[test]
fn pressure_cuts_history_age() {
    let (s, clock) = store(StateConfig {
        history: HistoryLimits {
            age: Duration::from_secs(100),
            ..HistoryLimits::default()
        },
        ..StateConfig::default()
    });
    let s = Arc::new(s);
    let mut targets = CapacityTargets::new();
    targets.register(&s);
    s.apply_json(r#"[{"op":"add","path":"/n","value":1}]"#)
        .unwrap();
    clock.advance(30_000);
    targets.apply(PressureLevel::Low); // 75 s
    assert_eq!(s.metrics().history_entries, 1);
    targets.apply(PressureLevel::Critical); // 25 s
    assert_eq!(s.metrics().history_entries, 0);
}

fn limited(limits: Limits) -> Store {
    store(StateConfig {
        limits,
        ..StateConfig::default()
    })
    .0
}

fn assert_limit(s: &Store, patch: &str, limit: Limit, op: Option<usize>) {
    let before = observe(s);
    match s.apply_json(patch) {
        Err(StateError::Limit(e)) => {
            assert_eq!((e.limit, e.op), (limit, op), "{patch}: {e}");
            assert!(e.actual > e.max, "{e}");
        }
        other => panic!("{patch}: expected {limit} to be exceeded, got {other:?}"),
    }
    assert_eq!(observe(s), before, "{patch}");
}

#[test]
fn limits_refuse_and_change_nothing() {
    let s = limited(Limits {
        patch_bytes: 200,
        ops_per_patch: 3,
        document_bytes: 120,
        depth: 3,
        array_len: 3,
        object_keys: 4,
        string_len: 8,
    });
    s.apply_json(
        r#"[{"op":"add","path":"/a","value":{"l":[1,2,3]}},{"op":"add","path":"/b","value":{}}]"#,
    )
    .unwrap();
    let long = format!(
        r#"[{{"op":"test","path":"/a","value":"{}"}}]"#,
        "x".repeat(200)
    );
    assert_limit(&s, &long, Limit::PatchBytes, None);
    let four = r#"[{"op":"test","path":"/a","value":1},{"op":"test","path":"/a","value":1},{"op":"test","path":"/a","value":1},{"op":"test","path":"/a","value":1}]"#;
    assert_limit(&s, four, Limit::OpsPerPatch, None);
    assert_limit(
        &s,
        r#"[{"op":"add","path":"/a/l/-","value":4}]"#,
        Limit::ArrayLen,
        Some(0),
    );
    assert_limit(
        &s,
        r#"[{"op":"add","path":"/c","value":[1,2,3,4]}]"#,
        Limit::ArrayLen,
        Some(0),
    );
    assert_limit(
        &s,
        r#"[{"op":"add","path":"/b/x","value":"123456789"}]"#,
        Limit::StringLen,
        Some(0),
    );
    assert_limit(
        &s,
        r#"[{"op":"add","path":"/b/123456789","value":1}]"#,
        Limit::StringLen,
        Some(0),
    );
    assert_limit(
        &s,
        r#"[{"op":"add","path":"/b/x","value":{"y":[]}}]"#,
        Limit::Depth,
        Some(0),
    );
    // Moving or copying a container deeper.
    assert_limit(
        &s,
        r#"[{"op":"add","path":"/b/x","value":1},{"op":"copy","from":"/a/l","path":"/b/y"},{"op":"move","from":"/b","path":"/a/b"}]"#,
        Limit::Depth,
        Some(2),
    );
    assert_limit(
        &s,
        r#"[{"op":"add","path":"/b/x","value":{"1":1,"2":2,"3":3,"4":4,"5":5}}]"#,
        Limit::ObjectKeys,
        Some(0),
    );
    // The root counts: 2 members now, 4 allowed.
    assert_limit(
        &s,
        r#"[{"op":"add","path":"/c","value":1},{"op":"add","path":"/d","value":1},{"op":"add","path":"/e","value":1}]"#,
        Limit::ObjectKeys,
        None,
    );
    // Within every limit still works, and the last free key can be taken.
    s.apply_json(r#"[{"op":"add","path":"/c","value":1},{"op":"add","path":"/d","value":1}]"#)
        .unwrap();
    assert_eq!(s.metrics().top_level_keys, 4);
    assert_eq!(s.metrics().rejected_limit, 10);
    assert_account(&s);
}

#[test]
fn document_bytes_limit() {
    let s = limited(Limits {
        document_bytes: 40,
        ..Limits::default()
    });
    // {"a":"0123456789"} is 18 bytes.
    s.apply_json(r#"[{"op":"add","path":"/a","value":"0123456789"}]"#)
        .unwrap();
    assert_limit(
        &s,
        r#"[{"op":"copy","from":"/a","path":"/b"},{"op":"copy","from":"/a","path":"/c"}]"#,
        Limit::DocumentBytes,
        None,
    );
    assert_limit(
        &s,
        r#"[{"op":"add","path":"/a","value":"0123456789012345678901234567890123456789"}]"#,
        Limit::DocumentBytes,
        None,
    );
    // {"a":"0123456789","b":"0123456789"} is 35 bytes.
    s.apply_json(r#"[{"op":"copy","from":"/a","path":"/b"}]"#)
        .unwrap();
    assert_eq!(s.metrics().document_bytes, 35);
    assert_limit(
        &s,
        r#"[{"op":"add","path":"/c","value":0}]"#,
        Limit::DocumentBytes,
        None,
    );
    // Exactly at the limit: ,"":0 adds 5.
    s.apply_json(r#"[{"op":"add","path":"/","value":0}]"#)
        .unwrap();
    assert_eq!(s.metrics().document_bytes, 40);
    assert_limit(
        &s,
        r#"[{"op":"replace","path":"/","value":10}]"#,
        Limit::DocumentBytes,
        None,
    );
    // Shrinking is always allowed.
    s.apply_json(r#"[{"op":"remove","path":"/b"}]"#).unwrap();
    assert_account(&s);
}

#[test]
fn typed_patches_are_measured_too() {
    let s = limited(Limits {
        patch_bytes: 40,
        ..Limits::default()
    });
    let patch: json_patch::Patch =
        serde_json::from_value(json!([{"op":"add","path":"/a","value":"0123456789012345"}]))
            .unwrap();
    match s.apply(&patch) {
        Err(StateError::Limit(e)) => assert_eq!(e.limit, Limit::PatchBytes),
        other => panic!("{other:?}"),
    }
    let patch: json_patch::Patch =
        serde_json::from_value(json!([{"op":"add","path":"/a","value":1}])).unwrap();
    assert_eq!(s.apply(&patch), Ok(Revision(1)));
}

#[test]
fn invalid_limits_and_configs_are_refused() {
    use membound::adapters::state::StateConfigError;
    let bad = |config: StateConfig| StateStore::new(config).unwrap_err();
    assert_eq!(
        bad(StateConfig {
            shards: 0,
            ..Default::default()
        }),
        StateConfigError::Shards(0)
    );
    assert_eq!(
        bad(StateConfig {
            shards: 6,
            ..Default::default()
        }),
        StateConfigError::Shards(6)
    );
    let limits = Limits {
        depth: Limits::MAX_DEPTH + 1,
        ..Limits::default()
    };
    assert_eq!(
        bad(StateConfig {
            limits,
            ..Default::default()
        }),
        StateConfigError::Limit(Limit::Depth)
    );
    let limits = Limits {
        document_bytes: 1,
        ..Limits::default()
    };
    assert_eq!(
        bad(StateConfig {
            limits,
            ..Default::default()
        }),
        StateConfigError::Limit(Limit::DocumentBytes)
    );
    let history = HistoryLimits {
        entries: 0,
        ..Default::default()
    };
    assert_eq!(
        bad(StateConfig {
            history,
            ..Default::default()
        }),
        StateConfigError::History
    );
    let txn = TxnConfig {
        ttl: Duration::ZERO,
        ..Default::default()
    };
    assert_eq!(
        bad(StateConfig {
            txn,
            ..Default::default()
        }),
        StateConfigError::Txn
    );
    assert!(StateStore::new(StateConfig {
        shards: 1,
        ..Default::default()
    })
    .is_ok());
}

#[test]
fn strict_by_default_lenient_on_request() {
    let missing =
        r#"[{"op":"add","path":"/a"},{"op":"test","path":"/a"},{"op":"replace","path":"/a"}]"#;
    let strict = default_store();
    assert!(matches!(
        strict.apply_json(missing),
        Err(StateError::InvalidPatch(_))
    ));
    assert_eq!(strict.revision(), Revision(0));
    assert_eq!(strict.metrics().rejected_invalid, 1);
    let (lenient, _) = store(StateConfig {
        lenient: true,
        ..StateConfig::default()
    });
    lenient.apply_json(missing).unwrap();
    assert_eq!(lenient.snapshot().1, json!({"a": null}));
    // Leniency is only about `value`: other malformed operations still fail.
    for bad in [
        r#"[{"op":"remove"}]"#,
        r#"[{"op":"move","path":"/a"}]"#,
        r#"[{"op":"frobnicate","path":"/a"}]"#,
        r#"[{"op":"add","path":"a","value":1}]"#,
        r#"{"op":"add","path":"/a","value":1}"#,
        r#"not json"#,
    ] {
        assert!(
            matches!(lenient.apply_json(bad), Err(StateError::InvalidPatch(_))),
            "{bad}"
        );
    }
}

#[test]
fn duplicate_members_are_refused_and_apply_nothing() {
    let duplicate = |op: usize, name: &str| {
        Err::<Revision, _>(StateError::DuplicateMember {
            op,
            name: name.into(),
        })
    };
    // An operation object's own members: refused in strict and lenient mode.
    let in_operation = [
        (
            r#"[{"op":"add","path":"/s","value":1,"op":"remove"}]"#,
            0,
            "op",
        ),
        (
            r#"[{"op":"add","path":"/s","op":"add","value":1}]"#,
            0,
            "op",
        ),
        (
            r#"[{"op":"add","path":"/t","value":1},{"op":"add","path":"/s","path":"/u","value":2}]"#,
            1,
            "path",
        ),
        (
            r#"[{"op":"add","path":"/s","value":1,"value":2}]"#,
            0,
            "value",
        ),
        (
            r#"[{"op":"move","from":"/a","from":"/b","path":"/c"}]"#,
            0,
            "from",
        ),
        // Names compare decoded: `p\u0061th` is `path`.
        (
            r#"[{"op":"add","p\u0061th":"/s","path":"/u","value":1}]"#,
            0,
            "path",
        ),
        (
            r#"[{"op":"add","path":"/s","value":1,"x":1,"x":2}]"#,
            0,
            "x",
        ),
    ];
    // Inside a value: refused in strict mode; lenient mode keeps the last.
    let in_value = [
        (
            r#"[{"op":"add","path":"/s","value":{"x":1,"x":2}}]"#,
            "x",
            json!({"x": 2}),
        ),
        (
            r#"[{"op":"add","path":"/s","value":[1,{"y":{"z":1,"z":[]}}]}]"#,
            "z",
            json!([1, {"y": {"z": []}}]),
        ),
    ];
    for lenient in [false, true] {
        let (s, _) = store(StateConfig {
            lenient,
            ..StateConfig::default()
        });
        // `/s` exists: read as serde_json reads it, the first patch below removes it.
        s.apply_json(
            r#"[{"op":"add","path":"/a","value":{"b":1}},{"op":"add","path":"/s","value":0}]"#,
        )
        .unwrap();
        let before = observe(&s);
        let mut refused = 0;
        for (patch, op, name) in in_operation {
            assert_eq!(s.apply_json(patch), duplicate(op, name), "{patch}");
            let mut txn = s.begin().unwrap();
            assert_eq!(
                txn.push_json(patch),
                Err(StateError::DuplicateMember {
                    op,
                    name: name.into()
                })
            );
            assert!(txn.ops().is_empty());
            refused += 2;
        }
        for (patch, name, _) in &in_value {
            if !lenient {
                assert_eq!(s.apply_json(patch), duplicate(0, name), "{patch}");
                refused += 1;
            }
        }
        assert_eq!(observe(&s), before, "lenient: {lenient}");
        assert_eq!(s.metrics().rejected_invalid, refused);
        if lenient {
            for (patch, _, stored) in &in_value {
                s.apply_json(patch).unwrap();
                assert_eq!(s.get("/s").unwrap().as_ref(), Some(stored));
            }
        }
        // The same name in different objects is no duplicate; neither is a
        // duplicate in a text that is not a patch at all.
        s.apply_json(r#"[{"op":"add","path":"/d","value":{"op":{"op":1},"path":[{"op":2}]}},{"op":"test","path":"/d/op/op","value":1}]"#)
            .unwrap();
        assert!(matches!(
            s.apply_json(r#"{"op":"add","op":"remove"}"#),
            Err(StateError::InvalidPatch(_))
        ));
    }
    let error = StateError::DuplicateMember {
        op: 1,
        name: "op".into(),
    };
    assert_eq!(
        error.to_string(),
        "operation 1: member 'op' twice in one object"
    );
}

#[test]
fn export_import_round_trip() {
    let a = default_store();
    a.apply_json(r#"[{"op":"add","path":"/x","value":{"y":[1,"two",null]}},{"op":"add","path":"/z","value":true}]"#)
        .unwrap();
    a.apply_json(r#"[{"op":"remove","path":"/z"}]"#).unwrap();
    let saved = a.export();
    let text = saved.to_json().to_string();
    let b = default_store();
    b.import(StateSnapshot::from_json(serde_json::from_str(&text).unwrap()).unwrap())
        .unwrap();
    assert_eq!(b.snapshot(), a.snapshot());
    assert_account(&b);
    // The history restarts at the snapshot.
    assert!(b.changes_since(Revision(2)).unwrap().is_empty());
    assert!(matches!(
        b.changes_since(Revision(1)),
        Err(HistoryError::Compacted { .. })
    ));
    assert_eq!(
        b.apply_json(r#"[{"op":"add","path":"/w","value":1}]"#),
        Ok(Revision(3))
    );
    // Revisions never go back; nothing changes on a refused import.
    let before = observe(&b);
    assert_eq!(
        b.import(saved.clone()),
        Err(StateError::RevisionBehind {
            current: Revision(3),
            imported: Revision(2)
        })
    );
    let not_object = StateSnapshot {
        revision: Revision(9),
        document: json!([1]),
    };
    assert!(matches!(
        b.import(not_object),
        Err(StateError::InvalidSnapshot(_))
    ));
    let small = limited(Limits {
        depth: 2,
        ..Limits::default()
    });
    let deep = StateSnapshot {
        revision: Revision(9),
        document: json!({"a": {"b": {}}}),
    };
    assert!(matches!(small.import(deep), Err(StateError::Limit(_))));
    assert_eq!(observe(&b), before);
    assert!(StateSnapshot::from_json(json!({"revision": -1, "document": {}})).is_err());
    assert!(StateSnapshot::from_json(json!({"revision": 1})).is_err());
}

fn txn_store(txn: TxnConfig) -> (Store, Arc<ManualClock>) {
    store(StateConfig {
        txn,
        ..StateConfig::default()
    })
}

#[test]
fn txn_commits_atomically() {
    let s = default_store();
    s.apply_json(r#"[{"op":"add","path":"/a","value":1},{"op":"add","path":"/b","value":2}]"#)
        .unwrap();
    let mut t = s.begin().unwrap();
    assert_eq!(t.get("/a").unwrap(), Some(json!(1)));
    t.push_json(r#"[{"op":"replace","path":"/a","value":10}]"#)
        .unwrap();
    t.push_json(r#"[{"op":"move","from":"/b","path":"/c"}]"#)
        .unwrap();
    // Buffered, not applied.
    assert_eq!(s.get("/a").unwrap(), Some(json!(1)));
    assert_eq!(t.ops().len(), 2);
    assert_eq!(s.metrics().open_txns, 1);
    assert_eq!(t.commit(), Ok(Revision(2)));
    assert_eq!(s.snapshot().1, json!({"a": 10, "c": 2}));
    let m = s.metrics();
    assert_eq!((m.open_txns, m.txn_commits), (0, 1));
    // A failing operation at commit: nothing applied.
    let mut t = s.begin().unwrap();
    t.push_json(r#"[{"op":"remove","path":"/a"},{"op":"test","path":"/c","value":3}]"#)
        .unwrap();
    assert!(matches!(t.commit(), Err(StateError::Patch { op: 1, .. })));
    assert_eq!(s.snapshot(), (Revision(2), json!({"a": 10, "c": 2})));
}

#[test]
fn txn_conflicts_on_changed_shard_only() {
    let s = store(StateConfig {
        shards: 1,
        ..StateConfig::default()
    })
    .0;
    s.apply_json(r#"[{"op":"add","path":"/a","value":1}]"#)
        .unwrap();
    // Read-only dependency: a read of /a, a write of /b.
    let mut t = s.begin().unwrap();
    t.get("/a").unwrap();
    t.push_json(r#"[{"op":"add","path":"/b","value":1}]"#)
        .unwrap();
    s.apply_json(r#"[{"op":"replace","path":"/a","value":2}]"#)
        .unwrap();
    assert_eq!(
        t.commit(),
        Err(StateError::Conflict {
            shard: 0,
            base: Revision(1),
            current: Revision(2)
        })
    );
    assert_eq!(s.get("/b").unwrap(), None);
    assert_eq!(s.metrics().conflicts, 1);
    // A failed patch does not move a shard's revision, nor does a test.
    let mut t = s.begin().unwrap();
    t.push_json(r#"[{"op":"add","path":"/b","value":1}]"#)
        .unwrap();
    assert!(s
        .apply_json(r#"[{"op":"test","path":"/a","value":0}]"#)
        .is_err());
    assert!(s
        .apply_json(r#"[{"op":"test","path":"/a","value":2}]"#)
        .is_ok());
    // ...but the successful test took a revision without writing: no conflict.
    assert_eq!(t.commit(), Ok(Revision(4)));
}

#[test]
fn txn_on_other_shards_does_not_conflict() {
    let s = default_store();
    s.apply_json(r#"[{"op":"add","path":"/k0","value":0}]"#)
        .unwrap();
    // Find a key on another shard than /k0: a transaction that read /k0 survives a
    // write to it. Shards are hashed with a random seed, so probe: with 16 shards
    // all of /k1../k63 share /k0's shard with probability 16^-63.
    let mut other = None;
    for i in 1..64 {
        let mut probe = s.begin().unwrap();
        probe.get("/k0").unwrap();
        s.apply_json(&format!(r#"[{{"op":"add","path":"/k{i}","value":{i}}}]"#))
            .unwrap();
        probe
            .push_json(r#"[{"op":"test","path":"/k0","value":0}]"#)
            .unwrap();
        if probe.commit().is_ok() {
            other = Some(i);
            break;
        }
    }
    let other = other.expect("some key shares no shard with /k0");

    let mut t = s.begin().unwrap();
    t.get("/k0").unwrap();
    t.push_json(r#"[{"op":"replace","path":"/k0","value":1}]"#)
        .unwrap();
    let mut u = s.begin().unwrap();
    u.get("/k0").unwrap();
    u.push_json(r#"[{"op":"replace","path":"/k0","value":2}]"#)
        .unwrap();
    // A write on the other shard leaves both transactions valid ...
    s.apply_json(&format!(
        r#"[{{"op":"replace","path":"/k{other}","value":100}}]"#
    ))
    .unwrap();
    t.commit().unwrap();
    // ... a write on /k0's shard (t's commit) makes the other one conflict.
    assert!(matches!(u.commit(), Err(StateError::Conflict { .. })));
    assert_eq!(s.get("/k0").unwrap(), Some(json!(1)));
}

#[test]
fn txn_expires_caps_and_pressure() {
    let (s, clock) = txn_store(TxnConfig {
        max_open: 2,
        max_ops: 2,
        ttl: Duration::from_secs(1),
    });
    let mut a = s.begin().unwrap();
    let b = s.begin().unwrap();
    assert_eq!(s.begin().unwrap_err(), StateError::TooManyTxns { max: 2 });
    // Dropping releases a slot; so does rollback.
    drop(b);
    let c = s.begin().unwrap();
    c.rollback();
    let mut d = s.begin().unwrap();
    // Caps on buffered operations: all or nothing.
    a.push_json(r#"[{"op":"add","path":"/x","value":1}]"#)
        .unwrap();
    assert_eq!(
        a.push_json(r#"[{"op":"add","path":"/y","value":1},{"op":"add","path":"/z","value":1}]"#),
        Err(StateError::TxnTooLarge { max: 2 })
    );
    assert_eq!(a.ops().len(), 1);
    // Activity keeps `a` alive; `d` idles past its TTL and expires.
    clock.advance(600);
    a.get("/x").unwrap();
    clock.advance(600);
    assert_eq!(d.get("/x"), Err(StateError::TxnExpired));
    assert_eq!(d.commit(), Err(StateError::TxnExpired));
    // `d`'s slot is free again without any sweep.
    let e = s.begin().unwrap();
    assert_eq!(a.commit(), Ok(Revision(1)));
    // An abandoned transaction's slot comes back when it expires.
    let abandoned = s.begin().unwrap();
    clock.advance(2000);
    let f = s.begin().unwrap();
    let g = s.begin().unwrap();
    assert_eq!(s.begin().unwrap_err(), StateError::TooManyTxns { max: 2 });
    assert_eq!(abandoned.commit(), Err(StateError::TxnExpired));
    assert!(s.metrics().txn_expired >= 2);
    drop((e, f, g));
    s.sweep();
    assert_eq!(s.metrics().open_txns, 0);
    apply_pressure(&s, PressureLevel::Critical);
    assert_eq!(s.begin().unwrap_err(), StateError::CriticalPressure);
    apply_pressure(&s, PressureLevel::High);
    assert!(s.begin().is_ok());
    assert!(s.metrics().txn_refused >= 3);
}

#[test]
fn txn_root_reads_and_writes() {
    let s = default_store();
    s.apply_json(r#"[{"op":"add","path":"/a","value":1}]"#)
        .unwrap();
    let mut t = s.begin().unwrap();
    assert_eq!(t.get("").unwrap(), Some(json!({"a": 1})));
    t.push_json(r#"[{"op":"add","path":"/b","value":2}]"#)
        .unwrap();
    // Any write conflicts with a read of the whole document.
    s.apply_json(r#"[{"op":"add","path":"/zzz","value":0}]"#)
        .unwrap();
    assert!(matches!(t.commit(), Err(StateError::Conflict { .. })));
    let mut t = s.begin().unwrap();
    t.push_json(r#"[{"op":"replace","path":"","value":{"fresh":true}}]"#)
        .unwrap();
    assert_eq!(t.commit(), Ok(Revision(3)));
    assert_eq!(s.snapshot().1, json!({"fresh": true}));
    assert_account(&s);
}

#[test]
fn errors_display() {
    let s = default_store();
    let e = s
        .apply_json(r#"[{"op":"remove","path":"/nope"}]"#)
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "operation 0 failed at path '/nope': path is invalid"
    );
    let e = limited(Limits {
        ops_per_patch: 1,
        ..Limits::default()
    })
    .apply_json("[{},{}]")
    .unwrap_err();
    assert_eq!(e.to_string(), "limit ops_per_patch exceeded: 2 > 1");
    let e = HistoryError::Compacted {
        requested: Revision(1),
        oldest: Revision(4),
    };
    assert_eq!(
        e.to_string(),
        "history after r1 was compacted; the oldest available is r4"
    );
}

#[test]
fn store_and_transactions_cross_threads() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<StateStore>();
    send_sync::<Store>();
    send_sync::<membound::adapters::state::Txn<'static>>();
    // A transaction begun on one thread commits on another.
    let s = default_store();
    let mut t = s.begin().unwrap();
    t.push_json(r#"[{"op":"add","path":"/a","value":1}]"#)
        .unwrap();
    let r = std::thread::scope(|scope| scope.spawn(move || t.commit()).join().unwrap());
    assert_eq!(r, Ok(Revision(1)));
}
