"""Message routing into a container of the hub's built-in blob endpoint (issue #8), read the way an
Azure user reads a routing storage container: the official Azure Storage client
(azure-storage-blob) with a container SAS, `ContainerClient.from_container_url(
"https://<hub host>/<container>?<SAS>")`, then `list_blobs()` and `download_blob()`.

A storage endpoint with `containerName` (JSON encoding, one-second batches) is configured through
the operator API (`PUT /hubs/{hub}/routing`), telemetry is sent with the official device SDK
(azure-iot-device), the SAS comes from `POST /hubs/{hub}/files/sas?container=<name>`, and the
downloaded files are decoded with `routing_storage_files`. Also checked: ranged downloads and
paged listings, that routed containers refuse uploads and accept deletes with a `d` SAS, that a
SAS of one container does not open another, that `fileuploads` does not list routed files, and
that an unknown container is `404 ContainerNotFound`.
"""

import json
import re
import urllib.parse

import pytest
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ResourceNotFoundError
from azure.iot.device import Message
from azure.storage.blob import ContainerClient

from device_support import Clients, connect, create_sas_device, wait_until, within
from routing_storage_files import body_bytes, decode_routed_file

HUB = "localhost"
CONTAINER = "telemetry-archive"
# Azure's default file name format, `{iothub}/{partition}/{YYYY}/{MM}/{DD}/{HH}/{mm}`, with
# Outpost's `-<sequence number>` suffix when two batches share a minute.
FILE_NAME = re.compile(rf"^{HUB}/\d+/\d{{4}}/\d{{2}}/\d{{2}}/\d{{2}}/\d{{2}}(-\d+)?$")


def operator(hub, method: str, path: str, body=None, expect=200):
    status, answer = hub.server.operator_request(method, path, body)
    assert status == expect, f"{method} {path} -> {status} {answer!r}"
    return answer


def mint(hub, **params) -> dict:
    """A SAS from `POST /hubs/{hub}/files/sas`."""
    return operator(hub, "POST", f"/hubs/{HUB}/files/sas?{urllib.parse.urlencode(params)}")


def container_client(hub, url: str) -> ContainerClient:
    return ContainerClient.from_container_url(url, connection_verify=str(hub.server.ca_path))


def read_all(container: ContainerClient) -> dict[str, list[dict]]:
    """Every routed file of the container, decoded, by blob name."""
    return {blob.name: decode_routed_file(container.download_blob(blob.name).readall())
            for blob in container.list_blobs()}


@pytest.fixture(scope="module")
def routed(hub, registry):
    """Routes telemetry with `archive = 'yes'` to the container; sends six messages from one
    device; returns (device id, messages sent by id) once every one is in a routed file."""
    operator(hub, "PUT", f"/hubs/{HUB}/routing", {
        "endpoints": [
            {"name": "archive", "type": "storage", "containerName": CONTAINER,
             "encoding": "json", "batchFrequencyInSeconds": 1},
        ],
        "routes": [
            {"name": "to-archive", "source": "DeviceMessages", "condition": "archive = 'yes'",
             "endpointNames": ["archive"], "isEnabled": True},
        ],
        "fallbackRoute": {"isEnabled": True},
    })
    clients = Clients(hub.ca_pem)
    try:
        device = create_sas_device(registry, "blobroute")
        client = clients.device(device.connection_string)
        connect(client)
        sent = {}
        for n in range(5):
            body = {"reading": n, "unit": "C"}
            message = Message(json.dumps(body), message_id=f"m{n}", content_type="application/json",
                              content_encoding="utf-8")
            message.custom_properties = {"archive": "yes", "n": str(n)}
            within(20, client.send_message, message, what=f"send m{n}")
            sent[f"m{n}"] = json.dumps(body, separators=(",", ":")).encode()
        binary = Message(bytes([0, 1, 2, 250, 255]), message_id="m-binary")
        binary.custom_properties = {"archive": "yes"}
        within(20, client.send_message, binary, what="send m-binary")
        sent["m-binary"] = bytes([0, 1, 2, 250, 255])
        # Not routed to the archive: only the fallback route takes it.
        other = Message("elsewhere", message_id="m-elsewhere")
        within(20, client.send_message, other, what="send m-elsewhere")
    finally:
        clients.shutdown_all()

    reader = container_client(hub, mint(hub, container=CONTAINER)["url"])
    found: dict = {}

    def complete():
        found.clear()
        found.update(read_all(reader))
        ids = {r["SystemProperties"].get("messageId") for records in found.values() for r in records}
        return set(sent) <= ids

    assert wait_until(complete, 30, interval=0.5), f"routed files: {found}"
    return device.device_id, sent


def test_routed_files_are_listed_and_downloaded_with_a_container_sas(hub, routed):
    device_id, sent = routed
    sas = mint(hub, container=CONTAINER)
    assert sas["containerName"] == CONTAINER
    assert sas["url"] == f"https://{hub.host_name}/{CONTAINER}{sas['sasToken']}"
    container = container_client(hub, sas["url"])
    container.get_container_properties()

    blobs = list(container.list_blobs())
    assert blobs, "no routed file"
    for blob in blobs:
        assert FILE_NAME.match(blob.name), blob.name
        assert blob.size > 0
    records = [record for records in read_all(container).values() for record in records]
    by_id = {record["SystemProperties"]["messageId"]: record for record in records}
    assert set(by_id) == set(sent), sorted(by_id)  # m-elsewhere went to the fallback only
    for message_id, body in sent.items():
        record = by_id[message_id]
        assert list(record)[:4] == ["EnqueuedTimeUtc", "Properties", "SystemProperties", "Body"]
        assert record["SystemProperties"]["connectionDeviceId"] == device_id
        assert record["Properties"]["archive"] == "yes"
        assert body_bytes(record) == body, message_id
    # JSON bodies are embedded as JSON, the binary one is base64 (Azure's JSON encoding).
    assert by_id["m3"]["Body"] == {"reading": 3, "unit": "C"}
    assert isinstance(by_id["m-binary"]["Body"], str)

    # Paged listing (the SDK follows NextMarker) and a prefix give the same names.
    paged = [blob.name for page in container.list_blobs(results_per_page=1).by_page() for blob in page]
    assert paged == [blob.name for blob in blobs]
    assert [b.name for b in container.list_blobs(name_starts_with=f"{HUB}/")] == paged
    assert list(container.list_blobs(name_starts_with="nothing/")) == []

    # Ranged download and properties of one file.
    first = blobs[0].name
    whole = container.download_blob(first).readall()
    assert container.download_blob(first, offset=3, length=10).readall() == whole[3:13]
    assert container.get_blob_client(first).get_blob_properties().size == len(whole)


def test_routed_containers_refuse_writes_and_delete_with_a_d_sas(hub, routed):
    reader = container_client(hub, mint(hub, container=CONTAINER)["url"])
    with pytest.raises(HttpResponseError) as refused:
        reader.upload_blob("forged.json", b"{}")
    assert (refused.value.status_code, refused.value.error_code) == (403, "AuthorizationPermissionMismatch")
    # Even a SAS with write rights is not minted for a routed container.
    status, answer = hub.server.operator_request(
        "POST", f"/hubs/{HUB}/files/sas?container={CONTAINER}&permissions=rwl")
    assert status == 400, answer

    names = [blob.name for blob in reader.list_blobs()]
    deleter = container_client(hub, mint(hub, container=CONTAINER, permissions="rdl")["url"])
    deleter.delete_blob(names[-1])
    assert [blob.name for blob in reader.list_blobs()] == names[:-1]
    with pytest.raises(ResourceNotFoundError) as gone:
        reader.download_blob(names[-1]).readall()
    assert gone.value.error_code == "BlobNotFound"


def test_containers_are_kept_apart(hub, routed):
    archive = mint(hub, container=CONTAINER)
    uploads = mint(hub, permissions="rl")
    # `fileuploads` lists no routed file (they live in the same store under a reserved prefix).
    upload_names = [blob.name for blob in container_client(hub, uploads["url"]).list_blobs()]
    assert not [name for name in upload_names if name.startswith("~")], upload_names
    # A SAS signs its container: the archive's SAS does not open `fileuploads`, nor the reverse.
    with pytest.raises(ClientAuthenticationError) as crossed:
        list(container_client(hub, f"https://{hub.host_name}/fileuploads{archive['sasToken']}").list_blobs())
    assert crossed.value.error_code == "AuthenticationFailed"
    with pytest.raises(ClientAuthenticationError):
        list(container_client(hub, f"https://{hub.host_name}/{CONTAINER}{uploads['sasToken']}").list_blobs())
    # A container no storage endpoint names does not exist.
    with pytest.raises(ResourceNotFoundError) as missing:
        list(container_client(hub, f"https://{hub.host_name}/no-such-container{archive['sasToken']}").list_blobs())
    assert missing.value.error_code == "ContainerNotFound"
    status, answer = hub.server.operator_request("POST", f"/hubs/{HUB}/files/sas?container=no-such-container")
    assert status == 400, answer
