// Import and export jobs through azure-iothub 1.16.6's Registry (`exportDevicesToBlob`,
// `importDevicesFromBlob`, `getJob`, `listJobs`, `cancelJob`; `POST /jobs/create`, wire
// reference §5.2) against the hub's built-in blob endpoint, read and written with
// @azure/storage-blob 12.8.0 through a container SAS from `POST /hubs/{hub}/files/sas`.
'use strict';

const { test } = require('node:test');
const assert = require('node:assert/strict');
const { ContainerClient } = require('@azure/storage-blob');
const { newId, operatorRequest, registry } = require('./helpers');

const reg = registry();

async function containerUrl(directory) {
  const { status, body } = await operatorRequest('POST', '/hubs/localhost/files/sas?permissions=rwl');
  assert.equal(status, 200, JSON.stringify(body));
  const [base, query] = body.url.split('?');
  return { url: `${base}/${directory}?${query}`, container: new ContainerClient(body.url) };
}

async function finished(jobId) {
  const deadline = Date.now() + 30000;
  for (;;) {
    const job = await reg.getJob(jobId);
    if (['completed', 'failed', 'cancelled'].includes(job.status) || Date.now() > deadline) return job;
    await new Promise((r) => setTimeout(r, 100));
  }
}

test('exportDevicesToBlob, then importDevicesFromBlob of an edited file, with the error log', async () => {
  const deviceId = newId('node-exp');
  await reg.create({ deviceId, status: 'enabled' });
  await reg.updateTwin(deviceId, { tags: { origin: 'node' } }, '*');
  const directory = newId('node-export');
  const { url, container } = await containerUrl(directory);

  const job = await reg.exportDevicesToBlob(url, true);
  assert.equal(job.status, 'enqueued');
  const done = await finished(job.jobId);
  assert.equal(done.status, 'completed', done.failureReason);
  const { responseBody: jobs } = await reg.listJobs();
  assert.ok(jobs.some((j) => j.jobId === job.jobId));

  const text = (await container.getBlobClient(`${directory}/devices.txt`).downloadToBuffer()).toString();
  const lines = text.trim().split('\n').map((line) => JSON.parse(line));
  const mine = lines.find((line) => line.id === deviceId);
  assert.deepEqual(mine.tags, { origin: 'node' });
  assert.deepEqual(mine.authentication.symmetricKey, { primaryKey: null, secondaryKey: null });

  // Re-import the device under a new id with new tags, plus a line that cannot apply.
  const copyId = newId('node-imp');
  const edited = [
    JSON.stringify({ ...mine, id: copyId, importMode: 'create', tags: { origin: 'imported' }, authentication: { type: 'sas' } }),
    JSON.stringify({ id: deviceId, importMode: 'create' }),
  ].join('\n');
  await container.getBlockBlobClient(`${directory}/devices.txt`).upload(edited, Buffer.byteLength(edited));
  const importJob = await reg.importDevicesFromBlob(url, url);
  assert.equal((await finished(importJob.jobId)).status, 'completed');
  const { responseBody: twin } = await reg.getTwin(copyId);
  assert.deepEqual(twin.tags, { origin: 'imported' });
  const log = (await container.getBlobClient(`${directory}/importErrors.log`).downloadToBuffer()).toString();
  const errors = log.trim().split('\n').map((line) => JSON.parse(line));
  assert.deepEqual(errors.map((e) => [e.line, e.errorCode]), [[2, 'DeviceAlreadyExists']]);

  // Cancelling an ended job leaves it as it was; an unknown job is JobNotFound (404).
  await reg.cancelJob(importJob.jobId);
  assert.equal((await reg.getJob(importJob.jobId)).status, 'completed');
  const err = await reg.getJob('no-such-job').then(() => null, (e) => e);
  assert.equal(err && err.response && err.response.statusCode, 404);
});

test('an identity-based export is refused: storage is reached with the SAS in the URI only', async () => {
  const { url } = await containerUrl(newId('node-identity'));
  const err = await reg.exportDevicesToBlobByIdentity(url, true).then(() => null, (e) => e);
  assert.equal(err && err.response && err.response.statusCode, 400);
});
