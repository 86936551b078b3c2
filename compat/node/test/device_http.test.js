// The device SDK's HTTP transport (azure-iot-device-http 1.14.4, wire reference §4) against the
// HTTPS listener (443): telemetry one by one and in batches, cloud-to-device receive with
// complete / reject / abandon, and file upload (`uploadToBlob`: SAS slot, @azure/storage-blob
// 12.8.0 Put Block + Put Block List to the built-in blob endpoint, notification) with the
// notification reaching an azure-iothub file-notification receiver (AMQP, §6). Bad input is sent
// by hand and must get Azure's status and error code.
'use strict';

const { test, after } = require('node:test');
const assert = require('node:assert/strict');
const https = require('node:https');
const { Readable } = require('node:stream');
const { Client, Message } = require('azure-iot-device');
const { Http } = require('azure-iot-device-http');
const {
  HOST_NAME, c2dSend, caPem, closeAll, connectionString, createSasDevice, deviceEvents, feedbackRecords,
  parseConnectionString, registry, signDeviceToken, signServiceToken, within,
} = require('./helpers');

const reg = registry();
const clients = [];
after(async () => {
  for (const client of clients) await client.close().catch(() => {});
  if (sharedService) await sharedService.close().catch(() => {});
  await closeAll();
});

function httpClient(cs) {
  const client = Client.fromConnectionString(cs, Http);
  // Poll for cloud-to-device messages every second, one at a time.
  client.setOptions({ ca: caPem(), http: { receivePolicy: { interval: 1, drain: false } } });
  clients.push(client);
  return client;
}

let sharedService = null;
async function serviceClient() {
  if (!sharedService) {
    const { Client: ServiceClient } = require('azure-iothub');
    sharedService = ServiceClient.fromConnectionString(connectionString());
    await within(20000, sharedService.open(), 'service open()');
  }
  return sharedService;
}

// A raw HTTPS request to the hub as a device would make it; resolves { status, headers, body }.
function deviceRequest(method, path, { token, headers = {}, body } = {}) {
  return new Promise((resolve, reject) => {
    const request = https.request({
      host: HOST_NAME, port: 443, method, path, ca: caPem(),
      headers: { ...(token ? { Authorization: token } : {}), ...headers },
    }, (response) => {
      const chunks = [];
      response.on('data', (chunk) => chunks.push(chunk));
      response.on('end', () => resolve({ status: response.statusCode, headers: response.headers, body: Buffer.concat(chunks).toString() }));
    });
    request.on('error', reject);
    if (body !== undefined) request.write(body);
    request.end();
  });
}

function tokenFor(device) {
  return signDeviceToken(`${HOST_NAME}/devices/${device.deviceId}`, device.primaryKey, Math.floor(Date.now() / 1000) + 3600);
}

const API = 'api-version=2021-04-12';

test('sendEvent and sendEventBatch over HTTPS reach the event log with their properties', async () => {
  const device = await createSasDevice(reg, 'node-http-send');
  const client = httpClient(device.cs);
  await within(20000, client.open(), 'open()');

  const one = new Message('single over http');
  one.messageId = 'http-1';
  one.correlationId = 'corr-1';
  one.contentType = 'application/json';
  one.contentEncoding = 'utf-8';
  one.properties.add('unit', 'C');
  await within(20000, client.sendEvent(one), 'sendEvent()');

  const batch = ['b-0', 'b-1', 'b-2'].map((text, i) => {
    const message = new Message(text);
    message.properties.add('index', String(i));
    return message;
  });
  await within(20000, client.sendEventBatch(batch), 'sendEventBatch()');

  const events = await deviceEvents(device.deviceId, { expect: 4 });
  assert.deepEqual(events.map((e) => e.payload), ['single over http', 'b-0', 'b-1', 'b-2']);
  assert.equal(events[0].properties.system['message-id'], 'http-1');
  assert.equal(events[0].properties.system['correlation-id'], 'corr-1');
  assert.deepEqual(events[0].properties.application, { unit: 'C' });
  assert.deepEqual(events.slice(1).map((e) => e.properties.application), [{ index: '0' }, { index: '1' }, { index: '2' }]);
});

test('cloud-to-device over HTTPS: receive, complete, reject and abandon, with feedback', async () => {
  const device = await createSasDevice(reg, 'node-http-c2d');
  const client = httpClient(device.cs);
  await within(20000, client.open(), 'open()');
  const inbox = [];
  let wake = () => {};
  client.on('message', (msg) => { inbox.push(msg); wake(); });
  const next = async (what) => {
    const deadline = Date.now() + 20000;
    while (inbox.length === 0) {
      if (Date.now() > deadline) throw new Error(`no message: ${what}`);
      await new Promise((resolve) => { wake = resolve; setTimeout(resolve, 200); });
    }
    return inbox.shift();
  };

  await c2dSend(device.deviceId, 'complete me', { messageId: 'h-complete', ack: 'full', properties: { k: 'v' } });
  const first = await next('complete me');
  assert.equal(first.data.toString(), 'complete me');
  assert.equal(first.messageId, 'h-complete');
  assert.equal(first.properties.getValue('iothub-app-k'), 'v');
  assert.ok(first.lockToken, 'the ETag is the lock token');
  await within(20000, client.complete(first), 'complete()');

  await c2dSend(device.deviceId, 'reject me', { messageId: 'h-reject', ack: 'full' });
  await within(20000, client.reject(await next('reject me')), 'reject()');

  await c2dSend(device.deviceId, 'abandon me', { messageId: 'h-abandon', ack: 'full' });
  const abandoned = await next('abandon me');
  await within(20000, client.abandon(abandoned), 'abandon()');
  const again = await next('abandon me, again');
  assert.equal(again.messageId, 'h-abandon', 'an abandoned message comes back');
  assert.notEqual(again.lockToken, abandoned.lockToken, 'under a new lock');
  await within(20000, client.complete(again), 'complete() after abandon');

  const records = await feedbackRecords(device.deviceId, { expect: 3 });
  const outcome = Object.fromEntries(records.map((r) => [r.originalMessageId, r.statusCode]));
  assert.deepEqual(outcome, { 'h-complete': 'Success', 'h-reject': 'Rejected', 'h-abandon': 'Success' });

  // The lock is gone once settled: completing again is 412 DeviceMessageLockLost.
  const stale = await deviceRequest('DELETE', `/devices/${device.deviceId}/messages/devicebound/${encodeURIComponent(first.lockToken)}?${API}`, { token: tokenFor(device) });
  assert.equal(stale.status, 412);
  assert.equal(stale.headers['iothub-errorcode'], 'DeviceMessageLockLost');
});

test('uploadToBlob stores the file in the built-in blob endpoint and notifies the file-notification receiver', async () => {
  const device = await createSasDevice(reg, 'node-http-upload');
  const service = await serviceClient();
  const { result: receiver } = await within(20000, service.getFileNotificationReceiver(), 'getFileNotificationReceiver()');
  const notifications = [];
  receiver.on('message', (msg) => {
    notifications.push(JSON.parse(msg.getData().toString()));
    receiver.complete(msg, () => {});
  });

  const client = httpClient(device.cs);
  // 6 MiB: more than one 4 MiB block, so Put Block twice and Put Block List.
  const content = Buffer.alloc(6 * 1024 * 1024 + 17, 'outpost ');
  await within(60000, client.uploadToBlob('reports/today.txt', Readable.from([content]), content.length), 'uploadToBlob()');

  const deadline = Date.now() + 20000;
  while (!notifications.some((n) => n.deviceId === device.deviceId) && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 100));
  }
  const notification = notifications.find((n) => n.deviceId === device.deviceId);
  assert.ok(notification, 'a file-upload notification arrived');
  assert.equal(notification.blobName, `${device.deviceId}/reports/today.txt`);
  assert.equal(notification.blobSizeInBytes, content.length);
  assert.ok(notification.blobUri.endsWith(`/${device.deviceId}/reports/today.txt`), notification.blobUri);
  assert.ok(!Number.isNaN(Date.parse(notification.lastUpdatedTime)));
  assert.ok(!Number.isNaN(Date.parse(notification.enqueuedTimeUtc)));
  await within(10000, receiver.detach(), 'detach()');

  // The back end reads the blob with the hub's own credentials (a service SAS token).
  const parts = parseConnectionString(connectionString());
  const serviceToken = signServiceToken(parts.HostName, parts.SharedAccessKeyName, parts.SharedAccessKey, Math.floor(Date.now() / 1000) + 3600);
  const url = new URL(notification.blobUri);
  const read = await deviceRequest('GET', url.pathname, { token: serviceToken, headers: { 'x-ms-version': '2020-10-02' } });
  assert.equal(read.status, 200);
  assert.equal(read.body.length, content.length);
  assert.ok(read.body === content.toString());
});

test('bad input over HTTPS gets Azure statuses and error codes, and touches nothing else', async () => {
  const device = await createSasDevice(reg, 'node-http-bad');
  const other = await createSasDevice(reg, 'node-http-other');
  const token = tokenFor(device);
  const events = `/devices/${device.deviceId}/messages/events?${API}`;
  const batchHeaders = { 'Content-Type': 'application/vnd.microsoft.iothub.json' };

  const badBase64 = await deviceRequest('POST', events, { token, headers: batchHeaders, body: '[{"body": "not base64!"}]' });
  assert.equal(badBase64.status, 400);
  assert.equal(badBase64.headers['iothub-errorcode'], 'ArgumentInvalid');

  const big = Buffer.alloc(200 * 1024).toString('base64');
  const oversized = await deviceRequest('POST', events, { token, headers: batchHeaders, body: `[{"body":"${big}"},{"body":"${big}"}]` });
  assert.equal(oversized.status, 413);
  assert.equal(oversized.headers['iothub-errorcode'], 'MessageTooLarge');

  const tooBig = await deviceRequest('POST', events, { token, body: Buffer.alloc(256 * 1024 + 1) });
  assert.equal(tooBig.status, 413);

  // A device's token reaches only its own messages.
  const foreign = await deviceRequest('POST', `/devices/${other.deviceId}/messages/events?${API}`, { token, body: 'x' });
  assert.equal(foreign.status, 401);
  assert.equal(foreign.headers['iothub-errorcode'], 'IotHubUnauthorizedAccess');
  const none = await deviceRequest('GET', `/devices/${device.deviceId}/messages/devicebound?${API}`, {});
  assert.equal(none.status, 401);

  const unknownLock = await deviceRequest('DELETE', `/devices/${device.deviceId}/messages/devicebound/no-such-lock?${API}`, { token });
  assert.equal(unknownLock.status, 412);
  assert.equal(unknownLock.headers['iothub-errorcode'], 'DeviceMessageLockLost');
  const unknownAbandon = await deviceRequest('POST', `/devices/${device.deviceId}/messages/devicebound/no-such-lock/abandon?${API}`, { token, headers: { 'Content-Length': '0' } });
  assert.equal(unknownAbandon.status, 412);

  // A correlation id is good only for the device it was given to.
  const slot = await deviceRequest('POST', `/devices/${other.deviceId}/files?${API}`, {
    token: tokenFor(other), headers: { 'Content-Type': 'application/json' }, body: '{"blobName":"x.txt"}',
  });
  assert.equal(slot.status, 200);
  const { correlationId, sasToken, hostName, containerName, blobName } = JSON.parse(slot.body);
  assert.equal(hostName, HOST_NAME);
  assert.equal(blobName, `${other.deviceId}/x.txt`);
  assert.ok(sasToken.startsWith('?'));
  const stolen = await deviceRequest('POST', `/devices/${device.deviceId}/files/notifications/${encodeURIComponent(correlationId)}?${API}`, {
    token, headers: { 'Content-Type': 'application/json' }, body: '{"isSuccess":true,"statusCode":201,"statusDescription":"ok"}',
  });
  assert.equal(stolen.status, 400);
  const forged = await deviceRequest('POST', `/devices/${device.deviceId}/files/notifications?${API}`, {
    token, headers: { 'Content-Type': 'application/json' }, body: '{"correlationId":"forged","isSuccess":true,"statusCode":201,"statusDescription":"ok"}',
  });
  assert.equal(forged.status, 400);
  // A blob SAS for one device's blob does not write another's.
  const otherPath = `/${containerName}/${device.deviceId}/x.txt${sasToken}`;
  const crossWrite = await deviceRequest('PUT', otherPath, { headers: { 'x-ms-blob-type': 'BlockBlob', 'x-ms-version': '2020-10-02' }, body: 'x' });
  assert.equal(crossWrite.status, 403);
  assert.equal(crossWrite.headers['x-ms-error-code'], 'AuthenticationFailed');

  // Nothing of the above reached the event log; a good message still goes through.
  const good = await deviceRequest('POST', events, { token, body: 'still fine' });
  assert.equal(good.status, 204);
  const logged = await deviceEvents(device.deviceId, { expect: 1 });
  assert.deepEqual(logged.map((e) => e.payload), ['still fine']);
});
