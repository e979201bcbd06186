//! The typed AG-UI 1.0 events (`adapters::ws::agui`): every type round-trips through
//! serde and the hub's form in the official wire names, strict validation accepts
//! what the schema accepts and names what it does not, and a connection in strict
//! mode treats an event that breaks the schema as malformed.
#![cfg(feature = "ws")]

#[path = "support/agui_samples.rs"]
mod samples;
#[path = "support/ws.rs"]
mod support;

use std::collections::HashSet;
use std::time::Duration;

use membound::adapters::ws::agui::{self, *};
use membound::adapters::ws::{
    close_code, ClassMap, Client, ClientConfig, CloseReason, DeliveryClass, Event, EventType,
    MalformedPolicy, Server,
};
use serde_json::{json, Value};
use support::*;

/// What each type's class should be: the documented table, written out rather than
/// taken from `EventType::class`.
fn expected_class(kind: &EventType) -> DeliveryClass {
    match kind.as_str() {
        "STATE_DELTA" | "ACTIVITY_DELTA" => DeliveryClass::StateDelta,
        "STATE_SNAPSHOT" | "MESSAGES_SNAPSHOT" | "ACTIVITY_SNAPSHOT" => DeliveryClass::Snapshot,
        "RAW" | "CUSTOM" => DeliveryClass::Droppable,
        _ => DeliveryClass::Lossless,
    }
}

fn all_samples() -> Vec<AgUiEvent> {
    let mut all = samples::full();
    all.extend(samples::minimal());
    all
}

#[test]
fn the_typed_events_cover_exactly_the_named_types() {
    let named: Vec<EventType> = EventType::named().cloned().collect();
    assert_eq!(named.len(), 31);
    let minimal: Vec<EventType> = samples::minimal().iter().map(AgUiEvent::kind).collect();
    assert_eq!(minimal, named, "one minimal sample per type, in order");
    let full: HashSet<EventType> = samples::full().iter().map(AgUiEvent::kind).collect();
    assert_eq!(full, named.iter().cloned().collect::<HashSet<_>>());

    // No typed event for any other type.
    let other = Event::new(EventType::parse("MY_APP_EVENT"));
    assert_eq!(
        AgUiEvent::from_event(&other),
        Err(SchemaError::UnknownType(EventType::parse("MY_APP_EVENT")))
    );
    let err = serde_json::from_str::<AgUiEvent>(r#"{"type":"MY_APP_EVENT"}"#).unwrap_err();
    assert!(err.to_string().contains("unknown variant"), "{err}");
}

#[test]
fn every_type_round_trips_through_serde_and_the_hub_form() {
    for event in all_samples() {
        let text = serde_json::to_string(&event).unwrap();
        let back: AgUiEvent = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(back, event, "{text}");

        // The hub's form: the same JSON, the type parsed.
        let hub = event.to_event();
        assert_eq!(hub.kind(), &event.kind());
        assert_eq!(hub.to_json(), serde_json::to_value(&event).unwrap());
        assert_eq!(AgUiEvent::from_event(&hub).as_ref(), Ok(&event), "{text}");
        assert_eq!(AgUiEvent::try_from(&hub).as_ref(), Ok(&event));
        assert_eq!(agui::validate(&hub), Ok(()), "{text}");

        // One encode, straight to the frame's text.
        let frame = event.encode();
        assert_eq!(frame.as_str(), text);
        assert!(
            text.starts_with(&format!(r#"{{"type":"{}""#, event.kind())),
            "{text}"
        );
        assert_eq!(frame.kind(), &event.kind());
        assert_eq!(frame.class(), expected_class(&event.kind()), "{text}");
        assert_eq!(hub.kind().class(), expected_class(&event.kind()));
        // The same frame as the hub's own encoding, but for the key order.
        let hub_frame = hub.encode();
        assert_eq!(frame.key(), hub_frame.key());
        assert_eq!(frame.class(), hub_frame.class());
        let a: Value = serde_json::from_str(frame.as_str()).unwrap();
        let b: Value = serde_json::from_str(hub_frame.as_str()).unwrap();
        assert_eq!(a, b);
    }
}

#[test]
fn activity_frames_are_keyed_and_classes_can_be_overridden() {
    let snap: AgUiEvent = ActivitySnapshot::new("act-1", "progress", serde_json::Map::new()).into();
    assert_eq!(snap.encode().key(), Some("act-1"));
    let delta: AgUiEvent = ActivityDelta::new("act-2", "progress", Vec::new()).into();
    assert_eq!(delta.encode().key(), Some("act-2"));
    let text: AgUiEvent = TextMessageEnd::new("m").into();
    assert_eq!(text.encode().key(), None);

    let classes = ClassMap::new().with("CUSTOM", DeliveryClass::Lossless);
    let custom: AgUiEvent = Custom::new("x", 1).into();
    assert_eq!(custom.encode().class(), DeliveryClass::Droppable);
    assert_eq!(
        custom.encode_with(&classes).class(),
        DeliveryClass::Lossless
    );
}

/// Every object key in `value`, at any depth.
fn keys(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                out.push(k.clone());
                keys(v, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|v| keys(v, out)),
        _ => {}
    }
}

#[test]
fn wire_names_are_camel_case_and_absent_options_are_omitted() {
    for event in samples::full() {
        let value = serde_json::to_value(&event).unwrap();
        let mut all = Vec::new();
        keys(&value, &mut all);
        for key in &all {
            assert!(!key.contains('_'), "snake_case key {key} in {value}");
        }
    }
    for event in samples::minimal() {
        let value = serde_json::to_value(&event).unwrap();
        assert!(
            !value.as_object().unwrap().values().any(Value::is_null)
                || matches!(event.kind(), EventType::Raw | EventType::Custom),
            "a null in {value}"
        );
        assert!(value.get("timestamp").is_none() && value.get("metadata").is_none());
    }

    let content: AgUiEvent = TextMessageContent::new("m1", "hi")
        .subagent_run_id("s")
        .with_timestamp(5)
        .with_raw_event(json!({"x": 1}))
        .with_metadata(json!({"k": "v"}).as_object().unwrap().clone())
        .into();
    assert_eq!(
        serde_json::to_value(&content).unwrap(),
        json!({
            "type": "TEXT_MESSAGE_CONTENT", "messageId": "m1", "delta": "hi",
            "subagentRunId": "s", "timestamp": 5, "rawEvent": {"x": 1}, "metadata": {"k": "v"},
        })
    );
    let start: AgUiEvent = TextMessageStart::new("m1").into();
    assert_eq!(
        serde_json::to_value(&start).unwrap(),
        json!({"type": "TEXT_MESSAGE_START", "messageId": "m1"})
    );
    // Required nulls stay.
    let custom: AgUiEvent = Custom::new("n", Value::Null).into();
    assert_eq!(
        serde_json::to_value(&custom).unwrap(),
        json!({"type": "CUSTOM", "name": "n", "value": null})
    );

    let finished: AgUiEvent = RunFinished::new("t", "r")
        .outcome(RunFinishedOutcome::Interrupt {
            interrupts: vec![Interrupt::new("i", "tool_call").tool_call_id("c")],
        })
        .into();
    assert_eq!(
        serde_json::to_value(&finished).unwrap(),
        json!({"type": "RUN_FINISHED", "threadId": "t", "runId": "r", "outcome": {
            "type": "interrupt", "interrupts": [{"id": "i", "reason": "tool_call", "toolCallId": "c"}]}})
    );
    let success: AgUiEvent = RunFinished::new("t", "r")
        .outcome(RunFinishedOutcome::Success {
            pending_tool_call_ids: Some(vec!["c".into()]),
        })
        .into();
    assert_eq!(
        serde_json::to_value(&success).unwrap()["outcome"],
        json!({"type": "success", "pendingToolCallIds": ["c"]})
    );
    let suspended: AgUiEvent = SubagentFinished::new("s")
        .outcome(SubagentOutcome::Suspended {
            interrupt_ids: Some(vec!["i".into()]),
        })
        .into();
    assert_eq!(
        serde_json::to_value(&suspended).unwrap()["outcome"],
        json!({"type": "suspended", "interruptIds": ["i"]})
    );

    let snapshot: AgUiEvent = MessagesSnapshot::new(vec![
        AssistantMessage::new("a")
            .tool_calls(vec![ToolCall::new("c", "f", "{}")])
            .into(),
        ToolMessage::new("t", "ok", "c").into(),
    ])
    .into();
    assert_eq!(
        serde_json::to_value(&snapshot).unwrap(),
        json!({"type": "MESSAGES_SNAPSHOT", "messages": [
            {"role": "assistant", "id": "a", "toolCalls": [
                {"type": "function", "id": "c", "function": {"name": "f", "arguments": "{}"}}]},
            {"role": "tool", "id": "t", "content": "ok", "toolCallId": "c"},
        ]})
    );
    let delta: AgUiEvent = StateDelta::new(vec![PatchOp::Move {
        from: "/a".into(),
        path: "/b".into(),
    }])
    .into();
    assert_eq!(
        serde_json::to_value(&delta).unwrap(),
        json!({"type": "STATE_DELTA", "delta": [{"op": "move", "from": "/a", "path": "/b"}]})
    );
    let encrypted: AgUiEvent =
        ReasoningEncryptedValue::new(ReasoningSubtype::ToolCall, "c", "x").into();
    assert_eq!(
        serde_json::to_value(&encrypted).unwrap(),
        json!({"type": "REASONING_ENCRYPTED_VALUE", "subtype": "tool-call", "entityId": "c",
               "encryptedValue": "x"})
    );
}

#[test]
fn run_agent_input_reads_a_request_body() {
    let body = json!({
        "threadId": "t", "runId": "r",
        "messages": [{"role": "user", "id": "u", "content": "hi"},
                     {"role": "user", "id": "u2", "content": [{"type": "text", "text": "x"}]}],
        "tools": [{"name": "f", "description": "d", "parameters": {"type": "object"}}],
        "context": [{"description": "d", "value": "v"}],
        "resume": [{"interruptId": "i", "status": "resolved", "payload": 1}],
        "forwardedProps": {"a": 1},
        "somethingNew": true,
    });
    let input: RunAgentInput = serde_json::from_value(body).unwrap();
    assert_eq!(input.thread_id, "t");
    assert_eq!(input.messages.len(), 2);
    assert!(matches!(&input.messages[0], Message::User(m) if m.content == Content::from("hi")));
    assert!(
        matches!(&input.messages[1], Message::User(m) if matches!(m.content, Content::Parts(_)))
    );
    assert_eq!(
        input.resume.as_ref().unwrap()[0].status,
        ResumeStatus::Resolved
    );
    assert!(input.state.is_none() && input.parent_run_id.is_none());

    let err = serde_json::from_value::<RunAgentInput>(json!({"threadId": "t", "runId": "r"}))
        .unwrap_err();
    assert!(err.to_string().contains("messages"), "{err}");
}

/// `validate` of the JSON `text`.
fn check(text: &str) -> Result<(), SchemaError> {
    agui::validate(&Event::parse(text).unwrap())
}

/// `validate` rejects `text`, naming `kind` and mentioning `what`.
fn rejects(text: &str, what: &str) {
    let err = check(text).expect_err(text);
    let kind = Event::parse(text).unwrap().kind().clone();
    assert!(
        matches!(&err, SchemaError::Invalid { kind: k, .. } if *k == kind),
        "{text}: {err:?}"
    );
    let message = err.to_string();
    assert!(message.contains(kind.as_str()), "{text}: {message}");
    assert!(message.contains(what), "{text}: {message}");
}

#[test]
fn validate_rejects_missing_required_fields() {
    rejects(
        r#"{"type":"TEXT_MESSAGE_CONTENT","messageId":"m"}"#,
        "delta",
    );
    rejects(r#"{"type":"RUN_STARTED","threadId":"t"}"#, "runId");
    rejects(
        r#"{"type":"TOOL_CALL_START","toolCallId":"c"}"#,
        "toolCallName",
    );
    rejects(r#"{"type":"STATE_SNAPSHOT"}"#, "snapshot");
    rejects(r#"{"type":"CUSTOM","name":"n"}"#, "value");
    // Required on SUBAGENT_* only.
    rejects(
        r#"{"type":"SUBAGENT_ERROR","message":"m"}"#,
        "subagentRunId",
    );
    assert_eq!(check(r#"{"type":"STEP_STARTED","stepName":"s"}"#), Ok(()));
    // Nested.
    rejects(
        r#"{"type":"MESSAGES_SNAPSHOT","messages":[{"role":"user","id":"u"}]}"#,
        "content",
    );
    rejects(
        r#"{"type":"STATE_DELTA","delta":[{"op":"add","path":"/a"}]}"#,
        "value",
    );
    rejects(
        r#"{"type":"RUN_FINISHED","threadId":"t","runId":"r","outcome":{"type":"interrupt"}}"#,
        "interrupts",
    );
}

#[test]
fn validate_rejects_wrong_types_and_values() {
    rejects(
        r#"{"type":"TEXT_MESSAGE_CONTENT","messageId":"m","delta":5}"#,
        "string",
    );
    rejects(r#"{"type":"RUN_ERROR","message":["m"]}"#, "string");
    rejects(r#"{"type":"STATE_DELTA","delta":{}}"#, "sequence");
    // No coercion: pydantic's lax mode would take the string "5" (see the module docs).
    rejects(
        r#"{"type":"TEXT_MESSAGE_END","messageId":"m","timestamp":"5"}"#,
        "i64",
    );
    rejects(
        r#"{"type":"TEXT_MESSAGE_END","messageId":"m","timestamp":1.5}"#,
        "i64",
    );
    rejects(
        r#"{"type":"TEXT_MESSAGE_END","messageId":"m","timestamp":9007199254740992}"#,
        "timestamp",
    );
    rejects(
        r#"{"type":"TEXT_MESSAGE_END","messageId":"m","metadata":[]}"#,
        "map",
    );
    rejects(
        r#"{"type":"TEXT_MESSAGE_START","messageId":"m","role":"tool"}"#,
        "tool",
    );
    rejects(
        r#"{"type":"REASONING_ENCRYPTED_VALUE","subtype":"other","entityId":"e","encryptedValue":"x"}"#,
        "other",
    );
    rejects(
        r#"{"type":"STATE_DELTA","delta":[{"op":"add","path":"a","value":1}]}"#,
        "Pointer",
    );
    rejects(
        r#"{"type":"STATE_DELTA","delta":[{"op":"jump","path":"/a"}]}"#,
        "jump",
    );
    rejects(
        r#"{"type":"RUN_FINISHED","threadId":"t","runId":"r","outcome":{"type":"interrupt","interrupts":[]}}"#,
        "at least one",
    );
    rejects(
        r#"{"type":"RUN_ERROR","message":"m","usage":[{"inputTokens":-1}]}"#,
        "u64",
    );
    rejects(
        r#"{"type":"MESSAGES_SNAPSHOT","messages":[{"role":"robot","id":"r","content":"x"}]}"#,
        "robot",
    );
    rejects(
        r#"{"type":"TOOL_CALL_RESULT","messageId":"m","toolCallId":"c","content":7}"#,
        "content",
    );
}

#[test]
fn validate_accepts_extra_fields_nulls_for_options_and_other_types() {
    assert_eq!(
        check(
            r#"{"type":"TEXT_MESSAGE_CONTENT","messageId":"m","delta":"","fromTheFuture":{"a":1}}"#
        ),
        Ok(())
    );
    assert_eq!(
        check(r#"{"type":"TEXT_MESSAGE_START","messageId":"m","role":null,"name":null}"#),
        Ok(())
    );
    assert_eq!(
        check(
            r#"{"type":"RUN_FINISHED","threadId":"t","runId":"r","outcome":{"type":"cancelled","why":1}}"#
        ),
        Ok(())
    );
    assert_eq!(check(r#"{"type":"MY_APP_EVENT"}"#), Ok(()));
    assert_eq!(check(r#"{"type":"MY_APP_EVENT","delta":5}"#), Ok(()));
    // The extra field is accepted, not kept.
    let event = Event::parse(r#"{"type":"TEXT_MESSAGE_END","messageId":"m","extra":1}"#).unwrap();
    let typed = AgUiEvent::from_event(&event).unwrap();
    assert_eq!(typed, TextMessageEnd::new("m").into());
}

// ---------------------------------------------------------------------------------
// Strict mode on a connection.

const MISSING_DELTA: &str = r#"{"type":"TEXT_MESSAGE_CONTENT","messageId":"m"}"#;
const VALID: &str = r#"{"type":"TEXT_MESSAGE_CONTENT","messageId":"m","delta":"hi"}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_mode_closes_with_1007_on_an_event_that_breaks_the_schema() {
    let mut config = fast_config();
    config.connection.inbound.strict = true;
    assert_eq!(
        config.connection.inbound.on_malformed,
        MalformedPolicy::Close
    );
    let (server, mut conns) = serve(Server::builder(config)).await;
    let mut ws = client(server.local_addr()).await;
    let conn = next_conn(&mut conns).await;
    let inbound = conn.subscribe([]).unwrap();

    // A valid event, and one of a type the protocol does not name, reach the handler.
    send_text(&mut ws, VALID).await;
    let got = within("the valid event", inbound.recv()).await.unwrap();
    assert_eq!(got.get("delta"), Some(&json!("hi")));
    send_text(&mut ws, r#"{"type":"MY_APP_EVENT","delta":5}"#).await;
    let got = within("the other event", inbound.recv()).await.unwrap();
    assert_eq!(got.kind(), &EventType::parse("MY_APP_EVENT"));

    send_text(&mut ws, MISSING_DELTA).await;
    let (_, code, reason) = read_to_close(&mut ws).await;
    assert_eq!(code, close_code::INVALID_PAYLOAD);
    assert!(reason.contains("delta"), "{reason}");
    match within("the close", conn.closed()).await {
        CloseReason::InvalidPayload(why) => {
            assert!(
                why.contains("TEXT_MESSAGE_CONTENT") && why.contains("delta"),
                "{why}"
            )
        }
        other => panic!("closed with {other:?}"),
    }
    assert_eq!(conn.metrics().traffic.malformed_in, 1);
    assert_eq!(server.metrics().closed.invalid_payload, 1);
    drop(ws);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_mode_answers_run_error_when_so_configured() {
    let mut config = fast_config();
    config.connection.inbound.strict = true;
    config.connection.inbound.on_malformed = MalformedPolicy::ErrorEvent;
    let (server, mut conns) = serve(Server::builder(config)).await;
    let mut ws = client(server.local_addr()).await;
    let conn = next_conn(&mut conns).await;
    let inbound = conn.subscribe([]).unwrap();

    send_text(&mut ws, MISSING_DELTA).await;
    let error = next_event(&mut ws).await;
    assert_eq!(error.kind(), &EventType::RunError);
    assert_eq!(error.get("code").unwrap(), "MALFORMED_EVENT");
    let message = error.get("message").unwrap().as_str().unwrap();
    assert!(message.contains("delta"), "{message}");
    // The reply is itself a valid RUN_ERROR.
    assert_eq!(agui::validate(&error), Ok(()));

    // Still open, and a valid event is delivered.
    send_text(&mut ws, VALID).await;
    let got = within("the valid event", inbound.recv()).await.unwrap();
    assert_eq!(got.kind(), &EventType::TextMessageContent);
    assert_eq!(conn.metrics().traffic.malformed_in, 1);
    assert!(!conn.is_closed());
    drop(ws);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_strict_mode_an_event_that_breaks_the_schema_is_delivered() {
    let config = fast_config();
    assert!(!config.connection.inbound.strict);
    let (server, mut conns) = serve(Server::builder(config)).await;
    let mut ws = client(server.local_addr()).await;
    let conn = next_conn(&mut conns).await;
    let inbound = conn.subscribe([]).unwrap();

    send_text(&mut ws, MISSING_DELTA).await;
    let got = within("the event", inbound.recv()).await.unwrap();
    assert_eq!(got.kind(), &EventType::TextMessageContent);
    assert_eq!(got.get("delta"), None);
    assert_eq!(conn.metrics().traffic.malformed_in, 0);
    assert!(!conn.is_closed());
    drop(ws);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_strict_client_treats_an_event_that_breaks_the_schema_as_malformed() {
    let (server, mut conns) = serve(Server::builder(fast_config())).await;
    let mut config = ClientConfig {
        dial_timeout: Duration::from_secs(5),
        connection: fast_config().connection,
        ..ClientConfig::default()
    };
    config.connection.inbound.strict = true;
    config.connection.inbound.on_malformed = MalformedPolicy::ErrorEvent;
    let client = Client::connect(&url(server.local_addr()), config)
        .await
        .unwrap();
    let received = client.subscribe([]).unwrap();
    let conn = next_conn(&mut conns).await;
    let replies = conn.subscribe([EventType::RunError]).unwrap();

    server
        .broadcast(&Event::parse(MISSING_DELTA).unwrap())
        .await;
    server.broadcast(&Event::parse(VALID).unwrap()).await;
    let reply = within("the client's error reply", replies.recv())
        .await
        .unwrap();
    assert_eq!(reply.get("code").unwrap(), "MALFORMED_EVENT");
    let got = within("the valid event", received.recv()).await.unwrap();
    assert_eq!(got.get("delta"), Some(&json!("hi")));
    assert_eq!(client.connection().metrics().traffic.malformed_in, 1);
    client.close(CloseReason::Normal);
    within("the client to close", client.closed()).await;
    server.shutdown().await;
}
