//! The Redis the tests share (`MEMBOUND_REDIS_URL`; `.ci/run` starts one), and key
//! names no other test or run uses. Without Redis, a test fails under `CI=true`
//! and is skipped, with a message, elsewhere: Redis is never mocked.
#![allow(dead_code)]

use std::sync::atomic::{AtomicU64, Ordering};

/// The Redis the tests share, or `None` (skipped) outside CI.
pub fn redis_url() -> Option<String> {
    match std::env::var("MEMBOUND_REDIS_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("MEMBOUND_REDIS_URL is not set: under CI, .ci/run starts Redis and sets it")
        }
        _ => {
            eprintln!("skipped: MEMBOUND_REDIS_URL is not set (start a Redis and set it)");
            None
        }
    }
}

/// A name (a key prefix, a document's name) no other test or run uses.
pub fn unique(what: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "{what}-{}-{nanos}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}
