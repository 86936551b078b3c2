// The built-in Event Hubs-compatible endpoint with the official Event Hubs SDK (@azure/event-hubs
// 6.0.4, rhea over AMQP 1.0 + TLS on 127.0.0.1:5671): the consumer client reads the partition ids
// and properties through `$management`, and receives telemetry sent by the official device SDK
// (azure-iot-device + MQTT) from the earliest event, with the iothub annotations in
// `systemProperties`; a consumer with a higher `ownerLevel` (epoch) takes the partitions from one
// with a lower one, which sees ReceiverDisconnectedError (amqp:link:stolen). The connection string is the one `outpost hub connection-string --eventhub`
// prints; the client honours its port but is pointed at the listener with `customEndpointAddress`
// anyway, and trusts the dev CA through NODE_EXTRA_CA_CERTS, which run.js sets (wire reference §7.5).
// Also: start positions (offset inclusive/exclusive, sequence number, enqueued time, latest),
// `trackLastEnqueuedEventProperties` (the receiver runtime metric), consumer groups made with
// `outpost hub consumer-group`, and the IoT Hub connection string sample of @azure/event-hubs
// (`iothubConnectionString.js`: SASL PLAIN + `amqp:link:redirect`, wire reference §7.7).
'use strict';

const { test, after } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const { execFileSync } = require('node:child_process');
const {
  EventHubConsumerClient, earliestEventPosition, latestEventPosition,
} = require('@azure/event-hubs');
const { Message } = require('azure-iot-device');
const {
  closeAll, connectionString, createSasDevice, deviceClient, registry, within,
} = require('./helpers');

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

function cli(...args) {
  return execFileSync(process.env.OUTPOST_BIN, [...args, '--data-dir', process.env.OUTPOST_DATA_DIR], {
    encoding: 'utf8', timeout: 30000,
  });
}

function consumer(policy = 'service', consumerGroup = '$Default') {
  const client = new EventHubConsumerClient(consumerGroup, eventhubConnectionString(policy), {
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

// Sends `count` events from a new device, 20 ms apart (distinct enqueued times), and reads them
// back from the earliest event: returns the device's events (in order) and their partition.
async function sentEvents(prefix, count) {
  const device = await createSasDevice(reg, prefix);
  const device_ = deviceClient(device.cs);
  await within(20000, device_.open(), 'open()');
  for (let n = 0; n < count; n += 1) {
    await within(20000, device_.sendEvent(new Message(JSON.stringify({ n }))), 'sendEvent()');
    await new Promise((r) => setTimeout(r, 20));
  }
  const client = consumer();
  const events = [];
  let partitionId;
  let subscription;
  const got = new Promise((resolve) => {
    subscription = client.subscribe({
      processEvents: async (batch, context) => {
        for (const event of batch) {
          if (event.systemProperties['iothub-connection-device-id'] === device.deviceId) {
            events.push(event);
            partitionId = context.partitionId;
            if (events.length === count) resolve();
          }
        }
      },
      processError: async () => {},
    }, { startPosition: earliestEventPosition, maxWaitTimeInSeconds: 1 });
  });
  try {
    await within(30000, got, `reading the ${count} events back`);
  } finally {
    await subscription.close();
    await client.close();
  }
  return { device, device_, events, partitionId };
}

// Subscribes to one partition from `startPosition` and returns the first `count` events of
// `deviceId` (fewer after `ms`), with the subscription's errors.
async function receiveFrom(client, partitionId, deviceId, startPosition, count, ms = 15000, options = {}) {
  const state = { events: [], errors: [], contexts: [] };
  let subscription;
  const done = new Promise((resolve) => {
    subscription = client.subscribe(partitionId, {
      processEvents: async (batch, context) => {
        for (const event of batch) {
          if (event.systemProperties['iothub-connection-device-id'] === deviceId) {
            state.events.push(event);
            state.contexts.push({ ...context.lastEnqueuedEventProperties });
            if (state.events.length >= count) resolve();
          }
        }
      },
      processError: async (err) => { state.errors.push(err); },
    }, { startPosition, maxWaitTimeInSeconds: 1, ...options });
  });
  state.subscription = subscription;
  await Promise.race([done, new Promise((r) => setTimeout(r, ms))]);
  return state;
}

const bodies = (events) => events.map((event) => event.body.n);

test('start positions: offset inclusive and exclusive, sequence number, enqueued time, latest', async () => {
  const { device, device_, events, partitionId } = await sentEvents('node-eh-pos', 4);
  assert.deepEqual(bodies(events), [0, 1, 2, 3]);
  const [, second, third] = events;
  assert.equal(typeof second.offset, 'string');
  const client = consumer();
  const cases = [
    ['offset inclusive', { offset: second.offset, isInclusive: true }, [1, 2, 3]],
    ['offset exclusive', { offset: second.offset }, [2, 3]],
    ['sequence number exclusive', { sequenceNumber: second.sequenceNumber }, [2, 3]],
    ['sequence number inclusive', { sequenceNumber: second.sequenceNumber, isInclusive: true }, [1, 2, 3]],
    ['enqueued time (after)', { enqueuedOn: new Date(third.enqueuedTimeUtc.getTime() - 1) }, [2, 3]],
    ['enqueued time of an event (exclusive)', { enqueuedOn: third.enqueuedTimeUtc }, [3]],
  ];
  for (const [what, startPosition, expected] of cases) {
    const state = await receiveFrom(client, partitionId, device.deviceId, startPosition, expected.length);
    await state.subscription.close();
    assert.deepEqual(state.errors, [], what);
    assert.deepEqual(bodies(state.events), expected, what);
  }
  // Latest: only what is sent after the receiver attached.
  const state = await receiveFrom(client, partitionId, device.deviceId, latestEventPosition, 1, 3000);
  assert.deepEqual(state.events, [], 'nothing before the receiver attached');
  await within(20000, device_.sendEvent(new Message(JSON.stringify({ n: 4 }))), 'sendEvent()');
  const deadline = Date.now() + 20000;
  while (state.events.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  await state.subscription.close();
  assert.deepEqual(bodies(state.events), [4]);
  assert.equal(state.events[0].sequenceNumber, events[3].sequenceNumber + 1);
  await client.close();
});

test('trackLastEnqueuedEventProperties: every event carries its partition\'s last enqueued event', async () => {
  const { device, events, partitionId } = await sentEvents('node-eh-metric', 3);
  const last = events[2];
  const client = consumer();
  const state = await receiveFrom(client, partitionId, device.deviceId, earliestEventPosition, 3, 20000, {
    trackLastEnqueuedEventProperties: true,
  });
  await state.subscription.close();
  await client.close();
  assert.deepEqual(state.errors, []);
  assert.equal(state.contexts.length, 3);
  for (const properties of state.contexts) {
    assert.equal(properties.sequenceNumber, last.sequenceNumber);
    assert.equal(properties.offset, last.offset);
    assert.ok(properties.enqueuedOn instanceof Date);
    assert.equal(properties.enqueuedOn.getTime(), last.enqueuedTimeUtc.getTime());
    assert.ok(properties.retrievedOn instanceof Date);
    assert.ok(Math.abs(properties.retrievedOn.getTime() - Date.now()) < 60000);
  }
});

test('consumer groups: created with the CLI, read on their own, unknown refused, deleted ones detach their receivers', async () => {
  const created = JSON.parse(cli('hub', 'consumer-group', 'create', '--name', 'Node-Readers', '--output', 'json'));
  assert.equal(created.name, 'Node-Readers');
  const listed = JSON.parse(cli('hub', 'consumer-group', 'list', '--output', 'json'));
  assert.deepEqual(listed.map((group) => group.name), ['$Default', 'Node-Readers']);
  const { device, events, partitionId } = await sentEvents('node-eh-cg', 1);

  // An epoch receiver on $Default does not own the partition of another group.
  const owner = consumer();
  const owning = await receiveFrom(owner, partitionId, device.deviceId, earliestEventPosition, 1, 20000, { ownerLevel: 5 });
  assert.deepEqual(bodies(owning.events), [0]);
  const readers = consumer('service', 'node-readers');
  const reading = await receiveFrom(readers, partitionId, device.deviceId, earliestEventPosition, 1);
  assert.deepEqual(reading.errors, []);
  assert.deepEqual(bodies(reading.events), [0]);
  assert.equal(reading.events[0].sequenceNumber, events[0].sequenceNumber);
  await owning.subscription.close();
  await owner.close();

  const ghost = consumer('service', 'no-such-group');
  const refused = await receiveFrom(ghost, partitionId, device.deviceId, earliestEventPosition, 1, 5000);
  await refused.subscription.close();
  await ghost.close();
  assert.deepEqual(refused.events, []);
  assert.ok(refused.errors.length > 0, 'a receiver on an unknown consumer group is refused');
  assert.equal(refused.errors[0].code, 'MessagingEntityNotFoundError', String(refused.errors[0]));
  assert.match(refused.errors[0].message, /no-such-group' could not be found/);

  cli('hub', 'consumer-group', 'delete', '--name', 'node-readers');
  await until(20000, () => reading.errors.some((err) => err.code === 'MessagingEntityNotFoundError'),
    () => `the receiver of the deleted group detached (errors: ${reading.errors.map(String).join('; ')})`);
  await reading.subscription.close();
  await readers.close();
  const remaining = JSON.parse(cli('hub', 'consumer-group', 'list', '--output', 'json'));
  assert.deepEqual(remaining.map((group) => group.name), ['$Default']);
});

// ---- The IoT Hub connection string sample of @azure/event-hubs (samples/v5/javascript/
// iothubConnectionString.js), with its code: SASL PLAIN `<policy>@sas.root.<hub>` on the AMQP
// port, a receiver on `amqps://<host>/messages/events/$management`, and the `amqp:link:redirect`
// error's `info` turned into an Event Hubs connection string.
const { Connection, ReceiverEvents, parseConnectionString } = require('rhea-promise');
const rheaPromise = require('rhea-promise');
const { ErrorNameConditionMapper: AMQPError } = require('@azure/core-amqp');

function isAmqpError(err) {
  return rheaPromise.isAmqpError(err);
}

function generateSasToken(resourceUri, signingKey, policyName, expiresInMins) {
  resourceUri = encodeURIComponent(resourceUri);
  const expiresInSeconds = Math.ceil(Date.now() / 1000 + expiresInMins * 60);
  const toSign = resourceUri + '\n' + expiresInSeconds;
  const hmac = crypto.createHmac('sha256', Buffer.from(signingKey, 'base64'));
  hmac.update(toSign);
  const base64UriEncoded = encodeURIComponent(hmac.digest('base64'));
  return `SharedAccessSignature sr=${resourceUri}&sig=${base64UriEncoded}&se=${expiresInSeconds}&skn=${policyName}`;
}

// The sample's function; `seen` also receives the redirect error for the test's assertions.
async function convertIotHubToEventHubsConnectionString(connectionString_, seen = {}) {
  const { HostName, SharedAccessKeyName, SharedAccessKey } = parseConnectionString(connectionString_);
  if (!HostName || !SharedAccessKey || !SharedAccessKeyName) {
    throw new Error('Invalid IotHub connection string.');
  }
  const [iotHubName] = HostName.split('.');
  if (!iotHubName) {
    throw new Error('Unable to extract the IotHub name from the connection string.');
  }
  const token = generateSasToken(`${HostName}/messages/events`, SharedAccessKey, SharedAccessKeyName, 5);
  const connection = new Connection({
    transport: 'tls',
    host: HostName,
    hostname: HostName,
    username: `${SharedAccessKeyName}@sas.root.${iotHubName}`,
    port: 5671,
    reconnect: false,
    password: token,
  });
  await connection.open();
  const receiver = await connection.createReceiver({
    source: { address: `amqps://${HostName}/messages/events/$management` },
  });
  return new Promise((resolve, reject) => {
    receiver.on(ReceiverEvents.receiverError, (context) => {
      const error = context.receiver && context.receiver.error;
      seen.error = error;
      if (isAmqpError(error) && error.condition === AMQPError.LinkRedirectError && error.info) {
        const hostname = error.info.hostname;
        const iotAddress = error.info.address;
        const regex = /:\d+\/(.*)\/\$management/i;
        const regexResults = regex.exec(iotAddress);
        if (!hostname || !regexResults) {
          reject(error);
        } else {
          const eventHubName = regexResults[1];
          resolve(`Endpoint=sb://${hostname}/;EntityPath=${eventHubName};SharedAccessKeyName=${SharedAccessKeyName};SharedAccessKey=${SharedAccessKey}`);
        }
      } else {
        reject(error);
      }
      connection.close().catch(() => {});
    });
  });
}

test('the IoT Hub connection string sample: amqp:link:redirect to the Event Hubs endpoint, then receive', async () => {
  const seen = {};
  const iothub = connectionString('service');
  const ehcs = await within(30000, convertIotHubToEventHubsConnectionString(iothub, seen), 'the redirect');
  assert.equal(seen.error.condition, 'amqp:link:redirect');
  assert.equal(seen.error.info.hostname, 'localhost');
  assert.equal(seen.error.info['network-host'], 'localhost');
  assert.equal(seen.error.info.port, 5671);
  assert.equal(seen.error.info.address, 'amqps://localhost:5671/localhost/$management');
  const { SharedAccessKey } = parseConnectionString(iothub);
  assert.equal(ehcs, `Endpoint=sb://localhost/;EntityPath=localhost;SharedAccessKeyName=service;SharedAccessKey=${SharedAccessKey}`);

  const device = await createSasDevice(reg, 'node-eh-redirect');
  const device_ = deviceClient(device.cs);
  await within(20000, device_.open(), 'open()');
  await within(20000, device_.sendEvent(new Message(JSON.stringify({ redirected: true }))), 'sendEvent()');

  // The sample's consumer: the converted connection string as it is (port 5671 by default).
  const client = new EventHubConsumerClient('$Default', ehcs, { retryOptions: { maxRetries: 0, timeoutInMs: 20000 } });
  consumers.push(client);
  assert.deepEqual(await within(30000, client.getPartitionIds(), 'getPartitionIds()'), ['0', '1', '2', '3']);
  const state = subscribeTo(client, device.deviceId);
  try {
    await within(30000, state.received, "receiving the device's event through the redirected connection string");
  } finally {
    await state.subscription.close();
  }
  assert.deepEqual(state.events[0].body, { redirected: true });
  await client.close();
});

test('the redirect needs a token for messages/events: a wrong key fails SASL', async () => {
  const iothub = connectionString('service').replace(/SharedAccessKey=[^;]+/, `SharedAccessKey=${crypto.randomBytes(32).toString('base64')}`);
  await assert.rejects(within(30000, convertIotHubToEventHubsConnectionString(iothub), 'the refused redirect'));
});
