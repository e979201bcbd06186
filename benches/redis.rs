//! Fan-out across nodes through Redis (issue 16's throughput bar): events delivered
//! per second to one subscriber on each of 3 nodes, against what the same Redis
//! sustains for raw `PUBLISH` to 3 subscribers, in the same run.
//!
//! - `membound_3_nodes`: three servers, each with its own `RedisEngine` on the
//!   Redis; one WebSocket client per node joined to the channel; `Server::publish`
//!   on node 1 (the publish script: offset, capped history, `PUBLISH`), each node
//!   appending what arrives to its channel log and writing it to its client.
//! - `raw_publish`: redis-rs `PUBLISH` of the same payloads to 3 redis-rs pub/sub
//!   subscribers.
//!
//! Both publish with the same number in flight (`IN_FLIGHT`: 32, and 256), and a round ends when
//! every subscriber has every event. Redis comes from `MEMBOUND_REDIS_URL`, or the
//! bench starts `redis-server` on a free port (no persistence).
//!
//! `cargo bench --bench redis --features redis`

use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use futures_util::{stream, StreamExt};
use membound::adapters::ws::{
    Event, EventType, Frame, LogConfig, RedisConfig, RedisEngine, Server, ServerConfig,
};
use tokio::runtime::Runtime;
use tokio_tungstenite::tungstenite::Message;

const NODES: usize = 3;
const EVENTS: usize = 2_000;
/// Publishes in flight at once: a few concurrent runs, and many.
const IN_FLIGHT: [usize; 2] = [32, 256];

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// The Redis to use: `MEMBOUND_REDIS_URL`, or one started here (stopped on drop).
struct Redis {
    url: String,
    child: Option<Child>,
}

impl Redis {
    fn get() -> Self {
        if let Ok(url) = std::env::var("MEMBOUND_REDIS_URL") {
            if !url.is_empty() {
                return Self { url, child: None };
            }
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server (apt-get install redis-server, or set MEMBOUND_REDIS_URL)");
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        while std::net::TcpStream::connect(addr).is_err() {
            std::thread::sleep(Duration::from_millis(10));
        }
        Self {
            url: format!("redis://127.0.0.1:{port}/"),
            child: Some(child),
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// About 100-byte `TEXT_MESSAGE_CONTENT` events.
fn frames() -> Vec<Frame> {
    (0..EVENTS)
        .map(|i| {
            Event::new(EventType::TextMessageContent)
                .with("messageId", "m1")
                .with(
                    "delta",
                    format!("word {i} of a streamed answer, padded a little."),
                )
                .encode()
        })
        .collect()
}

/// What each subscriber has received; the waiter is woken when all reach the
/// target (no polling: tokio's timer is too coarse for a round this short).
#[derive(Default)]
struct Tally {
    counts: Vec<AtomicU64>,
    target: AtomicU64,
    reached: tokio::sync::Notify,
}

impl Tally {
    fn new(n: usize) -> Arc<Self> {
        Arc::new(Self {
            counts: (0..n).map(|_| AtomicU64::new(0)).collect(),
            ..Self::default()
        })
    }

    fn add(&self, i: usize) {
        let now = self.counts[i].fetch_add(1, Ordering::Relaxed) + 1;
        if now >= self.target.load(Ordering::Relaxed)
            && self.all_at_least(now.min(self.target.load(Ordering::Relaxed)))
        {
            self.reached.notify_one();
        }
    }

    fn all_at_least(&self, n: u64) -> bool {
        self.counts.iter().all(|c| c.load(Ordering::Relaxed) >= n)
    }

    fn total(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }
}

async fn wait_for(tally: &Tally, n: u64) {
    tally.target.store(n, Ordering::Relaxed);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !tally.all_at_least(n) {
        assert!(
            Instant::now() < deadline,
            "subscribers stalled at {}",
            tally.total()
        );
        let _ = tokio::time::timeout(Duration::from_millis(5), tally.reached.notified()).await;
    }
}

fn unique_prefix(what: &str) -> String {
    format!("mbbench-{what}-{}-{:?}", std::process::id(), Instant::now())
}

async fn membound_nodes(url: &str) -> (Vec<Server>, Arc<Tally>) {
    let prefix = unique_prefix("nodes");
    let mut servers = Vec::new();
    for _ in 0..NODES {
        let mut config = RedisConfig::new(url);
        config.prefix = prefix.clone();
        config.history_len = 1024;
        config.engine.log = LogConfig::new(4096, 16 << 20);
        let engine = Arc::new(RedisEngine::new(config).expect("engine"));
        let server = Server::builder(ServerConfig::default())
            .engine(engine)
            .bind()
            .await
            .expect("server");
        servers.push(server);
    }
    let tally = Tally::new(NODES);
    for (i, server) in servers.iter().enumerate() {
        let url = format!("ws://{}/?channel=bench", server.local_addr());
        let (mut ws, _) = tokio_tungstenite::connect_async(url).await.expect("client");
        let tally = tally.clone();
        tokio::spawn(async move {
            while let Some(Ok(msg)) = ws.next().await {
                if matches!(msg, Message::Text(_)) {
                    tally.add(i);
                }
            }
        });
        while server.engine().metrics().channels == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    (servers, tally)
}

async fn raw_subscribers(url: &str, channel: &str) -> Arc<Tally> {
    let tally = Tally::new(NODES);
    let client = redis::Client::open(url).expect("url");
    for i in 0..NODES {
        let mut pubsub = client.get_async_pubsub().await.expect("pubsub");
        pubsub.subscribe(channel).await.expect("subscribe");
        let tally = tally.clone();
        tokio::spawn(async move {
            let mut messages = pubsub.into_on_message();
            while messages.next().await.is_some() {
                tally.add(i);
            }
        });
    }
    tally
}

fn redis_fan_out(c: &mut Criterion) {
    let rt = runtime();
    let redis = Redis::get();
    let frames = frames();
    let deliveries = (EVENTS * NODES) as u64;
    let id = |name: &str, in_flight: usize| {
        BenchmarkId::new(name, format!("{NODES}x{EVENTS}/in_flight_{in_flight}"))
    };

    let (servers, ours) = rt.block_on(membound_nodes(&redis.url));
    let channel = unique_prefix("raw");
    let (theirs, publisher) = rt.block_on(async {
        let tally = raw_subscribers(&redis.url, &channel).await;
        let client = redis::Client::open(redis.url.as_str()).expect("url");
        let conn = client
            .get_multiplexed_async_connection()
            .await
            .expect("connection");
        (tally, conn)
    });

    let mut group = c.benchmark_group("redis_fan_out");
    group.sample_size(10);
    group.throughput(Throughput::Elements(deliveries));
    for in_flight in IN_FLIGHT {
        group.bench_function(id("membound_3_nodes", in_flight), |b| {
            let mut round = 0u64;
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let start = Instant::now();
                    for _ in 0..iters {
                        round += 1;
                        stream::iter(frames.iter().cloned())
                            .map(|f| servers[0].publish_frame("bench", f))
                            .buffer_unordered(in_flight)
                            .for_each(|r| {
                                r.expect("published");
                                async {}
                            })
                            .await;
                        wait_for(&ours, round * EVENTS as u64).await;
                    }
                    start.elapsed()
                })
            })
        });
        group.bench_function(id("raw_publish", in_flight), |b| {
            let mut round = 0u64;
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let start = Instant::now();
                    for _ in 0..iters {
                        round += 1;
                        stream::iter(frames.iter())
                            .map(|f| {
                                let mut conn = publisher.clone();
                                let channel = channel.clone();
                                async move {
                                    redis::cmd("PUBLISH")
                                        .arg(channel)
                                        .arg(f.as_str())
                                        .query_async::<u64>(&mut conn)
                                        .await
                                }
                            })
                            .buffer_unordered(in_flight)
                            .for_each(|r| {
                                r.expect("published");
                                async {}
                            })
                            .await;
                        wait_for(&theirs, round * EVENTS as u64).await;
                    }
                    start.elapsed()
                })
            })
        });
    }
    group.finish();
    for server in &servers {
        rt.block_on(server.shutdown());
    }
    drop(redis);
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
}

criterion_group! {
    name = benches;
    config = config();
    targets = redis_fan_out
}
criterion_main!(benches);
