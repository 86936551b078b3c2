"""The built-in Event Hubs-compatible endpoint with the official Event Hubs SDK (azure-eventhub
5.15.1) over AMQP 1.0 + TLS on port 5671, every test with both of its transports (the default
pure-Python pyamqp, and `uamqp_transport=True` with uamqp 1.6.11): telemetry sent by the official
device SDK is received with `EventHubConsumerClient.receive`, the `$management` properties match,
a wrong key is refused, and a consumer with a higher `owner_level` (epoch) takes the partitions
from one with a lower one. Also: start positions (offset inclusive/exclusive, sequence number,
enqueued time), `track_last_enqueued_event_properties` (the receiver runtime metric), consumer
groups made with `outpost hub consumer-group`, and the IoT Hub connection string sample of azure-eventhub
(`samples/async_samples/iot_hub_connection_string_receive_async.py`: uamqp `ReceiveClient` with
SASL PLAIN on `messages/events/ConsumerGroups/$Default/Partitions/0`, `amqp:link:redirect`, wire
reference §7.7).

pyamqp ignores a port in `Endpoint=sb://host:port/`, so the client is pointed at the listener with
`custom_endpoint_address` and `transport_type=TransportType.Amqp` (without it, it would use
WebSockets); the dev CA is trusted with `connection_verify` (wire reference §7.5).
"""

import base64
import datetime
import json
import os
import re
import threading
import time
from base64 import b64decode, b64encode
from hashlib import sha256
from hmac import HMAC
from urllib.parse import quote_plus, urlencode

import pytest
from azure.eventhub import EventHubConsumerClient, TransportType
from azure.eventhub.exceptions import EventHubError
from azure.iot.device import Message

from device_support import connect, create_sas_device, within

# The harness's AMQP listener (`outpost_harness.AMQP_LISTEN`).
AMQP_PORT = 5671


def _eventhub_connection_string(hub, policy: str = "service") -> str:
    out = hub.server.cli(
        "hub", "connection-string", "--data-dir", str(hub.server.data_dir), "--policy", policy, "--eventhub"
    )
    [line] = [line.strip() for line in out.splitlines() if line.strip()]
    return line


# The transport every consumer of a test uses: each test runs with the default pure-Python pyamqp
# and again with `uamqp_transport=True` (uamqp 1.6.11), the two AMQP stacks azure-eventhub ships.
_TRANSPORT = {"uamqp_transport": False}


@pytest.fixture(autouse=True, params=["pyamqp", "uamqp"])
def transport(request):
    _TRANSPORT["uamqp_transport"] = request.param == "uamqp"
    yield request.param
    _TRANSPORT["uamqp_transport"] = False


def _consumer(hub, connection_string: str, consumer_group: str = "$Default", **kwargs) -> EventHubConsumerClient:
    options = {**_TRANSPORT, **kwargs}
    return EventHubConsumerClient.from_connection_string(
        connection_string,
        consumer_group=consumer_group,
        connection_verify=str(hub.server.ca_path),
        custom_endpoint_address=f"sb://localhost:{AMQP_PORT}",
        transport_type=TransportType.Amqp,
        retry_total=0,
        **options,
    )


class _Receiving:
    """`consumer.receive(...)` on a thread, collecting the events of one device."""

    def __init__(self, consumer, device_id: str, **kwargs):
        self.consumer = consumer
        self.device_id = device_id.encode()
        self.events = []
        self.last_enqueued = []
        self.started = threading.Event()
        self.lock = threading.Lock()
        self.thread = threading.Thread(
            target=consumer.receive,
            kwargs=dict(
                on_event=self._on_event,
                on_partition_initialize=lambda _ctx: self.started.set(),
                max_wait_time=1,
                **kwargs,
            ),
            daemon=True,
        )
        self.thread.start()

    def _on_event(self, context, event):
        if event is None:
            return
        device = event.system_properties.get(b"iothub-connection-device-id")
        # uamqp hands strings over as `str`, pyamqp as `bytes`.
        if device in (self.device_id, self.device_id.decode()):
            with self.lock:
                self.events.append((context.partition_id, event))
                self.last_enqueued.append(context.last_enqueued_event_properties)

    def wait_for(self, count: int, timeout: float = 30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.events) >= count:
                    return list(self.events)
            time.sleep(0.1)
        with self.lock:
            return list(self.events)

    def close(self):
        self.consumer.close()
        self.thread.join(timeout=15)


def _send(client, body: str, n: int):
    message = Message(body, message_id=f"mid-{n}", content_type="application/json", content_encoding="utf-8")
    message.custom_properties = {"kind": "eh-test"}
    within(20, client.send_message, message, what="send_message()")


def test_partition_ids_and_properties(hub):
    consumer = _consumer(hub, _eventhub_connection_string(hub))
    try:
        ids = consumer.get_partition_ids()
        assert ids == ["0", "1", "2", "3"]
        properties = consumer.get_eventhub_properties()
        assert properties["eventhub_name"] == "localhost"
        assert properties["partition_ids"] == ids
        partition = consumer.get_partition_properties("0")
        assert partition["id"] == "0"
        assert partition["eventhub_name"] == "localhost"
        assert isinstance(partition["beginning_sequence_number"], int)
        assert isinstance(partition["is_empty"], bool)
    finally:
        consumer.close()


def test_device_telemetry_is_received_from_the_start_and_from_latest(hub, registry, clients):
    device = create_sas_device(registry, "eh")
    client = clients.device(device.connection_string)
    connect(client)
    for n in range(3):
        _send(client, json.dumps({"n": n}), n)

    receiving = _Receiving(_consumer(hub, _eventhub_connection_string(hub)), device.device_id, starting_position="-1")
    try:
        events = receiving.wait_for(3)
        assert len(events) == 3, f"received {len(events)} of 3 events"
        partitions = {partition for partition, _ in events}
        assert len(partitions) == 1, "a device's events are in one partition"
        assert [json.loads(event.body_as_str()) for _, event in events] == [{"n": n} for n in range(3)]
        sequence_numbers = [event.sequence_number for _, event in events]
        assert sequence_numbers == sorted(sequence_numbers)
        assert len(set(sequence_numbers)) == 3
        for _, event in events:
            assert event.properties[b"kind"] == b"eh-test"
            assert event.system_properties[b"iothub-connection-device-id"] == device.device_id.encode()
            assert event.system_properties[b"iothub-message-source"] == b"Telemetry"
            assert event.enqueued_time is not None
            assert event.offset is not None
        [partition] = partitions
    finally:
        receiving.close()

    consumer = _consumer(hub, _eventhub_connection_string(hub, "iothubowner"))
    try:
        properties = consumer.get_partition_properties(partition)
        assert properties["last_enqueued_sequence_number"] == sequence_numbers[-1]
        assert properties["is_empty"] is False
    finally:
        consumer.close()

    receiving = _Receiving(
        _consumer(hub, _eventhub_connection_string(hub)),
        device.device_id,
        partition_id=partition,
        starting_position="@latest",
    )
    try:
        assert receiving.started.wait(20), "the partition receiver started"
        time.sleep(2)  # let the receiver link attach before sending
        _send(client, json.dumps({"n": "latest"}), 9)
        events = receiving.wait_for(1)
        assert [json.loads(event.body_as_str()) for _, event in events] == [{"n": "latest"}]
        assert events[0][1].sequence_number == sequence_numbers[-1] + 1
    finally:
        receiving.close()


def test_a_wrong_key_is_refused(hub):
    connection_string = _eventhub_connection_string(hub)
    wrong = base64.b64encode(os.urandom(32)).decode()
    parts = [
        f"SharedAccessKey={wrong}" if part.startswith("SharedAccessKey=") else part
        for part in connection_string.split(";")
    ]
    consumer = _consumer(hub, ";".join(parts))
    try:
        with pytest.raises(Exception) as refused:
            consumer.get_partition_ids()
        assert "401" in str(refused.value) or "uthori" in str(refused.value) or "uthenticat" in str(refused.value), repr(
            refused.value
        )
    finally:
        consumer.close()


def test_a_higher_owner_level_takes_the_partition(hub, registry, clients):
    device = create_sas_device(registry, "eh-epoch")
    client = clients.device(device.connection_string)
    connect(client)
    _send(client, json.dumps({"n": "epoch"}), 0)

    first_errors = []
    errors_lock = threading.Lock()

    def on_first_error(context, error):
        with errors_lock:
            first_errors.append(error)

    first = _Receiving(
        _consumer(hub, _eventhub_connection_string(hub)),
        device.device_id,
        starting_position="-1",
        owner_level=1,
        on_error=on_first_error,
    )
    second = None
    try:
        # The first consumer holds the partitions (it receives the event).
        assert len(first.wait_for(1, timeout=20)) == 1, "the epoch 1 consumer received the event"
        second = _Receiving(
            _consumer(hub, _eventhub_connection_string(hub)),
            device.device_id,
            starting_position="-1",
            owner_level=2,
        )
        assert len(second.wait_for(1, timeout=20)) == 1, "the epoch 2 consumer received the event"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with errors_lock:
                if first_errors:
                    break
            time.sleep(0.1)
        with errors_lock:
            errors = list(first_errors)
        assert errors, "the epoch 1 consumer was told its partition was taken"
        assert all(isinstance(error, EventHubError) for error in errors), errors
        assert "epoch" in str(errors[0]), repr(errors[0])
    finally:
        first.close()
        if second is not None:
            second.close()


def _sent_events(hub, registry, clients, prefix: str, count: int):
    """Sends `count` events from a new device, 20 ms apart (distinct enqueued times), and reads them
    back from the start: returns the device, its client, its events in order and their partition."""
    device = create_sas_device(registry, prefix)
    client = clients.device(device.connection_string)
    connect(client)
    for n in range(count):
        _send(client, json.dumps({"n": n}), n)
        time.sleep(0.02)
    receiving = _Receiving(_consumer(hub, _eventhub_connection_string(hub)), device.device_id, starting_position="-1")
    try:
        events = receiving.wait_for(count)
    finally:
        receiving.close()
    assert len(events) == count, f"read back {len(events)} of {count} events"
    [partition] = {partition for partition, _ in events}
    return device, client, [event for _, event in events], partition


def _bodies(received) -> list:
    return [json.loads(event.body_as_str())["n"] for _, event in received]


def test_start_positions_offset_sequence_number_and_enqueued_time(hub, registry, clients):
    device, _, events, partition = _sent_events(hub, registry, clients, "eh-pos", 4)
    second, third = events[1], events[2]
    cases = [
        ("offset inclusive", dict(starting_position=second.offset, starting_position_inclusive=True), [1, 2, 3]),
        ("offset exclusive", dict(starting_position=second.offset), [2, 3]),
        ("sequence number exclusive", dict(starting_position=second.sequence_number), [2, 3]),
        (
            "sequence number inclusive",
            dict(starting_position=second.sequence_number, starting_position_inclusive=True),
            [1, 2, 3],
        ),
        (
            "enqueued time",
            dict(starting_position=third.enqueued_time - datetime.timedelta(milliseconds=5)),
            [2, 3],
        ),
    ]
    for what, position, expected in cases:
        receiving = _Receiving(
            _consumer(hub, _eventhub_connection_string(hub)), device.device_id, partition_id=partition, **position
        )
        try:
            received = receiving.wait_for(len(expected), timeout=15)
            time.sleep(0.5)  # nothing before the expected events comes late
            with receiving.lock:
                received = list(receiving.events)
        finally:
            receiving.close()
        assert _bodies(received) == expected, what


def test_track_last_enqueued_event_properties(hub, registry, clients):
    device, _, events, partition = _sent_events(hub, registry, clients, "eh-metric", 3)
    last = events[-1]
    receiving = _Receiving(
        _consumer(hub, _eventhub_connection_string(hub)),
        device.device_id,
        partition_id=partition,
        starting_position="-1",
        track_last_enqueued_event_properties=True,
    )
    try:
        assert len(receiving.wait_for(3)) == 3
    finally:
        receiving.close()
    assert len(receiving.last_enqueued) == 3
    for properties in receiving.last_enqueued:
        assert properties["sequence_number"] == last.sequence_number
        assert properties["offset"] == last.offset
        assert properties["enqueued_time"] == last.enqueued_time
        retrieval = properties["retrieval_time"]
        assert isinstance(retrieval, datetime.datetime)
        assert abs((datetime.datetime.now(datetime.timezone.utc) - retrieval).total_seconds()) < 60


def test_consumer_groups_from_the_cli(hub, registry, clients):
    data_dir = ["--data-dir", str(hub.server.data_dir)]
    hub.server.cli("hub", "consumer-group", "create", "--name", "py-readers", *data_dir)
    listed = json.loads(hub.server.cli("hub", "consumer-group", "list", "--output", "json", *data_dir))
    assert [group["name"] for group in listed] == ["$Default", "py-readers"]
    device, _, events, partition = _sent_events(hub, registry, clients, "eh-cg", 1)

    receiving = _Receiving(
        _consumer(hub, _eventhub_connection_string(hub), consumer_group="PY-READERS"),
        device.device_id,
        partition_id=partition,
        starting_position="-1",
    )
    try:
        received = receiving.wait_for(1)
    finally:
        receiving.close()
    assert [event.sequence_number for _, event in received] == [events[0].sequence_number]

    errors = []
    receiving = _Receiving(
        _consumer(hub, _eventhub_connection_string(hub), consumer_group="no-such-group"),
        device.device_id,
        partition_id=partition,
        starting_position="-1",
        on_error=lambda _context, error: errors.append(error),
    )
    try:
        deadline = time.monotonic() + 20
        while not errors and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        receiving.close()
    assert receiving.events == []
    assert errors, "a receiver on an unknown consumer group is refused"
    assert "could not be found" in str(errors[0]), repr(errors[0])

    hub.server.cli("hub", "consumer-group", "delete", "--name", "py-readers", *data_dir)
    listed = json.loads(hub.server.cli("hub", "consumer-group", "list", "--output", "json", *data_dir))
    assert [group["name"] for group in listed] == ["$Default"]


def test_uamqp_transport_partition_properties_and_receive(hub, registry, clients, transport):
    if transport != "pyamqp":
        pytest.skip("uses uamqp itself: once is enough")
    device = create_sas_device(registry, "eh-uamqp")
    client = clients.device(device.connection_string)
    connect(client)
    _send(client, json.dumps({"n": "uamqp"}), 0)

    consumer = _consumer(hub, _eventhub_connection_string(hub), uamqp_transport=True)
    try:
        ids = consumer.get_partition_ids()
        assert ids == ["0", "1", "2", "3"]
        properties = consumer.get_eventhub_properties()
        assert properties["eventhub_name"] == "localhost"
        partition = consumer.get_partition_properties("0")
        assert partition["id"] == "0"
        assert isinstance(partition["is_empty"], bool)
    finally:
        consumer.close()

    receiving = _Receiving(
        _consumer(hub, _eventhub_connection_string(hub), uamqp_transport=True),
        device.device_id,
        starting_position="-1",
    )
    try:
        received = receiving.wait_for(1)
    finally:
        receiving.close()
    assert [json.loads(event.body_as_str()) for _, event in received] == [{"n": "uamqp"}]


# ---- The IoT Hub connection string sample of azure-eventhub (samples/async_samples/
# iot_hub_connection_string_receive_async.py), with its code; the only change is the `auth` that
# trusts the dev CA (the sample relies on certifi's bundle).


def generate_sas_token(uri, policy, key, expiry=None):
    if not expiry:
        expiry = time.time() + 3600
    encoded_uri = quote_plus(uri)
    ttl = int(expiry)
    sign_key = "%s\n%d" % (encoded_uri, ttl)
    signature = b64encode(HMAC(b64decode(key), sign_key.encode("utf-8"), sha256).digest())
    result = {"sr": uri, "sig": signature, "se": str(ttl)}
    if policy:
        result["skn"] = policy
    return "SharedAccessSignature " + urlencode(result)


def parse_iot_conn_str(iothub_conn_str):
    hostname = shared_access_key_name = shared_access_key = ""
    for element in iothub_conn_str.split(";"):
        key, _, value = element.partition("=")
        if key.lower() == "hostname":
            hostname = value.rstrip("/")
        elif key.lower() == "sharedaccesskeyname":
            shared_access_key_name = value
        elif key.lower() == "sharedaccesskey":
            shared_access_key = value
    if not all([hostname, shared_access_key_name, shared_access_key]):
        raise ValueError("Invalid connection string")
    return hostname, shared_access_key_name, shared_access_key


def convert_iothub_to_eventhub_conn_str(iothub_conn_str, ca_path, seen):
    from uamqp import ReceiveClient, Source
    from uamqp.authentication import SASLPlain
    from uamqp.errors import LinkRedirect

    hostname, shared_access_key_name, shared_access_key = parse_iot_conn_str(iothub_conn_str)
    iot_hub_name = hostname.split(".")[0]
    operation = "/messages/events/ConsumerGroups/{}/Partitions/{}".format("$Default", 0)
    username = "{}@sas.root.{}".format(shared_access_key_name, iot_hub_name)
    sas_token = generate_sas_token(hostname, shared_access_key_name, shared_access_key)
    uri = "amqps://{}:{}@{}{}".format(quote_plus(username), quote_plus(sas_token), hostname, operation)
    source_uri = Source(uri)
    receive_client = ReceiveClient(source_uri, auth=SASLPlain(hostname, username, sas_token, verify=ca_path))
    try:
        receive_client.receive_message_batch(max_batch_size=1)
    except LinkRedirect as redirect:
        seen["redirect"] = redirect
        receive_client.close()
        fully_qualified_name = redirect.hostname.decode("utf-8")
        if redirect.address:
            iot_hub_name = re.search(r":\d+\/.*/ConsumerGroups", str(redirect.address)).group(0).split("/")[1]
        return "Endpoint=sb://{}/;SharedAccessKeyName={};SharedAccessKey={};EntityPath={}".format(
            fully_qualified_name, shared_access_key_name, shared_access_key, iot_hub_name
        )
    finally:
        receive_client.close()
    raise AssertionError("the hub did not redirect the receiver")


def test_the_iot_hub_connection_string_sample_is_redirected(hub, registry, clients, transport):
    if transport != "pyamqp":
        pytest.skip("uses uamqp itself: once is enough")
    device = create_sas_device(registry, "eh-redirect")
    client = clients.device(device.connection_string)
    connect(client)
    _send(client, json.dumps({"n": "redirected"}), 0)

    seen = {}
    iothub = hub.connection_string("service")
    converted = within(
        30, convert_iothub_to_eventhub_conn_str, iothub, str(hub.server.ca_path), seen, what="the redirect"
    )
    redirect = seen["redirect"]
    assert redirect.hostname == b"localhost"
    assert redirect.address == b"amqps://localhost:5671/localhost/ConsumerGroups/$Default/Partitions/0"
    key = parse_iot_conn_str(iothub)[2]
    assert converted == f"Endpoint=sb://localhost/;SharedAccessKeyName=service;SharedAccessKey={key};EntityPath=localhost"

    # The sample's consumer with the converted string as it is (port 5671 by default).
    consumer = EventHubConsumerClient.from_connection_string(
        converted, consumer_group="$Default", connection_verify=str(hub.server.ca_path), retry_total=0
    )
    receiving = _Receiving(consumer, device.device_id, starting_position="-1")
    try:
        received = receiving.wait_for(1)
    finally:
        receiving.close()
    assert [json.loads(event.body_as_str()) for _, event in received] == [{"n": "redirected"}]
