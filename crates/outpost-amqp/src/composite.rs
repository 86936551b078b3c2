//! The machinery of composite types (AMQP 1.0 §1.4): described lists whose elements are named fields.
//!
//! Encoding follows the wire reference §7.6: **every field is written**, absent ones as an explicit null
//! (`0x40`), because the Python pyamqp client cannot parse a list whose trailing fields are omitted.
//! Decoding follows the spec (§1.4): a list shorter than the field count leaves the missing trailing
//! fields absent, and fields beyond the ones this codec knows are ignored.

use bytes::{Bytes, BytesMut};

use crate::error::AmqpCodecError;
use crate::value::{Array, ArrayType, Descriptor, Symbol, Timestamp, Value, encode};

/// The identity of a composite type: its spec name and both forms of its descriptor (§1.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CompositeType {
    /// The spec's name, e.g. `"open"`.
    pub name: &'static str,
    /// The symbolic descriptor, e.g. `"amqp:open:list"`.
    pub symbol: &'static str,
    /// The numeric descriptor, e.g. `0x10` (domain `0x00000000`).
    pub code: u64,
}

impl CompositeType {
    /// Returns whether `descriptor` names this type, in either form.
    pub fn matches(&self, descriptor: &Descriptor) -> bool {
        match descriptor {
            Descriptor::Code(code) => *code == self.code,
            Descriptor::Symbol(symbol) => symbol == self.symbol,
        }
    }
}

/// Returns the code of the type among `known` that `descriptor` names.
pub(crate) fn code_of(descriptor: &Descriptor, known: &[CompositeType]) -> Option<u64> {
    known
        .iter()
        .find(|known| known.matches(descriptor))
        .map(|known| known.code)
}

/// Writes a composite as a described list of exactly `count` fields, written by `fields`.
pub(crate) fn write_list(
    buf: &mut BytesMut,
    composite: CompositeType,
    count: usize,
    fields: impl FnOnce(&mut BytesMut),
) {
    encode::descriptor(buf, &Descriptor::Code(composite.code));
    let start = buf.len();
    encode::list(buf, count, fields);
    debug_assert!(buf.len() > start, "a composite list is never empty on the wire");
}

/// Splits a described value into its descriptor and value, or says what was expected.
pub(crate) fn split_described(
    value: Value,
    expected: &'static str,
) -> Result<(Descriptor, Value), AmqpCodecError> {
    match value {
        Value::Described(described) => {
            let described = *described;
            Ok((described.descriptor, described.value))
        }
        _ => Err(AmqpCodecError::NotDescribed { expected }),
    }
}

/// Reads the fields of a composite's list in order. Past the end of the list every field is null.
#[derive(Debug)]
pub(crate) struct FieldReader {
    composite: &'static str,
    fields: std::vec::IntoIter<Value>,
}

impl FieldReader {
    /// Starts reading `value`, the list of a composite whose descriptor has been checked.
    pub(crate) fn new(composite: CompositeType, value: Value) -> Result<Self, AmqpCodecError> {
        match value {
            Value::List(fields) => Ok(Self {
                composite: composite.name,
                fields: fields.into_iter(),
            }),
            _ => Err(AmqpCodecError::InvalidComposite {
                composite: composite.name,
                expected: "list",
            }),
        }
    }

    /// Starts reading `value`, which must be a described list of type `composite`.
    pub(crate) fn described(composite: CompositeType, value: Value) -> Result<Self, AmqpCodecError> {
        let (descriptor, value) = split_described(value, composite.name)?;
        if !composite.matches(&descriptor) {
            return Err(AmqpCodecError::UnexpectedDescriptor {
                expected: composite.name,
                found: descriptor,
            });
        }
        Self::new(composite, value)
    }

    /// Reads the next field; null and missing are both `None`.
    pub(crate) fn optional<T: Field>(&mut self, field: &'static str) -> Result<Option<T>, AmqpCodecError> {
        match self.fields.next() {
            None | Some(Value::Null) => Ok(None),
            Some(value) => T::from_value(value).map(Some).map_err(|error| {
                error.unwrap_or(AmqpCodecError::InvalidField {
                    composite: self.composite,
                    field,
                })
            }),
        }
    }

    /// Reads the next field, which the spec marks mandatory.
    pub(crate) fn mandatory<T: Field>(&mut self, field: &'static str) -> Result<T, AmqpCodecError> {
        self.optional(field)?.ok_or(AmqpCodecError::MissingField {
            composite: self.composite,
            field,
        })
    }

    /// Reads the next field, taking `T`'s default (the spec's, e.g. `false`) when absent.
    pub(crate) fn or_default<T: Field + Default>(
        &mut self,
        field: &'static str,
    ) -> Result<T, AmqpCodecError> {
        Ok(self.optional(field)?.unwrap_or_default())
    }
}

/// A type a composite field can hold: how it reads from a decoded [`Value`] and how it writes itself.
pub(crate) trait Field: Sized {
    /// Converts a non-null value. `Err(None)` means "wrong type", reported as
    /// [`AmqpCodecError::InvalidField`] naming the field; `Err(Some(_))` is a nested composite's error.
    fn from_value(value: Value) -> Result<Self, Option<AmqpCodecError>>;

    /// Writes the field's encoding.
    fn encode(&self, buf: &mut BytesMut);
}

impl<T: Field> Field for Option<T> {
    fn from_value(value: Value) -> Result<Self, Option<AmqpCodecError>> {
        match value {
            Value::Null => Ok(None),
            value => T::from_value(value).map(Some),
        }
    }

    fn encode(&self, buf: &mut BytesMut) {
        match self {
            Some(value) => value.encode(buf),
            None => encode::null(buf),
        }
    }
}

/// Implements [`Field`] for a type held by one [`Value`] variant.
macro_rules! primitive_field {
    ($type:ty, $variant:ident, $encode:expr) => {
        impl Field for $type {
            fn from_value(value: Value) -> Result<Self, Option<AmqpCodecError>> {
                match value {
                    Value::$variant(inner) => Ok(inner),
                    _ => Err(None),
                }
            }

            fn encode(&self, buf: &mut BytesMut) {
                let write: fn(&mut BytesMut, &Self) = $encode;
                write(buf, self);
            }
        }
    };
}

primitive_field!(bool, Bool, |buf, v| encode::boolean(buf, *v));
primitive_field!(u8, Ubyte, |buf, v| encode::ubyte(buf, *v));
primitive_field!(u16, Ushort, |buf, v| encode::ushort(buf, *v));
primitive_field!(u32, Uint, |buf, v| encode::uint(buf, *v));
primitive_field!(u64, Ulong, |buf, v| encode::ulong(buf, *v));
primitive_field!(Timestamp, Timestamp, |buf, v| encode::timestamp(buf, *v));
primitive_field!(Bytes, Binary, |buf, v| encode::binary(buf, v));
primitive_field!(String, String, |buf, v| encode::string(buf, v));
primitive_field!(Symbol, Symbol, |buf, v| encode::symbol(buf, v));

impl Field for Value {
    fn from_value(value: Value) -> Result<Self, Option<AmqpCodecError>> {
        Ok(value)
    }

    fn encode(&self, buf: &mut BytesMut) {
        encode::value(buf, self);
    }
}

/// A `symbol multiple="true"` field (§1.3 "multiple"): one symbol or an array of symbols on the wire;
/// always written as an array.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Symbols(pub(crate) Vec<Symbol>);

impl Field for Symbols {
    fn from_value(value: Value) -> Result<Self, Option<AmqpCodecError>> {
        match value {
            Value::Symbol(symbol) => Ok(Self(vec![symbol])),
            Value::Array(array)
                if array.element_type() == ArrayType::Symbol && array.descriptor().is_none() =>
            {
                array
                    .into_elements()
                    .into_iter()
                    .map(|element| match element {
                        Value::Symbol(symbol) => Ok(symbol),
                        _ => Err(None),
                    })
                    .collect::<Result<_, _>>()
                    .map(Self)
            }
            _ => Err(None),
        }
    }

    fn encode(&self, buf: &mut BytesMut) {
        encode::symbol_array(buf, &self.0);
    }
}

/// Reads an optional `multiple` symbol field into a plain `Vec`.
pub(crate) fn symbols(
    fields: &mut FieldReader,
    field: &'static str,
) -> Result<Option<Vec<Symbol>>, AmqpCodecError> {
    Ok(fields.optional::<Symbols>(field)?.map(|symbols| symbols.0))
}

/// Writes an optional `multiple` symbol field.
pub(crate) fn write_symbols(buf: &mut BytesMut, symbols: Option<&Vec<Symbol>>) {
    match symbols {
        Some(symbols) => encode::symbol_array(buf, symbols),
        None => encode::null(buf),
    }
}

/// A `fields` map (§2.8.19): symbol keys, values of any type, in wire order.
pub type Fields = Vec<(Symbol, Value)>;

impl Field for Vec<(Symbol, Value)> {
    fn from_value(value: Value) -> Result<Self, Option<AmqpCodecError>> {
        match value {
            Value::Map(pairs) => pairs
                .into_iter()
                .map(|(key, value)| match key {
                    Value::Symbol(key) => Ok((key, value)),
                    _ => Err(None),
                })
                .collect(),
            _ => Err(None),
        }
    }

    fn encode(&self, buf: &mut BytesMut) {
        encode::map(buf, self.len(), |buf| {
            for (key, value) in self {
                encode::symbol(buf, key);
                encode::value(buf, value);
            }
        });
    }
}

/// A map with keys of any type, e.g. the `unsettled` map of attach (§2.7.3) or annotations (§3.2.10).
impl Field for Vec<(Value, Value)> {
    fn from_value(value: Value) -> Result<Self, Option<AmqpCodecError>> {
        match value {
            Value::Map(pairs) => Ok(pairs),
            _ => Err(None),
        }
    }

    fn encode(&self, buf: &mut BytesMut) {
        encode::map(buf, self.len(), |buf| {
            for (key, value) in self {
                encode::value(buf, key);
                encode::value(buf, value);
            }
        });
    }
}

impl Field for Array {
    fn from_value(value: Value) -> Result<Self, Option<AmqpCodecError>> {
        match value {
            Value::Array(array) => Ok(array),
            _ => Err(None),
        }
    }

    fn encode(&self, buf: &mut BytesMut) {
        encode::array(buf, self);
    }
}

/// Returns the value of `key` in a map with symbol keys, e.g. a `fields` map.
pub fn lookup<'a>(fields: &'a [(Symbol, Value)], key: &str) -> Option<&'a Value> {
    fields.iter().find(|(k, _)| k == key).map(|(_, value)| value)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]
mod tests {
    use super::*;

    const THING: CompositeType = CompositeType {
        name: "thing",
        symbol: "test:thing:list",
        code: 0x99,
    };

    #[test]
    fn short_lists_leave_trailing_fields_absent_and_extra_fields_are_ignored() {
        let value = Value::described(
            Descriptor::Symbol("test:thing:list".into()),
            Value::List(vec![
                Value::Uint(1),
                Value::Null,
                Value::Bool(true),
                Value::from("extra"),
            ]),
        );
        let mut fields = FieldReader::described(THING, value).unwrap();
        assert_eq!(fields.mandatory::<u32>("a"), Ok(1));
        assert_eq!(fields.optional::<u32>("b"), Ok(None));
        assert_eq!(fields.or_default::<bool>("c"), Ok(true));
        assert_eq!(
            fields.optional::<Symbols>("d"),
            Err(AmqpCodecError::InvalidField {
                composite: "thing",
                field: "d"
            })
        );
        assert_eq!(fields.or_default::<bool>("e"), Ok(false));
        assert_eq!(
            fields.mandatory::<u32>("f"),
            Err(AmqpCodecError::MissingField {
                composite: "thing",
                field: "f"
            })
        );
    }

    #[test]
    fn multiple_fields_accept_a_single_symbol() {
        assert_eq!(
            Symbols::from_value(Value::Symbol("a".into())),
            Ok(Symbols(vec![Symbol::from("a")]))
        );
        assert_eq!(
            Symbols::from_value(Value::Array(Array::symbols([
                Symbol::from("a"),
                Symbol::from("b")
            ]))),
            Ok(Symbols(vec![Symbol::from("a"), Symbol::from("b")]))
        );
        assert_eq!(Symbols::from_value(Value::from("a")), Err(None));
    }

    #[test]
    fn wrong_descriptor_is_named() {
        let value = Value::described(Descriptor::Code(0x10), Value::List(vec![]));
        assert_eq!(
            FieldReader::described(THING, value).err(),
            Some(AmqpCodecError::UnexpectedDescriptor {
                expected: "thing",
                found: Descriptor::Code(0x10)
            })
        );
    }
}
