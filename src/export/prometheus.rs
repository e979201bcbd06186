//! Prometheus / OpenMetrics export of every component's metrics, through the
//! Prometheus project's [`prometheus_client`] crate.
//!
//! An [`Exporter`] is one [`Collector`] in a [`Registry`]. Components are added to it
//! under a name; at every scrape it calls each component's `metrics()` (or `stats()`)
//! snapshot and turns the fields into samples. Nothing is counted twice: the
//! exporter keeps no counters, so the components' hot paths pay nothing for being
//! exported. A scrape costs the snapshots plus the encoding (which allocates: the
//! label values and the text), off every hot path.
//!
//! # Names, types and labels
//!
//! Every family is called `membound_<kind>_<field>`, where `<kind>` is the kind of
//! component (`ring`, `table`, `monitor`, `sampler`, `cleanup`, `heap`), and each
//! sample carries the name the component was added under in a label named after the
//! kind: a ring added as `"events"` gives
//! `membound_ring_pushed_total{ring="events"}`. Prometheus conventions apply:
//! monotonic counts are counters (the encoder appends `_total`), levels and sizes are
//! gauges, byte and second figures carry their unit in the name (and an OpenMetrics
//! `# UNIT` line), fractions end in `_ratio`. A field split by cause or level is one
//! family with one more label (`membound_ring_dropped_total{ring="events",
//! cause="drop_oldest"}`). Families of one kind are grouped across all its
//! components, so the exposition has each family once, as the formats require.
//!
//! | kind (label) | component | method |
//! |---|---|---|
//! | `ring` | [`Ring`](crate::ring::Ring), [`StaticRing`](crate::ring::StaticRing) ([`RingMetrics`]) | [`Exporter::add_ring`] |
//! | `table` | [`TtlTable`](crate::table::TtlTable), [`StaticTtlTable`](crate::table::StaticTtlTable) ([`TableMetrics`]) | [`Exporter::add_table`] |
//! | `monitor` | [`MemoryManager`] ([`MonitorMetrics`], with its latest [`MemorySample`]) | [`Exporter::add_monitor`] |
//! | `sampler` | [`Sampler`], sampled at each scrape | [`Exporter::add_sampler`] |
//! | `cleanup` | [`CleanupManager`] (each task's [`TaskMetrics`], label `task`) | [`Exporter::add_cleanup`] |
//! | `heap` | [`TrackingAllocator`](crate::heap::TrackingAllocator) or any [`HeapUsage`] ([`HeapStats`]) | [`Exporter::add_heap`] |
#![cfg_attr(
    feature = "ws",
    doc = "| `ws_server` | [`Server`] ([`ServerMetrics`]; per connection, if asked, [`ConnectionMetrics`], label `conn`) | [`Exporter::add_ws_server`], [`Exporter::add_ws_server_with`] |"
)]
//!
//! The SPSC channel has no metrics snapshot (its two ends are owned by their threads;
//! the producer's [`dropped`](crate::ring::spsc::Producer::dropped) is its only
//! counter), and a bare [`PressureGauge`](crate::pressure::PressureGauge) is plain
//! data owned by one thread: export the [`MemoryManager`] that drives it.
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
//! exporter.add_ring("events", &events)?;
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

mod server;

pub use server::{serve_connection, MetricsServer};

use std::borrow::Cow;
use std::boxed::Box;
use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasher, Hash};
use std::string::{String, ToString};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;
use std::vec::Vec;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

#[cfg(feature = "state")]
use crate::adapters::state::{subscription::SubscriptionMetrics, StateMetrics, StateStore};
#[cfg(feature = "ws")]
use crate::adapters::ws::{ConnectionMetrics, DeliveryClass, Server, ServerMetrics};
use crate::backpressure::{Backpressure, BackpressureMetrics};
use crate::cleanup::{CleanupManager, TaskFailure};
use crate::clock::{Clock, MonotonicClock};
use crate::heap::{HeapStats, HeapUsage};
use crate::monitor::{MemoryManager, MonitorMetrics};
use crate::os::{MemorySample, Sampler};
use crate::pool::{Pool, PoolMetrics};
use crate::pressure::PressureLevel;
use crate::ring::{RingCore, RingMetrics, Storage as RingStorage};
use crate::schedule::TaskMetrics;
use crate::slice::{SnapshotVec, SnapshotVecMetrics};
use crate::table::{EvictionHook, Storage as TableStorage, TableMetrics, TtlTableCore};

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

/// Counter or gauge; the only types the snapshots need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Type {
    Counter,
    Gauge,
}

/// The unit of a family, appended to its name by the encoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BaseUnit {
    Bytes,
    Seconds,
}

static BYTES: Unit = Unit::Bytes;
static SECONDS: Unit = Unit::Seconds;

impl BaseUnit {
    fn unit(self) -> &'static Unit {
        match self {
            Self::Bytes => &BYTES,
            Self::Seconds => &SECONDS,
        }
    }
}

/// One metric family of a component kind: its name after `membound_<kind>_` (without
/// unit or `_total`), help, type and unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Family {
    name: &'static str,
    help: &'static str,
    ty: Type,
    unit: Option<BaseUnit>,
}

impl Family {
    /// A monotonic count; exposed as `<name>_total`.
    pub(crate) const fn counter(name: &'static str, help: &'static str) -> Self {
        Self {
            name,
            help,
            ty: Type::Counter,
            unit: None,
        }
    }

    /// A value that goes up and down.
    pub(crate) const fn gauge(name: &'static str, help: &'static str) -> Self {
        Self {
            name,
            help,
            ty: Type::Gauge,
            unit: None,
        }
    }

    /// Measured in bytes: the name gains `_bytes`.
    pub(crate) const fn bytes(mut self) -> Self {
        self.unit = Some(BaseUnit::Bytes);
        self
    }

    /// Measured in seconds: the name gains `_seconds`.
    pub(crate) const fn seconds(mut self) -> Self {
        self.unit = Some(BaseUnit::Seconds);
        self
    }
}

/// A sample's value: integers stay exact, fractions and seconds are floats.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Value {
    Int(u64),
    Float(f64),
}

impl From<u64> for Value {
    fn from(v: u64) -> Self {
        Self::Int(v)
    }
}

impl From<usize> for Value {
    fn from(v: usize) -> Self {
        Self::Int(v as u64)
    }
}

impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Self::Int(u64::from(v))
    }
}

impl From<f64> for Value {
    fn from(v: f64) -> Self {
        Self::Float(v)
    }
}

impl From<Duration> for Value {
    /// In seconds.
    fn from(v: Duration) -> Self {
        Self::Float(v.as_secs_f64())
    }
}

type Label = (&'static str, Cow<'static, str>);

/// One series of a family: its labels (the instance label first) and value.
#[derive(Debug)]
struct Series {
    labels: Vec<Label>,
    value: Value,
}

/// Everything one scrape collected, grouped by family in first-seen order.
#[derive(Debug, Default)]
struct Scrape {
    families: Vec<(&'static str, Family, Vec<Series>)>,
    index: HashMap<(&'static str, &'static str), usize>,
}

impl Scrape {
    fn push(&mut self, kind: &'static str, family: Family, series: Series) {
        let families = &mut self.families;
        let i = *self.index.entry((kind, family.name)).or_insert_with(|| {
            families.push((kind, family, Vec::new()));
            families.len() - 1
        });
        let (_, first, list) = &mut self.families[i];
        // One name, one meaning: a family described two ways is a bug in an `Export`
        // impl, caught by the tests; in release the first description wins.
        debug_assert_eq!(
            *first, family,
            "family membound_{kind}_{} redefined",
            family.name
        );
        list.push(series);
    }

    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> fmt::Result {
        for (kind, family, series) in &self.families {
            let name = std::format!("membound_{kind}_{}", family.name);
            let metric_type = match family.ty {
                Type::Counter => MetricType::Counter,
                Type::Gauge => MetricType::Gauge,
            };
            let unit = family.unit.map(BaseUnit::unit);
            let mut metric = encoder.encode_descriptor(&name, family.help, unit, metric_type)?;
            for s in series {
                let sample = metric.encode_family(&s.labels)?;
                match (family.ty, s.value) {
                    (Type::Counter, Value::Int(v)) => ConstCounter::new(v).encode(sample)?,
                    (Type::Counter, Value::Float(v)) => ConstCounter::new(v).encode(sample)?,
                    (Type::Gauge, Value::Int(v)) => ConstGauge::new(v).encode(sample)?,
                    (Type::Gauge, Value::Float(v)) => ConstGauge::new(v).encode(sample)?,
                }
            }
        }
        Ok(())
    }
}

/// Where an [`Export`] impl writes the samples of one component.
pub(crate) struct Samples<'a> {
    scrape: &'a mut Scrape,
    kind: &'static str,
    instance: &'a str,
}

impl Samples<'_> {
    /// One sample of `family`, labelled with the component's name only.
    pub(crate) fn sample(&mut self, family: Family, value: impl Into<Value>) {
        self.push(family, None, value.into());
    }

    /// One sample of `family` with one more label (a cause, a level, a task).
    pub(crate) fn sample_with(
        &mut self,
        family: Family,
        label: (&'static str, impl Into<Cow<'static, str>>),
        value: impl Into<Value>,
    ) {
        self.push(family, Some((label.0, label.1.into())), value.into());
    }

    /// One sample of `family` with several more labels, in this order (a connection,
    /// then a class).
    #[cfg_attr(not(feature = "ws"), allow(dead_code))]
    pub(crate) fn sample_labels<const N: usize>(
        &mut self,
        family: Family,
        labels: [Label; N],
        value: impl Into<Value>,
    ) {
        self.push(family, labels, value.into());
    }

    /// One sample of `family` if the snapshot has the figure; none otherwise (an
    /// absent figure is not a zero).
    pub(crate) fn sample_opt(&mut self, family: Family, value: Option<impl Into<Value>>) {
        if let Some(value) = value {
            self.sample(family, value);
        }
    }

    /// One counter per row: `(name, help, value)`.
    pub(crate) fn counters(&mut self, rows: &[(&'static str, &'static str, u64)]) {
        for &(name, help, value) in rows {
            self.sample(Family::counter(name, help), value);
        }
    }

    /// One gauge per row: `(name, help, value)`.
    pub(crate) fn gauges(&mut self, rows: &[(&'static str, &'static str, u64)]) {
        for &(name, help, value) in rows {
            self.sample(Family::gauge(name, help), value);
        }
    }

    fn push(&mut self, family: Family, extra: impl IntoIterator<Item = Label>, value: Value) {
        let extra = extra.into_iter();
        let mut labels = Vec::with_capacity(1 + extra.size_hint().0);
        labels.push((self.kind, Cow::Owned(self.instance.to_string())));
        labels.extend(extra);
        self.scrape
            .push(self.kind, family, Series { labels, value });
    }
}

/// A component's metrics snapshot, as Prometheus samples.
///
/// # Adding a component kind
///
/// A component with a `metrics()` snapshot is exported in three steps, all in this
/// file:
///
/// 1. `impl Export for FooMetrics`: set `KIND` (the name segment and instance label,
///    e.g. `"pool"`) and write `export`: plain `u64` fields as rows of
///    [`Samples::counters`] / [`Samples::gauges`] (`("hits", "Gets served from the
///    pool.", self.hits)`, in a `#[rustfmt::skip]` table); others one [`Family`] at
///    a time with [`Samples::sample`] (`.bytes()` / `.seconds()` for units, `f64`
///    and `Duration` values), [`Samples::sample_with`] for a field split by one
///    more label (a cause, a level), [`Samples::sample_labels`] for several (a
///    connection and a class), [`Samples::sample_opt`] for a figure the
///    snapshot may lack. Counters are named without `_total` and units without
///    their suffix: the encoder appends both.
/// 2. An `add_foo` method on [`Exporter`] that calls `self.add(name, foo.into(),
///    Foo::metrics)`: any `fn(&C) -> M` is a reader, so a snapshot assembled from
///    several public calls is a private function (see `cleanup_snapshot`), and a
///    component that needs `&mut` is owned behind a `Mutex` (see `add_sampler`).
/// 3. A check of its names, types and values in `tests/prometheus.rs`.
pub(crate) trait Export {
    /// The kind of component: the second segment of every family name and the name of
    /// the label that holds the component's name.
    const KIND: &'static str;

    /// Writes one sample per field (none for a field the snapshot does not have).
    fn export(&self, out: &mut Samples<'_>);
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
    M: Export,
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
            snapshot.export(&mut Samples {
                scrape,
                kind: M::KIND,
                instance: &self.name,
            });
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

    /// Adds a component of kind `M::KIND`, read with `read` at every scrape.
    fn add<C, M>(&self, name: &str, handle: Handle<C>, read: fn(&C) -> M) -> Result<(), ExportError>
    where
        C: ?Sized + Send + Sync + 'static,
        M: Export + 'static,
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
            handle,
            read,
        }));
        Ok(())
    }

    /// Exports a ring's [`RingMetrics`] as `membound_ring_*{ring="<name>"}`.
    ///
    /// # Errors
    ///
    /// [`ExportError::EmptyName`], or [`ExportError::DuplicateName`] if a live ring
    /// is already exported under `name`.
    pub fn add_ring<T, S>(
        &self,
        name: &str,
        ring: impl Into<Handle<RingCore<T, S>>>,
    ) -> Result<(), ExportError>
    where
        RingCore<T, S>: Send + Sync,
        T: 'static,
        S: RingStorage<T> + 'static,
    {
        self.add(name, ring.into(), RingCore::metrics)
    }

    /// Exports a TTL table's [`TableMetrics`] as `membound_table_*{table="<name>"}`.
    ///
    /// # Errors
    ///
    /// As [`add_ring`](Self::add_ring).
    pub fn add_table<K, V, C, S, H, St>(
        &self,
        name: &str,
        table: impl Into<Handle<TtlTableCore<K, V, C, S, H, St>>>,
    ) -> Result<(), ExportError>
    where
        TtlTableCore<K, V, C, S, H, St>: Send + Sync,
        K: Hash + Eq + 'static,
        V: 'static,
        C: Clock + 'static,
        S: BuildHasher + 'static,
        H: EvictionHook<K, V> + 'static,
        St: TableStorage<K, V> + 'static,
    {
        self.add(name, table.into(), TtlTableCore::metrics)
    }

    /// Exports a memory manager's [`MonitorMetrics`], with the figures of its
    /// latest sample, as `membound_monitor_*{monitor="<name>"}`.
    ///
    /// # Errors
    ///
    /// As [`add_ring`](Self::add_ring).
    pub fn add_monitor(
        &self,
        name: &str,
        manager: impl Into<Handle<MemoryManager>>,
    ) -> Result<(), ExportError> {
        self.add(name, manager.into(), MemoryManager::metrics)
    }

    /// Exports what `sampler` reads, sampled afresh at every scrape, as
    /// `membound_sampler_*{sampler="<name>"}`. The exporter owns the sampler (it
    /// needs `&mut` to sample); a sampling step allocates nothing.
    ///
    /// # Errors
    ///
    /// As [`add_ring`](Self::add_ring).
    pub fn add_sampler(&self, name: &str, sampler: Sampler) -> Result<(), ExportError> {
        let owned = Handle(Held::Owned(Arc::new(Mutex::new(sampler))));
        self.add(name, owned, sampler_reading)
    }

    /// Exports the task metrics of a cleanup manager as
    /// `membound_cleanup_*{cleanup="<name>",task="<task>"}`, as of each task's last
    /// completed run (a scrape never waits for a run).
    ///
    /// # Errors
    ///
    /// As [`add_ring`](Self::add_ring).
    pub fn add_cleanup(
        &self,
        name: &str,
        manager: impl Into<Handle<CleanupManager>>,
    ) -> Result<(), ExportError> {
        self.add(name, manager.into(), cleanup_snapshot)
    }

    /// Exports a heap's [`HeapStats`] as `membound_heap_*{heap="<name>"}`: usually
    /// the global [`TrackingAllocator`](crate::heap::TrackingAllocator), passed as
    /// `&GLOBAL`.
    ///
    /// # Errors
    ///
    /// As [`add_ring`](Self::add_ring).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::alloc::System;
    /// use membound::export::prometheus::Exporter;
    /// use membound::heap::TrackingAllocator;
    /// use prometheus_client::{encoding::text::encode, registry::Registry};
    ///
    /// #[global_allocator]
    /// static GLOBAL: TrackingAllocator<System> = TrackingAllocator::new(System);
    ///
    /// fn main() -> Result<(), Box<dyn std::error::Error>> {
    ///     let mut registry = Registry::default();
    ///     Exporter::register(&mut registry).add_heap("global", &GLOBAL)?;
    ///     let mut text = String::new();
    ///     encode(&mut text, &registry)?;
    ///     assert!(text.contains("# TYPE membound_heap_live_bytes gauge\n"));
    ///     assert!(text.contains("membound_heap_allocations_total{heap=\"global\"} "));
    ///     Ok(())
    /// }
    /// ```
    pub fn add_heap<H>(&self, name: &str, heap: impl Into<Handle<H>>) -> Result<(), ExportError>
    where
        H: HeapUsage + Send + ?Sized + 'static,
    {
        self.add(name, heap.into(), H::heap_stats)
    }

    /// Exports a backpressure channel's [`BackpressureMetrics`] as
    /// `membound_backpressure_*{backpressure="<name>"}`.
    ///
    /// # Errors
    ///
    /// As [`add_ring`](Self::add_ring).
    pub fn add_backpressure<T: Send + 'static>(
        &self,
        name: &str,
        channel: impl Into<Handle<Backpressure<T>>>,
    ) -> Result<(), ExportError> {
        self.add(name, channel.into(), Backpressure::metrics)
    }

    /// Exports an object pool's [`PoolMetrics`] as `membound_pool_*{pool="<name>"}`.
    ///
    /// # Errors
    ///
    /// As [`add_ring`](Self::add_ring).
    pub fn add_pool<T: Send + 'static, F: Send + Sync + 'static>(
        &self,
        name: &str,
        pool: impl Into<Handle<Pool<T, F>>>,
    ) -> Result<(), ExportError> {
        self.add(name, pool.into(), Pool::metrics)
    }

    /// Exports a snapshot vector's [`SnapshotVecMetrics`] as
    /// `membound_snapshot_vec_*{snapshot_vec="<name>"}`.
    ///
    /// # Errors
    ///
    /// As [`add_ring`](Self::add_ring).
    pub fn add_snapshot_vec<T: Send + Sync + 'static>(
        &self,
        name: &str,
        vec: impl Into<Handle<SnapshotVec<T>>>,
    ) -> Result<(), ExportError> {
        self.add(name, vec.into(), SnapshotVec::metrics)
    }

    /// Exports a state store's [`StateMetrics`] and its subscriptions'
    /// [`SubscriptionMetrics`] as `membound_state_*{state="<name>"}`.
    ///
    /// # Errors
    ///
    /// As [`add_ring`](Self::add_ring).
    #[cfg(feature = "state")]
    pub fn add_state<C: Clock + Send + Sync + 'static>(
        &self,
        name: &str,
        store: impl Into<Handle<StateStore<C>>>,
    ) -> Result<(), ExportError> {
        self.add(name, store.into(), state_snapshot)
    }

    /// Exports a WebSocket server's totals ([`ServerMetrics`]) as
    /// `membound_ws_server_*{ws_server="<name>"}`: connections, refusals by cause,
    /// traffic, queued events and bytes, closed connections by reason, the fan-out's
    /// drops by delivery class, and the pressure level. No series per connection;
    /// for those, see [`add_ws_server_with`](Self::add_ws_server_with).
    ///
    /// The server is held weakly: once the last `Arc` is dropped, its series are
    /// gone from the next scrape. A scrape takes the server's registry lock briefly
    /// and each open connection's queue lock twice (its length and its bytes), off
    /// the hot paths; it never waits for the runtime, so a [`MetricsServer`] thread
    /// can scrape a server that runs on tokio.
    ///
    /// # Errors
    ///
    /// As [`add_ring`](Self::add_ring).
    #[cfg(feature = "ws")]
    pub fn add_ws_server(
        &self,
        name: &str,
        server: impl Into<Handle<Server>>,
    ) -> Result<(), ExportError> {
        self.add_ws_server_with(name, server, WsExport::default())
    }

    /// [`add_ws_server`](Self::add_ws_server) with options: with
    /// [`WsExport::with_per_connection`], each open connection also gets its own
    /// series, `membound_ws_server_conn_*{ws_server="<name>",conn="<id>"}` (see
    /// [`WsExport`] for the families and what they cost).
    ///
    /// # Errors
    ///
    /// As [`add_ring`](Self::add_ring).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use membound::adapters::ws::{Event, EventType, Server, ServerConfig};
    /// use membound::export::prometheus::{Exporter, WsExport};
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
    /// let options = WsExport::default().with_per_connection(true);
    /// exporter.add_ws_server_with("events", &server, options)?;
    ///
    /// let url = format!("ws://{}", server.local_addr());
    /// let (socket, _) = tokio_tungstenite::connect_async(url).await.expect("connect");
    /// let id = on_connected.recv().await.expect("admitted");
    /// // Not read yet: the event is still queued when the scrape runs.
    /// server.broadcast(&Event::new(EventType::RunStarted)).await;
    ///
    /// let mut text = String::new();
    /// encode(&mut text, &registry)?;
    /// assert!(text.contains("membound_ws_server_connections{ws_server=\"events\"} 1\n"));
    /// let conn = format!("{{ws_server=\"events\",conn=\"{}\"}} 1\n", id.0);
    /// assert!(text.contains(&format!("membound_ws_server_conn_queued_events{conn}")));
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
    pub fn add_ws_server_with(
        &self,
        name: &str,
        server: impl Into<Handle<Server>>,
        options: WsExport,
    ) -> Result<(), ExportError> {
        let read: fn(&Server) -> WsServerSnapshot = if options.per_connection {
            ws_server_with_connections
        } else {
            ws_server_totals
        };
        self.add(name, server.into(), read)
    }
}

/// What [`Exporter::add_ws_server_with`] exports of a WebSocket server, beyond its
/// totals.
///
/// # Per-connection series and cardinality
///
/// With [`per_connection`](Self::per_connection) on, every open connection adds
/// 8 series, labelled `ws_server="<name>",conn="<id>"` (the [`ConnId`] number):
///
/// | family | type | what |
/// |---|---|---|
/// | `membound_ws_server_conn_queued_events` | gauge | events queued for it now |
/// | `membound_ws_server_conn_queued_bytes` | gauge | bytes queued for it now |
/// | `membound_ws_server_conn_sent_events_total` | counter | events written to it |
/// | `membound_ws_server_conn_sent_bytes_total` | counter | event bytes written to it |
/// | `membound_ws_server_conn_dropped_total` | counter, label `class` (4) | frames its queue dropped |
///
/// That is what lets an operator find *the* slow client, but it is paid for in
/// series: a server at `max_connections` 10 000 exposes 80 000 of them per scrape,
/// and as identifiers are never reused, every connection that comes and goes
/// leaves a new set of series behind in the monitoring system's index (churn) even
/// though the exporter drops them when the connection ends. The scrape also reads
/// each connection's full snapshot, after the totals (the two are not one atomic
/// snapshot: a connection that ends in between is in one and not the other). So
/// it is off by default: the totals answer "is anyone falling behind?" (queued
/// bytes, drops, slow-consumer closes) with a fixed number of series. Turn it on
/// for servers with few, long-lived connections, or for debugging.
///
/// [`ConnId`]: crate::adapters::ws::ConnId
#[cfg(feature = "ws")]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct WsExport {
    /// Series per open connection as well as the totals (default `false`).
    pub per_connection: bool,
}

#[cfg(feature = "ws")]
impl WsExport {
    /// The totals only (the default).
    pub const fn new() -> Self {
        Self {
            per_connection: false,
        }
    }

    /// Exports (or not) series per open connection; see [the cost](Self#per-connection-series-and-cardinality).
    pub const fn with_per_connection(mut self, per_connection: bool) -> Self {
        self.per_connection = per_connection;
        self
    }
}

/// What the exporter reads from a WebSocket server: its totals, and the metrics
/// of its open connections if they are exported.
#[cfg(feature = "ws")]
struct WsServerSnapshot {
    totals: ServerMetrics,
    connections: Vec<ConnectionMetrics>,
}

#[cfg(feature = "ws")]
fn ws_server_totals(server: &Server) -> WsServerSnapshot {
    WsServerSnapshot {
        totals: server.metrics(),
        connections: Vec::new(),
    }
}

#[cfg(feature = "ws")]
fn ws_server_with_connections(server: &Server) -> WsServerSnapshot {
    WsServerSnapshot {
        totals: server.metrics(),
        connections: server.connection_metrics(),
    }
}

#[cfg(feature = "ws")]
impl Export for WsServerSnapshot {
    const KIND: &'static str = "ws_server";

    fn export(&self, out: &mut Samples<'_>) {
        let (m, hub) = (&self.totals, &self.totals.hub);
        #[rustfmt::skip]
        let counters = [
            ("accepted", "Connections admitted.", m.accepted),
            ("handshake_failures", "TCP connections whose WebSocket handshake failed or timed out.", m.handshake_failures),
            ("handshakes_refused", "TCP connections closed before the handshake because max_pending_handshakes were under way.", m.refused_handshakes),
            ("accept_errors", "Errors from the listening socket's accept.", m.accept_errors),
            ("received_messages", "Messages received (fragments of one message count once).", m.traffic.frames_in),
            ("received_malformed", "Inbound messages that were not events.", m.traffic.malformed_in),
            ("received_raw", "Inbound messages that were not events, taken by raw mode.", m.traffic.raw_in),
            ("received_pongs", "Pongs received.", m.traffic.pongs_received),
            ("sent_events", "Events written, resynchronising snapshots included.", m.traffic.frames_out),
            ("sent_pings", "Keepalive pings sent.", m.traffic.pings_sent),
            ("sent_resyncs", "Snapshots sent to resynchronise connections that missed state deltas.", m.traffic.resyncs_sent),
            ("broadcasts", "Events broadcast.", hub.events),
            ("broadcast_queued", "Frames broadcasts queued (one per connection that took the event).", hub.frames_queued),
            ("broadcast_replaced", "Queued snapshots that broadcast snapshots replaced.", hub.replaced),
            ("broadcast_resyncs", "Queues a broadcast state delta overflowed (marked for a resync).", hub.resyncs),
            ("broadcast_closed", "Queues that did not take a broadcast event because they were closed.", hub.closed),
            ("slow_consumer_closes", "Connections broadcasts closed as slow consumers (lossless timeout or hard byte limit).", hub.slow_consumer_closes),
        ];
        out.counters(&counters);
        let received = Family::counter(
            "received",
            "Payload bytes received (messages, pings, pongs).",
        );
        out.sample(received.bytes(), m.traffic.bytes_in);
        let sent = Family::counter("sent", "Event bytes written (the JSON texts).");
        out.sample(sent.bytes(), m.traffic.bytes_out);
        #[rustfmt::skip]
        let gauges = [
            ("connections", "Connections open now.", m.connections as u64),
            ("handshakes_pending", "WebSocket handshakes under way now.", m.pending_handshakes as u64),
            ("queued_events", "Events queued on the open connections now.", m.queued_events),
            ("pressure_level", "The pressure level last reported (0 normal .. 3 critical).", m.pressure.index() as u64),
        ];
        out.gauges(&gauges);
        let queued = Family::gauge("queued", "Bytes queued on the open connections now.");
        out.sample(queued.bytes(), m.queued_bytes);
        let refused = Family::counter(
            "refused",
            "Connections refused after the handshake, by cause.",
        );
        out.sample_with(refused, ("cause", "capacity"), m.refused_capacity);
        out.sample_with(refused, ("cause", "pressure"), m.refused_pressure);
        out.sample_with(refused, ("cause", "shutdown"), m.refused_shutdown);
        let closed = Family::counter("closed", "Connections ended, by reason.");
        let c = &m.closed;
        #[rustfmt::skip]
        let reasons = [
            ("normal", c.normal),
            ("shutdown", c.shutdown),
            ("slow_consumer", c.slow_consumer),
            ("idle_timeout", c.idle_timeout),
            ("invalid_payload", c.invalid_payload),
            ("message_too_big", c.message_too_big),
            ("protocol", c.protocol),
            ("remote", c.remote),
            ("lost", c.lost),
        ];
        for (reason, count) in reasons {
            out.sample_with(closed, ("reason", reason), count);
        }
        let dropped = Family::counter(
            "broadcast_dropped",
            "Droppable frames the queues' policy dropped for broadcast events, by the event's delivery class.",
        );
        for class in DeliveryClass::ALL {
            out.sample_with(dropped, ("class", class.as_str()), hub.dropped(class));
        }
        self.export_connections(out);
    }
}

#[cfg(feature = "ws")]
impl WsServerSnapshot {
    /// The series of each open connection (none unless they were asked for).
    fn export_connections(&self, out: &mut Samples<'_>) {
        let queued_events = Family::gauge(
            "conn_queued_events",
            "Events queued for the connection now.",
        );
        let queued = Family::gauge("conn_queued", "Bytes queued for the connection now.").bytes();
        let sent_events = Family::counter("conn_sent_events", "Events written to the connection.");
        let sent = Family::counter("conn_sent", "Event bytes written to the connection.").bytes();
        let dropped = Family::counter(
            "conn_dropped",
            "Frames the connection's queue accepted and will never send, by delivery class.",
        );
        for c in &self.connections {
            let conn = || ("conn", Cow::Owned(c.id.0.to_string()));
            out.sample_with(queued_events, conn(), c.outbound.len);
            out.sample_with(queued, conn(), c.outbound.queued_bytes);
            out.sample_with(sent_events, conn(), c.traffic.frames_out);
            out.sample_with(sent, conn(), c.traffic.bytes_out);
            for class in DeliveryClass::ALL {
                let labels = [conn(), ("class", Cow::Borrowed(class.as_str()))];
                out.sample_labels(dropped, labels, c.outbound.class(class).dropped);
            }
        }
    }
}

impl Export for PoolMetrics {
    const KIND: &'static str = "pool";

    fn export(&self, out: &mut Samples<'_>) {
        #[rustfmt::skip]
        let counters = [
            ("hits", "Gets served by a pooled object.", self.hits),
            ("misses", "Gets that made a new object (the pool was empty).", self.misses),
            ("returns", "Objects recycled into the pool.", self.returns),
            ("discarded", "Objects dropped because the pool was full or shrank.", self.discarded),
            ("filled", "Objects made ahead of time by fill.", self.filled),
        ];
        out.counters(&counters);
        #[rustfmt::skip]
        let gauges = [
            ("size", "Idle objects in the pool now.", self.size),
            ("capacity", "The most idle objects kept now.", self.capacity),
            ("max_capacity", "The capacity reserved at construction.", self.max_capacity),
        ];
        out.gauges(&gauges);
    }
}

impl Export for SnapshotVecMetrics {
    const KIND: &'static str = "snapshot_vec";

    fn export(&self, out: &mut Samples<'_>) {
        #[rustfmt::skip]
        let counters = [
            ("writes", "Writes published.", self.writes),
            ("retries", "Writes rebuilt after losing a race to another writer.", self.retries),
        ];
        out.counters(&counters);
        out.gauges(&[("len", "Elements in the current snapshot.", self.len)]);
    }
}

/// What the exporter reads from a state store: its own and its subscriptions'
/// counters.
#[cfg(feature = "state")]
struct StateExport {
    store: StateMetrics,
    subscriptions: SubscriptionMetrics,
}

#[cfg(feature = "state")]
fn state_snapshot<C: Clock + Send + Sync + 'static>(store: &StateStore<C>) -> StateExport {
    StateExport {
        store: store.metrics(),
        subscriptions: store.subscription_metrics(),
    }
}

#[cfg(feature = "state")]
impl Export for StateExport {
    const KIND: &'static str = "state";

    fn export(&self, out: &mut Samples<'_>) {
        let (m, subs) = (&self.store, &self.subscriptions);
        #[rustfmt::skip]
        let counters = [
            ("patches_applied", "Patches committed, transactions included.", m.patches_applied),
            ("conflicts", "Transaction commits refused for a conflict.", m.conflicts),
            ("txn_commits", "Transactions committed.", m.txn_commits),
            ("txn_expired", "Transactions expired unfinished.", m.txn_expired),
            ("txn_refused", "begin calls refused (cap, or critical pressure).", m.txn_refused),
            ("subscriptions_made", "Subscriptions made.", subs.subscribed),
            ("subscriptions_refused", "Subscriptions refused at the cap.", subs.rejected),
            ("subscriptions_unsubscribed", "Subscriptions ended by their owner.", subs.unsubscribed),
            ("subscriptions_expired", "Subscriptions expired idle.", subs.expired),
            ("changes_published", "Commits handed to the subscriptions.", subs.published),
            ("changes_delivered", "Changes queued to subscribers.", subs.delivered),
            ("changes_lagged", "Queued changes dropped by overflow or shrinking.", subs.lagged),
            ("callback_panics", "Subscription callbacks that panicked.", subs.callback_panics),
        ];
        out.counters(&counters);
        let rejected = Family::counter("rejected", "Patches refused, by cause.");
        out.sample_with(rejected, ("cause", "invalid"), m.rejected_invalid);
        out.sample_with(rejected, ("cause", "failed"), m.rejected_failed);
        out.sample_with(rejected, ("cause", "limit"), m.rejected_limit);
        #[rustfmt::skip]
        let gauges = [
            ("revision", "The current revision.", m.revision.get()),
            ("open_txns", "Transactions open.", m.open_txns as u64),
            ("top_level_keys", "Top-level members of the document.", m.top_level_keys as u64),
            ("history_entries", "Patches the history holds.", m.history_entries as u64),
            ("history_oldest_revision", "The oldest revision the history answers.", m.history_oldest.get()),
            ("pressure_level", "The pressure level last reported (0 normal .. 3 critical).", m.pressure as u64),
            ("subscriptions", "Subscriptions open.", subs.active),
            ("changes_queued", "Changes queued to subscribers now.", subs.queued),
        ];
        out.gauges(&gauges);
        out.sample(
            Family::gauge("document", "The document as compact JSON.").bytes(),
            m.document_bytes,
        );
        out.sample(
            Family::gauge("history", "The history's patches as compact JSON.").bytes(),
            m.history_bytes,
        );
    }
}

impl Export for BackpressureMetrics {
    const KIND: &'static str = "backpressure";

    fn export(&self, out: &mut Samples<'_>) {
        #[rustfmt::skip]
        let counters = [
            ("sent", "Items stored by sends.", self.sent),
            ("received", "Items taken by receives.", self.received),
            ("blocked", "Sends that waited (paused, or full under a blocking strategy).", self.blocked),
            ("timeouts", "Sends that gave up at their deadline.", self.timeouts),
            ("high_water_hits", "Transitions to paused: the fill reached the high mark.", self.high_water_hits),
            ("low_water_hits", "Transitions back to flowing: the fill fell to the low mark.", self.low_water_hits),
        ];
        out.counters(&counters);
        #[rustfmt::skip]
        let gauges = [
            ("paused", "1 while producers are paused by the water marks.", u64::from(self.paused)),
            ("len", "Items stored now.", self.len),
            ("capacity", "The capacity in force.", self.capacity),
            ("producers_waiting", "Sends sleeping now.", self.producers_waiting),
        ];
        out.gauges(&gauges);
        let dropped = Family::counter("dropped", "Items the strategy dropped, by cause.");
        out.sample_with(dropped, ("cause", "drop_oldest"), self.dropped_oldest);
        out.sample_with(dropped, ("cause", "drop_newest"), self.dropped_newest);
        let refused = Family::counter(
            "refused",
            "Sends refused with the item handed back, by cause.",
        );
        out.sample_with(refused, ("cause", "full"), self.rejected_full);
        out.sample_with(refused, ("cause", "paused"), self.rejected_paused);
        let blocked_time = Family::counter("blocked_time", "Total time sends spent waiting.");
        out.sample(blocked_time.seconds(), self.blocked_time);
    }
}

impl Export for RingMetrics {
    const KIND: &'static str = "ring";

    fn export(&self, out: &mut Samples<'_>) {
        #[rustfmt::skip]
        let counters = [
            ("pushed", "Items stored by any push.", self.pushed),
            ("popped", "Items taken out by pops, drains and batch pops.", self.popped),
            ("evicted", "Items evicted by force_push and handed to its caller.", self.evicted),
            ("rejected", "New items handed back by push under Reject.", self.rejected),
            ("cleared", "Items discarded by clear.", self.cleared),
            ("grows", "Capacity increases.", self.grows),
            ("shrinks", "Capacity decreases by set_capacity.", self.shrinks),
            ("timeouts", "Timed pushes and pops that reached their deadline.", self.timeouts),
        ];
        out.counters(&counters);
        #[rustfmt::skip]
        let gauges = [
            ("len", "Items stored now.", self.len),
            ("capacity", "The capacity in force.", self.capacity),
            ("capacity_limit", "The most the capacity may grow to on its own.", self.capacity_limit),
            ("max_capacity", "Slots reserved at construction.", self.max_capacity),
            ("high_water", "Highest length seen (sampled, see RingMetrics).", self.high_water),
        ];
        out.gauges(&gauges);
        let dropped = Family::counter("dropped", "Items the overflow policy dropped, by policy.");
        out.sample_with(dropped, ("cause", "drop_oldest"), self.dropped_oldest);
        out.sample_with(dropped, ("cause", "drop_newest"), self.dropped_newest);
        let waits = Family::counter("waits", "Waits that went to sleep, by operation.");
        out.sample_with(waits, ("op", "push"), self.push_waits);
        out.sample_with(waits, ("op", "pop"), self.pop_waits);
        let waiting = Family::gauge("waiting", "Pushes and pops sleeping now, by operation.");
        out.sample_with(waiting, ("op", "push"), self.producers_waiting);
        out.sample_with(waiting, ("op", "pop"), self.consumers_waiting);
    }
}

impl Export for TableMetrics {
    const KIND: &'static str = "table";

    fn export(&self, out: &mut Samples<'_>) {
        #[rustfmt::skip]
        let counters = [
            ("inserts", "Values stored by successful inserts.", self.inserts),
            ("hits", "Lookups that found a live entry.", self.hits),
            ("misses", "Lookups that found nothing live.", self.misses),
            ("expired", "Entries removed because their TTL ran out.", self.expired),
            ("evicted", "Live entries evicted for room or a lowered capacity.", self.evicted),
            ("removed", "Entries taken out by remove.", self.removed),
            ("replaced", "Values replaced by an insert of the same key.", self.replaced),
            ("rejected", "Inserts refused because the table was full.", self.rejected),
            ("sweeps", "Calls to sweep.", self.sweeps),
        ];
        out.counters(&counters);
        #[rustfmt::skip]
        let gauges = [
            ("len", "Entries stored now, including expired ones not yet swept.", self.len),
            ("capacity", "The soft capacity in force.", self.capacity),
            ("max_capacity", "The capacity reserved at construction.", self.max_capacity),
        ];
        out.gauges(&gauges);
    }
}

/// The figures of one memory sample, shared by the monitor (its latest sample) and
/// the sampler (a fresh one). Figures the sample lacks have no series.
fn export_memory_sample(s: &MemorySample, out: &mut Samples<'_>) {
    #[rustfmt::skip]
    let bytes = [
        ("rss", "Resident set size of the process.", s.rss),
        ("peak_rss", "Peak resident set size of the process.", s.peak_rss),
        ("cgroup_usage", "Memory usage of the process's cgroup.", s.cgroup_usage),
        ("working_set", "Working set of the process's cgroup.", s.working_set),
        ("mem_total", "Host MemTotal.", s.mem_total),
        ("mem_available", "Host MemAvailable.", s.mem_available),
        ("heap", "Live bytes of the tracked heap.", s.heap),
        ("used", "Memory measured against the limit.", s.used),
    ];
    for (name, help, value) in bytes {
        out.sample_opt(Family::gauge(name, help).bytes(), value);
    }
    if let Some(limit) = s.limit {
        let family = Family::gauge("limit", "The effective limit, by where it came from.");
        let source = ("source", limit.source.to_string());
        out.sample_with(family.bytes(), source, limit.bytes);
    }
    let utilization = Family::gauge("utilization_ratio", "Used memory as a share of the limit.");
    out.sample_opt(utilization, s.utilization);
    if let Some(psi) = s.psi {
        let family = Family::gauge("psi_avg10_ratio", "Memory stall share over 10 s, by kind.");
        out.sample_with(family, ("kind", "some"), psi.some_avg10 / 100.0);
        if let Some(full) = psi.full_avg10 {
            out.sample_with(family, ("kind", "full"), full / 100.0);
        }
    }
}

impl Export for MonitorMetrics {
    const KIND: &'static str = "monitor";

    fn export(&self, out: &mut Samples<'_>) {
        #[rustfmt::skip]
        let counters = [
            ("samples", "Samples taken.", self.samples),
            ("trims", "Heap trims done.", self.trims),
            ("sampling_errors", "Fields that failed to read or parse.", self.sampling_errors),
            ("unmeasured_samples", "Samples with no utilization.", self.unmeasured_samples),
            ("callback_panics", "Pressure callbacks that panicked.", self.callback_panics),
        ];
        out.counters(&counters);
        let released = Family::counter("trim_released", "RSS released by heap trims.");
        out.sample(released.bytes(), self.bytes_released);
        let level = Family::gauge(
            "level",
            "Pressure level: 0 normal, 1 low, 2 high, 3 critical.",
        );
        out.sample(level, self.level.index());
        let scale = Family::gauge("scale", "Continuous pressure scale factor, 0 to 1.");
        out.sample(scale, self.scale);
        out.sample(
            Family::gauge("subscribers", "Live pressure subscriptions."),
            self.subscribers,
        );
        let transitions = Family::counter("transitions", "Transitions into each pressure level.");
        let time_in = Family::counter("time_in_level", "Time spent in each pressure level.");
        for level in PressureLevel::ALL {
            let (i, name) = (level.index(), level.as_str());
            out.sample_with(transitions, ("level", name), self.transitions_into[i]);
            out.sample_with(time_in.seconds(), ("level", name), self.time_in[i]);
        }
        if let Some(sample) = &self.last_sample {
            export_memory_sample(sample, out);
        }
    }
}

/// A fresh sample and the sampler's error count.
struct SamplerReading {
    sample: MemorySample,
    errors: u64,
}

fn sampler_reading(sampler: &Mutex<Sampler>) -> SamplerReading {
    // A panic inside `sample` cannot leave the sampler half-updated in a way a later
    // sample would trust: each sample re-reads every file.
    let mut sampler = sampler.lock().unwrap_or_else(PoisonError::into_inner);
    SamplerReading {
        sample: sampler.sample(),
        errors: sampler.errors(),
    }
}

impl Export for SamplerReading {
    const KIND: &'static str = "sampler";

    fn export(&self, out: &mut Samples<'_>) {
        let errors = Family::counter("errors", "Fields that failed to read or parse.");
        out.sample(errors, self.errors);
        export_memory_sample(&self.sample, out);
    }
}

/// A cleanup manager's state, assembled from its public calls.
struct CleanupSnapshot {
    running: bool,
    tasks: Vec<(&'static str, TaskMetrics<TaskFailure>)>,
}

fn cleanup_snapshot(manager: &CleanupManager) -> CleanupSnapshot {
    CleanupSnapshot {
        running: manager.is_running(),
        // A task unregistered between the two calls is skipped.
        tasks: manager
            .task_names()
            .into_iter()
            .filter_map(|name| manager.metrics(name).map(|m| (name, m)))
            .collect(),
    }
}

impl Export for CleanupSnapshot {
    const KIND: &'static str = "cleanup";

    fn export(&self, out: &mut Samples<'_>) {
        out.sample(
            Family::gauge("running", "1 if the workers run."),
            self.running,
        );
        out.sample(
            Family::gauge("tasks", "Registered tasks."),
            self.tasks.len(),
        );
        // The manager's tasks run on a MonotonicClock (module docs of `cleanup`).
        let clock = MonotonicClock::new();
        let counter = Family::counter;
        let gauge = Family::gauge;
        let runs = counter("task_runs", "Completed runs, successful or not.");
        let cleaned = counter("task_cleaned", "Items cleaned by successful runs.");
        let errors = counter("task_errors", "Runs that failed or panicked.");
        let overruns = counter("task_overruns", "Runs that took at least the interval.");
        let last = gauge("task_last_duration", "Duration of the latest run.").seconds();
        let avg = gauge("task_avg_duration", "Moving average of run durations.").seconds();
        for (task, m) in &self.tasks {
            let task = || ("task", Cow::Borrowed(*task));
            out.sample_with(runs, task(), m.runs);
            out.sample_with(cleaned, task(), m.cleaned);
            out.sample_with(errors, task(), m.errors);
            out.sample_with(overruns, task(), m.overruns);
            out.sample_with(last, task(), clock.duration_of(m.last_duration));
            out.sample_with(avg, task(), clock.duration_of(m.avg_duration));
        }
    }
}

impl Export for HeapStats {
    const KIND: &'static str = "heap";

    fn export(&self, out: &mut Samples<'_>) {
        #[rustfmt::skip]
        let counters = [
            ("allocations", "Successful allocations.", self.allocations),
            ("deallocations", "Deallocations.", self.deallocations),
            ("reallocations", "Successful reallocations.", self.reallocations),
            ("failures", "Allocations the inner allocator refused.", self.failures),
        ];
        out.counters(&counters);
        #[rustfmt::skip]
        let bytes = [
            ("live", "Bytes allocated and not yet freed.", Some(self.live_bytes)),
            ("peak", "Most live bytes since creation or reset.", Some(self.peak_bytes)),
            ("size", "The heap size given at construction.", self.heap_size),
        ];
        for (name, help, value) in bytes {
            out.sample_opt(Family::gauge(name, help).bytes(), value);
        }
        let utilization = Family::gauge("utilization_ratio", "Live bytes as a share of the heap.");
        out.sample_opt(utilization, self.utilization());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Two(u64, u64);

    impl Export for Two {
        const KIND: &'static str = "two";

        fn export(&self, out: &mut Samples<'_>) {
            out.counters(&[("a", "A.", self.0)]);
            let b = Family::gauge("b", "B.").bytes();
            out.sample_with(b, ("side", "left"), self.1);
            out.sample_opt(Family::gauge("c", "C."), None::<u64>);
        }
    }

    fn collect(instances: &[(&str, Two)]) -> Scrape {
        let mut scrape = Scrape::default();
        for (name, snapshot) in instances {
            snapshot.export(&mut Samples {
                scrape: &mut scrape,
                kind: Two::KIND,
                instance: name,
            });
        }
        scrape
    }

    #[test]
    fn instances_are_grouped_by_family_in_first_seen_order() {
        let scrape = collect(&[("x", Two(1, 2)), ("y", Two(3, 4))]);
        let families: Vec<_> = scrape
            .families
            .iter()
            .map(|(_, f, s)| (f.name, s.len()))
            .collect();
        // `c` had no figure: no family at all, not an empty one.
        assert_eq!(families, [("a", 2), ("b", 2)]);
        let (_, b, series) = &scrape.families[1];
        assert_eq!(b.unit, Some(BaseUnit::Bytes));
        assert_eq!(
            series[1].labels,
            [("two", Cow::from("y")), ("side", Cow::from("left"))]
        );
        assert_eq!(series[1].value, Value::Int(4));
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "family membound_two_a redefined")]
    fn a_family_described_two_ways_is_caught() {
        let mut scrape = collect(&[("x", Two(1, 2))]);
        let labels = Vec::new();
        let series = Series {
            labels,
            value: Value::Int(0),
        };
        scrape.push("two", Family::gauge("a", "A."), series);
    }
}
