//! PSI triggers: instead of sampling on a timer, let the kernel wake the monitor when
//! memory stalls exceed a threshold within a window (Linux 5.2+).

use core::fmt;
use core::time::Duration;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// The kernel's bounds on a trigger's window.
const MIN_WINDOW: Duration = Duration::from_millis(500);
const MAX_WINDOW: Duration = Duration::from_secs(10);
/// Without `CAP_SYS_RESOURCE`, kernels since 6.4 accept only windows that are whole
/// multiples of this.
const UNPRIVILEGED_GRANULE: Duration = Duration::from_secs(2);

/// Why a PSI trigger could not be used. In every case the caller falls back to
/// polling at its interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PsiError {
    /// No PSI file (kernel without PSI, or booted with `psi=0`).
    Absent,
    /// `stall` is zero or above `window`, or `window` is outside 500 ms ..= 10 s.
    BadParameters,
    /// The kernel refused the trigger, also with a window of a 2 s multiple.
    Refused(io::ErrorKind),
    /// Opening, writing or polling failed otherwise.
    Io(io::ErrorKind),
}

impl fmt::Display for PsiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Absent => f.write_str("PSI is not available"),
            Self::BadParameters => {
                f.write_str("PSI trigger needs 0 < stall <= window and a window of 500 ms to 10 s")
            }
            Self::Refused(kind) => write!(f, "the kernel refused the PSI trigger: {kind}"),
            Self::Io(kind) => write!(f, "PSI trigger I/O failed: {kind}"),
        }
    }
}

impl core::error::Error for PsiError {}

/// A registered PSI trigger on a memory pressure file: [`wait`](Self::wait) returns
/// early when tasks stalled on memory for `stall` within a `window`.
///
/// # Examples
///
/// ```no_run
/// use core::time::Duration;
/// use membound::os::PsiTrigger;
///
/// match PsiTrigger::new("/proc/pressure/memory", Duration::from_millis(150), Duration::from_secs(2)) {
///     Ok(trigger) => {
///         if trigger.wait(Duration::from_secs(5))? {
///             println!("memory stalls: sample now");
///         }
///     }
///     Err(e) => println!("no trigger ({e}); polling instead"),
/// }
/// # Ok::<(), membound::os::PsiError>(())
/// ```
#[derive(Debug)]
pub struct PsiTrigger {
    /// The pressure file, opened for this trigger alone: the kernel ties a trigger to
    /// its open file and removes it when the file is closed.
    file: File,
    stall: Duration,
    window: Duration,
}

impl PsiTrigger {
    /// Registers a `some` trigger: tasks stalled on memory for `stall` in total within
    /// any `window`. If the kernel answers `EINVAL` (unprivileged processes may only
    /// use windows that are multiples of 2 s), retries once with the window rounded up
    /// to the next 2 s multiple ([`window`](Self::window) reports the one in force).
    ///
    /// # Errors
    ///
    /// [`PsiError::Absent`] without the file, [`PsiError::BadParameters`] for
    /// parameters the kernel never accepts, [`PsiError::Refused`] if the retry fails
    /// too, [`PsiError::Io`] otherwise.
    pub fn new(
        path: impl AsRef<Path>,
        stall: Duration,
        window: Duration,
    ) -> Result<Self, PsiError> {
        if stall.is_zero() || stall > window || !(MIN_WINDOW..=MAX_WINDOW).contains(&window) {
            return Err(PsiError::BadParameters);
        }
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(path)
            .map_err(|e| match e.kind() {
                io::ErrorKind::NotFound => PsiError::Absent,
                kind => PsiError::Io(kind),
            })?;
        let window = match register(&mut file, stall, window) {
            Ok(()) => window,
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                let Some(granular) = granular_window(window) else {
                    return Err(PsiError::Refused(e.kind()));
                };
                register(&mut file, stall, granular).map_err(|e| PsiError::Refused(e.kind()))?;
                granular
            }
            Err(e) => return Err(PsiError::Refused(e.kind())),
        };
        Ok(Self {
            file,
            stall,
            window,
        })
    }

    /// The stall threshold.
    pub fn stall(&self) -> Duration {
        self.stall
    }

    /// The window in force (possibly rounded up to a 2 s multiple).
    pub fn window(&self) -> Duration {
        self.window
    }

    /// Waits up to `timeout` for the trigger to fire. `Ok(true)`: it fired;
    /// `Ok(false)`: the timeout passed (or a signal interrupted the wait).
    ///
    /// # Errors
    ///
    /// [`PsiError::Io`] if the trigger is gone (the cgroup was removed) or polling
    /// failed.
    pub fn wait(&self, timeout: Duration) -> Result<bool, PsiError> {
        let mut fd = libc::pollfd {
            fd: self.file.as_raw_fd(),
            events: libc::POLLPRI,
            revents: 0,
        };
        let millis = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
        // SAFETY: `fd` is one valid pollfd for the duration of the call and its file
        // descriptor stays open (owned by `self.file`).
        let ready = unsafe { libc::poll(&mut fd, 1, millis) };
        if ready < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::Interrupted => Ok(false),
                kind => Err(PsiError::Io(kind)),
            };
        }
        if fd.revents & libc::POLLERR != 0 {
            return Err(PsiError::Io(io::ErrorKind::Other));
        }
        Ok(fd.revents & libc::POLLPRI != 0)
    }
}

/// Writes the trigger. The kernel overwrites the last byte written with a NUL, so the
/// text carries its own terminator.
fn register(file: &mut File, stall: Duration, window: Duration) -> io::Result<()> {
    let text = std::format!("some {} {}\0", stall.as_micros(), window.as_micros());
    file.write(text.as_bytes()).map(drop)
}

/// `window` rounded up to a multiple of 2 s, if that is a different window the kernel
/// could accept.
fn granular_window(window: Duration) -> Option<Duration> {
    let granule = UNPRIVILEGED_GRANULE.as_nanos();
    let nanos = window.as_nanos().div_ceil(granule) * granule;
    let rounded = Duration::from_nanos(u64::try_from(nanos).ok()?);
    (rounded != window && rounded <= MAX_WINDOW).then_some(rounded)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_round_up_to_two_seconds() {
        assert_eq!(
            granular_window(Duration::from_millis(500)),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            granular_window(Duration::from_millis(2100)),
            Some(Duration::from_secs(4))
        );
        assert_eq!(granular_window(Duration::from_secs(4)), None); // already a multiple
        assert_eq!(
            granular_window(Duration::from_millis(9500)),
            Some(Duration::from_secs(10))
        );
    }

    #[test]
    fn impossible_parameters_are_refused_before_the_kernel() {
        let ms = Duration::from_millis;
        let path = "/proc/pressure/memory";
        assert_eq!(
            PsiTrigger::new(path, ms(0), ms(1000)).unwrap_err(),
            PsiError::BadParameters
        );
        assert_eq!(
            PsiTrigger::new(path, ms(2000), ms(1000)).unwrap_err(),
            PsiError::BadParameters
        );
        assert_eq!(
            PsiTrigger::new(path, ms(100), ms(100)).unwrap_err(),
            PsiError::BadParameters
        );
        assert_eq!(
            PsiTrigger::new(path, ms(100), Duration::from_secs(11)).unwrap_err(),
            PsiError::BadParameters
        );
    }

    #[test]
    fn absent_file_is_reported_as_absent() {
        let err = PsiTrigger::new(
            "/nonexistent/pressure/memory",
            Duration::from_millis(100),
            Duration::from_secs(2),
        )
        .unwrap_err();
        assert_eq!(err, PsiError::Absent);
    }
}
