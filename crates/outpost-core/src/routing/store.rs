//! The [`RoutingStore`] port (a hub's routing configuration and the delivery checkpoints of its
//! endpoints), an in-memory implementation, and the conformance suite every backend runs.

use std::collections::BTreeMap;

use async_trait::async_trait;
use outpost_model::HubName;
use parking_lot::Mutex;

use super::model::RoutingConfig;
use crate::StoreError;

/// Durable routing state per hub. Checkpoints are the next ingest-log sequence number an
/// endpoint's worker reads in a partition; a checkpoint is saved after a delivery succeeded, so
/// an endpoint gets every message at least once.
#[async_trait]
pub trait RoutingStore: Send + Sync + 'static {
    /// Returns the hub's routing configuration, `None` when it was never written.
    async fn routing_config(&self, hub: &HubName) -> Result<Option<RoutingConfig>, StoreError>;

    /// Replaces the hub's routing configuration, durably (the caller checks that the hub
    /// exists; a durable store removes the hub's routing state with the hub).
    async fn put_routing_config(&self, hub: &HubName, config: &RoutingConfig) -> Result<(), StoreError>;

    /// Returns every checkpoint of an endpoint: `(partition, next sequence number)`.
    async fn checkpoints(&self, hub: &HubName, endpoint: &str) -> Result<Vec<(u32, u64)>, StoreError>;

    /// Saves one checkpoint, durably.
    async fn put_checkpoint(
        &self,
        hub: &HubName,
        endpoint: &str,
        partition: u32,
        next: u64,
    ) -> Result<(), StoreError>;

    /// Forgets an endpoint's checkpoints (the endpoint was deleted: a new one of the same name
    /// starts from the newest messages).
    async fn delete_checkpoints(&self, hub: &HubName, endpoint: &str) -> Result<(), StoreError>;
}

/// Routing state in memory only (tests, and the default until a server wires a durable store).
#[derive(Debug, Default)]
pub struct MemoryRoutingStore {
    configs: Mutex<BTreeMap<String, RoutingConfig>>,
    checkpoints: Mutex<BTreeMap<(String, String, u32), u64>>,
}

#[async_trait]
impl RoutingStore for MemoryRoutingStore {
    async fn routing_config(&self, hub: &HubName) -> Result<Option<RoutingConfig>, StoreError> {
        Ok(self.configs.lock().get(hub.as_str()).cloned())
    }

    async fn put_routing_config(&self, hub: &HubName, config: &RoutingConfig) -> Result<(), StoreError> {
        self.configs.lock().insert(hub.to_string(), config.clone());
        Ok(())
    }

    async fn checkpoints(&self, hub: &HubName, endpoint: &str) -> Result<Vec<(u32, u64)>, StoreError> {
        Ok(self
            .checkpoints
            .lock()
            .iter()
            .filter(|((h, e, _), _)| h == hub.as_str() && e == endpoint)
            .map(|((_, _, partition), next)| (*partition, *next))
            .collect())
    }

    async fn put_checkpoint(
        &self,
        hub: &HubName,
        endpoint: &str,
        partition: u32,
        next: u64,
    ) -> Result<(), StoreError> {
        self.checkpoints
            .lock()
            .insert((hub.to_string(), endpoint.to_owned(), partition), next);
        Ok(())
    }

    async fn delete_checkpoints(&self, hub: &HubName, endpoint: &str) -> Result<(), StoreError> {
        self.checkpoints
            .lock()
            .retain(|(h, e, _), _| !(h == hub.as_str() && e == endpoint));
        Ok(())
    }
}

/// The conformance suite of [`RoutingStore`].
#[cfg(any(test, feature = "testing"))]
pub mod conformance {
    use super::*;
    use crate::routing::model::{FallbackRoute, Route, RoutingSource};

    fn hub(name: &str) -> HubName {
        HubName::new(name).expect("hub name")
    }

    /// A configuration reads back as written, per hub; a hub without one reads `None`.
    pub async fn configurations_round_trip_per_hub<S: RoutingStore>(store: &S) {
        assert_eq!(store.routing_config(&hub("plant")).await.expect("read"), None);
        let config = RoutingConfig {
            routes: vec![Route {
                name: "r".into(),
                source: RoutingSource::TwinChangeEvents,
                condition: "opType = 'updateTwin'".into(),
                endpoint_names: vec!["events".into()],
                is_enabled: true,
            }],
            fallback_route: FallbackRoute { is_enabled: false },
            ..RoutingConfig::default()
        };
        store
            .put_routing_config(&hub("plant"), &config)
            .await
            .expect("write");
        assert_eq!(
            store.routing_config(&hub("plant")).await.expect("read"),
            Some(config)
        );
        assert_eq!(store.routing_config(&hub("other")).await.expect("read"), None);
        store
            .put_routing_config(&hub("plant"), &RoutingConfig::default())
            .await
            .expect("replace");
        assert_eq!(
            store.routing_config(&hub("plant")).await.expect("read"),
            Some(RoutingConfig::default())
        );
    }

    /// Checkpoints are per hub, endpoint and partition; saving again moves them; deleting an
    /// endpoint's forgets only those.
    pub async fn checkpoints_are_per_endpoint_and_partition<S: RoutingStore>(store: &S) {
        let plant = hub("plant");
        assert!(store.checkpoints(&plant, "a").await.expect("read").is_empty());
        store.put_checkpoint(&plant, "a", 0, 5).await.expect("save");
        store.put_checkpoint(&plant, "a", 1, 7).await.expect("save");
        store.put_checkpoint(&plant, "a", 0, 9).await.expect("save");
        store.put_checkpoint(&plant, "ab", 0, 1).await.expect("save");
        store
            .put_checkpoint(&hub("other"), "a", 0, 3)
            .await
            .expect("save");
        let mut found = store.checkpoints(&plant, "a").await.expect("read");
        found.sort_unstable();
        assert_eq!(found, [(0, 9), (1, 7)]);
        store.delete_checkpoints(&plant, "a").await.expect("delete");
        assert!(store.checkpoints(&plant, "a").await.expect("read").is_empty());
        assert_eq!(store.checkpoints(&plant, "ab").await.expect("read"), [(0, 1)]);
        assert_eq!(
            store.checkpoints(&hub("other"), "a").await.expect("read"),
            [(0, 3)]
        );
    }
}

/// Runs the [`RoutingStore`] conformance suite against the store `$make` evaluates to
/// (`with_guard:` — `$make` gives `(store, guard)`, the guard kept alive for the test, such as
/// a temporary directory).
#[cfg(any(test, feature = "testing"))]
#[macro_export]
macro_rules! routing_store_conformance_suite {
    (with_guard: $make:expr) => {
        #[tokio::test]
        async fn routing_configurations_round_trip_per_hub() {
            let (store, _guard) = $make;
            $crate::routing::store::conformance::configurations_round_trip_per_hub(&store).await;
        }

        #[tokio::test]
        async fn routing_checkpoints_are_per_endpoint_and_partition() {
            let (store, _guard) = $make;
            $crate::routing::store::conformance::checkpoints_are_per_endpoint_and_partition(&store).await;
        }
    };
    ($make:expr) => {
        #[tokio::test]
        async fn routing_configurations_round_trip_per_hub() {
            let store = $make;
            $crate::routing::store::conformance::configurations_round_trip_per_hub(&store).await;
        }

        #[tokio::test]
        async fn routing_checkpoints_are_per_endpoint_and_partition() {
            let store = $make;
            $crate::routing::store::conformance::checkpoints_are_per_endpoint_and_partition(&store).await;
        }
    };
}

#[cfg(test)]
mod tests {
    use super::MemoryRoutingStore;

    crate::routing_store_conformance_suite!(MemoryRoutingStore::default());
}
