//! Model-based test of the embedded queue: long pseudo-random runs of enqueue, lock, complete,
//! reject, abandon, sweep, purge and release against a plain `Vec` model of the port's
//! semantics, checking every outcome and every depth. Runs are seeded, so a failure replays.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]

use outpost_core::testing::{
    C2D_LOCK_FOR, c2d_message, c2d_time, create_hub_named, device_target, module_target,
};
use outpost_core::{C2dTarget, CloudToDeviceQueue as _, DeadReason, QueueLimits, StoreError};
use outpost_model::{HubName, Timestamp};
use outpost_store::EmbeddedStore;

const LIMITS: QueueLimits = QueueLimits {
    max_depth: 5,
    max_delivery_count: 3,
};
const LOCK_SECONDS: i64 = 60;

/// A xorshift generator: deterministic and dependency-free.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

#[derive(Debug, Clone)]
struct Modelled {
    sequence: u64,
    body: String,
    /// Seconds after the origin; `None`: never expires.
    expiry: Option<i64>,
    delivery_count: u32,
    lock: Option<(String, i64)>,
}

#[derive(Debug, Default)]
struct Queue {
    messages: Vec<Modelled>,
    last_sequence: u64,
}

/// The port's semantics, written as plainly as possible.
struct Model {
    queues: [Queue; 2],
}

impl Model {
    /// Returns the dead (sequence, reason) pairs and the index of the message to lock.
    fn lock_next(&mut self, q: usize, now: i64) -> (Vec<(u64, DeadReason)>, Option<usize>) {
        let mut dead = Vec::new();
        let mut i = 0;
        while i < self.queues[q].messages.len() {
            let message = &self.queues[q].messages[i];
            let held = message.lock.as_ref().is_some_and(|(_, until)| *until > now);
            if message.expiry.is_some_and(|expiry| expiry < now) {
                dead.push((message.sequence, DeadReason::Expired));
                self.queues[q].messages.remove(i);
            } else if held {
                i += 1;
            } else if message.delivery_count >= LIMITS.max_delivery_count {
                dead.push((message.sequence, DeadReason::DeliveryCountExceeded));
                self.queues[q].messages.remove(i);
            } else {
                return (dead, Some(i));
            }
        }
        (dead, None)
    }

    /// Returns the index of the message holding `token` at `now`.
    fn held(&self, q: usize, token: &str, now: i64) -> Option<usize> {
        self.queues[q].messages.iter().position(|message| {
            message
                .lock
                .as_ref()
                .is_some_and(|(held, until)| held == token && *until > now)
        })
    }
}

fn targets() -> [C2dTarget; 2] {
    [device_target("d"), module_target("d", "m")]
}

async fn run(seed: u64, steps: usize) {
    let store = EmbeddedStore::in_memory().unwrap();
    let hub: HubName = create_hub_named(&store, "h").await;
    let targets = targets();
    let mut model = Model {
        queues: [Queue::default(), Queue::default()],
    };
    let mut rng = Rng(seed);
    let mut now = 0_i64;
    // Tokens handed out so far, valid or not, to settle with.
    let mut tokens: Vec<(usize, String)> = Vec::new();

    for step in 0..steps {
        let context = format!("seed {seed} step {step} at {now}");
        now += i64::try_from(rng.below(25)).unwrap();
        let q = usize::try_from(rng.below(2)).unwrap();
        let target = &targets[q];
        let at = c2d_time(now);
        match rng.below(100) {
            0..30 => {
                let expiry = match rng.below(4) {
                    0 => None,
                    _ => Some(now + i64::try_from(rng.below(300)).unwrap()),
                };
                let body = format!("{q}-{step}");
                let message = c2d_message(&body, expiry.map_or(Timestamp::NEVER, c2d_time));
                let result = store.enqueue(&hub, target, &message, LIMITS).await;
                let queue = &mut model.queues[q];
                if queue.messages.len() >= LIMITS.max_depth {
                    assert!(
                        matches!(result, Err(StoreError::Conflict)),
                        "{context}: {result:?}"
                    );
                } else {
                    queue.last_sequence += 1;
                    assert_eq!(result.unwrap(), queue.last_sequence, "{context}");
                    queue.messages.push(Modelled {
                        sequence: queue.last_sequence,
                        body,
                        expiry,
                        delivery_count: 0,
                        lock: None,
                    });
                }
            }
            30..60 => {
                let outcome = store
                    .lock_next(&hub, target, at, C2D_LOCK_FOR, LIMITS)
                    .await
                    .unwrap();
                let (dead, next) = model.lock_next(q, now);
                let got: Vec<(u64, DeadReason)> = outcome
                    .dead
                    .iter()
                    .map(|(message, reason)| (message.sequence_number, *reason))
                    .collect();
                assert_eq!(got, dead, "{context}: dead");
                match (next, outcome.locked) {
                    (None, None) => {}
                    (Some(i), Some(locked)) => {
                        let modelled = &mut model.queues[q].messages[i];
                        modelled.delivery_count += 1;
                        assert_eq!(locked.sequence_number, modelled.sequence, "{context}");
                        assert_eq!(locked.delivery_count, modelled.delivery_count, "{context}");
                        assert_eq!(locked.message.body, modelled.body.as_bytes(), "{context}");
                        let lock = locked.lock.expect("locked");
                        assert_eq!(lock.until, c2d_time(now + LOCK_SECONDS), "{context}");
                        modelled.lock = Some((lock.token.clone(), now + LOCK_SECONDS));
                        tokens.push((q, lock.token));
                    }
                    (expected, got) => panic!("{context}: expected {expected:?}, locked {got:?}"),
                }
            }
            60..85 if !tokens.is_empty() => {
                let pick = usize::try_from(rng.below(tokens.len() as u64)).unwrap();
                let (owner, token) = tokens[pick].clone();
                // Sometimes settle on the other target, where the token is unknown.
                let q = if rng.below(5) == 0 { 1 - owner } else { owner };
                let target = &targets[q];
                let held = model.held(q, &token, now);
                match rng.below(3) {
                    0 => {
                        let result = store.abandon(&hub, target, &token, at).await;
                        match held {
                            Some(i) => {
                                result.unwrap();
                                model.queues[q].messages[i].lock = None;
                            }
                            None => assert!(matches!(result, Err(StoreError::NotFound)), "{context}"),
                        }
                    }
                    kind => {
                        let result = if kind == 1 {
                            store.complete(&hub, target, &token, at).await
                        } else {
                            store.reject(&hub, target, &token, at).await
                        };
                        match held {
                            Some(i) => {
                                let removed = model.queues[q].messages.remove(i);
                                let settled = result.unwrap();
                                assert_eq!(settled.sequence_number, removed.sequence, "{context}");
                                assert_eq!(settled.delivery_count, removed.delivery_count, "{context}");
                            }
                            None => assert!(matches!(result, Err(StoreError::NotFound)), "{context}"),
                        }
                    }
                }
            }
            85..93 => {
                let max = usize::try_from(rng.below(4)).unwrap();
                let swept = store.sweep_expired(&hub, at, max).await.unwrap();
                // Earliest expiry first, then by target key (module "" before "m"), then sequence.
                let mut due: Vec<(i64, usize, u64)> = Vec::new();
                for (q, queue) in model.queues.iter().enumerate() {
                    for message in &queue.messages {
                        if let Some(expiry) = message.expiry.filter(|expiry| *expiry < now) {
                            due.push((expiry, q, message.sequence));
                        }
                    }
                }
                due.sort_unstable();
                due.truncate(max);
                let got: Vec<(C2dTarget, u64)> = swept
                    .iter()
                    .map(|(target, message)| (target.clone(), message.sequence_number))
                    .collect();
                let expected: Vec<(C2dTarget, u64)> = due
                    .iter()
                    .map(|(_, q, sequence)| (targets[*q].clone(), *sequence))
                    .collect();
                assert_eq!(got, expected, "{context}: swept");
                for (_, q, sequence) in due {
                    model.queues[q]
                        .messages
                        .retain(|message| message.sequence != sequence);
                }
            }
            93..96 => {
                store.release_all_locks().await.unwrap();
                for queue in &mut model.queues {
                    for message in &mut queue.messages {
                        message.lock = None;
                    }
                }
            }
            96..98 => {
                let purged = store.purge(&hub, target).await.unwrap();
                let got: Vec<(u64, u32)> = purged
                    .iter()
                    .map(|message| (message.sequence_number, message.delivery_count))
                    .collect();
                let expected: Vec<(u64, u32)> = model.queues[q]
                    .messages
                    .drain(..)
                    .map(|message| (message.sequence, message.delivery_count))
                    .collect();
                assert_eq!(got, expected, "{context}: purged");
            }
            _ => {}
        }
        for (q, target) in targets.iter().enumerate() {
            let depth = store.depth(&hub, target).await.unwrap();
            assert_eq!(depth, model.queues[q].messages.len(), "{context}: depth of {q}");
        }
    }
}

#[tokio::test]
async fn the_queue_behaves_like_its_model() {
    for seed in [0x9e37_79b9_7f4a_7c15, 0x2545_f491_4f6c_dd1d, 42] {
        run(seed, 600).await;
    }
}
