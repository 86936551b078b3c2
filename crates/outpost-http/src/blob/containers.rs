//! The containers of the built-in blob endpoint: `fileuploads` (device uploads) and the routed
//! containers, those a storage endpoint of the hub writes into (`containerName`). Routed files
//! are kept in the hub's blob store as `~routed/<container>/<name>`
//! (`outpost_core::routing::storage::routed_blob_name`) and served here under
//! `/<container>/<name>`, so that Azure Storage clients read them as they read a routing
//! container in Azure. Only message routing writes them: the endpoint reads, lists and deletes.

use outpost_core::Outpost;
use outpost_core::blobs::{BUILTIN_CONTAINER, BlobError, BlobPage, Blobs};
use outpost_core::routing::EndpointKind;
use outpost_core::routing::storage::{ROUTED_BLOB_PREFIX, routed_blob_name};
use outpost_model::Hub;

use super::error::StorageError;

/// The smallest name after every `~routed/…` name (`'0'` follows `'/'`): where a listing of
/// `fileuploads` resumes after skipping the routed blobs, which sort together.
const AFTER_ROUTED: &str = "~routed0";

/// A container of the built-in endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Container {
    /// `fileuploads`: device uploads (and what operators or import/export jobs put there).
    Uploads,
    /// A container a storage endpoint of the hub writes into.
    Routed(String),
}

impl Container {
    /// The container `name` of `hub`, when it has one: `fileuploads` always (even if a storage
    /// endpoint names it too, uploads keep it), else the `containerName` of one of the hub's
    /// storage endpoints.
    pub fn resolve(outpost: &Outpost, hub: &Hub, name: &str) -> Option<Self> {
        if name == BUILTIN_CONTAINER {
            return Some(Self::Uploads);
        }
        routed_containers(outpost, hub)
            .into_iter()
            .any(|routed| routed == name)
            .then(|| Self::Routed(name.to_owned()))
    }

    /// The container's name in URLs and SAS tokens.
    pub fn name(&self) -> &str {
        match self {
            Self::Uploads => BUILTIN_CONTAINER,
            Self::Routed(name) => name,
        }
    }

    /// Whether clients may write blobs (routed containers are written by routing only).
    pub fn writable(&self) -> bool {
        matches!(self, Self::Uploads)
    }

    /// The name under which blob `name` of this container is kept in the hub's blob store.
    ///
    /// # Errors
    /// `400 InvalidResourceName` for an upload name in the routed blobs' reserved namespace.
    pub fn store_name(&self, name: &str) -> Result<String, StorageError> {
        match self {
            Self::Uploads if is_routed(name) => Err(StorageError::new(
                400,
                "InvalidResourceName",
                format!(
                    "Blob names starting with '{ROUTED_BLOB_PREFIX}' are reserved: routed containers are read at /<container>/<name>."
                ),
            )),
            Self::Uploads => Ok(name.to_owned()),
            Self::Routed(container) => Ok(routed_blob_name(container, name)),
        }
    }

    /// List Blobs: at most `max` blobs of the container whose names start with `prefix`, from
    /// `marker` on, named as the client sees them.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn list(
        &self,
        blobs: &Blobs,
        hub: &Hub,
        prefix: &str,
        marker: Option<&str>,
        max: usize,
    ) -> Result<BlobPage, BlobError> {
        match self {
            Self::Uploads => list_uploads(blobs, hub, prefix, marker, max).await,
            Self::Routed(container) => {
                let base = routed_blob_name(container, "");
                let marker = marker.map(|marker| format!("{base}{marker}"));
                let page = blobs
                    .list(hub, &format!("{base}{prefix}"), marker.as_deref(), max)
                    .await?;
                let strip = |name: String| match name.strip_prefix(&base) {
                    Some(name) => name.to_owned(),
                    None => name,
                };
                Ok(BlobPage {
                    blobs: page
                        .blobs
                        .into_iter()
                        .map(|mut blob| {
                            blob.name = strip(std::mem::take(&mut blob.name));
                            blob
                        })
                        .collect(),
                    next_marker: page.next_marker.map(strip),
                })
            }
        }
    }
}

/// The containers `hub`'s storage endpoints write into, in configuration order.
pub(crate) fn routed_containers(outpost: &Outpost, hub: &Hub) -> Vec<String> {
    let router = outpost.routing.router(&hub.name);
    router
        .config()
        .endpoints
        .iter()
        .filter_map(|endpoint| match &endpoint.kind {
            EndpointKind::Storage(storage) => storage.container_name.clone(),
            _ => None,
        })
        .collect()
}

fn is_routed(name: &str) -> bool {
    name.starts_with(ROUTED_BLOB_PREFIX)
}

/// Lists `fileuploads` without the routed blobs. Those sort together (device ids cannot start
/// with `~`), so the listing skips their range at most once; a page is filled up to `max` and
/// one more name is read to know where the next page starts.
async fn list_uploads(
    blobs: &Blobs,
    hub: &Hub,
    prefix: &str,
    marker: Option<&str>,
    max: usize,
) -> Result<BlobPage, BlobError> {
    if is_routed(prefix) {
        return Ok(BlobPage::default());
    }
    let skip_routed = |marker: &str| {
        if is_routed(marker) {
            AFTER_ROUTED.to_owned()
        } else {
            marker.to_owned()
        }
    };
    let mut marker = marker.map(skip_routed);
    let mut found = Vec::new();
    loop {
        let want = max.saturating_add(1).saturating_sub(found.len());
        let page = blobs.list(hub, prefix, marker.as_deref(), want).await?;
        found.extend(page.blobs.into_iter().filter(|blob| !is_routed(&blob.name)));
        if found.len() > max {
            let next = found.split_off(max).into_iter().next().map(|blob| blob.name);
            return Ok(BlobPage {
                blobs: found,
                next_marker: next,
            });
        }
        match page.next_marker {
            None => {
                return Ok(BlobPage {
                    blobs: found,
                    next_marker: None,
                });
            }
            Some(next) => marker = Some(skip_routed(&next)),
        }
    }
}
