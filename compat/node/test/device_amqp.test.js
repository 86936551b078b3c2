// Devices and modules over AMQP with the official Node device SDK (azure-iot-device 1.18.4 over
// azure-iot-device-amqp 1.14.4: TLS on 5671, no SASL, the device's SAS token on `$cbs`, then
// links on `/devices/<id>/…`, wire reference §3): telemetry read back through the operator API,
// cloud-to-device complete / reject / abandon with feedback, twin get / reported / desired,
// direct methods invoked by the service SDK, a module's telemetry, and refused tokens.
'use strict';

const { test, after } = require('node:test');
const assert = require('node:assert/strict');
const { promisify } = require('node:util');
const { Client, ModuleClient, Message, SharedAccessSignatureAuthenticationProvider } = require('azure-iot-device');
const { Amqp } = require('azure-iot-device-amqp');
const { errors: deviceErrors } = require('azure-iot-common');
const {
  HOST_NAME, c2dSend, caPem, createSasDevice, createSasModule, deviceEvents, feedbackRecords, newKey, operatorRequest, registry,
  sasAuthMethod, serviceClient, signDeviceToken, userProps, within,
} = require('./helpers');

const reg = registry();
const service = serviceClient();

// AMQP device clients that trust the dev CA; closed after the suite.
const clients = [];
function track(client) {
  client.setOptions({ ca: caPem() });
  clients.push(client);
  return client;
}
const amqpClient = (cs) => track(Client.fromConnectionString(cs, Amqp));
const amqpModuleClient = (cs) => track(ModuleClient.fromConnectionString(cs, Amqp));

after(async () => {
  for (const client of clients) {
    try {
      await within(15000, client.close(), 'client.close()');
    } catch {
      // cleanup goes on
    }
  }
});

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function waitFor(what, predicate, ms = 10000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await predicate();
    if (value) return value;
    if (Date.now() >= deadline) assert.fail(`${what} within ${ms} ms`);
    await sleep(100);
  }
}

test('AMQP telemetry with properties is stored with the iothub annotations', async () => {
  const device = await createSasDevice(reg, 'amqp-tele');
  const client = amqpClient(device.cs);
  await within(20000, client.open(), 'open()');
  const body = JSON.stringify({ temp: 21.5 });
  const message = new Message(body);
  message.messageId = 'amqp-mid-1';
  message.correlationId = '9f0b7c62-4a53-4b6e-9d0a-5c8e1d2f3a4b'; // UUID-shaped: sent as AMQP uuid
  message.contentType = 'application/json';
  message.contentEncoding = 'utf-8';
  message.properties.add('alert', 'high temp');
  message.properties.add('a/b', 'x&y=z');

  await within(20000, client.sendEvent(message), 'sendEvent()');
  await within(20000, client.sendEvent(new Message('second')), 'sendEvent(second)');

  const events = await deviceEvents(device.deviceId, { expect: 2 });
  assert.equal(events.length, 2);
  const [event, second] = events;
  assert.equal(event.origin, device.deviceId);
  assert.equal(event.module, '');
  assert.equal(event.payload, body);
  assert.deepEqual(event.properties.system, {
    'message-id': 'amqp-mid-1',
    'correlation-id': '9f0b7c62-4a53-4b6e-9d0a-5c8e1d2f3a4b',
    'content-type': 'application/json',
    'content-encoding': 'utf-8',
    to: `/devices/${device.deviceId}/messages/events`,
  });
  assert.deepEqual(event.properties.application, { alert: 'high temp', 'a/b': 'x&y=z' });
  const a = event.annotations;
  assert.equal(a['iothub-connection-device-id'], device.deviceId);
  assert.equal(a['iothub-connection-module-id'], undefined);
  assert.deepEqual(JSON.parse(a['iothub-connection-auth-method']), sasAuthMethod('device'));
  assert.equal(a['iothub-connection-auth-generation-id'], device.generationId);
  assert.equal(a['iothub-message-source'], 'Telemetry');
  assert.equal(second.payload, 'second');
  assert.ok(second.annotations['x-opt-sequence-number'] > a['x-opt-sequence-number'], 'stored in send order');
});

test('a ModuleClient sends telemetry over AMQP stamped with the module', async () => {
  const device = await createSasDevice(reg, 'amqp-tele-mod');
  const module = await createSasModule(reg, device.deviceId, 'amqp-mod');
  const client = amqpModuleClient(module.cs);
  await within(20000, client.open(), 'open()');
  const message = new Message('{"level":3}');
  message.messageId = 'amqp-mod-mid';
  message.properties.add('stage', 'filter');

  await within(20000, client.sendEvent(message), 'sendEvent()');

  const [event] = await deviceEvents(device.deviceId, { moduleId: 'amqp-mod', expect: 1 });
  assert.ok(event, 'the module message is not in the event log');
  assert.equal(event.module, 'amqp-mod');
  assert.equal(event.payload, '{"level":3}');
  assert.equal(event.properties.system['message-id'], 'amqp-mod-mid');
  assert.deepEqual(event.properties.application, { stage: 'filter' });
  assert.equal(event.annotations['iothub-connection-module-id'], 'amqp-mod');
  assert.deepEqual(JSON.parse(event.annotations['iothub-connection-auth-method']), sasAuthMethod('module'));
  assert.equal(event.annotations['iothub-connection-auth-generation-id'], module.generationId);
});

test('cloud-to-device over AMQP: properties, complete, reject and abandon with feedback', async () => {
  const device = await createSasDevice(reg, 'amqp-c2d');
  const client = amqpClient(device.cs);
  await within(20000, client.open(), 'open()');
  const received = [];
  const settlements = [];
  client.on('message', (msg) => {
    received.push(msg);
    const id = msg.messageId;
    const seen = received.filter((m) => m.messageId === id).length;
    // c2d-abandon is abandoned once, then completed when it comes again.
    const action = id === 'c2d-reject' ? 'reject' : (id === 'c2d-abandon' && seen === 1 ? 'abandon' : 'complete');
    settlements.push(client[action](msg).then(() => action));
  });
  const expiry = new Date(Math.floor(Date.now() / 1000) * 1000 + 600000);
  await c2dSend(device.deviceId, '{"cmd":"open"}', {
    messageId: 'c2d-complete', correlationId: 'c2d-cid', userId: 'ops', contentType: 'application/json',
    contentEncoding: 'utf-8', ack: 'full', expiryTimeUtc: expiry.toISOString(), properties: { 'k 1': 'v&1', unit: '°C' },
  });
  await c2dSend(device.deviceId, 'reject me', { messageId: 'c2d-reject', ack: 'full' });
  await c2dSend(device.deviceId, 'abandon me', { messageId: 'c2d-abandon', ack: 'full' });

  await waitFor('4 deliveries (one redelivery after abandon)', () => received.length >= 4);
  await within(10000, Promise.all(settlements), 'complete/reject/abandon');
  await sleep(500);
  assert.deepEqual(received.map((m) => m.messageId).sort(),
    ['c2d-abandon', 'c2d-abandon', 'c2d-complete', 'c2d-reject'], 'nothing else is delivered again');

  const msg = received.find((m) => m.messageId === 'c2d-complete');
  assert.equal(msg.data.toString(), '{"cmd":"open"}');
  assert.equal(msg.correlationId, 'c2d-cid');
  assert.equal(msg.contentType, 'application/json');
  assert.equal(msg.contentEncoding, 'utf-8');
  assert.equal(msg.ack, 'full');
  assert.equal(new Date(msg.expiryTimeUtc).getTime(), expiry.getTime(), `expiry ${msg.expiryTimeUtc}`);
  assert.equal(msg.to, `/devices/${device.deviceId}/messages/devicebound`);
  assert.equal(Buffer.from(msg.transportObj.user_id).toString(), 'ops');
  const props = Object.fromEntries(msg.properties.propertyList.map(({ key, value }) => [key, value]));
  assert.deepEqual(props, { 'k 1': 'v&1', unit: '°C' });

  const records = await feedbackRecords(device.deviceId, { expect: 3 });
  assert.deepEqual(records.map((r) => [r.originalMessageId, r.statusCode]).sort(),
    [['c2d-abandon', 'Success'], ['c2d-complete', 'Success'], ['c2d-reject', 'Rejected']]);
  for (const record of records) assert.equal(record.deviceGenerationId, device.generationId);
});

test('messages queued while the AMQP device is offline arrive once its receiver attaches', async () => {
  const device = await createSasDevice(reg, 'amqp-c2d-off');
  for (let i = 0; i < 3; i += 1) await c2dSend(device.deviceId, `queued-${i}`, { messageId: `q${i}` });
  const client = amqpClient(device.cs);
  await within(20000, client.open(), 'open()');
  const received = [];
  client.on('message', (msg) => {
    received.push(msg.data.toString());
    client.complete(msg);
  });

  await waitFor('3 queued messages', () => received.length >= 3);
  assert.deepEqual(received, ['queued-0', 'queued-1', 'queued-2']);
});

test("a ModuleClient receives its input messages over AMQP with the input's name", async () => {
  const device = await createSasDevice(reg, 'amqp-input');
  const module = await createSasModule(reg, device.deviceId, 'amqp-in-mod');
  const client = amqpModuleClient(module.cs);
  await within(20000, client.open(), 'open()');
  const received = [];
  client.on('inputMessage', (input, msg) => {
    received.push({ input, data: msg.data.toString(), messageId: msg.messageId });
    client.complete(msg);
  });
  // Queued now, delivered once the SDK's receiver link attaches.
  const { status, body } = await operatorRequest('POST',
    `/hubs/${HOST_NAME}/devices/${device.deviceId}/modules/${module.moduleId}/inputs/input1/messages`,
    { data: 'to input1', messageId: 'in-1' });
  assert.equal(status, 204, JSON.stringify(body));

  await waitFor('the input message', () => received.length >= 1);
  assert.deepEqual(received, [{ input: 'input1', data: 'to input1', messageId: 'in-1' }]);
});

test('AMQP telemetry over 256 KiB is rejected with message-size-exceeded', async () => {
  const device = await createSasDevice(reg, 'amqp-tele-big');
  const client = amqpClient(device.cs);
  await within(20000, client.open(), 'open()');

  await assert.rejects(within(20000, client.sendEvent(new Message(Buffer.alloc(256 * 1024 + 1, 0x61))), 'sendEvent(big)'),
    (err) => {
      assert.ok(err instanceof deviceErrors.MessageTooLargeError, `expected MessageTooLargeError, got ${err.name}: ${err.message}`);
      return true;
    });
  // The link stays usable.
  await within(20000, client.sendEvent(new Message('small')), 'sendEvent(small)');
  const events = await deviceEvents(device.deviceId, { expect: 1 });
  assert.deepEqual(events.map((e) => e.payload), ['small']);
});

test('an AMQP device is connected while it has links, and disconnected after close()', async () => {
  const device = await createSasDevice(reg, 'amqp-presence');
  const client = amqpClient(device.cs);
  await within(20000, client.open(), 'open()');
  await within(20000, client.sendEvent(new Message('hello')), 'sendEvent()');
  await waitFor('connectionState Connected', async () => (await reg.get(device.deviceId)).responseBody.connectionState === 'Connected');

  await within(15000, client.close(), 'close()');
  await waitFor('connectionState Disconnected', async () => (await reg.get(device.deviceId)).responseBody.connectionState === 'Disconnected');
});

test('AMQP twin: get, reported patch seen by the Registry, desired notifications', async () => {
  const device = await createSasDevice(reg, 'amqp-twin');
  await reg.updateTwin(device.deviceId, { properties: { desired: { interval: 30 } } }, '*');
  const client = amqpClient(device.cs);
  await within(20000, client.open(), 'open()');

  const twin = await within(20000, client.getTwin(), 'getTwin()');
  const { responseBody: stored } = await reg.getTwin(device.deviceId);
  assert.deepEqual(userProps(twin.properties.desired), { interval: 30 });
  assert.equal(twin.properties.desired.$version, stored.properties.desired.$version);
  assert.equal(twin.properties.reported.$version, stored.properties.reported.$version);

  await within(20000, promisify(twin.properties.reported.update)({ fw: '2.0', net: { rssi: -50 } }), 'reported.update()');
  const { responseBody: after1 } = await reg.getTwin(device.deviceId);
  assert.deepEqual(userProps(after1.properties.reported), { fw: '2.0', net: { rssi: -50 } });
  assert.equal(after1.properties.reported.$version, stored.properties.reported.$version + 1);
  assert.equal(after1.connectionState, 'Connected', 'a device with links is connected');

  const seen = [];
  twin.on('properties.desired', (delta) => seen.push(JSON.parse(JSON.stringify(delta))));
  await within(20000, promisify(twin.enableTwinDesiredPropertiesUpdates.bind(twin))(), 'subscribing to desired updates');
  const { responseBody: updated } = await reg.updateTwin(device.deviceId, { properties: { desired: { interval: 5, mode: 'eco' } } }, '*');
  const version = updated.properties.desired.$version;
  const delta = await waitFor(`a desired update with $version ${version}`, () => seen.find((d) => d.$version === version));
  assert.deepEqual(userProps(delta), { interval: 5, mode: 'eco' });
  assert.deepEqual(userProps(twin.properties.desired), { interval: 5, mode: 'eco' });
});

test('an AMQP reported patch that is not an object fails with the error the hub sent', async () => {
  const device = await createSasDevice(reg, 'amqp-twin-bad');
  const client = amqpClient(device.cs);
  await within(20000, client.open(), 'open()');
  const twin = await within(20000, client.getTwin(), 'getTwin()');

  await assert.rejects(within(20000, promisify(twin.properties.reported.update)([1, 2, 3]), 'reported.update()'),
    (err) => {
      assert.ok(!/did not complete within/.test(err.message), `no error answer: ${err.message}`);
      // amqp_twin_client.js maps status 400 to FormatError(body); the transport wraps it and
      // appends the body's `message` (amqp_common_errors.js:translateError).
      assert.ok(err.amqpError instanceof deviceErrors.FormatError, `expected a FormatError (status 400) inside, got ${err.amqpError && err.amqpError.name}`);
      assert.match(err.message, /must be a JSON object/);
      return true;
    });
});

test('a direct method invoked by the service is answered by the AMQP device', async () => {
  const device = await createSasDevice(reg, 'amqp-meth');
  const client = amqpClient(device.cs);
  await within(20000, client.open(), 'open()');
  const requests = [];
  client.onDeviceMethod('configure', (request, response) => {
    requests.push(request.payload);
    response.send(201, { applied: request.payload.level, echo: request.payload }).catch(() => {});
  });

  // The SDK attaches its method links after onDeviceMethod returns: the hub waits for them
  // within the connect timeout.
  const { result } = await within(40000, service.invokeDeviceMethod(device.deviceId, {
    methodName: 'configure', payload: { level: 3, list: [1, 'two'] }, connectTimeoutInSeconds: 10, responseTimeoutInSeconds: 10,
  }), 'invokeDeviceMethod()');

  assert.deepEqual(result, { status: 201, payload: { applied: 3, echo: { level: 3, list: [1, 'two'] } } });
  assert.deepEqual(requests, [{ level: 3, list: [1, 'two'] }]);
});

test('a module answers a direct method over AMQP', async () => {
  const device = await createSasDevice(reg, 'amqp-meth-mod');
  const module = await createSasModule(reg, device.deviceId, 'amqp-meth-mod');
  const client = amqpModuleClient(module.cs);
  await within(20000, client.open(), 'open()');
  client.onMethod('ping', (request, response) => response.send(200, 'pong').catch(() => {}));

  const { result } = await within(40000, service.invokeDeviceMethod(device.deviceId, module.moduleId, {
    methodName: 'ping', payload: null, connectTimeoutInSeconds: 10, responseTimeoutInSeconds: 10,
  }), 'invokeDeviceMethod(module)');

  assert.deepEqual(result, { status: 200, payload: 'pong' });
});

test("a token for another device is refused on this device's links", async () => {
  const owner = await createSasDevice(reg, 'amqp-owner');
  const victim = await createSasDevice(reg, 'amqp-victim');
  const expiry = Math.floor(Date.now() / 1000) + 3600;
  // A valid token of `owner`, presented by a client that attaches `victim`'s links.
  const provider = new SharedAccessSignatureAuthenticationProvider({
    host: HOST_NAME, deviceId: victim.deviceId,
    sharedAccessSignature: signDeviceToken(`${HOST_NAME}/devices/${owner.deviceId}`, owner.primaryKey, expiry),
  });
  const client = track(Client.fromAuthenticationProvider(provider, Amqp));
  await within(20000, client.open(), 'open()');

  await assert.rejects(within(20000, client.sendEvent(new Message('not mine')), 'sendEvent()'), (err) => {
    assert.ok(err instanceof deviceErrors.UnauthorizedError, `expected UnauthorizedError, got ${err.name}: ${err.message}`);
    return true;
  });
  assert.deepEqual(await deviceEvents(victim.deviceId, { expect: 1, timeoutMs: 1000 }), []);
});

test('a device token signed with a wrong key is refused', async () => {
  const device = await createSasDevice(reg, 'amqp-badkey');
  const client = amqpClient(`HostName=${HOST_NAME};DeviceId=${device.deviceId};SharedAccessKey=${newKey()}`);

  await assert.rejects(within(20000, (async () => {
    await client.open();
    await client.sendEvent(new Message('forged'));
  })(), 'open() + sendEvent()'), (err) => {
    assert.ok(err instanceof deviceErrors.UnauthorizedError, `expected UnauthorizedError, got ${err.name}: ${err.message}`);
    return true;
  });
  assert.deepEqual(await deviceEvents(device.deviceId, { expect: 1, timeoutMs: 1000 }), []);
});

test("an AMQP device's links end with its token when it is not renewed", async () => {
  const device = await createSasDevice(reg, 'amqp-expiry');
  const expiry = Math.floor(Date.now() / 1000) + 3;
  // A fixed token, which this provider never renews.
  const provider = new SharedAccessSignatureAuthenticationProvider({
    host: HOST_NAME, deviceId: device.deviceId,
    sharedAccessSignature: signDeviceToken(`${HOST_NAME}/devices/${device.deviceId}`, device.primaryKey, expiry),
  });
  const client = track(Client.fromAuthenticationProvider(provider, Amqp));
  client.on('error', () => {}); // the detached links are reported here
  await within(20000, client.open(), 'open()');
  await within(20000, client.sendEvent(new Message('in time')), 'sendEvent(in time)');
  await waitFor('connectionState Connected', async () => (await reg.get(device.deviceId)).responseBody.connectionState === 'Connected');

  await waitFor('the links detached when the token expired', async () => (await reg.get(device.deviceId)).responseBody.connectionState === 'Disconnected', 8000);
  await assert.rejects(within(20000, client.sendEvent(new Message('too late')), 'sendEvent(too late)'), (err) => {
    assert.ok(err instanceof deviceErrors.UnauthorizedError, `expected UnauthorizedError, got ${err.name}: ${err.message}`);
    return true;
  });
  const events = await deviceEvents(device.deviceId, { expect: 2, timeoutMs: 1000 });
  assert.deepEqual(events.map((e) => e.payload), ['in time']);
});

test('a second AMQP connection of the same device takes over its links', async () => {
  const device = await createSasDevice(reg, 'amqp-takeover');
  const first = amqpClient(device.cs);
  const second = amqpClient(device.cs);
  const got = { first: [], second: [] };
  await within(20000, first.open(), 'first.open()');
  first.on('message', (msg) => { got.first.push(msg.data.toString()); first.complete(msg); });
  await c2dSend(device.deviceId, 'to the first', { messageId: 't1' });
  await waitFor('the first connection receives', () => got.first.length >= 1);

  await within(20000, second.open(), 'second.open()');
  second.on('message', (msg) => { got.second.push(msg.data.toString()); second.complete(msg); });
  await within(20000, second.sendEvent(new Message('from the second')), 'second.sendEvent()');
  await c2dSend(device.deviceId, 'to the second', { messageId: 't2' });

  await waitFor('the second connection receives', () => got.second.length >= 1);
  await sleep(300);
  assert.deepEqual(got, { first: ['to the first'], second: ['to the second'] });
  assert.equal((await reg.get(device.deviceId)).responseBody.connectionState, 'Connected');
});
