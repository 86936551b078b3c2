//! Service links (wire reference §6): the cloud-to-device sender on `/messages/devicebound`, the
//! feedback receiver on `/messages/serviceBound/feedback` and the file-notification receiver on
//! `/messages/serviceBound/filenotifications`, relative (Node `azure-iothub`) or as a full
//! `amqps://<host>/…` URI (Python uamqp), matched case-insensitively.
//!
//! Every link needs a claim (CBS `put-token` or SASL PLAIN) of a policy with `ServiceConnect` that
//! covers `<host>/messages/…`; the service SDKs put one for the bare host name.
//!
//! | link | what the hub does |
//! |---|---|
//! | `/messages/devicebound` (the peer sends) | each message is queued for the device `properties.to` names, through [`CloudToDevice::send`] (the queue the MQTT door delivers from); settled `accepted` once the enqueue is durable, else `rejected` (`amqp:not-found`, `amqp:resource-limit-exceeded` for a full queue, `amqp:invalid-field`/`amqp:decode-error` for a malformed message); one credit back per message processed |
//! | `/messages/serviceBound/feedback` (the peer receives) | the hub's feedback records, in batches (a JSON array), sent unsettled as credit allows and as soon as they are recorded; `accepted` completes a batch, `released`/`modified` puts it back for redelivery, `rejected` drops it (Azure dead-letters it) ([`outbound`]) |
//! | `/messages/serviceBound/filenotifications` (the peer receives) | the hub's file-upload notifications, one per message (a JSON object), settled like feedback ([`outbound`]) |

mod c2d_message;
mod outbound;

use std::sync::Arc;

use outpost_auth::normalise_resource;
use outpost_core::{
    C2dDestination, C2dMessage, Caller, CloudToDevice, CoreError, FeedbackRecord, FileNotification,
};
use outpost_model::Hub;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

use super::connection::{Connection, Feed, LinkRole, LinkState, unix_now};
use crate::definitions::{DeliveryState, Error, ReceiverSettleMode, Role, condition};
use crate::engine::{Delivery, DeliveryId, LinkAttached, LinkId, LinkReply};
use crate::message::Message;
use c2d_message::c2d_message;
use outbound::OutboundLink;

/// Messages a cloud-to-device sender may have in flight: the credit the hub keeps granted.
const C2D_CREDIT: u32 = 32;
/// Azure's condition for an argument the hub refuses (the Node SDK makes it an `ArgumentError`).
const ARGUMENT_ERROR: &str = "com.microsoft:argument-error";

/// What a service node is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ServiceKind {
    /// Cloud-to-device send.
    DeviceBound,
    /// Delivery feedback.
    Feedback,
    /// File-upload notifications.
    FileNotifications,
}

impl ServiceKind {
    const ALL: [Self; 3] = [Self::DeviceBound, Self::Feedback, Self::FileNotifications];

    /// The node's path, as the resource a claim must cover (lower case: scopes compare
    /// case-insensitively).
    fn path(self) -> &'static str {
        match self {
            Self::DeviceBound => "/messages/devicebound",
            Self::Feedback => "/messages/servicebound/feedback",
            Self::FileNotifications => "/messages/servicebound/filenotifications",
        }
    }

    /// A short name for message ids and logs.
    fn label(self) -> &'static str {
        match self {
            Self::DeviceBound => "devicebound",
            Self::Feedback => "feedback",
            Self::FileNotifications => "filenotification",
        }
    }

    /// The role the peer takes on a link to the node.
    fn peer_role(self) -> Role {
        match self {
            Self::DeviceBound => Role::Sender,
            Self::Feedback | Self::FileNotifications => Role::Receiver,
        }
    }
}

/// A service node a link names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ServiceNode {
    kind: ServiceKind,
    /// The host of a full URI (`amqps://<host>/messages/devicebound`, uamqp), without port.
    host: Option<String>,
}

impl ServiceNode {
    /// The node `address` names (relative or as a full `amqps://<host>/…` URI), if a service node.
    pub(super) fn parse(address: &str) -> Option<Self> {
        let absolute = address.contains("://");
        let normalised = normalise_resource(address);
        let trimmed = normalised.trim_matches('/');
        let (host, path) = if absolute {
            let (host, path) = trimmed.split_once('/')?;
            (Some(host.to_owned()), path)
        } else {
            (None, trimmed)
        };
        let kind = ServiceKind::ALL
            .into_iter()
            .find(|kind| kind.path().trim_start_matches('/').eq_ignore_ascii_case(path))?;
        Some(Self { kind, host })
    }
}

/// The state of a service link.
#[derive(Debug, Default)]
pub(super) enum ServiceLink {
    /// Not answered yet.
    #[default]
    Attaching,
    /// Cloud-to-device send.
    DeviceBound(DeviceBoundLink),
    /// Feedback receiver.
    Feedback(OutboundLink<FeedbackRecord>),
    /// File-notification receiver.
    FileNotifications(OutboundLink<FileNotification>),
}

/// A cloud-to-device sender: its messages go to a task that enqueues them one after another (in
/// the order sent, as Azure keeps them).
#[derive(Debug)]
pub(super) struct DeviceBoundLink {
    hub: Arc<Hub>,
    jobs: mpsc::Sender<Enqueue>,
    task: AbortHandle,
}

/// A message of a cloud-to-device sender for its enqueue task.
#[derive(Debug)]
struct Enqueue {
    delivery: DeliveryId,
    settled: bool,
    destination: C2dDestination,
    message: C2dMessage,
}

/// What a service link's task hands to the connection.
#[derive(Debug)]
pub(super) enum ServiceFeed {
    /// A cloud-to-device message was enqueued (accepted) or refused.
    Queued {
        link: LinkId,
        delivery: DeliveryId,
        settled: bool,
        outcome: DeliveryState,
    },
    /// Records may be waiting for a service-bound link.
    RecordsAvailable(LinkId),
}

impl Connection {
    pub(super) async fn attach_service(
        &mut self,
        attached: &LinkAttached,
        node: ServiceNode,
        mut state: LinkState,
    ) {
        let link = attached.link;
        let kind = node.kind;
        if attached.role != kind.peer_role() {
            let verb = if kind == ServiceKind::DeviceBound {
                "sent to"
            } else {
                "received from"
            };
            return self.reject(
                link,
                condition::NOT_ALLOWED,
                format!("{} can only be {verb}", kind.path()),
            );
        }
        self.bind_host(node.host.as_deref());
        let Some(hub) = self.hub.clone() else {
            return self.reject(link, condition::NOT_FOUND, "no hub serves this host");
        };
        if let Some(other) = node
            .host
            .as_deref()
            .and_then(|host| self.context.hubs.by_host(host))
            && other.name != hub.name
        {
            return self.reject(link, condition::NOT_FOUND, "the address names another hub");
        }
        let Some(caller) = self.service_caller(&hub, kind) else {
            return self.reject(
                link,
                condition::UNAUTHORIZED_ACCESS,
                "put a token of a policy with ServiceConnect first",
            );
        };
        let reply = LinkReply {
            initial_delivery_count: Some(0),
            // The receiver picks its settle mode (AMQP 1.0 §2.7.3). uamqp asks for `second` on
            // its C2D sender (wire reference §6) but completes a send only on a *settled*
            // disposition (azure-uamqp-c link.c ignores unsettled ones), so a mode-second
            // outcome would leave `send_c2d_message` waiting forever: the hub settles at once.
            rcv_settle_mode: (kind == ServiceKind::DeviceBound).then_some(ReceiverSettleMode::First),
            ..LinkReply::default()
        };
        if self.engine.accept_link(link, reply).is_err() {
            return;
        }
        let c2d = self.context.outpost.c2d.clone();
        let feed = self.feed_tx.clone();
        let service = match kind {
            ServiceKind::DeviceBound => {
                let (jobs, queued) = mpsc::channel(C2D_CREDIT as usize);
                let task = tokio::spawn(enqueue(c2d, caller, link, queued, feed)).abort_handle();
                ServiceLink::DeviceBound(DeviceBoundLink { hub, jobs, task })
            }
            ServiceKind::Feedback => ServiceLink::Feedback(OutboundLink::start(
                &self.context.outpost,
                hub.name.clone(),
                link,
                feed,
            )),
            ServiceKind::FileNotifications => ServiceLink::FileNotifications(OutboundLink::start(
                &self.context.outpost,
                hub.name.clone(),
                link,
                feed,
            )),
        };
        state.role = LinkRole::Service(service);
        self.links.insert(link, state);
        if kind == ServiceKind::DeviceBound {
            let _ = self.engine.grant_credit(link, C2D_CREDIT);
        }
    }

    /// The caller a claim of the connection makes of it for `<host>/messages/…` of the node now:
    /// the holder of the policy that signed the claim's token.
    fn service_caller(&self, hub: &Arc<Hub>, kind: ServiceKind) -> Option<Caller> {
        let now = unix_now(&self.context);
        let resource = format!("{}{}", hub.host_name, kind.path());
        self.claims
            .iter()
            .filter(|claim| claim.covers(&hub.name, &resource, now))
            .find_map(|claim| hub.policy(claim.policy.as_ref()?.as_str()))
            .map(|policy| Caller::policy_holder(hub.clone(), policy))
    }

    /// A cloud-to-device message: checked and mapped here, enqueued by the link's task, settled
    /// when the task reports.
    pub(super) async fn on_service_delivery(&mut self, delivery: Delivery) {
        let link = delivery.link;
        let id = delivery.delivery_id;
        let settled = delivery.settled;
        let (hub, jobs) = match self.links.get(&link).map(|state| &state.role) {
            Some(LinkRole::Service(ServiceLink::DeviceBound(sender))) => {
                (sender.hub.clone(), sender.jobs.clone())
            }
            // The peer receives on the other service links: the engine never reports deliveries there.
            _ => {
                let error = Error::new(condition::NOT_ALLOWED, "this link does not take messages");
                return self.finish_delivery(link, id, settled, rejected(error));
            }
        };
        // Tokens expire while a link stays attached (wire reference §1.1: one hour by default).
        if self.service_caller(&hub, ServiceKind::DeviceBound).is_none() {
            let error = Error::new(condition::UNAUTHORIZED_ACCESS, "the token expired: put a new one");
            return self.finish_delivery(link, id, settled, rejected(error));
        }
        let mapped = if delivery.message_format == 0 {
            Message::decode(delivery.message)
                .map_err(|error| Error::new(condition::DECODE_ERROR, error.to_string()))
                .and_then(|message| c2d_message(message).map_err(|error| error.to_amqp()))
        } else {
            Err(Error::new(condition::DECODE_ERROR, "unknown message format"))
        };
        match mapped {
            Ok((destination, message)) => {
                let job = Enqueue {
                    delivery: id,
                    settled,
                    destination,
                    message,
                };
                // The credit the hub grants bounds the jobs in flight to the channel's capacity.
                if jobs.try_send(job).is_err() {
                    let error = Error::new(condition::RESOURCE_LIMIT_EXCEEDED, "too many messages in flight");
                    self.finish_delivery(link, id, settled, rejected(error));
                }
            }
            Err(error) => {
                tracing::debug!(condition = %error.condition, description = ?error.description, "amqp cloud-to-device message refused");
                self.finish_delivery(link, id, settled, rejected(error));
            }
        }
    }

    /// Settles a cloud-to-device message (unless the peer sent it settled) and gives its credit
    /// back.
    fn finish_delivery(&mut self, link: LinkId, delivery: DeliveryId, settled: bool, outcome: DeliveryState) {
        if !settled {
            let _ = self.engine.settle(link, delivery, outcome);
        }
        let _ = self.engine.grant_credit(link, 1);
    }

    /// The receiver settled a feedback batch.
    pub(super) async fn on_service_settled(
        &mut self,
        link: LinkId,
        delivery: DeliveryId,
        state: Option<DeliveryState>,
        settled: bool,
    ) {
        let terminal = matches!(
            state,
            Some(
                DeliveryState::Accepted
                    | DeliveryState::Rejected { .. }
                    | DeliveryState::Released
                    | DeliveryState::Modified { .. }
            )
        );
        if !settled && !terminal {
            return;
        }
        match self.links.get(&link).map(|state| &state.role) {
            Some(LinkRole::Service(ServiceLink::Feedback(_))) => {
                self.settle_outbound::<FeedbackRecord>(link, delivery, state)
                    .await;
            }
            Some(LinkRole::Service(ServiceLink::FileNotifications(_))) => {
                self.settle_outbound::<FileNotification>(link, delivery, state)
                    .await;
            }
            _ => {}
        }
    }

    pub(super) fn on_service_credit(&mut self, link: LinkId) {
        self.send_records(link);
    }

    /// Sends what waits for a service-bound link.
    fn send_records(&mut self, link: LinkId) {
        match self.links.get(&link).map(|state| &state.role) {
            Some(LinkRole::Service(ServiceLink::Feedback(_))) => self.send_outbound::<FeedbackRecord>(link),
            Some(LinkRole::Service(ServiceLink::FileNotifications(_))) => {
                self.send_outbound::<FileNotification>(link);
            }
            _ => {}
        }
    }

    pub(super) fn on_service_feed(&mut self, feed: ServiceFeed) {
        match feed {
            ServiceFeed::Queued {
                link,
                delivery,
                settled,
                outcome,
            } => {
                if self.links.contains_key(&link) {
                    self.finish_delivery(link, delivery, settled, outcome);
                }
            }
            ServiceFeed::RecordsAvailable(link) => self.send_records(link),
        }
    }

    pub(super) fn forget_service_link(&mut self, link: LinkId, service: ServiceLink) {
        let _ = link;
        match service {
            // A message in flight may still be enqueued; the sender saw no outcome for it and
            // sends it again (at-least-once, like Azure).
            ServiceLink::DeviceBound(sender) => sender.task.abort(),
            ServiceLink::Feedback(feedback) => feedback.forget(&self.context.outpost),
            ServiceLink::FileNotifications(notifications) => notifications.forget(&self.context.outpost),
            ServiceLink::Attaching => {}
        }
    }
}

fn rejected(error: Error) -> DeliveryState {
    DeliveryState::Rejected { error: Some(error) }
}

/// The enqueue task of a cloud-to-device sender: one message after another, each reported to the
/// connection once durable (or refused).
async fn enqueue(
    c2d: Arc<CloudToDevice>,
    caller: Caller,
    link: LinkId,
    mut jobs: mpsc::Receiver<Enqueue>,
    feed: mpsc::Sender<Feed>,
) {
    while let Some(job) = jobs.recv().await {
        let outcome = match c2d.send(&caller, &job.destination, job.message).await {
            Ok(()) => DeliveryState::Accepted,
            Err(error) => {
                tracing::debug!(%error, device = %job.destination.device, "amqp cloud-to-device message not queued");
                rejected(enqueue_error(&error))
            }
        };
        let queued = ServiceFeed::Queued {
            link,
            delivery: job.delivery,
            settled: job.settled,
            outcome,
        };
        if feed.send(Feed::Service(queued)).await.is_err() {
            return;
        }
    }
}

/// The condition a refused enqueue is rejected with: what the SDKs map to their errors (Node:
/// `amqp:not-found` → `DeviceNotFoundError`, `amqp:resource-limit-exceeded` →
/// `DeviceMaximumQueueDepthExceededError`).
fn enqueue_error(error: &CoreError) -> Error {
    let condition = match error {
        CoreError::DeviceNotFound(_) | CoreError::ModuleNotFound { .. } | CoreError::HubNotFound(_) => {
            condition::NOT_FOUND
        }
        CoreError::QueueFull(_) => condition::RESOURCE_LIMIT_EXCEEDED,
        CoreError::InvalidArgument(_) | CoreError::Model(_) => ARGUMENT_ERROR,
        CoreError::MessageTooLarge(_) => condition::MESSAGE_SIZE_EXCEEDED,
        CoreError::Unauthorized(_) => condition::UNAUTHORIZED_ACCESS,
        other => {
            tracing::warn!(error = %other, "amqp cloud-to-device enqueue failed");
            condition::INTERNAL_ERROR
        }
    };
    Error::new(condition, error.to_string())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "test code")]
mod tests {
    use super::*;
    use crate::message::Body;
    use outpost_core::FeedbackStatus;

    fn kind(address: &str) -> Option<ServiceKind> {
        ServiceNode::parse(address).map(|node| node.kind)
    }

    #[test]
    fn node_and_python_addresses() {
        assert_eq!(kind("/messages/devicebound"), Some(ServiceKind::DeviceBound));
        assert_eq!(
            ServiceNode::parse("amqps://localhost/messages/devicebound"),
            Some(ServiceNode {
                kind: ServiceKind::DeviceBound,
                host: Some("localhost".into())
            })
        );
        assert_eq!(
            ServiceNode::parse("amqps://Hub.Example:5671/messages/serviceBound/feedback/")
                .unwrap()
                .host
                .as_deref(),
            Some("Hub.Example")
        );
        assert_eq!(
            kind("/messages/serviceBound/feedback"),
            Some(ServiceKind::Feedback)
        );
        assert_eq!(
            kind("/MESSAGES/SERVICEBOUND/FEEDBACK"),
            Some(ServiceKind::Feedback)
        );
        assert_eq!(
            kind("/messages/serviceBound/filenotifications"),
            Some(ServiceKind::FileNotifications)
        );
        assert_eq!(kind("messages/devicebound"), Some(ServiceKind::DeviceBound));
    }

    #[test]
    fn other_addresses_are_not_service_nodes() {
        for address in [
            "/devices/dev1/messages/devicebound",
            "/messages/events",
            "$cbs",
            "$management",
            "myhub/ConsumerGroups/$Default/Partitions/0",
            "amqps://localhost/devices/d/messages/devicebound",
            "amqps://localhost",
            "/messages/serviceBound",
            "/messages/devicebound/extra",
            "",
        ] {
            assert_eq!(ServiceNode::parse(address), None, "{address}");
        }
    }

    #[test]
    fn feedback_message_carries_the_batch_as_json() {
        let record = FeedbackRecord {
            original_message_id: "m1".into(),
            description: "Success".into(),
            status_code: FeedbackStatus::Success,
            device_generation_id: "g1".into(),
            device_id: "d1".into(),
            enqueued_time_utc: "2025-01-01T00:00:00Z".into(),
        };
        let message = Message::decode(outbound::outbound_message(&[outpost_core::Taken {
            number: 0,
            record,
        }]))
        .unwrap();
        let properties = message.properties.unwrap();
        assert_eq!(
            properties.content_type.unwrap().as_str(),
            outbound::FEEDBACK_CONTENT_TYPE
        );
        assert_eq!(properties.to.as_deref(), Some("/messages/servicebound/feedback"));
        let Body::Data(sections) = message.body else {
            panic!("no data section");
        };
        assert_eq!(
            std::str::from_utf8(&sections[0]).unwrap(),
            r#"[{"originalMessageId":"m1","description":"Success","statusCode":"Success","deviceGenerationId":"g1","deviceId":"d1","enqueuedTimeUtc":"2025-01-01T00:00:00Z"}]"#
        );
    }

    #[test]
    fn enqueue_errors_map_to_the_conditions_the_sdks_know() {
        let device = outpost_model::DeviceId::new("d1").unwrap();
        let condition_of = |error: CoreError| enqueue_error(&error).condition.as_str().to_owned();
        assert_eq!(
            condition_of(CoreError::DeviceNotFound(device.clone())),
            condition::NOT_FOUND
        );
        assert_eq!(
            condition_of(CoreError::QueueFull(device)),
            condition::RESOURCE_LIMIT_EXCEEDED
        );
        assert_eq!(
            condition_of(CoreError::InvalidArgument("x".into())),
            ARGUMENT_ERROR
        );
        assert_eq!(condition_of(CoreError::Contention), condition::INTERNAL_ERROR);
    }
}
