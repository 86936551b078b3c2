//! `outpost monitor-events` (mirrors `az iot hub monitor-events`): tails the built-in endpoint of
//! a hub through the operator API and prints each message with its properties and annotations.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Args;
use hyper::Method;
use serde_json::Value;

use crate::admin::{connect, encode, hub_name};
use crate::{GlobalArgs, Output};

/// Flags of `monitor-events`.
#[derive(Debug, Clone, Args)]
pub struct MonitorArgs {
    /// The hub (default: the first hub).
    #[arg(long)]
    hub: Option<String>,
    /// Only messages of this device.
    #[arg(long, short = 'd')]
    device_id: Option<String>,
    /// Start at the oldest retained message instead of now.
    #[arg(long)]
    from_beginning: bool,
    /// Stop after this many seconds (0: run until interrupted).
    #[arg(long, default_value_t = 300)]
    timeout: u64,
    /// Stop after this many messages.
    #[arg(long)]
    max_messages: Option<u64>,
}

/// Tails every partition of the hub, printing messages as they arrive.
pub async fn monitor_events(global: &GlobalArgs, args: MonitorArgs) -> anyhow::Result<()> {
    let client = connect(global)?;
    let hub = hub_name(&client, args.hub.clone()).await?;
    let partitions = client
        .call(Method::GET, &format!("/hubs/{}/partitions", encode(&hub)), None)
        .await?
        .body;
    let partitions = partitions
        .as_array()
        .context("the server answered no partition list")?;
    let mut next: Vec<u64> = partitions
        .iter()
        .map(|partition| {
            if args.from_beginning {
                partition["beginSequenceNumber"].as_u64().unwrap_or_default()
            } else {
                partition["lastEnqueuedSequenceNumber"]
                    .as_u64()
                    .map_or(0, |last| last + 1)
            }
        })
        .collect();
    let deadline = (args.timeout > 0).then(|| Instant::now() + Duration::from_secs(args.timeout));
    let mut printed = 0u64;
    if global.output == Output::Human {
        eprintln!(
            "Monitoring hub {hub} ({} partitions); Ctrl-C to stop.",
            next.len()
        );
    }
    loop {
        let mut idle = true;
        for (partition, from) in next.iter_mut().enumerate() {
            // Short waits per partition keep every partition responsive with one client.
            let wait_ms = 250 / u64::try_from(partitions.len().max(1)).unwrap_or(1);
            let path = format!(
                "/hubs/{}/events?partition={partition}&fromSequenceNumber={from}&max=100&waitMs={wait_ms}",
                encode(&hub)
            );
            let reply = client.call(Method::GET, &path, None).await?;
            if let Some(next) = reply.next_sequence_number {
                *from = (*from).max(next);
            }
            let events = reply.body;
            for event in events.as_array().into_iter().flatten() {
                idle = false;
                if let Some(sequence) = event["annotations"]["x-opt-sequence-number"].as_u64() {
                    *from = sequence + 1;
                }
                if args
                    .device_id
                    .as_deref()
                    .is_some_and(|device| event["origin"] != device)
                {
                    continue;
                }
                print_event(global.output, event);
                printed += 1;
                if args.max_messages.is_some_and(|max| printed >= max) {
                    return Ok(());
                }
            }
        }
        if deadline.is_some_and(|deadline| Instant::now() >= deadline) {
            return Ok(());
        }
        if idle {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn print_event(output: Output, event: &Value) {
    match output {
        Output::Json => println!("{event}"),
        Output::Human => {
            println!(
                "{}",
                serde_json::to_string_pretty(&serde_json::json!({ "event": event })).unwrap_or_default()
            );
        }
    }
}
