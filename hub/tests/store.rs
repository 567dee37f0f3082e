//! The store's refusals, on a real SQLite file.

use yilian_hub::store::{Db, Incoming, Stored};
use yilian_protocol::envelope::{Envelope, Header, seal};
use yilian_protocol::keys::SigningKey;
use yilian_protocol::message::*;
use yilian_protocol::topic::{Channel, Topic};

fn incoming(key: &SigningKey, seq: u64, payload: Payload) -> Incoming {
    let topic = Topic::new("site", "dev", Channel::Up).expect("topic");
    let bytes = seal(key, Header::new(key, "dev", seq, 0, Lane::Stream), &topic, &payload).expect("seal");
    let verified = Envelope::decode(&bytes).expect("decode").verify(&key.public_key(), &topic, None).expect("verify");
    Incoming { site: "site".into(), verified, envelope: bytes }
}

fn study(uid: &str, v: i32) -> Study {
    Study {
        study_uid: uid.into(),
        patient: Patient { id: "p".into(), name: "张伟".into(), sex: Sex::Male, birth_date: None, age_years: None },
        question: "q".into(),
        priority: Priority::Routine,
        acquired_at_ms: 0,
        sample_rate_hz: 500,
        device_model: "m".into(),
        // Noise-like samples, so the study needs several parts.
        leads: ["I", "II"]
            .iter()
            .enumerate()
            .map(|(l, name)| {
                let s: Vec<i32> = (0..60_000).map(|k| ((k * 7919 + l * 104_729) % 4001) as i32 - 2000 + v).collect();
                StudyLead::encode(name, 1000.0, &s)
            })
            .collect(),
        warnings: vec![],
        median_beat: None,
        annotations: vec![],
        measurements: vec![],
        interpretation: vec![],
        source: None,
    }
}

#[test]
fn a_study_uid_reused_for_another_recording_is_refused_and_the_first_is_kept() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut db = Db::open(&dir.path().join("y.db")).expect("db");
    let key = SigningKey::generate().expect("key");
    let first = study("dev-1-1", 1).split().expect("split");
    let second = study("dev-1-1", 2).split().expect("split");
    assert!(first.len() > 1);
    let mut seq = 0;
    let mut batch = Vec::new();
    for p in &first[..1] {
        seq += 1;
        batch.push(incoming(&key, seq, Payload::StudyPart(p.clone())));
    }
    // The other recording's part arrives before the first recording is complete.
    seq += 1;
    batch.push(incoming(&key, seq, Payload::StudyPart(second[1].clone())));
    for p in &first[1..] {
        seq += 1;
        batch.push(incoming(&key, seq, Payload::StudyPart(p.clone())));
    }
    let out = db.ingest(&batch, 0).expect("ingest");
    assert!(matches!(&out[1], Stored::Refused(RefusalReason::Inconsistent(why)) if why.contains("reused")), "{out:?}");
    assert!(out.iter().enumerate().all(|(i, o)| i == 1 || *o == Stored::New), "{out:?}");
    let (_, s) = db.study("dev-1-1", 0).expect("query").expect("first recording stored");
    assert_eq!(s, study("dev-1-1", 1));
}

#[test]
fn the_same_seq_with_other_content_is_refused_with_the_highest_stored_seq() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut db = Db::open(&dir.path().join("y.db")).expect("db");
    let key = SigningKey::generate().expect("key");
    let line = |s: &str| Payload::DeviceOutput(DeviceOutput { port: "p".into(), line: s.into(), received_at_ms: 0 });
    let a = [incoming(&key, 5, line("a")), incoming(&key, 9, line("b"))];
    assert_eq!(db.ingest(&a, 0).expect("ingest"), vec![Stored::New, Stored::New]);
    let again = [incoming(&key, 5, line("a")), incoming(&key, 5, line("other")), incoming(&key, 10, line("c"))];
    assert_eq!(
        db.ingest(&again, 0).expect("ingest"),
        vec![Stored::Duplicate, Stored::Refused(RefusalReason::SeqReused { highest_seq: 9 }), Stored::New]
    );
    assert_eq!(db.counts(0).expect("counts").messages, 3);
}

#[test]
fn hostile_stream_chunks_are_refused_without_touching_the_rest_of_the_batch() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut db = Db::open(&dir.path().join("y.db")).expect("db");
    let key = SigningKey::generate().expect("key");
    let chunk = |first: u64, leads: Vec<LeadSamples>| {
        Payload::StreamChunk(StreamChunk {
            stream_id: 0,
            sample_rate_hz: 360,
            resolution_nv: 5000,
            first_sample: first,
            start_time_ms: 0,
            leads,
        })
    };
    let ok = || vec![LeadSamples::encode("II", &[1, 2, 3])];
    let batch = [
        incoming(&key, 1, chunk(u64::MAX - 1, ok())),
        incoming(&key, 2, chunk(0, vec![LeadSamples::encode("II", &[1, 2]), LeadSamples::encode("V1", &[1])])),
        incoming(&key, 3, chunk(0, vec![])),
        incoming(&key, 4, chunk(0, ok())),
    ];
    let out = db.ingest(&batch, 0).expect("ingest");
    assert!(out[..3].iter().all(|o| matches!(o, Stored::Refused(_))), "{out:?}");
    assert_eq!(out[3], Stored::New);
    assert_eq!(db.counts(0).expect("counts").samples_received, 3);
}
