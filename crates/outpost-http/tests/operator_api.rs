//! The operator API: bearer-token authentication, hub management, connection strings,
//! forwarding to the service routes, and `/metrics`.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]

mod support;

use http::{Method, StatusCode};
use outpost_auth::ServiceConnectionString;
use serde_json::{Value, json};
use support::{Fixture, HUB_A, OPERATOR_TOKEN, api};

async fn operator(hub: &Fixture, method: Method, path: &str, body: Option<Value>) -> support::Reply {
    let body = body.map(|b| serde_json::to_vec(&b).unwrap()).unwrap_or_default();
    let bearer = format!("Bearer {OPERATOR_TOKEN}");
    hub.raw(&hub.operator, method, "127.0.0.1", path, Some(&bearer), body, &[])
        .await
}

#[tokio::test]
async fn operator_routes_need_the_token() {
    let hub = Fixture::new().await;
    for authorization in [None, Some("Bearer wrong"), Some(OPERATOR_TOKEN)] {
        let reply = hub
            .raw(
                &hub.operator,
                Method::GET,
                "127.0.0.1",
                "/hubs",
                authorization,
                Vec::new(),
                &[],
            )
            .await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{authorization:?}");
    }
    let metrics = hub
        .raw(
            &hub.operator,
            Method::GET,
            "127.0.0.1",
            "/metrics",
            None,
            Vec::new(),
            &[],
        )
        .await;
    assert_eq!(metrics.status, StatusCode::UNAUTHORIZED);
    let health = hub
        .raw(
            &hub.operator,
            Method::GET,
            "127.0.0.1",
            "/healthz",
            None,
            Vec::new(),
            &[],
        )
        .await;
    assert_eq!(health.status, StatusCode::OK);
}

#[tokio::test]
async fn hubs_are_created_listed_and_deleted() {
    let hub = Fixture::new().await;
    let created = operator(
        &hub,
        Method::POST,
        "/hubs",
        Some(json!({"name": "plant1", "partitionCount": 8})),
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
    assert_eq!(created.body["hostName"], "plant1.example.test");
    assert_eq!(created.body["policies"].as_array().unwrap().len(), 5);
    assert!(
        !created.body.to_string().contains("primaryKey"),
        "summaries carry no keys"
    );
    let duplicate = operator(&hub, Method::POST, "/hubs", Some(json!({"name": "plant1"}))).await;
    assert_eq!(duplicate.status, StatusCode::CONFLICT);
    let bad = operator(&hub, Method::POST, "/hubs", Some(json!({"name": "Bad Name"}))).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    let wrong_host = operator(
        &hub,
        Method::POST,
        "/hubs",
        Some(json!({"name": "p2", "hostName": "other.example"})),
    )
    .await;
    assert_eq!(wrong_host.status, StatusCode::BAD_REQUEST);

    let listed = operator(&hub, Method::GET, "/hubs", None).await;
    let names: Vec<_> = listed
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["hubb", "localhost", "plant1"]);

    let cs = operator(
        &hub,
        Method::GET,
        "/hubs/plant1/connection-string?policy=service",
        None,
    )
    .await;
    let cs: ServiceConnectionString = cs.body["connectionString"].as_str().unwrap().parse().unwrap();
    assert_eq!(
        (cs.host_name.as_str(), cs.key_name.as_str()),
        ("plant1.example.test", "service")
    );
    let eventhub = operator(
        &hub,
        Method::GET,
        "/hubs/plant1/connection-string?eventhub=true",
        None,
    )
    .await;
    assert!(
        eventhub.body["connectionString"]
            .as_str()
            .unwrap()
            .starts_with("Endpoint=sb://plant1.example.test/;")
    );

    let deleted = operator(&hub, Method::DELETE, "/hubs/plant1", None).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    let gone = operator(&hub, Method::GET, "/hubs/plant1", None).await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn service_routes_are_forwarded_as_the_operator() {
    let hub = Fixture::new().await;
    let created = operator(
        &hub,
        Method::PUT,
        &api("/hubs/localhost/service/devices/a%3Fb"),
        Some(json!({})),
    )
    .await;
    assert_eq!(created.status, StatusCode::OK, "{:?}", created.body);
    assert_eq!(created.body["deviceId"], "a?b");
    let read = hub.owner(Method::GET, HUB_A, &api("/devices/a%3Fb"), None).await;
    assert_eq!(read.status, StatusCode::OK);
    let no_hub = operator(&hub, Method::GET, &api("/hubs/nosuch/service/devices"), None).await;
    assert_eq!(no_hub.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn metrics_count_requests_devices_and_storage_latency() {
    let hub = Fixture::new().await;
    hub.owner(Method::PUT, HUB_A, &api("/devices/m1"), Some(json!({})))
        .await;
    hub.owner(Method::GET, HUB_A, &api("/devices/missing"), None)
        .await;
    let metrics = operator(&hub, Method::GET, "/metrics", None).await;
    assert_eq!(metrics.status, StatusCode::OK);
    let bearer = format!("Bearer {OPERATOR_TOKEN}");
    let text = {
        use http_body_util::BodyExt as _;
        use tower::ServiceExt as _;
        let request = http::Request::get("/metrics")
            .header("authorization", bearer)
            .body(axum::body::Body::empty())
            .unwrap();
        let response = hub.operator.clone().oneshot(request).await.unwrap();
        String::from_utf8(response.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
    };
    assert!(
        text.contains("outpost_http_requests_total{api=\"device\",status=\"200\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("outpost_http_requests_total{api=\"device\",status=\"404\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("outpost_devices{hub=\"localhost\",status=\"enabled\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("outpost_storage_operation_seconds_count{operation=\"put_device\"} 1"),
        "{text}"
    );
}

#[tokio::test]
async fn events_are_read_back_with_properties_and_annotations() {
    use outpost_core::{DeviceAuthMethod, DeviceIdentity, OutgoingMessage};
    use outpost_model::{DeviceId, SystemProperties, partition_for};

    let hub = Fixture::new().await;
    let localhost = hub.outpost.hubs.by_host(HUB_A).unwrap();
    let identity = DeviceIdentity {
        hub: localhost.clone(),
        device_id: DeviceId::new("dev1").unwrap(),
        module_id: None,
        generation_id: "123456789012345678".into(),
        auth_method: DeviceAuthMethod::IdentitySas,
        credential_expiry: None,
    };
    let message = OutgoingMessage {
        properties: SystemProperties {
            message_id: Some("m1".into()),
            ..Default::default()
        },
        application_properties: vec![("k".into(), "v".into())],
        body: bytes::Bytes::from_static(b"{\"t\":1}"),
    };
    hub.outpost
        .telemetry
        .send(&identity, vec![message])
        .await
        .unwrap();
    let partition = partition_for(&identity.device_id, localhost.partition_count);

    let partitions = operator(&hub, Method::GET, "/hubs/localhost/partitions", None).await;
    assert_eq!(partitions.body.as_array().unwrap().len(), 4);
    assert_eq!(
        partitions.body[partition as usize]["lastEnqueuedSequenceNumber"],
        0
    );

    let path = format!("/hubs/localhost/events?partition={partition}&fromSequenceNumber=0&waitMs=10");
    let events = operator(&hub, Method::GET, &path, None).await;
    let event = &events.body[0];
    assert_eq!(event["origin"], "dev1");
    assert_eq!(event["payload"], "{\"t\":1}");
    assert_eq!(event["properties"]["system"]["message-id"], "m1");
    assert_eq!(event["properties"]["application"]["k"], "v");
    assert_eq!(
        event["annotations"]["iothub-connection-auth-generation-id"],
        "123456789012345678"
    );
    assert_eq!(event["annotations"]["x-opt-sequence-number"], 0);

    // A read at the end waits for the next event, then returns nothing.
    let path = format!("/hubs/localhost/events?partition={partition}&fromSequenceNumber=1&waitMs=50");
    let started = std::time::Instant::now();
    let empty = operator(&hub, Method::GET, &path, None).await;
    assert_eq!(empty.body, json!([]));
    assert!(started.elapsed() >= std::time::Duration::from_millis(50));
    let bad = operator(&hub, Method::GET, "/hubs/localhost/events?partition=9", None).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
}
