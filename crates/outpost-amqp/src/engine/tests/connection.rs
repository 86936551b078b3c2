//! Headers, SASL, open, begin/end, close and the idle timeout.

use std::time::Duration;

use bytes::Bytes;

use super::Peer;
use crate::definitions::{Error, condition};
use crate::engine::{EngineConfig, EngineError, Event, PlainCredentials};
use crate::frame::{FrameBody, ProtocolId};
use crate::performatives::{Begin, Close, End, Open, Performative};
use crate::sasl::{SaslCode, SaslFrame, SaslInit};
use crate::value::{Symbol, Value};

#[test]
fn bare_amqp_header_and_open_get_our_header_and_an_explicit_open() {
    let mut peer = Peer::new(EngineConfig::default());
    // rhea: AMQP header and a compact open, in one write.
    let mut open = Open::new("rhea-container");
    open.hostname = Some("hub.local".into());
    open.max_frame_size = Some(4096);
    open.idle_time_out = Some(60_000);
    open.properties = Some(vec![(Symbol::from("product"), Value::from("rhea"))]);
    let mut bytes = ProtocolId::Amqp.header().to_vec();
    let mut frame = bytes::BytesMut::new();
    crate::frame::encode_amqp_frame(&mut frame, 0, &open.clone().into(), &[]);
    bytes.extend_from_slice(&frame);
    peer.write(&bytes);

    assert_eq!(peer.read_header(), *b"AMQP\x00\x01\x00\x00");
    let [(0, Performative::Open(ours))] = &peer.performatives()[..] else {
        panic!("expected our open");
    };
    assert_eq!(ours.container_id, "outpost");
    assert_eq!(ours.max_frame_size, Some(65536));
    assert_eq!(ours.channel_max, Some(255));
    assert_eq!(ours.idle_time_out, Some(240_000));
    assert_eq!(peer.engine.max_frame_size(), 4096, "min of ours and the peer's");
    let [Event::Opened(opened)] = &peer.events()[..] else {
        panic!("expected Opened");
    };
    assert_eq!(opened.container_id, "rhea-container");
    assert_eq!(opened.hostname.as_deref(), Some("hub.local"));
    assert_eq!(opened.max_frame_size, 4096);
    assert_eq!(opened.channel_max, u16::MAX);
    assert_eq!(opened.idle_time_out, Some(60_000));
    assert_eq!(opened.properties, open.properties);
    assert!(peer.engine.sasl().is_none());
    assert!(!peer.engine.is_closed());
}

#[test]
fn a_tiny_peer_max_frame_size_is_raised_to_512() {
    let mut peer = Peer::new(EngineConfig::default());
    peer.write(&ProtocolId::Amqp.header());
    let mut open = Open::new("c");
    open.max_frame_size = Some(100);
    peer.send(0, open);
    assert_eq!(peer.engine.max_frame_size(), 512);
}

/// Runs the SASL exchange with `init`; returns the peer after the outcome.
fn sasl_peer(init: SaslInit) -> Peer {
    let mut peer = Peer::new(EngineConfig::default());
    peer.write(&ProtocolId::Sasl.header());
    assert_eq!(peer.read_header(), *b"AMQP\x03\x01\x00\x00");
    let [SaslFrame::Mechanisms(mechanisms)] = &peer.sasl_frames()[..] else {
        panic!("expected sasl-mechanisms");
    };
    let offered: Vec<&str> = mechanisms
        .sasl_server_mechanisms
        .iter()
        .map(Symbol::as_str)
        .collect();
    assert_eq!(offered, ["ANONYMOUS", "PLAIN", "MSSBCBS", "EXTERNAL"]);
    peer.send_sasl(&SaslFrame::Init(init.clone()));
    let [Event::SaslInit(authentication)] = &peer.events()[..] else {
        panic!("expected SaslInit");
    };
    assert_eq!(authentication.mechanism, init.mechanism);
    assert_eq!(authentication.initial_response, init.initial_response);
    assert_eq!(authentication.hostname, init.hostname);
    assert!(peer.frames().is_empty(), "the outcome waits for the application");
    peer
}

#[test]
fn sasl_anonymous_mssbcbs_and_plain_succeed_then_amqp_follows() {
    let inits = [
        ("ANONYMOUS", None),
        ("MSSBCBS", Some(Bytes::new())),
        (
            "PLAIN",
            Some(Bytes::from_static(
                b"\0iothubowner@sas.root.hub\0SharedAccessSignature sr=x",
            )),
        ),
    ];
    for (mechanism, initial_response) in inits {
        let mut peer = sasl_peer(SaslInit {
            mechanism: mechanism.into(),
            initial_response,
            hostname: Some("hub.local".into()),
        });
        // The AMQP header may already be in flight: it waits for the outcome.
        peer.write(&ProtocolId::Amqp.header());
        assert!(peer.frames().is_empty());
        peer.engine.sasl_outcome(true).unwrap();
        let [SaslFrame::Outcome(outcome)] = &peer.sasl_frames()[..] else {
            panic!("expected sasl-outcome");
        };
        assert_eq!(outcome.code, SaslCode::Ok);
        peer.write(&[]);
        assert_eq!(peer.read_header(), ProtocolId::Amqp.header());
        peer.send(0, Open::new("py"));
        assert!(matches!(peer.performatives()[..], [(0, Performative::Open(_))]));
        assert_eq!(peer.engine.sasl().unwrap().mechanism.as_str(), mechanism);
        assert_eq!(peer.engine.sasl_outcome(true), Err(EngineError::NoSaslPending));
    }
}

#[test]
fn plain_credentials_are_split() {
    let peer = sasl_peer(SaslInit {
        mechanism: "PLAIN".into(),
        initial_response: Some(Bytes::from_static(b"\0user@sas.root.hub\0token")),
        hostname: None,
    });
    assert_eq!(
        peer.engine.sasl().unwrap().plain(),
        Some(PlainCredentials {
            authzid: "",
            username: "user@sas.root.hub",
            password: "token"
        })
    );
}

#[test]
fn an_unknown_mechanism_gets_outcome_auth_and_the_connection_ends() {
    let mut peer = Peer::new(EngineConfig::default());
    peer.write(&ProtocolId::Sasl.header());
    peer.read_header();
    peer.sasl_frames();
    peer.send_sasl(&SaslFrame::Init(SaslInit {
        mechanism: "SCRAM-SHA-1".into(),
        initial_response: None,
        hostname: None,
    }));
    let [SaslFrame::Outcome(outcome)] = &peer.sasl_frames()[..] else {
        panic!("expected sasl-outcome");
    };
    assert_eq!(outcome.code, SaslCode::Auth);
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
    assert_eq!(error.condition.as_str(), condition::UNAUTHORIZED_ACCESS);
}

#[test]
fn a_refused_sasl_init_gets_outcome_auth() {
    let mut peer = sasl_peer(SaslInit {
        mechanism: "ANONYMOUS".into(),
        initial_response: None,
        hostname: None,
    });
    peer.engine.sasl_outcome(false).unwrap();
    let [SaslFrame::Outcome(outcome)] = &peer.sasl_frames()[..] else {
        panic!("expected sasl-outcome");
    };
    assert_eq!(outcome.code, SaslCode::Auth);
    assert!(peer.engine.is_closed());
}

#[test]
fn unsupported_headers_get_ours_and_the_socket_closes() {
    for bytes in [
        &b"GET / HTTP/1.1\r\n"[..],
        b"AMQP\x02\x01\x00\x00",
        b"AMQP\x00\x00\x09\x01",
    ] {
        let mut peer = Peer::new(EngineConfig::default());
        peer.write(bytes);
        assert_eq!(peer.read_header(), ProtocolId::Amqp.header());
        assert!(peer.engine.is_closed());
        assert!(matches!(
            peer.events()[..],
            [Event::Closed { by_peer: false, .. }]
        ));
        assert!(peer.frames().is_empty());
    }
    let mut peer = Peer::new(EngineConfig {
        require_sasl: true,
        ..EngineConfig::default()
    });
    peer.write(&ProtocolId::Amqp.header());
    assert_eq!(peer.read_header(), ProtocolId::Sasl.header());
    assert!(peer.engine.is_closed());
}

#[test]
fn begin_is_answered_with_explicit_handle_max_and_windows() {
    let mut peer = Peer::opened(EngineConfig::default());
    peer.send(
        3,
        Begin {
            next_outgoing_id: 7,
            incoming_window: 10,
            outgoing_window: 10,
            ..Begin::default()
        },
    );
    let [(0, Performative::Begin(begin))] = &peer.performatives()[..] else {
        panic!("expected our begin on channel 0");
    };
    assert_eq!(begin.remote_channel, Some(3));
    assert_eq!(begin.handle_max, Some(255));
    assert_eq!(begin.incoming_window, 5000);
    assert_eq!(begin.outgoing_window, 5000);
    assert_eq!(begin.next_outgoing_id, 0);
    let [Event::SessionBegun { session }] = peer.events()[..] else {
        panic!("expected SessionBegun");
    };
    // A second session gets the next free channel.
    let (_, local) = peer.begin(0);
    assert_eq!(local, 1);
    // The peer ends the first: answered, reported.
    peer.send(
        3,
        End {
            error: Some(Error::new(condition::INTERNAL_ERROR, "bye")),
        },
    );
    assert!(matches!(
        peer.performatives()[..],
        [(0, Performative::End(End { error: None }))]
    ));
    let [
        Event::SessionEnded {
            session: ended,
            error: Some(_),
        },
    ] = peer.events()[..]
    else {
        panic!("expected SessionEnded");
    };
    assert_eq!(ended, session);
}

#[test]
fn sessions_beyond_the_limit_are_begun_then_ended() {
    let mut peer = Peer::opened(EngineConfig {
        max_sessions: 1,
        ..EngineConfig::default()
    });
    peer.begin(0);
    peer.send(1, Begin::default());
    let performatives = peer.performatives();
    let [(1, Performative::Begin(_)), (1, Performative::End(end))] = &performatives[..] else {
        panic!("expected begin then end, got {performatives:?}");
    };
    assert_eq!(
        end.error.as_ref().unwrap().condition.as_str(),
        condition::RESOURCE_LIMIT_EXCEEDED
    );
    assert!(peer.events().is_empty());
    // The peer's end is absorbed, and the channel is free again.
    peer.send(1, End::default());
    assert!(peer.performatives().is_empty());
    assert!(!peer.engine.is_closed());
}

#[test]
fn app_ended_session_waits_for_the_peers_end() {
    let mut peer = Peer::opened(EngineConfig::default());
    let (session, _) = peer.begin(0);
    peer.engine.end_session(session, None).unwrap();
    assert!(matches!(peer.performatives()[..], [(0, Performative::End(_))]));
    assert_eq!(
        peer.engine.end_session(session, None),
        Err(EngineError::UnknownSession)
    );
    // Frames crossing our end are ignored; the peer's end completes it.
    peer.send(0, Begin::default());
    assert!(
        peer.engine.is_closed(),
        "begin on a mapped channel is a violation"
    );
}

#[test]
fn peer_close_is_answered_and_reported() {
    let mut peer = Peer::opened(EngineConfig::default());
    peer.send(
        0,
        Close {
            error: Some(Error::new(condition::CONNECTION_FORCED, "shutting down")),
        },
    );
    assert!(matches!(
        peer.performatives()[..],
        [(0, Performative::Close(Close { error: None }))]
    ));
    let [
        Event::Closed {
            error: Some(error),
            by_peer: true,
        },
    ] = &peer.events()[..]
    else {
        panic!("expected Closed");
    };
    assert_eq!(error.condition.as_str(), condition::CONNECTION_FORCED);
    assert!(peer.engine.is_closed());
    assert_eq!(peer.engine.next_deadline(), None);
}

#[test]
fn app_close_waits_for_the_peers_close_or_the_timeout() {
    let mut peer = Peer::opened(EngineConfig::default());
    peer.engine
        .close(Some(Error::new(condition::CONNECTION_FORCED, "maintenance")));
    assert!(matches!(
        peer.performatives()[..],
        [(0, Performative::Close(Close { error: Some(_) }))]
    ));
    assert!(!peer.engine.is_closed());
    peer.send(0, Begin::default());
    assert!(peer.performatives().is_empty(), "ignored while closing");
    peer.send(0, Close::default());
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
    assert_eq!(error.description.as_deref(), Some("maintenance"));

    let mut silent = Peer::opened(EngineConfig::default());
    silent.engine.close(None);
    silent.advance(Duration::from_secs(4));
    assert!(!silent.engine.is_closed());
    silent.advance(Duration::from_secs(1));
    assert!(silent.engine.is_closed());
    assert!(matches!(
        silent.events()[..],
        [Event::Closed {
            error: None,
            by_peer: false
        }]
    ));
}

#[test]
fn heartbeats_go_out_at_half_the_peers_idle_timeout() {
    let mut peer = Peer::new(EngineConfig::default());
    peer.write(&ProtocolId::Amqp.header());
    let mut open = Open::new("c");
    open.idle_time_out = Some(10_000);
    peer.send(0, open);
    peer.read_header();
    peer.frames();
    peer.events();
    let start = peer.now;
    assert_eq!(peer.engine.next_deadline(), Some(start + Duration::from_secs(5)));
    peer.advance(Duration::from_millis(4_999));
    assert!(peer.frames().is_empty());
    peer.advance(Duration::from_millis(1));
    assert_eq!(peer.frames(), [(0, FrameBody::Heartbeat)]);
    // Any frame we send resets the heartbeat timer.
    peer.advance(Duration::from_secs(3));
    peer.begin(0);
    peer.advance(Duration::from_secs(3));
    assert!(peer.frames().is_empty());
    peer.advance(Duration::from_secs(2));
    assert_eq!(peer.frames(), [(0, FrameBody::Heartbeat)]);
}

#[test]
fn silence_beyond_twice_our_idle_timeout_closes_with_resource_limit_exceeded() {
    let mut peer = Peer::opened(EngineConfig {
        idle_timeout: Duration::from_secs(4),
        ..EngineConfig::default()
    });
    peer.advance(Duration::from_secs(7));
    // A heartbeat from the peer resets the timer.
    peer.write(&[0, 0, 0, 8, 2, 0, 0, 0]);
    peer.advance(Duration::from_secs(7));
    assert!(!peer.engine.is_closed());
    assert_eq!(
        peer.engine.next_deadline(),
        Some(peer.now + Duration::from_secs(1))
    );
    peer.advance(Duration::from_secs(1));
    assert_eq!(peer.closed_with(), condition::RESOURCE_LIMIT_EXCEEDED);
}

#[test]
fn a_peer_that_never_opens_is_dropped_after_the_handshake_timeout() {
    let mut peer = Peer::new(EngineConfig::default());
    peer.write(b"AMQ");
    assert_eq!(
        peer.engine.next_deadline(),
        Some(peer.now + Duration::from_secs(30))
    );
    peer.advance(Duration::from_secs(30));
    assert!(peer.engine.is_closed());
    let [
        Event::Closed {
            error: Some(error), ..
        },
    ] = &peer.events()[..]
    else {
        panic!("expected Closed");
    };
    assert_eq!(error.condition.as_str(), condition::RESOURCE_LIMIT_EXCEEDED);
}

#[test]
fn huge_timeouts_do_not_overflow_the_clock() {
    let config = EngineConfig {
        idle_timeout: Duration::MAX,
        handshake_timeout: Duration::MAX,
        close_timeout: Duration::MAX,
        ..EngineConfig::default()
    };
    let mut peer = Peer::new(config.clone());
    assert_eq!(peer.engine.next_deadline(), None);
    peer.advance(Duration::from_secs(1_000_000));
    assert!(!peer.engine.is_closed());
    let mut peer = Peer::opened(config);
    assert!(peer.engine.next_deadline().is_none());
    peer.engine.close(None);
    peer.advance(Duration::from_secs(1_000_000));
    assert!(!peer.engine.is_closed());
}
