//! The Linux sampler: files opened once, re-read with `pread`, parsed in place.

use std::boxed::Box;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::vec::Vec;

use super::cgroup;
use super::parse;
use super::{
    tightest, utilization, CgroupInfo, CgroupLimitFile, CgroupVersion, DiscoveryError,
    EffectiveLimit, ErrorLog, HeapRef, LimitSource, MemorySample, OsError, Psi, SampleError,
    SampleErrorKind, SampleField, SamplerConfig, WorkingSet,
};

/// Large enough for every file read here (`memory.stat` and `meminfo` are 1-2 KiB on
/// current kernels); a longer file is read up to this size and parsed as far as it
/// goes: the keys read here come early in each.
const BUFFER_SIZE: usize = 16 * 1024;

/// A file kept open and re-read from offset 0.
#[derive(Debug)]
struct Source {
    path: PathBuf,
    /// `None` after a failed re-open; the next read tries again.
    file: Option<File>,
}

impl Source {
    /// Opens `path`; `None` if it cannot be opened now (an absent optional file).
    fn open(path: PathBuf) -> Option<Self> {
        let file = File::open(&path).ok()?;
        Some(Self {
            path,
            file: Some(file),
        })
    }

    /// Reads the whole file (up to `buf`'s size) from offset 0. On failure it re-opens
    /// the path once and tries again: a cgroup file that was removed and re-created
    /// reads again, and one that is gone reports the error.
    ///
    /// Allocation-free except when re-opening (std builds the C path on the stack for
    /// paths shorter than 384 bytes, so even that usually does not allocate).
    fn read<'b>(&mut self, buf: &'b mut [u8]) -> Result<&'b [u8], io::ErrorKind> {
        let first = match &self.file {
            Some(file) => read_all_at(file, buf).ok(),
            None => None,
        };
        let len = match first {
            Some(len) => len,
            None => {
                self.file = None;
                let file = File::open(&self.path).map_err(|e| e.kind())?;
                let len = read_all_at(&file, buf).map_err(|e| e.kind())?;
                self.file = Some(file);
                len
            }
        };
        Ok(&buf[..len])
    }
}

/// `pread`s from offset 0 until end of file or a full buffer.
///
/// A short read is taken as the end: procfs, sysfs and cgroupfs produce a file whole
/// and hand over as much as the buffer holds, and so do regular files (the fixture
/// trees). Confirming the end with one more `pread` would cost a system call per file
/// per sample.
fn read_all_at(file: &File, buf: &mut [u8]) -> io::Result<usize> {
    let mut len = 0;
    while len < buf.len() {
        match file.read_at(&mut buf[len..], len as u64) {
            Ok(0) => break,
            Ok(n) if n < buf.len() - len => {
                len += n;
                break;
            }
            Ok(n) => len += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(len)
}

/// One limit file of one level of the hierarchy.
#[derive(Debug)]
struct LimitFile {
    source: Source,
    file: CgroupLimitFile,
    depth: usize,
}

/// The open files of the process's memory cgroup.
#[derive(Debug)]
struct CgroupFiles {
    info: CgroupInfo,
    usage: Option<Source>,
    stat: Option<Source>,
    limits: Vec<LimitFile>,
}

impl CgroupFiles {
    fn open(info: CgroupInfo) -> Self {
        let (usage, limit_names): (&str, &[(&str, CgroupLimitFile)]) = match info.version {
            CgroupVersion::V1 => (
                "memory.usage_in_bytes",
                &[("memory.limit_in_bytes", CgroupLimitFile::V1Limit)],
            ),
            CgroupVersion::V2 => (
                "memory.current",
                &[
                    ("memory.max", CgroupLimitFile::V2Max),
                    ("memory.high", CgroupLimitFile::V2High),
                ],
            ),
        };
        let mut levels = cgroup::ancestors(&info.dir, &info.mount_dir);
        // v1 with `memory.use_hierarchy` 0 (deprecated, gone since Linux 5.16): the
        // cgroup is not charged to its ancestors, so their limits do not bound it.
        if info.version == CgroupVersion::V1 {
            let flat = std::fs::read(info.dir.join("memory.use_hierarchy"))
                .is_ok_and(|text| parse::parse_u64(&text) == Some(0));
            if flat {
                levels.truncate(1);
            }
        }
        let mut limits = Vec::new();
        for (depth, dir) in levels.iter().enumerate() {
            for &(name, file) in limit_names {
                // Absent at some levels (the v2 root has no memory.max): skipped.
                if let Some(source) = Source::open(dir.join(name)) {
                    limits.push(LimitFile {
                        source,
                        file,
                        depth,
                    });
                }
            }
        }
        Self {
            usage: Source::open(info.dir.join(usage)),
            stat: Source::open(info.dir.join("memory.stat")),
            limits,
            info,
        }
    }
}

/// Samples the memory of this process, its container and the host; see the
/// [module docs](super).
///
/// Construction opens every file once (and allocates); [`sample`](Self::sample)
/// then reads them with `pread` into an owned buffer and allocates nothing.
///
/// On platforms other than Linux the same type samples what the platform offers
/// without procfs: physical memory from `sysconf(_SC_PHYS_PAGES)` and the *peak* RSS
/// from `getrusage`, which then stands in for current usage (an upper bound, so
/// utilization errs high); no cgroup, no `MemAvailable`, no PSI.
pub struct Sampler {
    config: SamplerConfig,
    page_size: u64,
    /// `MemTotal` read at construction (or `sysconf`'s physical memory): the physical
    /// limit when `/proc/meminfo` is not read per sample or fails.
    physical: Option<u64>,
    buf: Box<[u8]>,
    statm: Source,
    meminfo: Source,
    psi: Option<Source>,
    cgroup: Result<CgroupFiles, DiscoveryError>,
    errors: ErrorLog,
    heap: Option<HeapRef>,
    /// The expensive figures of the last full read; `None` before the first sample.
    slow: Option<SlowCache>,
    full_reads: u64,
}

/// What a full read finds in the expensive files.
#[derive(Debug, Clone, Copy, Default)]
struct SlowFigures {
    /// RSS, where the cgroup's usage is what is measured.
    rss: Option<u64>,
    mem_total: Option<u64>,
    mem_available: Option<u64>,
    /// The tightest cgroup limit up the tree.
    cgroup_limit: Option<EffectiveLimit>,
    /// The inactive file cache, for the working set.
    inactive: Option<u64>,
}

/// The last full read, and what the refresh schedule compares against.
#[derive(Debug, Clone, Copy)]
struct SlowCache {
    figures: SlowFigures,
    /// The cheap usage (the cgroup's, else RSS) at the full read.
    cheap: Option<u64>,
    /// The effective limit at the full read, bytes (set by the sample that made it).
    limit: Option<u64>,
    /// Samples taken since the full read, that one included.
    samples: u64,
}

impl Sampler {
    /// Finds the cgroup and opens every file.
    ///
    /// # Errors
    ///
    /// What [`SamplerConfig::validate`] finds wrong; [`OsError::Open`] if
    /// `/proc/self/statm` or `/proc/meminfo` cannot be opened (no procfs at
    /// `proc_root`). A missing cgroup or PSI is not an error: those fields stay
    /// `None` and [`cgroup_error`](Self::cgroup_error) says why.
    pub fn new(config: SamplerConfig) -> Result<Self, OsError> {
        config.validate()?;
        let required = |path: PathBuf| match File::open(&path) {
            Ok(file) => Ok(Source {
                path,
                file: Some(file),
            }),
            Err(source) => Err(OsError::Open { path, source }),
        };
        let statm = required(config.proc_root.join("self/statm"))?;
        let meminfo = required(config.proc_root.join("meminfo"))?;
        let cgroup = if config.cgroup {
            cgroup::discover(&config.proc_root, &config.mount_root).map(CgroupFiles::open)
        } else {
            Err(DiscoveryError::Disabled)
        };
        let psi = if !config.psi {
            None
        } else {
            match &cgroup {
                Ok(files) if files.info.version == CgroupVersion::V2 => {
                    Source::open(files.info.dir.join("memory.pressure"))
                }
                _ => None,
            }
            .or_else(|| Source::open(config.proc_root.join("pressure/memory")))
        };
        let (page_size, sysconf_physical) = platform_memory();
        let mut meminfo = meminfo;
        let mut buf = std::vec![0; BUFFER_SIZE].into_boxed_slice();
        // MemTotal once, for when meminfo is not read per sample (or fails).
        let physical = meminfo
            .read(&mut buf)
            .ok()
            .and_then(|text| parse::meminfo_value(text, b"MemTotal:"))
            .or(sysconf_physical);
        Ok(Self {
            config,
            page_size,
            physical,
            buf,
            statm,
            meminfo,
            psi,
            cgroup,
            errors: ErrorLog::default(),
            heap: None,
            slow: None,
            full_reads: 0,
        })
    }

    /// Takes one sample. Allocation-free; a field that fails is `None` and counted.
    ///
    /// The cheap figures (the cgroup's usage, PSI, and RSS where there is no cgroup)
    /// are read every time; the limits, `memory.stat`, `/proc/meminfo` (and RSS where
    /// the cgroup's usage is measured) on the [`Refresh`](super::Refresh) schedule,
    /// reusing their last values in between
    /// ([`full_reads`](Self::full_reads) counts the samples that read them).
    pub fn sample(&mut self) -> MemorySample {
        let mut s = MemorySample::default();
        self.errors.this_sample = 0;
        // With a cgroup usage file, that is what is measured, and RSS is only
        // reported: a slow figure. Without, RSS is what is measured.
        let rss_is_slow = self
            .cgroup
            .as_ref()
            .is_ok_and(|files| files.usage.is_some());
        if !rss_is_slow {
            s.rss = self.read_rss();
        }
        self.read_psi(&mut s);
        s.cgroup_usage = self.read_cgroup_usage();
        let cheap = if self.cgroup.is_ok() {
            s.cgroup_usage
        } else {
            s.rss
        };
        if self.full_read_due(cheap) {
            let mut slow = self.read_slow();
            if rss_is_slow {
                slow.rss = self.read_rss();
            }
            self.slow = Some(SlowCache {
                figures: slow,
                cheap,
                limit: None,
                samples: 0,
            });
            self.full_reads += 1;
        }
        // Set by the full read above at the latest.
        let Some(cache) = &mut self.slow else {
            return s;
        };
        cache.samples += 1;
        let slow = cache.figures;
        if rss_is_slow {
            s.rss = slow.rss;
        }
        s.mem_total = slow.mem_total.or(self.physical);
        s.mem_available = slow.mem_available;
        if self.cgroup.is_ok() {
            s.working_set = match self.config.working_set {
                WorkingSet::Usage => s.cgroup_usage,
                _ => match (slow.inactive, s.cgroup_usage) {
                    (Some(inactive), Some(usage)) => Some(usage.saturating_sub(inactive)),
                    _ => None,
                },
            };
        }

        let user = self.config.user_limit.map(|bytes| EffectiveLimit {
            bytes,
            source: LimitSource::User,
        });
        let physical = s.mem_total.or(self.physical).map(|bytes| EffectiveLimit {
            bytes,
            source: LimitSource::Physical,
        });
        s.limit = tightest(slow.cgroup_limit.into_iter().chain(user).chain(physical));
        cache
            .limit
            .get_or_insert(s.limit.map_or(0, |limit| limit.bytes));
        s.used = if self.cgroup.is_ok() {
            s.working_set.or(s.cgroup_usage).or(s.rss)
        } else {
            s.rss
        };
        s.utilization = utilization(&s, self.config.host_pressure);
        s.heap = HeapRef::live(self.heap);
        s.errors = self.errors.this_sample;
        s
    }

    /// Samples that read the expensive files (limits, `memory.stat`, `meminfo`) since
    /// construction; see [`Refresh`](super::Refresh).
    pub fn full_reads(&self) -> u64 {
        self.full_reads
    }

    /// Whether this sample must read the expensive files: the first one, every
    /// `refresh.every`-th, and one whose cheap usage moved by more than
    /// `refresh.on_change` of the limit since the last full read.
    fn full_read_due(&self, cheap: Option<u64>) -> bool {
        let Some(cache) = &self.slow else {
            return true;
        };
        let refresh = self.config.refresh;
        if cache.samples >= u64::from(refresh.every) {
            return true;
        }
        match (cheap, cache.cheap, cache.limit) {
            (Some(now), Some(then), Some(limit)) => {
                now.abs_diff(then) as f64 > refresh.on_change * limit as f64
            }
            // A figure that appeared or vanished: read everything again.
            (now, then, _) => now.is_some() != then.is_some(),
        }
    }

    fn read_psi(&mut self, s: &mut MemorySample) {
        let Some(psi) = &mut self.psi else {
            return;
        };
        match psi.read(&mut self.buf) {
            Ok(text) => match parse::psi_avg10(text) {
                Some((some, full)) => {
                    s.psi = Some(Psi {
                        some_avg10: some,
                        full_avg10: full,
                    })
                }
                None => self
                    .errors
                    .record(SampleField::Psi, SampleErrorKind::Malformed),
            },
            Err(kind) => self
                .errors
                .record(SampleField::Psi, SampleErrorKind::Io(kind)),
        }
    }

    fn read_cgroup_usage(&mut self) -> Option<u64> {
        let usage = self.cgroup.as_mut().ok()?.usage.as_mut()?;
        match usage.read(&mut self.buf) {
            Ok(text) => match parse::parse_u64(text) {
                Some(bytes) => Some(bytes),
                None => {
                    self.errors
                        .record(SampleField::CgroupUsage, SampleErrorKind::Malformed);
                    None
                }
            },
            Err(kind) => {
                self.errors
                    .record(SampleField::CgroupUsage, SampleErrorKind::Io(kind));
                None
            }
        }
    }

    /// Reads the expensive files: the host's meminfo, the cgroup's limits up the
    /// tree, and its `memory.stat` (for the inactive file cache and, on v1, the
    /// hierarchical limit).
    fn read_slow(&mut self) -> SlowFigures {
        let mut slow = SlowFigures::default();
        match self
            .config
            .host_pressure
            .then(|| self.meminfo.read(&mut self.buf))
        {
            None => {}
            Some(Ok(text)) => {
                slow.mem_total = parse::meminfo_value(text, b"MemTotal:");
                slow.mem_available = parse::meminfo_value(text, b"MemAvailable:");
                if slow.mem_total.is_none() || slow.mem_available.is_none() {
                    self.errors
                        .record(SampleField::Meminfo, SampleErrorKind::Malformed);
                }
            }
            Some(Err(kind)) => self
                .errors
                .record(SampleField::Meminfo, SampleErrorKind::Io(kind)),
        }

        // `hierarchical_memory_limit` (v1) is the tightest of all ancestors, even those
        // above the mount; it is reported at the mount's depth, the highest this
        // sampler sees.
        // Candidates in order of preference on ties: cgroup (own level first), user,
        // physical.
        let Ok(files) = &mut self.cgroup else {
            return slow;
        };
        let version = files.info.version;
        for limit in &mut files.limits {
            match limit.source.read(&mut self.buf) {
                Ok(text) => match parse::parse_limit(text) {
                    Some(Some(bytes)) => {
                        slow.cgroup_limit =
                            tightest(slow.cgroup_limit.into_iter().chain([EffectiveLimit {
                                bytes,
                                source: LimitSource::Cgroup {
                                    file: limit.file,
                                    depth: limit.depth,
                                },
                            }]));
                    }
                    Some(None) => {}
                    None => self
                        .errors
                        .record(SampleField::CgroupLimit, SampleErrorKind::Malformed),
                },
                Err(kind) => self
                    .errors
                    .record(SampleField::CgroupLimit, SampleErrorKind::Io(kind)),
            }
        }
        let stat = match self.config.working_set {
            WorkingSet::Usage => None,
            _ => files.stat.as_mut(),
        };
        let Some(stat) = stat else {
            return slow;
        };
        match stat.read(&mut self.buf) {
            Ok(text) => {
                let inactive = match version {
                    CgroupVersion::V1 => parse::stat_value(text, b"total_inactive_file")
                        .or_else(|| parse::stat_value(text, b"inactive_file")),
                    CgroupVersion::V2 => parse::stat_value(text, b"inactive_file"),
                };
                if version == CgroupVersion::V1 {
                    let hierarchical = parse::field(text, b"hierarchical_memory_limit")
                        .and_then(parse::parse_limit)
                        .flatten();
                    if let Some(bytes) = hierarchical {
                        let depth = files.limits.iter().map(|l| l.depth).max().unwrap_or(0);
                        slow.cgroup_limit =
                            tightest(slow.cgroup_limit.into_iter().chain([EffectiveLimit {
                                bytes,
                                source: LimitSource::Cgroup {
                                    file: CgroupLimitFile::V1Hierarchical,
                                    depth,
                                },
                            }]));
                    }
                }
                slow.inactive = inactive;
                if inactive.is_none() {
                    self.errors
                        .record(SampleField::CgroupStat, SampleErrorKind::Malformed);
                }
            }
            Err(kind) => self
                .errors
                .record(SampleField::CgroupStat, SampleErrorKind::Io(kind)),
        }
        slow
    }

    /// The process's RSS alone: one `pread` of `/proc/self/statm`. Used around
    /// `malloc_trim` to measure what it released.
    pub fn rss(&mut self) -> Option<u64> {
        self.read_rss()
    }

    fn read_rss(&mut self) -> Option<u64> {
        match self.statm.read(&mut self.buf) {
            Ok(text) => match parse::statm_resident_pages(text) {
                Some(pages) => Some(pages.saturating_mul(self.page_size)),
                None => {
                    self.errors
                        .record(SampleField::Rss, SampleErrorKind::Malformed);
                    None
                }
            },
            Err(kind) => {
                self.errors
                    .record(SampleField::Rss, SampleErrorKind::Io(kind));
                None
            }
        }
    }

    /// The memory cgroup in use, if one was found.
    pub fn cgroup(&self) -> Option<&CgroupInfo> {
        self.cgroup.as_ref().ok().map(|files| &files.info)
    }

    /// Why no memory cgroup is in use, if none is.
    pub fn cgroup_error(&self) -> Option<DiscoveryError> {
        self.cgroup.as_ref().err().copied()
    }

    /// Whether a PSI file is being read.
    pub fn has_psi(&self) -> bool {
        self.psi.is_some()
    }

    /// The PSI file being read, for [`PsiTrigger`](super::PsiTrigger).
    pub fn psi_path(&self) -> Option<&Path> {
        self.psi.as_ref().map(|s| s.path.as_path())
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

impl core::fmt::Debug for Sampler {
    // Not derived: the read buffer would print 16 KiB of bytes.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Sampler")
            .field("config", &self.config)
            .field("cgroup", &self.cgroup.as_ref().map(|files| &files.info))
            .field("psi", &self.psi.as_ref().map(|s| &s.path))
            .field("heap", &self.heap)
            .field("errors", &self.errors.total)
            .finish_non_exhaustive()
    }
}

/// The page size and physical memory from `sysconf`.
fn platform_memory() -> (u64, Option<u64>) {
    // SAFETY: sysconf only reads system configuration; any name is allowed and an
    // unsupported one returns -1.
    let (page, pages) = unsafe {
        (
            libc::sysconf(libc::_SC_PAGESIZE),
            libc::sysconf(libc::_SC_PHYS_PAGES),
        )
    };
    let page = u64::try_from(page).ok().filter(|&p| p > 0).unwrap_or(4096);
    let physical = u64::try_from(pages)
        .ok()
        .filter(|&p| p > 0)
        .map(|p| p.saturating_mul(page));
    (page, physical)
}
