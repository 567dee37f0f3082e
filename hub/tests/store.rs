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

fn sha(bytes: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).into()
}

#[test]
fn image_chunks_are_checked_and_a_study_that_stops_arriving_is_marked_partial_with_what_is_missing() {
    use yilian_protocol::imaging::{BlobChunk, ImageManifest, ManifestInstance};
    let dir = tempfile::tempdir().expect("tmp");
    let mut db = Db::open(&dir.path().join("y.db")).expect("db");
    let key = SigningKey::generate().expect("key");
    db.enroll("site", "dev", &key.public_key(), false, 0).expect("enroll");
    let whole = vec![7u8; 100_000]; // two chunks: 98,304 + 1,696 bytes
    let small = b"a small instance".to_vec();
    let instance = |sop: &str, bytes: &[u8]| ManifestInstance {
        sop_instance_uid: sop.into(),
        sop_class_uid: "1.2.840.10008.5.1.4.1.1.1".into(),
        series_uid: "1.2.3.1".into(),
        transfer_syntax: "1.2.840.10008.1.2.1".into(),
        size: bytes.len() as u64,
        sha256: sha(bytes),
        chunks: ManifestInstance::chunks_for(bytes.len() as u64),
    };
    let manifest = ImageManifest {
        study_uid: "1.2.3".into(),
        priority: Priority::Urgent,
        modality: "CR".into(),
        patient_name: "张伟".into(),
        patient_id: "p".into(),
        calling_ae: "DR".into(),
        received_at_ms: 0,
        part: 0,
        parts: 1,
        instances: vec![instance("1.2.3.1.1", &whole), instance("1.2.3.1.2", &small)],
    };
    let chunk = |sop: &str, index: u32, bytes: &[u8]| {
        Payload::BlobChunk(BlobChunk {
            study_uid: "1.2.3".into(),
            sop_instance_uid: sop.into(),
            index,
            sha256: sha(bytes),
            bytes: bytes.to_vec(),
        })
    };
    let mut forged = chunk("1.2.3.1.2", 0, &small);
    if let Payload::BlobChunk(c) = &mut forged {
        c.bytes[0] ^= 1;
    }
    let batch = vec![
        incoming(&key, 1, Payload::ImageManifest(manifest)),
        incoming(&key, 2, chunk("1.2.3.1.1", 0, &whole[..98_304])),
        incoming(&key, 3, chunk("1.2.3.1.1", 1, &whole[98_304..])),
        incoming(&key, 4, forged),
        incoming(&key, 5, chunk("1.2.3.1.1", 1, &whole[98_304..99_000])),
    ];
    let out = db.ingest(&batch, 1_000).expect("ingest");
    let kinds: Vec<&str> = out
        .iter()
        .map(|s| match s {
            Stored::New => "new",
            Stored::Refused(_) => "refused",
            _ => "other",
        })
        .collect();
    assert_eq!(kinds, ["new", "new", "new", "refused", "refused"], "a chunk off its hash or its size is refused");
    let ready = db.image_ready_instances(10).expect("ready");
    assert_eq!(ready.len(), 1, "only the instance with every chunk");
    assert_eq!(ready[0].sop_uid, "1.2.3.1.1");
    let rows = db.image_studies(10).expect("rows");
    assert_eq!((rows[0].state.as_str(), rows[0].instances, rows[0].priority.as_str()), ("receiving", 2, "urgent"));
    // Nothing more comes: after the quiet time the study is partial, and says what is missing.
    let stale = db.image_mark_partial(1_000 + 60_000, 30_000).expect("partial");
    assert_eq!(stale, ["1.2.3"]);
    let rows = db.image_studies(10).expect("rows");
    assert_eq!(rows[0].state, "partial");
    let missing = rows[0].missing.clone().unwrap_or_default();
    assert!(missing.contains("2 instances incomplete") && missing.contains("1 chunks missing"), "{missing}");
}
