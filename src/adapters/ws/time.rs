//! Time rule: a deadline a task parks on is a tokio `Instant` (these helpers); every other reading of time that decides behaviour (ages, rates, staleness, metrics) comes from the crate's `Clock`.
//!
//! The helpers build the deadlines the transport's tasks park on (a lossless
//! sender's wait, the writer's timers, the inbound sweep) on tokio's clock, so
//! tokio's paused time drives them in tests.

use core::time::Duration;

use tokio::time::Instant;

/// `start + duration`, saturating far in the future instead of panicking for a huge
/// configured duration.
pub(crate) fn later(start: Instant, duration: Duration) -> Instant {
    start
        .checked_add(duration)
        .unwrap_or_else(|| start + Duration::from_secs(30 * 365 * 86_400))
}

/// `duration` from now (see [`later`]).
pub(crate) fn after(duration: Duration) -> Instant {
    later(Instant::now(), duration)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_saturate_instead_of_overflowing() {
        let now = Instant::now();
        assert!(later(now, Duration::MAX) > now);
        assert_eq!(
            later(now, Duration::from_secs(1)),
            now + Duration::from_secs(1)
        );
    }
}
