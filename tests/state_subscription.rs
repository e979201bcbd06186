//! Subscription patterns (feature `state`): which patch operations a segment-aware
//! JSON Pointer pattern matches.
#![cfg(feature = "state")]

use json_patch::PatchOperation;
use membound::adapters::state::subscription::{Pattern, PatternError};
use serde_json::json;

fn op(value: serde_json::Value) -> PatchOperation {
    serde_json::from_value(value).expect("a valid operation")
}

fn add(path: &str) -> PatchOperation {
    op(json!({"op": "add", "path": path, "value": 1}))
}

fn remove(path: &str) -> PatchOperation {
    op(json!({"op": "remove", "path": path}))
}

fn replace(path: &str) -> PatchOperation {
    op(json!({"op": "replace", "path": path, "value": 1}))
}

fn pattern(p: &str) -> Pattern {
    Pattern::parse(p).expect("a valid pattern")
}

/// The paths a `replace` at which `p` matches, among `paths`.
fn matched<'a>(p: &str, paths: &[&'a str]) -> Vec<&'a str> {
    let p = pattern(p);
    paths
        .iter()
        .copied()
        .filter(|path| p.matches(&replace(path)))
        .collect()
}

#[test]
fn segments_are_compared_whole_not_as_string_prefixes() {
    let paths = [
        "/user",
        "/user/name",
        "/user/name/first",
        "/username",
        "/use",
        "/users/0",
    ];
    assert_eq!(
        matched("/user", &paths),
        ["/user", "/user/name", "/user/name/first"]
    );
    assert_eq!(
        matched("/user/name", &paths),
        ["/user", "/user/name", "/user/name/first"]
    );
    assert_eq!(matched("/username", &paths), ["/username"]);
}

#[test]
fn a_change_at_a_parent_matches_the_watched_child() {
    let p = pattern("/user/name");
    assert!(p.matches(&replace("/user")));
    assert!(p.matches(&remove("/user")));
    assert!(p.matches(&replace("")), "replacing the whole document");
    assert!(!p.matches(&replace("/user/age")));
    assert!(!p.matches(&replace("/other")));
}

#[test]
fn the_root_pattern_matches_every_change() {
    let root = pattern("");
    assert!(root.is_root());
    for path in ["", "/", "/a", "/a/b/c", "/~0/~1"] {
        assert!(root.matches(&replace(path)), "{path}");
        assert!(root.matches(&add(path)), "{path}");
    }
}

#[test]
fn test_operations_change_nothing_and_never_match() {
    let t = op(json!({"op": "test", "path": "/user", "value": 1}));
    assert!(!pattern("").matches(&t));
    assert!(!pattern("/user").matches(&t));
}

#[test]
fn a_star_matches_exactly_one_segment() {
    let paths = [
        "/users",
        "/users/1",
        "/users/1/name",
        "/users/1/age",
        "/users/1/name/x",
        "/groups/1/name",
    ];
    assert_eq!(
        matched("/users/*/name", &paths),
        ["/users", "/users/1", "/users/1/name", "/users/1/name/x"]
    );
    assert_eq!(matched("/*", &["/a", "/b/c", ""]), ["/a", "/b/c", ""]);
    assert_eq!(
        matched("/*/x", &["/a/x", "/a/y", "/b/x/z", "/a"]),
        ["/a/x", "/b/x/z", "/a"]
    );
    // `*` is a whole segment only: `/a*` is a literal key.
    assert_eq!(matched("/a*", &["/a*", "/ab", "/a"]), ["/a*"]);
}

#[test]
fn escaped_segments_are_compared_decoded() {
    // "a/b" is one key, written a~1b; "m~n" is written m~0n.
    assert_eq!(
        matched("/a~1b", &["/a~1b", "/a/b", "/a~1b/c", "/a"]),
        ["/a~1b", "/a~1b/c"]
    );
    assert_eq!(
        matched("/m~0n", &["/m~0n", "/m~1n", "/m~01", "/m"]),
        ["/m~0n"]
    );
    // ~01 decodes to "~1", not "/": distinct from ~1.
    assert_eq!(matched("/~01", &["/~01", "/~1", "/~0"]), ["/~01"]);
    // The pattern `/a/b` has two segments, unlike the key "a/b".
    assert_eq!(matched("/a/b", &["/a~1b", "/a/b", "/a"]), ["/a/b", "/a"]);
}

#[test]
fn the_empty_key_is_a_segment_of_its_own() {
    assert_eq!(matched("/", &["/", "", "/a", "//x"]), ["/", "", "//x"]);
}

#[test]
fn move_changes_its_source_and_its_target_copy_only_its_target() {
    let mv = op(json!({"op": "move", "from": "/user/name", "path": "/archive/name"}));
    assert!(
        pattern("/user").matches(&mv),
        "moving a value out changes its source"
    );
    assert!(pattern("/archive").matches(&mv));
    assert!(!pattern("/other").matches(&mv));
    let cp = op(json!({"op": "copy", "from": "/user/name", "path": "/archive/name"}));
    assert!(
        !pattern("/user").matches(&cp),
        "a copy only reads its source"
    );
    assert!(pattern("/archive/name/first").matches(&cp));
}

#[test]
fn inserting_or_removing_in_an_array_matches_the_elements_it_shifts() {
    let p = pattern("/list/3");
    assert!(p.matches(&add("/list/1")), "an insert before shifts it");
    assert!(p.matches(&remove("/list/3")));
    assert!(p.matches(&remove("/list/0")));
    assert!(p.matches(&add("/list/-")), "an append may create it");
    assert!(!p.matches(&add("/list/4")), "an insert after leaves it");
    assert!(!p.matches(&replace("/list/1")), "a replace shifts nothing");
    assert!(!p.matches(&add("/other/1")));
    assert!(!p.matches(&add("/list/1/x")), "inside another element");
    // Numeric comparison, not textual: 10 is after 9.
    assert!(pattern("/list/10").matches(&remove("/list/9")));
    assert!(!pattern("/list/9").matches(&remove("/list/10")));
    // Deeper patterns under a shifted element, and wildcards above it.
    assert!(pattern("/list/3/name").matches(&add("/list/2")));
    assert!(pattern("/*/3").matches(&add("/list/2")));
    // Non-index keys are never shifted.
    assert!(!pattern("/list/x").matches(&add("/list/1")));
    assert!(!pattern("/list/03").matches(&add("/list/1")));
    assert!(!pattern("/list/3").matches(&add("/list/01")));
    // A move shifts at both ends.
    let mv = op(json!({"op": "move", "from": "/list/0", "path": "/list/5"}));
    assert!(pattern("/list/2").matches(&mv));
}

#[test]
fn invalid_patterns_are_typed_errors() {
    assert_eq!(Pattern::parse("user"), Err(PatternError::NoLeadingSlash));
    assert_eq!(
        Pattern::parse("/a~"),
        Err(PatternError::InvalidEscape { offset: 2 })
    );
    assert_eq!(
        Pattern::parse("/a/~2b"),
        Err(PatternError::InvalidEscape { offset: 3 })
    );
    assert_eq!(
        PatternError::InvalidEscape { offset: 3 }.to_string(),
        "'~' at byte 3 is not followed by '0' or '1'"
    );
    let p: Pattern = "/a/*".parse().unwrap();
    assert_eq!(p.to_string(), "/a/*");
    assert_eq!(format!("{p:?}"), "Pattern(\"/a/*\")");
}

// ---- Through the store: backlog, compaction, imports, callbacks, expiry ----

mod store {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{mpsc, Arc};
    use std::time::Duration;

    use membound::adapters::state::subscription::{
        RecvError, SubscribeError, SubscribeOptions, SubscriptionConfig,
    };
    use membound::adapters::state::{
        HistoryError, HistoryLimits, Revision, StateConfig, StateSnapshot, StateStore,
    };
    use membound::clock::ManualClock;
    use serde_json::json;

    fn set(store: &StateStore<impl membound::clock::Clock + Send + Sync>, key: &str, n: u64) {
        store
            .apply_json(&format!(r#"[{{"op":"add","path":"/{key}","value":{n}}}]"#))
            .unwrap();
    }

    /// A patch across shards reaches each subscriber once, with only the operations
    /// its pattern matches, in patch order.
    #[test]
    fn a_cross_shard_patch_is_split_by_pattern() {
        let store = StateStore::new(StateConfig::default()).unwrap();
        let mut a = store.subscribe("/a", SubscribeOptions::new()).unwrap();
        let mut star = store.subscribe("/*/name", SubscribeOptions::new()).unwrap();
        store
            .apply_json(
                r#"[{"op":"add","path":"/a","value":{"name":"x"}},
                    {"op":"add","path":"/b","value":{"name":"y"}},
                    {"op":"replace","path":"/a/name","value":"z"}]"#,
            )
            .unwrap();
        let change = a.try_recv().unwrap().unwrap();
        assert_eq!(change.revision, Revision(1));
        assert_eq!(change.ops.len(), 2); // the add of /a and the replace below it
                                         // `/*/name` sees the adds of its parents and the replace.
        assert_eq!(star.try_recv().unwrap().unwrap().ops.len(), 3);
        assert_eq!(a.try_recv().unwrap(), None);
    }

    /// Subscribing from a revision the history no longer holds is a typed error;
    /// from a snapshot's revision it works.
    #[test]
    fn subscribing_from_a_compacted_revision_is_refused() {
        let store = StateStore::new(StateConfig {
            history: HistoryLimits {
                entries: 4,
                ..HistoryLimits::default()
            },
            ..StateConfig::default()
        })
        .unwrap();
        for n in 0..10 {
            set(&store, "k", n);
        }
        let err = store
            .subscribe("", SubscribeOptions::new().with_from(Revision(2)))
            .unwrap_err();
        assert!(
            matches!(
                err,
                SubscribeError::History(HistoryError::Compacted {
                    requested: Revision(2),
                    oldest: Revision(6)
                })
            ),
            "{err:?}"
        );
        assert!(matches!(
            store.subscribe("", SubscribeOptions::new().with_from(Revision(11))),
            Err(SubscribeError::History(HistoryError::Future { .. }))
        ));
        let (revision, _) = store.snapshot();
        let mut sub = store
            .subscribe("", SubscribeOptions::new().with_from(revision))
            .unwrap();
        set(&store, "k", 99);
        assert_eq!(sub.try_recv().unwrap().unwrap().revision, Revision(11));
    }

    /// An import breaks the history: a subscriber learns it as lag, and catching up
    /// from its resume point answers `Compacted` (so it takes a snapshot).
    #[test]
    fn an_import_is_reported_as_lag() {
        let store = StateStore::new(StateConfig::default()).unwrap();
        set(&store, "a", 1);
        let mut sub = store.subscribe("", SubscribeOptions::new()).unwrap();
        set(&store, "a", 2);
        assert_eq!(sub.try_recv().unwrap().unwrap().revision, Revision(2));
        store
            .import(StateSnapshot {
                revision: Revision(50),
                document: json!({"a": 7}),
            })
            .unwrap();
        set(&store, "a", 8);
        match sub.try_recv() {
            Err(RecvError::Lagged { resume, .. }) => {
                assert_eq!(resume, Revision(2));
                assert!(matches!(
                    store.changes_since(resume),
                    Err(HistoryError::Compacted { .. })
                ));
            }
            other => panic!("expected a lag report, got {other:?}"),
        }
        assert_eq!(sub.try_recv().unwrap().unwrap().revision, Revision(51));
    }

    /// A callback runs off the writer's thread and may use the store.
    #[test]
    fn a_callback_may_read_and_write_the_store() {
        let store = Arc::new(StateStore::new(StateConfig::default()).unwrap());
        let (tx, rx) = mpsc::channel();
        let inner = Arc::clone(&store);
        let _sub = store
            .subscribe_with("/in", SubscribeOptions::new(), move |change| {
                let change = change.unwrap();
                let value = inner.get("/in").unwrap().unwrap();
                // Re-entry: write another key from the callback.
                set(&inner, "out", value.as_u64().unwrap() * 10);
                tx.send(change.revision).unwrap();
            })
            .unwrap();
        set(&store, "in", 4);
        assert_eq!(
            rx.recv_timeout(Duration::from_secs(30)).unwrap(),
            Revision(1)
        );
        // The callback's own write is revision 2 (it does not match `/in`).
        while store.revision() < Revision(2) {
            std::thread::yield_now();
        }
        assert_eq!(store.get("/out").unwrap(), Some(json!(40)));
    }

    /// Idle subscriptions expire through the store's sweep, on its clock; one that
    /// keeps receiving does not.
    #[test]
    fn idle_subscriptions_expire_on_the_stores_clock() {
        let clock = Arc::new(ManualClock::new(Duration::from_secs(1)).unwrap());
        let store = StateStore::builder(StateConfig {
            subscriptions: SubscriptionConfig::new().with_idle_ttl(Duration::from_secs(60)),
            ..StateConfig::default()
        })
        .clock(Arc::clone(&clock))
        .build()
        .unwrap();
        let mut idle = store.subscribe("", SubscribeOptions::new()).unwrap();
        let mut busy = store.subscribe("", SubscribeOptions::new()).unwrap();
        let received = AtomicU64::new(0);
        for n in 0..3 {
            clock.advance_by(Duration::from_secs(40));
            set(&store, "k", n);
            assert!(busy.try_recv().unwrap().is_some());
            received.fetch_add(1, Ordering::Relaxed);
            store.sweep();
        }
        assert_eq!(idle.try_recv(), Err(RecvError::Expired));
        assert_eq!(busy.try_recv().unwrap(), None);
        let m = store.subscription_metrics();
        assert_eq!((m.expired, m.active), (1, 1));
        assert_eq!(received.load(Ordering::Relaxed), 3);
    }
}
