use std::sync::{Arc, Mutex};

use super::{Ledger, UsageRecord};

/// Keeps records in memory: for tests and single-process demos. It holds the most
/// recent `capacity` records and counts those it let go ([`evicted`](MemoryLedger::evicted)),
/// so memory stays bounded and nothing disappears unnoticed.
#[derive(Debug, Clone)]
pub struct MemoryLedger {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Debug)]
struct Inner {
    records: std::collections::VecDeque<UsageRecord>,
    capacity: usize,
    evicted: u64,
}

impl MemoryLedger {
    /// A ledger holding up to 100,000 records.
    pub fn new() -> Self {
        Self::with_capacity(100_000)
    }

    /// A ledger holding up to `capacity` records.
    pub fn with_capacity(capacity: usize) -> Self {
        MemoryLedger {
            inner: Arc::new(Mutex::new(Inner {
                records: Default::default(),
                capacity: capacity.max(1),
                evicted: 0,
            })),
        }
    }

    /// The records held, oldest first.
    pub fn records(&self) -> Vec<UsageRecord> {
        self.lock().records.iter().cloned().collect()
    }

    /// Records let go to stay within the capacity.
    pub fn evicted(&self) -> u64 {
        self.lock().evicted
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Default for MemoryLedger {
    fn default() -> Self {
        Self::new()
    }
}

impl Ledger for MemoryLedger {
    fn record(&self, record: UsageRecord) {
        let mut inner = self.lock();
        if inner.records.len() == inner.capacity {
            inner.records.pop_front();
            inner.evicted += 1;
        }
        inner.records.push_back(record);
    }
}
