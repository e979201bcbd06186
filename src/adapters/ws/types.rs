//! The transport's shared vocabulary: close codes, close reasons, connection ids
//! and the snapshot source. Everything else in the module builds on it; it imports
//! only the event type.

use std::fmt;
use std::prelude::rust_2021::*;

use super::event::Event;
#[cfg(feature = "state")]
use super::event::EventType;

/// The close codes the transport sends (RFC 6455 §7.4, and one private code).
pub mod close_code {
    /// Normal closure.
    pub const NORMAL: u16 = 1000;
    /// The server is shutting down.
    pub const GOING_AWAY: u16 = 1001;
    /// Protocol error.
    pub const PROTOCOL_ERROR: u16 = 1002;
    /// An inbound text that is not an event (with
    /// [`MalformedPolicy::Close`](crate::adapters::ws::MalformedPolicy::Close)).
    pub const INVALID_PAYLOAD: u16 = 1007;
    /// Policy violation.
    pub const POLICY_VIOLATION: u16 = 1008;
    /// An inbound message over the size limit.
    pub const MESSAGE_TOO_BIG: u16 = 1009;
    /// An internal error.
    pub const INTERNAL_ERROR: u16 = 1011;
    /// The server refuses a connection for now: at its connection cap, or under
    /// critical memory pressure.
    pub const TRY_AGAIN_LATER: u16 = 1013;
    /// Private code: the peer did not read fast enough (a lossless event waited too
    /// long, or the outbound byte limits were broken).
    pub const SLOW_CONSUMER: u16 = 4008;
}

/// Where a connection that missed state deltas gets a fresh `STATE_SNAPSHOT`.
///
/// The transport asks for a snapshot when it has discarded a connection's queued
/// deltas; it sends the snapshot, then only deltas tagged with a later revision
/// ([`Event::with_revision`]). Untagged deltas queued before the snapshot was taken
/// are skipped too.
pub trait SnapshotSource: Send + Sync + 'static {
    /// The current state as a `STATE_SNAPSHOT` event, tagged with its revision.
    /// `None` when no snapshot can be produced; the connection is then closed as a
    /// slow consumer, since it cannot be resynchronised.
    fn snapshot(&self) -> Option<Event>;
}

/// The state store as a snapshot source: `{"type":"STATE_SNAPSHOT","snapshot":<document>}`
/// tagged with the store's revision.
#[cfg(feature = "state")]
impl<C: crate::clock::Clock + Send + Sync + 'static> SnapshotSource
    for crate::adapters::state::StateStore<C>
{
    fn snapshot(&self) -> Option<Event> {
        let (revision, document) = crate::adapters::state::StateStore::snapshot(self);
        Some(
            Event::new(EventType::StateSnapshot)
                .with("snapshot", document)
                .with_revision(revision.0),
        )
    }
}

/// Why the transport ended a slow consumer's connection (close code
/// [`close_code::SLOW_CONSUMER`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SlowConsumer {
    /// A lossless event waited for room longer than the queue's lossless timeout.
    LosslessTimeout,
    /// A frame could never fit under the hard byte limit: a lossless event larger
    /// than the limit, or a snapshot whose replacement would still break it.
    HardLimit,
    /// The queued bytes stayed above the soft limit for longer than allowed.
    SoftLimit,
    /// Queued state deltas had to be discarded and no snapshot could be had to
    /// resynchronise the connection.
    NoSnapshot,
    /// The connection's cursor fell behind the shared log's tail: events it had not
    /// read were evicted, and among them a lossless event or a snapshot that no
    /// resync makes up for.
    Lagged,
}

impl SlowConsumer {
    /// A short description, used as the close frame's reason.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::LosslessTimeout => "slow consumer: lossless event timed out",
            Self::HardLimit => "slow consumer: hard output limit",
            Self::SoftLimit => "slow consumer: soft output limit held too long",
            Self::NoSnapshot => "slow consumer: state resync unavailable",
            Self::Lagged => "slow consumer: fell behind the shared log",
        }
    }
}

/// Why a connection ended (or is ending): the close code sent, and whether what was
/// queued is delivered first.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseReason {
    /// Closed by this side's program ([`close_code::NORMAL`]); queued events are
    /// delivered first.
    Normal,
    /// The server is shutting down ([`close_code::GOING_AWAY`]); queued events are
    /// delivered first, within the shutdown timeout.
    Shutdown,
    /// The peer did not keep up ([`close_code::SLOW_CONSUMER`]); queued events are
    /// discarded.
    SlowConsumer(SlowConsumer),
    /// Nothing arrived within the idle timeout ([`close_code::GOING_AWAY`]).
    IdleTimeout,
    /// An inbound text was not an event ([`close_code::INVALID_PAYLOAD`]).
    InvalidPayload(String),
    /// An inbound message or frame was over the size limit
    /// ([`close_code::MESSAGE_TOO_BIG`]).
    MessageTooBig,
    /// The peer broke the WebSocket protocol ([`close_code::PROTOCOL_ERROR`]);
    /// events already queued (replies to its earlier, valid messages) are delivered
    /// first, within the close timeout.
    Protocol(String),
    /// Refused at once: connection cap or critical memory pressure
    /// ([`close_code::TRY_AGAIN_LATER`]).
    Refused,
    /// The peer sent a close frame with this code and reason.
    Remote {
        /// The peer's close code (1005 when its frame had none).
        code: u16,
        /// The peer's reason text.
        reason: String,
    },
    /// The connection was lost without a close handshake (I/O error, write
    /// timeout, the peer vanished).
    Lost(String),
}

impl CloseReason {
    /// The close code this side sends for this reason (for `Remote`, the peer's code;
    /// for `Lost`, 1006, which is never sent on the wire).
    pub fn code(&self) -> u16 {
        match self {
            Self::Normal => close_code::NORMAL,
            Self::Shutdown | Self::IdleTimeout => close_code::GOING_AWAY,
            Self::SlowConsumer(_) => close_code::SLOW_CONSUMER,
            Self::InvalidPayload(_) => close_code::INVALID_PAYLOAD,
            Self::MessageTooBig => close_code::MESSAGE_TOO_BIG,
            Self::Protocol(_) => close_code::PROTOCOL_ERROR,
            Self::Refused => close_code::TRY_AGAIN_LATER,
            Self::Remote { code, .. } => *code,
            Self::Lost(_) => 1006,
        }
    }

    /// Whether events already queued are delivered before the close frame
    /// (`Normal`, `Shutdown` and `Protocol`); otherwise they are discarded.
    pub fn drains(&self) -> bool {
        matches!(self, Self::Normal | Self::Shutdown | Self::Protocol(_))
    }

    /// A stable name for this reason, for a transport that has no close codes: the
    /// `code` of the `RUN_ERROR` event a Server-Sent Events stream ends with
    /// (`"SLOW_CONSUMER"` for [`SlowConsumer`](Self::SlowConsumer)). `None` when the
    /// stream just ends ([`Normal`](Self::Normal)) or nothing can be sent
    /// ([`Remote`](Self::Remote), [`Lost`](Self::Lost)).
    ///
    /// # Examples
    ///
    /// ```
    /// use membound::adapters::ws::{CloseReason, SlowConsumer};
    ///
    /// let slow = CloseReason::SlowConsumer(SlowConsumer::HardLimit);
    /// assert_eq!(slow.error_code(), Some("SLOW_CONSUMER"));
    /// assert_eq!(CloseReason::Normal.error_code(), None);
    /// ```
    pub fn error_code(&self) -> Option<&'static str> {
        Some(match self {
            Self::Normal | Self::Remote { .. } | Self::Lost(_) => return None,
            Self::Shutdown => "SHUTDOWN",
            Self::SlowConsumer(_) => "SLOW_CONSUMER",
            Self::IdleTimeout => "IDLE_TIMEOUT",
            Self::InvalidPayload(_) => "INVALID_PAYLOAD",
            Self::MessageTooBig => "MESSAGE_TOO_BIG",
            Self::Protocol(_) => "PROTOCOL_ERROR",
            Self::Refused => "TRY_AGAIN_LATER",
        })
    }

    /// The close frame's reason text (at most 123 bytes, as RFC 6455 allows).
    pub fn reason(&self) -> String {
        let text: String = match self {
            Self::Normal => String::new(),
            Self::Shutdown => "server shutting down".into(),
            Self::SlowConsumer(why) => why.as_str().into(),
            Self::IdleTimeout => "idle timeout".into(),
            Self::InvalidPayload(why) => why.clone(),
            Self::MessageTooBig => "message too big".into(),
            Self::Protocol(why) => why.clone(),
            Self::Refused => "try again later".into(),
            Self::Remote { reason, .. } => reason.clone(),
            Self::Lost(why) => why.clone(),
        };
        truncate_utf8(text, 123)
    }
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let reason = self.reason();
        if reason.is_empty() {
            write!(f, "closed ({})", self.code())
        } else {
            write!(f, "closed ({}): {reason}", self.code())
        }
    }
}

/// `text` cut to at most `max` bytes on a character boundary.
fn truncate_utf8(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

/// A connection's identifier, unique within a process.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "conn-{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_reasons_map_to_codes_and_short_texts() {
        assert_eq!(
            CloseReason::SlowConsumer(SlowConsumer::HardLimit).code(),
            close_code::SLOW_CONSUMER
        );
        assert!(CloseReason::Shutdown.drains());
        assert!(CloseReason::Protocol("reserved bits".into()).drains());
        assert!(!CloseReason::SlowConsumer(SlowConsumer::LosslessTimeout).drains());
        let long = CloseReason::InvalidPayload("é".repeat(100));
        assert!(long.reason().len() <= 123);
        assert_eq!(CloseReason::Refused.code(), 1013);
    }
}
