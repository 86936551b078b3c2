//! X.509 certificate thumbprints, as devices registered with `selfSigned` authentication carry.

use std::fmt::{self, Write as _};
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha1::Sha1;
use sha2::{Digest as _, Sha256};

use crate::AuthError;

const SHA1_HEX_LEN: usize = 40;
const SHA256_HEX_LEN: usize = 64;

/// A certificate thumbprint: the SHA-1 (40 hex digits) or SHA-256 (64 hex digits) of its DER encoding.
///
/// Stored uppercase without separators, so equality ignores case, `:` and whitespace in the input.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Thumbprint(String);

impl Thumbprint {
    /// Normalises and validates a thumbprint such as `ab:cd:…` or `ABCD …`.
    ///
    /// # Errors
    ///
    /// [`AuthError::BadThumbprint`] when, once `:` and whitespace are removed, it is not 40 or 64 hex digits.
    pub fn parse(text: &str) -> Result<Self, AuthError> {
        let mut normalised = String::with_capacity(SHA256_HEX_LEN);
        for c in text.chars().filter(|&c| c != ':' && !c.is_whitespace()) {
            if !c.is_ascii_hexdigit() {
                return Err(AuthError::BadThumbprint {
                    reason: "contains a character that is not a hex digit",
                });
            }
            if normalised.len() == SHA256_HEX_LEN {
                return Err(too_long_or_short());
            }
            normalised.push(c.to_ascii_uppercase());
        }
        if normalised.len() != SHA1_HEX_LEN && normalised.len() != SHA256_HEX_LEN {
            return Err(too_long_or_short());
        }
        Ok(Self(normalised))
    }

    /// Returns the SHA-1 thumbprint of a DER-encoded certificate (what Azure shows by default).
    pub fn sha1_of_der(der: &[u8]) -> Self {
        Self(upper_hex(&Sha1::digest(der)))
    }

    /// Returns the SHA-256 thumbprint of a DER-encoded certificate.
    pub fn sha256_of_der(der: &[u8]) -> Self {
        Self(upper_hex(&Sha256::digest(der)))
    }

    /// Returns whether `der` is the certificate this thumbprint names, hashing it with SHA-1 or SHA-256
    /// according to the thumbprint's length.
    pub fn matches_der(&self, der: &[u8]) -> bool {
        let actual = if self.0.len() == SHA1_HEX_LEN {
            Self::sha1_of_der(der)
        } else {
            Self::sha256_of_der(der)
        };
        actual == *self
    }

    /// Returns the normalised form: uppercase hex digits, no separators.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn too_long_or_short() -> AuthError {
    AuthError::BadThumbprint {
        reason: "is not 40 (sha-1) or 64 (sha-256) hex digits",
    }
}

fn upper_hex(bytes: &[u8]) -> String {
    let mut hex = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        write!(hex, "{byte:02X}").expect("writing to a String cannot fail");
    }
    hex
}

impl fmt::Display for Thumbprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Thumbprint {
    type Err = AuthError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for Thumbprint {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Thumbprint {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DER: &[u8] = b"not really a certificate, but bytes are bytes";

    #[test]
    fn separators_and_case_are_normalised_away() {
        let colons =
            Thumbprint::parse("ab:cd:ef:01:23:45:67:89:ab:cd:ef:01:23:45:67:89:ab:cd:ef:01").unwrap();
        let spaced = Thumbprint::parse(" ABCDEF01 23456789 abcdef01 23456789 ABCDEF01\n").unwrap();
        assert_eq!(colons.as_str(), "ABCDEF0123456789ABCDEF0123456789ABCDEF01");
        assert_eq!(colons, spaced);
        let sha256 = "0f".repeat(32);
        assert_eq!(Thumbprint::parse(&sha256).unwrap().as_str(), "0F".repeat(32));
    }

    #[test]
    fn wrong_length_or_non_hex_is_rejected() {
        for bad in [
            "",
            "ab",
            &"a".repeat(39),
            &"a".repeat(41),
            &"a".repeat(63),
            &"a".repeat(65),
            &"a".repeat(4096),
        ] {
            assert!(
                matches!(Thumbprint::parse(bad), Err(AuthError::BadThumbprint { .. })),
                "{bad:?}"
            );
        }
        let non_hex = format!("{}g", "a".repeat(39));
        assert!(matches!(
            Thumbprint::parse(&non_hex),
            Err(AuthError::BadThumbprint { .. })
        ));
        assert!(Thumbprint::parse(&format!("\u{200e}{}", "a".repeat(40))).is_err());
    }

    #[test]
    fn digests_of_der_match_known_values() {
        // `printf 'abc' | sha1sum` and `sha256sum`.
        assert_eq!(
            Thumbprint::sha1_of_der(b"abc").as_str(),
            "A9993E364706816ABA3E25717850C26C9CD0D89D"
        );
        assert_eq!(
            Thumbprint::sha256_of_der(b"abc").as_str(),
            "BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD"
        );
    }

    #[test]
    fn matches_der_uses_the_digest_of_the_thumbprint_length() {
        let sha1 = Thumbprint::parse(&Thumbprint::sha1_of_der(DER).as_str().to_lowercase()).unwrap();
        let sha256 = Thumbprint::sha256_of_der(DER);
        assert!(sha1.matches_der(DER));
        assert!(sha256.matches_der(DER));
        assert!(!sha1.matches_der(b"another certificate"));
        assert!(!sha256.matches_der(b"another certificate"));
    }

    #[test]
    fn serde_uses_the_normalised_string() {
        let thumbprint: Thumbprint =
            serde_json::from_str(&format!("\"{}\"", "ab:".repeat(19) + "ab")).unwrap();
        assert_eq!(
            serde_json::to_string(&thumbprint).unwrap(),
            format!("\"{}\"", "AB".repeat(20))
        );
        assert!(serde_json::from_str::<Thumbprint>("\"xyz\"").is_err());
    }
}
