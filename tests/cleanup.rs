//! The CleanupManager: lifecycle, isolation of slow and panicking tasks, `run_now`
//! exclusion, and the map/Vec helpers.
//!
//! The manager runs on a real clock by design. These tests never sleep to let time
//! pass and assert no durations: they wait for *events* (a task reporting a run over a
//! channel) with a generous deadline that only matters if the feature is broken.
#![cfg(feature = "std")]

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use membound::cleanup::{
    expire_locked_map, expire_map, retain_locked, CleanupConfig, CleanupError, CleanupManager,
    TaskFailure,
};

const DEADLINE: Duration = Duration::from_secs(20);
const FAST: Duration = Duration::from_millis(1);

#[test]
fn bad_config_is_an_error() {
    let zero = CleanupConfig::new(Duration::ZERO, Duration::from_secs(1));
    assert_eq!(
        CleanupManager::new(zero).unwrap_err(),
        CleanupError::ZeroInterval
    );
    let zero_ttl = CleanupConfig::new(Duration::from_secs(1), Duration::ZERO);
    assert_eq!(
        CleanupManager::new(zero_ttl).unwrap_err(),
        CleanupError::ZeroTtl
    );
    let m = CleanupManager::new(CleanupConfig::development()).unwrap();
    assert_eq!(m.config().ttl, Duration::from_secs(60));
    assert_eq!(
        m.register_every("t", Duration::ZERO, || Ok::<_, String>(0)),
        Err(CleanupError::ZeroInterval)
    );
    assert_eq!(m.unregister("t"), Err(CleanupError::UnknownTask));
    assert_eq!(m.run_now("t"), Err(CleanupError::UnknownTask));
}

#[test]
fn duplicate_names_replace_and_counts_stay_exact() {
    let m = CleanupManager::new(CleanupConfig::production()).unwrap();
    m.register("t", || Ok::<_, String>(1)).unwrap();
    assert_eq!(m.run_now("t"), Ok(1));
    m.register("t", || Ok::<_, String>(5)).unwrap();
    assert_eq!(m.task_names(), ["t"]);
    assert_eq!(m.run_now("t"), Ok(5));
    let metrics = m.metrics("t").unwrap();
    assert_eq!((metrics.runs, metrics.cleaned, metrics.errors), (2, 6, 0));
    m.unregister("t").unwrap();
    assert_eq!(m.unregister("t"), Err(CleanupError::UnknownTask));
    assert!(m.task_names().is_empty());
}

#[test]
fn start_and_stop_are_idempotent_and_restartable() {
    let m = CleanupManager::new(CleanupConfig::production()).unwrap();
    let (tx, rx) = mpsc::channel();
    let tx = Mutex::new(tx);
    m.register_every("tick", FAST, move || {
        let _ = tx.lock().unwrap().send(());
        Ok::<_, String>(1)
    })
    .unwrap();
    assert!(!m.stop());
    for _ in 0..2 {
        assert!(m.start());
        assert!(!m.start());
        assert!(m.is_running());
        rx.recv_timeout(DEADLINE)
            .expect("scheduled run after (re)start");
        assert!(m.stop());
        assert!(!m.stop());
        while rx.try_recv().is_ok() {}
    }
    // Stopped: no more runs are delivered once the stop returned.
    assert!(rx.try_recv().is_err());
}

#[test]
fn a_panicking_task_is_counted_and_does_not_stop_others() {
    let m = CleanupManager::new(CleanupConfig::production()).unwrap();
    m.register_every("boom", FAST, || -> Result<usize, String> {
        panic!("kaboom")
    })
    .unwrap();
    let (tx, rx) = mpsc::channel();
    let tx = Mutex::new(tx);
    m.register_every("ok", FAST, move || {
        let _ = tx.lock().unwrap().send(());
        Ok::<_, String>(1)
    })
    .unwrap();
    m.start();
    for _ in 0..5 {
        rx.recv_timeout(DEADLINE)
            .expect("the healthy task keeps running");
    }
    assert_eq!(
        m.run_now("boom"),
        Err(CleanupError::Failed(TaskFailure::Panicked("kaboom".into())))
    );
    let boom = m.metrics("boom").unwrap();
    assert!(boom.errors >= 1 && boom.errors == boom.runs);
    assert_eq!(
        boom.last_error,
        Some(TaskFailure::Panicked("kaboom".into()))
    );
    m.register_every("err", FAST, || Err::<usize, _>("no disk"))
        .unwrap();
    assert_eq!(
        m.run_now("err"),
        Err(CleanupError::Failed(TaskFailure::Error("no disk".into())))
    );
}

#[test]
fn a_slow_task_delays_nobody_else_and_run_now_never_overlaps() {
    let m = Arc::new(CleanupManager::new(CleanupConfig::production()).unwrap());
    let release = Arc::new(AtomicBool::new(false));
    let inside = Arc::new(AtomicUsize::new(0));
    let (started_tx, started_rx) = mpsc::channel();
    let started_tx = Mutex::new(started_tx);
    {
        let (release, inside) = (release.clone(), inside.clone());
        m.register_every("slow", FAST, move || {
            assert_eq!(inside.fetch_add(1, Ordering::SeqCst), 0, "overlapping runs");
            let _ = started_tx.lock().unwrap().send(());
            // Blocks until the test lets it go: a task far slower than its interval.
            while !release.load(Ordering::Acquire) {
                std::thread::yield_now();
            }
            inside.fetch_sub(1, Ordering::SeqCst);
            Ok::<_, String>(0)
        })
        .unwrap();
    }
    let (tx, rx) = mpsc::channel();
    let tx = Mutex::new(tx);
    m.register_every("fast", FAST, move || {
        let _ = tx.lock().unwrap().send(());
        Ok::<_, String>(1)
    })
    .unwrap();
    m.start();
    started_rx
        .recv_timeout(DEADLINE)
        .expect("slow task started");
    // While "slow" is stuck, "fast" keeps running.
    for _ in 0..10 {
        rx.recv_timeout(DEADLINE)
            .expect("fast task delayed by the slow one");
    }
    // run_now of the slow task waits for the scheduled run instead of overlapping it.
    let m2 = m.clone();
    let run_now = std::thread::spawn(move || m2.run_now("slow"));
    release.store(true, Ordering::Release);
    assert_eq!(run_now.join().unwrap(), Ok(0));
    m.stop();
    let slow = m.metrics("slow").unwrap();
    assert!(slow.overruns >= 1, "{slow:?}");
    assert_eq!(inside.load(Ordering::SeqCst), 0);
}

#[test]
fn map_and_vec_helpers() {
    let now = Instant::now();
    let ttl = Duration::from_secs(60);
    let mut map: HashMap<u32, Instant> = (0..10)
        .map(|i| (i, now - Duration::from_secs(u64::from(i) * 10)))
        .collect();
    // Ages 0..=90 s; 60 s and older go.
    assert_eq!(expire_map(&mut map, now, ttl, |t| *t), 4);
    assert_eq!(map.len(), 6);
    assert_eq!(expire_map(&mut map, now, ttl, |t| *t), 0);
    let locked = Mutex::new(map);
    assert_eq!(
        expire_locked_map(&locked, now + Duration::from_secs(30), ttl, |t| *t),
        3
    );
    // A poisoned lock is recovered, nothing is lost.
    let _ = std::panic::catch_unwind(|| {
        let _g = locked.lock().unwrap();
        panic!("poison");
    });
    assert_eq!(expire_locked_map(&locked, now, ttl, |t| *t), 0);
    assert_eq!(locked.lock().unwrap_or_else(|e| e.into_inner()).len(), 3);
    let v = Mutex::new((0..10).collect::<Vec<u32>>());
    assert_eq!(retain_locked(&v, |x| x % 3 == 0), 6);
    assert_eq!(*v.lock().unwrap(), [0, 3, 6, 9]);
}
