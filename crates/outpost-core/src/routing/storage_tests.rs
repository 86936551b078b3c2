#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]

use std::collections::BTreeMap;

use outpost_model::{Annotations, EndpointName, SystemProperties};
use parking_lot::Mutex as PlMutex;
use serde_json::{Value, json};

use super::*;

fn message(body: &[u8], content_type: Option<&str>, content_encoding: Option<&str>, at: &str) -> Message {
    Message {
        properties: SystemProperties {
            message_id: Some("mid-1".into()),
            content_type: content_type.map(str::to_owned),
            content_encoding: content_encoding.map(str::to_owned),
            ..SystemProperties::default()
        },
        application_properties: vec![
            ("level".into(), "storage".into()),
            ("a \"q\"".into(), "é\n".into()),
        ],
        annotations: Annotations {
            device_id: "dev1".into(),
            module_id: None,
            auth_method: r#"{"scope":"device","type":"sas","issuer":"iothub","acceptingIpFilterRule":null}"#
                .into(),
            auth_generation_id: "636930642531278483".into(),
            enqueued_time: at.parse().unwrap(),
            message_source: "Telemetry".into(),
        },
        deliveries: Vec::new(),
        body: Bytes::copy_from_slice(body),
    }
}

fn event(sequence_number: u64, message: Message) -> RoutedEvent {
    RoutedEvent {
        partition: 1,
        sequence_number,
        offset: sequence_number * 100,
        message,
    }
}

fn batch(events: Vec<RoutedEvent>) -> RoutedBatch {
    RoutedBatch {
        hub: HubName::new("plant").unwrap(),
        endpoint: EndpointName::new("archive").unwrap(),
        partition: 1,
        events,
    }
}

const T0: &str = "2026-11-26T08:05:09.1234567Z";

#[test]
fn json_lines_have_azures_shape_and_base64_bodies() {
    let binary = event(7, message(&[0, 159, 146, 150], None, None, T0));
    let text = encode_json(std::slice::from_ref(&binary));
    let text = std::str::from_utf8(&text).unwrap();
    assert!(text.ends_with("}\n") && text.lines().count() == 1, "{text}");
    // Field order as Azure writes it.
    let positions: Vec<usize> = [
        "\"EnqueuedTimeUtc\"",
        "\"Properties\"",
        "\"SystemProperties\"",
        "\"Body\"",
    ]
    .iter()
    .map(|key| text.find(key).unwrap())
    .collect();
    assert!(positions.windows(2).all(|pair| pair[0] < pair[1]), "{text}");
    let record: Value = serde_json::from_str(text).unwrap();
    assert_eq!(record["EnqueuedTimeUtc"], T0);
    assert_eq!(
        record["Properties"],
        json!({"level": "storage", "a \"q\"": "é\n"})
    );
    assert_eq!(
        record["SystemProperties"],
        json!({
            "messageId": "mid-1",
            "connectionDeviceId": "dev1",
            "connectionAuthMethod": r#"{"scope":"device","type":"sas","issuer":"iothub","acceptingIpFilterRule":null}"#,
            "connectionDeviceGenerationId": "636930642531278483",
            "enqueuedTime": T0,
        })
    );
    assert_eq!(record["Body"], BASE64.encode([0u8, 159, 146, 150]));
}

#[test]
fn json_bodies_are_embedded_only_when_declared_json_in_utf8() {
    let pretty = b"{\n  \"temp\" : 21.50,\n  \"s\": \"a  b\\\" c\"\n}";
    let cases = [
        (Some("application/json"), Some("utf-8"), true),
        (Some("Application/JSON"), Some("UTF-8"), true),
        (Some("application/json; charset=utf-8"), Some("utf-8"), true),
        (Some("application/json"), None, false),
        (None, Some("utf-8"), false),
        (Some("text/plain"), Some("utf-8"), false),
        (Some("application/json"), Some("utf-16"), false),
    ];
    for (content_type, encoding, embedded) in cases {
        let line = encode_json(&[event(1, message(pretty, content_type, encoding, T0))]);
        let line = std::str::from_utf8(&line).unwrap();
        assert_eq!(line.lines().count(), 1, "{line}");
        let record: Value = serde_json::from_str(line).unwrap();
        if embedded {
            // Numbers and strings exactly as sent, whitespace between tokens gone.
            assert!(
                line.contains(r#""Body":{"temp":21.50,"s":"a  b\" c"}}"#),
                "{line}"
            );
            assert_eq!(record["Body"]["s"], "a  b\" c");
        } else {
            assert_eq!(
                record["Body"],
                BASE64.encode(pretty),
                "{content_type:?} {encoding:?}"
            );
        }
    }
    // Declared JSON that is not JSON stays base64: the line must stay valid.
    let broken = encode_json(&[event(
        1,
        message(b"{oops", Some("application/json"), Some("utf-8"), T0),
    )]);
    let record: Value = serde_json::from_slice(&broken).unwrap();
    assert_eq!(record["Body"], BASE64.encode(b"{oops"));
}

#[test]
fn module_messages_name_the_module() {
    let mut from_module = message(b"x", None, None, T0);
    from_module.annotations.module_id = Some("filter".into());
    from_module.properties.correlation_id = Some("c1".into());
    let record: Value = serde_json::from_slice(&encode_json(&[event(1, from_module)])).unwrap();
    assert_eq!(record["SystemProperties"]["connectionModuleId"], "filter");
    assert_eq!(record["SystemProperties"]["correlationId"], "c1");
}

/// A minimal reader of Avro object container files (codec `null`), enough for Azure's schema:
/// the check that the writer's bytes follow the specification, independent of the writer.
struct AvroReader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl AvroReader<'_> {
    fn long(&mut self) -> i64 {
        let (mut value, mut shift) = (0u64, 0);
        loop {
            let byte = self.bytes[self.at];
            self.at += 1;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                break;
            }
            shift += 7;
        }
        ((value >> 1) as i64) ^ -((value & 1) as i64)
    }
    fn bytes(&mut self) -> Vec<u8> {
        let len = usize::try_from(self.long()).unwrap();
        let out = self.bytes[self.at..self.at + len].to_vec();
        self.at += len;
        out
    }
    fn string(&mut self) -> String {
        String::from_utf8(self.bytes()).unwrap()
    }
    fn map(&mut self, value: impl Fn(&mut Self) -> Vec<u8>) -> BTreeMap<String, Vec<u8>> {
        let mut out = BTreeMap::new();
        loop {
            let mut count = self.long();
            if count == 0 {
                return out;
            }
            if count < 0 {
                count = -count;
                self.long();
            }
            for _ in 0..count {
                let key = self.string();
                out.insert(key, value(self));
            }
        }
    }
    fn fixed16(&mut self) -> [u8; 16] {
        let out: [u8; 16] = self.bytes[self.at..self.at + 16].try_into().unwrap();
        self.at += 16;
        out
    }
}

type Record = (
    String,
    BTreeMap<String, Vec<u8>>,
    BTreeMap<String, Vec<u8>>,
    Option<Vec<u8>>,
);

fn read_avro(file: &[u8]) -> (BTreeMap<String, Vec<u8>>, Vec<Record>, usize) {
    assert_eq!(&file[..4], b"Obj\x01");
    let mut reader = AvroReader { bytes: file, at: 4 };
    let metadata = reader.map(AvroReader::bytes);
    let sync = reader.fixed16();
    let (mut records, mut blocks) = (Vec::new(), 0);
    while reader.at < file.len() {
        let count = reader.long();
        let size = usize::try_from(reader.long()).unwrap();
        let start = reader.at;
        for _ in 0..count {
            let time = reader.string();
            let properties = reader.map(AvroReader::bytes);
            let system = reader.map(AvroReader::bytes);
            let body = match reader.long() {
                0 => None,
                1 => Some(reader.bytes()),
                other => panic!("bad union branch {other}"),
            };
            records.push((time, properties, system, body));
        }
        assert_eq!(reader.at - start, size, "block size");
        assert_eq!(reader.fixed16(), sync, "sync marker");
        blocks += 1;
    }
    (metadata, records, blocks)
}

#[test]
fn avro_files_follow_the_container_format_with_azures_schema() {
    let events = vec![
        event(
            3,
            message(br#"{"temp":1}"#, Some("application/json"), Some("utf-8"), T0),
        ),
        event(4, message(&[], None, None, "2026-11-26T08:05:59.9999999Z")),
    ];
    let routed = batch(events);
    let file = encode(StorageEncoding::Avro, &routed);
    assert_eq!(
        file,
        encode(StorageEncoding::Avro, &routed),
        "the same batch encodes the same bytes"
    );
    let (metadata, records, blocks) = read_avro(&file);
    assert_eq!(metadata["avro.codec"], b"null");
    let schema: Value = serde_json::from_slice(&metadata["avro.schema"]).unwrap();
    assert_eq!(schema["name"], "Message");
    assert_eq!(schema["namespace"], "Microsoft.Azure.Devices");
    assert_eq!(
        schema["fields"][3],
        json!({"name": "Body", "type": ["null", "bytes"]})
    );
    assert_eq!(blocks, 1);
    assert_eq!(records.len(), 2);
    let (time, properties, system, body) = &records[0];
    assert_eq!(time, T0);
    assert_eq!(properties["a \"q\""], "é\n".as_bytes());
    assert_eq!(system["connectionDeviceId"], b"dev1");
    assert_eq!(system["contentType"], b"application/json");
    assert_eq!(system["enqueuedTime"], T0.as_bytes());
    // Avro keeps the raw body even when it is JSON.
    assert_eq!(body.as_deref(), Some(&br#"{"temp":1}"#[..]));
    assert_eq!(records[1].3.as_deref(), Some(&b""[..]));
}

#[test]
fn large_avro_files_are_split_into_blocks_and_longs_are_zigzag() {
    let body = vec![0xabu8; 300 * 1024];
    let events: Vec<RoutedEvent> = (0..9).map(|n| event(n, message(&body, None, None, T0))).collect();
    let (_, records, blocks) = read_avro(&encode_avro(&events, [7; 16]));
    assert_eq!(records.len(), 9);
    assert!(blocks >= 3, "{blocks} blocks");
    assert!(
        records
            .iter()
            .all(|record| record.3.as_deref() == Some(&body[..]))
    );
    for value in [0i64, -1, 1, 63, -64, 64, 300, -300, i64::MAX, i64::MIN] {
        let mut out = BytesMut::new();
        put_long(&mut out, value);
        assert_eq!(AvroReader { bytes: &out, at: 0 }.long(), value);
    }
    let mut out = BytesMut::new();
    put_long(&mut out, -3);
    assert_eq!(&out[..], [5]);
    put_long(&mut out, 64);
    assert_eq!(&out[1..], [0x80, 0x01]);
}

#[test]
fn suffixes_go_before_the_extension_of_the_last_segment() {
    assert_eq!(
        with_sequence_suffix("plant/1/2026/11/26/08/05", 17),
        "plant/1/2026/11/26/08/05-17"
    );
    assert_eq!(
        with_sequence_suffix("2026/0805/plant-1.avro", 3),
        "2026/0805/plant-1-3.avro"
    );
    assert_eq!(with_sequence_suffix("a.b/c", 3), "a.b/c-3");
    assert_eq!(with_sequence_suffix("a/.hidden", 3), "a/.hidden-3");
}

#[test]
fn batch_policy_follows_the_endpoint() {
    let endpoint: StorageEndpoint = serde_json::from_value(
        json!({"directory": "/data/out", "batchFrequencyInSeconds": 60, "maxChunkSizeInBytes": 10485760}),
    )
    .unwrap();
    let policy = batch_policy(&endpoint);
    assert_eq!(policy.max_wait, Duration::from_secs(60));
    assert_eq!(policy.max_bytes, 10_485_760);
    assert!(policy.max_events >= 10_000);
}

/// A target that keeps what was written (a real map, no behaviour faked), failing on demand.
#[derive(Debug, Default)]
struct MemoryTarget {
    files: PlMutex<BTreeMap<String, Bytes>>,
    fail: PlMutex<bool>,
}

#[async_trait]
impl StorageTarget for MemoryTarget {
    async fn write(&self, name: &str, bytes: Bytes) -> Result<(), DeliveryError> {
        if *self.fail.lock() {
            return Err(DeliveryError::Unavailable("disk away".into()));
        }
        self.files.lock().insert(name.to_owned(), bytes);
        Ok(())
    }
}

fn json_endpoint() -> StorageEndpoint {
    serde_json::from_value(json!({"directory": "/data/out", "encoding": "json"})).unwrap()
}

#[tokio::test]
async fn files_get_azure_names_unless_a_minute_is_shared() {
    let target = Arc::new(MemoryTarget::default());
    let started: Timestamp = "2026-11-26T08:04:30Z".parse().unwrap();
    let sink = StorageSink::new(&json_endpoint(), target.clone(), started).unwrap();
    let at = |time: &str, seq: u64| batch(vec![event(seq, message(b"x", None, None, time))]);

    // The first file of a minute after the sink started: Azure's exact name.
    sink.deliver(&at("2026-11-26T08:05:09Z", 10)).await.unwrap();
    // A retry of the same batch rewrites the same file.
    sink.deliver(&at("2026-11-26T08:05:09Z", 10)).await.unwrap();
    // A second batch in the same minute must not replace the first.
    sink.deliver(&at("2026-11-26T08:05:40Z", 11)).await.unwrap();
    sink.deliver(&at("2026-11-26T08:05:40Z", 11)).await.unwrap();
    // The next minute is plain again.
    sink.deliver(&at("2026-11-26T08:06:00Z", 12)).await.unwrap();
    // A time going backwards (clock change) never reuses an earlier minute's plain name.
    sink.deliver(&at("2026-11-26T08:05:59Z", 13)).await.unwrap();
    let names: Vec<String> = target.files.lock().keys().cloned().collect();
    assert_eq!(
        names,
        [
            "plant/1/2026/11/26/08/05",
            "plant/1/2026/11/26/08/05-11",
            "plant/1/2026/11/26/08/05-13",
            "plant/1/2026/11/26/08/06",
        ]
    );
    let first: Value = serde_json::from_slice(&target.files.lock()["plant/1/2026/11/26/08/05"]).unwrap();
    assert_eq!(first["EnqueuedTimeUtc"], "2026-11-26T08:05:09.0000000Z");
}

#[tokio::test]
async fn the_start_minute_and_failed_writes_get_suffixes_deterministically() {
    let target = Arc::new(MemoryTarget::default());
    let started: Timestamp = "2026-11-26T08:05:30Z".parse().unwrap();
    let sink = StorageSink::new(&json_endpoint(), target.clone(), started).unwrap();
    // An earlier run may have written this minute's plain name: suffix.
    let early = batch(vec![event(5, message(b"x", None, None, "2026-11-26T08:05:10Z"))]);
    assert_eq!(
        sink.file_name(&early),
        ("plant/1/2026/11/26/08/05-5".to_owned(), false)
    );
    // A failed write changes nothing: the retry picks the same name.
    let next = batch(vec![event(6, message(b"y", None, None, "2026-11-26T08:06:10Z"))]);
    *target.fail.lock() = true;
    assert!(matches!(
        sink.deliver(&next).await,
        Err(DeliveryError::Unavailable(_))
    ));
    *target.fail.lock() = false;
    sink.deliver(&next).await.unwrap();
    assert!(target.files.lock().contains_key("plant/1/2026/11/26/08/06"));
    // Partitions are independent.
    let mut other = batch(vec![event(1, message(b"z", None, None, "2026-11-26T08:06:20Z"))]);
    other.partition = 0;
    sink.deliver(&other).await.unwrap();
    assert!(target.files.lock().contains_key("plant/0/2026/11/26/08/06"));
}

#[test]
fn invalid_formats_and_containers_are_refused() {
    let mut endpoint = json_endpoint();
    endpoint.file_name_format = "{iothub}/{partition}".into();
    let target: Arc<dyn StorageTarget> = Arc::new(MemoryTarget::default());
    assert!(StorageSink::new(&endpoint, target, Timestamp::now()).is_err());
    assert_eq!(
        routed_blob_name("routed", "plant/0/2026/11/26/08/05"),
        "~routed/routed/plant/0/2026/11/26/08/05"
    );
}

/// Writes one Avro and one JSON file through the sink into `$OUTPOST_ROUTING_SAMPLES`, for the
/// check with a real Avro reader (`compat/python/tests/routing_storage_files.py`, fastavro):
/// `OUTPOST_ROUTING_SAMPLES=/tmp/s cargo test -p outpost-core --lib write_samples -- --ignored`.
#[tokio::test]
#[ignore = "writes sample files for the Python reader check"]
async fn write_samples_for_the_python_reader() {
    let dir =
        std::path::PathBuf::from(std::env::var("OUTPOST_ROUTING_SAMPLES").expect("OUTPOST_ROUTING_SAMPLES"));
    for (encoding, sub) in [(StorageEncoding::Avro, "avro"), (StorageEncoding::Json, "json")] {
        let target = Arc::new(MemoryTarget::default());
        let mut endpoint = json_endpoint();
        endpoint.encoding = encoding;
        let sink =
            StorageSink::new(&endpoint, target.clone(), "2026-11-26T08:00:00Z".parse().unwrap()).unwrap();
        let mut module = message(&[0, 1, 2, 255], None, None, "2026-11-26T08:05:10Z");
        module.annotations.module_id = Some("filter".into());
        sink.deliver(&batch(vec![
            event(
                1,
                message(b"{\"temp\": 21.5}", Some("application/json"), Some("utf-8"), T0),
            ),
            event(2, module),
            event(3, message(b"", None, None, "2026-11-26T08:05:11Z")),
        ]))
        .await
        .unwrap();
        sink.deliver(&batch(vec![event(
            4,
            message(
                b"\"just a string\"",
                Some("application/json"),
                Some("UTF-8"),
                "2026-11-26T08:05:50Z",
            ),
        )]))
        .await
        .unwrap();
        for (name, bytes) in target.files.lock().iter() {
            let path = dir.join(sub).join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, bytes).unwrap();
        }
    }
}
