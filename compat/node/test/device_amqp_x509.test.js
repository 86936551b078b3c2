// X.509 devices on the AMQP transport (azure-iot-device-amqp 1.14.4): the device presents its
// certificate in the TLS handshake and puts no token on $cbs (wire reference §3); the hub finds the
// identity by the certificate's thumbprint, like over MQTT. Certificates are made with the openssl
// command line (self-signed P-256, CN = the device id).
'use strict';

const { test, after } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { execFileSync } = require('node:child_process');
const { promisify } = require('node:util');
const { Client, Message } = require('azure-iot-device');
const { Amqp } = require('azure-iot-device-amqp');
const { HOST_NAME, caPem, closeAll, deviceEvents, newId, registry, within } = require('./helpers');

const reg = registry();
const clients = [];
after(async () => {
  for (const client of clients) await client.close().catch(() => {});
  await closeAll();
});

// A self-signed certificate for `cn` and its SHA-256 thumbprint (upper-case hex, as Azure shows it).
function selfSigned(cn) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'outpost-x509-'));
  const [keyPath, certPath] = [path.join(dir, 'key.pem'), path.join(dir, 'cert.pem')];
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-keyout', keyPath, '-out', certPath, '-days', '2', '-subj', `/CN=${cn}`], { stdio: 'ignore' });
  const cert = fs.readFileSync(certPath, 'utf8');
  const key = fs.readFileSync(keyPath, 'utf8');
  fs.rmSync(dir, { recursive: true, force: true });
  const thumbprint = new crypto.X509Certificate(cert).fingerprint256.replace(/:/g, '');
  return { cert, key, thumbprint };
}

function x509Client(deviceId, { cert, key }) {
  const client = Client.fromConnectionString(`HostName=${HOST_NAME};DeviceId=${deviceId};x509=true`, Amqp);
  client.setOptions({ cert, key, ca: caPem() });
  clients.push(client);
  return client;
}

test('an X.509 device sends telemetry and reads its twin over AMQP without a token', async () => {
  const deviceId = newId('amqp-x509');
  const cert = selfSigned(deviceId);
  await reg.create({ deviceId, authentication: { x509Thumbprint: { primaryThumbprint: cert.thumbprint } } });
  const client = x509Client(deviceId, cert);
  await within(20000, client.open(), 'open()');
  await within(20000, client.sendEvent(new Message('x509 over amqp')), 'sendEvent()');
  const [event] = await deviceEvents(deviceId);
  assert.equal(event.payload, 'x509 over amqp');
  assert.deepEqual(JSON.parse(event.annotations['iothub-connection-auth-method']),
    { scope: 'device', type: 'x509Certificate', issuer: 'iothub', acceptingIpFilterRule: null });
  const twin = await within(20000, client.getTwin(), 'getTwin()');
  // `update` takes a callback and returns nothing.
  await within(20000, promisify(twin.properties.reported.update)({ auth: 'x509' }), 'reported.update()');
  const { responseBody } = await reg.getTwin(deviceId);
  assert.equal(responseBody.properties.reported.auth, 'x509');
});

test('a certificate whose thumbprint is not the device\'s is refused', async () => {
  const deviceId = newId('amqp-x509-bad');
  const registered = selfSigned(deviceId);
  await reg.create({ deviceId, authentication: { x509Thumbprint: { primaryThumbprint: registered.thumbprint } } });
  const client = x509Client(deviceId, selfSigned(deviceId));
  const error = await within(20000, client.open().then(
    () => client.sendEvent(new Message('never stored')).then(() => null, (err) => err),
    (err) => err,
  ), 'open() or sendEvent() failing');
  assert.ok(error, 'the device is refused');
  assert.ok(error.name === 'UnauthorizedError' || /unauthori[sz]ed/i.test(`${error.message} ${error.amqpError?.condition}`),
    `${error.name}: ${error.message}`);
  assert.deepEqual(await deviceEvents(deviceId, { expect: 1, timeoutMs: 1000 }), []);
});
