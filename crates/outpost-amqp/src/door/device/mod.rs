//! Device and module links (wire reference §3) on `/devices/<d>[/modules/<m>]/…`: telemetry
//! (`messages/events`, the device sends), cloud-to-device and module input messages
//! (`messages/devicebound`, or a module's `messages/events`, the hub sends), twin requests and
//! answers (`twin`, both ways) and direct methods (`methods/devicebound`, both ways).
//!
//! | what | how |
//! |---|---|
//! | authorization | a CBS token that covers `<host>/devices/<d>[/modules/<m>]`: the identity's own SAS token or a `DeviceConnect` policy token, verified by `Registry::authenticate_device` when the link attaches, like the MQTT door; otherwise `amqp:unauthorized-access` |
//! | presence | an identity is connected while the connection has links for it; a second connection of the same identity (AMQP or MQTT) takes over, and this one's links of that identity are detached with `amqp:link:stolen`; a disabled or deleted identity's with `amqp:unauthorized-access` |
//! | telemetry | stamped and appended by `Telemetry::send` (the MQTT path), settled `accepted` once durable; in order, batched per link; a body over 256 KiB is `rejected` with `amqp:link:message-size-exceeded` |
//! | cloud-to-device | the identity's queue, peek-locked and sent unsettled as credit allows; `accepted` completes, `rejected` rejects (dead-letter, `Rejected` feedback), `released`/`modified` abandon (redelivered) |
//! | twin | `GET`, `PATCH /properties/reported`, `PUT`/`DELETE /notifications/twin/properties/desired`, answered with the request's correlation id and `status`/`version` annotations; desired patches follow as notifications without correlation id |
//! | methods | calls with `IoThub-methodname` and a UUID correlation id; the device's answer on its sender link with `IoThub-status` |

mod address;
mod c2d;
mod methods;
mod telemetry;
mod twin;
mod wire;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use outpost_core::{
    CoreError, DeviceCommand, DeviceCredential, DeviceIdentity, IdentityKey, Presence, QueuedMessage,
};
use outpost_model::Hub;
use tokio::task::AbortHandle;

pub(super) use address::DeviceAddress;
use address::{Purpose, identity_resource};

use super::connection::{Connection, Feed, LinkRole, LinkState, unix_now};
use crate::definitions::{DeliveryState, Error, Role, condition};
use crate::engine::{Delivery, DeliveryId, LinkAttached, LinkId, LinkReply};

/// Credit the hub gives on links where the device sends (telemetry, twin requests, method
/// answers), replenished as their deliveries are settled.
const DEVICE_CREDIT: u32 = 100;

/// The state of a device link: empty until the attach is authorized.
#[derive(Debug, Default)]
pub(super) struct DeviceLink {
    bound: Option<Box<Bound>>,
}

/// An attached device link: its identity, the identity's presence on this connection, and what
/// the link does.
#[derive(Debug)]
struct Bound {
    identity: DeviceIdentity,
    presence: Arc<PresenceGuard>,
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    Telemetry(telemetry::TelemetryLink),
    CloudToDevice(c2d::C2dLink),
    TwinRequests,
    /// Whether the device asked for desired-property notifications (`PUT`).
    TwinReplies {
        desired: bool,
    },
    MethodRequests(methods::MethodCalls),
    MethodAnswers,
}

/// What a device link's task hands to the connection.
#[derive(Debug)]
pub(super) enum DeviceFeed {
    /// A command of the hub for an identity of the connection (`Presence`).
    Command {
        key: IdentityKey,
        /// The presence registration it was sent to (stale ones are ignored).
        registration: u64,
        command: DeviceCommand,
    },
    /// A telemetry batch of a link is durable (or could not be stored).
    Stored {
        link: LinkId,
        /// The batch's deliveries; `None` for those the device sent settled.
        deliveries: Vec<Option<DeliveryId>>,
        stored: bool,
    },
    /// A cloud-to-device message of an identity was locked for a link.
    CloudToDevice {
        link: LinkId,
        locked: Box<(DeviceIdentity, QueuedMessage)>,
    },
    /// The answer to a twin request, for the identity's twin reply link.
    TwinAnswer { key: IdentityKey, message: Bytes },
    /// The token an identity's links were authorized with expires now: unless a newer one covers
    /// the identity, its links are detached.
    CheckCredential { key: IdentityKey, registration: u64 },
}

/// An identity's presence registration, shared by its links on the connection: when the last of
/// them goes, the identity is disconnected (unless another connection took over meanwhile).
#[derive(Debug)]
struct PresenceGuard {
    presence: Arc<Presence>,
    key: IdentityKey,
    registration: u64,
    /// Forwards the registration's commands to the connection.
    forwarder: AbortHandle,
}

impl Drop for PresenceGuard {
    fn drop(&mut self) {
        self.forwarder.abort();
        self.presence.disconnect(&self.key, self.registration);
    }
}

impl Connection {
    /// The attached device links of an identity.
    fn identity_links(&self, key: &IdentityKey) -> Vec<LinkId> {
        self.links
            .iter()
            .filter_map(|(link, state)| match &state.role {
                LinkRole::Device(DeviceLink { bound: Some(bound) }) if bound.identity.key() == *key => {
                    Some(*link)
                }
                _ => None,
            })
            .collect()
    }

    fn bound(&self, link: LinkId) -> Option<&Bound> {
        match &self.links.get(&link)?.role {
            LinkRole::Device(DeviceLink { bound }) => bound.as_deref(),
            _ => None,
        }
    }

    fn bound_mut(&mut self, link: LinkId) -> Option<&mut Bound> {
        match &mut self.links.get_mut(&link)?.role {
            LinkRole::Device(DeviceLink { bound }) => bound.as_deref_mut(),
            _ => None,
        }
    }

    pub(super) async fn attach_device(
        &mut self,
        attached: &LinkAttached,
        address: DeviceAddress,
        mut state: LinkState,
    ) {
        let link = attached.link;
        let Some(purpose) = address.purpose(attached.role) else {
            let direction = match attached.role {
                Role::Sender => "send to",
                Role::Receiver => "receive from",
            };
            return self.reject(
                link,
                condition::NOT_ALLOWED,
                format!("a device cannot {direction} this address"),
            );
        };
        self.bind_host(address.host.as_deref());
        let Some(hub) = self.hub.clone() else {
            return self.reject(
                link,
                condition::UNAUTHORIZED_ACCESS,
                "put a token for the device on $cbs first",
            );
        };
        let identity = match self.device_identity(&hub, &address).await {
            Ok(identity) => identity,
            Err(error) => {
                self.reject_with(link, error);
                return;
            }
        };
        let presence = self.presence_of(&identity);
        let kind = match purpose {
            Purpose::Telemetry => Kind::Telemetry(telemetry::TelemetryLink::start(
                self.context.outpost.telemetry.clone(),
                identity.clone(),
                link,
                self.feed_tx.clone(),
            )),
            Purpose::CloudToDevice => Kind::CloudToDevice(c2d::C2dLink::start(
                self.context.outpost.c2d.clone(),
                identity.clone(),
                link,
                self.feed_tx.clone(),
            )),
            Purpose::TwinRequests => Kind::TwinRequests,
            Purpose::TwinReplies => Kind::TwinReplies { desired: false },
            Purpose::MethodRequests => Kind::MethodRequests(methods::MethodCalls::default()),
            Purpose::MethodAnswers => Kind::MethodAnswers,
        };
        // Ignored where the hub receives; pyamqp-style peers need it where the hub sends (§7.6).
        let reply = LinkReply {
            initial_delivery_count: Some(0),
            ..LinkReply::default()
        };
        if self.engine.accept_link(link, reply).is_err() {
            if let Kind::CloudToDevice(c2d) = kind {
                self.release_c2d(&identity, c2d);
            }
            return;
        }
        tracing::debug!(device = %identity.device_id, module = ?identity.module_id, ?purpose, "amqp device link attached");
        state.role = LinkRole::Device(DeviceLink {
            bound: Some(Box::new(Bound {
                identity,
                presence,
                kind,
            })),
        });
        self.links.insert(link, state);
        if attached.role == Role::Sender {
            let _ = self.engine.grant_credit(link, DEVICE_CREDIT);
        }
    }

    /// Authenticates the identity `address` names with the connection's tokens that cover it
    /// (newest first), else with the TLS client certificate (X.509 devices put no token, wire
    /// reference §3); an identity with links on the connection already is reused.
    async fn device_identity(
        &self,
        hub: &Arc<Hub>,
        address: &DeviceAddress,
    ) -> Result<DeviceIdentity, Error> {
        let resource = address.resource(&hub.host_name);
        let now = unix_now(&self.context);
        let tokens: Vec<Arc<str>> = self
            .claims
            .iter()
            .rev()
            .filter_map(|claim| claim.device_token(&hub.name, &resource, now).cloned())
            .collect();
        let unauthorized = || {
            Error::new(
                condition::UNAUTHORIZED_ACCESS,
                format!("no valid token covers {resource}"),
            )
        };
        if tokens.is_empty() && self.client_chain.is_empty() {
            return Err(unauthorized());
        }
        let key = IdentityKey {
            hub: hub.name.clone(),
            device: address.device.clone(),
            module: address.module.clone(),
        };
        if let Some(bound) = self
            .identity_links(&key)
            .first()
            .and_then(|link| self.bound(*link))
        {
            return Ok(bound.identity.clone());
        }
        let registry = &self.context.outpost.registry;
        let certificate =
            (!self.client_chain.is_empty()).then_some(DeviceCredential::X509(&self.client_chain));
        let credentials = tokens
            .iter()
            .map(|token| DeviceCredential::Sas(token))
            .chain(certificate);
        for credential in credentials {
            match registry
                .authenticate_device(hub.clone(), &address.device, address.module.as_ref(), credential)
                .await
            {
                Ok(identity) => return Ok(identity),
                Err(CoreError::Unauthorized(reason)) => {
                    tracing::info!(device = %address.device, reason = reason.describe(), "amqp device link refused");
                }
                Err(error) => {
                    tracing::warn!(device = %address.device, %error, "amqp device authentication failed");
                    return Err(Error::new(
                        condition::INTERNAL_ERROR,
                        "the identity cannot be checked now",
                    ));
                }
            }
        }
        Err(unauthorized())
    }

    /// The identity's presence on this connection: the registration of its other links, or a new
    /// one (which takes over from another connection of the identity).
    fn presence_of(&self, identity: &DeviceIdentity) -> Arc<PresenceGuard> {
        let key = identity.key();
        if let Some(bound) = self
            .identity_links(&key)
            .first()
            .and_then(|link| self.bound(*link))
        {
            return bound.presence.clone();
        }
        let presence = self.context.outpost.registry.presence().clone();
        let mut registration = presence.connect(key.clone(), self.context.clock.now());
        let number = registration.connection;
        let feed = self.feed_tx.clone();
        let forwarded = key.clone();
        let forwarder = tokio::spawn(async move {
            loop {
                // A closed channel means another connection replaced this registration.
                let command = registration
                    .commands
                    .recv()
                    .await
                    .unwrap_or(DeviceCommand::TakenOver);
                let last = matches!(command, DeviceCommand::TakenOver | DeviceCommand::Revoked);
                let feed_item = Feed::Device(DeviceFeed::Command {
                    key: forwarded.clone(),
                    registration: number,
                    command,
                });
                if feed.send(feed_item).await.is_err() || last {
                    return;
                }
            }
        })
        .abort_handle();
        if let Some(expiry) = identity
            .credential_expiry
            .and_then(|expiry| expiry.unix_seconds())
        {
            self.check_credential_at(key.clone(), number, u64::try_from(expiry).unwrap_or_default());
        }
        Arc::new(PresenceGuard {
            presence,
            key,
            registration: number,
            forwarder,
        })
    }

    pub(super) async fn on_device_delivery(&mut self, delivery: Delivery) {
        let purpose = self.bound(delivery.link).map(|bound| match bound.kind {
            Kind::Telemetry(_) => Purpose::Telemetry,
            Kind::TwinRequests => Purpose::TwinRequests,
            Kind::MethodAnswers => Purpose::MethodAnswers,
            Kind::CloudToDevice(_) => Purpose::CloudToDevice,
            Kind::TwinReplies { .. } => Purpose::TwinReplies,
            Kind::MethodRequests(_) => Purpose::MethodRequests,
        });
        match purpose {
            Some(Purpose::Telemetry) => self.on_telemetry(delivery),
            Some(Purpose::TwinRequests) => self.on_twin_request(delivery),
            Some(Purpose::MethodAnswers) => self.on_method_answer(delivery),
            // Deliveries only arrive where the device sends.
            _ => self.refuse_delivery(&delivery),
        }
    }

    /// Settles a delivery of the device (unless it came settled) and gives its credit back.
    fn settle_device_delivery(&mut self, delivery: &Delivery, state: DeliveryState) {
        if !delivery.settled {
            let _ = self.engine.settle(delivery.link, delivery.delivery_id, state);
        }
        let _ = self.engine.grant_credit(delivery.link, 1);
    }

    pub(super) async fn on_device_settled(
        &mut self,
        link: LinkId,
        delivery: DeliveryId,
        state: Option<DeliveryState>,
        settled: bool,
    ) {
        // Only cloud-to-device deliveries wait for their outcome; method calls are answered on
        // the device's sender link, twin answers go settled.
        if matches!(
            self.bound(link).map(|bound| &bound.kind),
            Some(Kind::CloudToDevice(_))
        ) {
            self.on_c2d_settled(link, delivery, state, settled);
        }
    }

    pub(super) fn on_device_credit(&mut self, link: LinkId) {
        if matches!(
            self.bound(link).map(|bound| &bound.kind),
            Some(Kind::CloudToDevice(_))
        ) {
            self.on_c2d_credit(link);
        }
    }

    pub(super) fn on_device_feed(&mut self, feed: DeviceFeed) {
        match feed {
            DeviceFeed::Command {
                key,
                registration,
                command,
            } => self.on_device_command(&key, registration, command),
            DeviceFeed::Stored {
                link,
                deliveries,
                stored,
            } => self.on_stored(link, &deliveries, stored),
            DeviceFeed::CloudToDevice { link, locked } => {
                let (identity, message) = *locked;
                self.on_c2d_locked(link, identity, message);
            }
            DeviceFeed::TwinAnswer { key, message } => self.send_twin_reply(&key, message),
            DeviceFeed::CheckCredential { key, registration } => self.check_credential(&key, registration),
        }
    }

    /// Sends [`DeviceFeed::CheckCredential`] at `expiry` (unix seconds).
    fn check_credential_at(&self, key: IdentityKey, registration: u64, expiry: u64) {
        let wait = expiry.saturating_sub(unix_now(&self.context));
        let feed = self.feed_tx.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(wait)).await;
            let _ = feed
                .send(Feed::Device(DeviceFeed::CheckCredential { key, registration }))
                .await;
        });
    }

    /// IoT Hub ends what a SAS token authorized when it expires unrenewed; the device SDKs put a
    /// new token on `$cbs` before that (wire reference §1.1, §3). The identity's links stay while
    /// a token covers the identity, and are detached with `amqp:unauthorized-access` otherwise.
    fn check_credential(&mut self, key: &IdentityKey, registration: u64) {
        let links = self.registration_links(key, registration);
        let Some(hub) = self.hub.clone().filter(|_| !links.is_empty()) else {
            return;
        };
        let resource = identity_resource(&hub.host_name, &key.device, key.module.as_ref());
        let now = unix_now(&self.context);
        let renewed = self
            .claims
            .iter()
            .filter(|claim| claim.device_token(&hub.name, &resource, now).is_some())
            .map(|claim| claim.expiry)
            .max();
        match renewed {
            Some(expiry) => self.check_credential_at(key.clone(), registration, expiry),
            None => {
                tracing::info!(device = %key.device, "sas token expired; detaching the identity's amqp links");
                self.detach_identity(&links, condition::UNAUTHORIZED_ACCESS, "the token expired");
            }
        }
    }

    /// The links of an identity's presence registration (none when it is stale).
    fn registration_links(&self, key: &IdentityKey, registration: u64) -> Vec<LinkId> {
        self.identity_links(key)
            .into_iter()
            .filter(|link| {
                self.bound(*link)
                    .is_some_and(|bound| bound.presence.registration == registration)
            })
            .collect()
    }

    /// Carries out a command of the hub for one of the connection's identities.
    fn on_device_command(&mut self, key: &IdentityKey, registration: u64, command: DeviceCommand) {
        let links = self.registration_links(key, registration);
        match command {
            DeviceCommand::DesiredPatch(patch) => self.notify_desired(&links, patch.to_string()),
            DeviceCommand::InvokeMethod(call) => self.call_method(&links, *call),
            DeviceCommand::CloudToDeviceAvailable => self.wake_c2d(&links),
            DeviceCommand::TakenOver => {
                if !links.is_empty() {
                    tracing::info!(device = %key.device, "another connection of this identity took over its amqp links");
                }
                self.detach_identity(
                    &links,
                    condition::STOLEN,
                    "another connection of this identity took over",
                );
            }
            DeviceCommand::Revoked => {
                tracing::info!(device = %key.device, "identity disabled or deleted; detaching its amqp links");
                self.detach_identity(
                    &links,
                    condition::UNAUTHORIZED_ACCESS,
                    "the identity was disabled or deleted",
                );
            }
        }
    }

    fn detach_identity(&mut self, links: &[LinkId], condition: &str, description: &str) {
        for &link in links {
            let _ = self
                .engine
                .detach_link(link, Some(Error::new(condition, description)));
            self.forget_link(link);
        }
    }

    pub(super) fn forget_device_link(&mut self, link: LinkId, device: DeviceLink) {
        let Some(bound) = device.bound else { return };
        let Bound { identity, kind, .. } = *bound;
        tracing::debug!(%link, device = %identity.device_id, "amqp device link gone");
        match kind {
            Kind::CloudToDevice(c2d) => self.release_c2d(&identity, c2d),
            // The telemetry writer finishes what it was given once its channel closes; pending
            // method calls are answered "not online" as their senders drop.
            Kind::Telemetry(_)
            | Kind::TwinRequests
            | Kind::TwinReplies { .. }
            | Kind::MethodRequests(_)
            | Kind::MethodAnswers => {}
        }
        // The presence guard drops with the last link of the identity.
    }
}
