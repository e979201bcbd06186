//! Applying RFC 6902 operations in place, with an undo log, limit checks and an
//! exact account of the document's encoded size.
//!
//! The semantics are json-patch 5's, step for step (pointer resolution as
//! `serde_json`'s `pointer_mut` does it for parents, over `jsonptr` tokens, and
//! `jsonptr` tokens for the last segment, the same error kinds and precedence),
//! except that `test` compares numbers by value as RFC 6902 section 4.6 says
//! (json-patch finds `1` and `1.0` different; see [`equal`]);
//! `fuzz/fuzz_targets/state_patch.rs` checks them against `json_patch::patch`
//! applied one operation at a time. We do not call `json_patch::patch` itself for
//! four reasons:
//!
//! - its undo is not complete: a `move` whose `add` half fails (the target's parent
//!   is missing) has already removed the source, and that removal is not undone;
//!   a `move` of `/a/b` to `/a` followed by a failing operation makes its undo
//!   attempt the impossible reverse move and panic (`unreachable!`);
//! - limits (container lengths, depth, document size) depend on the state each
//!   operation sees, so they are checked between operations;
//! - the size account needs the values an operation removes or overwrites, which
//!   json-patch drops. Keeping them in our undo log costs no copy;
//! - its `test` compares numbers by representation, not by value.
//!
//! Cost: an operation costs the size of the values it writes, removes, overwrites or
//! copies (they are measured), never the size of the document, except an operation
//! on the root itself.

use alloc::borrow::Cow;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::mem;

use json_patch::jsonptr::{Pointer, Token};
use json_patch::PatchOperation;
use serde_json::{Map, Number, Value};

use super::config::Limits;
use super::error::{Limit, LimitExceeded, PatchFailure, StateError};

/// serde_json's array index rule: decimal digits, no sign, no leading zero.
fn parse_index(token: &str) -> Option<usize> {
    if token.starts_with('+') || (token.starts_with('0') && token.len() != 1) {
        return None;
    }
    token.parse().ok()
}

/// `Value::pointer` over `pointer`'s tokens: the same lookup, without allocating a
/// decoded copy of every token (serde_json's `pointer` replaces `~1` and `~0` in
/// each, which costs two allocations per segment).
pub(crate) fn resolve<'v>(doc: &'v Value, pointer: &Pointer) -> Option<&'v Value> {
    pointer
        .tokens()
        .try_fold(doc, |target, token| match target {
            Value::Object(members) => members.get(token.decoded().as_ref()),
            Value::Array(items) => parse_index(&token.decoded()).and_then(|i| items.get(i)),
            _ => None,
        })
}

/// `Value::pointer_mut` over `pointer`'s tokens; see [`resolve`].
pub(crate) fn resolve_mut<'v>(doc: &'v mut Value, pointer: &Pointer) -> Option<&'v mut Value> {
    pointer
        .tokens()
        .try_fold(doc, |target, token| match target {
            Value::Object(members) => members.get_mut(token.decoded().as_ref()),
            Value::Array(items) => parse_index(&token.decoded()).and_then(|i| items.get_mut(i)),
            _ => None,
        })
}

/// A writer that only counts bytes.
struct Counter(usize);

impl std::io::Write for Counter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Counts what `write` serializes. Values and operations have string keys only and
/// the counter never fails, so serializing cannot fail.
fn counted(write: impl FnOnce(&mut Counter) -> serde_json::Result<()>) -> usize {
    let mut counter = Counter(0);
    let _ = write(&mut counter);
    counter.0
}

/// The length of `value`'s compact JSON encoding, counted without building it.
pub(crate) fn encoded_len(value: &Value) -> usize {
    counted(|c| serde_json::to_writer(c, value))
}

/// The length of `key` encoded as a JSON string (quotes and escapes included).
fn key_len(key: &str) -> usize {
    counted(|c| serde_json::to_writer(c, key))
}

/// What a top-level member adds to the document's size in this store's account:
/// `"key":value` plus one separator. The document's size is 1 plus the sum over its
/// members, which is its compact encoding's length for every non-empty document
/// (`{` and `}`, and one comma fewer than members).
pub(crate) fn member_len(key: &str, value: &Value) -> usize {
    key_len(key) + 1 + encoded_len(value) + 1
}

/// The children of one container a [`walk`] has entered and not finished.
enum Children<'v> {
    Items(core::slice::Iter<'v, Value>),
    Members(serde_json::map::Values<'v>),
}

impl<'v> Children<'v> {
    fn of(value: &'v Value) -> Option<Self> {
        match value {
            Value::Array(items) => Some(Self::Items(items.iter())),
            Value::Object(members) => Some(Self::Members(members.values())),
            _ => None,
        }
    }
}

impl<'v> Iterator for Children<'v> {
    type Item = &'v Value;

    fn next(&mut self) -> Option<&'v Value> {
        match self {
            Self::Items(items) => items.next(),
            Self::Members(members) => members.next(),
        }
    }
}

/// Visits `value` and every value inside it, each container before what it holds,
/// with its nesting level (`value` at `level`, what a container holds one deeper),
/// and stops at the first error `visit` returns.
///
/// Without recursion: values from outside can be nested arbitrarily deep, and a
/// recursive walk (serde_json's encoder, comparison, clone and drop all are one)
/// overflows the stack on them. The walk keeps one iterator per container it is
/// inside, so a `visit` that refuses containers past a level bounds its memory too.
fn walk<E>(
    value: &Value,
    level: usize,
    mut visit: impl FnMut(&Value, usize) -> Result<(), E>,
) -> Result<(), E> {
    visit(value, level)?;
    let mut open: Vec<Children<'_>> = Children::of(value).into_iter().collect();
    while let Some(children) = open.last_mut() {
        let Some(child) = children.next() else {
            open.pop();
            continue;
        };
        visit(child, level + open.len())?;
        open.extend(Children::of(child));
    }
    Ok(())
}

/// Checks a value a patch carries (to store, or to test against) with its
/// outermost container at nesting `level` (the root object is level 1) against the
/// limits that do not depend on the document: depth, array lengths, object sizes,
/// string and key lengths.
///
/// This is the check that runs before anything else walks a value from outside
/// (encoding it, comparing it, measuring it, dropping it): it does not recurse, and
/// a value it accepts is at most [`Limits::depth`] deep, which every recursive walk
/// survives.
pub(crate) fn check_value(
    value: &Value,
    level: usize,
    limits: &Limits,
    op: Option<usize>,
) -> Result<(), LimitExceeded> {
    let exceeded = |limit, max, actual| LimitExceeded {
        limit,
        max,
        actual,
        op,
    };
    walk(value, level, |value, level| match value {
        Value::String(s) if s.len() > limits.string_len => {
            Err(exceeded(Limit::StringLen, limits.string_len, s.len()))
        }
        Value::Array(_) | Value::Object(_) if level > limits.depth => {
            Err(exceeded(Limit::Depth, limits.depth, level))
        }
        Value::Array(items) if items.len() > limits.array_len => {
            Err(exceeded(Limit::ArrayLen, limits.array_len, items.len()))
        }
        Value::Object(members) => {
            if members.len() > limits.object_keys {
                return Err(exceeded(
                    Limit::ObjectKeys,
                    limits.object_keys,
                    members.len(),
                ));
            }
            match members.keys().find(|key| key.len() > limits.string_len) {
                Some(key) => Err(exceeded(Limit::StringLen, limits.string_len, key.len())),
                None => Ok(()),
            }
        }
        _ => Ok(()),
    })
}

/// The first nesting level past `max` that `value` reaches, with its outermost
/// container at `level`; `None` if it stays within `max`. Stops there, so it costs
/// at most the part of the value within the limit.
fn depth_past(value: &Value, level: usize, max: usize) -> Option<usize> {
    walk(value, level, |value, level| match value {
        Value::Array(_) | Value::Object(_) if level > max => Err(level),
        _ => Ok(()),
    })
    .err()
}

/// The pairs of values still to compare inside two containers an [`equal`] has
/// entered.
enum Pairs<'v> {
    Items(core::iter::Zip<core::slice::Iter<'v, Value>, core::slice::Iter<'v, Value>>),
    Members(serde_json::map::Iter<'v>, &'v Map<String, Value>),
}

impl<'v> Pairs<'v> {
    /// The next pair; `Some(None)` for a member the second object lacks.
    fn next(&mut self) -> Option<Option<(&'v Value, &'v Value)>> {
        match self {
            Self::Items(pairs) => pairs.next().map(Some),
            Self::Members(members, other) => members
                .next()
                .map(|(key, value)| other.get(key).map(|theirs| (value, theirs))),
        }
    }
}

/// RFC 6902 section 4.6 equality, for `test`: the same type and, for numbers, the
/// same numeric value whatever the text (`1`, `1.0` and `1e0` are equal, so are
/// `0` and `-0`); strings, booleans and null by value; arrays element by element;
/// objects by members, in any order. (serde_json's `==`, which json-patch uses,
/// tells integers and floats apart.)
///
/// Without recursion, as [`walk`]: its memory is one iterator pair per level.
pub(crate) fn equal(a: &Value, b: &Value) -> bool {
    let mut open: Vec<Pairs<'_>> = Vec::new();
    let mut next = Some((a, b));
    loop {
        if let Some(pair) = next.take() {
            match pair {
                (Value::Number(x), Value::Number(y)) if !numbers_equal(x, y) => return false,
                (Value::Number(_), Value::Number(_)) => {}
                (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
                    open.push(Pairs::Items(x.iter().zip(y)));
                }
                (Value::Object(x), Value::Object(y)) if x.len() == y.len() => {
                    open.push(Pairs::Members(x.iter(), y));
                }
                (Value::Array(_) | Value::Object(_), _)
                | (_, Value::Array(_) | Value::Object(_)) => return false,
                // Null, booleans, strings, or two values of different types: `==`
                // does not recurse on these.
                (x, y) if x != y => return false,
                _ => {}
            }
        }
        let Some(pairs) = open.last_mut() else {
            return true;
        };
        match pairs.next() {
            Some(Some(pair)) => next = Some(pair),
            Some(None) => return false,
            None => {
                open.pop();
            }
        }
    }
}

/// Two numbers' values compared exactly: integers as integers (never rounded
/// through `f64`, which holds integers exactly only up to 2^53), floats as floats,
/// an integer and a float as equal only when the float is that integer exactly.
fn numbers_equal(x: &Number, y: &Number) -> bool {
    match (integer(x), integer(y)) {
        (Some(i), Some(j)) => i == j,
        (Some(i), None) => float_integer(y) == Some(i),
        (None, Some(j)) => float_integer(x) == Some(j),
        (None, None) => x.as_f64() == y.as_f64(),
    }
}

/// An integer number's value (serde_json keeps it as `i64` or `u64`).
fn integer(n: &Number) -> Option<i128> {
    n.as_i64()
        .map(i128::from)
        .or_else(|| n.as_u64().map(i128::from))
}

/// A float number's value as an integer, if it is one exactly and within the
/// range of serde_json's integers (`i64::MIN ..= u64::MAX`; both bounds below are
/// exact `f64`s).
fn float_integer(n: &Number) -> Option<i128> {
    let f = n.as_f64()?;
    if !(-9_223_372_036_854_775_808.0..18_446_744_073_709_551_616.0).contains(&f) {
        return None;
    }
    // In range, `as` truncates toward zero without saturating; the round trip is
    // exact for an integral `f`, and a fractional one is below 2^52, where
    // truncation shows.
    let i = f as i128;
    (i as f64 == f).then_some(i)
}

/// Drops `value` without recursion. serde_json's `Value` drops recursively, one
/// stack frame per level, so a value from outside that the store refuses (and
/// owns) is dropped here: refusing it must not overflow the stack, however deep it
/// is. Costs a stack of the values still to drop.
pub(crate) fn discard(value: Value) {
    let mut pending = match value {
        Value::Array(items) => items,
        Value::Object(members) => members.into_iter().map(|(_, v)| v).collect(),
        _ => return,
    };
    while let Some(value) = pending.pop() {
        match value {
            // The containers are emptied into `pending` before they drop.
            Value::Array(items) => pending.extend(items),
            Value::Object(members) => pending.extend(members.into_iter().map(|(_, v)| v)),
            _ => {}
        }
    }
}

/// [`discard`] for the values of refused operations.
pub(crate) fn discard_ops(ops: impl IntoIterator<Item = PatchOperation>) {
    for op in ops {
        match op {
            PatchOperation::Add(op) => discard(op.value),
            PatchOperation::Replace(op) => discard(op.value),
            PatchOperation::Test(op) => discard(op.value),
            _ => {}
        }
    }
}

/// A place in the document: the parent's pointer and the member or index in it.
/// Borrowed from the patch, which outlives its run.
#[derive(Debug)]
struct Loc<'a> {
    parent: &'a Pointer,
    slot: Slot<'a>,
}

#[derive(Debug)]
enum Slot<'a> {
    Key(Cow<'a, str>),
    Index(usize),
}

impl Loc<'_> {
    /// Takes the value out of this place (undoing an insert).
    fn take(&self, doc: &mut Value) -> Option<Value> {
        let parent = resolve_mut(doc, self.parent)?;
        match (&self.slot, parent) {
            (Slot::Key(key), Value::Object(members)) => members.remove(key.as_ref()),
            (Slot::Index(i), Value::Array(items)) if *i < items.len() => Some(items.remove(*i)),
            _ => None,
        }
    }

    /// Puts `value` into this place (undoing a removal).
    fn put(&self, doc: &mut Value, value: Value) {
        let Some(parent) = resolve_mut(doc, self.parent) else {
            debug_assert!(false, "undo: parent {} vanished", self.parent);
            return;
        };
        match (&self.slot, parent) {
            (Slot::Key(key), Value::Object(members)) => {
                members.insert(key.clone().into_owned(), value);
            }
            (Slot::Index(i), Value::Array(items)) if *i <= items.len() => items.insert(*i, value),
            _ => debug_assert!(false, "undo: parent {} changed kind", self.parent),
        }
    }
}

/// Where an inserted value went.
#[derive(Debug)]
enum Landed<'a> {
    /// Into a new member or array slot.
    Inserted(Loc<'a>),
    /// Over an existing value (an object member, or the root), kept to restore.
    Overwrote(&'a Pointer, Value),
}

impl Landed<'_> {
    /// Takes the inserted value back out, restoring what it overwrote.
    fn undo(self, doc: &mut Value) -> Option<Value> {
        match self {
            Self::Inserted(loc) => loc.take(doc),
            Self::Overwrote(pointer, prev) => {
                resolve_mut(doc, pointer).map(|slot| mem::replace(slot, prev))
            }
        }
    }
}

/// One step of the undo log.
#[derive(Debug)]
enum Undo<'a> {
    /// Undo an `add` or `copy`.
    Insert(Landed<'a>),
    /// Undo a `remove`: put the value back.
    Remove(Loc<'a>, Value),
    /// Undo a `replace`: restore the previous value.
    Replace(&'a Pointer, Value),
    /// Undo a `move`: take the value from where it landed back to where it was.
    Move { landed: Landed<'a>, from: Loc<'a> },
}

/// A top-level key or member name: `token` decoded, borrowed from the pointer
/// unless it has escapes.
pub(crate) fn key_of(token: Token<'_>) -> Cow<'_, str> {
    let decoded = match token.decoded() {
        Cow::Owned(key) => Some(key),
        Cow::Borrowed(_) => None,
    };
    decoded.map_or_else(|| token.into_encoded(), Cow::Owned)
}

/// Why one operation failed, before it is named by its index.
enum Fail {
    Patch(PatchFailure),
    Limit(Limit, usize, usize),
    RootNotObject,
}

impl From<PatchFailure> for Fail {
    fn from(failure: PatchFailure) -> Self {
        Self::Patch(failure)
    }
}

/// One patch being applied to a working document: the undo log and the running
/// changes of the size account.
pub(crate) struct Run<'a> {
    limits: &'a Limits,
    undo: Vec<Undo<'a>>,
    /// Change of the document's size account (see [`member_len`]), unless
    /// `root_replaced`.
    pub(crate) bytes: i64,
    /// Change of the number of top-level members, unless `root_replaced`.
    pub(crate) keys: i64,
    /// An operation replaced the root: the account must be recomputed.
    pub(crate) root_replaced: bool,
    /// The document is one top-level member's value, and every pointer of the
    /// patch has that member's key as first token (and at least one more):
    /// pointers are resolved without it.
    nested: bool,
}

fn signed(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl<'a> Run<'a> {
    pub(crate) fn new(limits: &'a Limits) -> Self {
        Self {
            limits,
            undo: Vec::new(),
            bytes: 0,
            keys: 0,
            root_replaced: false,
            nested: false,
        }
    }

    /// A run on one top-level member's value, for a patch whose every pointer
    /// starts with that member's key and goes below it.
    pub(crate) fn nested(limits: &'a Limits) -> Self {
        Self {
            nested: true,
            ..Self::new(limits)
        }
    }

    /// `pointer` as resolved in this run's document.
    fn at<'p>(&self, pointer: &'p Pointer) -> &'p Pointer {
        match pointer.split_front() {
            Some((_, rest)) if self.nested => rest,
            _ => pointer,
        }
    }

    /// Applies `ops` in order to `doc`. On the first failure the operations already
    /// applied are undone, leaving `doc` as it was, and the error names the
    /// operation.
    pub(crate) fn apply_all(
        &mut self,
        doc: &mut Value,
        ops: &'a [PatchOperation],
    ) -> Result<(), StateError> {
        self.undo.reserve(ops.len());
        for (index, op) in ops.iter().enumerate() {
            if let Err(fail) = self.apply(doc, op) {
                self.rollback(doc);
                return Err(match fail {
                    Fail::Patch(failure) => StateError::Patch {
                        op: index,
                        path: op.path().to_string(),
                        failure,
                    },
                    Fail::Limit(limit, max, actual) => StateError::Limit(LimitExceeded {
                        limit,
                        max,
                        actual,
                        op: Some(index),
                    }),
                    Fail::RootNotObject => StateError::RootNotObject { op: index },
                });
            }
        }
        Ok(())
    }

    /// Undoes every operation applied so far, newest first.
    pub(crate) fn rollback(&mut self, doc: &mut Value) {
        while let Some(step) = self.undo.pop() {
            match step {
                Undo::Insert(landed) => {
                    landed.undo(doc);
                }
                Undo::Remove(loc, value) => loc.put(doc, value),
                Undo::Replace(pointer, prev) => {
                    if let Some(slot) = resolve_mut(doc, pointer) {
                        *slot = prev;
                    }
                }
                Undo::Move { landed, from } => match landed.undo(doc) {
                    Some(value) => from.put(doc, value),
                    None => debug_assert!(false, "undo: moved value vanished"),
                },
            }
        }
        self.bytes = 0;
        self.keys = 0;
        self.root_replaced = false;
    }

    fn apply(&mut self, doc: &mut Value, op: &'a PatchOperation) -> Result<(), Fail> {
        match op {
            PatchOperation::Add(op) => {
                let size = encoded_len(&op.value);
                let landed = self
                    .insert(doc, self.at(&op.path), op.value.clone(), Some(size))
                    .map_err(|(fail, _)| fail)?;
                self.undo.push(Undo::Insert(landed));
            }
            PatchOperation::Remove(op) => {
                let (loc, value) = self.remove(doc, self.at(&op.path))?;
                self.bytes -= signed(encoded_len(&value));
                self.undo.push(Undo::Remove(loc, value));
            }
            PatchOperation::Replace(op) => {
                let target =
                    resolve_mut(doc, self.at(&op.path)).ok_or(PatchFailure::InvalidPointer)?;
                let root = self.at(&op.path).is_root();
                if root && !op.value.is_object() {
                    return Err(Fail::RootNotObject);
                }
                let prev = mem::replace(target, op.value.clone());
                if root {
                    self.root_replaced = true;
                } else {
                    self.bytes += signed(encoded_len(&op.value)) - signed(encoded_len(&prev));
                }
                self.undo.push(Undo::Replace(self.at(&op.path), prev));
            }
            PatchOperation::Move(op) => {
                if op.path.starts_with(&op.from) && op.path.len() != op.from.len() {
                    return Err(PatchFailure::CannotMoveInsideItself.into());
                }
                let (from, value) =
                    self.remove(doc, self.at(&op.from))
                        .map_err(|fail| match fail {
                            Fail::Patch(PatchFailure::InvalidPointer) => {
                                PatchFailure::InvalidFromPointer.into()
                            }
                            fail => fail,
                        })?;
                if let Some(depth) = self.deeper(&value, &op.from, &op.path) {
                    from.put(doc, value);
                    return Err(Fail::Limit(Limit::Depth, self.limits.depth, depth));
                }
                // The value's own size leaves with the remove and returns with the
                // insert: only the separators and keys change.
                match self.insert(doc, self.at(&op.path), value, None) {
                    Ok(landed) => self.undo.push(Undo::Move { landed, from }),
                    Err((fail, value)) => {
                        from.put(doc, value);
                        return Err(fail);
                    }
                }
            }
            PatchOperation::Copy(op) => {
                let value =
                    resolve(doc, self.at(&op.from)).ok_or(PatchFailure::InvalidFromPointer)?;
                if let Some(depth) = self.deeper(value, &op.from, &op.path) {
                    return Err(Fail::Limit(Limit::Depth, self.limits.depth, depth));
                }
                let value = value.clone();
                let size = encoded_len(&value);
                let landed = self
                    .insert(doc, self.at(&op.path), value, Some(size))
                    .map_err(|(fail, _)| fail)?;
                self.undo.push(Undo::Insert(landed));
            }
            PatchOperation::Test(op) => {
                let target = resolve(doc, self.at(&op.path)).ok_or(PatchFailure::InvalidPointer)?;
                if !equal(target, &op.value) {
                    return Err(PatchFailure::TestFailed.into());
                }
            }
        }
        Ok(())
    }

    /// For a value taken from `from` to `to`: the depth past the limit it would
    /// reach there. Only a move to a deeper place can exceed it (the value was
    /// within the limit where it was), so only then is the value walked.
    fn deeper(&self, value: &Value, from: &Pointer, to: &Pointer) -> Option<usize> {
        if to.count() <= from.count() {
            return None;
        }
        depth_past(value, to.count() + 1, self.limits.depth)
    }

    /// Adds `value` at `path` as RFC 6902 `add` does, accounting `size` (the
    /// value's encoded length; `None` when a `move` already accounts it). On
    /// failure the value is handed back.
    fn insert(
        &mut self,
        doc: &mut Value,
        path: &'a Pointer,
        value: Value,
        size: Option<usize>,
    ) -> Result<Landed<'a>, (Fail, Value)> {
        let Some((parent_path, last)) = path.split_back() else {
            if !value.is_object() {
                return Err((Fail::RootNotObject, value));
            }
            self.root_replaced = true;
            let prev = mem::replace(doc, value);
            return Ok(Landed::Overwrote(path, prev));
        };
        let top = parent_path.is_root() && !self.nested;
        let Some(parent) = resolve_mut(doc, parent_path) else {
            return Err((PatchFailure::InvalidPointer.into(), value));
        };
        let limits = self.limits;
        let size = size.map_or(0, signed);
        match parent {
            Value::Object(members) => {
                let key = key_of(last);
                if let Some(slot) = members.get_mut(key.as_ref()) {
                    let prev = mem::replace(slot, value);
                    self.bytes += size - signed(encoded_len(&prev));
                    return Ok(Landed::Overwrote(path, prev));
                }
                if key.len() > limits.string_len {
                    let fail = Fail::Limit(Limit::StringLen, limits.string_len, key.len());
                    return Err((fail, value));
                }
                // The root's member count is checked across shards by the caller.
                if !top && members.len() >= limits.object_keys {
                    let fail =
                        Fail::Limit(Limit::ObjectKeys, limits.object_keys, members.len() + 1);
                    return Err((fail, value));
                }
                let separator = i64::from(top || !members.is_empty());
                self.bytes += size + signed(key_len(key.as_ref())) + 1 + separator;
                if top {
                    self.keys += 1;
                }
                members.insert(key.clone().into_owned(), value);
                Ok(Landed::Inserted(Loc {
                    parent: parent_path,
                    slot: Slot::Key(key),
                }))
            }
            Value::Array(items) => {
                let index = match last.to_index() {
                    Ok(index) => index.for_len_incl(items.len()),
                    Err(_) => return Err((PatchFailure::InvalidPointer.into(), value)),
                };
                let Ok(index) = index else {
                    return Err((PatchFailure::InvalidPointer.into(), value));
                };
                if items.len() >= limits.array_len {
                    let fail = Fail::Limit(Limit::ArrayLen, limits.array_len, items.len() + 1);
                    return Err((fail, value));
                }
                self.bytes += size + i64::from(!items.is_empty());
                items.insert(index, value);
                Ok(Landed::Inserted(Loc {
                    parent: parent_path,
                    slot: Slot::Index(index),
                }))
            }
            _ => Err((PatchFailure::InvalidPointer.into(), value)),
        }
    }

    /// Removes the value at `path` as RFC 6902 `remove` does, accounting everything
    /// but the value's own size (the caller decides whether it leaves).
    fn remove(&mut self, doc: &mut Value, path: &'a Pointer) -> Result<(Loc<'a>, Value), Fail> {
        let (parent_path, last) = path.split_back().ok_or(PatchFailure::InvalidPointer)?;
        let top = parent_path.is_root() && !self.nested;
        let parent = resolve_mut(doc, parent_path).ok_or(PatchFailure::InvalidPointer)?;
        match parent {
            Value::Object(members) => {
                let key = key_of(last);
                let value = members
                    .remove(key.as_ref())
                    .ok_or(PatchFailure::InvalidPointer)?;
                let separator = i64::from(top || !members.is_empty());
                self.bytes -= signed(key_len(key.as_ref())) + 1 + separator;
                if top {
                    self.keys -= 1;
                }
                let loc = Loc {
                    parent: parent_path,
                    slot: Slot::Key(key),
                };
                Ok((loc, value))
            }
            Value::Array(items) => {
                let index = last
                    .to_index()
                    .ok()
                    .and_then(|index| index.for_len(items.len()).ok())
                    .ok_or(PatchFailure::InvalidPointer)?;
                let value = items.remove(index);
                self.bytes -= i64::from(!items.is_empty());
                let loc = Loc {
                    parent: parent_path,
                    slot: Slot::Index(index),
                };
                Ok((loc, value))
            }
            _ => Err(PatchFailure::InvalidPointer.into()),
        }
    }
}

/// Checks the part of operation `index` that does not depend on the document: the
/// value it would store (`add`, `replace`) or compare (`test`; a value over a limit
/// could match nothing stored), as [`check_value`] does, at the place its path
/// names. (The operation count is checked first, by the caller.)
pub(crate) fn check_op(
    op: &PatchOperation,
    index: usize,
    limits: &Limits,
) -> Result<(), LimitExceeded> {
    let (path, value) = match op {
        PatchOperation::Add(op) => (&op.path, &op.value),
        PatchOperation::Replace(op) => (&op.path, &op.value),
        PatchOperation::Test(op) => (&op.path, &op.value),
        _ => return Ok(()),
    };
    check_value(value, path.count() + 1, limits, Some(index))
}

/// [`check_op`] for every operation of a patch.
pub(crate) fn check_ops(ops: &[PatchOperation], limits: &Limits) -> Result<(), LimitExceeded> {
    ops.iter()
        .enumerate()
        .try_for_each(|(index, op)| check_op(op, index, limits))
}
