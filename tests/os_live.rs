//! Real sampling on the machine running the tests: the figures relate sanely.
#![cfg(all(feature = "std", target_os = "linux"))]

use membound::os::{CgroupVersion, LimitSource, Sampler, SamplerConfig};

#[test]
fn real_sample_has_sane_relations() {
    let mut sampler = Sampler::new(SamplerConfig::default()).unwrap();
    let s = sampler.sample();
    assert_eq!(s.errors, 0, "{:?}", sampler.last_error());

    let rss = s.rss.expect("rss");
    assert!(rss > 0);
    let total = s.mem_total.expect("MemTotal");
    let available = s.mem_available.expect("MemAvailable");
    assert!(available <= total);
    assert!(rss < total);

    let limit = s.limit.expect("a limit: at least physical memory");
    assert!(
        limit.bytes <= total,
        "nothing is looser than physical memory"
    );
    if limit.source == LimitSource::Physical {
        assert_eq!(limit.bytes, total);
    }

    // /proc/self/cgroup names a memory hierarchy here: the sampler must find it.
    let membership = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    let v1 = membership.lines().any(|l| {
        l.split(':')
            .nth(1)
            .is_some_and(|c| c.split(',').any(|c| c == "memory"))
    });
    if v1 {
        let info = sampler.cgroup().expect("v1 memory cgroup");
        assert_eq!(info.version, CgroupVersion::V1);
        assert!(info.dir.join("memory.usage_in_bytes").exists());
    }
    if let Some(info) = sampler.cgroup() {
        let usage = s.cgroup_usage.expect("usage");
        let working_set = s.working_set.expect("working set");
        assert!(working_set <= usage);
        assert!(limit.bytes >= working_set, "{limit:?} < {working_set}");
        assert_eq!(s.used, Some(working_set));
        println!(
            "cgroup {:?} {}: usage {usage}, working set {working_set}",
            info.version,
            info.dir.display()
        );
    } else {
        assert_eq!(s.used, Some(rss));
    }

    let u = s.utilization.expect("utilization");
    assert!((0.0..=1.5).contains(&u), "{u}");
    assert!(u >= s.host_utilization().unwrap() - 1e-12);

    // A second sample from the same open files works as well.
    let again = sampler.sample();
    assert_eq!(again.errors, 0);
    assert!(again.rss.unwrap() > 0);
    println!("{s:?}");
}
