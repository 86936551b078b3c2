//! `outpost device-identity export|import` (mirrors `az iot hub device-identity export|import`):
//! starts an import or export job of the registry (`POST /jobs/create` through the operator API)
//! and, unless `--no-wait`, follows it until it ends.

use std::time::Duration;

use anyhow::bail;
use hyper::Method;
use serde_json::{Value, json};

use crate::GlobalArgs;
use crate::admin::{encode, hub_name, print};
use crate::client::OperatorClient;

/// How often a followed job is looked at.
const POLL: Duration = Duration::from_millis(500);

#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// The hub name (default: the first hub).
    #[arg(long)]
    hub: Option<String>,
    /// Where `devices.txt` goes: `https://<hub host>/fileuploads[/dir]?<container SAS with w>`
    /// or `file:///<data dir>/import-export/<dir>`.
    #[arg(long = "blob-container-uri", visible_alias = "bcu")]
    blob_container_uri: String,
    /// Export the symmetric keys too.
    #[arg(long = "include-keys", visible_alias = "ik")]
    include_keys: bool,
    /// Return once the job is enqueued.
    #[arg(long)]
    no_wait: bool,
}

#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// The hub name (default: the first hub).
    #[arg(long)]
    hub: Option<String>,
    /// Where `devices.txt` is read (a container SAS with r, or a `file://` directory).
    #[arg(long = "input-blob-container-uri", visible_alias = "ibcu")]
    input_blob_container_uri: String,
    /// Where `importErrors.log` goes (a container SAS with w, or a `file://` directory).
    #[arg(long = "output-blob-container-uri", visible_alias = "obcu")]
    output_blob_container_uri: String,
    /// Return once the job is enqueued.
    #[arg(long)]
    no_wait: bool,
}

/// `device-identity export`.
pub async fn export(global: &GlobalArgs, client: &OperatorClient, args: ExportArgs) -> anyhow::Result<()> {
    let request = json!({
        "type": "export",
        "outputBlobContainerUri": args.blob_container_uri,
        "excludeKeysInExport": !args.include_keys,
    });
    run(global, client, args.hub, request, args.no_wait).await
}

/// `device-identity import`.
pub async fn import(global: &GlobalArgs, client: &OperatorClient, args: ImportArgs) -> anyhow::Result<()> {
    let request = json!({
        "type": "import",
        "inputBlobContainerUri": args.input_blob_container_uri,
        "outputBlobContainerUri": args.output_blob_container_uri,
    });
    run(global, client, args.hub, request, args.no_wait).await
}

async fn run(
    global: &GlobalArgs,
    client: &OperatorClient,
    hub: Option<String>,
    request: Value,
    no_wait: bool,
) -> anyhow::Result<()> {
    let hub = hub_name(client, hub).await?;
    let mut job = client
        .service(&hub, Method::POST, "/jobs/create", Some(&request))
        .await?
        .body;
    let Some(id) = job["jobId"].as_str().map(str::to_owned) else {
        bail!("the server answered no job id: {job}");
    };
    while !no_wait && !matches!(job["status"].as_str(), Some("completed" | "failed" | "cancelled")) {
        tokio::time::sleep(POLL).await;
        job = client
            .service(&hub, Method::GET, &format!("/jobs/{}", encode(&id)), None)
            .await?
            .body;
    }
    print(global.output, &job, |job| {
        let mut line = format!(
            "job {} ({}): {}, {}%",
            job["jobId"].as_str().unwrap_or_default(),
            job["type"].as_str().unwrap_or_default(),
            job["status"].as_str().unwrap_or_default(),
            job["progress"]
        );
        if let Some(reason) = job["failureReason"].as_str() {
            line.push_str(&format!(": {reason}"));
        }
        line
    });
    if job["status"] == "failed" {
        bail!("the job failed");
    }
    Ok(())
}
