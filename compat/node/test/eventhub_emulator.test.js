// The plain AMQP listener with the official Event Hubs SDK (@azure/event-hubs 6.0.4): a connection
// string with `UseDevelopmentEmulator=true` makes the client connect over plain TCP (rhea
// transport 'tcp') to port 5672 of the endpoint's host (wire reference §7.5); run.js starts the hub
// with `--amqp-plain-listen 127.0.0.1:5672`. No customEndpointAddress and no CA: the client reads
// the partition ids and receives a device's telemetry from the earliest event.
'use strict';

const { test, after } = require('node:test');
const assert = require('node:assert/strict');
const { execFileSync } = require('node:child_process');
const { EventHubConsumerClient, earliestEventPosition } = require('@azure/event-hubs');
const { Message } = require('azure-iot-device');
const { closeAll, createSasDevice, deviceClient, registry, within } = require('./helpers');

const reg = registry();
const clients = [];
after(async () => {
  for (const client of clients) await client.close().catch(() => {});
  await closeAll();
});

function emulatorConnectionString() {
  const cs = execFileSync(process.env.OUTPOST_BIN, [
    'hub', 'connection-string', '--data-dir', process.env.OUTPOST_DATA_DIR, '--policy', 'service', '--eventhub',
  ], { encoding: 'utf8', timeout: 30000 }).trim();
  return `${cs.replace(/;$/, '')};UseDevelopmentEmulator=true`;
}

test('a development-emulator client reads partition ids and telemetry over plain AMQP', async () => {
  const device = await createSasDevice(reg, 'node-eh-plain');
  const device_ = deviceClient(device.cs);
  await within(20000, device_.open(), 'open()');
  const message = new Message('over plain amqp');
  message.messageId = 'node-plain-1';
  await within(20000, device_.sendEvent(message), 'sendEvent()');

  const client = new EventHubConsumerClient('$Default', emulatorConnectionString(), {
    retryOptions: { maxRetries: 0, timeoutInMs: 20000 },
  });
  clients.push(client);
  assert.deepEqual(await within(30000, client.getPartitionIds(), 'getPartitionIds()'), ['0', '1', '2', '3']);
  const received = [];
  let subscription;
  const got = new Promise((resolve) => {
    subscription = client.subscribe({
      processEvents: async (events) => {
        for (const event of events) {
          if (event.systemProperties?.['iothub-connection-device-id'] === device.deviceId) {
            received.push(event);
            resolve();
          }
        }
      },
      processError: async () => {},
    }, { startPosition: earliestEventPosition, maxWaitTimeInSeconds: 1 });
  });
  try {
    await within(30000, got, "receiving the device's event over plain AMQP");
  } finally {
    await subscription.close();
  }
  assert.equal(received.length, 1);
  // A body that is not JSON arrives as the bytes sent.
  assert.equal(Buffer.from(received[0].body).toString(), 'over plain amqp');
  assert.equal(received[0].messageId, 'node-plain-1');
});
