//! Interop with a WebSocket client that is not ours: Python's `websockets` package
//! (tests/fixtures/ws/python_client.py) receives events, one of them fragmented by
//! the server's write buffer cap, sends one back, and sees the shutdown's close code.
//!
//! Without `websockets` the test is skipped with a message, unless `CI` is set: then
//! it fails, since `.ci/run` installs the package.
#![cfg(feature = "ws")]

#[path = "support/ws.rs"]
mod support;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use membound::adapters::ws::{Event, EventType, Server};
use serde_json::json;
use support::*;

const SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/ws/python_client.py"
);

fn websockets_available() -> bool {
    Command::new("python3")
        .args(["-c", "import websockets"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_websockets_client_interoperates() {
    if !websockets_available() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI is set but python3 cannot import websockets (.ci/run installs it with \
             `python3 -m pip install websockets`)"
        );
        // Straight to the process's stderr: the test harness does not capture it, so
        // the skip shows in every run.
        let _ = writeln!(
            std::io::stderr().lock(),
            "SKIPPED a_python_websockets_client_interoperates: python3 cannot import \
             websockets (python3 -m pip install websockets)"
        );
        return;
    }
    let mut config = fast_config();
    // Keepalive pings reach the client during the test; a small write buffer cap
    // makes the large event go out as continuation frames.
    config.connection.keepalive_interval = Duration::from_millis(50);
    config.connection.idle_timeout = Duration::from_secs(10);
    config.connection.write_buffer_bytes = 1024;
    config.connection.max_write_buffer_bytes = 4096;
    let (server, mut conns) = serve(Server::builder(config)).await;

    let child = Command::new("python3")
        .arg(SCRIPT)
        .arg(url(server.local_addr()))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 starts");
    let conn = next_conn(&mut conns).await;
    let replies = conn.subscribe([EventType::Custom]).unwrap();

    let text = ["héllo ", "wörld ", "✓ ", "🦀"];
    let blob = "s".repeat(20_000);
    let mut events = vec![Event::new(EventType::TextMessageStart).with("messageId", "m1")];
    for part in text {
        events.push(Event::new(EventType::TextMessageContent).with("delta", part));
    }
    events.push(Event::new(EventType::StateSnapshot).with("snapshot", json!({ "blob": blob })));
    events.push(Event::new(EventType::TextMessageEnd).with("messageId", "m1"));
    let sent = events.len();
    for (seq, event) in events.into_iter().enumerate() {
        server.broadcast(&event.with("seq", seq)).await;
    }

    let reply = match within("the python client's event", replies.recv()).await {
        Ok(reply) => reply,
        Err(e) => {
            let why = conn.closed().await;
            let output = child.wait_with_output().expect("python output");
            panic!(
                "no event ({e:?}); the connection closed: {why:?}; python: {} {}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
    };
    assert_eq!(reply.get("name").unwrap(), "python");
    let value = reply.get("value").unwrap();
    assert_eq!(value["received"], sent);
    assert_eq!(value["text"], text.concat());
    assert_eq!(value["snapshot_len"], 20_000);

    server.shutdown().await;
    let output = within(
        "python to exit",
        tokio::task::spawn_blocking(move || child.wait_with_output()),
    )
    .await
    .expect("join")
    .expect("python output");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "python failed: {stdout} {stderr}");
    assert_eq!(stdout.trim(), "closed 1001", "stderr: {stderr}");
    let m = server.metrics();
    assert_eq!(m.closed.shutdown, 1);
    assert!(m.traffic.frames_in >= 1);
}
