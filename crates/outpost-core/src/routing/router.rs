//! Route evaluation: which endpoints a message goes to, with which enrichments. Pure: the
//! caller supplies the message and, when a route or enrichment reads `$twin`, the twin.

use std::borrow::Cow;
use std::cell::OnceCell;

use outpost_model::{Delivery, EndpointName, Message};
use outpost_query::{Condition, PathSegment, Scope, lookup};
use serde_json::Value;

use super::model::{RoutingConfig, RoutingSource};

/// The value of an enrichment: a static text, the hub's name, or a twin path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnrichmentValue {
    /// Used as written.
    Static(String),
    /// `$iothubname`.
    HubName,
    /// `$twin.…`: the path below the twin (`tags.site`, `properties.desired.x`).
    Twin(Vec<String>),
}

impl EnrichmentValue {
    /// Reads an enrichment value as Azure does: `$iothubname`, `$twin.tags.…`,
    /// `$twin.properties.desired.…` and `$twin.properties.reported.…` are references, any other
    /// text not starting with `$` is static.
    ///
    /// # Errors
    /// Why a `$` value is not a known reference.
    pub fn parse(value: &str) -> Result<Self, String> {
        if !value.starts_with('$') {
            return Ok(Self::Static(value.to_owned()));
        }
        if value.eq_ignore_ascii_case("$iothubname") {
            return Ok(Self::HubName);
        }
        let path: Vec<String> = value
            .strip_prefix("$twin.")
            .map(|rest| rest.split('.').map(str::to_owned).collect())
            .unwrap_or_default();
        let valid = match path.as_slice() {
            [tags, rest @ ..] if tags == "tags" => !rest.is_empty(),
            [properties, section, rest @ ..] if properties == "properties" => {
                (section == "desired" || section == "reported") && !rest.is_empty()
            }
            _ => false,
        };
        if valid && path.iter().all(|segment| !segment.is_empty()) {
            Ok(Self::Twin(path))
        } else {
            Err(format!(
                "'{value}' is not $iothubname, $twin.tags.<path> or $twin.properties.<desired|reported>.<path>"
            ))
        }
    }

    fn reads_twin(&self) -> bool {
        matches!(self, Self::Twin(_))
    }

    /// The enrichment's text for one message. A twin path that does not exist leaves the
    /// reference text as the value (so the property says what was missing), strings are taken
    /// as they are, other JSON values as their JSON text.
    fn resolve(&self, written: &str, hub: &str, twin: Option<&Value>) -> String {
        match self {
            Self::Static(text) => text.clone(),
            Self::HubName => hub.to_owned(),
            Self::Twin(path) => {
                let found = twin.and_then(|twin| {
                    path.iter()
                        .try_fold(twin, |value, segment| value.as_object()?.get(segment))
                });
                match found {
                    Some(Value::String(text)) => text.clone(),
                    Some(value) => value.to_string(),
                    None => written.to_owned(),
                }
            }
        }
    }
}

#[derive(Debug)]
struct CompiledRoute {
    source: RoutingSource,
    condition: Condition,
    endpoint: String,
    reads_twin: bool,
}

#[derive(Debug)]
struct CompiledEnrichment {
    key: String,
    written: String,
    value: EnrichmentValue,
    endpoints: Vec<String>,
}

/// A hub's routing configuration, checked and compiled for evaluation.
#[derive(Debug)]
pub struct Router {
    config: RoutingConfig,
    routes: Vec<CompiledRoute>,
    enrichments: Vec<CompiledEnrichment>,
}

/// Returns whether an expression reads `$twin`.
fn reads_twin(condition: &Condition) -> bool {
    // The printed condition names every path it reads; `$twin` can only appear as a path root.
    condition.to_string().contains("$twin")
}

impl Router {
    /// Compiles a configuration that [`RoutingConfig::validate`] accepted (routes whose
    /// condition does not parse are skipped, which validation prevents).
    pub fn new(config: RoutingConfig) -> Self {
        let routes = config
            .routes
            .iter()
            .filter(|route| route.is_enabled)
            .filter_map(|route| {
                let condition = Condition::parse(&route.condition).ok()?;
                Some(CompiledRoute {
                    source: route.source,
                    reads_twin: reads_twin(&condition),
                    condition,
                    endpoint: canonical_endpoint(&config, route.endpoint_names.first()?),
                })
            })
            .collect();
        let enrichments = config
            .enrichments
            .iter()
            .filter_map(|enrichment| {
                Some(CompiledEnrichment {
                    key: enrichment.key.clone(),
                    written: enrichment.value.clone(),
                    value: EnrichmentValue::parse(&enrichment.value).ok()?,
                    endpoints: enrichment
                        .endpoint_names
                        .iter()
                        .map(|name| canonical_endpoint(&config, name))
                        .collect(),
                })
            })
            .collect();
        Self {
            config,
            routes,
            enrichments,
        }
    }

    /// Returns the configuration.
    pub fn config(&self) -> &RoutingConfig {
        &self.config
    }

    /// Returns whether any message of `source` can be delivered anywhere (system events of
    /// sources without routes are not even built).
    pub fn wants(&self, source: RoutingSource) -> bool {
        (source == RoutingSource::DeviceMessages && self.config.fallback_route.is_enabled)
            || self.routes.iter().any(|route| route.source == source)
    }

    /// Returns whether routing a message of `source` needs the sender's twin.
    pub fn needs_twin(&self, source: RoutingSource) -> bool {
        self.routes
            .iter()
            .any(|route| route.source == source && route.reads_twin)
            || self.enrichments.iter().any(|e| e.value.reads_twin())
    }

    /// Returns the endpoints `message` goes to, each with its enrichments: every enabled route
    /// of the message's source whose condition holds, and the built-in endpoint through the
    /// fallback route when no route of a device message matched (Azure's rule).
    pub fn route(&self, hub: &str, message: &Message, twin: Option<&Value>) -> Vec<Delivery> {
        let source = RoutingSource::from_message_source(&message.annotations.message_source)
            .unwrap_or(RoutingSource::DeviceMessages);
        let scope = MessageScope::new(message, twin);
        let mut endpoints: Vec<&str> = Vec::new();
        for route in self.routes.iter().filter(|route| route.source == source) {
            if route.condition.evaluate(&scope) && !endpoints.contains(&route.endpoint.as_str()) {
                endpoints.push(&route.endpoint);
            }
        }
        if endpoints.is_empty() {
            // No route matched: device messages take the fallback route (the common case,
            // built without an intermediate list).
            let fallback = source == RoutingSource::DeviceMessages && self.config.fallback_route.is_enabled;
            return if fallback {
                vec![self.delivery(EndpointName::BUILT_IN, hub, twin)]
            } else {
                Vec::new()
            };
        }
        endpoints
            .into_iter()
            .map(|endpoint| self.delivery(endpoint, hub, twin))
            .collect()
    }

    /// The delivery to `endpoint`, with its enrichments resolved.
    fn delivery(&self, endpoint: &str, hub: &str, twin: Option<&Value>) -> Delivery {
        Delivery {
            endpoint: if endpoint == EndpointName::BUILT_IN {
                std::borrow::Cow::Borrowed(EndpointName::BUILT_IN)
            } else {
                std::borrow::Cow::Owned(endpoint.to_owned())
            },
            enrichments: self
                .enrichments
                .iter()
                .filter(|enrichment| enrichment.endpoints.iter().any(|e| e == endpoint))
                .map(|enrichment| {
                    (
                        enrichment.key.clone(),
                        enrichment.value.resolve(&enrichment.written, hub, twin),
                    )
                })
                .collect(),
        }
    }

    /// Evaluates one route's condition against a message (`outpost route test`).
    pub fn condition_holds(condition: &Condition, message: &Message, twin: Option<&Value>) -> bool {
        condition.evaluate(&MessageScope::new(message, twin))
    }
}

/// The endpoint's name as the configuration spells it (`events` for the built-in one), so
/// references that differ in case meet.
fn canonical_endpoint(config: &RoutingConfig, name: &str) -> String {
    config.endpoint(name).map_or_else(
        || EndpointName::BUILT_IN.to_owned(),
        |endpoint| endpoint.name.to_string(),
    )
}

/// How names resolve in a routing condition: `$body.…` into the JSON body (only when the message
/// says `application/json` in UTF-8), `$twin.…` into the twin, `$<system property>` into the
/// system properties, any other name into the application properties.
struct MessageScope<'m> {
    message: &'m Message,
    twin: Option<&'m Value>,
    body: OnceCell<Option<Value>>,
}

impl<'m> MessageScope<'m> {
    fn new(message: &'m Message, twin: Option<&'m Value>) -> Self {
        Self {
            message,
            twin,
            body: OnceCell::new(),
        }
    }

    /// The body as JSON, when the message declares JSON in UTF-8 and the body parses (Azure:
    /// otherwise `$body` conditions are false).
    fn body(&self) -> Option<&Value> {
        self.body
            .get_or_init(|| {
                let properties = &self.message.properties;
                let json = properties
                    .content_type
                    .as_deref()
                    .is_some_and(|ct| ct.trim().to_ascii_lowercase().starts_with("application/json"));
                let utf8 = properties
                    .content_encoding
                    .as_deref()
                    .is_some_and(|ce| ce.eq_ignore_ascii_case("utf-8") || ce.eq_ignore_ascii_case("utf8"));
                (json && utf8)
                    .then(|| serde_json::from_slice(&self.message.body).ok())
                    .flatten()
            })
            .as_ref()
    }

    /// A system property by its routing-query name (case-insensitive, wire reference of the
    /// routing query syntax: `$contentType`, `$connectionDeviceId`, …).
    fn system_property(&self, name: &str) -> Option<String> {
        let p = &self.message.properties;
        let a = &self.message.annotations;
        match name.to_ascii_lowercase().as_str() {
            "contenttype" => p.content_type.clone(),
            "contentencoding" => p.content_encoding.clone(),
            "messageid" => p.message_id.clone(),
            "correlationid" => p.correlation_id.clone(),
            "userid" => p.user_id.clone(),
            "to" => p.to.clone(),
            "absoluteexpirytime" => p.expiry_time.clone(),
            "connectiondeviceid" | "iothub-connection-device-id" => Some(a.device_id.clone()),
            "connectionmoduleid" | "iothub-connection-module-id" => a.module_id.clone(),
            // System events carry no authentication stamps (empty): undefined, not "".
            "connectionauthgenerationid" | "iothub-connection-auth-generation-id" => {
                Some(a.auth_generation_id.clone()).filter(|id| !id.is_empty())
            }
            "enqueuedtime" | "iothub-enqueuedtime" => Some(a.enqueued_time.to_string()),
            "iothub-message-source" | "messagesource" => Some(a.message_source.clone()),
            "dt-subject" => p.subject.clone(),
            "dt-dataschema" | "iothub-interface-id" | "interfaceid" => p.interface_id.clone(),
            "outputname" | "iothub-outputname" => p.output_name.clone(),
            _ => None,
        }
    }
}

impl Scope for MessageScope<'_> {
    fn resolve(&self, path: &[PathSegment]) -> Option<Cow<'_, Value>> {
        let (PathSegment::Name(first), rest) = path.split_first()? else {
            return None;
        };
        if first.eq_ignore_ascii_case("$body") {
            return lookup(self.body()?, rest).map(Cow::Borrowed);
        }
        if first.eq_ignore_ascii_case("$twin") {
            return lookup(self.twin?, rest).map(Cow::Borrowed);
        }
        if !rest.is_empty() {
            // Properties are strings: nothing lies below them.
            return None;
        }
        if let Some(name) = first.strip_prefix('$') {
            return self
                .system_property(name)
                .map(|value| Cow::Owned(Value::String(value)));
        }
        self.message
            .application_properties
            .iter()
            .find(|(key, _)| key == first)
            .map(|(_, value)| Cow::Owned(Value::String(value.clone())))
    }
}

#[cfg(test)]
#[path = "router_tests.rs"]
mod tests;
