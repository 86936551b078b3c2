"""A connected device SDK client across a server restart (SIGTERM, then start on the same data dir).

The Python device SDK connects with clean session false and subscribes to `$iothub/twin/res/#`
and `$iothub/twin/PATCH/properties/desired/#` only once, when a feature is first enabled; after a
dropped connection it reconnects on its own (connection_retry) and never subscribes again
(iothub/pipeline/pipeline_stages_iothub_mqtt.py: a subscription is only sent for
EnableFeatureOperation). So the SDK keeps working after a restart only if the server still has
the session's subscriptions. Its own server; the module fixture restarts it once with a client
connected and the tests check what still works afterwards.
"""

import queue
import time
from dataclasses import dataclass

import pytest
from azure.iot.device import Message
from azure.iot.hub.models import Twin, TwinProperties

from device_support import (
    Clients,
    RawMqtt,
    connect,
    create_sas_device,
    device_events,
    mqtt_username,
    note,
    wait_until,
    within,
)
from outpost_harness import OutpostServer, ca_bundle
from sdk_support import registry_for, user_props


@dataclass
class AfterRestart:
    server: OutpostServer
    registry: object
    client: object
    device: object
    patches: queue.Queue
    sigterm_exit_code: int | None
    reconnected: bool
    raw_device: object  # a raw paho persistent session made before the restart


@pytest.fixture(scope="module")
def after_restart(tmp_path_factory):
    server = OutpostServer(tmp_path_factory.mktemp("outpost-dev-restart") / "data")
    server.start()
    clients = None
    try:
        with ca_bundle(server.ca_path):
            registry = registry_for(server.connection_string())
            device = create_sas_device(registry, "restart-dev")
            clients = Clients(server.ca_path.read_text())
            client = clients.device(device.connection_string, connection_retry_interval=1)
            connect(client)
            patches: queue.Queue = queue.Queue()
            within(20, setattr, client, "on_twin_desired_properties_patch_received", patches.put)
            within(20, client.get_twin)  # subscribes to $iothub/twin/res/#
            within(20, client.send_message, Message("before-restart", message_id="before"))
            raw_device = create_sas_device(registry, "restart-raw")
            raw = RawMqtt(server.ca_path, raw_device.device_id, mqtt_username(raw_device.device_id),
                          raw_device.token(), clean_session=False)
            try:
                assert raw.connect() == 0
                assert raw.subscribe("$iothub/twin/PATCH/properties/desired/#", qos=1) == [1]
            finally:
                raw.close()

            exit_code = server.stop()
            note(f"server stopped with exit code {exit_code}; client.connected={client.connected}")
            wait_until(lambda: not client.connected, 10)
            server.start()
            reconnected = wait_until(lambda: client.connected, 30, interval=0.2)
            note(f"server restarted; client reconnected={reconnected}")
            yield AfterRestart(server, registry, client, device, patches, exit_code, reconnected, raw_device)
    finally:
        if clients is not None:
            clients.shutdown_all()
        server.stop()


def test_the_server_stops_cleanly_with_a_device_connected(after_restart):
    assert after_restart.sigterm_exit_code == 0


def test_the_sdk_reconnects_by_itself_after_the_restart(after_restart):
    assert after_restart.reconnected, "the device SDK did not reconnect within 30 s after the restart"


def test_telemetry_works_after_the_restart(after_restart):
    assert after_restart.reconnected
    within(20, after_restart.client.send_message, Message("after-restart", message_id="after"))
    events = device_events(after_restart.server, after_restart.device.device_id, expect=2)
    assert [e["payload"] for e in events] == ["before-restart", "after-restart"]


def test_twin_requests_work_after_the_restart(after_restart):
    """Needs the session's `$iothub/twin/res/#` subscription: the SDK does not subscribe again."""
    assert after_restart.reconnected
    within(15, after_restart.client.patch_twin_reported_properties, {"after": "restart"},
           what="patch_twin_reported_properties() after the restart")
    twin = within(15, after_restart.client.get_twin, what="get_twin() after the restart")
    assert user_props(twin["reported"]) == {"after": "restart"}


def test_desired_notifications_arrive_after_the_restart(after_restart):
    """Needs the session's `$iothub/twin/PATCH/properties/desired/#` subscription."""
    assert after_restart.reconnected
    updated = after_restart.registry.update_twin(
        after_restart.device.device_id, Twin(properties=TwinProperties(desired={"after": "restart"})))
    version = updated.properties.desired["$version"]
    deadline = time.monotonic() + 10
    got = []
    while time.monotonic() < deadline:
        try:
            patch = after_restart.patches.get(timeout=max(0.01, deadline - time.monotonic()))
        except queue.Empty:
            break
        got.append(patch)
        if patch.get("$version") == version:
            return
    raise AssertionError(f"no desired patch with $version {version} after the restart; handler got {got}")


def test_a_persistent_session_survives_the_restart(after_restart):
    """Wire-level view of the test above: CONNECT with clean session 0 after the restart must resume
    the session (CONNACK session present 1) and its desired-properties subscription must deliver."""
    device = after_restart.raw_device
    raw = RawMqtt(after_restart.server.ca_path, device.device_id, mqtt_username(device.device_id),
                  device.token(), clean_session=False)
    try:
        assert raw.connect() == 0
        version = after_restart.registry.update_twin(
            device.device_id, Twin(properties=TwinProperties(desired={"resumed": True}))).properties.desired["$version"]
        got = raw.wait_message(lambda topic, payload: topic.startswith("$iothub/twin/PATCH/properties/desired/"), 5)
        note(f"after the restart: CONNACK session present={raw.session_present}, desired notification={got!r}")
        assert raw.session_present is True, "CONNACK session present is 0: the session was lost in the restart"
        assert got is not None, f"no desired notification ($version {version}) on the resumed session"
    finally:
        raw.close()
