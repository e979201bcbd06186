//! Driving a connection: the reader, the writer and the dispatcher in one task,
//! and the close handshake.

use core::future::Future;
use core::pin::Pin;
use core::task::Poll;
use core::time::Duration;
use std::collections::VecDeque;
use std::prelude::rust_2021::*;
// `tokio::select!` expands to `panic!`, which the prelude glob and the crate's
// `no_std` prelude both provide; an explicit import settles which.
#[allow(unused_imports)]
use core::panic;
use std::sync::Arc;

use futures_util::{Sink, SinkExt, StreamExt};
use tokio::time::{sleep_until, timeout, timeout_at, Instant};

use super::shared::{Core, Flag};
use super::transport::{Incoming, Transport, WireError, WireMessage};
use crate::adapters::ending::bump;
use crate::adapters::ws::config::{ConnectionConfig, MalformedPolicy};
use crate::adapters::ws::event::{Event, EventType, Frame};
use crate::adapters::ws::outbound::Next;
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
    let (sink, stream) = socket.split();
    let reader_done = Flag::default();
    let mut reader = ReaderState {
        stream,
        read_error: false,
    };
    let mut sink = sink;
    let io = async {
        let reading = read_loop(&core, &mut reader, &reader_done);
        let writing = write_loop(&core, &mut sink, &reader_done);
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
        if let Ok(socket) = reader.stream.reunite(sink) {
            let deadline = after(core.config.close_timeout);
            linger = Some(Box::pin(socket.linger(deadline)) as Pin<Box<_>>);
        }
    }
    Ended { reason, linger }
}

/// Refuses a connection whose handshake is done: sends a close frame for `reason`
/// and waits (within `close_timeout`) for the peer's reply and the end of the stream.
pub(crate) async fn refuse<T: Transport>(
    mut socket: T,
    reason: &CloseReason,
    close_timeout: Duration,
) {
    let deadline = after(close_timeout);
    let close = T::Msg::close(reason.code(), reason.reason());
    if let Ok(Ok(())) = timeout_at(deadline, socket.send(close)).await {
        let _ = timeout_at(deadline, async {
            while let Some(Ok(_)) = socket.next().await {}
        })
        .await;
    }
}

struct ReaderState<T: Transport> {
    stream: futures_util::stream::SplitStream<T>,
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
                match Event::parse(text) {
                    Ok(event) => {
                        // A closed inbound side (the connection is ending) drops it.
                        let _ = core.inbound.push_sized(event, len).await;
                    }
                    Err(error) => not_an_event(core, message, error.to_string()).await,
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

async fn write_loop<K, M>(core: &Core, sink: &mut K, reader_done: &Flag) -> CloseReason
where
    K: Sink<M> + Unpin,
    K::Error: WireError,
    M: WireMessage,
{
    let config = &core.config;
    let mut writer = Writer {
        core,
        sink,
        lookahead: None,
        batch: VecDeque::new(),
        unflushed: 0,
        max_part: max_part(config),
        _msg: core::marker::PhantomData,
    };
    // The timers live across iterations, so a busy connection does not register
    // three timers per event.
    let ping = sleep_until(after(config.keepalive_interval));
    let idle = sleep_until(core.idle_deadline());
    let limits_every = limits_period(config);
    let limits = sleep_until(after(limits_every));
    tokio::pin!(ping, idle, limits);
    let mut ping_seq = 0u64;

    let outcome: Result<CloseReason, Stop> = loop {
        let mut item = writer.take_buffered();
        if item.is_none() && !core.forced.is_set() && writer.ready(timers(&ping, &idle, &limits)) {
            item = writer.take_buffered();
        }
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
                    let sent = match writer.write(M::ping(ping_seq), 0).await {
                        Ok(()) => writer.flush().await,
                        Err(stop) => Err(stop),
                    };
                    if let Err(stop) = sent {
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
                item = core.outbound.next() => item,
            },
        };
        let written = match item {
            Next::Frame(frame) => writer.write_frame(&frame).await,
            Next::Resync => match core.snapshots.as_ref().and_then(|s| s.snapshot()) {
                Some(snapshot) => {
                    // Mark the resync before the write: deltas queued from now on are
                    // newer than the snapshot and must not be skipped.
                    let frame = snapshot.encode();
                    core.outbound.resynced(frame.revision());
                    bump(&core.io.resyncs_sent, 1);
                    writer.write_frame(&frame).await
                }
                None => {
                    core.outbound
                        .close(CloseReason::SlowConsumer(SlowConsumer::NoSnapshot));
                    Ok(())
                }
            },
            Next::Closed(reason) => break Ok(reason),
        };
        if let Err(stop) = written {
            break Err(stop);
        }
        // Batch: keep feeding while more is ready and the buffer is small; flush when
        // the queue runs dry.
        if writer.unflushed > 0 {
            if writer.unflushed < config.write_buffer_bytes && writer.lookahead.is_none() {
                if writer.ready(timers(&ping, &idle, &limits)) {
                    continue;
                }
                // The queue ran dry: give a publisher in the middle of a burst one
                // turn of the scheduler before paying a system call for the flush,
                // so a burst goes out in few writes rather than one per event.
                tokio::task::yield_now().await;
                if writer.ready(timers(&ping, &idle, &limits)) {
                    continue;
                }
            }
            if let Err(stop) = writer.flush().await {
                break Err(stop);
            }
        }
    };

    let reason = match outcome {
        Ok(reason) | Err(Stop::Close(reason)) => reason,
        Err(Stop::Forced) => core.final_reason(),
    };
    // Make a reason final for everyone (senders fail from now on); the first one
    // given to the queue stays its reason.
    core.outbound.close(reason.clone());
    match &reason {
        // The peer closed (tungstenite replies by itself): let the reader see the
        // reply go out and the stream end.
        CloseReason::Remote { .. } => {
            let _ = timeout(config.close_timeout, reader_done.wait()).await;
        }
        // The socket is gone: nothing can be sent.
        CloseReason::Lost(_) => {}
        reason => {
            let close = M::close(reason.code(), reason.reason());
            let sent = timeout(config.close_timeout, writer.sink.send(close)).await;
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

/// The largest payload of one written frame: what fits in tungstenite's capped write
/// buffer next to a pending control frame (a pong or close reply, at most 131
/// bytes) and the frame's own header.
fn max_part(config: &ConnectionConfig) -> usize {
    let cap = config.max_write_buffer_bytes;
    cap.saturating_sub(256).max(cap / 2).max(1)
}

/// Most frames the writer takes from its queue at once; it also stops once it holds
/// `write_buffer_bytes` of text. Small, because frames taken are out of the queue's
/// reach (its byte limits do not count them, a discarding close does not remove
/// them): the writer holds at most about one write buffer more than tungstenite.
const WRITE_BATCH: usize = 32;

struct Writer<'a, K, M> {
    core: &'a Core,
    sink: &'a mut K,
    /// One queue item taken while a write was in progress, or by batching.
    lookahead: Option<Next>,
    /// Frames taken from the queue in one batch and not yet written (at most
    /// [`WRITE_BATCH`]): one lock per batch instead of one per frame, so the
    /// publisher and the writer contend less on the queue.
    batch: VecDeque<Frame>,
    /// Bytes fed to the sink since the last flush.
    unflushed: usize,
    max_part: usize,
    _msg: core::marker::PhantomData<fn(M)>,
}

impl<K, M> Writer<'_, K, M>
where
    K: Sink<M> + Unpin,
    K::Error: WireError,
    M: WireMessage,
{
    /// The next item already taken from the queue. The batch comes first: the
    /// lookahead, when `guarded` took it during a write, is newer than every frame
    /// of the batch (and a draining close in it must come after them).
    fn take_buffered(&mut self) -> Option<Next> {
        self.batch
            .pop_front()
            .map(Next::Frame)
            .or_else(|| self.lookahead.take())
    }

    /// Whether an item is ready without waiting: one already taken, else a new
    /// batch from the queue (a resync or a close goes to the lookahead), unless
    /// `timers` (the earliest timer deadline) has passed: then the caller goes to
    /// its `select`, where the timers run first. One clock read per batch.
    fn ready(&mut self, timers: Instant) -> bool {
        if !self.batch.is_empty() || self.lookahead.is_some() {
            return true;
        }
        if Instant::now() >= timers {
            return false;
        }
        match self.core.outbound.try_next_batch(
            &mut self.batch,
            WRITE_BATCH,
            self.core.config.write_buffer_bytes,
        ) {
            Some(next) => {
                self.lookahead = Some(next);
                true
            }
            None => !self.batch.is_empty(),
        }
    }

    async fn write_frame(&mut self, frame: &Frame) -> Result<(), Stop> {
        // tungstenite refuses a frame that would take its buffer past the cap: flush
        // what is batched first when the two together might not fit.
        if self.unflushed > 0 && self.unflushed + frame.len() > self.max_part {
            self.flush().await?;
        }
        // Counted when handed to the socket (before its bytes can reach the peer).
        self.sent(frame);
        if frame.len() > self.max_part {
            if let Some(parts) = M::fragments(frame, self.max_part) {
                for part in parts {
                    self.write(part, 0).await?;
                    self.flush().await?;
                }
                return Ok(());
            }
        }
        self.write(M::text(frame), frame.len()).await
    }

    fn sent(&self, frame: &Frame) {
        bump(&self.core.io.frames_out, 1);
        bump(&self.core.io.bytes_out, frame.len() as u64);
    }

    /// Feeds one message (without flushing), under the write timeout.
    async fn write(&mut self, message: M, len: usize) -> Result<(), Stop> {
        let Self {
            core,
            sink,
            lookahead,
            ..
        } = self;
        // Fast path: while tungstenite's buffer has room, `poll_ready` is ready at
        // once and `start_send` only appends to the buffer. Feeding then needs no
        // timer and no select (which cost a clock read and a runtime lookup per
        // event); only a feed that has to wait for the socket goes through `guarded`.
        let ready = std::future::poll_fn(|cx| Poll::Ready(sink.poll_ready_unpin(cx))).await;
        match ready {
            Poll::Ready(Ok(())) => {
                if let Err(error) = sink.start_send_unpin(message) {
                    return Err(Stop::Close(write_failed(&error)));
                }
            }
            Poll::Ready(Err(error)) => return Err(Stop::Close(write_failed(&error))),
            Poll::Pending => guarded(core, lookahead, sink.feed(message)).await?,
        }
        self.unflushed += len.max(1);
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), Stop> {
        let Self {
            core,
            sink,
            lookahead,
            ..
        } = self;
        // As in `write`: a flush the socket takes at once needs no timer.
        match std::future::poll_fn(|cx| Poll::Ready(sink.poll_flush_unpin(cx))).await {
            Poll::Ready(Ok(())) => {}
            Poll::Ready(Err(error)) => return Err(Stop::Close(write_failed(&error))),
            Poll::Pending => guarded(core, lookahead, sink.flush()).await?,
        }
        self.unflushed = 0;
        Ok(())
    }
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
async fn guarded<F, E>(core: &Core, lookahead: &mut Option<Next>, write: F) -> Result<(), Stop>
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
            item = core.outbound.next(), if lookahead.is_none() => match item {
                Next::Closed(reason) if !reason.drains() => return Err(Stop::Close(reason)),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_largest_part_fits_the_write_buffer_cap() {
        let mut config = ConnectionConfig::default();
        for cap in [2, 100, 300, 4096, 64 << 10] {
            config.max_write_buffer_bytes = cap;
            let part = max_part(&config);
            assert!(part >= 1 && part <= cap, "cap {cap}: {part}");
            if cap > 512 {
                assert!(part + 256 <= cap, "room for a header and a control frame");
            }
        }
    }
}
