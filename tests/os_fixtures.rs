//! The OS sampler on fixture trees of real kernels' layouts: cgroup v1 (in a Docker
//! namespace), v2 (private namespace), nested v2 with a parent limit, no limit, no
//! PSI, malformed files, and a process outside its namespace's mount.
#![cfg(all(feature = "std", target_os = "linux"))]

use std::path::Path;

use membound::os::{
    CgroupLimitFile, CgroupVersion, DiscoveryError, EffectiveLimit, LimitSource, Refresh, Sampler,
    SamplerConfig, WorkingSet,
};

#[path = "support/fixture_tree.rs"]
mod fixture_tree;
use fixture_tree::{fixture, scratch_copy};

const MIB: u64 = 1 << 20;
const MEM_TOTAL: u64 = 8_000_000 * 1024;
const HOST_UTILIZATION: f64 = 0.25; // 1 - 6_000_000 / 8_000_000

fn config(root: &Path) -> SamplerConfig {
    SamplerConfig::default()
        .with_proc_root(root.join("proc"))
        .with_mount_root(root)
}

fn sampler(name: &str) -> Sampler {
    Sampler::new(config(&fixture(name))).unwrap()
}

fn cgroup_limit(bytes: u64, file: CgroupLimitFile, depth: usize) -> Option<EffectiveLimit> {
    Some(EffectiveLimit {
        bytes,
        source: LimitSource::Cgroup { file, depth },
    })
}

fn close(a: Option<f64>, b: f64) -> bool {
    a.is_some_and(|a| (a - b).abs() < 1e-9)
}

#[test]
fn v1_in_a_docker_namespace_resolves_through_the_mount_root() {
    let mut s = sampler("v1");
    let info = s.cgroup().expect("v1 memory cgroup").clone();
    assert_eq!(info.version, CgroupVersion::V1);
    assert_eq!(info.path, "/docker/abc");
    // The mount's root is /docker/abc: the directory is the mount point itself, not
    // the mount point plus /docker/abc (the fixture has a trap there).
    assert_eq!(info.dir, fixture("v1").join("sys/fs/cgroup/memory"));
    assert!(info.exact);

    let sample = s.sample();
    assert_eq!(sample.errors, 0, "{:?}", s.last_error());
    assert_eq!(sample.cgroup_usage, Some(300 * MIB));
    assert_eq!(sample.working_set, Some(250 * MIB)); // usage - total_inactive_file
    assert_eq!(
        sample.limit,
        cgroup_limit(512 * MIB, CgroupLimitFile::V1Limit, 0)
    );
    assert_eq!(sample.used, Some(250 * MIB));
    assert!(close(sample.utilization, 250.0 / 512.0));
    assert_eq!(sample.mem_total, Some(MEM_TOTAL));
    assert_eq!(sample.mem_available, Some(6_000_000 * 1024));
    let psi = sample.psi.unwrap();
    assert!((psi.some_avg10 - 0.5).abs() < 1e-9);
    assert!((psi.full_avg10.unwrap() - 0.1).abs() < 1e-9);
    let rss = sample.rss.unwrap();
    assert!(rss % 2500 == 0 && (rss / 2500).is_power_of_two() && rss / 2500 >= 4096);
    assert_eq!(s.errors(), 0);
}

#[test]
fn v1_no_limit_sentinel_means_physical_memory_wins() {
    let mut s = sampler("no-limit");
    let info = s.cgroup().unwrap();
    assert_eq!(
        info.dir,
        fixture("no-limit").join("sys/fs/cgroup/memory/user.slice")
    );
    let sample = s.sample();
    assert_eq!(sample.errors, 0);
    assert_eq!(
        sample.limit,
        Some(EffectiveLimit {
            bytes: MEM_TOTAL,
            source: LimitSource::Physical
        })
    );
    // Own share is 3 %, the host is 25 % used: the host's figure counts.
    assert!(close(sample.utilization, HOST_UTILIZATION));
    let mut own_only =
        Sampler::new(config(&fixture("no-limit")).with_host_pressure(false)).unwrap();
    assert!(close(
        own_only.sample().utilization,
        (250 * MIB) as f64 / MEM_TOTAL as f64
    ));
}

#[test]
fn v2_private_namespace_memory_high_and_cgroup_psi() {
    let mut s = sampler("v2");
    let info = s.cgroup().unwrap();
    assert_eq!(info.version, CgroupVersion::V2);
    assert_eq!(info.dir, fixture("v2").join("sys/fs/cgroup"));
    let sample = s.sample();
    assert_eq!(sample.errors, 0);
    // memory.high (768 MiB) is tighter than memory.max (1 GiB).
    assert_eq!(
        sample.limit,
        cgroup_limit(768 * MIB, CgroupLimitFile::V2High, 0)
    );
    assert_eq!(sample.working_set, Some(250 * MIB));
    // The cgroup's own memory.pressure is preferred over the host's.
    assert!((sample.psi.unwrap().some_avg10 - 12.34).abs() < 1e-9);
    assert_eq!(
        sample.limit.unwrap().source.to_string(),
        "cgroup memory.high"
    );
}

#[test]
fn nested_v2_takes_the_tightest_limit_up_the_tree() {
    let mut s = sampler("v2-nested");
    assert_eq!(
        s.cgroup().unwrap().dir,
        fixture("v2-nested").join("sys/fs/cgroup/kubepods/pod1/ctr")
    );
    let sample = s.sample();
    assert_eq!(sample.errors, 0);
    // ctr: max none, high 300 MiB; pod1: max 256 MiB; kubepods: max 2 GiB, high 1 GiB.
    assert_eq!(
        sample.limit,
        cgroup_limit(256 * MIB, CgroupLimitFile::V2Max, 1)
    );
    assert_eq!(sample.cgroup_usage, Some(200 * MIB));
    assert_eq!(sample.working_set, Some(150 * MIB));
    assert!(close(sample.utilization, 150.0 / 256.0));
    // No memory.pressure in the leaf: the host's PSI.
    assert!((sample.psi.unwrap().some_avg10 - 0.5).abs() < 1e-9);

    // A tighter user limit wins and says so.
    let mut user =
        Sampler::new(config(&fixture("v2-nested")).with_user_limit(Some(200 * MIB))).unwrap();
    let sample = user.sample();
    assert_eq!(
        sample.limit,
        Some(EffectiveLimit {
            bytes: 200 * MIB,
            source: LimitSource::User
        })
    );
    // The whole usage, if asked.
    let mut usage =
        Sampler::new(config(&fixture("v2-nested")).with_working_set(WorkingSet::Usage)).unwrap();
    assert_eq!(usage.sample().working_set, Some(200 * MIB));
}

#[test]
fn absent_psi_is_no_field_and_no_error() {
    let mut s = sampler("psi-absent");
    assert!(!s.has_psi());
    let sample = s.sample();
    assert_eq!(sample.psi, None);
    assert_eq!(sample.errors, 0);
    assert_eq!(sample.limit.unwrap().source, LimitSource::Physical);
}

#[test]
fn malformed_files_skip_their_fields_and_are_counted() {
    let mut s = sampler("malformed");
    let sample = s.sample();
    // statm, MemAvailable, PSI, memory.current, memory.max, memory.stat.
    assert_eq!(sample.errors, 6, "{sample:?}");
    assert_eq!(sample.rss, None);
    assert_eq!(sample.mem_total, Some(MEM_TOTAL));
    assert_eq!(sample.mem_available, None);
    assert_eq!(sample.psi, None);
    assert_eq!(sample.cgroup_usage, None);
    assert_eq!(sample.working_set, None);
    assert_eq!(sample.limit.unwrap().source, LimitSource::Physical);
    assert_eq!(sample.utilization, None, "nothing to measure: no guess");
    assert_eq!(s.errors(), 6);
    // The next sample reads the cheap files only (PSI, memory.current): the limits,
    // memory.stat, meminfo and statm (RSS is only reported where the cgroup's usage
    // is measured) wait for the next full read.
    s.sample();
    assert_eq!(s.errors(), 8);
    assert!(s.last_error().is_some());
    let mut always =
        Sampler::new(config(&fixture("malformed")).with_refresh(Refresh::ALWAYS)).unwrap();
    always.sample();
    always.sample();
    assert_eq!((always.errors(), always.full_reads()), (12, 2));
}

#[test]
fn malformed_discovery_files_mean_no_cgroup_but_sampling_goes_on() {
    let mut s = sampler("malformed-cgroup");
    assert_eq!(s.cgroup(), None);
    assert_eq!(
        s.cgroup_error(),
        Some(DiscoveryError::Malformed {
            file: "/proc/self/cgroup"
        })
    );
    let sample = s.sample();
    assert!(sample.rss.is_some());
    assert_eq!(sample.used, sample.rss);
    assert_eq!(sample.limit.unwrap().source, LimitSource::Physical);

    let mut off = Sampler::new(config(&fixture("v2")).with_cgroup(false)).unwrap();
    assert_eq!(off.cgroup_error(), Some(DiscoveryError::Disabled));
    assert_eq!(off.sample().cgroup_usage, None);
}

#[test]
fn a_cgroup_outside_the_mount_falls_back_to_the_mount_inexactly() {
    let s = sampler("outside-namespace");
    let info = s.cgroup().unwrap();
    assert!(!info.exact);
    assert_eq!(info.dir, fixture("outside-namespace").join("sys/fs/cgroup"));
}

#[test]
fn construction_errors_are_typed() {
    let err = Sampler::new(config(Path::new("/nonexistent-root"))).unwrap_err();
    assert!(matches!(err, membound::os::OsError::Open { .. }), "{err}");
    let err = Sampler::new(config(&fixture("v2")).with_user_limit(Some(0))).unwrap_err();
    assert!(matches!(err, membound::os::OsError::ZeroUserLimit));
}

#[test]
fn a_file_that_stops_reading_is_reopened() {
    let root = scratch_copy("v2");
    let current = root.join("sys/fs/cgroup/memory.current");
    // Reads of a directory fail (EISDIR) like reads of a removed cgroup file
    // (ENODEV) do, while opening it succeeds.
    std::fs::remove_file(&current).unwrap();
    std::fs::create_dir(&current).unwrap();
    let mut s = Sampler::new(config(&root)).unwrap();
    let sample = s.sample();
    assert_eq!(sample.cgroup_usage, None);
    assert_eq!(sample.errors, 1);

    // The file comes back: the next sample re-opens it.
    std::fs::remove_dir(&current).unwrap();
    std::fs::write(&current, "1048576\n").unwrap();
    let sample = s.sample();
    assert_eq!(sample.errors, 0);
    assert_eq!(sample.cgroup_usage, Some(MIB));
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn limits_are_reread_at_every_full_read() {
    let root = scratch_copy("v2-nested");
    let mut s = Sampler::new(config(&root).with_refresh(Refresh::ALWAYS)).unwrap();
    assert_eq!(s.sample().limit.unwrap().bytes, 256 * MIB);
    // `docker update --memory`: the same open file now says something else.
    std::fs::write(root.join("sys/fs/cgroup/kubepods/pod1/memory.max"), "max\n").unwrap();
    assert_eq!(
        s.sample().limit,
        cgroup_limit(300 * MIB, CgroupLimitFile::V2High, 0)
    );
    std::fs::remove_dir_all(&root).unwrap();
}

/// The default schedule: cheap figures every sample, the expensive files every 8th
/// sample or as soon as the usage moves by more than 1 % of the limit, and the error
/// in between exactly what the docs bound it by.
#[test]
fn expensive_files_are_read_on_schedule_within_the_documented_bound() {
    let root = scratch_copy("v2");
    let cgroup = root.join("sys/fs/cgroup");
    let mut s = Sampler::new(config(&root)).unwrap();
    assert_eq!(s.config().refresh, Refresh::new(8, 0.01));
    let first = s.sample();
    assert_eq!((s.full_reads(), first.working_set), (1, Some(250 * MIB)));
    let usage = first.cgroup_usage.unwrap();

    // Slow figures change, the usage moves by less than 1 % of 768 MiB (7.68 MiB).
    let stat = std::fs::read_to_string(cgroup.join("memory.stat")).unwrap();
    let stat = stat.replace("inactive_file 52428800", "inactive_file 10485760");
    std::fs::write(cgroup.join("memory.stat"), stat).unwrap();
    std::fs::write(cgroup.join("memory.high"), format!("{}\n", 700 * MIB)).unwrap();
    std::fs::write(cgroup.join("memory.pressure"), "some avg10=40.00 avg60=0.00 avg300=0.00 total=1\nfull avg10=1.00 avg60=0.00 avg300=0.00 total=1\n").unwrap();
    let moved = usage + 5 * MIB;
    std::fs::write(cgroup.join("memory.current"), format!("{moved}\n")).unwrap();
    let statm = root.join("proc/self/statm");
    std::fs::write(&statm, "30000 5000 1200 100 0 5000 0\n").unwrap();
    for n in 2..=8 {
        let sample = s.sample();
        assert_eq!(s.full_reads(), 1, "sample {n}");
        // Fresh: the usage and PSI of this sample.
        assert_eq!(sample.cgroup_usage, Some(moved));
        assert!((sample.psi.unwrap().some_avg10 - 40.0).abs() < 1e-9);
        // Reused: the limit and the inactive file cache of the full read, so the
        // working set's error is the inactive cache's move (40 MiB here), no more.
        assert_eq!(sample.limit.unwrap().bytes, 768 * MIB);
        assert_eq!(sample.working_set, Some(moved - 50 * MIB));
        assert_eq!(sample.rss, first.rss);
    }
    // The 9th sample is the next full read.
    let ninth = s.sample();
    assert_eq!(s.full_reads(), 2);
    assert_eq!(ninth.limit.unwrap().bytes, 700 * MIB);
    assert_eq!(ninth.working_set, Some(moved - 10 * MIB));
    assert_eq!(ninth.rss, first.rss.map(|rss| rss * 2)); // 5000 resident pages, not 2500

    // A move of more than 1 % of the limit (700 MiB: 7 MiB) forces a full read at once.
    std::fs::write(cgroup.join("memory.high"), format!("{}\n", 650 * MIB)).unwrap();
    s.sample();
    assert_eq!(s.full_reads(), 2);
    let jumped = moved + 8 * MIB;
    std::fs::write(cgroup.join("memory.current"), format!("{jumped}\n")).unwrap();
    let sample = s.sample();
    assert_eq!(s.full_reads(), 3);
    assert_eq!(sample.limit.unwrap().bytes, 650 * MIB);
    // A cheap figure that vanishes (here: unreadable) also forces one.
    std::fs::write(cgroup.join("memory.current"), "garbage\n").unwrap();
    let sample = s.sample();
    assert_eq!((sample.cgroup_usage, s.full_reads()), (None, 4));

    assert!(matches!(
        Sampler::new(config(&root).with_refresh(Refresh::new(0, 0.01))),
        Err(membound::os::OsError::BadRefresh)
    ));
    assert!(matches!(
        Sampler::new(config(&root).with_refresh(Refresh::new(4, f64::NAN))),
        Err(membound::os::OsError::BadRefresh)
    ));
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn lean_config_skips_stat_meminfo_and_psi_but_keeps_limits() {
    let root = fixture("v1");
    let config = SamplerConfig::lean()
        .with_proc_root(root.join("proc"))
        .with_mount_root(&root);
    let mut s = Sampler::new(config).unwrap();
    assert!(!s.has_psi());
    let sample = s.sample();
    assert_eq!(sample.errors, 0);
    assert_eq!(
        sample.working_set,
        Some(300 * MIB),
        "usage, page cache included"
    );
    assert_eq!(sample.mem_available, None);
    assert_eq!(
        sample.mem_total,
        Some(MEM_TOTAL),
        "read once at construction"
    );
    assert_eq!(sample.psi, None);
    assert_eq!(
        sample.limit,
        cgroup_limit(512 * MIB, CgroupLimitFile::V1Limit, 0)
    );
    assert!(close(sample.utilization, 300.0 / 512.0));
}

#[test]
fn v1_parent_limits_bind_only_with_use_hierarchy() {
    // use_hierarchy 0: the job is not charged to `batch`, whose 100 MiB limit does
    // not bound it.
    let mut flat = sampler("v1-flat");
    assert_eq!(flat.sample().limit.unwrap().source, LimitSource::Physical);

    let root = scratch_copy("v1-flat");
    std::fs::write(
        root.join("sys/fs/cgroup/memory/batch/job/memory.use_hierarchy"),
        "1\n",
    )
    .unwrap();
    let mut nested = Sampler::new(config(&root)).unwrap();
    assert_eq!(
        nested.sample().limit,
        cgroup_limit(100 * MIB, CgroupLimitFile::V1Limit, 1)
    );
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn debug_output_is_short() {
    let text = format!("{:?}", sampler("v2"));
    assert!(text.contains("V2") && text.len() < 2_000, "{}", text.len());
}
