//! The routing verbs end to end: `outpost serve` on loopback, then `routing-endpoint`, `route`
//! (with `test` and `fallback`), `message-enrichment` and `hub connection-string --stream` from
//! the same data dir, in human and JSON output.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_outpost");

struct Serving {
    child: Child,
}

impl Serving {
    fn start(data_dir: &Path) -> Self {
        let mut child = Command::new(BIN)
            .args([
                "serve",
                "--https-listen",
                "127.0.0.1:0",
                "--operator-listen",
                "127.0.0.1:0",
            ])
            .args(["--mqtt-listen", "127.0.0.1:0", "--amqp-listen", "127.0.0.1:0"])
            .arg("--data-dir")
            .arg(data_dir)
            .env_remove("OUTPOST_CONFIG")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start outpost serve");
        let deadline = Instant::now() + Duration::from_secs(30);
        while !data_dir.join("operator-endpoint").try_exists().unwrap() {
            if let Some(status) = child.try_wait().unwrap() {
                panic!("outpost serve exited early: {status}");
            }
            assert!(Instant::now() < deadline, "outpost serve did not become ready");
            #[allow(
                clippy::disallowed_methods,
                reason = "a plain test thread waiting for a child process"
            )]
            std::thread::sleep(Duration::from_millis(50));
        }
        Self { child }
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

fn outpost(data_dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .env_remove("OUTPOST_CONFIG")
        .output()
        .expect("run outpost")
}

fn ok(data_dir: &Path, args: &[&str]) -> String {
    let output = outpost(data_dir, args);
    assert!(
        output.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

fn fails(data_dir: &Path, args: &[&str]) -> String {
    let output = outpost(data_dir, args);
    assert!(!output.status.success(), "{args:?} succeeded");
    String::from_utf8(output.stderr).unwrap()
}

fn json(data_dir: &Path, args: &[&str]) -> Value {
    let mut args = args.to_vec();
    args.extend(["--output", "json"]);
    serde_json::from_str(&ok(data_dir, &args)).unwrap()
}

#[test]
fn routing_verbs_manage_endpoints_routes_enrichments_and_tests() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.as_path();
    let archive = dir.path().join("archive");
    let archive = archive.to_str().unwrap();
    let _server = Serving::start(data);

    // Endpoints of each kind.
    let hot = json(
        data,
        &[
            "routing-endpoint",
            "create",
            "-n",
            "hot",
            "--type",
            "eventstream",
            "--partitions",
            "3",
        ],
    );
    assert_eq!(
        hot,
        json!({ "name": "hot", "type": "eventStream", "partitionCount": 3 })
    );
    let files = json(
        data,
        &[
            "routing-endpoint",
            "create",
            "-n",
            "files",
            "--type",
            "storage",
            "--directory",
            archive,
            "--encoding",
            "json",
            "--batch-frequency",
            "60",
            "--chunk-size",
            "10",
        ],
    );
    assert_eq!(files["maxChunkSizeInBytes"], 10 * 1024 * 1024);
    assert_eq!(files["encoding"], "json");
    let hook = json(
        data,
        &[
            "routing-endpoint",
            "create",
            "-n",
            "hook",
            "--type",
            "webhook",
            "--url",
            "http://127.0.0.1:9/events",
            "--header",
            "x-api-key=secret",
            "--max-batch",
            "10",
            "--dead-letter-after",
            "0",
        ],
    );
    assert_eq!(
        hook["headers"],
        json!([{ "name": "x-api-key", "value": "secret" }])
    );
    assert_eq!(hook["deadLetterAfterSeconds"], 0);
    // Flags of another kind are refused before anything is sent.
    let wrong = fails(
        data,
        &[
            "routing-endpoint",
            "create",
            "-n",
            "x",
            "--type",
            "eventstream",
            "--url",
            "http://h/",
        ],
    );
    assert!(wrong.contains("only --partitions"), "{wrong}");
    let taken = fails(
        data,
        &["routing-endpoint", "create", "-n", "HOT", "--type", "eventstream"],
    );
    assert!(taken.contains("409"), "{taken}");
    let listed = ok(data, &["routing-endpoint", "list"]);
    assert!(
        listed.contains("hot") && listed.contains("3 partitions"),
        "{listed}"
    );
    assert!(
        listed.contains(&format!("directory {archive} (json)")),
        "{listed}"
    );
    let storage_only = json(data, &["routing-endpoint", "list", "--type", "storage"]);
    assert_eq!(storage_only.as_array().unwrap().len(), 1);
    assert_eq!(
        json(data, &["routing-endpoint", "show", "-n", "hook"])["url"],
        "http://127.0.0.1:9/events"
    );

    // Consumer groups of the stream.
    ok(
        data,
        &[
            "routing-endpoint",
            "consumer-group",
            "create",
            "--en",
            "hot",
            "-n",
            "readers",
        ],
    );
    assert_eq!(
        json(
            data,
            &["routing-endpoint", "consumer-group", "list", "--endpoint", "hot"]
        ),
        json!(["$Default", "readers"])
    );
    ok(
        data,
        &[
            "routing-endpoint",
            "consumer-group",
            "delete",
            "--en",
            "hot",
            "-n",
            "readers",
        ],
    );
    assert_eq!(
        json(
            data,
            &["routing-endpoint", "consumer-group", "list", "--en", "hot"]
        ),
        json!(["$Default"])
    );

    // Routes, with az's source spellings.
    let created = ok(
        data,
        &[
            "route",
            "create",
            "-n",
            "hot",
            "-s",
            "devicemessages",
            "-c",
            "$body.temp > 30",
            "--en",
            "hot",
        ],
    );
    assert!(created.contains("Created route hot"), "{created}");
    json(
        data,
        &[
            "route",
            "create",
            "-n",
            "twins",
            "-s",
            "twinchangeevents",
            "--endpoint",
            "events",
        ],
    );
    let bad = fails(
        data,
        &[
            "route",
            "create",
            "-n",
            "bad",
            "-s",
            "devicemessages",
            "-c",
            "temp >",
            "--en",
            "hot",
        ],
    );
    assert!(bad.contains("400") && bad.contains("column"), "{bad}");
    let bad_source = fails(
        data,
        &["route", "create", "-n", "bad", "-s", "nowhere", "--en", "hot"],
    );
    assert!(bad_source.contains("unknown source"), "{bad_source}");
    let routes = json(data, &["route", "list"]);
    assert_eq!(routes.as_array().unwrap().len(), 2);
    let twins_only = json(data, &["route", "list", "-s", "TwinChangeEvents"]);
    assert_eq!(twins_only[0]["name"], "twins");
    let updated = json(
        data,
        &[
            "route",
            "update",
            "-n",
            "twins",
            "--enabled",
            "false",
            "-c",
            "opType = 'updateTwin'",
        ],
    );
    assert_eq!(updated["isEnabled"], false);
    assert_eq!(updated["condition"], "opType = 'updateTwin'");
    assert_eq!(updated["source"], "TwinChangeEvents");
    assert_eq!(json(data, &["route", "show", "-n", "twins"]), updated);
    assert!(fails(data, &["route", "update", "-n", "nope", "--enabled", "true"]).contains("404"));

    // Route tests (nothing is sent).
    let sample = [
        "--body",
        "{\"temp\": 35}",
        "--system-properties",
        "contentType=application/json;contentEncoding=utf-8",
    ];
    let one = ok(data, &[&["route", "test", "-n", "hot"][..], &sample].concat());
    assert_eq!(one.trim(), "Route hot: true");
    let cold = json(data, &["route", "test", "-n", "hot", "--body", "{\"temp\": 35}"]);
    assert_eq!(cold, json!({ "result": "false" }));
    let all = json(data, &[&["route", "test"][..], &sample].concat());
    assert_eq!(all["routes"][0]["name"], "hot");
    let twin = ok(
        data,
        &[
            "route",
            "test",
            "-c",
            "$twin.tags.site = 'north' AND level = 'high'",
            "--app-properties",
            "level=high",
            "--twin-properties",
            "{\"tags\": {\"site\": \"north\"}}",
        ],
    );
    assert_eq!(twin.trim(), "Condition: true");
    let none = ok(data, &["route", "test", "-s", "devicelifecycleevents"]);
    assert_eq!(none.trim(), "No route matches");

    // The fallback route.
    assert!(ok(data, &["route", "fallback", "show"]).contains("enabled"));
    let off = json(data, &["route", "fallback", "set", "--enabled", "false"]);
    assert_eq!(off["isEnabled"], false);
    assert!(ok(data, &["route", "fallback", "show"]).contains(": disabled"));

    // Enrichments.
    let created = json(
        data,
        &[
            "message-enrichment",
            "create",
            "-k",
            "site",
            "-v",
            "$twin.tags.site",
            "-e",
            "hot,events",
        ],
    );
    assert_eq!(created["endpointNames"], json!(["hot", "events"]));
    let updated = json(
        data,
        &["message-enrichment", "update", "-k", "site", "-v", "north"],
    );
    assert_eq!(
        updated,
        json!({ "key": "site", "value": "north", "endpointNames": ["hot", "events"] })
    );
    assert!(ok(data, &["message-enrichment", "list"]).contains("north"));
    assert!(fails(data, &["message-enrichment", "update", "-k", "nope", "-v", "x"]).contains("404"));

    // An endpoint in use cannot go.
    let in_use = fails(data, &["routing-endpoint", "delete", "-n", "hot"]);
    assert!(
        in_use.contains("route 'hot'") && in_use.contains("enrichment 'site'"),
        "{in_use}"
    );
    ok(data, &["message-enrichment", "delete", "-k", "site"]);
    ok(data, &["route", "delete", "-n", "hot"]);
    assert!(ok(data, &["routing-endpoint", "delete", "-n", "hot"]).contains("Deleted routing endpoint hot"));
    assert!(fails(data, &["route", "show", "-n", "hot"]).contains("404"));

    // Health lists every custom endpoint.
    let health = json(data, &["routing-endpoint", "health"]);
    let ids: Vec<&str> = health
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["endpointId"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["files", "hook"]);
    assert!(ok(data, &["routing-endpoint", "health"]).contains("files"));

    // The Event Hubs connection string of a custom stream.
    ok(
        data,
        &[
            "routing-endpoint",
            "create",
            "-n",
            "alerts",
            "--type",
            "eventstream",
        ],
    );
    let stream = ok(
        data,
        &["hub", "connection-string", "--eventhub", "--stream", "alerts"],
    );
    assert!(
        stream
            .trim()
            .starts_with("Endpoint=sb://localhost/;SharedAccessKeyName=iothubowner;SharedAccessKey=")
    );
    assert!(stream.trim().ends_with(";EntityPath=alerts"), "{stream}");
    assert!(
        fails(
            data,
            &["hub", "connection-string", "--eventhub", "--stream", "files"]
        )
        .contains("not an event stream")
    );
}
