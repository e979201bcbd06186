//! A cleanup schedule driven by ticks: named tasks with intervals, run when due by
//! whoever calls [`Schedule::run_due`]. No threads, no allocation (`no_std`); the
//! `std` [`CleanupManager`](crate::cleanup::CleanupManager) drives one per task on a
//! worker thread.
//!
//! Every task returns `Result<usize, E>`: the number of items it cleaned, or an error
//! that is counted and kept as the task's last error. [`TaskMetrics`] record runs,
//! items cleaned, errors, the last run and its duration, a moving average of
//! durations, and overruns (runs that took at least their interval).
//!
//! # Examples
//!
//! ```
//! use membound::clock::ManualClock;
//! use membound::schedule::Schedule;
//!
//! let clock = ManualClock::default();
//! let mut schedule: Schedule<_, fn(u64) -> Result<usize, &'static str>, _, 4> =
//!     Schedule::new(&clock);
//! schedule.register("sessions", 100, |_now| Ok(3))?;
//! schedule.register("uploads", 250, |_now| Err("disk offline"))?;
//!
//! assert_eq!(schedule.run_due(clock.now()).ran, 0); // nothing due yet
//! clock.advance(100);
//! let summary = schedule.run_due(clock.now());
//! assert_eq!((summary.ran, summary.cleaned), (1, 3));
//! clock.advance(150);
//! assert_eq!(schedule.run_due(clock.now()).errors, 1);
//! let uploads = schedule.metrics("uploads").unwrap();
//! assert_eq!((uploads.runs, uploads.errors), (1, 1));
//! assert_eq!(uploads.last_error, Some("disk offline"));
//! # use membound::clock::Clock;
//! # Ok::<(), membound::schedule::ScheduleError<fn(u64) -> Result<usize, &'static str>>>(())
//! ```

use core::fmt;

use crate::clock::Clock;

/// Counters of one task. Durations are in the schedule's clock ticks
/// ([`Unit::Ticks`](crate::metrics::Unit::Ticks)); a reader that knows the clock
/// turns them into seconds.
#[derive(Clone, Debug, PartialEq, Eq, crate::metrics::Metrics)]
#[non_exhaustive]
#[metrics(kind = "task", counters)]
pub struct TaskMetrics<E> {
    /// Completed runs, successful or not.
    pub runs: u64,
    /// Items cleaned, summed over successful runs.
    pub cleaned: u64,
    /// Runs that returned an error (or, under the `CleanupManager`, panicked).
    pub errors: u64,
    /// The error of the most recent failed run.
    #[metric(skip)]
    pub last_error: Option<E>,
    /// Tick at which the most recent run started.
    #[metric(skip)]
    pub last_run: Option<u64>,
    /// Ticks the most recent run took.
    #[metric(gauge, unit = "ticks")]
    pub last_duration: u64,
    /// Exponential moving average (weight 1/8) of run durations, in ticks.
    #[metric(gauge, unit = "ticks")]
    pub avg_duration: u64,
    /// Runs that took at least the task's interval; the next run is then scheduled
    /// one interval after the overrun ended, instead of piling up.
    pub overruns: u64,
}

impl<E> Default for TaskMetrics<E> {
    fn default() -> Self {
        Self::new()
    }
}

impl<E> TaskMetrics<E> {
    const fn new() -> Self {
        Self {
            runs: 0,
            cleaned: 0,
            errors: 0,
            last_error: None,
            last_run: None,
            last_duration: 0,
            avg_duration: 0,
            overruns: 0,
        }
    }

    /// Records one run from `start` to `end` (ticks); returns whether it overran
    /// `interval`.
    fn record(&mut self, start: u64, end: u64, interval: u64, result: Result<usize, E>) -> bool {
        let took = end.saturating_sub(start);
        self.avg_duration = if self.runs == 0 {
            took
        } else if took >= self.avg_duration {
            self.avg_duration + (took - self.avg_duration) / 8
        } else {
            self.avg_duration - (self.avg_duration - took) / 8
        };
        self.runs += 1;
        self.last_run = Some(start);
        self.last_duration = took;
        match result {
            Ok(n) => self.cleaned = self.cleaned.saturating_add(n as u64),
            Err(e) => {
                self.errors += 1;
                self.last_error = Some(e);
            }
        }
        let overran = took >= interval;
        if overran {
            self.overruns += 1;
        }
        overran
    }
}

/// Why a schedule refused a registration or a name. Refused tasks come back inside.
#[derive(Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ScheduleError<T> {
    /// An interval of zero ticks: the task would always be due.
    ZeroInterval(T),
    /// All `N` places are taken by other names.
    Full(T),
    /// No task has this name.
    UnknownTask,
}

impl<T> fmt::Debug for ScheduleError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ZeroInterval(_) => f.write_str("ZeroInterval(..)"),
            Self::Full(_) => f.write_str("Full(..)"),
            Self::UnknownTask => f.write_str("UnknownTask"),
        }
    }
}

impl<T> fmt::Display for ScheduleError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ZeroInterval(_) => f.write_str("task interval must be greater than zero"),
            Self::Full(_) => f.write_str("schedule is full"),
            Self::UnknownTask => f.write_str("no task with that name"),
        }
    }
}

impl<T> core::error::Error for ScheduleError<T> {}

/// What one [`run_due`](Schedule::run_due) did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RunSummary {
    /// Tasks run.
    pub ran: usize,
    /// Items they cleaned.
    pub cleaned: usize,
    /// Runs that failed.
    pub errors: usize,
}

struct Entry<T, E> {
    name: &'static str,
    interval: u64,
    next_due: u64,
    task: T,
    metrics: TaskMetrics<E>,
}

/// Up to `N` named tasks, each run every `interval` ticks of clock `C` when
/// [`run_due`](Self::run_due) is called. `T` is the task type, typically a closure
/// `FnMut(now) -> Result<usize, E>` (use `&mut dyn FnMut` or `Box<dyn FnMut>` to mix
/// closures).
pub struct Schedule<C, T, E, const N: usize> {
    clock: C,
    tasks: [Option<Entry<T, E>>; N],
}

impl<C, T, E, const N: usize> fmt::Debug for Schedule<C, T, E, N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.tasks.iter().flatten().map(|e| (e.name, e.interval)))
            .finish()
    }
}

impl<C: Clock, T: FnMut(u64) -> Result<usize, E>, E, const N: usize> Schedule<C, T, E, N> {
    /// An empty schedule whose run durations are measured on `clock`.
    pub fn new(clock: C) -> Self {
        Self {
            clock,
            tasks: [const { None }; N],
        }
    }

    fn find(&self, name: &str) -> Option<usize> {
        self.tasks
            .iter()
            .position(|e| e.as_ref().is_some_and(|e| e.name == name))
    }

    /// Registers `task` under `name`, first due `interval` ticks from now. A task of
    /// the same name is replaced (and returned); its metrics are kept, and the number
    /// of tasks does not grow.
    ///
    /// # Errors
    ///
    /// [`ScheduleError::ZeroInterval`] or [`ScheduleError::Full`], with the task.
    pub fn register(
        &mut self,
        name: &'static str,
        interval: u64,
        task: T,
    ) -> Result<Option<T>, ScheduleError<T>> {
        if interval == 0 {
            return Err(ScheduleError::ZeroInterval(task));
        }
        let next_due = self.clock.now().saturating_add(interval);
        if let Some(i) = self.find(name) {
            let entry = self.tasks[i].as_mut().expect("found");
            entry.interval = interval;
            entry.next_due = next_due;
            return Ok(Some(core::mem::replace(&mut entry.task, task)));
        }
        let Some(free) = self.tasks.iter_mut().find(|e| e.is_none()) else {
            return Err(ScheduleError::Full(task));
        };
        *free = Some(Entry {
            name,
            interval,
            next_due,
            task,
            metrics: TaskMetrics::new(),
        });
        Ok(None)
    }

    /// Removes the task `name` and returns it.
    ///
    /// # Errors
    ///
    /// [`ScheduleError::UnknownTask`]; nothing changes then.
    pub fn unregister(&mut self, name: &str) -> Result<T, ScheduleError<T>> {
        let i = self.find(name).ok_or(ScheduleError::UnknownTask)?;
        Ok(self.tasks[i].take().expect("found").task)
    }

    /// Number of registered tasks.
    pub fn len(&self) -> usize {
        self.tasks.iter().flatten().count()
    }

    /// Whether no task is registered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The metrics of task `name`.
    pub fn metrics(&self, name: &str) -> Option<&TaskMetrics<E>> {
        self.find(name)
            .and_then(|i| self.tasks[i].as_ref())
            .map(|e| &e.metrics)
    }

    /// Names, intervals and metrics of all tasks.
    pub fn tasks(&self) -> impl Iterator<Item = (&'static str, u64, &TaskMetrics<E>)> {
        self.tasks
            .iter()
            .flatten()
            .map(|e| (e.name, e.interval, &e.metrics))
    }

    /// The earliest tick at which some task is due, if any task is registered.
    pub fn next_due(&self) -> Option<u64> {
        self.tasks.iter().flatten().map(|e| e.next_due).min()
    }

    fn run_entry(clock: &C, entry: &mut Entry<T, E>, now: u64) -> Result<usize, ()> {
        let start = clock.now().max(now);
        let result = (entry.task)(start);
        let end = clock.now().max(start);
        let ok = result.as_ref().map(|n| *n).map_err(|_| ());
        let overran = entry.metrics.record(start, end, entry.interval, result);
        entry.next_due = if overran {
            end.saturating_add(entry.interval)
        } else {
            start.saturating_add(entry.interval)
        };
        ok
    }

    /// Runs every task due at tick `now` once, in registration-slot order.
    pub fn run_due(&mut self, now: u64) -> RunSummary {
        let mut summary = RunSummary::default();
        for entry in self.tasks.iter_mut().flatten() {
            if entry.next_due > now {
                continue;
            }
            summary.ran += 1;
            match Self::run_entry(&self.clock, entry, now) {
                Ok(n) => summary.cleaned += n,
                Err(()) => summary.errors += 1,
            }
        }
        summary
    }

    /// Runs task `name` now, due or not, and schedules its next run one interval
    /// later. Returns what it cleaned, or its error.
    ///
    /// # Errors
    ///
    /// [`ScheduleError::UnknownTask`] as the outer error.
    pub fn run_now(&mut self, name: &str) -> Result<Result<usize, &E>, ScheduleError<T>> {
        let i = self.find(name).ok_or(ScheduleError::UnknownTask)?;
        let entry = self.tasks[i].as_mut().expect("found");
        let now = self.clock.now();
        Ok(match Self::run_entry(&self.clock, entry, now) {
            Ok(n) => Ok(n),
            Err(()) => Err(entry.metrics.last_error.as_ref().expect("just failed")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    type Task<'a> = &'a mut dyn FnMut(u64) -> Result<usize, u32>;

    #[test]
    fn registration_rules() {
        let clock = ManualClock::default();
        let mut a = |_| Ok(1);
        let mut b = |_| Ok(2);
        let mut c = |_| Ok(3);
        let mut zero = |_| Ok(0);
        let mut s: Schedule<_, Task<'_>, u32, 2> = Schedule::new(&clock);
        assert!(matches!(
            s.register("a", 0, &mut zero),
            Err(ScheduleError::ZeroInterval(_))
        ));
        assert!(s.register("a", 10, &mut a).unwrap().is_none());
        // Replacing keeps the count.
        assert!(s.register("a", 5, &mut b).unwrap().is_some());
        assert_eq!(s.len(), 1);
        assert!(s.register("c", 5, &mut c).unwrap().is_none());
        let mut d = |_| Ok(4);
        assert!(matches!(
            s.register("d", 5, &mut d),
            Err(ScheduleError::Full(_))
        ));
        assert!(matches!(s.unregister("x"), Err(ScheduleError::UnknownTask)));
        assert_eq!(s.len(), 2);
        assert!(s.unregister("a").is_ok());
        assert!(matches!(s.unregister("a"), Err(ScheduleError::UnknownTask)));
        assert_eq!(s.len(), 1);
        clock.advance(5);
        // "a" was replaced by b (returns 2) before being removed; "c" returns 3.
        assert_eq!(s.run_due(clock.now()).cleaned, 3);
    }

    #[test]
    fn due_runs_metrics_and_overruns() {
        let clock = ManualClock::default();
        let mut slow_calls = 0;
        let mut slow = |_| {
            slow_calls += 1;
            clock.advance(30); // takes 30 ticks
            if slow_calls == 2 {
                Err(7)
            } else {
                Ok(1)
            }
        };
        let mut fast = |_| Ok(2);
        let mut s: Schedule<_, Task<'_>, u32, 4> = Schedule::new(&clock);
        s.register("slow", 20, &mut slow).unwrap();
        s.register("fast", 10, &mut fast).unwrap();
        assert_eq!(s.next_due(), Some(10));
        clock.advance(9);
        assert_eq!(s.run_due(clock.now()), RunSummary::default());
        clock.advance(1);
        let r = s.run_due(clock.now());
        assert_eq!((r.ran, r.cleaned), (1, 2));
        // At 20 both are due; slow takes 30 ticks, overruns its 20 and is next due at
        // 50 + 20, not at 40.
        clock.advance(10);
        let r = s.run_due(clock.now());
        assert_eq!((r.ran, r.cleaned, r.errors), (2, 3, 0));
        let m = s.metrics("slow").unwrap();
        assert_eq!(
            (m.runs, m.overruns, m.last_duration, m.last_run),
            (1, 1, 30, Some(20))
        );
        assert_eq!(s.next_due(), Some(60)); // fast ran at 50
        clock.set(69);
        assert_eq!(s.run_due(clock.now()).ran, 1); // fast only
        clock.advance(1);
        let r = s.run_due(clock.now());
        assert_eq!((r.ran, r.errors), (1, 1));
        let m = s.metrics("slow").unwrap().clone();
        assert_eq!(
            (m.runs, m.errors, m.last_error, m.cleaned, m.overruns),
            (2, 1, Some(7), 1, 2)
        );
        assert_eq!(m.avg_duration, 30);
        assert!(matches!(s.run_now("nope"), Err(ScheduleError::UnknownTask)));
        assert_eq!(s.run_now("fast").unwrap(), Ok(2));
        assert_eq!(s.metrics("fast").unwrap().runs, 4);
        assert_eq!(s.tasks().count(), 2);
    }

    #[test]
    fn moving_average() {
        let mut m = TaskMetrics::<()>::new();
        m.record(0, 80, 1000, Ok(0));
        assert_eq!(m.avg_duration, 80);
        m.record(100, 100, 1000, Ok(0));
        assert_eq!(m.avg_duration, 70);
        m.record(200, 270, 1000, Ok(0));
        assert_eq!(m.avg_duration, 70);
    }
}
