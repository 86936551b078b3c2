//! Device and module identities, in Azure IoT Hub's REST shape (wire contract §5.3).

use outpost_auth::{SymmetricKey, Thumbprint};
use serde::{Deserialize, Deserializer, Serialize};

use crate::{DeviceId, Etag, ModelError, ModuleId, Timestamp};

/// Whether a device may connect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub enum DeviceStatus {
    /// The device may connect.
    #[default]
    Enabled,
    /// Connections are refused.
    Disabled,
}

impl<'de> Deserialize<'de> for DeviceStatus {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // SDKs send `enabled`/`disabled`; accept any case as Azure does.
        let text = String::deserialize(deserializer)?;
        match text.to_ascii_lowercase().as_str() {
            "enabled" => Ok(Self::Enabled),
            "disabled" => Ok(Self::Disabled),
            _ => Err(serde::de::Error::custom(format!("unknown status '{text}'"))),
        }
    }
}

/// Whether a device or module has a live connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum ConnectionState {
    /// No live connection.
    #[default]
    Disconnected,
    /// At least one live connection.
    Connected,
}

/// How an identity authenticates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub enum AuthenticationType {
    /// Symmetric keys (SAS tokens).
    #[default]
    Sas,
    /// A self-signed X.509 certificate identified by thumbprint.
    SelfSigned,
    /// An X.509 certificate signed by a CA registered on the hub.
    CertificateAuthority,
    /// No credentials of its own (modules managed by an edge device).
    None,
}

impl<'de> Deserialize<'de> for AuthenticationType {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        match text.to_ascii_lowercase().as_str() {
            "sas" => Ok(Self::Sas),
            "selfsigned" => Ok(Self::SelfSigned),
            "certificateauthority" => Ok(Self::CertificateAuthority),
            "none" => Ok(Self::None),
            _ => Err(serde::de::Error::custom(format!(
                "unknown authentication type '{text}'"
            ))),
        }
    }
}

/// A primary/secondary symmetric key pair; either may be absent in requests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct SymmetricKeyPair {
    /// The primary key.
    #[serde(default, deserialize_with = "empty_as_none")]
    pub primary_key: Option<SymmetricKey>,
    /// The secondary key.
    #[serde(default, deserialize_with = "empty_as_none")]
    pub secondary_key: Option<SymmetricKey>,
}

/// A primary/secondary X.509 thumbprint pair.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct X509Thumbprints {
    /// The primary thumbprint.
    #[serde(default, deserialize_with = "empty_as_none")]
    pub primary_thumbprint: Option<Thumbprint>,
    /// The secondary thumbprint.
    #[serde(default, deserialize_with = "empty_as_none")]
    pub secondary_thumbprint: Option<Thumbprint>,
}

/// An identity's credentials.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Authentication {
    /// Symmetric keys (meaningful for `sas`).
    #[serde(default, deserialize_with = "null_as_default")]
    pub symmetric_key: SymmetricKeyPair,
    /// Thumbprints (meaningful for `selfSigned`).
    #[serde(default, deserialize_with = "null_as_default")]
    pub x509_thumbprint: X509Thumbprints,
    /// The authentication type.
    #[serde(rename = "type", default)]
    pub kind: AuthenticationType,
}

impl Authentication {
    /// Completes the credentials of a new or updated identity: for `sas`, missing keys are taken
    /// from `previous` (an update keeps its keys) or generated; thumbprints are cleared. For
    /// `selfSigned` a primary thumbprint is required and keys are cleared.
    ///
    /// # Errors
    /// [`ModelError::InvalidField`] when a `selfSigned` identity has no primary thumbprint.
    pub fn completed(self, previous: Option<&Authentication>) -> Result<Self, ModelError> {
        let previous_keys = previous
            .filter(|p| p.kind == AuthenticationType::Sas)
            .map(|p| p.symmetric_key.clone());
        match self.kind {
            AuthenticationType::Sas => {
                let previous_keys = previous_keys.unwrap_or_default();
                let primary = self
                    .symmetric_key
                    .primary_key
                    .or(previous_keys.primary_key)
                    .unwrap_or_else(SymmetricKey::generate);
                let secondary = self
                    .symmetric_key
                    .secondary_key
                    .or(previous_keys.secondary_key)
                    .unwrap_or_else(SymmetricKey::generate);
                Ok(Self {
                    symmetric_key: SymmetricKeyPair {
                        primary_key: Some(primary),
                        secondary_key: Some(secondary),
                    },
                    x509_thumbprint: X509Thumbprints::default(),
                    kind: AuthenticationType::Sas,
                })
            }
            AuthenticationType::SelfSigned => {
                if self.x509_thumbprint.primary_thumbprint.is_none() {
                    return Err(ModelError::InvalidField {
                        field: "authentication.x509Thumbprint.primaryThumbprint",
                        reason: "a selfSigned identity needs a primary thumbprint".into(),
                    });
                }
                Ok(Self {
                    symmetric_key: SymmetricKeyPair::default(),
                    ..self
                })
            }
            AuthenticationType::CertificateAuthority | AuthenticationType::None => Ok(Self {
                symmetric_key: SymmetricKeyPair::default(),
                x509_thumbprint: X509Thumbprints::default(),
                kind: self.kind,
            }),
        }
    }

    /// Returns the keys a SAS token may be signed with (primary, then secondary).
    pub fn keys(&self) -> impl Iterator<Item = &SymmetricKey> {
        let pair = &self.symmetric_key;
        pair.primary_key.iter().chain(pair.secondary_key.iter())
    }
}

/// Device capabilities.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Capabilities {
    /// Whether the device is an IoT Edge device.
    #[serde(default)]
    pub iot_edge: bool,
}

/// A device identity in the hub's registry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Device {
    /// The device id.
    pub device_id: DeviceId,
    /// Distinguishes devices that reused the id of a deleted one.
    pub generation_id: String,
    /// Changes whenever the identity changes (not when its twin changes).
    pub etag: Etag,
    /// Whether the device is connected.
    pub connection_state: ConnectionState,
    /// Whether the device may connect.
    pub status: DeviceStatus,
    /// Free text explaining the status.
    pub status_reason: Option<String>,
    /// When `connection_state` last changed.
    pub connection_state_updated_time: Timestamp,
    /// When `status` last changed.
    pub status_updated_time: Timestamp,
    /// When the device last connected, sent or received.
    pub last_activity_time: Timestamp,
    /// Cloud-to-device messages queued for the device.
    pub cloud_to_device_message_count: u32,
    /// The device's credentials.
    pub authentication: Authentication,
    /// The device's capabilities.
    pub capabilities: Capabilities,
    /// The edge device scope (IoT Edge parent-child relationships).
    pub device_scope: Option<String>,
    /// Parent scopes (IoT Edge).
    #[serde(default)]
    pub parent_scopes: Vec<String>,
}

/// A module identity on a device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Module {
    /// The module id.
    pub module_id: ModuleId,
    /// Who manages the module (e.g. `IotEdge`).
    pub managed_by: Option<String>,
    /// The device the module belongs to.
    pub device_id: DeviceId,
    /// Distinguishes modules that reused the id of a deleted one.
    pub generation_id: String,
    /// Changes whenever the identity changes.
    pub etag: Etag,
    /// Whether the module is connected.
    pub connection_state: ConnectionState,
    /// When `connection_state` last changed.
    pub connection_state_updated_time: Timestamp,
    /// When the module last connected, sent or received.
    pub last_activity_time: Timestamp,
    /// Cloud-to-device messages queued for the module.
    pub cloud_to_device_message_count: u32,
    /// The module's credentials.
    pub authentication: Authentication,
}

/// Returns a fresh generation id: Azure uses an 18-digit decimal number.
pub fn new_generation_id() -> String {
    use rand::Rng as _;
    format!(
        "{}",
        rand::rng().random_range(100_000_000_000_000_000_u64..1_000_000_000_000_000_000)
    )
}

fn empty_as_none<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    // The Node SDK creates SAS devices with `"primaryKey": ""`, meaning "generate".
    match Option::<String>::deserialize(deserializer)? {
        None => Ok(None),
        Some(text) if text.trim().is_empty() => Ok(None),
        Some(text) => text.parse().map(Some).map_err(serde::de::Error::custom),
    }
}

fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_keys_from_the_node_sdk_mean_generate() {
        let auth: Authentication =
            serde_json::from_str(r#"{"type":"sas","symmetricKey":{"primaryKey":"","secondaryKey":""}}"#)
                .unwrap();
        assert_eq!(auth.symmetric_key, SymmetricKeyPair::default());
        let done = auth.completed(None).unwrap();
        assert!(done.symmetric_key.primary_key.is_some());
        assert_ne!(done.symmetric_key.primary_key, done.symmetric_key.secondary_key);
    }

    #[test]
    fn an_update_without_keys_keeps_the_previous_keys() {
        let first = Authentication::default().completed(None).unwrap();
        let second = Authentication::default().completed(Some(&first)).unwrap();
        assert_eq!(first, second);
    }

    #[test]
    fn self_signed_needs_a_primary_thumbprint() {
        let auth = Authentication {
            kind: AuthenticationType::SelfSigned,
            ..Default::default()
        };
        assert!(auth.completed(None).is_err());
        let auth: Authentication = serde_json::from_str(
            r#"{"type":"selfSigned","x509Thumbprint":{"primaryThumbprint":"aa:bb:cc:dd:ee:ff:00:11:22:33:44:55:66:77:88:99:aa:bb:cc:dd","secondaryThumbprint":null}}"#,
        )
        .unwrap();
        let done = auth.completed(None).unwrap();
        assert_eq!(done.keys().count(), 0);
    }

    #[test]
    fn invalid_key_is_rejected_at_parse() {
        let parsed: Result<Authentication, _> =
            serde_json::from_str(r#"{"type":"sas","symmetricKey":{"primaryKey":"not base64!"}}"#);
        assert!(parsed.is_err());
    }

    #[test]
    fn generation_ids_have_eighteen_digits() {
        assert_eq!(new_generation_id().len(), 18);
    }
}
