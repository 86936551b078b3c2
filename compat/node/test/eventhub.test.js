// The built-in Event Hubs-compatible endpoint with the official Event Hubs SDK (@azure/event-hubs
// 6.0.4, rhea over AMQP 1.0 + TLS on 127.0.0.1:5671): the consumer client reads the partition ids
// and properties through `$management`, and receives telemetry sent by the official device SDK
// (azure-iot-device + MQTT) from the earliest event, with the iothub annotations in
// `systemProperties`; a consumer with a higher `ownerLevel` (epoch) takes the partitions from one
// with a lower one, which sees ReceiverDisconnectedError (amqp:link:stolen). The connection string is the one `outpost hub connection-string --eventhub`
// prints; the client honours its port but is pointed at the listener with `customEndpointAddress`
// anyway, and trusts the dev CA through NODE_EXTRA_CA_CERTS, which run.js sets (wire reference §7.5).
'use strict';

const { test, after } = require('node:test');
const assert = require('node:assert/strict');
const { execFileSync } = require('node:child_process');
const { EventHubConsumerClient, earliestEventPosition } = require('@azure/event-hubs');
const { Message } = require('azure-iot-device');
const { closeAll, createSasDevice, deviceClient, registry, within } = require('./helpers');

const reg = registry();
const consumers = [];
after(async () => {
  for (const consumer of consumers) await consumer.close().catch(() => {});
  await closeAll();
});

function eventhubConnectionString(policy = 'service') {
  const out = execFileSync(process.env.OUTPOST_BIN, [
    'hub', 'connection-string', '--data-dir', process.env.OUTPOST_DATA_DIR, '--policy', policy, '--eventhub',
  ], { encoding: 'utf8', timeout: 30000 });
  const lines = out.split('\n').map((l) => l.trim()).filter(Boolean);
  assert.equal(lines.length, 1, `expected one line, got ${JSON.stringify(out)}`);
  return lines[0];
}

function consumer(policy = 'service') {
  const client = new EventHubConsumerClient('$Default', eventhubConnectionString(policy), {
    customEndpointAddress: 'amqps://localhost:5671',
    retryOptions: { maxRetries: 0, timeoutInMs: 20000 },
  });
  consumers.push(client);
  return client;
}

test('getPartitionIds, getEventHubProperties and getPartitionProperties', async () => {
  const client = consumer();
  const ids = await within(30000, client.getPartitionIds(), 'getPartitionIds()');
  assert.deepEqual(ids, ['0', '1', '2', '3']);
  const properties = await within(30000, client.getEventHubProperties(), 'getEventHubProperties()');
  assert.equal(properties.name, 'localhost');
  assert.deepEqual(properties.partitionIds, ids);
  assert.ok(properties.createdOn instanceof Date);
  const partition = await within(30000, client.getPartitionProperties('0'), 'getPartitionProperties(0)');
  assert.equal(partition.partitionId, '0');
  assert.equal(partition.eventHubName, 'localhost');
  assert.equal(typeof partition.beginningSequenceNumber, 'number');
  assert.equal(typeof partition.isEmpty, 'boolean');
  await client.close();
});

test('telemetry of a device is received from the earliest event with the iothub annotations', async () => {
  const device = await createSasDevice(reg, 'node-eh');
  const device_ = deviceClient(device.cs);
  await within(20000, device_.open(), 'open()');
  const message = new Message(JSON.stringify({ n: 1 }));
  message.messageId = 'node-eh-mid';
  message.contentType = 'application/json';
  message.contentEncoding = 'utf-8';
  message.properties.add('kind', 'eh-node');
  await within(20000, device_.sendEvent(message), 'sendEvent()');

  const client = consumer();
  const received = [];
  const errors = [];
  let subscription;
  const got = new Promise((resolve) => {
    subscription = client.subscribe({
      processEvents: async (events) => {
        for (const event of events) {
          if (event.systemProperties && event.systemProperties['iothub-connection-device-id'] === device.deviceId) {
            received.push(event);
            resolve();
          }
        }
      },
      processError: async (err) => { errors.push(err); },
    }, { startPosition: earliestEventPosition, maxWaitTimeInSeconds: 1 });
  });
  try {
    await within(30000, got, "receiving the device's event").catch((err) => {
      throw new Error(`${err.message} (errors: ${errors.map(String).join('; ')})`);
    });
  } finally {
    await subscription.close();
  }
  assert.equal(received.length, 1);
  const [event] = received;
  assert.deepEqual(event.body, { n: 1 });
  assert.equal(event.properties.kind, 'eh-node');
  assert.equal(event.messageId, 'node-eh-mid');
  assert.equal(event.contentType, 'application/json');
  assert.equal(event.systemProperties['iothub-message-source'], 'Telemetry');
  assert.equal(typeof event.sequenceNumber, 'number');
  assert.ok(event.enqueuedTimeUtc instanceof Date);
  await client.close();
});

// Subscribes `client` to all partitions from the earliest event; resolves `received` on the first
// event of `deviceId`, and collects the errors.
function subscribeTo(client, deviceId, ownerLevel) {
  const state = { errors: [], events: [] };
  state.received = new Promise((resolve) => {
    state.subscription = client.subscribe({
      processEvents: async (events) => {
        for (const event of events) {
          if (event.systemProperties && event.systemProperties['iothub-connection-device-id'] === deviceId) {
            state.events.push(event);
            resolve();
          }
        }
      },
      processError: async (err) => { state.errors.push(err); },
    }, { startPosition: earliestEventPosition, maxWaitTimeInSeconds: 1, ownerLevel });
  });
  return state;
}

async function until(ms, predicate, what) {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (predicate()) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.fail(`${typeof what === 'function' ? what() : what} within ${ms / 1000}s`);
}

test('a consumer with a higher ownerLevel takes the partition: the other gets ReceiverDisconnectedError', async () => {
  const device = await createSasDevice(reg, 'node-eh-epoch');
  const device_ = deviceClient(device.cs);
  await within(20000, device_.open(), 'open()');
  await within(20000, device_.sendEvent(new Message('epoch')), 'sendEvent()');

  const first = subscribeTo(consumer(), device.deviceId, 1);
  let second;
  try {
    await within(30000, first.received, 'the ownerLevel 1 consumer receiving the event');
    second = subscribeTo(consumer(), device.deviceId, 2);
    await within(30000, second.received, 'the ownerLevel 2 consumer receiving the event');
    await until(20000, () => first.errors.some((err) => err.code === 'ReceiverDisconnectedError'),
      () => `the ownerLevel 1 consumer seeing ReceiverDisconnectedError (errors: ${first.errors.map(String).join('; ')})`);
    const stolen = first.errors.find((err) => err.code === 'ReceiverDisconnectedError');
    assert.match(stolen.message, /higher epoch of '2'/);
    assert.deepEqual(second.errors, []);
  } finally {
    await first.subscription.close();
    if (second) await second.subscription.close();
  }
});
