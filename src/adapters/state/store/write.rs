//! The one write path, for patches and transactions: parse and check a patch, plan
//! the shards it needs, apply it under their locks, and number and record it under
//! the sequencer lock.

use alloc::borrow::Cow;
use alloc::boxed::Box;
use alloc::vec::Vec;
use std::sync::RwLockWriteGuard;

use json_patch::jsonptr::Pointer;
use json_patch::PatchOperation;
use serde_json::{Map, Value};

use super::{account, lock, to_usize, write, Sequencer, Shard, StateStore};
use crate::adapters::state::error::{Limit, LimitExceeded, StateError};
use crate::adapters::state::history::Entry;
use crate::adapters::state::ops::{self, Run};
use crate::adapters::state::{parse, Limits, Revision};
use crate::clock::Clock;
use crate::sync::Ordering;

impl Sequencer {
    /// Applies a successful run's changes to the size account, or refuses them
    /// over a limit. `doc` is the whole document when `all`.
    fn reserve(
        &mut self,
        run: &Run<'_>,
        doc: &Value,
        all: bool,
        limits: &Limits,
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
    /// store is [lenient](crate::adapters::state::StateConfig::lenient)) and [applies](Self::apply) it. The
    /// text's length is checked against
    /// [`Limits::patch_bytes`](crate::adapters::state::Limits::patch_bytes) before it is parsed.
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
        let mut sequencer = lock(&self.retention.sequencer);
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
}
