//! X.509 certificate-authority authentication of devices (IoT Hub's `certificateAuthority`
//! identities): a device presents a certificate chain in TLS; it is accepted when the chain leads
//! to a CA certificate registered on the hub and the leaf's common name is the device id.

use rustls_pki_types::{CertificateDer, UnixTime};
use webpki::{EndEntityCert, KeyUsage};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::{AuthError, Thumbprint};

/// The signature algorithms device chains may use (ring implementations).
static VERIFICATION_ALGORITHMS: &[&dyn rustls_pki_types::SignatureVerificationAlgorithm] = &[
    webpki::ring::ECDSA_P256_SHA256,
    webpki::ring::ECDSA_P256_SHA384,
    webpki::ring::ECDSA_P384_SHA256,
    webpki::ring::ECDSA_P384_SHA384,
    webpki::ring::ED25519,
    webpki::ring::RSA_PKCS1_2048_8192_SHA256,
    webpki::ring::RSA_PKCS1_2048_8192_SHA384,
    webpki::ring::RSA_PKCS1_2048_8192_SHA512,
    webpki::ring::RSA_PSS_2048_8192_SHA256_LEGACY_KEY,
    webpki::ring::RSA_PSS_2048_8192_SHA384_LEGACY_KEY,
    webpki::ring::RSA_PSS_2048_8192_SHA512_LEGACY_KEY,
];

/// A CA certificate registered on a hub, parsed from PEM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaCertificate {
    der: Vec<u8>,
    subject: String,
    thumbprint: Thumbprint,
    not_after_unix: i64,
}

impl CaCertificate {
    /// Parses a PEM certificate; it must be a CA (basic constraints `CA:TRUE`).
    ///
    /// # Errors
    /// [`AuthError::BadCertificate`] when the PEM or the certificate is malformed or not a CA.
    pub fn from_pem(pem: &str) -> Result<Self, AuthError> {
        let bad = |reason: &str| AuthError::BadCertificate {
            reason: reason.to_owned(),
        };
        let (_, pem) =
            x509_parser::pem::parse_x509_pem(pem.as_bytes()).map_err(|_| bad("not a PEM certificate"))?;
        let (_, cert) =
            X509Certificate::from_der(&pem.contents).map_err(|_| bad("not an X.509 certificate"))?;
        if !cert.is_ca() {
            return Err(bad("the certificate is not a CA (basic constraints)"));
        }
        Ok(Self {
            subject: cert.subject().to_string(),
            thumbprint: Thumbprint::sha256_of_der(&pem.contents),
            not_after_unix: cert.validity().not_after.timestamp(),
            der: pem.contents,
        })
    }

    /// Returns the DER encoding.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// Returns the subject, for listings.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// Returns the SHA-256 thumbprint.
    pub fn thumbprint(&self) -> &Thumbprint {
        &self.thumbprint
    }

    /// Returns when the certificate expires (Unix seconds).
    pub fn not_after_unix(&self) -> i64 {
        self.not_after_unix
    }
}

/// Verifies a device's chain (`chain[0]` the leaf, then intermediates) against the hub's CA
/// certificates at `now_unix`, for client authentication, and checks that the leaf's common name
/// is `device_id` (IoT Hub's rule for CA-signed devices).
///
/// # Errors
/// [`AuthError::BadCertificate`] with the reason.
pub fn verify_device_chain(
    chain: &[Vec<u8>],
    cas: &[CaCertificate],
    now_unix: u64,
    device_id: &str,
) -> Result<(), AuthError> {
    let bad = |reason: String| AuthError::BadCertificate { reason };
    let (leaf, intermediates) = chain
        .split_first()
        .ok_or_else(|| bad("no client certificate".into()))?;
    let ca_ders: Vec<CertificateDer<'_>> = cas.iter().map(|ca| CertificateDer::from(ca.der())).collect();
    let anchors = ca_ders
        .iter()
        .filter_map(|der| webpki::anchor_from_trusted_cert(der).ok())
        .collect::<Vec<_>>();
    if anchors.is_empty() {
        return Err(bad("the hub has no CA certificate".into()));
    }
    let leaf_der = CertificateDer::from(leaf.as_slice());
    let end_entity = EndEntityCert::try_from(&leaf_der).map_err(|e| bad(format!("unreadable leaf: {e}")))?;
    let intermediates: Vec<CertificateDer<'_>> = intermediates
        .iter()
        .map(|der| CertificateDer::from(der.as_slice()))
        .collect();
    end_entity
        .verify_for_usage(
            VERIFICATION_ALGORITHMS,
            &anchors,
            &intermediates,
            UnixTime::since_unix_epoch(std::time::Duration::from_secs(now_unix)),
            KeyUsage::client_auth(),
            None,
            None,
        )
        .map_err(|e| bad(format!("the chain does not verify: {e}")))?;
    let (_, cert) = X509Certificate::from_der(leaf).map_err(|_| bad("unreadable leaf".into()))?;
    let common_name = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok());
    if common_name != Some(device_id) {
        return Err(bad(format!("the leaf's common name is not '{device_id}'")));
    }
    Ok(())
}
