// Automatic device management and IoT Edge deployments through azure-iothub 1.16.6's Registry:
// `addConfiguration`, `getConfiguration`, `getConfigurations`, `updateConfiguration` (etag and
// forced), `removeConfiguration` and `applyConfigurationContentOnDevice` (wire contract §5.2,
// §5.3). The reconciler applies configurations after each change and every 10 s; tests poll
// (bounded). A connected MQTT device gets the content as a desired-property notification.
'use strict';

const { test, after } = require('node:test');
const assert = require('node:assert/strict');
const errors = require('azure-iothub/dist/common-core/errors');
const { closeAll, createSasDevice, deviceClient, newId, registry, rejectsWith, within } = require('./helpers');

const reg = registry();
after(closeAll);

async function poll(what, fetch, ok, timeoutMs = 25000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const result = await fetch();
    if (ok(result)) return result;
    if (Date.now() > deadline) assert.fail(`${what}: still ${JSON.stringify(result)} after ${timeoutMs / 1000}s`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

async function desired(deviceId) {
  const { responseBody } = await reg.getTwin(deviceId);
  return responseBody.properties.desired;
}

async function systemResults(id) {
  const { responseBody } = await reg.getConfiguration(id);
  return responseBody.systemMetrics.results;
}

test('add, get, list, update with the etag and remove a configuration', async () => {
  const id = newId('nodecfg');
  const { responseBody: created, httpResponse: response } = await reg.addConfiguration({
    id,
    content: { deviceContent: { 'properties.desired.nodecfg': { level: 1 } } },
    targetCondition: "tags.nothing = 'here'",
    priority: 2,
    labels: { owner: 'node' },
    metrics: { queries: { levelled: 'SELECT deviceId FROM devices WHERE properties.desired.nodecfg.level = 1' } },
  });
  assert.equal(response.statusCode, 201);
  assert.equal(created.id, id);
  assert.equal(created.schemaVersion, '1.0');
  assert.equal(response.headers.etag, `"${created.etag}"`);
  assert.deepEqual(created.content.deviceContent, { 'properties.desired.nodecfg': { level: 1 } });
  assert.deepEqual(created.systemMetrics.results, { targetedCount: 0, appliedCount: 0 });

  const { responseBody: got } = await reg.getConfiguration(id);
  assert.equal(got.etag, created.etag);
  const { responseBody: all } = await reg.getConfigurations();
  assert.ok(all.some((c) => c.id === id), 'listed');

  got.priority = 4;
  got.labels = { owner: 'node', stage: 'two' };
  const { responseBody: updated, httpResponse: updateResponse } = await reg.updateConfiguration(got);
  assert.equal(updateResponse.statusCode, 200);
  assert.equal(updated.priority, 4);
  assert.deepEqual(updated.labels, { owner: 'node', stage: 'two' });
  assert.notEqual(updated.etag, created.etag);

  // `got` still carries the old etag: 412.
  await rejectsWith(reg.updateConfiguration(got), errors.InvalidEtagError);
  // Forced (If-Match "*") works.
  got.priority = 6;
  const { responseBody: forced } = await reg.updateConfiguration(got, true);
  assert.equal(forced.priority, 6);

  await reg.removeConfiguration(id);
  const err = await rejectsWith(reg.getConfiguration(id), Error);
  assert.equal(err.response.statusCode, 404);
  assert.match(err.responseBody, /ConfigurationNotFound/);
});

test('a configuration reaches tagged twins and a connected device by priority', async () => {
  const site = newId('nsite');
  const device = await createSasDevice(reg, 'ncfg');
  await reg.updateTwin(device.deviceId, { tags: { site } }, '*');
  const client = deviceClient(device.cs);
  await within(20000, client.open(), 'open()');
  const twin = await within(20000, client.getTwin(), 'getTwin()');
  const deltas = [];
  twin.on('properties.desired', (delta) => deltas.push(delta));

  const low = newId('nlow');
  const high = newId('nhigh');
  await reg.addConfiguration({
    id: low,
    content: { deviceContent: { 'properties.desired.light.color': 'red', 'properties.desired.light.on': true } },
    targetCondition: `tags.site = '${site}'`,
    priority: 1,
  });
  await reg.addConfiguration({
    id: high,
    content: { deviceContent: { 'properties.desired.light.color': 'blue' } },
    targetCondition: `tags.site = '${site}'`,
    priority: 50,
  });
  const light = await poll('both applied', async () => (await desired(device.deviceId)).light,
    (value) => value && value.color === 'blue' && value.on === true);
  assert.deepEqual(light, { color: 'blue', on: true });
  await poll('the device heard it', async () => deltas, (seen) => seen.some((d) => d.light && d.light.color === 'blue'));
  await poll('metrics', async () => [await systemResults(high), await systemResults(low)],
    ([h, l]) => h.appliedCount === 1 && l.appliedCount === 1 && h.targetedCount === 1);
});

test('applyConfigurationContentOnDevice sets the $edgeAgent module twin of an edge device', async () => {
  const deviceId = newId('nedge');
  await reg.create({ deviceId, capabilities: { iotEdge: true } });
  const content = {
    modulesContent: {
      $edgeAgent: { 'properties.desired': { schemaVersion: '1.1', modules: { probe: { version: '3.0' } } } },
      $edgeHub: { 'properties.desired': { schemaVersion: '1.1', routes: {} } },
    },
  };
  const { httpResponse: response } = await reg.applyConfigurationContentOnDevice(deviceId, content);
  assert.equal(response.statusCode, 204);
  const { responseBody: agent } = await reg.getModuleTwin(deviceId, '$edgeAgent');
  assert.deepEqual(agent.properties.desired.modules, { probe: { version: '3.0' } });
  const { responseBody: modules } = await reg.getModulesOnDevice(deviceId);
  assert.deepEqual(modules.map((m) => m.moduleId).sort(), ['$edgeAgent', '$edgeHub']);

  // Applying again replaces the document: a module left out is gone.
  content.modulesContent.$edgeAgent['properties.desired'].modules = { other: { version: '1.0' } };
  await reg.applyConfigurationContentOnDevice(deviceId, content);
  const { responseBody: again } = await reg.getModuleTwin(deviceId, '$edgeAgent');
  assert.deepEqual(again.properties.desired.modules, { other: { version: '1.0' } });
});

test('bad configurations get Azure errors', async () => {
  const badCondition = await rejectsWith(reg.addConfiguration({
    id: newId('nbad'),
    content: { deviceContent: { 'properties.desired.x': 1 } },
    targetCondition: "tags.a = 'b' OR",
  }), errors.ArgumentError);
  assert.match(badCondition.responseBody, /column/);
  await rejectsWith(reg.addConfiguration({
    id: newId('nboth'),
    content: { deviceContent: { 'properties.desired.x': 1 }, modulesContent: { $edgeAgent: { 'properties.desired': {} } } },
    targetCondition: '*',
  }), errors.ArgumentError);
  const err = await rejectsWith(reg.removeConfiguration(newId('nghost')), Error);
  assert.equal(err.response.statusCode, 404);
  const missing = await rejectsWith(reg.applyConfigurationContentOnDevice(newId('nnone'), { modulesContent: { $edgeAgent: { 'properties.desired': {} } } }), errors.DeviceNotFoundError);
  assert.ok(missing);
});
