//! [`DirectoryTarget`]: the `StorageTarget` port of routing's storage endpoints (and dead
//! letters) on a plain directory.
//!
//! A file is written to a temporary sibling (`.<name>.<uuid>.tmp`), fsynced, renamed over its
//! name and the directory fsynced, so `Ok` means the whole file is on disk under its name and a
//! reader never sees half a file. Directories created on the way are fsynced into their parents.
//! A crash can leave a `.…tmp` file behind: readers skip dot files.

use std::fs;
use std::io::Write as _;
use std::path::{Component, Path, PathBuf};

use async_trait::async_trait;
use bytes::Bytes;
use outpost_core::routing::{DeliveryError, StorageTarget};

/// Writes routed files under a root directory.
#[derive(Debug, Clone)]
pub struct DirectoryTarget {
    root: PathBuf,
}

impl DirectoryTarget {
    /// A target writing under `root` (created on the first write).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// Returns the root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }
}

/// Checks that `name` is a relative `/`-separated path that stays inside the root: no empty,
/// `.` or `..` segment, no leading `/`, no backslash or NUL (a `\` would be a separator on
/// Windows and is never one in Azure's formats).
fn check_name(name: &str) -> Result<(), DeliveryError> {
    let refuse = |why: &str| {
        Err(DeliveryError::Rejected(format!(
            "file name '{name}' refused: {why}"
        )))
    };
    if name.is_empty() || name.len() > 4096 {
        return refuse("1 to 4096 bytes");
    }
    if name.contains(['\\', '\0']) {
        return refuse("backslashes and NUL are not allowed");
    }
    if name.split('/').any(|segment| matches!(segment, "" | "." | "..")) {
        return refuse("empty, '.' and '..' path segments would leave the directory");
    }
    // Belt and braces: what the platform makes of it must be plain names only.
    if !Path::new(name)
        .components()
        .all(|c| matches!(c, Component::Normal(_)))
    {
        return refuse("not a relative path");
    }
    Ok(())
}

fn unavailable(what: &str, path: &Path, error: &std::io::Error) -> DeliveryError {
    DeliveryError::Unavailable(format!("{what} {}: {error}", path.display()))
}

/// Opens a directory and fsyncs it (makes its entries durable).
fn sync_dir(dir: &Path) -> Result<(), DeliveryError> {
    fs::File::open(dir)
        .and_then(|handle| handle.sync_all())
        .map_err(|error| unavailable("sync directory", dir, &error))
}

/// Creates `dir` and its missing ancestors, then fsyncs the parent of each one created, so the
/// new directories survive a crash along with the file.
fn create_dirs(dir: &Path) -> Result<(), DeliveryError> {
    let mut missing = Vec::new();
    let mut current = Some(dir);
    while let Some(path) = current {
        match fs::symlink_metadata(path) {
            Ok(_) => break,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                missing.push(path);
                current = path.parent();
            }
            Err(error) => return Err(unavailable("inspect", path, &error)),
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    fs::create_dir_all(dir).map_err(|error| unavailable("create directory", dir, &error))?;
    for created in missing.iter().rev() {
        if let Some(parent) = created.parent().filter(|parent| !parent.as_os_str().is_empty()) {
            sync_dir(parent)?;
        }
    }
    Ok(())
}

fn write_durably(path: &Path, bytes: &[u8]) -> Result<(), DeliveryError> {
    let dir = path
        .parent()
        .ok_or_else(|| DeliveryError::Rejected(format!("{} has no directory", path.display())))?;
    let file_name = path
        .file_name()
        .map(|name| name.to_string_lossy())
        .unwrap_or_default();
    create_dirs(dir)?;
    let temp = dir.join(format!(".{file_name}.{}.tmp", uuid::Uuid::new_v4().simple()));
    let written = (|| {
        let mut file = fs::File::create(&temp).map_err(|error| unavailable("create", &temp, &error))?;
        file.write_all(bytes)
            .map_err(|error| unavailable("write", &temp, &error))?;
        file.sync_all()
            .map_err(|error| unavailable("sync", &temp, &error))?;
        fs::rename(&temp, path).map_err(|error| unavailable("rename into", path, &error))
    })();
    if written.is_err() {
        let _ = fs::remove_file(&temp);
    }
    written?;
    sync_dir(dir)
}

#[async_trait]
impl StorageTarget for DirectoryTarget {
    async fn write(&self, name: &str, bytes: Bytes) -> Result<(), DeliveryError> {
        check_name(name)?;
        let path = self.root.join(name);
        tokio::task::spawn_blocking(move || write_durably(&path, &bytes))
            .await
            .map_err(|error| DeliveryError::Unavailable(format!("file task: {error}")))?
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]
mod tests {
    use super::*;

    #[tokio::test]
    async fn files_land_whole_under_their_names_and_replace_earlier_ones() {
        let dir = tempfile::tempdir().unwrap();
        let target = DirectoryTarget::new(dir.path().join("routed"));
        target
            .write("plant/0/2026/11/26/08/05", Bytes::from_static(b"first"))
            .await
            .unwrap();
        target
            .write("plant/0/2026/11/26/08/05", Bytes::from_static(b"second"))
            .await
            .unwrap();
        target
            .write("plant/0/2026/11/26/08/05-17", Bytes::from_static(b"other"))
            .await
            .unwrap();
        let minute_dir = dir.path().join("routed/plant/0/2026/11/26/08");
        assert_eq!(fs::read(minute_dir.join("05")).unwrap(), b"second");
        assert_eq!(fs::read(minute_dir.join("05-17")).unwrap(), b"other");
        // No temporary file is left behind.
        let mut names: Vec<String> = fs::read_dir(&minute_dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["05", "05-17"]);
    }

    #[tokio::test]
    async fn names_that_would_leave_the_directory_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let target = DirectoryTarget::new(dir.path().join("inside"));
        for bad in [
            "../escape",
            "a/../../escape",
            "/etc/passwd",
            "a\\..\\b",
            "a//b",
            "./a",
            "a/",
            "",
            "a\0b",
        ] {
            let result = target.write(bad, Bytes::from_static(b"x")).await;
            assert!(
                matches!(result, Err(DeliveryError::Rejected(_))),
                "{bad:?}: {result:?}"
            );
        }
        assert!(!dir.path().join("escape").try_exists().unwrap());
        assert!(!dir.path().join("inside").try_exists().unwrap());
    }

    #[tokio::test]
    async fn io_failures_are_unavailable_not_panics() {
        let dir = tempfile::tempdir().unwrap();
        // The root is a file: nothing can be created under it.
        let root = dir.path().join("not-a-dir");
        fs::write(&root, b"x").unwrap();
        let target = DirectoryTarget::new(&root);
        let result = target.write("a/b", Bytes::from_static(b"x")).await;
        assert!(matches!(result, Err(DeliveryError::Unavailable(_))), "{result:?}");
        // A path where a directory is expected but a file exists.
        let target = DirectoryTarget::new(dir.path());
        target.write("plant/05", Bytes::from_static(b"x")).await.unwrap();
        let result = target.write("plant/05/x", Bytes::from_static(b"y")).await;
        assert!(matches!(result, Err(DeliveryError::Unavailable(_))), "{result:?}");
        assert_eq!(fs::read(dir.path().join("plant/05")).unwrap(), b"x");
    }

    /// The blob-container target of `outpost-core` on the real blob store: routed files land in
    /// the hub's store under `~routed/<container>/`, replace on rewrite, and are read back whole.
    #[tokio::test]
    async fn blob_container_targets_write_into_the_hubs_blob_store() {
        use std::sync::Arc;

        use outpost_core::SystemClock;
        use outpost_core::blobs::BlobStore;
        use outpost_core::routing::storage::BlobContainerTarget;
        use outpost_model::HubName;
        use tokio::io::AsyncReadExt as _;

        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(crate::EmbeddedBlobStore::open(&dir.path().join("blobs")).unwrap());
        let hub = HubName::new("plant").unwrap();
        assert!(
            BlobContainerTarget::new(store.clone(), Arc::new(SystemClock), hub.clone(), "Bad_Name").is_err()
        );
        let target = BlobContainerTarget::new(store.clone(), Arc::new(SystemClock), hub, "archive").unwrap();
        target
            .write("plant/0/2026/11/26/08/05", Bytes::from_static(b"one"))
            .await
            .unwrap();
        target
            .write("plant/0/2026/11/26/08/05", Bytes::from_static(b"two"))
            .await
            .unwrap();
        let (properties, mut reader) = store
            .read("plant", "~routed/archive/plant/0/2026/11/26/08/05", None)
            .await
            .unwrap()
            .expect("the routed blob");
        let mut content = Vec::new();
        reader.read_to_end(&mut content).await.unwrap();
        assert_eq!((content.as_slice(), properties.size), (&b"two"[..], 3));
        let page = store.list("plant", "~routed/archive/", None, 10).await.unwrap();
        assert_eq!(page.blobs.len(), 1);
        let refused = target.write("plant/../x", Bytes::from_static(b"x")).await;
        assert!(matches!(refused, Err(DeliveryError::Rejected(_))), "{refused:?}");
    }
}
