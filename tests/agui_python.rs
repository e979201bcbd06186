//! The official Python models (ag-ui-protocol 1.0) as referee: every typed event
//! membound builds, in full and minimal form, encodes to JSON that
//! `pydantic.TypeAdapter(ag_ui.core.Event)` validates, field for field
//! (tests/support/agui_validate.py).
//!
//! Without `ag_ui` the test is skipped with a message, unless `CI` is set: then it
//! fails, since `.ci/run` installs the package.
#![cfg(feature = "ws")]

#[path = "support/agui_samples.rs"]
mod samples;

use std::io::Write;
use std::process::{Command, Stdio};

const SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/support/agui_validate.py"
);

fn ag_ui_available() -> bool {
    Command::new("python3")
        .args(["-c", "import ag_ui.core, pydantic"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn every_typed_event_validates_with_the_official_python_models() {
    if !ag_ui_available() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI is set but python3 cannot import ag_ui (.ci/run installs it with \
             `python3 -m pip install ag-ui-protocol==1.0.0`)"
        );
        // Straight to the process's stderr: the test harness does not capture it, so
        // the skip shows in every run.
        let _ = writeln!(
            std::io::stderr().lock(),
            "SKIPPED every_typed_event_validates_with_the_official_python_models: python3 \
             cannot import ag_ui (python3 -m pip install ag-ui-protocol==1.0.0)"
        );
        return;
    }
    let events: Vec<_> = samples::full()
        .into_iter()
        .chain(samples::minimal())
        .collect();
    let mut lines = String::new();
    for event in &events {
        // What goes on the wire, and the hub's form of it.
        lines.push_str(event.encode().as_str());
        lines.push('\n');
        lines.push_str(event.to_event().encode().as_str());
        lines.push('\n');
    }
    let path = std::env::temp_dir().join(format!("membound-agui-{}.jsonl", std::process::id()));
    std::fs::write(&path, lines).expect("the events file is written");
    let out = Command::new("python3")
        .arg(SCRIPT)
        .arg(&path)
        .output()
        .expect("python3 runs");
    let _ = std::fs::remove_file(&path);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the Python models reject an event:\n{}{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&format!("{} events of 31 types validate", 2 * events.len())),
        "{stdout}"
    );
}
