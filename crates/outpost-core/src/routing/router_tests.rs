use bytes::Bytes;
use outpost_model::{Annotations, Delivery, EndpointName, HubName, Message, SystemProperties, Timestamp};
use serde_json::{Value, json};

use super::*;
use crate::routing::model::{Endpoint, EndpointKind, Enrichment, FallbackRoute, Route, RoutingConfig};

fn message(source: &str, body: &str, json_body: bool, properties: &[(&str, &str)]) -> Message {
    Message {
        properties: SystemProperties {
            message_id: Some("m1".into()),
            content_type: json_body.then(|| "application/json".into()),
            content_encoding: json_body.then(|| "UTF-8".into()),
            ..SystemProperties::default()
        },
        application_properties: properties
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        annotations: Annotations {
            device_id: "dev1".into(),
            module_id: None,
            auth_method: "{}".into(),
            auth_generation_id: "1".into(),
            enqueued_time: Timestamp::from_unix_millis(0),
            message_source: source.into(),
        },
        deliveries: Vec::new(),
        body: Bytes::from(body.to_owned()),
    }
}

fn stream(name: &str) -> Endpoint {
    Endpoint {
        name: EndpointName::new(name).unwrap(),
        kind: EndpointKind::EventStream {
            partition_count: 2,
            consumer_groups: Vec::new(),
        },
    }
}

fn route(name: &str, source: RoutingSource, condition: &str, endpoint: &str) -> Route {
    Route {
        name: name.into(),
        source,
        condition: condition.into(),
        endpoint_names: vec![endpoint.into()],
        is_enabled: true,
    }
}

fn config() -> RoutingConfig {
    RoutingConfig {
        endpoints: vec![stream("hot"), stream("Alerts")],
        routes: vec![
            route("hot", RoutingSource::DeviceMessages, "$body.temp > 30", "hot"),
            route(
                "alerts",
                RoutingSource::DeviceMessages,
                "level = 'critical'",
                "alerts",
            ),
            route(
                "tagged",
                RoutingSource::DeviceMessages,
                "$twin.tags.site = 'north'",
                "events",
            ),
            route(
                "twins",
                RoutingSource::TwinChangeEvents,
                "opType = 'updateTwin'",
                "alerts",
            ),
        ],
        fallback_route: FallbackRoute { is_enabled: true },
        enrichments: vec![
            Enrichment {
                key: "site".into(),
                value: "$twin.tags.site".into(),
                endpoint_names: vec!["hot".into(), "events".into()],
            },
            Enrichment {
                key: "hub".into(),
                value: "$iothubname".into(),
                endpoint_names: vec!["alerts".into()],
            },
        ],
    }
}

fn endpoints(deliveries: &[Delivery]) -> Vec<&str> {
    deliveries.iter().map(|d| d.endpoint.as_ref()).collect()
}

#[test]
fn conditions_read_body_properties_and_twin() {
    let router = Router::new(config());
    let twin = json!({"tags": {"site": "north"}});
    let hot = message("Telemetry", r#"{"temp": 35}"#, true, &[("level", "critical")]);
    let routed = router.route("plant", &hot, Some(&twin));
    assert_eq!(endpoints(&routed), ["hot", "Alerts", "events"]);
    assert_eq!(routed[0].enrichments, [("site".to_owned(), "north".to_owned())]);
    assert_eq!(routed[1].enrichments, [("hub".to_owned(), "plant".to_owned())]);
    // No twin: the twin route is false and the enrichment keeps its reference text.
    let routed = router.route("plant", &hot, None);
    assert_eq!(endpoints(&routed), ["hot", "Alerts"]);
    assert_eq!(routed[0].enrichments[0].1, "$twin.tags.site");
}

#[test]
fn a_body_that_is_not_declared_json_makes_body_conditions_false_and_falls_back() {
    let router = Router::new(config());
    let cold = message("Telemetry", r#"{"temp": 35}"#, false, &[]);
    assert_eq!(endpoints(&router.route("plant", &cold, None)), ["events"]);
    let garbage = message("Telemetry", "{not json", true, &[]);
    assert_eq!(endpoints(&router.route("plant", &garbage, None)), ["events"]);
}

#[test]
fn system_events_follow_their_routes_only() {
    let router = Router::new(config());
    let update = message("twinChangeEvents", "{}", true, &[("opType", "updateTwin")]);
    assert_eq!(endpoints(&router.route("plant", &update, None)), ["Alerts"]);
    let replace = message("twinChangeEvents", "{}", true, &[("opType", "replaceTwin")]);
    assert!(
        router.route("plant", &replace, None).is_empty(),
        "no fallback for events"
    );
    assert!(router.wants(RoutingSource::TwinChangeEvents));
    assert!(!router.wants(RoutingSource::DeviceLifecycleEvents));
    assert!(router.needs_twin(RoutingSource::DeviceMessages));
}

#[test]
fn the_default_configuration_sends_telemetry_to_the_built_in_endpoint_only() {
    let router = Router::new(RoutingConfig::default());
    let plain = message("Telemetry", "x", false, &[]);
    assert_eq!(router.route("plant", &plain, None), [Delivery::built_in()]);
    assert!(!router.needs_twin(RoutingSource::DeviceMessages));
    let mut off = RoutingConfig::default();
    off.fallback_route.is_enabled = false;
    assert!(Router::new(off).route("plant", &plain, None).is_empty());
}

#[test]
fn system_property_names_resolve_case_insensitively() {
    let condition = outpost_query::Condition::parse(
        "$connectionDeviceId = 'dev1' AND $CONTENTTYPE = 'application/json' AND $messageId = 'm1'",
    )
    .unwrap();
    let msg = message("Telemetry", "{}", true, &[]);
    assert!(Router::condition_holds(&condition, &msg, None));
    let missing = outpost_query::Condition::parse("$connectionModuleId = 'x'").unwrap();
    assert!(!Router::condition_holds(&missing, &msg, None));
}

#[test]
fn enrichment_values_are_checked() {
    for good in [
        "static",
        "$iothubname",
        "$twin.tags.a.b",
        "$twin.properties.desired.x",
    ] {
        assert!(EnrichmentValue::parse(good).is_ok(), "{good}");
    }
    for bad in [
        "$twin",
        "$twin.tags",
        "$twin.properties.other.x",
        "$body.x",
        "$twin.tags..x",
    ] {
        assert!(EnrichmentValue::parse(bad).is_err(), "{bad}");
    }
    let twin: Value = json!({"properties": {"desired": {"x": 5}}});
    let value = EnrichmentValue::parse("$twin.properties.desired.x").unwrap();
    assert_eq!(value.resolve("", "hub", Some(&twin)), "5");
}

#[test]
fn validation_reports_the_first_problem() {
    let hub = HubName::new("plant").unwrap();
    let valid = config();
    valid.validate(&hub, "plant.local").unwrap();
    let mut bad = config();
    bad.routes[0].condition = "$body.temp >".into();
    let error = bad.validate(&hub, "plant.local").unwrap_err().to_string();
    assert!(
        error.contains("route 'hot'") && error.contains("column"),
        "{error}"
    );
    let mut unknown = config();
    unknown.routes[0].endpoint_names = vec!["nowhere".into()];
    assert!(unknown.validate(&hub, "plant.local").is_err());
    let mut looped = config();
    looped.endpoints.push(stream("plant"));
    assert!(
        looped
            .validate(&hub, "plant.local")
            .unwrap_err()
            .to_string()
            .contains("loop")
    );
    let mut twice = config();
    twice.endpoints.push(stream("HOT"));
    assert!(twice.validate(&hub, "plant.local").is_err());
}
