//! Bounded rings with overflow policies.
//!
//! [`Ring`] (heap, runtime capacity, needs `alloc`) and [`StaticRing`] (inline, const
//! capacity, no allocator, `static`-friendly) are two storages of one lock-free
//! multi-producer multi-consumer algorithm, [`RingCore`]; its module documentation
//! names the algorithm and its sources.
//!
//! - Any capacity >= 1 works as given; 0 is an error
//!   ([`ConfigError::ZeroCapacity`](crate::ConfigError::ZeroCapacity)), or a compile
//!   error for a `StaticRing`.
//! - [`try_push`](RingCore::try_push) hands the item back when full;
//!   [`force_push`](RingCore::force_push) evicts and returns the oldest item;
//!   [`push`](RingCore::push) applies the ring's [`OverflowPolicy`] (every policy
//!   is supported) and counts what it drops.
//! - [`close`](RingCore::close) refuses further pushes while pops drain what is left,
//!   and wakes every waiter.
//! - Waiting, one mechanism (an eventcount, see the `wait` module's docs) three
//!   ways, one pair each: parking the thread for as long as a [`Wait`] says
//!   ([`push_wait`](RingCore::push_wait), [`pop_wait`](RingCore::pop_wait), `std`),
//!   futures ([`push_async`](RingCore::push_async),
//!   [`pop_async`](RingCore::pop_async), any executor, `no_std`), and a
//!   [`WaitStrategy`] between attempts ([`push_wait_with`](RingCore::push_wait_with),
//!   [`pop_wait_with`](RingCore::pop_wait_with), `no_std`). A push or pop costs one
//!   extra load while nobody waits.
//! - A soft capacity within a reservation:
//!   [`set_capacity`](RingCore::set_capacity) and growth
//!   ([`RingConfig::with_growth`]) change the capacity in force without copying or
//!   allocating.
//! - [`metrics`](RingCore::metrics) is a plain snapshot whose counting costs the
//!   push/pop fast path nothing.
//! - [`spsc`]: a wait-free single-producer single-consumer channel with batches,
//!   chunks, drop-oldest with lag reports, and the same waits.
//!
//! [`Wait`]: crate::policy::Wait
//! [`OverflowPolicy`]: crate::OverflowPolicy
//!
//! # Examples
//!
//! ```
//! use membound::ring::{PopError, Ring, RingConfig};
//! use membound::OverflowPolicy;
//!
//! let ring = Ring::with_config(RingConfig::new(2).with_policy(OverflowPolicy::DropOldest))?;
//! ring.push("a")?;
//! ring.push("b")?;
//! ring.push("c")?; // evicts "a"
//! ring.close();
//! assert_eq!(ring.pop(), Ok("b"));
//! assert_eq!(ring.pop(), Ok("c"));
//! assert_eq!(ring.pop(), Err(PopError::Closed));
//! assert_eq!(ring.metrics().dropped_oldest, 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod config;
mod error;
mod mpmc;
pub mod spsc;
// The eventcount is shared with `backpressure`, which waits on queues of its own.
pub(crate) mod wait;

pub use config::{Pushed, RingConfig, MAX_CAPACITY};
pub use error::{Closed, PopError, PopWaitError, PushError, PushWaitError};
#[cfg(feature = "alloc")]
pub use mpmc::Ring;
pub use mpmc::{
    Drain, IntoIter, PopFuture, PushFuture, RingCore, RingMetrics, Slot, StaticRing, Storage,
};
pub use wait::{Spin, WaitStrategy};
