// Module identities and module twins through the official azure-iothub 1.16.6 Registry.
'use strict';

const { test } = require('node:test');
const assert = require('node:assert/strict');
const { Twin } = require('azure-iothub');
const { assertGeneratedKey, errors, newId, newKey, registry, rejectsWith, userProps } = require('./helpers');

const reg = registry();

async function newDevice(prefix) {
  const deviceId = newId(prefix);
  await reg.create({ deviceId });
  return deviceId;
}

test('addModule with empty keys makes the hub generate keys', async () => {
  const deviceId = await newDevice('node-mod');

  const { responseBody: module, httpResponse } = await reg.addModule({ deviceId, moduleId: 'telemetry' });

  assert.ok([200, 201].includes(httpResponse.statusCode), `status ${httpResponse.statusCode}`);
  assert.equal(module.deviceId, deviceId);
  assert.equal(module.moduleId, 'telemetry');
  assert.equal(module.authentication.type, 'sas');
  assertGeneratedKey(module.authentication.symmetricKey.primaryKey);
  assertGeneratedKey(module.authentication.symmetricKey.secondaryKey);
  assert.ok(module.etag, 'a created module must carry an etag');
  assert.ok(module.generationId, 'a created module must carry a generationId');
});

test('getModule returns the stored module and getModulesOnDevice lists exactly the device modules', async () => {
  const deviceId = await newDevice('node-mod-list');
  const primaryKey = newKey();
  const secondaryKey = newKey();
  const { responseBody: created } = await reg.addModule({
    deviceId, moduleId: 'm1', authentication: { symmetricKey: { primaryKey, secondaryKey } },
  });
  await reg.addModule({ deviceId, moduleId: 'm2' });
  const otherDevice = await newDevice('node-mod-other');
  await reg.addModule({ deviceId: otherDevice, moduleId: 'm3' });

  const { responseBody: fetched } = await reg.getModule(deviceId, 'm1');
  assert.equal(fetched.moduleId, 'm1');
  assert.equal(fetched.deviceId, deviceId);
  assert.equal(fetched.etag, created.etag);
  assert.equal(fetched.authentication.symmetricKey.primaryKey, primaryKey);
  assert.equal(fetched.authentication.symmetricKey.secondaryKey, secondaryKey);

  const { responseBody: modules } = await reg.getModulesOnDevice(deviceId);
  assert.deepEqual(modules.map((m) => m.moduleId).sort(), ['m1', 'm2']);
});

test('updateModule with the current etag replaces keys; a stale etag fails with InvalidEtagError', async () => {
  const deviceId = await newDevice('node-mod-upd');
  const { responseBody: created } = await reg.addModule({ deviceId, moduleId: 'rotating' });
  const primaryKey = newKey();
  const secondaryKey = newKey();

  const { responseBody: updated } = await reg.updateModule({
    deviceId, moduleId: 'rotating', etag: created.etag,
    authentication: { type: 'sas', symmetricKey: { primaryKey, secondaryKey } },
  });

  assert.equal(updated.authentication.symmetricKey.primaryKey, primaryKey);
  assert.ok(updated.etag && updated.etag !== created.etag, 'an update must change the etag');

  await rejectsWith(reg.updateModule({
    deviceId, moduleId: 'rotating', etag: created.etag,
    authentication: { type: 'sas', symmetricKey: { primaryKey: newKey(), secondaryKey: newKey() } },
  }), errors.InvalidEtagError);

  const { responseBody: forced } = await reg.updateModule({
    deviceId, moduleId: 'rotating', managedBy: 'ops',
    authentication: { type: 'sas', symmetricKey: { primaryKey, secondaryKey } },
  }, true);
  assert.equal(forced.managedBy, 'ops');
});

test('removeModule deletes the module', async () => {
  const deviceId = await newDevice('node-mod-del');
  await reg.addModule({ deviceId, moduleId: 'keep' });
  await reg.addModule({ deviceId, moduleId: 'drop' });

  const { httpResponse } = await reg.removeModule(deviceId, 'drop');

  assert.equal(httpResponse.statusCode, 204);
  const { responseBody: modules } = await reg.getModulesOnDevice(deviceId);
  assert.deepEqual(modules.map((m) => m.moduleId), ['keep']);
  const err = await rejectsWith(reg.getModule(deviceId, 'drop'), Error);
  assert.equal(err.response && err.response.statusCode, 404);
});

// registry.js:_removeModule drops the promise callback when given a module object
// (`done = doneOrModuleId`), so that form only works with an explicit callback.
function removeModuleObject(module) {
  return new Promise((resolve, reject) => {
    reg.removeModule(module, (err, result, response) => (err ? reject(err) : resolve(response)));
  });
}

test('removeModule with a module object sends its etag', async () => {
  const deviceId = await newDevice('node-mod-del-etag');
  const { responseBody: created } = await reg.addModule({ deviceId, moduleId: 'm' });
  await reg.updateModule({ deviceId, moduleId: 'm', authentication: created.authentication }, true);

  await rejectsWith(removeModuleObject(created), errors.InvalidEtagError);

  const { responseBody: current } = await reg.getModule(deviceId, 'm');
  const response = await removeModuleObject(current);
  assert.equal(response.statusCode, 204);
  const { responseBody: modules } = await reg.getModulesOnDevice(deviceId);
  assert.deepEqual(modules, []);
});

test('addModule twice fails with DeviceAlreadyExistsError (409)', async () => {
  const deviceId = await newDevice('node-mod-dup');
  await reg.addModule({ deviceId, moduleId: 'dup' });
  await rejectsWith(reg.addModule({ deviceId, moduleId: 'dup' }), errors.DeviceAlreadyExistsError);
});

test('getModuleTwin and updateModuleTwin work on the module twin only', async () => {
  const deviceId = await newDevice('node-modtwin');
  await reg.addModule({ deviceId, moduleId: 'sensor' });
  await reg.addModule({ deviceId, moduleId: 'other' });

  const { responseBody: twin } = await reg.getModuleTwin(deviceId, 'sensor');
  assert.ok(twin instanceof Twin);
  assert.equal(twin.deviceId, deviceId);
  assert.equal(twin.moduleId, 'sensor');
  assert.ok(twin.etag && twin.etag !== '*', 'the hub must return the module twin etag');

  const { responseBody: updated } = await reg.updateModuleTwin(deviceId, 'sensor', {
    tags: { role: 'temp' }, properties: { desired: { rate: 5 } },
  }, twin.etag);
  assert.deepEqual(updated.tags, { role: 'temp' });
  assert.deepEqual(userProps(updated.properties.desired), { rate: 5 });
  assert.equal(updated.properties.desired.$version, twin.properties.desired.$version + 1);

  await rejectsWith(
    reg.updateModuleTwin(deviceId, 'sensor', { properties: { desired: { rate: 6 } } }, twin.etag),
    errors.InvalidEtagError,
  );
  const { responseBody: other } = await reg.getModuleTwin(deviceId, 'other');
  assert.deepEqual(userProps(other.properties.desired), {});
  const { responseBody: deviceTwin } = await reg.getTwin(deviceId);
  assert.deepEqual(userProps(deviceTwin.properties.desired), {});
});
