//! The one error type of the crate.

/// Says why a credential could not be parsed, validated or verified.
///
/// Messages never contain secret material (keys, signatures, connection-string values); they name the
/// field or key that failed instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// A certificate or certificate chain is malformed or does not verify.
    #[error("bad certificate: {reason}")]
    BadCertificate {
        /// Why.
        reason: String,
    },
    /// The token is longer than [`MAX_TOKEN_LEN`](crate::MAX_TOKEN_LEN).
    #[error("sas token is {len} bytes, more than the {max} allowed")]
    TokenTooLong {
        /// Length of the rejected input in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A `&`-separated segment of the token is not `key=value`.
    #[error("sas token segment {index} is not `key=value`")]
    MalformedTokenSegment {
        /// Zero-based position of the segment.
        index: usize,
    },
    /// A known token field holds a value that cannot be parsed.
    #[error("sas token field `{field}` {reason}")]
    MalformedToken {
        /// The field: `sr`, `sig`, `se` or `skn`.
        field: &'static str,
        /// What is wrong with it, as a verb phrase.
        reason: &'static str,
    },
    /// A required token field is absent.
    #[error("sas token has no `{field}` field")]
    MissingTokenField {
        /// The field: `sr`, `sig` or `se`.
        field: &'static str,
    },
    /// A token field appears more than once.
    #[error("sas token has more than one `{field}` field")]
    DuplicateTokenField {
        /// The repeated field.
        field: &'static str,
    },
    /// The token's expiry (`se`) is not after the current time.
    #[error("sas token expired at {expiry}, now is {now}")]
    Expired {
        /// The token's `se`, unix seconds.
        expiry: u64,
        /// The time it was checked against, unix seconds.
        now: u64,
    },
    /// The token's signature is not the HMAC of its resource and expiry under the given key.
    #[error("sas token signature does not match")]
    SignatureMismatch,
    /// A shared access key is not standard padded base64.
    #[error("shared access key is not base64")]
    KeyNotBase64,
    /// A shared access key decodes to a length outside Azure's 16..=64 bytes.
    #[error("shared access key decodes to {len} bytes, expected 16 to 64")]
    KeyLength {
        /// The decoded length.
        len: usize,
    },
    /// An X.509 thumbprint is not 40 or 64 hex digits.
    #[error("thumbprint {reason}")]
    BadThumbprint {
        /// What is wrong with it, as a verb phrase.
        reason: &'static str,
    },
    /// An access-rights list names a right Azure does not define.
    #[error("unknown access right `{name}`")]
    UnknownRight {
        /// The unrecognised name, trimmed.
        name: String,
    },
    /// A `;`-separated segment of a connection string is not `Key=Value`.
    #[error("connection string segment {index} is not `Key=Value`")]
    MalformedConnectionStringSegment {
        /// Zero-based position of the segment.
        index: usize,
    },
    /// A connection string sets the same key twice.
    #[error("connection string has more than one `{key}`")]
    DuplicateConnectionStringKey {
        /// The repeated key.
        key: String,
    },
    /// A connection string lacks a key its kind requires (or sets it empty).
    #[error("connection string has no `{key}`")]
    MissingConnectionStringKey {
        /// The missing key, e.g. `HostName`.
        key: &'static str,
    },
    /// A connection-string value cannot be used.
    #[error("connection string `{key}` {reason}")]
    MalformedConnectionStringValue {
        /// The key whose value is wrong.
        key: &'static str,
        /// What is wrong with it, as a verb phrase.
        reason: &'static str,
        /// The underlying error, when there is one (e.g. a bad key length).
        #[source]
        source: Option<Box<AuthError>>,
    },
    /// A connection string sets two keys that exclude each other.
    #[error("connection string sets both `{first}` and `{second}`")]
    ConflictingConnectionStringKeys {
        /// The first key.
        first: &'static str,
        /// The second key.
        second: &'static str,
    },
}
