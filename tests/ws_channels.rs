//! Channels on the in-memory engine (issue 16): the scenarios every engine passes
//! (`support/channels.rs`), with nothing to install.
#![cfg(feature = "ws")]

#[path = "support/channels.rs"]
mod channels;
#[path = "support/ws.rs"]
mod support;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use channels::*;
use membound::adapters::ws::{
    Engine, EngineConfig, EngineError, Event, EventType, LogConfig, MemoryEngine, Server,
};
use support::*;

/// Servers on in-memory engines: each node its own engine (one process's).
struct Memory;

impl Nodes for Memory {
    fn node(&self, history: usize) -> Pin<Box<dyn Future<Output = Server> + '_>> {
        Box::pin(async move {
            let mut config = EngineConfig::default();
            config.log = LogConfig::new(history, 1 << 20);
            let engine: Arc<dyn Engine> = Arc::new(MemoryEngine::new(config).unwrap());
            let (server, _) = serve(
                Server::builder(fast_config())
                    .engine(engine)
                    .snapshot_source(Arc::new(FixedSnapshot)),
            )
            .await;
            server
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_carry_their_ids_in_order() {
    ids_in_order(&Memory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_within_the_history_gets_exactly_the_missed_events() {
    resume_exactly(&Memory, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_outside_the_history_gets_a_gap_then_a_snapshot() {
    gap_then_snapshot(&Memory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_resumes_by_itself_across_a_reconnect() {
    client_resumes_by_itself(&Memory).await;
}

#[tokio::test]
async fn bad_channel_names_and_too_many_channels_are_typed_errors() {
    let mut config = EngineConfig::default();
    config.max_channels = 2;
    let engine = MemoryEngine::new(config).unwrap();
    let frame = || Event::new(EventType::RunStarted).encode();
    assert!(matches!(
        engine.publish("", frame()).await,
        Err(EngineError::InvalidChannel(_))
    ));
    assert!(matches!(
        engine.publish("a\nb", frame()).await,
        Err(EngineError::InvalidChannel(_))
    ));
    let a = engine.join("a").await.unwrap();
    let b = engine.join("b").await.unwrap();
    // Both in use: no room for a third.
    assert_eq!(
        engine.join("c").await.unwrap_err(),
        EngineError::TooManyChannels { max: 2 }
    );
    // Once `a` has no connection it may be forgotten to make room.
    engine.leave(&a);
    let c = engine.join("c").await.unwrap();
    assert_eq!(engine.metrics().channels, 2);
    engine.leave(&b);
    engine.leave(&c);
    let mut none = EngineConfig::default();
    none.max_channels = 0;
    assert!(MemoryEngine::new(none).is_err());
}

#[tokio::test]
async fn offsets_are_per_channel_and_the_history_is_bounded() {
    let mut config = EngineConfig::default();
    config.log = LogConfig::new(3, 1 << 20);
    let engine = MemoryEngine::new(config).unwrap();
    let mut last = None;
    for _ in 0..10 {
        last = Some(
            engine
                .publish("x", Event::new(EventType::RunStarted).encode())
                .await
                .unwrap(),
        );
    }
    let y = engine
        .publish("y", Event::new(EventType::RunStarted).encode())
        .await
        .unwrap();
    let x = last.unwrap();
    assert_eq!((x.offset, y.offset), (10, 1));
    assert_ne!(x.epoch, y.epoch, "each channel has its own epoch");
    let channel = engine.join("x").await.unwrap();
    let log = channel.hub().log().clone();
    assert_eq!(log.metrics().held, 3);
    assert_eq!((log.tail(), log.head()), (8, 11));
    engine.leave(&channel);
}
