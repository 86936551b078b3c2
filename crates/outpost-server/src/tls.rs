//! TLS for every Outpost listener: the development CA, certificate files that reload without a
//! restart, and the rustls server configurations built on them.
//!
//! Azure device SDKs always verify the server certificate and host name, so even a development hub
//! serves a real chain: [`DevCa`] creates a CA and a server certificate under `<data_dir>/tls/`,
//! and tests hand `ca.pem` to the SDKs. Operators may supply their own files instead; either way
//! [`ReloadingCertResolver`] serves them and picks up replacements. Only the `ring` provider is
//! used, never the process-wide default.
//!
//! Modules: `ca` (development CA and server certificate), `resolver` (loading and hot reload),
//! `client_auth` (optional client certificates for device X.509 authentication), `stream` (the
//! TLS connection every listener serves, on rustls's unbuffered API).

mod ca;
mod client_auth;
mod resolver;
mod stream;

use std::error::Error as StdError;
use std::fmt;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;

pub use ca::DevCa;
pub use resolver::{CertificateFiles, ReloadingCertResolver, load_certified_key};
pub use stream::{ServerTlsStream, accept};

/// Errors raised while creating, loading or serving TLS certificates.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file or directory could not be read or inspected.
    #[error("cannot read {}", path.display())]
    Read {
        /// The file or directory.
        path: PathBuf,
        /// The I/O failure.
        #[source]
        source: io::Error,
    },
    /// A file or directory could not be created or written.
    #[error("cannot write {}", path.display())]
    Write {
        /// The file or directory.
        path: PathBuf,
        /// The I/O failure.
        #[source]
        source: io::Error,
    },
    /// A file is not valid PEM.
    #[error("malformed pem in {}", path.display())]
    Pem {
        /// The file.
        path: PathBuf,
        /// The decoding failure.
        #[source]
        source: io::Error,
    },
    /// A PEM file holds no certificate.
    #[error("no certificate found in {}", path.display())]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// A PEM file holds no private key in a supported encoding (PKCS#8, SEC1 or PKCS#1).
    #[error("no private key found in {}", path.display())]
    NoPrivateKey {
        /// The file.
        path: PathBuf,
    },
    /// A certificate could not be parsed as X.509.
    #[error("invalid certificate in {}", path.display())]
    ParseCertificate {
        /// The file.
        path: PathBuf,
        /// The parse failure.
        #[source]
        source: x509_parser::error::X509Error,
    },
    /// A private key was found but the crypto provider cannot use it.
    #[error("unsupported private key in {}", path.display())]
    InvalidPrivateKey {
        /// The file.
        path: PathBuf,
        /// Why the provider rejected the key.
        #[source]
        source: rustls::Error,
    },
    /// The CA private key was found but rcgen cannot sign with it.
    #[error("unsupported ca private key in {}", path.display())]
    InvalidCaKey {
        /// The file.
        path: PathBuf,
        /// Why rcgen rejected the key.
        #[source]
        source: rcgen::Error,
    },
    /// The leaf certificate's public key does not belong to the private key.
    #[error("certificate {} does not match private key {}", cert.display(), key.display())]
    KeyMismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
    },
    /// The CA certificate on disk cannot act as issuer for the CA key on disk.
    #[error("ca certificate {} cannot be used with its key", path.display())]
    CaMismatch {
        /// The CA certificate file.
        path: PathBuf,
        /// What exactly is wrong, when a library reported it.
        #[source]
        source: Option<rustls::Error>,
    },
    /// A host name for the server certificate is neither a DNS name nor an IP address.
    #[error("invalid host name {name:?}")]
    InvalidHostName {
        /// The rejected name.
        name: String,
    },
    /// rcgen failed to generate a key or certificate.
    #[error("cannot generate certificate")]
    Generate(#[from] rcgen::Error),
    /// rustls rejected the server configuration.
    #[error("cannot build tls server configuration")]
    Config(#[source] rustls::Error),
}

/// Returns the crypto provider every Outpost TLS endpoint uses.
///
/// Always ring, built explicitly rather than installed as the process default, so no other crate
/// can switch the provider under us. Its AES-128-GCM suites come first (see
/// [`prefer_aes128_gcm`]); nothing is removed.
pub fn crypto_provider() -> Arc<CryptoProvider> {
    let mut provider = rustls::crypto::ring::default_provider();
    prefer_aes128_gcm(&mut provider);
    Arc::new(provider)
}

/// Moves the AES-128-GCM suites (TLS 1.3 `TLS_AES_128_GCM_SHA256`, the mandatory one of RFC 8446
/// §9.1, and TLS 1.2's ECDHE AES-128-GCM) ahead of the others, keeping the order within each
/// group. The servers choose by this order rather than the client's (`ignore_client_order`):
/// the SDKs and rustls offer `TLS_AES_256_GCM_SHA384` first, whose SHA-384 key schedule runs in
/// software, while SHA-256 has the CPU's SHA extensions — a server's TLS 1.3 handshake takes
/// 153 µs instead of 200 µs (rustls in memory, this machine), and a connection storm is mostly
/// handshakes. Clients that offer only AES-256 or ChaCha20 still get them.
fn prefer_aes128_gcm(provider: &mut CryptoProvider) {
    use rustls::CipherSuite::{
        TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        TLS13_AES_128_GCM_SHA256,
    };
    provider.cipher_suites.sort_by_key(|suite| {
        !matches!(
            suite.suite(),
            TLS13_AES_128_GCM_SHA256
                | TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
                | TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
        )
    });
}

/// Builds a server configuration that presents `resolver`'s certificate and asks for no client
/// certificate.
///
/// TLS 1.2 and 1.3 are both enabled: the Python SDK and uamqp negotiate TLS 1.2 through OpenSSL.
/// `alpn` lists the protocols to offer in preference order (`b"http/1.1"` for HTTPS, `b"mqtt"`,
/// `b"amqp"`); an empty list disables ALPN.
///
/// # Errors
///
/// Returns [`TlsError::Config`] if rustls rejects the protocol versions for the provider.
pub fn server_config(
    resolver: Arc<ReloadingCertResolver>,
    alpn: &[&[u8]],
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let mut config = rustls::ServerConfig::builder_with_provider(crypto_provider())
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Config)?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config.ignore_client_order = true;
    Ok(Arc::new(config))
}

/// Builds a server configuration like [`server_config`] that also requests an optional client
/// certificate.
///
/// Any well-formed, currently valid client chain is accepted and its handshake signature is
/// checked, but it is not checked against any trust anchor: device X.509 authentication later
/// matches the leaf (see [`ServerTlsStream::peer_chain`]) against the device registry's thumbprints or CAs.
///
/// # Errors
///
/// Returns [`TlsError::Config`] if rustls rejects the protocol versions for the provider.
pub fn server_config_with_optional_client_certs(
    resolver: Arc<ReloadingCertResolver>,
    alpn: &[&[u8]],
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let provider = crypto_provider();
    let verifier = client_auth::AnyWellFormedClientCert::new(provider.signature_verification_algorithms);
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Config)?
        .with_client_cert_verifier(Arc::new(verifier))
        .with_cert_resolver(resolver);
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config.ignore_client_order = true;
    Ok(Arc::new(config))
}

/// Displays an error with all its sources, `outer: inner: innermost`, for log fields.
///
/// Our error messages never repeat their source, so logging only `%e` would drop the cause.
pub(crate) struct ErrorChain<'a>(pub(crate) &'a (dyn StdError + 'static));

impl fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

fn read_file(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

/// Returns whether `path` exists, without hiding I/O errors behind `false`.
fn file_exists(path: &Path) -> Result<bool, TlsError> {
    path.try_exists().map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

/// Replaces `path` with `contents` via a temporary file and a rename, so a concurrent reader (the
/// reload watcher, a client copying `ca.pem`) never sees a half-written file. `private` files are
/// created with mode 0600.
fn write_file_atomic(path: &Path, contents: &[u8], private: bool) -> Result<(), TlsError> {
    let wrap = |source| TlsError::Write {
        path: path.to_owned(),
        source,
    };
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(".tmp");
    let tmp = PathBuf::from(tmp_name);
    // A stale temp file would keep its old mode, since `mode` only applies on creation.
    match std::fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(wrap(e)),
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = private;
    let mut file = options.open(&tmp).map_err(wrap)?;
    file.write_all(contents).map_err(wrap)?;
    file.sync_all().map_err(wrap)?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(wrap)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] io::Error);

    #[test]
    fn error_chain_lists_every_source_once() {
        let err = Outer(io::Error::other("inner"));
        assert_eq!(ErrorChain(&err).to_string(), "outer: inner");
    }

    #[test]
    fn error_messages_do_not_repeat_their_source() {
        let err = TlsError::Read {
            path: PathBuf::from("/x/server.pem"),
            source: io::Error::new(io::ErrorKind::PermissionDenied, "permission denied"),
        };
        assert_eq!(err.to_string(), "cannot read /x/server.pem");
        assert_eq!(
            ErrorChain(&err).to_string(),
            "cannot read /x/server.pem: permission denied"
        );
    }

    #[test]
    fn ring_provider_has_tls12_and_tls13_suites() {
        let provider = crypto_provider();
        let versions: Vec<_> = provider
            .cipher_suites
            .iter()
            .map(|s| s.version().version)
            .collect();
        assert!(versions.contains(&rustls::ProtocolVersion::TLSv1_2));
        assert!(versions.contains(&rustls::ProtocolVersion::TLSv1_3));
        // Nothing removed, AES-128-GCM first in each version.
        let all = rustls::crypto::ring::default_provider().cipher_suites.len();
        assert_eq!(provider.cipher_suites.len(), all);
        let first = |version| {
            provider
                .cipher_suites
                .iter()
                .find(|s| s.version().version == version)
                .map(|s| s.suite())
        };
        assert_eq!(
            first(rustls::ProtocolVersion::TLSv1_3),
            Some(rustls::CipherSuite::TLS13_AES_128_GCM_SHA256)
        );
        assert_eq!(
            first(rustls::ProtocolVersion::TLSv1_2),
            Some(rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256)
        );
    }
}
