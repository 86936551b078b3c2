//! Twins: tags, desired and reported properties, their versions and `$metadata`, and the
//! merge-patch and replace rules Azure IoT Hub applies to them.
//!
//! Rules (Azure "Understand and use device twins"): a patch is a JSON merge patch where `null`
//! removes a key; every change bumps the twin `version`; a desired (reported) change bumps
//! `properties.desired.$version` (`reported.$version`); `$metadata` mirrors the property tree and
//! records `$lastUpdated` (and, for desired, `$lastUpdatedVersion`) of every node a patch touched.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::{Etag, ModelError, Timestamp};

/// Limits on twin documents. Defaults follow Azure IoT Hub's documented limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TwinLimits {
    /// Largest serialized size of one section (tags, desired, reported), metadata excluded.
    pub max_section_bytes: usize,
    /// Deepest object nesting below a section's root.
    pub max_depth: usize,
    /// Longest property name, in bytes.
    pub max_key_bytes: usize,
    /// Longest string value, in bytes.
    pub max_string_bytes: usize,
}

impl Default for TwinLimits {
    fn default() -> Self {
        Self {
            max_section_bytes: 32 * 1024,
            max_depth: 10,
            max_key_bytes: 1024,
            max_string_bytes: 4096,
        }
    }
}

/// Desired or reported properties with their version and metadata.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TwinSection {
    /// The properties, without `$metadata` and `$version`.
    pub properties: Map<String, Value>,
    /// `$version`: bumped on every change of this section.
    pub version: u64,
    /// `$metadata`: `$lastUpdated` (and `$lastUpdatedVersion`) per node.
    pub metadata: Map<String, Value>,
}

impl TwinSection {
    fn new(now: Timestamp, with_versions: bool) -> Self {
        let mut metadata = Map::new();
        metadata.insert("$lastUpdated".into(), Value::String(now.to_string()));
        if with_versions {
            metadata.insert("$lastUpdatedVersion".into(), Value::from(1));
        }
        Self {
            properties: Map::new(),
            version: 1,
            metadata,
        }
    }

    /// Returns the section as Azure renders it: properties plus `$metadata` and `$version`.
    pub fn to_json(&self) -> Value {
        let mut out = self.properties.clone();
        out.insert("$metadata".into(), Value::Object(self.metadata.clone()));
        out.insert("$version".into(), Value::from(self.version));
        Value::Object(out)
    }

    /// Returns the section with `$version` but without `$metadata` (the MQTT twin GET shape).
    pub fn to_json_without_metadata(&self) -> Value {
        let mut out = self.properties.clone();
        out.insert("$version".into(), Value::from(self.version));
        Value::Object(out)
    }
}

/// A device's or module's twin document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Twin {
    /// Tags: set by the solution back end, invisible to the device.
    pub tags: Map<String, Value>,
    /// Desired properties: set by the back end, read by the device.
    pub desired: TwinSection,
    /// Reported properties: set by the device.
    pub reported: TwinSection,
    /// Bumped on every change of any section.
    pub version: u64,
}

/// What a service-side twin PATCH or PUT carries (reported properties belong to the device and
/// are ignored, as Azure does).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TwinUpdate {
    /// Tags to merge (PATCH) or the new tags (PUT).
    pub tags: Option<Map<String, Value>>,
    /// Desired properties to merge (PATCH) or the new desired properties (PUT).
    pub desired: Option<Map<String, Value>>,
}

impl TwinUpdate {
    /// Reads the `tags` and `properties.desired` members of a twin JSON body (Azure's Twin shape);
    /// other members (`deviceId`, `etag`, `properties.reported`…) are ignored.
    ///
    /// # Errors
    /// When `tags` or `properties.desired` is present but not an object (or null).
    pub fn from_twin_json(body: &Value) -> Result<Self, ModelError> {
        let Value::Object(body) = body else {
            return Err(ModelError::InvalidTwin("the twin must be a JSON object".into()));
        };
        let tags = object_member(body.get("tags"), "tags")?;
        let desired = match body.get("properties") {
            None | Some(Value::Null) => None,
            Some(Value::Object(properties)) => {
                object_member(properties.get("desired"), "properties.desired")?
            }
            Some(_) => return Err(ModelError::InvalidTwin("properties must be an object".into())),
        };
        Ok(Self { tags, desired })
    }
}

fn object_member(value: Option<&Value>, name: &str) -> Result<Option<Map<String, Value>>, ModelError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(map)) => Ok(Some(map.clone())),
        Some(_) => Err(ModelError::InvalidTwin(format!("{name} must be an object"))),
    }
}

impl Twin {
    /// Returns the twin of a new identity: empty sections at version 1.
    pub fn new(now: Timestamp) -> Self {
        Self {
            tags: Map::new(),
            desired: TwinSection::new(now, true),
            reported: TwinSection::new(now, false),
            version: 1,
        }
    }

    /// Returns the twin's etag, derived from its version as Azure does (`AAAAAAAAAAE=` is 1).
    pub fn etag(&self) -> Etag {
        Etag::from_revision(self.version)
    }

    /// Merges a service-side patch: tags and desired properties. Nothing changes on error.
    ///
    /// # Errors
    /// [`ModelError`] when the patch breaks a key rule or a limit.
    pub fn apply_patch(
        &mut self,
        update: &TwinUpdate,
        now: Timestamp,
        limits: &TwinLimits,
    ) -> Result<(), ModelError> {
        let mut next = self.clone();
        if let Some(tags) = &update.tags {
            let tags = strip_reserved(tags, "tags")?;
            merge_plain(&mut next.tags, &tags);
            check_limits(&next.tags, "tags", limits)?;
        }
        if let Some(desired) = &update.desired {
            let desired = strip_reserved(desired, "desired")?;
            next.desired.version += 1;
            let version = Some(next.desired.version);
            merge_with_metadata(
                &mut next.desired.properties,
                &mut next.desired.metadata,
                &desired,
                now,
                version,
            );
            check_limits(&next.desired.properties, "desired", limits)?;
        }
        next.version += 1;
        *self = next;
        Ok(())
    }

    /// Replaces tags and desired properties (a service-side PUT). Absent members become empty.
    ///
    /// # Errors
    /// [`ModelError`] when the new document breaks a key rule or a limit.
    pub fn replace(
        &mut self,
        update: &TwinUpdate,
        now: Timestamp,
        limits: &TwinLimits,
    ) -> Result<(), ModelError> {
        let mut next = self.clone();
        let tags = strip_reserved(&update.tags.clone().unwrap_or_default(), "tags")?;
        check_limits(&tags, "tags", limits)?;
        next.tags = tags;
        let desired = strip_reserved(&update.desired.clone().unwrap_or_default(), "desired")?;
        check_limits(&desired, "desired", limits)?;
        next.desired.version += 1;
        let version = Some(next.desired.version);
        let mut properties = Map::new();
        let mut metadata = Map::new();
        merge_with_metadata(&mut properties, &mut metadata, &desired, now, version);
        next.desired.properties = properties;
        next.desired.metadata = metadata;
        next.version += 1;
        *self = next;
        Ok(())
    }

    /// Merges a device's reported-properties patch. Nothing changes on error.
    ///
    /// # Errors
    /// [`ModelError`] when the patch breaks a key rule or a limit.
    pub fn apply_reported_patch(
        &mut self,
        patch: &Map<String, Value>,
        now: Timestamp,
        limits: &TwinLimits,
    ) -> Result<(), ModelError> {
        let patch = strip_reserved(patch, "reported")?;
        let mut reported = self.reported.clone();
        merge_with_metadata(
            &mut reported.properties,
            &mut reported.metadata,
            &patch,
            now,
            None,
        );
        check_limits(&reported.properties, "reported", limits)?;
        reported.version += 1;
        self.reported = reported;
        self.version += 1;
        Ok(())
    }

    /// Returns `{"desired": …, "reported": …}` with `$metadata` and `$version`.
    pub fn properties_json(&self) -> Value {
        serde_json::json!({ "desired": self.desired.to_json(), "reported": self.reported.to_json() })
    }
}

/// Drops the read-only `$metadata`/`$version` members SDKs echo back from a GET, and checks
/// every key against Azure's rules.
fn strip_reserved(
    section: &Map<String, Value>,
    name: &'static str,
) -> Result<Map<String, Value>, ModelError> {
    let mut out = Map::new();
    for (key, value) in section {
        if key == "$metadata" || key == "$version" {
            continue;
        }
        check_key(key, name)?;
        check_nested_keys(value, name)?;
        out.insert(key.clone(), value.clone());
    }
    Ok(out)
}

fn check_nested_keys(value: &Value, section: &'static str) -> Result<(), ModelError> {
    if let Value::Object(map) = value {
        for (key, child) in map {
            check_key(key, section)?;
            check_nested_keys(child, section)?;
        }
    }
    Ok(())
}

fn check_key(key: &str, section: &'static str) -> Result<(), ModelError> {
    // Azure: keys exclude control characters, '.', '$' and ' '.
    let bad = key.is_empty()
        || key
            .chars()
            .any(|c| c.is_control() || c == '.' || c == '$' || c == ' ');
    if bad {
        return Err(ModelError::InvalidTwin(format!(
            "{section} key '{}' is empty or contains '.', '$', a space or a control character",
            key.escape_debug()
        )));
    }
    Ok(())
}

fn check_limits(
    section: &Map<String, Value>,
    name: &'static str,
    limits: &TwinLimits,
) -> Result<(), ModelError> {
    let exceeded = |detail: String| ModelError::TwinLimitExceeded {
        section: name,
        detail,
    };
    let size = serde_json::to_vec(section)
        .map(|bytes| bytes.len())
        .unwrap_or(usize::MAX);
    if size > limits.max_section_bytes {
        return Err(exceeded(format!(
            "{size} bytes, the limit is {}",
            limits.max_section_bytes
        )));
    }
    fn walk(value: &Value, depth: usize, limits: &TwinLimits) -> Result<(), String> {
        match value {
            Value::Object(map) => {
                if depth >= limits.max_depth {
                    return Err(format!("nesting deeper than {}", limits.max_depth));
                }
                for (key, child) in map {
                    if key.len() > limits.max_key_bytes {
                        return Err(format!(
                            "a key of {} bytes, the limit is {}",
                            key.len(),
                            limits.max_key_bytes
                        ));
                    }
                    walk(child, depth + 1, limits)?;
                }
                Ok(())
            }
            Value::Array(items) => items.iter().try_for_each(|item| walk(item, depth, limits)),
            Value::String(text) if text.len() > limits.max_string_bytes => Err(format!(
                "a string of {} bytes, the limit is {}",
                text.len(),
                limits.max_string_bytes
            )),
            _ => Ok(()),
        }
    }
    walk(&Value::Object(section.clone()), 0, limits).map_err(exceeded)
}

fn merge_plain(target: &mut Map<String, Value>, patch: &Map<String, Value>) {
    for (key, value) in patch {
        match value {
            Value::Null => {
                target.remove(key);
            }
            Value::Object(child_patch) => {
                let child = target
                    .entry(key.clone())
                    .or_insert_with(|| Value::Object(Map::new()));
                if !child.is_object() {
                    *child = Value::Object(Map::new());
                }
                if let Value::Object(child) = child {
                    merge_plain(child, child_patch);
                }
            }
            _ => {
                target.insert(key.clone(), value.clone());
            }
        }
    }
}

fn node_metadata(now: Timestamp, version: Option<u64>) -> Map<String, Value> {
    let mut meta = Map::new();
    meta.insert("$lastUpdated".into(), Value::String(now.to_string()));
    if let Some(version) = version {
        meta.insert("$lastUpdatedVersion".into(), Value::from(version));
    }
    meta
}

fn stamp(meta: &mut Map<String, Value>, now: Timestamp, version: Option<u64>) {
    meta.extend(node_metadata(now, version));
}

fn merge_with_metadata(
    target: &mut Map<String, Value>,
    meta: &mut Map<String, Value>,
    patch: &Map<String, Value>,
    now: Timestamp,
    version: Option<u64>,
) {
    for (key, value) in patch {
        match value {
            Value::Null => {
                target.remove(key);
                meta.remove(key);
            }
            Value::Object(child_patch) => {
                let child = target
                    .entry(key.clone())
                    .or_insert_with(|| Value::Object(Map::new()));
                let child_meta = meta
                    .entry(key.clone())
                    .or_insert_with(|| Value::Object(Map::new()));
                if !child.is_object() {
                    *child = Value::Object(Map::new());
                    *child_meta = Value::Object(Map::new());
                }
                if !child_meta.is_object() {
                    *child_meta = Value::Object(Map::new());
                }
                if let (Value::Object(child), Value::Object(child_meta)) = (child, child_meta) {
                    merge_with_metadata(child, child_meta, child_patch, now, version);
                }
            }
            _ => {
                target.insert(key.clone(), value.clone());
                meta.insert(key.clone(), Value::Object(node_metadata(now, version)));
            }
        }
    }
    stamp(meta, now, version);
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn map(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => panic!("not an object"),
        }
    }

    fn desired(value: Value) -> TwinUpdate {
        TwinUpdate {
            desired: Some(map(value)),
            tags: None,
        }
    }

    #[test]
    fn new_twin_starts_at_version_one() {
        let twin = Twin::new(Timestamp::now());
        assert_eq!(
            (twin.version, twin.desired.version, twin.reported.version),
            (1, 1, 1)
        );
        assert_eq!(twin.etag().as_str(), "AAAAAAAAAAE=");
    }

    #[test]
    fn desired_patch_merges_deletes_and_bumps_versions() {
        let now = Timestamp::now();
        let mut twin = Twin::new(now);
        twin.apply_patch(
            &desired(json!({"a": {"b": 1, "c": 2}, "x": "y"})),
            now,
            &TwinLimits::default(),
        )
        .unwrap();
        twin.apply_patch(
            &desired(json!({"a": {"b": null}, "x": null, "z": [1, 2]})),
            now,
            &TwinLimits::default(),
        )
        .unwrap();
        assert_eq!(
            Value::Object(twin.desired.properties.clone()),
            json!({"a": {"c": 2}, "z": [1, 2]})
        );
        assert_eq!(twin.desired.version, 3);
        assert_eq!(twin.version, 3);
        assert_eq!(twin.reported.version, 1);
        let meta = &twin.desired.metadata;
        assert_eq!(meta["a"]["c"]["$lastUpdatedVersion"], json!(2));
        assert_eq!(meta["a"]["$lastUpdatedVersion"], json!(3));
        assert_eq!(meta["z"]["$lastUpdatedVersion"], json!(3));
        assert!(meta.get("x").is_none());
        assert!(meta["a"].get("b").is_none());
    }

    #[test]
    fn tags_and_desired_in_one_patch_bump_the_twin_once() {
        let now = Timestamp::now();
        let mut twin = Twin::new(now);
        let update = TwinUpdate {
            tags: Some(map(json!({"site": "a"}))),
            desired: Some(map(json!({"t": 1}))),
        };
        twin.apply_patch(&update, now, &TwinLimits::default()).unwrap();
        assert_eq!(twin.version, 2);
        assert_eq!(twin.tags["site"], json!("a"));
        let tags_only = TwinUpdate {
            tags: Some(map(json!({"site": null, "floor": 2}))),
            desired: None,
        };
        twin.apply_patch(&tags_only, now, &TwinLimits::default()).unwrap();
        assert_eq!(Value::Object(twin.tags.clone()), json!({"floor": 2}));
        assert_eq!(twin.desired.version, 2);
        assert_eq!(twin.version, 3);
    }

    #[test]
    fn echoed_metadata_and_version_are_ignored() {
        let now = Timestamp::now();
        let mut twin = Twin::new(now);
        let body = json!({"deviceId": "d", "properties": {"desired": {"t": 1, "$metadata": {}, "$version": 7}, "reported": {"r": 1}}});
        twin.apply_patch(
            &TwinUpdate::from_twin_json(&body).unwrap(),
            now,
            &TwinLimits::default(),
        )
        .unwrap();
        assert_eq!(Value::Object(twin.desired.properties.clone()), json!({"t": 1}));
        assert!(twin.reported.properties.is_empty());
    }

    #[test]
    fn replace_drops_previous_desired_and_tags() {
        let now = Timestamp::now();
        let mut twin = Twin::new(now);
        let first = TwinUpdate {
            tags: Some(map(json!({"a": 1}))),
            desired: Some(map(json!({"p": 1}))),
        };
        twin.apply_patch(&first, now, &TwinLimits::default()).unwrap();
        twin.replace(&desired(json!({"q": 2})), now, &TwinLimits::default())
            .unwrap();
        assert!(twin.tags.is_empty());
        assert_eq!(Value::Object(twin.desired.properties.clone()), json!({"q": 2}));
        assert!(twin.desired.metadata.get("p").is_none());
        assert_eq!(twin.desired.version, 3);
    }

    #[test]
    fn reported_patch_bumps_reported_only() {
        let now = Timestamp::now();
        let mut twin = Twin::new(now);
        twin.apply_reported_patch(&map(json!({"fw": "1.0"})), now, &TwinLimits::default())
            .unwrap();
        assert_eq!(
            (twin.version, twin.desired.version, twin.reported.version),
            (2, 1, 2)
        );
        assert!(twin.reported.metadata["fw"].get("$lastUpdatedVersion").is_none());
    }

    #[test]
    fn bad_keys_are_rejected_and_leave_the_twin_unchanged() {
        let now = Timestamp::now();
        let mut twin = Twin::new(now);
        for bad in [
            json!({"a.b": 1}),
            json!({"a": {"$x": 1}}),
            json!({"a b": 1}),
            json!({"": 1}),
        ] {
            assert!(
                twin.apply_patch(&desired(bad), now, &TwinLimits::default())
                    .is_err()
            );
        }
        assert_eq!(twin, Twin::new(now));
    }

    #[test]
    fn limits_are_enforced() {
        let now = Timestamp::now();
        let limits = TwinLimits::default();
        let mut twin = Twin::new(now);
        let big = json!({"a": "x".repeat(4000), "b": "x".repeat(4000), "c": "x".repeat(4000),
            "d": "x".repeat(4000), "e": "x".repeat(4000), "f": "x".repeat(4000), "g": "x".repeat(4000),
            "h": "x".repeat(4000), "i": "x".repeat(4000)});
        assert!(matches!(
            twin.apply_patch(&desired(big), now, &limits),
            Err(ModelError::TwinLimitExceeded {
                section: "desired",
                ..
            })
        ));
        assert!(
            twin.apply_patch(&desired(json!({"s": "x".repeat(4097)})), now, &limits)
                .is_err()
        );
        let mut deep = json!(1);
        for _ in 0..11 {
            deep = json!({ "n": deep });
        }
        assert!(twin.apply_patch(&desired(deep), now, &limits).is_err());
        let mut ok = json!(1);
        for _ in 0..10 {
            ok = json!({ "n": ok });
        }
        assert!(twin.apply_patch(&desired(ok), now, &limits).is_ok());
        assert!(
            twin.apply_patch(&desired(json!({"k".repeat(1025): 1})), now, &limits)
                .is_err()
        );
    }
}
