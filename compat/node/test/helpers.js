// Shared helpers for the Node compatibility tests. The tests run under `node run.js`, which
// starts outpost and passes the connection strings and NODE_EXTRA_CA_CERTS in the environment.
'use strict';

const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');
const { Registry } = require('azure-iothub');
// The SDK's own error classes, exactly as rest_api_client.js:translateError constructs them.
const errors = require('azure-iothub/dist/common-core/errors');

const ENV_BY_POLICY = {
  iothubowner: 'OUTPOST_CONNECTION_STRING',
  service: 'OUTPOST_CONNECTION_STRING_SERVICE',
  registryRead: 'OUTPOST_CONNECTION_STRING_REGISTRY_READ',
  registryReadWrite: 'OUTPOST_CONNECTION_STRING_REGISTRY_READ_WRITE',
  device: 'OUTPOST_CONNECTION_STRING_DEVICE',
};

function connectionString(policy = 'iothubowner') {
  const name = ENV_BY_POLICY[policy];
  const value = name && process.env[name];
  if (!value) throw new Error(`${name || policy} is not set: run the suite with \`node run.js\` (it starts outpost)`);
  return value;
}

function parseConnectionString(cs) {
  const parts = {};
  for (const segment of cs.split(';')) {
    if (!segment) continue;
    const i = segment.indexOf('=');
    parts[segment.slice(0, i)] = segment.slice(i + 1);
  }
  return parts;
}

function registry(policy = 'iothubowner') {
  return Registry.fromConnectionString(connectionString(policy));
}

function newId(prefix) {
  return `${prefix}-${crypto.randomUUID().slice(0, 10)}`;
}

function newKey() {
  return crypto.randomBytes(32).toString('base64');
}

function assertGeneratedKey(key) {
  assert.equal(typeof key, 'string', `expected a generated key, got ${JSON.stringify(key)}`);
  assert.ok(key.length > 0, 'expected a generated key, got an empty string');
  const raw = Buffer.from(key, 'base64');
  assert.equal(raw.toString('base64'), key, `generated key ${key} is not canonical base64`);
  assert.ok(raw.length >= 16, `generated key ${key} decodes to only ${raw.length} bytes`);
}

function describe(err) {
  if (!err) return String(err);
  const status = err.response && err.response.statusCode;
  return `${err.name}: ${err.message}` + (status ? ` (HTTP ${status}, body ${err.responseBody})` : '');
}

// Awaits `promise` and asserts it rejects with an instance of the SDK error class `ErrorClass`.
async function rejectsWith(promise, ErrorClass) {
  let result;
  try {
    result = await promise;
  } catch (err) {
    assert.ok(err instanceof ErrorClass, `expected ${ErrorClass.name}, got ${describe(err)}`);
    return err;
  }
  assert.fail(`expected ${ErrorClass.name}, but the call succeeded: ${JSON.stringify(result && result.responseBody)}`);
}

// Properties without the `$version` / `$metadata` bookkeeping.
function userProps(props) {
  return Object.fromEntries(Object.entries(props || {}).filter(([k]) => !k.startsWith('$')));
}

// Signs an IoT Hub service token by hand, as wire reference §1.1 describes:
// sig = base64(HMAC-SHA256(base64decode(key), "<sr>\n<se>")), URL-encoded.
function signServiceToken(hostName, keyName, keyBase64, expirySeconds) {
  const sr = encodeURIComponent(hostName);
  const sig = crypto.createHmac('sha256', Buffer.from(keyBase64, 'base64'))
    .update(`${sr}\n${expirySeconds}`)
    .digest('base64');
  return `SharedAccessSignature sr=${sr}&sig=${encodeURIComponent(sig)}&se=${expirySeconds}&skn=${encodeURIComponent(keyName)}`;
}

// ---- device side (azure-iot-device 1.18.4 + azure-iot-device-mqtt 1.16.4) ---------------------

const HOST_NAME = 'localhost';
const HUB_NAME = 'localhost';

// The SDK never gives up on an operation the server does not answer (RetryOperation waits up to
// 4 minutes), so every device call runs with a deadline.
async function within(ms, promise, what) {
  let timer;
  const deadline = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not complete within ${ms / 1000}s (the server never answered?)`)), ms);
  });
  try {
    return await Promise.race([promise, deadline]);
  } finally {
    clearTimeout(timer);
  }
}

function caPem() {
  const caPath = process.env.OUTPOST_CA_PATH;
  if (!caPath) throw new Error('OUTPOST_CA_PATH is not set: run the suite with `node run.js`');
  return fs.readFileSync(caPath, 'utf8');
}

function deviceConnectionString(deviceId, key, moduleId) {
  return moduleId
    ? `HostName=${HOST_NAME};DeviceId=${deviceId};ModuleId=${moduleId};SharedAccessKey=${key}`
    : `HostName=${HOST_NAME};DeviceId=${deviceId};SharedAccessKey=${key}`;
}

// Device SDK clients over MQTT (8883) that trust the dev CA; `closeAll` closes every one made.
const openClients = [];
function deviceClient(cs) {
  const { Client } = require('azure-iot-device');
  const { Mqtt } = require('azure-iot-device-mqtt');
  const client = Client.fromConnectionString(cs, Mqtt);
  client.setOptions({ ca: caPem() });
  openClients.push(client);
  return client;
}

function moduleClient(cs) {
  const { ModuleClient } = require('azure-iot-device');
  const { Mqtt } = require('azure-iot-device-mqtt');
  const client = ModuleClient.fromConnectionString(cs, Mqtt);
  client.setOptions({ ca: caPem() });
  openClients.push(client);
  return client;
}

async function closeAll() {
  while (openClients.length) {
    const client = openClients.pop();
    try {
      await within(15000, client.close(), 'client.close()');
    } catch {
      // cleanup goes on
    }
  }
}

// Creates a device with keys the test chose; returns { deviceId, primaryKey, secondaryKey, generationId, cs }.
async function createSasDevice(reg, prefix, status = 'enabled') {
  const deviceId = newId(prefix);
  const primaryKey = newKey();
  const secondaryKey = newKey();
  const { responseBody } = await reg.create({
    deviceId, status, authentication: { symmetricKey: { primaryKey, secondaryKey } },
  });
  return { deviceId, primaryKey, secondaryKey, generationId: responseBody.generationId, cs: deviceConnectionString(deviceId, primaryKey) };
}

async function createSasModule(reg, deviceId, moduleId) {
  const primaryKey = newKey();
  const secondaryKey = newKey();
  const { responseBody } = await reg.addModule({
    deviceId, moduleId, authentication: { symmetricKey: { primaryKey, secondaryKey } },
  });
  return { deviceId, moduleId, primaryKey, secondaryKey, generationId: responseBody.generationId, cs: deviceConnectionString(deviceId, primaryKey, moduleId) };
}

// Signs a device token by hand (wire reference §1.1): sr = URL-encoded `<host>/devices/<id>`.
function signDeviceToken(resource, keyBase64, expirySeconds, keyName) {
  const sr = encodeURIComponent(resource);
  const sig = crypto.createHmac('sha256', Buffer.from(keyBase64, 'base64')).update(`${sr}\n${expirySeconds}`).digest('base64');
  let token = `SharedAccessSignature sr=${sr}&sig=${encodeURIComponent(sig)}&se=${expirySeconds}`;
  if (keyName) token += `&skn=${encodeURIComponent(keyName)}`;
  return token;
}

function sasAuthMethod(scope = 'device') {
  return { scope, type: 'sas', issuer: 'iothub', acceptingIpFilterRule: null };
}

// ---- the operator API: telemetry read back ------------------------------------------------------

function operatorEndpoint() {
  const dataDir = process.env.OUTPOST_DATA_DIR;
  if (!dataDir) throw new Error('OUTPOST_DATA_DIR is not set: run the suite with `node run.js`');
  return {
    url: fs.readFileSync(path.join(dataDir, 'operator-endpoint'), 'utf8').trim().replace(/\/$/, ''),
    token: fs.readFileSync(path.join(dataDir, 'operator-token'), 'utf8').trim(),
  };
}

async function operatorGet(pathAndQuery) {
  const { url, token } = operatorEndpoint();
  const response = await fetch(url + pathAndQuery, { headers: { Authorization: `Bearer ${token}` } });
  const text = await response.text();
  if (!response.ok) throw new Error(`GET ${pathAndQuery} -> ${response.status}: ${text.slice(0, 500)}`);
  return JSON.parse(text);
}

// The events of one device (or of one module): scans every partition from the beginning and
// polls (waitMs) until at least `expect` are there or `timeoutMs` passed. Log order.
async function deviceEvents(deviceId, { moduleId, expect = 1, timeoutMs = 10000, hub = HUB_NAME } = {}) {
  const deadline = Date.now() + timeoutMs;
  const next = {};
  const found = [];
  let first = true;
  for (;;) {
    const partitions = await operatorGet(`/hubs/${encodeURIComponent(hub)}/partitions`);
    for (const info of partitions) {
      const p = info.partition;
      if (next[p] === undefined) next[p] = info.beginSequenceNumber || 0;
      for (;;) {
        const wait = first || found.length >= expect ? 0 : 100;
        const page = await operatorGet(`/hubs/${encodeURIComponent(hub)}/events?partition=${p}&fromSequenceNumber=${next[p]}&max=1000&waitMs=${wait}`);
        if (page.length === 0) break;
        for (const event of page) {
          if (event.origin === deviceId && (moduleId === undefined || event.module === moduleId)) {
            event._partition = p;
            found.push(event);
          }
        }
        next[p] = page[page.length - 1].annotations['x-opt-sequence-number'] + 1;
      }
    }
    first = false;
    if (found.length >= expect || Date.now() >= deadline) break;
  }
  found.sort((a, b) => (Number(a._partition) - Number(b._partition)) ||
    (a.annotations['x-opt-sequence-number'] - b.annotations['x-opt-sequence-number']));
  return found;
}

// ---- cloud-to-device: sending (operator API, CLI), purge, feedback --------------------------------
// These tests send through the operator API (`POST /hubs/{hub}/devices/{id}/messages/devicebound`,
// 204) or the CLI, which reach module inputs too; the SDK's own AMQP sender is tested in
// service_amqp.test.js.

async function operatorRequest(method, pathAndQuery, body) {
  const { url, token } = operatorEndpoint();
  const headers = { Authorization: `Bearer ${token}` };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const response = await fetch(url + pathAndQuery, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await response.text();
  let parsed = text;
  try { parsed = text ? JSON.parse(text) : null; } catch { /* keep the text */ }
  return { status: response.status, body: parsed };
}

// fields: messageId, correlationId, userId, contentType, contentEncoding, ack, expiryTimeUtc, properties
async function c2dSendRaw(deviceId, data, fields = {}, hub = HUB_NAME) {
  return operatorRequest('POST', `/hubs/${encodeURIComponent(hub)}/devices/${encodeURIComponent(deviceId)}/messages/devicebound`,
    data === undefined ? { ...fields } : { data, ...fields });
}

async function c2dSend(deviceId, data, fields = {}, hub = HUB_NAME) {
  const { status, body } = await c2dSendRaw(deviceId, data, fields, hub);
  assert.equal(status, 204, `operator API send to ${deviceId} -> ${status} ${JSON.stringify(body)}`);
}

// `outpost device c2d-message <args> --data-dir DIR` (the CLI reaches the running server).
function c2dCli(...args) {
  const { execFileSync } = require('node:child_process');
  const binary = process.env.OUTPOST_BIN; // set by run.js: the binary it started
  if (!binary) throw new Error('OUTPOST_BIN is not set: run the suite with `node run.js`');
  return execFileSync(binary, ['device', 'c2d-message', ...args, '--data-dir', process.env.OUTPOST_DATA_DIR], {
    encoding: 'utf8', timeout: 30000, stdio: ['ignore', 'pipe', 'pipe'],
  });
}

// `DELETE /devices/{id}/commands` (Azure's queue purge). azure-iothub 1.16.6 has no public method
// for it (neither `Registry` nor `Client`), so it goes through the Registry's own RestApiClient,
// which signs it exactly like every other Registry call.
function purgeQueue(reg, deviceId) {
  const { versionQueryString } = require('azure-iothub/dist/version');
  return new Promise((resolve, reject) => {
    reg._restApiClient.executeApiCall('DELETE', `/devices/${encodeURIComponent(deviceId)}/commands${versionQueryString()}`,
      {}, null, (err, result, response) => (err ? reject(err) : resolve({ result, response })));
  });
}

// The feedback records of one device from `GET /hubs/{hub}/feedback`, polling until `expect` are
// there or `timeoutMs` passed. Reading consumes records: other devices' ones are kept here.
const pendingFeedback = [];
async function feedbackRecords(deviceId, { expect = 1, timeoutMs = 10000, hub = HUB_NAME } = {}) {
  const deadline = Date.now() + timeoutMs;
  let mine;
  for (;;) {
    pendingFeedback.push(...await operatorGet(`/hubs/${encodeURIComponent(hub)}/feedback?max=1000`));
    mine = pendingFeedback.filter((r) => r.deviceId === deviceId);
    if (mine.length >= expect || Date.now() >= deadline) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  for (const record of mine) pendingFeedback.splice(pendingFeedback.indexOf(record), 1);
  return mine;
}

// The service `Client` (azure-iothub): `invokeDeviceMethod` is REST (device_method.js), the AMQP
// transport it is built with is only opened by `open()`, which these tests never call.
function serviceClient(policy = 'iothubowner') {
  const { Client } = require('azure-iothub');
  return Client.fromConnectionString(connectionString(policy));
}

module.exports = {
  HOST_NAME,
  c2dCli,
  c2dSend,
  c2dSendRaw,
  feedbackRecords,
  operatorRequest,
  purgeQueue,
  serviceClient,
  assertGeneratedKey,
  caPem,
  closeAll,
  createSasDevice,
  createSasModule,
  deviceClient,
  deviceConnectionString,
  deviceEvents,
  moduleClient,
  operatorGet,
  sasAuthMethod,
  signDeviceToken,
  within,
  connectionString,
  describe,
  errors,
  newId,
  newKey,
  parseConnectionString,
  registry,
  rejectsWith,
  signServiceToken,
  userProps,
};
