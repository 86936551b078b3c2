//! The Event Hubs view of a hub's event logs (wire reference §7.3, §7.4, §7.7): partition
//! addresses, selector filters, stored events as AMQP messages (with the receiver runtime metric),
//! `$management` READ answers of an [`Entity`], and the redirect of IoT Hub `messages/events`
//! addresses.

use bytes::Bytes;
use outpost_core::{LogPosition, PartitionInfo, StoredEvent};
use outpost_model::Hub;

use super::entity::{Entity, served};

use crate::composite::Fields;
use crate::definitions::{Error, condition};
use crate::message::{Body, Message, MessageId, Properties};
use crate::value::{Symbol, Timestamp, Value};
use outpost_auth::normalise_resource;

/// The desired capability of receivers that want the last enqueued event of their partition on
/// every event (`trackLastEnqueuedEventProperties`, wire reference §7.4).
pub(super) const RUNTIME_METRIC: &str = "com.microsoft:enable-receiver-runtime-metric";

/// Azure's description of an attach to a consumer group (or event hub) that does not exist.
pub(super) fn entity_not_found(host: &str, eventhub: &str, consumer_group: &str) -> String {
    format!(
        "The messaging entity 'sb://{host}/{eventhub}/consumergroups/{consumer_group}' could not be found. \
         To know more visit https://aka.ms/sbResourceMgrExceptions."
    )
}

/// A partition receiver's address, `[amqps://<host>/]<eventhub>/ConsumerGroups/<cg>/Partitions/<n>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct PartitionAddress {
    /// The host of an absolute address.
    pub(super) host: Option<String>,
    /// The event hub name: the hub's name, or a custom event stream's.
    pub(super) eventhub: String,
    /// The consumer group as given.
    pub(super) consumer_group: String,
    /// The partition.
    pub(super) partition: u32,
}

impl PartitionAddress {
    /// Parses a source address; `None` when it is not a partition address.
    pub(super) fn parse(address: &str) -> Option<Self> {
        let absolute = address.contains("://");
        let normalised = normalise_resource(address);
        let mut parts = normalised.trim_matches('/').split('/');
        let host = if absolute {
            Some(parts.next()?.to_owned())
        } else {
            None
        };
        let eventhub = parts.next()?.to_owned();
        let groups = parts.next()?;
        let consumer_group = parts.next()?.to_owned();
        let partitions = parts.next()?;
        let partition = parts.next()?.parse().ok()?;
        if parts.next().is_some()
            || !groups.eq_ignore_ascii_case("ConsumerGroups")
            || !partitions.eq_ignore_ascii_case("Partitions")
            || eventhub.is_empty()
        {
            return None;
        }
        Some(Self {
            host,
            eventhub,
            consumer_group,
            partition,
        })
    }

    /// Returns the resource a token must cover to read the partition.
    pub(super) fn resource(&self, host: &str) -> String {
        format!(
            "{host}/{}/ConsumerGroups/{}/Partitions/{}",
            self.eventhub, self.consumer_group, self.partition
        )
    }
}

/// Where a receiver starts: a log position, and events at or before a bound to skip.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum StartPosition {
    /// The first retained event.
    Earliest,
    /// Only events appended after the link attached.
    Latest,
    /// From this position; events for which `skip` is true are dropped (exclusive bounds).
    At(LogPosition, Skip),
}

/// Events to skip at the start of an exclusive selector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Skip {
    /// None.
    Nothing,
    /// Events at or before this offset.
    OffsetUpTo(u64),
    /// Events enqueued at or before this time (ms).
    EnqueuedUpTo(i64),
}

impl Skip {
    /// Returns whether `event` is to be skipped.
    pub(super) fn skips(self, event: &StoredEvent) -> bool {
        match self {
            Self::Nothing => false,
            Self::OffsetUpTo(offset) => event.position.offset <= offset,
            Self::EnqueuedUpTo(ms) => event
                .position
                .enqueued_time
                .unix_millis()
                .is_some_and(|time| time <= ms),
        }
    }
}

/// The selector filter's key in a source's filter set.
const SELECTOR_FILTER: &str = "apache.org:selector-filter:string";

/// Reads the start position from a source's filter set (no filter: the earliest event).
///
/// # Errors
/// A description when the selector is not one the Event Hubs clients send.
pub(super) fn start_position(filter: Option<&Fields>) -> Result<StartPosition, String> {
    let Some(filter) = filter else {
        return Ok(StartPosition::Earliest);
    };
    let Some(value) = crate::composite::lookup(filter, SELECTOR_FILTER) else {
        return Ok(StartPosition::Earliest);
    };
    let expression = match value {
        Value::Described(described) => match &described.value {
            Value::String(text) => text.clone(),
            _ => return Err("the selector filter is not a string".into()),
        },
        Value::String(text) => text.clone(),
        _ => return Err("the selector filter is not a string".into()),
    };
    parse_selector(&expression).ok_or_else(|| format!("unsupported selector: {expression}"))
}

/// Parses `amqp.annotation.<name> <op> '<value>'` (wire reference §7.4).
fn parse_selector(expression: &str) -> Option<StartPosition> {
    let rest = expression.trim().strip_prefix("amqp.annotation.")?;
    let (name, rest) = rest.split_once(char::is_whitespace)?;
    let rest = rest.trim_start();
    let (inclusive, rest) = if let Some(rest) = rest.strip_prefix(">=") {
        (true, rest)
    } else if let Some(rest) = rest.strip_prefix('>') {
        (false, rest)
    } else if let Some(rest) = rest.strip_prefix('=') {
        (true, rest)
    } else {
        return None;
    };
    let value = rest.trim().strip_prefix('\'')?.strip_suffix('\'')?;
    match name {
        "x-opt-offset" => match value {
            "-1" => Some(StartPosition::Earliest),
            "@latest" => Some(StartPosition::Latest),
            offset => {
                let offset: u64 = offset.parse().ok()?;
                let skip = if inclusive {
                    Skip::Nothing
                } else {
                    Skip::OffsetUpTo(offset)
                };
                Some(StartPosition::At(LogPosition::Offset(offset), skip))
            }
        },
        "x-opt-sequence-number" => {
            let sequence: i64 = value.parse().ok()?;
            let first = if inclusive {
                sequence
            } else {
                sequence.saturating_add(1)
            };
            Some(StartPosition::At(
                LogPosition::SequenceNumber(u64::try_from(first.max(0)).ok()?),
                Skip::Nothing,
            ))
        }
        "x-opt-enqueued-time" => {
            let ms: i64 = value.parse().ok()?;
            let skip = if inclusive {
                Skip::Nothing
            } else {
                Skip::EnqueuedUpTo(ms)
            };
            Some(StartPosition::At(
                LogPosition::EnqueuedTime(outpost_model::Timestamp::from_unix_millis(ms)),
                skip,
            ))
        }
        _ => None,
    }
}

fn symbol(name: &str) -> Value {
    Value::Symbol(Symbol::from(name))
}

fn timestamp(time: outpost_model::Timestamp) -> Value {
    Value::Timestamp(Timestamp(time.unix_millis().unwrap_or_default()))
}

/// The partition's last enqueued event when an event is handed over, for receivers with the
/// runtime metric (wire reference §7.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct RuntimeInfo {
    /// `last_enqueued_sequence_number` (long).
    pub(super) last_sequence_number: i64,
    /// `last_enqueued_offset` (string).
    pub(super) last_offset: String,
    /// `last_enqueued_time_utc` (timestamp).
    pub(super) last_enqueued: outpost_model::Timestamp,
    /// `runtime_info_retrieval_time_utc` (timestamp).
    pub(super) retrieved: outpost_model::Timestamp,
}

impl RuntimeInfo {
    /// The partition's state at `retrieved`; an empty partition reads like its `$management`
    /// answer (sequence number `begin - 1`, offset `-1`).
    pub(super) fn new(info: &PartitionInfo, retrieved: outpost_model::Timestamp) -> Self {
        match info.last {
            Some(last) => Self {
                last_sequence_number: i64::try_from(last.sequence_number).unwrap_or(i64::MAX),
                last_offset: last.offset.to_string(),
                last_enqueued: last.enqueued_time,
                retrieved,
            },
            None => Self {
                last_sequence_number: i64::try_from(info.begin_sequence_number).unwrap_or(i64::MAX) - 1,
                last_offset: "-1".into(),
                last_enqueued: outpost_model::Timestamp::from_unix_millis(0),
                retrieved,
            },
        }
    }

    fn annotations(&self) -> Vec<(Value, Value)> {
        vec![
            (
                symbol("last_enqueued_sequence_number"),
                Value::Long(self.last_sequence_number),
            ),
            (
                symbol("last_enqueued_offset"),
                Value::String(self.last_offset.clone()),
            ),
            (symbol("last_enqueued_time_utc"), timestamp(self.last_enqueued)),
            (
                symbol("runtime_info_retrieval_time_utc"),
                timestamp(self.retrieved),
            ),
        ]
    }
}

/// Renders a stored event as the AMQP message the Event Hubs clients receive from an entity, or
/// `None` when the entity does not serve it (the built-in endpoint serves only the messages routed
/// to `events`): the `x-opt-*` and `iothub-*` annotations, the device's properties and application
/// properties (with the endpoint's enrichments), the body as one data section; with `runtime`, the
/// runtime metric as delivery annotations. Each record is decoded once, here.
pub(super) fn event_message(
    event: &StoredEvent,
    built_in: bool,
    runtime: Option<&RuntimeInfo>,
) -> Option<Bytes> {
    let delivery_annotations = runtime.map(RuntimeInfo::annotations);
    let position = event.position;
    let mut annotations = vec![
        (
            symbol("x-opt-sequence-number"),
            Value::Long(i64::try_from(position.sequence_number).unwrap_or(i64::MAX)),
        ),
        (symbol("x-opt-offset"), Value::String(position.offset.to_string())),
        (symbol("x-opt-enqueued-time"), timestamp(position.enqueued_time)),
    ];
    let Ok(stored) = outpost_model::Message::decode(event.payload.clone()) else {
        // Not a message the hub wrote: handed over as it is, so a reader never stalls on it.
        let mut message = Message::with_data(event.payload.clone());
        message.delivery_annotations = delivery_annotations;
        message.message_annotations = Some(annotations);
        return Some(message.to_bytes());
    };
    let stored = served(stored, built_in)?;
    let stamps = &stored.annotations;
    let string = |text: &str| Value::String(text.to_owned());
    annotations.push((symbol("iothub-connection-device-id"), string(&stamps.device_id)));
    if let Some(module) = &stamps.module_id {
        annotations.push((symbol("iothub-connection-module-id"), string(module)));
    }
    // System events carry no authentication stamps (Azure's captures have none): left out.
    if !stamps.auth_method.is_empty() {
        annotations.push((
            symbol("iothub-connection-auth-method"),
            string(&stamps.auth_method),
        ));
    }
    if !stamps.auth_generation_id.is_empty() {
        annotations.push((
            symbol("iothub-connection-auth-generation-id"),
            string(&stamps.auth_generation_id),
        ));
    }
    annotations.push((symbol("iothub-enqueuedtime"), timestamp(stamps.enqueued_time)));
    annotations.push((symbol("iothub-message-source"), string(&stamps.message_source)));
    let p = &stored.properties;
    if let Some(interface) = &p.interface_id {
        annotations.push((symbol("iothub-interface-id"), string(interface)));
    }
    if let Some(subject) = &p.subject {
        annotations.push((symbol("dt-subject"), string(subject)));
    }
    if let Some(output) = &p.output_name {
        annotations.push((symbol("iothub-outputname"), string(output)));
    }
    let properties = Properties {
        message_id: p.message_id.clone().map(MessageId::String),
        user_id: p.user_id.clone().map(Bytes::from),
        to: p.to.clone(),
        correlation_id: p.correlation_id.clone().map(MessageId::String),
        content_type: p.content_type.as_deref().map(Symbol::from),
        content_encoding: p.content_encoding.as_deref().map(Symbol::from),
        absolute_expiry_time: p
            .expiry_time
            .as_deref()
            .and_then(|time| time.parse::<outpost_model::Timestamp>().ok())
            .and_then(|time| time.unix_millis())
            .map(Timestamp),
        ..Properties::default()
    };
    let message = Message {
        delivery_annotations,
        message_annotations: Some(annotations),
        properties: Some(properties),
        application_properties: (!stored.application_properties.is_empty()).then(|| {
            stored
                .application_properties
                .iter()
                .map(|(key, value)| (key.clone(), Value::String(value.clone())))
                .collect()
        }),
        body: Body::Data(vec![stored.body.clone()]),
        ..Message::default()
    };
    Some(message.to_bytes())
}

/// Where an IoT Hub-style receiver address points, `[amqps://<host>/]messages/events/$management`
/// or `…/messages/events/ConsumerGroups/<cg>/Partitions/<n>` (the redirect trick of the official
/// samples, wire reference §7.7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct RedirectAddress {
    /// The host of an absolute address.
    pub(super) host: Option<String>,
    /// What follows `messages/events/`, as given (`$management`, `ConsumerGroups/…`).
    pub(super) rest: String,
}

impl RedirectAddress {
    /// Parses a source address; `None` when it is not an IoT Hub `messages/events` address.
    pub(super) fn parse(address: &str) -> Option<Self> {
        let absolute = address.contains("://");
        let normalised = normalise_resource(address);
        let path = normalised.trim_matches('/');
        let (host, path) = if absolute {
            let (host, path) = path.split_once('/')?;
            (Some(host.to_owned()), path)
        } else {
            (None, path)
        };
        let (messages, path) = path.split_once('/')?;
        let (events, rest) = path.split_once('/')?;
        if !messages.eq_ignore_ascii_case("messages") || !events.eq_ignore_ascii_case("events") {
            return None;
        }
        let management = rest.eq_ignore_ascii_case("$management");
        let partition = PartitionAddress::parse(&format!("events/{rest}")).is_some();
        (management || partition).then(|| Self {
            host,
            rest: rest.to_owned(),
        })
    }

    /// The resource a token must cover to be redirected: the hub's `messages/events`.
    pub(super) fn resource(host: &str) -> String {
        format!("{host}/messages/events")
    }

    /// The `amqp:link:redirect` error pointing at the same node of the hub's Event Hubs-compatible
    /// endpoint on this listener: `hostname`, `network-host`, `port` and `address`.
    pub(super) fn redirect(&self, hub: &Hub, port: u16) -> Error {
        let host = &hub.host_name;
        let info = vec![
            (Symbol::from("hostname"), Value::String(host.clone())),
            (Symbol::from("network-host"), Value::String(host.clone())),
            (Symbol::from("port"), Value::Int(i32::from(port))),
            (
                Symbol::from("address"),
                Value::String(format!("amqps://{host}:{port}/{}/{}", hub.name, self.rest)),
            ),
        ];
        Error {
            condition: Symbol::from(condition::LINK_REDIRECT),
            description: Some(format!(
                "The Event Hubs-compatible endpoint of this hub is at amqps://{host}:{port}/{}",
                hub.name
            )),
            info: Some(info),
        }
    }
}

fn entry(key: &str, value: Value) -> (Value, Value) {
    (Value::String(key.to_owned()), value)
}

/// The `com.microsoft:eventhub` READ answer (wire reference §7.3).
pub(super) fn eventhub_properties(entity: &Entity) -> Value {
    Value::Map(vec![
        entry("name", Value::String(entity.name.clone())),
        entry("type", Value::String("com.microsoft:eventhub".into())),
        entry("created_at", timestamp(entity.created)),
        entry(
            "partition_count",
            Value::Int(i32::try_from(entity.partition_count).unwrap_or(i32::MAX)),
        ),
        entry(
            "partition_ids",
            Value::List(
                (0..entity.partition_count)
                    .map(|partition| Value::String(partition.to_string()))
                    .collect(),
            ),
        ),
        entry("georeplication_factor", Value::Int(0)),
    ])
}

/// The `com.microsoft:partition` READ answer (wire reference §7.3).
pub(super) fn partition_properties(entity: &Entity, partition: u32, info: &PartitionInfo) -> Value {
    let long = |value: u64| Value::Long(i64::try_from(value).unwrap_or(i64::MAX));
    // The same figures as the runtime metric (an empty partition: `begin - 1`, offset `-1`).
    let last = RuntimeInfo::new(info, outpost_model::Timestamp::from_unix_millis(0));
    Value::Map(vec![
        entry("name", Value::String(entity.name.clone())),
        entry("type", Value::String("com.microsoft:partition".into())),
        entry("partition", Value::String(partition.to_string())),
        entry("begin_sequence_number", long(info.begin_sequence_number)),
        entry(
            "last_enqueued_sequence_number",
            Value::Long(last.last_sequence_number),
        ),
        entry("last_enqueued_offset", Value::String(last.last_offset)),
        entry("last_enqueued_time_utc", timestamp(last.last_enqueued)),
        entry("is_partition_empty", Value::Bool(info.last.is_none())),
    ])
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "test code")]
mod tests {
    use super::*;

    #[test]
    fn partition_addresses_relative_and_absolute() {
        let relative = PartitionAddress::parse("myhub/ConsumerGroups/$Default/Partitions/2").unwrap();
        assert_eq!(relative.host, None);
        assert_eq!(relative.eventhub, "myhub");
        assert_eq!(relative.partition, 2);
        let absolute =
            PartitionAddress::parse("amqps://localhost:5671/myhub/consumergroups/$default/partitions/0")
                .unwrap();
        assert_eq!(absolute.host.as_deref(), Some("localhost"));
        assert_eq!(absolute.consumer_group, "$default");
        assert!(PartitionAddress::parse("$cbs").is_none());
        assert!(PartitionAddress::parse("myhub/ConsumerGroups/$Default/Partitions/x").is_none());
    }

    #[test]
    fn iot_hub_addresses_are_redirected_to_the_event_hub() {
        let management =
            RedirectAddress::parse("amqps://myhub.example.com/messages/events/$management").unwrap();
        assert_eq!(management.host.as_deref(), Some("myhub.example.com"));
        let relative = RedirectAddress::parse("messages/events/$management").unwrap();
        assert_eq!(relative.host, None);
        let partition = RedirectAddress::parse(
            "amqps://localhost:5671/messages/events/ConsumerGroups/$Default/Partitions/0",
        )
        .unwrap();
        assert_eq!(partition.rest, "ConsumerGroups/$Default/Partitions/0");
        for other in [
            "$management",
            "myhub/$management",
            "messages/events",
            "messages/events/other",
            "amqps://h/devices/d/messages/events",
            "myhub/ConsumerGroups/$Default/Partitions/0",
        ] {
            assert!(RedirectAddress::parse(other).is_none(), "{other}");
        }
        let hub = Hub::new(
            outpost_model::HubName::new("myhub").unwrap(),
            "myhub.example.com",
            2,
        )
        .unwrap();
        let error = management.redirect(&hub, 15671);
        assert_eq!(error.condition.as_str(), condition::LINK_REDIRECT);
        let info = error.info.unwrap();
        let field = |key| crate::composite::lookup(&info, key).cloned();
        assert_eq!(field("hostname"), Some(Value::from("myhub.example.com")));
        assert_eq!(field("network-host"), Some(Value::from("myhub.example.com")));
        assert_eq!(field("port"), Some(Value::Int(15671)));
        assert_eq!(
            field("address"),
            Some(Value::from("amqps://myhub.example.com:15671/myhub/$management"))
        );
    }

    #[test]
    fn runtime_info_reads_like_the_partition_properties() {
        let empty = PartitionInfo {
            begin_sequence_number: 5,
            last: None,
        };
        let now = outpost_model::Timestamp::from_unix_millis(1_700_000_000_000);
        let info = RuntimeInfo::new(&empty, now);
        assert_eq!((info.last_sequence_number, info.last_offset.as_str()), (4, "-1"));
        let annotations = info.annotations();
        assert_eq!(annotations.len(), 4);
        assert_eq!(
            annotations[3],
            (
                symbol("runtime_info_retrieval_time_utc"),
                Value::Timestamp(Timestamp(1_700_000_000_000))
            )
        );
    }

    #[test]
    fn selectors_of_the_clients() {
        let parse = |text: &str| parse_selector(text);
        assert_eq!(
            parse("amqp.annotation.x-opt-offset > '-1'"),
            Some(StartPosition::Earliest)
        );
        assert_eq!(
            parse("amqp.annotation.x-opt-offset > '@latest'"),
            Some(StartPosition::Latest)
        );
        assert_eq!(
            parse("amqp.annotation.x-opt-offset >= '128'"),
            Some(StartPosition::At(LogPosition::Offset(128), Skip::Nothing))
        );
        assert_eq!(
            parse("amqp.annotation.x-opt-offset > '128'"),
            Some(StartPosition::At(LogPosition::Offset(128), Skip::OffsetUpTo(128)))
        );
        assert_eq!(
            parse("amqp.annotation.x-opt-sequence-number > '0'"),
            Some(StartPosition::At(LogPosition::SequenceNumber(1), Skip::Nothing))
        );
        assert_eq!(
            parse("amqp.annotation.x-opt-sequence-number >= '5'"),
            Some(StartPosition::At(LogPosition::SequenceNumber(5), Skip::Nothing))
        );
        assert!(matches!(
            parse("amqp.annotation.x-opt-enqueued-time > '1700000000000'"),
            Some(StartPosition::At(
                LogPosition::EnqueuedTime(_),
                Skip::EnqueuedUpTo(1_700_000_000_000)
            ))
        ));
        assert_eq!(parse("amqp.annotation.x-opt-offset < '1'"), None);
        assert_eq!(parse("garbage"), None);
    }
}
