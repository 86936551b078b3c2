"""Automatic device management and IoT Edge deployments through the official
IoTHubConfigurationManager (azure-iot-hub 2.x): `create_configuration`, `get_configuration`,
`get_configurations`, `update_configuration` with an etag, `delete_configuration`,
`test_configuration_queries` and `apply_configuration_on_edge_device` (wire contract §5.2, §5.3).

The reconciler applies configurations after each change and every 10 s, so tests poll (bounded)
for twins and metrics. A connected device (official device SDK, MQTT) gets the configuration's
content as a desired-property notification.
"""

import queue
import time

import pytest
from azure.iot.hub import IoTHubConfigurationManager
from azure.iot.hub.models import (
    Configuration,
    ConfigurationContent,
    ConfigurationMetrics,
    ConfigurationQueriesTestInput,
    Twin,
)
from msrest.exceptions import HttpOperationError

from device_support import connect, create_sas_device, note, within
from sdk_support import describe, new_id, status_of


@pytest.fixture(scope="module")
def manager(hub) -> IoTHubConfigurationManager:
    return IoTHubConfigurationManager.from_connection_string(hub.owner_cs)


def _poll(what: str, fetch, ok, timeout: float = 25.0):
    """Calls `fetch` until `ok(result)`; fails with the last result after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = fetch()
        if ok(result):
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: still {result!r} after {timeout}s")
        time.sleep(0.2)


def _device_config(config_id: str, condition: str, content: dict, priority: int = 0, metrics=None):
    return Configuration(
        id=config_id,
        schema_version="1.0",
        labels={"suite": "compat"},
        content=ConfigurationContent(device_content=content),
        target_condition=condition,
        priority=priority,
        metrics=ConfigurationMetrics(queries=metrics or {}),
    )


def _tagged(registry, prefix: str, tags: dict):
    device = create_sas_device(registry, prefix)
    registry.update_twin(device.device_id, Twin(tags=tags), "*")
    return device


def _desired(registry, device_id: str) -> dict:
    return registry.get_twin(device_id).properties.desired


def _system(manager, config_id: str) -> dict:
    return manager.get_configuration(config_id).system_metrics.results


def test_create_get_list_update_and_delete_with_etags(manager):
    config_id = new_id("crud")
    created = manager.create_configuration(
        _device_config(config_id, "tags.nothing = 'here'", {"properties.desired.crud": {"on": True}}, 3,
                       {"ons": "SELECT deviceId FROM devices WHERE properties.reported.on = true"}))
    assert created.id == config_id
    assert created.etag and created.schema_version == "1.0"
    assert created.content.device_content == {"properties.desired.crud": {"on": True}}
    assert created.priority == 3 and created.labels == {"suite": "compat"}
    assert created.created_time_utc is not None
    assert created.metrics.queries == {"ons": "SELECT deviceId FROM devices WHERE properties.reported.on = true"}

    got = manager.get_configuration(config_id)
    assert got.etag == created.etag
    assert got.target_condition == "tags.nothing = 'here'"
    assert config_id in [c.id for c in manager.get_configurations()]
    assert len(manager.get_configurations(1)) == 1

    got.priority = 7
    got.target_condition = "tags.other = 'there'"
    updated = manager.update_configuration(got, got.etag)
    assert updated.priority == 7 and updated.etag != created.etag
    assert updated.target_condition == "tags.other = 'there'"
    assert updated.created_time_utc == created.created_time_utc

    # A stale etag: 412; content cannot change: 400.
    with pytest.raises(HttpOperationError) as stale:
        manager.update_configuration(got, created.etag)
    assert status_of(stale.value) == 412, describe(stale.value)
    got.content = ConfigurationContent(device_content={"properties.desired.crud": {"on": False}})
    with pytest.raises(HttpOperationError) as immutable:
        manager.update_configuration(got, "*")
    assert status_of(immutable.value) == 400, describe(immutable.value)

    # Creating the same id again conflicts.
    with pytest.raises(HttpOperationError) as duplicate:
        manager.create_configuration(_device_config(config_id, "*", {"properties.desired.x": 1}))
    assert status_of(duplicate.value) == 409, describe(duplicate.value)

    manager.delete_configuration(config_id)
    with pytest.raises(HttpOperationError) as gone:
        manager.get_configuration(config_id)
    assert status_of(gone.value) == 404, describe(gone.value)
    assert "ConfigurationNotFound" in describe(gone.value)
    with pytest.raises(HttpOperationError) as again:
        manager.delete_configuration(config_id)
    assert status_of(again.value) == 404


def test_a_configuration_reaches_tagged_twins_and_a_connected_device(registry, manager, clients):
    site = new_id("site")
    device = _tagged(registry, "cfg-dev", {"site": site})
    other = _tagged(registry, "cfg-other", {"site": "elsewhere"})
    client = clients.device(device.connection_string)
    connect(client)
    patches: queue.Queue = queue.Queue()
    within(20, setattr, client, "on_twin_desired_properties_patch_received", patches.put,
           what="setting on_twin_desired_properties_patch_received")

    config_id = new_id("fan")
    manager.create_configuration(_device_config(
        config_id, f"tags.site = '{site}'", {"properties.desired.fan": {"speed": 3}, "tags.managed": "yes"}, 5,
        {"fast": "SELECT deviceId FROM devices WHERE properties.desired.fan.speed = 3"}))

    desired = _poll("desired fan", lambda: _desired(registry, device.device_id), lambda d: "fan" in d)
    assert desired["fan"] == {"speed": 3}
    assert registry.get_twin(device.device_id).tags["managed"] == "yes"
    assert "fan" not in _desired(registry, other.device_id)

    deadline = time.monotonic() + 15
    while True:
        patch = patches.get(timeout=max(0.01, deadline - time.monotonic()))
        note(f"desired patch {patch!r}")
        if "fan" in patch:
            break
    assert patch["fan"] == {"speed": 3}

    results = _poll("system metrics", lambda: _system(manager, config_id), lambda r: r.get("appliedCount") == 1)
    assert results == {"targetedCount": 1, "appliedCount": 1}
    custom = manager.get_configuration(config_id).metrics.results
    assert custom == {"fast": 1}


def test_the_higher_priority_wins_a_path_and_the_lower_one_fills_the_rest(registry, manager):
    site = new_id("prio")
    device = _tagged(registry, "prio-dev", {"site": site})
    low_id, high_id = new_id("low"), new_id("high")
    manager.create_configuration(_device_config(
        low_id, f"tags.site = '{site}'",
        {"properties.desired.mode.level": "low", "properties.desired.mode.extra": 1}, 1))
    manager.create_configuration(_device_config(
        high_id, f"tags.site = '{site}'", {"properties.desired.mode.level": "high"}, 9))

    desired = _poll("both configurations applied", lambda: _desired(registry, device.device_id),
                    lambda d: d.get("mode", {}).get("level") == "high" and "extra" in d.get("mode", {}))
    assert desired["mode"] == {"level": "high", "extra": 1}
    _poll("metrics", lambda: (_system(manager, high_id), _system(manager, low_id)),
          lambda r: r[0].get("appliedCount") == 1 and r[1].get("appliedCount") == 1)

    # Deleting the winner hands its path to the next configuration (Azure: twins take on their
    # next highest priority configuration).
    manager.delete_configuration(high_id)
    desired = _poll("the next configuration wins", lambda: _desired(registry, device.device_id),
                    lambda d: d["mode"]["level"] == "low")
    assert desired["mode"] == {"level": "low", "extra": 1}


def test_a_device_tagged_later_is_picked_up(registry, manager):
    marker = new_id("late")
    config_id = new_id("later")
    manager.create_configuration(_device_config(config_id, f"tags.wave = '{marker}'", {"properties.desired.wave": marker}))
    device = create_sas_device(registry, "late-dev")
    _poll("the configuration targets nothing", lambda: _system(manager, config_id),
          lambda r: r.get("targetedCount") == 0)
    assert "wave" not in _desired(registry, device.device_id)
    registry.update_twin(device.device_id, Twin(tags={"wave": marker}), "*")
    desired = _poll("picked up", lambda: _desired(registry, device.device_id), lambda d: "wave" in d)
    assert desired["wave"] == marker
    _poll("counted", lambda: _system(manager, config_id), lambda r: r.get("appliedCount") == 1)


def test_edge_content_applied_to_an_edge_device_shows_in_the_edge_agent_twin(registry, manager):
    device_id = new_id("edge")
    registry.create_device_with_sas(device_id, None, None, "enabled", iot_edge=True)
    registry.update_twin(device_id, Twin(tags={"role": device_id}), "*")
    content = ConfigurationContent(modules_content={
        "$edgeAgent": {"properties.desired": {
            "schemaVersion": "1.1",
            "runtime": {"type": "docker", "settings": {"minDockerVersion": "v1.25"}},
            "systemModules": {"edgeAgent": {"type": "docker", "settings": {"image": "mcr.microsoft.com/azureiotedge-agent:1.4"}}},
            "modules": {"sensor": {"version": "1.0", "type": "docker", "status": "running"}},
        }},
        "$edgeHub": {"properties.desired": {"schemaVersion": "1.1", "routes": {"up": "FROM /messages/* INTO $upstream"}}},
    })
    manager.apply_configuration_on_edge_device(device_id, content)
    agent = registry.get_module_twin(device_id, "$edgeAgent")
    assert agent.properties.desired["modules"]["sensor"]["version"] == "1.0"
    assert agent.properties.desired["runtime"]["type"] == "docker"
    edge_hub = registry.get_module_twin(device_id, "$edgeHub")
    assert edge_hub.properties.desired["routes"] == {"up": "FROM /messages/* INTO $upstream"}

    # A layered deployment adds a module on top of what is there.
    layer_id = new_id("layer")
    manager.create_configuration(Configuration(
        id=layer_id,
        content=ConfigurationContent(modules_content={
            "$edgeAgent": {"properties.desired.modules.extra": {"version": "2.0", "type": "docker"}}}),
        target_condition=f"tags.role = '{device_id}'",
        priority=10,
    ))
    desired = _poll("layered module", lambda: registry.get_module_twin(device_id, "$edgeAgent").properties.desired,
                    lambda d: "extra" in d.get("modules", {}))
    assert desired["modules"]["sensor"]["version"] == "1.0"
    results = _poll("edge metrics", lambda: _system(manager, layer_id), lambda r: r.get("appliedCount") == 1)
    assert results["targetedCount"] == 1
    assert results["reportedSuccessfulCount"] == 0 and results["reportedFailedCount"] == 0


def test_bad_input_gets_azure_errors(registry, manager):
    checked = manager.test_configuration_queries(ConfigurationQueriesTestInput(
        target_condition="tags.site = ", custom_metric_queries={"good": "SELECT deviceId FROM devices", "bad": "SELECT FROM"}))
    assert "column" in checked.target_condition_error, checked.target_condition_error
    assert checked.custom_metric_query_errors["good"] == ""
    assert checked.custom_metric_query_errors["bad"] != ""
    fine = manager.test_configuration_queries(ConfigurationQueriesTestInput(target_condition="tags.a = 1"))
    assert fine.target_condition_error == ""

    with pytest.raises(HttpOperationError) as bad_condition:
        manager.create_configuration(_device_config(new_id("bad"), "tags.site = 'a' AND", {"properties.desired.x": 1}))
    assert status_of(bad_condition.value) == 400
    assert "column" in describe(bad_condition.value), describe(bad_condition.value)

    with pytest.raises(HttpOperationError) as too_big:
        manager.create_configuration(_device_config(new_id("big"), "*", {"properties.desired.big": "x" * 5000}))
    assert status_of(too_big.value) == 400, describe(too_big.value)

    with pytest.raises(HttpOperationError) as bad_id:
        manager.create_configuration(_device_config("Upper Case", "*", {"properties.desired.x": 1}))
    assert status_of(bad_id.value) == 400

    with pytest.raises(HttpOperationError) as bad_key:
        manager.create_configuration(_device_config(new_id("key"), "*", {"properties.reported.x": 1}))
    assert status_of(bad_key.value) == 400

    with pytest.raises(HttpOperationError) as missing:
        manager.get_configuration(new_id("ghost"))
    assert status_of(missing.value) == 404

    device = create_sas_device(registry, "not-edge")
    with pytest.raises(HttpOperationError) as not_edge:
        manager.apply_configuration_on_edge_device(
            device.device_id, ConfigurationContent(modules_content={"$edgeAgent": {"properties.desired": {}}}))
    assert status_of(not_edge.value) == 400
