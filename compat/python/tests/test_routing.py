"""Message routing (issue #8) with the official clients: the device SDK (azure-iot-device 2.14.0)
sends, the service SDK (azure-iot-hub 2.7.0) sets twin tags and creates/deletes identities, and
what the routes delivered is read back the way an Azure user reads it:

* custom event streams and the built-in endpoint with azure-eventhub 5.15.1
  (`EventHubConsumerClient.from_connection_string("Endpoint=sb://<hub host>/;SharedAccessKeyName=
  service;SharedAccessKey=…;EntityPath=<stream>")`, both of its AMQP transports);
* storage endpoints from the files in their directories (JSON lines, and Avro read by
  `routing_storage_files`, fastavro when installed);
* a webhook endpoint with an `http.server` receiver on 127.0.0.1 (Event Grid schema POSTs).

Routing is configured three ways: the config file (`[[routing]]`, its own server), the operator
API (`PUT /hubs/{hub}/routing`, `POST …/routing/endpoints|routes`) and the CLI (`outpost route`,
`routing-endpoint`, `message-enrichment`). Each test writes the routes it needs; a message goes to
every endpoint whose route matches, and to the built-in endpoint `events` only through the
fallback route when none matched (Azure's rule).
"""

from __future__ import annotations

import json
import re
import subprocess
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from azure.eventhub import EventHubConsumerClient, TransportType
from azure.iot.device import Message
from azure.iot.hub.models import Twin, TwinProperties

from conftest import running_hub
from device_support import Clients, connect, create_sas_device, wait_until, within
from outpost_harness import parse_connection_string
from routing_storage_files import AVRO_READER, body_bytes, read_routed_files
from sdk_support import FIGURES

HUB = "localhost"
# The harness's AMQP listener (`outpost_harness.AMQP_LISTEN`); pyamqp ignores a port in
# `Endpoint=`, so the clients are pointed at it with `custom_endpoint_address` (test_eventhub.py).
AMQP_PORT = 5671


# ---- configuration through the operator API and the CLI -----------------------------------------


def routing_api(server, method: str, path: str = "", body=None, expect=(200, 201, 204)):
    """`<method> /hubs/localhost/routing<path>` on the operator API; checks the status."""
    status, answer = server.operator_request(method, f"/hubs/{HUB}/routing{path}", body)
    assert status in expect, f"{method} /hubs/{HUB}/routing{path} {json.dumps(body)[:400]} -> {status} {answer!r}"
    return answer


def outpost_cli(server, *args: str) -> str:
    """`outpost <args> --data-dir DIR` against the running server (fails the test on an error)."""
    return server.cli(*args, "--data-dir", str(server.data_dir))


def outpost_cli_failing(server, *args: str) -> subprocess.CompletedProcess:
    """Runs a CLI command that must fail; returns the finished process."""
    done = subprocess.run(
        [str(server.binary), *args, "--data-dir", str(server.data_dir)],
        capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL,
    )
    assert done.returncode != 0, f"`outpost {' '.join(args)}` succeeded: {done.stdout!r}"
    return done


def health(server) -> dict[str, dict]:
    """`GET /hubs/localhost/routing/health`, by endpoint name."""
    rows = routing_api(server, "GET", "/health")["value"]
    return {row["endpointId"]: row for row in rows}


# ---- reading event streams and the built-in endpoint with azure-eventhub -------------------------


def eventhub_connection_string(hub, entity: str) -> str:
    """An Event Hubs connection string for `entity` (a custom stream, or the hub's name for the
    built-in endpoint) made from the hub's host name and the `service` policy key."""
    service = parse_connection_string(hub.connection_string("service"))
    return (f"Endpoint=sb://{service['HostName']}/;SharedAccessKeyName=service;"
            f"SharedAccessKey={service['SharedAccessKey']};EntityPath={entity}")


def _text(value):
    """uamqp hands strings over as `str`, pyamqp as `bytes`."""
    return value.decode("utf-8", errors="replace") if isinstance(value, (bytes, bytearray)) else value


@dataclass
class Got:
    """An event read from an Event Hubs entity, transport differences removed."""

    partition: str
    sequence_number: int
    body: bytes
    properties: dict
    system: dict
    content_type: str | None

    message_id = property(lambda self: self.system.get("message-id"))
    device_id = property(lambda self: self.system.get("iothub-connection-device-id"))

    def json(self):
        return json.loads(self.body)


def _got(partition: str, event) -> Got:
    raw = event.body
    body = bytes(raw) if isinstance(raw, (bytes, bytearray)) else b"".join(bytes(part) for part in raw)
    return Got(partition, event.sequence_number, body,
               {_text(k): _text(v) for k, v in (event.properties or {}).items()},
               {_text(k): _text(v) for k, v in (event.system_properties or {}).items()},
               _text(event.content_type))


def eventhub_consumer(hub, entity: str, uamqp: bool = False):
    return EventHubConsumerClient.from_connection_string(
        eventhub_connection_string(hub, entity),
        consumer_group="$Default",
        connection_verify=str(hub.server.ca_path),
        custom_endpoint_address=f"sb://localhost:{AMQP_PORT}",
        transport_type=TransportType.Amqp,
        retry_total=0,
        uamqp_transport=uamqp,
    )


class EntityReader:
    """`consumer.receive_batch(starting_position="-1")` over every partition of an entity, on a
    thread. Batches, not `receive(on_event=…)`: the sync EventProcessor polls all partitions on
    one thread and a per-event receive on an idle partition waits its socket timeout (0.2 s), so
    a backlog in one partition would drain at about 5 events/s (event_processor.py `start`)."""

    def __init__(self, hub, entity: str, uamqp: bool = False):
        self.entity = entity
        self.consumer = eventhub_consumer(hub, entity, uamqp)
        self.events: list[Got] = []
        self.errors: list = []
        self.lock = threading.Lock()
        self.thread = threading.Thread(
            target=self.consumer.receive_batch,
            kwargs=dict(on_event_batch=self._on_batch, on_error=self._on_error, starting_position="-1",
                        max_batch_size=300, max_wait_time=1),
            name=f"read-{entity}", daemon=True,
        )
        self.thread.start()

    def _on_batch(self, context, events):
        got = [_got(context.partition_id, event) for event in events or []]
        with self.lock:
            self.events.extend(got)

    def _on_error(self, context, error):
        with self.lock:
            self.errors.append(error)

    def snapshot(self) -> list[Got]:
        with self.lock:
            return list(self.events)

    def wait(self, done, timeout: float) -> list[Got]:
        wait_until(lambda: done(self.snapshot()), timeout, interval=0.1)
        return self.snapshot()

    def close(self):
        self.consumer.close()
        self.thread.join(timeout=15)


def read_entity(hub, entity: str, done, uamqp: bool = False, timeout: float = 30, settle: float = 1.0) -> list[Got]:
    """Every event of `entity` from the start, once `done(events)` holds (or `timeout` passed),
    plus what arrives within `settle` seconds more (to see that nothing else comes)."""
    reader = EntityReader(hub, entity, uamqp)
    try:
        events = reader.wait(done, timeout)
        if settle and done(events):
            time.sleep(settle)
        events = reader.snapshot()
        assert not reader.errors, f"reading {entity}: {reader.errors!r}"
        return events
    finally:
        reader.close()


def ids_of(events, device_ids) -> list[str]:
    """The message ids of the events of `device_ids`, in read order."""
    devices = set(device_ids)
    return [event.message_id for event in events if event.device_id in devices]


def has_ids(device_ids, wanted):
    """A `done` predicate: every id of `wanted` was read."""
    return lambda events: set(wanted) <= set(ids_of(events, device_ids))


# ---- sending with the device SDK ------------------------------------------------------------------


def send(client, message_id: str, body, properties: dict | None = None,
         content_type: str | None = None, content_encoding: str | None = None) -> None:
    """Sends one message; a dict or list body is sent as JSON (application/json, utf-8)."""
    if isinstance(body, (dict, list)):
        body = json.dumps(body)
        content_type = content_type or "application/json"
        content_encoding = content_encoding or "utf-8"
    message = Message(body, message_id=message_id, content_type=content_type, content_encoding=content_encoding)
    if properties:
        message.custom_properties = dict(properties)
    within(20, client.send_message, message, what=f"send_message({message_id})")


def device_with_tags(hub, registry, clients, prefix: str, tags: dict | None = None):
    """A new device (tags set through the registry manager) and its connected SDK client."""
    device = create_sas_device(registry, prefix)
    if tags:
        registry.update_twin(device.device_id, Twin(tags=tags), "*")
    client = clients.device(device.connection_string)
    connect(client)
    return device, client


# ---- the webhook receiver -------------------------------------------------------------------------


@dataclass
class Post:
    path: str
    headers: dict
    events: list


@dataclass
class WebhookReceiver:
    """An HTTP server on 127.0.0.1 that records Event Grid POSTs; `status` is its answer (set it
    to 503 for an outage). Every request is recorded, delivered or not."""

    status: int = 200
    delay: float = 0.0  # seconds each request takes (a slow receiver)
    posts: list = field(default_factory=list)
    refused: int = 0

    def __post_init__(self):
        receiver = self
        self.lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                if receiver.delay:
                    time.sleep(receiver.delay)
                status = receiver.status
                with receiver.lock:
                    if status < 300:
                        receiver.posts.append(Post(self.path, {k.lower(): v for k, v in self.headers.items()},
                                                   json.loads(raw)))
                    else:
                        receiver.refused += 1
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, name="webhook", daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks/outpost"

    def events(self) -> list[dict]:
        with self.lock:
            return [event for post in self.posts for event in post.events]

    def events_of(self, device_ids) -> list[dict]:
        devices = set(device_ids)
        return [e for e in self.events() if e.get("data", {}).get("deviceId") in devices
                or e.get("data", {}).get("systemProperties", {}).get("iothub-connection-device-id") in devices]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def telemetry_ids(events) -> set[str]:
    return {e["data"]["systemProperties"].get("message-id") for e in events
            if e["eventType"] == "Microsoft.Devices.DeviceTelemetry"}


# ---- The config file: its own server (it must run before the module's shared `hub` starts).


CONFIG_TEXT = """
[[routing]]
hub = "localhost"

[[routing.endpoints]]
name = "cfg-stream"
type = "eventStream"
partitionCount = 2

[[routing.routes]]
name = "cfg-alerts"
source = "DeviceMessages"
condition = "alert = 'true'"
endpointNames = ["cfg-stream"]
isEnabled = true

[routing.fallbackRoute]
isEnabled = true
"""


def test_routes_from_the_config_file_deliver_to_their_stream(tmp_path):
    """`[[routing]]` in the config file seeds the hub's routes: the stream exists at once, the
    matching message reaches it, the other one the built-in endpoint."""
    with running_hub(tmp_path / "data", config_text=CONFIG_TEXT) as hub:
        config = routing_api(hub.server, "GET")
        assert [e["name"] for e in config["endpoints"]] == ["cfg-stream"], config
        assert [r["name"] for r in config["routes"]] == ["cfg-alerts"], config
        clients = Clients(hub.ca_pem)
        try:
            device, client = device_with_tags(hub, hub.registry(), clients, "rt-cfg")
            send(client, "cfg-alert", {"v": 1}, {"alert": "true"})
            send(client, "cfg-plain", {"v": 2}, {"alert": "false"})
            streamed = read_entity(hub, "cfg-stream", has_ids([device.device_id], ["cfg-alert"]))
            built_in = read_entity(hub, HUB, has_ids([device.device_id], ["cfg-plain"]))
        finally:
            clients.shutdown_all()
    assert ids_of(streamed, [device.device_id]) == ["cfg-alert"]
    assert streamed[0].properties["alert"] == "true"
    assert ids_of(built_in, [device.device_id]) == ["cfg-plain"]


# ---- Conditions on application properties, $body and $twin (operator API), and the fallback route.


CONDITION_ROUTES = {
    "endpoints": [
        {"name": "s-props", "type": "eventStream", "partitionCount": 2},
        {"name": "s-body", "type": "eventStream", "partitionCount": 2},
        {"name": "s-twin", "type": "eventStream", "partitionCount": 4},
    ],
    "routes": [
        {"name": "by-property", "source": "DeviceMessages", "condition": "level = 'critical'",
         "endpointNames": ["s-props"], "isEnabled": True},
        {"name": "by-body", "source": "DeviceMessages", "condition": "$body.temperature > 30",
         "endpointNames": ["s-body"], "isEnabled": True},
        {"name": "by-twin", "source": "DeviceMessages", "condition": "$twin.tags.site = 'paris'",
         "endpointNames": ["s-twin"], "isEnabled": True},
    ],
    "fallbackRoute": {"isEnabled": True},
    "enrichments": [],
}


@dataclass
class ConditionRun:
    paris: str  # device ids
    berlin: str
    berlin_client: object
    devices: list


@pytest.fixture(scope="module")
def condition_run(hub, registry):
    """Writes CONDITION_ROUTES through the operator API, then sends from two devices (twin tag
    `site` paris / berlin):

    id  device  level     body                    goes to
    m1  paris   critical  {"temperature": 10}     s-props, s-twin
    m2  paris   info      {"temperature": 40}     s-body, s-twin
    m3  berlin  critical  {"temperature": 50}     s-props, s-body
    m4  berlin  info      {"temperature": 5}      events (fallback)
    m5  berlin  info      temperature 99, text    events ($body is not JSON)
    m6  berlin  info      "temperature: 99" json  events ($body does not parse)
    """
    stored = routing_api(hub.server, "PUT", "", CONDITION_ROUTES)
    assert [r["name"] for r in stored["routes"]] == ["by-property", "by-body", "by-twin"]
    clients = Clients(hub.ca_pem)
    try:
        paris, paris_client = device_with_tags(hub, registry, clients, "rt-paris", {"site": "paris"})
        berlin, berlin_client = device_with_tags(hub, registry, clients, "rt-berlin", {"site": "berlin"})
        send(paris_client, "m1", {"temperature": 10}, {"level": "critical", "n": "1"})
        send(paris_client, "m2", {"temperature": 40}, {"level": "info", "n": "2"})
        send(berlin_client, "m3", {"temperature": 50}, {"level": "critical", "n": "3"})
        send(berlin_client, "m4", {"temperature": 5}, {"level": "info", "n": "4"})
        send(berlin_client, "m5", json.dumps({"temperature": 99}), {"level": "info", "n": "5"},
             content_type="text/plain", content_encoding="utf-8")
        send(berlin_client, "m6", "temperature: 99", {"level": "info", "n": "6"},
             content_type="application/json", content_encoding="utf-8")
        yield ConditionRun(paris.device_id, berlin.device_id, berlin_client, [paris.device_id, berlin.device_id])
    finally:
        clients.shutdown_all()


EXPECTED_STREAMS = {"s-props": ["m1", "m3"], "s-body": ["m2", "m3"], "s-twin": ["m1", "m2"]}
SENT_BODIES = {"m1": {"temperature": 10}, "m2": {"temperature": 40}, "m3": {"temperature": 50}}


@pytest.mark.parametrize("transport", ["pyamqp", "uamqp"])
def test_conditions_on_properties_body_and_twin_fill_the_right_streams(hub, condition_run, transport):
    uamqp = transport == "uamqp"
    consumer = eventhub_consumer(hub, "s-twin", uamqp)
    try:  # a stream is an event hub of its own: its name, its partition count
        assert consumer.get_eventhub_properties()["eventhub_name"] == "s-twin"
        assert consumer.get_partition_ids() == ["0", "1", "2", "3"]
    finally:
        consumer.close()
    for stream, expected in EXPECTED_STREAMS.items():
        events = read_entity(hub, stream, lambda got, e=expected: len(got) >= len(e), uamqp=uamqp)
        # Exactly its messages: the stream holds nothing else (no other test routes to it).
        assert sorted(event.message_id for event in events) == expected, (stream, [e.message_id for e in events])
        for event in events:
            sent_by = condition_run.paris if event.message_id in ("m1", "m2") else condition_run.berlin
            assert event.device_id == sent_by
            assert event.json() == SENT_BODIES[event.message_id]
            assert event.properties["n"] == event.message_id[1:]
            assert event.properties["level"] == ("critical" if event.message_id in ("m1", "m3") else "info")
            assert event.system["iothub-message-source"] == "Telemetry"
            assert event.content_type == "application/json"
            assert event.system.get("iothub-connection-auth-method"), event.system
        # A device's messages keep one partition of the stream, in order.
        for device in condition_run.devices:
            mine = [e for e in events if e.device_id == device]
            assert len({e.partition for e in mine}) <= 1, (stream, device)
            assert [e.sequence_number for e in mine] == sorted(e.sequence_number for e in mine)


def test_body_condition_on_a_message_that_is_not_json_is_false(hub, condition_run):
    """m5 (text/plain) and m6 (declared JSON, does not parse) have temperature 99 in their body
    text, yet `$body.temperature > 30` is false for both: they fall back to the built-in
    endpoint, and s-body does not get them."""
    built_in = read_entity(hub, HUB, has_ids(condition_run.devices, ["m5", "m6"]))
    by_id = {e.message_id: e for e in built_in if e.device_id in condition_run.devices}
    assert by_id["m5"].body == b'{"temperature": 99}'
    assert by_id["m6"].body == b"temperature: 99"
    body_stream = read_entity(hub, "s-body", lambda got: len(got) >= 2)
    assert "m5" not in ids_of(body_stream, condition_run.devices)
    assert "m6" not in ids_of(body_stream, condition_run.devices)


def test_fallback_route_takes_only_unmatched_messages_and_can_be_disabled(hub, condition_run):
    devices = condition_run.devices
    # m1–m3 matched a route: Azure's fallback skips them; m4–m6 matched none.
    built_in = read_entity(hub, HUB, has_ids(devices, ["m4", "m5", "m6"]))
    assert sorted(ids_of(built_in, devices)) == ["m4", "m5", "m6"]

    # Disabled (CLI, as `az iot hub route update --name $fallback`): unmatched messages are dropped.
    out = outpost_cli(hub.server, "route", "fallback", "set", "--enabled", "false")
    assert "disabled" in out, out
    assert routing_api(hub.server, "GET", "/fallback")["isEnabled"] is False
    send(condition_run.berlin_client, "m7-dropped", {"temperature": 1}, {"level": "info"})
    # Enabled again (operator API); the next unmatched message, sent after m7 by the same device
    # (same partition, later in the log), reaches the built-in endpoint; m7 never does.
    assert routing_api(hub.server, "PUT", "/fallback", {"isEnabled": True})["isEnabled"] is True
    send(condition_run.berlin_client, "m8-kept", {"temperature": 2}, {"level": "info"})
    built_in = read_entity(hub, HUB, has_ids(devices, ["m8-kept"]))
    assert sorted(ids_of(built_in, devices)) == ["m4", "m5", "m6", "m8-kept"]
    for stream, expected in EXPECTED_STREAMS.items():
        events = read_entity(hub, stream, lambda got, e=expected: len(got) >= len(e), settle=0.5)
        assert "m7-dropped" not in ids_of(events, devices), stream


# ---- Enrichments (CLI): static, $twin.tags.*, $iothubname on a stream and on the built-in endpoint.


def test_enrichments_are_application_properties_on_streams_and_the_built_in_endpoint(hub, registry, clients):
    routing_api(hub.server, "PUT", "", {
        "endpoints": [{"name": "s-enriched", "type": "eventStream", "partitionCount": 2}],
        "routes": [{"name": "enrich-me", "source": "DeviceMessages", "condition": "enrich = 'yes'",
                    "endpointNames": ["s-enriched"], "isEnabled": True}],
        "fallbackRoute": {"isEnabled": True},
    })
    outpost_cli(hub.server, "message-enrichment", "create", "--key", "env", "--value", "prod",
                "--endpoints", "s-enriched,events")
    outpost_cli(hub.server, "message-enrichment", "create", "--key", "site", "--value", "$twin.tags.site",
                "--endpoints", "s-enriched", "events")
    outpost_cli(hub.server, "message-enrichment", "create", "--key", "hubname", "--value", "$iothubname",
                "--endpoints", "s-enriched,events")
    listed = json.loads(outpost_cli(hub.server, "message-enrichment", "list", "--output", "json"))
    assert {e["key"]: e["value"] for e in listed} == {"env": "prod", "site": "$twin.tags.site",
                                                       "hubname": "$iothubname"}

    device, client = device_with_tags(hub, registry, clients, "rt-enrich", {"site": "lyon"})
    send(client, "e-stream", {"x": 1}, {"enrich": "yes", "own": "kept"})
    send(client, "e-builtin", {"x": 2}, {"enrich": "no", "own": "kept"})

    streamed = read_entity(hub, "s-enriched", has_ids([device.device_id], ["e-stream"]))
    built_in = read_entity(hub, HUB, has_ids([device.device_id], ["e-builtin"]))
    [on_stream] = [e for e in streamed if e.device_id == device.device_id]
    [on_built_in] = [e for e in built_in if e.device_id == device.device_id]
    assert on_stream.message_id == "e-stream" and on_built_in.message_id == "e-builtin"
    for event, enrich in ((on_stream, "yes"), (on_built_in, "no")):
        assert event.properties == {"enrich": enrich, "own": "kept", "env": "prod", "site": "lyon",
                                    "hubname": HUB}, event.properties


# ---- Storage endpoints: JSON lines and Avro files in directories, Azure's file names.


FILE_NAME = re.compile(r"^localhost/(\d+)/(\d{4})/(\d{2})/(\d{2})/(\d{2})/(\d{2})(-\d+)?$")


def test_storage_endpoints_write_json_and_avro_files_with_azure_names(hub, registry, clients, tmp_path):
    json_dir, avro_dir = tmp_path / "routed-json", tmp_path / "routed-avro"
    routing_api(hub.server, "PUT", "", {
        "endpoints": [
            {"name": "files-json", "type": "storage", "directory": str(json_dir), "encoding": "json",
             "batchFrequencyInSeconds": 1},
            {"name": "files-avro", "type": "storage", "directory": str(avro_dir), "encoding": "avro",
             "batchFrequencyInSeconds": 1},
        ],
        "routes": [
            {"name": "to-json", "source": "DeviceMessages", "condition": "store = 'yes'",
             "endpointNames": ["files-json"], "isEnabled": True},
            {"name": "to-avro", "source": "DeviceMessages", "condition": "store = 'yes'",
             "endpointNames": ["files-avro"], "isEnabled": True},
        ],
        "fallbackRoute": {"isEnabled": True},
    })
    device, client = device_with_tags(hub, registry, clients, "rt-store")
    sent = {f"f{n}": {"reading": n, "unit": "C"} for n in range(4)}
    for message_id, body in sent.items():
        send(client, message_id, body, {"store": "yes", "seq": message_id})
    binary = bytes([0, 1, 2, 250, 255])
    send(client, "f-binary", binary, {"store": "yes", "seq": "f-binary"})
    wanted = set(sent) | {"f-binary"}

    def records(directory):
        found = []

        def complete():
            found[:] = read_routed_files(directory) if directory.exists() else []
            return wanted <= {r["SystemProperties"].get("messageId") for r in found}

        if not wait_until(complete, 20, interval=0.25):
            ids = sorted(str(r["SystemProperties"].get("messageId")) for r in found)
            pytest.fail(f"{directory.name}: ids {ids} of {sorted(wanted)}")
        return found

    for directory, encoding in ((json_dir, "json"), (avro_dir, "avro")):
        found = records(directory)
        assert len(found) == len(wanted), f"{encoding}: {len(found)} records for {len(wanted)} messages"
        partitions = set()
        for record in found:
            assert record["_encoding"] == encoding
            match = FILE_NAME.match(record["_file"])
            assert match, f"{encoding}: {record['_file']!r} is not {{iothub}}/{{partition}}/{{YYYY}}/…/{{mm}}"
            partitions.add(match.group(1))
            system = record["SystemProperties"]
            message_id = system["messageId"]
            assert system["connectionDeviceId"] == device.device_id
            assert system["connectionAuthMethod"], system
            assert system["enqueuedTime"], system
            assert record["Properties"] == {"store": "yes", "seq": message_id}
            if message_id == "f-binary":
                assert body_bytes(record) == binary
                assert "contentType" not in system
            else:
                assert (system["contentType"], system["contentEncoding"]) == ("application/json", "utf-8")
                assert json.loads(body_bytes(record)) == sent[message_id]
                if encoding == "json":
                    assert record["Body"] == sent[message_id], "a JSON body is embedded as JSON"
            # The file is named after the enqueued time of its first record: same day, same
            # minute or, when the batch crossed a minute, the record came later.
            first = next(r for r in found if r["_file"] == record["_file"])
            stamp = "/".join(match.group(i) for i in range(2, 7))
            assert first["EnqueuedTimeUtc"].replace("-", "/").replace("T", "/").replace(":", "/")[:16] == stamp, (
                record["_file"], first["EnqueuedTimeUtc"])
        assert len(partitions) == 1, f"{encoding}: one device's messages in partitions {partitions}"
    FIGURES.append(f"routing storage: Avro read with the {AVRO_READER} reader")
    for name in ("files-json", "files-avro"):
        assert wait_until(lambda: health(hub.server)[name]["healthStatus"] == "healthy", 10), health(hub.server)


# ---- Webhook (CLI): telemetry, connection and lifecycle events (Event Grid schema); an outage; health.


def test_webhook_gets_event_grid_posts_and_every_message_after_an_outage(hub, registry, clients):
    receiver = WebhookReceiver()
    try:
        outpost_cli(hub.server, "routing-endpoint", "create", "--name", "hook", "--type", "webhook",
                    "--url", receiver.url, "--max-batch", "10", "--dead-letter-after", "0")
        for name, source, condition in (
            ("hook-telemetry", "devicemessages", "hook = 'yes'"),
            ("hook-connections", "deviceconnectionstateevents", "true"),
            ("hook-lifecycle", "devicelifecycleevents", "true"),
        ):
            outpost_cli(hub.server, "route", "create", "--name", name, "--source", source,
                        "--condition", condition, "--endpoint", "hook")
        listed = json.loads(outpost_cli(hub.server, "route", "list", "--output", "json"))
        assert {"hook-telemetry", "hook-connections", "hook-lifecycle"} <= {r["name"] for r in listed}

        device, client = device_with_tags(hub, registry, clients, "rt-hook")
        for n in range(3):
            send(client, f"h{n}", {"n": n}, {"hook": "yes"})
        within(20, client.disconnect, what="disconnect()")
        removed = create_sas_device(registry, "rt-hook-gone")
        registry.delete_device(removed.device_id)
        ids = [device.device_id, removed.device_id]

        def kinds():
            return {(e["eventType"].rsplit(".", 1)[1], e["data"].get("deviceId") or
                     e["data"]["systemProperties"]["iothub-connection-device-id"]) for e in receiver.events_of(ids)}

        expected = {
            ("DeviceCreated", device.device_id), ("DeviceConnected", device.device_id),
            ("DeviceDisconnected", device.device_id), ("DeviceTelemetry", device.device_id),
            ("DeviceCreated", removed.device_id), ("DeviceDeleted", removed.device_id),
        }
        assert wait_until(lambda: expected <= kinds() and {"h0", "h1", "h2"} <= telemetry_ids(receiver.events_of(ids)),
                          20), f"webhook got {sorted(kinds())}, telemetry {telemetry_ids(receiver.events())}"
        check_event_grid_shapes(receiver, device.device_id, removed.device_id)

        # Outage: the receiver answers 503; messages sent meanwhile wait, the endpoint turns unhealthy.
        receiver.status = 503
        connect(client)
        outage_ids = [f"o{n}" for n in range(5)]
        for message_id in outage_ids:
            send(client, message_id, {"outage": message_id}, {"hook": "yes"})
        assert wait_until(lambda: health(hub.server)["hook"]["healthStatus"] == "unhealthy", 20), health(hub.server)
        cli_health = json.loads(outpost_cli(hub.server, "routing-endpoint", "health", "--output", "json"))
        [row] = [row for row in cli_health if row["endpointId"] == "hook"]
        assert row["healthStatus"] == "unhealthy" and row["kind"] == "webhook", row
        assert row["failures"] >= 1 and row.get("lastKnownError"), row
        # Down for a while: several retries (back-off 1 s, 2 s, …) are refused before it is back.
        assert wait_until(lambda: receiver.refused >= 3, 20), receiver.refused
        assert not set(outage_ids) & telemetry_ids(receiver.events())

        receiver.status = 200
        back = time.monotonic()
        assert wait_until(lambda: set(outage_ids) <= telemetry_ids(receiver.events()), 40), (
            f"after the outage the webhook got {sorted(telemetry_ids(receiver.events()))}")
        FIGURES.append(f"routing webhook: outage of {receiver.refused} refused POSTs, caught up "
                       f"{time.monotonic() - back:.1f} s after the receiver came back")
        assert wait_until(lambda: health(hub.server)["hook"]["healthStatus"] == "healthy", 20), health(hub.server)
        cli_health = outpost_cli(hub.server, "routing-endpoint", "health")
        assert re.search(r"hook\s+webhook\s+healthy", cli_health), cli_health
    finally:
        receiver.close()


def check_event_grid_shapes(receiver, device_id: str, removed_id: str) -> None:
    """The Event Grid schema of Azure IoT Hub's events (learn.microsoft.com/azure/event-grid/
    event-schema-iot-hub): id, topic, subject `devices/<id>`, eventType, eventTime, data,
    dataVersion, metadataVersion; Event Grid's delivery headers."""
    with receiver.lock:
        posts = list(receiver.posts)
    for post in posts:
        assert post.path == "/hooks/outpost"
        assert post.headers["content-type"].startswith("application/json")
        assert post.headers["aeg-event-type"] == "Notification"
        assert isinstance(post.events, list) and post.events
        for event in post.events:
            assert set(event) >= {"id", "topic", "subject", "eventType", "eventTime", "data", "dataVersion",
                                  "metadataVersion"}, event
            assert event["metadataVersion"] == "1"
            assert event["topic"].endswith("/PROVIDERS/MICROSOFT.DEVICES/IOTHUBS/LOCALHOST"), event["topic"]
    mine = receiver.events_of([device_id, removed_id])
    by_type = {}
    for event in mine:
        by_type.setdefault(event["eventType"], []).append(event)
    telemetry = by_type["Microsoft.Devices.DeviceTelemetry"][0]
    assert telemetry["subject"] == f"devices/{device_id}"
    assert telemetry["data"]["properties"] == {"hook": "yes"}
    assert telemetry["data"]["systemProperties"]["iothub-connection-device-id"] == device_id
    assert telemetry["data"]["systemProperties"]["iothub-message-source"] == "Telemetry"
    assert telemetry["data"]["body"] in ({"n": 0}, {"n": 1}, {"n": 2})
    def first(kind, device):
        return next(e for e in by_type[f"Microsoft.Devices.{kind}"] if e["data"]["deviceId"] == device)

    numbers = []
    for event in (first("DeviceConnected", device_id), first("DeviceDisconnected", device_id)):
        assert event["subject"] == f"devices/{device_id}"
        assert event["data"]["hubName"] == HUB
        numbers.append(event["data"]["deviceConnectionStateEventInfo"]["sequenceNumber"])
    assert all(re.fullmatch(r"[0-9A-F]{64}", n) for n in numbers) and numbers[0] < numbers[1], numbers
    for event, op in ((first("DeviceCreated", removed_id), "createDeviceIdentity"),
                      (first("DeviceDeleted", removed_id), "deleteDeviceIdentity")):
        assert event["data"]["opType"] == op
        assert event["data"]["hubName"] == HUB
        assert event["data"]["twin"]["deviceId"] == removed_id
        assert "properties" in event["data"]["twin"]
        assert event["dataVersion"] == "1"


# ---- System events routed to a stream (operator API endpoints/routes): Azure's shapes.


OPERATION_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")


def test_twin_lifecycle_and_connection_events_in_a_stream_have_azure_shapes(hub, registry, clients):
    routing_api(hub.server, "POST", "/endpoints", {"name": "s-system", "type": "eventStream", "partitionCount": 2})
    for name, source in (("sys-twin", "TwinChangeEvents"), ("sys-life", "DeviceLifecycleEvents"),
                         ("sys-conn", "DeviceConnectionStateEvents")):
        routing_api(hub.server, "POST", "/routes", {"name": name, "source": source, "endpointNames": ["s-system"]})

    device = create_sas_device(registry, "rt-sys")
    registry.update_twin(device.device_id, Twin(tags={"floor": "3"},
                                                properties=TwinProperties(desired={"fan": "on"})), "*")
    client = clients.device(device.connection_string)
    connect(client)
    within(20, client.patch_twin_reported_properties, {"rpm": 1200}, what="patch reported")
    within(20, client.disconnect, what="disconnect()")
    registry.delete_device(device.device_id)

    def op_types(events):
        return [e.properties.get("opType") for e in events if e.device_id == device.device_id]

    wanted = ["createDeviceIdentity", "updateTwin", "deviceConnected", "updateTwin", "deviceDisconnected",
              "deleteDeviceIdentity"]
    events = read_entity(hub, "s-system", lambda got: sorted(op_types(got)) == sorted(wanted), timeout=20)
    mine = [e for e in events if e.device_id == device.device_id]
    assert sorted(op_types(mine)) == sorted(wanted), op_types(mine)
    assert len({e.partition for e in mine}) == 1, "a device's events share a partition"
    schema = {"twinChangeEvents": "twinChangeNotification", "deviceLifecycleEvents": "deviceLifecycleNotification",
              "deviceConnectionStateEvents": "deviceConnectionStateNotification"}
    for event in mine:
        source = event.system["iothub-message-source"]
        assert event.properties["iothub-message-schema"] == schema[source], event.properties
        assert event.properties["hubName"] == HUB
        assert event.properties["deviceId"] == device.device_id
        assert OPERATION_TIME.match(event.properties["operationTimestamp"]), event.properties
        assert event.content_type == "application/json"
        assert event.system.get("user-id") == HUB, event.system
        assert event.system.get("correlation-id"), event.system
    by_op = {}
    for event in mine:
        by_op.setdefault(event.properties["opType"], []).append(event)
    assert all(e.system["iothub-message-source"] == "twinChangeEvents" for e in by_op["updateTwin"])
    desired, reported = sorted(by_op["updateTwin"], key=lambda e: "reported" in e.json().get("properties", {}))
    delta = desired.json()
    assert delta["tags"] == {"floor": "3"}, delta
    assert delta["properties"]["desired"]["fan"] == "on"
    assert isinstance(delta["properties"]["desired"]["$version"], int)
    assert "$metadata" in delta["properties"]["desired"]
    assert isinstance(delta["version"], int)
    delta = reported.json()
    assert delta["properties"]["reported"]["rpm"] == 1200, delta
    assert "desired" not in delta["properties"]
    [created] = by_op["createDeviceIdentity"]
    [deleted] = by_op["deleteDeviceIdentity"]
    assert created.system["iothub-message-source"] == "deviceLifecycleEvents"
    assert created.json()["deviceId"] == device.device_id
    assert {"desired", "reported"} <= set(created.json()["properties"])
    assert deleted.json()["tags"] == {"floor": "3"}, "the deleted identity's twin as it was"
    assert deleted.json()["properties"]["reported"]["rpm"] == 1200
    [connected] = by_op["deviceConnected"]
    [disconnected] = by_op["deviceDisconnected"]
    assert connected.system["iothub-message-source"] == "deviceConnectionStateEvents"
    assert re.fullmatch(r"[0-9A-F]{64}", connected.json()["sequenceNumber"])
    assert connected.json()["sequenceNumber"] < disconnected.json()["sequenceNumber"]


# ---- Bad input.


def test_a_condition_that_does_not_parse_is_refused_with_its_position(hub):
    before = routing_api(hub.server, "GET")
    status, answer = hub.server.operator_request("POST", f"/hubs/{HUB}/routing/routes", {
        "name": "broken", "source": "DeviceMessages", "condition": "level = 'critical' AND",
        "endpointNames": ["events"]})
    assert status == 400, (status, answer)
    text = json.dumps(answer)
    assert "broken" in text and re.search(r"line 1, column \d+", text), answer

    status, answer = hub.server.operator_request("PUT", f"/hubs/{HUB}/routing", {
        **before, "routes": [{"name": "broken2", "source": "DeviceMessages", "condition": "temp >> 3",
                              "endpointNames": ["events"]}]})
    assert status == 400, (status, answer)
    assert re.search(r"line 1, column 7", json.dumps(answer)), answer

    done = outpost_cli_failing(hub.server, "route", "create", "--name", "broken3", "--source", "devicemessages",
                               "--condition", "$body.x = ", "--endpoint", "events")
    assert re.search(r"line 1, column \d+", done.stderr + done.stdout), (done.stdout, done.stderr)
    assert routing_api(hub.server, "GET") == before, "a refused change leaves the configuration as it was"
    names = {r["name"] for r in routing_api(hub.server, "GET", "/routes")["value"]}
    assert not names & {"broken", "broken2", "broken3"}


def test_route_test_evaluates_body_and_twin_without_sending(hub):
    """`outpost route test` (az iot hub message-route test): a `$body` condition is false for a
    body that is not declared JSON, true for the same body declared JSON; `$twin` reads the sample
    twin."""
    condition = "$body.temperature > 30"
    args = ["route", "test", "--condition", condition, "--body", '{"temperature": 42}', "--output", "json"]
    as_text = json.loads(outpost_cli(hub.server, *args, "--system-properties", "contentType=text/plain"))
    as_json = json.loads(outpost_cli(hub.server, *args, "--system-properties",
                                     "contentType=application/json;contentEncoding=utf-8"))
    assert (as_text["result"], as_json["result"]) == ("false", "true"), (as_text, as_json)
    twin = json.loads(outpost_cli(hub.server, "route", "test", "--condition", "$twin.tags.site = 'paris'",
                                  "--twin-properties", json.dumps({"tags": {"site": "paris"}}), "--output", "json"))
    assert twin["result"] == "true", twin
