//! Thresholds, timing and scale range of a pressure gauge, validated as a whole.

use core::fmt;
use core::time::Duration;

use super::modes::{AppliedBand, BandFault, ThresholdMode};
use super::PressureLevel;

/// The utilization at which a level is entered and the lower one at which it is left.
///
/// Utilizations are fractions: `0.85` is 85 % of the effective limit. The gap between
/// `exit` and `enter` is the hysteresis: a signal wandering inside it changes nothing.
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(deny_unknown_fields))]
pub struct Band {
    /// The level is entered at or above this utilization.
    pub enter: f64,
    /// The level is left below this utilization. At most `enter`.
    pub exit: f64,
}

impl Band {
    /// A band entered at `enter` and left below `exit` (fractions of 1).
    pub const fn new(enter: f64, exit: f64) -> Self {
        Self { enter, exit }
    }

    /// A band from whole percentages: `Band::percent(85, 80)` enters at 85 % and is left
    /// below 80 %.
    pub const fn percent(enter: u8, exit: u8) -> Self {
        Self {
            enter: enter as f64 / 100.0,
            exit: exit as f64 / 100.0,
        }
    }
}

/// The range over which the continuous scale factor rises from 0 to 1.
///
/// Like Envoy's scaled triggers: the factor is 0 at or below `start`, 1 at or above
/// `saturation`, linear between. Consumers use it to shorten timeouts or TTLs
/// gradually instead of in four steps.
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(deny_unknown_fields))]
pub struct ScaleRange {
    /// Utilization at which scaling begins (factor 0).
    pub start: f64,
    /// Utilization at which the factor reaches 1. Greater than `start`.
    pub saturation: f64,
}

impl ScaleRange {
    /// A range from `start` to `saturation` (fractions of 1).
    pub const fn new(start: f64, saturation: f64) -> Self {
        Self { start, saturation }
    }

    /// The factor for `utilization`, in `[0, 1]`. A NaN utilization gives 0.
    ///
    /// # Examples
    ///
    /// ```
    /// use membound::pressure::ScaleRange;
    ///
    /// let range = ScaleRange::new(0.70, 0.95);
    /// assert_eq!(range.factor(0.50), 0.0);
    /// assert!((range.factor(0.825) - 0.5).abs() < 1e-9);
    /// assert_eq!(range.factor(1.20), 1.0);
    /// ```
    pub fn factor(&self, utilization: f64) -> f64 {
        if utilization.is_nan() || utilization <= self.start {
            0.0
        } else if utilization >= self.saturation {
            1.0
        } else {
            (utilization - self.start) / (self.saturation - self.start)
        }
    }
}

/// The configuration of a [`PressureGauge`](super::PressureGauge): thresholds with
/// hysteresis, timing, and the scale range.
///
/// The default is the production preset: enter 70/85/95 %, exit 65/80/90 %, sampled
/// every 5 s, 10 s sustained before Low or High is entered, 30 s before a level may
/// fall, scale factor from 70 % to 95 %.
///
/// # Examples
///
/// ```
/// use core::time::Duration;
/// use membound::pressure::{Band, PressureConfig, PressureConfigError, PressureLevel};
///
/// let config = PressureConfig::production().with_critical(Band::percent(92, 88));
/// assert!(config.validate().is_ok());
///
/// // Thresholds out of order are an error, not "everything is critical".
/// let bad = PressureConfig::production().with_high(Band::percent(60, 55));
/// assert_eq!(
///     bad.validate(),
///     Err(PressureConfigError::NotAscending { level: PressureLevel::High })
/// );
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
#[non_exhaustive]
pub struct PressureConfig {
    /// Band of [`PressureLevel::Low`].
    pub low: Band,
    /// Band of [`PressureLevel::High`].
    pub high: Band,
    /// Band of [`PressureLevel::Critical`].
    pub critical: Band,
    /// How often a sampler should feed the gauge. Non-zero.
    pub interval: Duration,
    /// How long utilization must stay at or above a non-critical level's `enter` before
    /// that level is entered. Critical is entered at once. Zero enters on the first
    /// sample.
    pub sustain: Duration,
    /// The minimum time at a level before the gauge may move to a lower one.
    pub dwell: Duration,
    /// The range of the continuous scale factor. In
    /// [`ThresholdMode::Headroom`] the factor runs instead from the applied Low enter
    /// to the applied Critical enter ([`applied_bands`](Self::applied_bands)), which
    /// follow the limit.
    pub scale: ScaleRange,
    /// Which signal decides the level: utilization against the bands above (the
    /// default), stall information, or headroom in bytes. The bands above are also the
    /// fallback of the other modes, and the clamp of the headroom mode.
    pub mode: ThresholdMode,
}

impl PressureConfig {
    /// The production preset (also the default): enter 70/85/95 %, exit 65/80/90 %,
    /// every 5 s, sustain 10 s, dwell 30 s, scale from 70 % to 95 %.
    pub const fn production() -> Self {
        Self {
            low: Band::percent(70, 65),
            high: Band::percent(85, 80),
            critical: Band::percent(95, 90),
            interval: Duration::from_secs(5),
            sustain: Duration::from_secs(10),
            dwell: Duration::from_secs(30),
            scale: ScaleRange::new(0.70, 0.95),
            mode: ThresholdMode::Utilization,
        }
    }

    /// The development preset: enter 50/70/90 %, exit 45/65/85 %, every 1 s, sustain
    /// 2 s, dwell 5 s, scale from 50 % to 90 %.
    pub const fn development() -> Self {
        Self {
            low: Band::percent(50, 45),
            high: Band::percent(70, 65),
            critical: Band::percent(90, 85),
            interval: Duration::from_secs(1),
            sustain: Duration::from_secs(2),
            dwell: Duration::from_secs(5),
            scale: ScaleRange::new(0.50, 0.90),
            mode: ThresholdMode::Utilization,
        }
    }

    /// The same configuration with another band for `Low`.
    #[must_use]
    pub const fn with_low(mut self, band: Band) -> Self {
        self.low = band;
        self
    }

    /// The same configuration with another band for `High`.
    #[must_use]
    pub const fn with_high(mut self, band: Band) -> Self {
        self.high = band;
        self
    }

    /// The same configuration with another band for `Critical`.
    #[must_use]
    pub const fn with_critical(mut self, band: Band) -> Self {
        self.critical = band;
        self
    }

    /// The same configuration with another sampling interval.
    #[must_use]
    pub const fn with_interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    /// The same configuration with another sustain time.
    #[must_use]
    pub const fn with_sustain(mut self, sustain: Duration) -> Self {
        self.sustain = sustain;
        self
    }

    /// The same configuration with another dwell time.
    #[must_use]
    pub const fn with_dwell(mut self, dwell: Duration) -> Self {
        self.dwell = dwell;
        self
    }

    /// The same configuration with another scale range.
    #[must_use]
    pub const fn with_scale(mut self, scale: ScaleRange) -> Self {
        self.scale = scale;
        self
    }

    /// The same configuration with another threshold mode.
    #[must_use]
    pub const fn with_mode(mut self, mode: ThresholdMode) -> Self {
        self.mode = mode;
        self
    }

    /// The utilization bands that Low, High and Critical are judged by under a limit
    /// of `limit` bytes, and whether each threshold is a fraction or bytes of headroom.
    /// In [`ThresholdMode::Headroom`] a threshold is the byte headroom's utilization,
    /// clamped to at least the fixed band's; in the other modes (whose utilization
    /// condition does not depend on the limit) the fixed bands.
    ///
    /// # Examples
    ///
    /// ```
    /// use membound::pressure::{HeadroomThresholds, PressureConfig, ThresholdMode, ThresholdSource};
    ///
    /// let config =
    ///     PressureConfig::production().with_mode(ThresholdMode::Headroom(HeadroomThresholds::new()));
    /// // 256 GiB host: Low below 1 GiB free, i.e. above 99.6 % used.
    /// let [low, _, _] = config.applied_bands(256 << 30);
    /// assert_eq!(low.enter_from, ThresholdSource::Bytes);
    /// assert!((low.band.enter - (1.0 - 1.0 / 256.0)).abs() < 1e-12);
    /// // 512 MiB container: 1 GiB of headroom cannot be had; clamped to 70 %.
    /// let [low, _, critical] = config.applied_bands(512 << 20);
    /// assert_eq!((low.enter_from, low.band.enter), (ThresholdSource::Fraction, 0.70));
    /// // Critical below 256 MiB free is 50 % used there, clamped to 95 %.
    /// assert_eq!(critical.band.enter, 0.95);
    /// ```
    pub fn applied_bands(&self, limit: u64) -> [AppliedBand; 3] {
        let fixed = [self.low, self.high, self.critical];
        match self.mode {
            ThresholdMode::Headroom(headroom) => headroom.applied(fixed, limit),
            _ => {
                let at = |i: usize| AppliedBand::fixed(PressureLevel::ALL[i + 1], fixed[i]);
                [at(0), at(1), at(2)]
            }
        }
    }

    /// The band of a non-normal level; `None` for `Normal`, which has none.
    pub const fn band(&self, level: PressureLevel) -> Option<Band> {
        match level {
            PressureLevel::Normal => None,
            PressureLevel::Low => Some(self.low),
            PressureLevel::High => Some(self.high),
            PressureLevel::Critical => Some(self.critical),
        }
    }

    /// Checks that a gauge can work with this configuration.
    ///
    /// # Errors
    ///
    /// - [`PressureConfigError::OutOfRange`]: a threshold outside `0.0..=1.0` or NaN;
    /// - [`PressureConfigError::ExitAboveEnter`]: a band left above where it is entered;
    /// - [`PressureConfigError::NotAscending`]: a level's `enter` or `exit` not above the
    ///   lower level's (`Low` must also enter above 0);
    /// - [`PressureConfigError::ZeroInterval`]: a sampling interval of zero;
    /// - [`PressureConfigError::BadScaleRange`]: a scale range out of `0.0..=1.0` or
    ///   with `saturation <= start`;
    /// - [`PressureConfigError::Stall`], [`PressureConfigError::Headroom`]: a band of
    ///   the threshold mode that cannot work (the fixed bands are checked in every
    ///   mode: they are its fallback or clamp).
    pub fn validate(&self) -> Result<(), PressureConfigError> {
        let levels = [
            (PressureLevel::Low, self.low),
            (PressureLevel::High, self.high),
            (PressureLevel::Critical, self.critical),
        ];
        for (level, band) in levels {
            for value in [band.enter, band.exit] {
                if !(0.0..=1.0).contains(&value) {
                    return Err(PressureConfigError::OutOfRange { level });
                }
            }
            if band.exit > band.enter {
                return Err(PressureConfigError::ExitAboveEnter { level });
            }
        }
        // Entering Low at 0 % would make every sample Low: the original's "zero
        // thresholds read every sample as critical" in a milder form.
        if self.low.enter <= 0.0 {
            return Err(PressureConfigError::NotAscending {
                level: PressureLevel::Low,
            });
        }
        for pair in levels.windows(2) {
            let ((_, lower), (level, upper)) = (pair[0], pair[1]);
            if upper.enter <= lower.enter || upper.exit <= lower.exit {
                return Err(PressureConfigError::NotAscending { level });
            }
        }
        if self.interval.is_zero() {
            return Err(PressureConfigError::ZeroInterval);
        }
        let scale = self.scale;
        if !(0.0..=1.0).contains(&scale.start)
            || !(0.0..=1.0).contains(&scale.saturation)
            || scale.saturation <= scale.start
        {
            return Err(PressureConfigError::BadScaleRange);
        }
        self.mode.validate().map_err(|(level, fault, stall)| {
            if stall {
                PressureConfigError::Stall { level, fault }
            } else {
                PressureConfigError::Headroom { level, fault }
            }
        })
    }
}

impl Default for PressureConfig {
    /// [`PressureConfig::production`].
    fn default() -> Self {
        Self::production()
    }
}

/// Why a [`PressureConfig`] cannot work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PressureConfigError {
    /// A threshold of this level is outside `0.0..=1.0` (or NaN).
    OutOfRange {
        /// The level whose band is wrong.
        level: PressureLevel,
    },
    /// This level's `exit` is above its `enter`: it would be left before it is reached.
    ExitAboveEnter {
        /// The level whose band is wrong.
        level: PressureLevel,
    },
    /// This level's `enter` or `exit` is not above the level below it.
    NotAscending {
        /// The level whose band is wrong.
        level: PressureLevel,
    },
    /// A sampling interval of zero.
    ZeroInterval,
    /// The scale range is outside `0.0..=1.0` or its saturation is not above its start.
    BadScaleRange,
    /// A band of [`ThresholdMode::Stall`] cannot work.
    Stall {
        /// The level whose band is wrong.
        level: PressureLevel,
        /// What is wrong with it.
        fault: BandFault,
    },
    /// A band of [`ThresholdMode::Headroom`] cannot work.
    Headroom {
        /// The level whose band is wrong.
        level: PressureLevel,
        /// What is wrong with it.
        fault: BandFault,
    },
}

impl fmt::Display for PressureConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::OutOfRange { level } => {
                write!(f, "{level} thresholds must be within 0..=100 %")
            }
            Self::ExitAboveEnter { level } => {
                write!(f, "{level} exit threshold is above its enter threshold")
            }
            Self::NotAscending { level } => write!(
                f,
                "{level} thresholds must be above those of the level below"
            ),
            Self::ZeroInterval => f.write_str("sampling interval must be greater than zero"),
            Self::BadScaleRange => {
                f.write_str("scale range must lie within 0..=100 % with saturation above start")
            }
            Self::Stall { level, fault } => write!(f, "{level} stall band: {fault}"),
            Self::Headroom { level, fault } => write!(f, "{level} headroom band: {fault}"),
        }
    }
}

impl core::error::Error for PressureConfigError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_are_valid() {
        assert_eq!(PressureConfig::production().validate(), Ok(()));
        assert_eq!(PressureConfig::development().validate(), Ok(()));
        assert_eq!(PressureConfig::default(), PressureConfig::production());
        let p = PressureConfig::production();
        assert_eq!(
            (p.low.enter, p.high.enter, p.critical.enter),
            (0.70, 0.85, 0.95)
        );
        assert_eq!(p.interval, Duration::from_secs(5));
        let d = PressureConfig::development();
        assert_eq!(
            (d.low.enter, d.high.enter, d.critical.enter),
            (0.50, 0.70, 0.90)
        );
        assert_eq!(d.interval, Duration::from_secs(1));
    }

    #[test]
    fn every_bad_config_is_a_typed_error() {
        use PressureConfigError::*;
        use PressureLevel::*;
        let p = PressureConfig::production();
        let cases = [
            (
                p.with_low(Band::new(f64::NAN, 0.5)),
                OutOfRange { level: Low },
            ),
            (p.with_high(Band::new(1.2, 0.8)), OutOfRange { level: High }),
            (
                p.with_critical(Band::new(0.95, -0.1)),
                OutOfRange { level: Critical },
            ),
            (
                p.with_high(Band::percent(85, 86)),
                ExitAboveEnter { level: High },
            ),
            // The original's zero-valued config: now an error, not all-critical.
            (
                p.with_low(Band::new(0.0, 0.0))
                    .with_high(Band::new(0.0, 0.0))
                    .with_critical(Band::new(0.0, 0.0)),
                NotAscending { level: Low },
            ),
            (
                p.with_high(Band::percent(70, 60)),
                NotAscending { level: High },
            ),
            (
                p.with_critical(Band::percent(96, 80)),
                NotAscending { level: Critical },
            ),
            (p.with_interval(Duration::ZERO), ZeroInterval),
            (p.with_scale(ScaleRange::new(0.9, 0.9)), BadScaleRange),
            (p.with_scale(ScaleRange::new(0.5, 1.5)), BadScaleRange),
            (p.with_scale(ScaleRange::new(f64::NAN, 0.9)), BadScaleRange),
        ];
        for (config, expected) in cases {
            assert_eq!(config.validate(), Err(expected), "{config:?}");
        }
        // Equal enter and exit (no hysteresis) and a 100 % critical are allowed.
        assert_eq!(p.with_critical(Band::percent(100, 100)).validate(), Ok(()));
        assert_eq!(p.with_low(Band::percent(70, 70)).validate(), Ok(()));
    }

    #[test]
    fn stall_and_headroom_bands_that_cannot_work_are_typed_errors() {
        use super::super::{HeadroomBand, HeadroomThresholds, StallBand, StallThresholds};
        use BandFault::*;
        use PressureLevel::*;
        let stall = StallThresholds::new();
        let stall_cases = [
            (
                StallThresholds {
                    low: StallBand::new(),
                    ..stall
                },
                Low,
                NoCondition,
            ),
            (
                StallThresholds {
                    high: stall.high.with_some(Band::percent(25, 30)),
                    ..stall
                },
                High,
                ExitBeforeEnter,
            ),
            (
                StallThresholds {
                    critical: stall.critical.with_full(Band::new(1.5, 0.1)),
                    ..stall
                },
                Critical,
                OutOfRange,
            ),
            (
                StallThresholds {
                    low: stall.low.with_some(Band::new(f64::NAN, 0.0)),
                    ..stall
                },
                Low,
                OutOfRange,
            ),
            // `some` at 10 % on Low but 8 % on High.
            (
                StallThresholds {
                    high: stall.high.with_some(Band::percent(8, 4)),
                    ..stall
                },
                High,
                NotAscending,
            ),
            // `full` on High (5 %) above Critical's when Critical's is lowered to 4 %:
            // the check spans levels that both set the signal.
            (
                StallThresholds {
                    critical: stall.critical.with_full(Band::percent(4, 1)),
                    ..stall
                },
                Critical,
                NotAscending,
            ),
            // Low and Critical both set utilization, High not: still compared.
            (
                StallThresholds {
                    low: stall.low.with_utilization(Band::percent(99, 97)),
                    high: StallBand::new().with_some(Band::percent(25, 15)),
                    ..stall
                },
                Critical,
                NotAscending,
            ),
        ];
        let p = PressureConfig::production();
        for (thresholds, level, fault) in stall_cases {
            let config = p.with_mode(ThresholdMode::Stall(thresholds));
            assert_eq!(
                config.validate(),
                Err(PressureConfigError::Stall { level, fault }),
                "{thresholds:?}"
            );
        }
        let headroom = HeadroomThresholds::new();
        let headroom_cases = [
            (
                HeadroomThresholds {
                    low: HeadroomBand::new(0, 10),
                    ..headroom
                },
                Low,
                OutOfRange,
            ),
            (
                HeadroomThresholds {
                    high: HeadroomBand::mib(512, 500),
                    ..headroom
                },
                High,
                ExitBeforeEnter,
            ),
            (
                HeadroomThresholds {
                    high: HeadroomBand::mib(2048, 2560),
                    ..headroom
                },
                High,
                NotAscending,
            ),
            (
                HeadroomThresholds {
                    critical: HeadroomBand::mib(256, 700),
                    ..headroom
                },
                Critical,
                NotAscending,
            ),
        ];
        for (thresholds, level, fault) in headroom_cases {
            let config = p.with_mode(ThresholdMode::Headroom(thresholds));
            assert_eq!(
                config.validate(),
                Err(PressureConfigError::Headroom { level, fault }),
                "{thresholds:?}"
            );
        }
        // The fixed bands are checked in every mode: they are the fallback and clamp.
        let bad_fixed = p
            .with_high(Band::percent(60, 50))
            .with_mode(ThresholdMode::Stall(stall));
        assert_eq!(
            bad_fixed.validate(),
            Err(PressureConfigError::NotAscending { level: High })
        );
    }

    #[test]
    fn applied_headroom_bands_stay_ordered_for_any_limit() {
        use super::super::{HeadroomThresholds, ThresholdSource};
        let config = PressureConfig::production()
            .with_mode(ThresholdMode::Headroom(HeadroomThresholds::new()));
        for shift in 0..44 {
            let limit = 1u64 << shift;
            let [low, high, critical] = config.applied_bands(limit);
            for band in [low.band, high.band, critical.band] {
                assert!(
                    band.exit <= band.enter && band.enter < 1.0,
                    "{limit}: {band:?}"
                );
            }
            assert!(low.band.enter < high.band.enter && high.band.enter < critical.band.enter);
            assert!(low.band.exit < high.band.exit && high.band.exit < critical.band.exit);
            // Never below the fixed bands.
            assert!(low.band.enter >= 0.70 && critical.band.enter >= 0.95);
            let from_bytes = low.enter_from == ThresholdSource::Bytes;
            assert_eq!(
                from_bytes,
                1.0 - (1u64 << 30) as f64 / limit as f64 >= 0.70,
                "{limit}"
            );
        }
        // The utilization mode's bands are the fixed ones, whatever the limit.
        let fixed = PressureConfig::production().applied_bands(1 << 40);
        assert_eq!(fixed.map(|a| a.band.enter), [0.70, 0.85, 0.95]);
    }

    #[cfg(feature = "alloc")]
    #[test]
    fn errors_display() {
        use alloc::string::ToString;
        let e = PressureConfigError::NotAscending {
            level: PressureLevel::High,
        };
        assert_eq!(
            e.to_string(),
            "high thresholds must be above those of the level below"
        );
    }

    #[test]
    fn scale_factor_is_clamped_and_linear() {
        let r = ScaleRange::new(0.5, 0.9);
        assert_eq!(r.factor(f64::NAN), 0.0);
        assert_eq!(r.factor(-1.0), 0.0);
        assert_eq!(r.factor(0.5), 0.0);
        assert!((r.factor(0.6) - 0.25).abs() < 1e-12);
        assert!((r.factor(0.8) - 0.75).abs() < 1e-12);
        assert_eq!(r.factor(0.9), 1.0);
        assert_eq!(r.factor(f64::INFINITY), 1.0);
        let mut last = 0.0;
        for i in 0..=100 {
            let f = r.factor(f64::from(i) / 100.0);
            assert!((0.0..=1.0).contains(&f) && f >= last);
            last = f;
        }
    }
}
