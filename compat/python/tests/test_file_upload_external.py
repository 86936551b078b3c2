"""File upload to an external Azure-compatible store (issue #6, `[file_upload.external]`): the hub
hands out upload slots on a real Azurite (npm `azurite`, pinned in compat/node/package.json, blob
service only, HTTPS) instead of its built-in endpoint. With the official device SDK
(azure-iot-device 2.14.0) the device asks for a slot (`get_storage_info_for_blob`), uploads with
the Azure Storage client its samples use (azure-storage-blob `BlobClient.from_blob_url`: Put Blob,
and Put Block + Put Block List for a larger file) straight to Azurite, and reports the outcome
(`notify_blob_upload_status`); the notification is read back through the operator API.

Azurite verifies the service SAS Outpost signed with the account key, so these tests prove the
signature is Azure's (string to sign, canonical resource, encodings) and scoped to the one blob.
The hub does not read the external store, so the notification's size is 0 (file_upload.rs).
"""

from __future__ import annotations

import datetime
import ipaddress
import shutil
import socket
import subprocess
import time
import urllib.parse
from pathlib import Path

import pytest
from azure.core.exceptions import HttpResponseError
from azure.storage.blob import BlobClient, BlobServiceClient
from azure.storage.blob._shared_access_signature import BlobSharedAccessSignature

from conftest import running_hub
from device_support import create_sas_device, wait_until, within
from outpost_harness import REPO_ROOT

HUB = "localhost"
# Azurite's well-known development account (public, documented by Microsoft).
ACCOUNT = "devstoreaccount1"
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
CONTAINER = "device-uploads"
AZURITE_BIN = REPO_ROOT / "compat" / "node" / "node_modules" / ".bin" / "azurite-blob"
AZURITE_READY_S = 30.0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _tls_cert_for_loopback(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (IP SAN; devices use https://{hostName}/...), valid
    as its own trust anchor. Returns (cert, key) PEM paths."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "azurite 127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(digital_signature=True, key_cert_sign=True, content_commitment=False,
                          key_encipherment=False, data_encipherment=False, key_agreement=False,
                          crl_sign=False, encipher_only=False, decipher_only=False),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                       critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / "azurite.cert.pem", directory / "azurite.key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


class Azurite:
    """A running `azurite-blob` over HTTPS on 127.0.0.1 with the development account."""

    def __init__(self, port: int, cert_path: Path, log_path: Path):
        self.port = port
        self.cert_path = cert_path
        self.log_path = log_path

    @property
    def endpoint(self) -> str:
        """`host:port/account`, what Outpost puts after `https://` in upload slots."""
        return f"127.0.0.1:{self.port}/{ACCOUNT}"

    def service(self) -> BlobServiceClient:
        """A client authenticated with the account key (Shared Key), independent of Outpost."""
        return BlobServiceClient(
            f"https://{self.endpoint}",
            credential={"account_name": ACCOUNT, "account_key": ACCOUNT_KEY},
            connection_verify=str(self.cert_path),
        )

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "<no log>"


@pytest.fixture(scope="module")
def azurite(tmp_path_factory):
    if not AZURITE_BIN.exists() or shutil.which("node") is None:
        pytest.fail(f"{AZURITE_BIN} not found: run `npm ci` in compat/node (compat/run does it before the "
                    "Python suite)")
    root = tmp_path_factory.mktemp("azurite")
    cert_path, key_path = _tls_cert_for_loopback(root / "tls")
    (root / "data").mkdir()
    port = _free_port()
    log_path = root / "azurite.log"
    cmd = [str(AZURITE_BIN), "--blobHost", "127.0.0.1", "--blobPort", str(port),
           "--location", str(root / "data"), "--skipApiVersionCheck", "--loose", "--disableTelemetry",
           "--cert", str(cert_path), "--key", str(key_path), "--debug", str(root / "azurite-debug.log")]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   start_new_session=True)
    running = Azurite(port, cert_path, log_path)
    try:
        deadline = time.monotonic() + AZURITE_READY_S
        while "successfully listens" not in running.log_tail():
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"azurite-blob did not start (exit {process.poll()}):\n{running.log_tail()}")
            time.sleep(0.05)
        with running.service() as service:
            service.create_container(CONTAINER)
        yield running
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@pytest.fixture(scope="module")
def hub(tmp_path_factory, azurite):
    """Overrides conftest's hub: the same server, configured to hand out slots on Azurite."""
    config = (
        "[file_upload.external]\n"
        f'endpoint = "{azurite.endpoint}"\n'
        f'account = "{ACCOUNT}"\n'
        f'key = "{ACCOUNT_KEY}"\n'
        f'container = "{CONTAINER}"\n'
    )
    with running_hub(tmp_path_factory.mktemp("outpost-external") / "data", config_text=config) as running:
        yield running


def file_notifications(server, device_id: str, expect: int = 1, timeout: float = 10.0) -> list[dict]:
    """Takes the hub's pending file notifications (the operator API hands each out once) until
    `expect` of `device_id` arrived."""
    found: list[dict] = []

    def poll() -> bool:
        page = server.operator_get(f"/hubs/{urllib.parse.quote(HUB, safe='')}/file-notifications", {"max": 1000})
        found.extend(n for n in page if n.get("deviceId") == device_id)
        return len(found) >= expect

    wait_until(poll, timeout, interval=0.1)
    return found


def assert_signature_refused(error: HttpResponseError, what: str) -> None:
    """Azurite's answer to a SAS whose signature does not verify: 403 with the message Azure gives
    for AuthenticationFailed, but the code AuthorizationFailure (Azurite 3.35.0,
    AuthenticationMiddlewareFactory: no authenticator passed). Permission or resource-type
    mismatches would carry other codes (AuthorizationPermissionMismatch, ...)."""
    assert error.status_code == 403, what
    assert error.error_code == "AuthorizationFailure", what
    assert "Server failed to authenticate the request" in str(error), what


def blob_url(info: dict) -> str:
    # What the SDK's own upload sample builds from the slot.
    return f"https://{info['hostName']}/{info['containerName']}/{info['blobName']}{info['sasToken']}"


@pytest.mark.parametrize(
    "name,size",
    [("reports/day 1.json", 1000), ("logs/today.bin", 300_000), ("bilder/grüße+été (1).txt", 10)],
    ids=["put-blob", "blocks", "non-ascii-name"],
)
def test_upload_to_azurite_and_notify(hub, registry, clients, azurite, name, size):
    device = create_sas_device(registry, "ext-upload")
    client = clients.device(device.connection_string)
    info = within(20, client.get_storage_info_for_blob, name, what="get_storage_info_for_blob()")
    assert info["hostName"] == azurite.endpoint
    assert info["containerName"] == CONTAINER
    assert info["blobName"] == f"{device.device_id}/{name}"
    assert info["correlationId"]
    sas = urllib.parse.parse_qs(info["sasToken"].removeprefix("?"), strict_parsing=True)
    assert info["sasToken"].startswith("?")
    assert sas["sr"] == ["b"] and sas["sp"] == ["rcw"] and sas["sig"]

    # The signature is the one Azure's own SDK computes for the same fields with the account key
    # (its signer class, because the public generate_blob_sas always signs with the SDK's newest
    # `sv`, whose string to sign has more fields than Outpost's 2020-12-06).
    reference = BlobSharedAccessSignature(ACCOUNT, ACCOUNT_KEY)
    reference.x_ms_version = sas["sv"][0]
    expected = urllib.parse.parse_qs(
        reference.generate_blob(CONTAINER, info["blobName"], permission="rcw", expiry=sas["se"][0]))
    assert sas["sig"] == expected["sig"]

    data = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    # The larger file goes up in 64 KiB blocks: Put Block several times, then Put Block List.
    with BlobClient.from_blob_url(
        blob_url(info), connection_verify=str(azurite.cert_path),
        max_single_put_size=128 * 1024, max_block_size=64 * 1024,
    ) as blob:
        blob.upload_blob(data, overwrite=True)
        # sp=rcw: the device may read its own upload back with the same slot.
        assert blob.download_blob().readall() == data

    # Azurite holds it under the decoded name, checked with the account key (not Outpost's SAS).
    with azurite.service() as service:
        stored = service.get_blob_client(CONTAINER, info["blobName"])
        assert stored.download_blob().readall() == data
        committed, _ = stored.get_block_list("committed")
        assert len(committed) == (0 if size <= 128 * 1024 else -(-size // (64 * 1024)))

    within(20, client.notify_blob_upload_status, info["correlationId"], True, 201, "ok", what="notify")
    [notification] = file_notifications(hub.server, device.device_id)
    assert notification["blobName"] == info["blobName"]
    assert notification["blobUri"] == (
        f"https://{azurite.endpoint}/{CONTAINER}/{urllib.parse.quote(info['blobName'])}"
    )
    # The hub does not read the external store, so it cannot know the size.
    assert notification["blobSizeInBytes"] == 0


def test_the_slot_sas_is_scoped_to_its_blob(hub, registry, clients, azurite):
    device = create_sas_device(registry, "ext-scope")
    client = clients.device(device.connection_string)
    info = within(20, client.get_storage_info_for_blob, "mine.txt", what="get_storage_info_for_blob()")

    with BlobClient.from_blob_url(blob_url(info), connection_verify=str(azurite.cert_path)) as blob:
        blob.upload_blob(b"granted", overwrite=True)

    # The same signature on another blob name (same device prefix, and another device's) is refused
    # by Azurite: the canonical resource in the signed string names the one blob.
    for other in (f"{device.device_id}/other.txt", f"someone-else/{info['blobName']}"):
        crossed = dict(info, blobName=other)
        with BlobClient.from_blob_url(blob_url(crossed), connection_verify=str(azurite.cert_path)) as blob:
            with pytest.raises(HttpResponseError) as refused:
                blob.upload_blob(b"not granted", overwrite=True)
        assert_signature_refused(refused.value, other)

    # A forged signature on the granted blob is refused too.
    forged = dict(info, sasToken=info["sasToken"].replace("sig=", "sig=AAAA", 1))
    with BlobClient.from_blob_url(blob_url(forged), connection_verify=str(azurite.cert_path)) as blob:
        with pytest.raises(HttpResponseError) as refused:
            blob.upload_blob(b"forged", overwrite=True)
    assert_signature_refused(refused.value, "forged")

    with azurite.service() as service:
        names = {b.name for b in service.get_container_client(CONTAINER).list_blobs()}
    assert info["blobName"] in names
    assert f"{device.device_id}/other.txt" not in names
