//! The Configuration resource (wire contract §5.3): the stored record, the `PUT` body, their
//! validation and Azure's JSON rendering.
//!
//! Rules (Azure "Automatic device management", "IoT Edge deployments"): an id is 1 to 128
//! lowercase letters, digits and `-:+%_#*?!(),=@;$'`; a configuration carries exactly one kind
//! of content (`deviceContent`, `moduleContent` or `modulesContent`); content is immutable after
//! creation (only `targetCondition`, `priority`, `labels` and `metrics` change); at most five
//! custom metrics; the priority is a non-negative integer.

use std::collections::BTreeMap;

use base64::Engine as _;
use outpost_model::{Etag, Timestamp, Twin, TwinLimits};
use outpost_query::Query;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::content::{EdgeModule, Setting, edge_modules, patch_of, settings_of, target_desired};
use crate::CoreError;

/// Longest configuration id (Azure's limit).
pub const MAX_ID_CHARS: usize = 128;
/// Custom metrics one configuration may define (Azure's limit).
pub const MAX_CUSTOM_METRICS: usize = 5;
/// Configurations of each family (device/module configurations, edge deployments) per hub: the
/// quota of Azure's standard tier.
pub const MAX_CONFIGURATIONS_PER_KIND: usize = 100;

/// What a configuration applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConfigurationKind {
    /// `deviceContent`: device twins (tags and desired properties).
    Device,
    /// `moduleContent`: module twins selected with `FROM devices.modules WHERE …`.
    Module,
    /// `modulesContent`: an IoT Edge deployment (module twins of edge devices).
    Edge,
}

/// The content of a configuration; the two unused members stay empty.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfigurationContent {
    /// Twin paths (`properties.desired.<path>`, `tags.<path>`) and their values.
    #[serde(default)]
    pub device_content: Map<String, Value>,
    /// Edge deployment: module name → `properties.desired[.<path>]` → value.
    #[serde(default)]
    pub modules_content: Map<String, Value>,
    /// Module twin paths (`properties.desired.<path>`) and their values.
    #[serde(default)]
    pub module_content: Map<String, Value>,
}

impl ConfigurationContent {
    /// Reads a `content` body member; `null` members count as empty.
    fn from_spec(spec: ContentSpec) -> Self {
        Self {
            device_content: spec.device_content.unwrap_or_default(),
            modules_content: spec.modules_content.unwrap_or_default(),
            module_content: spec.module_content.unwrap_or_default(),
        }
    }

    /// Returns the kind, or why the content is not exactly one kind.
    pub fn kind(&self) -> Result<ConfigurationKind, CoreError> {
        let kinds: Vec<ConfigurationKind> = [
            (!self.device_content.is_empty()).then_some(ConfigurationKind::Device),
            (!self.module_content.is_empty()).then_some(ConfigurationKind::Module),
            (!self.modules_content.is_empty()).then_some(ConfigurationKind::Edge),
        ]
        .into_iter()
        .flatten()
        .collect();
        match kinds.as_slice() {
            [kind] => Ok(*kind),
            [] => Err(invalid(
                "the content must set one of deviceContent, moduleContent or modulesContent",
            )),
            _ => Err(invalid(
                "a configuration is either a device, a module or an edge configuration: set only one of deviceContent, moduleContent and modulesContent",
            )),
        }
    }
}

/// A stored configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Configuration {
    /// The id (see [`validate_id`]).
    pub id: String,
    /// `schemaVersion` as created (`1.0` by default).
    pub schema_version: String,
    /// Free key/value labels.
    pub labels: BTreeMap<String, String>,
    /// What is applied.
    pub content: ConfigurationContent,
    /// The WHERE clause selecting the twins (`*`: every device).
    pub target_condition: String,
    /// When it was created (breaks priority ties: the newest wins).
    pub created_time_utc: Timestamp,
    /// When it was last changed.
    pub last_updated_time_utc: Timestamp,
    /// Higher wins where configurations overlap.
    pub priority: i64,
    /// Custom metrics: name → query.
    pub metric_queries: BTreeMap<String, String>,
    /// Bumped on every change; the etag is derived from it.
    pub version: u64,
}

impl Configuration {
    /// Returns the etag: base64 of the version number, as Azure's configuration etags look
    /// (`MQ==` is 1).
    pub fn etag(&self) -> Etag {
        Etag::new(base64::engine::general_purpose::STANDARD.encode(self.version.to_string()))
    }

    /// Returns the kind (checked when stored).
    pub fn kind(&self) -> ConfigurationKind {
        self.content.kind().unwrap_or(ConfigurationKind::Device)
    }
}

/// The `metrics` member of a body: only the queries are writable.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct MetricsSpec {
    /// Name → query.
    pub queries: Option<BTreeMap<String, String>>,
}

/// The `content` member of a body.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContentSpec {
    /// Device content.
    pub device_content: Option<Map<String, Value>>,
    /// Edge modules content.
    pub modules_content: Option<Map<String, Value>>,
    /// Module content.
    pub module_content: Option<Map<String, Value>>,
}

/// A `PUT /configurations/{id}` body. Read-only members SDKs echo back (`etag`,
/// `createdTimeUtc`, `systemMetrics`, `metrics.results`…) are ignored.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfigurationSpec {
    /// Must equal the id in the path when present.
    pub id: Option<String>,
    /// Defaults to `1.0`.
    pub schema_version: Option<String>,
    /// Labels.
    pub labels: Option<BTreeMap<String, String>>,
    /// Content (required on create, unchangeable afterwards).
    pub content: Option<ContentSpec>,
    /// Target condition.
    pub target_condition: Option<String>,
    /// Priority (0 by default).
    pub priority: Option<i64>,
    /// Custom metrics.
    pub metrics: Option<MetricsSpec>,
}

fn invalid(message: impl Into<String>) -> CoreError {
    CoreError::InvalidArgument(message.into())
}

/// Checks a configuration id against Azure's rule.
///
/// # Errors
/// `InvalidArgument` naming the rule.
pub fn validate_id(id: &str) -> Result<(), CoreError> {
    const SPECIALS: &str = "-:+%_#*?!(),=@;$'";
    let valid = !id.is_empty()
        && id.chars().count() <= MAX_ID_CHARS
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || SPECIALS.contains(c));
    if valid {
        Ok(())
    } else {
        Err(invalid(format!(
            "configuration id '{}' is not valid: 1 to {MAX_ID_CHARS} lowercase letters, digits and {SPECIALS}",
            id.chars().take(MAX_ID_CHARS + 1).collect::<String>()
        )))
    }
}

/// Rewrites Azure's `.[[name]]` escapes (names with characters a plain path cannot hold, as in
/// `configurations.[[my-config]].status`) into the bracket form the query crate parses
/// (`['my-config']`); string literals are left alone.
pub fn rewrite_double_brackets(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut quote: Option<char> = None;
    while let Some(c) = rest.chars().next() {
        if let Some(open) = quote {
            out.push(c);
            rest = &rest[c.len_utf8()..];
            if c == '\\' {
                if let Some(escaped) = rest.chars().next() {
                    out.push(escaped);
                    rest = &rest[escaped.len_utf8()..];
                }
            } else if c == open {
                quote = None;
            }
            continue;
        }
        if c == '\'' || c == '"' {
            quote = Some(c);
        } else if let Some(after) = rest.strip_prefix(".[[")
            && let Some(end) = after.find("]]")
        {
            let name = after[..end].replace('\\', "\\\\").replace('\'', "\\'");
            out.push_str("['");
            out.push_str(&name);
            out.push_str("']");
            rest = &after[end + 2..];
            continue;
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// A parsed target condition.
#[derive(Debug, Clone)]
pub enum Target {
    /// `*`: every device.
    All,
    /// Empty: nothing.
    Nothing,
    /// A WHERE clause.
    Where(Box<Query>),
}

impl Target {
    /// Returns whether a twin document is targeted.
    pub fn matches(&self, twin: &Value) -> bool {
        match self {
            Self::All => true,
            Self::Nothing => false,
            Self::Where(query) => query.matches(twin),
        }
    }
}

/// Parses a target condition for `kind`; an error names the problem and its line and column in
/// the condition as written.
///
/// # Errors
/// The message of the first problem.
pub fn parse_target(condition: &str, kind: ConfigurationKind) -> Result<Target, String> {
    let trimmed = condition.trim();
    if trimmed.is_empty() {
        return Ok(Target::Nothing);
    }
    if trimmed == "*" {
        return if kind == ConfigurationKind::Module {
            Err("the wildcard '*' cannot target modules; use 'from devices.modules where …'".into())
        } else {
            Ok(Target::All)
        };
    }
    let rewritten = rewrite_double_brackets(condition);
    let (prefix, text) = if kind == ConfigurationKind::Module {
        let lowered = rewritten.trim_start().to_ascii_lowercase();
        if !lowered.starts_with("from devices.modules") {
            return Err(
                "a module configuration's target condition starts with 'from devices.modules where'".into(),
            );
        }
        ("SELECT * ", rewritten)
    } else {
        ("SELECT * FROM devices WHERE ", rewritten)
    };
    let full = format!("{prefix}{text}");
    match Query::parse(&full) {
        Ok(query) => Ok(Target::Where(Box::new(query))),
        Err(error) => {
            // The prefix is one line: only line-1 columns move.
            let column = if error.line() == 1 {
                error.column().saturating_sub(prefix.len()).max(1)
            } else {
                error.column()
            };
            Err(format!(
                "{} at line {}, column {column}",
                error.message(),
                error.line()
            ))
        }
    }
}

/// Parses a custom metric query.
///
/// # Errors
/// The query's error with its position.
pub fn parse_metric(query: &str) -> Result<Query, String> {
    Query::parse(&rewrite_double_brackets(query)).map_err(|error| error.to_string())
}

/// Validates a new configuration's content against the twin rules and limits: every setting
/// must be a valid twin path, and the content alone must fit in an empty twin.
fn check_content(
    content: &ConfigurationContent,
    limits: &TwinLimits,
    now: Timestamp,
) -> Result<(), CoreError> {
    let fits = |update: &outpost_model::TwinUpdate, what: &str| {
        Twin::new(now)
            .apply_patch(update, now, limits)
            .map_err(|error| invalid(format!("{what}: {error}")))
    };
    match content.kind()? {
        ConfigurationKind::Device => {
            let settings = settings_of(&content.device_content, true).map_err(invalid)?;
            fits(&patch_of(settings.iter()), "deviceContent")
        }
        ConfigurationKind::Module => {
            let settings: Vec<Setting> = settings_of(&content.module_content, false).map_err(invalid)?;
            fits(&patch_of(settings.iter()), "moduleContent")
        }
        ConfigurationKind::Edge => {
            let modules = edge_modules(&content.modules_content).map_err(invalid)?;
            for (name, module) in &modules {
                let desired = target_desired(&Map::new(), &EdgeModule::layers_of(module));
                let update = outpost_model::TwinUpdate {
                    tags: None,
                    desired: Some(desired),
                };
                fits(&update, &format!("modulesContent of '{name}'"))?;
            }
            Ok(())
        }
    }
}

fn check_metrics(queries: &BTreeMap<String, String>) -> Result<(), CoreError> {
    if queries.len() > MAX_CUSTOM_METRICS {
        return Err(invalid(format!(
            "a configuration has at most {MAX_CUSTOM_METRICS} custom metrics"
        )));
    }
    for (name, query) in queries {
        if name.is_empty() {
            return Err(invalid("a custom metric needs a name"));
        }
        parse_metric(query).map_err(|error| invalid(format!("metric '{name}' is not valid: {error}")))?;
    }
    Ok(())
}

fn check_priority(priority: i64) -> Result<i64, CoreError> {
    if priority < 0 {
        return Err(invalid("the priority is a non-negative integer"));
    }
    Ok(priority)
}

/// Builds a new configuration from a create request.
///
/// # Errors
/// `InvalidArgument` for a body that breaks a rule.
pub fn new_configuration(
    id: &str,
    spec: ConfigurationSpec,
    limits: &TwinLimits,
    now: Timestamp,
) -> Result<Configuration, CoreError> {
    validate_id(id)?;
    check_body_id(spec.id.as_deref(), id)?;
    let content = ConfigurationContent::from_spec(
        spec.content
            .ok_or_else(|| invalid("the configuration content is required"))?,
    );
    let kind = content.kind()?;
    check_content(&content, limits, now)?;
    let target_condition = spec.target_condition.unwrap_or_default();
    parse_target(&target_condition, kind)
        .map_err(|error| invalid(format!("the target condition is not valid: {error}")))?;
    let metric_queries = spec.metrics.and_then(|m| m.queries).unwrap_or_default();
    check_metrics(&metric_queries)?;
    Ok(Configuration {
        id: id.to_owned(),
        schema_version: spec
            .schema_version
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| "1.0".into()),
        labels: spec.labels.unwrap_or_default(),
        content,
        target_condition,
        created_time_utc: now,
        last_updated_time_utc: now,
        priority: check_priority(spec.priority.unwrap_or(0))?,
        metric_queries,
        version: 1,
    })
}

/// Applies an update request: `targetCondition`, `priority`, `labels` and `metrics` change;
/// content sent must equal the stored content.
///
/// # Errors
/// `InvalidArgument` for a body that breaks a rule or changes the content.
pub fn updated_configuration(
    mut current: Configuration,
    spec: ConfigurationSpec,
    now: Timestamp,
) -> Result<Configuration, CoreError> {
    check_body_id(spec.id.as_deref(), &current.id)?;
    if let Some(content) = spec.content {
        let content = ConfigurationContent::from_spec(content);
        let empty = content == ConfigurationContent::default();
        if !empty && content != current.content {
            return Err(invalid(
                "the content of a configuration cannot be updated; create a new configuration",
            ));
        }
    }
    if let Some(condition) = spec.target_condition {
        parse_target(&condition, current.kind())
            .map_err(|error| invalid(format!("the target condition is not valid: {error}")))?;
        current.target_condition = condition;
    }
    if let Some(priority) = spec.priority {
        current.priority = check_priority(priority)?;
    }
    if let Some(labels) = spec.labels {
        current.labels = labels;
    }
    if let Some(queries) = spec.metrics.and_then(|m| m.queries) {
        check_metrics(&queries)?;
        current.metric_queries = queries;
    }
    current.last_updated_time_utc = now;
    current.version += 1;
    Ok(current)
}

fn check_body_id(body_id: Option<&str>, path_id: &str) -> Result<(), CoreError> {
    match body_id {
        Some(body_id) if !body_id.is_empty() && body_id != path_id => Err(invalid(format!(
            "id '{body_id}' in the body does not match '{path_id}' in the path"
        ))),
        _ => Ok(()),
    }
}

/// Counts a reconcile pass computed for one configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigurationMetrics {
    /// System metrics by name (`targetedCount`, `appliedCount`, and for edge deployments
    /// `reportedSuccessfulCount`, `reportedFailedCount`).
    pub system: BTreeMap<String, u64>,
    /// Custom metric results by name.
    pub custom: BTreeMap<String, u64>,
}

/// The system metric queries Azure shows for a configuration (informational).
fn system_queries(configuration: &Configuration) -> Value {
    let id = &configuration.id;
    match configuration.kind() {
        ConfigurationKind::Edge => {
            let agent = "select deviceId from devices.modules where moduleId = '$edgeAgent'";
            json!({
                "targetedCount": format!("select deviceId from devices where capabilities.iotEdge = true and {}", configuration.target_condition),
                "appliedCount": format!("{agent} and configurations.[[{id}]].status = 'Applied'"),
                "reportedSuccessfulCount": format!("{agent} and configurations.[[{id}]].status = 'Applied' and properties.desired.$version = properties.reported.lastDesiredVersion and properties.reported.lastDesiredStatus.code = 200"),
                "reportedFailedCount": format!("{agent} and configurations.[[{id}]].status = 'Applied' and properties.desired.$version = properties.reported.lastDesiredVersion and properties.reported.lastDesiredStatus.code != 200"),
            })
        }
        ConfigurationKind::Module => json!({
            "targetedCount": format!("select deviceId, moduleId {}", configuration.target_condition),
            "appliedCount": format!("select deviceId, moduleId from devices.modules where configurations.[[{id}]].status = 'Applied'"),
        }),
        ConfigurationKind::Device => json!({
            "targetedCount": format!("select deviceId from devices where {}", configuration.target_condition),
            "appliedCount": format!("select deviceId from devices where configurations.[[{id}]].status = 'Applied'"),
        }),
    }
}

/// Renders a configuration in Azure's shape with the latest metrics of the reconciler.
pub fn configuration_json(configuration: &Configuration, metrics: Option<&ConfigurationMetrics>) -> Value {
    let mut system: BTreeMap<String, u64> = BTreeMap::new();
    system.insert("targetedCount".into(), 0);
    system.insert("appliedCount".into(), 0);
    if configuration.kind() == ConfigurationKind::Edge {
        system.insert("reportedSuccessfulCount".into(), 0);
        system.insert("reportedFailedCount".into(), 0);
    }
    let mut custom: BTreeMap<String, u64> = BTreeMap::new();
    if let Some(metrics) = metrics {
        system.extend(metrics.system.iter().map(|(k, v)| (k.clone(), *v)));
        for name in configuration.metric_queries.keys() {
            custom.insert(name.clone(), metrics.custom.get(name).copied().unwrap_or(0));
        }
    }
    json!({
        "id": configuration.id,
        "schemaVersion": configuration.schema_version,
        "labels": configuration.labels,
        "content": configuration.content,
        "targetCondition": configuration.target_condition,
        "createdTimeUtc": configuration.created_time_utc,
        "lastUpdatedTimeUtc": configuration.last_updated_time_utc,
        "priority": configuration.priority,
        "systemMetrics": { "results": system, "queries": system_queries(configuration) },
        "metrics": { "results": custom, "queries": configuration.metric_queries },
        "etag": configuration.etag(),
    })
}
