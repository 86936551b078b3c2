//! Device-to-cloud messages: the body, the system and application properties a device sets, and
//! the `iothub-*` annotations the hub stamps (wire contract §2.4, §7.4). Also the compact binary
//! form messages take in the event log, and the partition a device's messages go to.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::{DeviceId, ModelError, Timestamp};

/// Largest telemetry message Azure accepts (and the device SDKs enforce): 256 KiB.
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024;

/// Properties a sender sets that the hub understands (`$.mid`, `$.cid`… over MQTT, AMQP
/// message properties, `IoTHub-*` HTTP headers).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SystemProperties {
    /// `message-id` (`$.mid`).
    pub message_id: Option<String>,
    /// `correlation-id` (`$.cid`).
    pub correlation_id: Option<String>,
    /// `user-id` (`$.uid`).
    pub user_id: Option<String>,
    /// `to` (`$.to`).
    pub to: Option<String>,
    /// `content-type` (`$.ct`).
    pub content_type: Option<String>,
    /// `content-encoding` (`$.ce`).
    pub content_encoding: Option<String>,
    /// `absolute-expiry-time` as the sender wrote it (`$.exp`, ISO 8601).
    pub expiry_time: Option<String>,
    /// `iothub-interface-id` (`$.ifid`).
    pub interface_id: Option<String>,
    /// Module output name (`$.on`, `iothub-outputname`).
    pub output_name: Option<String>,
    /// `dt-subject`: the Plug and Play component (`$.sub`).
    pub subject: Option<String>,
}

/// What the hub stamps on every message it accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Annotations {
    /// `iothub-connection-device-id`.
    pub device_id: String,
    /// `iothub-connection-module-id`.
    pub module_id: Option<String>,
    /// `iothub-connection-auth-method`: a JSON string such as
    /// `{"scope":"device","type":"sas","issuer":"iothub","acceptingIpFilterRule":null}`.
    pub auth_method: String,
    /// `iothub-connection-auth-generation-id`: the sender's generation id.
    pub auth_generation_id: String,
    /// `iothub-enqueuedtime`.
    pub enqueued_time: Timestamp,
    /// `iothub-message-source`: `Telemetry`, `twinChangeEvents`, …
    pub message_source: String,
}

/// One endpoint a message was routed to, with the enrichments that endpoint adds (decided once,
/// when the hub accepted the message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The endpoint's name (`events` for the built-in endpoint, borrowed: most messages go
    /// there, and this saves an allocation per message).
    pub endpoint: std::borrow::Cow<'static, str>,
    /// Application properties the endpoint's enrichments add, in order.
    pub enrichments: Vec<(String, String)>,
}

impl Delivery {
    /// The built-in endpoint without enrichments: what a message stored before routing existed
    /// (format version 1) was routed to.
    pub fn built_in() -> Self {
        Self {
            endpoint: std::borrow::Cow::Borrowed(crate::EndpointName::BUILT_IN),
            enrichments: Vec::new(),
        }
    }
}

/// A device-to-cloud message (or system event) as the event log keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// System properties.
    pub properties: SystemProperties,
    /// Application properties in the order the sender gave them.
    pub application_properties: Vec<(String, String)>,
    /// The hub's stamps.
    pub annotations: Annotations,
    /// The endpoints the routes sent the message to.
    pub deliveries: Vec<Delivery>,
    /// The body, unchanged.
    pub body: Bytes,
}

/// Format version of [`Message::encode`]. Version 1 (before routing) had no deliveries: it reads
/// as routed to the built-in endpoint.
const ENCODING_VERSION: u8 = 2;

fn put_str(buf: &mut BytesMut, text: &str) {
    buf.put_u32(text.len() as u32);
    buf.put_slice(text.as_bytes());
}

fn put_opt(buf: &mut BytesMut, text: Option<&str>) {
    match text {
        Some(text) => {
            buf.put_u8(1);
            put_str(buf, text);
        }
        None => buf.put_u8(0),
    }
}

fn corrupt(what: &str) -> ModelError {
    ModelError::InvalidField {
        field: "message",
        reason: format!("stored message is malformed: {what}"),
    }
}

fn get_str(buf: &mut Bytes) -> Result<String, ModelError> {
    if buf.remaining() < 4 {
        return Err(corrupt("truncated length"));
    }
    let len = buf.get_u32() as usize;
    if buf.remaining() < len {
        return Err(corrupt("truncated string"));
    }
    String::from_utf8(buf.split_to(len).to_vec()).map_err(|_| corrupt("invalid utf-8"))
}

fn get_opt(buf: &mut Bytes) -> Result<Option<String>, ModelError> {
    if !buf.has_remaining() {
        return Err(corrupt("truncated option"));
    }
    match buf.get_u8() {
        0 => Ok(None),
        1 => get_str(buf).map(Some),
        _ => Err(corrupt("bad option tag")),
    }
}

/// Reads a count of items that take at least `min_item_bytes` each, bounded by what is left.
fn get_count(buf: &mut Bytes, min_item_bytes: usize) -> Result<usize, ModelError> {
    if buf.remaining() < 4 {
        return Err(corrupt("truncated count"));
    }
    let count = buf.get_u32() as usize;
    if count > buf.remaining() / min_item_bytes {
        return Err(corrupt("count larger than the record"));
    }
    Ok(count)
}

fn get_pairs(buf: &mut Bytes, count: usize) -> Result<Vec<(String, String)>, ModelError> {
    (0..count).map(|_| Ok((get_str(buf)?, get_str(buf)?))).collect()
}

/// Skips `count` length-prefixed strings without copying them.
fn skip_strs(buf: &mut &[u8], count: usize) -> Option<()> {
    for _ in 0..count {
        let len = buf.try_get_u32().ok()? as usize;
        if buf.len() < len {
            return None;
        }
        buf.advance(len);
    }
    Some(())
}

/// Skips an optional string.
fn skip_opt(buf: &mut &[u8]) -> Option<()> {
    match buf.try_get_u8().ok()? {
        0 => Some(()),
        1 => skip_strs(buf, 1),
        _ => None,
    }
}

impl Message {
    /// Returns whether the encoded message `bytes` was routed to `endpoint`, without decoding it:
    /// a delivery worker passes over other endpoints' messages this way. Malformed bytes answer
    /// `true`, so that the full decode reports them.
    pub fn is_routed_to(bytes: &[u8], endpoint: &str) -> bool {
        fn scan(mut buf: &[u8], endpoint: &str) -> Option<bool> {
            let buf = &mut buf;
            let version = buf.try_get_u8().ok()?;
            if version == 1 {
                return Some(endpoint == crate::EndpointName::BUILT_IN);
            }
            for _ in 0..10 {
                skip_opt(buf)?;
            }
            skip_strs(buf, 1)?; // device id
            skip_opt(buf)?; // module id
            skip_strs(buf, 2)?; // auth method, generation id
            buf.try_get_i64().ok()?; // enqueued time
            skip_strs(buf, 1)?; // message source
            let properties = buf.try_get_u32().ok()? as usize;
            skip_strs(buf, properties.checked_mul(2)?)?;
            let deliveries = buf.try_get_u32().ok()?;
            for _ in 0..deliveries {
                let len = buf.try_get_u32().ok()? as usize;
                if buf.len() < len {
                    return None;
                }
                if &buf[..len] == endpoint.as_bytes() {
                    return Some(true);
                }
                buf.advance(len);
                let enrichments = buf.try_get_u32().ok()? as usize;
                skip_strs(buf, enrichments.checked_mul(2)?)?;
            }
            Some(false)
        }
        scan(bytes, endpoint).unwrap_or(true)
    }

    /// Returns the delivery of `endpoint`, if the message was routed there.
    pub fn delivery(&self, endpoint: &str) -> Option<&Delivery> {
        self.deliveries
            .iter()
            .find(|delivery| delivery.endpoint == endpoint)
    }

    /// Returns the message as `endpoint` receives it: its enrichments added to the application
    /// properties (an existing property of the same name is replaced, as Azure does), without the
    /// routing stamps. `None` when the message was not routed there.
    pub fn for_endpoint(&self, endpoint: &str) -> Option<Self> {
        let delivery = self.delivery(endpoint)?;
        let mut message = Self {
            deliveries: Vec::new(),
            ..self.clone()
        };
        for (key, value) in &delivery.enrichments {
            match message
                .application_properties
                .iter_mut()
                .find(|(name, _)| name == key)
            {
                Some(existing) => existing.1.clone_from(value),
                None => message.application_properties.push((key.clone(), value.clone())),
            }
        }
        Some(message)
    }

    /// Returns the compact binary form the event log stores: version, properties, annotations,
    /// application properties, body. Strings are length-prefixed; the body is copied once.
    pub fn encode(&self) -> Bytes {
        let p = &self.properties;
        let a = &self.annotations;
        let mut buf = BytesMut::with_capacity(256 + self.body.len());
        buf.put_u8(ENCODING_VERSION);
        for field in [
            &p.message_id,
            &p.correlation_id,
            &p.user_id,
            &p.to,
            &p.content_type,
            &p.content_encoding,
            &p.expiry_time,
            &p.interface_id,
            &p.output_name,
            &p.subject,
        ] {
            put_opt(&mut buf, field.as_deref());
        }
        put_str(&mut buf, &a.device_id);
        put_opt(&mut buf, a.module_id.as_deref());
        put_str(&mut buf, &a.auth_method);
        put_str(&mut buf, &a.auth_generation_id);
        buf.put_i64(a.enqueued_time.unix_millis().unwrap_or_default());
        put_str(&mut buf, &a.message_source);
        buf.put_u32(self.application_properties.len() as u32);
        for (key, value) in &self.application_properties {
            put_str(&mut buf, key);
            put_str(&mut buf, value);
        }
        buf.put_u32(self.deliveries.len() as u32);
        for delivery in &self.deliveries {
            put_str(&mut buf, &delivery.endpoint);
            buf.put_u32(delivery.enrichments.len() as u32);
            for (key, value) in &delivery.enrichments {
                put_str(&mut buf, key);
                put_str(&mut buf, value);
            }
        }
        buf.put_slice(&self.body);
        buf.freeze()
    }

    /// Reads a message written by [`Message::encode`]; the body shares `bytes`.
    ///
    /// # Errors
    /// [`ModelError::InvalidField`] when the bytes are not a whole message of a known version.
    pub fn decode(mut bytes: Bytes) -> Result<Self, ModelError> {
        let version = if bytes.has_remaining() { bytes.get_u8() } else { 0 };
        if !(1..=ENCODING_VERSION).contains(&version) {
            return Err(corrupt("unknown version"));
        }
        let buf = &mut bytes;
        let properties = SystemProperties {
            message_id: get_opt(buf)?,
            correlation_id: get_opt(buf)?,
            user_id: get_opt(buf)?,
            to: get_opt(buf)?,
            content_type: get_opt(buf)?,
            content_encoding: get_opt(buf)?,
            expiry_time: get_opt(buf)?,
            interface_id: get_opt(buf)?,
            output_name: get_opt(buf)?,
            subject: get_opt(buf)?,
        };
        let device_id = get_str(buf)?;
        let module_id = get_opt(buf)?;
        let auth_method = get_str(buf)?;
        let auth_generation_id = get_str(buf)?;
        if buf.remaining() < 8 {
            return Err(corrupt("truncated time"));
        }
        let enqueued_time = Timestamp::from_unix_millis(buf.get_i64());
        let message_source = get_str(buf)?;
        // Each property takes at least 8 bytes: the count is bounded by what is there.
        let count = get_count(buf, 8)?;
        let application_properties = get_pairs(buf, count)?;
        let deliveries = if version == 1 {
            vec![Delivery::built_in()]
        } else {
            let count = get_count(buf, 8)?;
            let mut deliveries = Vec::with_capacity(count);
            for _ in 0..count {
                let endpoint = get_str(buf)?;
                let enrichments = get_count(buf, 8).and_then(|count| get_pairs(buf, count))?;
                let endpoint = if endpoint == crate::EndpointName::BUILT_IN {
                    std::borrow::Cow::Borrowed(crate::EndpointName::BUILT_IN)
                } else {
                    std::borrow::Cow::Owned(endpoint)
                };
                deliveries.push(Delivery {
                    endpoint,
                    enrichments,
                });
            }
            deliveries
        };
        let annotations = Annotations {
            device_id,
            module_id,
            auth_method,
            auth_generation_id,
            enqueued_time,
            message_source,
        };
        Ok(Self {
            properties,
            application_properties,
            annotations,
            deliveries,
            body: bytes,
        })
    }
}

/// Returns the partition of a device's messages: a stable hash (FNV-1a, 64 bit) of the device
/// id modulo the hub's partition count, so each device's messages stay in order in one partition
/// across restarts and versions.
pub fn partition_for(device: &DeviceId, partition_count: u32) -> u32 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in device.as_str().bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    (hash % u64::from(partition_count.max(1))) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Message {
        Message {
            properties: SystemProperties {
                message_id: Some("mid-1".into()),
                content_type: Some("application/json".into()),
                content_encoding: Some("utf-8".into()),
                ..Default::default()
            },
            application_properties: vec![
                ("alert".into(), "high temp".into()),
                ("a/b".into(), "x&y=z".into()),
            ],
            annotations: Annotations {
                device_id: "dev1".into(),
                module_id: None,
                auth_method:
                    r#"{"scope":"device","type":"sas","issuer":"iothub","acceptingIpFilterRule":null}"#.into(),
                auth_generation_id: "637000000000000000".into(),
                enqueued_time: Timestamp::from_unix_millis(1_795_692_329_123),
                message_source: "Telemetry".into(),
            },
            deliveries: vec![
                Delivery::built_in(),
                Delivery {
                    endpoint: "alerts".into(),
                    enrichments: vec![
                        ("site".into(), "plant-1".into()),
                        ("alert".into(), "enriched".into()),
                    ],
                },
            ],
            body: Bytes::from_static(br#"{"temp":21.5}"#),
        }
    }

    #[test]
    fn messages_round_trip_through_the_log_encoding() {
        let message = sample();
        assert_eq!(Message::decode(message.encode()).unwrap(), message);
    }

    #[test]
    fn version_1_records_read_as_routed_to_the_built_in_endpoint() {
        let mut message = sample();
        let encoded = message.encode();
        // Version 1 had no deliveries: drop the version byte and the deliveries block.
        let body_start = encoded.len() - message.body.len();
        let deliveries_len: usize = 4 + (4 + 6 + 4) + (4 + 6 + 4 + 4 + 4 + 4 + 7 + 4 + 5 + 4 + 8);
        let mut v1 = vec![1u8];
        v1.extend_from_slice(&encoded[1..body_start - deliveries_len]);
        v1.extend_from_slice(&message.body);
        message.deliveries = vec![Delivery::built_in()];
        assert_eq!(Message::decode(Bytes::from(v1)).unwrap(), message);
    }

    #[test]
    fn routing_is_read_without_decoding() {
        let encoded = sample().encode();
        assert!(Message::is_routed_to(&encoded, "events"));
        assert!(Message::is_routed_to(&encoded, "alerts"));
        assert!(!Message::is_routed_to(&encoded, "alert"));
        let mut none = sample();
        none.deliveries.clear();
        assert!(!Message::is_routed_to(&none.encode(), "events"));
        // Malformed: left to the full decode to report.
        assert!(Message::is_routed_to(&encoded[..20], "nowhere"));
    }

    #[test]
    fn an_endpoint_sees_its_enrichments_and_no_stamps() {
        let message = sample();
        let alerts = message.for_endpoint("alerts").unwrap();
        assert!(alerts.deliveries.is_empty());
        assert_eq!(
            alerts.application_properties,
            [
                ("alert".to_owned(), "enriched".to_owned()),
                ("a/b".to_owned(), "x&y=z".to_owned()),
                ("site".to_owned(), "plant-1".to_owned()),
            ]
        );
        assert_eq!(
            message.for_endpoint("events").unwrap().application_properties,
            message.application_properties
        );
        assert!(message.for_endpoint("storage").is_none());
    }

    #[test]
    fn every_truncation_of_an_encoded_message_is_an_error_not_a_panic() {
        let encoded = sample().encode();
        // The body is the tail, so cutting into it still decodes (with a shorter body).
        let body_start = encoded.len() - sample().body.len();
        for cut in 0..body_start {
            assert!(Message::decode(encoded.slice(..cut)).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn partition_is_stable_and_in_range() {
        let device = DeviceId::new("dev1").unwrap();
        assert_eq!(partition_for(&device, 4), partition_for(&device, 4));
        for count in [1, 2, 4, 32] {
            assert!(partition_for(&device, count) < count);
        }
        // Pinned: changing the hash would reorder every existing hub's messages.
        assert_eq!(partition_for(&device, 4), 3);
    }
}
