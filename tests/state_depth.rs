//! Values nested far deeper than the store's depth limit, handed to every entry point
//! that takes outside values: each is refused with the typed depth error, nothing
//! stored changes, and nothing recursive runs over the value first (encoding,
//! comparison, size account, import, dropping). The checks run on a thread with a
//! small stack, where any recursion over 100 000 levels overflows it.
#![cfg(feature = "state")]

use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, PatchOperation, ReplaceOperation, TestOperation};
use membound::adapters::state::{
    Limit, LimitExceeded, Limits, Revision, StateConfig, StateError, StateSnapshot, StateStore,
};
use serde_json::{json, Map, Value};

/// Far past any depth limit, and past what a recursive walk survives on `STACK`.
const DEEP: usize = 100_000;
/// A small thread stack: a recursive walk over `DEEP` levels overflows it.
const STACK: usize = 256 << 10;

/// Runs `f` on a thread with a `STACK`-byte stack; a stack overflow there aborts the
/// test binary.
fn on_small_stack(f: impl FnOnce() + Send + 'static) {
    std::thread::Builder::new()
        .stack_size(STACK)
        .spawn(f)
        .unwrap()
        .join()
        .unwrap();
}

/// `levels` containers nested in each other (`[[...[1]...]]` or
/// `{"k":{"k":...1...}}`), built without recursion.
fn nested(levels: usize, objects: bool) -> Value {
    (0..levels).fold(json!(1), |inner, _| {
        if objects {
            Value::Object(Map::from_iter([("k".to_string(), inner)]))
        } else {
            Value::Array(vec![inner])
        }
    })
}

/// Drops `value` without recursion (serde_json's `Value` drops recursively).
fn dismantle(value: Value) {
    let mut stack = vec![value];
    while let Some(value) = stack.pop() {
        match value {
            Value::Array(items) => stack.extend(items),
            Value::Object(members) => stack.extend(members.into_iter().map(|(_, v)| v)),
            _ => {}
        }
    }
}

fn pointer(text: &str) -> PointerBuf {
    PointerBuf::parse(text).unwrap()
}

/// The operation of `kind` ("add", "replace", "test") storing or testing `value`.
fn operation(kind: &str, path: &str, value: Value) -> PatchOperation {
    let path = pointer(path);
    match kind {
        "add" => PatchOperation::Add(AddOperation { path, value }),
        "replace" => PatchOperation::Replace(ReplaceOperation { path, value }),
        _ => PatchOperation::Test(TestOperation { path, value }),
    }
}

/// The value an operation carries, taken back out to dismantle it.
fn into_value(op: PatchOperation) -> Value {
    match op {
        PatchOperation::Add(op) => op.value,
        PatchOperation::Replace(op) => op.value,
        PatchOperation::Test(op) => op.value,
        _ => Value::Null,
    }
}

fn is_depth_error(result: &Result<impl core::fmt::Debug, StateError>, op: Option<usize>) -> bool {
    matches!(
        result,
        Err(StateError::Limit(LimitExceeded { limit: Limit::Depth, op: o, .. })) if *o == op
    )
}

/// A store holding `{"a": {"b": [1, 2]}}` at revision 1.
fn seeded() -> StateStore {
    let store = StateStore::new(StateConfig::default()).unwrap();
    store
        .apply_json(r#"[{"op":"add","path":"/a","value":{"b":[1,2]}}]"#)
        .unwrap();
    store
}

fn observe(store: &StateStore) -> (Revision, Value, usize, usize) {
    let (revision, document) = store.snapshot();
    let metrics = store.metrics();
    (
        revision,
        document,
        metrics.history_entries,
        metrics.document_bytes,
    )
}

#[test]
fn deep_values_in_add_replace_and_test_are_refused_without_overflow() {
    on_small_stack(|| {
        let store = seeded();
        let before = observe(&store);
        for objects in [false, true] {
            for kind in ["add", "replace", "test"] {
                let op = operation(kind, "/a", nested(DEEP, objects));
                let patch = [op];
                let result = store.apply(&patch);
                assert!(is_depth_error(&result, Some(0)), "{kind}: {result:?}");
                let [op] = patch;
                dismantle(into_value(op));
            }
        }
        assert_eq!(observe(&store), before);
        assert_eq!(store.metrics().rejected_limit, 6);
    });
}

#[test]
fn a_deep_value_after_valid_operations_changes_nothing() {
    on_small_stack(|| {
        let store = seeded();
        let before = observe(&store);
        let patch = [
            operation("add", "/x", json!(1)),
            operation("test", "/a/b/0", json!(1)),
            operation("add", "/y", nested(DEEP, false)),
        ];
        let result = store.apply(&patch);
        assert!(is_depth_error(&result, Some(2)), "{result:?}");
        assert_eq!(observe(&store), before);
        let [_, _, op] = patch;
        dismantle(into_value(op));
    });
}

#[test]
fn a_value_at_the_depth_limit_is_stored_and_one_level_more_is_not() {
    on_small_stack(|| {
        let store = seeded();
        let depth = Limits::default().depth;
        // `/n` is a top-level member: its outermost container is at level 2, so
        // `depth - 1` containers reach the limit exactly.
        let at_limit = nested(depth - 1, false);
        let revision = store
            .apply(&[operation("add", "/n", at_limit.clone())])
            .unwrap();
        assert_eq!(store.get("/n").unwrap(), Some(at_limit.clone()));
        store
            .apply(&[operation("test", "/n", at_limit.clone())])
            .unwrap();
        store
            .apply(&[operation("replace", "/n", at_limit.clone())])
            .unwrap();
        let changes = store.changes_since(Revision(revision.0 - 1)).unwrap();
        assert_eq!(changes.len(), 3);
        assert_eq!(changes[0].ops, [operation("add", "/n", at_limit.clone())]);

        let before = observe(&store);
        for kind in ["add", "replace", "test"] {
            let result = store.apply(&[operation(kind, "/n", nested(depth, false))]);
            assert!(is_depth_error(&result, Some(0)), "{kind}: {result:?}");
        }
        assert_eq!(observe(&store), before);
    });
}

#[test]
fn a_deep_value_pushed_into_a_transaction_is_refused_without_overflow() {
    on_small_stack(|| {
        let store = seeded();
        let before = observe(&store);
        let mut txn = store.begin().unwrap();
        for objects in [false, true] {
            for kind in ["add", "replace", "test"] {
                // `push` takes the operation: refusing it must not drop it recursively.
                let result = txn.push(operation(kind, "/a", nested(DEEP, objects)));
                assert!(is_depth_error(&result, Some(0)), "{kind}: {result:?}");
            }
        }
        assert!(txn.ops().is_empty());
        txn.commit().unwrap();
        let (revision, document, entries, bytes) = before;
        assert_eq!(
            observe(&store),
            (Revision(revision.0 + 1), document, entries + 1, bytes)
        );
    });
}

#[test]
fn a_deep_snapshot_is_refused_without_overflow() {
    on_small_stack(|| {
        let store = seeded();
        let before = observe(&store);
        for objects in [false, true] {
            let mut document = Map::new();
            document.insert("a".into(), nested(DEEP, objects));
            let snapshot = StateSnapshot {
                revision: Revision(5),
                document: Value::Object(document),
            };
            // `import` takes the snapshot: refusing it must not drop it recursively.
            let result = store.import(snapshot);
            assert!(is_depth_error(&result, None), "{result:?}");

            // Whatever `from_json` does not keep, it drops without recursion too.
            let text = json!({"revision": 5, "document": {}, "extra": 1});
            let Value::Object(mut members) = text else {
                unreachable!()
            };
            members.insert("extra".into(), nested(DEEP, objects));
            let snapshot = StateSnapshot::from_json(Value::Object(members)).unwrap();
            assert_eq!(snapshot.document, json!({}));
            let refused = StateSnapshot::from_json(nested(DEEP, objects));
            assert!(matches!(refused, Err(StateError::InvalidSnapshot(_))));
        }
        assert_eq!(observe(&store), before);
    });
}

#[test]
fn every_accepted_depth_reads_back_from_the_history_and_as_text() {
    // The deepest limit a store accepts must still produce patches and snapshots
    // that serde_json (and so `apply_json`, the history and clients) can parse back.
    let config = StateConfig {
        limits: Limits {
            depth: Limits::MAX_DEPTH,
            ..Limits::default()
        },
        ..StateConfig::default()
    };
    let store = StateStore::new(config).unwrap();
    let deepest = nested(Limits::MAX_DEPTH - 1, false);
    let op = operation("add", "/n", deepest.clone());
    store.apply(std::slice::from_ref(&op)).unwrap();
    // An operation on the root carries the whole document.
    let root = operation("replace", "", json!({ "n": deepest }));
    store.apply(std::slice::from_ref(&root)).unwrap();
    let changes = store.changes_since(Revision(0)).unwrap();
    assert_eq!(changes[0].ops, std::slice::from_ref(&op));
    assert_eq!(changes[1].ops, [root]);

    let patch_text = serde_json::to_string(&[op]).unwrap();
    let other = StateStore::new(config).unwrap();
    other.apply_json(&patch_text).unwrap();
    assert_eq!(other.snapshot().1, store.snapshot().1);

    let exported = store.export().to_json().to_string();
    let parsed: Value = serde_json::from_str(&exported).unwrap();
    let restored = StateStore::new(config).unwrap();
    restored
        .import(StateSnapshot::from_json(parsed).unwrap())
        .unwrap();
    assert_eq!(restored.snapshot(), store.snapshot());

    // One level more is refused.
    let result = store.apply(&[operation("add", "/m", nested(Limits::MAX_DEPTH, false))]);
    assert!(is_depth_error(&result, Some(0)), "{result:?}");
}
