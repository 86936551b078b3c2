"""The built-in blob endpoint of file uploads (`https://localhost/fileuploads/...`, wire reference
§4) driven directly by the official Azure Storage client (azure-storage-blob 12.31.1): Put Blob,
Put Block + Put Block List, Get Blob (whole and ranged), Get Blob Properties, Delete Blob, List
Blobs, `overwrite=False`, and the service-SAS checks (another blob's SAS, an expired SAS, a
read-only SAS).

SAS tokens come from the operator route `POST /hubs/{hub}/files/sas`, which signs with the same
per-hub key and the same layout as the SAS a device gets from `POST /devices/{id}/files` (a blob
SAS with `sp=rcw`).
"""

import os
import urllib.parse

import pytest
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.storage.blob import BlobClient, ContainerClient

HUB = "localhost"


def mint(hub, **params) -> dict:
    query = urllib.parse.urlencode(params)
    status, body = hub.server.operator_request("POST", f"/hubs/{HUB}/files/sas?{query}")
    assert status == 200, body
    return body


def blob_client(hub, blob: str, permissions: str = "rcw", url_blob: str | None = None, **kwargs) -> BlobClient:
    """A client for `url_blob` (default `blob`) holding a blob SAS for `blob`."""
    sas = mint(hub, blob=blob, permissions=permissions, **({"ttlSeconds": kwargs.pop("ttl")} if "ttl" in kwargs else {}))
    path = urllib.parse.quote(url_blob or blob, safe="/")
    url = f"https://{sas['hostName']}/{sas['containerName']}/{path}{sas['sasToken']}"
    return BlobClient.from_blob_url(url, connection_verify=str(hub.server.ca_path), **kwargs)


def test_small_upload_download_properties_and_delete(hub):
    client = blob_client(hub, "dev1/small file.txt")
    result = client.upload_blob(b"hello from azure-storage-blob", overwrite=True)
    assert result["etag"].startswith('"0x')
    assert result["last_modified"] is not None

    assert client.download_blob().readall() == b"hello from azure-storage-blob"
    properties = client.get_blob_properties()
    assert properties.size == len(b"hello from azure-storage-blob")
    assert properties.blob_type == "BlockBlob"
    assert properties.etag == result["etag"]
    assert properties.content_settings.content_type == "application/octet-stream"

    # Ranged read through the SDK's offset/length.
    assert client.download_blob(offset=6, length=4).readall() == b"from"

    # The upload SAS (rcw) has no delete right; a SAS with d does.
    with pytest.raises(HttpResponseError) as refused:
        client.delete_blob()
    assert refused.value.status_code == 403
    assert refused.value.error_code == "AuthorizationPermissionMismatch"
    deleter = blob_client(hub, "dev1/small file.txt", permissions="rd")
    deleter.delete_blob()
    with pytest.raises(ResourceNotFoundError) as missing:
        deleter.get_blob_properties()
    assert missing.value.status_code == 404


def test_large_upload_in_blocks_and_ranged_download(hub):
    data = os.urandom(300 * 1024 + 17)
    client = blob_client(
        hub,
        "dev1/large.bin",
        # Forces Put Block + Put Block List (the Node device SDK's path too) and ranged GETs.
        max_single_put_size=64 * 1024,
        max_block_size=32 * 1024,
        max_single_get_size=32 * 1024,
        max_chunk_get_size=16 * 1024,
    )
    client.upload_blob(data, overwrite=True, max_concurrency=4)
    assert client.get_blob_properties().size == len(data)
    assert client.download_blob(max_concurrency=3).readall() == data


def test_overwrite_false_conflicts(hub):
    client = blob_client(hub, "dev1/once.txt")
    client.upload_blob(b"first", overwrite=False)
    with pytest.raises(ResourceExistsError) as conflict:
        client.upload_blob(b"second", overwrite=False)
    assert conflict.value.error_code == "BlobAlreadyExists"
    assert client.download_blob().readall() == b"first"


def test_empty_blob_downloads(hub):
    client = blob_client(hub, "dev1/empty.txt")
    client.upload_blob(b"", overwrite=True)
    # The SDK's first ranged GET gets 416 InvalidRange, then it reads the whole (empty) blob.
    assert client.download_blob().readall() == b""


def test_another_blobs_sas_is_refused(hub):
    client = blob_client(hub, "dev1/mine.txt", url_blob="dev2/mine.txt")
    with pytest.raises(ClientAuthenticationError) as refused:
        client.upload_blob(b"not yours", overwrite=True)
    assert refused.value.status_code == 403
    assert refused.value.error_code == "AuthenticationFailed"


def test_expired_sas_is_refused(hub):
    client = blob_client(hub, "dev1/late.txt", ttl=-60)
    with pytest.raises(ClientAuthenticationError) as refused:
        client.upload_blob(b"too late", overwrite=True)
    assert refused.value.error_code == "AuthenticationFailed"


def test_read_only_sas_cannot_write(hub):
    client = blob_client(hub, "dev1/readonly.txt", permissions="r")
    with pytest.raises(HttpResponseError) as refused:
        client.upload_blob(b"nope", overwrite=True)
    assert refused.value.status_code == 403
    assert refused.value.error_code == "AuthorizationPermissionMismatch"


def test_container_sas_lists_blobs(hub):
    for name in ("dev9/a.txt", "dev9/b.txt", "dev10/c.txt"):
        blob_client(hub, name).upload_blob(name.encode(), overwrite=True)
    sas = mint(hub, permissions="rl")
    container = ContainerClient(
        f"https://{sas['hostName']}",
        sas["containerName"],
        credential=sas["sasToken"].lstrip("?"),
        connection_verify=str(hub.server.ca_path),
    )
    names = [blob.name for blob in container.list_blobs(name_starts_with="dev9/")]
    assert names == ["dev9/a.txt", "dev9/b.txt"]
    # Paged: one result per page, following NextMarker.
    pages = container.list_blobs(name_starts_with="dev9/", results_per_page=1).by_page()
    assert [[blob.name for blob in page] for page in pages] == [["dev9/a.txt"], ["dev9/b.txt"]]
    first = next(iter(container.list_blobs(name_starts_with="dev10/")))
    assert (first.name, first.size, first.blob_type) == ("dev10/c.txt", len(b"dev10/c.txt"), "BlockBlob")
