// Device-to-cloud telemetry with the official Node device SDK (azure-iot-device 1.18.4 over
// azure-iot-device-mqtt 1.16.4, MQTT over TLS on 8883), read back through the operator API.
'use strict';

const { test, after } = require('node:test');
const assert = require('node:assert/strict');
const { Message } = require('azure-iot-device');
const {
  closeAll, createSasDevice, createSasModule, deviceClient, deviceEvents, moduleClient, registry, sasAuthMethod, within,
} = require('./helpers');

const reg = registry();
after(closeAll);

test('sendEvent with system and custom properties is stored with the iothub annotations', async () => {
  const device = await createSasDevice(reg, 'node-tele');
  const client = deviceClient(device.cs);
  await within(20000, client.open(), 'open()');
  const body = JSON.stringify({ temp: 21.5, hum: 40 });
  const message = new Message(body);
  message.messageId = 'node-mid-1';
  message.correlationId = 'node-cid-1';
  message.contentType = 'application/json';
  message.contentEncoding = 'utf-8';
  message.properties.add('alert', 'high temp');
  message.properties.add('a/b', 'x&y=z');
  message.properties.add('unit', '°C');

  await within(20000, client.sendEvent(message), 'sendEvent()');

  const [event] = await deviceEvents(device.deviceId, { expect: 1 });
  assert.ok(event, 'the message is not in the event log');
  assert.equal(event.origin, device.deviceId);
  assert.equal(event.module, '');
  assert.equal(event.payload, body);
  assert.deepEqual(event.properties.system, {
    'message-id': 'node-mid-1',
    'correlation-id': 'node-cid-1',
    'content-type': 'application/json',
    'content-encoding': 'utf-8',
  });
  assert.deepEqual(event.properties.application, { alert: 'high temp', 'a/b': 'x&y=z', unit: '°C' });
  const a = event.annotations;
  assert.equal(a['iothub-connection-device-id'], device.deviceId);
  assert.equal(a['iothub-connection-module-id'], undefined);
  assert.deepEqual(JSON.parse(a['iothub-connection-auth-method']), sasAuthMethod('device'));
  const { responseBody: stored } = await reg.get(device.deviceId);
  assert.equal(a['iothub-connection-auth-generation-id'], stored.generationId);
  assert.equal(a['iothub-message-source'], 'Telemetry');
  assert.equal(typeof a['x-opt-sequence-number'], 'number');
});

test('a plain message without properties and a Buffer body', async () => {
  const device = await createSasDevice(reg, 'node-tele-plain');
  const client = deviceClient(device.cs);
  await within(20000, client.open(), 'open()');
  const binary = Buffer.from([0, 1, 2, 0xfe, 0xff, 0x80]);

  await within(20000, client.sendEvent(new Message('plain')), 'sendEvent(plain)');
  await within(20000, client.sendEvent(new Message(binary)), 'sendEvent(binary)');

  const events = await deviceEvents(device.deviceId, { expect: 2 });
  assert.equal(events.length, 2);
  assert.equal(events[0].payload, 'plain');
  assert.deepEqual(events[0].properties.system, {});
  assert.deepEqual(events[0].properties.application, {});
  assert.deepEqual(events[1].payload, { base64: binary.toString('base64') });
});

test('messages of one device are stored in send order', async () => {
  const device = await createSasDevice(reg, 'node-tele-order');
  const client = deviceClient(device.cs);
  await within(20000, client.open(), 'open()');
  for (let i = 0; i < 15; i++) {
    const m = new Message(JSON.stringify({ n: i }));
    m.messageId = `order-${i}`;
    await within(20000, client.sendEvent(m), `sendEvent(${i})`);
  }

  const events = await deviceEvents(device.deviceId, { expect: 15 });
  assert.deepEqual(events.map((e) => JSON.parse(e.payload).n), [...Array(15).keys()]);
  const seqs = events.map((e) => e.annotations['x-opt-sequence-number']);
  for (let i = 1; i < seqs.length; i++) assert.ok(seqs[i - 1] < seqs[i], `sequence numbers not increasing: ${seqs}`);
  assert.equal(new Set(events.map((e) => e._partition)).size, 1, 'one device, one partition');
});

test('a ModuleClient sends telemetry stamped with the module', async () => {
  const device = await createSasDevice(reg, 'node-tele-mod');
  const module = await createSasModule(reg, device.deviceId, 'node-mod');
  const client = moduleClient(module.cs);
  await within(20000, client.open(), 'open()');
  const message = new Message('{"level":3}');
  message.messageId = 'mod-mid';
  message.properties.add('stage', 'filter');

  await within(20000, client.sendEvent(message), 'sendEvent()');

  const [event] = await deviceEvents(device.deviceId, { moduleId: 'node-mod', expect: 1 });
  assert.ok(event, 'the module message is not in the event log');
  assert.equal(event.origin, device.deviceId);
  assert.equal(event.module, 'node-mod');
  assert.equal(event.payload, '{"level":3}');
  assert.equal(event.properties.system['message-id'], 'mod-mid');
  assert.deepEqual(event.properties.application, { stage: 'filter' });
  assert.equal(event.annotations['iothub-connection-module-id'], 'node-mod');
  assert.deepEqual(JSON.parse(event.annotations['iothub-connection-auth-method']), sasAuthMethod('module'));
  assert.equal(event.annotations['iothub-connection-auth-generation-id'], module.generationId);
});

test('ModuleClient.sendOutputEvent stamps the output name', async () => {
  const device = await createSasDevice(reg, 'node-tele-out');
  const module = await createSasModule(reg, device.deviceId, 'node-out-mod');
  const client = moduleClient(module.cs);
  await within(20000, client.open(), 'open()');
  const message = new Message('to-output');
  message.messageId = 'node-out-1';

  // Node appends `$.on=alerts` and an extra `/` after the property bag (wire reference §2.4)
  await within(20000, client.sendOutputEvent('alerts', message), 'sendOutputEvent()');

  const [event] = await deviceEvents(device.deviceId, { moduleId: 'node-out-mod', expect: 1 });
  assert.ok(event, 'the output message is not in the event log');
  assert.equal(event.payload, 'to-output');
  assert.deepEqual(event.properties.system, { 'message-id': 'node-out-1', 'iothub-outputname': 'alerts' });
  assert.deepEqual(event.properties.application, {});
});
