// The IoT Hub query language through azure-iothub 1.16.6: `Registry.createQuery` (`POST
// /devices/query`) walked with `next()` / `nextAsTwin()` and `hasMoreResults` (the
// `x-ms-continuation` header), projections with `AS` (item type Raw), `COUNT()` with `GROUP BY`,
// reported properties written by a connected MQTT device, and the 400 of a query that does not
// parse.
'use strict';

const { test, after } = require('node:test');
const assert = require('node:assert/strict');
const { promisify } = require('node:util');
const { closeAll, deviceClient, createSasDevice, newId, registry, within } = require('./helpers');

const reg = registry();
after(closeAll);

const site = newId('qsite');
const ids = [];
async function fleet() {
  if (ids.length) return ids;
  for (let floor = 0; floor < 5; floor++) {
    const deviceId = `${site}-d${floor}`;
    await reg.create({ deviceId, status: floor === 4 ? 'disabled' : 'enabled' });
    await reg.updateTwin(deviceId, { tags: { site, floor, wing: floor < 2 ? 'east' : 'west' } }, '*');
    ids.push(deviceId);
  }
  return ids;
}

test('createQuery pages with hasMoreResults, nextAsTwin gives Twins in id order', async () => {
  const all = await fleet();
  const query = reg.createQuery(`SELECT * FROM devices WHERE tags.site = '${site}'`, 2);
  const seen = [];
  const pages = [];
  while (query.hasMoreResults) {
    const { result, message: response } = await query.nextAsTwin();
    assert.equal(response.headers['x-ms-item-type'], 'Twin');
    pages.push(result.length);
    for (const twin of result) {
      assert.equal(typeof twin.etag, 'string');
      seen.push(twin.deviceId);
    }
    assert.ok(pages.length < 10, 'paging ends');
  }
  assert.deepEqual(pages, [2, 2, 1]);
  assert.deepEqual(seen, [...all].sort());
});

test('projections with AS come back as Raw items, undefined paths left out', async () => {
  await fleet();
  const query = reg.createQuery(
    `SELECT deviceId, tags.floor AS floor, tags.nothing AS missing FROM devices WHERE tags.site = '${site}' AND tags.wing = 'east'`);
  const { result, message: response } = await query.next();
  assert.equal(response.headers['x-ms-item-type'], 'Raw');
  assert.deepEqual(result, [{ deviceId: ids[0], floor: 0 }, { deviceId: ids[1], floor: 1 }]);
  assert.equal(query.hasMoreResults, false);
});

test('COUNT() with GROUP BY counts per group', async () => {
  await fleet();
  const query = reg.createQuery(
    `SELECT tags.wing AS wing, COUNT() AS devices FROM devices WHERE tags.site = '${site}' GROUP BY tags.wing`);
  const { result } = await query.next();
  const byWing = Object.fromEntries(result.map((row) => [row.wing, row.devices]));
  assert.deepEqual(byWing, { east: 2, west: 3 });
  const total = reg.createQuery(`SELECT COUNT() AS total FROM devices WHERE tags.site = '${site}' AND status = 'enabled'`);
  assert.deepEqual((await total.next()).result, [{ total: 4 }]);
});

test('reported properties of a connected MQTT device are queryable at once', async () => {
  const device = await createSasDevice(reg, 'node-query-rep');
  const client = deviceClient(device.cs);
  await within(20000, client.open(), 'open()');
  const twin = await within(20000, client.getTwin(), 'getTwin()');
  await within(20000, promisify(twin.properties.reported.update)({ firmware: { version: '2.1.0' } }), 'reported.update()');
  const query = reg.createQuery(
    `SELECT * FROM devices WHERE deviceId = '${device.deviceId}' AND properties.reported.firmware.version = '2.1.0' AND connectionState = 'Connected'`);
  const { result } = await query.nextAsTwin();
  assert.deepEqual(result.map((t) => t.deviceId), [device.deviceId]);
});

test('a query that does not parse is a 400 with the position', async () => {
  const query = reg.createQuery('SELECT * FROM devices WHERE tags.floor >');
  const err = await query.next().then(() => null, (e) => e);
  assert.ok(err, 'the query fails');
  assert.equal(err.response && err.response.statusCode, 400);
  assert.match(err.responseBody, /column/);
});
