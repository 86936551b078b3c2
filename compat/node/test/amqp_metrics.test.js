// The AMQP door's counters in the operator API's /metrics (Prometheus text): driven by the official
// @azure/event-hubs 6.0.4 client, read before and after. A consumer opening a connection, reading
// the partition ids ($cbs + $management links) and receiving from a partition must move the
// connection, link and delivery counters; a receiver for a consumer group that does not exist is
// refused with amqp:not-found, which the error counter shows.
'use strict';

const { test, after } = require('node:test');
const assert = require('node:assert/strict');
const { execFileSync } = require('node:child_process');
const { EventHubConsumerClient, earliestEventPosition } = require('@azure/event-hubs');
const { Message } = require('azure-iot-device');
const fs = require('node:fs');
const path = require('node:path');
const { closeAll, createSasDevice, deviceClient, registry, within } = require('./helpers');

const reg = registry();
const clients = [];
after(async () => {
  for (const client of clients) await client.close().catch(() => {});
  await closeAll();
});

async function metrics() {
  const dataDir = process.env.OUTPOST_DATA_DIR;
  const url = fs.readFileSync(path.join(dataDir, 'operator-endpoint'), 'utf8').trim().replace(/\/$/, '');
  const token = fs.readFileSync(path.join(dataDir, 'operator-token'), 'utf8').trim();
  const response = await fetch(`${url}/metrics`, { headers: { Authorization: `Bearer ${token}` } });
  assert.equal(response.status, 200);
  const values = new Map();
  for (const line of (await response.text()).split('\n')) {
    if (!line.startsWith('outpost_amqp_')) continue;
    const at = line.lastIndexOf(' ');
    values.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  return (name) => values.get(name) ?? 0;
}

function eventhubConnectionString() {
  return execFileSync(process.env.OUTPOST_BIN, [
    'hub', 'connection-string', '--data-dir', process.env.OUTPOST_DATA_DIR, '--policy', 'service', '--eventhub',
  ], { encoding: 'utf8', timeout: 30000 }).trim();
}

function consumer(group = '$Default') {
  const client = new EventHubConsumerClient(group, eventhubConnectionString(), {
    customEndpointAddress: 'amqps://localhost:5671',
    retryOptions: { maxRetries: 0, timeoutInMs: 20000 },
  });
  clients.push(client);
  return client;
}

test('connections, links and deliveries of an Event Hubs consumer are counted', async () => {
  const device = await createSasDevice(reg, 'node-amqp-metrics');
  const device_ = deviceClient(device.cs);
  await within(20000, device_.open(), 'open()');
  await within(20000, device_.sendEvent(new Message('counted')), 'sendEvent()');

  const before = await metrics();
  const client = consumer();
  const ids = await within(30000, client.getPartitionIds(), 'getPartitionIds()');
  let subscription;
  const got = new Promise((resolve) => {
    subscription = client.subscribe({
      processEvents: async (events) => {
        if (events.some((e) => e.systemProperties?.['iothub-connection-device-id'] === device.deviceId)) resolve();
      },
      processError: async () => {},
    }, { startPosition: earliestEventPosition, maxWaitTimeInSeconds: 1 });
  });
  await within(30000, got, "receiving the device's event");
  // subscribe() attaches one receiver per partition independently: the event can arrive on one
  // before the others are attached, so wait (bounded) for all of them to show.
  let during = await metrics();
  const attachDeadline = Date.now() + 10000;
  while (during('outpost_amqp_links{kind="partition"}') < ids.length && Date.now() < attachDeadline) {
    await new Promise((r) => setTimeout(r, 100));
    during = await metrics();
  }
  await subscription.close();
  await client.close();

  assert.ok(during('outpost_amqp_connections') >= 1, 'an open connection');
  assert.ok(during('outpost_amqp_connections_total') > before('outpost_amqp_connections_total'));
  assert.ok(during('outpost_amqp_links_total{kind="cbs"}') >= before('outpost_amqp_links_total{kind="cbs"}') + 2,
    'the $cbs sender and receiver');
  assert.ok(during('outpost_amqp_links_total{kind="management"}') >= before('outpost_amqp_links_total{kind="management"}') + 2);
  assert.ok(during('outpost_amqp_links_total{kind="partition"}') >= before('outpost_amqp_links_total{kind="partition"}') + ids.length,
    'one receiver per partition');
  assert.ok(during('outpost_amqp_links{kind="partition"}') >= ids.length, 'the receivers are open while subscribed');
  assert.ok(during('outpost_amqp_deliveries_total{direction="sent"}') > before('outpost_amqp_deliveries_total{direction="sent"}'),
    'events and replies sent');
  assert.ok(during('outpost_amqp_deliveries_total{direction="received"}') > before('outpost_amqp_deliveries_total{direction="received"}'),
    'put-token and READ requests received');
  assert.ok(during('outpost_amqp_credit_granted_total') > before('outpost_amqp_credit_granted_total'));

  // Once closed, the links are gone from the gauge.
  const deadline = Date.now() + 10000;
  let closed = await metrics();
  while (closed('outpost_amqp_links{kind="partition"}') > before('outpost_amqp_links{kind="partition"}') && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 100));
    closed = await metrics();
  }
  assert.equal(closed('outpost_amqp_links{kind="partition"}'), before('outpost_amqp_links{kind="partition"}'));
});

test('a receiver for an unknown consumer group is refused with amqp:not-found, counted', async () => {
  const before = await metrics();
  const client = consumer('no-such-group');
  const errors = [];
  const subscription = client.subscribe('0', {
    processEvents: async () => {},
    processError: async (err) => { errors.push(err); },
  }, { startPosition: earliestEventPosition, maxWaitTimeInSeconds: 1 });
  const deadline = Date.now() + 20000;
  while (errors.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  await subscription.close();
  assert.ok(errors.length > 0, 'the receiver fails');
  assert.ok(errors.some((err) => /not found/i.test(err.message) || err.code === 'MessagingEntityNotFoundError'),
    errors.map(String).join('; '));
  const after_ = await metrics();
  assert.ok(after_('outpost_amqp_errors_total{condition="amqp:not-found"}') > before('outpost_amqp_errors_total{condition="amqp:not-found"}'));
});
