// The device SDK's WebSocket transports against the HTTPS listener (443): `MqttWs`
// (azure-iot-device-mqtt 1.16.4, `wss://localhost/$iothub/websocket`, subprotocol `mqtt`) and
// `AmqpWs` (azure-iot-device-amqp 1.14.4, same path, subprotocol `AMQPWSB10`; wire reference §2.1,
// §3). Each sends telemetry, reads and patches its twin, answers a direct method and receives a
// cloud-to-device message, through the same MQTT and AMQP doors as the TCP listeners.
'use strict';

const { test, after } = require('node:test');
const assert = require('node:assert/strict');
const { promisify } = require('node:util');
const { Client, Message } = require('azure-iot-device');
const { MqttWs } = require('azure-iot-device-mqtt');
const { AmqpWs } = require('azure-iot-device-amqp');
const { c2dSend, caPem, closeAll, createSasDevice, deviceEvents, registry, serviceClient, within } = require('./helpers');

const reg = registry();
const clients = [];
after(async () => {
  for (const client of clients) await client.close().catch(() => {});
  await closeAll();
});

for (const [name, Transport] of [['MqttWs', MqttWs], ['AmqpWs', AmqpWs]]) {
  test(`a device on ${name}: telemetry, twin, a direct method and a cloud-to-device message`, async () => {
    const device = await createSasDevice(reg, `node-${name.toLowerCase()}`);
    const client = Client.fromConnectionString(device.cs, Transport);
    client.setOptions({ ca: caPem() });
    clients.push(client);
    await within(20000, client.open(), 'open()');

    const message = new Message(`over ${name}`);
    message.messageId = `${name}-1`;
    await within(20000, client.sendEvent(message), 'sendEvent()');
    const [event] = await deviceEvents(device.deviceId);
    assert.equal(event.payload, `over ${name}`);
    assert.equal(event.properties.system['message-id'], `${name}-1`);

    const twin = await within(20000, client.getTwin(), 'getTwin()');
    // `update` takes a callback and returns nothing.
    await within(20000, promisify(twin.properties.reported.update)({ transport: name }), 'reported.update()');
    const { responseBody } = await reg.getTwin(device.deviceId);
    assert.equal(responseBody.properties.reported.transport, name);

    client.onDeviceMethod('ping', (request, response) => {
      response.send(200, { pong: request.payload }, () => {});
    });
    // The transport subscribes to methods asynchronously: a connect timeout lets the call wait.
    const { result } = await within(30000, serviceClient().invokeDeviceMethod(device.deviceId, {
      methodName: 'ping', payload: 7, responseTimeoutInSeconds: 10, connectTimeoutInSeconds: 10,
    }), 'invokeDeviceMethod()');
    assert.deepEqual(result, { status: 200, payload: { pong: 7 } });

    const received = new Promise((resolve) => {
      client.on('message', (msg) => {
        client.complete(msg, () => {});
        resolve(msg);
      });
    });
    await c2dSend(device.deviceId, `to ${name}`, { messageId: `${name}-c2d` });
    const c2d = await within(20000, received, 'the cloud-to-device message');
    assert.equal(c2d.data.toString(), `to ${name}`);
    assert.equal(c2d.messageId, `${name}-c2d`);
  });
}
