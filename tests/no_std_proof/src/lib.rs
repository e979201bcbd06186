//! A `#![no_std]` program using membound with default features off.
//!
//! Without `alloc`: a `StaticRing` and a `StaticTtlTable` in `static`s, no allocator
//! at all.
//! With `alloc`: also a heap `Ring`, a `SnapshotVec` and a `Pool`, served by a tiny
//! bump allocator over a static arena (the stub global allocator an embedded program
//! would replace).
#![no_std]

use membound::ring::StaticRing;
use membound::OverflowPolicy;

static EVENTS: StaticRing<u32, 8> = StaticRing::with_policy(OverflowPolicy::DropOldest);

/// Pushes `value` and returns the oldest stored value (or `u32::MAX` if none).
#[no_mangle]
pub extern "C" fn membound_proof_static(value: u32) -> u32 {
    let _ = EVENTS.push(value);
    EVENTS.try_pop().unwrap_or(u32::MAX)
}

/// A tick source an embedded program would advance from a timer interrupt.
static NOW: core::sync::atomic::AtomicU32 = core::sync::atomic::AtomicU32::new(0);

struct Ticks;

impl membound::clock::Clock for Ticks {
    fn now(&self) -> u64 {
        u64::from(NOW.load(core::sync::atomic::Ordering::Acquire))
    }
    fn tick(&self) -> core::time::Duration {
        core::time::Duration::from_millis(1)
    }
}

static ROUTES: membound::table::StaticTtlTable<u32, u32, Ticks, 16> =
    membound::table::StaticTtlTable::new(
        Ticks,
        membound::table::SeededHashBuilder::with_seed(0x5eed),
        membound::table::NoHook,
        100,
    );

/// Stores `key -> value` in a static TTL table, advances time by `ticks`, sweeps, and
/// returns the value still visible for `key` (or `u32::MAX`).
#[no_mangle]
pub extern "C" fn membound_proof_table(key: u32, value: u32, ticks: u32) -> u32 {
    let _ = ROUTES.insert(key, value);
    let now = NOW.fetch_add(ticks, core::sync::atomic::Ordering::AcqRel) + ticks;
    ROUTES.sweep(u64::from(now), 4);
    ROUTES.get(&key).unwrap_or(u32::MAX)
}

#[cfg(feature = "alloc")]
mod heap {
    extern crate alloc;

    use core::alloc::{GlobalAlloc, Layout};
    use core::cell::UnsafeCell;
    use core::sync::atomic::{AtomicUsize, Ordering};

    use membound::ring::Ring;

    const ARENA: usize = 64 * 1024;

    struct Bump {
        arena: UnsafeCell<[u8; ARENA]>,
        next: AtomicUsize,
    }

    // SAFETY: the arena is only handed out in disjoint pieces reserved by `next`.
    unsafe impl Sync for Bump {}

    // SAFETY: each allocation is a distinct, suitably aligned range of the arena;
    // memory is never reused, so no two live allocations overlap.
    unsafe impl GlobalAlloc for Bump {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            let base = self.arena.get() as usize;
            let mut offset = self.next.load(Ordering::Relaxed);
            loop {
                let start = (base + offset).next_multiple_of(layout.align()) - base;
                let end = start + layout.size();
                if end > ARENA {
                    return core::ptr::null_mut();
                }
                match self.next.compare_exchange_weak(
                    offset,
                    end,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => return (base + start) as *mut u8,
                    Err(now) => offset = now,
                }
            }
        }

        unsafe fn dealloc(&self, _ptr: *mut u8, _layout: Layout) {}
    }

    #[global_allocator]
    static ALLOCATOR: Bump = Bump {
        arena: UnsafeCell::new([0; ARENA]),
        next: AtomicUsize::new(0),
    };

    /// Builds a heap ring of `capacity`, pushes `0..n` and returns the sum popped,
    /// or `u64::MAX` if the capacity was refused.
    #[no_mangle]
    pub extern "C" fn membound_proof_heap(capacity: usize, n: u32) -> u64 {
        let Ok(ring) = Ring::new(capacity) else {
            return u64::MAX;
        };
        for i in 0..n {
            let _ = ring.push(u64::from(i));
        }
        ring.drain().sum()
    }

    /// A snapshot vector and an object pool without `std` (the spin-locked swap):
    /// pushes `0..n`, keeps the odd values, and returns their sum plus the pool's
    /// hits after `n` get/return rounds, or `u64::MAX` if the pool was refused.
    #[no_mangle]
    pub extern "C" fn membound_proof_slice_pool(n: u32) -> u64 {
        let values = membound::slice::SnapshotVec::new();
        for i in 0..n {
            values.push(u64::from(i));
        }
        values.retain(|x| x % 2 == 1);
        let sum: u64 = values.load().iter().sum();
        let Ok(pool) = membound::pool::Pool::<alloc::vec::Vec<u8>>::new(2) else {
            return u64::MAX;
        };
        for i in 0..n {
            pool.get().push(i as u8);
        }
        sum + pool.metrics().hits
    }
}

#[panic_handler]
fn panic(_info: &core::panic::PanicInfo<'_>) -> ! {
    loop {
        core::hint::spin_loop();
    }
}
