//! A small in-memory cache with a time to live and single-flight loading,
//! used by token-read to keep what it read from the store.
//!
//! - Each key has at most one load in flight: concurrent misses wait for the
//!   same load (a per-key [`tokio::sync::OnceCell`]), so a warm process makes
//!   at most one store read per key per TTL however many callers ask.
//! - A loaded value lives `ttl`, or less when the loader says it must go
//!   sooner (a cached token must never outlive its servable life).
//! - A failed load caches nothing: the next caller loads again.
//! - The number of keys is bounded: when full, expired entries are dropped;
//!   if it is still full, the caller loads without caching, so requests for
//!   made-up keys cannot grow the cache or evict the keys in use.
//! - A TTL of zero turns the cache off: every call loads.
//! - An expired value is kept beside the entry that replaces it, until a
//!   new load succeeds: [`TtlCache::stale`] gives it to a caller whose load
//!   failed (stale-if-error, within a grace the caller chooses).
//!
//! Time is passed in by the caller (the broker's clock), never read here.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use time::OffsetDateTime;
use tokio::sync::OnceCell;

/// How many keys the cache holds at most by default.
pub const DEFAULT_CAPACITY: usize = 1024;

/// A loaded value and the time it stops being served from the cache.
struct Loaded<V> {
    value: V,
    expires_at: OffsetDateTime,
}

struct Entry<V> {
    created_at: OffsetDateTime,
    cell: OnceCell<Loaded<V>>,
    /// The value this entry replaced once it expired, for stale-if-error.
    previous: Option<Arc<Loaded<V>>>,
}

impl<V> Entry<V> {
    /// Loaded and not yet expired, or still loading for less than a TTL (a
    /// load that failed or was abandoned leaves an empty cell behind).
    fn is_live(&self, now: OffsetDateTime, ttl: Duration) -> bool {
        match self.cell.get() {
            Some(loaded) => now < loaded.expires_at,
            None => now < self.created_at + ttl,
        }
    }
}

pub struct TtlCache<K, V> {
    ttl: Duration,
    capacity: usize,
    entries: Mutex<HashMap<K, Arc<Entry<V>>>>,
}

impl<K: Eq + Hash + Clone, V: Clone> TtlCache<K, V> {
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        Self {
            ttl,
            capacity,
            entries: Mutex::new(HashMap::new()),
        }
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Keys currently held, live or expired.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<K, Arc<Entry<V>>>> {
        // The map is consistent after every statement: a panic elsewhere
        // cannot leave it half-changed.
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The live entry of `key`, a new one, or `None` when the cache is full
    /// of live entries.
    fn entry(&self, key: &K, now: OffsetDateTime) -> Option<Arc<Entry<V>>> {
        let mut entries = self.lock();
        if let Some(entry) = entries.get(key)
            && entry.is_live(now, self.ttl)
        {
            return Some(entry.clone());
        }
        // The expired value (or the one a failed load left in place) stays
        // beside the new entry until a load replaces it.
        let previous = entries.remove(key).and_then(|old| match old.cell.get() {
            Some(loaded) => Some(Arc::new(Loaded {
                value: loaded.value.clone(),
                expires_at: loaded.expires_at,
            })),
            None => old.previous.clone(),
        });
        if entries.len() >= self.capacity {
            entries.retain(|_, entry| entry.is_live(now, self.ttl));
            if entries.len() >= self.capacity {
                return None;
            }
        }
        let entry = Arc::new(Entry {
            created_at: now,
            cell: OnceCell::new(),
            previous,
        });
        entries.insert(key.clone(), entry.clone());
        Some(entry)
    }

    /// The cached value of `key` if it is loaded and live; never loads.
    pub fn peek(&self, key: &K, now: OffsetDateTime) -> Option<V> {
        let entries = self.lock();
        let loaded = entries.get(key)?.cell.get()?;
        (now < loaded.expires_at).then(|| loaded.value.clone())
    }

    /// The last value loaded for `key` if it expired less than `grace` ago
    /// and no load has succeeded since: what to serve when a load fails.
    pub fn stale(&self, key: &K, now: OffsetDateTime, grace: Duration) -> Option<V> {
        let entries = self.lock();
        let entry = entries.get(key)?;
        if entry.cell.get().is_some() {
            return None;
        }
        let previous = entry.previous.as_ref()?;
        (now < previous.expires_at + grace).then(|| previous.value.clone())
    }

    /// Forgets `key` (a load in flight still answers its waiters).
    pub fn remove(&self, key: &K) {
        self.lock().remove(key);
    }

    /// The cached value of `key`, or what `load` returns. `load` gives the
    /// value and, optionally, a time after which it must not be served from
    /// the cache even if the TTL has not run out.
    pub async fn get_or_load<E, F, Fut>(
        &self,
        key: &K,
        now: OffsetDateTime,
        load: F,
    ) -> Result<V, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<(V, Option<OffsetDateTime>), E>>,
    {
        if self.ttl.is_zero() {
            return load().await.map(|(value, _)| value);
        }
        let Some(entry) = self.entry(key, now) else {
            return load().await.map(|(value, _)| value);
        };
        let ttl = self.ttl;
        let loaded = entry
            .cell
            .get_or_try_init(|| async move {
                let (value, not_after) = load().await?;
                let expires_at = match not_after {
                    Some(limit) => limit.min(now + ttl),
                    None => now + ttl,
                };
                Ok(Loaded { value, expires_at })
            })
            .await?;
        Ok(loaded.value.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};
    use time::macros::datetime;

    const T0: OffsetDateTime = datetime!(2026-11-28 12:00 UTC);
    const TTL: Duration = Duration::from_secs(30);

    /// A loader that counts its calls and returns the call number.
    async fn counting(
        calls: &AtomicU32,
        not_after: Option<OffsetDateTime>,
    ) -> Result<(u32, Option<OffsetDateTime>), String> {
        let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
        tokio::task::yield_now().await;
        Ok((n, not_after))
    }

    #[tokio::test]
    async fn a_value_is_loaded_once_per_ttl() {
        let cache = TtlCache::new(TTL, 8);
        let calls = AtomicU32::new(0);
        for _ in 0..5 {
            let v = cache
                .get_or_load(&"a", T0 + Duration::from_secs(29), || {
                    counting(&calls, None)
                })
                .await;
            assert_eq!(v, Ok(1));
        }
        let v = cache
            .get_or_load(&"a", T0 + Duration::from_secs(29), || {
                counting(&calls, None)
            })
            .await;
        assert_eq!(v, Ok(1), "still the first load");
        // The first load happened at T0 + 29 s: it lives until T0 + 59 s.
        let later = T0 + Duration::from_secs(59);
        let v = cache
            .get_or_load(&"a", later, || counting(&calls, None))
            .await;
        assert_eq!(v, Ok(2), "loaded again once the TTL ran out");
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn concurrent_misses_share_one_load() {
        let cache = TtlCache::new(TTL, 8);
        let calls = AtomicU32::new(0);
        let reads = (0..100).map(|_| cache.get_or_load(&"a", T0, || counting(&calls, None)));
        let values = futures::future::join_all(reads).await;
        assert!(values.iter().all(|v| v == &Ok(1)), "{values:?}");
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_loader_can_shorten_the_life_of_its_value() {
        let cache = TtlCache::new(TTL, 8);
        let calls = AtomicU32::new(0);
        let limit = Some(T0 + Duration::from_secs(10));
        cache
            .get_or_load(&"a", T0, || counting(&calls, limit))
            .await
            .unwrap();
        let at_9 = T0 + Duration::from_secs(9);
        let v = cache
            .get_or_load(&"a", at_9, || counting(&calls, None))
            .await;
        assert_eq!(v, Ok(1));
        let at_10 = T0 + Duration::from_secs(10);
        let v = cache
            .get_or_load(&"a", at_10, || counting(&calls, None))
            .await;
        assert_eq!(v, Ok(2), "gone at its limit, before the TTL");
    }

    #[tokio::test]
    async fn failures_are_not_cached() {
        let cache: TtlCache<&str, u32> = TtlCache::new(TTL, 8);
        let failed = cache
            .get_or_load(&"a", T0, || async { Err::<(u32, _), _>("store down") })
            .await;
        assert_eq!(failed, Err("store down"));
        let v = cache
            .get_or_load(&"a", T0, || async { Ok::<_, &str>((7, None)) })
            .await;
        assert_eq!(v, Ok(7));
    }

    #[tokio::test]
    async fn the_expired_value_is_there_for_a_failed_load_within_the_grace() {
        const GRACE: Duration = Duration::from_secs(600);
        let cache: TtlCache<&str, u32> = TtlCache::new(TTL, 8);
        let fail = || async { Err::<(u32, Option<OffsetDateTime>), _>("store down") };
        assert_eq!(cache.stale(&"a", T0, GRACE), None, "nothing loaded yet");
        cache
            .get_or_load(&"a", T0, || async { Ok::<_, &str>((1, None)) })
            .await
            .unwrap();
        assert_eq!(cache.stale(&"a", T0, GRACE), None, "fresh: no stale value");
        // The value expired at T0 + TTL; loads fail for a while.
        for late in [TTL, TTL + GRACE - Duration::from_secs(1)] {
            let failed = cache.get_or_load(&"a", T0 + late, fail).await;
            assert_eq!(failed, Err("store down"));
            assert_eq!(cache.stale(&"a", T0 + late, GRACE), Some(1), "{late:?}");
        }
        let after_grace = T0 + TTL + GRACE;
        assert_eq!(
            cache.get_or_load(&"a", after_grace, fail).await,
            Err("store down")
        );
        assert_eq!(
            cache.stale(&"a", after_grace, GRACE),
            None,
            "past the grace"
        );
        // A successful load replaces it: nothing stale until it expires.
        let later = T0 + TTL * 3;
        cache
            .get_or_load(&"a", later, || async { Ok::<_, &str>((2, None)) })
            .await
            .unwrap();
        assert_eq!(cache.stale(&"a", later, GRACE), None);
        assert_eq!(
            cache.get_or_load(&"a", later + TTL, fail).await,
            Err("store down")
        );
        assert_eq!(cache.stale(&"a", later + TTL, GRACE), Some(2));
    }

    #[tokio::test]
    async fn a_zero_ttl_caches_nothing() {
        let cache = TtlCache::new(Duration::ZERO, 8);
        let calls = AtomicU32::new(0);
        for n in 1..=3 {
            let v = cache.get_or_load(&"a", T0, || counting(&calls, None)).await;
            assert_eq!(v, Ok(n));
        }
        assert!(cache.is_empty());
    }

    #[tokio::test]
    async fn a_removed_key_is_loaded_again() {
        let cache = TtlCache::new(TTL, 8);
        let calls = AtomicU32::new(0);
        cache
            .get_or_load(&"a", T0, || counting(&calls, None))
            .await
            .unwrap();
        assert_eq!(cache.peek(&"a", T0), Some(1));
        assert_eq!(cache.peek(&"a", T0 + TTL), None, "expired");
        cache.remove(&"a");
        assert!(cache.is_empty());
        assert_eq!(cache.peek(&"a", T0), None);
        let v = cache.get_or_load(&"a", T0, || counting(&calls, None)).await;
        assert_eq!(v, Ok(2));
    }

    #[tokio::test]
    async fn the_cache_never_holds_more_than_its_capacity() {
        let cache = TtlCache::new(TTL, 4);
        let calls = AtomicU32::new(0);
        for key in 0..4 {
            cache
                .get_or_load(&key, T0, || counting(&calls, None))
                .await
                .unwrap();
        }
        // Full of live entries: a new key is loaded but not kept, and the
        // keys in use stay cached.
        for _ in 0..3 {
            cache
                .get_or_load(&99, T0, || counting(&calls, None))
                .await
                .unwrap();
        }
        assert_eq!(cache.len(), 4);
        assert_eq!(calls.load(Ordering::SeqCst), 7);
        let v = cache.get_or_load(&0, T0, || counting(&calls, None)).await;
        assert_eq!(v, Ok(1), "key 0 is still cached");
        // Once they expire, the expired entries make room.
        let later = T0 + TTL;
        cache
            .get_or_load(&99, later, || counting(&calls, None))
            .await
            .unwrap();
        assert_eq!(cache.len(), 1);
    }
}
