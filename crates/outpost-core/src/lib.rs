//! The hub core: Outpost's use cases and the storage ports they run on.
//!
//! Layer: above the pure crates (`outpost-model`, `outpost-auth`), below the front doors
//! (`outpost-http`, later MQTT and AMQP) and the backends (`outpost-store`, later PostgreSQL).
//! It must not depend on codecs, axum, or any storage engine: front doors call its services,
//! backends implement its ports.
//!
//! * [`ports`]: storage traits (`HubStore`, `RegistryStore`) and the `Clock`.
//! * [`hubs`]: the hub directory, routing by host name.
//! * [`access`]: SAS authentication of service callers and the permission rules.
//! * [`registry`], [`twins`], [`bulk`]: device, module and twin use cases.
//! * [`blobs`]: file-upload storage: the blob port, quotas, upload targets, retention.
//! * [`file_upload`]: upload slots for devices, their reports, notifications for back ends.
//! * [`c2d`], [`cloud_to_device`]: cloud-to-device queue port, sending, delivery, feedback.
//! * [`devices`]: device connections: authentication and telemetry into the event log.
//! * [`methods`]: direct methods invoked on connected identities.
//! * [`registry_jobs`]: import and export jobs (`/jobs/create`).
//! * [`query`]: registry queries (`POST /devices/query`) over twins, paged.
//! * [`query`]: registry queries (`POST /devices/query`) over twins, paged.
//! * [`presence`]: connected identities and the commands pushed to them.
//! * [`jobs`]: scheduled jobs (`/jobs/v2`): twin updates and direct methods over many devices.
//! * [`configurations`]: automatic device management and edge deployments, their reconciler.
//! * [`routing`]: message routing: routes, endpoints, enrichments, system events, delivery.
//! * [`service_bound`]: per-hub queues for back ends (feedback, file-upload notifications).
//! * [`metrics`]: Prometheus counters and the timed store decorator.
//! * [`error`]: [`CoreError`] (classified into `ErrorCode`) and [`StoreError`].
//! * [`testing`] (feature `testing`): the conformance suite every backend runs.

pub mod access;
pub mod blobs;
pub mod bulk;
pub mod c2d;
pub mod cloud_to_device;
pub mod configurations;
pub mod devices;
pub mod error;
pub mod file_upload;
pub mod hubs;
mod identity_records;
pub mod jobs;
pub mod methods;
pub mod metrics;
pub mod ports;
pub mod presence;
pub mod query;
pub mod registry;
pub mod registry_jobs;
pub mod routing;
pub mod service_bound;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod twins;

use std::sync::Arc;

pub use access::{Caller, Permission, Principal};
pub use blobs::{BlobSettings, BlobStore, Blobs, UploadTarget};
pub use bulk::{BulkItem, BulkOutcome};
pub use c2d::{
    C2dLock, C2dMessage, C2dTarget, CloudToDeviceQueue, DeadReason, FeedbackAck, LockOutcome, QueueLimits,
    QueuedMessage,
};
pub use cloud_to_device::{C2dDestination, C2dSettings, CloudToDevice, FeedbackRecord, FeedbackStatus};
pub use configurations::{ConfigurationStore, Configurations, MemoryConfigurationStore};
pub use devices::{DeviceAuthMethod, DeviceCredential, DeviceIdentity, OutgoingMessage, Telemetry};
pub use error::{AuthFailure, CoreError, StoreError};
pub use file_upload::{FileNotification, FileUploadSettings, FileUploads, UploadOutcome, UploadSlot};
pub use hubs::Hubs;
pub use jobs::{JobSettings, JobStore, Jobs};
pub use methods::{MethodCall, MethodResult};
pub use metrics::{AmqpTraffic, HubGauges, Metrics};
pub use outpost_model::{ErrorCode, HasErrorCode};
pub use ports::{
    AppendedEvent, Clock, DeviceCounts, DeviceRecord, EventLog, Expected, HubStore, LogPosition,
    ModuleRecord, PartitionInfo, RegistryStore, Retention, Revision, ServiceBoundKind, ServiceBoundStore,
    SessionStore, Stored, StoredEvent, StoredRecord, SystemClock,
};
pub use presence::{DeviceCommand, IdentityKey, MethodInvocation, MethodOutcome, Presence, Registration};
pub use query::{ItemType, QueryPage};
pub use registry::{DeviceSpec, ModuleSpec, Registry};
pub use service_bound::{ServiceBoundQueue, Taken};
pub use twins::TwinWrite;

/// File-upload notifications kept waiting per hub (Azure keeps them an hour; Outpost bounds them
/// by count, dropping the oldest).
pub const MAX_FILE_NOTIFICATIONS: usize = 10_000;

/// The storage backends one server runs on; `outpost-server` builds them from config.
#[derive(Clone)]
pub struct Backends {
    /// Hubs and policies.
    pub hubs: Arc<dyn HubStore>,
    /// Identities and twins.
    pub registry: Arc<dyn RegistryStore>,
    /// The telemetry log.
    pub events: Arc<dyn EventLog>,
    /// Cloud-to-device queues.
    pub c2d: Arc<dyn CloudToDeviceQueue>,
    /// File-upload blobs (the built-in blob endpoint).
    pub blobs: Arc<dyn BlobStore>,
    /// Feedback records and file-upload notifications waiting for back ends.
    pub service_bound: Arc<dyn ServiceBoundStore>,
    /// Scheduled jobs and their device records.
    pub jobs: Arc<dyn JobStore>,
    /// Routing configurations and delivery checkpoints.
    pub routing: Arc<dyn routing::RoutingStore>,
    /// Wall-clock time.
    pub clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for Backends {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backends")
            .field("clock", &self.clock)
            .finish_non_exhaustive()
    }
}

/// The hub's services, shared by every front door.
#[derive(Debug, Clone)]
pub struct Outpost {
    /// Every hub on the server.
    pub hubs: Arc<Hubs>,
    /// Identities and twins.
    pub registry: Arc<Registry>,
    /// Device-to-cloud messages.
    pub telemetry: Arc<Telemetry>,
    /// Cloud-to-device messages.
    pub c2d: Arc<CloudToDevice>,
    /// Server metrics.
    pub metrics: Arc<Metrics>,
    /// File-upload storage (default [`BlobSettings`]; see [`Outpost::with_blob_settings`]).
    pub blobs: Arc<Blobs>,
    /// File upload: slots for devices and notifications for back ends.
    pub files: Arc<FileUploads>,
    /// Automatic device management and edge deployments (in memory until
    /// [`Outpost::with_configuration_store`] gives it a durable store).
    pub configurations: Arc<Configurations>,
    /// Import and export jobs.
    pub registry_jobs: Arc<registry_jobs::RegistryJobs>,
    /// Scheduled jobs (`/jobs/v2`); [`Jobs::drive`] runs their scheduler.
    pub jobs: Arc<Jobs>,
    /// Message routing (routes, endpoints, system events); [`routing::Routing::start_delivery`]
    /// starts its endpoint workers.
    pub routing: Arc<routing::Routing>,
    /// Wall-clock time.
    pub clock: Arc<dyn Clock>,
}

impl Outpost {
    /// Loads the hub directory and wires the services over `backends`.
    ///
    /// # Errors
    /// When the hub store cannot be read.
    pub async fn start(
        backends: Backends,
        twin_limits: outpost_model::TwinLimits,
        c2d_settings: C2dSettings,
    ) -> Result<Self, CoreError> {
        let metrics = Arc::new(Metrics::default());
        let hubs = Arc::new(Hubs::load(backends.hubs).await?);
        let store: Arc<dyn RegistryStore> = Arc::new(metrics::TimedRegistryStore::new(
            backends.registry,
            metrics.clone(),
        ));
        let presence = Arc::new(Presence::default());
        let registry = Arc::new(Registry::new(
            store,
            backends.clock.clone(),
            twin_limits,
            presence,
            backends.c2d.clone(),
        ));
        // `devices.jobs` queries read the job store.
        let _ = registry.job_store.set(backends.jobs.clone());
        let jobs = Jobs::new(
            backends.jobs.clone(),
            registry.clone(),
            hubs.clone(),
            backends.clock.clone(),
            metrics.clone(),
            JobSettings::default(),
        );
        jobs.load().await?;
        for hub in hubs.list() {
            backends
                .events
                .ensure_partitions(&outpost_model::LogName::hub(&hub.name), hub.partition_count)
                .await?;
        }
        let routing = routing::Routing::load(
            backends.routing,
            backends.events.clone(),
            hubs.clone(),
            registry.clone(),
            backends.clock.clone(),
        )
        .await?;
        let telemetry = Arc::new(Telemetry::new(
            backends.events,
            backends.clock.clone(),
            metrics.clone(),
            routing.clone(),
        ));
        // Locks belonged to connections of the previous run; their messages are deliverable again.
        backends.c2d.release_all_locks().await?;
        let feedback = ServiceBoundQueue::open(
            backends.service_bound.clone(),
            ServiceBoundKind::Feedback,
            c2d_settings.max_feedback_records,
        )
        .await?;
        let c2d = Arc::new(CloudToDevice::new(
            backends.c2d,
            registry.clone(),
            backends.clock.clone(),
            c2d_settings,
            feedback,
        ));
        let blobs = Arc::new(Blobs::new(
            backends.blobs,
            backends.clock.clone(),
            BlobSettings::default(),
        ));
        let notifications = ServiceBoundQueue::open(
            backends.service_bound,
            ServiceBoundKind::FileNotifications,
            MAX_FILE_NOTIFICATIONS,
        )
        .await?;
        let files = Arc::new(
            FileUploads::new(
                blobs.clone(),
                backends.clock.clone(),
                FileUploadSettings::default(),
                Arc::new(notifications),
            )
            .with_events(registry.events.clone()),
        );
        let registry_jobs = Arc::new(registry_jobs::RegistryJobs::new(
            registry.clone(),
            blobs.clone(),
            backends.clock.clone(),
            None,
        ));
        let configurations = Arc::new(Configurations::new(
            Arc::new(MemoryConfigurationStore::default()),
            registry.clone(),
            hubs.clone(),
        ));
        Ok(Self {
            configurations,
            hubs,
            registry,
            telemetry,
            c2d,
            metrics,
            blobs,
            files,
            registry_jobs,
            jobs,
            routing,
            clock: backends.clock,
        })
    }

    /// Returns the services with other file-upload settings (quotas, retention, external store).
    #[must_use]
    pub fn with_blob_settings(mut self, settings: BlobSettings) -> Self {
        self.blobs = Arc::new(self.blobs.with_settings(settings));
        self.files = Arc::new(self.files.with_blobs(self.blobs.clone()));
        self.registry_jobs = Arc::new(self.registry_jobs.with_blobs(self.blobs.clone()));
        self
    }

    /// Returns the services with `directory` as the place `file://` import and export
    /// containers may point into.
    #[must_use]
    pub fn with_import_export_directory(mut self, directory: std::path::PathBuf) -> Self {
        self.registry_jobs = Arc::new(registry_jobs::RegistryJobs::new(
            self.registry.clone(),
            self.blobs.clone(),
            self.clock.clone(),
            Some(directory),
        ));
        self
    }

    /// Returns the services with configurations kept in `store` (durable in a server).
    #[must_use]
    pub fn with_configuration_store(mut self, store: Arc<dyn ConfigurationStore>) -> Self {
        self.configurations = Arc::new(Configurations::new(
            store,
            self.registry.clone(),
            self.hubs.clone(),
        ));
        self
    }

    /// Creates a hub and its event-log partitions.
    ///
    /// # Errors
    /// `HubAlreadyExists`, or storage failures.
    pub async fn create_hub(&self, hub: outpost_model::Hub) -> Result<Arc<outpost_model::Hub>, CoreError> {
        let hub = self.hubs.create(hub).await?;
        self.telemetry
            .log()
            .ensure_partitions(&outpost_model::LogName::hub(&hub.name), hub.partition_count)
            .await?;
        Ok(hub)
    }

    /// Creates the default hub on first start (see [`Hubs::ensure_default`]) with its partitions.
    ///
    /// # Errors
    /// When the host name is invalid or storage fails.
    pub async fn ensure_default_hub(
        &self,
        host_name: &str,
        partition_count: u32,
    ) -> Result<Option<Arc<outpost_model::Hub>>, CoreError> {
        let created = self.hubs.ensure_default(host_name, partition_count).await?;
        if let Some(hub) = &created {
            self.telemetry
                .log()
                .ensure_partitions(&outpost_model::LogName::hub(&hub.name), hub.partition_count)
                .await?;
        }
        Ok(created)
    }

    /// Deletes a hub, its records and its event log.
    ///
    /// # Errors
    /// `HubNotFound`, or storage failures.
    pub async fn delete_hub(&self, name: &str) -> Result<(), CoreError> {
        let hub = self
            .hubs
            .by_name(name)
            .ok_or_else(|| CoreError::HubNotFound(name.to_owned()))?;
        self.jobs.drop_hub(&hub.name).await?;
        self.hubs.delete(name).await?;
        self.routing.drop_hub(&hub.name);
        self.telemetry.log().drop_hub(&hub.name).await?;
        self.blobs.store().drop_hub(hub.name.as_str()).await?;
        self.files.drop_hub(&hub.name);
        self.registry_jobs.drop_hub(&hub.name);
        self.c2d.feedback().drop_hub(&hub.name);
        Ok(())
    }
}
