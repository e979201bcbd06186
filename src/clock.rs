//! Monotonic time as a value passed in, never read from a global (DESIGN rule 6).
//!
//! Every TTL, interval, dwell and deadline in the crate is measured in *ticks* of a
//! [`Clock`]. A tick has a fixed length that the clock reports, so durations convert
//! to ticks once, at configuration time, and the hot paths compare plain `u64`s.
//!
//! - [`ManualClock`] moves only when a test (or an embedded program driving it from a
//!   timer interrupt) advances it: timing tests run without sleeping.
//! - [`MonotonicClock`] (std) counts nanoseconds since it was created, from
//!   [`std::time::Instant`].
//! - A `no_std` program implements [`Clock`] over its own tick source (a SysTick
//!   counter, an RTC).
//!
//! # Examples
//!
//! ```
//! use core::time::Duration;
//! use membound::clock::{Clock, ManualClock};
//!
//! let clock = ManualClock::new(Duration::from_millis(1))?;
//! let ttl = clock.ticks_for(Duration::from_secs(2));
//! assert_eq!(ttl, 2_000);
//! clock.advance(1_500);
//! assert_eq!(clock.now(), 1_500);
//! assert_eq!(clock.duration_of(clock.now()), Duration::from_millis(1_500));
//! # Ok::<(), membound::clock::ClockError>(())
//! ```

use core::fmt;
use core::time::Duration;

use crate::sync::{AtomicU64, Ordering};

/// A monotonic tick source.
///
/// # Contract
///
/// `now` never decreases, across threads: a tick read after another (in
/// happens-before order) is not smaller. Ticks start near zero and a `u64` of them
/// never wraps in practice (584 years of nanoseconds).
pub trait Clock {
    /// The current time in ticks.
    fn now(&self) -> u64;

    /// The length of one tick. Never zero.
    fn tick(&self) -> Duration;

    /// The number of ticks that covers `duration`, rounded up so a TTL or timeout is
    /// never shorter than asked; saturates at `u64::MAX`.
    fn ticks_for(&self, duration: Duration) -> u64 {
        let tick = self.tick().as_nanos().max(1);
        let ticks = duration.as_nanos().div_ceil(tick);
        u64::try_from(ticks).unwrap_or(u64::MAX)
    }

    /// The duration of `ticks` ticks, saturating at [`Duration::MAX`].
    fn duration_of(&self, ticks: u64) -> Duration {
        let nanos = self.tick().as_nanos().saturating_mul(u128::from(ticks));
        let secs = nanos / 1_000_000_000;
        match u64::try_from(secs) {
            Ok(secs) => Duration::new(secs, (nanos % 1_000_000_000) as u32),
            Err(_) => Duration::MAX,
        }
    }
}

/// A reference or a shared pointer to a clock is that clock.
macro_rules! forward_clock {
    ($($(#[$attr:meta])* $ptr:ty),*) => {$(
        $(#[$attr])*
        impl<C: Clock + ?Sized> Clock for $ptr {
            #[inline]
            fn now(&self) -> u64 {
                (**self).now()
            }
            #[inline]
            fn tick(&self) -> Duration {
                (**self).tick()
            }
        }
    )*};
}

forward_clock!(&C, #[cfg(feature = "alloc")] alloc::sync::Arc<C>);

/// Why a clock could not be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClockError {
    /// A tick of zero length: no duration could be converted to ticks.
    ZeroTick,
    /// A clock's refresh thread could not be started.
    Spawn,
}

impl fmt::Display for ClockError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ZeroTick => f.write_str("clock tick length must be greater than zero"),
            Self::Spawn => f.write_str("could not spawn the clock's refresh thread"),
        }
    }
}

impl core::error::Error for ClockError {}

/// A clock that moves only when told to: for tests, simulations, and programs that
/// count ticks in an interrupt handler.
///
/// Shared by reference (or `Arc`) between the code under test and the test; all
/// methods take `&self`.
///
/// # Examples
///
/// ```
/// use core::time::Duration;
/// use membound::clock::{Clock, ManualClock};
///
/// let clock = ManualClock::default(); // 1 ms ticks, starting at 0
/// clock.advance_by(Duration::from_millis(250));
/// assert_eq!(clock.now(), 250);
/// clock.set(100); // never goes back
/// assert_eq!(clock.now(), 250);
/// ```
#[derive(Debug)]
pub struct ManualClock {
    /// The current tick; only ever increases (`fetch_max`/`fetch_add`).
    ticks: AtomicU64,
    /// The tick length in nanoseconds, non-zero.
    tick_nanos: u64,
}

impl ManualClock {
    /// A clock at tick 0 whose ticks last `tick`.
    ///
    /// # Errors
    ///
    /// [`ClockError::ZeroTick`] if `tick` is shorter than a nanosecond.
    pub fn new(tick: Duration) -> Result<Self, ClockError> {
        let tick_nanos = u64::try_from(tick.as_nanos()).unwrap_or(u64::MAX);
        if tick_nanos == 0 {
            return Err(ClockError::ZeroTick);
        }
        Ok(Self {
            ticks: AtomicU64::new(0),
            tick_nanos,
        })
    }

    /// Moves the clock forward by `ticks` (saturating) and returns the new time.
    pub fn advance(&self, ticks: u64) -> u64 {
        let mut current = self.ticks.load(Ordering::Relaxed);
        loop {
            let next = current.saturating_add(ticks);
            // Release/Acquire: whatever a test did before advancing is visible to
            // code that reads the new time.
            match self.ticks.compare_exchange_weak(
                current,
                next,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return next,
                Err(seen) => current = seen,
            }
        }
    }

    /// Moves the clock forward by at least `duration` (rounded up to whole ticks).
    pub fn advance_by(&self, duration: Duration) -> u64 {
        self.advance(self.ticks_for(duration))
    }

    /// Sets the clock to `ticks` if that is later than now; a clock never goes back.
    /// Returns the time after the call.
    pub fn set(&self, ticks: u64) -> u64 {
        let before = self.ticks.fetch_max(ticks, Ordering::AcqRel);
        before.max(ticks)
    }
}

impl Default for ManualClock {
    /// One-millisecond ticks, starting at 0.
    fn default() -> Self {
        Self {
            ticks: AtomicU64::new(0),
            tick_nanos: 1_000_000,
        }
    }
}

impl Clock for ManualClock {
    #[inline]
    fn now(&self) -> u64 {
        self.ticks.load(Ordering::Acquire)
    }

    #[inline]
    fn tick(&self) -> Duration {
        Duration::from_nanos(self.tick_nanos)
    }
}

/// Nanoseconds since the clock was created, from [`std::time::Instant`] (std only).
///
/// `Instant` is monotonic on every platform Rust supports; copies of one
/// `MonotonicClock` share its origin, so their ticks compare.
///
/// # Examples
///
/// ```
/// use membound::clock::{Clock, MonotonicClock};
///
/// let clock = MonotonicClock::new();
/// let a = clock.now();
/// assert!(clock.now() >= a);
/// assert_eq!(clock.tick(), core::time::Duration::from_nanos(1));
/// ```
#[cfg(feature = "std")]
#[derive(Debug, Clone, Copy)]
pub struct MonotonicClock {
    origin: std::time::Instant,
}

#[cfg(feature = "std")]
impl MonotonicClock {
    /// A clock whose tick 0 is now.
    pub fn new() -> Self {
        Self {
            origin: std::time::Instant::now(),
        }
    }

    /// The instant of tick `ticks`, for handing deadlines to std APIs.
    pub fn instant_of(&self, ticks: u64) -> std::time::Instant {
        self.origin + Duration::from_nanos(ticks)
    }
}

#[cfg(feature = "std")]
impl Default for MonotonicClock {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(feature = "std")]
impl Clock for MonotonicClock {
    #[inline]
    fn now(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    #[inline]
    fn tick(&self) -> Duration {
        Duration::from_nanos(1)
    }
}

/// A clock that costs one atomic load to read: nanoseconds since creation, refreshed
/// every `resolution` by a background thread (std only).
///
/// Reading [`MonotonicClock`] costs a system clock read (~25 ns on x86 Linux), more
/// than a whole lookup in a concurrent table. A TTL table reads its clock on every
/// `get`, so servers that can accept expiry up to `resolution` late should give it a
/// `CoarseClock`: ticks are nanoseconds, but they advance in steps of about
/// `resolution` (later if the refresh thread is not scheduled).
///
/// Clones share one refresh thread, which exits when the last clone is dropped.
///
/// # Examples
///
/// ```
/// use core::time::Duration;
/// use membound::clock::{Clock, CoarseClock};
///
/// let clock = CoarseClock::new(Duration::from_millis(1))?;
/// let a = clock.now();
/// assert!(clock.now() >= a);
/// assert_eq!(clock.ticks_for(Duration::from_secs(1)), 1_000_000_000);
/// # Ok::<(), membound::clock::ClockError>(())
/// ```
#[cfg(all(feature = "std", not(loom)))]
#[derive(Debug, Clone)]
pub struct CoarseClock {
    shared: std::sync::Arc<CoarseShared>,
}

#[cfg(all(feature = "std", not(loom)))]
#[derive(Debug)]
struct CoarseShared {
    /// Nanoseconds since `origin` at the last refresh. One writer (the refresh
    /// thread) stores increasing values, so reads never go back.
    nanos: AtomicU64,
    origin: std::time::Instant,
}

#[cfg(all(feature = "std", not(loom)))]
impl CoarseClock {
    /// A clock at 0 now, refreshed every `resolution` by a new thread.
    ///
    /// # Errors
    ///
    /// [`ClockError::ZeroTick`] for a zero `resolution`; [`ClockError::Spawn`] if the
    /// refresh thread could not be started.
    pub fn new(resolution: Duration) -> Result<Self, ClockError> {
        if resolution.is_zero() {
            return Err(ClockError::ZeroTick);
        }
        let shared = std::sync::Arc::new(CoarseShared {
            nanos: AtomicU64::new(0),
            origin: std::time::Instant::now(),
        });
        let weak = std::sync::Arc::downgrade(&shared);
        std::thread::Builder::new()
            .name("membound-coarse-clock".into())
            .spawn(move || loop {
                std::thread::sleep(resolution);
                let Some(shared) = weak.upgrade() else {
                    return;
                };
                let nanos = u64::try_from(shared.origin.elapsed().as_nanos()).unwrap_or(u64::MAX);
                shared.nanos.fetch_max(nanos, Ordering::Release);
            })
            .map_err(|_| ClockError::Spawn)?;
        Ok(Self { shared })
    }
}

#[cfg(all(feature = "std", not(loom)))]
impl Clock for CoarseClock {
    #[inline]
    fn now(&self) -> u64 {
        self.shared.nanos.load(Ordering::Acquire)
    }

    #[inline]
    fn tick(&self) -> Duration {
        Duration::from_nanos(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_tick_is_an_error() {
        assert_eq!(
            ManualClock::new(Duration::ZERO).unwrap_err(),
            ClockError::ZeroTick
        );
        assert!(ManualClock::new(Duration::from_nanos(1)).is_ok());
    }

    #[test]
    fn conversions_round_up_and_saturate() {
        let clock = ManualClock::new(Duration::from_millis(10)).unwrap();
        assert_eq!(clock.ticks_for(Duration::ZERO), 0);
        assert_eq!(clock.ticks_for(Duration::from_millis(1)), 1);
        assert_eq!(clock.ticks_for(Duration::from_millis(10)), 1);
        assert_eq!(clock.ticks_for(Duration::from_millis(11)), 2);
        assert_eq!(clock.ticks_for(Duration::MAX), u64::MAX);
        assert_eq!(clock.duration_of(3), Duration::from_millis(30));
        assert_eq!(
            clock.duration_of(u64::MAX),
            Duration::new(u64::MAX / 100, 150_000_000)
        );
        let huge = ManualClock::new(Duration::from_secs(u64::MAX)).unwrap();
        assert_eq!(huge.duration_of(u64::MAX), Duration::MAX);
        let ns = ManualClock::new(Duration::from_nanos(1)).unwrap();
        assert_eq!(ns.ticks_for(Duration::MAX), u64::MAX);
    }

    #[test]
    fn manual_clock_only_moves_forward() {
        let clock = ManualClock::default();
        assert_eq!(clock.now(), 0);
        assert_eq!(clock.advance(5), 5);
        assert_eq!(clock.set(3), 5);
        assert_eq!(clock.set(9), 9);
        assert_eq!(clock.advance(u64::MAX), u64::MAX);
        assert_eq!(clock.now(), u64::MAX);
        assert_eq!(clock.advance_by(Duration::from_micros(1)), u64::MAX);
    }

    #[cfg(feature = "std")]
    #[test]
    fn monotonic_clock_is_monotonic_and_maps_back_to_instants() {
        let clock = MonotonicClock::new();
        let mut last = clock.now();
        for _ in 0..1000 {
            let now = clock.now();
            assert!(now >= last);
            last = now;
        }
        assert!(clock.instant_of(last) >= clock.origin);
        let copy = clock;
        assert!(copy.now() >= last);
    }
}
