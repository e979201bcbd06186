//! Soak: a WebSocket server under a realistic AG-UI load, with subscribers that never
//! read, and the memory it takes over time.
//!
//! Run: `cargo run --release --features ws,state --example soak` (about 15 s), or with
//! `-- --baseline` to run the same load a second time through a plain
//! tokio-tungstenite server with a per-connection unbounded channel (what the Go
//! original replaced) and put both RSS curves on one chart.
//!
//! What happens:
//! - a server on loopback, with a [`StateStore`] as its snapshot source;
//! - a publisher that plays agent runs at `--rate` events per second: lifecycle,
//!   text deltas, tool-call argument deltas, state deltas (applied to the store first),
//!   custom metrics events;
//! - `--fast` subscribers that read everything and check that no lossless event is
//!   missing or out of order;
//! - `--stalled` subscribers that connect and never read, plus one more every
//!   `--churn-ms`: the slow browsers that grow an unbounded server's memory.
//!
//! Each mode runs in a child process of its own, so its RSS is its own. A progress
//! line shows elapsed time, events/s, RSS, queued bytes, drops by class, slow-consumer
//! disconnects and the pressure level. At the end: a summary table, and an SVG chart
//! of RSS over time (`--svg`, default `target/soak.svg`).
//!
//! `--check` exits non-zero unless the run shows the point: membound's RSS stays flat
//! (with `--baseline`: grows less than the baseline's), no lossless event was lost,
//! and (with `--baseline`) the fast subscribers' throughput is not lower.
//!
//! Across nodes (feature `redis`): `cargo run --release --features ws,state,redis
//! --example soak -- --engine redis --nodes 3` starts `redis-server` (or uses
//! `--redis-url`), three server processes on it, a publisher on node 1 and
//! subscribers spread over the nodes; mid-run it kills and restarts node 3 (its
//! clients resume on another node) and stops Redis for 3 s. The summary gives each
//! node's RSS, Redis's `used_memory`, resumes from history against resyncs by
//! snapshot, and lossless events missing or out of order; the chart shows every
//! node's RSS (see `soak/nodes.rs`).

use std::fmt::Write as _;
use std::io::{IsTerminal, Write as _};
use std::net::SocketAddr;
use std::process::{Command, ExitCode};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use membound::adapters::state::{StateConfig, StateStore};
use membound::adapters::ws::{
    DeliveryClass, Event, EventType, Frame, QueueConfig, Server, ServerConfig,
};
use membound::monitor::{MemoryManager, MonitorConfig};
use membound::os::{Sampler, SamplerConfig};
use membound::pressure::PressureLevel;
use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

const MIB: f64 = (1u64 << 20) as f64;

#[derive(Clone, Debug)]
struct Args {
    seconds: f64,
    rate: u64,
    fast: usize,
    stalled: usize,
    churn: Duration,
    baseline: bool,
    check: bool,
    svg: String,
    /// Set in the child processes: which server to run, and where to write the report.
    child: Option<(Mode, String)>,
    /// `memory` (one server) or `redis` (`--nodes` servers on one Redis).
    engine: String,
    nodes: usize,
    /// A Redis to use instead of starting one (`--engine redis`).
    redis_url: Option<String>,
    /// Set in a node's process (`--engine redis`): its number, port, samples file,
    /// how long it publishes (node 1) and the parent's start time.
    node_child: Option<usize>,
    port: u16,
    samples: String,
    publish_for: Option<f64>,
    t0_ms: u64,
    seconds_given: bool,
    rate_given: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Membound,
    Baseline,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Membound => "membound",
            Mode::Baseline => "baseline",
        }
    }
}

const USAGE: &str = "usage: soak [--seconds S] [--rate EVENTS_PER_S] [--fast N] [--stalled N] \
[--churn-ms MS] [--baseline] [--check] [--svg PATH] | --print-events\n       \
soak --engine redis [--nodes N] [--redis-url URL] [--seconds S] [--rate R] [--fast N] [--check] [--svg PATH]";

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        seconds: 15.0,
        rate: 20_000,
        fast: 8,
        stalled: 8,
        churn: Duration::from_millis(1000),
        baseline: false,
        check: false,
        svg: "target/soak.svg".into(),
        child: None,
        engine: "memory".into(),
        nodes: 1,
        redis_url: None,
        node_child: None,
        port: 0,
        samples: String::new(),
        publish_for: None,
        t0_ms: 0,
        seconds_given: false,
        rate_given: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
        fn num<T: std::str::FromStr>(name: &str, v: String) -> Result<T, String> {
            v.parse().map_err(|_| format!("{name}: cannot read {v:?}"))
        }
        match arg.as_str() {
            "--seconds" => {
                args.seconds = num("--seconds", value("--seconds")?)?;
                args.seconds_given = true;
            }
            "--rate" => {
                args.rate = num("--rate", value("--rate")?)?;
                args.rate_given = true;
            }
            "--engine" => args.engine = value("--engine")?,
            "--nodes" => args.nodes = num("--nodes", value("--nodes")?)?,
            "--redis-url" => args.redis_url = Some(value("--redis-url")?),
            "--node-child" => args.node_child = Some(num("--node-child", value("--node-child")?)?),
            "--port" => args.port = num("--port", value("--port")?)?,
            "--samples" => args.samples = value("--samples")?,
            "--publish-for" => {
                args.publish_for = Some(num("--publish-for", value("--publish-for")?)?)
            }
            "--t0-ms" => args.t0_ms = num("--t0-ms", value("--t0-ms")?)?,
            "--fast" => args.fast = num("--fast", value("--fast")?)?,
            "--stalled" => args.stalled = num("--stalled", value("--stalled")?)?,
            "--churn-ms" => {
                args.churn = Duration::from_millis(num("--churn-ms", value("--churn-ms")?)?)
            }
            "--baseline" => args.baseline = true,
            "--check" => args.check = true,
            "--svg" => args.svg = value("--svg")?,
            "--child" => {
                let mode = match value("--child")?.as_str() {
                    "membound" => Mode::Membound,
                    "baseline" => Mode::Baseline,
                    other => return Err(format!("--child: unknown mode {other}")),
                };
                args.child = Some((mode, value("--child")?));
            }
            "--print-events" => {
                // The events of two runs, one JSON line each, as the publisher
                // sends them (for checking them against the AG-UI schema).
                let mut seq = 0;
                for run in 0..2 {
                    for step in agent_run(run) {
                        println!("{}", step.into_event(&mut seq, |_| None).encode().as_str());
                    }
                }
                std::process::exit(0);
            }
            "--help" | "-h" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    if !(args.seconds.is_finite() && args.seconds > 0.0) || args.rate == 0 || args.fast == 0 {
        return Err("--seconds, --rate and --fast must be positive".into());
    }
    if args.churn.is_zero() {
        return Err("--churn-ms must be positive".into());
    }
    match args.engine.as_str() {
        "memory" => {}
        "redis" => {
            // Across processes and Redis round trips on a small machine: a lower
            // default rate, and time for the node restart and the outage.
            if !args.rate_given {
                args.rate = 2_000;
            }
            if !args.seconds_given {
                args.seconds = 20.0;
            }
            if args.seconds < 12.0 && args.node_child.is_none() {
                return Err("--engine redis needs --seconds 12 or more".into());
            }
            if args.fast == 8 {
                args.fast = 6;
            }
        }
        other => return Err(format!("--engine: memory or redis, not {other}")),
    }
    Ok(args)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let result = if args.engine == "redis" {
        run_nodes(&args)
    } else {
        match args.child.clone() {
            Some((mode, report)) => run_child(&args, mode, &report),
            None => run_parent(&args),
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

type Error = Box<dyn std::error::Error + Send + Sync>;

#[cfg(feature = "redis")]
#[path = "soak/nodes.rs"]
mod nodes;

/// `--engine redis`: the soak across nodes (a node's process, or the parent).
#[cfg(feature = "redis")]
fn run_nodes(args: &Args) -> Result<ExitCode, Error> {
    match args.node_child {
        Some(index) => nodes::run_node(
            args,
            &nodes::NodeChild {
                index,
                port: args.port,
                redis_url: args.redis_url.clone().ok_or("a node needs --redis-url")?,
                samples: args.samples.clone(),
                publish_for: args.publish_for,
                t0_ms: args.t0_ms,
            },
        ),
        None => nodes::run_cluster(args),
    }
}

#[cfg(not(feature = "redis"))]
fn run_nodes(_: &Args) -> Result<ExitCode, Error> {
    Err("--engine redis needs the redis feature: cargo run --release --features ws,state,redis --example soak -- --engine redis --nodes 3".into())
}

// ---------------------------------------------------------------------------------
// The parent: runs each mode in a child process, then prints the table and the chart.
// ---------------------------------------------------------------------------------

fn run_parent(args: &Args) -> Result<ExitCode, Error> {
    let mut modes = vec![Mode::Membound];
    if args.baseline {
        modes.push(Mode::Baseline);
    }
    let exe = std::env::current_exe()?;
    let mut reports = Vec::new();
    for mode in modes {
        let path = std::env::temp_dir().join(format!(
            "membound-soak-{}-{}.json",
            std::process::id(),
            mode.name()
        ));
        let mut cmd = Command::new(&exe);
        cmd.args(["--seconds", &args.seconds.to_string()])
            .args(["--rate", &args.rate.to_string()])
            .args(["--fast", &args.fast.to_string()])
            .args(["--stalled", &args.stalled.to_string()])
            .args(["--churn-ms", &args.churn.as_millis().to_string()])
            .args(["--child", mode.name(), path.to_str().ok_or("temp path")?]);
        eprintln!("== {} ==", mode.name());
        let status = cmd.status()?;
        if !status.success() {
            return Err(format!("the {} run failed: {status}", mode.name()).into());
        }
        let text = std::fs::read_to_string(&path)?;
        let _ = std::fs::remove_file(&path);
        reports.push(Report::from_json(&serde_json::from_str(&text)?)?);
    }
    print_table(args, &reports);
    if let Some(dir) = std::path::Path::new(&args.svg).parent() {
        if !dir.as_os_str().is_empty() {
            std::fs::create_dir_all(dir)?;
        }
    }
    std::fs::write(&args.svg, chart(&reports))?;
    println!("\nRSS chart: {}", args.svg);
    let verdicts = verdicts(&reports);
    for (ok, text) in &verdicts {
        println!("{} {text}", if *ok { "ok  " } else { "FAIL" });
    }
    if args.check && verdicts.iter().any(|(ok, _)| !ok) {
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// What one mode's run measured.
#[derive(Debug, Default)]
struct Report {
    mode: String,
    seconds: f64,
    published: u64,
    /// Fast subscribers.
    fast: u64,
    /// Events each fast subscriber received per second, averaged over them.
    fast_rate: f64,
    fast_received: u64,
    lossless_gaps: u64,
    rss_start: u64,
    rss_end: u64,
    rss_peak: u64,
    dropped: [u64; 4],
    resyncs: u64,
    slow_closes: u64,
    stalled_connected: u64,
    samples: Vec<(f64, u64)>,
    /// The memory manager's budget at the end (membound only): (component, kind,
    /// bytes now, bytes at most).
    budget: Vec<(String, String, u64, u64)>,
}

impl Report {
    fn to_json(&self) -> Value {
        json!({
            "mode": self.mode, "seconds": self.seconds, "published": self.published,
            "fast": self.fast,
            "fast_rate": self.fast_rate, "fast_received": self.fast_received,
            "lossless_gaps": self.lossless_gaps, "rss_start": self.rss_start,
            "rss_end": self.rss_end, "rss_peak": self.rss_peak, "dropped": self.dropped,
            "resyncs": self.resyncs, "slow_closes": self.slow_closes,
            "stalled_connected": self.stalled_connected,
            "samples": self.samples,
            "budget": self.budget,
        })
    }

    fn from_json(v: &Value) -> Result<Self, Error> {
        let u = |k: &str| v[k].as_u64().ok_or_else(|| format!("report: no {k}"));
        let f = |k: &str| v[k].as_f64().ok_or_else(|| format!("report: no {k}"));
        let mut dropped = [0; 4];
        for (i, d) in dropped.iter_mut().enumerate() {
            *d = v["dropped"][i].as_u64().unwrap_or(0);
        }
        let samples = v["samples"]
            .as_array()
            .ok_or("report: no samples")?
            .iter()
            .filter_map(|s| Some((s[0].as_f64()?, s[1].as_u64()?)))
            .collect();
        Ok(Self {
            mode: v["mode"].as_str().unwrap_or("?").to_owned(),
            seconds: f("seconds")?,
            published: u("published")?,
            fast: u("fast")?,
            fast_rate: f("fast_rate")?,
            fast_received: u("fast_received")?,
            lossless_gaps: u("lossless_gaps")?,
            rss_start: u("rss_start")?,
            rss_end: u("rss_end")?,
            rss_peak: u("rss_peak")?,
            dropped,
            resyncs: u("resyncs")?,
            slow_closes: u("slow_closes")?,
            stalled_connected: u("stalled_connected")?,
            samples,
            budget: v["budget"]
                .as_array()
                .map(|rows| {
                    rows.iter()
                        .filter_map(|r| {
                            let text = |i: usize| r[i].as_str().map(str::to_owned);
                            Some((text(0)?, text(1)?, r[2].as_u64()?, r[3].as_u64()?))
                        })
                        .collect()
                })
                .unwrap_or_default(),
        })
    }

    /// RSS growth from the end of warm-up (the first quarter) to the end, in bytes.
    fn growth(&self) -> i64 {
        let warm = self.seconds / 4.0;
        let at_warm = self
            .samples
            .iter()
            .find(|(t, _)| *t >= warm)
            .map_or(self.rss_start, |(_, r)| *r);
        self.rss_end as i64 - at_warm as i64
    }
}

fn print_table(args: &Args, reports: &[Report]) {
    println!(
        "\nsoak: {} s, {} events/s offered, {} fast + {} stalled subscribers (one more stalled every {} ms)\n",
        args.seconds,
        args.rate,
        args.fast,
        args.stalled,
        args.churn.as_millis()
    );
    let mut rows: Vec<(String, Vec<String>)> = vec![
        ("events published".into(), vec![]),
        ("events/s to each fast subscriber".into(), vec![]),
        ("lossless events missing or out of order".into(), vec![]),
        ("RSS at start".into(), vec![]),
        ("RSS peak".into(), vec![]),
        ("RSS at end".into(), vec![]),
        ("RSS growth after warm-up".into(), vec![]),
        ("stalled subscribers connected".into(), vec![]),
        ("slow-consumer disconnects (4008)".into(), vec![]),
        (
            "state resyncs (snapshot after dropped deltas)".into(),
            vec![],
        ),
    ];
    for class in DeliveryClass::ALL {
        rows.push((format!("dropped: {}", class.as_str()), vec![]));
    }
    for r in reports {
        let cells = [
            r.published.to_string(),
            format!("{:.0}", r.fast_rate),
            r.lossless_gaps.to_string(),
            format!("{:.1} MiB", r.rss_start as f64 / MIB),
            format!("{:.1} MiB", r.rss_peak as f64 / MIB),
            format!("{:.1} MiB", r.rss_end as f64 / MIB),
            format!("{:+.1} MiB", r.growth() as f64 / MIB),
            r.stalled_connected.to_string(),
            r.slow_closes.to_string(),
            r.resyncs.to_string(),
        ];
        for (row, cell) in rows.iter_mut().zip(cells) {
            row.1.push(cell);
        }
        for (i, class) in DeliveryClass::ALL.iter().enumerate() {
            rows[10 + i].1.push(r.dropped[class.index()].to_string());
        }
    }
    print!("{:<48}", "");
    for r in reports {
        print!("{:>16}", r.mode);
    }
    println!();
    for (name, cells) in rows {
        print!("{name:<48}");
        for c in cells {
            print!("{c:>16}");
        }
        println!();
    }
    for r in reports.iter().filter(|r| !r.budget.is_empty()) {
        println!(
            "\nmemory budget at the end ({}): component, kind, bytes now / at most",
            r.mode
        );
        for (name, kind, bytes, max) in &r.budget {
            println!(
                "  {name:<20} {kind:<12} {:>10.1} KiB / {:>10.1} KiB",
                *bytes as f64 / 1024.0,
                *max as f64 / 1024.0
            );
        }
    }
}

fn verdicts(reports: &[Report]) -> Vec<(bool, String)> {
    let mut out = Vec::new();
    let ours = &reports[0];
    out.push((
        ours.lossless_gaps == 0,
        format!(
            "membound: no lossless event missing at the fast subscribers ({} gaps)",
            ours.lossless_gaps
        ),
    ));
    // A fast subscriber cut off early would show no gap, only fewer events: each
    // must have received nearly everything published (the rest was in flight at
    // the stop).
    let expected = ours.published as f64 * ours.fast as f64;
    out.push((
        ours.fast_received as f64 >= expected * 0.97,
        format!(
            "membound: the fast subscribers received {:.1} % of what was published",
            100.0 * ours.fast_received as f64 / expected.max(1.0)
        ),
    ));
    // Flat: after warm-up, RSS grows by less than 32 MiB (allocator noise, socket
    // buffers) while the stalled subscribers keep arriving.
    let flat = ours.growth() < 32 << 20;
    out.push((
        flat,
        format!(
            "membound: RSS flat after warm-up ({:+.1} MiB)",
            ours.growth() as f64 / MIB
        ),
    ));
    if let Some(base) = reports.get(1) {
        out.push((
            ours.growth() < base.growth(),
            format!(
                "RSS growth: membound {:+.1} MiB, baseline {:+.1} MiB",
                ours.growth() as f64 / MIB,
                base.growth() as f64 / MIB
            ),
        ));
        out.push((
            ours.fast_rate >= base.fast_rate * 0.97,
            format!(
                "fast subscribers: membound {:.0} events/s each, baseline {:.0} ({:.2}x)",
                ours.fast_rate,
                base.fast_rate,
                ours.fast_rate / base.fast_rate.max(1.0)
            ),
        ));
    }
    out
}

/// An SVG line chart of RSS over time, one curve per report.
fn chart(reports: &[Report]) -> String {
    let (w, h, left, bottom, top, right) = (800.0, 420.0, 70.0, 40.0, 30.0, 20.0);
    let t_max = reports
        .iter()
        .flat_map(|r| r.samples.iter().map(|s| s.0))
        .fold(1.0f64, f64::max);
    let rss_max = reports
        .iter()
        .flat_map(|r| r.samples.iter().map(|s| s.1 as f64 / MIB))
        .fold(1.0f64, f64::max)
        * 1.1;
    let x = |t: f64| left + t / t_max * (w - left - right);
    let y = |mib: f64| h - bottom - mib / rss_max * (h - bottom - top);
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="{}" y="18" text-anchor="middle" font-size="14">RSS over time under the soak load</text>
<line x1="{left}" y1="{}" x2="{}" y2="{}" stroke="black"/>
<line x1="{left}" y1="{top}" x2="{left}" y2="{}" stroke="black"/>
<text x="{}" y="{}" text-anchor="middle">seconds</text>
<text x="16" y="{}" transform="rotate(-90 16 {})" text-anchor="middle">RSS (MiB)</text>
"#,
        w / 2.0,
        h - bottom,
        w - right,
        h - bottom,
        h - bottom,
        w / 2.0,
        h - 6.0,
        h / 2.0,
        h / 2.0,
    );
    for i in 0..=5 {
        let mib = rss_max * f64::from(i) / 5.0;
        let t = t_max * f64::from(i) / 5.0;
        let _ = writeln!(
            svg,
            r##"<text x="{}" y="{}" text-anchor="end">{mib:.0}</text><line x1="{left}" y1="{2}" x2="{3}" y2="{2}" stroke="#ddd"/>"##,
            left - 6.0,
            y(mib) + 4.0,
            y(mib),
            w - right
        );
        let _ = writeln!(
            svg,
            r#"<text x="{}" y="{}" text-anchor="middle">{t:.1}</text>"#,
            x(t),
            h - bottom + 16.0
        );
    }
    let colors = ["#1f77b4", "#d62728"];
    for (i, r) in reports.iter().enumerate() {
        let points: Vec<String> = r
            .samples
            .iter()
            .map(|(t, rss)| format!("{:.1},{:.1}", x(*t), y(*rss as f64 / MIB)))
            .collect();
        let color = colors[i % colors.len()];
        let _ = writeln!(
            svg,
            r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#,
            points.join(" ")
        );
        let _ = writeln!(
            svg,
            r#"<rect x="{}" y="{}" width="12" height="12" fill="{color}"/><text x="{}" y="{}">{}</text>"#,
            left + 12.0,
            top + 8.0 + 18.0 * i as f64,
            left + 30.0,
            top + 18.0 + 18.0 * i as f64,
            r.mode
        );
    }
    svg.push_str("</svg>\n");
    svg
}

// ---------------------------------------------------------------------------------
// The child: one server, the publisher, the subscribers, the sampler.
// ---------------------------------------------------------------------------------

/// Counters the child's parts share.
#[derive(Default)]
struct Shared {
    published: AtomicU64,
    fast_received: AtomicU64,
    lossless_gaps: AtomicU64,
    stalled_connected: AtomicU64,
    stop: AtomicBool,
}

fn run_child(args: &Args, mode: Mode, report_path: &str) -> Result<ExitCode, Error> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let report = runtime.block_on(child(args.clone(), mode))?;
    std::fs::write(report_path, report.to_json().to_string())?;
    Ok(ExitCode::SUCCESS)
}

/// The server under test, behind one interface so both modes run the same load.
enum Target {
    Membound {
        server: Arc<Server>,
        store: Arc<StateStore>,
        /// Samples the process and drives the server's pressure (the server is
        /// registered with it); kept alive for the run.
        _monitor: MemoryManager,
    },
    Baseline(Arc<Baseline>),
}

impl Target {
    /// The memory budget of the registered components (empty for the baseline).
    fn budget(&self) -> Vec<(String, String, u64, u64)> {
        let Target::Membound { _monitor, .. } = self else {
            return Vec::new();
        };
        _monitor
            .budget()
            .components
            .iter()
            .map(|c| {
                let f = c.footprint.unwrap_or_default();
                (c.name.to_string(), c.kind.to_owned(), f.bytes, f.max_bytes)
            })
            .collect()
    }

    fn addr(&self) -> SocketAddr {
        match self {
            Target::Membound { server, .. } => server.local_addr(),
            Target::Baseline(b) => b.addr,
        }
    }

    /// Applies a state delta where there is a store; returns the revision.
    fn apply(&self, patch: &Value) -> Option<u64> {
        match self {
            Target::Membound { store, .. } => {
                store.apply_json(&patch.to_string()).ok().map(|r| r.0)
            }
            Target::Baseline(_) => None,
        }
    }

    async fn publish(&self, event: Event) {
        match self {
            Target::Membound { server, .. } => {
                server.broadcast(&event).await;
            }
            Target::Baseline(b) => b.broadcast(event.encode()),
        }
    }

    /// Queued bytes, drops by class, resyncs, slow-consumer closes, pressure level.
    fn status(&self) -> (u64, [u64; 4], u64, u64, PressureLevel) {
        match self {
            Target::Membound { server, .. } => {
                let m = server.metrics();
                // What is held for the subscribers: the shared log (once, whatever
                // the number of connections) and their private queues; drops by
                // class as the open connections counted them.
                let mut held = m.hub.log.held_bytes;
                let mut dropped = [0u64; 4];
                for conn in server.connections() {
                    let out = conn.metrics().outbound;
                    held += out.queued_bytes as u64;
                    for class in DeliveryClass::ALL {
                        dropped[class.index()] += out.class(class).dropped;
                    }
                }
                (
                    held,
                    dropped,
                    m.traffic.resyncs_sent,
                    m.closed.slow_consumer,
                    // The level the server applied last: the manager's, which
                    // reaches it through its registration.
                    server.pressure(),
                )
            }
            Target::Baseline(b) => (
                b.queued_bytes.load(Ordering::Relaxed),
                [0; 4],
                0,
                0,
                PressureLevel::Normal,
            ),
        }
    }
}

async fn child(args: Args, mode: Mode) -> Result<Report, Error> {
    let shared = Arc::new(Shared::default());
    let target = Arc::new(match mode {
        Mode::Membound => start_membound().await?,
        Mode::Baseline => Target::Baseline(Baseline::start().await?),
    });
    let addr = target.addr();
    let url = format!("ws://{addr}/");

    let mut fast = Vec::new();
    for _ in 0..args.fast {
        let (ws, _) = tokio_tungstenite::connect_async(&url).await?;
        fast.push(tokio::spawn(fast_subscriber(ws, shared.clone())));
    }
    // Stalled subscribers: connected, never read; held until the end.
    let mut stalled = Vec::new();
    for _ in 0..args.stalled {
        stalled.push(tokio_tungstenite::connect_async(&url).await?.0);
        shared.stalled_connected.fetch_add(1, Ordering::Relaxed);
    }
    let churn = {
        let (url, shared, every) = (url.clone(), shared.clone(), args.churn);
        tokio::spawn(async move {
            let mut held = Vec::new();
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            while !shared.stop.load(Ordering::Relaxed) {
                tick.tick().await;
                if let Ok((ws, _)) = tokio_tungstenite::connect_async(&url).await {
                    held.push(ws);
                    shared.stalled_connected.fetch_add(1, Ordering::Relaxed);
                }
            }
            held
        })
    };

    let mut sampler = Sampler::new(SamplerConfig::default())?;
    let rss_start = sampler.rss().unwrap_or(0);
    let publisher = tokio::spawn(publisher(target.clone(), shared.clone(), args.rate));

    let started = Instant::now();
    let total = Duration::from_secs_f64(args.seconds);
    let mut samples = vec![(0.0, rss_start)];
    let mut rss_peak = rss_start;
    let tty = std::io::stderr().is_terminal();
    let mut last_line = Instant::now();
    let mut last_published = 0;
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    tick.tick().await;
    while started.elapsed() < total {
        tick.tick().await;
        let rss = sampler.rss().unwrap_or(0);
        rss_peak = rss_peak.max(rss);
        let t = started.elapsed().as_secs_f64();
        samples.push((t, rss));
        if tty || last_line.elapsed() >= Duration::from_secs(2) {
            let published = shared.published.load(Ordering::Relaxed);
            let rate = (published - last_published) as f64 / last_line.elapsed().as_secs_f64();
            last_published = published;
            last_line = Instant::now();
            let (queued, dropped, resyncs, slow, level) = target.status();
            let line = format!(
                "{:>5.1}s  {:>7.0} ev/s  rss {:>7.1} MiB  queued {:>8.1} KiB  dropped {}/{}/{}/{}  resyncs {}  slow closes {}  stalled {}  pressure {}",
                t,
                rate,
                rss as f64 / MIB,
                queued as f64 / 1024.0,
                dropped[0],
                dropped[1],
                dropped[2],
                dropped[3],
                resyncs,
                slow,
                shared.stalled_connected.load(Ordering::Relaxed),
                level,
            );
            let mut err = std::io::stderr().lock();
            if tty {
                let _ = write!(err, "\r{line}\x1b[K");
            } else {
                let _ = writeln!(err, "{line}");
            }
            let _ = err.flush();
        }
    }
    if tty {
        eprintln!();
    }
    shared.stop.store(true, Ordering::Relaxed);
    let elapsed = started.elapsed().as_secs_f64();
    publisher.await?;
    let fast_received = shared.fast_received.load(Ordering::Relaxed);
    let rss_end = sampler.rss().unwrap_or(0);
    let (_, dropped, resyncs, slow_closes, _) = target.status();
    let report = Report {
        mode: mode.name().into(),
        seconds: elapsed,
        published: shared.published.load(Ordering::Relaxed),
        fast: args.fast as u64,
        fast_rate: fast_received as f64 / args.fast as f64 / elapsed,
        fast_received,
        lossless_gaps: shared.lossless_gaps.load(Ordering::Relaxed),
        rss_start,
        rss_end,
        rss_peak,
        dropped,
        resyncs,
        slow_closes,
        stalled_connected: shared.stalled_connected.load(Ordering::Relaxed),
        samples,
        budget: target.budget(),
    };
    for f in fast {
        f.abort();
    }
    drop(stalled);
    churn.abort();
    if let Target::Membound { server, .. } = &*target {
        server.shutdown().await;
    }
    Ok(report)
}

async fn start_membound() -> Result<Target, Error> {
    let store = Arc::new(StateStore::new(StateConfig::default())?);
    store.apply_json(r#"[{"op":"add","path":"/runs","value":{}}]"#)?;
    let mut config = ServerConfig::default();
    // Redis-like output limits sized for browsers: a subscriber never has more
    // than 1 MiB queued (a lossless event waits up to 500 ms for room, then the
    // subscriber is cut), and one that stays 256 KiB behind for 2 s is cut too.
    config.connection.outbound = QueueConfig {
        capacity: 16_384,
        hard_limit_bytes: 1 << 20,
        soft_limit_bytes: 256 << 10,
        soft_limit_for: Duration::from_secs(2),
        lossless_timeout: Duration::from_millis(500),
        ..QueueConfig::default()
    };
    // The process's memory pressure drives the server, which the builder registers
    // with the manager: queues shrink with the level, and at critical new
    // connections are refused. No callback.
    let monitor = MemoryManager::new(MonitorConfig::development())?;
    let server = Arc::new(
        Server::builder(config)
            .snapshot_source(store.clone())
            .memory_manager(&monitor)
            .bind()
            .await?,
    );
    // The state store too, so the budget shows it beside the server's queues.
    monitor.register_named("state", &store);
    monitor.start()?;
    Ok(Target::Membound {
        server,
        store,
        _monitor: monitor,
    })
}

/// Plays agent runs at `rate` events per second until told to stop.
async fn publisher(target: Arc<Target>, shared: Arc<Shared>, rate: u64) {
    let mut run = 0u64;
    let mut seq = 0u64;
    // Paced in 1 ms steps: each step publishes what the rate allows by now.
    let started = Instant::now();
    let mut sent = 0u64;
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut script = Vec::new();
    while !shared.stop.load(Ordering::Relaxed) {
        tick.tick().await;
        let due = (started.elapsed().as_secs_f64() * rate as f64) as u64;
        while sent < due && !shared.stop.load(Ordering::Relaxed) {
            if script.is_empty() {
                script = agent_run(run);
                script.reverse();
                run += 1;
            }
            let Some(step) = script.pop() else { continue };
            let event = step.into_event(&mut seq, |patch| target.apply(patch));
            target.publish(event).await;
            sent += 1;
            shared.published.fetch_add(1, Ordering::Relaxed);
        }
    }
}

enum Step {
    /// Numbered by the publisher, so subscribers can check nothing is missing.
    Lossless(Event),
    /// A state delta, applied to the store before it is published.
    Delta(Value),
    Other(Event),
}

impl Step {
    /// The event published for this step: a lossless one numbered with the next
    /// `seq`, a delta tagged with the revision `apply` gives it.
    fn into_event(self, seq: &mut u64, apply: impl FnOnce(&Value) -> Option<u64>) -> Event {
        match self {
            Step::Lossless(event) => {
                *seq += 1;
                // In the event's `metadata`, where AG-UI puts what is not the
                // protocol's, so the events stay valid AG-UI events.
                event.with("metadata", json!({ "seq": *seq }))
            }
            Step::Delta(patch) => {
                let revision = apply(&patch);
                let event = Event::new(EventType::StateDelta).with("delta", patch);
                match revision {
                    Some(rev) => event.with_revision(rev),
                    None => event,
                }
            }
            Step::Other(event) => event,
        }
    }
}

/// One agent run: lifecycle, a streamed text message, a tool call with streamed
/// arguments, three state updates and a metrics event.
fn agent_run(run: u64) -> Vec<Step> {
    const WORDS: [&str; 12] = [
        "The ", "memory ", "of ", "this ", "server ", "stays ", "bounded ", "while ", "slow ",
        "clients ", "fall ", "behind. ",
    ];
    let (thread, run_id, msg, call) = (
        "thread-1".to_string(),
        format!("run-{run}"),
        format!("msg-{run}"),
        format!("call-{run}"),
    );
    let mut steps = vec![
        Step::Lossless(
            Event::new(EventType::RunStarted)
                .with("threadId", thread.clone())
                .with("runId", run_id.clone()),
        ),
        Step::Delta(
            json!([{"op": "add", "path": format!("/runs/{}", run % 64), "value": {"status": "running", "progress": 0}}]),
        ),
        Step::Lossless(
            Event::new(EventType::TextMessageStart)
                .with("messageId", msg.clone())
                .with("role", "assistant"),
        ),
    ];
    for i in 0..20 {
        steps.push(Step::Lossless(
            Event::new(EventType::TextMessageContent)
                .with("messageId", msg.clone())
                .with("delta", WORDS[(run as usize + i) % WORDS.len()]),
        ));
    }
    steps.push(Step::Lossless(
        Event::new(EventType::TextMessageEnd).with("messageId", msg.clone()),
    ));
    steps.push(Step::Lossless(
        Event::new(EventType::ToolCallStart)
            .with("toolCallId", call.clone())
            .with("toolCallName", "search")
            .with("parentMessageId", msg),
    ));
    for part in [
        r#"{"query":"#,
        r#""bounded "#,
        r#"memory","#,
        r#""limit":10}"#,
    ] {
        steps.push(Step::Lossless(
            Event::new(EventType::ToolCallArgs)
                .with("toolCallId", call.clone())
                .with("delta", part),
        ));
    }
    steps.push(Step::Lossless(
        Event::new(EventType::ToolCallEnd).with("toolCallId", call),
    ));
    steps.push(Step::Delta(
        json!([{"op": "replace", "path": format!("/runs/{}/progress", run % 64), "value": 50}]),
    ));
    steps.push(Step::Other(
        Event::new(EventType::Custom)
            .with("name", "metrics")
            .with("value", json!({"tokens": 20 + run % 7, "latencyMs": 35})),
    ));
    steps.push(Step::Delta(
        json!([{"op": "replace", "path": format!("/runs/{}/status", run % 64), "value": "done"}]),
    ));
    steps.push(Step::Lossless(
        Event::new(EventType::RunFinished)
            .with("threadId", thread)
            .with("runId", run_id),
    ));
    steps
}

/// Reads everything; checks the lossless events' numbers are consecutive.
async fn fast_subscriber(mut ws: WebSocketStream<MaybeTlsStream<TcpStream>>, shared: Arc<Shared>) {
    let mut last_seq = None::<u64>;
    while let Some(Ok(msg)) = ws.next().await {
        let Message::Text(text) = msg else { continue };
        shared.fast_received.fetch_add(1, Ordering::Relaxed);
        let Ok(event) = Event::parse(&text) else {
            shared.lossless_gaps.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        if event.class() == DeliveryClass::Lossless {
            if let Some(seq) = event
                .get("metadata")
                .and_then(|m| m.get("seq"))
                .and_then(Value::as_u64)
            {
                if last_seq.is_some_and(|last| seq != last + 1) {
                    shared.lossless_gaps.fetch_add(1, Ordering::Relaxed);
                }
                last_seq = Some(seq);
            }
        }
    }
}

// ---------------------------------------------------------------------------------
// The baseline: what the original replaced. One unbounded channel per connection.
// ---------------------------------------------------------------------------------

struct Baseline {
    addr: SocketAddr,
    conns: Mutex<Vec<mpsc::UnboundedSender<Utf8Bytes>>>,
    queued_bytes: Arc<AtomicU64>,
}

impl Baseline {
    async fn start() -> Result<Arc<Self>, Error> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let me = Arc::new(Self {
            addr: listener.local_addr()?,
            conns: Mutex::new(Vec::new()),
            queued_bytes: Arc::new(AtomicU64::new(0)),
        });
        let server = me.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let server = server.clone();
                tokio::spawn(async move {
                    let Ok(ws) = tokio_tungstenite::accept_async(tcp).await else {
                        return;
                    };
                    let (mut sink, mut stream) = ws.split();
                    let (tx, mut rx) = mpsc::unbounded_channel::<Utf8Bytes>();
                    server.conns.lock().unwrap().push(tx);
                    let queued = server.queued_bytes.clone();
                    tokio::spawn(async move { while stream.next().await.is_some() {} });
                    while let Some(text) = rx.recv().await {
                        queued.fetch_sub(text.len() as u64, Ordering::Relaxed);
                        if sink.send(Message::Text(text)).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        Ok(me)
    }

    fn broadcast(&self, frame: Frame) {
        let mut conns = self.conns.lock().unwrap();
        let len = frame.len() as u64;
        conns.retain(|tx| {
            // Counted before the send: the writer may take it (and subtract) at once.
            self.queued_bytes.fetch_add(len, Ordering::Relaxed);
            let sent = tx.send(frame.text().clone()).is_ok();
            if !sent {
                self.queued_bytes.fetch_sub(len, Ordering::Relaxed);
            }
            sent
        });
    }
}
