//! A WebSocket event transport that keeps every connection's memory bounded
//! (feature `ws`; feature `axum` adds an axum adapter).
//!
//! The transport carries [`Event`]s, JSON objects with a `type` field (the AG-UI
//! protocol's event types), between a server and many clients. What it adds to a
//! plain tokio-tungstenite server is a hard bound on what a slow client can cost:
//!
//! - every connection has a bounded outbound queue with byte limits (a hard limit
//!   that disconnects at once, a soft limit that disconnects when held too long), and
//!   tungstenite's own write buffer, unlimited by default, is capped small;
//! - each event type has a [`DeliveryClass`] that says what happens when a
//!   connection falls behind: lossless events are never dropped (the connection is
//!   closed as a slow consumer with [`close_code::SLOW_CONSUMER`] instead), state
//!   deltas are replaced by a fresh snapshot, snapshots are latest-wins, and the rest
//!   are dropped and counted;
//! - an event sent to many connections is encoded once and shared ([`Frame`]);
//! - inbound events are size-limited, parsed without panicking, and pass through a
//!   bounded queue to handlers and subscriptions, which are capped per connection and
//!   expire when idle;
//! - under memory pressure the queues shrink, and at `Critical` new connections are
//!   refused with [`close_code::TRY_AGAIN_LATER`].

mod config;
mod event;

pub use config::{
    ClientConfig, ConnectionConfig, DropPolicy, InboundConfig, MalformedPolicy, QueueConfig,
    ReconnectPolicy, ServerConfig, WsConfigError,
};
pub use event::{DeliveryClass, Event, EventError, EventType, Frame};

/// The close codes the transport sends (RFC 6455 §7.4, and one private code).
pub mod close_code {
    /// Normal closure.
    pub const NORMAL: u16 = 1000;
    /// The server is shutting down.
    pub const GOING_AWAY: u16 = 1001;
    /// Protocol error.
    pub const PROTOCOL_ERROR: u16 = 1002;
    /// An inbound text that is not an event (with
    /// [`MalformedPolicy::Close`](super::MalformedPolicy::Close)).
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
