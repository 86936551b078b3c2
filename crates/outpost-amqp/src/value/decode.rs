//! The bounded value decoder behind [`Value::decode`](super::Value::decode).
//!
//! Three rules keep hostile input harmless:
//! - every size and count is checked against the bytes actually present before anything is allocated
//!   (a list of `n` elements needs at least `n` bytes, an array of `n` 4-byte elements `4n`);
//! - nesting is bounded by [`MAX_DEPTH`];
//! - zero-width array elements (`0x40`, `0x41`, `0x43`… as an array's constructor, legal per §1.6.24)
//!   draw on a budget of the input's length plus [`ZERO_WIDTH_SLACK`], so decoded values stay
//!   proportional to the input.

use bytes::{Buf, Bytes};

use super::code;
use super::{Array, ArrayType, Described, Descriptor, MAX_DEPTH, Symbol, Timestamp, Value};
use crate::error::AmqpCodecError;

/// Zero-width array elements allowed beyond one per input byte.
const ZERO_WIDTH_SLACK: usize = 1024;

/// Decodes values from one input, keeping the element budget across them.
#[derive(Debug)]
pub(crate) struct Reader<'a> {
    input: &'a mut Bytes,
    budget: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(input: &'a mut Bytes) -> Self {
        let budget = input.len().saturating_add(ZERO_WIDTH_SLACK);
        Self { input, budget }
    }

    /// Returns whether the input is used up.
    pub(crate) fn is_empty(&self) -> bool {
        self.input.is_empty()
    }

    /// Decodes the next value.
    pub(crate) fn value(&mut self) -> Result<Value, AmqpCodecError> {
        let mut input = std::mem::take(self.input);
        let result = decode_value(&mut input, 0, &mut self.budget);
        *self.input = input;
        result
    }
}

fn decode_value(input: &mut Bytes, depth: usize, budget: &mut usize) -> Result<Value, AmqpCodecError> {
    let format = take_u8(input)?;
    if format == code::DESCRIBED {
        let depth = enter(depth)?;
        let descriptor = descriptor(input)?;
        let value = decode_value(input, depth, budget)?;
        return Ok(Value::Described(Box::new(Described { descriptor, value })));
    }
    data(input, format, depth, budget)
}

/// Returns the depth inside one more container, or an error past [`MAX_DEPTH`].
fn enter(depth: usize) -> Result<usize, AmqpCodecError> {
    if depth >= MAX_DEPTH {
        return Err(AmqpCodecError::NestingTooDeep { max: MAX_DEPTH });
    }
    Ok(depth + 1)
}

/// Reads a descriptor (§1.5): a ulong or a symbol, the only two forms the spec defines.
fn descriptor(input: &mut Bytes) -> Result<Descriptor, AmqpCodecError> {
    let format = take_u8(input)?;
    match format {
        code::ULONG0 => Ok(Descriptor::Code(0)),
        code::SMALLULONG => Ok(Descriptor::Code(u64::from(take_u8(input)?))),
        code::ULONG => Ok(Descriptor::Code(take(input, 8)?.get_u64())),
        code::SYM8 | code::SYM32 => {
            let len = length(input, format == code::SYM32)?;
            Ok(Descriptor::Symbol(Symbol::new(utf8(take(input, len)?)?)))
        }
        _ => Err(AmqpCodecError::InvalidDescriptor),
    }
}

/// Reads the data of a value whose constructor `format` has been read: a whole value, or one element of
/// an array sharing that constructor.
fn data(input: &mut Bytes, format: u8, depth: usize, budget: &mut usize) -> Result<Value, AmqpCodecError> {
    Ok(match format {
        code::NULL => Value::Null,
        // §1.6.2: 0x00 is false, 0x01 true; other bytes are read as true, as proton does.
        code::BOOL => Value::Bool(take_u8(input)? != 0),
        code::TRUE => Value::Bool(true),
        code::FALSE => Value::Bool(false),
        code::UBYTE => Value::Ubyte(take_u8(input)?),
        code::USHORT => Value::Ushort(take(input, 2)?.get_u16()),
        code::UINT => Value::Uint(take(input, 4)?.get_u32()),
        code::SMALLUINT => Value::Uint(u32::from(take_u8(input)?)),
        code::UINT0 => Value::Uint(0),
        code::ULONG => Value::Ulong(take(input, 8)?.get_u64()),
        code::SMALLULONG => Value::Ulong(u64::from(take_u8(input)?)),
        code::ULONG0 => Value::Ulong(0),
        code::BYTE => Value::Byte(take(input, 1)?.get_i8()),
        code::SHORT => Value::Short(take(input, 2)?.get_i16()),
        code::INT => Value::Int(take(input, 4)?.get_i32()),
        code::SMALLINT => Value::Int(i32::from(take(input, 1)?.get_i8())),
        code::LONG => Value::Long(take(input, 8)?.get_i64()),
        code::SMALLLONG => Value::Long(i64::from(take(input, 1)?.get_i8())),
        code::FLOAT => Value::Float(take(input, 4)?.get_f32()),
        code::DOUBLE => Value::Double(take(input, 8)?.get_f64()),
        code::DECIMAL32 => Value::Decimal32(fixed(input)?),
        code::DECIMAL64 => Value::Decimal64(fixed(input)?),
        code::DECIMAL128 => Value::Decimal128(fixed(input)?),
        code::CHAR => {
            let raw = take(input, 4)?.get_u32();
            Value::Char(char::from_u32(raw).ok_or(AmqpCodecError::InvalidChar(raw))?)
        }
        code::TIMESTAMP => Value::Timestamp(Timestamp(take(input, 8)?.get_i64())),
        code::UUID => Value::Uuid(fixed(input)?),
        code::VBIN8 | code::VBIN32 => {
            let len = length(input, format == code::VBIN32)?;
            Value::Binary(take(input, len)?)
        }
        code::STR8 | code::STR32 => {
            let len = length(input, format == code::STR32)?;
            Value::String(utf8(take(input, len)?)?)
        }
        code::SYM8 | code::SYM32 => {
            let len = length(input, format == code::SYM32)?;
            Value::Symbol(Symbol::new(utf8(take(input, len)?)?))
        }
        code::LIST0 => Value::List(Vec::new()),
        code::LIST8 | code::LIST32 => {
            let depth = enter(depth)?;
            let (mut body, count) = compound(input, format == code::LIST32, 1)?;
            let mut items = Vec::with_capacity(count);
            for _ in 0..count {
                items.push(decode_value(&mut body, depth, budget)?);
            }
            finish(&body, count)?;
            Value::List(items)
        }
        code::MAP8 | code::MAP32 => {
            let depth = enter(depth)?;
            let (mut body, count) = compound(input, format == code::MAP32, 1)?;
            // §1.6.23: a map's count is of keys and values together.
            if count % 2 != 0 {
                return Err(AmqpCodecError::OddMapCount(count));
            }
            let mut pairs = Vec::with_capacity(count / 2);
            for _ in 0..count / 2 {
                let key = decode_value(&mut body, depth, budget)?;
                let value = decode_value(&mut body, depth, budget)?;
                pairs.push((key, value));
            }
            finish(&body, count)?;
            Value::Map(pairs)
        }
        code::ARRAY8 | code::ARRAY32 => Value::Array(array(input, format == code::ARRAY32, depth, budget)?),
        _ => return Err(AmqpCodecError::InvalidFormatCode(format)),
    })
}

/// Reads an array (§1.6.24): size, count, one constructor (maybe described), then the elements' data.
fn array(input: &mut Bytes, wide: bool, depth: usize, budget: &mut usize) -> Result<Array, AmqpCodecError> {
    let depth = enter(depth)?;
    let (mut body, count) = compound(input, wide, 0)?;
    let mut format = take_u8(&mut body)?;
    let descriptor = if format == code::DESCRIBED {
        let descriptor = descriptor(&mut body)?;
        format = take_u8(&mut body)?;
        Some(descriptor)
    } else {
        None
    };
    let (element_type, width) = element_type(format).ok_or(AmqpCodecError::InvalidFormatCode(format))?;
    if width == 0 {
        *budget = budget
            .checked_sub(count)
            .ok_or(AmqpCodecError::TooManyElements(count))?;
    } else if count.saturating_mul(width) > body.len() {
        return Err(AmqpCodecError::InvalidCompoundSize {
            size: body.len(),
            count,
        });
    }
    let mut elements = Vec::with_capacity(count);
    for _ in 0..count {
        elements.push(data(&mut body, format, depth, budget)?);
    }
    finish(&body, count)?;
    Ok(Array::from_decoded(descriptor, element_type, elements))
}

/// Returns the element type an array constructor names and the fewest bytes each element takes.
fn element_type(format: u8) -> Option<(ArrayType, usize)> {
    Some(match format {
        code::NULL => (ArrayType::Null, 0),
        code::TRUE | code::FALSE => (ArrayType::Bool, 0),
        code::BOOL => (ArrayType::Bool, 1),
        code::UBYTE => (ArrayType::Ubyte, 1),
        code::USHORT => (ArrayType::Ushort, 2),
        code::UINT => (ArrayType::Uint, 4),
        code::SMALLUINT => (ArrayType::Uint, 1),
        code::UINT0 => (ArrayType::Uint, 0),
        code::ULONG => (ArrayType::Ulong, 8),
        code::SMALLULONG => (ArrayType::Ulong, 1),
        code::ULONG0 => (ArrayType::Ulong, 0),
        code::BYTE => (ArrayType::Byte, 1),
        code::SHORT => (ArrayType::Short, 2),
        code::INT => (ArrayType::Int, 4),
        code::SMALLINT => (ArrayType::Int, 1),
        code::LONG => (ArrayType::Long, 8),
        code::SMALLLONG => (ArrayType::Long, 1),
        code::FLOAT => (ArrayType::Float, 4),
        code::DOUBLE => (ArrayType::Double, 8),
        code::DECIMAL32 => (ArrayType::Decimal32, 4),
        code::DECIMAL64 => (ArrayType::Decimal64, 8),
        code::DECIMAL128 => (ArrayType::Decimal128, 16),
        code::CHAR => (ArrayType::Char, 4),
        code::TIMESTAMP => (ArrayType::Timestamp, 8),
        code::UUID => (ArrayType::Uuid, 16),
        code::VBIN8 => (ArrayType::Binary, 1),
        code::VBIN32 => (ArrayType::Binary, 4),
        code::STR8 => (ArrayType::String, 1),
        code::STR32 => (ArrayType::String, 4),
        code::SYM8 => (ArrayType::Symbol, 1),
        code::SYM32 => (ArrayType::Symbol, 4),
        code::LIST0 => (ArrayType::List, 0),
        code::LIST8 => (ArrayType::List, 2),
        code::LIST32 => (ArrayType::List, 8),
        code::MAP8 => (ArrayType::Map, 2),
        code::MAP32 => (ArrayType::Map, 8),
        code::ARRAY8 => (ArrayType::Array, 3),
        code::ARRAY32 => (ArrayType::Array, 9),
        _ => return None,
    })
}

/// Reads a compound header (size, then count, §1.6.22) and splits off its body after the count field.
/// Each element takes at least `min_width` bytes of the body, so a count beyond that is refused before
/// anything is allocated.
fn compound(input: &mut Bytes, wide: bool, min_width: usize) -> Result<(Bytes, usize), AmqpCodecError> {
    let size = length(input, wide)?;
    let count_len = if wide { 4 } else { 1 };
    if size < count_len {
        return Err(AmqpCodecError::InvalidCompoundSize { size, count: 0 });
    }
    let mut body = take(input, size)?;
    let count = length(&mut body, wide)?;
    if count.saturating_mul(min_width) > body.len() {
        return Err(AmqpCodecError::InvalidCompoundSize { size, count });
    }
    Ok((body, count))
}

/// Checks a compound's elements filled its declared size exactly.
fn finish(body: &Bytes, count: usize) -> Result<(), AmqpCodecError> {
    if body.is_empty() {
        Ok(())
    } else {
        Err(AmqpCodecError::InvalidCompoundSize {
            size: body.len(),
            count,
        })
    }
}

/// Reads a 1-byte or 4-byte size or count.
fn length(input: &mut Bytes, wide: bool) -> Result<usize, AmqpCodecError> {
    if wide {
        Ok(take(input, 4)?.get_u32() as usize)
    } else {
        Ok(usize::from(take_u8(input)?))
    }
}

fn take_u8(input: &mut Bytes) -> Result<u8, AmqpCodecError> {
    if input.is_empty() {
        return Err(AmqpCodecError::Truncated {
            needed: 1,
            available: 0,
        });
    }
    Ok(input.get_u8())
}

/// Splits off the next `len` bytes, without copying.
fn take(input: &mut Bytes, len: usize) -> Result<Bytes, AmqpCodecError> {
    if input.len() < len {
        return Err(AmqpCodecError::Truncated {
            needed: len,
            available: input.len(),
        });
    }
    Ok(input.split_to(len))
}

fn fixed<const N: usize>(input: &mut Bytes) -> Result<[u8; N], AmqpCodecError> {
    let mut out = [0; N];
    take(input, N)?.copy_to_slice(&mut out);
    Ok(out)
}

fn utf8(bytes: Bytes) -> Result<String, AmqpCodecError> {
    String::from_utf8(bytes.into()).map_err(|_| AmqpCodecError::InvalidUtf8)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]
mod tests {
    use super::*;

    fn decode(bytes: &[u8]) -> Result<Value, AmqpCodecError> {
        let mut input = Bytes::copy_from_slice(bytes);
        let value = Value::decode(&mut input)?;
        assert!(input.is_empty(), "{bytes:02x?} left {input:02x?}");
        Ok(value)
    }

    #[test]
    fn every_integer_encoding_decodes() {
        assert_eq!(decode(&[0x40]), Ok(Value::Null));
        assert_eq!(decode(&[0x56, 0x01]), Ok(Value::Bool(true)));
        assert_eq!(decode(&[0x56, 0x00]), Ok(Value::Bool(false)));
        assert_eq!(decode(&[0x41]), Ok(Value::Bool(true)));
        assert_eq!(decode(&[0x42]), Ok(Value::Bool(false)));
        assert_eq!(decode(&[0x50, 7]), Ok(Value::Ubyte(7)));
        assert_eq!(decode(&[0x60, 1, 2]), Ok(Value::Ushort(0x0102)));
        assert_eq!(decode(&[0x70, 0, 0, 1, 0]), Ok(Value::Uint(256)));
        assert_eq!(decode(&[0x52, 9]), Ok(Value::Uint(9)));
        assert_eq!(decode(&[0x43]), Ok(Value::Uint(0)));
        assert_eq!(decode(&[0x80, 0, 0, 0, 0, 0, 0, 0, 5]), Ok(Value::Ulong(5)));
        assert_eq!(decode(&[0x53, 0x10]), Ok(Value::Ulong(0x10)));
        assert_eq!(decode(&[0x44]), Ok(Value::Ulong(0)));
        assert_eq!(decode(&[0x51, 0xff]), Ok(Value::Byte(-1)));
        assert_eq!(decode(&[0x61, 0xff, 0xfe]), Ok(Value::Short(-2)));
        assert_eq!(decode(&[0x71, 0xff, 0xff, 0xff, 0xfd]), Ok(Value::Int(-3)));
        assert_eq!(decode(&[0x54, 0xfc]), Ok(Value::Int(-4)));
        assert_eq!(decode(&[0x81, 0, 0, 0, 0, 0, 0, 1, 0]), Ok(Value::Long(256)));
        assert_eq!(decode(&[0x55, 0x7f]), Ok(Value::Long(127)));
    }

    #[test]
    fn other_primitives_decode() {
        assert_eq!(decode(&[0x72, 0x3f, 0x80, 0, 0]), Ok(Value::Float(1.0)));
        assert_eq!(
            decode(&[0x82, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0]),
            Ok(Value::Double(1.0))
        );
        assert_eq!(decode(&[0x74, 1, 2, 3, 4]), Ok(Value::Decimal32([1, 2, 3, 4])));
        assert_eq!(
            decode(&[0x84, 1, 2, 3, 4, 5, 6, 7, 8]),
            Ok(Value::Decimal64([1, 2, 3, 4, 5, 6, 7, 8]))
        );
        assert_eq!(
            decode(&[&[0x94][..], &[9; 16]].concat()),
            Ok(Value::Decimal128([9; 16]))
        );
        assert_eq!(decode(&[0x73, 0, 1, 0xf6, 0x00]), Ok(Value::Char('\u{1f600}')));
        assert_eq!(
            decode(&[0x73, 0, 0, 0xd8, 0x00]),
            Err(AmqpCodecError::InvalidChar(0xd800))
        );
        assert_eq!(
            decode(&[0x83, 0, 0, 0x01, 0x8f, 0, 0, 0, 0]),
            Ok(Value::Timestamp(Timestamp(0x018f_0000_0000)))
        );
        assert_eq!(
            decode(&[&[0x98][..], &[0xab; 16]].concat()),
            Ok(Value::Uuid([0xab; 16]))
        );
        assert_eq!(
            decode(&[0xa0, 2, 1, 2]),
            Ok(Value::Binary(Bytes::from_static(&[1, 2])))
        );
        assert_eq!(
            decode(&[0xb0, 0, 0, 0, 1, 7]),
            Ok(Value::Binary(Bytes::from_static(&[7])))
        );
        assert_eq!(decode(&[0xa1, 2, b'h', b'i']), Ok(Value::from("hi")));
        assert_eq!(decode(&[0xb1, 0, 0, 0, 2, b'h', b'i']), Ok(Value::from("hi")));
        assert_eq!(decode(&[0xa3, 1, b'x']), Ok(Value::Symbol("x".into())));
        assert_eq!(decode(&[0xb3, 0, 0, 0, 1, b'x']), Ok(Value::Symbol("x".into())));
        assert_eq!(decode(&[0xa1, 1, 0xff]), Err(AmqpCodecError::InvalidUtf8));
    }

    #[test]
    fn compounds_decode_in_both_widths() {
        assert_eq!(decode(&[0x45]), Ok(Value::List(vec![])));
        assert_eq!(decode(&[0xc0, 2, 1, 0x40]), Ok(Value::List(vec![Value::Null])));
        assert_eq!(
            decode(&[0xd0, 0, 0, 0, 5, 0, 0, 0, 1, 0x41]),
            Ok(Value::List(vec![Value::Bool(true)]))
        );
        assert_eq!(
            decode(&[0xc1, 3, 2, 0x43, 0x42]),
            Ok(Value::Map(vec![(Value::Uint(0), Value::Bool(false))]))
        );
        assert_eq!(
            decode(&[0xd1, 0, 0, 0, 6, 0, 0, 0, 2, 0x43, 0x42]),
            Ok(Value::Map(vec![(Value::Uint(0), Value::Bool(false))]))
        );
        assert_eq!(decode(&[0xc1, 2, 1, 0x40]), Err(AmqpCodecError::OddMapCount(1)));
        // Two bytes of elements declared, one used.
        assert!(matches!(
            decode(&[0xc0, 3, 1, 0x40, 0x40]),
            Err(AmqpCodecError::InvalidCompoundSize { .. })
        ));
        let array = decode(&[0xf0, 0, 0, 0, 13, 0, 0, 0, 2, 0x70, 0, 0, 0, 1, 0, 0, 0, 2]).unwrap();
        let Value::Array(array) = array else {
            panic!("not an array")
        };
        assert_eq!(array.element_type(), ArrayType::Uint);
        assert_eq!(array.elements(), [Value::Uint(1), Value::Uint(2)]);
        let described = decode(&[0xe0, 5, 2, 0x00, 0x53, 0x24, 0x45]).unwrap();
        let Value::Array(described) = described else {
            panic!("not an array")
        };
        assert_eq!(described.descriptor(), Some(&Descriptor::Code(0x24)));
        assert_eq!(described.elements(), [Value::List(vec![]), Value::List(vec![])]);
    }

    #[test]
    fn described_values_accept_both_descriptor_forms() {
        assert_eq!(
            decode(&[0x00, 0x53, 0x24, 0x45]),
            Ok(Value::described(Descriptor::Code(0x24), Value::List(vec![])))
        );
        assert_eq!(
            decode(&[0x00, 0xa3, 1, b'x', 0x40]),
            Ok(Value::described(Descriptor::Symbol("x".into()), Value::Null))
        );
        assert_eq!(
            decode(&[0x00, 0x40, 0x40]),
            Err(AmqpCodecError::InvalidDescriptor)
        );
    }

    #[test]
    fn hostile_sizes_are_refused_before_allocation() {
        // A list32 claiming 4 GiB of body in 9 bytes.
        assert!(matches!(
            decode(&[0xd0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]),
            Err(AmqpCodecError::Truncated { .. })
        ));
        // A count larger than the body can hold.
        assert!(matches!(
            decode(&[0xd0, 0, 0, 0, 4, 0xff, 0xff, 0xff, 0xff]),
            Err(AmqpCodecError::InvalidCompoundSize { .. })
        ));
        // Four billion zero-width nulls in an array of 10 bytes.
        assert_eq!(
            decode(&[0xf0, 0, 0, 0, 5, 0xff, 0xff, 0xff, 0xff, 0x40]),
            Err(AmqpCodecError::TooManyElements(0xffff_ffff))
        );
        // A few zero-width elements are fine.
        let Value::Array(trues) = decode(&[0xe0, 2, 3, 0x41]).unwrap() else {
            panic!("not an array")
        };
        assert_eq!(trues.elements(), [const { Value::Bool(true) }; 3]);
    }

    #[test]
    fn nesting_is_bounded() {
        let nested = |levels: usize| {
            let mut value = Value::Null;
            for _ in 0..levels {
                value = Value::List(vec![value]);
            }
            let mut buf = bytes::BytesMut::new();
            value.encode(&mut buf);
            buf.to_vec()
        };
        assert!(decode(&nested(MAX_DEPTH)).is_ok());
        assert_eq!(
            decode(&nested(MAX_DEPTH + 1)),
            Err(AmqpCodecError::NestingTooDeep { max: MAX_DEPTH })
        );
        let mut described = [0x00, 0x53, 0x01].repeat(MAX_DEPTH + 1);
        described.push(0x40);
        assert_eq!(
            decode(&described),
            Err(AmqpCodecError::NestingTooDeep { max: MAX_DEPTH })
        );
        let mut ok = [0x00, 0x53, 0x01].repeat(MAX_DEPTH);
        ok.push(0x40);
        assert!(decode(&ok).is_ok());
    }

    #[test]
    fn truncated_input_is_an_error() {
        for bytes in [
            &[][..],
            &[0x70, 0],
            &[0xa1, 3, b'a'],
            &[0xc0],
            &[0x00],
            &[0x00, 0x53],
        ] {
            assert!(decode(bytes).is_err(), "{bytes:02x?}");
        }
        assert_eq!(decode(&[0x01]), Err(AmqpCodecError::InvalidFormatCode(0x01)));
    }
}
