#!/usr/bin/env node
// Runs the Node compatibility suite against a fresh outpost server.
//
// NODE_EXTRA_CA_CERTS is read only when a node process starts, so this runner starts the
// server first (fresh temporary data dir, HTTPS on 127.0.0.1:443, MQTT over TLS on
// 127.0.0.1:8883 for the device SDK, host name `localhost`),
// reads the connection strings through the outpost CLI, then spawns `node --test` with
// NODE_EXTRA_CA_CERTS=<data dir>/tls/ca.pem and OUTPOST_* variables, and stops the server
// (SIGTERM, then SIGKILL) when the tests are done.
//
// Usage: node run.js [test files...] [node --test options, e.g. --test-name-pattern=etag]
'use strict';

const { spawn, execFileSync } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');

const REPO_ROOT = path.resolve(__dirname, '..', '..');
const HTTPS_HOST = '127.0.0.1';
const HTTPS_PORT = 443;
const MQTT_PORT = 8883;
const AMQP_PORT = 5671;
// The plain AMQP listener, for Event Hubs clients with `UseDevelopmentEmulator=true` (wire reference §7.5).
const AMQP_PLAIN_PORT = 5672;
const PORTS = [HTTPS_PORT, MQTT_PORT, AMQP_PORT, AMQP_PLAIN_PORT];
const READY_TIMEOUT_MS = Number(process.env.OUTPOST_READY_TIMEOUT || 60) * 1000;
const STOP_TIMEOUT_MS = 15000;
const POLICIES = ['iothubowner', 'service', 'registryRead', 'registryReadWrite', 'device'];

function outpostBinary() {
  if (process.env.OUTPOST_BIN) return path.resolve(process.env.OUTPOST_BIN);
  const target = process.env.CARGO_TARGET_DIR
    ? path.resolve(REPO_ROOT, process.env.CARGO_TARGET_DIR)
    : path.join(REPO_ROOT, 'target');
  return path.join(target, 'debug', 'outpost');
}

function tail(file, lines = 40) {
  try {
    const text = fs.readFileSync(file, 'utf8').trimEnd();
    return text ? text.split('\n').slice(-lines).join('\n') : '<empty>';
  } catch {
    return '<no output file>';
  }
}

function portInUse(host, port) {
  return new Promise((resolve) => {
    const socket = net.connect({ host, port });
    socket.setTimeout(500);
    socket.once('connect', () => { socket.destroy(); resolve(true); });
    socket.once('timeout', () => { socket.destroy(); resolve(false); });
    socket.once('error', () => resolve(false));
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function startServer(binary, dataDir, logDir) {
  for (const port of PORTS) {
    if (await portInUse(HTTPS_HOST, port)) {
      throw new Error(`${HTTPS_HOST}:${port} is already in use: another outpost (or another suite, or an MQTT broker) is running`);
    }
  }
  fs.mkdirSync(dataDir, { recursive: true });
  fs.mkdirSync(logDir, { recursive: true });
  const readyFile = path.join(dataDir, 'operator-endpoint');
  fs.rmSync(readyFile, { force: true });
  const stdoutPath = path.join(logDir, 'serve.stdout');
  const stderrPath = path.join(logDir, 'serve.stderr');
  const args = ['serve', '--data-dir', dataDir, '--https-listen', `${HTTPS_HOST}:${HTTPS_PORT}`,
    '--mqtt-listen', `${HTTPS_HOST}:${MQTT_PORT}`, '--amqp-listen', `${HTTPS_HOST}:${AMQP_PORT}`,
    '--amqp-plain-listen', `${HTTPS_HOST}:${AMQP_PLAIN_PORT}`, '--operator-listen', '127.0.0.1:0'];
  const child = spawn(binary, args, {
    stdio: ['ignore', fs.openSync(stdoutPath, 'w'), fs.openSync(stderrPath, 'w')],
  });
  let exited = null;
  child.once('exit', (code, signal) => { exited = { code, signal }; });
  child.once('error', (err) => { exited = { code: null, signal: null, err }; });
  const server = { child, stdoutPath, stderrPath, dataDir, caPath: path.join(dataDir, 'tls', 'ca.pem') };
  server.exited = () => exited;

  const deadline = Date.now() + READY_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (exited) {
      throw new Error(`\`${binary} ${args.join(' ')}\` exited (${exited.err ? exited.err.message : `code ${exited.code}, signal ${exited.signal}`}) before it was ready.\n` +
        `--- stderr (tail) ---\n${tail(stderrPath)}\n--- stdout (tail) ---\n${tail(stdoutPath)}`);
    }
    if (fs.existsSync(readyFile) && fs.readFileSync(readyFile, 'utf8').trim()) {
      for (const port of PORTS) {
        if (!(await portInUse(HTTPS_HOST, port))) {
          await stopServer(server);
          throw new Error(`${readyFile} was written but nothing accepts connections on ${HTTPS_HOST}:${port}: ` +
            `the server must bind every listener first.\n--- stderr (tail) ---\n${tail(stderrPath)}`);
        }
      }
      return server;
    }
    await sleep(50);
  }
  await stopServer(server);
  throw new Error(`\`${binary} ${args.join(' ')}\` did not write ${readyFile} within ${READY_TIMEOUT_MS / 1000}s.\n` +
    `--- stderr (tail) ---\n${tail(stderrPath)}\n--- stdout (tail) ---\n${tail(stdoutPath)}`);
}

async function stopServer(server) {
  if (!server || server.exited()) return;
  server.child.kill('SIGTERM');
  const deadline = Date.now() + STOP_TIMEOUT_MS;
  while (!server.exited() && Date.now() < deadline) await sleep(50);
  if (!server.exited()) {
    server.child.kill('SIGKILL');
    while (!server.exited()) await sleep(50);
  }
}

function connectionString(binary, dataDir, policy) {
  const out = execFileSync(binary, ['hub', 'connection-string', '--data-dir', dataDir, '--policy', policy], {
    encoding: 'utf8', timeout: 30000, stdio: ['ignore', 'pipe', 'pipe'],
  });
  const lines = out.split('\n').map((l) => l.trim()).filter(Boolean);
  if (lines.length !== 1) throw new Error(`outpost hub connection-string must print one line, printed ${JSON.stringify(out)}`);
  return lines[0];
}

function envName(policy) {
  return policy === 'iothubowner'
    ? 'OUTPOST_CONNECTION_STRING'
    : `OUTPOST_CONNECTION_STRING_${policy.replace(/([a-z])([A-Z])/g, '$1_$2').toUpperCase()}`;
}

function runTests(files, nodeOptions, env) {
  return new Promise((resolve) => {
    const args = ['--test', '--test-concurrency=1', '--test-reporter=spec', '--test-timeout=120000', ...nodeOptions, ...files];
    const child = spawn(process.execPath, args, { stdio: 'inherit', env, cwd: __dirname });
    child.once('exit', (code, signal) => resolve(code === null ? 1 : code));
    child.once('error', (err) => { console.error(err); resolve(1); });
  });
}

async function main() {
  const argv = process.argv.slice(2);
  const nodeOptions = argv.filter((a) => a.startsWith('--'));
  let files = argv.filter((a) => !a.startsWith('--')).map((f) => path.resolve(f));
  if (files.length === 0) {
    const dir = path.join(__dirname, 'test');
    files = fs.readdirSync(dir).filter((f) => f.endsWith('.test.js')).sort().map((f) => path.join(dir, f));
  }

  const binary = outpostBinary();
  if (!fs.existsSync(binary)) {
    console.error(`outpost binary not found at ${binary}; run \`cargo build -p outpost\` in ${REPO_ROOT}`);
    return 1;
  }
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'outpost-node-'));
  const dataDir = path.join(tmp, 'data');
  let server = null;
  const onSignal = async () => { await stopServer(server); process.exit(130); };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    server = await startServer(binary, dataDir, path.join(tmp, 'logs'));
    const env = { ...process.env, NODE_EXTRA_CA_CERTS: server.caPath, OUTPOST_CA_PATH: server.caPath, OUTPOST_DATA_DIR: dataDir, OUTPOST_BIN: binary };
    for (const policy of POLICIES) env[envName(policy)] = connectionString(binary, dataDir, policy);
    const code = await runTests(files, nodeOptions, env);
    if (code !== 0) {
      console.error(`\n--- outpost stderr (tail; set OUTPOST_KEEP_DATA=1 to keep ${server.stderrPath}) ---\n${tail(server.stderrPath, 30)}`);
    }
    return code;
  } catch (err) {
    console.error(err.message || err);
    return 1;
  } finally {
    await stopServer(server);
    if (!process.env.OUTPOST_KEEP_DATA) fs.rmSync(tmp, { recursive: true, force: true });
  }
}

main().then((code) => process.exit(code));
