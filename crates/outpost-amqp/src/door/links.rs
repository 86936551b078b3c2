//! The links of one connection, counted in the server's metrics as they come and go.

use std::collections::HashMap;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;

use outpost_core::Metrics;

use super::connection::{LinkRole, LinkState, Node};
use crate::engine::LinkId;

/// A connection's links by id. `insert` and `remove` keep `outpost_amqp_links` right; reads go
/// through to the map.
pub(super) struct Links {
    map: HashMap<LinkId, LinkState>,
    metrics: Arc<Metrics>,
}

impl LinkRole {
    /// The metrics label of the link's kind.
    fn kind(&self) -> &'static str {
        match self {
            Self::Requests(Node::Cbs) | Self::Replies { node: Node::Cbs, .. } => "cbs",
            Self::Requests(Node::Management)
            | Self::Replies {
                node: Node::Management,
                ..
            } => "management",
            Self::Partition(_) => "partition",
            Self::Service(_) => "service",
            Self::Device(_) => "device",
        }
    }
}

impl Links {
    pub(super) fn new(metrics: Arc<Metrics>) -> Self {
        Self {
            map: HashMap::new(),
            metrics,
        }
    }

    /// Adds (or replaces) a link.
    pub(super) fn insert(&mut self, link: LinkId, state: LinkState) -> Option<LinkState> {
        self.metrics.record_amqp_link(state.role.kind(), true);
        let old = self.map.insert(link, state);
        if let Some(old) = &old {
            self.metrics.record_amqp_link(old.role.kind(), false);
        }
        old
    }

    /// Removes a link.
    pub(super) fn remove(&mut self, link: &LinkId) -> Option<LinkState> {
        let state = self.map.remove(link)?;
        self.metrics.record_amqp_link(state.role.kind(), false);
        Some(state)
    }
}

impl Deref for Links {
    type Target = HashMap<LinkId, LinkState>;

    fn deref(&self) -> &Self::Target {
        &self.map
    }
}

impl DerefMut for Links {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.map
    }
}

impl Drop for Links {
    fn drop(&mut self) {
        for state in self.map.values() {
            self.metrics.record_amqp_link(state.role.kind(), false);
        }
    }
}
