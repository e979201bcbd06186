//! After construction, a million ring operations allocate nothing (DESIGN rule 3).
//!
//! The counting global allocator of `tests/support/counting_alloc.rs` counts the test
//! thread's allocations only.

#[path = "support/counting_alloc.rs"]
mod counting_alloc;

use counting_alloc::{allocations, Counting};
#[cfg(feature = "std")]
use membound::policy::Wait;
use membound::ring::{Ring, RingConfig};
use membound::OverflowPolicy;

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn a_million_operations_allocate_nothing() {
    let ring =
        Ring::with_config(RingConfig::new(100).with_policy(OverflowPolicy::DropOldest)).unwrap();
    let before = allocations();
    let mut checksum = 0u64;
    for i in 0..1_000_000u64 {
        match i % 5 {
            0 => checksum += ring.try_push(i).is_ok() as u64,
            1 => checksum += ring.force_push(i).unwrap().unwrap_or(0),
            2 => checksum += ring.push(i).is_ok() as u64,
            3 => checksum += ring.try_pop().unwrap_or(0),
            _ => checksum += ring.pop_batch(2).sum::<u64>() + ring.metrics().len,
        }
    }
    assert_eq!(allocations() - before, 0, "ring operations allocated");

    #[cfg(feature = "std")]
    {
        checksum += waits_allocate_nothing();
    }
    checksum += spsc_batches_allocate_nothing();
    checksum += growth_allocates_nothing();
    let after = allocations();
    assert!(checksum > 0);
    // The counter itself works: a Vec allocation is seen.
    let v = std::hint::black_box(vec![1u8; 16]);
    assert!(allocations() > after);
    drop(v);
}

/// Waiting operations that find what they wait for, and async registrations (a
/// pending future links itself into the ring, with a no-op waker here), allocate
/// nothing. Returns a checksum.
#[cfg(feature = "std")]
fn waits_allocate_nothing() -> u64 {
    use std::future::Future;
    use std::pin::pin;
    use std::task::{Context, Poll, Waker};
    use std::time::Duration;

    use membound::ring::Spin;

    let mut checksum = 0;
    let blocking =
        Ring::with_config(RingConfig::new(8).with_policy(OverflowPolicy::Block)).unwrap();
    struct NoopWake;
    impl std::task::Wake for NoopWake {
        fn wake(self: std::sync::Arc<Self>) {}
    }
    // Built before counting starts; clones of it only bump a reference count.
    let waker = Waker::from(std::sync::Arc::new(NoopWake));
    let mut cx = Context::from_waker(&waker);
    let timeout = Duration::from_secs(60);
    let before_waits = allocations();
    for i in 0..100_000u64 {
        match i % 8 {
            0 => blocking.push_wait(i, Wait::Forever).unwrap(),
            1 => checksum += blocking.pop_wait(Wait::Forever).unwrap(),
            2 => blocking.push_wait(i, Wait::Timeout(timeout)).unwrap(),
            3 => checksum += blocking.pop_wait(Wait::Timeout(timeout)).unwrap(),
            4 => blocking.push_wait_with(i, &mut Spin::new()).unwrap(),
            5 => checksum += blocking.pop_wait_with(&mut || {}).unwrap(),
            6 => {
                let mut push = pin!(blocking.push_async(i));
                assert_eq!(push.as_mut().poll(&mut cx), Poll::Ready(Ok(())));
                let mut pop = pin!(blocking.pop_async());
                assert_eq!(pop.as_mut().poll(&mut cx), Poll::Ready(Ok(i)));
            }
            _ => {
                // Registers, then is woken by the push and completes.
                let mut pop = pin!(blocking.pop_async());
                assert!(pop.as_mut().poll(&mut cx).is_pending());
                blocking.push(i).unwrap();
                assert_eq!(pop.as_mut().poll(&mut cx), Poll::Ready(Ok(i)));
            }
        }
    }
    assert_eq!(
        allocations() - before_waits,
        0,
        "waiting operations allocated"
    );
    checksum
}

/// The SPSC channel after construction: single items, batches, slices, chunks and
/// drop-oldest evictions allocate nothing. Returns a checksum.
fn spsc_batches_allocate_nothing() -> u64 {
    use membound::ring::spsc;

    let (mut tx, mut rx) = spsc::channel_with_policy(16, OverflowPolicy::DropOldest).unwrap();
    let mut buf = [0u64; 8];
    let before = allocations();
    let mut checksum = 0;
    for i in 0..100_000u64 {
        match i % 6 {
            0 => tx.push(i).unwrap(),
            1 => checksum += tx.push_iter(&mut (i..i + 5)) as u64,
            2 => checksum += tx.push_slice(&[i; 4]) as u64,
            3 => {
                checksum +=
                    tx.write_chunk_uninit(tx.slots().min(3))
                        .map_or(0, |chunk| chunk.fill_from_iter(i..)) as u64;
            }
            4 => checksum += rx.pop_batch(5).sum::<u64>() + rx.try_pop().unwrap_or(0),
            _ => {
                checksum += rx.pop_slice(&mut buf) as u64;
                if let Ok(chunk) = rx.read_chunk(rx.len().min(2)) {
                    checksum += chunk.as_slices().0.iter().sum::<u64>();
                    chunk.commit_all();
                }
            }
        }
    }
    assert_eq!(allocations() - before, 0, "SPSC operations allocated");
    checksum
}

/// A `Grow` ring growing to its maximum, falling back, shrunk and restored by
/// `set_capacity`: nothing allocates after construction. Returns a checksum.
fn growth_allocates_nothing() -> u64 {
    let ring = Ring::with_config(
        RingConfig::new(2)
            .with_policy(OverflowPolicy::DropOldest)
            .with_growth(64),
    )
    .unwrap();
    let before = allocations();
    let mut checksum = 0;
    for i in 0..100_000u64 {
        ring.push(i).unwrap();
        if i % 97 == 0 {
            ring.set_capacity(4).unwrap();
            checksum += ring.drain().sum::<u64>();
            ring.set_capacity(64).unwrap();
        }
    }
    assert_eq!(allocations() - before, 0, "growth allocated");
    assert!(ring.metrics().grows > 0);
    checksum
}
