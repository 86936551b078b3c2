//! Credit, transfers both ways, settlement, drain and the session windows.

use bytes::Bytes;

use super::{Peer, transfer};
use crate::definitions::{DeliveryState, Error, ReceiverSettleMode, Role, Source, Target, condition};
use crate::engine::{DeliveryId, EngineConfig, EngineError, Event, LinkReply};
use crate::frame::FrameBody;
use crate::message::{Body, Message};
use crate::performatives::{Attach, Disposition, Flow, Performative};

#[test]
fn granted_credit_lets_messages_in_and_settlements_are_batched() {
    let mut peer = Peer::opened(EngineConfig::default());
    peer.begin(0);
    let (link, handle) = peer.sender_link(0, 0, "/devices/dev1/messages/events");
    peer.engine.grant_credit(link, 10).unwrap();
    let [(0, Performative::Flow(flow))] = &peer.performatives()[..] else {
        panic!("expected a flow");
    };
    assert_eq!(flow.handle, Some(handle));
    assert_eq!(flow.link_credit, Some(10));
    assert_eq!(flow.delivery_count, Some(0));
    assert_eq!(flow.next_incoming_id, Some(0));
    assert_eq!(flow.incoming_window, 5000);

    // One message in one frame.
    let message = Message {
        body: Body::Data(vec![Bytes::from_static(b"hello")]),
        ..Message::default()
    };
    let mut encoded = bytes::BytesMut::new();
    message.encode(&mut encoded);
    let message = encoded.freeze();
    peer.send_transfer(0, &transfer(0, 0), &message, 65536);
    let [Event::Delivery(delivery)] = &peer.events()[..] else {
        panic!("expected a delivery");
    };
    assert_eq!(delivery.link, link);
    assert_eq!(delivery.delivery_id, DeliveryId(0));
    assert_eq!(&delivery.delivery_tag[..], [0, 0, 0, 0]);
    assert!(!delivery.settled);
    assert_eq!(delivery.message, message);
    assert!(Message::decode(delivery.message.clone()).is_ok());

    // One message over three frames.
    let big: Vec<u8> = (0..1200).map(|i| (i % 251) as u8).collect();
    let frames = peer.send_transfer(0, &transfer(0, 1), &big, 512);
    assert_eq!(frames, 3);
    let [Event::Delivery(delivery)] = &peer.events()[..] else {
        panic!("expected one delivery for three frames");
    };
    assert_eq!(delivery.delivery_id, DeliveryId(1));
    assert_eq!(&delivery.message[..], &big[..]);
    assert_eq!(peer.engine.link_credit(link), Some(8));

    peer.engine
        .settle(link, DeliveryId(0), DeliveryState::Accepted)
        .unwrap();
    peer.engine
        .settle(link, DeliveryId(1), DeliveryState::Accepted)
        .unwrap();
    let [(0, Performative::Disposition(disposition))] = &peer.performatives()[..] else {
        panic!("expected one disposition");
    };
    assert_eq!(
        *disposition,
        Disposition {
            role: Role::Receiver,
            first: 0,
            last: Some(1),
            settled: true,
            state: Some(DeliveryState::Accepted),
            batchable: false,
        }
    );
    assert_eq!(
        peer.engine.settle(link, DeliveryId(1), DeliveryState::Accepted),
        Err(EngineError::UnknownDelivery)
    );
}

#[test]
fn different_outcomes_make_separate_dispositions() {
    let mut peer = Peer::opened(EngineConfig::default());
    peer.begin(0);
    let (link, _) = peer.sender_link(0, 0, "/messages/devicebound");
    peer.engine.grant_credit(link, 3).unwrap();
    peer.performatives();
    for id in 0..3 {
        peer.send_transfer(0, &transfer(0, id), b"m", 65536);
    }
    peer.events();
    let rejected = DeliveryState::Rejected {
        error: Some(Error::new(condition::NOT_FOUND, "no such device")),
    };
    peer.engine
        .settle(link, DeliveryId(0), DeliveryState::Accepted)
        .unwrap();
    peer.engine.settle(link, DeliveryId(1), rejected.clone()).unwrap();
    peer.engine
        .settle(link, DeliveryId(2), DeliveryState::Released)
        .unwrap();
    let states: Vec<_> = peer
        .performatives()
        .into_iter()
        .map(|(_, performative)| match performative {
            Performative::Disposition(disposition) => (disposition.first, disposition.state.unwrap()),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(
        states,
        [
            (0, DeliveryState::Accepted),
            (1, rejected),
            (2, DeliveryState::Released)
        ]
    );
}

#[test]
fn settled_transfers_need_no_settlement() {
    let mut peer = Peer::opened(EngineConfig::default());
    peer.begin(0);
    let (link, _) = peer.sender_link(0, 0, "/devices/dev1/twin");
    peer.engine.grant_credit(link, 1).unwrap();
    peer.performatives();
    let mut settled = transfer(0, 0);
    settled.settled = Some(true);
    peer.send_transfer(0, &settled, b"x", 65536);
    let [Event::Delivery(delivery)] = &peer.events()[..] else {
        panic!("expected a delivery");
    };
    assert!(delivery.settled);
    assert_eq!(
        peer.engine.settle(link, DeliveryId(0), DeliveryState::Accepted),
        Err(EngineError::UnknownDelivery)
    );
}

#[test]
fn receiver_settle_mode_second_waits_for_the_senders_settlement() {
    let mut peer = Peer::opened(EngineConfig::default());
    peer.begin(0);
    // uamqp's C2D sender: rcv-settle-mode second.
    let mut attach = Attach::new("c2d-sender", 0, Role::Sender);
    attach.target = Some(Target::new("amqps://localhost/messages/devicebound"));
    attach.source = Some(Source::new("container"));
    attach.initial_delivery_count = Some(0);
    attach.rcv_settle_mode = Some(ReceiverSettleMode::Second);
    let attached = peer.attach(0, attach);
    peer.engine
        .accept_link(attached.link, LinkReply::default())
        .unwrap();
    peer.engine.grant_credit(attached.link, 1).unwrap();
    peer.performatives();
    peer.send_transfer(0, &transfer(0, 0), b"c2d", 65536);
    peer.events();
    peer.engine
        .settle(attached.link, DeliveryId(0), DeliveryState::Accepted)
        .unwrap();
    let [(_, Performative::Disposition(disposition))] = &peer.performatives()[..] else {
        panic!("expected a disposition");
    };
    assert!(!disposition.settled);
    assert_eq!(
        peer.engine
            .settle(attached.link, DeliveryId(0), DeliveryState::Accepted),
        Err(EngineError::UnknownDelivery)
    );
    peer.send(
        0,
        Disposition {
            role: Role::Sender,
            first: 0,
            last: None,
            settled: true,
            state: Some(DeliveryState::Accepted),
            batchable: false,
        },
    );
    assert!(peer.performatives().is_empty());
}

#[test]
fn the_hub_sends_only_with_credit_and_learns_outcomes() {
    let mut peer = Peer::opened(EngineConfig::default());
    peer.begin(0);
    let (link, handle) = peer.receiver_link(0, 0, "/devices/dev1/messages/devicebound");
    assert_eq!(
        peer.engine.send(link, b"early", false),
        Err(EngineError::NoCredit)
    );
    peer.flow(0, 0, Some(0), 2, false);
    assert!(matches!(
        peer.events()[..],
        [Event::CreditAvailable {
            credit: 2,
            drain: false,
            ..
        }]
    ));
    assert_eq!(peer.engine.send(link, b"one", false), Ok(DeliveryId(0)));
    assert_eq!(peer.engine.send(link, b"two", true), Ok(DeliveryId(1)));
    assert_eq!(
        peer.engine.send(link, b"three", false),
        Err(EngineError::NoCredit)
    );
    let frames = peer.frames();
    let transfers: Vec<_> = frames
        .iter()
        .map(|(_, body)| match body {
            FrameBody::Amqp {
                performative: Performative::Transfer(transfer),
                payload,
            } => (transfer.clone(), payload.clone()),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(transfers.len(), 2);
    assert_eq!(transfers[0].0.handle, handle);
    assert_eq!(transfers[0].0.delivery_id, Some(0));
    assert_eq!(transfers[0].0.settled, Some(false));
    assert_eq!(transfers[0].0.message_format, Some(0));
    assert_eq!(&transfers[0].1[..], b"one");
    assert_eq!(transfers[1].0.settled, Some(true));

    // The peer accepts delivery 0 (and names the settled 1, which is ignored).
    peer.send(
        0,
        Disposition {
            role: Role::Receiver,
            first: 0,
            last: Some(1),
            settled: true,
            state: Some(DeliveryState::Accepted),
            batchable: false,
        },
    );
    let [
        Event::Settled {
            link: settled_link,
            delivery_id: DeliveryId(0),
            state: Some(DeliveryState::Accepted),
            settled: true,
        },
    ] = peer.events()[..]
    else {
        panic!("expected Settled");
    };
    assert_eq!(settled_link, link);

    // More credit, expressed against the receiver's delivery count.
    peer.flow(0, 0, Some(2), 1, false);
    assert!(matches!(
        peer.events()[..],
        [Event::CreditAvailable { credit: 1, .. }]
    ));
    // A stale flow (the receiver has not seen our two transfers) gives no more than it means.
    peer.flow(0, 0, Some(0), 2, false);
    assert_eq!(peer.engine.link_credit(link), Some(0));
}

#[test]
fn drain_uses_up_the_credit_once_the_app_has_sent() {
    let mut peer = Peer::opened(EngineConfig::default());
    peer.begin(0);
    let (link, handle) = peer.receiver_link(0, 0, "hub/ConsumerGroups/$default/Partitions/0");
    peer.flow(0, 0, Some(0), 5, true);
    assert!(matches!(
        peer.events()[..],
        [Event::CreditAvailable {
            credit: 5,
            drain: true,
            ..
        }]
    ));
    peer.engine.send(link, b"event", true).unwrap();
    peer.engine.drain(link).unwrap();
    let performatives = peer.performatives();
    let [(_, Performative::Transfer(_)), (_, Performative::Flow(flow))] = &performatives[..] else {
        panic!("expected transfer then flow, got {performatives:?}");
    };
    assert_eq!(flow.handle, Some(handle));
    assert_eq!(flow.delivery_count, Some(5));
    assert_eq!(flow.link_credit, Some(0));
    assert!(flow.drain);
    assert_eq!(peer.engine.link_credit(link), Some(0));
    // Draining again is a no-op.
    peer.engine.drain(link).unwrap();
    assert!(peer.performatives().is_empty());

    // Drain with no credit left: answered at once.
    peer.flow(0, 0, Some(5), 0, true);
    let [(_, Performative::Flow(flow))] = &peer.performatives()[..] else {
        panic!("expected a flow");
    };
    assert_eq!(flow.delivery_count, Some(5));
    assert!(peer.events().is_empty());
}

#[test]
fn sending_the_last_credit_in_drain_mode_tells_the_peer() {
    let mut peer = Peer::opened(EngineConfig::default());
    peer.begin(0);
    let (link, _) = peer.receiver_link(0, 0, "q");
    peer.flow(0, 0, Some(0), 1, true);
    peer.events();
    peer.engine.send(link, b"last", false).unwrap();
    let performatives = peer.performatives();
    assert!(
        matches!(
            performatives[..],
            [
                (_, Performative::Transfer(_)),
                (
                    _,
                    Performative::Flow(Flow {
                        link_credit: Some(0),
                        drain: true,
                        ..
                    })
                )
            ]
        ),
        "{performatives:?}"
    );
}

#[test]
fn credit_given_before_the_accept_is_reported_on_accept() {
    let mut peer = Peer::opened(EngineConfig::default());
    peer.begin(0);
    let mut attach = Attach::new("r", 0, Role::Receiver);
    attach.source = Some(Source::new("$cbs"));
    let attached = peer.attach(0, attach);
    // rhea pipelines its flow right after its attach.
    peer.flow(0, 0, None, 10, false);
    assert!(peer.events().is_empty());
    peer.engine
        .accept_link(attached.link, LinkReply::default())
        .unwrap();
    assert!(matches!(
        peer.events()[..],
        [Event::CreditAvailable { credit: 10, .. }]
    ));
}

#[test]
fn large_messages_are_split_to_the_negotiated_frame_size() {
    let mut peer = Peer::new(EngineConfig::default());
    peer.write(&crate::frame::ProtocolId::Amqp.header());
    let mut open = crate::performatives::Open::new("c");
    open.max_frame_size = Some(512);
    peer.send(0, open);
    peer.read_header();
    peer.frames();
    peer.events();
    peer.begin(0);
    let (link, _) = peer.receiver_link(0, 0, "q");
    peer.flow(0, 0, Some(0), 1, false);
    let message = vec![7_u8; 2000];
    peer.engine.send(link, &message, false).unwrap();
    let mut reassembled = Vec::new();
    let frames = peer.frames();
    assert!(frames.len() >= 4);
    for (index, (_, body)) in frames.iter().enumerate() {
        let FrameBody::Amqp {
            performative: Performative::Transfer(transfer),
            payload,
        } = body
        else {
            panic!("expected transfers");
        };
        assert_eq!(transfer.more, index + 1 < frames.len());
        reassembled.extend_from_slice(payload);
    }
    assert_eq!(reassembled, message);
}

#[test]
fn the_peers_session_window_limits_sends_until_it_reopens() {
    let mut peer = Peer::opened(EngineConfig::default());
    peer.send(
        0,
        crate::performatives::Begin {
            next_outgoing_id: 0,
            incoming_window: 1,
            outgoing_window: 100,
            ..Default::default()
        },
    );
    peer.performatives();
    peer.events();
    let (link, _) = peer.receiver_link(0, 0, "q");
    peer.send(
        0,
        Flow {
            next_incoming_id: Some(0),
            incoming_window: 1,
            next_outgoing_id: 0,
            outgoing_window: 100,
            handle: Some(0),
            delivery_count: Some(0),
            link_credit: Some(5),
            ..Flow::default()
        },
    );
    peer.events();
    peer.engine.send(link, b"a", true).unwrap();
    assert_eq!(
        peer.engine.send(link, b"b", true),
        Err(EngineError::SessionWindowFull)
    );
    assert_eq!(peer.performatives().len(), 1);
    // A session flow opens the window: the link with credit hears about it.
    peer.send(
        0,
        Flow {
            next_incoming_id: Some(1),
            incoming_window: 10,
            next_outgoing_id: 0,
            outgoing_window: 100,
            echo: true,
            ..Flow::default()
        },
    );
    assert!(matches!(
        peer.events()[..],
        [Event::CreditAvailable { credit: 4, .. }]
    ));
    let [(_, Performative::Flow(echo))] = &peer.performatives()[..] else {
        panic!("expected our flow answering the echo");
    };
    assert_eq!(echo.handle, None);
    assert_eq!(echo.next_outgoing_id, 1);
    peer.engine.send(link, b"b", true).unwrap();
}

#[test]
fn our_incoming_window_is_topped_up() {
    let mut peer = Peer::opened(EngineConfig {
        session_window: 4,
        ..EngineConfig::default()
    });
    peer.begin(0);
    let (link, _) = peer.sender_link(0, 0, "t");
    peer.engine.grant_credit(link, 100).unwrap();
    peer.performatives();
    let mut settled = transfer(0, 0);
    settled.settled = Some(true);
    for id in 0..10 {
        settled.delivery_id = Some(id);
        peer.send_transfer(0, &settled, b"x", 65536);
    }
    let flows = peer.performatives();
    assert!(!flows.is_empty());
    assert!(flows.iter().all(|(_, p)| matches!(
        p,
        Performative::Flow(Flow {
            handle: None,
            incoming_window: 4,
            ..
        })
    )));
    assert_eq!(peer.events().len(), 10);
    assert!(!peer.engine.is_closed());
}

#[test]
fn an_echo_on_a_link_flow_is_answered() {
    let mut peer = Peer::opened(EngineConfig::default());
    peer.begin(0);
    let (link, handle) = peer.sender_link(0, 0, "t");
    peer.engine.grant_credit(link, 3).unwrap();
    peer.performatives();
    peer.send(
        0,
        Flow {
            next_incoming_id: Some(0),
            incoming_window: 100,
            next_outgoing_id: 0,
            outgoing_window: 100,
            handle: Some(0),
            delivery_count: Some(0),
            link_credit: Some(0),
            available: Some(4),
            echo: true,
            ..Flow::default()
        },
    );
    let [(_, Performative::Flow(flow))] = &peer.performatives()[..] else {
        panic!("expected our flow");
    };
    assert_eq!(flow.handle, Some(handle));
    assert_eq!(flow.link_credit, Some(3));
}
