//! The [`ConfigurationStore`] port and an in-memory implementation (the default until a server
//! wires a durable one, and the store of the reconciler's unit tests).

use std::collections::BTreeMap;

use async_trait::async_trait;
use outpost_model::HubName;
use parking_lot::Mutex;

use super::model::Configuration;
use crate::{Expected, Revision, StoreError, Stored};

/// Configurations per hub, written with compare-and-swap like the registry; removed with their
/// hub. Implementations pass the suite of [`crate::configuration_conformance_suite`].
#[async_trait]
pub trait ConfigurationStore: Send + Sync + 'static {
    /// Returns a configuration, or `None`.
    async fn configuration(
        &self,
        hub: &HubName,
        id: &str,
    ) -> Result<Option<Stored<Configuration>>, StoreError>;

    /// Writes a configuration if the stored one matches `expected`; returns the new revision.
    ///
    /// # Errors
    /// [`StoreError::Conflict`] when it exists but `expected` is `Absent` or another revision;
    /// [`StoreError::NotFound`] when it is missing but expected to exist;
    /// [`StoreError::ParentMissing`] when the hub does not exist.
    async fn put_configuration(
        &self,
        hub: &HubName,
        configuration: &Configuration,
        expected: Expected,
    ) -> Result<Revision, StoreError>;

    /// Deletes a configuration if the stored one matches `expected`.
    ///
    /// # Errors
    /// As [`ConfigurationStore::put_configuration`].
    async fn delete_configuration(
        &self,
        hub: &HubName,
        id: &str,
        expected: Expected,
    ) -> Result<(), StoreError>;

    /// Returns every configuration of the hub, ordered by id (empty for an unknown hub).
    async fn list_configurations(&self, hub: &HubName) -> Result<Vec<Configuration>, StoreError>;
}

/// Configurations kept in memory only: lost on restart, and it cannot see hubs (no
/// `ParentMissing`); `outpost-store` has the durable one.
#[derive(Debug, Default)]
pub struct MemoryConfigurationStore {
    records: Mutex<BTreeMap<(String, String), (Revision, Configuration)>>,
    last_revision: Mutex<u64>,
}

impl MemoryConfigurationStore {
    fn check(found: Option<Revision>, expected: Expected) -> Result<(), StoreError> {
        match (found, expected) {
            (None, Expected::Absent) | (Some(_), Expected::Present) => Ok(()),
            (Some(found), Expected::Revision(wanted)) if found == wanted => Ok(()),
            (Some(_), _) => Err(StoreError::Conflict),
            (None, _) => Err(StoreError::NotFound),
        }
    }

    /// Forgets every configuration of a hub.
    pub fn drop_hub(&self, hub: &HubName) {
        self.records.lock().retain(|(h, _), _| h != hub.as_str());
    }
}

#[async_trait]
impl ConfigurationStore for MemoryConfigurationStore {
    async fn configuration(
        &self,
        hub: &HubName,
        id: &str,
    ) -> Result<Option<Stored<Configuration>>, StoreError> {
        let records = self.records.lock();
        Ok(records
            .get(&(hub.to_string(), id.to_owned()))
            .map(|(revision, value)| Stored {
                revision: *revision,
                value: value.clone(),
            }))
    }

    async fn put_configuration(
        &self,
        hub: &HubName,
        configuration: &Configuration,
        expected: Expected,
    ) -> Result<Revision, StoreError> {
        let mut records = self.records.lock();
        let key = (hub.to_string(), configuration.id.clone());
        Self::check(records.get(&key).map(|(revision, _)| *revision), expected)?;
        let mut last = self.last_revision.lock();
        *last += 1;
        let revision = Revision(*last);
        records.insert(key, (revision, configuration.clone()));
        Ok(revision)
    }

    async fn delete_configuration(
        &self,
        hub: &HubName,
        id: &str,
        expected: Expected,
    ) -> Result<(), StoreError> {
        let mut records = self.records.lock();
        let key = (hub.to_string(), id.to_owned());
        Self::check(records.get(&key).map(|(revision, _)| *revision), expected)?;
        records.remove(&key);
        Ok(())
    }

    async fn list_configurations(&self, hub: &HubName) -> Result<Vec<Configuration>, StoreError> {
        let records = self.records.lock();
        Ok(records
            .iter()
            .filter(|((h, _), _)| h == hub.as_str())
            .map(|(_, (_, configuration))| configuration.clone())
            .collect())
    }
}
