//! `outpost hub consumer-group create|show|list|delete` (mirrors `az iot hub consumer-group`):
//! consumer groups of a hub's built-in Event Hubs-compatible endpoint, through the operator API.

use clap::Subcommand;
use hyper::Method;
use serde_json::{Value, json};

use crate::GlobalArgs;
use crate::admin::{encode, hub_name, print};
use crate::client::OperatorClient;

#[derive(Debug, Subcommand)]
pub enum ConsumerGroupCommand {
    /// Creates a consumer group (an existing one of that name is kept).
    Create(GroupArgs),
    /// Shows one consumer group.
    Show(GroupArgs),
    /// Lists the hub's consumer groups, `$Default` first.
    List {
        /// The hub name (default: the first hub).
        #[arg(long)]
        hub: Option<String>,
    },
    /// Deletes a consumer group; its receivers are detached.
    Delete(GroupArgs),
}

#[derive(Debug, clap::Args)]
pub struct GroupArgs {
    /// The hub name (default: the first hub).
    #[arg(long)]
    hub: Option<String>,
    /// The consumer group: 1–50 letters, digits, `.`, `_`, `-` (case-insensitive).
    #[arg(long, short = 'n')]
    name: String,
}

fn collection(hub: &str) -> String {
    format!("/hubs/{}/eventHubEndpoints/events/consumerGroups", encode(hub))
}

fn summary(group: &Value) -> String {
    let field = |name: &str| {
        group
            .pointer(name)
            .and_then(Value::as_str)
            .unwrap_or("-")
            .to_owned()
    };
    format!("{:<52} created {}", field("/name"), field("/properties/created"))
}

pub async fn consumer_group(
    client: &OperatorClient,
    global: &GlobalArgs,
    command: ConsumerGroupCommand,
) -> anyhow::Result<()> {
    match command {
        ConsumerGroupCommand::Create(args) => {
            let hub = hub_name(client, args.hub).await?;
            let path = format!("{}/{}", collection(&hub), encode(&args.name));
            let group = client.call(Method::PUT, &path, None).await?.body;
            print(global.output, &group, |group| {
                let name = group.get("name").and_then(Value::as_str).unwrap_or("-");
                format!("Consumer group {name} of hub {hub} exists")
            });
        }
        ConsumerGroupCommand::Show(args) => {
            let hub = hub_name(client, args.hub).await?;
            let path = format!("{}/{}", collection(&hub), encode(&args.name));
            let group = client.call(Method::GET, &path, None).await?.body;
            print(global.output, &group, summary);
        }
        ConsumerGroupCommand::List { hub } => {
            let hub = hub_name(client, hub).await?;
            let groups = client.call(Method::GET, &collection(&hub), None).await?.body;
            let groups = groups.get("value").cloned().unwrap_or(Value::Null);
            print(global.output, &groups, |groups| {
                let rows: Vec<String> = groups.as_array().into_iter().flatten().map(summary).collect();
                rows.join("\n")
            });
        }
        ConsumerGroupCommand::Delete(args) => {
            let hub = hub_name(client, args.hub).await?;
            let path = format!("{}/{}", collection(&hub), encode(&args.name));
            client.call(Method::DELETE, &path, None).await?;
            let name = args.name;
            print(global.output, &json!({ "deleted": name }), |_| {
                format!("Deleted consumer group {name} of hub {hub}")
            });
        }
    }
    Ok(())
}
