//! The configuration of a backpressure channel: its capacity, its overflow policy
//! and its water marks.

use crate::policy::OverflowPolicy;
use crate::ring::RingConfig;
use crate::ConfigError;

/// High and low water marks, as fractions of the capacity in force:
/// `0 <= low < high <= 1`.
///
/// The channel pauses when the fill reaches `ceil(high × capacity)` items and resumes
/// when it falls to `floor(low × capacity)`, so the two counts differ for every
/// capacity and the hysteresis never collapses. A pause makes the sends of the
/// waiting policies ([`Block`](OverflowPolicy::Block),
/// [`BlockTimeout`](OverflowPolicy::BlockTimeout)) wait and those of
/// [`Reject`](OverflowPolicy::Reject) fail; the dropping policies go on (the pause is
/// still reported). No send waits unless its policy waits.
///
/// # Examples
///
/// ```
/// use membound::backpressure::WaterMarks;
///
/// let marks = WaterMarks::new(0.25, 0.75)?;
/// assert_eq!((marks.low(), marks.high()), (0.25, 0.75));
/// assert!(WaterMarks::new(0.8, 0.5).is_err());
/// assert!(WaterMarks::new(0.2, f64::NAN).is_err());
/// # Ok::<(), membound::ConfigError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(try_from = "RawWaterMarks"))]
pub struct WaterMarks {
    low: f64,
    high: f64,
}

/// `WaterMarks` as read from a file, validated by `TryFrom`.
#[cfg(feature = "serde")]
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWaterMarks {
    low: f64,
    high: f64,
}

#[cfg(feature = "serde")]
impl TryFrom<RawWaterMarks> for WaterMarks {
    type Error = ConfigError;
    fn try_from(raw: RawWaterMarks) -> Result<Self, ConfigError> {
        Self::new(raw.low, raw.high)
    }
}

impl WaterMarks {
    /// Validated water marks.
    ///
    /// # Errors
    ///
    /// [`ConfigError::WaterMarks`] unless `0 <= low < high <= 1` (NaN fails).
    pub fn new(low: f64, high: f64) -> Result<Self, ConfigError> {
        // Written so that NaN fails every comparison and so the check.
        if low >= 0.0 && low < high && high <= 1.0 {
            Ok(Self { low, high })
        } else {
            Err(ConfigError::WaterMarks { low, high })
        }
    }

    /// The resume mark.
    pub const fn low(&self) -> f64 {
        self.low
    }

    /// The pause mark.
    pub const fn high(&self) -> f64 {
        self.high
    }

    /// The fill at which the channel pauses: at least 1.
    pub(super) fn high_count(&self, capacity: usize) -> usize {
        let count = self.high * capacity as f64;
        // ceil without std; the product is in [0, capacity].
        let floor = count as usize;
        let ceil = if (floor as f64) < count {
            floor + 1
        } else {
            floor
        };
        ceil.clamp(1, capacity)
    }

    /// The fill at which a paused channel resumes: below `high_count`.
    pub(super) fn low_count(&self, capacity: usize) -> usize {
        // floor(low × cap) < ceil(high × cap) because low < high.
        ((self.low * capacity as f64) as usize).min(self.high_count(capacity) - 1)
    }
}

/// Configuration of a [`Backpressure`](super::Backpressure) channel.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use membound::backpressure::{BackpressureConfig, WaterMarks};
/// use membound::OverflowPolicy;
///
/// let config = BackpressureConfig::new(1024)
///     .with_policy(OverflowPolicy::BlockTimeout(Duration::from_millis(50)))
///     .with_water_marks(WaterMarks::new(0.5, 0.9)?);
/// assert!(config.validate().is_ok());
/// # Ok::<(), membound::ConfigError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
#[non_exhaustive]
pub struct BackpressureConfig {
    /// Items the channel holds: at least 1.
    pub capacity: usize,
    /// Slots reserved up front so [`SoftCapacity::set_capacity`](crate::capacity::SoftCapacity::set_capacity) can raise the
    /// capacity later; `0` means "the capacity".
    pub max_capacity: usize,
    /// What a send does when the ring is full. A backpressure channel supports
    /// every [`OverflowPolicy`]; [`Reject`](OverflowPolicy::Reject) also refuses
    /// sends while the channel is paused.
    pub policy: OverflowPolicy,
    /// Pause and resume marks (see [`WaterMarks`] for which policies a pause holds
    /// back); `None` disables pausing.
    pub water_marks: Option<WaterMarks>,
}

impl Default for BackpressureConfig {
    /// 1024 items, [`OverflowPolicy::Block`], pause at 90 % and resume at 50 %.
    fn default() -> Self {
        Self {
            capacity: 1024,
            max_capacity: 0,
            policy: OverflowPolicy::Block,
            water_marks: Some(WaterMarks {
                low: 0.5,
                high: 0.9,
            }),
        }
    }
}

impl BackpressureConfig {
    /// `capacity` items, otherwise the [`Default`].
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            ..Self::default()
        }
    }

    /// Sets the overflow policy.
    #[must_use]
    pub fn with_policy(mut self, policy: OverflowPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Sets the water marks.
    #[must_use]
    pub fn with_water_marks(mut self, marks: WaterMarks) -> Self {
        self.water_marks = Some(marks);
        self
    }

    /// Disables pausing: only the policy acts, when the ring is full.
    #[must_use]
    pub fn without_water_marks(mut self) -> Self {
        self.water_marks = None;
        self
    }

    /// Reserves `max` slots so the capacity can later be raised up to `max`.
    #[must_use]
    pub fn with_max_capacity(mut self, max: usize) -> Self {
        self.max_capacity = max;
        self
    }

    /// The ring behind the channel, under the channel's own policy.
    pub(super) fn ring_config(&self) -> RingConfig {
        let ring = RingConfig::new(self.capacity).with_policy(self.policy);
        if self.max_capacity == 0 {
            ring
        } else {
            ring.with_max_capacity(self.max_capacity)
        }
    }

    /// Checks the configuration without building anything.
    ///
    /// # Errors
    ///
    /// As [`RingConfig::validate`] for a capacity the ring refuses
    /// ([`ConfigError::ZeroCapacity`], [`ConfigError::MaxBelowCapacity`] for a
    /// reservation below it, ...), [`ConfigError::WaterMarks`] for marks outside
    /// `0 <= low < high <= 1` (possible when the fields were set directly).
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(marks) = self.water_marks {
            WaterMarks::new(marks.low, marks.high)?;
        }
        self.ring_config().validate()
    }
}
