// Direct methods: the Node service `Client.invokeDeviceMethod` (azure-iothub 1.16.6, REST:
// device_method.js POSTs /twins/{id}[/modules/{mid}]/methods) calling a device or module
// connected with the Node device SDK (azure-iot-device 1.18.4 over azure-iot-device-mqtt 1.16.4:
// `client.onDeviceMethod` / `moduleClient.onMethod`, which subscribe to `$iothub/methods/POST/#`
// with QoS 0 and answer on `$iothub/methods/res/{status}/?$rid=…` with QoS 0).
//
// The device SDK subscribes asynchronously and tells nobody when the SUBACK is in, so the calls
// that expect an answer pass connectTimeoutInSeconds: the hub waits for the device to be
// connected and subscribed. The SDK's HTTP timeout is (responseTimeout + connectTimeout) s
// (device_method.js:invokeOn), so a test of the hub's 504 needs a connect timeout as well.
'use strict';

const { test, after } = require('node:test');
const assert = require('node:assert/strict');
const {
  closeAll, createSasDevice, createSasModule, deviceClient, errors, moduleClient, registry, serviceClient, within,
} = require('./helpers');

const reg = registry();
const service = serviceClient();
after(closeAll);

function invoke(deviceId, params, moduleId) {
  const call = moduleId ? service.invokeDeviceMethod(deviceId, moduleId, params) : service.invokeDeviceMethod(deviceId, params);
  return within(40000, call, `invokeDeviceMethod(${params.methodName})`);
}

function errorCode(err) {
  try {
    return JSON.parse(err.responseBody).Message.split(';')[0].replace(/^ErrorCode:/, '');
  } catch {
    return undefined;
  }
}

function describeError(err) {
  return `${err && err.name}: ${err && err.message} (HTTP ${err && err.response && err.response.statusCode}, body ${err && err.responseBody})`;
}

// Records requests and answers with `answer(request)` → [status, payload], or never (undefined).
function methodHandler(client, name, answer, register = 'onDeviceMethod') {
  const requests = [];
  client[register](name, (request, response) => {
    requests.push({ methodName: request.methodName, payload: request.payload, requestId: request.requestId });
    const reply = answer(request);
    if (reply !== undefined) response.send(reply[0], reply[1]).catch((err) => requests.push({ sendError: err }));
  });
  return requests;
}

test('onDeviceMethod answers invokeDeviceMethod with its status and payload', async () => {
  const device = await createSasDevice(reg, 'node-meth');
  const client = deviceClient(device.cs);
  await within(20000, client.open(), 'open()');
  const requests = methodHandler(client, 'configure', (request) => [request.payload.status, request.payload.reply]);

  const cases = [
    [200, { rebooted: true, nested: { list: [1, 'two', null] } }],
    [201, [1, 2, { three: 3 }]],
    [200, 'a plain string'],
    [204, null],
    [404, { error: 'no such relay' }],
  ];
  for (const [i, [status, reply]] of cases.entries()) {
    const payload = { status, reply, n: i };
    // the first call waits for the subscription; the others use the SDK's defaults
    // (responseTimeoutInSeconds 30, connectTimeoutInSeconds 0: device_method.js)
    const params = i === 0
      ? { methodName: 'configure', payload, responseTimeoutInSeconds: 10, connectTimeoutInSeconds: 5 }
      : { methodName: 'configure', payload };
    const { result } = await invoke(device.deviceId, params);
    assert.deepEqual(requests[i].payload, payload, `case ${i}: the device got another payload`);
    assert.deepEqual({ status: result.status, payload: result.payload }, { status, payload: reply }, `case ${i}`);
  }
  assert.equal(requests.filter((r) => r.sendError).length, 0, 'response.send failed');
});

test('string, array and null request payloads reach the handler', async () => {
  const device = await createSasDevice(reg, 'node-meth-pl');
  const client = deviceClient(device.cs);
  await within(20000, client.open(), 'open()');
  const requests = methodHandler(client, 'echo', (request) => [200, { got: request.payload === undefined ? 'nothing' : request.payload }]);

  for (const payload of ['just text', [1, 'a', { b: null }], null]) {
    const { result } = await invoke(device.deviceId, {
      methodName: 'echo', payload, responseTimeoutInSeconds: 10, connectTimeoutInSeconds: 5,
    });
    // DeviceMethodRequest JSON.parses a non-empty body; the SDK sends `null` for a missing payload
    const seen = requests[requests.length - 1].payload;
    assert.deepEqual(seen === undefined ? null : seen, payload);
    assert.equal(result.status, 200);
    assert.deepEqual(result.payload, { got: seen === undefined ? 'nothing' : seen });
  }
});

test("ModuleClient.onMethod answers a module method, the device's handler does not see it", async () => {
  const device = await createSasDevice(reg, 'node-meth-mod');
  const module = await createSasModule(reg, device.deviceId, 'node-meth-m');
  const dev = deviceClient(device.cs);
  await within(20000, dev.open(), 'open() device');
  const deviceRequests = methodHandler(dev, 'calibrate', () => [200, 'device']);
  const mod = moduleClient(module.cs);
  await within(20000, mod.open(), 'open() module');
  const moduleRequests = methodHandler(mod, 'calibrate', (request) => [200, { module: request.payload }], 'onMethod');

  const { result } = await invoke(device.deviceId, {
    methodName: 'calibrate', payload: { gain: 3 }, responseTimeoutInSeconds: 10, connectTimeoutInSeconds: 5,
  }, 'node-meth-m');

  assert.deepEqual({ status: result.status, payload: result.payload }, { status: 200, payload: { module: { gain: 3 } } });
  assert.equal(moduleRequests.length, 1);
  assert.equal(deviceRequests.length, 0, "the device's handler got the module's call");

  const { result: own } = await invoke(device.deviceId, {
    methodName: 'calibrate', payload: {}, responseTimeoutInSeconds: 10, connectTimeoutInSeconds: 5,
  });
  assert.equal(own.payload, 'device');
  assert.equal(moduleRequests.length, 1, "the module's handler got the device's call");
});

test('a device that is not connected: 404 DeviceNotOnline (a plain Error, not retried)', async () => {
  const device = await createSasDevice(reg, 'node-meth-off');
  const started = Date.now();

  await assert.rejects(invoke(device.deviceId, { methodName: 'reboot', payload: {}, responseTimeoutInSeconds: 5 }), (err) => {
    // rest_api_client.js:translateError: a 404 whose code is not DeviceNotFound/IotHubNotFound is `Error('Not found')`
    assert.ok(!(err instanceof errors.DeviceNotFoundError), `expected DeviceNotOnline, got ${describeError(err)}`);
    assert.equal(err.response && err.response.statusCode, 404, describeError(err));
    assert.equal(errorCode(err), 'DeviceNotOnline', describeError(err));
    return true;
  });
  assert.ok(Date.now() - started < 10000, `took ${Date.now() - started} ms`);
});

test('an unknown device: DeviceNotFoundError', async () => {
  await assert.rejects(invoke('node-no-such-device', { methodName: 'reboot', payload: {} }), (err) => {
    assert.ok(err instanceof errors.DeviceNotFoundError, describeError(err));
    return true;
  });
});

test('a device that never answers: GatewayTimeoutError (504) after responseTimeoutInSeconds', async () => {
  const device = await createSasDevice(reg, 'node-meth-hang');
  const client = deviceClient(device.cs);
  await within(20000, client.open(), 'open()');
  const requests = methodHandler(client, 'hang', () => undefined);
  // subscribed once a call with a connect timeout gets through
  methodHandler(client, 'ready', () => [200, null]);
  await invoke(device.deviceId, { methodName: 'ready', payload: null, responseTimeoutInSeconds: 5, connectTimeoutInSeconds: 5 });

  const started = Date.now();
  await assert.rejects(invoke(device.deviceId, {
    methodName: 'hang', payload: { x: 1 }, responseTimeoutInSeconds: 5, connectTimeoutInSeconds: 5,
  }), (err) => {
    assert.ok(err instanceof errors.GatewayTimeoutError, describeError(err));
    assert.equal(errorCode(err), 'GatewayTimeout', describeError(err));
    return true;
  });
  const elapsed = Date.now() - started;
  assert.ok(elapsed >= 4500 && elapsed < 9500, `responseTimeoutInSeconds 5, but the call ended after ${elapsed} ms`);
  assert.equal(requests.length, 1, 'the request did not reach the device');
});

test('a call made before the device connects waits up to connectTimeoutInSeconds', async () => {
  const device = await createSasDevice(reg, 'node-meth-wait');
  const started = Date.now();
  const call = invoke(device.deviceId, {
    methodName: 'wake', payload: { at: 'connect' }, responseTimeoutInSeconds: 10, connectTimeoutInSeconds: 10,
  });
  await new Promise((r) => setTimeout(r, 1500));
  const client = deviceClient(device.cs);
  await within(20000, client.open(), 'open()');
  methodHandler(client, 'wake', (request) => [200, { woke: request.payload }]);

  const { result } = await call;
  assert.deepEqual({ status: result.status, payload: result.payload }, { status: 200, payload: { woke: { at: 'connect' } } });
  assert.ok(Date.now() - started >= 1400);
});
