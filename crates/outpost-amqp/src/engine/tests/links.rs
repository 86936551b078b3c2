//! Attach, detach, rejection, stolen and redirected links.

use super::Peer;
use crate::definitions::{Error, ReceiverSettleMode, Role, SenderSettleMode, Source, Target, condition};
use crate::engine::{EngineConfig, EngineError, Event, LinkReply};
use crate::performatives::{Attach, Detach, Performative};
use crate::value::{Symbol, Value};

#[test]
fn a_cbs_receiver_attach_is_answered_with_source_target_and_delivery_count() {
    let mut peer = Peer::opened(EngineConfig::default());
    let (session, channel) = peer.begin(0);
    // rhea's $cbs receiver: source $cbs, no target.
    let mut attach = Attach::new("rheaReceiver_1", 1, Role::Receiver);
    attach.source = Some(Source::new("$cbs"));
    attach.snd_settle_mode = Some(SenderSettleMode::Settled);
    attach.properties = Some(vec![(
        Symbol::from("com.microsoft:client-version"),
        Value::from("azure-iot-device/1.18.4"),
    )]);
    attach.desired_capabilities = Some(vec![Symbol::from("com.microsoft:georeplication")]);
    let attached = peer.attach(0, attach.clone());
    assert_eq!(attached.session, session);
    assert_eq!(attached.name, "rheaReceiver_1");
    assert_eq!(attached.handle, 1);
    assert_eq!(attached.role, Role::Receiver);
    assert_eq!(attached.source, attach.source);
    assert_eq!(attached.target, None);
    assert_eq!(attached.properties, attach.properties);
    assert_eq!(attached.desired_capabilities, attach.desired_capabilities);
    assert_eq!(attached.snd_settle_mode, Some(SenderSettleMode::Settled));
    assert!(
        peer.performatives().is_empty(),
        "the answer waits for the application"
    );

    peer.engine
        .accept_link(attached.link, LinkReply::default())
        .unwrap();
    let [(ours, Performative::Attach(reply))] = &peer.performatives()[..] else {
        panic!("expected our attach");
    };
    assert_eq!(*ours, channel);
    assert_eq!(reply.name, "rheaReceiver_1");
    assert_eq!(reply.role, Role::Sender);
    assert_eq!(reply.handle, 0, "our lowest free handle");
    assert_eq!(reply.source, Some(Source::new("$cbs")));
    assert_eq!(
        reply.target,
        Some(Target::default()),
        "always a target, even when the peer sent none"
    );
    assert_eq!(reply.initial_delivery_count, Some(0));
    assert_eq!(reply.max_message_size, Some(1024 * 1024));
    assert_eq!(reply.snd_settle_mode, Some(SenderSettleMode::Settled));
    assert_eq!(
        peer.engine.accept_link(attached.link, LinkReply::default()),
        Err(EngineError::LinkNotPending)
    );
}

#[test]
fn a_reply_carries_the_applications_terminus_and_settings() {
    let mut peer = Peer::opened(EngineConfig::default());
    peer.begin(0);
    let mut attach = Attach::new("$cbs-sender", 0, Role::Sender);
    attach.source = Some(Source::new("$cbs"));
    attach.target = Some(Target::new("$cbs"));
    attach.initial_delivery_count = Some(0);
    attach.rcv_settle_mode = Some(ReceiverSettleMode::Second);
    let attached = peer.attach(0, attach);
    peer.engine
        .accept_link(
            attached.link,
            LinkReply {
                target: Some(Target::new("amqps://hub/$cbs")),
                rcv_settle_mode: Some(ReceiverSettleMode::First),
                max_message_size: Some(256 * 1024),
                properties: Some(vec![(Symbol::from("k"), Value::from("v"))]),
                ..LinkReply::default()
            },
        )
        .unwrap();
    let [(_, Performative::Attach(reply))] = &peer.performatives()[..] else {
        panic!("expected our attach");
    };
    assert_eq!(reply.role, Role::Receiver);
    assert_eq!(reply.source, Some(Source::new("$cbs")));
    assert_eq!(reply.target, Some(Target::new("amqps://hub/$cbs")));
    assert_eq!(reply.initial_delivery_count, None, "only the sender sends one");
    assert_eq!(reply.rcv_settle_mode, Some(ReceiverSettleMode::First));
    assert_eq!(reply.max_message_size, Some(256 * 1024));
    assert!(reply.properties.is_some());
}

#[test]
fn a_rejected_link_is_attached_then_detached_with_the_error() {
    let mut peer = Peer::opened(EngineConfig::default());
    peer.begin(0);
    let mut attach = Attach::new("c2d", 4, Role::Receiver);
    attach.source = Some(Source::new("/devices/other/messages/devicebound"));
    let attached = peer.attach(0, attach);
    peer.engine
        .reject_link(
            attached.link,
            Error::new(condition::UNAUTHORIZED_ACCESS, "not yours"),
        )
        .unwrap();
    let performatives = peer.performatives();
    let [
        (_, Performative::Attach(reply)),
        (_, Performative::Detach(detach)),
    ] = &performatives[..]
    else {
        panic!("expected attach then detach, got {performatives:?}");
    };
    assert_eq!(
        reply.source,
        Some(Source::new("/devices/other/messages/devicebound"))
    );
    assert!(reply.target.is_some());
    assert_eq!(detach.handle, reply.handle);
    assert!(detach.closed);
    assert_eq!(
        detach.error.as_ref().unwrap().condition.as_str(),
        condition::UNAUTHORIZED_ACCESS
    );
    // The peer's detach is absorbed, and its handle can be reused.
    peer.send(
        0,
        Detach {
            handle: 4,
            closed: true,
            error: None,
        },
    );
    assert!(peer.performatives().is_empty());
    assert!(peer.events().is_empty());
    let again = peer.attach(0, Attach::new("c2d", 4, Role::Receiver));
    assert_ne!(again.link, attached.link);
}

#[test]
fn the_app_can_detach_a_link_as_stolen() {
    let mut peer = Peer::opened(EngineConfig::default());
    peer.begin(0);
    let (link, handle) = peer.receiver_link(0, 2, "hub/ConsumerGroups/$default/Partitions/0");
    peer.engine
        .detach_link(
            link,
            Some(Error::new(condition::STOLEN, "a higher epoch attached")),
        )
        .unwrap();
    let [(_, Performative::Detach(detach))] = &peer.performatives()[..] else {
        panic!("expected detach");
    };
    assert_eq!(detach.handle, handle);
    assert!(detach.closed);
    assert_eq!(
        detach.error.as_ref().unwrap().condition.as_str(),
        condition::STOLEN
    );
    assert_eq!(peer.engine.detach_link(link, None), Err(EngineError::UnknownLink));
    assert_eq!(peer.engine.send(link, b"x", true), Err(EngineError::UnknownLink));
    peer.send(
        0,
        Detach {
            handle: 2,
            closed: true,
            error: None,
        },
    );
    assert!(
        peer.events().is_empty(),
        "the answer to our detach is not an event"
    );
    assert!(peer.engine.link_credit(link).is_none());
}

#[test]
fn a_redirect_detach_carries_the_info_map() {
    let mut peer = Peer::opened(EngineConfig::default());
    peer.begin(0);
    let (link, _) = peer.sender_link(0, 0, "amqps://hub.local/messages/events/$management");
    let info = vec![
        (Symbol::from("hostname"), Value::from("localhost")),
        (Symbol::from("network-host"), Value::from("localhost")),
        (Symbol::from("port"), Value::Int(5671)),
        (
            Symbol::from("address"),
            Value::from("amqps://localhost:5671/hub/$management"),
        ),
    ];
    let error = Error {
        condition: condition::LINK_REDIRECT.into(),
        description: Some("use the event hubs endpoint".into()),
        info: Some(info.clone()),
    };
    peer.engine.detach_link(link, Some(error.clone())).unwrap();
    let [(_, Performative::Detach(detach))] = &peer.performatives()[..] else {
        panic!("expected detach");
    };
    assert_eq!(detach.error.as_ref(), Some(&error));
}

#[test]
fn a_pending_link_detached_by_the_app_is_attached_first() {
    let mut peer = Peer::opened(EngineConfig::default());
    peer.begin(0);
    let attached = peer.attach(0, Attach::new("l", 0, Role::Sender));
    peer.engine.detach_link(attached.link, None).unwrap();
    let performatives = peer.performatives();
    assert!(matches!(
        performatives[..],
        [(_, Performative::Attach(_)), (_, Performative::Detach(_))]
    ));
}

#[test]
fn a_peer_detach_is_answered_and_reported() {
    let mut peer = Peer::opened(EngineConfig::default());
    peer.begin(0);
    let (link, handle) = peer.sender_link(0, 5, "/devices/dev1/messages/events");
    peer.send(
        0,
        Detach {
            handle: 5,
            closed: true,
            error: Some(Error::new(condition::DETACH_FORCED, "bye")),
        },
    );
    let [(_, Performative::Detach(reply))] = &peer.performatives()[..] else {
        panic!("expected our detach");
    };
    assert_eq!(reply.handle, handle);
    assert!(reply.closed);
    assert_eq!(reply.error, None);
    let [
        Event::LinkDetached {
            link: detached,
            closed: true,
            error: Some(_),
            by_peer: true,
        },
    ] = peer.events()[..]
    else {
        panic!("expected LinkDetached");
    };
    assert_eq!(detached, link);
    // A detach of a pending link: our attach first, then our detach.
    let attached = peer.attach(0, Attach::new("p", 6, Role::Receiver));
    peer.send(
        0,
        Detach {
            handle: 6,
            closed: false,
            error: None,
        },
    );
    let performatives = peer.performatives();
    let [(_, Performative::Attach(_)), (_, Performative::Detach(reply))] = &performatives[..] else {
        panic!("expected attach then detach, got {performatives:?}");
    };
    assert!(!reply.closed, "closed is echoed");
    assert!(matches!(
        peer.events()[..],
        [Event::LinkDetached { by_peer: true, .. }]
    ));
    assert_eq!(
        peer.engine.accept_link(attached.link, LinkReply::default()),
        Err(EngineError::UnknownLink)
    );
}

#[test]
fn a_session_end_detaches_its_links() {
    let mut peer = Peer::opened(EngineConfig::default());
    let (session, _) = peer.begin(0);
    let (first, _) = peer.sender_link(0, 0, "a");
    let (second, _) = peer.receiver_link(0, 1, "b");
    peer.send(0, crate::performatives::End::default());
    peer.performatives();
    let events = peer.events();
    assert_eq!(events.len(), 3, "{events:?}");
    let detached: Vec<_> = events
        .iter()
        .filter_map(|event| match event {
            Event::LinkDetached {
                link, by_peer: true, ..
            } => Some(*link),
            _ => None,
        })
        .collect();
    assert!(detached.contains(&first) && detached.contains(&second));
    assert!(matches!(events[2], Event::SessionEnded { session: ended, .. } if ended == session));
    assert_eq!(peer.engine.grant_credit(first, 1), Err(EngineError::UnknownLink));
}

#[test]
fn handles_in_use_or_above_handle_max_close_the_connection() {
    let mut peer = Peer::opened(EngineConfig::default());
    peer.begin(0);
    peer.attach(0, Attach::new("a", 3, Role::Sender));
    peer.send(0, Attach::new("b", 3, Role::Sender));
    assert_eq!(peer.closed_with(), condition::HANDLE_IN_USE);

    let mut peer = Peer::opened(EngineConfig::default());
    peer.begin(0);
    peer.send(0, Attach::new("a", 256, Role::Sender));
    assert_eq!(peer.closed_with(), condition::NOT_ALLOWED);
}

#[test]
fn detach_of_an_unknown_handle_closes_with_unattached_handle() {
    let mut peer = Peer::opened(EngineConfig::default());
    peer.begin(0);
    peer.send(0, Detach::default());
    assert_eq!(peer.closed_with(), condition::UNATTACHED_HANDLE);
}
