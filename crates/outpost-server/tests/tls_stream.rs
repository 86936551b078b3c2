//! Outpost's server TLS stream (rustls's unbuffered API) against rustls's own client over
//! loopback TCP: data in both directions in every size, close_notify both ways, key updates,
//! garbage instead of a handshake, and no buffer held by an idle connection.
#![allow(
    clippy::unwrap_used,
    reason = "allow-unwrap-in-tests does not reach the fixture functions of an integration test"
)]

use std::io;
use std::path::Path;
use std::sync::Arc;

use outpost_server::tls::{DevCa, ReloadingCertResolver, ServerTlsStream, accept, server_config};
use rand::{Rng as _, SeedableRng as _};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, RootCertStore, SupportedProtocolVersion};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

const VERSIONS: [&SupportedProtocolVersion; 2] = [&rustls::version::TLS12, &rustls::version::TLS13];

struct Pki {
    _dir: tempfile::TempDir,
    server: Arc<rustls::ServerConfig>,
    ca_pem: std::path::PathBuf,
}

fn pki() -> Pki {
    let dir = tempfile::tempdir().unwrap();
    let ca = DevCa::load_or_create(&dir.path().join("ca")).unwrap();
    let server_dir = dir.path().join("server");
    ca.ensure_server_cert(&server_dir, &["localhost".to_owned()])
        .unwrap();
    let resolver = Arc::new(ReloadingCertResolver::new(DevCa::server_files(&server_dir)).unwrap());
    Pki {
        server: server_config(resolver, &[]).unwrap(),
        ca_pem: ca.ca_pem_path().to_owned(),
        _dir: dir,
    }
}

fn client_config(ca_pem: &Path, version: &'static SupportedProtocolVersion) -> Arc<ClientConfig> {
    let pem = std::fs::read(ca_pem).unwrap();
    let mut roots = RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
        roots.add(cert.unwrap()).unwrap();
    }
    Arc::new(
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(&[version])
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// A connected pair: rustls's client, Outpost's server stream.
async fn pair(
    pki: &Pki,
    version: &'static SupportedProtocolVersion,
) -> (TlsStream<TcpStream>, ServerTlsStream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connector = TlsConnector::from(client_config(&pki.ca_pem, version));
    let client = async {
        let tcp = TcpStream::connect(addr).await.unwrap();
        connector
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .unwrap()
    };
    let server = async {
        let (tcp, _) = listener.accept().await.unwrap();
        accept(tcp, pki.server.clone()).await.unwrap()
    };
    tokio::join!(client, server)
}

fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    (0..len).map(|_| rng.random()).collect()
}

/// Writes `data` in chunks of random sizes (1 byte to 40 KiB: within one record, across several).
async fn write_in_chunks(writer: &mut (impl tokio::io::AsyncWrite + Unpin), data: &[u8], seed: u64) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut at = 0;
    while at < data.len() {
        let len = rng.random_range(1..=40 * 1024).min(data.len() - at);
        writer.write_all(&data[at..at + len]).await.unwrap();
        at += len;
    }
    writer.flush().await.unwrap();
}

#[tokio::test]
async fn megabytes_cross_both_ways_at_once_intact_in_every_chunk_size() {
    let pki = pki();
    for version in VERSIONS {
        let (client, server) = pair(&pki, version).await;
        let to_server = pseudo_random(3 << 20, 1);
        let to_client = pseudo_random(3 << 20, 2);
        let (mut client_read, mut client_write) = tokio::io::split(client);
        let (mut server_read, mut server_write) = tokio::io::split(server);
        let (received_by_server, received_by_client, (), ()) = tokio::join!(
            async {
                let mut got = vec![0; to_server.len()];
                server_read.read_exact(&mut got).await.unwrap();
                got
            },
            async {
                let mut got = vec![0; to_client.len()];
                client_read.read_exact(&mut got).await.unwrap();
                got
            },
            write_in_chunks(&mut client_write, &to_server, 3),
            write_in_chunks(&mut server_write, &to_client, 4),
        );
        assert!(
            received_by_server == to_server,
            "{version:?}: client → server corrupted"
        );
        assert!(
            received_by_client == to_client,
            "{version:?}: server → client corrupted"
        );
    }
}

#[tokio::test]
async fn the_server_picks_aes_128_gcm_over_the_clients_first_choice() {
    let pki = pki();
    // rustls's client, like the SDKs, offers AES-256-GCM first.
    for (version, expected) in [
        (
            &rustls::version::TLS13,
            rustls::CipherSuite::TLS13_AES_128_GCM_SHA256,
        ),
        (
            &rustls::version::TLS12,
            rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        ),
    ] {
        let (client, _server) = pair(&pki, version).await;
        let negotiated = client.get_ref().1.negotiated_cipher_suite().map(|s| s.suite());
        assert_eq!(negotiated, Some(expected), "{version:?}");
    }
}

#[tokio::test]
async fn close_notify_ends_reading_on_either_side() {
    let pki = pki();
    for version in VERSIONS {
        // The client closes: the server reads what was sent, then a clean end.
        let (mut client, mut server) = pair(&pki, version).await;
        client.write_all(b"last words").await.unwrap();
        client.shutdown().await.unwrap();
        let mut got = Vec::new();
        server.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"last words", "{version:?}");
        // Writing after the peer's close_notify still reaches it.
        server.write_all(b"reply").await.unwrap();
        server.flush().await.unwrap();
        let mut reply = [0; 5];
        client.read_exact(&mut reply).await.unwrap();
        assert_eq!(&reply, b"reply");

        // The server closes: the client sees close_notify (tokio-rustls reports an end without
        // one as an `UnexpectedEof` error).
        let (mut client, mut server) = pair(&pki, version).await;
        server.write_all(b"bye").await.unwrap();
        server.shutdown().await.unwrap();
        let mut got = Vec::new();
        client.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"bye", "{version:?}");
    }
}

#[tokio::test]
async fn a_client_key_update_is_answered_and_traffic_goes_on() {
    let pki = pki();
    let (mut client, mut server) = pair(&pki, &rustls::version::TLS13).await;
    for round in 0..3u8 {
        client.get_mut().1.refresh_traffic_keys().unwrap();
        client.write_all(&[round; 100]).await.unwrap();
        client.flush().await.unwrap();
        let mut got = [0; 100];
        server.read_exact(&mut got).await.unwrap();
        assert_eq!(got, [round; 100]);
        // The server's answering key_update went out with (or before) this reply; the client
        // can only read the reply if it took the new key.
        server.write_all(&[round + 1; 50]).await.unwrap();
        server.flush().await.unwrap();
        let mut reply = [0; 50];
        client.read_exact(&mut reply).await.unwrap();
        assert_eq!(reply, [round + 1; 50]);
    }
}

/// Runs Outpost's handshake against a raw TCP client that sends `bytes` and then either reads
/// until the server closes (returning what it got) or, with `then_leave`, disconnects at once.
async fn raw_client(pki: &Pki, bytes: &[u8], then_leave: bool) -> (Vec<u8>, io::Result<ServerTlsStream>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let client = async {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        tcp.write_all(bytes).await.unwrap();
        let mut answer = Vec::new();
        if !then_leave {
            let _ = tcp.read_to_end(&mut answer).await;
        }
        answer
    };
    let server = async {
        let (tcp, _) = listener.accept().await.unwrap();
        accept(tcp, pki.server.clone()).await
    };
    tokio::join!(client, server)
}

#[tokio::test]
async fn garbage_instead_of_a_client_hello_gets_an_alert_and_an_error() {
    let pki = pki();
    // A handshake record header announcing a ClientHello, then nonsense.
    let garbage = [
        0x16, 0x03, 0x01, 0x00, 0x08, 0x01, 0x00, 0x00, 0x04, 0xde, 0xad, 0xbe, 0xef,
    ];
    let (answer, accepted) = raw_client(&pki, &garbage, false).await;
    let error = accepted.unwrap_err();
    assert_eq!(error.kind(), io::ErrorKind::InvalidData, "{error}");
    assert_eq!(
        answer.first(),
        Some(&0x15),
        "expected an alert record, got {answer:02x?}"
    );
}

#[tokio::test]
async fn a_client_gone_during_the_handshake_is_an_unexpected_eof() {
    let pki = pki();
    let (_, accepted) = raw_client(&pki, &[0x16, 0x03, 0x01], true).await;
    assert_eq!(accepted.unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
}

#[tokio::test]
async fn an_idle_connection_holds_no_buffer() {
    let pki = pki();
    for version in VERSIONS {
        let (mut client, mut server) = pair(&pki, version).await;
        // At most the buffer of the last small record sent (the handshake's last flight).
        assert!(
            server.buffered_capacity() <= 256,
            "{version:?} after the handshake"
        );
        client.write_all(&[7; 20_000]).await.unwrap();
        client.flush().await.unwrap();
        let mut got = vec![0; 20_000];
        server.read_exact(&mut got).await.unwrap();
        server.write_all(&[8; 30_000]).await.unwrap();
        server.flush().await.unwrap();
        let mut reply = vec![0; 30_000];
        client.read_exact(&mut reply).await.unwrap();
        // What a burst grew is released; a small record keeps its few bytes for the next one.
        assert_eq!(server.buffered_capacity(), 0, "{version:?} after traffic");
        server.write_all(&[9; 4]).await.unwrap();
        server.flush().await.unwrap();
        assert!(
            server.buffered_capacity() <= 256,
            "{version:?} after a small record"
        );
    }
}
