//! The MQTT side of the load generator: device provisioning through the operator API, TLS or
//! plain connections speaking Outpost's own codec, and the paced publish loop of one device.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, anyhow, bail};
use bytes::{Bytes, BytesMut};
use hyper::Method;
use outpost_auth::{KeyEncoding, SymmetricKey};
use outpost_mqtt::codec::{
    Connect, ConnectReturnCode, Decoder, Packet, PacketId, Publish, QoS, SubAckReturnCode, Subscribe, encode,
};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{sleep_until, timeout};

use crate::operator::Operator;

/// A byte stream to a broker, TLS or plain.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Where and how to connect.
#[derive(Clone)]
pub struct Target {
    /// Host and port of the MQTT listener.
    pub addr: String,
    /// TLS client configuration, `None` for plain TCP.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// Name checked against the server certificate and used as the hub host in usernames.
    pub hub: String,
    /// Whether to speak to a generic broker (no auth, `bench/<n>` topics).
    pub generic: bool,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("addr", &self.addr)
            .field("tls", &self.tls.is_some())
            .field("hub", &self.hub)
            .field("generic", &self.generic)
            .finish()
    }
}

/// One simulated device: its client id, credentials and telemetry topic.
#[derive(Debug, Clone)]
pub struct Device {
    pub id: String,
    pub index: usize,
    pub key: Option<SymmetricKey>,
}

impl Device {
    pub fn topic(&self, target: &Target) -> String {
        if target.generic {
            format!("bench/{}", self.index)
        } else {
            format!("devices/{}/messages/events/", self.id)
        }
    }
}

/// Builds a TLS client configuration trusting the CA in `ca_pem`.
pub fn tls_config(ca_pem: &Path) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let pem = std::fs::read(ca_pem).with_context(|| format!("read {}", ca_pem.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
        roots.add(cert.context("parse the CA certificate")?)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let webpki =
        rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()
            .context("build the server certificate verifier")?;
    Ok(Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(VerifiedOnce {
                webpki,
                verified: std::sync::Mutex::new(Vec::new()),
            }))
            .with_no_client_auth(),
    ))
}

/// Verifies a server's certificate chain the first time it is seen and remembers it: a storm
/// makes thousands of handshakes with one server, and repeating the chain's ECDSA verification
/// in every one cost the generator's core ≈ 10 % (perf), capping the connects/s it could drive.
/// Each handshake's own signature (TLS 1.3 CertificateVerify) is still checked.
#[derive(Debug)]
struct VerifiedOnce {
    webpki: Arc<rustls::client::WebPkiServerVerifier>,
    /// End-entity certificates (DER) already verified, with the name they were verified for.
    verified: std::sync::Mutex<Vec<(Vec<u8>, rustls::pki_types::ServerName<'static>)>>,
}

impl rustls::client::danger::ServerCertVerifier for VerifiedOnce {
    fn verify_server_cert(
        &self,
        end_entity: &rustls::pki_types::CertificateDer<'_>,
        intermediates: &[rustls::pki_types::CertificateDer<'_>],
        server_name: &rustls::pki_types::ServerName<'_>,
        ocsp_response: &[u8],
        now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        let mut verified = self
            .verified
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let seen = verified
            .iter()
            .any(|(der, name)| der.as_slice() == end_entity.as_ref() && name == server_name);
        if !seen {
            self.webpki
                .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)?;
            verified.push((end_entity.to_vec(), server_name.to_owned()));
        }
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

/// Creates (or fetches) devices `<prefix>-0..n` through the operator API of the server whose
/// data directory is `data_dir`, and returns them with their primary keys.
pub async fn provision(data_dir: &Path, hub: &str, prefix: &str, n: usize) -> anyhow::Result<Vec<Device>> {
    let operator = Operator::from_data_dir(data_dir)?;
    let semaphore = Arc::new(tokio::sync::Semaphore::new(16));
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        let id = format!("{prefix}-{i}");
        let (operator, hub, semaphore) = (operator.clone(), hub.to_owned(), semaphore.clone());
        tasks.push(tokio::spawn(async move {
            let _permit = semaphore.acquire_owned().await?;
            let path = format!("/devices/{id}?api-version=2021-04-12");
            let (mut status, mut bytes) = operator
                .service(&hub, Method::PUT, &path, Some(Bytes::from_static(b"{}")))
                .await?;
            if !status.is_success() {
                // Already there from an earlier run: read it.
                (status, bytes) = operator.service(&hub, Method::GET, &path, None).await?;
            }
            if !status.is_success() {
                bail!("could not create or read device {id}: {status}");
            }
            let json: serde_json::Value = serde_json::from_slice(&bytes)?;
            let key = json
                .pointer("/authentication/symmetricKey/primaryKey")
                .and_then(|k| k.as_str())
                .ok_or_else(|| anyhow!("device {id} has no primary key"))?;
            Ok::<_, anyhow::Error>(Device {
                id,
                index: i,
                key: Some(SymmetricKey::try_new(key).map_err(|e| anyhow!("{e}"))?),
            })
        }));
    }
    let mut devices = Vec::with_capacity(n);
    for task in tasks {
        devices.push(task.await??);
    }
    Ok(devices)
}

/// An open MQTT session after a successful CONNACK.
pub struct Conn {
    stream: Box<dyn Io>,
    buffer: BytesMut,
    decoder: Decoder,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn").finish_non_exhaustive()
    }
}

impl Conn {
    /// Opens TCP (and TLS), sends CONNECT and waits for an accepting CONNACK.
    pub async fn open(target: &Target, device: &Device) -> anyhow::Result<Self> {
        let tcp = TcpStream::connect(&target.addr)
            .await
            .with_context(|| format!("connect to {}", target.addr))?;
        tcp.set_nodelay(true)?;
        let stream: Box<dyn Io> = match &target.tls {
            Some(config) => {
                let connector = tokio_rustls::TlsConnector::from(config.clone());
                let name = ServerName::try_from(target.hub.clone())?;
                Box::new(connector.connect(name, tcp).await.context("TLS handshake")?)
            }
            None => Box::new(tcp),
        };
        let mut conn = Self {
            stream,
            buffer: BytesMut::with_capacity(4096),
            decoder: Decoder::new(1 << 20),
        };
        let (username, password) = match (&device.key, target.generic) {
            (Some(key), false) => {
                let expiry = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs() + 3600;
                let resource =
                    outpost_auth::encode_resource(&format!("{}/devices/{}", target.hub, device.id));
                let token = outpost_auth::sign(&resource, key, KeyEncoding::Base64Decoded, expiry, None);
                (
                    Some(format!(
                        "{}/{}/?api-version=2021-04-12&DeviceClientType=outpost-bench",
                        target.hub, device.id
                    )),
                    Some(Bytes::from(token)),
                )
            }
            _ => (None, None),
        };
        let connect = Connect {
            protocol_name: "MQTT".into(),
            protocol_level: 4,
            clean_session: true,
            keep_alive: 300,
            client_id: device.id.clone(),
            will: None,
            username,
            password,
        };
        conn.send(&Packet::Connect(connect)).await?;
        match timeout(Duration::from_secs(30), conn.next()).await {
            Ok(Ok(Some(Packet::ConnAck(ack)))) if ack.return_code == ConnectReturnCode::Accepted => Ok(conn),
            Ok(Ok(Some(Packet::ConnAck(ack)))) => bail!("CONNACK refused: {:?}", ack.return_code),
            Ok(Ok(other)) => bail!("expected CONNACK, got {other:?}"),
            Ok(Err(e)) => Err(e),
            Err(_) => bail!("no CONNACK within 30 s"),
        }
    }

    /// Encodes and writes one packet.
    pub async fn send(&mut self, packet: &Packet) -> anyhow::Result<()> {
        let mut out = BytesMut::new();
        encode(packet, &mut out)?;
        self.send_raw(&out).await
    }

    /// Writes already encoded packets (several at once, for batching).
    pub async fn send_raw(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        self.stream.write_all(bytes).await?;
        self.stream.flush().await?;
        Ok(())
    }

    /// Subscribes to `filters` and waits for a SUBACK granting every one of them.
    pub async fn subscribe(&mut self, filters: &[&str], qos: QoS) -> anyhow::Result<()> {
        let packet_id = PacketId::new(1).context("packet id")?;
        let subscribe = Subscribe {
            packet_id,
            filters: filters.iter().map(|f| ((*f).to_owned(), qos)).collect(),
        };
        self.send(&Packet::Subscribe(subscribe)).await?;
        match timeout(Duration::from_secs(30), self.next()).await {
            Ok(Ok(Some(Packet::SubAck(ack))))
                if ack.return_codes.iter().all(|c| *c != SubAckReturnCode::Failure) =>
            {
                Ok(())
            }
            Ok(Ok(other)) => bail!("expected a granting SUBACK, got {other:?}"),
            Ok(Err(e)) => Err(e),
            Err(_) => bail!("no SUBACK within 30 s"),
        }
    }

    /// Reads the next packet; `None` when the broker closed the connection.
    pub async fn next(&mut self) -> anyhow::Result<Option<Packet>> {
        loop {
            if let Some(packet) = self.decoder.decode(&mut self.buffer)? {
                return Ok(Some(packet));
            }
            if self.stream.read_buf(&mut self.buffer).await? == 0 {
                return Ok(None);
            }
        }
    }

    /// Sends DISCONNECT and closes the stream, ignoring errors.
    pub async fn close(mut self) {
        let _ = self.send(&Packet::Disconnect).await;
        let _ = self.stream.shutdown().await;
    }
}

/// What one device's publish loop should do.
#[derive(Debug, Clone)]
pub struct PublishPlan {
    pub topic: String,
    pub messages: u64,
    pub payload: Bytes,
    pub qos: QoS,
    pub inflight: usize,
    /// Interval between this device's messages; zero = as fast as the window allows.
    pub interval: Duration,
    /// Least time between two wake-ups to send (paced runs); zero = wake for every message.
    pub tick: Duration,
    /// Intended send time of this device's first message.
    pub first: Instant,
    /// Stop sending new messages at this instant.
    pub deadline: Instant,
    /// Give up waiting for acknowledgements at this instant.
    pub drain_deadline: Instant,
    /// When set, each payload starts with the intended send time as 16 ASCII digits of
    /// microseconds since the UNIX epoch (the clock at `.0` reads `.1`), for end-to-end latency.
    pub stamp: Option<(Instant, u64)>,
}

/// Width of the send-time stamp at the start of a payload.
pub const STAMP_LEN: usize = 16;

/// Microseconds since the UNIX epoch now.
pub fn wall_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// The send time stamped at the start of `payload`, if it carries one.
pub fn read_stamp(payload: &[u8]) -> Option<u64> {
    let digits = payload.get(..STAMP_LEN)?;
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// What one device's publish loop did.
#[derive(Debug, Default)]
pub struct PublishOutcome {
    pub sent: u64,
    pub acked: u64,
    /// PUBACK time minus intended send time, in microseconds.
    pub latencies_us: Vec<u32>,
    pub error: Option<String>,
    pub last_ack: Option<Instant>,
}

/// Publishes according to `plan`; latency is measured from the intended send time so that a
/// slow broker cannot hide queueing delay (no coordinated omission).
pub async fn publish_loop(conn: &mut Conn, plan: &PublishPlan) -> PublishOutcome {
    let mut out = PublishOutcome {
        latencies_us: Vec::with_capacity(plan.messages.min(1 << 20) as usize),
        ..Default::default()
    };
    if let Err(e) = run(conn, plan, &mut out).await {
        out.error = Some(format!("{e:#}"));
    }
    out
}

async fn run(conn: &mut Conn, plan: &PublishPlan, out: &mut PublishOutcome) -> anyhow::Result<()> {
    let qos1 = plan.qos != QoS::AtMostOnce;
    let window = if qos1 {
        plan.inflight.clamp(1, 60_000)
    } else {
        usize::MAX
    };
    let mut pending: Vec<Option<Instant>> = vec![None; 65_536];
    let mut inflight = 0usize;
    let mut next_id: u16 = 1;
    let mut stop_sending = false;
    let mut wbuf = BytesMut::with_capacity(64 * 1024);
    let scheduled = |i: u64| plan.first + plan.interval.saturating_mul(i.min(u32::MAX as u64) as u32);
    let mut next_wake = plan.first;
    loop {
        let all_sent = stop_sending || out.sent >= plan.messages;
        if all_sent && inflight == 0 {
            return Ok(());
        }
        let can_send = !all_sent && inflight < window;
        let due = scheduled(out.sent).max(next_wake);
        let hard_stop = if all_sent {
            plan.drain_deadline
        } else {
            plan.deadline
        };
        tokio::select! {
            read = conn.stream.read_buf(&mut conn.buffer) => {
                if read? == 0 {
                    bail!("broker closed the connection");
                }
                while let Some(packet) = conn.decoder.decode(&mut conn.buffer)? {
                    if let Packet::PubAck(id) = packet {
                        let slot = &mut pending[usize::from(id.get())];
                        if let Some(sent_at) = slot.take() {
                            let now = Instant::now();
                            let us = now.saturating_duration_since(sent_at).as_micros();
                            out.latencies_us.push(u32::try_from(us).unwrap_or(u32::MAX));
                            out.acked += 1;
                            out.last_ack = Some(now);
                            inflight -= 1;
                        }
                    }
                }
            }
            () = sleep_until(due.into()), if can_send => {
                let now = Instant::now();
                next_wake = now + plan.tick;
                let mut batch = 0;
                while out.sent < plan.messages && inflight < window && batch < 256 && now < plan.deadline {
                    let intended = scheduled(out.sent);
                    if intended > now {
                        break;
                    }
                    let packet_id = if qos1 {
                        while pending[usize::from(next_id)].is_some() {
                            next_id = next_id.checked_add(1).unwrap_or(1);
                        }
                        let id = next_id;
                        next_id = next_id.checked_add(1).unwrap_or(1);
                        // Closed loop (no rate): the clock starts when the message is sent.
                        pending[usize::from(id)] =
                            Some(if plan.interval.is_zero() { now } else { intended });
                        inflight += 1;
                        PacketId::new(id)
                    } else {
                        None
                    };
                    let payload = match plan.stamp {
                        Some((at, micros)) => {
                            let wall = micros + intended.saturating_duration_since(at).as_micros() as u64;
                            let mut stamped = BytesMut::from(&plan.payload[..]);
                            let digits = format!("{wall:016}");
                            stamped[..STAMP_LEN].copy_from_slice(&digits.as_bytes()[..STAMP_LEN]);
                            stamped.freeze()
                        }
                        None => plan.payload.clone(),
                    };
                    let publish = Publish {
                        dup: false,
                        qos: plan.qos,
                        retain: false,
                        topic: plan.topic.clone(),
                        packet_id,
                        payload,
                    };
                    encode(&Packet::Publish(publish), &mut wbuf)?;
                    out.sent += 1;
                    batch += 1;
                }
                if !wbuf.is_empty() {
                    conn.stream.write_all(&wbuf).await?;
                    conn.stream.flush().await?;
                    wbuf.clear();
                }
                if now >= plan.deadline {
                    stop_sending = true;
                }
            }
            () = sleep_until(hard_stop.into()) => {
                if all_sent {
                    bail!("{inflight} messages still unacknowledged at the drain deadline");
                }
                stop_sending = true;
            }
        }
    }
}
