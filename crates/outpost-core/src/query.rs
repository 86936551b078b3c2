//! Registry queries (`POST /devices/query`, wire contract §5): the IoT Hub query language of
//! `outpost-query` over the hub's device and module twins, one page at a time.
//!
//! Plain queries scan identities in id order straight from the store (so a query sees every write
//! acknowledged before it, read-your-writes) and stop once the page is full; the continuation
//! token says where the next page resumes. Aggregates (`COUNT()`, `GROUP BY`) read the whole
//! registry and answer in one page.

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use outpost_model::{DeviceId, ModuleId};
use outpost_query::{Projection, Query, Source};
use serde::de::DeserializeOwned;
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

/// Where a paged scan resumes: after `position`, with `returned` items already returned (for
/// `TOP`). Opaque to clients (base64url of JSON); tampering only moves the caller's own scan.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Resume<P> {
    #[serde(rename = "p")]
    position: P,
    #[serde(rename = "n")]
    returned: usize,
}

impl<P: Serialize + DeserializeOwned> Resume<P> {
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

/// Documents a query pages through, in a stable order.
#[async_trait]
pub(crate) trait Documents: Sync {
    /// Where a document sits: a page resumes after it.
    type Position: Serialize + DeserializeOwned + Clone + Send;

    /// Calls `visit` with every document in order, after `start` when given, until it returns
    /// false.
    async fn scan(
        &self,
        start: Option<Self::Position>,
        visit: &mut (dyn FnMut(Self::Position, Value) -> bool + Send),
    ) -> Result<(), CoreError>;
}

/// Runs `query` over `documents` and returns the page that starts at `continuation`, with at
/// most `page_size` items; `whole` is the item type of `SELECT *`.
///
/// # Errors
/// `InvalidArgument` for a malformed continuation token; the scan's failures.
pub(crate) async fn page<D: Documents>(
    documents: &D,
    query: &Query,
    whole: ItemType,
    continuation: Option<&str>,
    page_size: usize,
) -> Result<QueryPage, CoreError> {
    let page_size = page_size.clamp(1, MAX_PAGE_ITEMS);
    let selects_all = matches!(query.statement().projection, Projection::All);
    let item_type = if query.is_aggregate() || !selects_all {
        ItemType::Raw
    } else {
        whole
    };
    let resume = continuation.map(Resume::<D::Position>::decode).transpose()?;
    if query.is_aggregate() {
        let mut all = Vec::new();
        documents
            .scan(None, &mut |_, document| {
                all.push(document);
                true
            })
            .await?;
        return Ok(QueryPage {
            items: query.run(all.iter()),
            item_type,
            continuation: None,
        });
    }
    let (start, mut returned) = match resume {
        Some(resume) => (Some(resume.position), resume.returned),
        None => (None, 0),
    };
    let limit = query
        .top()
        .map_or(page_size, |top| top.saturating_sub(returned).min(page_size));
    let mut items = Vec::new();
    let mut last = None;
    let mut more = false;
    if limit > 0 {
        documents
            .scan(start, &mut |position, document| {
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
    returned += items.len();
    let top_reached = query.top().is_some_and(|top| returned >= top);
    let continuation = last
        .filter(|_| more && !top_reached)
        .map(|position| Resume { position, returned }.encode());
    Ok(QueryPage {
        items,
        item_type,
        continuation,
    })
}

/// The device or module twins of the caller's hub, in id order: a position is the device and,
/// for module twins, the module.
struct Twins<'a> {
    registry: &'a Registry,
    caller: &'a Caller,
    source: Source,
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
        if query.source() == Source::Jobs {
            // Device job records of scheduled jobs.
            return match self.job_store.get() {
                Some(store) => {
                    let records = crate::jobs::query::DeviceJobs {
                        store: store.as_ref(),
                        caller,
                    };
                    page(&records, query, ItemType::DeviceJob, continuation, page_size).await
                }
                None => Ok(QueryPage {
                    items: query.run(std::iter::empty()),
                    item_type: ItemType::Raw,
                    continuation: None,
                }),
            };
        }
        let twins = Twins {
            registry: self,
            caller,
            source: query.source(),
        };
        page(&twins, query, ItemType::Twin, continuation, page_size).await
    }
}

#[async_trait]
impl Documents for Twins<'_> {
    type Position = (String, Option<String>);

    async fn scan(
        &self,
        start: Option<Self::Position>,
        visit: &mut (dyn FnMut(Self::Position, Value) -> bool + Send),
    ) -> Result<(), CoreError> {
        let (registry, caller, source) = (self.registry, self.caller, self.source);
        let hub = &caller.hub().name;
        let mut after = None;
        if let Some((device, module)) = start {
            let device = DeviceId::new(&device)?;
            // A module query resumes inside the device it stopped in.
            if let (Source::Modules, Some(module)) = (source, module) {
                let skip_to = ModuleId::new(&module)?;
                if !registry
                    .visit_modules(caller, &device, Some(&skip_to), visit)
                    .await?
                {
                    return Ok(());
                }
            }
            after = Some(device);
        }
        loop {
            let batch = registry
                .store
                .list_devices(hub, after.as_ref(), SCAN_BATCH)
                .await?;
            let full = batch.len() == SCAN_BATCH;
            for mut record in batch {
                let keep_going = if source == Source::Modules {
                    registry
                        .visit_modules(caller, &record.device.device_id, None, visit)
                        .await?
                } else {
                    let position = (record.device.device_id.to_string(), None);
                    record.device = registry.with_presence(hub, record.device);
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
}

impl Registry {
    /// Visits the module twins of `device` in id order, after `skip_to` when given; false when
    /// `visit` asked to stop.
    async fn visit_modules(
        &self,
        caller: &Caller,
        device: &DeviceId,
        skip_to: Option<&ModuleId>,
        visit: &mut (dyn FnMut((String, Option<String>), Value) -> bool + Send),
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
