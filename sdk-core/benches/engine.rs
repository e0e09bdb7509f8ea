//! The engine's hot paths, in nanoseconds per message:
//! - raw frame in → `Event::Message` out;
//! - raw `send` → `Action::Send` out;
//! - the same two in Tether protocol mode (JSON decode / encode included);
//! - `json::parse` of floats as the writer prints them (17 significant digits, most of which
//!   the fast path cannot read exactly), per float.
//!
//! Run: `cargo bench -p tether-core --bench engine`. Allocation counts for the same paths are
//! asserted in tests/allocations.rs.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use std::hint::black_box;
use tether_core::serde_json::Value;
use tether_core::{json, Action, Config, Engine, Frame, Instant, Protocol, SendOptions};

fn open_engine(protocol: Protocol) -> (Engine, tether_core::TransportId) {
    let config = Config::builder("ws://127.0.0.1:9000")
        .protocol(protocol)
        .build()
        .expect("valid config");
    let mut engine = Engine::new(config, 1);
    engine.connect(Instant::ZERO);
    let transport = match engine.poll_action() {
        Some(Action::Open(open)) => open.transport,
        other => panic!("expected open, got {other:?}"),
    };
    engine.transport_opened(Instant::ZERO, transport);
    while engine.poll_action().is_some() {}
    while engine.poll_event().is_some() {}
    (engine, transport)
}

fn payload() -> String {
    "x".repeat(64)
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("engine");
    group.throughput(Throughput::Elements(1));

    let (mut engine, t) = open_engine(Protocol::Raw);
    let now = Instant::from_millis(1);
    group.bench_function("raw_frame_in_event_out", |b| {
        b.iter_batched(
            || Frame::Text(payload()),
            |frame| {
                engine.frame_received(now, t, frame);
                black_box(engine.poll_event())
            },
            BatchSize::SmallInput,
        )
    });

    let (mut engine, _) = open_engine(Protocol::Raw);
    group.bench_function("raw_send_action_out", |b| {
        b.iter_batched(
            payload,
            |text| {
                let id = engine.send(now, text);
                black_box((id, engine.poll_action()))
            },
            BatchSize::SmallInput,
        )
    });

    let (mut engine, t) = open_engine(Protocol::Tether);
    let message = r#"{"v":1,"type":"message","channel":"room","offset":1,"payload":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}"#;
    group.bench_function("tether_frame_in_event_out", |b| {
        b.iter_batched(
            || Frame::Text(message.to_owned()),
            |frame| {
                engine.frame_received(now, t, frame);
                black_box(engine.poll_event())
            },
            BatchSize::SmallInput,
        )
    });

    let (mut engine, _) = open_engine(Protocol::Tether);
    group.bench_function("tether_publish_action_out", |b| {
        b.iter_batched(
            payload,
            |text| {
                let id = engine.publish(now, "room", text, SendOptions::unacked());
                black_box((id, engine.poll_action()))
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();

    // 1,000 floats in [0, 1) from a fixed linear congruential sequence, printed by the writer.
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    let floats: Vec<Value> = (0..1_000)
        .map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            Value::from((state >> 11) as f64 / (1u64 << 53) as f64)
        })
        .collect();
    let text = json::to_string(&Value::Array(floats));
    let mut group = c.benchmark_group("json");
    group.throughput(Throughput::Elements(1_000));
    group.bench_function("parse_1000_floats", |b| {
        b.iter(|| black_box(json::parse(black_box(&text))))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
