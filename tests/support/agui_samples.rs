//! One instance of every typed AG-UI event, built with the crate's builders: a full
//! one (every optional field set, nested types included) and a minimal one (required
//! fields only), for the typed-event tests and the Python validation.
#![allow(dead_code)]

use membound::adapters::ws::agui::*;
use serde_json::{json, Map, Value};

fn meta() -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("source".into(), json!("test"));
    m.insert("nullable".into(), Value::Null);
    m
}

fn usage() -> Vec<TokenUsage> {
    vec![TokenUsage::new()
        .provider("p")
        .model("m")
        .input_tokens(1u64)
        .output_tokens(2u64)
        .total_tokens(3u64)
        .reasoning_tokens(4u64)
        .cached_input_tokens(5u64)
        .cache_write_input_tokens(6u64)]
}

fn patch() -> Vec<PatchOp> {
    vec![
        PatchOp::add("/a", json!(1)),
        PatchOp::remove("/b/0"),
        PatchOp::replace("/c~1d", json!({"x": [1, 2]})),
        PatchOp::Move {
            from: "/e".into(),
            path: "/f".into(),
        },
        PatchOp::Copy {
            from: "/f".into(),
            path: "/g".into(),
        },
        PatchOp::Test {
            path: "".into(),
            value: Value::Null,
        },
    ]
}

fn parts() -> Content {
    Content::Parts(vec![
        json!({"type": "text", "text": "look"}),
        json!({"type": "image", "source": {"type": "url", "value": "https://example.com/a.png"}}),
    ])
}

fn messages() -> Vec<Message> {
    vec![
        DeveloperMessage::new("d", "be brief")
            .name("dev")
            .encrypted_value("e")
            .metadata(meta())
            .subagent_run_id("s")
            .into(),
        SystemMessage::new("s", "you are a test").name("sys").into(),
        AssistantMessage::new("a")
            .content("calling")
            .tool_calls(vec![
                ToolCall::new("c1", "search", r#"{"q":"x"}"#)
                    .encrypted_value("e")
                    .metadata(meta()),
                ToolCall::new("c2", "noop", ""),
            ])
            .name("bot")
            .into(),
        AssistantMessage::new("a2").into(),
        UserMessage::new("u", "hi").name("me").into(),
        UserMessage::new("u2", parts()).into(),
        ToolMessage::new("t", "42", "c1").error("none").into(),
        ToolMessage::new("t2", parts(), "c2").into(),
        ActivityMessage::new("act", "progress", meta())
            .metadata(meta())
            .into(),
        ReasoningMessage::new("r", "because")
            .encrypted_value("e")
            .into(),
    ]
}

fn input() -> RunAgentInput {
    RunAgentInput::new("th", "run", messages())
        .protocol_version("1.0")
        .parent_run_id("prev")
        .state(json!({"count": 1}))
        .tools(vec![
            Tool::new("search", "searches")
                .parameters(json!({"type": "object"}))
                .metadata(meta()),
            Tool::new("noop", "nothing"),
        ])
        .context(vec![Context::new("today", "Monday")])
        .forwarded_props(json!({"k": "v"}))
        .resume(vec![
            ResumeEntry::new("i1", ResumeStatus::Resolved)
                .payload(json!({"ok": true}))
                .metadata(meta()),
            ResumeEntry::new("i2", ResumeStatus::Cancelled),
        ])
}

fn interrupt() -> Interrupt {
    Interrupt::new("i1", "tool_call")
        .message("approve?")
        .tool_call_id("c1")
        .response_schema(meta())
        .expires_at("2030-01-01T00:00:00Z")
        .metadata(meta())
        .subagent_run_id("s")
}

/// Sets the fields every event carries.
macro_rules! base {
    ($e:expr) => {
        $e.with_timestamp(1_700_000_000_000)
            .with_raw_event(json!({"provider": "x", "n": [1]}))
            .with_metadata(meta())
    };
}

/// Every type, every optional field set (several for the union-typed fields:
/// outcomes, content, roles).
pub fn full() -> Vec<AgUiEvent> {
    vec![
        base!(RunStarted::new("th", "run")
            .protocol_version("1.0")
            .parent_run_id("prev")
            .input(input()))
        .into(),
        base!(RunFinished::new("th", "run")
            .result(json!({"answer": 42}))
            .outcome(RunFinishedOutcome::Success {
                pending_tool_call_ids: Some(vec!["c1".into()]),
            })
            .usage(usage()))
        .into(),
        RunFinished::new("th", "run")
            .outcome(RunFinishedOutcome::Interrupt {
                interrupts: vec![interrupt(), Interrupt::new("i2", "input")],
            })
            .into(),
        RunFinished::new("th", "run")
            .outcome(RunFinishedOutcome::Cancelled)
            .into(),
        base!(RunError::new("boom").code("E1").usage(usage())).into(),
        base!(StepStarted::new("plan").subagent_run_id("s")).into(),
        base!(StepFinished::new("plan").subagent_run_id("s")).into(),
        base!(TextMessageStart::new("m")
            .role(TextMessageRole::Assistant)
            .name("bot")
            .subagent_run_id("s"))
        .into(),
        TextMessageStart::new("m")
            .role(TextMessageRole::Developer)
            .into(),
        TextMessageStart::new("m")
            .role(TextMessageRole::System)
            .into(),
        TextMessageStart::new("m")
            .role(TextMessageRole::User)
            .into(),
        base!(TextMessageContent::new("m", "héllo 🦀").subagent_run_id("s")).into(),
        base!(TextMessageEnd::new("m").subagent_run_id("s")).into(),
        base!(TextMessageChunk::new()
            .message_id("m")
            .role(TextMessageRole::User)
            .delta("d")
            .name("me")
            .subagent_run_id("s"))
        .into(),
        base!(ToolCallStart::new("c1", "search")
            .parent_message_id("m")
            .subagent_run_id("s"))
        .into(),
        base!(ToolCallArgs::new("c1", r#"{"q":"#).subagent_run_id("s")).into(),
        base!(ToolCallEnd::new("c1").subagent_run_id("s")).into(),
        base!(ToolCallChunk::new()
            .tool_call_id("c1")
            .tool_call_name("search")
            .parent_message_id("m")
            .delta("{}")
            .subagent_run_id("s"))
        .into(),
        base!(ToolCallResult::new("tm", "c1", "42")
            .role(ToolRole::Tool)
            .subagent_run_id("s"))
        .into(),
        ToolCallResult::new("tm", "c1", parts()).into(),
        base!(StateSnapshot::new(json!({"count": 1})).subagent_run_id("s")).into(),
        StateSnapshot::new(Value::Null).into(),
        base!(StateDelta::new(patch()).subagent_run_id("s")).into(),
        base!(MessagesSnapshot::new(messages())).into(),
        base!(ActivitySnapshot::new("act", "progress", meta())
            .replace(false)
            .subagent_run_id("s"))
        .into(),
        base!(ActivityDelta::new("act", "progress", patch()).subagent_run_id("s")).into(),
        base!(ReasoningStart::new("r").subagent_run_id("s")).into(),
        base!(ReasoningMessageStart::new("r")
            .role(ReasoningRole::Reasoning)
            .subagent_run_id("s"))
        .into(),
        base!(ReasoningMessageContent::new("r", "hmm").subagent_run_id("s")).into(),
        base!(ReasoningMessageEnd::new("r").subagent_run_id("s")).into(),
        base!(ReasoningMessageChunk::new()
            .message_id("r")
            .delta("hmm")
            .subagent_run_id("s"))
        .into(),
        base!(ReasoningEnd::new("r").subagent_run_id("s")).into(),
        base!(
            ReasoningEncryptedValue::new(ReasoningSubtype::ToolCall, "c1", "opaque")
                .subagent_run_id("s")
        )
        .into(),
        ReasoningEncryptedValue::new(ReasoningSubtype::Message, "m", "opaque").into(),
        base!(SubagentStarted::new("s", "researcher")
            .description("finds things")
            .parent_subagent_run_id("s0")
            .parent_tool_call_id("c1")
            .parent_message_id("m"))
        .into(),
        base!(SubagentFinished::new("s").result(json!(["done"])).outcome(
            SubagentOutcome::Suspended {
                interrupt_ids: Some(vec!["i1".into()]),
            }
        ))
        .into(),
        SubagentFinished::new("s")
            .outcome(SubagentOutcome::Success)
            .into(),
        base!(SubagentError::new("s", "failed").code("E2")).into(),
        base!(Raw::new(json!({"vendor": "event"}))
            .source("vendor")
            .subagent_run_id("s"))
        .into(),
        base!(Custom::new("ping", json!(1)).subagent_run_id("s")).into(),
        Custom::new("null", Value::Null).into(),
    ]
}

/// Every type with its required fields only.
pub fn minimal() -> Vec<AgUiEvent> {
    vec![
        RunStarted::new("th", "run").into(),
        RunFinished::new("th", "run").into(),
        RunError::new("boom").into(),
        StepStarted::new("plan").into(),
        StepFinished::new("plan").into(),
        TextMessageStart::new("m").into(),
        TextMessageContent::new("m", "").into(),
        TextMessageEnd::new("m").into(),
        TextMessageChunk::new().into(),
        ToolCallStart::new("c1", "search").into(),
        ToolCallArgs::new("c1", "").into(),
        ToolCallEnd::new("c1").into(),
        ToolCallChunk::new().into(),
        ToolCallResult::new("tm", "c1", "").into(),
        StateSnapshot::new(json!({})).into(),
        StateDelta::new(Vec::new()).into(),
        MessagesSnapshot::new(Vec::new()).into(),
        ActivitySnapshot::new("act", "progress", Map::new()).into(),
        ActivityDelta::new("act", "progress", Vec::new()).into(),
        ReasoningStart::new("r").into(),
        ReasoningMessageStart::new("r").into(),
        ReasoningMessageContent::new("r", "").into(),
        ReasoningMessageEnd::new("r").into(),
        ReasoningMessageChunk::new().into(),
        ReasoningEnd::new("r").into(),
        ReasoningEncryptedValue::new(ReasoningSubtype::Message, "m", "x").into(),
        SubagentStarted::new("s", "researcher").into(),
        SubagentFinished::new("s").into(),
        SubagentError::new("s", "failed").into(),
        Raw::new(json!(null)).into(),
        Custom::new("ping", json!(null)).into(),
    ]
}
