// Shared helpers for the Node compatibility tests. The tests run under `node run.js`, which
// starts outpost and passes the connection strings and NODE_EXTRA_CA_CERTS in the environment.
'use strict';

const assert = require('node:assert/strict');
const crypto = require('node:crypto');
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

module.exports = {
  assertGeneratedKey,
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
