//! The versioned JSON state store (feature `state`).
//!
//! [`StateStore`] keeps one JSON document (its root an object) that changes only by
//! RFC 6902 patches, each applied atomically and numbered by a global
//! [`Revision`]. The document is sharded by top-level key so writers to different
//! keys run in parallel; a bounded [history](StateStore::changes_since) of forward
//! patches lets clients catch up from a revision (or learn that they must take a
//! [snapshot](StateStore::snapshot)); optimistic [transactions](Txn) commit only if
//! what they read did not change. In the AG-UI protocol the snapshot is the
//! `STATE_SNAPSHOT` event and each patch a `STATE_DELTA`.
//!
//! What it does that the original did not: history entries are the patches, never
//! copies of the state; `move`, `copy` and `test` are supported; patches are atomic
//! across shards; every size is bounded by a [`Limits`] field with a typed error;
//! the history shrinks under memory pressure.
//!
//! Subscriptions by path pattern live in [`subscription`].
//!
//! # Examples
//!
//! ```
//! use membound::adapters::state::{HistoryError, Revision, StateStore};
//! use serde_json::json;
//!
//! let store = StateStore::new(Default::default())?;
//! store.apply_json(r#"[{"op":"add","path":"/messages","value":[]}]"#)?;
//! store.apply_json(r#"[{"op":"add","path":"/messages/-","value":"hello"}]"#)?;
//!
//! // A client at revision 1 catches up with the patches after it.
//! let changes = store.changes_since(Revision(1))?;
//! assert_eq!(changes.len(), 1);
//! assert_eq!(changes[0].revision, Revision(2));
//!
//! // A revision the store never reached is an error; one trimmed from the history
//! // answers `Compacted`, and the client takes a snapshot instead.
//! assert!(matches!(store.changes_since(Revision(5)), Err(HistoryError::Future { .. })));
//! let (revision, document) = store.snapshot();
//! assert_eq!((revision, document), (Revision(2), json!({"messages": ["hello"]})));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod config;
mod error;
mod history;
pub(crate) mod ops;
mod parse;
#[cfg(feature = "redis")]
mod redis;
mod store;
pub mod subscription;
mod txn;

use core::fmt;

pub use self::config::{HistoryLimits, Limits, StateConfig, TxnConfig};
pub use self::error::{
    HistoryError, Limit, LimitExceeded, PatchFailure, StateConfigError, StateError,
};
pub use self::history::Change;
#[cfg(feature = "redis")]
pub use self::redis::{RedisState, RedisStateConfig, RedisStateError};
pub use self::store::{StateMetrics, StateSnapshot, StateStore, StateStoreBuilder};
pub use self::txn::Txn;

/// A revision of the store: every successful patch gets the next one. The empty store
/// is at revision 0.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Revision(pub u64);

impl Revision {
    /// The revision of an empty store.
    pub const ZERO: Revision = Revision(0);

    /// The revision as a number.
    #[must_use]
    pub const fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for Revision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "r{}", self.0)
    }
}
