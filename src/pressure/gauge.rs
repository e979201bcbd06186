//! The gauge: utilization samples in, level transitions out, with hysteresis.
//!
//! Three rules make a level trustworthy where the original's flapped:
//!
//! 1. **Separate enter and exit thresholds.** A level is entered at or above its
//!    band's `enter` and left only below its `exit`, so a signal wandering between
//!    the two changes nothing.
//! 2. **Sustain before entering** a non-critical level: utilization must stay at or
//!    above that level's `enter` for the configured time, so one spike does not start
//!    shedding. Critical is entered at once: waiting there risks the OOM killer.
//! 3. **Dwell before falling**: after any transition, the gauge stays at least the
//!    dwell time before it moves down, so shrink/restore cycles have a minimum period.

use super::config::{Band, ScaleRange};
use super::{PressureConfig, PressureConfigError, PressureLevel};
use crate::clock::Clock;

/// A change of pressure level, as reported by [`PressureGauge::observe`].
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Transition {
    /// The level before.
    pub from: PressureLevel,
    /// The level after. Never equal to `from`.
    pub to: PressureLevel,
    /// The utilization of the sample that caused the change (fraction, may exceed 1).
    pub utilization: f64,
    /// The clock tick of that sample.
    pub at: u64,
}

impl Transition {
    /// Whether pressure rose.
    pub fn is_rise(&self) -> bool {
        self.to > self.from
    }
}

/// What a gauge has seen: samples, transitions into each level, ticks spent in each.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GaugeStats {
    /// Samples observed (NaN samples are not counted here but in `ignored`).
    pub samples: u64,
    /// NaN samples, ignored.
    pub ignored: u64,
    /// Transitions into each level, indexed by [`PressureLevel::index`].
    pub transitions_into: [u64; 4],
    /// Clock ticks spent in each level, indexed by [`PressureLevel::index`], from the
    /// gauge's creation up to the tick the stats were taken at.
    pub ticks_in: [u64; 4],
}

/// Turns utilization samples into a pressure level with hysteresis, a sustain gate
/// and a minimum dwell, and a continuous scale factor next to it.
///
/// The gauge is plain data (no atomics, no allocation): the caller owns it and feeds
/// it from one thread; a manager publishes its level wherever it likes.
///
/// # Examples
///
/// A signal oscillating around the High threshold yields one transition, not one per
/// crossing:
///
/// ```
/// use core::time::Duration;
/// use membound::clock::{Clock, ManualClock};
/// use membound::pressure::{PressureConfig, PressureGauge, PressureLevel};
///
/// let clock = ManualClock::default();
/// let config = PressureConfig::production().with_sustain(Duration::ZERO);
/// let mut gauge = PressureGauge::new(&config, &clock)?;
/// let mut transitions = 0;
/// for i in 0..100 {
///     let utilization = if i % 2 == 0 { 0.86 } else { 0.84 }; // High enters at 85 %
///     transitions += gauge.observe(utilization, clock.now()).is_some() as u32;
///     clock.advance_by(Duration::from_secs(5));
/// }
/// assert_eq!(transitions, 1);
/// assert_eq!(gauge.level(), PressureLevel::High);
/// # Ok::<(), membound::pressure::PressureConfigError>(())
/// ```
#[derive(Debug, Clone)]
pub struct PressureGauge {
    /// Bands of Low, High, Critical (index = level index - 1); validated ascending.
    bands: [Band; 3],
    scale: ScaleRange,
    /// The sustain time in ticks of the clock the gauge was built with.
    sustain_ticks: u64,
    /// The dwell time in ticks.
    dwell_ticks: u64,
    level: PressureLevel,
    /// Tick at which `level` was entered (the gauge's creation for the first Normal).
    entered_at: u64,
    /// For Low, High, Critical: the tick since which every sample has been at or above
    /// the level's `enter`; `None` once a sample fell below it.
    above_since: [Option<u64>; 3],
    /// The latest tick seen; ticks before it are treated as it (a clock never goes
    /// back, but the caller might mix up samples).
    last_at: u64,
    utilization: Option<f64>,
    scale_factor: f64,
    last_transition: Option<Transition>,
    stats: GaugeStats,
}

impl PressureGauge {
    /// A gauge at [`PressureLevel::Normal`], converting the config's durations to ticks
    /// of `clock` and starting its time accounting at `clock.now()`.
    ///
    /// # Errors
    ///
    /// Whatever [`PressureConfig::validate`] finds wrong.
    pub fn new<C: Clock + ?Sized>(
        config: &PressureConfig,
        clock: &C,
    ) -> Result<Self, PressureConfigError> {
        config.validate()?;
        let now = clock.now();
        Ok(Self {
            bands: [config.low, config.high, config.critical],
            scale: config.scale,
            sustain_ticks: clock.ticks_for(config.sustain),
            dwell_ticks: clock.ticks_for(config.dwell),
            level: PressureLevel::Normal,
            entered_at: now,
            above_since: [None; 3],
            last_at: now,
            utilization: None,
            scale_factor: 0.0,
            last_transition: None,
            stats: GaugeStats::default(),
        })
    }

    /// Feeds one sample: `utilization` (a fraction of the effective limit; above 1 when
    /// usage exceeds it) taken at tick `now`. Returns the transition it caused, if any.
    ///
    /// A NaN utilization is ignored (counted in [`GaugeStats::ignored`]); a negative
    /// one counts as 0.
    pub fn observe(&mut self, utilization: f64, now: u64) -> Option<Transition> {
        if utilization.is_nan() {
            self.stats.ignored += 1;
            return None;
        }
        let utilization = utilization.max(0.0);
        let now = now.max(self.last_at);
        self.last_at = now;
        self.stats.samples += 1;
        self.utilization = Some(utilization);
        self.scale_factor = self.scale.factor(utilization);

        for (since, band) in self.above_since.iter_mut().zip(&self.bands) {
            if utilization >= band.enter {
                since.get_or_insert(now);
            } else {
                *since = None;
            }
        }

        // Rise: the highest level above the current one whose gate is open.
        for index in (self.level.index() + 1..=3).rev() {
            let Some(since) = self.above_since[index - 1] else {
                continue;
            };
            let level = PressureLevel::ALL[index];
            if level == PressureLevel::Critical || now - since >= self.sustain_ticks {
                return Some(self.move_to(level, utilization, now));
            }
        }

        // Fall: to the highest level at or below the current one whose exit is not
        // crossed, once the dwell has passed.
        if self.level > PressureLevel::Normal && now - self.entered_at >= self.dwell_ticks {
            let target = (1..=self.level.index())
                .rev()
                .find(|&index| utilization >= self.bands[index - 1].exit)
                .map_or(PressureLevel::Normal, |index| PressureLevel::ALL[index]);
            if target < self.level {
                return Some(self.move_to(target, utilization, now));
            }
        }
        None
    }

    /// Feeds one sample taken now on `clock`; see [`observe`](Self::observe).
    pub fn observe_now<C: Clock + ?Sized>(
        &mut self,
        utilization: f64,
        clock: &C,
    ) -> Option<Transition> {
        self.observe(utilization, clock.now())
    }

    fn move_to(&mut self, to: PressureLevel, utilization: f64, now: u64) -> Transition {
        let transition = Transition {
            from: self.level,
            to,
            utilization,
            at: now,
        };
        self.stats.ticks_in[self.level.index()] += now - self.entered_at;
        self.stats.transitions_into[to.index()] += 1;
        self.level = to;
        self.entered_at = now;
        self.last_transition = Some(transition);
        transition
    }

    /// The current level.
    #[inline]
    pub fn level(&self) -> PressureLevel {
        self.level
    }

    /// The scale factor of the latest sample, in `[0, 1]`; 0 before any sample.
    #[inline]
    pub fn scale(&self) -> f64 {
        self.scale_factor
    }

    /// The utilization of the latest sample, if any.
    #[inline]
    pub fn utilization(&self) -> Option<f64> {
        self.utilization
    }

    /// The latest transition, if any.
    #[inline]
    pub fn last_transition(&self) -> Option<Transition> {
        self.last_transition
    }

    /// The tick at which the current level was entered.
    #[inline]
    pub fn entered_at(&self) -> u64 {
        self.entered_at
    }

    /// Counters, with the time in the current level counted up to `now`.
    pub fn stats(&self, now: u64) -> GaugeStats {
        let mut stats = self.stats;
        stats.ticks_in[self.level.index()] += now.max(self.last_at) - self.entered_at;
        stats
    }
}

#[cfg(test)]
mod tests {
    use core::time::Duration;

    use super::*;
    use crate::clock::ManualClock;
    use crate::pressure::Band;
    use PressureLevel::*;

    const SECOND: u64 = 1_000; // ManualClock::default() ticks are 1 ms

    fn gauge(config: PressureConfig, clock: &ManualClock) -> PressureGauge {
        PressureGauge::new(&config, clock).unwrap()
    }

    fn fast() -> PressureConfig {
        PressureConfig::production()
            .with_sustain(Duration::ZERO)
            .with_dwell(Duration::ZERO)
    }

    #[test]
    fn invalid_config_is_refused() {
        let clock = ManualClock::default();
        let bad = PressureConfig::production().with_low(Band::percent(90, 60));
        assert!(matches!(
            PressureGauge::new(&bad, &clock),
            Err(PressureConfigError::NotAscending { level: High })
        ));
    }

    #[test]
    fn oscillation_inside_the_hysteresis_band_is_one_transition() {
        let clock = ManualClock::default();
        let mut g = gauge(fast(), &clock);
        let mut seen = [0u32; 4];
        for i in 0..200 {
            // Crosses High's enter (85 %) every sample but never its exit (80 %).
            let u = if i % 2 == 0 { 0.851 } else { 0.81 };
            if let Some(t) = g.observe(u, clock.now()) {
                seen[t.to.index()] += 1;
            }
            clock.advance(5 * SECOND);
        }
        assert_eq!(seen, [0, 0, 1, 0]);
        assert_eq!(g.level(), High);
    }

    #[test]
    fn without_hysteresis_the_same_signal_would_flap() {
        // The control for the test above: with exit == enter the gauge follows every
        // crossing, so the test above is measuring the hysteresis.
        let clock = ManualClock::default();
        let config = fast().with_high(Band::percent(85, 85));
        let mut g = gauge(config, &clock);
        let mut transitions = 0;
        for i in 0..200 {
            let u = if i % 2 == 0 { 0.851 } else { 0.81 };
            transitions += g.observe(u, clock.now()).is_some() as u32;
            clock.advance(5 * SECOND);
        }
        assert_eq!(transitions, 200);
    }

    #[test]
    fn sustain_gate_delays_non_critical_levels() {
        let clock = ManualClock::default();
        let config = PressureConfig::production().with_sustain(Duration::from_secs(10));
        let mut g = gauge(config, &clock);
        // A spike shorter than the sustain time changes nothing.
        assert_eq!(g.observe(0.90, clock.now()), None);
        clock.advance(5 * SECOND);
        assert_eq!(g.observe(0.90, clock.now()), None);
        clock.advance(5 * SECOND);
        assert_eq!(g.observe(0.50, clock.now()), None); // dropped below: gate resets
        clock.advance(5 * SECOND);
        assert_eq!(g.observe(0.90, clock.now()), None);
        clock.advance(9 * SECOND);
        assert_eq!(g.observe(0.90, clock.now()), None);
        clock.advance(SECOND);
        let t = g.observe(0.90, clock.now()).unwrap();
        assert_eq!((t.from, t.to, t.at), (Normal, High, 25 * SECOND));
        assert_eq!(t.utilization, 0.90);
        assert!(t.is_rise());
    }

    #[test]
    fn a_lower_gate_can_open_first() {
        let clock = ManualClock::default();
        let config = PressureConfig::production().with_sustain(Duration::from_secs(10));
        let mut g = gauge(config, &clock);
        assert_eq!(g.observe(0.75, clock.now()), None); // Low gate starts
        clock.advance(5 * SECOND);
        assert_eq!(g.observe(0.90, clock.now()), None); // High gate starts
        clock.advance(5 * SECOND);
        assert_eq!(g.observe(0.90, clock.now()).map(|t| t.to), Some(Low));
        clock.advance(5 * SECOND);
        assert_eq!(g.observe(0.90, clock.now()).map(|t| t.to), Some(High));
    }

    #[test]
    fn critical_enters_at_once() {
        let clock = ManualClock::default();
        let config = PressureConfig::production().with_sustain(Duration::from_secs(60));
        let mut g = gauge(config, &clock);
        let t = g.observe(0.99, clock.now()).unwrap();
        assert_eq!((t.from, t.to), (Normal, Critical));
        assert_eq!(g.scale(), 1.0);
    }

    #[test]
    fn dwell_holds_a_level_before_it_falls() {
        let clock = ManualClock::default();
        let config = PressureConfig::production()
            .with_sustain(Duration::ZERO)
            .with_dwell(Duration::from_secs(30));
        let mut g = gauge(config, &clock);
        assert_eq!(g.observe(0.96, clock.now()).unwrap().to, Critical);
        clock.advance(29 * SECOND);
        assert_eq!(g.observe(0.10, clock.now()), None);
        assert_eq!(g.level(), Critical);
        clock.advance(SECOND);
        let t = g.observe(0.10, clock.now()).unwrap();
        assert_eq!((t.from, t.to), (Critical, Normal));
        assert!(!t.is_rise());
    }

    #[test]
    fn falls_to_the_highest_level_whose_exit_holds() {
        let clock = ManualClock::default();
        let mut g = gauge(fast(), &clock);
        assert_eq!(g.observe(0.97, clock.now()).unwrap().to, Critical);
        // 0.82 is below Critical's exit (90 %) but above High's (80 %).
        assert_eq!(g.observe(0.82, clock.now()).unwrap().to, High);
        // 0.66 is above Low's exit (65 %), though below its enter (70 %).
        assert_eq!(g.observe(0.66, clock.now()).unwrap().to, Low);
        assert_eq!(g.observe(0.66, clock.now()), None);
        assert_eq!(g.observe(0.64, clock.now()).unwrap().to, Normal);
        assert_eq!(g.observe(0.69, clock.now()), None);
    }

    #[test]
    fn nan_is_ignored_and_negative_counts_as_zero() {
        let clock = ManualClock::default();
        let mut g = gauge(fast(), &clock);
        assert_eq!(g.observe(f64::NAN, 0), None);
        assert_eq!(g.utilization(), None);
        assert_eq!(g.observe(-3.0, 0), None);
        assert_eq!(g.utilization(), Some(0.0));
        let s = g.stats(0);
        assert_eq!((s.samples, s.ignored), (1, 1));
        // Above 100 % (usage over memory.high) is kept: it is critical.
        assert_eq!(g.observe(1.3, 0).unwrap().to, Critical);
    }

    #[test]
    fn stats_count_transitions_and_time_in_each_level() {
        let clock = ManualClock::default();
        clock.advance(7); // the gauge's accounting starts at its creation
        let mut g = gauge(fast(), &clock);
        clock.advance(10);
        g.observe(0.75, clock.now()); // Normal for 10, now Low
        clock.advance(20);
        g.observe(0.96, clock.now()); // Low for 20, now Critical
        clock.advance(5);
        g.observe(0.10, clock.now()); // Critical for 5, now Normal
        clock.advance(3);
        let s = g.stats(clock.now());
        assert_eq!(s.transitions_into, [1, 1, 0, 1]);
        assert_eq!(s.ticks_in, [13, 20, 0, 5]);
        assert_eq!(s.samples, 3);
        assert_eq!(g.last_transition().map(|t| t.to), Some(Normal));
        assert_eq!(g.entered_at(), 42);
    }

    #[test]
    fn time_going_backwards_is_clamped() {
        let clock = ManualClock::default();
        let mut g = gauge(fast(), &clock);
        assert!(g.observe(0.75, 100).is_some());
        let t = g.observe(0.97, 50).unwrap();
        assert_eq!(t.at, 100);
        assert_eq!(g.stats(10).ticks_in[Critical.index()], 0);
    }
}
