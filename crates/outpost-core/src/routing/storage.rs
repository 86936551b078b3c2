//! Storage endpoints: each batch a delivery worker hands over becomes one file, encoded the way
//! Azure IoT Hub writes routed messages to a storage container (Avro object container files, or
//! JSON lines), named by the endpoint's file name format (Azure's default
//! `{iothub}/{partition}/{YYYY}/{MM}/{DD}/{HH}/{mm}`, no extension), and written through a
//! [`StorageTarget`]: a directory (`outpost-store`'s `DirectoryTarget`) or a container of the
//! hub's built-in blob endpoint ([`BlobContainerTarget`]).
//!
//! The encoders are pure ([`encode_json`], [`encode_avro`]); [`StorageSink`] adds the naming.

use std::collections::HashMap;
use std::hash::{Hash as _, Hasher as _};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::{BufMut as _, Bytes, BytesMut};
use outpost_model::{HubName, Message, Timestamp};
use parking_lot::Mutex;

use super::model::{StorageEncoding, StorageEndpoint};
use super::sink::{BatchPolicy, DeliveryError, EndpointSink, RoutedBatch, RoutedEvent, StorageTarget};
use super::storage_names::{self, FileNameFormat};
use crate::blobs::{BlobError, BlobStore, BlobWrite, ByteSource, Condition, ContentSettings};
use crate::{Clock, CoreError};

/// The Avro schema of Azure's routed-message files: record `Message` of namespace
/// `Microsoft.Azure.Devices` (as Azure's own guide to reading them declares it,
/// MicrosoftDocs/azure-docs `articles/iot-hub/iot-hub-query-avro-data.md`).
pub const AVRO_SCHEMA: &str = concat!(
    r#"{"type":"record","name":"Message","namespace":"Microsoft.Azure.Devices","fields":["#,
    r#"{"name":"EnqueuedTimeUtc","type":"string"},"#,
    r#"{"name":"Properties","type":{"type":"map","values":"string"}},"#,
    r#"{"name":"SystemProperties","type":{"type":"map","values":"string"}},"#,
    r#"{"name":"Body","type":["null","bytes"]}]}"#
);

/// Avro object container files start with these four bytes.
const AVRO_MAGIC: &[u8; 4] = b"Obj\x01";
/// A new Avro block starts once the current one holds this many bytes (readers load a block
/// whole; Avro's own writers default to 64 KiB, a little more costs nothing here).
const AVRO_BLOCK_BYTES: usize = 1024 * 1024;
/// Most events in one storage batch (the size and time limits are the ones that matter).
const MAX_BATCH_EVENTS: usize = 100_000;
/// Largest file written into a blob container: Azure's largest chunk (500 MiB) plus room for
/// the encoding's overhead (base64 grows bodies by a third).
const MAX_ROUTED_BLOB_BYTES: u64 = 1024 * 1024 * 1024;

/// How a storage endpoint's delivery worker batches: a file per `batchFrequencyInSeconds` or
/// `maxChunkSizeInBytes` of message bodies, whichever comes first (Azure's two limits; the size
/// counts bodies, so a JSON file of base64 bodies can be a third larger).
pub fn batch_policy(endpoint: &StorageEndpoint) -> BatchPolicy {
    BatchPolicy {
        max_events: MAX_BATCH_EVENTS,
        max_bytes: usize::try_from(endpoint.max_chunk_size_in_bytes).unwrap_or(usize::MAX),
        max_wait: Duration::from_secs(u64::from(endpoint.batch_frequency_in_seconds)),
    }
}

/// The system properties of a routed record, in the order Azure writes them, under the names of
/// Azure's routing (`connectionDeviceId`…); absent properties are left out.
fn system_properties(message: &Message) -> Vec<(&'static str, String)> {
    let p = &message.properties;
    let a = &message.annotations;
    let mut out = Vec::with_capacity(12);
    let mut add = |name: &'static str, value: Option<&str>| {
        if let Some(value) = value {
            out.push((name, value.to_owned()));
        }
    };
    add("messageId", p.message_id.as_deref());
    add("correlationId", p.correlation_id.as_deref());
    add("userId", p.user_id.as_deref());
    add("to", p.to.as_deref());
    add("connectionDeviceId", Some(&a.device_id));
    add("connectionModuleId", a.module_id.as_deref());
    add(
        "connectionAuthMethod",
        Some(a.auth_method.as_str()).filter(|m| !m.is_empty()),
    );
    add(
        "connectionDeviceGenerationId",
        Some(a.auth_generation_id.as_str()).filter(|g| !g.is_empty()),
    );
    add("contentType", p.content_type.as_deref());
    add("contentEncoding", p.content_encoding.as_deref());
    add("dt-subject", p.subject.as_deref());
    out.push(("enqueuedTime", a.enqueued_time.to_string()));
    out
}

/// Returns the body as Azure's JSON encoding embeds it: the JSON value itself when the message
/// says `application/json` in UTF-8 (both case-insensitive) and the body parses, `None` (write
/// base64) otherwise. A body that claims JSON but does not parse is written as base64 rather
/// than producing a line that is not JSON (Azure does not say). The value is copied as sent,
/// only without the whitespace between tokens, so that a record stays on one line.
fn embedded_json_body(message: &Message) -> Option<String> {
    let p = &message.properties;
    let json = p
        .content_type
        .as_deref()
        .and_then(|ct| ct.split(';').next())
        .is_some_and(|ct| ct.trim().eq_ignore_ascii_case("application/json"));
    let utf8 = p
        .content_encoding
        .as_deref()
        .is_some_and(|ce| ce.trim().eq_ignore_ascii_case("utf-8"));
    if !(json && utf8) {
        return None;
    }
    let text = std::str::from_utf8(&message.body).ok()?;
    serde_json::from_str::<serde::de::IgnoredAny>(text).ok()?;
    Some(minify_json(text))
}

/// Drops the whitespace between the tokens of valid JSON text (strings stay untouched), keeping
/// numbers and key order exactly as written.
fn minify_json(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let (mut in_string, mut escaped) = (false, false);
    for c in text.chars() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if !matches!(c, ' ' | '\t' | '\n' | '\r') {
            in_string = c == '"';
            out.push(c);
        }
    }
    out
}

fn push_json_string(out: &mut String, text: &str) {
    // Serializing a &str cannot fail; the fallback keeps the line valid JSON regardless.
    match serde_json::to_string(text) {
        Ok(quoted) => out.push_str(&quoted),
        Err(_) => out.push_str("\"\""),
    }
}

fn push_json_map<'a>(out: &mut String, pairs: impl Iterator<Item = (&'a str, &'a str)>) {
    out.push('{');
    for (index, (key, value)) in pairs.enumerate() {
        if index > 0 {
            out.push(',');
        }
        push_json_string(out, key);
        out.push(':');
        push_json_string(out, value);
    }
    out.push('}');
}

/// Appends one event as Azure's JSON encoding writes it: one object per line,
/// `{"EnqueuedTimeUtc","Properties","SystemProperties","Body"}` in that order (the shape of
/// Azure's message-enrichment tutorial, MicrosoftDocs/azure-docs
/// `articles/iot-hub/tutorial-message-enrichments.md`), ending in `\n`.
fn push_json_record(out: &mut String, event: &RoutedEvent) {
    let message = &event.message;
    out.push_str("{\"EnqueuedTimeUtc\":");
    push_json_string(out, &message.annotations.enqueued_time.to_string());
    out.push_str(",\"Properties\":");
    push_json_map(
        out,
        message
            .application_properties
            .iter()
            .map(|(key, value)| (key.as_str(), value.as_str())),
    );
    out.push_str(",\"SystemProperties\":");
    let system = system_properties(message);
    push_json_map(out, system.iter().map(|(key, value)| (*key, value.as_str())));
    out.push_str(",\"Body\":");
    match embedded_json_body(message) {
        Some(json) => out.push_str(&json),
        None => push_json_string(out, &BASE64.encode(&message.body)),
    }
    out.push_str("}\n");
}

/// Encodes events as JSON lines, Azure's `JSON` encoding of storage endpoints.
pub fn encode_json(events: &[RoutedEvent]) -> Bytes {
    let mut out = String::with_capacity(events.iter().map(|e| e.message.body.len() * 4 / 3 + 512).sum());
    for event in events {
        push_json_record(&mut out, event);
    }
    Bytes::from(out)
}

/// Writes an Avro `long`: zig-zag, then base-128 little-endian varint.
fn put_long(out: &mut BytesMut, value: i64) {
    let mut n = ((value << 1) ^ (value >> 63)) as u64;
    while n >= 0x80 {
        out.put_u8((n as u8 & 0x7f) | 0x80);
        n >>= 7;
    }
    out.put_u8(n as u8);
}

/// Writes Avro `bytes` or `string`: the length as a long, then the bytes.
fn put_bytes(out: &mut BytesMut, bytes: &[u8]) {
    put_long(out, i64::try_from(bytes.len()).unwrap_or(i64::MAX));
    out.put_slice(bytes);
}

/// Writes an Avro `map<string>`: one block of all pairs, then the empty block.
fn put_string_map<'a>(out: &mut BytesMut, pairs: &[(&'a str, &'a str)]) {
    if !pairs.is_empty() {
        put_long(out, i64::try_from(pairs.len()).unwrap_or(i64::MAX));
        for (key, value) in pairs {
            put_bytes(out, key.as_bytes());
            put_bytes(out, value.as_bytes());
        }
    }
    put_long(out, 0);
}

/// Writes one `Microsoft.Azure.Devices.Message` record.
fn put_avro_record(out: &mut BytesMut, event: &RoutedEvent) {
    let message = &event.message;
    put_bytes(out, message.annotations.enqueued_time.to_string().as_bytes());
    let properties: Vec<(&str, &str)> = message
        .application_properties
        .iter()
        .map(|(key, value)| (key.as_str(), value.as_str()))
        .collect();
    put_string_map(out, &properties);
    let system = system_properties(message);
    let system: Vec<(&str, &str)> = system.iter().map(|(key, value)| (*key, value.as_str())).collect();
    put_string_map(out, &system);
    // Body: branch 1 (`bytes`) of the union ["null","bytes"]; Avro always carries the raw body.
    put_long(out, 1);
    put_bytes(out, &message.body);
}

/// Encodes events as an Avro object container file (codec `null`) with Azure's schema
/// [`AVRO_SCHEMA`]: header (magic, metadata `avro.schema` and `avro.codec`, sync marker), then
/// blocks of records (count, byte size, records, sync marker).
pub fn encode_avro(events: &[RoutedEvent], sync: [u8; 16]) -> Bytes {
    let mut out =
        BytesMut::with_capacity(512 + events.iter().map(|e| e.message.body.len() + 256).sum::<usize>());
    out.put_slice(AVRO_MAGIC);
    put_long(&mut out, 2);
    put_bytes(&mut out, b"avro.schema");
    put_bytes(&mut out, AVRO_SCHEMA.as_bytes());
    put_bytes(&mut out, b"avro.codec");
    put_bytes(&mut out, b"null");
    put_long(&mut out, 0);
    out.put_slice(&sync);
    let mut block = BytesMut::new();
    let mut count: i64 = 0;
    let flush = |out: &mut BytesMut, block: &mut BytesMut, count: &mut i64| {
        if *count > 0 {
            put_long(out, *count);
            put_long(out, i64::try_from(block.len()).unwrap_or(i64::MAX));
            out.put_slice(block);
            out.put_slice(&sync);
            block.clear();
            *count = 0;
        }
    };
    for event in events {
        put_avro_record(&mut block, event);
        count += 1;
        if block.len() >= AVRO_BLOCK_BYTES {
            flush(&mut out, &mut block, &mut count);
        }
    }
    flush(&mut out, &mut block, &mut count);
    out.freeze()
}

/// The sync marker of a batch's Avro file: derived from the batch (hub, endpoint, partition,
/// first sequence number), so encoding the same batch again gives the same bytes.
fn sync_marker(batch: &RoutedBatch) -> [u8; 16] {
    let first = batch.events.first().map_or(0, |event| event.sequence_number);
    let mut marker = [0u8; 16];
    for (half, salt) in marker.chunks_mut(8).zip([0x5a17_u64, 0xa5e1]) {
        let mut hasher = std::hash::DefaultHasher::new();
        (
            salt,
            batch.hub.as_str(),
            batch.endpoint.as_str(),
            batch.partition,
            first,
        )
            .hash(&mut hasher);
        half.copy_from_slice(&hasher.finish().to_le_bytes());
    }
    marker
}

/// Encodes a batch in the endpoint's encoding.
pub fn encode(encoding: StorageEncoding, batch: &RoutedBatch) -> Bytes {
    match encoding {
        StorageEncoding::Json => encode_json(&batch.events),
        StorageEncoding::Avro => encode_avro(&batch.events, sync_marker(batch)),
    }
}

/// Returns `name` with `-<sequence>` added to its last path segment, before that segment's
/// extension if it has one (`…/05` → `…/05-17`, `…/0805.avro` → `…/0805-17.avro`).
pub fn with_sequence_suffix(name: &str, sequence: u64) -> String {
    let segment_start = name.rfind('/').map_or(0, |slash| slash + 1);
    match name[segment_start..].rfind('.').filter(|&dot| dot > 0) {
        Some(dot) => {
            let at = segment_start + dot;
            format!("{}-{sequence}{}", &name[..at], &name[at..])
        }
        None => format!("{name}-{sequence}"),
    }
}

/// Unix minute of a time (`None` for "never").
fn minute_of(time: Timestamp) -> Option<i64> {
    time.unix_seconds().map(|seconds| seconds.div_euclid(60))
}

/// What the sink remembers of one partition's files (this process only).
#[derive(Debug, Default, Clone, Copy)]
struct PartitionFiles {
    /// The latest minute a file of this partition was written for.
    latest_minute: Option<i64>,
    /// The batch (minute, first sequence number) that wrote that minute's plain name.
    plain_owner: Option<(i64, u64)>,
}

/// Writes each batch as one file of the endpoint's encoding through a [`StorageTarget`].
///
/// File names: the endpoint's format rendered for the hub, the partition and the enqueued time
/// of the batch's first message. Two batches of one partition can fall in the same minute (a
/// size-triggered batch, or `batchFrequencyInSeconds` under 60), and Azure's name has no room to
/// tell them apart, so a file gets `-<first sequence number>` (see [`with_sequence_suffix`])
/// unless it is certainly the only one of its minute. A batch keeps Azure's exact name when
///
/// * its minute is later than the minute the sink was created in (no earlier run of the server
///   can have written a file of that minute), and
/// * this sink has written no file of this partition for that minute or a later one,
///
/// or when it is the very batch that took that name (a retry rewrites the same file). Every
/// other batch gets the suffix, which is derived from the batch alone, so a retried batch
/// rewrites its own file and no batch ever replaces another's. A batch delivered again after a
/// crash may land in a second file (at least once: duplicates, never loss).
#[derive(Debug)]
pub struct StorageSink {
    format: FileNameFormat,
    encoding: StorageEncoding,
    target: Arc<dyn StorageTarget>,
    started_minute: i64,
    partitions: Mutex<HashMap<u32, PartitionFiles>>,
}

impl StorageSink {
    /// A sink for `endpoint` writing through `target`; `started` is the time the sink starts
    /// (the hub clock's now).
    ///
    /// # Errors
    /// `ArgumentInvalid` when the file name format is invalid (the configuration check refuses
    /// those before).
    pub fn new(
        endpoint: &StorageEndpoint,
        target: Arc<dyn StorageTarget>,
        started: Timestamp,
    ) -> Result<Self, CoreError> {
        let format = FileNameFormat::parse(&endpoint.file_name_format).map_err(CoreError::InvalidArgument)?;
        Ok(Self {
            format,
            encoding: endpoint.encoding,
            target,
            started_minute: minute_of(started).unwrap_or(i64::MAX),
            partitions: Mutex::new(HashMap::new()),
        })
    }

    /// Returns the file name of `batch` and whether it is the plain (Azure) name.
    pub fn file_name(&self, batch: &RoutedBatch) -> (String, bool) {
        let (time, first) = batch.events.first().map_or((Timestamp::NEVER, 0), |event| {
            (event.message.annotations.enqueued_time, event.sequence_number)
        });
        let name = self.format.render(batch.hub.as_str(), batch.partition, time);
        let files = self
            .partitions
            .lock()
            .get(&batch.partition)
            .copied()
            .unwrap_or_default();
        let plain = minute_of(time).is_some_and(|minute| {
            files.plain_owner == Some((minute, first))
                || (minute > self.started_minute && files.latest_minute.is_none_or(|latest| latest < minute))
        });
        if plain {
            (name, true)
        } else {
            (with_sequence_suffix(&name, first), false)
        }
    }

    fn wrote(&self, batch: &RoutedBatch, plain: bool) {
        let Some(first) = batch.events.first() else {
            return;
        };
        let Some(minute) = minute_of(first.message.annotations.enqueued_time) else {
            return;
        };
        let mut partitions = self.partitions.lock();
        let files = partitions.entry(batch.partition).or_default();
        files.latest_minute = Some(files.latest_minute.map_or(minute, |latest| latest.max(minute)));
        if plain {
            files.plain_owner = Some((minute, first.sequence_number));
        }
    }
}

#[async_trait]
impl EndpointSink for StorageSink {
    async fn deliver(&self, batch: &RoutedBatch) -> Result<(), DeliveryError> {
        if batch.events.is_empty() {
            return Ok(());
        }
        // One worker per partition delivers in order, so deciding and recording the name around
        // the write cannot interleave with another batch of the same partition.
        let (name, plain) = self.file_name(batch);
        self.target.write(&name, encode(self.encoding, batch)).await?;
        self.wrote(batch, plain);
        Ok(())
    }
}

/// A body already in memory, handed to the blob store in one chunk.
struct OneChunk(Option<Bytes>);

#[async_trait]
impl ByteSource for OneChunk {
    async fn next_chunk(&mut self) -> Result<Option<Bytes>, BlobError> {
        Ok(self.0.take())
    }
}

/// The prefix of routed containers' blobs in a hub's blob store: `~` cannot start a device id,
/// so these names never meet the `{deviceId}/{name}` blobs of file uploads.
pub const ROUTED_BLOB_PREFIX: &str = "~routed/";

/// Returns the name under which a blob `name` of the routed container `container` is kept in the
/// hub's blob store: `~routed/<container>/<name>`.
pub fn routed_blob_name(container: &str, name: &str) -> String {
    format!("{ROUTED_BLOB_PREFIX}{container}/{name}")
}

/// A [`StorageTarget`] writing into container `container` of the hub's built-in blob endpoint:
/// blobs go to the hub's blob store under [`routed_blob_name`], durably (the store acknowledges
/// only what is on disk). A name written again replaces the blob.
#[derive(Debug)]
pub struct BlobContainerTarget {
    store: Arc<dyn BlobStore>,
    clock: Arc<dyn Clock>,
    hub: HubName,
    container: String,
}

impl BlobContainerTarget {
    /// A target writing into `hub`'s container `container`.
    ///
    /// # Errors
    /// `ArgumentInvalid` for a container name Azure Storage would refuse.
    pub fn new(
        store: Arc<dyn BlobStore>,
        clock: Arc<dyn Clock>,
        hub: HubName,
        container: &str,
    ) -> Result<Self, CoreError> {
        storage_names::check_container(container).map_err(CoreError::InvalidArgument)?;
        Ok(Self {
            store,
            clock,
            hub,
            container: container.to_owned(),
        })
    }
}

#[async_trait]
impl StorageTarget for BlobContainerTarget {
    async fn write(&self, name: &str, bytes: Bytes) -> Result<(), DeliveryError> {
        let blob = routed_blob_name(&self.container, name);
        crate::blobs::validate_name(&blob).map_err(|error| DeliveryError::Rejected(error.to_string()))?;
        let write = BlobWrite {
            content: ContentSettings {
                content_type: Some("application/octet-stream".into()),
                ..ContentSettings::default()
            },
            condition: Condition::default(),
            max_blob_bytes: MAX_ROUTED_BLOB_BYTES,
            // Routed files are not file uploads: the uploads' quota does not stop them.
            max_hub_bytes: u64::MAX,
            max_block_bytes: MAX_ROUTED_BLOB_BYTES,
            max_uncommitted_blocks: 0,
            now: self.clock.now(),
        };
        match self
            .store
            .put_blob(self.hub.as_str(), &blob, &mut OneChunk(Some(bytes)), &write)
            .await
        {
            Ok(_) => Ok(()),
            Err(error @ (BlobError::InvalidName(_) | BlobError::TooLarge { .. })) => {
                Err(DeliveryError::Rejected(format!("blob '{blob}': {error}")))
            }
            Err(error) => Err(DeliveryError::Unavailable(format!("blob '{blob}': {error}"))),
        }
    }
}

#[cfg(test)]
#[path = "storage_tests.rs"]
mod tests;
