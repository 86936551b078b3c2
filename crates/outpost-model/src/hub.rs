//! Hubs (tenants) and their shared access policies.

use outpost_auth::{Rights, SymmetricKey};
use serde::{Deserialize, Serialize};

use crate::{ConsumerGroupName, HubName, ModelError, PolicyName, Timestamp};

/// One IoT hub served by this Outpost server. Every record belongs to exactly one hub.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Hub {
    /// The hub's name: the first DNS label of `host_name`.
    pub name: HubName,
    /// The host name devices and services connect to; requests are routed to the hub by it.
    pub host_name: String,
    /// Partitions of the built-in Event Hubs-compatible endpoint, fixed at creation.
    pub partition_count: u32,
    /// When the hub was created.
    pub created: Timestamp,
    /// The hub's shared access policies.
    pub policies: Vec<SharedAccessPolicy>,
    /// CA certificates that devices with `certificateAuthority` authentication chain to.
    #[serde(default)]
    pub certificates: Vec<HubCertificate>,
    /// Consumer groups of the built-in endpoint besides `$Default`, which every hub has.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub consumer_groups: Vec<ConsumerGroup>,
}

/// A consumer group of the built-in Event Hubs-compatible endpoint (IoT Hub's
/// `eventHubEndpoints/events/consumerGroups`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConsumerGroup {
    /// The name, as created.
    pub name: ConsumerGroupName,
    /// When it was created (`$Default`: with the hub).
    pub created: Timestamp,
}

/// Most consumer groups a hub has, `$Default` included (Azure's standard tiers allow 20).
pub const MAX_CONSUMER_GROUPS: usize = 20;

/// A CA certificate registered on a hub (IoT Hub's "certificates"), kept as PEM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HubCertificate {
    /// The certificate's name on the hub.
    pub name: String,
    /// The PEM text.
    pub pem: String,
}

/// Allowed partition counts of the built-in endpoint (Azure allows 2 to 128).
pub const PARTITION_COUNT_RANGE: std::ops::RangeInclusive<u32> = 1..=128;

impl Hub {
    /// Builds a new hub with Azure's five standard policies and fresh random keys.
    ///
    /// # Errors
    /// When the host name is not a valid DNS name whose first label equals `name`, or the
    /// partition count is out of range.
    pub fn new(name: HubName, host_name: &str, partition_count: u32) -> Result<Self, ModelError> {
        validate_host_name(&name, host_name)?;
        if !PARTITION_COUNT_RANGE.contains(&partition_count) {
            return Err(ModelError::InvalidField {
                field: "partitionCount",
                reason: format!("must be between 1 and 128, not {partition_count}"),
            });
        }
        Ok(Self {
            name,
            host_name: host_name.to_ascii_lowercase(),
            partition_count,
            created: Timestamp::now(),
            policies: SharedAccessPolicy::standard_set(),
            certificates: Vec::new(),
            consumer_groups: Vec::new(),
        })
    }

    /// Returns the consumer group named `name` (case-insensitive), `$Default` included.
    pub fn consumer_group(&self, name: &str) -> Option<ConsumerGroup> {
        self.consumer_groups()
            .into_iter()
            .find(|group| group.name.matches(name))
    }

    /// Returns every consumer group: `$Default` first, then the others in creation order.
    pub fn consumer_groups(&self) -> Vec<ConsumerGroup> {
        let default = ConsumerGroup {
            name: ConsumerGroupName::default_group(),
            created: self.created,
        };
        std::iter::once(default)
            .chain(self.consumer_groups.iter().cloned())
            .collect()
    }

    /// Adds a consumer group; returns `false` when one of that name exists already (it is kept).
    ///
    /// # Errors
    /// [`ModelError::InvalidField`] when the hub has [`MAX_CONSUMER_GROUPS`] already.
    pub fn add_consumer_group(
        &mut self,
        name: ConsumerGroupName,
        now: Timestamp,
    ) -> Result<bool, ModelError> {
        if self.consumer_group(name.as_str()).is_some() {
            return Ok(false);
        }
        if self.consumer_groups.len() + 1 >= MAX_CONSUMER_GROUPS {
            return Err(ModelError::InvalidField {
                field: "consumerGroups",
                reason: format!("a hub has at most {MAX_CONSUMER_GROUPS} consumer groups, $Default included"),
            });
        }
        self.consumer_groups.push(ConsumerGroup { name, created: now });
        Ok(true)
    }

    /// Removes a consumer group; returns `false` when there is none of that name.
    ///
    /// # Errors
    /// [`ModelError::InvalidField`] for `$Default`, which every hub keeps.
    pub fn remove_consumer_group(&mut self, name: &str) -> Result<bool, ModelError> {
        if ConsumerGroupName::default_group().matches(name) {
            return Err(ModelError::InvalidField {
                field: "name",
                reason: "the $Default consumer group cannot be deleted".into(),
            });
        }
        let before = self.consumer_groups.len();
        self.consumer_groups.retain(|group| !group.name.matches(name));
        Ok(self.consumer_groups.len() != before)
    }

    /// Returns the policy named `name`, compared case-insensitively as Azure does.
    pub fn policy(&self, name: &str) -> Option<&SharedAccessPolicy> {
        self.policies
            .iter()
            .find(|p| p.key_name.as_str().eq_ignore_ascii_case(name))
    }
}

fn validate_host_name(name: &HubName, host_name: &str) -> Result<(), ModelError> {
    let invalid = |reason: String| ModelError::InvalidField {
        field: "hostName",
        reason,
    };
    if host_name.is_empty() || host_name.len() > 253 {
        return Err(invalid("must be 1 to 253 characters".into()));
    }
    for label in host_name.split('.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !ok {
            return Err(invalid(format!("'{host_name}' is not a DNS name")));
        }
    }
    let first = host_name.split('.').next().unwrap_or_default();
    if !first.eq_ignore_ascii_case(name.as_str()) {
        return Err(invalid(format!(
            "the first label of '{host_name}' must be the hub name '{name}'"
        )));
    }
    Ok(())
}

/// A shared access policy: a named pair of keys granting rights on the hub.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SharedAccessPolicy {
    /// The policy's name (`skn` in SAS tokens, `SharedAccessKeyName` in connection strings).
    pub key_name: PolicyName,
    /// The primary key.
    pub primary_key: SymmetricKey,
    /// The secondary key.
    pub secondary_key: SymmetricKey,
    /// What holders of the keys may do.
    pub rights: Rights,
}

impl SharedAccessPolicy {
    /// Builds a policy with fresh random keys.
    pub fn generate(key_name: PolicyName, rights: Rights) -> Self {
        Self {
            key_name,
            primary_key: SymmetricKey::generate(),
            secondary_key: SymmetricKey::generate(),
            rights,
        }
    }

    /// Returns Azure's standard policies: iothubowner, service, device, registryRead and
    /// registryReadWrite, each with fresh random 256-bit keys.
    pub fn standard_set() -> Vec<Self> {
        let standard = [
            (
                "iothubowner",
                Rights::REGISTRY_READ
                    | Rights::REGISTRY_WRITE
                    | Rights::SERVICE_CONNECT
                    | Rights::DEVICE_CONNECT,
            ),
            ("service", Rights::SERVICE_CONNECT),
            ("device", Rights::DEVICE_CONNECT),
            ("registryRead", Rights::REGISTRY_READ),
            (
                "registryReadWrite",
                Rights::REGISTRY_READ | Rights::REGISTRY_WRITE,
            ),
        ];
        standard
            .into_iter()
            .map(|(name, rights)| {
                Self::generate(
                    PolicyName::new(name).expect("standard policy names are valid"),
                    rights,
                )
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_hub_has_the_five_standard_policies_with_distinct_keys() {
        let hub = Hub::new(HubName::new("localhost").unwrap(), "localhost", 4).unwrap();
        let names: Vec<_> = hub.policies.iter().map(|p| p.key_name.as_str()).collect();
        assert_eq!(
            names,
            [
                "iothubowner",
                "service",
                "device",
                "registryRead",
                "registryReadWrite"
            ]
        );
        let mut keys: Vec<_> = hub
            .policies
            .iter()
            .flat_map(|p| [p.primary_key.as_str(), p.secondary_key.as_str()])
            .collect();
        keys.sort_unstable();
        keys.dedup();
        assert_eq!(keys.len(), 10);
        assert!(hub.policy("IOTHUBOWNER").is_some());
    }

    #[test]
    fn consumer_groups_default_add_remove_and_limit() {
        let mut hub = Hub::new(HubName::new("h").unwrap(), "h", 2).unwrap();
        let names = |hub: &Hub| -> Vec<String> {
            hub.consumer_groups()
                .iter()
                .map(|group| group.name.to_string())
                .collect()
        };
        assert_eq!(names(&hub), ["$Default"]);
        assert!(hub.consumer_group("$default").is_some());
        let now = Timestamp::now();
        let readers = ConsumerGroupName::new("Readers").unwrap();
        assert!(hub.add_consumer_group(readers, now).unwrap());
        assert!(
            !hub.add_consumer_group(ConsumerGroupName::new("readers").unwrap(), now)
                .unwrap()
        );
        assert!(
            !hub.add_consumer_group(ConsumerGroupName::default_group(), now)
                .unwrap()
        );
        assert_eq!(names(&hub), ["$Default", "Readers"]);
        for n in 2..MAX_CONSUMER_GROUPS {
            hub.add_consumer_group(ConsumerGroupName::new(&format!("cg{n}")).unwrap(), now)
                .unwrap();
        }
        assert_eq!(hub.consumer_groups().len(), MAX_CONSUMER_GROUPS);
        assert!(
            hub.add_consumer_group(ConsumerGroupName::new("more").unwrap(), now)
                .is_err()
        );
        assert!(hub.remove_consumer_group("READERS").unwrap());
        assert!(!hub.remove_consumer_group("readers").unwrap());
        assert!(hub.remove_consumer_group("$Default").is_err());
        // Stored hubs without the field (older data dirs) read as `$Default` only.
        let mut json = serde_json::to_value(Hub::new(HubName::new("h").unwrap(), "h", 2).unwrap()).unwrap();
        assert!(json.get("consumerGroups").is_none());
        json["consumerGroups"] = serde_json::json!([{ "name": "a", "created": "2024-01-01T00:00:00Z" }]);
        let read: Hub = serde_json::from_value(json).unwrap();
        assert_eq!(names(&read), ["$Default", "a"]);
    }

    #[test]
    fn host_name_must_start_with_the_hub_name() {
        let name = HubName::new("plant1").unwrap();
        assert!(Hub::new(name.clone(), "plant1.example.com", 4).is_ok());
        assert!(Hub::new(name.clone(), "plant2.example.com", 4).is_err());
        assert!(Hub::new(name.clone(), "plant1..com", 4).is_err());
        assert!(Hub::new(name, "plant1", 0).is_err());
    }
}
