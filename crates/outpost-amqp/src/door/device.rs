//! Device and module links (wire reference §3): telemetry, cloud-to-device receive, twin and
//! direct-method links on `/devices/<id>[/modules/<m>]/…`.
//!
//! TODO(#5): not served yet; every hook below refuses or ignores.

use super::connection::{Connection, LinkState};
use crate::definitions::{DeliveryState, condition};
use crate::engine::{Delivery, DeliveryId, LinkAttached, LinkId};

/// A device or module address a link may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum DeviceAddress {}

impl DeviceAddress {
    /// The node `address` names (relative or as a full `amqps://<host>/…` URI), if a device address.
    pub(super) fn parse(_address: &str) -> Option<Self> {
        None
    }
}

/// The state of a device link.
#[derive(Debug, Default)]
pub(super) struct DeviceLink {}

/// What a device link's task hands to the connection.
#[derive(Debug)]
pub(super) enum DeviceFeed {}

impl Connection {
    pub(super) async fn attach_device(
        &mut self,
        attached: &LinkAttached,
        address: DeviceAddress,
        _state: LinkState,
    ) {
        let _ = address;
        self.reject(attached.link, condition::NOT_FOUND, "no such node");
    }

    pub(super) async fn on_device_delivery(&mut self, delivery: Delivery) {
        let _ = delivery;
    }

    pub(super) async fn on_device_settled(
        &mut self,
        link: LinkId,
        delivery: DeliveryId,
        state: Option<DeliveryState>,
        settled: bool,
    ) {
        let _ = (link, delivery, state, settled);
    }

    pub(super) fn on_device_credit(&mut self, link: LinkId) {
        let _ = link;
    }

    pub(super) fn on_device_feed(&mut self, feed: DeviceFeed) {
        match feed {}
    }

    pub(super) fn forget_device_link(&mut self, link: LinkId, device: DeviceLink) {
        let _ = (link, device);
    }
}
