//! The readers of the components whose snapshot takes more than one public call:
//! the sampler (owned, behind a lock), the cleanup manager (one call per task) and
//! the WebSocket server with its connections. Each assembles its snapshot and walks
//! the components' own [`Metrics`] impls.

#[cfg(feature = "ws")]
use std::string::ToString;
use std::sync::{Mutex, PoisonError};
use std::vec::Vec;

#[cfg(feature = "ws")]
use crate::adapters::ws::{ConnectionMetrics, Server, ServerMetrics};
use crate::cleanup::{CleanupManager, TaskFailure};
use crate::clock::{Clock, MonotonicClock};
use crate::metrics::{Metric, Metrics, Scoped, Unit, Value, Visitor};
use crate::os::{MemorySample, Sampler};
use crate::schedule::TaskMetrics;

/// A fresh sample and the sampler's error count.
pub(super) struct SamplerReading {
    sample: MemorySample,
    errors: u64,
}

pub(super) fn sampler(sampler: &Mutex<Sampler>) -> SamplerReading {
    // A panic inside `sample` cannot leave the sampler half-updated in a way a later
    // sample would trust: each sample re-reads every file.
    let mut sampler = sampler.lock().unwrap_or_else(PoisonError::into_inner);
    SamplerReading {
        sample: sampler.sample(),
        errors: sampler.errors(),
    }
}

impl Metrics for SamplerReading {
    const KIND: &'static str = MemorySample::KIND;

    fn visit(&self, out: &mut dyn Visitor) {
        let help = "Fields that failed to read or parse.";
        out.metric(Metric::counter("errors", help, self.errors));
        self.sample.visit(out);
    }
}

/// A cleanup manager's state, assembled from its public calls.
pub(super) struct CleanupSnapshot {
    running: bool,
    tasks: Vec<(&'static str, TaskMetrics<TaskFailure>)>,
}

pub(super) fn cleanup(manager: &CleanupManager) -> CleanupSnapshot {
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

impl Metrics for CleanupSnapshot {
    const KIND: &'static str = "cleanup";

    fn visit(&self, out: &mut dyn Visitor) {
        out.metric(Metric::gauge(
            "running",
            "1 if the workers run.",
            self.running,
        ));
        out.metric(Metric::gauge(
            "tasks",
            "Registered tasks.",
            self.tasks.len(),
        ));
        for (task, m) in &self.tasks {
            let mut scoped = Scoped::new(out).prefix("task_").label("task", task);
            // The manager's tasks run on a MonotonicClock (module docs of `cleanup`).
            let clock = MonotonicClock::new();
            m.visit(&mut InSeconds {
                out: &mut scoped,
                clock,
            });
        }
    }
}

/// Turns durations in ticks of `clock` into seconds.
struct InSeconds<'v, C> {
    out: &'v mut dyn Visitor,
    clock: C,
}

impl<C: Clock> Visitor for InSeconds<'_, C> {
    fn metric(&mut self, metric: Metric<'_>) {
        match (metric.unit, metric.value) {
            (Unit::Ticks, Value::U64(ticks)) => {
                let value = Value::Duration(self.clock.duration_of(ticks));
                self.out.metric(Metric {
                    value,
                    ..metric.seconds()
                });
            }
            _ => self.out.metric(metric),
        }
    }
}

/// What the exporter reads from a WebSocket server: its totals and the metrics of
/// its open connections.
#[cfg(feature = "ws")]
pub(super) struct WsServerSnapshot {
    totals: ServerMetrics,
    connections: Vec<ConnectionMetrics>,
}

#[cfg(feature = "ws")]
pub(super) fn ws_server_per_connection(server: &Server) -> WsServerSnapshot {
    WsServerSnapshot {
        totals: server.metrics(),
        connections: server.connection_metrics(),
    }
}

/// The families of a connection exported per connection: few, to bound the series
/// (see [`Exporter::add_ws_server_per_connection`](super::Exporter::add_ws_server_per_connection)).
#[cfg(feature = "ws")]
fn per_connection(name: &str) -> bool {
    matches!(
        name,
        "queued_events"
            | "queued"
            | "log_backlog_events"
            | "log_backlog"
            | "sent_events"
            | "sent"
            | "dropped"
    )
}

#[cfg(feature = "ws")]
impl Metrics for WsServerSnapshot {
    const KIND: &'static str = ServerMetrics::KIND;

    fn visit(&self, out: &mut dyn Visitor) {
        self.totals.visit(out);
        for c in &self.connections {
            let id = c.id.0.to_string();
            let mut scoped = Scoped::new(out)
                .prefix("conn_")
                .label("conn", &id)
                .filter(per_connection);
            c.visit(&mut scoped);
        }
    }
}
