//! The history's real heap cost: 10 000 revisions of ~100-byte patches over a 1 MB
//! document must take under 5 MB, measured by the crate's tracking allocator (the
//! whole process's live bytes; this binary runs this one test only).
#![cfg(feature = "state")]

use std::alloc::System;

use membound::adapters::state::{HistoryLimits, Revision, StateConfig, StateStore};
use membound::heap::TrackingAllocator;

#[global_allocator]
static HEAP: TrackingAllocator<System> = TrackingAllocator::new(System);

const KEYS: usize = 1000;
const REVISIONS: usize = 10_000;

#[test]
fn history_of_10k_small_patches_over_1mb_document_stays_under_5mb() {
    let store = StateStore::new(StateConfig {
        history: HistoryLimits {
            entries: REVISIONS,
            ..HistoryLimits::default()
        },
        ..StateConfig::default()
    })
    .unwrap();
    let big = "x".repeat(1000);
    for k in 0..KEYS {
        let patch = format!(
            r#"[{{"op":"add","path":"/k{k:04}","value":{{"big":"{big}","small":"{:060}"}}}}]"#,
            0
        );
        store.apply_json(&patch).unwrap();
    }
    let document = store.metrics().document_bytes;
    assert!(document > 1_000_000, "{document}");
    // Start from an empty history over the full document.
    let snapshot = store.export();
    let store = StateStore::new(*store.config()).unwrap();
    store.import(snapshot).unwrap();
    let base = store.revision();

    let before = HEAP.live_bytes();
    let mut patch_bytes = 0;
    for i in 0..REVISIONS {
        // Same-length strings: the document's own memory does not change.
        let patch = format!(
            r#"[{{"op":"replace","path":"/k{:04}/small","value":"{:060}"}}]"#,
            i % KEYS,
            i
        );
        patch_bytes += patch.len();
        store.apply_json(&patch).unwrap();
    }
    let after = HEAP.live_bytes();
    let grown = after.saturating_sub(before);

    let metrics = store.metrics();
    assert_eq!(metrics.history_entries, REVISIONS);
    assert_eq!(metrics.history_bytes, patch_bytes);
    assert_eq!(
        store.changes_since(base).unwrap().len(),
        REVISIONS,
        "every revision is in the history"
    );
    assert_eq!(store.revision(), Revision(base.0 + REVISIONS as u64));
    eprintln!(
        "history: {REVISIONS} patches, {patch_bytes} bytes as JSON ({} per patch), \
         {grown} bytes of heap ({} per patch) over a {document}-byte document",
        patch_bytes / REVISIONS,
        grown / REVISIONS
    );
    assert!(patch_bytes / REVISIONS >= 90, "patches are ~100 bytes");
    assert!(grown < 5_000_000, "history took {grown} bytes of heap");
}
