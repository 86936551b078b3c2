"""Everything written through the official SDK and the CLI survives a server restart.

The module fixture starts a server on a fresh data dir, writes a device, a module, twin tags and
desired properties and a second hub, stops the server with SIGTERM, starts it again on the same
data dir and hands the tests both what was written and what the restarted server answers.
"""

from dataclasses import dataclass

import pytest
from azure.iot.hub.models import Twin, TwinProperties

from outpost_harness import OutpostServer, ca_bundle, parse_connection_string
from sdk_support import new_id, new_key, registry_for, user_props

SECOND_HUB = "plant2"
SECOND_HOST = "plant2.localhost"


@dataclass
class Snapshot:
    owner_cs: str
    read_cs: str
    second_cs: str
    device: object
    module: object
    twin: object
    module_twin: object
    ca_pem: bytes


@dataclass
class Restarted:
    server: OutpostServer
    before: Snapshot
    sigterm_exit_code: int | None
    owner_cs_after: str
    read_cs_after: str
    second_cs_after: str
    ca_pem_after: bytes


@pytest.fixture(scope="module")
def restarted(tmp_path_factory):
    server = OutpostServer(tmp_path_factory.mktemp("outpost-restart") / "data")
    server.start()
    try:
        with ca_bundle(server.ca_path):
            owner_cs = server.connection_string()
            read_cs = server.connection_string(policy="registryRead")
            registry = registry_for(owner_cs)

            device_id = new_id("persist")
            registry.create_device_with_sas(device_id, new_key(), new_key(), "enabled")
            registry.create_module_with_sas(device_id, "edge-mod", None, None, None)
            registry.update_twin(device_id, Twin(
                tags={"site": {"name": "north", "floor": 2}},
                properties=TwinProperties(desired={"interval": 30, "mode": "eco"}),
            ))
            registry.update_twin(device_id, Twin(properties=TwinProperties(desired={"mode": "turbo"})))
            registry.update_module_twin(device_id, "edge-mod", Twin(
                tags={"role": "filter"}, properties=TwinProperties(desired={"threshold": 7}),
            ))
            server.hub_create(SECOND_HUB, host_name=SECOND_HOST)
            before = Snapshot(
                owner_cs=owner_cs,
                read_cs=read_cs,
                second_cs=server.connection_string(hub=SECOND_HUB),
                device=registry.get_device(device_id),
                module=registry.get_module(device_id, "edge-mod"),
                twin=registry.get_twin(device_id),
                module_twin=registry.get_module_twin(device_id, "edge-mod"),
                ca_pem=server.ca_path.read_bytes(),
            )
            del registry

        exit_code = server.stop()
        server.start()
        with ca_bundle(server.ca_path):
            yield Restarted(
                server=server,
                before=before,
                sigterm_exit_code=exit_code,
                owner_cs_after=server.connection_string(),
                read_cs_after=server.connection_string(policy="registryRead"),
                second_cs_after=server.connection_string(hub=SECOND_HUB),
                ca_pem_after=server.ca_path.read_bytes(),
            )
    finally:
        server.stop()


def test_sigterm_stops_the_server_gracefully(restarted):
    assert restarted.sigterm_exit_code == 0


def test_the_dev_ca_is_kept_across_restarts(restarted):
    assert restarted.ca_pem_after == restarted.before.ca_pem


def test_policy_connection_strings_are_unchanged_after_restart(restarted):
    assert restarted.owner_cs_after == restarted.before.owner_cs
    assert restarted.read_cs_after == restarted.before.read_cs


def test_connection_strings_from_before_the_restart_still_authenticate(restarted):
    device_id = restarted.before.device.device_id
    assert registry_for(restarted.before.owner_cs).get_device(device_id).device_id == device_id
    assert registry_for(restarted.before.read_cs).get_device(device_id).device_id == device_id


def test_a_device_keeps_its_keys_and_identity_across_restart(restarted):
    before = restarted.before.device
    after = registry_for(restarted.before.owner_cs).get_device(before.device_id)

    assert after.authentication.symmetric_key.primary_key == before.authentication.symmetric_key.primary_key
    assert after.authentication.symmetric_key.secondary_key == before.authentication.symmetric_key.secondary_key
    assert after.generation_id == before.generation_id
    assert after.etag == before.etag
    assert after.status == before.status


def test_a_module_keeps_its_keys_across_restart(restarted):
    before = restarted.before.module
    registry = registry_for(restarted.before.owner_cs)

    after = registry.get_module(before.device_id, before.module_id)

    assert after.authentication.symmetric_key.primary_key == before.authentication.symmetric_key.primary_key
    assert after.authentication.symmetric_key.secondary_key == before.authentication.symmetric_key.secondary_key
    assert after.generation_id == before.generation_id
    assert [m.module_id for m in registry.get_modules(before.device_id)] == [before.module_id]


def test_a_device_twin_keeps_tags_desired_and_versions_across_restart(restarted):
    before = restarted.before.twin
    after = registry_for(restarted.before.owner_cs).get_twin(before.device_id)

    assert before.tags == {"site": {"name": "north", "floor": 2}}
    assert user_props(before.properties.desired) == {"interval": 30, "mode": "turbo"}
    assert after.tags == before.tags
    assert user_props(after.properties.desired) == user_props(before.properties.desired)
    assert after.properties.desired["$version"] == before.properties.desired["$version"]
    assert after.properties.reported["$version"] == before.properties.reported["$version"]
    assert after.version == before.version
    assert after.etag == before.etag


def test_a_module_twin_keeps_its_values_across_restart(restarted):
    before = restarted.before.module_twin
    after = registry_for(restarted.before.owner_cs).get_module_twin(before.device_id, before.module_id)

    assert after.tags == {"role": "filter"}
    assert user_props(after.properties.desired) == {"threshold": 7}
    assert after.properties.desired["$version"] == before.properties.desired["$version"]
    assert after.etag == before.etag


def test_twin_updates_continue_from_the_persisted_version(restarted):
    registry = registry_for(restarted.before.owner_cs)
    device_id = restarted.before.device.device_id
    current = registry.get_twin(device_id)

    updated = registry.update_twin(device_id, Twin(properties=TwinProperties(desired={"after": True})), current.etag)

    assert updated.properties.desired["$version"] == current.properties.desired["$version"] + 1


def test_a_second_hub_created_with_the_cli_survives_restart(restarted):
    hubs = {hub["name"]: hub for hub in restarted.server.hub_list()}
    assert SECOND_HUB in hubs, hubs
    assert hubs[SECOND_HUB]["hostName"] == SECOND_HOST
    assert parse_connection_string(restarted.before.second_cs)["HostName"] == SECOND_HOST
    assert restarted.second_cs_after == restarted.before.second_cs
