//! The store's errors: one enum for what a write can run into, with the limit and
//! patch failures it carries.

use alloc::string::String;
use core::fmt;

use super::Revision;

/// Which configured limit a patch, transaction or import ran into.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Limit {
    /// [`Limits::patch_bytes`](super::Limits::patch_bytes): the patch's encoded size.
    PatchBytes,
    /// [`Limits::ops_per_patch`](super::Limits::ops_per_patch).
    OpsPerPatch,
    /// [`Limits::document_bytes`](super::Limits::document_bytes): the document's
    /// compact JSON size after the patch.
    DocumentBytes,
    /// [`Limits::depth`](super::Limits::depth): container nesting, the root object
    /// being level 1.
    Depth,
    /// [`Limits::array_len`](super::Limits::array_len).
    ArrayLen,
    /// [`Limits::object_keys`](super::Limits::object_keys), the root object included.
    ObjectKeys,
    /// [`Limits::string_len`](super::Limits::string_len), in bytes; object keys count.
    StringLen,
}

impl Limit {
    /// The limit's name as in [`Limits`](super::Limits): `"patch_bytes"`, ...
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::PatchBytes => "patch_bytes",
            Self::OpsPerPatch => "ops_per_patch",
            Self::DocumentBytes => "document_bytes",
            Self::Depth => "depth",
            Self::ArrayLen => "array_len",
            Self::ObjectKeys => "object_keys",
            Self::StringLen => "string_len",
        }
    }
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// A limit was exceeded: what was asked for and what is allowed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LimitExceeded {
    /// The limit.
    pub limit: Limit,
    /// The configured maximum.
    pub max: usize,
    /// The size the change would have produced (for depth, a lower bound: the walk
    /// stops one level past the limit).
    pub actual: usize,
    /// The operation that exceeded it, by index in its patch; `None` when it is the
    /// patch or the document as a whole.
    pub op: Option<usize>,
}

impl LimitExceeded {
    /// Fails naming `limit` if `actual` is above `max`, for a patch or document as a
    /// whole (no operation named).
    pub(crate) fn check(limit: Limit, max: usize, actual: usize) -> Result<(), StateError> {
        if actual > max {
            return Err(StateError::Limit(Self {
                limit,
                max,
                actual,
                op: None,
            }));
        }
        Ok(())
    }
}

impl fmt::Display for LimitExceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "limit {} exceeded: {} > {}",
            self.limit, self.actual, self.max
        )?;
        if let Some(op) = self.op {
            write!(f, " (operation {op})")?;
        }
        Ok(())
    }
}

/// Why an RFC 6902 operation could not be applied: the kinds of
/// [`json_patch::PatchErrorKind`], which this store reports identically.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PatchFailure {
    /// A `test` operation found a different value. Values compare as RFC 6902
    /// section 4.6 says: numbers by numeric value (`1`, `1.0` and `1e0` are equal;
    /// so are `0` and `-0`), exactly (integers are not rounded through `f64`);
    /// objects by members in any order. json-patch's own `test` tells `1` from `1.0`.
    TestFailed,
    /// The `from` pointer of a `move` or `copy` names no value.
    InvalidFromPointer,
    /// The `path` pointer names no value (or no place to add one).
    InvalidPointer,
    /// A `move` into a location inside the value being moved.
    CannotMoveInsideItself,
}

impl PatchFailure {
    /// The failure json-patch reports as `kind`.
    pub fn from_kind(kind: &json_patch::PatchErrorKind) -> Option<Self> {
        use json_patch::PatchErrorKind as K;
        Some(match kind {
            K::TestFailed => Self::TestFailed,
            K::InvalidFromPointer => Self::InvalidFromPointer,
            K::InvalidPointer => Self::InvalidPointer,
            K::CannotMoveInsideItself => Self::CannotMoveInsideItself,
            _ => return None,
        })
    }
}

impl fmt::Display for PatchFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::TestFailed => "value did not match",
            Self::InvalidFromPointer => "\"from\" path is invalid",
            Self::InvalidPointer => "path is invalid",
            Self::CannotMoveInsideItself => "cannot move the value inside itself",
        })
    }
}

/// Why a write, read or import was refused. On every error the document, the
/// revision and the history are unchanged.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StateError {
    /// The patch is not a JSON array of RFC 6902 operations.
    InvalidPatch(String),
    /// A JSON Pointer (RFC 6901) that does not parse.
    InvalidPointer(String),
    /// Operation `op` of a patch text is an object with two members named `name`,
    /// or (in strict mode) holds such an object in a value: its meaning would
    /// depend on the parser (RFC 8259 section 4). See
    /// [`StateStore::apply_json`](super::StateStore::apply_json).
    DuplicateMember {
        /// Index of the operation.
        op: usize,
        /// The name found twice.
        name: String,
    },
    /// Operation `op` of the patch failed; the whole patch was discarded.
    Patch {
        /// Index of the failing operation.
        op: usize,
        /// Its `path`, as json-patch reports it.
        path: String,
        /// What went wrong.
        failure: PatchFailure,
    },
    /// The patch (operation `op`) would make the root something other than an
    /// object.
    RootNotObject {
        /// Index of the operation.
        op: usize,
    },
    /// A configured limit.
    Limit(LimitExceeded),
    /// A transaction's base changed: another write committed to a shard it read or
    /// writes since it read it.
    Conflict {
        /// The index of the shard that changed (the first one found).
        shard: usize,
        /// The shard's revision when the transaction read it.
        base: Revision,
        /// The shard's revision at commit.
        current: Revision,
    },
    /// The transaction was idle longer than its TTL and was expired.
    TxnExpired,
    /// [`TxnConfig::max_open`](super::TxnConfig::max_open) transactions are open.
    TooManyTxns {
        /// The cap.
        max: usize,
    },
    /// A transaction buffered [`TxnConfig::max_ops`](super::TxnConfig::max_ops)
    /// operations already.
    TxnTooLarge {
        /// The cap.
        max: usize,
    },
    /// New transactions are refused under critical memory pressure.
    CriticalPressure,
    /// A snapshot to import that is not `{"revision": n, "document": {...}}`, or
    /// whose document is not an object.
    InvalidSnapshot(String),
    /// [`StateStore::import`](super::StateStore::import) of a snapshot older than
    /// the store: revisions never go back.
    RevisionBehind {
        /// The store's revision.
        current: Revision,
        /// The snapshot's.
        imported: Revision,
    },
}

impl fmt::Display for StateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidPatch(why) => write!(f, "invalid JSON patch: {why}"),
            Self::InvalidPointer(why) => write!(f, "invalid JSON pointer: {why}"),
            Self::DuplicateMember { op, name } => {
                write!(f, "operation {op}: member '{name}' twice in one object")
            }
            Self::Patch { op, path, failure } => {
                write!(f, "operation {op} failed at path '{path}': {failure}")
            }
            Self::RootNotObject { op } => {
                write!(f, "operation {op} would make the root a non-object")
            }
            Self::Limit(limit) => limit.fmt(f),
            Self::Conflict {
                shard,
                base,
                current,
            } => write!(
                f,
                "transaction conflict: shard {shard} moved from {base} to {current}"
            ),
            Self::TxnExpired => f.write_str("transaction expired"),
            Self::TooManyTxns { max } => write!(f, "{max} transactions are open already"),
            Self::TxnTooLarge { max } => {
                write!(f, "a transaction holds at most {max} operations")
            }
            Self::CriticalPressure => {
                f.write_str("transactions are refused under critical memory pressure")
            }
            Self::InvalidSnapshot(why) => write!(f, "invalid snapshot: {why}"),
            Self::RevisionBehind { current, imported } => write!(
                f,
                "snapshot at {imported} is older than the store at {current}"
            ),
        }
    }
}

impl core::error::Error for StateError {}

impl From<LimitExceeded> for StateError {
    fn from(limit: LimitExceeded) -> Self {
        Self::Limit(limit)
    }
}

/// [`StateStore::changes_since`](super::StateStore::changes_since) could not answer
/// from the history.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum HistoryError {
    /// The changes after `requested` were trimmed away: send a snapshot instead.
    /// `oldest` is the oldest revision `changes_since` still accepts.
    Compacted {
        /// The revision asked for.
        requested: Revision,
        /// The oldest revision still answered.
        oldest: Revision,
    },
    /// `requested` is newer than the store.
    Future {
        /// The revision asked for.
        requested: Revision,
        /// The store's revision.
        current: Revision,
    },
}

impl fmt::Display for HistoryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Compacted { requested, oldest } => write!(
                f,
                "history after {requested} was compacted; the oldest available is {oldest}"
            ),
            Self::Future { requested, current } => {
                write!(f, "{requested} is newer than the store's {current}")
            }
        }
    }
}

impl core::error::Error for HistoryError {}

/// A [`StateConfig`](super::StateConfig) that cannot work.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub enum StateConfigError {
    /// The shard count is 0, not a power of two, or above
    /// [`StateConfig::MAX_SHARDS`](super::StateConfig::MAX_SHARDS).
    Shards(usize),
    /// A limit of 0 (or, for `document_bytes`, below the 2 bytes of `{}`), or a
    /// depth above [`Limits::MAX_DEPTH`](super::Limits::MAX_DEPTH).
    Limit(Limit),
    /// A history bound of 0.
    History,
    /// A transaction cap or TTL of 0.
    Txn,
    /// The subscription configuration cannot work.
    Subscriptions(super::subscription::SubscriptionConfigError),
}

impl fmt::Display for StateConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Shards(n) => write!(
                f,
                "shard count {n} must be a power of two from 1 to {}",
                super::StateConfig::MAX_SHARDS
            ),
            Self::Limit(limit) => write!(f, "limit {limit} is out of range"),
            Self::History => f.write_str("history bounds must be greater than zero"),
            Self::Txn => f.write_str("transaction caps and TTL must be greater than zero"),
            Self::Subscriptions(e) => write!(f, "subscriptions: {e}"),
        }
    }
}

impl core::error::Error for StateConfigError {}
