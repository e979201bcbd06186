//! The crate's one metrics vocabulary: a [`Metrics`] snapshot visits its fields, one
//! [`Metric`] at a time, into any [`Visitor`].
//!
//! Every component keeps a plain `metrics()` snapshot struct (rule 7 of the design).
//! Each such struct derives [`Metrics`](macro@Metrics), which says, field by field,
//! what the field is: its name, whether it is a counter or a gauge, its unit, a line
//! of help (the first sentence of the field's doc comment: one copy of each
//! description), its value, and the labels that tell apart the fields of one family
//! (a cause, a level, a delivery class). Whatever reads metrics — the Prometheus
//! exporter (`export::prometheus`, feature `prometheus`), a test, a log line — walks
//! any component the same way, without knowing its fields. A snapshot whose figures
//! need more than a field each (nested per-class snapshots, a limit with its source
//! as a label) implements [`Metrics`](trait@Metrics) by hand.
//!
//! The trait is core: no `std`, no allocation. A [`Metric`] borrows its name, help
//! and labels; a visitor that keeps them copies them.
//!
//! # How to add a metric
//!
//! 1. Add the field to the `*Metrics` struct, with a doc comment, and fill it in
//!    `metrics()`.
//! 2. Say what it is: `#[metric(counter)]` or `#[metric(gauge)]` (a struct marked
//!    `#[metrics(counters)]` takes an unmarked field as a counter), with
//!    `unit = "bytes"` (or `"seconds"`, `"ticks"`), `name = "..."`,
//!    `label("cause", "...")` and `help = "..."` for a field of a family, or
//!    `with = path` to export `path(field)`. A field that is itself a snapshot
//!    is `#[metric(nested)]` (`nested(prefix = "...")` to put a prefix before
//!    its names); figures that are not one per field (a count per class in an
//!    array) are `#[metric(visit = path)]`, `path(&field, out)` visiting them.
//!    A field that is not a figure (an
//!    identity, an error value, a timestamp on a private clock) is
//!    `#[metric(skip)]`, with a comment that says why. Every other field is
//!    exported, so none is forgotten; an unmarked field in a struct without
//!    `counters` does not compile.
//! 3. Name it without a unit or `_total` (readers append those). An `Option` field
//!    that is `None` exports nothing: an absent figure is not a zero.
//! 4. The exporter's field test (`src/export/prometheus/fields.rs`) checks that the
//!    number of series equals the number of fields; add the field to its value there.
//!
//! ```
//! use membound::metrics::{Metric, Metrics};
//!
//! #[derive(Metrics)]
//! #[metrics(kind = "cache")]
//! struct CacheMetrics {
//!     /// Lookups that found an entry.
//!     #[metric(counter)]
//!     hits: u64,
//!     #[metric(counter, name = "evicted", label("cause", "room"), help = "Entries evicted, by cause.")]
//!     evicted_for_room: u64,
//!     #[metric(counter, name = "evicted", label("cause", "expired"), help = "Entries evicted, by cause.")]
//!     evicted_expired: u64,
//!     /// Bytes held now, if known.
//!     #[metric(gauge, name = "size", unit = "bytes")]
//!     bytes: Option<usize>,
//! }
//!
//! let cache = CacheMetrics { hits: 5, evicted_for_room: 1, evicted_expired: 0, bytes: None };
//! let mut names = Vec::new();
//! cache.visit(&mut |m: Metric<'_>| names.push((m.name.to_string(), m.help, m.labels.len())));
//! assert_eq!(names[0], ("hits".to_string(), "Lookups that found an entry.", 0));
//! assert_eq!(names.len(), 3); // no size: it is not known
//! ```
//!
//! # Examples
//!
//! A component implemented by hand, and a visitor that prints what it visits:
//!
//! ```
//! use membound::metrics::{Metric, Metrics, Visitor};
//!
//! /// A cache's counters.
//! struct CacheMetrics {
//!     hits: u64,
//!     misses: u64,
//!     evicted_for_room: u64,
//!     evicted_expired: u64,
//!     bytes: usize,
//! }
//!
//! impl Metrics for CacheMetrics {
//!     const KIND: &'static str = "cache";
//!
//!     fn visit(&self, out: &mut dyn Visitor) {
//!         // Exhaustive: a field added to the struct is a compile error here.
//!         let CacheMetrics { hits, misses, evicted_for_room, evicted_expired, bytes } = *self;
//!         out.metric(Metric::counter("hits", "Lookups that found an entry.", hits));
//!         out.metric(Metric::counter("misses", "Lookups that found nothing.", misses));
//!         // One family, told apart by a label.
//!         let evicted = |n| Metric::counter("evicted", "Entries evicted, by cause.", n);
//!         out.metric(evicted(evicted_for_room).with_labels(&[("cause", "room")]));
//!         out.metric(evicted(evicted_expired).with_labels(&[("cause", "expired")]));
//!         out.metric(Metric::gauge("size", "Bytes held now.", bytes).bytes());
//!     }
//! }
//!
//! let cache = CacheMetrics { hits: 5, misses: 2, evicted_for_room: 1, evicted_expired: 0, bytes: 640 };
//! let mut lines = Vec::new();
//! // Any `FnMut(Metric<'_>)` is a visitor.
//! cache.visit(&mut |m: Metric<'_>| {
//!     let labels: Vec<String> = m.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
//!     lines.push(format!("{}_{} {:?} {:?} {:?} [{}]", CacheMetrics::KIND, m.name, m.kind, m.unit, m.value, labels.join(",")));
//! });
//! assert_eq!(lines[0], "cache_hits Counter None U64(5) []");
//! assert_eq!(lines[2], "cache_evicted Counter None U64(1) [cause=room]");
//! assert_eq!(lines[4], "cache_size Gauge Bytes U64(640) []");
//! ```

use core::fmt;
use core::time::Duration;

/// Derives [`Metrics`](trait@Metrics) for a snapshot struct; see the
/// [module docs](self) for its attributes.
pub use membound_derive::Metrics;

/// A counter or a gauge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MetricKind {
    /// A running total that only goes up (Prometheus appends `_total`).
    Counter,
    /// A value that goes up and down: a level, a size, a flag.
    Gauge,
}

/// The unit of a metric. Readers append it to the name (`_bytes`, `_seconds`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Unit {
    /// A count, a level, a flag or a ratio (a ratio says so in its name: `_ratio`).
    None,
    /// Bytes.
    Bytes,
    /// Seconds; the value is usually a [`Value::Duration`].
    Seconds,
    /// Ticks of the component's [`Clock`](crate::clock::Clock): a duration the
    /// component cannot turn into time itself. A reader that knows the clock turns
    /// it into seconds with [`Clock::duration_of`](crate::clock::Clock::duration_of).
    Ticks,
}

/// A metric's value: integers stay exact, fractions are floats, durations are
/// durations (readers render them in seconds).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value {
    /// A count or an integer size.
    U64(u64),
    /// A fraction or a scale factor.
    F64(f64),
    /// A span of time.
    Duration(Duration),
}

impl From<u64> for Value {
    fn from(v: u64) -> Self {
        Self::U64(v)
    }
}

impl From<u32> for Value {
    fn from(v: u32) -> Self {
        Self::U64(u64::from(v))
    }
}

impl From<usize> for Value {
    fn from(v: usize) -> Self {
        // usize is at most 64 bits on every supported target.
        Self::U64(v as u64)
    }
}

impl From<bool> for Value {
    /// 1 for `true`, 0 for `false`.
    fn from(v: bool) -> Self {
        Self::U64(u64::from(v))
    }
}

impl From<f64> for Value {
    fn from(v: f64) -> Self {
        Self::F64(v)
    }
}

impl From<Duration> for Value {
    fn from(v: Duration) -> Self {
        Self::Duration(v)
    }
}

/// A field's figure, or `None` for a figure the snapshot does not have: what
/// `#[derive(Metrics)]` reads from each exported field.
pub trait ToValue {
    /// The value, or `None` when there is none (an absent figure is not a zero).
    fn to_value(&self) -> Option<Value>;
}

macro_rules! to_value_via_into {
    ($($ty:ty),*) => {$(
        impl ToValue for $ty {
            fn to_value(&self) -> Option<Value> {
                Some(Value::from(*self))
            }
        }
    )*};
}
to_value_via_into!(u64, u32, usize, bool, f64, Duration);

impl<T: ToValue> ToValue for Option<T> {
    fn to_value(&self) -> Option<Value> {
        self.as_ref().and_then(ToValue::to_value)
    }
}

impl<T: ToValue + ?Sized> ToValue for &T {
    fn to_value(&self) -> Option<Value> {
        (**self).to_value()
    }
}

/// One metric of a snapshot: one field, or one element of an array field.
///
/// Fields of one family (same name) share kind, unit and help, and differ in their
/// labels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Metric<'a> {
    /// The name within its kind of component, without unit or `_total`
    /// (`"pushed"`, `"blocked_time"`).
    pub name: &'a str,
    /// Counter or gauge.
    pub kind: MetricKind,
    /// The unit.
    pub unit: Unit,
    /// One line saying what it counts.
    pub help: &'static str,
    /// The labels that tell apart the metrics of one family, outermost first
    /// (`[("cause", "drop_oldest")]`); empty for a family of one.
    pub labels: &'a [(&'a str, &'a str)],
    /// The value.
    pub value: Value,
}

impl<'a> Metric<'a> {
    /// A running total, without labels or unit.
    pub fn counter(name: &'a str, help: &'static str, value: impl Into<Value>) -> Self {
        Self::new(name, MetricKind::Counter, help, value.into())
    }

    /// A value that goes up and down, without labels or unit.
    pub fn gauge(name: &'a str, help: &'static str, value: impl Into<Value>) -> Self {
        Self::new(name, MetricKind::Gauge, help, value.into())
    }

    /// A metric of either kind, without labels or unit.
    pub const fn new(name: &'a str, kind: MetricKind, help: &'static str, value: Value) -> Self {
        Self {
            name,
            kind,
            unit: Unit::None,
            help,
            labels: &[],
            value,
        }
    }

    /// Measured in bytes.
    #[must_use]
    pub const fn bytes(self) -> Self {
        self.with_unit(Unit::Bytes)
    }

    /// Measured in seconds.
    #[must_use]
    pub const fn seconds(self) -> Self {
        self.with_unit(Unit::Seconds)
    }

    /// Measured in `unit`.
    #[must_use]
    pub const fn with_unit(mut self, unit: Unit) -> Self {
        self.unit = unit;
        self
    }

    /// With labels (replacing any it had).
    #[must_use]
    pub const fn with_labels(mut self, labels: &'a [(&'a str, &'a str)]) -> Self {
        self.labels = labels;
        self
    }
}

/// Receives the metrics of a snapshot, one at a time.
///
/// Any `FnMut(Metric<'_>)` closure is a visitor.
pub trait Visitor {
    /// One metric. Its borrowed parts live only for this call.
    fn metric(&mut self, metric: Metric<'_>);
}

impl<F: FnMut(Metric<'_>)> Visitor for F {
    fn metric(&mut self, metric: Metric<'_>) {
        self(metric);
    }
}

/// A metrics snapshot that visits its fields: implemented next to every `*Metrics`
/// struct of the crate. See the [module docs](self) for how to add a metric.
pub trait Metrics {
    /// The kind of component (`"ring"`, `"table"`): the exporter's name segment and
    /// the label that holds the component's name.
    const KIND: &'static str;

    /// Visits every field: one [`Metric`] per figure, none for a figure the
    /// snapshot does not have (an absent figure is not a zero).
    fn visit(&self, out: &mut dyn Visitor);
}

/// Two snapshots of one component read together (a state store's own counters and
/// its subscriptions'): the kind of the first, the fields of both.
impl<A: Metrics, B: Metrics> Metrics for (A, B) {
    const KIND: &'static str = A::KIND;

    fn visit(&self, out: &mut dyn Visitor) {
        self.0.visit(out);
        self.1.visit(out);
    }
}

/// The most labels a [`Scoped`] visitor passes on (the inner metric's and its own).
pub const MAX_LABELS: usize = 4;

/// The longest name a [`Scoped`] visitor builds (its prefix and the inner name).
pub const MAX_NAME: usize = 64;

/// A visitor that passes metrics on to another with a name prefix, one more label
/// (put before the inner metric's labels), and a filter: how a snapshot visits a
/// nested one (a connection's inbound side as `inbound_*`, an outbound queue's
/// classes with a `class` label).
///
/// Names are joined on the stack, without allocation. A joined name longer than
/// [`MAX_NAME`] bytes, or more than [`MAX_LABELS`] labels, is a bug in an `impl
/// Metrics` (the names are constants); it panics in debug builds and the metric is
/// skipped in release builds.
///
/// # Examples
///
/// ```
/// use membound::metrics::{Metric, Metrics, Scoped, Visitor};
///
/// struct Side(u64);
/// impl Metrics for Side {
///     const KIND: &'static str = "side";
///     fn visit(&self, out: &mut dyn Visitor) {
///         out.metric(Metric::counter("sent", "Sent.", self.0));
///     }
/// }
///
/// let mut seen = Vec::new();
/// let mut out = |m: Metric<'_>| seen.push((m.name.to_string(), m.labels.len()));
/// Side(3).visit(&mut Scoped::new(&mut out).prefix("left_").label("side", "left"));
/// assert_eq!(seen, [("left_sent".to_string(), 1)]);
/// ```
pub struct Scoped<'v> {
    out: &'v mut dyn Visitor,
    prefix: &'v str,
    label: Option<(&'v str, &'v str)>,
    filter: Option<fn(&str) -> bool>,
}

impl fmt::Debug for Scoped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scoped")
            .field("prefix", &self.prefix)
            .field("label", &self.label)
            .field("filtered", &self.filter.is_some())
            .finish_non_exhaustive()
    }
}

impl<'v> Scoped<'v> {
    /// Passes every metric on to `out` unchanged.
    pub fn new(out: &'v mut dyn Visitor) -> Self {
        Self {
            out,
            prefix: "",
            label: None,
            filter: None,
        }
    }

    /// Prefixes every name with `prefix` (say `"inbound_"`).
    #[must_use]
    pub fn prefix(mut self, prefix: &'v str) -> Self {
        self.prefix = prefix;
        self
    }

    /// Adds the label `key="value"` before each metric's own labels.
    #[must_use]
    pub fn label(mut self, key: &'v str, value: &'v str) -> Self {
        self.label = Some((key, value));
        self
    }

    /// Passes on only the metrics whose inner name (before the prefix) `keep`
    /// accepts.
    #[must_use]
    pub fn filter(mut self, keep: fn(&str) -> bool) -> Self {
        self.filter = Some(keep);
        self
    }
}

impl Visitor for Scoped<'_> {
    fn metric(&mut self, metric: Metric<'_>) {
        if self.filter.is_some_and(|keep| !keep(metric.name)) {
            return;
        }
        let mut name = StackStr::<MAX_NAME>::new();
        let joined = fmt::Write::write_str(&mut name, self.prefix)
            .and_then(|()| fmt::Write::write_str(&mut name, metric.name));
        let extra = usize::from(self.label.is_some());
        let fits = joined.is_ok() && metric.labels.len() + extra <= MAX_LABELS;
        debug_assert!(
            fits,
            "metric {}{} is too long or has too many labels",
            self.prefix, metric.name
        );
        if !fits {
            return;
        }
        let mut labels = [("", ""); MAX_LABELS];
        if let Some(label) = self.label {
            labels[0] = label;
        }
        labels[extra..extra + metric.labels.len()].copy_from_slice(metric.labels);
        self.out.metric(Metric {
            name: name.as_str(),
            labels: &labels[..extra + metric.labels.len()],
            ..metric
        });
    }
}

/// A short string formatted on the stack, for a label value that is not a constant
/// (a limit's source, a number): `write!` into it, then [`as_str`](Self::as_str).
/// A write past its `N` bytes fails and leaves what fitted.
#[derive(Clone, Copy)]
pub struct StackStr<const N: usize> {
    buf: [u8; N],
    len: usize,
}

impl<const N: usize> StackStr<N> {
    /// Empty.
    pub const fn new() -> Self {
        Self {
            buf: [0; N],
            len: 0,
        }
    }

    /// `value` as text, cut at `N` bytes (on a character boundary) if longer.
    pub fn display(value: impl fmt::Display) -> Self {
        let mut text = Self::new();
        // Too long: keep what fitted.
        let _ = fmt::Write::write_fmt(&mut text, format_args!("{value}"));
        text
    }

    /// The text written so far.
    pub fn as_str(&self) -> &str {
        // Only whole `&str`s (or their prefixes up to a character boundary) are
        // copied in, so the bytes are UTF-8; the fallback is never taken.
        core::str::from_utf8(&self.buf[..self.len]).unwrap_or_default()
    }
}

impl<const N: usize> Default for StackStr<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> fmt::Write for StackStr<N> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = N - self.len;
        if s.len() <= room {
            self.buf[self.len..self.len + s.len()].copy_from_slice(s.as_bytes());
            self.len += s.len();
            return Ok(());
        }
        let mut cut = room;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        self.buf[self.len..self.len + cut].copy_from_slice(&s.as_bytes()[..cut]);
        self.len += cut;
        Err(fmt::Error)
    }
}

impl<const N: usize> fmt::Debug for StackStr<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl<const N: usize> fmt::Display for StackStr<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn level_index(level: crate::pressure::PressureLevel) -> usize {
        level.index()
    }

    /// Every attribute of the derive, and the help texts it takes from docs.
    #[derive(Metrics)]
    #[metrics(kind = "derived", counters, help(dropped = "Items dropped, by cause."))]
    struct Derived {
        /// Items stored. More text that is not help.
        stored: u64,
        /// The oldest made room.
        #[metric(name = "dropped", label("cause", "oldest"))]
        dropped_oldest: u64,
        /// The newest was refused.
        #[metric(name = "dropped", label("cause", "newest"))]
        dropped_newest: u64,
        /// Bytes held by [`Derived`], `now`.
        #[metric(gauge, unit = "bytes")]
        held: usize,
        /// Time spent waiting.
        #[metric(unit = "seconds", help = "Waiting time.")]
        waited: Duration,
        /// Absent until known.
        #[metric(gauge)]
        known: Option<f64>,
        /// The level.
        #[metric(gauge, with = level_index)]
        level: crate::pressure::PressureLevel,
        // Not a figure.
        #[metric(skip)]
        #[allow(dead_code)]
        note: &'static str,
    }

    #[test]
    fn the_derive_visits_every_exported_field_as_its_attributes_say() {
        let snapshot = Derived {
            stored: 3,
            dropped_oldest: 1,
            dropped_newest: 2,
            held: 64,
            waited: Duration::from_millis(1500),
            known: None,
            level: crate::pressure::PressureLevel::High,
            note: "x",
        };
        assert_eq!(Derived::KIND, "derived");
        let mut seen = [None; 8];
        let mut n = 0;
        snapshot.visit(&mut |m: Metric<'_>| {
            let labels = m
                .labels
                .first()
                .map(|(k, v)| (*k == "cause", *v == "oldest"));
            seen[n] = Some((m.kind, m.unit, m.help, m.value, labels, m.name.len()));
            n += 1;
        });
        use MetricKind::{Counter, Gauge};
        #[rustfmt::skip]
        let expected = [
            Some((Counter, Unit::None, "Items stored.", Value::U64(3), None, 6)),
            Some((Counter, Unit::None, "Items dropped, by cause.", Value::U64(1), Some((true, true)), 7)),
            Some((Counter, Unit::None, "Items dropped, by cause.", Value::U64(2), Some((true, false)), 7)),
            Some((Gauge, Unit::Bytes, "Bytes held by Derived, now.", Value::U64(64), None, 4)),
            Some((Counter, Unit::Seconds, "Waiting time.", Value::Duration(Duration::from_millis(1500)), None, 6)),
            // `known` is None: nothing; `note` is skipped.
            Some((Gauge, Unit::None, "The level.", Value::U64(2), None, 5)),
            None,
            None,
        ];
        assert_eq!(seen, expected);
    }

    #[cfg(feature = "std")]
    fn visit_pair(pair: &[u64; 2], out: &mut dyn Visitor) {
        for (n, side) in pair.iter().zip(["left", "right"]) {
            out.metric(Metric::counter("pair", "A pair.", *n).with_labels(&[("side", side)]));
        }
    }

    /// `nested` (flat and under a prefix) and `visit = path`.
    #[cfg(feature = "std")]
    #[derive(Metrics)]
    #[metrics(kind = "outer")]
    struct Outer {
        /// Its own figure.
        #[metric(gauge)]
        own: u64,
        #[metric(nested)]
        flat: Inner,
        #[metric(nested(prefix = "in_"))]
        prefixed: Inner,
        #[metric(visit = visit_pair)]
        pair: [u64; 2],
    }

    #[test]
    #[cfg(feature = "std")]
    fn nested_snapshots_and_visit_paths_are_walked_in_field_order() {
        use std::prelude::rust_2021::*;
        let outer = Outer {
            own: 7,
            flat: Inner,
            prefixed: Inner,
            pair: [4, 5],
        };
        let mut seen = Vec::new();
        outer.visit(&mut |m: Metric<'_>| {
            let label = m.labels.first().map(|(k, v)| format!("{k}={v}"));
            seen.push((m.name.to_string(), m.value, label));
        });
        let label = |s: &str| Some(s.to_string());
        assert_eq!(
            seen,
            [
                ("own".to_string(), Value::U64(7), None),
                ("a".to_string(), Value::U64(1), label("x=1")),
                ("b".to_string(), Value::U64(2), None),
                ("in_a".to_string(), Value::U64(1), label("x=1")),
                ("in_b".to_string(), Value::U64(2), None),
                ("pair".to_string(), Value::U64(4), label("side=left")),
                ("pair".to_string(), Value::U64(5), label("side=right")),
            ]
        );
    }

    struct Inner;

    impl Metrics for Inner {
        const KIND: &'static str = "inner";

        fn visit(&self, out: &mut dyn Visitor) {
            out.metric(Metric::counter("a", "A.", 1u64).with_labels(&[("x", "1")]));
            out.metric(Metric::gauge("b", "B.", 2u64).bytes());
        }
    }

    #[test]
    fn scoped_prefixes_labels_and_filters() {
        let mut seen: [(StackStr<16>, usize, [StackStr<8>; 2]); 2] = Default::default();
        let mut n = 0;
        let mut out = |m: Metric<'_>| {
            let (name, count, labels) = &mut seen[n];
            *name = StackStr::display(m.name);
            *count = m.labels.len();
            for (slot, (key, _)) in labels.iter_mut().zip(m.labels) {
                *slot = StackStr::display(key);
            }
            n += 1;
        };
        Inner.visit(&mut Scoped::new(&mut out).prefix("in_").label("side", "left"));
        assert_eq!(n, 2);
        assert_eq!(seen[0].0.as_str(), "in_a");
        assert_eq!(seen[0].1, 2);
        assert_eq!(seen[0].2[0].as_str(), "side");
        assert_eq!(seen[0].2[1].as_str(), "x");
        assert_eq!(seen[1].0.as_str(), "in_b");

        let mut names = 0;
        let mut count = |_: Metric<'_>| names += 1;
        Inner.visit(&mut Scoped::new(&mut count).filter(|name| name == "b"));
        assert_eq!(names, 1);
    }

    #[test]
    fn stack_str_cuts_on_a_character_boundary() {
        let text = StackStr::<4>::display("abé!");
        assert_eq!(text.as_str(), "abé");
        let text = StackStr::<3>::display("abé");
        assert_eq!(text.as_str(), "ab");
        assert_eq!(StackStr::<8>::display(42u64).as_str(), "42");
    }
}
