"""Cloud-to-device messages received with the official device SDK (azure-iot-device 2.14.0,
`on_message_received`, MQTT), queue purge through the official service SDK, and feedback.

Wire (reference §2.5): the device subscribes to `devices/{id}/messages/devicebound/#` (QoS 1); the
hub publishes each queued message at QoS 1 on `devices/{id}/messages/devicebound/{bag}` with
`$.mid`, `$.cid`, `$.uid`, `$.to`, `$.ct`, `$.ce`, `$.exp`, `iothub-ack` and the application
properties percent-encoded in the bag (Python: mqtt_topic_iothub.py:extract_message_properties_
from_topic, which turns `iothub-ack` into `message.ack`); the device's PUBACK completes the
message. The queue is per device and durable: messages wait while the device is offline, and one
not PUBACKed before a disconnect is delivered again.

Messages are sent through the operator API (`POST /hubs/{hub}/devices/{id}/messages/devicebound`)
or the CLI (`outpost device c2d-message send`); the SDK's own AMQP sender, `send_c2d_message`, is
tested in test_service_amqp.py. The queue purge is the service REST call `DELETE
/devices/{id}/commands`: azure-iot-hub 2.7.0's IoTHubRegistryManager has no method for it, but its
generated REST client has (`registry.protocol.cloud_to_device_messages.
purge_cloud_to_device_message_queue`, cloud_to_device_messages_operations.py:35). Feedback records
(Azure's JSON shape, §6) are read through the operator API (`GET /hubs/{hub}/feedback`).
"""

import datetime
import time
import urllib.parse

import pytest
from msrest.exceptions import HttpOperationError

from device_support import (
    C2dInbox,
    RawMqtt,
    c2d_cli,
    c2d_send,
    c2d_send_raw,
    connect,
    create_sas_device,
    feedback_records,
    mqtt_username,
    note,
    wait_until,
    within,
)
from sdk_support import describe, status_of


@pytest.fixture
def device(registry):
    return create_sas_device(registry, "c2d")


def _purge(registry, device_id):
    result = registry.protocol.cloud_to_device_messages.purge_cloud_to_device_message_queue(device_id)
    note(f"purge {device_id} -> total_messages_purged={result.total_messages_purged} "
         f"device_id={result.device_id} module_id={result.module_id}")
    return result


def _utc(value: str) -> datetime.datetime:
    """An RFC 3339 time (also .NET's 7 fractional digits) as an aware datetime."""
    text = value.replace("Z", "+00:00")
    if "." in text:
        head, rest = text.split(".", 1)
        digits = "".join(c for c in rest if c.isdigit())
        zone = rest[len(digits):]
        text = f"{head}.{digits[:6].ljust(6, '0')}{zone}"
    parsed = datetime.datetime.fromisoformat(text)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=datetime.timezone.utc)


def _iso(when: datetime.datetime) -> str:
    return when.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _bag(topic: str, device_id: str) -> list[tuple[str, str]]:
    prefix = f"devices/{device_id}/messages/devicebound/"
    assert topic.startswith(prefix), f"{topic!r} is not a devicebound topic of {device_id}"
    bag = topic[len(prefix):]
    assert "/" not in bag, f"the property bag must be one path segment (the 5th): {topic!r}"
    pairs = []
    for entry in filter(None, bag.split("&")):
        key, _, value = entry.partition("=")
        pairs.append((urllib.parse.unquote(key), urllib.parse.unquote(value)))
    return pairs


def test_a_message_with_system_and_custom_properties_reaches_on_message_received(hub, clients, device):
    client = clients.device(device.connection_string)
    connect(client)
    inbox = C2dInbox(client)
    expiry = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0) + datetime.timedelta(minutes=10)

    c2d_send(hub.server, device.device_id, '{"cmd": "open", "valve": 3}',
             message_id="c2d-mid-1", correlation_id="c2d-cid-1", user_id="ops",
             content_type="application/json", content_encoding="utf-8", ack="full",
             expiry_time_utc=_iso(expiry),
             properties={"k 1": "v&1", "a/b": "x=y", "unit": "°C", "pct": "100%", "plus": "a+b"})

    [message] = inbox.wait(1)
    assert message.data == b'{"cmd": "open", "valve": 3}'
    assert message.message_id == "c2d-mid-1"
    assert message.correlation_id == "c2d-cid-1"
    assert message.user_id == "ops"
    assert message.content_type == "application/json"
    assert message.content_encoding == "utf-8"
    assert message.ack == "full"
    assert message.custom_properties == {"k 1": "v&1", "a/b": "x=y", "unit": "°C", "pct": "100%", "plus": "a+b"}
    assert message.expiry_time_utc is not None, "no $.exp in the bag"
    assert _utc(message.expiry_time_utc) == expiry, message.expiry_time_utc


def test_a_plain_message_has_no_properties_and_a_default_expiry(hub, clients, device):
    client = clients.device(device.connection_string)
    connect(client)
    inbox = C2dInbox(client)

    c2d_send(hub.server, device.device_id, "plain")

    [message] = inbox.wait(1)
    assert message.data == b"plain"
    assert message.custom_properties == {}
    assert message.correlation_id is None and message.content_type is None
    # the hub's default time to live is 1 hour
    if message.expiry_time_utc is not None:
        left = _utc(message.expiry_time_utc) - datetime.datetime.now(datetime.timezone.utc)
        assert datetime.timedelta(minutes=55) < left <= datetime.timedelta(hours=1, minutes=1), message.expiry_time_utc


def test_the_cli_sends_a_message_with_every_option(hub, clients, device):
    client = clients.device(device.connection_string)
    connect(client)
    inbox = C2dInbox(client)
    expiry = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0) + datetime.timedelta(minutes=30)

    c2d_cli(hub.server, "send", "-d", device.device_id, "--data", "from the cli",
            "--props", "k=v;k2=v 2", "--ack", "positive", "--message-id", "cli-mid",
            "--correlation-id", "cli-cid", "--content-type", "text/plain", "--content-encoding", "utf-8",
            "--expiry", _iso(expiry))

    [message] = inbox.wait(1)
    assert message.data == b"from the cli"
    assert (message.message_id, message.correlation_id) == ("cli-mid", "cli-cid")
    assert (message.content_type, message.content_encoding) == ("text/plain", "utf-8")
    assert message.ack == "positive"
    assert message.custom_properties == {"k": "v", "k2": "v 2"}
    assert _utc(message.expiry_time_utc) == expiry


def test_several_messages_arrive_once_each_in_send_order(hub, clients, device):
    client = clients.device(device.connection_string)
    connect(client)
    inbox = C2dInbox(client)

    for i in range(10):
        c2d_send(hub.server, device.device_id, f"msg-{i}", message_id=f"order-{i}")

    got = inbox.wait(10)
    assert [m.data for m in got] == [f"msg-{i}".encode() for i in range(10)]
    assert [m.message_id for m in got] == [f"order-{i}" for i in range(10)]
    assert len(inbox.settle(0.5)) == 10, "a message was delivered twice"


def test_messages_sent_while_the_device_is_offline_arrive_after_it_connects(hub, clients, device):
    c2d_send(hub.server, device.device_id, "queued-1", message_id="q1")
    c2d_cli(hub.server, "send", "-d", device.device_id, "--data", "queued-2", "--message-id", "q2")
    c2d_send(hub.server, device.device_id, "queued-3", message_id="q3", properties={"n": "3"})

    client = clients.device(device.connection_string)
    connect(client)
    inbox = C2dInbox(client)

    got = inbox.wait(3)
    assert [(m.data, m.message_id) for m in got] == [(b"queued-1", "q1"), (b"queued-2", "q2"), (b"queued-3", "q3")]
    assert got[2].custom_properties == {"n": "3"}
    assert len(inbox.settle(0.5)) == 3


def test_a_completed_message_is_not_delivered_again_after_a_reconnect(hub, clients, device):
    client = clients.device(device.connection_string)
    connect(client)
    inbox = C2dInbox(client)
    c2d_send(hub.server, device.device_id, "once", message_id="once")
    inbox.wait(1)

    within(20, client.disconnect, what="disconnect()")
    connect(client)
    c2d_send(hub.server, device.device_id, "after-reconnect", message_id="after")

    got = inbox.wait(2)
    assert [m.data for m in got] == [b"once", b"after-reconnect"]
    assert len(inbox.settle(0.5)) == 2, f"delivered again: {[m.data for m in inbox.messages]}"


def test_the_delivery_topic_matches_the_wire_reference(hub, device):
    """Raw paho: QoS 1, the bag in the 5th segment, `%24`-encoded system keys, `$.to`."""
    raw = RawMqtt(hub.server.ca_path, device.device_id, mqtt_username(device.device_id), device.token())
    try:
        assert raw.connect() == 0
        assert raw.subscribe(f"devices/{device.device_id}/messages/devicebound/#", qos=1) == [1]
        c2d_send(hub.server, device.device_id, "wire", message_id="wire-1", ack="negative",
                 properties={"k 1": "v&1"})
        c2d_send(hub.server, device.device_id, "bare")

        assert raw.wait_message(lambda topic, payload: payload == b"bare") is not None, "messages did not arrive"
        first, second = raw.received[:2]
        assert (first.payload, second.payload) == (b"wire", b"bare")
        assert first.qos == 1 and second.qos == 1, "C2D messages are delivered at QoS 1"
        pairs = dict(_bag(first.topic, device.device_id))
        assert pairs["$.mid"] == "wire-1"
        assert pairs["iothub-ack"] == "negative"
        assert pairs["k 1"] == "v&1"
        assert pairs["$.to"].lower() == f"/devices/{device.device_id}/messages/devicebound", pairs
        raw_bag = first.topic.rsplit("/", 1)[1]
        assert "%24.mid=wire-1" in raw_bag or "$.mid=wire-1" in raw_bag, raw_bag
        assert "k%201=v%261" in raw_bag, f"custom properties must be percent-encoded: {raw_bag}"
        # Node's receiver needs `devicebound/<something or nothing>` (mqtt.js topicMatchRegex)
        assert second.topic.startswith(f"devices/{device.device_id}/messages/devicebound/")
    finally:
        raw.close()


def test_a_message_not_acknowledged_before_a_disconnect_is_delivered_again(hub, device):
    username = mqtt_username(device.device_id)
    first = RawMqtt(hub.server.ca_path, device.device_id, username, device.token(), clean_session=False)
    try:
        assert first.connect() == 0
        assert first.subscribe(f"devices/{device.device_id}/messages/devicebound/#", qos=1) == [1]
        c2d_send(hub.server, device.device_id, "acked", message_id="acked")
        assert first.wait_message(lambda topic, payload: payload == b"acked") is not None
        time.sleep(0.3)  # let the PUBACK reach the server
        first.drop_before_puback = True
        c2d_send(hub.server, device.device_id, "lost-ack", message_id="lost-ack")
        assert first.wait_message(lambda topic, payload: payload == b"lost-ack") is not None
        assert first.disconnected.wait(10), "the connection was not cut"
    finally:
        first.close()

    # the persistent session resumes without a SUBSCRIBE and gets the message again
    second = RawMqtt(hub.server.ca_path, device.device_id, username, device.token(), clean_session=False)
    try:
        assert second.connect() == 0
        got = second.wait_message(lambda topic, payload: payload == b"lost-ack", 10)
        assert got is not None, "the message whose PUBACK never arrived was not delivered again"
        assert dict(_bag(got[0], device.device_id))["$.mid"] == "lost-ack"
        time.sleep(0.5)
        assert [m.payload for m in second.received] == [b"lost-ack"], \
            f"expected only the unacknowledged message, got {[m.payload for m in second.received]}"
        note(f"redelivery dup flag: {[m.dup for m in second.received]}")
    finally:
        second.close()


def test_an_unacknowledged_message_also_reaches_a_clean_session_that_subscribes(hub, device):
    """The queue belongs to the device, not to the MQTT session."""
    username = mqtt_username(device.device_id)
    first = RawMqtt(hub.server.ca_path, device.device_id, username, device.token(), clean_session=True)
    try:
        assert first.connect() == 0
        assert first.subscribe(f"devices/{device.device_id}/messages/devicebound/#", qos=1) == [1]
        first.drop_before_puback = True
        c2d_send(hub.server, device.device_id, "lost-ack", message_id="lost-ack")
        assert first.wait_message(lambda topic, payload: payload == b"lost-ack") is not None
        assert first.disconnected.wait(10)
    finally:
        first.close()

    second = RawMqtt(hub.server.ca_path, device.device_id, username, device.token(), clean_session=True)
    try:
        assert second.connect() == 0
        assert second.subscribe(f"devices/{device.device_id}/messages/devicebound/#", qos=1) == [1]
        assert second.wait_message(lambda topic, payload: payload == b"lost-ack", 10) is not None, \
            "the unacknowledged message was not delivered to the next connection"
    finally:
        second.close()


def test_purge_empties_the_queue_and_reports_purged_feedback(hub, registry, clients, device):
    for i, ack in enumerate(["full", "none", "positive", "negative", "full"]):
        c2d_send(hub.server, device.device_id, f"purge-me-{i}", message_id=f"purge-{i}", ack=ack)

    result = _purge(registry, device.device_id)

    assert result.total_messages_purged == 5
    assert result.device_id == device.device_id
    assert result.module_id is None
    assert _purge(registry, device.device_id).total_messages_purged == 0

    client = clients.device(device.connection_string)
    connect(client)
    inbox = C2dInbox(client)
    assert inbox.settle(1.5) == [], f"purged messages were delivered: {[m.data for m in inbox.messages]}"

    # feedback for the messages that asked for negative outcomes (full, negative)
    records = feedback_records(hub.server, device.device_id, expect=3)
    assert sorted(r["originalMessageId"] for r in records) == ["purge-0", "purge-3", "purge-4"], records
    for record in records:
        assert record["statusCode"] == "Purged", record
        assert record["deviceId"] == device.device_id
        assert record["deviceGenerationId"] == device.generation_id
        assert isinstance(record["description"], str) and record["description"]
        _utc(record["enqueuedTimeUtc"])


def test_the_cli_purges_a_queue(hub, registry, clients, device):
    c2d_send(hub.server, device.device_id, "a")
    c2d_send(hub.server, device.device_id, "b")

    out = c2d_cli(hub.server, "purge", "-d", device.device_id)

    assert "2" in out, f"the CLI should say how many messages it purged: {out!r}"
    assert _purge(registry, device.device_id).total_messages_purged == 0
    c2d_send(hub.server, device.device_id, "after-purge")
    client = clients.device(device.connection_string)
    connect(client)
    assert [m.data for m in C2dInbox(client).wait(1)] == [b"after-purge"]


def test_purging_or_sending_to_an_unknown_device_is_not_found(hub, registry):
    with pytest.raises(HttpOperationError) as caught:
        _purge(registry, "no-such-device-c2d")
    assert status_of(caught.value) == 404, describe(caught.value)
    assert "DeviceNotFound" in caught.value.response.text

    status, body = c2d_send_raw(hub.server, "no-such-device-c2d", "x")
    assert status == 404, (status, body)


def test_completed_messages_report_success_feedback_when_asked(hub, registry, clients, device):
    client = clients.device(device.connection_string)
    connect(client)
    inbox = C2dInbox(client)
    for ack in ["none", "positive", "negative", "full"]:
        c2d_send(hub.server, device.device_id, f"ack-{ack}", message_id=f"fb-{ack}", ack=ack)

    got = inbox.wait(4)
    assert [m.ack for m in got] == ["none", "positive", "negative", "full"] or \
        [m.ack for m in got] == [None, "positive", "negative", "full"], [m.ack for m in got]

    records = feedback_records(hub.server, device.device_id, expect=2)
    time.sleep(0.5)
    records += feedback_records(hub.server, device.device_id, expect=0, timeout=0)
    assert sorted(r["originalMessageId"] for r in records) == ["fb-full", "fb-positive"], records
    generation_id = registry.get_device(device.device_id).generation_id
    for record in records:
        assert record["statusCode"] == "Success", record
        assert record["description"] == "Success", record
        assert record["deviceId"] == device.device_id
        assert record["deviceGenerationId"] == generation_id
        enqueued = _utc(record["enqueuedTimeUtc"])
        assert abs((datetime.datetime.now(datetime.timezone.utc) - enqueued).total_seconds()) < 120, record


def test_an_expired_message_is_not_delivered_and_reports_expired_feedback(hub, clients, device):
    soon = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=1.5)
    c2d_send(hub.server, device.device_id, "too-late", message_id="expired-1", ack="full", expiry_time_utc=_iso(soon))
    c2d_send(hub.server, device.device_id, "in-time", message_id="in-time")
    time.sleep(2.5)

    client = clients.device(device.connection_string)
    connect(client)
    inbox = C2dInbox(client)

    got = inbox.wait(1)
    assert [m.data for m in inbox.settle(1)] == [b"in-time"], "an expired message was delivered"
    assert got[0].message_id == "in-time"
    records = feedback_records(hub.server, device.device_id, expect=1)
    assert [(r["originalMessageId"], r["statusCode"]) for r in records] == [("expired-1", "Expired")], records


def test_the_queue_holds_at_most_50_messages(hub, registry, device):
    for i in range(50):
        c2d_send(hub.server, device.device_id, f"fill-{i}")

    status, body = c2d_send_raw(hub.server, device.device_id, "one too many")

    assert 400 <= status < 500, f"the 51st message was accepted: {status} {body!r}"
    assert "DeviceMaximumQueueDepthExceeded" in str(body), body
    assert _purge(registry, device.device_id).total_messages_purged == 50


def test_queued_messages_and_subscriptions_survive_a_server_restart(hub, registry, clients):
    """Runs last (it restarts this module's server): a message queued for an offline device, a
    raw persistent session that subscribed before the restart, and an SDK client that stays
    connected through it (it reconnects by itself and never subscribes again, so it relies on the
    persisted session)."""
    offline = create_sas_device(registry, "c2d-restart-off")
    raw_device = create_sas_device(registry, "c2d-restart-raw")
    online = create_sas_device(registry, "c2d-restart-on")

    earlier = clients.device(offline.connection_string)
    connect(earlier)
    C2dInbox(earlier)
    within(20, earlier.shutdown, what="shutdown()")
    raw = RawMqtt(hub.server.ca_path, raw_device.device_id, mqtt_username(raw_device.device_id),
                  raw_device.token(), clean_session=False)
    try:
        assert raw.connect() == 0
        assert raw.subscribe(f"devices/{raw_device.device_id}/messages/devicebound/#", qos=1) == [1]
    finally:
        raw.close()
    kept = clients.device(online.connection_string, connection_retry_interval=1)
    connect(kept)
    kept_inbox = C2dInbox(kept)

    c2d_send(hub.server, offline.device_id, "before-restart", message_id="before", ack="positive")
    c2d_send(hub.server, raw_device.device_id, "before-restart-raw", message_id="before-raw")

    assert hub.server.stop() == 0
    wait_until(lambda: not kept.connected, 10)
    hub.server.start()
    reconnected = wait_until(lambda: kept.connected, 30, interval=0.2)
    note(f"server restarted; kept client reconnected={reconnected}")

    # the durable queue: a new client of the offline device gets the message. Its earlier client
    # left a persistent session subscribed to C2D, so the hub delivers right after CONNACK: the
    # handler must be set before connecting, or the SDK parks the message in an inbox no handler
    # reads (azure-iot-device 2.14 abstract_clients.py:_check_receive_mode_is_handler switches to
    # the unified inbox only once a handler is set).
    client = clients.device(offline.connection_string)
    inbox = C2dInbox(client)
    connect(client)
    [message] = inbox.wait(1)
    assert (message.data, message.message_id, message.ack) == (b"before-restart", "before", "positive")
    # positive feedback after the restart
    records = feedback_records(hub.server, offline.device_id, expect=1)
    assert [(r["originalMessageId"], r["statusCode"]) for r in records] == [("before", "Success")], records

    # the persistent session: no SUBSCRIBE after the restart
    resumed = RawMqtt(hub.server.ca_path, raw_device.device_id, mqtt_username(raw_device.device_id),
                      raw_device.token(), clean_session=False)
    try:
        assert resumed.connect() == 0
        assert resumed.session_present is True, "CONNACK session present is 0 after the restart"
        assert resumed.wait_message(lambda topic, payload: payload == b"before-restart-raw", 10) is not None, \
            "the message queued before the restart did not reach the resumed session"
    finally:
        resumed.close()

    # the SDK client that stayed connected
    assert reconnected, "the device SDK did not reconnect within 30 s after the restart"
    c2d_send(hub.server, online.device_id, "after-restart", message_id="after")
    got = kept_inbox.wait(1)
    assert got[0].data == b"after-restart"


def test_a_module_client_receives_messages_sent_to_its_input(hub, registry, clients, device):
    # Module inputs (wire reference §2.5): the module subscribes to
    # `devices/{d}/modules/{m}/inputs/#`; the hub publishes on `…/inputs/{input}/{bag}` and the SDK
    # reports the input name (mqtt_topic_iothub.py: get_input_name_from_topic).
    from device_support import create_sas_module

    module = create_sas_module(registry, device.device_id, "filter")
    client = clients.module(module.connection_string)
    connect(client)
    inbox = C2dInbox(client)
    path = (f"/hubs/localhost/devices/{urllib.parse.quote(device.device_id, safe='')}"
            f"/modules/filter/inputs/input1/messages")
    status, answer = hub.server.operator_request("POST", path, {"data": "to the module", "messageId": "mi-1",
                                                               "properties": {"k": "v"}})
    assert status == 204, answer
    [message] = inbox.wait(1)
    assert message.data == b"to the module"
    assert message.input_name == "input1"
    assert message.message_id == "mi-1"
    assert message.custom_properties == {"k": "v"}
