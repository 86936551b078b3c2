// Cloud-to-device messages received with the Node device SDK (azure-iot-device 1.18.4 over
// azure-iot-device-mqtt 1.16.4): `client.on('message')` subscribes to
// `devices/{id}/messages/devicebound/#` (QoS 1) and builds a `Message` from the topic's property
// bag (mqtt.js:_onC2DMessage / _extractPropertiesFromTopicPart: `$.mid`, `$.to`, `$.exp`, `$.cid`,
// `$.uid`, `$.ct`, `$.ce`, everything else — `iothub-ack` included — into `properties`);
// `client.complete(msg)` is a no-op over MQTT (mqtt.js PUBACKs on receipt).
//
// Messages are sent through the operator API or the CLI (the SDK's own AMQP sender is tested in
// service_amqp.test.js); the queue purge `DELETE /devices/{id}/commands` goes through the Registry's RestApiClient
// (azure-iothub 1.16.6 has no public purge method).
'use strict';

const { test, after } = require('node:test');
const assert = require('node:assert/strict');
const {
  c2dCli, c2dSend, c2dSendRaw, closeAll, createSasDevice, deviceClient, feedbackRecords, purgeQueue, registry, within,
} = require('./helpers');

const reg = registry();
after(closeAll);

// Opens the client, listens for 'message' and completes every message; `wait(n)` resolves with
// the first n messages.
async function inbox(client) {
  await within(20000, client.open(), 'open()');
  const messages = [];
  const completions = [];
  let wake = () => {};
  client.on('message', (msg) => {
    messages.push(msg);
    completions.push(client.complete(msg));
    wake();
  });
  return {
    messages,
    completions,
    async wait(count, ms = 10000) {
      const deadline = Date.now() + ms;
      while (messages.length < count) {
        if (Date.now() >= deadline) {
          assert.fail(`got ${messages.length} message(s) within ${ms} ms, expected ${count}: ${JSON.stringify(messages.map((m) => m.data.toString()))}`);
        }
        await new Promise((resolve) => { wake = resolve; setTimeout(resolve, 100); });
      }
      return messages.slice(0, count);
    },
  };
}

function props(msg) {
  return Object.fromEntries(msg.properties.propertyList.map(({ key, value }) => [key, value]));
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

test("client.on('message') gets the body, system properties and custom properties", async () => {
  const device = await createSasDevice(reg, 'node-c2d');
  const client = deviceClient(device.cs);
  const box = await inbox(client);
  const expiry = new Date(Math.floor(Date.now() / 1000) * 1000 + 600000);

  await c2dSend(device.deviceId, '{"cmd":"open"}', {
    messageId: 'node-c2d-mid', correlationId: 'node-c2d-cid', userId: 'ops', contentType: 'application/json',
    contentEncoding: 'utf-8', ack: 'full', expiryTimeUtc: expiry.toISOString(),
    properties: { 'k 1': 'v&1', 'a/b': 'x=y', unit: '°C', pct: '100%' },
  });

  const [msg] = await box.wait(1);
  assert.equal(msg.data.toString(), '{"cmd":"open"}');
  assert.equal(msg.messageId, 'node-c2d-mid');
  assert.equal(msg.correlationId, 'node-c2d-cid');
  assert.equal(msg.userId, 'ops');
  assert.equal(msg.contentType, 'application/json');
  assert.equal(msg.contentEncoding, 'utf-8');
  assert.equal(new Date(msg.expiryTimeUtc).getTime(), expiry.getTime(), `$.exp ${msg.expiryTimeUtc}`);
  assert.equal(String(msg.to).toLowerCase(), `/devices/${device.deviceId}/messages/devicebound`.toLowerCase(), `$.to ${msg.to}`);
  assert.deepEqual(props(msg), { 'iothub-ack': 'full', 'k 1': 'v&1', 'a/b': 'x=y', unit: '°C', pct: '100%' });
  await within(5000, Promise.all(box.completions), 'client.complete()');
});

test('messages sent with the CLI, in send order, once each', async () => {
  const device = await createSasDevice(reg, 'node-c2d-cli');
  const client = deviceClient(device.cs);
  const box = await inbox(client);

  c2dCli('send', '-d', device.deviceId, '--data', 'cli-0', '--props', 'k=v;k2=v 2', '--ack', 'positive',
    '--message-id', 'cli-0', '--correlation-id', 'cli-cid', '--content-type', 'text/plain', '--content-encoding', 'utf-8');
  for (let i = 1; i < 6; i += 1) await c2dSend(device.deviceId, `msg-${i}`, { messageId: `cli-${i}` });

  const got = await box.wait(6);
  assert.deepEqual(got.map((m) => m.messageId), ['cli-0', 'cli-1', 'cli-2', 'cli-3', 'cli-4', 'cli-5']);
  assert.equal(got[0].data.toString(), 'cli-0');
  assert.equal(got[0].correlationId, 'cli-cid');
  assert.equal(got[0].contentType, 'text/plain');
  assert.equal(got[0].contentEncoding, 'utf-8');
  assert.deepEqual(props(got[0]), { 'iothub-ack': 'positive', k: 'v', k2: 'v 2' });
  await sleep(500);
  assert.equal(box.messages.length, 6, 'a message was delivered twice');
});

test('messages queued while the device is offline arrive after open()', async () => {
  const device = await createSasDevice(reg, 'node-c2d-off');
  for (let i = 0; i < 3; i += 1) await c2dSend(device.deviceId, `queued-${i}`, { messageId: `q${i}` });

  const client = deviceClient(device.cs);
  const box = await inbox(client);

  const got = await box.wait(3);
  assert.deepEqual(got.map((m) => m.data.toString()), ['queued-0', 'queued-1', 'queued-2']);
  await sleep(500);
  assert.equal(box.messages.length, 3);
});

test('completed messages that asked for it produce Success feedback', async () => {
  const device = await createSasDevice(reg, 'node-c2d-fb');
  const client = deviceClient(device.cs);
  const box = await inbox(client);
  for (const ack of ['none', 'positive', 'negative', 'full']) await c2dSend(device.deviceId, ack, { messageId: `fb-${ack}`, ack });

  await box.wait(4);
  const records = await feedbackRecords(device.deviceId, { expect: 2 });
  await sleep(500);
  records.push(...await feedbackRecords(device.deviceId, { expect: 0, timeoutMs: 0 }));
  assert.deepEqual(records.map((r) => r.originalMessageId).sort(), ['fb-full', 'fb-positive']);
  for (const record of records) {
    assert.equal(record.statusCode, 'Success');
    assert.equal(record.deviceId, device.deviceId);
    assert.equal(record.deviceGenerationId, device.generationId);
    assert.ok(!Number.isNaN(Date.parse(record.enqueuedTimeUtc)), record.enqueuedTimeUtc);
  }
});

test('DELETE /devices/{id}/commands purges the queue; nothing is delivered; Purged feedback', async () => {
  const device = await createSasDevice(reg, 'node-c2d-purge');
  await c2dSend(device.deviceId, 'a', { messageId: 'purge-a', ack: 'full' });
  await c2dSend(device.deviceId, 'b', { messageId: 'purge-b', ack: 'positive' });

  const { result } = await purgeQueue(reg, device.deviceId);

  assert.deepEqual(result, { totalMessagesPurged: 2, deviceId: device.deviceId, moduleId: null });
  const client = deviceClient(device.cs);
  const box = await inbox(client);
  await sleep(1000);
  assert.equal(box.messages.length, 0, 'purged messages were delivered');
  const records = await feedbackRecords(device.deviceId, { expect: 1 });
  assert.deepEqual(records.map((r) => [r.originalMessageId, r.statusCode]), [['purge-a', 'Purged']]);
});

test('sending to an unknown device is 404', async () => {
  const { status, body } = await c2dSendRaw('node-no-such-device', 'x');
  assert.equal(status, 404, JSON.stringify(body));
  await assert.rejects(purgeQueue(reg, 'node-no-such-device'), (err) => {
    assert.equal(err.response && err.response.statusCode, 404);
    return true;
  });
});
