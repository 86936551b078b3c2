//! The request-response nodes of a connection (wire reference §7.2, §7.3): `put-token` on `$cbs`
//! and `READ` on `$management`, answered on the node's reply link; and the redirect of IoT Hub's
//! `messages/events` receivers to them (§7.7).

use std::sync::Arc;
use std::time::Duration;

use outpost_auth::normalise_resource;
use outpost_core::{CoreError, DeviceCredential};
use outpost_model::{DeviceId, Hub, ModuleId};

use super::auth::{TokenError, verify_token};
use super::connection::{Connection, LinkRole, LinkState, Node, text, unix_now};
use super::entity::{Entity, eventhub_not_found, partition_not_found};
use super::epoch::DetachOrder;
use super::eventhub::{RedirectAddress, eventhub_properties, partition_properties};
use super::text::percent_decode;
use crate::definitions::{DeliveryState, condition};
use crate::engine::{Delivery, LinkAttached, LinkId, LinkReply, SessionId};
use crate::message::{Body, Message, Properties};
use crate::value::Value;

/// How long a redirected link stays attached before its `amqp:link:redirect` detach. The official
/// sample (`iothubConnectionString.js`) listens for the link's error only once `createReceiver`
/// resolved on the attach: a detach in the same read would be dispatched before that.
const REDIRECT_DELAY: Duration = Duration::from_millis(100);

impl Connection {
    /// A receiver on IoT Hub's `messages/events/$management` (or a partition under it), on a
    /// connection whose token covers `<host>/messages/events` (SASL PLAIN
    /// `<policy>@sas.root.<hub>`, or `put-token`): attached, then detached with
    /// `amqp:link:redirect` naming the same node of the hub's Event Hubs-compatible endpoint
    /// (wire reference §7.7).
    pub(super) fn attach_redirect(
        &mut self,
        attached: &LinkAttached,
        address: RedirectAddress,
        state: LinkState,
    ) {
        let link = attached.link;
        self.bind_host(address.host.as_deref());
        let Some(hub) = self.hub.clone() else {
            return self.reject(link, condition::NOT_FOUND, "no hub serves this host");
        };
        let now = unix_now(&self.context);
        let resource = RedirectAddress::resource(&hub.host_name);
        if !self.authorized(&hub.name, &resource, now) {
            return self.reject(
                link,
                condition::UNAUTHORIZED_ACCESS,
                "a token of a policy with ServiceConnect for messages/events is required",
            );
        }
        let reply = LinkReply {
            initial_delivery_count: Some(0),
            ..LinkReply::default()
        };
        if self.engine.accept_link(link, reply).is_err() {
            return;
        }
        self.links.insert(link, state);
        let error = address.redirect(&hub, self.context.redirect_port);
        let orders = self.orders_tx.clone();
        tokio::spawn(async move {
            tokio::time::sleep(REDIRECT_DELAY).await;
            let _ = orders.send(DetachOrder { link, error });
        });
    }

    /// A request on a `$cbs` or `$management` sender link: settled, answered on the reply link.
    pub(super) async fn on_request(&mut self, node: Node, delivery: Delivery) {
        let link = delivery.link;
        if !delivery.settled {
            let _ = self
                .engine
                .settle(link, delivery.delivery_id, DeliveryState::Accepted);
        }
        let _ = self.engine.grant_credit(link, 1);
        let Some(session) = self.links.get(&link).map(|state| state.session) else {
            return;
        };
        let Ok(request) = Message::decode(delivery.message) else {
            tracing::debug!("amqp request is not a message: ignored");
            return;
        };
        let (status, description, body) = match node {
            Node::Cbs => self.put_token(&request).await,
            Node::Management => self.management(&request).await,
        };
        let properties = request.properties.as_ref();
        let reply_to = properties.and_then(|p| p.reply_to.clone());
        let reply = Message {
            properties: Some(Properties {
                correlation_id: properties.and_then(|p| p.message_id.clone()),
                to: reply_to.clone(),
                ..Properties::default()
            }),
            application_properties: Some(vec![
                ("status-code".into(), Value::Int(status)),
                ("status-description".into(), Value::String(description)),
            ]),
            body: Body::Value(body),
            ..Message::default()
        };
        let Some(reply_link) = self.reply_link(node, session, reply_to.as_deref()) else {
            tracing::debug!(?node, "amqp request without a reply link: answer dropped");
            return;
        };
        self.queue(reply_link, reply.to_bytes());
    }

    /// The link to answer a request on: the node's reply link whose address is the request's
    /// `reply_to`, else one on the same session, else any.
    fn reply_link(&self, node: Node, session: SessionId, reply_to: Option<&str>) -> Option<LinkId> {
        let replies = || {
            self.links
                .iter()
                .filter_map(move |(link, state)| match &state.role {
                    LinkRole::Replies { node: n, address } if *n == node => {
                        Some((*link, state.session, address.as_deref()))
                    }
                    _ => None,
                })
        };
        replies()
            .find(|(_, s, address)| *s == session && reply_to.is_some() && *address == reply_to)
            .or_else(|| replies().find(|(_, s, _)| *s == session))
            .or_else(|| replies().next())
            .map(|(link, _, _)| link)
    }

    /// `put-token` on `$cbs` (wire reference §7.2).
    async fn put_token(&mut self, request: &Message) -> (i32, String, Value) {
        let property = |key| request.application_property(key).and_then(text);
        if property("operation") != Some("put-token") {
            return (400, "unsupported operation".into(), Value::Null);
        }
        let token = match &request.body {
            Body::Value(Value::String(token)) => Some(token.as_str()),
            Body::Value(Value::Binary(token)) => std::str::from_utf8(token).ok(),
            Body::Data(sections) => sections.first().and_then(|data| std::str::from_utf8(data).ok()),
            _ => None,
        };
        let Some(token) = token else {
            return (400, "the token is missing".into(), Value::Null);
        };
        let audience = property("name");
        if let Some(audience) = audience {
            let normalised = normalise_resource(audience);
            self.bind_host(normalised.split('/').next());
        }
        let bound = self.bound_name();
        let now = unix_now(&self.context);
        match verify_token(&self.context.hubs, token, audience, bound.as_ref(), now) {
            Ok((hub, claim)) => {
                // A token signed with the identity's own key: its keys are in the registry (wire
                // reference §3). A bad one is refused here, as IoT Hub does, not only at attach.
                if claim.policy.is_none()
                    && let Err((status, description)) =
                        self.verify_identity_token(&hub, &claim.scope, token).await
                {
                    return (status, description, Value::Null);
                }
                self.hub.get_or_insert(hub);
                self.claims.retain(|old| old.expiry > now);
                self.claims.push(claim);
                (200, "OK".into(), Value::Null)
            }
            Err(error) => {
                tracing::info!(%error, "amqp put-token refused");
                let status = match error {
                    TokenError::Malformed => 400,
                    TokenError::UnknownHub => 404,
                    _ => 401,
                };
                (status, error.to_string(), Value::Null)
            }
        }
    }

    /// Verifies a device or module token (scope `<host>/devices/<d>[/modules/<m>]`) against the
    /// identity's keys, as the MQTT door does at CONNECT; the status and description to answer
    /// otherwise.
    async fn verify_identity_token(
        &self,
        hub: &Arc<Hub>,
        scope: &str,
        token: &str,
    ) -> Result<(), (i32, String)> {
        let refused = || (401, "the token does not authenticate the identity".to_owned());
        // A bad escape leaves an empty id, which no identity has.
        let mut segments = scope
            .split('/')
            .skip(2)
            .map(|segment| percent_decode(segment).unwrap_or_default());
        let device = segments
            .next()
            .and_then(|id| DeviceId::new(&id).ok())
            .ok_or_else(refused)?;
        let module = match (segments.next(), segments.next()) {
            (Some(keyword), Some(id)) if keyword.eq_ignore_ascii_case("modules") => {
                Some(ModuleId::new(&id).map_err(|_| refused())?)
            }
            _ => None,
        };
        let registry = &self.context.outpost.registry;
        match registry
            .authenticate_device(
                hub.clone(),
                &device,
                module.as_ref(),
                DeviceCredential::Sas(token),
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(CoreError::Unauthorized(reason)) => {
                tracing::info!(%device, reason = reason.describe(), "amqp put-token refused");
                Err(refused())
            }
            Err(error) => {
                tracing::warn!(%device, %error, "amqp put-token: the identity cannot be checked");
                Err((500, "the identity cannot be checked now".to_owned()))
            }
        }
    }

    /// `READ` on `$management` (wire reference §7.3) of the hub's event hub or of one of its
    /// custom event streams.
    async fn management(&mut self, request: &Message) -> (i32, String, Value) {
        let property = |key| request.application_property(key).and_then(text);
        if property("operation") != Some("READ") {
            return (400, "unsupported operation".into(), Value::Null);
        }
        let Some(hub) = self.hub.clone() else {
            return (404, "no hub serves this host".into(), Value::Null);
        };
        // The entity asked for: the hub's event hub or one of its custom event streams; a token
        // scoped to that entity (the connection string's `EntityPath`) covers its `$management`.
        let name = property("name").unwrap_or(hub.name.as_str()).to_owned();
        let now = unix_now(&self.context);
        let resource = format!("{}/{name}/$management", hub.host_name);
        let authorized = match property("security_token") {
            Some(token) => match verify_token(&self.context.hubs, token, None, Some(&hub.name), now) {
                Ok((_, claim)) => claim.covers(&hub.name, &resource, now),
                Err(error) => {
                    tracing::info!(%error, "amqp management token refused");
                    false
                }
            },
            None => self.authorized(&hub.name, &resource, now),
        };
        if !authorized {
            return (401, "unauthorized".into(), Value::Null);
        }
        let Some(entity) = Entity::resolve(&hub, &self.context.outpost.routing, &name) else {
            return (404, eventhub_not_found(&hub.host_name, &name), Value::Null);
        };
        match property("type") {
            Some("com.microsoft:eventhub") => (200, "OK".into(), eventhub_properties(&entity)),
            Some("com.microsoft:partition") => {
                let asked = property("partition").unwrap_or_default();
                let Some(partition) = asked.parse::<u32>().ok().filter(|p| *p < entity.partition_count)
                else {
                    return (
                        404,
                        partition_not_found(asked, entity.partition_count),
                        Value::Null,
                    );
                };
                match self.context.log.partition_info(&entity.log, partition).await {
                    Ok(info) => (200, "OK".into(), partition_properties(&entity, partition, &info)),
                    Err(error) => {
                        tracing::warn!(log = %entity.log, %error, "amqp partition properties failed");
                        (500, "the partition cannot be read".into(), Value::Null)
                    }
                }
            }
            _ => (400, "unsupported type".into(), Value::Null),
        }
    }
}
