//! Serves every component's metrics at `http://127.0.0.1:PORT/metrics` while a few
//! live components work: an event ring a fast producer overfills, a session table
//! with a TTL, the memory manager, a cleanup task sweeping the table, the OS sampler
//! and the global heap.
//!
//! Run: `cargo run --features prometheus --example metrics_server -- 9898` and
//! `curl -s localhost:9898/metrics`, or
//! `curl -s -H 'Accept: application/openmetrics-text' localhost:9898/metrics`.
//! Port 0 (the default) picks a free port; the address is printed.
//!
//! `--seconds N` stops after N seconds (default: serve until killed). `--check`
//! scrapes itself once after a short warm-up, checks that every kind of component
//! is in the answer, prints it, and exits (non-zero if anything is missing).

use std::alloc::System;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use membound::backpressure::{Backpressure, BackpressureConfig, WaterMarks};
use membound::cleanup::{CleanupConfig, CleanupManager};
use membound::clock::{Clock, MonotonicClock};
use membound::export::prometheus::{Exporter, MetricsServer};
use membound::heap::TrackingAllocator;
use membound::monitor::{MemoryManager, MonitorConfig};
use membound::os::{Sampler, SamplerConfig};
use membound::ring::{Ring, RingCore};
use membound::table::{TtlTable, TtlTableCore};
use prometheus_client::registry::Registry;

/// The heap as the program holds it, exported next to the OS's view.
#[global_allocator]
static HEAP: TrackingAllocator<System> = TrackingAllocator::new(System);

struct Args {
    port: u16,
    seconds: Option<f64>,
    check: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        port: 0,
        seconds: None,
        check: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--check" => args.check = true,
            "--seconds" => {
                let v = it.next().ok_or("--seconds needs a value")?;
                let s: f64 = v.parse().map_err(|_| format!("bad --seconds {v:?}"))?;
                if !(s.is_finite() && s >= 0.0) {
                    return Err(format!("bad --seconds {v:?}"));
                }
                args.seconds = Some(s);
            }
            port => args.port = port.parse().map_err(|_| format!("bad port {port:?}"))?,
        }
    }
    Ok(args)
}

/// Families that must be in a scrape, one per kind of component.
const EXPECTED: &[&str] = &[
    "membound_ring_pushed_total{ring=\"events\"}",
    "membound_table_inserts_total{table=\"sessions\"}",
    "membound_monitor_samples_total{monitor=\"process\"}",
    "membound_cleanup_task_runs_total{cleanup=\"main\",task=\"sessions\"}",
    "membound_heap_live_bytes{heap=\"global\"}",
    "membound_sampler_errors_total{sampler=\"os\"}",
    "membound_backpressure_sent_total{backpressure=\"jobs\"}",
    "membound_budget_held_bytes{budget=\"process\",component=\"sessions\",kind=\"table\"}",
];

fn self_scrape(server: &MetricsServer) -> Result<String, String> {
    let mut stream = TcpStream::connect(server.local_addr()).map_err(|e| e.to_string())?;
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .map_err(|e| e.to_string())?;
    if !response.starts_with("HTTP/1.1 200 OK\r\n") {
        return Err(format!("unexpected response:\n{response}"));
    }
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default();
    let missing: Vec<_> = EXPECTED.iter().filter(|f| !body.contains(*f)).collect();
    if missing.is_empty() {
        Ok(body)
    } else {
        Err(format!("missing {missing:?} in:\n{body}"))
    }
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("{e}\nusage: metrics_server [PORT] [--seconds N] [--check]");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let mut registry = Registry::default();
    let exporter = Exporter::register(&mut registry);

    let events = Arc::new(Ring::<u64>::new(64)?);
    let jobs = Arc::new(Backpressure::<u64>::new(
        BackpressureConfig::new(32).with_water_marks(WaterMarks::new(0.25, 0.75)?),
    )?);
    let clock = MonotonicClock::new();
    let sessions = Arc::new(TtlTable::<u64, u64, _>::new(
        1024,
        Duration::from_secs(2),
        clock,
    )?);
    let monitor = Arc::new(MemoryManager::new(MonitorConfig::development())?);
    let cleanup = Arc::new(CleanupManager::new(CleanupConfig::development())?);
    let table = Arc::clone(&sessions);
    cleanup.register_every("sessions", Duration::from_millis(500), move || {
        Ok::<_, std::convert::Infallible>(table.sweep(clock.now(), 1024).removed)
    })?;

    exporter.add("events", &events, RingCore::metrics)?;
    exporter.add("sessions", &sessions, TtlTableCore::metrics)?;
    exporter.add("process", &monitor, MemoryManager::metrics)?;
    exporter.add_cleanup("main", &cleanup)?;
    exporter.add("global", &HEAP, TrackingAllocator::stats)?;
    exporter.add_sampler("os", Sampler::new(SamplerConfig::default())?)?;
    exporter.add("jobs", &jobs, Backpressure::metrics)?;
    // Where the bounded memory is: every component registered with the monitor.
    monitor.register_named("events", &events);
    monitor.register_named("sessions", &sessions);
    monitor.register_named("jobs", &jobs);
    exporter.add("process", &monitor, MemoryManager::budget)?;

    monitor.start()?;
    cleanup.start();
    // One sample and one sweep now, so the first scrape has them.
    monitor.sample_now();
    cleanup.run_now("sessions")?;

    let stop = Arc::new(AtomicBool::new(false));
    let workers = [
        // Produces faster than the consumer drains: DropOldest drops the surplus.
        spawn_worker(&stop, Duration::from_millis(1), {
            let (events, mut n) = (Arc::clone(&events), 0u64);
            move || {
                n += 1;
                let _ = events.push(n);
            }
        }),
        spawn_worker(&stop, Duration::from_millis(20), {
            let events = Arc::clone(&events);
            move || {
                events.drain().take(10).for_each(drop);
            }
        }),
        // Jobs arrive faster than they are done: the channel pauses at 24 queued
        // jobs and refuses (`Paused`) until the worker is down to 8.
        spawn_worker(&stop, Duration::from_millis(1), {
            let (jobs, mut n) = (Arc::clone(&jobs), 0u64);
            move || {
                n += 1;
                let _ = jobs.try_send(n);
            }
        }),
        spawn_worker(&stop, Duration::from_millis(5), {
            let jobs = Arc::clone(&jobs);
            move || {
                let _ = jobs.try_recv();
            }
        }),
        // Sessions come and go; lookups hit recent ones and miss expired ones.
        spawn_worker(&stop, Duration::from_millis(2), {
            let (sessions, mut n) = (Arc::clone(&sessions), 0u64);
            move || {
                n += 1;
                let _ = sessions.insert(n % 4096, n);
                let _ = sessions.get(&(n / 2 % 4096)); // hits while young, misses once expired
            }
        }),
    ];

    let server = MetricsServer::spawn(
        TcpListener::bind(("127.0.0.1", args.port))?,
        Arc::new(registry),
    )?;
    println!("serving http://{}/metrics", server.local_addr());

    let result = if args.check {
        thread::sleep(Duration::from_millis(200));
        self_scrape(&server).map(|body| print!("{body}"))
    } else {
        let started = Instant::now();
        while args
            .seconds
            .is_none_or(|s| started.elapsed().as_secs_f64() < s)
        {
            thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    };

    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        let _ = worker.join();
    }
    server.shutdown();
    result.map_err(Into::into)
}

fn spawn_worker(
    stop: &Arc<AtomicBool>,
    every: Duration,
    mut step: impl FnMut() + Send + 'static,
) -> thread::JoinHandle<()> {
    let stop = Arc::clone(stop);
    thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            step();
            thread::sleep(every);
        }
    })
}
