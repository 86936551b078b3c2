// Service-side AMQP (wire reference §6) with the official service SDK, azure-iothub 1.16.6:
// `Client.fromConnectionString(...)` speaks AMQP over TLS to 5671 (rhea, no SASL, CBS put-token
// for the host name); `send(deviceId, message)` attaches a sender on `/messages/devicebound` and
// puts the device in `properties.to`; `getFeedbackReceiver()` attaches a receiver on
// `/messages/serviceBound/feedback` whose messages carry a JSON array of feedback records (the SDK
// passes the body through). Devices receive with azure-iot-device-mqtt (helpers.deviceClient),
// whose PUBACK completes the message.
'use strict';

const { test, after } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const { Client } = require('azure-iothub');
const { Message } = require('azure-iothub/dist/common-core/message');
const {
  closeAll, connectionString, createSasDevice, deviceClient, errors, newKey, parseConnectionString, registry,
  rejectsWith, within,
} = require('./helpers');

const reg = registry();
const serviceClients = [];

after(async () => {
  for (const client of serviceClients) {
    try {
      await within(15000, client.close(), 'service client.close()');
    } catch {
      // cleanup goes on
    }
  }
  await closeAll();
});

function serviceClient(cs = connectionString()) {
  const client = Client.fromConnectionString(cs);
  serviceClients.push(client);
  return client;
}

// One service client shared by the tests that only send.
let shared;
async function sharedClient() {
  if (!shared) {
    shared = serviceClient();
    await within(20000, shared.open(), 'service open()');
  }
  return shared;
}

// An MQTT device that completes every message; `wait(n)` resolves with the first n.
async function inbox(cs) {
  const client = deviceClient(cs);
  await within(20000, client.open(), 'device open()');
  const messages = [];
  client.on('message', (msg) => {
    messages.push(msg);
    client.complete(msg, () => {});
  });
  return {
    messages,
    async wait(count, ms = 10000) {
      const deadline = Date.now() + ms;
      while (messages.length < count) {
        if (Date.now() >= deadline) assert.fail(`the device got ${messages.length} message(s) within ${ms} ms, expected ${count}`);
        await new Promise((r) => setTimeout(r, 50));
      }
      return messages.slice(0, count);
    },
  };
}

// Feedback messages of one receiver: records of `deviceId` are collected; `settle` decides per
// message what to do ('complete' | 'abandon' | 'reject').
function collectFeedback(receiver, deviceId, settle = () => 'complete') {
  const seen = [];
  receiver.on('message', (msg) => {
    const records = JSON.parse(msg.data.toString());
    const mine = records.filter((r) => r.deviceId === deviceId);
    const action = mine.length ? settle(mine, msg) : 'complete';
    seen.push({ msg, records: mine, action });
    receiver[action](msg, () => {});
  });
  return {
    seen,
    async wait(predicate, ms = 10000, what = 'feedback') {
      const deadline = Date.now() + ms;
      for (;;) {
        const found = seen.find(predicate);
        if (found) return found;
        if (Date.now() >= deadline) assert.fail(`${what} did not arrive within ${ms} ms: ${JSON.stringify(seen.map((s) => s.records))}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    },
  };
}

function props(msg) {
  return Object.fromEntries(msg.properties.propertyList.map(({ key, value }) => [key, value]));
}

test('send() reaches an MQTT device with its properties, and the feedback receiver gets Success', async () => {
  const device = await createSasDevice(reg, 'node-svc-amqp');
  const box = await inbox(device.cs);
  const client = await sharedClient();
  const { result: receiver } = await within(20000, client.getFeedbackReceiver(), 'getFeedbackReceiver()');
  const feedback = collectFeedback(receiver, device.deviceId);

  const message = new Message('{"cmd":"open"}');
  message.messageId = 'svc-amqp-1';
  message.correlationId = 'svc-amqp-cid';
  message.contentType = 'application/json';
  message.contentEncoding = 'utf-8';
  message.ack = 'full';
  message.properties.add('k', 'v');
  message.properties.add('unit', '°C');
  const expiry = new Date(Math.floor(Date.now() / 1000) * 1000 + 600000);
  // rhea encodes absolute_expiry_time as a timestamp from a number of milliseconds (a Date breaks
  // its encoder: `value.copy is not a function`).
  message.expiryTimeUtc = expiry.getTime();
  await within(20000, client.send(device.deviceId, message), 'send()');

  const [got] = await box.wait(1);
  assert.equal(got.data.toString(), '{"cmd":"open"}');
  assert.equal(got.messageId, 'svc-amqp-1');
  assert.equal(got.correlationId, 'svc-amqp-cid');
  assert.equal(got.contentType, 'application/json');
  assert.equal(got.contentEncoding, 'utf-8');
  assert.equal(new Date(got.expiryTimeUtc).getTime(), expiry.getTime(), `$.exp ${got.expiryTimeUtc}`);
  assert.deepEqual(props(got), { 'iothub-ack': 'full', k: 'v', unit: '°C' });

  const { msg, records } = await feedback.wait((s) => s.records.length > 0);
  assert.equal(msg.contentType, 'application/vnd.microsoft.iothub.feedback.json');
  assert.equal(records.length, 1, JSON.stringify(records));
  const [record] = records;
  assert.equal(record.originalMessageId, 'svc-amqp-1');
  assert.equal(record.statusCode, 'Success');
  assert.equal(record.description, 'Success');
  assert.equal(record.deviceId, device.deviceId);
  assert.equal(record.deviceGenerationId, device.generationId);
  assert.ok(!Number.isNaN(Date.parse(record.enqueuedTimeUtc)), record.enqueuedTimeUtc);
  await receiver.detach();
});

test('an abandoned feedback batch is delivered again; a completed one is not', async () => {
  const device = await createSasDevice(reg, 'node-svc-fb');
  const box = await inbox(device.cs);
  const client = serviceClient();
  await within(20000, client.open(), 'service open()');
  const { result: receiver } = await within(20000, client.getFeedbackReceiver(), 'getFeedbackReceiver()');
  let deliveries = 0;
  const feedback = collectFeedback(receiver, device.deviceId, () => (deliveries++ === 0 ? 'abandon' : 'complete'));

  const message = new Message('again');
  message.messageId = 'svc-amqp-abandon';
  message.ack = 'positive';
  await within(20000, client.send(device.deviceId, message), 'send()');
  await box.wait(1);

  await feedback.wait((s) => s.action === 'abandon', 10000, 'the first feedback delivery');
  const again = await feedback.wait((s) => s.action === 'complete' && s.records.length > 0, 10000, 'the redelivery');
  assert.deepEqual(again.records.map((r) => [r.originalMessageId, r.statusCode]), [['svc-amqp-abandon', 'Success']]);
  await new Promise((r) => setTimeout(r, 500));
  assert.equal(feedback.seen.filter((s) => s.records.length > 0).length, 2, 'a completed batch came back');
});

test('sending to an unknown device fails with DeviceNotFoundError', async () => {
  const client = await sharedClient();
  await rejectsWith(within(20000, client.send('node-no-such-device', new Message('x')), 'send()'), errors.DeviceNotFoundError);
});

test('a full device queue fails with DeviceMaximumQueueDepthExceededError', async () => {
  const device = await createSasDevice(reg, 'node-svc-full');
  const client = await sharedClient();
  // Azure's queue depth is 50 messages per device (C2dSettings).
  for (let i = 0; i < 50; i += 1) await within(20000, client.send(device.deviceId, new Message(`m${i}`)), `send() #${i}`);
  const err = await rejectsWith(within(20000, client.send(device.deviceId, new Message('one too many')), 'send() #51'),
    errors.DeviceMaximumQueueDepthExceededError);
  assert.equal(err.amqpError.condition, 'amqp:resource-limit-exceeded');
});

test('the service policy may send; a policy without ServiceConnect or a wrong key cannot open (UnauthorizedError)', async () => {
  const device = await createSasDevice(reg, 'node-svc-policy');
  const box = await inbox(device.cs);
  const service = serviceClient(connectionString('service'));
  await within(20000, service.open(), 'open() with the service policy');
  // A UUID-shaped id goes on the wire as an AMQP uuid (amqp_message.js:encodeUuid); the device
  // gets it back as the same text.
  const message = new Message('from service');
  message.messageId = crypto.randomUUID();
  await within(20000, service.send(device.deviceId, message), 'send()');
  const [got] = await box.wait(1);
  assert.equal(got.data.toString(), 'from service');
  assert.equal(got.messageId, message.messageId);

  // The CBS put-token is answered 401; amqp_cbs.js makes that an UnauthorizedError, which
  // Amqp.connect wraps (amqp.js:translateError) in an Error whose `amqpError` is it.
  const refused = async (client, what) => {
    const err = await rejectsWith(within(20000, client.open(), what), Error);
    assert.equal(err.message, 'AMQP Transport: Could not connect');
    assert.ok(err.amqpError instanceof errors.UnauthorizedError, `${what}: amqpError ${err.amqpError}`);
    return err.amqpError;
  };
  const readOnly = await refused(serviceClient(connectionString('registryRead')), 'open() with registryRead');
  assert.match(readOnly.message, /ServiceConnect/);
  const parts = parseConnectionString(connectionString());
  const wrong = `HostName=${parts.HostName};SharedAccessKeyName=${parts.SharedAccessKeyName};SharedAccessKey=${newKey()}`;
  await refused(serviceClient(wrong), 'open() with a wrong key');
});
