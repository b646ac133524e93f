//! The embedded file store: one JSON file per secret under a directory,
//! mode 0600, written atomically (temp file, fsync, rename), with
//! compare-and-swap under an exclusive lock on `DIR/.lock` so that
//! `roomtoken serve` and admin commands can share a directory.
//!
//! A file has no version quota: the refresh pass may write as often as
//! tokens need. A directory holding `.secrets-manager-quota` counts and
//! caps versions as Secrets Manager does (tests that stand for it, and an
//! operator rehearsing a deployment, make it with
//! [`FileStore::count_versions`]); every process that opens it sees the
//! same.

use super::{Listed, SecretStore, StoreError, StoreResult, Stored, Version};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

#[derive(Clone, Debug)]
pub struct FileStore {
    dir: PathBuf,
    counts_versions: bool,
}

/// Present in a directory whose store counts Secrets Manager's versions.
const VERSION_QUOTA_MARKER: &str = ".secrets-manager-quota";

#[derive(Serialize, Deserialize)]
struct Envelope {
    version: String,
    value: String,
}

fn unavailable(context: &str, path: &Path, e: std::io::Error) -> StoreError {
    StoreError::Unavailable(format!("{context} {}: {e}", path.display()))
}

impl FileStore {
    /// Opens (and creates, mode 0700) the directory.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, StoreError> {
        let dir = dir.into();
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|e| unavailable("cannot create", &dir, e))?;
        let counts_versions = dir.join(VERSION_QUOTA_MARKER).exists();
        Ok(Self {
            dir,
            counts_versions,
        })
    }

    /// From now on this directory counts and caps versions as Secrets
    /// Manager does, for this handle and every later [`FileStore::open`].
    pub fn count_versions(mut self) -> Result<Self, StoreError> {
        let path = self.dir.join(VERSION_QUOTA_MARKER);
        fs::write(&path, b"").map_err(|e| unavailable("cannot create", &path, e))?;
        self.counts_versions = true;
        Ok(self)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path_of(&self, name: &str) -> Result<PathBuf, StoreError> {
        let mut path = self.dir.clone();
        for component in name.split('/') {
            let safe = !component.is_empty()
                && component != "."
                && component != ".."
                && !component.contains('\\');
            if !safe {
                return Err(StoreError::Denied {
                    name: name.to_owned(),
                    reason: "not a valid secret name".into(),
                });
            }
            path.push(component);
        }
        path.set_extension("json");
        Ok(path)
    }

    fn lock(&self) -> Result<File, StoreError> {
        let path = self.dir.join(".lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| unavailable("cannot open", &path, e))?;
        file.lock()
            .map_err(|e| unavailable("cannot lock", &path, e))?;
        Ok(file)
    }

    fn read(&self, name: &str) -> Result<Option<Stored>, StoreError> {
        let path = self.path_of(name)?;
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(unavailable("cannot read", &path, e)),
        };
        let envelope: Envelope =
            serde_json::from_slice(&bytes).map_err(|e| StoreError::Corrupt {
                name: name.to_owned(),
                reason: crate::domain::secret::json_error_without_data(&e),
            })?;
        Ok(Some(Stored {
            value: envelope.value,
            version: Version(envelope.version),
        }))
    }

    fn write(
        &self,
        name: &str,
        value: &str,
        expected: Option<&Version>,
    ) -> Result<Version, StoreError> {
        let path = self.path_of(name)?;
        let _lock = self.lock()?;
        let current = self.read(name)?.map(|s| s.version);
        if current.as_ref() != expected {
            return Err(StoreError::Conflict(name.to_owned()));
        }
        let version = Version(uuid::Uuid::new_v4().to_string());
        let envelope = Envelope {
            version: version.0.clone(),
            value: value.to_owned(),
        };
        let bytes = serde_json::to_vec(&envelope).map_err(|e| StoreError::Corrupt {
            name: name.to_owned(),
            reason: e.to_string(),
        })?;
        let parent = path.parent().unwrap_or(&self.dir);
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)
            .map_err(|e| unavailable("cannot create", parent, e))?;
        let temp = parent.join(format!(".{}.tmp", version.0));
        let result = (|| {
            let mut file = OpenOptions::new()
                .create_new(true)
                .write(true)
                .mode(0o600)
                .open(&temp)?;
            file.write_all(&bytes)?;
            file.sync_all()?;
            fs::rename(&temp, &path)?;
            // Make the rename itself durable.
            File::open(parent)?.sync_all()
        })();
        if let Err(e) = result {
            let _ = fs::remove_file(&temp);
            return Err(unavailable("cannot write", &path, e));
        }
        Ok(version)
    }

    fn remove(&self, name: &str) -> Result<(), StoreError> {
        let path = self.path_of(name)?;
        let _lock = self.lock()?;
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(unavailable("cannot remove", &path, e)),
        }
        // Drop the connection's directory once it is empty; ignore "not empty".
        if let Some(parent) = path.parent().filter(|p| *p != self.dir) {
            let _ = fs::remove_dir(parent);
        }
        Ok(())
    }

    fn names(&self, prefix: &str) -> Result<Vec<Listed>, StoreError> {
        let mut names = Vec::new();
        let mut pending = vec![self.dir.clone()];
        while let Some(dir) = pending.pop() {
            let entries = match fs::read_dir(&dir) {
                Ok(entries) => entries,
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => return Err(unavailable("cannot list", &dir, e)),
            };
            for entry in entries {
                let path = entry
                    .map_err(|e| unavailable("cannot list", &dir, e))?
                    .path();
                let hidden = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .is_none_or(|n| n.starts_with('.'));
                if hidden {
                    continue;
                }
                if path.is_dir() {
                    pending.push(path);
                } else if path.extension().is_some_and(|e| e == "json") {
                    let relative = path
                        .strip_prefix(&self.dir)
                        .unwrap_or(&path)
                        .with_extension("");
                    let name = relative.to_string_lossy().into_owned();
                    if name.starts_with(prefix) {
                        // Every write renames a new file into place: a new
                        // inode, and a new time (coarse, hence both, and the
                        // length).
                        let changed = fs::metadata(&path).ok().and_then(|m| {
                            use std::os::unix::fs::MetadataExt;
                            let at = m
                                .modified()
                                .ok()?
                                .duration_since(std::time::UNIX_EPOCH)
                                .ok()?;
                            Some(format!("{}-{}-{}", at.as_nanos(), m.ino(), m.len()))
                        });
                        names.push(Listed { name, changed });
                    }
                }
            }
        }
        names.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(names)
    }
}

async fn blocking<T: Send + 'static>(
    job: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(job)
        .await
        .map_err(|e| StoreError::Unavailable(format!("file store task failed: {e}")))?
}

#[async_trait]
impl SecretStore for FileStore {
    async fn get(&self, name: &str) -> Result<Option<Stored>, StoreError> {
        let (store, name) = (self.clone(), name.to_owned());
        blocking(move || store.read(&name)).await
    }

    async fn put(&self, name: &str, value: &str, prior: Option<&Version>) -> StoreResult<Version> {
        super::check_value_size(name, value)?;
        let (store, name, value) = (self.clone(), name.to_owned(), value.to_owned());
        let prior = prior.cloned();
        blocking(move || store.write(&name, &value, prior.as_ref())).await
    }

    async fn delete(&self, name: &str) -> Result<(), StoreError> {
        let (store, name) = (self.clone(), name.to_owned());
        blocking(move || store.remove(&name)).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let listed = self.list_marked(prefix).await?;
        Ok(listed.into_iter().map(|l| l.name).collect())
    }

    async fn list_marked(&self, prefix: &str) -> StoreResult<Vec<Listed>> {
        let (store, prefix) = (self.clone(), prefix.to_owned());
        blocking(move || store.names(&prefix)).await
    }

    fn counts_versions(&self) -> bool {
        self.counts_versions
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[tokio::test]
    async fn compare_and_swap_and_permissions() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::open(dir.path().join("store")).unwrap();
        let name = "connections/contoso/grant";
        assert!(store.get(name).await.unwrap().is_none());
        let v1 = store.put(name, "one", None).await.unwrap();
        assert!(matches!(
            store.put(name, "again", None).await,
            Err(StoreError::Conflict(_))
        ));
        let v2 = store.put(name, "two", Some(&v1)).await.unwrap();
        assert!(matches!(
            store.put(name, "stale", Some(&v1)).await,
            Err(StoreError::Conflict(_))
        ));
        let current = store.get(name).await.unwrap().unwrap();
        assert_eq!((current.value.as_str(), current.version), ("two", v2));
        let path = dir.path().join("store/connections/contoso/grant.json");
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            store.list("connections/").await.unwrap(),
            vec![name.to_owned()]
        );
        store.delete(name).await.unwrap();
        store.delete(name).await.unwrap();
        assert!(store.get(name).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn names_cannot_leave_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::open(dir.path()).unwrap();
        for bad in ["../escape", "connections/../../x", "a//b", ""] {
            assert!(
                matches!(
                    store.put(bad, "x", None).await,
                    Err(StoreError::Denied { .. })
                ),
                "{bad}"
            );
        }
    }

    /// 16 writers on 4 threads all read the same version before any of
    /// them writes (a barrier forces the interleaving): exactly one wins
    /// the first round, the 15 others are told of the conflict, read again
    /// and win later. Without the compare-and-swap the first round would
    /// end on 1 with 15 updates lost.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_writers_never_lose_an_update() {
        const WRITERS: usize = 16;
        let dir = tempfile::tempdir().unwrap();
        let store = std::sync::Arc::new(FileStore::open(dir.path()).unwrap());
        store.put("counter", "0", None).await.unwrap();
        let all_read = std::sync::Arc::new(tokio::sync::Barrier::new(WRITERS));
        let tasks: Vec<_> = (0..WRITERS)
            .map(|_| {
                let (store, all_read) = (store.clone(), all_read.clone());
                tokio::spawn(async move {
                    // Read, add one, compare-and-swap; re-read on conflict.
                    let mut conflicts = 0;
                    loop {
                        let read = store.get("counter").await.unwrap().unwrap();
                        if conflicts == 0 {
                            all_read.wait().await;
                        }
                        let next = read.value.parse::<u32>().unwrap() + 1;
                        match store
                            .put("counter", &next.to_string(), Some(&read.version))
                            .await
                        {
                            Ok(_) => return conflicts,
                            Err(StoreError::Conflict(_)) => conflicts += 1,
                            Err(e) => panic!("{e}"),
                        }
                    }
                })
            })
            .collect();
        let mut conflicts = Vec::new();
        for task in tasks {
            conflicts.push(task.await.unwrap());
        }
        let first_round_winners = conflicts.iter().filter(|&&c| c == 0).count();
        assert_eq!(
            first_round_winners, 1,
            "one write per version: {conflicts:?}"
        );
        assert!(
            conflicts.iter().sum::<u32>() >= 15,
            "every loser saw the conflict: {conflicts:?}"
        );
        let total = store.get("counter").await.unwrap().unwrap().value;
        assert_eq!(total, "16", "every update is counted exactly once");
    }
}
