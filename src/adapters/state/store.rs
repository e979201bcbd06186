//! The sharded store: its data (shards, sequencer, counters), its construction,
//! and the snapshot forms it hands out. The operations are split by concern:
//! `write` (the one write path), `read` (reads, export and import),
//! `history` (catching up, pressure, upkeep) and `subscribe`. Those files
//! import this one, never the other way round.

mod history;
mod read;
mod subscribe;
mod write;

use alloc::boxed::Box;
use alloc::string::String;
use alloc::sync::Arc;
use core::hash::BuildHasher;
use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crossbeam_utils::CachePadded;
use serde_json::{Map, Value};

use super::config::StateConfig;
use super::error::{StateConfigError, StateError};
use super::history::History;
use super::ops;
use super::subscription::Subscriptions;
use super::txn::{Txn, TxnTable};
use super::Revision;
use crate::capacity::SoftCapacity;
use crate::clock::{Clock, MonotonicClock};
use crate::monitor::MemoryManager;
use crate::pressure::PressureLevel;
use crate::sync::{AtomicU64, AtomicU8, Ordering};

type KeyHasher = foldhash::fast::RandomState;

/// One shard: the top-level members whose keys hash to it.
#[derive(Debug, Default)]
pub(crate) struct Shard {
    pub(super) members: HashMap<String, Value, KeyHasher>,
    /// The revision of the last patch that wrote to this shard (transactions compare
    /// it with the one they read).
    pub(crate) revision: u64,
}

/// What the sequencer lock guards: the order of commits.
#[derive(Debug)]
pub(super) struct Sequencer {
    pub(super) history: History,
    /// Patches applied.
    pub(super) applied: u64,
    /// The last revision given out.
    pub(super) revision: u64,
    /// The document's size account: the sum of [`ops::member_len`] over top-level
    /// members (the document's compact size is one more, for a non-empty one).
    pub(super) members_bytes: u64,
    /// Top-level members.
    pub(super) top_keys: u64,
}

/// What memory pressure resizes: the history (under the sequencer lock) and the
/// subscription queues. Shared, so that a memory manager can hold it (weakly) as
/// its target while the store itself is owned as the caller likes; see the
/// store's [`SoftCapacity`] impl for what it does.
pub(super) struct Retention<C> {
    /// Taken, after a writer's shard locks, to number and record a commit.
    pub(super) sequencer: CachePadded<Mutex<Sequencer>>,
    /// The [`PressureLevel`] last applied, as its index.
    pub(super) level: AtomicU8,
    /// [`HistoryLimits::entries`](super::HistoryLimits::entries): the capacity at
    /// `Normal`.
    pub(super) max_entries: usize,
    /// [`HistoryLimits::bytes`](super::HistoryLimits::bytes).
    pub(super) max_bytes: usize,
    pub(super) clock: Arc<C>,
    /// The subscription queues, sized with the level.
    pub(super) queues: Arc<dyn SoftCapacity + Send + Sync>,
}

/// Rejections by cause, and transaction outcomes.
#[derive(Debug, Default)]
pub(super) struct Counters {
    invalid: AtomicU64,
    failed: AtomicU64,
    limit: AtomicU64,
    conflicts: AtomicU64,
    refused: AtomicU64,
    commits: AtomicU64,
}

impl Counters {
    fn count(&self, error: &StateError) {
        let counter = match error {
            StateError::InvalidPatch(_) | StateError::InvalidPointer(_) => &self.invalid,
            StateError::Patch { .. } | StateError::RootNotObject { .. } => &self.failed,
            StateError::Limit(_) | StateError::TxnTooLarge { .. } => &self.limit,
            StateError::Conflict { .. } => &self.conflicts,
            // Counted by the transaction table, which saw it expire.
            StateError::TxnExpired => return,
            StateError::TooManyTxns { .. } | StateError::CriticalPressure => &self.refused,
            StateError::RevisionBehind { .. }
            | StateError::InvalidSnapshot(_)
            | StateError::DuplicateMember { .. } => &self.invalid,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// A snapshot of the store's counters, for monitoring.
///
/// Read counter by counter while writers run, so only approximately consistent then.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, crate::metrics::Metrics)]
#[non_exhaustive]
#[metrics(
    kind = "state",
    counters,
    help(rejected = "Patches refused, by cause.")
)]
pub struct StateMetrics {
    /// The current revision.
    #[metric(gauge, with = Revision::get)]
    pub revision: Revision,
    /// Patches applied (transactions' commits included) since the store was built.
    pub patches_applied: u64,
    /// Patches that were not JSON patches, pointers that did not parse, imports
    /// refused.
    #[metric(name = "rejected", label("cause", "invalid"))]
    pub rejected_invalid: u64,
    /// Patches with a failing operation (including a root made a non-object).
    #[metric(name = "rejected", label("cause", "failed"))]
    pub rejected_failed: u64,
    /// Patches and transactions over a limit.
    #[metric(name = "rejected", label("cause", "limit"))]
    pub rejected_limit: u64,
    /// Transaction commits refused for a conflict.
    pub conflicts: u64,
    /// Transactions found expired (by a sweep or by their own next call).
    pub txn_expired: u64,
    /// `begin` calls refused: too many open, or critical pressure.
    pub txn_refused: u64,
    /// Transactions committed.
    pub txn_commits: u64,
    /// Transactions open (including expired ones no sweep has removed yet).
    #[metric(gauge)]
    pub open_txns: usize,
    /// The document's size as compact JSON.
    #[metric(gauge, name = "document", unit = "bytes")]
    pub document_bytes: usize,
    /// Its top-level members.
    #[metric(gauge)]
    pub top_level_keys: usize,
    /// Patches the history holds.
    #[metric(gauge)]
    pub history_entries: usize,
    /// Their size as compact JSON.
    #[metric(gauge, name = "history", unit = "bytes")]
    pub history_bytes: usize,
    /// The oldest revision [`changes_since`](StateStore::changes_since) answers.
    #[metric(gauge, name = "history_oldest_revision", with = Revision::get)]
    pub history_oldest: Revision,
    /// The pressure level last applied through
    /// [`SoftCapacity::apply_pressure`](crate::capacity::SoftCapacity::apply_pressure).
    #[metric(gauge, name = "pressure_level", with = PressureLevel::index)]
    pub pressure: PressureLevel,
}

/// A document with its revision, as [`StateStore::export`] gives and
/// [`StateStore::import`] takes.
///
/// # Examples
///
/// ```
/// use membound::adapters::state::{Revision, StateSnapshot};
/// use serde_json::json;
///
/// let saved = StateSnapshot { revision: Revision(7), document: json!({"a": 1}) };
/// let text = saved.to_json().to_string();
/// assert_eq!(text, r#"{"document":{"a":1},"revision":7}"#);
/// let loaded = StateSnapshot::from_json(serde_json::from_str(&text)?)?;
/// assert_eq!(loaded, saved);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateSnapshot {
    /// The revision the document is at.
    pub revision: Revision,
    /// The document: an object.
    pub document: Value,
}

impl StateSnapshot {
    /// `{"revision": n, "document": {...}}`.
    pub fn to_json(&self) -> Value {
        let mut out = Map::new();
        out.insert("revision".into(), Value::from(self.revision.0));
        out.insert("document".into(), self.document.clone());
        Value::Object(out)
    }

    /// Reads what [`to_json`](Self::to_json) wrote.
    ///
    /// # Errors
    ///
    /// [`StateError::InvalidSnapshot`] when `value` has no unsigned `revision` or no
    /// object `document`. What it does not keep is dropped without recursion, so a
    /// `value` nested arbitrarily deep cannot overflow the stack here.
    pub fn from_json(value: Value) -> Result<Self, StateError> {
        let mut members = match value {
            Value::Object(members) => members,
            value => {
                ops::discard(value);
                return Err(StateError::InvalidSnapshot("not an object".into()));
            }
        };
        let revision = members.get("revision").and_then(Value::as_u64);
        let document = members.remove("document");
        ops::discard(Value::Object(members));
        match (revision, document) {
            (Some(revision), Some(document @ Value::Object(_))) => Ok(Self {
                revision: Revision(revision),
                document,
            }),
            (revision, document) => {
                if let Some(document) = document {
                    ops::discard(document);
                }
                Err(StateError::InvalidSnapshot(match revision {
                    None => "no unsigned `revision`".into(),
                    Some(_) => "no object `document`".into(),
                }))
            }
        }
    }
}

/// The versioned JSON state store: one document (its root an object) updated by
/// RFC 6902 patches, sharded by top-level key, with a bounded history of forward
/// patches and optimistic transactions.
///
/// # Consistency
///
/// - **Writes** lock the shards of every top-level key they touch (all shards for an
///   operation on the root `""`) in ascending shard order, apply all operations or
///   none, and take the next revision while still holding them, under a short
///   sequencer lock that also appends the history. Revisions, the history and the
///   commit notifications are therefore in one total order, and writers to keys on
///   different shards run in parallel up to that sequencer step.
/// - [`snapshot`](Self::snapshot) and [`export`](Self::export) read-lock every shard:
///   they see exactly the patches up to the revision they return, never part of one.
///   They hold writers off while they copy.
/// - [`get`](Self::get) read-locks one shard: it sees the value under one top-level
///   key as of some revision (never a half-applied patch), but two `get`s of keys on
///   different shards may see different revisions.
///
/// # Cost
///
/// A patch costs the size of the values it writes, removes or copies (they are
/// measured for the size limits), plus its own size once more (the history keeps it
/// as compact JSON text); never the document's size, except operations on the root.
/// Patches below one existing top-level member are applied in place in its value.
/// [`changes_since`](Self::changes_since) parses the patches it returns.
///
/// # Examples
///
/// ```
/// use membound::adapters::state::{Revision, StateStore};
/// use serde_json::json;
///
/// let store = StateStore::new(Default::default())?;
/// let r1 = store.apply_json(r#"[{"op":"add","path":"/user","value":{"name":"Ada"}}]"#)?;
/// let r2 = store.apply_json(r#"[
///     {"op":"test","path":"/user/name","value":"Ada"},
///     {"op":"add","path":"/todos","value":["write the store"]},
///     {"op":"copy","from":"/user/name","path":"/owner"}
/// ]"#)?;
/// assert_eq!((r1, r2), (Revision(1), Revision(2)));
/// assert_eq!(store.get("/todos/0")?, Some(json!("write the store")));
///
/// // A failing operation leaves everything as it was.
/// let failed = store.apply_json(r#"[
///     {"op":"remove","path":"/owner"},
///     {"op":"test","path":"/user/name","value":"Grace"}
/// ]"#);
/// assert!(failed.is_err());
/// assert_eq!(store.snapshot(), (Revision(2), json!({
///     "user": {"name": "Ada"}, "todos": ["write the store"], "owner": "Ada"
/// })));
///
/// // The history answers "what changed since revision 1?".
/// let changes = store.changes_since(Revision(1))?;
/// assert_eq!(changes.len(), 1);
/// assert_eq!(changes[0].revision, Revision(2));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct StateStore<C: Clock + Send + Sync + 'static = MonotonicClock> {
    config: StateConfig,
    /// `shards.len() - 1`; the shard count is a power of two.
    mask: usize,
    /// Picks a top-level key's shard.
    hasher: KeyHasher,
    /// Padded: writers on neighbouring shards must not share cache lines.
    shards: Box<[CachePadded<RwLock<Shard>>]>,
    /// The sequencer and the pressure level; the memory manager's target.
    retention: Arc<Retention<C>>,
    /// The last committed revision; stored under the sequencer lock and the
    /// committing writer's shard locks.
    revision: CachePadded<AtomicU64>,
    clock: Arc<C>,
    pub(crate) txns: TxnTable<C>,
    /// Who hears of each commit ([`subscribe`](Self::subscribe)).
    subscriptions: Subscriptions<Arc<C>>,
    counters: Counters,
}

impl<C: Clock + Send + Sync + 'static> core::fmt::Debug for StateStore<C> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("StateStore")
            .field("config", &self.config)
            .field("revision", &self.revision())
            .finish_non_exhaustive()
    }
}

impl StateStore<MonotonicClock> {
    /// An empty store (`{}` at revision 0) on the monotonic clock, registered with
    /// no memory manager: `StateStore::builder(config).build()`.
    ///
    /// # Errors
    ///
    /// [`StateConfigError`] if `config` cannot work.
    pub fn new(config: StateConfig) -> Result<Self, StateConfigError> {
        Self::builder(config).build()
    }

    /// A builder, for a store on another clock or registered with a memory
    /// manager.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use membound::adapters::state::{StateConfig, StateStore};
    /// use membound::clock::ManualClock;
    /// use membound::monitor::{MemoryManager, MonitorConfig};
    ///
    /// let manager = MemoryManager::new(MonitorConfig::development())?;
    /// let clock = Arc::new(ManualClock::default());
    /// let store = StateStore::builder(StateConfig::default())
    ///     .clock(clock.clone())
    ///     .memory_manager(&manager) // its history and queues follow the pressure
    ///     .build()?;
    /// assert_eq!(store.revision().get(), 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn builder(config: StateConfig) -> StateStoreBuilder<'static, MonotonicClock> {
        StateStoreBuilder {
            config,
            clock: MonotonicClock::new(),
            manager: None,
        }
    }
}

/// Builds a [`StateStore`]: [`StateStore::builder`].
#[must_use = "a builder does nothing until `build` is called"]
pub struct StateStoreBuilder<'m, C> {
    config: StateConfig,
    clock: C,
    manager: Option<&'m MemoryManager>,
}

impl<'m, C: Clock + Send + Sync + 'static> StateStoreBuilder<'m, C> {
    /// Times the history's age bound, transactions and subscriptions by `clock`:
    /// tests pass a [`ManualClock`](crate::clock::ManualClock) (in an `Arc` to keep
    /// a handle). Default: the [`MonotonicClock`].
    pub fn clock<D: Clock + Send + Sync + 'static>(self, clock: D) -> StateStoreBuilder<'m, D> {
        StateStoreBuilder {
            config: self.config,
            clock,
            manager: self.manager,
        }
    }

    /// Registers the store with `manager` when it is built
    /// ([`MemoryManager::register_capacity`]), so that every level transition
    /// resizes its history and subscription queues and, at `Critical`, refuses new
    /// transactions (see the store's [`SoftCapacity`] impl), with no callback
    /// written by the caller. The registration is weak: dropping the store ends it.
    pub fn memory_manager<'n>(self, manager: &'n MemoryManager) -> StateStoreBuilder<'n, C> {
        StateStoreBuilder {
            config: self.config,
            clock: self.clock,
            manager: Some(manager),
        }
    }

    /// An empty store (`{}` at revision 0), registered with the memory manager if
    /// one was given (and at once sized for its current level).
    ///
    /// # Errors
    ///
    /// [`StateConfigError`] if the configuration cannot work.
    pub fn build(self) -> Result<StateStore<C>, StateConfigError> {
        let store = StateStore::with_parts(self.config, self.clock)?;
        if let Some(manager) = self.manager {
            manager.register_capacity(&store.retention);
        }
        Ok(store)
    }
}

impl<C> core::fmt::Debug for StateStoreBuilder<'_, C> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("StateStoreBuilder")
            .field("config", &self.config)
            .field("memory_manager", &self.manager.is_some())
            .finish_non_exhaustive()
    }
}

/// The member bytes and count of a whole document (its size account).
pub(super) fn account(members: &Map<String, Value>) -> (usize, usize) {
    let bytes = members.iter().map(|(k, v)| ops::member_len(k, v)).sum();
    (bytes, members.len())
}

pub(super) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing in the write path panics on any input (the fuzz target checks it), so
    // a poisoned lock means a bug or a panicking allocator. Refusing every later
    // call would turn that into an outage; carry on with what is there.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

pub(super) fn read(shard: &CachePadded<RwLock<Shard>>) -> RwLockReadGuard<'_, Shard> {
    shard.read().unwrap_or_else(PoisonError::into_inner)
}

pub(super) fn write(shard: &CachePadded<RwLock<Shard>>) -> RwLockWriteGuard<'_, Shard> {
    shard.write().unwrap_or_else(PoisonError::into_inner)
}

pub(super) fn to_usize(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

impl<C: Clock + Send + Sync + 'static> StateStore<C> {
    fn with_parts(config: StateConfig, clock: C) -> Result<Self, StateConfigError> {
        config.validate()?;
        let clock = Arc::new(clock);
        let age = clock.ticks_for(config.history.age).max(1);
        let txns = TxnTable::new(&config.txn, clock.clone())?;
        let subscriptions = Subscriptions::new(config.subscriptions, clock.clone())
            .map_err(StateConfigError::Subscriptions)?;
        let retention = Arc::new(Retention {
            sequencer: CachePadded::new(Mutex::new(Sequencer {
                history: History::new(config.history, age),
                applied: 0,
                revision: 0,
                members_bytes: 0,
                top_keys: 0,
            })),
            level: AtomicU8::new(PressureLevel::Normal as u8),
            max_bytes: config.history.bytes,
            max_entries: config.history.entries,
            clock: clock.clone(),
            queues: subscriptions.queue_capacity(),
        });
        Ok(Self {
            mask: config.shards - 1,
            hasher: KeyHasher::default(),
            shards: (0..config.shards)
                .map(|_| CachePadded::new(RwLock::default()))
                .collect(),
            retention,
            revision: CachePadded::new(AtomicU64::new(0)),
            clock,
            txns,
            subscriptions,
            counters: Counters::default(),
            config,
        })
    }

    /// The configuration the store was built with.
    pub fn config(&self) -> &StateConfig {
        &self.config
    }

    /// The store's clock.
    pub fn clock(&self) -> &C {
        &self.clock
    }

    /// The last committed revision.
    pub fn revision(&self) -> Revision {
        Revision(self.revision.load(Ordering::Acquire))
    }

    pub(crate) fn shard_of(&self, key: &str) -> usize {
        // Truncating the hash is intended: the mask keeps its low bits.
        (self.hasher.hash_one(key) as usize) & self.mask
    }

    fn counted<T>(&self, result: Result<T, StateError>) -> Result<T, StateError> {
        if let Err(error) = &result {
            self.counters.count(error);
        }
        result
    }

    /// Starts a transaction: see [`Txn`].
    ///
    /// # Errors
    ///
    /// [`StateError::CriticalPressure`] under critical memory pressure;
    /// [`StateError::TooManyTxns`] when [`TxnConfig::max_open`](super::TxnConfig)
    /// are open.
    pub fn begin(&self) -> Result<Txn<'_, C>, StateError> {
        let result = if self.pressure() == PressureLevel::Critical {
            Err(StateError::CriticalPressure)
        } else {
            self.txns.open().map(|id| Txn::new(self, id))
        };
        self.counted(result)
    }

    pub(crate) fn count(&self, error: &StateError) {
        self.counters.count(error);
    }

    pub(crate) fn count_commit(&self) {
        self.counters.commits.fetch_add(1, Ordering::Relaxed);
    }

    /// A snapshot of the counters.
    pub fn metrics(&self) -> StateMetrics {
        let (applied, entries, bytes, oldest, members, top_keys) = {
            let sequencer = lock(&self.retention.sequencer);
            let history = &sequencer.history;
            (
                sequencer.applied,
                history.len(),
                history.bytes(),
                history.floor(),
                sequencer.members_bytes,
                sequencer.top_keys,
            )
        };
        let c = &self.counters;
        StateMetrics {
            revision: self.revision(),
            patches_applied: applied,
            rejected_invalid: c.invalid.load(Ordering::Relaxed),
            rejected_failed: c.failed.load(Ordering::Relaxed),
            rejected_limit: c.limit.load(Ordering::Relaxed),
            conflicts: c.conflicts.load(Ordering::Relaxed),
            txn_expired: self.txns.expired(),
            txn_refused: c.refused.load(Ordering::Relaxed),
            txn_commits: c.commits.load(Ordering::Relaxed),
            open_txns: self.txns.len(),
            document_bytes: if top_keys == 0 {
                2
            } else {
                to_usize(members + 1)
            },
            top_level_keys: to_usize(top_keys),
            history_entries: entries,
            history_bytes: bytes,
            history_oldest: oldest,
            pressure: self.pressure(),
        }
    }
}
