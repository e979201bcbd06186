//! A connection's shared state ([`Core`]) and its public handle ([`Connection`]).

use core::future::Future;
use core::time::Duration;
use std::fmt;
use std::net::SocketAddr;
use std::prelude::rust_2021::*;
// `tokio::select!` expands to `panic!`, which the prelude glob and the crate's
// `no_std` prelude both provide; an explicit import settles which.
#[allow(unused_imports)]
use core::panic;
use std::sync::Arc;

use tokio::sync::{watch, Notify};
use tokio::time::Instant;

use crate::adapters::ws::config::ConnectionConfig;
use crate::adapters::ws::event::{ClassMap, Event, EventType};
use crate::adapters::ws::inbound::{
    EventSubscription, HandlerId, Inbound, InboundError, InboundMetrics, RawMessage,
};
use crate::adapters::ws::outbound::{OfferError, Offered, Outbound, OutboundMetrics};
use crate::adapters::ws::time::later;
use crate::adapters::ws::types::{CloseReason, ConnId, SnapshotSource};
use crate::sync::{AtomicBool, AtomicU64, Ordering};

// ---------------------------------------------------------------------------------
// The connection's shared state and its handle
// ---------------------------------------------------------------------------------

/// Traffic counters of one connection.
#[derive(Debug, Default)]
pub(super) struct Io {
    pub(super) bytes_in: AtomicU64,
    pub(super) frames_in: AtomicU64,
    pub(super) bytes_out: AtomicU64,
    pub(super) frames_out: AtomicU64,
    pub(super) pings_sent: AtomicU64,
    pub(super) pongs_received: AtomicU64,
    pub(super) malformed_in: AtomicU64,
    pub(super) raw_in: AtomicU64,
    pub(super) resyncs_sent: AtomicU64,
    /// The peer's close frame arrived.
    pub(super) peer_closed: AtomicBool,
    /// This side's close frame was sent.
    pub(super) close_sent: AtomicBool,
}

fn read(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

/// The next connection identifier, unique in the process (servers and clients).
pub(crate) fn next_conn_id() -> ConnId {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    // Relaxed: only uniqueness matters.
    ConnId(NEXT.fetch_add(1, Ordering::Relaxed))
}

/// Traffic of one connection, or of a server's connections together.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, crate::metrics::Metrics)]
#[metrics(kind = "ws_traffic")]
#[non_exhaustive]
pub struct Traffic {
    /// Payload bytes received (text and binary messages, pings and pongs).
    #[metric(counter, name = "received", unit = "bytes")]
    pub bytes_in: u64,
    /// Messages received (the fragments of one message count once).
    #[metric(counter, name = "received_messages")]
    pub frames_in: u64,
    /// Event bytes handed to the socket (the JSON texts).
    #[metric(counter, name = "sent", unit = "bytes")]
    pub bytes_out: u64,
    /// Events handed to the socket, resynchronising snapshots included.
    #[metric(counter, name = "sent_events")]
    pub frames_out: u64,
    /// Keepalive pings sent.
    #[metric(counter, name = "sent_pings")]
    pub pings_sent: u64,
    /// Pongs received.
    #[metric(counter, name = "received_pongs")]
    pub pongs_received: u64,
    /// Inbound messages that were not events (malformed JSON, no `type`, binary),
    /// unless raw mode took them.
    #[metric(counter, name = "received_malformed")]
    pub malformed_in: u64,
    /// Inbound messages that were not events and went to the raw handlers
    /// ([`MalformedPolicy::Raw`](crate::adapters::ws::MalformedPolicy::Raw)).
    #[metric(counter, name = "received_raw")]
    pub raw_in: u64,
    /// Snapshots sent to resynchronise after discarded state deltas.
    #[metric(counter, name = "sent_resyncs")]
    pub resyncs_sent: u64,
}

impl Traffic {
    pub(crate) fn add(&mut self, other: &Traffic) {
        self.bytes_in += other.bytes_in;
        self.frames_in += other.frames_in;
        self.bytes_out += other.bytes_out;
        self.frames_out += other.frames_out;
        self.pings_sent += other.pings_sent;
        self.pongs_received += other.pongs_received;
        self.malformed_in += other.malformed_in;
        self.raw_in += other.raw_in;
        self.resyncs_sent += other.resyncs_sent;
    }
}

/// What a connection's task and its handles share.
pub(crate) struct Core {
    pub(super) id: ConnId,
    pub(super) peer: Option<SocketAddr>,
    pub(super) config: ConnectionConfig,
    pub(super) outbound: Arc<Outbound>,
    pub(super) inbound: Arc<Inbound>,
    /// Whether the connection closes its `Inbound` when it ends. A client's inbound
    /// side outlives each connection, so handlers survive a reconnect.
    pub(super) owns_inbound: bool,
    pub(super) snapshots: Option<Arc<dyn SnapshotSource>>,
    /// The delivery class of each event type this connection sends.
    pub(super) classes: Arc<ClassMap>,
    /// A client's: where each received channel event's id is noted.
    pub(super) last_event_id: Option<Arc<LastEventId>>,
    pub(super) io: Io,
    /// When the connection started: the origin of `last_rx`.
    pub(super) epoch: Instant,
    /// Nanoseconds after `epoch` at which something last arrived.
    pub(super) last_rx: AtomicU64,
    /// Set to stop draining: the writer abandons what is queued and sends its close
    /// frame.
    pub(super) forced: Flag,
    /// `Some(reason)` once the connection's task has ended.
    pub(super) done: watch::Sender<Option<CloseReason>>,
}

impl fmt::Debug for Core {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("id", &self.id)
            .field("peer", &self.peer)
            .field("closed", &self.done.borrow().clone())
            .finish_non_exhaustive()
    }
}

/// How to build a connection's core.
pub(crate) struct CoreParts {
    pub(crate) id: ConnId,
    pub(crate) peer: Option<SocketAddr>,
    pub(crate) config: ConnectionConfig,
    pub(crate) outbound: Arc<Outbound>,
    pub(crate) inbound: Arc<Inbound>,
    pub(crate) owns_inbound: bool,
    pub(crate) snapshots: Option<Arc<dyn SnapshotSource>>,
    pub(crate) classes: Arc<ClassMap>,
    pub(crate) last_event_id: Option<Arc<LastEventId>>,
}

/// The id of the last channel event a client received
/// ([`EVENT_ID_FIELD`](super::super::EVENT_ID_FIELD)), which it names to resume
/// when it reconnects.
#[derive(Debug, Default)]
pub(crate) struct LastEventId(std::sync::Mutex<Option<String>>);

impl LastEventId {
    pub(crate) fn set(&self, id: &str) {
        let mut last = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match &mut *last {
            Some(held) => {
                held.clear();
                held.push_str(id);
            }
            None => *last = Some(id.to_owned()),
        }
    }

    pub(crate) fn get(&self) -> Option<String> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

impl Core {
    pub(crate) fn new(parts: CoreParts) -> Arc<Self> {
        Arc::new(Self {
            id: parts.id,
            peer: parts.peer,
            config: parts.config,
            outbound: parts.outbound,
            inbound: parts.inbound,
            owns_inbound: parts.owns_inbound,
            snapshots: parts.snapshots,
            classes: parts.classes,
            last_event_id: parts.last_event_id,
            io: Io::default(),
            epoch: Instant::now(),
            last_rx: AtomicU64::new(0),
            forced: Flag::default(),
            done: watch::Sender::new(None),
        })
    }

    pub(crate) fn outbound(&self) -> &Arc<Outbound> {
        &self.outbound
    }

    pub(crate) fn inbound(&self) -> &Arc<Inbound> {
        &self.inbound
    }

    /// Records that something arrived.
    pub(super) fn touch(&self) {
        let nanos = u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
        // Relaxed: only the connection's own task reads it, for a timeout.
        self.last_rx.fetch_max(nanos, Ordering::Relaxed);
    }

    /// When the idle timeout runs out if nothing more arrives.
    pub(super) fn idle_deadline(&self) -> Instant {
        let last = Duration::from_nanos(self.last_rx.load(Ordering::Relaxed));
        later(self.epoch, last.saturating_add(self.config.idle_timeout))
    }

    /// Stops draining: the writer drops what is queued and closes now.
    pub(crate) fn force_close(&self) {
        self.forced.set();
    }

    pub(super) async fn forced(&self) {
        self.forced.wait().await;
    }

    /// Marks the connection as ended (idempotent; the first reason stays).
    pub(crate) fn finish(&self, reason: CloseReason) {
        self.done.send_if_modified(|done| {
            if done.is_none() {
                *done = Some(reason);
                true
            } else {
                false
            }
        });
    }

    /// The reason the connection ended with, from the queue (first reason wins).
    pub(crate) fn final_reason(&self) -> CloseReason {
        self.outbound
            .close_reason()
            .unwrap_or_else(|| CloseReason::Lost("connection task ended".into()))
    }

    pub(crate) fn id(&self) -> ConnId {
        self.id
    }

    pub(crate) fn traffic(&self) -> Traffic {
        Traffic {
            bytes_in: read(&self.io.bytes_in),
            frames_in: read(&self.io.frames_in),
            bytes_out: read(&self.io.bytes_out),
            frames_out: read(&self.io.frames_out),
            pings_sent: read(&self.io.pings_sent),
            pongs_received: read(&self.io.pongs_received),
            malformed_in: read(&self.io.malformed_in),
            raw_in: read(&self.io.raw_in),
            resyncs_sent: read(&self.io.resyncs_sent),
        }
    }

    pub(crate) fn metrics(&self) -> ConnectionMetrics {
        ConnectionMetrics {
            id: self.id,
            peer: self.peer,
            traffic: self.traffic(),
            close_handshake: self.io.peer_closed.load(Ordering::Relaxed)
                && (self.io.close_sent.load(Ordering::Relaxed)
                    || matches!(
                        self.done.borrow().as_ref(),
                        Some(CloseReason::Remote { .. })
                    )),
            outbound: self.outbound.metrics(),
            inbound: self.inbound.metrics(),
            close_reason: self.done.borrow().clone(),
        }
    }
}

/// One connection's traffic and queues, and why it ended.
#[derive(Clone, Debug, crate::metrics::Metrics)]
#[metrics(kind = "ws_connection")]
#[non_exhaustive]
pub struct ConnectionMetrics {
    /// The connection.
    #[metric(skip)]
    pub id: ConnId,
    /// The peer's address, when known.
    #[metric(skip)]
    pub peer: Option<SocketAddr>,
    /// Bytes and messages in and out.
    #[metric(nested)]
    pub traffic: Traffic,
    /// Whether the close handshake completed: both sides' close frames went out (the
    /// peer's reply to ours, or tungstenite's reply to the peer's).
    #[metric(gauge)]
    pub close_handshake: bool,
    /// The outbound queue's own metrics.
    #[metric(nested)]
    pub outbound: OutboundMetrics,
    /// The inbound side's metrics.
    #[metric(nested(prefix = "inbound_"))]
    pub inbound: InboundMetrics,
    /// Why the connection ended; `None` while it is open.
    #[metric(skip)]
    pub close_reason: Option<CloseReason>,
}

/// A handle to one connection, on the server's or the client's side: cheap to clone,
/// valid after the connection ended (sends then fail with `Closed`).
///
/// Events sent through it go to this connection only; [`Server::broadcast`] sends
/// to every connection.
///
/// [`Server::broadcast`]: crate::adapters::ws::Server::broadcast
#[derive(Clone, Debug)]
pub struct Connection {
    core: Arc<Core>,
}

impl Connection {
    pub(crate) fn from_core(core: Arc<Core>) -> Self {
        Self { core }
    }

    pub(crate) fn core(&self) -> &Arc<Core> {
        &self.core
    }

    /// The connection's identifier, unique in this process.
    pub fn id(&self) -> ConnId {
        self.core.id
    }

    /// The peer's address (`None` when the socket was handed over without one, as
    /// with axum unless `ConnectInfo` is used).
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.core.peer
    }

    /// Queues `event` for this connection. A lossless event that finds the queue
    /// full waits up to the queue's lossless timeout; then the connection is closed
    /// as a slow consumer and the event is handed back. Each send consumes a unit of
    /// the task's tokio budget, so a task that sends in a loop never starves the
    /// connection's writer.
    ///
    /// # Errors
    ///
    /// [`OfferError`] with the encoded event: the connection is closed, or was closed
    /// as a slow consumer while waiting.
    pub async fn send(&self, event: &Event) -> Result<Offered, OfferError> {
        self.core
            .outbound
            .send(event.encode_with(&self.core.classes))
            .await
    }

    /// Queues `event` without waiting (a full queue applies the event's class
    /// policy; a lossless event that finds no room is handed back).
    ///
    /// # Errors
    ///
    /// [`OfferError::Full`] for a lossless event without room; `Closed` when the
    /// connection is closed.
    pub fn try_send(&self, event: &Event) -> Result<Offered, OfferError> {
        self.core
            .outbound
            .offer(event.encode_with(&self.core.classes))
    }

    /// Calls `handler` with every inbound event of type `kind`.
    ///
    /// # Errors
    ///
    /// [`InboundError`] when the connection has as many handlers as allowed, or its
    /// inbound side is closed.
    pub fn on<F, Fut>(&self, kind: EventType, handler: F) -> Result<HandlerId, InboundError>
    where
        F: Fn(Event) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.core.inbound.on(kind, handler)
    }

    /// Calls `handler` with every inbound event.
    ///
    /// # Errors
    ///
    /// As [`on`](Self::on).
    pub fn on_any<F, Fut>(&self, handler: F) -> Result<HandlerId, InboundError>
    where
        F: Fn(Event) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.core.inbound.on_any(handler)
    }

    /// Calls `handler` with every inbound message that is not an event, as it
    /// arrived, when the connection is in raw mode
    /// ([`MalformedPolicy::Raw`](crate::adapters::ws::MalformedPolicy::Raw)); see [`Inbound::on_raw`].
    ///
    /// # Errors
    ///
    /// As [`on`](Self::on).
    pub fn on_raw<F, Fut>(&self, handler: F) -> Result<HandlerId, InboundError>
    where
        F: Fn(RawMessage) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.core.inbound.on_raw(handler)
    }

    /// Removes a handler; `false` if it was not registered.
    pub fn remove_handler(&self, id: HandlerId) -> bool {
        self.core.inbound.remove_handler(id)
    }

    /// Subscribes to inbound events of the given types (all types when empty).
    ///
    /// # Errors
    ///
    /// [`InboundError`] when the connection has as many subscriptions as allowed, or
    /// its inbound side is closed.
    pub fn subscribe(
        &self,
        kinds: impl IntoIterator<Item = EventType>,
    ) -> Result<EventSubscription, InboundError> {
        self.core.inbound.subscribe(kinds)
    }

    /// Closes the connection. With [`CloseReason::Normal`] what is queued is sent
    /// first; the close frame carries `reason`'s code. The first reason given to a
    /// connection wins.
    pub fn close(&self, reason: CloseReason) {
        self.core.outbound.close(reason);
    }

    /// Waits until the connection has ended, and says why.
    pub async fn closed(&self) -> CloseReason {
        let mut rx = self.core.done.subscribe();
        let reason = match rx.wait_for(Option::is_some).await {
            Ok(reason) => reason.clone(),
            // The sender lives in `core`, which `self` keeps alive.
            Err(_) => None,
        };
        reason.unwrap_or_else(|| self.core.final_reason())
    }

    /// Whether the connection has ended.
    pub fn is_closed(&self) -> bool {
        self.core.done.borrow().is_some()
    }

    /// The connection's traffic, queues and close reason.
    pub fn metrics(&self) -> ConnectionMetrics {
        self.core.metrics()
    }

    /// Events the connection has not taken yet: its private queue's and its
    /// backlog in the hub's shared log
    /// ([`Outbound::backlog`](crate::adapters::ws::Outbound::backlog)).
    pub fn queued(&self) -> usize {
        usize::try_from(self.core.outbound.backlog().events).unwrap_or(usize::MAX)
    }
}

/// A one-shot event flag: set once, awaited by any number of tasks.
#[derive(Default)]
pub(crate) struct Flag {
    set: AtomicBool,
    notify: Notify,
}

impl Flag {
    pub(crate) fn set(&self) {
        self.set.store(true, Ordering::Release);
        self.notify.notify_waiters();
    }

    pub(crate) fn is_set(&self) -> bool {
        self.set.load(Ordering::Acquire)
    }

    pub(crate) async fn wait(&self) {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.is_set() {
                return;
            }
            notified.await;
        }
    }
}
