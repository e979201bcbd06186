//! A live view of this process and its container's memory, one line per interval:
//! RSS, working set, the effective limit and where it comes from, utilization, PSI,
//! the pressure level and scale factor, and an event ring (`membound::ring::Ring`)
//! whose capacity the manager shrinks with the level and restores after.
//!
//! Run: `cargo run --example monitor` (3 s), or
//! `cargo run --example monitor -- --seconds 60 --interval-ms 1000`.
//!
//! `--ramp` allocates in steps up to a bound (`--ramp-mib`, default 256) against a
//! user limit set just above it, so the levels rise to critical whatever the
//! machine's size; shows the transitions and the soft capacity shrinking, then frees
//! everything and waits for the level and the capacity to recover. Ramp mode measures
//! this process's RSS (cgroup and host figures are left out so other processes cannot
//! disturb the demo).

use std::alloc::System;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use membound::clock::MonotonicClock;
use membound::heap::TrackingAllocator;
use membound::monitor::{MemoryManager, MonitorConfig, TrimConfig};
use membound::os::{trim_heap, MemorySample, Sampler, SamplerConfig};
use membound::pressure::{PressureConfig, PressureLevel};
use membound::ring::Ring;
use membound::table::TtlTable;

const MIB: u64 = 1 << 20;

/// The heap as the program sees it, shown next to the OS's RSS.
#[global_allocator]
static HEAP: TrackingAllocator<System> = TrackingAllocator::new(System);

struct Args {
    seconds: f64,
    interval: Duration,
    ramp: bool,
    ramp_mib: u64,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        seconds: 3.0,
        interval: Duration::from_millis(500),
        ramp: false,
        ramp_mib: 256,
    };
    let mut interval_set = false;
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .ok_or_else(|| format!("{name} needs a value"))
                .and_then(|v| v.parse::<f64>().map_err(|e| format!("{name} {v}: {e}")))
                .and_then(|v| {
                    if v.is_finite() && v > 0.0 {
                        Ok(v)
                    } else {
                        Err(format!("{name} must be positive"))
                    }
                })
        };
        match arg.as_str() {
            "--seconds" => args.seconds = value("--seconds")?,
            "--interval-ms" => {
                args.interval = Duration::from_secs_f64(value("--interval-ms")? / 1000.0);
                interval_set = true;
            }
            "--ramp" => args.ramp = true,
            "--ramp-mib" => args.ramp_mib = value("--ramp-mib")? as u64,
            "--help" | "-h" => {
                return Err(
                    "usage: monitor [--seconds S] [--interval-ms MS] [--ramp] [--ramp-mib N]"
                        .into(),
                )
            }
            other => return Err(format!("unknown argument {other}; try --help")),
        }
    }
    if args.ramp && !interval_set {
        args.interval = Duration::from_millis(250);
    }
    Ok(args)
}

fn mib(bytes: Option<u64>) -> String {
    match bytes {
        Some(b) if b >= 1 << 30 => format!("{:.2} GiB", b as f64 / (1u64 << 30) as f64),
        Some(b) if b >= MIB => format!("{:.1} MiB", b as f64 / MIB as f64),
        Some(b) => format!("{:.1} KiB", b as f64 / 1024.0),
        None => "-".into(),
    }
}

fn line(elapsed: Duration, s: &MemorySample, manager: &MemoryManager, ring: &Ring<u64>) {
    let limit = s.limit.map_or("-".into(), |l| {
        format!("{} ({})", mib(Some(l.bytes)), l.source)
    });
    let psi = s.psi.map_or("-".into(), |p| {
        format!("{:.2}/{:.2}", p.some_avg10, p.full_avg10.unwrap_or(0.0))
    });
    println!(
        "{:>6.2}s  rss {:>10}  heap {:>10}  ws {:>10}  limit {:<30} util {:>6}  psi {:<11} level {:<8} scale {:.2}  ring {}/{} ({} items)",
        elapsed.as_secs_f64(),
        mib(s.rss),
        mib(s.heap),
        mib(s.working_set),
        limit,
        s.utilization.map_or("-".into(), |u| format!("{:.1}%", u * 100.0)),
        psi,
        manager.level(),
        manager.scale(),
        ring.capacity(),
        ring.max_capacity(),
        ring.len(),
    );
    // Where the bounded memory is: the largest registered components.
    let budget = manager.budget();
    let top: Vec<String> = budget
        .components
        .iter()
        .take(3)
        .map(|c| {
            let bytes = c.footprint.map_or(0, |f| f.bytes);
            format!(
                "{} ({}) {} KiB, cap {}/{}",
                c.name,
                c.kind,
                bytes / 1024,
                c.capacity,
                c.max_capacity
            )
        })
        .collect();
    println!(
        "          budget {} KiB ({:.3}% of the limit): {}",
        budget.total_bytes / 1024,
        budget.share_of_limit.unwrap_or(0.0) * 100.0,
        top.join("; ")
    );
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args = parse_args()?;
    let mut config = MonitorConfig::development();
    config.pressure = config.pressure.with_interval(args.interval);
    if args.ramp {
        let baseline = Sampler::new(SamplerConfig::default())?
            .rss()
            .ok_or("no RSS on this platform: --ramp needs it")?;
        let ramp = args.ramp_mib * MIB;
        // The bound reaches 95 % of the limit: past critical's 90 %.
        let limit = (baseline + ramp) * 100 / 95;
        config.sampler = SamplerConfig::default()
            .with_cgroup(false)
            .with_host_pressure(false)
            .with_user_limit(Some(limit));
        config.pressure = PressureConfig::development()
            .with_interval(args.interval)
            .with_sustain(args.interval)
            .with_dwell(args.interval * 4);
        config.trim = TrimConfig::every(Duration::from_secs(1));
        println!(
            "ramp: up to {} MiB in 10 steps against a user limit of {:.1} MiB (RSS at start {:.1} MiB)",
            args.ramp_mib,
            limit as f64 / MIB as f64,
            baseline as f64 / MIB as f64
        );
    }
    let p = config.pressure;
    println!(
        "thresholds enter {:.0}/{:.0}/{:.0} %, exit {:.0}/{:.0}/{:.0} %, sustain {:?}, dwell {:?}, every {:?}",
        p.low.enter * 100.0,
        p.high.enter * 100.0,
        p.critical.enter * 100.0,
        p.low.exit * 100.0,
        p.high.exit * 100.0,
        p.critical.exit * 100.0,
        p.sustain,
        p.dwell,
        p.interval
    );

    let sampler = Sampler::new(config.sampler.clone())?.with_heap(&HEAP);
    match (sampler.cgroup(), sampler.cgroup_error()) {
        (Some(info), _) => println!(
            "cgroup {} at {}{}",
            info.version,
            info.dir.display(),
            if info.exact {
                ""
            } else {
                " (closest visible ancestor)"
            }
        ),
        (None, Some(why)) => println!("no cgroup: {why}"),
        (None, None) => {}
    }

    let manager = MemoryManager::with_sampler(config, sampler)?;
    // An event buffer that the manager shrinks under pressure: full, so every
    // shrink evicts its oldest events (DropOldest) and frees their memory.
    let target = Arc::new(Ring::<u64>::new(8192)?);
    for i in 0..8192 {
        target.push(i)?;
    }
    manager.register_named("events", &target);
    // A session table beside it, so the budget lists more than one component.
    let sessions = Arc::new(TtlTable::<u64, [u8; 64], _>::new(
        4096,
        Duration::from_secs(300),
        MonotonicClock::new(),
    )?);
    manager.register_named("sessions", &sessions);
    let start = Instant::now();
    let _transitions = manager.on_pressure(move |event| {
        let t = event.transition;
        println!(
            "{:>6.2}s  >> {} -> {} at {:.1}% (scale {:.2})",
            start.elapsed().as_secs_f64(),
            t.from,
            t.to,
            t.utilization * 100.0,
            event.scale
        );
    });
    manager.start()?;

    let show = |manager: &MemoryManager| {
        if let Some(s) = manager.metrics().last_sample {
            line(start.elapsed(), &s, manager, &target);
        }
    };
    if args.ramp {
        ramp(&manager, &args, &show)?;
    } else {
        let end = start + Duration::from_secs_f64(args.seconds);
        while Instant::now() < end {
            std::thread::sleep(args.interval);
            show(&manager);
        }
    }
    manager.stop();

    let m = manager.metrics();
    println!(
        "\n{} samples; transitions into normal/low/high/critical: {:?}; time in each: {:.1?}",
        m.samples, m.transitions_into, m.time_in
    );
    println!(
        "trims {} released {}; sampling errors {}; callback panics {}",
        m.trims,
        mib(Some(m.bytes_released)),
        m.sampling_errors,
        m.callback_panics
    );
    Ok(())
}

fn ramp(
    manager: &MemoryManager,
    args: &Args,
    show: &dyn Fn(&MemoryManager),
) -> Result<(), Box<dyn std::error::Error>> {
    let step = (args.ramp_mib * MIB / 10) as usize;
    let mut held: Vec<Vec<u8>> = Vec::new();
    // Up, one step per interval; two intervals per step so the sustain gate passes.
    for _ in 0..10 {
        held.push(vec![1u8; step]); // written, so resident
        for _ in 0..2 {
            std::thread::sleep(args.interval);
            show(manager);
        }
    }
    let peak = manager.level();
    println!(
        "-- holding {} MiB at level {peak}; freeing",
        held.len() as u64 * step as u64 / MIB
    );
    drop(held);
    trim_heap();
    // Down: wait (bounded) for the level and the capacity to recover.
    let deadline = Instant::now() + args.interval * 40;
    while Instant::now() < deadline {
        std::thread::sleep(args.interval);
        show(manager);
        if manager.level() == PressureLevel::Normal {
            break;
        }
    }
    if peak < PressureLevel::Critical || manager.level() != PressureLevel::Normal {
        return Err(format!(
            "ramp did not go through critical and back (peak {peak}, now {})",
            manager.level()
        )
        .into());
    }
    Ok(())
}
