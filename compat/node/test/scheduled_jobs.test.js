// Scheduled jobs through the Node service `JobClient` (azure-iothub 1.16.6, job_client.js):
// `scheduleTwinUpdate` / `scheduleDeviceMethod` (PUT /jobs/v2/{id}), `getJob`, `cancelJob`
// (POST /jobs/v2/{id}/cancel) and `createQuery` (GET /jobs/v2/query with x-ms-max-item-count and
// x-ms-continuation; the SDK hands out the JSON array and keeps paging while the response has an
// x-ms-continuation header; `next(query.continuationToken)` sends it back), reaching devices connected with the Node device SDK over MQTT.
// Device job records are read with `Registry.createQuery('SELECT * FROM devices.jobs …')`.
'use strict';

const { test, after } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const { promisify } = require('node:util');
const { JobClient } = require('azure-iothub');
const {
  closeAll, connectionString, createSasDevice, deviceClient, errors, newId, registry, within,
} = require('./helpers');

const reg = registry();
const jobs = JobClient.fromConnectionString(connectionString());
after(closeAll);

const jobId = (prefix) => `${prefix}-${crypto.randomUUID().slice(0, 12)}`;
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function errorCode(err) {
  try {
    return JSON.parse(err.responseBody).Message.split(';')[0].replace(/^ErrorCode:/, '');
  } catch {
    return undefined;
  }
}

async function waitFinished(id, ms = 30000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const { jobStatus } = await jobs.getJob(id);
    if (['completed', 'failed', 'cancelled'].includes(jobStatus.status)) return jobStatus;
    if (Date.now() >= deadline) assert.fail(`job ${id} still ${jobStatus.status}`);
    await sleep(250);
  }
}

async function taggedDevices(count, site) {
  const devices = [];
  for (let i = 0; i < count; i += 1) {
    const device = await createSasDevice(reg, 'node-job');
    await reg.updateTwin(device.deviceId, { tags: { site } }, '*');
    devices.push(device);
  }
  return devices;
}

async function deviceJobs(id) {
  const query = reg.createQuery(`SELECT * FROM devices.jobs WHERE devices.jobs.jobId = '${id}'`);
  const { result, message } = await query.next();
  assert.equal(message.headers['x-ms-item-type'], 'DeviceJob');
  return Object.fromEntries(result.map((record) => [record.deviceId, record]));
}

test('scheduleTwinUpdate patches the matching twins and a connected device gets the desired patch', async () => {
  const site = newId('site');
  const [online, other] = await taggedDevices(2, site);
  const client = deviceClient(online.cs);
  await within(20000, client.open(), 'open()');
  const twin = await within(20000, client.getTwin(), 'getTwin()');
  const patches = [];
  twin.on('properties.desired', (delta) => patches.push(JSON.parse(JSON.stringify(delta))));
  await within(20000, promisify(twin.enableTwinDesiredPropertiesUpdates.bind(twin))(), 'desired subscription');
  const version = twin.properties.desired.$version;

  const id = jobId('node-twin');
  const patch = { etag: '*', tags: { ring: 'canary' }, properties: { desired: { fw: '3.1' } } };
  const { jobStatus: created } = await jobs.scheduleTwinUpdate(id, `tags.site = '${site}'`, patch, new Date(), 60);
  assert.equal(created.jobId, id);
  assert.equal(created.type, 'scheduleUpdateTwin');
  assert.deepEqual(created.updateTwin, patch);

  const job = await waitFinished(id);
  assert.equal(job.status, 'completed');
  assert.deepEqual(job.deviceJobStatistics, {
    deviceCount: 2, failedCount: 0, succeededCount: 2, runningCount: 0, pendingCount: 0,
  });
  const deadline = Date.now() + 10000;
  while (!patches.some((p) => p.$version === version + 1) && Date.now() < deadline) await sleep(50);
  const received = patches.find((p) => p.$version === version + 1);
  assert.ok(received, `no desired patch with $version ${version + 1}: ${JSON.stringify(patches)}`);
  assert.equal(received.fw, '3.1');
  for (const device of [online, other]) {
    const { responseBody } = await reg.getTwin(device.deviceId);
    assert.deepEqual(responseBody.tags, { site, ring: 'canary' });
    assert.equal(responseBody.properties.desired.fw, '3.1');
  }
  const records = await deviceJobs(id);
  assert.deepEqual(Object.keys(records).sort(), [online.deviceId, other.deviceId].sort());
  for (const record of Object.values(records)) {
    assert.equal(record.status, 'completed');
    assert.equal(record.jobType, 'scheduleUpdateTwin');
  }
});

test('scheduleDeviceMethod reaches connected devices; the offline one fails when the job ends', async () => {
  const site = newId('site');
  const [first, second, absent] = await taggedDevices(3, site);
  const calls = [];
  for (const device of [first, second]) {
    const client = deviceClient(device.cs);
    await within(20000, client.open(), 'open()');
    client.onDeviceMethod('blink', (request, response) => {
      calls.push({ deviceId: device.deviceId, payload: request.payload });
      response.send(200, { blinked: device.deviceId }).catch(() => {});
    });
  }
  const id = jobId('node-method');
  const params = { methodName: 'blink', payload: { times: 2 }, responseTimeoutInSeconds: 10 };
  const { jobStatus: created } = await jobs.scheduleDeviceMethod(id, `tags.site = '${site}'`, params, new Date(), 4);
  assert.equal(created.cloudToDeviceMethod.methodName, 'blink');
  assert.equal(created.maxExecutionTimeInSeconds, 4);

  const job = await waitFinished(id);
  assert.equal(job.status, 'completed');
  const stats = job.deviceJobStatistics;
  assert.deepEqual([stats.deviceCount, stats.succeededCount, stats.failedCount], [3, 2, 1]);
  assert.equal(stats.deviceCount, stats.succeededCount + stats.failedCount + stats.runningCount + stats.pendingCount);
  assert.deepEqual(calls.map((call) => call.deviceId).sort(), [first.deviceId, second.deviceId].sort());
  assert.ok(calls.every((call) => call.payload.times === 2));

  const records = await deviceJobs(id);
  assert.deepEqual(records[first.deviceId].outcome.deviceMethodResponse, { status: 200, payload: { blinked: first.deviceId } });
  assert.equal(records[absent.deviceId].status, 'failed');
  assert.equal(records[absent.deviceId].error.code, 'JobRunPreconditionFailed');
});

test('createQuery pages with the continuation token; cancelJob cancels scheduled jobs', async () => {
  const site = newId('site');
  const later = new Date(Date.now() + 3600 * 1000);
  const ids = [];
  for (let i = 0; i < 3; i += 1) {
    const id = jobId(`node-later${i}`);
    const { jobStatus } = await jobs.scheduleDeviceMethod(id, `tags.site = '${site}'`, { methodName: 'noop' }, later, 60);
    assert.equal(jobStatus.status, 'scheduled');
    ids.push(id);
  }
  const query = jobs.createQuery('scheduleDeviceMethod', 'scheduled', 2);
  const seen = [];
  let pages = 0;
  while (query.hasMoreResults) {
    // `next()` without arguments sends no token (query.js replaces this.continuationToken with
    // the undefined argument), so the token is passed explicitly, as `next(continuationToken)`.
    const { result, message } = await query.next(query.continuationToken);
    pages += 1;
    assert.ok(Array.isArray(result), 'the page is a JSON array');
    assert.ok(result.length <= 2, `page of ${result.length}`);
    assert.equal(message.headers['x-ms-item-type'], 'JobResponse');
    for (const job of result) {
      assert.equal(job.type, 'scheduleDeviceMethod');
      assert.equal(job.status, 'scheduled');
      seen.push(job.jobId);
    }
    assert.ok(pages < 50, 'paging ends');
  }
  assert.ok(pages >= 2, `expected several pages, got ${pages}`);
  for (const id of ids) assert.ok(seen.includes(id), `${id} listed`);
  assert.equal(new Set(seen).size, seen.length, 'no job is listed twice');

  for (const id of ids) {
    const { jobStatus } = await jobs.cancelJob(id);
    assert.equal(jobStatus.status, 'cancelled');
    assert.ok(jobStatus.endTime);
  }
  const { result } = await jobs.createQuery('scheduleDeviceMethod', 'cancelled', 100).next();
  for (const id of ids) assert.ok(result.some((job) => job.jobId === id), `${id} cancelled`);
});

test('unknown jobs, duplicate ids and conditions that do not parse get Azure errors', async () => {
  await assert.rejects(jobs.getJob(jobId('missing')), (err) => {
    assert.equal(err.response.statusCode, 404);
    assert.equal(errorCode(err), 'JobNotFound');
    return true;
  });
  await assert.rejects(jobs.cancelJob(jobId('missing')), (err) => err.response.statusCode === 404);

  const id = jobId('node-dup');
  const patch = { etag: '*', tags: { dup: true } };
  await jobs.scheduleTwinUpdate(id, "tags.dup = 'x'", patch, new Date(), 60);
  await assert.rejects(jobs.scheduleTwinUpdate(id, "tags.dup = 'x'", patch, new Date(), 60), (err) => {
    assert.equal(err.response.statusCode, 409);
    assert.equal(errorCode(err), 'JobAlreadyExists');
    return true;
  });
  await assert.rejects(jobs.scheduleTwinUpdate(jobId('node-bad'), "tags.x = 'a' OR", patch, new Date(), 60), (err) => {
    assert.ok(err instanceof errors.ArgumentError, `${err.name}`);
    assert.equal(errorCode(err), 'ArgumentInvalid');
    assert.match(err.responseBody, /line 1, column \d+/);
    return true;
  });
  await assert.rejects(jobs.scheduleTwinUpdate(jobId('node-noetag'), "tags.x = 'a'", { tags: { a: 1 } }, new Date(), 60),
    (err) => err.response.statusCode === 412);
});
