//! `SessionStore` on redb: one row per (hub, client id) holding the front door's opaque
//! session state; removed with the hub.

use async_trait::async_trait;
use outpost_core::{SessionStore, StoreError};
use outpost_model::HubName;
use redb::TableDefinition;

use crate::EmbeddedStore;

/// `(hub, client id)` → session state.
pub(crate) const SESSIONS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("sessions");

#[async_trait]
impl SessionStore for EmbeddedStore {
    async fn load_session(&self, hub: &HubName, client_id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let (hub, client_id) = (hub.to_string(), client_id.to_owned());
        self.read(move |tx| {
            let table = match tx.open_table(SESSIONS) {
                Ok(table) => table,
                // Created on the first write.
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
                Err(other) => return Err(other.into()),
            };
            Ok(table
                .get((hub.as_str(), client_id.as_str()))?
                .map(|guard| guard.value().to_vec()))
        })
        .await
    }

    async fn save_session(&self, hub: &HubName, client_id: &str, state: &[u8]) -> Result<(), StoreError> {
        let (hub, client_id, state) = (hub.to_string(), client_id.to_owned(), state.to_vec());
        self.write(move |tx| {
            tx.open_table(SESSIONS)?
                .insert((hub.as_str(), client_id.as_str()), state.as_slice())?;
            Ok(())
        })
        .await
    }

    async fn delete_session(&self, hub: &HubName, client_id: &str) -> Result<(), StoreError> {
        // Every clean-session CONNECT deletes, and most find nothing to delete: a read spares them
        // a durable commit (one fsync per connect in a storm of clean sessions). A save racing
        // this check is ordered after the delete, as after a delete that committed first.
        if self.load_session(hub, client_id).await?.is_none() {
            return Ok(());
        }
        let (hub, client_id) = (hub.to_string(), client_id.to_owned());
        self.write(move |tx| {
            tx.open_table(SESSIONS)?
                .remove((hub.as_str(), client_id.as_str()))?;
            Ok(())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use outpost_core::testing::{create_hub_named, hub_name};
    use outpost_core::{HubStore as _, SessionStore as _};

    use crate::EmbeddedStore;

    #[tokio::test]
    async fn sessions_are_stored_per_hub_and_client_and_go_with_the_hub() {
        let store = EmbeddedStore::in_memory().unwrap();
        let a = create_hub_named(&store, "a").await;
        let ab = create_hub_named(&store, "ab").await;
        assert_eq!(store.load_session(&a, "dev1").await.unwrap(), None);
        store.save_session(&a, "dev1", b"one").await.unwrap();
        store.save_session(&ab, "dev1", b"two").await.unwrap();
        store.save_session(&a, "dev1", b"three").await.unwrap();
        assert_eq!(
            store.load_session(&a, "dev1").await.unwrap().as_deref(),
            Some(&b"three"[..])
        );
        assert_eq!(store.load_session(&a, "dev").await.unwrap(), None);
        // Deleting what was never saved is not an error (a clean-session connect).
        store.delete_session(&a, "dev").await.unwrap();
        store.delete_session(&a, "dev1").await.unwrap();
        assert_eq!(store.load_session(&a, "dev1").await.unwrap(), None);
        store.save_session(&a, "dev2", b"x").await.unwrap();
        store.delete_hub(&hub_name("a")).await.unwrap();
        assert_eq!(store.load_session(&a, "dev2").await.unwrap(), None);
        assert_eq!(
            store.load_session(&ab, "dev1").await.unwrap().as_deref(),
            Some(&b"two"[..])
        );
    }
}
