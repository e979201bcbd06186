//! Events: JSON objects with a `type` field, the AG-UI protocol's event types, and the
//! delivery class each type gets.

use std::fmt;
use std::prelude::rust_2021::*;
use std::sync::Arc;

use serde_json::{Map, Value};
use tokio_tungstenite::tungstenite::Utf8Bytes;

/// An event's `type`: the AG-UI protocol's event types, and any other string as
/// [`EventType::Other`] (passed through and delivered as [`DeliveryClass::Droppable`],
/// like `RAW`).
///
/// # Examples
///
/// ```
/// use membound::adapters::ws::{DeliveryClass, EventType};
///
/// let t = EventType::parse("TEXT_MESSAGE_CONTENT");
/// assert_eq!(t, EventType::TextMessageContent);
/// assert_eq!(t.as_str(), "TEXT_MESSAGE_CONTENT");
/// assert_eq!(t.class(), DeliveryClass::Lossless);
/// assert_eq!(EventType::parse("MY_THING").class(), DeliveryClass::Droppable);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EventType {
    /// `RUN_STARTED`
    RunStarted,
    /// `RUN_FINISHED`
    RunFinished,
    /// `RUN_ERROR`
    RunError,
    /// `STEP_STARTED`
    StepStarted,
    /// `STEP_FINISHED`
    StepFinished,
    /// `TEXT_MESSAGE_START`
    TextMessageStart,
    /// `TEXT_MESSAGE_CONTENT`
    TextMessageContent,
    /// `TEXT_MESSAGE_END`
    TextMessageEnd,
    /// `TEXT_MESSAGE_CHUNK`
    TextMessageChunk,
    /// `TOOL_CALL_START`
    ToolCallStart,
    /// `TOOL_CALL_ARGS`
    ToolCallArgs,
    /// `TOOL_CALL_END`
    ToolCallEnd,
    /// `TOOL_CALL_CHUNK`
    ToolCallChunk,
    /// `TOOL_CALL_RESULT`
    ToolCallResult,
    /// `STATE_SNAPSHOT`
    StateSnapshot,
    /// `STATE_DELTA`
    StateDelta,
    /// `MESSAGES_SNAPSHOT`
    MessagesSnapshot,
    /// `ACTIVITY_SNAPSHOT`: the whole content of one activity (keyed by its
    /// `messageId`).
    ActivitySnapshot,
    /// `ACTIVITY_DELTA`: an RFC 6902 patch to one activity's content.
    ActivityDelta,
    /// `REASONING_START`
    ReasoningStart,
    /// `REASONING_MESSAGE_START`
    ReasoningMessageStart,
    /// `REASONING_MESSAGE_CONTENT`
    ReasoningMessageContent,
    /// `REASONING_MESSAGE_END`
    ReasoningMessageEnd,
    /// `REASONING_MESSAGE_CHUNK`
    ReasoningMessageChunk,
    /// `REASONING_END`
    ReasoningEnd,
    /// `REASONING_ENCRYPTED_VALUE`
    ReasoningEncryptedValue,
    /// `SUBAGENT_STARTED`
    SubagentStarted,
    /// `SUBAGENT_FINISHED`
    SubagentFinished,
    /// `SUBAGENT_ERROR`
    SubagentError,
    /// `RAW`
    Raw,
    /// `CUSTOM`
    Custom,
    /// Any other type string, kept as sent.
    Other(Arc<str>),
}

/// Every named AG-UI 1.0 type with its wire name, in declaration order.
static NAMED: [(EventType, &str); 31] = [
    (EventType::RunStarted, "RUN_STARTED"),
    (EventType::RunFinished, "RUN_FINISHED"),
    (EventType::RunError, "RUN_ERROR"),
    (EventType::StepStarted, "STEP_STARTED"),
    (EventType::StepFinished, "STEP_FINISHED"),
    (EventType::TextMessageStart, "TEXT_MESSAGE_START"),
    (EventType::TextMessageContent, "TEXT_MESSAGE_CONTENT"),
    (EventType::TextMessageEnd, "TEXT_MESSAGE_END"),
    (EventType::TextMessageChunk, "TEXT_MESSAGE_CHUNK"),
    (EventType::ToolCallStart, "TOOL_CALL_START"),
    (EventType::ToolCallArgs, "TOOL_CALL_ARGS"),
    (EventType::ToolCallEnd, "TOOL_CALL_END"),
    (EventType::ToolCallChunk, "TOOL_CALL_CHUNK"),
    (EventType::ToolCallResult, "TOOL_CALL_RESULT"),
    (EventType::StateSnapshot, "STATE_SNAPSHOT"),
    (EventType::StateDelta, "STATE_DELTA"),
    (EventType::MessagesSnapshot, "MESSAGES_SNAPSHOT"),
    (EventType::ActivitySnapshot, "ACTIVITY_SNAPSHOT"),
    (EventType::ActivityDelta, "ACTIVITY_DELTA"),
    (EventType::ReasoningStart, "REASONING_START"),
    (EventType::ReasoningMessageStart, "REASONING_MESSAGE_START"),
    (
        EventType::ReasoningMessageContent,
        "REASONING_MESSAGE_CONTENT",
    ),
    (EventType::ReasoningMessageEnd, "REASONING_MESSAGE_END"),
    (EventType::ReasoningMessageChunk, "REASONING_MESSAGE_CHUNK"),
    (EventType::ReasoningEnd, "REASONING_END"),
    (
        EventType::ReasoningEncryptedValue,
        "REASONING_ENCRYPTED_VALUE",
    ),
    (EventType::SubagentStarted, "SUBAGENT_STARTED"),
    (EventType::SubagentFinished, "SUBAGENT_FINISHED"),
    (EventType::SubagentError, "SUBAGENT_ERROR"),
    (EventType::Raw, "RAW"),
    (EventType::Custom, "CUSTOM"),
];

impl EventType {
    /// The type named by `s`: one of the AG-UI types, or [`EventType::Other`].
    pub fn parse(s: &str) -> Self {
        NAMED
            .iter()
            .find(|(_, name)| *name == s)
            .map_or_else(|| Self::Other(Arc::from(s)), |(t, _)| t.clone())
    }

    /// The wire name (`"TEXT_MESSAGE_CONTENT"`, or the string an `Other` carries).
    pub fn as_str(&self) -> &str {
        match self {
            Self::Other(s) => s,
            named => NAMED
                .iter()
                .find(|(t, _)| t == named)
                .map_or("", |(_, name)| name),
        }
    }

    /// How the outbound queue treats events of this type when a connection falls
    /// behind, by default (a [`ClassMap`] overrides it per type):
    ///
    /// | class | types |
    /// |---|---|
    /// | [`Lossless`](DeliveryClass::Lossless) | `RUN_*`, `STEP_*`, `TEXT_MESSAGE_*`, `TOOL_CALL_*`, `REASONING_*`, `SUBAGENT_*` |
    /// | [`StateDelta`](DeliveryClass::StateDelta) | `STATE_DELTA`; `ACTIVITY_DELTA` (per `messageId`) |
    /// | [`Snapshot`](DeliveryClass::Snapshot) | `STATE_SNAPSHOT`, `MESSAGES_SNAPSHOT`; `ACTIVITY_SNAPSHOT` (per `messageId`) |
    /// | [`Droppable`](DeliveryClass::Droppable) | `RAW`, `CUSTOM`, and any other type |
    pub fn class(&self) -> DeliveryClass {
        match self {
            Self::StateDelta | Self::ActivityDelta => DeliveryClass::StateDelta,
            Self::StateSnapshot | Self::MessagesSnapshot | Self::ActivitySnapshot => {
                DeliveryClass::Snapshot
            }
            Self::Raw | Self::Custom | Self::Other(_) => DeliveryClass::Droppable,
            _ => DeliveryClass::Lossless,
        }
    }

    /// Every type AG-UI 1.0 names (31 of them), in a fixed order; not
    /// [`Other`](Self::Other).
    pub fn named() -> impl Iterator<Item = &'static EventType> {
        NAMED.iter().map(|(t, _)| t)
    }

    /// Whether this is `ACTIVITY_SNAPSHOT` or `ACTIVITY_DELTA`: events about one
    /// activity, keyed by their `messageId`.
    pub fn is_activity(&self) -> bool {
        matches!(self, Self::ActivitySnapshot | Self::ActivityDelta)
    }
}

/// The delivery class of each event type: [`EventType::class`]'s defaults, with
/// overrides by wire name, so that a type a newer protocol version adds (or one of
/// the application's own) gets the class it needs without a release.
///
/// A [`Server`](super::Server) applies its map
/// ([`ServerBuilder::classes`](super::ServerBuilder::classes)) to every event it
/// broadcasts or sends; [`Event::encode_with`] applies one by hand.
///
/// # Examples
///
/// ```
/// use membound::adapters::ws::{ClassMap, DeliveryClass, Event, EventType};
///
/// let classes = ClassMap::new()
///     .with("AUDIT_RECORD", DeliveryClass::Lossless)
///     .with("RAW", DeliveryClass::Lossless);
/// assert_eq!(classes.class_of(&EventType::parse("AUDIT_RECORD")), DeliveryClass::Lossless);
/// assert_eq!(classes.class_of(&EventType::Raw), DeliveryClass::Lossless);
/// // Types without an override keep their default.
/// assert_eq!(classes.class_of(&EventType::parse("SOMETHING")), DeliveryClass::Droppable);
/// assert_eq!(classes.class_of(&EventType::ReasoningStart), DeliveryClass::Lossless);
///
/// let frame = Event::new(EventType::parse("AUDIT_RECORD")).encode_with(&classes);
/// assert_eq!(frame.class(), DeliveryClass::Lossless);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(transparent))]
pub struct ClassMap {
    overrides: std::collections::BTreeMap<String, DeliveryClass>,
}

impl ClassMap {
    /// The defaults, no override.
    pub fn new() -> Self {
        Self::default()
    }

    /// Gives events whose `type` is `type_name` the class `class`.
    #[must_use]
    pub fn with(mut self, type_name: &str, class: DeliveryClass) -> Self {
        self.set(type_name, class);
        self
    }

    /// Gives events whose `type` is `type_name` the class `class`; returns the
    /// override it replaced.
    pub fn set(&mut self, type_name: &str, class: DeliveryClass) -> Option<DeliveryClass> {
        self.overrides.insert(type_name.to_owned(), class)
    }

    /// The class of `kind`: its override, or [`EventType::class`].
    pub fn class_of(&self, kind: &EventType) -> DeliveryClass {
        self.get(kind.as_str()).unwrap_or_else(|| kind.class())
    }

    /// The override for the type named `type_name`, if any.
    pub fn get(&self, type_name: &str) -> Option<DeliveryClass> {
        if self.overrides.is_empty() {
            return None;
        }
        self.overrides.get(type_name).copied()
    }

    /// Whether no type is overridden.
    pub fn is_empty(&self) -> bool {
        self.overrides.is_empty()
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the outbound queue of a connection that falls behind does with an event.
///
/// Serialised (with feature `serde`) by its [`as_str`](Self::as_str) name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum DeliveryClass {
    /// Lifecycle, `TEXT_MESSAGE_*`, `TOOL_CALL_*`, `REASONING_*`, `SUBAGENT_*`:
    /// never dropped. A sender waits for room up to a timeout; then the connection
    /// is closed as a slow consumer
    /// ([`close_code::SLOW_CONSUMER`](super::close_code::SLOW_CONSUMER)).
    Lossless,
    /// Deltas against a snapshot. `STATE_DELTA`: on overflow the queued deltas are
    /// discarded and the connection gets a fresh `STATE_SNAPSHOT` before any
    /// further delta. `ACTIVITY_DELTA` (broadcast): the connection gets a fresh
    /// `ACTIVITY_SNAPSHOT` of every activity the log tracks, and skips the deltas
    /// those snapshots contain (see [`SharedLog`](super::SharedLog#activities)).
    StateDelta,
    /// `STATE_SNAPSHOT`, `MESSAGES_SNAPSHOT`, `ACTIVITY_SNAPSHOT`: latest wins; a
    /// newer snapshot replaces a queued older one of the same type (and, for
    /// activities, the same `messageId`).
    Snapshot,
    /// `RAW`, `CUSTOM` and unknown types: dropped by the configured policy, counted.
    Droppable,
}

/// Visits one snapshot per delivery class (indexed by [`DeliveryClass::index`]),
/// each labelled `class`.
pub(crate) fn visit_by_class<M: crate::metrics::Metrics>(
    per_class: &[M; 4],
    out: &mut dyn crate::metrics::Visitor,
) {
    for class in DeliveryClass::ALL {
        let mut out = crate::metrics::Scoped::new(out).label("class", class.as_str());
        per_class[class.index()].visit(&mut out);
    }
}

impl DeliveryClass {
    /// Every class, in a fixed order (for per-class metrics).
    pub const ALL: [DeliveryClass; 4] = [
        DeliveryClass::Lossless,
        DeliveryClass::StateDelta,
        DeliveryClass::Snapshot,
        DeliveryClass::Droppable,
    ];

    /// A short lower-case name: `lossless`, `state_delta`, `snapshot`, `droppable`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Lossless => "lossless",
            Self::StateDelta => "state_delta",
            Self::Snapshot => "snapshot",
            Self::Droppable => "droppable",
        }
    }

    /// The position of this class in [`ALL`](Self::ALL), for per-class arrays.
    pub const fn index(self) -> usize {
        self as usize
    }
}

/// Why a text could not be read as an event.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum EventError {
    /// Not valid JSON; the parser's message.
    Json(String),
    /// Valid JSON, but not an object.
    NotObject,
    /// An object without a `type` member.
    MissingType,
    /// A `type` member that is not a string.
    TypeNotString,
}

impl fmt::Display for EventError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Json(msg) => write!(f, "event is not valid JSON: {msg}"),
            Self::NotObject => f.write_str("event is not a JSON object"),
            Self::MissingType => f.write_str("event has no \"type\" field"),
            Self::TypeNotString => f.write_str("event's \"type\" field is not a string"),
        }
    }
}

impl std::error::Error for EventError {}

/// One event: a JSON object whose `type` member names an [`EventType`].
///
/// An event may carry the state-store revision it
/// describes ([`with_revision`](Self::with_revision)); it is not sent on the wire, but
/// lets a connection that is resynchronised with a snapshot skip the deltas the
/// snapshot already contains.
///
/// # Examples
///
/// ```
/// use membound::adapters::ws::{Event, EventType};
/// use serde_json::json;
///
/// let ev = Event::parse(r#"{"type":"TEXT_MESSAGE_CONTENT","messageId":"m1","delta":"hi"}"#)?;
/// assert_eq!(ev.kind(), &EventType::TextMessageContent);
/// assert_eq!(ev.get("delta"), Some(&json!("hi")));
///
/// let out = Event::new(EventType::RunStarted)
///     .with("threadId", "t1")
///     .with("runId", "r1");
/// assert_eq!(out.to_json()["type"], "RUN_STARTED");
/// # Ok::<(), membound::adapters::ws::EventError>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    kind: EventType,
    /// The whole object, `type` member included.
    fields: Map<String, Value>,
    revision: Option<u64>,
}

impl Event {
    /// An event of type `kind` with no other fields.
    pub fn new(kind: EventType) -> Self {
        let mut fields = Map::new();
        fields.insert("type".to_owned(), Value::String(kind.as_str().to_owned()));
        Self {
            kind,
            fields,
            revision: None,
        }
    }

    /// Adds (or replaces) a field. Setting `type` is ignored: the type is fixed at
    /// construction.
    #[must_use]
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        if key != "type" {
            self.fields.insert(key.to_owned(), value.into());
        }
        self
    }

    /// Tags the event with the state-store revision it describes (not sent).
    #[must_use]
    pub fn with_revision(mut self, revision: u64) -> Self {
        self.revision = Some(revision);
        self
    }

    /// Reads an event from JSON text.
    ///
    /// # Errors
    ///
    /// [`EventError`] when the text is not a JSON object with a string `type`.
    pub fn parse(text: &str) -> Result<Self, EventError> {
        let value: Value =
            serde_json::from_str(text).map_err(|e| EventError::Json(e.to_string()))?;
        Self::from_value(value)
    }

    /// Reads an event from a JSON value.
    ///
    /// # Errors
    ///
    /// [`EventError`] when the value is not an object with a string `type`.
    pub fn from_value(value: Value) -> Result<Self, EventError> {
        let Value::Object(fields) = value else {
            return Err(EventError::NotObject);
        };
        let kind = match fields.get("type") {
            None => return Err(EventError::MissingType),
            Some(Value::String(s)) => EventType::parse(s),
            Some(_) => return Err(EventError::TypeNotString),
        };
        Ok(Self {
            kind,
            fields,
            revision: None,
        })
    }

    /// The event's type.
    pub fn kind(&self) -> &EventType {
        &self.kind
    }

    /// The delivery class of the event's type.
    pub fn class(&self) -> DeliveryClass {
        self.kind.class()
    }

    /// The state-store revision the event was tagged with.
    pub fn revision(&self) -> Option<u64> {
        self.revision
    }

    /// One field of the object.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.fields.get(key)
    }

    /// The whole object, `type` included.
    pub fn fields(&self) -> &Map<String, Value> {
        &self.fields
    }

    /// The event as a JSON value.
    pub fn to_json(&self) -> Value {
        Value::Object(self.fields.clone())
    }

    /// Encodes the event once, for sending to any number of connections, with its
    /// type's default class ([`EventType::class`]).
    pub fn encode(&self) -> Frame {
        self.encode_as(self.kind.class())
    }

    /// [`encode`](Self::encode), with the class `classes` gives the event's type.
    pub fn encode_with(&self, classes: &ClassMap) -> Frame {
        self.encode_as(classes.class_of(&self.kind))
    }

    fn encode_as(&self, class: DeliveryClass) -> Frame {
        // Serialising a `Map<String, Value>` cannot fail: every key is a string.
        let text = serde_json::to_string(&self.fields).unwrap_or_default();
        let key = if self.kind.is_activity() {
            self.fields.get("messageId").and_then(Value::as_str)
        } else {
            None
        };
        Frame::from_text(self.kind.clone(), class, key, text, self.revision)
    }
}

/// An encoded event, ready to send: its JSON text, shared (cloning a frame copies a
/// pointer, not the text), its type, and its revision tag.
///
/// # Examples
///
/// ```
/// use membound::adapters::ws::{DeliveryClass, Event, EventType};
///
/// let frame = Event::new(EventType::StateDelta).with("delta", serde_json::json!([])).encode();
/// assert_eq!(frame.class(), DeliveryClass::StateDelta);
/// assert_eq!(frame.as_str(), r#"{"delta":[],"type":"STATE_DELTA"}"#); // keys sorted
/// assert_eq!(frame.len(), frame.as_str().len());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    kind: EventType,
    class: DeliveryClass,
    /// An activity event's `messageId`.
    key: Option<Arc<str>>,
    text: Utf8Bytes,
    revision: Option<u64>,
}

impl Frame {
    /// A frame of already encoded JSON `text`: an event of type `kind`, keyed by
    /// `key` (an activity event's `messageId`). The one place frames are built, for
    /// [`Event::encode`] and the typed events' encoding.
    pub(crate) fn from_text(
        kind: EventType,
        class: DeliveryClass,
        key: Option<&str>,
        text: String,
        revision: Option<u64>,
    ) -> Self {
        Self::from_utf8(kind, class, key, Utf8Bytes::from(text), revision)
    }

    /// A frame whose text is already shared UTF-8 (a slice of a prepared
    /// WebSocket frame's buffer, say).
    pub(crate) fn from_utf8(
        kind: EventType,
        class: DeliveryClass,
        key: Option<&str>,
        text: Utf8Bytes,
        revision: Option<u64>,
    ) -> Self {
        Self {
            kind,
            class,
            key: key.map(Arc::from),
            text,
            revision,
        }
    }

    /// The event's type.
    pub fn kind(&self) -> &EventType {
        &self.kind
    }

    /// The frame's delivery class: its type's default, or what the [`ClassMap`] it
    /// was encoded with (or [`with_class`](Self::with_class)) gave it.
    pub fn class(&self) -> DeliveryClass {
        self.class
    }

    /// The frame with the class `classes` overrides for its type, if any (else as
    /// it is).
    #[must_use]
    pub fn classed(mut self, classes: &ClassMap) -> Self {
        if let Some(class) = classes.get(self.kind.as_str()) {
            self.class = class;
        }
        self
    }

    /// The frame with delivery class `class`.
    #[must_use]
    pub fn with_class(mut self, class: DeliveryClass) -> Self {
        self.class = class;
        self
    }

    /// What the frame is about, where its type is keyed: an activity event's
    /// `messageId` (snapshots of different activities do not replace each other).
    pub fn key(&self) -> Option<&str> {
        self.key.as_deref()
    }

    /// The state-store revision the event was tagged with.
    pub fn revision(&self) -> Option<u64> {
        self.revision
    }

    /// The JSON text.
    pub fn as_str(&self) -> &str {
        self.text.as_str()
    }

    /// The JSON text as tungstenite's shared text type (cheap to clone).
    pub fn text(&self) -> &Utf8Bytes {
        &self.text
    }

    /// Length of the JSON text in bytes: what the byte limits count.
    pub fn len(&self) -> usize {
        self.text.len()
    }

    /// Whether the text is empty (never, for an encoded event).
    pub fn is_empty(&self) -> bool {
        self.text.is_empty()
    }

    /// The frame with one more top-level string field, `"<key>":"<value>"`, added
    /// at the end of its object: a channel event's id ([`EVENT_ID_FIELD`](super::EVENT_ID_FIELD)),
    /// stamped without a parse. `key` and `value` are the crate's own (no quote or
    /// backslash to escape); an encoded event is always an object.
    pub(crate) fn stamped(&self, key: &str, value: &str) -> Self {
        Self {
            kind: self.kind.clone(),
            class: self.class,
            key: self.key.clone(),
            text: Utf8Bytes::from(stamp_text(self.as_str(), key, value)),
            revision: self.revision,
        }
    }
}

/// `text` (a JSON object) with `"<key>":"<value>"` added at its end; see
/// [`Frame::stamped`].
pub(crate) fn stamp_text(text: &str, key: &str, value: &str) -> String {
    let parts = stamp_parts(text, key, value);
    let mut out = String::with_capacity(parts.iter().map(|p| p.len()).sum());
    for part in parts {
        out.push_str(part);
    }
    out
}

/// The pieces of `text` stamped with `"<key>":"<value>"`, in order: the object
/// without its closing brace, a comma (unless it was empty), the new member, the
/// brace. What [`stamp_text`] joins, and what a prepared WebSocket frame is filled
/// with (behind its header, in one buffer).
pub(crate) fn stamp_parts<'a>(text: &'a str, key: &'a str, value: &'a str) -> [&'a str; 7] {
    let body = text.strip_suffix('}').unwrap_or(text);
    let sep = if body.trim_end().ends_with('{') {
        ""
    } else {
        ","
    };
    [body, sep, "\"", key, "\":\"", value, "\"}"]
}

#[cfg(test)]
mod stamp_tests {
    use super::*;

    #[test]
    fn a_stamp_adds_one_field_and_keeps_the_json_valid() {
        let frame = Event::new(EventType::RunStarted)
            .with("runId", "r")
            .encode();
        let stamped = frame.stamped("eventId", "a-1");
        let back: serde_json::Value = serde_json::from_str(stamped.as_str()).unwrap();
        assert_eq!(back["eventId"], "a-1");
        assert_eq!(back["runId"], "r");
        assert_eq!(stamped.kind(), frame.kind());
        assert_eq!(stamp_text("{}", "k", "v"), r#"{"k":"v"}"#);
    }
}
