"""Error statuses and authorization as the official Python service SDK sees them."""

import json

import pytest
from msrest.exceptions import HttpOperationError

from outpost_harness import parse_connection_string
from sdk_support import describe, new_id, new_key, registry_for, status_of


def _expect_status(status, call, *args, **kwargs):
    with pytest.raises(HttpOperationError) as err:
        call(*args, **kwargs)
    assert status_of(err.value) == status, describe(err.value)
    return err.value


def test_getting_an_unknown_device_fails_with_404(registry):
    _expect_status(404, registry.get_device, new_id("unknown"))


def test_a_404_carries_the_azure_error_body(registry):
    err = _expect_status(404, registry.get_device, new_id("unknown"))
    body = json.loads(err.response.text)
    assert body["Message"].startswith("ErrorCode:DeviceNotFound;"), body
    assert "ExceptionMessage" in body, body


def test_getting_an_unknown_module_fails_with_404(registry):
    device_id = new_id("nomod")
    registry.create_device_with_sas(device_id, None, None, "enabled")
    _expect_status(404, registry.get_module, device_id, "missing")


def test_getting_the_twin_of_an_unknown_module_fails_with_404(registry):
    device_id = new_id("nomodtwin")
    registry.create_device_with_sas(device_id, None, None, "enabled")
    _expect_status(404, registry.get_module_twin, device_id, "missing")


def test_creating_an_existing_device_id_fails_with_409_and_keeps_the_original(registry):
    device_id = new_id("dup")
    original = registry.create_device_with_sas(device_id, None, None, "enabled")

    _expect_status(409, registry.create_device_with_sas, device_id, new_key(), new_key(), "disabled")

    stored = registry.get_device(device_id)
    assert stored.status == "enabled"
    assert stored.authentication.symmetric_key.primary_key == original.authentication.symmetric_key.primary_key


@pytest.mark.parametrize(
    "bad_id",
    [
        pytest.param("has space", id="space"),
        pytest.param("amp&ersand", id="ampersand"),
        pytest.param("caf\u00e9", id="non-ascii"),
        pytest.param("x" * 129, id="129-chars"),
    ],
)
def test_creating_a_device_with_an_invalid_id_fails_with_400(registry, bad_id):
    _expect_status(400, registry.create_device_with_sas, bad_id, None, None, "enabled")


def test_creating_a_module_with_an_invalid_id_fails_with_400(registry):
    device_id = new_id("badmod")
    registry.create_device_with_sas(device_id, None, None, "enabled")
    _expect_status(400, registry.create_module_with_sas, device_id, "bad module", None, None, None)


def test_registry_read_policy_can_read_but_not_create_or_delete(hub, registry):
    existing = new_id("ro")
    registry.create_device_with_sas(existing, None, None, "enabled")
    reader = hub.registry("registryRead")

    assert reader.get_device(existing).device_id == existing
    assert reader.get_device_registry_statistics().total_device_count >= 1

    refused = new_id("ro-new")
    _expect_status(401, reader.create_device_with_sas, refused, None, None, "enabled")
    _expect_status(401, reader.delete_device, existing)
    _expect_status(404, registry.get_device, refused)
    assert registry.get_device(existing).device_id == existing


def test_registry_read_write_policy_can_create_and_delete(hub):
    writer = hub.registry("registryReadWrite")
    device_id = new_id("rw")
    assert writer.create_device_with_sas(device_id, None, None, "enabled").device_id == device_id
    writer.delete_device(device_id)
    _expect_status(404, writer.get_device, device_id)


def test_service_policy_cannot_write_the_registry(hub):
    service = hub.registry("service")
    _expect_status(401, service.create_device_with_sas, new_id("svc"), None, None, "enabled")


def test_device_policy_cannot_read_the_registry(hub, registry):
    device_id = new_id("devpol")
    registry.create_device_with_sas(device_id, None, None, "enabled")
    _expect_status(401, hub.registry("device").get_device, device_id)


def test_a_connection_string_with_a_wrong_key_is_rejected_with_401(hub):
    parts = parse_connection_string(hub.owner_cs)
    forged = f"HostName={parts['HostName']};SharedAccessKeyName={parts['SharedAccessKeyName']};SharedAccessKey={new_key()}"
    _expect_status(401, registry_for(forged).get_device_registry_statistics)


def test_a_connection_string_with_an_unknown_policy_is_rejected_with_401(hub):
    parts = parse_connection_string(hub.owner_cs)
    forged = f"HostName={parts['HostName']};SharedAccessKeyName=nosuchpolicy;SharedAccessKey={parts['SharedAccessKey']}"
    _expect_status(401, registry_for(forged).get_device_registry_statistics)
