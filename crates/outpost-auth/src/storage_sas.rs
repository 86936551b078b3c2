//! Azure Storage **service SAS** for blobs: signing and verifying the query-string tokens the
//! built-in file-upload endpoint accepts (and that Outpost hands to devices for an external,
//! Azure-compatible store such as Azurite).
//!
//! The algorithm is Azure's "Create a service SAS" for `sv` 2020-12-06 and later: the string to
//! sign is, one per line, `sp`, `st`, `se`, the canonical resource `/blob/<account>/<container>[/<blob>]`,
//! `si`, `sip`, `spr`, `sv`, `sr`, the snapshot time, `ses`, `rscc`, `rscd`, `rsce`, `rscl`,
//! `rsct`; `sig` is the base64 HMAC-SHA256 of it under the base64-decoded account key. The
//! canonical resource is built from the *requested* path, so a blob SAS verifies for that blob
//! only and a container SAS for that container only.
//!
//! Pure: no I/O, no clock (the caller passes `now`).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::Mac as _;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use subtle::ConstantTimeEq as _;

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// The `sv` Outpost signs with: the first version of the current string-to-sign layout, which
/// every Azure-compatible store (Azurite included) accepts.
pub const STORAGE_SAS_VERSION: &str = "2020-12-06";

/// Oldest `sv` accepted: older versions sign a different field list.
const MIN_VERSION: &str = "2020-12-06";

/// The query-string length accepted before parsing, far above any real SAS.
const MAX_QUERY_LEN: usize = 8 * 1024;

/// Characters percent-encoded in SAS values, as the Python SDK's `url_quote` does (`/` kept).
const VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'/');

/// Why a storage SAS was refused. Each maps to one Azure Storage error code (see
/// [`StorageSasError::code`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StorageSasError {
    /// A SAS field is missing, repeated or malformed.
    #[error("the shared access signature field `{field}` {reason}")]
    Malformed {
        /// The query parameter.
        field: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// `sv` is older than the versions Outpost verifies.
    #[error("signed version {0} is not supported; use 2020-12-06 or later")]
    UnsupportedVersion(String),
    /// A feature Outpost does not implement (stored access policies, IP ranges, other `sr`).
    #[error("{0} is not supported")]
    Unsupported(&'static str),
    /// The signature is not the HMAC of the request's string to sign.
    #[error("signature did not match")]
    SignatureMismatch,
    /// `se` is not after now.
    #[error("the signature expired")]
    Expired,
    /// `st` is after now.
    #[error("the signature is not valid yet")]
    NotYetValid,
    /// `spr` does not allow HTTPS.
    #[error("the signature does not allow https")]
    ProtocolMismatch,
    /// A blob SAS used for a container operation.
    #[error("the signature's resource type does not cover this operation")]
    ResourceTypeMismatch,
    /// `sp` lacks the permission the operation needs.
    #[error("the signature's permissions do not allow this operation")]
    PermissionMismatch,
}

impl StorageSasError {
    /// Returns Azure Storage's status and error code for the failure.
    pub fn code(&self) -> (u16, &'static str) {
        match self {
            Self::ProtocolMismatch => (403, "AuthorizationProtocolMismatch"),
            Self::ResourceTypeMismatch => (403, "AuthorizationResourceTypeMismatch"),
            Self::PermissionMismatch => (403, "AuthorizationPermissionMismatch"),
            _ => (403, "AuthenticationFailed"),
        }
    }
}

/// What a SAS is scoped to (`sr`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SasResource {
    /// `sr=b`: one blob.
    Blob,
    /// `sr=c`: a container, its blobs and listing them.
    Container,
}

/// One permission a blob operation needs (`sp` letters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SasPermission {
    /// `r`: Get Blob, Get Blob Properties.
    Read,
    /// `a`: add (append blocks).
    Add,
    /// `c`: create a new blob.
    Create,
    /// `w`: write (Put Blob, Put Block, Put Block List).
    Write,
    /// `d`: Delete Blob.
    Delete,
    /// `l`: List Blobs.
    List,
}

impl SasPermission {
    fn letter(self) -> char {
        match self {
            Self::Read => 'r',
            Self::Add => 'a',
            Self::Create => 'c',
            Self::Write => 'w',
            Self::Delete => 'd',
            Self::List => 'l',
        }
    }
}

/// The signed fields of a SAS, decoded, in string-to-sign order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Fields {
    permissions: String,
    start: Option<String>,
    expiry: String,
    identifier: Option<String>,
    ip: Option<String>,
    protocol: Option<String>,
    version: String,
    resource: String,
    snapshot_time: Option<String>,
    encryption_scope: Option<String>,
    cache_control: Option<String>,
    content_disposition: Option<String>,
    content_encoding: Option<String>,
    content_language: Option<String>,
    content_type: Option<String>,
}

impl Fields {
    fn string_to_sign(&self, canonical_resource: &str) -> String {
        let opt = |value: &Option<String>| value.clone().unwrap_or_default();
        [
            self.permissions.clone(),
            opt(&self.start),
            self.expiry.clone(),
            canonical_resource.to_owned(),
            opt(&self.identifier),
            opt(&self.ip),
            opt(&self.protocol),
            self.version.clone(),
            self.resource.clone(),
            opt(&self.snapshot_time),
            opt(&self.encryption_scope),
            opt(&self.cache_control),
            opt(&self.content_disposition),
            opt(&self.content_encoding),
            opt(&self.content_language),
            opt(&self.content_type),
        ]
        .join("\n")
    }
}

/// A parsed storage service SAS from a request's query string.
#[derive(Clone, PartialEq, Eq)]
pub struct StorageSas {
    fields: Fields,
    signature: Vec<u8>,
    resource: SasResource,
    start: Option<i64>,
    expiry: i64,
}

impl std::fmt::Debug for StorageSas {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StorageSas")
            .field("resource", &self.resource)
            .field("permissions", &self.fields.permissions)
            .field("expiry", &self.expiry)
            .finish_non_exhaustive()
    }
}

impl StorageSas {
    /// Parses the SAS fields of a request's query string (other parameters such as `comp`,
    /// `blockid` or `restype` are ignored). Returns `None` when the query has no `sig`: the request
    /// carries no SAS.
    ///
    /// # Errors
    /// [`StorageSasError::Malformed`], [`StorageSasError::UnsupportedVersion`] or
    /// [`StorageSasError::Unsupported`].
    pub fn parse(query: &str) -> Result<Option<Self>, StorageSasError> {
        if query.len() > MAX_QUERY_LEN {
            return Err(malformed("query", "is too long"));
        }
        let mut fields = Fields::default();
        let mut signature = None;
        let mut seen = (None::<String>, None::<String>, None::<String>, None::<String>);
        for pair in query.split('&').filter(|pair| !pair.is_empty()) {
            let (name, raw) = pair.split_once('=').unwrap_or((pair, ""));
            let value = percent_decode_str(raw)
                .decode_utf8()
                .map_err(|_| malformed("query", "is not UTF-8"))?
                .into_owned();
            let slot = match name {
                "sig" => &mut signature,
                "sp" => &mut seen.0,
                "se" => &mut seen.1,
                "sv" => &mut seen.2,
                "sr" => &mut seen.3,
                "st" => &mut fields.start,
                "si" => &mut fields.identifier,
                "sip" => &mut fields.ip,
                "spr" => &mut fields.protocol,
                "ses" => &mut fields.encryption_scope,
                "snapshot" | "versionid" => &mut fields.snapshot_time,
                "rscc" => &mut fields.cache_control,
                "rscd" => &mut fields.content_disposition,
                "rsce" => &mut fields.content_encoding,
                "rscl" => &mut fields.content_language,
                "rsct" => &mut fields.content_type,
                _ => continue,
            };
            if slot.replace(value).is_some() {
                return Err(StorageSasError::Malformed {
                    field: field_name(name),
                    reason: "appears more than once",
                });
            }
        }
        let Some(signature) = signature else {
            return Ok(None);
        };
        let signature = STANDARD
            .decode(signature.as_bytes())
            .map_err(|_| malformed("sig", "is not base64"))?;
        let (Some(permissions), Some(expiry), Some(version), Some(resource)) = seen else {
            return Err(malformed("sp, se, sv or sr", "is missing"));
        };
        if version.as_str() < MIN_VERSION || !is_date(&version) {
            let shown: String = version.chars().take(20).collect();
            return Err(StorageSasError::UnsupportedVersion(shown));
        }
        if fields.identifier.is_some() {
            return Err(StorageSasError::Unsupported("a stored access policy (si)"));
        }
        if fields.ip.is_some() {
            return Err(StorageSasError::Unsupported("a signed IP range (sip)"));
        }
        if fields.snapshot_time.is_some() {
            return Err(StorageSasError::Unsupported("a snapshot or version"));
        }
        let resource_kind = match resource.as_str() {
            "b" => SasResource::Blob,
            "c" => SasResource::Container,
            _ => return Err(StorageSasError::Unsupported("this signed resource (sr)")),
        };
        if permissions.is_empty() || !permissions.chars().all(|c| "racwdxyltmeopi".contains(c)) {
            return Err(malformed("sp", "holds an unknown permission"));
        }
        let expiry_at = parse_time(&expiry).ok_or(malformed("se", "is not an ISO 8601 UTC time"))?;
        let start_at = match &fields.start {
            Some(start) => Some(parse_time(start).ok_or(malformed("st", "is not an ISO 8601 UTC time"))?),
            None => None,
        };
        fields.permissions = permissions;
        fields.expiry = expiry;
        fields.version = version;
        fields.resource = resource;
        Ok(Some(Self {
            fields,
            signature,
            resource: resource_kind,
            start: start_at,
            expiry: expiry_at,
        }))
    }

    /// Returns what the SAS is scoped to.
    pub fn resource(&self) -> SasResource {
        self.resource
    }

    /// Returns the expiry (`se`), unix seconds.
    pub fn expiry(&self) -> i64 {
        self.expiry
    }

    /// Returns the response-header overrides the SAS carries (`rscc`, `rscd`, `rsce`, `rscl`,
    /// `rsct`), as `(header, value)`: Get Blob answers with them.
    pub fn response_overrides(&self) -> Vec<(&'static str, &str)> {
        [
            ("cache-control", &self.fields.cache_control),
            ("content-disposition", &self.fields.content_disposition),
            ("content-encoding", &self.fields.content_encoding),
            ("content-language", &self.fields.content_language),
            ("content-type", &self.fields.content_type),
        ]
        .into_iter()
        .filter_map(|(name, value)| value.as_deref().map(|value| (name, value)))
        .collect()
    }

    /// Verifies the SAS for a request on `container` (and `blob`, `None` for a container
    /// operation such as List Blobs) of storage account `account`, at `now_unix` seconds, needing
    /// `permission`. The comparison of signatures is constant-time; the time window and the
    /// permission are checked only after the signature verified.
    ///
    /// # Errors
    /// The [`StorageSasError`] Azure would report.
    pub fn verify(
        &self,
        key: &[u8],
        account: &str,
        container: &str,
        blob: Option<&str>,
        permission: SasPermission,
        now_unix: i64,
    ) -> Result<(), StorageSasError> {
        let canonical = match (self.resource, blob) {
            (SasResource::Blob, Some(blob)) => format!("/blob/{account}/{container}/{blob}"),
            (SasResource::Blob, None) => return Err(StorageSasError::ResourceTypeMismatch),
            (SasResource::Container, _) => format!("/blob/{account}/{container}"),
        };
        let expected = hmac(key, self.fields.string_to_sign(&canonical).as_bytes());
        if !bool::from(expected.as_slice().ct_eq(&self.signature)) {
            return Err(StorageSasError::SignatureMismatch);
        }
        if self.start.is_some_and(|start| start > now_unix) {
            return Err(StorageSasError::NotYetValid);
        }
        if self.expiry <= now_unix {
            return Err(StorageSasError::Expired);
        }
        if let Some(protocol) = &self.fields.protocol
            && !protocol.split(',').any(|p| p.trim() == "https")
        {
            return Err(StorageSasError::ProtocolMismatch);
        }
        if !self.fields.permissions.contains(permission.letter()) {
            return Err(StorageSasError::PermissionMismatch);
        }
        Ok(())
    }
}

/// Returns a blob service SAS (`sr=b`) for `/<container>/<blob>` of `account`, without the
/// leading `?`: `sv=…&sr=b&sig=…&se=…&sp=…`. `blob` is the decoded blob name.
pub fn blob_sas_query(
    key: &[u8],
    account: &str,
    container: &str,
    blob: &str,
    permissions: &str,
    expiry_unix_seconds: i64,
) -> String {
    sign_query(
        key,
        &format!("/blob/{account}/{container}/{blob}"),
        "b",
        permissions,
        expiry_unix_seconds,
    )
}

/// Returns a container service SAS (`sr=c`) for `container` of `account`, without the leading
/// `?`.
pub fn container_sas_query(
    key: &[u8],
    account: &str,
    container: &str,
    permissions: &str,
    expiry_unix_seconds: i64,
) -> String {
    sign_query(
        key,
        &format!("/blob/{account}/{container}"),
        "c",
        permissions,
        expiry_unix_seconds,
    )
}

/// Derives the key that signs a hub's file-upload SAS tokens from a policy key (the hub's
/// `iothubowner` primary key): `HMAC-SHA256(policy key, "outpost-file-upload:" + hub)`.
/// Rotating that policy key therefore revokes every outstanding upload URI.
pub fn file_upload_key(policy_key: &[u8], hub: &str) -> [u8; 32] {
    hmac(policy_key, format!("outpost-file-upload:{hub}").as_bytes())
}

fn sign_query(key: &[u8], canonical: &str, resource: &str, permissions: &str, expiry_unix: i64) -> String {
    let fields = Fields {
        permissions: permissions.to_owned(),
        expiry: format_time(expiry_unix),
        version: STORAGE_SAS_VERSION.to_owned(),
        resource: resource.to_owned(),
        ..Fields::default()
    };
    let signature = STANDARD.encode(hmac(key, fields.string_to_sign(canonical).as_bytes()));
    format!(
        "sv={}&sr={resource}&sig={}&se={}&sp={}",
        fields.version,
        utf8_percent_encode(&signature, VALUE),
        utf8_percent_encode(&fields.expiry, VALUE),
        utf8_percent_encode(permissions, VALUE),
    )
}

fn hmac(key: &[u8], message: &[u8]) -> [u8; 32] {
    // HMAC accepts keys of any length; the fallback is unreachable and never signs anything real.
    let mut mac = <HmacSha256 as hmac::Mac>::new_from_slice(key)
        .unwrap_or_else(|_| <HmacSha256 as hmac::Mac>::new(&Default::default()));
    mac.update(message);
    mac.finalize().into_bytes().into()
}

fn malformed(field: &'static str, reason: &'static str) -> StorageSasError {
    StorageSasError::Malformed { field, reason }
}

fn field_name(name: &str) -> &'static str {
    match name {
        "sig" => "sig",
        "sp" => "sp",
        "se" => "se",
        "sv" => "sv",
        "sr" => "sr",
        "st" => "st",
        "si" => "si",
        "sip" => "sip",
        "spr" => "spr",
        "ses" => "ses",
        _ => "a response-header override",
    }
}

fn is_date(text: &str) -> bool {
    text.len() == 10
        && text.bytes().enumerate().all(|(i, b)| {
            if i == 4 || i == 7 {
                b == b'-'
            } else {
                b.is_ascii_digit()
            }
        })
}

/// Formats unix seconds as `YYYY-MM-DDTHH:MM:SSZ`, the `se` form the SDKs produce.
pub fn format_time(unix: i64) -> String {
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// Parses the ISO 8601 UTC forms Azure accepts for `st`/`se`: `YYYY-MM-DD`,
/// `YYYY-MM-DDTHH:MMZ`, `YYYY-MM-DDTHH:MM:SSZ`, with optional fractional seconds.
fn parse_time(text: &str) -> Option<i64> {
    let (date, time) = match text.split_once('T') {
        Some((date, time)) => (date, Some(time.strip_suffix('Z')?)),
        None => (text, None),
    };
    if !is_date(date) {
        return None;
    }
    let number = |s: &str| -> Option<i64> {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    let (year, month, day) = (number(&date[0..4])?, number(&date[5..7])?, number(&date[8..10])?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    let mut seconds = 0;
    if let Some(time) = time {
        let mut parts = time.split(':');
        let hours = number(parts.next()?)?;
        let minutes = number(parts.next()?)?;
        let secs = match parts.next() {
            Some(secs) => number(secs.split('.').next()?)?,
            None => 0,
        };
        if parts.next().is_some() || hours > 23 || minutes > 59 || secs > 60 {
            return None;
        }
        seconds = hours * 3600 + minutes * 60 + secs;
    }
    Some(days_from_civil(year, month, day) * 86_400 + seconds)
}

// Howard Hinnant's civil-date algorithms (proleptic Gregorian), public domain.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "test code")]
mod tests {
    use super::*;

    /// `base64(bytes 0..32)`, the key of the known answers below.
    const KEY_B64: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    /// 2030-01-02T03:04:05Z.
    const EXPIRY: i64 = 1_893_553_445;

    fn key() -> Vec<u8> {
        STANDARD.decode(KEY_B64).unwrap()
    }

    // Known answers computed once with azure-storage-blob 12.31.1 (compat/python/.venv):
    //   s = BlobSharedAccessSignature("myhub", KEY_B64); s.x_ms_version = "2020-12-06"
    //   s.generate_blob("fileuploads", "dev1/photo 1.jpg", permission="rw",
    //                   expiry="2030-01-02T03:04:05Z", protocol="https")
    //   s.generate_container("fileuploads", permission="rl", expiry="2030-01-02T03:04:05Z",
    //                        start="2029-12-31T00:00:00Z")
    //   generate_blob_sas("myhub", "fileuploads", "dev1/a.txt", account_key=KEY_B64,
    //                     permission="r", expiry="2030-01-02T03:04:05Z")   # sv = 2026-10-06
    //   s.generate_blob("fileuploads", "dev1/a.txt", permission="rw", expiry="2030-01-02T03:04:05Z")
    //   s.generate_container("fileuploads", permission="rl", expiry="2030-01-02T03:04:05Z")
    const PY_BLOB: &str = "se=2030-01-02T03%3A04%3A05Z&sp=rw&spr=https&sv=2020-12-06&sr=b&sig=nSzlR31xg0N3xVz5IWFPFS/N01G/oPQVhDgvVkyFNes%3D";
    const PY_CONTAINER: &str = "st=2029-12-31T00%3A00%3A00Z&se=2030-01-02T03%3A04%3A05Z&sp=rl&sv=2020-12-06&sr=c&sig=SvlFwPraccp3EImEla1UCEyNl23ixwLPRj2TGCfXN4A%3D";
    const PY_BLOB_LATEST: &str = "se=2030-01-02T03%3A04%3A05Z&sp=r&sv=2026-10-06&sr=b&sig=ItjpKk0D5mwD8QyKkE6erfTaFUDtJuv8Kywkg9DszD4%3D";

    const PY_OURS_BLOB: &str = "se=2030-01-02T03%3A04%3A05Z&sp=rw&sv=2020-12-06&sr=b&sig=IKPd/ND2LWQslMowvrJa3pdfXAH5%2B2CgR49yWVsYjCg%3D";
    const PY_OURS_CONTAINER: &str = "se=2030-01-02T03%3A04%3A05Z&sp=rl&sv=2020-12-06&sr=c&sig=H%2BMphvLiJMp8ju5lnDkh00FebLxEq%2Btemo651c7bxiw%3D";

    const NOW: i64 = EXPIRY - 3600;

    #[test]
    fn signing_matches_the_python_sdk() {
        // Same key, account, path, permissions, expiry and sv as PY_OURS_*: byte-identical sig.
        let blob = blob_sas_query(&key(), "myhub", "fileuploads", "dev1/a.txt", "rw", EXPIRY);
        assert_eq!(
            blob,
            "sv=2020-12-06&sr=b&sig=IKPd/ND2LWQslMowvrJa3pdfXAH5%2B2CgR49yWVsYjCg%3D&se=2030-01-02T03%3A04%3A05Z&sp=rw"
        );
        assert_eq!(
            StorageSas::parse(&blob).unwrap(),
            StorageSas::parse(PY_OURS_BLOB).unwrap()
        );
        let container = container_sas_query(&key(), "myhub", "fileuploads", "rl", EXPIRY);
        assert_eq!(
            container,
            "sv=2020-12-06&sr=c&sig=H%2BMphvLiJMp8ju5lnDkh00FebLxEq%2Btemo651c7bxiw%3D&se=2030-01-02T03%3A04%3A05Z&sp=rl"
        );
        assert_eq!(
            StorageSas::parse(&container).unwrap(),
            StorageSas::parse(PY_OURS_CONTAINER).unwrap()
        );
        // A token of the SDK's latest sv verifies too (same string-to-sign layout).
        StorageSas::parse(PY_BLOB_LATEST)
            .unwrap()
            .unwrap()
            .verify(
                &key(),
                "myhub",
                "fileuploads",
                Some("dev1/a.txt"),
                SasPermission::Read,
                NOW,
            )
            .unwrap();
    }

    #[test]
    fn python_tokens_verify_for_their_resource_only() {
        let blob = StorageSas::parse(PY_BLOB).unwrap().unwrap();
        let ok = |name: &str, p| blob.verify(&key(), "myhub", "fileuploads", Some(name), p, NOW);
        ok("dev1/photo 1.jpg", SasPermission::Write).unwrap();
        ok("dev1/photo 1.jpg", SasPermission::Read).unwrap();
        assert_eq!(
            ok("dev2/photo 1.jpg", SasPermission::Read),
            Err(StorageSasError::SignatureMismatch)
        );
        assert_eq!(
            ok("dev1/photo 1.jpg", SasPermission::Delete),
            Err(StorageSasError::PermissionMismatch)
        );
        assert_eq!(
            blob.verify(&key(), "myhub", "fileuploads", None, SasPermission::List, NOW),
            Err(StorageSasError::ResourceTypeMismatch)
        );
        assert_eq!(
            blob.verify(
                &key(),
                "otherhub",
                "fileuploads",
                Some("dev1/photo 1.jpg"),
                SasPermission::Read,
                NOW
            ),
            Err(StorageSasError::SignatureMismatch)
        );
        assert_eq!(
            blob.verify(
                &[7; 32],
                "myhub",
                "fileuploads",
                Some("dev1/photo 1.jpg"),
                SasPermission::Read,
                NOW
            ),
            Err(StorageSasError::SignatureMismatch)
        );

        let container = StorageSas::parse(PY_CONTAINER).unwrap().unwrap();
        container
            .verify(&key(), "myhub", "fileuploads", None, SasPermission::List, NOW)
            .unwrap();
        container
            .verify(
                &key(),
                "myhub",
                "fileuploads",
                Some("any/blob"),
                SasPermission::Read,
                NOW,
            )
            .unwrap();
        assert_eq!(
            container.verify(&key(), "myhub", "fileuploads", None, SasPermission::Write, NOW),
            Err(StorageSasError::PermissionMismatch)
        );
        // st = 2029-12-31T00:00:00Z.
        assert_eq!(
            container.verify(
                &key(),
                "myhub",
                "fileuploads",
                None,
                SasPermission::List,
                1_893_369_599
            ),
            Err(StorageSasError::NotYetValid)
        );
        assert_eq!(
            container.verify(&key(), "myhub", "fileuploads", None, SasPermission::List, EXPIRY),
            Err(StorageSasError::Expired)
        );
    }

    #[test]
    fn our_blob_sas_verifies_and_is_bound_to_its_path() {
        let query = blob_sas_query(&key(), "hub", "fileuploads", "dev1/x y+z.bin", "rw", EXPIRY);
        assert!(query.starts_with("sv=2020-12-06&sr=b&sig="), "{query}");
        let sas = StorageSas::parse(&query).unwrap().unwrap();
        assert_eq!(sas.expiry(), EXPIRY);
        sas.verify(
            &key(),
            "hub",
            "fileuploads",
            Some("dev1/x y+z.bin"),
            SasPermission::Write,
            NOW,
        )
        .unwrap();
        assert!(
            sas.verify(
                &key(),
                "hub",
                "fileuploads",
                Some("dev1/x y+z.bim"),
                SasPermission::Write,
                NOW
            )
            .is_err()
        );
    }

    #[test]
    fn malformed_and_unsupported_tokens_are_refused() {
        assert_eq!(StorageSas::parse("comp=list&restype=container").unwrap(), None);
        let cases = [
            "sig=%%%&sp=r&se=2030-01-01&sv=2020-12-06&sr=b",
            "sig=AAAA&se=2030-01-01&sv=2020-12-06&sr=b",
            "sig=AAAA&sp=r&se=tomorrow&sv=2020-12-06&sr=b",
            "sig=AAAA&sp=r&se=2030-01-01&sv=2019-02-02&sr=b",
            "sig=AAAA&sp=r&se=2030-01-01&sv=2020-12-06&sr=bs",
            "sig=AAAA&sp=r&se=2030-01-01&sv=2020-12-06&sr=b&si=policy",
            "sig=AAAA&sp=r&se=2030-01-01&sv=2020-12-06&sr=b&sip=1.2.3.4",
            "sig=AAAA&sp=rq&se=2030-01-01&sv=2020-12-06&sr=b",
            "sig=AAAA&sig=AAAA&sp=r&se=2030-01-01&sv=2020-12-06&sr=b",
        ];
        for case in cases {
            assert!(StorageSas::parse(case).is_err(), "{case}");
        }
    }

    #[test]
    fn times_round_trip() {
        assert_eq!(format_time(EXPIRY), "2030-01-02T03:04:05Z");
        assert_eq!(parse_time("2030-01-02T03:04:05Z"), Some(EXPIRY));
        assert_eq!(parse_time("2030-01-02T03:04:05.1234567Z"), Some(EXPIRY));
        assert_eq!(parse_time("2030-01-02T03:04Z"), Some(EXPIRY - 5));
        assert_eq!(parse_time("1970-01-01"), Some(0));
        assert_eq!(parse_time("2024-02-29T00:00:00Z"), Some(1_709_164_800));
        assert_eq!(format_time(1_709_164_800), "2024-02-29T00:00:00Z");
        assert_eq!(parse_time("2030-13-01"), None);
        assert_eq!(parse_time("2030-01-02T03:04:05"), None);
    }

    #[test]
    fn file_upload_keys_differ_per_hub_and_policy_key() {
        assert_ne!(file_upload_key(&[1; 32], "a"), file_upload_key(&[1; 32], "b"));
        assert_ne!(file_upload_key(&[1; 32], "a"), file_upload_key(&[2; 32], "a"));
        assert_eq!(file_upload_key(&[1; 32], "a"), file_upload_key(&[1; 32], "a"));
    }
}
