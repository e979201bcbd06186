//! Errors of the ring family. Every error that refuses an item hands it back.

use core::fmt;

/// A push that did not store its item; the item comes back inside.
///
/// # Examples
///
/// ```
/// use membound::ring::{PushError, Ring};
///
/// let ring = Ring::new(1)?;
/// ring.try_push(1)?;
/// match ring.try_push(2) {
///     Err(PushError::Full(item)) => assert_eq!(item, 2),
///     other => panic!("unexpected {other:?}"),
/// }
/// ring.close();
/// assert_eq!(ring.try_push(3), Err(PushError::Closed(3)));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub enum PushError<T> {
    /// The ring was full and the policy (or the call) did not make room.
    Full(T),
    /// The ring was closed; nothing more is accepted.
    Closed(T),
}

impl<T> PushError<T> {
    /// Takes the refused item back.
    pub fn into_inner(self) -> T {
        match self {
            Self::Full(item) | Self::Closed(item) => item,
        }
    }

    /// Whether the ring was full.
    pub fn is_full(&self) -> bool {
        matches!(self, Self::Full(_))
    }

    /// Whether the ring was closed.
    pub fn is_closed(&self) -> bool {
        matches!(self, Self::Closed(_))
    }
}

impl<T> fmt::Debug for PushError<T> {
    // No `T: Debug` bound, so `?` works on rings of any item type.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Full(_) => f.write_str("Full(..)"),
            Self::Closed(_) => f.write_str("Closed(..)"),
        }
    }
}

impl<T> fmt::Display for PushError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Full(_) => f.write_str("ring is full"),
            Self::Closed(_) => f.write_str("ring is closed"),
        }
    }
}

impl<T> core::error::Error for PushError<T> {}

/// The ring was closed; the refused item comes back inside.
///
/// Returned by [`force_push`](super::RingCore::force_push), which never fails for
/// lack of room, and by the waiting pushes, which wait for room. Waiting pops return
/// `Closed<()>` (the default parameter) once the ring is closed and drained.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Closed<T = ()>(pub T);

impl<T> Closed<T> {
    /// Takes the refused item back.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> fmt::Debug for Closed<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Closed(..)")
    }
}

impl<T> fmt::Display for Closed<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ring is closed")
    }
}

impl<T> core::error::Error for Closed<T> {}

impl<T> From<Closed<T>> for PushError<T> {
    fn from(closed: Closed<T>) -> Self {
        Self::Closed(closed.0)
    }
}

/// Why a pop returned nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PopError {
    /// Nothing is stored right now; more may come.
    Empty,
    /// The ring is closed and everything it held has been taken.
    Closed,
}

impl fmt::Display for PopError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("ring is empty"),
            Self::Closed => f.write_str("ring is closed and drained"),
        }
    }
}

impl core::error::Error for PopError {}

/// A timed push that did not store its item; the item comes back inside.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub enum PushTimeoutError<T> {
    /// The ring stayed full until the deadline.
    Timeout(T),
    /// The ring was closed (before or while waiting).
    Closed(T),
}

impl<T> PushTimeoutError<T> {
    /// Takes the refused item back.
    pub fn into_inner(self) -> T {
        match self {
            Self::Timeout(item) | Self::Closed(item) => item,
        }
    }

    /// Whether the deadline passed.
    pub fn is_timeout(&self) -> bool {
        matches!(self, Self::Timeout(_))
    }
}

impl<T> fmt::Debug for PushTimeoutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Timeout(_) => f.write_str("Timeout(..)"),
            Self::Closed(_) => f.write_str("Closed(..)"),
        }
    }
}

impl<T> fmt::Display for PushTimeoutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Timeout(_) => f.write_str("timed out waiting for room in the ring"),
            Self::Closed(_) => f.write_str("ring is closed"),
        }
    }
}

impl<T> core::error::Error for PushTimeoutError<T> {}

impl<T> From<Closed<T>> for PushTimeoutError<T> {
    fn from(closed: Closed<T>) -> Self {
        Self::Closed(closed.0)
    }
}

/// Why a timed pop returned nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PopTimeoutError {
    /// Nothing arrived before the deadline.
    Timeout,
    /// The ring is closed and everything it held has been taken.
    Closed,
}

impl fmt::Display for PopTimeoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Timeout => f.write_str("timed out waiting for an item"),
            Self::Closed => f.write_str("ring is closed and drained"),
        }
    }
}

impl core::error::Error for PopTimeoutError {}

impl From<Closed> for PopTimeoutError {
    fn from(_: Closed) -> Self {
        Self::Closed
    }
}

/// A ring configuration that cannot work.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ConfigError {
    /// A capacity of zero was asked for; a ring holds at least one item.
    ZeroCapacity,
    /// The capacity exceeds [`MAX_CAPACITY`](super::MAX_CAPACITY).
    CapacityTooLarge {
        /// The capacity asked for.
        requested: usize,
    },
    /// A maximum capacity (`max_capacity`, or a `Grow` policy's `max`) below the
    /// initial capacity.
    MaxBelowCapacity {
        /// The initial capacity.
        capacity: usize,
        /// The maximum asked for.
        max: usize,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ZeroCapacity => f.write_str("ring capacity must be at least 1"),
            Self::CapacityTooLarge { requested } => write!(
                f,
                "ring capacity {requested} exceeds the maximum of {}",
                super::MAX_CAPACITY
            ),
            Self::MaxBelowCapacity { capacity, max } => write!(
                f,
                "maximum capacity {max} is below the initial capacity {capacity}"
            ),
        }
    }
}

impl core::error::Error for ConfigError {}
