//! One device connection: owns the (TLS) stream, the decoder and the session state; authenticates
//! the CONNECT, then serves telemetry, twin requests and subscriptions, and pushes desired
//! property changes. Telemetry is pipelined: while one batch is being made durable the next one
//! accumulates, and PUBACKs go out in order once their batch is on disk (MQTT 3.1.1 §4.6).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use outpost_core::{
    AppendedEvent, CoreError, DeviceCommand, DeviceCredential, DeviceIdentity, FeedbackAck, HasErrorCode,
    MethodOutcome, OutgoingMessage, Outpost, StoreError,
};
use outpost_model::{DeviceId, ModuleId, Timestamp};
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::oneshot;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::codec::{
    ConnAck, Connect, ConnectReturnCode, DecodeError, Decoder, Packet, PacketId, Publish, QoS, SubAck,
    SubAckReturnCode, encode,
};
use crate::session::{PacketIds, SessionKey, Sessions, Subscriptions, keep_alive_window};
use crate::topics::{DevicePublish, TopicOwner, classify_publish, encode_property_bag};

/// Limits and timeouts of the MQTT front door.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MqttLimits {
    /// Largest packet accepted (a 256 KiB message plus its topic and header).
    pub max_packet_size: usize,
    /// Time a client has to send CONNECT after the TLS handshake.
    pub connect_timeout: Duration,
    /// Telemetry messages a connection may have waiting for durability before it stops reading.
    pub max_pending_messages: usize,
}

impl Default for MqttLimits {
    fn default() -> Self {
        Self {
            max_packet_size: outpost_model::MAX_MESSAGE_BYTES + 64 * 1024,
            connect_timeout: Duration::from_secs(10),
            max_pending_messages: 256,
        }
    }
}

/// What every connection shares.
#[derive(Debug)]
pub struct MqttContext {
    /// The hub services.
    pub outpost: Outpost,
    /// Persistent sessions (clean session = false).
    pub sessions: Sessions,
    /// Limits.
    pub limits: MqttLimits,
    /// Connects admitted per second per hub.
    pub throttle: crate::throttle::ConnectThrottle,
}

type Append = Pin<Box<dyn Future<Output = Result<Vec<AppendedEvent>, CoreError>> + Send>>;

struct PacketReader<S> {
    reader: ReadHalf<S>,
    buffer: BytesMut,
    decoder: Decoder,
}

impl<S: AsyncRead + AsyncWrite> PacketReader<S> {
    /// Returns the next packet, `None` at end of stream. Cancel-safe: bytes already read stay in
    /// the buffer.
    async fn next(&mut self) -> Result<Option<Packet>, ConnectionError> {
        loop {
            if let Some(packet) = self.decoder.decode(&mut self.buffer)? {
                return Ok(Some(packet));
            }
            if self.reader.read_buf(&mut self.buffer).await? == 0 {
                return Ok(None);
            }
        }
    }
}

struct PacketWriter<S> {
    writer: WriteHalf<S>,
    buffer: BytesMut,
}

impl<S: AsyncRead + AsyncWrite> PacketWriter<S> {
    async fn send(&mut self, packet: &Packet) -> Result<(), ConnectionError> {
        self.buffer.clear();
        encode(packet, &mut self.buffer).map_err(|error| ConnectionError::Encode(error.to_string()))?;
        self.writer.write_all(&self.buffer).await?;
        Ok(())
    }

    async fn publish(&mut self, topic: String, payload: Vec<u8>) -> Result<(), ConnectionError> {
        let publish = Publish {
            dup: false,
            qos: QoS::AtMostOnce,
            retain: false,
            topic,
            packet_id: None,
            payload: payload.into(),
        };
        self.send(&Packet::Publish(publish)).await
    }
}

/// Why a connection ended abnormally (logged at debug: one device's problem is not the server's).
#[derive(Debug, thiserror::Error)]
enum ConnectionError {
    #[error("i/o")]
    Io(#[from] std::io::Error),
    #[error("malformed packet")]
    Decode(#[from] DecodeError),
    #[error("cannot encode a packet: {0}")]
    Encode(String),
    #[error("protocol violation: {0}")]
    Protocol(String),
    #[error("hub")]
    Hub(#[from] CoreError),
}

/// Serves one connection until it closes, the identity connects elsewhere, or `cancel` fires.
pub async fn serve_connection<S>(
    stream: S,
    peer_chain: Vec<Vec<u8>>,
    context: Arc<MqttContext>,
    cancel: CancellationToken,
) where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (reader, writer) = tokio::io::split(stream);
    let mut reader = PacketReader {
        reader,
        buffer: BytesMut::with_capacity(4096),
        decoder: Decoder::new(context.limits.max_packet_size),
    };
    let mut writer = PacketWriter {
        writer,
        buffer: BytesMut::with_capacity(512),
    };
    let first = tokio::time::timeout(context.limits.connect_timeout, reader.next()).await;
    let connect = match first {
        Ok(Ok(Some(Packet::Connect(connect)))) => connect,
        Ok(Err(ConnectionError::Decode(DecodeError::UnsupportedProtocolLevel(level)))) => {
            tracing::debug!(level, "refused an unsupported mqtt protocol level");
            let _ = refuse(&mut writer, ConnectReturnCode::UnacceptableProtocolVersion).await;
            return;
        }
        Ok(Ok(Some(_))) => return tracing::debug!("first packet was not CONNECT"),
        Ok(Ok(None)) => return,
        Ok(Err(error)) => return tracing::debug!(error = %error, "closed a connection before CONNECT"),
        Err(_) => return tracing::debug!("no CONNECT in time"),
    };
    let identity = match authenticate(&context, &connect, &peer_chain).await {
        Ok(identity) => identity,
        Err(code) => {
            let _ = refuse(&mut writer, code).await;
            return;
        }
    };
    let session = match Session::start(identity, &connect, context.clone()).await {
        Ok(session) => session,
        Err(error) => {
            tracing::warn!(error = %error, "load the mqtt session failed");
            let _ = refuse(&mut writer, ConnectReturnCode::ServerUnavailable).await;
            return;
        }
    };
    if let Err(error) = session.run(reader, writer, cancel).await {
        tracing::debug!(error = %error, "mqtt connection ended");
    }
}

async fn refuse<S: AsyncRead + AsyncWrite>(
    writer: &mut PacketWriter<S>,
    return_code: ConnectReturnCode,
) -> Result<(), ConnectionError> {
    writer
        .send(&Packet::ConnAck(ConnAck {
            session_present: false,
            return_code,
        }))
        .await?;
    writer.writer.shutdown().await?;
    Ok(())
}

/// Authenticates a CONNECT (wire contract §2.2): client id `<device>` or `<device>/<module>`,
/// username `<host>/<client id>/?api-version=…` selecting the hub, password a SAS token, or no
/// password and a TLS client certificate.
async fn authenticate(
    context: &MqttContext,
    connect: &Connect,
    peer_chain: &[Vec<u8>],
) -> Result<DeviceIdentity, ConnectReturnCode> {
    let (device, module) = match connect.client_id.split_once('/') {
        Some((device, module)) => (device, Some(module)),
        None => (connect.client_id.as_str(), None),
    };
    let device = DeviceId::new(device).map_err(|_| ConnectReturnCode::IdentifierRejected)?;
    let module = module
        .map(ModuleId::new)
        .transpose()
        .map_err(|_| ConnectReturnCode::IdentifierRejected)?;
    let username = connect
        .username
        .as_deref()
        .ok_or(ConnectReturnCode::BadUserNameOrPassword)?;
    let (host, rest) = username
        .split_once('/')
        .ok_or(ConnectReturnCode::BadUserNameOrPassword)?;
    if !rest.starts_with(&format!("{}/", connect.client_id)) {
        return Err(ConnectReturnCode::BadUserNameOrPassword);
    }
    let hub = context
        .outpost
        .hubs
        .by_host(host)
        .ok_or(ConnectReturnCode::NotAuthorized)?;
    if !context.throttle.admit(&hub.name, std::time::Instant::now()) {
        tracing::info!(client_id = %connect.client_id, "connect throttled");
        return Err(ConnectReturnCode::ServerUnavailable);
    }
    let password = match &connect.password {
        Some(password) => {
            Some(std::str::from_utf8(password).map_err(|_| ConnectReturnCode::BadUserNameOrPassword)?)
        }
        None => None,
    };
    let credential = match password {
        Some(token) => DeviceCredential::Sas(token),
        None if !peer_chain.is_empty() => DeviceCredential::X509(peer_chain),
        None => return Err(ConnectReturnCode::NotAuthorized),
    };
    let registry = &context.outpost.registry;
    match registry
        .authenticate_device(hub, &device, module.as_ref(), credential)
        .await
    {
        Ok(identity) => Ok(identity),
        Err(CoreError::Unauthorized(reason)) => {
            tracing::info!(device = %device, reason = reason.describe(), "mqtt connection refused");
            Err(ConnectReturnCode::NotAuthorized)
        }
        Err(error) => {
            tracing::warn!(device = %device, error = %error, "mqtt authentication failed");
            Err(ConnectReturnCode::ServerUnavailable)
        }
    }
}

/// The state of one authenticated connection.
struct Session {
    identity: DeviceIdentity,
    context: Arc<MqttContext>,
    key: SessionKey,
    clean_session: bool,
    keep_alive: Option<Duration>,
    subscriptions: Subscriptions,
    session_present: bool,
    /// Direct method calls sent to the device, by request id.
    pending_methods: HashMap<String, oneshot::Sender<MethodOutcome>>,
    /// The next direct-method request id (sent as hex, as IoT Hub does).
    next_request_id: u64,
    /// The cloud-to-device message delivered and not yet acknowledged: its packet id and lock.
    c2d_in_flight: Option<(PacketId, String)>,
    /// The last packet id used for a server-to-device QoS 1 PUBLISH.
    packet_ids: PacketIds,
    /// Telemetry waiting for the batch in flight: (packet id to acknowledge, message).
    queued: Vec<(Option<PacketId>, OutgoingMessage)>,
    /// The batch being made durable, with the packet ids to acknowledge after it.
    in_flight: Option<(Append, Vec<Option<PacketId>>)>,
}

impl Session {
    async fn start(
        identity: DeviceIdentity,
        connect: &Connect,
        context: Arc<MqttContext>,
    ) -> Result<Self, StoreError> {
        let key = SessionKey {
            hub: identity.hub.name.clone(),
            client_id: connect.client_id.clone(),
        };
        let restored = context.sessions.restore(&key, connect.clean_session).await?;
        let session_present = restored.is_some();
        let keep_alive = keep_alive_window(connect.keep_alive);
        Ok(Self {
            identity,
            context,
            key,
            clean_session: connect.clean_session,
            keep_alive,
            subscriptions: Subscriptions::from_restored(restored.unwrap_or_default()),
            session_present,
            pending_methods: HashMap::new(),
            c2d_in_flight: None,
            packet_ids: PacketIds::default(),
            next_request_id: 1,
            queued: Vec::new(),
            in_flight: None,
        })
    }

    async fn save_session(&mut self) -> Result<(), ConnectionError> {
        if !self.clean_session {
            self.context
                .sessions
                .save(&self.key, self.subscriptions.filters())
                .await
                .map_err(CoreError::from)?;
        }
        Ok(())
    }

    fn owner(&self) -> TopicOwner<'_> {
        TopicOwner {
            device: self.identity.device_id.as_str(),
            module: self.identity.module_id.as_ref().map(ModuleId::as_str),
        }
    }

    fn subscribed(&self, topic: &str) -> bool {
        self.subscriptions.matches(topic)
    }

    async fn run<S: AsyncRead + AsyncWrite + Send>(
        mut self,
        mut reader: PacketReader<S>,
        mut writer: PacketWriter<S>,
        cancel: CancellationToken,
    ) -> Result<(), ConnectionError> {
        let presence = self.context.outpost.registry.presence().clone();
        let mut registration = presence.connect(self.identity.key(), Timestamp::now());
        let connack = ConnAck {
            session_present: self.session_present,
            return_code: ConnectReturnCode::Accepted,
        };
        let outcome = async {
            writer.send(&Packet::ConnAck(connack)).await?;
            // A restored session may be subscribed to cloud-to-device messages already.
            self.deliver_c2d(&mut writer).await?;
            tracing::debug!(device = %self.identity.device_id, "mqtt device connected");
            let mut deadline = self.keep_alive.map(|keep_alive| Instant::now() + keep_alive);
            let credential_expiry = self.identity.credential_expiry.map(|expiry| {
                let now_ms = Timestamp::now().unix_millis().unwrap_or_default();
                let remaining = expiry.unix_millis().unwrap_or_default().saturating_sub(now_ms).max(0);
                Instant::now() + Duration::from_millis(remaining as u64)
            });
            loop {
                let can_read = self.queued.len() < self.context.limits.max_pending_messages;
                tokio::select! {
                    packet = reader.next(), if can_read => {
                        let Some(packet) = packet? else { return Ok(()) };
                        deadline = self.keep_alive.map(|keep_alive| Instant::now() + keep_alive);
                        if !self.on_packet(packet, &mut writer).await? {
                            return Ok(());
                        }
                    }
                    appended = poll_in_flight(&mut self.in_flight) => {
                        self.acknowledge(appended, &mut writer).await?;
                    }
                    command = registration.commands.recv() => match command {
                        Some(DeviceCommand::DesiredPatch(patch)) => self.push_desired(patch, &mut writer).await?,
                        Some(DeviceCommand::InvokeMethod { name, payload, respond }) => {
                            self.invoke_method(name, payload, respond, &mut writer).await?;
                        }
                        Some(DeviceCommand::CloudToDeviceAvailable) => self.deliver_c2d(&mut writer).await?,
                        Some(DeviceCommand::TakenOver) | None => {
                            tracing::info!(device = %self.identity.device_id, "another connection of this identity took over");
                            return Ok(());
                        }
                        Some(DeviceCommand::Revoked) => {
                            tracing::info!(device = %self.identity.device_id, "identity disabled or deleted; closing");
                            return Ok(());
                        }
                    },
                    () = sleep_until(deadline) => {
                        tracing::info!(device = %self.identity.device_id, "keep-alive expired");
                        return Ok(());
                    }
                    () = sleep_until(credential_expiry) => {
                        // IoT Hub closes a connection when its SAS token expires; the SDKs renew.
                        tracing::info!(device = %self.identity.device_id, "sas token expired; closing");
                        return Ok(());
                    }
                    () = cancel.cancelled() => return Ok(()),
                }
                self.start_batch();
            }
        }
        .await;
        // Acknowledged telemetry is durable; what is still in flight is finished before leaving,
        // so nothing accepted from the socket is silently dropped.
        let _ = self.flush(&mut writer).await;
        if let Some((_, token)) = self.c2d_in_flight.take() {
            // Not acknowledged: deliver it again on the next connection instead of after the lock.
            if let Err(error) = self.context.outpost.c2d.abandon(&self.identity, &token).await {
                tracing::debug!(error = %error, "abandon an unacknowledged cloud-to-device message failed");
            }
        }
        presence.disconnect(&registration.key, registration.connection);
        outcome
    }

    /// Handles one packet; returns `false` when the client disconnected cleanly.
    async fn on_packet<S: AsyncRead + AsyncWrite>(
        &mut self,
        packet: Packet,
        writer: &mut PacketWriter<S>,
    ) -> Result<bool, ConnectionError> {
        match packet {
            Packet::Publish(publish) => self.on_publish(publish, writer).await?,
            Packet::Subscribe(subscribe) => {
                let owner = TopicOwner {
                    device: self.identity.device_id.as_str(),
                    module: self.identity.module_id.as_ref().map(ModuleId::as_str),
                };
                let return_codes = self.subscriptions.subscribe(&subscribe.filters, owner);
                if return_codes.contains(&SubAckReturnCode::Failure) {
                    tracing::info!(device = %self.identity.device_id, "refused a subscription outside the identity's topics");
                }
                self.save_session().await?;
                writer
                    .send(&Packet::SubAck(SubAck {
                        packet_id: subscribe.packet_id,
                        return_codes,
                    }))
                    .await?;
                self.deliver_c2d(writer).await?;
            }
            Packet::Unsubscribe(unsubscribe) => {
                self.subscriptions.unsubscribe(&unsubscribe.filters);
                self.save_session().await?;
                writer.send(&Packet::UnsubAck(unsubscribe.packet_id)).await?;
            }
            Packet::PingReq => writer.send(&Packet::PingResp).await?,
            Packet::PubAck(packet_id) => {
                if self
                    .c2d_in_flight
                    .as_ref()
                    .is_some_and(|(in_flight, _)| *in_flight == packet_id)
                {
                    let (_, token) = self.c2d_in_flight.take().expect("checked just above");
                    // MQTT has no reject or abandon: the PUBACK completes the message (§2.5).
                    match self.context.outpost.c2d.complete(&self.identity, &token).await {
                        Ok(()) | Err(CoreError::MessageLockLost) => {}
                        Err(other) => return Err(other.into()),
                    }
                    self.deliver_c2d(writer).await?;
                }
            }
            Packet::Disconnect => return Ok(false),
            other => {
                return Err(ConnectionError::Protocol(format!(
                    "unexpected {:?} from a client",
                    other.packet_type()
                )));
            }
        }
        Ok(true)
    }

    async fn on_publish<S: AsyncRead + AsyncWrite>(
        &mut self,
        publish: Publish,
        writer: &mut PacketWriter<S>,
    ) -> Result<(), ConnectionError> {
        if publish.qos == QoS::ExactlyOnce {
            return Err(ConnectionError::Protocol("IoT Hub does not support QoS 2".into()));
        }
        let kind = classify_publish(&publish.topic, self.owner()).map_err(|error| {
            tracing::info!(device = %self.identity.device_id, error = %error, "closing a connection");
            ConnectionError::Protocol(error.to_string())
        })?;
        if let DevicePublish::Telemetry {
            properties,
            application_properties,
        } = kind
        {
            let message = OutgoingMessage {
                properties: *properties,
                application_properties,
                body: publish.payload,
            };
            self.queued.push((publish.packet_id, message));
            return Ok(());
        }
        // Requests are answered after the telemetry before them, so PUBACKs stay in order.
        self.flush(writer).await?;
        if let Some(packet_id) = publish.packet_id {
            writer.send(&Packet::PubAck(packet_id)).await?;
        }
        match kind {
            DevicePublish::TwinGet { rid } => {
                let registry = &self.context.outpost.registry;
                match registry.device_side_twin(&self.identity).await {
                    Ok(twin) => twin_response(writer, 200, &rid, None, twin.to_string().into_bytes()).await?,
                    Err(error) => twin_error(writer, &rid, &error).await?,
                }
            }
            DevicePublish::TwinPatchReported { rid } => {
                let patch = serde_json::from_slice::<Value>(&publish.payload);
                let outcome = match patch {
                    Ok(Value::Object(patch)) => {
                        self.context
                            .outpost
                            .registry
                            .patch_reported(&self.identity, &patch)
                            .await
                    }
                    _ => Err(CoreError::InvalidArgument(
                        "the reported patch must be a JSON object".into(),
                    )),
                };
                match outcome {
                    Ok(version) => twin_response(writer, 204, &rid, Some(version), Vec::new()).await?,
                    Err(error) => twin_error(writer, &rid, &error).await?,
                }
            }
            DevicePublish::MethodResponse { status, rid } => {
                // Answers to unknown or timed-out requests are dropped, as IoT Hub does.
                if let Some(respond) = self.pending_methods.remove(&rid) {
                    let payload = if publish.payload.is_empty() {
                        Value::Null
                    } else {
                        serde_json::from_slice(&publish.payload).unwrap_or_else(|_| {
                            Value::String(String::from_utf8_lossy(&publish.payload).into_owned())
                        })
                    };
                    let _ = respond.send(MethodOutcome::Answered { status, payload });
                }
            }
            DevicePublish::Telemetry { .. } => {}
        }
        Ok(())
    }

    /// Starts making the queued telemetry durable, unless a batch is in flight already.
    fn start_batch(&mut self) {
        if self.in_flight.is_some() || self.queued.is_empty() {
            return;
        }
        let (packet_ids, messages): (Vec<_>, Vec<_>) = std::mem::take(&mut self.queued).into_iter().unzip();
        let telemetry = self.context.outpost.telemetry.clone();
        let identity = self.identity.clone();
        let append: Append = Box::pin(async move { telemetry.send(&identity, messages).await });
        self.in_flight = Some((append, packet_ids));
    }

    async fn acknowledge<S: AsyncRead + AsyncWrite>(
        &mut self,
        appended: (Result<Vec<AppendedEvent>, CoreError>, Vec<Option<PacketId>>),
        writer: &mut PacketWriter<S>,
    ) -> Result<(), ConnectionError> {
        let (result, packet_ids) = appended;
        if let Err(error) = result {
            // Never acknowledge what is not durable: the device will resend after reconnecting.
            tracing::warn!(device = %self.identity.device_id, error = %error, "telemetry not stored; closing");
            return Err(ConnectionError::Protocol("telemetry could not be stored".into()));
        }
        for packet_id in packet_ids.into_iter().flatten() {
            writer.send(&Packet::PubAck(packet_id)).await?;
        }
        Ok(())
    }

    /// Waits until every queued and in-flight message is durable and acknowledged.
    async fn flush<S: AsyncRead + AsyncWrite>(
        &mut self,
        writer: &mut PacketWriter<S>,
    ) -> Result<(), ConnectionError> {
        loop {
            self.start_batch();
            let Some((append, packet_ids)) = self.in_flight.take() else {
                return Ok(());
            };
            let result = append.await;
            self.acknowledge((result, packet_ids), writer).await?;
        }
    }

    /// Delivers the next cloud-to-device message at QoS 1 if the device subscribed to them and
    /// none is waiting for its PUBACK (one at a time keeps the queue order).
    async fn deliver_c2d<S: AsyncRead + AsyncWrite>(
        &mut self,
        writer: &mut PacketWriter<S>,
    ) -> Result<(), ConnectionError> {
        if self.c2d_in_flight.is_some() {
            return Ok(());
        }
        // Devices receive on `…/messages/devicebound/<bag>`, modules on their inputs (§2.5).
        let listening = match &self.identity.module_id {
            Some(module) => format!("devices/{}/modules/{module}/inputs/any", self.identity.device_id),
            None => format!("devices/{}/messages/devicebound/", self.identity.device_id),
        };
        if !self.subscribed(&listening) {
            return Ok(());
        }
        let Some(queued) = self.context.outpost.c2d.lock_next(&self.identity).await? else {
            return Ok(());
        };
        let Some(lock) = queued.lock else { return Ok(()) };
        let redelivery = queued.delivery_count > 1;
        let message = queued.message;
        let prefix = match &self.identity.module_id {
            Some(module) => {
                let input = message
                    .to
                    .rsplit_once("/inputs/")
                    .map_or("input", |(_, input)| input);
                format!(
                    "devices/{}/modules/{module}/inputs/{input}/",
                    self.identity.device_id
                )
            }
            None => listening,
        };
        let expiry = message.expiry.to_string();
        let ack = match message.ack {
            FeedbackAck::None => None,
            FeedbackAck::Positive => Some("positive"),
            FeedbackAck::Negative => Some("negative"),
            FeedbackAck::Full => Some("full"),
        };
        let system = [
            ("$.mid", message.message_id.as_deref()),
            ("$.cid", message.correlation_id.as_deref()),
            ("$.uid", message.user_id.as_deref()),
            ("$.to", Some(message.to.as_str())),
            ("$.ct", message.content_type.as_deref()),
            ("$.ce", message.content_encoding.as_deref()),
            ("$.exp", Some(expiry.as_str())),
            ("iothub-ack", ack),
        ];
        let bag = encode_property_bag(
            system
                .into_iter()
                .filter_map(|(key, value)| value.map(|value| (key, value)))
                .chain(
                    message
                        .application_properties
                        .iter()
                        .map(|(key, value)| (key.as_str(), value.as_str())),
                ),
        );
        let packet_id = self.packet_ids.next_id();
        let publish = Publish {
            // MQTT 3.1.1 §3.3.1.1: a redelivery carries DUP.
            dup: redelivery,
            qos: QoS::AtLeastOnce,
            retain: false,
            topic: format!("{prefix}{bag}"),
            packet_id: Some(packet_id),
            payload: message.body,
        };
        writer.send(&Packet::Publish(publish)).await?;
        self.c2d_in_flight = Some((packet_id, lock.token));
        Ok(())
    }

    /// Sends a direct method request (wire contract §2.7); answers `NotListening` at once when the
    /// device has not subscribed to methods.
    async fn invoke_method<S: AsyncRead + AsyncWrite>(
        &mut self,
        name: String,
        payload: Value,
        respond: oneshot::Sender<MethodOutcome>,
        writer: &mut PacketWriter<S>,
    ) -> Result<(), ConnectionError> {
        let rid = format!("{:x}", self.next_request_id);
        self.next_request_id += 1;
        let topic = format!("$iothub/methods/POST/{name}/?$rid={rid}");
        if !self.subscribed(&topic) {
            let _ = respond.send(MethodOutcome::NotListening);
            return Ok(());
        }
        // Calls whose caller gave up are forgotten before they pile up.
        self.pending_methods.retain(|_, respond| !respond.is_closed());
        self.pending_methods.insert(rid, respond);
        writer.publish(topic, payload.to_string().into_bytes()).await
    }

    async fn push_desired<S: AsyncRead + AsyncWrite>(
        &mut self,
        patch: Value,
        writer: &mut PacketWriter<S>,
    ) -> Result<(), ConnectionError> {
        let version = patch.get("$version").and_then(Value::as_u64).unwrap_or_default();
        let topic = format!("$iothub/twin/PATCH/properties/desired/?$version={version}");
        if self.subscribed(&topic) {
            writer.publish(topic, patch.to_string().into_bytes()).await?;
        }
        Ok(())
    }
}

/// Resolves when the batch in flight is durable; pending forever when there is none.
async fn poll_in_flight(
    in_flight: &mut Option<(Append, Vec<Option<PacketId>>)>,
) -> (Result<Vec<AppendedEvent>, CoreError>, Vec<Option<PacketId>>) {
    match in_flight {
        Some((append, _)) => {
            let result = append.await;
            let (_, packet_ids) = in_flight.take().expect("the batch is in flight");
            (result, packet_ids)
        }
        None => std::future::pending().await,
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

async fn twin_response<S: AsyncRead + AsyncWrite>(
    writer: &mut PacketWriter<S>,
    status: u16,
    rid: &str,
    version: Option<u64>,
    body: Vec<u8>,
) -> Result<(), ConnectionError> {
    let topic = match version {
        Some(version) => format!("$iothub/twin/res/{status}/?$rid={rid}&$version={version}"),
        None => format!("$iothub/twin/res/{status}/?$rid={rid}"),
    };
    writer.publish(topic, body).await
}

/// Answers a twin request with an error. The Node SDK looks only at `errorCode` in the body
/// (wire contract §2.6), so the body carries it along with the status in the topic.
async fn twin_error<S: AsyncRead + AsyncWrite>(
    writer: &mut PacketWriter<S>,
    rid: &str,
    error: &CoreError,
) -> Result<(), ConnectionError> {
    let code = error.code();
    let body = json!({
        "errorCode": code.numeric(),
        "trackingId": uuid::Uuid::new_v4().simple().to_string(),
        "message": error.to_string(),
        "timestampUtc": Timestamp::now().to_string(),
    });
    twin_response(
        writer,
        code.http_status(),
        rid,
        None,
        body.to_string().into_bytes(),
    )
    .await
}
