//! Protocol violations close with the right condition; random input never panics.

use std::time::Duration;

use bytes::Bytes;
use proptest::prelude::*;

use super::{Peer, transfer};
use crate::definitions::{DeliveryState, Error, Role, condition};
use crate::engine::{DeliveryId, EngineConfig, Event, LinkId, LinkReply};
use crate::frame::ProtocolId;
use crate::performatives::{
    Attach, Begin, Close, Detach, Disposition, End, Flow, Open, Performative, Transfer,
};

#[test]
fn garbage_after_the_header_closes_with_a_framing_error() {
    let mut peer = Peer::new(EngineConfig::default());
    peer.write(&ProtocolId::Amqp.header());
    peer.read_header();
    peer.write(&[0, 0, 0, 4, 2, 0, 0, 0, 1, 2, 3]);
    let performatives = peer.performatives();
    assert!(
        matches!(performatives[0], (0, Performative::Open(_))),
        "an open precedes the close"
    );
    peer.output.clear();
    assert!(peer.engine.is_closed());
    let [
        Event::Closed {
            error: Some(error),
            by_peer: false,
        },
    ] = &peer.events()[..]
    else {
        panic!("expected Closed");
    };
    assert_eq!(error.condition.as_str(), condition::FRAMING_ERROR);
    // Whatever follows is discarded.
    peer.write(b"more garbage");
    assert!(peer.input.is_empty());
    assert!(peer.frames().is_empty());
}

#[test]
fn frames_before_the_open_are_illegal() {
    let mut peer = Peer::new(EngineConfig::default());
    peer.write(&ProtocolId::Amqp.header());
    peer.read_header();
    peer.send(0, Begin::default());
    assert_eq!(peer.closed_with(), condition::ILLEGAL_STATE);
}

#[test]
fn undecodable_frames_close_with_decode_error_or_invalid_field() {
    let mut peer = Peer::opened(EngineConfig::default());
    // A frame whose body is an empty list, not a performative.
    peer.write(&[0, 0, 0, 9, 2, 0, 0, 0, 0x45]);
    assert_eq!(peer.closed_with(), condition::DECODE_ERROR);

    let mut peer = Peer::opened(EngineConfig::default());
    // An open whose channel-max is a uint instead of a ushort.
    let body = [0x00, 0x53, 0x10, 0xc0, 8, 4, 0xa1, 1, b'c', 0x40, 0x40, 0x52, 1];
    let mut frame = vec![0, 0, 0, 8 + body.len() as u8, 2, 0, 0, 0];
    frame.extend_from_slice(&body);
    peer.write(&frame);
    assert_eq!(peer.closed_with(), condition::INVALID_FIELD);
}

#[test]
fn a_frame_above_our_max_frame_size_is_a_framing_error() {
    let mut peer = Peer::opened(EngineConfig::default());
    peer.write(&[0, 1, 0, 1, 2, 0, 0, 0]);
    assert_eq!(peer.closed_with(), condition::FRAMING_ERROR);
}

#[test]
fn a_frame_on_a_channel_without_session_is_not_allowed() {
    let mut peer = Peer::opened(EngineConfig::default());
    peer.begin(0);
    peer.send(5, Flow::default());
    assert_eq!(peer.closed_with(), condition::NOT_ALLOWED);
}

/// rhea settles deliveries that were in flight when it ended their session, after its end: those
/// frames are dropped and the connection stays up (the Node Event Hubs client saw its connection
/// closed with `amqp:not-allowed` otherwise).
#[test]
fn frames_on_a_channel_the_peer_ended_are_dropped() {
    let mut peer = Peer::opened(EngineConfig::default());
    peer.begin(3);
    let (_, handle) = peer.receiver_link(3, 0, "events");
    peer.send(3, End::default());
    assert!(matches!(&peer.performatives()[..], [(_, Performative::End(_))]));
    peer.events();
    peer.send(
        3,
        Disposition {
            role: Role::Receiver,
            first: 0,
            last: None,
            settled: true,
            state: Some(DeliveryState::Accepted),
            batchable: false,
        },
    );
    peer.flow(3, handle, Some(0), 10, false);
    assert!(!peer.engine.is_closed());
    assert!(peer.performatives().is_empty());
    // A new session may take the channel again, and a channel never begun is still a violation.
    peer.begin(3);
    peer.send(4, Flow::default());
    assert_eq!(peer.closed_with(), condition::NOT_ALLOWED);
}

/// The same for a link: a flow the peer sent before it saw the answer to its detach is dropped; a
/// handle never attached is still unattached.
#[test]
fn a_flow_on_a_handle_the_peer_detached_is_dropped() {
    let mut peer = Peer::opened(EngineConfig::default());
    peer.begin(0);
    peer.receiver_link(0, 7, "events");
    peer.send(
        0,
        Detach {
            handle: 7,
            closed: true,
            error: None,
        },
    );
    assert!(matches!(
        &peer.performatives()[..],
        [(_, Performative::Detach(_))]
    ));
    peer.flow(0, 7, Some(0), 10, false);
    peer.send(
        0,
        Detach {
            handle: 7,
            closed: true,
            error: None,
        },
    );
    assert!(!peer.engine.is_closed());
    peer.flow(0, 8, Some(0), 10, false);
    assert_eq!(peer.closed_with(), condition::UNATTACHED_HANDLE);
}

#[test]
fn a_begin_beyond_channel_max_or_naming_a_remote_channel_is_not_allowed() {
    let mut peer = Peer::opened(EngineConfig::default());
    peer.send(256, Begin::default());
    assert_eq!(peer.closed_with(), condition::NOT_ALLOWED);

    let mut peer = Peer::opened(EngineConfig::default());
    peer.send(
        0,
        Begin {
            remote_channel: Some(0),
            ..Begin::default()
        },
    );
    assert_eq!(peer.closed_with(), condition::NOT_ALLOWED);
}

#[test]
fn a_transfer_on_an_unknown_handle_is_unattached() {
    let mut peer = Peer::opened(EngineConfig::default());
    peer.begin(0);
    peer.send_transfer(0, &transfer(9, 0), b"x", 65536);
    assert_eq!(peer.closed_with(), condition::UNATTACHED_HANDLE);

    let mut peer = Peer::opened(EngineConfig::default());
    peer.begin(0);
    peer.flow(0, 9, Some(0), 1, false);
    assert_eq!(peer.closed_with(), condition::UNATTACHED_HANDLE);
}

#[test]
fn a_transfer_on_a_link_where_the_hub_sends_is_not_allowed() {
    let mut peer = Peer::opened(EngineConfig::default());
    peer.begin(0);
    peer.receiver_link(0, 0, "/devices/dev1/messages/devicebound");
    peer.send_transfer(0, &transfer(0, 0), b"x", 65536);
    assert_eq!(peer.closed_with(), condition::NOT_ALLOWED);
}

#[test]
fn a_first_transfer_without_delivery_id_is_an_invalid_field() {
    let mut peer = Peer::opened(EngineConfig::default());
    peer.begin(0);
    let (link, _) = peer.sender_link(0, 0, "t");
    peer.engine.grant_credit(link, 1).unwrap();
    peer.performatives();
    peer.send_transfer(0, &Transfer::default(), b"x", 65536);
    assert_eq!(peer.closed_with(), condition::INVALID_FIELD);
}

#[test]
fn a_message_above_the_link_limit_detaches_the_link_only() {
    let mut peer = Peer::opened(EngineConfig::default());
    peer.begin(0);
    let attached = peer.attach(0, {
        let mut attach = Attach::new("s", 0, Role::Sender);
        attach.initial_delivery_count = Some(0);
        attach
    });
    peer.engine
        .accept_link(
            attached.link,
            LinkReply {
                max_message_size: Some(1000),
                ..LinkReply::default()
            },
        )
        .unwrap();
    peer.engine.grant_credit(attached.link, 5).unwrap();
    peer.performatives();
    // 3000 bytes over frames of 512: detached on the frame that crosses 1000 bytes.
    peer.send_transfer(0, &transfer(0, 0), &[1; 3000], 512);
    let performatives = peer.performatives();
    let [(_, Performative::Detach(detach))] = &performatives[..] else {
        panic!("expected one detach, got {performatives:?}");
    };
    assert!(detach.closed);
    assert_eq!(
        detach.error.as_ref().unwrap().condition.as_str(),
        condition::MESSAGE_SIZE_EXCEEDED
    );
    let [
        Event::LinkDetached {
            link,
            closed: true,
            error: Some(_),
            by_peer: false,
        },
    ] = peer.events()[..]
    else {
        panic!("expected LinkDetached");
    };
    assert_eq!(link, attached.link);
    assert!(!peer.engine.is_closed());
    peer.send(
        0,
        Detach {
            handle: 0,
            closed: true,
            error: None,
        },
    );
    assert!(peer.performatives().is_empty());
}

#[test]
fn a_transfer_without_credit_detaches_with_transfer_limit_exceeded() {
    let mut peer = Peer::opened(EngineConfig::default());
    peer.begin(0);
    peer.sender_link(0, 0, "t");
    peer.send_transfer(0, &transfer(0, 0), b"x", 65536);
    let [(_, Performative::Detach(detach))] = &peer.performatives()[..] else {
        panic!("expected detach");
    };
    assert_eq!(
        detach.error.as_ref().unwrap().condition.as_str(),
        condition::TRANSFER_LIMIT_EXCEEDED
    );
}

#[test]
fn a_transfer_beyond_our_session_window_is_a_window_violation() {
    let mut peer = Peer::opened(EngineConfig {
        session_window: 1,
        ..EngineConfig::default()
    });
    peer.begin(0);
    let (link, _) = peer.sender_link(0, 0, "t");
    peer.engine.grant_credit(link, 5).unwrap();
    peer.performatives();
    // Window 1: half of it is 0, so it is never topped up before it runs out.
    peer.send_transfer(0, &transfer(0, 0), b"x", 65536);
    peer.send_transfer(0, &transfer(0, 1), b"x", 65536);
    assert_eq!(peer.closed_with(), condition::WINDOW_VIOLATION);
}

#[test]
fn an_aborted_delivery_is_dropped() {
    let mut peer = Peer::opened(EngineConfig::default());
    peer.begin(0);
    let (link, _) = peer.sender_link(0, 0, "t");
    peer.engine.grant_credit(link, 2).unwrap();
    peer.performatives();
    let mut first = transfer(0, 0);
    first.more = true;
    peer.send_transfer(0, &first, b"part", 65536);
    let mut abort = Transfer {
        handle: 0,
        aborted: true,
        ..Transfer::default()
    };
    abort.delivery_id = Some(0);
    peer.send_transfer(0, &abort, b"", 65536);
    assert!(peer.events().is_empty());
    peer.send_transfer(0, &transfer(0, 1), b"whole", 65536);
    let [Event::Delivery(delivery)] = &peer.events()[..] else {
        panic!("expected a delivery");
    };
    assert_eq!(&delivery.message[..], b"whole");
}

/// One step of a random conversation: a frame from the peer, a call from the application, or time.
#[derive(Clone, Debug)]
enum Step {
    Frame(u16, Performative, Vec<u8>),
    Bytes(Vec<u8>),
    Grant(u64, u32),
    Send(u64, usize, bool),
    Settle(u64, u32),
    Accept(u64),
    Detach(u64),
    Close,
    Advance(u64),
}

fn performative() -> impl Strategy<Value = (u16, Performative, Vec<u8>)> {
    // Mostly the session's channel and the prefix's handles, so that sequences get somewhere.
    let channel = prop_oneof![20 => Just(0_u16), 1 => 1_u16..3];
    let handle = prop_oneof![6 => 0_u32..2, 1 => 0_u32..4];
    let number = prop_oneof![0_u32..4, any::<u32>()];
    let begin =
        (channel.clone(), proptest::option::of(0_u16..2), number.clone()).prop_map(|(c, remote, window)| {
            let begin = Begin {
                remote_channel: remote,
                next_outgoing_id: 0,
                incoming_window: window,
                outgoing_window: window,
                handle_max: Some(3),
                ..Begin::default()
            };
            (c, begin.into(), Vec::new())
        });
    let attach = (channel.clone(), handle.clone(), any::<bool>()).prop_map(|(c, h, sender)| {
        let role = if sender { Role::Sender } else { Role::Receiver };
        let mut attach = Attach::new(format!("l{h}"), h, role);
        attach.initial_delivery_count = Some(0);
        attach.max_message_size = Some(600);
        (c, attach.into(), Vec::new())
    });
    let flow = (
        channel.clone(),
        proptest::option::of(handle.clone()),
        number.clone(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(c, h, credit, drain, echo)| {
            let flow = Flow {
                next_incoming_id: Some(0),
                incoming_window: credit,
                next_outgoing_id: 0,
                outgoing_window: 10,
                handle: h,
                delivery_count: h.map(|_| 0),
                link_credit: Some(credit),
                drain,
                echo,
                ..Flow::default()
            };
            (c, flow.into(), Vec::new())
        });
    let transfer = (
        channel.clone(),
        prop_oneof![8 => Just(0_u32), 1 => 0_u32..4],
        prop_oneof![9 => (0_u32..4).prop_map(Some), 1 => Just(None)],
        any::<bool>(),
        prop_oneof![9 => Just(false), 1 => Just(true)],
        proptest::collection::vec(any::<u8>(), 0..700),
    )
        .prop_map(|(c, h, id, more, aborted, payload)| {
            let transfer = Transfer {
                handle: h,
                delivery_id: id,
                delivery_tag: id.map(|id| Bytes::copy_from_slice(&id.to_be_bytes())),
                more,
                aborted,
                ..Transfer::default()
            };
            (c, transfer.into(), payload)
        });
    let disposition = (
        channel.clone(),
        any::<bool>(),
        number.clone(),
        proptest::option::of(number),
        any::<bool>(),
    )
        .prop_map(|(c, receiver, first, last, settled)| {
            let disposition = Disposition {
                role: if receiver { Role::Receiver } else { Role::Sender },
                first,
                last,
                settled,
                state: Some(DeliveryState::Accepted),
                batchable: false,
            };
            (c, disposition.into(), Vec::new())
        });
    let detach = (channel.clone(), handle, any::<bool>()).prop_map(|(c, h, closed)| {
        let detach = Detach {
            handle: h,
            closed,
            error: None,
        };
        (c, detach.into(), Vec::new())
    });
    prop_oneof![
        1 => begin,
        2 => attach,
        8 => flow,
        16 => transfer,
        6 => disposition,
        2 => detach,
        1 => channel.prop_map(|c| (c, End::default().into(), Vec::new())),
        1 => Just((0, Close::default().into(), Vec::new())),
        1 => Just((0, Open::new("again").into(), Vec::new())),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    // The prefix's links are 2 and 3; later attaches get higher ids.
    let link = prop_oneof![4 => 2_u64..4, 1 => 0_u64..12];
    prop_oneof![
        12 => performative().prop_map(|(c, p, payload)| Step::Frame(c, p, payload)),
        1 => proptest::collection::vec(any::<u8>(), 0..40).prop_map(Step::Bytes),
        3 => (link.clone(), 0_u32..5).prop_map(|(l, n)| Step::Grant(l, n)),
        3 => (link.clone(), 0_usize..2000, any::<bool>()).prop_map(|(l, n, s)| Step::Send(l, n, s)),
        3 => (link.clone(), 0_u32..4).prop_map(|(l, id)| Step::Settle(l, id)),
        1 => link.clone().prop_map(Step::Accept),
        1 => link.prop_map(Step::Detach),
        1 => Just(Step::Close),
        1 => (0_u64..300_000).prop_map(Step::Advance),
    ]
}

/// A session (1), a link where the peer sends (2, with credit 3) and one where it receives (3, with
/// credit 3).
fn prefix() -> Vec<Step> {
    let mut sender = Attach::new("s", 0, Role::Sender);
    sender.initial_delivery_count = Some(0);
    sender.max_message_size = Some(600);
    let begin = Begin {
        incoming_window: 10,
        outgoing_window: 10,
        ..Begin::default()
    };
    let flow = Flow {
        next_incoming_id: Some(0),
        incoming_window: 10,
        outgoing_window: 10,
        handle: Some(1),
        delivery_count: Some(0),
        link_credit: Some(3),
        ..Flow::default()
    };
    vec![
        Step::Frame(0, begin.into(), Vec::new()),
        Step::Frame(0, sender.into(), Vec::new()),
        Step::Frame(0, Attach::new("r", 1, Role::Receiver).into(), Vec::new()),
        Step::Accept(2),
        Step::Accept(3),
        Step::Grant(2, 3),
        Step::Frame(0, flow.into(), Vec::new()),
    ]
}

/// Runs `steps` against an opened engine; checks its output always decodes and `Closed` comes last.
fn run(steps: Vec<Step>) {
    let mut peer = Peer::opened(EngineConfig {
        idle_timeout: Duration::from_secs(60),
        ..EngineConfig::default()
    });
    let mut closed_events = 0;
    for step in steps {
        match step {
            Step::Frame(channel, performative, payload) => {
                let mut buf = bytes::BytesMut::new();
                crate::frame::encode_amqp_frame(&mut buf, channel, &performative, &payload);
                peer.write(&buf);
            }
            Step::Bytes(bytes) => peer.write(&bytes),
            Step::Grant(link, n) => {
                let _ = peer.engine.grant_credit(LinkId(link), n);
            }
            Step::Send(link, size, settled) => {
                let _ = peer.engine.send(LinkId(link), &vec![0xab; size], settled);
            }
            Step::Settle(link, id) => {
                let _ = peer
                    .engine
                    .settle(LinkId(link), DeliveryId(id), DeliveryState::Released);
            }
            Step::Accept(link) => {
                let _ = peer.engine.accept_link(LinkId(link), LinkReply::default());
            }
            Step::Detach(link) => {
                let _ = peer
                    .engine
                    .detach_link(LinkId(link), Some(Error::new(condition::STOLEN, "x")));
            }
            Step::Close => peer.engine.close(None),
            Step::Advance(millis) => peer.advance(Duration::from_millis(millis)),
        }
        // Whatever the engine writes is well-formed frames.
        peer.frames();
        for event in peer.events() {
            assert_eq!(closed_events, 0, "an event after Closed: {event:?}");
            if matches!(event, Event::Closed { .. }) {
                closed_events += 1;
            }
        }
        assert_eq!(closed_events == 1, peer.engine.is_closed());
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn random_frame_sequences_never_panic(
        steps in proptest::collection::vec(step(), 0..60),
    ) {
        let mut prefix = prefix();
        prefix.extend(steps);
        run(prefix);
    }

    #[test]
    fn random_bytes_after_the_open_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let mut peer = Peer::opened(EngineConfig::default());
        peer.begin(0);
        peer.write(&bytes);
        peer.pull();
        peer.events();
    }

    #[test]
    fn random_bytes_from_the_start_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let mut peer = Peer::new(EngineConfig::default());
        let mut with_header = ProtocolId::Sasl.header().to_vec();
        with_header.extend_from_slice(&bytes);
        peer.write(&with_header);
        let _ = peer.engine.sasl_outcome(true);
        peer.write(&bytes);
        peer.pull();
    }
}
