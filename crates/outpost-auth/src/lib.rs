//! Outpost's credential primitives, wire-compatible with Azure IoT Hub (wire reference §1): SAS tokens,
//! symmetric keys, shared access policy rights, X.509 thumbprints and connection strings.
//!
//! Layer: pure. No I/O, no async runtime, no other Outpost crate; only parsing, hashing and HMAC.
//! `outpost-model` (devices, policies), `outpost-core` (authorization) and the front doors depend on it.
//!
//! Modules:
//! - `sas`: [`SasToken`] parse and verify, [`sign`], [`encode_resource`].
//! - `scope`: [`resource_in_scope`], Azure's "`sr` is a prefix of the resource" rule.
//! - `key`: [`SymmetricKey`] and [`KeyEncoding`] (decoded bytes for IoT Hub, raw text for Event Hubs).
//! - `rights`: [`Rights`], the policy rights as bitflags.
//! - `sealed`: [`seal`] and [`unseal`], HMAC-protected tokens the hub hands out (upload correlation ids).
//! - `thumbprint`: [`Thumbprint`], SHA-1 or SHA-256 certificate thumbprints.
//! - `connection_string`: [`ConnectionString`] and its service, device and Event Hubs views.
//! - `storage_sas`: Azure Storage service SAS for blobs (file upload), sign and verify.
//! - `ca`: [`CaCertificate`] and [`verify_device_chain`], X.509 CA authentication of devices.
//! - `error`: [`AuthError`], the crate's one error type.

mod ca;
mod connection_string;
mod error;
mod key;
mod rights;
mod sas;
mod scope;
mod sealed;
pub mod storage_sas;
mod thumbprint;

pub use ca::{CaCertificate, verify_device_chain};
pub use connection_string::{
    ConnectionString, DeviceConnectionString, EventHubConnectionString, ServiceConnectionString,
};
pub use error::AuthError;
pub use key::{KeyEncoding, MAX_KEY_BYTES, MIN_KEY_BYTES, SymmetricKey};
pub use rights::Rights;
pub use sas::{MAX_TOKEN_LEN, SasToken, encode_resource, sign};
pub use scope::{normalise_resource, resource_in_scope, strip_port};
pub use sealed::{MAX_SEALED_LEN, seal, unseal};
pub use thumbprint::Thumbprint;
