//! Typed AG-UI 1.0 events: one struct per event type, in the official wire form, and
//! [`AgUiEvent`] over all 31 of them.
//!
//! The hub carries [`Event`]s, already-parsed JSON objects that need no schema; this
//! module is the typed layer above them, for code that builds events or reads them
//! with the compiler's help. The types follow the official schema (spec 1.0, as the
//! `ag-ui-protocol` Python package generates it): wire names in camelCase, the event's
//! `type` as its SCREAMING name, optional fields left out when they have no value
//! (as the Python SDK does), and the fields every event carries (`timestamp`,
//! `rawEvent`, `metadata`) on each struct.
//!
//! Converting costs one encode: [`AgUiEvent::encode`] serialises straight to a
//! [`Frame`]'s text, [`AgUiEvent::to_event`] to the hub's [`Event`];
//! [`AgUiEvent::from_event`] reads one back, with a [`SchemaError`] saying which field
//! does not fit.
//!
//! Unknown fields of an inbound event are accepted and ignored (the Python models
//! keep them, so that a newer peer's additions do not break an older one); they are
//! not kept in the typed value, so an event read into a type and encoded again loses
//! them. Forward the [`Event`] itself where they matter.
//!
//! # Strict mode
//!
//! [`validate`] checks an [`Event`] of one of the 31 named types against the schema:
//! required fields present, every field of the right JSON type, and the schema's
//! bounds (timestamps and token counts within the range JSON numbers survive, JSON
//! Pointers well formed, at least one interrupt in an interrupt outcome). A
//! connection with [`InboundConfig::strict`](super::InboundConfig::strict) applies
//! it to every inbound event, and treats a violation as a malformed message.
//! Strict mode is stricter than the Python models in one way: it does not coerce
//! (a timestamp sent as the string `"12"` is rejected; pydantic's lax mode takes it).
//!
//! # Examples
//!
//! ```
//! use membound::adapters::ws::agui::{AgUiEvent, TextMessageRole, TextMessageStart};
//! use membound::adapters::ws::{DeliveryClass, EventType};
//!
//! let event: AgUiEvent = TextMessageStart::new("m1")
//!     .role(TextMessageRole::Assistant)
//!     .with_timestamp(1_700_000_000_000)
//!     .into();
//! assert_eq!(event.kind(), EventType::TextMessageStart);
//!
//! let frame = event.encode();
//! assert_eq!(frame.class(), DeliveryClass::Lossless);
//! assert_eq!(
//!     frame.as_str(),
//!     r#"{"type":"TEXT_MESSAGE_START","messageId":"m1","role":"assistant","timestamp":1700000000000}"#
//! );
//!
//! // And back, from the hub's form.
//! let again = AgUiEvent::from_event(&event.to_event())?;
//! assert_eq!(again, event);
//! # Ok::<(), membound::adapters::ws::agui::SchemaError>(())
//! ```

use std::fmt;
use std::prelude::rust_2021::*;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

use super::event::{ClassMap, Event, EventType, Frame};

/// The largest integer a JSON number carries exactly (2^53 - 1): the schema's bound
/// on timestamps and token counts.
pub const MAX_SAFE_INTEGER: i64 = 9_007_199_254_740_991;

/// `timestamp`: an integer within +-[`MAX_SAFE_INTEGER`].
fn safe_timestamp<'de, D: Deserializer<'de>>(de: D) -> Result<Option<i64>, D::Error> {
    let value = Option::<i64>::deserialize(de)?;
    match value {
        Some(v) if !(-MAX_SAFE_INTEGER..=MAX_SAFE_INTEGER).contains(&v) => Err(
            serde::de::Error::custom(format_args!("timestamp {v} is outside +-(2^53 - 1)")),
        ),
        _ => Ok(value),
    }
}

/// A token count: an integer from 0 to [`MAX_SAFE_INTEGER`].
fn safe_count<'de, D: Deserializer<'de>>(de: D) -> Result<Option<u64>, D::Error> {
    let value = Option::<u64>::deserialize(de)?;
    match value {
        Some(v) if v > MAX_SAFE_INTEGER as u64 => Err(serde::de::Error::custom(format_args!(
            "token count {v} is above 2^53 - 1"
        ))),
        _ => Ok(value),
    }
}

/// A JSON Pointer (RFC 6901): empty, or `/`-separated tokens in which `~` is only
/// followed by `0` or `1` (the schema's `^(/([^/~]|~[01])*)*$`).
fn pointer<'de, D: Deserializer<'de>>(de: D) -> Result<String, D::Error> {
    let s = String::deserialize(de)?;
    let bytes = s.as_bytes();
    let escapes_ok = bytes
        .iter()
        .enumerate()
        .all(|(i, b)| *b != b'~' || matches!(bytes.get(i + 1), Some(b'0' | b'1')));
    if (s.is_empty() || s.starts_with('/')) && escapes_ok {
        Ok(s)
    } else {
        Err(serde::de::Error::custom(format_args!(
            "{s:?} is not a JSON Pointer"
        )))
    }
}

/// An interrupt outcome's interrupts: at least one.
fn non_empty<'de, D: Deserializer<'de>>(de: D) -> Result<Vec<Interrupt>, D::Error> {
    let list = Vec::<Interrupt>::deserialize(de)?;
    if list.is_empty() {
        return Err(serde::de::Error::custom(
            "an interrupt outcome needs at least one interrupt",
        ));
    }
    Ok(list)
}

/// A struct with required and optional fields: `new` takes the required ones, and a
/// setter named after each optional field sets it.
macro_rules! record {
    (
        $(#[$doc:meta])*
        $name:ident {
            $( $(#[$rdoc:meta])* $req:ident : $rty:ty ),* $(,)?
        }
        optional {
            $( $(#[$odoc:meta])* $opt:ident : $oty:ty ),* $(,)?
        }
    ) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
        #[serde(rename_all = "camelCase")]
        #[non_exhaustive]
        pub struct $name {
            $( $(#[$rdoc])* pub $req: $rty, )*
            $(
                $(#[$odoc])*
                #[serde(default, skip_serializing_if = "Option::is_none")]
                pub $opt: Option<$oty>,
            )*
        }

        impl $name {
            /// With its required fields; the optional ones absent.
            pub fn new($($req: impl Into<$rty>),*) -> Self {
                Self {
                    $( $req: $req.into(), )*
                    $( $opt: None, )*
                }
            }

            $(
                #[doc = concat!("Sets the optional field `", stringify!($opt), "`.")]
                #[must_use]
                pub fn $opt(mut self, value: impl Into<$oty>) -> Self {
                    self.$opt = Some(value.into());
                    self
                }
            )*
        }
    };
}

/// [`record!`] for an event: adds the fields every event carries (`timestamp`,
/// `rawEvent`, `metadata`) and their `with_` setters.
macro_rules! event {
    (
        $(#[$doc:meta])*
        $name:ident {
            $( $(#[$rdoc:meta])* $req:ident : $rty:ty ),* $(,)?
        }
        optional {
            $( $(#[$odoc:meta])* $opt:ident : $oty:ty ),* $(,)?
        }
    ) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
        #[serde(rename_all = "camelCase")]
        #[non_exhaustive]
        pub struct $name {
            $( $(#[$rdoc])* pub $req: $rty, )*
            $(
                $(#[$odoc])*
                #[serde(default, skip_serializing_if = "Option::is_none")]
                pub $opt: Option<$oty>,
            )*
            /// When the event was created; by convention milliseconds since the Unix
            /// epoch. Within +-[`MAX_SAFE_INTEGER`].
            #[serde(
                default,
                skip_serializing_if = "Option::is_none",
                deserialize_with = "safe_timestamp"
            )]
            pub timestamp: Option<i64>,
            /// The provider-native event this one was translated from, verbatim.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub raw_event: Option<Value>,
            /// Extra information attached to the event.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub metadata: Option<Map<String, Value>>,
        }

        impl $name {
            /// With its required fields; the optional ones absent.
            pub fn new($($req: impl Into<$rty>),*) -> Self {
                Self {
                    $( $req: $req.into(), )*
                    $( $opt: None, )*
                    timestamp: None,
                    raw_event: None,
                    metadata: None,
                }
            }

            $(
                #[doc = concat!("Sets the optional field `", stringify!($opt), "`.")]
                #[must_use]
                pub fn $opt(mut self, value: impl Into<$oty>) -> Self {
                    self.$opt = Some(value.into());
                    self
                }
            )*

            /// Sets `timestamp` (milliseconds since the Unix epoch, by convention).
            #[must_use]
            pub fn with_timestamp(mut self, timestamp: i64) -> Self {
                self.timestamp = Some(timestamp);
                self
            }

            /// Sets `rawEvent`, the provider-native event this one came from.
            #[must_use]
            pub fn with_raw_event(mut self, raw_event: impl Into<Value>) -> Self {
                self.raw_event = Some(raw_event.into());
                self
            }

            /// Sets `metadata`.
            #[must_use]
            pub fn with_metadata(mut self, metadata: Map<String, Value>) -> Self {
                self.metadata = Some(metadata);
                self
            }
        }
    };
}

/// `Default` as `new()`, for the types whose fields are all optional.
macro_rules! default_is_new {
    ($($name:ident),*) => {
        $(
            impl Default for $name {
                fn default() -> Self {
                    Self::new()
                }
            }
        )*
    };
}

// ---------------------------------------------------------------------------------
// Nested types.

/// The roles a streamed text message may take (`TextMessageRole`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TextMessageRole {
    /// `developer`
    Developer,
    /// `system`
    System,
    /// `assistant` (what an absent role means)
    Assistant,
    /// `user`
    User,
}

/// The one role a [`ToolCallResult`] may state: `tool`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ToolRole {
    /// `tool`
    #[default]
    Tool,
}

/// The one role a [`ReasoningMessageStart`] may state: `reasoning`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReasoningRole {
    /// `reasoning`
    #[default]
    Reasoning,
}

/// What a [`ReasoningEncryptedValue`] belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ReasoningSubtype {
    /// `tool-call`: the entity is a tool call.
    #[serde(rename = "tool-call")]
    ToolCall,
    /// `message`: the entity is a message.
    #[serde(rename = "message")]
    Message,
}

/// Content that is either plain text or a list of content parts (text, image,
/// audio, video, document). The parts are kept as JSON values.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Content {
    /// A string.
    Text(String),
    /// Content parts, each an object tagged by `type`.
    Parts(Vec<Value>),
}

// By hand rather than `untagged`, for an error that says what was expected.
impl<'de> Deserialize<'de> for Content {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Content;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("content: a string or a list of content parts")
            }

            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Content, E> {
                Ok(Content::Text(s.to_owned()))
            }

            fn visit_string<E: serde::de::Error>(self, s: String) -> Result<Content, E> {
                Ok(Content::Text(s))
            }

            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, seq: A) -> Result<Content, A::Error> {
                Vec::<Value>::deserialize(serde::de::value::SeqAccessDeserializer::new(seq))
                    .map(Content::Parts)
            }
        }
        de.deserialize_any(Visitor)
    }
}

impl From<&str> for Content {
    fn from(text: &str) -> Self {
        Self::Text(text.to_owned())
    }
}

impl From<String> for Content {
    fn from(text: String) -> Self {
        Self::Text(text)
    }
}

impl From<Vec<Value>> for Content {
    fn from(parts: Vec<Value>) -> Self {
        Self::Parts(parts)
    }
}

/// One JSON Patch (RFC 6902) operation, tagged by `op`: the elements of
/// `STATE_DELTA`'s `delta` and `ACTIVITY_DELTA`'s `patch`. Paths are JSON Pointers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum PatchOp {
    /// `add`: puts `value` at `path`.
    Add {
        /// Where.
        #[serde(deserialize_with = "pointer")]
        path: String,
        /// What.
        value: Value,
    },
    /// `remove`: removes what is at `path`.
    Remove {
        /// Where.
        #[serde(deserialize_with = "pointer")]
        path: String,
    },
    /// `replace`: replaces what is at `path` with `value`.
    Replace {
        /// Where.
        #[serde(deserialize_with = "pointer")]
        path: String,
        /// The new value.
        value: Value,
    },
    /// `move`: moves what is at `from` to `path`.
    Move {
        /// The source.
        #[serde(deserialize_with = "pointer")]
        from: String,
        /// The target.
        #[serde(deserialize_with = "pointer")]
        path: String,
    },
    /// `copy`: copies what is at `from` to `path`.
    Copy {
        /// The source.
        #[serde(deserialize_with = "pointer")]
        from: String,
        /// The target.
        #[serde(deserialize_with = "pointer")]
        path: String,
    },
    /// `test`: checks that what is at `path` equals `value`.
    Test {
        /// Where.
        #[serde(deserialize_with = "pointer")]
        path: String,
        /// The expected value.
        value: Value,
    },
}

impl PatchOp {
    /// `add` of `value` at `path`.
    pub fn add(path: impl Into<String>, value: impl Into<Value>) -> Self {
        Self::Add {
            path: path.into(),
            value: value.into(),
        }
    }

    /// `remove` of what is at `path`.
    pub fn remove(path: impl Into<String>) -> Self {
        Self::Remove { path: path.into() }
    }

    /// `replace` of what is at `path` with `value`.
    pub fn replace(path: impl Into<String>, value: impl Into<Value>) -> Self {
        Self::Replace {
            path: path.into(),
            value: value.into(),
        }
    }
}

record! {
    /// The function a [`ToolCall`] invokes.
    FunctionCall {
        /// The function's name.
        name: String,
        /// Its arguments, as the JSON text the model produced.
        arguments: String,
    }
    optional {}
}

/// A [`ToolCall`]'s `type`: serde ignores a struct-level `tag` on input, so a field
/// checks it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
enum FunctionTag {
    #[default]
    #[serde(rename = "function")]
    Function,
}

/// A tool call inside an [`AssistantMessage`] (`type` is always `function`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ToolCall {
    /// `type`: `function`, the only kind; may be absent on input.
    #[serde(rename = "type", default)]
    kind: FunctionTag,
    /// Identifies the call.
    pub id: String,
    /// What it calls.
    pub function: FunctionCall,
    /// A provider's opaque artefact belonging to the call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encrypted_value: Option<String>,
    /// Extra information attached to the call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map<String, Value>>,
}

impl ToolCall {
    /// A call `id` of the function `name` with `arguments` (JSON text).
    pub fn new(
        id: impl Into<String>,
        name: impl Into<String>,
        arguments: impl Into<String>,
    ) -> Self {
        Self {
            kind: FunctionTag::Function,
            id: id.into(),
            function: FunctionCall::new(name, arguments),
            encrypted_value: None,
            metadata: None,
        }
    }

    /// Sets the optional field `encrypted_value`.
    #[must_use]
    pub fn encrypted_value(mut self, value: impl Into<String>) -> Self {
        self.encrypted_value = Some(value.into());
        self
    }

    /// Sets the optional field `metadata`.
    #[must_use]
    pub fn metadata(mut self, metadata: Map<String, Value>) -> Self {
        self.metadata = Some(metadata);
        self
    }
}

record! {
    /// Tokens a run (or a failed one) used, as far as the provider reports them.
    TokenUsage {}
    optional {
        /// The provider.
        provider: String,
        /// The model.
        model: String,
        /// Input tokens.
        #[serde(deserialize_with = "safe_count")]
        input_tokens: u64,
        /// Output tokens.
        #[serde(deserialize_with = "safe_count")]
        output_tokens: u64,
        /// All tokens.
        #[serde(deserialize_with = "safe_count")]
        total_tokens: u64,
        /// Reasoning tokens.
        #[serde(deserialize_with = "safe_count")]
        reasoning_tokens: u64,
        /// Input tokens served from a cache.
        #[serde(deserialize_with = "safe_count")]
        cached_input_tokens: u64,
        /// Input tokens written to a cache.
        #[serde(deserialize_with = "safe_count")]
        cache_write_input_tokens: u64,
    }
}

record! {
    /// A question the agent stopped on, answered by a [`ResumeEntry`] in the next
    /// run's input.
    Interrupt {
        /// Identifies the interrupt.
        id: String,
        /// Why the run stopped (an open string, e.g. `tool_call`).
        reason: String,
    }
    optional {
        /// What to show a person.
        message: String,
        /// The tool call the interrupt is about.
        tool_call_id: String,
        /// A JSON Schema the answer must follow.
        response_schema: Map<String, Value>,
        /// When the interrupt stops being answerable (an ISO 8601 time).
        expires_at: String,
        /// Extra information.
        metadata: Map<String, Value>,
        /// The subagent invocation it belongs to.
        subagent_run_id: String,
    }
}

/// How a run finished (`RUN_FINISHED`'s `outcome`), tagged by `type`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(
    tag = "type",
    rename_all = "lowercase",
    rename_all_fields = "camelCase"
)]
#[non_exhaustive]
pub enum RunFinishedOutcome {
    /// `success`
    Success {
        /// Tool calls the client is expected to run.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pending_tool_call_ids: Option<Vec<String>>,
    },
    /// `interrupt`: the run stopped on questions (at least one).
    Interrupt {
        /// The questions; never empty.
        #[serde(deserialize_with = "non_empty")]
        interrupts: Vec<Interrupt>,
    },
    /// `cancelled`
    Cancelled,
}

/// How a subagent finished (`SUBAGENT_FINISHED`'s `outcome`), tagged by `type`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(
    tag = "type",
    rename_all = "lowercase",
    rename_all_fields = "camelCase"
)]
#[non_exhaustive]
pub enum SubagentOutcome {
    /// `success`
    Success,
    /// `suspended`: waiting on interrupts of the parent run.
    Suspended {
        /// The interrupts it waits on.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        interrupt_ids: Option<Vec<String>>,
    },
}

// ---------------------------------------------------------------------------------
// Messages.

record! {
    /// A message with the role `developer`.
    DeveloperMessage {
        /// Identifies the message within the conversation.
        id: String,
        /// The text.
        content: String,
    }
    optional {
        /// A display name for the author.
        name: String,
        /// A provider's opaque artefact belonging to the message.
        encrypted_value: String,
        /// Extra information.
        metadata: Map<String, Value>,
        /// The subagent invocation it belongs to.
        subagent_run_id: String,
    }
}

record! {
    /// A message with the role `system`.
    SystemMessage {
        /// Identifies the message within the conversation.
        id: String,
        /// The text.
        content: String,
    }
    optional {
        /// A display name for the author.
        name: String,
        /// A provider's opaque artefact belonging to the message.
        encrypted_value: String,
        /// Extra information.
        metadata: Map<String, Value>,
        /// The subagent invocation it belongs to.
        subagent_run_id: String,
    }
}

record! {
    /// A message with the role `assistant`.
    AssistantMessage {
        /// Identifies the message within the conversation.
        id: String,
    }
    optional {
        /// The text.
        content: String,
        /// The tools the assistant called.
        tool_calls: Vec<ToolCall>,
        /// A display name for the author.
        name: String,
        /// A provider's opaque artefact belonging to the message.
        encrypted_value: String,
        /// Extra information.
        metadata: Map<String, Value>,
        /// The subagent invocation it belongs to.
        subagent_run_id: String,
    }
}

record! {
    /// A message with the role `user`.
    UserMessage {
        /// Identifies the message within the conversation.
        id: String,
        /// Text, or content parts.
        content: Content,
    }
    optional {
        /// A display name for the author.
        name: String,
        /// A provider's opaque artefact belonging to the message.
        encrypted_value: String,
        /// Extra information.
        metadata: Map<String, Value>,
        /// The subagent invocation it belongs to.
        subagent_run_id: String,
    }
}

record! {
    /// A message with the role `tool`: a tool call's result.
    ToolMessage {
        /// Identifies the message within the conversation.
        id: String,
        /// Text, or content parts.
        content: Content,
        /// The call this answers.
        tool_call_id: String,
    }
    optional {
        /// What went wrong, if the call failed.
        error: String,
        /// A provider's opaque artefact belonging to the message.
        encrypted_value: String,
        /// Extra information.
        metadata: Map<String, Value>,
        /// The subagent invocation it belongs to.
        subagent_run_id: String,
    }
}

record! {
    /// A message with the role `activity`: an activity's content in the conversation.
    ActivityMessage {
        /// Identifies the message within the conversation.
        id: String,
        /// What kind of activity.
        activity_type: String,
        /// Its content.
        content: Map<String, Value>,
    }
    optional {
        /// Extra information.
        metadata: Map<String, Value>,
        /// The subagent invocation it belongs to.
        subagent_run_id: String,
    }
}

record! {
    /// A message with the role `reasoning`.
    ReasoningMessage {
        /// Identifies the message within the conversation.
        id: String,
        /// The reasoning text.
        content: String,
    }
    optional {
        /// A provider's opaque artefact belonging to the message.
        encrypted_value: String,
        /// Extra information.
        metadata: Map<String, Value>,
        /// The subagent invocation it belongs to.
        subagent_run_id: String,
    }
}

/// A message of the conversation, tagged by `role`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "role", rename_all = "lowercase")]
#[non_exhaustive]
pub enum Message {
    /// `developer`
    Developer(DeveloperMessage),
    /// `system`
    System(SystemMessage),
    /// `assistant`
    Assistant(AssistantMessage),
    /// `user`
    User(UserMessage),
    /// `tool`
    Tool(ToolMessage),
    /// `activity`
    Activity(ActivityMessage),
    /// `reasoning`
    Reasoning(ReasoningMessage),
}

macro_rules! message_from {
    ($($variant:ident($ty:ident)),*) => {
        $(
            impl From<$ty> for Message {
                fn from(m: $ty) -> Self {
                    Self::$variant(m)
                }
            }
        )*
    };
}

message_from!(
    Developer(DeveloperMessage),
    System(SystemMessage),
    Assistant(AssistantMessage),
    User(UserMessage),
    Tool(ToolMessage),
    Activity(ActivityMessage),
    Reasoning(ReasoningMessage)
);

// ---------------------------------------------------------------------------------
// The input of a run.

record! {
    /// A tool the client offers the agent.
    Tool {
        /// Its name.
        name: String,
        /// What it does.
        description: String,
    }
    optional {
        /// A JSON Schema of its parameters.
        parameters: Value,
        /// Extra information.
        metadata: Map<String, Value>,
    }
}

record! {
    /// A piece of context the client gives the agent.
    Context {
        /// What it is.
        description: String,
        /// The context itself.
        value: String,
    }
    optional {}
}

/// How an interrupt was answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ResumeStatus {
    /// `resolved`
    Resolved,
    /// `cancelled`
    Cancelled,
}

record! {
    /// The answer to one [`Interrupt`] of the previous run.
    ResumeEntry {
        /// The interrupt answered.
        interrupt_id: String,
        /// Whether it was resolved or cancelled.
        status: ResumeStatus,
    }
    optional {
        /// The answer.
        payload: Value,
        /// Extra information.
        metadata: Map<String, Value>,
    }
}

record! {
    /// What a client sends to start a run (the body of the HTTP POST of the SSE
    /// transport).
    RunAgentInput {
        /// The conversation thread.
        thread_id: String,
        /// The run to start.
        run_id: String,
        /// The conversation so far.
        messages: Vec<Message>,
    }
    optional {
        /// The protocol version the client speaks.
        protocol_version: String,
        /// The run this one follows from.
        parent_run_id: String,
        /// The shared state.
        state: Value,
        /// Tools the client offers.
        tools: Vec<Tool>,
        /// Context for the agent.
        context: Vec<Context>,
        /// Properties passed through to the agent unchanged.
        forwarded_props: Value,
        /// Answers to the previous run's interrupts.
        resume: Vec<ResumeEntry>,
    }
}

// ---------------------------------------------------------------------------------
// The events.

event! {
    /// `RUN_STARTED`: a run began.
    RunStarted {
        /// The conversation thread.
        thread_id: String,
        /// The run.
        run_id: String,
    }
    optional {
        /// The protocol version the agent speaks.
        protocol_version: String,
        /// The run this one follows from.
        parent_run_id: String,
        /// The input the run started with.
        input: Box<RunAgentInput>,
    }
}

event! {
    /// `RUN_FINISHED`: a run ended.
    RunFinished {
        /// The conversation thread.
        thread_id: String,
        /// The run.
        run_id: String,
    }
    optional {
        /// The run's result, any JSON value.
        result: Value,
        /// How it ended.
        outcome: RunFinishedOutcome,
        /// Tokens it used.
        usage: Vec<TokenUsage>,
    }
}

event! {
    /// `RUN_ERROR`: a run failed.
    RunError {
        /// What went wrong, for a person to read.
        message: String,
    }
    optional {
        /// A machine-readable error code.
        code: String,
        /// Tokens it used.
        usage: Vec<TokenUsage>,
    }
}

event! {
    /// `STEP_STARTED`: a step of a run began.
    StepStarted {
        /// The step's name.
        step_name: String,
    }
    optional {
        /// The subagent invocation it belongs to.
        subagent_run_id: String,
    }
}

event! {
    /// `STEP_FINISHED`: a step of a run ended.
    StepFinished {
        /// The step's name.
        step_name: String,
    }
    optional {
        /// The subagent invocation it belongs to.
        subagent_run_id: String,
    }
}

event! {
    /// `TEXT_MESSAGE_START`: opens a streamed text message.
    TextMessageStart {
        /// The message this stream builds.
        message_id: String,
    }
    optional {
        /// Who the message is from (absent means assistant).
        role: TextMessageRole,
        /// A display name for the author.
        name: String,
        /// The subagent invocation it belongs to.
        subagent_run_id: String,
    }
}

event! {
    /// `TEXT_MESSAGE_CONTENT`: a fragment of a streamed text message.
    TextMessageContent {
        /// The message.
        message_id: String,
        /// The fragment to append (may be empty).
        delta: String,
    }
    optional {
        /// The subagent invocation it belongs to.
        subagent_run_id: String,
    }
}

event! {
    /// `TEXT_MESSAGE_END`: closes a streamed text message.
    TextMessageEnd {
        /// The message.
        message_id: String,
    }
    optional {
        /// The subagent invocation it belongs to.
        subagent_run_id: String,
    }
}

event! {
    /// `TEXT_MESSAGE_CHUNK`: start, content and end of a text message in one.
    TextMessageChunk {}
    optional {
        /// The message.
        message_id: String,
        /// Who the message is from.
        role: TextMessageRole,
        /// The fragment to append.
        delta: String,
        /// A display name for the author.
        name: String,
        /// The subagent invocation it belongs to.
        subagent_run_id: String,
    }
}

event! {
    /// `TOOL_CALL_START`: a tool call began.
    ToolCallStart {
        /// The call.
        tool_call_id: String,
        /// The tool called.
        tool_call_name: String,
    }
    optional {
        /// The message the call belongs to.
        parent_message_id: String,
        /// The subagent invocation it belongs to.
        subagent_run_id: String,
    }
}

event! {
    /// `TOOL_CALL_ARGS`: a fragment of a tool call's arguments.
    ToolCallArgs {
        /// The call.
        tool_call_id: String,
        /// The fragment of the arguments' JSON text.
        delta: String,
    }
    optional {
        /// The subagent invocation it belongs to.
        subagent_run_id: String,
    }
}

event! {
    /// `TOOL_CALL_END`: a tool call's arguments are complete.
    ToolCallEnd {
        /// The call.
        tool_call_id: String,
    }
    optional {
        /// The subagent invocation it belongs to.
        subagent_run_id: String,
    }
}

event! {
    /// `TOOL_CALL_CHUNK`: start, arguments and end of a tool call in one.
    ToolCallChunk {}
    optional {
        /// The call.
        tool_call_id: String,
        /// The tool called.
        tool_call_name: String,
        /// The message the call belongs to.
        parent_message_id: String,
        /// A fragment of the arguments' JSON text.
        delta: String,
        /// The subagent invocation it belongs to.
        subagent_run_id: String,
    }
}

event! {
    /// `TOOL_CALL_RESULT`: what a tool call returned.
    ToolCallResult {
        /// The message carrying the result.
        message_id: String,
        /// The call.
        tool_call_id: String,
        /// Text, or content parts.
        content: Content,
    }
    optional {
        /// The role, always `tool`.
        role: ToolRole,
        /// The subagent invocation it belongs to.
        subagent_run_id: String,
    }
}

event! {
    /// `STATE_SNAPSHOT`: the whole shared state.
    StateSnapshot {
        /// The state, any JSON value.
        snapshot: Value,
    }
    optional {
        /// The subagent invocation it belongs to.
        subagent_run_id: String,
    }
}

event! {
    /// `STATE_DELTA`: a JSON Patch to the shared state.
    StateDelta {
        /// The patch.
        delta: Vec<PatchOp>,
    }
    optional {
        /// The subagent invocation it belongs to.
        subagent_run_id: String,
    }
}

event! {
    /// `MESSAGES_SNAPSHOT`: the whole conversation.
    MessagesSnapshot {
        /// The messages.
        messages: Vec<Message>,
    }
    optional {}
}

event! {
    /// `ACTIVITY_SNAPSHOT`: the whole content of one activity.
    ActivitySnapshot {
        /// The activity (its message).
        message_id: String,
        /// What kind of activity.
        activity_type: String,
        /// Its content.
        content: Map<String, Value>,
    }
    optional {
        /// Whether this replaces an existing activity of that id (absent: true).
        replace: bool,
        /// The subagent invocation it belongs to.
        subagent_run_id: String,
    }
}

event! {
    /// `ACTIVITY_DELTA`: a JSON Patch to one activity's content.
    ActivityDelta {
        /// The activity (its message).
        message_id: String,
        /// What kind of activity.
        activity_type: String,
        /// The patch.
        patch: Vec<PatchOp>,
    }
    optional {
        /// The subagent invocation it belongs to.
        subagent_run_id: String,
    }
}

event! {
    /// `REASONING_START`: the agent began reasoning.
    ReasoningStart {
        /// The reasoning's id.
        message_id: String,
    }
    optional {
        /// The subagent invocation it belongs to.
        subagent_run_id: String,
    }
}

event! {
    /// `REASONING_MESSAGE_START`: opens a streamed reasoning message.
    ReasoningMessageStart {
        /// The message.
        message_id: String,
    }
    optional {
        /// The role, always `reasoning`.
        role: ReasoningRole,
        /// The subagent invocation it belongs to.
        subagent_run_id: String,
    }
}

event! {
    /// `REASONING_MESSAGE_CONTENT`: a fragment of a streamed reasoning message.
    ReasoningMessageContent {
        /// The message.
        message_id: String,
        /// The fragment to append.
        delta: String,
    }
    optional {
        /// The subagent invocation it belongs to.
        subagent_run_id: String,
    }
}

event! {
    /// `REASONING_MESSAGE_END`: closes a streamed reasoning message.
    ReasoningMessageEnd {
        /// The message.
        message_id: String,
    }
    optional {
        /// The subagent invocation it belongs to.
        subagent_run_id: String,
    }
}

event! {
    /// `REASONING_MESSAGE_CHUNK`: start, content and end of a reasoning message in
    /// one.
    ReasoningMessageChunk {}
    optional {
        /// The message.
        message_id: String,
        /// The fragment to append.
        delta: String,
        /// The subagent invocation it belongs to.
        subagent_run_id: String,
    }
}

event! {
    /// `REASONING_END`: the agent finished reasoning.
    ReasoningEnd {
        /// The reasoning's id.
        message_id: String,
    }
    optional {
        /// The subagent invocation it belongs to.
        subagent_run_id: String,
    }
}

event! {
    /// `REASONING_ENCRYPTED_VALUE`: an opaque reasoning artefact for a message or a
    /// tool call.
    ReasoningEncryptedValue {
        /// What the entity is.
        subtype: ReasoningSubtype,
        /// The message or tool call it belongs to.
        entity_id: String,
        /// The artefact.
        encrypted_value: String,
    }
    optional {
        /// The subagent invocation it belongs to.
        subagent_run_id: String,
    }
}

event! {
    /// `SUBAGENT_STARTED`: a subagent invocation began.
    SubagentStarted {
        /// The invocation.
        subagent_run_id: String,
        /// The subagent's name.
        name: String,
    }
    optional {
        /// What the subagent does.
        description: String,
        /// The invocation that started this one, if a subagent did.
        parent_subagent_run_id: String,
        /// The tool call that started it.
        parent_tool_call_id: String,
        /// The message that started it.
        parent_message_id: String,
    }
}

event! {
    /// `SUBAGENT_FINISHED`: a subagent invocation ended.
    SubagentFinished {
        /// The invocation.
        subagent_run_id: String,
    }
    optional {
        /// Its result, any JSON value.
        result: Value,
        /// How it ended.
        outcome: SubagentOutcome,
    }
}

event! {
    /// `SUBAGENT_ERROR`: a subagent invocation failed.
    SubagentError {
        /// The invocation.
        subagent_run_id: String,
        /// What went wrong, for a person to read.
        message: String,
    }
    optional {
        /// A machine-readable error code.
        code: String,
    }
}

event! {
    /// `RAW`: an event of another system, passed through.
    Raw {
        /// The event, any JSON value.
        event: Value,
    }
    optional {
        /// The system it came from.
        source: String,
        /// The subagent invocation it belongs to.
        subagent_run_id: String,
    }
}

event! {
    /// `CUSTOM`: an application's own event.
    Custom {
        /// Its name.
        name: String,
        /// Its value, any JSON value.
        value: Value,
    }
    optional {
        /// The subagent invocation it belongs to.
        subagent_run_id: String,
    }
}

default_is_new!(
    TokenUsage,
    TextMessageChunk,
    ToolCallChunk,
    ReasoningMessageChunk
);

// ---------------------------------------------------------------------------------
// The union.

/// Declares [`AgUiEvent`] over the event structs (each named as its [`EventType`]
/// variant), its `From` impls and its dispatch by type.
macro_rules! agui_events {
    ($($variant:ident = $wire:literal),* $(,)?) => {
        /// Any AG-UI 1.0 event, tagged by `type`: serialises to (and deserialises
        /// from) the official wire form.
        #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
        #[serde(tag = "type")]
        #[non_exhaustive]
        pub enum AgUiEvent {
            $(
                #[doc = concat!("`", $wire, "`")]
                #[serde(rename = $wire)]
                $variant($variant),
            )*
        }

        $(
            impl From<$variant> for AgUiEvent {
                fn from(event: $variant) -> Self {
                    Self::$variant(event)
                }
            }
        )*

        /// The wire names of [`AgUiEvent`]'s variants, in declaration order.
        #[cfg(test)]
        const WIRE_NAMES: &[&str] = &[$($wire),*];

        impl AgUiEvent {
            /// The event's type.
            pub fn kind(&self) -> EventType {
                match self {
                    $( Self::$variant(_) => EventType::$variant, )*
                }
            }

            /// `fields` read as the event type `kind`, or `None` for a type this
            /// module has no struct for. The `type` member is ignored: `kind` says it.
            fn read(
                kind: &EventType,
                fields: &Map<String, Value>,
            ) -> Option<Result<Self, serde_json::Error>> {
                Some(match kind {
                    $( EventType::$variant => $variant::deserialize(fields).map(Self::$variant), )*
                    _ => return None,
                })
            }
        }
    };
}

agui_events! {
    RunStarted = "RUN_STARTED",
    RunFinished = "RUN_FINISHED",
    RunError = "RUN_ERROR",
    StepStarted = "STEP_STARTED",
    StepFinished = "STEP_FINISHED",
    TextMessageStart = "TEXT_MESSAGE_START",
    TextMessageContent = "TEXT_MESSAGE_CONTENT",
    TextMessageEnd = "TEXT_MESSAGE_END",
    TextMessageChunk = "TEXT_MESSAGE_CHUNK",
    ToolCallStart = "TOOL_CALL_START",
    ToolCallArgs = "TOOL_CALL_ARGS",
    ToolCallEnd = "TOOL_CALL_END",
    ToolCallChunk = "TOOL_CALL_CHUNK",
    ToolCallResult = "TOOL_CALL_RESULT",
    StateSnapshot = "STATE_SNAPSHOT",
    StateDelta = "STATE_DELTA",
    MessagesSnapshot = "MESSAGES_SNAPSHOT",
    ActivitySnapshot = "ACTIVITY_SNAPSHOT",
    ActivityDelta = "ACTIVITY_DELTA",
    ReasoningStart = "REASONING_START",
    ReasoningMessageStart = "REASONING_MESSAGE_START",
    ReasoningMessageContent = "REASONING_MESSAGE_CONTENT",
    ReasoningMessageEnd = "REASONING_MESSAGE_END",
    ReasoningMessageChunk = "REASONING_MESSAGE_CHUNK",
    ReasoningEnd = "REASONING_END",
    ReasoningEncryptedValue = "REASONING_ENCRYPTED_VALUE",
    SubagentStarted = "SUBAGENT_STARTED",
    SubagentFinished = "SUBAGENT_FINISHED",
    SubagentError = "SUBAGENT_ERROR",
    Raw = "RAW",
    Custom = "CUSTOM",
}

impl AgUiEvent {
    /// The event in the hub's form, encoded once (to a JSON value).
    pub fn to_event(&self) -> Event {
        // Serialising these types cannot fail (every map key is a string) and gives
        // an object with a string `type`; the fallback is never taken.
        serde_json::to_value(self)
            .ok()
            .and_then(|value| Event::from_value(value).ok())
            .unwrap_or_else(|| Event::new(self.kind()))
    }

    /// Encodes the event once, straight to a [`Frame`]'s text, with its type's
    /// default class ([`EventType::class`]).
    pub fn encode(&self) -> Frame {
        let kind = self.kind();
        let class = kind.class();
        // As in `to_event`: serialising cannot fail.
        let text = serde_json::to_string(self).unwrap_or_default();
        Frame::from_text(kind, class, self.activity_id(), text, None)
    }

    /// [`encode`](Self::encode), with the class `classes` gives the event's type.
    pub fn encode_with(&self, classes: &ClassMap) -> Frame {
        self.encode().classed(classes)
    }

    /// Reads `event` as a typed event.
    ///
    /// # Errors
    ///
    /// [`SchemaError::UnknownType`] for a type AG-UI 1.0 does not name,
    /// [`SchemaError::Invalid`] when a required field is missing or a field does not
    /// fit the schema.
    pub fn from_event(event: &Event) -> Result<Self, SchemaError> {
        match Self::read(event.kind(), event.fields()) {
            None => Err(SchemaError::UnknownType(event.kind().clone())),
            Some(Ok(typed)) => Ok(typed),
            Some(Err(error)) => Err(SchemaError::Invalid {
                kind: event.kind().clone(),
                message: error.to_string(),
            }),
        }
    }

    /// An activity event's `messageId` (what its frame is keyed by).
    fn activity_id(&self) -> Option<&str> {
        match self {
            Self::ActivitySnapshot(e) => Some(&e.message_id),
            Self::ActivityDelta(e) => Some(&e.message_id),
            _ => None,
        }
    }
}

impl TryFrom<&Event> for AgUiEvent {
    type Error = SchemaError;

    fn try_from(event: &Event) -> Result<Self, SchemaError> {
        Self::from_event(event)
    }
}

impl From<&AgUiEvent> for Event {
    fn from(event: &AgUiEvent) -> Self {
        event.to_event()
    }
}

/// Why an [`Event`] is not a valid AG-UI 1.0 event.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SchemaError {
    /// The type is not one AG-UI 1.0 names (only [`AgUiEvent::from_event`] reports
    /// this; [`validate`] lets such events pass).
    UnknownType(EventType),
    /// A required field is missing or a field does not fit the schema.
    Invalid {
        /// The event's type.
        kind: EventType,
        /// What does not fit, naming the field.
        message: String,
    },
}

impl fmt::Display for SchemaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownType(kind) => write!(f, "{kind} is not an AG-UI 1.0 event type"),
            Self::Invalid { kind, message } => {
                write!(
                    f,
                    "{kind} event does not match the AG-UI 1.0 schema: {message}"
                )
            }
        }
    }
}

impl std::error::Error for SchemaError {}

/// Checks that `event`, if it is of one of the 31 types AG-UI 1.0 names, has the
/// schema's required fields, each field of the right JSON type and within the
/// schema's bounds (see [the module docs](self#strict-mode)).
///
/// Events of any other type ([`EventType::Other`]) pass: the protocol lets a peer
/// send types a newer version (or an application) adds, and the transport already
/// carries them as [`Droppable`](super::DeliveryClass::Droppable). Unknown fields of
/// a named type pass too, as they do in the official models.
///
/// # Errors
///
/// [`SchemaError::Invalid`] naming the type and the field.
///
/// # Examples
///
/// ```
/// use membound::adapters::ws::agui::validate;
/// use membound::adapters::ws::Event;
///
/// let ok = Event::parse(r#"{"type":"TEXT_MESSAGE_CONTENT","messageId":"m","delta":""}"#)?;
/// assert!(validate(&ok).is_ok());
///
/// let missing = Event::parse(r#"{"type":"TEXT_MESSAGE_CONTENT","messageId":"m"}"#)?;
/// let err = validate(&missing).unwrap_err();
/// assert!(err.to_string().contains("delta"), "{err}");
///
/// let other = Event::parse(r#"{"type":"MY_APP_EVENT"}"#)?;
/// assert!(validate(&other).is_ok());
/// # Ok::<(), membound::adapters::ws::EventError>(())
/// ```
pub fn validate(event: &Event) -> Result<(), SchemaError> {
    match AgUiEvent::from_event(event) {
        Ok(_) | Err(SchemaError::UnknownType(_)) => Ok(()),
        Err(error) => Err(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_named_type_has_a_struct_and_no_other() {
        let named: Vec<&str> = EventType::named().map(EventType::as_str).collect();
        assert_eq!(WIRE_NAMES, named.as_slice());
        for kind in EventType::named() {
            assert!(
                AgUiEvent::read(kind, &Map::new()).is_some(),
                "{kind} has no struct"
            );
        }
        assert!(AgUiEvent::read(&EventType::parse("NOPE"), &Map::new()).is_none());
    }

    #[test]
    fn a_tool_call_type_may_be_absent_but_not_other_than_function() {
        let call = |v: Value| serde_json::from_value::<ToolCall>(v);
        let function = serde_json::json!({"name": "f", "arguments": ""});
        assert!(call(serde_json::json!({"id": "c", "function": function})).is_ok());
        assert!(
            call(serde_json::json!({"id": "c", "type": "function", "function": function})).is_ok()
        );
        assert!(
            call(serde_json::json!({"id": "c", "type": "other", "function": function})).is_err()
        );
    }

    #[test]
    fn pointers() {
        let ok = |s: &str| pointer(Value::String(s.into())).is_ok();
        assert!(ok(""));
        assert!(ok("/a/b~0~1/"));
        assert!(!ok("a"));
        assert!(!ok("/a~"));
        assert!(!ok("/a~2"));
    }
}
