//! `SELECT … FROM devices.jobs` (wire contract §5: `POST /devices/query`, item type
//! `DeviceJob`): the query language over the hub's device job records, ordered by job id then
//! device id, paged like twin queries.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use outpost_query::Query;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::JobStore;
use crate::access::Caller;
use crate::query::{ItemType, QueryPage};
use crate::{CoreError, StoreError};

/// Device job records read from the store at a time.
const SCAN_BATCH: usize = 1000;

/// Where a `devices.jobs` page resumes: after this record, with this many items returned.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Resume {
    #[serde(rename = "j")]
    job: String,
    #[serde(rename = "d")]
    device: String,
    #[serde(rename = "n")]
    returned: usize,
}

impl Resume {
    fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(self).unwrap_or_default())
    }

    fn decode(token: &str) -> Result<Self, CoreError> {
        let invalid = || CoreError::InvalidArgument("the continuation token is not valid".into());
        let bytes = URL_SAFE_NO_PAD.decode(token.trim()).map_err(|_| invalid())?;
        serde_json::from_slice(&bytes).map_err(|_| invalid())
    }
}

/// Calls `visit` with every device job record of the hub in order, after `start`, until it
/// returns false.
async fn scan(
    store: &dyn JobStore,
    caller: &Caller,
    start: Option<(String, String)>,
    mut visit: impl FnMut((String, String), Value) -> bool,
) -> Result<(), StoreError> {
    let hub = &caller.hub().name;
    let mut after = start;
    loop {
        let position = after
            .as_ref()
            .map(|(job, device)| (job.as_str(), device.as_str()));
        let batch = store.device_jobs(hub, position, SCAN_BATCH).await?;
        let full = batch.len() == SCAN_BATCH;
        for record in batch {
            let key = (record.job_id.clone(), record.device_id.clone());
            if !visit(key.clone(), record.to_json()) {
                return Ok(());
            }
            after = Some(key);
        }
        if !full {
            return Ok(());
        }
    }
}

/// Runs a parsed `FROM devices.jobs` query (the caller's rights are checked by the registry).
///
/// # Errors
/// `ArgumentInvalid` for a malformed continuation token; storage failures.
pub(crate) async fn query_device_jobs(
    store: Option<&dyn JobStore>,
    caller: &Caller,
    query: &Query,
    continuation: Option<&str>,
    page_size: usize,
) -> Result<QueryPage, CoreError> {
    let item_type =
        if query.is_aggregate() || !matches!(query.statement().projection, outpost_query::Projection::All) {
            ItemType::Raw
        } else {
            ItemType::DeviceJob
        };
    let resume = continuation.map(Resume::decode).transpose()?;
    let Some(store) = store else {
        return Ok(QueryPage {
            items: query.run(std::iter::empty()),
            item_type,
            continuation: None,
        });
    };
    if query.is_aggregate() {
        let mut documents = Vec::new();
        scan(store, caller, None, |_, document| {
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
        let start = (!resume.job.is_empty()).then(|| (resume.job.clone(), resume.device.clone()));
        scan(store, caller, start, |position, document| {
            if items.len() == limit {
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
        Some((job, device)) if more && !top_reached => Some(
            Resume {
                job,
                device,
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
