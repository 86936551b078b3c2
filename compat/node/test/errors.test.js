// Errors as the SDK's own error classes (rest_api_client.js:translateError), and authorization.
'use strict';

const { test } = require('node:test');
const assert = require('node:assert/strict');
const { Registry, SharedAccessSignature } = require('azure-iothub');
const {
  connectionString, errors, newId, newKey, parseConnectionString, registry, rejectsWith, signServiceToken,
} = require('./helpers');

const reg = registry();
const owner = parseConnectionString(connectionString());
const nowSeconds = () => Math.floor(Date.now() / 1000);

test('get of an unknown device fails with DeviceNotFoundError', async () => {
  const err = await rejectsWith(reg.get(newId('node-unknown')), errors.DeviceNotFoundError);
  assert.equal(err.response.statusCode, 404);
});

test('creating an existing device id fails with DeviceAlreadyExistsError', async () => {
  const deviceId = newId('node-dup');
  const { responseBody: original } = await reg.create({ deviceId });

  const err = await rejectsWith(
    reg.create({ deviceId, authentication: { symmetricKey: { primaryKey: newKey(), secondaryKey: newKey() } } }),
    errors.DeviceAlreadyExistsError,
  );

  assert.equal(err.response.statusCode, 409);
  const { responseBody: stored } = await reg.get(deviceId);
  assert.equal(stored.authentication.symmetricKey.primaryKey, original.authentication.symmetricKey.primaryKey);
});

test('an invalid device id fails with ArgumentError (400)', async () => {
  for (const bad of ['has space', 'amp&ersand', 'x'.repeat(129)]) {
    const err = await rejectsWith(reg.create({ deviceId: bad }), errors.ArgumentError);
    assert.equal(err.response.statusCode, 400, `for id ${JSON.stringify(bad)}`);
  }
});

test('a hand-signed token with a future expiry is accepted (control for the tests below)', async () => {
  const token = signServiceToken(owner.HostName, owner.SharedAccessKeyName, owner.SharedAccessKey, nowSeconds() + 600);
  const { httpResponse } = await Registry.fromSharedAccessSignature(token).getRegistryStatistics();
  assert.equal(httpResponse.statusCode, 200);
});

test('an expired token fails with UnauthorizedError', async () => {
  const token = signServiceToken(owner.HostName, owner.SharedAccessKeyName, owner.SharedAccessKey, nowSeconds() - 60);
  const expired = Registry.fromSharedAccessSignature(token);

  const err = await rejectsWith(expired.get(newId('node-any')), errors.UnauthorizedError);
  assert.equal(err.response.statusCode, 401);
  await rejectsWith(expired.getRegistryStatistics(), errors.UnauthorizedError);
});

test('an expired token made with the SDK SharedAccessSignature.create fails with UnauthorizedError', async () => {
  const token = SharedAccessSignature.create(owner.HostName, owner.SharedAccessKeyName, owner.SharedAccessKey, nowSeconds() - 3600).toString();
  await rejectsWith(Registry.fromSharedAccessSignature(token).getRegistryStatistics(), errors.UnauthorizedError);
});

test('a token signed with a wrong key fails with UnauthorizedError', async () => {
  const token = signServiceToken(owner.HostName, owner.SharedAccessKeyName, newKey(), nowSeconds() + 600);
  const err = await rejectsWith(Registry.fromSharedAccessSignature(token).getRegistryStatistics(), errors.UnauthorizedError);
  assert.equal(err.response.statusCode, 401);
});

test('a connection string with a wrong key fails with UnauthorizedError', async () => {
  const forged = Registry.fromConnectionString(
    `HostName=${owner.HostName};SharedAccessKeyName=${owner.SharedAccessKeyName};SharedAccessKey=${newKey()}`,
  );
  await rejectsWith(forged.getRegistryStatistics(), errors.UnauthorizedError);
  await rejectsWith(forged.get(newId('node-any')), errors.UnauthorizedError);
});

test('a token naming another policy than the one whose key signed it fails with UnauthorizedError', async () => {
  const read = parseConnectionString(connectionString('registryRead'));
  const token = signServiceToken(owner.HostName, read.SharedAccessKeyName, owner.SharedAccessKey, nowSeconds() + 600);
  await rejectsWith(Registry.fromSharedAccessSignature(token).getRegistryStatistics(), errors.UnauthorizedError);
});

test('the registryRead policy can read but creating a device fails with UnauthorizedError', async () => {
  const existing = newId('node-ro');
  await reg.create({ deviceId: existing });
  const reader = registry('registryRead');

  const { responseBody: device } = await reader.get(existing);
  assert.equal(device.deviceId, existing);

  const refused = newId('node-ro-new');
  await rejectsWith(reader.create({ deviceId: refused }), errors.UnauthorizedError);
  await rejectsWith(reader.delete(existing), errors.UnauthorizedError);
  await rejectsWith(reg.get(refused), errors.DeviceNotFoundError);
});

test('the registryReadWrite policy can create and delete devices', async () => {
  const writer = registry('registryReadWrite');
  const deviceId = newId('node-rw');
  const { responseBody: created } = await writer.create({ deviceId });
  assert.equal(created.deviceId, deviceId);
  await writer.delete(deviceId);
  await rejectsWith(writer.get(deviceId), errors.DeviceNotFoundError);
});
