//! The hub directory: every hub on this server, cached in memory and routed to by host name.

use std::collections::BTreeMap;
use std::sync::Arc;

use outpost_model::{ConsumerGroup, ConsumerGroupName, Hub, HubName, Timestamp};
use parking_lot::RwLock;
use tokio::sync::watch;

use crate::{CoreError, HubStore, StoreError};

/// Every hub of this server. Reads come from an in-memory copy (each request routes by host
/// name); writes go to the store first, then to the copy.
pub struct Hubs {
    store: Arc<dyn HubStore>,
    cache: RwLock<BTreeMap<HubName, Arc<Hub>>>,
    // Serialises admin writes so that name and host-name uniqueness checks cannot race.
    write_lock: tokio::sync::Mutex<()>,
    // Bumped after every change: front doors holding a hub's resources (the Event Hubs endpoint's
    // receivers of a consumer group) re-check them.
    changes: watch::Sender<u64>,
}

impl std::fmt::Debug for Hubs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hubs")
            .field("count", &self.cache.read().len())
            .finish_non_exhaustive()
    }
}

impl Hubs {
    /// Loads every hub from the store.
    ///
    /// # Errors
    /// When the store fails.
    pub async fn load(store: Arc<dyn HubStore>) -> Result<Self, CoreError> {
        let hubs = store.list_hubs().await?;
        let cache = hubs
            .into_iter()
            .map(|hub| (hub.name.clone(), Arc::new(hub)))
            .collect();
        Ok(Self {
            store,
            cache: RwLock::new(cache),
            write_lock: tokio::sync::Mutex::new(()),
            changes: watch::Sender::new(0),
        })
    }

    /// Returns a receiver that sees a new value after every change of any hub (created, updated,
    /// deleted, consumer groups), to re-check what a connection holds.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    fn changed(&self) {
        self.changes
            .send_modify(|generation| *generation = generation.wrapping_add(1));
    }

    /// Returns every hub, ordered by name.
    pub fn list(&self) -> Vec<Arc<Hub>> {
        self.cache.read().values().cloned().collect()
    }

    /// Returns the hub named `name`.
    pub fn by_name(&self, name: &str) -> Option<Arc<Hub>> {
        let name = HubName::new(&name.to_ascii_lowercase()).ok()?;
        self.cache.read().get(&name).cloned()
    }

    /// Returns the hub whose host name is `host` (case-insensitive; a `:port` suffix is ignored).
    pub fn by_host(&self, host: &str) -> Option<Arc<Hub>> {
        let host = strip_port(host);
        self.cache
            .read()
            .values()
            .find(|hub| hub.host_name.eq_ignore_ascii_case(host))
            .cloned()
    }

    /// Returns the host names of every hub (for the server certificate).
    pub fn host_names(&self) -> Vec<String> {
        self.cache
            .read()
            .values()
            .map(|hub| hub.host_name.clone())
            .collect()
    }

    /// Creates a hub.
    ///
    /// # Errors
    /// [`CoreError::HubAlreadyExists`] when the name or host name is taken.
    pub async fn create(&self, hub: Hub) -> Result<Arc<Hub>, CoreError> {
        let _guard = self.write_lock.lock().await;
        if self.by_name(hub.name.as_str()).is_some() || self.by_host(&hub.host_name).is_some() {
            return Err(CoreError::HubAlreadyExists(hub.name.to_string()));
        }
        match self.store.create_hub(&hub).await {
            Err(StoreError::Conflict) => return Err(CoreError::HubAlreadyExists(hub.name.to_string())),
            other => other?,
        }
        let hub = Arc::new(hub);
        self.cache.write().insert(hub.name.clone(), hub.clone());
        self.changed();
        Ok(hub)
    }

    /// Replaces a hub's stored definition (for example after a key rotation).
    ///
    /// # Errors
    /// [`CoreError::HubNotFound`] when the hub does not exist.
    pub async fn update(&self, hub: Hub) -> Result<Arc<Hub>, CoreError> {
        let _guard = self.write_lock.lock().await;
        self.store_update(hub).await
    }

    /// Writes an updated hub; the caller holds the write lock.
    async fn store_update(&self, hub: Hub) -> Result<Arc<Hub>, CoreError> {
        match self.store.update_hub(&hub).await {
            Err(StoreError::NotFound) => return Err(CoreError::HubNotFound(hub.name.to_string())),
            other => other?,
        }
        let hub = Arc::new(hub);
        self.cache.write().insert(hub.name.clone(), hub.clone());
        self.changed();
        Ok(hub)
    }

    /// Creates a consumer group of the hub's built-in endpoint (idempotent, like Azure's `PUT`):
    /// returns the group and whether it was created now.
    ///
    /// # Errors
    /// `IotHubNotFound`; `ArgumentInvalid` when the hub has
    /// [`MAX_CONSUMER_GROUPS`](outpost_model::MAX_CONSUMER_GROUPS) groups already.
    pub async fn create_consumer_group(
        &self,
        hub: &str,
        name: ConsumerGroupName,
    ) -> Result<(ConsumerGroup, bool), CoreError> {
        // Held across read-modify-write: two creations at once must not lose one.
        let _guard = self.write_lock.lock().await;
        let mut updated = self.existing(hub)?.as_ref().clone();
        let wanted = name.to_string();
        let created = updated.add_consumer_group(name, Timestamp::now())?;
        let updated = if created {
            self.store_update(updated).await?
        } else {
            Arc::new(updated)
        };
        let group = updated
            .consumer_group(&wanted)
            .ok_or_else(|| CoreError::InvalidArgument(format!("no consumer group '{wanted}'")))?;
        Ok((group, created))
    }

    /// Deletes a consumer group; the endpoint detaches its receivers (they watch
    /// [`changes`](Self::changes)).
    ///
    /// # Errors
    /// `IotHubNotFound`; `ArgumentInvalid` for `$Default` or a group the hub does not have.
    pub async fn delete_consumer_group(&self, hub: &str, name: &str) -> Result<(), CoreError> {
        let _guard = self.write_lock.lock().await;
        let mut updated = self.existing(hub)?.as_ref().clone();
        if !updated.remove_consumer_group(name)? {
            return Err(CoreError::InvalidArgument(format!(
                "hub '{hub}' has no consumer group '{name}'"
            )));
        }
        self.store_update(updated).await?;
        Ok(())
    }

    fn existing(&self, hub: &str) -> Result<Arc<Hub>, CoreError> {
        self.by_name(hub)
            .ok_or_else(|| CoreError::HubNotFound(hub.to_owned()))
    }

    /// Deletes a hub and everything in it.
    ///
    /// # Errors
    /// [`CoreError::HubNotFound`] when the hub does not exist.
    pub async fn delete(&self, name: &str) -> Result<(), CoreError> {
        let _guard = self.write_lock.lock().await;
        let hub = self
            .by_name(name)
            .ok_or_else(|| CoreError::HubNotFound(name.to_owned()))?;
        match self.store.delete_hub(&hub.name).await {
            Err(StoreError::NotFound) => return Err(CoreError::HubNotFound(name.to_owned())),
            other => other?,
        }
        self.cache.write().remove(&hub.name);
        self.changed();
        Ok(())
    }

    /// Registers (or replaces) a CA certificate on a hub; devices with `certificateAuthority`
    /// authentication chain to it. Certificates registered by the operator count as verified.
    ///
    /// # Errors
    /// `IotHubNotFound`; `ArgumentInvalid` when the PEM is not a CA certificate or the name is
    /// not 1–128 characters of letters, digits, `-`, `_` and `.`.
    pub async fn put_certificate(&self, hub: &str, name: &str, pem: &str) -> Result<Arc<Hub>, CoreError> {
        let valid_name = !name.is_empty()
            && name.len() <= 128
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        if !valid_name {
            return Err(CoreError::InvalidArgument(format!(
                "'{name}' is not a valid certificate name"
            )));
        }
        outpost_auth::CaCertificate::from_pem(pem).map_err(|e| CoreError::InvalidArgument(e.to_string()))?;
        let mut updated = self
            .by_name(hub)
            .ok_or_else(|| CoreError::HubNotFound(hub.to_owned()))?
            .as_ref()
            .clone();
        updated
            .certificates
            .retain(|certificate| certificate.name != name);
        updated.certificates.push(outpost_model::HubCertificate {
            name: name.to_owned(),
            pem: pem.to_owned(),
        });
        self.update(updated).await
    }

    /// Removes a CA certificate from a hub.
    ///
    /// # Errors
    /// `IotHubNotFound`, or `ArgumentInvalid` when the hub has no such certificate.
    pub async fn delete_certificate(&self, hub: &str, name: &str) -> Result<Arc<Hub>, CoreError> {
        let mut updated = self
            .by_name(hub)
            .ok_or_else(|| CoreError::HubNotFound(hub.to_owned()))?
            .as_ref()
            .clone();
        let before = updated.certificates.len();
        updated
            .certificates
            .retain(|certificate| certificate.name != name);
        if updated.certificates.len() == before {
            return Err(CoreError::InvalidArgument(format!(
                "hub '{hub}' has no certificate '{name}'"
            )));
        }
        self.update(updated).await
    }

    /// Creates the default hub when the server has none yet (first start on an empty data dir).
    /// Returns the hub when it was created.
    ///
    /// # Errors
    /// When the host name is invalid or the store fails.
    pub async fn ensure_default(
        &self,
        host_name: &str,
        partition_count: u32,
    ) -> Result<Option<Arc<Hub>>, CoreError> {
        if !self.cache.read().is_empty() {
            return Ok(None);
        }
        let first_label = host_name
            .split('.')
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
        let name = HubName::new(&first_label)?;
        let hub = Hub::new(name, host_name, partition_count)?;
        self.create(hub).await.map(Some)
    }
}

pub use outpost_auth::strip_port;
