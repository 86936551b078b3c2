"""Device-to-cloud telemetry with the official device SDK (azure-iot-device 2.14.0, MQTT over TLS
on 8883), read back through the operator API (`GET /hubs/{hub}/events`) of the running server.

The SDK publishes on `devices/{id}/messages/events/{property bag}` (QoS 1) and returns from
`send_message` when the PUBACK arrives; the server PUBACKs once the message is durable, so a
message whose `send_message` returned must be readable at once.
"""

import base64
import datetime
import json

import pytest
from azure.iot.device import Message

from device_support import (
    RawMqtt,
    connect,
    create_sas_device,
    create_sas_module,
    device_events,
    mqtt_username,
    note,
    sas_auth_method,
    within,
)

SECURITY_INTERFACE_ID = "urn:azureiot:Security:SecurityAgent:1"


@pytest.fixture
def device(registry):
    return create_sas_device(registry, "tele")


def _send(client, message):
    within(20, client.send_message, message, what="send_message()")


def _parse_time(value) -> datetime.datetime:
    """An RFC 3339 time string (or epoch milliseconds) as an aware datetime."""
    if isinstance(value, (int, float)):
        return datetime.datetime.fromtimestamp(value / 1000, datetime.timezone.utc)
    parsed = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=datetime.timezone.utc)


def _assert_recent(value, what):
    when = _parse_time(value)
    now = datetime.datetime.now(datetime.timezone.utc)
    assert abs((now - when).total_seconds()) < 120, f"{what} {value!r} is not close to now ({now.isoformat()})"


def test_telemetry_with_system_and_custom_properties_is_stored_with_iothub_annotations(hub, registry, clients, device):
    client = clients.device(device.connection_string)
    connect(client)
    body = json.dumps({"temp": 21.5, "hum": 40})
    message = Message(body, message_id="mid-1", content_encoding="utf-8", content_type="application/json")
    message.correlation_id = "cid-1"
    # keys and values that must be percent-encoded in the topic's property bag
    message.custom_properties = {"a/b": "x&y=z", "alert": "high temp", "unit": "°C", "pct": "100%"}

    _send(client, message)

    [event] = device_events(hub.server, device.device_id, expect=1)
    assert event["origin"] == device.device_id
    assert event["module"] == ""
    assert event["payload"] == body
    assert event["properties"]["system"] == {
        "message-id": "mid-1",
        "correlation-id": "cid-1",
        "content-type": "application/json",
        "content-encoding": "utf-8",
    }
    assert event["properties"]["application"] == {
        "a/b": "x&y=z", "alert": "high temp", "unit": "°C", "pct": "100%",
    }
    annotations = event["annotations"]
    assert annotations["iothub-connection-device-id"] == device.device_id
    assert "iothub-connection-module-id" not in annotations
    assert json.loads(annotations["iothub-connection-auth-method"]) == sas_auth_method("device")
    assert annotations["iothub-connection-auth-generation-id"] == registry.get_device(device.device_id).generation_id
    assert annotations["iothub-connection-auth-generation-id"] == device.generation_id
    assert annotations["iothub-message-source"] == "Telemetry"
    _assert_recent(annotations["iothub-enqueuedtime"], "iothub-enqueuedtime")
    _assert_recent(annotations["x-opt-enqueued-time"], "x-opt-enqueued-time")
    assert isinstance(annotations["x-opt-sequence-number"], int)
    assert isinstance(annotations["x-opt-offset"], str) and annotations["x-opt-offset"]


def test_a_plain_string_message_has_no_properties(hub, clients, device):
    client = clients.device(device.connection_string)
    connect(client)

    _send(client, "hello outpost")  # topic ends in `…/messages/events/` (empty property bag)

    [event] = device_events(hub.server, device.device_id, expect=1)
    assert event["payload"] == "hello outpost"
    assert event["properties"]["system"] == {}
    assert event["properties"]["application"] == {}


def test_user_id_expiry_and_interface_id_are_kept(hub, clients, device):
    client = clients.device(device.connection_string)
    connect(client)
    expiry = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0) + datetime.timedelta(hours=1)
    message = Message("secure", message_id="mid-sec")
    message.user_id = "user-7"
    message.expiry_time_utc = expiry  # the SDK sends $.exp=<isoformat>
    message.set_as_security_message()  # $.ifid=urn:azureiot:Security:SecurityAgent:1

    _send(client, message)

    [event] = device_events(hub.server, device.device_id, expect=1)
    system = event["properties"]["system"]
    assert system["message-id"] == "mid-sec"
    assert system["user-id"] == "user-7"
    assert system["iothub-interface-id"] == SECURITY_INTERFACE_ID
    assert "absolute-expiry-time" in system, f"$.exp was dropped: {system}"
    assert _parse_time(system["absolute-expiry-time"]) == expiry
    assert event["properties"]["application"] == {}


def test_a_binary_body_is_kept_byte_for_byte(hub, clients, device):
    client = clients.device(device.connection_string)
    connect(client)
    body = bytes(range(256)) + b"\xff\xfe\x00"

    _send(client, Message(body))

    [event] = device_events(hub.server, device.device_id, expect=1)
    assert event["payload"] == {"base64": base64.b64encode(body).decode()}


def test_messages_of_one_device_are_stored_in_send_order(hub, clients, device):
    client = clients.device(device.connection_string)
    connect(client)
    count = 25
    for i in range(count):
        _send(client, Message(json.dumps({"n": i}), message_id=f"order-{i}"))

    events = device_events(hub.server, device.device_id, expect=count)

    assert [json.loads(e["payload"])["n"] for e in events] == list(range(count))
    assert [e["properties"]["system"]["message-id"] for e in events] == [f"order-{i}" for i in range(count)]
    partitions = {e["_partition"] for e in events}
    assert len(partitions) == 1, f"one device's messages must go to one partition, went to {partitions}"
    seqs = [e["annotations"]["x-opt-sequence-number"] for e in events]
    assert all(a < b for a, b in zip(seqs, seqs[1:])), f"sequence numbers not increasing: {seqs}"
    times = [_parse_time(e["annotations"]["x-opt-enqueued-time"]) for e in events]
    assert times == sorted(times), "enqueued times go backwards"


def test_a_module_client_sends_telemetry_stamped_with_the_module(hub, registry, clients, device):
    module = create_sas_module(registry, device.device_id, "telemetry-mod")
    client = clients.module(module.connection_string)
    connect(client)
    message = Message('{"level":3}', message_id="mod-mid", content_type="application/json", content_encoding="utf-8")
    message.custom_properties = {"stage": "filter"}

    _send(client, message)

    [event] = device_events(hub.server, device.device_id, module_id="telemetry-mod", expect=1)
    assert event["origin"] == device.device_id
    assert event["module"] == "telemetry-mod"
    assert event["payload"] == '{"level":3}'
    assert event["properties"]["system"] == {
        "message-id": "mod-mid", "content-type": "application/json", "content-encoding": "utf-8",
    }
    assert event["properties"]["application"] == {"stage": "filter"}
    annotations = event["annotations"]
    assert annotations["iothub-connection-device-id"] == device.device_id
    assert annotations["iothub-connection-module-id"] == "telemetry-mod"
    assert json.loads(annotations["iothub-connection-auth-method"]) == sas_auth_method("module")
    assert annotations["iothub-connection-auth-generation-id"] == module.generation_id
    assert annotations["iothub-connection-auth-generation-id"] == registry.get_module(device.device_id, "telemetry-mod").generation_id


def test_a_module_output_message_carries_the_output_name(hub, registry, clients, device):
    module = create_sas_module(registry, device.device_id, "output-mod")
    client = clients.module(module.connection_string)
    connect(client)

    within(20, client.send_message_to_output, Message("to-output", message_id="out-1"), "alerts",
           what="send_message_to_output()")  # adds $.on=alerts to the property bag

    [event] = device_events(hub.server, device.device_id, module_id="output-mod", expect=1)
    assert event["payload"] == "to-output"
    assert event["properties"]["system"] == {"message-id": "out-1", "iothub-outputname": "alerts"}


def test_a_message_near_the_sdk_size_limit_is_kept_intact(hub, clients, device):
    """The SDKs allow 256 KiB (TELEMETRY_MESSAGE_SIZE_LIMIT); the MQTT remaining length then takes
    3 bytes."""
    client = clients.device(device.connection_string)
    connect(client)
    body = ("0123456789abcdef" * 15_000)[:240_000]

    _send(client, Message(body, message_id="big"))

    [event] = device_events(hub.server, device.device_id, expect=1)
    assert len(event["payload"]) == len(body)
    assert event["payload"] == body


def test_qos_0_telemetry_is_stored(hub, device):
    raw = RawMqtt(hub.server.ca_path, device.device_id, mqtt_username(device.device_id), device.token())
    try:
        assert raw.connect() == 0
        raw.publish(f"devices/{device.device_id}/messages/events/%24.mid=q0", b"qos zero", qos=0)
        # a QoS 1 publish after it: once its PUBACK is in, the QoS 0 one was handled too
        assert raw.publish(f"devices/{device.device_id}/messages/events/%24.mid=q1", b"qos one")
    finally:
        raw.close()

    events = device_events(hub.server, device.device_id, expect=2)
    assert [e["properties"]["system"]["message-id"] for e in events] == ["q0", "q1"]


def test_the_unencoded_dollar_form_of_the_property_bag_is_accepted(hub, device):
    """Azure's own docs show `$.mid=…` with a raw `$`; the SDKs send `%24.mid=…` (wire ref. §2.4)."""
    raw = RawMqtt(hub.server.ca_path, device.device_id, mqtt_username(device.device_id), device.token())
    try:
        assert raw.connect() == 0
        topic = f"devices/{device.device_id}/messages/events/$.mid=raw-1&$.cid=raw-c&$.ct=text%2Fplain&k=v&sp=a%20b"
        assert raw.publish(topic, b"raw body"), "no PUBACK for a telemetry publish"
    finally:
        raw.close()

    [event] = device_events(hub.server, device.device_id, expect=1)
    assert event["payload"] == "raw body"
    assert event["properties"]["system"] == {"message-id": "raw-1", "correlation-id": "raw-c", "content-type": "text/plain"}
    assert event["properties"]["application"] == {"k": "v", "sp": "a b"}


def test_publishing_on_another_devices_topic_is_refused(hub, registry, device):
    """A device may only publish on its own topics: Azure closes the connection and stores nothing."""
    other = create_sas_device(registry, "tele-other")
    raw = RawMqtt(hub.server.ca_path, device.device_id, mqtt_username(device.device_id), device.token())
    try:
        assert raw.connect() == 0
        acked = raw.publish(f"devices/{other.device_id}/messages/events/$.mid=spoof", b"spoofed", timeout=5)
        closed = raw.disconnected.wait(5)
        note(f"spoof publish acked={acked} connection closed={closed}")
    finally:
        raw.close()

    assert device_events(hub.server, other.device_id, expect=1, timeout=1.5) == [], \
        "a message published on another device's topic was stored as that device's"
    spoofed = [e for e in device_events(hub.server, device.device_id, expect=1, timeout=0.5)
               if e["properties"]["system"].get("message-id") == "spoof"]
    assert spoofed == [], "a message published on another device's topic was stored"
    assert not acked, "the server PUBACKed a publish on another device's topic"
    assert closed, "the server kept the connection open after a publish on another device's topic"


@pytest.mark.parametrize("who", ["device-on-module-topic", "module-on-device-topic"])
def test_a_device_and_its_module_cannot_publish_on_each_others_topics(hub, registry, device, who):
    module = create_sas_module(registry, device.device_id, f"cross-{who[:6]}")
    if who == "device-on-module-topic":
        raw = RawMqtt(hub.server.ca_path, device.device_id, mqtt_username(device.device_id), device.token())
        topic = f"devices/{device.device_id}/modules/{module.module_id}/messages/events/"
    else:
        raw = RawMqtt(hub.server.ca_path, module.client_id, mqtt_username(device.device_id, module.module_id),
                      module.token())
        topic = f"devices/{device.device_id}/messages/events/"
    try:
        assert raw.connect() == 0
        acked = raw.publish(topic, b"crossed", timeout=5)
        closed = raw.disconnected.wait(5)
    finally:
        raw.close()
    assert device_events(hub.server, device.device_id, expect=1, timeout=1) == [], "the crossed publish was stored"
    assert not acked, "the server PUBACKed a publish on another identity's topic"
    assert closed, "the server kept the connection open"


def test_monitor_events_cli_prints_the_same_events_as_the_operator_api(hub, clients, device):
    client = clients.device(device.connection_string)
    connect(client)
    for i in range(3):
        _send(client, Message(f"cli-{i}", message_id=f"cli-{i}"))
    events = device_events(hub.server, device.device_id, expect=3)

    printed = hub.server.monitor_events(device_id=device.device_id, timeout_s=2)

    assert [e["payload"] for e in printed] == ["cli-0", "cli-1", "cli-2"]
    assert [e["origin"] for e in printed] == [device.device_id] * 3
    assert [e["properties"]["system"]["message-id"] for e in printed] == ["cli-0", "cli-1", "cli-2"]
    assert [e["annotations"]["x-opt-sequence-number"] for e in printed] == \
        [e["annotations"]["x-opt-sequence-number"] for e in events]
