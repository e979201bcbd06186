//! Fixture trees of real kernels' layouts (`tests/fixtures/<name>`), and scratch
//! copies of them that a test may rewrite.
//!
//! Use: `#[path = "support/fixture_tree.rs"] mod fixture_tree;`.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// The fixture tree `name`.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// Copies the fixture tree `name` to a fresh temporary directory, unique to this
/// process and thread.
pub fn scratch_copy(name: &str) -> PathBuf {
    fn copy(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            let target = to.join(entry.file_name());
            if entry.file_type().unwrap().is_dir() {
                copy(&entry.path(), &target);
            } else {
                std::fs::copy(entry.path(), target).unwrap();
            }
        }
    }
    let dir = std::env::temp_dir().join(format!(
        "membound-fixture-{name}-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    copy(&fixture(name), &dir);
    dir
}
