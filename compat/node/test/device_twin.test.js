// Device and module twins over MQTT with the official Node device SDK, checked with the Node
// service Registry. Note the Node twin client publishes its requests with QoS 0 and only sees an
// error when the response body has an `errorCode` (mqtt_twin_client.js:_onResponseMessage).
'use strict';

const { test, after } = require('node:test');
const assert = require('node:assert/strict');
const { promisify } = require('node:util');
const {
  closeAll, createSasDevice, createSasModule, deviceClient, moduleClient, registry, userProps, within,
} = require('./helpers');

const reg = registry();
after(closeAll);

async function openTwin(client) {
  await within(20000, client.open(), 'open()');
  return within(20000, client.getTwin(), 'getTwin()');
}

function updateReported(twin, patch) {
  return within(20000, promisify(twin.properties.reported.update)(patch), 'properties.reported.update()');
}

// Collects what `twin.on('properties.desired', …)` hands out and waits for a given $version.
function desiredListener(twin) {
  const seen = [];
  let wake = () => {};
  twin.on('properties.desired', (delta) => {
    seen.push(JSON.parse(JSON.stringify(delta)));
    wake();
  });
  return {
    seen,
    // Registering the listener subscribes asynchronously; this resolves once the SUBACK is in.
    ready: () => within(20000, promisify(twin.enableTwinDesiredPropertiesUpdates.bind(twin))(), 'subscribing to desired updates'),
    async waitVersion(version, ms = 10000) {
      const deadline = Date.now() + ms;
      for (;;) {
        const hit = seen.find((d) => d.$version === version);
        if (hit) return hit;
        if (Date.now() >= deadline) assert.fail(`no desired update with $version ${version}; got ${JSON.stringify(seen)}`);
        await new Promise((resolve) => { wake = resolve; setTimeout(resolve, 100); });
      }
    },
  };
}

test('getTwin returns desired and reported with $version', async () => {
  const device = await createSasDevice(reg, 'node-dtwin');
  await reg.updateTwin(device.deviceId, { properties: { desired: { interval: 30, mode: 'eco' } } }, '*');
  const { responseBody: service } = await reg.getTwin(device.deviceId);
  const client = deviceClient(device.cs);

  const twin = await openTwin(client);

  assert.deepEqual(userProps(twin.properties.desired), { interval: 30, mode: 'eco' });
  assert.equal(twin.properties.desired.$version, service.properties.desired.$version);
  assert.equal(twin.properties.reported.$version, service.properties.reported.$version);
});

test('a reported update is visible to the Registry with a bumped $version', async () => {
  const device = await createSasDevice(reg, 'node-dtwin-rep');
  const client = deviceClient(device.cs);
  const twin = await openTwin(client);
  const { responseBody: before } = await reg.getTwin(device.deviceId);

  await updateReported(twin, { fw: '2.0', net: { ssid: 'plant', rssi: -50 } });

  const { responseBody: after1 } = await reg.getTwin(device.deviceId);
  assert.deepEqual(userProps(after1.properties.reported), { fw: '2.0', net: { ssid: 'plant', rssi: -50 } });
  assert.equal(after1.properties.reported.$version, before.properties.reported.$version + 1);

  await updateReported(twin, { net: { rssi: -40 }, fw: null });
  const { responseBody: after2 } = await reg.getTwin(device.deviceId);
  assert.deepEqual(userProps(after2.properties.reported), { net: { ssid: 'plant', rssi: -40 } });
  assert.equal(after2.properties.reported.$version, before.properties.reported.$version + 2);
});

test("twin.on('properties.desired') receives Registry desired updates with $version", async () => {
  const device = await createSasDevice(reg, 'node-dtwin-des');
  const client = deviceClient(device.cs);
  const twin = await openTwin(client);
  const listener = desiredListener(twin);
  await listener.ready();

  const { responseBody: first } = await reg.updateTwin(device.deviceId, { properties: { desired: { interval: 5, mode: { level: 2 } } } }, '*');
  const delta1 = await listener.waitVersion(first.properties.desired.$version);
  assert.deepEqual(userProps(delta1), { interval: 5, mode: { level: 2 } });

  const { responseBody: second } = await reg.updateTwin(device.deviceId, { properties: { desired: { interval: 9 } } }, '*');
  const delta2 = await listener.waitVersion(second.properties.desired.$version);
  assert.deepEqual(userProps(delta2), { interval: 9 });
  assert.equal(second.properties.desired.$version, first.properties.desired.$version + 1);
  // the SDK merged both into its copy
  assert.deepEqual(userProps(twin.properties.desired), { interval: 9, mode: { level: 2 } });
});

test('a reported update that is not an object fails with an error', async () => {
  const device = await createSasDevice(reg, 'node-dtwin-bad');
  const client = deviceClient(device.cs);
  const twin = await openTwin(client);
  const { responseBody: before } = await reg.getTwin(device.deviceId);

  await assert.rejects(updateReported(twin, [1, 2, 3]), (err) => {
    assert.ok(!/did not complete within/.test(err.message),
      'no answer the SDK recognises as an error: the response body must carry an errorCode (mqtt_twin_client.js:_onResponseMessage)');
    return true;
  });
  const { responseBody: after1 } = await reg.getTwin(device.deviceId);
  assert.equal(after1.properties.reported.$version, before.properties.reported.$version);
});

test('a ModuleClient gets its module twin, updates reported and receives desired updates', async () => {
  const device = await createSasDevice(reg, 'node-mtwin');
  const module = await createSasModule(reg, device.deviceId, 'node-twin-mod');
  await reg.updateModuleTwin(device.deviceId, 'node-twin-mod', { properties: { desired: { threshold: 7 } } }, '*');
  const client = moduleClient(module.cs);
  const twin = await openTwin(client);

  assert.deepEqual(userProps(twin.properties.desired), { threshold: 7 });

  await updateReported(twin, { filtered: 12 });
  const { responseBody: stored } = await reg.getModuleTwin(device.deviceId, 'node-twin-mod');
  assert.deepEqual(userProps(stored.properties.reported), { filtered: 12 });

  const listener = desiredListener(twin);
  await listener.ready();
  const { responseBody: updated } = await reg.updateModuleTwin(device.deviceId, 'node-twin-mod', { properties: { desired: { threshold: 9 } } }, '*');
  const delta = await listener.waitVersion(updated.properties.desired.$version);
  assert.deepEqual(userProps(delta), { threshold: 9 });
});
