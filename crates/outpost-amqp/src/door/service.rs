//! Service links (wire reference §6): cloud-to-device send on `/messages/devicebound`, the
//! feedback receiver `/messages/serviceBound/feedback` and the file-notification receiver
//! `/messages/serviceBound/filenotifications`.
//!
//! TODO(#5): not served yet; every hook below refuses or ignores.

use super::connection::{Connection, LinkState};
use crate::definitions::{DeliveryState, condition};
use crate::engine::{Delivery, DeliveryId, LinkAttached, LinkId};

/// A service node a link may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ServiceNode {}

impl ServiceNode {
    /// The node `address` names (relative or as a full `amqps://<host>/…` URI), if a service node.
    pub(super) fn parse(_address: &str) -> Option<Self> {
        None
    }
}

/// The state of a service link.
#[derive(Debug, Default)]
pub(super) struct ServiceLink {}

/// What a service link's task hands to the connection.
#[derive(Debug)]
pub(super) enum ServiceFeed {}

impl Connection {
    pub(super) async fn attach_service(
        &mut self,
        attached: &LinkAttached,
        node: ServiceNode,
        _state: LinkState,
    ) {
        let _ = node;
        self.reject(attached.link, condition::NOT_FOUND, "no such node");
    }

    pub(super) async fn on_service_delivery(&mut self, delivery: Delivery) {
        let _ = delivery;
    }

    pub(super) async fn on_service_settled(
        &mut self,
        link: LinkId,
        delivery: DeliveryId,
        state: Option<DeliveryState>,
        settled: bool,
    ) {
        let _ = (link, delivery, state, settled);
    }

    pub(super) fn on_service_credit(&mut self, link: LinkId) {
        let _ = link;
    }

    pub(super) fn on_service_feed(&mut self, feed: ServiceFeed) {
        match feed {}
    }

    pub(super) fn forget_service_link(&mut self, link: LinkId, service: ServiceLink) {
        let _ = (link, service);
    }
}
