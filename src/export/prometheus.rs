//! Prometheus / OpenMetrics export of every component's metrics, through the
//! Prometheus project's [`prometheus_client`] crate.
//!
//! An [`Exporter`] is one [`Collector`] in a [`Registry`]. Components are added to it
//! under a name, with the function that reads their snapshot; at every scrape it
//! reads each snapshot and walks it through the crate's one metrics trait,
//! [`Metrics`]: the exporter knows no component's fields, so a new component needs no
//! code here. Nothing is counted twice: the exporter keeps no counters, so the
//! components' hot paths pay nothing for being exported. A scrape costs the
//! snapshots plus the encoding (which allocates: the label values and the text), off
//! every hot path.
//!
//! # Names, types and labels
//!
//! Every family is called `membound_<kind>_<name>`, where `<kind>` is the snapshot's
//! [`Metrics::KIND`] and `<name>` the [`Metric`](crate::metrics::Metric)'s name, and
//! each sample carries the name the component was added under in a label named
//! after the kind: a ring added as `"events"` gives
//! `membound_ring_pushed_total{ring="events"}`. Prometheus conventions apply:
//! monotonic counts are counters (the encoder appends `_total`), levels and sizes are
//! gauges, byte and second figures carry their unit in the name (and an OpenMetrics
//! `# UNIT` line), fractions end in `_ratio`. A field split by cause or level is one
//! family with one more label (`membound_ring_dropped_total{ring="events",
//! cause="drop_oldest"}`). Families of one kind are grouped across all its
//! components, so the exposition has each family once, as the formats require.
//!
//! Every kind, with how to add it (`add` is [`Exporter::add`]):
//!
//! | kind (label) | component | snapshot | added with |
//! |---|---|---|---|
//! | `ring` | [`Ring`](crate::ring::Ring), [`StaticRing`](crate::ring::StaticRing) | [`RingMetrics`](crate::ring::RingMetrics) | `add(name, &ring, RingCore::metrics)` |
//! | `table` | [`TtlTable`](crate::table::TtlTable), [`StaticTtlTable`](crate::table::StaticTtlTable) | [`TableMetrics`](crate::table::TableMetrics) | `add(name, &table, TtlTableCore::metrics)` |
//! | `backpressure` | [`Backpressure`](crate::backpressure::Backpressure) | [`BackpressureMetrics`](crate::backpressure::BackpressureMetrics) | `add(name, &channel, Backpressure::metrics)` |
//! | `pool` | [`Pool`](crate::pool::Pool) | [`PoolMetrics`](crate::pool::PoolMetrics) | `add(name, &pool, Pool::metrics)` |
//! | `snapshot_vec` | [`SnapshotVec`](crate::slice::SnapshotVec) | [`SnapshotVecMetrics`](crate::slice::SnapshotVecMetrics) | `add(name, &vec, SnapshotVec::metrics)` |
//! | `heap` | [`TrackingAllocator`](crate::heap::TrackingAllocator), any [`HeapUsage`](crate::heap::HeapUsage) | [`HeapStats`](crate::heap::HeapStats) | `add(name, &GLOBAL, TrackingAllocator::stats)` |
//! | `monitor` | [`MemoryManager`](crate::monitor::MemoryManager) | [`MonitorMetrics`](crate::monitor::MonitorMetrics), with its latest [`MemorySample`](crate::os::MemorySample) | `add(name, &manager, MemoryManager::metrics)` |
//! | `sampler` | [`Sampler`], sampled at each scrape | a fresh [`MemorySample`](crate::os::MemorySample) and the sampler's error count | [`Exporter::add_sampler`] |
//! | `cleanup` | [`CleanupManager`] | each task's [`TaskMetrics`](crate::schedule::TaskMetrics) as `task_*`, label `task`, durations in seconds | [`Exporter::add_cleanup`] |
//! | `task` | one task of a [`Schedule`](crate::schedule::Schedule) (a schedule is owned by the thread that ticks it) | [`TaskMetrics`](crate::schedule::TaskMetrics), durations in ticks | nested in `cleanup` |
//! | `budget` | [`MemoryManager`](crate::monitor::MemoryManager)'s registered components | [`Budget`](crate::monitor::Budget): per component `bytes`, `max_bytes`, `capacity`, `max_capacity` with labels `component` and `kind`, and the totals | `add(name, &manager, MemoryManager::budget)` |
#![cfg_attr(
    feature = "state",
    doc = "| `state` | [`StateStore`] | [`StateMetrics`](crate::adapters::state::StateMetrics) and its [`SubscriptionMetrics`](crate::adapters::state::subscription::SubscriptionMetrics) | [`Exporter::add_state`] |"
)]
#![cfg_attr(
    feature = "ws",
    doc = "| `ws_server` | [`Server`] | [`ServerMetrics`](crate::adapters::ws::ServerMetrics), its hub's as `broadcasts` and its shared log's as `log_*`; per connection, [`ConnectionMetrics`](crate::adapters::ws::ConnectionMetrics) as `conn_*`, label `conn` | `add(name, &server, Server::metrics)`; per connection [`Exporter::add_ws_server_per_connection`] |"
)]
#![cfg_attr(
    feature = "ws",
    doc = "| `ws_client` | [`Client`](crate::adapters::ws::Client) | [`ClientMetrics`](crate::adapters::ws::ClientMetrics), its connection as `conn_*` | `add(name, &client, Client::metrics)` |"
)]
#![cfg_attr(
    feature = "ws",
    doc = "| `ws_connection` | [`Connection`](crate::adapters::ws::Connection) | [`ConnectionMetrics`](crate::adapters::ws::ConnectionMetrics), its inbound side as `inbound_*` | `add(name, &conn, Connection::metrics)` |"
)]
#![cfg_attr(
    feature = "ws",
    doc = "| `ws_hub` | [`Hub`](crate::adapters::ws::Hub) | [`HubMetrics`](crate::adapters::ws::HubMetrics) | `add(name, &hub, Hub::metrics)` |"
)]
#![cfg_attr(
    feature = "ws",
    doc = "| `ws_outbound` | [`Outbound`](crate::adapters::ws::Outbound) | [`OutboundMetrics`](crate::adapters::ws::OutboundMetrics), each class's with label `class` | `add(name, &queue, Outbound::metrics)` |"
)]
#![cfg_attr(
    feature = "ws",
    doc = "| `ws_inbound` | [`Inbound`](crate::adapters::ws::Inbound) | [`InboundMetrics`](crate::adapters::ws::InboundMetrics) | `add(name, &inbound, Inbound::metrics)` |"
)]
#![cfg_attr(
    feature = "ws",
    doc = "| `ws_class` | one delivery class of an outbound queue | [`ClassMetrics`](crate::adapters::ws::ClassMetrics) | nested in `ws_outbound`, label `class` |"
)]
#![cfg_attr(
    feature = "ws",
    doc = "| `ws_log` | [`SharedLog`](crate::adapters::ws::SharedLog) | [`LogMetrics`](crate::adapters::ws::LogMetrics) | `add(name, &log, SharedLog::metrics)` |"
)]
#![cfg_attr(
    feature = "ws",
    doc = "| `ws_engine` | an [`Engine`](crate::adapters::ws::Engine) (in memory, or Redis) | [`EngineMetrics`](crate::adapters::ws::EngineMetrics) | `add(name, &engine, |e| e.metrics())`; nested in `ws_server` as `engine_*` |"
)]
//!
//! The SPSC channel has no metrics snapshot (its two ends are owned by their threads;
//! the producer's [`dropped`](crate::ring::spsc::Producer::dropped) is its only
//! counter), and a bare [`PressureGauge`](crate::pressure::PressureGauge) is plain
//! data owned by one thread: export the [`MemoryManager`](crate::monitor::MemoryManager) that drives it.
//!
//! A component of your own is exported the same way: implement [`Metrics`] for its
//! snapshot (see the [`metrics`](crate::metrics) module) and `add` it with the
//! function that reads the snapshot.
//!
//! # How the exporter holds components
//!
//! A component is passed as a [`Handle`]: `&Arc<C>` becomes a [`Weak`] reference, so
//! the registry never keeps a component alive; once the last `Arc` is dropped, the
//! component's samples disappear from the next scrape and its entry is pruned (its
//! name can then be used again). A `&'static C` (a `static` ring, the global
//! allocator) is held as such and exported for the life of the program. A
//! [`Sampler`] needs `&mut` to sample, so the exporter owns it.
//!
//! # Serving
//!
//! [`MetricsServer`] serves `GET /metrics` from a [`std::net::TcpListener`] on a
//! thread of its own; [`serve_connection`] answers one connection (for programs with
//! their own accept loop).
//!
//! # Examples
//!
//! ```
//! use std::sync::Arc;
//! use membound::export::prometheus::Exporter;
//! use membound::ring::Ring;
//! use prometheus_client::{encoding::text::encode, registry::Registry};
//!
//! let mut registry = Registry::default();
//! let exporter = Exporter::register(&mut registry);
//!
//! let events = Arc::new(Ring::new(4)?);
//! exporter.add("events", &events, Ring::metrics)?;
//! for i in 0..6 {
//!     events.push(i)?; // DropOldest: the last two pushes drop the two oldest
//! }
//!
//! let mut text = String::new();
//! encode(&mut text, &registry)?;
//! assert!(text.contains("membound_ring_pushed_total{ring=\"events\"} 6\n"));
//! assert!(text.contains("membound_ring_dropped_total{ring=\"events\",cause=\"drop_oldest\"} 2\n"));
//! assert!(text.contains("# TYPE membound_ring_len gauge\n"));
//!
//! drop(events); // gone from the next scrape
//! text.clear();
//! encode(&mut text, &registry)?;
//! assert!(!text.contains("membound_ring"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#[cfg(test)]
mod fields;
mod readers;
mod scrape;
mod server;

pub use server::{serve_connection, MetricsServer};

use std::boxed::Box;
use std::fmt;
use std::string::{String, ToString};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::vec::Vec;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::registry::Registry;

#[cfg(feature = "state")]
use crate::adapters::state::StateStore;
#[cfg(feature = "ws")]
use crate::adapters::ws::Server;
use crate::cleanup::CleanupManager;
#[cfg(feature = "state")]
use crate::clock::Clock;
use crate::metrics::Metrics;
use crate::os::Sampler;

use scrape::Scrape;

/// Why a component could not be added to an [`Exporter`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ExportError {
    /// The name is empty: a series needs a non-empty label value to be told apart.
    EmptyName {
        /// The kind of component (`"ring"`, `"table"`, ...).
        kind: &'static str,
    },
    /// A live component of the same kind already has this name; two would export the
    /// same series twice.
    DuplicateName {
        /// The kind of component.
        kind: &'static str,
        /// The name.
        name: String,
    },
}

impl fmt::Display for ExportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::EmptyName { kind } => write!(f, "a {kind} needs a non-empty name to be exported"),
            Self::DuplicateName { kind, name } => {
                write!(f, "a {kind} named {name:?} is already exported")
            }
        }
    }
}

impl std::error::Error for ExportError {}

/// How an [`Exporter`] holds a component: weakly for an `Arc`, or a `'static`
/// reference. Built by `From`: pass `&arc` or `&STATIC`.
pub struct Handle<C: ?Sized + 'static>(Held<C>);

enum Held<C: ?Sized + 'static> {
    /// Exported while some `Arc` keeps the component alive.
    Weak(Weak<C>),
    /// Exported for the life of the program.
    Static(&'static C),
    /// Owned by the exporter (a [`Sampler`], which needs a lock around it).
    Owned(Arc<C>),
}

impl<C: ?Sized> Handle<C> {
    /// Runs `f` on the component, or returns `None` if it was dropped.
    fn with<R>(&self, f: impl FnOnce(&C) -> R) -> Option<R> {
        match &self.0 {
            Held::Weak(weak) => weak.upgrade().map(|c| f(&c)),
            Held::Static(c) => Some(f(c)),
            Held::Owned(c) => Some(f(c)),
        }
    }

    fn is_alive(&self) -> bool {
        match &self.0 {
            Held::Weak(weak) => weak.strong_count() > 0,
            Held::Static(_) | Held::Owned(_) => true,
        }
    }
}

impl<C: ?Sized> From<&Arc<C>> for Handle<C> {
    /// Holds the component weakly: the exporter does not keep it alive.
    fn from(arc: &Arc<C>) -> Self {
        Self(Held::Weak(Arc::downgrade(arc)))
    }
}

impl<C: ?Sized> From<Weak<C>> for Handle<C> {
    fn from(weak: Weak<C>) -> Self {
        Self(Held::Weak(weak))
    }
}

impl<C: ?Sized> From<&'static C> for Handle<C> {
    fn from(component: &'static C) -> Self {
        Self(Held::Static(component))
    }
}

impl<C: ?Sized> fmt::Debug for Handle<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.0 {
            Held::Weak(_) => "Weak",
            Held::Static(_) => "Static",
            Held::Owned(_) => "Owned",
        };
        f.debug_struct("Handle")
            .field("held", &kind)
            .field("alive", &self.is_alive())
            .finish()
    }
}

/// A registered component, type-erased.
trait Source: Send + Sync {
    fn kind(&self) -> &'static str;
    fn name(&self) -> &str;
    fn is_alive(&self) -> bool;
    /// Takes the snapshot and writes its samples; nothing if the component is gone.
    fn collect(&self, scrape: &mut Scrape);
}

struct Entry<C: ?Sized + 'static, M> {
    name: String,
    handle: Handle<C>,
    read: fn(&C) -> M,
}

impl<C, M> Source for Entry<C, M>
where
    C: ?Sized + Send + Sync + 'static,
    M: Metrics,
{
    fn kind(&self) -> &'static str {
        M::KIND
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn is_alive(&self) -> bool {
        self.handle.is_alive()
    }

    fn collect(&self, scrape: &mut Scrape) {
        if let Some(snapshot) = self.handle.with(self.read) {
            snapshot.visit(&mut scrape.component(M::KIND, &self.name));
        }
    }
}

type Sources = Mutex<Vec<Arc<dyn Source>>>;

fn lock(sources: &Sources) -> MutexGuard<'_, Vec<Arc<dyn Source>>> {
    // Every critical section leaves the list consistent (push, retain, clone).
    sources.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Exports the metrics of the components added to it, read at scrape time; see the
/// [module docs](self).
///
/// Cheap to clone: clones share one list of components and one collector, so the
/// exporter can be handed to wherever components are built.
#[derive(Clone, Default)]
pub struct Exporter {
    sources: Arc<Sources>,
}

impl fmt::Debug for Exporter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sources = lock(&self.sources);
        f.debug_list()
            .entries(sources.iter().map(|s| (s.kind(), s.name(), s.is_alive())))
            .finish()
    }
}

/// The [`Collector`] an [`Exporter`] puts in a [`Registry`].
struct ExporterCollector(Arc<Sources>);

impl fmt::Debug for ExporterCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ExporterCollector").finish_non_exhaustive()
    }
}

impl Collector for ExporterCollector {
    fn encode(&self, encoder: DescriptorEncoder<'_>) -> fmt::Result {
        // Snapshots are taken outside the list's lock: a manager's `metrics()` takes
        // its own locks, and adding a component must not wait for a scrape.
        let sources = {
            let mut sources = lock(&self.0);
            sources.retain(|s| s.is_alive());
            sources.clone()
        };
        let mut scrape = Scrape::default();
        for source in &sources {
            source.collect(&mut scrape);
        }
        scrape.encode(encoder)
    }
}

impl Exporter {
    /// An exporter with no components, not yet in any registry (see
    /// [`register_in`](Self::register_in)).
    pub fn new() -> Self {
        Self::default()
    }

    /// A new exporter, registered in `registry` as one collector.
    pub fn register(registry: &mut Registry) -> Self {
        let exporter = Self::new();
        exporter.register_in(registry);
        exporter
    }

    /// Registers this exporter's collector in `registry` (possibly a sub-registry
    /// with a prefix or labels of its own). Register it in one registry once: twice
    /// would expose every family twice.
    pub fn register_in(&self, registry: &mut Registry) {
        registry.register_collector(Box::new(ExporterCollector(self.sources.clone())));
    }

    /// Exports `component` under `name`: at every scrape, `read` takes its snapshot,
    /// which is exported as `membound_<M::KIND>_*{<M::KIND>="<name>"}` (see the
    /// [module docs](self) for every kind). `read` is usually the component's
    /// `metrics` method; any `fn(&C) -> M` will do, so a snapshot assembled from
    /// several public calls is a closure that makes no captures.
    ///
    /// # Errors
    ///
    /// [`ExportError::EmptyName`], or [`ExportError::DuplicateName`] if a live
    /// component of the same kind is already exported under `name`.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::alloc::System;
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// use membound::clock::ManualClock;
    /// use membound::export::prometheus::Exporter;
    /// use membound::heap::TrackingAllocator;
    /// use membound::table::{TtlTable, TtlTableCore};
    /// use prometheus_client::{encoding::text::encode, registry::Registry};
    ///
    /// #[global_allocator]
    /// static GLOBAL: TrackingAllocator<System> = TrackingAllocator::new(System);
    ///
    /// fn main() -> Result<(), Box<dyn std::error::Error>> {
    ///     let mut registry = Registry::default();
    ///     let exporter = Exporter::register(&mut registry);
    ///     exporter.add("global", &GLOBAL, TrackingAllocator::stats)?;
    ///     let clock = ManualClock::default();
    ///     let sessions = Arc::new(TtlTable::<u64, u64, _>::new(64, Duration::from_secs(1), clock)?);
    ///     exporter.add("sessions", &sessions, TtlTableCore::metrics)?;
    ///
    ///     let mut text = String::new();
    ///     encode(&mut text, &registry)?;
    ///     assert!(text.contains("# TYPE membound_heap_live_bytes gauge\n"));
    ///     assert!(text.contains("membound_heap_allocations_total{heap=\"global\"} "));
    ///     assert!(text.contains("membound_table_capacity{table=\"sessions\"} 64\n"));
    ///     Ok(())
    /// }
    /// ```
    pub fn add<C, M>(
        &self,
        name: &str,
        component: impl Into<Handle<C>>,
        read: fn(&C) -> M,
    ) -> Result<(), ExportError>
    where
        C: ?Sized + Send + Sync + 'static,
        M: Metrics + 'static,
    {
        let kind = M::KIND;
        if name.is_empty() {
            return Err(ExportError::EmptyName { kind });
        }
        let mut sources = lock(&self.sources);
        sources.retain(|s| s.is_alive());
        if sources.iter().any(|s| s.kind() == kind && s.name() == name) {
            return Err(ExportError::DuplicateName {
                kind,
                name: name.to_string(),
            });
        }
        sources.push(Arc::new(Entry {
            name: name.to_string(),
            handle: component.into(),
            read,
        }));
        Ok(())
    }

    /// Exports what `sampler` reads, sampled afresh at every scrape, as
    /// `membound_sampler_*{sampler="<name>"}`: the sample's figures and the
    /// sampler's running error count. The exporter owns the sampler (it needs `&mut`
    /// to sample); a sampling step allocates nothing.
    ///
    /// # Errors
    ///
    /// As [`add`](Self::add).
    pub fn add_sampler(&self, name: &str, sampler: Sampler) -> Result<(), ExportError> {
        let owned = Handle(Held::Owned(Arc::new(Mutex::new(sampler))));
        self.add(name, owned, readers::sampler)
    }

    /// Exports the task metrics of a cleanup manager as
    /// `membound_cleanup_*{cleanup="<name>",task="<task>"}`, as of each task's last
    /// completed run (a scrape never waits for a run), with the durations in
    /// seconds.
    ///
    /// # Errors
    ///
    /// As [`add`](Self::add).
    pub fn add_cleanup(
        &self,
        name: &str,
        manager: impl Into<Handle<CleanupManager>>,
    ) -> Result<(), ExportError> {
        self.add(name, manager, readers::cleanup)
    }

    /// Exports a state store's [`StateMetrics`] and its subscriptions'
    /// [`SubscriptionMetrics`] as `membound_state_*{state="<name>"}`.
    ///
    /// [`StateMetrics`]: crate::adapters::state::StateMetrics
    /// [`SubscriptionMetrics`]: crate::adapters::state::subscription::SubscriptionMetrics
    ///
    /// # Errors
    ///
    /// As [`add`](Self::add).
    #[cfg(feature = "state")]
    pub fn add_state<C: Clock + Send + Sync + 'static>(
        &self,
        name: &str,
        store: impl Into<Handle<StateStore<C>>>,
    ) -> Result<(), ExportError> {
        self.add(name, store, |s| (s.metrics(), s.subscription_metrics()))
    }

    /// Exports a WebSocket server's totals, as `add(name, &server, Server::metrics)`
    /// does, and each open connection's own series as
    /// `membound_ws_server_conn_*{ws_server="<name>",conn="<id>"}`.
    ///
    /// # Per-connection series and cardinality
    ///
    /// Every open connection adds 10 series, labelled `ws_server="<name>",conn="<id>"`
    /// (the [`ConnId`] number), taken from its [`ConnectionMetrics`]:
    ///
    /// | family | type | what |
    /// |---|---|---|
    /// | `membound_ws_server_conn_queued_events` | gauge | events in its private queue (direct sends) now |
    /// | `membound_ws_server_conn_queued_bytes` | gauge | their bytes |
    /// | `membound_ws_server_conn_log_backlog_events` | gauge | broadcast events in the shared log it has not taken yet |
    /// | `membound_ws_server_conn_log_backlog_bytes` | gauge | their bytes |
    /// | `membound_ws_server_conn_sent_events_total` | counter | events written to it |
    /// | `membound_ws_server_conn_sent_bytes_total` | counter | event bytes written to it |
    /// | `membound_ws_server_conn_dropped_total` | counter, label `class` (4) | frames its queue dropped |
    ///
    /// That is what lets an operator find *the* slow client, but it is paid for in
    /// series: a server at `max_connections` 10 000 exposes 100 000 of them per
    /// scrape, and as identifiers are never reused, every connection that comes and
    /// goes leaves a new set of series behind in the monitoring system's index
    /// (churn) even though the exporter drops them when the connection ends. The
    /// scrape also reads each connection's full snapshot, after the totals (the two
    /// are not one atomic snapshot: a connection that ends in between is in one and
    /// not the other). So the totals alone are the plain `add`: they answer "is
    /// anyone falling behind?" (queued bytes, drops, slow-consumer closes) with a
    /// fixed number of series. Use this for servers with few, long-lived
    /// connections, or for debugging.
    ///
    /// The server is held weakly: once the last `Arc` is dropped, its series are
    /// gone from the next scrape. A scrape takes the server's registry lock briefly
    /// and each open connection's queue lock, off the hot paths; it never waits for
    /// the runtime, so a [`MetricsServer`] thread can scrape a server that runs on
    /// tokio.
    ///
    /// [`ConnId`]: crate::adapters::ws::ConnId
    /// [`ConnectionMetrics`]: crate::adapters::ws::ConnectionMetrics
    ///
    /// # Errors
    ///
    /// As [`add`](Self::add).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use membound::adapters::ws::{Event, EventType, Server, ServerConfig};
    /// use membound::export::prometheus::Exporter;
    /// use prometheus_client::{encoding::text::encode, registry::Registry};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let (connected, mut on_connected) = tokio::sync::mpsc::unbounded_channel();
    /// let server = Arc::new(
    ///     Server::builder(ServerConfig::default())
    ///         .on_connect(move |conn| { let _ = connected.send(conn.id()); })
    ///         .bind()
    ///         .await?,
    /// );
    /// let mut registry = Registry::default();
    /// let exporter = Exporter::register(&mut registry);
    /// exporter.add_ws_server_per_connection("events", &server)?;
    ///
    /// let url = format!("ws://{}", server.local_addr());
    /// let (socket, _) = tokio_tungstenite::connect_async(url).await.expect("connect");
    /// let id = on_connected.recv().await.expect("admitted");
    /// // Not taken yet: the event is in the connection's log backlog at the scrape.
    /// server.broadcast(&Event::new(EventType::RunStarted)).await;
    ///
    /// let mut text = String::new();
    /// encode(&mut text, &registry)?;
    /// assert!(text.contains("membound_ws_server_connections{ws_server=\"events\"} 1\n"));
    /// let conn = format!("{{ws_server=\"events\",conn=\"{}\"}} 1\n", id.0);
    /// assert!(text.contains(&format!("membound_ws_server_conn_log_backlog_events{conn}")));
    ///
    /// drop(socket);
    /// server.shutdown().await;
    /// drop(server); // gone from the next scrape
    /// text.clear();
    /// encode(&mut text, &registry)?;
    /// assert!(!text.contains("membound_ws_server"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    #[cfg(feature = "ws")]
    pub fn add_ws_server_per_connection(
        &self,
        name: &str,
        server: impl Into<Handle<Server>>,
    ) -> Result<(), ExportError> {
        self.add(name, server, readers::ws_server_per_connection)
    }
}
