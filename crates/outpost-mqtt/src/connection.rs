//! One device connection: owns the (TLS) stream, the decoder and the session state; authenticates
//! the CONNECT, then serves telemetry, twin requests and subscriptions, and pushes desired
//! property changes. Telemetry is pipelined (`pipeline`): batches go to the event log while
//! earlier ones sync, and PUBACKs go out in order once their batch is on disk (MQTT 3.1.1 §4.6).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use outpost_core::twins::device_twin_error;
use outpost_core::{
    CoreError, DeviceCommand, DeviceCredential, DeviceIdentity, HasErrorCode, MethodInvocation,
    MethodOutcome, Outpost, StoreError,
};
use outpost_model::{DeviceId, ModuleId, Timestamp};
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::oneshot;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::codec::{ConnAck, Connect, ConnectReturnCode, DecodeError, Decoder, Packet, encode};
use crate::pipeline::{Append, Completed, TelemetryPipeline};
use crate::session::{SessionKey, Sessions, Subscriptions, keep_alive_window};
use crate::state::{Action, SessionState, twin_response};

/// Limits and timeouts of the MQTT front door.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MqttLimits {
    /// Largest packet accepted (a 256 KiB message plus its topic and header).
    pub max_packet_size: usize,
    /// Time a client has to send CONNECT after the TLS handshake.
    pub connect_timeout: Duration,
    /// Telemetry messages a connection may have waiting for durability before it stops reading.
    pub max_pending_messages: usize,
    /// Telemetry batches of one connection on their way to disk at once.
    pub max_batches_in_flight: usize,
}

impl Default for MqttLimits {
    fn default() -> Self {
        Self {
            max_packet_size: outpost_model::MAX_MESSAGE_BYTES + 64 * 1024,
            connect_timeout: Duration::from_secs(10),
            max_pending_messages: 256,
            // One: more batches in flight split the same load into more, smaller group commits;
            // measured slower (0.68× the throughput, 1.7× the p99 at 80 k msgs/s).
            max_batches_in_flight: 1,
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

/// Smallest read; what an idle connection holds while it waits.
const MIN_READ: usize = 128;
/// Largest read, reached by doubling while reads fill the space offered.
const MAX_READ: usize = 64 * 1024;

/// Reads packets. The buffer follows the traffic: reads double while they fill what was offered,
/// and an empty buffer is released before waiting, so an idle connection holds `MIN_READ` bytes
/// instead of a full read buffer (docs/benchmarks/results.md, memory per connection).
struct PacketReader<S> {
    reader: ReadHalf<S>,
    buffer: BytesMut,
    decoder: Decoder,
    read_size: usize,
}

impl<S: AsyncRead + AsyncWrite> PacketReader<S> {
    fn new(reader: ReadHalf<S>, decoder: Decoder) -> Self {
        Self {
            reader,
            buffer: BytesMut::new(),
            decoder,
            read_size: MIN_READ,
        }
    }

    /// Returns the next packet, `None` at end of stream. Cancel-safe: bytes already read stay in
    /// the buffer.
    async fn next(&mut self) -> Result<Option<Packet>, ConnectionError> {
        loop {
            if let Some(packet) = self.decoder.decode(&mut self.buffer)? {
                return Ok(Some(packet));
            }
            let offered = if self.buffer.is_empty() {
                if self.buffer.capacity() > 2 * MIN_READ {
                    self.buffer = BytesMut::new();
                }
                MIN_READ.max(self.read_size / 2)
            } else {
                self.read_size
            };
            self.buffer.reserve(offered);
            let spare = self.buffer.capacity() - self.buffer.len();
            let read = self.reader.read_buf(&mut self.buffer).await?;
            if read == 0 {
                return Ok(None);
            }
            self.read_size = if read >= spare {
                (self.read_size * 2).min(MAX_READ)
            } else if read < self.read_size / 4 {
                (self.read_size / 2).max(MIN_READ)
            } else {
                self.read_size
            };
        }
    }
}

/// Outgoing packets are queued and written together by [`PacketWriter::flush`]: one TLS record
/// and one `writev` for every PUBACK of a durable batch instead of one each (the per-packet
/// writes were a third of the server's CPU at 50 k msgs/s; docs/benchmarks/results.md).
struct PacketWriter<S> {
    writer: WriteHalf<S>,
    buffer: BytesMut,
}

/// Queued output beyond this is written at once rather than at the next flush.
const WRITE_BUFFER_HIGH_WATER: usize = 64 * 1024;
/// A write buffer up to this size is kept for reuse after a flush; a larger one is released.
const WRITE_BUFFER_KEPT: usize = 4096;

impl<S: AsyncRead + AsyncWrite> PacketWriter<S> {
    /// Queues `packet`; it reaches the socket at the next [`PacketWriter::flush`].
    async fn send(&mut self, packet: &Packet) -> Result<(), ConnectionError> {
        encode(packet, &mut self.buffer).map_err(|error| ConnectionError::Encode(error.to_string()))?;
        if self.buffer.len() >= WRITE_BUFFER_HIGH_WATER {
            self.flush().await?;
        }
        Ok(())
    }

    /// Writes everything queued. A buffer grown by a burst is released, so that a connection
    /// that goes quiet afterwards holds no more than an idle one.
    async fn flush(&mut self) -> Result<(), ConnectionError> {
        if !self.buffer.is_empty() {
            self.writer.write_all(&self.buffer).await?;
            self.writer.flush().await?;
            if self.buffer.capacity() > WRITE_BUFFER_KEPT {
                self.buffer = BytesMut::new();
            } else {
                self.buffer.clear();
            }
        }
        Ok(())
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
///
/// A future's size is that of its largest state, and this one lives as long as the connection:
/// the stream is split (moved to the heap) before the future starts, and the setup (CONNECT,
/// authentication, session) and the session run as separate boxed futures, so what stays
/// allocated is what the session needs (an idle connection's memory; docs/benchmarks/results.md).
pub fn serve_connection<S>(
    stream: S,
    peer_chain: Vec<Vec<u8>>,
    context: Arc<MqttContext>,
    cancel: CancellationToken,
) -> impl Future<Output = ()> + Send
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (reader, writer) = tokio::io::split(stream);
    async move {
        // Not `let Some((session, …)) = …`: a binding moved from before an await keeps its room
        // in the future all the same.
        let session = Box::pin(accept(reader, writer, peer_chain, context))
            .await
            .map(|(session, reader, writer)| Box::pin(session.run(reader, writer, cancel)));
        if let Some(session) = session
            && let Err(error) = session.await
        {
            tracing::debug!(error = %error, "mqtt connection ended");
        }
    }
}

type Accepted<S> = (Session, PacketReader<S>, PacketWriter<S>);

/// Reads the CONNECT, authenticates it and loads the session; refuses with the CONNACK code
/// of the failure and returns `None` when the connection cannot go on.
async fn accept<S>(
    reader: ReadHalf<S>,
    writer: WriteHalf<S>,
    peer_chain: Vec<Vec<u8>>,
    context: Arc<MqttContext>,
) -> Option<Accepted<S>>
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let mut reader = PacketReader::new(reader, Decoder::new(context.limits.max_packet_size));
    let mut writer = PacketWriter {
        writer,
        buffer: BytesMut::new(),
    };
    let first = tokio::time::timeout(context.limits.connect_timeout, reader.next()).await;
    let connect = match first {
        Ok(Ok(Some(Packet::Connect(connect)))) => connect,
        Ok(Err(ConnectionError::Decode(DecodeError::UnsupportedProtocolLevel(level)))) => {
            tracing::debug!(level, "refused an unsupported mqtt protocol level");
            let _ = refuse(&mut writer, ConnectReturnCode::UnacceptableProtocolVersion).await;
            return None;
        }
        Ok(Ok(Some(_))) => {
            tracing::debug!("first packet was not CONNECT");
            return None;
        }
        Ok(Ok(None)) => return None,
        Ok(Err(error)) => {
            tracing::debug!(error = %error, "closed a connection before CONNECT");
            return None;
        }
        Err(_) => {
            tracing::debug!("no CONNECT in time");
            return None;
        }
    };
    let identity = match authenticate(&context, &connect, &peer_chain).await {
        Ok(identity) => identity,
        Err(code) => {
            let _ = refuse(&mut writer, code).await;
            return None;
        }
    };
    match Session::start(identity, &connect, context).await {
        Ok(session) => Some((session, reader, writer)),
        Err(error) => {
            tracing::warn!(error = %error, "load the mqtt session failed");
            let _ = refuse(&mut writer, ConnectReturnCode::ServerUnavailable).await;
            None
        }
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
    writer.flush().await?;
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

/// One authenticated connection: the pure [`SessionState`] decides, this task performs — it
/// writes packets, batches telemetry into the event log and calls the hub's services.
struct Session {
    identity: DeviceIdentity,
    context: Arc<MqttContext>,
    key: SessionKey,
    keep_alive: Option<Duration>,
    session_present: bool,
    state: SessionState,
    /// Direct method calls sent to the device, by request id.
    pending_methods: HashMap<String, oneshot::Sender<MethodOutcome>>,
    /// The next direct-method request id (sent as hex, as IoT Hub does).
    next_request_id: u64,
    /// Telemetry queued and on its way to disk.
    telemetry: TelemetryPipeline,
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
        let state = SessionState::new(
            identity.device_id.as_str(),
            identity.module_id.as_ref().map(ModuleId::as_str),
            !connect.clean_session,
            Subscriptions::from_restored(restored.unwrap_or_default()),
        );
        let max_batches_in_flight = context.limits.max_batches_in_flight;
        Ok(Self {
            identity,
            context,
            key,
            keep_alive: keep_alive_window(connect.keep_alive),
            session_present,
            state,
            pending_methods: HashMap::new(),
            next_request_id: 1,
            telemetry: TelemetryPipeline::new(max_batches_in_flight),
        })
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
            Box::pin(self.offer_c2d(&mut writer)).await?;
            tracing::debug!(device = %self.identity.device_id, "mqtt device connected");
            let mut deadline = self.keep_alive.map(|keep_alive| Instant::now() + keep_alive);
            let credential_expiry = self.identity.credential_expiry.map(|expiry| {
                let now_ms = Timestamp::now().unix_millis().unwrap_or_default();
                let remaining = expiry.unix_millis().unwrap_or_default().saturating_sub(now_ms).max(0);
                Instant::now() + Duration::from_millis(remaining as u64)
            });
            loop {
                // Everything the last event produced goes out before waiting for the next one.
                writer.flush().await?;
                let can_read = self.telemetry.pending() < self.context.limits.max_pending_messages;
                tokio::select! {
                    packet = reader.next(), if can_read => {
                        let Some(packet) = packet? else { return Ok(()) };
                        deadline = self.keep_alive.map(|keep_alive| Instant::now() + keep_alive);
                        let actions = self.state.on_packet(packet);
                        if !Box::pin(self.perform(actions, &mut writer)).await? {
                            return Ok(());
                        }
                    }
                    appended = self.telemetry.next_completed() => {
                        Box::pin(self.acknowledge(appended, &mut writer)).await?;
                    }
                    command = registration.commands.recv() => match command {
                        Some(DeviceCommand::DesiredPatch(patch)) => {
                            let version = patch.get("$version").and_then(Value::as_u64).unwrap_or_default();
                            if let Some(packet) = self.state.desired_notification(version, patch.to_string().into_bytes()) {
                                writer.send(&packet).await?;
                            }
                        }
                        Some(DeviceCommand::InvokeMethod(call)) => {
                            let MethodInvocation { name, payload, respond } = *call;
                            Box::pin(self.invoke_method(&name, &payload, respond, &mut writer)).await?;
                        }
                        Some(DeviceCommand::CloudToDeviceAvailable) => Box::pin(self.offer_c2d(&mut writer)).await?,
                        Some(DeviceCommand::TakenOver) | None => {
                            tracing::info!(device = %self.identity.device_id, "another connection of this identity took over");
                            return Ok(());
                        }
                        Some(DeviceCommand::Revoked) => {
                            tracing::info!(device = %self.identity.device_id, "identity disabled or deleted; closing");
                            return Ok(());
                        }
                    },
                    // One timer for both deadlines: each timer is part of every connection's state.
                    () = sleep_until(earliest(deadline, credential_expiry)) => {
                        if credential_expiry.is_some_and(|expiry| expiry <= Instant::now()) {
                            // IoT Hub closes a connection when its SAS token expires; the SDKs renew.
                            tracing::info!(device = %self.identity.device_id, "sas token expired; closing");
                        } else {
                            tracing::info!(device = %self.identity.device_id, "keep-alive expired");
                        }
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
        let _ = Box::pin(self.flush(&mut writer)).await;
        let _ = writer.flush().await;
        if let Some(token) = self.state.take_c2d_in_flight() {
            // Not acknowledged: deliver it again on the next connection instead of after the lock.
            if let Err(error) = Box::pin(self.context.outpost.c2d.abandon(&self.identity, &token)).await {
                tracing::debug!(error = %error, "abandon an unacknowledged cloud-to-device message failed");
            }
        }
        presence.disconnect(&registration.key, registration.connection);
        outcome
    }

    /// Performs what the session state decided; returns `false` when the connection must close.
    async fn perform<S: AsyncRead + AsyncWrite>(
        &mut self,
        actions: Vec<Action>,
        writer: &mut PacketWriter<S>,
    ) -> Result<bool, ConnectionError> {
        for action in actions {
            match action {
                Action::Send(packet) => writer.send(&packet).await?,
                Action::StoreTelemetry { packet_id, message } => self.telemetry.push(packet_id, message),
                Action::FlushTelemetry => self.flush(writer).await?,
                Action::GetTwin { rid } => {
                    // Boxed, like the other store calls here: their futures are deep, and inline
                    // they would be part of every connection's task.
                    let response = match Box::pin(
                        self.context.outpost.registry.device_side_twin(&self.identity),
                    )
                    .await
                    {
                        Ok(twin) => twin_response(200, &rid, None, twin.to_string().into_bytes()),
                        Err(error) => twin_error(&rid, &error),
                    };
                    writer.send(&response).await?;
                }
                Action::PatchReported { rid, patch } => {
                    let outcome = Box::pin(
                        self.context
                            .outpost
                            .registry
                            .patch_reported_json(&self.identity, &patch),
                    )
                    .await;
                    let response = match outcome {
                        Ok(version) => twin_response(204, &rid, Some(version), Vec::new()),
                        Err(error) => twin_error(&rid, &error),
                    };
                    writer.send(&response).await?;
                }
                Action::MethodAnswered { rid, status, payload } => {
                    // Answers to unknown or timed-out requests are dropped, as IoT Hub does.
                    if let Some(respond) = self.pending_methods.remove(&rid) {
                        let _ = respond.send(MethodOutcome::answered(status, &payload));
                    }
                }
                Action::CompleteC2d { token } => {
                    match Box::pin(self.context.outpost.c2d.complete(&self.identity, &token)).await {
                        Ok(()) | Err(CoreError::MessageLockLost) => {}
                        Err(other) => return Err(other.into()),
                    }
                }
                Action::OfferC2d => Box::pin(self.offer_c2d(writer)).await?,
                Action::SaveSubscriptions => {
                    let filters = self.state.subscriptions().filters().to_vec();
                    Box::pin(self.context.sessions.save(&self.key, &filters))
                        .await
                        .map_err(CoreError::from)?;
                }
                Action::Close { reason } => {
                    tracing::info!(device = %self.identity.device_id, reason, "closing an mqtt connection");
                    return Ok(false);
                }
            }
        }
        Ok(true)
    }

    /// Starts making the queued telemetry durable, unless enough batches are in flight already.
    fn start_batch(&mut self) {
        let (telemetry, identity) = (&self.context.outpost.telemetry, &self.identity);
        self.telemetry.submit(|messages| -> Append {
            let (telemetry, identity) = (telemetry.clone(), identity.clone());
            Box::pin(async move { telemetry.send(&identity, messages).await })
        });
    }

    async fn acknowledge<S: AsyncRead + AsyncWrite>(
        &mut self,
        appended: Completed,
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
            if self.telemetry.is_empty() {
                return Ok(());
            }
            let completed = self.telemetry.next_completed().await;
            self.acknowledge(completed, writer).await?;
        }
    }

    /// Delivers the next cloud-to-device message if the session can take one now.
    async fn offer_c2d<S: AsyncRead + AsyncWrite>(
        &mut self,
        writer: &mut PacketWriter<S>,
    ) -> Result<(), ConnectionError> {
        if !self.state.can_take_c2d() {
            return Ok(());
        }
        let Some(queued) = self.context.outpost.c2d.lock_next(&self.identity).await? else {
            return Ok(());
        };
        let Some(lock) = queued.lock else { return Ok(()) };
        let packet = self
            .state
            .deliver_c2d(queued.message, lock.token, queued.delivery_count > 1);
        writer.send(&packet).await
    }

    /// Sends a direct method request; answers `NotListening` at once when the device has not
    /// subscribed to methods.
    async fn invoke_method<S: AsyncRead + AsyncWrite>(
        &mut self,
        name: &str,
        payload: &Value,
        respond: oneshot::Sender<MethodOutcome>,
        writer: &mut PacketWriter<S>,
    ) -> Result<(), ConnectionError> {
        let rid = format!("{:x}", self.next_request_id);
        self.next_request_id += 1;
        let Some(packet) = self
            .state
            .method_request(name, &rid, payload.to_string().into_bytes())
        else {
            let _ = respond.send(MethodOutcome::NotListening);
            return Ok(());
        };
        // Calls whose caller gave up are forgotten before they pile up.
        self.pending_methods.retain(|_, respond| !respond.is_closed());
        self.pending_methods.insert(rid, respond);
        writer.send(&packet).await
    }
}

/// The earlier of two optional deadlines.
fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Answers a twin request with an error. The Node SDK looks only at `errorCode` in the body
/// (wire contract §2.6), so the body carries it along with the status in the topic.
fn twin_error(rid: &str, error: &CoreError) -> Packet {
    let tracking_id = uuid::Uuid::new_v4().simple().to_string();
    let body = device_twin_error(error, &tracking_id, Timestamp::now());
    twin_response(
        error.code().http_status(),
        rid,
        None,
        body.to_string().into_bytes(),
    )
}
