//! (`prometheus` feature) Exporting every component's metrics to monitoring systems.
//!
//! An adapter layer: it reads the components' public `metrics()` snapshots and owns
//! no counters of its own. [`prometheus`] exposes them through the Prometheus
//! project's `prometheus-client` registry and serves them over HTTP.

pub mod prometheus;
