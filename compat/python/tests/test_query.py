"""The IoT Hub query language through the official IoTHubRegistryManager (azure-iot-hub 2.7.0):
`query_iot_hub` (`POST /devices/query`) with paging (`x-ms-max-item-count`, `x-ms-continuation`),
conditions on tags, status and reported properties, module twins, read-your-writes, and the 400
a query that does not parse gets. The Python SDK deserialises every item as a Twin, so these
queries select whole twins; projections and aggregates are in the Node suite.
"""

import pytest
from azure.iot.hub.models import QuerySpecification, Twin, TwinProperties
from msrest.exceptions import HttpOperationError

from sdk_support import describe, new_id, status_of


@pytest.fixture(scope="module")
def fleet(registry):
    """Seven devices tagged with this run's site, floors 0..6; floor 5 is disabled."""
    site = new_id("site")
    ids = []
    for floor in range(7):
        device_id = f"{site}-d{floor}"
        registry.create_device_with_sas(device_id, None, None, "disabled" if floor == 5 else "enabled")
        registry.update_twin(device_id, Twin(tags={"site": site, "floor": floor}), "*")
        ids.append(device_id)
    return site, ids


def _all_pages(registry, query: str, page_size: int) -> list[list]:
    pages = []
    token = None
    while True:
        result = registry.query_iot_hub(QuerySpecification(query=query), token, page_size)
        pages.append(result.items)
        token = result.continuation_token
        assert len(pages) < 20, "paging does not end"
        if not token:
            return pages


def test_a_query_pages_through_every_match_once_in_id_order(registry, fleet):
    site, ids = fleet
    pages = _all_pages(registry, f"SELECT * FROM devices WHERE tags.site = '{site}'", 3)
    assert [len(page) for page in pages] == [3, 3, 1]
    found = [twin.device_id for page in pages for twin in page]
    assert found == sorted(ids)
    first = pages[0][0]
    assert first.tags["site"] == site
    assert first.etag and isinstance(first.version, int)


def test_conditions_combine_tags_status_and_arithmetic(registry, fleet):
    site, ids = fleet
    query = f"SELECT * FROM devices WHERE tags.site = '{site}' AND tags.floor >= 4 AND status = 'enabled'"
    result = registry.query_iot_hub(QuerySpecification(query=query))
    assert sorted(t.device_id for t in result.items) == [ids[4], ids[6]]
    assert result.type == "Twin"
    query = f"SELECT * FROM devices WHERE tags.site = '{site}' AND (tags.floor % 2 = 1 OR tags.floor IN [0]) AND NOT status = 'disabled'"
    result = registry.query_iot_hub(QuerySpecification(query=query))
    assert sorted(t.device_id for t in result.items) == [ids[0], ids[1], ids[3]]
    query = f"SELECT TOP 2 * FROM devices WHERE STARTSWITH(deviceId, '{site}')"
    result = registry.query_iot_hub(QuerySpecification(query=query))
    assert [t.device_id for t in result.items] == ids[:2]
    assert not result.continuation_token


def test_a_write_is_visible_to_the_next_query(registry, fleet):
    site, ids = fleet
    registry.update_twin(ids[2], Twin(tags={"zone": "blue"}), "*")
    registry.update_twin(ids[2], Twin(properties=TwinProperties(desired={"mode": "eco"})), "*")
    query = f"SELECT * FROM devices WHERE tags.site = '{site}' AND tags.zone = 'blue' AND properties.desired.mode = 'eco'"
    result = registry.query_iot_hub(QuerySpecification(query=query))
    assert [t.device_id for t in result.items] == [ids[2]]
    undefined = f"SELECT * FROM devices WHERE tags.site = '{site}' AND NOT IS_DEFINED(tags.zone)"
    assert len(registry.query_iot_hub(QuerySpecification(query=undefined)).items) == 6


def test_module_twins_are_queried_from_devices_modules(registry, fleet):
    site, ids = fleet
    for module_id in ("alpha", "beta"):
        registry.create_module_with_sas(ids[0], module_id, None, None, None)
    query = f"SELECT * FROM devices.modules WHERE deviceId = '{ids[0]}'"
    pages = _all_pages(registry, query, 1)
    assert [twin.module_id for page in pages for twin in page] == ["alpha", "beta"]


@pytest.mark.parametrize(
    "query",
    [
        "SELECT * FROM devices WHERE",
        "SELECT * FROM devices WHERE tags.floor >",
        "SELECT * FROM nowhere",
        "SELEKT * FROM devices",
        "SELECT * FROM devices WHERE NO_SUCH_FUNCTION(tags.x)",
    ],
)
def test_a_query_that_does_not_parse_is_a_400_naming_the_position(registry, query):
    with pytest.raises(HttpOperationError) as error:
        registry.query_iot_hub(QuerySpecification(query=query))
    assert status_of(error.value) == 400, describe(error.value)
    body = error.value.response.json()
    assert "ArgumentInvalid" in body["Message"], body
    assert "column" in body["Message"], body


def test_an_oversized_query_is_refused(registry):
    query = "SELECT * FROM devices WHERE " + " OR ".join(f"tags.x = {n}" for n in range(2000))
    with pytest.raises(HttpOperationError) as error:
        registry.query_iot_hub(QuerySpecification(query=query))
    assert status_of(error.value) == 400, describe(error.value)
