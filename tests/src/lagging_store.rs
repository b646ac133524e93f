//! A store decorator as eventually consistent as Secrets Manager says it
//! is: after each write, the next reads of that name return the version
//! before it for a while; a write's answer can say "conflict" although the
//! write landed (its answer lost, then confirmed against a read not yet up
//! to date); and a name just removed cannot be created again for a while.

use async_trait::async_trait;
use roomtoken::store::{SecretStore, StoreError, StoreResult, Stored, Version};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

#[derive(Default)]
struct Lag {
    /// Per name: what reads return instead of the current value, and for
    /// how many more reads.
    stale: HashMap<String, (Option<Stored>, usize)>,
    /// Names whose next successful write answers "conflict".
    lying: Vec<String>,
    /// Names that cannot be created yet, and for how many more tries.
    being_deleted: HashMap<String, usize>,
}

pub struct LaggingStore {
    inner: Arc<dyn SecretStore>,
    /// Reads that return the previous version after each write.
    stale_reads: usize,
    lag: Mutex<Lag>,
}

impl LaggingStore {
    pub fn new(inner: Arc<dyn SecretStore>, stale_reads: usize) -> Self {
        Self {
            inner,
            stale_reads,
            lag: Mutex::default(),
        }
    }

    fn lag(&self) -> std::sync::MutexGuard<'_, Lag> {
        self.lag.lock().expect("lag")
    }

    /// The next write of a name ending with `suffix` lands, and answers
    /// "conflict".
    pub fn lie_about_next_write(&self, suffix: &str) {
        self.lag().lying.push(suffix.to_owned());
    }

    /// A name ending with `suffix` refuses `tries` creates as being deleted.
    pub fn being_deleted(&self, suffix: &str, tries: usize) {
        self.lag().being_deleted.insert(suffix.to_owned(), tries);
    }
}

#[async_trait]
impl SecretStore for LaggingStore {
    fn counts_versions(&self) -> bool {
        self.inner.counts_versions()
    }

    async fn get(&self, name: &str) -> StoreResult<Option<Stored>> {
        {
            let mut lag = self.lag();
            if let Some((previous, left)) = lag.stale.get_mut(name)
                && *left > 0
            {
                *left -= 1;
                return Ok(previous.clone());
            }
        }
        self.inner.get(name).await
    }

    async fn put(&self, name: &str, value: &str, prior: Option<&Version>) -> StoreResult<Version> {
        if prior.is_none() {
            let mut lag = self.lag();
            let deleting = lag
                .being_deleted
                .iter_mut()
                .find(|(suffix, left)| name.ends_with(suffix.as_str()) && **left > 0);
            if let Some((_, left)) = deleting {
                *left -= 1;
                return Err(StoreError::BeingDeleted {
                    name: name.to_owned(),
                });
            }
        }
        let before = self.inner.get(name).await?;
        let written = self.inner.put(name, value, prior).await?;
        let mut lag = self.lag();
        lag.stale
            .insert(name.to_owned(), (before, self.stale_reads));
        if let Some(at) = lag.lying.iter().position(|s| name.ends_with(s.as_str())) {
            lag.lying.remove(at);
            return Err(StoreError::Conflict(name.to_owned()));
        }
        Ok(written)
    }

    async fn delete(&self, name: &str) -> StoreResult<()> {
        self.inner.delete(name).await
    }

    async fn list(&self, prefix: &str) -> StoreResult<Vec<String>> {
        self.inner.list(prefix).await
    }

    fn calls_per_write(&self, creating: bool) -> u32 {
        self.inner.calls_per_write(creating)
    }

    fn losing_write_makes_version(&self) -> bool {
        self.inner.losing_write_makes_version()
    }
}
