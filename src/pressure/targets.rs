//! Soft-capacity targets: the structures a manager shrinks under pressure and
//! restores after it (`alloc`).

use alloc::sync::{Arc, Weak};
use alloc::vec::Vec;

use super::{adaptive_size, PressureLevel};
use crate::capacity::{self, CapacityError, SoftCapacity};

/// Identifies a registration in [`CapacityTargets`], for
/// [`remove`](CapacityTargets::remove).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TargetId(pub(crate) u64);

/// What one [`CapacityTargets::apply`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ApplyReport {
    /// Targets whose capacity was set (whether or not it changed).
    pub applied: usize,
    /// Targets that refused the new capacity (their `set_capacity` returned an error).
    pub refused: usize,
    /// Targets that had been dropped by their owners and were forgotten.
    pub forgotten: usize,
}

struct Entry {
    id: TargetId,
    /// Weak: registering a ring does not keep it alive; a dropped ring is forgotten
    /// at the next `apply`.
    target: Weak<dyn SoftCapacity + Send + Sync>,
    /// The capacity at Normal pressure; the other levels take their
    /// [`adaptive_size`] of it.
    base: usize,
    /// The name a budget lists it under; `None`: its kind.
    name: Option<Arc<str>>,
}

/// One registered target as a memory budget lists it
/// ([`CapacityTargets::budget`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetEntry {
    /// The registration.
    pub id: TargetId,
    /// The name it was registered under, or its kind.
    pub name: Arc<str>,
    /// Its kind ([`SoftCapacity::kind`]).
    pub kind: &'static str,
    /// Its bytes now and at most, where it reports them
    /// ([`SoftCapacity::footprint`]).
    pub footprint: Option<crate::capacity::Footprint>,
    /// Its capacity in force.
    pub capacity: usize,
    /// Its maximum capacity.
    pub max_capacity: usize,
}

/// The soft-capacity targets (rings, tables) a memory manager resizes on each level
/// transition: to [`adaptive_size`]`(base, level)`, so 100/75/50/25 % of the
/// capacity they had when registered, and back to that base at `Normal`. Each target
/// receives the level with its capacity
/// ([`SoftCapacity::apply_pressure`]).
///
/// Targets are held weakly: the registry never keeps a structure alive, and one
/// dropped by its owner is forgotten.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use std::sync::atomic::{AtomicUsize, Ordering};
/// use membound::capacity::{CapacityError, SoftCapacity};
/// use membound::pressure::{CapacityTargets, PressureLevel};
///
/// /// A cache whose entry budget follows memory pressure.
/// struct Budget { max: usize, now: AtomicUsize }
/// impl SoftCapacity for Budget {
///     fn capacity(&self) -> usize { self.now.load(Ordering::Relaxed) }
///     fn max_capacity(&self) -> usize { self.max }
///     fn set_capacity(&self, capacity: usize) -> Result<(), CapacityError> {
///         if capacity == 0 { return Err(CapacityError::Zero); }
///         if capacity > self.max {
///             return Err(CapacityError::AboveMax { requested: capacity, max: self.max });
///         }
///         self.now.store(capacity, Ordering::Relaxed);
///         Ok(())
///     }
/// }
///
/// let cache = Arc::new(Budget { max: 1000, now: AtomicUsize::new(1000) });
/// let mut targets = CapacityTargets::new();
/// targets.register(&cache);
/// targets.apply(PressureLevel::High);
/// assert_eq!(cache.capacity(), 500);
/// targets.apply(PressureLevel::Normal);
/// assert_eq!(cache.capacity(), 1000);
/// ```
#[derive(Default)]
pub struct CapacityTargets {
    entries: Vec<Entry>,
    next_id: u64,
}

impl CapacityTargets {
    /// An empty registry.
    pub const fn new() -> Self {
        Self {
            entries: Vec::new(),
            next_id: 0,
        }
    }

    /// Registers `target` with its current capacity as the base it is restored to.
    pub fn register<T>(&mut self, target: &Arc<T>) -> TargetId
    where
        T: SoftCapacity + Send + Sync + 'static,
    {
        let base = target.capacity();
        self.push(target, base, None)
    }

    /// [`register`](Self::register) under a name, which a budget lists it by.
    pub fn register_named<T>(&mut self, name: impl Into<Arc<str>>, target: &Arc<T>) -> TargetId
    where
        T: SoftCapacity + Send + Sync + 'static,
    {
        let base = target.capacity();
        self.push(target, base, Some(name.into()))
    }

    /// Registers `target` with an explicit `base` capacity (its size at Normal).
    ///
    /// # Errors
    ///
    /// [`CapacityError`] if `base` is 0 or above the target's
    /// [`max_capacity`](SoftCapacity::max_capacity); nothing is registered then.
    pub fn register_with_base<T>(
        &mut self,
        target: &Arc<T>,
        base: usize,
    ) -> Result<TargetId, CapacityError>
    where
        T: SoftCapacity + Send + Sync + 'static,
    {
        capacity::check(base, target.max_capacity())?;
        Ok(self.push(target, base, None))
    }

    fn push<T>(&mut self, target: &Arc<T>, base: usize, name: Option<Arc<str>>) -> TargetId
    where
        T: SoftCapacity + Send + Sync + 'static,
    {
        // Forget targets dropped since the last `apply`, so that a registry whose
        // targets come and go (one per connection, say) stays bounded by the live ones
        // even while the level never changes.
        self.entries.retain(|entry| entry.target.strong_count() > 0);
        let id = TargetId(self.next_id);
        self.next_id += 1;
        let weak: Weak<T> = Arc::downgrade(target);
        self.entries.push(Entry {
            id,
            target: weak,
            base,
            name,
        });
        id
    }

    /// Forgets a registration; the target keeps whatever capacity it has. Returns
    /// whether it was registered.
    pub fn remove(&mut self, id: TargetId) -> bool {
        let before = self.entries.len();
        self.entries.retain(|entry| entry.id != id);
        self.entries.len() != before
    }

    /// Sets every live target to [`adaptive_size`]`(base, level)` and forgets targets
    /// that were dropped. Does not allocate.
    pub fn apply(&mut self, level: PressureLevel) -> ApplyReport {
        let mut report = ApplyReport::default();
        self.entries.retain(|entry| match entry.target.upgrade() {
            Some(target) => {
                match target.apply_pressure(level, adaptive_size(entry.base, level)) {
                    Ok(()) => report.applied += 1,
                    Err(_) => report.refused += 1,
                }
                true
            }
            None => {
                report.forgotten += 1;
                false
            }
        });
        report
    }

    /// Every live target's name, kind, footprint and capacities, in registration
    /// order (targets dropped by their owners are left out).
    pub fn budget(&self) -> Vec<BudgetEntry> {
        self.entries
            .iter()
            .filter_map(|entry| {
                let target = entry.target.upgrade()?;
                let kind = target.kind();
                Some(BudgetEntry {
                    id: entry.id,
                    name: entry.name.clone().unwrap_or_else(|| Arc::from(kind)),
                    kind,
                    footprint: target.footprint(),
                    capacity: target.capacity(),
                    max_capacity: target.max_capacity(),
                })
            })
            .collect()
    }

    /// The number of registrations, including targets dropped since the last
    /// [`apply`](Self::apply).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is registered.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl core::fmt::Debug for CapacityTargets {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("CapacityTargets")
            .field("len", &self.entries.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::{AtomicU64, Ordering};

    /// A test-local soft capacity: an atomic number within `1..=max`.
    struct Knob {
        max: usize,
        now: AtomicU64,
        refuse: bool,
    }

    impl Knob {
        fn new(now: usize, max: usize) -> Arc<Self> {
            Arc::new(Self {
                max,
                now: AtomicU64::new(now as u64),
                refuse: false,
            })
        }
    }

    impl SoftCapacity for Knob {
        fn capacity(&self) -> usize {
            self.now.load(Ordering::Relaxed) as usize
        }
        fn max_capacity(&self) -> usize {
            self.max
        }
        fn set_capacity(&self, capacity: usize) -> Result<(), CapacityError> {
            capacity::check(capacity, if self.refuse { 0 } else { self.max })?;
            self.now.store(capacity as u64, Ordering::Relaxed);
            Ok(())
        }
    }

    #[test]
    fn shrinks_and_restores_to_the_registered_base() {
        let a = Knob::new(800, 1000);
        let b = Knob::new(3, 3);
        let mut targets = CapacityTargets::new();
        targets.register(&a);
        targets.register(&b);
        for (level, expect_a, expect_b) in [
            (PressureLevel::Low, 600, 2),
            (PressureLevel::Critical, 200, 1),
            (PressureLevel::High, 400, 1),
            (PressureLevel::Normal, 800, 3),
        ] {
            let report = targets.apply(level);
            assert_eq!(report.applied, 2);
            assert_eq!(
                (a.capacity(), b.capacity()),
                (expect_a, expect_b),
                "{level}"
            );
        }
    }

    #[test]
    fn explicit_base_is_checked() {
        let a = Knob::new(10, 100);
        let mut targets = CapacityTargets::new();
        assert_eq!(targets.register_with_base(&a, 0), Err(CapacityError::Zero));
        assert!(matches!(
            targets.register_with_base(&a, 101),
            Err(CapacityError::AboveMax { .. })
        ));
        assert!(targets.is_empty());
        targets.register_with_base(&a, 100).unwrap();
        targets.apply(PressureLevel::Normal);
        assert_eq!(a.capacity(), 100);
    }

    #[test]
    fn dropped_targets_are_forgotten_and_removal_works() {
        let a = Knob::new(10, 10);
        let b = Knob::new(10, 10);
        let mut targets = CapacityTargets::new();
        let id_a = targets.register(&a);
        targets.register(&b);
        drop(b);
        let report = targets.apply(PressureLevel::High);
        assert_eq!((report.applied, report.forgotten), (1, 1));
        assert_eq!(targets.len(), 1);
        assert!(targets.remove(id_a));
        assert!(!targets.remove(id_a));
        targets.apply(PressureLevel::Normal);
        assert_eq!(a.capacity(), 5, "removed targets keep their capacity");
    }

    #[test]
    fn refusals_are_counted_not_fatal() {
        let a = Arc::new(Knob {
            max: 10,
            now: AtomicU64::new(10),
            refuse: true,
        });
        let b = Knob::new(10, 10);
        let mut targets = CapacityTargets::new();
        targets.register(&a);
        targets.register(&b);
        let report = targets.apply(PressureLevel::Low);
        assert_eq!((report.applied, report.refused), (1, 1));
        assert_eq!((a.capacity(), b.capacity()), (10, 7));
    }

    /// A target that records the level it was last given, as a structure with
    /// per-level rules would.
    struct LevelKnob {
        knob: Knob,
        level: AtomicU64,
    }

    impl SoftCapacity for LevelKnob {
        fn capacity(&self) -> usize {
            self.knob.capacity()
        }
        fn max_capacity(&self) -> usize {
            self.knob.max_capacity()
        }
        fn set_capacity(&self, capacity: usize) -> Result<(), CapacityError> {
            self.knob.set_capacity(capacity)
        }
        fn apply_pressure(
            &self,
            level: PressureLevel,
            capacity: usize,
        ) -> Result<(), CapacityError> {
            self.level.store(level as u64, Ordering::Relaxed);
            self.set_capacity(capacity)
        }
    }

    #[test]
    fn targets_receive_the_level_with_their_capacity() {
        let target = Arc::new(LevelKnob {
            knob: Knob {
                max: 8,
                now: AtomicU64::new(8),
                refuse: false,
            },
            level: AtomicU64::new(PressureLevel::Normal as u64),
        });
        let mut targets = CapacityTargets::new();
        targets.register(&target);
        for level in [
            PressureLevel::Critical,
            PressureLevel::Low,
            PressureLevel::Normal,
        ] {
            targets.apply(level);
            assert_eq!(target.level.load(Ordering::Relaxed), level as u64);
            assert_eq!(target.capacity(), adaptive_size(8, level));
        }
    }

    #[test]
    fn registering_forgets_dropped_targets_without_an_apply() {
        let mut targets = CapacityTargets::new();
        for _ in 0..100 {
            let short_lived = Knob::new(4, 4);
            targets.register(&short_lived);
        }
        let kept = Knob::new(4, 4);
        targets.register(&kept);
        assert_eq!(targets.len(), 1, "only the live target stays registered");
    }
}
