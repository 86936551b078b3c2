"""Connections over time: disconnect and reconnect, a new client after shutdown, a second
connection of the same device taking over, and persistent MQTT sessions (clean session false,
which both device SDKs use) keeping their subscriptions across a reconnect.
"""

import json
import queue
import threading

import pytest
from azure.iot.device import Message
from azure.iot.hub.models import Twin, TwinProperties

from device_support import (
    RawMqtt,
    connect,
    create_sas_device,
    device_events,
    mqtt_username,
    note,
    wait_until,
    within,
)
from sdk_support import user_props

DESIRED_TOPIC_FILTER = "$iothub/twin/PATCH/properties/desired/#"


@pytest.fixture
def device(registry):
    return create_sas_device(registry, "sess")


def _send(client, text):
    within(20, client.send_message, Message(text, message_id=text), what=f"send_message({text!r})")


def _desired(desired) -> Twin:
    return Twin(properties=TwinProperties(desired=desired))


def _payloads(hub, device_id, expect):
    return [e["payload"] for e in device_events(hub.server, device_id, expect=expect)]


def test_disconnect_and_connect_again_then_twin_and_telemetry_work(hub, registry, clients, device):
    client = clients.device(device.connection_string)
    connect(client)
    _send(client, "before")
    within(20, client.get_twin)

    within(20, client.disconnect, what="disconnect()")
    assert not client.connected
    connect(client)
    assert client.connected

    _send(client, "after")
    within(20, client.patch_twin_reported_properties, {"phase": "after-reconnect"})
    twin = within(20, client.get_twin)
    assert user_props(twin["reported"]) == {"phase": "after-reconnect"}
    assert _payloads(hub, device.device_id, 2) == ["before", "after"]
    assert user_props(registry.get_twin(device.device_id).properties.reported) == {"phase": "after-reconnect"}


def test_desired_notifications_still_arrive_after_a_reconnect(registry, clients, device):
    client = clients.device(device.connection_string)
    connect(client)
    patches: queue.Queue = queue.Queue()
    within(20, setattr, client, "on_twin_desired_properties_patch_received", patches.put)

    within(20, client.disconnect, what="disconnect()")
    connect(client)
    version = registry.update_twin(device.device_id, _desired({"after": "reconnect"})).properties.desired["$version"]

    got = []
    while True:
        try:
            patch = patches.get(timeout=10)
        except queue.Empty:
            break
        got.append(patch)
        if patch.get("$version") == version:
            break
    assert got and got[-1].get("$version") == version, f"no patch with $version {version}; got {got}"
    assert got[-1]["after"] == "reconnect"


def test_a_new_client_with_the_same_connection_string_works_after_shutdown(hub, clients, device):
    first = clients.device(device.connection_string)
    connect(first)
    _send(first, "first")
    within(20, first.shutdown, what="shutdown()")

    second = clients.device(device.connection_string)
    connect(second)
    _send(second, "second")
    within(20, second.patch_twin_reported_properties, {"client": 2})
    assert user_props(within(20, second.get_twin)["reported"]) == {"client": 2}
    assert _payloads(hub, device.device_id, 2) == ["first", "second"]


def test_a_second_connection_of_the_same_device_takes_over_and_drops_the_first(hub, clients, device):
    # connection_retry=False: the first client must not reconnect and take the connection back
    first = clients.device(device.connection_string, connection_retry=False)
    states = []
    lost = threading.Event()

    def on_state_change():
        states.append(first.connected)
        note(f"first client: connection state changed, connected={first.connected}")
        if not first.connected:
            lost.set()

    first.on_connection_state_change = on_state_change
    connect(first)
    _send(first, "from-first")
    assert first.connected

    second = clients.device(device.connection_string)
    connect(second)

    assert lost.wait(10), "the first connection was not closed when a second one with the same client id connected"
    assert wait_until(lambda: not first.connected, 5)
    _send(second, "from-second")
    assert isinstance(within(20, second.get_twin)["reported"]["$version"], int)
    assert second.connected
    assert not first.connected
    assert _payloads(hub, device.device_id, 2) == ["from-first", "from-second"]


def test_a_raw_second_connection_closes_the_first_socket(hub, device):
    first = RawMqtt(hub.server.ca_path, device.device_id, mqtt_username(device.device_id), device.token())
    second = RawMqtt(hub.server.ca_path, device.device_id, mqtt_username(device.device_id), device.token())
    try:
        assert first.connect() == 0
        assert second.connect() == 0
        assert first.disconnected.wait(10), "the first connection is still open after the takeover"
        assert not second.disconnected.is_set()
        assert second.publish(f"devices/{device.device_id}/messages/events/", b"after-takeover")
    finally:
        first.close()
        second.close()
    assert _payloads(hub, device.device_id, 1) == ["after-takeover"]


def _desired_notification(raw: RawMqtt, version: int, timeout: float = 10):
    return raw.wait_message(
        lambda topic, payload: topic.startswith("$iothub/twin/PATCH/properties/desired/")
        and json.loads(payload).get("$version") == version,
        timeout,
    )


def test_a_device_and_its_modules_are_separate_connections(hub, registry, clients, device):
    """Takeover is per client id: `dev`, `dev/m1` and `dev/m2` may all be connected at once."""
    from device_support import create_sas_module

    m1 = create_sas_module(registry, device.device_id, "m1")
    m2 = create_sas_module(registry, device.device_id, "m2")
    made = [clients.device(device.connection_string), clients.module(m1.connection_string),
            clients.module(m2.connection_string)]
    for client in made:
        connect(client)
    for client, text in zip(made, ["from-device", "from-m1", "from-m2"]):
        _send(client, text)
    assert all(client.connected for client in made), [client.connected for client in made]
    events = device_events(hub.server, device.device_id, expect=3)
    assert sorted((e["module"], e["payload"]) for e in events) == [
        ("", "from-device"), ("m1", "from-m1"), ("m2", "from-m2"),
    ]


def test_a_persistent_session_keeps_its_subscriptions_across_a_reconnect(hub, registry, device):
    username = mqtt_username(device.device_id)
    first = RawMqtt(hub.server.ca_path, device.device_id, username, device.token(), clean_session=False)
    try:
        assert first.connect() == 0
        assert first.subscribe(DESIRED_TOPIC_FILTER, qos=1) in ([0], [1]), "subscription refused"
    finally:
        first.close()

    second = RawMqtt(hub.server.ca_path, device.device_id, username, device.token(), clean_session=False)
    try:
        assert second.connect() == 0
        assert second.session_present is True, "CONNACK session present must be 1 for a resumed session"
        # no SUBSCRIBE this time: the session's subscription must still deliver
        version = registry.update_twin(device.device_id, _desired({"resumed": True})).properties.desired["$version"]
        got = _desired_notification(second, version)
        assert got is not None, f"no desired notification with $version {version} on the resumed session"
        topic, payload = got
        assert topic == f"$iothub/twin/PATCH/properties/desired/?$version={version}"
        body = json.loads(payload)
        assert body == {"resumed": True, "$version": version}
    finally:
        second.close()


def test_a_clean_session_starts_without_the_old_subscriptions(hub, registry, device):
    username = mqtt_username(device.device_id)
    first = RawMqtt(hub.server.ca_path, device.device_id, username, device.token(), clean_session=False)
    try:
        assert first.connect() == 0
        assert first.subscribe(DESIRED_TOPIC_FILTER, qos=1) in ([0], [1])
    finally:
        first.close()

    clean = RawMqtt(hub.server.ca_path, device.device_id, username, device.token(), clean_session=True)
    try:
        assert clean.connect() == 0
        assert clean.session_present is False, "CONNACK session present must be 0 for a clean session (MQTT-3.2.2-1)"
        version = registry.update_twin(device.device_id, _desired({"clean": True})).properties.desired["$version"]
        assert _desired_notification(clean, version, timeout=2) is None, \
            "a clean session received a notification for a subscription of the discarded session"
    finally:
        clean.close()


def test_twin_get_over_raw_mqtt_matches_the_wire_reference(hub, registry, device):
    """The exact response topics and bodies (§2.6), as both SDKs parse them."""
    registry.update_twin(device.device_id, _desired({"interval": 10}))
    service = registry.get_twin(device.device_id)
    raw = RawMqtt(hub.server.ca_path, device.device_id, mqtt_username(device.device_id), device.token())
    try:
        assert raw.connect() == 0
        assert raw.subscribe("$iothub/twin/res/#", qos=0) is not None
        raw.publish("$iothub/twin/GET/?$rid=get-1", b" ", qos=0)
        got = raw.wait_message(lambda t, p: "$rid=get-1" in t)
        assert got is not None, "no response to $iothub/twin/GET/?$rid=get-1"
        topic, payload = got
        assert topic == "$iothub/twin/res/200/?$rid=get-1"
        body = json.loads(payload)
        assert user_props(body["desired"]) == {"interval": 10}
        assert body["desired"]["$version"] == service.properties.desired["$version"]
        assert body["reported"]["$version"] == service.properties.reported["$version"]

        raw.publish("$iothub/twin/PATCH/properties/reported/?$rid=patch-1", b'{"raw": 1}', qos=0)
        got = raw.wait_message(lambda t, p: "$rid=patch-1" in t)
        assert got is not None, "no response to the reported PATCH"
        topic, payload = got
        new_version = service.properties.reported["$version"] + 1
        assert topic == f"$iothub/twin/res/204/?$rid=patch-1&$version={new_version}"
        # Node JSON.parses any non-empty body (mqtt_twin_client.js:_onResponseMessage): `" "` would throw
        assert payload == b"", f"a 204 has no body, got {payload!r}"

        raw.publish("$iothub/twin/PATCH/properties/reported/?$rid=bad-1", b"this is not json", qos=0)
        got = raw.wait_message(lambda t, p: "$rid=bad-1" in t)
        assert got is not None, "no response to an invalid reported PATCH"
        topic, payload = got
        status = int(topic.split("/")[3])
        assert 400 <= status < 500, topic
        assert "errorCode" in json.loads(payload), f"Node only sees an error with an errorCode in the body: {payload!r}"
    finally:
        raw.close()


def test_the_registry_shows_a_connected_device_as_connected(hub, registry, clients, device):
    client = clients.device(device.connection_string)
    assert registry.get_device(device.device_id).connection_state == "Disconnected"
    connect(client)

    assert wait_until(lambda: registry.get_device(device.device_id).connection_state == "Connected", 5), \
        f"connectionState stays {registry.get_device(device.device_id).connection_state!r} while the device is connected"
    assert registry.get_twin(device.device_id).connection_state == "Connected"
    assert registry.get_service_statistics().connected_device_count >= 1

    within(20, client.disconnect, what="disconnect()")
    assert wait_until(lambda: registry.get_device(device.device_id).connection_state == "Disconnected", 5), \
        "connectionState stays Connected after the device disconnected"


def test_twin_write_responses_show_a_connected_device_as_connected(registry, clients, device):
    """The twin documents returned by PATCH and PUT carry connectionState like a GET does."""
    client = clients.device(device.connection_string)
    connect(client)
    assert wait_until(lambda: registry.get_twin(device.device_id).connection_state == "Connected", 5)

    patched = registry.update_twin(device.device_id, _desired({"probe": 1}))
    replaced = registry.replace_twin(device.device_id, _desired({"probe": 2}))

    assert (patched.connection_state, replaced.connection_state) == ("Connected", "Connected"), \
        "GET /twins/{id} says Connected but the PATCH / PUT responses say otherwise"


def test_the_registry_shows_a_connected_module_as_connected(registry, clients, device):
    from device_support import create_sas_module

    module = create_sas_module(registry, device.device_id, "state-mod")
    client = clients.module(module.connection_string)
    connect(client)

    assert wait_until(lambda: registry.get_module(device.device_id, "state-mod").connection_state == "Connected", 5), \
        (f"get_module says connectionState {registry.get_module(device.device_id, 'state-mod').connection_state!r} "
         "while the module client is connected")
    assert registry.get_module_twin(device.device_id, "state-mod").connection_state == "Connected"
    assert [m.connection_state for m in registry.get_modules(device.device_id)] == ["Connected"]


def test_an_idle_connection_is_kept_alive_by_pings(hub, device):
    """keepalive 1 s: paho sends PINGREQ every second; the server must answer and keep the link."""
    raw = RawMqtt(hub.server.ca_path, device.device_id, mqtt_username(device.device_id), device.token(), keepalive=1)
    try:
        assert raw.connect() == 0
        assert not raw.disconnected.wait(4), "the server dropped a connection that sent PINGREQs"
        assert raw.publish(f"devices/{device.device_id}/messages/events/", b"after-idle")
    finally:
        raw.close()
    assert _payloads(hub, device.device_id, 1) == ["after-idle"]


def _dropped_client(clients, device):
    """An SDK client that does not reconnect by itself, and an Event set when it loses the link."""
    client = clients.device(device.connection_string, connection_retry=False)
    lost = threading.Event()

    def on_state_change():
        note(f"connection state changed, connected={client.connected}")
        if not client.connected:
            lost.set()

    client.on_connection_state_change = on_state_change
    connect(client)
    return client, lost


def test_disabling_a_connected_device_closes_its_connection(registry, clients, device):
    from azure.iot.device.exceptions import CredentialError

    client, lost = _dropped_client(clients, device)

    registry.update_device_with_sas(device.device_id, "*", device.primary_key, device.secondary_key, "disabled")

    assert lost.wait(10), "the connection of a device that was disabled stays open"
    assert wait_until(lambda: registry.get_device(device.device_id).connection_state == "Disconnected", 5)
    with pytest.raises(CredentialError):
        connect(client)


def test_deleting_a_connected_device_closes_its_connection(registry, clients, device):
    client, lost = _dropped_client(clients, device)

    registry.delete_device(device.device_id)

    assert lost.wait(10), "the connection of a device that was deleted stays open"


def test_a_connection_whose_sas_token_expires_is_closed(hub, device):
    """The token's `se` bounds the connection (Azure closes it; the SDKs renew before that)."""
    raw = RawMqtt(hub.server.ca_path, device.device_id, mqtt_username(device.device_id), device.token(ttl=3),
                  keepalive=60)
    try:
        assert raw.connect() == 0
        assert raw.disconnected.wait(10), "the connection outlived its SAS token by more than 7 s"
    finally:
        raw.close()
