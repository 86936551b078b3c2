//! The server's configuration: plain structs with defaults, loaded from an optional TOML file,
//! then the `OUTPOST_*` environment overlay, then command-line flags (applied by the binary).
//! Loading is a pure function of the text and the environment map, so it is testable.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Errors loading the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The TOML text does not parse or has unknown keys.
    #[error("invalid configuration file")]
    Parse(#[source] toml::de::Error),
    /// An `OUTPOST_*` variable holds a value of the wrong type.
    #[error("environment variable {name} is invalid: {reason}")]
    Env {
        /// The variable.
        name: String,
        /// Why.
        reason: String,
    },
    /// A value is out of range or inconsistent.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// The whole configuration (`config/outpost.example.toml` lists every option).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OutpostConfig {
    /// Format version of this file.
    pub version: u32,
    /// Where hubs, identities, TLS material and the operator token live.
    pub data_dir: PathBuf,
    /// Hub defaults.
    pub hub: HubConfig,
    /// The HTTPS listener (service REST API).
    pub https: HttpsConfig,
    /// The MQTT listener (devices).
    pub mqtt: MqttConfig,
    /// The AMQP listener (the built-in Event Hubs-compatible endpoint).
    pub amqp: AmqpConfig,
    /// The operator API listener.
    pub operator: OperatorConfig,
    /// The telemetry log.
    pub event_log: EventLogConfig,
    /// File uploads: the built-in blob endpoint's limits, or an external store.
    pub file_upload: FileUploadConfig,
    /// TLS certificates.
    pub tls: TlsConfig,
    /// Logging.
    pub log: LogConfig,
    /// Delivery to routing endpoints (webhook trust, dead threshold).
    pub endpoints: EndpointsConfig,
    /// Message routing of named hubs (`[[routing]]`, see [`crate::routing_config`]).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub routing: Vec<crate::routing_config::HubRouting>,
}

/// Hub defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HubConfig {
    /// Host name of the hub created on first start.
    pub default_host_name: String,
    /// New hubs created without a host name get `<name>.<domain>`.
    pub domain: String,
    /// Partitions of the built-in Event Hubs-compatible endpoint of new hubs (fixed at creation).
    pub partition_count: u32,
}

/// The HTTPS listener.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpsConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Most concurrent connections; more wait to be accepted.
    pub max_connections: usize,
}

/// The MQTT listener: MQTT 3.1.1 over TLS for devices and modules.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MqttConfig {
    /// Address to listen on (the Python device SDK only connects to 8883).
    pub listen: SocketAddr,
    /// Most concurrent connections; more wait to be accepted.
    pub max_connections: usize,
    /// Connects admitted per second per hub; more get CONNACK 3 (0: no limit).
    pub max_connects_per_second: u32,
}

impl Default for MqttConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 8883)),
            max_connections: 100_000,
            max_connects_per_second: 0,
        }
    }
}

/// The AMQP listeners: the built-in Event Hubs-compatible endpoint (AMQP 1.0).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AmqpConfig {
    /// Address of the TLS listener (the SDKs connect to 5671).
    pub listen: SocketAddr,
    /// Address of a plain TCP listener for `UseDevelopmentEmulator=true` clients (none by default).
    pub plain_listen: Option<SocketAddr>,
    /// Most concurrent connections per listener; more wait to be accepted.
    pub max_connections: usize,
}

impl Default for AmqpConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 5671)),
            plain_listen: None,
            max_connections: 10_000,
        }
    }
}

/// The telemetry log behind the built-in Event Hubs-compatible endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EventLogConfig {
    /// Messages older than this are dropped (whole segments at a time).
    pub retention_hours: u64,
    /// A partition keeps at most this many MiB; the oldest segments go first.
    pub max_partition_mib: u64,
}

impl Default for EventLogConfig {
    fn default() -> Self {
        Self {
            retention_hours: 24,
            max_partition_mib: 10 * 1024,
        }
    }
}

/// File uploads (`POST /devices/{id}/files`): limits of the built-in blob endpoint
/// (`https://<hub host>/fileuploads/<device>/<name>`), retention, and an optional external store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FileUploadConfig {
    /// Largest blob, in bytes (Put Blob, or the sum of a block list).
    pub max_blob_bytes: u64,
    /// Largest total per hub, committed blobs and uncommitted blocks, in bytes.
    pub max_hub_bytes: u64,
    /// Largest block of Put Block, in bytes.
    pub max_block_bytes: u64,
    /// Uploaded blobs older than this are deleted, in hours.
    pub retention_hours: u64,
    /// Lifetime of the SAS URI handed to a device, in seconds.
    pub sas_ttl_secs: u64,
    /// Upload to an external Azure-compatible store (Azure Storage, Azurite) instead.
    pub external: Option<ExternalStoreConfig>,
}

impl Default for FileUploadConfig {
    fn default() -> Self {
        let defaults = outpost_core::BlobSettings::default();
        Self {
            max_blob_bytes: defaults.max_blob_bytes,
            max_hub_bytes: defaults.max_hub_bytes,
            max_block_bytes: defaults.max_block_bytes,
            retention_hours: defaults.retention.as_secs() / 3600,
            sas_ttl_secs: defaults.sas_ttl.as_secs(),
            external: None,
        }
    }
}

/// An external blob store devices upload to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExternalStoreConfig {
    /// `host[:port][/path]` put after `https://` in upload URIs (Azurite:
    /// `127.0.0.1:10000/devstoreaccount1`; Azure: `<account>.blob.core.windows.net`).
    pub endpoint: String,
    /// The storage account name.
    pub account: String,
    /// The account key (base64).
    pub key: String,
    /// The container uploads go to.
    pub container: String,
}

impl FileUploadConfig {
    /// Returns the core's settings.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] when a limit is zero or the external key is not base64.
    pub fn blob_settings(&self) -> Result<outpost_core::BlobSettings, ConfigError> {
        if self.max_blob_bytes == 0
            || self.max_hub_bytes == 0
            || self.max_block_bytes == 0
            || self.sas_ttl_secs == 0
        {
            return Err(ConfigError::Invalid(
                "file_upload limits and sas_ttl_secs must be at least 1".into(),
            ));
        }
        let external = match &self.external {
            Some(external) => {
                let key = outpost_auth::SymmetricKey::try_new(external.key.clone())
                    .map_err(|e| ConfigError::Invalid(format!("file_upload.external.key: {e}")))?;
                Some(outpost_core::blobs::ExternalStore {
                    endpoint: external.endpoint.trim_end_matches('/').to_owned(),
                    account: external.account.clone(),
                    key: key.decoded().to_vec(),
                    container: external.container.clone(),
                })
            }
            None => None,
        };
        Ok(outpost_core::BlobSettings {
            max_blob_bytes: self.max_blob_bytes,
            max_hub_bytes: self.max_hub_bytes,
            max_block_bytes: self.max_block_bytes,
            retention: std::time::Duration::from_secs(self.retention_hours.saturating_mul(3600)),
            sas_ttl: std::time::Duration::from_secs(self.sas_ttl_secs),
            external,
            ..outpost_core::BlobSettings::default()
        })
    }
}

/// The operator API listener.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OperatorConfig {
    /// Address to listen on (loopback by default: the API manages every hub).
    pub listen: SocketAddr,
}

/// TLS certificates. Without `cert` and `key`, Outpost issues its own from a development CA in
/// `<data_dir>/tls`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain supplied by the operator.
    pub cert: Option<PathBuf>,
    /// PEM private key supplied by the operator.
    pub key: Option<PathBuf>,
    /// How often the certificate files are checked for changes, in seconds.
    pub reload_interval_secs: u64,
}

/// Delivery to routing endpoints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EndpointsConfig {
    /// PEM CA certificates webhook endpoints trust for `https://` URLs, besides the development
    /// CA (there is no platform root store: air-gapped servers name what they trust).
    pub webhook_ca_file: Option<PathBuf>,
    /// Seconds an endpoint fails without interruption before it is reported dead (still retried).
    pub dead_after_secs: u64,
}

impl Default for EndpointsConfig {
    fn default() -> Self {
        Self {
            webhook_ca_file: None,
            dead_after_secs: 300,
        }
    }
}

/// Logging.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `text` or `json`.
    pub format: String,
    /// A tracing filter such as `info` or `outpost_http=debug,info`.
    pub level: String,
}

impl Default for OutpostConfig {
    fn default() -> Self {
        Self {
            version: 1,
            data_dir: PathBuf::from("outpost-data"),
            hub: HubConfig::default(),
            https: HttpsConfig::default(),
            mqtt: MqttConfig::default(),
            amqp: AmqpConfig::default(),
            operator: OperatorConfig::default(),
            event_log: EventLogConfig::default(),
            file_upload: FileUploadConfig::default(),
            tls: TlsConfig::default(),
            log: LogConfig::default(),
            endpoints: EndpointsConfig::default(),
            routing: Vec::new(),
        }
    }
}

impl Default for HubConfig {
    fn default() -> Self {
        Self {
            default_host_name: "localhost".into(),
            domain: "localhost".into(),
            partition_count: 4,
        }
    }
}

impl Default for HttpsConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 443)),
            max_connections: 10_000,
        }
    }
}

impl Default for OperatorConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8089)),
        }
    }
}

impl Default for TlsConfig {
    fn default() -> Self {
        Self {
            cert: None,
            key: None,
            reload_interval_secs: 10,
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: "text".into(),
            level: "info".into(),
        }
    }
}

/// Options that may be unset, so that they are missing from the default table but still
/// reachable from the environment.
const OPTIONAL_LEAVES: [(&str, &str); 3] = [("tls", "cert"), ("tls", "key"), ("amqp", "plain_listen")];

impl OutpostConfig {
    /// Parses `text` (absent: all defaults), applies `OUTPOST_<SECTION>_<KEY>` (and
    /// `OUTPOST_DATA_DIR`) from `env`, and validates the result.
    ///
    /// # Errors
    /// [`ConfigError`] for unknown keys, wrong types or invalid values.
    pub fn load(text: Option<&str>, env: &HashMap<String, String>) -> Result<Self, ConfigError> {
        let parsed: Self = toml::from_str(text.unwrap_or_default()).map_err(ConfigError::Parse)?;
        let mut table = toml::Table::try_from(&parsed).map_err(|e| ConfigError::Invalid(e.to_string()))?;
        let defaults =
            toml::Table::try_from(Self::default()).map_err(|e| ConfigError::Invalid(e.to_string()))?;
        for (key, default) in &defaults {
            match default {
                toml::Value::Table(section) => {
                    let leaves: Vec<(String, Option<&toml::Value>)> = section
                        .iter()
                        .map(|(leaf, value)| (leaf.clone(), Some(value)))
                        .chain(
                            OPTIONAL_LEAVES
                                .iter()
                                .filter(|(s, _)| s == key)
                                .map(|(_, leaf)| ((*leaf).to_owned(), None)),
                        )
                        .collect();
                    for (leaf, default_value) in leaves {
                        let name = format!("OUTPOST_{}_{}", key.to_uppercase(), leaf.to_uppercase());
                        if let Some(raw) = env.get(&name) {
                            let value = env_value(&name, raw, default_value)?;
                            if let Some(toml::Value::Table(section)) = table.get_mut(key) {
                                section.insert(leaf, value);
                            }
                        }
                    }
                }
                scalar => {
                    let name = format!("OUTPOST_{}", key.to_uppercase());
                    if let Some(raw) = env.get(&name) {
                        table.insert(key.clone(), env_value(&name, raw, Some(scalar))?);
                    }
                }
            }
        }
        let config: Self = table.try_into().map_err(|e: toml::de::Error| ConfigError::Env {
            name: "OUTPOST_*".into(),
            reason: e.to_string(),
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks values that serde cannot.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`].
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.version != 1 {
            return Err(ConfigError::Invalid(format!(
                "unsupported version {}",
                self.version
            )));
        }
        if self.tls.cert.is_some() != self.tls.key.is_some() {
            return Err(ConfigError::Invalid(
                "tls.cert and tls.key must be given together".into(),
            ));
        }
        if !(1..=128).contains(&self.hub.partition_count) {
            return Err(ConfigError::Invalid(
                "hub.partition_count must be between 1 and 128".into(),
            ));
        }
        self.file_upload.blob_settings()?;
        crate::routing_config::check(&self.routing).map_err(|e| ConfigError::Invalid(e.to_string()))?;
        if !matches!(self.log.format.as_str(), "text" | "json") {
            return Err(ConfigError::Invalid("log.format must be text or json".into()));
        }
        if self.https.max_connections == 0 || self.mqtt.max_connections == 0 || self.amqp.max_connections == 0
        {
            return Err(ConfigError::Invalid(
                "https.max_connections, mqtt.max_connections and amqp.max_connections must be at least 1"
                    .into(),
            ));
        }
        Ok(())
    }

    /// Renders the configuration as TOML (`outpost config show`).
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render the configuration: {e}\n"))
    }
}

fn env_value(name: &str, raw: &str, like: Option<&toml::Value>) -> Result<toml::Value, ConfigError> {
    let invalid = |reason: &str| ConfigError::Env {
        name: name.to_owned(),
        reason: reason.to_owned(),
    };
    Ok(match like {
        Some(toml::Value::Integer(_)) => {
            toml::Value::Integer(raw.parse().map_err(|_| invalid("expected an integer"))?)
        }
        Some(toml::Value::Boolean(_)) => {
            toml::Value::Boolean(raw.parse().map_err(|_| invalid("expected true or false"))?)
        }
        _ => toml::Value::String(raw.to_owned()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn example_file_lists_every_option_with_its_default() {
        let text = include_str!("../../../config/outpost.example.toml");
        assert_eq!(
            OutpostConfig::load(Some(text), &HashMap::new()).unwrap(),
            OutpostConfig::default()
        );
    }

    #[test]
    fn environment_overrides_the_file() {
        let config = OutpostConfig::load(
            Some("data_dir = \"/from/file\"\n[https]\nlisten = \"127.0.0.1:8443\"\n"),
            &env(&[
                ("OUTPOST_DATA_DIR", "/from/env"),
                ("OUTPOST_HUB_PARTITION_COUNT", "8"),
                ("OUTPOST_TLS_CERT", "/c.pem"),
                ("OUTPOST_TLS_KEY", "/k.pem"),
                ("OUTPOST_UNRELATED", "x"),
            ]),
        )
        .unwrap();
        assert_eq!(config.data_dir, PathBuf::from("/from/env"));
        assert_eq!(config.https.listen, "127.0.0.1:8443".parse().unwrap());
        assert_eq!(config.hub.partition_count, 8);
        assert_eq!(config.tls.cert, Some(PathBuf::from("/c.pem")));
    }

    #[test]
    fn amqp_plain_listener_is_off_unless_set() {
        assert_eq!(OutpostConfig::default().amqp.plain_listen, None);
        let config =
            OutpostConfig::load(None, &env(&[("OUTPOST_AMQP_PLAIN_LISTEN", "127.0.0.1:5672")])).unwrap();
        assert_eq!(config.amqp.plain_listen, Some("127.0.0.1:5672".parse().unwrap()));
    }

    #[test]
    fn file_upload_defaults_and_external_store() {
        let settings = OutpostConfig::default().file_upload.blob_settings().unwrap();
        assert_eq!(settings, outpost_core::BlobSettings::default());
        let config = OutpostConfig::load(
            Some(
                "[file_upload]\nmax_blob_bytes = 1024\n[file_upload.external]\nendpoint = \"127.0.0.1:10000/devstoreaccount1/\"\naccount = \"devstoreaccount1\"\nkey = \"Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==\"\ncontainer = \"uploads\"\n",
            ),
            &env(&[("OUTPOST_FILE_UPLOAD_RETENTION_HOURS", "1")]),
        )
        .unwrap();
        let settings = config.file_upload.blob_settings().unwrap();
        assert_eq!(settings.max_blob_bytes, 1024);
        assert_eq!(settings.retention, std::time::Duration::from_secs(3600));
        let external = settings.external.unwrap();
        assert_eq!(external.endpoint, "127.0.0.1:10000/devstoreaccount1");
        assert_eq!(external.key.len(), 64);
        assert!(OutpostConfig::load(Some("[file_upload]\nmax_blob_bytes = 0\n"), &HashMap::new()).is_err());
    }

    #[test]
    fn bad_values_are_reported() {
        assert!(OutpostConfig::load(Some("nope = 1"), &HashMap::new()).is_err());
        assert!(OutpostConfig::load(None, &env(&[("OUTPOST_HUB_PARTITION_COUNT", "many")])).is_err());
        assert!(OutpostConfig::load(None, &env(&[("OUTPOST_TLS_CERT", "/only-cert.pem")])).is_err());
        assert!(OutpostConfig::load(None, &env(&[("OUTPOST_HTTPS_LISTEN", "not an address")])).is_err());
    }
}
