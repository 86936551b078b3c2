//! A hub's routing configuration: endpoints, routes, enrichments and the fallback route, in the
//! camelCase shape of Azure's `routing` resource properties (routes, fallbackRoute, enrichments),
//! with Outpost's endpoint kinds. [`RoutingConfig::validate`] checks everything once, when the
//! configuration is written.

use std::collections::HashSet;

use outpost_model::{ConsumerGroupName, EndpointName, HubName};
use outpost_query::Condition;
use serde::{Deserialize, Serialize};

use crate::CoreError;

/// Most routes per hub (Azure: 100).
pub const MAX_ROUTES: usize = 100;
/// Most custom endpoints of each kind per hub (Azure: 10 per endpoint type).
pub const MAX_ENDPOINTS_PER_KIND: usize = 10;
/// Most enrichments per hub (Azure: 10 on the standard tiers).
pub const MAX_ENRICHMENTS: usize = 10;
/// Longest enrichment key or value (Azure: 128 characters).
pub const MAX_ENRICHMENT_TEXT: usize = 128;
/// Most partitions of a custom event stream.
pub const MAX_STREAM_PARTITIONS: u32 = 32;

/// What a route reads (Azure's `RoutingSource`, plus Outpost's file-upload notifications).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RoutingSource {
    /// Device-to-cloud telemetry.
    DeviceMessages,
    /// Twin tag and property changes.
    TwinChangeEvents,
    /// Device and module identities created and deleted.
    DeviceLifecycleEvents,
    /// Devices connecting and disconnecting.
    DeviceConnectionStateEvents,
    /// Device jobs of scheduled jobs finishing.
    DeviceJobLifecycleEvents,
    /// Completed file uploads (Outpost's addition: Azure delivers these only to the
    /// `fileNotifications` queue).
    FileUploadNotifications,
}

impl RoutingSource {
    /// Every source.
    pub const ALL: [Self; 6] = [
        Self::DeviceMessages,
        Self::TwinChangeEvents,
        Self::DeviceLifecycleEvents,
        Self::DeviceConnectionStateEvents,
        Self::DeviceJobLifecycleEvents,
        Self::FileUploadNotifications,
    ];

    /// The `iothub-message-source` of the messages of this source.
    pub fn message_source(self) -> &'static str {
        match self {
            Self::DeviceMessages => "Telemetry",
            Self::TwinChangeEvents => "twinChangeEvents",
            Self::DeviceLifecycleEvents => "deviceLifecycleEvents",
            Self::DeviceConnectionStateEvents => "deviceConnectionStateEvents",
            Self::DeviceJobLifecycleEvents => "deviceJobLifecycleEvents",
            Self::FileUploadNotifications => "fileUploadNotifications",
        }
    }

    /// The source of a message with this `iothub-message-source`.
    pub fn from_message_source(source: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|candidate| candidate.message_source() == source)
    }
}

/// How a storage endpoint encodes its files (Azure: `avro` is the default).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum StorageEncoding {
    /// Avro object container files, Azure's schema.
    #[default]
    Avro,
    /// One JSON object per line.
    Json,
}

/// Azure's default storage file name format.
pub const DEFAULT_FILE_NAME_FORMAT: &str = "{iothub}/{partition}/{YYYY}/{MM}/{DD}/{HH}/{mm}";

/// Where and how a storage endpoint writes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StorageEndpoint {
    /// A container of the hub's built-in blob endpoint (exactly one of this and `directory`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_name: Option<String>,
    /// An absolute directory on the server's file system.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub directory: Option<String>,
    /// File name format; must contain every one of `{iothub} {partition} {YYYY} {MM} {DD} {HH}
    /// {mm}` in any order (Azure's rule).
    #[serde(default = "default_file_name_format")]
    pub file_name_format: String,
    /// Longest time a batch waits before it is written (Azure: 60 to 720 s, default 300;
    /// Outpost allows 1 s and up so tests and demos need not wait).
    #[serde(default = "default_batch_frequency")]
    pub batch_frequency_in_seconds: u32,
    /// Largest file (Azure: 10 MiB to 500 MiB, default 300 MiB).
    #[serde(default = "default_max_chunk_size")]
    pub max_chunk_size_in_bytes: u64,
    /// File encoding.
    #[serde(default)]
    pub encoding: StorageEncoding,
}

fn default_file_name_format() -> String {
    DEFAULT_FILE_NAME_FORMAT.into()
}
fn default_batch_frequency() -> u32 {
    300
}
fn default_max_chunk_size() -> u64 {
    300 * 1024 * 1024
}

/// Where a webhook endpoint posts, and how hard it tries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookEndpoint {
    /// `http://` or `https://` URL.
    pub url: String,
    /// Extra request headers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<WebhookHeader>,
    /// Most events per POST (Event Grid: up to 5,000; default 100).
    #[serde(default = "default_max_events_per_batch")]
    pub max_events_per_batch: u32,
    /// How long a batch is retried before it is dead-lettered (default 1 h; 0: never give up).
    #[serde(default = "default_retry_window")]
    pub dead_letter_after_seconds: u32,
}

fn default_max_events_per_batch() -> u32 {
    100
}
fn default_retry_window() -> u32 {
    3600
}

/// One extra header of a webhook request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookHeader {
    /// Header name.
    pub name: String,
    /// Header value.
    pub value: String,
}

/// What kind of endpoint, with its settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum EndpointKind {
    /// A custom event stream served by the Event Hubs-compatible endpoint as entity `<name>`.
    #[serde(rename_all = "camelCase")]
    EventStream {
        /// Its partition count (default 2).
        #[serde(default = "default_stream_partitions")]
        partition_count: u32,
        /// Its consumer groups besides `$Default` (which every stream has).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        consumer_groups: Vec<ConsumerGroupName>,
    },
    /// Files in a directory or a blob container.
    Storage(StorageEndpoint),
    /// HTTP POSTs (Event Grid schema).
    Webhook(WebhookEndpoint),
}

fn default_stream_partitions() -> u32 {
    2
}

impl EndpointKind {
    /// The kind's name in errors and listings.
    pub fn name(&self) -> &'static str {
        match self {
            Self::EventStream { .. } => "eventStream",
            Self::Storage(_) => "storage",
            Self::Webhook(_) => "webhook",
        }
    }
}

/// A custom endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    /// Its name, unique in the hub (case-insensitively) and not `events`.
    pub name: EndpointName,
    /// Kind and settings.
    #[serde(flatten)]
    pub kind: EndpointKind,
}

/// A route: messages of `source` for which `condition` holds go to the endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Route {
    /// Unique in the hub: 1 to 64 ASCII letters, digits and `- _ .`.
    pub name: String,
    /// What it reads.
    pub source: RoutingSource,
    /// A routing query condition (`true` when absent).
    #[serde(default = "default_condition")]
    pub condition: String,
    /// Exactly one endpoint (Azure's rule): a custom endpoint or `events`.
    pub endpoint_names: Vec<String>,
    /// Disabled routes are kept but not evaluated.
    #[serde(default = "default_true")]
    pub is_enabled: bool,
}

fn default_condition() -> String {
    "true".into()
}
fn default_true() -> bool {
    true
}

/// The fallback route: device messages that match no route go to the built-in endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FallbackRoute {
    /// Whether it applies (Azure's default: yes).
    pub is_enabled: bool,
}

impl Default for FallbackRoute {
    fn default() -> Self {
        Self { is_enabled: true }
    }
}

/// A property added to messages delivered to some endpoints: a static value, `$iothubname`, or
/// a twin path (`$twin.tags.…`, `$twin.properties.desired.…`, `$twin.properties.reported.…`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Enrichment {
    /// The application property name.
    pub key: String,
    /// The value or reference.
    pub value: String,
    /// The endpoints whose messages get it.
    pub endpoint_names: Vec<String>,
}

/// A hub's whole routing configuration.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RoutingConfig {
    /// Custom endpoints.
    #[serde(default)]
    pub endpoints: Vec<Endpoint>,
    /// Routes, evaluated independently (a message goes to every endpoint whose route matches).
    #[serde(default)]
    pub routes: Vec<Route>,
    /// The fallback route.
    #[serde(default)]
    pub fallback_route: FallbackRoute,
    /// Message enrichments.
    #[serde(default)]
    pub enrichments: Vec<Enrichment>,
}

fn invalid(message: String) -> CoreError {
    CoreError::InvalidArgument(message)
}

fn check_name(what: &str, name: &str) -> Result<(), CoreError> {
    let ok = (1..=64).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if ok {
        Ok(())
    } else {
        Err(invalid(format!(
            "{what} '{name}' is invalid: use 1 to 64 ASCII letters, digits and - _ ., starting with a letter or digit"
        )))
    }
}

impl RoutingConfig {
    /// Returns the custom endpoint named `name` (case-insensitively, as Azure compares them).
    pub fn endpoint(&self, name: &str) -> Option<&Endpoint> {
        self.endpoints
            .iter()
            .find(|endpoint| endpoint.name.as_str().eq_ignore_ascii_case(name))
    }

    /// Returns the route named `name`.
    pub fn route(&self, name: &str) -> Option<&Route> {
        self.routes
            .iter()
            .find(|route| route.name.eq_ignore_ascii_case(name))
    }

    /// Returns whether the configuration is Azure's default: no routes, the fallback on.
    pub fn is_default(&self) -> bool {
        self.routes.is_empty() && self.fallback_route.is_enabled && self.enrichments.is_empty()
    }

    /// Checks the whole configuration: names, limits, conditions (the parse error with its
    /// position), endpoint references, enrichment values and loops.
    ///
    /// # Errors
    /// `ArgumentInvalid` naming the first problem.
    pub fn validate(&self, hub: &HubName, hub_host: &str) -> Result<(), CoreError> {
        let mut names = HashSet::new();
        for endpoint in &self.endpoints {
            let name = endpoint.name.as_str();
            if endpoint.name.is_built_in() || name.eq_ignore_ascii_case(EndpointName::BUILT_IN) {
                return Err(invalid(format!(
                    "the endpoint name '{name}' is reserved for the built-in endpoint"
                )));
            }
            if !names.insert(name.to_ascii_lowercase()) {
                return Err(invalid(format!("the endpoint name '{name}' is used twice")));
            }
            validate_endpoint(hub, hub_host, endpoint)?;
        }
        for kind in ["eventStream", "storage", "webhook"] {
            let count = self.endpoints.iter().filter(|e| e.kind.name() == kind).count();
            if count > MAX_ENDPOINTS_PER_KIND {
                return Err(invalid(format!(
                    "a hub has at most {MAX_ENDPOINTS_PER_KIND} {kind} endpoints, not {count}"
                )));
            }
        }
        if self.routes.len() > MAX_ROUTES {
            return Err(invalid(format!("a hub has at most {MAX_ROUTES} routes")));
        }
        let mut route_names = HashSet::new();
        for route in &self.routes {
            check_name("the route name", &route.name)?;
            if !route_names.insert(route.name.to_ascii_lowercase()) {
                return Err(invalid(format!("the route name '{}' is used twice", route.name)));
            }
            Condition::parse(&route.condition).map_err(|error| {
                invalid(format!(
                    "the condition of route '{}' is invalid: {error}",
                    route.name
                ))
            })?;
            match route.endpoint_names.as_slice() {
                [endpoint] => self.check_endpoint_reference(&format!("route '{}'", route.name), endpoint)?,
                _ => {
                    return Err(invalid(format!(
                        "route '{}' must name exactly one endpoint",
                        route.name
                    )));
                }
            }
        }
        if self.enrichments.len() > MAX_ENRICHMENTS {
            return Err(invalid(format!(
                "a hub has at most {MAX_ENRICHMENTS} enrichments"
            )));
        }
        let mut keys = HashSet::new();
        for enrichment in &self.enrichments {
            let key = &enrichment.key;
            if key.is_empty() || key.len() > MAX_ENRICHMENT_TEXT || key.starts_with('$') {
                return Err(invalid(format!(
                    "the enrichment key '{key}' is invalid: 1 to {MAX_ENRICHMENT_TEXT} characters, not starting with $"
                )));
            }
            if !keys.insert(key.to_ascii_lowercase()) {
                return Err(invalid(format!("the enrichment key '{key}' is used twice")));
            }
            if enrichment.value.is_empty() || enrichment.value.len() > MAX_ENRICHMENT_TEXT {
                return Err(invalid(format!(
                    "the value of enrichment '{key}' must have 1 to {MAX_ENRICHMENT_TEXT} characters"
                )));
            }
            super::router::EnrichmentValue::parse(&enrichment.value)
                .map_err(|reason| invalid(format!("the value of enrichment '{key}' is invalid: {reason}")))?;
            if enrichment.endpoint_names.is_empty() {
                return Err(invalid(format!(
                    "enrichment '{key}' must name at least one endpoint"
                )));
            }
            for endpoint in &enrichment.endpoint_names {
                self.check_endpoint_reference(&format!("enrichment '{key}'"), endpoint)?;
            }
        }
        Ok(())
    }

    fn check_endpoint_reference(&self, who: &str, endpoint: &str) -> Result<(), CoreError> {
        if endpoint == EndpointName::BUILT_IN || self.endpoint(endpoint).is_some() {
            Ok(())
        } else {
            Err(invalid(format!("{who} names the unknown endpoint '{endpoint}'")))
        }
    }
}

fn validate_endpoint(hub: &HubName, hub_host: &str, endpoint: &Endpoint) -> Result<(), CoreError> {
    let name = endpoint.name.as_str();
    match &endpoint.kind {
        EndpointKind::EventStream {
            partition_count,
            consumer_groups,
        } => {
            if consumer_groups.len() > outpost_model::MAX_CONSUMER_GROUPS {
                return Err(invalid(format!(
                    "event stream '{name}' has more than {} consumer groups",
                    outpost_model::MAX_CONSUMER_GROUPS
                )));
            }
            if *partition_count == 0 || *partition_count > MAX_STREAM_PARTITIONS {
                return Err(invalid(format!(
                    "event stream '{name}' must have 1 to {MAX_STREAM_PARTITIONS} partitions"
                )));
            }
            // The Event Hubs endpoint serves the hub's own log as entity `<hub name>`: a stream of
            // that name would be the hub's log feeding itself.
            if name.eq_ignore_ascii_case(hub.as_str()) {
                return Err(invalid(format!(
                    "event stream '{name}' would feed the hub's own log (a loop): choose another name"
                )));
            }
        }
        EndpointKind::Storage(storage) => {
            match (&storage.container_name, &storage.directory) {
                (Some(container), None) => {
                    super::storage_names::check_container(container)
                        .map_err(|reason| invalid(format!("storage endpoint '{name}': {reason}")))?;
                    // The built-in blob endpoint's own container holds device uploads.
                    if container == crate::blobs::BUILTIN_CONTAINER {
                        return Err(invalid(format!(
                            "storage endpoint '{name}': the container '{container}' is reserved for file uploads"
                        )));
                    }
                }
                (None, Some(directory)) if std::path::Path::new(directory).is_absolute() => {}
                (None, Some(_)) => {
                    return Err(invalid(format!(
                        "storage endpoint '{name}': the directory must be an absolute path"
                    )));
                }
                _ => {
                    return Err(invalid(format!(
                        "storage endpoint '{name}' needs exactly one of containerName and directory"
                    )));
                }
            }
            super::storage_names::FileNameFormat::parse(&storage.file_name_format)
                .map_err(|reason| invalid(format!("storage endpoint '{name}': {reason}")))?;
            if storage.batch_frequency_in_seconds == 0 || storage.batch_frequency_in_seconds > 720 {
                return Err(invalid(format!(
                    "storage endpoint '{name}': batchFrequencyInSeconds must be 1 to 720"
                )));
            }
            if !(1024..=500 * 1024 * 1024).contains(&storage.max_chunk_size_in_bytes) {
                return Err(invalid(format!(
                    "storage endpoint '{name}': maxChunkSizeInBytes must be 1 KiB to 500 MiB"
                )));
            }
        }
        EndpointKind::Webhook(webhook) => {
            let url = webhook.url.to_ascii_lowercase();
            let rest = url
                .strip_prefix("http://")
                .or_else(|| url.strip_prefix("https://"))
                .ok_or_else(|| {
                    invalid(format!(
                        "webhook '{name}': the URL must start with http:// or https://"
                    ))
                })?;
            let authority = rest.split('/').next().unwrap_or_default();
            if authority.is_empty() {
                return Err(invalid(format!("webhook '{name}': the URL has no host")));
            }
            // Posting to this hub's own device telemetry path would route the posts again.
            let host = authority.rsplit_once(':').map_or(authority, |(host, _)| host);
            if host == hub_host.to_ascii_lowercase() && rest.contains("/messages/events") {
                return Err(invalid(format!(
                    "webhook '{name}' posts to this hub's telemetry: a loop"
                )));
            }
            if webhook.max_events_per_batch == 0 || webhook.max_events_per_batch > 5000 {
                return Err(invalid(format!(
                    "webhook '{name}': maxEventsPerBatch must be 1 to 5000"
                )));
            }
            for header in &webhook.headers {
                let valid = !header.name.is_empty()
                    && header
                        .name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b))
                    && !header.value.bytes().any(|b| b == b'\r' || b == b'\n');
                if !valid {
                    return Err(invalid(format!(
                        "webhook '{name}': header '{}' is invalid",
                        header.name
                    )));
                }
            }
        }
    }
    Ok(())
}
