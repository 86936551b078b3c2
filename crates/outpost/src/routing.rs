//! Message routing verbs, through the operator API's `/hubs/{hub}/routing/…` routes:
//!
//! * `route create|list|show|update|delete|test` and `route fallback show|set` (mirror
//!   `az iot hub route` / `az iot hub message-route`, including `message-route test`);
//! * `routing-endpoint create|list|show|delete|health` and `routing-endpoint consumer-group
//!   create|delete|list` (mirror `az iot hub routing-endpoint`, with Outpost's endpoint kinds:
//!   event streams, storage, webhooks);
//! * `message-enrichment create|list|update|delete` (mirror `az iot hub message-enrichment`).

use anyhow::Context as _;
use clap::{ArgAction, Subcommand};
use hyper::Method;
use serde_json::{Value, json};

use crate::GlobalArgs;
use crate::admin::{connect, encode, hub_name, print};
use crate::client::OperatorClient;

#[path = "routing_endpoints.rs"]
mod endpoints;

pub use endpoints::{EndpointCommand, endpoint};

/// Azure's routing sources as `az` spells them (any case), plus Outpost's file-upload
/// notifications; the value is the name the API takes.
const SOURCES: [(&str, &str); 6] = [
    ("devicemessages", "DeviceMessages"),
    ("twinchangeevents", "TwinChangeEvents"),
    ("devicelifecycleevents", "DeviceLifecycleEvents"),
    ("deviceconnectionstateevents", "DeviceConnectionStateEvents"),
    ("devicejoblifecycleevents", "DeviceJobLifecycleEvents"),
    ("fileuploadnotifications", "FileUploadNotifications"),
];

fn parse_source(text: &str) -> Result<String, String> {
    SOURCES
        .iter()
        .find(|(spelling, _)| spelling.eq_ignore_ascii_case(text))
        .map(|(_, name)| (*name).to_owned())
        .ok_or_else(|| {
            let known: Vec<&str> = SOURCES.iter().map(|(spelling, _)| *spelling).collect();
            format!("unknown source '{text}'; use one of {}", known.join(", "))
        })
}

#[derive(Debug, Subcommand)]
pub enum RouteCommand {
    /// Creates a route (fails when the name is taken).
    Create(RouteArgs),
    /// Lists the hub's routes.
    List {
        /// The hub name (default: the first hub).
        #[arg(long)]
        hub: Option<String>,
        /// Only routes of this source.
        #[arg(long, short = 's', value_parser = parse_source)]
        source: Option<String>,
    },
    /// Shows one route.
    Show(RouteName),
    /// Changes a route's source, condition, endpoint or enabled flag.
    Update(RouteUpdateArgs),
    /// Deletes a route.
    Delete(RouteName),
    /// Evaluates a route (or, without --name, every enabled route of the source) against a sample
    /// message and twin, without sending anything (mirrors `az iot hub message-route test`).
    Test(RouteTestArgs),
    /// Shows or sets the fallback route (device messages no route takes go to `events`).
    Fallback {
        #[command(subcommand)]
        command: FallbackCommand,
    },
}

#[derive(Debug, clap::Args)]
pub struct RouteName {
    /// The hub name (default: the first hub).
    #[arg(long)]
    hub: Option<String>,
    /// The route name.
    #[arg(long, short = 'n')]
    name: String,
}

#[derive(Debug, clap::Args)]
pub struct RouteArgs {
    #[command(flatten)]
    route: RouteName,
    /// What the route reads: devicemessages, twinchangeevents, devicelifecycleevents,
    /// deviceconnectionstateevents, devicejoblifecycleevents, fileuploadnotifications.
    #[arg(long, short = 's', value_parser = parse_source)]
    source: String,
    /// The routing query condition (default: true).
    #[arg(long, short = 'c', default_value = "true")]
    condition: String,
    /// The endpoint: a custom endpoint's name or `events` (the built-in one).
    #[arg(long = "endpoint", visible_alias = "en", visible_alias = "endpoint-name")]
    endpoint: String,
    /// Whether the route is evaluated.
    #[arg(long, short = 'e', default_value_t = true, action = ArgAction::Set)]
    enabled: bool,
}

#[derive(Debug, clap::Args)]
pub struct RouteUpdateArgs {
    #[command(flatten)]
    route: RouteName,
    /// A new source.
    #[arg(long, short = 's', value_parser = parse_source)]
    source: Option<String>,
    /// A new condition.
    #[arg(long, short = 'c')]
    condition: Option<String>,
    /// A new endpoint.
    #[arg(long = "endpoint", visible_alias = "en", visible_alias = "endpoint-name")]
    endpoint: Option<String>,
    /// Enable or disable the route.
    #[arg(long, short = 'e', action = ArgAction::Set)]
    enabled: Option<bool>,
}

#[derive(Debug, clap::Args)]
pub struct RouteTestArgs {
    /// The hub name (default: the first hub).
    #[arg(long)]
    hub: Option<String>,
    /// The route to test; without it every enabled route of --source is tested.
    #[arg(long, short = 'n')]
    name: Option<String>,
    /// A condition to test instead of a stored route.
    #[arg(long, short = 'c', conflicts_with = "name")]
    condition: Option<String>,
    /// The sample's source (default: devicemessages).
    #[arg(long, short = 's', value_parser = parse_source)]
    source: Option<String>,
    /// The sample message's body.
    #[arg(long, short = 'b', default_value = "")]
    body: String,
    /// Application properties: `k1=v1;k2=v2`.
    #[arg(long, visible_alias = "ap")]
    app_properties: Option<String>,
    /// System properties: `contentType=application/json;contentEncoding=utf-8;connectionDeviceId=d1`.
    #[arg(long, visible_alias = "sp")]
    system_properties: Option<String>,
    /// The sample twin as JSON: `{"tags": {...}, "properties": {"desired": {...}, "reported": {...}}}`.
    #[arg(long, visible_alias = "tp")]
    twin_properties: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum FallbackCommand {
    /// Shows the fallback route.
    Show {
        /// The hub name (default: the first hub).
        #[arg(long)]
        hub: Option<String>,
    },
    /// Enables or disables the fallback route.
    Set {
        /// The hub name (default: the first hub).
        #[arg(long)]
        hub: Option<String>,
        /// true or false.
        #[arg(long, short = 'e', action = ArgAction::Set)]
        enabled: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum EnrichmentCommand {
    /// Adds an enrichment (fails when the key is taken).
    Create(EnrichmentArgs),
    /// Lists the hub's enrichments.
    List {
        /// The hub name (default: the first hub).
        #[arg(long)]
        hub: Option<String>,
    },
    /// Changes an enrichment's value or endpoints.
    Update(EnrichmentUpdateArgs),
    /// Deletes an enrichment.
    Delete {
        /// The hub name (default: the first hub).
        #[arg(long)]
        hub: Option<String>,
        /// The property name.
        #[arg(long, short = 'k')]
        key: String,
    },
}

#[derive(Debug, clap::Args)]
pub struct EnrichmentArgs {
    /// The hub name (default: the first hub).
    #[arg(long)]
    hub: Option<String>,
    /// The application property added.
    #[arg(long, short = 'k')]
    key: String,
    /// A static value, `$iothubname`, or `$twin.tags.…` / `$twin.properties.desired|reported.…`.
    #[arg(long, short = 'v')]
    value: String,
    /// The endpoints whose messages get it, comma-separated (`events` is the built-in one).
    #[arg(long, short = 'e', value_delimiter = ',', num_args = 1.., required = true)]
    endpoints: Vec<String>,
}

#[derive(Debug, clap::Args)]
pub struct EnrichmentUpdateArgs {
    /// The hub name (default: the first hub).
    #[arg(long)]
    hub: Option<String>,
    /// The application property.
    #[arg(long, short = 'k')]
    key: String,
    /// A new value.
    #[arg(long, short = 'v')]
    value: Option<String>,
    /// New endpoints, comma-separated.
    #[arg(long, short = 'e', value_delimiter = ',', num_args = 1..)]
    endpoints: Option<Vec<String>>,
}

fn routing_path(hub: &str, rest: &str) -> String {
    format!("/hubs/{}/routing{rest}", encode(hub))
}

fn field<'a>(value: &'a Value, name: &str) -> &'a str {
    value.get(name).and_then(Value::as_str).unwrap_or("-")
}

fn list(value: &Value, name: &str) -> String {
    value
        .get(name)
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default()
}

fn route_row(route: &Value) -> String {
    let enabled = if route.get("isEnabled").and_then(Value::as_bool).unwrap_or(true) {
        "enabled"
    } else {
        "disabled"
    };
    format!(
        "{:<24} {:<28} {enabled:<8} -> {:<20} {}",
        field(route, "name"),
        field(route, "source"),
        list(route, "endpointNames"),
        field(route, "condition")
    )
}

fn rows(values: &Value, row: impl Fn(&Value) -> String) -> String {
    let rows: Vec<String> = values.as_array().into_iter().flatten().map(row).collect();
    if rows.is_empty() {
        "(none)".into()
    } else {
        rows.join("\n")
    }
}

fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_default()
}

pub async fn route(global: &GlobalArgs, command: RouteCommand) -> anyhow::Result<()> {
    let client = connect(global)?;
    match command {
        RouteCommand::Create(args) => {
            let hub = hub_name(&client, args.route.hub).await?;
            let body = json!({
                "name": args.route.name,
                "source": args.source,
                "condition": args.condition,
                "endpointNames": [args.endpoint],
                "isEnabled": args.enabled,
            });
            let route = client
                .call(Method::POST, &routing_path(&hub, "/routes"), Some(&body))
                .await?
                .body;
            print(global.output, &route, |route| {
                format!(
                    "Created route {} of hub {hub}\n{}",
                    field(route, "name"),
                    route_row(route)
                )
            });
        }
        RouteCommand::List { hub, source } => {
            let hub = hub_name(&client, hub).await?;
            let reply = client
                .call(Method::GET, &routing_path(&hub, "/routes"), None)
                .await?
                .body;
            let mut routes = reply.get("value").cloned().unwrap_or(Value::Null);
            if let (Some(source), Value::Array(items)) = (source, &mut routes) {
                items.retain(|route| route.get("source").and_then(Value::as_str) == Some(source.as_str()));
            }
            print(global.output, &routes, |routes| rows(routes, route_row));
        }
        RouteCommand::Show(args) => {
            let hub = hub_name(&client, args.hub).await?;
            let path = routing_path(&hub, &format!("/routes/{}", encode(&args.name)));
            let route = client.call(Method::GET, &path, None).await?.body;
            print(global.output, &route, pretty);
        }
        RouteCommand::Update(args) => {
            let hub = hub_name(&client, args.route.hub).await?;
            let path = routing_path(&hub, &format!("/routes/{}", encode(&args.route.name)));
            let mut route = client.call(Method::GET, &path, None).await?.body;
            if let Value::Object(fields) = &mut route {
                if let Some(source) = args.source {
                    fields.insert("source".into(), json!(source));
                }
                if let Some(condition) = args.condition {
                    fields.insert("condition".into(), json!(condition));
                }
                if let Some(endpoint) = args.endpoint {
                    fields.insert("endpointNames".into(), json!([endpoint]));
                }
                if let Some(enabled) = args.enabled {
                    fields.insert("isEnabled".into(), json!(enabled));
                }
            }
            let route = client.call(Method::PUT, &path, Some(&route)).await?.body;
            print(global.output, &route, |route| {
                format!(
                    "Updated route {} of hub {hub}\n{}",
                    field(route, "name"),
                    route_row(route)
                )
            });
        }
        RouteCommand::Delete(args) => {
            let hub = hub_name(&client, args.hub).await?;
            let path = routing_path(&hub, &format!("/routes/{}", encode(&args.name)));
            client.call(Method::DELETE, &path, None).await?;
            let name = args.name;
            print(global.output, &json!({ "deleted": name }), |_| {
                format!("Deleted route {name} of hub {hub}")
            });
        }
        RouteCommand::Test(args) => test(&client, global, args).await?,
        RouteCommand::Fallback { command } => fallback(&client, global, command).await?,
    }
    Ok(())
}

async fn test(client: &OperatorClient, global: &GlobalArgs, args: RouteTestArgs) -> anyhow::Result<()> {
    let hub = hub_name(client, args.hub).await?;
    let twin: Option<Value> = match &args.twin_properties {
        Some(text) => Some(serde_json::from_str(text).context("--twin-properties is not JSON")?),
        None => None,
    };
    let body = json!({
        "route": args.name,
        "condition": args.condition,
        "source": args.source,
        "message": {
            "body": args.body,
            "appProperties": crate::admin::parse_props(args.app_properties.as_deref(), "--app-properties")?,
            "systemProperties": crate::admin::parse_props(args.system_properties.as_deref(), "--system-properties")?,
        },
        "twin": twin,
    });
    // The API reads absent and null alike, but keep the request minimal.
    let body = match body {
        Value::Object(fields) => Value::Object(fields.into_iter().filter(|(_, v)| !v.is_null()).collect()),
        other => other,
    };
    let reply = client
        .call(Method::POST, &routing_path(&hub, "/test"), Some(&body))
        .await?
        .body;
    let tested = args.name.clone();
    print(global.output, &reply, |reply| {
        match reply.get("result").and_then(Value::as_str) {
            Some(result) => match &tested {
                Some(name) => format!("Route {name}: {result}"),
                None => format!("Condition: {result}"),
            },
            None => {
                let routes = reply.get("routes").cloned().unwrap_or(Value::Null);
                if routes.as_array().is_some_and(Vec::is_empty) {
                    "No route matches".into()
                } else {
                    format!("Matching routes:\n{}", rows(&routes, route_row))
                }
            }
        }
    });
    Ok(())
}

async fn fallback(
    client: &OperatorClient,
    global: &GlobalArgs,
    command: FallbackCommand,
) -> anyhow::Result<()> {
    let (hub, reply) = match command {
        FallbackCommand::Show { hub } => {
            let hub = hub_name(client, hub).await?;
            let reply = client
                .call(Method::GET, &routing_path(&hub, "/fallback"), None)
                .await?;
            (hub, reply.body)
        }
        FallbackCommand::Set { hub, enabled } => {
            let hub = hub_name(client, hub).await?;
            let body = json!({ "isEnabled": enabled });
            let reply = client
                .call(Method::PUT, &routing_path(&hub, "/fallback"), Some(&body))
                .await?;
            (hub, reply.body)
        }
    };
    print(global.output, &reply, |reply| {
        let enabled = reply.get("isEnabled").and_then(Value::as_bool).unwrap_or(false);
        format!(
            "Fallback route of hub {hub}: {} (device messages no route takes -> events)",
            if enabled { "enabled" } else { "disabled" }
        )
    });
    Ok(())
}

/// Builds an endpoint's JSON from the flags its type uses; flags of another type are refused.
fn enrichment_row(enrichment: &Value) -> String {
    format!(
        "{:<24} {:<40} -> {}",
        field(enrichment, "key"),
        field(enrichment, "value"),
        list(enrichment, "endpointNames")
    )
}

pub async fn enrichment(global: &GlobalArgs, command: EnrichmentCommand) -> anyhow::Result<()> {
    let client = connect(global)?;
    match command {
        EnrichmentCommand::Create(args) => {
            let hub = hub_name(&client, args.hub).await?;
            let body = json!({ "key": args.key, "value": args.value, "endpointNames": args.endpoints });
            let enrichment = client
                .call(Method::POST, &routing_path(&hub, "/enrichments"), Some(&body))
                .await?
                .body;
            print(global.output, &enrichment, |e| {
                format!("Created enrichment of hub {hub}\n{}", enrichment_row(e))
            });
        }
        EnrichmentCommand::List { hub } => {
            let hub = hub_name(&client, hub).await?;
            let reply = client
                .call(Method::GET, &routing_path(&hub, "/enrichments"), None)
                .await?
                .body;
            let enrichments = reply.get("value").cloned().unwrap_or(Value::Null);
            print(global.output, &enrichments, |list| rows(list, enrichment_row));
        }
        EnrichmentCommand::Update(args) => {
            let hub = hub_name(&client, args.hub).await?;
            let path = routing_path(&hub, &format!("/enrichments/{}", encode(&args.key)));
            // Update changes an existing enrichment only (PUT alone would create it).
            let mut enrichment = client.call(Method::GET, &path, None).await?.body;
            if let Value::Object(fields) = &mut enrichment {
                if let Some(value) = args.value {
                    fields.insert("value".into(), json!(value));
                }
                if let Some(endpoints) = args.endpoints {
                    fields.insert("endpointNames".into(), json!(endpoints));
                }
            }
            let enrichment = client.call(Method::PUT, &path, Some(&enrichment)).await?.body;
            print(global.output, &enrichment, |e| {
                format!("Updated enrichment of hub {hub}\n{}", enrichment_row(e))
            });
        }
        EnrichmentCommand::Delete { hub, key } => {
            let hub = hub_name(&client, hub).await?;
            let path = routing_path(&hub, &format!("/enrichments/{}", encode(&key)));
            client.call(Method::DELETE, &path, None).await?;
            print(global.output, &json!({ "deleted": key }), |_| {
                format!("Deleted enrichment {key} of hub {hub}")
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_accept_azure_spellings() {
        assert_eq!(parse_source("devicemessages").unwrap(), "DeviceMessages");
        assert_eq!(parse_source("TwinChangeEvents").unwrap(), "TwinChangeEvents");
        assert_eq!(
            parse_source("fileuploadnotifications").unwrap(),
            "FileUploadNotifications"
        );
        assert!(parse_source("digitaltwinchangeevents").is_err());
    }

    #[test]
    fn property_lists_parse() {
        let map = crate::admin::parse_props(Some("a=1; b = x=y ;"), "--app-properties").unwrap();
        assert_eq!(map["a"], "1");
        assert_eq!(map["b"], " x=y ");
        assert!(crate::admin::parse_props(Some("novalue"), "--app-properties").is_err());
        assert!(crate::admin::parse_props(None, "x").unwrap().is_empty());
    }
}
