//! File-upload storage: the blob port, its types, and the [`Blobs`] use cases (quotas, the
//! upload target handed to devices, the per-hub signing key, retention).
//!
//! A device that calls `POST /devices/{id}/files` (wire contract §4) gets
//! `https://{hostName}/{containerName}/{blobName}{sasToken}` and uploads to it with the Azure
//! Storage client. The built-in endpoint serves that URL on the hub's own HTTPS listener:
//! container [`BUILTIN_CONTAINER`], blob `{deviceId}/{name}`, authorised by an Azure Storage
//! service SAS (`outpost_auth::storage_sas`) signed with a key derived from the hub's
//! `iothubowner` key. With an external store configured, the target points there instead.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use outpost_auth::storage_sas::{self, SasPermission, StorageSas, StorageSasError};
use outpost_model::{Hub, Timestamp};
use serde::{Deserialize, Serialize};

use crate::{Clock, CoreError, StoreError};

mod names;

use names::encode_path;
pub use names::{validate_block_id, validate_name};

/// The container of the built-in endpoint: upload URLs are `/fileuploads/{deviceId}/{name}`.
pub const BUILTIN_CONTAINER: &str = "fileuploads";

/// Longest blob name (Azure's limit, in characters).
pub const MAX_BLOB_NAME_CHARS: usize = 1024;

/// Most blocks a committed blob may have (Azure's limit).
pub const MAX_COMMITTED_BLOCKS: usize = 50_000;

/// Longest block id, decoded (Azure's limit).
pub const MAX_BLOCK_ID_BYTES: usize = 64;

/// A request body read chunk by chunk (never whole in memory).
#[async_trait]
pub trait ByteSource: Send {
    /// Returns the next chunk, or `None` at the end of the body.
    ///
    /// # Errors
    /// [`BlobError::BodyAborted`] when the client went away or the body is malformed.
    async fn next_chunk(&mut self) -> Result<Option<Bytes>, BlobError>;
}

/// A blob's content, streamed.
pub type BlobReader = Pin<Box<dyn tokio::io::AsyncRead + Send>>;

/// The standard HTTP properties stored with a blob (`x-ms-blob-content-*` or the Put Blob
/// headers) and returned by Get Blob.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContentSettings {
    /// `Content-Type`.
    pub content_type: Option<String>,
    /// `Content-Encoding`.
    pub content_encoding: Option<String>,
    /// `Content-Language`.
    pub content_language: Option<String>,
    /// `Content-Disposition`.
    pub content_disposition: Option<String>,
    /// `Cache-Control`.
    pub cache_control: Option<String>,
    /// `Content-MD5` as the client sent it (base64), returned as is.
    pub content_md5: Option<String>,
}

/// A committed blob.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobProperties {
    /// The blob name (`{deviceId}/{name}` for device uploads).
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// When the blob was first created (kept across overwrites).
    pub created: Timestamp,
    /// When it was last written.
    pub last_modified: Timestamp,
    /// Quoted ETag (`"0x…"`), new on every write.
    pub etag: String,
    /// Standard HTTP properties.
    pub content: ContentSettings,
    /// Committed block ids and sizes, in order (empty for a blob written by Put Blob).
    pub blocks: Vec<(String, u64)>,
}

/// Conditional headers of a write or read (`If-Match`, `If-None-Match`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Condition {
    /// `If-Match`: `*` or an ETag.
    pub if_match: Option<String>,
    /// `If-None-Match`: `*` or an ETag.
    pub if_none_match: Option<String>,
}

impl Condition {
    /// Checks the condition of a write against the current blob.
    ///
    /// # Errors
    /// `BlobAlreadyExists` for `If-None-Match: *` on an existing blob (what `overwrite=False`
    /// sends); `ConditionNotMet` otherwise.
    pub fn check_write(&self, current: Option<&BlobProperties>) -> Result<(), BlobError> {
        let etag = current.map(|blob| blob.etag.as_str());
        match self.if_none_match.as_deref() {
            Some("*") if etag.is_some() => return Err(BlobError::AlreadyExists),
            Some(tag) if etag.is_some_and(|etag| etag_eq(etag, tag)) => {
                return Err(BlobError::ConditionNotMet);
            }
            _ => {}
        }
        match (self.if_match.as_deref(), etag) {
            (Some(_), None) => Err(BlobError::ConditionNotMet),
            (Some(tag), Some(etag)) if tag != "*" && !etag_eq(etag, tag) => Err(BlobError::ConditionNotMet),
            _ => Ok(()),
        }
    }
}

fn etag_eq(stored: &str, presented: &str) -> bool {
    stored.trim_matches('"') == presented.trim().trim_matches('"')
}

/// How a Put Block List names a block (Azure's `BlockList` XML elements).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlockRef {
    /// `<Latest>`: the uncommitted block if there is one, else the committed one.
    Latest(String),
    /// `<Committed>`: a block of the current committed blob.
    Committed(String),
    /// `<Uncommitted>`: a staged block.
    Uncommitted(String),
}

impl BlockRef {
    /// Returns the block id.
    pub fn id(&self) -> &str {
        match self {
            Self::Latest(id) | Self::Committed(id) | Self::Uncommitted(id) => id,
        }
    }
}

/// Limits and settings of one write, decided by [`Blobs`].
#[derive(Debug, Clone)]
pub struct BlobWrite {
    /// Standard HTTP properties to store.
    pub content: ContentSettings,
    /// Conditional headers.
    pub condition: Condition,
    /// Largest blob.
    pub max_blob_bytes: u64,
    /// Largest total of a hub's committed blobs and staged blocks.
    pub max_hub_bytes: u64,
    /// Largest block (Put Block).
    pub max_block_bytes: u64,
    /// Most staged blocks per blob.
    pub max_uncommitted_blocks: usize,
    /// The time of the write.
    pub now: Timestamp,
}

/// One page of List Blobs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BlobPage {
    /// Blobs in name order.
    pub blobs: Vec<BlobProperties>,
    /// Where the next page starts, when there is one.
    pub next_marker: Option<String>,
}

/// What a retention sweep removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SweepCount {
    /// Committed blobs deleted.
    pub blobs: usize,
    /// Staged blocks discarded.
    pub blocks: usize,
}

/// Errors of blob operations, in Azure Storage's terms (the HTTP door maps each to its status
/// and `x-ms-error-code`).
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// No such blob.
    #[error("the specified blob does not exist")]
    NotFound,
    /// `If-None-Match: *` and the blob exists.
    #[error("the specified blob already exists")]
    AlreadyExists,
    /// A conditional header does not hold.
    #[error("the condition specified using HTTP conditional header(s) is not met")]
    ConditionNotMet,
    /// The body is over the blob or block size limit.
    #[error("the request body is too large; the limit is {limit} bytes")]
    TooLarge {
        /// The limit.
        limit: u64,
    },
    /// The hub's storage quota would be exceeded.
    #[error("the hub's file upload storage quota of {limit} bytes would be exceeded")]
    QuotaExceeded {
        /// The limit.
        limit: u64,
    },
    /// Too many staged blocks for one blob.
    #[error("the blob has {limit} uncommitted blocks already")]
    TooManyBlocks {
        /// The limit.
        limit: usize,
    },
    /// A block list names a missing block, or is malformed.
    #[error("the specified block list is invalid: {0}")]
    InvalidBlockList(String),
    /// A block id is not base64 or is longer than 64 bytes.
    #[error("the block id is invalid")]
    InvalidBlockId,
    /// A blob name breaks the naming rules.
    #[error("the blob name is invalid: {0}")]
    InvalidName(String),
    /// The request range starts after the end of the blob.
    #[error("the range specified is invalid for the current size of the resource")]
    InvalidRange,
    /// The request body ended early or could not be read.
    #[error("the request body could not be read: {0}")]
    BodyAborted(String),
    /// The Content-Length header disagrees with the body.
    #[error("the body has {actual} bytes but Content-Length said {declared}")]
    LengthMismatch {
        /// Content-Length.
        declared: u64,
        /// What arrived.
        actual: u64,
    },
    /// The store failed.
    #[error("storage")]
    Store(#[from] StoreError),
}

impl From<BlobError> for CoreError {
    fn from(error: BlobError) -> Self {
        match error {
            BlobError::Store(error) => CoreError::Store(error),
            other => CoreError::InvalidArgument(other.to_string()),
        }
    }
}

/// Storage of blobs and staged blocks, per hub. Implementations stream bodies to durable
/// storage and acknowledge only what is durable; they enforce the limits in [`BlobWrite`].
#[async_trait]
pub trait BlobStore: Send + Sync + std::fmt::Debug {
    /// Put Blob: replaces `name` with the body.
    async fn put_blob(
        &self,
        hub: &str,
        name: &str,
        body: &mut dyn ByteSource,
        write: &BlobWrite,
    ) -> Result<BlobProperties, BlobError>;

    /// Put Block: stages a block of `name`; returns its size.
    async fn put_block(
        &self,
        hub: &str,
        name: &str,
        block_id: &str,
        body: &mut dyn ByteSource,
        write: &BlobWrite,
    ) -> Result<u64, BlobError>;

    /// Put Block List: commits `blocks` as the content of `name` and discards its other staged
    /// blocks.
    async fn put_block_list(
        &self,
        hub: &str,
        name: &str,
        blocks: &[BlockRef],
        write: &BlobWrite,
    ) -> Result<BlobProperties, BlobError>;

    /// Returns a blob's properties.
    async fn properties(&self, hub: &str, name: &str) -> Result<Option<BlobProperties>, BlobError>;

    /// Opens `name` for reading `range` (inclusive byte offsets within the blob; `None`: all).
    async fn read(
        &self,
        hub: &str,
        name: &str,
        range: Option<(u64, u64)>,
    ) -> Result<Option<(BlobProperties, BlobReader)>, BlobError>;

    /// Deletes a blob and its staged blocks; returns whether it existed.
    async fn delete(&self, hub: &str, name: &str) -> Result<bool, BlobError>;

    /// Lists blobs whose names start with `prefix`, after `marker`, at most `max`.
    async fn list(
        &self,
        hub: &str,
        prefix: &str,
        marker: Option<&str>,
        max: usize,
    ) -> Result<BlobPage, BlobError>;

    /// Bytes a hub uses (committed blobs and staged blocks), the upload quota's measure: blobs
    /// of routed containers (`~routed/…`, `routing::storage::routed_blob_name`) do not count.
    async fn usage(&self, hub: &str) -> Result<u64, BlobError>;

    /// Deletes blobs last written before `blobs_before` (never those of routed containers,
    /// `~routed/…`: the user's archive) and staged blocks of blobs untouched since
    /// `blocks_before`.
    async fn sweep(
        &self,
        hub: &str,
        blobs_before: Timestamp,
        blocks_before: Timestamp,
    ) -> Result<SweepCount, BlobError>;

    /// Deletes everything of a hub.
    async fn drop_hub(&self, hub: &str) -> Result<(), BlobError>;
}

/// An external, Azure-compatible blob store (Azure Storage, Azurite) devices upload to instead
/// of the built-in endpoint.
#[derive(Clone, PartialEq, Eq)]
pub struct ExternalStore {
    /// `host[:port][/path]` as devices put it after `https://` (Azurite:
    /// `127.0.0.1:10000/devstoreaccount1`).
    pub endpoint: String,
    /// The storage account name.
    pub account: String,
    /// The account key, base64-decoded.
    pub key: Vec<u8>,
    /// The container uploads go to.
    pub container: String,
}

impl std::fmt::Debug for ExternalStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExternalStore")
            .field("endpoint", &self.endpoint)
            .field("account", &self.account)
            .field("container", &self.container)
            .finish_non_exhaustive()
    }
}

/// File-upload settings (`[file_upload]` in the server configuration).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobSettings {
    /// Largest blob.
    pub max_blob_bytes: u64,
    /// Largest total per hub (committed blobs and staged blocks).
    pub max_hub_bytes: u64,
    /// Largest block of Put Block.
    pub max_block_bytes: u64,
    /// Most staged blocks per blob.
    pub max_uncommitted_blocks: usize,
    /// Blobs older than this are deleted by the sweep.
    pub retention: Duration,
    /// Staged blocks untouched this long are discarded.
    pub stale_blocks: Duration,
    /// Lifetime of the SAS handed to devices.
    pub sas_ttl: Duration,
    /// Upload to this store instead of the built-in endpoint.
    pub external: Option<ExternalStore>,
}

impl Default for BlobSettings {
    fn default() -> Self {
        Self {
            max_blob_bytes: 256 * 1024 * 1024,
            max_hub_bytes: 10 * 1024 * 1024 * 1024,
            max_block_bytes: 100 * 1024 * 1024,
            max_uncommitted_blocks: 100_000,
            retention: Duration::from_secs(7 * 24 * 3600),
            stale_blocks: Duration::from_secs(24 * 3600),
            sas_ttl: Duration::from_secs(3600),
            external: None,
        }
    }
}

/// Where a device uploads a file (the `POST /devices/{id}/files` answer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadTarget {
    /// `hostName`: the hub's host name (or the external endpoint).
    pub host_name: String,
    /// `containerName`.
    pub container_name: String,
    /// `blobName`: `{deviceId}/{name}`.
    pub blob_name: String,
    /// `sasToken`, with the leading `?`.
    pub sas_token: String,
}

/// The file-upload use cases.
#[derive(Debug)]
pub struct Blobs {
    store: Arc<dyn BlobStore>,
    clock: Arc<dyn Clock>,
    settings: BlobSettings,
}

impl Blobs {
    /// Wires the use cases over a store.
    pub fn new(store: Arc<dyn BlobStore>, clock: Arc<dyn Clock>, settings: BlobSettings) -> Self {
        Self {
            store,
            clock,
            settings,
        }
    }

    /// Returns the same service with other settings.
    pub fn with_settings(&self, settings: BlobSettings) -> Self {
        Self::new(self.store.clone(), self.clock.clone(), settings)
    }

    /// Returns the settings.
    pub fn settings(&self) -> &BlobSettings {
        &self.settings
    }

    /// Returns the store.
    pub fn store(&self) -> &Arc<dyn BlobStore> {
        &self.store
    }

    /// Returns the key that signs `hub`'s built-in SAS tokens: derived from the `iothubowner`
    /// primary key (else the first policy's), so rotating it revokes outstanding upload URIs.
    pub fn signing_key(hub: &Hub) -> Option<[u8; 32]> {
        let policy = hub.policy("iothubowner").or_else(|| hub.policies.first())?;
        Some(storage_sas::file_upload_key(
            policy.primary_key.decoded(),
            hub.name.as_str(),
        ))
    }

    /// Returns where `device` uploads `name` until `expiry`: a blob SAS with read, create and
    /// write on `{device}/{name}` (Azure grants the same).
    ///
    /// # Errors
    /// `InvalidArgument` for a name Azure Storage would not accept or that would not survive a
    /// URL (empty, `.`/`..` segments, control characters, too long).
    pub fn upload_target(
        &self,
        hub: &Hub,
        device: &str,
        name: &str,
        expiry: Timestamp,
    ) -> Result<UploadTarget, CoreError> {
        let blob_name = format!("{device}/{name}");
        validate_name(&blob_name).map_err(CoreError::from)?;
        let expiry = expiry.unix_seconds().unwrap_or_default();
        let (host_name, container_name, sas) = match &self.settings.external {
            Some(external) => (
                external.endpoint.clone(),
                external.container.clone(),
                storage_sas::blob_sas_query(
                    &external.key,
                    &external.account,
                    &external.container,
                    &blob_name,
                    "rcw",
                    expiry,
                ),
            ),
            None => {
                let key = Self::signing_key(hub).ok_or_else(|| {
                    CoreError::InvalidArgument(format!("hub '{}' has no shared access policy", hub.name))
                })?;
                (
                    hub.host_name.clone(),
                    BUILTIN_CONTAINER.to_owned(),
                    storage_sas::blob_sas_query(
                        &key,
                        hub.name.as_str(),
                        BUILTIN_CONTAINER,
                        &blob_name,
                        "rcw",
                        expiry,
                    ),
                )
            }
        };
        Ok(UploadTarget {
            host_name,
            container_name,
            blob_name,
            sas_token: format!("?{sas}"),
        })
    }

    /// Returns the expiry of a SAS minted now.
    pub fn default_expiry(&self) -> Timestamp {
        let now = self.clock.now().unix_seconds().unwrap_or_default();
        Timestamp::from_unix_seconds(now.saturating_add(self.settings.sas_ttl.as_secs() as i64))
    }

    /// Returns the URI of a blob (the `blobUri` of file-upload notifications).
    pub fn blob_uri(&self, hub: &Hub, blob_name: &str) -> String {
        let encoded = encode_path(blob_name);
        match &self.settings.external {
            Some(external) => format!("https://{}/{}/{encoded}", external.endpoint, external.container),
            None => format!("https://{}/{BUILTIN_CONTAINER}/{encoded}", hub.host_name),
        }
    }

    /// Returns a blob of the built-in endpoint (`None` when absent or the hub uploads to an
    /// external store).
    ///
    /// # Errors
    /// Storage failures.
    pub async fn properties(&self, hub: &Hub, blob_name: &str) -> Result<Option<BlobProperties>, CoreError> {
        if self.settings.external.is_some() {
            return Ok(None);
        }
        Ok(self.store.properties(hub.name.as_str(), blob_name).await?)
    }

    /// Verifies a request's SAS for the [`BUILTIN_CONTAINER`] against `hub`'s key: `blob` is
    /// the requested blob name (`None` for List Blobs).
    ///
    /// # Errors
    /// The [`StorageSasError`] Azure would report.
    pub fn verify_sas(
        &self,
        hub: &Hub,
        sas: &StorageSas,
        blob: Option<&str>,
        permission: SasPermission,
    ) -> Result<(), StorageSasError> {
        self.verify_container_sas(hub, BUILTIN_CONTAINER, sas, blob, permission)
    }

    /// Verifies a request's SAS for `container` of the built-in endpoint (the uploads' or a
    /// routed one): the signed resource is `/blob/<hub>/<container>[/<blob>]`, as in Azure's
    /// string-to-sign, so a SAS of one container does not open another.
    ///
    /// # Errors
    /// The [`StorageSasError`] Azure would report.
    pub fn verify_container_sas(
        &self,
        hub: &Hub,
        container: &str,
        sas: &StorageSas,
        blob: Option<&str>,
        permission: SasPermission,
    ) -> Result<(), StorageSasError> {
        let key = Self::signing_key(hub).ok_or(StorageSasError::SignatureMismatch)?;
        let now = self.clock.now().unix_seconds().unwrap_or_default();
        sas.verify(&key, hub.name.as_str(), container, blob, permission, now)
    }

    /// Mints a container SAS (`sr=c`) or, with `blob`, a blob SAS for the [`BUILTIN_CONTAINER`]
    /// (the operator's way to hand out read or list access). Returns the query without `?`.
    pub fn mint_sas(
        &self,
        hub: &Hub,
        blob: Option<&str>,
        permissions: &str,
        expiry: Timestamp,
    ) -> Option<String> {
        self.mint_container_sas(hub, BUILTIN_CONTAINER, blob, permissions, expiry)
    }

    /// Mints a container SAS (`sr=c`) or, with `blob`, a blob SAS for `container` of the
    /// built-in endpoint. Returns the query without `?`.
    pub fn mint_container_sas(
        &self,
        hub: &Hub,
        container: &str,
        blob: Option<&str>,
        permissions: &str,
        expiry: Timestamp,
    ) -> Option<String> {
        let key = Self::signing_key(hub)?;
        let expiry = expiry.unix_seconds().unwrap_or_default();
        let account = hub.name.as_str();
        Some(match blob {
            Some(blob) => storage_sas::blob_sas_query(&key, account, container, blob, permissions, expiry),
            None => storage_sas::container_sas_query(&key, account, container, permissions, expiry),
        })
    }

    fn write(&self, content: ContentSettings, condition: Condition) -> BlobWrite {
        BlobWrite {
            content,
            condition,
            max_blob_bytes: self.settings.max_blob_bytes,
            max_hub_bytes: self.settings.max_hub_bytes,
            max_block_bytes: self.settings.max_block_bytes,
            max_uncommitted_blocks: self.settings.max_uncommitted_blocks,
            now: self.clock.now(),
        }
    }

    /// Put Blob.
    ///
    /// # Errors
    /// [`BlobError`].
    pub async fn put_blob(
        &self,
        hub: &Hub,
        name: &str,
        body: &mut dyn ByteSource,
        content: ContentSettings,
        condition: Condition,
    ) -> Result<BlobProperties, BlobError> {
        validate_name(name)?;
        let write = self.write(content, condition);
        self.store.put_blob(hub.name.as_str(), name, body, &write).await
    }

    /// Put Block.
    ///
    /// # Errors
    /// [`BlobError`].
    pub async fn put_block(
        &self,
        hub: &Hub,
        name: &str,
        block_id: &str,
        body: &mut dyn ByteSource,
    ) -> Result<u64, BlobError> {
        validate_name(name)?;
        validate_block_id(block_id)?;
        let write = self.write(ContentSettings::default(), Condition::default());
        self.store
            .put_block(hub.name.as_str(), name, block_id, body, &write)
            .await
    }

    /// Put Block List.
    ///
    /// # Errors
    /// [`BlobError`].
    pub async fn put_block_list(
        &self,
        hub: &Hub,
        name: &str,
        blocks: &[BlockRef],
        content: ContentSettings,
        condition: Condition,
    ) -> Result<BlobProperties, BlobError> {
        validate_name(name)?;
        if blocks.len() > MAX_COMMITTED_BLOCKS {
            return Err(BlobError::InvalidBlockList(format!(
                "more than {MAX_COMMITTED_BLOCKS} blocks"
            )));
        }
        for block in blocks {
            validate_block_id(block.id())
                .map_err(|_| BlobError::InvalidBlockList("a block id is invalid".into()))?;
        }
        let write = self.write(content, condition);
        self.store
            .put_block_list(hub.name.as_str(), name, blocks, &write)
            .await
    }

    /// Get Blob (with an optional inclusive range).
    ///
    /// # Errors
    /// [`BlobError`].
    pub async fn read(
        &self,
        hub: &Hub,
        name: &str,
        range: Option<(u64, u64)>,
    ) -> Result<(BlobProperties, BlobReader), BlobError> {
        self.store
            .read(hub.name.as_str(), name, range)
            .await?
            .ok_or(BlobError::NotFound)
    }

    /// Get Blob Properties.
    ///
    /// # Errors
    /// [`BlobError`].
    pub async fn head(&self, hub: &Hub, name: &str) -> Result<BlobProperties, BlobError> {
        self.store
            .properties(hub.name.as_str(), name)
            .await?
            .ok_or(BlobError::NotFound)
    }

    /// Delete Blob.
    ///
    /// # Errors
    /// [`BlobError::NotFound`], or storage failures.
    pub async fn delete(&self, hub: &Hub, name: &str) -> Result<(), BlobError> {
        if self.store.delete(hub.name.as_str(), name).await? {
            Ok(())
        } else {
            Err(BlobError::NotFound)
        }
    }

    /// List Blobs.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn list(
        &self,
        hub: &Hub,
        prefix: &str,
        marker: Option<&str>,
        max: usize,
    ) -> Result<BlobPage, BlobError> {
        self.store.list(hub.name.as_str(), prefix, marker, max).await
    }

    /// Applies retention to every hub in `hubs`: blobs older than the retention and staged
    /// blocks idle longer than the stale-block age.
    ///
    /// # Errors
    /// The first storage failure (other hubs are still swept).
    pub async fn sweep(&self, hubs: &[Arc<Hub>]) -> Result<SweepCount, BlobError> {
        let now = self.clock.now().unix_millis().unwrap_or_default();
        let before = |age: Duration| Timestamp::from_unix_millis(now.saturating_sub(age.as_millis() as i64));
        let (blobs_before, blocks_before) = (
            before(self.settings.retention),
            before(self.settings.stale_blocks),
        );
        let mut total = SweepCount::default();
        let mut first_error = None;
        for hub in hubs {
            match self
                .store
                .sweep(hub.name.as_str(), blobs_before, blocks_before)
                .await
            {
                Ok(count) => {
                    total.blobs += count.blobs;
                    total.blocks += count.blocks;
                }
                Err(error) => {
                    first_error.get_or_insert(error);
                }
            }
        }
        first_error.map_or(Ok(total), Err)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "test code")]
mod tests {
    use super::*;

    #[test]
    fn conditions_follow_azure() {
        let blob = BlobProperties {
            name: "a".into(),
            size: 0,
            created: Timestamp::NEVER,
            last_modified: Timestamp::NEVER,
            etag: "\"0x1\"".into(),
            content: ContentSettings::default(),
            blocks: Vec::new(),
        };
        let none_star = Condition {
            if_none_match: Some("*".into()),
            ..Condition::default()
        };
        assert!(none_star.check_write(None).is_ok());
        assert!(matches!(
            none_star.check_write(Some(&blob)),
            Err(BlobError::AlreadyExists)
        ));
        let if_match = Condition {
            if_match: Some("\"0x1\"".into()),
            ..Condition::default()
        };
        assert!(if_match.check_write(Some(&blob)).is_ok());
        assert!(matches!(
            if_match.check_write(None),
            Err(BlobError::ConditionNotMet)
        ));
    }
}
