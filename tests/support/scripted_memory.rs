//! A memory manager on a scripted memory source and a manual clock, whose level a
//! test sets: each [`Scripted::drive`] takes one sample at a utilization inside the
//! level's band, with no sustain or dwell, so the transition happens at once.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use membound::clock::ManualClock;
use membound::monitor::{MemoryManager, MemorySource, MonitorConfig};
use membound::os::{EffectiveLimit, LimitSource, MemorySample};
use membound::pressure::{PressureConfig, PressureLevel};

const LIMIT: u64 = 1 << 30;

/// The utilization the source reports.
#[derive(Clone, Default)]
struct Script(Arc<Mutex<f64>>);

impl MemorySource for Script {
    fn sample(&mut self) -> MemorySample {
        let limit = EffectiveLimit {
            bytes: LIMIT,
            source: LimitSource::User,
        };
        MemorySample::from_usage((*self.0.lock().unwrap() * LIMIT as f64) as u64, limit)
    }

    fn rss(&mut self) -> Option<u64> {
        None
    }
}

/// A manager whose level the test drives.
pub struct Scripted {
    pub manager: MemoryManager,
    script: Script,
}

impl Scripted {
    /// A manager at `Normal` with the production bands (enter 70/85/95 %), no
    /// sustain and no dwell.
    pub fn new() -> Self {
        let config = MonitorConfig::production().with_pressure(
            PressureConfig::production()
                .with_sustain(Duration::ZERO)
                .with_dwell(Duration::ZERO),
        );
        let script = Script::default();
        let clock = Arc::new(ManualClock::default());
        let manager = MemoryManager::with_source(config, script.clone(), clock).unwrap();
        Self { manager, script }
    }

    /// Takes the manager to `level` with one sample, on the calling thread.
    pub fn drive(&self, level: PressureLevel) {
        let utilization = match level {
            PressureLevel::Normal => 0.10,
            PressureLevel::Low => 0.75,
            PressureLevel::High => 0.90,
            PressureLevel::Critical => 0.97,
        };
        *self.script.0.lock().unwrap() = utilization;
        self.manager.sample_now();
        assert_eq!(self.manager.level(), level, "the scripted level");
    }
}
