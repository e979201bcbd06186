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
use membound::adapters::ws::agui::{
    AgUiEvent, PatchOp, ReasoningEnd, ReasoningMessageContent, ReasoningMessageEnd,
    ReasoningMessageStart, ReasoningRole, ReasoningStart, RunAgentInput, RunError, RunFinished,
    RunStarted, StateDelta, StateSnapshot, StepFinished, StepStarted, TextMessageContent,
    TextMessageEnd, TextMessageRole, TextMessageStart, ToolCallArgs, ToolCallEnd, ToolCallResult,
    ToolCallStart, ToolRole,
};
use membound::adapters::ws::axum::{sse, upgrade};
use membound::adapters::ws::{CloseReason, Connection, EventType, Server, ServerConfig};
use serde_json::{json, Value};

/// The demo page: plain HTML and a script, no build step.
const PAGE: &str = include_str!("agui_server/index.html");

#[derive(Clone)]
struct App {
    server: Arc<Server>,
    delay: Duration,
}

/// The scripted run for `thread_id`/`run_id`, as the events it sends in order,
/// built with the typed AG-UI events (each encodes once to the hub's `Event`).
fn script(thread_id: &str, run_id: &str) -> Vec<AgUiEvent> {
    let mut events: Vec<AgUiEvent> = vec![
        RunStarted::new(thread_id, run_id).into(),
        StepStarted::new("plan").into(),
        StateSnapshot::new(json!({"city": null, "steps": []})).into(),
        ReasoningStart::new("reasoning-1").into(),
        ReasoningMessageStart::new("reasoning-1")
            .role(ReasoningRole::Reasoning)
            .into(),
    ];
    for part in ["The user wants ", "the weather; ", "look it up first."] {
        events.push(ReasoningMessageContent::new("reasoning-1", part).into());
    }
    events.extend::<[AgUiEvent; 11]>([
        ReasoningMessageEnd::new("reasoning-1").into(),
        ReasoningEnd::new("reasoning-1").into(),
        StepFinished::new("plan").into(),
        StepStarted::new("lookup").into(),
        ToolCallStart::new("call-1", "get_weather")
            .parent_message_id("assistant-1")
            .into(),
        ToolCallArgs::new("call-1", r#"{"city":"#).into(),
        ToolCallArgs::new("call-1", r#""Lisbon"}"#).into(),
        ToolCallEnd::new("call-1").into(),
        ToolCallResult::new("tool-1", "call-1", r#"{"forecast":"sunny","celsius":24}"#)
            .role(ToolRole::Tool)
            .into(),
        StateDelta::new(vec![PatchOp::replace("/city", "Lisbon")]).into(),
        StateDelta::new(vec![PatchOp::add("/steps/-", "looked up the weather")]).into(),
    ]);
    events.extend::<[AgUiEvent; 2]>([
        StepFinished::new("lookup").into(),
        TextMessageStart::new("assistant-2")
            .role(TextMessageRole::Assistant)
            .into(),
    ]);
    for part in ["It is ", "sunny in Lisbon, ", "24 °C."] {
        events.push(TextMessageContent::new("assistant-2", part).into());
    }
    events.extend::<[AgUiEvent; 2]>([
        TextMessageEnd::new("assistant-2").into(),
        RunFinished::new(thread_id, run_id).into(),
    ]);
    events
}

/// Sends one run's events on `conn`, `delay` apart, then ends an SSE stream (a
/// WebSocket stays open for the next run).
async fn run_script(conn: Connection, input: RunAgentInput, delay: Duration, end: bool) {
    for event in script(&input.thread_id, &input.run_id) {
        if conn.send(&event.to_event()).await.is_err() {
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

/// `POST /agent`: a `RunAgentInput` (a body that is not one gets axum's 4xx).
async fn post_agent(
    State(app): State<App>,
    headers: HeaderMap,
    Json(input): Json<RunAgentInput>,
) -> Response {
    let delay = app.delay;
    sse(&app.server, &headers, None, move |conn| {
        tokio::spawn(run_script(conn, input, delay, true));
    })
}

async fn get_agent(
    State(app): State<App>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let input = RunAgentInput::new(
        query.get("threadId").map_or("thread-1", String::as_str),
        query.get("runId").map_or("run-1", String::as_str),
        Vec::new(),
    );
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
                        if event.get("name").and_then(Value::as_str) != Some("run") {
                            return;
                        }
                        let value = event.get("value").cloned().unwrap_or(Value::Null);
                        match serde_json::from_value::<RunAgentInput>(value) {
                            Ok(input) => {
                                tokio::spawn(run_script(conn, input, delay, false));
                            }
                            Err(error) => {
                                let reply = RunError::new(format!("not a RunAgentInput: {error}"))
                                    .code("INVALID_RUN_INPUT");
                                let _ = conn.send(&AgUiEvent::from(reply).to_event()).await;
                            }
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
