//! `[[routing]]` in the configuration file: a hub's whole routing configuration (endpoints,
//! routes, fallback route, enrichments), in the same camelCase shape as the operator API's
//! `GET /hubs/{hub}/routing`, plus `hub = "<name>"`. Applied at every start, after the hubs
//! exist: a hub named here gets exactly this configuration (what the API stored for it is
//! replaced); other hubs keep theirs.
//!
//! ```toml
//! [[routing]]
//! hub = "localhost"
//! [[routing.endpoints]]
//! name = "hot"
//! type = "eventStream"
//! partitionCount = 2
//! [[routing.routes]]
//! name = "hot"
//! source = "DeviceMessages"
//! condition = "$body.temp > 30"
//! endpointNames = ["hot"]
//! [routing.fallbackRoute]
//! isEnabled = true
//! ```

use std::collections::HashSet;

use outpost_core::routing::RoutingConfig;
use outpost_core::{CoreError, Outpost};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

/// One `[[routing]]` entry.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HubRouting {
    /// The hub's name.
    pub hub: String,
    /// Its routing configuration.
    #[serde(flatten)]
    pub config: RoutingConfig,
}

impl<'de> Deserialize<'de> for HubRouting {
    /// Reads the entry strictly: an unknown or misspelt key is an error, as everywhere else in
    /// the file (a route whose `condition` key is misspelt would otherwise take every message).
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut value = Value::deserialize(deserializer)?;
        let Value::Object(fields) = &mut value else {
            return Err(serde::de::Error::custom("a [[routing]] entry must be a table"));
        };
        let hub = match fields.remove("hub") {
            Some(Value::String(hub)) => hub,
            Some(_) => return Err(serde::de::Error::custom("[[routing]] hub must be a string")),
            None => {
                return Err(serde::de::Error::custom(
                    "a [[routing]] entry needs hub = \"<name>\"",
                ));
            }
        };
        let config = outpost_http::routing::parse_strict(&value)
            .map_err(|reason| serde::de::Error::custom(format!("[[routing]] of hub '{hub}': {reason}")))?;
        Ok(Self { hub, config })
    }
}

/// Why the file's routing could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum RoutingFileError {
    /// `[[routing]]` names a hub that does not exist.
    #[error("[[routing]] names hub '{0}', which does not exist (create it first, or fix the name)")]
    UnknownHub(String),
    /// Two entries name the same hub.
    #[error("[[routing]] names hub '{0}' twice")]
    Duplicate(String),
    /// The hub's configuration was refused (the reason names the route or endpoint).
    #[error("[[routing]] of hub '{hub}' is invalid: {source}")]
    Invalid {
        /// The hub.
        hub: String,
        /// Why.
        #[source]
        source: CoreError,
    },
}

/// Checks what can be checked without the hubs: one entry per hub.
///
/// # Errors
/// [`RoutingFileError::Duplicate`].
pub fn check(entries: &[HubRouting]) -> Result<(), RoutingFileError> {
    let mut seen = HashSet::new();
    for entry in entries {
        if !seen.insert(entry.hub.to_ascii_lowercase()) {
            return Err(RoutingFileError::Duplicate(entry.hub.clone()));
        }
    }
    Ok(())
}

/// Gives every hub named in `entries` its configuration from the file (unchanged ones are not
/// written again).
///
/// # Errors
/// An unknown hub, or a configuration [`outpost_core::routing::Routing::set_config`] refuses.
pub async fn apply(outpost: &Outpost, entries: &[HubRouting]) -> Result<(), RoutingFileError> {
    check(entries)?;
    for entry in entries {
        let hub = outpost
            .hubs
            .by_name(&entry.hub)
            .ok_or_else(|| RoutingFileError::UnknownHub(entry.hub.clone()))?;
        if outpost.routing.config(&hub.name) == entry.config {
            continue;
        }
        outpost
            .routing
            .set_config(hub.name.as_str(), entry.config.clone())
            .await
            .map_err(|source| RoutingFileError::Invalid {
                hub: entry.hub.clone(),
                source,
            })?;
        tracing::info!(
            hub = %hub.name,
            routes = entry.config.routes.len(),
            endpoints = entry.config.endpoints.len(),
            "routing configuration applied from the configuration file"
        );
    }
    Ok(())
}
