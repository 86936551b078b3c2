//! Certificate and key files served through rustls and reloaded when they change on disk.
//!
//! Operators rotate certificates by replacing the files; the hub must pick them up without a
//! restart, and a broken replacement must never take down the certificate already being served.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use parking_lot::{Mutex, RwLock};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::{ErrorChain, TlsError, crypto_provider, read_file};

/// Keeps a zero or tiny poll interval from spinning a core.
const MIN_POLL_INTERVAL: Duration = Duration::from_millis(10);

/// The PEM files holding a certificate chain (leaf first) and its private key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateFiles {
    /// The certificate chain, leaf first, optionally followed by intermediates and the root.
    pub cert: PathBuf,
    /// The private key: PKCS#8, SEC1 or PKCS#1 PEM.
    pub key: PathBuf,
}

/// Loads `files` into a rustls certified key using the ring provider.
///
/// # Errors
///
/// Returns an error if a file cannot be read, holds no certificate or no usable key, or the key
/// does not belong to the leaf certificate.
pub fn load_certified_key(files: &CertificateFiles) -> Result<Arc<CertifiedKey>, TlsError> {
    let cert_pem = read_file(&files.cert)?;
    let chain = rustls_pemfile::certs(&mut cert_pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::Pem {
            path: files.cert.clone(),
            source,
        })?;
    let Some(leaf) = chain.first() else {
        return Err(TlsError::NoCertificate {
            path: files.cert.clone(),
        });
    };
    if let Err(e) = x509_parser::parse_x509_certificate(leaf) {
        return Err(TlsError::ParseCertificate {
            path: files.cert.clone(),
            source: match e {
                x509_parser::nom::Err::Error(e) | x509_parser::nom::Err::Failure(e) => e,
                x509_parser::nom::Err::Incomplete(_) => x509_parser::error::X509Error::InvalidCertificate,
            },
        });
    }

    let key_pem = read_file(&files.key)?;
    let key = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .map_err(|source| TlsError::Pem {
            path: files.key.clone(),
            source,
        })?
        .ok_or_else(|| TlsError::NoPrivateKey {
            path: files.key.clone(),
        })?;
    let signing_key = crypto_provider()
        .key_provider
        .load_private_key(key)
        .map_err(|source| TlsError::InvalidPrivateKey {
            path: files.key.clone(),
            source,
        })?;

    let certified = CertifiedKey::new(chain, signing_key);
    match certified.keys_match() {
        // Unknown means the key type cannot report its public key; rustls accepts that too.
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {
            Ok(Arc::new(certified))
        }
        Err(_) => Err(TlsError::KeyMismatch {
            cert: files.cert.clone(),
            key: files.key.clone(),
        }),
    }
}

/// Size and modification time of one file, enough to notice a replacement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    modified: Option<SystemTime>,
    len: u64,
}

impl FileStamp {
    fn of(path: &Path) -> Result<Self, TlsError> {
        let meta = std::fs::metadata(path).map_err(|source| TlsError::Read {
            path: path.to_owned(),
            source,
        })?;
        Ok(FileStamp {
            modified: meta.modified().ok(),
            len: meta.len(),
        })
    }
}

/// A server certificate resolver that serves the certificate in [`CertificateFiles`] and swaps
/// in a new one when the files change.
///
/// Handshakes only take a read lock to clone an `Arc`; reloading reads the files outside that
/// lock. A reload that fails keeps serving the previous certificate.
pub struct ReloadingCertResolver {
    files: CertificateFiles,
    current: RwLock<Arc<CertifiedKey>>,
    /// Stamps of the last load attempt. Held for a whole reload so that a slow reload of older
    /// contents cannot overwrite a newer certificate installed by a concurrent one.
    last_attempt: Mutex<(FileStamp, FileStamp)>,
}

impl fmt::Debug for ReloadingCertResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReloadingCertResolver")
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

impl ReloadingCertResolver {
    /// Loads `files` and returns a resolver serving them.
    ///
    /// # Errors
    ///
    /// Returns an error if the files cannot be loaded, as [`load_certified_key`] does.
    pub fn new(files: CertificateFiles) -> Result<Self, TlsError> {
        let stamps = Self::stamps(&files)?;
        let current = load_certified_key(&files)?;
        Ok(ReloadingCertResolver {
            files,
            current: RwLock::new(current),
            last_attempt: Mutex::new(stamps),
        })
    }

    /// Returns the files this resolver serves.
    pub fn files(&self) -> &CertificateFiles {
        &self.files
    }

    /// Returns the certificate currently served.
    pub fn current(&self) -> Arc<CertifiedKey> {
        Arc::clone(&self.current.read())
    }

    /// Reloads the files if their size or modification time changed since the last attempt;
    /// returns whether a new certificate is now served.
    ///
    /// Each change is tried once: a broken replacement is reported here and then left alone
    /// until the files change again or [`reload_now`](Self::reload_now) is called, so a poller
    /// does not repeat the same error forever. This does blocking file I/O.
    ///
    /// # Errors
    ///
    /// Returns an error if the files cannot be inspected or loaded; the previous certificate
    /// stays in service.
    pub fn reload(&self) -> Result<bool, TlsError> {
        let mut last_attempt = self.last_attempt.lock();
        let stamps = Self::stamps(&self.files)?;
        if *last_attempt == stamps {
            return Ok(false);
        }
        *last_attempt = stamps;
        let loaded = load_certified_key(&self.files)?;
        *self.current.write() = loaded;
        Ok(true)
    }

    /// Reloads the files unconditionally, for callers that just rewrote them (for example
    /// after [`DevCa::ensure_server_cert`](super::DevCa::ensure_server_cert) returned `true`).
    /// This does blocking file I/O.
    ///
    /// # Errors
    ///
    /// Returns an error if the files cannot be loaded; the previous certificate stays in service.
    pub fn reload_now(&self) -> Result<(), TlsError> {
        let mut last_attempt = self.last_attempt.lock();
        // Stamps are taken before reading so a write racing with the read is seen next poll.
        *last_attempt = Self::stamps(&self.files)?;
        let loaded = load_certified_key(&self.files)?;
        *self.current.write() = loaded;
        Ok(())
    }

    /// Spawns a task that calls [`reload`](Self::reload) every `every` until `cancel` fires,
    /// logging each successful reload at info and each failure at warn.
    ///
    /// Must be called within a Tokio runtime.
    pub fn spawn_watcher(self: Arc<Self>, every: Duration, cancel: CancellationToken) -> JoinHandle<()> {
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(every.max(MIN_POLL_INTERVAL));
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            // The first tick is immediate, and the files were loaded moments ago.
            ticker.tick().await;
            loop {
                tokio::select! {
                    () = cancel.cancelled() => return,
                    _ = ticker.tick() => {}
                }
                let resolver = Arc::clone(&self);
                let path = self.files.cert.display();
                match tokio::task::spawn_blocking(move || resolver.reload()).await {
                    Ok(Ok(true)) => info!(path = %path, "reloaded tls certificate"),
                    Ok(Ok(false)) => {}
                    Ok(Err(e)) => {
                        warn!(path = %path, error = %ErrorChain(&e), "reload tls certificate failed")
                    }
                    Err(e) => warn!(path = %path, error = %e, "reload tls certificate task failed"),
                }
            }
        })
    }

    fn stamps(files: &CertificateFiles) -> Result<(FileStamp, FileStamp), TlsError> {
        Ok((FileStamp::of(&files.cert)?, FileStamp::of(&files.key)?))
    }
}

impl ResolvesServerCert for ReloadingCertResolver {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}
