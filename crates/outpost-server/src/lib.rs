//! Outpost's composition root: configuration, TLS material, the embedded backends, the hub
//! services and the listeners, wired together and started as one [`Server`]. A library, so
//! tests start whole servers in-process on `127.0.0.1:0`.
//!
//! Layer: the top; it may depend on every other crate. Nothing depends on it but the binary.
//!
//! * [`config`]: [`OutpostConfig`], file + `OUTPOST_*` environment overlay.
//! * [`server`]: [`Server::start`] and shutdown.
//! * [`tls`]: development CA, reloading certificates, rustls configurations.
//! * [`https`]: the HTTPS and plain-HTTP accept loops.
//! * [`routing_config`]: `[[routing]]` of the configuration file, applied at start.
//! * [`websocket`]: MQTT and AMQP over WebSockets on the HTTPS listener.

pub mod config;
pub mod https;
pub mod routing_config;
pub mod server;
pub mod tls;
pub mod websocket;

pub use config::OutpostConfig;
pub use server::{OPERATOR_ENDPOINT_FILE, OPERATOR_TOKEN_FILE, Server, ServerError};
