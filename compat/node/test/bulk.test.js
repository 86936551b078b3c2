// Bulk registry operations (POST /devices) and registry statistics through azure-iothub 1.16.6.
'use strict';

const { test } = require('node:test');
const assert = require('node:assert/strict');
const { assertGeneratedKey, errors, newId, newKey, registry, rejectsWith } = require('./helpers');

const reg = registry();

async function counts() {
  const { responseBody: stats, httpResponse } = await reg.getRegistryStatistics();
  assert.equal(httpResponse.statusCode, 200);
  return [stats.totalDeviceCount, stats.enabledDeviceCount, stats.disabledDeviceCount];
}

test('addDevices creates every listed device (importMode create)', async () => {
  const generated = newId('node-bulk-gen');
  const given = newId('node-bulk-given');
  const disabled = newId('node-bulk-off');
  const primaryKey = newKey();
  const secondaryKey = newKey();

  const { responseBody: result, httpResponse } = await reg.addDevices([
    { deviceId: generated },
    { deviceId: given, status: 'enabled', authentication: { symmetricKey: { primaryKey, secondaryKey } } },
    { deviceId: disabled, status: 'disabled' },
  ]);

  assert.equal(httpResponse.statusCode, 200);
  assert.equal(result.isSuccessful, true, JSON.stringify(result));
  assert.deepEqual(result.errors, []);

  const { responseBody: gen } = await reg.get(generated);
  assertGeneratedKey(gen.authentication.symmetricKey.primaryKey);
  assertGeneratedKey(gen.authentication.symmetricKey.secondaryKey);
  const { responseBody: kept } = await reg.get(given);
  assert.equal(kept.authentication.symmetricKey.primaryKey, primaryKey);
  assert.equal(kept.authentication.symmetricKey.secondaryKey, secondaryKey);
  const { responseBody: off } = await reg.get(disabled);
  assert.equal(off.status, 'disabled');
});

test('addDevices reports an already registered device in errors', async () => {
  const existing = newId('node-bulk-dup');
  await reg.create({ deviceId: existing });

  let result;
  try {
    ({ responseBody: result } = await reg.addDevices([{ deviceId: existing }]));
  } catch (err) {
    // A 400 answer is an ArgumentError whose body carries the bulk result.
    assert.ok(err instanceof errors.ArgumentError, `unexpected ${err.name}`);
    result = JSON.parse(err.responseBody);
  }
  assert.equal(result.isSuccessful, false);
  assert.deepEqual(result.errors.map((e) => e.deviceId), [existing]);
  assert.equal(result.errors[0].errorCode, 'DeviceAlreadyExists');
});

test('updateDevices with forceUpdate (importMode "Update") changes every device', async () => {
  const ids = [newId('node-bulk-upd'), newId('node-bulk-upd')];
  await reg.addDevices(ids.map((deviceId) => ({ deviceId, status: 'enabled' })));
  const current = await Promise.all(ids.map(async (id) => (await reg.get(id)).responseBody));

  const { responseBody: result } = await reg.updateDevices(
    current.map((d) => ({ deviceId: d.deviceId, status: 'disabled', authentication: d.authentication })),
    true,
  );

  assert.equal(result.isSuccessful, true, JSON.stringify(result));
  for (const id of ids) {
    const { responseBody: device } = await reg.get(id);
    assert.equal(device.status, 'disabled');
  }
});

test('updateDevices without forceUpdate (importMode "UpdateIfMatchETag") applies only with the current etag', async () => {
  const fresh = newId('node-bulk-etag');
  const stale = newId('node-bulk-etag');
  await reg.addDevices([{ deviceId: fresh }, { deviceId: stale }]);
  const { responseBody: freshDevice } = await reg.get(fresh);
  const { responseBody: staleDevice } = await reg.get(stale);
  await reg.update({ deviceId: stale, status: 'enabled', authentication: staleDevice.authentication });

  // The SDK sends the objects as given: here Device objects from `get`, whose etag property is
  // `etag` (registry.js:_processBulkDevices only renames deviceId to id and adds importMode).
  let result;
  try {
    ({ responseBody: result } = await reg.updateDevices([
      { deviceId: fresh, etag: freshDevice.etag, status: 'disabled', authentication: freshDevice.authentication },
      { deviceId: stale, etag: staleDevice.etag, status: 'disabled', authentication: staleDevice.authentication },
    ], false));
  } catch (err) {
    assert.ok(err instanceof errors.ArgumentError, `unexpected ${err.name}: ${err.responseBody}`);
    result = JSON.parse(err.responseBody);
  }

  assert.equal(result.isSuccessful, false, JSON.stringify(result));
  assert.deepEqual(result.errors.map((e) => e.deviceId), [stale]);
  assert.equal((await reg.get(fresh)).responseBody.status, 'disabled');
  assert.equal((await reg.get(stale)).responseBody.status, 'enabled');
});

test('removeDevices with forceRemove (importMode "Delete") deletes every device', async () => {
  const ids = [newId('node-bulk-del'), newId('node-bulk-del'), newId('node-bulk-del')];
  const survivor = newId('node-bulk-keep');
  await reg.addDevices([...ids, survivor].map((deviceId) => ({ deviceId })));

  const { responseBody: result } = await reg.removeDevices(ids.map((deviceId) => ({ deviceId })), true);

  assert.equal(result.isSuccessful, true, JSON.stringify(result));
  for (const id of ids) await rejectsWith(reg.get(id), errors.DeviceNotFoundError);
  const { responseBody: kept } = await reg.get(survivor);
  assert.equal(kept.deviceId, survivor);
});

test('getRegistryStatistics follows creates, disables and deletes', async () => {
  const [total, enabled, disabled] = await counts();
  const on = newId('node-stat-on');
  const off = newId('node-stat-off');

  await reg.create({ deviceId: on, status: 'enabled' });
  await reg.create({ deviceId: off, status: 'disabled' });
  assert.deepEqual(await counts(), [total + 2, enabled + 1, disabled + 1]);

  const { responseBody: device } = await reg.get(on);
  await reg.update({ deviceId: on, status: 'disabled', authentication: device.authentication });
  assert.deepEqual(await counts(), [total + 2, enabled, disabled + 2]);

  await reg.delete(on);
  await reg.delete(off);
  assert.deepEqual(await counts(), [total, enabled, disabled]);
});
