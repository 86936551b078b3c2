// Device identity CRUD through the official azure-iothub 1.16.6 Registry.
'use strict';

const { test } = require('node:test');
const assert = require('node:assert/strict');
const { Device } = require('azure-iothub');
const { assertGeneratedKey, errors, newId, newKey, registry, rejectsWith } = require('./helpers');

const reg = registry();

test('creating a device with empty keys makes the hub generate two distinct keys', async () => {
  const deviceId = newId('node-gen');
  // registry.js:_normalizeAuthentication turns a missing authentication into empty SAS keys.
  const { responseBody: device, httpResponse } = await reg.create({ deviceId, status: 'enabled' });

  assert.equal(httpResponse.statusCode, 200);
  assert.ok(device instanceof Device);
  assert.equal(device.deviceId, deviceId);
  assert.equal(device.status, 'enabled');
  assert.equal(device.authentication.type, 'sas');
  assertGeneratedKey(device.authentication.symmetricKey.primaryKey);
  assertGeneratedKey(device.authentication.symmetricKey.secondaryKey);
  assert.notEqual(device.authentication.symmetricKey.primaryKey, device.authentication.symmetricKey.secondaryKey);
  assert.ok(device.etag, 'a created device must carry an etag');
  assert.ok(device.generationId, 'a created device must carry a generationId');
  assert.equal(device.connectionState, 'Disconnected');
});

test('device responses carry the etag as a quoted ETag header', async () => {
  // Wire reference section 5.1: return `ETag: "<etag>"` and `etag` in the JSON body.
  const deviceId = newId('node-etag');
  const { responseBody: created, httpResponse: put } = await reg.create({ deviceId });
  assert.equal(put.headers.etag, `"${created.etag}"`);
  const { responseBody: fetched, httpResponse: get } = await reg.get(deviceId);
  assert.equal(get.headers.etag, `"${fetched.etag}"`);
  const { responseBody: twin, httpResponse: twinGet } = await reg.getTwin(deviceId);
  assert.equal(twinGet.headers.etag, `"${twin.etag}"`);
});

test('creating a device with explicit keys keeps them', async () => {
  const deviceId = newId('node-keys');
  const primaryKey = newKey();
  const secondaryKey = newKey();
  const { responseBody: device } = await reg.create({
    deviceId,
    status: 'enabled',
    authentication: { symmetricKey: { primaryKey, secondaryKey } },
  });

  assert.equal(device.authentication.type, 'sas');
  assert.equal(device.authentication.symmetricKey.primaryKey, primaryKey);
  assert.equal(device.authentication.symmetricKey.secondaryKey, secondaryKey);
});

test('creating an X.509 device stores the thumbprints', async () => {
  const deviceId = newId('node-x509');
  const primaryThumbprint = 'A'.repeat(40);
  const secondaryThumbprint = 'B'.repeat(40);
  const { responseBody: device } = await reg.create({
    deviceId,
    status: 'enabled',
    authentication: { x509Thumbprint: { primaryThumbprint, secondaryThumbprint } },
  });

  assert.equal(device.authentication.type, 'selfSigned');
  assert.equal(device.authentication.x509Thumbprint.primaryThumbprint, primaryThumbprint);
  assert.equal(device.authentication.x509Thumbprint.secondaryThumbprint, secondaryThumbprint);
});

test('getting a device returns the stored identity', async () => {
  const deviceId = newId('node-get');
  const { responseBody: created } = await reg.create({ deviceId });

  const { responseBody: fetched, httpResponse } = await reg.get(deviceId);

  assert.equal(httpResponse.statusCode, 200);
  assert.equal(fetched.deviceId, deviceId);
  assert.equal(fetched.etag, created.etag);
  assert.equal(fetched.generationId, created.generationId);
  assert.equal(fetched.authentication.symmetricKey.primaryKey, created.authentication.symmetricKey.primaryKey);
  assert.equal(fetched.authentication.symmetricKey.secondaryKey, created.authentication.symmetricKey.secondaryKey);
});

test('updating a device changes its status and etag and keeps its generationId', async () => {
  const deviceId = newId('node-upd');
  const { responseBody: created } = await reg.create({ deviceId, status: 'enabled' });

  const { responseBody: updated } = await reg.update({
    deviceId,
    status: 'disabled',
    statusReason: 'maintenance',
    authentication: created.authentication,
  });

  assert.equal(updated.status, 'disabled');
  assert.equal(updated.statusReason, 'maintenance');
  assert.equal(updated.generationId, created.generationId);
  assert.ok(updated.etag && updated.etag !== created.etag, 'an update must change the etag');
  assert.equal(updated.authentication.symmetricKey.primaryKey, created.authentication.symmetricKey.primaryKey);
  const { responseBody: fetched } = await reg.get(deviceId);
  assert.equal(fetched.status, 'disabled');
});

test('deleting a device makes it unknown', async () => {
  const deviceId = newId('node-del');
  await reg.create({ deviceId });

  const { httpResponse } = await reg.delete(deviceId);

  assert.equal(httpResponse.statusCode, 204);
  await rejectsWith(reg.get(deviceId), errors.DeviceNotFoundError);
  await rejectsWith(reg.delete(deviceId), errors.DeviceNotFoundError);
});

test('listing devices includes every created device', async () => {
  const ids = [newId('node-list'), newId('node-list'), newId('node-list')];
  for (const deviceId of ids) await reg.create({ deviceId });

  const { responseBody: devices } = await reg.list();

  assert.ok(Array.isArray(devices));
  const listed = new Set(devices.map((d) => d.deviceId));
  for (const deviceId of ids) assert.ok(listed.has(deviceId), `${deviceId} missing from list`);
  assert.ok(devices.every((d) => d instanceof Device));
});

async function assertIdRoundTrips(deviceId) {
  const { responseBody: created } = await reg.create({ deviceId });
  assert.equal(created.deviceId, deviceId);
  const { responseBody: fetched } = await reg.get(deviceId);
  assert.equal(fetched.deviceId, deviceId);
  const { responseBody: twin } = await reg.getTwin(deviceId);
  assert.equal(twin.deviceId, deviceId);
  await reg.delete(deviceId);
  await rejectsWith(reg.get(deviceId), errors.DeviceNotFoundError);
}

test('device ids with special characters round-trip through the URL', async () => {
  // The long-standing allowed set - . % _ * ? ! ( ) , : = @ $ '; encodeURIComponent leaves
  // ! ' ( ) * raw in the path and percent-encodes the others.
  await assertIdRoundTrips(`n-.%_*?!(),:=@$'${newId('x')}`);
});

test('device ids with + and # round-trip through the URL', async () => {
  // Microsoft's current deviceId documentation also allows + and #.
  await assertIdRoundTrips(`n+plus#hash-${newId('x')}`);
});
