//! `POST /hubs/{hub}/routing/test`: evaluates routes against a sample message and twin without
//! sending anything, like Azure's `routing/routes/$testnew` (one route or condition →
//! `{"result": "true"|"false"}`) and `$testall` (every enabled route of the source → the routes
//! that match), which `az iot hub message-route test` calls.

use axum::Json;
use axum::extract::{Path, State};
use bytes::Bytes;
use outpost_core::routing::{Routing, RoutingSource};
use outpost_model::{Annotations, Message, SystemProperties, Timestamp};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{bad_request, not_found};
use crate::error::ApiError;
use crate::operator::{OperatorState, find_hub};
use crate::request::AzureJson;

/// The device a sample message comes from when `connectionDeviceId` is not given.
const SAMPLE_DEVICE: &str = "sample-device";

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct TestRequest {
    /// A configured route to test (its source and condition).
    route: Option<String>,
    /// A condition to test, not stored anywhere.
    condition: Option<String>,
    /// The source of the sample (default `DeviceMessages`); Azure's `routingSource` too.
    #[serde(alias = "routingSource")]
    source: Option<String>,
    #[serde(default)]
    message: SampleMessage,
    /// `$twin` of the sample (`{"tags": …, "properties": {"desired": …, "reported": …}}`).
    twin: Option<Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SampleMessage {
    #[serde(default)]
    body: String,
    #[serde(default)]
    app_properties: Map<String, Value>,
    #[serde(default)]
    system_properties: Map<String, Value>,
}

/// Reads a source the way Azure spells it, case-insensitively (`DeviceMessages`,
/// `devicemessages`, …).
pub fn parse_source(text: &str) -> Option<RoutingSource> {
    RoutingSource::ALL.into_iter().find(|source| {
        let name = format!("{source:?}");
        name.eq_ignore_ascii_case(text) || source.message_source().eq_ignore_ascii_case(text)
    })
}

fn text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// Builds the message the routes see: body as given, application properties, and the system
/// properties the routing query reads (names as in conditions, case-insensitive, `$` optional).
fn sample(message: &SampleMessage, source: RoutingSource) -> Result<Message, ApiError> {
    let mut properties = SystemProperties::default();
    let mut device = SAMPLE_DEVICE.to_owned();
    let mut module = None;
    let mut generation = "0".to_owned();
    for (name, value) in &message.system_properties {
        let text = text(value);
        let value = Some(text.clone());
        match name.trim_start_matches('$').to_ascii_lowercase().as_str() {
            "contenttype" => properties.content_type = value,
            "contentencoding" => properties.content_encoding = value,
            "messageid" => properties.message_id = value,
            "correlationid" => properties.correlation_id = value,
            "userid" => properties.user_id = value,
            "to" => properties.to = value,
            "absoluteexpirytime" => properties.expiry_time = value,
            "dt-subject" => properties.subject = value,
            "dt-dataschema" | "interfaceid" | "iothub-interface-id" => properties.interface_id = value,
            "outputname" | "iothub-outputname" => properties.output_name = value,
            "connectiondeviceid" | "iothub-connection-device-id" => device = text,
            "connectionmoduleid" | "iothub-connection-module-id" => module = value,
            "connectionauthgenerationid" | "iothub-connection-auth-generation-id" => {
                generation = text;
            }
            _ => {
                return Err(bad_request(format!(
                    "unknown system property '{name}': use contentType, contentEncoding, messageId, correlationId, userId, to, absoluteExpiryTime, dt-subject, dt-dataschema, outputName, connectionDeviceId, connectionModuleId or connectionAuthGenerationId"
                )));
            }
        }
    }
    Ok(Message {
        properties,
        application_properties: message
            .app_properties
            .iter()
            .map(|(key, value)| (key.clone(), text(value)))
            .collect(),
        annotations: Annotations {
            device_id: device,
            module_id: module,
            auth_method: "{}".into(),
            auth_generation_id: generation,
            enqueued_time: Timestamp::now(),
            message_source: source.message_source().into(),
        },
        deliveries: Vec::new(),
        body: Bytes::from(message.body.clone().into_bytes()),
    })
}

fn verdict(holds: bool) -> Json<Value> {
    Json(json!({ "result": if holds { "true" } else { "false" } }))
}

/// `POST /hubs/{hub}/routing/test`.
pub(super) async fn test(
    State(state): State<OperatorState>,
    Path(hub): Path<String>,
    AzureJson(request): AzureJson<TestRequest>,
) -> Result<Json<Value>, ApiError> {
    let hub = find_hub(&state, &hub)?;
    let config = state.outpost.routing.config(&hub.name);
    let source = match &request.source {
        Some(text) => parse_source(text).ok_or_else(|| {
            bad_request(format!(
                "unknown routing source '{text}': use DeviceMessages, TwinChangeEvents, DeviceLifecycleEvents, DeviceConnectionStateEvents, DeviceJobLifecycleEvents or FileUploadNotifications"
            ))
        })?,
        None => RoutingSource::DeviceMessages,
    };
    let twin = request.twin.as_ref();
    match (&request.route, &request.condition) {
        (Some(_), Some(_)) => Err(bad_request("give either a route or a condition, not both".into())),
        (Some(name), None) => {
            let route = config.route(name).ok_or_else(|| not_found("route", &hub, name))?;
            // A named route reads its own source.
            let message = sample(&request.message, route.source)?;
            Ok(verdict(Routing::test_condition(
                &route.condition,
                &message,
                twin,
            )?))
        }
        (None, Some(condition)) => {
            let message = sample(&request.message, source)?;
            Ok(verdict(Routing::test_condition(condition, &message, twin)?))
        }
        (None, None) => {
            let message = sample(&request.message, source)?;
            let mut matched = Vec::new();
            for route in config
                .routes
                .iter()
                .filter(|r| r.is_enabled && r.source == source)
            {
                if Routing::test_condition(&route.condition, &message, twin)? {
                    matched.push(json!({
                        "name": route.name,
                        "endpointNames": route.endpoint_names,
                        "source": route.source,
                        "condition": route.condition,
                        "isEnabled": route.is_enabled,
                    }));
                }
            }
            Ok(Json(json!({ "routes": matched })))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_read_in_azure_spellings() {
        assert_eq!(
            parse_source("devicemessages"),
            Some(RoutingSource::DeviceMessages)
        );
        assert_eq!(
            parse_source("TwinChangeEvents"),
            Some(RoutingSource::TwinChangeEvents)
        );
        assert_eq!(
            parse_source("deviceConnectionStateEvents"),
            Some(RoutingSource::DeviceConnectionStateEvents)
        );
        assert_eq!(parse_source("Telemetry"), Some(RoutingSource::DeviceMessages));
        assert_eq!(parse_source("nope"), None);
    }
}
