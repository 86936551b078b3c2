//! Shared access signature tokens: parsing, verification and signing (wire reference §1.1).
//!
//! `SharedAccessSignature sr=<urlenc(resource)>&sig=<urlenc(base64(HMAC-SHA256(key, sr + "\n" + se)))>&se=<unix>[&skn=<policy>]`,
//! with the fields in whatever order the SDK chose.

use std::fmt;

use base64::Engine as _;
use base64::alphabet;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use hmac::{Hmac, Mac as _};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use sha2::Sha256;
use subtle::ConstantTimeEq as _;

use crate::{AuthError, KeyEncoding, SymmetricKey};

/// Longest token [`SasToken::parse`] accepts, in bytes. SDK tokens are a few hundred bytes.
pub const MAX_TOKEN_LEN: usize = 4096;

const PREFIX: &str = "SharedAccessSignature ";

/// What `encodeURIComponentStrict` (Node) and `quote(safe="")` (Python) leave unescaped.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Standard base64 that does not insist on padding, for signatures that lost their `=`.
const LENIENT_BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

type HmacSha256 = Hmac<Sha256>;

/// A parsed shared access signature token.
///
/// `Debug` leaves the signature out: it is a bearer credential until it expires.
#[derive(Clone, PartialEq, Eq)]
pub struct SasToken {
    /// `<sr raw>\n<se raw>`: the exact bytes the client signed.
    string_to_sign: String,
    /// Length of the raw `sr` at the start of `string_to_sign`.
    resource_raw_len: usize,
    resource: String,
    signature: Vec<u8>,
    expiry: u64,
    key_name: Option<String>,
}

impl SasToken {
    /// Parses a token, with or without the `SharedAccessSignature ` prefix.
    ///
    /// Fields are found by key in any order; unknown keys and empty segments are ignored. `sig` is
    /// percent-decoded leniently (the Python service SDK leaves `/` raw) and then base64-decoded; `sr` and
    /// `skn` are percent-decoded; `se` is decimal unix seconds.
    ///
    /// # Errors
    ///
    /// [`AuthError::TokenTooLong`] past [`MAX_TOKEN_LEN`], [`AuthError::MalformedTokenSegment`] for a
    /// segment without `=`, [`AuthError::DuplicateTokenField`], [`AuthError::MissingTokenField`] for
    /// `sr`, `sig` or `se`, and [`AuthError::MalformedToken`] for a value that does not parse.
    pub fn parse(token: &str) -> Result<Self, AuthError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(AuthError::TokenTooLong {
                len: token.len(),
                max: MAX_TOKEN_LEN,
            });
        }
        let body = token.strip_prefix(PREFIX).unwrap_or(token);

        let (mut sr, mut sig, mut se, mut skn) = (None, None, None, None);
        for (index, segment) in body.split('&').enumerate() {
            if segment.is_empty() {
                continue;
            }
            let (key, value) = segment
                .split_once('=')
                .ok_or(AuthError::MalformedTokenSegment { index })?;
            let (slot, field) = match key {
                "sr" => (&mut sr, "sr"),
                "sig" => (&mut sig, "sig"),
                "se" => (&mut se, "se"),
                "skn" => (&mut skn, "skn"),
                _ => continue,
            };
            if slot.replace(value).is_some() {
                return Err(AuthError::DuplicateTokenField { field });
            }
        }

        let sr = sr.ok_or(AuthError::MissingTokenField { field: "sr" })?;
        let sig = sig.ok_or(AuthError::MissingTokenField { field: "sig" })?;
        let se = se.ok_or(AuthError::MissingTokenField { field: "se" })?;

        if sr.is_empty() {
            return Err(malformed("sr", "is empty"));
        }
        let resource = decode_text(sr).ok_or(malformed("sr", "is not utf-8 once percent-decoded"))?;
        let signature = decode_signature(sig)?;
        let expiry = parse_unix_seconds(se)?;
        let key_name = match skn {
            None | Some("") => None,
            Some(skn) => Some(decode_text(skn).ok_or(malformed("skn", "is not utf-8 once percent-decoded"))?),
        };

        let mut string_to_sign = String::with_capacity(sr.len() + 1 + se.len());
        string_to_sign.push_str(sr);
        string_to_sign.push('\n');
        string_to_sign.push_str(se);
        Ok(Self {
            string_to_sign,
            resource_raw_len: sr.len(),
            resource,
            signature,
            expiry,
            key_name,
        })
    }

    /// Returns `sr` exactly as it appears in the token (still percent-encoded): what was signed.
    pub fn resource_raw(&self) -> &str {
        &self.string_to_sign[..self.resource_raw_len]
    }

    /// Returns `sr` percent-decoded, e.g. `localhost/devices/dev1`.
    pub fn resource(&self) -> &str {
        &self.resource
    }

    /// Returns the decoded signature bytes (32 for a well-formed token).
    pub fn signature(&self) -> &[u8] {
        &self.signature
    }

    /// Returns `se`: the expiry in unix seconds.
    pub fn expiry(&self) -> u64 {
        self.expiry
    }

    /// Returns `skn` percent-decoded: the shared access policy name, absent on device tokens.
    pub fn key_name(&self) -> Option<&str> {
        self.key_name.as_deref()
    }

    /// Checks that the token has not expired and that `key` signed it.
    ///
    /// A token whose `se` is at or before `now_unix_secs` is expired. The signature comparison is
    /// constant-time.
    ///
    /// # Errors
    ///
    /// [`AuthError::Expired`] or [`AuthError::SignatureMismatch`].
    pub fn verify(
        &self,
        key: &SymmetricKey,
        encoding: KeyEncoding,
        now_unix_secs: u64,
    ) -> Result<(), AuthError> {
        if self.expiry <= now_unix_secs {
            return Err(AuthError::Expired {
                expiry: self.expiry,
                now: now_unix_secs,
            });
        }
        let mut mac = keyed_mac(key.hmac_key(encoding));
        mac.update(self.string_to_sign.as_bytes());
        let expected = mac.finalize().into_bytes();
        if bool::from(expected.as_slice().ct_eq(&self.signature)) {
            Ok(())
        } else {
            Err(AuthError::SignatureMismatch)
        }
    }
}

impl fmt::Debug for SasToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SasToken")
            .field("resource", &self.resource)
            .field("expiry", &self.expiry)
            .field("key_name", &self.key_name)
            .finish_non_exhaustive()
    }
}

/// Returns a token for `resource_raw` (used verbatim as `sr`, so encode it first with
/// [`encode_resource`] when the SDKs would) that expires at `expiry_unix`.
///
/// The output is `SharedAccessSignature sr=…&sig=…&se=…[&skn=…]` with `sig` and `skn` fully
/// percent-encoded, byte-for-byte what the Python device SDK and Node's `SharedAccessSignature.create`
/// produce for the same input (apart from Node's `skn`-before-`se` order).
pub fn sign(
    resource_raw: &str,
    key: &SymmetricKey,
    encoding: KeyEncoding,
    expiry_unix: u64,
    key_name: Option<&str>,
) -> String {
    let expiry = expiry_unix.to_string();
    let mut mac = keyed_mac(key.hmac_key(encoding));
    mac.update(resource_raw.as_bytes());
    mac.update(b"\n");
    mac.update(expiry.as_bytes());
    let signature = STANDARD.encode(mac.finalize().into_bytes());

    let mut token = format!(
        "{PREFIX}sr={resource_raw}&sig={}&se={expiry}",
        utf8_percent_encode(&signature, COMPONENT)
    );
    if let Some(name) = key_name {
        token.push_str("&skn=");
        token.extend(utf8_percent_encode(name, COMPONENT));
    }
    token
}

/// Percent-encodes a resource (`host/devices/dev1`) the way the device SDKs do for `sr`:
/// everything but ASCII letters, digits and `-_.~`.
pub fn encode_resource(host_and_path: &str) -> String {
    utf8_percent_encode(host_and_path, COMPONENT).to_string()
}

fn keyed_mac(key: &[u8]) -> HmacSha256 {
    HmacSha256::new_from_slice(key).expect("hmac-sha256 accepts keys of any length")
}

fn malformed(field: &'static str, reason: &'static str) -> AuthError {
    AuthError::MalformedToken { field, reason }
}

fn decode_text(value: &str) -> Option<String> {
    percent_decode_str(value)
        .decode_utf8()
        .ok()
        .map(|text| text.into_owned())
}

fn decode_signature(sig: &str) -> Result<Vec<u8>, AuthError> {
    // percent_decode leaves invalid `%` sequences and unescaped characters (`/`, `+`) as they are.
    let text: Vec<u8> = percent_decode_str(sig).collect();
    if text.is_empty() {
        return Err(malformed("sig", "is empty"));
    }
    LENIENT_BASE64
        .decode(text)
        .map_err(|_| malformed("sig", "is not base64"))
}

fn parse_unix_seconds(se: &str) -> Result<u64, AuthError> {
    // u64::from_str would also take a leading `+`.
    if se.is_empty() || !se.bytes().all(|b| b.is_ascii_digit()) {
        return Err(malformed("se", "is not decimal unix seconds"));
    }
    se.parse().map_err(|_| malformed("se", "is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Event Hubs JS client (`@azure/event-hubs` 6.0.4) on the wire, wire reference §1.1: the HMAC key is
    /// the UTF-8 of `ZWhrZXk=`. Its `skn` is left out here; it is not signed.
    const EH_KEY: &str = "ZWhrZXk=";
    const EH_TOKEN: &str = "SharedAccessSignature sr=sb%3A%2F%2Flocalhost%2Fmyhub\
        &sig=bSj8s3FgaGzOzWQ5tZcum6lWqI7u0WFmNIcxtN5K1RA%3D&se=1795692685";

    /// Python `azure-iot-device` 2.14.0, `RenewableSasToken` + `SymmetricKeySigningMechanism`,
    /// `time.time` fixed at 1795689085, ttl 3600. Order sr, sig, se.
    const PY_DEVICE_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    const PY_DEVICE_TOKEN: &str = "SharedAccessSignature sr=localhost%2Fdevices%2Fdev1\
        &sig=bJyRDFcZSwu8KRkFnTPlWGHeXmibTY0%2FCA8i704rkuE%3D&se=1795692685";
    /// Same SDK and key, a module behind a `HostName` with a port.
    const PY_MODULE_TOKEN: &str = "SharedAccessSignature sr=localhost%3A8443%2Fdevices%2Fdev1%2Fmodules%2Fmod1\
        &sig=1YO58G5tzmSZwoxfiGXkfBHwR3hY82uZF1URuvYPzkw%3D&se=1795692685";

    /// Python `azure-iot-hub` 2.7.0, `ConnectionStringAuthentication.signed_session()` (the registry
    /// manager's auth), `time.time` fixed at 1795689089. `quote()` keeps `/` raw in `sig`.
    const PY_SERVICE_KEY: &str = "b3V0cG9zdC1zZXJ2aWNlLXBvbGljeS1rZXktMzJieSE=";
    const PY_SERVICE_TOKEN: &str = "SharedAccessSignature sr=localhost\
        &sig=EAynS8D3YFHf81iMKWhzvzLF/ZHAnmPBNKeS7KNMXLY%3D&se=1795692689&skn=iothubowner";

    /// Node `azure-iot-common` 1.13.3 (pinned by `azure-iot-device` 1.18.4). Order sr, sig, skn, se.
    const NODE_KEY: &str = "//79/Pv6+fj39vX08/Lx8O/u7ezr6uno5+bl5OPi4eA=";
    /// `SharedAccessSignature.create(encodeUriComponentStrict("localhost/devices/dev1/modules/mod1"), "device policy", key, 1795692685)`.
    const NODE_MODULE_TOKEN: &str = "SharedAccessSignature sr=localhost%2Fdevices%2Fdev1%2Fmodules%2Fmod1\
        &sig=tnJcb%2B%2FKs2U4R6Ai3GndMWDi49l9qTM5%2B6P9IeMWGiw%3D&skn=device%20policy&se=1795692685";
    /// `SharedAccessSignature.create("localhost", "iothubowner", key, 1795692690)`, as `azure-iothub` signs:
    /// the host is not encoded.
    const NODE_SERVICE_TOKEN: &str = "SharedAccessSignature sr=localhost\
        &sig=%2Fq5t%2FIdOtyJMut%2BTOvqarvX2q8ckqvnjmkyykubeSA0%3D&skn=iothubowner&se=1795692690";
    /// `SharedAccessSignature.createWithSigningFunction({host: "localhost", deviceId: "dev1"}, 1795692685, …)`.
    const NODE_DEVICE_TOKEN: &str = "SharedAccessSignature sr=localhost%2Fdevices%2Fdev1\
        &sig=4qdcebMBJJbkwf8V88inWmyLNjjSvDaNEj0T5SrX91c%3D&se=1795692685";

    const BEFORE: u64 = 1_795_690_000;

    fn key(encoded: &str) -> SymmetricKey {
        SymmetricKey::try_new(encoded).unwrap()
    }

    #[test]
    fn event_hubs_vector_verifies_with_the_raw_string_key_only() {
        let token = SasToken::parse(EH_TOKEN).unwrap();
        let key = SymmetricKey::unchecked(EH_KEY);
        assert_eq!(token.resource(), "sb://localhost/myhub");
        assert_eq!(token.verify(&key, KeyEncoding::RawString, BEFORE), Ok(()));
        assert_eq!(
            token.verify(&key, KeyEncoding::Base64Decoded, BEFORE),
            Err(AuthError::SignatureMismatch)
        );
    }

    #[test]
    fn python_device_tokens_verify_with_the_decoded_key() {
        for (token, resource) in [
            (PY_DEVICE_TOKEN, "localhost/devices/dev1"),
            (PY_MODULE_TOKEN, "localhost:8443/devices/dev1/modules/mod1"),
        ] {
            let token = SasToken::parse(token).unwrap();
            assert_eq!(token.resource(), resource);
            assert_eq!(token.key_name(), None);
            assert_eq!(token.expiry(), 1_795_692_685);
            assert_eq!(
                token.verify(&key(PY_DEVICE_KEY), KeyEncoding::Base64Decoded, BEFORE),
                Ok(())
            );
            assert_eq!(
                token.verify(&key(PY_DEVICE_KEY), KeyEncoding::RawString, BEFORE),
                Err(AuthError::SignatureMismatch)
            );
        }
    }

    #[test]
    fn python_service_token_with_raw_slash_in_sig_verifies() {
        let token = SasToken::parse(PY_SERVICE_TOKEN).unwrap();
        assert_eq!(token.resource_raw(), "localhost");
        assert_eq!(token.key_name(), Some("iothubowner"));
        assert_eq!(token.signature().len(), 32);
        assert_eq!(
            token.verify(&key(PY_SERVICE_KEY), KeyEncoding::Base64Decoded, BEFORE),
            Ok(())
        );
    }

    #[test]
    fn node_tokens_with_skn_before_se_verify() {
        let module = SasToken::parse(NODE_MODULE_TOKEN).unwrap();
        assert_eq!(module.resource(), "localhost/devices/dev1/modules/mod1");
        assert_eq!(module.key_name(), Some("device policy"));
        let service = SasToken::parse(NODE_SERVICE_TOKEN).unwrap();
        assert_eq!(service.key_name(), Some("iothubowner"));
        let device = SasToken::parse(NODE_DEVICE_TOKEN).unwrap();
        for token in [module, service, device] {
            assert_eq!(
                token.verify(&key(NODE_KEY), KeyEncoding::Base64Decoded, BEFORE),
                Ok(())
            );
        }
    }

    #[test]
    fn sign_reproduces_sdk_device_tokens_byte_for_byte() {
        let sr = encode_resource("localhost/devices/dev1");
        let expiry = 1_795_692_685;
        let python = sign(&sr, &key(PY_DEVICE_KEY), KeyEncoding::Base64Decoded, expiry, None);
        assert_eq!(python, PY_DEVICE_TOKEN);
        let node = sign(&sr, &key(NODE_KEY), KeyEncoding::Base64Decoded, expiry, None);
        assert_eq!(node, NODE_DEVICE_TOKEN);
    }

    #[test]
    fn signed_tokens_round_trip_through_parse_and_verify() {
        let key = SymmetricKey::generate();
        for encoding in [KeyEncoding::Base64Decoded, KeyEncoding::RawString] {
            for (resource, key_name) in [
                (encode_resource("localhost/devices/dev 1/modules/m+1"), None),
                ("localhost".to_owned(), Some("iothubowner")),
                (encode_resource("sb://localhost/myhub"), Some("a&b=c d")),
            ] {
                let text = sign(&resource, &key, encoding, 2_000_000_000, key_name);
                let token = SasToken::parse(&text).unwrap();
                assert_eq!(token.resource_raw(), resource);
                assert_eq!(token.key_name(), key_name);
                assert_eq!(token.expiry(), 2_000_000_000);
                assert_eq!(token.verify(&key, encoding, BEFORE), Ok(()));
            }
        }
    }

    #[test]
    fn fields_are_found_by_key_in_any_order() {
        let orders = [
            "se=1795692685&sig=bJyRDFcZSwu8KRkFnTPlWGHeXmibTY0%2FCA8i704rkuE%3D&sr=localhost%2Fdevices%2Fdev1",
            "sig=bJyRDFcZSwu8KRkFnTPlWGHeXmibTY0%2FCA8i704rkuE%3D&se=1795692685&sr=localhost%2Fdevices%2Fdev1",
        ];
        for body in orders {
            let token = SasToken::parse(&format!("SharedAccessSignature {body}")).unwrap();
            assert_eq!(
                token.verify(&key(PY_DEVICE_KEY), KeyEncoding::Base64Decoded, BEFORE),
                Ok(())
            );
        }
    }

    #[test]
    fn prefix_is_optional_but_case_sensitive() {
        let bare = PY_DEVICE_TOKEN.strip_prefix("SharedAccessSignature ").unwrap();
        assert_eq!(
            SasToken::parse(bare).unwrap(),
            SasToken::parse(PY_DEVICE_TOKEN).unwrap()
        );
        let lower = format!("sharedaccesssignature {bare}");
        assert_eq!(
            SasToken::parse(&lower),
            Err(AuthError::MissingTokenField { field: "sr" })
        );
    }

    #[test]
    fn unknown_keys_and_empty_segments_are_ignored() {
        let token = SasToken::parse(&format!("{PY_DEVICE_TOKEN}&foo=bar&&x=")).unwrap();
        assert_eq!(
            token.verify(&key(PY_DEVICE_KEY), KeyEncoding::Base64Decoded, BEFORE),
            Ok(())
        );
    }

    #[test]
    fn signature_without_padding_or_escapes_still_parses() {
        let plain = SasToken::parse(
            "sr=localhost%2Fdevices%2Fdev1&sig=bJyRDFcZSwu8KRkFnTPlWGHeXmibTY0/CA8i704rkuE&se=1795692685",
        )
        .unwrap();
        assert_eq!(
            plain.signature(),
            SasToken::parse(PY_DEVICE_TOKEN).unwrap().signature()
        );
    }

    #[test]
    fn token_expiring_now_is_expired() {
        let token = SasToken::parse(PY_DEVICE_TOKEN).unwrap();
        let key = key(PY_DEVICE_KEY);
        let expiry = 1_795_692_685;
        assert_eq!(
            token.verify(&key, KeyEncoding::Base64Decoded, expiry),
            Err(AuthError::Expired { expiry, now: expiry })
        );
        assert!(matches!(
            token.verify(&key, KeyEncoding::Base64Decoded, u64::MAX),
            Err(AuthError::Expired { .. })
        ));
        assert_eq!(token.verify(&key, KeyEncoding::Base64Decoded, expiry - 1), Ok(()));
    }

    #[test]
    fn expiry_is_checked_before_the_signature() {
        let token = SasToken::parse(PY_DEVICE_TOKEN).unwrap();
        let wrong = SymmetricKey::generate();
        assert!(matches!(
            token.verify(&wrong, KeyEncoding::Base64Decoded, 1_795_692_685),
            Err(AuthError::Expired { .. })
        ));
    }

    #[test]
    fn tampered_signature_is_rejected() {
        let tampered = PY_DEVICE_TOKEN.replace("sig=bJy", "sig=bJz");
        let token = SasToken::parse(&tampered).unwrap();
        assert_eq!(
            token.verify(&key(PY_DEVICE_KEY), KeyEncoding::Base64Decoded, BEFORE),
            Err(AuthError::SignatureMismatch)
        );
    }

    #[test]
    fn tampered_resource_or_expiry_is_rejected() {
        let key = key(PY_DEVICE_KEY);
        for tampered in [
            PY_DEVICE_TOKEN.replace("dev1", "dev2"),
            PY_DEVICE_TOKEN.replace("se=1795692685", "se=1795692686"),
            // The same instant written differently is a different string to sign.
            PY_DEVICE_TOKEN.replace("se=1795692685", "se=01795692685"),
            PY_DEVICE_TOKEN.replace("localhost%2F", "localhost/"),
        ] {
            let token = SasToken::parse(&tampered).unwrap();
            assert_eq!(
                token.verify(&key, KeyEncoding::Base64Decoded, BEFORE),
                Err(AuthError::SignatureMismatch),
                "{tampered}"
            );
        }
    }

    #[test]
    fn wrong_key_is_rejected() {
        let token = SasToken::parse(PY_DEVICE_TOKEN).unwrap();
        for encoding in [KeyEncoding::Base64Decoded, KeyEncoding::RawString] {
            assert_eq!(
                token.verify(&key(NODE_KEY), encoding, BEFORE),
                Err(AuthError::SignatureMismatch)
            );
        }
    }

    #[test]
    fn missing_required_fields_are_named() {
        for (body, field) in [
            ("sig=AAAA&se=1", "sr"),
            ("sr=a&se=1", "sig"),
            ("sr=a&sig=AAAA&skn=x", "se"),
            ("", "sr"),
        ] {
            assert_eq!(
                SasToken::parse(body),
                Err(AuthError::MissingTokenField { field }),
                "{body}"
            );
        }
    }

    #[test]
    fn duplicate_fields_are_rejected() {
        for (body, field) in [
            ("sr=a&sr=a&sig=AAAA&se=1", "sr"),
            ("sr=a&sig=AAAA&se=1&sig=AAAA", "sig"),
            ("sr=a&sig=AAAA&se=1&se=2", "se"),
            ("sr=a&sig=AAAA&se=1&skn=x&skn=y", "skn"),
        ] {
            assert_eq!(
                SasToken::parse(body),
                Err(AuthError::DuplicateTokenField { field }),
                "{body}"
            );
        }
    }

    #[test]
    fn malformed_values_name_their_field() {
        for (body, field) in [
            ("sr=&sig=AAAA&se=1", "sr"),
            ("sr=%FF%FE&sig=AAAA&se=1", "sr"),
            ("sr=a&sig=&se=1", "sig"),
            ("sr=a&sig=not*base64&se=1", "sig"),
            ("sr=a&sig=AAAA&se=soon", "se"),
            ("sr=a&sig=AAAA&se=+1", "se"),
            ("sr=a&sig=AAAA&se=-1", "se"),
            ("sr=a&sig=AAAA&se=1.5", "se"),
            ("sr=a&sig=AAAA&se=", "se"),
            ("sr=a&sig=AAAA&se=18446744073709551616", "se"),
            ("sr=a&sig=AAAA&se=1&skn=%C3%28", "skn"),
        ] {
            assert!(
                matches!(SasToken::parse(body), Err(AuthError::MalformedToken { field: f, .. }) if f == field),
                "{body}: {:?}",
                SasToken::parse(body)
            );
        }
    }

    #[test]
    fn segment_without_equals_is_rejected() {
        assert_eq!(
            SasToken::parse("SharedAccessSignature sr=a&garbage&sig=AAAA&se=1"),
            Err(AuthError::MalformedTokenSegment { index: 1 })
        );
    }

    #[test]
    fn garbage_is_rejected_without_panicking() {
        for garbage in [
            "SharedAccessSignature ",
            "&&&&",
            "====",
            "\u{0}\u{ffff}é%",
            "sr=%",
            "sr=a&sig=%%%%&se=1",
        ] {
            assert!(SasToken::parse(garbage).is_err(), "{garbage:?}");
        }
    }

    #[test]
    fn huge_token_is_rejected_before_parsing() {
        let huge = format!("{PY_DEVICE_TOKEN}&pad={}", "x".repeat(MAX_TOKEN_LEN));
        assert_eq!(
            SasToken::parse(&huge),
            Err(AuthError::TokenTooLong {
                len: huge.len(),
                max: MAX_TOKEN_LEN
            })
        );
    }

    #[test]
    fn debug_does_not_show_the_signature() {
        let token = SasToken::parse(PY_SERVICE_TOKEN).unwrap();
        let debug = format!("{token:?}");
        assert!(
            debug.contains("localhost") && debug.contains("iothubowner"),
            "{debug}"
        );
        assert!(
            !debug.contains("signature") && !debug.contains("EAyn") && !debug.contains("16, 12"),
            "{debug}"
        );
    }

    #[test]
    fn encode_resource_escapes_like_the_sdks() {
        assert_eq!(
            encode_resource("localhost/devices/dev1"),
            "localhost%2Fdevices%2Fdev1"
        );
        assert_eq!(
            encode_resource("sb://localhost/myhub"),
            "sb%3A%2F%2Flocalhost%2Fmyhub"
        );
        assert_eq!(
            encode_resource("h:8443/devices/a b+c*~_.-"),
            "h%3A8443%2Fdevices%2Fa%20b%2Bc%2A~_.-"
        );
    }
}
