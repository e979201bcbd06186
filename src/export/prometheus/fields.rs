//! Every field of every metrics snapshot is exported, once, under its own name.
//!
//! The `impl Metrics` next to each struct destructures it exhaustively, so a field
//! added and not bound fails to compile. These tests catch what compiles: a field
//! bound and never visited, one visited twice or under another's name, a family
//! described two ways. For each kind, a snapshot with every optional figure present
//! is visited; its series must be unique, and there must be exactly one per scalar
//! leaf of the struct's `{:#?}` output (each field, each array element), less the
//! leaves listed as not exported (with why), plus the ones listed as derived.
//!
//! The module docs' table is checked too: it lists every kind, and nothing else.

use std::collections::{BTreeSet, HashMap};
use std::fmt::Debug;
use std::format;
use std::string::{String, ToString};
use std::vec::Vec;
use std::{println, vec};

use crate::backpressure::BackpressureMetrics;
use crate::heap::HeapStats;
use crate::metrics::{Metric, MetricKind, Metrics, Unit, Value};
use crate::monitor::{MonitorMetrics, PsiWakeState};
use crate::os::{EffectiveLimit, LimitSource, MemorySample, Psi};
use crate::pool::PoolMetrics;
use crate::pressure::{PressureLevel, Transition};
use crate::ring::RingMetrics;
use crate::schedule::TaskMetrics;
use crate::slice::SnapshotVecMetrics;
use crate::table::TableMetrics;

/// The scalar leaves of a pretty `Debug` rendering, as dotted field paths
/// (`last_sample.limit.bytes`; an array element or an `Option`'s content takes its
/// field's path).
fn leaves(debug: &str) -> Vec<String> {
    let mut path: Vec<Option<String>> = Vec::new();
    let mut leaves = Vec::new();
    let field = |t: &str| {
        t.split_once(": ")
            .map(|(name, _)| name)
            .filter(|name| name.chars().all(|c| c.is_alphanumeric() || c == '_'))
            .map(str::to_string)
    };
    let dotted = |path: &[Option<String>], last: Option<String>| {
        let names: Vec<_> = path.iter().cloned().chain([last]).flatten().collect();
        names.join(".")
    };
    for line in debug.lines() {
        let t = line.trim();
        if t.starts_with(['}', ')', ']']) {
            path.pop();
        } else if t.ends_with(['{', '(', '[']) {
            path.push(field(t));
        } else {
            leaves.push(dotted(&path, field(t)));
        }
    }
    leaves
}

/// One visited metric, owned.
#[derive(Debug)]
struct Seen {
    name: String,
    labels: Vec<(String, String)>,
    kind: MetricKind,
    unit: Unit,
    help: &'static str,
    value: Value,
}

fn visit<M: Metrics>(snapshot: &M) -> Vec<Seen> {
    let mut seen = Vec::new();
    snapshot.visit(&mut |m: Metric<'_>| {
        seen.push(Seen {
            name: m.name.to_string(),
            labels: m
                .labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            kind: m.kind,
            unit: m.unit,
            help: m.help,
            value: m.value,
        });
    });
    seen
}

/// Checks `snapshot`: one series per leaf of its `Debug` output, less the leaves
/// under the fields in `not_exported` (dotted paths), plus `derived`.
fn check<M: Metrics + Debug>(snapshot: &M, not_exported: &[&str], derived: usize) {
    let kind = M::KIND;
    let seen = visit(snapshot);
    let mut series = BTreeSet::new();
    let mut families: HashMap<&str, (MetricKind, Unit, &str)> = HashMap::new();
    for s in &seen {
        assert!(
            series.insert((s.name.as_str(), s.labels.clone())),
            "{kind}: series {}{:?} visited twice",
            s.name,
            s.labels
        );
        let described = (s.kind, s.unit, s.help);
        let first = *families.entry(&s.name).or_insert(described);
        assert_eq!(
            first, described,
            "{kind}: family {} described two ways",
            s.name
        );
        assert!(!s.name.is_empty() && !s.help.is_empty(), "{kind}: {s:?}");
        assert!(
            s.name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
            "{kind}: name {:?}",
            s.name
        );
        let counter = s.kind == MetricKind::Counter;
        assert!(
            !(counter && s.name.ends_with("_total")),
            "{kind}: {} (readers add _total)",
            s.name
        );
        let suffix = match s.unit {
            Unit::Bytes => Some("bytes"),
            Unit::Seconds => Some("seconds"),
            Unit::Ticks | Unit::None => None,
        };
        if let Some(suffix) = suffix {
            assert!(
                s.name != suffix && !s.name.ends_with(&format!("_{suffix}")),
                "{kind}: {} (readers add _{suffix})",
                s.name
            );
        }
        match (s.value, s.unit) {
            (Value::Duration(_), Unit::Seconds) | (Value::U64(_), Unit::Ticks) => {}
            (Value::Duration(_), _) | (_, Unit::Ticks) | (_, Unit::Seconds) => {
                panic!("{kind}: {} mixes a duration and its unit", s.name)
            }
            _ => {}
        }
    }
    let debug = format!("{snapshot:#?}");
    let all = leaves(&debug);
    // Under a left-out field: its path holds the field's path as whole components.
    let under = |leaf: &str, n: &str| format!(".{leaf}.").contains(&format!(".{n}."));
    let skipped = |leaf: &String| not_exported.iter().any(|n| under(leaf, n));
    let exported: Vec<_> = all.iter().filter(|l| !skipped(l)).collect();
    for n in not_exported {
        assert!(
            all.iter().any(|l| under(l, n)),
            "{kind}: no field {n} to leave out"
        );
    }
    let names: Vec<_> = seen
        .iter()
        .map(|s| format!("{}{:?}", s.name, s.labels))
        .collect();
    assert_eq!(
        seen.len(),
        exported.len() + derived,
        "{kind}: {} series for {} fields (+{derived} derived): a field is not exported, or \
         exported twice\nseries: {names:#?}\nfields: {exported:#?}",
        seen.len(),
        exported.len(),
    );
    println!("{kind}: {} series, every field", seen.len());
}

fn sample() -> MemorySample {
    MemorySample {
        rss: Some(1),
        peak_rss: Some(2),
        cgroup_usage: Some(3),
        working_set: Some(4),
        limit: Some(EffectiveLimit {
            bytes: 5,
            source: LimitSource::User,
        }),
        mem_total: Some(6),
        mem_available: Some(7),
        psi: Some(Psi {
            some_avg10: 8.0,
            full_avg10: Some(9.0),
        }),
        heap: Some(10),
        used: Some(11),
        utilization: Some(0.5),
        errors: 12,
    }
}

/// The sample's own error count (the readers export running totals) and the
/// limit's source (a label of the limit, not a figure).
const SAMPLE_NOT_EXPORTED: [&str; 2] = ["errors", "limit.source"];

#[test]
fn every_core_field_is_exported() {
    check(&RingMetrics::default(), &[], 0);
    check(&TableMetrics::default(), &[], 0);
    check(&BackpressureMetrics::default(), &[], 0);
    check(&PoolMetrics::default(), &[], 0);
    check(&SnapshotVecMetrics::default(), &[], 0);
    let task = TaskMetrics {
        runs: 1,
        cleaned: 2,
        errors: 3,
        last_error: Some("disk offline"),
        last_run: Some(4),
        last_duration: 5,
        avg_duration: 6,
        overruns: 7,
    };
    // An error value, and a tick on the schedule's private clock.
    check(&task, &["last_error", "last_run"], 0);
    let heap = HeapStats {
        heap_size: Some(1000),
        live_bytes: 10,
        ..HeapStats::default()
    };
    // `utilization_ratio`, from `live_bytes` and `heap_size`.
    check(&heap, &[], 1);
}

#[test]
fn every_monitor_and_sample_field_is_exported() {
    check(&sample(), &SAMPLE_NOT_EXPORTED, 0);
    let monitor = MonitorMetrics {
        samples: 1,
        last_sample: Some(sample()),
        level: PressureLevel::High,
        scale: 0.5,
        transitions_into: [1, 2, 3, 4],
        time_in: [core::time::Duration::from_secs(1); 4],
        last_transition: Some(Transition {
            from: PressureLevel::Normal,
            to: PressureLevel::High,
            utilization: 0.9,
            at: 7,
        }),
        trims: 2,
        bytes_released: 3,
        sampling_errors: 4,
        unmeasured_samples: 5,
        threshold_fallbacks: 8,
        threshold_fallback: true,
        callback_panics: 6,
        subscribers: 7,
        psi_wake: PsiWakeState::Off,
    };
    // An event (its level and count are exported) and a mode, not figures.
    let mut skip = vec!["last_transition", "psi_wake"];
    skip.extend(SAMPLE_NOT_EXPORTED);
    check(&monitor, &skip, 0);
}

#[test]
fn every_budget_field_is_exported() {
    use crate::capacity::Footprint;
    use crate::pressure::{BudgetEntry, TargetId};
    let entry = |id, name: &str, footprint| BudgetEntry {
        id: TargetId(id),
        name: name.into(),
        kind: "ring",
        footprint,
        capacity: 3,
        max_capacity: 4,
    };
    let budget = crate::monitor::Budget {
        components: vec![
            entry(
                1,
                "events",
                Some(Footprint {
                    bytes: 1,
                    max_bytes: 2,
                }),
            ),
            entry(
                2,
                "jobs",
                Some(Footprint {
                    bytes: 5,
                    max_bytes: 6,
                }),
            ),
        ],
        total_bytes: 1,
        total_max_bytes: 2,
        limit: Some(10),
        share_of_limit: Some(0.1),
    };
    // Labels (the id only tells registrations apart), and the limit, which the
    // monitor exports.
    let skip = ["id", "name", "kind", "limit"];
    check(&budget, &skip, 0);
}

#[cfg(feature = "state")]
#[test]
fn every_state_field_is_exported() {
    use crate::adapters::state::subscription::SubscriptionMetrics;
    use crate::adapters::state::StateMetrics;
    check(&StateMetrics::default(), &[], 0);
    check(&SubscriptionMetrics::default(), &[], 0);
}

#[cfg(feature = "ws")]
#[test]
fn every_ws_field_is_exported() {
    use crate::adapters::ws::{
        ClassMetrics, ClientMetrics, CloseCounts, CloseReason, ConnId, ConnectionMetrics,
        EngineMetrics, HubMetrics, InboundMetrics, OutboundMetrics, ServerMetrics, Traffic,
    };
    check(&EngineMetrics::default(), &[], 0);
    check(&ClassMetrics::default(), &[], 0);
    let outbound = OutboundMetrics {
        closed: Some(CloseReason::Normal),
        ..OutboundMetrics::default()
    };
    check(&outbound, &[], 0);
    check(&HubMetrics::default(), &[], 0);
    check(&InboundMetrics::default(), &[], 0);
    let connection = ConnectionMetrics {
        id: ConnId(1),
        peer: Some(std::net::SocketAddr::from(([127, 0, 0, 1], 80))),
        traffic: Traffic::default(),
        close_handshake: true,
        outbound,
        inbound: InboundMetrics::default(),
        close_reason: Some(CloseReason::Normal),
    };
    // Identities (readers label the series with them) and why it ended (the
    // server counts reasons).
    let identities = ["id", "peer", "close_reason"];
    check(&connection, &identities, 0);
    let client = ClientMetrics {
        connection,
        reconnects: 1,
        failed_attempts: 2,
    };
    check(&client, &identities, 0);
    let server = ServerMetrics {
        connections: 1,
        accepted: 2,
        refused_capacity: 3,
        refused_pressure: 4,
        refused_shutdown: 5,
        refused_handshakes: 6,
        pending_handshakes: 7,
        handshake_failures: 8,
        accept_errors: 9,
        traffic: Traffic::default(),
        queued_events: 10,
        queued_bytes: 11,
        closed: CloseCounts::default(),
        hub: HubMetrics::default(),
        pressure: PressureLevel::Low,
        refused_engine: 12,
        engine: EngineMetrics::default(),
    };
    // The hub's queues are the server's connections.
    check(&server, &["hub.connections"], 0);
}

/// The kinds the exporter can export: every `impl Metrics` of the crate, and the
/// readers of the exporter's own wrappers.
fn kinds() -> Vec<&'static str> {
    let mut kinds = Vec::new();
    kinds.extend([
        RingMetrics::KIND,
        TableMetrics::KIND,
        BackpressureMetrics::KIND,
        PoolMetrics::KIND,
        SnapshotVecMetrics::KIND,
        HeapStats::KIND,
        MonitorMetrics::KIND,
        crate::monitor::Budget::KIND,
        MemorySample::KIND,
        <super::readers::CleanupSnapshot as Metrics>::KIND,
        TaskMetrics::<()>::KIND,
    ]);
    #[cfg(feature = "state")]
    kinds.extend([
        crate::adapters::state::StateMetrics::KIND,
        crate::adapters::state::subscription::SubscriptionMetrics::KIND,
    ]);
    #[cfg(feature = "ws")]
    {
        use crate::adapters::ws::*;
        kinds.extend([
            ServerMetrics::KIND,
            ClientMetrics::KIND,
            ConnectionMetrics::KIND,
            HubMetrics::KIND,
            OutboundMetrics::KIND,
            InboundMetrics::KIND,
            ClassMetrics::KIND,
            LogMetrics::KIND,
            EngineMetrics::KIND,
        ]);
    }
    kinds
}

#[test]
fn the_module_docs_list_every_kind() {
    let source = include_str!("../prometheus.rs");
    // Rows of the kinds table: "| `kind` |" at the start of a doc line.
    let listed: BTreeSet<&str> = source
        .lines()
        .filter_map(|line| {
            let row = line
                .trim_start()
                .trim_start_matches("//!")
                .trim_start_matches("doc = \"")
                .trim_start();
            row.strip_prefix("| `")?
                .split_once("` |")
                .map(|(kind, _)| kind)
        })
        .filter(|kind| !kind.starts_with("membound_"))
        .collect();
    let known: BTreeSet<&str> = kinds().into_iter().collect();
    let missing: Vec<_> = known.difference(&listed).collect();
    assert!(
        missing.is_empty(),
        "kinds missing from the module docs' table: {missing:?}"
    );
    #[cfg(all(feature = "ws", feature = "state"))]
    {
        let unknown: Vec<_> = listed.difference(&known).collect();
        assert!(
            unknown.is_empty(),
            "the table lists kinds no snapshot has: {unknown:?}"
        );
    }
}
