//! Admin verbs: hubs through the operator API; devices, modules and twins through the service
//! API of a hub, forwarded by the operator API (so no SAS key is needed on the command line).

use anyhow::{Context as _, bail};
use clap::{Subcommand, ValueEnum};
use hyper::Method;
use outpost_auth::DeviceConnectionString;
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::{Value, json};

use crate::client::OperatorClient;
use crate::{GlobalArgs, Output, serve};

#[derive(Debug, Subcommand)]
pub enum HubCommand {
    /// Creates a hub with the five standard shared access policies.
    Create {
        /// The hub name (lowercase letters, digits, -).
        name: String,
        /// Host name devices and services use (default: <name>.<hub.domain>).
        #[arg(long)]
        host_name: Option<String>,
        /// Partitions of the built-in endpoint (default: hub.partition_count).
        #[arg(long)]
        partition_count: Option<u32>,
    },
    /// Lists the hubs.
    List,
    /// Shows one hub.
    Show {
        /// The hub name (default: the first hub).
        #[arg(long)]
        hub: Option<String>,
    },
    /// Deletes a hub and everything in it.
    Delete {
        /// The hub name.
        name: String,
    },
    /// Prints a connection string of a shared access policy.
    ConnectionString {
        /// The hub name (default: the first hub).
        #[arg(long)]
        hub: Option<String>,
        /// The policy (default: iothubowner).
        #[arg(long, default_value = "iothubowner")]
        policy: String,
        /// Print the Event Hubs-compatible endpoint's connection string instead.
        #[arg(long)]
        eventhub: bool,
        /// With --eventhub: the connection string of this custom event stream (a routing
        /// endpoint) instead of the built-in endpoint.
        #[arg(long, requires = "eventhub")]
        stream: Option<String>,
    },
    /// Manages the consumer groups of the built-in endpoint (mirrors `az iot hub consumer-group`).
    ConsumerGroup {
        #[command(subcommand)]
        command: crate::consumer_groups::ConsumerGroupCommand,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AuthMethod {
    /// Symmetric keys (generated unless given).
    SharedPrivateKey,
    /// Self-signed X.509 certificate thumbprints.
    X509Thumbprint,
    /// X.509 certificate signed by a CA registered on the hub.
    X509Ca,
}

#[derive(Debug, Subcommand)]
pub enum DeviceCommand {
    /// Creates a device identity.
    Create {
        #[arg(long, short = 'd')]
        device_id: String,
        #[arg(long)]
        hub: Option<String>,
        #[arg(long, value_enum, default_value_t = AuthMethod::SharedPrivateKey)]
        auth_method: AuthMethod,
        #[arg(long)]
        primary_key: Option<String>,
        #[arg(long)]
        secondary_key: Option<String>,
        #[arg(long)]
        primary_thumbprint: Option<String>,
        #[arg(long)]
        secondary_thumbprint: Option<String>,
        /// Create it disabled.
        #[arg(long)]
        disabled: bool,
        /// Make it an IoT Edge device.
        #[arg(long)]
        edge_enabled: bool,
    },
    /// Shows a device identity.
    Show {
        #[arg(long, short = 'd')]
        device_id: String,
        #[arg(long)]
        hub: Option<String>,
    },
    /// Lists device identities.
    List {
        #[arg(long)]
        hub: Option<String>,
        /// Most devices to list.
        #[arg(long, default_value_t = 1000)]
        top: usize,
    },
    /// Deletes a device identity, its modules and twins.
    Delete {
        #[arg(long, short = 'd')]
        device_id: String,
        #[arg(long)]
        hub: Option<String>,
    },
    /// Prints the device's connection string.
    ConnectionString {
        #[arg(long, short = 'd')]
        device_id: String,
        #[arg(long)]
        hub: Option<String>,
        /// Use the secondary key.
        #[arg(long)]
        secondary: bool,
    },
    /// Exports every device and module identity with its twin (an export job).
    Export(crate::import_export::ExportArgs),
    /// Imports identities from `devices.txt` (an import job).
    Import(crate::import_export::ImportArgs),
}

#[derive(Debug, Subcommand)]
pub enum ModuleCommand {
    /// Creates a module identity (symmetric keys).
    Create {
        #[arg(long, short = 'd')]
        device_id: String,
        #[arg(long, short = 'm')]
        module_id: String,
        #[arg(long)]
        hub: Option<String>,
    },
    /// Shows a module identity.
    Show {
        #[arg(long, short = 'd')]
        device_id: String,
        #[arg(long, short = 'm')]
        module_id: String,
        #[arg(long)]
        hub: Option<String>,
    },
    /// Lists the modules of a device.
    List {
        #[arg(long, short = 'd')]
        device_id: String,
        #[arg(long)]
        hub: Option<String>,
    },
    /// Deletes a module identity.
    Delete {
        #[arg(long, short = 'd')]
        device_id: String,
        #[arg(long, short = 'm')]
        module_id: String,
        #[arg(long)]
        hub: Option<String>,
    },
    /// Prints the module's connection string.
    ConnectionString {
        #[arg(long, short = 'd')]
        device_id: String,
        #[arg(long, short = 'm')]
        module_id: String,
        #[arg(long)]
        hub: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum TwinCommand {
    /// Shows a device or module twin.
    Show {
        #[arg(long, short = 'd')]
        device_id: String,
        #[arg(long, short = 'm')]
        module_id: Option<String>,
        #[arg(long)]
        hub: Option<String>,
    },
    /// Merges tags and desired properties into a twin.
    Update {
        #[arg(long, short = 'd')]
        device_id: String,
        #[arg(long, short = 'm')]
        module_id: Option<String>,
        #[arg(long)]
        hub: Option<String>,
        /// Desired properties to merge, as JSON.
        #[arg(long)]
        desired: Option<String>,
        /// Tags to merge, as JSON.
        #[arg(long)]
        tags: Option<String>,
    },
}

pub(crate) fn connect(global: &GlobalArgs) -> anyhow::Result<OperatorClient> {
    let args = serve::ServeArgs::default_flags();
    let config = serve::load_config(global, &args)?;
    OperatorClient::connect(&config.data_dir)
}

pub(crate) fn encode(id: &str) -> String {
    utf8_percent_encode(id, NON_ALPHANUMERIC).to_string()
}

/// Returns the hub to act on: the one named, or the first (the default hub).
pub(crate) async fn hub_name(client: &OperatorClient, hub: Option<String>) -> anyhow::Result<String> {
    if let Some(hub) = hub {
        return Ok(hub);
    }
    let hubs = client.call(Method::GET, "/hubs", None).await?.body;
    hubs.get(0)
        .and_then(|hub| hub.get("name"))
        .and_then(Value::as_str)
        .map(str::to_owned)
        .context("the server has no hub")
}

async fn hub_host_name(client: &OperatorClient, hub: &str) -> anyhow::Result<String> {
    let summary = client
        .call(Method::GET, &format!("/hubs/{}", encode(hub)), None)
        .await?
        .body;
    summary
        .get("hostName")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .context("the hub has no host name")
}

pub(crate) fn print(output: Output, value: &Value, human: impl FnOnce(&Value) -> String) {
    match output {
        Output::Json => println!("{}", serde_json::to_string_pretty(value).unwrap_or_default()),
        Output::Human => println!("{}", human(value)),
    }
}

fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_default()
}

fn field<'a>(value: &'a Value, name: &str) -> &'a str {
    value.get(name).and_then(Value::as_str).unwrap_or("-")
}

pub async fn hub(global: &GlobalArgs, command: HubCommand) -> anyhow::Result<()> {
    let client = connect(global)?;
    match command {
        HubCommand::Create {
            name,
            host_name,
            partition_count,
        } => {
            let body = json!({ "name": name, "hostName": host_name, "partitionCount": partition_count });
            let hub = client.call(Method::POST, "/hubs", Some(&body)).await?.body;
            print(global.output, &hub, |hub| {
                format!(
                    "Created hub {} (host name {})",
                    field(hub, "name"),
                    field(hub, "hostName")
                )
            });
        }
        HubCommand::List => {
            let hubs = client.call(Method::GET, "/hubs", None).await?.body;
            print(global.output, &hubs, |hubs| {
                let rows: Vec<String> = hubs
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|hub| {
                        let partitions = hub
                            .get("partitionCount")
                            .and_then(Value::as_u64)
                            .unwrap_or_default();
                        format!(
                            "{:<24} {:<40} {partitions} partitions",
                            field(hub, "name"),
                            field(hub, "hostName")
                        )
                    })
                    .collect();
                rows.join("\n")
            });
        }
        HubCommand::Show { hub } => {
            let name = hub_name(&client, hub).await?;
            let hub = client
                .call(Method::GET, &format!("/hubs/{}", encode(&name)), None)
                .await?
                .body;
            print(global.output, &hub, pretty);
        }
        HubCommand::Delete { name } => {
            client
                .call(Method::DELETE, &format!("/hubs/{}", encode(&name)), None)
                .await?;
            print(global.output, &json!({ "deleted": name }), |_| {
                format!("Deleted hub {name}")
            });
        }
        HubCommand::ConnectionString {
            hub,
            policy,
            eventhub,
            stream,
        } => {
            let name = hub_name(&client, hub).await?;
            let mut path = format!(
                "/hubs/{}/connection-string?policy={}&eventhub={eventhub}",
                encode(&name),
                encode(&policy)
            );
            if let Some(stream) = stream {
                path.push_str(&format!("&stream={}", encode(&stream)));
            }
            let reply = client.call(Method::GET, &path, None).await?.body;
            print(global.output, &reply, |reply| {
                field(reply, "connectionString").to_owned()
            });
        }
        HubCommand::ConsumerGroup { command } => {
            crate::consumer_groups::consumer_group(&client, global, command).await?;
        }
    }
    Ok(())
}

fn device_summary(device: &Value) -> String {
    let auth = device.get("authentication").cloned().unwrap_or(Value::Null);
    format!(
        "deviceId:        {}\nstatus:          {}\nconnectionState: {}\nauthentication:  {}\ngenerationId:    {}\netag:            {}",
        field(device, "deviceId"),
        field(device, "status"),
        field(device, "connectionState"),
        field(&auth, "type"),
        field(device, "generationId"),
        field(device, "etag"),
    )
}

pub async fn device(global: &GlobalArgs, command: DeviceCommand) -> anyhow::Result<()> {
    let client = connect(global)?;
    match command {
        DeviceCommand::Export(args) => crate::import_export::export(global, &client, args).await?,
        DeviceCommand::Import(args) => crate::import_export::import(global, &client, args).await?,
        DeviceCommand::Create {
            device_id,
            hub,
            auth_method,
            primary_key,
            secondary_key,
            primary_thumbprint,
            secondary_thumbprint,
            disabled,
            edge_enabled,
        } => {
            let hub = hub_name(&client, hub).await?;
            let authentication = match auth_method {
                AuthMethod::SharedPrivateKey => json!({
                    "type": "sas",
                    "symmetricKey": { "primaryKey": primary_key, "secondaryKey": secondary_key },
                }),
                AuthMethod::X509Thumbprint => {
                    if primary_thumbprint.is_none() {
                        bail!("--primary-thumbprint is required with --auth-method x509-thumbprint");
                    }
                    json!({
                        "type": "selfSigned",
                        "x509Thumbprint": {
                            "primaryThumbprint": primary_thumbprint,
                            "secondaryThumbprint": secondary_thumbprint,
                        },
                    })
                }
                AuthMethod::X509Ca => json!({ "type": "certificateAuthority" }),
            };
            let body = json!({
                "deviceId": device_id,
                "status": if disabled { "disabled" } else { "enabled" },
                "authentication": authentication,
                "capabilities": { "iotEdge": edge_enabled },
            });
            let path = format!("/devices/{}", encode(&device_id));
            let device = client.service(&hub, Method::PUT, &path, Some(&body)).await?.body;
            print(global.output, &device, device_summary);
        }
        DeviceCommand::Show { device_id, hub } => {
            let hub = hub_name(&client, hub).await?;
            let path = format!("/devices/{}", encode(&device_id));
            let device = client.service(&hub, Method::GET, &path, None).await?.body;
            print(global.output, &device, device_summary);
        }
        DeviceCommand::List { hub, top } => {
            let hub = hub_name(&client, hub).await?;
            let devices = client
                .service(&hub, Method::GET, &format!("/devices?top={top}"), None)
                .await?
                .body;
            print(global.output, &devices, |devices| {
                let rows: Vec<String> = devices
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|d| {
                        format!(
                            "{:<40} {:<9} {}",
                            field(d, "deviceId"),
                            field(d, "status"),
                            field(d, "connectionState")
                        )
                    })
                    .collect();
                rows.join("\n")
            });
        }
        DeviceCommand::Delete { device_id, hub } => {
            let hub = hub_name(&client, hub).await?;
            let path = format!("/devices/{}", encode(&device_id));
            client.service(&hub, Method::DELETE, &path, None).await?;
            print(global.output, &json!({ "deleted": device_id }), |_| {
                format!("Deleted device {device_id}")
            });
        }
        DeviceCommand::ConnectionString {
            device_id,
            hub,
            secondary,
        } => {
            let hub = hub_name(&client, hub).await?;
            let path = format!("/devices/{}", encode(&device_id));
            let device = client.service(&hub, Method::GET, &path, None).await?.body;
            let text =
                identity_connection_string(&client, &hub, &device, &device_id, None, secondary).await?;
            print(global.output, &json!({ "connectionString": text }), |reply| {
                field(reply, "connectionString").to_owned()
            });
        }
    }
    Ok(())
}

async fn identity_connection_string(
    client: &OperatorClient,
    hub: &str,
    identity: &Value,
    device_id: &str,
    module_id: Option<&str>,
    secondary: bool,
) -> anyhow::Result<String> {
    let auth = identity.get("authentication").cloned().unwrap_or(Value::Null);
    let host_name = hub_host_name(client, hub).await?;
    let x509 = field(&auth, "type") != "sas";
    let key = if x509 {
        None
    } else {
        let which = if secondary { "secondaryKey" } else { "primaryKey" };
        let key = auth
            .get("symmetricKey")
            .and_then(|keys| keys.get(which))
            .and_then(Value::as_str);
        Some(
            key.context("the identity has no key")?
                .parse()
                .context("the stored key is invalid")?,
        )
    };
    let connection_string = DeviceConnectionString {
        host_name,
        device_id: device_id.to_owned(),
        module_id: module_id.map(str::to_owned),
        key,
        x509,
        gateway_host_name: None,
    };
    Ok(connection_string.to_string())
}

fn module_summary(module: &Value) -> String {
    let auth = module.get("authentication").cloned().unwrap_or(Value::Null);
    format!(
        "deviceId:        {}\nmoduleId:        {}\nconnectionState: {}\nauthentication:  {}\ngenerationId:    {}\netag:            {}",
        field(module, "deviceId"),
        field(module, "moduleId"),
        field(module, "connectionState"),
        field(&auth, "type"),
        field(module, "generationId"),
        field(module, "etag"),
    )
}

pub async fn module(global: &GlobalArgs, command: ModuleCommand) -> anyhow::Result<()> {
    let client = connect(global)?;
    match command {
        ModuleCommand::Create {
            device_id,
            module_id,
            hub,
        } => {
            let hub = hub_name(&client, hub).await?;
            let body =
                json!({ "deviceId": device_id, "moduleId": module_id, "authentication": { "type": "sas" } });
            let path = format!("/devices/{}/modules/{}", encode(&device_id), encode(&module_id));
            let module = client.service(&hub, Method::PUT, &path, Some(&body)).await?.body;
            print(global.output, &module, module_summary);
        }
        ModuleCommand::Show {
            device_id,
            module_id,
            hub,
        } => {
            let hub = hub_name(&client, hub).await?;
            let path = format!("/devices/{}/modules/{}", encode(&device_id), encode(&module_id));
            let module = client.service(&hub, Method::GET, &path, None).await?.body;
            print(global.output, &module, module_summary);
        }
        ModuleCommand::List { device_id, hub } => {
            let hub = hub_name(&client, hub).await?;
            let path = format!("/devices/{}/modules", encode(&device_id));
            let modules = client.service(&hub, Method::GET, &path, None).await?.body;
            print(global.output, &modules, |modules| {
                let rows: Vec<String> = modules
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|m| field(m, "moduleId").to_owned())
                    .collect();
                rows.join("\n")
            });
        }
        ModuleCommand::Delete {
            device_id,
            module_id,
            hub,
        } => {
            let hub = hub_name(&client, hub).await?;
            let path = format!("/devices/{}/modules/{}", encode(&device_id), encode(&module_id));
            client.service(&hub, Method::DELETE, &path, None).await?;
            print(global.output, &json!({ "deleted": module_id }), |_| {
                format!("Deleted module {module_id}")
            });
        }
        ModuleCommand::ConnectionString {
            device_id,
            module_id,
            hub,
        } => {
            let hub = hub_name(&client, hub).await?;
            let path = format!("/devices/{}/modules/{}", encode(&device_id), encode(&module_id));
            let module = client.service(&hub, Method::GET, &path, None).await?.body;
            let text =
                identity_connection_string(&client, &hub, &module, &device_id, Some(&module_id), false)
                    .await?;
            print(global.output, &json!({ "connectionString": text }), |reply| {
                field(reply, "connectionString").to_owned()
            });
        }
    }
    Ok(())
}

fn twin_path(device_id: &str, module_id: Option<&str>) -> String {
    match module_id {
        Some(module_id) => format!("/twins/{}/modules/{}", encode(device_id), encode(module_id)),
        None => format!("/twins/{}", encode(device_id)),
    }
}

fn parse_object(flag: &str, text: Option<String>) -> anyhow::Result<Option<Value>> {
    let Some(text) = text else { return Ok(None) };
    let value: Value = serde_json::from_str(&text).with_context(|| format!("--{flag} is not valid JSON"))?;
    if !value.is_object() {
        bail!("--{flag} must be a JSON object");
    }
    Ok(Some(value))
}

pub async fn twin(global: &GlobalArgs, command: TwinCommand) -> anyhow::Result<()> {
    let client = connect(global)?;
    match command {
        TwinCommand::Show {
            device_id,
            module_id,
            hub,
        } => {
            let hub = hub_name(&client, hub).await?;
            let path = twin_path(&device_id, module_id.as_deref());
            let twin = client.service(&hub, Method::GET, &path, None).await?.body;
            print(global.output, &twin, pretty);
        }
        TwinCommand::Update {
            device_id,
            module_id,
            hub,
            desired,
            tags,
        } => {
            let desired = parse_object("desired", desired)?;
            let tags = parse_object("tags", tags)?;
            if desired.is_none() && tags.is_none() {
                bail!("give --desired, --tags or both");
            }
            let hub = hub_name(&client, hub).await?;
            let mut body = json!({});
            if let Some(tags) = tags {
                body["tags"] = tags;
            }
            if let Some(desired) = desired {
                body["properties"] = json!({ "desired": desired });
            }
            let path = twin_path(&device_id, module_id.as_deref());
            let twin = client
                .service(&hub, Method::PATCH, &path, Some(&body))
                .await?
                .body;
            print(global.output, &twin, pretty);
        }
    }
    Ok(())
}

#[derive(Debug, Subcommand)]
pub enum DeviceMessagingCommand {
    /// Cloud-to-device messages (mirrors `az iot device c2d-message`).
    C2dMessage {
        #[command(subcommand)]
        command: C2dCommand,
    },
}

#[derive(Debug, Subcommand)]
#[allow(clippy::large_enum_variant, reason = "parsed once per process")]
pub enum C2dCommand {
    /// Queues a message for a device.
    Send {
        #[arg(long, short = 'd')]
        device_id: String,
        #[arg(long)]
        hub: Option<String>,
        /// The body, as text.
        #[arg(long, default_value = "Ping from Outpost CLI")]
        data: String,
        /// Application properties as `k=v;k2=v2`.
        #[arg(long)]
        props: Option<String>,
        /// Feedback to ask for: none, positive, negative or full.
        #[arg(long, default_value = "none")]
        ack: String,
        #[arg(long)]
        message_id: Option<String>,
        #[arg(long)]
        correlation_id: Option<String>,
        #[arg(long)]
        content_type: Option<String>,
        #[arg(long)]
        content_encoding: Option<String>,
        /// Absolute expiry, RFC 3339 (default: the hub's time to live, 1 hour).
        #[arg(long)]
        expiry: Option<String>,
        /// Send to an input of this module instead of the device (with --input).
        #[arg(long, short = 'm', requires = "input")]
        module_id: Option<String>,
        /// The module input the message arrives on.
        #[arg(long, requires = "module_id")]
        input: Option<String>,
    },
    /// Removes every message queued for a device.
    Purge {
        #[arg(long, short = 'd')]
        device_id: String,
        #[arg(long)]
        hub: Option<String>,
    },
}

/// Parses `k1=v1;k2=v2` (Azure CLI's property syntax) into a JSON object; `what` names the flag
/// in errors.
pub(crate) fn parse_props(text: Option<&str>, what: &str) -> anyhow::Result<serde_json::Map<String, Value>> {
    let mut props = serde_json::Map::new();
    for pair in text
        .unwrap_or_default()
        .split(';')
        .filter(|pair| !pair.trim().is_empty())
    {
        let (key, value) = pair
            .split_once('=')
            .with_context(|| format!("{what}: '{pair}' is not key=value"))?;
        props.insert(key.trim().to_owned(), Value::String(value.to_owned()));
    }
    Ok(props)
}

pub async fn device_messaging(global: &GlobalArgs, command: DeviceMessagingCommand) -> anyhow::Result<()> {
    let client = connect(global)?;
    let DeviceMessagingCommand::C2dMessage { command } = command;
    match command {
        C2dCommand::Send {
            device_id,
            hub,
            data,
            props,
            ack,
            message_id,
            correlation_id,
            content_type,
            content_encoding,
            expiry,
            module_id,
            input,
        } => {
            let hub = hub_name(&client, hub).await?;
            let body = json!({
                "data": data,
                "messageId": message_id,
                "correlationId": correlation_id,
                "contentType": content_type,
                "contentEncoding": content_encoding,
                "ack": ack,
                "expiryTimeUtc": expiry,
                "properties": parse_props(props.as_deref(), "--props")?,
            });
            let path = match (&module_id, &input) {
                (Some(module), Some(input)) => format!(
                    "/hubs/{}/devices/{}/modules/{}/inputs/{}/messages",
                    encode(&hub),
                    encode(&device_id),
                    encode(module),
                    encode(input)
                ),
                _ => format!(
                    "/hubs/{}/devices/{}/messages/devicebound",
                    encode(&hub),
                    encode(&device_id)
                ),
            };
            client.call(Method::POST, &path, Some(&body)).await?;
            print(global.output, &json!({ "sent": device_id }), |_| {
                format!("Queued a message for {device_id}")
            });
        }
        C2dCommand::Purge { device_id, hub } => {
            let hub = hub_name(&client, hub).await?;
            let path = format!("/devices/{}/commands", encode(&device_id));
            let reply = client.service(&hub, Method::DELETE, &path, None).await?.body;
            print(global.output, &reply, |reply| {
                format!(
                    "Purged {} messages",
                    reply["totalMessagesPurged"].as_u64().unwrap_or_default()
                )
            });
        }
    }
    Ok(())
}
