//! The reference model of a TTL table, shared by the proptest (`tests/table_model.rs`)
//! and the fuzz target (`fuzz/fuzz_targets/table_ops.rs`): a `HashMap` of key ->
//! (value, expiry tick) holding what the table stores (expired entries included until
//! something removes them), plus the eviction hook's log.
//!
//! Deterministic operations must give exactly the model's answer and hook events.
//! Where the table may choose (which entry an eviction or a partial sweep takes), every
//! hook event is checked against the model (the key was stored, the value and the
//! cause are right) and then applied to it, so the two never drift apart.
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use membound::capacity::SoftCapacity;
use membound::clock::{Clock, ManualClock};
use membound::table::{EvictionCause, InsertError, SeededHashBuilder, TableConfig, TtlTable};
use membound::OverflowPolicy;

/// One operation. TTLs and advances are in ticks (1 ms each).
#[derive(Clone, Debug)]
pub enum Op {
    Insert(u8, u32),
    InsertTtl(u8, u32, u8),
    Get(u8),
    GetWith(u8),
    Contains(u8),
    Remove(u8),
    Touch(u8),
    Advance(u8),
    Sweep(u16),
    SweepAll,
    SetCapacity(u8),
}

type Events = Arc<Mutex<Vec<(u8, u32, EvictionCause)>>>;
type Hook = Box<dyn Fn(&u8, &u32, EvictionCause) + Send + Sync>;
pub type Table = TtlTable<u8, u32, Arc<ManualClock>, SeededHashBuilder, Hook>;

pub const DEFAULT_TTL: u64 = 20;

pub struct Harness {
    pub table: Table,
    clock: Arc<ManualClock>,
    events: Events,
    policy: OverflowPolicy,
    /// key -> (value, expiry tick)
    stored: HashMap<u8, (u32, u64)>,
    cap: usize,
    max: usize,
    counts: [u64; 4],
}

fn cause_index(cause: EvictionCause) -> usize {
    match cause {
        EvictionCause::Expired => 0,
        EvictionCause::Removed => 1,
        EvictionCause::Replaced => 2,
        EvictionCause::Evicted => 3,
        _ => unreachable!("unknown cause"),
    }
}

impl Harness {
    pub fn new(capacity: usize, policy: OverflowPolicy, seed: u64) -> Self {
        let clock = Arc::new(ManualClock::default());
        let events: Events = Arc::default();
        let log = events.clone();
        let hook: Hook = Box::new(move |k, v, cause| log.lock().unwrap().push((*k, *v, cause)));
        let config = TableConfig::new(capacity, Duration::from_millis(DEFAULT_TTL))
            .with_policy(policy)
            .with_amortized_sweep(0);
        let table = TtlTable::with_parts(
            config,
            clock.clone(),
            SeededHashBuilder::with_seed(seed),
            hook,
        )
        .unwrap();
        Self {
            table,
            clock,
            events,
            policy,
            stored: HashMap::new(),
            cap: capacity,
            max: capacity,
            counts: [0; 4],
        }
    }

    fn now(&self) -> u64 {
        self.clock.now()
    }

    fn live(&self, key: u8) -> Option<u32> {
        let now = self.now();
        self.stored
            .get(&key)
            .filter(|(_, exp)| *exp > now)
            .map(|(v, _)| *v)
    }

    fn take_events(&self) -> Vec<(u8, u32, EvictionCause)> {
        std::mem::take(&mut *self.events.lock().unwrap())
    }

    /// Checks an event the table was free to choose, and applies it to the model.
    fn apply_free_event(&mut self, (key, value, cause): (u8, u32, EvictionCause)) {
        let now = self.now();
        let (v, exp) = self
            .stored
            .remove(&key)
            .unwrap_or_else(|| panic!("event for key {key} that is not stored"));
        assert_eq!(v, value, "event value of key {key}");
        let expected = if exp <= now {
            EvictionCause::Expired
        } else {
            EvictionCause::Evicted
        };
        assert_eq!(
            cause, expected,
            "cause for key {key} (expires {exp}, now {now})"
        );
        self.counts[cause_index(cause)] += 1;
    }

    fn expect_events(&mut self, expected: &[(u8, u32, EvictionCause)]) {
        let events = self.take_events();
        assert_eq!(events, expected);
        for (_, _, cause) in expected {
            self.counts[cause_index(*cause)] += 1;
        }
    }

    fn insert(&mut self, key: u8, value: u32, ttl: Option<u64>) {
        let now = self.now();
        let result = match ttl {
            None => self.table.insert(key, value),
            Some(t) => self
                .table
                .insert_with_ttl(key, value, Duration::from_millis(t)),
        };
        let expires = now + ttl.unwrap_or(DEFAULT_TTL);
        let mut events = self.take_events().into_iter().peekable();
        if let Some(&(old, exp)) = self.stored.get(&key) {
            if exp > now {
                assert_eq!(result.as_ref().ok(), Some(&Some(old)), "replace {key}");
                assert_eq!(events.next(), Some((key, old, EvictionCause::Replaced)));
                assert_eq!(events.next(), None);
                self.counts[cause_index(EvictionCause::Replaced)] += 1;
                self.stored.insert(key, (value, expires));
                return;
            }
            assert_eq!(events.next(), Some((key, old, EvictionCause::Expired)));
            self.counts[0] += 1;
            self.stored.remove(&key);
        }
        let mut evictions = 0;
        for event in events {
            if self.policy == OverflowPolicy::Reject {
                assert_eq!(
                    event.2,
                    EvictionCause::Expired,
                    "Reject evicted a live entry"
                );
            }
            assert!(self.stored.len() >= self.cap, "evicted below capacity");
            assert_ne!(event.0, key);
            self.apply_free_event(event);
            evictions += 1;
        }
        if self.stored.len() < self.cap {
            assert!(matches!(result, Ok(None)), "insert {key}: {result:?}");
            self.stored.insert(key, (value, expires));
        } else {
            match result {
                Err(InsertError::Full { key: k, value: v }) => assert_eq!((k, v), (key, value)),
                other => panic!("insert {key} into a full table: {other:?}"),
            }
            if self.policy == OverflowPolicy::DropOldest {
                assert_eq!(evictions, 4, "gave up early");
            } else {
                // Model tables are small (one segment of < 256 slots): a rejected
                // insert has removed every expired entry, or made 4 attempts.
                assert!(
                    evictions == 4 || self.stored.values().all(|(_, exp)| *exp > now),
                    "rejected while an expired entry could make room"
                );
            }
        }
    }

    pub fn apply(&mut self, op: &Op) {
        match *op {
            Op::Insert(k, v) => self.insert(k, v, None),
            Op::InsertTtl(k, v, t) => self.insert(k, v, Some(u64::from(t))),
            Op::Get(k) => {
                assert_eq!(self.table.get(&k), self.live(k), "get {k}");
                self.expect_events(&[]);
            }
            Op::GetWith(k) => {
                assert_eq!(
                    self.table.get_with(&k, |v| u64::from(*v) + 1),
                    self.live(k).map(|v| u64::from(v) + 1)
                );
            }
            Op::Contains(k) => assert_eq!(self.table.contains(&k), self.live(k).is_some()),
            Op::Remove(k) => {
                let now = self.now();
                let got = self.table.remove(&k);
                match self.stored.remove(&k) {
                    Some((v, exp)) if exp > now => {
                        assert_eq!(got, Some(v));
                        self.expect_events(&[(k, v, EvictionCause::Removed)]);
                    }
                    Some((v, _)) => {
                        assert_eq!(got, None);
                        self.expect_events(&[(k, v, EvictionCause::Expired)]);
                    }
                    None => {
                        assert_eq!(got, None);
                        self.expect_events(&[]);
                    }
                }
            }
            Op::Touch(k) => {
                let live = self.live(k).is_some();
                assert_eq!(self.table.touch(&k), live, "touch {k}");
                if live {
                    let now = self.now();
                    self.stored.get_mut(&k).unwrap().1 = now + DEFAULT_TTL;
                }
            }
            Op::Advance(t) => {
                self.clock.advance(u64::from(t));
            }
            Op::Sweep(budget) => {
                let stats = self.table.sweep(self.now(), usize::from(budget));
                let events = self.take_events();
                assert_eq!(stats.removed, events.len());
                assert!(stats.scanned <= usize::from(budget));
                for e in events {
                    self.apply_free_event(e);
                }
            }
            Op::SweepAll => {
                let stats = self.table.sweep(self.now(), usize::MAX);
                let events = self.take_events();
                assert_eq!(stats.removed, events.len());
                for e in events {
                    self.apply_free_event(e);
                }
                let now = self.now();
                assert!(
                    self.stored.values().all(|(_, exp)| *exp > now),
                    "a full sweep left an expired entry"
                );
                assert!(self.stored.len() <= self.cap);
            }
            Op::SetCapacity(c) => {
                let c = usize::from(c) % self.max + 1;
                self.table.set_capacity(c).unwrap();
                self.cap = c;
                let events = self.take_events();
                assert!(events.len() <= 32);
                let full_step = events.len() == 32;
                for e in events {
                    self.apply_free_event(e);
                }
                assert!(full_step || self.stored.len() <= c);
                assert_eq!(self.table.capacity(), c);
            }
        }
        assert_eq!(self.table.len(), self.stored.len(), "len after {op:?}");
        let m = self.table.metrics();
        assert_eq!(
            [m.expired, m.removed, m.replaced, m.evicted],
            self.counts,
            "cause counters after {op:?}"
        );
    }
}
