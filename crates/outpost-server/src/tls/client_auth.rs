//! Optional client certificates for device X.509 authentication.
//!
//! IoT Hub devices may authenticate with a self-signed certificate (matched by thumbprint) or one
//! issued by a CA registered with the hub. Neither is known to the TLS layer, so the handshake
//! only proves the client holds the key of a well-formed, currently valid certificate; the device
//! registry decides later whether that certificate identifies a device.

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, SignatureScheme};

/// Accepts any well-formed client chain whose leaf is valid now, without checking trust.
#[derive(Debug)]
pub(super) struct AnyWellFormedClientCert {
    algorithms: WebPkiSupportedAlgorithms,
}

impl AnyWellFormedClientCert {
    pub(super) fn new(algorithms: WebPkiSupportedAlgorithms) -> Self {
        AnyWellFormedClientCert { algorithms }
    }
}

impl ClientCertVerifier for AnyWellFormedClientCert {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // An empty list tells clients any certificate will do.
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        check_leaf(end_entity, now)?;
        for cert in intermediates {
            if x509_parser::parse_x509_certificate(cert).is_err() {
                return Err(CertificateError::BadEncoding.into());
            }
        }
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// Rejects a leaf that does not parse or is outside its validity period, as IoT Hub does.
fn check_leaf(der: &CertificateDer<'_>, now: UnixTime) -> Result<(), rustls::Error> {
    let (_, leaf) = x509_parser::parse_x509_certificate(der).map_err(|_| CertificateError::BadEncoding)?;
    // Also rejects keys webpki cannot use for the handshake signature.
    rustls::server::ParsedCertificate::try_from(der)?;
    let now = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
    let validity = leaf.validity();
    if now < validity.not_before.timestamp() {
        return Err(CertificateError::NotValidYet.into());
    }
    if now > validity.not_after.timestamp() {
        return Err(CertificateError::Expired.into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use rcgen::{CertificateParams, KeyPair};
    use time::OffsetDateTime;

    use super::*;

    fn verifier() -> AnyWellFormedClientCert {
        AnyWellFormedClientCert::new(
            rustls::crypto::ring::default_provider().signature_verification_algorithms,
        )
    }

    fn self_signed(not_before: OffsetDateTime, not_after: OffsetDateTime) -> CertificateDer<'static> {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec!["device-1".to_owned()]).unwrap();
        params.not_before = not_before;
        params.not_after = not_after;
        params.self_signed(&key).unwrap().der().clone()
    }

    #[test]
    fn self_signed_device_certificate_is_accepted_without_roots() {
        let now = OffsetDateTime::now_utc();
        let cert = self_signed(now - time::Duration::hours(1), now + time::Duration::days(1));
        assert!(verifier().verify_client_cert(&cert, &[], UnixTime::now()).is_ok());
    }

    #[test]
    fn expired_device_certificate_is_rejected() {
        let now = OffsetDateTime::now_utc();
        let cert = self_signed(now - time::Duration::days(10), now - time::Duration::days(1));
        let err = verifier()
            .verify_client_cert(&cert, &[], UnixTime::now())
            .unwrap_err();
        assert_eq!(err, rustls::Error::InvalidCertificate(CertificateError::Expired));
    }

    #[test]
    fn not_yet_valid_device_certificate_is_rejected() {
        let now = OffsetDateTime::now_utc();
        let cert = self_signed(now + time::Duration::days(1), now + time::Duration::days(2));
        let err = verifier()
            .verify_client_cert(&cert, &[], UnixTime::since_unix_epoch(Duration::from_secs(0)))
            .unwrap_err();
        assert_eq!(
            err,
            rustls::Error::InvalidCertificate(CertificateError::NotValidYet)
        );
    }

    #[test]
    fn garbage_certificate_bytes_are_rejected_as_bad_encoding() {
        let garbage = CertificateDer::from(vec![0x30, 0x03, 0x01, 0x02, 0x03]);
        let err = verifier()
            .verify_client_cert(&garbage, &[], UnixTime::now())
            .unwrap_err();
        assert_eq!(
            err,
            rustls::Error::InvalidCertificate(CertificateError::BadEncoding)
        );
    }

    #[test]
    fn client_certificates_are_offered_but_optional() {
        let verifier = verifier();
        assert!(verifier.offer_client_auth());
        assert!(!verifier.client_auth_mandatory());
        assert!(verifier.root_hint_subjects().is_empty());
    }
}
