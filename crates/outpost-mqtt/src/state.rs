//! The sans-IO heart of a device connection: given what arrived (a packet, or a message the hub
//! wants to push), it decides what to do, as a list of [`Action`]s, and keeps the session state
//! (subscriptions, packet ids, the cloud-to-device message awaiting its PUBACK). It performs no
//! I/O and calls nothing: the connection task performs the actions and awaits the hub's
//! services, so every protocol rule here is tested without sockets.

use bytes::Bytes;
use outpost_core::{C2dMessage, FeedbackAck, OutgoingMessage};

use crate::codec::{Packet, PacketId, Publish, QoS, SubAck};
use crate::session::{PacketIds, Subscriptions};
use crate::topics::{DevicePublish, TopicOwner, classify_publish, encode_property_bag};

/// What the connection task must do next.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Write a packet.
    Send(Packet),
    /// Make a telemetry message durable; acknowledge `packet_id` (QoS 1) once it is, in order.
    StoreTelemetry {
        /// The PUBLISH's packet id (None at QoS 0).
        packet_id: Option<PacketId>,
        /// The message.
        message: OutgoingMessage,
    },
    /// Wait until every message given to `StoreTelemetry` is durable and acknowledged, so that
    /// the actions after it keep the PUBACK order (MQTT 3.1.1 §4.6).
    FlushTelemetry,
    /// Read the identity's twin and answer on `$iothub/twin/res/…?$rid=rid`.
    GetTwin {
        /// The request id.
        rid: String,
    },
    /// Apply a reported-properties patch and answer on `$iothub/twin/res/…?$rid=rid`.
    PatchReported {
        /// The request id.
        rid: String,
        /// The JSON patch as sent.
        patch: Bytes,
    },
    /// A direct method answer arrived.
    MethodAnswered {
        /// The request id of the call.
        rid: String,
        /// The device's status.
        status: i32,
        /// The device's payload (JSON, possibly empty).
        payload: Bytes,
    },
    /// The device acknowledged a cloud-to-device message: complete it.
    CompleteC2d {
        /// The message's lock token.
        token: String,
    },
    /// Offer the next cloud-to-device message, if the device may take one now.
    OfferC2d,
    /// Persist the subscriptions (persistent sessions only).
    SaveSubscriptions,
    /// Close the connection.
    Close {
        /// Why, for the log.
        reason: String,
    },
}

/// The session state of one authenticated connection.
#[derive(Debug, Clone)]
pub struct SessionState {
    device: String,
    module: Option<String>,
    persistent: bool,
    subscriptions: Subscriptions,
    packet_ids: PacketIds,
    c2d_in_flight: Option<(PacketId, String)>,
}

impl SessionState {
    /// Starts the state of a connection of `device` (and `module`), with restored subscriptions.
    pub fn new(device: &str, module: Option<&str>, persistent: bool, subscriptions: Subscriptions) -> Self {
        Self {
            device: device.to_owned(),
            module: module.map(str::to_owned),
            persistent,
            subscriptions,
            packet_ids: PacketIds::default(),
            c2d_in_flight: None,
        }
    }

    fn owner(&self) -> TopicOwner<'_> {
        TopicOwner {
            device: &self.device,
            module: self.module.as_deref(),
        }
    }

    /// Returns the subscriptions (to persist them).
    pub fn subscriptions(&self) -> &Subscriptions {
        &self.subscriptions
    }

    /// Decides what a packet from the device asks for.
    pub fn on_packet(&mut self, packet: Packet) -> Vec<Action> {
        match packet {
            Packet::Publish(publish) => self.on_publish(publish),
            Packet::Subscribe(subscribe) => {
                let owner = TopicOwner {
                    device: &self.device,
                    module: self.module.as_deref(),
                };
                let return_codes = self.subscriptions.subscribe(&subscribe.filters, owner);
                let mut actions = Vec::with_capacity(3);
                if self.persistent {
                    actions.push(Action::SaveSubscriptions);
                }
                actions.push(Action::Send(Packet::SubAck(SubAck {
                    packet_id: subscribe.packet_id,
                    return_codes,
                })));
                actions.push(Action::OfferC2d);
                actions
            }
            Packet::Unsubscribe(unsubscribe) => {
                self.subscriptions.unsubscribe(&unsubscribe.filters);
                let mut actions = Vec::with_capacity(2);
                if self.persistent {
                    actions.push(Action::SaveSubscriptions);
                }
                actions.push(Action::Send(Packet::UnsubAck(unsubscribe.packet_id)));
                actions
            }
            Packet::PingReq => vec![Action::Send(Packet::PingResp)],
            Packet::PubAck(packet_id) => match self.c2d_in_flight.take() {
                // MQTT has no reject or abandon: the PUBACK completes the message (§2.5).
                Some((in_flight, token)) if in_flight == packet_id => {
                    vec![Action::CompleteC2d { token }, Action::OfferC2d]
                }
                other => {
                    self.c2d_in_flight = other;
                    Vec::new()
                }
            },
            Packet::Disconnect => vec![Action::Close {
                reason: "the client disconnected".into(),
            }],
            other => vec![Action::Close {
                reason: format!("unexpected {:?} from a client", other.packet_type()),
            }],
        }
    }

    fn on_publish(&mut self, publish: Publish) -> Vec<Action> {
        if publish.qos == QoS::ExactlyOnce {
            return vec![Action::Close {
                reason: "IoT Hub does not support QoS 2".into(),
            }];
        }
        let kind = match classify_publish(&publish.topic, self.owner()) {
            Ok(kind) => kind,
            Err(error) => {
                return vec![Action::Close {
                    reason: error.to_string(),
                }];
            }
        };
        if let DevicePublish::Telemetry {
            properties,
            application_properties,
        } = kind
        {
            let message = OutgoingMessage {
                properties: *properties,
                application_properties,
                body: publish.payload,
            };
            return vec![Action::StoreTelemetry {
                packet_id: publish.packet_id,
                message,
            }];
        }
        // Requests are answered after the telemetry before them, so PUBACKs stay in order.
        let mut actions = vec![Action::FlushTelemetry];
        if let Some(packet_id) = publish.packet_id {
            actions.push(Action::Send(Packet::PubAck(packet_id)));
        }
        actions.push(match kind {
            DevicePublish::TwinGet { rid } => Action::GetTwin { rid },
            DevicePublish::TwinPatchReported { rid } => Action::PatchReported {
                rid,
                patch: publish.payload,
            },
            DevicePublish::MethodResponse { status, rid } => Action::MethodAnswered {
                rid,
                status,
                payload: publish.payload,
            },
            DevicePublish::Telemetry { .. } => unreachable!("telemetry returned above"),
        });
        actions
    }

    /// Returns whether a cloud-to-device message may be delivered now: the device listens on
    /// its devicebound topic (a module on its inputs) and none awaits its PUBACK (one at a time
    /// keeps the queue's order).
    pub fn can_take_c2d(&self) -> bool {
        let listening = match &self.module {
            Some(module) => format!("devices/{}/modules/{module}/inputs/any", self.device),
            None => format!("devices/{}/messages/devicebound/", self.device),
        };
        self.c2d_in_flight.is_none() && self.subscriptions.matches(&listening)
    }

    /// Builds the QoS 1 PUBLISH of a locked cloud-to-device message (wire contract §2.5) and
    /// remembers its lock until the PUBACK. `redelivery` sets DUP (§3.3.1.1).
    pub fn deliver_c2d(&mut self, message: C2dMessage, token: String, redelivery: bool) -> Packet {
        let prefix = match &self.module {
            Some(module) => {
                let input = message
                    .to
                    .rsplit_once("/inputs/")
                    .map_or("input", |(_, input)| input);
                format!("devices/{}/modules/{module}/inputs/{input}/", self.device)
            }
            None => format!("devices/{}/messages/devicebound/", self.device),
        };
        let expiry = message.expiry.to_string();
        let ack = match message.ack {
            FeedbackAck::None => None,
            FeedbackAck::Positive => Some("positive"),
            FeedbackAck::Negative => Some("negative"),
            FeedbackAck::Full => Some("full"),
        };
        let system = [
            ("$.mid", message.message_id.as_deref()),
            ("$.cid", message.correlation_id.as_deref()),
            ("$.uid", message.user_id.as_deref()),
            ("$.to", Some(message.to.as_str())),
            ("$.ct", message.content_type.as_deref()),
            ("$.ce", message.content_encoding.as_deref()),
            ("$.exp", Some(expiry.as_str())),
            ("iothub-ack", ack),
        ];
        let bag = encode_property_bag(
            system
                .into_iter()
                .filter_map(|(key, value)| value.map(|value| (key, value)))
                .chain(
                    message
                        .application_properties
                        .iter()
                        .map(|(key, value)| (key.as_str(), value.as_str())),
                ),
        );
        let packet_id = self.packet_ids.next_id();
        self.c2d_in_flight = Some((packet_id, token));
        Packet::Publish(Publish {
            dup: redelivery,
            qos: QoS::AtLeastOnce,
            retain: false,
            topic: format!("{prefix}{bag}"),
            packet_id: Some(packet_id),
            payload: message.body,
        })
    }

    /// Returns the lock of the cloud-to-device message still awaiting its PUBACK (on close).
    pub fn take_c2d_in_flight(&mut self) -> Option<String> {
        self.c2d_in_flight.take().map(|(_, token)| token)
    }

    /// Returns the PUBLISH of a direct method request, or `None` when the device does not listen
    /// for methods (wire contract §2.7).
    pub fn method_request(&self, name: &str, rid: &str, payload: Vec<u8>) -> Option<Packet> {
        let topic = format!("$iothub/methods/POST/{name}/?$rid={rid}");
        self.subscriptions
            .matches(&topic)
            .then(|| publish_qos0(topic, payload))
    }

    /// Returns the PUBLISH of a desired-properties notification, or `None` when the device does
    /// not listen for them (wire contract §2.6).
    pub fn desired_notification(&self, version: u64, patch: Vec<u8>) -> Option<Packet> {
        let topic = format!("$iothub/twin/PATCH/properties/desired/?$version={version}");
        self.subscriptions
            .matches(&topic)
            .then(|| publish_qos0(topic, patch))
    }
}

/// Returns a twin response PUBLISH: `$iothub/twin/res/<status>/?$rid=<rid>[&$version=<n>]`.
pub fn twin_response(status: u16, rid: &str, version: Option<u64>, body: Vec<u8>) -> Packet {
    let topic = match version {
        Some(version) => format!("$iothub/twin/res/{status}/?$rid={rid}&$version={version}"),
        None => format!("$iothub/twin/res/{status}/?$rid={rid}"),
    };
    publish_qos0(topic, body)
}

fn publish_qos0(topic: String, payload: Vec<u8>) -> Packet {
    Packet::Publish(Publish {
        dup: false,
        qos: QoS::AtMostOnce,
        retain: false,
        topic,
        packet_id: None,
        payload: payload.into(),
    })
}

#[cfg(test)]
mod tests {
    use outpost_model::Timestamp;

    use super::*;
    use crate::codec::{Subscribe, Unsubscribe};

    fn state(persistent: bool) -> SessionState {
        SessionState::new("dev1", None, persistent, Subscriptions::default())
    }

    fn id(n: u16) -> PacketId {
        PacketId::new(n).unwrap()
    }

    fn publish(topic: &str, qos: QoS, packet_id: Option<u16>, payload: &'static [u8]) -> Packet {
        Packet::Publish(Publish {
            dup: false,
            qos,
            retain: false,
            topic: topic.into(),
            packet_id: packet_id.map(id),
            payload: Bytes::from_static(payload),
        })
    }

    fn subscribe(state: &mut SessionState, filter: &str) -> Vec<Action> {
        state.on_packet(Packet::Subscribe(Subscribe {
            packet_id: id(9),
            filters: vec![(filter.into(), QoS::AtLeastOnce)],
        }))
    }

    #[test]
    fn telemetry_is_stored_and_requests_wait_for_the_telemetry_before_them() {
        let mut state = state(false);
        let actions = state.on_packet(publish(
            "devices/dev1/messages/events/k=v",
            QoS::AtLeastOnce,
            Some(1),
            b"t",
        ));
        assert!(
            matches!(&actions[..], [Action::StoreTelemetry { packet_id: Some(p), message }]
            if *p == id(1) && message.application_properties == [("k".to_owned(), "v".to_owned())])
        );
        let actions = state.on_packet(publish(
            "$iothub/twin/GET/?$rid=r1",
            QoS::AtLeastOnce,
            Some(2),
            b" ",
        ));
        assert_eq!(
            actions,
            [
                Action::FlushTelemetry,
                Action::Send(Packet::PubAck(id(2))),
                Action::GetTwin { rid: "r1".into() }
            ]
        );
        let actions = state.on_packet(publish(
            "$iothub/methods/res/200/?$rid=a",
            QoS::AtMostOnce,
            None,
            b"{}",
        ));
        assert_eq!(
            actions,
            [
                Action::FlushTelemetry,
                Action::MethodAnswered {
                    rid: "a".into(),
                    status: 200,
                    payload: Bytes::from_static(b"{}")
                }
            ]
        );
    }

    #[test]
    fn foreign_topics_and_qos_2_close_the_connection() {
        let mut state = state(false);
        for packet in [
            publish("devices/dev2/messages/events/", QoS::AtLeastOnce, Some(1), b""),
            publish("devices/dev1/messages/events/", QoS::ExactlyOnce, Some(1), b""),
            Packet::ConnAck(crate::codec::ConnAck {
                session_present: false,
                return_code: crate::codec::ConnectReturnCode::Accepted,
            }),
        ] {
            assert!(matches!(&state.on_packet(packet)[..], [Action::Close { .. }]));
        }
    }

    #[test]
    fn only_persistent_sessions_save_their_subscriptions() {
        let mut persistent = state(true);
        assert_eq!(
            subscribe(&mut persistent, "$iothub/twin/res/#")[0],
            Action::SaveSubscriptions
        );
        let mut clean = state(false);
        assert!(!subscribe(&mut clean, "$iothub/twin/res/#").contains(&Action::SaveSubscriptions));
        let actions = clean.on_packet(Packet::Unsubscribe(Unsubscribe {
            packet_id: id(3),
            filters: vec!["$iothub/twin/res/#".into()],
        }));
        assert_eq!(actions, [Action::Send(Packet::UnsubAck(id(3)))]);
    }

    #[test]
    fn cloud_to_device_messages_go_one_at_a_time_and_the_puback_completes_them() {
        let mut state = state(false);
        assert!(!state.can_take_c2d(), "not subscribed yet");
        subscribe(&mut state, "devices/dev1/messages/devicebound/#");
        assert!(state.can_take_c2d());
        let message = C2dMessage {
            message_id: Some("m 1".into()),
            correlation_id: None,
            user_id: None,
            to: "/devices/dev1/messages/devicebound".into(),
            content_type: None,
            content_encoding: None,
            expiry: Timestamp::from_unix_seconds(1_900_000_000),
            ack: FeedbackAck::Full,
            application_properties: vec![("k".into(), "v".into())],
            body: Bytes::from_static(b"hello"),
            enqueued_time: Timestamp::from_unix_seconds(1_800_000_000),
        };
        let Packet::Publish(delivered) = state.deliver_c2d(message, "lock-1".into(), true) else {
            panic!("not a publish")
        };
        assert!(delivered.dup);
        assert!(
            delivered
                .topic
                .starts_with("devices/dev1/messages/devicebound/%24.mid=m%201&"),
            "{}",
            delivered.topic
        );
        assert!(
            delivered.topic.contains("&iothub-ack=full&k=v"),
            "{}",
            delivered.topic
        );
        assert!(!state.can_take_c2d(), "one in flight");
        assert!(
            state.on_packet(Packet::PubAck(id(7))).is_empty(),
            "a PUBACK of another packet changes nothing"
        );
        let actions = state.on_packet(Packet::PubAck(delivered.packet_id.unwrap()));
        assert_eq!(
            actions,
            [
                Action::CompleteC2d {
                    token: "lock-1".into()
                },
                Action::OfferC2d
            ]
        );
        assert!(state.can_take_c2d());
        assert_eq!(state.take_c2d_in_flight(), None);
    }

    #[test]
    fn pushes_need_subscriptions() {
        let mut state = state(false);
        assert!(state.method_request("reboot", "1", b"{}".to_vec()).is_none());
        assert!(state.desired_notification(2, b"{}".to_vec()).is_none());
        subscribe(&mut state, "$iothub/methods/POST/#");
        subscribe(&mut state, "$iothub/twin/PATCH/properties/desired/#");
        let Some(Packet::Publish(request)) = state.method_request("reboot", "1", b"{}".to_vec()) else {
            panic!()
        };
        assert_eq!(request.topic, "$iothub/methods/POST/reboot/?$rid=1");
        let Some(Packet::Publish(patch)) = state.desired_notification(2, b"{}".to_vec()) else {
            panic!()
        };
        assert_eq!(patch.topic, "$iothub/twin/PATCH/properties/desired/?$version=2");
    }
}
