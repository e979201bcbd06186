//! A WebSocket event transport that keeps every connection's memory bounded
//! (feature `ws`; feature `axum` adds an axum adapter).
//!
//! The transport carries [`Event`]s, JSON objects with a `type` field (the AG-UI
//! protocol's event types), between a server and many clients. What it adds to a
//! plain tokio-tungstenite server is a hard bound on what a slow client can cost:
//!
//! - every connection has a bounded outbound queue with byte limits (a hard limit
//!   that the queue never passes, a soft limit that disconnects when held too long), and
//!   tungstenite's own write buffer, unlimited by default, is capped small;
//! - each event type has a [`DeliveryClass`] that says what happens when a
//!   connection falls behind: lossless events are never dropped (the connection is
//!   closed as a slow consumer with [`close_code::SLOW_CONSUMER`] instead), state
//!   deltas are replaced by a fresh snapshot, snapshots are latest-wins, and the rest
//!   are dropped and counted;
//! - an event sent to many connections is encoded once and appended once to the
//!   [`Hub`]'s bounded [`SharedLog`], which every connection reads through its own
//!   cursor: a broadcast costs the same whatever the number of connections, and a
//!   connection's byte limits count its backlog there;
//! - inbound events are size-limited, parsed without panicking, and pass through a
//!   bounded queue to handlers and subscriptions, which are capped per connection and
//!   expire when idle; with [`MalformedPolicy::Raw`], messages that are not events
//!   (binary, other protocols) take the same way to raw handlers, as they arrived;
//! - under memory pressure the queues and the shared log shrink, and at `Critical` new connections are
//!   refused with [`close_code::TRY_AGAIN_LATER`]: a server built with
//!   [`ServerBuilder::memory_manager`] follows the manager's levels, through the
//!   crate's one pressure route ([`SoftCapacity`](crate::capacity::SoftCapacity),
//!   which [`Outbound`], [`Inbound`] and [`Server`] implement).

//!
//! Typed events for all 31 AG-UI 1.0 types are in [`agui`]: they encode to the same
//! [`Frame`]s, and [`agui::validate`] checks an inbound event against the schema
//! (on every connection with [`InboundConfig::strict`]).
//!
//! # Layers
//!
//! Imports inside the module run one way, from the bottom up: the vocabulary
//! (`types`: close codes and reasons, connection ids, the snapshot source), `time`
//! (the deadlines tasks park on), `event`, `agui` (the typed AG-UI events over
//! `event`'s untyped ones) and `config`; then the queues (`outbound`,
//! `inbound`) and the fan-out (`hub`); then the connection core (`conn`); then the
//! `server`, the `client` and the `axum` adapter on top.

// The vocabulary, at the bottom.
pub mod agui;
mod config;
mod event;
mod time;
mod types;

// The queues and the fan-out.
mod activity;
mod engine;
mod hub;
mod inbound;
mod log;
mod outbound;

// The connection core.
mod conn;

// The server, the client and the axum adapter, on top.
#[cfg(feature = "axum")]
pub mod axum;
mod client;
#[cfg(feature = "redis")]
mod redis;
mod server;

pub use client::{backoff_delay, Client, ClientBuilder, ClientMetrics, ClientState, ConnectError};
pub use config::{
    ClientConfig, ConnectionConfig, InboundConfig, LogConfig, MalformedPolicy, QueueConfig,
    ReconnectPolicy, ServerConfig, WsConfigError,
};
pub use conn::{Connection, ConnectionMetrics, Traffic};
pub use engine::{
    check_channel, Channel, Engine, EngineConfig, EngineError, EngineFuture, EngineMetrics, Join,
    MemoryEngine, Published, EVENT_ID_FIELD, MAX_CHANNEL_BYTES,
};
pub use event::{ClassMap, DeliveryClass, Event, EventError, EventType, Frame};
pub use hub::{Broadcast, Hub, HubMetrics};
pub use inbound::{
    EventSubscription, HandlerId, Inbound, InboundClosed, InboundError, InboundMetrics, RawMessage,
    SubscriptionError, SubscriptionId,
};
pub use log::{Backlog, Cursor, LogEntry, LogMetrics, Read, SharedLog, Skipped};
pub use outbound::{ClassMetrics, Next, OfferError, Offered, Outbound, OutboundMetrics};
#[cfg(feature = "redis")]
pub use redis::{RedisConfig, RedisEngine, RedisEngineError};
pub use server::{CloseCounts, ServeError, Server, ServerBuilder, ServerMetrics, RESUME_GAP};
pub use types::{close_code, CloseReason, ConnId, SlowConsumer, SnapshotSource};
