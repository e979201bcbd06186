//! Waiting without paying for it when nobody waits: an eventcount over an intrusive
//! list of waiters.
//!
//! # The protocol
//!
//! A side of a ring (its consumers, or its producers) has one [`WaitQueue`]. A thread
//! or task that finds the ring empty (or full) and wants to wait:
//!
//! 1. links a [`Waiter`] it owns into the queue ([`WaitQueue::register`]), which bumps
//!    the queue's waiter count with a `SeqCst` RMW and then issues a `SeqCst` fence;
//! 2. tries its operation again, and only if that fails
//! 3. sleeps until its waiter is marked notified (parks the thread, returns
//!    `Poll::Pending`, or runs a [`WaitStrategy`]).
//!
//! The other side, after every operation that can satisfy a waiter (a push moving
//! `tail`, a pop moving `head`), calls [`WaitQueue::notify_one`], which is **one load**
//! of the waiter count when it is zero. Why that load cannot miss a waiter that is
//! about to sleep: the operation moved its position with a `SeqCst` CAS and then loads
//! the count with `SeqCst`, so in the single total order of `SeqCst` operations the CAS
//! precedes the load. If the load does not see the waiter's registration, it precedes
//! that registration, which precedes the waiter's fence; so the CAS precedes the fence,
//! and the waiter's re-check (step 2), sequenced after its fence, sees the moved
//! position. Either the notifier sees the waiter, or the waiter sees the item: no lost
//! wake-up (C++20 \[atomics.order\]; on x86 the CAS is a locked instruction and the
//! load a plain `mov`).
//!
//! Loom treats `SeqCst` loads and RMWs as `AcqRel` (a documented limitation; only its
//! `SeqCst` fences are exact), so under `cfg(loom)` the notifier spells the same
//! ordering as an explicit `SeqCst` fence before its load. The models in `loom-tests/`
//! check the protocol with that fence; the production build relies on the `SeqCst`
//! CAS that every position change already is.
//!
//! # Waking and cancelling
//!
//! A notifier takes the waiter's wake target out under the queue's lock, marks the
//! waiter notified (after which it never touches it again: the waiter may be a stack
//! frame about to return), and wakes it outside the lock. A waiter that gives up (a
//! timeout, a dropped future) calls [`WaitQueue::cancel`]: if it was still linked it
//! unlinks itself and leaves no trace; if it had been notified but will not act on
//! it, the caller passes the notification on to the next waiter, so a cancelled
//! waiter never swallows a wake-up that another one needed.
//!
//! The list's lock is a spin lock held for a few pointer writes, taken only by
//! waiters and by notifiers that found a waiter. It never runs user code except
//! `Waker::clone` when a future re-registers.
//!
//! Nothing here allocates: a waiter lives in the blocked call's stack frame or inside
//! the pinned future.

use core::fmt;
use core::marker::PhantomPinned;
use core::pin::Pin;
use core::ptr;
use core::task::{Context, Poll, Waker};

use crate::sync::{fence, AtomicBool, AtomicU64, AtomicU8, Backoff, Ordering, UnsafeCell};

/// How a thread waits between two failed attempts when it does not register with a
/// queue: spin, yield, or sleep until an interrupt.
///
/// This is the `no_std` way to wait: [`RingCore::push_wait_with`] and
/// [`RingCore::pop_wait_with`] retry their operation and call
/// [`wait`](WaitStrategy::wait) between attempts. An embedded program can wait for an
/// interrupt (`cortex_m::asm::wfi`) when the other side runs in an interrupt
/// handler; every closure `FnMut()` is a strategy.
///
/// [`RingCore::push_wait_with`]: super::RingCore::push_wait_with
/// [`RingCore::pop_wait_with`]: super::RingCore::pop_wait_with
///
/// # Examples
///
/// ```
/// use membound::ring::{Ring, Spin};
///
/// let ring = Ring::new(4)?;
/// ring.try_push(7)?;
/// assert_eq!(ring.pop_wait_with(&mut Spin::new()), Ok(7));
///
/// // Any closure waits: here, it counts the attempts a producer would wait for.
/// let mut waits = 0;
/// ring.try_push(8)?;
/// assert_eq!(ring.pop_wait_with(&mut || waits += 1), Ok(8));
/// assert_eq!(waits, 0);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub trait WaitStrategy {
    /// Waits a little before the next attempt.
    fn wait(&mut self);
}

impl<F: FnMut()> WaitStrategy for F {
    #[inline]
    fn wait(&mut self) {
        self()
    }
}

/// Spins with exponential backoff, then (under `std`) yields the thread: the default
/// strategy for [`WaitStrategy`] waits.
pub struct Spin {
    backoff: Backoff,
}

impl Spin {
    /// A fresh backoff.
    pub const fn new() -> Self {
        Self {
            backoff: Backoff::new(),
        }
    }
}

impl Default for Spin {
    fn default() -> Self {
        Self::new()
    }
}

impl WaitStrategy for Spin {
    #[inline]
    fn wait(&mut self) {
        self.backoff.snooze();
    }
}

impl fmt::Debug for Spin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Spin")
    }
}

/// Retries `attempt` until it succeeds, calling `strategy` between tries: the
/// `no_std` wait every `*_wait_with` method runs. `attempt` gets `state` (the item
/// of a push) and hands it back when it must wait.
pub(crate) fn spin_on<X, R>(
    strategy: &mut impl WaitStrategy,
    mut state: X,
    mut attempt: impl FnMut(X) -> Result<R, X>,
) -> R {
    loop {
        state = match attempt(state) {
            Ok(done) => return done,
            Err(state) => state,
        };
        strategy.wait();
    }
}

/// What wakes a waiter.
pub(crate) enum Wake {
    /// A task: wake its waker.
    Waker(Waker),
    /// A parked thread: unpark it.
    #[cfg(feature = "std")]
    Thread(crate::sync::thread::Thread),
}

impl Wake {
    fn wake(self) {
        match self {
            Self::Waker(waker) => waker.wake(),
            #[cfg(feature = "std")]
            Self::Thread(thread) => thread.unpark(),
        }
    }
}

/// Not in the queue.
const IDLE: u8 = 0;
/// In the queue, waiting.
const LINKED: u8 = 1;
/// Taken out of the queue by a notifier; the wake has been (or is being) delivered.
const NOTIFIED: u8 = 2;

/// One waiting thread or task. Lives in the waiting call's frame or future, pinned
/// while linked.
pub(crate) struct Waiter {
    /// `IDLE`, `LINKED` or `NOTIFIED`. `IDLE -> LINKED` and `LINKED -> IDLE` happen
    /// under the queue lock by the owner; `LINKED -> NOTIFIED` under the lock by a
    /// notifier, as its last access to the waiter (Release); `NOTIFIED -> IDLE` by the
    /// owner alone, when the waiter is in no list.
    state: AtomicU8,
    /// Neighbours in the queue while `LINKED`. Guarded by the queue lock.
    links: UnsafeCell<Links>,
    /// Set by the owner when linking; taken by the notifier. Guarded by the queue lock.
    wake: UnsafeCell<Option<Wake>>,
    /// Linked waiters are addressed by raw pointers.
    _pinned: PhantomPinned,
}

#[derive(Clone, Copy)]
struct Links {
    prev: *const Waiter,
    next: *const Waiter,
}

const UNLINKED: Links = Links {
    prev: ptr::null(),
    next: ptr::null(),
};

// SAFETY: a waiter is shared with notifiers on other threads only through the
// queue: `state` is atomic, and `links` and `wake` are accessed under the queue lock.
// `Wake` itself is `Send` (a `Waker` or a `Thread`).
unsafe impl Send for Waiter {}
// SAFETY: as above.
unsafe impl Sync for Waiter {}

impl Waiter {
    pub(crate) fn new() -> Self {
        Self {
            state: AtomicU8::new(IDLE),
            links: UnsafeCell::new(UNLINKED),
            wake: UnsafeCell::new(None),
            _pinned: PhantomPinned,
        }
    }

    /// Whether a notifier has taken this waiter out of its queue. Acquire: what the
    /// notifier did before notifying (its push or pop) is visible afterwards.
    #[cfg(feature = "std")]
    #[inline]
    pub(crate) fn is_notified(&self) -> bool {
        self.state.load(Ordering::Acquire) == NOTIFIED
    }

    /// Whether the waiter sits in a queue.
    pub(crate) fn is_linked(&self) -> bool {
        self.state.load(Ordering::Acquire) == LINKED
    }

    /// Consumes a notification: the owner acts on it (retries its operation).
    pub(crate) fn reset(&self) {
        debug_assert_ne!(self.state.load(Ordering::Relaxed), LINKED);
        self.state.store(IDLE, Ordering::Relaxed);
    }
}

/// The waiters of one side of a ring, and the count that makes notifying free when
/// there are none.
pub(crate) struct WaitQueue {
    /// Linked waiters. Changed under the lock; read without it by notifiers.
    waiters: AtomicU64,
    /// The spin lock guarding `list` and every linked waiter's `links` and `wake`.
    locked: AtomicBool,
    /// First (`next`) and last (`prev`) linked waiter, FIFO.
    list: UnsafeCell<Links>,
    /// Registrations ever made: how often a waiter went to sleep (metrics only).
    sleeps: AtomicU64,
    /// The notifier publishes with a plain store, not a `SeqCst` RMW (the SPSC
    /// ring), and pairs it with `sync::asymmetric_barrier_light`: registration then
    /// ends with the heavy side of that barrier.
    asymmetric: bool,
}

// SAFETY: the raw pointers in `list` point to pinned waiters that unlink themselves
// before they are dropped; every access to them is under `locked`.
unsafe impl Send for WaitQueue {}
// SAFETY: as above.
unsafe impl Sync for WaitQueue {}

/// Releases the queue lock when dropped.
struct Locked<'a>(&'a WaitQueue);

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        // Release: our list changes happen before the next holder's.
        self.0.locked.store(false, Ordering::Release);
    }
}

impl WaitQueue {
    crate::sync::const_unless_loom! {
        /// A queue whose notifiers publish progress with a `SeqCst` RMW.
        pub(crate) fn new() -> Self {
            Self::with_barrier(false)
        }
    }

    crate::sync::const_unless_loom! {
        /// A queue whose notifiers publish with a plain store followed by
        /// `sync::asymmetric_barrier_light` (`asymmetric`), or with a `SeqCst` RMW.
        pub(crate) fn with_barrier(asymmetric: bool) -> Self {
            Self {
                waiters: AtomicU64::new(0),
                locked: AtomicBool::new(false),
                list: UnsafeCell::new(UNLINKED),
                sleeps: AtomicU64::new(0),
                asymmetric,
            }
        }
    }

    fn lock(&self) -> Locked<'_> {
        let mut backoff = Backoff::new();
        // Acquire: the previous holder's list changes are visible to us.
        while self
            .locked
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            backoff.snooze();
        }
        Locked(self)
    }

    /// Links `waiter` at the back of the queue, to be woken through `wake`.
    ///
    /// The caller must then try its operation again before sleeping (see the module
    /// docs); this call ends with the `SeqCst` fence that re-check relies on.
    ///
    /// # Safety
    ///
    /// `waiter` must not be linked in any queue, and must stay at its address and
    /// alive until it is no longer linked: until this queue notifies it or
    /// [`cancel`](Self::cancel) returns for it. `Pin` plus a `Drop` that cancels
    /// guarantees both.
    pub(crate) unsafe fn register(&self, waiter: Pin<&Waiter>, wake: Wake) {
        let waiter: &Waiter = waiter.get_ref();
        let me: *const Waiter = waiter;
        let old_wake;
        {
            let _locked = self.lock();
            debug_assert_ne!(waiter.state.load(Ordering::Relaxed), LINKED);
            old_wake = waiter.wake.with_mut(|p| {
                // SAFETY: guarded by the lock, which we hold.
                unsafe { (*p).replace(wake) }
            });
            self.list.with_mut(|list| {
                // SAFETY: the list and the links of every linked waiter are guarded
                // by the lock; linked waiters are alive (the register contract).
                unsafe {
                    let last = (*list).prev;
                    waiter.links.with_mut(|l| {
                        *l = Links {
                            prev: last,
                            next: ptr::null(),
                        }
                    });
                    if last.is_null() {
                        (*list).next = me;
                    } else {
                        (*last).links.with_mut(|l| (*l).next = me);
                    }
                    (*list).prev = me;
                }
            });
            waiter.state.store(LINKED, Ordering::Relaxed);
            // SeqCst: one half of the Dekker pair described in the module docs.
            self.waiters.fetch_add(1, Ordering::SeqCst);
            self.sleeps.fetch_add(1, Ordering::Relaxed);
        }
        // SeqCst fence: the waiter's re-check, which follows, is ordered after its
        // registration in the total order (module docs). Against a notifier that
        // publishes with a plain store, the heavy side of the asymmetric barrier.
        if self.asymmetric {
            crate::sync::asymmetric_barrier_heavy();
        } else {
            fence(Ordering::SeqCst);
        }
        drop(old_wake);
    }

    /// Replaces the waker of a linked waiter (a future polled again by a different
    /// task). Returns `false` if the waiter is not linked (already notified).
    pub(crate) fn update_waker(&self, waiter: &Waiter, waker: &Waker) -> bool {
        let old_wake;
        {
            let _locked = self.lock();
            if waiter.state.load(Ordering::Relaxed) != LINKED {
                return false;
            }
            old_wake = waiter.wake.with_mut(|p| {
                // SAFETY: guarded by the lock, which we hold.
                let current = unsafe { &mut *p };
                match current {
                    Some(Wake::Waker(w)) if w.will_wake(waker) => None,
                    _ => current.replace(Wake::Waker(waker.clone())),
                }
            });
        }
        drop(old_wake);
        true
    }

    /// Takes `waiter` out of the queue if it is linked. Returns `true` if it had been
    /// notified and the notification is now the caller's: a caller that does not act
    /// on it (gives up) must pass it on with [`notify_one`](Self::notify_one).
    ///
    /// After this returns the waiter is idle and may be dropped or registered again.
    pub(crate) fn cancel(&self, waiter: &Waiter) -> bool {
        match waiter.state.load(Ordering::Acquire) {
            IDLE => return false,
            NOTIFIED => {
                waiter.reset();
                return true;
            }
            _ => {}
        }
        let old_wake;
        {
            let _locked = self.lock();
            // A notifier may have taken the waiter between our load and the lock.
            if waiter.state.load(Ordering::Relaxed) == NOTIFIED {
                drop(_locked);
                waiter.reset();
                return true;
            }
            self.unlink(waiter);
            waiter.state.store(IDLE, Ordering::Relaxed);
            self.waiters.fetch_sub(1, Ordering::Relaxed);
            old_wake = waiter.wake.with_mut(|p| {
                // SAFETY: guarded by the lock, which we hold.
                unsafe { (*p).take() }
            });
        }
        drop(old_wake);
        false
    }

    /// Unlinks a linked waiter. Call with the lock held.
    fn unlink(&self, waiter: &Waiter) {
        self.list.with_mut(|list| {
            // SAFETY: the lock is held (caller), so the list and the links of every
            // linked waiter are ours to change, and linked waiters are alive.
            unsafe {
                let Links { prev, next } = waiter.links.with(|l| *l);
                if prev.is_null() {
                    (*list).next = next;
                } else {
                    (*prev).links.with_mut(|l| (*l).next = next);
                }
                if next.is_null() {
                    (*list).prev = prev;
                } else {
                    (*next).links.with_mut(|l| (*l).prev = prev);
                }
                waiter.links.with_mut(|l| *l = UNLINKED);
            }
        });
    }

    /// Wakes the longest-waiting waiter, if any. One load when there is none.
    #[inline]
    pub(crate) fn notify_one(&self) {
        if self.has_waiters() {
            self.notify_slow(1);
        }
    }

    /// Wakes every waiter linked when the call began.
    #[inline]
    pub(crate) fn notify_all(&self) {
        if self.has_waiters() {
            self.notify_slow(u64::MAX);
        }
    }

    /// The notifier's half of the protocol: must follow, in program order, the
    /// `SeqCst` CAS that made progress possible (module docs).
    #[inline(always)]
    fn has_waiters(&self) -> bool {
        // Only under loom: its SeqCst loads are AcqRel, see the module docs.
        #[cfg(loom)]
        if !crate::sync::loom_no_waiters() {
            fence(Ordering::SeqCst);
        }
        self.waiters.load(Ordering::SeqCst) != 0
    }

    /// Wakes up to `max` waiters, and never more than were linked at the start (so
    /// waiters that re-register while we wake cannot keep us here).
    #[cold]
    fn notify_slow(&self, max: u64) {
        let mut budget = max.min(self.waiters.load(Ordering::Relaxed));
        while budget > 0 {
            budget -= 1;
            let wake = {
                let _locked = self.lock();
                let first = self.list.with(|list| {
                    // SAFETY: guarded by the lock, which we hold.
                    unsafe { (*list).next }
                });
                if first.is_null() {
                    return;
                }
                // SAFETY: `first` is linked, hence alive (register contract), and the
                // lock guards it.
                let waiter = unsafe { &*first };
                self.unlink(waiter);
                self.waiters.fetch_sub(1, Ordering::Relaxed);
                let wake = waiter.wake.with_mut(|p| {
                    // SAFETY: guarded by the lock, which we hold.
                    unsafe { (*p).take() }
                });
                // Release, and our last access to `waiter`: once it sees NOTIFIED
                // its owner may return and free it.
                waiter.state.store(NOTIFIED, Ordering::Release);
                wake
            };
            if let Some(wake) = wake {
                wake.wake();
            }
        }
    }

    /// Linked waiters now.
    pub(crate) fn len(&self) -> u64 {
        self.waiters.load(Ordering::Relaxed)
    }

    /// Registrations ever made.
    pub(crate) fn sleeps(&self) -> u64 {
        self.sleeps.load(Ordering::Relaxed)
    }
}

impl fmt::Debug for WaitQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WaitQueue")
            .field("waiters", &self.len())
            .finish()
    }
}

/// Parks the calling thread on `queue` until `attempt` succeeds or `deadline`
/// passes. `attempt` gets `state` (the item of a push) and hands it back on failure;
/// on timeout the state comes back as `Err`. The caller has tried once already.
///
/// Spins briefly first (a wait that ends within microseconds is not worth two
/// syscalls), then follows the register / re-check / park protocol of the module docs.
/// Every way out leaves the waiter unlinked, and a waiter that times out after being
/// notified passes the notification on.
#[cfg(feature = "std")]
pub(crate) fn block_on<X, R>(
    queue: &WaitQueue,
    deadline: Option<std::time::Instant>,
    mut state: X,
    mut attempt: impl FnMut(X) -> Result<R, X>,
) -> Result<R, X> {
    #[cfg(not(loom))]
    {
        let mut backoff = Backoff::new();
        while !backoff.is_completed() {
            backoff.snooze();
            state = match attempt(state) {
                Ok(done) => return Ok(done),
                Err(state) => state,
            };
        }
    }
    let waiter = core::pin::pin!(Waiter::new());
    loop {
        // SAFETY: `waiter` is pinned in this frame, is not linked (new, or reset
        // below), and leaves the queue before the frame ends: through `cancel`, or
        // through the notifier that unlinked it before marking it notified.
        unsafe {
            queue.register(
                waiter.as_ref(),
                Wake::Thread(crate::sync::thread::current()),
            )
        };
        state = match attempt(state) {
            Ok(done) => {
                // Succeeded on the re-check; a notification that raced in was for
                // the progress we just consumed.
                queue.cancel(&waiter);
                return Ok(done);
            }
            Err(state) => state,
        };
        while !waiter.is_notified() {
            if !park_until(deadline) {
                if queue.cancel(&waiter) {
                    queue.notify_one();
                }
                return Err(state);
            }
        }
        waiter.reset();
        state = match attempt(state) {
            Ok(done) => return Ok(done),
            Err(state) => state,
        };
    }
}

/// Parks until unparked (or spuriously), or until `deadline`. Returns `false`, without
/// parking, once the deadline has passed.
///
/// Under loom, which has no time, a deadline is taken to expire at the first park: a
/// model then explores a timeout racing every step of a notifier.
#[cfg(feature = "std")]
fn park_until(deadline: Option<std::time::Instant>) -> bool {
    #[cfg(loom)]
    {
        if deadline.is_some() {
            return false;
        }
        crate::sync::thread::park();
        true
    }
    #[cfg(not(loom))]
    match deadline {
        None => {
            crate::sync::thread::park();
            true
        }
        Some(deadline) => {
            let now = std::time::Instant::now();
            if now >= deadline {
                return false;
            }
            crate::sync::thread::park_timeout(deadline - now);
            true
        }
    }
}

/// The poll loop every waiting future shares: attempt; on failure make sure the waiter is
/// registered with the current waker, re-checking once after a fresh registration.
pub(crate) fn poll_waiting<R>(
    queue: &WaitQueue,
    waiter: Pin<&Waiter>,
    cx: &mut Context<'_>,
    mut attempt: impl FnMut() -> Option<R>,
) -> Poll<R> {
    let mut registered = false;
    loop {
        if let Some(done) = attempt() {
            // A notification that raced in was for the progress we just consumed.
            queue.cancel(&waiter);
            return Poll::Ready(done);
        }
        if registered {
            return Poll::Pending;
        }
        if waiter.is_linked() && queue.update_waker(&waiter, cx.waker()) {
            // Still linked since a registration followed by a failed re-check: any
            // progress since then notifies the queue.
            return Poll::Pending;
        }
        // New, or notified (and the attempt above consumed that): register again.
        waiter.reset();
        // SAFETY: the waiter is pinned inside the future, not linked now, and the
        // future's `Drop` cancels it before its memory goes away.
        unsafe { queue.register(waiter, Wake::Waker(cx.waker().clone())) };
        registered = true;
    }
}

/// Leaves no trace: unlinks a pending waiter, and passes on a notification it
/// received but did not act on.
pub(crate) fn cancel_waiter(queue: &WaitQueue, waiter: &Waiter) {
    if queue.cancel(waiter) {
        queue.notify_one();
    }
}
