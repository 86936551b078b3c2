//! What the engine reports to the application: [`Event`], its payloads, and the identifiers the
//! application answers with ([`SessionId`], [`LinkId`], [`DeliveryId`]).

use std::fmt;

use bytes::Bytes;

use crate::composite::Fields;
use crate::definitions::{DeliveryState, Error, ReceiverSettleMode, Role, SenderSettleMode, Source, Target};
use crate::value::Symbol;

/// Identifies a session for the lifetime of the engine; never reused, unlike channel numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(pub(super) u64);

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "session#{}", self.0)
    }
}

/// Identifies a link for the lifetime of the engine; never reused, unlike handles.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LinkId(pub(crate) u64);

impl fmt::Display for LinkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "link#{}", self.0)
    }
}

/// A delivery-id (§2.8.10 `delivery-number`): unique among the unsettled deliveries of one session and
/// direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeliveryId(pub u32);

/// How the peer authenticated at the SASL layer (§5.3.3.2): the mechanism and what came with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SaslAuthentication {
    /// The mechanism chosen, e.g. `MSSBCBS` (one of [`EngineConfig::sasl_mechanisms`](super::EngineConfig)).
    pub mechanism: Symbol,
    /// The initial response: `\0user\0password` for PLAIN, an optional trace for ANONYMOUS.
    pub initial_response: Option<Bytes>,
    /// The host the client wants to reach.
    pub hostname: Option<String>,
}

/// PLAIN credentials (RFC 4616): `[authzid] NUL authcid NUL passwd`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlainCredentials<'a> {
    /// The authorization identity (usually empty).
    pub authzid: &'a str,
    /// The user name, e.g. `<policy>@sas.root.<hub>` (wire reference §7.7).
    pub username: &'a str,
    /// The password, e.g. a SAS token.
    pub password: &'a str,
}

impl SaslAuthentication {
    /// Returns the PLAIN credentials, when the mechanism is `PLAIN` and the initial response is three
    /// UTF-8 fields separated by NUL.
    pub fn plain(&self) -> Option<PlainCredentials<'_>> {
        if self.mechanism.as_str() != "PLAIN" {
            return None;
        }
        let response = std::str::from_utf8(self.initial_response.as_deref()?).ok()?;
        let mut parts = response.split('\0');
        let credentials = PlainCredentials {
            authzid: parts.next()?,
            username: parts.next()?,
            password: parts.next()?,
        };
        parts.next().is_none().then_some(credentials)
    }
}

/// The peer's open (§2.7.1), with the values in effect.
#[derive(Clone, Debug, PartialEq)]
pub struct PeerOpen {
    /// The peer's container id.
    pub container_id: String,
    /// The host the peer wants to reach (virtual hosting), e.g. the hub's host name.
    pub hostname: Option<String>,
    /// The peer's max frame size (spec default 4294967295 when absent).
    pub max_frame_size: u32,
    /// The peer's channel max (spec default 65535 when absent).
    pub channel_max: u16,
    /// The peer's idle timeout in milliseconds (absent or 0: none).
    pub idle_time_out: Option<u32>,
    /// The peer's offered capabilities.
    pub offered_capabilities: Option<Vec<Symbol>>,
    /// The peer's desired capabilities.
    pub desired_capabilities: Option<Vec<Symbol>>,
    /// The peer's connection properties, e.g. `product`, `user-agent`.
    pub properties: Option<Fields>,
}

/// A link the peer attached (§2.7.3), awaiting [`Engine::accept_link`](super::Engine::accept_link) or
/// [`Engine::reject_link`](super::Engine::reject_link).
#[derive(Clone, Debug, PartialEq)]
pub struct LinkAttached {
    /// The session of the link.
    pub session: SessionId,
    /// The link.
    pub link: LinkId,
    /// The peer's handle for the link.
    pub handle: u32,
    /// The link's name.
    pub name: String,
    /// The **peer's** role: `Sender` when the peer sends messages to the hub.
    pub role: Role,
    /// The source asked for, e.g. `/devices/dev1/messages/devicebound` or `$cbs`.
    pub source: Option<Source>,
    /// The target asked for, e.g. `/devices/dev1/messages/events` or `$cbs`.
    pub target: Option<Target>,
    /// The sender settle mode asked for (spec default mixed).
    pub snd_settle_mode: Option<SenderSettleMode>,
    /// The receiver settle mode asked for (spec default first).
    pub rcv_settle_mode: Option<ReceiverSettleMode>,
    /// The peer's largest acceptable message (absent or 0: no limit).
    pub max_message_size: Option<u64>,
    /// The peer's initial delivery count (when the peer is the sender).
    pub initial_delivery_count: Option<u32>,
    /// Link properties, e.g. `com.microsoft:channel-correlation-id`, `com.microsoft:epoch`.
    pub properties: Option<Fields>,
    /// Capabilities the peer offers.
    pub offered_capabilities: Option<Vec<Symbol>>,
    /// Capabilities the peer desires, e.g. `com.microsoft:enable-receiver-runtime-metric`.
    pub desired_capabilities: Option<Vec<Symbol>>,
}

/// A complete message the peer sent on a link where the hub receives (§2.6.12).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// The link it arrived on.
    pub link: LinkId,
    /// Its delivery-id, to [`Engine::settle`](super::Engine::settle) it.
    pub delivery_id: DeliveryId,
    /// Its delivery tag.
    pub delivery_tag: Bytes,
    /// The message format (0: an AMQP message, decode it with [`Message::decode`](crate::Message::decode)).
    pub message_format: u32,
    /// The peer sent it settled: no settlement is expected.
    pub settled: bool,
    /// The message bytes, reassembled from all its transfer frames.
    pub message: Bytes,
}

/// What happened on the connection, for the application (§2.4 connections, §2.5 sessions, §2.6 links).
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// The peer chose a SASL mechanism: authenticate it and answer with
    /// [`Engine::sasl_outcome`](super::Engine::sasl_outcome).
    SaslInit(SaslAuthentication),
    /// The peer's open arrived and the engine answered with its own.
    Opened(PeerOpen),
    /// The peer began a session; the engine answered with its begin.
    SessionBegun {
        /// The session.
        session: SessionId,
    },
    /// The peer ended a session (its links are reported detached first); the engine answered.
    SessionEnded {
        /// The session.
        session: SessionId,
        /// The peer's error, if any.
        error: Option<Error>,
    },
    /// The peer attached a link: answer with [`Engine::accept_link`](super::Engine::accept_link) or
    /// [`Engine::reject_link`](super::Engine::reject_link).
    LinkAttached(Box<LinkAttached>),
    /// A link is gone: the peer detached it (answered by the engine), its session ended, or the engine
    /// detached it for a violation (`by_peer` false, e.g. `amqp:link:message-size-exceeded`). Not
    /// reported for detaches the application asked for.
    LinkDetached {
        /// The link.
        link: LinkId,
        /// The link is closed, not only detached.
        closed: bool,
        /// Why.
        error: Option<Error>,
        /// The peer detached it (true) or the engine did (false).
        by_peer: bool,
    },
    /// The peer gave credit on a link where the hub sends, or room opened in the session window:
    /// [`Engine::send`](super::Engine::send) may send up to `credit` messages. With `drain`, the peer
    /// asks to use all credit now: send what is available, then call
    /// [`Engine::drain`](super::Engine::drain).
    CreditAvailable {
        /// The link.
        link: LinkId,
        /// The credit available.
        credit: u32,
        /// The peer asks the hub to use up or give back its credit.
        drain: bool,
    },
    /// A message arrived; settle it with [`Engine::settle`](super::Engine::settle) unless `settled`.
    Delivery(Delivery),
    /// The peer updated the state of a delivery the hub sent (a disposition, §2.7.6).
    Settled {
        /// The link the delivery was sent on.
        link: LinkId,
        /// The delivery.
        delivery_id: DeliveryId,
        /// Its outcome, e.g. accepted.
        state: Option<DeliveryState>,
        /// The peer settled it (in receiver settle mode second the engine settles it at once).
        settled: bool,
    },
    /// The connection is closed: this is the last event, and [`Engine::is_closed`](super::Engine::is_closed)
    /// is now true. Write out the remaining output and close the socket.
    Closed {
        /// Why: the peer's error when `by_peer`, otherwise the error the engine or the application
        /// closed with (`amqp:resource-limit-exceeded` for an idle timeout, a decode error…).
        error: Option<Error>,
        /// The peer closed the connection.
        by_peer: bool,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn authentication(mechanism: &str, response: &'static [u8]) -> SaslAuthentication {
        SaslAuthentication {
            mechanism: mechanism.into(),
            initial_response: Some(Bytes::from_static(response)),
            hostname: None,
        }
    }

    #[test]
    fn plain_credentials_need_three_fields() {
        let credentials = authentication("PLAIN", b"admin\0user\0pass");
        assert_eq!(
            credentials.plain(),
            Some(PlainCredentials {
                authzid: "admin",
                username: "user",
                password: "pass"
            })
        );
        assert_eq!(authentication("PLAIN", b"user\0pass").plain(), None);
        assert_eq!(authentication("PLAIN", b"\0a\0b\0c").plain(), None);
        assert_eq!(authentication("PLAIN", b"\0a\0\xff").plain(), None);
        assert_eq!(authentication("ANONYMOUS", b"\0a\0b").plain(), None);
        assert_eq!(LinkId(7).to_string(), "link#7");
        assert_eq!(SessionId(2).to_string(), "session#2");
    }
}
