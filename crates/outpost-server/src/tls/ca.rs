//! The development CA under `<data_dir>/tls/` and the server certificate it issues.
//!
//! Created once and reused across restarts, so devices and test harnesses can keep trusting the
//! same `ca.pem`. Keys are ECDSA P-256, which rustls, OpenSSL (Python SDK, uamqp) and Node accept.

use std::collections::BTreeSet;
use std::fmt;
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rcgen::string::{Ia5String, PrintableString, TeletexString};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, DnValue, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose, PublicKeyData as _, SanType,
};
use rustls::RootCertStore;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::ParsedCertificate;
use time::{Duration, OffsetDateTime};
use tracing::info;
use x509_parser::certificate::X509Certificate;
use x509_parser::der_parser::asn1_rs::Tag;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::x509::X509Name;

use super::{CertificateFiles, ErrorChain, TlsError, file_exists, load_certified_key, read_file};

const CA_CERT_FILE: &str = "ca.pem";
const CA_KEY_FILE: &str = "ca.key";
const SERVER_CERT_FILE: &str = "server.pem";
const SERVER_KEY_FILE: &str = "server.key";
const CA_COMMON_NAME: &str = "Outpost Development CA";
const ORGANIZATION: &str = "Outpost";
/// Names every server certificate covers, so local tools and tests work without configuration.
const ALWAYS_COVERED: [&str; 3] = ["localhost", "127.0.0.1", "::1"];
const CA_VALIDITY: Duration = Duration::days(3652);
const SERVER_VALIDITY: Duration = Duration::days(365);
/// Tolerates clients whose clocks run behind ours.
const BACKDATE: Duration = Duration::days(1);
/// A server certificate closer than this to expiry is reissued at startup.
const RENEW_BEFORE: Duration = Duration::days(30);

/// The development certificate authority: `ca.pem` and `ca.key` in one directory.
pub struct DevCa {
    cert_path: PathBuf,
    /// `ca.pem` exactly as on disk, appended to every issued chain.
    cert_pem: String,
    cert_der: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
}

impl fmt::Debug for DevCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DevCa")
            .field("cert_path", &self.cert_path)
            .finish_non_exhaustive()
    }
}

impl DevCa {
    /// Loads the CA from `dir`, creating the directory, `ca.key` (mode 0600) and `ca.pem` when
    /// they are missing.
    ///
    /// A missing `ca.pem` next to an existing `ca.key` is re-created from that key with the same
    /// subject, so certificates issued earlier still chain to it.
    ///
    /// # Errors
    ///
    /// Returns an error if the files cannot be read or written, are malformed, or if `ca.pem`
    /// does not belong to `ca.key`.
    pub fn load_or_create(dir: &Path) -> Result<DevCa, TlsError> {
        create_dir(dir)?;
        let key_path = dir.join(CA_KEY_FILE);
        let cert_path = dir.join(CA_CERT_FILE);

        let key = if file_exists(&key_path)? {
            read_key_pair(&key_path)?
        } else {
            let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
            super::write_file_atomic(&key_path, key.serialize_pem().as_bytes(), true)?;
            // A ca.pem left without its key is useless; replace it below.
            if file_exists(&cert_path)? {
                remove_file(&cert_path)?;
            }
            key
        };

        if !file_exists(&cert_path)? {
            let cert = ca_params(OffsetDateTime::now_utc()).self_signed(&key)?;
            super::write_file_atomic(&cert_path, cert.pem().as_bytes(), false)?;
            info!(path = %cert_path.display(), "created development ca certificate");
        }

        let cert_pem = String::from_utf8(read_file(&cert_path)?).map_err(|e| TlsError::Pem {
            path: cert_path.clone(),
            source: io::Error::new(io::ErrorKind::InvalidData, e),
        })?;
        let cert_der = first_certificate(&cert_path, cert_pem.as_bytes())?;
        let issuer = issuer_for(&cert_path, &cert_der, key)?;
        Ok(DevCa {
            cert_path,
            cert_pem,
            cert_der,
            issuer,
        })
    }

    /// Returns the path of `ca.pem`, the file clients must trust.
    pub fn ca_pem_path(&self) -> &Path {
        &self.cert_path
    }

    /// Returns the files [`ensure_server_cert`](Self::ensure_server_cert) maintains in `dir`.
    pub fn server_files(dir: &Path) -> CertificateFiles {
        CertificateFiles {
            cert: dir.join(SERVER_CERT_FILE),
            key: dir.join(SERVER_KEY_FILE),
        }
    }

    /// Returns the CA certificate in DER form.
    pub fn ca_cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    /// Makes sure `dir` holds `server.pem` (leaf then CA) and `server.key` (mode 0600) covering
    /// every entry of `names` plus `localhost`, `127.0.0.1` and `::1`.
    ///
    /// Entries that parse as an IP address become IP SANs, all others DNS SANs; the first entry
    /// is the subject common name. An existing certificate is kept when it chains to this CA,
    /// matches its key, covers every name and has more than 30 days left.
    ///
    /// Returns `true` when a new certificate was written; callers serving the files should then
    /// call [`ReloadingCertResolver::reload_now`](super::ReloadingCertResolver::reload_now).
    /// Blocking (key generation and file I/O): use `spawn_blocking` from async code.
    ///
    /// # Errors
    ///
    /// Returns [`TlsError::InvalidHostName`] for a name that is neither a DNS name nor an IP
    /// address, and an error if the files cannot be written.
    pub fn ensure_server_cert(&self, dir: &Path, names: &[String]) -> Result<bool, TlsError> {
        let wanted = SubjectNames::new(names)?;
        create_dir(dir)?;
        let files = Self::server_files(dir);
        let now = OffsetDateTime::now_utc();

        if file_exists(&files.cert)? && file_exists(&files.key)? {
            match self.check_server_cert(&files, &wanted, now) {
                Ok(()) => return Ok(false),
                Err(reason) => {
                    info!(path = %files.cert.display(), %reason, "reissuing server certificate");
                }
            }
        }

        let (key, leaf_pem) = self.issue_server_cert(&wanted, now)?;
        // Key first: a reader that sees the new certificate before its key only fails to reload
        // once, and the caller's reload_now() settles it.
        super::write_file_atomic(&files.key, key.serialize_pem().as_bytes(), true)?;
        let mut chain = leaf_pem;
        if !chain.ends_with('\n') {
            chain.push('\n');
        }
        chain.push_str(&self.cert_pem);
        super::write_file_atomic(&files.cert, chain.as_bytes(), false)?;
        info!(path = %files.cert.display(), names = ?wanted.all(), "issued server certificate");
        Ok(true)
    }

    /// Returns why the server certificate in `files` must be reissued, or `Ok` if it can stay.
    fn check_server_cert(
        &self,
        files: &CertificateFiles,
        wanted: &SubjectNames,
        now: OffsetDateTime,
    ) -> Result<(), String> {
        let certified = load_certified_key(files).map_err(|e| ErrorChain(&e).to_string())?;
        let (leaf, intermediates) = certified
            .cert
            .split_first()
            .ok_or_else(|| "certificate chain is empty".to_owned())?;
        self.verify_issued(leaf, intermediates)
            .map_err(|e| format!("certificate does not chain to {}: {e}", self.cert_path.display()))?;
        let (_, x509) =
            x509_parser::parse_x509_certificate(leaf).map_err(|e| format!("invalid certificate: {e}"))?;
        let not_after = x509.validity().not_after.to_datetime();
        if needs_renewal(not_after, now) {
            return Err(format!("certificate expires at {not_after}"));
        }
        let present = SanSet::of(&x509).map_err(|e| format!("invalid subject alternative names: {e}"))?;
        match wanted.missing_from(&present) {
            None => Ok(()),
            Some(name) => Err(format!("certificate does not cover {name}")),
        }
    }

    /// Issues a fresh leaf for `names`; returns its key and PEM certificate.
    fn issue_server_cert(
        &self,
        names: &SubjectNames,
        now: OffsetDateTime,
    ) -> Result<(KeyPair, String), TlsError> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = distinguished_name(&names.common_name);
        for dns in &names.dns {
            params
                .subject_alt_names
                .push(SanType::DnsName(Ia5String::try_from(dns.as_str())?));
        }
        for ip in &names.ips {
            params.subject_alt_names.push(SanType::IpAddress(*ip));
        }
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        // OpenSSL's X509_STRICT mode (Python 3.13 default) requires an AKI on non-root certs.
        params.use_authority_key_identifier_extension = true;
        params.not_before = now - BACKDATE;
        params.not_after = now + SERVER_VALIDITY;
        let cert = params.signed_by(&key, &self.issuer)?;
        // Proves the re-created issuer matches ca.pem byte for byte before anything is written.
        self.verify_issued(cert.der(), &[])
            .map_err(|source| TlsError::CaMismatch {
                path: self.cert_path.clone(),
                source: Some(source),
            })?;
        Ok((key, cert.pem()))
    }

    /// Verifies that `leaf` chains to this CA as a server certificate valid now.
    fn verify_issued(
        &self,
        leaf: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
    ) -> Result<(), rustls::Error> {
        let mut roots = RootCertStore::empty();
        roots.add(self.cert_der.clone())?;
        let parsed = ParsedCertificate::try_from(leaf)?;
        let algs = super::crypto_provider().signature_verification_algorithms;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &parsed,
            &roots,
            intermediates,
            UnixTime::now(),
            algs.all,
        )
    }
}

fn ca_params(now: OffsetDateTime) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = {
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, CA_COMMON_NAME);
        dn.push(DnType::OrganizationName, ORGANIZATION);
        dn
    };
    // Path length 0: the development CA signs leaves only.
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.not_before = now - BACKDATE;
    params.not_after = now + CA_VALIDITY;
    params
}

fn distinguished_name(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn.push(DnType::OrganizationName, ORGANIZATION);
    dn
}

/// Re-creates the issuer from the certificate on disk rather than from our own constants, so
/// a CA written by another version (or restored from backup) still issues matching chains.
fn issuer_for(
    path: &Path,
    cert_der: &CertificateDer<'_>,
    key: KeyPair,
) -> Result<Issuer<'static, KeyPair>, TlsError> {
    let mismatch = || TlsError::CaMismatch {
        path: path.to_owned(),
        source: None,
    };
    let (_, x509) = x509_parser::parse_x509_certificate(cert_der).map_err(|e| parse_error(path, e))?;
    if !x509.is_ca() || x509.public_key().raw != key.subject_public_key_info().as_slice() {
        return Err(mismatch());
    }
    let mut params = CertificateParams::default();
    params.distinguished_name = distinguished_name_of(x509.subject()).ok_or_else(mismatch)?;
    // The leaf's AKI must equal the CA's SKI byte for byte, whatever method produced it.
    params.key_identifier_method = match subject_key_identifier(&x509) {
        Some(id) => KeyIdMethod::PreSpecified(id.to_vec()),
        None => KeyIdMethod::Sha256,
    };
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    Ok(Issuer::new(params, key))
}

fn subject_key_identifier<'a>(x509: &'a X509Certificate<'_>) -> Option<&'a [u8]> {
    x509.iter_extensions()
        .find_map(|ext| match ext.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(id) => Some(id.0),
            _ => None,
        })
}

/// Converts an X.509 name to rcgen's form, keeping each value's string type so the issuer name
/// rcgen writes into leaves is byte-identical to the CA's subject. Returns `None` for names
/// rcgen cannot reproduce (multi-valued RDNs, repeated attributes, exotic string types).
fn distinguished_name_of(name: &X509Name<'_>) -> Option<DistinguishedName> {
    let mut dn = DistinguishedName::new();
    let mut seen = BTreeSet::new();
    for rdn in name.iter() {
        let mut attrs = rdn.iter();
        let attr = attrs.next()?;
        if attrs.next().is_some() {
            return None;
        }
        let oid: Vec<u64> = attr.attr_type().iter()?.collect();
        if !seen.insert(oid.clone()) {
            return None;
        }
        let value = attr.attr_value();
        let text = std::str::from_utf8(value.data).ok()?;
        let value = match value.header.tag() {
            Tag::Utf8String => DnValue::Utf8String(text.to_owned()),
            Tag::PrintableString => DnValue::PrintableString(PrintableString::try_from(text).ok()?),
            Tag::Ia5String => DnValue::Ia5String(Ia5String::try_from(text).ok()?),
            Tag::T61String => DnValue::TeletexString(TeletexString::try_from(text).ok()?),
            _ => return None,
        };
        dn.push(DnType::from_oid(&oid), value);
    }
    Some(dn)
}

fn read_key_pair(path: &Path) -> Result<KeyPair, TlsError> {
    let pem = read_file(path)?;
    let key = rustls_pemfile::private_key(&mut pem.as_slice())
        .map_err(|source| TlsError::Pem {
            path: path.to_owned(),
            source,
        })?
        .ok_or_else(|| TlsError::NoPrivateKey {
            path: path.to_owned(),
        })?;
    KeyPair::try_from(&key).map_err(|source| TlsError::InvalidCaKey {
        path: path.to_owned(),
        source,
    })
}

fn first_certificate(path: &Path, pem: &[u8]) -> Result<CertificateDer<'static>, TlsError> {
    rustls_pemfile::certs(&mut &pem[..])
        .next()
        .ok_or_else(|| TlsError::NoCertificate {
            path: path.to_owned(),
        })?
        .map_err(|source| TlsError::Pem {
            path: path.to_owned(),
            source,
        })
}

fn parse_error(path: &Path, err: x509_parser::nom::Err<x509_parser::error::X509Error>) -> TlsError {
    let source = match err {
        x509_parser::nom::Err::Error(e) | x509_parser::nom::Err::Failure(e) => e,
        x509_parser::nom::Err::Incomplete(_) => x509_parser::error::X509Error::InvalidCertificate,
    };
    TlsError::ParseCertificate {
        path: path.to_owned(),
        source,
    }
}

fn create_dir(dir: &Path) -> Result<(), TlsError> {
    std::fs::create_dir_all(dir).map_err(|source| TlsError::Write {
        path: dir.to_owned(),
        source,
    })
}

fn remove_file(path: &Path) -> Result<(), TlsError> {
    std::fs::remove_file(path).map_err(|source| TlsError::Write {
        path: path.to_owned(),
        source,
    })
}

fn needs_renewal(not_after: OffsetDateTime, now: OffsetDateTime) -> bool {
    not_after - now <= RENEW_BEFORE
}

/// The names a server certificate must cover, normalised for comparison.
#[derive(Debug, PartialEq)]
struct SubjectNames {
    common_name: String,
    /// Lowercase, since DNS names compare case-insensitively.
    dns: Vec<String>,
    ips: Vec<IpAddr>,
}

impl SubjectNames {
    fn new(names: &[String]) -> Result<Self, TlsError> {
        let mut out = SubjectNames {
            common_name: names
                .first()
                .cloned()
                .unwrap_or_else(|| ALWAYS_COVERED[0].to_owned()),
            dns: Vec::new(),
            ips: Vec::new(),
        };
        for name in names.iter().map(String::as_str).chain(ALWAYS_COVERED) {
            if let Ok(ip) = name.parse::<IpAddr>() {
                if !out.ips.contains(&ip) {
                    out.ips.push(ip);
                }
            } else if rustls::pki_types::DnsName::try_from(name).is_ok() {
                let dns = name.to_ascii_lowercase();
                if !out.dns.contains(&dns) {
                    out.dns.push(dns);
                }
            } else {
                return Err(TlsError::InvalidHostName {
                    name: name.to_owned(),
                });
            }
        }
        Ok(out)
    }

    fn all(&self) -> Vec<String> {
        let ips = self.ips.iter().map(IpAddr::to_string);
        self.dns.iter().cloned().chain(ips).collect()
    }

    /// Returns the first name `present` does not cover.
    fn missing_from(&self, present: &SanSet) -> Option<String> {
        if let Some(dns) = self.dns.iter().find(|d| !present.dns.contains(*d)) {
            return Some(dns.clone());
        }
        self.ips
            .iter()
            .find(|ip| !present.ips.contains(ip))
            .map(IpAddr::to_string)
    }
}

/// The DNS and IP subject alternative names of a certificate.
#[derive(Debug, Default)]
struct SanSet {
    dns: BTreeSet<String>,
    ips: BTreeSet<IpAddr>,
}

impl SanSet {
    fn of(x509: &X509Certificate<'_>) -> Result<Self, x509_parser::error::X509Error> {
        let mut set = SanSet::default();
        let Some(san) = x509.subject_alternative_name()? else {
            return Ok(set);
        };
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(dns) => {
                    set.dns.insert(dns.to_ascii_lowercase());
                }
                GeneralName::IPAddress(bytes) => {
                    if let Some(ip) = ip_from_bytes(bytes) {
                        set.ips.insert(ip);
                    }
                }
                _ => {}
            }
        }
        Ok(set)
    }
}

fn ip_from_bytes(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(bytes).ok().map(IpAddr::from),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn subject_names_always_include_loopback_names() {
        let subject = SubjectNames::new(&names(&["hub.example.test"])).unwrap();
        assert_eq!(subject.common_name, "hub.example.test");
        assert_eq!(subject.dns, ["hub.example.test", "localhost"]);
        assert_eq!(
            subject.ips,
            ["127.0.0.1".parse::<IpAddr>().unwrap(), "::1".parse().unwrap()]
        );
    }

    #[test]
    fn subject_names_turn_ip_literals_into_ip_sans_and_dedupe_case_insensitively() {
        let subject =
            SubjectNames::new(&names(&["10.0.0.5", "Hub.Example.Test", "hub.example.test"])).unwrap();
        assert_eq!(subject.common_name, "10.0.0.5");
        assert_eq!(subject.dns, ["hub.example.test", "localhost"]);
        assert!(subject.ips.contains(&"10.0.0.5".parse().unwrap()));
    }

    #[test]
    fn subject_names_default_common_name_to_localhost() {
        assert_eq!(SubjectNames::new(&[]).unwrap().common_name, "localhost");
    }

    #[test]
    fn subject_names_reject_names_that_are_neither_dns_nor_ip() {
        let err = SubjectNames::new(&names(&["bad name"])).unwrap_err();
        assert!(matches!(err, TlsError::InvalidHostName { name } if name == "bad name"));
    }

    #[test]
    fn missing_from_reports_the_first_uncovered_name() {
        let subject = SubjectNames::new(&names(&["plant1.example.test"])).unwrap();
        let mut present = SanSet::default();
        present.dns.insert("localhost".to_owned());
        present
            .ips
            .extend(["127.0.0.1".parse::<IpAddr>().unwrap(), "::1".parse().unwrap()]);
        assert_eq!(
            subject.missing_from(&present).as_deref(),
            Some("plant1.example.test")
        );
        present.dns.insert("plant1.example.test".to_owned());
        assert_eq!(subject.missing_from(&present), None);
    }

    #[test]
    fn certificates_within_thirty_days_of_expiry_need_renewal() {
        let now = OffsetDateTime::now_utc();
        assert!(needs_renewal(now + Duration::days(29), now));
        assert!(!needs_renewal(now + Duration::days(31), now));
    }

    #[test]
    fn distinguished_name_round_trips_through_x509_byte_for_byte() {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = ca_params(OffsetDateTime::now_utc());
        params.distinguished_name.push(
            DnType::CountryName,
            DnValue::PrintableString(PrintableString::try_from("DE").unwrap()),
        );
        let ca = params.self_signed(&key).unwrap();
        let issuer = issuer_for(Path::new("ca.pem"), ca.der(), key).unwrap();

        let leaf_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut leaf_params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        leaf_params.use_authority_key_identifier_extension = true;
        let leaf = leaf_params.signed_by(&leaf_key, &issuer).unwrap();

        let (_, ca) = x509_parser::parse_x509_certificate(ca.der()).unwrap();
        let (_, leaf) = x509_parser::parse_x509_certificate(leaf.der()).unwrap();
        assert_eq!(leaf.issuer().as_raw(), ca.subject().as_raw());
    }

    #[test]
    fn issuer_for_rejects_a_certificate_of_another_key() {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let other = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let ca = ca_params(OffsetDateTime::now_utc()).self_signed(&key).unwrap();
        let err = issuer_for(Path::new("ca.pem"), ca.der(), other).unwrap_err();
        assert!(matches!(err, TlsError::CaMismatch { .. }));
    }
}
