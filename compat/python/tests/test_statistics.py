"""Registry and service statistics (GET /statistics/devices, /statistics/service).

The module gets a fresh server, so the first test can expect an empty registry.
"""

from sdk_support import new_id


def _counts(registry):
    stats = registry.get_device_registry_statistics()
    return stats.total_device_count, stats.enabled_device_count, stats.disabled_device_count


def test_a_fresh_hub_reports_no_devices(registry):
    assert _counts(registry) == (0, 0, 0)


def test_registry_statistics_count_created_enabled_and_disabled_devices(registry):
    total, enabled, disabled = _counts(registry)

    registry.create_device_with_sas(new_id("stat-on"), None, None, "enabled")
    registry.create_device_with_sas(new_id("stat-on"), None, None, "enabled")
    registry.create_device_with_sas(new_id("stat-off"), None, None, "disabled")

    assert _counts(registry) == (total + 3, enabled + 2, disabled + 1)


def test_registry_statistics_follow_disabling_and_deleting(registry):
    device_id = new_id("stat-flip")
    device = registry.create_device_with_sas(device_id, None, None, "enabled")
    total, enabled, disabled = _counts(registry)

    keys = device.authentication.symmetric_key
    registry.update_device_with_sas(device_id, None, keys.primary_key, keys.secondary_key, "disabled")
    assert _counts(registry) == (total, enabled - 1, disabled + 1)

    registry.delete_device(device_id)
    assert _counts(registry) == (total - 1, enabled - 1, disabled)


def test_registry_statistics_do_not_count_modules(registry):
    device_id = new_id("stat-mod")
    registry.create_device_with_sas(device_id, None, None, "enabled")
    before = _counts(registry)
    registry.create_module_with_sas(device_id, "m", None, None, None)
    assert _counts(registry) == before


def test_service_statistics_report_no_connected_devices(registry):
    registry.create_device_with_sas(new_id("stat-svc"), None, None, "enabled")
    stats = registry.get_service_statistics()
    assert stats.connected_device_count == 0
