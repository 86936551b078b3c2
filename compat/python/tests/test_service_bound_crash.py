"""Feedback records and file-upload notifications are durable: once the hub has acknowledged what
produced them (the 204 of the device's HTTPS complete of a cloud-to-device message; the 204 of
`notify_blob_upload_status`), a `kill -9` of the server loses none of them, and the restarted
server hands them to the back end (here the operator API; the AMQP receivers read the same
queues).
"""

import http.client
import ssl
import time
import urllib.parse

from azure.storage.blob import BlobClient

from device_support import Clients, c2d_send, create_sas_device, device_resource, sign_sas, wait_until, within
from outpost_harness import OutpostServer, ca_bundle
from sdk_support import registry_for

HUB = "localhost"
API = "api-version=2021-04-12"


def _device_request(server, device, method: str, path: str) -> http.client.HTTPResponse:
    token = sign_sas(device_resource(device.device_id), device.primary_key, int(time.time()) + 3600)
    context = ssl.create_default_context(cafile=str(server.ca_path))
    connection = http.client.HTTPSConnection("localhost", 443, context=context, timeout=20)
    connection.request(method, path, headers={"Authorization": token})
    response = connection.getresponse()
    response.read()
    connection.close()
    return response


def _take(server, path: str, device_id: str, expect: int, timeout: float) -> list[dict]:
    found: list[dict] = []

    def poll() -> bool:
        page = server.operator_get(f"/hubs/{urllib.parse.quote(HUB, safe='')}/{path}", {"max": 1000})
        found.extend(record for record in page if record.get("deviceId") == device_id)
        return len(found) >= expect

    wait_until(poll, timeout, interval=0.1)
    return found


def test_feedback_and_file_notifications_survive_kill_9(tmp_path):
    server = OutpostServer(tmp_path / "data")
    server.start()
    clients = None
    try:
        with ca_bundle(server.ca_path):
            registry = registry_for(server.connection_string())
            clients = Clients(server.ca_path.read_text())
            device = create_sas_device(registry, "durable-sb")
            client = clients.device(device.connection_string)

            # A cloud-to-device message asking for positive feedback, completed over HTTPS: the
            # 204 of the DELETE comes once the feedback record is stored.
            c2d_send(server, device.device_id, "ack me", message_id="durable-1", ack="positive")
            devicebound = f"/devices/{device.device_id}/messages/devicebound"
            locked = _device_request(server, device, "GET", f"{devicebound}?{API}")
            assert locked.status == 200, locked.status
            lock = locked.getheader("ETag").strip('"')
            completed = _device_request(server, device, "DELETE", f"{devicebound}/{urllib.parse.quote(lock, safe='')}?{API}")
            assert completed.status == 204, completed.status

            # A file upload and its notification (204 = acknowledged).
            info = within(20, client.get_storage_info_for_blob, "before-crash.txt", what="storage info")
            url = f"https://{info['hostName']}/{info['containerName']}/{info['blobName']}{info['sasToken']}"
            with BlobClient.from_blob_url(url, connection_verify=str(server.ca_path)) as blob:
                blob.upload_blob(b"kept", overwrite=True)
            within(20, client.notify_blob_upload_status, info["correlationId"], True, 201, "ok", what="notify")

            clients.shutdown_all()
            exit_code = server.crash()
            assert exit_code is not None and exit_code < 0, f"not killed: {exit_code}"

            server.start()
            [feedback] = _take(server, "feedback", device.device_id, 1, 10)
            assert (feedback["originalMessageId"], feedback["statusCode"]) == ("durable-1", "Success")
            [notification] = _take(server, "file-notifications", device.device_id, 1, 10)
            assert notification["blobName"] == info["blobName"]
            assert notification["blobSizeInBytes"] == 4
            # Taken by the operator API means completed: nothing comes back after another restart.
            server.stop()
            server.start()
            assert _take(server, "feedback", device.device_id, 1, 1) == []
            assert _take(server, "file-notifications", device.device_id, 1, 1) == []
    finally:
        if clients is not None:
            clients.shutdown_all()
        server.stop()

