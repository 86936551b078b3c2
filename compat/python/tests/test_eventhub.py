"""The built-in Event Hubs-compatible endpoint with the official Event Hubs SDK (azure-eventhub
5.15.1, its default pure-Python pyamqp transport) over AMQP 1.0 + TLS on port 5671: telemetry sent
by the official device SDK is received with `EventHubConsumerClient.receive`, the `$management`
properties match, a wrong key is refused, and a consumer with a higher `owner_level` (epoch) takes
the partitions from one with a lower one.

pyamqp ignores a port in `Endpoint=sb://host:port/`, so the client is pointed at the listener with
`custom_endpoint_address` and `transport_type=TransportType.Amqp` (without it, it would use
WebSockets); the dev CA is trusted with `connection_verify` (wire reference §7.5).
"""

import base64
import json
import os
import threading
import time

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


def _consumer(hub, connection_string: str) -> EventHubConsumerClient:
    return EventHubConsumerClient.from_connection_string(
        connection_string,
        consumer_group="$Default",
        connection_verify=str(hub.server.ca_path),
        custom_endpoint_address=f"sb://localhost:{AMQP_PORT}",
        transport_type=TransportType.Amqp,
        retry_total=0,
    )


class _Receiving:
    """`consumer.receive(...)` on a thread, collecting the events of one device."""

    def __init__(self, consumer, device_id: str, **kwargs):
        self.consumer = consumer
        self.device_id = device_id.encode()
        self.events = []
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
        if event.system_properties.get(b"iothub-connection-device-id") == self.device_id:
            with self.lock:
                self.events.append((context.partition_id, event))

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
