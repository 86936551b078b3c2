//! The entities of the Event Hubs-compatible endpoint: the hub's own log, served as event hub
//! `<hub name>` (the built-in endpoint `events`), and each custom event stream of the hub's
//! routing, served as event hub `<stream name>` with its own partitions and consumer groups
//! (`docs/routing.md`). Names match case-insensitively, as Azure's entity names do.

use outpost_core::routing::{EndpointKind, Routing};
use outpost_model::{ConsumerGroupName, EndpointName, Hub, LogName, Message, Timestamp};

/// An event hub the endpoint serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Entity {
    /// Its name as configured (the hub's name, or the stream endpoint's).
    pub(super) name: String,
    /// The log its partitions read.
    pub(super) log: LogName,
    /// Its partitions: `0..partition_count`.
    pub(super) partition_count: u32,
    /// `created_at` of its `$management` answer (a stream has no time of its own: the hub's).
    pub(super) created: Timestamp,
    /// Built-in or a custom stream.
    pub(super) kind: EntityKind,
}

/// What kind of entity, with what its kind needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum EntityKind {
    /// The hub's log: the consumer groups are the hub's; only messages routed to `events` are
    /// served, with that endpoint's enrichments.
    BuiltIn,
    /// A custom event stream: `$Default` and its configured consumer groups; its log holds only
    /// its messages, enrichments applied, served as they are.
    Stream {
        /// Consumer groups besides `$Default`.
        consumer_groups: Vec<ConsumerGroupName>,
    },
}

impl Entity {
    /// The entity named `name` (case-insensitively) of `hub`, if any.
    pub(super) fn resolve(hub: &Hub, routing: &Routing, name: &str) -> Option<Self> {
        if name.eq_ignore_ascii_case(hub.name.as_str()) {
            return Some(Self {
                name: hub.name.to_string(),
                log: LogName::hub(&hub.name),
                partition_count: hub.partition_count,
                created: hub.created,
                kind: EntityKind::BuiltIn,
            });
        }
        let router = routing.router(&hub.name);
        let endpoint = router.config().endpoint(name)?;
        let EndpointKind::EventStream {
            partition_count,
            consumer_groups,
        } = &endpoint.kind
        else {
            return None;
        };
        Some(Self {
            name: endpoint.name.to_string(),
            log: LogName::stream(&hub.name, &endpoint.name),
            partition_count: *partition_count,
            created: hub.created,
            kind: EntityKind::Stream {
                consumer_groups: consumer_groups.clone(),
            },
        })
    }

    /// Whether the entity has the consumer group `name` (case-insensitively). `hub` is the hub as
    /// it is now: the built-in endpoint's groups come and go with the operator API.
    pub(super) fn has_consumer_group(&self, hub: &Hub, name: &str) -> bool {
        match &self.kind {
            EntityKind::BuiltIn => hub.consumer_group(name).is_some(),
            EntityKind::Stream { consumer_groups } => {
                ConsumerGroupName::default_group().matches(name)
                    || consumer_groups.iter().any(|group| group.matches(name))
            }
        }
    }

    /// Whether this is the hub's own log.
    pub(super) fn is_built_in(&self) -> bool {
        self.kind == EntityKind::BuiltIn
    }

    /// The key of the entity in the epoch registry: lower-cased, and distinct for the hub's log
    /// and its streams (a stream's name can never be the hub's: validation refuses it).
    pub(super) fn key(&self) -> String {
        self.name.to_ascii_lowercase()
    }
}

/// What a receiver of an entity gets of a decoded record: all of it for a stream; for the built-in
/// endpoint the messages routed to `events`, its enrichments added to the application properties
/// (`None` for the others). Without enrichments the decoded message is used as it is: no copy on
/// the hot path.
pub(super) fn served(message: Message, built_in: bool) -> Option<Message> {
    if !built_in {
        return Some(message);
    }
    let delivery = message.delivery(EndpointName::BUILT_IN)?;
    if delivery.enrichments.is_empty() {
        Some(message)
    } else {
        message.for_endpoint(EndpointName::BUILT_IN)
    }
}

/// Azure's description of an attach or READ on an event hub that does not exist.
pub(super) fn eventhub_not_found(host: &str, eventhub: &str) -> String {
    format!(
        "The messaging entity 'sb://{host}/{eventhub}' could not be found. \
         To know more visit https://aka.ms/sbResourceMgrExceptions."
    )
}

/// Azure's description of a receiver on a partition the event hub does not have.
pub(super) fn partition_not_found(partition: &str, partition_count: u32) -> String {
    format!(
        "The specified partition '{partition}' is invalid for an EventHub partition sender or receiver. \
         It should be between 0 and {}.",
        partition_count.saturating_sub(1)
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "test code")]
mod tests {
    use super::*;
    use outpost_model::{Annotations, Delivery, SystemProperties};

    fn message(deliveries: Vec<Delivery>) -> Message {
        Message {
            properties: SystemProperties::default(),
            application_properties: vec![("k".into(), "device".into())],
            annotations: Annotations {
                device_id: "dev1".into(),
                module_id: None,
                auth_method: "{}".into(),
                auth_generation_id: "1".into(),
                enqueued_time: Timestamp::from_unix_millis(0),
                message_source: "Telemetry".into(),
            },
            deliveries,
            body: bytes::Bytes::from_static(b"{}"),
        }
    }

    #[test]
    fn the_built_in_endpoint_serves_what_was_routed_to_events_with_its_enrichments() {
        let to = |endpoint: &str, enrichments: Vec<(String, String)>| Delivery {
            endpoint: endpoint.to_owned().into(),
            enrichments,
        };
        // Routed elsewhere only: not served by the built-in endpoint, served by a stream's log.
        let elsewhere = message(vec![to("alerts", vec![("a".into(), "1".into())])]);
        assert!(served(elsewhere.clone(), true).is_none());
        assert_eq!(served(elsewhere.clone(), false), Some(elsewhere));
        // To `events` without enrichments: the same message.
        let plain = message(vec![Delivery::built_in()]);
        assert_eq!(served(plain.clone(), true), Some(plain));
        // With enrichments: added, a device's property of the same name replaced; the other
        // endpoint's enrichments are not.
        let enriched = message(vec![
            to("alerts", vec![("a".into(), "1".into())]),
            to(
                "events",
                vec![("k".into(), "hub".into()), ("site".into(), "north".into())],
            ),
        ]);
        let served = served(enriched, true).unwrap();
        assert_eq!(
            served.application_properties,
            vec![("k".into(), "hub".into()), ("site".into(), "north".into())]
        );
    }

    #[test]
    fn not_found_descriptions_read_like_azure() {
        assert_eq!(
            eventhub_not_found("localhost", "nope"),
            "The messaging entity 'sb://localhost/nope' could not be found. To know more visit \
             https://aka.ms/sbResourceMgrExceptions."
        );
        assert!(partition_not_found("7", 4).ends_with("It should be between 0 and 3."));
    }
}
