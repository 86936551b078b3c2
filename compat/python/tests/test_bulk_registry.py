"""Bulk registry operations (POST /devices) through IoTHubRegistryManager.bulk_create_or_update_devices."""

import hashlib
import os

import pytest
from azure.iot.hub.models import AuthenticationMechanism, ExportImportDevice, SymmetricKey, X509Thumbprint
from msrest.exceptions import HttpOperationError

from sdk_support import assert_generated_key, describe, new_id, new_key, status_of


def _sas(primary=None, secondary=None) -> AuthenticationMechanism:
    return AuthenticationMechanism(
        type="sas", symmetric_key=SymmetricKey(primary_key=primary, secondary_key=secondary)
    )


def _assert_gone(registry, device_id):
    with pytest.raises(HttpOperationError) as err:
        registry.get_device(device_id)
    assert status_of(err.value) == 404, describe(err.value)


def test_bulk_create_creates_every_listed_device(registry):
    given = new_id("bulk-given")
    generated = new_id("bulk-gen")
    default_auth = new_id("bulk-default")
    x509 = new_id("bulk-x509")
    disabled = new_id("bulk-off")
    primary, secondary = new_key(), new_key()
    thumb = hashlib.sha1(os.urandom(8)).hexdigest().upper()

    result = registry.bulk_create_or_update_devices([
        ExportImportDevice(id=given, import_mode="create", status="enabled", authentication=_sas(primary, secondary)),
        ExportImportDevice(id=generated, import_mode="create", status="enabled", authentication=_sas()),
        ExportImportDevice(id=default_auth, import_mode="create", status="enabled"),
        ExportImportDevice(
            id=x509, import_mode="create", status="enabled",
            authentication=AuthenticationMechanism(
                type="selfSigned",
                x509_thumbprint=X509Thumbprint(primary_thumbprint=thumb, secondary_thumbprint=thumb),
            ),
        ),
        ExportImportDevice(id=disabled, import_mode="create", status="disabled", authentication=_sas()),
    ])

    assert result.is_successful is True, [vars(e) for e in result.errors or []]
    assert not result.errors

    device = registry.get_device(given)
    assert device.authentication.symmetric_key.primary_key == primary
    assert device.authentication.symmetric_key.secondary_key == secondary
    assert device.status == "enabled"
    for device_id in (generated, default_auth):
        device = registry.get_device(device_id)
        assert device.authentication.type == "sas"
        assert_generated_key(device.authentication.symmetric_key.primary_key)
        assert_generated_key(device.authentication.symmetric_key.secondary_key)
    device = registry.get_device(x509)
    assert device.authentication.type == "selfSigned"
    assert device.authentication.x509_thumbprint.primary_thumbprint == thumb
    assert registry.get_device(disabled).status == "disabled"
    assert registry.get_twin(given).device_id == given


def test_bulk_create_reports_an_already_registered_device_as_an_error(registry):
    existing = new_id("bulk-exists")
    registry.create_device_with_sas(existing, None, None, "enabled")

    result = registry.bulk_create_or_update_devices([
        ExportImportDevice(id=existing, import_mode="create", status="enabled", authentication=_sas()),
    ])

    assert result.is_successful is False
    assert [e.device_id for e in result.errors] == [existing]
    assert result.errors[0].error_code == "DeviceAlreadyExists"


def test_bulk_update_changes_status_of_existing_devices(registry):
    ids = [new_id("bulk-upd") for _ in range(3)]
    registry.bulk_create_or_update_devices(
        [ExportImportDevice(id=i, import_mode="create", status="enabled", authentication=_sas()) for i in ids]
    )
    keys = {i: registry.get_device(i).authentication.symmetric_key for i in ids}

    result = registry.bulk_create_or_update_devices([
        ExportImportDevice(
            id=i, import_mode="update", status="disabled",
            authentication=_sas(keys[i].primary_key, keys[i].secondary_key),
        )
        for i in ids
    ])

    assert result.is_successful is True, [vars(e) for e in result.errors or []]
    for i in ids:
        assert registry.get_device(i).status == "disabled"


def test_bulk_delete_removes_every_listed_device(registry):
    ids = [new_id("bulk-del") for _ in range(4)]
    survivor = new_id("bulk-keep")
    for device_id in ids + [survivor]:
        registry.create_device_with_sas(device_id, None, None, "enabled")

    result = registry.bulk_create_or_update_devices(
        [ExportImportDevice(id=i, import_mode="delete") for i in ids]
    )

    assert result.is_successful is True, [vars(e) for e in result.errors or []]
    for device_id in ids:
        _assert_gone(registry, device_id)
    assert registry.get_device(survivor).device_id == survivor


def test_bulk_update_if_match_etag_applies_only_with_the_current_etag(registry):
    fresh, stale = new_id("bulk-etag"), new_id("bulk-etag")
    for device_id in (fresh, stale):
        registry.create_device_with_sas(device_id, None, None, "enabled")
    current = {i: registry.get_device(i) for i in (fresh, stale)}
    registry.update_device_with_sas(
        stale, None,
        current[stale].authentication.symmetric_key.primary_key,
        current[stale].authentication.symmetric_key.secondary_key,
        "enabled",
    )  # stale's etag is now out of date

    result = registry.bulk_create_or_update_devices([
        ExportImportDevice(
            id=i, import_mode="updateIfMatchETag", e_tag=current[i].etag, status="disabled",
            authentication=_sas(current[i].authentication.symmetric_key.primary_key,
                                current[i].authentication.symmetric_key.secondary_key),
        )
        for i in (fresh, stale)
    ])

    assert result.is_successful is False
    assert [e.device_id for e in result.errors] == [stale]
    assert registry.get_device(fresh).status == "disabled"
    assert registry.get_device(stale).status == "enabled"


def test_bulk_delete_if_match_etag_spares_a_device_with_a_stale_etag(registry):
    device_id = new_id("bulk-deltag")
    created = registry.create_device_with_sas(device_id, None, None, "enabled")
    registry.update_device_with_sas(
        device_id, None, created.authentication.symmetric_key.primary_key,
        created.authentication.symmetric_key.secondary_key, "enabled",
    )

    result = registry.bulk_create_or_update_devices(
        [ExportImportDevice(id=device_id, import_mode="deleteIfMatchETag", e_tag=created.etag)]
    )

    assert result.is_successful is False
    assert [e.device_id for e in result.errors] == [device_id]
    assert registry.get_device(device_id).device_id == device_id
