//! A store decorator that fails chosen writes, as a store outage would at
//! the worst moment (say, right after a refresh token was redeemed), or
//! holds one write until the test lets it go: a race, forced one way.

use async_trait::async_trait;
use roomtoken::store::{SecretStore, StoreError, StoreResult, Stored, Version};
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

/// A write held at the store: [`Pause::reached`] when the writer got there,
/// [`Pause::release`] to let it go on.
#[derive(Clone, Default)]
pub struct Pause {
    reached: Arc<Notify>,
    release: Arc<Notify>,
}

impl Pause {
    pub async fn reached(&self) {
        self.reached.notified().await;
    }

    pub fn release(&self) {
        self.release.notify_one();
    }
}

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
    pause: Mutex<Option<(String, Pause)>>,
}

impl FailingStore {
    pub fn new(inner: Arc<dyn SecretStore>) -> Self {
        Self {
            inner,
            plan: Mutex::new(None),
            pause: Mutex::new(None),
        }
    }

    /// Holds the next put to a name ending with `suffix` until released.
    pub fn pause_next_put(&self, suffix: &str) -> Pause {
        let pause = Pause::default();
        *self.pause.lock().expect("pause") = Some((suffix.to_owned(), pause.clone()));
        pause
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
    fn counts_versions(&self) -> bool {
        self.inner.counts_versions()
    }

    fn losing_write_makes_version(&self) -> bool {
        self.inner.losing_write_makes_version()
    }

    async fn get(&self, name: &str) -> Result<Option<Stored>, StoreError> {
        self.inner.get(name).await
    }

    async fn put(&self, name: &str, value: &str, prior: Option<&Version>) -> StoreResult<Version> {
        let held = {
            let mut pause = self.pause.lock().expect("pause");
            match pause.take() {
                Some((suffix, held)) if name.ends_with(&suffix) => Some(held),
                other => {
                    *pause = other;
                    None
                }
            }
        };
        if let Some(held) = held {
            held.reached.notify_one();
            held.release.notified().await;
        }
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
