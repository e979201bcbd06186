//! Segment-aware JSON Pointer patterns and which patch operations they match.

use alloc::boxed::Box;
use core::cmp::Ordering;
use core::fmt;

use json_patch::PatchOperation;

/// A subscription pattern: an RFC 6901 JSON Pointer whose segments are compared
/// whole, with `*` standing for any one segment.
///
/// # What matches
///
/// A pattern matches a patch operation when the operation may have changed the value
/// at the pattern's location:
///
/// - **inside it**: the operation's path lies at or below the pattern (`/user`
///   matches `/user` and `/user/name`, but not `/username`: segments are compared
///   whole);
/// - **above it**: the operation's path is a parent of the pattern (`replace /user`
///   or `remove /user` matches `/user/name`, since the watched value changed with
///   its parent);
/// - **array shifts**: an `add` or `remove` at an array index moves the elements
///   after it, so `add /list/1` matches `/list/3` (and `add /list/-`, an append,
///   matches every index). The store's operations do not say whether a container is
///   an array, so a numeric key of an object is treated the same way: a spurious
///   notification, never a missed one.
///
/// `move` counts as a `remove` at its `from` and an `add` at its `path` (moving a
/// value out of a watched location changes it); `copy` as an `add` at its `path` (its
/// `from` is only read). `test` changes nothing and never matches.
///
/// The root pattern `""` matches every operation that changes something.
///
/// Segments are compared decoded: `~1` is `/` and `~0` is `~` (the comparison runs
/// on the encoded forms, which is the same thing because RFC 6901's encoding of a
/// segment is unique, and allocates nothing). A segment that is exactly `*` is the
/// wildcard; it also matches a key that is literally `*`.
///
/// # Examples
///
/// ```
/// use membound::adapters::state::subscription::Pattern;
/// use json_patch::PatchOperation;
///
/// let op = |json: &str| serde_json::from_str::<PatchOperation>(json).unwrap();
/// let user = Pattern::parse("/user")?;
/// assert!(user.matches(&op(r#"{"op":"replace","path":"/user/name","value":"Ada"}"#)));
/// assert!(!user.matches(&op(r#"{"op":"replace","path":"/username","value":"ada"}"#)));
///
/// let names = Pattern::parse("/users/*/name")?;
/// assert!(names.matches(&op(r#"{"op":"add","path":"/users/7/name","value":"Bo"}"#)));
/// assert!(names.matches(&op(r#"{"op":"remove","path":"/users"}"#))); // a parent
/// assert!(!names.matches(&op(r#"{"op":"add","path":"/users/7/age","value":3}"#)));
/// # Ok::<(), membound::adapters::state::subscription::PatternError>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Pattern {
    /// The pattern as given (a valid RFC 6901 pointer).
    source: Box<str>,
    /// Byte ranges of the encoded segments in `source`, in order; empty for the root.
    segments: Box<[(u32, u32)]>,
}

/// Why a pattern is not a valid JSON Pointer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PatternError {
    /// A non-empty pattern must start with `/`.
    NoLeadingSlash,
    /// A `~` at this byte offset is not followed by `0` or `1`.
    InvalidEscape {
        /// Byte offset of the `~` in the pattern.
        offset: usize,
    },
    /// The pattern is longer than 4 GiB.
    TooLong,
}

impl fmt::Display for PatternError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoLeadingSlash => f.write_str("a non-empty JSON Pointer must start with '/'"),
            Self::InvalidEscape { offset } => {
                write!(f, "'~' at byte {offset} is not followed by '0' or '1'")
            }
            Self::TooLong => f.write_str("pattern is longer than 4 GiB"),
        }
    }
}

impl core::error::Error for PatternError {}

impl Pattern {
    /// Parses `pattern`: `""` (everything) or `/`-separated segments with RFC 6901
    /// escapes, `*` standing for any one segment.
    ///
    /// # Errors
    ///
    /// [`PatternError`] when `pattern` is not a valid JSON Pointer.
    ///
    /// # Examples
    ///
    /// ```
    /// use membound::adapters::state::subscription::{Pattern, PatternError};
    ///
    /// assert_eq!(Pattern::parse("/a~1b/*")?.as_str(), "/a~1b/*");
    /// assert_eq!(Pattern::parse("user"), Err(PatternError::NoLeadingSlash));
    /// assert_eq!(Pattern::parse("/a~2"), Err(PatternError::InvalidEscape { offset: 2 }));
    /// # Ok::<(), PatternError>(())
    /// ```
    pub fn parse(pattern: &str) -> Result<Self, PatternError> {
        if u32::try_from(pattern.len()).is_err() {
            return Err(PatternError::TooLong);
        }
        let bytes = pattern.as_bytes();
        if let Some(&first) = bytes.first() {
            if first != b'/' {
                return Err(PatternError::NoLeadingSlash);
            }
        }
        for (offset, &b) in bytes.iter().enumerate() {
            if b == b'~' && !matches!(bytes.get(offset + 1), Some(b'0' | b'1')) {
                return Err(PatternError::InvalidEscape { offset });
            }
        }
        let mut segments = alloc::vec::Vec::new();
        if !pattern.is_empty() {
            let mut start = 1;
            for (i, &b) in bytes.iter().enumerate().skip(1) {
                if b == b'/' {
                    segments.push((start as u32, i as u32));
                    start = i + 1;
                }
            }
            segments.push((start as u32, pattern.len() as u32));
        }
        Ok(Self {
            source: pattern.into(),
            segments: segments.into_boxed_slice(),
        })
    }

    /// The pattern as it was given.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Whether this is the root pattern `""`, which matches every change.
    pub fn is_root(&self) -> bool {
        self.segments.is_empty()
    }

    /// Whether `op` may have changed the value at this pattern (see the type's
    /// documentation for the rules).
    pub fn matches(&self, op: &PatchOperation) -> bool {
        match op {
            PatchOperation::Add(op) => self.touches(op.path.as_str(), true),
            PatchOperation::Remove(op) => self.touches(op.path.as_str(), true),
            PatchOperation::Replace(op) => self.touches(op.path.as_str(), false),
            PatchOperation::Move(op) => {
                self.touches(op.from.as_str(), true) || self.touches(op.path.as_str(), true)
            }
            PatchOperation::Copy(op) => self.touches(op.path.as_str(), true),
            PatchOperation::Test(_) => false,
        }
    }

    /// The encoded segment `i`.
    fn segment(&self, i: usize) -> &str {
        let (start, end) = self.segments[i];
        &self.source[start as usize..end as usize]
    }

    /// Whether a change at `path` (an encoded JSON Pointer) reaches this pattern; with
    /// `shifts`, the change inserts or removes at its last segment, which moves the
    /// later elements when that segment is an array index.
    fn touches(&self, path: &str, shifts: bool) -> bool {
        if self.segments.is_empty() {
            return true;
        }
        // A path that is not a pointer (no leading '/') cannot come from a parsed
        // patch; treat it as the root, the conservative answer.
        let Some(rest) = path.strip_prefix('/') else {
            return true;
        };
        let mut tokens = rest.split('/').peekable();
        let mut i = 0;
        while let Some(token) = tokens.next() {
            if i == self.segments.len() {
                // The path lies below the pattern.
                return true;
            }
            let segment = self.segment(i);
            let last = tokens.peek().is_none();
            if segment != "*" && segment != token {
                // Differs here; only an insertion or removal before this index can
                // still move the watched element.
                return shifts && last && shifted(token, segment);
            }
            i += 1;
        }
        // The path is the pattern or one of its parents.
        true
    }
}

/// Whether inserting or removing at array index `at` (or appending, `-`) moves or
/// creates the element at index `watched`: any index at or after `at`.
fn shifted(at: &str, watched: &str) -> bool {
    if !is_index(watched) {
        return false;
    }
    if at == "-" {
        return true;
    }
    is_index(at) && (at.len(), at).cmp(&(watched.len(), watched)) != Ordering::Greater
}

/// An RFC 6901 array index: `0`, or digits without a leading zero.
fn is_index(s: &str) -> bool {
    match s.as_bytes() {
        [] => false,
        [b'0'] => true,
        [b'0', ..] => false,
        bytes => bytes.iter().all(u8::is_ascii_digit),
    }
}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Pattern").field(&self.as_str()).finish()
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl core::str::FromStr for Pattern {
    type Err = PatternError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}
