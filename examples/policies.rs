//! Pushes the same burst through rings with each overflow policy, then a
//! multi-threaded producer/consumer run, and prints what each ring kept, dropped and
//! reported.
//!
//! Run: `cargo run --example policies`

use std::sync::Arc;
use std::thread;

use membound::ring::{PopError, PushError, Pushed, Ring, RingConfig};
use membound::OverflowPolicy;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("A burst of 10 events into rings of capacity 4:\n");
    for policy in [
        OverflowPolicy::DropOldest,
        OverflowPolicy::DropNewest,
        OverflowPolicy::Reject,
    ] {
        let ring = Ring::with_config(RingConfig::new(4).with_policy(policy))?;
        let mut refused = Vec::new();
        for event in 0..10u32 {
            match ring.push(event) {
                Ok(Pushed::Stored | Pushed::DroppedOldest | Pushed::DroppedNewest) => {}
                Ok(other) => println!("  unexpected outcome {other:?}"),
                Err(PushError::Full(back)) => refused.push(back),
                Err(e) => return Err(e.into()),
            }
        }
        let m = ring.metrics();
        let kept: Vec<u32> = ring.drain().collect();
        println!("{policy:?}:");
        println!("  kept            {kept:?}");
        if !refused.is_empty() {
            println!("  handed back     {refused:?}");
        }
        println!(
            "  metrics         pushed={} dropped_oldest={} dropped_newest={} rejected={} high_water={}/{}",
            m.pushed, m.dropped_oldest, m.dropped_newest, m.rejected, m.high_water, m.capacity
        );
    }

    println!("\nforce_push hands the evicted event back instead of dropping it:");
    let ring = Ring::new(2)?;
    for event in ["a", "b", "c"] {
        if let Some(evicted) = ring.force_push(event)? {
            println!("  pushing {event:?} evicted {evicted:?}");
        }
    }

    println!("\nFour producers, two consumers, a ring of 64 that drops the oldest:");
    let ring = Arc::new(Ring::new(64)?);
    let producers: Vec<_> = (0..4u64)
        .map(|p| {
            let ring = ring.clone();
            thread::spawn(move || {
                for i in 0..50_000 {
                    ring.push(p * 1_000_000 + i).expect("ring is open");
                }
            })
        })
        .collect();
    let consumers: Vec<_> = (0..2)
        .map(|_| {
            let ring = ring.clone();
            thread::spawn(move || {
                let mut received = 0u64;
                loop {
                    match ring.pop() {
                        Ok(_) => received += 1,
                        Err(PopError::Empty) => thread::yield_now(),
                        Err(PopError::Closed) => return received,
                    }
                }
            })
        })
        .collect();
    for p in producers {
        p.join().expect("producer panicked");
    }
    ring.close();
    let received: u64 = consumers
        .into_iter()
        .map(|c| c.join().expect("consumer panicked"))
        .sum();
    let m = ring.metrics();
    println!(
        "  pushed={} received={} dropped_oldest={} (pushed = received + dropped: {})",
        m.pushed,
        received,
        m.dropped_oldest,
        m.pushed == received + m.dropped_oldest
    );
    println!("  high_water={}/{}", m.high_water, m.capacity);
    Ok(())
}
