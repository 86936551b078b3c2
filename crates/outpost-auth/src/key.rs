//! Symmetric (shared access) keys and the two ways Azure feeds them to HMAC.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rand::RngCore as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use subtle::ConstantTimeEq as _;

use crate::AuthError;

/// Fewest decoded bytes Azure accepts in a symmetric key.
pub const MIN_KEY_BYTES: usize = 16;
/// Most decoded bytes Azure accepts in a symmetric key.
pub const MAX_KEY_BYTES: usize = 64;
/// Decoded length of the keys [`SymmetricKey::generate`] makes, as Azure does.
const GENERATED_KEY_BYTES: usize = 32;

/// Which bytes of a [`SymmetricKey`] are the HMAC key (wire reference §1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyEncoding {
    /// The base64-decoded key bytes: every IoT Hub endpoint (device and service SDKs, Python and Node).
    Base64Decoded,
    /// The UTF-8 bytes of the base64 text itself: the Event Hubs-compatible endpoint
    /// (`@azure/event-hubs`, `azure-eventhub`).
    RawString,
}

/// A shared access key: standard padded base64 decoding to 16..=64 bytes.
///
/// Equality is constant-time. `Debug` never shows the key.
#[derive(Clone)]
pub struct SymmetricKey {
    encoded: String,
    decoded: Vec<u8>,
}

impl SymmetricKey {
    /// Validates `encoded` as a symmetric key.
    ///
    /// # Errors
    ///
    /// [`AuthError::KeyNotBase64`] when it is not standard padded base64, [`AuthError::KeyLength`] when it
    /// decodes to fewer than 16 or more than 64 bytes.
    pub fn try_new(encoded: impl Into<String>) -> Result<Self, AuthError> {
        let encoded = encoded.into();
        let decoded = STANDARD.decode(&encoded).map_err(|_| AuthError::KeyNotBase64)?;
        if !(MIN_KEY_BYTES..=MAX_KEY_BYTES).contains(&decoded.len()) {
            return Err(AuthError::KeyLength { len: decoded.len() });
        }
        Ok(Self { encoded, decoded })
    }

    /// Returns a new key of 32 random bytes, the size Azure generates.
    pub fn generate() -> Self {
        let mut decoded = vec![0u8; GENERATED_KEY_BYTES];
        rand::rng().fill_bytes(&mut decoded);
        Self {
            encoded: STANDARD.encode(&decoded),
            decoded,
        }
    }

    /// Returns the key as base64 text, exactly as it was given.
    pub fn as_str(&self) -> &str {
        &self.encoded
    }

    /// Returns the decoded key bytes.
    pub fn decoded(&self) -> &[u8] {
        &self.decoded
    }

    /// Returns the bytes that key an HMAC under `encoding`.
    pub(crate) fn hmac_key(&self, encoding: KeyEncoding) -> &[u8] {
        match encoding {
            KeyEncoding::Base64Decoded => &self.decoded,
            KeyEncoding::RawString => self.encoded.as_bytes(),
        }
    }

    /// Builds a key without the length check, for wire vectors recorded with short test keys.
    #[cfg(test)]
    pub(crate) fn unchecked(encoded: &str) -> Self {
        Self {
            encoded: encoded.to_owned(),
            decoded: STANDARD.decode(encoded).expect("test key is base64"),
        }
    }
}

impl PartialEq for SymmetricKey {
    fn eq(&self, other: &Self) -> bool {
        self.encoded.as_bytes().ct_eq(other.encoded.as_bytes()).into()
    }
}

impl Eq for SymmetricKey {}

impl fmt::Debug for SymmetricKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SymmetricKey(***)")
    }
}

impl FromStr for SymmetricKey {
    type Err = AuthError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::try_new(s)
    }
}

impl TryFrom<String> for SymmetricKey {
    type Error = AuthError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::try_new(s)
    }
}

impl Serialize for SymmetricKey {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.encoded)
    }
}

impl<'de> Deserialize<'de> for SymmetricKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let encoded = String::deserialize(deserializer)?;
        Self::try_new(encoded).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_of_len(len: usize) -> String {
        STANDARD.encode(vec![0xA5; len])
    }

    #[test]
    fn key_of_15_bytes_is_rejected() {
        assert_eq!(
            SymmetricKey::try_new(key_of_len(15)),
            Err(AuthError::KeyLength { len: 15 })
        );
    }

    #[test]
    fn keys_of_16_and_64_bytes_are_accepted() {
        assert_eq!(SymmetricKey::try_new(key_of_len(16)).unwrap().decoded().len(), 16);
        assert_eq!(SymmetricKey::try_new(key_of_len(64)).unwrap().decoded().len(), 64);
    }

    #[test]
    fn key_of_65_bytes_is_rejected() {
        assert_eq!(
            SymmetricKey::try_new(key_of_len(65)),
            Err(AuthError::KeyLength { len: 65 })
        );
    }

    #[test]
    fn empty_key_is_rejected() {
        assert_eq!(SymmetricKey::try_new(""), Err(AuthError::KeyLength { len: 0 }));
    }

    #[test]
    fn key_that_is_not_padded_standard_base64_is_rejected() {
        let padded = key_of_len(32);
        for bad in [
            padded.trim_end_matches('='),
            "not base64 at all, not at all!!!",
            "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8-",
            " AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
        ] {
            assert_eq!(
                SymmetricKey::try_new(bad),
                Err(AuthError::KeyNotBase64),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn generated_key_is_32_random_bytes_in_base64() {
        let a = SymmetricKey::generate();
        let b = SymmetricKey::generate();
        assert_eq!(a.decoded().len(), 32);
        assert_eq!(a.as_str().len(), 44);
        assert_eq!(SymmetricKey::try_new(a.as_str()).unwrap(), a);
        assert_ne!(a, b);
    }

    #[test]
    fn debug_hides_the_key() {
        let key = SymmetricKey::try_new(key_of_len(32)).unwrap();
        assert_eq!(format!("{key:?}"), "SymmetricKey(***)");
    }

    #[test]
    fn hmac_key_follows_the_encoding() {
        let key = SymmetricKey::try_new(key_of_len(16)).unwrap();
        assert_eq!(key.hmac_key(KeyEncoding::Base64Decoded), &[0xA5; 16]);
        assert_eq!(key.hmac_key(KeyEncoding::RawString), key.as_str().as_bytes());
    }

    #[test]
    fn serde_uses_the_plain_string_and_validates() {
        let key = SymmetricKey::try_new(key_of_len(32)).unwrap();
        let json = serde_json::to_string(&key).unwrap();
        assert_eq!(json, format!("\"{}\"", key.as_str()));
        assert_eq!(serde_json::from_str::<SymmetricKey>(&json).unwrap(), key);
        let err = serde_json::from_str::<SymmetricKey>("\"ZWhrZXk=\"").unwrap_err();
        assert!(err.to_string().contains("5 bytes"), "{err}");
    }
}
