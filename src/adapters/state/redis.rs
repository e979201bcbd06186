//! One state document on many nodes, ordered by Redis (feature `redis`):
//! [`RedisState`].

use core::time::Duration;
// `tokio::select!` names `panic!`; the std prelude and core both have one.
#[allow(unused_imports)]
use core::panic;
use std::collections::BTreeMap;
use std::fmt;
use std::prelude::rust_2021::*;
use std::sync::{Arc, Mutex, PoisonError};

use json_patch::PatchOperation;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use serde_json::Value;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{sleep, timeout, Instant};

use super::{Revision, StateError, StateSnapshot, StateStore};
use crate::clock::Clock;

/// The write script. KEYS: the revision counter, the patch stream, the snapshot
/// hash. ARGV: the revision the patch was made against, the patch, the stream's
/// length. It appends the patch as the next revision only if `base` is still
/// current; returns `{1, revision}`, or `{0, current}` for a conflict.
///
/// The stream keeps its last `length` patches, and never trims what follows the
/// stored snapshot (a late node needs it), unless the snapshot lags by more than
/// four lengths: the stream's bound.
const WRITE: &str = r"
local current = tonumber(redis.call('get', KEYS[1]) or '0')
if current ~= tonumber(ARGV[1]) then
  return {0, current}
end
local revision = current + 1
local length = tonumber(ARGV[3])
redis.call('set', KEYS[1], revision)
redis.call('xadd', KEYS[2], string.format('%d-0', revision), 'p', ARGV[2])
local keep = revision - length + 1
local snapshot = tonumber(redis.call('hget', KEYS[3], 'r') or '0')
if snapshot + 1 < keep and revision - snapshot <= 4 * length then
  keep = snapshot + 1
end
if keep > 1 then
  redis.call('xtrim', KEYS[2], 'MINID', string.format('%d-0', keep))
end
return {1, revision}
";

/// The snapshot script: keeps the newer of the stored snapshot and this one.
/// KEYS: the snapshot hash. ARGV: the revision, the document.
const SNAPSHOT: &str = r"
local held = tonumber(redis.call('hget', KEYS[1], 'r') or '-1')
if held < tonumber(ARGV[1]) then
  redis.call('hset', KEYS[1], 'r', ARGV[1], 'd', ARGV[2])
end
return 0
";

/// The reseed script, for a Redis that lost the document: KEYS: the revision
/// counter, the snapshot hash. ARGV: a node's revision and document. Where Redis is
/// behind, it takes them.
const RESEED: &str = r"
if tonumber(redis.call('get', KEYS[1]) or '0') < tonumber(ARGV[1]) then
  redis.call('set', KEYS[1], ARGV[1])
  redis.call('hset', KEYS[2], 'r', ARGV[1], 'd', ARGV[2])
end
return 0
";

/// How a [`RedisState`] reaches Redis, and what it keeps there.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct RedisStateConfig {
    /// `redis://host:port/db`.
    pub url: String,
    /// The document's name: its keys are `<prefix>:state:<name>:{rev,log,snap}`.
    pub name: String,
    /// Key prefix.
    pub prefix: String,
    /// Patches the stream keeps: the last `stream_len`, and all those after the
    /// stored snapshot while it lags by less than four times as many.
    pub stream_len: usize,
    /// A node stores a snapshot of the document every this many revisions (at most
    /// half of `stream_len`, so the stream always reaches back to a snapshot).
    pub snapshot_every: u64,
    /// How long one Redis command may take.
    pub command_timeout: Duration,
    /// How long [`RedisState::apply`] waits for the local store to show its
    /// revision.
    pub apply_timeout: Duration,
}

impl RedisStateConfig {
    /// Defaults for the document `name` on the Redis at `url`: 1,024 patches kept,
    /// a snapshot every 256 revisions.
    pub fn new(url: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            name: name.into(),
            prefix: "membound".into(),
            stream_len: 1024,
            snapshot_every: 256,
            command_timeout: Duration::from_secs(2),
            apply_timeout: Duration::from_secs(5),
        }
    }
}

/// Why a [`RedisState`] call failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum RedisStateError {
    /// The store's own error: [`StateError::Conflict`] when the revision the patch
    /// was made against is no longer current (`shard` is 0: the document is one
    /// unit across nodes), or the patch's own failure. A patch that fails is still
    /// a revision (it changes nothing, on every node alike).
    State(StateError),
    /// Redis could not be reached, or failed the command.
    Unavailable(String),
    /// The write was ordered, but the local store did not show it within
    /// [`RedisStateConfig::apply_timeout`].
    Timeout,
    /// A configuration that cannot work.
    Config(&'static str),
}

impl fmt::Display for RedisStateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::State(e) => write!(f, "{e}"),
            Self::Unavailable(why) => write!(f, "redis unavailable: {why}"),
            Self::Timeout => f.write_str("the local store did not catch up in time"),
            Self::Config(why) => write!(f, "redis state config: {why}"),
        }
    }
}

impl core::error::Error for RedisStateError {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            Self::State(e) => Some(e),
            _ => None,
        }
    }
}

impl From<StateError> for RedisStateError {
    fn from(e: StateError) -> Self {
        Self::State(e)
    }
}

fn unavailable(e: impl fmt::Display) -> RedisStateError {
    RedisStateError::Unavailable(e.to_string())
}

struct Inner<C: Clock + Send + Sync + 'static> {
    config: RedisStateConfig,
    store: Arc<StateStore<C>>,
    conn: ConnectionManager,
    write: redis::Script,
    snapshot: redis::Script,
    reseed: redis::Script,
    keys: (String, String, String),
    /// The revision the local store has applied up to, for writers waiting to
    /// read their own write.
    applied: watch::Sender<u64>,
    /// Patches that failed when applied (kept a while, for their writers).
    failures: Mutex<BTreeMap<u64, StateError>>,
}

/// One JSON document, the same revisions on every node: Redis orders the writes,
/// every node applies them to its own [`StateStore`] in order.
///
/// # Design
///
/// - **Writes.** [`apply`](Self::apply) sends the patch with the revision it was
///   made against to a Lua script, which appends it to the document's stream as the
///   next revision only if that revision is still current; otherwise the caller
///   gets [`StateError::Conflict`], as a transaction does. So two nodes writing
///   against the same revision give one winner and one conflict.
/// - **Every node tails the stream** and applies the patches in order to its
///   local store, whose revisions are therefore Redis's. A patch that fails (a
///   `test` that does not match) is applied as an empty patch, on every node
///   alike, so the revisions stay the same everywhere; its writer gets the error.
/// - **Read your writes.** `apply` returns once the local store shows the new
///   revision.
/// - **Snapshots.** A node stores the document in Redis every
///   [`snapshot_every`](RedisStateConfig::snapshot_every) revisions (the newer one
///   wins). A node that starts late, or whose lag passes the stream's length,
///   loads the snapshot and continues from there.
/// - Write only through this handle: a patch applied to the local store directly
///   would put it ahead of the others.
///
/// # Examples
///
/// ```no_run
/// use std::sync::Arc;
/// use membound::adapters::state::{RedisState, RedisStateConfig, StateStore};
/// use serde_json::{from_value, json};
///
/// # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
/// let store = Arc::new(StateStore::new(Default::default())?);
/// let shared = RedisState::open(store.clone(), RedisStateConfig::new("redis://127.0.0.1/", "doc")).await?;
/// let patch: json_patch::Patch = from_value(json!([{"op": "add", "path": "/n", "value": 1}]))?;
/// let revision = shared.apply(&patch).await?;
/// assert_eq!(store.revision(), revision); // this node reads its own write
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
pub struct RedisState<C: Clock + Send + Sync + 'static = crate::clock::MonotonicClock> {
    inner: Arc<Inner<C>>,
    tail: JoinHandle<()>,
}

impl<C: Clock + Send + Sync + 'static> fmt::Debug for RedisState<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisState")
            .field("name", &self.inner.config.name)
            .field("revision", &self.inner.store.revision())
            .finish_non_exhaustive()
    }
}

impl<C: Clock + Send + Sync + 'static> Drop for RedisState<C> {
    fn drop(&mut self) {
        self.tail.abort();
    }
}

impl<C: Clock + Send + Sync + 'static> RedisState<C> {
    /// Joins the document on Redis with `store` (fresh, at revision 0): loads the
    /// stored snapshot, if any, applies the patches after it, and follows the
    /// stream from then on. Must be called inside a tokio runtime.
    ///
    /// # Errors
    ///
    /// [`RedisStateError::Config`], [`RedisStateError::Unavailable`] when Redis
    /// cannot be read, [`RedisStateError::State`] when the snapshot does not fit the
    /// store (its limits).
    pub async fn open(
        store: Arc<StateStore<C>>,
        config: RedisStateConfig,
    ) -> Result<Self, RedisStateError> {
        if config.stream_len < 2 || config.snapshot_every == 0 {
            return Err(RedisStateError::Config(
                "stream_len must be at least 2 and snapshot_every at least 1",
            ));
        }
        if config.snapshot_every > (config.stream_len / 2) as u64 {
            return Err(RedisStateError::Config(
                "snapshot_every must be at most half of stream_len",
            ));
        }
        let client = redis::Client::open(config.url.as_str()).map_err(unavailable)?;
        let manager = |response: Duration| {
            ConnectionManagerConfig::new()
                .set_connection_timeout(Some(config.command_timeout))
                .set_response_timeout(Some(response))
                .set_number_of_retries(1)
        };
        let conn =
            ConnectionManager::new_with_config(client.clone(), manager(config.command_timeout))
                .await
                .map_err(unavailable)?;
        // The tail blocks in XREAD: a connection of its own.
        let tail_conn = ConnectionManager::new_with_config(
            client,
            manager(config.command_timeout + TAIL_BLOCK),
        )
        .await
        .map_err(unavailable)?;
        let base = format!("{}:state:{}", config.prefix, config.name);
        let keys = (
            format!("{base}:rev"),
            format!("{base}:log"),
            format!("{base}:snap"),
        );
        let inner = Arc::new(Inner {
            applied: watch::Sender::new(store.revision().0),
            config,
            store,
            conn,
            write: redis::Script::new(WRITE),
            snapshot: redis::Script::new(SNAPSHOT),
            reseed: redis::Script::new(RESEED),
            keys,
            failures: Mutex::new(BTreeMap::new()),
        });
        inner.catch_up(&mut inner.conn.clone()).await?;
        let tail = tokio::spawn(follow(Arc::clone(&inner), tail_conn));
        Ok(Self { inner, tail })
    }

    /// The local store (read it freely; write through [`apply`](Self::apply)).
    pub fn store(&self) -> &Arc<StateStore<C>> {
        &self.inner.store
    }

    /// Applies `patch`, made against the local store's current revision, on every
    /// node; returns its revision once the local store shows it.
    ///
    /// # Errors
    ///
    /// As [`apply_at`](Self::apply_at).
    pub async fn apply(&self, patch: &[PatchOperation]) -> Result<Revision, RedisStateError> {
        self.apply_at(self.inner.store.revision(), patch).await
    }

    /// Applies `patch`, made against revision `base`, on every node, if `base` is
    /// still the document's revision; returns the new revision once the local
    /// store shows it.
    ///
    /// # Errors
    ///
    /// [`StateError::Conflict`] (in [`RedisStateError::State`]) when another write
    /// came first; the patch's own error if it fails (the revision is used all the
    /// same); [`RedisStateError::Unavailable`] when Redis cannot be reached;
    /// [`RedisStateError::Timeout`] when the local store does not catch up in time.
    pub async fn apply_at(
        &self,
        base: Revision,
        patch: &[PatchOperation],
    ) -> Result<Revision, RedisStateError> {
        let inner = &self.inner;
        let text =
            serde_json::to_string(patch).map_err(|e| StateError::InvalidPatch(e.to_string()))?;
        let mut conn = inner.conn.clone();
        let mut invocation = inner.write.key(&inner.keys.0);
        invocation
            .key(&inner.keys.1)
            .key(&inner.keys.2)
            .arg(base.0)
            .arg(text)
            .arg(inner.config.stream_len);
        let run = invocation.invoke_async::<(u8, u64)>(&mut conn);
        let (won, revision) = match timeout(inner.config.command_timeout, run).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(e)) => return Err(unavailable(e)),
            Err(_) => return Err(unavailable("redis write timed out")),
        };
        if won == 0 {
            return Err(StateError::Conflict {
                shard: 0,
                base,
                current: Revision(revision),
            }
            .into());
        }
        let mut applied = inner.applied.subscribe();
        let waited = timeout(
            inner.config.apply_timeout,
            applied.wait_for(|&at| at >= revision),
        )
        .await;
        if !matches!(waited, Ok(Ok(_))) {
            return Err(RedisStateError::Timeout);
        }
        let failed = inner
            .failures
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&revision);
        match failed {
            Some(e) => Err(e.into()),
            None => Ok(Revision(revision)),
        }
    }
}

/// How long one `XREAD` blocks.
const TAIL_BLOCK: Duration = Duration::from_millis(500);
/// Failures kept for their writers at most.
const MAX_FAILURES: usize = 1024;

type Entries = Vec<(String, Vec<(String, String)>)>;

impl<C: Clock + Send + Sync + 'static> Inner<C> {
    /// Applies what the stream holds after the local revision; loads the stored
    /// snapshot first when the stream no longer reaches back that far.
    async fn catch_up(&self, conn: &mut ConnectionManager) -> Result<(), RedisStateError> {
        loop {
            let local = self.store.revision().0;
            // The revision first, the stream second: a write between the two is in
            // the stream read, so "Redis is ahead but the stream has nothing
            // after us" means trimmed, never "not yet read".
            let current: Option<u64> = redis::cmd("GET")
                .arg(&self.keys.0)
                .query_async(conn)
                .await
                .map_err(unavailable)?;
            let current = current.unwrap_or(0);
            let entries: Entries = redis::cmd("XRANGE")
                .arg(&self.keys.1)
                .arg(format!("{}-0", local + 1))
                .arg("+")
                .arg("COUNT")
                .arg(256)
                .query_async(conn)
                .await
                .map_err(unavailable)?;
            let behind = match entries.first().and_then(|(id, _)| entry_revision(id)) {
                Some(first) => first > local + 1,
                None if current < local => {
                    // Redis lost the document (restarted without persistence):
                    // this node seeds it again with what it holds.
                    self.reseed(conn).await?;
                    return Ok(());
                }
                None => current > local,
            };
            if behind {
                self.load_snapshot(conn).await?;
                continue;
            }
            if entries.is_empty() {
                return Ok(());
            }
            let full = entries.len() == 256;
            self.apply_entries(&entries);
            if !full {
                return Ok(());
            }
        }
    }

    /// Stores the local document as the snapshot and its revision as the current
    /// one, where Redis is behind it.
    async fn reseed(&self, conn: &mut ConnectionManager) -> Result<(), RedisStateError> {
        let (revision, document) = self.store.snapshot();
        let mut invocation = self.reseed.key(&self.keys.0);
        invocation
            .key(&self.keys.2)
            .arg(revision.0)
            .arg(document.to_string());
        invocation
            .invoke_async::<u8>(conn)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    /// Replaces the local document with the stored snapshot.
    async fn load_snapshot(&self, conn: &mut ConnectionManager) -> Result<(), RedisStateError> {
        let (revision, document): (Option<u64>, Option<String>) = redis::cmd("HMGET")
            .arg(&self.keys.2)
            .arg("r")
            .arg("d")
            .query_async(conn)
            .await
            .map_err(unavailable)?;
        let (Some(revision), Some(document)) = (revision, document) else {
            return Err(unavailable(
                "the stream was trimmed and no snapshot is stored",
            ));
        };
        if revision <= self.store.revision().0 {
            return Err(unavailable(
                "the stored snapshot is older than the stream's start",
            ));
        }
        let document: Value = serde_json::from_str(&document)
            .map_err(|e| StateError::InvalidSnapshot(e.to_string()))?;
        self.store.import(StateSnapshot {
            revision: Revision(revision),
            document,
        })?;
        self.applied.send_replace(revision);
        Ok(())
    }

    /// Applies stream entries in order (those already applied are skipped).
    fn apply_entries(&self, entries: &[(String, Vec<(String, String)>)]) {
        for (id, fields) in entries {
            let Some(revision) = entry_revision(id) else {
                continue;
            };
            let local = self.store.revision().0;
            if revision <= local {
                continue;
            }
            if revision != local + 1 {
                // A gap: the caller reloads from the snapshot.
                return;
            }
            let patch = fields
                .iter()
                .find(|(k, _)| k == "p")
                .map_or("[]", |(_, v)| v.as_str());
            if let Err(e) = self.store.apply_json(patch) {
                // Every node fails it alike: an empty revision keeps them aligned.
                let _ = self.store.apply(&[]);
                let mut failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
                failures.insert(revision, e);
                while failures.len() > MAX_FAILURES {
                    failures.pop_first();
                }
            }
            self.applied.send_replace(self.store.revision().0);
        }
    }

    /// Stores a snapshot when the local revision is a multiple of `snapshot_every`.
    async fn maybe_snapshot(&self, conn: &mut ConnectionManager, before: u64) {
        let every = self.config.snapshot_every;
        if self.store.revision().0 / every == before / every {
            return;
        }
        let (revision, document) = self.store.snapshot();
        let mut invocation = self.snapshot.key(&self.keys.2);
        invocation.arg(revision.0).arg(document.to_string());
        let _ = timeout(
            self.config.command_timeout,
            invocation.invoke_async::<u8>(conn),
        )
        .await;
    }
}

/// The revision of a stream entry id, `<revision>-0`.
fn entry_revision(id: &str) -> Option<u64> {
    id.split_once('-')?.0.parse().ok()
}

/// Tails the stream: blocks in `XREAD` for what follows the local revision, applies
/// it, stores snapshots, and catches up (from the snapshot if need be) after a gap or
/// an outage.
async fn follow<C: Clock + Send + Sync + 'static>(
    inner: Arc<Inner<C>>,
    mut conn: ConnectionManager,
) {
    let mut delay = Duration::from_millis(50);
    loop {
        let before = inner.store.revision().0;
        let read: Result<Option<Vec<(String, Entries)>>, _> = redis::cmd("XREAD")
            .arg("BLOCK")
            .arg(TAIL_BLOCK.as_millis() as u64)
            .arg("COUNT")
            .arg(256)
            .arg("STREAMS")
            .arg(&inner.keys.1)
            .arg(format!("{before}-0"))
            .query_async(&mut conn)
            .await;
        let ok = match read {
            Ok(None) => true,
            Ok(Some(streams)) => {
                for (_, entries) in &streams {
                    inner.apply_entries(entries);
                }
                // A gap the entries could not close, or more than one read
                // brought: catch up (from the snapshot where the stream is short).
                inner.catch_up(&mut conn).await.is_ok()
            }
            Err(_) => false,
        };
        if ok {
            inner.maybe_snapshot(&mut conn, before).await;
            delay = Duration::from_millis(50);
        } else {
            let until = Instant::now() + delay;
            sleep(until - Instant::now()).await;
            delay = (delay * 2).min(Duration::from_secs(2));
            let _ = inner.catch_up(&mut conn).await;
        }
    }
}
