//! Proptest strategies for the codec's types: `arb_*` functions, as in iotedge's `mqtt3/src/proptest.rs`.
//! Every strategy is boxed: the nested strategy types otherwise overflow a test thread's stack in debug
//! builds.

use bytes::{Bytes, BytesMut};
use outpost_amqp::{
    Array, ArrayType, Attach, Begin, Body, Close, DeliveryState, Descriptor, Detach, Disposition, End, Error,
    Fields, Flow, Header, Message, MessageId, Open, Performative, Properties, ReceiverSettleMode, Role,
    SaslChallenge, SaslCode, SaslFrame, SaslInit, SaslMechanisms, SaslOutcome, SaslResponse,
    SenderSettleMode, Source, Symbol, Target, Timestamp, Transfer, Value,
};
use proptest::option::of;
use proptest::prelude::*;

pub fn arb_bytes(max: usize) -> BoxedStrategy<Bytes> {
    prop::collection::vec(any::<u8>(), 0..max)
        .prop_map(Bytes::from)
        .boxed()
}

pub fn arb_string() -> BoxedStrategy<String> {
    prop_oneof![
        3 => "[a-zA-Z0-9:/$._-]{0,12}",
        1 => any::<String>(),
        // Past 255 bytes: the 4-byte size encodings.
        1 => "[a-z]{250,300}",
    ]
    .boxed()
}

pub fn arb_symbol() -> BoxedStrategy<Symbol> {
    "[a-zA-Z0-9:._-]{0,16}".prop_map(Symbol::from).boxed()
}

pub fn arb_symbols() -> BoxedStrategy<Option<Vec<Symbol>>> {
    of(prop::collection::vec(arb_symbol(), 0..4)).boxed()
}

pub fn arb_leaf() -> BoxedStrategy<Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<u8>().prop_map(Value::Ubyte),
        any::<u16>().prop_map(Value::Ushort),
        prop_oneof![Just(0u32), 0..=255u32, any::<u32>()].prop_map(Value::Uint),
        prop_oneof![Just(0u64), 0..=255u64, any::<u64>()].prop_map(Value::Ulong),
        any::<i8>().prop_map(Value::Byte),
        any::<i16>().prop_map(Value::Short),
        prop_oneof![-128..=127i32, any::<i32>()].prop_map(Value::Int),
        prop_oneof![-128..=127i64, any::<i64>()].prop_map(Value::Long),
        any::<f32>().prop_map(Value::Float),
        any::<f64>().prop_map(Value::Double),
        any::<[u8; 4]>().prop_map(Value::Decimal32),
        any::<[u8; 8]>().prop_map(Value::Decimal64),
        any::<[u8; 16]>().prop_map(Value::Decimal128),
        any::<char>().prop_map(Value::Char),
        any::<i64>().prop_map(|ms| Value::Timestamp(Timestamp(ms))),
        any::<[u8; 16]>().prop_map(Value::Uuid),
        prop_oneof![arb_bytes(8), arb_bytes(300)].prop_map(Value::Binary),
        arb_string().prop_map(Value::String),
        arb_symbol().prop_map(Value::Symbol),
    ]
    .boxed()
}

pub fn arb_descriptor() -> BoxedStrategy<Descriptor> {
    prop_oneof![
        any::<u64>().prop_map(Descriptor::Code),
        (0..0x80u64).prop_map(Descriptor::Code),
        arb_symbol().prop_map(Descriptor::Symbol),
    ]
    .boxed()
}

/// Arrays of one primitive type, or of compounds built from `inner`.
pub fn arb_array(inner: BoxedStrategy<Value>) -> BoxedStrategy<Array> {
    let n = 0..6usize;
    prop_oneof![
        prop::collection::vec(any::<u32>(), n.clone()).prop_map(|v| Array::new(
            ArrayType::Uint,
            v.into_iter().map(Value::Uint).collect()
        )
        .unwrap()),
        prop::collection::vec(0..=255u64, n.clone()).prop_map(|v| Array::new(
            ArrayType::Ulong,
            v.into_iter().map(Value::Ulong).collect()
        )
        .unwrap()),
        prop::collection::vec(-128..=127i32, n.clone()).prop_map(|v| Array::new(
            ArrayType::Int,
            v.into_iter().map(Value::Int).collect()
        )
        .unwrap()),
        prop::collection::vec(any::<i64>(), n.clone()).prop_map(|v| Array::new(
            ArrayType::Long,
            v.into_iter().map(Value::Long).collect()
        )
        .unwrap()),
        prop::collection::vec(any::<bool>(), n.clone()).prop_map(|v| Array::new(
            ArrayType::Bool,
            v.into_iter().map(Value::Bool).collect()
        )
        .unwrap()),
        n.clone()
            .prop_map(|len| Array::new(ArrayType::Null, vec![Value::Null; len]).unwrap()),
        prop::collection::vec(arb_symbol(), n.clone()).prop_map(Array::symbols),
        prop::collection::vec(arb_string(), n.clone()).prop_map(|v| Array::new(
            ArrayType::String,
            v.into_iter().map(Value::String).collect()
        )
        .unwrap()),
        prop::collection::vec(arb_bytes(300), n.clone()).prop_map(|v| Array::new(
            ArrayType::Binary,
            v.into_iter().map(Value::Binary).collect()
        )
        .unwrap()),
        prop::collection::vec(any::<[u8; 16]>(), n.clone()).prop_map(|v| Array::new(
            ArrayType::Uuid,
            v.into_iter().map(Value::Uuid).collect()
        )
        .unwrap()),
        prop::collection::vec(any::<char>(), n.clone()).prop_map(|v| Array::new(
            ArrayType::Char,
            v.into_iter().map(Value::Char).collect()
        )
        .unwrap()),
        prop::collection::vec(prop::collection::vec(inner.clone(), 0..3), n.clone())
            .prop_map(|v| Array::new(ArrayType::List, v.into_iter().map(Value::List).collect()).unwrap()),
        prop::collection::vec(
            prop::collection::vec((inner.clone(), inner.clone()), 0..3),
            n.clone()
        )
        .prop_map(|v| Array::new(ArrayType::Map, v.into_iter().map(Value::Map).collect()).unwrap()),
        (
            arb_descriptor(),
            prop::collection::vec(prop::collection::vec(inner, 0..3), n.clone())
        )
            .prop_map(|(descriptor, v)| {
                Array::described(
                    descriptor,
                    ArrayType::List,
                    v.into_iter().map(Value::List).collect(),
                )
                .unwrap()
            }),
        (arb_descriptor(), prop::collection::vec(arb_string(), n)).prop_map(|(descriptor, v)| {
            Array::described(
                descriptor,
                ArrayType::String,
                v.into_iter().map(Value::String).collect(),
            )
            .unwrap()
        }),
    ]
    .boxed()
}

/// Any value, nested at most 4 levels deep.
pub fn arb_value() -> BoxedStrategy<Value> {
    arb_leaf()
        .prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::List),
                // Past 255 elements: list32.
                prop::collection::vec(inner.clone(), 256..260).prop_map(Value::List),
                prop::collection::vec((inner.clone(), inner.clone()), 0..5).prop_map(Value::Map),
                arb_array(inner.clone()).prop_map(Value::Array),
                prop::collection::vec(arb_array(inner.clone()), 0..3).prop_map(|arrays| {
                    Value::Array(
                        Array::new(ArrayType::Array, arrays.into_iter().map(Value::Array).collect()).unwrap(),
                    )
                }),
                (arb_descriptor(), inner).prop_map(|(descriptor, value)| Value::described(descriptor, value)),
            ]
        })
        .boxed()
}

pub fn arb_fields() -> BoxedStrategy<Option<Fields>> {
    of(prop::collection::vec((arb_symbol(), arb_leaf()), 0..4)).boxed()
}

pub fn arb_error() -> BoxedStrategy<Option<Error>> {
    of(
        (arb_symbol(), of(arb_string()), arb_fields()).prop_map(|(condition, description, info)| Error {
            condition,
            description,
            info,
        }),
    )
    .boxed()
}

pub fn arb_state() -> BoxedStrategy<Option<DeliveryState>> {
    of(prop_oneof![
        (any::<u32>(), any::<u64>()).prop_map(|(section_number, section_offset)| DeliveryState::Received {
            section_number,
            section_offset
        }),
        Just(DeliveryState::Accepted),
        arb_error().prop_map(|error| DeliveryState::Rejected { error }),
        Just(DeliveryState::Released),
        (any::<bool>(), any::<bool>(), arb_fields()).prop_map(
            |(delivery_failed, undeliverable_here, message_annotations)| DeliveryState::Modified {
                delivery_failed,
                undeliverable_here,
                message_annotations
            }
        ),
    ])
    .boxed()
}

pub fn arb_role() -> BoxedStrategy<Role> {
    prop_oneof![Just(Role::Sender), Just(Role::Receiver)].boxed()
}

pub fn arb_source() -> BoxedStrategy<Option<Source>> {
    let filter = of(prop::collection::vec(
        (
            arb_symbol(),
            arb_string().prop_map(|expr| {
                Value::described(Descriptor::Code(0x0000_468C_0000_0004), Value::String(expr))
            }),
        ),
        0..2,
    ));
    of((
        (
            of(arb_string()),
            of(any::<u32>()),
            of(arb_symbol()),
            of(any::<u32>()),
            any::<bool>(),
        ),
        (
            arb_fields(),
            of(arb_symbol()),
            filter,
            arb_state(),
            arb_symbols(),
            arb_symbols(),
        ),
    )
        .prop_map(
            |(
                (address, durable, expiry_policy, timeout, dynamic),
                (dynamic_node_properties, distribution_mode, filter, default_outcome, outcomes, capabilities),
            )| Source {
                address,
                durable,
                expiry_policy,
                timeout,
                dynamic,
                dynamic_node_properties,
                distribution_mode,
                filter,
                default_outcome,
                outcomes,
                capabilities,
            },
        ))
    .boxed()
}

pub fn arb_target() -> BoxedStrategy<Option<Target>> {
    of((
        of(arb_string()),
        of(any::<u32>()),
        of(arb_symbol()),
        of(any::<u32>()),
        any::<bool>(),
        arb_fields(),
        arb_symbols(),
    )
        .prop_map(
            |(address, durable, expiry_policy, timeout, dynamic, dynamic_node_properties, capabilities)| {
                Target {
                    address,
                    durable,
                    expiry_policy,
                    timeout,
                    dynamic,
                    dynamic_node_properties,
                    capabilities,
                }
            },
        ))
    .boxed()
}

pub fn arb_open() -> BoxedStrategy<Performative> {
    (
        (
            arb_string(),
            of(arb_string()),
            of(any::<u32>()),
            of(any::<u16>()),
            of(any::<u32>()),
        ),
        (
            arb_symbols(),
            arb_symbols(),
            arb_symbols(),
            arb_symbols(),
            arb_fields(),
        ),
    )
        .prop_map(
            |(
                (container_id, hostname, max_frame_size, channel_max, idle_time_out),
                (outgoing_locales, incoming_locales, offered_capabilities, desired_capabilities, properties),
            )| {
                Open {
                    container_id,
                    hostname,
                    max_frame_size,
                    channel_max,
                    idle_time_out,
                    outgoing_locales,
                    incoming_locales,
                    offered_capabilities,
                    desired_capabilities,
                    properties,
                }
                .into()
            },
        )
        .boxed()
}

pub fn arb_begin() -> BoxedStrategy<Performative> {
    (
        of(any::<u16>()),
        any::<u32>(),
        any::<u32>(),
        any::<u32>(),
        of(any::<u32>()),
        arb_symbols(),
        arb_symbols(),
        arb_fields(),
    )
        .prop_map(
            |(
                remote_channel,
                next_outgoing_id,
                incoming_window,
                outgoing_window,
                handle_max,
                offered_capabilities,
                desired_capabilities,
                properties,
            )| {
                Begin {
                    remote_channel,
                    next_outgoing_id,
                    incoming_window,
                    outgoing_window,
                    handle_max,
                    offered_capabilities,
                    desired_capabilities,
                    properties,
                }
                .into()
            },
        )
        .boxed()
}

pub fn arb_attach() -> BoxedStrategy<Performative> {
    let snd = of(prop_oneof![
        Just(SenderSettleMode::Unsettled),
        Just(SenderSettleMode::Settled),
        Just(SenderSettleMode::Mixed)
    ]);
    let rcv = of(prop_oneof![
        Just(ReceiverSettleMode::First),
        Just(ReceiverSettleMode::Second)
    ]);
    (
        (
            arb_string(),
            any::<u32>(),
            arb_role(),
            snd,
            rcv,
            arb_source(),
            arb_target(),
        ),
        (
            of(prop::collection::vec(
                (
                    arb_leaf(),
                    arb_state().prop_map(|s| s.map_or(Value::Null, state_value)),
                ),
                0..3,
            )),
            any::<bool>(),
            of(any::<u32>()),
            of(any::<u64>()),
            arb_symbols(),
            arb_symbols(),
            arb_fields(),
        ),
    )
        .prop_map(
            |(
                (name, handle, role, snd_settle_mode, rcv_settle_mode, source, target),
                (
                    unsettled,
                    incomplete_unsettled,
                    initial_delivery_count,
                    max_message_size,
                    offered_capabilities,
                    desired_capabilities,
                    properties,
                ),
            )| {
                Attach {
                    name,
                    handle,
                    role,
                    snd_settle_mode,
                    rcv_settle_mode,
                    source,
                    target,
                    unsettled,
                    incomplete_unsettled,
                    initial_delivery_count,
                    max_message_size,
                    offered_capabilities,
                    desired_capabilities,
                    properties,
                }
                .into()
            },
        )
        .boxed()
}

/// A delivery state as a generic value, for the `unsettled` map.
fn state_value(state: DeliveryState) -> Value {
    let mut buf = BytesMut::new();
    state.encode(&mut buf);
    Value::decode(&mut buf.freeze()).unwrap()
}

pub fn arb_flow() -> BoxedStrategy<Performative> {
    (
        (
            of(any::<u32>()),
            any::<u32>(),
            any::<u32>(),
            any::<u32>(),
            of(any::<u32>()),
        ),
        (
            of(any::<u32>()),
            of(any::<u32>()),
            of(any::<u32>()),
            any::<bool>(),
            any::<bool>(),
            arb_fields(),
        ),
    )
        .prop_map(
            |(
                (next_incoming_id, incoming_window, next_outgoing_id, outgoing_window, handle),
                (delivery_count, link_credit, available, drain, echo, properties),
            )| {
                Flow {
                    next_incoming_id,
                    incoming_window,
                    next_outgoing_id,
                    outgoing_window,
                    handle,
                    delivery_count,
                    link_credit,
                    available,
                    drain,
                    echo,
                    properties,
                }
                .into()
            },
        )
        .boxed()
}

pub fn arb_transfer() -> BoxedStrategy<Transfer> {
    let rcv = of(prop_oneof![
        Just(ReceiverSettleMode::First),
        Just(ReceiverSettleMode::Second)
    ]);
    (
        (
            any::<u32>(),
            of(any::<u32>()),
            of(arb_bytes(8)),
            of(any::<u32>()),
            of(any::<bool>()),
            any::<bool>(),
        ),
        (rcv, arb_state(), any::<bool>(), any::<bool>(), any::<bool>()),
    )
        .prop_map(
            |(
                (handle, delivery_id, delivery_tag, message_format, settled, more),
                (rcv_settle_mode, state, resume, aborted, batchable),
            )| Transfer {
                handle,
                delivery_id,
                delivery_tag,
                message_format,
                settled,
                more,
                rcv_settle_mode,
                state,
                resume,
                aborted,
                batchable,
            },
        )
        .boxed()
}

pub fn arb_performative() -> BoxedStrategy<Performative> {
    prop_oneof![
        arb_open(),
        arb_begin(),
        arb_attach(),
        arb_flow(),
        arb_transfer().prop_map(Performative::from),
        (
            arb_role(),
            any::<u32>(),
            of(any::<u32>()),
            any::<bool>(),
            arb_state(),
            any::<bool>()
        )
            .prop_map(|(role, first, last, settled, state, batchable)| Disposition {
                role,
                first,
                last,
                settled,
                state,
                batchable
            }
            .into()),
        (any::<u32>(), any::<bool>(), arb_error()).prop_map(|(handle, closed, error)| Detach {
            handle,
            closed,
            error
        }
        .into()),
        arb_error().prop_map(|error| End { error }.into()),
        arb_error().prop_map(|error| Close { error }.into()),
    ]
    .boxed()
}

pub fn arb_sasl() -> BoxedStrategy<SaslFrame> {
    let code = prop_oneof![
        Just(SaslCode::Ok),
        Just(SaslCode::Auth),
        Just(SaslCode::Sys),
        Just(SaslCode::SysPerm),
        Just(SaslCode::SysTemp)
    ];
    prop_oneof![
        prop::collection::vec(arb_symbol(), 0..5).prop_map(|sasl_server_mechanisms| SaslFrame::Mechanisms(
            SaslMechanisms {
                sasl_server_mechanisms
            }
        )),
        (arb_symbol(), of(arb_bytes(40)), of(arb_string())).prop_map(
            |(mechanism, initial_response, hostname)| {
                SaslFrame::Init(SaslInit {
                    mechanism,
                    initial_response,
                    hostname,
                })
            }
        ),
        arb_bytes(40).prop_map(|challenge| SaslFrame::Challenge(SaslChallenge { challenge })),
        arb_bytes(40).prop_map(|response| SaslFrame::Response(SaslResponse { response })),
        (code, of(arb_bytes(8))).prop_map(|(code, additional_data)| SaslFrame::Outcome(SaslOutcome {
            code,
            additional_data
        })),
    ]
    .boxed()
}

pub fn arb_message_id() -> BoxedStrategy<Option<MessageId>> {
    of(prop_oneof![
        any::<u64>().prop_map(MessageId::Ulong),
        any::<[u8; 16]>().prop_map(MessageId::Uuid),
        arb_bytes(8).prop_map(MessageId::Binary),
        arb_string().prop_map(MessageId::String),
    ])
    .boxed()
}

pub fn arb_annotations() -> BoxedStrategy<Option<Vec<(Value, Value)>>> {
    of(prop::collection::vec(
        (
            prop_oneof![
                arb_symbol().prop_map(Value::Symbol),
                any::<u64>().prop_map(Value::Ulong)
            ],
            arb_leaf(),
        ),
        0..4,
    ))
    .boxed()
}

pub fn arb_message() -> BoxedStrategy<Message> {
    let header = of((
        any::<bool>(),
        of(any::<u8>()),
        of(any::<u32>()),
        any::<bool>(),
        any::<u32>(),
    )
        .prop_map(
            |(durable, priority, ttl, first_acquirer, delivery_count)| Header {
                durable,
                priority,
                ttl,
                first_acquirer,
                delivery_count,
            },
        ));
    let timestamp = || of(any::<i64>().prop_map(Timestamp));
    let properties = of((
        (
            arb_message_id(),
            of(arb_bytes(8)),
            of(arb_string()),
            of(arb_string()),
            of(arb_string()),
        ),
        (
            arb_message_id(),
            of(arb_symbol()),
            of(arb_symbol()),
            timestamp(),
            timestamp(),
        ),
        (of(arb_string()), of(any::<u32>()), of(arb_string())),
    )
        .prop_map(
            |(
                (message_id, user_id, to, subject, reply_to),
                (correlation_id, content_type, content_encoding, absolute_expiry_time, creation_time),
                (group_id, group_sequence, reply_to_group_id),
            )| Properties {
                message_id,
                user_id,
                to,
                subject,
                reply_to,
                correlation_id,
                content_type,
                content_encoding,
                absolute_expiry_time,
                creation_time,
                group_id,
                group_sequence,
                reply_to_group_id,
            },
        ));
    let body = prop_oneof![
        prop::collection::vec(arb_bytes(300), 0..3).prop_map(Body::Data),
        prop::collection::vec(prop::collection::vec(arb_leaf(), 0..3), 1..3).prop_map(Body::Sequence),
        arb_value().prop_map(Body::Value),
    ];
    (
        header,
        arb_annotations(),
        arb_annotations(),
        properties,
        of(prop::collection::vec((arb_string(), arb_leaf()), 0..4)),
        body,
        arb_annotations(),
    )
        .prop_map(
            |(
                header,
                delivery_annotations,
                message_annotations,
                properties,
                application_properties,
                body,
                footer,
            )| Message {
                header,
                delivery_annotations,
                message_annotations,
                properties,
                application_properties,
                body,
                footer,
            },
        )
        .boxed()
}
