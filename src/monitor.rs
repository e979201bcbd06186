//! The memory manager (std): a background thread that samples memory at an interval,
//! turns it into a pressure level with hysteresis, resizes registered soft-capacity
//! targets, and tells subscribers.
//!
//! - [`MemoryManager::level`] and [`MemoryManager::scale`] are single atomic loads:
//!   hot paths may read them on every request.
//! - [`MemoryManager::on_pressure`] registers a callback for level transitions and
//!   returns a [`Subscription`]; dropping it (or calling
//!   [`unsubscribe`](Subscription::unsubscribe)) removes the callback. Callbacks run
//!   on the monitor thread in registration order; one that panics is caught and
//!   counted and the others still run.
//! - [`MemoryManager::register_capacity`] adds a soft-capacity target (a ring, a
//!   table) that is set to [`adaptive_size`](crate::pressure::adaptive_size) of its
//!   base on every transition, before the callbacks run.
//! - On entering High or Critical the manager can ask the C allocator to return free
//!   memory ([`TrimConfig`], off by default, rate-limited), recording the RSS it
//!   released: the analogue of the original's forced GC, without its flapping.
//! - [`MemoryManager::start`] and [`MemoryManager::stop`] are idempotent, and a
//!   stopped manager starts again.
//!
//! # Examples
//!
//! ```
//! use membound::monitor::{MemoryManager, MonitorConfig};
//! use membound::pressure::PressureLevel;
//!
//! let manager = MemoryManager::new(MonitorConfig::production())?;
//! let subscription = manager.on_pressure(|event| {
//!     eprintln!("memory pressure {} -> {}", event.transition.from, event.transition.to);
//! });
//! manager.start()?;
//! if manager.level() >= PressureLevel::High {
//!     // refuse optional work
//! }
//! manager.stop();
//! subscription.unsubscribe();
//! # Ok::<(), membound::monitor::MonitorError>(())
//! ```

use core::fmt;
use core::time::Duration;
use std::boxed::Box;
use std::cell::Cell;
use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Condvar, PoisonError, Weak};
use std::thread::{self, JoinHandle, ThreadId};
use std::vec::Vec;

use crate::capacity::SoftCapacity;
use crate::clock::{Clock, MonotonicClock};
use crate::heap::TrackingAllocator;
use crate::os::{
    trim_heap, EffectiveLimit, LimitSource, MemorySample, OsError, Sampler, SamplerConfig,
    TrimOutcome,
};
use crate::pressure::{
    BudgetEntry, CapacityTargets, PressureConfig, PressureConfigError, PressureGauge,
    PressureLevel, Reading, TargetId, Transition,
};
use crate::sync::blocking::{thread_local, AtomicBool, Mutex};
use crate::sync::{AtomicU64, Ordering};

/// Where a [`MemoryManager`] gets its samples.
///
/// [`Sampler`] (the OS view) and [`HeapSource`] (a tracked heap of known size)
/// implement it; tests implement it with a script.
pub trait MemorySource: Send + 'static {
    /// Takes one sample. Should not allocate: it runs at every interval.
    fn sample(&mut self) -> MemorySample;

    /// The process's RSS now, for measuring what a heap trim released. `None` where
    /// the source cannot tell.
    fn rss(&mut self) -> Option<u64> {
        None
    }
}

impl MemorySource for Sampler {
    fn sample(&mut self) -> MemorySample {
        Sampler::sample(self)
    }

    fn rss(&mut self) -> Option<u64> {
        Sampler::rss(self)
    }
}

/// A [`TrackingAllocator`] with a heap size as a memory source: live bytes against
/// the heap size ([`LimitSource::Heap`]). Without a heap size the samples carry no
/// utilization.
#[derive(Debug)]
pub struct HeapSource<A: 'static>(pub &'static TrackingAllocator<A>);

impl<A: Sync + 'static> MemorySource for HeapSource<A> {
    fn sample(&mut self) -> MemorySample {
        let stats = self.0.stats();
        let limit = stats.heap_size.map(|bytes| EffectiveLimit {
            bytes: bytes as u64,
            source: LimitSource::Heap,
        });
        match limit {
            Some(limit) => MemorySample::from_usage(stats.live_bytes as u64, limit),
            None => MemorySample {
                used: Some(stats.live_bytes as u64),
                ..MemorySample::default()
            },
        }
    }
}

/// When to ask the allocator to return memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
#[non_exhaustive]
pub struct TrimConfig {
    /// Whether to trim on entering High or Critical. Default `false`.
    pub enabled: bool,
    /// The least time between two trims. Default 60 s.
    pub min_interval: Duration,
}

impl TrimConfig {
    /// Trimming enabled, at most once per `min_interval`.
    pub const fn every(min_interval: Duration) -> Self {
        Self {
            enabled: true,
            min_interval,
        }
    }
}

impl Default for TrimConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            min_interval: Duration::from_secs(60),
        }
    }
}

/// A PSI trigger to wake the monitor between intervals (Linux).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(deny_unknown_fields))]
pub struct PsiWake {
    /// Stall time within the window that fires the trigger.
    pub stall: Duration,
    /// The window (rounded up to a 2 s multiple if the kernel insists).
    pub window: Duration,
}

/// Configuration of a [`MemoryManager`].
///
/// # Examples
///
/// ```
/// use core::time::Duration;
/// use membound::monitor::{MonitorConfig, TrimConfig};
///
/// let mut config = MonitorConfig::production();
/// config.trim.enabled = true;
/// config.sampler.user_limit = Some(2 << 30);
/// assert_eq!(config.pressure.interval, Duration::from_secs(5));
/// ```
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
#[non_exhaustive]
pub struct MonitorConfig {
    /// Thresholds, hysteresis and the sampling interval.
    pub pressure: PressureConfig,
    /// What the OS sampler reads (ignored by [`MemoryManager::with_source`]).
    pub sampler: SamplerConfig,
    /// Heap trimming on rising pressure.
    pub trim: TrimConfig,
    /// A PSI trigger that wakes the monitor early; `None` (the default) samples on
    /// the interval only. If the trigger cannot be set up the manager polls, and
    /// [`MonitorMetrics::psi_wake`] says so.
    pub psi_wake: Option<PsiWake>,
}

impl MonitorConfig {
    /// Thresholds 70/85/95 % sampled every 5 s ([`PressureConfig::production`]).
    pub fn production() -> Self {
        Self {
            pressure: PressureConfig::production(),
            sampler: SamplerConfig::default(),
            trim: TrimConfig::default(),
            psi_wake: None,
        }
    }

    /// Thresholds 50/70/90 % sampled every 1 s ([`PressureConfig::development`]).
    pub fn development() -> Self {
        Self {
            pressure: PressureConfig::development(),
            ..Self::production()
        }
    }

    /// The same configuration with other pressure settings.
    #[must_use]
    pub fn with_pressure(mut self, pressure: PressureConfig) -> Self {
        self.pressure = pressure;
        self
    }

    /// The same configuration with other sampler settings.
    #[must_use]
    pub fn with_sampler(mut self, sampler: SamplerConfig) -> Self {
        self.sampler = sampler;
        self
    }

    /// The same configuration with other trim settings.
    #[must_use]
    pub fn with_trim(mut self, trim: TrimConfig) -> Self {
        self.trim = trim;
        self
    }

    /// The same configuration with a PSI trigger.
    #[must_use]
    pub fn with_psi_wake(mut self, psi_wake: Option<PsiWake>) -> Self {
        self.psi_wake = psi_wake;
        self
    }
}

impl Default for MonitorConfig {
    /// [`MonitorConfig::production`].
    fn default() -> Self {
        Self::production()
    }
}

/// Why a [`MemoryManager`] could not be built or started.
#[derive(Debug)]
#[non_exhaustive]
pub enum MonitorError {
    /// The pressure configuration cannot work.
    Config(PressureConfigError),
    /// The OS sampler could not be built.
    Os(OsError),
    /// The monitor thread could not be spawned.
    Spawn(io::Error),
}

impl fmt::Display for MonitorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Config(e) => write!(f, "invalid pressure configuration: {e}"),
            Self::Os(e) => write!(f, "cannot sample memory: {e}"),
            Self::Spawn(e) => write!(f, "cannot spawn the monitor thread: {e}"),
        }
    }
}

impl core::error::Error for MonitorError {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            Self::Config(e) => Some(e),
            Self::Os(e) => Some(e),
            Self::Spawn(e) => Some(e),
        }
    }
}

impl From<PressureConfigError> for MonitorError {
    fn from(e: PressureConfigError) -> Self {
        Self::Config(e)
    }
}

impl From<OsError> for MonitorError {
    fn from(e: OsError) -> Self {
        Self::Os(e)
    }
}

/// What a pressure callback receives.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct PressureEvent {
    /// The level change.
    pub transition: Transition,
    /// The sample that caused it.
    pub sample: MemorySample,
    /// The scale factor after it.
    pub scale: f64,
}

/// How the monitor thread waits between samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PsiWakeState {
    /// No PSI trigger was asked for.
    Off,
    /// A PSI trigger wakes the monitor early; the window in force.
    Active {
        /// The window, possibly rounded up to a 2 s multiple.
        window: Duration,
    },
    /// A trigger was asked for but could not be set up; the monitor polls.
    #[cfg(target_os = "linux")]
    Polling(crate::os::PsiError),
    /// A trigger was asked for on a platform without PSI; the monitor polls.
    #[cfg(not(target_os = "linux"))]
    Polling,
}

/// A snapshot of a [`MemoryManager`]'s counters.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct MonitorMetrics {
    /// Samples taken.
    pub samples: u64,
    /// The latest sample.
    pub last_sample: Option<MemorySample>,
    /// The current level.
    pub level: PressureLevel,
    /// The current scale factor.
    pub scale: f64,
    /// Transitions into each level, indexed by [`PressureLevel::index`].
    pub transitions_into: [u64; 4],
    /// Time spent in each level since the manager was built, indexed by
    /// [`PressureLevel::index`].
    pub time_in: [Duration; 4],
    /// The latest transition.
    pub last_transition: Option<Transition>,
    /// Heap trims done.
    pub trims: u64,
    /// RSS released by trims (before minus after, where the source measures RSS).
    pub bytes_released: u64,
    /// Fields that failed to read or parse, summed over samples.
    pub sampling_errors: u64,
    /// Samples that produced no utilization at all (not fed to the gauge).
    pub unmeasured_samples: u64,
    /// Samples the pressure config's [`ThresholdMode`](crate::pressure::ThresholdMode) could not judge for want of its
    /// signal (PSI missing in the stall mode: no file, not permitted, or
    /// [`SamplerConfig::psi`] off; no limit in the headroom mode), judged on the fixed
    /// utilization bands instead.
    pub threshold_fallbacks: u64,
    /// Whether the latest sample was such a fallback.
    pub threshold_fallback: bool,
    /// Callbacks that panicked (caught; the others ran).
    pub callback_panics: u64,
    /// Live subscriptions.
    pub subscribers: usize,
    /// How the monitor waits between samples.
    pub psi_wake: PsiWakeState,
}

impl crate::metrics::Metrics for MonitorMetrics {
    const KIND: &'static str = "monitor";

    fn visit(&self, out: &mut dyn crate::metrics::Visitor) {
        use crate::metrics::Metric;
        let MonitorMetrics {
            samples,
            last_sample,
            level,
            scale,
            transitions_into,
            time_in,
            // An event, not a figure: `transitions` and `level` count and show it.
            last_transition: _,
            trims,
            bytes_released,
            sampling_errors,
            unmeasured_samples,
            threshold_fallbacks,
            threshold_fallback,
            callback_panics,
            subscribers,
            // A mode with an error inside, not a figure.
            psi_wake: _,
        } = *self;
        #[rustfmt::skip]
        let metrics = [
            Metric::counter("samples", "Samples taken.", samples),
            Metric::counter("trims", "Heap trims done.", trims),
            Metric::counter("sampling_errors", "Fields that failed to read or parse.", sampling_errors),
            Metric::counter("unmeasured_samples", "Samples with no utilization.", unmeasured_samples),
            Metric::counter("threshold_fallbacks", "Samples judged on the fixed bands for want of the threshold mode's signal (PSI, a limit).", threshold_fallbacks),
            Metric::gauge("threshold_fallback", "1 while the latest sample was judged on the fixed bands for want of the threshold mode's signal.", u64::from(threshold_fallback)),
            Metric::counter("callback_panics", "Pressure callbacks that panicked.", callback_panics),
            Metric::counter("trim_released", "RSS released by heap trims.", bytes_released).bytes(),
            Metric::gauge("level", "Pressure level: 0 normal, 1 low, 2 high, 3 critical.", level.index()),
            Metric::gauge("scale", "Continuous pressure scale factor, 0 to 1.", scale),
            Metric::gauge("subscribers", "Live pressure subscriptions.", subscribers),
        ];
        metrics.into_iter().for_each(|m| out.metric(m));
        for level in crate::pressure::PressureLevel::ALL {
            let (i, labels) = (level.index(), [("level", level.as_str())]);
            let help = "Transitions into each pressure level.";
            out.metric(
                Metric::counter("transitions", help, transitions_into[i]).with_labels(&labels),
            );
            let help = "Time spent in each pressure level.";
            let time = Metric::counter("time_in_level", help, time_in[i]).seconds();
            out.metric(time.with_labels(&labels));
        }
        if let Some(sample) = &last_sample {
            crate::metrics::Metrics::visit(sample, out);
        }
    }
}

/// Where the bounded memory is, from [`MemoryManager::budget`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Budget {
    /// Every live registered component, the largest first.
    pub components: Vec<BudgetEntry>,
    /// The components' bytes now, summed (those that report a footprint).
    pub total_bytes: u64,
    /// The components' maximum bytes, summed.
    pub total_max_bytes: u64,
    /// The effective limit of the latest sample, bytes.
    pub limit: Option<u64>,
    /// `total_bytes` as a share of `limit`.
    pub share_of_limit: Option<f64>,
}

impl crate::metrics::Metrics for Budget {
    const KIND: &'static str = "budget";

    /// Per component, gauges labelled `component` (its name) and `kind`: bytes held
    /// now and at most (`held_bytes`, `max_bytes`), capacity and maximum capacity;
    /// then the totals (`total_held_bytes`, `total_max_bytes`, `share_of_limit`).
    fn visit(&self, out: &mut dyn crate::metrics::Visitor) {
        use crate::metrics::Metric;
        for c in &self.components {
            let labels = [("component", &*c.name), ("kind", c.kind)];
            if let Some(f) = c.footprint {
                let bytes =
                    Metric::gauge("held", "Bytes a registered component holds now.", f.bytes);
                out.metric(bytes.bytes().with_labels(&labels));
                let max = Metric::gauge(
                    "max",
                    "The most bytes a registered component can hold.",
                    f.max_bytes,
                );
                out.metric(max.bytes().with_labels(&labels));
            }
            let help = "A registered component's soft capacity in force.";
            out.metric(Metric::gauge("capacity", help, c.capacity as u64).with_labels(&labels));
            let help = "A registered component's maximum capacity.";
            out.metric(
                Metric::gauge("max_capacity", help, c.max_capacity as u64).with_labels(&labels),
            );
        }
        out.metric(
            Metric::gauge(
                "total_held",
                "Bytes the registered components hold now, summed.",
                self.total_bytes,
            )
            .bytes(),
        );
        out.metric(
            Metric::gauge(
                "total_max",
                "The most bytes the registered components can hold, summed.",
                self.total_max_bytes,
            )
            .bytes(),
        );
        if let Some(share) = self.share_of_limit {
            out.metric(Metric::gauge(
                "share_of_limit",
                "The registered components' bytes as a share of the effective limit.",
                share,
            ));
        }
    }
}

/// What one [`MemoryManager::sample_now`] did.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct Step {
    /// The sample.
    pub sample: MemorySample,
    /// The transition it caused, if any.
    pub transition: Option<Transition>,
}

type Callback = Box<dyn Fn(&PressureEvent) + Send + Sync>;

struct Subscriber {
    id: u64,
    /// Cleared by `unsubscribe` before it removes the entry, so a delivery already
    /// holding a snapshot skips it.
    active: AtomicBool,
    callback: Callback,
}

/// State the sampling step owns, behind one lock.
struct Engine {
    source: Box<dyn MemorySource>,
    gauge: PressureGauge,
    targets: CapacityTargets,
    samples: u64,
    last_sample: Option<MemorySample>,
    sampling_errors: u64,
    unmeasured_samples: u64,
    trims: u64,
    bytes_released: u64,
    last_trim_at: Option<u64>,
}

/// Whether the thread should run, and which run it is.
struct RunState {
    running: bool,
    thread: Option<JoinHandle<()>>,
    thread_id: Option<ThreadId>,
}

struct Shared {
    config: MonitorConfig,
    clock: Arc<dyn Clock + Send + Sync>,
    /// The level's index; written by the sampling step only.
    level: AtomicU64,
    /// The scale factor's `f64` bits.
    scale: AtomicU64,
    engine: Mutex<Engine>,
    run: std::sync::Mutex<RunState>,
    wake: Condvar,
    subscribers: Mutex<Vec<Arc<Subscriber>>>,
    /// Held for a whole delivery round: `unsubscribe` from another thread waits on it,
    /// so after it returns its callback is not running. Holds the round's snapshot.
    delivery: Mutex<Vec<Arc<Subscriber>>>,
    next_subscriber: AtomicU64,
    callback_panics: AtomicU64,
    psi_wake: Mutex<PsiWakeState>,
    /// The pressure file a PSI trigger watches; `None` when the sampler reads none.
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    psi_path: Option<std::path::PathBuf>,
}

thread_local! {
    /// Set while this thread delivers callbacks, so re-entrant calls from a callback
    /// neither deadlock nor wait for themselves.
    // Not `const`-initialized: loom's macro (under `cfg(loom)`) takes only the plain
    // form.
    #[allow(clippy::missing_const_for_thread_local)]
    static DELIVERING: Cell<bool> = Cell::new(false);
}

fn lock<T>(mutex: &Mutex<T>) -> impl core::ops::DerefMut<Target = T> + '_ {
    // Every critical section here leaves its data consistent before anything that
    // could panic (callbacks run outside the locks, and under `catch_unwind`).
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The run state is plain std: the thread and its condvar are not part of the loom
/// model (which drives `sample_now` from model threads).
fn lock_run(mutex: &std::sync::Mutex<RunState>) -> std::sync::MutexGuard<'_, RunState> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The memory manager: samples on a background thread, publishes the pressure level
/// and scale factor, resizes soft-capacity targets and calls subscribers.
///
/// See the [module docs](self) for an example.
pub struct MemoryManager {
    shared: Arc<Shared>,
}

impl fmt::Debug for MemoryManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryManager")
            .field("level", &self.level())
            .field("running", &self.is_running())
            .finish_non_exhaustive()
    }
}

impl MemoryManager {
    /// A stopped manager sampling the OS ([`Sampler`]) on a [`MonotonicClock`].
    ///
    /// # Errors
    ///
    /// [`MonitorError::Config`] for a pressure config that cannot work,
    /// [`MonitorError::Os`] if the sampler cannot be built.
    pub fn new(config: MonitorConfig) -> Result<Self, MonitorError> {
        config.pressure.validate()?;
        let sampler = Sampler::new(config.sampler.clone())?;
        Self::with_sampler(config, sampler)
    }

    /// A stopped manager sampling with `sampler` (built by the caller, e.g. with
    /// [`Sampler::with_heap`]) on a [`MonotonicClock`]. A PSI trigger, if configured,
    /// watches the same pressure file the sampler reads (the cgroup's own on v2).
    ///
    /// # Errors
    ///
    /// [`MonitorError::Config`] for a pressure config that cannot work.
    pub fn with_sampler(config: MonitorConfig, sampler: Sampler) -> Result<Self, MonitorError> {
        // The sampler's own file; if it reads none (PSI sampling turned off), the
        // system-wide one.
        #[cfg(target_os = "linux")]
        let psi_path = Some(sampler.psi_path().map_or_else(
            || config.sampler.proc_root.join("pressure/memory"),
            std::path::Path::to_path_buf,
        ));
        #[cfg(not(target_os = "linux"))]
        let psi_path = None;
        Self::build(config, sampler, MonotonicClock::new(), psi_path)
    }

    /// A stopped manager sampling `source`, timing on `clock` (a
    /// [`ManualClock`](crate::clock::ManualClock) in tests). The thread still waits
    /// [`PressureConfig::interval`] of real time between samples.
    ///
    /// # Errors
    ///
    /// [`MonitorError::Config`] for a pressure config that cannot work.
    pub fn with_source<S, C>(
        config: MonitorConfig,
        source: S,
        clock: C,
    ) -> Result<Self, MonitorError>
    where
        S: MemorySource,
        C: Clock + Send + Sync + 'static,
    {
        let psi_path = Some(config.sampler.proc_root.join("pressure/memory"));
        Self::build(config, source, clock, psi_path)
    }

    fn build<S, C>(
        config: MonitorConfig,
        source: S,
        clock: C,
        psi_path: Option<std::path::PathBuf>,
    ) -> Result<Self, MonitorError>
    where
        S: MemorySource,
        C: Clock + Send + Sync + 'static,
    {
        let gauge = PressureGauge::new(&config.pressure, &clock)?;
        Ok(Self {
            shared: Arc::new(Shared {
                clock: Arc::new(clock),
                level: AtomicU64::new(PressureLevel::Normal.index() as u64),
                scale: AtomicU64::new(0f64.to_bits()),
                engine: Mutex::new(Engine {
                    source: Box::new(source),
                    gauge,
                    targets: CapacityTargets::new(),
                    samples: 0,
                    last_sample: None,
                    sampling_errors: 0,
                    unmeasured_samples: 0,
                    trims: 0,
                    bytes_released: 0,
                    last_trim_at: None,
                }),
                run: std::sync::Mutex::new(RunState {
                    running: false,
                    thread: None,
                    thread_id: None,
                }),
                wake: Condvar::new(),
                subscribers: Mutex::new(Vec::new()),
                delivery: Mutex::new(Vec::new()),
                next_subscriber: AtomicU64::new(0),
                callback_panics: AtomicU64::new(0),
                psi_wake: Mutex::new(PsiWakeState::Off),
                psi_path,
                config,
            }),
        })
    }

    /// Starts the monitor thread. Returns `Ok(false)` if it was already running.
    ///
    /// # Errors
    ///
    /// [`MonitorError::Spawn`] if the thread could not be spawned; the manager stays
    /// stopped.
    pub fn start(&self) -> Result<bool, MonitorError> {
        let mut run = lock_run(&self.shared.run);
        if run.running {
            return Ok(false);
        }
        // A thread that stopped itself is still joinable; reap it before a new one.
        if let Some(old) = run.thread.take() {
            drop(run);
            let _ = old.join();
            run = lock_run(&self.shared.run);
            if run.running {
                return Ok(false);
            }
        }
        let shared = Arc::clone(&self.shared);
        let handle = thread::Builder::new()
            .name("membound-monitor".into())
            .spawn(move || monitor_loop(&shared))
            .map_err(MonitorError::Spawn)?;
        run.running = true;
        run.thread_id = Some(handle.thread().id());
        run.thread = Some(handle);
        Ok(true)
    }

    /// Stops the monitor thread and waits for it to finish its current step.
    /// Returns whether it was running. Called from inside a pressure callback it
    /// signals the stop without waiting (the thread may be the caller, or waiting for
    /// the caller's delivery round to end).
    pub fn stop(&self) -> bool {
        let mut run = lock_run(&self.shared.run);
        let was_running = run.running;
        run.running = false;
        self.shared.wake.notify_all();
        let own_thread = run.thread_id == Some(thread::current().id());
        let handle = if own_thread || DELIVERING.with(Cell::get) {
            None
        } else {
            run.thread.take()
        };
        drop(run);
        if let Some(handle) = handle {
            let _ = handle.join();
        }
        was_running
    }

    /// Whether the monitor thread is running.
    pub fn is_running(&self) -> bool {
        lock_run(&self.shared.run).running
    }

    /// The current pressure level: one atomic load.
    #[inline]
    pub fn level(&self) -> PressureLevel {
        let index = self.shared.level.load(Ordering::Relaxed) as usize;
        PressureLevel::from_index(index).unwrap_or(PressureLevel::Critical)
    }

    /// The current scale factor in `[0, 1]`: one atomic load.
    #[inline]
    pub fn scale(&self) -> f64 {
        f64::from_bits(self.shared.scale.load(Ordering::Relaxed))
    }

    /// Calls `callback` on every level transition, on the monitor thread, after the
    /// registered capacities were resized. Callbacks run in registration order; a
    /// panic in one is caught and counted
    /// ([`MonitorMetrics::callback_panics`]) and the rest still run.
    ///
    /// A callback may read the manager (level, metrics) and subscribe or unsubscribe;
    /// it must not call [`sample_now`](Self::sample_now) (which then returns `None`).
    /// A callback that needs the manager should capture a `Weak` of it: an `Arc`
    /// would keep the manager, which owns the callback, alive forever.
    pub fn on_pressure<F>(&self, callback: F) -> Subscription
    where
        F: Fn(&PressureEvent) + Send + Sync + 'static,
    {
        let id = self.shared.next_subscriber.fetch_add(1, Ordering::Relaxed);
        lock(&self.shared.subscribers).push(Arc::new(Subscriber {
            id,
            active: AtomicBool::new(true),
            callback: Box::new(callback),
        }));
        Subscription {
            shared: Arc::downgrade(&self.shared),
            id,
        }
    }

    /// Registers a soft-capacity target with its current capacity as its base, and
    /// sets it to the current level's size at once. Held weakly: dropping the target
    /// unregisters it.
    pub fn register_capacity<T>(&self, target: &Arc<T>) -> TargetId
    where
        T: SoftCapacity + Send + Sync + 'static,
    {
        let mut engine = lock(&self.shared.engine);
        let id = engine.targets.register(target);
        let level = engine.gauge.level();
        engine.targets.apply(level);
        id
    }

    /// [`register_capacity`](Self::register_capacity) under a name, which the
    /// [`budget`](Self::budget) lists it by (otherwise it is listed by its kind).
    pub fn register_named<T>(&self, name: impl Into<Arc<str>>, target: &Arc<T>) -> TargetId
    where
        T: SoftCapacity + Send + Sync + 'static,
    {
        let mut engine = lock(&self.shared.engine);
        let id = engine.targets.register_named(name, target);
        let level = engine.gauge.level();
        engine.targets.apply(level);
        id
    }

    /// Where the bounded memory is: every live registered component with its bytes
    /// now and at most ([`SoftCapacity::footprint`]) and its capacities, largest
    /// first; their sum, and that sum as a share of the effective limit of the
    /// latest sample.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use membound::clock::ManualClock;
    /// use membound::monitor::{MemoryManager, MemorySource, MonitorConfig};
    /// use membound::os::{EffectiveLimit, LimitSource, MemorySample};
    /// use membound::ring::Ring;
    ///
    /// struct OneGib;
    /// impl MemorySource for OneGib {
    ///     fn sample(&mut self) -> MemorySample {
    ///         let limit = EffectiveLimit { bytes: 1 << 30, source: LimitSource::User };
    ///         MemorySample::from_usage(100 << 20, limit)
    ///     }
    /// }
    /// let manager = MemoryManager::with_source(MonitorConfig::production(), OneGib, ManualClock::default())?;
    /// let queue = Arc::new(Ring::<[u8; 64]>::new(1024)?);
    /// manager.register_named("requests", &queue);
    /// manager.sample_now();
    /// let budget = manager.budget();
    /// assert_eq!((&*budget.components[0].name, budget.components[0].kind), ("requests", "ring"));
    /// assert!(budget.total_bytes >= 64 * 1024);
    /// assert!(budget.share_of_limit.unwrap() < 0.001);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn budget(&self) -> Budget {
        let engine = lock(&self.shared.engine);
        let mut components = engine.targets.budget();
        let limit = engine
            .last_sample
            .and_then(|sample| sample.limit)
            .map(|limit| limit.bytes);
        drop(engine);
        components.sort_by_key(|c| core::cmp::Reverse(c.footprint.map_or(0, |f| f.bytes)));
        let total_bytes = components
            .iter()
            .filter_map(|c| c.footprint)
            .map(|f| f.bytes)
            .sum();
        let total_max_bytes = components
            .iter()
            .filter_map(|c| c.footprint)
            .map(|f| f.max_bytes)
            .sum();
        Budget {
            components,
            total_bytes,
            total_max_bytes,
            limit,
            share_of_limit: limit.map(|limit| total_bytes as f64 / limit.max(1) as f64),
        }
    }

    /// Forgets a soft-capacity target; it keeps its current capacity. Returns whether
    /// it was registered.
    pub fn unregister_capacity(&self, id: TargetId) -> bool {
        lock(&self.shared.engine).targets.remove(id)
    }

    /// Takes one sample now on the calling thread, with everything a monitor step
    /// does (level, capacities, trim, callbacks). For tests and for programs that
    /// drive sampling themselves instead of starting the thread. `None` when called
    /// from inside a pressure callback.
    pub fn sample_now(&self) -> Option<Step> {
        step(&self.shared)
    }

    /// A snapshot of the counters.
    pub fn metrics(&self) -> MonitorMetrics {
        let shared = &self.shared;
        let engine = lock(&shared.engine);
        let now = shared.clock.now();
        let stats = engine.gauge.stats(now);
        MonitorMetrics {
            samples: engine.samples,
            last_sample: engine.last_sample,
            level: engine.gauge.level(),
            scale: engine.gauge.scale(),
            transitions_into: stats.transitions_into,
            time_in: stats.ticks_in.map(|ticks| shared.clock.duration_of(ticks)),
            last_transition: engine.gauge.last_transition(),
            trims: engine.trims,
            bytes_released: engine.bytes_released,
            sampling_errors: engine.sampling_errors,
            unmeasured_samples: engine.unmeasured_samples,
            threshold_fallbacks: stats.fallbacks,
            threshold_fallback: engine.gauge.fell_back(),
            callback_panics: shared.callback_panics.load(Ordering::Relaxed),
            subscribers: lock(&shared.subscribers).len(),
            psi_wake: *lock(&shared.psi_wake),
        }
    }
}

impl Drop for MemoryManager {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A registered pressure callback. Dropping it, or calling
/// [`unsubscribe`](Self::unsubscribe), removes the callback.
#[must_use = "dropping a Subscription unsubscribes its callback at once"]
#[derive(Debug)]
pub struct Subscription {
    shared: Weak<Shared>,
    id: u64,
}

impl Subscription {
    /// Removes the callback. When this returns the callback is not running (unless
    /// this is called from inside a callback) and will not run again.
    pub fn unsubscribe(self) {
        // Drop does the work.
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let Some(shared) = self.shared.upgrade() else {
            return;
        };
        let removed = {
            let mut subscribers = lock(&shared.subscribers);
            let position = subscribers.iter().position(|s| s.id == self.id);
            position.map(|i| subscribers.remove(i))
        };
        if let Some(subscriber) = removed {
            subscriber
                .active
                .store(false, std::sync::atomic::Ordering::Release);
        }
        if !DELIVERING.with(Cell::get) {
            // Wait out a delivery round in progress on another thread.
            drop(lock(&shared.delivery));
        }
    }
}

/// One monitor step: sample, gauge, capacities, trim, callbacks.
fn step(shared: &Shared) -> Option<Step> {
    if DELIVERING.with(Cell::get) {
        return None;
    }
    let (sample, event) = {
        let mut engine = lock(&shared.engine);
        let engine = &mut *engine;
        let sample = engine.source.sample();
        let now = shared.clock.now();
        engine.samples += 1;
        engine.sampling_errors += u64::from(sample.errors);
        engine.last_sample = Some(sample);
        let transition = match sample.utilization {
            Some(u) if !u.is_nan() => {
                let reading = Reading::new(u)
                    .with_limit(sample.limit.map(|limit| limit.bytes))
                    .with_psi(sample.psi);
                engine.gauge.observe_reading(reading, now)
            }
            _ => {
                engine.unmeasured_samples += 1;
                None
            }
        };
        shared
            .scale
            .store(engine.gauge.scale().to_bits(), Ordering::Relaxed);
        let event = transition.map(|transition| {
            shared
                .level
                .store(transition.to.index() as u64, Ordering::Relaxed);
            engine.targets.apply(transition.to);
            if transition.is_rise() && transition.to >= PressureLevel::High {
                maybe_trim(engine, &shared.config.trim, shared.clock.as_ref(), now);
            }
            PressureEvent {
                transition,
                sample,
                scale: engine.gauge.scale(),
            }
        });
        (sample, event)
    };
    if let Some(event) = &event {
        deliver(shared, event);
    }
    Some(Step {
        sample,
        transition: event.map(|e| e.transition),
    })
}

fn maybe_trim(engine: &mut Engine, config: &TrimConfig, clock: &dyn Clock, now: u64) {
    if !config.enabled {
        return;
    }
    if let Some(last) = engine.last_trim_at {
        if now.saturating_sub(last) < clock.ticks_for(config.min_interval) {
            return;
        }
    }
    let before = engine.source.rss();
    let outcome = trim_heap();
    if outcome == TrimOutcome::Unsupported {
        return;
    }
    let after = engine.source.rss();
    engine.last_trim_at = Some(now);
    engine.trims += 1;
    if let (Some(before), Some(after)) = (before, after) {
        engine.bytes_released += before.saturating_sub(after);
    }
}

fn deliver(shared: &Shared, event: &PressureEvent) {
    let mut snapshot = lock(&shared.delivery);
    snapshot.clear();
    snapshot.extend(lock(&shared.subscribers).iter().cloned());
    DELIVERING.with(|d| d.set(true));
    for subscriber in snapshot.iter() {
        if !subscriber.active.load(std::sync::atomic::Ordering::Acquire) {
            continue;
        }
        let call = catch_unwind(AssertUnwindSafe(|| (subscriber.callback)(event)));
        if call.is_err() {
            shared.callback_panics.fetch_add(1, Ordering::Relaxed);
        }
    }
    DELIVERING.with(|d| d.set(false));
    // Drop the references now, so a dropped subscription's callback (and what it
    // captured) does not outlive it until the next round.
    snapshot.clear();
}

fn monitor_loop(shared: &Shared) {
    let interval = shared.config.pressure.interval;
    #[cfg(target_os = "linux")]
    let trigger = shared.config.psi_wake.and_then(|wake| {
        let result = match &shared.psi_path {
            Some(path) => crate::os::PsiTrigger::new(path, wake.stall, wake.window),
            None => Err(crate::os::PsiError::Absent),
        };
        match result {
            Ok(trigger) => {
                *lock(&shared.psi_wake) = PsiWakeState::Active {
                    window: trigger.window(),
                };
                Some(trigger)
            }
            Err(e) => {
                *lock(&shared.psi_wake) = PsiWakeState::Polling(e);
                None
            }
        }
    });
    #[cfg(not(target_os = "linux"))]
    if shared.config.psi_wake.is_some() {
        *lock(&shared.psi_wake) = PsiWakeState::Polling;
    }

    loop {
        step(shared);
        let deadline = std::time::Instant::now() + interval;
        #[cfg(target_os = "linux")]
        if let Some(trigger) = &trigger {
            // Poll the trigger in short slices so a stop is seen promptly.
            const SLICE: Duration = Duration::from_millis(100);
            loop {
                if !lock_run(&shared.run).running {
                    return;
                }
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                if left.is_zero() {
                    break;
                }
                match trigger.wait(left.min(SLICE)) {
                    Ok(true) => break,
                    Ok(false) => {}
                    Err(e) => {
                        *lock(&shared.psi_wake) = PsiWakeState::Polling(e);
                        break;
                    }
                }
            }
            continue;
        }
        let run = lock_run(&shared.run);
        let (run, _) = shared
            .wake
            .wait_timeout_while(run, interval, |run| {
                run.running && std::time::Instant::now() < deadline
            })
            .unwrap_or_else(PoisonError::into_inner);
        if !run.running {
            return;
        }
    }
}
