//! File upload (wire contract §4): a device asks for an upload slot (`POST /devices/{id}/files`),
//! uploads to the blob endpoint with the SAS URI it got, and reports the outcome
//! (`…/files/notifications`); a successful upload becomes a [`FileNotification`] for the
//! back end's file-notification receiver (§6).
//!
//! The correlation id is sealed (`outpost_auth::seal`) rather than stored: it carries the device,
//! the blob name and a deadline, so a notification needs no state kept between the two calls and
//! survives a restart, and a device can neither forge one nor report another device's upload.

use std::sync::Arc;
use std::time::Duration;

use outpost_auth::{seal, unseal};
use outpost_model::HubName;
use serde::{Deserialize, Serialize};

use crate::blobs::Blobs;
use crate::devices::DeviceIdentity;
use crate::service_bound::ServiceBoundQueue;
use crate::{Clock, CoreError};

/// Settings of file upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileUploadSettings {
    /// Whether successful uploads are reported to the file-notification receivers (Azure's
    /// "receive notifications for uploaded files", on by default here).
    pub notifications: bool,
    /// How long a device may take between asking for a slot and reporting the outcome.
    pub notify_within: Duration,
}

impl Default for FileUploadSettings {
    fn default() -> Self {
        Self {
            notifications: true,
            notify_within: Duration::from_secs(24 * 3600),
        }
    }
}

/// What `POST /devices/{id}/files` answers (wire contract §4).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UploadSlot {
    /// Identifies the upload in the device's notification.
    pub correlation_id: String,
    /// The blob endpoint's host.
    pub host_name: String,
    /// The container.
    pub container_name: String,
    /// The blob, `{deviceId}/{name}`.
    pub blob_name: String,
    /// The SAS query, with its leading `?`.
    pub sas_token: String,
}

/// How the device says its upload went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadOutcome {
    /// Whether the upload succeeded.
    pub is_success: bool,
    /// The storage status the device saw.
    pub status_code: i64,
    /// Free text.
    pub status_description: String,
}

/// A file-upload notification, in Azure's JSON shape (wire contract §6).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FileNotification {
    /// The uploading device.
    pub device_id: String,
    /// The blob's URI.
    pub blob_uri: String,
    /// The blob's name, `{deviceId}/{name}`.
    pub blob_name: String,
    /// When the blob was last written.
    pub last_updated_time: String,
    /// The blob's size.
    pub blob_size_in_bytes: u64,
    /// When the hub recorded the notification.
    pub enqueued_time_utc: String,
}

/// File upload of every hub on the server.
pub struct FileUploads {
    blobs: Arc<Blobs>,
    clock: Arc<dyn Clock>,
    settings: FileUploadSettings,
    notifications: Arc<ServiceBoundQueue<FileNotification>>,
    /// Where `fileUploadNotifications` routing events go.
    events: crate::routing::EventPublisher,
}

impl std::fmt::Debug for FileUploads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileUploads")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl FileUploads {
    /// Builds the service over the blob storage and the durable queue of notifications.
    pub fn new(
        blobs: Arc<Blobs>,
        clock: Arc<dyn Clock>,
        settings: FileUploadSettings,
        notifications: Arc<ServiceBoundQueue<FileNotification>>,
    ) -> Self {
        Self {
            blobs,
            clock,
            settings,
            notifications,
            events: crate::routing::EventPublisher::default(),
        }
    }

    /// Returns the service publishing routing events through `events` (the registry's).
    #[must_use]
    pub fn with_events(mut self, events: crate::routing::EventPublisher) -> Self {
        self.events = events;
        self
    }

    /// Returns the same service over other blob storage settings (same notifications).
    #[must_use]
    pub fn with_blobs(&self, blobs: Arc<Blobs>) -> Self {
        Self::new(
            blobs,
            self.clock.clone(),
            self.settings,
            self.notifications.clone(),
        )
        .with_events(self.events.clone())
    }

    /// The notifications waiting for the hubs' file-notification receivers.
    pub fn notifications(&self) -> &ServiceBoundQueue<FileNotification> {
        &self.notifications
    }

    /// Gives a device a slot to upload `name` to: the blob `{deviceId}/{name}` and a SAS URI that
    /// may write it and nothing else.
    ///
    /// # Errors
    /// `InvalidArgument` for a module (Azure serves file upload to devices only), or a name Azure
    /// Storage would not take (see [`Blobs::upload_target`]).
    pub fn start(&self, identity: &DeviceIdentity, name: &str) -> Result<UploadSlot, CoreError> {
        if identity.module_id.is_some() {
            return Err(CoreError::InvalidArgument(
                "file upload is served to devices, not modules".into(),
            ));
        }
        let target = self.blobs.upload_target(
            &identity.hub,
            identity.device_id.as_str(),
            name,
            self.blobs.default_expiry(),
        )?;
        let now = self.clock.now().unix_seconds().unwrap_or_default();
        let deadline = now.saturating_add(self.settings.notify_within.as_secs() as i64);
        // `|` cannot occur in a device id, so the payload splits unambiguously.
        let payload = format!(
            "{CORRELATION}|{}|{deadline}|{}",
            identity.device_id, target.blob_name
        );
        Ok(UploadSlot {
            correlation_id: seal(&correlation_key(identity)?, &payload),
            host_name: target.host_name,
            container_name: target.container_name,
            blob_name: target.blob_name,
            sas_token: target.sas_token,
        })
    }

    /// Takes a device's report of an upload; a successful one is recorded, durably, as a
    /// notification for the hub's file-notification receivers (when enabled). A failed one is
    /// only logged: Azure notifies back ends of completed uploads only.
    ///
    /// # Errors
    /// `InvalidArgument` when the correlation id is not one this hub gave this device, or is past
    /// its deadline, or when a success is reported for a blob the built-in endpoint does not hold;
    /// storage failures.
    pub async fn finish(
        &self,
        identity: &DeviceIdentity,
        correlation_id: &str,
        outcome: &UploadOutcome,
    ) -> Result<(), CoreError> {
        let unknown = || CoreError::InvalidArgument("the correlation id is unknown or has expired".into());
        let payload = unseal(&correlation_key(identity)?, correlation_id).ok_or_else(unknown)?;
        let mut parts = payload.splitn(4, '|');
        let (Some(CORRELATION), Some(device), Some(deadline), Some(blob_name)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(unknown());
        };
        let now = self.clock.now();
        let deadline: i64 = deadline.parse().map_err(|_| unknown())?;
        if device != identity.device_id.as_str() || now.unix_seconds().unwrap_or(i64::MAX) > deadline {
            return Err(unknown());
        }
        if !outcome.is_success {
            tracing::info!(
                hub = %identity.hub.name,
                device = %identity.device_id,
                blob = blob_name,
                status = outcome.status_code,
                "file upload reported failed"
            );
            return Ok(());
        }
        let hub = &identity.hub;
        let (size, last_updated) = match self.blobs.properties(hub, blob_name).await? {
            Some(properties) => (properties.size, properties.last_modified),
            // An external store is not read by the hub: the notification carries what is known.
            None if self.blobs.settings().external.is_some() => (0, now),
            None => {
                return Err(CoreError::InvalidArgument(format!(
                    "the blob '{blob_name}' was not uploaded"
                )));
            }
        };
        let notification = FileNotification {
            device_id: identity.device_id.to_string(),
            blob_uri: self.blobs.blob_uri(hub, blob_name),
            blob_name: blob_name.to_owned(),
            last_updated_time: last_updated.to_string(),
            blob_size_in_bytes: size,
            enqueued_time_utc: now.to_string(),
        };
        if self.settings.notifications {
            self.notifications.push(&hub.name, notification.clone()).await?;
        }
        crate::routing::events::publish_file_uploaded(&self.events, identity, now, &notification).await;
        Ok(())
    }

    /// Forgets a deleted hub's notifications.
    pub fn drop_hub(&self, hub: &HubName) {
        self.notifications.drop_hub(hub);
    }
}

/// Marks a sealed payload as a correlation id: the key also signs the hub's blob SAS tokens, whose
/// string-to-sign never starts like this.
const CORRELATION: &str = "file-upload-correlation";

/// The key correlation ids of the identity's hub are sealed with.
fn correlation_key(identity: &DeviceIdentity) -> Result<[u8; 32], CoreError> {
    Blobs::signing_key(&identity.hub).ok_or_else(|| {
        CoreError::InvalidArgument(format!("hub '{}' has no shared access policy", identity.hub.name))
    })
}

impl FileNotification {
    /// The JSON body of a notification message (§6).
    pub fn to_json(&self) -> Vec<u8> {
        // Plain strings and numbers: serialising cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }
}
