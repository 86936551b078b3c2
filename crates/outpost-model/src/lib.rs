//! The Outpost domain model: hubs, shared access policies, devices, modules, twins and the
//! rules that govern them (id syntax, twin merge semantics, twin limits, error codes).
//!
//! Layer: pure. No async, no I/O; depends only on `outpost-auth` for credential types.
//! Everything above it (core, stores, front doors) speaks these types. The serde shapes
//! of [`Device`] and [`Module`] are Azure IoT Hub's REST shapes (wire contract §5.3), so the
//! front doors do not keep a second copy of them.
//!
//! * [`id`]: validated identifiers ([`HubName`], [`DeviceId`], [`ModuleId`], [`PolicyName`],
//!   [`ConsumerGroupName`]).
//! * [`timestamp`]: [`Timestamp`], formatted the way Azure formats times.
//! * [`hub`]: [`Hub`], its [`SharedAccessPolicy`]s and [`ConsumerGroup`]s.
//! * [`identity`]: [`Device`], [`Module`], their [`Authentication`] and statuses.
//! * [`message`]: device-to-cloud [`Message`]s, their log encoding and partitioning.
//! * [`twin`]: [`Twin`] documents, merge-patch and replace rules, `$metadata`, limits.
//! * [`error`]: [`ModelError`] and the Azure [`ErrorCode`] every error is classified into.

pub mod error;
pub mod hub;
pub mod id;
pub mod identity;
pub mod message;
pub mod timestamp;
pub mod twin;

pub use error::{ErrorCode, HasErrorCode, ModelError};
pub use hub::{ConsumerGroup, Hub, HubCertificate, MAX_CONSUMER_GROUPS, SharedAccessPolicy};
pub use id::{
    ConsumerGroupName, DEFAULT_CONSUMER_GROUP, DeviceId, EndpointName, Etag, HubName, LogName, ModuleId,
    PolicyName,
};
pub use identity::{
    Authentication, AuthenticationType, Capabilities, ConnectionState, Device, DeviceStatus, Module,
    SymmetricKeyPair, X509Thumbprints, new_generation_id,
};
pub use message::{Annotations, Delivery, MAX_MESSAGE_BYTES, Message, SystemProperties, partition_for};
pub use timestamp::Timestamp;
pub use twin::{Twin, TwinLimits, TwinSection, TwinUpdate};
