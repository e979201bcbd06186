//! The activities a [`SharedLog`](super::SharedLog) tracks: the current content of
//! each AG-UI activity (`ACTIVITY_SNAPSHOT`, then `ACTIVITY_DELTA` patches, keyed
//! by `messageId`), so that a connection that missed some of an activity's events
//! can be resynchronised with a fresh `ACTIVITY_SNAPSHOT` instead of being left
//! with a silent gap.
//!
//! Bounded in activities and in bytes ([`LogConfig`](super::LogConfig)); the
//! activity updated longest ago is forgotten first. What is forgotten can no longer
//! be resynchronised: the tracker remembers the offset below which every event of a
//! forgotten activity lies ([`Tracked::lost_before`]), and a connection whose skip
//! reaches below it is closed as a slow consumer rather than resynchronised wrong.
//!
//! Patches are applied by the state store's own RFC 6902 code (with its limits and
//! its complete undo), not by a second implementation.

use std::collections::HashMap;
use std::prelude::rust_2021::*;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use json_patch::PatchOperation;
use serde_json::Value;

use super::event::{Event, EventType, Frame};
use crate::adapters::state::ops::Run;
use crate::adapters::state::Limits;

/// One activity's current content.
#[derive(Debug)]
struct Activity {
    activity_type: Value,
    content: Value,
    /// Bytes held, estimated as the encoded length of its last snapshot plus that of
    /// every delta folded in since.
    bytes: u64,
    /// Offset of the last event folded in.
    last: u64,
}

/// The tracker's state, under its mutex.
#[derive(Debug, Default)]
pub(crate) struct Tracked {
    by_id: HashMap<Arc<str>, Activity>,
    bytes: u64,
    /// Offset after the last event folded in: the contents are current up to here.
    pub(crate) through: u64,
    /// Every event of an activity that is no longer tracked (forgotten for the
    /// bounds, or whose events could not be applied) has an offset below this.
    pub(crate) lost_before: u64,
    /// Activities forgotten or given up since construction.
    lost: u64,
}

/// A snapshot of the tracker's figures.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct ActivityFigures {
    pub(crate) tracked: u64,
    pub(crate) bytes: u64,
    pub(crate) lost: u64,
}

/// What a resync gets: a fresh `ACTIVITY_SNAPSHOT` per tracked activity (oldest
/// update first), current up to offset `through`.
pub(crate) struct Resync {
    pub(crate) frames: Vec<Frame>,
    pub(crate) through: u64,
}

/// The tracker: its bounds and its state.
#[derive(Debug)]
pub(crate) struct Activities {
    max_activities: usize,
    max_bytes: u64,
    limits: Limits,
    tracked: Mutex<Tracked>,
}

impl Activities {
    pub(crate) fn new(max_activities: usize, max_bytes: u64) -> Self {
        Self {
            max_activities,
            max_bytes,
            limits: Limits::default(),
            tracked: Mutex::new(Tracked::default()),
        }
    }

    /// Locks the tracker. An appender holds the lock across its append and its
    /// fold, so that activities are folded in offset order.
    pub(crate) fn lock(&self) -> MutexGuard<'_, Tracked> {
        // Every section leaves `Tracked` consistent before anything that could panic.
        self.tracked.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Folds the activity event at `offset` (its parsed JSON, `None` if it did not
    /// parse) into `tracked`.
    pub(crate) fn fold(
        &self,
        tracked: &mut Tracked,
        offset: u64,
        frame: &Frame,
        json: Option<Value>,
    ) {
        tracked.through = offset + 1;
        let Some(Value::Object(mut fields)) = json else {
            // Not ours to judge the event; but no resync can cover it.
            tracked.lost_before = offset + 1;
            return;
        };
        let Some(id) = frame.key().map(Arc::<str>::from) else {
            tracked.lost_before = offset + 1;
            return;
        };
        let activity_type = fields.remove("activityType").unwrap_or(Value::Null);
        let len = frame.len() as u64;
        match frame.kind() {
            EventType::ActivitySnapshot => {
                let replace = fields
                    .get("replace")
                    .and_then(Value::as_bool)
                    .unwrap_or(true);
                let content = fields.remove("content").unwrap_or(Value::Null);
                if let Some(held) = tracked.by_id.get_mut(&id) {
                    held.last = offset;
                    if !replace {
                        // AG-UI: `replace: false` leaves an existing activity as it is.
                        return;
                    }
                    tracked.bytes = tracked.bytes - held.bytes + len;
                    held.bytes = len;
                    held.content = content;
                    held.activity_type = activity_type;
                } else {
                    tracked.bytes += len;
                    tracked.by_id.insert(
                        id,
                        Activity {
                            activity_type,
                            content,
                            bytes: len,
                            last: offset,
                        },
                    );
                }
            }
            EventType::ActivityDelta => {
                let ops = fields
                    .remove("patch")
                    .and_then(|p| serde_json::from_value::<Vec<PatchOperation>>(p).ok());
                let applied = match (ops, tracked.by_id.get_mut(&id)) {
                    (Some(ops), Some(held)) => {
                        let ok = Run::new(&self.limits)
                            .apply_all(&mut held.content, &ops)
                            .is_ok();
                        if ok {
                            held.last = offset;
                            held.bytes += len;
                            tracked.bytes += len;
                        }
                        ok
                    }
                    // A delta of an activity never snapshotted (or forgotten), or
                    // one that is not a patch: nothing to build a snapshot from.
                    _ => false,
                };
                if !applied {
                    self.forget(tracked, &id, offset);
                }
            }
            _ => {}
        }
        self.enforce_bounds(tracked);
    }

    /// Stops tracking `id`, whose events up to `offset` no resync can cover.
    fn forget(&self, tracked: &mut Tracked, id: &str, offset: u64) {
        if let Some(gone) = tracked.by_id.remove(id) {
            tracked.bytes -= gone.bytes;
            tracked.lost += 1;
        }
        tracked.lost_before = tracked.lost_before.max(offset + 1);
    }

    /// Forgets the activities updated longest ago until within the bounds.
    fn enforce_bounds(&self, tracked: &mut Tracked) {
        while tracked.by_id.len() > self.max_activities || tracked.bytes > self.max_bytes {
            let Some((id, last)) = tracked
                .by_id
                .iter()
                .min_by_key(|(_, a)| a.last)
                .map(|(id, a)| (Arc::clone(id), a.last))
            else {
                break;
            };
            self.forget(tracked, &id, last);
        }
    }

    /// Fresh snapshots of every tracked activity, for a reader that skipped events
    /// from offset `from` on; `None` if some of what it skipped belongs to an
    /// activity no longer tracked.
    pub(crate) fn resync(&self, from: u64) -> Option<Resync> {
        let tracked = self.lock();
        if from < tracked.lost_before {
            return None;
        }
        let mut held: Vec<(&Arc<str>, &Activity)> = tracked.by_id.iter().collect();
        held.sort_by_key(|(_, a)| a.last);
        let frames = held
            .into_iter()
            .map(|(id, a)| {
                Event::new(EventType::ActivitySnapshot)
                    .with("messageId", &**id)
                    .with("activityType", a.activity_type.clone())
                    .with("content", a.content.clone())
                    .with("replace", true)
                    .encode()
            })
            .collect();
        Some(Resync {
            frames,
            through: tracked.through,
        })
    }

    pub(crate) fn figures(&self) -> ActivityFigures {
        let tracked = self.lock();
        ActivityFigures {
            tracked: tracked.by_id.len() as u64,
            bytes: tracked.bytes,
            lost: tracked.lost,
        }
    }
}
