//! The sharded store: the document, its revision, its history, its limits.

use alloc::borrow::Cow;
use alloc::boxed::Box;
use alloc::string::{String, ToString};
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::hash::BuildHasher;
use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crossbeam_utils::CachePadded;
use json_patch::jsonptr::Pointer;
use json_patch::PatchOperation;
use serde_json::{Map, Value};

use super::config::StateConfig;
use super::error::{HistoryError, Limit, LimitExceeded, StateConfigError, StateError};
use super::history::{Backlog, Change, Entry, History};
use super::ops::{self, Run};
use super::parse;
use super::subscription::{
    CallbackSubscription, Change as SubscribedChange, RecvError, SubscribeError, SubscribeOptions,
    Subscription, SubscriptionMetrics, Subscriptions,
};
use super::txn::{Txn, TxnTable};
use super::Revision;
use crate::capacity::SoftCapacity;
use crate::clock::{Clock, MonotonicClock};
use crate::pressure::PressureLevel;
use crate::sync::{AtomicU64, AtomicU8, Ordering};

type KeyHasher = foldhash::fast::RandomState;

/// One shard: the top-level members whose keys hash to it.
#[derive(Debug, Default)]
pub(crate) struct Shard {
    members: HashMap<String, Value, KeyHasher>,
    /// The revision of the last patch that wrote to this shard (transactions compare
    /// it with the one they read).
    pub(crate) revision: u64,
}

/// What the sequencer lock guards: the order of commits.
#[derive(Debug)]
struct Sequencer {
    history: History,
    applied: u64,
    /// The last revision given out.
    revision: u64,
    /// The document's size account: the sum of [`ops::member_len`] over top-level
    /// members (the document's compact size is one more, for a non-empty one).
    members_bytes: u64,
    /// Top-level members.
    top_keys: u64,
}

impl Sequencer {
    /// Applies a successful run's changes to the size account, or refuses them
    /// over a limit. `doc` is the whole document when `all`.
    fn reserve(
        &mut self,
        run: &Run<'_>,
        doc: &Value,
        all: bool,
        limits: &super::Limits,
    ) -> Result<(), StateError> {
        let (bytes, keys) = if all {
            match doc {
                Value::Object(members) => {
                    let (bytes, keys) = account(members);
                    (bytes as u64, keys as u64)
                }
                _ => (0, 0),
            }
        } else {
            (
                self.members_bytes.saturating_add_signed(run.bytes),
                self.top_keys.saturating_add_signed(run.keys),
            )
        };
        // Shrinking is always allowed, even past a limit.
        if bytes > self.members_bytes {
            LimitExceeded::check(
                Limit::DocumentBytes,
                limits.document_bytes,
                to_usize(bytes + 1),
            )?;
        }
        if keys > self.top_keys {
            LimitExceeded::check(Limit::ObjectKeys, limits.object_keys, to_usize(keys))?;
        }
        self.members_bytes = bytes;
        self.top_keys = keys;
        Ok(())
    }
}

/// Fails with a conflict if a transaction's base revision of a shard is not the
/// shard's `current` one.
fn check_bases(bases: &[(usize, u64)], current: impl Fn(usize) -> u64) -> Result<(), StateError> {
    for &(shard, base) in bases {
        let now = current(shard);
        if now != base {
            return Err(StateError::Conflict {
                shard,
                base: Revision(base),
                current: Revision(now),
            });
        }
    }
    Ok(())
}

/// Rejections by cause, and transaction outcomes.
#[derive(Debug, Default)]
struct Counters {
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
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct StateMetrics {
    /// The current revision.
    pub revision: Revision,
    /// Patches applied (transactions' commits included) since the store was built.
    pub patches_applied: u64,
    /// Patches that were not JSON patches, pointers that did not parse, imports
    /// refused.
    pub rejected_invalid: u64,
    /// Patches with a failing operation (including a root made a non-object).
    pub rejected_failed: u64,
    /// Patches and transactions over a limit.
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
    pub open_txns: usize,
    /// The document's size as compact JSON.
    pub document_bytes: usize,
    /// Its top-level members.
    pub top_level_keys: usize,
    /// Patches the history holds.
    pub history_entries: usize,
    /// Their size as compact JSON.
    pub history_bytes: usize,
    /// The oldest revision [`changes_since`](StateStore::changes_since) answers.
    pub history_oldest: Revision,
    /// The pressure level last reported through
    /// [`on_pressure`](StateStore::on_pressure).
    pub pressure: PressureLevel,
}

impl crate::metrics::Metrics for StateMetrics {
    const KIND: &'static str = "state";

    fn visit(&self, out: &mut dyn crate::metrics::Visitor) {
        use crate::metrics::Metric;
        let StateMetrics {
            revision,
            patches_applied,
            rejected_invalid,
            rejected_failed,
            rejected_limit,
            conflicts,
            txn_expired,
            txn_refused,
            txn_commits,
            open_txns,
            document_bytes,
            top_level_keys,
            history_entries,
            history_bytes,
            history_oldest,
            pressure,
        } = *self;
        let rejected = |n: u64| Metric::counter("rejected", "Patches refused, by cause.", n);
        #[rustfmt::skip]
        let metrics = [
            Metric::counter("patches_applied", "Patches committed, transactions included.", patches_applied),
            Metric::counter("conflicts", "Transaction commits refused for a conflict.", conflicts),
            Metric::counter("txn_commits", "Transactions committed.", txn_commits),
            Metric::counter("txn_expired", "Transactions expired unfinished.", txn_expired),
            Metric::counter("txn_refused", "begin calls refused (cap, or critical pressure).", txn_refused),
            rejected(rejected_invalid).with_labels(&[("cause", "invalid")]),
            rejected(rejected_failed).with_labels(&[("cause", "failed")]),
            rejected(rejected_limit).with_labels(&[("cause", "limit")]),
            Metric::gauge("revision", "The current revision.", revision.get()),
            Metric::gauge("open_txns", "Transactions open.", open_txns),
            Metric::gauge("top_level_keys", "Top-level members of the document.", top_level_keys),
            Metric::gauge("history_entries", "Patches the history holds.", history_entries),
            Metric::gauge("history_oldest_revision", "The oldest revision the history answers.", history_oldest.get()),
            Metric::gauge("pressure_level", "The pressure level last reported (0 normal .. 3 critical).", pressure.index()),
            Metric::gauge("document", "The document as compact JSON.", document_bytes).bytes(),
            Metric::gauge("history", "The history's patches as compact JSON.", history_bytes).bytes(),
        ];
        metrics.into_iter().for_each(|m| out.metric(m));
    }
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
    /// Taken, after a writer's shard locks, to number and record a commit.
    sequencer: CachePadded<Mutex<Sequencer>>,
    /// The last committed revision; stored under the sequencer lock and the
    /// committing writer's shard locks.
    revision: CachePadded<AtomicU64>,
    pressure: AtomicU8,
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
    /// An empty store (`{}` at revision 0) on the monotonic clock.
    ///
    /// # Errors
    ///
    /// [`StateConfigError`] if `config` cannot work.
    pub fn new(config: StateConfig) -> Result<Self, StateConfigError> {
        Self::with_clock(config, MonotonicClock::new())
    }
}

/// The member bytes and count of a whole document (its size account).
fn account(members: &Map<String, Value>) -> (usize, usize) {
    let bytes = members.iter().map(|(k, v)| ops::member_len(k, v)).sum();
    (bytes, members.len())
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing in the write path panics on any input (the fuzz target checks it), so
    // a poisoned lock means a bug or a panicking allocator. Refusing every later
    // call would turn that into an outage; carry on with what is there.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn read(shard: &CachePadded<RwLock<Shard>>) -> RwLockReadGuard<'_, Shard> {
    shard.read().unwrap_or_else(PoisonError::into_inner)
}

fn write(shard: &CachePadded<RwLock<Shard>>) -> RwLockWriteGuard<'_, Shard> {
    shard.write().unwrap_or_else(PoisonError::into_inner)
}

fn to_usize(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

/// The shards a patch needs, and whether it needs them all.
pub(crate) struct Plan<'p> {
    /// Every shard touched, ascending, deduplicated (empty when `all`).
    pub(crate) shards: Vec<usize>,
    /// Top-level keys touched, decoded, deduplicated (empty when `all`).
    keys: Vec<Cow<'p, str>>,
    /// A pointer is the root: the patch needs every shard.
    pub(crate) all: bool,
    /// Shards written (for their revisions), ascending (empty when `all`).
    written: Vec<usize>,
}

impl<C: Clock + Send + Sync + 'static> StateStore<C> {
    /// An empty store on `clock`: tests pass a
    /// [`ManualClock`](crate::clock::ManualClock) (in an `Arc` to keep a handle).
    ///
    /// # Errors
    ///
    /// [`StateConfigError`] if `config` cannot work.
    pub fn with_clock(config: StateConfig, clock: C) -> Result<Self, StateConfigError> {
        config.validate()?;
        let clock = Arc::new(clock);
        let age = clock.ticks_for(config.history.age).max(1);
        let txns = TxnTable::new(&config.txn, clock.clone())?;
        let subscriptions = Subscriptions::new(config.subscriptions, clock.clone())
            .map_err(StateConfigError::Subscriptions)?;
        Ok(Self {
            mask: config.shards - 1,
            hasher: KeyHasher::default(),
            shards: (0..config.shards)
                .map(|_| CachePadded::new(RwLock::default()))
                .collect(),
            sequencer: CachePadded::new(Mutex::new(Sequencer {
                history: History::new(config.history, age),
                applied: 0,
                revision: 0,
                members_bytes: 0,
                top_keys: 0,
            })),
            revision: CachePadded::new(AtomicU64::new(0)),
            pressure: AtomicU8::new(PressureLevel::Normal as u8),
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

    /// Applies an RFC 6902 patch atomically: every operation or none. Returns the
    /// revision it produced.
    ///
    /// # Errors
    ///
    /// [`StateError::Limit`] for a patch or a result over a limit (the values of
    /// `add`, `replace` and `test` operations are checked against the value limits
    /// before anything else reads them, however deep they are nested),
    /// [`StateError::Patch`] for a failing operation (a `test` that does not match,
    /// a pointer to nothing), [`StateError::RootNotObject`]. The document, revision
    /// and history are unchanged then.
    ///
    /// # Examples
    ///
    /// ```
    /// use json_patch::Patch;
    /// use membound::adapters::state::{Revision, StateStore};
    /// use serde_json::{from_value, json};
    ///
    /// let store = StateStore::new(Default::default())?;
    /// let patch: Patch = from_value(json!([{"op": "add", "path": "/n", "value": 1}]))?;
    /// assert_eq!(store.apply(&patch)?, Revision(1));
    /// assert_eq!(store.get("/n")?, Some(json!(1)));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn apply(&self, patch: &[PatchOperation]) -> Result<Revision, StateError> {
        let result = self
            .encode(patch)
            .and_then(|text| self.commit(patch, text, &[]));
        self.counted(result)
    }

    /// Parses `patch` (a JSON array of operations, strictly per RFC 6902 unless the
    /// store is [lenient](StateConfig::lenient)) and [applies](Self::apply) it. The
    /// text's length is checked against
    /// [`Limits::patch_bytes`](super::Limits::patch_bytes) before it is parsed.
    ///
    /// An operation object with two members of the same name
    /// (`{"op":"add","path":"/s","op":"remove"}`) is refused in either mode; an
    /// object with one inside a `value` is refused in strict mode and keeps the
    /// last member in lenient mode.
    ///
    /// # Errors
    ///
    /// [`StateError::InvalidPatch`] if it does not parse,
    /// [`StateError::DuplicateMember`] for a duplicate member name; otherwise as
    /// [`apply`](Self::apply). Nothing is applied then.
    pub fn apply_json(&self, patch: &str) -> Result<Revision, StateError> {
        let result = self.parse(patch).and_then(|ops| {
            let text = self.encode(&ops)?;
            self.commit(&ops, text, &[])
        });
        self.counted(result)
    }

    fn counted<T>(&self, result: Result<T, StateError>) -> Result<T, StateError> {
        if let Err(error) = &result {
            self.counters.count(error);
        }
        result
    }

    /// A patch's compact JSON text, for the history, checked against the limits on
    /// operations, values and bytes.
    ///
    /// The values are checked before they are encoded: the encoder recurses once per
    /// level, and a value from outside may be nested deep enough to overflow the
    /// stack; [`ops::check_ops`] does not recurse and bounds the depth.
    pub(crate) fn encode(&self, patch: &[PatchOperation]) -> Result<Box<str>, StateError> {
        let limits = &self.config.limits;
        LimitExceeded::check(Limit::OpsPerPatch, limits.ops_per_patch, patch.len())?;
        ops::check_ops(patch, limits)?;
        // Operations have string keys only: serializing them cannot fail.
        let text = serde_json::to_string(patch).unwrap_or_default();
        LimitExceeded::check(Limit::PatchBytes, limits.patch_bytes, text.len())?;
        Ok(text.into_boxed_str())
    }

    /// Parses a JSON patch text under the store's limits and leniency.
    pub(crate) fn parse(&self, patch: &str) -> Result<Vec<PatchOperation>, StateError> {
        let limits = &self.config.limits;
        LimitExceeded::check(Limit::PatchBytes, limits.patch_bytes, patch.len())?;
        let value = parse::parse(patch, !self.config.lenient)?;
        let Value::Array(mut items) = value else {
            return Err(StateError::InvalidPatch("a patch is a JSON array".into()));
        };
        LimitExceeded::check(Limit::OpsPerPatch, limits.ops_per_patch, items.len())?;
        if self.config.lenient {
            for item in &mut items {
                if let Value::Object(op) = item {
                    let takes_value = matches!(
                        op.get("op").and_then(Value::as_str),
                        Some("add" | "replace" | "test")
                    );
                    if takes_value && !op.contains_key("value") {
                        op.insert("value".into(), Value::Null);
                    }
                }
            }
        }
        items
            .into_iter()
            .enumerate()
            .map(|(i, item)| {
                serde_json::from_value(item)
                    .map_err(|e| StateError::InvalidPatch(alloc::format!("operation {i}: {e}")))
            })
            .collect()
    }

    /// Which shards and keys `patch` touches.
    pub(crate) fn plan<'p>(&self, patch: &'p [PatchOperation]) -> Plan<'p> {
        let mut plan = Plan {
            shards: Vec::new(),
            keys: Vec::new(),
            all: false,
            written: Vec::new(),
        };
        let touch = |plan: &mut Plan<'p>, pointer: &'p Pointer, writes: bool| match pointer.first()
        {
            None => plan.all = true,
            Some(token) => {
                let key = ops::key_of(token);
                let shard = self.shard_of(&key);
                plan.shards.push(shard);
                if writes {
                    plan.written.push(shard);
                }
                plan.keys.push(key);
            }
        };
        for op in patch {
            match op {
                PatchOperation::Test(op) => touch(&mut plan, &op.path, false),
                PatchOperation::Copy(op) => {
                    touch(&mut plan, &op.from, false);
                    touch(&mut plan, &op.path, true);
                }
                PatchOperation::Move(op) => {
                    touch(&mut plan, &op.from, true);
                    touch(&mut plan, &op.path, true);
                }
                op => touch(&mut plan, op.path(), true),
            }
        }
        if plan.all {
            plan.shards.clear();
            plan.keys.clear();
            plan.written.clear();
        } else {
            plan.shards.sort_unstable();
            plan.shards.dedup();
            plan.written.sort_unstable();
            plan.written.dedup();
            plan.keys.sort_unstable();
            plan.keys.dedup();
        }
        plan
    }

    /// The top-level key every pointer of `patch` goes below (each has at least
    /// two tokens, the first being that key), and whether the patch writes.
    /// Allocates nothing (unless the key has escapes).
    fn single_member(patch: &[PatchOperation]) -> Option<(Cow<'_, str>, bool)> {
        let mut found: Option<Cow<'_, str>> = None;
        let mut writes = false;
        for op in patch {
            let (from, path): (Option<&Pointer>, &Pointer) = match op {
                PatchOperation::Move(op) => (Some(&op.from), &op.path),
                PatchOperation::Copy(op) => (Some(&op.from), &op.path),
                op => (None, op.path()),
            };
            writes |= !matches!(op, PatchOperation::Test(_));
            for pointer in from.into_iter().chain(Some(path)) {
                let (first, rest) = pointer.split_front()?;
                if rest.is_root() {
                    return None;
                }
                let key = ops::key_of(first);
                match &found {
                    None => found = Some(key),
                    Some(seen) if *seen != key => return None,
                    Some(_) => {}
                }
            }
        }
        found.map(|key| (key, writes))
    }

    /// Applies a checked patch: the one write path, for patches and transactions.
    /// `bases` are a transaction's (shard, revision) reads, checked under the locks.
    pub(crate) fn commit(
        &self,
        patch: &[PatchOperation],
        text: Box<str>,
        bases: &[(usize, u64)],
    ) -> Result<Revision, StateError> {
        let mut text = Some(text);
        if let Some((key, writes)) = Self::single_member(patch) {
            let shard = self.shard_of(&key);
            if bases.iter().all(|&(s, _)| s == shard) {
                let done = self.commit_member(shard, &key, writes, patch, &mut text, bases);
                if let Some(result) = done {
                    return result;
                }
            }
        }
        self.commit_many(patch, &mut text, bases)
    }

    /// The common case: a patch below one existing top-level member, applied in
    /// place in its value. `None` if the member does not exist (the general path
    /// then reports the failure).
    fn commit_member(
        &self,
        shard: usize,
        key: &str,
        writes: bool,
        patch: &[PatchOperation],
        text: &mut Option<Box<str>>,
        bases: &[(usize, u64)],
    ) -> Option<Result<Revision, StateError>> {
        let mut guard = write(&self.shards[shard]);
        let Shard { members, revision } = &mut *guard;
        if let Err(conflict) = check_bases(bases, |_| *revision) {
            return Some(Err(conflict));
        }
        let member = members.get_mut(key)?;
        let mut run = Run::nested(&self.config.limits);
        Some(run.apply_all(member, patch).and_then(|()| {
            self.sequence(&mut run, member, false, patch, text, |new| {
                if writes {
                    *revision = new;
                }
            })
        }))
    }

    /// A patch across shards (or on the root): the touched members are moved into
    /// a working document, patched there and moved back.
    fn commit_many(
        &self,
        patch: &[PatchOperation],
        text: &mut Option<Box<str>>,
        bases: &[(usize, u64)],
    ) -> Result<Revision, StateError> {
        let plan = self.plan(patch);
        // Lock, in ascending shard order: the touched shards and those a
        // transaction read.
        let indices: Vec<usize> = if plan.all {
            (0..self.shards.len()).collect()
        } else {
            let mut indices = plan.shards.clone();
            indices.extend(bases.iter().map(|&(shard, _)| shard));
            indices.sort_unstable();
            indices.dedup();
            indices
        };
        let mut guards: Vec<RwLockWriteGuard<'_, Shard>> =
            indices.iter().map(|&i| write(&self.shards[i])).collect();
        let slot = |shard: usize| indices.binary_search(&shard).unwrap_or(0);
        check_bases(bases, |shard| guards[slot(shard)].revision)?;

        let mut members = Map::new();
        if plan.all {
            for guard in &mut guards {
                members.extend(guard.members.drain());
            }
        } else {
            for key in &plan.keys {
                let shard = &mut guards[slot(self.shard_of(key))];
                if let Some((key, value)) = shard.members.remove_entry(key.as_ref()) {
                    members.insert(key, value);
                }
            }
        }
        let mut doc = Value::Object(members);
        let mut run = Run::new(&self.config.limits);
        let result = run.apply_all(&mut doc, patch).and_then(|()| {
            self.sequence(&mut run, &mut doc, plan.all, patch, text, |revision| {
                if plan.all {
                    guards.iter_mut().for_each(|g| g.revision = revision);
                } else {
                    for &shard in &plan.written {
                        guards[slot(shard)].revision = revision;
                    }
                }
            })
        });
        if let Value::Object(members) = doc {
            for (key, value) in members {
                guards[slot(self.shard_of(&key))].members.insert(key, value);
            }
        }
        result
    }

    /// The sequencer step of a commit whose operations all applied to `doc`:
    /// reserves the document size (undoing the run if over a limit), takes the next
    /// revision, hands it to `set_revisions` (for the shards written), records the
    /// history and announces the change. The caller holds the shard locks.
    fn sequence(
        &self,
        run: &mut Run<'_>,
        doc: &mut Value,
        all: bool,
        patch: &[PatchOperation],
        text: &mut Option<Box<str>>,
        set_revisions: impl FnOnce(u64),
    ) -> Result<Revision, StateError> {
        let now = self.clock.now();
        let mut sequencer = lock(&self.sequencer);
        if let Err(error) = sequencer.reserve(run, doc, all, &self.config.limits) {
            drop(sequencer);
            run.rollback(doc);
            return Err(error);
        }
        sequencer.revision += 1;
        let revision = Revision(sequencer.revision);
        set_revisions(revision.0);
        self.after_commit(revision, patch);
        let entry = Entry {
            revision,
            timestamp: now,
            patch: text.take().unwrap_or_default(),
        };
        let trimmed = sequencer.history.push(entry, now);
        sequencer.applied += 1;
        self.revision.store(revision.0, Ordering::Release);
        drop(sequencer);
        // Freed outside the lock.
        drop(trimmed);
        Ok(revision)
    }

    /// The single place a committed patch is announced.
    ///
    /// Called once per committed patch with its revision and operations, in strictly
    /// increasing revision order with no gaps: under the sequencer lock, while the
    /// writer still holds its shard locks. Must not block and must not call back
    /// into the store's write path.
    ///
    /// Subscribers are served here: `publish` never waits on a subscriber (a full
    /// queue drops its oldest change, which its receiver learns as lag), and costs
    /// `O(subscriptions × operations)` pattern checks under the sequencer lock.
    fn after_commit(&self, revision: Revision, ops: &[PatchOperation]) {
        self.subscriptions.publish(revision, ops);
    }

    /// The value at `pointer` (RFC 6901; `""` is the whole document), or `None`.
    ///
    /// Reads one shard: see the type's consistency notes.
    ///
    /// # Errors
    ///
    /// [`StateError::InvalidPointer`] if `pointer` does not parse.
    pub fn get(&self, pointer: &str) -> Result<Option<Value>, StateError> {
        let pointer =
            Pointer::parse(pointer).map_err(|e| StateError::InvalidPointer(e.to_string()))?;
        Ok(self.read_at(pointer, |value, _| value.cloned()))
    }

    /// Runs `f` on the value at `pointer` and the revision of the shard it lives in
    /// (the store's revision for the root).
    pub(crate) fn read_at<R>(
        &self,
        pointer: &Pointer,
        f: impl FnOnce(Option<&Value>, Option<(usize, u64)>) -> R,
    ) -> R {
        let Some((first, rest)) = pointer.split_front() else {
            let (_, document) = self.snapshot();
            return f(Some(&document), None);
        };
        let key = first.decoded();
        let index = self.shard_of(&key);
        let shard = read(&self.shards[index]);
        let value = shard
            .members
            .get(key.as_ref())
            .and_then(|value| ops::resolve(value, rest));
        f(value, Some((index, shard.revision)))
    }

    /// The shard's revision now.
    pub(crate) fn shard_revision(&self, shard: usize) -> u64 {
        read(&self.shards[shard]).revision
    }

    /// The number of shards.
    pub(crate) fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// The whole document and the revision it is at: exactly the patches up to that
    /// revision (every shard is read-locked while it is copied).
    pub fn snapshot(&self) -> (Revision, Value) {
        let guards: Vec<_> = self.shards.iter().map(read).collect();
        let revision = self.revision();
        let members: Map<String, Value> = guards
            .iter()
            .flat_map(|g| g.members.iter().map(|(k, v)| (k.clone(), v.clone())))
            .collect();
        (revision, Value::Object(members))
    }

    /// The document with its revision, to persist; see [`import`](Self::import).
    pub fn export(&self) -> StateSnapshot {
        let (revision, document) = self.snapshot();
        StateSnapshot { revision, document }
    }

    /// Replaces the document with `snapshot`'s and continues from its revision. The
    /// history restarts there: [`changes_since`](Self::changes_since) an earlier
    /// revision answers [`HistoryError::Compacted`]. Open transactions will
    /// conflict.
    ///
    /// # Errors
    ///
    /// [`StateError::InvalidSnapshot`] if the document is not an object,
    /// [`StateError::Limit`] if it breaks a limit, [`StateError::RevisionBehind`] if
    /// its revision is older than the store's (revisions never go back). Nothing
    /// changes then.
    ///
    /// # Examples
    ///
    /// ```
    /// use membound::adapters::state::{Revision, StateStore};
    /// use serde_json::json;
    ///
    /// let old = StateStore::new(Default::default())?;
    /// old.apply_json(r#"[{"op":"add","path":"/a","value":1}]"#)?;
    /// let saved = old.export();
    ///
    /// let new = StateStore::new(Default::default())?;
    /// new.import(saved)?;
    /// assert_eq!(new.snapshot(), (Revision(1), json!({"a": 1})));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn import(&self, snapshot: StateSnapshot) -> Result<(), StateError> {
        let result = self.import_checked(snapshot);
        self.counted(result)
    }

    fn import_checked(&self, snapshot: StateSnapshot) -> Result<(), StateError> {
        let limits = &self.config.limits;
        // A refused document is dropped without recursion: it may be nested
        // arbitrarily deep (see `ops::discard`).
        let document = snapshot.document;
        if !document.is_object() {
            ops::discard(document);
            return Err(StateError::InvalidSnapshot(
                "the document is not an object".into(),
            ));
        }
        if let Err(exceeded) = ops::check_value(&document, 1, limits, None) {
            ops::discard(document);
            return Err(exceeded.into());
        }
        let Value::Object(members) = document else {
            unreachable!("checked above")
        };
        let (bytes, keys) = account(&members);
        LimitExceeded::check(Limit::DocumentBytes, limits.document_bytes, bytes + 1)?;
        let mut guards: Vec<_> = self.shards.iter().map(write).collect();
        let current = self.revision();
        let revision = snapshot.revision;
        if revision < current {
            return Err(StateError::RevisionBehind {
                current,
                imported: revision,
            });
        }
        for guard in &mut guards {
            guard.members.clear();
            guard.revision = revision.0;
        }
        for (key, value) in members {
            guards[self.shard_of(&key)].members.insert(key, value);
        }
        let mut sequencer = lock(&self.sequencer);
        sequencer.members_bytes = bytes as u64;
        sequencer.top_keys = keys as u64;
        sequencer.revision = revision.0;
        sequencer.history.reset(revision.0);
        // The history restarts at `revision`: subscribers learn of the break as lag,
        // and their catch-up answers `Compacted`, so they take a snapshot.
        self.subscriptions.discontinuity();
        self.revision.store(revision.0, Ordering::Release);
        Ok(())
    }

    /// The patches committed after `revision`, oldest first.
    ///
    /// # Errors
    ///
    /// [`HistoryError::Compacted`] when some of them were trimmed away (send a
    /// snapshot instead); [`HistoryError::Future`] for a revision the store has not
    /// reached.
    pub fn changes_since(&self, revision: Revision) -> Result<Vec<Change>, HistoryError> {
        let mut sequencer = lock(&self.sequencer);
        sequencer.history.trim(self.clock.now());
        let current = self.revision.load(Ordering::Relaxed);
        Ok(sequencer
            .history
            .entries_since(revision, current)?
            .map(Entry::change)
            .collect())
    }

    /// Runs `f` with the history after `from`, under the sequencer lock: no commit
    /// is announced (see `after_commit`) while `f` runs, so a subscriber registered
    /// inside `f` sees the backlog and then every later change, without a gap or a
    /// repeat.
    pub(crate) fn with_backlog<R>(
        &self,
        from: Revision,
        f: impl FnOnce(Result<Backlog<'_>, HistoryError>) -> R,
    ) -> R {
        let mut sequencer = lock(&self.sequencer);
        sequencer.history.trim(self.clock.now());
        let current = self.revision.load(Ordering::Relaxed);
        f(sequencer.history.since(from, current))
    }

    /// Reacts to a memory pressure level: the history's bounds are cut to 75, 50 or
    /// 25 % at `Low`, `High` and `Critical` (and the history trimmed now), and
    /// restored at `Normal`; under `Critical`, [`begin`](Self::begin) is refused.
    ///
    /// # Examples
    ///
    /// ```
    /// use membound::adapters::state::{HistoryLimits, StateConfig, StateStore};
    /// use membound::pressure::PressureLevel;
    ///
    /// let config = StateConfig {
    ///     history: HistoryLimits { entries: 100, ..Default::default() },
    ///     ..Default::default()
    /// };
    /// let store = StateStore::new(config)?;
    /// for i in 0..100 {
    ///     store.apply_json(&format!(r#"[{{"op":"add","path":"/n","value":{i}}}]"#))?;
    /// }
    /// store.on_pressure(PressureLevel::High);
    /// assert_eq!(store.metrics().history_entries, 50);
    /// assert!(store.begin().is_ok());
    /// store.on_pressure(PressureLevel::Critical);
    /// assert_eq!(store.metrics().history_entries, 25);
    /// assert!(store.begin().is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn on_pressure(&self, level: PressureLevel) {
        let mut sequencer = lock(&self.sequencer);
        self.pressure.store(level as u8, Ordering::Relaxed);
        sequencer.history.set_level(level, self.clock.now());
    }

    /// The pressure level last reported.
    pub fn pressure(&self) -> PressureLevel {
        let index = usize::from(self.pressure.load(Ordering::Relaxed));
        PressureLevel::from_index(index).unwrap_or_default()
    }

    /// Periodic upkeep for idle stores: trims the history by age and removes expired
    /// transactions (both also happen as the store is used).
    pub fn sweep(&self) {
        lock(&self.sequencer).history.trim(self.clock.now());
        self.txns.sweep();
        self.subscriptions.sweep();
    }

    /// Subscribes to the changes at `pattern`: a segment-aware JSON Pointer pattern
    /// (`/user` matches `/user` and `/user/name`, not `/username`; `*` matches one
    /// segment; `""` matches everything). See [`subscription`](super::subscription)
    /// for what matches, lag and expiry.
    ///
    /// With [`SubscribeOptions::from`] set to a revision, the changes after it come
    /// first (from the history), then every later one, without a gap or a repeat;
    /// without it, the subscription starts at the current revision.
    ///
    /// # Errors
    ///
    /// [`SubscribeError::History`] when `from` was compacted away (take a
    /// [`snapshot`](Self::snapshot) and subscribe from its revision) or is in the
    /// future; [`SubscribeError::Limit`] at the cap; the pattern and option errors
    /// of [`SubscribeError`].
    ///
    /// # Examples
    ///
    /// ```
    /// use membound::adapters::state::subscription::{RecvError, SubscribeOptions};
    /// use membound::adapters::state::{Revision, StateStore};
    ///
    /// let store = StateStore::new(Default::default())?;
    /// store.apply_json(r#"[{"op":"add","path":"/user","value":{"name":"Ada"}}]"#)?;
    /// let mut user = store.subscribe("/user", SubscribeOptions::new())?;
    /// let mut all = store.subscribe("", SubscribeOptions::new().with_from(Revision(0)))?;
    ///
    /// store.apply_json(r#"[{"op":"replace","path":"/user/name","value":"Grace"},
    ///                      {"op":"add","path":"/username","value":"g"}]"#)?;
    /// let change = user.try_recv()?.expect("a change at /user");
    /// assert_eq!(change.revision, Revision(2));
    /// assert_eq!(change.ops.len(), 1); // `/username` is another member
    ///
    /// // `all` started at revision 0: it gets revision 1 from the history, then 2.
    /// assert_eq!(all.recv()?.revision, Revision(1));
    /// assert_eq!(all.recv()?.revision, Revision(2));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn subscribe(
        &self,
        pattern: &str,
        options: SubscribeOptions,
    ) -> Result<Subscription, SubscribeError> {
        let Some(from) = options.from else {
            return self.subscriptions.subscribe(pattern, options, []);
        };
        // Under the sequencer lock: no commit is announced between reading the
        // backlog and registering, so nothing is missed or repeated.
        self.with_backlog(from, |backlog| {
            let backlog: Vec<(Revision, Vec<PatchOperation>)> =
                backlog.map_err(SubscribeError::History)?.collect();
            self.subscriptions.subscribe(
                pattern,
                options,
                backlog
                    .iter()
                    .map(|(revision, ops)| (*revision, ops.as_slice())),
            )
        })
    }

    /// As [`subscribe`](Self::subscribe), calling `callback` with each change (or
    /// the receive error: a lag report, then the end) on a thread of the
    /// subscription's own: never the writer's, never under a store lock, so the
    /// callback may use the store. A panic in it is caught, counted and ends that
    /// subscription only.
    ///
    /// # Errors
    ///
    /// As [`subscribe`](Self::subscribe), and [`SubscribeError::Thread`] when the
    /// thread cannot be started.
    pub fn subscribe_with<F>(
        &self,
        pattern: &str,
        options: SubscribeOptions,
        callback: F,
    ) -> Result<CallbackSubscription, SubscribeError>
    where
        F: FnMut(Result<SubscribedChange, RecvError>) + Send + 'static,
    {
        // The thread starts outside the sequencer lock.
        CallbackSubscription::spawn(self.subscribe(pattern, options)?, callback)
    }

    /// A snapshot of the subscription counters.
    pub fn subscription_metrics(&self) -> SubscriptionMetrics {
        self.subscriptions.metrics()
    }

    /// The subscription queues' capacity as one [`SoftCapacity`], to register with
    /// the memory manager: its maximum is the configured queue capacity, and setting
    /// it to `c` sets every queue to `c / max` of its own capacity (at least 1);
    /// what that drops, receivers learn as lag.
    pub fn subscription_capacity(&self) -> Arc<impl SoftCapacity + Send + Sync + 'static> {
        self.subscriptions.queue_capacity()
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
            let sequencer = lock(&self.sequencer);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backlog_is_the_history_in_order() {
        let store = StateStore::new(StateConfig::default()).unwrap();
        for i in 0..3 {
            let patch = alloc::format!(r#"[{{"op":"add","path":"/n","value":{i}}}]"#);
            store.apply_json(&patch).unwrap();
        }
        let seen: Vec<(u64, usize)> = store.with_backlog(Revision(1), |backlog| {
            backlog
                .unwrap()
                .map(|(revision, ops)| (revision.0, ops.len()))
                .collect()
        });
        assert_eq!(seen, [(2, 1), (3, 1)]);
        let future = store.with_backlog(Revision(4), |backlog| backlog.err());
        assert!(matches!(future, Some(HistoryError::Future { .. })));
    }
}
