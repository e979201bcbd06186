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
pub(crate) use loom::sync::atomic::{fence, AtomicBool, AtomicU64, AtomicU8};
#[cfg(not(loom))]
pub(crate) use portable_atomic::{fence, AtomicBool, AtomicU64, AtomicU8};

/// Thread parking: loom's threads under loom, the OS's under `std`.
#[cfg(feature = "std")]
pub(crate) mod thread {
    #[cfg(loom)]
    pub(crate) use loom::thread::{current, park, Thread};
    #[cfg(not(loom))]
    pub(crate) use std::thread::{current, park, park_timeout, Thread};
}

/// A cell whose accesses loom can check for data races.
///
/// The API is loom's: access goes through closures that receive a raw pointer, so the
/// production build compiles to a plain `core::cell::UnsafeCell` access.
#[derive(Debug)]
#[cfg_attr(not(loom), repr(transparent))]
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

    /// Whether spinning and yielding have run their course and a waiter should
    /// rather sleep (crossbeam's rule: a few yields are cheaper than a park/unpark
    /// pair when the other side is about to make progress).
    #[cfg(all(feature = "std", not(loom)))]
    #[inline]
    pub(crate) fn is_completed(&self) -> bool {
        self.step > Self::YIELD_LIMIT
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

/// The process-wide `membarrier` registration behind the asymmetric barrier.
#[cfg(all(feature = "std", target_os = "linux", not(loom)))]
mod membarrier {
    use core::sync::atomic::{AtomicU8, Ordering};

    // From <linux/membarrier.h>.
    const CMD_PRIVATE_EXPEDITED: libc::c_long = 1 << 3;
    const CMD_REGISTER_PRIVATE_EXPEDITED: libc::c_long = 1 << 4;

    const UNKNOWN: u8 = 0;
    const READY: u8 = 1;
    const UNAVAILABLE: u8 = 2;

    static STATE: AtomicU8 = AtomicU8::new(UNKNOWN);

    pub(super) fn init() {
        if STATE.load(Ordering::Acquire) != UNKNOWN {
            return;
        }
        // SAFETY: a plain syscall with integer arguments; it changes no memory of
        // ours. Registration is idempotent.
        let registered = unsafe {
            libc::syscall(
                libc::SYS_membarrier,
                CMD_REGISTER_PRIVATE_EXPEDITED,
                0 as libc::c_long,
                0 as libc::c_long,
            )
        } == 0;
        // Release: a thread that sees READY sees a registered process.
        STATE.store(
            if registered { READY } else { UNAVAILABLE },
            Ordering::Release,
        );
    }

    #[inline(always)]
    pub(super) fn ready() -> bool {
        STATE.load(Ordering::Acquire) == READY
    }

    /// Runs a full barrier on every running thread of the process.
    pub(super) fn barrier() -> bool {
        // SAFETY: as in `init`.
        let done = unsafe {
            libc::syscall(
                libc::SYS_membarrier,
                CMD_PRIVATE_EXPEDITED,
                0 as libc::c_long,
                0 as libc::c_long,
            )
        };
        done == 0
    }
}

/// Prepares the asymmetric barrier (registers with `membarrier` on Linux under
/// `std`). Called when a structure that uses it is built, so its fast side is cheap
/// from the first operation.
pub(crate) fn asymmetric_barrier_init() {
    #[cfg(all(feature = "std", target_os = "linux", not(loom)))]
    membarrier::init();
}

/// Whether [`asymmetric_barrier_light`] may be a compiler fence: the heavy side can
/// use `membarrier`. Once true it stays true, so a structure can read it once, when
/// it is built, and pass it to every light barrier.
#[inline]
pub(crate) fn asymmetric_barrier_is_cheap() -> bool {
    #[cfg(all(feature = "std", target_os = "linux", not(loom)))]
    return membarrier::ready();
    #[cfg(not(all(feature = "std", target_os = "linux", not(loom))))]
    return false;
}

/// The fast side of a store-load barrier between a thread that publishes an index
/// and then reads a waiter count, and a waiter that registers and then re-reads the
/// index ([`asymmetric_barrier_heavy`]). `cheap` is what
/// [`asymmetric_barrier_is_cheap`] said: then a compiler fence, otherwise (and under
/// loom) a `SeqCst` fence.
#[inline(always)]
pub(crate) fn asymmetric_barrier_light(cheap: bool) {
    if cheap {
        core::sync::atomic::compiler_fence(Ordering::SeqCst);
        return;
    }
    #[cfg(loom)]
    if loom_no_waiters() {
        return;
    }
    fence(Ordering::SeqCst);
}

#[cfg(loom)]
std::thread_local! {
    static LOOM_NO_WAITERS: core::cell::Cell<bool> = const { core::cell::Cell::new(false) };
}

/// Whether the running loom model promised that nobody waits
/// ([`loom_assume_no_waiters`]).
#[cfg(loom)]
pub(crate) fn loom_no_waiters() -> bool {
    LOOM_NO_WAITERS.with(core::cell::Cell::get)
}

/// For loom models in which no thread waits: drops the loom-only `SeqCst` fences of
/// the notify path (see `ring::wait`). Loom makes a `SeqCst` fence synchronise with
/// every earlier one, which would hide a missing Release/Acquire on an index; a
/// model without waiters does not need those fences, so it can check the indices'
/// own orderings. Per OS thread, so concurrent tests do not interfere.
#[cfg(loom)]
#[doc(hidden)]
pub fn loom_assume_no_waiters(yes: bool) {
    LOOM_NO_WAITERS.with(|flag| flag.set(yes));
}

/// The slow side of the asymmetric barrier: after it returns, every thread that ran
/// [`asymmetric_barrier_light`] has either had its earlier stores made visible to us,
/// or will see our earlier stores after its barrier.
pub(crate) fn asymmetric_barrier_heavy() {
    #[cfg(all(feature = "std", target_os = "linux", not(loom)))]
    if membarrier::ready() && membarrier::barrier() {
        return;
    }
    fence(Ordering::SeqCst);
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
