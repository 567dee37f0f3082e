//! The store's commit of a batch of uplink envelopes (what the hub does for every batch it
//! receives): 32 one-second 12-lead 500 Hz monitoring chunks, verified beforehand, stored and
//! committed with a full fsync, on SQLite and, when `YILIAN_TEST_POSTGRES` names a server, on
//! PostgreSQL.
//!
//! ```text
//! cargo bench -p yilian-hub --bench store_commit
//! YILIAN_TEST_POSTGRES=postgres://postgres@127.0.0.1:5432/postgres cargo bench -p yilian-hub --bench store_commit
//! ```

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use yilian_hub::store::{Db, Incoming, Location, sealed, testing};
use yilian_protocol::envelope::{Envelope, Header, seal};
use yilian_protocol::keys::SigningKey;
use yilian_protocol::message::{Lane, LeadSamples, Payload, StreamChunk};
use yilian_protocol::topic::{Channel, Topic};

const BATCH: u64 = 32;
const LEADS: [&str; 12] = ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"];

fn chunk(key: &SigningKey, seq: u64) -> Incoming {
    let topic = Topic::new("site", "bench-cart", Channel::Up).expect("topic");
    let leads = LEADS
        .iter()
        .enumerate()
        .map(|(l, name)| {
            // An ECG-like wave with a little noise: what the codec sees from a cart.
            let s: Vec<i32> = (0..500)
                .map(|k| {
                    let t = (seq * 500 + k) as f64 / 500.0;
                    (800.0 * (t * 7.3).sin().powi(15) + 30.0 * ((k as usize * 7919 + l * 31) % 7) as f64) as i32
                })
                .collect();
            LeadSamples::encode(name, &s)
        })
        .collect();
    let payload = Payload::StreamChunk(StreamChunk {
        stream_id: 0,
        sample_rate_hz: 500,
        resolution_nv: 1000,
        first_sample: (seq - 1) * 500,
        start_time_ms: 1_764_000_000_000 + seq as i64 * 1000,
        leads,
    });
    let bytes = seal(key, Header::new(key, "bench-cart", seq, 0, Lane::Stream), &topic, &payload).expect("seal");
    let verified = Envelope::decode(&bytes).expect("decode").verify(&key.public_key(), &topic, None).expect("verify");
    Incoming { site: "site".into(), verified, envelope: bytes }
}

fn bench_store(c: &mut Criterion, name: &str, location: &Location, dir: &std::path::Path) {
    let mut db = Db::open_at(location, &sealed::default_key_path(&dir.join("y.db"))).expect("store");
    let key = SigningKey::generate().expect("key");
    let mut next = 1u64;
    let mut group = c.benchmark_group("store commit");
    group.throughput(Throughput::Elements(BATCH));
    group.sample_size(20);
    group.bench_function(format!("{name}: 32 chunks of 12 leads × 1 s"), |b| {
        b.iter_batched(
            || {
                let batch: Vec<Incoming> = (next..next + BATCH).map(|s| chunk(&key, s)).collect();
                next += BATCH;
                batch
            },
            |batch| db.ingest(&batch, 0).expect("ingest"),
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

fn store_commit(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tmp");
    bench_store(c, "SQLite", &Location::Sqlite(dir.path().join("y.db")), dir.path());
    if let Some(server) = testing::postgres_server() {
        let pg = tempfile::tempdir().expect("tmp");
        let url = testing::fresh_postgres_database(&server).expect("database");
        bench_store(c, "PostgreSQL", &Location::Postgres(url), pg.path());
    }
}

criterion_group!(benches, store_commit);
criterion_main!(benches);
