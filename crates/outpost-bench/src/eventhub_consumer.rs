//! The end-to-end consumer on Outpost's built-in Event Hubs-compatible endpoint: one AMQP 1.0
//! connection over TLS (SASL PLAIN with a SAS token of the `service` policy, as Event Hubs
//! clients can authenticate), one receiver per partition starting at `@latest`, credit kept
//! topped up, deliveries sent settled. Built on `outpost_amqp`'s codec, like the wire contract's
//! §7.4 receivers.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use bytes::{Bytes, BytesMut};
use hyper::Method;
use outpost_amqp::message::{Body, Message};
use outpost_amqp::{
    Attach, Begin, Descriptor, Flow, Frame, FrameBody, FrameDecoder, Open, Performative, ProtocolId, Role,
    SaslCode, SaslFrame, SaslInit, SenderSettleMode, Source, Target, Value, encode_amqp_frame,
    encode_sasl_frame,
};
use outpost_auth::{KeyEncoding, SymmetricKey, encode_resource, sign};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::mqtt_client::{read_stamp, wall_micros};
use crate::operator::Operator;

/// Credit granted per partition receiver; topped up when half is used.
const CREDIT: u32 = 1000;

/// Where the endpoint is and how to reach it.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub addr: String,
    pub tls: Arc<rustls::ClientConfig>,
    pub host: String,
    pub hub: String,
}

/// Connects, attaches a receiver per partition at `@latest` and returns the reading task.
pub async fn start(
    endpoint: Endpoint,
    operator: &Operator,
    received: Arc<AtomicU64>,
    stopped: watch::Receiver<bool>,
) -> anyhow::Result<tokio::task::JoinHandle<anyhow::Result<Vec<u32>>>> {
    let key = service_key(operator, &endpoint.hub).await?;
    let partitions = partition_count(operator, &endpoint.hub).await?;
    let tcp = TcpStream::connect(&endpoint.addr)
        .await
        .with_context(|| format!("connect to {}", endpoint.addr))?;
    tcp.set_nodelay(true)?;
    let connector = tokio_rustls::TlsConnector::from(endpoint.tls.clone());
    let stream = connector
        .connect(ServerName::try_from(endpoint.host.clone())?, tcp)
        .await
        .context("AMQP TLS handshake")?;
    let mut link = Link::new(stream);
    link.open(&endpoint, &key).await?;
    for partition in 0..partitions {
        link.attach_receiver(&endpoint.hub, partition).await?;
    }
    Ok(tokio::spawn(async move {
        link.receive(partitions, received, stopped).await
    }))
}

async fn service_key(operator: &Operator, hub: &str) -> anyhow::Result<SymmetricKey> {
    let path = format!("/hubs/{hub}/connection-string?policy=service");
    let (status, body) = operator.call(Method::GET, &path, None).await?;
    if !status.is_success() {
        bail!("GET {path}: {status}");
    }
    let json: serde_json::Value = serde_json::from_slice(&body)?;
    let text = json["connectionString"].as_str().context("connectionString")?;
    let key = text
        .split(';')
        .find_map(|part| part.strip_prefix("SharedAccessKey="))
        .context("SharedAccessKey in the connection string")?;
    SymmetricKey::try_new(key).map_err(|e| anyhow::anyhow!("{e}"))
}

async fn partition_count(operator: &Operator, hub: &str) -> anyhow::Result<u32> {
    let (status, body) = operator
        .call(Method::GET, &format!("/hubs/{hub}/partitions"), None)
        .await?;
    if !status.is_success() {
        bail!("GET partitions: {status}");
    }
    let partitions: Vec<serde_json::Value> = serde_json::from_slice(&body)?;
    Ok(u32::try_from(partitions.len())?)
}

struct Link<S> {
    stream: S,
    buffer: BytesMut,
    decoder: FrameDecoder,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Link<S> {
    fn new(stream: S) -> Self {
        Self {
            stream,
            buffer: BytesMut::new(),
            decoder: FrameDecoder::new(1 << 20),
        }
    }

    async fn write(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        self.stream.write_all(bytes).await?;
        self.stream.flush().await?;
        Ok(())
    }

    async fn perform(&mut self, performative: Performative) -> anyhow::Result<()> {
        let mut out = BytesMut::new();
        encode_amqp_frame(&mut out, 0, &performative, &[]);
        self.write(&out).await
    }

    async fn next(&mut self) -> anyhow::Result<Frame> {
        loop {
            if let Some(frame) = self.decoder.decode(&mut self.buffer)? {
                return Ok(frame);
            }
            if self.stream.read_buf(&mut self.buffer).await? == 0 {
                bail!("the hub closed the AMQP connection");
            }
        }
    }

    async fn header(&mut self, protocol: ProtocolId) -> anyhow::Result<()> {
        while self.buffer.len() < 8 {
            if self.stream.read_buf(&mut self.buffer).await? == 0 {
                bail!("the hub closed the AMQP connection");
            }
        }
        let header = self.buffer.split_to(8);
        if header[..] != protocol.header() {
            bail!("unexpected protocol header {header:?}");
        }
        Ok(())
    }

    /// SASL PLAIN with a SAS token, open, begin.
    async fn open(&mut self, endpoint: &Endpoint, key: &SymmetricKey) -> anyhow::Result<()> {
        let expiry = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs() + 3600;
        let token = sign(
            &encode_resource(&format!("sb://{}/{}", endpoint.host, endpoint.hub)),
            key,
            KeyEncoding::RawString,
            expiry,
            Some("service"),
        );
        self.write(&ProtocolId::Sasl.header()).await?;
        self.header(ProtocolId::Sasl).await?;
        let FrameBody::Sasl(SaslFrame::Mechanisms(_)) = self.next().await?.body else {
            bail!("expected sasl-mechanisms");
        };
        let mut response = b"\0service\0".to_vec();
        response.extend_from_slice(token.as_bytes());
        let mut out = BytesMut::new();
        encode_sasl_frame(
            &mut out,
            &SaslFrame::Init(SaslInit {
                mechanism: "PLAIN".into(),
                initial_response: Some(Bytes::from(response)),
                hostname: Some(endpoint.host.clone()),
            }),
        );
        self.write(&out).await?;
        match self.next().await?.body {
            FrameBody::Sasl(SaslFrame::Outcome(outcome)) if outcome.code == SaslCode::Ok => {}
            other => bail!("SASL PLAIN refused: {other:?}"),
        }
        self.write(&ProtocolId::Amqp.header()).await?;
        self.header(ProtocolId::Amqp).await?;
        self.perform(Performative::Open(Open {
            container_id: "outpost-bench".into(),
            hostname: Some(endpoint.host.clone()),
            max_frame_size: Some(1 << 20),
            channel_max: Some(0),
            ..Open::default()
        }))
        .await?;
        self.perform(Performative::Begin(Begin {
            remote_channel: None,
            next_outgoing_id: 0,
            incoming_window: u32::MAX,
            outgoing_window: 100,
            handle_max: Some(255),
            ..Begin::default()
        }))
        .await
    }

    async fn attach_receiver(&mut self, hub: &str, partition: u32) -> anyhow::Result<()> {
        let mut source = Source::new(format!("{hub}/ConsumerGroups/$Default/Partitions/{partition}"));
        source.filter = Some(vec![(
            "apache.org:selector-filter:string".into(),
            Value::described(
                Descriptor::Code(0x0000_468C_0000_0004),
                Value::String("amqp.annotation.x-opt-offset > '@latest'".into()),
            ),
        )]);
        self.perform(Performative::Attach(Box::new(Attach {
            name: format!("bench-receiver-{partition}"),
            handle: partition,
            role: Role::Receiver,
            snd_settle_mode: Some(SenderSettleMode::Settled),
            rcv_settle_mode: None,
            source: Some(source),
            target: Some(Target::new("bench")),
            unsettled: None,
            incomplete_unsettled: false,
            initial_delivery_count: None,
            max_message_size: None,
            offered_capabilities: None,
            desired_capabilities: None,
            properties: None,
        })))
        .await?;
        self.flow(partition, 0, CREDIT).await
    }

    async fn flow(&mut self, handle: u32, delivery_count: u32, credit: u32) -> anyhow::Result<()> {
        self.perform(Performative::Flow(Flow {
            next_incoming_id: None,
            incoming_window: u32::MAX,
            next_outgoing_id: 0,
            outgoing_window: 100,
            handle: Some(handle),
            delivery_count: Some(delivery_count),
            link_credit: Some(credit),
            ..Flow::default()
        }))
        .await
    }

    /// Reads deliveries until stopped; returns the end-to-end latencies in µs.
    async fn receive(
        mut self,
        partitions: u32,
        received: Arc<AtomicU64>,
        mut stopped: watch::Receiver<bool>,
    ) -> anyhow::Result<Vec<u32>> {
        let mut latencies = Vec::new();
        let mut delivered = vec![0u32; partitions as usize];
        let mut granted = vec![CREDIT; partitions as usize];
        let mut partial = BytesMut::new();
        loop {
            let frame = tokio::select! {
                frame = self.next() => frame?,
                _ = stopped.changed() => return Ok(latencies),
            };
            let FrameBody::Amqp {
                performative,
                payload,
            } = frame.body
            else {
                continue;
            };
            match performative {
                Performative::Transfer(transfer) => {
                    partial.extend_from_slice(&payload);
                    if transfer.more {
                        continue;
                    }
                    let message = Message::decode(partial.split().freeze())?;
                    if let Body::Data(sections) = &message.body
                        && let Some(stamp) = sections.first().and_then(|data| read_stamp(data))
                    {
                        latencies
                            .push(u32::try_from(wall_micros().saturating_sub(stamp)).unwrap_or(u32::MAX));
                        received.fetch_add(1, Ordering::Relaxed);
                    }
                    let handle = transfer.handle as usize;
                    if let (Some(count), Some(credit)) = (delivered.get_mut(handle), granted.get_mut(handle))
                    {
                        *count = count.wrapping_add(1);
                        // Keep the window full: top up once half the credit is used.
                        if credit.wrapping_sub(*count) < CREDIT / 2 {
                            *credit = count.wrapping_add(CREDIT);
                            self.flow(transfer.handle, *count, CREDIT).await?;
                        }
                    }
                }
                Performative::Detach(detach) => bail!("receiver detached: {:?}", detach.error),
                Performative::Close(close) => bail!("connection closed: {:?}", close.error),
                _ => {}
            }
        }
    }
}

/// How long the consumer may take to attach before the run starts.
pub const ATTACH_GRACE: Duration = Duration::from_millis(300);
