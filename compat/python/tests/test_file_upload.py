"""File upload with the official device SDK (azure-iot-device 2.14.0, wire reference §4): the
client asks for an upload slot over HTTPS (`get_storage_info_for_blob`), uploads with the Azure
Storage client its samples use (azure-storage-blob `BlobClient.from_blob_url`, Put Blob, and Put
Block + Put Block List for larger files) to Outpost's built-in blob endpoint, and reports the
outcome (`notify_blob_upload_status`). A successful report becomes a file-upload notification
(read here through the operator API; the Node suite receives it over AMQP); a failed one does not.
"""

import urllib.parse

import pytest
from azure.core.exceptions import HttpResponseError
from azure.iot.device.exceptions import ClientError, ServiceError
from azure.storage.blob import BlobClient

from device_support import create_sas_device, wait_until, within

HUB = "localhost"


def file_notifications(server, device_id: str, expect: int = 1, timeout: float = 10.0) -> list[dict]:
    found: list[dict] = []

    def poll() -> bool:
        page = server.operator_get(f"/hubs/{urllib.parse.quote(HUB, safe='')}/file-notifications", {"max": 1000})
        found.extend(n for n in page if n.get("deviceId") == device_id)
        return len(found) >= expect

    wait_until(poll, timeout, interval=0.1)
    return found


def blob_url(info: dict) -> str:
    return f"https://{info['hostName']}/{info['containerName']}/{info['blobName']}{info['sasToken']}"


@pytest.mark.parametrize("size", [1000, 300_000])
def test_upload_with_the_storage_client_and_notify(hub, registry, clients, size):
    device = create_sas_device(registry, "upload")
    client = clients.device(device.connection_string)
    info = within(20, client.get_storage_info_for_blob, "logs/today.bin", what="get_storage_info_for_blob()")
    assert info["hostName"] == "localhost"
    assert info["blobName"] == f"{device.device_id}/logs/today.bin"
    assert info["sasToken"].startswith("?") and "sig=" in info["sasToken"]
    assert info["correlationId"]

    data = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    # The larger file goes up in 64 KiB blocks: Put Block several times, then Put Block List.
    with BlobClient.from_blob_url(
        blob_url(info), connection_verify=str(hub.server.ca_path), max_single_put_size=128 * 1024, max_block_size=64 * 1024
    ) as blob:
        blob.upload_blob(data, overwrite=True)
        properties = blob.get_blob_properties()
        assert properties.size == size
        assert blob.download_blob().readall() == data
        # The slot writes this blob only: overwrite=False on an existing blob is BlobAlreadyExists.
        with pytest.raises(HttpResponseError) as refused:
            blob.upload_blob(b"again", overwrite=False)
        assert refused.value.status_code == 409
        assert refused.value.error_code == "BlobAlreadyExists"

    within(20, client.notify_blob_upload_status, info["correlationId"], True, 201, "uploaded", what="notify")
    [notification] = file_notifications(hub.server, device.device_id)
    assert notification["blobName"] == info["blobName"]
    assert notification["blobSizeInBytes"] == size
    assert notification["blobUri"] == f"https://localhost/{info['containerName']}/{info['blobName']}"


def test_a_failed_upload_is_not_notified_and_a_slot_is_per_device(hub, registry, clients):
    device = create_sas_device(registry, "upload-fail")
    other = create_sas_device(registry, "upload-other")
    client = clients.device(device.connection_string)
    other_client = clients.device(other.connection_string)
    info = within(20, client.get_storage_info_for_blob, "never.txt", what="get_storage_info_for_blob()")
    within(20, client.notify_blob_upload_status, info["correlationId"], False, 500, "disk full", what="notify failure")
    assert file_notifications(hub.server, device.device_id, expect=1, timeout=1.0) == []

    # Another device cannot report this device's upload, and nothing was uploaded to report.
    with pytest.raises((ServiceError, ClientError)):
        within(20, other_client.notify_blob_upload_status, info["correlationId"], True, 201, "ok", what="foreign notify")
    with pytest.raises((ServiceError, ClientError)):
        within(20, client.notify_blob_upload_status, info["correlationId"], True, 201, "ok", what="notify of nothing")

    # The SAS of one device's slot does not reach another device's blob.
    other_info = within(20, other_client.get_storage_info_for_blob, "mine.txt", what="other slot")
    crossed = dict(other_info, blobName=f"{device.device_id}/mine.txt")
    with BlobClient.from_blob_url(blob_url(crossed), connection_verify=str(hub.server.ca_path)) as blob:
        with pytest.raises(HttpResponseError) as refused:
            blob.upload_blob(b"not yours", overwrite=True)
    assert refused.value.status_code == 403
    assert refused.value.error_code == "AuthenticationFailed"
