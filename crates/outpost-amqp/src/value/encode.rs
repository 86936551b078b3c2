//! Writers for every AMQP 1.0 encoding (§1.6), choosing the smallest one for each value (§1.2).
//!
//! The composite types of the other modules write their fields with these directly, without building a
//! [`Value`] tree first.

use bytes::{BufMut, BytesMut};

use super::code;
use super::{Array, ArrayType, Descriptor, Symbol, Timestamp, Value};

/// Appends the smallest encoding of `value`.
pub(crate) fn value(buf: &mut BytesMut, v: &Value) {
    match v {
        Value::Null => null(buf),
        Value::Bool(v) => boolean(buf, *v),
        Value::Ubyte(v) => ubyte(buf, *v),
        Value::Ushort(v) => ushort(buf, *v),
        Value::Uint(v) => uint(buf, *v),
        Value::Ulong(v) => ulong(buf, *v),
        Value::Byte(v) => {
            buf.put_u8(code::BYTE);
            buf.put_i8(*v);
        }
        Value::Short(v) => {
            buf.put_u8(code::SHORT);
            buf.put_i16(*v);
        }
        Value::Int(v) => int(buf, *v),
        Value::Long(v) => long(buf, *v),
        Value::Float(v) => {
            buf.put_u8(code::FLOAT);
            buf.put_f32(*v);
        }
        Value::Double(v) => {
            buf.put_u8(code::DOUBLE);
            buf.put_f64(*v);
        }
        Value::Decimal32(v) => {
            buf.put_u8(code::DECIMAL32);
            buf.put_slice(v);
        }
        Value::Decimal64(v) => {
            buf.put_u8(code::DECIMAL64);
            buf.put_slice(v);
        }
        Value::Decimal128(v) => {
            buf.put_u8(code::DECIMAL128);
            buf.put_slice(v);
        }
        Value::Char(v) => {
            buf.put_u8(code::CHAR);
            buf.put_u32(u32::from(*v));
        }
        Value::Timestamp(v) => timestamp(buf, *v),
        Value::Uuid(v) => uuid(buf, v),
        Value::Binary(v) => binary(buf, v),
        Value::String(v) => string(buf, v),
        Value::Symbol(v) => symbol(buf, v),
        Value::List(items) => list(buf, items.len(), |buf| {
            items.iter().for_each(|item| value(buf, item))
        }),
        Value::Map(pairs) => map(buf, pairs.len(), |buf| {
            for (key, item) in pairs {
                value(buf, key);
                value(buf, item);
            }
        }),
        Value::Array(array) => self::array(buf, array),
        Value::Described(described) => {
            descriptor(buf, &described.descriptor);
            value(buf, &described.value);
        }
    }
}

pub(crate) fn null(buf: &mut BytesMut) {
    buf.put_u8(code::NULL);
}

/// §1.6.2: `0x41`/`0x42` carry the value in the constructor.
pub(crate) fn boolean(buf: &mut BytesMut, v: bool) {
    buf.put_u8(if v { code::TRUE } else { code::FALSE });
}

pub(crate) fn ubyte(buf: &mut BytesMut, v: u8) {
    buf.put_u8(code::UBYTE);
    buf.put_u8(v);
}

pub(crate) fn ushort(buf: &mut BytesMut, v: u16) {
    buf.put_u8(code::USHORT);
    buf.put_u16(v);
}

/// §1.6.5: uint0 for 0, smalluint up to 255.
pub(crate) fn uint(buf: &mut BytesMut, v: u32) {
    match v {
        0 => buf.put_u8(code::UINT0),
        1..=255 => {
            buf.put_u8(code::SMALLUINT);
            buf.put_u8(v as u8);
        }
        _ => {
            buf.put_u8(code::UINT);
            buf.put_u32(v);
        }
    }
}

/// §1.6.6: ulong0 for 0, smallulong up to 255.
pub(crate) fn ulong(buf: &mut BytesMut, v: u64) {
    match v {
        0 => buf.put_u8(code::ULONG0),
        1..=255 => {
            buf.put_u8(code::SMALLULONG);
            buf.put_u8(v as u8);
        }
        _ => {
            buf.put_u8(code::ULONG);
            buf.put_u64(v);
        }
    }
}

/// §1.6.9: smallint for -128..=127.
pub(crate) fn int(buf: &mut BytesMut, v: i32) {
    if let Ok(small) = i8::try_from(v) {
        buf.put_u8(code::SMALLINT);
        buf.put_i8(small);
    } else {
        buf.put_u8(code::INT);
        buf.put_i32(v);
    }
}

/// §1.6.10: smalllong for -128..=127.
pub(crate) fn long(buf: &mut BytesMut, v: i64) {
    if let Ok(small) = i8::try_from(v) {
        buf.put_u8(code::SMALLLONG);
        buf.put_i8(small);
    } else {
        buf.put_u8(code::LONG);
        buf.put_i64(v);
    }
}

pub(crate) fn timestamp(buf: &mut BytesMut, v: Timestamp) {
    buf.put_u8(code::TIMESTAMP);
    buf.put_i64(v.0);
}

pub(crate) fn uuid(buf: &mut BytesMut, v: &[u8; 16]) {
    buf.put_u8(code::UUID);
    buf.put_slice(v);
}

pub(crate) fn binary(buf: &mut BytesMut, v: &[u8]) {
    variable(buf, code::VBIN8, code::VBIN32, v);
}

pub(crate) fn string(buf: &mut BytesMut, v: &str) {
    variable(buf, code::STR8, code::STR32, v.as_bytes());
}

pub(crate) fn symbol(buf: &mut BytesMut, v: &Symbol) {
    symbol_str(buf, v.as_str());
}

pub(crate) fn symbol_str(buf: &mut BytesMut, v: &str) {
    variable(buf, code::SYM8, code::SYM32, v.as_bytes());
}

/// §1.6.19–§1.6.21: one-byte size up to 255 bytes, four-byte size beyond.
fn variable(buf: &mut BytesMut, code8: u8, code32: u8, bytes: &[u8]) {
    if let Ok(len) = u8::try_from(bytes.len()) {
        buf.reserve(2 + bytes.len());
        buf.put_u8(code8);
        buf.put_u8(len);
    } else {
        buf.reserve(5 + bytes.len());
        buf.put_u8(code32);
        buf.put_u32(bytes.len() as u32);
    }
    buf.put_slice(bytes);
}

/// Writes the `0x00 descriptor` prefix of a described value (§1.5).
pub(crate) fn descriptor(buf: &mut BytesMut, descriptor: &Descriptor) {
    buf.put_u8(code::DESCRIBED);
    match descriptor {
        Descriptor::Code(code) => ulong(buf, *code),
        Descriptor::Symbol(symbol) => self::symbol(buf, symbol),
    }
}

/// Writes a list of `count` elements written by `elements`: `list0` when empty, else list8 or list32
/// (§1.6.22).
pub(crate) fn list(buf: &mut BytesMut, count: usize, elements: impl FnOnce(&mut BytesMut)) {
    if count == 0 {
        buf.put_u8(code::LIST0);
    } else {
        compound(buf, code::LIST8, code::LIST32, count, elements);
    }
}

/// Writes a map of `pairs` key/value pairs written by `elements` (§1.6.23).
pub(crate) fn map(buf: &mut BytesMut, pairs: usize, elements: impl FnOnce(&mut BytesMut)) {
    compound(buf, code::MAP8, code::MAP32, pairs * 2, elements);
}

/// Writes a compound header and its elements in one pass: the wide header is written as a placeholder,
/// and when size and count fit one byte each the elements are moved back over the extra header bytes.
fn compound(buf: &mut BytesMut, code8: u8, code32: u8, count: usize, elements: impl FnOnce(&mut BytesMut)) {
    let start = buf.len();
    buf.put_u8(code32);
    buf.put_u32(0);
    buf.put_u32(count as u32);
    elements(buf);
    finish_compound(buf, start, code8, count);
}

/// Rewrites the placeholder header written at `start` (code, 4-byte size, 4-byte count) with the real
/// size, narrowing it to the 1-byte form when it fits (§1.6.22–§1.6.24: size counts the count field and
/// the elements).
fn finish_compound(buf: &mut BytesMut, start: usize, code8: u8, count: usize) {
    let body_len = buf.len() - start - 9;
    if body_len < 255 && count <= 255 {
        buf[start] = code8;
        buf[start + 1] = (body_len + 1) as u8;
        buf[start + 2] = count as u8;
        buf.copy_within(start + 9.., start + 3);
        buf.truncate(buf.len() - 6);
    } else {
        buf[start + 1..start + 5].copy_from_slice(&((body_len + 4) as u32).to_be_bytes());
    }
}

/// Writes an array: one constructor, then each element's data without a constructor (§1.6.24).
pub(crate) fn array(buf: &mut BytesMut, array: &Array) {
    let elements = array.elements();
    let element_code = element_code(array.element_type(), elements);
    let start = buf.len();
    buf.put_u8(code::ARRAY32);
    buf.put_u32(0);
    buf.put_u32(elements.len() as u32);
    if let Some(descriptor) = array.descriptor() {
        self::descriptor(buf, descriptor);
    }
    buf.put_u8(element_code);
    for element in elements {
        element_data(buf, element_code, element);
    }
    finish_compound(buf, start, code::ARRAY8, elements.len());
}

/// Returns `symbols` as an array of symbols: the encoding of `multiple` symbol fields (§1.3).
pub(crate) fn symbol_array(buf: &mut BytesMut, symbols: &[Symbol]) {
    let start = buf.len();
    buf.put_u8(code::ARRAY32);
    buf.put_u32(0);
    buf.put_u32(symbols.len() as u32);
    let wide = symbols.iter().any(|symbol| symbol.as_str().len() > 255);
    buf.put_u8(if wide { code::SYM32 } else { code::SYM8 });
    for symbol in symbols {
        variable_data(buf, wide, symbol.as_str().as_bytes());
    }
    finish_compound(buf, start, code::ARRAY8, symbols.len());
}

/// Picks the one constructor every element of an array can use: the compact form when all elements fit
/// it, else the wide one.
fn element_code(element_type: ArrayType, elements: &[Value]) -> u8 {
    let all = |fits: fn(&Value) -> bool| elements.iter().all(fits);
    match element_type {
        ArrayType::Null => code::NULL,
        ArrayType::Bool => code::BOOL,
        ArrayType::Ubyte => code::UBYTE,
        ArrayType::Ushort => code::USHORT,
        ArrayType::Uint if all(|v| matches!(v, Value::Uint(0..=255))) => code::SMALLUINT,
        ArrayType::Uint => code::UINT,
        ArrayType::Ulong if all(|v| matches!(v, Value::Ulong(0..=255))) => code::SMALLULONG,
        ArrayType::Ulong => code::ULONG,
        ArrayType::Byte => code::BYTE,
        ArrayType::Short => code::SHORT,
        ArrayType::Int if all(|v| matches!(v, Value::Int(-128..=127))) => code::SMALLINT,
        ArrayType::Int => code::INT,
        ArrayType::Long if all(|v| matches!(v, Value::Long(-128..=127))) => code::SMALLLONG,
        ArrayType::Long => code::LONG,
        ArrayType::Float => code::FLOAT,
        ArrayType::Double => code::DOUBLE,
        ArrayType::Decimal32 => code::DECIMAL32,
        ArrayType::Decimal64 => code::DECIMAL64,
        ArrayType::Decimal128 => code::DECIMAL128,
        ArrayType::Char => code::CHAR,
        ArrayType::Timestamp => code::TIMESTAMP,
        ArrayType::Uuid => code::UUID,
        ArrayType::Binary if all(|v| matches!(v, Value::Binary(b) if b.len() <= 255)) => code::VBIN8,
        ArrayType::Binary => code::VBIN32,
        ArrayType::String if all(|v| matches!(v, Value::String(s) if s.len() <= 255)) => code::STR8,
        ArrayType::String => code::STR32,
        ArrayType::Symbol if all(|v| matches!(v, Value::Symbol(s) if s.as_str().len() <= 255)) => code::SYM8,
        ArrayType::Symbol => code::SYM32,
        // Compounds inside an array share one width: the 4-byte form always fits.
        ArrayType::List => code::LIST32,
        ArrayType::Map => code::MAP32,
        ArrayType::Array => code::ARRAY32,
    }
}

/// Writes one array element's data for the shared constructor `element_code`. The array's constructor
/// checks guarantee `element` matches it.
fn element_data(buf: &mut BytesMut, element_code: u8, element: &Value) {
    match element {
        Value::Null => {}
        Value::Bool(v) => buf.put_u8(u8::from(*v)),
        Value::Ubyte(v) => buf.put_u8(*v),
        Value::Ushort(v) => buf.put_u16(*v),
        Value::Uint(v) if element_code == code::SMALLUINT => buf.put_u8(*v as u8),
        Value::Uint(v) => buf.put_u32(*v),
        Value::Ulong(v) if element_code == code::SMALLULONG => buf.put_u8(*v as u8),
        Value::Ulong(v) => buf.put_u64(*v),
        Value::Byte(v) => buf.put_i8(*v),
        Value::Short(v) => buf.put_i16(*v),
        Value::Int(v) if element_code == code::SMALLINT => buf.put_i8(*v as i8),
        Value::Int(v) => buf.put_i32(*v),
        Value::Long(v) if element_code == code::SMALLLONG => buf.put_i8(*v as i8),
        Value::Long(v) => buf.put_i64(*v),
        Value::Float(v) => buf.put_f32(*v),
        Value::Double(v) => buf.put_f64(*v),
        Value::Decimal32(v) => buf.put_slice(v),
        Value::Decimal64(v) => buf.put_slice(v),
        Value::Decimal128(v) => buf.put_slice(v),
        Value::Char(v) => buf.put_u32(u32::from(*v)),
        Value::Timestamp(v) => buf.put_i64(v.0),
        Value::Uuid(v) => buf.put_slice(v),
        Value::Binary(v) => variable_data(buf, element_code == code::VBIN32, v),
        Value::String(v) => variable_data(buf, element_code == code::STR32, v.as_bytes()),
        Value::Symbol(v) => variable_data(buf, element_code == code::SYM32, v.as_str().as_bytes()),
        Value::List(items) => wide_compound_data(buf, items.len(), |buf| {
            items.iter().for_each(|item| value(buf, item));
        }),
        Value::Map(pairs) => wide_compound_data(buf, pairs.len() * 2, |buf| {
            for (key, item) in pairs {
                value(buf, key);
                value(buf, item);
            }
        }),
        Value::Array(inner) => {
            // An array element of an array: size, count, constructor, data; always the 4-byte form.
            let mut nested = BytesMut::new();
            array(&mut nested, inner);
            if nested[0] == code::ARRAY8 {
                let size = u32::from(nested[1]) + 3;
                let count = u32::from(nested[2]);
                buf.put_u32(size);
                buf.put_u32(count);
                buf.put_slice(&nested[3..]);
            } else {
                buf.put_slice(&nested[1..]);
            }
        }
        // Described values never reach here: `Array::new` refuses them.
        Value::Described(_) => {}
    }
}

fn variable_data(buf: &mut BytesMut, wide: bool, bytes: &[u8]) {
    if wide {
        buf.put_u32(bytes.len() as u32);
    } else {
        buf.put_u8(bytes.len() as u8);
    }
    buf.put_slice(bytes);
}

/// Writes the size, count and elements of a list or map inside an array, in the 4-byte form.
fn wide_compound_data(buf: &mut BytesMut, count: usize, elements: impl FnOnce(&mut BytesMut)) {
    let start = buf.len();
    buf.put_u32(0);
    buf.put_u32(count as u32);
    elements(buf);
    let size = (buf.len() - start - 4) as u32;
    buf[start..start + 4].copy_from_slice(&size.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn bytes_of(v: &Value) -> Vec<u8> {
        let mut buf = BytesMut::new();
        value(&mut buf, v);
        buf.to_vec()
    }

    #[test]
    fn integers_use_the_smallest_encoding() {
        assert_eq!(bytes_of(&Value::Uint(0)), [0x43]);
        assert_eq!(bytes_of(&Value::Uint(255)), [0x52, 0xff]);
        assert_eq!(bytes_of(&Value::Uint(256)), [0x70, 0, 0, 1, 0]);
        assert_eq!(bytes_of(&Value::Ulong(0)), [0x44]);
        assert_eq!(bytes_of(&Value::Ulong(0x10)), [0x53, 0x10]);
        assert_eq!(bytes_of(&Value::Ulong(256)), [0x80, 0, 0, 0, 0, 0, 0, 1, 0]);
        assert_eq!(bytes_of(&Value::Int(-1)), [0x54, 0xff]);
        assert_eq!(bytes_of(&Value::Int(200)), [0x71, 0, 0, 0, 200]);
        assert_eq!(bytes_of(&Value::Long(-128)), [0x55, 0x80]);
        assert_eq!(bytes_of(&Value::Long(128)), [0x81, 0, 0, 0, 0, 0, 0, 0, 128]);
        assert_eq!(bytes_of(&Value::Bool(true)), [0x41]);
        assert_eq!(bytes_of(&Value::Bool(false)), [0x42]);
    }

    #[test]
    fn variable_width_switches_at_256_bytes() {
        assert_eq!(bytes_of(&Value::from("ab")), [0xa1, 2, b'a', b'b']);
        let long = "x".repeat(256);
        assert_eq!(&bytes_of(&Value::from(long.as_str()))[..5], [0xb1, 0, 0, 1, 0]);
        assert_eq!(bytes_of(&Value::Symbol("s".into())), [0xa3, 1, b's']);
        assert_eq!(
            bytes_of(&Value::Binary(Bytes::from_static(b"\x01"))),
            [0xa0, 1, 1]
        );
    }

    #[test]
    fn compounds_narrow_to_one_byte_headers() {
        assert_eq!(bytes_of(&Value::List(vec![])), [0x45]);
        assert_eq!(
            bytes_of(&Value::List(vec![Value::Null, Value::Bool(true)])),
            [0xc0, 3, 2, 0x40, 0x41]
        );
        assert_eq!(
            bytes_of(&Value::Map(vec![(Value::Symbol("k".into()), Value::Int(1))])),
            [0xc1, 6, 2, 0xa3, 1, b'k', 0x54, 1]
        );
        let big = Value::List(vec![Value::Null; 300]);
        let encoded = bytes_of(&big);
        assert_eq!(&encoded[..9], [0xd0, 0, 0, 1, 48, 0, 0, 1, 44]);
        assert_eq!(encoded.len(), 9 + 300);
    }

    #[test]
    fn arrays_share_one_constructor() {
        let array = Array::symbols([Symbol::from("a"), Symbol::from("bc")]);
        assert_eq!(
            bytes_of(&Value::Array(array)),
            [0xe0, 7, 2, 0xa3, 1, b'a', 2, b'b', b'c']
        );
        let mut buf = BytesMut::new();
        symbol_array(&mut buf, &[Symbol::from("a"), Symbol::from("bc")]);
        assert_eq!(&buf[..], [0xe0, 7, 2, 0xa3, 1, b'a', 2, b'b', b'c']);
        let described = Array::described(Descriptor::Code(0x24), ArrayType::List, vec![Value::List(vec![])]);
        assert_eq!(
            bytes_of(&Value::Array(described.unwrap_or_else(|_| unreachable!()))),
            [0xe0, 13, 1, 0x00, 0x53, 0x24, 0xd0, 0, 0, 0, 4, 0, 0, 0, 0]
        );
    }

    #[test]
    fn described_values_prefix_their_descriptor() {
        let open = Value::described(Descriptor::Code(0x10), Value::List(vec![Value::from("c")]));
        assert_eq!(bytes_of(&open), [0x00, 0x53, 0x10, 0xc0, 4, 1, 0xa1, 1, b'c']);
        let symbolic = Value::described(Descriptor::Symbol("amqp:open:list".into()), Value::Null);
        assert_eq!(bytes_of(&symbolic)[..3], [0x00, 0xa3, 14]);
    }
}
