//! The `outpost` binary end to end: `serve` on loopback, then the admin verbs from the same data
//! dir with no further arguments, in human and JSON output.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_outpost");

struct Serving {
    child: Child,
}

impl Serving {
    fn start(data_dir: &Path) -> Self {
        let child = Command::new(BIN)
            .args([
                "serve",
                "--https-listen",
                "127.0.0.1:0",
                "--operator-listen",
                "127.0.0.1:0",
            ])
            .args(["--mqtt-listen", "127.0.0.1:0"])
            .args(["--amqp-listen", "127.0.0.1:0"])
            .arg("--data-dir")
            .arg(data_dir)
            .env_remove("OUTPOST_CONFIG")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start outpost serve");
        let mut child = child;
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

fn json(data_dir: &Path, args: &[&str]) -> Value {
    let mut args = args.to_vec();
    args.extend(["--output", "json"]);
    serde_json::from_str(&ok(data_dir, &args)).unwrap()
}

#[test]
fn admin_verbs_manage_hubs_devices_modules_and_twins() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let _server = Serving::start(data);

    let hubs = json(data, &["hub", "list"]);
    assert_eq!(hubs[0]["name"], "localhost");
    let owner = ok(data, &["hub", "connection-string"]);
    assert!(
        owner
            .trim()
            .starts_with("HostName=localhost;SharedAccessKeyName=iothubowner;SharedAccessKey=")
    );

    let device = json(data, &["device-identity", "create", "-d", "dev1"]);
    assert_eq!(device["authentication"]["type"], "sas");
    let shown = ok(data, &["device-identity", "show", "-d", "dev1"]);
    assert!(shown.contains("deviceId:        dev1"), "{shown}");
    let cs = ok(data, &["device-identity", "connection-string", "-d", "dev1"]);
    let key = device["authentication"]["symmetricKey"]["primaryKey"]
        .as_str()
        .unwrap();
    assert_eq!(
        cs.trim(),
        format!("HostName=localhost;DeviceId=dev1;SharedAccessKey={key}")
    );

    let module = json(data, &["module-identity", "create", "-d", "dev1", "-m", "temp"]);
    assert_eq!(module["moduleId"], "temp");
    let module_cs = ok(
        data,
        &["module-identity", "connection-string", "-d", "dev1", "-m", "temp"],
    );
    assert!(module_cs.contains(";DeviceId=dev1;ModuleId=temp;"), "{module_cs}");

    json(
        data,
        &[
            "twin",
            "update",
            "-d",
            "dev1",
            "--desired",
            r#"{"interval": 5}"#,
            "--tags",
            r#"{"site": "north"}"#,
        ],
    );
    let twin = json(data, &["twin", "show", "-d", "dev1"]);
    assert_eq!(twin["properties"]["desired"]["interval"], 5);
    assert_eq!(twin["tags"]["site"], "north");
    assert!(
        !outpost(data, &["twin", "update", "-d", "dev1", "--desired", "not json"])
            .status
            .success()
    );

    ok(data, &["hub", "create", "plant1"]);
    let plant = ok(
        data,
        &[
            "hub",
            "connection-string",
            "--hub",
            "plant1",
            "--policy",
            "service",
        ],
    );
    assert!(
        plant.starts_with("HostName=plant1.localhost;SharedAccessKeyName=service;"),
        "{plant}"
    );
    let devices = json(data, &["device-identity", "list", "--hub", "plant1"]);
    assert_eq!(devices, serde_json::json!([]));

    ok(
        data,
        &[
            "device",
            "c2d-message",
            "send",
            "-d",
            "dev1",
            "--data",
            "hi",
            "--props",
            "a=1;b=2",
            "--ack",
            "full",
        ],
    );
    ok(
        data,
        &[
            "device",
            "c2d-message",
            "send",
            "-d",
            "dev1",
            "-m",
            "temp",
            "--input",
            "in1",
            "--data",
            "to module",
        ],
    );
    assert!(
        !outpost(
            data,
            &["device", "c2d-message", "send", "-d", "dev1", "-m", "temp"]
        )
        .status
        .success()
    );
    let purged = json(data, &["device", "c2d-message", "purge", "-d", "dev1"]);
    assert_eq!(purged["totalMessagesPurged"], 1);
    assert!(
        !outpost(
            data,
            &[
                "device",
                "c2d-message",
                "send",
                "-d",
                "dev1",
                "--ack",
                "sometimes"
            ]
        )
        .status
        .success()
    );

    let events = ok(data, &["monitor-events", "--timeout", "1", "--output", "json"]);
    assert!(events.trim().is_empty(), "no telemetry was sent: {events}");

    ok(data, &["device-identity", "delete", "-d", "dev1"]);
    let missing = outpost(data, &["device-identity", "show", "-d", "dev1"]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("DeviceNotFound"));
}

#[test]
fn admin_verbs_without_a_running_server_explain_why() {
    let dir = tempfile::tempdir().unwrap();
    let output = outpost(dir.path(), &["hub", "list"]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("is `outpost serve` running"));
}

#[test]
fn config_show_applies_flags_over_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(BIN)
        .args(["config", "show", "--https-listen", "127.0.0.1:9443"])
        .arg("--data-dir")
        .arg(dir.path())
        .env("OUTPOST_HUB_PARTITION_COUNT", "8")
        .env("OUTPOST_HTTPS_LISTEN", "127.0.0.1:1111")
        .output()
        .unwrap();
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(text.contains("listen = \"127.0.0.1:9443\""), "{text}");
    assert!(text.contains("partition_count = 8"), "{text}");
}
