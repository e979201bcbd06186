//! An AG-UI server with a scripted agent, over both of the transport's ways out:
//!
//! - `POST /agent` with a `RunAgentInput` body: the run as Server-Sent Events, which
//!   is what AG-UI's own client (`HttpAgent` in `@ag-ui/client`) speaks;
//! - `GET /agent?threadId=..&runId=..`: the same for a browser's `EventSource`;
//! - `GET /ws`: a WebSocket; a `CUSTOM` event named `run` (its `value` a
//!   `RunAgentInput`) starts a run on it;
//! - `GET /`: a one-page demo that streams a run over either and renders the
//!   messages, the reasoning, the tool call and the state as they arrive.
//!
//! Every run is the same script: reasoning, a streamed text message, a tool call
//! with its result, and state deltas over a snapshot. The state lives in the crate's
//! state store, whose revisions tag the deltas.
//!
//! ```text
//! cargo run --features axum --example agui_server -- [--port 3000] [--delay-ms 30]
//! cargo run --features axum --example agui_server -- --print-events   # one run's events, as JSON lines
//! ```

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State, WebSocketUpgrade};
use axum::http::HeaderMap;
use axum::response::{Html, Response};
use axum::routing::get;
use axum::{Json, Router};
use membound::adapters::ws::axum::{sse, upgrade};
use membound::adapters::ws::{CloseReason, Connection, Event, EventType, Server, ServerConfig};
use serde_json::{json, Value};

/// The demo page: plain HTML and a script, no build step.
const PAGE: &str = include_str!("agui_server/index.html");

#[derive(Clone)]
struct App {
    server: Arc<Server>,
    delay: Duration,
}

/// The scripted run for `thread_id`/`run_id`, as the events it sends in order.
fn script(thread_id: &str, run_id: &str) -> Vec<Event> {
    let ev = Event::new;
    let mut events = vec![
        ev(EventType::RunStarted)
            .with("threadId", thread_id)
            .with("runId", run_id),
        ev(EventType::StepStarted).with("stepName", "plan"),
        ev(EventType::StateSnapshot).with("snapshot", json!({"city": null, "steps": []})),
        ev(EventType::ReasoningStart).with("messageId", "reasoning-1"),
        ev(EventType::ReasoningMessageStart)
            .with("messageId", "reasoning-1")
            .with("role", "reasoning"),
    ];
    for part in ["The user wants ", "the weather; ", "look it up first."] {
        events.push(
            ev(EventType::ReasoningMessageContent)
                .with("messageId", "reasoning-1")
                .with("delta", part),
        );
    }
    events.extend([
        ev(EventType::ReasoningMessageEnd).with("messageId", "reasoning-1"),
        ev(EventType::ReasoningEnd).with("messageId", "reasoning-1"),
        ev(EventType::StepFinished).with("stepName", "plan"),
        ev(EventType::StepStarted).with("stepName", "lookup"),
        ev(EventType::ToolCallStart)
            .with("toolCallId", "call-1")
            .with("toolCallName", "get_weather")
            .with("parentMessageId", "assistant-1"),
        ev(EventType::ToolCallArgs)
            .with("toolCallId", "call-1")
            .with("delta", r#"{"city":"#),
        ev(EventType::ToolCallArgs)
            .with("toolCallId", "call-1")
            .with("delta", r#""Lisbon"}"#),
        ev(EventType::ToolCallEnd).with("toolCallId", "call-1"),
        ev(EventType::ToolCallResult)
            .with("messageId", "tool-1")
            .with("toolCallId", "call-1")
            .with("content", r#"{"forecast":"sunny","celsius":24}"#)
            .with("role", "tool"),
        ev(EventType::StateDelta).with(
            "delta",
            json!([{"op": "replace", "path": "/city", "value": "Lisbon"}]),
        ),
        ev(EventType::StateDelta).with(
            "delta",
            json!([{"op": "add", "path": "/steps/-", "value": "looked up the weather"}]),
        ),
        ev(EventType::StepFinished).with("stepName", "lookup"),
        ev(EventType::TextMessageStart)
            .with("messageId", "assistant-2")
            .with("role", "assistant"),
    ]);
    for part in ["It is ", "sunny in Lisbon, ", "24 °C."] {
        events.push(
            ev(EventType::TextMessageContent)
                .with("messageId", "assistant-2")
                .with("delta", part),
        );
    }
    events.extend([
        ev(EventType::TextMessageEnd).with("messageId", "assistant-2"),
        ev(EventType::RunFinished)
            .with("threadId", thread_id)
            .with("runId", run_id),
    ]);
    events
}

/// Sends one run's events on `conn`, `delay` apart, then ends an SSE stream (a
/// WebSocket stays open for the next run).
async fn run_script(conn: Connection, input: &Value, delay: Duration, end: bool) {
    let thread_id = input["threadId"].as_str().unwrap_or("thread-1");
    let run_id = input["runId"].as_str().unwrap_or("run-1");
    for event in script(thread_id, run_id) {
        if conn.send(&event).await.is_err() {
            return;
        }
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
    }
    if end {
        conn.close(CloseReason::Normal);
    }
}

async fn post_agent(
    State(app): State<App>,
    headers: HeaderMap,
    Json(input): Json<Value>,
) -> Response {
    let delay = app.delay;
    sse(&app.server, &headers, None, move |conn| {
        tokio::spawn(async move { run_script(conn, &input, delay, true).await });
    })
}

async fn get_agent(
    State(app): State<App>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let input = json!({
        "threadId": query.get("threadId").map_or("thread-1", String::as_str),
        "runId": query.get("runId").map_or("run-1", String::as_str),
        "messages": [],
    });
    post_agent(State(app), headers, Json(input)).await
}

async fn ws(State(app): State<App>, ws: WebSocketUpgrade) -> Response {
    upgrade(ws, &app.server, None)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
    };
    if args.iter().any(|a| a == "--print-events") {
        for event in script("thread-1", "run-1") {
            println!("{}", event.encode().as_str());
        }
        return Ok(());
    }
    let port: u16 = value("--port").map_or(Ok(3000), |p| p.parse())?;
    let delay = Duration::from_millis(value("--delay-ms").map_or(Ok(30), |d| d.parse())?);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let server = Server::builder(ServerConfig::default())
            .on_connect(move |conn| {
                // A WebSocket client starts a run with a `CUSTOM` event named `run`
                // (an SSE stream never sends one).
                let on_run = conn.clone();
                let _ = conn.on(EventType::Custom, move |event| {
                    let conn = on_run.clone();
                    async move {
                        if event.get("name").and_then(Value::as_str) == Some("run") {
                            let input = event.get("value").cloned().unwrap_or(Value::Null);
                            tokio::spawn(
                                async move { run_script(conn, &input, delay, false).await },
                            );
                        }
                    }
                });
            })
            .build()?;
        let app = App {
            server: Arc::new(server),
            delay,
        };
        let router = Router::new()
            .route("/", get(|| async { Html(PAGE) }))
            .route("/agent", get(get_agent).post(post_agent))
            .route("/ws", get(ws))
            .with_state(app.clone());
        let listener =
            tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port))).await?;
        println!("AG-UI server on http://{}", listener.local_addr()?);
        axum::serve(listener, router).await?;
        Ok(())
    })
}
