//! `Pool`: hits and misses, recycling that keeps allocations, the capacity bound,
//! soft capacity that releases idle objects, metrics, a hot path that allocates
//! nothing, and a stress test in which no object is lent twice at once and every
//! object is dropped exactly once.

#[path = "support/counting_alloc.rs"]
mod counting_alloc;
#[path = "support/drop_ledger.rs"]
mod drop_ledger;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;

use counting_alloc::{allocations, Counting};
use drop_ledger::{Ledger, Tracked};
use membound::capacity::{CapacityError, SoftCapacity};
use membound::pool::{Pool, PoolConfig, PoolMetrics, Pooled, Recycle};
use membound::ConfigError;

#[global_allocator]
static GLOBAL: Counting = Counting;

/// A pooled object for the accounting tests: counts its recycles.
struct Obj {
    value: Tracked,
    recycled: u32,
}

impl Recycle for Obj {
    fn recycle(&mut self) {
        self.recycled += 1;
    }
}

fn tracked_pool(ledger: &Arc<Ledger>, config: PoolConfig) -> Pool<Obj, impl Fn() -> Obj> {
    let ledger = ledger.clone();
    Pool::with_config(config, move || Obj {
        value: ledger.issue(),
        recycled: 0,
    })
    .unwrap()
}

fn counts(m: PoolMetrics) -> [u64; 5] {
    [m.hits, m.misses, m.returns, m.discarded, m.size]
}

#[test]
fn a_miss_makes_an_object_and_a_hit_reuses_it() {
    let ledger = Ledger::new(8);
    let pool = tracked_pool(&ledger, PoolConfig::new(2));
    let first = pool.get();
    assert_eq!(first.value.id(), 0);
    assert_eq!(counts(pool.metrics()), [0, 1, 0, 0, 0]);
    drop(first);
    assert_eq!(counts(pool.metrics()), [0, 1, 1, 0, 1]);
    let again = pool.get();
    assert_eq!((again.value.id(), again.recycled), (0, 1));
    assert_eq!(counts(pool.metrics()), [1, 1, 1, 0, 0]);
    drop(again);
    assert_eq!(ledger.issued(), 1, "a hit makes nothing");
    drop(pool);
    ledger.assert_all_dropped();
}

#[test]
fn recycling_keeps_allocations() {
    let vecs: Pool<Vec<u64>> = Pool::new(1).unwrap();
    vecs.get().extend(0..1000);
    let v = vecs.get();
    assert!(v.is_empty() && v.capacity() >= 1000);
    drop(v);

    let strings: Pool<String> = Pool::new(1).unwrap();
    strings.get().push_str(&"x".repeat(300));
    let s = strings.get();
    assert!(s.is_empty() && s.capacity() >= 300);
    drop(s);

    let deques: Pool<VecDeque<u8>> = Pool::new(1).unwrap();
    deques.get().extend([1, 2, 3]);
    assert!(deques.get().is_empty());

    let boxed: Pool<Box<Vec<u8>>> = Pool::new(1).unwrap();
    boxed.get().extend_from_slice(&[7; 64]);
    let b = boxed.get();
    assert!(b.is_empty() && b.capacity() >= 64);
    drop(b);

    #[cfg(feature = "std")]
    {
        let maps: Pool<std::collections::HashMap<u32, u32>> = Pool::new(1).unwrap();
        maps.get().extend((0..100).map(|i| (i, i)));
        let m = maps.get();
        assert!(m.is_empty() && m.capacity() >= 100);
    }
}

/// Returning to a full pool drops one object (the one idle longest), so the pool
/// never holds more than its capacity.
#[test]
fn a_full_pool_drops_the_excess() {
    let ledger = Ledger::new(8);
    let pool = tracked_pool(&ledger, PoolConfig::new(2));
    let lent: Vec<_> = (0..3).map(|_| pool.get()).collect();
    assert_eq!(ledger.issued(), 3);
    drop(lent);
    assert_eq!(pool.len(), 2);
    assert_eq!(ledger.total_live(), 2);
    let m = pool.metrics();
    assert_eq!(counts(m), [0, 3, 3, 1, 2]);
    // The most recently returned objects are kept.
    let ids: Vec<usize> = (0..2)
        .map(|_| Pooled::detach(pool.get()).value.id())
        .collect();
    assert_eq!(ids, [1, 2]);
    ledger.assert_all_dropped();
}

#[test]
fn detached_objects_do_not_return() {
    let ledger = Ledger::new(4);
    let pool = tracked_pool(&ledger, PoolConfig::new(2));
    let kept = Pooled::detach(pool.get());
    assert!(pool.is_empty());
    assert_eq!(pool.metrics().returns, 0);
    assert_eq!(ledger.live(0), 1);
    pool.put(kept);
    assert_eq!(pool.len(), 1);
    assert_eq!(pool.get().recycled, 1, "put recycles");
    assert!(std::ptr::eq(Pooled::pool(&pool.get()), &pool));
}

#[test]
fn try_get_never_makes_an_object() {
    let made = AtomicU64::new(0);
    let pool = Pool::with_factory(2, || {
        made.fetch_add(1, Ordering::Relaxed);
        String::new()
    })
    .unwrap();
    assert!(pool.try_get().is_none());
    assert_eq!(made.load(Ordering::Relaxed), 0);
    assert_eq!(pool.metrics().misses, 0);
    drop(pool.get());
    assert!(pool.try_get().is_some());
    assert_eq!(made.load(Ordering::Relaxed), 1);
}

#[test]
fn fill_and_clear() {
    let ledger = Ledger::new(8);
    let pool = tracked_pool(&ledger, PoolConfig::new(3));
    assert_eq!(pool.fill(), 3);
    assert_eq!(pool.fill(), 0);
    let m = pool.metrics();
    assert_eq!((m.filled, m.returns, m.size, m.misses), (3, 0, 3, 0));
    assert_eq!(pool.clear(), 3);
    assert!(pool.is_empty());
    assert_eq!(ledger.total_live(), 0, "clear releases the idle objects");
    assert_eq!(pool.metrics().discarded, 3);
}

/// Lowering the soft capacity drops the idle objects beyond it at once; objects
/// lent out come back under the new capacity; raising it lets the pool refill.
#[test]
fn shrinking_releases_idle_objects() {
    let ledger = Ledger::new(16);
    let pool = tracked_pool(&ledger, PoolConfig::new(4).with_max_capacity(6));
    pool.fill();
    let lent = pool.get();
    pool.set_capacity(1).unwrap();
    assert_eq!(pool.len(), 1);
    assert_eq!(ledger.total_live(), 2, "two idle objects released");
    drop(lent);
    assert_eq!(pool.len(), 1, "the return stays within the new capacity");
    assert_eq!(ledger.total_live(), 1);
    let m = pool.metrics();
    assert_eq!((m.discarded, m.capacity, m.max_capacity), (3, 1, 6));

    // Through the trait, as the memory monitor sees it.
    let soft: &dyn SoftCapacity = &pool;
    assert_eq!(soft.set_capacity(0), Err(CapacityError::Zero));
    assert_eq!(
        soft.set_capacity(7),
        Err(CapacityError::AboveMax {
            requested: 7,
            max: 6
        })
    );
    soft.set_capacity(6).unwrap();
    assert_eq!((soft.capacity(), soft.max_capacity()), (6, 6));
    let lent: Vec<_> = (0..6).map(|_| pool.get()).collect();
    drop(lent);
    assert_eq!(pool.len(), 6);
    drop(pool);
    ledger.assert_all_dropped();
}

#[test]
fn configs_that_cannot_work_are_errors() {
    assert_eq!(
        Pool::<Vec<u8>>::new(0).unwrap_err(),
        ConfigError::ZeroCapacity
    );
    assert_eq!(
        PoolConfig::new(4).with_max_capacity(2).validate(),
        Err(ConfigError::MaxBelowCapacity {
            capacity: 4,
            max: 2
        })
    );
    assert!(Pool::with_config(PoolConfig::new(4).with_max_capacity(2), String::new).is_err());
    assert!(PoolConfig::new(usize::MAX).validate().is_err());
    assert_eq!(PoolConfig::default().validate(), Ok(()));
}

/// A hit and a return allocate nothing (DESIGN rule 3): many of them, for a `Vec`
/// that is written to and a `String`.
#[test]
fn hits_and_returns_allocate_nothing() {
    let buffers = Pool::with_factory(4, || Vec::<u8>::with_capacity(4096)).unwrap();
    let names: Pool<String> = Pool::new(2).unwrap();
    buffers.fill();
    names.get().push_str("warm up the capacity");
    let before = allocations();
    let mut checksum = 0u64;
    for i in 0..100_000u64 {
        let mut buf = buffers.get();
        buf.resize(4096, i as u8);
        checksum += u64::from(buf[i as usize % 4096]);
        let mut name = names.get();
        name.push_str("pooled");
        checksum += name.len() as u64;
        if i % 3 == 0 {
            let second = buffers.try_get();
            checksum += u64::from(second.is_some());
        }
    }
    let m = buffers.metrics();
    assert_eq!(allocations() - before, 0, "pool hits and returns allocated");
    assert_eq!(m.misses, 0);
    assert!(checksum > 0);
    // The counter itself works.
    let v = std::hint::black_box(vec![1u8; 16]);
    assert!(allocations() > before);
    drop(v);
}

/// Threads get and return objects while another churns the capacity: no object is
/// ever lent to two guards at once, the pool never holds more than its reservation,
/// the counters add up, and every object made is dropped exactly once.
#[test]
fn no_object_is_lent_twice_and_each_is_dropped_once() {
    const THREADS: usize = 4;
    const ROUNDS: usize = if cfg!(debug_assertions) {
        20_000
    } else {
        200_000
    };
    const MAX_OBJECTS: usize = THREADS * ROUNDS + 8;
    let ledger = Ledger::new(MAX_OBJECTS);
    let lent: Arc<Vec<AtomicBool>> =
        Arc::new((0..MAX_OBJECTS).map(|_| AtomicBool::new(false)).collect());
    let pool = Arc::new(tracked_pool(
        &ledger,
        PoolConfig::new(4).with_max_capacity(8),
    ));
    let start = Arc::new(Barrier::new(THREADS + 1));
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let (pool, lent, start) = (pool.clone(), lent.clone(), start.clone());
            thread::spawn(move || {
                start.wait();
                let mut held = Vec::new();
                for round in 0..ROUNDS {
                    let obj = pool.get();
                    let id = obj.value.id();
                    assert!(
                        !lent[id].swap(true, Ordering::AcqRel),
                        "object {id} lent twice"
                    );
                    held.push((obj, id));
                    // Hold one to three objects at a time, returning in varying order.
                    if held.len() > 1 + (round + t) % 3 {
                        let (obj, id) = held.swap_remove(round % held.len());
                        lent[id].store(false, Ordering::Release);
                        drop(obj);
                    }
                    if round % 97 == 0 {
                        assert!(pool.len() <= pool.max_capacity());
                    }
                }
                for (obj, id) in held {
                    lent[id].store(false, Ordering::Release);
                    drop(obj);
                }
            })
        })
        .collect();
    let churn = {
        let (pool, start, stop) = (pool.clone(), start.clone(), stop.clone());
        thread::spawn(move || {
            start.wait();
            let mut changes = 0u64;
            for cap in [1, 8, 3, 6, 2].iter().cycle() {
                if stop.load(Ordering::Acquire) {
                    break;
                }
                pool.set_capacity(*cap).unwrap();
                changes += 1;
                thread::yield_now();
            }
            changes
        })
    };
    for w in workers {
        w.join().unwrap();
    }
    stop.store(true, Ordering::Release);
    assert!(churn.join().unwrap() > 0);

    let m = pool.metrics();
    assert!(m.size <= m.capacity, "{m:?}");
    assert_eq!(m.hits + m.misses, (THREADS * ROUNDS) as u64, "{m:?}");
    assert_eq!(m.misses, ledger.issued() as u64);
    assert_eq!(
        m.returns,
        (THREADS * ROUNDS) as u64,
        "every guard came back"
    );
    assert_eq!(m.returns, m.hits + m.discarded + m.size, "{m:?}");
    assert_eq!(ledger.total_live(), m.size as i64);
    drop(pool);
    ledger.assert_all_dropped();
}

#[test]
fn pools_and_guards_are_send_and_sync() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Pool<Vec<u8>>>();
    send_sync::<Pooled<'static, Vec<u8>>>();
    let pool: Pool<Vec<u8>> = Pool::new(2).unwrap();
    let guard = pool.get();
    thread::scope(|s| {
        s.spawn(move || drop(guard));
    });
    assert_eq!(pool.len(), 1);
}
