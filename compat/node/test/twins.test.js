// Device twins through the official azure-iothub 1.16.6 Registry and Twin.
'use strict';

const { test } = require('node:test');
const assert = require('node:assert/strict');
const { Twin } = require('azure-iothub');
const { errors, newId, registry, rejectsWith, userProps } = require('./helpers');

const reg = registry();

async function newDevice(prefix) {
  const deviceId = newId(prefix);
  await reg.create({ deviceId });
  return deviceId;
}

test('getTwin returns a Twin with etag and desired/reported versions', async () => {
  const deviceId = await newDevice('node-twin');

  const { responseBody: twin, httpResponse } = await reg.getTwin(deviceId);

  assert.equal(httpResponse.statusCode, 200);
  assert.ok(twin instanceof Twin);
  assert.equal(twin.deviceId, deviceId);
  assert.ok(twin.etag && twin.etag !== '*', 'the hub must return the twin etag');
  assert.equal(typeof twin.properties.desired.$version, 'number');
  assert.equal(typeof twin.properties.reported.$version, 'number');
  assert.deepEqual(userProps(twin.properties.desired), {});
});

test('updateTwin with the current etag merges tags and desired and bumps the version', async () => {
  const deviceId = await newDevice('node-twin-upd');
  const { responseBody: before } = await reg.getTwin(deviceId);

  const { responseBody: first } = await reg.updateTwin(deviceId, {
    tags: { site: { name: 'north', floor: 2 }, owner: 'ops' },
    properties: { desired: { interval: 10, mode: 'eco' } },
  }, before.etag);

  assert.deepEqual(first.tags, { site: { name: 'north', floor: 2 }, owner: 'ops' });
  assert.deepEqual(userProps(first.properties.desired), { interval: 10, mode: 'eco' });
  assert.equal(first.properties.desired.$version, before.properties.desired.$version + 1);
  assert.notEqual(first.etag, before.etag);

  const { responseBody: second } = await reg.updateTwin(deviceId, {
    tags: { site: { floor: null }, owner: null, added: true },
    properties: { desired: { mode: null, fw: '1.2' } },
  }, first.etag);

  assert.deepEqual(second.tags, { site: { name: 'north' }, added: true });
  assert.deepEqual(userProps(second.properties.desired), { interval: 10, fw: '1.2' });
  assert.equal(second.properties.desired.$version, first.properties.desired.$version + 1);

  const { responseBody: stored } = await reg.getTwin(deviceId);
  assert.deepEqual(stored.tags, second.tags);
  assert.deepEqual(userProps(stored.properties.desired), userProps(second.properties.desired));
  assert.equal(stored.etag, second.etag);
});

test('updateTwin with a stale etag fails with InvalidEtagError and changes nothing', async () => {
  const deviceId = await newDevice('node-twin-stale');
  const { responseBody: original } = await reg.getTwin(deviceId);
  await reg.updateTwin(deviceId, { properties: { desired: { a: 1 } } }, original.etag);

  await rejectsWith(reg.updateTwin(deviceId, { properties: { desired: { a: 2 } } }, original.etag), errors.InvalidEtagError);

  const { responseBody: stored } = await reg.getTwin(deviceId);
  assert.deepEqual(userProps(stored.properties.desired), { a: 1 });
});

test('updateTwin with the wildcard etag is unconditional', async () => {
  const deviceId = await newDevice('node-twin-any');
  const { responseBody: twin } = await reg.updateTwin(deviceId, { tags: { any: 1 } }, '*');
  assert.deepEqual(twin.tags, { any: 1 });
});

test('Twin.update sends the twin etag and refreshes the local twin', async () => {
  const deviceId = await newDevice('node-twin-obj');
  const { responseBody: twin } = await reg.getTwin(deviceId);
  const etagBefore = twin.etag;

  // twin.js: update() PATCHes with If-Match: "<this.etag>" and copies back properties, tags, etag.
  await twin.update({ tags: { via: 'Twin.update' }, properties: { desired: { x: 1 } } });

  assert.deepEqual(twin.tags, { via: 'Twin.update' });
  assert.deepEqual(userProps(twin.properties.desired), { x: 1 });
  assert.notEqual(twin.etag, etagBefore);
});

test('getTwin of an unknown device fails with DeviceNotFoundError', async () => {
  await rejectsWith(reg.getTwin(newId('node-no-twin')), errors.DeviceNotFoundError);
});
