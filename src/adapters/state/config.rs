//! The store's configuration: shards, limits, history bounds, transactions.

use core::time::Duration;

use super::error::{Limit, StateConfigError};
use super::subscription::SubscriptionConfig;

/// The most containers serde_json's parser takes nested in one text (its recursion
/// limit of 128 counts one more).
const PARSER_DEPTH: usize = 127;

/// Size limits on what the store accepts. A patch, transaction or import that would
/// break one is refused with [`StateError::Limit`](super::StateError::Limit) and
/// changes nothing. The values a patch carries (`add`, `replace`, `test`) are
/// checked against the value limits (depth, array length, object keys, string
/// length) before anything else reads them, so a value nested arbitrarily deep is
/// refused, not walked.
///
/// # Examples
///
/// ```
/// use membound::adapters::state::Limits;
///
/// let limits = Limits { depth: 8, string_len: 4096, ..Limits::default() };
/// assert_eq!(limits.array_len, Limits::default().array_len);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Limits {
    /// Most bytes of one patch in compact JSON (the raw text for
    /// [`apply_json`](super::StateStore::apply_json)). Default 1 MiB.
    pub patch_bytes: usize,
    /// Most operations in one patch. Default 1024.
    pub ops_per_patch: usize,
    /// Most bytes of the whole document in compact JSON. Default 64 MiB.
    pub document_bytes: usize,
    /// Deepest container nesting, the root object being level 1 (`{"a":{"b":[]}}`
    /// has depth 3). Default 64, at most [`MAX_DEPTH`](Self::MAX_DEPTH).
    pub depth: usize,
    /// Most elements of one array. Default 100 000.
    pub array_len: usize,
    /// Most members of one object, the root included. Default 100 000.
    pub object_keys: usize,
    /// Longest string in bytes, object keys included. Default 1 MiB.
    pub string_len: usize,
}

impl Limits {
    /// The deepest nesting a store accepts: 125, so that everything it stores can
    /// be written out and parsed back by serde_json, whose parser stops at 127
    /// nested containers (as [`apply_json`](super::StateStore::apply_json) and the
    /// history do). A patch adds two levels around its values (the array and the
    /// operation object), and an operation on the root carries the whole document.
    pub const MAX_DEPTH: usize = PARSER_DEPTH - 2;

    /// Checks that every limit can be met by some document.
    ///
    /// # Errors
    ///
    /// [`StateConfigError::Limit`] naming the first limit that is 0, a
    /// `document_bytes` below 2 (the size of `{}`), or a depth above
    /// [`MAX_DEPTH`](Self::MAX_DEPTH).
    pub const fn validate(&self) -> Result<(), StateConfigError> {
        let bad = if self.patch_bytes == 0 {
            Some(Limit::PatchBytes)
        } else if self.ops_per_patch == 0 {
            Some(Limit::OpsPerPatch)
        } else if self.document_bytes < 2 {
            Some(Limit::DocumentBytes)
        } else if self.depth == 0 || self.depth > Self::MAX_DEPTH {
            Some(Limit::Depth)
        } else if self.array_len == 0 {
            Some(Limit::ArrayLen)
        } else if self.object_keys == 0 {
            Some(Limit::ObjectKeys)
        } else if self.string_len == 0 {
            Some(Limit::StringLen)
        } else {
            None
        };
        match bad {
            Some(limit) => Err(StateConfigError::Limit(limit)),
            None => Ok(()),
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            patch_bytes: 1 << 20,
            ops_per_patch: 1024,
            document_bytes: 64 << 20,
            depth: 64,
            array_len: 100_000,
            object_keys: 100_000,
            string_len: 1 << 20,
        }
    }
}

/// Bounds of the patch history; the tightest wins. Under memory pressure each is cut
/// to 75/50/25 % (see the [`StateStore`](super::StateStore)'s
/// [`SoftCapacity`](crate::capacity::SoftCapacity) impl).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct HistoryLimits {
    /// Most revisions kept. Default 10 000.
    pub entries: usize,
    /// Most bytes of patches kept, counted as their compact JSON. Default 16 MiB.
    pub bytes: usize,
    /// Oldest patch kept, by the store's clock. Default 1 hour.
    pub age: Duration,
}

impl Default for HistoryLimits {
    fn default() -> Self {
        Self {
            entries: 10_000,
            bytes: 16 << 20,
            age: Duration::from_secs(3600),
        }
    }
}

/// Caps and expiry of transactions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct TxnConfig {
    /// Most transactions open at once. Default 1024.
    pub max_open: usize,
    /// Most operations buffered by one transaction. Default 1024.
    pub max_ops: usize,
    /// A transaction idle (no read, write or commit) this long expires. Default 30 s.
    pub ttl: Duration,
}

impl Default for TxnConfig {
    fn default() -> Self {
        Self {
            max_open: 1024,
            max_ops: 1024,
            ttl: Duration::from_secs(30),
        }
    }
}

/// A [`StateStore`](super::StateStore)'s configuration.
///
/// # Examples
///
/// ```
/// use membound::adapters::state::{StateConfig, StateConfigError};
///
/// let config = StateConfig { shards: 64, lenient: true, ..StateConfig::default() };
/// assert_eq!(config.validate(), Ok(()));
/// let bad = StateConfig { shards: 12, ..StateConfig::default() };
/// assert_eq!(bad.validate(), Err(StateConfigError::Shards(12)));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct StateConfig {
    /// Number of shards the top-level keys are spread over: a power of two, default
    /// 16. Writers to keys on different shards do not wait for each other.
    pub shards: usize,
    /// Lenient parsing of JSON patches: an `add`, `replace` or `test` without a
    /// `"value"` reads it as `null` (some producers drop null members), and an
    /// object inside a value with a duplicate member name keeps the last one (as
    /// serde_json does). An operation object with a duplicate member is refused
    /// either way. Off by default: strict RFC 6902, and no duplicate member names
    /// anywhere in a patch.
    pub lenient: bool,
    /// Size limits.
    pub limits: Limits,
    /// History bounds.
    pub history: HistoryLimits,
    /// Transaction caps.
    pub txn: TxnConfig,
    /// Subscription cap, queue capacity and idle TTL.
    #[cfg_attr(feature = "serde", serde(default))]
    pub subscriptions: SubscriptionConfig,
}

impl StateConfig {
    /// The most shards a store takes.
    pub const MAX_SHARDS: usize = 1 << 16;

    /// Checks that the configuration can work.
    ///
    /// # Errors
    ///
    /// [`StateConfigError`] naming what cannot.
    pub const fn validate(&self) -> Result<(), StateConfigError> {
        if !self.shards.is_power_of_two() || self.shards > Self::MAX_SHARDS {
            return Err(StateConfigError::Shards(self.shards));
        }
        if let Err(e) = self.limits.validate() {
            return Err(e);
        }
        if self.history.entries == 0 || self.history.bytes == 0 || self.history.age.is_zero() {
            return Err(StateConfigError::History);
        }
        if self.txn.max_open == 0 || self.txn.max_ops == 0 || self.txn.ttl.is_zero() {
            return Err(StateConfigError::Txn);
        }
        if let Err(e) = self.subscriptions.validate() {
            return Err(StateConfigError::Subscriptions(e));
        }
        Ok(())
    }
}

impl Default for StateConfig {
    fn default() -> Self {
        Self {
            shards: 16,
            lenient: false,
            limits: Limits::default(),
            history: HistoryLimits::default(),
            txn: TxnConfig::default(),
            subscriptions: SubscriptionConfig::new(),
        }
    }
}
