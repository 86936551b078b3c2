"""Helpers for the device-side (MQTT) compatibility tests.

* official device-SDK clients (azure-iot-device 2.14.0) that trust the dev CA, tracked so every
  test shuts its clients down;
* SAS tokens signed by hand exactly as the wire reference §1.1 describes;
* self-signed X.509 device certificates (`cryptography`) and their SHA-1 / SHA-256 thumbprints;
* reading a device's telemetry back through the operator API of the running server;
* a recorder of the MQTT traffic the SDK and paho log (CONNECT, CONNACK, PUBLISH topics, …), shown
  when a test fails;
* cloud-to-device messages sent through the operator API or the CLI, the SDK's
  `on_message_received` inbox, and feedback records read through the operator API;
* `within`: the sync SDK waits forever for an answer the server never sends, so every SDK call
  that needs an answer runs with a deadline.
"""

from __future__ import annotations

import base64
import collections
import datetime
import hashlib
import hmac
import json
import logging
import socket
import threading
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

HOST_NAME = "localhost"
HUB_NAME = "localhost"
# The api-version the Node device SDK sends; raw paho clients use it too.
API_VERSION = "2021-04-12"

# ---- MQTT traffic recorder -------------------------------------------------------------------

MQTT_LOG: collections.deque[str] = collections.deque(maxlen=400)
_RECORDED_LOGGERS = (
    "paho",  # "Sending CONNECT (u1, p1, …) client_id=…", "Received CONNACK (0, 5)", PUBLISH topics
    "azure.iot.device.common.mqtt_transport",
    "azure.iot.device.iothub.pipeline.pipeline_stages_iothub",  # twin error bodies
    "azure.iot.device.iothub.pipeline.pipeline_stages_iothub_mqtt",
    "azure.iot.device.common.pipeline.pipeline_stages_mqtt",
)


class _MqttLogHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        try:
            stamp = time.strftime("%H:%M:%S", time.localtime(record.created)) + f".{int(record.msecs):03d}"
            MQTT_LOG.append(f"{stamp} [{threading.current_thread().name}] {record.name}: {record.getMessage()}")
        except Exception:  # noqa: BLE001 - a log line must never break a test
            pass


def install_mqtt_recorder() -> None:
    """Routes the SDK's and paho's debug logs into MQTT_LOG (and not into pytest's log capture)."""
    handler = _MqttLogHandler(level=logging.DEBUG)
    for name in _RECORDED_LOGGERS:
        logger = logging.getLogger(name)
        if any(isinstance(h, _MqttLogHandler) for h in logger.handlers):
            continue
        logger.setLevel(logging.DEBUG)
        logger.addHandler(handler)
        logger.propagate = False


def note(line: str) -> None:
    """Adds a line of the test's own to the MQTT log (what it sent, what it got)."""
    stamp = time.strftime("%H:%M:%S")
    MQTT_LOG.append(f"{stamp} [test] {line}")


# ---- deadlines -------------------------------------------------------------------------------


def within(seconds: float, fn, *args, what: str | None = None, **kwargs):
    """Runs `fn(*args, **kwargs)` in a daemon thread and returns its result, or fails the test
    when it has not returned after `seconds` (the sync SDK would wait forever)."""
    box: dict = {}

    def run():
        try:
            box["result"] = fn(*args, **kwargs)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=run, name=f"within-{getattr(fn, '__name__', 'call')}", daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        raise AssertionError(
            f"{what or getattr(fn, '__qualname__', fn)} did not complete within {seconds:.0f}s "
            "(the server never answered?)"
        )
    if "error" in box:
        raise box["error"]
    return box.get("result")


def wait_until(predicate, timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


# ---- SAS tokens and connection strings ---------------------------------------------------------


def sign_sas(resource: str, key_b64: str, expiry: int, policy: str | None = None) -> str:
    """Signs a token per wire reference §1.1: sr = URL-encoded resource, string to sign
    `<sr>\\n<se>`, HMAC-SHA256 with the base64-decoded key, sig URL-encoded."""
    sr = urllib.parse.quote(resource, safe="")
    digest = hmac.new(base64.b64decode(key_b64), f"{sr}\n{expiry}".encode(), hashlib.sha256).digest()
    sig = urllib.parse.quote(base64.b64encode(digest).decode(), safe="")
    token = f"SharedAccessSignature sr={sr}&sig={sig}&se={expiry}"
    if policy:
        token += f"&skn={urllib.parse.quote(policy, safe='')}"
    return token


def device_resource(device_id: str, module_id: str | None = None, host: str = HOST_NAME) -> str:
    resource = f"{host}/devices/{device_id}"
    return f"{resource}/modules/{module_id}" if module_id else resource


def device_connection_string(device_id: str, key: str, module_id: str | None = None, host: str = HOST_NAME) -> str:
    cs = f"HostName={host};DeviceId={device_id};SharedAccessKey={key}"
    if module_id:
        cs = f"HostName={host};DeviceId={device_id};ModuleId={module_id};SharedAccessKey={key}"
    return cs


def mqtt_username(device_id: str, module_id: str | None = None, host: str = HOST_NAME) -> str:
    client_id = f"{device_id}/{module_id}" if module_id else device_id
    return f"{host}/{client_id}/?api-version={API_VERSION}"


def sas_auth_method(scope: str = "device") -> dict:
    """The `iothub-connection-auth-method` Azure stamps for a SAS connection."""
    return {"scope": scope, "type": "sas", "issuer": "iothub", "acceptingIpFilterRule": None}


# ---- self-signed device certificates -------------------------------------------------------------


@dataclass
class DeviceCert:
    cert_path: Path
    key_path: Path
    sha1: str  # upper-case hex, no separators (the form the registry stores)
    sha256: str


def self_signed_cert(directory: Path, common_name: str, kind: str = "rsa") -> DeviceCert:
    """Makes a self-signed device certificate (CN = device id) and writes cert + key as PEM."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.x509.oid import NameOID

    if kind == "rsa":
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    else:
        key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    cert_path = directory / f"{common_name}.cert.pem"
    key_path = directory / f"{common_name}.key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    der = cert.public_bytes(serialization.Encoding.DER)
    return DeviceCert(
        cert_path=cert_path,
        key_path=key_path,
        sha1=hashlib.sha1(der).hexdigest().upper(),
        sha256=hashlib.sha256(der).hexdigest().upper(),
    )


# ---- telemetry read back through the operator API ---------------------------------------------


def _matches(event: dict, device_id: str, module_id: str | None) -> bool:
    if event.get("origin") != device_id:
        return False
    if module_id is None:
        return True
    return event.get("module") == module_id


def read_all_events(server, hub: str = HUB_NAME, wait_ms: int = 0) -> list[dict]:
    """Every event of every partition, from the beginning, in log order per partition. Each event
    gets `_partition` added."""
    events = []
    for info in server.partitions(hub):
        partition = info["partition"]
        seq = info.get("beginSequenceNumber") or 0
        while True:
            page = server.read_events(hub, partition, seq, 1000, wait_ms)
            if not page:
                break
            for event in page:
                event["_partition"] = partition
                events.append(event)
            seq = page[-1]["annotations"]["x-opt-sequence-number"] + 1
    return events


def device_events(
    server,
    device_id: str,
    module_id: str | None = None,
    expect: int = 1,
    timeout: float = 10.0,
    hub: str = HUB_NAME,
) -> list[dict]:
    """The events of one device (or one module when `module_id` is given): scans every partition
    from the beginning and keeps polling (waitMs) until at least `expect` are there or `timeout`
    passes. Returns them in log order (partition, then sequence number)."""
    deadline = time.monotonic() + timeout
    next_seq: dict[str, int] = {}
    found: list[dict] = []
    first = True
    while True:
        for info in server.partitions(hub):
            partition = info["partition"]
            seq = next_seq.setdefault(partition, info.get("beginSequenceNumber") or 0)
            while True:
                wait = 0 if first or len(found) >= expect else 100
                page = server.read_events(hub, partition, seq, 1000, wait)
                if not page:
                    break
                for event in page:
                    if _matches(event, device_id, module_id):
                        event["_partition"] = partition
                        found.append(event)
                seq = page[-1]["annotations"]["x-opt-sequence-number"] + 1
                next_seq[partition] = seq
        first = False
        if len(found) >= expect or time.monotonic() >= deadline:
            break
    found.sort(key=lambda e: (int(e["_partition"]), e["annotations"]["x-opt-sequence-number"]))
    return found


# ---- official device SDK clients ------------------------------------------------------------


class Clients:
    """Creates official-SDK device/module clients that trust the hub's dev CA and shuts every one
    of them down at the end of the test (bounded, so a hung client cannot hang the suite)."""

    def __init__(self, ca_pem: str):
        self.ca_pem = ca_pem
        self._made: list = []

    def _track(self, client):
        self._made.append(client)
        return client

    def device(self, connection_string: str, **kwargs):
        from azure.iot.device import IoTHubDeviceClient

        return self._track(IoTHubDeviceClient.create_from_connection_string(
            connection_string, server_verification_cert=self.ca_pem, **kwargs))

    def module(self, connection_string: str, **kwargs):
        from azure.iot.device import IoTHubModuleClient

        return self._track(IoTHubModuleClient.create_from_connection_string(
            connection_string, server_verification_cert=self.ca_pem, **kwargs))

    def device_from_token(self, token: str, **kwargs):
        from azure.iot.device import IoTHubDeviceClient

        return self._track(IoTHubDeviceClient.create_from_sastoken(
            token, server_verification_cert=self.ca_pem, **kwargs))

    def device_from_x509(self, cert: DeviceCert, device_id: str, **kwargs):
        from azure.iot.device import IoTHubDeviceClient, X509

        return self._track(IoTHubDeviceClient.create_from_x509_certificate(
            X509(str(cert.cert_path), str(cert.key_path)),
            hostname=HOST_NAME,
            device_id=device_id,
            server_verification_cert=self.ca_pem,
            **kwargs,
        ))

    def shutdown_all(self) -> None:
        for client in reversed(self._made):
            try:
                within(20, client.shutdown, what="client.shutdown()")
            except Exception as exc:  # noqa: BLE001 - cleanup must go on
                note(f"shutdown of a client failed: {exc!r}")
        self._made.clear()


def connect(client, seconds: float = 20):
    """`client.connect()` with a deadline."""
    return within(seconds, client.connect, what="connect()")


# ---- identities ---------------------------------------------------------------------------------


@dataclass
class SasIdentity:
    """A device (or module) created through the service SDK with keys the test chose."""

    device_id: str
    primary_key: str
    secondary_key: str
    generation_id: str
    module_id: str | None = None

    @property
    def connection_string(self) -> str:
        return device_connection_string(self.device_id, self.primary_key, self.module_id)

    @property
    def client_id(self) -> str:
        return f"{self.device_id}/{self.module_id}" if self.module_id else self.device_id

    def token(self, ttl: int = 3600, key: str | None = None) -> str:
        return sign_sas(device_resource(self.device_id, self.module_id), key or self.primary_key,
                        int(time.time()) + ttl)


def create_sas_device(registry, prefix: str, status: str = "enabled") -> SasIdentity:
    from sdk_support import new_id, new_key

    device_id = new_id(prefix)
    primary, secondary = new_key(), new_key()
    device = registry.create_device_with_sas(device_id, primary, secondary, status)
    return SasIdentity(device_id, primary, secondary, device.generation_id)


def create_sas_module(registry, device_id: str, module_id: str) -> SasIdentity:
    from sdk_support import new_key

    primary, secondary = new_key(), new_key()
    module = registry.create_module_with_sas(device_id, module_id, None, primary, secondary)
    return SasIdentity(device_id, primary, secondary, module.generation_id, module_id)


# ---- raw MQTT (paho 1.6.1, the device SDK's own MQTT library) ---------------------------------


class RawMqtt:
    """A bare paho MQTT 3.1.1 client over TLS to 127.0.0.1:8883 (as host `localhost`), for what the
    SDK cannot express: hand-made topics, session flags, CONNACK codes, load."""

    def __init__(self, ca_path, client_id: str, username: str, password: str | None = None,
                 cert: DeviceCert | None = None, clean_session: bool = True, keepalive: int = 60,
                 max_inflight: int = 20):
        import ssl

        import paho.mqtt.client as mqtt

        self.client_id = client_id
        self.client = mqtt.Client(client_id=client_id, clean_session=clean_session,
                                  protocol=mqtt.MQTTv311, reconnect_on_failure=False)
        context = ssl.create_default_context(cafile=str(ca_path))
        if cert is not None:
            context.load_cert_chain(str(cert.cert_path), str(cert.key_path))
        self.client.tls_set_context(context)
        self.client.username_pw_set(username, password)
        self.client.enable_logger(logging.getLogger("paho"))
        self.client.max_inflight_messages_set(max_inflight)
        self.client.max_queued_messages_set(0)
        self.keepalive = keepalive
        self.connack = threading.Event()
        self.rc: int | None = None
        self.session_present: bool | None = None
        self.disconnected = threading.Event()
        self.messages: "collections.deque[tuple[str, bytes]]" = collections.deque()
        self.received: list = []  # the paho MQTTMessage objects (qos, dup, topic, payload)
        self.drop_before_puback = False
        self.acked: set[int] = set()
        self.granted: dict[int, list[int]] = {}
        self._cond = threading.Condition()
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_publish = self._on_publish
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message

    def _on_connect(self, client, userdata, flags, rc):
        self.rc = rc
        self.session_present = bool(flags.get("session present"))
        note(f"{self.client_id}: CONNACK rc={rc} session_present={self.session_present}")
        self.connack.set()

    def _on_disconnect(self, client, userdata, rc):
        note(f"{self.client_id}: disconnected (paho rc={rc})")
        self.disconnected.set()
        with self._cond:
            self._cond.notify_all()

    def _on_publish(self, client, userdata, mid):
        # Called (for QoS 1) when the PUBACK arrives.
        with self._cond:
            self.acked.add(mid)
            self._cond.notify_all()

    def _on_subscribe(self, client, userdata, mid, granted_qos):
        with self._cond:
            self.granted[mid] = list(granted_qos)
            self._cond.notify_all()

    def _on_message(self, client, userdata, message):
        note(f"{self.client_id}: received PUBLISH q{message.qos} dup={int(message.dup)} {message.topic} "
             f"{message.payload[:300]!r}")
        with self._cond:
            self.messages.append((message.topic, bytes(message.payload)))
            self.received.append(message)
            self._cond.notify_all()
        if self.drop_before_puback:
            # paho 1.6.1 sends the PUBACK of a QoS 1 PUBLISH after this callback returns; cutting
            # the socket here means the server never gets it (a device that lost its link while
            # handling the message).
            note(f"{self.client_id}: cutting the connection before the PUBACK of {message.topic}")
            self.drop_before_puback = False
            try:
                self.client.socket().shutdown(socket.SHUT_RDWR)
            except OSError as exc:
                note(f"{self.client_id}: shutdown failed: {exc!r}")

    def connect(self, timeout: float = 15) -> int | None:
        """Connects and waits for the CONNACK; returns its return code (None: the server closed
        the connection without one)."""
        self.client.connect("localhost", 8883, keepalive=self.keepalive)
        self.client.loop_start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not self.connack.is_set() and not self.disconnected.is_set():
            time.sleep(0.02)
        return self.rc

    def publish(self, topic: str, payload: bytes | str, qos: int = 1, timeout: float = 10) -> bool:
        """Publishes; for QoS 1 waits for the PUBACK. Returns whether it arrived."""
        note(f"{self.client_id}: PUBLISH q{qos} {topic} {payload[:200]!r}")
        info = self.client.publish(topic, payload, qos=qos)
        if qos == 0:
            return True
        with self._cond:
            self._cond.wait_for(lambda: info.mid in self.acked or self.disconnected.is_set(), timeout)
            return info.mid in self.acked

    def subscribe(self, topic: str, qos: int = 1, timeout: float = 10) -> list[int] | None:
        """Subscribes and waits for the SUBACK; returns the granted QoS list."""
        rc, mid = self.client.subscribe(topic, qos)
        with self._cond:
            self._cond.wait_for(lambda: mid in self.granted or self.disconnected.is_set(), timeout)
            return self.granted.get(mid)

    def wait_message(self, predicate, timeout: float = 10) -> tuple[str, bytes] | None:
        """Waits for a received message (topic, payload) matching `predicate`."""
        with self._cond:
            found: list = []

            def check():
                for item in self.messages:
                    if predicate(*item):
                        found.append(item)
                        return True
                return False

            self._cond.wait_for(check, timeout)
            return found[0] if found else None

    def close(self) -> None:
        try:
            self.client.disconnect()
        finally:
            self.client.loop_stop()


# ---- cloud-to-device: sending (operator API, CLI), the SDK's receive handler, feedback ---------
#
# Messages are sent (the SDK's own AMQP sender is tested in test_service_amqp.py)
# through the operator API (`POST /hubs/{hub}/devices/{id}/messages/devicebound`, what `outpost
# device c2d-message send` mirrors from `az iot device c2d-message send`) or through the CLI.

_C2D_FIELDS = {
    "message_id": "messageId",
    "correlation_id": "correlationId",
    "user_id": "userId",
    "content_type": "contentType",
    "content_encoding": "contentEncoding",
    "ack": "ack",
    "expiry_time_utc": "expiryTimeUtc",
    "properties": "properties",
}


def c2d_send_raw(server, device_id: str, data: str | None = None, hub: str = HUB_NAME, **fields):
    """`POST /hubs/{hub}/devices/{id}/messages/devicebound`; returns (status, body)."""
    body: dict = {} if data is None else {"data": data}
    for name, value in fields.items():
        body[_C2D_FIELDS[name]] = value
    path = f"/hubs/{urllib.parse.quote(hub, safe='')}/devices/{urllib.parse.quote(device_id, safe='')}/messages/devicebound"
    status, answer = server.operator_request("POST", path, body)
    note(f"operator POST {path} {json.dumps(body)[:300]} -> {status} {answer!r}")
    return status, answer


def c2d_send(server, device_id: str, data: str, hub: str = HUB_NAME, **fields) -> None:
    """Queues a message through the operator API and checks the 204."""
    status, answer = c2d_send_raw(server, device_id, data, hub, **fields)
    assert status == 204, f"operator API send to {device_id} -> {status} {answer!r}"


def c2d_cli(server, *args: str) -> str:
    """`outpost device c2d-message <args> --data-dir DIR` (the CLI reaches the running server)."""
    out = server.cli("device", "c2d-message", *args, "--data-dir", str(server.data_dir))
    note(f"outpost device c2d-message {' '.join(args)} -> {out.strip()[:300]!r}")
    return out


_PENDING_FEEDBACK: dict[int, list[dict]] = {}


def feedback_records(server, device_id: str, expect: int = 1, timeout: float = 10.0,
                     hub: str = HUB_NAME) -> list[dict]:
    """The feedback records of one device, from the operator API (`GET /hubs/{hub}/feedback`),
    polling until `expect` are there or `timeout` passes. Reading consumes records, so the ones of
    other devices are kept here for the tests that look for them."""
    pending = _PENDING_FEEDBACK.setdefault(id(server), [])
    deadline = time.monotonic() + timeout
    while True:
        page = server.operator_get(f"/hubs/{urllib.parse.quote(hub, safe='')}/feedback", {"max": 1000})
        if page:
            note(f"feedback read: {json.dumps(page)[:600]}")
        pending.extend(page)
        mine = [record for record in pending if record.get("deviceId") == device_id]
        if len(mine) >= expect or time.monotonic() >= deadline:
            break
        time.sleep(0.1)
    for record in mine:
        pending.remove(record)
    return mine


class C2dInbox:
    """Collects what the SDK hands to `on_message_received` (cloud-to-device messages for a device
    client). Setting the handler subscribes to `devices/{id}/messages/devicebound/#` and waits for
    the SUBACK (sync_clients.py:_enable_feature)."""

    def __init__(self, client):
        self.messages: list = []
        self._cond = threading.Condition()
        within(20, setattr, client, "on_message_received", self._on_message,
               what="setting on_message_received")

    def _on_message(self, message):
        note(f"on_message_received: data={message.data!r} message_id={message.message_id!r} "
             f"correlation_id={message.correlation_id!r} content_type={message.content_type!r} "
             f"content_encoding={message.content_encoding!r} ack={message.ack!r} "
             f"expiry_time_utc={message.expiry_time_utc!r} custom_properties={message.custom_properties!r}")
        with self._cond:
            self.messages.append(message)
            self._cond.notify_all()

    def wait(self, count: int, timeout: float = 10.0) -> list:
        """The first `count` messages; fails when fewer arrived within `timeout`."""
        with self._cond:
            self._cond.wait_for(lambda: len(self.messages) >= count, timeout)
            got = list(self.messages)
        assert len(got) >= count, (
            f"on_message_received got {len(got)} message(s) within {timeout:.0f}s, expected {count}: "
            f"{[m.data for m in got]}")
        return got[:count]

    def settle(self, seconds: float) -> list:
        """Everything received after waiting `seconds` more (to check nothing else arrives)."""
        time.sleep(seconds)
        with self._cond:
            return list(self.messages)
