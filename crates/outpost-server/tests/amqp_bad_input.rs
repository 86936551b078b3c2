//! Bad input on the AMQP listeners, end to end: a wrong protocol header, undecodable and oversized
//! frames, and links to unknown addresses get the AMQP answer the spec asks for (§2.2 header
//! exchange, `close` or `detach` with the error condition) on that connection or link only, and
//! the plain listener (`UseDevelopmentEmulator=true` clients) speaks the same protocol without TLS,
//! and SASL EXTERNAL needs a TLS client certificate.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]

mod mqtt_support;

use std::time::Duration;

use bytes::BytesMut;
use outpost_amqp::{
    Attach, Begin, Error, Frame, FrameBody, FrameDecoder, Open, Performative, ProtocolId, Role, Source,
    Target, encode_amqp_frame,
};
use outpost_server::Server;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// A raw AMQP peer over any stream: writes bytes, reads frames.
struct Peer<S> {
    stream: S,
    buffer: BytesMut,
    decoder: FrameDecoder,
}

async fn tls_peer(server: &Server) -> Peer<tokio_rustls::client::TlsStream<TcpStream>> {
    tls_peer_with(server, mqtt_support::tls(server.ca_path.as_ref().unwrap())).await
}

async fn tls_peer_with(
    server: &Server,
    config: std::sync::Arc<rustls::ClientConfig>,
) -> Peer<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(server.amqp_addr).await.unwrap();
    let connector = tokio_rustls::TlsConnector::from(config);
    let stream = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    Peer::new(stream)
}

impl<S: AsyncRead + AsyncWrite + Unpin> Peer<S> {
    fn new(stream: S) -> Self {
        Self {
            stream,
            buffer: BytesMut::new(),
            decoder: FrameDecoder::new(1 << 20),
        }
    }

    async fn write(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    async fn perform(&mut self, channel: u16, performative: Performative) {
        let mut out = BytesMut::new();
        encode_amqp_frame(&mut out, channel, &performative, &[]);
        self.write(&out).await;
    }

    /// Reads more bytes; false at the end of the stream.
    async fn fill(&mut self) -> bool {
        let read = tokio::time::timeout(Duration::from_secs(10), self.stream.read_buf(&mut self.buffer));
        // A reset after the server's close is an end too.
        read.await.expect("the server answered in time").unwrap_or(0) > 0
    }

    async fn header(&mut self) -> [u8; 8] {
        while self.buffer.len() < 8 {
            assert!(self.fill().await, "the server closed before its header");
        }
        self.buffer.split_to(8)[..].try_into().unwrap()
    }

    /// The next SASL frame.
    async fn sasl(&mut self) -> outpost_amqp::SaslFrame {
        loop {
            if let Some(frame) = self.decoder.decode(&mut self.buffer).unwrap() {
                if let FrameBody::Sasl(sasl) = frame.body {
                    return sasl;
                }
                continue;
            }
            assert!(self.fill().await, "the server closed during SASL");
        }
    }

    /// The next performative, or `None` at the end of the stream.
    async fn next(&mut self) -> Option<Performative> {
        loop {
            if let Some(frame) = self.decoder.decode(&mut self.buffer).unwrap() {
                match frame {
                    Frame {
                        body: FrameBody::Amqp { performative, .. },
                        ..
                    } => return Some(performative),
                    _ => continue,
                }
            }
            if !self.fill().await {
                return None;
            }
        }
    }

    /// The bare AMQP header exchange (as the IoT SDKs do, no SASL) and open.
    async fn open(&mut self) {
        self.write(&ProtocolId::Amqp.header()).await;
        assert_eq!(self.header().await, ProtocolId::Amqp.header());
        self.perform(0, Performative::Open(Open::new("bad-input-test")))
            .await;
        assert!(matches!(self.next().await, Some(Performative::Open(_))));
    }

    async fn begin(&mut self, channel: u16) {
        let begin = Begin {
            next_outgoing_id: 0,
            incoming_window: 100,
            outgoing_window: 100,
            handle_max: Some(15),
            ..Begin::default()
        };
        self.perform(channel, Performative::Begin(begin)).await;
        assert!(matches!(self.next().await, Some(Performative::Begin(_))));
    }

    /// The server's close: returns its error, and checks the stream ends after it.
    async fn closed_with(&mut self) -> Error {
        let Some(Performative::Close(close)) = self.next().await else {
            panic!("expected a close");
        };
        assert!(self.next().await.is_none(), "the connection ends after the close");
        close.error.expect("a close with an error")
    }
}

#[tokio::test]
async fn a_wrong_protocol_header_is_answered_with_ours_then_closed() {
    let dir = tempfile::tempdir().unwrap();
    let server = mqtt_support::start(dir.path()).await;
    for wrong in [
        &b"AMQP\x01\x01\x00\x00"[..],
        b"AMQP\x00\x02\x00\x00",
        b"GET / HTTP/1.1\r\n\r\n",
    ] {
        let mut peer = tls_peer(&server).await;
        peer.write(wrong).await;
        // §2.2: the server names the header it speaks, then closes the socket.
        let header = peer.header().await;
        assert!(
            header == ProtocolId::Amqp.header() || header == ProtocolId::Sasl.header(),
            "{header:?}"
        );
        assert!(peer.next().await.is_none());
    }
    server.shutdown().await;
}

#[tokio::test]
async fn undecodable_or_oversized_frames_close_that_connection_only() {
    let dir = tempfile::tempdir().unwrap();
    let server = mqtt_support::start(dir.path()).await;
    let mut bystander = tls_peer(&server).await;
    bystander.open().await;

    // A frame whose body is a list, not a performative.
    let mut peer = tls_peer(&server).await;
    peer.open().await;
    peer.write(&[0, 0, 0, 9, 2, 0, 0, 0, 0x45]).await;
    assert_eq!(peer.closed_with().await.condition.as_str(), "amqp:decode-error");

    // A frame larger than the max-frame-size the server announced.
    let mut peer = tls_peer(&server).await;
    peer.open().await;
    peer.write(&[0x7f, 0, 0, 0, 2, 0, 0, 0]).await;
    assert_eq!(
        peer.closed_with().await.condition.as_str(),
        "amqp:connection:framing-error"
    );

    // A frame on a channel without session.
    let mut peer = tls_peer(&server).await;
    peer.open().await;
    peer.perform(3, Performative::Flow(outpost_amqp::Flow::default()))
        .await;
    assert_eq!(peer.closed_with().await.condition.as_str(), "amqp:not-allowed");

    // The other connection is untouched.
    bystander.begin(0).await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_link_to_an_unknown_address_is_detached_with_not_found_and_the_connection_stays() {
    let dir = tempfile::tempdir().unwrap();
    let server = mqtt_support::start(dir.path()).await;
    let mut peer = tls_peer(&server).await;
    peer.open().await;
    peer.begin(0).await;
    for (handle, role, address) in [
        (0, Role::Receiver, "nowhere"),
        (1, Role::Sender, "/no/such/node"),
        (
            2,
            Role::Receiver,
            "localhost/ConsumerGroups/$Default/Partitions/99",
        ),
    ] {
        let mut attach = Attach::new(format!("link-{handle}"), handle, role);
        attach.source = Some(Source::new(if role == Role::Receiver { address } else { "me" }));
        attach.target = Some(Target::new(if role == Role::Sender { address } else { "me" }));
        attach.initial_delivery_count = (role == Role::Sender).then_some(0);
        peer.perform(0, Performative::Attach(Box::new(attach))).await;
        // §2.6.3: a refused link is attached (without a terminus), then detached with the error.
        let Some(Performative::Attach(_)) = peer.next().await else {
            panic!("expected the attach answer for {address}");
        };
        let Some(Performative::Detach(detach)) = peer.next().await else {
            panic!("expected a detach for {address}");
        };
        assert!(detach.closed);
        let condition = detach.error.expect("an error").condition;
        assert!(
            ["amqp:not-found", "amqp:unauthorized-access"].contains(&condition.as_str()),
            "{address}: {condition:?}"
        );
    }
    // The connection goes on: another session begins.
    peer.begin(1).await;
    server.shutdown().await;
}

#[tokio::test]
async fn the_plain_listener_speaks_amqp_without_tls() {
    let dir = tempfile::tempdir().unwrap();
    let server = mqtt_support::start_with(dir.path(), |config| {
        config.amqp.plain_listen = Some("127.0.0.1:0".parse().unwrap());
    })
    .await;
    let addr = server.amqp_plain_addr.expect("the plain listener is on");
    let mut peer = Peer::new(TcpStream::connect(addr).await.unwrap());
    peer.open().await;
    peer.begin(0).await;
    // The TLS listener does not take plain AMQP: the TLS handshake fails and it closes.
    let mut plain = Peer::new(TcpStream::connect(server.amqp_addr).await.unwrap());
    plain.write(&ProtocolId::Amqp.header()).await;
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), plain.stream.read_to_end(&mut rest));
    let _ = read.await.expect("the TLS listener closes");
    assert!(!rest.starts_with(b"AMQP"), "no AMQP header in clear");
    server.shutdown().await;
}

/// SASL EXTERNAL takes the identity from the TLS layer (AMQP 1.0 §5.3.3): it succeeds on a
/// connection that presented a client certificate, and fails (`auth`) on one that did not.
#[tokio::test]
async fn sasl_external_needs_a_client_certificate() {
    use outpost_amqp::{SaslCode, SaslFrame, SaslInit, encode_sasl_frame};
    use rcgen::{CertificateParams, DnType, KeyPair, PKCS_ECDSA_P256_SHA256};
    use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

    let dir = tempfile::tempdir().unwrap();
    let server = mqtt_support::start(dir.path()).await;
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "external-device");
    let cert = params.self_signed(&key).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    let ca = std::fs::read(server.ca_path.as_ref().unwrap()).unwrap();
    for der in rustls_pemfile::certs(&mut ca.as_slice()) {
        roots.add(der.unwrap()).unwrap();
    }
    let with_certificate = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_client_auth_cert(
        vec![cert.der().clone()],
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
    )
    .unwrap();

    for (config, expected) in [
        (std::sync::Arc::new(with_certificate), SaslCode::Ok),
        (
            mqtt_support::tls(server.ca_path.as_ref().unwrap()),
            SaslCode::Auth,
        ),
    ] {
        let mut peer = tls_peer_with(&server, config).await;
        peer.write(&ProtocolId::Sasl.header()).await;
        assert_eq!(peer.header().await, ProtocolId::Sasl.header());
        let mechanisms = peer.sasl().await;
        let SaslFrame::Mechanisms(mechanisms) = mechanisms else {
            panic!("expected sasl-mechanisms, got {mechanisms:?}");
        };
        assert!(
            mechanisms
                .sasl_server_mechanisms
                .iter()
                .any(|m| m.as_str() == "EXTERNAL")
        );
        let mut out = BytesMut::new();
        let init = SaslInit {
            mechanism: "EXTERNAL".into(),
            initial_response: None,
            hostname: Some("localhost".into()),
        };
        encode_sasl_frame(&mut out, &SaslFrame::Init(init));
        peer.write(&out).await;
        let SaslFrame::Outcome(outcome) = peer.sasl().await else {
            panic!("expected sasl-outcome");
        };
        assert_eq!(outcome.code, expected);
    }
    server.shutdown().await;
}
