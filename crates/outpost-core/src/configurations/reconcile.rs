//! The reconciler: one pass over a hub's twins applies every configuration's content where its
//! target condition matches and computes the metrics `GET /configurations` shows.
//!
//! A twin is written only when the outcome of the configurations that target it changes (a new
//! target, another winner, a configuration added or removed) and then only with the settings it
//! does not hold yet; otherwise it is left alone, so a value changed by hand stays until the
//! outcome changes again (Azure applies on change too, not continuously). The outcome is
//! remembered in memory: after a restart the first pass re-checks every targeted twin. Twins that
//! stop being targeted keep the values they got (Azure does not remove them either).
//! Writes go through the registry's twin write with the twin's etag, so connected devices get
//! desired-property notifications and a concurrent write is never overwritten (the next pass
//! retries).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{Hash as _, Hasher as _};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use outpost_model::{DeviceId, Hub, HubName, ModuleId, Timestamp, TwinUpdate};
use outpost_query::{Query, Source};
use serde::Serialize;
use serde_json::{Map, Value, json};

use super::Configurations;
use super::content::{self, EdgeModule, Layers, Setting};
use super::model::{
    Configuration, ConfigurationKind, ConfigurationMetrics, Target, parse_metric, parse_target,
};
use crate::access::Caller;
use crate::twins::{device_twin_json, module_twin_json};
use crate::{CoreError, DeviceRecord, ModuleRecord, ModuleSpec, TwinWrite};

/// Device records read at a time during a pass.
const SCAN_BATCH: usize = 500;
/// The edge agent's module: edge deployment statuses and reports live on its twin.
const EDGE_AGENT: &str = "$edgeAgent";
/// Who manages the module identities created for edge deployments.
const EDGE_MANAGER: &str = "IotEdge";

/// Which twin an outcome belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum TwinKey {
    Device(DeviceId),
    Module(DeviceId, ModuleId),
    Edge(DeviceId),
}

/// The outcome last applied to a twin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Remembered {
    fingerprint: u64,
    applied: bool,
}

/// What the reconciler keeps per hub between passes.
#[derive(Debug, Default)]
pub(crate) struct HubState {
    metrics: HashMap<String, (Timestamp, ConfigurationMetrics)>,
    applied: HashMap<TwinKey, Remembered>,
}

impl HubState {
    /// Returns the metrics of the last pass for this configuration (not those of an earlier
    /// configuration with the same id).
    pub(crate) fn metrics_of(&self, configuration: &Configuration) -> Option<&ConfigurationMetrics> {
        self.metrics
            .get(&configuration.id)
            .filter(|(created, _)| *created == configuration.created_time_utc)
            .map(|(_, metrics)| metrics)
    }
}

/// A configuration ready to evaluate.
struct Compiled<'a> {
    configuration: &'a Configuration,
    kind: ConfigurationKind,
    target: Target,
    settings: Vec<Setting>,
    edge: BTreeMap<String, EdgeModule>,
    edge_base: bool,
    metrics: Vec<(String, Query)>,
}

impl<'a> Compiled<'a> {
    fn new(configuration: &'a Configuration) -> Result<Self, String> {
        let kind = configuration.kind();
        let target = parse_target(&configuration.target_condition, kind)?;
        let content = &configuration.content;
        let settings = match kind {
            ConfigurationKind::Device => content::settings_of(&content.device_content, true)?,
            ConfigurationKind::Module => content::settings_of(&content.module_content, false)?,
            ConfigurationKind::Edge => Vec::new(),
        };
        let edge = match kind {
            ConfigurationKind::Edge => content::edge_modules(&content.modules_content)?,
            _ => BTreeMap::new(),
        };
        let metrics = configuration
            .metric_queries
            .iter()
            .map(|(name, query)| parse_metric(query).map(|query| (name.clone(), query)))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            configuration,
            kind,
            target,
            edge_base: content::is_base(&edge),
            settings,
            edge,
            metrics,
        })
    }

    fn id(&self) -> &str {
        &self.configuration.id
    }
}

/// Orders configurations from the winner down: highest priority, then most recently created.
fn winner_first(a: &&Compiled<'_>, b: &&Compiled<'_>) -> std::cmp::Ordering {
    let key = |c: &Compiled<'_>| (c.configuration.priority, c.configuration.created_time_utc);
    key(b).cmp(&key(a)).then_with(|| a.id().cmp(b.id()))
}

fn fingerprint(value: &impl Serialize) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    serde_json::to_string(value).unwrap_or_default().hash(&mut hasher);
    hasher.finish()
}

/// What a twin write came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// The twin holds the content.
    Applied,
    /// The content cannot be applied (twin limits, rules): not retried until the outcome changes.
    Failed,
    /// Another writer won or storage failed: the next pass tries again.
    Retry,
}

fn classify(result: Result<(), CoreError>, what: &str) -> Outcome {
    match result {
        Ok(()) => Outcome::Applied,
        Err(CoreError::PreconditionFailed | CoreError::Contention | CoreError::Store(_)) => Outcome::Retry,
        Err(error) => {
            tracing::warn!(error = %error, twin = what, "a configuration could not be applied");
            Outcome::Failed
        }
    }
}

/// The state of one pass over a hub.
struct Pass<'a> {
    caller: Caller,
    compiled: &'a [Compiled<'a>],
    previous: HashMap<TwinKey, Remembered>,
    next: HashMap<TwinKey, Remembered>,
    counts: HashMap<String, ConfigurationMetrics>,
    needs_modules: bool,
}

impl Pass<'_> {
    fn count(&mut self, id: &str, metric: &str) {
        *self
            .counts
            .entry(id.to_owned())
            .or_default()
            .system
            .entry(metric.to_owned())
            .or_default() += 1;
    }

    fn count_custom(&mut self, source: Source, document: &Value) {
        for compiled in self.compiled {
            for (name, query) in &compiled.metrics {
                if query.source() == source && query.matches(document) {
                    *self
                        .counts
                        .entry(compiled.id().to_owned())
                        .or_default()
                        .custom
                        .entry(name.clone())
                        .or_default() += 1;
                }
            }
        }
    }

    /// Records statuses and counts of the configurations that target a twin.
    fn record(
        &mut self,
        targeted: &[&Compiled<'_>],
        contributors: &HashSet<String>,
        applied: bool,
    ) -> Map<String, Value> {
        let mut statuses = Map::new();
        for compiled in targeted {
            let id = compiled.id().to_owned();
            self.count(&id, "targetedCount");
            let status = if applied && contributors.contains(&id) {
                self.count(&id, "appliedCount");
                "Applied"
            } else {
                "Targeted"
            };
            statuses.insert(id, json!({ "status": status }));
        }
        statuses
    }
}

impl Configurations {
    /// Asks the reconciler for a pass now.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Runs the reconciler until `shutdown` resolves: a pass over every hub now, after every
    /// configuration change and every `interval`.
    pub fn spawn_reconciler(
        self: &Arc<Self>,
        interval: Duration,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> tokio::task::JoinHandle<()> {
        let this = Arc::clone(self);
        tokio::spawn(async move {
            tokio::pin!(shutdown);
            loop {
                this.reconcile_all().await;
                tokio::select! {
                    () = &mut shutdown => return,
                    () = this.wake.notified() => {}
                    () = tokio::time::sleep(interval) => {}
                }
            }
        })
    }

    /// Runs one pass over every hub; failures are logged and retried by the next pass.
    pub async fn reconcile_all(&self) {
        let hubs = self.hubs.list();
        for hub in &hubs {
            if let Err(error) = self.reconcile_hub(hub).await {
                tracing::warn!(hub = %hub.name, error = %error, "configuration pass failed");
            }
        }
        let live: HashSet<&HubName> = hubs.iter().map(|hub| &hub.name).collect();
        self.state.lock().retain(|name, _| live.contains(name));
    }

    /// Runs one pass over a hub's twins.
    ///
    /// # Errors
    /// Storage failures (the pass stops; the next one starts over).
    pub async fn reconcile_hub(&self, hub: &Arc<Hub>) -> Result<(), CoreError> {
        let _one_pass_at_a_time = self.pass.lock().await;
        let configurations = self.store.list_configurations(&hub.name).await?;
        if configurations.is_empty() {
            self.state.lock().remove(&hub.name);
            return Ok(());
        }
        let compiled: Vec<Compiled<'_>> = configurations
            .iter()
            .filter_map(|configuration| match Compiled::new(configuration) {
                Ok(compiled) => Some(compiled),
                Err(error) => {
                    tracing::warn!(configuration = %configuration.id, error = %error, "a stored configuration does not compile");
                    None
                }
            })
            .collect();
        let previous = self
            .state
            .lock()
            .get_mut(&hub.name)
            .map(|state| std::mem::take(&mut state.applied))
            .unwrap_or_default();
        let needs_modules = compiled.iter().any(|c| {
            c.kind == ConfigurationKind::Module
                || c.metrics.iter().any(|(_, q)| q.source() == Source::Modules)
        });
        let mut pass = Pass {
            caller: Caller::operator(Arc::clone(hub)),
            compiled: &compiled,
            previous,
            next: HashMap::new(),
            counts: HashMap::new(),
            needs_modules,
        };
        let mut after: Option<DeviceId> = None;
        loop {
            let batch = self
                .registry
                .store
                .list_devices(&hub.name, after.as_ref(), SCAN_BATCH)
                .await?;
            let full = batch.len() == SCAN_BATCH;
            for record in batch {
                after = Some(record.device.device_id.clone());
                self.reconcile_device(&mut pass, record).await?;
            }
            if !full {
                break;
            }
        }
        let metrics = compiled
            .iter()
            .map(|c| {
                let counts = pass.counts.remove(c.id()).unwrap_or_default();
                (c.id().to_owned(), (c.configuration.created_time_utc, counts))
            })
            .collect();
        let mut state = self.state.lock();
        let state = state.entry(hub.name.clone()).or_default();
        state.applied = pass.next;
        state.metrics = metrics;
        Ok(())
    }

    async fn reconcile_device(&self, pass: &mut Pass<'_>, mut record: DeviceRecord) -> Result<(), CoreError> {
        let hub = pass.caller.hub().name.clone();
        let device = record.device.device_id.clone();
        record.device = self.registry.with_presence(&hub, record.device);
        let mut twin = device_twin_json(&record);

        let mut targeted: Vec<&Compiled<'_>> = pass
            .compiled
            .iter()
            .filter(|c| c.kind == ConfigurationKind::Device && c.target.matches(&twin))
            .collect();
        targeted.sort_by(winner_first);
        let mut statuses = Map::new();
        if !targeted.is_empty() {
            let claims = content::resolve(targeted.iter().map(|c| (c.id(), c.settings.as_slice())));
            let key = TwinKey::Device(device.clone());
            let caller = pass.caller.clone();
            let wrote = AtomicBool::new(false);
            let applied = self
                .settle(pass, key, fingerprint(&claims), || async {
                    wrote.store(true, Ordering::Relaxed);
                    self.write_settings(&caller, &device, None, &twin, &claims).await
                })
                .await;
            let contributors = claims.iter().map(|(id, _)| (*id).to_owned()).collect();
            statuses = pass.record(&targeted, &contributors, applied);
            if wrote.load(Ordering::Relaxed)
                && let Some(mut stored) = self.registry.store.device(&hub, &device).await?
            {
                // Custom metrics count the twin as this pass left it.
                stored.value.device = self.registry.with_presence(&hub, stored.value.device);
                twin = device_twin_json(&stored.value);
            }
        }

        let edge_statuses = if record.device.capabilities.iot_edge {
            self.reconcile_edge(pass, &device, &twin).await?
        } else {
            Map::new()
        };

        if pass.needs_modules || !edge_statuses.is_empty() {
            for module in self.registry.store.list_modules(&hub, &device).await? {
                self.reconcile_module(pass, module, &edge_statuses).await;
            }
        }

        let mut document = twin;
        if let Value::Object(map) = &mut document {
            map.insert("configurations".into(), Value::Object(statuses));
        }
        pass.count_custom(Source::Devices, &document);
        Ok(())
    }

    /// Returns whether the twin holds the outcome `fingerprint` names, writing it first when the
    /// outcome changed since the last pass.
    async fn settle<F, Fut>(&self, pass: &mut Pass<'_>, key: TwinKey, fingerprint: u64, write: F) -> bool
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Outcome>,
    {
        let outcome = match pass.previous.get(&key) {
            Some(remembered) if remembered.fingerprint == fingerprint => {
                if remembered.applied {
                    Outcome::Applied
                } else {
                    Outcome::Failed
                }
            }
            _ => write().await,
        };
        if outcome != Outcome::Retry {
            pass.next.insert(
                key,
                Remembered {
                    fingerprint,
                    applied: outcome == Outcome::Applied,
                },
            );
        }
        outcome == Outcome::Applied
    }

    /// Writes the settings a twin does not hold yet, as one patch under its etag.
    async fn write_settings(
        &self,
        caller: &Caller,
        device: &DeviceId,
        module: Option<&ModuleId>,
        twin: &Value,
        claims: &[(&str, &Setting)],
    ) -> Outcome {
        let missing: Vec<&Setting> = claims
            .iter()
            .map(|(_, setting)| *setting)
            .filter(|setting| !content::twin_holds(twin, setting))
            .collect();
        if missing.is_empty() {
            return Outcome::Applied;
        }
        let update = content::patch_of(missing);
        let etag = twin.get("etag").and_then(Value::as_str);
        let result = match module {
            None => self
                .registry
                .write_device_twin(caller, device, &update, TwinWrite::Patch, etag)
                .await
                .map(drop),
            Some(module) => self
                .registry
                .write_module_twin(caller, device, module, &update, TwinWrite::Patch, etag)
                .await
                .map(drop),
        };
        let what = match module {
            Some(module) => format!("{device}/{module}"),
            None => device.to_string(),
        };
        classify(result, &what)
    }

    async fn reconcile_module(
        &self,
        pass: &mut Pass<'_>,
        mut record: ModuleRecord,
        edge_statuses: &Map<String, Value>,
    ) {
        let hub = pass.caller.hub().name.clone();
        let device = record.module.device_id.clone();
        let module = record.module.module_id.clone();
        record.module = self.registry.with_module_presence(&hub, record.module);
        let mut twin = module_twin_json(&record);
        let mut targeted: Vec<&Compiled<'_>> = pass
            .compiled
            .iter()
            .filter(|c| c.kind == ConfigurationKind::Module && c.target.matches(&twin))
            .collect();
        targeted.sort_by(winner_first);
        let mut statuses = Map::new();
        if !targeted.is_empty() {
            let claims = content::resolve(targeted.iter().map(|c| (c.id(), c.settings.as_slice())));
            let key = TwinKey::Module(device.clone(), module.clone());
            let caller = pass.caller.clone();
            let wrote = AtomicBool::new(false);
            let applied = self
                .settle(pass, key, fingerprint(&claims), || async {
                    wrote.store(true, Ordering::Relaxed);
                    self.write_settings(&caller, &device, Some(&module), &twin, &claims)
                        .await
                })
                .await;
            let contributors = claims.iter().map(|(id, _)| (*id).to_owned()).collect();
            statuses = pass.record(&targeted, &contributors, applied);
            if wrote.load(Ordering::Relaxed)
                && let Ok(Some(mut stored)) = self.registry.store.module(&hub, &device, &module).await
            {
                stored.value.module = self.registry.with_module_presence(&hub, stored.value.module);
                twin = module_twin_json(&stored.value);
            }
        }
        if module.as_str() == EDGE_AGENT {
            statuses.extend(edge_statuses.clone());
        }
        let mut document = twin;
        if let Value::Object(map) = &mut document {
            map.insert("configurations".into(), Value::Object(statuses));
        }
        pass.count_custom(Source::Modules, &document);
    }

    /// Applies the edge deployments that target an edge device: the highest base deployment and
    /// every layered one; returns the statuses for the `$edgeAgent` twin.
    async fn reconcile_edge(
        &self,
        pass: &mut Pass<'_>,
        device: &DeviceId,
        twin: &Value,
    ) -> Result<Map<String, Value>, CoreError> {
        let mut targeted: Vec<&Compiled<'_>> = pass
            .compiled
            .iter()
            .filter(|c| c.kind == ConfigurationKind::Edge && c.target.matches(twin))
            .collect();
        if targeted.is_empty() {
            return Ok(Map::new());
        }
        targeted.sort_by(winner_first);
        let base = targeted.iter().find(|c| c.edge_base).copied();
        // Application order: the base, then layers from the lowest priority up.
        let mut contributors: Vec<&Compiled<'_>> = base.into_iter().collect();
        contributors.extend(targeted.iter().rev().filter(|c| !c.edge_base));
        let mut layers: BTreeMap<String, Layers<'_>> = BTreeMap::new();
        for compiled in &contributors {
            for (name, module) in &compiled.edge {
                let entry = layers.entry(name.clone()).or_default();
                if module.base.is_some() {
                    entry.base = module.base.as_ref();
                }
                entry.paths.extend(module.paths.iter());
            }
        }
        let outline: Vec<(&str, Timestamp, i64)> = contributors
            .iter()
            .map(|c| (c.id(), c.configuration.created_time_utc, c.configuration.priority))
            .collect();
        let caller = pass.caller.clone();
        let applied = self
            .settle(
                pass,
                TwinKey::Edge(device.clone()),
                fingerprint(&outline),
                || async { classify(self.apply_edge(&caller, device, &layers).await, device.as_str()) },
            )
            .await;
        let names: HashSet<String> = contributors.iter().map(|c| c.id().to_owned()).collect();
        let statuses = pass.record(&targeted, &names, applied);
        if applied {
            let hub = &pass.caller.hub().name;
            let agent = ModuleId::new(EDGE_AGENT)?;
            if let Some(agent) = self.registry.store.module(hub, device, &agent).await? {
                let twin = &agent.value.twin;
                let reported = &twin.reported.properties;
                let current =
                    reported.get("lastDesiredVersion").and_then(Value::as_u64) == Some(twin.desired.version);
                let code = reported
                    .get("lastDesiredStatus")
                    .and_then(|status| status.get("code"))
                    .and_then(Value::as_i64);
                if let (true, Some(code)) = (current, code) {
                    let metric = if code == 200 {
                        "reportedSuccessfulCount"
                    } else {
                        "reportedFailedCount"
                    };
                    for id in &names {
                        pass.count(id, metric);
                    }
                }
            }
        }
        Ok(statuses)
    }

    /// Brings the module twins of an edge device to the layers: checks every module twin against
    /// the twin limits first, then creates missing module identities and writes each twin's
    /// difference under its etag.
    pub(super) async fn apply_edge(
        &self,
        caller: &Caller,
        device: &DeviceId,
        layers: &BTreeMap<String, Layers<'_>>,
    ) -> Result<(), CoreError> {
        let hub = &caller.hub().name;
        let now = self.registry.now();
        let mut planned = Vec::new();
        for (name, module_layers) in layers {
            let module = ModuleId::new(name)?;
            let current = self.registry.store.module(hub, device, &module).await?;
            let (twin, etag) = match &current {
                Some(stored) => (stored.value.twin.clone(), Some(stored.value.twin.etag())),
                None => (outpost_model::Twin::new(now), None),
            };
            let target = content::target_desired(&twin.desired.properties, module_layers);
            let diff = content::merge_diff(&twin.desired.properties, &target);
            let update = TwinUpdate {
                tags: None,
                desired: (!diff.is_empty()).then_some(diff),
            };
            let mut check = twin.clone();
            check
                .apply_patch(&update, now, &self.registry.twin_limits)
                .map_err(|error| CoreError::InvalidArgument(format!("module '{name}': {error}")))?;
            planned.push((module, current.is_some(), etag, update));
        }
        for (module, exists, etag, update) in planned {
            if !exists {
                let spec = ModuleSpec {
                    managed_by: Some(EDGE_MANAGER.into()),
                    ..ModuleSpec::default()
                };
                match self
                    .registry
                    .put_module(caller, device, &module, spec, None)
                    .await
                {
                    Ok(_) | Err(CoreError::ModuleAlreadyExists { .. }) => {}
                    Err(error) => return Err(error),
                }
            }
            if update.desired.is_none() {
                continue;
            }
            let if_match = etag.as_ref().map(|etag| etag.as_str());
            self.registry
                .write_module_twin(caller, device, &module, &update, TwinWrite::Patch, if_match)
                .await?;
        }
        Ok(())
    }
}
