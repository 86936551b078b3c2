//! The queue's transaction bodies. Each runs inside one redb transaction opened by
//! [`EmbeddedStore::read`](crate::store::EmbeddedStore) or `write`, so a lock, the dead messages
//! found on the way, and the index rows that follow them commit together or not at all.
//!
//! A target's queue is short (Azure allows 50 messages), so finding the next deliverable message
//! or a lock token is a scan of the target's range that reads record headers only; the message
//! itself is decoded only when it is returned.

use outpost_core::{C2dTarget, DeadReason, LockOutcome, QueuedMessage, StoreError};
use outpost_model::{DeviceId, ModuleId};
use redb::{
    ReadOnlyTable, ReadTransaction, ReadableTable as _, Table, TableDefinition, TableError, WriteTransaction,
};

use super::layout::{EXPIRY, MESSAGES, MessageKey, SEQUENCES, TargetKey, ticks};
use super::record::{self, Header, Lock};
use crate::error::TxError;
use crate::tables::{HUBS, successor};

/// What a message is to a receiver at some instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum State {
    /// It must leave the queue.
    Dead(DeadReason),
    /// Someone holds its lock.
    Held,
    /// It can be locked.
    Deliverable,
}

/// Classifies a message at `now` (ticks). Expiry wins over everything, even a held lock; a
/// message that reached `max_delivery_count` is only dead once its last lock lapsed or was
/// abandoned, so the receiver of its last delivery can still complete it.
pub(super) fn classify(header: &Header, now: i64, max_delivery_count: u32) -> State {
    if header.expiry.is_some_and(|expiry| expiry < now) {
        State::Dead(DeadReason::Expired)
    } else if header.lock.is_some_and(|lock| lock.is_held(now)) {
        State::Held
    } else if header.delivery_count >= max_delivery_count {
        State::Dead(DeadReason::DeliveryCountExceeded)
    } else {
        State::Deliverable
    }
}

/// Appends `record` to the target's queue and returns its sequence number.
///
/// # Errors
/// [`StoreError::ParentMissing`] when the hub does not exist, [`StoreError::Conflict`] when the
/// queue holds `max_depth` messages.
pub(super) fn enqueue(
    tx: &WriteTransaction,
    target: TargetKey<'_>,
    record: &[u8],
    max_depth: usize,
) -> Result<u64, TxError> {
    // As for devices: a message racing `drop_hub` must not outlive its hub.
    if tx.open_table(HUBS)?.get(target.hub)?.is_none() {
        return Err(StoreError::ParentMissing.into());
    }
    let mut messages = tx.open_table(MESSAGES)?;
    let mut depth = 0_usize;
    for entry in messages.range(target.messages())? {
        if depth >= max_depth {
            break;
        }
        entry?;
        depth += 1;
    }
    if depth >= max_depth {
        return Err(StoreError::Conflict.into());
    }
    let mut sequences = tx.open_table(SEQUENCES)?;
    let last = sequences.get(target.counter())?.map_or(0, |guard| guard.value());
    let sequence = last
        .checked_add(1)
        .ok_or_else(|| StoreError::Backend("a cloud-to-device sequence counter is exhausted".into()))?;
    sequences.insert(target.counter(), sequence)?;
    if messages.insert(target.message(sequence), record)?.is_some() {
        return Err(corrupt(
            target,
            sequence,
            "a message already holds the next sequence number",
        )
        .into());
    }
    let header = header_at(target, sequence, record)?;
    if let Some(expiry) = header.expiry {
        tx.open_table(EXPIRY)?
            .insert(target.expiry(expiry, sequence), ())?;
    }
    Ok(sequence)
}

/// Returns whether [`lock_next`] would change anything at `now`: the queue holds a message that
/// is deliverable or dead. Lets an idle poll finish without a (durable, serialized) write.
pub(super) fn lock_next_has_work(
    tx: &ReadTransaction,
    target: TargetKey<'_>,
    now: i64,
    max_delivery_count: u32,
) -> Result<bool, TxError> {
    let Some(messages) = open_if_present(tx, MESSAGES)? else {
        return Ok(false);
    };
    for entry in messages.range(target.messages())? {
        let (key, value) = entry?;
        let header = header_at(target, key.value().3, value.value())?;
        if classify(&header, now, max_delivery_count) != State::Held {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Removes the dead messages met before the first deliverable one, and locks that one with
/// `lock` (delivery count + 1).
pub(super) fn lock_next(
    tx: &WriteTransaction,
    target: TargetKey<'_>,
    now: i64,
    lock: Lock,
    max_delivery_count: u32,
) -> Result<LockOutcome, TxError> {
    let mut messages = tx.open_table(MESSAGES)?;
    let mut dead = Vec::new();
    let mut next = None;
    for entry in messages.range(target.messages())? {
        let (key, value) = entry?;
        let sequence = key.value().3;
        let header = header_at(target, sequence, value.value())?;
        match classify(&header, now, max_delivery_count) {
            State::Dead(reason) => dead.push((sequence, value.value().to_vec(), reason)),
            State::Held => {}
            State::Deliverable => {
                next = Some((sequence, value.value().to_vec(), header));
                break;
            }
        }
    }
    let mut outcome = LockOutcome::default();
    let mut expiry = tx.open_table(EXPIRY)?;
    for (sequence, stored, reason) in dead {
        let message = decode_at(target, sequence, &stored)?;
        remove(&mut messages, &mut expiry, target, &message)?;
        outcome.dead.push((message, reason));
    }
    if let Some((sequence, stored, header)) = next {
        let locked = record::with_header(
            &stored,
            Header {
                delivery_count: header.delivery_count.saturating_add(1),
                lock: Some(lock),
                ..header
            },
        );
        let message = decode_at(target, sequence, &locked)?;
        messages.insert(target.message(sequence), locked.as_slice())?;
        outcome.locked = Some(message);
    }
    Ok(outcome)
}

/// Removes the message locked with `token` and returns it (complete, reject).
///
/// # Errors
/// [`StoreError::NotFound`] when no message of the target holds that lock at `now`.
pub(super) fn take_locked(
    tx: &WriteTransaction,
    target: TargetKey<'_>,
    token: u128,
    now: i64,
) -> Result<QueuedMessage, TxError> {
    let mut messages = tx.open_table(MESSAGES)?;
    let (sequence, stored, _) = find_locked(&messages, target, token, now)?;
    let message = decode_at(target, sequence, &stored)?;
    let mut expiry = tx.open_table(EXPIRY)?;
    remove(&mut messages, &mut expiry, target, &message)?;
    Ok(message)
}

/// Clears the lock `token` holds, keeping the delivery count (abandon).
///
/// # Errors
/// As [`take_locked`].
pub(super) fn unlock(
    tx: &WriteTransaction,
    target: TargetKey<'_>,
    token: u128,
    now: i64,
) -> Result<(), TxError> {
    let mut messages = tx.open_table(MESSAGES)?;
    let (sequence, stored, header) = find_locked(&messages, target, token, now)?;
    let unlocked = record::with_header(&stored, Header { lock: None, ..header });
    messages.insert(target.message(sequence), unlocked.as_slice())?;
    Ok(())
}

/// Clears every lock of every queue.
pub(super) fn release_all_locks(tx: &WriteTransaction) -> Result<(), TxError> {
    let mut messages = tx.open_table(MESSAGES)?;
    let mut unlocked = Vec::new();
    for entry in messages.iter()? {
        let (key, value) = entry?;
        let (hub, device, module, sequence) = key.value();
        let target = TargetKey { hub, device, module };
        let header = header_at(target, sequence, value.value())?;
        if header.lock.is_some() {
            let owned = (hub.to_owned(), device.to_owned(), module.to_owned(), sequence);
            unlocked.push((
                owned,
                record::with_header(value.value(), Header { lock: None, ..header }),
            ));
        }
    }
    for ((hub, device, module, sequence), stored) in unlocked {
        let key: MessageKey<'_> = (&hub, &device, &module, sequence);
        messages.insert(key, stored.as_slice())?;
    }
    Ok(())
}

/// Removes every message of the target and returns them in sequence order.
pub(super) fn purge(tx: &WriteTransaction, target: TargetKey<'_>) -> Result<Vec<QueuedMessage>, TxError> {
    let mut messages = tx.open_table(MESSAGES)?;
    let mut purged = Vec::new();
    for entry in messages.range(target.messages())? {
        let (key, value) = entry?;
        purged.push(decode_at(target, key.value().3, value.value())?);
    }
    messages.retain_in(target.messages(), |_, _| false)?;
    let mut expiry = tx.open_table(EXPIRY)?;
    for message in &purged {
        if let Some(at) = ticks(message.message.expiry) {
            expiry.remove(target.expiry(at, message.sequence_number))?;
        }
    }
    Ok(purged)
}

/// Returns how many messages the target's queue holds.
pub(super) fn depth(tx: &ReadTransaction, target: TargetKey<'_>) -> Result<usize, TxError> {
    let Some(messages) = open_if_present(tx, MESSAGES)? else {
        return Ok(0);
    };
    let mut depth = 0;
    for entry in messages.range(target.messages())? {
        entry?;
        depth += 1;
    }
    Ok(depth)
}

/// Removes at most `max` messages of `hub` whose expiry is before `now` (ticks), earliest
/// expiry first, and returns them with their targets.
pub(super) fn sweep_expired(
    tx: &WriteTransaction,
    hub: &str,
    now: i64,
    max: usize,
) -> Result<Vec<(C2dTarget, QueuedMessage)>, TxError> {
    if max == 0 || now == i64::MIN {
        return Ok(Vec::new());
    }
    let mut expiry = tx.open_table(EXPIRY)?;
    let mut due = Vec::new();
    for entry in expiry
        .range((hub, i64::MIN, "", "", 0)..(hub, now, "", "", 0))?
        .take(max)
    {
        let (key, _) = entry?;
        let (_, at, device, module, sequence) = key.value();
        due.push((at, device.to_owned(), module.to_owned(), sequence));
    }
    let mut messages = tx.open_table(MESSAGES)?;
    let mut swept = Vec::with_capacity(due.len());
    for (at, device, module, sequence) in due {
        let target = TargetKey {
            hub,
            device: &device,
            module: &module,
        };
        expiry.remove(target.expiry(at, sequence))?;
        let Some(stored) = messages.remove(target.message(sequence))? else {
            // Both rows are always written together; a lone index row is dropped, not fatal.
            tracing::warn!(
                hub,
                sequence,
                "dropped a cloud-to-device expiry row without its message"
            );
            continue;
        };
        let message = decode_at(target, sequence, stored.value())?;
        drop(stored);
        swept.push((c2d_target(target, sequence)?, message));
    }
    Ok(swept)
}

/// Removes every queue of `hub`, its expiry rows and its sequence counters.
pub(crate) fn remove_hub_queues(tx: &WriteTransaction, hub: &str) -> Result<(), TxError> {
    let end = successor(hub);
    let end = end.as_str();
    tx.open_table(MESSAGES)?
        .retain_in((hub, "", "", 0)..(end, "", "", 0), |_, _| false)?;
    tx.open_table(EXPIRY)?
        .retain_in((hub, i64::MIN, "", "", 0)..(end, i64::MIN, "", "", 0), |_, ()| {
            false
        })?;
    tx.open_table(SEQUENCES)?
        .retain_in((hub, "", "")..(end, "", ""), |_, _| false)?;
    Ok(())
}

/// Finds the message of the target locked with `token`; the lock must be held at `now`.
fn find_locked(
    messages: &Table<'_, MessageKey<'static>, &'static [u8]>,
    target: TargetKey<'_>,
    token: u128,
    now: i64,
) -> Result<(u64, Vec<u8>, Header), TxError> {
    for entry in messages.range(target.messages())? {
        let (key, value) = entry?;
        let sequence = key.value().3;
        let header = header_at(target, sequence, value.value())?;
        if let Some(lock) = header.lock
            && lock.token == token
        {
            if !lock.is_held(now) {
                break;
            }
            return Ok((sequence, value.value().to_vec(), header));
        }
    }
    Err(StoreError::NotFound.into())
}

/// Removes a message and its expiry row.
fn remove(
    messages: &mut Table<'_, MessageKey<'static>, &'static [u8]>,
    expiry: &mut Table<'_, (&'static str, i64, &'static str, &'static str, u64), ()>,
    target: TargetKey<'_>,
    message: &QueuedMessage,
) -> Result<(), TxError> {
    messages.remove(target.message(message.sequence_number))?;
    if let Some(at) = ticks(message.message.expiry) {
        expiry.remove(target.expiry(at, message.sequence_number))?;
    }
    Ok(())
}

/// Opens a table in a read transaction, or returns `None` when no write has created it yet
/// (the queue's tables appear with the first message).
fn open_if_present<K: redb::Key + 'static, V: redb::Value + 'static>(
    tx: &ReadTransaction,
    definition: TableDefinition<K, V>,
) -> Result<Option<ReadOnlyTable<K, V>>, TxError> {
    match tx.open_table(definition) {
        Ok(table) => Ok(Some(table)),
        Err(TableError::TableDoesNotExist(_)) => Ok(None),
        Err(error) => Err(error.into()),
    }
}

fn header_at(target: TargetKey<'_>, sequence: u64, stored: &[u8]) -> Result<Header, TxError> {
    record::read_header(stored).map_err(|damage| corrupt(target, sequence, &damage).into())
}

fn decode_at(target: TargetKey<'_>, sequence: u64, stored: &[u8]) -> Result<QueuedMessage, TxError> {
    record::decode(stored, sequence).map_err(|damage| corrupt(target, sequence, &damage).into())
}

/// Rebuilds the target of a key read from the index.
fn c2d_target(target: TargetKey<'_>, sequence: u64) -> Result<C2dTarget, TxError> {
    let device = DeviceId::new(target.device)
        .map_err(|_| corrupt(target, sequence, "the key holds an invalid device id"))?;
    let module = match target.module {
        "" => None,
        module => Some(
            ModuleId::new(module)
                .map_err(|_| corrupt(target, sequence, "the key holds an invalid module id"))?,
        ),
    };
    Ok(C2dTarget { device, module })
}

/// A corrupt-record error naming the message by its key; `damage` never quotes contents.
fn corrupt(target: TargetKey<'_>, sequence: u64, damage: &str) -> StoreError {
    let TargetKey { hub, device, module } = target;
    let module = if module.is_empty() {
        String::new()
    } else {
        format!(" module '{module}'")
    };
    StoreError::Corrupt(format!(
        "cloud-to-device message {sequence} of device '{device}'{module} of hub '{hub}': {damage}"
    ))
}
