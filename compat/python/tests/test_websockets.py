"""MQTT and AMQP over WebSockets on the HTTPS listener (443): the official device SDK with
`websockets=True` (azure-iot-device 2.14.0: MQTT over `wss://localhost:443/$iothub/websocket`,
subprotocol `mqtt`, wire reference §2.1) sends telemetry, reads and patches its twin, answers a
direct method and receives a cloud-to-device message; the official Event Hubs SDK with
`transport_type=TransportType.AmqpOverWebsocket` (azure-eventhub 5.15.1: AMQP over
`wss://localhost:443/$servicebus/websocket`, subprotocol `AMQPWSB10`, §7.5) reads the partition ids
and receives the device's event. Both reach the same MQTT and AMQP doors as the TCP listeners.
"""

import json
import queue
import threading
import ssl
import socket
import base64
import os

from azure.eventhub import EventHubConsumerClient, TransportType
from azure.iot.device import Message, MethodResponse
from azure.iot.hub.models import CloudToDeviceMethod

from device_support import c2d_send, connect, create_sas_device, device_events, self_signed_cert, within
from sdk_support import new_id


def test_a_device_over_mqtt_websockets(hub, registry, clients):
    device = create_sas_device(registry, "ws-mqtt")
    client = clients.device(device.connection_string, websockets=True)
    connect(client)
    within(20, client.send_message, Message("over websockets", message_id="ws-1"), what="send_message()")
    [event] = device_events(hub.server, device.device_id, expect=1)
    assert event["payload"] == "over websockets"
    assert event["properties"]["system"]["message-id"] == "ws-1"

    within(20, client.patch_twin_reported_properties, {"transport": "wss"}, what="patch reported")
    twin = within(20, client.get_twin, what="get_twin()")
    assert twin["reported"]["transport"] == "wss"

    requests = queue.Queue()

    def on_method(request):
        requests.put(request.name)
        client.send_method_response(MethodResponse.create_from_method_request(request, 200, {"ok": True}))

    within(20, setattr, client, "on_method_request_received", on_method, what="method handler")
    result = registry.invoke_device_method(
        device.device_id,
        CloudToDeviceMethod(method_name="ping", payload=None, response_timeout_in_seconds=10),
    )
    assert (result.status, result.payload) == (200, {"ok": True})
    assert requests.get(timeout=5) == "ping"

    received = queue.Queue()
    within(20, setattr, client, "on_message_received", received.put, what="c2d handler")
    c2d_send(hub.server, device.device_id, "to the websocket", message_id="ws-c2d")
    message = received.get(timeout=15)
    assert message.data == b"to the websocket"
    assert message.message_id == "ws-c2d"


def test_an_event_hubs_consumer_over_amqp_websockets(hub, registry, clients):
    device = create_sas_device(registry, "ws-eh")
    client = clients.device(device.connection_string)
    connect(client)
    within(20, client.send_message, Message("read over wss"), what="send_message()")

    out = hub.server.cli(
        "hub", "connection-string", "--data-dir", str(hub.server.data_dir), "--policy", "service", "--eventhub"
    )
    consumer = EventHubConsumerClient.from_connection_string(
        out.strip(),
        consumer_group="$Default",
        connection_verify=str(hub.server.ca_path),
        transport_type=TransportType.AmqpOverWebsocket,
        retry_total=0,
    )
    found = threading.Event()
    bodies = []

    def on_event(_context, event):
        if event is not None and event.system_properties.get(b"iothub-connection-device-id") == device.device_id.encode():
            bodies.append(event.body_as_str())
            found.set()

    thread = threading.Thread(
        target=consumer.receive,
        kwargs=dict(on_event=on_event, starting_position="-1", max_wait_time=1),
        daemon=True,
    )
    try:
        assert consumer.get_partition_ids() == ["0", "1", "2", "3"]
        thread.start()
        assert found.wait(30), "the device's event arrives over AMQP on WebSockets"
        assert bodies == ["read over wss"]
    finally:
        consumer.close()
        if thread.is_alive():
            thread.join(timeout=15)


def test_an_upgrade_with_another_subprotocol_is_refused(hub):
    """A WebSocket upgrade naming a subprotocol the path does not serve gets 400, not a socket."""
    context = ssl.create_default_context(cafile=str(hub.server.ca_path))
    with socket.create_connection(("127.0.0.1", 443), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            key = base64.b64encode(os.urandom(16)).decode()
            tls.sendall(
                (
                    "GET /$servicebus/websocket HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
                    f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                    "Sec-WebSocket-Protocol: mqtt\r\n\r\n"
                ).encode()
            )
            answer = tls.recv(4096).decode(errors="replace")
    assert answer.startswith("HTTP/1.1 400"), answer
    assert "AMQPWSB10" in answer


def test_an_x509_device_over_mqtt_websockets_and_its_https_file_upload_slot(hub, registry, clients, tmp_path):
    """The TLS client certificate of the 443 connection authenticates an X.509 device over the
    WebSocket (as on 8883) and on the HTTPS device API (here: asking for a file-upload slot)."""
    device_id = new_id("ws-x509")
    cert = self_signed_cert(tmp_path, device_id, kind="ec")
    registry.create_device_with_x509(device_id, cert.sha256, None, "enabled")
    client = clients.device_from_x509(cert, device_id, websockets=True)
    connect(client)
    within(20, client.send_message, Message("x509 over wss"), what="send_message()")
    [event] = device_events(hub.server, device_id, expect=1)
    assert event["payload"] == "x509 over wss"
    assert json.loads(event["annotations"]["iothub-connection-auth-method"])["type"] == "x509Certificate"

    info = within(20, client.get_storage_info_for_blob, "cert.txt", what="get_storage_info_for_blob()")
    assert info["blobName"] == f"{device_id}/cert.txt"
