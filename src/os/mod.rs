//! The operating system's view of memory (std): the process, its container, and the
//! host, sampled without allocating.
//!
//! On Linux a [`Sampler`] reads, per [`sample`](Sampler::sample):
//!
//! | figure | from |
//! |---|---|
//! | process RSS | `/proc/self/statm` |
//! | container usage | cgroup v2 `memory.current`, v1 `memory.usage_in_bytes` |
//! | working set | usage minus inactive file cache from `memory.stat` (kubelet's definition; [`WorkingSet`]) |
//! | limits | v2 `memory.max` and `memory.high`, v1 `memory.limit_in_bytes` and `hierarchical_memory_limit`, at every level from the process's cgroup up to the mount |
//! | host | `MemTotal` and `MemAvailable` from `/proc/meminfo` |
//! | PSI | `some`/`full` `avg10` of the cgroup's `memory.pressure` (v2) or `/proc/pressure/memory` |
//!
//! The cgroup is found once, at construction, from `/proc/self/cgroup` and
//! `/proc/self/mountinfo`, correctly inside container namespaces (see
//! [`CgroupInfo`]). Every file is opened once and re-read with `pread` into a buffer
//! the sampler owns, so a sample makes no allocation and no `open` call. A file that
//! stops reading (a cgroup file returns `ENODEV` once removed) is re-opened on the
//! next sample; one that cannot be read or parsed leaves its field `None` and is
//! counted ([`Sampler::errors`]), never a panic.
//!
//! The **effective limit** is the tightest of the cgroup limits up the tree, physical
//! memory, and an optional user limit; [`EffectiveLimit::source`] says which won. The
//! **utilization** is the larger of *used / effective limit* (used: the cgroup's
//! working set, or the process's RSS outside a cgroup) and, unless disabled, the
//! host's `1 - MemAvailable / MemTotal`: a container with room in its own limit is
//! still under pressure on a host that is running out.
//!
//! # Cost
//!
//! A sample costs what the kernel needs to produce these files; parsing is a small
//! part of it. On the v1 reference VM one `pread` costs about 0.7 µs for a cgroup
//! value, 1 µs for `statm`, 1.6-2.4 µs for PSI, 4.7 µs for `meminfo` and 6.4 µs for
//! v1's `memory.stat`: about 17 µs of kernel time for the default sample with three
//! cgroup levels. [`SamplerConfig::lean`] skips `memory.stat`, `meminfo` and PSI
//! (about 4 µs). See `benches/pressure.rs`.
//!
//! The roots (`/proc`, and the prefix under which `mountinfo`'s mount points are
//! found) are configurable, so tests run on fixture trees.
//!
//! On other platforms a documented fallback gives physical memory (`sysconf`) and the
//! peak RSS (`getrusage`); see [`Sampler`].
//!
//! # Examples
//!
//! ```
//! use membound::os::{Sampler, SamplerConfig};
//!
//! let mut sampler = Sampler::new(SamplerConfig::default())?;
//! let sample = sampler.sample();
//! if let Some(limit) = sample.limit {
//!     println!("limit {} bytes from {}", limit.bytes, limit.source);
//! }
//! if let Some(u) = sample.utilization {
//!     assert!(u >= 0.0);
//! }
//! # Ok::<(), membound::os::OsError>(())
//! ```

use core::fmt;
use std::io;
use std::path::PathBuf;

#[cfg(target_os = "linux")]
mod cgroup;
#[cfg(not(target_os = "linux"))]
mod fallback;
#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
mod parse;
#[cfg(target_os = "linux")]
mod psi;
mod trim;

/// The stall figures a sample carries; defined by the pressure layer, which judges them.
pub use crate::pressure::Psi;
#[cfg(not(target_os = "linux"))]
pub use fallback::Sampler;
#[cfg(target_os = "linux")]
pub use linux::Sampler;
#[cfg(target_os = "linux")]
pub use psi::{PsiError, PsiTrigger};
pub use trim::{trim_heap, TrimOutcome};

/// What counts as the container's working set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub enum WorkingSet {
    /// Usage minus inactive file cache (v2 `inactive_file`, v1 `total_inactive_file`):
    /// what the kubelet and cAdvisor evict on, since inactive page cache is reclaimed
    /// before the OOM killer runs.
    #[default]
    UsageMinusInactiveFile,
    /// The whole usage, page cache included: more conservative, and cheaper:
    /// `memory.stat` (the most expensive file here, several microseconds on cgroup v1)
    /// is not read.
    Usage,
}

/// Where a [`Sampler`] looks, and what it counts.
///
/// # Examples
///
/// ```
/// use membound::os::SamplerConfig;
///
/// // A fixture tree: tests/fixtures/v2/proc/... and tests/fixtures/v2/sys/fs/cgroup/...
/// let config = SamplerConfig::default()
///     .with_proc_root("tests/fixtures/v2/proc")
///     .with_mount_root("tests/fixtures/v2")
///     .with_user_limit(Some(512 << 20));
/// assert_eq!(config.user_limit, Some(512 << 20));
/// ```
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
#[non_exhaustive]
pub struct SamplerConfig {
    /// Where procfs is mounted. Default `/proc`.
    pub proc_root: PathBuf,
    /// Prefix for the mount points listed in `/proc/self/mountinfo` (which are
    /// absolute in the process's mount namespace). Default `/`.
    pub mount_root: PathBuf,
    /// Whether to look for a memory cgroup at all. Default `true`.
    pub cgroup: bool,
    /// An extra limit in bytes, set by the user. Default none.
    pub user_limit: Option<u64>,
    /// What counts as the container's working set.
    pub working_set: WorkingSet,
    /// Whether the host's `1 - MemAvailable/MemTotal` counts towards utilization.
    /// Default `true`. Off, `/proc/meminfo` is read once at construction (for
    /// `MemTotal`) instead of at every sample.
    pub host_pressure: bool,
    /// Whether to read memory PSI at every sample. Default `true`.
    pub psi: bool,
    /// How often the expensive files are read ([`Refresh`]); the cheap ones are read
    /// at every sample.
    pub refresh: Refresh,
}

/// When a [`Sampler`] reads its expensive files.
///
/// A sample always reads the cheap figures that are measured against the limit: the
/// cgroup's usage (`memory.current`, `memory.usage_in_bytes`), or RSS
/// (`/proc/self/statm`) where there is no cgroup, and PSI; about a microsecond each.
/// The rest moves slowly or is only reported, and costs more: the limit files up the
/// cgroup tree, `memory.stat` (for the working set's inactive file cache; 6 µs on
/// cgroup v1), `/proc/meminfo` (the host's `MemAvailable`; 5 µs) and, where the
/// cgroup's usage is measured, RSS. Those are read
/// in full at the first sample, at least every `every` samples, and at once when the
/// usage has moved by more than `on_change` of the limit since the last full read;
/// in between, a sample reuses their last values.
///
/// # Error bound
///
/// Between full reads, the usage and PSI are exact (read this sample). What is
/// reused is at most `every - 1` samples old: a limit changed by `docker update` is
/// seen within `every` samples; the host's `MemAvailable` and a cgroup's process's
/// RSS likewise; and the working
/// set is the current usage minus the inactive file cache of the last full read, so
/// its error is how far the inactive file cache moved since then (any move of the
/// usage itself beyond `on_change` of the limit forces a full read). With the
/// defaults (every 8th sample, 1 %) at the monitor's 5 s interval that is 40 s.
/// `Refresh::ALWAYS` reads everything every time.
///
/// # Examples
///
/// ```
/// use membound::os::{Refresh, SamplerConfig};
///
/// let config = SamplerConfig::default().with_refresh(Refresh::ALWAYS);
/// assert_eq!(config.refresh.every, 1);
/// assert_eq!(Refresh::default(), Refresh { every: 8, on_change: 0.01 });
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
pub struct Refresh {
    /// A full read at least every this many samples; 1 reads everything every time.
    /// Non-zero.
    pub every: u32,
    /// A full read as soon as the usage has moved by more than this fraction of the
    /// limit since the last one (`0.0..=1.0`).
    pub on_change: f64,
}

impl Refresh {
    /// Every file at every sample.
    pub const ALWAYS: Self = Self {
        every: 1,
        on_change: 0.0,
    };

    /// A full read every `every` samples, or when the usage moved by `on_change` of
    /// the limit.
    pub const fn new(every: u32, on_change: f64) -> Self {
        Self { every, on_change }
    }
}

impl Default for Refresh {
    /// Every 8th sample, or on a move of 1 % of the limit.
    fn default() -> Self {
        Self::new(8, 0.01)
    }
}

impl Default for SamplerConfig {
    fn default() -> Self {
        Self {
            proc_root: PathBuf::from("/proc"),
            mount_root: PathBuf::from("/"),
            cgroup: true,
            user_limit: None,
            working_set: WorkingSet::default(),
            host_pressure: true,
            psi: true,
            refresh: Refresh::default(),
        }
    }
}

impl SamplerConfig {
    /// The same configuration reading procfs at `root`.
    #[must_use]
    pub fn with_proc_root(mut self, root: impl Into<PathBuf>) -> Self {
        self.proc_root = root.into();
        self
    }

    /// The same configuration finding mount points under `root`.
    #[must_use]
    pub fn with_mount_root(mut self, root: impl Into<PathBuf>) -> Self {
        self.mount_root = root.into();
        self
    }

    /// The same configuration with or without cgroup discovery.
    #[must_use]
    pub fn with_cgroup(mut self, enabled: bool) -> Self {
        self.cgroup = enabled;
        self
    }

    /// The same configuration with a user limit (bytes).
    #[must_use]
    pub fn with_user_limit(mut self, limit: Option<u64>) -> Self {
        self.user_limit = limit;
        self
    }

    /// The same configuration with another working-set definition.
    #[must_use]
    pub fn with_working_set(mut self, working_set: WorkingSet) -> Self {
        self.working_set = working_set;
        self
    }

    /// The same configuration with or without the host's pressure.
    #[must_use]
    pub fn with_host_pressure(mut self, enabled: bool) -> Self {
        self.host_pressure = enabled;
        self
    }

    /// The same configuration with or without PSI.
    #[must_use]
    pub fn with_psi(mut self, enabled: bool) -> Self {
        self.psi = enabled;
        self
    }

    /// The same configuration reading the expensive files on another schedule.
    #[must_use]
    pub fn with_refresh(mut self, refresh: Refresh) -> Self {
        self.refresh = refresh;
        self
    }

    /// Checks the configuration; [`Sampler::new`] does too.
    ///
    /// # Errors
    ///
    /// [`OsError::ZeroUserLimit`] for a user limit of 0, [`OsError::BadRefresh`] for
    /// a [`Refresh`] that cannot work.
    pub fn validate(&self) -> Result<(), OsError> {
        if self.user_limit == Some(0) {
            return Err(OsError::ZeroUserLimit);
        }
        if self.refresh.every == 0 || !(0.0..=1.0).contains(&self.refresh.on_change) {
            return Err(OsError::BadRefresh);
        }
        Ok(())
    }

    /// The cheapest configuration that still tracks the container: RSS, the cgroup's
    /// usage as its working set (no `memory.stat`), its limits up the tree, physical
    /// memory and the user limit; no per-sample `/proc/meminfo`, no PSI.
    ///
    /// What it gives up: page cache counts as used (so utilization errs high), the
    /// host's own pressure is not seen, and on cgroup v1 limits above the
    /// namespace's mount (`hierarchical_memory_limit`, in `memory.stat`) are not
    /// seen.
    pub fn lean() -> Self {
        Self {
            working_set: WorkingSet::Usage,
            host_pressure: false,
            psi: false,
            ..Self::default()
        }
    }
}

/// The cgroup hierarchy version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CgroupVersion {
    /// The legacy per-controller hierarchies.
    V1,
    /// The unified hierarchy.
    V2,
}

impl fmt::Display for CgroupVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::V1 => "v1",
            Self::V2 => "v2",
        })
    }
}

/// The memory cgroup a [`Sampler`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupInfo {
    /// The hierarchy.
    pub version: CgroupVersion,
    /// The path from `/proc/self/cgroup`, relative to the namespace's cgroup root.
    pub path: std::string::String,
    /// The cgroup's directory: the mount point plus the path relative to the mount's
    /// root (under [`SamplerConfig::mount_root`]).
    pub dir: PathBuf,
    /// Where the hierarchy is mounted; the walk for limits stops here.
    pub mount_dir: PathBuf,
    /// `false` when the process's cgroup is not visible through the mount (it sits
    /// outside what its namespace mounted) and the mount's own directory, its closest
    /// visible ancestor, is used instead.
    pub exact: bool,
}

/// Why no memory cgroup was found. Sampling goes on without one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DiscoveryError {
    /// A file could not be read.
    Read {
        /// Which file.
        file: &'static str,
        /// The I/O error.
        kind: io::ErrorKind,
    },
    /// A file had no line in the expected format.
    Malformed {
        /// Which file.
        file: &'static str,
    },
    /// The process is in no memory cgroup (no v1 memory controller, no v2 hierarchy
    /// with the memory controller enabled).
    NoMemoryController,
    /// `/proc/self/cgroup` names a hierarchy that `mountinfo` does not show mounted.
    NotMounted {
        /// The hierarchy.
        version: CgroupVersion,
    },
    /// Cgroup discovery was turned off in the config.
    Disabled,
}

impl fmt::Display for DiscoveryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Read { file, kind } => write!(f, "cannot read {file}: {kind}"),
            Self::Malformed { file } => write!(f, "{file} is malformed"),
            Self::NoMemoryController => f.write_str("the process is in no memory cgroup"),
            Self::NotMounted { version } => {
                write!(f, "the cgroup {version} memory hierarchy is not mounted")
            }
            Self::Disabled => f.write_str("cgroup discovery is disabled"),
        }
    }
}

impl core::error::Error for DiscoveryError {}

/// Which cgroup file a limit came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CgroupLimitFile {
    /// v1 `memory.limit_in_bytes`.
    V1Limit,
    /// v1 `hierarchical_memory_limit` in `memory.stat`: the tightest limit of all
    /// ancestors, including those above what the namespace mounted.
    V1Hierarchical,
    /// v2 `memory.max`: the hard limit.
    V2Max,
    /// v2 `memory.high`: the throttling limit, where the kernel starts to reclaim hard.
    V2High,
}

impl CgroupLimitFile {
    /// The file (or `memory.stat` key) name.
    pub const fn name(self) -> &'static str {
        match self {
            Self::V1Limit => "memory.limit_in_bytes",
            Self::V1Hierarchical => "memory.stat hierarchical_memory_limit",
            Self::V2Max => "memory.max",
            Self::V2High => "memory.high",
        }
    }
}

/// Which bound won as the effective limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LimitSource {
    /// A cgroup limit.
    Cgroup {
        /// The file.
        file: CgroupLimitFile,
        /// How many levels above the process's own cgroup (0: its own).
        depth: usize,
    },
    /// Physical memory (`MemTotal`, or `sysconf` where there is no procfs).
    Physical,
    /// [`SamplerConfig::user_limit`].
    User,
    /// The heap size of a [`TrackingAllocator`](crate::heap::TrackingAllocator).
    Heap,
}

impl fmt::Display for LimitSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Cgroup { file, depth: 0 } => write!(f, "cgroup {}", file.name()),
            Self::Cgroup { file, depth } => write!(f, "cgroup {} ({depth} up)", file.name()),
            Self::Physical => f.write_str("physical"),
            Self::User => f.write_str("user"),
            Self::Heap => f.write_str("heap"),
        }
    }
}

/// The effective limit and where it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EffectiveLimit {
    /// The limit in bytes.
    pub bytes: u64,
    /// Which bound it is.
    pub source: LimitSource,
}

/// One reading of the memory figures. Fields the platform or the host does not
/// provide, or that failed this time, are `None`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
#[non_exhaustive]
pub struct MemorySample {
    /// Resident set size of this process, bytes.
    pub rss: Option<u64>,
    /// Peak resident set size (the non-Linux fallback's only process figure).
    pub peak_rss: Option<u64>,
    /// The cgroup's memory usage, bytes.
    pub cgroup_usage: Option<u64>,
    /// The cgroup's working set ([`WorkingSet`]), bytes.
    pub working_set: Option<u64>,
    /// The effective limit.
    pub limit: Option<EffectiveLimit>,
    /// Host `MemTotal`, bytes.
    pub mem_total: Option<u64>,
    /// Host `MemAvailable`, bytes.
    pub mem_available: Option<u64>,
    /// Memory PSI, where the kernel provides it.
    pub psi: Option<Psi>,
    /// Live bytes of the tracked heap, if the sampler was given one
    /// ([`Sampler::with_heap`]): what the program holds, next to what the OS sees.
    pub heap: Option<u64>,
    /// What is measured against the limit: the working set if a cgroup was found
    /// (its usage if `memory.stat` failed), else RSS (else the peak RSS).
    pub used: Option<u64>,
    /// The utilization the gauge sees: see the [module docs](self).
    pub utilization: Option<f64>,
    /// Fields that failed to read or parse in this sample.
    pub errors: u32,
}

impl crate::metrics::Metrics for MemorySample {
    const KIND: &'static str = "sampler";

    fn visit(&self, out: &mut dyn crate::metrics::Visitor) {
        use crate::metrics::{Metric, StackStr};
        let MemorySample {
            rss,
            peak_rss,
            cgroup_usage,
            working_set,
            limit,
            mem_total,
            mem_available,
            psi,
            heap,
            used,
            utilization,
            // This sample's failures; the sampler and the manager export their totals.
            errors: _,
        } = *self;
        #[rustfmt::skip]
        let bytes = [
            ("rss", "Resident set size of the process.", rss),
            ("peak_rss", "Peak resident set size of the process.", peak_rss),
            ("cgroup_usage", "Memory usage of the process's cgroup.", cgroup_usage),
            ("working_set", "Working set of the process's cgroup.", working_set),
            ("mem_total", "Host MemTotal.", mem_total),
            ("mem_available", "Host MemAvailable.", mem_available),
            ("heap", "Live bytes of the tracked heap.", heap),
            ("used", "Memory measured against the limit.", used),
        ];
        for (name, help, value) in bytes {
            if let Some(value) = value {
                out.metric(Metric::gauge(name, help, value).bytes());
            }
        }
        if let Some(limit) = limit {
            let source = StackStr::<64>::display(limit.source);
            let help = "The effective limit, by where it came from.";
            let labels = [("source", source.as_str())];
            out.metric(
                Metric::gauge("limit", help, limit.bytes)
                    .bytes()
                    .with_labels(&labels),
            );
        }
        if let Some(utilization) = utilization {
            let help = "Used memory as a share of the limit.";
            out.metric(Metric::gauge("utilization_ratio", help, utilization));
        }
        if let Some(psi) = psi {
            let help = "Memory stall share over 10 s, by kind.";
            let stall = |share: f64| Metric::gauge("psi_avg10_ratio", help, share / 100.0);
            out.metric(stall(psi.some_avg10).with_labels(&[("kind", "some")]));
            if let Some(full) = psi.full_avg10 {
                out.metric(stall(full).with_labels(&[("kind", "full")]));
            }
        }
    }
}

impl MemorySample {
    /// A sample with only `used`, `limit` and `utilization` set: for memory sources
    /// other than the OS (a tracked heap, a test script).
    pub fn from_usage(used: u64, limit: EffectiveLimit) -> Self {
        Self {
            used: Some(used),
            limit: Some(limit),
            utilization: Some(ratio(used, limit.bytes)),
            ..Self::default()
        }
    }

    /// `1 - MemAvailable / MemTotal`, if both are known.
    pub fn host_utilization(&self) -> Option<f64> {
        match (self.mem_available, self.mem_total) {
            (Some(available), Some(total)) if total > 0 => {
                Some(1.0 - available.min(total) as f64 / total as f64)
            }
            _ => None,
        }
    }
}

/// Which figure a sampling error concerns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SampleField {
    /// `/proc/self/statm`.
    Rss,
    /// `/proc/meminfo`.
    Meminfo,
    /// The cgroup usage file.
    CgroupUsage,
    /// The cgroup `memory.stat`.
    CgroupStat,
    /// A cgroup limit file.
    CgroupLimit,
    /// The PSI file.
    Psi,
    /// A platform call (`sysconf`, `getrusage`).
    Platform,
}

/// What went wrong with a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SampleErrorKind {
    /// Reading failed (after one re-open).
    Io(io::ErrorKind),
    /// The text did not parse.
    Malformed,
}

/// A field that could not be sampled. The sample goes on without it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SampleError {
    /// The field.
    pub field: SampleField,
    /// What went wrong.
    pub kind: SampleErrorKind,
}

impl fmt::Display for SampleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            SampleErrorKind::Io(kind) => write!(f, "reading {:?} failed: {kind}", self.field),
            SampleErrorKind::Malformed => write!(f, "{:?} is malformed", self.field),
        }
    }
}

impl core::error::Error for SampleError {}

/// Why a [`Sampler`] could not be built.
#[derive(Debug)]
#[non_exhaustive]
pub enum OsError {
    /// A user limit of 0 bytes: every sample would be over it.
    ZeroUserLimit,
    /// A [`Refresh`] of every 0 samples, or a change fraction outside `0.0..=1.0`.
    BadRefresh,
    /// A file every sample needs could not be opened (a wrong `proc_root`, no procfs).
    Open {
        /// The path.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
}

impl fmt::Display for OsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ZeroUserLimit => f.write_str("user memory limit must be greater than zero"),
            Self::BadRefresh => {
                f.write_str("refresh must be every 1 or more samples, on a change within 0..=100 %")
            }
            Self::Open { path, source } => write!(f, "cannot open {}: {source}", path.display()),
        }
    }
}

impl core::error::Error for OsError {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            Self::Open { source, .. } => Some(source),
            Self::ZeroUserLimit | Self::BadRefresh => None,
        }
    }
}

/// A tracked heap given to a sampler ([`Sampler::with_heap`]).
#[derive(Clone, Copy)]
struct HeapRef(&'static dyn crate::heap::HeapUsage);

impl fmt::Debug for HeapRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("HeapRef")
            .field(&self.0.heap_stats())
            .finish()
    }
}

impl HeapRef {
    fn live(heap: Option<HeapRef>) -> Option<u64> {
        heap.map(|h| h.0.heap_stats().live_bytes as u64)
    }
}

/// Error bookkeeping shared by the platform samplers.
#[derive(Debug, Default)]
struct ErrorLog {
    total: u64,
    last: Option<SampleError>,
    this_sample: u32,
}

impl ErrorLog {
    fn record(&mut self, field: SampleField, kind: SampleErrorKind) {
        self.total += 1;
        self.this_sample += 1;
        self.last = Some(SampleError { field, kind });
    }
}

/// `used / limit`; a limit of 0 (a cgroup that may hold nothing) is infinitely
/// exceeded by any use, and exactly met by none.
fn ratio(used: u64, limit: u64) -> f64 {
    match (used, limit) {
        (0, 0) => 0.0,
        (_, 0) => f64::INFINITY,
        _ => used as f64 / limit as f64,
    }
}

/// Combines used/limit with the host's utilization, as the module docs define.
fn utilization(sample: &MemorySample, host_pressure: bool) -> Option<f64> {
    let own = match (sample.used, sample.limit) {
        (Some(used), Some(limit)) => Some(ratio(used, limit.bytes)),
        _ => None,
    };
    let host = if host_pressure {
        sample.host_utilization()
    } else {
        None
    };
    match (own, host) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

/// The tightest of `candidates`; the first wins ties.
fn tightest(candidates: impl IntoIterator<Item = EffectiveLimit>) -> Option<EffectiveLimit> {
    candidates
        .into_iter()
        .fold(None, |best: Option<EffectiveLimit>, c| match best {
            Some(b) if b.bytes <= c.bytes => Some(b),
            _ => Some(c),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::ToString;

    #[test]
    fn tightest_prefers_the_first_on_ties() {
        let a = EffectiveLimit {
            bytes: 10,
            source: LimitSource::User,
        };
        let b = EffectiveLimit {
            bytes: 10,
            source: LimitSource::Physical,
        };
        let c = EffectiveLimit {
            bytes: 5,
            source: LimitSource::Heap,
        };
        assert_eq!(tightest([a, b]), Some(a));
        assert_eq!(tightest([a, b, c]), Some(c));
        assert_eq!(tightest([]), None);
    }

    #[test]
    fn utilization_takes_the_larger_of_own_and_host() {
        let limit = EffectiveLimit {
            bytes: 100,
            source: LimitSource::User,
        };
        let mut s = MemorySample::from_usage(30, limit);
        assert_eq!(s.utilization, Some(0.3));
        s.mem_total = Some(1000);
        s.mem_available = Some(200);
        assert_eq!(utilization(&s, true), Some(0.8));
        assert_eq!(utilization(&s, false), Some(0.3));
        s.used = None;
        assert_eq!(utilization(&s, true), Some(0.8));
        let zero = EffectiveLimit {
            bytes: 0,
            source: LimitSource::User,
        };
        assert_eq!(
            MemorySample::from_usage(1, zero).utilization,
            Some(f64::INFINITY)
        );
        assert_eq!(MemorySample::from_usage(0, zero).utilization, Some(0.0));
        assert_eq!(utilization(&s, false), None);
        assert_eq!(
            LimitSource::Cgroup {
                file: CgroupLimitFile::V2Max,
                depth: 2
            }
            .to_string(),
            "cgroup memory.max (2 up)"
        );
    }
}
