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
/// lack of room, and by the waits that have no deadline (futures and
/// [`WaitStrategy`](super::WaitStrategy) waits), which wait for room. Their pops
/// return `Closed<()>` (the default parameter) once the ring is closed and drained.
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

/// A blocking push ([`push_wait`](super::RingCore::push_wait), and the
/// [`spsc`](super::spsc) producer's) that did not store its item; the item comes back
/// inside.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub enum PushWaitError<T> {
    /// The ring stayed full until the deadline (never under
    /// [`Wait::Forever`](crate::policy::Wait::Forever)).
    Timeout(T),
    /// The ring was closed (before or while waiting).
    Closed(T),
}

impl<T> PushWaitError<T> {
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

impl<T> fmt::Debug for PushWaitError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Timeout(_) => f.write_str("Timeout(..)"),
            Self::Closed(_) => f.write_str("Closed(..)"),
        }
    }
}

impl<T> fmt::Display for PushWaitError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Timeout(_) => f.write_str("timed out waiting for room in the ring"),
            Self::Closed(_) => f.write_str("ring is closed"),
        }
    }
}

impl<T> core::error::Error for PushWaitError<T> {}

impl<T> From<Closed<T>> for PushWaitError<T> {
    fn from(closed: Closed<T>) -> Self {
        Self::Closed(closed.0)
    }
}

/// Why a blocking pop ([`pop_wait`](super::RingCore::pop_wait)) returned nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PopWaitError {
    /// Nothing arrived before the deadline (never under
    /// [`Wait::Forever`](crate::policy::Wait::Forever)).
    Timeout,
    /// The ring is closed and everything it held has been taken.
    Closed,
}

impl fmt::Display for PopWaitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Timeout => f.write_str("timed out waiting for an item"),
            Self::Closed => f.write_str("ring is closed and drained"),
        }
    }
}

impl core::error::Error for PopWaitError {}

impl From<Closed> for PopWaitError {
    fn from(_: Closed) -> Self {
        Self::Closed
    }
}
