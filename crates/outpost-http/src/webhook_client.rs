//! The HTTP client webhook endpoints post through ([`WebhookClient`]): hyper's HTTP/1.1
//! connection API over a TCP stream, with rustls for `https://`. Nothing more is needed: one
//! request at a time per connection, no redirects followed (a 3xx is the answer), the answer's
//! body read and discarded up to 64 KiB. Idle connections are kept a short while for the next
//! batch to the same origin.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, Request, Uri, header};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use outpost_core::routing::sink::{DeliveryError, WebhookClient, WebhookRequest};
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// Most bytes of a webhook's answer read before the connection is dropped.
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024;
/// Most idle connections kept per origin.
const MAX_IDLE_PER_ORIGIN: usize = 4;
/// How long an idle connection is kept (receivers commonly close theirs after 60 s or more).
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Headers the client sets from the request itself; configured ones of these names are ignored.
const FRAMING_HEADERS: [HeaderName; 6] = [
    header::HOST,
    header::CONTENT_LENGTH,
    header::CONTENT_TYPE,
    header::TRANSFER_ENCODING,
    header::CONNECTION,
    header::UPGRADE,
];
const USER_AGENT: &str = concat!("outpost-webhook/", env!("CARGO_PKG_VERSION"));

/// Why the client could not be built.
#[derive(Debug)]
pub enum WebhookClientError {
    /// A CA bundle is not PEM, or holds a certificate rustls refuses.
    Certificate(String),
    /// The TLS configuration could not be built.
    Tls(String),
}

impl std::fmt::Display for WebhookClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Certificate(reason) => write!(f, "webhook CA certificates: {reason}"),
            Self::Tls(reason) => write!(f, "webhook TLS configuration: {reason}"),
        }
    }
}

impl std::error::Error for WebhookClientError {}

/// Scheme, host and port: connections are reused only for the same origin.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Origin {
    https: bool,
    host: String,
    port: u16,
}

/// A parsed webhook URL.
#[derive(Debug)]
struct Target {
    origin: Origin,
    /// The `Host` header: the URL's authority without user information.
    authority: String,
    path: String,
    /// The URL without its query (which may hold a signature) for error messages.
    shown: String,
}

impl Target {
    fn parse(url: &str) -> Result<Self, DeliveryError> {
        let invalid = |reason: &str| DeliveryError::Rejected(format!("the webhook URL is invalid: {reason}"));
        let uri: Uri = url.parse().map_err(|_| invalid("not a URL"))?;
        let https = match uri.scheme_str().map(str::to_ascii_lowercase).as_deref() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(invalid("the scheme must be http or https")),
        };
        let authority = uri.authority().ok_or_else(|| invalid("no host"))?;
        let host = authority.host();
        if host.is_empty() {
            return Err(invalid("no host"));
        }
        let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
        let authority = authority
            .as_str()
            .rsplit('@')
            .next()
            .unwrap_or_default()
            .to_owned();
        let path = uri.path_and_query().map_or("/", |path| path.as_str()).to_owned();
        let scheme = if https { "https" } else { "http" };
        Ok(Self {
            shown: format!("{scheme}://{authority}{}", uri.path()),
            origin: Origin {
                https,
                // `[::1]` in URLs, `::1` for connecting and for the TLS server name.
                host: host.trim_start_matches('[').trim_end_matches(']').to_owned(),
                port,
            },
            authority,
            path,
        })
    }
}

struct Idle {
    sender: SendRequest<Full<Bytes>>,
    since: Instant,
}

/// The webhook client: plain HTTP, or HTTPS trusting the CA certificates it was given.
pub struct HyperWebhookClient {
    tls: TlsConnector,
    idle: Mutex<HashMap<Origin, Vec<Idle>>>,
}

impl std::fmt::Debug for HyperWebhookClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HyperWebhookClient").finish_non_exhaustive()
    }
}

/// What one exchange on a connection gave: the status, and whether the connection can carry
/// another request (the answer was read whole).
struct Answer {
    status: u16,
    reusable: bool,
}

impl HyperWebhookClient {
    /// A client trusting the certificates of the PEM bundles in `ca_pems` for `https://` URLs
    /// (the server passes its development CA and the configured bundle). No platform roots:
    /// the workspace carries none, and a local hub posts to receivers it was told to trust.
    ///
    /// # Errors
    /// A bundle that is not PEM or holds a certificate rustls refuses.
    pub fn new(ca_pems: &[&[u8]]) -> Result<Self, WebhookClientError> {
        let mut roots = rustls::RootCertStore::empty();
        for pem in ca_pems {
            let mut reader = *pem;
            for certificate in rustls_pemfile::certs(&mut reader) {
                let certificate =
                    certificate.map_err(|error| WebhookClientError::Certificate(error.to_string()))?;
                roots
                    .add(certificate)
                    .map_err(|error| WebhookClientError::Certificate(error.to_string()))?;
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|error| WebhookClientError::Tls(error.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self {
            tls: TlsConnector::from(Arc::new(config)),
            idle: Mutex::new(HashMap::new()),
        })
    }

    fn take_idle(&self, origin: &Origin) -> Option<SendRequest<Full<Bytes>>> {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let list = idle.get_mut(origin)?;
        while let Some(candidate) = list.pop() {
            if candidate.since.elapsed() < IDLE_TIMEOUT && candidate.sender.is_ready() {
                return Some(candidate.sender);
            }
        }
        None
    }

    fn put_idle(&self, origin: Origin, sender: SendRequest<Full<Bytes>>) {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        idle.retain(|_, list| {
            list.retain(|entry| entry.since.elapsed() < IDLE_TIMEOUT && !entry.sender.is_closed());
            !list.is_empty()
        });
        let list = idle.entry(origin).or_default();
        if list.len() < MAX_IDLE_PER_ORIGIN {
            list.push(Idle {
                sender,
                since: Instant::now(),
            });
        }
    }

    async fn connect(&self, target: &Target) -> Result<SendRequest<Full<Bytes>>, DeliveryError> {
        let origin = &target.origin;
        let unavailable = |what: &str, error: &dyn std::fmt::Display| {
            DeliveryError::Unavailable(format!("{what} {}: {error}", target.shown))
        };
        let tcp = TcpStream::connect((origin.host.as_str(), origin.port))
            .await
            .map_err(|error| unavailable("cannot connect to", &error))?;
        // Best effort: the request goes out in one write either way.
        let _ = tcp.set_nodelay(true);
        let sender = if origin.https {
            let name = ServerName::try_from(origin.host.clone()).map_err(|_| {
                DeliveryError::Rejected(format!("the webhook host of {} is invalid", target.shown))
            })?;
            let tls = self
                .tls
                .connect(name, tcp)
                .await
                .map_err(|error| unavailable("TLS with", &error))?;
            let (sender, connection) = http1::handshake(TokioIo::new(tls))
                .await
                .map_err(|error| unavailable("HTTP with", &error))?;
            tokio::spawn(async move {
                let _ = connection.await;
            });
            sender
        } else {
            let (sender, connection) = http1::handshake(TokioIo::new(tcp))
                .await
                .map_err(|error| unavailable("HTTP with", &error))?;
            tokio::spawn(async move {
                let _ = connection.await;
            });
            sender
        };
        Ok(sender)
    }

    async fn exchange(&self, target: &Target, request: &WebhookRequest) -> Result<u16, DeliveryError> {
        // A kept connection the receiver has closed in the meantime fails before an answer:
        // the batch then goes once more on a new connection (delivery is at least once anyway).
        // Built before connecting: a request that cannot be sent is refused, whatever the network.
        let mut prepared = Some(build_request(target, request)?);
        if let Some(mut sender) = self.take_idle(&target.origin)
            && let Some(first) = prepared.take()
            && let Ok(answer) = send(&mut sender, first).await
        {
            if answer.reusable {
                self.put_idle(target.origin.clone(), sender);
            }
            return Ok(answer.status);
        }
        let prepared = match prepared {
            Some(prepared) => prepared,
            None => build_request(target, request)?,
        };
        let mut sender = self.connect(target).await?;
        let answer = send(&mut sender, prepared).await.map_err(|error| {
            DeliveryError::Unavailable(format!("posting to {} failed: {error}", target.shown))
        })?;
        if answer.reusable {
            self.put_idle(target.origin.clone(), sender);
        }
        Ok(answer.status)
    }
}

fn build_request(target: &Target, request: &WebhookRequest) -> Result<Request<Full<Bytes>>, DeliveryError> {
    let invalid = |what: &str| DeliveryError::Rejected(format!("the webhook request has an invalid {what}"));
    let mut builder = Request::builder()
        .method(Method::POST)
        .uri(target.path.as_str())
        .header(header::HOST, target.authority.as_str())
        .header(header::USER_AGENT, USER_AGENT)
        .header(header::CONTENT_LENGTH, request.body.len());
    let content_type = HeaderValue::from_str(&request.content_type).map_err(|_| invalid("content type"))?;
    builder = builder.header(header::CONTENT_TYPE, content_type);
    for (name, value) in &request.headers {
        let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| invalid("header name"))?;
        // The client frames the request itself: a configured header cannot contradict it.
        if FRAMING_HEADERS.contains(&name) {
            continue;
        }
        let value = HeaderValue::from_str(value).map_err(|_| invalid("header value"))?;
        builder = builder.header(name, value);
    }
    builder
        .body(Full::new(request.body.clone()))
        .map_err(|_| invalid("request"))
}

/// Sends one request and reads its answer; the body is discarded, at most
/// [`MAX_RESPONSE_BYTES`] of it read.
async fn send(
    sender: &mut SendRequest<Full<Bytes>>,
    request: Request<Full<Bytes>>,
) -> Result<Answer, hyper::Error> {
    sender.ready().await?;
    let response = sender.send_request(request).await?;
    let status = response.status().as_u16();
    let mut body = response.into_body();
    let mut read = 0usize;
    let reusable = loop {
        match body.frame().await {
            None => break true,
            Some(Ok(frame)) => {
                read = read.saturating_add(frame.data_ref().map_or(0, Bytes::len));
                if read > MAX_RESPONSE_BYTES {
                    break false;
                }
            }
            // The status is in: the batch's fate is decided, only the connection is lost.
            Some(Err(_)) => break false,
        }
    };
    Ok(Answer { status, reusable })
}

#[async_trait]
impl WebhookClient for HyperWebhookClient {
    async fn post(&self, request: WebhookRequest) -> Result<u16, DeliveryError> {
        let target = Target::parse(&request.url)?;
        match tokio::time::timeout(request.timeout, self.exchange(&target, &request)).await {
            Ok(result) => result,
            Err(_) => Err(DeliveryError::Unavailable(format!(
                "{} did not answer within {} s",
                target.shown,
                request.timeout.as_secs_f32()
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code")]

    use super::*;

    #[test]
    fn urls_split_into_origin_host_header_and_path() {
        let target = Target::parse("HTTPS://user:pw@[::1]:8443/hook?sig=secret").unwrap();
        assert_eq!(
            target.origin,
            Origin {
                https: true,
                host: "::1".into(),
                port: 8443
            }
        );
        assert_eq!(target.authority, "[::1]:8443");
        assert_eq!(target.path, "/hook?sig=secret");
        assert_eq!(
            target.shown, "https://[::1]:8443/hook",
            "the query never shows in errors"
        );
        let plain = Target::parse("http://example.com").unwrap();
        assert_eq!((plain.origin.port, plain.path.as_str()), (80, "/"));
        for bad in ["ftp://x/", "not a url", "/relative", "http:///x"] {
            assert!(
                matches!(Target::parse(bad), Err(DeliveryError::Rejected(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn bad_ca_bundles_are_refused() {
        assert!(HyperWebhookClient::new(&[]).is_ok());
        let broken = b"-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n";
        assert!(matches!(
            HyperWebhookClient::new(&[broken]),
            Err(WebhookClientError::Certificate(_))
        ));
    }
}
