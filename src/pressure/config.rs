//! Thresholds, timing and scale range of a pressure gauge, validated as a whole.

use core::fmt;
use core::time::Duration;

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
    /// The range of the continuous scale factor.
    pub scale: ScaleRange,
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
    ///   with `saturation <= start`.
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
        Ok(())
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
