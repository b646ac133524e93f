//! A store decorator that fails chosen writes, as a store outage would at
//! the worst moment (say, right after a refresh token was redeemed).

use async_trait::async_trait;
use roomtoken::store::{SecretStore, StoreError, StoreResult, Stored, Version};
use std::sync::{Arc, Mutex};

struct Plan {
    /// Fail puts whose name ends with this...
    suffix: String,
    /// ...after letting this many through...
    skip: usize,
    /// ...this many times.
    fail: usize,
}

pub struct FailingStore {
    inner: Arc<dyn SecretStore>,
    plan: Mutex<Option<Plan>>,
}

impl FailingStore {
    pub fn new(inner: Arc<dyn SecretStore>) -> Self {
        Self {
            inner,
            plan: Mutex::new(None),
        }
    }

    /// Lets `skip` puts to names ending with `suffix` through, then fails
    /// the next `fail` ones with `StoreError::Unavailable`.
    pub fn fail_puts(&self, suffix: &str, skip: usize, fail: usize) {
        *self.plan.lock().expect("plan") = Some(Plan {
            suffix: suffix.to_owned(),
            skip,
            fail,
        });
    }

    fn should_fail(&self, name: &str) -> bool {
        let mut plan = self.plan.lock().expect("plan");
        let Some(plan) = plan.as_mut().filter(|p| name.ends_with(&p.suffix)) else {
            return false;
        };
        if plan.skip > 0 {
            plan.skip -= 1;
            return false;
        }
        if plan.fail > 0 {
            plan.fail -= 1;
            return true;
        }
        false
    }
}

#[async_trait]
impl SecretStore for FailingStore {
    async fn get(&self, name: &str) -> Result<Option<Stored>, StoreError> {
        self.inner.get(name).await
    }

    async fn put(&self, name: &str, value: &str, prior: Option<&Version>) -> StoreResult<Version> {
        if self.should_fail(name) {
            return Err(StoreError::Unavailable(format!(
                "injected failure writing {name}"
            )));
        }
        self.inner.put(name, value, prior).await
    }

    async fn delete(&self, name: &str) -> Result<(), StoreError> {
        self.inner.delete(name).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        self.inner.list(prefix).await
    }

    fn calls_per_write(&self, creating: bool) -> u32 {
        self.inner.calls_per_write(creating)
    }
}
