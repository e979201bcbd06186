//! Memory pressure as a level with hysteresis, a continuous scale factor, and the
//! sizes that follow from them (no_std).
//!
//! The pieces, from the bottom:
//!
//! - [`PressureLevel`]: `Normal < Low < High < Critical`.
//! - [`PressureConfig`]: per-level [`Band`]s of *enter* and *exit* utilization (the
//!   gap between them is the hysteresis), a minimum *dwell* before a level may fall, a
//!   *sustain* time before a non-critical level is entered, the sampling interval, and
//!   the [`ScaleRange`] of the scale factor. Validated when a gauge is built: a config
//!   that cannot work is a [`PressureConfigError`], never a panic and never a silent
//!   "everything is critical".
//! - [`ThresholdMode`]: what the thresholds are about. By default utilization
//!   against those bands; opt-in, the kernel's stall information
//!   ([`StallThresholds`]: PSI `some`/`full`, utilization as a second condition) or
//!   bytes of headroom under the limit ([`HeadroomThresholds`], clamped to the bands
//!   on small limits), for hosts where a fixed percentage is wrong.
//! - [`PressureGauge`]: fed utilization samples (or [`Reading`]s, with the limit and
//!   PSI) at [`Clock`](crate::clock::Clock) ticks, it yields a [`Transition`] only
//!   when the level really changes.
//! - [`adaptive_size`]: 100/75/50/25 % of a base size per level, at least 1 and never
//!   more than the base.
//! - [`CapacityTargets`] (`alloc`): soft-capacity targets (rings, tables; anything
//!   implementing [`SoftCapacity`](crate::capacity::SoftCapacity)) that are shrunk to
//!   their adaptive size on a transition and restored when pressure falls.
//!
//! Where the utilization comes from is not this module's business: the
//! `os` layer (feature `std`) samples the process and its container, and
//! [`TrackingAllocator`](crate::heap::TrackingAllocator) measures a heap of known
//! size where there is no OS.
//!
//! # Examples
//!
//! ```
//! use core::time::Duration;
//! use membound::clock::{Clock, ManualClock};
//! use membound::pressure::{adaptive_size, PressureConfig, PressureGauge, PressureLevel};
//!
//! let clock = ManualClock::default(); // 1 ms ticks
//! let config = PressureConfig::default() // enter 70/85/95 %, exit 65/80/90 %
//!     .with_sustain(Duration::from_secs(2))
//!     .with_dwell(Duration::from_secs(30));
//! let mut gauge = PressureGauge::new(&config, &clock)?;
//!
//! assert_eq!(gauge.observe(0.88, clock.now()), None); // above High, not yet sustained
//! clock.advance_by(Duration::from_secs(2));
//! let t = gauge.observe(0.88, clock.now()).expect("sustained for 2 s");
//! assert_eq!((t.from, t.to), (PressureLevel::Normal, PressureLevel::High));
//! assert_eq!(adaptive_size(8192, gauge.level()), 4096);
//!
//! // Critical is entered at once.
//! let t = gauge.observe(0.97, clock.now()).unwrap();
//! assert_eq!(t.to, PressureLevel::Critical);
//! # Ok::<(), membound::pressure::PressureConfigError>(())
//! ```

use core::fmt;

mod config;
mod gauge;
mod modes;
#[cfg(feature = "alloc")]
mod targets;

pub use config::{Band, PressureConfig, PressureConfigError, ScaleRange};
pub use gauge::{GaugeStats, PressureGauge, Reading, Transition};
pub use modes::{
    AppliedBand, BandFault, HeadroomBand, HeadroomThresholds, Psi, StallBand, StallThresholds,
    ThresholdMode, ThresholdSource,
};
#[cfg(feature = "alloc")]
pub use targets::{ApplyReport, BudgetEntry, CapacityTargets, TargetId};

/// How short of memory the process or its container is. Ordered: `Normal < Low <
/// High < Critical`.
///
/// # Examples
///
/// ```
/// use membound::pressure::PressureLevel;
///
/// assert!(PressureLevel::High > PressureLevel::Low);
/// assert_eq!(PressureLevel::Critical.to_string(), "critical");
/// assert_eq!(PressureLevel::from_index(1), Some(PressureLevel::Low));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "lowercase"))]
#[repr(u8)]
pub enum PressureLevel {
    /// Below every threshold.
    #[default]
    Normal = 0,
    /// Above the low threshold: start saving.
    Low = 1,
    /// Above the high threshold: shed what can be rebuilt.
    High = 2,
    /// Above the critical threshold: the next allocations may fail or be OOM-killed.
    Critical = 3,
}

impl PressureLevel {
    /// Every level, in ascending order.
    pub const ALL: [PressureLevel; 4] = [Self::Normal, Self::Low, Self::High, Self::Critical];

    /// The level's position in [`ALL`](Self::ALL): 0 for `Normal` to 3 for `Critical`.
    /// Stable, so it can live in an atomic.
    #[inline]
    pub const fn index(self) -> usize {
        self as usize
    }

    /// The level at `index` (see [`index`](Self::index)), or `None` beyond 3.
    #[inline]
    pub const fn from_index(index: usize) -> Option<Self> {
        match index {
            0 => Some(Self::Normal),
            1 => Some(Self::Low),
            2 => Some(Self::High),
            3 => Some(Self::Critical),
            _ => None,
        }
    }

    /// The level's name: "normal", "low", "high" or "critical".
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Normal => "normal",
            Self::Low => "low",
            Self::High => "high",
            Self::Critical => "critical",
        }
    }

    /// The share of a base size that [`adaptive_size`] keeps at this level, in percent:
    /// 100, 75, 50, 25.
    pub const fn size_percent(self) -> u8 {
        match self {
            Self::Normal => 100,
            Self::Low => 75,
            Self::High => 50,
            Self::Critical => 25,
        }
    }
}

impl fmt::Display for PressureLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// The size a structure of `base` items should use at `level`: 100, 75, 50 or 25 % of
/// `base`, rounded down, but at least 1 and never more than `base`.
///
/// The original rounded a small buffer's share to 0 and then treated 0 as "use the
/// default", producing a *larger* buffer under pressure; here the result is always in
/// `1..=base`. A `base` of 0 has no such range and gives 0.
///
/// # Examples
///
/// ```
/// use membound::pressure::{adaptive_size, PressureLevel};
///
/// assert_eq!(adaptive_size(1000, PressureLevel::Normal), 1000);
/// assert_eq!(adaptive_size(1000, PressureLevel::Low), 750);
/// assert_eq!(adaptive_size(1000, PressureLevel::High), 500);
/// assert_eq!(adaptive_size(1000, PressureLevel::Critical), 250);
/// assert_eq!(adaptive_size(3, PressureLevel::Critical), 1); // never 0
/// assert_eq!(adaptive_size(usize::MAX, PressureLevel::Low), usize::MAX / 4 * 3 + 2);
/// ```
pub const fn adaptive_size(base: usize, level: PressureLevel) -> usize {
    if base == 0 {
        return 0;
    }
    // u128 so `base * percent` cannot overflow for any usize.
    let scaled = (base as u128 * level.size_percent() as u128 / 100) as usize;
    if scaled == 0 {
        1
    } else {
        scaled
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_order_and_round_trip() {
        for (i, level) in PressureLevel::ALL.iter().enumerate() {
            assert_eq!(level.index(), i);
            assert_eq!(PressureLevel::from_index(i), Some(*level));
        }
        assert_eq!(PressureLevel::from_index(4), None);
        assert!(PressureLevel::Normal < PressureLevel::Low);
        assert!(PressureLevel::Low < PressureLevel::High);
        assert!(PressureLevel::High < PressureLevel::Critical);
        assert_eq!(PressureLevel::default(), PressureLevel::Normal);
    }

    #[cfg(feature = "alloc")]
    #[test]
    fn display_names() {
        use alloc::format;
        let names: [&str; 4] = ["normal", "low", "high", "critical"];
        for (level, name) in PressureLevel::ALL.iter().zip(names) {
            assert_eq!(format!("{level}"), name);
        }
        assert_eq!(format!("[{:>8}]", PressureLevel::Low), "[     low]");
    }

    #[test]
    fn adaptive_size_is_within_one_and_base() {
        for base in (0..=1000).chain([usize::MAX - 1, usize::MAX]) {
            let mut previous = base;
            for level in PressureLevel::ALL {
                let size = adaptive_size(base, level);
                if base == 0 {
                    assert_eq!(size, 0);
                    continue;
                }
                assert!(size >= 1, "base {base} {level}: 0");
                assert!(size <= base, "base {base} {level}: {size} > base");
                assert!(size <= previous, "base {base}: grew at {level}");
                previous = size;
            }
        }
        assert_eq!(adaptive_size(1, PressureLevel::Critical), 1);
        assert_eq!(adaptive_size(4, PressureLevel::Low), 3);
        assert_eq!(adaptive_size(7, PressureLevel::High), 3);
        assert_eq!(adaptive_size(8192, PressureLevel::Critical), 2048);
    }
}
