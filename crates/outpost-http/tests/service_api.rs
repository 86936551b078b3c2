//! The service REST API driven through the real router over the in-memory embedded store:
//! the operations the SDKs use, authentication across hubs and rights, and bad input.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]

mod support;

use http::{Method, StatusCode};
use serde_json::json;
use support::{Fixture, HUB_A, HUB_B_HOST, api, now, sign_service_token};

#[tokio::test]
async fn device_lifecycle_with_generated_keys_and_etags() {
    let hub = Fixture::new().await;
    let create = json!({"deviceId": "dev1", "authentication": {"type": "sas", "symmetricKey": {"primaryKey": "", "secondaryKey": ""}}});
    let created = hub
        .owner(Method::PUT, HUB_A, &api("/devices/dev1"), Some(create))
        .await;
    assert_eq!(created.status, StatusCode::OK);
    let keys = &created.body["authentication"]["symmetricKey"];
    assert_eq!(keys["primaryKey"].as_str().unwrap().len(), 44);
    assert_ne!(keys["primaryKey"], keys["secondaryKey"]);
    assert_eq!(created.body["connectionState"], "Disconnected");
    assert_eq!(created.body["status"], "enabled");
    assert_eq!(created.body["generationId"].as_str().unwrap().len(), 18);
    let etag = created.body["etag"].as_str().unwrap().to_owned();
    assert_eq!(created.headers["etag"], format!("\"{etag}\"").as_str());

    let again = hub
        .owner(
            Method::PUT,
            HUB_A,
            &api("/devices/dev1"),
            Some(json!({"deviceId": "dev1"})),
        )
        .await;
    assert_eq!(
        (again.status, again.error_code()),
        (StatusCode::CONFLICT, "DeviceAlreadyExists")
    );

    let stale = hub
        .service_call(
            Method::PUT,
            HUB_A,
            &api("/devices/dev1"),
            Some(&hub.token(HUB_A, "iothubowner")),
            Some(json!({"deviceId": "dev1", "status": "disabled"})),
            &[("if-match", "\"c3RhbGU=\"")],
        )
        .await;
    assert_eq!(
        (stale.status, stale.error_code()),
        (StatusCode::PRECONDITION_FAILED, "PreconditionFailed")
    );

    let updated = hub
        .service_call(
            Method::PUT,
            HUB_A,
            &api("/devices/dev1"),
            Some(&hub.token(HUB_A, "iothubowner")),
            Some(json!({"deviceId": "dev1", "status": "disabled", "etag": etag})),
            &[("if-match", &format!("\"{etag}\""))],
        )
        .await;
    assert_eq!(updated.status, StatusCode::OK);
    assert_eq!(updated.body["status"], "disabled");
    assert_eq!(
        updated.body["authentication"], created.body["authentication"],
        "an update without keys keeps them"
    );
    assert_ne!(updated.body["etag"], created.body["etag"]);

    let stats = hub
        .owner(Method::GET, HUB_A, &api("/statistics/devices"), None)
        .await;
    assert_eq!(
        stats.body,
        json!({"totalDeviceCount": 1, "enabledDeviceCount": 0, "disabledDeviceCount": 1})
    );

    let deleted = hub
        .service_call(
            Method::DELETE,
            HUB_A,
            &api("/devices/dev1"),
            Some(&hub.token(HUB_A, "iothubowner")),
            None,
            &[("if-match", "\"*\"")],
        )
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    let gone = hub.owner(Method::GET, HUB_A, &api("/devices/dev1"), None).await;
    assert_eq!(
        (gone.status, gone.error_code()),
        (StatusCode::NOT_FOUND, "DeviceNotFound")
    );
}

#[tokio::test]
async fn x509_thumbprint_device_keeps_its_thumbprints() {
    let hub = Fixture::new().await;
    let thumbprint = "AABBCCDDEEFF00112233445566778899AABBCCDD";
    let body = json!({"deviceId": "cam", "authentication": {"type": "selfSigned", "x509Thumbprint": {"primaryThumbprint": thumbprint.to_lowercase(), "secondaryThumbprint": null}}});
    let created = hub
        .owner(Method::PUT, HUB_A, &api("/devices/cam"), Some(body))
        .await;
    assert_eq!(created.status, StatusCode::OK);
    assert_eq!(created.body["authentication"]["type"], "selfSigned");
    assert_eq!(
        created.body["authentication"]["x509Thumbprint"]["primaryThumbprint"],
        thumbprint
    );
    assert_eq!(
        created.body["authentication"]["symmetricKey"]["primaryKey"],
        json!(null)
    );
    let missing = json!({"deviceId": "cam2", "authentication": {"type": "selfSigned"}});
    let refused = hub
        .owner(Method::PUT, HUB_A, &api("/devices/cam2"), Some(missing))
        .await;
    assert_eq!(
        (refused.status, refused.error_code()),
        (StatusCode::BAD_REQUEST, "ArgumentInvalid")
    );
}

#[tokio::test]
async fn modules_and_module_twins() {
    let hub = Fixture::new().await;
    let orphan = hub
        .owner(
            Method::PUT,
            HUB_A,
            &api("/devices/nodev/modules/m1"),
            Some(json!({"moduleId": "m1"})),
        )
        .await;
    assert_eq!(
        (orphan.status, orphan.error_code()),
        (StatusCode::NOT_FOUND, "DeviceNotFound")
    );
    hub.owner(
        Method::PUT,
        HUB_A,
        &api("/devices/d1"),
        Some(json!({"deviceId": "d1"})),
    )
    .await;
    for module in ["m2", "m1"] {
        let created = hub
            .owner(
                Method::PUT,
                HUB_A,
                &api(&format!("/devices/d1/modules/{module}")),
                Some(json!({"moduleId": module, "deviceId": "d1"})),
            )
            .await;
        assert_eq!(created.status, StatusCode::OK, "{:?}", created.body);
        assert_eq!(created.body["authentication"]["type"], "sas");
    }
    let listed = hub
        .owner(Method::GET, HUB_A, &api("/devices/d1/modules"), None)
        .await;
    let ids: Vec<_> = listed
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["moduleId"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["m1", "m2"]);
    let dup = hub
        .owner(
            Method::PUT,
            HUB_A,
            &api("/devices/d1/modules/m1"),
            Some(json!({"moduleId": "m1"})),
        )
        .await;
    assert_eq!(
        (dup.status, dup.error_code()),
        (StatusCode::CONFLICT, "ModuleAlreadyExistsOnDevice")
    );

    let patched = hub
        .owner(
            Method::PATCH,
            HUB_A,
            &api("/twins/d1/modules/m1"),
            Some(json!({"properties": {"desired": {"rate": 5}}})),
        )
        .await;
    assert_eq!(patched.status, StatusCode::OK);
    assert_eq!(patched.body["moduleId"], "m1");
    assert_eq!(patched.body["properties"]["desired"]["rate"], 5);
    assert_eq!(patched.body["properties"]["desired"]["$version"], 2);

    // Deleting the device deletes its modules.
    hub.owner(Method::DELETE, HUB_A, &api("/devices/d1"), None).await;
    let module = hub
        .owner(Method::GET, HUB_A, &api("/devices/d1/modules/m1"), None)
        .await;
    assert_eq!(
        (module.status, module.error_code()),
        (StatusCode::NOT_FOUND, "ModuleNotFound")
    );
}

#[tokio::test]
async fn twin_patch_replace_and_stale_etag() {
    let hub = Fixture::new().await;
    hub.owner(
        Method::PUT,
        HUB_A,
        &api("/devices/t1"),
        Some(json!({"deviceId": "t1"})),
    )
    .await;
    let first = hub.owner(Method::GET, HUB_A, &api("/twins/t1"), None).await;
    assert_eq!(first.body["etag"], "AAAAAAAAAAE=");
    assert!(first.body.get("tags").is_none());
    let patch = json!({"tags": {"site": "a", "floor": 1}, "properties": {"desired": {"t": 20, "mode": {"eco": true}}}});
    let patched = hub
        .service_call(
            Method::PATCH,
            HUB_A,
            &api("/twins/t1"),
            Some(&hub.token(HUB_A, "service")),
            Some(patch),
            &[("if-match", "\"AAAAAAAAAAE=\"")],
        )
        .await;
    assert_eq!(patched.status, StatusCode::OK, "{:?}", patched.body);
    assert_eq!(patched.body["version"], 2);
    assert_eq!(patched.body["properties"]["desired"]["$version"], 2);
    assert_eq!(patched.headers["etag"], "\"AAAAAAAAAAI=\"");

    let stale = hub
        .service_call(
            Method::PATCH,
            HUB_A,
            &api("/twins/t1"),
            Some(&hub.token(HUB_A, "service")),
            Some(json!({"tags": {"x": 1}})),
            &[("if-match", "\"AAAAAAAAAAE=\"")],
        )
        .await;
    assert_eq!(
        (stale.status, stale.error_code()),
        (StatusCode::PRECONDITION_FAILED, "PreconditionFailed")
    );

    let merged = hub
        .owner(
            Method::PATCH,
            HUB_A,
            &api("/twins/t1"),
            Some(json!({"tags": {"floor": null}})),
        )
        .await;
    assert_eq!(merged.body["tags"], json!({"site": "a"}));

    let replaced = hub
        .owner(
            Method::PUT,
            HUB_A,
            &api("/twins/t1"),
            Some(json!({"properties": {"desired": {"only": 1}}})),
        )
        .await;
    assert_eq!(replaced.status, StatusCode::OK);
    assert!(replaced.body.get("tags").is_none());
    assert_eq!(replaced.body["properties"]["desired"]["only"], 1);
    assert!(replaced.body["properties"]["desired"].get("t").is_none());
    assert_eq!(replaced.body["properties"]["desired"]["$version"], 3);

    let bad_key = hub
        .owner(
            Method::PATCH,
            HUB_A,
            &api("/twins/t1"),
            Some(json!({"properties": {"desired": {"a.b": 1}}})),
        )
        .await;
    assert_eq!(
        (bad_key.status, bad_key.error_code()),
        (StatusCode::BAD_REQUEST, "ArgumentInvalid")
    );
    let big = json!({"properties": {"desired": {"blob": "x".repeat(4000), "b2": "x".repeat(4000), "b3": "x".repeat(4000), "b4": "x".repeat(4000), "b5": "x".repeat(4000), "b6": "x".repeat(4000), "b7": "x".repeat(4000), "b8": "x".repeat(4000), "b9": "x".repeat(4000)}}});
    let too_big = hub
        .owner(Method::PATCH, HUB_A, &api("/twins/t1"), Some(big))
        .await;
    assert_eq!(too_big.status, StatusCode::PAYLOAD_TOO_LARGE);
    let after = hub.owner(Method::GET, HUB_A, &api("/twins/t1"), None).await;
    assert_eq!(
        after.body["version"], replaced.body["version"],
        "failed patches write nothing"
    );
}

#[tokio::test]
async fn a_token_of_hub_a_is_refused_on_hub_b() {
    let hub = Fixture::new().await;
    let token_a = hub.token(HUB_A, "iothubowner");
    let on_b = hub
        .service_call(
            Method::GET,
            HUB_B_HOST,
            &api("/devices"),
            Some(&token_a),
            None,
            &[],
        )
        .await;
    assert_eq!(
        (on_b.status, on_b.error_code()),
        (StatusCode::UNAUTHORIZED, "IotHubUnauthorizedAccess")
    );
    // Claiming hub B's resource while signing with hub A's key fails too.
    let forged = sign_service_token(
        HUB_B_HOST,
        "iothubowner",
        &hub.key(HUB_A, "iothubowner"),
        now() + 600,
    );
    let forged = hub
        .service_call(
            Method::GET,
            HUB_B_HOST,
            &api("/devices"),
            Some(&forged),
            None,
            &[],
        )
        .await;
    assert_eq!(forged.status, StatusCode::UNAUTHORIZED);
    // Hub B's own token works, and sees none of hub A's devices.
    hub.owner(Method::PUT, HUB_A, &api("/devices/only-on-a"), Some(json!({})))
        .await;
    let listed = hub.owner(Method::GET, HUB_B_HOST, &api("/devices"), None).await;
    assert_eq!((listed.status, listed.body.clone()), (StatusCode::OK, json!([])));
    let missing = hub
        .owner(Method::GET, HUB_B_HOST, &api("/devices/only-on-a"), None)
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn registry_read_can_read_but_not_write() {
    let hub = Fixture::new().await;
    let read = hub.token(HUB_A, "registryRead");
    let listed = hub
        .service_call(Method::GET, HUB_A, &api("/devices"), Some(&read), None, &[])
        .await;
    assert_eq!(listed.status, StatusCode::OK);
    let create = hub
        .service_call(
            Method::PUT,
            HUB_A,
            &api("/devices/x"),
            Some(&read),
            Some(json!({})),
            &[],
        )
        .await;
    assert_eq!(
        (create.status, create.error_code()),
        (StatusCode::UNAUTHORIZED, "IotHubUnauthorizedAccess")
    );
    let patch = hub
        .service_call(
            Method::PATCH,
            HUB_A,
            &api("/twins/x"),
            Some(&read),
            Some(json!({"tags": {}})),
            &[],
        )
        .await;
    assert_eq!(patch.status, StatusCode::UNAUTHORIZED);
    let device_policy = hub.token(HUB_A, "device");
    let listed = hub
        .service_call(
            Method::GET,
            HUB_A,
            &api("/devices"),
            Some(&device_policy),
            None,
            &[],
        )
        .await;
    assert_eq!(listed.status, StatusCode::UNAUTHORIZED);
    let stats = hub
        .owner(Method::GET, HUB_A, &api("/statistics/devices"), None)
        .await;
    assert_eq!(
        stats.body["totalDeviceCount"], 0,
        "the refused create wrote nothing"
    );
}

#[tokio::test]
async fn expired_missing_and_malformed_tokens_are_refused() {
    let hub = Fixture::new().await;
    let expired = sign_service_token(HUB_A, "iothubowner", &hub.key(HUB_A, "iothubowner"), now() - 5);
    let secondary = hub
        .outpost
        .hubs
        .by_host(HUB_A)
        .unwrap()
        .policy("iothubowner")
        .unwrap()
        .secondary_key
        .clone();
    let with_secondary = sign_service_token(HUB_A, "iothubowner", &secondary, now() + 60);
    for (token, expected) in [
        (Some(expired.as_str()), StatusCode::UNAUTHORIZED),
        (None, StatusCode::UNAUTHORIZED),
        (Some("SharedAccessSignature garbage"), StatusCode::UNAUTHORIZED),
        (Some("Bearer eyJhbGciOi.x.y"), StatusCode::UNAUTHORIZED),
        (Some(with_secondary.as_str()), StatusCode::OK),
    ] {
        let reply = hub
            .service_call(Method::GET, HUB_A, &api("/devices"), token, None, &[])
            .await;
        assert_eq!(reply.status, expected, "{token:?}");
    }
    let unknown_policy = sign_service_token(HUB_A, "nosuch", &hub.key(HUB_A, "iothubowner"), now() + 60);
    let reply = hub
        .service_call(
            Method::GET,
            HUB_A,
            &api("/devices"),
            Some(&unknown_policy),
            None,
            &[],
        )
        .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    let token = hub.token(HUB_A, "iothubowner");
    let unknown_host = hub
        .service_call(
            Method::GET,
            "nohub.example",
            &api("/devices"),
            Some(&token),
            None,
            &[],
        )
        .await;
    assert_eq!(
        unknown_host.status,
        StatusCode::OK,
        "the token's resource names the hub when the host does not"
    );
    let nowhere = sign_service_token(
        "nohub.example",
        "iothubowner",
        &hub.key(HUB_A, "iothubowner"),
        now() + 60,
    );
    let nowhere = hub
        .service_call(
            Method::GET,
            "nohub.example",
            &api("/devices"),
            Some(&nowhere),
            None,
            &[],
        )
        .await;
    assert_eq!(
        (nowhere.status, nowhere.error_code()),
        (StatusCode::NOT_FOUND, "IotHubNotFound")
    );
}

#[tokio::test]
async fn bad_input_gets_azure_errors_and_writes_nothing() {
    let hub = Fixture::new().await;
    let token = hub.token(HUB_A, "iothubowner");
    let send = |path: String, body: Vec<u8>| {
        let token = token.clone();
        let hub = &hub;
        async move {
            hub.raw(&hub.service, Method::PUT, HUB_A, &path, Some(&token), body, &[])
                .await
        }
    };
    let malformed = send(api("/devices/d1"), b"{\"deviceId\": ".to_vec()).await;
    assert_eq!(
        (malformed.status, malformed.error_code()),
        (StatusCode::BAD_REQUEST, "ArgumentInvalid")
    );
    assert!(
        malformed.body["ExceptionMessage"]
            .as_str()
            .unwrap()
            .starts_with("Tracking ID:")
    );
    let wrong_shape = send(api("/devices/d1"), br#"{"status": 7}"#.to_vec()).await;
    assert_eq!(wrong_shape.status, StatusCode::BAD_REQUEST);
    let oversized = send(api("/devices/d1"), vec![b' '; 2 * 1024 * 1024]).await;
    assert_eq!(
        (oversized.status, oversized.error_code()),
        (StatusCode::PAYLOAD_TOO_LARGE, "MessageTooLarge")
    );
    let long_id = "x".repeat(129);
    let too_long = send(api(&format!("/devices/{long_id}")), b"{}".to_vec()).await;
    assert_eq!(
        (too_long.status, too_long.error_code()),
        (StatusCode::BAD_REQUEST, "ArgumentInvalid")
    );
    let bad_char = send(api("/devices/a%26b"), b"{}".to_vec()).await;
    assert_eq!(bad_char.status, StatusCode::BAD_REQUEST);
    let mismatch = send(api("/devices/d1"), br#"{"deviceId": "d2"}"#.to_vec()).await;
    assert_eq!(mismatch.status, StatusCode::BAD_REQUEST);
    let bad_key = send(
        api("/devices/d1"),
        br#"{"authentication": {"type": "sas", "symmetricKey": {"primaryKey": "c2hvcnQ="}}}"#.to_vec(),
    )
    .await;
    assert_eq!(bad_key.status, StatusCode::BAD_REQUEST);
    let no_version = send("/devices/d1".into(), b"{}".to_vec()).await;
    assert_eq!(
        (no_version.status, no_version.error_code()),
        (StatusCode::BAD_REQUEST, "InvalidProtocolVersion")
    );
    let bad_version = send("/devices/d1?api-version=banana".into(), b"{}".to_vec()).await;
    assert_eq!(bad_version.status, StatusCode::BAD_REQUEST);
    let stats = hub
        .owner(Method::GET, HUB_A, &api("/statistics/devices"), None)
        .await;
    assert_eq!(stats.body["totalDeviceCount"], 0);

    // Versions Outpost has not seen are accepted when well-formed.
    let future = send(
        "/devices/d1?api-version=2031-01-01-preview".into(),
        b"{}".to_vec(),
    )
    .await;
    assert_eq!(future.status, StatusCode::OK);
    let older = hub
        .owner(Method::GET, HUB_A, "/devices/d1?api-version=2018-06-30", None)
        .await;
    assert_eq!(older.status, StatusCode::OK);

    let unknown = hub.owner(Method::GET, HUB_A, &api("/nothing/here"), None).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    let wrong_method = hub
        .owner(Method::POST, HUB_A, &api("/devices/d1"), Some(json!({})))
        .await;
    assert_eq!(wrong_method.status, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn bulk_registry_operations() {
    let hub = Fixture::new().await;
    let items = json!([
        {"id": "b1", "importMode": "create", "authentication": {"type": "sas"}},
        {"id": "b2", "importMode": "Create", "status": "disabled"},
        {"id": "b3", "importMode": "createOrUpdate", "tags": {"k": "v"}},
    ]);
    let created = hub
        .owner(Method::POST, HUB_A, &api("/devices"), Some(items))
        .await;
    assert_eq!(created.status, StatusCode::OK, "{:?}", created.body);
    assert_eq!(
        created.body,
        json!({"isSuccessful": true, "errors": [], "warnings": []})
    );
    let twin = hub.owner(Method::GET, HUB_A, &api("/twins/b3"), None).await;
    assert_eq!(twin.body["tags"]["k"], "v");

    let mixed = json!([
        {"id": "b1", "importMode": "create"},
        {"id": "b4", "importMode": "create"},
        {"id": "b2", "importMode": "Update", "status": "enabled"},
        {"id": "nope", "importMode": "Delete"},
    ]);
    let outcome = hub
        .owner(Method::POST, HUB_A, &api("/devices"), Some(mixed))
        .await;
    assert_eq!(outcome.status, StatusCode::BAD_REQUEST);
    assert_eq!(outcome.body["isSuccessful"], false);
    let errors: Vec<_> = outcome.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["deviceId"].as_str().unwrap().to_owned(),
                e["errorCode"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        errors,
        [
            ("b1".to_owned(), "DeviceAlreadyExists".to_owned()),
            ("nope".to_owned(), "DeviceNotFound".to_owned())
        ]
    );
    let b2 = hub.owner(Method::GET, HUB_A, &api("/devices/b2"), None).await;
    assert_eq!(b2.body["status"], "enabled");

    let invalid = json!([{"id": "b5", "importMode": "create"}, {"id": "bad id", "importMode": "create"}]);
    let rejected = hub
        .owner(Method::POST, HUB_A, &api("/devices"), Some(invalid))
        .await;
    assert_eq!(
        (rejected.status, rejected.error_code()),
        (StatusCode::BAD_REQUEST, "ArgumentInvalid")
    );
    let b5 = hub.owner(Method::GET, HUB_A, &api("/devices/b5"), None).await;
    assert_eq!(
        b5.status,
        StatusCode::NOT_FOUND,
        "a malformed bulk request writes nothing"
    );

    let too_many: Vec<_> = (0..101)
        .map(|i| json!({"id": format!("m{i}"), "importMode": "create"}))
        .collect();
    let too_many = hub
        .owner(Method::POST, HUB_A, &api("/devices"), Some(json!(too_many)))
        .await;
    assert_eq!(too_many.error_code(), "TooManyDevices");

    let etag = hub
        .owner(Method::GET, HUB_A, &api("/devices/b4"), None)
        .await
        .body["etag"]
        .as_str()
        .unwrap()
        .to_owned();
    let guarded = json!([
        {"id": "b4", "importMode": "deleteIfMatchETag", "eTag": "c3RhbGU="},
        {"id": "b1", "importMode": "updateTwinIfMatchETag", "twinETag": "AAAAAAAAAAE=", "properties": {"desired": {"x": 1}}},
    ]);
    let outcome = hub
        .owner(Method::POST, HUB_A, &api("/devices"), Some(guarded))
        .await;
    assert_eq!(outcome.body["errors"][0]["errorCode"], "PreconditionFailed");
    assert_eq!(outcome.body["errors"].as_array().unwrap().len(), 1);
    let deleted = hub
        .owner(
            Method::POST,
            HUB_A,
            &api("/devices"),
            Some(json!([{"id": "b4", "importMode": "DeleteIfMatchETag", "eTag": etag}])),
        )
        .await;
    assert_eq!(deleted.status, StatusCode::OK);
}

#[tokio::test]
async fn list_devices_honours_top() {
    let hub = Fixture::new().await;
    for id in ["c", "a", "b"] {
        hub.owner(
            Method::PUT,
            HUB_A,
            &api(&format!("/devices/{id}")),
            Some(json!({})),
        )
        .await;
    }
    let listed = hub.owner(Method::GET, HUB_A, &api("/devices?top=2"), None).await;
    let ids: Vec<_> = listed
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["deviceId"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["a", "b"]);
    let service = hub
        .owner(Method::GET, HUB_A, &api("/statistics/service"), None)
        .await;
    assert_eq!(service.body, json!({"connectedDeviceCount": 0}));
}

#[tokio::test]
async fn edge_devices_get_a_stable_device_scope_and_the_trailing_slash_lists() {
    let hub = Fixture::new().await;
    let edge = json!({"deviceId": "gw", "capabilities": {"iotEdge": true}});
    let created = hub
        .owner(Method::PUT, HUB_A, &api("/devices/gw"), Some(edge))
        .await;
    let scope = created.body["deviceScope"].as_str().unwrap().to_owned();
    assert!(scope.starts_with("ms-azure-iot-edge://gw-"), "{scope}");
    let read = hub.owner(Method::GET, HUB_A, &api("/devices/gw"), None).await;
    assert_eq!(read.body["deviceScope"], scope.as_str());
    let plain = hub
        .owner(Method::PUT, HUB_A, &api("/devices/leaf"), Some(json!({})))
        .await;
    assert_eq!(plain.body["deviceScope"], json!(null));
    let listed = hub.owner(Method::GET, HUB_A, &api("/devices/"), None).await;
    assert_eq!(listed.body.as_array().unwrap().len(), 2);
}
