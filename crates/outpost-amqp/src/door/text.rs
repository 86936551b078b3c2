//! The text the hub keeps for AMQP values (wire reference §3, §6): UUIDs in their hyphenated form,
//! message and correlation ids, application-property values, and percent-escaped path segments
//! and CBS audiences. Shared by the device and service links.

use crate::message::MessageId;
use crate::value::{Timestamp, Value};

/// Renders 16 bytes as a lower-case hyphenated UUID.
pub(super) fn uuid_text(bytes: &[u8; 16]) -> String {
    let hex: String = bytes.iter().map(|byte| format!("{byte:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// Parses a hyphenated UUID (any case).
pub(super) fn parse_uuid(text: &str) -> Option<[u8; 16]> {
    let groups: Vec<&str> = text.split('-').collect();
    let lengths: Vec<usize> = groups.iter().map(|group| group.len()).collect();
    if lengths != [8, 4, 4, 4, 12] {
        return None;
    }
    let hex: String = groups.concat();
    let mut bytes = [0u8; 16];
    for (i, byte) in bytes.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(bytes)
}

/// A message or correlation id as text: the Node SDKs send UUID-shaped ids as AMQP `uuid` (wire
/// reference §3), which become their hyphenated form; binary ids must be UTF-8.
pub(super) fn id_text(id: &MessageId) -> Option<String> {
    Some(match id {
        MessageId::String(text) => text.clone(),
        MessageId::Uuid(bytes) => uuid_text(bytes),
        MessageId::Ulong(number) => number.to_string(),
        MessageId::Binary(bytes) => std::str::from_utf8(bytes).ok()?.to_owned(),
    })
}

/// An application property (or annotation) value as text; `None` for null and compound values.
pub(super) fn property_text(value: &Value) -> Option<String> {
    Some(match value {
        Value::String(text) => text.clone(),
        Value::Symbol(symbol) => symbol.as_str().to_owned(),
        Value::Binary(bytes) => std::str::from_utf8(bytes).ok()?.to_owned(),
        Value::Bool(flag) => flag.to_string(),
        Value::Ubyte(n) => n.to_string(),
        Value::Ushort(n) => n.to_string(),
        Value::Uint(n) => n.to_string(),
        Value::Ulong(n) => n.to_string(),
        Value::Byte(n) => n.to_string(),
        Value::Short(n) => n.to_string(),
        Value::Int(n) => n.to_string(),
        Value::Long(n) => n.to_string(),
        Value::Float(n) => n.to_string(),
        Value::Double(n) => n.to_string(),
        Value::Char(c) => c.to_string(),
        Value::Timestamp(Timestamp(ms)) => outpost_model::Timestamp::from_unix_millis(*ms).to_string(),
        Value::Uuid(bytes) => uuid_text(bytes),
        _ => return None,
    })
}

/// Percent-decodes a path segment or a CBS audience (`localhost%2Fdevices%2Fdev1`); `None` for a
/// bad escape or a result that is not UTF-8.
pub(super) fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&byte) = bytes.get(i) {
        if byte == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            if !hex.iter().all(u8::is_ascii_hexdigit) {
                return None;
            }
            out.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
            i += 3;
        } else {
            out.push(byte);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const UUID: [u8; 16] = [
        0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0x4d, 0xef, 0x80, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07,
    ];

    #[test]
    fn uuids_round_trip_through_text() {
        let text = uuid_text(&UUID);
        assert_eq!(text, "12345678-9abc-4def-8001-020304050607");
        assert_eq!(parse_uuid(&text), Some(UUID));
        assert_eq!(parse_uuid(&text.to_uppercase()), Some(UUID));
        assert_eq!(parse_uuid("12345678-9abc-4def-8001-02030405060"), None);
        assert_eq!(parse_uuid("12345678-9abc-4def-8001-02030405060g"), None);
        assert_eq!(parse_uuid("not a uuid"), None);
    }

    #[test]
    fn ids_and_properties_become_text() {
        assert_eq!(
            id_text(&MessageId::Uuid(UUID)).as_deref(),
            Some("12345678-9abc-4def-8001-020304050607")
        );
        assert_eq!(id_text(&MessageId::Ulong(7)).as_deref(), Some("7"));
        assert_eq!(id_text(&MessageId::Binary(vec![0xff].into())), None);
        assert_eq!(property_text(&Value::Int(-3)).as_deref(), Some("-3"));
        assert_eq!(
            property_text(&Value::Binary(b"ok".to_vec().into())).as_deref(),
            Some("ok")
        );
        assert_eq!(property_text(&Value::Null), None);
        assert_eq!(property_text(&Value::List(vec![])), None);
    }

    #[test]
    fn percent_escapes_are_decoded_strictly() {
        assert_eq!(
            percent_decode("localhost%2Fdevices%2Fdev1").as_deref(),
            Some("localhost/devices/dev1")
        );
        assert_eq!(percent_decode("a%2Fb%C2%B0").as_deref(), Some("a/b°"));
        assert_eq!(
            percent_decode("sb://localhost/hub").as_deref(),
            Some("sb://localhost/hub")
        );
        assert_eq!(percent_decode("%4"), None);
        assert_eq!(percent_decode("%+1"), None);
        assert_eq!(percent_decode("%ff"), None);
    }
}
