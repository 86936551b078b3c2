//! The on-disk layout. Keys are strings or tuples of strings (compared element by element, in
//! byte order); records are JSON (serde_json) next to the columns the store itself needs, so a
//! write never decodes the record it replaces.
//!
//! | table           | key                          | value                                      |
//! |-----------------|------------------------------|--------------------------------------------|
//! | `meta`          | `&str` name                  | `u64`: `schema_version`, `last_revision`   |
//! | `hubs`          | hub name                     | `Hub` JSON                                 |
//! | `devices`       | `(hub, device id)`           | `(revision, enabled, DeviceRecord JSON)`   |
//! | `modules`       | `(hub, device id, module id)`| `(revision, ModuleRecord JSON)`            |
//! | `device_counts` | hub name                     | `(total, enabled, disabled)`               |
//! | `sessions`      | `(hub, client id)`           | opaque MQTT session state                  |
//! | `service_bound` | `(hub, kind, number)`        | feedback record / file notification JSON   |
//! | `jobs`          | `(hub, job id)`              | `(finished, JobRecord JSON)`               |
//! | `device_jobs`   | `(hub, job id, device id)`   | `DeviceJobRecord JSON`                     |
//! | `configurations`| `(hub, configuration id)`    | `(revision, Configuration JSON)`           |
//!
//! `enabled` mirrors `device.status` so that counts can be adjusted without decoding the old
//! record. A hub's row in `device_counts` is absent when the hub has no devices.

use std::ops::Bound;

use outpost_core::StoreError;
use redb::TableDefinition;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Version of this layout, stored under [`SCHEMA_VERSION_KEY`] when the database is created.
pub(crate) const SCHEMA_VERSION: u64 = 1;
/// `meta` key of the layout version.
pub(crate) const SCHEMA_VERSION_KEY: &str = "schema_version";
/// `meta` key of the last revision handed out (see [`crate::revision`]).
pub(crate) const LAST_REVISION_KEY: &str = "last_revision";

/// Database-wide settings and counters.
pub(crate) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// Hubs by name.
pub(crate) const HUBS: TableDefinition<&str, &[u8]> = TableDefinition::new("hubs");
/// Device records with their revision and enabled flag, by hub and device id.
pub(crate) const DEVICES: TableDefinition<(&str, &str), (u64, bool, &[u8])> = TableDefinition::new("devices");
/// Module records with their revision, by hub, device id and module id.
pub(crate) const MODULES: TableDefinition<(&str, &str, &str), (u64, &[u8])> = TableDefinition::new("modules");
/// Per-hub device counts: total, enabled, disabled.
pub(crate) const DEVICE_COUNTS: TableDefinition<&str, (u64, u64, u64)> =
    TableDefinition::new("device_counts");

/// Returns the smallest string greater than every string that has `prefix` as a component, in
/// byte order: `prefix` followed by NUL. Tuple keys compare element by element, so
/// `(hub, "")..(successor(hub), "")` holds exactly the keys whose first element is `hub`, and
/// never those of hub `hub` + anything (`a` vs `ab`).
pub(crate) fn successor(component: &str) -> String {
    let mut next = String::with_capacity(component.len() + 1);
    next.push_str(component);
    next.push('\0');
    next
}

/// A bound on `devices` keys.
pub(crate) type DeviceKeyBound<'a> = Bound<(&'a str, &'a str)>;

/// Bounds of the `devices` keys of `hub` (`hub_end` is `successor(hub)`), starting after `after`
/// when given.
pub(crate) fn device_range<'a>(
    hub: &'a str,
    hub_end: &'a str,
    after: Option<&'a str>,
) -> (DeviceKeyBound<'a>, DeviceKeyBound<'a>) {
    let start = match after {
        Some(after) => Bound::Excluded((hub, after)),
        None => Bound::Included((hub, "")),
    };
    (start, Bound::Excluded((hub_end, "")))
}

/// Serializes a record for storage.
pub(crate) fn encode<T: Serialize>(record: &T, what: &str) -> Result<Vec<u8>, StoreError> {
    // The serde message is left out: it could quote record contents (keys).
    serde_json::to_vec(record)
        .map_err(|error| StoreError::Backend(format!("cannot encode {what} ({:?} error)", error.classify())))
}

/// Deserializes a stored record; anything that does not decode is corrupt, never a panic.
pub(crate) fn decode<T: DeserializeOwned>(
    bytes: &[u8],
    what: impl FnOnce() -> String,
) -> Result<T, StoreError> {
    // Position and category only: serde messages may quote the offending value.
    serde_json::from_slice(bytes).map_err(|error| {
        StoreError::Corrupt(format!(
            "{} does not decode ({:?} error at line {} column {})",
            what(),
            error.classify(),
            error.line(),
            error.column()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn successor_sorts_after_the_component_and_before_longer_names() {
        assert!("a" < successor("a").as_str());
        assert!(successor("a").as_str() < "a-");
        assert!(successor("a").as_str() < "ab");
        assert!(successor("d").as_str() < "d1");
    }

    #[test]
    fn undecodable_bytes_are_corrupt_without_quoting_them() {
        let error =
            decode::<Vec<String>>(br#"["secret-key", 1]"#, || "device 'd' of hub 'h'".into()).unwrap_err();
        match error {
            StoreError::Corrupt(message) => {
                assert!(message.contains("device 'd'"), "{message}");
                assert!(!message.contains("secret"), "{message}");
            }
            other => panic!("expected Corrupt, got {other:?}"),
        }
    }
}
