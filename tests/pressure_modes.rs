//! The stall-driven and headroom-based threshold modes, end to end: a `MemoryManager`
//! sampling a scratch copy of a fixture tree (cgroup v2, and one without PSI) whose
//! usage and pressure files a script rewrites between samples, on a `ManualClock`.
#![cfg(all(feature = "std", target_os = "linux"))]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use membound::clock::ManualClock;
use membound::monitor::{MemoryManager, MonitorConfig};
use membound::os::{Sampler, SamplerConfig, WorkingSet};
use membound::pressure::{
    HeadroomBand, HeadroomThresholds, PressureConfig, PressureLevel, StallThresholds, ThresholdMode,
};
use PressureLevel::{Critical, High, Low, Normal};

#[path = "support/fixture_tree.rs"]
mod fixture_tree;

const MIB: u64 = 1 << 20;
/// The v2 fixture's effective limit: its memory.high.
const LIMIT: u64 = 768 * MIB;

/// A scratch copy of a fixture tree, removed on drop.
struct Tree(PathBuf);

impl Tree {
    fn copy(name: &str) -> Self {
        Self(fixture_tree::scratch_copy(name))
    }

    fn cgroup(&self, file: &str) -> PathBuf {
        self.0.join("sys/fs/cgroup").join(file)
    }

    /// The cgroup's usage (the working set, with `WorkingSet::Usage`).
    fn set_used(&self, bytes: u64) {
        std::fs::write(self.cgroup("memory.current"), format!("{bytes}\n")).unwrap();
    }

    /// The cgroup's memory.pressure, in percent.
    fn set_psi(&self, some: f64, full: f64) {
        let text = format!(
            "some avg10={some:.2} avg60=0.00 avg300=0.00 total=1\n\
             full avg10={full:.2} avg60=0.00 avg300=0.00 total=1\n"
        );
        std::fs::write(self.cgroup("memory.pressure"), text).unwrap();
    }

    fn manager(&self, pressure: PressureConfig) -> (MemoryManager, Arc<ManualClock>) {
        let config = SamplerConfig::default()
            .with_proc_root(self.0.join("proc"))
            .with_mount_root(&self.0)
            .with_working_set(WorkingSet::Usage);
        let sampler = Sampler::new(config).unwrap();
        let clock = Arc::new(ManualClock::default());
        let config = MonitorConfig::production().with_pressure(pressure);
        let manager = MemoryManager::with_source(config, sampler, Arc::clone(&clock)).unwrap();
        (manager, clock)
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Sustain 2 s, dwell 5 s.
fn timing(mode: ThresholdMode) -> PressureConfig {
    PressureConfig::production()
        .with_sustain(Duration::from_secs(2))
        .with_dwell(Duration::from_secs(5))
        .with_mode(mode)
}

/// Runs a script of (seconds to advance, used bytes, PSI some, PSI full, expected
/// level after the sample).
fn run(
    tree: &Tree,
    manager: &MemoryManager,
    clock: &ManualClock,
    script: &[(u64, u64, f64, f64, PressureLevel)],
) {
    for (step, &(advance, used, some, full, expected)) in script.iter().enumerate() {
        clock.advance_by(Duration::from_secs(advance));
        tree.set_used(used);
        tree.set_psi(some, full);
        manager.sample_now().unwrap();
        assert_eq!(
            manager.level(),
            expected,
            "step {step}: {used} B, some {some} %, full {full} %"
        );
    }
}

#[test]
fn stall_mode_follows_psi_with_hysteresis_sustain_and_dwell() {
    let tree = Tree::copy("v2");
    let (manager, clock) = tree.manager(timing(ThresholdMode::Stall(StallThresholds::new())));
    let quiet = 300 * MIB; // 39 %: utilization alone would say Normal throughout
    #[rustfmt::skip]
    run(&tree, &manager, &clock, &[
        (0, quiet, 0.5, 0.0, Normal),
        // 12 % of the time some task stalled: above Low's 10 %, not yet sustained.
        (1, quiet, 12.0, 0.0, Normal),
        (1, quiet, 11.0, 0.0, Normal),
        (1, quiet, 10.5, 0.0, Low),      // held 2 s
        // Wandering between Low's exit (5 %) and enter: no change.
        (6, quiet, 6.0, 0.0, Low),
        (1, quiet, 11.0, 0.0, Low),
        // `full` at 6 % opens High's gate; sustained 2 s later.
        (1, quiet, 11.0, 6.0, Low),
        (2, quiet, 11.0, 6.0, High),
        // 25 % of the time everything stalled: Critical at once.
        (1, quiet, 40.0, 25.0, Critical),
        // Calm again: not before the dwell...
        (1, quiet, 1.0, 0.0, Critical),
        // ...then straight down to the highest level whose exit still holds.
        (4, quiet, 6.0, 0.0, Low),
        (5, quiet, 1.0, 0.0, Normal),
    ]);
    let metrics = manager.metrics();
    assert_eq!(metrics.transitions_into, [1, 2, 1, 1]);
    assert_eq!(
        (metrics.threshold_fallbacks, metrics.threshold_fallback),
        (0, false)
    );
}

#[test]
fn stall_mode_takes_utilization_as_its_second_condition() {
    let tree = Tree::copy("v2");
    let (manager, clock) = tree.manager(timing(ThresholdMode::Stall(StallThresholds::new())));
    let at = |percent: u64| LIMIT * percent / 100;
    #[rustfmt::skip]
    run(&tree, &manager, &clock, &[
        // 88 %: High under the fixed bands, but nothing stalls and 88 % is below the
        // stall mode's utilization conditions (90/95/98 %).
        (0, at(88), 0.0, 0.0, Normal),
        (3, at(88), 0.0, 0.0, Normal),
        // 99 % with calm PSI: Critical by its utilization condition.
        (1, at(99), 0.0, 0.0, Critical),
        (6, at(91), 0.0, 0.0, Low),
    ]);
}

#[test]
fn stall_mode_without_psi_falls_back_to_the_fixed_bands_and_says_so() {
    let tree = Tree::copy("psi-absent");
    std::fs::write(tree.cgroup("memory.max"), format!("{LIMIT}\n")).unwrap();
    let (manager, clock) = tree.manager(timing(ThresholdMode::Stall(StallThresholds::new())));
    let at = |percent: u64| LIMIT * percent / 100;
    for (advance, used, expected) in [
        (0, at(50), Normal),
        (0, at(88), Normal),
        (2, at(88), High),
        (0, at(96), Critical),
    ] {
        clock.advance_by(Duration::from_secs(advance));
        tree.set_used(used);
        let step = manager.sample_now().unwrap();
        assert_eq!(step.sample.psi, None);
        assert_eq!(manager.level(), expected);
    }
    let metrics = manager.metrics();
    assert_eq!(
        (metrics.threshold_fallbacks, metrics.threshold_fallback),
        (4, true)
    );

    // The control: once the cgroup has a pressure file, a manager on the same tree
    // judges by PSI and does not fall back.
    tree.set_psi(0.0, 0.0);
    let (fresh, _clock) = tree.manager(timing(ThresholdMode::Stall(StallThresholds::new())));
    let step = fresh.sample_now().unwrap();
    assert!(step.sample.psi.is_some());
    assert_eq!(fresh.level(), Normal); // 96 % used, below the stall mode's 98 %
    let metrics = fresh.metrics();
    assert_eq!(
        (metrics.threshold_fallbacks, metrics.threshold_fallback),
        (0, false)
    );
}

#[test]
fn headroom_mode_uses_bytes_where_they_fit_and_fractions_where_they_do_not() {
    let tree = Tree::copy("v2");
    // On 768 MiB: Low below 200 MiB free (74 % used: the bytes apply), High below
    // 100 MiB (87 %: bytes), Critical below 40 MiB (94.8 %, under the fixed 95 %: the
    // fraction applies).
    let headroom = HeadroomThresholds {
        low: HeadroomBand::mib(200, 240),
        high: HeadroomBand::mib(100, 130),
        critical: HeadroomBand::mib(40, 60),
    };
    let config = timing(ThresholdMode::Headroom(headroom));
    let (manager, clock) = tree.manager(config);
    let free = |mib: u64| LIMIT - mib * MIB;
    #[rustfmt::skip]
    run(&tree, &manager, &clock, &[
        (0, free(230), 0.0, 0.0, Normal), // 70 % used: Low under the fixed bands
        (0, free(190), 0.0, 0.0, Normal),
        (2, free(190), 0.0, 0.0, Low),
        (0, free(95), 0.0, 0.0, Low),
        (2, free(95), 0.0, 0.0, High),
        (0, free(39), 0.0, 0.0, High),    // 94.9 % used: clamped Critical needs 95 %
        (0, free(38), 0.0, 0.0, Critical),
        // Falling: the exits are headroom too (High left at 130 MiB free).
        (5, free(120), 0.0, 0.0, High),
        (5, free(235), 0.0, 0.0, Low),
        (5, free(245), 0.0, 0.0, Normal),
    ]);

    // The limit grows to 4 GiB (`docker update`): the same headroom is now a much
    // higher utilization.
    std::fs::write(tree.cgroup("memory.high"), format!("{}\n", 4096 * MIB)).unwrap();
    std::fs::write(tree.cgroup("memory.max"), format!("{}\n", 4096 * MIB)).unwrap();
    let applied = config.applied_bands(4096 * MIB);
    assert!((applied[0].band.enter - (1.0 - 200.0 / 4096.0)).abs() < 1e-12);
    #[rustfmt::skip]
    run(&tree, &manager, &clock, &[
        // 90 % used, 396 MiB free: High under the fixed bands, Normal here.
        (10, 3700 * MIB, 0.0, 0.0, Normal),
        (2, 3700 * MIB, 0.0, 0.0, Normal),
        // 96 MiB free (97.7 % used): High.
        (0, 4000 * MIB, 0.0, 0.0, Normal),
        (2, 4000 * MIB, 0.0, 0.0, High),
    ]);
    assert_eq!(manager.metrics().threshold_fallbacks, 0);
}

#[test]
fn headroom_defaults_on_a_small_container_are_the_fixed_bands() {
    let tree = Tree::copy("v2");
    let (manager, clock) = tree.manager(timing(ThresholdMode::Headroom(HeadroomThresholds::new())));
    let at = |percent: u64| LIMIT * percent / 100;
    // 1 GiB / 512 MiB / 256 MiB of headroom cannot be had under 768 MiB: every
    // threshold is clamped to the fixed 70/85/95 %.
    #[rustfmt::skip]
    run(&tree, &manager, &clock, &[
        (0, at(60), 0.0, 0.0, Normal),
        (0, at(71), 0.0, 0.0, Normal),
        (2, at(71), 0.0, 0.0, Low),
        (0, at(96), 0.0, 0.0, Critical),
    ]);
}
