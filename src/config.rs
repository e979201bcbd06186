//! The one configuration error of the core's bounded structures: rings, the SPSC
//! channel, backpressure channels and TTL tables.
//!
//! Every core structure validates its configuration at construction and refuses one
//! that cannot work with a [`ConfigError`]; none substitutes a value silently.

use core::fmt;

use crate::policy::OverflowPolicy;

/// A configuration of a core structure that cannot work.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub enum ConfigError {
    /// A capacity of zero was asked for; a structure holds at least one item.
    ZeroCapacity,
    /// The capacity exceeds what the structure supports.
    CapacityTooLarge {
        /// The capacity asked for.
        requested: usize,
        /// The largest capacity the structure accepts.
        max: usize,
    },
    /// A maximum capacity below the initial capacity.
    MaxBelowCapacity {
        /// The initial capacity.
        capacity: usize,
        /// The maximum asked for.
        max: usize,
    },
    /// The structure does not support this overflow policy.
    UnsupportedPolicy {
        /// The policy asked for.
        policy: OverflowPolicy,
        /// The structure that refused it, e.g. `"spsc channel"`.
        structure: &'static str,
    },
    /// Water marks outside `0 <= low < high <= 1`.
    WaterMarks {
        /// The low mark given.
        low: f64,
        /// The high mark given.
        high: f64,
    },
    /// A default TTL of zero: every entry would expire as it is stored.
    ZeroTtl,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ZeroCapacity => f.write_str("capacity must be at least 1"),
            Self::CapacityTooLarge { requested, max } => {
                write!(f, "capacity {requested} exceeds the maximum of {max}")
            }
            Self::MaxBelowCapacity { capacity, max } => write!(
                f,
                "maximum capacity {max} is below the initial capacity {capacity}"
            ),
            Self::UnsupportedPolicy { policy, structure } => {
                write!(f, "a {structure} does not support the policy {policy:?}")
            }
            Self::WaterMarks { low, high } => write!(
                f,
                "water marks must satisfy 0 <= low < high <= 1, got low {low} and high {high}"
            ),
            Self::ZeroTtl => f.write_str("default TTL must be greater than zero"),
        }
    }
}

impl core::error::Error for ConfigError {}
