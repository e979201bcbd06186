//! The MemoryManager on a scripted memory source and a ManualClock: transitions,
//! callbacks (order, panics, unsubscribe), soft capacities, trims, metrics, and the
//! thread's start/stop life cycle.
#![cfg(feature = "std")]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use membound::capacity::{CapacityError, SoftCapacity};
use membound::clock::ManualClock;
use membound::heap::TrackingAllocator;
use membound::monitor::{
    HeapSource, MemoryManager, MemorySource, MonitorConfig, MonitorError, PsiWake, PsiWakeState,
    TrimConfig,
};
use membound::os::{EffectiveLimit, LimitSource, MemorySample};
use membound::pressure::{Band, PressureConfig, PressureLevel};
use PressureLevel::*;

const LIMIT: u64 = 1 << 30;

/// A memory source whose utilization the test sets.
#[derive(Clone, Default)]
struct Script {
    utilization: Arc<Mutex<Option<f64>>>,
    /// RSS readings handed out by `rss()`, in order.
    rss: Arc<Mutex<Vec<u64>>>,
}

impl Script {
    fn set(&self, utilization: f64) {
        *self.utilization.lock().unwrap() = Some(utilization);
    }
}

impl MemorySource for Script {
    fn sample(&mut self) -> MemorySample {
        let limit = EffectiveLimit {
            bytes: LIMIT,
            source: LimitSource::User,
        };
        match *self.utilization.lock().unwrap() {
            Some(u) => MemorySample::from_usage((u * LIMIT as f64) as u64, limit),
            None => {
                let mut s = MemorySample::default();
                s.errors = 2;
                s
            }
        }
    }

    fn rss(&mut self) -> Option<u64> {
        let mut rss = self.rss.lock().unwrap();
        (!rss.is_empty()).then(|| rss.remove(0))
    }
}

/// A test-local soft capacity.
struct Budget {
    max: usize,
    now: AtomicUsize,
}

impl Budget {
    fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            max,
            now: AtomicUsize::new(max),
        })
    }
}

impl SoftCapacity for Budget {
    fn capacity(&self) -> usize {
        self.now.load(Ordering::Relaxed)
    }
    fn max_capacity(&self) -> usize {
        self.max
    }
    fn set_capacity(&self, capacity: usize) -> Result<(), CapacityError> {
        if capacity == 0 {
            return Err(CapacityError::Zero);
        }
        if capacity > self.max {
            return Err(CapacityError::AboveMax {
                requested: capacity,
                max: self.max,
            });
        }
        self.now.store(capacity, Ordering::Relaxed);
        Ok(())
    }
}

fn immediate() -> MonitorConfig {
    MonitorConfig::production().with_pressure(
        PressureConfig::production()
            .with_sustain(Duration::ZERO)
            .with_dwell(Duration::ZERO),
    )
}

fn manager(config: MonitorConfig) -> (MemoryManager, Script, Arc<ManualClock>) {
    let script = Script::default();
    let clock = Arc::new(ManualClock::default());
    let manager = MemoryManager::with_source(config, script.clone(), Arc::clone(&clock)).unwrap();
    (manager, script, clock)
}

#[test]
fn transitions_resize_targets_then_call_back_in_order_despite_a_panic() {
    let (m, script, _clock) = manager(immediate());
    let ring_like = Budget::new(8192);
    m.register_capacity(&ring_like);
    let log = Arc::new(Mutex::new(Vec::new()));
    let mut subscriptions = Vec::new();
    for id in 0..3 {
        let log = Arc::clone(&log);
        let target = Arc::clone(&ring_like);
        subscriptions.push(m.on_pressure(move |event| {
            // Capacities were resized before any callback runs.
            log.lock()
                .unwrap()
                .push((id, event.transition.to, target.capacity()));
            if id == 1 {
                panic!("a faulty subscriber");
            }
        }));
    }

    script.set(0.90);
    let step = m.sample_now().unwrap();
    assert_eq!(
        step.transition.map(|t| (t.from, t.to)),
        Some((Normal, High))
    );
    assert_eq!(m.level(), High);
    assert!((m.scale() - 0.8).abs() < 1e-6, "{}", m.scale()); // (0.90-0.70)/(0.95-0.70)
    assert_eq!(ring_like.capacity(), 4096);

    script.set(0.97);
    m.sample_now();
    assert_eq!((m.level(), ring_like.capacity()), (Critical, 2048));

    script.set(0.10);
    m.sample_now();
    assert_eq!(
        (m.level(), ring_like.capacity(), m.scale()),
        (Normal, 8192, 0.0)
    );

    let log = log.lock().unwrap();
    let expected: Vec<_> = [(High, 4096), (Critical, 2048), (Normal, 8192)]
        .iter()
        .flat_map(|&(level, cap)| (0..3).map(move |id| (id, level, cap)))
        .collect();
    assert_eq!(*log, expected);
    assert_eq!(m.metrics().callback_panics, 3);
}

#[test]
fn an_oscillating_signal_calls_back_once() {
    let config = MonitorConfig::production(); // sustain 10 s, dwell 30 s
    let (m, script, clock) = manager(config);
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&calls);
    let _sub = m.on_pressure(move |_| {
        counter.fetch_add(1, Ordering::Relaxed);
    });
    for i in 0..120 {
        // Around the High threshold (85 %), never below its exit (80 %).
        script.set(if i % 2 == 0 { 0.86 } else { 0.83 });
        m.sample_now();
        clock.advance_by(Duration::from_secs(5));
    }
    // Low after 10 s sustained above 70 %; High never holds 10 s above 85 %.
    assert_eq!(calls.load(Ordering::Relaxed), 1);
    assert_eq!(m.level(), Low);
    assert_eq!(m.metrics().transitions_into, [0, 1, 0, 0]);
}

#[test]
fn dropped_or_unsubscribed_callbacks_are_not_called() {
    let (m, script, _clock) = manager(immediate());
    let calls = Arc::new(Mutex::new(Vec::new()));
    let subscribe = |name: &'static str| {
        let calls = Arc::clone(&calls);
        m.on_pressure(move |_| calls.lock().unwrap().push(name))
    };
    let a = subscribe("a");
    let b = subscribe("b");
    let c = subscribe("c");
    assert_eq!(m.metrics().subscribers, 3);
    drop(a);
    b.unsubscribe();
    assert_eq!(m.metrics().subscribers, 1);
    script.set(0.9);
    m.sample_now();
    assert_eq!(*calls.lock().unwrap(), ["c"]);
    drop(c);
}

#[test]
fn a_callback_may_unsubscribe_itself_and_read_the_manager() {
    let (m, script, _clock) = manager(immediate());
    let m = Arc::new(m);
    let slot: Arc<Mutex<Option<membound::monitor::Subscription>>> = Arc::default();
    let calls = Arc::new(AtomicUsize::new(0));
    let (slot2, calls2, weak) = (Arc::clone(&slot), Arc::clone(&calls), Arc::downgrade(&m));
    let sub = m.on_pressure(move |event| {
        calls2.fetch_add(1, Ordering::Relaxed);
        let manager = weak.upgrade().unwrap();
        assert_eq!(manager.level(), event.transition.to);
        assert_eq!(manager.metrics().level, event.transition.to);
        assert!(manager.sample_now().is_none(), "no re-entrant sampling");
        drop(slot2.lock().unwrap().take()); // unsubscribe from inside: no deadlock
    });
    *slot.lock().unwrap() = Some(sub);
    script.set(0.9);
    m.sample_now();
    script.set(0.1);
    m.sample_now();
    assert_eq!(calls.load(Ordering::Relaxed), 1);
    assert_eq!(m.metrics().subscribers, 0);
}

#[test]
fn metrics_count_time_in_levels_errors_and_unmeasured_samples() {
    let (m, script, clock) = manager(immediate());
    script.set(0.5);
    m.sample_now();
    clock.advance_by(Duration::from_secs(5));
    script.set(0.9);
    m.sample_now(); // Normal for 5 s
    clock.advance_by(Duration::from_secs(10));
    *script.utilization.lock().unwrap() = None; // a sample with nothing measurable
    let step = m.sample_now().unwrap();
    assert_eq!(step.transition, None);
    clock.advance_by(Duration::from_secs(1));

    let metrics = m.metrics();
    assert_eq!(metrics.samples, 3);
    assert_eq!(metrics.unmeasured_samples, 1);
    assert_eq!(metrics.sampling_errors, 2);
    assert_eq!(metrics.level, High);
    assert_eq!(metrics.transitions_into, [0, 0, 1, 0]);
    assert_eq!(
        metrics.time_in,
        [
            Duration::from_secs(5),
            Duration::ZERO,
            Duration::from_secs(11),
            Duration::ZERO
        ]
    );
    let last = metrics.last_transition.unwrap();
    assert_eq!((last.from, last.to, last.at), (Normal, High, 5_000));
    assert_eq!(metrics.last_sample.unwrap().errors, 2);
    assert_eq!(metrics.psi_wake, PsiWakeState::Off);
}

#[test]
fn trims_on_rising_to_high_are_rate_limited_and_measured() {
    let trim = TrimConfig::every(Duration::from_secs(60));
    let (m, script, clock) = manager(immediate().with_trim(trim));
    *script.rss.lock().unwrap() = vec![500, 300, 900, 100];
    script.set(0.75);
    m.sample_now(); // Low: no trim
    script.set(0.9);
    m.sample_now(); // High: trim, 500 -> 300
    script.set(0.1);
    m.sample_now();
    clock.advance_by(Duration::from_secs(30));
    script.set(0.97);
    m.sample_now(); // Critical within 60 s of the last trim: none
    let metrics = m.metrics();
    if cfg!(all(target_os = "linux", target_env = "gnu")) {
        assert_eq!((metrics.trims, metrics.bytes_released), (1, 200));
        script.set(0.1);
        m.sample_now();
        clock.advance_by(Duration::from_secs(30));
        script.set(0.97);
        m.sample_now(); // 60 s later: trims again, 900 -> 100
        assert_eq!((m.metrics().trims, m.metrics().bytes_released), (2, 1000));
    } else {
        assert_eq!(metrics.trims, 0);
    }
}

#[test]
fn trims_are_off_by_default() {
    let (m, script, _clock) = manager(immediate());
    *script.rss.lock().unwrap() = vec![500, 300];
    script.set(0.99);
    m.sample_now();
    assert_eq!(m.metrics().trims, 0);
    assert_eq!(script.rss.lock().unwrap().len(), 2);
}

#[test]
fn a_bad_config_is_an_error() {
    let config = MonitorConfig::production()
        .with_pressure(PressureConfig::production().with_high(Band::percent(60, 50)));
    let err = MemoryManager::with_source(config.clone(), Script::default(), ManualClock::default())
        .unwrap_err();
    assert!(matches!(err, MonitorError::Config(_)), "{err}");
    assert!(matches!(
        MemoryManager::new(config),
        Err(MonitorError::Config(_))
    ));
}

#[test]
fn registering_applies_the_current_level_and_targets_are_held_weakly() {
    let (m, script, _clock) = manager(immediate());
    script.set(0.9);
    m.sample_now();
    let late = Budget::new(100);
    let id = m.register_capacity(&late);
    assert_eq!(late.capacity(), 50);
    assert!(m.unregister_capacity(id));
    assert!(!m.unregister_capacity(id));
    let dropped = Budget::new(100);
    m.register_capacity(&dropped);
    drop(dropped);
    script.set(0.1);
    m.sample_now(); // no panic on a dropped target
    assert_eq!(late.capacity(), 50, "unregistered: left alone");
}

#[test]
fn heap_source_measures_a_tracked_heap_against_its_size() {
    static HEAP: TrackingAllocator<System> = TrackingAllocator::with_heap_size(System, 1000);
    let layout = Layout::from_size_align(900, 8).unwrap();
    // SAFETY: a non-zero layout; freed below with the same layout.
    let block = unsafe { HEAP.alloc(layout) };
    assert!(!block.is_null());
    let clock = ManualClock::default();
    let m = MemoryManager::with_source(immediate(), HeapSource(&HEAP), clock).unwrap();
    let step = m.sample_now().unwrap();
    assert_eq!(step.sample.utilization, Some(0.9));
    assert_eq!(step.sample.limit.unwrap().source, LimitSource::Heap);
    assert_eq!(m.level(), High);
    // SAFETY: allocated above with this layout.
    unsafe { HEAP.dealloc(block, layout) };
}

/// Waits (bounded) until `condition` holds: a condition wait, not a timing check.
fn eventually(mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if condition() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    false
}

#[test]
fn start_and_stop_are_idempotent_and_restartable() {
    let config = immediate().with_pressure(
        PressureConfig::production()
            .with_interval(Duration::from_millis(5))
            .with_sustain(Duration::ZERO),
    );
    let (m, script, _clock) = manager(config);
    script.set(0.9);
    assert!(!m.stop(), "stopping a stopped manager is a no-op");
    assert!(m.start().unwrap());
    assert!(!m.start().unwrap(), "already running");
    assert!(m.is_running());
    assert!(eventually(|| m.level() == High));
    assert!(m.stop());
    assert!(!m.stop());
    assert!(!m.is_running());
    let after_stop = m.metrics().samples;
    // The thread was joined: nothing samples now.
    assert_eq!(m.metrics().samples, after_stop);

    assert!(m.start().unwrap(), "restart after stop");
    assert!(eventually(|| m.metrics().samples >= after_stop + 3));
    drop(m); // Drop stops and joins.
}

#[test]
fn a_callback_may_stop_the_monitor_thread() {
    let config = immediate().with_pressure(
        PressureConfig::production()
            .with_interval(Duration::from_millis(5))
            .with_sustain(Duration::ZERO),
    );
    let (m, script, _clock) = manager(config);
    let m = Arc::new(m);
    let weak = Arc::downgrade(&m);
    let _sub = m.on_pressure(move |_| {
        if let Some(manager) = weak.upgrade() {
            manager.stop();
        }
    });
    script.set(0.9);
    m.start().unwrap();
    assert!(eventually(|| !m.is_running()));
    assert!(m.start().unwrap(), "restarts after stopping itself");
    m.stop();
}

#[cfg(target_os = "linux")]
#[test]
fn psi_wake_is_set_up_or_reports_why_it_polls() {
    let config = immediate()
        .with_pressure(PressureConfig::production().with_interval(Duration::from_millis(20)))
        .with_psi_wake(Some(PsiWake {
            stall: Duration::from_millis(100),
            window: Duration::from_secs(1),
        }));
    let (m, script, _clock) = manager(config);
    script.set(0.1);
    m.start().unwrap();
    assert!(eventually(|| m.metrics().samples >= 3));
    let state = m.metrics().psi_wake;
    m.stop();
    match state {
        PsiWakeState::Active { window } => {
            assert!(window == Duration::from_secs(1) || window == Duration::from_secs(2));
        }
        PsiWakeState::Polling(e) => println!("PSI trigger unavailable here: {e}"),
        other => panic!("a trigger was asked for: {other:?}"),
    }
    println!("{state:?}");
}

#[test]
fn after_unsubscribe_returns_the_callback_never_runs() {
    // One thread drives transitions as fast as it can; another subscribes, waits for
    // a call, unsubscribes, and then marks the subscription dead. A callback seeing
    // its own mark would be a call after unsubscribe returned.
    let (m, script, _clock) = manager(immediate());
    let m = Arc::new(m);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let driver = {
        let (m, script, stop) = (Arc::clone(&m), script.clone(), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut high = false;
            while !stop.load(Ordering::Relaxed) {
                high = !high;
                script.set(if high { 0.97 } else { 0.1 });
                m.sample_now();
            }
        })
    };
    let violations = Arc::new(AtomicUsize::new(0));
    for _ in 0..200 {
        let dead = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let called = Arc::new(AtomicUsize::new(0));
        let sub = {
            let (dead, called, violations) = (
                Arc::clone(&dead),
                Arc::clone(&called),
                Arc::clone(&violations),
            );
            m.on_pressure(move |_| {
                called.fetch_add(1, Ordering::Relaxed);
                // Stay inside the callback a while, so an unsubscribe that did not
                // wait for the running round would be caught here.
                let until = Instant::now() + Duration::from_micros(200);
                while Instant::now() < until {
                    std::hint::spin_loop();
                }
                if dead.load(Ordering::SeqCst) {
                    violations.fetch_add(1, Ordering::Relaxed);
                }
            })
        };
        assert!(eventually(|| called.load(Ordering::Relaxed) > 0));
        sub.unsubscribe();
        dead.store(true, Ordering::SeqCst);
    }
    stop.store(true, Ordering::Relaxed);
    driver.join().unwrap();
    assert_eq!(violations.load(Ordering::Relaxed), 0);
    assert_eq!(m.metrics().subscribers, 0);
}

#[cfg(feature = "serde")]
#[test]
fn configs_load_from_json_and_bad_ones_are_typed_errors() {
    let config = MonitorConfig::development();
    let json = serde_json::to_string(&config).unwrap();
    let back: MonitorConfig = serde_json::from_str(&json).unwrap();
    assert_eq!(back, config);

    // Missing fields take their defaults (the production preset).
    let partial: MonitorConfig = serde_json::from_str(
        r#"{"trim": {"enabled": true}, "sampler": {"user_limit": 1073741824}}"#,
    )
    .unwrap();
    assert!(partial.trim.enabled);
    assert_eq!(partial.trim.min_interval, Duration::from_secs(60));
    assert_eq!(partial.sampler.user_limit, Some(1 << 30));
    assert_eq!(partial.pressure, PressureConfig::production());

    // Unknown fields are refused; zero thresholds parse but do not build a manager.
    assert!(serde_json::from_str::<MonitorConfig>(r#"{"trimm": {}}"#).is_err());
    let zero: MonitorConfig = serde_json::from_str(
        r#"{"pressure": {"low": {"enter": 0, "exit": 0}, "high": {"enter": 0, "exit": 0},
            "critical": {"enter": 0, "exit": 0}}}"#,
    )
    .unwrap();
    assert!(matches!(
        MemoryManager::with_source(zero, Script::default(), ManualClock::default()),
        Err(MonitorError::Config(_))
    ));

    // Threshold modes: a stall mode whose omitted levels take the defaults, and a
    // headroom mode in bytes; one that cannot work is a typed error at build time.
    use membound::pressure::{BandFault, HeadroomThresholds, PressureConfigError, PressureLevel};
    use membound::pressure::{StallThresholds, ThresholdMode};
    let stall: MonitorConfig = serde_json::from_str(
        r#"{"pressure": {"mode": {"stall": {"critical": {"full": {"enter": 0.3, "exit": 0.1}}}}}}"#,
    )
    .unwrap();
    let ThresholdMode::Stall(thresholds) = stall.pressure.mode else {
        panic!("{:?}", stall.pressure.mode);
    };
    assert_eq!(thresholds.low, StallThresholds::new().low);
    assert_eq!(thresholds.critical.full.map(|b| b.enter), Some(0.3));
    assert_eq!(thresholds.critical.utilization, None);
    let headroom: MonitorConfig = serde_json::from_str(
        r#"{"pressure": {"mode": {"headroom": {"low": {"enter": 2147483648, "exit": 2684354560}}}}}"#,
    )
    .unwrap();
    let ThresholdMode::Headroom(thresholds) = headroom.pressure.mode else {
        panic!("{:?}", headroom.pressure.mode);
    };
    assert_eq!(
        (thresholds.low.enter, thresholds.high),
        (2 << 30, HeadroomThresholds::new().high)
    );
    let json = serde_json::to_string(&headroom).unwrap();
    assert_eq!(
        serde_json::from_str::<MonitorConfig>(&json).unwrap(),
        headroom
    );
    let inverted: MonitorConfig = serde_json::from_str(
        r#"{"pressure": {"mode": {"headroom": {"critical": {"enter": 1073741824, "exit": 1073741824}}}}}"#,
    )
    .unwrap();
    let err = MemoryManager::with_source(inverted, Script::default(), ManualClock::default());
    assert!(matches!(
        err,
        Err(MonitorError::Config(PressureConfigError::Headroom {
            level: PressureLevel::Critical,
            fault: BandFault::NotAscending
        }))
    ));
}

#[cfg(target_os = "linux")]
#[test]
fn without_psi_the_wake_mode_falls_back_to_polling() {
    let fixture =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/psi-absent");
    let mut config = immediate()
        .with_pressure(PressureConfig::production().with_interval(Duration::from_millis(5)))
        .with_psi_wake(Some(PsiWake {
            stall: Duration::from_millis(100),
            window: Duration::from_secs(2),
        }));
    config.sampler = config
        .sampler
        .with_proc_root(fixture.join("proc"))
        .with_mount_root(&fixture);
    // The OS sampler on the fixture: it has no PSI file, so neither has the trigger.
    let sampler = membound::os::Sampler::new(config.sampler.clone()).unwrap();
    assert!(!sampler.has_psi());
    let m = MemoryManager::with_sampler(config.clone(), sampler).unwrap();
    m.start().unwrap();
    assert!(eventually(|| m.metrics().samples >= 3), "it polls");
    m.stop();
    assert_eq!(
        m.metrics().psi_wake,
        PsiWakeState::Polling(membound::os::PsiError::Absent)
    );
    // A scripted source looks for <proc_root>/pressure/memory: absent too.
    let (m, _script, _clock) = manager(config);
    m.start().unwrap();
    assert!(eventually(|| m.metrics().samples >= 3));
    m.stop();
    assert_eq!(
        m.metrics().psi_wake,
        PsiWakeState::Polling(membound::os::PsiError::Absent)
    );
}
