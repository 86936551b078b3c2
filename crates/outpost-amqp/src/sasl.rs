//! The SASL frame bodies (AMQP 1.0 §5.3.3), descriptors `0x40`–`0x44`, carried by frames of type `0x01`.
//!
//! The hub must offer `ANONYMOUS`, `PLAIN`, `MSSBCBS` and `EXTERNAL` (wire reference §3, §6, §7.1):
//! uamqp picks `MSSBCBS` when offered, pyamqp and the JS clients use `ANONYMOUS`. Like the performatives,
//! each body is written as a full list with explicit nulls (wire reference §7.6).

use bytes::{Bytes, BytesMut};

use crate::composite::{self, CompositeType, Field, FieldReader, Symbols, write_list};
use crate::error::AmqpCodecError;
use crate::value::{Symbol, Value, encode};

/// The descriptors of the five SASL frame bodies, in code order `0x40`–`0x44`.
pub const SASL_TYPES: [CompositeType; 5] = [
    CompositeType {
        name: "sasl-mechanisms",
        symbol: "amqp:sasl-mechanisms:list",
        code: 0x40,
    },
    CompositeType {
        name: "sasl-init",
        symbol: "amqp:sasl-init:list",
        code: 0x41,
    },
    CompositeType {
        name: "sasl-challenge",
        symbol: "amqp:sasl-challenge:list",
        code: 0x42,
    },
    CompositeType {
        name: "sasl-response",
        symbol: "amqp:sasl-response:list",
        code: 0x43,
    },
    CompositeType {
        name: "sasl-outcome",
        symbol: "amqp:sasl-outcome:list",
        code: 0x44,
    },
];

/// The body of a SASL frame (§5.3.3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SaslFrame {
    /// The server's offer (§5.3.3.1, `0x40`, 1 field).
    Mechanisms(SaslMechanisms),
    /// The client's choice and initial response (§5.3.3.2, `0x41`, 3 fields).
    Init(SaslInit),
    /// A server challenge (§5.3.3.3, `0x42`, 1 field).
    Challenge(SaslChallenge),
    /// A client response (§5.3.3.4, `0x43`, 1 field).
    Response(SaslResponse),
    /// The result of the exchange (§5.3.3.5, `0x44`, 2 fields).
    Outcome(SaslOutcome),
}

/// Offers the server's mechanisms (§5.3.3.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SaslMechanisms {
    /// The mechanisms, in decreasing preference. Mandatory (a single symbol or an array on the wire).
    pub sasl_server_mechanisms: Vec<Symbol>,
}

/// Selects a mechanism and carries the initial response (§5.3.3.2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SaslInit {
    /// The chosen mechanism, e.g. `PLAIN`. Mandatory.
    pub mechanism: Symbol,
    /// The initial response: for PLAIN `\0user\0password`, for ANONYMOUS an optional trace string.
    pub initial_response: Option<Bytes>,
    /// The host the client wants to reach.
    pub hostname: Option<String>,
}

/// A security challenge (§5.3.3.3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SaslChallenge {
    /// The challenge data. Mandatory.
    pub challenge: Bytes,
}

/// A response to a challenge (§5.3.3.4).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SaslResponse {
    /// The response data. Mandatory.
    pub response: Bytes,
}

/// The result of authentication (§5.3.3.5).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SaslOutcome {
    /// The outcome code. Mandatory.
    pub code: SaslCode,
    /// Additional data for a successful outcome.
    pub additional_data: Option<Bytes>,
}

/// Outcome codes of SASL (§5.3.3.6), a ubyte on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SaslCode {
    /// 0: authentication succeeded.
    Ok,
    /// 1: failed because of bad credentials.
    Auth,
    /// 2: failed because of a system error.
    Sys,
    /// 3: failed because of an unrecoverable system error.
    SysPerm,
    /// 4: failed because of a transient system error.
    SysTemp,
}

impl Field for SaslCode {
    fn from_value(value: Value) -> Result<Self, Option<AmqpCodecError>> {
        match value {
            Value::Ubyte(0) => Ok(Self::Ok),
            Value::Ubyte(1) => Ok(Self::Auth),
            Value::Ubyte(2) => Ok(Self::Sys),
            Value::Ubyte(3) => Ok(Self::SysPerm),
            Value::Ubyte(4) => Ok(Self::SysTemp),
            _ => Err(None),
        }
    }

    fn encode(&self, buf: &mut BytesMut) {
        encode::ubyte(buf, *self as u8);
    }
}

impl SaslFrame {
    /// Decodes a SASL frame body from its decoded value.
    ///
    /// # Errors
    ///
    /// Returns an [`AmqpCodecError`] when `value` is not one of the five SASL bodies or a field is
    /// invalid.
    pub fn try_from_value(value: Value) -> Result<Self, AmqpCodecError> {
        let (descriptor, value) = composite::split_described(value, "sasl frame body")?;
        let Some(code) = composite::code_of(&descriptor, &SASL_TYPES) else {
            return Err(AmqpCodecError::UnexpectedDescriptor {
                expected: "sasl frame body",
                found: descriptor,
            });
        };
        let index = usize::try_from(code - 0x40).unwrap_or(0);
        let mut fields = FieldReader::new(SASL_TYPES[index], value)?;
        Ok(match code {
            0x40 => Self::Mechanisms(SaslMechanisms {
                sasl_server_mechanisms: fields.mandatory::<Symbols>("sasl-server-mechanisms")?.0,
            }),
            0x41 => Self::Init(SaslInit {
                mechanism: fields.mandatory("mechanism")?,
                initial_response: fields.optional("initial-response")?,
                hostname: fields.optional("hostname")?,
            }),
            0x42 => Self::Challenge(SaslChallenge {
                challenge: fields.mandatory("challenge")?,
            }),
            0x43 => Self::Response(SaslResponse {
                response: fields.mandatory("response")?,
            }),
            _ => Self::Outcome(SaslOutcome {
                code: fields.mandatory("code")?,
                additional_data: fields.optional("additional-data")?,
            }),
        })
    }

    /// Appends the body as a described list of all its fields.
    pub fn encode(&self, buf: &mut BytesMut) {
        match self {
            Self::Mechanisms(mechanisms) => write_list(buf, SASL_TYPES[0], 1, |buf| {
                encode::symbol_array(buf, &mechanisms.sasl_server_mechanisms);
            }),
            Self::Init(init) => write_list(buf, SASL_TYPES[1], 3, |buf| {
                init.mechanism.encode(buf);
                init.initial_response.encode(buf);
                init.hostname.encode(buf);
            }),
            Self::Challenge(challenge) => {
                write_list(buf, SASL_TYPES[2], 1, |buf| challenge.challenge.encode(buf));
            }
            Self::Response(response) => {
                write_list(buf, SASL_TYPES[3], 1, |buf| response.response.encode(buf));
            }
            Self::Outcome(outcome) => write_list(buf, SASL_TYPES[4], 2, |buf| {
                outcome.code.encode(buf);
                outcome.additional_data.encode(buf);
            }),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]
mod tests {
    use super::*;

    fn round_trip(frame: &SaslFrame) -> Vec<u8> {
        let mut buf = BytesMut::new();
        frame.encode(&mut buf);
        let encoded = buf.to_vec();
        let value = Value::decode(&mut buf.freeze()).unwrap();
        assert_eq!(&SaslFrame::try_from_value(value).unwrap(), frame);
        encoded
    }

    #[test]
    fn mechanisms_are_an_array_of_symbols() {
        let encoded = round_trip(&SaslFrame::Mechanisms(SaslMechanisms {
            sasl_server_mechanisms: vec!["ANONYMOUS".into(), "PLAIN".into()],
        }));
        let mut expected = vec![0x00, 0x53, 0x40, 0xc0, 21, 1, 0xe0, 18, 2, 0xa3, 9];
        expected.extend_from_slice(b"ANONYMOUS");
        expected.push(5);
        expected.extend_from_slice(b"PLAIN");
        assert_eq!(encoded, expected);
    }

    #[test]
    fn a_single_mechanism_symbol_is_accepted() {
        let mut bytes = vec![0x00, 0x53, 0x40, 0xc0, 9, 1, 0xa3, 6];
        bytes.extend_from_slice(b"EXTERN");
        let value = Value::decode(&mut Bytes::from(bytes)).unwrap();
        assert_eq!(
            SaslFrame::try_from_value(value),
            Ok(SaslFrame::Mechanisms(SaslMechanisms {
                sasl_server_mechanisms: vec!["EXTERN".into()]
            }))
        );
    }

    #[test]
    fn init_outcome_challenge_response_round_trip() {
        let init = round_trip(&SaslFrame::Init(SaslInit {
            mechanism: "PLAIN".into(),
            initial_response: Some(Bytes::from_static(b"\0user\0pass")),
            hostname: None,
        }));
        assert_eq!(init[5], 3, "sasl-init always carries its three fields");
        let outcome = round_trip(&SaslFrame::Outcome(SaslOutcome {
            code: SaslCode::Ok,
            additional_data: None,
        }));
        assert_eq!(outcome, [0x00, 0x53, 0x44, 0xc0, 4, 2, 0x50, 0, 0x40]);
        round_trip(&SaslFrame::Challenge(SaslChallenge {
            challenge: Bytes::from_static(b"c"),
        }));
        round_trip(&SaslFrame::Response(SaslResponse {
            response: Bytes::new(),
        }));
    }
}
