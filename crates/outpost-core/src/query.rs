//! Registry queries (`POST /devices/query`, wire contract §5): the IoT Hub query language of
//! `outpost-query` over the hub's device and module twins, one page at a time.
//!
//! Plain queries scan identities in id order straight from the store (so a query sees every write
//! acknowledged before it, read-your-writes) and stop once the page is full; the continuation
//! token says where the next page resumes. Aggregates (`COUNT()`, `GROUP BY`) read the whole
//! registry and answer in one page.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use outpost_model::{DeviceId, ModuleId};
use outpost_query::{Projection, Query, Source};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::CoreError;
use crate::access::{Caller, Permission};
use crate::registry::Registry;
use crate::twins::{device_twin_json, module_twin_json};

/// Most items in one page (`x-ms-max-item-count` is clamped to it).
pub const MAX_PAGE_ITEMS: usize = 1000;
/// Items in a page when the caller does not say (Azure's default).
pub const DEFAULT_PAGE_ITEMS: usize = 100;
/// Device records read from the store at a time while scanning.
const SCAN_BATCH: usize = 1000;

/// What kind of items a page holds (`x-ms-item-type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ItemType {
    /// Whole device or module twins (`SELECT *`).
    Twin,
    /// Device job records (`FROM devices.jobs`).
    DeviceJob,
    /// Projections and aggregates.
    Raw,
}

impl ItemType {
    /// The header value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Twin => "Twin",
            Self::DeviceJob => "DeviceJob",
            Self::Raw => "Raw",
        }
    }
}

/// One page of results.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryPage {
    /// The items.
    pub items: Vec<Value>,
    /// Their kind.
    pub item_type: ItemType,
    /// Where the next page resumes, when there is one.
    pub continuation: Option<String>,
}

/// Where a scan resumes: after this device (and, for module queries, after this module of it),
/// with this many items already returned (for `TOP`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Resume {
    #[serde(rename = "d")]
    device: String,
    #[serde(rename = "m", default, skip_serializing_if = "Option::is_none")]
    module: Option<String>,
    #[serde(rename = "n")]
    returned: usize,
}

impl Resume {
    fn encode(&self) -> String {
        // Plain strings and a number: serialising cannot fail.
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(self).unwrap_or_default())
    }

    fn decode(token: &str) -> Result<Self, CoreError> {
        let invalid = || CoreError::InvalidArgument("the continuation token is not valid".into());
        let bytes = URL_SAFE_NO_PAD.decode(token.trim()).map_err(|_| invalid())?;
        serde_json::from_slice(&bytes).map_err(|_| invalid())
    }
}

impl Registry {
    /// Parses and runs a query and returns the page that starts at `continuation` (the token of
    /// the previous page), with at most `page_size` items.
    ///
    /// # Errors
    /// `Query` for a query that does not parse (with the position); `InvalidArgument` for a
    /// malformed continuation token; storage failures.
    pub async fn query(
        &self,
        caller: &Caller,
        text: &str,
        continuation: Option<&str>,
        page_size: usize,
    ) -> Result<QueryPage, CoreError> {
        caller.require(Permission::RegistryRead)?;
        let query = Query::parse(text)?;
        let query = &query;
        let page_size = page_size.clamp(1, MAX_PAGE_ITEMS);
        let selects_all = matches!(query.statement().projection, Projection::All);
        let item_type = if query.is_aggregate() || !selects_all {
            ItemType::Raw
        } else if query.source() == Source::Jobs {
            ItemType::DeviceJob
        } else {
            ItemType::Twin
        };
        if query.source() == Source::Jobs {
            // Device job records of scheduled jobs, with their own continuation tokens.
            let store = self.job_store.get().map(|store| store.as_ref());
            return crate::jobs::query::query_device_jobs(store, caller, query, continuation, page_size)
                .await;
        }
        let resume = continuation.map(Resume::decode).transpose()?;
        if query.is_aggregate() {
            let mut documents = Vec::new();
            self.scan(caller, query.source(), None, |_, document| {
                documents.push(document);
                true
            })
            .await?;
            return Ok(QueryPage {
                items: query.run(documents.iter()),
                item_type,
                continuation: None,
            });
        }
        let mut resume = resume.unwrap_or_default();
        let limit = query.top().map_or(page_size, |top| {
            top.saturating_sub(resume.returned).min(page_size)
        });
        let mut items = Vec::new();
        let mut last = None;
        let mut more = false;
        if limit > 0 {
            let start = (!resume.device.is_empty()).then(|| resume.clone());
            self.scan(caller, query.source(), start, |position, document| {
                if items.len() == limit {
                    // One more match exists beyond the page: the next page starts here.
                    more = query.matches(&document);
                    return !more;
                }
                if query.matches(&document) {
                    items.push(query.project(&document));
                    last = Some(position);
                }
                true
            })
            .await?;
        }
        resume.returned += items.len();
        let top_reached = query.top().is_some_and(|top| resume.returned >= top);
        let continuation = match last {
            Some((device, module)) if more && !top_reached => Some(
                Resume {
                    device,
                    module,
                    returned: resume.returned,
                }
                .encode(),
            ),
            _ => None,
        };
        Ok(QueryPage {
            items,
            item_type,
            continuation,
        })
    }

    /// Calls `visit` with every twin of the source in id order, after `start` when given, until
    /// it returns false.
    async fn scan(
        &self,
        caller: &Caller,
        source: Source,
        start: Option<Resume>,
        mut visit: impl FnMut((String, Option<String>), Value) -> bool,
    ) -> Result<(), CoreError> {
        let hub = &caller.hub().name;
        let mut after = None;
        if let Some(resume) = start {
            let device = DeviceId::new(&resume.device)?;
            // A module query resumes inside the device it stopped in.
            if let (Source::Modules, Some(module)) = (source, &resume.module) {
                let skip_to = ModuleId::new(module)?;
                if !self
                    .visit_modules(caller, &device, Some(&skip_to), &mut visit)
                    .await?
                {
                    return Ok(());
                }
            }
            after = Some(device);
        }
        loop {
            let batch = self.store.list_devices(hub, after.as_ref(), SCAN_BATCH).await?;
            let full = batch.len() == SCAN_BATCH;
            for mut record in batch {
                let keep_going = if source == Source::Modules {
                    self.visit_modules(caller, &record.device.device_id, None, &mut visit)
                        .await?
                } else {
                    let position = (record.device.device_id.to_string(), None);
                    record.device = self.with_presence(hub, record.device);
                    visit(position, device_twin_json(&record))
                };
                if !keep_going {
                    return Ok(());
                }
                after = Some(record.device.device_id);
            }
            if !full {
                return Ok(());
            }
        }
    }

    /// Visits the module twins of `device` in id order, after `skip_to` when given; false when
    /// `visit` asked to stop.
    async fn visit_modules(
        &self,
        caller: &Caller,
        device: &DeviceId,
        skip_to: Option<&ModuleId>,
        visit: &mut impl FnMut((String, Option<String>), Value) -> bool,
    ) -> Result<bool, CoreError> {
        let hub = &caller.hub().name;
        for mut record in self.store.list_modules(hub, device).await? {
            if skip_to.is_some_and(|skip| &record.module.module_id <= skip) {
                continue;
            }
            let position = (device.to_string(), Some(record.module.module_id.to_string()));
            record.module = self.with_module_presence(hub, record.module);
            if !visit(position, module_twin_json(&record)) {
                return Ok(false);
            }
        }
        Ok(true)
    }
}
