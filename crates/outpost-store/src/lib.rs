//! The embedded storage backend: Outpost's storage ports on [redb], one file, no external service.
//!
//! Layer: a backend. It implements `outpost-core`'s ports ([`outpost_core::HubStore`],
//! [`outpost_core::RegistryStore`]) and depends only on the core and the model; it must not
//! depend on any front door (HTTP, MQTT, AMQP) or on the server. redb reads run on the
//! blocking pool (`spawn_blocking`), writes on one writer thread that group-commits them, and
//! redb errors are translated into [`outpost_core::StoreError`] here, at the backend boundary.
//!
//! * `store`: [`EmbeddedStore`], opening the database, running transactions off the runtime.
//! * `group_commit`: the writer thread: concurrent writes share one transaction and one fsync.
//! * `tables`: the on-disk layout (tables, key and value shapes, JSON encoding).
//! * `revision`: the database-wide revision counter and the `Expected` check.
//! * `hubs`: `HubStore`, including the cascading `delete_hub`.
//! * `registry`: `RegistryStore`: devices and modules.
//! * `c2d`: `CloudToDeviceQueue`: per-device and per-module peek-lock queues in the same database.
//! * `service_bound`: `ServiceBoundStore`: feedback records and file-upload notifications.
//! * `configurations`: `ConfigurationStore`: automatic device management and edge deployments.
//! * `routing`: `RoutingStore`: routing configurations and endpoint delivery checkpoints.
//! * `jobs`: `JobStore`: scheduled jobs and their device records.
//! * `counts`: per-hub device counts, maintained in the device write transactions.
//! * `error`: the transaction error and its translation into `StoreError`.
//! * `blobs`: [`EmbeddedBlobStore`], the `BlobStore` port (file uploads) on plain files.
//! * `event_log`: [`EmbeddedEventLog`], the `EventLog` port on segment files with group commit.
//!
//! The conformance suite of `outpost-core` runs against the in-memory and the on-disk database
//! in `tests/conformance.rs`.

pub mod blobs;
mod c2d;
mod configurations;
mod counts;
mod error;
pub mod event_log;
mod group_commit;
mod hubs;
mod jobs;
mod registry;
mod revision;
mod routing;
mod routing_files;
mod service_bound;
mod sessions;
mod store;
mod tables;

pub use blobs::EmbeddedBlobStore;
pub use event_log::{EmbeddedEventLog, EventLogOptions};
pub use routing_files::DirectoryTarget;
pub use store::EmbeddedStore;
