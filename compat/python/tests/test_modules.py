"""Module identities through the official IoTHubRegistryManager (azure-iot-hub 2.7.0)."""

import pytest
from msrest.exceptions import HttpOperationError

from sdk_support import assert_generated_key, describe, new_id, new_key, status_of


@pytest.fixture
def device_id(registry):
    device_id = new_id("moddev")
    registry.create_device_with_sas(device_id, None, None, "enabled")
    return device_id


def test_creating_a_sas_module_without_keys_generates_keys(registry, device_id):
    module = registry.create_module_with_sas(device_id, "telemetry", None, None, None)

    assert module.module_id == "telemetry"
    assert module.device_id == device_id
    assert module.authentication.type == "sas"
    assert_generated_key(module.authentication.symmetric_key.primary_key)
    assert_generated_key(module.authentication.symmetric_key.secondary_key)
    assert module.authentication.symmetric_key.primary_key != module.authentication.symmetric_key.secondary_key
    assert module.etag, "a created module must carry an etag"
    assert module.generation_id, "a created module must carry a generationId"
    assert module.connection_state == "Disconnected"


def test_creating_a_module_with_given_keys_and_manager_keeps_them(registry, device_id):
    primary, secondary = new_key(), new_key()
    module = registry.create_module_with_sas(device_id, "managed", "edge-agent", primary, secondary)

    assert module.managed_by == "edge-agent"
    assert module.authentication.symmetric_key.primary_key == primary
    assert module.authentication.symmetric_key.secondary_key == secondary


def test_getting_a_module_returns_the_stored_identity(registry, device_id):
    created = registry.create_module_with_sas(device_id, "reader", None, None, None)

    fetched = registry.get_module(device_id, "reader")

    assert fetched.module_id == "reader"
    assert fetched.device_id == device_id
    assert fetched.etag == created.etag
    assert fetched.generation_id == created.generation_id
    assert fetched.authentication.symmetric_key.primary_key == created.authentication.symmetric_key.primary_key


def test_listing_modules_returns_exactly_the_device_modules(registry, device_id):
    registry.create_module_with_sas(device_id, "m1", None, None, None)
    registry.create_module_with_sas(device_id, "m2", None, None, None)
    other = new_id("other")
    registry.create_device_with_sas(other, None, None, "enabled")
    registry.create_module_with_sas(other, "m3", None, None, None)

    modules = registry.get_modules(device_id)

    assert sorted(m.module_id for m in modules) == ["m1", "m2"]
    assert all(m.device_id == device_id for m in modules)


def test_listing_modules_of_a_device_without_modules_is_empty(registry, device_id):
    assert registry.get_modules(device_id) == []


def test_updating_a_module_replaces_keys_and_changes_etag(registry, device_id):
    created = registry.create_module_with_sas(device_id, "rotating", None, None, None)
    primary, secondary = new_key(), new_key()

    updated = registry.update_module_with_sas(device_id, "rotating", None, created.etag, primary, secondary)

    assert updated.authentication.symmetric_key.primary_key == primary
    assert updated.authentication.symmetric_key.secondary_key == secondary
    assert updated.etag and updated.etag != created.etag
    assert updated.generation_id == created.generation_id
    fetched = registry.get_module(device_id, "rotating")
    assert fetched.authentication.symmetric_key.primary_key == primary


def test_updating_a_module_with_a_stale_etag_fails_with_412(registry, device_id):
    created = registry.create_module_with_sas(device_id, "contended", None, None, None)
    registry.update_module_with_sas(device_id, "contended", None, created.etag, new_key(), new_key())

    with pytest.raises(HttpOperationError) as err:
        registry.update_module_with_sas(device_id, "contended", None, created.etag, new_key(), new_key())
    assert status_of(err.value) == 412, describe(err.value)


def test_deleting_a_module_removes_it_from_get_and_list(registry, device_id):
    registry.create_module_with_sas(device_id, "keep", None, None, None)
    registry.create_module_with_sas(device_id, "drop", None, None, None)

    registry.delete_module(device_id, "drop")

    with pytest.raises(HttpOperationError) as err:
        registry.get_module(device_id, "drop")
    assert status_of(err.value) == 404, describe(err.value)
    assert [m.module_id for m in registry.get_modules(device_id)] == ["keep"]


def test_creating_a_module_twice_fails_with_409(registry, device_id):
    registry.create_module_with_sas(device_id, "dup", None, None, None)
    with pytest.raises(HttpOperationError) as err:
        registry.create_module_with_sas(device_id, "dup", None, None, None)
    assert status_of(err.value) == 409, describe(err.value)


def test_creating_a_module_on_an_unknown_device_fails_with_404(registry):
    with pytest.raises(HttpOperationError) as err:
        registry.create_module_with_sas(new_id("ghost"), "m", None, None, None)
    assert status_of(err.value) == 404, describe(err.value)


def test_deleting_a_device_deletes_its_modules(registry):
    device_id = new_id("cascade")
    registry.create_device_with_sas(device_id, None, None, "enabled")
    registry.create_module_with_sas(device_id, "child", None, None, None)
    registry.delete_device(device_id)
    registry.create_device_with_sas(device_id, None, None, "enabled")

    assert registry.get_modules(device_id) == []
    with pytest.raises(HttpOperationError) as err:
        registry.get_module(device_id, "child")
    assert status_of(err.value) == 404, describe(err.value)
