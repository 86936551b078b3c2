//! `routing-endpoint create|list|show|delete|health` and `routing-endpoint consumer-group
//! create|delete|list` (mirror `az iot hub routing-endpoint`, with Outpost's endpoint kinds:
//! event streams, storage, webhooks).

use anyhow::{Context as _, bail};
use clap::{Subcommand, ValueEnum};
use hyper::Method;
use serde_json::{Map, Value, json};

use super::{field, list, pretty, routing_path, rows};
use crate::GlobalArgs;
use crate::admin::{connect, encode, hub_name, print};
use crate::client::OperatorClient;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EndpointType {
    /// A custom event stream, read like the built-in endpoint (entity = its name).
    #[value(alias = "event-stream", alias = "eventhub")]
    Eventstream,
    /// Files in a directory or a container of the built-in blob endpoint.
    #[value(alias = "azurestoragecontainer")]
    Storage,
    /// HTTP POSTs in the Event Grid schema.
    Webhook,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Encoding {
    /// Avro object container files (Azure's default).
    Avro,
    /// One JSON object per line.
    Json,
}

#[derive(Debug, Subcommand)]
pub enum EndpointCommand {
    /// Creates a custom endpoint (fails when the name is taken).
    Create(EndpointArgs),
    /// Lists the hub's custom endpoints.
    List {
        /// The hub name (default: the first hub).
        #[arg(long)]
        hub: Option<String>,
        /// Only endpoints of this type.
        #[arg(long = "type", short = 't', value_enum)]
        kind: Option<EndpointType>,
    },
    /// Shows one endpoint.
    Show(EndpointName),
    /// Deletes an endpoint (refused while a route or enrichment names it).
    Delete(EndpointName),
    /// Shows the health of the hub's custom endpoints.
    Health {
        /// The hub name (default: the first hub).
        #[arg(long)]
        hub: Option<String>,
    },
    /// Manages the consumer groups of a custom event stream.
    ConsumerGroup {
        #[command(subcommand)]
        command: StreamGroupCommand,
    },
}

#[derive(Debug, clap::Args)]
pub struct EndpointName {
    /// The hub name (default: the first hub).
    #[arg(long)]
    hub: Option<String>,
    /// The endpoint name.
    #[arg(long, short = 'n', visible_alias = "endpoint-name", visible_alias = "en")]
    name: String,
}

#[derive(Debug, clap::Args)]
pub struct EndpointArgs {
    #[command(flatten)]
    endpoint: EndpointName,
    /// The endpoint type.
    #[arg(long = "type", short = 't', value_enum)]
    kind: EndpointType,
    /// Event stream: its partition count (default 2).
    #[arg(long)]
    partitions: Option<u32>,
    /// Storage: a container of the hub's built-in blob endpoint.
    #[arg(long, visible_alias = "container-name", conflicts_with = "directory")]
    container: Option<String>,
    /// Storage: an absolute directory on the server.
    #[arg(long)]
    directory: Option<String>,
    /// Storage: file encoding (default avro).
    #[arg(long, value_enum)]
    encoding: Option<Encoding>,
    /// Storage: longest wait before a batch is written, in seconds (default 300).
    #[arg(long, visible_alias = "bf")]
    batch_frequency: Option<u32>,
    /// Storage: largest file, in MiB (default 300, as Azure's --chunk-size).
    #[arg(long, visible_alias = "cw")]
    chunk_size: Option<u64>,
    /// Storage: file name format with {iothub} {partition} {YYYY} {MM} {DD} {HH} {mm}.
    #[arg(long, visible_alias = "ff")]
    file_name_format: Option<String>,
    /// Webhook: the URL to POST to.
    #[arg(long)]
    url: Option<String>,
    /// Webhook: an extra request header `name=value` (repeatable).
    #[arg(long = "header")]
    headers: Vec<String>,
    /// Webhook: most events per POST (default 100).
    #[arg(long)]
    max_batch: Option<u32>,
    /// Webhook: seconds a failing batch is retried before it is dead-lettered (default 3600; 0:
    /// never).
    #[arg(long)]
    dead_letter_after: Option<u32>,
}

#[derive(Debug, Subcommand)]
pub enum StreamGroupCommand {
    /// Adds a consumer group to an event stream (an existing one is kept).
    Create(StreamGroupArgs),
    /// Removes a consumer group from an event stream.
    Delete(StreamGroupArgs),
    /// Lists an event stream's consumer groups, `$Default` first.
    List {
        /// The hub name (default: the first hub).
        #[arg(long)]
        hub: Option<String>,
        /// The event stream.
        #[arg(long = "endpoint", visible_alias = "en")]
        endpoint: String,
    },
}

#[derive(Debug, clap::Args)]
pub struct StreamGroupArgs {
    /// The hub name (default: the first hub).
    #[arg(long)]
    hub: Option<String>,
    /// The event stream.
    #[arg(long = "endpoint", visible_alias = "en")]
    endpoint: String,
    /// The consumer group.
    #[arg(long, short = 'n')]
    name: String,
}

fn endpoint_body(args: &EndpointArgs) -> anyhow::Result<Value> {
    let mut body = Map::new();
    body.insert("name".into(), json!(args.endpoint.name));
    let storage_flags = args.container.is_some()
        || args.directory.is_some()
        || args.encoding.is_some()
        || args.batch_frequency.is_some()
        || args.chunk_size.is_some()
        || args.file_name_format.is_some();
    let webhook_flags = args.url.is_some()
        || !args.headers.is_empty()
        || args.max_batch.is_some()
        || args.dead_letter_after.is_some();
    let mut put = |key: &str, value: Option<Value>| {
        if let Some(value) = value {
            body.insert(key.to_owned(), value);
        }
    };
    match args.kind {
        EndpointType::Eventstream => {
            if storage_flags || webhook_flags {
                bail!("an event stream takes only --partitions");
            }
            put("type", Some(json!("eventStream")));
            put("partitionCount", args.partitions.map(|p| json!(p)));
        }
        EndpointType::Storage => {
            if webhook_flags || args.partitions.is_some() {
                bail!(
                    "a storage endpoint takes --container or --directory, --encoding, --batch-frequency, --chunk-size and --file-name-format"
                );
            }
            if args.container.is_none() && args.directory.is_none() {
                bail!("a storage endpoint needs --container or --directory");
            }
            put("type", Some(json!("storage")));
            put("containerName", args.container.as_ref().map(|c| json!(c)));
            put("directory", args.directory.as_ref().map(|d| json!(d)));
            put("fileNameFormat", args.file_name_format.as_ref().map(|f| json!(f)));
            put("batchFrequencyInSeconds", args.batch_frequency.map(|s| json!(s)));
            let chunk = match args.chunk_size {
                Some(mib) => Some(json!(
                    mib.checked_mul(1024 * 1024)
                        .context("--chunk-size is too large")?
                )),
                None => None,
            };
            put("maxChunkSizeInBytes", chunk);
            put(
                "encoding",
                args.encoding
                    .map(|e| json!(if e == Encoding::Avro { "avro" } else { "json" })),
            );
        }
        EndpointType::Webhook => {
            if storage_flags || args.partitions.is_some() {
                bail!("a webhook takes --url, --header, --max-batch and --dead-letter-after");
            }
            let url = args.url.as_ref().context("a webhook needs --url")?;
            let mut headers = Vec::new();
            for header in &args.headers {
                let (name, value) = header
                    .split_once('=')
                    .with_context(|| format!("--header '{header}' is not name=value"))?;
                headers.push(json!({ "name": name.trim(), "value": value }));
            }
            put("type", Some(json!("webhook")));
            put("url", Some(json!(url)));
            put("headers", (!headers.is_empty()).then(|| Value::Array(headers)));
            put("maxEventsPerBatch", args.max_batch.map(|n| json!(n)));
            put("deadLetterAfterSeconds", args.dead_letter_after.map(|s| json!(s)));
        }
    }
    Ok(Value::Object(body))
}

/// Where an endpoint writes, in one line.
fn endpoint_target(endpoint: &Value) -> String {
    match field(endpoint, "type") {
        "eventStream" => {
            let partitions = endpoint
                .get("partitionCount")
                .and_then(Value::as_u64)
                .unwrap_or_default();
            let groups = list(endpoint, "consumerGroups");
            if groups.is_empty() {
                format!("{partitions} partitions")
            } else {
                format!("{partitions} partitions, consumer groups $Default,{groups}")
            }
        }
        "storage" => match endpoint.get("containerName").and_then(Value::as_str) {
            Some(container) => format!("container {container} ({})", field(endpoint, "encoding")),
            None => format!(
                "directory {} ({})",
                field(endpoint, "directory"),
                field(endpoint, "encoding")
            ),
        },
        "webhook" => field(endpoint, "url").to_owned(),
        _ => String::new(),
    }
}

fn endpoint_row(endpoint: &Value) -> String {
    format!(
        "{:<24} {:<12} {}",
        field(endpoint, "name"),
        field(endpoint, "type"),
        endpoint_target(endpoint)
    )
}

fn type_name(kind: EndpointType) -> &'static str {
    match kind {
        EndpointType::Eventstream => "eventStream",
        EndpointType::Storage => "storage",
        EndpointType::Webhook => "webhook",
    }
}

pub async fn endpoint(global: &GlobalArgs, command: EndpointCommand) -> anyhow::Result<()> {
    let client = connect(global)?;
    match command {
        EndpointCommand::Create(args) => {
            let body = endpoint_body(&args)?;
            let hub = hub_name(&client, args.endpoint.hub).await?;
            let endpoint = client
                .call(Method::POST, &routing_path(&hub, "/endpoints"), Some(&body))
                .await?
                .body;
            print(global.output, &endpoint, |endpoint| {
                format!(
                    "Created routing endpoint of hub {hub}\n{}",
                    endpoint_row(endpoint)
                )
            });
        }
        EndpointCommand::List { hub, kind } => {
            let hub = hub_name(&client, hub).await?;
            let reply = client
                .call(Method::GET, &routing_path(&hub, "/endpoints"), None)
                .await?
                .body;
            let mut endpoints = reply.get("value").cloned().unwrap_or(Value::Null);
            if let (Some(kind), Value::Array(items)) = (kind, &mut endpoints) {
                items.retain(|e| e.get("type").and_then(Value::as_str) == Some(type_name(kind)));
            }
            print(global.output, &endpoints, |endpoints| {
                rows(endpoints, endpoint_row)
            });
        }
        EndpointCommand::Show(args) => {
            let hub = hub_name(&client, args.hub).await?;
            let path = routing_path(&hub, &format!("/endpoints/{}", encode(&args.name)));
            let endpoint = client.call(Method::GET, &path, None).await?.body;
            print(global.output, &endpoint, pretty);
        }
        EndpointCommand::Delete(args) => {
            let hub = hub_name(&client, args.hub).await?;
            let path = routing_path(&hub, &format!("/endpoints/{}", encode(&args.name)));
            client.call(Method::DELETE, &path, None).await?;
            let name = args.name;
            print(global.output, &json!({ "deleted": name }), |_| {
                format!("Deleted routing endpoint {name} of hub {hub}")
            });
        }
        EndpointCommand::Health { hub } => {
            let hub = hub_name(&client, hub).await?;
            let reply = client
                .call(Method::GET, &routing_path(&hub, "/health"), None)
                .await?
                .body;
            let health = reply.get("value").cloned().unwrap_or(Value::Null);
            print(global.output, &health, |health| {
                rows(health, |row| {
                    let count = |name: &str| row.get(name).and_then(Value::as_u64).unwrap_or_default();
                    let mut line = format!(
                        "{:<24} {:<12} {:<10} delivered {} failures {} dead-lettered {}",
                        field(row, "endpointId"),
                        field(row, "kind"),
                        field(row, "healthStatus"),
                        count("delivered"),
                        count("failures"),
                        count("deadLettered"),
                    );
                    if let Some(error) = row.get("lastKnownError").and_then(Value::as_str) {
                        line.push_str(&format!(
                            "\n    last error ({}): {error}",
                            field(row, "lastKnownErrorTime")
                        ));
                    }
                    line
                })
            });
        }
        EndpointCommand::ConsumerGroup { command } => stream_groups(&client, global, command).await?,
    }
    Ok(())
}

async fn stream_groups(
    client: &OperatorClient,
    global: &GlobalArgs,
    command: StreamGroupCommand,
) -> anyhow::Result<()> {
    let groups = |hub: &str, endpoint: &str| {
        routing_path(hub, &format!("/endpoints/{}/consumergroups", encode(endpoint)))
    };
    match command {
        StreamGroupCommand::Create(args) => {
            let hub = hub_name(client, args.hub).await?;
            let path = format!("{}/{}", groups(&hub, &args.endpoint), encode(&args.name));
            let group = client.call(Method::POST, &path, None).await?.body;
            print(global.output, &group, |group| {
                format!(
                    "Consumer group {} of stream {} exists",
                    field(group, "name"),
                    field(group, "endpointName")
                )
            });
        }
        StreamGroupCommand::Delete(args) => {
            let hub = hub_name(client, args.hub).await?;
            let path = format!("{}/{}", groups(&hub, &args.endpoint), encode(&args.name));
            client.call(Method::DELETE, &path, None).await?;
            let (name, endpoint) = (args.name, args.endpoint);
            print(global.output, &json!({ "deleted": name }), |_| {
                format!("Deleted consumer group {name} of stream {endpoint}")
            });
        }
        StreamGroupCommand::List { hub, endpoint } => {
            let hub = hub_name(client, hub).await?;
            let reply = client
                .call(Method::GET, &groups(&hub, &endpoint), None)
                .await?
                .body;
            let names = reply.get("value").cloned().unwrap_or(Value::Null);
            print(global.output, &names, |names| {
                rows(names, |name| name.as_str().unwrap_or("-").to_owned())
            });
        }
    }
    Ok(())
}
