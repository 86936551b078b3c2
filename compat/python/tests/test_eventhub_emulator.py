"""The plain AMQP listener with the official Event Hubs SDK (azure-eventhub 5.15.1, pyamqp): a
connection string with `UseDevelopmentEmulator=true` makes the client connect over plain TCP to
port 5672 of the endpoint's host (wire reference §7.5), which the harness serves with
`--amqp-plain-listen 127.0.0.1:5672`. The client is given no CA and no custom endpoint: it reads
the partition ids and receives a device's telemetry over plain AMQP, exactly as over TLS.
"""

import threading

from azure.eventhub import EventHubConsumerClient
from azure.iot.device import Message

from device_support import connect, create_sas_device, within


def _emulator_connection_string(hub) -> str:
    out = hub.server.cli(
        "hub", "connection-string", "--data-dir", str(hub.server.data_dir), "--policy", "service", "--eventhub"
    )
    [line] = [line.strip() for line in out.splitlines() if line.strip()]
    return line.rstrip(";") + ";UseDevelopmentEmulator=true"


def test_a_development_emulator_client_reads_over_plain_amqp(hub, registry, clients):
    device = create_sas_device(registry, "eh-plain")
    client = clients.device(device.connection_string)
    connect(client)
    within(20, client.send_message, Message("over plain amqp", message_id="plain-1"), what="send_message()")

    consumer = EventHubConsumerClient.from_connection_string(
        _emulator_connection_string(hub), consumer_group="$Default", retry_total=0
    )
    received = []
    found = threading.Event()

    def on_event(_context, event):
        if event is not None and event.system_properties.get(b"iothub-connection-device-id") == device.device_id.encode():
            received.append(event)
            found.set()

    thread = threading.Thread(
        target=consumer.receive,
        kwargs=dict(on_event=on_event, starting_position="-1", max_wait_time=1),
        daemon=True,
    )
    try:
        assert consumer.get_partition_ids() == ["0", "1", "2", "3"]
        thread.start()
        assert found.wait(30), "the device's event arrives over the plain listener"
        [event] = received
        assert event.body_as_str() == "over plain amqp"
        assert event.message_id == "plain-1"
    finally:
        consumer.close()
        thread.join(timeout=15)
