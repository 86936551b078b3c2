//! Conformance bodies of [`ConfigurationStore`]: compare-and-swap like the registry, records kept
//! per hub (prefix-named hubs isolated), listed by id, written only into existing hubs and
//! removed with their hub. A backend runs them with
//! [`configuration_conformance_suite!`](crate::configuration_conformance_suite).

#![allow(clippy::expect_used, reason = "test code: a broken contract panics")]

use std::collections::BTreeMap;

use outpost_model::Timestamp;
use serde_json::json;

use super::model::{Configuration, ConfigurationContent};
use super::store::ConfigurationStore;
use crate::testing::{create_hub_named, hub_name};
use crate::{Expected, HubStore, StoreError};

/// Expands to one `#[tokio::test]` per configuration-store conformance body, each on a fresh
/// store (a `ConfigurationStore` that is also a `HubStore`). `with_guard:` takes
/// `(store, guard)` and keeps the guard alive during the test.
#[macro_export]
macro_rules! configuration_conformance_suite {
    (@tests $make:expr; $($body:ident),+ $(,)?) => {
        $(
            #[tokio::test]
            async fn $body() {
                let (store, _guard) = $make;
                $crate::configurations::conformance::$body(&store).await;
            }
        )+
    };
    (with_guard: $make:expr) => {
        $crate::configuration_conformance_suite!(@tests $make;
            configurations_read_back_and_list_in_id_order,
            creating_an_existing_configuration_conflicts,
            configuration_writes_follow_expectations,
            configuration_deletes_follow_expectations,
            configurations_need_their_hub,
            configurations_go_with_their_hub_only,
        );
    };
    ($make:expr) => {
        $crate::configuration_conformance_suite!(with_guard: ($make, ()));
    };
}

/// Returns a device configuration `id` setting one desired property for tagged devices.
pub fn sample_configuration(id: &str) -> Configuration {
    let now = Timestamp::now();
    let content = json!({"properties.desired.settings": {"mode": id}});
    Configuration {
        id: id.to_owned(),
        schema_version: "1.0".into(),
        labels: BTreeMap::from([("team".to_owned(), "conformance".to_owned())]),
        content: ConfigurationContent {
            device_content: content.as_object().cloned().unwrap_or_default(),
            ..ConfigurationContent::default()
        },
        target_condition: "tags.site = 'a'".into(),
        created_time_utc: now,
        last_updated_time_utc: now,
        priority: 1,
        metric_queries: BTreeMap::new(),
        version: 1,
    }
}

#[track_caller]
fn assert_store_error<T: std::fmt::Debug>(result: Result<T, StoreError>, wanted: &str) {
    let matched = match &result {
        Err(StoreError::Conflict) => wanted == "Conflict",
        Err(StoreError::NotFound) => wanted == "NotFound",
        Err(StoreError::ParentMissing) => wanted == "ParentMissing",
        _ => false,
    };
    assert!(matched, "expected {wanted}, got {result:?}");
}

async fn ids<S: ConfigurationStore>(store: &S, hub: &str) -> Vec<String> {
    store
        .list_configurations(&hub_name(hub))
        .await
        .expect("list configurations")
        .into_iter()
        .map(|configuration| configuration.id)
        .collect()
}

/// A created configuration reads back equal at the revision the write returned; the hub's
/// configurations are listed in id order.
pub async fn configurations_read_back_and_list_in_id_order<S: ConfigurationStore + HubStore>(store: &S) {
    let hub = create_hub_named(store, "a").await;
    let first = sample_configuration("zeta");
    let revision = store
        .put_configuration(&hub, &first, Expected::Absent)
        .await
        .expect("create");
    let read = store
        .configuration(&hub, "zeta")
        .await
        .expect("read")
        .expect("present");
    assert_eq!(read.revision, revision);
    assert_eq!(read.value, first);
    for id in ["alpha", "m-1", "beta"] {
        store
            .put_configuration(&hub, &sample_configuration(id), Expected::Absent)
            .await
            .expect("create");
    }
    assert_eq!(ids(store, "a").await, vec!["alpha", "beta", "m-1", "zeta"]);
    assert!(store.configuration(&hub, "ghost").await.expect("read").is_none());
}

/// Creating an id that exists conflicts and leaves the stored record alone.
pub async fn creating_an_existing_configuration_conflicts<S: ConfigurationStore + HubStore>(store: &S) {
    let hub = create_hub_named(store, "a").await;
    let original = sample_configuration("c");
    store
        .put_configuration(&hub, &original, Expected::Absent)
        .await
        .expect("create");
    let mut other = sample_configuration("c");
    other.priority = 9;
    assert_store_error(
        store.put_configuration(&hub, &other, Expected::Absent).await,
        "Conflict",
    );
    let read = store
        .configuration(&hub, "c")
        .await
        .expect("read")
        .expect("present");
    assert_eq!(read.value.priority, original.priority);
}

/// Updates at the current revision succeed and move the revision; stale revisions conflict;
/// missing records are not found; `Present` overwrites any revision.
pub async fn configuration_writes_follow_expectations<S: ConfigurationStore + HubStore>(store: &S) {
    let hub = create_hub_named(store, "a").await;
    let mut configuration = sample_configuration("c");
    let first = store
        .put_configuration(&hub, &configuration, Expected::Absent)
        .await
        .expect("create");
    configuration.priority = 5;
    configuration.version = 2;
    let second = store
        .put_configuration(&hub, &configuration, Expected::Revision(first))
        .await
        .expect("update");
    assert!(second > first);
    assert_store_error(
        store
            .put_configuration(&hub, &configuration, Expected::Revision(first))
            .await,
        "Conflict",
    );
    assert_store_error(
        store
            .put_configuration(&hub, &sample_configuration("ghost"), Expected::Revision(first))
            .await,
        "NotFound",
    );
    configuration.priority = 7;
    store
        .put_configuration(&hub, &configuration, Expected::Present)
        .await
        .expect("unconditional update");
    let read = store
        .configuration(&hub, "c")
        .await
        .expect("read")
        .expect("present");
    assert_eq!(read.value.priority, 7);
}

/// Deletes follow the same expectations; a deleted configuration is gone from reads and lists,
/// and a re-created one never gets an old revision.
pub async fn configuration_deletes_follow_expectations<S: ConfigurationStore + HubStore>(store: &S) {
    let hub = create_hub_named(store, "a").await;
    let first = store
        .put_configuration(&hub, &sample_configuration("c"), Expected::Absent)
        .await
        .expect("create");
    let mut changed = sample_configuration("c");
    changed.priority = 2;
    let second = store
        .put_configuration(&hub, &changed, Expected::Revision(first))
        .await
        .expect("update");
    assert_store_error(
        store
            .delete_configuration(&hub, "c", Expected::Revision(first))
            .await,
        "Conflict",
    );
    store
        .delete_configuration(&hub, "c", Expected::Revision(second))
        .await
        .expect("delete");
    assert!(store.configuration(&hub, "c").await.expect("read").is_none());
    assert!(ids(store, "a").await.is_empty());
    assert_store_error(
        store.delete_configuration(&hub, "c", Expected::Present).await,
        "NotFound",
    );
    let again = store
        .put_configuration(&hub, &sample_configuration("c"), Expected::Absent)
        .await
        .expect("re-create");
    assert!(again > second, "{again:?} after {second:?}");
}

/// A configuration cannot be written into a hub that does not exist.
pub async fn configurations_need_their_hub<S: ConfigurationStore + HubStore>(store: &S) {
    assert_store_error(
        store
            .put_configuration(&hub_name("ghost"), &sample_configuration("c"), Expected::Absent)
            .await,
        "ParentMissing",
    );
    assert!(ids(store, "ghost").await.is_empty());
}

/// Hubs whose names are prefixes of one another keep their own configurations, and deleting a
/// hub removes its configurations only.
pub async fn configurations_go_with_their_hub_only<S: ConfigurationStore + HubStore>(store: &S) {
    let a = create_hub_named(store, "a").await;
    let ab = create_hub_named(store, "ab").await;
    store
        .put_configuration(&a, &sample_configuration("c"), Expected::Absent)
        .await
        .expect("create in a");
    store
        .put_configuration(&ab, &sample_configuration("d"), Expected::Absent)
        .await
        .expect("create in ab");
    assert_eq!(ids(store, "a").await, vec!["c"]);
    assert_eq!(ids(store, "ab").await, vec!["d"]);
    store.delete_hub(&a).await.expect("delete hub");
    assert!(ids(store, "a").await.is_empty());
    assert_eq!(ids(store, "ab").await, vec!["d"]);
    create_hub_named(store, "a").await;
    assert!(store.configuration(&a, "c").await.expect("read").is_none());
}
