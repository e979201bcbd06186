//! The sampler where there is no procfs: honest partial data from `sysconf` and
//! `getrusage` (unix), or nothing at all.

use super::{
    utilization, CgroupInfo, DiscoveryError, EffectiveLimit, ErrorLog, HeapRef, LimitSource,
    MemorySample, OsError, SampleError, SampleErrorKind, SampleField, SamplerConfig,
};

/// Samples what the platform offers without procfs; see the Linux documentation of
/// this type for the full picture.
///
/// Here: physical memory from `sysconf(_SC_PHYS_PAGES)` and the *peak* RSS from
/// `getrusage`, which stands in for current usage (an upper bound, so utilization
/// errs high). No cgroup, no `MemAvailable`, no PSI. On non-unix targets only the
/// user limit is known and every figure is `None`.
#[derive(Debug)]
pub struct Sampler {
    config: SamplerConfig,
    errors: ErrorLog,
    heap: Option<HeapRef>,
}

impl Sampler {
    /// A sampler for this platform.
    ///
    /// # Errors
    ///
    /// What [`SamplerConfig::validate`] finds wrong.
    pub fn new(config: SamplerConfig) -> Result<Self, OsError> {
        config.validate()?;
        Ok(Self {
            config,
            errors: ErrorLog::default(),
            heap: None,
        })
    }

    /// Takes one sample. Allocation-free.
    pub fn sample(&mut self) -> MemorySample {
        self.errors.this_sample = 0;
        let mut s = MemorySample {
            peak_rss: self.rss(),
            ..MemorySample::default()
        };
        let user = self.config.user_limit.map(|bytes| EffectiveLimit {
            bytes,
            source: LimitSource::User,
        });
        let physical = physical_memory().map(|bytes| EffectiveLimit {
            bytes,
            source: LimitSource::Physical,
        });
        s.mem_total = physical.map(|p| p.bytes);
        s.limit = super::tightest(user.into_iter().chain(physical));
        s.used = s.peak_rss;
        s.utilization = utilization(&s, false);
        s.heap = HeapRef::live(self.heap);
        s.errors = self.errors.this_sample;
        s
    }

    /// The peak RSS (no current figure is available here).
    pub fn rss(&mut self) -> Option<u64> {
        let peak = peak_rss();
        if peak.is_none() {
            self.errors
                .record(SampleField::Platform, SampleErrorKind::Malformed);
        }
        peak
    }

    /// Always `None`: no cgroups here.
    pub fn cgroup(&self) -> Option<&CgroupInfo> {
        None
    }

    /// Why no cgroup is used: there are none on this platform.
    pub fn cgroup_error(&self) -> Option<DiscoveryError> {
        Some(DiscoveryError::NoMemoryController)
    }

    /// Always `false`: PSI is Linux's.
    pub fn has_psi(&self) -> bool {
        false
    }

    /// Field errors since construction.
    pub fn errors(&self) -> u64 {
        self.errors.total
    }

    /// The most recent field error.
    pub fn last_error(&self) -> Option<SampleError> {
        self.errors.last
    }

    /// The configuration.
    pub fn config(&self) -> &SamplerConfig {
        &self.config
    }

    /// The same sampler also reporting the live bytes of `heap` (typically the
    /// program's `#[global_allocator]`, a
    /// [`TrackingAllocator`](crate::heap::TrackingAllocator)) in
    /// [`MemorySample::heap`].
    ///
    /// # Examples
    ///
    /// ```
    /// use std::alloc::System;
    /// use membound::heap::TrackingAllocator;
    /// use membound::os::{Sampler, SamplerConfig};
    ///
    /// #[global_allocator]
    /// static HEAP: TrackingAllocator<System> = TrackingAllocator::new(System);
    ///
    /// fn main() -> Result<(), membound::os::OsError> {
    ///     let mut sampler = Sampler::new(SamplerConfig::default())?.with_heap(&HEAP);
    ///     let keep = vec![0u8; 1 << 20];
    ///     assert!(sampler.sample().heap.unwrap() >= 1 << 20);
    ///     drop(keep);
    ///     Ok(())
    /// }
    /// ```
    #[must_use]
    pub fn with_heap(mut self, heap: &'static dyn crate::heap::HeapUsage) -> Self {
        self.heap = Some(HeapRef(heap));
        self
    }
}

#[cfg(unix)]
fn physical_memory() -> Option<u64> {
    // SAFETY: sysconf only reads system configuration; an unsupported name returns -1.
    let (page, pages) = unsafe {
        (
            libc::sysconf(libc::_SC_PAGESIZE),
            libc::sysconf(libc::_SC_PHYS_PAGES),
        )
    };
    let page = u64::try_from(page).ok().filter(|&p| p > 0)?;
    let pages = u64::try_from(pages).ok().filter(|&p| p > 0)?;
    Some(page.saturating_mul(pages))
}

#[cfg(not(unix))]
fn physical_memory() -> Option<u64> {
    None
}

#[cfg(unix)]
fn peak_rss() -> Option<u64> {
    let mut usage = core::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: `usage` points to writable memory for one `rusage`, which getrusage
    // fills on success.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) };
    if rc != 0 {
        return None;
    }
    // SAFETY: getrusage returned 0, so it initialized the struct (and zeroed() made
    // every byte valid beforehand anyway).
    let max = unsafe { usage.assume_init() }.ru_maxrss;
    let max = u64::try_from(max).ok()?;
    // Darwin reports bytes; the BSDs and others kilobytes.
    if cfg!(any(target_os = "macos", target_os = "ios")) {
        Some(max)
    } else {
        Some(max.saturating_mul(1024))
    }
}

#[cfg(not(unix))]
fn peak_rss() -> Option<u64> {
    None
}
