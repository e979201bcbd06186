//! Reads: a value, the whole document, and the document with its revision to
//! persist ([`StateStore::export`]) and load ([`StateStore::import`]).

use alloc::string::{String, ToString};
use alloc::vec::Vec;

use json_patch::jsonptr::Pointer;
use serde_json::{Map, Value};

use super::{account, lock, read, write, StateSnapshot, StateStore};
use crate::adapters::state::error::{Limit, LimitExceeded, StateError};
use crate::adapters::state::{ops, Revision};
use crate::clock::Clock;
use crate::sync::Ordering;

impl<C: Clock + Send + Sync + 'static> StateStore<C> {
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
    /// revision answers [`HistoryError::Compacted`](crate::adapters::state::HistoryError::Compacted). Open transactions will
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
        let mut sequencer = lock(&self.retention.sequencer);
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
}
