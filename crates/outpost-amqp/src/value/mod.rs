//! The AMQP 1.0 type system (OASIS AMQP 1.0 Part 1, "Types"): every primitive type, described types and
//! their encodings.
//!
//! [`Value`] is one decoded value of any type. [`Value::decode`] accepts every encoding the spec defines
//! (compact and wide), bounds nesting at [`MAX_DEPTH`] and never allocates for more elements than the
//! input can hold; [`Value::encode`] picks the smallest encoding of each value (§1.2: "the encoder
//! SHOULD use the most compact form").
//!
//! - `code`: the format codes (§1.6).
//! - `encode`: writers for each primitive and compound, used by [`Value::encode`] and by the composite
//!   types of the other modules.
//! - `decode`: the bounded reader behind [`Value::decode`].

pub(crate) mod code;
pub(crate) mod decode;
pub(crate) mod encode;

use std::fmt;

use bytes::{Bytes, BytesMut};

use crate::error::AmqpCodecError;

/// The deepest nesting of lists, maps, arrays and described values [`Value::decode`] accepts. Real
/// peers nest a handful of levels (a filter inside a source inside an attach); the bound keeps a hostile
/// peer from exhausting the stack.
pub const MAX_DEPTH: usize = 32;

/// A symbolic value: a constant such as `amqp:decode-error` or `com.microsoft:epoch` (§1.6.21).
///
/// The spec restricts symbols to ASCII; this codec accepts any UTF-8 on decode (lenient on input) and
/// encodes the bytes as they are.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Symbol(String);

impl Symbol {
    /// Returns a symbol holding `value`.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// Returns the symbol's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Returns the symbol's text, consuming it.
    pub fn into_string(self) -> String {
        self.0
    }
}

impl From<&str> for Symbol {
    fn from(value: &str) -> Self {
        Self(value.to_owned())
    }
}

impl From<String> for Symbol {
    fn from(value: String) -> Self {
        Self(value)
    }
}

impl PartialEq<str> for Symbol {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for Symbol {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl fmt::Display for Symbol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An absolute point in time: milliseconds since the Unix epoch, as a signed 64-bit integer (§1.6.17).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub i64);

/// The descriptor of a described type (§1.5): a numeric code (`domain-id << 32 | descriptor-id`) or a
/// symbolic name such as `amqp:open:list`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Descriptor {
    /// A numeric descriptor, e.g. `0x10` for open.
    Code(u64),
    /// A symbolic descriptor, e.g. `amqp:open:list`.
    Symbol(Symbol),
}

impl fmt::Display for Descriptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Code(code) => write!(f, "{code:#x}"),
            Self::Symbol(symbol) => write!(f, "{symbol}"),
        }
    }
}

/// A described value: a descriptor and the value it annotates (§1.5, format code `0x00`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Described {
    /// What the value means.
    pub descriptor: Descriptor,
    /// The value itself, typically a list (composite types) or a map.
    pub value: Value,
}

/// One AMQP value of any type (§1.6).
///
/// Equality compares floats by their bits, so `NaN == NaN` and `0.0 != -0.0`: a decoded value always
/// equals its re-decoded encoding, which the round-trip tests rely on.
#[derive(Clone, Debug)]
pub enum Value {
    /// The null value (`0x40`, §1.6.1).
    Null,
    /// A boolean (`0x56`, `0x41` true, `0x42` false, §1.6.2).
    Bool(bool),
    /// An unsigned 8-bit integer (`0x50`, §1.6.3).
    Ubyte(u8),
    /// An unsigned 16-bit integer (`0x60`, §1.6.4).
    Ushort(u16),
    /// An unsigned 32-bit integer (`0x70`, `0x52` smalluint, `0x43` uint0, §1.6.5).
    Uint(u32),
    /// An unsigned 64-bit integer (`0x80`, `0x53` smallulong, `0x44` ulong0, §1.6.6).
    Ulong(u64),
    /// A signed 8-bit integer (`0x51`, §1.6.7).
    Byte(i8),
    /// A signed 16-bit integer (`0x61`, §1.6.8).
    Short(i16),
    /// A signed 32-bit integer (`0x71`, `0x54` smallint, §1.6.9).
    Int(i32),
    /// A signed 64-bit integer (`0x81`, `0x55` smalllong, §1.6.10).
    Long(i64),
    /// An IEEE 754 binary32 float (`0x72`, §1.6.11).
    Float(f32),
    /// An IEEE 754 binary64 float (`0x82`, §1.6.12).
    Double(f64),
    /// An IEEE 754 decimal32, kept as its raw big-endian bytes (`0x74`, §1.6.13).
    Decimal32([u8; 4]),
    /// An IEEE 754 decimal64, kept as its raw big-endian bytes (`0x84`, §1.6.14).
    Decimal64([u8; 8]),
    /// An IEEE 754 decimal128, kept as its raw big-endian bytes (`0x94`, §1.6.15).
    Decimal128([u8; 16]),
    /// A Unicode character, UTF-32BE on the wire (`0x73`, §1.6.16).
    Char(char),
    /// Milliseconds since the Unix epoch (`0x83`, §1.6.17).
    Timestamp(Timestamp),
    /// A UUID as its 16 bytes in network order (`0x98`, §1.6.18). `uuid::Uuid::from_bytes` converts.
    Uuid([u8; 16]),
    /// Opaque bytes (`0xa0`, `0xb0`, §1.6.19). Decoded binaries share the input buffer.
    Binary(Bytes),
    /// UTF-8 text (`0xa1`, `0xb1`, §1.6.20).
    String(String),
    /// A symbolic constant (`0xa3`, `0xb3`, §1.6.21).
    Symbol(Symbol),
    /// A sequence of values of any types (`0x45`, `0xc0`, `0xd0`, §1.6.22).
    List(Vec<Value>),
    /// Key/value pairs in wire order (`0xc1`, `0xd1`, §1.6.23). Order is kept and keys are not
    /// deduplicated, so a map re-encodes exactly.
    Map(Vec<(Value, Value)>),
    /// A sequence of values sharing one constructor (`0xe0`, `0xf0`, §1.6.24).
    Array(Array),
    /// A described value (`0x00`, §1.5).
    Described(Box<Described>),
}

impl PartialEq for Value {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Null, Self::Null) => true,
            (Self::Bool(a), Self::Bool(b)) => a == b,
            (Self::Ubyte(a), Self::Ubyte(b)) => a == b,
            (Self::Ushort(a), Self::Ushort(b)) => a == b,
            (Self::Uint(a), Self::Uint(b)) => a == b,
            (Self::Ulong(a), Self::Ulong(b)) => a == b,
            (Self::Byte(a), Self::Byte(b)) => a == b,
            (Self::Short(a), Self::Short(b)) => a == b,
            (Self::Int(a), Self::Int(b)) => a == b,
            (Self::Long(a), Self::Long(b)) => a == b,
            (Self::Float(a), Self::Float(b)) => a.to_bits() == b.to_bits(),
            (Self::Double(a), Self::Double(b)) => a.to_bits() == b.to_bits(),
            (Self::Decimal32(a), Self::Decimal32(b)) => a == b,
            (Self::Decimal64(a), Self::Decimal64(b)) => a == b,
            (Self::Decimal128(a), Self::Decimal128(b)) => a == b,
            (Self::Char(a), Self::Char(b)) => a == b,
            (Self::Timestamp(a), Self::Timestamp(b)) => a == b,
            (Self::Uuid(a), Self::Uuid(b)) => a == b,
            (Self::Binary(a), Self::Binary(b)) => a == b,
            (Self::String(a), Self::String(b)) => a == b,
            (Self::Symbol(a), Self::Symbol(b)) => a == b,
            (Self::List(a), Self::List(b)) => a == b,
            (Self::Map(a), Self::Map(b)) => a == b,
            (Self::Array(a), Self::Array(b)) => a == b,
            (Self::Described(a), Self::Described(b)) => a == b,
            _ => false,
        }
    }
}

impl Eq for Value {}

impl Value {
    /// Decodes one value from the front of `input`, advancing it past the value.
    ///
    /// Binary values are slices of `input`'s storage, not copies.
    ///
    /// # Errors
    ///
    /// Returns an [`AmqpCodecError`] for bytes that are not a complete, valid AMQP value; how far `input`
    /// advanced is then unspecified.
    pub fn decode(input: &mut Bytes) -> Result<Self, AmqpCodecError> {
        decode::Reader::new(input).value()
    }

    /// Appends the smallest encoding of this value to `buf` (§1.2).
    ///
    /// Sizes are 32-bit on the wire: a binary, string or compound larger than 4 GiB cannot be encoded,
    /// which the frame size limit rules out long before.
    pub fn encode(&self, buf: &mut BytesMut) {
        encode::value(buf, self);
    }

    /// Returns the name of this value's type as in the spec, e.g. `"ulong"`.
    pub const fn type_name(&self) -> &'static str {
        match self {
            Self::Null => "null",
            Self::Bool(_) => "boolean",
            Self::Ubyte(_) => "ubyte",
            Self::Ushort(_) => "ushort",
            Self::Uint(_) => "uint",
            Self::Ulong(_) => "ulong",
            Self::Byte(_) => "byte",
            Self::Short(_) => "short",
            Self::Int(_) => "int",
            Self::Long(_) => "long",
            Self::Float(_) => "float",
            Self::Double(_) => "double",
            Self::Decimal32(_) => "decimal32",
            Self::Decimal64(_) => "decimal64",
            Self::Decimal128(_) => "decimal128",
            Self::Char(_) => "char",
            Self::Timestamp(_) => "timestamp",
            Self::Uuid(_) => "uuid",
            Self::Binary(_) => "binary",
            Self::String(_) => "string",
            Self::Symbol(_) => "symbol",
            Self::List(_) => "list",
            Self::Map(_) => "map",
            Self::Array(_) => "array",
            Self::Described(_) => "described",
        }
    }

    /// Returns a described value.
    pub fn described(descriptor: Descriptor, value: Self) -> Self {
        Self::Described(Box::new(Described { descriptor, value }))
    }

    /// Returns the element type of an array holding this value, or `None` for a described value, which
    /// goes into an array through [`Array::described`].
    pub const fn array_type(&self) -> Option<ArrayType> {
        Some(match self {
            Self::Null => ArrayType::Null,
            Self::Bool(_) => ArrayType::Bool,
            Self::Ubyte(_) => ArrayType::Ubyte,
            Self::Ushort(_) => ArrayType::Ushort,
            Self::Uint(_) => ArrayType::Uint,
            Self::Ulong(_) => ArrayType::Ulong,
            Self::Byte(_) => ArrayType::Byte,
            Self::Short(_) => ArrayType::Short,
            Self::Int(_) => ArrayType::Int,
            Self::Long(_) => ArrayType::Long,
            Self::Float(_) => ArrayType::Float,
            Self::Double(_) => ArrayType::Double,
            Self::Decimal32(_) => ArrayType::Decimal32,
            Self::Decimal64(_) => ArrayType::Decimal64,
            Self::Decimal128(_) => ArrayType::Decimal128,
            Self::Char(_) => ArrayType::Char,
            Self::Timestamp(_) => ArrayType::Timestamp,
            Self::Uuid(_) => ArrayType::Uuid,
            Self::Binary(_) => ArrayType::Binary,
            Self::String(_) => ArrayType::String,
            Self::Symbol(_) => ArrayType::Symbol,
            Self::List(_) => ArrayType::List,
            Self::Map(_) => ArrayType::Map,
            Self::Array(_) => ArrayType::Array,
            Self::Described(_) => return None,
        })
    }
}

impl From<&str> for Value {
    fn from(value: &str) -> Self {
        Self::String(value.to_owned())
    }
}

impl From<String> for Value {
    fn from(value: String) -> Self {
        Self::String(value)
    }
}

impl From<Symbol> for Value {
    fn from(value: Symbol) -> Self {
        Self::Symbol(value)
    }
}

impl From<Bytes> for Value {
    fn from(value: Bytes) -> Self {
        Self::Binary(value)
    }
}

impl From<bool> for Value {
    fn from(value: bool) -> Self {
        Self::Bool(value)
    }
}

impl From<i32> for Value {
    fn from(value: i32) -> Self {
        Self::Int(value)
    }
}

impl From<i64> for Value {
    fn from(value: i64) -> Self {
        Self::Long(value)
    }
}

impl From<u32> for Value {
    fn from(value: u32) -> Self {
        Self::Uint(value)
    }
}

impl From<u64> for Value {
    fn from(value: u64) -> Self {
        Self::Ulong(value)
    }
}

impl From<Timestamp> for Value {
    fn from(value: Timestamp) -> Self {
        Self::Timestamp(value)
    }
}

/// The element type of an [`Array`]: the primitive type its single constructor names (§1.6.24).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[allow(missing_docs, reason = "one variant per primitive type, named as in Value")]
pub enum ArrayType {
    Null,
    Bool,
    Ubyte,
    Ushort,
    Uint,
    Ulong,
    Byte,
    Short,
    Int,
    Long,
    Float,
    Double,
    Decimal32,
    Decimal64,
    Decimal128,
    Char,
    Timestamp,
    Uuid,
    Binary,
    String,
    Symbol,
    List,
    Map,
    Array,
}

/// An array: values of one type sharing one constructor (§1.6.24), optionally all described by one
/// descriptor (the constructor `0x00 descriptor code`, as in `multiple` fields of described types).
///
/// The invariant "every element is of the element type" is checked by the constructors, so encoding an
/// array cannot fail.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Array {
    descriptor: Option<Descriptor>,
    element_type: ArrayType,
    elements: Vec<Value>,
}

impl Array {
    /// Returns an array of `elements`, all of type `element_type`.
    ///
    /// # Errors
    ///
    /// Returns [`AmqpCodecError::ArrayElementMismatch`] when an element is of another type (described
    /// elements included: use [`Array::described`]).
    pub fn new(element_type: ArrayType, elements: Vec<Value>) -> Result<Self, AmqpCodecError> {
        if let Some(_wrong) = elements
            .iter()
            .find(|value| value.array_type() != Some(element_type))
        {
            return Err(AmqpCodecError::ArrayElementMismatch(element_type));
        }
        Ok(Self {
            descriptor: None,
            element_type,
            elements,
        })
    }

    /// Returns an array of described values sharing `descriptor`; `elements` are the values being
    /// described, all of type `element_type`.
    ///
    /// # Errors
    ///
    /// Returns [`AmqpCodecError::ArrayElementMismatch`] when an element is of another type.
    pub fn described(
        descriptor: Descriptor,
        element_type: ArrayType,
        elements: Vec<Value>,
    ) -> Result<Self, AmqpCodecError> {
        let mut array = Self::new(element_type, elements)?;
        array.descriptor = Some(descriptor);
        Ok(array)
    }

    /// Returns an array of symbols, the usual encoding of `multiple` symbol fields such as capabilities
    /// (§1.3 "multiple").
    pub fn symbols(symbols: impl IntoIterator<Item = Symbol>) -> Self {
        Self {
            descriptor: None,
            element_type: ArrayType::Symbol,
            elements: symbols.into_iter().map(Value::Symbol).collect(),
        }
    }

    /// Returns the descriptor shared by all elements, if the array holds described values.
    pub const fn descriptor(&self) -> Option<&Descriptor> {
        self.descriptor.as_ref()
    }

    /// Returns the element type.
    pub const fn element_type(&self) -> ArrayType {
        self.element_type
    }

    /// Returns the elements (without their descriptor, when described).
    pub fn elements(&self) -> &[Value] {
        &self.elements
    }

    /// Returns the elements, consuming the array.
    pub fn into_elements(self) -> Vec<Value> {
        self.elements
    }

    /// Builds an array the decoder has already checked.
    pub(crate) const fn from_decoded(
        descriptor: Option<Descriptor>,
        element_type: ArrayType,
        elements: Vec<Value>,
    ) -> Self {
        Self {
            descriptor,
            element_type,
            elements,
        }
    }
}
