//! Measures the MQTT codec on what Azure devices send most (wire reference §2): decoding and encoding a
//! QoS 1 telemetry PUBLISH with a 256-byte payload on a `devices/<id>/messages/events/<bag>` topic, the same
//! for the Python SDK's CONNECT (SAS token password), and decoding one read buffer holding 100 back-to-back
//! PUBLISHes, as a busy connection's socket read would.
//!
//! Decode inputs are copied into a fresh `BytesMut` outside the timed section; encode reuses one output
//! buffer, as a connection's write buffer is reused.
//!
//! Run: `cargo bench -p outpost-mqtt --bench codec` (quick: append `-- --warm-up-time 1 --measurement-time 3`).

use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use outpost_mqtt::codec::{Connect, Decoder, Packet, PacketId, Publish, QoS, encode};

const TELEMETRY_TOPIC: &str = "devices/dev1/messages/events/%24.mid=mid-1&%24.cid=cid-1\
    &%24.ct=application%2Fjson&%24.ce=utf-8&alert=high%20temp";

fn telemetry(packet_id: u16) -> Packet {
    Packet::Publish(Publish {
        dup: false,
        qos: QoS::AtLeastOnce,
        retain: false,
        topic: TELEMETRY_TOPIC.to_owned(),
        packet_id: PacketId::new(packet_id),
        payload: Bytes::from(vec![b'x'; 256]),
    })
}

fn python_connect() -> Packet {
    Packet::Connect(Connect {
        protocol_name: "MQTT".to_owned(),
        protocol_level: 4,
        clean_session: false,
        keep_alive: 60,
        client_id: "dev1".to_owned(),
        will: None,
        username: Some(
            "localhost/dev1/?api-version=2019-10-01&DeviceClientType=azure-iot-device-iothub-py%2F2.14.0\
             %283.11.7%3BLinux%20%231%20SMP%20PREEMPT_DYNAMIC%20%400%3Bx86_64%29"
                .to_owned(),
        ),
        password: Some(Bytes::from_static(
            b"SharedAccessSignature sr=localhost%2Fdevices%2Fdev1\
              &sig=6pSBmE%2Bgufmmb3V7dqTffP6rICmSLk%2Bv%2BfvPjJN8LwQ%3D&se=1795692329",
        )),
    })
}

fn wire(packets: &[Packet]) -> BytesMut {
    let mut buf = BytesMut::new();
    for packet in packets {
        encode(packet, &mut buf).expect("valid packet");
    }
    buf
}

fn bench_packet(c: &mut Criterion, name: &str, packet: &Packet) {
    let bytes = wire(std::slice::from_ref(packet));
    let mut group = c.benchmark_group(name);
    group.throughput(Throughput::Bytes(bytes.len() as u64));
    group.bench_function("decode", |b| {
        let mut decoder = Decoder::default();
        b.iter_batched(
            || BytesMut::from(&bytes[..]),
            |mut buf| decoder.decode(black_box(&mut buf)).expect("valid packet"),
            BatchSize::SmallInput,
        );
    });
    group.bench_function("encode", |b| {
        let mut buf = BytesMut::with_capacity(bytes.len());
        b.iter(|| {
            buf.clear();
            encode(black_box(packet), &mut buf).expect("valid packet");
        });
    });
    group.finish();
}

fn bench_codec(c: &mut Criterion) {
    bench_packet(c, "publish qos1 256B telemetry", &telemetry(1));
    bench_packet(c, "connect python sdk", &python_connect());

    let packets: Vec<Packet> = (1..=100).map(telemetry).collect();
    let stream = wire(&packets);
    let mut group = c.benchmark_group("100 back-to-back publishes");
    group.throughput(Throughput::Elements(100));
    group.bench_function("decode", |b| {
        let mut decoder = Decoder::default();
        b.iter_batched(
            || BytesMut::from(&stream[..]),
            |mut buf| {
                let mut decoded = Vec::with_capacity(100);
                while let Some(packet) = decoder.decode(&mut buf).expect("valid stream") {
                    decoded.push(packet);
                }
                assert_eq!(decoded.len(), 100);
                decoded
            },
            BatchSize::SmallInput,
        );
    });
    group.finish();
}

criterion_group!(benches, bench_codec);
criterion_main!(benches);
