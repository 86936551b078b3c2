//! Validated identifiers. Each is a cheap-to-clone newtype that can only hold a valid value.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::ModelError;

macro_rules! id_newtype {
    ($(#[$doc:meta])* $name:ident, $kind:literal, $validate:path) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(Arc<str>);

        impl $name {
            /// Validates `value` and wraps it.
            ///
            /// # Errors
            /// [`ModelError::InvalidId`] when `value` breaks the syntax.
            pub fn new(value: &str) -> Result<Self, ModelError> {
                $validate(value).map_err(|reason| ModelError::InvalidId {
                    kind: $kind,
                    value: truncate_for_message(value),
                    reason,
                })?;
                Ok(Self(Arc::from(value)))
            }

            /// Returns the identifier as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), &*self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl std::str::FromStr for $name {
            type Err = ModelError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::new(s)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let value = String::deserialize(deserializer)?;
                Self::new(&value).map_err(serde::de::Error::custom)
            }
        }
    };
}

id_newtype!(
    /// A device id: up to 128 ASCII alphanumerics and `- . + % _ # * ? ! ( ) , : = @ $ '` (Azure's
    /// identity registry set; device SDKs cannot use `+` and `#` over MQTT, where they are wildcards).
    DeviceId,
    "device id",
    validate_identity_id
);
id_newtype!(
    /// A module id: the same syntax as a device id.
    ModuleId,
    "module id",
    validate_identity_id
);
id_newtype!(
    /// A hub name: 1 to 50 lowercase ASCII letters, digits and `-`, starting and ending with a
    /// letter or digit. It is the first DNS label of the hub's host name, which is how the Event
    /// Hubs conventions (`<policy>@sas.root.<hub>`, entity path) name the hub.
    HubName,
    "hub name",
    validate_hub_name
);
id_newtype!(
    /// A shared access policy name: up to 64 ASCII alphanumerics and `- . _`.
    PolicyName,
    "policy name",
    validate_policy_name
);

id_newtype!(
    /// A routing endpoint name: 1 to 64 ASCII letters, digits and `- _ .`, starting with a letter
    /// or digit (Azure's rule for endpoint names). `events` is the built-in endpoint;
    /// `fileNotifications`, `operationsMonitoringEvents` and `$default` are reserved by Azure.
    EndpointName,
    "endpoint name",
    validate_endpoint_name
);
id_newtype!(
    /// The name of one event log: a hub's own log (`<hub>`, the messages it accepted) or one of its
    /// custom event streams (`<hub>.<endpoint>`). Hub names have no `.`, so the split is unique.
    LogName,
    "log name",
    validate_log_name
);

impl EndpointName {
    /// The built-in Event Hubs-compatible endpoint.
    pub const BUILT_IN: &'static str = "events";

    /// Returns whether this is the built-in endpoint `events`.
    pub fn is_built_in(&self) -> bool {
        self.as_str() == Self::BUILT_IN
    }
}

impl LogName {
    /// The hub's own log (shares the hub name's string: no allocation per append).
    pub fn hub(hub: &HubName) -> Self {
        Self(hub.0.clone())
    }

    /// The log of a hub's custom event stream.
    pub fn stream(hub: &HubName, endpoint: &EndpointName) -> Self {
        Self(Arc::from(format!("{hub}.{endpoint}")))
    }

    /// Returns the hub the log belongs to.
    pub fn hub_name(&self) -> HubName {
        let hub = self.0.split('.').next().unwrap_or_default();
        HubName(Arc::from(hub))
    }

    /// Returns the stream's endpoint name, or `None` for a hub's own log.
    pub fn stream_name(&self) -> Option<&str> {
        self.0.split_once('.').map(|(_, stream)| stream)
    }
}

impl From<&HubName> for LogName {
    fn from(hub: &HubName) -> Self {
        Self::hub(hub)
    }
}

id_newtype!(
    /// A consumer group of a hub's built-in Event Hubs-compatible endpoint: 1 to 50 ASCII letters,
    /// digits and `. _ -` (Azure's rule), or the reserved `$Default`. Azure compares them
    /// case-insensitively: use [`ConsumerGroupName::matches`].
    ConsumerGroupName,
    "consumer group name",
    validate_consumer_group_name
);

/// The consumer group every hub has and that cannot be deleted.
pub const DEFAULT_CONSUMER_GROUP: &str = "$Default";

impl ConsumerGroupName {
    /// Returns `$Default`.
    pub fn default_group() -> Self {
        Self(Arc::from(DEFAULT_CONSUMER_GROUP))
    }

    /// Returns whether `name` names this group (case-insensitive, as on Azure).
    pub fn matches(&self, name: &str) -> bool {
        self.0.eq_ignore_ascii_case(name)
    }

    /// Returns whether this is `$Default`.
    pub fn is_default(&self) -> bool {
        self.matches(DEFAULT_CONSUMER_GROUP)
    }
}

fn validate_consumer_group_name(value: &str) -> Result<(), &'static str> {
    if value.eq_ignore_ascii_case(DEFAULT_CONSUMER_GROUP) {
        return Ok(());
    }
    if value.is_empty() || value.len() > 50 {
        return Err("must be 1 to 50 characters");
    }
    if !value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
    {
        return Err("only ASCII letters, digits and . _ - are allowed");
    }
    Ok(())
}

/// Longest device or module id Azure accepts.
pub const MAX_IDENTITY_ID_LEN: usize = 128;

fn validate_identity_id(value: &str) -> Result<(), &'static str> {
    if value.is_empty() {
        return Err("must not be empty");
    }
    if value.len() > MAX_IDENTITY_ID_LEN {
        return Err("longer than 128 characters");
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || "-.+%_#*?!(),:=@$'".contains(c);
    if !value.chars().all(allowed) {
        return Err("only ASCII letters, digits and - . + % _ # * ? ! ( ) , : = @ $ ' are allowed");
    }
    Ok(())
}

fn validate_hub_name(value: &str) -> Result<(), &'static str> {
    if value.is_empty() || value.len() > 50 {
        return Err("must be 1 to 50 characters");
    }
    if !value
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        return Err("only lowercase letters, digits and - are allowed");
    }
    if value.starts_with('-') || value.ends_with('-') {
        return Err("must start and end with a letter or digit");
    }
    Ok(())
}

/// Endpoint names Azure reserves for itself (compared case-insensitively).
const RESERVED_ENDPOINT_NAMES: [&str; 3] = ["fileNotifications", "operationsMonitoringEvents", "$default"];

fn validate_endpoint_name(value: &str) -> Result<(), &'static str> {
    if value.is_empty() || value.len() > 64 {
        return Err("must be 1 to 64 characters");
    }
    if RESERVED_ENDPOINT_NAMES
        .iter()
        .any(|name| name.eq_ignore_ascii_case(value))
    {
        return Err("the name is reserved");
    }
    if !value.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err("must start with a letter or digit");
    }
    if !value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        return Err("only ASCII letters, digits and - _ . are allowed");
    }
    Ok(())
}

fn validate_log_name(value: &str) -> Result<(), &'static str> {
    match value.split_once('.') {
        None => validate_hub_name(value),
        Some((hub, stream)) => {
            validate_hub_name(hub)?;
            validate_endpoint_name(stream)
        }
    }
}

fn validate_policy_name(value: &str) -> Result<(), &'static str> {
    if value.is_empty() || value.len() > 64 {
        return Err("must be 1 to 64 characters");
    }
    if !value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-._".contains(c))
    {
        return Err("only ASCII letters, digits and - . _ are allowed");
    }
    Ok(())
}

/// Keeps error messages bounded when a client sends a huge id.
fn truncate_for_message(value: &str) -> String {
    const MAX: usize = 160;
    if value.len() <= MAX {
        return value.to_owned();
    }
    let mut end = MAX;
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &value[..end])
}

/// An entity tag as Azure writes it (base64 text, no quotes). `If-Match` values are compared
/// after stripping quotes; `*` matches anything.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Etag(String);

impl Etag {
    /// Wraps an already-formed etag.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// Returns the etag of a revision counter, in the base64-of-8-bytes form Azure uses for twins
    /// (`AAAAAAAAAAE=` is revision 1).
    pub fn from_revision(revision: u64) -> Self {
        use base64::Engine as _;
        Self(base64::engine::general_purpose::STANDARD.encode(revision.to_be_bytes()))
    }

    /// Returns a fresh random etag (identity etags change on every identity write).
    pub fn generate() -> Self {
        use base64::Engine as _;
        let bytes: [u8; 8] = rand::random();
        Self(base64::engine::general_purpose::STANDARD.encode(bytes))
    }

    /// Returns the etag as text, without quotes.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Returns whether an `If-Match` header value (quoted or not, or `*`) matches this etag.
    pub fn matches_if_match(&self, if_match: &str) -> bool {
        let wanted = if_match.trim();
        let wanted = wanted.strip_prefix("W/").unwrap_or(wanted);
        let wanted = wanted
            .strip_prefix('"')
            .and_then(|w| w.strip_suffix('"'))
            .unwrap_or(wanted);
        wanted == "*" || wanted == self.0
    }
}

impl fmt::Display for Etag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Etag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Etag({})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_id_accepts_azure_special_characters() {
        for id in [
            "dev1",
            "a-b.c%d_e*f?g!h(i)j,k:l=m@n$o'p",
            "a+b#c",
            &"x".repeat(128),
        ] {
            assert!(DeviceId::new(id).is_ok(), "{id}");
        }
    }

    #[test]
    fn device_id_rejects_forbidden_characters_and_length() {
        for id in ["", "a b", "a/b", "a&b", "a;b", "a\\b", "é", &"x".repeat(129)] {
            assert!(DeviceId::new(id).is_err(), "{id}");
        }
    }

    #[test]
    fn hub_name_is_a_dns_label() {
        assert!(HubName::new("localhost").is_ok());
        assert!(HubName::new("plant-1").is_ok());
        for bad in ["", "-a", "a-", "Upper", "a.b", &"a".repeat(51)] {
            assert!(HubName::new(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn endpoint_and_log_names() {
        for good in ["events", "alerts", "Hot.Path_2", &"x".repeat(64)] {
            assert!(EndpointName::new(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "-a",
            "a b",
            "a/b",
            "fileNotifications",
            "$default",
            &"x".repeat(65),
        ] {
            assert!(EndpointName::new(bad).is_err(), "{bad}");
        }
        let hub = HubName::new("plant-1").unwrap();
        let stream = LogName::stream(&hub, &EndpointName::new("Hot.Path").unwrap());
        assert_eq!(stream.as_str(), "plant-1.Hot.Path");
        assert_eq!(stream.hub_name(), hub);
        assert_eq!(stream.stream_name(), Some("Hot.Path"));
        assert_eq!(LogName::hub(&hub).stream_name(), None);
        assert_eq!(LogName::new("plant-1.Hot.Path").unwrap(), stream);
        assert!(LogName::new("Plant.x").is_err() && LogName::new("plant.").is_err());
    }

    #[test]
    fn consumer_group_names_follow_azure() {
        for good in ["$Default", "$default", "cg1", "a.b_c-D", &"x".repeat(50)] {
            assert!(ConsumerGroupName::new(good).is_ok(), "{good}");
        }
        for bad in ["", "$other", "a b", "a/b", "é", &"x".repeat(51)] {
            assert!(ConsumerGroupName::new(bad).is_err(), "{bad}");
        }
        let name = ConsumerGroupName::new("Readers").unwrap();
        assert!(name.matches("readers") && !name.is_default());
        assert!(ConsumerGroupName::new("$DEFAULT").unwrap().is_default());
    }

    #[test]
    fn huge_invalid_id_is_truncated_in_the_message() {
        let err = DeviceId::new(&"&".repeat(10_000)).unwrap_err();
        assert!(err.to_string().len() < 400);
    }

    #[test]
    fn etag_if_match_accepts_quoted_unquoted_and_star() {
        let etag = Etag::from_revision(1);
        assert_eq!(etag.as_str(), "AAAAAAAAAAE=");
        assert!(etag.matches_if_match("\"AAAAAAAAAAE=\""));
        assert!(etag.matches_if_match("AAAAAAAAAAE="));
        assert!(etag.matches_if_match("\"*\""));
        assert!(etag.matches_if_match("*"));
        assert!(!etag.matches_if_match("\"AAAAAAAAAAI=\""));
    }

    #[test]
    fn ids_round_trip_through_serde_and_reject_invalid() {
        let id: DeviceId = serde_json::from_str("\"dev1\"").unwrap();
        assert_eq!(serde_json::to_string(&id).unwrap(), "\"dev1\"");
        assert!(serde_json::from_str::<DeviceId>("\"a b\"").is_err());
    }
}
