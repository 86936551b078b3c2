//! The configuration reconciler of `outpost-core` over the in-memory embedded store: device
//! configurations by priority and path, targets picked up later, apply-on-change (a hand-made
//! change stays until the outcome changes), metrics, twin limits (nothing half-applied), and
//! edge deployments (applyConfigurationContent, layered deployments on `$edgeAgent`).

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]

mod support;

use std::sync::Arc;

use outpost_core::configurations::ConfigurationSpec;
use outpost_core::{Caller, CoreError, DeviceSpec, Outpost, TwinWrite};
use outpost_model::{DeviceId, Hub, ModuleId, TwinUpdate};
use serde_json::{Value, json};

struct Fixture {
    outpost: Outpost,
    hub: Arc<Hub>,
    caller: Caller,
    _dirs: (tempfile::TempDir, tempfile::TempDir),
}

impl Fixture {
    async fn new() -> Self {
        let support::Core {
            outpost,
            hub,
            store,
            dirs,
        } = support::start("cfg.example.test", 2).await;
        let outpost = outpost.with_configuration_store(Arc::new(store));
        let caller = Caller::operator(hub.clone());
        Self {
            outpost,
            hub,
            caller,
            _dirs: dirs,
        }
    }

    async fn device(&self, id: &str, spec: Value, tags: Value) -> DeviceId {
        let id = DeviceId::new(id).unwrap();
        let spec: DeviceSpec = serde_json::from_value(spec).unwrap();
        self.outpost
            .registry
            .put_device(&self.caller, &id, spec, None)
            .await
            .unwrap();
        if tags.is_object() {
            self.tag(&id, tags).await;
        }
        id
    }

    async fn tag(&self, id: &DeviceId, tags: Value) {
        let update = TwinUpdate {
            tags: tags.as_object().cloned(),
            desired: None,
        };
        self.outpost
            .registry
            .write_device_twin(&self.caller, id, &update, TwinWrite::Patch, None)
            .await
            .unwrap();
    }

    async fn create(&self, id: &str, body: Value) -> Result<Value, CoreError> {
        let spec: ConfigurationSpec = serde_json::from_value(body).unwrap();
        let (json, created) = self
            .outpost
            .configurations
            .put(&self.caller, id, spec, None)
            .await?;
        assert!(created);
        Ok(json)
    }

    async fn pass(&self) {
        self.outpost
            .configurations
            .reconcile_hub(&self.hub)
            .await
            .unwrap();
    }

    async fn twin(&self, id: &DeviceId) -> Value {
        self.outpost.registry.device_twin(&self.caller, id).await.unwrap()
    }

    async fn system(&self, id: &str) -> Value {
        let configuration = self.outpost.configurations.get(&self.caller, id).await.unwrap();
        configuration["systemMetrics"]["results"].clone()
    }
}

fn desired(twin: &Value) -> &Value {
    &twin["properties"]["desired"]
}

#[tokio::test]
async fn the_highest_priority_wins_each_path_and_metrics_count_targets_and_applications() {
    let f = Fixture::new().await;
    let d1 = f.device("d1", json!({}), json!({"site": "a"})).await;
    let d2 = f.device("d2", json!({}), json!({"site": "b"})).await;
    f.create(
        "high",
        json!({
            "content": {"deviceContent": {"properties.desired.prio.value": "high"}},
            "targetCondition": "tags.site = 'a'",
            "priority": 10,
            "metrics": {"queries": {"eco": "SELECT deviceId FROM devices WHERE properties.desired.prio.value = 'high'"}},
        }),
    )
    .await
    .unwrap();
    f.create(
        "low",
        json!({
            "content": {"deviceContent": {
                "properties.desired.prio.value": "low",
                "properties.desired.prio.extra": 1,
                "tags.managed": true,
            }},
            "targetCondition": "*",
            "priority": 1,
        }),
    )
    .await
    .unwrap();
    f.create(
        "shadowed",
        json!({
            "content": {"deviceContent": {"properties.desired.prio": {"value": "shadowed"}}},
            "targetCondition": "tags.site = 'a'",
            "priority": 0,
        }),
    )
    .await
    .unwrap();
    f.pass().await;

    let twin = f.twin(&d1).await;
    assert_eq!(desired(&twin)["prio"]["value"], "high");
    assert_eq!(desired(&twin)["prio"]["extra"], 1);
    assert_eq!(twin["tags"]["managed"], true);
    let twin = f.twin(&d2).await;
    assert_eq!(desired(&twin)["prio"]["value"], "low");

    assert_eq!(
        f.system("high").await,
        json!({"targetedCount": 1, "appliedCount": 1})
    );
    assert_eq!(
        f.system("low").await,
        json!({"targetedCount": 2, "appliedCount": 2})
    );
    // Every path it sets is set by a higher configuration: targeted, never applied.
    assert_eq!(
        f.system("shadowed").await,
        json!({"targetedCount": 1, "appliedCount": 0})
    );
    let high = f.outpost.configurations.get(&f.caller, "high").await.unwrap();
    assert_eq!(high["metrics"]["results"]["eco"], 1);

    // Nothing changed: a second pass writes nothing.
    let version = f.twin(&d1).await["version"].clone();
    f.pass().await;
    assert_eq!(f.twin(&d1).await["version"], version);
}

#[tokio::test]
async fn a_device_tagged_later_is_picked_up_and_a_hand_made_change_stays_until_the_outcome_changes() {
    let f = Fixture::new().await;
    f.create(
        "floor",
        json!({
            "content": {"deviceContent": {"properties.desired.fan": "auto"}},
            "targetCondition": "tags.floor = 3",
            "priority": 5,
        }),
    )
    .await
    .unwrap();
    let late = f.device("late", json!({}), Value::Null).await;
    f.pass().await;
    assert!(desired(&f.twin(&late).await).get("fan").is_none());
    assert_eq!(f.system("floor").await["targetedCount"], 0);

    f.tag(&late, json!({"floor": 3})).await;
    f.pass().await;
    assert_eq!(desired(&f.twin(&late).await)["fan"], "auto");
    assert_eq!(
        f.system("floor").await,
        json!({"targetedCount": 1, "appliedCount": 1})
    );

    // A value changed by hand is not reverted while the same configurations apply.
    let update = TwinUpdate {
        tags: None,
        desired: json!({"fan": "off"}).as_object().cloned(),
    };
    f.outpost
        .registry
        .write_device_twin(&f.caller, &late, &update, TwinWrite::Patch, None)
        .await
        .unwrap();
    f.pass().await;
    assert_eq!(desired(&f.twin(&late).await)["fan"], "off");

    // A device that stops matching keeps what it got.
    f.tag(&late, json!({"floor": 4})).await;
    f.pass().await;
    assert_eq!(desired(&f.twin(&late).await)["fan"], "off");
    assert_eq!(f.system("floor").await["targetedCount"], 0);
}

#[tokio::test]
async fn content_over_the_twin_limits_is_refused_or_left_unapplied_whole() {
    let f = Fixture::new().await;
    let big = "x".repeat(5000);
    let refused = f
        .create(
            "toobig",
            json!({"content": {"deviceContent": {"properties.desired.big": big}}, "targetCondition": "*"}),
        )
        .await;
    assert!(
        matches!(refused, Err(CoreError::InvalidArgument(_))),
        "{refused:?}"
    );

    // Fits alone, but not with what the twin already holds: nothing of it is written.
    let device = f.device("full", json!({}), Value::Null).await;
    let chunk = "y".repeat(4000);
    let filler: serde_json::Map<String, Value> = (0..8)
        .map(|i| (format!("k{i}"), Value::from(chunk.clone())))
        .collect();
    let update = TwinUpdate {
        tags: None,
        desired: Some(filler),
    };
    f.outpost
        .registry
        .write_device_twin(&f.caller, &device, &update, TwinWrite::Patch, None)
        .await
        .unwrap();
    f.create(
        "more",
        json!({
            "content": {"deviceContent": {"properties.desired.extra": chunk, "properties.desired.small": 1}},
            "targetCondition": "*",
        }),
    )
    .await
    .unwrap();
    f.pass().await;
    let twin = f.twin(&device).await;
    assert!(desired(&twin).get("extra").is_none());
    assert!(desired(&twin).get("small").is_none(), "half applied: {twin}");
    assert_eq!(
        f.system("more").await,
        json!({"targetedCount": 1, "appliedCount": 0})
    );
}

#[tokio::test]
async fn edge_content_is_applied_to_module_twins_and_layers_merge_over_it() {
    let f = Fixture::new().await;
    let edge = f
        .device(
            "edge1",
            json!({"capabilities": {"iotEdge": true}}),
            json!({"role": "gw"}),
        )
        .await;
    let plain = f.device("plain", json!({}), json!({"role": "gw"})).await;
    let base = json!({
        "modulesContent": {
            "$edgeAgent": {"properties.desired": {"schemaVersion": "1.1", "modules": {"sensor": {"version": "1.0"}}}},
            "$edgeHub": {"properties.desired": {"schemaVersion": "1.1", "routes": {"all": "FROM /messages/* INTO $upstream"}}},
        }
    });
    f.outpost
        .configurations
        .apply_content(&f.caller, &edge, serde_json::from_value(base).unwrap())
        .await
        .unwrap();
    let agent = ModuleId::new("$edgeAgent").unwrap();
    let twin = f
        .outpost
        .registry
        .module_twin(&f.caller, &edge, &agent)
        .await
        .unwrap();
    assert_eq!(desired(&twin)["modules"]["sensor"]["version"], "1.0");
    let hub_module = ModuleId::new("$edgeHub").unwrap();
    let module = f
        .outpost
        .registry
        .module(&f.caller, &edge, &hub_module)
        .await
        .unwrap();
    assert_eq!(module.managed_by.as_deref(), Some("IotEdge"));

    let refused = f
        .outpost
        .configurations
        .apply_content(
            &f.caller,
            &plain,
            serde_json::from_value(json!({"modulesContent": {"$edgeAgent": {"properties.desired": {}}}}))
                .unwrap(),
        )
        .await;
    assert!(
        matches!(refused, Err(CoreError::InvalidArgument(_))),
        "{refused:?}"
    );

    f.create(
        "layer",
        json!({
            "content": {"modulesContent": {"$edgeAgent": {"properties.desired.modules.extra": {"version": "2.0"}}}},
            "targetCondition": "tags.role = 'gw'",
            "priority": 20,
        }),
    )
    .await
    .unwrap();
    f.pass().await;
    let twin = f
        .outpost
        .registry
        .module_twin(&f.caller, &edge, &agent)
        .await
        .unwrap();
    assert_eq!(desired(&twin)["modules"]["extra"]["version"], "2.0");
    assert_eq!(desired(&twin)["modules"]["sensor"]["version"], "1.0");
    // Only edge devices are targeted by deployments.
    let system = f.system("layer").await;
    assert_eq!(system["targetedCount"], 1);
    assert_eq!(system["appliedCount"], 1);
    assert_eq!(system["reportedSuccessfulCount"], 0);
}
