//! Import and export jobs of the registry (`POST /jobs/create`, `GET /jobs`, `GET/DELETE
//! /jobs/{id}`; wire contract §5.2, JobProperties in §5.3): an export writes every device and
//! module of the hub, one `ExportImportDevice` JSON object per line, to `devices.txt` (or
//! `outputBlobName`) in a container; an import reads such lines (each with its `importMode`) and
//! applies them one by one, writing the lines that failed to `importErrors.log` next to the
//! output. With `includeConfigurations`, configurations travel the same way in
//! `configurations.txt`.
//!
//! A container is either the hub's own built-in blob endpoint
//! (`https://<hub host>/fileuploads?<container SAS>`, as `POST /hubs/{hub}/files/sas` mints it;
//! the SAS must grant what the job does) or a directory under the server's import-export
//! directory (`file:///…`): a service credential never reaches other files or another hub.
//!
//! Jobs run in the background, one task each; their records are kept in memory (a restart forgets
//! them, and an import cut short by one is not resumed: its lines are idempotent to re-run with
//! `createOrUpdate`).

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use bytes::Bytes;
use outpost_auth::storage_sas::{SasPermission, StorageSas};
use outpost_model::{DeviceId, HasErrorCode, Hub, HubName, Timestamp};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, BufReader};

use crate::access::{Caller, Permission};
use crate::blobs::{BUILTIN_CONTAINER, BlobError, Blobs, ByteSource, Condition, ContentSettings};
use crate::bulk::BulkItem;
use crate::configurations::{ConfigurationSpec, Configurations};
use crate::registry::Registry;
use crate::twins::{device_twin_json, module_twin_json};
use crate::{Clock, CoreError};

/// The blob an export writes and an import reads when the job names none (Azure's default).
pub const DEVICES_BLOB: &str = "devices.txt";
/// The blob of configurations when the job names none (Azure's default).
pub const CONFIGURATIONS_BLOB: &str = "configurations.txt";
/// The blob an import writes its failed lines to.
pub const IMPORT_ERRORS_BLOB: &str = "importErrors.log";
/// Longest line of an import file.
pub const MAX_IMPORT_LINE_BYTES: usize = 64 * 1024;
/// Jobs kept per hub (the oldest finished ones are forgotten first).
pub const MAX_JOBS_PER_HUB: usize = 100;

/// An import or export job, in Azure's `JobProperties` shape.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobProperties {
    /// The job id (the hub assigns it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
    /// When it started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time_utc: Option<String>,
    /// When it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_time_utc: Option<String>,
    /// `import` or `export`.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// `enqueued`, `running`, `completed`, `failed` or `cancelled`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// Percent done.
    #[serde(default)]
    pub progress: u8,
    /// Where an import reads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_blob_container_uri: Option<String>,
    /// The blob an import reads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_blob_name: Option<String>,
    /// Where an export writes (and an import its error log).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_blob_container_uri: Option<String>,
    /// The blob an export writes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_blob_name: Option<String>,
    /// Leave the symmetric keys out of an export.
    #[serde(default)]
    pub exclude_keys_in_export: bool,
    /// `keyBased` (the SAS in the URI) is what Outpost serves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_authentication_type: Option<String>,
    /// Why the job failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
    /// Configurations too, one Configuration JSON per line of `configurationsBlobName`.
    #[serde(default)]
    pub include_configurations: bool,
    /// The blob of configurations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub configurations_blob_name: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Import,
    Export,
}

/// A container a job reads or writes.
#[derive(Debug, Clone)]
enum Container {
    /// The hub's built-in blob endpoint, with a blob name prefix (a virtual directory).
    BuiltIn { prefix: String },
    /// A directory on the server.
    Directory(PathBuf),
}

struct Running {
    job: JobProperties,
    cancel: Arc<AtomicBool>,
}

/// Import and export jobs of every hub.
pub struct RegistryJobs {
    registry: Arc<Registry>,
    blobs: Arc<Blobs>,
    clock: Arc<dyn Clock>,
    /// Where `file://` containers must be; `None` refuses them.
    directory: Option<PathBuf>,
    jobs: Arc<Mutex<HashMap<HubName, Vec<Running>>>>,
}

impl std::fmt::Debug for RegistryJobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryJobs")
            .field("directory", &self.directory)
            .finish_non_exhaustive()
    }
}

impl RegistryJobs {
    /// Builds the service; `directory` is where `file://` containers may point.
    pub fn new(
        registry: Arc<Registry>,
        blobs: Arc<Blobs>,
        clock: Arc<dyn Clock>,
        directory: Option<PathBuf>,
    ) -> Self {
        Self {
            registry,
            blobs,
            clock,
            directory,
            jobs: Arc::default(),
        }
    }

    /// Returns the same service over other blob settings (same jobs).
    #[must_use]
    pub fn with_blobs(&self, blobs: Arc<Blobs>) -> Self {
        Self {
            registry: self.registry.clone(),
            blobs,
            clock: self.clock.clone(),
            directory: self.directory.clone(),
            jobs: self.jobs.clone(),
        }
    }

    /// Checks and starts a job; returns it as enqueued.
    ///
    /// # Errors
    /// `InvalidArgument` for a missing or unusable container URI, a bad blob name or an unknown
    /// type; the rights an export (RegistryRead) or import (RegistryWrite) needs.
    pub fn create(
        &self,
        caller: &Caller,
        mut request: JobProperties,
        configurations: &Arc<Configurations>,
    ) -> Result<JobProperties, CoreError> {
        let invalid = |message: &str| CoreError::InvalidArgument(message.to_owned());
        let kind = match request.kind.as_deref().map(str::to_ascii_lowercase).as_deref() {
            Some("export") => Kind::Export,
            Some("import") => Kind::Import,
            _ => return Err(invalid("type must be 'import' or 'export'")),
        };
        caller.require(match kind {
            Kind::Export => Permission::RegistryRead,
            Kind::Import => Permission::RegistryWrite,
        })?;
        if request
            .storage_authentication_type
            .as_deref()
            .is_some_and(|kind| !kind.eq_ignore_ascii_case("keyBased"))
        {
            return Err(invalid(
                "only keyBased storage authentication (a SAS in the container URI) is supported",
            ));
        }
        let hub = caller.hub();
        let output_uri = request
            .output_blob_container_uri
            .clone()
            .ok_or_else(|| invalid("outputBlobContainerUri is required"))?;
        let output = self.container(hub, &output_uri, SasPermission::Write)?;
        let input = match kind {
            Kind::Import => {
                let uri = request
                    .input_blob_container_uri
                    .clone()
                    .ok_or_else(|| invalid("inputBlobContainerUri is required for an import"))?;
                Some(self.container(hub, &uri, SasPermission::Read)?)
            }
            Kind::Export => None,
        };
        for name in [
            &request.input_blob_name,
            &request.output_blob_name,
            &request.configurations_blob_name,
        ]
        .into_iter()
        .flatten()
        {
            check_blob_name(name)?;
        }
        let job_id = new_job_id(&self.clock.now());
        request.job_id = Some(job_id.clone());
        request.kind = Some(if kind == Kind::Export { "export" } else { "import" }.into());
        request.status = Some("enqueued".into());
        request.start_time_utc = Some(self.clock.now().to_string());
        request.progress = 0;
        let cancel = Arc::new(AtomicBool::new(false));
        {
            let mut jobs = self.jobs.lock();
            let list = jobs.entry(hub.name.clone()).or_default();
            if list.len() >= MAX_JOBS_PER_HUB {
                // Forget the oldest finished job; with none finished the hub is at its quota.
                let Some(at) = list.iter().position(|job| is_finished(&job.job)) else {
                    return Err(CoreError::TooManyItems(format!(
                        "at most {MAX_JOBS_PER_HUB} import and export jobs per hub"
                    )));
                };
                list.remove(at);
            }
            list.push(Running {
                job: request.clone(),
                cancel: cancel.clone(),
            });
        }
        let work = Work {
            jobs: self.jobs.clone(),
            registry: self.registry.clone(),
            blobs: self.blobs.clone(),
            clock: self.clock.clone(),
            caller: caller.clone(),
            job_id,
            cancel,
            exclude_keys: request.exclude_keys_in_export,
            configurations: request.include_configurations.then(|| {
                (
                    configurations.clone(),
                    request
                        .configurations_blob_name
                        .clone()
                        .unwrap_or_else(|| CONFIGURATIONS_BLOB.into()),
                )
            }),
        };
        let output_name = request
            .output_blob_name
            .clone()
            .unwrap_or_else(|| DEVICES_BLOB.into());
        let input_name = request
            .input_blob_name
            .clone()
            .unwrap_or_else(|| DEVICES_BLOB.into());
        tokio::spawn(async move {
            let outcome = match (kind, input) {
                (Kind::Export, _) => work.export(&output, &output_name).await,
                (Kind::Import, Some(input)) => work.import(&input, &input_name, &output).await,
                (Kind::Import, None) => Err("no input container".into()),
            };
            work.finish(outcome);
        });
        Ok(request)
    }

    /// Returns the hub's jobs, oldest first.
    ///
    /// # Errors
    /// RegistryRead is needed.
    pub fn list(&self, caller: &Caller) -> Result<Vec<JobProperties>, CoreError> {
        caller.require(Permission::RegistryRead)?;
        let jobs = self.jobs.lock();
        Ok(jobs
            .get(&caller.hub().name)
            .map(|list| list.iter().map(|running| running.job.clone()).collect())
            .unwrap_or_default())
    }

    /// Returns one job.
    ///
    /// # Errors
    /// `JobNotFound`; RegistryRead is needed.
    pub fn get(&self, caller: &Caller, id: &str) -> Result<JobProperties, CoreError> {
        caller.require(Permission::RegistryRead)?;
        let jobs = self.jobs.lock();
        jobs.get(&caller.hub().name)
            .and_then(|list| {
                list.iter()
                    .find(|running| running.job.job_id.as_deref() == Some(id))
            })
            .map(|running| running.job.clone())
            .ok_or_else(|| CoreError::JobNotFound(id.to_owned()))
    }

    /// Cancels a job that has not finished; a finished one stays as it is.
    ///
    /// # Errors
    /// `JobNotFound`; RegistryWrite is needed.
    pub fn cancel(&self, caller: &Caller, id: &str) -> Result<JobProperties, CoreError> {
        caller.require(Permission::RegistryWrite)?;
        let mut jobs = self.jobs.lock();
        let running = jobs
            .get_mut(&caller.hub().name)
            .and_then(|list| {
                list.iter_mut()
                    .find(|running| running.job.job_id.as_deref() == Some(id))
            })
            .ok_or_else(|| CoreError::JobNotFound(id.to_owned()))?;
        if !is_finished(&running.job) {
            running.cancel.store(true, Ordering::Relaxed);
            running.job.status = Some("cancelled".into());
            running.job.end_time_utc = Some(self.clock.now().to_string());
        }
        Ok(running.job.clone())
    }

    /// Forgets a deleted hub's jobs (running ones stop at their next step).
    pub fn drop_hub(&self, hub: &HubName) {
        if let Some(list) = self.jobs.lock().remove(hub) {
            for running in list {
                running.cancel.store(true, Ordering::Relaxed);
            }
        }
    }

    /// Resolves a container URI for `hub`, checking that it may be used as `permission` needs.
    fn container(&self, hub: &Hub, uri: &str, permission: SasPermission) -> Result<Container, CoreError> {
        let invalid = |message: String| CoreError::InvalidArgument(message);
        if let Some(path) = uri.strip_prefix("file://") {
            let root = self
                .directory
                .as_ref()
                .ok_or_else(|| invalid("file:// containers are not enabled on this server".into()))?;
            let path = Path::new(path);
            let relative = path
                .strip_prefix(root)
                .map_err(|_| invalid(format!("a file:// container must be under {}", root.display())))?;
            if relative
                .components()
                .any(|part| !matches!(part, Component::Normal(_)))
            {
                return Err(invalid("a file:// container may not use '..'".into()));
            }
            return Ok(Container::Directory(root.join(relative)));
        }
        let rest = uri.strip_prefix("https://").ok_or_else(|| {
            invalid("a container URI is https://<hub host>/fileuploads[/dir]?<SAS> or file:///…".into())
        })?;
        let (location, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (host, path) = location.split_once('/').unwrap_or((location, ""));
        if !outpost_auth::strip_port(host).eq_ignore_ascii_case(&hub.host_name) {
            return Err(invalid(format!(
                "the container must be this hub's blob endpoint (https://{}/{BUILTIN_CONTAINER})",
                hub.host_name
            )));
        }
        let mut segments = path.trim_end_matches('/').splitn(2, '/');
        if segments.next() != Some(BUILTIN_CONTAINER) {
            return Err(invalid(format!(
                "the hub's only container is '{BUILTIN_CONTAINER}'"
            )));
        }
        let prefix = segments.next().map(|dir| format!("{dir}/")).unwrap_or_default();
        let sas = StorageSas::parse(query)
            .map_err(|error| invalid(format!("the container SAS is not valid: {error}")))?
            .ok_or_else(|| invalid("the container URI carries no SAS".into()))?;
        self.blobs
            .verify_sas(hub, &sas, None, permission)
            .map_err(|error| invalid(format!("the container SAS does not allow this job: {error}")))?;
        Ok(Container::BuiltIn { prefix })
    }
}

/// What a job's task needs.
struct Work {
    jobs: Arc<Mutex<HashMap<HubName, Vec<Running>>>>,
    registry: Arc<Registry>,
    blobs: Arc<Blobs>,
    clock: Arc<dyn Clock>,
    caller: Caller,
    job_id: String,
    cancel: Arc<AtomicBool>,
    exclude_keys: bool,
    /// With `includeConfigurations`: the service and the blob name.
    configurations: Option<(Arc<Configurations>, String)>,
}

/// What the lines of an import file are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lines {
    /// `ExportImportDevice` objects.
    Identities,
    /// Configuration objects (with an optional `importMode`).
    Configurations,
}

impl Work {
    fn update(&self, change: impl FnOnce(&mut JobProperties)) {
        let mut jobs = self.jobs.lock();
        if let Some(running) = jobs.get_mut(&self.caller.hub().name).and_then(|list| {
            list.iter_mut()
                .find(|running| running.job.job_id.as_deref() == Some(&self.job_id))
        }) && !is_finished(&running.job)
        {
            change(&mut running.job);
        }
    }

    fn cancelled(&self) -> Result<(), String> {
        if self.cancel.load(Ordering::Relaxed) {
            Err("cancelled".into())
        } else {
            Ok(())
        }
    }

    fn finish(&self, outcome: Result<(), String>) {
        let now = self.clock.now().to_string();
        self.update(|job| {
            job.end_time_utc = Some(now);
            match outcome {
                Ok(()) => {
                    job.status = Some("completed".into());
                    job.progress = 100;
                }
                Err(reason) => {
                    tracing::info!(job = ?job.job_id, reason = %reason, "import/export job failed");
                    job.status = Some("failed".into());
                    job.failure_reason = Some(reason);
                }
            }
        });
    }

    /// Writes every device and module of the hub, in id order.
    async fn export(&self, output: &Container, name: &str) -> Result<(), String> {
        self.update(|job| job.status = Some("running".into()));
        let hub = &self.caller.hub().name;
        let store = &self.registry.store;
        let mut text = Vec::new();
        let mut after: Option<DeviceId> = None;
        loop {
            self.cancelled()?;
            let batch = store
                .list_devices(hub, after.as_ref(), 1000)
                .await
                .map_err(|error| error.to_string())?;
            let full = batch.len() == 1000;
            for record in &batch {
                let twin = device_twin_json(record);
                let device = &record.device;
                let mut line = json!({
                    "id": device.device_id,
                    "eTag": device.etag,
                    "status": device.status,
                    "statusReason": device.status_reason,
                    "authentication": authentication(&device.authentication, self.exclude_keys),
                    "twinETag": twin["etag"],
                    "tags": twin.get("tags").cloned().unwrap_or_else(|| json!({})),
                    "properties": user_properties(&twin["properties"]),
                    "capabilities": device.capabilities,
                });
                if let (Some(scope), Value::Object(map)) = (&device.device_scope, &mut line) {
                    map.insert("deviceScope".into(), json!(scope));
                    map.insert("parentScopes".into(), json!(device.parent_scopes));
                }
                push_line(&mut text, &line);
                for module in store
                    .list_modules(hub, &device.device_id)
                    .await
                    .map_err(|error| error.to_string())?
                {
                    let twin = module_twin_json(&module);
                    push_line(
                        &mut text,
                        &json!({
                            "id": module.module.device_id,
                            "moduleId": module.module.module_id,
                            "eTag": module.module.etag,
                            "managedBy": module.module.managed_by,
                            "authentication": authentication(&module.module.authentication, self.exclude_keys),
                            "twinETag": twin["etag"],
                            "tags": twin.get("tags").cloned().unwrap_or_else(|| json!({})),
                            "properties": user_properties(&twin["properties"]),
                        }),
                    );
                }
            }
            after = batch.last().map(|record| record.device.device_id.clone());
            if !full {
                break;
            }
        }
        self.cancelled()?;
        self.write(output, name, text).await?;
        if let Some((configurations, blob)) = &self.configurations {
            let mut text = Vec::new();
            for configuration in configurations
                .list(&self.caller, None)
                .await
                .map_err(|error| error.to_string())?
            {
                push_line(&mut text, &configuration);
            }
            self.write(output, blob, text).await?;
        }
        Ok(())
    }

    /// Applies every line of the input (and of the configurations blob when asked); failed lines
    /// go to the error log.
    async fn import(&self, input: &Container, name: &str, output: &Container) -> Result<(), String> {
        self.update(|job| job.status = Some("running".into()));
        let mut errors = self.import_lines(input, name, Lines::Identities).await?;
        if let Some((_, blob)) = &self.configurations {
            errors.extend(self.import_lines(input, blob, Lines::Configurations).await?);
        }
        if !errors.is_empty() {
            self.write(output, IMPORT_ERRORS_BLOB, errors).await?;
        }
        Ok(())
    }

    /// Applies the lines of one blob; returns the error log lines of those that failed.
    async fn import_lines(&self, input: &Container, name: &str, kind: Lines) -> Result<Vec<u8>, String> {
        let (size, reader) = self.open(input, name).await?;
        let mut lines = BufReader::new(reader.take(self.blobs.settings().max_blob_bytes)).split(b'\n');
        let mut errors = Vec::new();
        let (mut read, mut index) = (0u64, 0usize);
        while let Some(line) = lines.next_segment().await.map_err(|error| error.to_string())? {
            self.cancelled()?;
            read += line.len() as u64 + 1;
            index += 1;
            let text = String::from_utf8_lossy(&line);
            let text = text.trim();
            if text.is_empty() {
                continue;
            }
            let outcome = if line.len() > MAX_IMPORT_LINE_BYTES {
                Err(CoreError::InvalidArgument(format!(
                    "the line is longer than {MAX_IMPORT_LINE_BYTES} bytes"
                )))
            } else {
                self.import_line(index, text, kind).await
            };
            if let Err(error) = outcome {
                let id = serde_json::from_str::<Value>(text)
                    .ok()
                    .and_then(|value| value.get("id").cloned());
                let id_key = match kind {
                    Lines::Identities => "deviceId",
                    Lines::Configurations => "configurationId",
                };
                push_line(
                    &mut errors,
                    &json!({
                        "blob": name,
                        "line": index,
                        id_key: id,
                        "errorCode": error.code().name(),
                        "errorStatus": error.to_string(),
                    }),
                );
            }
            let progress = (read.min(size) * 99).checked_div(size).unwrap_or(0) as u8;
            self.update(|job| job.progress = progress);
        }
        Ok(errors)
    }

    /// Applies one line: an identity as the bulk API does, or a configuration by its
    /// `importMode` (`createOrUpdate` by default, `create`, `delete`).
    async fn import_line(&self, index: usize, text: &str, kind: Lines) -> Result<(), CoreError> {
        let Some((configurations, _)) = self
            .configurations
            .as_ref()
            .filter(|_| kind == Lines::Configurations)
        else {
            return match serde_json::from_str::<BulkItem>(text) {
                Ok(item) => self.registry.import_item(&self.caller, index, item).await,
                Err(error) => Err(CoreError::InvalidArgument(format!(
                    "not an ExportImportDevice: {error}"
                ))),
            };
        };
        let line: ConfigurationLine = serde_json::from_str(text)
            .map_err(|error| CoreError::InvalidArgument(format!("not a configuration: {error}")))?;
        let id = line
            .spec
            .id
            .clone()
            .ok_or_else(|| CoreError::InvalidArgument("the configuration has no id".into()))?;
        let mode = line.import_mode.as_deref().map(str::to_ascii_lowercase);
        match mode.as_deref() {
            Some("delete") => configurations.delete(&self.caller, &id, None).await,
            Some("create") => configurations
                .put(&self.caller, &id, line.spec, None)
                .await
                .map(|_| ()),
            None | Some("createorupdate") => {
                let exists = configurations.get(&self.caller, &id).await.is_ok();
                configurations
                    .put(&self.caller, &id, line.spec, exists.then_some("*"))
                    .await
                    .map(|_| ())
            }
            Some(other) => Err(CoreError::InvalidArgument(format!(
                "'{other}' is not an importMode of configurations (createOrUpdate, create, delete)"
            ))),
        }
    }

    async fn write(&self, container: &Container, name: &str, text: Vec<u8>) -> Result<(), String> {
        match container {
            Container::BuiltIn { prefix } => {
                let blob = format!("{prefix}{name}");
                let mut body = OneChunk(Some(Bytes::from(text)));
                let content = ContentSettings {
                    content_type: Some("text/plain; charset=utf-8".into()),
                    ..ContentSettings::default()
                };
                self.blobs
                    .put_blob(self.caller.hub(), &blob, &mut body, content, Condition::default())
                    .await
                    .map(|_| ())
                    .map_err(|error| error.to_string())
            }
            Container::Directory(directory) => {
                tokio::fs::create_dir_all(directory)
                    .await
                    .map_err(|error| error.to_string())?;
                let path = directory.join(name);
                let temporary = directory.join(format!(".{name}.partial"));
                tokio::fs::write(&temporary, &text)
                    .await
                    .map_err(|error| error.to_string())?;
                tokio::fs::rename(&temporary, &path)
                    .await
                    .map_err(|error| error.to_string())
            }
        }
    }

    async fn open(
        &self,
        container: &Container,
        name: &str,
    ) -> Result<(u64, std::pin::Pin<Box<dyn tokio::io::AsyncRead + Send>>), String> {
        match container {
            Container::BuiltIn { prefix } => {
                let blob = format!("{prefix}{name}");
                match self.blobs.read(self.caller.hub(), &blob, None).await {
                    Ok((properties, reader)) => Ok((properties.size, reader)),
                    Err(BlobError::NotFound) => Err(format!("the input blob '{blob}' does not exist")),
                    Err(error) => Err(error.to_string()),
                }
            }
            Container::Directory(directory) => {
                let file = tokio::fs::File::open(directory.join(name))
                    .await
                    .map_err(|error| format!("the input file '{name}' cannot be read: {error}"))?;
                let size = file.metadata().await.map(|meta| meta.len()).unwrap_or_default();
                Ok((size, Box::pin(file)))
            }
        }
    }
}

/// A line of a configurations blob: the configuration and how to apply it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConfigurationLine {
    import_mode: Option<String>,
    #[serde(flatten)]
    spec: ConfigurationSpec,
}

/// A body of one chunk, for blobs the hub writes itself.
struct OneChunk(Option<Bytes>);

#[async_trait::async_trait]
impl ByteSource for OneChunk {
    async fn next_chunk(&mut self) -> Result<Option<Bytes>, BlobError> {
        Ok(self.0.take())
    }
}

fn push_line(text: &mut Vec<u8>, value: &Value) {
    // Plain JSON values: serialising cannot fail.
    text.extend(serde_json::to_vec(value).unwrap_or_default());
    text.push(b'\n');
}

/// An identity's `authentication`, without its keys when asked.
fn authentication(authentication: &outpost_model::Authentication, exclude_keys: bool) -> Value {
    let mut value = json!(authentication);
    if exclude_keys && let Some(keys) = value.get_mut("symmetricKey").and_then(Value::as_object_mut) {
        keys.insert("primaryKey".into(), Value::Null);
        keys.insert("secondaryKey".into(), Value::Null);
    }
    value
}

/// Twin properties without `$metadata` and `$version`, as an import takes them back.
fn user_properties(properties: &Value) -> Value {
    let strip = |section: &Value| -> Value {
        let map: Map<String, Value> = section
            .as_object()
            .map(|map| {
                map.iter()
                    .filter(|(key, _)| !key.starts_with('$'))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            })
            .unwrap_or_default();
        Value::Object(map)
    };
    json!({ "desired": strip(&properties["desired"]), "reported": strip(&properties["reported"]) })
}

fn check_blob_name(name: &str) -> Result<(), CoreError> {
    if name.is_empty() || name.contains(['/', '\\']) || name.starts_with('.') || name.len() > 256 {
        return Err(CoreError::InvalidArgument(format!(
            "'{name}' is not a valid blob name for a job"
        )));
    }
    Ok(())
}

fn is_finished(job: &JobProperties) -> bool {
    matches!(job.status.as_deref(), Some("completed" | "failed" | "cancelled"))
}

/// A job id unique on this server: the time and a counter.
fn new_job_id(now: &Timestamp) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "{:x}-{:04x}",
        now.unix_millis().unwrap_or_default(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}
