//! Random patches on the state store, differential against a model: one
//! `serde_json::Value` to which `json_patch::patch` applies each operation in turn
//! on a copy that replaces the model only if every operation succeeded (json-patch's
//! own multi-operation undo is incomplete in 5.0.0, see `src/adapters/state/ops.rs`),
//! with the store's rules on top: the root stays an object, depth and document size
//! are limited. Same results, same errors (operation and kind), same document and
//! size account after every patch; the history replays to the final document.
//!
//! Input: the first byte picks the shard count; then each patch is a count byte
//! (1-4 operations) and per operation a kind byte, a two-byte pointer and a
//! two-byte pointer (move, copy) or a value byte. Pointers come from a small
//! vocabulary (with `~0`, `~1`, `-`, leading zeros) so they collide often.
#![no_main]

use json_patch::jsonptr::PointerBuf;
use json_patch::{
    AddOperation, CopyOperation, MoveOperation, PatchOperation, RemoveOperation, ReplaceOperation,
    TestOperation,
};
use libfuzzer_sys::fuzz_target;
use membound::adapters::state::{
    HistoryLimits, Limit, Limits, PatchFailure, Revision, StateConfig, StateError, StateStore,
};
use serde_json::{json, Value};

const TOP: [&str; 5] = ["a", "b", "c", "d~1e", "~0"];
const SEG: [&str; 7] = ["0", "1", "-", "x", "y", "01", "a"];
const DOCUMENT_BYTES: usize = 16 << 10;
const DEPTH: usize = 6;

fn pointer(b1: u8, b2: u8) -> PointerBuf {
    let depth = match b1 % 8 {
        0 => 0,
        1..=3 => 1,
        4..=6 => 2,
        _ => 3,
    };
    let mut text = String::new();
    if depth >= 1 {
        text.push('/');
        text.push_str(TOP[usize::from(b1 / 8) % TOP.len()]);
    }
    if depth >= 2 {
        text.push('/');
        text.push_str(SEG[usize::from(b2) % SEG.len()]);
    }
    if depth >= 3 {
        text.push('/');
        text.push_str(SEG[usize::from(b2 / 8) % SEG.len()]);
    }
    PointerBuf::parse(text).expect("vocabulary pointers parse")
}

fn value(b: u8) -> Value {
    match b % 12 {
        0 => Value::Null,
        1 => json!(0),
        2 => json!(1),
        3 => json!("s"),
        4 => json!([]),
        5 => json!({}),
        6 => json!([1, 2]),
        7 => json!({"x": 1}),
        8 => json!({"x": {"y": []}}),
        9 => json!(true),
        10 => json!(1.0),
        _ => json!({"a": [{"0": "~"}]}),
    }
}

/// Decodes one operation from the front of `data`.
fn operation(data: &mut &[u8]) -> Option<PatchOperation> {
    let (&[kind, p1, p2, a, b], rest) = data.split_first_chunk::<5>()?;
    *data = rest;
    let path = pointer(p1, p2);
    Some(match kind % 6 {
        0 => PatchOperation::Add(AddOperation {
            path,
            value: value(a),
        }),
        1 => PatchOperation::Remove(RemoveOperation { path }),
        2 => PatchOperation::Replace(ReplaceOperation {
            path,
            value: value(a),
        }),
        3 => PatchOperation::Move(MoveOperation {
            from: pointer(a, b),
            path,
        }),
        4 => PatchOperation::Copy(CopyOperation {
            from: pointer(a, b),
            path,
        }),
        _ => PatchOperation::Test(TestOperation {
            path,
            value: value(a),
        }),
    })
}

fn depth(value: &Value) -> usize {
    match value {
        Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        Value::Object(members) => 1 + members.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// RFC 6902 section 4.6 equality, for `test`: numbers by value (json-patch's `test`
/// tells 1 from 1.0). As `f64`, which is exact for the vocabulary's numbers.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

/// What the model says a patch does: the new document, or the error.
#[derive(Debug, PartialEq)]
enum Outcome {
    Applied(Value),
    Patch(usize, PatchFailure),
    Root(usize),
    Limit(Limit, Option<usize>),
}

fn model(doc: &Value, ops: &[PatchOperation]) -> Outcome {
    // The values an operation stores or tests are checked before anything runs.
    for (i, op) in ops.iter().enumerate() {
        if let PatchOperation::Add(AddOperation { path, value })
        | PatchOperation::Replace(ReplaceOperation { path, value })
        | PatchOperation::Test(TestOperation { path, value }) = op
        {
            if path.count() + depth(value) > DEPTH {
                return Outcome::Limit(Limit::Depth, Some(i));
            }
        }
    }
    let mut next = doc.clone();
    for (i, op) in ops.iter().enumerate() {
        if let PatchOperation::Test(TestOperation { path, value }) = op {
            match next.pointer(path.as_str()) {
                None => return Outcome::Patch(i, PatchFailure::InvalidPointer),
                Some(target) if !same(target, value) => {
                    return Outcome::Patch(i, PatchFailure::TestFailed)
                }
                Some(_) => continue,
            }
        }
        if let Err(e) = json_patch::patch(&mut next, std::slice::from_ref(op)) {
            let failure = PatchFailure::from_kind(&e.kind).expect("a known kind");
            return Outcome::Patch(i, failure);
        }
        if !next.is_object() {
            return Outcome::Root(i);
        }
        if depth(&next) > DEPTH {
            return Outcome::Limit(Limit::Depth, Some(i));
        }
    }
    if next.to_string().len() > DOCUMENT_BYTES {
        return Outcome::Limit(Limit::DocumentBytes, None);
    }
    Outcome::Applied(next)
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, mut data)) = data.split_first() else {
        return;
    };
    let store = StateStore::new(StateConfig {
        shards: 1 << (first % 5),
        limits: Limits {
            document_bytes: DOCUMENT_BYTES,
            depth: DEPTH,
            ..Limits::default()
        },
        history: HistoryLimits {
            entries: 1 << 16,
            bytes: 1 << 30,
            ..HistoryLimits::default()
        },
        ..StateConfig::default()
    })
    .unwrap();
    let mut doc = json!({});
    let mut revision = Revision(0);
    while let Some((&count, rest)) = data.split_first() {
        data = rest;
        let ops: Vec<PatchOperation> = (0..1 + count % 4)
            .map_while(|_| operation(&mut data))
            .collect();
        if ops.is_empty() {
            break;
        }
        let expected = model(&doc, &ops);
        let got = store.apply(&ops);
        match (got, expected) {
            (Ok(r), Outcome::Applied(next)) => {
                assert_eq!(r, Revision(revision.0 + 1));
                revision = r;
                doc = next;
            }
            (Err(StateError::Patch { op, failure, path }), Outcome::Patch(i, f)) => {
                assert_eq!((op, failure), (i, f), "{ops:?}");
                assert_eq!(path, ops[op].path().to_string());
            }
            (Err(StateError::RootNotObject { op }), Outcome::Root(i)) => assert_eq!(op, i),
            (Err(StateError::Limit(e)), Outcome::Limit(limit, op)) => {
                assert_eq!((e.limit, e.op), (limit, op), "{ops:?}");
            }
            // A move or copy too deep for a target that does not exist either: the
            // store checks the depth first, json-patch finds the missing target.
            (Err(StateError::Limit(e)), Outcome::Patch(i, _))
                if e.limit == Limit::Depth
                    && e.op == Some(i)
                    && matches!(ops[i], PatchOperation::Move(_) | PatchOperation::Copy(_)) => {}
            (got, expected) => panic!("store {got:?}, model {expected:?}, ops {ops:?}"),
        }
        let (r, snapshot) = store.snapshot();
        assert_eq!((r, &snapshot), (revision, &doc));
        assert_eq!(store.metrics().document_bytes, doc.to_string().len());
        for op in &ops {
            let pointer = op.path().as_str();
            assert_eq!(store.get(pointer).unwrap().as_ref(), doc.pointer(pointer));
        }
    }
    // Without the tests, which change nothing and which json-patch compares
    // differently.
    let mut replay = json!({});
    for change in store.changes_since(Revision(0)).unwrap() {
        let ops: Vec<PatchOperation> = change
            .ops
            .into_iter()
            .filter(|op| !matches!(op, PatchOperation::Test(_)))
            .collect();
        json_patch::patch(&mut replay, &ops).unwrap();
    }
    assert_eq!(replay, doc);
});
