//! Configuration content as twin changes: settings (a twin path and its value), which
//! configuration wins a path, whether a twin already holds a setting, and the merge patch that
//! brings a twin to its target.
//!
//! Device and module configurations merge settings into the twin; where several configurations
//! set the same or nested paths the highest priority wins (ties: the most recently created),
//! path by path (Azure "Automatic device management"). Edge deployments set whole
//! `properties.desired` documents of module twins (the base deployment) and layered
//! deployments add `properties.desired.<path>` settings on top, by ascending priority.

use std::collections::BTreeMap;

use outpost_model::TwinUpdate;
use serde_json::{Map, Value};

/// Which section of a twin a setting writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub enum Section {
    /// `tags`.
    Tags,
    /// `properties.desired`.
    Desired,
}

/// One twin path and the value a configuration puts there.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Setting {
    /// The section.
    pub section: Section,
    /// The path below the section, never empty.
    pub path: Vec<String>,
    /// The value (`null` removes the property).
    pub value: Value,
}

impl Setting {
    /// Returns whether two settings touch the same node or one sits inside the other.
    fn overlaps(&self, other: &Self) -> bool {
        self.section == other.section
            && (self.path.starts_with(&other.path) || other.path.starts_with(&self.path))
    }
}

fn check_segment(segment: &str, key: &str) -> Result<(), String> {
    let bad = segment.is_empty() || segment.chars().any(|c| c.is_control() || c == '$' || c == ' ');
    if bad {
        return Err(format!(
            "'{key}' is not a valid twin path: every segment is non-empty, without '$', spaces or control characters"
        ));
    }
    Ok(())
}

/// Splits `key` after `prefix` (`properties.desired`, `tags`) into path segments; `None` when
/// the key does not start with the prefix.
fn split_path(key: &str, prefix: &str) -> Option<Result<Vec<String>, String>> {
    let rest = key.strip_prefix(prefix)?;
    if rest.is_empty() {
        return Some(Ok(Vec::new()));
    }
    let rest = rest.strip_prefix('.')?;
    Some(
        rest.split('.')
            .map(|segment| check_segment(segment, key).map(|()| segment.to_owned()))
            .collect(),
    )
}

/// Reads the settings of `deviceContent` (tags allowed) or `moduleContent`: keys are
/// `properties.desired[.<path>]` or `tags[.<path>]`; a bare section key takes an object whose
/// members are settings of their own.
///
/// # Errors
/// A message naming the first key that is not a valid twin path.
pub fn settings_of(content: &Map<String, Value>, allow_tags: bool) -> Result<Vec<Setting>, String> {
    let mut settings = Vec::new();
    for (key, value) in content {
        let (section, path) = if let Some(path) = split_path(key, "properties.desired") {
            (Section::Desired, path?)
        } else if let Some(path) = split_path(key, "tags").filter(|_| allow_tags) {
            (Section::Tags, path?)
        } else {
            let allowed = if allow_tags {
                "'properties.desired.<path>' or 'tags.<path>'"
            } else {
                "'properties.desired.<path>'"
            };
            return Err(format!("content key '{key}' is not {allowed}"));
        };
        if path.is_empty() {
            let Value::Object(members) = value else {
                return Err(format!("content '{key}' must be an object"));
            };
            for (member, value) in members {
                check_segment(member, key)?;
                settings.push(Setting {
                    section,
                    path: vec![member.clone()],
                    value: value.clone(),
                });
            }
        } else {
            settings.push(Setting {
                section,
                path,
                value: value.clone(),
            });
        }
    }
    Ok(settings)
}

/// Picks, from configurations ordered from the winner down, the settings that apply: a setting
/// is dropped when a higher configuration already set the same, an enclosing or an enclosed path.
pub fn resolve<'a>(
    ordered: impl IntoIterator<Item = (&'a str, &'a [Setting])>,
) -> Vec<(&'a str, &'a Setting)> {
    let mut claimed: Vec<(&str, &Setting)> = Vec::new();
    for (id, settings) in ordered {
        for setting in settings {
            if !claimed.iter().any(|(_, taken)| taken.overlaps(setting)) {
                claimed.push((id, setting));
            }
        }
    }
    claimed
}

/// Returns the node at `path` below `root`.
fn lookup<'a>(root: Option<&'a Value>, path: &[String]) -> Option<&'a Value> {
    path.iter()
        .try_fold(root?, |node, segment| node.as_object()?.get(segment))
}

/// Returns whether `current` already holds `wanted` as a merge patch would leave it.
fn holds(current: Option<&Value>, wanted: &Value) -> bool {
    match wanted {
        Value::Null => current.is_none(),
        Value::Object(members) => match current {
            Some(Value::Object(current)) => members.iter().all(|(key, value)| holds(current.get(key), value)),
            _ => false,
        },
        other => current == Some(other),
    }
}

/// Returns whether a twin document (Azure's Twin shape) already holds the setting.
pub fn twin_holds(twin: &Value, setting: &Setting) -> bool {
    let root = match setting.section {
        Section::Tags => twin.get("tags"),
        Section::Desired => twin.get("properties").and_then(|p| p.get("desired")),
    };
    let node = match setting.section {
        // A twin without tags renders none: an absent section is an empty one.
        Section::Tags if root.is_none() => None,
        _ => lookup(root, &setting.path),
    };
    holds(node, &setting.value)
}

fn insert_at(target: &mut Map<String, Value>, path: &[String], value: Value) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut node = target;
    for segment in parents {
        let child = node
            .entry(segment.clone())
            .or_insert_with(|| Value::Object(Map::new()));
        if !child.is_object() {
            *child = Value::Object(Map::new());
        }
        let Value::Object(child) = child else {
            return;
        };
        node = child;
    }
    node.insert(last.clone(), value);
}

/// Returns the merge patch that writes `settings` (non-overlapping) into a twin.
pub fn patch_of<'a>(settings: impl IntoIterator<Item = &'a Setting>) -> TwinUpdate {
    let mut tags = Map::new();
    let mut desired = Map::new();
    for setting in settings {
        let target = match setting.section {
            Section::Tags => &mut tags,
            Section::Desired => &mut desired,
        };
        insert_at(target, &setting.path, setting.value.clone());
    }
    TwinUpdate {
        tags: (!tags.is_empty()).then_some(tags),
        desired: (!desired.is_empty()).then_some(desired),
    }
}

/// One module of an edge deployment: a whole desired document (base deployments) and/or
/// settings of paths below `properties.desired` (layered deployments).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct EdgeModule {
    /// `properties.desired`: replaces the module twin's desired properties.
    pub base: Option<Map<String, Value>>,
    /// `properties.desired.<path>`: merged on top.
    pub paths: Vec<(Vec<String>, Value)>,
}

/// What a module twin's desired properties become: an optional base document, then settings in
/// application order (later ones win).
#[derive(Debug, Clone, Default)]
pub struct Layers<'a> {
    /// The document that replaces the current one.
    pub base: Option<&'a Map<String, Value>>,
    /// Settings, lowest priority first.
    pub paths: Vec<&'a (Vec<String>, Value)>,
}

impl EdgeModule {
    /// The layers of this module alone.
    pub fn layers_of(module: &Self) -> Layers<'_> {
        Layers {
            base: module.base.as_ref(),
            paths: module.paths.iter().collect(),
        }
    }
}

/// Reads `modulesContent`: module name → `{"properties.desired": {…}}` and/or
/// `{"properties.desired.<path>": value}`.
///
/// # Errors
/// A message naming the first module or key that breaks the rules.
pub fn edge_modules(content: &Map<String, Value>) -> Result<BTreeMap<String, EdgeModule>, String> {
    let mut modules = BTreeMap::new();
    for (name, module) in content {
        outpost_model::ModuleId::new(name).map_err(|error| format!("modulesContent: {error}"))?;
        let Value::Object(keys) = module else {
            return Err(format!("modulesContent of '{name}' must be an object"));
        };
        let mut edge = EdgeModule {
            base: None,
            paths: Vec::new(),
        };
        for (key, value) in keys {
            match split_path(key, "properties.desired") {
                Some(Ok(path)) if path.is_empty() => match value {
                    Value::Object(document) => edge.base = Some(document.clone()),
                    _ => return Err(format!("'{key}' of module '{name}' must be an object")),
                },
                Some(Ok(path)) => edge.paths.push((path, value.clone())),
                Some(Err(error)) => return Err(error),
                None => {
                    return Err(format!(
                        "key '{key}' of module '{name}' is not 'properties.desired' or 'properties.desired.<path>'"
                    ));
                }
            }
        }
        modules.insert(name.clone(), edge);
    }
    Ok(modules)
}

/// Returns whether a deployment is a base deployment (some module has a whole desired document)
/// rather than a layered one.
pub fn is_base(modules: &BTreeMap<String, EdgeModule>) -> bool {
    modules.values().any(|module| module.base.is_some())
}

/// Removes `null` members: desired properties cannot hold null (a patch's null deletes).
fn without_nulls(document: &Map<String, Value>) -> Map<String, Value> {
    document
        .iter()
        .filter(|(_, value)| !value.is_null())
        .map(|(key, value)| match value {
            Value::Object(inner) => (key.clone(), Value::Object(without_nulls(inner))),
            other => (key.clone(), other.clone()),
        })
        .collect()
}

fn set_path(document: &mut Map<String, Value>, path: &[String], value: &Value) {
    match (path.split_last(), value) {
        (None, _) => {}
        (Some((last, parents)), Value::Null) => {
            if let Some(Value::Object(parent)) = lookup_mut(document, parents) {
                parent.remove(last);
            }
        }
        (Some(_), value) => {
            let value = match value {
                Value::Object(inner) => Value::Object(without_nulls(inner)),
                other => other.clone(),
            };
            insert_at(document, path, value);
        }
    }
}

fn lookup_mut<'a>(document: &'a mut Map<String, Value>, path: &[String]) -> Option<&'a mut Value> {
    let (first, rest) = path.split_first()?;
    let mut node = document.get_mut(first)?;
    for segment in rest {
        node = node.as_object_mut()?.get_mut(segment)?;
    }
    Some(node)
}

/// Returns the desired document a module twin should hold: the base (or, without one, the
/// current document) with the settings applied in order.
pub fn target_desired(current: &Map<String, Value>, layers: &Layers<'_>) -> Map<String, Value> {
    let mut document = without_nulls(layers.base.unwrap_or(current));
    for (path, value) in &layers.paths {
        set_path(&mut document, path, value);
    }
    document
}

/// Returns the merge patch that turns `current` into `target` (empty when they are equal).
pub fn merge_diff(current: &Map<String, Value>, target: &Map<String, Value>) -> Map<String, Value> {
    let mut patch = Map::new();
    for (key, wanted) in target {
        match (current.get(key), wanted) {
            (Some(Value::Object(have)), Value::Object(want)) => {
                let inner = merge_diff(have, want);
                if !inner.is_empty() {
                    patch.insert(key.clone(), Value::Object(inner));
                }
            }
            (Some(have), want) if have == want => {}
            // A new key, a changed value, or a scalar becoming an object (the merge turns the
            // scalar into an empty object first, so the result is exactly `want`).
            (_, want) => {
                patch.insert(key.clone(), want.clone());
            }
        }
    }
    for key in current.keys() {
        if !target.contains_key(key) {
            patch.insert(key.clone(), Value::Null);
        }
    }
    patch
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code")]

    use serde_json::json;

    use super::*;

    fn map(value: Value) -> Map<String, Value> {
        value.as_object().cloned().unwrap()
    }

    #[test]
    fn settings_read_paths_and_bare_sections() {
        let content = map(json!({
            "properties.desired.a.b": 1,
            "tags": {"site": "x"},
        }));
        let settings = settings_of(&content, true).unwrap();
        assert_eq!(settings.len(), 2);
        assert_eq!(settings[0].path, vec!["a", "b"]);
        assert_eq!(settings[1].section, Section::Tags);
        assert!(settings_of(&map(json!({"tags.x": 1})), false).is_err());
        assert!(settings_of(&map(json!({"properties.reported.x": 1})), true).is_err());
        assert!(settings_of(&map(json!({"properties.desired..x": 1})), true).is_err());
        assert!(settings_of(&map(json!({"properties.desiredx": 1})), true).is_err());
    }

    #[test]
    fn the_first_configuration_wins_overlapping_paths() {
        let high = settings_of(&map(json!({"properties.desired.a": {"x": 1}})), true).unwrap();
        let low = settings_of(
            &map(json!({"properties.desired.a.y": 2, "properties.desired.b": 3})),
            true,
        )
        .unwrap();
        let won = resolve([("high", high.as_slice()), ("low", low.as_slice())]);
        let ids: Vec<&str> = won.iter().map(|(id, _)| *id).collect();
        assert_eq!(ids, vec!["high", "low"]);
        assert_eq!(won[1].1.path, vec!["b"]);
    }

    #[test]
    fn a_twin_holds_what_a_merge_would_leave() {
        let twin = json!({"tags": {"a": 1}, "properties": {"desired": {"x": {"y": 1, "z": 2}}}});
        let setting = |section, path: &[&str], value| Setting {
            section,
            path: path.iter().map(|s| (*s).to_owned()).collect(),
            value,
        };
        assert!(twin_holds(
            &twin,
            &setting(Section::Desired, &["x"], json!({"y": 1}))
        ));
        assert!(!twin_holds(
            &twin,
            &setting(Section::Desired, &["x", "y"], json!(2))
        ));
        assert!(twin_holds(
            &twin,
            &setting(Section::Desired, &["gone"], Value::Null)
        ));
        assert!(twin_holds(&twin, &setting(Section::Tags, &["a"], json!(1))));
        assert!(!twin_holds(&json!({}), &setting(Section::Tags, &["a"], json!(1))));
    }

    #[test]
    fn layered_paths_go_over_the_base_and_the_diff_replaces_the_document() {
        let modules = edge_modules(&map(json!({
            "$edgeAgent": {"properties.desired": {"schemaVersion": "1.1", "modules": {"m": {"v": 1}}, "gone": null}},
        })))
        .unwrap();
        let layered = edge_modules(&map(json!({
            "$edgeAgent": {"properties.desired.modules.extra": {"v": 2}},
        })))
        .unwrap();
        assert!(is_base(&modules) && !is_base(&layered));
        let base = &modules["$edgeAgent"];
        let layer = &layered["$edgeAgent"];
        let layers = Layers {
            base: base.base.as_ref(),
            paths: layer.paths.iter().collect(),
        };
        let current = map(json!({"old": true, "schemaVersion": "1.0"}));
        let target = target_desired(&current, &layers);
        assert_eq!(
            Value::Object(target.clone()),
            json!({"schemaVersion": "1.1", "modules": {"m": {"v": 1}, "extra": {"v": 2}}})
        );
        let diff = merge_diff(&current, &target);
        assert_eq!(
            Value::Object(diff),
            json!({"old": null, "schemaVersion": "1.1", "modules": {"m": {"v": 1}, "extra": {"v": 2}}})
        );
        assert!(merge_diff(&target, &target).is_empty());
    }
}
