//! Optimistic transactions: reads record their shard's revision, writes are
//! buffered, the commit applies them as one patch if no shard they depend on moved.

use alloc::string::ToString;
use alloc::sync::Arc;
use alloc::vec::Vec;

use json_patch::jsonptr::Pointer;
use json_patch::PatchOperation;
use serde_json::Value;

use super::config::TxnConfig;
use super::error::{StateConfigError, StateError};
use super::ops;
use super::store::StateStore;
use super::Revision;
use crate::clock::{Clock, MonotonicClock};
use crate::sync::{AtomicU64, Ordering};
use crate::table::{InsertError, TableConfig, TtlTable};

/// Slots a sweep looks at when `begin` finds the table full.
const SWEEP_BUDGET: usize = 1024;

/// The open transactions: a TTL table of ids, so abandoned ones expire by
/// inactivity and their slot comes back. Capped at
/// [`TxnConfig::max_open`].
pub(crate) struct TxnTable<C: Clock> {
    table: TtlTable<u64, (), Arc<C>>,
    next: AtomicU64,
    max_open: usize,
}

impl<C: Clock> TxnTable<C> {
    pub(crate) fn new(config: &TxnConfig, clock: Arc<C>) -> Result<Self, StateConfigError> {
        let table = TableConfig::new(config.max_open, config.ttl)
            .with_policy(crate::OverflowPolicy::Reject);
        Ok(Self {
            table: TtlTable::with_config(table, clock).map_err(|_| StateConfigError::Txn)?,
            next: AtomicU64::new(0),
            max_open: config.max_open,
        })
    }

    /// Registers a new transaction and returns its id.
    pub(crate) fn open(&self) -> Result<u64, StateError> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        match self.table.insert(id, ()) {
            Ok(_) => return Ok(id),
            Err(InsertError::Full { .. }) => {}
        }
        // Full: reclaim the expired ones anywhere in the table, then try once more.
        let now = self.table.clock().now();
        self.table.sweep(now, SWEEP_BUDGET.max(self.max_open));
        self.table
            .insert(id, ())
            .map(|_| id)
            .map_err(|_| StateError::TooManyTxns { max: self.max_open })
    }

    /// Records activity; false if the transaction expired.
    pub(crate) fn touch(&self, id: u64) -> bool {
        self.table.touch(&id)
    }

    /// Unregisters; false if the transaction had expired.
    pub(crate) fn close(&self, id: u64) -> bool {
        self.table.remove(&id).is_some()
    }

    pub(crate) fn sweep(&self) {
        let now = self.table.clock().now();
        self.table.sweep(now, self.table.max_capacity().max(1) * 2);
    }

    pub(crate) fn len(&self) -> usize {
        self.table.len()
    }

    pub(crate) fn expired(&self) -> u64 {
        self.table.metrics().expired
    }
}

/// An optimistic transaction on a [`StateStore`] (etcd-style).
///
/// Reads ([`get`](Self::get)) record the revision of the shard they read; writes
/// ([`push`](Self::push), [`push_json`](Self::push_json)) are checked against the
/// value limits and buffered, recording the revision of every shard they touch.
/// [`commit`](Self::commit) applies the buffered operations as one atomic patch, and
/// fails with [`StateError::Conflict`] if a patch committed to any of those shards
/// since. Shards, not keys, are compared: a write to another key of the same shard
/// also conflicts. Reads see the committed state, not the buffered operations.
///
/// [`rollback`](Self::rollback) or dropping the transaction discards it. A
/// transaction idle longer than [`TxnConfig::ttl`] expires: its next call fails with
/// [`StateError::TxnExpired`], and its slot among
/// [`TxnConfig::max_open`] is freed.
///
/// # Examples
///
/// ```
/// use membound::adapters::state::{StateError, StateStore};
/// use serde_json::json;
///
/// let store = StateStore::new(Default::default())?;
/// store.apply_json(r#"[{"op":"add","path":"/count","value":1}]"#)?;
///
/// let mut txn = store.begin()?;
/// let count = txn.get("/count")?.and_then(|v| v.as_i64()).unwrap_or(0);
/// txn.push_json(&format!(r#"[{{"op":"replace","path":"/count","value":{}}}]"#, count + 1))?;
/// txn.commit()?;
/// assert_eq!(store.get("/count")?, Some(json!(2)));
///
/// // A concurrent write to what a transaction read makes it conflict.
/// let mut txn = store.begin()?;
/// txn.get("/count")?;
/// txn.push_json(r#"[{"op":"replace","path":"/count","value":10}]"#)?;
/// store.apply_json(r#"[{"op":"replace","path":"/count","value":3}]"#)?;
/// assert!(matches!(txn.commit(), Err(StateError::Conflict { .. })));
/// assert_eq!(store.get("/count")?, Some(json!(3)));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Txn<'s, C: Clock + Send + Sync + 'static = MonotonicClock> {
    store: &'s StateStore<C>,
    id: u64,
    /// (shard, revision when first read or written), one per shard.
    bases: Vec<(usize, u64)>,
    ops: Vec<PatchOperation>,
    /// Registered in the store's table: not yet committed, rolled back or expired.
    open: bool,
}

impl<C: Clock + Send + Sync + 'static> core::fmt::Debug for Txn<'_, C> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Txn")
            .field("id", &self.id)
            .field("bases", &self.bases)
            .field("ops", &self.ops.len())
            .finish_non_exhaustive()
    }
}

impl<'s, C: Clock + Send + Sync + 'static> Txn<'s, C> {
    pub(crate) fn new(store: &'s StateStore<C>, id: u64) -> Self {
        Self {
            store,
            id,
            bases: Vec::new(),
            ops: Vec::new(),
            open: true,
        }
    }

    /// Fails if the transaction expired; otherwise records activity.
    fn alive(&mut self) -> Result<(), StateError> {
        if self.open && self.store.txns.touch(self.id) {
            return Ok(());
        }
        self.open = false;
        Err(StateError::TxnExpired)
    }

    fn record(&mut self, shard: usize, revision: u64) {
        if !self.bases.iter().any(|&(s, _)| s == shard) {
            self.bases.push((shard, revision));
        }
    }

    /// Records every shard's current revision (for reads and writes of the root).
    /// Taken before the read, so a write in between makes the commit conflict
    /// rather than go unnoticed.
    fn record_all(&mut self) {
        for shard in 0..self.store.shard_count() {
            let revision = self.store.shard_revision(shard);
            self.record(shard, revision);
        }
    }

    /// The committed value at `pointer`, recording its shard's revision as a base.
    ///
    /// # Errors
    ///
    /// [`StateError::InvalidPointer`], [`StateError::TxnExpired`].
    pub fn get(&mut self, pointer: &str) -> Result<Option<Value>, StateError> {
        self.alive()?;
        let pointer =
            Pointer::parse(pointer).map_err(|e| StateError::InvalidPointer(e.to_string()))?;
        if pointer.is_root() {
            self.record_all();
        }
        let (value, base) = self.store.read_at(pointer, |v, base| (v.cloned(), base));
        if let Some((shard, revision)) = base {
            self.record(shard, revision);
        }
        Ok(value)
    }

    /// Buffers one operation after checking the value it stores against the
    /// store's limits; records the revisions of the shards it touches.
    ///
    /// # Errors
    ///
    /// [`StateError::TxnTooLarge`] beyond [`TxnConfig::max_ops`],
    /// [`StateError::Limit`], [`StateError::TxnExpired`]. Nothing is buffered then.
    pub fn push(&mut self, op: PatchOperation) -> Result<(), StateError> {
        let result = self.push_all(alloc::vec![op]);
        if let Err(error) = &result {
            self.store.count(error);
        }
        result
    }

    /// Parses a JSON patch as [`StateStore::apply_json`] does and buffers its
    /// operations: all of them or, on an error, none.
    ///
    /// # Errors
    ///
    /// As [`push`](Self::push), and [`StateError::InvalidPatch`].
    pub fn push_json(&mut self, patch: &str) -> Result<(), StateError> {
        let ops = self.store.parse(patch);
        let result = ops.and_then(|ops| self.push_all(ops));
        if let Err(error) = &result {
            self.store.count(error);
        }
        result
    }

    fn push_all(&mut self, ops: Vec<PatchOperation>) -> Result<(), StateError> {
        let result = self.check(&ops);
        match result {
            Ok(()) => self.ops.extend(ops),
            // Refused operations may carry values nested arbitrarily deep: dropped
            // without recursion (see `ops::discard`).
            Err(_) => ops::discard_ops(ops),
        }
        result
    }

    /// Checks `ops` for [`push_all`](Self::push_all) and records their shards.
    fn check(&mut self, ops: &[PatchOperation]) -> Result<(), StateError> {
        self.alive()?;
        let max = self.store.config().txn.max_ops;
        if self.ops.len() + ops.len() > max {
            return Err(StateError::TxnTooLarge { max });
        }
        let limits = &self.store.config().limits;
        for (i, op) in ops.iter().enumerate() {
            ops::check_op(op, self.ops.len() + i, limits)?;
        }
        let plan = self.store.plan(ops);
        if plan.all {
            self.record_all();
        } else {
            for &shard in &plan.shards {
                let revision = self.store.shard_revision(shard);
                self.record(shard, revision);
            }
        }
        Ok(())
    }

    /// The operations buffered so far.
    pub fn ops(&self) -> &[PatchOperation] {
        &self.ops
    }

    /// Applies the buffered operations as one atomic patch (limits as for
    /// [`StateStore::apply`]) and returns its revision. An empty transaction
    /// commits an empty patch: it checks its reads and takes a revision.
    ///
    /// # Errors
    ///
    /// [`StateError::Conflict`] if a shard it read or writes changed since;
    /// [`StateError::TxnExpired`]; anything [`StateStore::apply`] reports. The
    /// transaction is over either way.
    pub fn commit(mut self) -> Result<Revision, StateError> {
        let store = self.store;
        let result = if self.open && store.txns.close(self.id) {
            self.open = false;
            store
                .encode(&self.ops)
                .and_then(|text| store.commit(&self.ops, text, &self.bases))
        } else {
            self.open = false;
            Err(StateError::TxnExpired)
        };
        match &result {
            Ok(_) => store.count_commit(),
            Err(error) => store.count(error),
        }
        result
    }

    /// Discards the transaction (as dropping it does).
    pub fn rollback(self) {}
}

impl<C: Clock + Send + Sync + 'static> Drop for Txn<'_, C> {
    fn drop(&mut self) {
        if self.open {
            self.store.txns.close(self.id);
        }
    }
}
