//! Direct methods (wire contract §2.7, §5.2): a service invokes a method on a connected device
//! or module and waits for its answer, within Azure's connect and response timeouts.

use std::time::Duration;

use outpost_model::{DeviceId, ModuleId};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::oneshot;

use crate::CoreError;
use crate::access::{Caller, Permission};
use crate::presence::{DeviceCommand, IdentityKey, MethodInvocation, MethodOutcome};
use crate::registry::Registry;

/// Longest response timeout Azure allows, in seconds (and the longest connect timeout).
pub const MAX_TIMEOUT_SECS: u64 = 300;
/// Response timeout when the caller gives none (Azure's default).
pub const DEFAULT_RESPONSE_TIMEOUT_SECS: u64 = 30;

/// A direct method call as the REST body carries it (`CloudToDeviceMethod`).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MethodCall {
    /// The method name.
    pub method_name: String,
    /// The JSON payload (any JSON value).
    #[serde(default)]
    pub payload: Value,
    /// Seconds to wait for the device's answer (5–300, default 30).
    pub response_timeout_in_seconds: Option<u64>,
    /// Seconds to wait for the device to connect (0–300, default 0).
    pub connect_timeout_in_seconds: Option<u64>,
}

/// The answer of a direct method (`CloudToDeviceMethodResult`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MethodResult {
    /// The status the device returned.
    pub status: i32,
    /// The payload the device returned.
    pub payload: Value,
}

/// How often a call waiting for its device to connect checks again.
const CONNECT_POLL: Duration = Duration::from_millis(50);

impl Registry {
    /// Invokes a direct method on a device or module.
    ///
    /// # Errors
    /// `DeviceNotFound`/`ModuleNotFound` for unknown identities; `DeviceNotOnline` (404) when the
    /// identity is not connected (and listening for methods) within the connect timeout;
    /// `GatewayTimeout` (504) when it does not answer within the response timeout;
    /// `ArgumentInvalid` for a bad name or timeouts out of range.
    pub async fn invoke_method(
        &self,
        caller: &Caller,
        device: &DeviceId,
        module: Option<&ModuleId>,
        call: MethodCall,
    ) -> Result<MethodResult, CoreError> {
        caller.require(Permission::ServiceConnect)?;
        let name = call.method_name.trim();
        if name.is_empty() || name.len() > 256 || name.contains(['/', '?', '#', '+', '&']) {
            return Err(CoreError::InvalidArgument(format!(
                "'{}' is not a valid method name",
                call.method_name
            )));
        }
        let response_timeout = call
            .response_timeout_in_seconds
            .unwrap_or(DEFAULT_RESPONSE_TIMEOUT_SECS);
        let connect_timeout = call.connect_timeout_in_seconds.unwrap_or(0);
        if response_timeout > MAX_TIMEOUT_SECS || connect_timeout > MAX_TIMEOUT_SECS {
            return Err(CoreError::InvalidArgument(format!(
                "timeouts are at most {MAX_TIMEOUT_SECS} seconds"
            )));
        }
        let key = IdentityKey {
            hub: caller.hub().name.clone(),
            device: device.clone(),
            module: module.cloned(),
        };
        let connect_deadline = tokio::time::Instant::now() + Duration::from_secs(connect_timeout);
        // A connected identity exists (deleting or disabling one closes its connections), so the
        // registry is read only when the identity is not connected, to tell `DeviceNotFound`
        // from `DeviceNotOnline`: the common call costs no store read (docs/benchmarks).
        let mut known = false;
        loop {
            let (respond, answer) = oneshot::channel();
            let command = DeviceCommand::InvokeMethod(Box::new(MethodInvocation {
                name: name.to_owned(),
                payload: call.payload.clone(),
                respond,
            }));
            if !self.presence.send(&key, command) {
                if !known {
                    match module {
                        Some(module) => drop(self.load_module(caller, device, module).await?),
                        None => drop(self.load_device(caller, device).await?),
                    }
                    known = true;
                }
                if tokio::time::Instant::now() >= connect_deadline {
                    return Err(CoreError::DeviceNotOnline(device.clone()));
                }
                tokio::time::sleep(CONNECT_POLL).await;
                continue;
            }
            match tokio::time::timeout(Duration::from_secs(response_timeout), answer).await {
                Ok(Ok(MethodOutcome::Answered { status, payload })) => {
                    return Ok(MethodResult { status, payload });
                }
                // Connected but not listening yet (an AMQP device attaches its method links after
                // connecting, an MQTT device subscribes after CONNACK): within the connect
                // timeout, the call waits for it like for a device that is not connected.
                Ok(Ok(MethodOutcome::NotListening)) if tokio::time::Instant::now() < connect_deadline => {
                    tokio::time::sleep(CONNECT_POLL).await;
                }
                Ok(Ok(MethodOutcome::NotListening)) => {
                    return Err(CoreError::DeviceNotOnline(device.clone()));
                }
                // The connection closed before answering.
                Ok(Err(_closed)) => return Err(CoreError::DeviceNotOnline(device.clone())),
                Err(_elapsed) => return Err(CoreError::MethodTimeout(name.to_owned())),
            }
        }
    }
}
