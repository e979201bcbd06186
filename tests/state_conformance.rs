//! Conformance: every example of RFC 6902 appendix A and of RFC 6901 section 5, run
//! through the store (the document's root must be an object, as every example's is).
#![cfg(feature = "state")]

use membound::adapters::state::{PatchFailure, Revision, StateConfig, StateError, StateStore};
use serde_json::{json, Value};

/// A store holding `doc` at revision 0 (imported), with a few shards so that the
/// examples' keys spread over several of them.
fn store_with(doc: Value) -> StateStore {
    let store = StateStore::new(StateConfig {
        shards: 4,
        ..StateConfig::default()
    })
    .unwrap();
    store
        .import(membound::adapters::state::StateSnapshot {
            revision: Revision(0),
            document: doc,
        })
        .unwrap();
    store
}

/// Applies `patch` to `doc`; on success the store must hold `expected` at revision
/// 1; on failure (`expected` is `None`) it must hold `doc` at revision 0.
fn check(doc: Value, patch: &str, expected: Option<Value>) -> Result<Revision, StateError> {
    let store = store_with(doc.clone());
    let result = store.apply_json(patch);
    match expected {
        Some(expected) => {
            assert_eq!(result, Ok(Revision(1)), "patch {patch}");
            assert_eq!(store.snapshot(), (Revision(1), expected));
        }
        None => {
            assert!(result.is_err(), "patch {patch} should fail");
            assert_eq!(store.snapshot(), (Revision(0), doc));
            assert!(store.changes_since(Revision(0)).unwrap().is_empty());
        }
    }
    let (_, after) = store.snapshot();
    assert_eq!(
        store.metrics().document_bytes,
        after.to_string().len(),
        "size account after {patch}"
    );
    result
}

fn failure(result: Result<Revision, StateError>) -> PatchFailure {
    match result {
        Err(StateError::Patch { failure, .. }) => failure,
        other => panic!("expected a patch failure, got {other:?}"),
    }
}

#[test]
fn a1_adding_an_object_member() {
    check(
        json!({"foo": "bar"}),
        r#"[{ "op": "add", "path": "/baz", "value": "qux" }]"#,
        Some(json!({"baz": "qux", "foo": "bar"})),
    )
    .unwrap();
}

#[test]
fn a2_adding_an_array_element() {
    check(
        json!({"foo": ["bar", "baz"]}),
        r#"[{ "op": "add", "path": "/foo/1", "value": "qux" }]"#,
        Some(json!({"foo": ["bar", "qux", "baz"]})),
    )
    .unwrap();
}

#[test]
fn a3_removing_an_object_member() {
    check(
        json!({"baz": "qux", "foo": "bar"}),
        r#"[{ "op": "remove", "path": "/baz" }]"#,
        Some(json!({"foo": "bar"})),
    )
    .unwrap();
}

#[test]
fn a4_removing_an_array_element() {
    check(
        json!({"foo": ["bar", "qux", "baz"]}),
        r#"[{ "op": "remove", "path": "/foo/1" }]"#,
        Some(json!({"foo": ["bar", "baz"]})),
    )
    .unwrap();
}

#[test]
fn a5_replacing_a_value() {
    check(
        json!({"baz": "qux", "foo": "bar"}),
        r#"[{ "op": "replace", "path": "/baz", "value": "boo" }]"#,
        Some(json!({"baz": "boo", "foo": "bar"})),
    )
    .unwrap();
}

#[test]
fn a6_moving_a_value() {
    check(
        json!({"foo": {"bar": "baz", "waldo": "fred"}, "qux": {"corge": "grault"}}),
        r#"[{ "op": "move", "from": "/foo/waldo", "path": "/qux/thud" }]"#,
        Some(json!({"foo": {"bar": "baz"}, "qux": {"corge": "grault", "thud": "fred"}})),
    )
    .unwrap();
}

#[test]
fn a7_moving_an_array_element() {
    check(
        json!({"foo": ["all", "grass", "cows", "eat"]}),
        r#"[{ "op": "move", "from": "/foo/1", "path": "/foo/3" }]"#,
        Some(json!({"foo": ["all", "cows", "eat", "grass"]})),
    )
    .unwrap();
}

#[test]
fn a8_testing_a_value_success() {
    let doc = json!({"baz": "qux", "foo": ["a", 2, "c"]});
    check(
        doc.clone(),
        r#"[
            { "op": "test", "path": "/baz", "value": "qux" },
            { "op": "test", "path": "/foo/1", "value": 2 }
        ]"#,
        Some(doc),
    )
    .unwrap();
}

#[test]
fn a9_testing_a_value_error() {
    let result = check(
        json!({"baz": "qux"}),
        r#"[{ "op": "test", "path": "/baz", "value": "bar" }]"#,
        None,
    );
    assert_eq!(failure(result), PatchFailure::TestFailed);
}

#[test]
fn a10_adding_a_nested_member_object() {
    check(
        json!({"foo": "bar"}),
        r#"[{ "op": "add", "path": "/child", "value": { "grandchild": { } } }]"#,
        Some(json!({"foo": "bar", "child": {"grandchild": {}}})),
    )
    .unwrap();
}

#[test]
fn a11_ignoring_unrecognized_elements() {
    check(
        json!({"foo": "bar"}),
        r#"[{ "op": "add", "path": "/baz", "value": "qux", "xyz": 123 }]"#,
        Some(json!({"foo": "bar", "baz": "qux"})),
    )
    .unwrap();
}

#[test]
fn a12_adding_to_a_nonexistent_target() {
    let result = check(
        json!({"foo": "bar"}),
        r#"[{ "op": "add", "path": "/baz/bat", "value": "qux" }]"#,
        None,
    );
    assert_eq!(failure(result), PatchFailure::InvalidPointer);
}

#[test]
fn a13_invalid_json_patch_document() {
    // A duplicated "op" member: the RFC calls the document invalid, and the store
    // refuses it as such (not as the `remove` serde_json's last-member-wins reads).
    let result = check(
        json!({"foo": "bar"}),
        r#"[{ "op": "add", "path": "/baz", "value": "qux", "op": "remove" }]"#,
        None,
    );
    assert_eq!(
        result,
        Err(StateError::DuplicateMember {
            op: 0,
            name: "op".into()
        })
    );
}

#[test]
fn a14_escape_ordering() {
    let doc = json!({"/": 9, "~1": 10});
    check(
        doc.clone(),
        r#"[{"op": "test", "path": "/~01", "value": 10}]"#,
        Some(doc),
    )
    .unwrap();
}

#[test]
fn a15_comparing_strings_and_numbers() {
    let result = check(
        json!({"/": 9, "~1": 10}),
        r#"[{"op": "test", "path": "/~01", "value": "10"}]"#,
        None,
    );
    assert_eq!(failure(result), PatchFailure::TestFailed);
}

#[test]
fn a16_adding_an_array_value() {
    check(
        json!({"foo": ["bar"]}),
        r#"[{ "op": "add", "path": "/foo/-", "value": ["abc", "def"] }]"#,
        Some(json!({"foo": ["bar", ["abc", "def"]]})),
    )
    .unwrap();
}

/// RFC 6901 section 5's document.
fn rfc6901_doc() -> Value {
    json!({
        "foo": ["bar", "baz"],
        "": 0,
        "a/b": 1,
        "c%d": 2,
        "e^f": 3,
        "g|h": 4,
        "i\\j": 5,
        "k\"l": 6,
        " ": 7,
        "m~n": 8
    })
}

#[test]
fn rfc6901_every_example_pointer() {
    let store = store_with(rfc6901_doc());
    let cases = [
        ("", rfc6901_doc()),
        ("/foo", json!(["bar", "baz"])),
        ("/foo/0", json!("bar")),
        ("/", json!(0)),
        ("/a~1b", json!(1)),
        ("/c%d", json!(2)),
        ("/e^f", json!(3)),
        ("/g|h", json!(4)),
        ("/i\\j", json!(5)),
        ("/k\"l", json!(6)),
        ("/ ", json!(7)),
        ("/m~0n", json!(8)),
    ];
    for (pointer, expected) in cases {
        assert_eq!(store.get(pointer).unwrap(), Some(expected), "{pointer:?}");
    }
    assert_eq!(store.get("/foo/2").unwrap(), None);
    assert_eq!(store.get("/nothing/here").unwrap(), None);
    assert!(matches!(
        store.get("foo"),
        Err(StateError::InvalidPointer(_))
    ));
    assert!(matches!(
        store.get("/a~2"),
        Err(StateError::InvalidPointer(_))
    ));
}

#[test]
fn rfc6901_escapes_in_patch_paths() {
    // `~1` is `/` and `~0` is `~`, decoded once, in that order.
    check(
        json!({}),
        r#"[
            {"op": "add", "path": "/a~1b", "value": 1},
            {"op": "add", "path": "/m~0n", "value": 2},
            {"op": "add", "path": "/~01", "value": 3},
            {"op": "copy", "from": "/a~1b", "path": "/c~1d"}
        ]"#,
        Some(json!({"a/b": 1, "m~n": 2, "~1": 3, "c/d": 1})),
    )
    .unwrap();
}

#[test]
fn rfc6901_dash_appends_and_is_not_an_element() {
    check(
        json!({"list": [1]}),
        r#"[{"op": "add", "path": "/list/-", "value": 2}, {"op": "add", "path": "/list/-", "value": 3}]"#,
        Some(json!({"list": [1, 2, 3]})),
    )
    .unwrap();
    // `-` names the element after the last: nothing to remove, replace or test.
    for op in ["remove", "replace", "test"] {
        let patch = format!(r#"[{{"op": "{op}", "path": "/list/-", "value": 1}}]"#);
        let result = check(json!({"list": [1]}), &patch, None);
        assert_eq!(failure(result), PatchFailure::InvalidPointer, "{op}");
    }
    // Leading zeros and out-of-range indices are not indices.
    for path in ["/list/01", "/list/2", "/list/-1"] {
        let patch = format!(r#"[{{"op": "add", "path": "{path}", "value": 1}}]"#);
        let result = check(json!({"list": [1]}), &patch, None);
        assert_eq!(failure(result), PatchFailure::InvalidPointer, "{path}");
    }
}

#[test]
fn test_compares_numbers_by_numeric_value() {
    // RFC 6902 section 4.6: numbers are equal when their values are numerically
    // equal, whatever their text (json-patch compares serde_json's representations,
    // so 1 and 1.0 differ there). Integers beyond f64's precision compare exactly.
    let doc: Value = serde_json::from_str(
        r#"{"one": 1, "hundred": 100, "zero": 0, "negzero": -0, "half": 1.5, "neg": -5,
            "big": 9007199254740993, "bigf": 9007199254740992.0,
            "umax": 18446744073709551615, "imin": -9223372036854775808,
            "nested": {"a": [1, {"b": 2.0}], "c": 3}}"#,
    )
    .unwrap();
    let equal = [
        ("/one", "1"),
        ("/one", "1.0"),
        ("/one", "1e0"),
        ("/one", "10E-1"),
        ("/hundred", "1e2"),
        ("/hundred", "100.0"),
        ("/zero", "-0"),
        ("/zero", "-0.0"),
        ("/zero", "0e5"),
        ("/negzero", "0"),
        ("/negzero", "-0"),
        ("/half", "15e-1"),
        ("/neg", "-5.0"),
        ("/neg", "-5e0"),
        ("/big", "9007199254740993"),
        ("/bigf", "9007199254740992"),
        ("/umax", "18446744073709551615"),
        ("/imin", "-9223372036854775808.0"),
        ("/nested", r#"{"c": 3.0, "a": [1e0, {"b": 2}]}"#),
    ];
    for (path, value) in equal {
        let patch = format!(r#"[{{"op": "test", "path": "{path}", "value": {value}}}]"#);
        check(doc.clone(), &patch, Some(doc.clone())).unwrap_or_else(|e| panic!("{patch}: {e}"));
    }
    let different = [
        ("/one", "1.5"),
        ("/one", "\"1\""),
        ("/one", "true"),
        ("/one", "[1]"),
        ("/half", "1"),
        ("/neg", "5"),
        ("/zero", "1e-300"),
        // 9007199254740993 is not an f64: it must not round to ...992.
        ("/big", "9007199254740992.0"),
        ("/big", "9007199254740992"),
        ("/bigf", "9007199254740993"),
        // u64::MAX as an f64 is 2^64.
        ("/umax", "18446744073709551615.0"),
        ("/umax", "18446744073709551614"),
        ("/nested", r#"{"c": 3.0, "a": [1.5, {"b": 2}]}"#),
        ("/nested", r#"{"c": 3, "a": [1, {"b": 2}], "d": 4}"#),
        ("/nested", r#"{"c": 3, "a": [1, {"b": 2}, 3]}"#),
    ];
    for (path, value) in different {
        let patch = format!(r#"[{{"op": "test", "path": "{path}", "value": {value}}}]"#);
        let result = check(doc.clone(), &patch, None);
        assert_eq!(failure(result), PatchFailure::TestFailed, "{patch}");
    }
}
