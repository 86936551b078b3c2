// Message routing (issue #8) with the official Node clients: custom event streams read with
// @azure/event-hubs 6.0.4 (`EventHubConsumerClient`, entity = the stream's name, TLS on 5671),
// routes with conditions on application properties, `$body` and `$twin` (tags written with the
// azure-iothub Registry), enrichments, the fallback route to the built-in endpoint, system events
// (twin change, lifecycle, connection state) in Azure's shapes, `outpost route test`, and the
// return to Azure's default configuration (receivers of removed streams detached).
// Devices send with azure-iot-device over MQTT (8883) and, once, over AMQP (5671).
//
// The routing configuration is written once with `PUT /hubs/{hub}/routing` (the JSON shape of
// outpost_core::routing::model) before the first test and reset to Azure's default afterwards,
// so the files run after this one in a full suite see a hub without routes. New endpoints start
// at the log's end, so every message a test reads is sent after the configuration was written.
'use strict';

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { execFileSync } = require('node:child_process');
const { EventHubConsumerClient, earliestEventPosition } = require('@azure/event-hubs');
const { Client, Message } = require('azure-iot-device');
const { Amqp } = require('azure-iot-device-amqp');
const {
  HOST_NAME, caPem, closeAll, connectionString, createSasDevice, deviceClient, newId, operatorRequest,
  parseConnectionString, registry, within,
} = require('./helpers');

const HUB = 'localhost';
const reg = registry();

// Stream partition counts differ from the hub's 4 and from each other, so a client that read the
// hub's `$management` answer instead of the stream's would fail.
const ROUTING = {
  endpoints: [
    { name: 'alerts', type: 'eventStream', partitionCount: 3 },
    { name: 'hot', type: 'eventStream', partitionCount: 2 },
    { name: 'tagged', type: 'eventStream', partitionCount: 1 },
    { name: 'sysevents', type: 'eventStream', partitionCount: 2 },
  ],
  routes: [
    { name: 'alerts-route', source: 'DeviceMessages', condition: "level = 'critical'", endpointNames: ['alerts'], isEnabled: true },
    { name: 'hot-route', source: 'DeviceMessages', condition: '$body.temp > 30', endpointNames: ['hot'], isEnabled: true },
    { name: 'tagged-route', source: 'DeviceMessages', condition: "$twin.tags.building = 'b43'", endpointNames: ['tagged'], isEnabled: true },
    { name: 'twin-events', source: 'TwinChangeEvents', condition: "opType = 'updateTwin'", endpointNames: ['sysevents'], isEnabled: true },
    { name: 'lifecycle-events', source: 'DeviceLifecycleEvents', condition: 'true', endpointNames: ['sysevents'], isEnabled: true },
    { name: 'connection-events', source: 'DeviceConnectionStateEvents', condition: 'true', endpointNames: ['sysevents'], isEnabled: true },
  ],
  fallbackRoute: { isEnabled: true },
  enrichments: [
    { key: 'hub', value: '$iothubname', endpointNames: ['alerts', 'hot', 'events'] },
    { key: 'env', value: 'staging', endpointNames: ['alerts'] },
    { key: 'building', value: '$twin.tags.building', endpointNames: ['tagged'] },
  ],
};

const consumers = [];
const amqpClients = [];
before(async () => {
  const { status, body } = await operatorRequest('PUT', `/hubs/${HUB}/routing`, ROUTING);
  assert.equal(status, 200, `PUT /hubs/${HUB}/routing -> ${status} ${JSON.stringify(body)}`);
});
after(async () => {
  for (const client of consumers) await client.close().catch(() => {});
  for (const client of amqpClients) await within(15000, client.close(), 'close()').catch(() => {});
  await closeAll();
  const reset = await operatorRequest('PUT', `/hubs/${HUB}/routing`, {});
  assert.equal(reset.status, 200, `resetting the routing configuration -> ${reset.status} ${JSON.stringify(reset.body)}`);
});

// `Endpoint=sb://<hub host>/;SharedAccessKeyName=<policy>;SharedAccessKey=…;EntityPath=<entity>`,
// from the service policy's IoT Hub connection string.
function eventHubConnectionString(entity, policy = 'service') {
  const parts = parseConnectionString(connectionString(policy));
  return `Endpoint=sb://${parts.HostName}/;SharedAccessKeyName=${parts.SharedAccessKeyName};` +
    `SharedAccessKey=${parts.SharedAccessKey};EntityPath=${entity}`;
}

function consumer(entity, consumerGroup = '$Default') {
  const client = new EventHubConsumerClient(consumerGroup, eventHubConnectionString(entity), {
    customEndpointAddress: 'amqps://localhost:5671',
    retryOptions: { maxRetries: 0, timeoutInMs: 20000 },
  });
  consumers.push(client);
  return client;
}

function cli(...args) {
  return execFileSync(process.env.OUTPOST_BIN, [...args, '--data-dir', process.env.OUTPOST_DATA_DIR], {
    encoding: 'utf8', timeout: 30000, stdio: ['ignore', 'pipe', 'pipe'],
  });
}

// Reads `entity` from the earliest event on every partition and keeps the events `keep` accepts;
// returns once `expect` were kept and nothing more came for `settleMs` (so an extra event that
// should not be there is seen), or after `ms`.
async function read(entity, keep, { expect, consumerGroup = '$Default', ms = 20000, settleMs = 1500 } = {}) {
  const client = consumer(entity, consumerGroup);
  const events = [];
  const errors = [];
  let last = Date.now();
  const subscription = client.subscribe({
    processEvents: async (batch, context) => {
      for (const event of batch) {
        if (keep(event)) {
          event.partitionId = context.partitionId;
          events.push(event);
          last = Date.now();
        }
      }
    },
    processError: async (err) => { errors.push(err); },
  }, { startPosition: earliestEventPosition, maxWaitTimeInSeconds: 1 });
  const deadline = Date.now() + ms;
  try {
    while (Date.now() < deadline && !(events.length >= expect && Date.now() - last >= settleMs)) {
      await new Promise((r) => setTimeout(r, 100));
    }
  } finally {
    await subscription.close();
    await client.close();
  }
  assert.deepEqual(errors.map(String), [], `errors reading ${entity}/${consumerGroup}`);
  return events;
}

const fromDevices = (...ids) => (event) => ids.includes(event.systemProperties['iothub-connection-device-id']);
const messageIds = (events) => events.map((e) => e.messageId).sort();

function message(id, body, { level, json = true } = {}) {
  const m = new Message(typeof body === 'string' ? body : JSON.stringify(body));
  m.messageId = id;
  if (json) {
    m.contentType = 'application/json';
    m.contentEncoding = 'utf-8';
  }
  if (level) m.properties.add('level', level);
  return m;
}

async function taggedDevice(prefix, building) {
  const device = await createSasDevice(reg, prefix);
  await reg.updateTwin(device.deviceId, { tags: { building } }, '*');
  return device;
}

test('a custom stream is its own event hub: partition ids and properties, earliest reads, a second consumer group, unknown entities', async () => {
  // The operator API's connection string for the stream is the one built here from the policy.
  const printed = cli('hub', 'connection-string', '--policy', 'service', '--eventhub', '--stream', 'alerts').trim();
  assert.equal(printed, eventHubConnectionString('alerts'));

  const client = consumer('alerts');
  assert.deepEqual(await within(30000, client.getPartitionIds(), 'getPartitionIds()'), ['0', '1', '2']);
  const hubProperties = await within(30000, client.getEventHubProperties(), 'getEventHubProperties()');
  assert.equal(hubProperties.name, 'alerts');
  assert.deepEqual(hubProperties.partitionIds, ['0', '1', '2']);
  const partition = await within(30000, client.getPartitionProperties('2'), 'getPartitionProperties(2)');
  assert.equal(partition.eventHubName, 'alerts');
  assert.equal(partition.partitionId, '2');
  assert.equal(typeof partition.lastEnqueuedSequenceNumber, 'number');
  assert.deepEqual(await within(30000, consumer('tagged').getPartitionIds(), 'getPartitionIds(tagged)'), ['0']);
  // The built-in endpoint keeps the hub's own partitions.
  assert.deepEqual(await within(30000, consumer(HUB).getPartitionIds(), 'getPartitionIds(hub)'), ['0', '1', '2', '3']);

  const created = await operatorRequest('POST', `/hubs/${HUB}/routing/endpoints/alerts/consumergroups/analytics`);
  assert.equal(created.status, 201, JSON.stringify(created.body));
  const groups = await operatorRequest('GET', `/hubs/${HUB}/routing/endpoints/alerts/consumergroups`);
  assert.deepEqual(groups.body, { value: ['$Default', 'analytics'] });

  const devices = [await createSasDevice(reg, 'rt-eh-a'), await createSasDevice(reg, 'rt-eh-b')];
  for (const device of devices) {
    const dc = deviceClient(device.cs);
    await within(20000, dc.open(), 'open()');
    for (let n = 0; n < 3; n += 1) {
      await within(20000, dc.sendEvent(message(`${device.deviceId}-${n}`, { n }, { level: 'critical' })), 'sendEvent()');
    }
  }
  const ids = devices.map((d) => d.deviceId);
  const expected = ids.flatMap((id) => [0, 1, 2].map((n) => `${id}-${n}`)).sort();
  for (const group of ['$Default', 'analytics', 'ANALYTICS']) {
    const events = await read('alerts', fromDevices(...ids), { expect: 6, consumerGroup: group });
    assert.deepEqual(messageIds(events), expected, `consumer group ${group}`);
    for (const id of ids) {
      const own = events.filter((e) => e.systemProperties['iothub-connection-device-id'] === id);
      // One device's messages share one partition of the stream, in send order.
      assert.equal(new Set(own.map((e) => e.partitionId)).size, 1);
      assert.deepEqual(own.map((e) => e.body.n), [0, 1, 2]);
      assert.ok(own.every((e) => e.sequenceNumber >= 0 && e.enqueuedTimeUtc instanceof Date));
    }
  }

  await assert.rejects(within(30000, consumer('no-such-stream').getPartitionIds(), 'getPartitionIds(unknown)'),
    (err) => err.code === 'MessagingEntityNotFoundError' && /no-such-stream/.test(err.message));
  // A consumer group the stream does not have is refused on the receiver link.
  const ghost = consumer('alerts', 'nope');
  const refusals = [];
  const refused = ghost.subscribe({ processEvents: async () => {}, processError: async (err) => { refusals.push(err); } },
    { startPosition: earliestEventPosition, maxWaitTimeInSeconds: 1 });
  const until = Date.now() + 10000;
  while (refusals.length === 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 100));
  await refused.close();
  assert.ok(refusals.length > 0, 'a receiver on an unknown consumer group of the stream is refused');
  assert.equal(refusals[0].code, 'MessagingEntityNotFoundError', String(refusals[0]));
  assert.match(refusals[0].message, /nope/);
});

test('routes on application properties, $body and $twin fill each stream with exactly the matching messages; the built-in endpoint gets the fallback', async () => {
  const plain = await taggedDevice('rt-plain', 'b44');
  const tagged = await taggedDevice('rt-tagged', 'b43');
  const viaAmqp = await taggedDevice('rt-amqp', 'b43');

  const mqtt = deviceClient(plain.cs);
  await within(20000, mqtt.open(), 'open()');
  const sends = [
    message('p-critical-cold', { temp: 10 }, { level: 'critical' }), // alerts
    message('p-info-hot', { temp: 35 }, { level: 'info' }), // hot
    message('p-critical-hot', { temp: 40 }, { level: 'critical' }), // alerts + hot
    message('p-hot-not-json', { temp: 99 }, { json: false }), // $body unreadable: fallback
    message('p-info-cold', { temp: 5 }, { level: 'info' }), // fallback
  ];
  for (const m of sends) await within(20000, mqtt.sendEvent(m), `sendEvent(${m.messageId})`);
  const taggedClient = deviceClient(tagged.cs);
  await within(20000, taggedClient.open(), 'open()');
  await within(20000, taggedClient.sendEvent(message('t-info-cold', { temp: 1 }, { level: 'info' })), 'sendEvent()'); // tagged

  const amqp = Client.fromConnectionString(viaAmqp.cs, Amqp);
  amqp.setOptions({ ca: caPem() });
  amqpClients.push(amqp);
  await within(20000, amqp.open(), 'open() over AMQP');
  await within(20000, amqp.sendEvent(message('a-critical-hot', { temp: 50 }, { level: 'critical' })), 'sendEvent() over AMQP'); // alerts + hot + tagged

  const mine = fromDevices(plain.deviceId, tagged.deviceId, viaAmqp.deviceId);
  const alerts = await read('alerts', mine, { expect: 3 });
  assert.deepEqual(messageIds(alerts), ['a-critical-hot', 'p-critical-cold', 'p-critical-hot']);
  for (const event of alerts) {
    assert.equal(event.properties.level, 'critical');
    assert.equal(event.properties.hub, HUB, 'the $iothubname enrichment');
    assert.equal(event.properties.env, 'staging', 'the static enrichment');
    assert.equal(event.properties.building, undefined, "another endpoint's enrichment");
    assert.equal(event.systemProperties['iothub-message-source'], 'Telemetry');
  }
  const amqpAlert = alerts.find((e) => e.messageId === 'a-critical-hot');
  assert.deepEqual(amqpAlert.body, { temp: 50 });
  assert.equal(amqpAlert.contentType, 'application/json');

  const hot = await read('hot', mine, { expect: 3 });
  assert.deepEqual(messageIds(hot), ['a-critical-hot', 'p-critical-hot', 'p-info-hot']);
  assert.ok(hot.every((e) => e.properties.hub === HUB && e.properties.env === undefined));

  const taggedEvents = await read('tagged', mine, { expect: 2 });
  assert.deepEqual(messageIds(taggedEvents), ['a-critical-hot', 't-info-cold']);
  for (const event of taggedEvents) {
    assert.equal(event.properties.building, 'b43', 'the $twin.tags.building enrichment');
    assert.equal(event.properties.hub, undefined);
  }

  // Azure's fallback: only device messages that matched no route.
  const builtIn = await read(HUB, mine, { expect: 2 });
  assert.deepEqual(messageIds(builtIn), ['p-hot-not-json', 'p-info-cold']);
  for (const event of builtIn) assert.equal(event.properties.hub, HUB, 'the enrichment of the built-in endpoint');
  assert.equal(builtIn.find((e) => e.messageId === 'p-info-cold').properties.level, 'info');
});

test('twin change, lifecycle and connection state events reach a stream in Azure\'s shapes', async () => {
  const deviceId = newId('rt-sys');
  const { responseBody: identity } = await reg.create({ deviceId, status: 'enabled' });
  const cs = `HostName=${HOST_NAME};DeviceId=${deviceId};SharedAccessKey=${identity.authentication.symmetricKey.primaryKey}`;

  const { responseBody: twin } = await reg.getTwin(deviceId);
  await twin.update({ properties: { desired: { interval: 42 } } });
  const { responseBody: updated } = await reg.getTwin(deviceId);
  // A tags patch is a twin change too: another updateTwin, its body with `tags`.
  await reg.updateTwin(deviceId, { tags: { floor: 3 } }, '*');

  const dc = Client.fromConnectionString(cs, require('azure-iot-device-mqtt').Mqtt);
  dc.setOptions({ ca: caPem() });
  await within(20000, dc.open(), 'open()');
  await within(20000, dc.close(), 'close()');
  await reg.delete(deviceId);

  const events = await read('sysevents', (e) => e.properties && e.properties.deviceId === deviceId, { expect: 6 });
  const byOp = (op) => events.filter((e) => e.properties.opType === op);
  assert.deepEqual(events.map((e) => e.properties.opType).sort(),
    ['createDeviceIdentity', 'deleteDeviceIdentity', 'deviceConnected', 'deviceDisconnected', 'updateTwin', 'updateTwin']);

  const schemas = {
    createDeviceIdentity: ['deviceLifecycleEvents', 'deviceLifecycleNotification'],
    deleteDeviceIdentity: ['deviceLifecycleEvents', 'deviceLifecycleNotification'],
    updateTwin: ['twinChangeEvents', 'twinChangeNotification'],
    deviceConnected: ['deviceConnectionStateEvents', 'deviceConnectionStateNotification'],
    deviceDisconnected: ['deviceConnectionStateEvents', 'deviceConnectionStateNotification'],
  };
  for (const event of events) {
    const [source, schema] = schemas[event.properties.opType];
    assert.equal(event.systemProperties['iothub-message-source'], source);
    assert.equal(event.systemProperties['iothub-connection-device-id'], deviceId);
    assert.equal(event.properties.hubName, HUB);
    assert.equal(event.properties['iothub-message-schema'], schema);
    assert.equal(event.properties.moduleId, undefined);
    assert.ok(!Number.isNaN(Date.parse(event.properties.operationTimestamp)), event.properties.operationTimestamp);
    assert.equal(event.contentType, 'application/json');
    assert.equal(typeof event.correlationId, 'string');
    assert.equal(typeof event.body, 'object', 'a JSON body');
  }

  const [desired] = byOp('updateTwin').filter((e) => e.body.properties);
  assert.ok(desired, `an updateTwin event with properties: ${JSON.stringify(byOp('updateTwin').map((e) => e.body))}`);
  assert.equal(desired.body.properties.desired.interval, 42);
  assert.equal(desired.body.properties.desired.$version, updated.properties.desired.$version);
  assert.equal(typeof desired.body.properties.desired.$metadata.interval.$lastUpdated, 'string');
  assert.equal(typeof desired.body.version, 'number');
  const [tags] = byOp('updateTwin').filter((e) => e.body.tags);
  assert.deepEqual(tags.body.tags, { floor: 3 });

  const [created] = byOp('createDeviceIdentity');
  assert.equal(created.body.deviceId, deviceId);
  assert.equal(typeof created.body.etag, 'string');
  assert.equal(typeof created.body.version, 'number');
  assert.equal(typeof created.body.properties.desired.$version, 'number');
  assert.equal(typeof created.body.properties.reported.$version, 'number');
  const [deleted] = byOp('deleteDeviceIdentity');
  assert.equal(deleted.body.deviceId, deviceId);
  assert.equal(deleted.body.properties.desired.interval, 42, 'the twin as it was before the delete');
  assert.deepEqual(deleted.body.tags, { floor: 3 });

  const [connected] = byOp('deviceConnected');
  const [disconnected] = byOp('deviceDisconnected');
  for (const event of [connected, disconnected]) {
    assert.deepEqual(Object.keys(event.body), ['sequenceNumber']);
    assert.match(event.body.sequenceNumber, /^[0-9A-F]{64}$/);
  }
  assert.ok(disconnected.body.sequenceNumber > connected.body.sequenceNumber, 'sequence numbers increase');
});

test('outpost route test evaluates a route or a condition against a sample message and twin without sending', async () => {
  const lastSequences = async () => {
    const out = {};
    for (const stream of ['alerts', 'hot', 'tagged']) {
      const client = consumer(stream);
      for (const id of await client.getPartitionIds()) {
        out[`${stream}/${id}`] = (await client.getPartitionProperties(id)).lastEnqueuedSequenceNumber;
      }
      await client.close();
    }
    return out;
  };
  const before_ = await lastSequences();

  const json = 'contentType=application/json;contentEncoding=utf-8';
  const result = (...args) => JSON.parse(cli('route', 'test', '-o', 'json', ...args)).result;
  assert.equal(result('--condition', '$body.temp > 30', '--body', '{"temp": 35}', '--sp', json), 'true');
  assert.equal(result('--condition', '$body.temp > 30', '--body', '{"temp": 10}', '--sp', json), 'false');
  // Without a JSON content type and UTF-8 the body is not read: the condition is false (Azure).
  assert.equal(result('--condition', '$body.temp > 30', '--body', '{"temp": 35}'), 'false');
  assert.equal(result('--name', 'alerts-route', '--ap', 'level=critical;x=1'), 'true');
  assert.equal(result('--name', 'alerts-route', '--ap', 'level=info'), 'false');
  assert.equal(result('--name', 'tagged-route', '--tp', '{"tags": {"building": "b43"}}'), 'true');
  assert.equal(result('--name', 'tagged-route', '--tp', '{"tags": {"building": "b44"}}'), 'false');
  assert.equal(result('--name', 'tagged-route'), 'false', 'no twin: $twin is undefined');
  assert.equal(cli('route', 'test', '--name', 'alerts-route', '--ap', 'level=critical').trim(), 'Route alerts-route: true');

  // Without a route or condition: every enabled route of the source that matches.
  const all = JSON.parse(cli('route', 'test', '-o', 'json', '--ap', 'level=critical', '--body', '{"temp": 31}', '--sp', json));
  assert.deepEqual(all.routes.map((r) => r.name).sort(), ['alerts-route', 'hot-route']);
  const twinSample = JSON.parse(cli('route', 'test', '-o', 'json', '--source', 'twinchangeevents', '--ap', 'opType=updateTwin'));
  assert.deepEqual(twinSample.routes.map((r) => r.name), ['twin-events']);

  // A condition that does not parse is refused with its position.
  assert.throws(() => cli('route', 'test', '--condition', "level = 'critical' AND"),
    (err) => { assert.match(String(err.stderr), /400 .*ArgumentInvalid.*line 1, column 23/); return true; });

  await new Promise((r) => setTimeout(r, 500));
  assert.deepEqual(await lastSequences(), before_, 'route test appended nothing to the streams');
});

test('back to Azure\'s default configuration: receivers of removed streams are detached, every device message reaches the built-in endpoint', async () => {
  const device = await createSasDevice(reg, 'rt-default');
  const dc = deviceClient(device.cs);
  await within(20000, dc.open(), 'open()');
  await within(20000, dc.sendEvent(message('d-before', { temp: 90 }, { level: 'critical' })), 'sendEvent()');

  // A receiver reading a stream when the stream is removed is detached with amqp:not-found, as
  // one of a deleted consumer group is (door/mod.rs); the SDK reports MessagingEntityNotFoundError.
  const reader = consumer('alerts');
  const readerErrors = [];
  const seen = [];
  const subscription = reader.subscribe({
    processEvents: async (events) => { seen.push(...events.filter(fromDevices(device.deviceId))); },
    processError: async (err) => { readerErrors.push(err); },
  }, { startPosition: earliestEventPosition, maxWaitTimeInSeconds: 1 });
  for (const until = Date.now() + 10000; seen.length === 0 && Date.now() < until;) await new Promise((r) => setTimeout(r, 100));
  assert.deepEqual(messageIds(seen), ['d-before'], 'the receiver reads the stream before it is removed');

  const { status, body } = await operatorRequest('PUT', `/hubs/${HUB}/routing`, {});
  assert.equal(status, 200, JSON.stringify(body));
  assert.deepEqual(body, { endpoints: [], routes: [], fallbackRoute: { isEnabled: true }, enrichments: [] });
  const removedAt = Date.now();
  while (readerErrors.length === 0 && Date.now() - removedAt < 4000) await new Promise((r) => setTimeout(r, 100));
  await subscription.close();
  assert.ok(readerErrors.length > 0, 'the receiver of the removed stream was not detached within 4 s');
  assert.equal(readerErrors[0].code, 'MessagingEntityNotFoundError', String(readerErrors[0]));
  assert.match(readerErrors[0].message, /sb:\/\/localhost\/alerts' could not be found/);
  await assert.rejects(within(30000, consumer('alerts').getPartitionIds(), 'getPartitionIds(alerts)'),
    (err) => err.code === 'MessagingEntityNotFoundError');

  // The new configuration applies to the next message: no route, so the fallback takes it; the
  // message routed to the stream before the change stays off the built-in endpoint.
  await within(20000, dc.sendEvent(message('d-after', { temp: 90 }, { level: 'critical' })), 'sendEvent()');
  const builtIn = await read(HUB, fromDevices(device.deviceId), { expect: 1, settleMs: 500 });
  assert.deepEqual(messageIds(builtIn), ['d-after']);
  assert.equal(builtIn[0].properties.hub, undefined, 'no enrichment any more');
});
