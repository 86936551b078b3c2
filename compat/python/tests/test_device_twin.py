"""Device and module twins over MQTT with the official device SDK (azure-iot-device 2.14.0),
checked against the official service SDK (IoTHubRegistryManager).

Wire (reference §2.6): GET `$iothub/twin/GET/?$rid=…` → `$iothub/twin/res/200/?$rid=…` with
`{"desired":{…,"$version":N},"reported":{…,"$version":M}}`; reported PATCH
`$iothub/twin/PATCH/properties/reported/?$rid=…` → `$iothub/twin/res/204/?$rid=…&$version=…`;
desired notifications on `$iothub/twin/PATCH/properties/desired/?$version=N` with the delta and
`"$version": N` in the body.
"""

import queue
import time

import pytest
from azure.iot.device.exceptions import ClientError, ServiceError
from azure.iot.hub.models import Twin, TwinProperties

from device_support import connect, create_sas_device, create_sas_module, note, within
from sdk_support import user_props


@pytest.fixture
def device(registry):
    return create_sas_device(registry, "twin-dev")


def _get_twin(client) -> dict:
    twin = within(20, client.get_twin, what="get_twin()")
    note(f"get_twin() -> {twin!r}")
    return twin


def _patch_reported(client, patch) -> None:
    within(20, client.patch_twin_reported_properties, patch, what="patch_twin_reported_properties()")


def _desired(desired) -> Twin:
    return Twin(properties=TwinProperties(desired=desired))


class PatchInbox:
    """Collects the patches the SDK hands to `on_twin_desired_properties_patch_received`."""

    def __init__(self, client):
        self.patches: queue.Queue = queue.Queue()
        self.all: list[dict] = []
        # Setting the handler subscribes to `$iothub/twin/PATCH/properties/desired/#` and waits for
        # the SUBACK (sync_clients.py:_enable_feature).
        within(20, setattr, client, "on_twin_desired_properties_patch_received", self._on_patch,
               what="setting on_twin_desired_properties_patch_received")

    def _on_patch(self, patch):
        note(f"desired patch handler got {patch!r}")
        self.all.append(patch)
        self.patches.put(patch)

    def wait_version(self, version: int, timeout: float = 10) -> dict:
        """The first patch with `$version == version` (the SDK also hands up synthetic patches made
        from a twin GET after (re)connecting, with the then current version)."""
        deadline = time.monotonic() + timeout
        seen = []
        while time.monotonic() < deadline:
            try:
                patch = self.patches.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                break
            seen.append(patch)
            if patch.get("$version") == version:
                return patch
        raise AssertionError(f"no desired patch with $version {version} within {timeout}s; handler got {seen}")


def test_get_twin_returns_desired_and_reported_with_versions(registry, clients, device):
    registry.update_twin(device.device_id, _desired({"interval": 30, "mode": {"eco": True}}))
    service = registry.get_twin(device.device_id)
    client = clients.device(device.connection_string)
    connect(client)

    twin = _get_twin(client)

    assert set(twin) >= {"desired", "reported"}, f"twin document: {twin}"
    assert user_props(twin["desired"]) == {"interval": 30, "mode": {"eco": True}}
    assert twin["desired"]["$version"] == service.properties.desired["$version"]
    assert user_props(twin["reported"]) == {}
    assert twin["reported"]["$version"] == service.properties.reported["$version"]


def test_a_reported_patch_is_visible_to_the_service_with_a_bumped_version(registry, clients, device):
    client = clients.device(device.connection_string)
    connect(client)
    before = registry.get_twin(device.device_id)

    _patch_reported(client, {"fw": "1.0", "net": {"ssid": "plant", "rssi": -50}, "ok": True})

    after = registry.get_twin(device.device_id)
    assert user_props(after.properties.reported) == {"fw": "1.0", "net": {"ssid": "plant", "rssi": -50}, "ok": True}
    assert after.properties.reported["$version"] == before.properties.reported["$version"] + 1
    assert after.etag != before.etag
    assert user_props(after.properties.desired) == user_props(before.properties.desired)

    # merge: nested keys merge, null deletes
    _patch_reported(client, {"net": {"rssi": -40}, "fw": None})

    merged = registry.get_twin(device.device_id)
    assert user_props(merged.properties.reported) == {"net": {"ssid": "plant", "rssi": -40}, "ok": True}
    assert merged.properties.reported["$version"] == before.properties.reported["$version"] + 2
    twin = _get_twin(client)
    assert user_props(twin["reported"]) == {"net": {"ssid": "plant", "rssi": -40}, "ok": True}
    assert twin["reported"]["$version"] == merged.properties.reported["$version"]


def test_desired_patch_notification_reaches_the_handler(registry, clients, device):
    client = clients.device(device.connection_string)
    connect(client)
    inbox = PatchInbox(client)

    updated = registry.update_twin(device.device_id, _desired({"interval": 5, "mode": {"level": 2}}))
    version = updated.properties.desired["$version"]

    patch = inbox.wait_version(version)
    assert user_props(patch) == {"interval": 5, "mode": {"level": 2}}

    # a second patch: only the delta, next version
    updated = registry.update_twin(device.device_id, _desired({"interval": 7}))
    patch = inbox.wait_version(updated.properties.desired["$version"])
    assert user_props(patch) == {"interval": 7}
    assert updated.properties.desired["$version"] == version + 1
    assert user_props(_get_twin(client)["desired"]) == {"interval": 7, "mode": {"level": 2}}


def test_replacing_the_twin_notifies_the_device_of_the_new_desired_properties(registry, clients, device):
    registry.update_twin(device.device_id, _desired({"old": 1, "keep": "x"}))
    client = clients.device(device.connection_string)
    connect(client)
    inbox = PatchInbox(client)

    replaced = registry.replace_twin(
        device.device_id, Twin(tags={"site": "south"}, properties=TwinProperties(desired={"only": "this", "keep": "y"}))
    )
    version = replaced.properties.desired["$version"]

    patch = inbox.wait_version(version)
    assert patch["only"] == "this"
    assert patch["keep"] == "y"
    assert patch.get("old") is None, f"'old' was removed by the replace but the patch says {patch}"
    twin = _get_twin(client)
    assert user_props(twin["desired"]) == {"only": "this", "keep": "y"}
    assert twin["desired"]["$version"] == version


def test_quick_successive_desired_updates_arrive_one_each_in_version_order(registry, clients, device):
    client = clients.device(device.connection_string)
    connect(client)
    inbox = PatchInbox(client)

    versions = []
    for i in range(5):
        versions.append(registry.update_twin(device.device_id, _desired({"step": i})).properties.desired["$version"])

    last = inbox.wait_version(versions[-1])
    assert user_props(last) == {"step": 4}
    ours = [p for p in inbox.all if p.get("$version") in versions]
    assert [p["$version"] for p in ours] == versions, f"handler got {inbox.all}"
    assert [p["step"] for p in ours] == list(range(5))


def test_a_reported_patch_that_is_not_an_object_fails_with_an_error_status(registry, clients, device):
    client = clients.device(device.connection_string)
    connect(client)
    before = registry.get_twin(device.device_id)

    with pytest.raises(ClientError) as caught:
        _patch_reported(client, ["not", "an", "object"])

    cause = caught.value.__cause__
    assert isinstance(cause, ServiceError), f"expected the SDK's ServiceError (status >= 300), got {cause!r}"
    assert "status 400" in str(cause), str(cause)
    after = registry.get_twin(device.device_id)
    assert after.properties.reported["$version"] == before.properties.reported["$version"]
    # the connection is still usable
    assert _get_twin(client)["reported"]["$version"] == before.properties.reported["$version"]


def _nested(levels: int) -> dict:
    patch: dict = {"leaf": 1}
    for i in range(levels):
        patch = {f"l{i}": patch}
    return patch


# Azure's documented twin rules: keys must not contain '.', '$' or spaces; at most 10 levels of
# nesting; a section holds at most 32 KB.
INVALID_REPORTED = {
    "key-with-dot": {"a.b": 1},
    "key-with-dollar": {"$bad": 1},
    "key-with-space": {"a b": 1},
    "15-levels-deep": _nested(15),
    "40-kb": {f"k{i}": "v" * 1000 for i in range(40)},
}


@pytest.mark.parametrize("case", sorted(INVALID_REPORTED))
def test_an_invalid_reported_patch_fails_with_a_4xx_status_and_changes_nothing(registry, clients, device, case):
    client = clients.device(device.connection_string)
    connect(client)
    before = registry.get_twin(device.device_id)

    with pytest.raises(ClientError) as caught:
        _patch_reported(client, INVALID_REPORTED[case])

    cause = caught.value.__cause__
    assert isinstance(cause, ServiceError), f"expected the SDK's ServiceError (status >= 300), got {cause!r}"
    status = int(str(cause).rsplit(" ", 1)[-1])
    assert 400 <= status < 500, str(cause)
    after = registry.get_twin(device.device_id)
    assert after.properties.reported["$version"] == before.properties.reported["$version"]
    assert user_props(after.properties.reported) == user_props(before.properties.reported)


def test_a_tags_only_update_sends_no_desired_notification(registry, clients, device):
    client = clients.device(device.connection_string)
    connect(client)
    inbox = PatchInbox(client)
    before = registry.get_twin(device.device_id).properties.desired["$version"]

    registry.update_twin(device.device_id, Twin(tags={"site": "north"}))
    version = registry.update_twin(device.device_id, _desired({"marker": 1})).properties.desired["$version"]

    inbox.wait_version(version)
    assert version == before + 1
    assert [p for p in inbox.all if "marker" not in p] == [], f"a tags-only update notified the device: {inbox.all}"


def test_a_module_client_gets_its_module_twin_and_patches_reported(registry, clients, device):
    module = create_sas_module(registry, device.device_id, "twin-mod")
    registry.update_module_twin(device.device_id, "twin-mod", _desired({"threshold": 7}))
    client = clients.module(module.connection_string)
    connect(client)

    twin = _get_twin(client)
    assert user_props(twin["desired"]) == {"threshold": 7}
    service = registry.get_module_twin(device.device_id, "twin-mod")
    assert twin["desired"]["$version"] == service.properties.desired["$version"]
    assert twin["reported"]["$version"] == service.properties.reported["$version"]

    _patch_reported(client, {"filtered": 12})

    after = registry.get_module_twin(device.device_id, "twin-mod")
    assert user_props(after.properties.reported) == {"filtered": 12}
    assert after.properties.reported["$version"] == service.properties.reported["$version"] + 1
    # the device twin is untouched
    assert user_props(registry.get_twin(device.device_id).properties.reported) == {}


def test_a_module_client_receives_module_desired_patches(registry, clients, device):
    module = create_sas_module(registry, device.device_id, "twin-mod2")
    client = clients.module(module.connection_string)
    connect(client)
    inbox = PatchInbox(client)

    # a device twin change must not reach the module
    registry.update_twin(device.device_id, _desired({"for": "device"}))
    updated = registry.update_module_twin(device.device_id, "twin-mod2", _desired({"for": "module"}))

    patch = inbox.wait_version(updated.properties.desired["$version"])
    assert user_props(patch) == {"for": "module"}
    assert [p for p in inbox.all if p.get("for") == "device"] == [], f"module got the device's patch: {inbox.all}"
