//! The Prometheus export: real components driven through known operations, the
//! registry rendered by prometheus-client and parsed back by a strict third-party
//! OpenMetrics parser (and its Prometheus-text parser), checking names, types, units,
//! labels and values; then the HTTP server scraped by a real HTTP client, and fed
//! requests that are not HTTP.
#![cfg(feature = "prometheus")]

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use membound::backpressure::{Backpressure, BackpressureConfig, WaterMarks};
use membound::cleanup::{CleanupConfig, CleanupManager};
use membound::clock::{Clock, ManualClock};
use membound::export::prometheus::{ExportError, Exporter, MetricsServer};
use membound::heap::TrackingAllocator;
use membound::monitor::{MemoryManager, MemorySource, MonitorConfig};
use membound::os::{EffectiveLimit, LimitSource, MemorySample, Sampler, SamplerConfig};
use membound::pool::Pool;
use membound::pressure::PressureConfig;
use membound::ring::{Ring, RingConfig, RingCore, StaticRing};
use membound::slice::SnapshotVec;
use membound::table::{TableConfig, TtlTable, TtlTableCore};
use membound::OverflowPolicy;
use openmetrics_parser::{
    MetricsExposition, OpenMetricsType, OpenMetricsValue, PrometheusType, PrometheusValue,
};
use prometheus_client::encoding::text::encode;
use prometheus_client::registry::Registry;

#[cfg(feature = "ws")]
#[path = "support/ws.rs"]
mod ws;

const MIB: u64 = 1 << 20;

/// A parsed exposition: each family's type and unit, each series' value.
#[derive(Debug)]
struct Scrape {
    /// Family name (without `_total`) -> (type, unit).
    families: HashMap<String, (String, String)>,
    /// (family, labels) -> value.
    values: HashMap<(String, BTreeMap<String, String>), f64>,
}

impl Scrape {
    fn from_openmetrics(text: &str) -> Self {
        let parsed: MetricsExposition<OpenMetricsType, OpenMetricsValue> =
            openmetrics_parser::openmetrics::parse_openmetrics(text)
                .unwrap_or_else(|e| panic!("not valid OpenMetrics ({e:?}):\n{text}"));
        let mut scrape = Self {
            families: HashMap::new(),
            values: HashMap::new(),
        };
        for (name, family) in &parsed.families {
            let kind = family.family_type.to_string();
            scrape
                .families
                .insert(name.clone(), (kind, family.unit.clone()));
            for sample in family.iter_samples() {
                let value = match &sample.value {
                    OpenMetricsValue::Counter(c) => c.value.as_f64(),
                    OpenMetricsValue::Gauge(g) => g.as_f64(),
                    other => panic!("{name}: unexpected value {other:?}"),
                };
                scrape.insert(name, sample.get_labelset().unwrap().iter(), value);
            }
        }
        scrape
    }

    fn from_prometheus_text(text: &str) -> Self {
        let parsed: MetricsExposition<PrometheusType, PrometheusValue> =
            openmetrics_parser::prometheus::parse_prometheus(text)
                .unwrap_or_else(|e| panic!("not valid Prometheus text ({e:?}):\n{text}"));
        let mut scrape = Self {
            families: HashMap::new(),
            values: HashMap::new(),
        };
        for (name, family) in &parsed.families {
            scrape.families.insert(
                name.clone(),
                (family.family_type.to_string(), String::new()),
            );
            for sample in family.iter_samples() {
                let value = match &sample.value {
                    PrometheusValue::Counter(c) => c.value.as_f64(),
                    PrometheusValue::Gauge(g) => g.as_f64(),
                    other => panic!("{name}: unexpected value {other:?}"),
                };
                scrape.insert(name, sample.get_labelset().unwrap().iter(), value);
            }
        }
        scrape
    }

    fn insert<'a>(
        &mut self,
        family: &str,
        labels: impl Iterator<Item = (&'a String, &'a String)>,
        value: f64,
    ) {
        let labels = labels.map(|(k, v)| (k.clone(), v.clone())).collect();
        let old = self.values.insert((family.to_string(), labels), value);
        assert!(old.is_none(), "{family}: a series exposed twice");
    }

    /// The type (and unit) of `family`.
    fn kind(&self, family: &str) -> (&str, &str) {
        let (kind, unit) = self
            .families
            .get(family)
            .unwrap_or_else(|| panic!("no family {family}; have {:?}", self.names()));
        (kind, unit)
    }

    /// The value of the series of `family` with exactly `labels`.
    fn value(&self, family: &str, labels: &[(&str, &str)]) -> f64 {
        let labels: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        *self
            .values
            .get(&(family.to_string(), labels.clone()))
            .unwrap_or_else(|| {
                panic!(
                    "no series {family}{labels:?}; have {:#?}",
                    self.series(family)
                )
            })
    }

    fn series(&self, family: &str) -> Vec<&BTreeMap<String, String>> {
        self.values
            .keys()
            .filter(|(f, _)| f == family)
            .map(|(_, l)| l)
            .collect()
    }

    fn names(&self) -> Vec<&String> {
        let mut names: Vec<_> = self.families.keys().collect();
        names.sort();
        names
    }
}

fn render(registry: &Registry) -> String {
    let mut text = String::new();
    encode(&mut text, registry).unwrap();
    text
}

fn scrape(registry: &Registry) -> Scrape {
    Scrape::from_openmetrics(&render(registry))
}

#[test]
fn rings_export_their_counts_under_their_names() {
    let mut registry = Registry::default();
    let exporter = Exporter::register(&mut registry);
    let events = Arc::new(Ring::new(4).unwrap()); // DropOldest
    let jobs = Arc::new(
        Ring::with_config(RingConfig::new(2).with_policy(OverflowPolicy::Reject)).unwrap(),
    );
    exporter.add("events", &events, RingCore::metrics).unwrap();
    exporter.add("jobs", &jobs, RingCore::metrics).unwrap();

    for i in 0..6 {
        events.push(i).unwrap(); // 6 pushed, the 2 oldest dropped
    }
    assert_eq!(events.try_pop(), Some(2));
    assert_eq!(events.force_push(10), Ok(None)); // room after the pop
    assert_eq!(events.force_push(11), Ok(Some(3))); // evicts the oldest
    jobs.push("a").unwrap();
    jobs.push("b").unwrap();
    assert!(jobs.push("c").is_err()); // rejected, handed back
    jobs.clear();

    let s = scrape(&registry);
    let events = [("ring", "events")];
    let jobs = [("ring", "jobs")];
    assert_eq!(s.kind("membound_ring_pushed"), ("counter", ""));
    assert_eq!(s.value("membound_ring_pushed", &events), 8.0);
    assert_eq!(s.value("membound_ring_popped", &events), 1.0);
    assert_eq!(s.value("membound_ring_evicted", &events), 1.0);
    assert_eq!(s.kind("membound_ring_dropped"), ("counter", ""));
    assert_eq!(
        s.value(
            "membound_ring_dropped",
            &[("ring", "events"), ("cause", "drop_oldest")]
        ),
        2.0
    );
    assert_eq!(
        s.value(
            "membound_ring_dropped",
            &[("ring", "events"), ("cause", "drop_newest")]
        ),
        0.0
    );
    assert_eq!(s.kind("membound_ring_len"), ("gauge", ""));
    assert_eq!(s.value("membound_ring_len", &events), 4.0);
    assert_eq!(s.value("membound_ring_capacity", &events), 4.0);
    assert_eq!(s.value("membound_ring_high_water", &events), 4.0);
    assert_eq!(s.value("membound_ring_pushed", &jobs), 2.0);
    assert_eq!(s.value("membound_ring_rejected", &jobs), 1.0);
    assert_eq!(s.value("membound_ring_cleared", &jobs), 2.0);
    assert_eq!(s.value("membound_ring_len", &jobs), 0.0);
    assert_eq!(s.kind("membound_ring_waiting"), ("gauge", ""));
    assert_eq!(
        s.value("membound_ring_waiting", &[("ring", "jobs"), ("op", "push")]),
        0.0
    );
    // Both rings in one family each: the parser rejects a family that appears twice.
    assert_eq!(s.series("membound_ring_pushed").len(), 2);
}

#[test]
fn a_scrape_reads_the_snapshot_of_that_moment() {
    let mut registry = Registry::default();
    let exporter = Exporter::register(&mut registry);
    let ring = Arc::new(Ring::new(8).unwrap());
    exporter.add("r", &ring, RingCore::metrics).unwrap();
    let r = [("ring", "r")];
    assert_eq!(scrape(&registry).value("membound_ring_pushed", &r), 0.0);
    ring.push(1).unwrap();
    ring.push(2).unwrap();
    assert_eq!(scrape(&registry).value("membound_ring_pushed", &r), 2.0);
    // Scraping counts nothing itself: the same state scrapes the same.
    assert_eq!(scrape(&registry).value("membound_ring_pushed", &r), 2.0);
    assert_eq!(render(&registry), render(&registry));
}

#[test]
fn a_dropped_component_disappears_and_its_name_is_free_again() {
    let mut registry = Registry::default();
    let exporter = Exporter::register(&mut registry);
    let first = Arc::new(Ring::<u8>::new(1).unwrap());
    exporter.add("events", &first, RingCore::metrics).unwrap();
    assert_eq!(
        exporter.add(
            "events",
            &Arc::new(Ring::<u8>::new(1).unwrap()),
            RingCore::metrics
        ),
        Err(ExportError::DuplicateName {
            kind: "ring",
            name: "events".into()
        })
    );
    assert_eq!(
        exporter.add("", &first, RingCore::metrics),
        Err(ExportError::EmptyName { kind: "ring" })
    );
    drop(first);
    assert!(!render(&registry).contains("membound_ring"));

    let second = Arc::new(Ring::<u8>::new(3).unwrap());
    exporter.add("events", &second, RingCore::metrics).unwrap();
    // Another kind may use the same name.
    let table = Arc::new(
        TtlTable::<u8, u8, _>::new(4, Duration::from_secs(1), ManualClock::default()).unwrap(),
    );
    exporter
        .add("events", &table, TtlTableCore::metrics)
        .unwrap();
    let s = scrape(&registry);
    assert_eq!(
        s.value("membound_ring_capacity", &[("ring", "events")]),
        3.0
    );
    assert_eq!(
        s.value("membound_table_capacity", &[("table", "events")]),
        4.0
    );
}

#[test]
fn a_static_ring_is_exported_for_the_life_of_the_program() {
    static RING: StaticRing<u32, 3> = StaticRing::new();
    let mut registry = Registry::default();
    let exporter = Exporter::register(&mut registry);
    exporter.add("static", &RING, RingCore::metrics).unwrap();
    RING.push(7).unwrap();
    let s = scrape(&registry);
    assert_eq!(s.value("membound_ring_pushed", &[("ring", "static")]), 1.0);
    assert_eq!(
        s.value("membound_ring_max_capacity", &[("ring", "static")]),
        3.0
    );
}

#[test]
fn tables_export_hits_misses_and_expiry() {
    let mut registry = Registry::default();
    let exporter = Exporter::register(&mut registry);
    let clock = Arc::new(ManualClock::default()); // 1 ms ticks
    let table = Arc::new(
        TtlTable::with_config(
            TableConfig::new(8, Duration::from_millis(100)).with_amortized_sweep(0),
            Arc::clone(&clock),
        )
        .unwrap(),
    );
    exporter
        .add("sessions", &table, TtlTableCore::metrics)
        .unwrap();

    table.insert(1, "a").unwrap();
    table.insert(2, "b").unwrap();
    table
        .insert_with_ttl(3, "c", Duration::from_millis(10))
        .unwrap();
    table.insert(1, "a2").unwrap(); // replaces
    assert!(table.get(&1).is_some());
    assert!(table.get(&2).is_some());
    assert!(table.get(&9).is_none());
    assert_eq!(table.remove(&2), Some("b"));
    clock.advance(20); // key 3 expires
    assert_eq!(table.sweep(clock.now(), 100).removed, 1);

    let s = scrape(&registry);
    let t = [("table", "sessions")];
    assert_eq!(s.kind("membound_table_inserts"), ("counter", ""));
    assert_eq!(s.value("membound_table_inserts", &t), 4.0);
    assert_eq!(s.value("membound_table_replaced", &t), 1.0);
    assert_eq!(s.value("membound_table_hits", &t), 2.0);
    assert_eq!(s.value("membound_table_misses", &t), 1.0);
    assert_eq!(s.value("membound_table_removed", &t), 1.0);
    assert_eq!(s.value("membound_table_expired", &t), 1.0);
    assert_eq!(s.value("membound_table_sweeps", &t), 1.0);
    assert_eq!(s.kind("membound_table_len"), ("gauge", ""));
    assert_eq!(s.value("membound_table_len", &t), 1.0);
    assert_eq!(s.value("membound_table_max_capacity", &t), 8.0);
}

/// A memory source whose utilization the test sets, against a 1 GiB user limit.
#[derive(Clone, Default)]
struct Script(Arc<Mutex<f64>>);

const LIMIT: u64 = 1 << 30;

impl MemorySource for Script {
    fn sample(&mut self) -> MemorySample {
        let limit = EffectiveLimit {
            bytes: LIMIT,
            source: LimitSource::User,
        };
        MemorySample::from_usage((*self.0.lock().unwrap() * LIMIT as f64) as u64, limit)
    }
}

#[test]
fn the_monitor_exports_level_transitions_time_and_its_latest_sample() {
    let mut registry = Registry::default();
    let exporter = Exporter::register(&mut registry);
    let script = Script::default();
    let clock = Arc::new(ManualClock::default());
    let config = MonitorConfig::production().with_pressure(
        PressureConfig::production()
            .with_sustain(Duration::ZERO)
            .with_dwell(Duration::ZERO),
    );
    let manager =
        Arc::new(MemoryManager::with_source(config, script.clone(), Arc::clone(&clock)).unwrap());
    exporter
        .add("main", &manager, MemoryManager::metrics)
        .unwrap();

    *script.0.lock().unwrap() = 0.5;
    manager.sample_now();
    clock.advance_by(Duration::from_secs(5));
    *script.0.lock().unwrap() = 0.9; // High (85 %)
    manager.sample_now();
    clock.advance_by(Duration::from_secs(10));
    *script.0.lock().unwrap() = 0.75; // Low (70 %; High exits below its own band)
    manager.sample_now();
    let level = manager.level();

    let s = scrape(&registry);
    let m = [("monitor", "main")];
    assert_eq!(s.kind("membound_monitor_samples"), ("counter", ""));
    assert_eq!(s.value("membound_monitor_samples", &m), 3.0);
    assert_eq!(s.kind("membound_monitor_level"), ("gauge", ""));
    assert_eq!(s.value("membound_monitor_level", &m), level.index() as f64);
    let into = |l: &'static str| {
        s.value(
            "membound_monitor_transitions",
            &[("monitor", "main"), ("level", l)],
        )
    };
    assert_eq!(into("high"), 1.0);
    assert_eq!(into("critical"), 0.0);
    assert_eq!(
        into("normal") + into("low"),
        1.0,
        "one transition down from High"
    );
    assert_eq!(
        s.kind("membound_monitor_time_in_level_seconds"),
        ("counter", "seconds")
    );
    let time_in = |l: &'static str| {
        s.value(
            "membound_monitor_time_in_level_seconds",
            &[("monitor", "main"), ("level", l)],
        )
    };
    assert_eq!(time_in("normal"), 5.0);
    assert_eq!(time_in("high"), 10.0);
    assert_eq!(s.kind("membound_monitor_used_bytes"), ("gauge", "bytes"));
    assert_eq!(
        s.value("membound_monitor_used_bytes", &m),
        (0.75 * LIMIT as f64).floor()
    );
    assert_eq!(
        s.value(
            "membound_monitor_limit_bytes",
            &[("monitor", "main"), ("source", "user")]
        ),
        LIMIT as f64
    );
    assert_eq!(s.value("membound_monitor_utilization_ratio", &m), 0.75);
    assert_eq!(s.value("membound_monitor_trims", &m), 0.0);
    assert_eq!(s.value("membound_monitor_subscribers", &m), 0.0);
    // A source without RSS has no RSS series (not a zero).
    assert!(s.series("membound_monitor_rss_bytes").is_empty());
}

#[test]
fn a_sampler_is_sampled_at_each_scrape() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v2");
    let config = SamplerConfig::default()
        .with_proc_root(root.join("proc"))
        .with_mount_root(&root);
    let mut registry = Registry::default();
    let exporter = Exporter::register(&mut registry);
    exporter
        .add_sampler("fixture", Sampler::new(config).unwrap())
        .unwrap();

    let s = scrape(&registry);
    let f = [("sampler", "fixture")];
    if cfg!(target_os = "linux") {
        // The fixture: memory.high 768 MiB under memory.max 1 GiB, working set
        // 250 MiB, RSS 2500 pages, PSI some 12.34 %.
        assert_eq!(s.kind("membound_sampler_limit_bytes"), ("gauge", "bytes"));
        assert_eq!(
            s.value(
                "membound_sampler_limit_bytes",
                &[("sampler", "fixture"), ("source", "cgroup memory.high")]
            ),
            (768 * MIB) as f64
        );
        assert_eq!(
            s.value("membound_sampler_working_set_bytes", &f),
            (250 * MIB) as f64
        );
        assert_eq!(
            s.value("membound_sampler_used_bytes", &f),
            (250 * MIB) as f64
        );
        assert_eq!(
            s.value("membound_sampler_mem_total_bytes", &f),
            (8_000_000u64 * 1024) as f64
        );
        let psi = s.value(
            "membound_sampler_psi_avg10_ratio",
            &[("sampler", "fixture"), ("kind", "some")],
        );
        assert!((psi - 0.1234).abs() < 1e-9, "{psi}");
        assert_eq!(s.value("membound_sampler_errors", &f), 0.0);
    }
    assert_eq!(s.kind("membound_sampler_errors"), ("counter", ""));
}

#[test]
fn cleanup_tasks_export_runs_items_and_errors() {
    let mut registry = Registry::default();
    let exporter = Exporter::register(&mut registry);
    let manager = Arc::new(CleanupManager::new(CleanupConfig::production()).unwrap());
    manager
        .register("sessions", || Ok::<_, std::convert::Infallible>(3))
        .unwrap();
    manager.register("flaky", || Err("disk offline")).unwrap();
    exporter.add_cleanup("main", &manager).unwrap();
    manager.run_now("sessions").unwrap();
    manager.run_now("sessions").unwrap();
    assert!(manager.run_now("flaky").is_err());

    let s = scrape(&registry);
    let task = |t| [("cleanup", "main"), ("task", t)];
    assert_eq!(s.kind("membound_cleanup_task_runs"), ("counter", ""));
    assert_eq!(
        s.value("membound_cleanup_task_runs", &task("sessions")),
        2.0
    );
    assert_eq!(
        s.value("membound_cleanup_task_cleaned", &task("sessions")),
        6.0
    );
    assert_eq!(
        s.value("membound_cleanup_task_errors", &task("sessions")),
        0.0
    );
    assert_eq!(s.value("membound_cleanup_task_runs", &task("flaky")), 1.0);
    assert_eq!(s.value("membound_cleanup_task_errors", &task("flaky")), 1.0);
    assert_eq!(
        s.kind("membound_cleanup_task_last_duration_seconds"),
        ("gauge", "seconds")
    );
    assert!(
        s.value(
            "membound_cleanup_task_last_duration_seconds",
            &task("sessions")
        ) >= 0.0
    );
    assert_eq!(
        s.value("membound_cleanup_tasks", &[("cleanup", "main")]),
        2.0
    );
    assert_eq!(
        s.value("membound_cleanup_running", &[("cleanup", "main")]),
        0.0
    );
}

#[test]
fn a_tracking_allocator_exports_its_counts() {
    static HEAP: TrackingAllocator<System> = TrackingAllocator::with_heap_size(System, 1 << 20);
    let mut registry = Registry::default();
    let exporter = Exporter::register(&mut registry);
    exporter
        .add("arena", &HEAP, TrackingAllocator::stats)
        .unwrap();
    let small = Layout::from_size_align(1000, 8).unwrap();
    let large = Layout::from_size_align(3000, 8).unwrap();
    // SAFETY: both layouts have a non-zero size; `a` is freed once, with its layout.
    unsafe {
        let a = HEAP.alloc(small);
        let b = HEAP.alloc(large);
        assert!(!a.is_null() && !b.is_null());
        HEAP.dealloc(a, small);
        let s = scrape(&registry);
        HEAP.dealloc(b, large);

        let h = [("heap", "arena")];
        assert_eq!(s.kind("membound_heap_live_bytes"), ("gauge", "bytes"));
        assert_eq!(s.value("membound_heap_live_bytes", &h), 3000.0);
        assert_eq!(s.value("membound_heap_peak_bytes", &h), 4000.0);
        assert_eq!(s.kind("membound_heap_allocations"), ("counter", ""));
        assert_eq!(s.value("membound_heap_allocations", &h), 2.0);
        assert_eq!(s.value("membound_heap_deallocations", &h), 1.0);
        assert_eq!(s.value("membound_heap_size_bytes", &h), (1 << 20) as f64);
        assert_eq!(
            s.value("membound_heap_utilization_ratio", &h),
            3000.0 / (1 << 20) as f64
        );
    }
}

#[test]
fn backpressure_exports_sends_refusals_and_transitions() {
    let mut registry = Registry::default();
    let exporter = Exporter::register(&mut registry);
    let channel = Arc::new(
        Backpressure::new(
            BackpressureConfig::new(2)
                .with_policy(OverflowPolicy::Reject)
                .with_water_marks(WaterMarks::new(0.0, 1.0).unwrap()),
        )
        .unwrap(),
    );
    exporter
        .add("ingest", &channel, Backpressure::metrics)
        .unwrap();
    channel.try_send(1).unwrap();
    channel.try_send(2).unwrap(); // full: pauses
    assert!(channel.try_send(3).is_err()); // refused: paused
    channel.try_recv().unwrap();
    channel.try_recv().unwrap(); // empty: resumes
    channel.try_send(4).unwrap();
    let s = scrape(&registry);
    let l = [("backpressure", "ingest")];
    assert_eq!(s.kind("membound_backpressure_sent"), ("counter", ""));
    assert_eq!(s.value("membound_backpressure_sent", &l), 3.0);
    assert_eq!(s.value("membound_backpressure_received", &l), 2.0);
    assert_eq!(s.value("membound_backpressure_high_water_hits", &l), 1.0);
    assert_eq!(s.value("membound_backpressure_low_water_hits", &l), 1.0);
    assert_eq!(s.kind("membound_backpressure_paused"), ("gauge", ""));
    assert_eq!(s.value("membound_backpressure_paused", &l), 0.0);
    assert_eq!(s.value("membound_backpressure_len", &l), 1.0);
    let cause = |c| [("backpressure", "ingest"), ("cause", c)];
    assert_eq!(
        s.value("membound_backpressure_dropped", &cause("drop_oldest")),
        0.0
    );
    assert_eq!(
        s.value("membound_backpressure_refused", &cause("paused")),
        1.0
    );
    assert_eq!(
        s.value("membound_backpressure_refused", &cause("full")),
        0.0
    );
    assert_eq!(
        s.kind("membound_backpressure_blocked_time_seconds"),
        ("counter", "seconds")
    );
    assert_eq!(
        s.value("membound_backpressure_blocked_time_seconds", &l),
        0.0
    );
}

#[test]
fn pools_snapshot_vecs_and_state_stores_export_their_counts() {
    let mut registry = Registry::default();
    let exporter = Exporter::register(&mut registry);
    let pool = Arc::new(Pool::<Vec<u8>>::new(2).unwrap());
    let vec = Arc::new(SnapshotVec::from_vec(vec![1, 2]));
    exporter.add("buffers", &pool, Pool::metrics).unwrap();
    exporter.add("routes", &vec, SnapshotVec::metrics).unwrap();
    {
        let a = pool.get(); // miss
        let b = pool.get(); // miss
        let c = pool.get(); // miss
        drop((a, b, c)); // three returns; the third evicts the oldest (capacity 2)
        drop(pool.get()); // hit, returned
    }
    vec.push(3);
    vec.retain(|x| *x != 1);
    let s = scrape(&registry);
    let p = [("pool", "buffers")];
    assert_eq!(s.kind("membound_pool_hits"), ("counter", ""));
    assert_eq!(s.value("membound_pool_hits", &p), 1.0);
    assert_eq!(s.value("membound_pool_misses", &p), 3.0);
    assert_eq!(s.value("membound_pool_returns", &p), 4.0);
    assert_eq!(s.value("membound_pool_discarded", &p), 1.0);
    assert_eq!(s.kind("membound_pool_size"), ("gauge", ""));
    assert_eq!(s.value("membound_pool_size", &p), 2.0);
    let v = [("snapshot_vec", "routes")];
    assert_eq!(s.value("membound_snapshot_vec_writes", &v), 2.0);
    assert_eq!(s.value("membound_snapshot_vec_len", &v), 2.0);
}

#[cfg(feature = "state")]
#[test]
fn a_state_store_exports_its_counts_and_subscriptions() {
    use membound::adapters::state::subscription::SubscribeOptions;
    use membound::adapters::state::StateStore;

    let mut registry = Registry::default();
    let exporter = Exporter::register(&mut registry);
    let store = Arc::new(StateStore::new(Default::default()).unwrap());
    exporter.add_state("agent", &store).unwrap();
    let _sub = store.subscribe("/a", SubscribeOptions::new()).unwrap();
    store
        .apply_json(r#"[{"op":"add","path":"/a","value":1}]"#)
        .unwrap();
    store
        .apply_json(r#"[{"op":"add","path":"/b","value":2}]"#)
        .unwrap();
    assert!(store
        .apply_json(r#"[{"op":"remove","path":"/zz"}]"#)
        .is_err());
    assert!(store.apply_json("not json").is_err());
    let s = scrape(&registry);
    let l = [("state", "agent")];
    assert_eq!(s.value("membound_state_patches_applied", &l), 2.0);
    assert_eq!(s.kind("membound_state_revision"), ("gauge", ""));
    assert_eq!(s.value("membound_state_revision", &l), 2.0);
    let cause = |c| [("state", "agent"), ("cause", c)];
    assert_eq!(s.value("membound_state_rejected", &cause("failed")), 1.0);
    assert_eq!(s.value("membound_state_rejected", &cause("invalid")), 1.0);
    assert_eq!(s.value("membound_state_subscriptions", &l), 1.0);
    assert_eq!(s.value("membound_state_changes_published", &l), 2.0);
    assert_eq!(s.value("membound_state_changes_delivered", &l), 1.0);
    assert_eq!(s.value("membound_state_changes_queued", &l), 1.0);
    assert_eq!(s.kind("membound_state_document_bytes"), ("gauge", "bytes"));
    assert_eq!(
        s.value("membound_state_document_bytes", &l),
        r#"{"a":1,"b":2}"#.len() as f64
    );
}

/// A WebSocket server on loopback for the export tests: 2 connections at most,
/// queues of 4 events that drop the newest droppable event when full, and no
/// keepalive ping during a test (so the traffic counts are exactly the test's).
#[cfg(feature = "ws")]
async fn ws_server() -> (
    Arc<membound::adapters::ws::Server>,
    tokio::sync::mpsc::UnboundedReceiver<membound::adapters::ws::Connection>,
) {
    use membound::adapters::ws::Server;
    let mut config = ws::fast_config();
    config.max_connections = 2;
    config.connection.keepalive_interval = Duration::from_secs(60);
    config.connection.idle_timeout = Duration::from_secs(120);
    config.connection.outbound.capacity = 4;
    config.connection.outbound.droppable = OverflowPolicy::DropNewest;
    let (server, conns) = ws::serve(Server::builder(config)).await;
    (Arc::new(server), conns)
}

/// Runs on one thread (tokio's test default), so the connections' writers run only
/// when the test awaits something that waits: events broadcast without such an
/// await are all still queued at the next scrape.
#[cfg(feature = "ws")]
#[tokio::test]
async fn a_ws_server_exports_its_totals_and_optionally_each_connection() {
    use membound::adapters::ws::{close_code, Event, EventType, Server};
    use membound::capacity::SoftCapacity;
    use membound::pressure::{adaptive_size, PressureLevel};

    let mut registry = Registry::default();
    let exporter = Exporter::register(&mut registry);
    let (server, mut conns) = ws_server().await;
    // The same server twice: once with its connections, once with the totals only.
    exporter
        .add_ws_server_per_connection("detailed", &server)
        .unwrap();
    exporter.add("plain", &server, Server::metrics).unwrap();
    assert_eq!(
        exporter.add("plain", &server, Server::metrics),
        Err(ExportError::DuplicateName {
            kind: "ws_server",
            name: "plain".into()
        })
    );

    let mut a = ws::client(server.local_addr()).await;
    let conn_a = ws::next_conn(&mut conns).await;
    let mut b = ws::client(server.local_addr()).await;
    let conn_b = ws::next_conn(&mut conns).await;
    // Over max_connections: the handshake completes, then 1013.
    let mut refused = ws::client(server.local_addr()).await;
    assert_eq!(
        ws::read_to_close(&mut refused).await.1,
        close_code::TRY_AGAIN_LATER
    );

    // Broadcast into the shared log, once: each connection has the six events in its
    // backlog (its writer has not run: this test runs on one thread). The queue's
    // capacity and drop policy are for its private queue, not the log.
    let events: Vec<Event> = std::iter::once(Event::new(EventType::RunStarted))
        .chain((0..5).map(|i| Event::new(EventType::Raw).with("seq", i)))
        .collect();
    for event in &events {
        server.broadcast(event).await;
    }
    let queued_bytes: usize = events.iter().map(|e| e.encode().len()).sum();

    let s = scrape(&registry);
    for name in ["detailed", "plain"] {
        let l = [("ws_server", name)];
        assert_eq!(s.kind("membound_ws_server_connections"), ("gauge", ""));
        assert_eq!(s.value("membound_ws_server_connections", &l), 2.0);
        assert_eq!(s.kind("membound_ws_server_accepted"), ("counter", ""));
        assert_eq!(s.value("membound_ws_server_accepted", &l), 2.0);
        assert_eq!(s.value("membound_ws_server_queued_events", &l), 12.0);
        assert_eq!(
            s.kind("membound_ws_server_queued_bytes"),
            ("gauge", "bytes")
        );
        assert_eq!(
            s.value("membound_ws_server_queued_bytes", &l),
            (2 * queued_bytes) as f64
        );
        assert_eq!(s.value("membound_ws_server_broadcasts", &l), 6.0);
        assert_eq!(s.value("membound_ws_server_log_appended", &l), 6.0);
        assert_eq!(s.value("membound_ws_server_log_held_events", &l), 6.0);
        assert_eq!(
            s.kind("membound_ws_server_log_held_bytes"),
            ("gauge", "bytes")
        );
        assert_eq!(
            s.value("membound_ws_server_log_held_bytes", &l),
            queued_bytes as f64
        );
        assert_eq!(s.value("membound_ws_server_sent_events", &l), 0.0);
        assert_eq!(s.value("membound_ws_server_pressure_level", &l), 0.0);
        assert_eq!(
            s.kind("membound_ws_server_handshakes_pending"),
            ("gauge", "")
        );
        assert_eq!(s.value("membound_ws_server_handshakes_pending", &l), 0.0);
        assert_eq!(
            s.kind("membound_ws_server_handshakes_refused"),
            ("counter", "")
        );
        assert_eq!(s.value("membound_ws_server_handshakes_refused", &l), 0.0);
    }
    let cause = |c| [("ws_server", "detailed"), ("cause", c)];
    assert_eq!(s.kind("membound_ws_server_refused"), ("counter", ""));
    assert_eq!(
        s.value("membound_ws_server_refused", &cause("capacity")),
        1.0
    );
    assert_eq!(
        s.value("membound_ws_server_refused", &cause("pressure")),
        0.0
    );
    assert_eq!(
        s.value("membound_ws_server_refused", &cause("shutdown")),
        0.0
    );
    // Each connection, under the detailed name only.
    let id_a = conn_a.id().0.to_string();
    let id_b = conn_b.id().0.to_string();
    for id in [id_a.as_str(), id_b.as_str()] {
        let c = [("ws_server", "detailed"), ("conn", id)];
        assert_eq!(
            s.kind("membound_ws_server_conn_queued_events"),
            ("gauge", "")
        );
        assert_eq!(s.value("membound_ws_server_conn_queued_events", &c), 0.0);
        assert_eq!(
            s.value("membound_ws_server_conn_log_backlog_events", &c),
            6.0
        );
        assert_eq!(
            s.kind("membound_ws_server_conn_log_backlog_bytes"),
            ("gauge", "bytes")
        );
        assert_eq!(
            s.value("membound_ws_server_conn_log_backlog_bytes", &c),
            queued_bytes as f64
        );
        assert_eq!(s.value("membound_ws_server_conn_sent_events", &c), 0.0);
        let dropped = |class| [("ws_server", "detailed"), ("conn", id), ("class", class)];
        assert_eq!(s.kind("membound_ws_server_conn_dropped"), ("counter", ""));
        assert_eq!(
            s.value("membound_ws_server_conn_dropped", &dropped("droppable")),
            0.0
        );
        assert_eq!(
            s.value("membound_ws_server_conn_dropped", &dropped("lossless")),
            0.0
        );
    }
    assert_eq!(s.series("membound_ws_server_conn_queued_events").len(), 2);
    assert_eq!(s.series("membound_ws_server_conn_dropped").len(), 8);
    assert!(s
        .names()
        .iter()
        .filter(|n| n.starts_with("membound_ws_server_conn_"))
        .flat_map(|n| s.series(n))
        .all(|labels| labels["ws_server"] == "detailed"));

    // The clients read what was queued; A sends an event, B a text that is not one
    // (closed with 1007 under the default policy).
    for ws in [&mut a, &mut b] {
        assert_eq!(ws::next_event(ws).await.kind(), &EventType::RunStarted);
        for i in 0..5 {
            assert_eq!(ws::next_event(ws).await.get("seq").unwrap(), i);
        }
    }
    let custom = r#"{"type":"CUSTOM","name":"ping"}"#;
    ws::send_text(&mut a, custom).await;
    ws::send_text(&mut b, "not json").await;
    assert_eq!(
        ws::read_to_close(&mut b).await.1,
        close_code::INVALID_PAYLOAD
    );
    ws::eventually("A's event counted and B gone", || {
        let m = server.metrics();
        m.traffic.frames_in == 2 && m.connections == 1
    })
    .await;

    let s = scrape(&registry);
    let l = [("ws_server", "detailed")];
    assert_eq!(s.value("membound_ws_server_connections", &l), 1.0);
    // B's traffic stays in the totals after B ended.
    assert_eq!(s.kind("membound_ws_server_sent_events"), ("counter", ""));
    assert_eq!(s.value("membound_ws_server_sent_events", &l), 12.0);
    assert_eq!(
        s.kind("membound_ws_server_sent_bytes"),
        ("counter", "bytes")
    );
    assert_eq!(
        s.value("membound_ws_server_sent_bytes", &l),
        (2 * queued_bytes) as f64
    );
    assert_eq!(s.value("membound_ws_server_received_messages", &l), 2.0);
    assert_eq!(s.value("membound_ws_server_received_malformed", &l), 1.0);
    assert_eq!(
        s.value("membound_ws_server_received_bytes", &l),
        (custom.len() + "not json".len()) as f64
    );
    assert_eq!(s.value("membound_ws_server_queued_events", &l), 0.0);
    assert_eq!(s.value("membound_ws_server_queued_bytes", &l), 0.0);
    let reason = |r| [("ws_server", "detailed"), ("reason", r)];
    assert_eq!(s.kind("membound_ws_server_closed"), ("counter", ""));
    assert_eq!(
        s.value("membound_ws_server_closed", &reason("invalid_payload")),
        1.0
    );
    assert_eq!(
        s.value("membound_ws_server_closed", &reason("shutdown")),
        0.0
    );
    assert_eq!(s.series("membound_ws_server_closed").len(), 2 * 9);
    // A ended connection's series are gone; A's show what was written to it.
    let c = [("ws_server", "detailed"), ("conn", id_a.as_str())];
    assert_eq!(
        s.series("membound_ws_server_conn_sent_events"),
        [&c.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()]
    );
    assert_eq!(s.value("membound_ws_server_conn_sent_events", &c), 6.0);
    assert_eq!(
        s.kind("membound_ws_server_conn_sent_bytes"),
        ("counter", "bytes")
    );
    assert_eq!(
        s.value("membound_ws_server_conn_sent_bytes", &c),
        queued_bytes as f64
    );
    assert_eq!(s.value("membound_ws_server_conn_queued_events", &c), 0.0);

    // Critical pressure refuses new connections; shutdown closes A with 1001.
    // As a manager the server is registered with applies it.
    let critical = PressureLevel::Critical;
    server
        .apply_pressure(critical, adaptive_size(server.max_capacity(), critical))
        .unwrap();
    let mut late = ws::client(server.local_addr()).await;
    assert_eq!(
        ws::read_to_close(&mut late).await.1,
        close_code::TRY_AGAIN_LATER
    );
    // A answers the close frame while the shutdown waits for it.
    let ((), (_, code, _)) = tokio::join!(server.shutdown(), ws::read_to_close(&mut a));
    assert_eq!(code, close_code::GOING_AWAY);
    let s = scrape(&registry);
    assert_eq!(s.value("membound_ws_server_pressure_level", &l), 3.0);
    assert_eq!(
        s.value("membound_ws_server_refused", &cause("pressure")),
        1.0
    );
    assert_eq!(
        s.value("membound_ws_server_closed", &reason("shutdown")),
        1.0
    );
    assert_eq!(s.value("membound_ws_server_connections", &l), 0.0);
    assert!(s.series("membound_ws_server_conn_sent_events").is_empty());

    // Held weakly: the dropped server's series go, and its names are free again.
    drop(server);
    assert!(!render(&registry).contains("membound_ws_server"));
    let (again, _conns) = ws_server().await;
    exporter.add("plain", &again, Server::metrics).unwrap();
    let s = scrape(&registry);
    assert_eq!(
        s.value("membound_ws_server_accepted", &[("ws_server", "plain")]),
        0.0
    );
}

#[test]
fn names_are_escaped_not_injected() {
    let mut registry = Registry::default();
    let exporter = Exporter::register(&mut registry);
    let ring = Arc::new(Ring::<u8>::new(1).unwrap());
    let name = "a\"b\\c\nd} evil{x=\"1";
    exporter.add(name, &ring, RingCore::metrics).unwrap();
    let s = scrape(&registry);
    assert_eq!(s.value("membound_ring_capacity", &[("ring", name)]), 1.0);
}

#[test]
fn every_kind_renders_valid_openmetrics_and_prometheus_text() {
    static HEAP: TrackingAllocator<System> = TrackingAllocator::new(System);
    let mut registry = Registry::default();
    let exporter = Exporter::register(&mut registry);
    let ring = Arc::new(Ring::<u8>::new(2).unwrap());
    let table = Arc::new(
        TtlTable::<u8, u8, _>::new(2, Duration::from_secs(1), ManualClock::default()).unwrap(),
    );
    let script = Script::default();
    *script.0.lock().unwrap() = 0.5;
    let monitor = Arc::new(
        MemoryManager::with_source(MonitorConfig::production(), script, ManualClock::default())
            .unwrap(),
    );
    monitor.sample_now();
    let cleanup = Arc::new(CleanupManager::new(CleanupConfig::production()).unwrap());
    cleanup
        .register("t", || Ok::<_, std::convert::Infallible>(1))
        .unwrap();
    exporter.add("r", &ring, RingCore::metrics).unwrap();
    exporter.add("t", &table, TtlTableCore::metrics).unwrap();
    exporter.add("m", &monitor, MemoryManager::metrics).unwrap();
    exporter.add_cleanup("c", &cleanup).unwrap();
    exporter.add("h", &HEAP, TrackingAllocator::stats).unwrap();
    let channel = Arc::new(Backpressure::<u8>::new(BackpressureConfig::new(2)).unwrap());
    exporter.add("b", &channel, Backpressure::metrics).unwrap();
    let pool = Arc::new(Pool::<String>::new(2).unwrap());
    exporter.add("p", &pool, Pool::metrics).unwrap();
    let vec = Arc::new(SnapshotVec::<u8>::new());
    exporter.add("v", &vec, SnapshotVec::metrics).unwrap();
    #[cfg(feature = "state")]
    let store = Arc::new(membound::adapters::state::StateStore::new(Default::default()).unwrap());
    #[cfg(feature = "state")]
    exporter.add_state("s", &store).unwrap();
    exporter
        .add_sampler("s", Sampler::new(SamplerConfig::default()).unwrap())
        .unwrap();
    // A WebSocket server with one connection, for its per-connection families too.
    // The runtime runs only inside `block_on`: nothing moves between the renderings.
    #[cfg(feature = "ws")]
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    #[cfg(feature = "ws")]
    let (_ws_server, _ws_client) = runtime.block_on(async {
        let (server, mut conns) = ws_server().await;
        let client = ws::client(server.local_addr()).await;
        ws::next_conn(&mut conns).await;
        exporter.add_ws_server_per_connection("w", &server).unwrap();
        (server, client)
    });

    let open = scrape(&registry);
    let mut text = String::new();
    prometheus_client::encoding::prometheus_text::encode(&mut text, &registry).unwrap();
    let plain = Scrape::from_prometheus_text(&text);
    for kind in [
        "ring",
        "table",
        "monitor",
        "cleanup",
        "heap",
        "sampler",
        "backpressure",
        "pool",
        "snapshot_vec",
        #[cfg(feature = "state")]
        "state",
        #[cfg(feature = "ws")]
        "ws_server",
        #[cfg(feature = "ws")]
        "ws_server_conn",
    ] {
        let prefix = format!("membound_{kind}_");
        assert!(
            open.names().iter().any(|n| n.starts_with(&prefix)),
            "no {kind} families"
        );
    }
    // The same series in both formats (counters gain `_total` in the family name).
    assert_eq!(open.values.len(), plain.values.len());
    for ((family, labels), value) in &open.values {
        let name = match open.kind(family).0 {
            "counter" => format!("{family}_total"),
            _ => family.clone(),
        };
        let other = plain.values.get(&(name.clone(), labels.clone()));
        // Sampled figures (RSS, host memory) move between the two renderings.
        if !family.starts_with("membound_sampler_") && !family.starts_with("membound_heap_") {
            assert_eq!(other, Some(value), "{name}{labels:?}");
        }
    }
    // Every family name follows the conventions: prefix, unit suffix where declared.
    for (name, (kind, unit)) in &open.families {
        assert!(name.starts_with("membound_"), "{name}");
        assert!(kind == "counter" || kind == "gauge", "{name}: {kind}");
        assert!(!name.ends_with("_total"), "{name}: the encoder adds _total");
        if !unit.is_empty() {
            assert!(name.ends_with(&format!("_{unit}")), "{name} in {unit}");
        }
    }
}

fn exporter_with_a_ring() -> (Arc<Registry>, Exporter, Arc<Ring<u32>>) {
    let mut registry = Registry::default();
    let exporter = Exporter::register(&mut registry);
    let ring = Arc::new(Ring::new(16).unwrap());
    exporter.add("events", &ring, RingCore::metrics).unwrap();
    for i in 0..5 {
        ring.push(i).unwrap();
    }
    ring.try_pop();
    ring.try_pop();
    (Arc::new(registry), exporter, ring)
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into()
}

#[test]
fn the_server_is_scraped_over_http_in_both_formats() {
    let (registry, exporter, ring) = exporter_with_a_ring();
    let server = MetricsServer::spawn(TcpListener::bind("127.0.0.1:0").unwrap(), registry).unwrap();
    let url = format!("http://{}/metrics", server.local_addr());
    let agent = agent();

    let mut response = agent
        .get(&url)
        .header(
            "Accept",
            "application/openmetrics-text;version=1.0.0,text/plain;q=0.5",
        )
        .call()
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers().get("content-type").unwrap(),
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    let s = Scrape::from_openmetrics(&response.body_mut().read_to_string().unwrap());
    assert_eq!(s.value("membound_ring_pushed", &[("ring", "events")]), 5.0);
    assert_eq!(s.value("membound_ring_popped", &[("ring", "events")]), 2.0);

    // Components added after the server started show up in the next scrape.
    let late = Arc::new(Ring::<u8>::new(2).unwrap());
    exporter.add("late", &late, RingCore::metrics).unwrap();
    ring.push(9).unwrap();
    let mut response = agent.get(&url).call().unwrap(); // Accept: */*
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers().get("content-type").unwrap(),
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let s = Scrape::from_prometheus_text(&response.body_mut().read_to_string().unwrap());
    // The 0.0.4 text format names a counter family with its `_total`.
    assert_eq!(s.kind("membound_ring_pushed_total").0, "counter");
    assert_eq!(
        s.value("membound_ring_pushed_total", &[("ring", "events")]),
        6.0
    );
    assert_eq!(s.value("membound_ring_capacity", &[("ring", "late")]), 2.0);

    let head = agent.head(&url).call().unwrap();
    assert_eq!(head.status(), 200);
    let other = agent
        .get(format!("http://{}/", server.local_addr()))
        .call()
        .unwrap();
    assert_eq!(other.status(), 404);
    let post = agent.post(&url).send("x").unwrap();
    assert_eq!(post.status(), 405);
    assert_eq!(post.headers().get("allow").unwrap(), "GET, HEAD");
    server.shutdown();
}

/// Sends `request` raw and returns the response's status line and whether the
/// connection carried a full response.
fn raw(addr: std::net::SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    // A server that closes early may reset the rest of a long write: that is fine.
    let _ = stream.write_all(request);
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let response = String::from_utf8_lossy(&response);
    response.lines().next().unwrap_or("").to_string()
}

#[test]
fn requests_that_are_not_http_get_typed_errors_and_the_server_keeps_serving() {
    let (registry, _exporter, _ring) = exporter_with_a_ring();
    let server = MetricsServer::spawn(TcpListener::bind("127.0.0.1:0").unwrap(), registry).unwrap();
    let addr = server.local_addr();

    let bad: [&[u8]; 7] = [
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", // a TLS hello, cut short
        b"GET /metrics\r\n\r\n",
        b"GET /metrics HTTP/9.9\r\n\r\n",
        b"GET http//x HTTP/1.1\r\n\r\n",
        b"GET /metrics HTTP/1.1\r\nno-colon\r\n\r\n",
        b"GET /metrics HTTP/1.1\r\nHost: a", // closed inside the head
        b"\r\n\r\n",
    ];
    for request in bad {
        assert_eq!(
            raw(addr, request),
            "HTTP/1.1 400 Bad Request",
            "{:?}",
            String::from_utf8_lossy(request)
        );
    }
    let mut huge = b"GET /metrics HTTP/1.1\r\nX: ".to_vec();
    huge.extend(std::iter::repeat_n(b'a', 10_000));
    huge.extend_from_slice(b"\r\n\r\n");
    assert_eq!(
        raw(addr, &huge),
        "HTTP/1.1 431 Request Header Fields Too Large"
    );
    // Connect and leave without a byte.
    drop(TcpStream::connect(addr).unwrap());

    assert_eq!(
        raw(addr, b"GET /metrics HTTP/1.0\r\n\r\n"),
        "HTTP/1.1 200 OK",
        "still serving"
    );
    server.shutdown();
}

#[test]
fn dropping_the_server_stops_it() {
    let (registry, _exporter, _ring) = exporter_with_a_ring();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(MetricsServer::spawn(listener, registry).unwrap());
    // The listener closed with the thread: nobody accepts any more.
    assert!(TcpStream::connect(addr).is_err());
}
