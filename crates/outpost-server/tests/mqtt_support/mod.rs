//! A minimal MQTT 3.1.1 client over TLS built on Outpost's own codec, and a server fixture,
//! shared by the MQTT test files.

#![allow(dead_code, reason = "each test file uses part of the fixture")]
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use outpost_auth::{KeyEncoding, SymmetricKey};
use outpost_core::{Caller, DeviceSpec};
use outpost_model::DeviceId;
use outpost_mqtt::codec::{
    ConnAck, Connect, Decoder, Packet, PacketId, Publish, QoS, SubAckReturnCode, Subscribe, encode,
};
use outpost_server::{OutpostConfig, Server};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

pub async fn start(dir: &Path) -> Server {
    start_with(dir, |_| {}).await
}

/// Starts a server on loopback ports with the configuration changed by `edit`.
pub async fn start_with(dir: &Path, edit: impl FnOnce(&mut OutpostConfig)) -> Server {
    let mut config = OutpostConfig {
        data_dir: dir.to_path_buf(),
        ..Default::default()
    };
    config.https.listen = "127.0.0.1:0".parse().unwrap();
    config.operator.listen = "127.0.0.1:0".parse().unwrap();
    config.mqtt.listen = "127.0.0.1:0".parse().unwrap();
    config.amqp.listen = "127.0.0.1:0".parse().unwrap();
    edit(&mut config);
    Server::start(&config).await.unwrap()
}

pub fn tls(ca_pem: &Path) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut std::fs::read(ca_pem).unwrap().as_slice()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// Creates a SAS device and returns its primary key.
pub async fn create_device(server: &Server, id: &str) -> SymmetricKey {
    let hub = server.outpost.hubs.by_host("localhost").unwrap();
    let device = server
        .outpost
        .registry
        .put_device(
            &Caller::operator(hub),
            &DeviceId::new(id).unwrap(),
            DeviceSpec::default(),
            None,
        )
        .await
        .unwrap();
    device.authentication.symmetric_key.primary_key.unwrap()
}

/// Patches a device's desired properties as the service side would (the hub then notifies the
/// device); `body` is a Twin body such as `{"properties": {"desired": {…}}}`.
pub async fn patch_desired(server: &Server, device: &str, body: serde_json::Value) {
    let hub = server.outpost.hubs.by_host("localhost").unwrap();
    let update = outpost_model::TwinUpdate::from_twin_json(&body).unwrap();
    server
        .outpost
        .registry
        .write_device_twin(
            &Caller::operator(hub),
            &DeviceId::new(device).unwrap(),
            &update,
            outpost_core::TwinWrite::Patch,
            None,
        )
        .await
        .unwrap();
}

pub fn device_token(device: &str, key: &SymmetricKey, expiry_offset: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let resource = outpost_auth::encode_resource(&format!("localhost/devices/{device}"));
    outpost_auth::sign(
        &resource,
        key,
        KeyEncoding::Base64Decoded,
        (now + expiry_offset) as u64,
        None,
    )
}

pub struct Client {
    pub stream: TlsStream<TcpStream>,
    buffer: BytesMut,
    decoder: Decoder,
}

impl Client {
    /// Opens a TLS connection presenting a client certificate chain.
    pub async fn open_with_certificate(
        server: &Server,
        chain: Vec<rustls::pki_types::CertificateDer<'static>>,
        key: rustls::pki_types::PrivateKeyDer<'static>,
    ) -> Self {
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_pemfile::certs(
            &mut std::fs::read(server.ca_path.as_ref().unwrap())
                .unwrap()
                .as_slice(),
        ) {
            roots.add(cert.unwrap()).unwrap();
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .unwrap();
        let tcp = TcpStream::connect(server.mqtt_addr).await.unwrap();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let stream = connector
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .unwrap();
        Self {
            stream,
            buffer: BytesMut::new(),
            decoder: Decoder::new(1 << 20),
        }
    }

    /// Sends CONNECT without a password (X.509 authentication) and returns the CONNACK.
    pub async fn connect_x509(&mut self, client_id: &str) -> ConnAck {
        let connect = Connect {
            protocol_name: "MQTT".into(),
            protocol_level: 4,
            clean_session: true,
            keep_alive: 60,
            client_id: client_id.into(),
            will: None,
            username: Some(format!("localhost/{client_id}/?api-version=2021-04-12")),
            password: None,
        };
        self.send(Packet::Connect(connect)).await;
        match self.next().await {
            Some(Packet::ConnAck(connack)) => connack,
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }

    pub async fn open(server: &Server) -> Self {
        let tcp = TcpStream::connect(server.mqtt_addr).await.unwrap();
        let connector = tokio_rustls::TlsConnector::from(tls(server.ca_path.as_ref().unwrap()));
        let stream = connector
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .unwrap();
        Self {
            stream,
            buffer: BytesMut::new(),
            decoder: Decoder::new(1 << 20),
        }
    }

    pub async fn send(&mut self, packet: Packet) {
        let mut out = BytesMut::new();
        encode(&packet, &mut out).unwrap();
        self.stream.write_all(&out).await.unwrap();
    }

    /// Returns the next packet, or `None` when the server closed the connection.
    pub async fn next(&mut self) -> Option<Packet> {
        let read = async {
            loop {
                if let Some(packet) = self.decoder.decode(&mut self.buffer).unwrap() {
                    return Some(packet);
                }
                match self.stream.read_buf(&mut self.buffer).await {
                    Ok(0) | Err(_) => return None,
                    Ok(_) => {}
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(10), read)
            .await
            .expect("the server answered in time")
    }

    pub async fn connect(
        server: &Server,
        client_id: &str,
        password: Option<String>,
        clean: bool,
    ) -> (Self, ConnAck) {
        let mut client = Self::open(server).await;
        let connect = Connect {
            protocol_name: "MQTT".into(),
            protocol_level: 4,
            clean_session: clean,
            keep_alive: 60,
            client_id: client_id.into(),
            will: None,
            username: Some(format!(
                "localhost/{client_id}/?api-version=2021-04-12&DeviceClientType=outpost-test"
            )),
            password: password.map(Bytes::from),
        };
        client.send(Packet::Connect(connect)).await;
        let Some(Packet::ConnAck(connack)) = client.next().await else {
            panic!("no CONNACK")
        };
        (client, connack)
    }

    pub async fn publish(&mut self, topic: &str, id: u16, payload: &[u8]) {
        let publish = Publish {
            dup: false,
            qos: QoS::AtLeastOnce,
            retain: false,
            topic: topic.into(),
            packet_id: PacketId::new(id),
            payload: Bytes::copy_from_slice(payload),
        };
        self.send(Packet::Publish(publish)).await;
    }

    pub async fn subscribe(&mut self, filter: &str) -> SubAckReturnCode {
        let subscribe = Subscribe {
            packet_id: PacketId::new(99).unwrap(),
            filters: vec![(filter.into(), QoS::AtLeastOnce)],
        };
        self.send(Packet::Subscribe(subscribe)).await;
        match self.next().await {
            Some(Packet::SubAck(suback)) => suback.return_codes[0],
            other => panic!("expected SUBACK, got {other:?}"),
        }
    }

    /// Returns the next PUBLISH from the server, skipping PUBACKs.
    pub async fn next_publish(&mut self) -> Publish {
        loop {
            match self.next().await {
                Some(Packet::Publish(publish)) => return publish,
                Some(Packet::PubAck(_)) => {}
                other => panic!("expected PUBLISH, got {other:?}"),
            }
        }
    }
}
