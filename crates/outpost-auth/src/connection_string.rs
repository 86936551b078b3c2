//! Azure connection strings, `Key=Value;Key=Value` (wire reference §1.3), and typed views of the three
//! kinds Outpost hands out: service, device and Event Hubs-compatible.
//!
//! The format has no escaping: a value cannot contain `;`, and `Display` of a view whose fields
//! contain one produces a string that does not parse back.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use crate::{AuthError, SymmetricKey};

const HOST_NAME: &str = "HostName";
const DEVICE_ID: &str = "DeviceId";
const MODULE_ID: &str = "ModuleId";
const SHARED_ACCESS_KEY_NAME: &str = "SharedAccessKeyName";
const SHARED_ACCESS_KEY: &str = "SharedAccessKey";
const GATEWAY_HOST_NAME: &str = "GatewayHostName";
const X509: &str = "x509";
const ENDPOINT: &str = "Endpoint";
const ENTITY_PATH: &str = "EntityPath";
const USE_DEVELOPMENT_EMULATOR: &str = "UseDevelopmentEmulator";

/// The fields of any connection string, by key.
///
/// Keys are case-sensitive, as in Azure; whitespace around segments, keys and values is trimmed; empty
/// segments are skipped. Values may contain `=` (base64 padding). `Debug` shows the keys only, since
/// values include secrets.
#[derive(Clone, PartialEq, Eq)]
pub struct ConnectionString<'a> {
    fields: BTreeMap<&'a str, &'a str>,
}

impl<'a> ConnectionString<'a> {
    /// Splits `text` into its fields.
    ///
    /// # Errors
    ///
    /// [`AuthError::MalformedConnectionStringSegment`] for a segment without `=` or with an empty key,
    /// [`AuthError::DuplicateConnectionStringKey`] for a key given twice.
    pub fn parse(text: &'a str) -> Result<Self, AuthError> {
        let mut fields = BTreeMap::new();
        for (index, segment) in text.split(';').enumerate() {
            let segment = segment.trim();
            if segment.is_empty() {
                continue;
            }
            let (key, value) = segment
                .split_once('=')
                .map(|(key, value)| (key.trim_end(), value.trim_start()))
                .filter(|(key, _)| !key.is_empty())
                .ok_or(AuthError::MalformedConnectionStringSegment { index })?;
            if fields.insert(key, value).is_some() {
                return Err(AuthError::DuplicateConnectionStringKey { key: key.to_owned() });
            }
        }
        Ok(Self { fields })
    }

    /// Returns the value of `key`, if present (possibly empty).
    pub fn get(&self, key: &str) -> Option<&'a str> {
        self.fields.get(key).copied()
    }

    /// Returns the fields as `(key, value)` pairs, ordered by key.
    pub fn iter(&self) -> impl Iterator<Item = (&'a str, &'a str)> + '_ {
        self.fields.iter().map(|(key, value)| (*key, *value))
    }

    /// Returns the non-empty value of `key`.
    fn required(&self, key: &'static str) -> Result<&'a str, AuthError> {
        self.optional(key)
            .ok_or(AuthError::MissingConnectionStringKey { key })
    }

    /// Returns the value of `key` unless it is absent or empty.
    fn optional(&self, key: &str) -> Option<&'a str> {
        self.get(key).filter(|value| !value.is_empty())
    }

    /// Reads `true`/`false` in any case; absent or empty is `false`.
    fn flag(&self, key: &'static str) -> Result<bool, AuthError> {
        match self.optional(key) {
            None => Ok(false),
            Some(value) if value.eq_ignore_ascii_case("true") => Ok(true),
            Some(value) if value.eq_ignore_ascii_case("false") => Ok(false),
            Some(_) => Err(AuthError::MalformedConnectionStringValue {
                key,
                reason: "is not `true` or `false`",
                source: None,
            }),
        }
    }

    /// Reads `SharedAccessKey` as a validated key, if present.
    fn shared_access_key(&self) -> Result<Option<SymmetricKey>, AuthError> {
        self.optional(SHARED_ACCESS_KEY)
            .map(|key| {
                SymmetricKey::try_new(key).map_err(|source| AuthError::MalformedConnectionStringValue {
                    key: SHARED_ACCESS_KEY,
                    reason: "is not a valid shared access key",
                    source: Some(Box::new(source)),
                })
            })
            .transpose()
    }
}

impl fmt::Debug for ConnectionString<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionString")
            .field("keys", &self.fields.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// A service (shared access policy) connection string:
/// `HostName=…;SharedAccessKeyName=…;SharedAccessKey=…`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceConnectionString {
    /// The hub's host name, with `:port` if not the default.
    pub host_name: String,
    /// The shared access policy name, e.g. `iothubowner`.
    pub key_name: String,
    /// The policy's key.
    pub key: SymmetricKey,
}

impl ServiceConnectionString {
    /// Parses a service connection string; other keys are ignored.
    ///
    /// # Errors
    ///
    /// Any error of [`ConnectionString::parse`], [`AuthError::MissingConnectionStringKey`] for a missing or
    /// empty `HostName`, `SharedAccessKeyName` or `SharedAccessKey`, and
    /// [`AuthError::MalformedConnectionStringValue`] for an invalid key.
    pub fn parse(text: &str) -> Result<Self, AuthError> {
        let fields = ConnectionString::parse(text)?;
        Ok(Self {
            host_name: fields.required(HOST_NAME)?.to_owned(),
            key_name: fields.required(SHARED_ACCESS_KEY_NAME)?.to_owned(),
            key: fields
                .shared_access_key()?
                .ok_or(AuthError::MissingConnectionStringKey {
                    key: SHARED_ACCESS_KEY,
                })?,
        })
    }
}

impl fmt::Display for ServiceConnectionString {
    /// Writes the canonical Azure form, key included.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{HOST_NAME}={};{SHARED_ACCESS_KEY_NAME}={};{SHARED_ACCESS_KEY}={}",
            self.host_name,
            self.key_name,
            self.key.as_str()
        )
    }
}

impl FromStr for ServiceConnectionString {
    type Err = AuthError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// A device or module connection string:
/// `HostName=…;DeviceId=…[;ModuleId=…];SharedAccessKey=…[;GatewayHostName=…]`, or `x509=true` in place
/// of the key.
///
/// Exactly one of `key` and `x509` is set on a parsed value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceConnectionString {
    /// The hub's host name, with `:port` if not the default; signed into `sr`.
    pub host_name: String,
    /// The device id.
    pub device_id: String,
    /// The module id, for a module identity.
    pub module_id: Option<String>,
    /// The device's (or module's) key, for SAS authentication.
    pub key: Option<SymmetricKey>,
    /// Whether the device authenticates with an X.509 client certificate instead.
    pub x509: bool,
    /// Where to connect instead of `host_name` (an edge gateway or another port); `sr` still uses `host_name`.
    pub gateway_host_name: Option<String>,
}

impl DeviceConnectionString {
    /// Parses a device or module connection string; other keys are ignored.
    ///
    /// # Errors
    ///
    /// Any error of [`ConnectionString::parse`]; [`AuthError::MissingConnectionStringKey`] for a missing
    /// `HostName` or `DeviceId`, or when there is neither `SharedAccessKey` nor `x509=true`;
    /// [`AuthError::ConflictingConnectionStringKeys`] when there are both;
    /// [`AuthError::MalformedConnectionStringValue`] for an invalid key or a non-boolean `x509`.
    pub fn parse(text: &str) -> Result<Self, AuthError> {
        let fields = ConnectionString::parse(text)?;
        let host_name = fields.required(HOST_NAME)?.to_owned();
        let device_id = fields.required(DEVICE_ID)?.to_owned();
        let key = fields.shared_access_key()?;
        let x509 = fields.flag(X509)?;
        match (&key, x509) {
            (Some(_), true) => {
                return Err(AuthError::ConflictingConnectionStringKeys {
                    first: SHARED_ACCESS_KEY,
                    second: X509,
                });
            }
            (None, false) => {
                return Err(AuthError::MissingConnectionStringKey {
                    key: SHARED_ACCESS_KEY,
                });
            }
            _ => {}
        }
        Ok(Self {
            host_name,
            device_id,
            module_id: fields.optional(MODULE_ID).map(str::to_owned),
            key,
            x509,
            gateway_host_name: fields.optional(GATEWAY_HOST_NAME).map(str::to_owned),
        })
    }
}

impl fmt::Display for DeviceConnectionString {
    /// Writes the canonical Azure form, key included.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{HOST_NAME}={};{DEVICE_ID}={}", self.host_name, self.device_id)?;
        if let Some(module_id) = &self.module_id {
            write!(f, ";{MODULE_ID}={module_id}")?;
        }
        if let Some(key) = &self.key {
            write!(f, ";{SHARED_ACCESS_KEY}={}", key.as_str())?;
        }
        if self.x509 {
            write!(f, ";{X509}=true")?;
        }
        if let Some(gateway) = &self.gateway_host_name {
            write!(f, ";{GATEWAY_HOST_NAME}={gateway}")?;
        }
        Ok(())
    }
}

impl FromStr for DeviceConnectionString {
    type Err = AuthError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// An Event Hubs-compatible endpoint connection string:
/// `Endpoint=sb://host[:port]/;SharedAccessKeyName=…;SharedAccessKey=…[;EntityPath=…][;UseDevelopmentEmulator=true]`.
///
/// Event Hubs clients sign with the UTF-8 of [`key`](Self::key)'s text
/// ([`KeyEncoding::RawString`](crate::KeyEncoding::RawString)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventHubConnectionString {
    /// The namespace endpoint as given, e.g. `sb://localhost/`.
    pub endpoint: String,
    /// The shared access policy name.
    pub key_name: String,
    /// The policy's key (Outpost's policy keys, so validated like every other key).
    pub key: SymmetricKey,
    /// The event hub name, when the string is scoped to one.
    pub entity_path: Option<String>,
    /// Whether clients should use plain AMQP without TLS (wire reference §7.5).
    pub use_development_emulator: bool,
}

impl EventHubConnectionString {
    /// Parses an Event Hubs connection string; other keys are ignored.
    ///
    /// # Errors
    ///
    /// Any error of [`ConnectionString::parse`], [`AuthError::MissingConnectionStringKey`] for a missing
    /// `Endpoint`, `SharedAccessKeyName` or `SharedAccessKey`, and
    /// [`AuthError::MalformedConnectionStringValue`] for an invalid key or a non-boolean
    /// `UseDevelopmentEmulator`.
    pub fn parse(text: &str) -> Result<Self, AuthError> {
        let fields = ConnectionString::parse(text)?;
        Ok(Self {
            endpoint: fields.required(ENDPOINT)?.to_owned(),
            key_name: fields.required(SHARED_ACCESS_KEY_NAME)?.to_owned(),
            key: fields
                .shared_access_key()?
                .ok_or(AuthError::MissingConnectionStringKey {
                    key: SHARED_ACCESS_KEY,
                })?,
            entity_path: fields.optional(ENTITY_PATH).map(str::to_owned),
            use_development_emulator: fields.flag(USE_DEVELOPMENT_EMULATOR)?,
        })
    }

    /// Returns the `host[:port]` part of the endpoint: what follows `scheme://` up to the next `/`.
    pub fn host(&self) -> &str {
        let rest = self
            .endpoint
            .split_once("://")
            .map_or(self.endpoint.as_str(), |(_, rest)| rest);
        rest.split_once('/').map_or(rest, |(host, _)| host)
    }
}

impl fmt::Display for EventHubConnectionString {
    /// Writes the canonical Azure form, key included.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{ENDPOINT}={};{SHARED_ACCESS_KEY_NAME}={};{SHARED_ACCESS_KEY}={}",
            self.endpoint,
            self.key_name,
            self.key.as_str()
        )?;
        if let Some(entity_path) = &self.entity_path {
            write!(f, ";{ENTITY_PATH}={entity_path}")?;
        }
        if self.use_development_emulator {
            write!(f, ";{USE_DEVELOPMENT_EMULATOR}=true")?;
        }
        Ok(())
    }
}

impl FromStr for EventHubConnectionString {
    type Err = AuthError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

    #[test]
    fn values_keep_their_equals_signs() {
        let text = format!("HostName=h;SharedAccessKey={KEY}");
        let fields = ConnectionString::parse(&text).unwrap();
        assert_eq!(fields.get("SharedAccessKey"), Some(KEY));
        assert_eq!(fields.get("HostName"), Some("h"));
        assert_eq!(fields.get("hostname"), None);
    }

    #[test]
    fn empty_segments_and_surrounding_whitespace_are_tolerated() {
        let fields = ConnectionString::parse(";; HostName = h ;\n;DeviceId=d;\n").unwrap();
        assert_eq!(
            fields.iter().collect::<Vec<_>>(),
            [("DeviceId", "d"), ("HostName", "h")]
        );
        assert_eq!(ConnectionString::parse("").unwrap().iter().count(), 0);
    }

    #[test]
    fn segment_without_key_or_equals_is_rejected_by_position() {
        assert_eq!(
            ConnectionString::parse("HostName=h;garbage"),
            Err(AuthError::MalformedConnectionStringSegment { index: 1 })
        );
        assert_eq!(
            ConnectionString::parse("=value;HostName=h"),
            Err(AuthError::MalformedConnectionStringSegment { index: 0 })
        );
    }

    #[test]
    fn duplicate_key_is_rejected() {
        assert_eq!(
            ConnectionString::parse("HostName=a;DeviceId=d;HostName=b"),
            Err(AuthError::DuplicateConnectionStringKey {
                key: "HostName".to_owned()
            })
        );
        assert!(ConnectionString::parse("HostName=a;hostname=b").is_ok());
    }

    #[test]
    fn debug_shows_keys_but_not_values() {
        let text = format!("HostName=h;SharedAccessKey={KEY}");
        let fields = ConnectionString::parse(&text).unwrap();
        let debug = format!("{fields:?}");
        assert!(
            debug.contains("SharedAccessKey") && !debug.contains(KEY),
            "{debug}"
        );
    }

    #[test]
    fn service_string_round_trips_to_the_canonical_form() {
        let canonical = format!("HostName=localhost;SharedAccessKeyName=iothubowner;SharedAccessKey={KEY}");
        let parsed = ServiceConnectionString::parse(&canonical).unwrap();
        assert_eq!(parsed.host_name, "localhost");
        assert_eq!(parsed.key_name, "iothubowner");
        assert_eq!(parsed.key.as_str(), KEY);
        assert_eq!(parsed.to_string(), canonical);
        let shuffled = format!("SharedAccessKey={KEY};HostName=localhost;SharedAccessKeyName=iothubowner;");
        assert_eq!(
            shuffled.parse::<ServiceConnectionString>().unwrap().to_string(),
            canonical
        );
    }

    #[test]
    fn service_string_without_a_required_key_names_it() {
        for (text, key) in [
            (format!("SharedAccessKeyName=p;SharedAccessKey={KEY}"), "HostName"),
            (format!("HostName=h;SharedAccessKey={KEY}"), "SharedAccessKeyName"),
            ("HostName=h;SharedAccessKeyName=p".to_owned(), "SharedAccessKey"),
            (
                format!("HostName=;SharedAccessKeyName=p;SharedAccessKey={KEY}"),
                "HostName",
            ),
            (
                format!("hostname=h;SharedAccessKeyName=p;SharedAccessKey={KEY}"),
                "HostName",
            ),
        ] {
            assert_eq!(
                ServiceConnectionString::parse(&text),
                Err(AuthError::MissingConnectionStringKey { key }),
                "{text}"
            );
        }
    }

    #[test]
    fn invalid_key_is_reported_with_its_cause() {
        let err = ServiceConnectionString::parse("HostName=h;SharedAccessKeyName=p;SharedAccessKey=ZWhrZXk=")
            .unwrap_err();
        assert!(matches!(
            err,
            AuthError::MalformedConnectionStringValue {
                key: "SharedAccessKey",
                ..
            }
        ));
        assert!(!err.to_string().contains("ZWhrZXk="), "{err}");
        let source = err.source().expect("has a source");
        assert_eq!(source.to_string(), AuthError::KeyLength { len: 5 }.to_string());
    }

    #[test]
    fn device_string_round_trips_with_module_and_gateway() {
        let plain = format!("HostName=localhost:8443;DeviceId=dev1;SharedAccessKey={KEY}");
        let parsed = DeviceConnectionString::parse(&plain).unwrap();
        assert_eq!(parsed.host_name, "localhost:8443");
        assert_eq!(parsed.device_id, "dev1");
        assert_eq!((parsed.module_id.as_deref(), parsed.x509), (None, false));
        assert_eq!(parsed.to_string(), plain);

        let module =
            format!("HostName=h;DeviceId=dev1;ModuleId=mod1;SharedAccessKey={KEY};GatewayHostName=gw:28883");
        let parsed = DeviceConnectionString::parse(&module).unwrap();
        assert_eq!(parsed.module_id.as_deref(), Some("mod1"));
        assert_eq!(parsed.gateway_host_name.as_deref(), Some("gw:28883"));
        assert_eq!(parsed.to_string(), module);
        let shuffled =
            format!("GatewayHostName=gw:28883;SharedAccessKey={KEY};ModuleId=mod1;DeviceId=dev1;HostName=h");
        assert_eq!(DeviceConnectionString::parse(&shuffled).unwrap(), parsed);
    }

    #[test]
    fn x509_device_string_has_no_key() {
        let parsed = DeviceConnectionString::parse("HostName=h;DeviceId=d;x509=True").unwrap();
        assert!(parsed.x509 && parsed.key.is_none());
        assert_eq!(parsed.to_string(), "HostName=h;DeviceId=d;x509=true");
    }

    #[test]
    fn device_string_needs_exactly_one_credential() {
        assert_eq!(
            DeviceConnectionString::parse(&format!("HostName=h;DeviceId=d;SharedAccessKey={KEY};x509=true")),
            Err(AuthError::ConflictingConnectionStringKeys {
                first: "SharedAccessKey",
                second: "x509"
            })
        );
        for text in ["HostName=h;DeviceId=d", "HostName=h;DeviceId=d;x509=false"] {
            assert_eq!(
                DeviceConnectionString::parse(text),
                Err(AuthError::MissingConnectionStringKey {
                    key: "SharedAccessKey"
                })
            );
        }
        assert!(matches!(
            DeviceConnectionString::parse("HostName=h;DeviceId=d;x509=yes"),
            Err(AuthError::MalformedConnectionStringValue { key: "x509", .. })
        ));
        assert_eq!(
            DeviceConnectionString::parse(&format!("HostName=h;SharedAccessKey={KEY}")),
            Err(AuthError::MissingConnectionStringKey { key: "DeviceId" })
        );
    }

    #[test]
    fn event_hub_string_round_trips() {
        let canonical = format!(
            "Endpoint=sb://localhost:15671/;SharedAccessKeyName=service;SharedAccessKey={KEY};EntityPath=myhub"
        );
        let parsed = EventHubConnectionString::parse(&canonical).unwrap();
        assert_eq!(parsed.endpoint, "sb://localhost:15671/");
        assert_eq!(parsed.host(), "localhost:15671");
        assert_eq!(parsed.entity_path.as_deref(), Some("myhub"));
        assert!(!parsed.use_development_emulator);
        assert_eq!(parsed.to_string(), canonical);

        let emulator = format!(
            "Endpoint=sb://localhost/;SharedAccessKeyName=service;SharedAccessKey={KEY};UseDevelopmentEmulator=true"
        );
        let parsed = EventHubConnectionString::parse(&emulator).unwrap();
        assert_eq!(
            (parsed.entity_path.as_deref(), parsed.use_development_emulator),
            (None, true)
        );
        assert_eq!(parsed.host(), "localhost");
        assert_eq!(parsed.to_string(), emulator);
    }

    #[test]
    fn event_hub_string_errors_name_the_key() {
        assert_eq!(
            EventHubConnectionString::parse(&format!("SharedAccessKeyName=s;SharedAccessKey={KEY}")),
            Err(AuthError::MissingConnectionStringKey { key: "Endpoint" })
        );
        assert!(matches!(
            EventHubConnectionString::parse(&format!(
                "Endpoint=sb://h/;SharedAccessKeyName=s;SharedAccessKey={KEY};UseDevelopmentEmulator=1"
            )),
            Err(AuthError::MalformedConnectionStringValue {
                key: "UseDevelopmentEmulator",
                ..
            })
        ));
    }
}
