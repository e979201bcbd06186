//! Adapters that put the core structures to work for servers (`std`, each behind its
//! own feature). They use only the core's public API.

#[cfg(feature = "state")]
pub mod state;

#[cfg(feature = "ws")]
pub mod ws;

// The subscriptions of the state store and of the WebSocket transport share it.
#[cfg(any(feature = "state", feature = "ws"))]
mod ending;
