//! A bounded byte handoff between two tasks: a producer puts whole messages, a
//! consumer takes everything put so far. Each side waits through its own waker.
//!
//! The WebSocket server's writer sends tungstenite's control replies (pongs, the
//! close reply) through one: tungstenite "writes" them here from the reading task,
//! and the writer takes them between two frames of its own
//! (`adapters::ws::conn::raw`). Under `cfg(loom)` its lock is loom's, and the
//! in-crate model below checks that neither side's wait can be missed.

use alloc::vec::Vec;
use core::task::{Context, Poll, Waker};

use crate::sync::blocking::Mutex;

/// See the [module docs](self).
pub(crate) struct Handoff {
    inner: Mutex<Inner>,
    /// Bytes held before [`poll_put`](Self::poll_put) waits.
    max: usize,
}

struct Inner {
    bytes: Vec<u8>,
    /// The consumer, waiting for bytes.
    taker: Option<Waker>,
    /// The producer, waiting for room.
    putter: Option<Waker>,
}

impl Handoff {
    /// A handoff that holds `max` bytes before the producer waits (a message is
    /// put whole, so it may hold up to one message more).
    pub(crate) fn new(max: usize) -> Self {
        Self {
            inner: Mutex::new(Inner {
                bytes: Vec::new(),
                taker: None,
                putter: None,
            }),
            max,
        }
    }

    /// Runs `f` under the lock.
    fn locked<R>(&self, f: impl FnOnce(&mut Inner) -> R) -> R {
        // Nothing in the critical sections panics.
        let mut inner = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut inner)
    }

    /// Puts `message` whole, or waits while `max` bytes or more are held. Wakes a
    /// waiting consumer.
    pub(crate) fn poll_put(&self, cx: &mut Context<'_>, message: &[u8]) -> Poll<usize> {
        let taker = self.locked(|inner| {
            if inner.bytes.len() >= self.max {
                // Registered under the lock that `take` empties the bytes under: a
                // take after this sees the waker, one before it left room this saw.
                inner.putter = Some(cx.waker().clone());
                return Err(());
            }
            inner.bytes.extend_from_slice(message);
            Ok(inner.taker.take())
        });
        match taker {
            Err(()) => Poll::Pending,
            Ok(taker) => {
                if let Some(taker) = taker {
                    taker.wake();
                }
                Poll::Ready(message.len())
            }
        }
    }

    /// Everything put so far (empty when nothing is). Wakes a waiting producer.
    pub(crate) fn take(&self) -> Vec<u8> {
        let (bytes, putter) = self.locked(|inner| {
            if inner.bytes.is_empty() {
                return (Vec::new(), None);
            }
            (core::mem::take(&mut inner.bytes), inner.putter.take())
        });
        if let Some(putter) = putter {
            putter.wake();
        }
        bytes
    }

    /// Ready once bytes are held; otherwise the consumer's waker is kept and woken
    /// by the next put.
    pub(crate) fn poll_ready(&self, cx: &mut Context<'_>) -> Poll<()> {
        self.locked(|inner| {
            if inner.bytes.is_empty() {
                inner.taker = Some(cx.waker().clone());
                Poll::Pending
            } else {
                Poll::Ready(())
            }
        })
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::task::Wake;

    struct Count(std::sync::atomic::AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    #[test]
    fn a_full_handoff_makes_the_producer_wait_until_a_take() {
        let handoff = Handoff::new(4);
        let (putter, taker) = (Arc::new(Count(0.into())), Arc::new(Count(0.into())));
        let (pw, tw) = (Waker::from(putter.clone()), Waker::from(taker.clone()));
        let (mut pcx, mut tcx) = (Context::from_waker(&pw), Context::from_waker(&tw));
        assert!(handoff.poll_ready(&mut tcx).is_pending());
        assert_eq!(handoff.poll_put(&mut pcx, b"abc"), Poll::Ready(3));
        assert_eq!(taker.0.load(std::sync::atomic::Ordering::SeqCst), 1);
        // Under the bound: whole, even past it.
        assert_eq!(handoff.poll_put(&mut pcx, b"de"), Poll::Ready(2));
        assert!(handoff.poll_put(&mut pcx, b"f").is_pending());
        assert!(handoff.poll_ready(&mut tcx).is_ready());
        assert_eq!(handoff.take(), b"abcde");
        assert_eq!(putter.0.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert_eq!(handoff.take(), b"");
        assert_eq!(handoff.poll_put(&mut pcx, b"f"), Poll::Ready(1));
    }
}

/// The handoff under loom: a producer puts numbered one-byte messages through a
/// handoff that holds one, a consumer waits and takes until it has them all. A
/// missed wake-up on either side leaves a thread waiting forever, which loom
/// reports; the consumer also checks that every message arrives once, in order.
///
/// Run: `RUSTFLAGS="--cfg loom" cargo test --release --lib handoff::loom_models`.
#[cfg(all(test, loom))]
mod loom_models {
    use super::*;
    use core::future::poll_fn;
    use loom::sync::Arc;

    #[test]
    fn neither_side_misses_a_wake_up_and_every_message_arrives_once_in_order() {
        loom::model(|| {
            const MESSAGES: u8 = 3;
            let handoff = Arc::new(Handoff::new(1));
            let producer = {
                let handoff = Arc::clone(&handoff);
                loom::thread::spawn(move || {
                    for seq in 0..MESSAGES {
                        loom::future::block_on(poll_fn(|cx| handoff.poll_put(cx, &[seq])));
                    }
                })
            };
            let mut got = Vec::new();
            while got.len() < usize::from(MESSAGES) {
                loom::future::block_on(poll_fn(|cx| handoff.poll_ready(cx)));
                got.extend(handoff.take());
            }
            assert_eq!(got, (0..MESSAGES).collect::<Vec<_>>());
            producer.join().unwrap();
        });
    }
}
