//! The built-in Event Hubs-compatible endpoint end to end over TLS, with a minimal AMQP 1.0 client
//! built on Outpost's own codec: SASL ANONYMOUS, CBS put-token (good and bad keys), `$management`
//! READ, and partition receivers reading what an MQTT device sent (from the start and `@latest`).

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]

mod mqtt_support;

mod amqp_support;

use std::time::Duration;

use amqp_support::{
    AmqpClient, attach_receiver, authorized_client, eventhub_token, map_get, next_detach, put_token,
    read_request, selector, status, text,
};
use bytes::Bytes;
use mqtt_support::{Client, create_device, device_token, start};
use outpost_amqp::message::{Body, MessageId};
use outpost_amqp::{Performative, Role, Source, Target, Value};
use outpost_auth::SymmetricKey;
use outpost_model::{DeviceId, partition_for};
use outpost_mqtt::codec::{ConnectReturnCode, Packet, PacketId};

async fn send_telemetry(client: &mut Client, id: u16, body: &str) {
    client
        .publish(
            "devices/dev1/messages/events/%24.mid=m1&kind=test",
            id,
            body.as_bytes(),
        )
        .await;
    assert_eq!(
        client.next().await,
        Some(Packet::PubAck(PacketId::new(id).unwrap()))
    );
}

#[tokio::test]
async fn eventhub_clients_authorize_read_properties_and_receive_device_telemetry() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let hub = server.outpost.hubs.by_host("localhost").unwrap();
    let hub_name = hub.name.to_string();
    let partition = partition_for(&DeviceId::new("dev1").unwrap(), hub.partition_count);
    let key = create_device(&server, "dev1").await;
    let (mut device, connack) =
        Client::connect(&server, "dev1", Some(device_token("dev1", &key, 3600)), false).await;
    assert_eq!(connack.return_code, ConnectReturnCode::Accepted);
    send_telemetry(&mut device, 1, "{\"n\":1}").await;
    send_telemetry(&mut device, 2, "{\"n\":2}").await;

    let mut client = AmqpClient::connect(&server).await;
    // CBS: sender + receiver, as pyamqp attaches them.
    client
        .attach(0, Role::Sender, Source::new("$cbs"), Target::new("$cbs"))
        .await;
    client
        .attach(1, Role::Receiver, Source::new("$cbs"), Target::new("cbs-reply"))
        .await;
    client.credit(1, 10).await;

    let policy = hub.policy("service").unwrap();
    let audience = format!("sb://localhost/{hub_name}");
    // A wrong key is refused with 401, echoing the uuid message id.
    let wrong = eventhub_token(&audience, &SymmetricKey::generate(), "service");
    let reply = client
        .request(0, 1, put_token(MessageId::Uuid([7; 16]), &audience, wrong))
        .await;
    assert_eq!(status(&reply), &Value::Int(401));
    assert_eq!(
        reply.properties.as_ref().unwrap().correlation_id,
        Some(MessageId::Uuid([7; 16]))
    );
    // A policy without ServiceConnect is refused too.
    let registry = hub.policy("registryRead").unwrap();
    let token = eventhub_token(&audience, &registry.primary_key, "registryRead");
    let reply = client
        .request(0, 1, put_token(MessageId::Ulong(1), &audience, token))
        .await;
    assert_eq!(status(&reply), &Value::Int(401));
    // A good one: 200, correlation id of the same AMQP type (ulong).
    let token = eventhub_token(&audience, &policy.primary_key, "service");
    let reply = client
        .request(0, 1, put_token(MessageId::Ulong(2), &audience, token))
        .await;
    assert_eq!(status(&reply), &Value::Int(200));
    assert_eq!(
        reply.properties.as_ref().unwrap().correlation_id,
        Some(MessageId::Ulong(2))
    );

    // $management READ.
    client
        .attach(
            2,
            Role::Sender,
            Source::new("$management"),
            Target::new("$management"),
        )
        .await;
    client
        .attach(
            3,
            Role::Receiver,
            Source::new("$management"),
            Target::new("mgmt-reply"),
        )
        .await;
    client.credit(3, 10).await;
    let reply = client
        .request(2, 3, read_request(10, "com.microsoft:eventhub", &hub_name, None))
        .await;
    assert_eq!(status(&reply), &Value::Int(200));
    assert_eq!(
        reply.properties.as_ref().unwrap().correlation_id,
        Some(MessageId::Ulong(10))
    );
    assert_eq!(map_get(&reply.body, "name"), &Value::String(hub_name.clone()));
    let Value::List(ids) = map_get(&reply.body, "partition_ids") else {
        panic!("partition_ids is a list")
    };
    assert_eq!(ids.len(), hub.partition_count as usize);
    assert_eq!(ids[0], Value::String("0".into()));
    assert!(matches!(map_get(&reply.body, "created_at"), Value::Timestamp(_)));
    let reply = client
        .request(
            2,
            3,
            read_request(11, "com.microsoft:partition", &hub_name, Some(partition)),
        )
        .await;
    assert_eq!(status(&reply), &Value::Int(200));
    assert_eq!(
        map_get(&reply.body, "partition"),
        &Value::String(partition.to_string())
    );
    assert_eq!(map_get(&reply.body, "begin_sequence_number"), &Value::Long(0));
    assert_eq!(
        map_get(&reply.body, "last_enqueued_sequence_number"),
        &Value::Long(1)
    );
    assert_eq!(map_get(&reply.body, "is_partition_empty"), &Value::Bool(false));
    assert!(matches!(
        map_get(&reply.body, "last_enqueued_offset"),
        Value::String(_)
    ));
    assert!(matches!(
        map_get(&reply.body, "last_enqueued_time_utc"),
        Value::Timestamp(_)
    ));
    // The connection's token covers the hub's entity only: another entity is refused…
    let reply = client
        .request(
            2,
            3,
            read_request(12, "com.microsoft:eventhub", "someotherhub", None),
        )
        .await;
    assert_eq!(status(&reply), &Value::Int(401));
    // …and with a token for it, as the clients send (`security_token`), it is not found.
    let mut request = read_request(13, "com.microsoft:eventhub", "someotherhub", None);
    let token = eventhub_token("sb://localhost/someotherhub", &policy.primary_key, "service");
    request
        .application_properties
        .as_mut()
        .unwrap()
        .push(("security_token".into(), Value::String(token)));
    let reply = client.request(2, 3, request).await;
    assert_eq!(status(&reply), &Value::Int(404));
    assert_eq!(
        text(reply.application_property("status-description")),
        "The messaging entity 'sb://localhost/someotherhub' could not be found. To know more visit \
         https://aka.ms/sbResourceMgrExceptions."
    );

    // A receiver from the start (absolute address, as Python sends it; lower-case consumer group).
    let mut source = selector("amqp.annotation.x-opt-offset > '-1'");
    source.address = Some(format!(
        "amqps://localhost:5671/{hub_name}/ConsumerGroups/$default/Partitions/{partition}"
    ));
    let attach = client
        .attach(4, Role::Receiver, source, Target::new("receiver"))
        .await;
    assert!(attach.source.is_some() && attach.target.is_some());
    assert_eq!(attach.initial_delivery_count, Some(0));
    client.credit(4, 300).await;
    for n in 0..2_i64 {
        let message = client.message_on(4).await;
        assert_eq!(
            message.message_annotation("x-opt-sequence-number"),
            Some(&Value::Long(n))
        );
        assert!(matches!(
            message.message_annotation("x-opt-offset"),
            Some(Value::String(_))
        ));
        assert!(matches!(
            message.message_annotation("x-opt-enqueued-time"),
            Some(Value::Timestamp(_))
        ));
        assert_eq!(
            text(message.message_annotation("iothub-connection-device-id")),
            "dev1"
        );
        assert_eq!(
            text(message.message_annotation("iothub-message-source")),
            "Telemetry"
        );
        assert_eq!(text(message.application_property("kind")), "test");
        assert_eq!(
            message.properties.as_ref().unwrap().message_id,
            Some(MessageId::String("m1".into()))
        );
        assert_eq!(
            message.body,
            Body::Data(vec![Bytes::from(format!("{{\"n\":{}}}", n + 1))])
        );
    }

    // A receiver from @latest (relative address) sees only what comes after it; the first
    // receiver sees it too.
    let mut source = selector("amqp.annotation.x-opt-offset > '@latest'");
    source.address = Some(format!(
        "{hub_name}/ConsumerGroups/$Default/Partitions/{partition}"
    ));
    client
        .attach(5, Role::Receiver, source, Target::new("latest"))
        .await;
    client.credit(5, 10).await;
    send_telemetry(&mut device, 3, "{\"n\":3}").await;
    let message = client.message_on(5).await;
    assert_eq!(
        message.message_annotation("x-opt-sequence-number"),
        Some(&Value::Long(2))
    );
    assert_eq!(message.body, Body::Data(vec![Bytes::from_static(b"{\"n\":3}")]));

    // A receiver by sequence number (exclusive) and an unknown consumer group.
    let mut source = selector("amqp.annotation.x-opt-sequence-number > '1'");
    source.address = Some(format!(
        "{hub_name}/ConsumerGroups/$Default/Partitions/{partition}"
    ));
    client
        .attach(6, Role::Receiver, source, Target::new("by-sequence"))
        .await;
    client.credit(6, 10).await;
    let message = client.message_on(6).await;
    assert_eq!(
        message.message_annotation("x-opt-sequence-number"),
        Some(&Value::Long(2))
    );
    let mut source = Source::new(format!("{hub_name}/ConsumerGroups/nope/Partitions/0"));
    source.filter = None;
    let attach = client
        .attach(7, Role::Receiver, source, Target::new("nope"))
        .await;
    let _ = attach;
    match client.next_performative().await {
        Performative::Detach(detach) => {
            assert_eq!(detach.error.unwrap().condition.as_str(), "amqp:not-found");
        }
        other => panic!("expected detach, got {other:?}"),
    }
    server.shutdown().await;
}

#[tokio::test]
async fn receivers_need_a_token_and_tokens_of_other_hubs_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let hub = server.outpost.hubs.by_host("localhost").unwrap();
    let hub_name = hub.name.to_string();
    let mut client = AmqpClient::connect(&server).await;
    // No token: the receiver is refused.
    let source = Source::new(format!("{hub_name}/ConsumerGroups/$Default/Partitions/0"));
    client.attach(0, Role::Receiver, source, Target::new("r")).await;
    match client.next_performative().await {
        Performative::Detach(detach) => {
            assert_eq!(
                detach.error.unwrap().condition.as_str(),
                "amqp:unauthorized-access"
            );
        }
        other => panic!("expected detach, got {other:?}"),
    }
    // A token for a host that is no hub.
    client
        .attach(1, Role::Sender, Source::new("$cbs"), Target::new("$cbs"))
        .await;
    client
        .attach(2, Role::Receiver, Source::new("$cbs"), Target::new("cbs-reply"))
        .await;
    client.credit(2, 10).await;
    let policy = hub.policy("iothubowner").unwrap();
    let audience = "sb://elsewhere.example/otherhub";
    let token = eventhub_token(audience, &policy.primary_key, "iothubowner");
    let reply = client
        .request(1, 2, put_token(MessageId::String("a".into()), audience, token))
        .await;
    assert_ne!(status(&reply), &Value::Int(200));
    assert_eq!(
        reply.properties.as_ref().unwrap().correlation_id,
        Some(MessageId::String("a".into()))
    );
    // A valid token of another hub, on a connection opened for `localhost`: refused, and that
    // hub's partitions stay out of reach.
    let other = server
        .outpost
        .create_hub(
            outpost_model::Hub::new(
                outpost_model::HubName::new("other").unwrap(),
                "other.localhost",
                2,
            )
            .unwrap(),
        )
        .await
        .unwrap();
    let other_policy = other.policy("iothubowner").unwrap();
    let audience = "sb://other.localhost/other";
    let token = eventhub_token(audience, &other_policy.primary_key, "iothubowner");
    let reply = client
        .request(1, 2, put_token(MessageId::Ulong(5), audience, token))
        .await;
    assert_eq!(status(&reply), &Value::Int(401));
    let source = Source::new("amqps://other.localhost/other/ConsumerGroups/$Default/Partitions/0");
    client.attach(3, Role::Receiver, source, Target::new("r3")).await;
    match client.next_performative().await {
        Performative::Detach(detach) => {
            assert_eq!(detach.error.unwrap().condition.as_str(), "amqp:not-found");
        }
        other => panic!("expected detach, got {other:?}"),
    }
    server.shutdown().await;
}

#[tokio::test]
async fn a_higher_epoch_receiver_steals_the_partition_and_lower_ones_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let hub = server.outpost.hubs.by_host("localhost").unwrap();
    let hub_name = hub.name.to_string();

    // Epoch 1 on a first connection, epoch 2 on a second: the first is detached, stolen.
    let mut first = authorized_client(&server, &hub).await;
    let attach = attach_receiver(&mut first, 2, &hub_name, Some(1)).await;
    assert!(attach.source.is_some());
    let mut second = authorized_client(&server, &hub).await;
    let attach = attach_receiver(&mut second, 2, &hub_name, Some(2)).await;
    assert!(attach.source.is_some());
    let detach = next_detach(&mut first).await;
    assert_eq!(detach.handle, 2);
    assert!(detach.closed);
    let error = detach.error.unwrap();
    assert_eq!(error.condition.as_str(), "amqp:link:stolen");
    let description = error.description.unwrap();
    assert!(description.contains("higher epoch of '2'"), "{description}");
    assert!(description.contains("epoch '1'"), "{description}");

    // Epoch 1 again, and a receiver without an epoch: refused, stolen.
    attach_receiver(&mut first, 3, &hub_name, Some(1)).await;
    let detach = next_detach(&mut first).await;
    assert_eq!(detach.handle, 3);
    assert_eq!(detach.error.unwrap().condition.as_str(), "amqp:link:stolen");
    attach_receiver(&mut first, 4, &hub_name, None).await;
    let detach = next_detach(&mut first).await;
    assert_eq!(detach.handle, 4);
    assert_eq!(detach.error.unwrap().condition.as_str(), "amqp:link:stolen");

    // Once the epoch receiver's connection is gone, the partition is free again.
    drop(second);
    let mut third = authorized_client(&server, &hub).await;
    let mut freed = false;
    for attempt in 0..50_u32 {
        let handle = 2 + attempt * 2;
        let attach = attach_receiver(&mut third, handle, &hub_name, Some(1)).await;
        assert!(attach.source.is_some());
        // A refusal is a detach right after the attach; an accepted link gets none.
        let refused = tokio::time::timeout(Duration::from_millis(200), next_detach(&mut third)).await;
        if refused.is_err() {
            freed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        freed,
        "the partition was released when the holder's connection ended"
    );
    server.shutdown().await;
}
