"""Cloud-to-device messages sent with the official service SDK over AMQP (wire reference §6):
azure-iot-hub 2.7.0's `IoTHubRegistryManager.send_c2d_message` (iothub_amqp_client.py) opens a
uamqp `SendClient` on `amqps://<host>/messages/devicebound` over TLS to 5671 (SASL MSSBCBS, CBS
put-token for `https://<host>`, receiver settle mode second), puts the device in `properties.to`
(not URL-encoded), system properties from `messageId`/`correlationId`/`contentType`/
`contentEncoding`/`expiryTimeUtc` and every other key as an application property. An MQTT device
of the official device SDK receives the message.

uamqp has no CA option: it reads `certifi.where()` when the registry manager builds its AMQP client
(uamqp/authentication/common.py:set_tlsio), so the test points it at the dev CA before creating
one (as observed in §6).
"""

import datetime
import time

import certifi
import pytest

from device_support import C2dInbox, connect, create_sas_device, feedback_records, within
from sdk_support import registry_for


@pytest.fixture
def amqp_registry(hub, monkeypatch):
    """An IoTHubRegistryManager whose uamqp client trusts the dev CA; its AMQP client is closed
    afterwards."""
    monkeypatch.setattr(certifi, "where", lambda: str(hub.server.ca_path))
    made = []

    def make(policy: str = "iothubowner"):
        cs = hub.owner_cs if policy == "iothubowner" else hub.connection_string(policy)
        registry = registry_for(cs)
        made.append(registry)
        return registry

    yield make
    for registry in made:
        if registry.amqp_svc_client is not None:
            within(20, registry.amqp_svc_client.disconnect_sync, what="disconnect_sync()")


def _send(registry, device_id, data, properties=None):
    within(30, registry.send_c2d_message, device_id, data, properties or {}, what="send_c2d_message()")


def test_send_c2d_message_reaches_an_mqtt_device_with_its_properties(hub, registry, clients, amqp_registry):
    device = create_sas_device(registry, "svc-amqp")
    client = clients.device(device.connection_string)
    connect(client)
    inbox = C2dInbox(client)
    service = amqp_registry()
    expiry = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0) + datetime.timedelta(minutes=10)

    _send(service, device.device_id, '{"cmd": "open"}', {
        "messageId": "py-amqp-1",
        "correlationId": "py-amqp-cid",
        "contentType": "application/json",
        "contentEncoding": "utf-8",
        # uamqp takes the absolute expiry time as milliseconds since the epoch.
        "expiryTimeUtc": int(expiry.timestamp() * 1000),
        "iothub-ack": "full",
        "k 1": "v&1",
        "unit": "°C",
    })

    [message] = inbox.wait(1)
    assert message.data == b'{"cmd": "open"}'
    assert message.message_id == "py-amqp-1"
    assert message.correlation_id == "py-amqp-cid"
    assert message.content_type == "application/json"
    assert message.content_encoding == "utf-8"
    assert message.ack == "full"
    assert message.custom_properties == {"k 1": "v&1", "unit": "°C"}
    assert message.expiry_time_utc is not None, "no $.exp in the bag"
    exp = datetime.datetime.fromisoformat(message.expiry_time_utc.replace("Z", "+00:00"))
    assert abs((exp - expiry).total_seconds()) < 1, message.expiry_time_utc

    # `iothub-ack: full` reached the queue: completing (the MQTT PUBACK) records Success feedback.
    records = feedback_records(hub.server, device.device_id)
    assert [(r["originalMessageId"], r["statusCode"]) for r in records] == [("py-amqp-1", "Success")]


def test_messages_arrive_in_send_order_with_generated_message_ids(hub, registry, clients, amqp_registry):
    device = create_sas_device(registry, "svc-amqp-order")
    service = amqp_registry("service")
    for i in range(3):
        _send(service, device.device_id, f"m{i}")
    client = clients.device(device.connection_string)
    connect(client)
    inbox = C2dInbox(client)

    got = inbox.wait(3)
    assert [m.data for m in got] == [b"m0", b"m1", b"m2"]
    # The SDK gives every message a uuid4 string id (iothub_amqp_client.py:send_message_to_device).
    ids = [m.message_id for m in got]
    assert all(isinstance(i, str) and len(i) == 36 for i in ids), ids
    assert len(set(ids)) == 3
    time.sleep(0.5)
    assert len(inbox.messages) == 3, "a message was delivered twice"


def test_sending_to_an_unknown_device_fails_and_the_client_goes_on(hub, registry, clients, amqp_registry):
    service = amqp_registry()
    with pytest.raises(Exception, match="C2D message send failure"):
        _send(service, "py-no-such-device", "x")

    device = create_sas_device(registry, "svc-amqp-after")
    client = clients.device(device.connection_string)
    connect(client)
    inbox = C2dInbox(client)
    _send(service, device.device_id, "after the failure")
    [message] = inbox.wait(1)
    assert message.data == b"after the failure"
