"""Fixtures: a real outpost server per test module, registry clients from the official service
SDK and device clients from the official device SDK.

Each test module gets a fresh server in its own temporary data directory. Only one server may
listen on 127.0.0.1:443 / 127.0.0.1:8883 at a time; pytest tears a module-scoped fixture down
before the next module sets its own up, so module scope keeps that rule. Every HTTP exchange the
service SDK makes, and the MQTT traffic the device SDK and paho log, are recorded and printed when
a test fails. Tests may report figures (counts, rates) with `sdk_support.FIGURES`; they are printed
at the end of the run.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field

import pytest
from azure.iot.hub import IoTHubRegistryManager

import device_support
import sdk_support
from outpost_harness import OutpostServer, ca_bundle, parse_connection_string


device_support.install_mqtt_recorder()


@pytest.fixture(autouse=True)
def _reset_exchanges():
    sdk_support.EXCHANGES.clear()
    device_support.MQTT_LOG.clear()
    yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" and report.failed and sdk_support.EXCHANGES:
        report.sections.append(
            ("HTTP exchanges (SDK <-> outpost), last 12", "\n\n".join(sdk_support.EXCHANGES[-12:]))
        )
    if report.when == "call" and report.failed and device_support.MQTT_LOG:
        report.sections.append(
            ("MQTT log (device SDK / paho <-> outpost), last 80 lines",
             "\n".join(list(device_support.MQTT_LOG)[-80:]))
        )


def pytest_terminal_summary(terminalreporter):
    if sdk_support.FIGURES:
        terminalreporter.section("figures reported by tests")
        for line in sdk_support.FIGURES:
            terminalreporter.write_line(line)


@dataclass
class Hub:
    """A running server plus its iothubowner connection string."""

    server: OutpostServer
    owner_cs: str
    _registries: dict = field(default_factory=dict)

    @property
    def host_name(self) -> str:
        return parse_connection_string(self.owner_cs)["HostName"]

    @property
    def ca_pem(self) -> str:
        """The dev CA as a PEM string (the device SDK's `server_verification_cert`)."""
        return self.server.ca_path.read_text()

    def connection_string(self, policy: str) -> str:
        return self.server.connection_string(policy=policy)

    def registry(self, policy: str = "iothubowner") -> IoTHubRegistryManager:
        if policy not in self._registries:
            cs = self.owner_cs if policy == "iothubowner" else self.connection_string(policy)
            self._registries[policy] = sdk_support.registry_for(cs)
        return self._registries[policy]


@contextmanager
def running_hub(data_dir, config_text: str | None = None):
    """Starts a fresh server on `data_dir` (with `config_text` as its `--config` TOML, if given)
    and stops it (SIGTERM, then kill) afterwards."""
    server = OutpostServer(data_dir, config_text=config_text)
    server.start()
    try:
        with ca_bundle(server.ca_path):
            yield Hub(server=server, owner_cs=server.connection_string())
    finally:
        server.stop()


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    with running_hub(tmp_path_factory.mktemp("outpost") / "data") as running:
        yield running


@pytest.fixture(scope="module")
def registry(hub) -> IoTHubRegistryManager:
    """Registry manager authenticated with the iothubowner policy."""
    return hub.registry()


@pytest.fixture
def clients(hub):
    """Official device-SDK clients trusting the hub's CA; all shut down after the test."""
    made = device_support.Clients(hub.ca_pem)
    yield made
    made.shutdown_all()
