//! Sealed tokens: a short text the hub hands out and later takes back, protected by an HMAC so a
//! client can neither forge nor alter one (file-upload correlation ids, wire contract §4). The
//! text is readable (base64url), not secret.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac as _};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Bytes of the HMAC kept in a token: 128 bits is ample against forgery.
const TAG_BYTES: usize = 16;
/// Longest sealed token [`unseal`] looks at.
pub const MAX_SEALED_LEN: usize = 4096;

/// Seals `payload` with `key`: `base64url(payload) "." base64url(tag)`.
pub fn seal(key: &[u8], payload: &str) -> String {
    let tag = tag(key, payload.as_bytes());
    format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(payload),
        URL_SAFE_NO_PAD.encode(&tag[..TAG_BYTES])
    )
}

/// Returns the payload of a token [`seal`] made with `key`, or `None` if the token is malformed,
/// too long, or was not sealed with this key (the tag is compared in constant time).
pub fn unseal(key: &[u8], token: &str) -> Option<String> {
    if token.len() > MAX_SEALED_LEN {
        return None;
    }
    let (payload, tag) = token.split_once('.')?;
    let payload = URL_SAFE_NO_PAD.decode(payload).ok()?;
    let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
    if tag.len() != TAG_BYTES {
        return None;
    }
    let mut mac = HmacSha256::new_from_slice(key).ok()?;
    mac.update(&payload);
    mac.verify_truncated_left(&tag).ok()?;
    String::from_utf8(payload).ok()
}

fn tag(key: &[u8], payload: &[u8]) -> Vec<u8> {
    // HMAC takes keys of any length: `new_from_slice` cannot fail for it.
    let Ok(mut mac) = HmacSha256::new_from_slice(key) else {
        return Vec::new();
    };
    mac.update(payload);
    mac.finalize().into_bytes().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_token_opens_with_its_key_only() {
        let token = seal(b"key one", "device-1|file.txt");
        assert_eq!(unseal(b"key one", &token).as_deref(), Some("device-1|file.txt"));
        assert_eq!(unseal(b"key two", &token), None);
    }

    #[test]
    fn altered_or_malformed_tokens_do_not_open() {
        let token = seal(b"k", "device-1|file.txt");
        let (payload, tag) = token.split_once('.').unwrap_or_default();
        let other = URL_SAFE_NO_PAD.encode("device-2|file.txt");
        assert_eq!(unseal(b"k", &format!("{other}.{tag}")), None);
        assert_eq!(
            unseal(b"k", &format!("{payload}.{}", &tag[..4])),
            None,
            "a shortened tag"
        );
        assert_eq!(unseal(b"k", &format!("{payload}.")), None);
        assert_eq!(unseal(b"k", payload), None);
        assert_eq!(unseal(b"k", "!!!.???"), None);
        assert_eq!(unseal(b"k", &"a".repeat(MAX_SEALED_LEN + 1)), None);
    }
}
