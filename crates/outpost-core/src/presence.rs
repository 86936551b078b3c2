//! Who is connected: one live connection per device or module identity, reachable through a
//! bounded command queue. The twin and method use cases push to connected identities through
//! it; a second connection of the same identity takes over and the first is told to close.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use outpost_model::{DeviceId, HubName, ModuleId, Timestamp};
use parking_lot::Mutex;
use serde_json::Value;
use tokio::sync::{Notify, oneshot};

/// Commands a connection carries out for the hub.
///
/// Payloads are boxed to keep the enum at 16 bytes: queued commands are few, but idle connections
/// are what a hub holds most of.
#[derive(Debug)]
pub enum DeviceCommand {
    /// Deliver a desired-properties patch (with `$version`).
    DesiredPatch(Box<Value>),
    /// Invoke a direct method and answer on `respond`.
    InvokeMethod(Box<MethodInvocation>),
    /// A cloud-to-device message was queued for the identity.
    CloudToDeviceAvailable,
    /// Another connection of the same identity took over: close this one.
    TakenOver,
    /// The identity was disabled or deleted: close the connection.
    Revoked,
}

/// A direct method call on its way to a connection.
#[derive(Debug)]
pub struct MethodInvocation {
    /// The method name.
    pub name: String,
    /// The JSON payload.
    pub payload: Value,
    /// Where the device's answer goes.
    pub respond: oneshot::Sender<MethodOutcome>,
}

/// What became of a direct method call at the connection.
#[derive(Debug, Clone, PartialEq)]
pub enum MethodOutcome {
    /// The device answered.
    Answered {
        /// The status the device returned.
        status: i32,
        /// The payload the device returned (JSON; `null` when empty).
        payload: Value,
    },
    /// The connection does not subscribe to direct methods.
    NotListening,
}

impl MethodOutcome {
    /// A device's answer as its transport carries it: `payload` is JSON text; empty means `null`,
    /// and what is not JSON is kept as a string (wire contract §2.7, §3).
    pub fn answered(status: i32, payload: &[u8]) -> Self {
        let payload = if payload.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(payload)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(payload).into_owned()))
        };
        Self::Answered { status, payload }
    }
}

/// Key of a connected identity.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdentityKey {
    /// The hub.
    pub hub: HubName,
    /// The device.
    pub device: DeviceId,
    /// The module, if any.
    pub module: Option<ModuleId>,
}

#[derive(Debug)]
struct Entry {
    connection: u64,
    sender: CommandSender,
    connected_since: Timestamp,
}

/// Queue depth of a connection's command queue; a connection that falls this far behind
/// loses further notifications (they are re-read on the next twin GET) rather than growing memory.
pub const COMMAND_QUEUE_DEPTH: usize = 64;

/// One connection's command queue. Not tokio's `mpsc`: that allocates a block of 32 slots and
/// a channel of a few hundred bytes per connection up front, and an idle connection (most of a
/// hub's) holds them for nothing; an empty `VecDeque` allocates nothing.
#[derive(Debug, Default)]
struct CommandQueue {
    commands: Mutex<VecDeque<DeviceCommand>>,
    senders: AtomicUsize,
    /// A command arrived or the last sender left; `notify_one` keeps a permit for a receiver
    /// that is not waiting yet, so none is missed.
    changed: Notify,
}

/// The hub's end of a connection's command queue (the presence table holds it).
#[derive(Debug)]
struct CommandSender(Arc<CommandQueue>);

impl CommandSender {
    /// Queues `command`; `false` when the queue is full.
    fn try_send(&self, command: DeviceCommand) -> bool {
        let mut commands = self.0.commands.lock();
        if commands.len() >= COMMAND_QUEUE_DEPTH {
            return false;
        }
        commands.push_back(command);
        drop(commands);
        self.0.changed.notify_one();
        true
    }
}

impl Clone for CommandSender {
    fn clone(&self) -> Self {
        self.0.senders.fetch_add(1, Ordering::Relaxed);
        Self(self.0.clone())
    }
}

impl Drop for CommandSender {
    fn drop(&mut self) {
        if self.0.senders.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.changed.notify_one();
        }
    }
}

/// The connection's end of its command queue.
#[derive(Debug)]
pub struct CommandReceiver(Arc<CommandQueue>);

impl CommandReceiver {
    /// The next command; `None` once the queue is empty and the hub dropped its end (another
    /// connection took over, or the identity was revoked). Cancel-safe: a command is only taken
    /// when this returns it.
    pub async fn recv(&mut self) -> Option<DeviceCommand> {
        loop {
            if let Some(command) = self.0.commands.lock().pop_front() {
                return Some(command);
            }
            if self.0.senders.load(Ordering::Acquire) == 0 {
                return None;
            }
            self.0.changed.notified().await;
        }
    }
}

fn command_queue() -> (CommandSender, CommandReceiver) {
    let queue = Arc::new(CommandQueue {
        senders: AtomicUsize::new(1),
        ..CommandQueue::default()
    });
    (CommandSender(queue.clone()), CommandReceiver(queue))
}

/// The live connections of this server.
#[derive(Debug, Default)]
pub struct Presence {
    next_connection: AtomicU64,
    connected: Mutex<HashMap<IdentityKey, Entry>>,
    /// Connection state events (`deviceConnectionStateEvents`) for routing.
    events: crate::routing::events::ConnectionEvents,
}

/// A registration of one connection; dropping it does not unregister (call
/// [`Presence::disconnect`]), so that a takeover is not undone by the old connection's exit.
#[derive(Debug)]
pub struct Registration {
    /// The identity.
    pub key: IdentityKey,
    /// This connection's number.
    pub connection: u64,
    /// Commands for this connection.
    pub commands: CommandReceiver,
}

impl Presence {
    /// Links connection state events to the routing publisher (done by `Registry::new`).
    pub fn link_events(&self, publisher: crate::routing::EventPublisher) {
        self.events.link(publisher);
    }

    /// Registers a new connection of `key`, telling a previous one to close.
    pub fn connect(&self, key: IdentityKey, now: Timestamp) -> Registration {
        let connection = self.next_connection.fetch_add(1, Ordering::Relaxed);
        let (sender, commands) = command_queue();
        let previous = self.connected.lock().insert(
            key.clone(),
            Entry {
                connection,
                sender,
                connected_since: now,
            },
        );
        if let Some(previous) = previous {
            // Best effort: a full queue means the old connection is stuck; it is dropped anyway
            // once its channel closes, because its sender is gone.
            let _ = previous.sender.try_send(DeviceCommand::TakenOver);
        }
        self.events.record(&key, true, now);
        Registration {
            key,
            connection,
            commands,
        }
    }

    /// Unregisters a connection, unless another one has taken over since.
    pub fn disconnect(&self, key: &IdentityKey, connection: u64) {
        let mut connected = self.connected.lock();
        if connected
            .get(key)
            .is_some_and(|entry| entry.connection == connection)
        {
            connected.remove(key);
            drop(connected);
            self.events.record(key, false, Timestamp::now());
        }
    }

    /// Closes the connection of a deleted or disabled identity: it counts as disconnected at
    /// once (a direct method called next finds it gone, not online), and its connection is told
    /// to close.
    pub fn revoke(&self, key: &IdentityKey) {
        let removed = self.connected.lock().remove(key);
        if let Some(entry) = removed {
            let _ = entry.sender.try_send(DeviceCommand::Revoked);
            self.events.record(key, false, Timestamp::now());
        }
    }

    /// Returns when `key` connected, if it is connected.
    pub fn connected_since(&self, key: &IdentityKey) -> Option<Timestamp> {
        self.connected.lock().get(key).map(|entry| entry.connected_since)
    }

    /// Returns how many devices of `hub` are connected (module connections are not counted).
    pub fn connected_device_count(&self, hub: &HubName) -> usize {
        self.connected
            .lock()
            .keys()
            .filter(|key| &key.hub == hub && key.module.is_none())
            .count()
    }

    /// Sends a command to a connected identity; returns whether it was queued.
    pub fn send(&self, key: &IdentityKey, command: DeviceCommand) -> bool {
        let sender = self.connected.lock().get(key).map(|entry| entry.sender.clone());
        sender.is_some_and(|sender| sender.try_send(command))
    }
}

/// Shared handle to the presence table.
pub type PresenceRef = Arc<Presence>;

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn device_answers_are_json_null_or_text() {
        let answered = |payload: &[u8]| match MethodOutcome::answered(200, payload) {
            MethodOutcome::Answered { status, payload } => (status, payload),
            MethodOutcome::NotListening => (0, Value::Null),
        };
        assert_eq!(answered(br#"{"a":[1,"b"]}"#), (200, json!({"a": [1, "b"]})));
        assert_eq!(answered(b""), (200, Value::Null));
        assert_eq!(answered(b"not json"), (200, json!("not json")));
    }

    fn key(device: &str) -> IdentityKey {
        IdentityKey {
            hub: HubName::new("hub").unwrap(),
            device: DeviceId::new(device).unwrap(),
            module: None,
        }
    }

    #[tokio::test]
    async fn commands_arrive_in_order_up_to_the_queue_depth() {
        let presence = Presence::default();
        let mut registration = presence.connect(key("d1"), Timestamp::now());
        for _ in 0..COMMAND_QUEUE_DEPTH {
            assert!(presence.send(&key("d1"), DeviceCommand::CloudToDeviceAvailable));
        }
        assert!(
            !presence.send(&key("d1"), DeviceCommand::CloudToDeviceAvailable),
            "over the depth"
        );
        assert!(
            !presence.send(&key("d2"), DeviceCommand::CloudToDeviceAvailable),
            "not connected"
        );
        for _ in 0..COMMAND_QUEUE_DEPTH {
            let command = registration.commands.recv().await;
            assert!(matches!(command, Some(DeviceCommand::CloudToDeviceAvailable)));
        }
        assert!(
            presence.send(&key("d1"), DeviceCommand::CloudToDeviceAvailable),
            "room again"
        );
    }

    #[tokio::test]
    async fn a_waiting_receiver_wakes_for_a_command_and_ends_on_takeover() {
        let presence = Arc::new(Presence::default());
        let mut first = presence.connect(key("d1"), Timestamp::now());
        let waiting = tokio::spawn(async move {
            let mut seen = Vec::new();
            while let Some(command) = first.commands.recv().await {
                seen.push(format!("{command:?}"));
            }
            seen
        });
        tokio::task::yield_now().await;
        assert!(presence.send(&key("d1"), DeviceCommand::CloudToDeviceAvailable));
        tokio::task::yield_now().await;
        // A second connection takes over: the first is told so, then its queue closes.
        let _second = presence.connect(key("d1"), Timestamp::now());
        let seen = tokio::time::timeout(std::time::Duration::from_secs(5), waiting)
            .await
            .expect("the first receiver ended")
            .unwrap();
        assert_eq!(seen, ["CloudToDeviceAvailable", "TakenOver"]);
    }

    #[tokio::test]
    async fn a_revoked_identity_is_told_and_its_queue_closes() {
        let presence = Presence::default();
        let mut registration = presence.connect(key("d1"), Timestamp::now());
        presence.revoke(&key("d1"));
        assert!(matches!(
            registration.commands.recv().await,
            Some(DeviceCommand::Revoked)
        ));
        assert!(registration.commands.recv().await.is_none());
        assert!(presence.connected_since(&key("d1")).is_none());
    }
}
