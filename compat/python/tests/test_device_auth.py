"""Device authentication over MQTT: SAS tokens (device key, module key, a policy with
DeviceConnect via `skn`) as the CONNECT password, and X.509 self-signed thumbprints (client
certificate in TLS, no password). Refusals are CONNACK 5, which the Python SDK raises as
`azure.iot.device.exceptions.CredentialError` (mqtt_transport.py:paho_connack_rc_to_error).
"""

import json
import time

import pytest
from azure.iot.device import Message
from azure.iot.device.exceptions import CredentialError

from device_support import (
    RawMqtt,
    connect,
    create_sas_device,
    create_sas_module,
    device_connection_string,
    device_events,
    device_resource,
    mqtt_username,
    self_signed_cert,
    sign_sas,
    within,
)
from sdk_support import new_id, new_key

X509_AUTH_METHOD = {"scope": "device", "type": "x509Certificate", "issuer": "iothub", "acceptingIpFilterRule": None}


@pytest.fixture
def device(registry):
    return create_sas_device(registry, "auth")


def _send(client, text):
    within(20, client.send_message, Message(text, message_id=text), what=f"send_message({text!r})")


def _refused(client):
    """connect() must fail with CredentialError (CONNACK 4 or 5)."""
    with pytest.raises(CredentialError):
        connect(client)
    assert not client.connected


def _auth_method(hub, device_id, message_id):
    events = [e for e in device_events(hub.server, device_id, expect=1)
              if e["properties"]["system"].get("message-id") == message_id]
    assert events, f"no event {message_id} of {device_id}"
    return json.loads(events[0]["annotations"]["iothub-connection-auth-method"])


# ---- SAS --------------------------------------------------------------------------------------


def test_the_primary_and_the_secondary_key_both_connect(hub, clients, device):
    for key in (device.primary_key, device.secondary_key):
        client = clients.device(device_connection_string(device.device_id, key))
        connect(client)
        _send(client, f"key-{key[:6]}")
        within(20, client.shutdown)
    assert len(device_events(hub.server, device.device_id, expect=2)) == 2


def test_a_wrong_key_raises_credential_error(clients, device):
    _refused(clients.device(device_connection_string(device.device_id, new_key())))


def test_an_unknown_device_raises_credential_error(clients):
    _refused(clients.device(device_connection_string(new_id("auth-nobody"), new_key())))


def test_a_disabled_device_raises_credential_error(registry, clients):
    disabled = create_sas_device(registry, "auth-off", status="disabled")
    _refused(clients.device(disabled.connection_string))


def test_a_device_disabled_after_creation_is_refused_and_enabled_again_connects(registry, clients, device):
    current = registry.get_device(device.device_id)
    registry.update_device_with_sas(device.device_id, current.etag, device.primary_key, device.secondary_key, "disabled")
    _refused(clients.device(device.connection_string))

    current = registry.get_device(device.device_id)
    registry.update_device_with_sas(device.device_id, current.etag, device.primary_key, device.secondary_key, "enabled")
    connect(clients.device(device.connection_string))


def test_an_expired_token_raises_credential_error(clients, device):
    # The SDK refuses a token that is already expired (abstract_clients.py:create_from_sastoken), so
    # the token expires between creating the client and connecting.
    expiry = int(time.time()) + 2
    token = sign_sas(device_resource(device.device_id), device.primary_key, expiry)
    client = clients.device_from_token(token)
    time.sleep(max(0.0, expiry - time.time()) + 1.5)
    _refused(client)


def test_a_valid_hand_signed_token_connects(hub, clients, device):
    """Control for the token tests: the same signing code with a future expiry is accepted."""
    token = sign_sas(device_resource(device.device_id), device.primary_key, int(time.time()) + 600)
    client = clients.device_from_token(token)
    connect(client)
    _send(client, "hand-signed")
    assert _auth_method(hub, device.device_id, "hand-signed")["scope"] == "device"


def test_a_policy_token_with_device_connect_connects_as_the_device(hub, clients, device):
    policy_key = _policy_key(hub, "device")
    token = sign_sas(device_resource(device.device_id), policy_key, int(time.time()) + 600, policy="device")
    client = clients.device_from_token(token)
    connect(client)
    _send(client, "via-policy")
    event = [e for e in device_events(hub.server, device.device_id, expect=1)
             if e["properties"]["system"].get("message-id") == "via-policy"][0]
    assert event["origin"] == device.device_id
    assert json.loads(event["annotations"]["iothub-connection-auth-method"]) == {
        "scope": "hub", "type": "sas", "issuer": "iothub", "acceptingIpFilterRule": None,
    }


def test_a_policy_token_without_device_connect_raises_credential_error(hub, clients, device):
    policy_key = _policy_key(hub, "registryRead")
    token = sign_sas(device_resource(device.device_id), policy_key, int(time.time()) + 600, policy="registryRead")
    _refused(clients.device_from_token(token))


def test_a_module_key_does_not_authenticate_the_device(registry, clients, device):
    module = create_sas_module(registry, device.device_id, "auth-mod")
    _refused(clients.device(device_connection_string(device.device_id, module.primary_key)))
    connect(clients.module(module.connection_string))  # control: it is the module's key


def test_a_module_connection_string_with_a_wrong_key_raises_credential_error(registry, clients, device):
    create_sas_module(registry, device.device_id, "auth-mod2")
    _refused(clients.module(device_connection_string(device.device_id, new_key(), "auth-mod2")))


def _policy_key(hub, policy: str) -> str:
    from outpost_harness import parse_connection_string

    return parse_connection_string(hub.connection_string(policy))["SharedAccessKey"]


def _raw_connect(hub, device_id, password, cert=None):
    raw = RawMqtt(hub.server.ca_path, device_id, mqtt_username(device_id), password, cert=cert)
    try:
        return raw.connect()
    finally:
        raw.close()


def test_raw_a_token_for_another_device_is_refused_with_connack_5(hub, registry, device):
    other = create_sas_device(registry, "auth-other")
    assert _raw_connect(hub, device.device_id, other.token()) == 5
    assert _raw_connect(hub, device.device_id, device.token()) == 0  # control


def test_raw_a_token_for_another_host_name_is_refused_with_connack_5(hub, device):
    token = sign_sas(device_resource(device.device_id, host="other.example"), device.primary_key, int(time.time()) + 600)
    assert _raw_connect(hub, device.device_id, token) == 5


def test_raw_a_client_id_that_differs_from_the_token_device_is_refused(hub, registry, device):
    other = create_sas_device(registry, "auth-cid")
    # CONNECT: client id = other device, username and password = this device
    raw = RawMqtt(hub.server.ca_path, other.device_id, mqtt_username(device.device_id), device.token())
    try:
        rc = raw.connect()
    finally:
        raw.close()
    assert rc in (2, 4, 5), f"CONNECT with client id {other.device_id} and {device.device_id}'s credentials got CONNACK {rc}"


def test_raw_a_connect_without_password_or_certificate_is_refused(hub, device):
    assert _raw_connect(hub, device.device_id, None) in (4, 5)


def test_raw_a_garbage_password_is_refused(hub, device):
    assert _raw_connect(hub, device.device_id, "SharedAccessSignature nonsense") in (4, 5)


# ---- X.509 self-signed thumbprints ------------------------------------------------------------------


def test_x509_sha1_thumbprint_device_connects_and_sends_telemetry(hub, registry, clients, tmp_path):
    device_id = new_id("x509-sha1")
    cert = self_signed_cert(tmp_path, device_id, kind="rsa")
    registry.create_device_with_x509(device_id, cert.sha1, None, "enabled")
    client = clients.device_from_x509(cert, device_id)

    connect(client)
    _send(client, "x509-hello")
    within(20, client.patch_twin_reported_properties, {"auth": "x509"})

    [event] = device_events(hub.server, device_id, expect=1)
    assert event["origin"] == device_id
    assert event["payload"] == "x509-hello"
    assert json.loads(event["annotations"]["iothub-connection-auth-method"]) == X509_AUTH_METHOD
    assert event["annotations"]["iothub-connection-auth-generation-id"] == registry.get_device(device_id).generation_id
    assert registry.get_twin(device_id).properties.reported["auth"] == "x509"


def test_x509_sha256_thumbprint_in_the_secondary_slot_connects(hub, registry, clients, tmp_path):
    device_id = new_id("x509-sha256")
    cert = self_signed_cert(tmp_path, device_id, kind="ec")
    unrelated = self_signed_cert(tmp_path, device_id + "-other", kind="ec")
    registry.create_device_with_x509(device_id, unrelated.sha256, cert.sha256, "enabled")
    client = clients.device_from_x509(cert, device_id)

    connect(client)
    _send(client, "x509-sha256")
    assert isinstance(within(20, client.get_twin)["desired"]["$version"], int)
    assert json.loads(device_events(hub.server, device_id, expect=1)[0]["annotations"]["iothub-connection-auth-method"]) == X509_AUTH_METHOD


def test_x509_a_different_certificate_is_refused(registry, clients, tmp_path):
    device_id = new_id("x509-wrong")
    registered = self_signed_cert(tmp_path, device_id, kind="rsa")
    impostor = self_signed_cert(tmp_path, device_id + "-impostor", kind="rsa")
    registry.create_device_with_x509(device_id, registered.sha1, registered.sha1, "enabled")

    _refused(clients.device_from_x509(impostor, device_id))


def test_x509_a_certificate_for_a_sas_device_is_refused(clients, device, tmp_path):
    cert = self_signed_cert(tmp_path, device.device_id, kind="rsa")
    _refused(clients.device_from_x509(cert, device.device_id))


def test_x509_a_disabled_device_is_refused(registry, clients, tmp_path):
    device_id = new_id("x509-off")
    cert = self_signed_cert(tmp_path, device_id, kind="rsa")
    registry.create_device_with_x509(device_id, cert.sha1, None, "disabled")
    _refused(clients.device_from_x509(cert, device_id))


def test_raw_x509_with_a_registered_certificate_connects_without_password(hub, registry, tmp_path):
    device_id = new_id("x509-raw")
    cert = self_signed_cert(tmp_path, device_id, kind="rsa")
    registry.create_device_with_x509(device_id, cert.sha1, None, "enabled")
    assert _raw_connect(hub, device_id, None, cert=cert) == 0
    other = new_id("x509-raw-other")
    registry.create_device_with_x509(other, self_signed_cert(tmp_path, other).sha1, None, "enabled")
    # the certificate of one device does not authenticate another
    assert _raw_connect(hub, other, None, cert=cert) == 5
