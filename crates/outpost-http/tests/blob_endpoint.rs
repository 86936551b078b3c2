//! The built-in blob endpoint (`/fileuploads`, file uploads) driven through its router with the
//! requests the Azure Storage SDKs send: SAS checks, operations, limits and Azure's error shape.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]

#[path = "support/blob_calls.rs"]
mod blob_calls;
mod support;

use blob_calls::{BLOCK_BLOB, call};
use http::{Method, StatusCode};
use outpost_core::blobs::BlobSettings;
use outpost_core::{Outpost, UploadTarget};
use outpost_model::Timestamp;
use serde_json::Value;
use support::{Fixture, HUB_A, HUB_B_HOST, OPERATOR_TOKEN};

fn target(outpost: &Outpost, host: &str, device: &str, name: &str, ttl: i64) -> UploadTarget {
    let hub = outpost.hubs.by_host(host).unwrap();
    let expiry = Timestamp::from_unix_seconds(support::now() as i64 + ttl);
    outpost.blobs.upload_target(&hub, device, name, expiry).unwrap()
}

fn url(target: &UploadTarget) -> String {
    format!(
        "/{}/{}{}",
        target.container_name, target.blob_name, target.sas_token
    )
}

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

#[tokio::test]
async fn a_device_uploads_reads_lists_and_a_back_end_deletes() {
    let fixture = Fixture::new().await;
    let router = outpost_http::blob_router(fixture.outpost.clone());
    let upload = target(&fixture.outpost, HUB_A, "dev1", "logs/today.txt", 3600);
    assert_eq!(upload.host_name, HUB_A);
    assert_eq!(upload.container_name, "fileuploads");
    assert_eq!(upload.blob_name, "dev1/logs/today.txt");
    assert!(upload.sas_token.starts_with("?sv=2020-12-06&sr=b&sig="));

    let put = call(
        &router,
        Method::PUT,
        HUB_A,
        &url(&upload),
        &[
            BLOCK_BLOB,
            ("content-type", "text/plain"),
            ("x-ms-version", "2021-08-06"),
        ],
        b"hello blob",
    )
    .await;
    assert_eq!(put.status, StatusCode::CREATED, "{}", put.text());
    assert!(put.headers["etag"].to_str().unwrap().starts_with("\"0x"));
    assert!(put.headers.contains_key("last-modified"));
    assert!(put.headers.contains_key("x-ms-request-id"));
    assert_eq!(put.headers["x-ms-version"], "2021-08-06");

    let get = call(&router, Method::GET, HUB_A, &url(&upload), &[], b"").await;
    assert_eq!(get.status, StatusCode::OK);
    assert_eq!(get.body, b"hello blob");
    assert_eq!(get.headers["content-type"], "text/plain");
    assert_eq!(get.headers["x-ms-blob-type"], "BlockBlob");
    assert_eq!(get.headers["content-length"], "10");
    assert_eq!(get.headers["etag"], put.headers["etag"]);

    let range = call(
        &router,
        Method::GET,
        HUB_A,
        &url(&upload),
        &[("x-ms-range", "bytes=6-100")],
        b"",
    )
    .await;
    assert_eq!(range.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(range.body, b"blob");
    assert_eq!(range.headers["content-range"], "bytes 6-9/10");

    let head = call(&router, Method::HEAD, HUB_A, &url(&upload), &[], b"").await;
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(head.headers["content-length"], "10");

    // The device's SAS has no list or delete right.
    let delete = call(&router, Method::DELETE, HUB_A, &url(&upload), &[], b"").await;
    assert_eq!(
        (delete.status, delete.code()),
        (StatusCode::FORBIDDEN, "AuthorizationPermissionMismatch")
    );

    // A container SAS from the operator lists.
    let sas = operator_sas(&fixture, "permissions=rl").await;
    let token = sas["sasToken"].as_str().unwrap();
    assert_eq!(
        sas["url"].as_str().unwrap(),
        format!("https://localhost/fileuploads{token}")
    );
    let list = call(
        &router,
        Method::GET,
        HUB_A,
        &format!("/fileuploads{token}&restype=container&comp=list&prefix=dev1/"),
        &[],
        b"",
    )
    .await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.text());
    let xml = list.text();
    assert!(xml.contains("<Name>dev1/logs/today.txt</Name>"), "{xml}");
    assert!(xml.contains("<Content-Length>10</Content-Length>"), "{xml}");

    // The back end deletes with the hub's service credentials (ServiceConnect).
    let owner = fixture.token(HUB_A, "iothubowner");
    let path = "/fileuploads/dev1/logs/today.txt";
    let fetched = call(
        &router,
        Method::GET,
        HUB_A,
        path,
        &[("authorization", &owner)],
        b"",
    )
    .await;
    assert_eq!(fetched.body, b"hello blob");
    let overwrite = call(
        &router,
        Method::PUT,
        HUB_A,
        path,
        &[("authorization", &owner), BLOCK_BLOB],
        b"x",
    )
    .await;
    assert_eq!(
        (overwrite.status, overwrite.code()),
        (StatusCode::FORBIDDEN, "AuthorizationPermissionMismatch")
    );
    let registry_only = fixture.token(HUB_A, "registryRead");
    let refused = call(
        &router,
        Method::GET,
        HUB_A,
        path,
        &[("authorization", &registry_only)],
        b"",
    )
    .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let deleted = call(
        &router,
        Method::DELETE,
        HUB_A,
        path,
        &[("authorization", &owner)],
        b"",
    )
    .await;
    assert_eq!(deleted.status, StatusCode::ACCEPTED);
    let gone = call(&router, Method::GET, HUB_A, &url(&upload), &[], b"").await;
    assert_eq!(
        (gone.status, gone.code()),
        (StatusCode::NOT_FOUND, "BlobNotFound")
    );
    assert!(
        gone.text().starts_with(
            "<?xml version=\"1.0\" encoding=\"utf-8\"?><Error><Code>BlobNotFound</Code><Message>"
        )
    );
    let no_credentials = call(&router, Method::GET, HUB_A, path, &[], b"").await;
    assert_eq!(no_credentials.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn sas_tokens_are_bound_to_blob_hub_time_and_signature() {
    let fixture = Fixture::new().await;
    let router = outpost_http::blob_router(fixture.outpost.clone());
    let dev1 = target(&fixture.outpost, HUB_A, "dev1", "a.bin", 3600);
    let put = |uri: String, host: &'static str| {
        let router = router.clone();
        async move { call(&router, Method::PUT, host, &uri, &[BLOCK_BLOB], b"data").await }
    };
    // Another device's blob with dev1's SAS.
    let other = put(format!("/fileuploads/dev2/a.bin{}", dev1.sas_token), HUB_A).await;
    assert_eq!(
        (other.status, other.code()),
        (StatusCode::FORBIDDEN, "AuthenticationFailed")
    );
    assert!(
        other.text().contains("<AuthenticationErrorDetail>"),
        "{}",
        other.text()
    );
    // The same path on another hub.
    let wrong_hub = put(url(&dev1), HUB_B_HOST).await;
    assert_eq!(
        (wrong_hub.status, wrong_hub.code()),
        (StatusCode::FORBIDDEN, "AuthenticationFailed")
    );
    // A tampered signature, a widened permission.
    let tampered = url(&dev1).replace("sig=", "sig=AAAA");
    assert_eq!(put(tampered, HUB_A).await.code(), "AuthenticationFailed");
    let widened = url(&dev1).replace("sp=rcw", "sp=rcwd");
    assert_eq!(put(widened, HUB_A).await.code(), "AuthenticationFailed");
    // Expired.
    let expired = target(&fixture.outpost, HUB_A, "dev1", "a.bin", -5);
    let answer = put(url(&expired), HUB_A).await;
    assert_eq!(
        (answer.status, answer.code()),
        (StatusCode::FORBIDDEN, "AuthenticationFailed")
    );
    // Unknown host.
    let unknown = put(url(&dev1), "nohub.example.test").await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    // A read-only blob SAS from the operator cannot write.
    let read_only = operator_sas(&fixture, "blob=dev1/a.bin&permissions=r").await;
    let answer = put(
        format!(
            "/fileuploads/dev1/a.bin{}",
            read_only["sasToken"].as_str().unwrap()
        ),
        HUB_A,
    )
    .await;
    assert_eq!(
        (answer.status, answer.code()),
        (StatusCode::FORBIDDEN, "AuthorizationPermissionMismatch")
    );
    // A blob SAS cannot list.
    let list = call(
        &router,
        Method::GET,
        HUB_A,
        &format!("/fileuploads{}&restype=container&comp=list", dev1.sas_token),
        &[],
        b"",
    )
    .await;
    assert_eq!(
        (list.status, list.code()),
        (StatusCode::FORBIDDEN, "AuthorizationResourceTypeMismatch")
    );
    // The right one works.
    assert_eq!(put(url(&dev1), HUB_A).await.status, StatusCode::CREATED);
}

#[tokio::test]
async fn blocks_are_committed_by_block_list() {
    let fixture = Fixture::new().await;
    let router = outpost_http::blob_router(fixture.outpost.clone());
    let upload = target(&fixture.outpost, HUB_A, "dev1", "big.bin", 3600);
    let base = url(&upload);
    for (id, data) in [("QUFBQQ%3D%3D", b"first-"), ("QkJCQg%3D%3D", b"second")] {
        let put = call(
            &router,
            Method::PUT,
            HUB_A,
            &format!("{base}&comp=block&blockid={id}"),
            &[],
            data,
        )
        .await;
        assert_eq!(put.status, StatusCode::CREATED, "{}", put.text());
    }
    let bad_id = call(
        &router,
        Method::PUT,
        HUB_A,
        &format!("{base}&comp=block&blockid=not*base64"),
        &[],
        b"x",
    )
    .await;
    assert_eq!(
        (bad_id.status, bad_id.code()),
        (StatusCode::BAD_REQUEST, "InvalidQueryParameterValue")
    );
    let missing = call(
        &router,
        Method::PUT,
        HUB_A,
        &format!("{base}&comp=blocklist"),
        &[],
        b"<?xml version='1.0' encoding='utf-8'?>\n<BlockList><Latest>Q0NDQw==</Latest></BlockList>",
    )
    .await;
    assert_eq!(
        (missing.status, missing.code()),
        (StatusCode::BAD_REQUEST, "InvalidBlockList")
    );
    let garbage = call(
        &router,
        Method::PUT,
        HUB_A,
        &format!("{base}&comp=blocklist"),
        &[],
        b"<BlockList><Latest>",
    )
    .await;
    assert_eq!(
        (garbage.status, garbage.code()),
        (StatusCode::BAD_REQUEST, "InvalidXmlDocument")
    );
    let commit = call(
        &router,
        Method::PUT,
        HUB_A,
        &format!("{base}&comp=blocklist"),
        &[("x-ms-blob-content-type", "application/x-test")],
        b"<?xml version=\"1.0\" encoding=\"utf-8\"?><BlockList><Latest>QkJCQg==</Latest><Latest>QUFBQQ==</Latest></BlockList>",
    )
    .await;
    assert_eq!(commit.status, StatusCode::CREATED, "{}", commit.text());
    let get = call(&router, Method::GET, HUB_A, &base, &[], b"").await;
    assert_eq!(get.body, b"secondfirst-");
    assert_eq!(get.headers["content-type"], "application/x-test");
    // overwrite=False.
    let again = call(
        &router,
        Method::PUT,
        HUB_A,
        &base,
        &[BLOCK_BLOB, ("if-none-match", "*")],
        b"x",
    )
    .await;
    assert_eq!(
        (again.status, again.code()),
        (StatusCode::CONFLICT, "BlobAlreadyExists")
    );
    let hub = fixture.outpost.hubs.by_host(HUB_A).unwrap();
    let properties = fixture
        .outpost
        .blobs
        .properties(&hub, "dev1/big.bin")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(properties.size, 12);
    assert_eq!(
        fixture.outpost.blobs.blob_uri(&hub, "dev1/big.bin"),
        "https://localhost/fileuploads/dev1/big.bin"
    );
}

#[tokio::test]
async fn limits_ranges_and_names() {
    let fixture = Fixture::new().await;
    let outpost = fixture.outpost.clone().with_blob_settings(BlobSettings {
        max_blob_bytes: 16,
        max_hub_bytes: 24,
        max_block_bytes: 8,
        ..BlobSettings::default()
    });
    let router = outpost_http::blob_router(outpost.clone());
    let upload = |name: &str| target(&outpost, HUB_A, "dev1", name, 3600);
    let too_big = call(
        &router,
        Method::PUT,
        HUB_A,
        &url(&upload("a")),
        &[BLOCK_BLOB],
        &[0; 17],
    )
    .await;
    assert_eq!(
        (too_big.status, too_big.code()),
        (StatusCode::PAYLOAD_TOO_LARGE, "RequestBodyTooLarge")
    );
    let block = call(
        &router,
        Method::PUT,
        HUB_A,
        &format!("{}&comp=block&blockid=QUFB", url(&upload("a"))),
        &[],
        &[0; 9],
    )
    .await;
    assert_eq!(block.code(), "RequestBodyTooLarge");
    assert_eq!(
        call(
            &router,
            Method::PUT,
            HUB_A,
            &url(&upload("a")),
            &[BLOCK_BLOB],
            &[1; 16]
        )
        .await
        .status,
        StatusCode::CREATED
    );
    let quota = call(
        &router,
        Method::PUT,
        HUB_A,
        &url(&upload("b")),
        &[BLOCK_BLOB],
        &[2; 9],
    )
    .await;
    assert_eq!(
        (quota.status, quota.code()),
        (StatusCode::PAYLOAD_TOO_LARGE, "QuotaExceeded")
    );
    assert_eq!(
        call(
            &router,
            Method::PUT,
            HUB_A,
            &url(&upload("b")),
            &[BLOCK_BLOB],
            b""
        )
        .await
        .status,
        StatusCode::CREATED
    );
    // Empty blob: a range is unsatisfiable (the Python SDK then gets the whole blob).
    let empty = call(
        &router,
        Method::GET,
        HUB_A,
        &url(&upload("b")),
        &[("x-ms-range", "bytes=0-33554431")],
        b"",
    )
    .await;
    assert_eq!(
        (empty.status, empty.code()),
        (StatusCode::RANGE_NOT_SATISFIABLE, "InvalidRange")
    );
    assert_eq!(empty.headers["content-range"], "bytes */0");
    let whole = call(&router, Method::GET, HUB_A, &url(&upload("b")), &[], b"").await;
    assert_eq!((whole.status, whole.body.len()), (StatusCode::OK, 0));
    let bad_range = call(
        &router,
        Method::GET,
        HUB_A,
        &url(&upload("a")),
        &[("x-ms-range", "bytes=x-1")],
        b"",
    )
    .await;
    assert_eq!(bad_range.code(), "InvalidHeaderValue");
    // Path traversal and odd names: refused, or confined to their own (signed) name.
    let sas = upload("a").sas_token;
    for path in [
        "/fileuploads/dev1/../dev2/a",
        "/fileuploads/dev1/%2e%2e/a",
        "/fileuploads/dev1//a",
    ] {
        let answer = call(
            &router,
            Method::PUT,
            HUB_A,
            &format!("{path}{sas}"),
            &[BLOCK_BLOB],
            b"x",
        )
        .await;
        assert_eq!(
            (answer.status, answer.code()),
            (StatusCode::BAD_REQUEST, "InvalidResourceName"),
            "{path}"
        );
    }
    let hub = outpost.hubs.by_host(HUB_A).unwrap();
    assert!(
        outpost
            .blobs
            .upload_target(&hub, "dev1", "../x", Timestamp::now())
            .is_err()
    );
    let missing_type = call(&router, Method::PUT, HUB_A, &url(&upload("c")), &[], b"x").await;
    assert_eq!(missing_type.code(), "MissingRequiredHeader");
}
