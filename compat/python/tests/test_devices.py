"""Device identity CRUD through the official IoTHubRegistryManager (azure-iot-hub 2.7.0)."""

import hashlib
import os

import pytest
from azure.iot.hub.models import Twin, TwinProperties
from msrest.exceptions import HttpOperationError

from sdk_support import assert_generated_key, describe, new_id, new_key, status_of


def _thumbprint() -> str:
    return hashlib.sha1(os.urandom(16)).hexdigest().upper()


def _assert_new_device_shape(device, device_id: str) -> None:
    assert device.device_id == device_id
    assert device.status == "enabled"
    assert device.etag, "a created device must carry an etag"
    assert device.generation_id, "a created device must carry a generationId"
    assert device.connection_state == "Disconnected"
    assert device.cloud_to_device_message_count == 0
    assert device.capabilities is not None and device.capabilities.iot_edge is False


def test_creating_a_sas_device_without_keys_generates_two_distinct_keys(registry):
    device_id = new_id("gen")
    device = registry.create_device_with_sas(device_id, None, None, "enabled")

    _assert_new_device_shape(device, device_id)
    assert device.authentication.type == "sas"
    keys = device.authentication.symmetric_key
    assert_generated_key(keys.primary_key)
    assert_generated_key(keys.secondary_key)
    assert keys.primary_key != keys.secondary_key


def test_creating_a_sas_device_with_given_keys_keeps_them(registry):
    device_id = new_id("keys")
    primary, secondary = new_key(), new_key()
    device = registry.create_device_with_sas(device_id, primary, secondary, "enabled")

    _assert_new_device_shape(device, device_id)
    assert device.authentication.type == "sas"
    assert device.authentication.symmetric_key.primary_key == primary
    assert device.authentication.symmetric_key.secondary_key == secondary


def test_getting_a_device_returns_the_stored_identity(registry):
    device_id = new_id("get")
    created = registry.create_device_with_sas(device_id, None, None, "enabled")

    fetched = registry.get_device(device_id)

    _assert_new_device_shape(fetched, device_id)
    assert fetched.etag == created.etag
    assert fetched.generation_id == created.generation_id
    assert fetched.authentication.type == "sas"
    assert fetched.authentication.symmetric_key.primary_key == created.authentication.symmetric_key.primary_key
    assert fetched.authentication.symmetric_key.secondary_key == created.authentication.symmetric_key.secondary_key


def test_generation_ids_differ_between_devices(registry):
    first = registry.create_device_with_sas(new_id("genid"), None, None, "enabled")
    second = registry.create_device_with_sas(new_id("genid"), None, None, "enabled")
    assert first.generation_id != second.generation_id


def test_creating_an_x509_device_stores_thumbprints_and_no_sas_keys(registry):
    device_id = new_id("x509")
    primary, secondary = _thumbprint(), _thumbprint()
    device = registry.create_device_with_x509(device_id, primary, secondary, "enabled")

    _assert_new_device_shape(device, device_id)
    assert device.authentication.type == "selfSigned"
    assert device.authentication.x509_thumbprint.primary_thumbprint == primary
    assert device.authentication.x509_thumbprint.secondary_thumbprint == secondary
    sym = device.authentication.symmetric_key
    assert sym is None or (not sym.primary_key and not sym.secondary_key), (
        "an X.509 (selfSigned) device must not be given SAS keys"
    )

    fetched = registry.get_device(device_id)
    assert fetched.authentication.type == "selfSigned"
    assert fetched.authentication.x509_thumbprint.primary_thumbprint == primary
    assert fetched.authentication.x509_thumbprint.secondary_thumbprint == secondary


def test_creating_a_certificate_authority_device_has_no_keys_or_thumbprints(registry):
    device_id = new_id("ca")
    device = registry.create_device_with_certificate_authority(device_id, "enabled")

    _assert_new_device_shape(device, device_id)
    assert device.authentication.type == "certificateAuthority"
    sym = device.authentication.symmetric_key
    assert sym is None or (not sym.primary_key and not sym.secondary_key)
    assert registry.get_device(device_id).authentication.type == "certificateAuthority"


def test_an_edge_device_keeps_its_capability_and_gets_a_device_scope(registry):
    # iothub_registry_manager.py documents deviceScope as "Auto generated and immutable for edge devices".
    device_id = new_id("edge")
    device = registry.create_device_with_sas(device_id, None, None, "enabled", iot_edge=True)

    assert device.capabilities.iot_edge is True
    assert device.device_scope, "an edge device must be given a deviceScope"
    fetched = registry.get_device(device_id)
    assert fetched.capabilities.iot_edge is True
    assert fetched.device_scope == device.device_scope


def test_device_responses_carry_the_etag_header(registry):
    # Wire reference section 5.1: return `ETag: "<etag>"` and `etag` in the JSON body.
    device_id = new_id("etaghdr")
    registry.create_device_with_sas(device_id, None, None, "enabled")

    raw = registry.protocol.devices.get_identity(device_id, raw=True)

    assert raw.response.headers.get("ETag") == f'"{raw.output.etag}"'


def test_creating_a_disabled_device_keeps_it_disabled(registry):
    device_id = new_id("off")
    device = registry.create_device_with_sas(device_id, None, None, "disabled", status_reason="staged")
    assert device.status == "disabled"
    assert device.status_reason == "staged"
    assert registry.get_device(device_id).status == "disabled"


def test_updating_a_device_changes_status_and_keys_and_etag_but_not_generation_id(registry):
    device_id = new_id("upd")
    created = registry.create_device_with_sas(device_id, None, None, "enabled")
    primary, secondary = new_key(), new_key()

    updated = registry.update_device_with_sas(
        device_id, created.etag, primary, secondary, "disabled", status_reason="maintenance"
    )

    assert updated.device_id == device_id
    assert updated.status == "disabled"
    assert updated.status_reason == "maintenance"
    assert updated.authentication.symmetric_key.primary_key == primary
    assert updated.authentication.symmetric_key.secondary_key == secondary
    assert updated.etag and updated.etag != created.etag
    assert updated.generation_id == created.generation_id

    fetched = registry.get_device(device_id)
    assert fetched.status == "disabled"
    assert fetched.etag == updated.etag
    assert fetched.authentication.symmetric_key.primary_key == primary


def test_changing_the_status_sets_status_updated_time(registry):
    device_id = new_id("stime")
    created = registry.create_device_with_sas(device_id, None, None, "enabled")
    keys = created.authentication.symmetric_key

    updated = registry.update_device_with_sas(device_id, None, keys.primary_key, keys.secondary_key, "disabled")

    assert updated.status_updated_time is not None
    assert updated.status_updated_time.year >= 2020, updated.status_updated_time
    assert created.status_updated_time is None or updated.status_updated_time > created.status_updated_time


def test_updating_a_device_with_wildcard_etag_is_unconditional(registry):
    device_id = new_id("upd-any")
    registry.create_device_with_sas(device_id, None, None, "enabled")
    # etag=None makes the SDK send If-Match: "*"
    updated = registry.update_device_with_sas(device_id, None, new_key(), new_key(), "disabled")
    assert updated.status == "disabled"


def test_updating_a_device_with_a_stale_etag_fails_with_412(registry):
    device_id = new_id("stale")
    created = registry.create_device_with_sas(device_id, None, None, "enabled")
    registry.update_device_with_sas(device_id, created.etag, new_key(), new_key(), "enabled")

    with pytest.raises(HttpOperationError) as err:
        registry.update_device_with_sas(device_id, created.etag, new_key(), new_key(), "disabled")
    assert status_of(err.value) == 412, describe(err.value)
    assert registry.get_device(device_id).status == "enabled", "a rejected update must change nothing"


def test_switching_a_device_from_sas_to_x509_replaces_its_credentials(registry):
    device_id = new_id("switch")
    registry.create_device_with_sas(device_id, None, None, "enabled")
    primary, secondary = _thumbprint(), _thumbprint()

    updated = registry.update_device_with_x509(device_id, None, primary, secondary, "enabled")

    assert updated.authentication.type == "selfSigned"
    assert updated.authentication.x509_thumbprint.primary_thumbprint == primary
    assert updated.authentication.x509_thumbprint.secondary_thumbprint == secondary
    assert registry.get_device(device_id).authentication.type == "selfSigned"


def test_deleting_a_device_makes_it_unknown(registry):
    device_id = new_id("del")
    registry.create_device_with_sas(device_id, None, None, "enabled")

    registry.delete_device(device_id)

    with pytest.raises(HttpOperationError) as err:
        registry.get_device(device_id)
    assert status_of(err.value) == 404, describe(err.value)
    with pytest.raises(HttpOperationError) as err:
        registry.get_twin(device_id)
    assert status_of(err.value) == 404, describe(err.value)
    with pytest.raises(HttpOperationError) as err:
        registry.delete_device(device_id)
    assert status_of(err.value) == 404, describe(err.value)


def test_a_recreated_device_gets_a_new_generation_id_and_a_fresh_twin(registry):
    device_id = new_id("again")
    first = registry.create_device_with_sas(device_id, None, None, "enabled")
    registry.update_twin(device_id, Twin(tags={"old": True}, properties=TwinProperties(desired={"old": 1})))
    registry.delete_device(device_id)

    second = registry.create_device_with_sas(device_id, None, None, "enabled")

    assert second.generation_id != first.generation_id
    twin = registry.get_twin(device_id)
    assert not twin.tags
    assert {k: v for k, v in twin.properties.desired.items() if not k.startswith("$")} == {}


def test_deleting_a_device_with_a_stale_etag_fails_with_412(registry):
    device_id = new_id("del-stale")
    created = registry.create_device_with_sas(device_id, None, None, "enabled")
    registry.update_device_with_sas(device_id, created.etag, new_key(), new_key(), "enabled")

    with pytest.raises(HttpOperationError) as err:
        registry.delete_device(device_id, etag=created.etag)
    assert status_of(err.value) == 412, describe(err.value)
    assert registry.get_device(device_id).device_id == device_id


def test_deleting_a_device_with_its_current_etag_succeeds(registry):
    device_id = new_id("del-etag")
    created = registry.create_device_with_sas(device_id, None, None, "enabled")
    registry.delete_device(device_id, etag=created.etag)
    with pytest.raises(HttpOperationError) as err:
        registry.get_device(device_id)
    assert status_of(err.value) == 404, describe(err.value)


def test_listing_devices_includes_every_created_device(registry):
    ids = {new_id("list") for _ in range(3)}
    for device_id in ids:
        registry.create_device_with_sas(device_id, None, None, "enabled")

    listed = {device.device_id for device in registry.get_devices()}

    assert ids <= listed


def test_listing_devices_honours_the_maximum_count(registry):
    for _ in range(3):
        registry.create_device_with_sas(new_id("top"), None, None, "enabled")

    assert len(registry.get_devices(max_number_of_devices=2)) == 2


def _assert_id_round_trips(registry, device_id):
    created = registry.create_device_with_sas(device_id, None, None, "enabled")
    assert created.device_id == device_id

    assert registry.get_device(device_id).device_id == device_id
    assert registry.get_twin(device_id).device_id == device_id
    registry.delete_device(device_id)
    with pytest.raises(HttpOperationError) as err:
        registry.get_device(device_id)
    assert status_of(err.value) == 404, describe(err.value)


def test_device_ids_with_special_characters_round_trip(registry):
    # The long-standing allowed set: - . % _ * ? ! ( ) , : = @ $ '
    # The SDK percent-encodes them all in the URL path (msrest quote(safe='')); the server decodes.
    _assert_id_round_trips(registry, "id-.%_*?!(),:=@$'" + new_id("x"))


def test_device_ids_with_plus_and_hash_round_trip(registry):
    # Microsoft's current documentation of deviceId also allows + and #
    # ("ASCII 7-bit alphanumeric characters plus ... - : . + % _ # * ? ! ( ) , = @ ; $ '").
    _assert_id_round_trips(registry, "id+plus#hash-" + new_id("x"))


def test_a_128_character_device_id_is_accepted(registry):
    device_id = ("len128-" + new_id("x")).ljust(128, "a")
    assert len(device_id) == 128
    created = registry.create_device_with_sas(device_id, None, None, "enabled")
    assert created.device_id == device_id
    assert registry.get_device(device_id).device_id == device_id
