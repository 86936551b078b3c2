// Device authentication over MQTT with the Node device SDK: refusals are CONNACK 5 ("Not
// authorized"), which azure-iot-mqtt-base/dist/mqtt_translate_error.js turns into UnauthorizedError.
'use strict';

const { test, after } = require('node:test');
const assert = require('node:assert/strict');
const { errors } = require('azure-iot-common');
const {
  HOST_NAME, closeAll, createSasDevice, createSasModule, deviceClient, deviceConnectionString, describe, newId, newKey,
  registry, signDeviceToken, within,
} = require('./helpers');

const reg = registry();
after(closeAll);
const nowSeconds = () => Math.floor(Date.now() / 1000);

async function refused(client) {
  let err;
  try {
    await within(20000, client.open(), 'open()');
  } catch (e) {
    err = e;
  }
  assert.ok(err, 'open() succeeded but must be refused');
  assert.ok(err instanceof errors.UnauthorizedError, `expected UnauthorizedError, got ${describe(err)}`);
}

test('the right key connects (control)', async () => {
  const device = await createSasDevice(reg, 'node-auth-ok');
  await within(20000, deviceClient(device.cs).open(), 'open()');
});

test('a wrong key fails with UnauthorizedError', async () => {
  const device = await createSasDevice(reg, 'node-auth-bad');
  await refused(deviceClient(deviceConnectionString(device.deviceId, newKey())));
});

test('an unknown device fails with UnauthorizedError', async () => {
  await refused(deviceClient(deviceConnectionString(newId('node-auth-none'), newKey())));
});

test('a disabled device fails with UnauthorizedError', async () => {
  const device = await createSasDevice(reg, 'node-auth-off', 'disabled');
  await refused(deviceClient(device.cs));
});

test('an expired SharedAccessSignature fails with UnauthorizedError', async () => {
  const device = await createSasDevice(reg, 'node-auth-exp');
  const token = signDeviceToken(`${HOST_NAME}/devices/${device.deviceId}`, device.primaryKey, nowSeconds() - 60);
  const { Client } = require('azure-iot-device');
  const { Mqtt } = require('azure-iot-device-mqtt');
  const client = Client.fromSharedAccessSignature(token, Mqtt);
  client.setOptions({ ca: require('./helpers').caPem() });
  try {
    await refused(client);
  } finally {
    await client.close().catch(() => {});
  }
});

test('a module key does not authenticate its device', async () => {
  const device = await createSasDevice(reg, 'node-auth-modkey');
  const module = await createSasModule(reg, device.deviceId, 'node-auth-mod');
  await refused(deviceClient(deviceConnectionString(device.deviceId, module.primaryKey)));
});
