//! Golden bytes: one frozen envelope per message kind, and one serial frame per frame type.
//!
//! bincode writes fields in declaration order with no names, so reordering or retyping a field
//! changes the wire format without any error; these files catch it. Ed25519 signatures are
//! deterministic, so with the committed test key the bytes are exactly reproducible.
//!
//! To bless new files after an intended change (a new protocol version):
//! `YILIAN_BLESS=1 cargo test -p yilian-protocol --test golden`.
//!
//! Kinds that carry compressed samples have two files. `<name>.bin` was sealed when the sample
//! codec wrote format 1; it is kept unchanged as a decode-only fixture, and the test proves that
//! it still verifies and that its samples decode to the same values. `<name>-codec2.bin` holds
//! the same payload as sealed today (codec format 2). Blessing writes only the current ones.

use std::path::PathBuf;
use yilian_protocol::codec;
use yilian_protocol::envelope::{Envelope, Header, seal};
use yilian_protocol::frame::{self, Frame, StreamSamples, StudyStart};
use yilian_protocol::keys::SigningKey;
use yilian_protocol::message::*;
use yilian_protocol::topic::{Channel, Topic};

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/golden/v1")
}

fn key() -> SigningKey {
    let path = dir().join("test-key.pk8");
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(_) if std::env::var_os("YILIAN_BLESS").is_some() => {
            let k = SigningKey::generate().expect("rng");
            std::fs::write(&path, k.pkcs8()).expect("write key");
            k.pkcs8().to_vec()
        }
        Err(e) => panic!("{}: {e}", path.display()),
    };
    SigningKey::from_pkcs8(&bytes).expect("golden key")
}

fn check(name: &str, bytes: &[u8]) {
    let path = dir().join(format!("{name}.bin"));
    if std::env::var_os("YILIAN_BLESS").is_some() {
        std::fs::write(&path, bytes).expect("bless");
        return;
    }
    let golden = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(bytes, golden.as_slice(), "{name}: wire bytes changed; bless only for a new protocol version");
}

const T: i64 = 1_764_000_000_000;

fn payloads() -> Vec<(&'static str, Channel, Lane, Payload)> {
    let study = Study {
        study_uid: "cart-1-1764000000000-1".into(),
        patient: Patient {
            id: "MZ001000".into(),
            name: "张伟".into(),
            sex: Sex::Male,
            birth_date: Date::new(1958, 2, 28),
            age_years: Some(67),
        },
        question: "胸痛2小时".into(),
        priority: Priority::Stat,
        acquired_at_ms: T,
        sample_rate_hz: 500,
        device_model: "YL-SIM-12 0.1.0".into(),
        leads: vec![
            StudyLead::encode("I", 2500.0, &[-2, -2, -2, -2, -3]),
            StudyLead::encode("II", 2500.0, &[5, 9, 14, 20, 27]),
        ],
        warnings: vec!["V4 lead off".into()],
        median_beat: Some(MedianBeat {
            sample_rate_hz: 500,
            leads: vec![StudyLead { derived: true, ..StudyLead::encode("III", 2500.0, &[4, 4, 2, 3]) }],
        }),
        annotations: vec![Annotation { sample: 77, lead: None, label: "N".into(), text: Some("(N".into()) }],
        measurements: vec![Measurement { name: "QTc".into(), value: 443.0, unit: "ms".into() }],
        interpretation: vec!["窦性心律 Sinus rhythm".into()],
        source: Some(SourceFile {
            format: "scp-ecg".into(),
            format_version: "2.0".into(),
            files: vec![OriginalFile { name: "0001.SCP".into(), size: 3, sha256: [7; 32], deflated: vec![1, 2, 3] }],
        }),
    };
    let part = study.split().expect("split").remove(0);
    vec![
        (
            "stream_chunk",
            Channel::Up,
            Lane::Stream,
            Payload::StreamChunk(StreamChunk {
                stream_id: 0,
                sample_rate_hz: 360,
                resolution_nv: 5000,
                first_sample: 3600,
                start_time_ms: T,
                leads: vec![LeadSamples::encode("II", &[-29, -29, -29, -30, -31])],
            }),
        ),
        ("study_part", Channel::Up, Lane::Stat, Payload::StudyPart(part)),
        (
            "device_output",
            Channel::Up,
            Lane::Stream,
            Payload::DeviceOutput(DeviceOutput {
                port: "printer".into(),
                line: "HR 72 bpm 窦性心律".into(),
                received_at_ms: T,
            }),
        ),
        (
            "report_receipt",
            Channel::Up,
            Lane::Stream,
            Payload::ReportReceipt(ReportReceipt {
                report_id: "R000001".into(),
                study_uid: "s".into(),
                stored_at_ms: T,
            }),
        ),
        (
            "stream_gap",
            Channel::Up,
            Lane::Stream,
            Payload::StreamGap(StreamGap {
                stream_id: 0,
                first_sample: 3600,
                end_sample: 7200,
                reason: "spool full".into(),
            }),
        ),
        (
            "image_manifest",
            Channel::Up,
            Lane::BulkUrgent,
            Payload::ImageManifest(yilian_protocol::imaging::ImageManifest {
                study_uid: "1.2.826.0.1.3680043.8.498.1".into(),
                priority: Priority::Urgent,
                modality: "CR".into(),
                patient_name: "张伟".into(),
                patient_id: "MZ001000".into(),
                calling_ae: "DR_ROOM1".into(),
                received_at_ms: T,
                part: 0,
                parts: 1,
                instances: vec![yilian_protocol::imaging::ManifestInstance {
                    sop_instance_uid: "1.2.826.0.1.3680043.8.498.2".into(),
                    sop_class_uid: "1.2.840.10008.5.1.4.1.1.1".into(),
                    series_uid: "1.2.826.0.1.3680043.8.498.3".into(),
                    transfer_syntax: "1.2.840.10008.1.2.1".into(),
                    size: 2300,
                    sha256: [9; 32],
                    chunks: 1,
                }],
            }),
        ),
        (
            "blob_chunk",
            Channel::Up,
            Lane::Bulk,
            Payload::BlobChunk(yilian_protocol::imaging::BlobChunk {
                study_uid: "1.2.826.0.1.3680043.8.498.1".into(),
                sop_instance_uid: "1.2.826.0.1.3680043.8.498.2".into(),
                index: 0,
                sha256: [0x2c; 32],
                bytes: b"DICM".to_vec(),
            }),
        ),
        (
            "status",
            Channel::Status,
            Lane::Stream,
            Payload::Status(Status {
                state: LinkState::Online,
                agent_version: "0.1.0".into(),
                spool_entries: 3,
                spool_bytes: 4096,
                detail: String::new(),
            }),
        ),
        (
            "ack",
            Channel::Ack,
            Lane::Stream,
            Payload::Ack(Ack::from_seqs(
                "cart-1",
                0x5eed,
                &[1, 2, 3, 7],
                vec![
                    Refusal { seq: 4, reason: RefusalReason::SeqReused { highest_seq: 9 } },
                    Refusal { seq: 5, reason: RefusalReason::Inconsistent("study uid reused".into()) },
                ],
            )),
        ),
        (
            "report",
            Channel::Report,
            Lane::Stat,
            Payload::Report(Report {
                report_id: "R000001".into(),
                study_uid: "cart-1-1764000000000-1".into(),
                patient_name: "张伟".into(),
                specialist_id: "li.na".into(),
                specialist_name: "李娜".into(),
                findings: "窦性心律".into(),
                conclusion: "正常心电图".into(),
                reported_at_ms: T,
            }),
        ),
        (
            "key_rotation",
            Channel::Up,
            Lane::Stream,
            Payload::KeyRotation(yilian_protocol::message::KeyRotation::sign("cart-1", &key().public_key(), &key(), T)),
        ),
        (
            "fleet_report",
            Channel::Up,
            Lane::Stream,
            Payload::FleetReport(yilian_protocol::message::FleetReport {
                installed_version: "1.2.0".into(),
                installed_sha256: [0xab; 32],
                config_version: "c7".into(),
                trial_version: Some("1.3.0".into()),
                state: "on trial".into(),
                download_per_mille: 0,
                last_version: "1.2.1".into(),
                last_reason: "crashed 3 times on trial (exit status: 3)".into(),
                last_at_ms: T,
            }),
        ),
        (
            "update_assignment",
            Channel::Ack,
            Lane::Stat,
            Payload::UpdateAssignment(yilian_protocol::message::UpdateAssignment {
                issued_at_ms: T,
                targets: vec![yilian_protocol::message::AssignedTarget {
                    rollout_id: 7,
                    name: "agent-x86_64-unknown-linux-gnu-1.3.0".into(),
                    version: "1.3.0".into(),
                    sha256: [0x5a; 32],
                }],
            }),
        ),
        (
            "study_claim",
            Channel::Report,
            Lane::Stat,
            Payload::StudyClaim(yilian_protocol::message::StudyClaim {
                study_uid: "cart-1-42".into(),
                specialist_name: "李医生".into(),
                claimed: true,
                at_ms: T,
            }),
        ),
        (
            "critical_notice",
            Channel::Report,
            Lane::Stat,
            Payload::CriticalNotice(yilian_protocol::message::CriticalNotice {
                report_id: "R000042".into(),
                study_uid: "cart-1-42".into(),
                patient_name: "张伟".into(),
                conclusion: "急性下壁心肌梗死".into(),
                specialist_name: "李医生".into(),
                reported_at_ms: T,
            }),
        ),
        (
            "critical_ack",
            Channel::Up,
            Lane::Stat,
            Payload::CriticalAck(yilian_protocol::message::CriticalAck {
                report_id: "R000042".into(),
                study_uid: "cart-1-42".into(),
                clinician: "王芳".into(),
                acknowledged_at_ms: T,
            }),
        ),
        (
            "quality_override",
            Channel::Up,
            Lane::Stat,
            Payload::QualityOverride(yilian_protocol::message::QualityOverride {
                study_uid: "cart-1-42".into(),
                clinician: "王芳".into(),
                reason: "患者已离开 / the patient has left".into(),
                overridden_at_ms: T,
            }),
        ),
        (
            "hub_key_rotation",
            Channel::Ack,
            Lane::Stream,
            Payload::HubKeyRotation(yilian_protocol::message::KeyRotation::sign(
                &yilian_protocol::enrol::hub_signer("hub"),
                &key().public_key(),
                &key(),
                T,
            )),
        ),
    ]
}

/// Kinds whose payload carries compressed samples (see the module doc).
const WITH_SAMPLES: [&str; 2] = ["stream_chunk", "study_part"];

/// Every compressed sample stream in `p` (a study part is assembled first).
fn sample_streams(p: &Payload) -> Vec<EncodedSamples> {
    match p {
        Payload::StreamChunk(c) => c.leads.iter().map(|l| l.samples.clone()).collect(),
        Payload::StudyPart(part) => {
            let s = assemble(std::slice::from_ref(part)).expect("a one-part study");
            let beat = s.median_beat.iter().flat_map(|b| &b.leads);
            s.leads.iter().chain(beat).map(|l| l.samples.clone()).collect()
        }
        _ => Vec::new(),
    }
}

/// `p` with every sample stream decoded and compressed again by today's codec.
fn recompressed(p: &Payload) -> Payload {
    let again = |e: &mut EncodedSamples| *e = codec::encode(&codec::decode(e, u32::MAX).expect("samples decode"));
    match p.clone() {
        Payload::StreamChunk(mut c) => {
            c.leads.iter_mut().for_each(|l| again(&mut l.samples));
            Payload::StreamChunk(c)
        }
        Payload::StudyPart(part) => {
            let mut s = assemble(&[part]).expect("a one-part study");
            s.leads.iter_mut().for_each(|l| again(&mut l.samples));
            s.median_beat.iter_mut().flat_map(|b| &mut b.leads).for_each(|l| again(&mut l.samples));
            Payload::StudyPart(s.split().expect("split").remove(0))
        }
        other => other,
    }
}

#[test]
fn every_envelope_kind_matches_its_golden_bytes_and_still_verifies() {
    let key = key();
    for (name, channel, lane, payload) in payloads() {
        let topic = Topic::new("xiangzhen-1", "cart-1", channel).expect("topic");
        let signer = if channel.is_uplink() { "cart-1" } else { "hub" };
        let mut header = Header::new(&key, signer, 42, T, lane);
        header.epoch = if channel.is_uplink() { 0x5eed } else { 0 };
        let bytes = seal(&key, header, &topic, &payload).expect("seal");
        if WITH_SAMPLES.contains(&name) {
            assert!(sample_streams(&payload).iter().all(|e| e.data.first() == Some(&0xFF)), "{name}: format 2");
            check(&format!("{name}-codec2"), &bytes);
        } else {
            check(name, &bytes);
        }
        let v = Envelope::decode(&bytes).expect("decode").verify(&key.public_key(), &topic, Some(T)).expect("verify");
        assert_eq!(v.payload(), &payload, "{name}");
    }
}

#[test]
fn envelopes_sealed_with_codec_format_1_still_verify_and_decode_to_the_same_samples() {
    let key = key();
    for (name, channel, _, payload) in payloads().into_iter().filter(|p| WITH_SAMPLES.contains(&p.0)) {
        let path = dir().join(format!("{name}.bin"));
        let old = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let topic = Topic::new("xiangzhen-1", "cart-1", channel).expect("topic");
        let v = Envelope::decode(&old).expect("decode").verify(&key.public_key(), &topic, Some(T)).expect("verify");
        let streams = sample_streams(v.payload());
        assert!(!streams.is_empty(), "{name}: no samples");
        for e in &streams {
            // Format 2 starts with 0xFF; format 1 with its order and Rice parameter (k <= 40).
            assert_ne!(e.data.first(), Some(&0xFF), "{name}: the fixture should hold format-1 samples");
        }
        assert_eq!(recompressed(v.payload()), payload, "{name}: same fields and the same sample values");
    }
}

#[test]
fn every_frame_type_matches_its_golden_bytes() {
    let frames = [
        ("frame_hello", Frame::Hello { model: "YL-SIM-12".into(), firmware: "1.0".into() }),
        (
            "frame_study_start",
            Frame::StudyStart(StudyStart {
                study_id: 7,
                priority: Priority::Urgent,
                sample_rate_hz: 500,
                resolution_nv: 2500,
                acquired_at_ms: T,
                leads: vec![1, 2, 61, 62, 63, 64, 3, 4, 5, 6, 7, 8],
                patient_id: "MZ001001".into(),
                patient_name: "王芳".into(),
                sex: Sex::Female,
                birth_date: Date::new(1962, 10, 1),
                question: "心悸一周".into(),
            }),
        ),
        (
            "frame_study_samples",
            Frame::StudySamples { study_id: 7, first_sample: 256, samples: vec![1, -1, 300, -300] },
        ),
        ("frame_study_end", Frame::StudyEnd { study_id: 7, samples_per_lead: 5000 }),
        (
            "frame_stream_samples",
            Frame::StreamSamples(StreamSamples {
                stream_id: 0,
                sample_rate_hz: 360,
                resolution_nv: 5000,
                leads: vec![2, 7],
                first_sample: 36,
                time_ms: T,
                samples: vec![-29, 1, -29, 2],
            }),
        ),
    ];
    for (i, (name, f)) in frames.into_iter().enumerate() {
        let bytes = frame::encode(i as u16, &f).expect("encode");
        check(name, &bytes);
        assert_eq!(frame::decode(&bytes[1..bytes.len() - 1]).expect("decode"), (i as u16, f));
    }
}
