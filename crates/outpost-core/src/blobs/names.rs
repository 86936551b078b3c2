//! Blob names and block ids: the rules Azure Storage applies that the hub must enforce before a
//! name reaches a URL or a store.

use super::{BlobError, MAX_BLOB_NAME_CHARS, MAX_BLOCK_ID_BYTES};

/// Checks a blob name: 1–1024 characters, no control characters or backslashes, and no empty,
/// `.` or `..` segments (HTTP clients would rewrite those URLs before sending them).
///
/// # Errors
/// [`BlobError::InvalidName`].
pub fn validate_name(name: &str) -> Result<(), BlobError> {
    let invalid = |why: &str| Err(BlobError::InvalidName(why.to_owned()));
    if name.is_empty() || name.chars().count() > MAX_BLOB_NAME_CHARS {
        return invalid("a blob name has 1 to 1024 characters");
    }
    if name.chars().any(|c| c.is_control() || c == '\\') {
        return invalid("control characters and backslashes are not allowed");
    }
    if name.split('/').any(|segment| matches!(segment, "" | "." | "..")) {
        return invalid("empty, '.' and '..' path segments are not allowed");
    }
    Ok(())
}

/// Checks a block id: base64 of at most 64 bytes.
///
/// # Errors
/// [`BlobError::InvalidBlockId`].
pub fn validate_block_id(id: &str) -> Result<(), BlobError> {
    // Standard padded base64, checked by hand (the core has no base64 dependency).
    let bytes = id.as_bytes();
    let padding = bytes.iter().rev().take_while(|&&b| b == b'=').count();
    let body = &bytes[..bytes.len() - padding];
    let well_formed = !bytes.is_empty()
        && bytes.len().is_multiple_of(4)
        && padding <= 2
        && body
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'+' || *b == b'/');
    let decoded = bytes.len() / 4 * 3 - padding;
    if well_formed && decoded <= MAX_BLOCK_ID_BYTES {
        Ok(())
    } else {
        Err(BlobError::InvalidBlockId)
    }
}

/// Percent-encodes a blob name for a URL path, keeping `/` and unreserved characters.
pub(super) fn encode_path(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for byte in name.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~/".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_validated() {
        assert!(validate_name("dev1/file.txt").is_ok());
        assert!(validate_name("dev1/a b/c.txt").is_ok());
        for bad in [
            "",
            "dev1/../x",
            "dev1//x",
            "dev1/./x",
            "/x",
            "x/",
            "dev\u{1}/x",
            "a\\b",
        ] {
            assert!(validate_name(bad).is_err(), "{bad:?}");
        }
        assert!(validate_name(&"x".repeat(1025)).is_err());
    }

    #[test]
    fn block_ids_are_base64_of_at_most_64_bytes() {
        assert!(validate_block_id("AAAA").is_ok());
        assert!(validate_block_id("not base64!").is_err());
        assert!(validate_block_id(&"QUFB".repeat(22)).is_err());
    }

    #[test]
    fn uris_encode_the_name() {
        assert_eq!(encode_path("dev1/a b#.txt"), "dev1/a%20b%23.txt");
    }
}
