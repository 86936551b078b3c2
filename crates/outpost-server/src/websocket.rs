//! MQTT and AMQP over WebSockets on the HTTPS listener (wire reference §2.1, §3, §7.5): the
//! device SDKs' `websockets=True` / `MqttWs` / `AmqpWs` transports upgrade
//! `GET /$iothub/websocket`, the Event Hubs clients' `AmqpOverWebsocket` upgrades
//! `GET /$servicebus/websocket`. The subprotocol picks the door (`mqtt`, `AMQPWSB10`), and each
//! WebSocket becomes a byte stream for the same connection drivers the TCP listeners use: binary
//! messages in, binary messages out (RFC 6455 §5.6; MQTT-over-WebSocket and AMQP WebSocket
//! binding both carry the protocol's bytes unchanged across message boundaries).

use std::sync::Arc;

use axum::Extension;
use axum::Router;
use axum::extract::State;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use outpost_amqp::door::DoorContext;
use outpost_http::ClientCertificates;
use outpost_mqtt::MqttContext;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio_util::sync::CancellationToken;

/// The subprotocol of MQTT over WebSockets (MQTT 3.1.1 §6).
const MQTT: &str = "mqtt";
/// The subprotocol of the AMQP WebSocket binding.
const AMQP: &str = "AMQPWSB10";
/// Bytes buffered between a WebSocket and its connection driver, each way.
const BRIDGE_BUFFER: usize = 64 * 1024;

/// The doors a WebSocket can lead to.
#[derive(Clone)]
pub struct WebSocketDoors {
    /// The MQTT door.
    pub mqtt: Arc<MqttContext>,
    /// The AMQP door.
    pub amqp: Arc<DoorContext>,
    /// Ends every bridged connection on shutdown.
    pub cancel: CancellationToken,
}

impl std::fmt::Debug for WebSocketDoors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebSocketDoors").finish_non_exhaustive()
    }
}

/// The WebSocket routes, to merge into the HTTPS router.
pub fn routes(doors: WebSocketDoors) -> Router {
    Router::new()
        .route("/$iothub/websocket", get(iothub))
        .route("/$servicebus/websocket", get(servicebus))
        .with_state(doors)
}

/// Which door a subprotocol leads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Door {
    Mqtt,
    Amqp,
}

/// `/$iothub/websocket`: MQTT or AMQP, by subprotocol.
async fn iothub(
    State(doors): State<WebSocketDoors>,
    chain: Option<Extension<ClientCertificates>>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    open(
        doors,
        chain,
        &headers,
        upgrade,
        &[(MQTT, Door::Mqtt), (AMQP, Door::Amqp)],
    )
}

/// `/$servicebus/websocket`: the Event Hubs clients, AMQP only.
async fn servicebus(
    State(doors): State<WebSocketDoors>,
    chain: Option<Extension<ClientCertificates>>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    open(doors, chain, &headers, upgrade, &[(AMQP, Door::Amqp)])
}

/// Accepts the upgrade with the first subprotocol the client offers that the path serves, or
/// answers 400 naming the ones it serves.
fn open(
    doors: WebSocketDoors,
    chain: Option<Extension<ClientCertificates>>,
    headers: &HeaderMap,
    upgrade: WebSocketUpgrade,
    served: &[(&'static str, Door)],
) -> Response {
    let offered = headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim);
    let chosen = offered.into_iter().find_map(|protocol| {
        served
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(protocol))
            .copied()
    });
    let Some((protocol, door)) = chosen else {
        let names: Vec<&str> = served.iter().map(|(name, _)| *name).collect();
        let body = serde_json::json!({
            "Message": format!(
                "ErrorCode:InvalidProtocolVersion;the WebSocket subprotocol must be one of {}",
                names.join(", ")
            ),
            "ExceptionMessage": "",
        });
        return (StatusCode::BAD_REQUEST, axum::Json(body)).into_response();
    };
    upgrade
        .protocols([protocol])
        .on_upgrade(move |socket| bridge(socket, door, doors, chain))
}

/// Runs the door's connection driver on one end of a duplex pipe and pumps the WebSocket's binary
/// messages through the other, until either side ends.
/// The TLS client certificate of the HTTPS connection goes to the driver, so X.509 devices
/// authenticate over WebSockets as over TCP.
async fn bridge(
    socket: WebSocket,
    door: Door,
    doors: WebSocketDoors,
    chain: Option<Extension<ClientCertificates>>,
) {
    let chain: Vec<Vec<u8>> = chain
        .map(|Extension(ClientCertificates(chain))| chain.as_ref().clone())
        .unwrap_or_default();
    let (driver_end, bridge_end) = tokio::io::duplex(BRIDGE_BUFFER);
    let cancel = doors.cancel.child_token();
    let driver = match door {
        Door::Mqtt => tokio::spawn(outpost_mqtt::serve_connection(
            driver_end,
            chain,
            doors.mqtt.clone(),
            cancel.clone(),
        )),
        Door::Amqp => tokio::spawn(outpost_amqp::door::serve_connection(
            driver_end,
            chain,
            doors.amqp.clone(),
            cancel.clone(),
        )),
    };
    pump(socket, bridge_end).await;
    // The WebSocket is gone: the driver sees its stream end; on shutdown it is told directly.
    let _ = driver.await;
}

/// Copies WebSocket binary (and text) payloads into `pipe` and what the driver writes back out as
/// binary messages, both ways at once (a driver blocked writing must not stop its input); a
/// close, an error or the driver's end stops both.
async fn pump(socket: WebSocket, pipe: DuplexStream) {
    let (mut sink, mut stream) = socket.split();
    let (mut from_driver, mut to_driver) = tokio::io::split(pipe);
    let inbound = async {
        while let Some(Ok(message)) = stream.next().await {
            let payload: Bytes = match message {
                Message::Binary(payload) => payload,
                Message::Text(text) => Bytes::copy_from_slice(text.as_bytes()),
                Message::Ping(_) | Message::Pong(_) => continue,
                Message::Close(_) => break,
            };
            if to_driver.write_all(&payload).await.is_err() {
                break;
            }
        }
        let _ = to_driver.shutdown().await;
    };
    let outbound = async {
        let mut buffer = vec![0u8; 16 * 1024];
        loop {
            match from_driver.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(read) => {
                    let message = Message::Binary(Bytes::copy_from_slice(&buffer[..read]));
                    if sink.send(message).await.is_err() {
                        break;
                    }
                }
            }
        }
        let _ = sink.close().await;
    };
    tokio::select! {
        () = inbound => {}
        () = outbound => {}
    }
}
