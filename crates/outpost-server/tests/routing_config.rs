//! `[[routing]]` in the configuration file: applied at start to the hubs it names (replacing
//! what the API stored), leaving other hubs' routing alone, strict about keys, and refusing to
//! start for a hub that does not exist or a configuration that does not validate.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]

use std::collections::HashMap;
use std::error::Error as _;
use std::path::Path;

use outpost_core::routing::RoutingConfig;
use outpost_model::{Hub, HubName};
use outpost_server::{OutpostConfig, Server, ServerError};
use serde_json::json;

fn config(data_dir: &Path, toml: &str) -> OutpostConfig {
    let mut config = OutpostConfig::load(Some(toml), &HashMap::new()).unwrap();
    config.data_dir = data_dir.to_path_buf();
    config.https.listen = "127.0.0.1:0".parse().unwrap();
    config.operator.listen = "127.0.0.1:0".parse().unwrap();
    config.mqtt.listen = "127.0.0.1:0".parse().unwrap();
    config.amqp.listen = "127.0.0.1:0".parse().unwrap();
    config
}

const FILE: &str = r#"
[[routing]]
hub = "localhost"
[[routing.endpoints]]
name = "hot"
type = "eventStream"
partitionCount = 3
consumerGroups = ["dashboards"]
[[routing.endpoints]]
name = "hook"
type = "webhook"
url = "http://127.0.0.1:9/iot"
headers = [{ name = "x-api-key", value = "k" }]
[[routing.routes]]
name = "hot"
source = "DeviceMessages"
condition = "$body.temp > 30"
endpointNames = ["hot"]
[[routing.routes]]
name = "twins"
source = "TwinChangeEvents"
endpointNames = ["hook"]
isEnabled = false
[[routing.enrichments]]
key = "site"
value = "$twin.tags.site"
endpointNames = ["hot", "events"]
[routing.fallbackRoute]
isEnabled = false
"#;

fn expected() -> RoutingConfig {
    serde_json::from_value(json!({
        "endpoints": [
            { "name": "hot", "type": "eventStream", "partitionCount": 3, "consumerGroups": ["dashboards"] },
            { "name": "hook", "type": "webhook", "url": "http://127.0.0.1:9/iot", "headers": [{ "name": "x-api-key", "value": "k" }] },
        ],
        "routes": [
            { "name": "hot", "source": "DeviceMessages", "condition": "$body.temp > 30", "endpointNames": ["hot"] },
            { "name": "twins", "source": "TwinChangeEvents", "endpointNames": ["hook"], "isEnabled": false },
        ],
        "enrichments": [{ "key": "site", "value": "$twin.tags.site", "endpointNames": ["hot", "events"] }],
        "fallbackRoute": { "isEnabled": false },
    }))
    .unwrap()
}

fn localhost() -> HubName {
    HubName::new("localhost").unwrap()
}

#[tokio::test]
async fn file_routing_is_applied_at_start_and_other_hubs_keep_theirs() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&config(dir.path(), FILE)).await.unwrap();
    assert_eq!(server.outpost.routing.config(&localhost()), expected());
    // The router routes by it at once: the fallback is off, the hot route reads $body.
    assert!(
        !server
            .outpost
            .routing
            .router(&localhost())
            .config()
            .fallback_route
            .is_enabled
    );

    // Another hub, routed through the API (here: the service the operator API calls).
    let other = HubName::new("other").unwrap();
    server
        .outpost
        .create_hub(Hub::new(other.clone(), "other.localhost", 2).unwrap())
        .await
        .unwrap();
    let api_config: RoutingConfig = serde_json::from_value(json!({
        "endpoints": [{ "name": "cold", "type": "eventStream" }],
        "routes": [{ "name": "cold", "source": "DeviceMessages", "condition": "$body.temp < 0", "endpointNames": ["cold"] }],
    }))
    .unwrap();
    server
        .outpost
        .routing
        .set_config("other", api_config.clone())
        .await
        .unwrap();
    // A change through the API to a hub the file names lasts until the next start.
    server
        .outpost
        .routing
        .update_config(&localhost(), |config| {
            config.fallback_route.is_enabled = true;
            Ok(())
        })
        .await
        .unwrap();
    server.shutdown().await;

    let changed = FILE.replace("$body.temp > 30", "$body.temp > 40");
    let server = Server::start(&config(dir.path(), &changed)).await.unwrap();
    let mut want = expected();
    want.routes[0].condition = "$body.temp > 40".into();
    assert_eq!(server.outpost.routing.config(&localhost()), want);
    assert_eq!(server.outpost.routing.config(&other), api_config);
    server.shutdown().await;

    // Without [[routing]], what is stored stays.
    let server = Server::start(&config(dir.path(), "")).await.unwrap();
    assert_eq!(server.outpost.routing.config(&localhost()), want);
    server.shutdown().await;
}

#[tokio::test]
async fn unknown_hub_or_invalid_routing_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let unknown = FILE.replace("hub = \"localhost\"", "hub = \"nohub\"");
    let error = Server::start(&config(dir.path(), &unknown)).await.unwrap_err();
    assert!(matches!(error, ServerError::Routing(_)), "{error:?}");
    let reason = error.source().unwrap().to_string();
    assert!(
        reason.contains("'nohub'") && reason.contains("does not exist"),
        "{reason}"
    );

    let bad = FILE.replace("$body.temp > 30", "$body.temp >");
    let error = Server::start(&config(dir.path(), &bad)).await.unwrap_err();
    let reason = error.source().unwrap().to_string();
    assert!(
        reason.contains("hub 'localhost'") && reason.contains("route 'hot'") && reason.contains("column"),
        "{reason}"
    );
    // Nothing was stored by the refused starts.
    let server = Server::start(&config(dir.path(), "")).await.unwrap();
    assert_eq!(
        server.outpost.routing.config(&localhost()),
        RoutingConfig::default()
    );
    server.shutdown().await;
}

#[test]
fn routing_keys_are_checked_when_the_file_is_read() {
    let typo = FILE.replace("condition = \"$body.temp > 30\"", "conditon = \"false\"");
    let error = OutpostConfig::load(Some(&typo), &HashMap::new()).unwrap_err();
    let chain = format!(
        "{error}: {}",
        error.source().map(ToString::to_string).unwrap_or_default()
    );
    assert!(chain.contains("conditon"), "{chain}");
    let twice = format!("{FILE}\n[[routing]]\nhub = \"LOCALHOST\"\n");
    let error = OutpostConfig::load(Some(&twice), &HashMap::new()).unwrap_err();
    assert!(error.to_string().contains("twice"), "{error}");
    let no_hub = "[[routing]]\nroutes = []\n";
    assert!(OutpostConfig::load(Some(no_hub), &HashMap::new()).is_err());
    // `config show` prints it back in a form that reads the same.
    let config = OutpostConfig::load(Some(FILE), &HashMap::new()).unwrap();
    let again = OutpostConfig::load(Some(&config.to_toml()), &HashMap::new()).unwrap();
    assert_eq!(again, config);
    assert_eq!(config.routing[0].config, expected());
}

/// The commented `[[routing]]` example of `config/outpost.example.toml`, uncommented, is valid.
#[tokio::test]
async fn the_documented_example_applies() {
    let text = include_str!("../../../config/outpost.example.toml");
    let start = text
        .find("# [[routing]]")
        .expect("the example documents [[routing]]");
    let example: String = text[start..]
        .lines()
        .map(|line| {
            line.strip_prefix("# ")
                .unwrap_or(if line.starts_with('#') { "" } else { line })
        })
        .collect::<Vec<_>>()
        .join("\n");
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&config(dir.path(), &example)).await.unwrap();
    let applied = server.outpost.routing.config(&localhost());
    assert_eq!(applied.endpoints.len(), 3);
    assert_eq!(applied.routes[0].condition, "$body.temperature > 30");
    server.shutdown().await;
}
