//! One scrape: the metrics every component visited, grouped into families, and
//! their encoding through `prometheus-client`.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::format;
use std::string::{String, ToString};
use std::vec::Vec;

use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;

use crate::metrics::{Metric, MetricKind, Unit, Value, Visitor};

/// One family: its full name without unit or `_total`, and what every series of it
/// shares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Family {
    pub(super) name: String,
    pub(super) help: &'static str,
    pub(super) kind: MetricKind,
    pub(super) unit: Unit,
}

/// A sample's value: integers stay exact, fractions and seconds are floats.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Sample {
    Int(u64),
    Float(f64),
}

impl From<Value> for Sample {
    fn from(value: Value) -> Self {
        match value {
            Value::U64(v) => Self::Int(v),
            Value::F64(v) => Self::Float(v),
            Value::Duration(d) => Self::Float(d.as_secs_f64()),
        }
    }
}

pub(super) type Label = (Cow<'static, str>, Cow<'static, str>);

/// One series of a family: its labels (the instance label first) and value.
#[derive(Debug)]
pub(super) struct Series {
    pub(super) labels: Vec<Label>,
    pub(super) value: Sample,
}

/// Everything one scrape collected, grouped by family in first-seen order.
#[derive(Debug, Default)]
pub(super) struct Scrape {
    pub(super) families: Vec<(Family, Vec<Series>)>,
    index: HashMap<(String, Unit), usize>,
}

impl Scrape {
    /// The visitor for one component of `kind`, added under `instance`.
    pub(super) fn component<'a>(
        &'a mut self,
        kind: &'static str,
        instance: &'a str,
    ) -> Collect<'a> {
        Collect {
            scrape: self,
            kind,
            instance,
        }
    }

    fn push(&mut self, family: Family, series: Series) {
        let key = (family.name.clone(), family.unit);
        let i = match self.index.get(&key) {
            Some(&i) => i,
            None => {
                self.families.push((family.clone(), Vec::new()));
                self.index.insert(key, self.families.len() - 1);
                self.families.len() - 1
            }
        };
        let (first, list) = &mut self.families[i];
        // One name, one meaning: a family described two ways is a bug in an `impl
        // Metrics`, caught by the tests; in release the first description wins.
        debug_assert_eq!(*first, family, "family {} redefined", family.name);
        list.push(series);
    }

    pub(super) fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> fmt::Result {
        for (family, series) in &self.families {
            let metric_type = match family.kind {
                MetricKind::Counter => MetricType::Counter,
                MetricKind::Gauge => MetricType::Gauge,
            };
            let unit = match family.unit {
                Unit::Bytes => Some(prometheus_client::registry::Unit::Bytes),
                Unit::Seconds => Some(prometheus_client::registry::Unit::Seconds),
                Unit::Ticks => Some(prometheus_client::registry::Unit::Other(
                    "ticks".to_string(),
                )),
                Unit::None => None,
            };
            let mut metric =
                encoder.encode_descriptor(&family.name, family.help, unit.as_ref(), metric_type)?;
            for s in series {
                let sample = metric.encode_family(&s.labels)?;
                match (family.kind, s.value) {
                    (MetricKind::Counter, Sample::Int(v)) => ConstCounter::new(v).encode(sample)?,
                    (MetricKind::Counter, Sample::Float(v)) => {
                        ConstCounter::new(v).encode(sample)?
                    }
                    (MetricKind::Gauge, Sample::Int(v)) => ConstGauge::new(v).encode(sample)?,
                    (MetricKind::Gauge, Sample::Float(v)) => ConstGauge::new(v).encode(sample)?,
                }
            }
        }
        Ok(())
    }
}

/// Collects the metrics of one component into a [`Scrape`]: `membound_<kind>_<name>`,
/// with the component's name as the first label.
pub(super) struct Collect<'a> {
    scrape: &'a mut Scrape,
    kind: &'static str,
    instance: &'a str,
}

impl Visitor for Collect<'_> {
    fn metric(&mut self, metric: Metric<'_>) {
        let family = Family {
            name: format!("membound_{}_{}", self.kind, metric.name),
            help: metric.help,
            kind: metric.kind,
            unit: metric.unit,
        };
        let mut labels = Vec::with_capacity(1 + metric.labels.len());
        labels.push((
            Cow::Borrowed(self.kind),
            Cow::Owned(self.instance.to_string()),
        ));
        labels.extend(
            metric
                .labels
                .iter()
                .map(|&(k, v)| (Cow::Owned(k.to_string()), Cow::Owned(v.to_string()))),
        );
        let value = metric.value.into();
        self.scrape.push(family, Series { labels, value });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;

    struct Two(u64, u64);

    impl Metrics for Two {
        const KIND: &'static str = "two";

        fn visit(&self, out: &mut dyn Visitor) {
            out.metric(Metric::counter("a", "A.", self.0));
            let b = Metric::gauge("b", "B.", self.1).bytes();
            out.metric(b.with_labels(&[("side", "left")]));
        }
    }

    fn collect(instances: &[(&str, Two)]) -> Scrape {
        let mut scrape = Scrape::default();
        for (name, snapshot) in instances {
            snapshot.visit(&mut scrape.component(Two::KIND, name));
        }
        scrape
    }

    #[test]
    fn instances_are_grouped_by_family_in_first_seen_order() {
        let scrape = collect(&[("x", Two(1, 2)), ("y", Two(3, 4))]);
        let families: Vec<_> = scrape
            .families
            .iter()
            .map(|(f, s)| (f.name.as_str(), s.len()))
            .collect();
        assert_eq!(families, [("membound_two_a", 2), ("membound_two_b", 2)]);
        let (b, series) = &scrape.families[1];
        assert_eq!(b.unit, Unit::Bytes);
        assert_eq!(
            series[1].labels,
            [
                (Cow::from("two"), Cow::from("y")),
                (Cow::from("side"), Cow::from("left"))
            ]
        );
        assert_eq!(series[1].value, Sample::Int(4));
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "family membound_two_a redefined")]
    fn a_family_described_two_ways_is_caught() {
        let mut scrape = collect(&[("x", Two(1, 2))]);
        scrape
            .component("two", "y")
            .metric(Metric::gauge("a", "A.", 0u64));
    }
}
