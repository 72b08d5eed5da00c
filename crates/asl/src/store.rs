//! Where a Distributed Map reads its items (`ItemReader`: `s3:getObject`, `s3:listObjectsV2`)
//! and writes its results (`ResultWriter`: `s3:putObject`): a pluggable object store, so the
//! engine itself knows nothing of S3. opsflow's local pipeline plugs in the local cloud's S3;
//! the bare CLI maps buckets to folders with [`LocalDirStore`]; [`MemoryStore`] keeps objects in
//! memory (for library users and tests).

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Mutex;

/// An object store operation's result; the error is a message (e.g. `NoSuchKey: …`).
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, String>> + Send + 'a>>;

/// One object as `ListObjectsV2` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    pub key: String,
    pub size: u64,
    /// ms since the Unix epoch.
    pub last_modified_ms: i64,
    /// The entity tag, quoted as S3 returns it.
    pub etag: String,
}

pub trait ObjectStore: Send + Sync + 'static {
    fn get_object<'a>(&'a self, bucket: &'a str, key: &'a str) -> StoreFuture<'a, Vec<u8>>;
    /// Objects whose key starts with `prefix`, in key order.
    fn list_objects<'a>(&'a self, bucket: &'a str, prefix: &'a str) -> StoreFuture<'a, Vec<ObjectInfo>>;
    fn put_object<'a>(&'a self, bucket: &'a str, key: &'a str, body: Vec<u8>) -> StoreFuture<'a, ()>;
}

fn etag(body: &[u8]) -> String {
    use md5::Digest;
    let d = md5::Md5::digest(body);
    format!("\"{}\"", d.iter().map(|b| format!("{b:02x}")).collect::<String>())
}

/// Buckets as folders: `s3://bucket/a/b.json` is `<root>/bucket/a/b.json`.
#[derive(Debug, Clone)]
pub struct LocalDirStore {
    root: PathBuf,
}

impl LocalDirStore {
    pub fn new(root: impl Into<PathBuf>) -> LocalDirStore {
        LocalDirStore { root: root.into() }
    }

    fn path(&self, bucket: &str, key: &str) -> Result<PathBuf, String> {
        if bucket.is_empty() || bucket.contains(['/', '\\']) || bucket.starts_with('.') {
            return Err(format!("InvalidBucketName: '{bucket}'"));
        }
        if key.split('/').any(|s| s == "..") {
            return Err(format!("InvalidKey: '{key}'"));
        }
        Ok(self.root.join(bucket).join(key))
    }
}

fn walk(dir: &Path, base: &Path, out: &mut Vec<(String, PathBuf)>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let p = entry?.path();
        if p.is_dir() {
            walk(&p, base, out)?;
        } else if let Ok(rel) = p.strip_prefix(base) {
            let key = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy())
                .collect::<Vec<_>>()
                .join("/");
            out.push((key, p.clone()));
        }
    }
    Ok(())
}

impl ObjectStore for LocalDirStore {
    fn get_object<'a>(&'a self, bucket: &'a str, key: &'a str) -> StoreFuture<'a, Vec<u8>> {
        Box::pin(async move {
            let p = self.path(bucket, key)?;
            std::fs::read(&p).map_err(|e| format!("NoSuchKey: s3://{bucket}/{key} ({}: {e})", p.display()))
        })
    }

    fn list_objects<'a>(&'a self, bucket: &'a str, prefix: &'a str) -> StoreFuture<'a, Vec<ObjectInfo>> {
        Box::pin(async move {
            let dir = self.path(bucket, "")?;
            if !dir.is_dir() {
                return Err(format!("NoSuchBucket: {bucket} ({} is not a folder)", dir.display()));
            }
            let mut files = Vec::new();
            walk(&dir, &dir, &mut files).map_err(|e| format!("could not list {}: {e}", dir.display()))?;
            files.sort();
            let mut out = Vec::new();
            for (key, p) in files.into_iter().filter(|(k, _)| k.starts_with(prefix)) {
                let meta = std::fs::metadata(&p).map_err(|e| e.to_string())?;
                let body = std::fs::read(&p).map_err(|e| e.to_string())?;
                let modified = meta
                    .modified()
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map_or(0, |d| d.as_millis() as i64);
                out.push(ObjectInfo {
                    key,
                    size: meta.len(),
                    last_modified_ms: modified,
                    etag: etag(&body),
                });
            }
            Ok(out)
        })
    }

    fn put_object<'a>(&'a self, bucket: &'a str, key: &'a str, body: Vec<u8>) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let p = self.path(bucket, key)?;
            if let Some(parent) = p.parent() {
                std::fs::create_dir_all(parent).map_err(|e| format!("could not create {}: {e}", parent.display()))?;
            }
            std::fs::write(&p, body).map_err(|e| format!("could not write {}: {e}", p.display()))
        })
    }
}

/// (bucket, key) → (body, last modified ms).
type Objects = BTreeMap<(String, String), (Vec<u8>, i64)>;

/// Objects in memory, keyed by (bucket, key).
#[derive(Debug, Default)]
pub struct MemoryStore {
    objects: Mutex<Objects>,
}

impl MemoryStore {
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }
    /// Stores an object (as `PutObject` would).
    pub fn insert(&self, bucket: &str, key: &str, body: impl Into<Vec<u8>>) {
        let now = chrono::Utc::now().timestamp_millis();
        self.objects.lock().unwrap().insert((bucket.into(), key.into()), (body.into(), now));
    }
    /// An object's body.
    pub fn get(&self, bucket: &str, key: &str) -> Option<Vec<u8>> {
        self.objects
            .lock()
            .unwrap()
            .get(&(bucket.into(), key.into()))
            .map(|(b, _)| b.clone())
    }
    /// Every key of a bucket.
    pub fn keys(&self, bucket: &str) -> Vec<String> {
        self.objects
            .lock()
            .unwrap()
            .keys()
            .filter(|(b, _)| b == bucket)
            .map(|(_, k)| k.clone())
            .collect()
    }
}

impl ObjectStore for MemoryStore {
    fn get_object<'a>(&'a self, bucket: &'a str, key: &'a str) -> StoreFuture<'a, Vec<u8>> {
        Box::pin(async move { self.get(bucket, key).ok_or_else(|| format!("NoSuchKey: s3://{bucket}/{key}")) })
    }

    fn list_objects<'a>(&'a self, bucket: &'a str, prefix: &'a str) -> StoreFuture<'a, Vec<ObjectInfo>> {
        Box::pin(async move {
            let objects = self.objects.lock().unwrap();
            Ok(objects
                .iter()
                .filter(|((b, k), _)| b == bucket && k.starts_with(prefix))
                .map(|((_, k), (body, t))| ObjectInfo {
                    key: k.clone(),
                    size: body.len() as u64,
                    last_modified_ms: *t,
                    etag: etag(body),
                })
                .collect())
        })
    }

    fn put_object<'a>(&'a self, bucket: &'a str, key: &'a str, body: Vec<u8>) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            self.insert(bucket, key, body);
            Ok(())
        })
    }
}
