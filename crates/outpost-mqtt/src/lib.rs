//! Outpost's MQTT 3.1.1 front door, wire-compatible with the Azure IoT Hub device endpoint (wire reference §2):
//! what the Azure device SDKs send over MQTT, decoded, checked against the spec and answered.
//!
//! Layer: front door. Depends on `outpost-core`, `outpost-model` and `outpost-auth`, never on a storage
//! backend or another front door. The codec itself is pure: no tokio, no I/O.
//!
//! Modules:
//! - `codec`: MQTT 3.1.1 control packets, a resumable [`codec::Decoder`], [`codec::encode`], topic name and
//!   filter validation and matching, and the fuzz round-trip logic.
//! - `topics`: IoT Hub's topic space: what a device may publish and subscribe to, property bags.
//! - `session`: persistent sessions (clean session = false) kept between connections.
//! - `throttle`: connects admitted per second per hub (CONNACK 3 beyond).
//! - `state`: the sans-IO session: packets in, actions out.
//! - `pipeline`: a connection's telemetry on its way to disk, acknowledged in order.
//! - `connection`: one authenticated device connection: telemetry, twins, desired pushes.

pub mod codec;
pub mod connection;
mod pipeline;
pub mod session;
pub mod state;
pub mod throttle;
pub mod topics;

pub use connection::{MqttContext, MqttLimits, serve_connection};
pub use session::Sessions;
pub use throttle::ConnectThrottle;
