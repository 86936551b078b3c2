//! Device-side use cases: authenticating a device or module connection (SAS token or X.509
//! client certificate, wire contract §1, §2.2) and accepting its telemetry into the event log.

use std::sync::Arc;

use bytes::Bytes;
use outpost_auth::{CaCertificate, KeyEncoding, Rights, SasToken, resource_in_scope, verify_device_chain};
use outpost_model::{
    Annotations, AuthenticationType, DeviceId, DeviceStatus, Hub, LogName, MAX_MESSAGE_BYTES, Message,
    ModuleId, SystemProperties, Timestamp, partition_for,
};

use serde_json::{Map, Value, json};

use crate::access::{scope_without_port, verify_with_any};
use crate::presence::IdentityKey;
use crate::registry::Registry;
use crate::{AppendedEvent, AuthFailure, Clock, CoreError, EventLog};

/// What a connecting device presents.
#[derive(Debug, Clone, Copy)]
pub enum DeviceCredential<'a> {
    /// A SAS token (the MQTT password, an AMQP CBS token, an HTTP `Authorization` header).
    Sas(&'a str),
    /// The TLS client's DER certificate chain, leaf first.
    X509(&'a [Vec<u8>]),
}

/// How a connection authenticated, for `iothub-connection-auth-method`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceAuthMethod {
    /// A token signed with the identity's own key.
    IdentitySas,
    /// A token signed with a shared access policy holding DeviceConnect.
    PolicySas,
    /// A self-signed X.509 certificate matched by thumbprint.
    X509,
}

/// An authenticated device or module connection.
#[derive(Debug, Clone)]
pub struct DeviceIdentity {
    /// The hub.
    pub hub: Arc<Hub>,
    /// The device.
    pub device_id: DeviceId,
    /// The module, for module connections.
    pub module_id: Option<ModuleId>,
    /// The identity's generation id (`iothub-connection-auth-generation-id`).
    pub generation_id: String,
    /// How it authenticated.
    pub auth_method: DeviceAuthMethod,
    /// When the presented SAS token expires (the connection must then renew or close).
    pub credential_expiry: Option<Timestamp>,
}

impl DeviceIdentity {
    /// Returns the `iothub-connection-auth-method` JSON string Azure stamps on messages.
    pub fn auth_method_json(&self) -> String {
        let (scope, kind) = match self.auth_method {
            DeviceAuthMethod::IdentitySas => (
                if self.module_id.is_some() {
                    "module"
                } else {
                    "device"
                },
                "sas",
            ),
            DeviceAuthMethod::PolicySas => ("hub", "sas"),
            DeviceAuthMethod::X509 => (
                if self.module_id.is_some() {
                    "module"
                } else {
                    "device"
                },
                "x509Certificate",
            ),
        };
        format!(r#"{{"scope":"{scope}","type":"{kind}","issuer":"iothub","acceptingIpFilterRule":null}}"#)
    }

    /// Returns the identity's resource path below the host: `devices/<d>[/modules/<m>]`.
    pub fn resource(&self) -> String {
        match &self.module_id {
            Some(module) => format!("devices/{}/modules/{module}", self.device_id),
            None => format!("devices/{}", self.device_id),
        }
    }
}

impl Registry {
    /// Authenticates a device or module connecting to `hub`.
    ///
    /// A SAS token must be scoped to the identity (`<host>/devices/<d>[/modules/<m>]`, or a
    /// prefix of it) and signed with one of the identity's keys, or carry `skn` naming a policy
    /// with DeviceConnect. An X.509 leaf must match the identity's primary or secondary
    /// thumbprint (SHA-1 or SHA-256). Disabled devices (and their modules) are refused.
    ///
    /// # Errors
    /// [`CoreError::Unauthorized`] with the reason; unknown identities are `UnknownPrincipal`.
    pub async fn authenticate_device(
        &self,
        hub: Arc<Hub>,
        device_id: &DeviceId,
        module_id: Option<&ModuleId>,
        credential: DeviceCredential<'_>,
    ) -> Result<DeviceIdentity, CoreError> {
        let unauthorized = CoreError::Unauthorized;
        let device = self
            .store
            .device(&hub.name, device_id)
            .await?
            .ok_or(unauthorized(AuthFailure::UnknownPrincipal))?
            .value
            .device;
        if device.status == DeviceStatus::Disabled {
            return Err(unauthorized(AuthFailure::Disabled));
        }
        let (authentication, generation_id) = match module_id {
            Some(module_id) => {
                let module = self
                    .store
                    .module(&hub.name, device_id, module_id)
                    .await?
                    .ok_or(unauthorized(AuthFailure::UnknownPrincipal))?
                    .value
                    .module;
                (module.authentication, module.generation_id)
            }
            None => (device.authentication, device.generation_id),
        };
        let resource = match module_id {
            Some(module) => format!("{}/devices/{device_id}/modules/{module}", hub.host_name),
            None => format!("{}/devices/{device_id}", hub.host_name),
        };
        let mut credential_expiry = None;
        let auth_method = match credential {
            DeviceCredential::Sas(text) => {
                let token = SasToken::parse(text).map_err(|_| unauthorized(AuthFailure::Malformed))?;
                let scope = scope_without_port(&token);
                if !resource_in_scope(&scope, &resource) {
                    return Err(unauthorized(AuthFailure::WrongResource));
                }
                let (keys, method): (Vec<_>, _) = match token.key_name() {
                    Some(policy) => {
                        let policy = hub
                            .policy(policy)
                            .ok_or(unauthorized(AuthFailure::UnknownPrincipal))?;
                        if !policy.rights.grants(Rights::DEVICE_CONNECT) {
                            return Err(unauthorized(AuthFailure::InsufficientRights));
                        }
                        (
                            vec![policy.primary_key.clone(), policy.secondary_key.clone()],
                            DeviceAuthMethod::PolicySas,
                        )
                    }
                    None => {
                        if authentication.kind != AuthenticationType::Sas {
                            return Err(unauthorized(AuthFailure::BadSignature));
                        }
                        (
                            authentication.keys().cloned().collect(),
                            DeviceAuthMethod::IdentitySas,
                        )
                    }
                };
                verify_with_any(&token, &keys, &[KeyEncoding::Base64Decoded], self.clock.now())
                    .map_err(unauthorized)?;
                credential_expiry = Some(Timestamp::from_unix_seconds(
                    i64::try_from(token.expiry()).unwrap_or(i64::MAX),
                ));
                method
            }
            DeviceCredential::X509(chain) => {
                let leaf = chain.first().ok_or(unauthorized(AuthFailure::Missing))?;
                let verified = match authentication.kind {
                    AuthenticationType::SelfSigned => {
                        let thumbprints = &authentication.x509_thumbprint;
                        [&thumbprints.primary_thumbprint, &thumbprints.secondary_thumbprint]
                            .into_iter()
                            .flatten()
                            .any(|thumbprint| thumbprint.matches_der(leaf))
                    }
                    AuthenticationType::CertificateAuthority => {
                        // The leaf's common name names the identity: `<device>` or `<device>/<module>`.
                        let expected_name = match module_id {
                            Some(module) => format!("{device_id}/{module}"),
                            None => device_id.to_string(),
                        };
                        let cas: Vec<CaCertificate> = hub
                            .certificates
                            .iter()
                            .filter_map(|ca| CaCertificate::from_pem(&ca.pem).ok())
                            .collect();
                        let now = self.clock.now().unix_seconds().unwrap_or_default().max(0) as u64;
                        match verify_device_chain(chain, &cas, now, &expected_name) {
                            Ok(()) => true,
                            Err(error) => {
                                tracing::info!(device = %device_id, error = %error, "ca-signed certificate refused");
                                false
                            }
                        }
                    }
                    AuthenticationType::Sas | AuthenticationType::None => false,
                };
                if !verified {
                    return Err(unauthorized(AuthFailure::BadSignature));
                }
                DeviceAuthMethod::X509
            }
        };
        Ok(DeviceIdentity {
            hub,
            device_id: device_id.clone(),
            module_id: module_id.cloned(),
            generation_id,
            auth_method,
            credential_expiry,
        })
    }
}

/// A message as a device sends it, before the hub stamps it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutgoingMessage {
    /// System properties.
    pub properties: SystemProperties,
    /// Application properties in the sender's order.
    pub application_properties: Vec<(String, String)>,
    /// The body.
    pub body: Bytes,
}

/// Accepts device-to-cloud messages into the hub's event log.
pub struct Telemetry {
    log: Arc<dyn EventLog>,
    clock: Arc<dyn Clock>,
    metrics: Arc<crate::Metrics>,
    routing: Arc<crate::routing::Routing>,
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry").finish_non_exhaustive()
    }
}

impl Telemetry {
    /// Builds the telemetry service over an event log, routed by `routing`.
    pub fn new(
        log: Arc<dyn EventLog>,
        clock: Arc<dyn Clock>,
        metrics: Arc<crate::Metrics>,
        routing: Arc<crate::routing::Routing>,
    ) -> Self {
        Self {
            log,
            clock,
            metrics,
            routing,
        }
    }

    /// Returns the event log (the built-in endpoint reads from it).
    pub fn log(&self) -> &Arc<dyn EventLog> {
        &self.log
    }

    /// Stamps, routes and appends a device's messages, in order, to its partition; resolves once
    /// they are durable. All or none: an error means none was acknowledged. Messages no route
    /// takes (fallback disabled) are accepted and dropped, as Azure does.
    ///
    /// # Errors
    /// `MessageTooLarge` over 256 KiB; storage failures.
    pub async fn send(
        &self,
        identity: &DeviceIdentity,
        messages: Vec<OutgoingMessage>,
    ) -> Result<Vec<AppendedEvent>, CoreError> {
        let now = self.clock.now();
        let mut stamped_messages = Vec::with_capacity(messages.len());
        let auth_method = identity.auth_method_json();
        for message in messages {
            if message.body.len() > MAX_MESSAGE_BYTES {
                return Err(CoreError::MessageTooLarge(message.body.len()));
            }
            let stamped = Message {
                properties: message.properties,
                application_properties: message.application_properties,
                annotations: Annotations {
                    device_id: identity.device_id.to_string(),
                    module_id: identity.module_id.as_ref().map(ToString::to_string),
                    auth_method: auth_method.clone(),
                    auth_generation_id: identity.generation_id.clone(),
                    enqueued_time: now,
                    message_source: "Telemetry".into(),
                },
                deliveries: Vec::new(),
                body: message.body,
            };
            stamped_messages.push(stamped);
        }
        self.routing
            .stamp(&identity.hub, &identity.key(), &mut stamped_messages)
            .await;
        let accepted = stamped_messages.len() as u64;
        let bytes: usize = stamped_messages.iter().map(|message| message.body.len()).sum();
        let mut payloads = Vec::with_capacity(stamped_messages.len());
        for message in &stamped_messages {
            if !message.deliveries.is_empty() {
                payloads.push(message.encode());
            }
        }
        let appended = if payloads.is_empty() {
            Vec::new()
        } else {
            let partition = partition_for(&identity.device_id, identity.hub.partition_count);
            self.log
                .append(&LogName::hub(&identity.hub.name), partition, payloads)
                .await?
        };
        self.metrics
            .record_telemetry(&identity.hub.name, accepted, bytes as u64);
        Ok(appended)
    }
}

impl DeviceIdentity {
    /// Returns the cloud-to-device queue of this identity.
    pub fn c2d_target(&self) -> crate::C2dTarget {
        crate::C2dTarget {
            device: self.device_id.clone(),
            module: self.module_id.clone(),
        }
    }

    /// Returns the presence key of this identity.
    pub fn key(&self) -> IdentityKey {
        IdentityKey {
            hub: self.hub.name.clone(),
            device: self.device_id.clone(),
            module: self.module_id.clone(),
        }
    }
}

impl Registry {
    /// Returns the identity's twin as a device reads it (wire contract §2.6):
    /// `{"desired": {…, "$version": N}, "reported": {…, "$version": M}}`, without metadata.
    ///
    /// # Errors
    /// `DeviceNotFound`/`ModuleNotFound` when the identity was deleted meanwhile.
    pub async fn device_side_twin(&self, identity: &DeviceIdentity) -> Result<Value, CoreError> {
        let (_, record) = self.load_identity(&identity.key()).await?;
        let twin = record.twin();
        Ok(json!({
            "desired": twin.desired.to_json_without_metadata(),
            "reported": twin.reported.to_json_without_metadata(),
        }))
    }

    /// Merges a device's reported-properties patch; returns the new reported `$version`.
    ///
    /// # Errors
    /// Twin rule and limit violations, or the identity being gone.
    pub async fn patch_reported(
        &self,
        identity: &DeviceIdentity,
        patch: &Map<String, Value>,
    ) -> Result<u64, CoreError> {
        let record = self
            .change_twin(&identity.key(), None, |twin| {
                Ok(twin.apply_reported_patch(patch, self.now(), &self.twin_limits)?)
            })
            .await?;
        let change = crate::routing::events::TwinChange::Reported(patch);
        self.publish_twin_change(&identity.key(), record.twin(), change)
            .await;
        Ok(record.twin().reported.version)
    }

    /// Merges a reported-properties patch as a device sends it (JSON text); returns the new
    /// reported `$version`.
    ///
    /// # Errors
    /// `ArgumentInvalid` when the patch is not a JSON object; as [`Registry::patch_reported`].
    pub async fn patch_reported_json(
        &self,
        identity: &DeviceIdentity,
        patch: &[u8],
    ) -> Result<u64, CoreError> {
        match serde_json::from_slice::<Value>(patch) {
            Ok(Value::Object(patch)) => self.patch_reported(identity, &patch).await,
            _ => Err(CoreError::InvalidArgument(
                "the reported patch must be a JSON object".into(),
            )),
        }
    }
}
