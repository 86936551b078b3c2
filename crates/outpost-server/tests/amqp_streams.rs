//! Routing and the Event Hubs-compatible endpoint end to end (issue #8): a route sends a device's
//! critical messages to a custom event stream, which the endpoint serves as an event hub of its own
//! (token scoped to the stream, `$management`, receivers, Azure's not-found answers, detached when
//! the stream is removed); the hub's own event hub serves only what was routed to `events`, and
//! the records it passes over take no credit.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]

mod amqp_support;
mod mqtt_support;

use std::time::Duration;

use amqp_support::{
    AmqpClient, client_for_entity, map_get, next_detach, read_request, selector, status, text,
};
use bytes::Bytes;
use mqtt_support::{Client, create_device, device_token, start};
use outpost_amqp::message::{Body, Message};
use outpost_amqp::{Role, Target, Value};
use outpost_core::routing::RoutingConfig;
use outpost_model::{DeviceId, partition_for};
use outpost_mqtt::codec::{ConnectReturnCode, Packet, PacketId};

const ROUTING: &str = r#"{
    "endpoints": [{"name": "Alerts", "type": "eventStream", "partitionCount": 2, "consumerGroups": ["analytics"]}],
    "routes": [{"name": "critical", "source": "DeviceMessages", "condition": "level = 'critical'", "endpointNames": ["Alerts"]}],
    "fallbackRoute": {"isEnabled": true},
    "enrichments": [{"key": "site", "value": "north", "endpointNames": ["events"]}]
}"#;

async fn send(client: &mut Client, id: u16, level: &str) {
    let topic = format!("devices/dev1/messages/events/level={level}");
    client
        .publish(&topic, id, format!("{{\"n\":{id}}}").as_bytes())
        .await;
    assert_eq!(
        client.next().await,
        Some(Packet::PubAck(PacketId::new(id).unwrap()))
    );
}

fn body(message: &Message) -> Bytes {
    match &message.body {
        Body::Data(sections) => sections[0].clone(),
        other => panic!("expected a data body, got {other:?}"),
    }
}

/// Attaches a receiver from the earliest event and returns the hub's answer: `Ok` when accepted,
/// the detach's error otherwise.
async fn receive(client: &mut AmqpClient, handle: u32, address: &str) -> Result<(), outpost_amqp::Error> {
    let mut source = selector("amqp.annotation.x-opt-offset > '-1'");
    source.address = Some(address.into());
    client
        .attach(handle, Role::Receiver, source, Target::new("r"))
        .await;
    match tokio::time::timeout(Duration::from_millis(300), next_detach(client)).await {
        Ok(detach) => Err(detach.error.unwrap()),
        Err(_) => Ok(()),
    }
}

#[tokio::test]
async fn a_stream_is_an_event_hub_of_its_own_and_the_hub_serves_only_what_is_routed_to_events() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let hub = server.outpost.hubs.by_host("localhost").unwrap();
    let config: RoutingConfig = serde_json::from_str(ROUTING).unwrap();
    server
        .outpost
        .routing
        .set_config(hub.name.as_str(), config)
        .await
        .unwrap();

    let key = create_device(&server, "dev1").await;
    let (mut device, connack) =
        Client::connect(&server, "dev1", Some(device_token("dev1", &key, 3600)), false).await;
    assert_eq!(connack.return_code, ConnectReturnCode::Accepted);
    send(&mut device, 1, "info").await;
    send(&mut device, 2, "critical").await;
    send(&mut device, 3, "info").await;

    // The hub's event hub: credit for two, and the two `events` messages come, enriched; the
    // critical one between them (stream only) took none.
    let device_id = DeviceId::new("dev1").unwrap();
    let hub_partition = partition_for(&device_id, hub.partition_count);
    let mut client = client_for_entity(&server, &hub, hub.name.as_str()).await;
    let address = format!("{}/ConsumerGroups/$Default/Partitions/{hub_partition}", hub.name);
    receive(&mut client, 2, &address).await.unwrap();
    client.credit(2, 2).await;
    for (n, sequence) in [(1, 0), (3, 2)] {
        let message = client.message_on(2).await;
        assert_eq!(body(&message), Bytes::from(format!("{{\"n\":{n}}}")));
        assert_eq!(
            message.message_annotation("x-opt-sequence-number"),
            Some(&Value::Long(sequence))
        );
        assert_eq!(text(message.application_property("site")), "north");
        assert_eq!(text(message.application_property("level")), "info");
    }

    // The stream, with a token scoped to it (in another case than configured).
    let stream_partition = partition_for(&device_id, 2);
    let mut client = client_for_entity(&server, &hub, "alerts").await;
    client
        .attach(
            2,
            Role::Sender,
            outpost_amqp::Source::new("$management"),
            Target::new("$management"),
        )
        .await;
    client
        .attach(
            3,
            Role::Receiver,
            outpost_amqp::Source::new("$management"),
            Target::new("mgmt-reply"),
        )
        .await;
    client.credit(3, 10).await;
    let reply = client
        .request(2, 3, read_request(1, "com.microsoft:eventhub", "alerts", None))
        .await;
    assert_eq!(status(&reply), &Value::Int(200));
    assert_eq!(map_get(&reply.body, "name"), &Value::from("Alerts"));
    assert_eq!(map_get(&reply.body, "partition_count"), &Value::Int(2));
    // The stream log is filled by its delivery worker: wait for the critical message there.
    let mut last = Value::Null;
    for _ in 0..100 {
        let request = read_request(2, "com.microsoft:partition", "alerts", Some(stream_partition));
        let reply = client.request(2, 3, request).await;
        assert_eq!(status(&reply), &Value::Int(200));
        last = map_get(&reply.body, "last_enqueued_sequence_number").clone();
        if last == Value::Long(0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(last, Value::Long(0), "the stream got the critical message");
    let reply = client
        .request(
            2,
            3,
            read_request(3, "com.microsoft:partition", "alerts", Some(2)),
        )
        .await;
    assert_eq!(status(&reply), &Value::Int(404));
    // The connection's token covers the stream, not the hub's entity.
    let reply = client
        .request(
            2,
            3,
            read_request(4, "com.microsoft:eventhub", hub.name.as_str(), None),
        )
        .await;
    assert_eq!(status(&reply), &Value::Int(401));

    let address =
        format!("amqps://localhost:5671/alerts/ConsumerGroups/ANALYTICS/Partitions/{stream_partition}");
    receive(&mut client, 4, &address).await.unwrap();
    client.credit(4, 10).await;
    let message = client.message_on(4).await;
    assert_eq!(body(&message), Bytes::from_static(b"{\"n\":2}"));
    assert_eq!(
        message.message_annotation("x-opt-sequence-number"),
        Some(&Value::Long(0))
    );
    assert_eq!(
        text(message.message_annotation("iothub-connection-device-id")),
        "dev1"
    );
    assert_eq!(
        message.application_property("site"),
        None,
        "the built-in endpoint's enrichment"
    );

    // Azure's not-found answers.
    let refused = receive(&mut client, 5, "alerts/ConsumerGroups/$Default/Partitions/2")
        .await
        .unwrap_err();
    assert_eq!(refused.condition.as_str(), "amqp:not-found");
    assert!(
        refused
            .description
            .unwrap()
            .contains("It should be between 0 and 1.")
    );
    let refused = receive(&mut client, 6, "alerts/ConsumerGroups/nope/Partitions/0")
        .await
        .unwrap_err();
    assert_eq!(
        refused.description.as_deref(),
        Some(
            "The messaging entity 'sb://localhost/Alerts/consumergroups/nope' could not be found. To know more \
             visit https://aka.ms/sbResourceMgrExceptions."
        )
    );
    let mut other = client_for_entity(&server, &hub, "nothere").await;
    let refused = receive(&mut other, 2, "nothere/ConsumerGroups/$Default/Partitions/0")
        .await
        .unwrap_err();
    assert_eq!(refused.condition.as_str(), "amqp:not-found");
    assert!(
        refused
            .description
            .unwrap()
            .starts_with("The messaging entity 'sb://localhost/nothere'")
    );

    // The stream is removed: its receivers are detached, not found.
    server
        .outpost
        .routing
        .set_config(hub.name.as_str(), RoutingConfig::default())
        .await
        .unwrap();
    let detach = tokio::time::timeout(Duration::from_secs(5), next_detach(&mut client))
        .await
        .unwrap();
    assert_eq!(detach.handle, 4);
    let error = detach.error.unwrap();
    assert_eq!(error.condition.as_str(), "amqp:not-found");
    assert!(error.description.unwrap().contains("'sb://localhost/Alerts'"));
    server.shutdown().await;
}
