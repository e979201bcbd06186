//! (std) The `CleanupManager`: named cleanup tasks run periodically on background
//! threads, plus helpers for the common cleanups of locked maps and vectors.
//!
//! # How tasks are isolated
//!
//! Every task gets its own worker thread, which drives a one-task
//! [`Schedule`] on a [`MonotonicClock`]. So:
//!
//! - a slow task delays nobody but itself: other tasks run on their own threads, on
//!   time. A run that takes at least its interval is counted in
//!   [`TaskMetrics::overruns`] and the next run starts one interval after it ended
//!   (runs do not pile up);
//! - a panicking task is caught (`catch_unwind`), counted as an error with
//!   [`TaskFailure::Panicked`], and runs again at its next interval; other tasks never
//!   notice;
//! - [`run_now`](CleanupManager::run_now) takes the same per-task lock as the worker,
//!   so a task never runs concurrently with its scheduled run.
//!
//! [`start`](CleanupManager::start) and [`stop`](CleanupManager::stop) are idempotent
//! and a stopped manager starts again; dropping the manager stops it.
//!
//! # Examples
//!
//! ```
//! use std::collections::HashMap;
//! use std::sync::{Arc, Mutex};
//! use std::time::{Duration, Instant};
//! use membound::cleanup::{expire_locked_map, CleanupConfig, CleanupManager};
//!
//! let sessions: Arc<Mutex<HashMap<u32, Instant>>> = Arc::default();
//! sessions.lock().unwrap().insert(1, Instant::now() - Duration::from_secs(3600));
//! sessions.lock().unwrap().insert(2, Instant::now());
//!
//! let manager = CleanupManager::new(CleanupConfig::production())?;
//! let ttl = manager.config().ttl; // 10 minutes
//! let map = sessions.clone();
//! manager.register("sessions", move || {
//!     Ok::<_, std::convert::Infallible>(expire_locked_map(&map, Instant::now(), ttl, |t| *t))
//! })?;
//! manager.start();
//! assert_eq!(manager.run_now("sessions")?, 1); // the hour-old session
//! assert_eq!(sessions.lock().unwrap().len(), 1);
//! manager.stop();
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::boxed::Box;
use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasher, Hash};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::string::{String, ToString};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};
use std::vec::Vec;

use crate::clock::{Clock, MonotonicClock};
use crate::schedule::{Schedule, ScheduleError, TaskMetrics};

/// Why a task run failed, as kept in [`TaskMetrics::last_error`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TaskFailure {
    /// The task returned an error; its `Display` text.
    Error(String),
    /// The task panicked; the panic message if it was a string.
    Panicked(String),
}

impl fmt::Display for TaskFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Error(e) => write!(f, "task failed: {e}"),
            Self::Panicked(m) => write!(f, "task panicked: {m}"),
        }
    }
}

impl std::error::Error for TaskFailure {}

/// Errors of the cleanup manager.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CleanupError {
    /// An interval of zero.
    ZeroInterval,
    /// A TTL of zero.
    ZeroTtl,
    /// No task has this name.
    UnknownTask,
    /// The task ran and failed.
    Failed(TaskFailure),
    /// The worker thread could not be spawned; the OS's message.
    Spawn(String),
}

impl fmt::Display for CleanupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ZeroInterval => f.write_str("cleanup interval must be greater than zero"),
            Self::ZeroTtl => f.write_str("cleanup TTL must be greater than zero"),
            Self::UnknownTask => f.write_str("no cleanup task with that name"),
            Self::Failed(e) => e.fmt(f),
            Self::Spawn(e) => write!(f, "could not spawn a cleanup worker: {e}"),
        }
    }
}

impl std::error::Error for CleanupError {}

/// Configuration of a [`CleanupManager`]: the interval tasks run at unless registered
/// with their own, and the TTL cleanup tasks are meant to apply.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub struct CleanupConfig {
    /// How often a task registered with [`register`](CleanupManager::register) runs.
    pub interval: Duration,
    /// How old an entry may grow before cleanup removes it.
    pub ttl: Duration,
}

impl CleanupConfig {
    /// Runs every `interval`, expiring after `ttl`.
    pub const fn new(interval: Duration, ttl: Duration) -> Self {
        Self { interval, ttl }
    }

    /// The original's production preset: TTL 10 minutes, checked every 60 s.
    pub const fn production() -> Self {
        Self::new(Duration::from_secs(60), Duration::from_secs(600))
    }

    /// The original's development preset: TTL 1 minute, checked every 10 s.
    pub const fn development() -> Self {
        Self::new(Duration::from_secs(10), Duration::from_secs(60))
    }

    /// Checks that the configuration can work.
    ///
    /// # Errors
    ///
    /// [`CleanupError::ZeroInterval`], [`CleanupError::ZeroTtl`].
    pub fn validate(&self) -> Result<(), CleanupError> {
        if self.interval.is_zero() {
            Err(CleanupError::ZeroInterval)
        } else if self.ttl.is_zero() {
            Err(CleanupError::ZeroTtl)
        } else {
            Ok(())
        }
    }
}

impl Default for CleanupConfig {
    /// The production preset.
    fn default() -> Self {
        Self::production()
    }
}

type BoxTask = Box<dyn FnMut(u64) -> Result<usize, TaskFailure> + Send>;

/// One task, its one-task schedule and its worker's controls.
struct Worker {
    name: &'static str,
    /// Held for every run, scheduled or `run_now`.
    schedule: Mutex<Schedule<MonotonicClock, BoxTask, TaskFailure, 1>>,
    /// A copy of the metrics after each run, readable while the task runs.
    metrics: Mutex<TaskMetrics<TaskFailure>>,
    stop: Mutex<bool>,
    wake: Condvar,
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// Locks, recovering from poisoning: every critical section here leaves its data
/// consistent (task panics are caught before they can poison anything).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Worker {
    fn run_due(&self, clock: &MonotonicClock) -> Option<u64> {
        let mut schedule = lock(&self.schedule);
        schedule.run_due(clock.now());
        if let Some(m) = schedule.metrics(self.name) {
            *lock(&self.metrics) = m.clone();
        }
        schedule.next_due()
    }

    fn main(self: Arc<Self>, clock: MonotonicClock) {
        loop {
            let due = self.run_due(&clock).unwrap_or(u64::MAX);
            let mut stop = lock(&self.stop);
            loop {
                if *stop {
                    return;
                }
                let now = clock.now();
                if now >= due {
                    break;
                }
                stop = self
                    .wake
                    .wait_timeout(stop, Duration::from_nanos(due - now))
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
            }
        }
    }

    fn spawn(self: &Arc<Self>, clock: MonotonicClock) -> Result<(), CleanupError> {
        *lock(&self.stop) = false;
        let worker = self.clone();
        let handle = thread::Builder::new()
            .name(std::format!("cleanup-{}", self.name))
            .spawn(move || worker.main(clock))
            .map_err(|e| CleanupError::Spawn(e.to_string()))?;
        *lock(&self.thread) = Some(handle);
        Ok(())
    }

    fn halt(&self) {
        *lock(&self.stop) = true;
        self.wake.notify_all();
        let handle = lock(&self.thread).take();
        if let Some(handle) = handle {
            // A task that unregisters itself runs on this very thread: it exits after
            // the run instead of being joined.
            if handle.thread().id() != thread::current().id() {
                let _ = handle.join();
            }
        }
    }
}

/// Runs named cleanup tasks periodically, each on its own worker thread (see the
/// [module documentation](self)).
pub struct CleanupManager {
    config: CleanupConfig,
    clock: MonotonicClock,
    workers: Mutex<Vec<Arc<Worker>>>,
    running: Mutex<bool>,
}

impl fmt::Debug for CleanupManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CleanupManager")
            .field("config", &self.config)
            .field("tasks", &self.task_names())
            .field("running", &self.is_running())
            .finish()
    }
}

impl CleanupManager {
    /// A stopped manager with no tasks.
    ///
    /// # Errors
    ///
    /// As [`CleanupConfig::validate`].
    pub fn new(config: CleanupConfig) -> Result<Self, CleanupError> {
        config.validate()?;
        Ok(Self {
            config,
            clock: MonotonicClock::new(),
            workers: Mutex::new(Vec::new()),
            running: Mutex::new(false),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &CleanupConfig {
        &self.config
    }

    /// Registers `task` under `name`, run every [`CleanupConfig::interval`].
    ///
    /// # Errors
    ///
    /// As [`register_every`](Self::register_every).
    pub fn register<F, E>(&self, name: &'static str, task: F) -> Result<(), CleanupError>
    where
        F: FnMut() -> Result<usize, E> + Send + 'static,
        E: fmt::Display,
    {
        self.register_every(name, self.config.interval, task)
    }

    /// Registers `task` under `name`, run every `interval` (first one interval from
    /// now). A task of the same name is replaced; its metrics are kept. If the
    /// manager is running, the task starts running at once.
    ///
    /// # Errors
    ///
    /// [`CleanupError::ZeroInterval`]; [`CleanupError::Spawn`] if the worker thread
    /// could not start (the task stays registered and runs after a restart).
    pub fn register_every<F, E>(
        &self,
        name: &'static str,
        interval: Duration,
        mut task: F,
    ) -> Result<(), CleanupError>
    where
        F: FnMut() -> Result<usize, E> + Send + 'static,
        E: fmt::Display,
    {
        if interval.is_zero() {
            return Err(CleanupError::ZeroInterval);
        }
        let interval = self.clock.ticks_for(interval);
        let wrapped: BoxTask =
            Box::new(
                move |_now| match catch_unwind(AssertUnwindSafe(&mut task)) {
                    Ok(Ok(n)) => Ok(n),
                    Ok(Err(e)) => Err(TaskFailure::Error(e.to_string())),
                    Err(panic) => Err(TaskFailure::Panicked(
                        panic
                            .downcast_ref::<&str>()
                            .map(|s| (*s).to_string())
                            .or_else(|| panic.downcast_ref::<String>().cloned())
                            .unwrap_or_else(|| "non-string panic".to_string()),
                    )),
                },
            );
        let mut workers = lock(&self.workers);
        if let Some(worker) = workers.iter().find(|w| w.name == name) {
            let mut schedule = lock(&worker.schedule);
            match schedule.register(name, interval, wrapped) {
                Ok(_) => {}
                Err(ScheduleError::ZeroInterval(_)) => return Err(CleanupError::ZeroInterval),
                Err(_) => unreachable!("replacing the only task of a one-task schedule"),
            }
            drop(schedule);
            // Wake the worker so it waits for the new interval.
            worker.wake.notify_all();
            return Ok(());
        }
        let mut schedule = Schedule::new(self.clock);
        if schedule.register(name, interval, wrapped).is_err() {
            return Err(CleanupError::ZeroInterval);
        }
        let worker = Arc::new(Worker {
            name,
            schedule: Mutex::new(schedule),
            metrics: Mutex::new(TaskMetrics::default()),
            stop: Mutex::new(false),
            wake: Condvar::new(),
            thread: Mutex::new(None),
        });
        workers.push(worker.clone());
        drop(workers);
        if *lock(&self.running) {
            worker.spawn(self.clock)?;
        }
        Ok(())
    }

    /// Removes task `name`, waiting for a run in progress to end.
    ///
    /// # Errors
    ///
    /// [`CleanupError::UnknownTask`]; nothing changes then.
    pub fn unregister(&self, name: &str) -> Result<(), CleanupError> {
        let worker = {
            let mut workers = lock(&self.workers);
            let i = workers
                .iter()
                .position(|w| w.name == name)
                .ok_or(CleanupError::UnknownTask)?;
            workers.remove(i)
        };
        worker.halt();
        Ok(())
    }

    /// Starts a worker per task. Returns `false` (and does nothing) if already
    /// running.
    pub fn start(&self) -> bool {
        let mut running = lock(&self.running);
        if *running {
            return false;
        }
        *running = true;
        for worker in lock(&self.workers).iter() {
            // A worker that cannot spawn is retried at the next start; its task can
            // still be run with `run_now`.
            let _ = worker.spawn(self.clock);
        }
        true
    }

    /// Stops every worker, waiting for runs in progress to end. Returns `false` (and
    /// does nothing) if not running. The manager can be started again.
    pub fn stop(&self) -> bool {
        let mut running = lock(&self.running);
        if !*running {
            return false;
        }
        *running = false;
        let workers: Vec<_> = lock(&self.workers).clone();
        for worker in workers {
            worker.halt();
        }
        true
    }

    /// Whether the workers are running.
    pub fn is_running(&self) -> bool {
        *lock(&self.running)
    }

    /// Runs task `name` now, on this thread, waiting first for a scheduled run of it
    /// in progress: the two never overlap. Its next scheduled run is one interval
    /// later. Works whether or not the manager is running.
    ///
    /// # Errors
    ///
    /// [`CleanupError::UnknownTask`], or [`CleanupError::Failed`] if the task failed
    /// or panicked (also counted in its metrics).
    pub fn run_now(&self, name: &str) -> Result<usize, CleanupError> {
        let worker = lock(&self.workers)
            .iter()
            .find(|w| w.name == name)
            .cloned()
            .ok_or(CleanupError::UnknownTask)?;
        let mut schedule = lock(&worker.schedule);
        let result = match schedule.run_now(name) {
            Ok(Ok(n)) => Ok(n),
            Ok(Err(e)) => Err(CleanupError::Failed(e.clone())),
            Err(_) => Err(CleanupError::UnknownTask),
        };
        if let Some(m) = schedule.metrics(name) {
            *lock(&worker.metrics) = m.clone();
        }
        result
    }

    /// The metrics of task `name` as of its last completed run; never waits for a
    /// run in progress.
    pub fn metrics(&self, name: &str) -> Option<TaskMetrics<TaskFailure>> {
        let worker = lock(&self.workers)
            .iter()
            .find(|w| w.name == name)
            .cloned()?;
        let m = lock(&worker.metrics).clone();
        Some(m)
    }

    /// Names of the registered tasks.
    pub fn task_names(&self) -> Vec<&'static str> {
        lock(&self.workers).iter().map(|w| w.name).collect()
    }
}

impl Drop for CleanupManager {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Removes the entries of `map` whose timestamp (read by `stamp`) is at least `ttl`
/// before `now`; returns how many. Works with a map behind any lock: lock it and pass
/// the `&mut`.
///
/// # Examples
///
/// ```
/// use std::collections::HashMap;
/// use std::time::{Duration, Instant};
/// use membound::cleanup::expire_map;
///
/// let now = Instant::now();
/// let mut seen = HashMap::from([("old", now - Duration::from_secs(90)), ("new", now)]);
/// assert_eq!(expire_map(&mut seen, now, Duration::from_secs(60), |t| *t), 1);
/// assert!(seen.contains_key("new"));
/// ```
pub fn expire_map<K, V, S>(
    map: &mut HashMap<K, V, S>,
    now: Instant,
    ttl: Duration,
    stamp: impl Fn(&V) -> Instant,
) -> usize
where
    K: Hash + Eq,
    S: BuildHasher,
{
    let before = map.len();
    map.retain(|_, v| now.saturating_duration_since(stamp(v)) < ttl);
    before - map.len()
}

/// [`expire_map`] on a map behind a `Mutex`. A poisoned lock is recovered: removing
/// expired entries is safe whatever state a panicking holder left.
pub fn expire_locked_map<K: Hash + Eq, V, S: BuildHasher>(
    map: &Mutex<HashMap<K, V, S>>,
    now: Instant,
    ttl: Duration,
    stamp: impl Fn(&V) -> Instant,
) -> usize {
    expire_map(&mut lock(map), now, ttl, stamp)
}

/// Keeps the items of a locked `Vec` for which `keep` is true; returns how many were
/// removed. A poisoned lock is recovered.
///
/// # Examples
///
/// ```
/// use std::sync::Mutex;
/// use membound::cleanup::retain_locked;
///
/// let jobs = Mutex::new(vec![1, 2, 3, 4]);
/// assert_eq!(retain_locked(&jobs, |j| j % 2 == 0), 2);
/// assert_eq!(*jobs.lock().unwrap(), [2, 4]);
/// ```
pub fn retain_locked<T>(vec: &Mutex<Vec<T>>, keep: impl FnMut(&T) -> bool) -> usize {
    let mut v = lock(vec);
    let before = v.len();
    v.retain(keep);
    before - v.len()
}
