"""Custom event streams and the built-in endpoint under message routing (issue #8), read with the
official Event Hubs SDK (azure-eventhub 5.15.1, pyamqp and `uamqp_transport=True`) over AMQP + TLS
on 5671. Telemetry comes from the official device SDK over MQTT.

The routing configuration is written once with `PUT /hubs/localhost/routing`: a custom event stream
`Alerts` (2 partitions, consumer group `analytics`) takes the messages whose `level` is `critical`
and the one whose `$body.n` is 5; the message with `$body.n` 4 is also routed to the built-in
endpoint `events` by a route of its own; the fallback route takes the rest. Enrichments: `site` on
the built-in endpoint, `hubname = $iothubname` on the stream.

A client holding `Endpoint=sb://localhost/;…;EntityPath=alerts` (any case) reads the stream as an
event hub of its own: its partition ids and properties, earliest and latest positions, a second
consumer group, epochs that never collide with the hub's, the runtime metric, Azure's "could not be
found" for unknown streams, consumer groups and partitions. The built-in endpoint (and the operator
API behind `outpost monitor-events`) serves only the messages routed to `events`, with their
enrichments.
"""

import json
import threading
import time

import pytest
from azure.eventhub import EventHubConsumerClient, TransportType
from azure.iot.device import Message

import device_support
from device_support import connect, create_sas_device, device_events, within

AMQP_PORT = 5671
HUB = "localhost"
STREAM = "Alerts"

ROUTING = {
    "endpoints": [
        {"name": STREAM, "type": "eventStream", "partitionCount": 2, "consumerGroups": ["analytics"]},
    ],
    "routes": [
        {"name": "critical", "source": "DeviceMessages", "condition": "level = 'critical'", "endpointNames": [STREAM]},
        {"name": "five", "source": "DeviceMessages", "condition": "$body.n = 5", "endpointNames": [STREAM]},
        {"name": "copy", "source": "DeviceMessages", "condition": "$body.n = 4", "endpointNames": ["events"]},
    ],
    "fallbackRoute": {"isEnabled": True},
    "enrichments": [
        {"key": "site", "value": "north", "endpointNames": ["events"]},
        {"key": "hubname", "value": "$iothubname", "endpointNames": [STREAM]},
    ],
}
# What each endpoint gets of the messages n = 0..5 (levels: 1 and 4 critical).
STREAM_BODIES = [1, 4, 5]
BUILT_IN_BODIES = [0, 2, 3, 4]

_TRANSPORT = {"uamqp_transport": False}


@pytest.fixture(autouse=True, params=["pyamqp", "uamqp"])
def transport(request):
    _TRANSPORT["uamqp_transport"] = request.param == "uamqp"
    yield request.param
    _TRANSPORT["uamqp_transport"] = False


def _eventhub_connection_string(hub, entity: str | None = None) -> str:
    args = ["hub", "connection-string", "--data-dir", str(hub.server.data_dir), "--policy", "service", "--eventhub"]
    if entity is not None:
        args += ["--stream", entity]
    [line] = [line.strip() for line in hub.server.cli(*args).splitlines() if line.strip()]
    return line


def _with_entity(connection_string: str, entity: str) -> str:
    parts = [part for part in connection_string.split(";") if not part.startswith("EntityPath=")]
    return ";".join([*parts, f"EntityPath={entity}"])


def _consumer(hub, entity: str, consumer_group: str = "$Default", **kwargs) -> EventHubConsumerClient:
    connection_string = _with_entity(_eventhub_connection_string(hub), entity)
    return EventHubConsumerClient.from_connection_string(
        connection_string,
        consumer_group=consumer_group,
        connection_verify=str(hub.server.ca_path),
        custom_endpoint_address=f"sb://localhost:{AMQP_PORT}",
        transport_type=TransportType.Amqp,
        retry_total=0,
        **{**_TRANSPORT, **kwargs},
    )


def _text(value):
    """uamqp hands strings over as `str`, pyamqp as `bytes`."""
    return value.decode() if isinstance(value, bytes) else value


class _Receiving:
    """`consumer.receive(...)` on a thread, collecting one device's events and the errors."""

    def __init__(self, consumer, device_id: str, **kwargs):
        self.consumer = consumer
        self.device_id = device_id
        self.events = []
        self.last_enqueued = []
        self.errors = []
        self.lock = threading.Lock()
        self.thread = threading.Thread(
            target=consumer.receive,
            kwargs=dict(on_event=self._on_event, on_error=self._on_error, max_wait_time=1, **kwargs),
            daemon=True,
        )
        self.thread.start()

    def _on_event(self, context, event):
        if event is None:
            return
        if _text(event.system_properties.get(b"iothub-connection-device-id")) == self.device_id:
            with self.lock:
                self.events.append((context.partition_id, event))
                self.last_enqueued.append(context.last_enqueued_event_properties)

    def _on_error(self, _context, error):
        with self.lock:
            self.errors.append(error)

    def wait_for(self, count: int, timeout: float = 30):
        device_support.wait_until(lambda: len(self.events) >= count, timeout)
        with self.lock:
            return list(self.events)

    def wait_for_error(self, timeout: float = 20):
        device_support.wait_until(lambda: bool(self.errors), timeout)
        with self.lock:
            return list(self.errors)

    def close(self):
        self.consumer.close()
        self.thread.join(timeout=15)


def _send(client, n: int, level: str):
    message = Message(json.dumps({"n": n}), message_id=f"mid-{n}", content_type="application/json", content_encoding="utf-8")
    message.custom_properties = {"level": level}
    within(20, client.send_message, message, what="send_message()")


def _bodies(events) -> list:
    return [json.loads(event.body_as_str())["n"] for _, event in events]


def _properties(event) -> dict:
    return {_text(key): _text(value) for key, value in (event.properties or {}).items()}


@pytest.fixture(scope="module")
def routed(hub, registry):
    """The routing configuration, then six messages of one device; yields the device."""
    status, body = hub.server.operator_request("PUT", f"/hubs/{HUB}/routing", ROUTING)
    assert status == 200, body
    clients = device_support.Clients(hub.ca_pem)
    try:
        device = create_sas_device(registry, "rs")
        client = clients.device(device.connection_string)
        connect(client)
        for n in range(6):
            _send(client, n, "critical" if n in (1, 4) else "info")
        yield device
    finally:
        clients.shutdown_all()


def test_the_stream_is_an_event_hub_with_its_own_partitions(hub, routed):
    consumer = _consumer(hub, "alerts")  # the configured name is `Alerts`: matched case-insensitively
    try:
        assert consumer.get_partition_ids() == ["0", "1"]
        properties = consumer.get_eventhub_properties()
        assert properties["eventhub_name"] == STREAM
        assert properties["partition_ids"] == ["0", "1"]
        for partition in ("0", "1"):
            info = consumer.get_partition_properties(partition)
            assert info["eventhub_name"] == STREAM and info["id"] == partition
            assert isinstance(info["is_empty"], bool)
    finally:
        consumer.close()
    # The built-in endpoint keeps the hub's four.
    consumer = _consumer(hub, HUB)
    try:
        assert consumer.get_partition_ids() == ["0", "1", "2", "3"]
    finally:
        consumer.close()


def test_the_stream_serves_the_routed_messages_with_its_enrichments(hub, routed):
    receiving = _Receiving(_consumer(hub, "ALERTS"), routed.device_id, starting_position="-1")
    try:
        events = receiving.wait_for(len(STREAM_BODIES))
        time.sleep(1)  # nothing else of the device comes late
        with receiving.lock:
            events = list(receiving.events)
    finally:
        receiving.close()
    assert _bodies(events) == STREAM_BODIES
    [partition] = {partition for partition, _ in events}
    for _, event in events:
        properties = _properties(event)
        assert properties["hubname"] == HUB, "the $iothubname enrichment of the stream"
        assert "site" not in properties, "the built-in endpoint's enrichment is not the stream's"
        assert _text(event.system_properties[b"iothub-message-source"]) == "Telemetry"
        assert event.message_id == f"mid-{json.loads(event.body_as_str())['n']}"
    assert _properties(events[0][1])["level"] == "critical"
    # The stream's log numbers its own events: one partition, consecutive sequence numbers.
    sequence_numbers = [event.sequence_number for _, event in events]
    assert sequence_numbers == list(range(sequence_numbers[0], sequence_numbers[0] + 3))

    consumer = _consumer(hub, STREAM)
    try:
        info = consumer.get_partition_properties(partition)
    finally:
        consumer.close()
    assert info["is_empty"] is False
    assert info["beginning_sequence_number"] == 0
    assert info["last_enqueued_sequence_number"] >= sequence_numbers[-1]

    # The operator API reads the stream's log with `endpoint=`.
    read = hub.server.operator_get(
        f"/hubs/{HUB}/events", {"partition": partition, "fromSequenceNumber": 0, "endpoint": "alerts"}
    )
    mine = [event for event in read if event["origin"] == routed.device_id]
    assert [json.loads(event["payload"])["n"] for event in mine] == STREAM_BODIES
    assert mine[0]["properties"]["application"]["hubname"] == HUB


def test_a_second_consumer_group_of_the_stream(hub, routed):
    receiving = _Receiving(_consumer(hub, STREAM, consumer_group="ANALYTICS"), routed.device_id, starting_position="-1")
    try:
        events = receiving.wait_for(len(STREAM_BODIES))
    finally:
        receiving.close()
    assert _bodies(events) == STREAM_BODIES
    assert receiving.errors == []


def test_unknown_streams_consumer_groups_and_partitions_are_not_found(hub, routed, transport):
    if transport != "pyamqp":
        # With uamqp the SDK's own 404 handling fails (AttributeError `_close_handler`) after it
        # logged the server's description.
        pytest.skip("the answers are the server's: pyamqp is enough")
    consumer = _consumer(hub, "no-such-stream")
    try:
        with pytest.raises(Exception) as refused:
            consumer.get_partition_ids()
    finally:
        consumer.close()
    # pyamqp reads the description from `statusDescription`, which Outpost, like Azure, does not
    # send (`status-description`, wire reference §7.3): only the status shows.
    assert "404" in str(refused.value) and "NotFound" in str(refused.value), repr(refused.value)

    receiving = _Receiving(_consumer(hub, STREAM, consumer_group="nope"), routed.device_id, starting_position="-1")
    try:
        errors = receiving.wait_for_error()
    finally:
        receiving.close()
    assert errors, "a receiver on a consumer group the stream does not have is refused"
    assert "could not be found" in str(errors[0]) and "nope" in str(errors[0]), repr(errors[0])

    receiving = _Receiving(_consumer(hub, STREAM), routed.device_id, partition_id="2", starting_position="-1")
    try:
        errors = receiving.wait_for_error()
    finally:
        receiving.close()
    # The client checks the partition against the stream's `$management` answer itself.
    assert errors, "a receiver on partition 2 of a 2-partition stream is refused"
    assert "Wrong partition id:2" in str(errors[0]) and "['0', '1']" in str(errors[0]), repr(errors[0])


def test_latest_and_the_runtime_metric_on_the_stream(hub, registry, routed):
    clients = device_support.Clients(hub.ca_pem)
    device = create_sas_device(registry, "rs-latest")
    receiving = _Receiving(
        _consumer(hub, STREAM), device.device_id, starting_position="@latest", track_last_enqueued_event_properties=True
    )
    try:
        client = clients.device(device.connection_string)
        connect(client)
        time.sleep(3)  # the receivers attach before the send
        _send(client, 0, "info")  # the fallback: not on the stream
        _send(client, 7, "critical")
        events = receiving.wait_for(1)
        time.sleep(1)
        with receiving.lock:
            events, last = list(receiving.events), list(receiving.last_enqueued)
    finally:
        receiving.close()
        clients.shutdown_all()
    assert _bodies(events) == [7]
    [(_, event)] = events
    assert last[0]["sequence_number"] == event.sequence_number
    assert last[0]["offset"] == event.offset


def test_epochs_of_the_stream_and_of_the_hub_do_not_collide(hub, routed, transport):
    if transport != "pyamqp":
        pytest.skip("the epoch registry is the server's: once is enough")
    device = routed.device_id
    stream_first = _Receiving(_consumer(hub, STREAM), device, starting_position="-1", owner_level=5)
    hub_receiver = _Receiving(_consumer(hub, HUB), device, starting_position="-1", owner_level=1)
    stream_second = None
    try:
        assert _bodies(stream_first.wait_for(3)) == STREAM_BODIES
        assert _bodies(hub_receiver.wait_for(4)) == BUILT_IN_BODIES
        # A higher epoch on the stream takes the stream's partitions only.
        stream_second = _Receiving(_consumer(hub, STREAM), device, starting_position="-1", owner_level=6)
        assert _bodies(stream_second.wait_for(3)) == STREAM_BODIES
        errors = stream_first.wait_for_error()
        assert errors and "epoch" in str(errors[0]), errors
        time.sleep(1)
        assert hub_receiver.errors == [], "the hub's epoch receiver keeps its partitions"
    finally:
        stream_first.close()
        hub_receiver.close()
        if stream_second is not None:
            stream_second.close()


def test_the_built_in_endpoint_serves_only_what_is_routed_to_events_with_its_enrichments(hub, routed):
    receiving = _Receiving(_consumer(hub, HUB), routed.device_id, starting_position="-1")
    try:
        events = receiving.wait_for(len(BUILT_IN_BODIES))
        time.sleep(1)
        with receiving.lock:
            events = list(receiving.events)
    finally:
        receiving.close()
    assert _bodies(events) == BUILT_IN_BODIES
    for _, event in events:
        properties = _properties(event)
        assert properties["site"] == "north", "the enrichment of the built-in endpoint"
        assert "hubname" not in properties
    assert _properties(events[-1][1])["level"] == "critical", "n = 4 is routed to both endpoints"

    # The operator API and `outpost monitor-events` show what the built-in endpoint serves.
    read = device_events(hub.server, routed.device_id, expect=len(BUILT_IN_BODIES))
    assert [json.loads(event["payload"])["n"] for event in read] == BUILT_IN_BODIES
    assert all(event["properties"]["application"]["site"] == "north" for event in read)
    monitored = hub.server.monitor_events(device_id=routed.device_id)
    assert [json.loads(event["payload"])["n"] for event in monitored] == BUILT_IN_BODIES
