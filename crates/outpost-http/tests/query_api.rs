//! `POST /devices/query` through the service router: paging with continuation tokens over devices
//! and modules (including resuming inside a device's modules), TOP across pages, item types,
//! aggregates, hub isolation, rights and bad input.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]

mod support;

use http::{Method, StatusCode};
use serde_json::{Value, json};
use support::{Fixture, HUB_A, HUB_B_HOST, api};

async fn create_device(fixture: &Fixture, host: &str, id: &str, tags: Value) {
    let reply = fixture
        .owner(
            Method::PUT,
            host,
            &api(&format!("/devices/{id}")),
            Some(json!({ "deviceId": id })),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    let reply = fixture
        .owner(
            Method::PATCH,
            host,
            &api(&format!("/twins/{id}")),
            Some(json!({ "tags": tags })),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
}

async fn create_module(fixture: &Fixture, device: &str, module: &str) {
    let path = api(&format!("/devices/{device}/modules/{module}"));
    let body = json!({ "deviceId": device, "moduleId": module });
    let reply = fixture.owner(Method::PUT, HUB_A, &path, Some(body)).await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
}

/// One page: (items, item type, continuation).
async fn page(
    fixture: &Fixture,
    host: &str,
    query: &str,
    size: usize,
    continuation: Option<&str>,
) -> (Vec<Value>, String, Option<String>) {
    let token = fixture.token(host, "iothubowner");
    let size = size.to_string();
    let mut headers = vec![("x-ms-max-item-count", size.as_str())];
    if let Some(continuation) = continuation {
        headers.push(("x-ms-continuation", continuation));
    }
    let reply = fixture
        .service_call(
            Method::POST,
            host,
            &api("/devices/query"),
            Some(&token),
            Some(json!({ "query": query })),
            &headers,
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{query}: {:?}", reply.body);
    let item_type = reply.headers["x-ms-item-type"].to_str().unwrap().to_owned();
    let next = reply
        .headers
        .get("x-ms-continuation")
        .map(|value| value.to_str().unwrap().to_owned());
    (reply.body.as_array().unwrap().clone(), item_type, next)
}

/// Every page of a query: the items of each page.
async fn pages(fixture: &Fixture, query: &str, size: usize) -> Vec<Vec<Value>> {
    let mut all = Vec::new();
    let mut continuation = None;
    loop {
        let (items, _, next) = page(fixture, HUB_A, query, size, continuation.as_deref()).await;
        all.push(items);
        assert!(all.len() < 50, "paging does not end");
        match next {
            Some(next) => continuation = Some(next),
            None => return all,
        }
    }
}

fn ids(pages: &[Vec<Value>], key: &str) -> Vec<String> {
    pages
        .iter()
        .flatten()
        .map(|item| item[key].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn device_queries_page_in_id_order_and_top_spans_pages() {
    let fixture = Fixture::new().await;
    for n in 0..7 {
        create_device(
            &fixture,
            HUB_A,
            &format!("q-{n}"),
            json!({ "n": n, "even": n % 2 == 0 }),
        )
        .await;
    }
    create_device(&fixture, HUB_B_HOST, "q-other", json!({ "n": 1 })).await;

    let all = pages(
        &fixture,
        "SELECT * FROM devices WHERE STARTSWITH(deviceId, 'q-')",
        3,
    )
    .await;
    assert_eq!(all.iter().map(Vec::len).collect::<Vec<_>>(), [3, 3, 1]);
    assert_eq!(
        ids(&all, "deviceId"),
        (0..7).map(|n| format!("q-{n}")).collect::<Vec<_>>()
    );

    let even = pages(&fixture, "SELECT * FROM devices WHERE tags.even = true", 2).await;
    assert_eq!(ids(&even, "deviceId"), ["q-0", "q-2", "q-4", "q-6"]);
    assert_eq!(
        even.iter().map(Vec::len).collect::<Vec<_>>(),
        [2, 2],
        "no empty last page"
    );

    let top = pages(&fixture, "SELECT TOP 3 * FROM devices WHERE tags.n >= 1", 2).await;
    assert_eq!(ids(&top, "deviceId"), ["q-1", "q-2", "q-3"]);

    let (items, item_type, _) = page(
        &fixture,
        HUB_A,
        "SELECT deviceId, tags.n AS n FROM devices WHERE tags.n < 2",
        10,
        None,
    )
    .await;
    assert_eq!(item_type, "Raw");
    assert_eq!(
        items,
        [
            json!({ "deviceId": "q-0", "n": 0 }),
            json!({ "deviceId": "q-1", "n": 1 })
        ]
    );

    let (items, item_type, next) = page(
        &fixture,
        HUB_A,
        "SELECT tags.even AS even, COUNT() AS count FROM devices GROUP BY tags.even",
        1,
        None,
    )
    .await;
    assert_eq!(item_type, "Raw");
    assert_eq!(next, None, "aggregates answer in one page");
    assert_eq!(
        items,
        [
            json!({ "even": true, "count": 4 }),
            json!({ "even": false, "count": 3 })
        ]
    );

    // The other hub sees its own device only.
    let (items, item_type, _) = page(&fixture, HUB_B_HOST, "SELECT * FROM devices", 100, None).await;
    assert_eq!(item_type, "Twin");
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["deviceId"], "q-other");
}

#[tokio::test]
async fn module_queries_resume_inside_a_device() {
    let fixture = Fixture::new().await;
    for device in ["m-a", "m-b", "m-c"] {
        create_device(&fixture, HUB_A, device, json!({})).await;
    }
    for (device, module) in [("m-a", "one"), ("m-a", "two"), ("m-a", "three"), ("m-c", "solo")] {
        create_module(&fixture, device, module).await;
    }
    let all = pages(&fixture, "SELECT * FROM devices.modules", 2).await;
    let found: Vec<(String, String)> = all
        .iter()
        .flatten()
        .map(|twin| {
            (
                twin["deviceId"].as_str().unwrap().to_owned(),
                twin["moduleId"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let expected = [("m-a", "one"), ("m-a", "three"), ("m-a", "two"), ("m-c", "solo")];
    assert_eq!(found, expected.map(|(d, m)| (d.to_owned(), m.to_owned())));
    let one_by_one = pages(
        &fixture,
        "SELECT * FROM devices.modules WHERE moduleId != 'three'",
        1,
    )
    .await;
    assert_eq!(ids(&one_by_one, "moduleId"), ["one", "two", "solo"]);

    let (items, item_type, next) = page(&fixture, HUB_A, "SELECT * FROM devices.jobs", 10, None).await;
    assert_eq!((items.len(), item_type.as_str(), next), (0, "DeviceJob", None));
}

#[tokio::test]
async fn bad_queries_tokens_and_callers_are_refused() {
    let fixture = Fixture::new().await;
    let token = fixture.token(HUB_A, "iothubowner");
    let call = |body: Value, headers: Vec<(&'static str, &'static str)>| {
        let token = token.clone();
        let fixture = &fixture;
        async move {
            fixture
                .service_call(
                    Method::POST,
                    HUB_A,
                    &api("/devices/query"),
                    Some(&token),
                    Some(body),
                    &headers,
                )
                .await
        }
    };
    let reply = call(json!({ "query": "SELECT * FROM devices WHERE" }), vec![]).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.error_code(), "ArgumentInvalid");
    assert!(
        reply.body["Message"].as_str().unwrap().contains("column"),
        "{:?}",
        reply.body
    );
    let reply = call(json!({}), vec![]).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    let reply = call(
        json!({ "query": "SELECT * FROM devices" }),
        vec![("x-ms-continuation", "not-a-token")],
    )
    .await;
    assert_eq!(reply.error_code(), "ArgumentInvalid");
    let reply = call(
        json!({ "query": "SELECT * FROM devices" }),
        vec![("x-ms-max-item-count", "zero")],
    )
    .await;
    assert_eq!(reply.error_code(), "ArgumentInvalid");
    let long = format!("SELECT * FROM devices WHERE deviceId = '{}'", "x".repeat(9000));
    let reply = call(json!({ "query": long }), vec![]).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);

    // POST on another device path is not a query; a device named `query` keeps its routes.
    let reply = fixture
        .owner(Method::POST, HUB_A, &api("/devices/dev1"), Some(json!({})))
        .await;
    assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED);
    let reply = fixture
        .owner(
            Method::PUT,
            HUB_A,
            &api("/devices/query"),
            Some(json!({ "deviceId": "query" })),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    let reply = fixture
        .owner(Method::GET, HUB_A, &api("/devices/query"), None)
        .await;
    assert_eq!(reply.body["deviceId"], "query");

    // Querying needs RegistryRead: the `device` policy (DeviceConnect only) may not.
    let device_token = fixture.token(HUB_A, "device");
    let reply = fixture
        .service_call(
            Method::POST,
            HUB_A,
            &api("/devices/query"),
            Some(&device_token),
            Some(json!({ "query": "SELECT * FROM devices" })),
            &[],
        )
        .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
}
