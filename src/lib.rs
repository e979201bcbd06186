//! # membound
//!
//! Bounded-memory building blocks for long-running programs: structures whose
//! worst-case memory is fixed when they are built, that say what they dropped, and
//! that never allocate on their hot paths.
//!
//! This release provides the lock-free multi-producer multi-consumer [`ring`] with
//! overflow policies: [`ring::Ring`] (heap, runtime capacity) and
//! [`ring::StaticRing`] (inline, const capacity, no allocator).
//!
//! Memory pressure: [`pressure`] turns utilization samples into a level with
//! hysteresis, a continuous scale factor and adaptive sizes (no_std);
//! [`heap::TrackingAllocator`] counts live heap bytes (no_std); `os` samples the
//! process, its cgroup and the host without allocating and `monitor` runs the
//! `MemoryManager` thread (both `std`).
//!
//! The [`table`] module provides fixed-capacity concurrent TTL tables with no epoch
//! reclamation and no allocation after construction: [`table::TtlTable`] (heap) and
//! [`table::StaticTtlTable`] (inline, `static`-friendly). [`schedule::Schedule`] runs
//! named cleanup tasks by ticks without threads; under `std`,
//! `cleanup::CleanupManager` runs them on background threads.
//!
//! [`backpressure::Backpressure`] (`alloc`) is a bounded channel whose water marks
//! pause producers until consumers drain it, with the overflow strategies none, drop
//! oldest, drop newest, block and block with a timeout.
//!
//! With `alloc`: [`slice::SnapshotVec`] is a copy-on-write vector whose readers
//! iterate immutable snapshots without a lock (so callbacks may re-enter it), and
//! [`pool::Pool`] a bounded, lock-free object pool on the ring that recycles objects
//! and releases idle ones under memory pressure.
//!
//! # Features
//!
//! - `std` (default): implies `alloc`; backoff yields the OS thread when a wait grows
//!   long; OS memory sampling (`os`, via libc on unix) and the memory manager
//!   (`monitor`).
//! - `alloc`: heap-backed structures such as [`ring::Ring`].
//! - `serde`: `Serialize`/`Deserialize` for configuration structs.
//! - `prometheus`: implies `std`; `export::prometheus` exposes every component's
//!   metrics through the `prometheus-client` registry and serves them over HTTP.
//! - `state`: the versioned JSON state store, `adapters::state` (implies `std`).
//! - `ws`: the WebSocket event transport, `adapters::ws`: a server and a client on
//!   tokio and tokio-tungstenite with bounded per-connection queues, delivery classes
//!   and byte limits (implies `std`).
//! - `axum`: serves the same transport from an axum router (implies `ws`).
//!
//! With default features off the crate is `no_std` and needs no allocator:
//! [`ring::StaticRing`] lives in a `static`.
//!
//! # Examples
//!
//! ```
//! use membound::ring::{Pushed, Ring};
//!
//! let events = Ring::new(1024)?;
//! assert_eq!(events.push("connected")?, Pushed::Stored);
//! assert_eq!(events.try_pop(), Some("connected"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![no_std]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "alloc")]
extern crate alloc;
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
pub use policy::OverflowPolicy;

#[cfg(loom)]
#[doc(hidden)]
pub use sync::loom_assume_no_waiters;

/// The README's examples run as doctests, so they cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
