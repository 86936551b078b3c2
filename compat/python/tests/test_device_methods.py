"""Direct methods: the official service SDK (`IoTHubRegistryManager.invoke_device_method` /
`invoke_device_module_method`, REST) calling a device or module connected with the official
device SDK (azure-iot-device 2.14.0, MQTT).

Wire (reference §2.7, §5.2): the service POSTs `/twins/{id}/methods` (or
`/twins/{id}/modules/{mid}/methods`) with `{"methodName","payload","responseTimeoutInSeconds",
"connectTimeoutInSeconds"}`; the hub publishes `$iothub/methods/POST/{name}/?$rid=…` to the device
(subscribed to `$iothub/methods/POST/#`), the device answers on `$iothub/methods/res/{status}/?$rid=…`
with a JSON body, and the REST call returns 200 `{"status": <device status>, "payload": <device
payload>}`. A device that is not connected (and subscribed) within connectTimeoutInSeconds → 404
`DeviceNotOnline`; no answer within responseTimeoutInSeconds → 504 `GatewayTimeout`.

The Python service SDK replaces a `None` request payload with `""` (iothub_registry_manager.py:
invoke_device_method), so a null payload is only tested in the response direction.
"""

import json
import queue
import threading
import time

import pytest
from azure.iot.device import MethodResponse
from azure.iot.hub.models import CloudToDeviceMethod
from msrest.exceptions import HttpOperationError

from device_support import (
    RawMqtt,
    connect,
    create_sas_device,
    create_sas_module,
    mqtt_username,
    note,
    within,
)
from sdk_support import describe, status_of


@pytest.fixture
def device(registry):
    return create_sas_device(registry, "meth")


def _method(name, payload=None, response_timeout=10, connect_timeout=0) -> CloudToDeviceMethod:
    return CloudToDeviceMethod(method_name=name, payload=payload, response_timeout_in_seconds=response_timeout,
                               connect_timeout_in_seconds=connect_timeout)


class MethodHandler:
    """An `on_method_request_received` handler that records each request and answers it through
    `send_method_response(MethodResponse.create_from_method_request(…))` with what
    `answer(request)` returns: `(status, payload)`, or None to never answer."""

    def __init__(self, client, answer):
        self.client = client
        self.answer = answer
        self.requests: queue.Queue = queue.Queue()
        self.errors: list = []
        # Setting the handler subscribes to `$iothub/methods/POST/#` and waits for the SUBACK
        # (sync_clients.py:_enable_feature).
        within(20, setattr, client, "on_method_request_received", self._on_request,
               what="setting on_method_request_received")

    def _on_request(self, request):
        note(f"method handler got name={request.name!r} payload={request.payload!r} rid={request.request_id!r}")
        self.requests.put(request)
        reply = self.answer(request)
        if reply is None:
            return
        status, payload = reply
        try:
            self.client.send_method_response(MethodResponse.create_from_method_request(request, status, payload))
        except Exception as exc:  # noqa: BLE001 - reported by the test
            note(f"send_method_response failed: {exc!r}")
            self.errors.append(exc)

    def next_request(self, timeout: float = 5):
        try:
            return self.requests.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"the device's method handler got no request within {timeout}s") from None


def _echo(request):
    """Answers with status and payload taken from the request: {"status": s, "reply": p}."""
    return request.payload["status"], request.payload["reply"]


def describe_result(result) -> str:
    return f"status={result.status!r} payload={result.payload!r}"


def _error_code(exc) -> str:
    """The Azure error code of an error response (`{"Message":"ErrorCode:<Code>;…"}`)."""
    body = json.loads(exc.response.text)
    return body["Message"].split(";", 1)[0].removeprefix("ErrorCode:")


def test_a_method_call_returns_the_device_status_and_payload(registry, clients, device):
    client = clients.device(device.connection_string)
    connect(client)
    handler = MethodHandler(client, _echo)

    # JSON of every kind in the response, and device statuses that are not HTTP's own
    cases = [
        (200, {"rebooted": True, "in": {"seconds": 5, "list": [1, "two", None]}}),
        (201, [1, 2, {"three": 3}]),
        (200, "a plain string"),
        (204, None),
        (404, {"error": "no such relay"}),
        (500, 42),
    ]
    for i, (status, reply) in enumerate(cases):
        request_payload = {"status": status, "reply": reply, "n": i}
        result = registry.invoke_device_method(device.device_id, _method(f"run-{i}", request_payload))

        request = handler.next_request()
        assert request.name == f"run-{i}"
        assert request.payload == request_payload
        assert (result.status, result.payload) == (status, reply), f"case {i}: {describe_result(result)}"
    assert handler.errors == []


def test_the_device_receives_string_and_array_request_payloads_and_an_empty_one(registry, clients, device):
    client = clients.device(device.connection_string)
    connect(client)
    handler = MethodHandler(client, lambda request: (200, {"got": request.payload}))

    for payload in ["just text", [1, "a", {"b": None}], 3.5, None]:
        result = registry.invoke_device_method(device.device_id, _method("echo", payload))
        request = handler.next_request()
        # the SDK sends a None payload as "" (invoke_device_method)
        expected = "" if payload is None else payload
        assert request.payload == expected
        assert (result.status, result.payload) == (200, {"got": expected})


def test_a_call_without_timeouts_uses_the_defaults(registry, clients, device):
    """`CloudToDeviceMethod(method_name=…, payload=…)` alone: msrest leaves both timeouts out of the
    body, so the hub applies its defaults (Azure: 30 s response, 0 s connect)."""
    client = clients.device(device.connection_string)
    connect(client)
    MethodHandler(client, lambda request: (200, {"defaults": request.payload}))

    result = registry.invoke_device_method(device.device_id, CloudToDeviceMethod(method_name="plain", payload={"a": 1}))

    assert (result.status, result.payload) == (200, {"defaults": {"a": 1}})


def test_a_module_method_reaches_the_module_and_not_the_device(registry, clients, device):
    module = create_sas_module(registry, device.device_id, "meth-mod")
    device_client = clients.device(device.connection_string)
    connect(device_client)
    device_handler = MethodHandler(device_client, lambda request: (200, "from the device"))
    module_client = clients.module(module.connection_string)
    connect(module_client)
    module_handler = MethodHandler(module_client, lambda request: (200, {"module": request.payload}))

    result = registry.invoke_device_module_method(device.device_id, "meth-mod", _method("calibrate", {"gain": 3}))

    assert (result.status, result.payload) == (200, {"module": {"gain": 3}})
    assert module_handler.next_request().name == "calibrate"
    assert device_handler.requests.empty(), "the device's handler got the module's method call"

    # and the device's own method does not reach the module
    result = registry.invoke_device_method(device.device_id, _method("whoami", {}))
    assert (result.status, result.payload) == (200, "from the device")
    assert module_handler.requests.empty(), "the module's handler got the device's method call"


def test_a_device_that_never_connected_is_not_online(registry, device):
    started = time.monotonic()
    with pytest.raises(HttpOperationError) as caught:
        registry.invoke_device_method(device.device_id, _method("reboot", {}, connect_timeout=0))
    note(f"offline invoke answered after {time.monotonic() - started:.1f}s")

    assert status_of(caught.value) == 404, describe(caught.value)
    assert _error_code(caught.value) == "DeviceNotOnline", describe(caught.value)


def test_a_disconnected_device_and_a_device_without_a_method_subscription_are_not_online(registry, clients, device):
    client = clients.device(device.connection_string)
    connect(client)
    # connected, but no on_method_request_received: not subscribed to $iothub/methods/POST/#
    with pytest.raises(HttpOperationError) as caught:
        registry.invoke_device_method(device.device_id, _method("reboot", {}, connect_timeout=0))
    assert status_of(caught.value) == 404, describe(caught.value)
    assert _error_code(caught.value) == "DeviceNotOnline", describe(caught.value)

    MethodHandler(client, lambda request: (200, None))
    assert registry.invoke_device_method(device.device_id, _method("ping", {})).status == 200
    within(20, client.disconnect, what="disconnect()")

    with pytest.raises(HttpOperationError) as caught:
        registry.invoke_device_method(device.device_id, _method("ping", {}, connect_timeout=0))
    assert status_of(caught.value) == 404, describe(caught.value)
    assert _error_code(caught.value) == "DeviceNotOnline", describe(caught.value)


def test_an_unknown_device_or_module_is_not_found(registry, device):
    with pytest.raises(HttpOperationError) as caught:
        registry.invoke_device_method("no-such-device-meth", _method("reboot", {}))
    assert status_of(caught.value) == 404, describe(caught.value)
    assert _error_code(caught.value) == "DeviceNotFound", describe(caught.value)

    with pytest.raises(HttpOperationError) as caught:
        registry.invoke_device_module_method(device.device_id, "no-such-module", _method("reboot", {}))
    assert status_of(caught.value) == 404, describe(caught.value)
    assert _error_code(caught.value) in ("ModuleNotFound", "DeviceNotFound"), describe(caught.value)


def test_a_device_that_never_answers_times_out_with_504_and_a_late_answer_is_dropped(registry, clients, device):
    client = clients.device(device.connection_string)
    connect(client)

    def answer(request):
        if request.name == "hang":
            return None  # answered below, after the service gave up
        return 200, {"fresh": request.payload}

    handler = MethodHandler(client, answer)
    started = time.monotonic()
    with pytest.raises(HttpOperationError) as caught:
        registry.invoke_device_method(device.device_id, _method("hang", {"x": 1}, response_timeout=5))
    elapsed = time.monotonic() - started
    note(f"504 after {elapsed:.1f}s")

    assert status_of(caught.value) == 504, describe(caught.value)
    assert _error_code(caught.value) == "GatewayTimeout", describe(caught.value)
    request = handler.next_request(timeout=1)
    assert request.name == "hang", "the request never reached the device"
    assert 4.5 <= elapsed < 12, f"responseTimeoutInSeconds=5 but the call ended after {elapsed:.1f}s"

    # the device answers the expired request; the hub must drop it without harm
    within(20, client.send_method_response, MethodResponse.create_from_method_request(request, 200, "late"),
           what="send_method_response(late)")
    result = registry.invoke_device_method(device.device_id, _method("fast", 7))
    assert (result.status, result.payload) == (200, {"fresh": 7})
    assert client.connected


def test_a_call_made_before_the_device_connects_waits_for_it(registry, clients, device):
    box: dict = {}

    def invoke():
        started = time.monotonic()
        try:
            box["result"] = registry.invoke_device_method(
                device.device_id, _method("wake", {"at": "connect"}, response_timeout=10, connect_timeout=10))
        except Exception as exc:  # noqa: BLE001 - checked below
            box["error"] = exc
        box["elapsed"] = time.monotonic() - started

    caller = threading.Thread(target=invoke, name="invoke-before-connect", daemon=True)
    caller.start()
    time.sleep(1.5)
    client = clients.device(device.connection_string)
    connect(client)
    MethodHandler(client, lambda request: (200, {"woke": request.payload}))
    caller.join(25)

    assert not caller.is_alive(), "invoke_device_method did not return"
    assert "error" not in box, describe(box.get("error"))
    assert (box["result"].status, box["result"].payload) == (200, {"woke": {"at": "connect"}})
    assert box["elapsed"] >= 1.4, f"answered after {box['elapsed']:.1f}s, before the device connected?"


def test_a_call_whose_device_does_not_connect_in_time_is_not_online(registry, device):
    started = time.monotonic()
    with pytest.raises(HttpOperationError) as caught:
        registry.invoke_device_method(device.device_id, _method("wake", {}, connect_timeout=2))
    elapsed = time.monotonic() - started

    assert status_of(caught.value) == 404, describe(caught.value)
    assert _error_code(caught.value) == "DeviceNotOnline", describe(caught.value)
    assert 1.5 <= elapsed < 10, f"connectTimeoutInSeconds=2 but the call ended after {elapsed:.1f}s"


def test_the_method_request_over_raw_mqtt_matches_the_wire_reference(hub, registry, device):
    """The exact topics (§2.7) as both SDKs parse them: method name = segment 3, `?` right after
    the `/`, a URL-safe `$rid`; the answer on `$iothub/methods/res/{status}/?$rid=…`."""
    raw = RawMqtt(hub.server.ca_path, device.device_id, mqtt_username(device.device_id), device.token())
    box: dict = {}
    try:
        assert raw.connect() == 0
        assert raw.subscribe("$iothub/methods/POST/#", qos=0) is not None

        def invoke():
            try:
                box["result"] = registry.invoke_device_method(device.device_id, _method("set.mode-1", {"mode": "eco"}))
            except Exception as exc:  # noqa: BLE001
                box["error"] = exc

        caller = threading.Thread(target=invoke, daemon=True)
        caller.start()
        got = raw.wait_message(lambda topic, payload: topic.startswith("$iothub/methods/POST/"), 10)
        assert got is not None, "no method request published to the device"
        topic, payload = got
        prefix = "$iothub/methods/POST/set.mode-1/?$rid="
        assert topic.startswith(prefix), topic
        rid = topic[len(prefix):]
        assert rid and all(c.isalnum() or c in "-_.~" for c in rid), f"$rid {rid!r} is not URL-safe"
        assert json.loads(payload) == {"mode": "eco"}

        assert raw.publish(f"$iothub/methods/res/299/?$rid={rid}", b'{"ok":true}', qos=0)
        caller.join(15)
        assert "error" not in box, describe(box.get("error"))
        assert (box["result"].status, box["result"].payload) == (299, {"ok": True})
    finally:
        raw.close()

