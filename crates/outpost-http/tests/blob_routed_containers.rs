//! Routed containers of the built-in blob endpoint: the containers message routing's storage
//! endpoints write into (`containerName`), read with the requests the Azure Storage SDKs send
//! through a container SAS from the operator API; `fileuploads` keeps its own names only.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]

#[path = "support/blob_calls.rs"]
mod blob_calls;
mod support;

use blob_calls::{Answer, BLOCK_BLOB, call};
use http::{Method, StatusCode};
use outpost_core::blobs::BlobSettings;
use serde_json::Value;
use support::{Fixture, HUB_A, HUB_B_HOST, OPERATOR_TOKEN};

/// Mints a SAS through the operator route.
async fn operator_sas(fixture: &Fixture, query: &str) -> Value {
    let answer = call(
        &fixture.operator,
        Method::POST,
        "operator",
        &format!("/hubs/localhost/files/sas?{query}"),
        &[("authorization", &format!("Bearer {OPERATOR_TOKEN}"))],
        b"",
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    serde_json::from_slice(&answer.body).unwrap()
}

/// Sets `localhost`'s routing to one storage endpoint per container of `containers`.
async fn route_to_archive(fixture: &Fixture, containers: &[&str]) {
    let endpoints: Vec<Value> = containers
        .iter()
        .map(|name| {
            serde_json::json!({"name": format!("to-{name}"), "type": "storage", "containerName": name,
                "encoding": "json", "batchFrequencyInSeconds": 1})
        })
        .collect();
    let body =
        serde_json::json!({"endpoints": endpoints, "routes": [], "fallbackRoute": {"isEnabled": true}});
    let answer = call(
        &fixture.operator,
        Method::PUT,
        "operator",
        "/hubs/localhost/routing",
        &[
            ("authorization", &format!("Bearer {OPERATOR_TOKEN}")),
            ("content-type", "application/json"),
        ],
        body.to_string().as_bytes(),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
}

/// Writes a routed file the way a storage endpoint does.
async fn write_routed(fixture: &Fixture, container: &str, name: &str, data: &'static [u8]) {
    use outpost_core::routing::StorageTarget as _;
    let target = outpost_core::routing::storage::BlobContainerTarget::new(
        fixture.outpost.blobs.store().clone(),
        fixture.outpost.clock.clone(),
        outpost_model::HubName::new("localhost").unwrap(),
        container,
    )
    .unwrap();
    target.write(name, bytes::Bytes::from_static(data)).await.unwrap();
}

fn names(list: &Answer) -> Vec<String> {
    list.text()
        .split("<Name>")
        .skip(1)
        .map(|rest| rest.split("</Name>").next().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn routed_containers_are_read_listed_and_deleted_with_their_own_sas() {
    let fixture = Fixture::new().await;
    let router = outpost_http::blob_router(fixture.outpost.clone());
    route_to_archive(&fixture, &["archive"]).await;
    let files = [
        "localhost/0/2026/11/26/08/05",
        "localhost/1/2026/11/26/08/05",
        "localhost/1/2026/11/26/08/06",
    ];
    for name in files {
        write_routed(&fixture, "archive", name, b"{\"Body\":1}\n{\"Body\":2}\n").await;
    }
    let sas = operator_sas(&fixture, "container=archive").await;
    assert_eq!(sas["containerName"], "archive");
    let token = sas["sasToken"].as_str().unwrap().to_owned();
    assert_eq!(
        sas["url"].as_str().unwrap(),
        format!("https://localhost/archive{token}")
    );
    let get = |uri: String, headers: Vec<(&'static str, &'static str)>| {
        let router = router.clone();
        async move { call(&router, Method::GET, HUB_A, &uri, &headers, b"").await }
    };
    let list = get(format!("/archive{token}&restype=container&comp=list"), vec![]).await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.text());
    assert!(
        list.text().contains("ContainerName=\"archive\""),
        "{}",
        list.text()
    );
    assert_eq!(names(&list), files);
    let page = get(
        format!("/archive{token}&restype=container&comp=list&prefix=localhost/1/&maxresults=1"),
        vec![],
    )
    .await;
    assert_eq!(names(&page), [files[1]]);
    assert!(
        page.text()
            .contains(&format!("<NextMarker>{}</NextMarker>", files[2])),
        "{}",
        page.text()
    );
    let next = get(
        format!(
            "/archive{token}&restype=container&comp=list&prefix=localhost/1/&maxresults=1&marker={}",
            files[2]
        ),
        vec![],
    )
    .await;
    assert_eq!(names(&next), [files[2]]);
    assert!(!next.text().contains("<NextMarker>localhost"), "{}", next.text());

    let blob = get(format!("/archive/{}{token}", files[0]), vec![]).await;
    assert_eq!(
        (blob.status, blob.body.as_slice()),
        (StatusCode::OK, &b"{\"Body\":1}\n{\"Body\":2}\n"[..])
    );
    let range = get(
        format!("/archive/{}{token}", files[0]),
        vec![("x-ms-range", "bytes=11-")],
    )
    .await;
    assert_eq!(
        (range.status, range.body.as_slice()),
        (StatusCode::PARTIAL_CONTENT, &b"{\"Body\":2}\n"[..])
    );
    let head = call(
        &router,
        Method::HEAD,
        HUB_A,
        &format!("/archive/{}{token}", files[0]),
        &[],
        b"",
    )
    .await;
    assert_eq!(
        (head.status, &head.headers["content-length"]),
        (StatusCode::OK, &"22".parse().unwrap())
    );
    let properties = get(format!("/archive{token}&restype=container"), vec![]).await;
    assert_eq!(properties.status, StatusCode::OK);

    // A SAS opens its own container only; the uploads' SAS does not open the archive.
    let uploads = operator_sas(&fixture, "permissions=rwdl").await;
    let uploads = uploads["sasToken"].as_str().unwrap().to_owned();
    let crossed = get(format!("/archive/{}{uploads}", files[0]), vec![]).await;
    assert_eq!(
        (crossed.status, crossed.code()),
        (StatusCode::FORBIDDEN, "AuthenticationFailed")
    );
    let crossed = get(format!("/fileuploads{token}&restype=container&comp=list"), vec![]).await;
    assert_eq!(crossed.code(), "AuthenticationFailed");

    // `fileuploads` neither lists nor serves nor takes the routed names.
    for (name, data) in [
        ("dev1/a.txt", "a"),
        ("dev1/b.txt", "b"),
        ("%C3%A9t%C3%A9/c.txt", "c"),
    ] {
        let put = call(
            &router,
            Method::PUT,
            HUB_A,
            &format!("/fileuploads/{name}{uploads}"),
            &[BLOCK_BLOB],
            data.as_bytes(),
        )
        .await;
        assert_eq!(put.status, StatusCode::CREATED, "{}", put.text());
    }
    let mut seen = Vec::new();
    let mut marker = String::new();
    loop {
        let page = get(
            format!("/fileuploads{uploads}&restype=container&comp=list&maxresults=1&marker={marker}"),
            vec![],
        )
        .await;
        seen.extend(names(&page));
        match page.text().split("<NextMarker>").nth(1) {
            Some(rest) => marker = rest.split("</NextMarker>").next().unwrap().to_owned(),
            None => break,
        }
        assert!(seen.len() < 10, "{seen:?}");
    }
    assert_eq!(seen, ["dev1/a.txt", "dev1/b.txt", "été/c.txt"]);
    let all = get(
        format!("/fileuploads{uploads}&restype=container&comp=list&prefix=~"),
        vec![],
    )
    .await;
    assert_eq!(names(&all), Vec::<String>::new());
    let reserved = format!("/fileuploads/~routed/archive/{}{uploads}", files[0]);
    let read = get(reserved.clone(), vec![]).await;
    assert_eq!(
        (read.status, read.code()),
        (StatusCode::BAD_REQUEST, "InvalidResourceName")
    );
    let write = call(&router, Method::PUT, HUB_A, &reserved, &[BLOCK_BLOB], b"forged").await;
    assert_eq!(
        (write.status, write.code()),
        (StatusCode::BAD_REQUEST, "InvalidResourceName")
    );

    // Routing alone writes a routed container; a SAS with 'd' deletes.
    let put = call(
        &router,
        Method::PUT,
        HUB_A,
        &format!("/archive/x.json{token}"),
        &[BLOCK_BLOB],
        b"x",
    )
    .await;
    assert_eq!(
        (put.status, put.code()),
        (StatusCode::FORBIDDEN, "AuthorizationPermissionMismatch")
    );
    let refused = call(
        &fixture.operator,
        Method::POST,
        "operator",
        "/hubs/localhost/files/sas?container=archive&permissions=rwl",
        &[("authorization", &format!("Bearer {OPERATOR_TOKEN}"))],
        b"",
    )
    .await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{}", refused.text());
    let deleter = operator_sas(&fixture, "container=archive&permissions=d").await;
    let deleter = deleter["sasToken"].as_str().unwrap().to_owned();
    let delete = call(
        &router,
        Method::DELETE,
        HUB_A,
        &format!("/archive/{}{deleter}", files[2]),
        &[],
        b"",
    )
    .await;
    assert_eq!(delete.status, StatusCode::ACCEPTED, "{}", delete.text());
    let gone = get(format!("/archive/{}{token}", files[2]), vec![]).await;
    assert_eq!(
        (gone.status, gone.code()),
        (StatusCode::NOT_FOUND, "BlobNotFound")
    );

    // Retention sweeps uploads, never routed files.
    let hubs = fixture.outpost.hubs.list();
    let sweeping = fixture.outpost.blobs.with_settings(BlobSettings {
        retention: std::time::Duration::ZERO,
        ..BlobSettings::default()
    });
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    assert_eq!(sweeping.sweep(&hubs).await.unwrap().blobs, 3);
    let after = get(format!("/archive{token}&restype=container&comp=list"), vec![]).await;
    assert_eq!(names(&after), &files[..2]);
}

#[tokio::test]
async fn unknown_containers_are_not_found_in_each_clients_terms() {
    let fixture = Fixture::new().await;
    // As the HTTPS listener serves them: the service API and the blob endpoint on one router.
    let https = fixture
        .service
        .clone()
        .merge(outpost_http::blob_router(fixture.outpost.clone()));
    route_to_archive(&fixture, &["archive"]).await;
    let sas = operator_sas(&fixture, "container=archive").await;
    let token = sas["sasToken"].as_str().unwrap().to_owned();
    let list = call(
        &https,
        Method::GET,
        HUB_A,
        &format!("/archive{token}&restype=container&comp=list"),
        &[],
        b"",
    )
    .await;
    assert_eq!(list.status, StatusCode::OK);
    for (uri, headers) in [
        (format!("/nothing{token}&restype=container&comp=list"), vec![]),
        (
            "/nothing/a/b.json".to_owned(),
            vec![("x-ms-version", "2021-08-06")],
        ),
        (format!("/archive{token}&restype=container&comp=list"), vec![]),
    ] {
        let (uri, host) = if uri.starts_with("/archive") {
            (uri, HUB_B_HOST)
        } else {
            (uri, HUB_A)
        };
        let answer = call(&https, Method::GET, host, &uri, &headers, b"").await;
        assert_eq!(
            (answer.status, answer.code()),
            (StatusCode::NOT_FOUND, "ContainerNotFound"),
            "{uri}"
        );
        assert!(
            answer.text().contains("<Code>ContainerNotFound</Code>"),
            "{}",
            answer.text()
        );
    }
    // An IoT Hub client on a path the service API lacks keeps the service API's answer, and the
    // service routes still win over the containers.
    let owner = fixture.token(HUB_A, "iothubowner");
    for path in [
        "/nothing?api-version=2021-04-12",
        "/nothing/here?api-version=2021-04-12",
    ] {
        let unknown = fixture
            .raw(&https, Method::GET, HUB_A, path, Some(&owner), Vec::new(), &[])
            .await;
        assert_eq!(unknown.status, StatusCode::NOT_FOUND, "{path}");
        assert!(unknown.body["Message"].is_string(), "{path}: {}", unknown.body);
        assert!(unknown.headers.get("x-ms-error-code").is_none());
    }
    let devices = fixture
        .raw(
            &https,
            Method::GET,
            HUB_A,
            "/devices?api-version=2021-04-12",
            None,
            Vec::new(),
            &[],
        )
        .await;
    assert_eq!(devices.status, StatusCode::UNAUTHORIZED);
    // A container no endpoint names any more is gone; the operator mints no SAS for it.
    route_to_archive(&fixture, &[]).await;
    let gone = call(
        &https,
        Method::GET,
        HUB_A,
        &format!("/archive{token}&restype=container&comp=list"),
        &[],
        b"",
    )
    .await;
    assert_eq!(gone.code(), "ContainerNotFound");
    let refused = call(
        &fixture.operator,
        Method::POST,
        "operator",
        "/hubs/localhost/files/sas?container=archive",
        &[("authorization", &format!("Bearer {OPERATOR_TOKEN}"))],
        b"",
    )
    .await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
}
