//! The on-disk layout of the embedded blob store and the blocking file operations on it.
//!
//! ```text
//! <root>/<hub>/blobs/<uuid>.blob        a committed blob: content, then the JSON trailer
//! <root>/<hub>/staging/<uuid>/name      the blob name staged blocks belong to
//! <root>/<hub>/staging/<uuid>/<hex id>  one staged block (hex of the block id)
//! <root>/<hub>/tmp/…                    uploads in flight and compose links, cleared on load
//! ```
//!
//! Blob names never reach a path: files are named by UUID and the name lives in the trailer
//! (or the `name` file), so no name can traverse out of the hub's directory. A blob file is
//! written completely, fsynced, then renamed into `blobs/` and the directory fsynced, so a
//! committed blob is whole or absent after a crash; when a crash leaves two files for one name
//! (between the rename of a new version and the removal of the old), the higher generation
//! wins on load.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::path::{Path, PathBuf};

use outpost_core::StoreError;
use outpost_core::blobs::{BlobError, BlobProperties};
use outpost_model::Timestamp;
use serde::{Deserialize, Serialize};

/// Ends every committed blob file.
const MAGIC: &[u8; 8] = b"OPBLOB1\n";
/// Longest trailer read back (names are ≤ 1024 chars; 50 000 block ids fit).
const MAX_TRAILER: u32 = 16 * 1024 * 1024;

/// What follows a blob's content in its file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Trailer {
    /// Orders versions of one name: the highest is current.
    pub generation: u64,
    /// The blob's properties.
    pub properties: BlobProperties,
}

/// A committed blob in the index.
#[derive(Debug, Clone)]
pub(super) struct Committed {
    /// The file in `blobs/`.
    pub file: PathBuf,
    pub generation: u64,
    pub properties: BlobProperties,
}

/// The staged blocks of one blob.
#[derive(Debug, Clone)]
pub(super) struct Staging {
    /// The directory in `staging/`.
    pub dir: PathBuf,
    /// Block id → size.
    pub blocks: HashMap<String, u64>,
    /// Last Put Block.
    pub touched: Timestamp,
}

/// One hub's index, loaded from disk on first use.
#[derive(Debug, Default)]
pub(super) struct HubIndex {
    pub blobs: BTreeMap<String, Committed>,
    pub staging: HashMap<String, Staging>,
    pub committed_bytes: u64,
    pub staged_bytes: u64,
    pub highest_generation: u64,
}

impl HubIndex {
    pub fn usage(&self) -> u64 {
        self.committed_bytes.saturating_add(self.staged_bytes)
    }
}

/// Whether `name` is a blob of a routed container (`~routed/…`, written by message routing):
/// kept out of the upload quota and of retention, it is the user's archive.
pub(super) fn is_routed(name: &str) -> bool {
    name.starts_with(outpost_core::routing::storage::ROUTED_BLOB_PREFIX)
}

/// The bytes a committed blob counts in `committed_bytes` (the upload quota): none when routed.
pub(super) fn quota_bytes(name: &str, size: u64) -> u64 {
    if is_routed(name) { 0 } else { size }
}

pub(super) fn io(error: std::io::Error) -> BlobError {
    BlobError::Store(StoreError::Backend(format!("blob store i/o: {error}")))
}

pub(super) fn dirs(hub_dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    (
        hub_dir.join("blobs"),
        hub_dir.join("staging"),
        hub_dir.join("tmp"),
    )
}

/// Fsyncs a directory so that renames and removals in it are durable.
pub(super) fn sync_dir(dir: &Path) -> Result<(), BlobError> {
    File::open(dir).and_then(|dir| dir.sync_all()).map_err(io)
}

/// Appends the trailer to a fully written blob file and fsyncs it.
pub(super) fn finish_blob_file(file: &mut File, trailer: &Trailer) -> Result<(), BlobError> {
    let json = serde_json::to_vec(trailer)
        .map_err(|error| BlobError::Store(StoreError::Backend(error.to_string())))?;
    let len = u32::try_from(json.len()).map_err(|_| BlobError::InvalidBlockList("too many blocks".into()))?;
    file.seek(SeekFrom::End(0)).map_err(io)?;
    file.write_all(&json).map_err(io)?;
    file.write_all(&len.to_le_bytes()).map_err(io)?;
    file.write_all(MAGIC).map_err(io)?;
    file.sync_all().map_err(io)
}

/// Reads a blob file's trailer; `None` when the file is not a complete blob.
pub(super) fn read_trailer(path: &Path) -> Option<Trailer> {
    let mut file = File::open(path).ok()?;
    let len = file.metadata().ok()?.len();
    if len < 12 {
        return None;
    }
    file.seek(SeekFrom::Start(len - 12)).ok()?;
    let mut tail = [0u8; 12];
    file.read_exact(&mut tail).ok()?;
    if &tail[4..] != MAGIC {
        return None;
    }
    let json_len = u32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]);
    if json_len > MAX_TRAILER || u64::from(json_len) + 12 > len {
        return None;
    }
    let data_len = len - 12 - u64::from(json_len);
    file.seek(SeekFrom::Start(data_len)).ok()?;
    let mut json = vec![0u8; json_len as usize];
    file.read_exact(&mut json).ok()?;
    let trailer: Trailer = serde_json::from_slice(&json).ok()?;
    (trailer.properties.size == data_len).then_some(trailer)
}

/// Hex of a block id: block ids are base64, whose `/` and `+` cannot be file names as is.
pub(super) fn block_file_name(id: &str) -> String {
    id.bytes().map(|b| format!("{b:02x}")).collect()
}

fn block_id_from_file_name(name: &str) -> Option<String> {
    if !name.len().is_multiple_of(2) {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..name.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(name.get(i..i + 2)?, 16).ok())
        .collect();
    String::from_utf8(bytes?).ok()
}

fn modified(path: &Path) -> Timestamp {
    fs::metadata(path)
        .and_then(|meta| meta.modified())
        .ok()
        .and_then(|at| at.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or_else(Timestamp::now, |since| {
            Timestamp::from_unix_millis(i64::try_from(since.as_millis()).unwrap_or(i64::MAX))
        })
}

/// Loads a hub's index: clears `tmp/`, reads every committed blob's trailer (keeping the newest
/// version of each name and removing older ones) and every staging directory.
pub(super) fn load_hub(hub_dir: &Path) -> Result<HubIndex, BlobError> {
    let (blobs_dir, staging_dir, tmp_dir) = dirs(hub_dir);
    match fs::remove_dir_all(&tmp_dir) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => return Err(io(error)),
        _ => {}
    }
    for dir in [&blobs_dir, &staging_dir, &tmp_dir] {
        fs::create_dir_all(dir).map_err(io)?;
    }
    let mut index = HubIndex::default();
    for entry in fs::read_dir(&blobs_dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        let Some(trailer) = read_trailer(&path) else {
            tracing::warn!(file = %path.display(), "ignoring an unreadable blob file");
            continue;
        };
        index.highest_generation = index.highest_generation.max(trailer.generation);
        let name = trailer.properties.name.clone();
        let candidate = Committed {
            file: path,
            generation: trailer.generation,
            properties: trailer.properties,
        };
        let stale = match index.blobs.get(&name) {
            Some(current) if current.generation >= candidate.generation => Some(candidate.file),
            _ => index.blobs.insert(name, candidate).map(|replaced| replaced.file),
        };
        if let Some(stale) = stale {
            fs::remove_file(&stale).map_err(io)?;
        }
    }
    index.committed_bytes = index
        .blobs
        .iter()
        .map(|(name, blob)| quota_bytes(name, blob.properties.size))
        .sum();
    for entry in fs::read_dir(&staging_dir).map_err(io)? {
        let dir = entry.map_err(io)?.path();
        let Ok(name) = fs::read_to_string(dir.join("name")) else {
            fs::remove_dir_all(&dir).map_err(io)?;
            continue;
        };
        let mut staging = Staging {
            touched: modified(&dir),
            dir: dir.clone(),
            blocks: HashMap::new(),
        };
        for block in fs::read_dir(&dir).map_err(io)? {
            let block = block.map_err(io)?;
            let file_name = block.file_name().to_string_lossy().into_owned();
            if let Some(id) = block_id_from_file_name(&file_name) {
                let size = block.metadata().map_err(io)?.len();
                staging.touched = staging.touched.max(modified(&block.path()));
                staging.blocks.insert(id, size);
            }
        }
        index.staged_bytes += staging.blocks.values().sum::<u64>();
        index.staging.insert(name, staging);
    }
    Ok(index)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "test code")]
mod tests {
    use super::*;

    #[test]
    fn block_file_names_round_trip() {
        for id in ["AAAA", "a+b/c==", "QmxvY2stMDAwMDE="] {
            assert_eq!(block_id_from_file_name(&block_file_name(id)).as_deref(), Some(id));
        }
        assert_eq!(block_id_from_file_name("name"), None);
    }
}
