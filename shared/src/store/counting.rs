//! A store decorator that counts calls: benchmarks and tests use it to
//! measure store traffic (Secrets Manager bills and throttles per call).

use super::{Listed, SecretStore, StoreError, StoreResult, Stored, Version};
use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

#[derive(Debug, Default)]
struct Counts {
    gets: AtomicU64,
    puts: AtomicU64,
    deletes: AtomicU64,
    lists: AtomicU64,
    conflicts: AtomicU64,
}

/// Calls made through a [`CountingStore`] so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreCalls {
    pub gets: u64,
    pub puts: u64,
    pub deletes: u64,
    pub lists: u64,
    /// Puts refused because someone else wrote first (compare-and-swap lost).
    pub conflicts: u64,
}

impl StoreCalls {
    pub fn total(&self) -> u64 {
        self.gets + self.puts + self.deletes + self.lists
    }
}

pub struct CountingStore {
    inner: Arc<dyn SecretStore>,
    counts: Counts,
    gets_by_name: Mutex<HashMap<String, u64>>,
}

impl CountingStore {
    pub fn new(inner: Arc<dyn SecretStore>) -> Self {
        Self {
            inner,
            counts: Counts::default(),
            gets_by_name: Mutex::new(HashMap::new()),
        }
    }

    /// How many times `name` was read so far.
    pub fn gets_of(&self, name: &str) -> u64 {
        let gets = self
            .gets_by_name
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        gets.get(name).copied().unwrap_or(0)
    }

    pub fn calls(&self) -> StoreCalls {
        StoreCalls {
            gets: self.counts.gets.load(Ordering::Relaxed),
            puts: self.counts.puts.load(Ordering::Relaxed),
            deletes: self.counts.deletes.load(Ordering::Relaxed),
            lists: self.counts.lists.load(Ordering::Relaxed),
            conflicts: self.counts.conflicts.load(Ordering::Relaxed),
        }
    }
}

#[async_trait]
impl SecretStore for CountingStore {
    fn losing_write_makes_version(&self) -> bool {
        self.inner.losing_write_makes_version()
    }

    async fn get(&self, name: &str) -> Result<Option<Stored>, StoreError> {
        self.counts.gets.fetch_add(1, Ordering::Relaxed);
        *self
            .gets_by_name
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(name.to_owned())
            .or_default() += 1;
        self.inner.get(name).await
    }

    async fn put(&self, name: &str, value: &str, prior: Option<&Version>) -> StoreResult<Version> {
        self.counts.puts.fetch_add(1, Ordering::Relaxed);
        let result = self.inner.put(name, value, prior).await;
        if matches!(result, Err(StoreError::Conflict(_))) {
            self.counts.conflicts.fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    async fn delete(&self, name: &str) -> Result<(), StoreError> {
        self.counts.deletes.fetch_add(1, Ordering::Relaxed);
        self.inner.delete(name).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        self.counts.lists.fetch_add(1, Ordering::Relaxed);
        self.inner.list(prefix).await
    }

    async fn list_marked(&self, prefix: &str) -> StoreResult<Vec<Listed>> {
        self.counts.lists.fetch_add(1, Ordering::Relaxed);
        self.inner.list_marked(prefix).await
    }

    fn counts_versions(&self) -> bool {
        self.inner.counts_versions()
    }

    fn calls_per_write(&self, creating: bool) -> u32 {
        self.inner.calls_per_write(creating)
    }
}
