//! Patient data at rest in the hub's database, and retention, on real SQLite files.

use yilian_hub::retention::{self, Retention};
use yilian_hub::store::{Db, Incoming, StoreError, Stored};
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

fn study(uid: &str) -> Study {
    Study {
        study_uid: uid.into(),
        patient: Patient {
            id: "330102195001011234".into(),
            name: "张卫国".into(),
            sex: Sex::Male,
            birth_date: None,
            age_years: Some(76),
        },
        question: "胸闷三天".into(),
        priority: Priority::Routine,
        acquired_at_ms: 0,
        sample_rate_hz: 500,
        device_model: "m".into(),
        leads: ["I", "II"]
            .iter()
            .map(|name| {
                let s: Vec<i32> = (0..5_000).map(|k| ((k * 7919) % 4001) - 2000).collect();
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

fn chunk(first: u64) -> Payload {
    let s: Vec<i32> = (0..500).map(|k| (k * 37 % 301) - 150).collect();
    Payload::StreamChunk(StreamChunk {
        stream_id: 0,
        sample_rate_hz: 500,
        resolution_nv: 1000,
        first_sample: first,
        start_time_ms: 0,
        leads: vec![LeadSamples::encode("II", &s)],
    })
}

fn line(text: &str) -> Payload {
    Payload::DeviceOutput(DeviceOutput { port: "printer".into(), line: text.into(), received_at_ms: 0 })
}

fn db_files(dir: &std::path::Path) -> Vec<u8> {
    ["y.db", "y.db-wal"].iter().filter_map(|f| std::fs::read(dir.join(f)).ok()).flatten().collect()
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn the_database_files_hold_no_patient_data_and_the_store_still_reads_it_all() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut db = Db::open_test(dir.path()).expect("db");
    let key = SigningKey::generate().expect("key");
    let parts = study("dev-1-1").split().expect("split");
    let mut batch: Vec<Incoming> =
        parts.iter().enumerate().map(|(i, p)| incoming(&key, i as u64 + 1, Payload::StudyPart(p.clone()))).collect();
    batch.push(incoming(&key, 50, line("病人: 张卫国 ID: 330102195001011234")));
    batch.push(incoming(&key, 51, chunk(0)));
    assert!(db.ingest(&batch, 1).expect("ingest").iter().all(|s| *s == Stored::New));
    let (row, body) = db.study("dev-1-1", 1).expect("query").expect("stored");
    assert_eq!((row.patient_name.as_str(), row.patient_id.as_str()), ("张卫国", "330102195001011234"));
    assert_eq!(body, study("dev-1-1"));
    assert!(db.device_output("dev", 10).expect("output")[0].line.contains("张卫国"));
    assert_eq!(db.stream_samples("dev", 0, 0, 500).expect("samples")[0].2.len(), 500);

    let files = db_files(dir.path());
    assert!(!contains(&files, "张卫国".as_bytes()), "the name is readable in the database files");
    assert!(!contains(&files, b"330102195001011234"), "the identity number is readable");
    assert!(!contains(&files, "胸闷三天".as_bytes()), "the question is readable");
    let encoded = &study("dev-1-1").leads[1].samples.data;
    assert!(!contains(&files, &encoded[1000..1048]), "the waveform is readable");
    let key_file = dir.path().join("keys/store.key");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&key_file).expect("key").permissions().mode() & 0o777, 0o600);
}

#[test]
fn without_its_key_or_with_another_the_database_is_refused_and_plaintext_rows_are_sealed_on_open() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("y.db");
    let key_file = dir.path().join("keys/store.key");
    let key = SigningKey::generate().expect("key");
    {
        let mut db = Db::open(&path).expect("db");
        let parts = study("dev-1-1").split().expect("split");
        let batch: Vec<Incoming> = parts
            .iter()
            .enumerate()
            .map(|(i, p)| incoming(&key, i as u64 + 1, Payload::StudyPart(p.clone())))
            .collect();
        db.ingest(&batch, 1).expect("ingest");
    }
    let kept = dir.path().join("store.key.kept");
    std::fs::rename(&key_file, &kept).expect("move the key away");
    let err = Db::open(&path).err().expect("no key: refused");
    assert!(matches!(&err, StoreError::Key { reason, .. } if reason.contains("missing")), "{err}");
    assert!(!key_file.exists(), "no new key is made for a sealed database");
    let other = dir.path().join("other.key");
    std::fs::write(&other, [9u8; 32]).expect("write");
    std::fs::set_permissions(&other, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let err = Db::open_with_key(&path, &other).err().expect("wrong key: refused");
    assert!(err.to_string().contains("not the key"), "{err}");

    // A database from before sealing (plaintext rows, no key check value) is sealed when it
    // first opens with a key.
    {
        let conn = rusqlite::Connection::open(&path).expect("raw");
        conn.execute("UPDATE studies SET patient_name = '王五', question = '旧问题'", []).expect("plaintext");
        conn.execute("DELETE FROM store_key", []).expect("as before sealing");
    }
    let db = Db::open_with_key(&path, &kept).expect("reopen with the key");
    let (row, _) = db.study("dev-1-1", 1).expect("query").expect("stored");
    assert_eq!((row.patient_name.as_str(), row.question.as_str()), ("王五", "旧问题"));
    let conn = rusqlite::Connection::open(&path).expect("raw");
    let raw: Vec<u8> = conn.query_row("SELECT patient_name FROM studies", [], |r| r.get(0)).expect("raw row");
    assert!(yilian_protocol::at_rest::is_sealed(&raw));
    // A sealed value moved to another column does not open.
    conn.execute("UPDATE studies SET question = patient_name", []).expect("move");
    drop(conn);
    assert!(db.study("dev-1-1", 1).is_err(), "a value moved to another column must not open");
}

use std::os::unix::fs::PermissionsExt;

#[test]
fn retention_deletes_what_is_older_than_its_kind_allows_keeps_the_rest_and_audits_it() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut db = Db::open_test(dir.path()).expect("db");
    let key = SigningKey::generate().expect("key");
    const DAY: i64 = 24 * 60 * 60 * 1000;
    let old = 1_700_000_000_000i64;
    let new = old + 100 * DAY;
    let old_chunk = incoming(&key, 1, chunk(0));
    let old_parts = study("dev-old").split().expect("split");
    let mut batch = vec![old_chunk, incoming(&key, 2, line("旧的一行"))];
    batch.extend(
        old_parts.iter().enumerate().map(|(i, p)| incoming(&key, 10 + i as u64, Payload::StudyPart(p.clone()))),
    );
    db.ingest(&batch, old).expect("ingest old");
    let new_parts = study("dev-new").split().expect("split");
    let mut batch = vec![incoming(&key, 100, chunk(500)), incoming(&key, 101, line("新的一行"))];
    batch.extend(
        new_parts.iter().enumerate().map(|(i, p)| incoming(&key, 110 + i as u64, Payload::StudyPart(p.clone()))),
    );
    db.ingest(&batch, new).expect("ingest new");

    // A pending device's messages in quarantine: one old, one new.
    let held = |seq: u64| yilian_hub::store::lifecycle::Quarantined {
        device_id: "dev-pending".into(),
        seq,
        digest: [seq as u8; 32],
        kind: 3,
        envelope: vec![1, 2, 3],
    };
    db.quarantine(&[held(1)], "pending device", old).expect("quarantine old");
    db.quarantine(&[held(2)], "pending device", new).expect("quarantine new");

    let policy =
        Retention { stream_days: 30, device_output_days: 30, studies_days: 60, images_days: 60, quarantine_days: 60 };
    let swept = retention::sweep(&mut db, &policy, new + DAY).expect("sweep");
    assert_eq!(
        swept.deleted,
        vec![
            (retention::Kind::Stream, 1),
            (retention::Kind::DeviceOutput, 1),
            (retention::Kind::Studies, 1),
            (retention::Kind::Quarantine, 1)
        ]
    );
    assert_eq!(db.quarantined("dev-pending").expect("count"), 1, "the newer quarantined message stays");
    let lines: Vec<String> = db.device_output("dev", 10).expect("output").into_iter().map(|l| l.line).collect();
    assert_eq!(lines, vec!["新的一行".to_string()]);
    let streams = db.streams("dev").expect("streams");
    assert_eq!((streams[0].chunks, streams[0].runs[0].first_sample), (1, 500));
    assert!(db.study("dev-old", new).expect("query").is_none());
    assert!(db.study("dev-new", new).expect("query").is_some());
    // The deleted envelope's row still recognises a late resend as a duplicate.
    assert_eq!(db.ingest(&[incoming(&key, 1, chunk(0))], new).expect("again"), vec![Stored::Duplicate]);
    let audit = db.audit_log(10).expect("audit");
    let entries: Vec<(&str, &str, &str)> =
        audit.iter().map(|e| (e.user.as_str(), e.action.as_str(), e.subject.as_str())).collect();
    for subject in ["stream chunks", "device output", "ECG studies", "quarantined messages"] {
        assert!(
            entries.contains(&("system", "retention delete", subject)),
            "no audit entry for {subject}: {entries:?}"
        );
    }
    assert!(audit.iter().all(|e| e.detail.starts_with("1 deleted")), "{audit:?}");
    // A second sweep finds nothing and writes nothing.
    assert_eq!(retention::sweep(&mut db, &policy, new + DAY).expect("sweep").deleted, vec![]);
    assert_eq!(db.audit_log(10).expect("audit").len(), 4);
}
