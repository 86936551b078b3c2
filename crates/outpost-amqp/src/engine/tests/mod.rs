//! Drives the engine with frames built by the codec, as the real clients send them: rhea (bare AMQP
//! header), pyamqp and uamqp (SASL ANONYMOUS / MSSBCBS), the PLAIN redirect trick.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]

mod connection;
mod deliveries;
mod links;
mod robustness;

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use super::{Engine, EngineConfig, Event, LinkAttached, LinkId, LinkReply, SessionId};
use crate::definitions::{Role, Source, Target};
use crate::frame::{
    FrameBody, FrameDecoder, ProtocolId, encode_amqp_frame, encode_sasl_frame, encode_transfer_frames,
};
use crate::performatives::{Attach, Begin, Flow, Open, Performative, Transfer};
use crate::sasl::SaslFrame;

/// The client side of a test connection: writes frames into the engine, reads what it sends back.
struct Peer {
    engine: Engine,
    now: Instant,
    input: BytesMut,
    output: BytesMut,
}

impl Peer {
    fn new(config: EngineConfig) -> Self {
        let now = Instant::now();
        Self {
            engine: Engine::new(config, now),
            now,
            input: BytesMut::new(),
            output: BytesMut::new(),
        }
    }

    /// A peer after a bare AMQP header and an open (like rhea), with headers and open read.
    fn opened(config: EngineConfig) -> Self {
        let mut peer = Self::new(config);
        peer.write(&ProtocolId::Amqp.header());
        assert_eq!(peer.read_header(), ProtocolId::Amqp.header());
        peer.send(0, Open::new("client"));
        let [(0, Performative::Open(_))] = peer.performatives()[..] else {
            panic!("expected our open");
        };
        assert!(matches!(peer.events()[..], [Event::Opened(_)]));
        peer
    }

    fn write(&mut self, bytes: &[u8]) {
        self.input.extend_from_slice(bytes);
        self.engine.handle_input(&mut self.input, self.now);
    }

    fn send(&mut self, channel: u16, performative: impl Into<Performative>) {
        let mut buf = BytesMut::new();
        encode_amqp_frame(&mut buf, channel, &performative.into(), &[]);
        self.write(&buf);
    }

    fn send_sasl(&mut self, frame: &SaslFrame) {
        let mut buf = BytesMut::new();
        encode_sasl_frame(&mut buf, frame);
        self.write(&buf);
    }

    /// Sends a delivery split into frames of at most `max_frame_size` bytes.
    fn send_transfer(
        &mut self,
        channel: u16,
        transfer: &Transfer,
        payload: &[u8],
        max_frame_size: u32,
    ) -> usize {
        let mut buf = BytesMut::new();
        let count = encode_transfer_frames(&mut buf, channel, transfer, payload, max_frame_size).unwrap();
        self.write(&buf);
        count
    }

    fn advance(&mut self, by: Duration) {
        self.now += by;
        self.engine.poll_timers(self.now);
    }

    fn pull(&mut self) {
        self.engine.take_output(&mut self.output);
    }

    fn read_header(&mut self) -> [u8; 8] {
        self.pull();
        assert!(self.output.len() >= 8, "expected a protocol header");
        let header = self.output.split_to(8);
        header[..].try_into().unwrap()
    }

    fn frames(&mut self) -> Vec<(u16, FrameBody)> {
        self.pull();
        let mut decoder = FrameDecoder::new(u32::MAX);
        let mut frames = Vec::new();
        while let Some(frame) = decoder.decode(&mut self.output).unwrap() {
            frames.push((frame.channel, frame.body));
        }
        assert!(self.output.is_empty(), "partial frame in the output");
        frames
    }

    fn sasl_frames(&mut self) -> Vec<SaslFrame> {
        self.frames()
            .into_iter()
            .map(|(_, body)| match body {
                FrameBody::Sasl(sasl) => sasl,
                other => panic!("expected a sasl frame, got {other:?}"),
            })
            .collect()
    }

    fn performatives(&mut self) -> Vec<(u16, Performative)> {
        self.frames()
            .into_iter()
            .filter_map(|(channel, body)| match body {
                FrameBody::Amqp { performative, .. } => Some((channel, performative)),
                FrameBody::Heartbeat => None,
                FrameBody::Sasl(sasl) => panic!("unexpected sasl frame {sasl:?}"),
            })
            .collect()
    }

    fn events(&mut self) -> Vec<Event> {
        std::iter::from_fn(|| self.engine.poll_event()).collect()
    }

    /// Begins a session on `channel`; returns its id and our channel.
    fn begin(&mut self, channel: u16) -> (SessionId, u16) {
        self.send(
            channel,
            Begin {
                next_outgoing_id: 0,
                incoming_window: 100,
                outgoing_window: 100,
                handle_max: Some(63),
                ..Begin::default()
            },
        );
        let [(local, Performative::Begin(begin))] = &self.performatives()[..] else {
            panic!("expected our begin");
        };
        assert_eq!(begin.remote_channel, Some(channel));
        let [Event::SessionBegun { session }] = self.events()[..] else {
            panic!("expected SessionBegun");
        };
        (session, *local)
    }

    /// Attaches a link as `role` (the peer's) on `channel`; returns the attach event.
    fn attach(&mut self, channel: u16, attach: Attach) -> LinkAttached {
        self.send(channel, attach);
        match &self.events()[..] {
            [Event::LinkAttached(attached)] => (**attached).clone(),
            other => panic!("expected LinkAttached, got {other:?}"),
        }
    }

    /// Attaches and accepts a link on which the peer sends to `target`; returns the link and our handle.
    fn sender_link(&mut self, channel: u16, handle: u32, target: &str) -> (LinkId, u32) {
        let mut attach = Attach::new(format!("sender-{handle}"), handle, Role::Sender);
        attach.target = Some(Target::new(target));
        attach.source = Some(Source::new("client"));
        attach.initial_delivery_count = Some(0);
        let attached = self.attach(channel, attach);
        self.engine
            .accept_link(attached.link, LinkReply::default())
            .unwrap();
        let [(_, Performative::Attach(reply))] = &self.performatives()[..] else {
            panic!("expected our attach");
        };
        (attached.link, reply.handle)
    }

    /// Attaches and accepts a link on which the peer receives from `source`; returns the link and our
    /// handle.
    fn receiver_link(&mut self, channel: u16, handle: u32, source: &str) -> (LinkId, u32) {
        let mut attach = Attach::new(format!("receiver-{handle}"), handle, Role::Receiver);
        attach.source = Some(Source::new(source));
        attach.target = Some(Target::new("client"));
        let attached = self.attach(channel, attach);
        self.engine
            .accept_link(attached.link, LinkReply::default())
            .unwrap();
        let [(_, Performative::Attach(reply))] = &self.performatives()[..] else {
            panic!("expected our attach");
        };
        (attached.link, reply.handle)
    }

    /// Sends a link flow from the peer.
    fn flow(&mut self, channel: u16, handle: u32, delivery_count: Option<u32>, credit: u32, drain: bool) {
        self.send(
            channel,
            Flow {
                next_incoming_id: Some(0),
                incoming_window: 100,
                next_outgoing_id: 0,
                outgoing_window: 100,
                handle: Some(handle),
                delivery_count,
                link_credit: Some(credit),
                drain,
                ..Flow::default()
            },
        );
    }

    /// Returns the condition of the close the engine sent, and checks the connection is over.
    fn closed_with(&mut self) -> String {
        let performatives = self.performatives();
        let Some((_, Performative::Close(close))) = performatives.last() else {
            panic!("expected a close, got {performatives:?}");
        };
        assert!(self.engine.is_closed());
        let events = self.events();
        assert!(
            matches!(events.last(), Some(Event::Closed { by_peer: false, .. })),
            "{events:?}"
        );
        close
            .error
            .as_ref()
            .map(|error| error.condition.as_str().to_owned())
            .unwrap_or_default()
    }
}

/// A transfer starting delivery `id` on `handle`.
fn transfer(handle: u32, id: u32) -> Transfer {
    Transfer {
        handle,
        delivery_id: Some(id),
        delivery_tag: Some(Bytes::copy_from_slice(&id.to_be_bytes())),
        message_format: Some(0),
        ..Transfer::default()
    }
}
