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
use super::modes::{Psi, ThresholdMode};
use super::{PressureConfig, PressureConfigError, PressureLevel};
use crate::clock::Clock;

/// One reading for [`PressureGauge::observe_reading`]: the utilization, and what the
/// stall and headroom [modes](ThresholdMode) judge beside it.
///
/// # Examples
///
/// ```
/// use membound::pressure::{Psi, Reading};
///
/// let reading = Reading::new(0.62)
///     .with_limit(Some(8 << 30))
///     .with_psi(Some(Psi { some_avg10: 12.5, full_avg10: Some(1.0) }));
/// assert_eq!(reading.limit, Some(8 << 30));
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct Reading {
    /// Usage as a fraction of the effective limit; above 1 when usage exceeds it.
    pub utilization: f64,
    /// The effective limit in bytes, which [`ThresholdMode::Headroom`] needs.
    pub limit: Option<u64>,
    /// Stall information, which [`ThresholdMode::Stall`] needs.
    pub psi: Option<Psi>,
}

impl Reading {
    /// A reading of utilization alone.
    pub const fn new(utilization: f64) -> Self {
        Self {
            utilization,
            limit: None,
            psi: None,
        }
    }

    /// The same reading with a limit.
    #[must_use]
    pub const fn with_limit(mut self, limit: Option<u64>) -> Self {
        self.limit = limit;
        self
    }

    /// The same reading with stall information.
    #[must_use]
    pub const fn with_psi(mut self, psi: Option<Psi>) -> Self {
        self.psi = psi;
        self
    }
}

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
    /// Samples the threshold mode could not judge for want of its signal (a stall
    /// mode reading without PSI, a headroom mode reading without a limit), judged on
    /// the fixed utilization bands instead.
    pub fallbacks: u64,
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
    /// The fixed bands of Low, High, Critical (index = level index - 1); validated
    /// ascending. The utilization mode's thresholds, and the other modes' fallback.
    bands: [Band; 3],
    scale: ScaleRange,
    mode: ThresholdMode,
    /// Whether the latest reading fell back to the fixed bands.
    fell_back: bool,
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
            mode: config.mode,
            fell_back: false,
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
    /// one counts as 0. In the stall and headroom modes, a bare utilization is judged
    /// on the fixed bands (see [`observe_reading`](Self::observe_reading)).
    pub fn observe(&mut self, utilization: f64, now: u64) -> Option<Transition> {
        self.observe_reading(Reading::new(utilization), now)
    }

    /// Feeds one reading taken at tick `now`, judged by the config's
    /// [`ThresholdMode`]. Returns the transition it caused, if any.
    ///
    /// A reading the mode cannot judge for want of its signal (no PSI in the stall
    /// mode, no limit in the headroom mode) is judged on the fixed utilization bands,
    /// and counted in [`GaugeStats::fallbacks`]; [`fell_back`](Self::fell_back) says
    /// whether the latest one did.
    ///
    /// # Examples
    ///
    /// ```
    /// use core::time::Duration;
    /// use membound::clock::{Clock, ManualClock};
    /// use membound::pressure::{
    ///     PressureConfig, PressureGauge, PressureLevel, Psi, Reading, StallThresholds,
    ///     ThresholdMode,
    /// };
    ///
    /// let clock = ManualClock::default();
    /// let config = PressureConfig::production()
    ///     .with_mode(ThresholdMode::Stall(StallThresholds::new()))
    ///     .with_sustain(Duration::ZERO);
    /// let mut gauge = PressureGauge::new(&config, &clock)?;
    /// // 88 % used, but nothing stalls: Normal (the fixed bands would say High).
    /// let calm = Psi { some_avg10: 0.5, full_avg10: Some(0.0) };
    /// assert_eq!(gauge.observe_reading(Reading::new(0.88).with_psi(Some(calm)), clock.now()), None);
    /// // 30 % of the time all tasks stalled: Critical, whatever the utilization.
    /// let thrashing = Psi { some_avg10: 60.0, full_avg10: Some(30.0) };
    /// let t = gauge.observe_reading(Reading::new(0.40).with_psi(Some(thrashing)), clock.now());
    /// assert_eq!(t.map(|t| t.to), Some(PressureLevel::Critical));
    /// # Ok::<(), membound::pressure::PressureConfigError>(())
    /// ```
    pub fn observe_reading(&mut self, reading: Reading, now: u64) -> Option<Transition> {
        let utilization = reading.utilization;
        if utilization.is_nan() {
            self.stats.ignored += 1;
            return None;
        }
        let utilization = utilization.max(0.0);
        let now = now.max(self.last_at);
        self.last_at = now;
        self.stats.samples += 1;
        self.utilization = Some(utilization);
        // Per level: at or above its enter, at or above its exit.
        let (enter, hold) = self.judge(Reading {
            utilization,
            ..reading
        });
        self.stats.fallbacks += u64::from(self.fell_back);

        for (since, enter) in self.above_since.iter_mut().zip(enter) {
            if enter {
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
                .find(|&index| hold[index - 1])
                .map_or(PressureLevel::Normal, |index| PressureLevel::ALL[index]);
            if target < self.level {
                return Some(self.move_to(target, utilization, now));
            }
        }
        None
    }

    /// Judges a reading by the mode: per level, whether it is at or above the enter
    /// and the exit thresholds. Sets the scale factor and `fell_back`.
    fn judge(&mut self, reading: Reading) -> ([bool; 3], [bool; 3]) {
        let u = reading.utilization;
        let by_bands = |bands: [Band; 3]| (bands.map(|b| u >= b.enter), bands.map(|b| u >= b.exit));
        self.fell_back = false;
        match (self.mode, reading.psi, reading.limit) {
            (ThresholdMode::Stall(stall), Some(psi), _) => {
                self.scale_factor = self.scale.factor(u);
                let judged = stall.bands().map(|band| band.judge(u, psi));
                (judged.map(|j| j.0), judged.map(|j| j.1))
            }
            (ThresholdMode::Headroom(headroom), _, Some(limit)) => {
                let applied = headroom.applied(self.bands, limit).map(|a| a.band);
                let range = ScaleRange::new(applied[0].enter, applied[2].enter);
                self.scale_factor = range.factor(u);
                by_bands(applied)
            }
            (mode, _, _) => {
                self.fell_back = mode != ThresholdMode::Utilization;
                self.scale_factor = self.scale.factor(u);
                by_bands(self.bands)
            }
        }
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

    /// Whether the latest reading was judged on the fixed bands because the threshold
    /// mode's signal was missing (see [`observe_reading`](Self::observe_reading)).
    #[inline]
    pub fn fell_back(&self) -> bool {
        self.fell_back
    }

    /// The threshold mode the gauge judges by.
    #[inline]
    pub fn mode(&self) -> ThresholdMode {
        self.mode
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

    #[test]
    fn a_mode_without_its_signal_falls_back_and_counts_it() {
        use crate::pressure::{HeadroomThresholds, Psi, StallThresholds, ThresholdMode};
        let clock = ManualClock::default();
        let stall = fast().with_mode(ThresholdMode::Stall(StallThresholds::new()));
        let mut g = gauge(stall, &clock);
        // No PSI: 0.86 is High by the fixed bands.
        assert_eq!(g.observe(0.86, 0).map(|t| t.to), Some(High));
        assert!(g.fell_back());
        let calm = Psi {
            some_avg10: 0.0,
            full_avg10: None,
        };
        // With PSI, 0.80 and no stall is Normal (the stall mode's utilization
        // condition is left below 85 %); `full` not reported is no condition.
        let reading = Reading::new(0.80).with_psi(Some(calm));
        assert_eq!(g.observe_reading(reading, 1).map(|t| t.to), Some(Normal));
        assert!(!g.fell_back());
        assert_eq!((g.stats(1).samples, g.stats(1).fallbacks), (2, 1));

        let headroom = fast().with_mode(ThresholdMode::Headroom(HeadroomThresholds::new()));
        let mut g = gauge(headroom, &clock);
        // No limit: fixed bands.
        assert_eq!(g.observe(0.75, 0).map(|t| t.to), Some(Low));
        assert!(g.fell_back());
        // 64 GiB, 2 GiB free (96.9 %): above every fixed band, but Normal by headroom;
        // the scale runs between the applied Low and Critical enters.
        let reading = Reading::new(1.0 - 2.0 / 64.0).with_limit(Some(64 << 30));
        assert_eq!(g.observe_reading(reading, 1).map(|t| t.to), Some(Normal));
        assert_eq!(g.scale(), 0.0);
        let reading = Reading::new(1.0 - 0.1 / 64.0).with_limit(Some(64 << 30));
        assert_eq!(g.observe_reading(reading, 2).map(|t| t.to), Some(Critical));
        assert_eq!(g.scale(), 1.0);
        assert_eq!(g.stats(2).fallbacks, 1);
        // The utilization mode never falls back.
        let mut g = gauge(fast(), &clock);
        g.observe(0.5, 0);
        assert!(!g.fell_back() && g.stats(0).fallbacks == 0);
    }
}
