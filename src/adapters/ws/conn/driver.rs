//! Driving a connection: the reader, the writer and the dispatcher in one task,
//! and the close handshake.

use core::future::Future;
use core::pin::Pin;
use core::task::Poll;
use core::time::Duration;
use std::prelude::rust_2021::*;
// `tokio::select!` expands to `panic!`, which the prelude glob and the crate's
// `no_std` prelude both provide; an explicit import settles which.
#[allow(unused_imports)]
use core::panic;
use std::sync::Arc;

use futures_util::StreamExt;
use tokio::time::{sleep_until, timeout, timeout_at, Instant};

use super::shared::{Core, Flag};
use super::transport::{Incoming, Transport, WireError, WireMessage, WireOut};
use crate::adapters::ending::bump;
use crate::adapters::ws::agui;
use crate::adapters::ws::config::{ConnectionConfig, MalformedPolicy};
use crate::adapters::ws::engine::EVENT_ID_FIELD;
use crate::adapters::ws::event::{Event, EventType, Frame};
use crate::adapters::ws::outbound::{Next, Staged, Taken};
use crate::adapters::ws::time::after;
use crate::adapters::ws::types::{CloseReason, SlowConsumer};
use crate::sync::Ordering;

// ---------------------------------------------------------------------------------
// Driving a connection
// ---------------------------------------------------------------------------------

/// How a connection ended: why, and what is left to do with its socket.
pub(crate) struct Ended {
    pub(crate) reason: CloseReason,
    /// After a read error, the socket still has to linger (see
    /// [`Transport::linger`]) so the close frame reaches the peer. The caller records
    /// the end first, then awaits this (it is bounded by the close timeout).
    pub(crate) linger: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
}

/// Runs the connection until it has ended; returns why. The caller records the end
/// ([`Core::finish`]) after its own clean-up, then awaits [`Ended::linger`].
pub(crate) async fn drive<T: Transport>(socket: T, core: Arc<Core>) -> Ended {
    let (stream, mut out) = socket.split(&core.config);
    let reader_done = Flag::default();
    let mut reader = ReaderState::<T> {
        stream,
        read_error: false,
    };
    let io = async {
        let reading = read_loop(&core, &mut reader, &reader_done);
        let writing = write_loop(&core, &mut out, &reader_done);
        tokio::pin!(reading, writing);
        // The writer decides when the connection is over; the reader ends first only
        // when the stream does, and then waits here for the writer.
        let reason = tokio::select! {
            biased;
            reason = &mut writing => reason,
            read_error = &mut reading => {
                if read_error {
                    // The peer broke the protocol: what is queued for it (replies to
                    // its earlier messages) goes out before the close frame, but
                    // within the close timeout; then the writer abandons the rest.
                    match timeout(core.config.close_timeout, &mut writing).await {
                        Ok(reason) => reason,
                        Err(_) => {
                            core.force_close();
                            writing.await
                        }
                    }
                } else {
                    writing.await
                }
            }
        };
        if core.owns_inbound {
            core.inbound.close();
        }
        reason
    };
    let reason = if core.owns_inbound {
        tokio::join!(io, core.inbound.run()).0
    } else {
        io.await
    };
    let mut linger = None;
    if reader.read_error {
        // The stream ended on an error with the socket still open: let the close
        // frame reach the peer before the socket goes.
        let deadline = after(core.config.close_timeout);
        linger = Some(Box::pin(T::linger(reader.stream, out, deadline)) as Pin<Box<_>>);
    }
    Ended { reason, linger }
}

/// Refuses a connection whose handshake is done: sends a close frame for `reason`
/// and waits (within `close_timeout`) for the peer's reply and the end of the stream.
pub(crate) async fn refuse<T: Transport>(
    socket: T,
    reason: &CloseReason,
    config: &ConnectionConfig,
) {
    let deadline = after(config.close_timeout);
    let (mut stream, mut out) = socket.split(config);
    out.stage_close(reason);
    let sent = core::future::poll_fn(|cx| out.poll_flush(cx));
    if let Ok(Ok(())) = timeout_at(deadline, sent).await {
        let _ = timeout_at(deadline, async {
            while let Some(Ok(_)) = stream.next().await {}
        })
        .await;
    }
}

struct ReaderState<T: Transport> {
    stream: T::Reader,
    /// The stream ended on an error (not on the peer's close or EOF).
    read_error: bool,
}

/// Reads until the stream ends; returns whether it ended on a read error.
async fn read_loop<T: Transport>(core: &Core, state: &mut ReaderState<T>, done: &Flag) -> bool {
    let end = loop {
        let message = match state.stream.next().await {
            None => break None,
            Some(Err(error)) => {
                state.read_error = true;
                break Some(error.close_reason());
            }
            Some(Ok(message)) => message,
        };
        core.touch();
        match message.kind() {
            Incoming::Text(text) => {
                bump(&core.io.frames_in, 1);
                bump(&core.io.bytes_in, text.len() as u64);
                if closing(core) {
                    continue;
                }
                let len = text.len();
                // In strict mode, an event that does not match its type's schema is
                // malformed too.
                let parsed = Event::parse(text)
                    .map_err(|e| e.to_string())
                    .and_then(|event| {
                        if core.config.inbound.strict {
                            agui::validate(&event).map_err(|e| e.to_string())?;
                        }
                        Ok(event)
                    });
                match parsed {
                    Ok(event) => {
                        if let (Some(last), Some(id)) = (
                            &core.last_event_id,
                            event
                                .get(EVENT_ID_FIELD)
                                .and_then(serde_json::Value::as_str),
                        ) {
                            last.set(id);
                        }
                        // A closed inbound side (the connection is ending) drops it.
                        let _ = core.inbound.push_sized(event, len).await;
                    }
                    Err(why) => not_an_event(core, message, why).await,
                }
            }
            Incoming::Binary(len) => {
                bump(&core.io.frames_in, 1);
                bump(&core.io.bytes_in, len as u64);
                if !closing(core) {
                    not_an_event(core, message, "binary messages are not events".into()).await;
                }
            }
            Incoming::Ping(len) => bump(&core.io.bytes_in, len as u64),
            Incoming::Pong(len) => {
                bump(&core.io.bytes_in, len as u64);
                bump(&core.io.pongs_received, 1);
            }
            Incoming::Close(frame) => {
                core.io.peer_closed.store(true, Ordering::Relaxed);
                let (code, reason) = frame.map_or((1005, ""), |(c, r)| (c, r));
                core.outbound.close(CloseReason::Remote {
                    code,
                    reason: reason.into(),
                });
                // Keep reading: tungstenite sends the reply and then ends the stream.
            }
        }
    };
    core.outbound.close(
        end.unwrap_or_else(|| CloseReason::Lost("connection closed without a close frame".into())),
    );
    done.set();
    state.read_error
}

/// Whether the connection is closing for a reason that discards what is queued:
/// inbound data is then ignored.
fn closing(core: &Core) -> bool {
    core.outbound.close_reason().is_some_and(|r| !r.drains())
}

/// A text or binary `message` that is not an event (`why`), by the malformed
/// policy: to the raw handlers in raw mode, otherwise a close or an error event.
async fn not_an_event<M: WireMessage>(core: &Core, message: M, why: String) {
    match core.config.inbound.on_malformed {
        MalformedPolicy::Raw => {
            // Only text and binary messages come here, so `into_raw` has one.
            if let Some(raw) = message.into_raw() {
                bump(&core.io.raw_in, 1);
                // As for an event: a closed inbound side (the connection is
                // ending) drops it.
                let _ = core.inbound.push_raw(raw).await;
            }
        }
        MalformedPolicy::Close => {
            bump(&core.io.malformed_in, 1);
            core.outbound.close(CloseReason::InvalidPayload(why));
        }
        MalformedPolicy::ErrorEvent => {
            bump(&core.io.malformed_in, 1);
            let reply = Event::new(EventType::RunError)
                .with("message", why)
                .with("code", "MALFORMED_EVENT");
            // A full queue is the slow-consumer path; a closed one needs no reply.
            let _ = core.outbound.send(reply.encode()).await;
        }
    }
}

/// How a write ended early.
enum Stop {
    /// The connection is closing for this reason (it discards the queue).
    Close(CloseReason),
    /// The shutdown deadline passed: close now with the queue's reason.
    Forced,
}

/// A tick for [`Outbound::check_limits`]: often enough to enforce the soft limit's
/// duration to within a quarter, never busier than every 10 ms.
fn limits_period(config: &ConnectionConfig) -> Duration {
    (config.outbound.soft_limit_for / 4).clamp(Duration::from_millis(10), Duration::from_secs(1))
}

async fn write_loop<W: WireOut>(core: &Core, out: &mut W, reader_done: &Flag) -> CloseReason {
    let config = &core.config;
    let mut writer = Writer {
        core,
        out,
        lookahead: None,
    };
    // The timers live across iterations, so a busy connection does not register
    // three timers per event.
    let ping = sleep_until(after(config.keepalive_interval));
    let idle = sleep_until(core.idle_deadline());
    let limits_every = limits_period(config);
    let limits = sleep_until(after(limits_every));
    tokio::pin!(ping, idle, limits);
    let mut ping_seq = 0u64;
    // What was staged at the last yield (0: none since the last write).
    let mut yielded_at = 0usize;

    let outcome: Result<CloseReason, Stop> = loop {
        // Stage what is ready without waiting, up to the gather limits.
        let mut item = writer.lookahead.take();
        if item.is_none() && !core.forced.is_set() {
            item = writer
                .stage_ready(timers(&ping, &idle, &limits))
                .map(Taken::Next);
        }
        if item.is_none() && writer.out.staged() > 0 {
            let staged = writer.out.staged();
            if staged != yielded_at && !writer.out.is_full() {
                // The queue ran dry: give a publisher in the middle of a burst a
                // turn of the scheduler before paying a system call for the write,
                // and another while each turn brings more, so a burst goes out in
                // few writes rather than one per event. The write goes out once a
                // turn brings nothing or the gather limits are reached.
                yielded_at = staged;
                tokio::task::yield_now().await;
                continue;
            }
            yielded_at = 0;
            if let Err(stop) = writer.flush().await {
                break Err(stop);
            }
            continue;
        }
        yielded_at = 0;
        let item = match item {
            Some(item) => item,
            // The timers come before the queue: a queue that never runs dry must
            // not starve the keepalive, the idle check or the limits.
            None => tokio::select! {
                biased;
                () = core.forced() => break Err(Stop::Forced),
                () = &mut idle => {
                    let deadline = core.idle_deadline();
                    if Instant::now() >= deadline {
                        core.outbound.close(CloseReason::IdleTimeout);
                        // Disarmed, so the queue's close is taken next (an elapsed
                        // timer would win this biased select again and again).
                        idle.as_mut().reset(after(config.idle_timeout));
                    } else {
                        idle.as_mut().reset(deadline);
                    }
                    continue;
                }
                () = &mut ping => {
                    ping_seq += 1;
                    writer.out.stage_ping(ping_seq);
                    if let Err(stop) = writer.flush().await {
                        break Err(stop);
                    }
                    bump(&core.io.pings_sent, 1);
                    ping.as_mut().reset(after(config.keepalive_interval));
                    continue;
                }
                () = &mut limits => {
                    let _ = core.outbound.check_limits();
                    limits.as_mut().reset(after(limits_every));
                    continue;
                }
                // The transport's own replies (pongs, the close reply).
                () = core::future::poll_fn(|cx| writer.out.poll_control(cx)) => {
                    if let Err(stop) = writer.flush().await {
                        break Err(stop);
                    }
                    continue;
                }
                item = core.outbound.next_taken() => item,
            },
        };
        match item {
            Taken::Entry(entry) => writer.stage(Staged::Entry(&entry)),
            Taken::Next(Next::Frame(frame)) => writer.stage(Staged::Frame(frame)),
            Taken::Next(Next::Resync) => match core.snapshots.as_ref().and_then(|s| s.snapshot()) {
                Some(snapshot) => {
                    // Mark the resync before the write: deltas queued from now on are
                    // newer than the snapshot and must not be skipped.
                    let frame = snapshot.encode();
                    core.outbound.resynced(frame.revision());
                    bump(&core.io.resyncs_sent, 1);
                    writer.stage(Staged::Frame(frame));
                }
                None => core
                    .outbound
                    .close(CloseReason::SlowConsumer(SlowConsumer::NoSnapshot)),
            },
            Taken::Next(Next::Closed(reason)) => break Ok(reason),
        }
    };

    let reason = match outcome {
        // A draining close comes once the queue is empty: what is staged goes out
        // before the close frame.
        Ok(reason) if reason.drains() => reason,
        Ok(reason) | Err(Stop::Close(reason)) => {
            writer.out.discard_staged();
            reason
        }
        Err(Stop::Forced) => {
            writer.out.discard_staged();
            core.final_reason()
        }
    };
    // Make a reason final for everyone (senders fail from now on); the first one
    // given to the queue stays its reason.
    core.outbound.close(reason.clone());
    let out = &mut *writer.out;
    match &reason {
        // The peer closed: the reply goes out (the transport wrote it when the
        // reader saw the close), then the stream ends.
        CloseReason::Remote { .. } => {
            out.discard_staged();
            let _ = timeout(config.close_timeout, reader_done.wait()).await;
            let flushed = core::future::poll_fn(|cx| out.poll_flush(cx));
            let _ = timeout(config.close_timeout, flushed).await;
        }
        // The socket is gone: nothing can be sent.
        CloseReason::Lost(_) => {}
        reason => {
            out.stage_close(reason);
            let flushed = core::future::poll_fn(|cx| out.poll_flush(cx));
            let sent = timeout(config.close_timeout, flushed).await;
            if matches!(sent, Ok(Ok(()))) {
                core.io.close_sent.store(true, Ordering::Relaxed);
                // The close handshake: the reader sees the peer's close frame, then
                // the end of the stream.
                let _ = timeout(config.close_timeout, reader_done.wait()).await;
            }
        }
    }
    reason
}

/// Most frames the writer takes from its queue under one lock; it goes on taking
/// until its transport's gather limits are reached. Frames taken are out of the
/// queue's reach (its byte limits do not count them, a discarding close drops them
/// from the writer instead).
const WRITE_BATCH: usize = 32;

struct Writer<'a, W> {
    core: &'a Core,
    out: &'a mut W,
    /// One queue item taken while a write was in progress, or while staging (a
    /// resync or the close).
    lookahead: Option<Taken>,
}

impl<W: WireOut> Writer<'_, W> {
    /// Stages what the queue has ready, until the transport's gather limits are
    /// reached; returns a resync or a close met on the way (after what was staged),
    /// and nothing once `timers` (the earliest timer deadline) has passed, so the
    /// caller goes to its `select`, where the timers run first. One clock read per
    /// call.
    fn stage_ready(&mut self, timers: Instant) -> Option<Next> {
        if Instant::now() >= timers {
            return None;
        }
        let core = self.core;
        while !self.out.is_full() {
            let room = self.out.gather_bytes().saturating_sub(self.out.staged());
            let out = &mut *self.out;
            let mut taken = 0usize;
            let next = core.outbound.try_stage(WRITE_BATCH, room, &mut |item| {
                sent(core, item.frame());
                out.stage(item);
                taken += 1;
            });
            if next.is_some() {
                return next;
            }
            if taken == 0 {
                break;
            }
        }
        None
    }

    fn stage(&mut self, item: Staged<'_>) {
        sent(self.core, item.frame());
        self.out.stage(item);
    }

    /// Writes out what is staged, under the write timeout.
    async fn flush(&mut self) -> Result<(), Stop> {
        let Self {
            core,
            out,
            lookahead,
        } = self;
        // Fast path: a write the socket takes at once needs no timer and no select
        // (which cost a clock read and a runtime lookup); only a write that has to
        // wait for the socket goes through `guarded`.
        match core::future::poll_fn(|cx| Poll::Ready(out.poll_flush(cx))).await {
            Poll::Ready(Ok(())) => Ok(()),
            Poll::Ready(Err(error)) => Err(Stop::Close(write_failed(&error))),
            Poll::Pending => {
                let write = core::future::poll_fn(|cx| out.poll_flush(cx));
                guarded(core, lookahead, write).await
            }
        }
    }
}

/// Counted when handed to the transport (before its bytes can reach the peer).
fn sent(core: &Core, frame: &Frame) {
    bump(&core.io.frames_out, 1);
    bump(&core.io.bytes_out, frame.len() as u64);
}

/// The earliest deadline of the writer's timers.
fn timers(
    ping: &tokio::time::Sleep,
    idle: &tokio::time::Sleep,
    limits: &tokio::time::Sleep,
) -> Instant {
    ping.deadline().min(idle.deadline()).min(limits.deadline())
}

/// Runs one write under the write timeout while watching the queue: a close that
/// discards the queue, or the end of a shutdown's drain, abandons the write.
async fn guarded<F, E>(core: &Core, lookahead: &mut Option<Taken>, write: F) -> Result<(), Stop>
where
    F: Future<Output = Result<(), E>>,
    E: WireError,
{
    let write = timeout(core.config.write_timeout, write);
    // While the write is blocked: the soft limit's timer, and a close that `next`
    // cannot report because an item is already held. (Never registered when the
    // write completes at once: the write is polled first.)
    let tick = limits_period(&core.config).min(Duration::from_millis(100));
    let check = tokio::time::sleep(tick);
    tokio::pin!(write, check);
    loop {
        tokio::select! {
            biased;
            result = &mut write => {
                return match result {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(error)) => Err(Stop::Close(write_failed(&error))),
                    Err(_) => Err(Stop::Close(CloseReason::Lost("write timed out".into()))),
                };
            }
            () = core.forced() => return Err(Stop::Forced),
            item = core.outbound.next_taken(), if lookahead.is_none() => match item {
                Taken::Next(Next::Closed(reason)) if !reason.drains() => {
                    return Err(Stop::Close(reason))
                }
                item => *lookahead = Some(item),
            },
            () = &mut check => {
                if let Err(reason) = core.outbound.check_limits() {
                    if !reason.drains() {
                        return Err(Stop::Close(reason));
                    }
                }
                check.as_mut().reset(after(tick));
            }
        }
    }
}

/// The reason for a failed write: the peer's close when the reader saw one first,
/// otherwise a lost connection.
fn write_failed<E: WireError>(error: &E) -> CloseReason {
    match error.close_reason() {
        CloseReason::Lost(why) => CloseReason::Lost(why),
        other => CloseReason::Lost(other.reason()),
    }
}
