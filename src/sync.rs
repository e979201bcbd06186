//! The one place atomics, cells, spin hints and thread yields come from.
//!
//! Under `cfg(loom)` everything here is loom's, so the model checker sees every
//! atomic access, every cell access and every spin of the production code
//! unchanged (the tokio pattern). Otherwise atomics are portable-atomic's, which gives
//! 64-bit atomics even on targets that lack them natively (DESIGN rule 4).

pub(crate) use core::sync::atomic::Ordering;

/// Declares a `const fn`, except under loom, whose atomics and cells cannot be built
/// in a const context. Keeps one body for both builds.
macro_rules! const_unless_loom {
    ($(#[$attr:meta])* $vis:vis fn $($rest:tt)*) => {
        #[cfg(not(loom))]
        $(#[$attr])* $vis const fn $($rest)*
        #[cfg(loom)]
        $(#[$attr])* $vis fn $($rest)*
    };
}
pub(crate) use const_unless_loom;

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{fence, AtomicU64};
#[cfg(not(loom))]
pub(crate) use portable_atomic::{fence, AtomicU64};

/// A cell whose accesses loom can check for data races.
///
/// The API is loom's: access goes through closures that receive a raw pointer, so the
/// production build compiles to a plain `core::cell::UnsafeCell` access.
#[derive(Debug)]
pub(crate) struct UnsafeCell<T>(
    #[cfg(loom)] loom::cell::UnsafeCell<T>,
    #[cfg(not(loom))] core::cell::UnsafeCell<T>,
);

impl<T> UnsafeCell<T> {
    const_unless_loom! {
        pub(crate) fn new(value: T) -> Self {
            #[cfg(loom)]
            return Self(loom::cell::UnsafeCell::new(value));
            #[cfg(not(loom))]
            return Self(core::cell::UnsafeCell::new(value));
        }
    }

    /// Runs `f` with a shared pointer to the contents.
    #[inline(always)]
    pub(crate) fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
        #[cfg(loom)]
        return self.0.with(f);
        #[cfg(not(loom))]
        return f(self.0.get());
    }

    /// Runs `f` with an exclusive pointer to the contents.
    #[inline(always)]
    pub(crate) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        #[cfg(loom)]
        return self.0.with_mut(f);
        #[cfg(not(loom))]
        return f(self.0.get());
    }
}

/// Exponential backoff for spin loops: the one helper every retry loop goes through.
///
/// `spin` is for contention on a CAS (retry soon); `snooze` is for waiting on another
/// thread to finish its step (a producer mid-write, a consumer mid-read). Under loom
/// both yield to the scheduler so models stay finite; under `std`, a long snooze yields
/// the OS thread so an oversubscribed machine makes progress.
pub(crate) struct Backoff {
    step: u32,
}

impl Backoff {
    const SPIN_LIMIT: u32 = 6;
    #[cfg(feature = "std")]
    const YIELD_LIMIT: u32 = 10;

    #[inline]
    pub(crate) const fn new() -> Self {
        Self { step: 0 }
    }

    /// Backs off after a lost race on a shared position.
    #[inline]
    pub(crate) fn spin(&mut self) {
        #[cfg(loom)]
        loom::thread::yield_now();
        #[cfg(not(loom))]
        for _ in 0..1u32 << self.step.min(Self::SPIN_LIMIT) {
            core::hint::spin_loop();
        }
        if self.step <= Self::SPIN_LIMIT {
            self.step += 1;
        }
    }

    /// Waits for another thread to complete a step it has already begun.
    #[inline]
    pub(crate) fn snooze(&mut self) {
        #[cfg(loom)]
        loom::thread::yield_now();
        #[cfg(not(loom))]
        {
            if self.step <= Self::SPIN_LIMIT {
                for _ in 0..1u32 << self.step {
                    core::hint::spin_loop();
                }
            } else {
                #[cfg(feature = "std")]
                std::thread::yield_now();
                #[cfg(not(feature = "std"))]
                for _ in 0..1u32 << Self::SPIN_LIMIT {
                    core::hint::spin_loop();
                }
            }
        }
        #[cfg(feature = "std")]
        let limit = Self::YIELD_LIMIT;
        #[cfg(not(feature = "std"))]
        let limit = Self::SPIN_LIMIT + 1;
        if self.step <= limit {
            self.step += 1;
        }
    }
}

/// Relaxed counters that stay portable-atomic's even under loom.
///
/// For state that lives in a `static` built by a `const fn` and is touched from inside
/// the global allocator ([`TrackingAllocator`](crate::heap::TrackingAllocator)).
/// Loom's atomics can do neither: they are not const, and they allocate to record
/// their history, which would recurse into the allocator being modelled. Nothing here
/// takes part in a synchronization protocol: every use is a statistics counter read
/// with `Relaxed`, so a model would have nothing to check.
pub(crate) mod counters {
    pub(crate) use portable_atomic::{AtomicU64, AtomicUsize};
}

/// The locks, flag and thread-local of the memory manager's subscription protocol
/// (std): loom's under `cfg(loom)`, so `loom-tests/tests/monitor.rs` checks
/// unsubscribe racing a delivery on the production code.
#[cfg(feature = "std")]
pub(crate) mod blocking {
    #[cfg(loom)]
    pub(crate) use loom::sync::atomic::AtomicBool;
    #[cfg(loom)]
    pub(crate) use loom::sync::Mutex;
    #[cfg(loom)]
    pub(crate) use loom::thread_local;
    #[cfg(not(loom))]
    pub(crate) use std::sync::atomic::AtomicBool;
    #[cfg(not(loom))]
    pub(crate) use std::sync::Mutex;
    #[cfg(not(loom))]
    pub(crate) use std::thread_local;
}
