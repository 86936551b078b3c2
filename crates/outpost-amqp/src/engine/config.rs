//! [`EngineConfig`]: the limits and identity of the hub's end of a connection.

use std::time::Duration;

use crate::composite::Fields;
use crate::value::Symbol;

/// The limits and identity the engine advertises and enforces on one connection.
///
/// Every limit the engine advertises is sent explicitly (pyamqp applies no spec defaults, wire
/// reference §7.6.2).
#[derive(Clone, Debug, PartialEq)]
pub struct EngineConfig {
    /// The container id of our open (§2.7.1).
    pub container_id: String,
    /// The largest frame we accept, sent in our open; the frames we send are limited to the smaller of
    /// this and the peer's (never below 512). Default 65536, what uamqp asks for (wire reference §7.1).
    pub max_frame_size: u32,
    /// The highest channel the peer may begin a session on, sent in our open. Default 255.
    pub channel_max: u16,
    /// The highest link handle the peer may use in a session, sent in our begin: at most
    /// `handle_max + 1` links per session. Default 255.
    pub handle_max: u32,
    /// The most sessions at once; a begin beyond it is answered with begin then end
    /// `amqp:resource-limit-exceeded`. Default 32.
    pub max_sessions: usize,
    /// Our idle timeout, sent in our open (§2.4.5): the connection is closed with
    /// `amqp:resource-limit-exceeded` when nothing arrives for twice as long. Zero disables it.
    /// Default 240 s, like Azure.
    pub idle_timeout: Duration,
    /// How long the peer has, from the engine's creation, to finish the protocol headers, SASL and its
    /// open. Default 30 s.
    pub handshake_timeout: Duration,
    /// How long to wait for the peer's close after we sent ours. Default 5 s.
    pub close_timeout: Duration,
    /// The SASL mechanisms offered, in order (§5.3.3.1). Default `ANONYMOUS`, `PLAIN`, `MSSBCBS`,
    /// `EXTERNAL` (wire reference §3, §6, §7.1). Empty: SASL is refused.
    pub sasl_mechanisms: Vec<Symbol>,
    /// Refuse a bare AMQP header (no SASL layer). Default false: the Node IoT SDKs send no SASL.
    pub require_sasl: bool,
    /// The session incoming window in transfer frames, sent in our begin and topped up when half is
    /// used; also the outgoing window we announce. Default 5000.
    pub session_window: u32,
    /// The largest message a link accepts when the application's reply sets no limit (0: none), sent
    /// as the attach's max-message-size. Default 1 MiB.
    pub max_message_size: u64,
    /// Properties of our open, e.g. `product`.
    pub properties: Option<Fields>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            container_id: "outpost".into(),
            max_frame_size: 65536,
            channel_max: 255,
            handle_max: 255,
            max_sessions: 32,
            idle_timeout: Duration::from_secs(240),
            handshake_timeout: Duration::from_secs(30),
            close_timeout: Duration::from_secs(5),
            sasl_mechanisms: ["ANONYMOUS", "PLAIN", "MSSBCBS", "EXTERNAL"]
                .into_iter()
                .map(Symbol::from)
                .collect(),
            require_sasl: false,
            session_window: 5000,
            max_message_size: 1024 * 1024,
            properties: None,
        }
    }
}
