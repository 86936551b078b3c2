//! The operator API's consumer groups of a hub's built-in endpoint: `$Default` always listed,
//! created (idempotent, case-insensitive), read, deleted, validated and limited.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]

mod support;

use http::{Method, StatusCode};
use outpost_model::MAX_CONSUMER_GROUPS;
use serde_json::Value;
use support::{Fixture, OPERATOR_TOKEN};

const GROUPS: &str = "/hubs/localhost/eventHubEndpoints/events/consumerGroups";

async fn operator(hub: &Fixture, method: Method, path: &str) -> support::Reply {
    let bearer = format!("Bearer {OPERATOR_TOKEN}");
    hub.raw(
        &hub.operator,
        method,
        "127.0.0.1",
        path,
        Some(&bearer),
        Vec::new(),
        &[],
    )
    .await
}

fn names(reply: &support::Reply) -> Vec<String> {
    reply.body["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|group| group["name"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn consumer_groups_are_created_listed_read_and_deleted() {
    let hub = Fixture::new().await;
    let listed = operator(&hub, Method::GET, GROUPS).await;
    assert_eq!(listed.status, StatusCode::OK, "{:?}", listed.body);
    assert_eq!(names(&listed), ["$Default"]);
    assert_eq!(
        listed.body["value"][0]["type"],
        "Microsoft.Devices/IotHubs/EventHubEndpoints/ConsumerGroups"
    );

    let created = operator(&hub, Method::PUT, &format!("{GROUPS}/Readers")).await;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
    assert_eq!(created.body["name"], "Readers");
    assert_eq!(created.body["properties"]["name"], "Readers");
    assert!(created.body["properties"]["created"].is_string());
    // Names are case-insensitive: the same group again, not a second one.
    let again = operator(&hub, Method::PUT, &format!("{GROUPS}/readers")).await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.body["name"], "Readers");
    assert_eq!(
        names(&operator(&hub, Method::GET, GROUPS).await),
        ["$Default", "Readers"]
    );

    let read = operator(&hub, Method::GET, &format!("{GROUPS}/READERS")).await;
    assert_eq!(read.status, StatusCode::OK);
    assert_eq!(read.body, created.body);
    let default = operator(&hub, Method::GET, &format!("{GROUPS}/$Default")).await;
    assert_eq!(default.status, StatusCode::OK);

    let deleted = operator(&hub, Method::DELETE, &format!("{GROUPS}/readers")).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    for method in [Method::GET, Method::DELETE] {
        let gone = operator(&hub, method, &format!("{GROUPS}/readers")).await;
        assert_eq!(gone.status, StatusCode::NOT_FOUND, "{:?}", gone.body);
    }
    assert_eq!(names(&operator(&hub, Method::GET, GROUPS).await), ["$Default"]);

    // Another hub's groups are its own.
    let other = operator(
        &hub,
        Method::GET,
        "/hubs/hubb/eventHubEndpoints/events/consumerGroups",
    )
    .await;
    assert_eq!(names(&other), ["$Default"]);
    let no_hub = operator(
        &hub,
        Method::PUT,
        "/hubs/nosuch/eventHubEndpoints/events/consumerGroups/a",
    )
    .await;
    assert_eq!(no_hub.status, StatusCode::NOT_FOUND);
    assert_eq!(no_hub.error_code(), "IotHubNotFound");
}

#[tokio::test]
async fn invalid_names_default_and_the_limit_are_refused() {
    let hub = Fixture::new().await;
    for bad in ["a%20b", "%24other", &"x".repeat(51), "a%2Fb"] {
        let refused = operator(&hub, Method::PUT, &format!("{GROUPS}/{bad}")).await;
        assert!(
            refused.status == StatusCode::BAD_REQUEST || refused.status == StatusCode::NOT_FOUND,
            "{bad}: {} {:?}",
            refused.status,
            refused.body
        );
    }
    let refused = operator(&hub, Method::DELETE, &format!("{GROUPS}/$Default")).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{:?}", refused.body);
    assert_eq!(refused.error_code(), "ArgumentInvalid");

    for n in 1..MAX_CONSUMER_GROUPS {
        let created = operator(&hub, Method::PUT, &format!("{GROUPS}/cg{n}")).await;
        assert_eq!(created.status, StatusCode::CREATED, "{n}: {:?}", created.body);
    }
    let over = operator(&hub, Method::PUT, &format!("{GROUPS}/one-more")).await;
    assert_eq!(over.status, StatusCode::BAD_REQUEST, "{:?}", over.body);
    let message = over
        .body
        .get("Message")
        .and_then(Value::as_str)
        .unwrap_or_default();
    assert!(message.contains("at most 20"), "{message}");
    assert_eq!(
        names(&operator(&hub, Method::GET, GROUPS).await).len(),
        MAX_CONSUMER_GROUPS
    );
}
