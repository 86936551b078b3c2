"""Device and module twins through the official IoTHubRegistryManager (azure-iot-hub 2.7.0)."""

import pytest
from azure.iot.hub.models import Twin, TwinProperties
from msrest.exceptions import HttpOperationError

from sdk_support import describe, new_id, status_of, user_props


@pytest.fixture
def device_id(registry):
    device_id = new_id("twin")
    registry.create_device_with_sas(device_id, None, None, "enabled")
    return device_id


def _patch(tags=None, desired=None) -> Twin:
    return Twin(tags=tags, properties=TwinProperties(desired=desired) if desired is not None else None)


def test_a_new_device_twin_has_identity_fields_and_empty_properties(registry, device_id):
    twin = registry.get_twin(device_id)

    assert twin.device_id == device_id
    assert twin.module_id is None
    assert twin.etag, "a twin must carry an etag"
    assert isinstance(twin.version, int)
    assert twin.status == "enabled"
    assert twin.connection_state == "Disconnected"
    assert twin.authentication_type == "sas"
    assert user_props(twin.tags) == {}
    assert user_props(twin.properties.desired) == {}
    assert user_props(twin.properties.reported) == {}
    assert isinstance(twin.properties.desired["$version"], int)
    assert isinstance(twin.properties.reported["$version"], int)


def test_patching_a_twin_sets_tags_and_desired_and_bumps_versions(registry, device_id):
    before = registry.get_twin(device_id)

    after = registry.update_twin(
        device_id,
        _patch(tags={"location": {"region": "eu", "plant": "p1"}, "owner": "ops"},
               desired={"interval": 10, "mode": "eco"}),
        before.etag,
    )

    assert after.tags == {"location": {"region": "eu", "plant": "p1"}, "owner": "ops"}
    assert user_props(after.properties.desired) == {"interval": 10, "mode": "eco"}
    assert after.properties.desired["$version"] == before.properties.desired["$version"] + 1
    assert after.etag and after.etag != before.etag
    assert after.version > before.version

    stored = registry.get_twin(device_id)
    assert stored.tags == after.tags
    assert user_props(stored.properties.desired) == {"interval": 10, "mode": "eco"}
    assert stored.properties.desired["$version"] == after.properties.desired["$version"]
    assert stored.etag == after.etag
    assert stored.version == after.version


def test_patching_desired_properties_records_last_updated_metadata(registry, device_id):
    twin = registry.update_twin(device_id, _patch(desired={"interval": 10, "limits": {"hi": 80}}))

    metadata = twin.properties.desired.get("$metadata")
    assert isinstance(metadata, dict), f"desired must carry $metadata, got {twin.properties.desired}"
    assert isinstance(metadata.get("$lastUpdated"), str), metadata
    assert isinstance(metadata.get("interval", {}).get("$lastUpdated"), str), metadata
    assert isinstance(metadata.get("limits", {}).get("hi", {}).get("$lastUpdated"), str), metadata


def test_twin_responses_carry_the_etag_header(registry, device_id):
    # Wire reference section 5.1: return `ETag: "<etag>"` and `etag` in the JSON body.
    got = registry.protocol.devices.get_twin(device_id, raw=True)
    assert got.response.headers.get("ETag") == f'"{got.output.etag}"'

    patched = registry.protocol.devices.update_twin(device_id, _patch(tags={"h": 1}), '"*"', raw=True)
    assert patched.response.headers.get("ETag") == f'"{patched.output.etag}"'


def test_patching_a_twin_merges_tags_and_desired_and_null_deletes_keys(registry, device_id):
    first = registry.update_twin(
        device_id,
        _patch(tags={"location": {"region": "eu", "plant": "p1"}, "owner": "ops"},
               desired={"interval": 10, "mode": "eco", "limits": {"hi": 80, "lo": 10}}),
    )

    second = registry.update_twin(
        device_id,
        _patch(tags={"location": {"plant": None}, "owner": None, "added": 1},
               desired={"mode": None, "fw": "1.2", "limits": {"lo": 5}}),
        first.etag,
    )

    assert second.tags == {"location": {"region": "eu"}, "added": 1}
    assert user_props(second.properties.desired) == {"interval": 10, "fw": "1.2", "limits": {"hi": 80, "lo": 5}}
    assert second.properties.desired["$version"] == first.properties.desired["$version"] + 1
    assert second.etag != first.etag

    stored = registry.get_twin(device_id)
    assert stored.tags == second.tags
    assert user_props(stored.properties.desired) == user_props(second.properties.desired)


def test_patching_only_tags_leaves_the_desired_version_alone(registry, device_id):
    before = registry.get_twin(device_id)
    after = registry.update_twin(device_id, _patch(tags={"only": "tags"}))
    assert after.tags == {"only": "tags"}
    assert after.properties.desired["$version"] == before.properties.desired["$version"]
    assert after.etag != before.etag


def test_patching_a_twin_with_a_stale_etag_fails_with_412_and_changes_nothing(registry, device_id):
    original = registry.get_twin(device_id)
    registry.update_twin(device_id, _patch(desired={"a": 1}), original.etag)

    with pytest.raises(HttpOperationError) as err:
        registry.update_twin(device_id, _patch(desired={"a": 2}, tags={"t": 1}), original.etag)
    assert status_of(err.value) == 412, describe(err.value)

    stored = registry.get_twin(device_id)
    assert user_props(stored.properties.desired) == {"a": 1}
    assert user_props(stored.tags) == {}


def test_replacing_a_twin_overwrites_tags_and_desired(registry, device_id):
    first = registry.update_twin(
        device_id, _patch(tags={"old": 1, "keep": "no"}, desired={"old": True, "x": 1})
    )

    replaced = registry.replace_twin(
        device_id, _patch(tags={"only": "this"}, desired={"a": 1}), first.etag
    )

    assert replaced.tags == {"only": "this"}
    assert user_props(replaced.properties.desired) == {"a": 1}
    assert replaced.properties.desired["$version"] > first.properties.desired["$version"]
    assert replaced.etag != first.etag

    stored = registry.get_twin(device_id)
    assert stored.tags == {"only": "this"}
    assert user_props(stored.properties.desired) == {"a": 1}


def test_replacing_a_twin_with_a_stale_etag_fails_with_412(registry, device_id):
    original = registry.get_twin(device_id)
    registry.update_twin(device_id, _patch(tags={"v": 1}), original.etag)

    with pytest.raises(HttpOperationError) as err:
        registry.replace_twin(device_id, _patch(tags={"v": 2}, desired={}), original.etag)
    assert status_of(err.value) == 412, describe(err.value)


def test_getting_the_twin_of_an_unknown_device_fails_with_404(registry):
    with pytest.raises(HttpOperationError) as err:
        registry.get_twin(new_id("nobody"))
    assert status_of(err.value) == 404, describe(err.value)


def test_disabling_a_device_shows_in_its_twin_status(registry, device_id):
    keys = registry.get_device(device_id).authentication.symmetric_key
    registry.update_device_with_sas(device_id, None, keys.primary_key, keys.secondary_key, "disabled")
    assert registry.get_twin(device_id).status == "disabled"


def test_a_module_twin_has_device_and_module_ids(registry, device_id):
    registry.create_module_with_sas(device_id, "sensor", None, None, None)

    twin = registry.get_module_twin(device_id, "sensor")

    assert twin.device_id == device_id
    assert twin.module_id == "sensor"
    assert twin.etag
    assert isinstance(twin.properties.desired["$version"], int)
    assert user_props(twin.properties.desired) == {}


def test_patching_a_module_twin_updates_only_that_module(registry, device_id):
    registry.create_module_with_sas(device_id, "sensor", None, None, None)
    registry.create_module_with_sas(device_id, "other", None, None, None)
    before = registry.get_module_twin(device_id, "sensor")

    after = registry.update_module_twin(
        device_id, "sensor", _patch(tags={"role": "temp"}, desired={"rate": 5}), before.etag
    )

    assert after.module_id == "sensor"
    assert after.tags == {"role": "temp"}
    assert user_props(after.properties.desired) == {"rate": 5}
    assert after.properties.desired["$version"] == before.properties.desired["$version"] + 1
    assert after.etag != before.etag

    stored = registry.get_module_twin(device_id, "sensor")
    assert user_props(stored.properties.desired) == {"rate": 5}
    assert user_props(registry.get_module_twin(device_id, "other").properties.desired) == {}
    assert user_props(registry.get_twin(device_id).properties.desired) == {}


def test_patching_a_module_twin_with_a_stale_etag_fails_with_412(registry, device_id):
    registry.create_module_with_sas(device_id, "sensor", None, None, None)
    original = registry.get_module_twin(device_id, "sensor")
    registry.update_module_twin(device_id, "sensor", _patch(desired={"v": 1}), original.etag)

    with pytest.raises(HttpOperationError) as err:
        registry.update_module_twin(device_id, "sensor", _patch(desired={"v": 2}), original.etag)
    assert status_of(err.value) == 412, describe(err.value)


def test_replacing_a_module_twin_overwrites_desired(registry, device_id):
    registry.create_module_with_sas(device_id, "sensor", None, None, None)
    registry.update_module_twin(device_id, "sensor", _patch(desired={"old": 1}))

    replaced = registry.replace_module_twin(device_id, "sensor", _patch(tags={}, desired={"new": 2}))

    assert user_props(replaced.properties.desired) == {"new": 2}
