//! Soft capacities: the knob the memory monitor turns.
//!
//! A bounded structure reserves its memory once, at construction, up to a maximum.
//! Its *soft capacity* is how much of that reservation it may use right now. Under
//! memory pressure a manager lowers the soft capacity of every registered structure
//! and restores it when pressure falls; the structure never allocates to do either.
//!
//! [`SoftCapacity`] is the crate's one pressure route: everything that can shrink
//! implements it and is registered with a manager
//! ([`CapacityTargets`](crate::pressure::CapacityTargets), which the `std`
//! `MemoryManager` drives). The manager hands each target the new level together
//! with the capacity for it ([`apply_pressure`](SoftCapacity::apply_pressure)), so a
//! structure with rules per level (a WebSocket queue that halves its room for
//! droppable events at Critical, say) acts on the level as well. The pressure layer
//! only sees the trait, so it never imports the structures (DESIGN: a lower layer
//! never imports a higher one, and siblings meet through traits).

use core::fmt;

use crate::pressure::PressureLevel;

/// A structure whose usable capacity can change at runtime, within what it reserved.
///
/// Implementations take effect immediately and are safe to call concurrently with
/// the structure's other operations. What happens to items beyond a lowered capacity
/// is the structure's documented policy (drop the oldest, or refuse new items until
/// drained).
pub trait SoftCapacity {
    /// The capacity in force now: `1..=max_capacity()`.
    fn capacity(&self) -> usize;

    /// The most [`set_capacity`](SoftCapacity::set_capacity) accepts: what was reserved
    /// at construction.
    fn max_capacity(&self) -> usize;

    /// Sets the usable capacity.
    ///
    /// # Errors
    ///
    /// [`CapacityError::Zero`] for 0, [`CapacityError::AboveMax`] beyond
    /// [`max_capacity`](SoftCapacity::max_capacity); the capacity is unchanged then.
    fn set_capacity(&self, capacity: usize) -> Result<(), CapacityError>;

    /// Applies a pressure level: the manager calls this on every level transition
    /// with `capacity`, the size it computed for `level` (for a registered target,
    /// [`adaptive_size`](crate::pressure::adaptive_size) of its base).
    ///
    /// The default sets the capacity and ignores the level. A structure whose rules
    /// depend on the level as well overrides it; it must still apply `capacity`.
    ///
    /// # Errors
    ///
    /// As [`set_capacity`](SoftCapacity::set_capacity).
    fn apply_pressure(&self, level: PressureLevel, capacity: usize) -> Result<(), CapacityError> {
        let _ = level;
        self.set_capacity(capacity)
    }

    /// The bytes the structure holds now and the most it can hold, where it knows
    /// them: what a memory budget
    /// ([`MemoryManager::budget`](crate::monitor::MemoryManager::budget), `std`)
    /// lists. Each implementation documents what it counts. The default: unknown.
    fn footprint(&self) -> Option<Footprint> {
        None
    }

    /// A short name of the kind of structure (`"ring"`, `"table"`), for budgets
    /// and exports: the kind of its metrics where it has them. The default:
    /// `"component"`.
    fn kind(&self) -> &'static str {
        "component"
    }
}

/// What a structure holds in memory ([`SoftCapacity::footprint`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Footprint {
    /// Bytes held now.
    pub bytes: u64,
    /// The most bytes it can hold, as configured (its reservation, or its limit).
    pub max_bytes: u64,
}

impl Footprint {
    /// Bytes reserved once, at construction: now and at most alike.
    pub const fn reserved(bytes: u64) -> Self {
        Self {
            bytes,
            max_bytes: bytes,
        }
    }
}

/// The bytes a structure reserved: its own size, plus each buffer of `buffers`
/// (address, length in bytes) that does not lie inside it (heap storage; inline
/// storage is part of its size already).
pub(crate) fn reserved_bytes<O>(owner: &O, buffers: &[(*const u8, usize)]) -> u64 {
    let start = core::ptr::from_ref(owner).cast::<u8>() as usize;
    let size = core::mem::size_of::<O>();
    let outside = buffers
        .iter()
        .filter(|(at, _)| !(start..start + size).contains(&(*at as usize)))
        .map(|&(_, len)| len);
    (size + outside.sum::<usize>()) as u64
}

/// The body of a [`SoftCapacity`] impl that hands every call to another
/// `SoftCapacity`: `forward_soft_capacity!(self => self.queue)` or, for references
/// and smart pointers, `forward_soft_capacity!(self => **self)`. (`self` is named
/// at the call site so that the macro's methods can use it.)
macro_rules! forward_soft_capacity {
    ($this:ident => $to:expr) => {
        fn capacity(&$this) -> usize {
            ($to).capacity()
        }
        fn max_capacity(&$this) -> usize {
            ($to).max_capacity()
        }
        fn set_capacity(&$this, capacity: usize) -> Result<(), $crate::capacity::CapacityError> {
            ($to).set_capacity(capacity)
        }
        fn apply_pressure(
            &$this,
            level: $crate::pressure::PressureLevel,
            capacity: usize,
        ) -> Result<(), $crate::capacity::CapacityError> {
            ($to).apply_pressure(level, capacity)
        }
        fn footprint(&$this) -> Option<$crate::capacity::Footprint> {
            ($to).footprint()
        }
        fn kind(&$this) -> &'static str {
            ($to).kind()
        }
    };
}
#[cfg(feature = "ws")]
pub(crate) use forward_soft_capacity;

impl<S: SoftCapacity + ?Sized> SoftCapacity for &S {
    forward_soft_capacity!(self => **self);
}

#[cfg(feature = "alloc")]
impl<S: SoftCapacity + ?Sized> SoftCapacity for alloc::sync::Arc<S> {
    forward_soft_capacity!(self => **self);
}

/// Why a soft capacity was not changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CapacityError {
    /// A capacity of zero: the structure could hold nothing.
    Zero,
    /// More than the structure reserved at construction.
    AboveMax {
        /// The capacity asked for.
        requested: usize,
        /// The most that was reserved.
        max: usize,
    },
}

impl fmt::Display for CapacityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Zero => f.write_str("capacity must be at least 1"),
            Self::AboveMax { requested, max } => write!(
                f,
                "capacity {requested} exceeds the {max} reserved at construction"
            ),
        }
    }
}

impl core::error::Error for CapacityError {}

/// Checks `capacity` against `1..=max`: the one validation every implementation
/// shares.
pub(crate) fn check(capacity: usize, max: usize) -> Result<(), CapacityError> {
    if capacity == 0 {
        Err(CapacityError::Zero)
    } else if capacity > max {
        Err(CapacityError::AboveMax {
            requested: capacity,
            max,
        })
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_bounds() {
        assert_eq!(check(0, 4), Err(CapacityError::Zero));
        assert_eq!(check(1, 4), Ok(()));
        assert_eq!(check(4, 4), Ok(()));
        assert_eq!(
            check(5, 4),
            Err(CapacityError::AboveMax {
                requested: 5,
                max: 4
            })
        );
    }
}
