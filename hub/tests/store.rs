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
    let mut db = Db::open_test(dir.path()).expect("db");
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
    let mut db = Db::open_test(dir.path()).expect("db");
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
    let mut db = Db::open_test(dir.path()).expect("db");
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
    let mut db = Db::open_test(dir.path()).expect("db");
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

#[test]
fn prior_ecgs_are_found_by_identifier_or_as_possible_by_name_and_birth_date() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut db = Db::open_test(dir.path()).expect("db");
    let key = SigningKey::generate().expect("key");
    let birth = Date::new(1958, 3, 2).expect("date");
    let person = |uid: &str, id: &str, name: &str, at: i64| {
        let mut s = study(uid, 0);
        s.leads.truncate(2);
        s.patient =
            Patient { id: id.into(), name: name.into(), sex: Sex::Male, birth_date: Some(birth), age_years: None };
        s.acquired_at_ms = at;
        s
    };
    let studies = [
        person("old-1", "110101195803021234", "李建国", 1_000),
        // Another clinic typed the identifier with spaces and a space in the name.
        person("old-2", "110101 195803021234", "李 建国", 2_000),
        // No identifier at this clinic: name and birth date only.
        person("old-3", "", "李建国", 3_000),
        // A local number another patient also has.
        person("old-4", "0001", "王秀英", 3_500),
        person("new", "110101195803021234", "李建国", 4_000),
        // Recorded after the new one: not a prior.
        person("later", "110101195803021234", "李建国", 5_000),
        person("other", "3", "张伟", 1_500),
    ];
    let mut seq = 0;
    let mut send = |db: &mut Db, s: &Study| {
        let batch: Vec<Incoming> = s
            .split()
            .expect("split")
            .into_iter()
            .map(|p| {
                seq += 1;
                incoming(&key, seq, Payload::StudyPart(p))
            })
            .collect();
        db.ingest(&batch, 0).expect("ingest");
    };
    for s in &studies {
        send(&mut db, s);
    }
    let priors = db.priors("new", 0, 10).expect("priors");
    let got: Vec<(&str, yilian_hub::store::priors::PriorMatch)> =
        priors.iter().map(|p| (p.row.study_uid.as_str(), p.matched)).collect();
    use yilian_hub::store::priors::PriorMatch::*;
    assert_eq!(got, vec![("old-3", NameAndBirth), ("old-2", Same), ("old-1", Same)]);
    // A reused local number with another name is only "possible".
    let mut reuse = person("new-2", "0001", "赵敏", 6_000);
    reuse.patient.birth_date = None;
    send(&mut db, &reuse);
    let priors = db.priors("new-2", 0, 10).expect("priors");
    assert_eq!(priors.len(), 1);
    assert_eq!((priors[0].row.study_uid.as_str(), priors[0].matched), ("old-4", IdOnly));
    assert!(db.priors("other", 0, 10).expect("priors").is_empty());
}

/// Two hub processes (two connections to one store) race for the same study many times: each
/// time exactly one specialist holds it, and the same envelopes stored by both count once.
#[test]
fn two_connections_racing_for_one_study_give_it_to_exactly_one_and_store_each_envelope_once() {
    let dir = tempfile::tempdir().expect("tmp");
    let location = yilian_hub::store::testing::location(dir.path()).expect("location");
    let key_path = yilian_hub::store::sealed::default_key_path(&dir.path().join("y.db"));
    let mut a = Db::open_at(&location, &key_path).expect("db a");
    let key = SigningKey::generate().expect("key");
    let parts = study("dev-race-1", 1).split().expect("split");
    let batch: Vec<Incoming> =
        parts.iter().enumerate().map(|(i, p)| incoming(&key, i as u64 + 1, Payload::StudyPart(p.clone()))).collect();
    let b_location = location.clone();
    let b_key_path = key_path.clone();
    // The same messages reach both hubs (a redelivery after a hub stopped): one stores, one dedupes.
    let other = std::thread::spawn(move || {
        let mut b = Db::open_at(&b_location, &b_key_path).expect("db b");
        let batch: Vec<Incoming> = parts
            .iter()
            .enumerate()
            .map(|(i, p)| incoming(&key, i as u64 + 1, Payload::StudyPart(p.clone())))
            .collect();
        b.ingest(&batch, 0).expect("ingest b")
    });
    let mine = a.ingest(&batch, 0).expect("ingest a");
    let theirs = other.join().expect("thread");
    for (x, y) in mine.iter().zip(&theirs) {
        assert!(
            matches!((x, y), (Stored::New, Stored::Duplicate) | (Stored::Duplicate, Stored::New)),
            "each envelope stored by exactly one: {mine:?} / {theirs:?}"
        );
    }
    assert_eq!(a.studies(0, 10).expect("studies").len(), 1);
    for round in 0..20i64 {
        let now = 1_000_000 * (round + 1);
        let (loc, kp) = (location.clone(), key_path.clone());
        let rival = std::thread::spawn(move || {
            let mut b = Db::open_at(&loc, &kp).expect("db b");
            b.claim("dev-race-1", "wang", now, 60_000).expect("claim b")
        });
        let me = a.claim("dev-race-1", "li", now, 60_000).expect("claim a");
        let them = rival.join().expect("thread");
        assert!(me.is_ok() != them.is_ok(), "round {round}: exactly one holds the study ({me:?}, {them:?})");
        let holder = a.queue(now).expect("queue")[0].claimed_by.clone();
        assert_eq!(holder.as_deref(), Some(if me.is_ok() { "li" } else { "wang" }), "round {round}");
        // The claim runs out before the next round.
    }
}
