//! Asking the C allocator to return free memory to the OS: the Rust analogue of a
//! forced garbage collection.

/// What [`trim_heap`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TrimOutcome {
    /// `malloc_trim` released memory to the OS.
    Released,
    /// `malloc_trim` ran and found nothing to release.
    NothingReleased,
    /// The platform's allocator has no trim call (not glibc); nothing was done.
    Unsupported,
}

/// Asks glibc's allocator to return free memory at the top of the heap and in free
/// pages of its arenas to the OS (`malloc_trim(0)`). Elsewhere it does nothing and
/// says so.
///
/// Only memory freed by the program can be returned; this shrinks RSS after a burst,
/// it does not free anything in use. It takes the allocator's arena locks, so other
/// threads' allocations wait while it runs: rate-limit it, as
/// [`MemoryManager`](crate::monitor::MemoryManager) does.
///
/// # Examples
///
/// ```
/// use membound::os::{trim_heap, TrimOutcome};
///
/// let outcome = trim_heap();
/// if cfg!(all(target_os = "linux", target_env = "gnu")) {
///     assert_ne!(outcome, TrimOutcome::Unsupported);
/// }
/// ```
pub fn trim_heap() -> TrimOutcome {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: malloc_trim only walks glibc's own arenas under their locks; it has
        // no preconditions on the caller.
        let released = unsafe { libc::malloc_trim(0) };
        if released != 0 {
            TrimOutcome::Released
        } else {
            TrimOutcome::NothingReleased
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        TrimOutcome::Unsupported
    }
}
