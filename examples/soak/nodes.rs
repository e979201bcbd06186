//! The soak across nodes (`--engine redis --nodes N`, feature `redis`): N server
//! processes on one Redis, a publisher on node 1, fast subscribers spread over the
//! nodes; mid-run the last node is killed and restarted (its clients move to
//! another node and resume), then Redis is stopped for 3 s and restarted (its
//! history is lost: every client is told, and resynchronised).
//!
//! The parent process starts Redis (unless `--redis-url` names one), the nodes and
//! the subscribers, injects the faults, samples Redis's memory, and judges:
//! no lossless event missing or out of order at any subscriber (a gap is allowed
//! only where the transport announced it with `RESUME_GAP`), every subscriber has
//! the last event at the end, each node's RSS flat, Redis's memory bounded by the
//! stream limits.

use std::io::Write as _;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use membound::adapters::state::{RedisState, RedisStateConfig, StateConfig, StateStore};
use membound::adapters::ws::{
    DeliveryClass, EngineError, Event, RedisConfig, RedisEngine, Server, ServerConfig,
    EVENT_ID_FIELD, RESUME_GAP,
};
use membound::os::{Sampler, SamplerConfig};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use super::{agent_run, chart, Args, Error, Report, Step, MIB};

/// The channel the publisher plays its runs on.
const CHANNEL: &str = "soak";
/// Events each channel's history keeps in Redis (and each node's log).
const HISTORY: usize = 2048;

/// What a node child is told.
#[derive(Clone, Debug)]
pub struct NodeChild {
    pub index: usize,
    pub port: u16,
    pub redis_url: String,
    /// Where it appends its RSS samples (`t rss` lines) and, at the end, its
    /// figures (`end {json}`).
    pub samples: String,
    /// Runs the publisher until this many seconds after the start.
    pub publish_for: Option<f64>,
    /// The parent's start (Unix milliseconds): sample times are relative to it.
    pub t0_ms: u64,
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn free_port() -> Result<u16, Error> {
    Ok(StdListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

// ---------------------------------------------------------------------------------
// One node: a server with the Redis engine, its RSS samples, and on node 1 the
// publisher.
// ---------------------------------------------------------------------------------

pub fn run_node(args: &Args, node: &NodeChild) -> Result<ExitCode, Error> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(node_main(args.clone(), node.clone()))?;
    Ok(ExitCode::SUCCESS)
}

async fn node_main(args: Args, node: NodeChild) -> Result<(), Error> {
    let mut redis = RedisConfig::new(node.redis_url.clone());
    redis.prefix = "membound-soak".into();
    redis.history_len = HISTORY;
    redis.engine.log.max_events = HISTORY;
    redis.publish_timeout = Duration::from_secs(2);
    let engine = Arc::new(RedisEngine::new(redis)?);
    let store = Arc::new(StateStore::new(StateConfig::default())?);
    // One state document on every node, ordered by Redis: any node's snapshot
    // resynchronises a client.
    let mut state = RedisStateConfig::new(node.redis_url.clone(), "soak");
    state.prefix = "membound-soak".into();
    let shared_state = Arc::new(RedisState::open(store.clone(), state).await?);
    let config = ServerConfig {
        bind: SocketAddr::from(([127, 0, 0, 1], node.port)),
        ..ServerConfig::default()
    };
    let server = Arc::new(
        Server::builder(config)
            .engine(engine)
            .snapshot_source(store.clone())
            .bind()
            .await?,
    );
    let stop = Arc::new(AtomicBool::new(false));
    let published = Arc::new(AtomicU64::new(0));
    let last_seq = Arc::new(AtomicU64::new(0));
    let publisher = node.publish_for.map(|until| {
        let (server, store, stop, published, last_seq) = (
            server.clone(),
            shared_state.clone(),
            stop.clone(),
            published.clone(),
            last_seq.clone(),
        );
        let deadline = Duration::from_secs_f64(until)
            .saturating_sub(Duration::from_millis(unix_ms().saturating_sub(node.t0_ms)));
        tokio::spawn(async move {
            let end = Instant::now() + deadline;
            publish_runs(
                &server, &store, args.rate, end, &stop, &published, &last_seq,
            )
            .await
        })
    });
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&node.samples)?;
    let mut sampler = Sampler::new(SamplerConfig::default())?;
    let total = Duration::from_secs_f64(args.seconds)
        .saturating_sub(Duration::from_millis(unix_ms().saturating_sub(node.t0_ms)));
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    while started.elapsed() < total {
        tick.tick().await;
        let t = unix_ms().saturating_sub(node.t0_ms) as f64 / 1000.0;
        writeln!(file, "{t:.3} {}", sampler.rss().unwrap_or(0))?;
        file.flush()?;
    }
    stop.store(true, Ordering::Relaxed);
    let failed = match publisher {
        Some(task) => task.await?,
        None => 0,
    };
    let m = server.engine().metrics();
    // Let the state settle (the publisher stopped seconds ago), then report it.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (revision, document) = store.snapshot();
    let end = json!({
        "state_revision": revision.0, "state_digest": digest(&document.to_string()),
        "node": node.index, "published": published.load(Ordering::Relaxed),
        "last_seq": last_seq.load(Ordering::Relaxed), "publish_failures": failed,
        "received": m.received, "reconnects": m.reconnects, "restarts": m.restarts,
        "gaps_filled": m.gaps_filled, "resume_hits": m.resume_hits,
        "resume_misses": m.resume_misses, "dropped": m.dropped,
    });
    writeln!(file, "end {end}")?;
    server.shutdown().await;
    Ok(())
}

/// Plays agent runs on the channel at `rate` events per second until `end`. A
/// lossless publish that fails (Redis down) is retried until it goes through, as an
/// application would; a droppable one is let go. Returns the failed attempts.
async fn publish_runs(
    server: &Server,
    store: &RedisState,
    rate: u64,
    end: Instant,
    stop: &AtomicBool,
    published: &AtomicU64,
    last_seq: &AtomicU64,
) -> u64 {
    let (mut run, mut seq, mut sent, mut failed) = (0u64, 0u64, 0u64, 0u64);
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut script = Vec::new();
    while Instant::now() < end && !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        let due = (started.elapsed().as_secs_f64() * rate as f64) as u64;
        while sent < due && Instant::now() < end {
            if script.is_empty() {
                script = agent_run(run);
                script.reverse();
                run += 1;
            }
            let Some(step) = script.pop() else { continue };
            // A state delta is applied to the shared document first (every node's
            // store follows), and published tagged with its revision.
            let revision = match &step {
                Step::Delta(patch) => {
                    match serde_json::from_value::<json_patch::Patch>(patch.clone()) {
                        Ok(ops) => store.apply(&ops).await.ok().map(|r| r.0),
                        Err(_) => None,
                    }
                }
                _ => None,
            };
            let event = step.into_event(&mut seq, |_| revision);
            let lossless = event.class() == DeliveryClass::Lossless;
            loop {
                match server.publish(CHANNEL, &event).await {
                    Ok(_) => break,
                    Err(EngineError::Dropped) => break,
                    Err(_) if lossless => {
                        failed += 1;
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    Err(_) => break,
                }
            }
            if let Some(n) = seq_of(&event) {
                last_seq.store(n, Ordering::Relaxed);
            }
            sent += 1;
            published.fetch_add(1, Ordering::Relaxed);
        }
    }
    failed
}

/// A short digest of a document, to compare the nodes' documents.
fn digest(text: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    text.hash(&mut hasher);
    hasher.finish()
}

fn seq_of(event: &Event) -> Option<u64> {
    event.get("metadata")?.get("seq")?.as_u64()
}

// ---------------------------------------------------------------------------------
// The parent: Redis, the nodes, the subscribers and the faults.
// ---------------------------------------------------------------------------------

/// A `redis-server` the soak started, on a fixed port so it restarts there.
struct OwnRedis {
    port: u16,
    child: Option<Child>,
}

impl OwnRedis {
    fn start(port: u16) -> Result<Self, Error> {
        let mut own = Self { port, child: None };
        own.restart()?;
        Ok(own)
    }

    fn restart(&mut self) -> Result<(), Error> {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                format!(
                    "cannot start redis-server ({e}): install it (apt-get install redis-server) \
                     or pass --redis-url redis://host:port/"
                )
            })?;
        self.child = Some(child);
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        for _ in 0..300 {
            if std::net::TcpStream::connect(addr).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Err("redis-server did not start".into())
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One fast subscriber's figures.
#[derive(Default)]
struct Sub {
    received: AtomicU64,
    /// Lossless events missing or out of order (not announced by `RESUME_GAP`).
    lossless_gaps: AtomicU64,
    last_seq: AtomicU64,
    reconnects: AtomicU64,
    /// Reconnections that went on from the event after the last one seen.
    resumed: AtomicU64,
    /// `RESUME_GAP` notices: the history was lost, a snapshot followed.
    resyncs: AtomicU64,
}

pub fn run_cluster(args: &Args) -> Result<ExitCode, Error> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(cluster(args))
}

fn spawn_node(args: &Args, node: &NodeChild) -> Result<Child, Error> {
    let exe = std::env::current_exe()?;
    let mut cmd = Command::new(exe);
    cmd.args(["--engine", "redis"])
        .args(["--seconds", &args.seconds.to_string()])
        .args(["--rate", &args.rate.to_string()])
        .args(["--node-child", &node.index.to_string()])
        .args(["--port", &node.port.to_string()])
        .args(["--redis-url", &node.redis_url])
        .args(["--samples", &node.samples])
        .args(["--t0-ms", &node.t0_ms.to_string()]);
    if let Some(until) = node.publish_for {
        cmd.args(["--publish-for", &until.to_string()]);
    }
    Ok(cmd.spawn()?)
}

async fn cluster(args: &Args) -> Result<ExitCode, Error> {
    let nodes_n = args.nodes.max(2);
    let mut own_redis = None;
    let redis_url = match &args.redis_url {
        Some(url) => url.clone(),
        None => {
            let port = free_port()?;
            own_redis = Some(OwnRedis::start(port)?);
            format!("redis://127.0.0.1:{port}/")
        }
    };
    let t0_ms = unix_ms();
    // The subscribers stop 2 s before the nodes, the publisher 2 s before them:
    // everything published has time to arrive.
    let publish_for = args.seconds - 4.0;
    let dir = std::env::temp_dir();
    let mut nodes: Vec<NodeChild> = Vec::new();
    for index in 1..=nodes_n {
        nodes.push(NodeChild {
            index,
            port: free_port()?,
            redis_url: redis_url.clone(),
            samples: dir
                .join(format!(
                    "membound-soak-{}-node{index}.txt",
                    std::process::id()
                ))
                .to_string_lossy()
                .into_owned(),
            publish_for: (index == 1).then_some(publish_for),
            t0_ms,
        });
    }
    for node in &nodes {
        let _ = std::fs::remove_file(&node.samples);
    }
    let mut children: Vec<Child> = nodes
        .iter()
        .map(|n| spawn_node(args, n))
        .collect::<Result<_, _>>()?;
    // Wait for every node to listen.
    for node in &nodes {
        let addr = SocketAddr::from(([127, 0, 0, 1], node.port));
        let mut up = false;
        for _ in 0..500 {
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                up = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if !up {
            return Err(format!("node {} did not start", node.index).into());
        }
    }
    let addrs: Arc<Vec<SocketAddr>> = Arc::new(
        nodes
            .iter()
            .map(|n| SocketAddr::from(([127, 0, 0, 1], n.port)))
            .collect(),
    );
    let stop = Arc::new(AtomicBool::new(false));
    // The fast subscribers, and one more that joins the restarted node.
    let subs: Vec<Arc<Sub>> = (0..=args.fast).map(|_| Arc::new(Sub::default())).collect();
    let mut tasks = Vec::new();
    for (i, sub) in subs.iter().take(args.fast).enumerate() {
        tasks.push(tokio::spawn(subscriber(
            addrs.clone(),
            i % nodes_n,
            sub.clone(),
            stop.clone(),
        )));
    }
    // Redis's memory, sampled until the end.
    let redis_mem = Arc::new(Mutex::new(Vec::<(f64, u64, u64)>::new()));
    let sampling = tokio::spawn(sample_redis(
        redis_url.clone(),
        redis_mem.clone(),
        stop.clone(),
        t0_ms,
    ));

    let at = |fraction: f64| Duration::from_secs_f64(args.seconds * fraction);
    let started = Instant::now();
    let mut outage_note = String::new();
    // Kill the last node, restart it a second later on the same port.
    tokio::time::sleep_until((started + at(0.25)).into()).await;
    let last = nodes_n - 1;
    eprintln!(
        "{:>5.1}s  killing node {}",
        started.elapsed().as_secs_f64(),
        last + 1
    );
    let _ = children[last].kill();
    let _ = children[last].wait();
    tokio::time::sleep(Duration::from_secs(1)).await;
    eprintln!(
        "{:>5.1}s  restarting node {}",
        started.elapsed().as_secs_f64(),
        last + 1
    );
    children[last] = spawn_node(args, &nodes[last])?;
    // The extra subscriber joins the restarted node once it listens (so it reads
    // the channel there, from the history the node loads when it joins).
    for _ in 0..500 {
        if tokio::net::TcpStream::connect(addrs[last]).await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tasks.push(tokio::spawn(subscriber(
        addrs.clone(),
        last,
        subs[args.fast].clone(),
        stop.clone(),
    )));
    // Stop Redis for 3 s.
    tokio::time::sleep_until((started + at(0.5)).into()).await;
    eprintln!(
        "{:>5.1}s  stopping Redis for 3 s",
        started.elapsed().as_secs_f64()
    );
    match own_redis.as_mut() {
        Some(redis) => {
            redis.stop();
            tokio::time::sleep(Duration::from_secs(3)).await;
            redis.restart()?;
        }
        None => {
            // Not ours to stop: pause every client for 3 s and drop the pub/sub
            // connections instead.
            outage_note =
                " (an external Redis: paused 3 s and pub/sub dropped, not restarted)".into();
            if let Ok(client) = redis::Client::open(redis_url.as_str()) {
                if let Ok(mut conn) = client.get_multiplexed_async_connection().await {
                    let _: Result<(), _> = redis::cmd("CLIENT")
                        .arg("KILL")
                        .arg("TYPE")
                        .arg("pubsub")
                        .query_async(&mut conn)
                        .await;
                    let _: Result<(), _> = redis::cmd("CLIENT")
                        .arg("PAUSE")
                        .arg(3000)
                        .arg("ALL")
                        .query_async(&mut conn)
                        .await;
                }
            }
            tokio::time::sleep(Duration::from_secs(3)).await;
        }
    }
    eprintln!("{:>5.1}s  Redis back", started.elapsed().as_secs_f64());
    tokio::time::sleep_until((started + at(1.0) - Duration::from_secs(2)).into()).await;
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.abort();
    }
    for child in &mut children {
        let _ = child.wait();
    }
    let _ = sampling.await;

    // The nodes' samples and figures.
    let mut reports = Vec::new();
    let mut ends = Vec::new();
    for node in &nodes {
        let text = std::fs::read_to_string(&node.samples).unwrap_or_default();
        let _ = std::fs::remove_file(&node.samples);
        let mut report = Report {
            mode: format!("node {}", node.index),
            seconds: args.seconds,
            ..Report::default()
        };
        for line in text.lines() {
            if let Some(end) = line.strip_prefix("end ") {
                ends.push(serde_json::from_str::<Value>(end).unwrap_or(Value::Null));
                continue;
            }
            let mut parts = line.split(' ');
            if let (Some(Ok(t)), Some(Ok(rss))) = (
                parts.next().map(str::parse::<f64>),
                parts.next().map(str::parse::<u64>),
            ) {
                report.samples.push((t, rss));
            }
        }
        report.rss_start = report.samples.first().map_or(0, |s| s.1);
        report.rss_end = report.samples.last().map_or(0, |s| s.1);
        report.rss_peak = report.samples.iter().map(|s| s.1).max().unwrap_or(0);
        reports.push(report);
    }
    let publisher_end = ends
        .iter()
        .find(|e| e["node"] == json!(1))
        .cloned()
        .unwrap_or(Value::Null);
    let final_seq = publisher_end["last_seq"].as_u64().unwrap_or(0);
    let sum = |f: fn(&Sub) -> &AtomicU64| {
        subs.iter()
            .map(|s| f(s).load(Ordering::Relaxed))
            .sum::<u64>()
    };
    let gaps = sum(|s| &s.lossless_gaps);
    let resumed = sum(|s| &s.resumed);
    let resyncs = sum(|s| &s.resyncs);
    let reconnects = sum(|s| &s.reconnects);
    let behind: Vec<u64> = subs
        .iter()
        .map(|s| final_seq.saturating_sub(s.last_seq.load(Ordering::Relaxed)))
        .collect();
    let mem = redis_mem.lock().unwrap().clone();
    let mem_first = mem.first().map_or(0, |m| m.1);
    let mem_peak = mem.iter().map(|m| m.1).max().unwrap_or(0);
    let xlen_peak = mem.iter().map(|m| m.2).max().unwrap_or(0);

    println!(
        "\nsoak across {nodes_n} nodes on Redis: {} s, {} events/s offered on node 1, {} fast subscribers over the nodes and one more on the restarted node{outage_note}\n",
        args.seconds, args.rate, args.fast
    );
    println!(
        "{:<8} {:>10} {:>10} {:>10} {:>10}",
        "node", "RSS start", "RSS peak", "RSS end", "growth"
    );
    for r in &reports {
        println!(
            "{:<8} {:>6.1} MiB {:>6.1} MiB {:>6.1} MiB {:>+6.1} MiB",
            r.mode,
            r.rss_start as f64 / MIB,
            r.rss_peak as f64 / MIB,
            r.rss_end as f64 / MIB,
            r.growth() as f64 / MIB
        );
    }
    println!(
        "\npublished {} events (last lossless #{final_seq}), {} lossless publish attempts failed during the outage",
        publisher_end["published"], publisher_end["publish_failures"]
    );
    for end in &ends {
        println!(
            "node {}: received {}, redis reconnects {}, log restarts {}, gaps filled {}, resumes {} hit / {} missed",
            end["node"], end["received"], end["reconnects"], end["restarts"], end["gaps_filled"],
            end["resume_hits"], end["resume_misses"]
        );
    }
    println!(
        "subscribers: {reconnects} reconnects, {resumed} resumed from history, {resyncs} resynced by snapshot (RESUME_GAP)"
    );
    println!(
        "Redis used_memory: {:.1} MiB at start, {:.1} MiB peak; stream length peak {xlen_peak} (cap {HISTORY})",
        mem_first as f64 / MIB,
        mem_peak as f64 / MIB
    );

    std::fs::create_dir_all(
        std::path::Path::new(&args.svg)
            .parent()
            .unwrap_or(std::path::Path::new(".")),
    )?;
    std::fs::write(&args.svg, chart(&reports))?;
    println!("\nRSS chart (every node): {}", args.svg);

    let mut verdicts = vec![
        (gaps == 0, format!("no lossless event missing or out of order at any subscriber ({gaps})")),
        (
            final_seq > 0 && behind.iter().all(|b| *b == 0),
            format!("every subscriber has the last lossless event at the end (behind by {behind:?})"),
        ),
        (
            resumed >= 1,
            format!("clients of the killed node resumed from history on another node ({resumed})"),
        ),
        (
            xlen_peak <= HISTORY as u64 && mem_peak.saturating_sub(mem_first) < 64 << 20,
            format!(
                "Redis memory bounded by the stream cap (stream ≤ {HISTORY}: {xlen_peak}; growth {:+.1} MiB)",
                mem_peak.saturating_sub(mem_first) as f64 / MIB
            ),
        ),
    ];
    let states: Vec<(u64, u64)> = ends
        .iter()
        .map(|e| {
            (
                e["state_revision"].as_u64().unwrap_or(0),
                e["state_digest"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    verdicts.push((
        states.len() == nodes_n && states.windows(2).all(|w| w[0] == w[1]) && states[0].0 > 0,
        format!(
            "every node ends with the same state document at the same revision (revisions {:?})",
            states.iter().map(|s| s.0).collect::<Vec<_>>()
        ),
    ));
    if own_redis.is_some() {
        verdicts.push((
            resyncs >= subs.len() as u64,
            format!(
                "after Redis lost its history, every subscriber was told and resynced ({resyncs})"
            ),
        ));
    }
    for r in &reports {
        verdicts.push((
            r.growth() < 32 << 20,
            format!(
                "{}: RSS flat after warm-up ({:+.1} MiB)",
                r.mode,
                r.growth() as f64 / MIB
            ),
        ));
    }
    for (ok, text) in &verdicts {
        println!("{} {text}", if *ok { "ok  " } else { "FAIL" });
    }
    drop(own_redis);
    if args.check && verdicts.iter().any(|(ok, _)| !ok) {
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// A fast subscriber: reads the channel from node `first`; when its connection ends
/// it moves to the next node (a load balancer's choice) and names the last event id
/// it saw, so it resumes where it left off.
async fn subscriber(
    addrs: Arc<Vec<SocketAddr>>,
    first: usize,
    sub: Arc<Sub>,
    stop: Arc<AtomicBool>,
) {
    let mut node = first;
    let mut last_id: Option<String> = None;
    let mut last_seq: Option<u64> = None;
    let mut connected_once = false;
    while !stop.load(Ordering::Relaxed) {
        let mut url = format!("ws://{}/?channel={CHANNEL}", addrs[node]);
        if let Some(id) = &last_id {
            url.push_str("&lastEventId=");
            url.push_str(id);
        }
        let Ok((mut ws, _)) = tokio_tungstenite::connect_async(&url).await else {
            node = (node + 1) % addrs.len();
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        if connected_once {
            sub.reconnects.fetch_add(1, Ordering::Relaxed);
        }
        connected_once = true;
        let mut first_event = true;
        while let Some(Ok(msg)) = ws.next().await {
            let Message::Text(text) = msg else { continue };
            let Ok(event) = Event::parse(&text) else {
                sub.lossless_gaps.fetch_add(1, Ordering::Relaxed);
                continue;
            };
            sub.received.fetch_add(1, Ordering::Relaxed);
            let notice = event.get("name").and_then(Value::as_str) == Some(RESUME_GAP);
            if notice {
                // Announced: what was missed is gone; the state follows.
                sub.resyncs.fetch_add(1, Ordering::Relaxed);
                last_seq = None;
            } else if first_event && last_id.is_some() && sub.reconnects.load(Ordering::Relaxed) > 0
            {
                sub.resumed.fetch_add(1, Ordering::Relaxed);
            }
            first_event = false;
            if let Some(id) = event.get(EVENT_ID_FIELD).and_then(Value::as_str) {
                last_id = Some(id.to_owned());
            }
            if event.class() == DeliveryClass::Lossless {
                if let Some(seq) = seq_of(&event) {
                    if last_seq.is_some_and(|last| seq != last + 1) {
                        sub.lossless_gaps.fetch_add(1, Ordering::Relaxed);
                    }
                    last_seq = Some(seq);
                    sub.last_seq.store(seq, Ordering::Relaxed);
                }
            }
        }
        node = (node + 1) % addrs.len();
    }
}

/// Samples Redis's `used_memory` and the channel's stream length every 250 ms
/// (skipping samples while it is down).
async fn sample_redis(
    url: String,
    out: Arc<Mutex<Vec<(f64, u64, u64)>>>,
    stop: Arc<AtomicBool>,
    t0_ms: u64,
) {
    let Ok(client) = redis::Client::open(url.as_str()) else {
        return;
    };
    let stream = format!("membound-soak:s:{CHANNEL}");
    while !stop.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let Ok(Ok(mut conn)) = tokio::time::timeout(
            Duration::from_millis(500),
            client.get_multiplexed_async_connection(),
        )
        .await
        else {
            continue;
        };
        let info: Result<String, _> = redis::cmd("INFO")
            .arg("memory")
            .query_async(&mut conn)
            .await;
        let xlen: Result<u64, _> = redis::cmd("XLEN").arg(&stream).query_async(&mut conn).await;
        if let (Ok(info), Ok(xlen)) = (info, xlen) {
            let used = info
                .lines()
                .find_map(|l| l.strip_prefix("used_memory:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            let t = unix_ms().saturating_sub(t0_ms) as f64 / 1000.0;
            out.lock().unwrap().push((t, used, xlen));
        }
    }
}
