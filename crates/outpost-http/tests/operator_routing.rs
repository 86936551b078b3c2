//! The operator API's message routing: endpoints (and stream consumer groups), routes, the
//! fallback route and enrichments are created, read, replaced and deleted; bad input gets 400
//! (with the condition's position), 404 or 409; the route test evaluates samples like Azure's
//! `$testnew`/`$testall`; health and `/metrics` report live delivery workers.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]

mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, StatusCode};
use outpost_core::routing::{EndpointPorts, StorageTarget};
use outpost_core::{DeviceAuthMethod, DeviceIdentity, OutgoingMessage};
use outpost_model::{DeviceId, HubName, LogName, SystemProperties};
use serde_json::{Value, json};
use support::{Fixture, OPERATOR_TOKEN, Reply};

const ROUTING: &str = "/hubs/localhost/routing";

async fn call(hub: &Fixture, method: Method, path: &str, body: Option<Value>) -> Reply {
    let bearer = format!("Bearer {OPERATOR_TOKEN}");
    let body = body.map(|b| serde_json::to_vec(&b).unwrap()).unwrap_or_default();
    hub.raw(&hub.operator, method, "127.0.0.1", path, Some(&bearer), body, &[])
        .await
}

async fn text(hub: &Fixture, path: &str) -> String {
    use http_body_util::BodyExt as _;
    use tower::ServiceExt as _;
    let request = http::Request::builder()
        .uri(path)
        .header("host", "127.0.0.1")
        .header("authorization", format!("Bearer {OPERATOR_TOKEN}"))
        .body(axum::body::Body::empty())
        .unwrap();
    let response = hub.operator.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

fn message(reply: &Reply) -> &str {
    reply.body["Message"].as_str().unwrap_or_default()
}

fn names(reply: &Reply, field: &str) -> Vec<String> {
    reply.body["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item[field].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn endpoints_routes_and_consumer_groups_are_managed_one_by_one() {
    let hub = Fixture::new().await;
    let stream = json!({ "name": "hot", "type": "eventStream", "partitionCount": 2 });
    let created = call(
        &hub,
        Method::POST,
        &format!("{ROUTING}/endpoints"),
        Some(stream.clone()),
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
    assert_eq!(created.body, stream);
    // POST refuses a taken name (case-insensitively, as Azure compares endpoint names).
    let clash = call(
        &hub,
        Method::POST,
        &format!("{ROUTING}/endpoints"),
        Some(json!({ "name": "HOT", "type": "eventStream" })),
    )
    .await;
    assert_eq!(clash.status, StatusCode::CONFLICT, "{:?}", clash.body);
    // PUT takes the name from the path and creates, then replaces.
    let put = call(
        &hub,
        Method::PUT,
        &format!("{ROUTING}/endpoints/archive"),
        Some(json!({ "type": "storage", "directory": "/tmp/outpost-archive", "encoding": "json", "batchFrequencyInSeconds": 60 })),
    )
    .await;
    assert_eq!(put.status, StatusCode::CREATED, "{:?}", put.body);
    assert_eq!(put.body["name"], "archive");
    assert_eq!(
        put.body["fileNameFormat"],
        "{iothub}/{partition}/{YYYY}/{MM}/{DD}/{HH}/{mm}"
    );
    let replaced = call(
        &hub,
        Method::PUT,
        &format!("{ROUTING}/endpoints/archive"),
        Some(
            json!({ "type": "storage", "directory": "/tmp/outpost-archive", "batchFrequencyInSeconds": 120 }),
        ),
    )
    .await;
    assert_eq!(replaced.status, StatusCode::OK, "{:?}", replaced.body);
    assert_eq!(replaced.body["batchFrequencyInSeconds"], 120);
    // Another kind under a taken name would drop the old endpoint's data: 409.
    let other_kind = call(
        &hub,
        Method::PUT,
        &format!("{ROUTING}/endpoints/archive"),
        Some(json!({ "type": "webhook", "url": "http://127.0.0.1:9/hook" })),
    )
    .await;
    assert_eq!(other_kind.status, StatusCode::CONFLICT);
    assert!(
        message(&other_kind).contains("storage endpoint"),
        "{:?}",
        other_kind.body
    );
    let listed = call(&hub, Method::GET, &format!("{ROUTING}/endpoints"), None).await;
    assert_eq!(names(&listed, "name"), ["hot", "archive"]);
    let one = call(&hub, Method::GET, &format!("{ROUTING}/endpoints/HOT"), None).await;
    assert_eq!(one.status, StatusCode::OK);
    assert_eq!(one.body["partitionCount"], 2);

    // Consumer groups of the stream: $Default always, others added once.
    let groups = format!("{ROUTING}/endpoints/hot/consumergroups");
    let added = call(&hub, Method::POST, &format!("{groups}/readers"), None).await;
    assert_eq!(added.status, StatusCode::CREATED, "{:?}", added.body);
    let again = call(&hub, Method::POST, &format!("{groups}/READERS"), None).await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.body["name"], "readers");
    let listed = call(&hub, Method::GET, &groups, None).await;
    assert_eq!(listed.body["value"], json!(["$Default", "readers"]));
    let config = call(&hub, Method::GET, ROUTING, None).await;
    assert_eq!(config.body["endpoints"][0]["consumerGroups"], json!(["readers"]));
    assert_eq!(
        call(&hub, Method::DELETE, &format!("{groups}/$Default"), None)
            .await
            .status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        call(
            &hub,
            Method::POST,
            &format!("{ROUTING}/endpoints/archive/consumergroups/x"),
            None
        )
        .await
        .status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        call(&hub, Method::DELETE, &format!("{groups}/readers"), None)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        call(&hub, Method::DELETE, &format!("{groups}/readers"), None)
            .await
            .status,
        StatusCode::NOT_FOUND
    );

    // Routes.
    let route = json!({ "name": "hot-route", "source": "DeviceMessages", "condition": "$body.temp > 30", "endpointNames": ["hot"], "isEnabled": true });
    let created = call(
        &hub,
        Method::POST,
        &format!("{ROUTING}/routes"),
        Some(route.clone()),
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
    assert_eq!(created.body, route);
    let clash = call(
        &hub,
        Method::POST,
        &format!("{ROUTING}/routes"),
        Some(route.clone()),
    )
    .await;
    assert_eq!(clash.status, StatusCode::CONFLICT);
    let replaced = call(
        &hub,
        Method::PUT,
        &format!("{ROUTING}/routes/hot-route"),
        Some(json!({ "source": "DeviceMessages", "condition": "$body.temp > 40", "endpointNames": ["hot"] })),
    )
    .await;
    assert_eq!(replaced.status, StatusCode::OK, "{:?}", replaced.body);
    assert_eq!(replaced.body["isEnabled"], true);
    let shown = call(&hub, Method::GET, &format!("{ROUTING}/routes/HOT-ROUTE"), None).await;
    assert_eq!(shown.body["condition"], "$body.temp > 40");
    let listed = call(&hub, Method::GET, &format!("{ROUTING}/routes"), None).await;
    assert_eq!(names(&listed, "name"), ["hot-route"]);
    // The router uses it at once.
    let router = hub.outpost.routing.router(&HubName::new("localhost").unwrap());
    assert_eq!(router.config().routes.len(), 1);

    // An endpoint a route names cannot go.
    let refused = call(&hub, Method::DELETE, &format!("{ROUTING}/endpoints/hot"), None).await;
    assert_eq!(refused.status, StatusCode::CONFLICT);
    assert!(
        message(&refused).contains("route 'hot-route'"),
        "{:?}",
        refused.body
    );
    assert_eq!(
        call(&hub, Method::DELETE, &format!("{ROUTING}/routes/hot-route"), None)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        call(&hub, Method::GET, &format!("{ROUTING}/routes/hot-route"), None)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        call(&hub, Method::DELETE, &format!("{ROUTING}/endpoints/hot"), None)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    for path in ["endpoints/hot", "routes/nope", "enrichments/nope"] {
        let missing = call(&hub, Method::GET, &format!("{ROUTING}/{path}"), None).await;
        assert_eq!(missing.status, StatusCode::NOT_FOUND, "{path}");
    }
    let no_hub = call(&hub, Method::GET, "/hubs/nohub/routing/routes", None).await;
    assert_eq!(no_hub.status, StatusCode::NOT_FOUND);
    assert_eq!(no_hub.error_code(), "IotHubNotFound");
    // Another hub's routing is its own.
    let other = call(&hub, Method::GET, "/hubs/hubb/routing/endpoints", None).await;
    assert_eq!(other.body["value"], json!([]));
}

#[tokio::test]
async fn whole_configuration_fallback_and_enrichments() {
    let hub = Fixture::new().await;
    let initial = call(&hub, Method::GET, ROUTING, None).await;
    assert_eq!(
        initial.body,
        json!({ "endpoints": [], "routes": [], "fallbackRoute": { "isEnabled": true }, "enrichments": [] })
    );
    let config = json!({
        "endpoints": [{ "name": "alerts", "type": "eventStream", "partitionCount": 1, "consumerGroups": ["ops"] }],
        "routes": [{ "name": "critical", "source": "DeviceMessages", "condition": "level = 'critical'", "endpointNames": ["alerts"], "isEnabled": true }],
        "fallbackRoute": { "isEnabled": false },
        "enrichments": [{ "key": "site", "value": "$twin.tags.site", "endpointNames": ["alerts", "events"] }],
    });
    let put = call(&hub, Method::PUT, ROUTING, Some(config.clone())).await;
    assert_eq!(put.status, StatusCode::OK, "{:?}", put.body);
    assert_eq!(put.body, config);
    assert_eq!(call(&hub, Method::GET, ROUTING, None).await.body, config);

    let fallback = call(&hub, Method::GET, &format!("{ROUTING}/fallback"), None).await;
    assert_eq!(fallback.body["isEnabled"], false);
    assert_eq!(fallback.body["endpointNames"], json!(["events"]));
    let on = call(
        &hub,
        Method::PUT,
        &format!("{ROUTING}/fallback"),
        Some(json!({ "isEnabled": true })),
    )
    .await;
    assert_eq!(on.status, StatusCode::OK);
    assert_eq!(on.body["isEnabled"], true);
    assert!(
        hub.outpost
            .routing
            .config(&HubName::new("localhost").unwrap())
            .fallback_route
            .is_enabled
    );

    let enrichments = format!("{ROUTING}/enrichments");
    let put = call(
        &hub,
        Method::PUT,
        &format!("{enrichments}/hub"),
        Some(json!({ "value": "$iothubname", "endpointNames": ["alerts"] })),
    )
    .await;
    assert_eq!(put.status, StatusCode::CREATED, "{:?}", put.body);
    let updated = call(
        &hub,
        Method::PUT,
        &format!("{enrichments}/hub"),
        Some(json!({ "key": "hub", "value": "static", "endpointNames": ["events"] })),
    )
    .await;
    assert_eq!(updated.status, StatusCode::OK);
    let listed = call(&hub, Method::GET, &enrichments, None).await;
    assert_eq!(names(&listed, "key"), ["site", "hub"]);
    assert_eq!(listed.body["value"][1]["value"], "static");
    let clash = call(
        &hub,
        Method::POST,
        &enrichments,
        Some(json!({ "key": "SITE", "value": "x", "endpointNames": ["events"] })),
    )
    .await;
    assert_eq!(clash.status, StatusCode::CONFLICT);
    // The enrichment still names the stream.
    let refused = call(&hub, Method::DELETE, &format!("{ROUTING}/endpoints/alerts"), None).await;
    assert!(
        message(&refused).contains("enrichment 'site'"),
        "{:?}",
        refused.body
    );
    assert_eq!(
        call(&hub, Method::DELETE, &format!("{enrichments}/site"), None)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        call(&hub, Method::DELETE, &format!("{enrichments}/site"), None)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn bad_input_is_refused_with_the_reason() {
    let hub = Fixture::new().await;
    let stream = json!({ "name": "hot", "type": "eventStream" });
    call(&hub, Method::POST, &format!("{ROUTING}/endpoints"), Some(stream)).await;
    let route = |condition: &str, endpoint: &str| json!({ "name": "r1", "source": "DeviceMessages", "condition": condition, "endpointNames": [endpoint] });
    let routes = format!("{ROUTING}/routes");

    let bad = call(&hub, Method::POST, &routes, Some(route("temp >", "hot"))).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert_eq!(bad.error_code(), "ArgumentInvalid");
    assert!(
        message(&bad).contains("route 'r1'") && message(&bad).contains("line 1, column"),
        "{:?}",
        bad.body
    );

    let unknown = call(&hub, Method::POST, &routes, Some(route("true", "nowhere"))).await;
    assert_eq!(unknown.status, StatusCode::BAD_REQUEST);
    assert!(
        message(&unknown).contains("unknown endpoint 'nowhere'"),
        "{:?}",
        unknown.body
    );

    // A misspelt optional field would silently route everything: refused.
    let typo = call(
        &hub,
        Method::POST,
        &routes,
        Some(json!({ "name": "r1", "source": "DeviceMessages", "conditon": "false", "endpointNames": ["hot"] })),
    )
    .await;
    assert_eq!(typo.status, StatusCode::BAD_REQUEST);
    assert!(
        message(&typo).contains("unknown field 'conditon'"),
        "{:?}",
        typo.body
    );

    let bad_source = call(
        &hub,
        Method::POST,
        &routes,
        Some(json!({ "name": "r1", "source": "Nope", "endpointNames": ["hot"] })),
    )
    .await;
    assert_eq!(bad_source.status, StatusCode::BAD_REQUEST);

    let mismatch = call(
        &hub,
        Method::PUT,
        &format!("{routes}/r2"),
        Some(route("true", "hot")),
    )
    .await;
    assert_eq!(mismatch.status, StatusCode::BAD_REQUEST);
    assert!(
        message(&mismatch).contains("does not match"),
        "{:?}",
        mismatch.body
    );

    let reserved = call(
        &hub,
        Method::PUT,
        &format!("{ROUTING}/endpoints/events"),
        Some(json!({ "type": "eventStream" })),
    )
    .await;
    assert_eq!(reserved.status, StatusCode::BAD_REQUEST, "{:?}", reserved.body);
    // A stream named like the hub would be the hub's own log feeding itself.
    let looped = call(
        &hub,
        Method::PUT,
        &format!("{ROUTING}/endpoints/localhost"),
        Some(json!({ "type": "eventStream" })),
    )
    .await;
    assert_eq!(looped.status, StatusCode::BAD_REQUEST);
    assert!(message(&looped).contains("loop"), "{:?}", looped.body);
    let relative = call(
        &hub,
        Method::PUT,
        &format!("{ROUTING}/endpoints/files"),
        Some(json!({ "type": "storage", "directory": "relative/dir" })),
    )
    .await;
    assert_eq!(relative.status, StatusCode::BAD_REQUEST);
    let empty = call(&hub, Method::PUT, ROUTING, None).await;
    assert_eq!(empty.status, StatusCode::BAD_REQUEST);
    let not_json = hub
        .raw(
            &hub.operator,
            Method::PUT,
            "127.0.0.1",
            ROUTING,
            Some(&format!("Bearer {OPERATOR_TOKEN}")),
            b"{".to_vec(),
            &[],
        )
        .await;
    assert_eq!(not_json.status, StatusCode::BAD_REQUEST);
    // Nothing of the above was stored.
    let config = call(&hub, Method::GET, ROUTING, None).await;
    assert_eq!(config.body["routes"], json!([]));
    assert_eq!(
        names(
            &call(&hub, Method::GET, &format!("{ROUTING}/endpoints"), None).await,
            "name"
        ),
        ["hot"]
    );
    // No token, no routing.
    let anonymous = hub
        .raw(
            &hub.operator,
            Method::GET,
            "127.0.0.1",
            ROUTING,
            None,
            Vec::new(),
            &[],
        )
        .await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn route_test_evaluates_samples_without_sending() {
    let hub = Fixture::new().await;
    let config = json!({
        "endpoints": [{ "name": "hot", "type": "eventStream" }, { "name": "north", "type": "eventStream" }],
        "routes": [
            { "name": "hot", "source": "DeviceMessages", "condition": "$body.temp > 30", "endpointNames": ["hot"] },
            { "name": "north", "source": "DeviceMessages", "condition": "$twin.tags.site = 'north'", "endpointNames": ["north"] },
            { "name": "critical", "source": "DeviceMessages", "condition": "level = 'critical' AND $connectionDeviceId = 'd1'", "endpointNames": ["events"] },
            { "name": "off", "source": "DeviceMessages", "condition": "true", "endpointNames": ["events"], "isEnabled": false },
            { "name": "twins", "source": "TwinChangeEvents", "condition": "true", "endpointNames": ["events"] },
        ],
    });
    assert_eq!(
        call(&hub, Method::PUT, ROUTING, Some(config)).await.status,
        StatusCode::OK
    );
    let test = format!("{ROUTING}/test");
    let json_message = json!({
        "body": "{\"temp\": 35}",
        "appProperties": { "level": "critical" },
        "systemProperties": { "contentType": "application/json", "contentEncoding": "utf-8", "connectionDeviceId": "d1" },
    });
    let twin = json!({ "tags": { "site": "north" }, "properties": { "desired": {}, "reported": {} } });

    let one = call(
        &hub,
        Method::POST,
        &test,
        Some(json!({ "route": "hot", "message": json_message })),
    )
    .await;
    assert_eq!(one.status, StatusCode::OK, "{:?}", one.body);
    assert_eq!(one.body, json!({ "result": "true" }));
    // The same body without a JSON content type: `$body` is undefined, the condition false (Azure).
    let plain = json!({ "body": "{\"temp\": 35}" });
    let one = call(
        &hub,
        Method::POST,
        &test,
        Some(json!({ "route": "hot", "message": plain })),
    )
    .await;
    assert_eq!(one.body["result"], "false");
    let condition = call(
        &hub,
        Method::POST,
        &test,
        Some(json!({ "condition": "$twin.tags.site = 'south'", "twin": twin })),
    )
    .await;
    assert_eq!(condition.body["result"], "false");

    let all = call(
        &hub,
        Method::POST,
        &test,
        Some(json!({ "message": json_message, "twin": twin })),
    )
    .await;
    assert_eq!(all.status, StatusCode::OK, "{:?}", all.body);
    let matched: Vec<&str> = all.body["routes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(matched, ["hot", "north", "critical"]);
    assert_eq!(all.body["routes"][0]["endpointNames"], json!(["hot"]));
    assert_eq!(all.body["routes"][0]["source"], "DeviceMessages");
    let twins = call(
        &hub,
        Method::POST,
        &test,
        Some(json!({ "routingSource": "twinchangeevents" })),
    )
    .await;
    assert_eq!(twins.body["routes"][0]["name"], "twins", "{:?}", twins.body);
    // Nothing was sent: the hub's log is empty.
    let log = LogName::hub(&HubName::new("localhost").unwrap());
    for partition in 0..4 {
        let next = *hub
            .outpost
            .telemetry
            .log()
            .watch(&log, partition)
            .unwrap()
            .borrow();
        assert_eq!(next, 0);
    }

    let bad = call(&hub, Method::POST, &test, Some(json!({ "condition": "a = = 1" }))).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(message(&bad).contains("column"), "{:?}", bad.body);
    let missing = call(&hub, Method::POST, &test, Some(json!({ "route": "nope" }))).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    let both = call(
        &hub,
        Method::POST,
        &test,
        Some(json!({ "route": "hot", "condition": "true" })),
    )
    .await;
    assert_eq!(both.status, StatusCode::BAD_REQUEST);
    let bad_property = call(
        &hub,
        Method::POST,
        &test,
        Some(json!({ "condition": "true", "message": { "systemProperties": { "colour": "red" } } })),
    )
    .await;
    assert_eq!(bad_property.status, StatusCode::BAD_REQUEST);
    let bad_source = call(&hub, Method::POST, &test, Some(json!({ "source": "nope" }))).await;
    assert_eq!(bad_source.status, StatusCode::BAD_REQUEST);
}

/// A path under a regular file: every write there fails (ENOTDIR), even for root.
fn unwritable(dir: &Path) -> String {
    let file = dir.join("a-file");
    std::fs::write(&file, b"x").unwrap();
    file.join("archive").to_str().unwrap().to_owned()
}

#[tokio::test]
async fn health_and_metrics_report_delivery() {
    let hub = Fixture::new().await;
    let dir = tempfile::tempdir().unwrap();
    let config = json!({
        "endpoints": [
            { "name": "hot", "type": "eventStream", "partitionCount": 1 },
            { "name": "archive", "type": "storage", "directory": unwritable(dir.path()), "encoding": "json", "batchFrequencyInSeconds": 1, "maxChunkSizeInBytes": 1024 },
        ],
        "routes": [
            { "name": "hot", "source": "DeviceMessages", "condition": "true", "endpointNames": ["hot"] },
            { "name": "archive", "source": "DeviceMessages", "condition": "true", "endpointNames": ["archive"] },
        ],
    });
    assert_eq!(
        call(&hub, Method::PUT, ROUTING, Some(config)).await.status,
        StatusCode::OK
    );
    let health = call(&hub, Method::GET, &format!("{ROUTING}/health"), None).await;
    // Delivery has not started: configured endpoints are listed as unknown.
    assert_eq!(names(&health, "healthStatus"), ["unknown", "unknown"]);
    assert_eq!(names(&health, "endpointId"), ["hot", "archive"]);

    hub.outpost
        .routing
        .start_delivery(EndpointPorts {
            directory: Arc::new(|root: &Path| {
                Arc::new(outpost_store::DirectoryTarget::new(root)) as Arc<dyn StorageTarget>
            }),
            blobs: None,
            webhook: None,
            dead_letters: dir.path().join("dead-letters"),
            dead_after: Duration::from_secs(3600),
        })
        .await;
    let localhost = hub.outpost.hubs.by_name("localhost").unwrap();
    let identity = DeviceIdentity {
        hub: localhost,
        device_id: DeviceId::new("d1").unwrap(),
        module_id: None,
        generation_id: "1".into(),
        auth_method: DeviceAuthMethod::IdentitySas,
        credential_expiry: None,
    };
    let sample = OutgoingMessage {
        properties: SystemProperties::default(),
        application_properties: Vec::new(),
        body: Bytes::from_static(b"{\"temp\": 20}"),
    };
    hub.outpost.telemetry.send(&identity, vec![sample]).await.unwrap();

    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let (hot, archive) = loop {
        let health = call(&hub, Method::GET, &format!("{ROUTING}/health"), None).await;
        let rows = health.body["value"].as_array().unwrap().clone();
        let row = |name: &str| rows.iter().find(|r| r["endpointId"] == name).unwrap().clone();
        let (hot, archive) = (row("hot"), row("archive"));
        if hot["healthStatus"] == "healthy" && archive["healthStatus"] == "unhealthy" {
            break (hot, archive);
        }
        assert!(tokio::time::Instant::now() < deadline, "{rows:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(hot["delivered"], 1);
    assert_eq!(hot["kind"], "eventStream");
    assert!(hot["lastSuccessfulSendAttemptTime"].is_string());
    assert_eq!(hot["lastSendAttemptTime"], hot["lastSuccessfulSendAttemptTime"]);
    assert!(archive["lastKnownError"].is_string(), "{archive:?}");
    assert!(archive["lastKnownErrorTime"].is_string());
    assert!(archive["failures"].as_u64().unwrap() >= 1);

    let metrics = text(&hub, "/metrics").await;
    for line in [
        "outpost_routing_endpoint_health{hub=\"localhost\",endpoint=\"hot\",kind=\"eventStream\",status=\"healthy\"} 1",
        "outpost_routing_endpoint_health{hub=\"localhost\",endpoint=\"hot\",kind=\"eventStream\",status=\"unhealthy\"} 0",
        "outpost_routing_endpoint_health{hub=\"localhost\",endpoint=\"archive\",kind=\"storage\",status=\"unhealthy\"} 1",
        "outpost_routing_delivered_total{hub=\"localhost\",endpoint=\"hot\"} 1",
        "outpost_routing_dead_lettered_total{hub=\"localhost\",endpoint=\"archive\"} 0",
        "# TYPE outpost_routing_delivery_failures_total counter",
    ] {
        assert!(metrics.contains(line), "missing {line}\n{metrics}");
    }
    assert!(
        metrics.contains("outpost_routing_delivery_failures_total{hub=\"localhost\",endpoint=\"archive\"} ")
    );
    hub.outpost.routing.stop_delivery().await;
}

#[tokio::test]
async fn event_hubs_connection_string_of_a_stream() {
    let hub = Fixture::new().await;
    call(
        &hub,
        Method::PUT,
        &format!("{ROUTING}/endpoints/Hot"),
        Some(json!({ "type": "eventStream" })),
    )
    .await;
    call(
        &hub,
        Method::PUT,
        &format!("{ROUTING}/endpoints/files"),
        Some(json!({ "type": "storage", "directory": "/tmp/outpost-files" })),
    )
    .await;
    let base = "/hubs/localhost/connection-string?policy=service&eventhub=true";
    let reply = call(&hub, Method::GET, &format!("{base}&stream=hot"), None).await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    let text = reply.body["connectionString"].as_str().unwrap();
    let key = hub.key("localhost", "service");
    let key = key.as_str();
    assert_eq!(
        text,
        format!("Endpoint=sb://localhost/;SharedAccessKeyName=service;SharedAccessKey={key};EntityPath=Hot")
    );
    let builtin = call(&hub, Method::GET, base, None).await;
    assert!(
        builtin.body["connectionString"]
            .as_str()
            .unwrap()
            .ends_with("EntityPath=localhost")
    );
    assert_eq!(
        call(&hub, Method::GET, &format!("{base}&stream=nope"), None)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        call(&hub, Method::GET, &format!("{base}&stream=files"), None)
            .await
            .status,
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_changes_are_all_kept() {
    let hub = Arc::new(Fixture::new().await);
    let mut tasks = Vec::new();
    for n in 0..40 {
        let hub = hub.clone();
        tasks.push(tokio::spawn(async move {
            let route = json!({ "name": format!("r{n}"), "source": "DeviceMessages", "condition": format!("n = '{n}'"), "endpointNames": ["events"] });
            call(&hub, Method::POST, &format!("{ROUTING}/routes"), Some(route)).await.status
        }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap(), StatusCode::CREATED);
    }
    let listed = call(&hub, Method::GET, &format!("{ROUTING}/routes"), None).await;
    assert_eq!(listed.body["value"].as_array().unwrap().len(), 40);
}
