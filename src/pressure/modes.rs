//! How a reading becomes a level: fixed utilization bands (the default), the
//! kernel's stall information, or bytes of headroom under the limit.
//!
//! A fixed percentage is wrong for both a 512 MiB container (85 % leaves 77 MiB) and a
//! 256 GiB host (85 % leaves 38 GiB idle). The two other modes judge what matters
//! there:
//!
//! - [`ThresholdMode::Stall`]: the share of time tasks stalled waiting for memory
//!   (PSI `some`/`full` avg10), the signal systemd-oomd and Meta's oomd act on, with
//!   utilization as a second condition. A reading without PSI (no file, not
//!   permitted, or sampling it turned off) is judged on the fixed bands instead, and
//!   counted ([`GaugeStats::fallbacks`](super::GaugeStats::fallbacks)).
//! - [`ThresholdMode::Headroom`]: bytes free under the effective limit. On a small
//!   limit the byte thresholds are clamped to the fixed bands, so 1 GiB of headroom
//!   on a 512 MiB container does not mean "always Low";
//!   [`PressureConfig::applied_bands`](super::PressureConfig::applied_bands) says
//!   which of the two applies for a given limit.
//!
//! Hysteresis, the sustain gate and the dwell work the same in every mode.

use core::fmt;

use super::config::Band;
use super::PressureLevel;

/// Pressure stall information: the share of wall time in which some (or all)
/// non-idle tasks waited for memory, averaged over 10 s, in percent (`0.0..=100.0`),
/// as the kernel's `pressure/memory` file reports it.
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Psi {
    /// `some avg10`.
    pub some_avg10: f64,
    /// `full avg10`, where reported.
    pub full_avg10: Option<f64>,
}

/// Which signal the gauge's thresholds are about. The default is
/// [`Utilization`](Self::Utilization).
///
/// # Examples
///
/// ```
/// use membound::pressure::{HeadroomThresholds, PressureConfig, StallThresholds, ThresholdMode};
///
/// let stall = PressureConfig::production().with_mode(ThresholdMode::Stall(StallThresholds::default()));
/// assert_eq!(stall.validate(), Ok(()));
/// let headroom =
///     PressureConfig::production().with_mode(ThresholdMode::Headroom(HeadroomThresholds::default()));
/// assert_eq!(headroom.validate(), Ok(()));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
#[non_exhaustive]
pub enum ThresholdMode {
    /// Fractions of the effective limit: the config's `low`, `high` and `critical`
    /// bands.
    #[default]
    Utilization,
    /// Stall-driven: a level is entered when any of its band's conditions is met (PSI
    /// `some` or `full`, or utilization as a second condition), and left when none is
    /// at or above its exit any more. Readings without PSI fall back to the fixed
    /// utilization bands.
    Stall(StallThresholds),
    /// Headroom-based: a level is entered when the bytes free under the effective limit
    /// fall below its threshold, clamped to the fixed bands on small limits. Readings
    /// without a limit fall back to the fixed bands.
    Headroom(HeadroomThresholds),
}

/// The conditions of one level in [`ThresholdMode::Stall`]. Each is a [`Band`] of
/// fractions: of time stalled for `some` and `full` (`Band::percent(10, 5)` enters at
/// 10 % stalled, leaves below 5 %), of the limit for `utilization`. At least one must
/// be set.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
pub struct StallBand {
    /// PSI `some avg10`: some tasks stalled.
    pub some: Option<Band>,
    /// PSI `full avg10`: all non-idle tasks stalled at once (where the kernel reports
    /// it).
    pub full: Option<Band>,
    /// Utilization, the second condition.
    pub utilization: Option<Band>,
}

impl StallBand {
    /// No condition yet; add them with the `with_*` methods.
    pub const fn new() -> Self {
        Self {
            some: None,
            full: None,
            utilization: None,
        }
    }

    /// The same band with a `some avg10` condition.
    #[must_use]
    pub const fn with_some(mut self, band: Band) -> Self {
        self.some = Some(band);
        self
    }

    /// The same band with a `full avg10` condition.
    #[must_use]
    pub const fn with_full(mut self, band: Band) -> Self {
        self.full = Some(band);
        self
    }

    /// The same band with a utilization condition.
    #[must_use]
    pub const fn with_utilization(mut self, band: Band) -> Self {
        self.utilization = Some(band);
        self
    }

    /// `(enter hit, exit held)` for a reading with PSI: any condition at or above its
    /// `enter`, any at or above its `exit`.
    pub(crate) fn judge(&self, utilization: f64, psi: Psi) -> (bool, bool) {
        let signals = [
            (self.some, Some(psi.some_avg10 / 100.0)),
            (self.full, psi.full_avg10.map(|full| full / 100.0)),
            (self.utilization, Some(utilization)),
        ];
        let (mut enter, mut hold) = (false, false);
        for (band, value) in signals {
            if let (Some(band), Some(value)) = (band, value) {
                enter |= value >= band.enter;
                hold |= value >= band.exit;
            }
        }
        (enter, hold)
    }

    fn conditions(&self) -> [Option<Band>; 3] {
        [self.some, self.full, self.utilization]
    }
}

/// The per-level conditions of [`ThresholdMode::Stall`].
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
pub struct StallThresholds {
    /// Conditions of [`PressureLevel::Low`].
    pub low: StallBand,
    /// Conditions of [`PressureLevel::High`].
    pub high: StallBand,
    /// Conditions of [`PressureLevel::Critical`].
    pub critical: StallBand,
}

impl StallThresholds {
    /// The default, a starting point to tune: Low at 10 % `some` stalled (left below
    /// 5 %) or 90 % utilization (85 %); High at 25 % `some` (15 %), 5 % `full` (2 %) or
    /// 95 % utilization (92 %); Critical at 20 % `full` (10 %) or 98 % utilization
    /// (96 %).
    pub const fn new() -> Self {
        Self {
            low: StallBand::new()
                .with_some(Band::percent(10, 5))
                .with_utilization(Band::percent(90, 85)),
            high: StallBand::new()
                .with_some(Band::percent(25, 15))
                .with_full(Band::percent(5, 2))
                .with_utilization(Band::percent(95, 92)),
            critical: StallBand::new()
                .with_full(Band::percent(20, 10))
                .with_utilization(Band::percent(98, 96)),
        }
    }

    pub(crate) const fn bands(&self) -> [StallBand; 3] {
        [self.low, self.high, self.critical]
    }

    fn validate(&self) -> Result<(), PressureConfigFault> {
        let levels = self.bands();
        for (i, band) in levels.iter().enumerate() {
            let level = PressureLevel::ALL[i + 1];
            let conditions = band.conditions();
            if conditions.iter().all(Option::is_none) {
                return Err((level, BandFault::NoCondition));
            }
            for b in conditions.into_iter().flatten() {
                check_fraction_band(b).map_err(|fault| (level, fault))?;
            }
        }
        // A signal set on two levels must rise with them.
        for pair in [(0, 1), (1, 2), (0, 2)] {
            let (lower, upper) = (levels[pair.0].conditions(), levels[pair.1].conditions());
            for (lower, upper) in lower.into_iter().zip(upper) {
                if let (Some(lower), Some(upper)) = (lower, upper) {
                    if upper.enter <= lower.enter || upper.exit <= lower.exit {
                        return Err((PressureLevel::ALL[pair.1 + 1], BandFault::NotAscending));
                    }
                }
            }
        }
        Ok(())
    }
}

impl Default for StallThresholds {
    /// [`StallThresholds::new`].
    fn default() -> Self {
        Self::new()
    }
}

/// The headroom of one level in [`ThresholdMode::Headroom`]: the level is entered when
/// fewer than `enter` bytes are free under the effective limit and left when at least
/// `exit` are free again (`exit >= enter`: the hysteresis).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(deny_unknown_fields))]
pub struct HeadroomBand {
    /// Entered below this many free bytes. Non-zero.
    pub enter: u64,
    /// Left at or above this many free bytes. At least `enter`.
    pub exit: u64,
}

impl HeadroomBand {
    /// A band entered below `enter` free bytes and left at `exit`.
    pub const fn new(enter: u64, exit: u64) -> Self {
        Self { enter, exit }
    }

    /// A band in MiB: `HeadroomBand::mib(512, 640)`.
    pub const fn mib(enter: u64, exit: u64) -> Self {
        Self::new(enter << 20, exit << 20)
    }
}

/// The per-level headroom of [`ThresholdMode::Headroom`].
///
/// On a limit too small for them, the byte thresholds are clamped to the config's
/// fixed utilization bands: a level is never entered at a utilization below its fixed
/// band's. So on a 512 MiB container "Low below 1 GiB free" becomes "Low at 70 %",
/// while on a 256 GiB host it means what it says (Low above 99.6 %).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
pub struct HeadroomThresholds {
    /// Headroom of [`PressureLevel::Low`].
    pub low: HeadroomBand,
    /// Headroom of [`PressureLevel::High`].
    pub high: HeadroomBand,
    /// Headroom of [`PressureLevel::Critical`].
    pub critical: HeadroomBand,
}

impl HeadroomThresholds {
    /// The default: Low below 1 GiB free (left at 1.25 GiB), High below 512 MiB
    /// (640 MiB), Critical below 256 MiB (320 MiB).
    pub const fn new() -> Self {
        Self {
            low: HeadroomBand::mib(1024, 1280),
            high: HeadroomBand::mib(512, 640),
            critical: HeadroomBand::mib(256, 320),
        }
    }

    const fn bands(&self) -> [HeadroomBand; 3] {
        [self.low, self.high, self.critical]
    }

    fn validate(&self) -> Result<(), PressureConfigFault> {
        let bands = self.bands();
        for (i, band) in bands.iter().enumerate() {
            let level = PressureLevel::ALL[i + 1];
            if band.enter == 0 {
                return Err((level, BandFault::OutOfRange));
            }
            if band.exit < band.enter {
                return Err((level, BandFault::ExitBeforeEnter));
            }
        }
        for i in 1..3 {
            let (lower, upper) = (bands[i - 1], bands[i]);
            // Less headroom is more pressure.
            if upper.enter >= lower.enter || upper.exit >= lower.exit {
                return Err((PressureLevel::ALL[i + 1], BandFault::NotAscending));
            }
        }
        Ok(())
    }

    /// The utilization bands these thresholds mean under a limit of `limit` bytes,
    /// clamped to `fixed` (the config's Low, High and Critical bands).
    pub(crate) fn applied(&self, fixed: [Band; 3], limit: u64) -> [AppliedBand; 3] {
        let limit = limit.max(1) as f64;
        let mut applied = [AppliedBand::FIXED_NORMAL; 3];
        for (i, (bytes, fixed)) in self.bands().into_iter().zip(fixed).enumerate() {
            let clamp = |free: u64, floor: f64| {
                let utilization = 1.0 - free as f64 / limit;
                if utilization >= floor {
                    (utilization, ThresholdSource::Bytes)
                } else {
                    (floor, ThresholdSource::Fraction)
                }
            };
            let (enter, enter_from) = clamp(bytes.enter, fixed.enter);
            let (exit, exit_from) = clamp(bytes.exit, fixed.exit);
            applied[i] = AppliedBand {
                level: PressureLevel::ALL[i + 1],
                band: Band::new(enter, exit),
                enter_from,
                exit_from,
            };
        }
        applied
    }
}

impl Default for HeadroomThresholds {
    /// [`HeadroomThresholds::new`].
    fn default() -> Self {
        Self::new()
    }
}

/// Where an applied threshold comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ThresholdSource {
    /// A fraction of the limit: the fixed bands (the utilization mode, or a headroom
    /// threshold clamped on a small limit).
    Fraction,
    /// Bytes of headroom.
    Bytes,
}

/// The utilization band a level is judged by under a given limit, and where each of
/// its thresholds comes from
/// ([`PressureConfig::applied_bands`](super::PressureConfig::applied_bands)).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AppliedBand {
    /// Low, High or Critical.
    pub level: PressureLevel,
    /// The band in force, as fractions of the limit.
    pub band: Band,
    /// Where `band.enter` comes from.
    pub enter_from: ThresholdSource,
    /// Where `band.exit` comes from.
    pub exit_from: ThresholdSource,
}

impl AppliedBand {
    const FIXED_NORMAL: Self = Self {
        level: PressureLevel::Normal,
        band: Band::new(0.0, 0.0),
        enter_from: ThresholdSource::Fraction,
        exit_from: ThresholdSource::Fraction,
    };

    pub(crate) const fn fixed(level: PressureLevel, band: Band) -> Self {
        Self {
            level,
            band,
            enter_from: ThresholdSource::Fraction,
            exit_from: ThresholdSource::Fraction,
        }
    }
}

/// What is wrong with a band of a stall or headroom threshold
/// ([`PressureConfigError::Stall`](super::PressureConfigError::Stall),
/// [`PressureConfigError::Headroom`](super::PressureConfigError::Headroom)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BandFault {
    /// A fraction outside `0.0..=1.0` (or NaN), or a headroom of zero bytes.
    OutOfRange,
    /// The level would be left before it is reached: a stall band's `exit` above its
    /// `enter`, or a headroom band's `exit` below its `enter`.
    ExitBeforeEnter,
    /// The band does not mean more pressure than the level below's: a stall signal
    /// set on both levels not higher, or a headroom not smaller.
    NotAscending,
    /// A stall band with no condition at all.
    NoCondition,
}

impl fmt::Display for BandFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::OutOfRange => "a threshold is out of range",
            Self::ExitBeforeEnter => "it would be left before it is entered",
            Self::NotAscending => "it is not above the level below",
            Self::NoCondition => "it has no condition",
        })
    }
}

/// A fault and the level it is in.
type PressureConfigFault = (PressureLevel, BandFault);

fn check_fraction_band(band: Band) -> Result<(), BandFault> {
    if !(0.0..=1.0).contains(&band.enter) || !(0.0..=1.0).contains(&band.exit) {
        return Err(BandFault::OutOfRange);
    }
    if band.exit > band.enter {
        return Err(BandFault::ExitBeforeEnter);
    }
    Ok(())
}

impl ThresholdMode {
    /// `Err((level, fault, is_stall))` for the first bad band.
    pub(crate) fn validate(&self) -> Result<(), (PressureLevel, BandFault, bool)> {
        match self {
            Self::Utilization => Ok(()),
            Self::Stall(stall) => stall.validate().map_err(|(l, f)| (l, f, true)),
            Self::Headroom(headroom) => headroom.validate().map_err(|(l, f)| (l, f, false)),
        }
    }
}
