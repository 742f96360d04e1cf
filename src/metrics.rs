//! Prometheus metrics without a metrics crate: counters, gauges and
//! histograms, with or without labels, rendered in the text exposition
//! format 0.0.4 that `/metrics` serves.
//!
//! Updating a metric is one or two atomic operations. A labelled family
//! keeps its children in a map behind a mutex, taken only to find or create
//! a child: callers on hot paths look a child up once and keep the handle.
//! The number of labels is part of a family's type, so a call with the
//! wrong number of values does not compile.

mod daemon;
mod parse;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::{self, Write as _};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use thiserror::Error;

pub use daemon::{DaemonMetrics, Direction, LATENCY_BUCKETS, STORE_COMMIT_BUCKETS, TeamsWriteKind};
pub use parse::{ParseError, Sample, find, parse_text};

/// A metric or label definition that Prometheus would not accept. These
/// come from code, not input: a test that registers the metrics finds them.
#[derive(Debug, Error, PartialEq)]
pub enum MetricsError {
    #[error("`{0}` is not a valid metric name")]
    InvalidName(String),
    #[error("metric `{metric}`: `{label}` is not a valid label name")]
    InvalidLabel { metric: String, label: String },
    #[error("metric `{metric}`: label `{label}` is listed twice")]
    DuplicateLabel { metric: String, label: String },
    #[error("metric `{0}` is registered twice")]
    Duplicate(String),
    #[error("histogram `{0}`: buckets must be finite and strictly increasing")]
    InvalidBuckets(String),
}

/// A monotonically increasing count.
#[derive(Clone, Debug, Default)]
pub struct Counter(Arc<AtomicU64>);

impl Counter {
    pub fn inc(&self) {
        self.inc_by(1);
    }

    pub fn inc_by(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down.
#[derive(Clone, Debug, Default)]
pub struct Gauge(Arc<AtomicU64>);

impl Gauge {
    pub fn set(&self, value: f64) {
        self.0.store(value.to_bits(), Ordering::Relaxed);
    }

    pub fn add(&self, delta: f64) {
        add_f64(&self.0, delta);
    }

    pub fn inc(&self) {
        self.add(1.0);
    }

    pub fn dec(&self) {
        self.add(-1.0);
    }

    pub fn get(&self) -> f64 {
        f64::from_bits(self.0.load(Ordering::Relaxed))
    }
}

fn add_f64(cell: &AtomicU64, delta: f64) {
    // The closure always returns Some, so the update cannot fail.
    let _ = cell.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
        Some((f64::from_bits(bits) + delta).to_bits())
    });
}

/// Observations counted into fixed buckets, with their sum.
#[derive(Clone, Debug)]
pub struct Histogram(Arc<HistogramCells>);

#[derive(Debug)]
struct HistogramCells {
    /// Upper bounds, strictly increasing, without `+Inf`.
    bounds: Arc<[f64]>,
    /// Per bucket (not cumulative), one more than `bounds` for `+Inf`.
    counts: Box<[AtomicU64]>,
    /// f64 bits.
    sum: AtomicU64,
}

impl Histogram {
    fn new(bounds: Arc<[f64]>) -> Self {
        let counts = (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect();
        Histogram(Arc::new(HistogramCells {
            bounds,
            counts,
            sum: AtomicU64::new(0f64.to_bits()),
        }))
    }

    /// Records one observation. NaN is dropped: it would turn the sum into
    /// NaN for good.
    pub fn observe(&self, value: f64) {
        if value.is_nan() {
            return;
        }
        let cells = &self.0;
        // `le` is inclusive: a value equal to a bound belongs to its bucket.
        let index = cells.bounds.partition_point(|bound| *bound < value);
        if let Some(count) = cells.counts.get(index) {
            count.fetch_add(1, Ordering::Relaxed);
        }
        add_f64(&cells.sum, value);
    }

    /// Records a duration in seconds.
    pub fn observe_duration(&self, duration: Duration) {
        self.observe(duration.as_secs_f64());
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.0
            .counts
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }

    pub fn sum(&self) -> f64 {
        f64::from_bits(self.0.sum.load(Ordering::Relaxed))
    }
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::Counter {}
    impl Sealed for super::Gauge {}
    impl Sealed for super::Histogram {}
}

/// The kinds of metric a [`Family`] can hold.
pub trait Metric: sealed::Sealed + Clone + Send + Sync + 'static {
    #[doc(hidden)]
    const TYPE: &'static str;
    #[doc(hidden)]
    type Spec: Send + Sync + 'static;
    #[doc(hidden)]
    fn create(spec: &Self::Spec) -> Self;
    #[doc(hidden)]
    fn write(&self, name: &str, labels: &[(&str, &str)], out: &mut String);
}

impl Metric for Counter {
    const TYPE: &'static str = "counter";
    type Spec = ();

    fn create(_: &()) -> Self {
        Counter::default()
    }

    fn write(&self, name: &str, labels: &[(&str, &str)], out: &mut String) {
        write_sample(out, name, "", labels, None, self.get());
    }
}

impl Metric for Gauge {
    const TYPE: &'static str = "gauge";
    type Spec = ();

    fn create(_: &()) -> Self {
        Gauge::default()
    }

    fn write(&self, name: &str, labels: &[(&str, &str)], out: &mut String) {
        write_sample(out, name, "", labels, None, Float(self.get()));
    }
}

impl Metric for Histogram {
    const TYPE: &'static str = "histogram";
    type Spec = Arc<[f64]>;

    fn create(bounds: &Arc<[f64]>) -> Self {
        Histogram::new(Arc::clone(bounds))
    }

    fn write(&self, name: &str, labels: &[(&str, &str)], out: &mut String) {
        let cells = &self.0;
        let mut cumulative = 0u64;
        for (bound, count) in cells.bounds.iter().zip(cells.counts.iter()) {
            cumulative += count.load(Ordering::Relaxed);
            let le = Float(*bound).to_string();
            write_sample(out, name, "_bucket", labels, Some(&le), cumulative);
        }
        // `_count` equals the `+Inf` bucket even while observations land
        // during rendering: both come from the same reads.
        if let Some(last) = cells.counts.last() {
            cumulative += last.load(Ordering::Relaxed);
        }
        write_sample(out, name, "_bucket", labels, Some("+Inf"), cumulative);
        write_sample(out, name, "_sum", labels, None, Float(self.sum()));
        write_sample(out, name, "_count", labels, None, cumulative);
    }
}

/// A metric with `N` labels: one child per set of label values.
pub struct Family<M: Metric, const N: usize>(Arc<FamilyInner<M, N>>);

pub type CounterVec<const N: usize> = Family<Counter, N>;
pub type GaugeVec<const N: usize> = Family<Gauge, N>;
pub type HistogramVec<const N: usize> = Family<Histogram, N>;

struct FamilyInner<M: Metric, const N: usize> {
    name: String,
    help: String,
    labels: [&'static str; N],
    spec: M::Spec,
    children: Mutex<BTreeMap<[String; N], M>>,
}

impl<M: Metric, const N: usize> Clone for Family<M, N> {
    fn clone(&self) -> Self {
        Family(Arc::clone(&self.0))
    }
}

impl<M: Metric, const N: usize> fmt::Debug for Family<M, N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Family")
            .field("name", &self.0.name)
            .field("labels", &self.0.labels)
            .finish_non_exhaustive()
    }
}

impl<M: Metric, const N: usize> Family<M, N> {
    /// The child for these label values (in the order the labels were
    /// registered), created at zero on first use.
    pub fn with(&self, values: [&str; N]) -> M {
        let key = values.map(str::to_owned);
        let mut children = self.children();
        children
            .entry(key)
            .or_insert_with(|| M::create(&self.0.spec))
            .clone()
    }

    fn children(&self) -> MutexGuard<'_, BTreeMap<[String; N], M>> {
        // A panic elsewhere while holding the lock leaves the map intact:
        // inserts are the only writes.
        self.0
            .children
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// Rendering, object-safe so one registry holds every kind of family.
trait Collect: Send + Sync {
    fn collect(&self, out: &mut String);
}

impl<M: Metric, const N: usize> Collect for Family<M, N> {
    fn collect(&self, out: &mut String) {
        let inner = &self.0;
        let _ = writeln!(out, "# HELP {} {}", inner.name, escape_help(&inner.help));
        let _ = writeln!(out, "# TYPE {} {}", inner.name, M::TYPE);
        for (values, metric) in self.children().iter() {
            let labels: Vec<(&str, &str)> = inner
                .labels
                .iter()
                .copied()
                .zip(values.iter().map(String::as_str))
                .collect();
            metric.write(&inner.name, &labels, out);
        }
    }
}

/// The metrics `/metrics` serves. Cheap to clone; clones share the metrics.
#[derive(Clone, Default)]
pub struct Registry {
    inner: Arc<Mutex<RegistryInner>>,
}

#[derive(Default)]
struct RegistryInner {
    /// In registration order, which is the order they render in.
    families: Vec<Arc<dyn Collect>>,
    /// Every sample name taken, a histogram's `_bucket`, `_sum` and
    /// `_count` included.
    names: BTreeSet<String>,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.lock().names.iter()).finish()
    }
}

impl Registry {
    pub fn new() -> Self {
        Registry::default()
    }

    pub fn counter(&self, name: &str, help: &str) -> Result<Counter, MetricsError> {
        Ok(self.counter_vec(name, help, [])?.with([]))
    }

    pub fn gauge(&self, name: &str, help: &str) -> Result<Gauge, MetricsError> {
        Ok(self.gauge_vec(name, help, [])?.with([]))
    }

    /// `buckets` are the upper bounds, without `+Inf`.
    pub fn histogram(
        &self,
        name: &str,
        help: &str,
        buckets: &[f64],
    ) -> Result<Histogram, MetricsError> {
        Ok(self.histogram_vec(name, help, [], buckets)?.with([]))
    }

    pub fn counter_vec<const N: usize>(
        &self,
        name: &str,
        help: &str,
        labels: [&'static str; N],
    ) -> Result<CounterVec<N>, MetricsError> {
        self.register(name, help, labels, (), &[])
    }

    pub fn gauge_vec<const N: usize>(
        &self,
        name: &str,
        help: &str,
        labels: [&'static str; N],
    ) -> Result<GaugeVec<N>, MetricsError> {
        self.register(name, help, labels, (), &[])
    }

    pub fn histogram_vec<const N: usize>(
        &self,
        name: &str,
        help: &str,
        labels: [&'static str; N],
        buckets: &[f64],
    ) -> Result<HistogramVec<N>, MetricsError> {
        let increasing = buckets.windows(2).all(|pair| pair[0] < pair[1]);
        if !increasing || buckets.iter().any(|b| !b.is_finite()) {
            return Err(MetricsError::InvalidBuckets(name.to_owned()));
        }
        if labels.contains(&"le") {
            return Err(MetricsError::InvalidLabel {
                metric: name.to_owned(),
                label: "le".to_owned(),
            });
        }
        self.register(
            name,
            help,
            labels,
            Arc::from(buckets),
            &["_bucket", "_sum", "_count"],
        )
    }

    fn register<M: Metric, const N: usize>(
        &self,
        name: &str,
        help: &str,
        labels: [&'static str; N],
        spec: M::Spec,
        suffixes: &[&str],
    ) -> Result<Family<M, N>, MetricsError> {
        if !valid_metric_name(name) {
            return Err(MetricsError::InvalidName(name.to_owned()));
        }
        for (i, label) in labels.iter().enumerate() {
            if !valid_label_name(label) {
                return Err(MetricsError::InvalidLabel {
                    metric: name.to_owned(),
                    label: (*label).to_owned(),
                });
            }
            if labels[..i].contains(label) {
                return Err(MetricsError::DuplicateLabel {
                    metric: name.to_owned(),
                    label: (*label).to_owned(),
                });
            }
        }
        let mut registry = self.lock();
        let taken: Vec<String> = std::iter::once(name.to_owned())
            .chain(suffixes.iter().map(|s| format!("{name}{s}")))
            .collect();
        if taken.iter().any(|n| registry.names.contains(n)) {
            return Err(MetricsError::Duplicate(name.to_owned()));
        }
        let family = Family(Arc::new(FamilyInner {
            name: name.to_owned(),
            help: help.to_owned(),
            labels,
            spec,
            children: Mutex::new(BTreeMap::new()),
        }));
        if N == 0 {
            // An unlabelled metric exists from the start, at zero.
            family.with([""; N]);
        }
        registry.names.extend(taken);
        registry.families.push(Arc::new(family.clone()));
        Ok(family)
    }

    /// Every metric in the text exposition format 0.0.4
    /// (`text/plain; version=0.0.4`).
    pub fn render(&self) -> String {
        let families = self.lock().families.clone();
        let mut out = String::new();
        for family in families {
            family.collect(&mut out);
        }
        out
    }

    fn lock(&self) -> MutexGuard<'_, RegistryInner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The `Content-Type` of [`Registry::render`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

fn valid_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn valid_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    // `__` is reserved for Prometheus's own labels.
    !name.starts_with("__")
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A float as Prometheus writes one: `+Inf`, `-Inf`, `NaN`, or decimal.
struct Float(f64);

impl fmt::Display for Float {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let value = self.0;
        if value.is_nan() {
            f.write_str("NaN")
        } else if value == f64::INFINITY {
            f.write_str("+Inf")
        } else if value == f64::NEG_INFINITY {
            f.write_str("-Inf")
        } else {
            write!(f, "{value}")
        }
    }
}

fn write_sample(
    out: &mut String,
    name: &str,
    suffix: &str,
    labels: &[(&str, &str)],
    le: Option<&str>,
    value: impl fmt::Display,
) {
    out.push_str(name);
    out.push_str(suffix);
    if !labels.is_empty() || le.is_some() {
        out.push('{');
        let all = labels.iter().copied().chain(le.map(|le| ("le", le)));
        for (i, (label, value)) in all.enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(label);
            out.push_str("=\"");
            escape_label_value(value, out);
            out.push('"');
        }
        out.push('}');
    }
    let _ = writeln!(out, " {value}");
}

fn escape_label_value(value: &str, out: &mut String) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// HELP text escapes backslashes and line feeds, not quotes.
fn escape_help(help: &str) -> String {
    help.replace('\\', "\\\\").replace('\n', "\\n")
}

#[cfg(test)]
mod tests;
