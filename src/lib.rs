#![doc = include_str!("../README.md")]
//!
//! # Conventions
//!
//! The rules every module follows, so that an idea learnt once holds everywhere:
//!
//! - **When full**: a bounded structure takes an [`OverflowPolicy`]. One that cannot
//!   honour a policy refuses it at construction with
//!   [`ConfigError::UnsupportedPolicy`] (the [`policy`] module lists who supports
//!   what). Growth is a capacity setting, not a policy.
//! - **Waiting**: every blocking call takes a [`Wait`] (forever, a timeout or a
//!   deadline); async calls are futures that need no allocation per waiter.
//! - **Time**: a deadline a thread or task parks on is an `Instant` (std's for
//!   threads, tokio's for tasks). Every other reading of time that decides
//!   behaviour (expiry, ages, rates, sustain and dwell times) comes from a
//!   [`Clock`](clock::Clock), so tests drive it with a
//!   [`ManualClock`](clock::ManualClock) instead of sleeping.
//! - **Memory pressure** takes one route: anything that can shrink implements
//!   [`SoftCapacity`](capacity::SoftCapacity), whose
//!   [`apply_pressure`](capacity::SoftCapacity::apply_pressure) receives the level
//!   with the capacity, and is registered with the `MemoryManager` (`monitor`, std).
//!   Components that own several queues (the state store, the WebSocket server)
//!   register themselves when their builder is given a manager.
//! - **Errors**: construction fails with the crate's one [`ConfigError`] for the core
//!   structures; each operation has its own small error enum that hands back the
//!   item it could not take.
//! - **Metrics**: every `*Metrics` snapshot implements [`Metrics`](metrics::Metrics),
//!   which visits its fields; exporters walk any snapshot without knowing its type.
#![no_std]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "alloc")]
extern crate alloc;
// The derive's generated code names `::membound`, inside this crate too.
extern crate self as membound;
#[cfg(feature = "std")]
extern crate std;

#[cfg(feature = "std")]
pub mod adapters;
#[cfg(feature = "alloc")]
pub mod backpressure;
pub mod capacity;
#[cfg(feature = "std")]
pub mod cleanup;
pub mod clock;
mod config;
#[cfg(feature = "prometheus")]
pub mod export;
#[cfg(all(feature = "std", any(feature = "ws", all(loom, test))))]
mod handoff;
pub mod heap;
pub mod metrics;
#[cfg(feature = "std")]
pub mod monitor;
#[cfg(feature = "std")]
pub mod os;
pub mod policy;
#[cfg(feature = "alloc")]
pub mod pool;
pub mod pressure;
pub mod ring;
pub mod schedule;
#[cfg(feature = "alloc")]
pub mod slice;
mod sync;
pub mod table;

pub use config::ConfigError;
pub use policy::{OverflowPolicy, Wait};

#[cfg(loom)]
#[doc(hidden)]
pub use sync::loom_assume_no_waiters;
