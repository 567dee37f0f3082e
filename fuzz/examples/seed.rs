//! Writes the seed corpus (`corpus/<target>/seed-*`) from real data: the PhysioNet WFDB
//! recordings in `../shared/data/wfdb` (MIT-BIH format 212, PTB and LUDB format 16) and the golden
//! envelopes and frames of `protocol/tests/data/golden/v1`.
//!
//! Run from the repository root (stable is enough):
//! `cargo run --manifest-path fuzz/Cargo.toml --example seed`
//! (`YILIAN_SHARED_DATA` overrides the data folder). Seeds are deterministic (Ed25519 signatures
//! are), so re-running rewrites the same bytes. Only `seed-*` files are written; inputs the
//! fuzzer found are left alone.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use yilian_agent::assemble::{Assembled, Assembler};
use yilian_agent::quota;
use yilian_formats::wfdb;
use yilian_protocol::envelope::{self, Envelope, Header};
use yilian_protocol::frame::{self, Frame, StreamSamples, StudyStart};
use yilian_protocol::keys::SigningKey;
use yilian_protocol::message::*;
use yilian_protocol::topic::{self, Channel, Topic};
use yilian_protocol::{codec, lead};

const T: i64 = 1_764_000_000_000;
const MAX_SEED: usize = 64 * 1024;

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn shared_data() -> PathBuf {
    std::env::var_os("YILIAN_SHARED_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest_dir().join("../../shared/data"))
}

fn golden_dir() -> PathBuf {
    manifest_dir().join("../protocol/tests/data/golden/v1")
}

/// A WFDB record: (description, raw ADC samples, baseline, resolution nV if whole) per signal.
struct Record {
    rate_hz: u16,
    signals: Vec<(String, Vec<i32>, i32, Option<u32>)>,
}

impl Record {
    fn load(dir: &Path, name: &str) -> Record {
        let text = std::fs::read_to_string(dir.join(format!("{name}.hea"))).expect("header");
        let header = wfdb::parse_header(&text).expect("parse header");
        let mut files: Vec<&str> = header.signals.iter().map(|s| s.file.as_str()).collect();
        files.dedup();
        let mut by_signal = vec![Vec::new(); header.signals.len()];
        for f in files {
            let bytes = std::fs::read(dir.join(f)).expect("signal file");
            for (i, s) in wfdb::read_signals(&header, f, &bytes).expect("read signals") {
                by_signal[i] = s;
            }
        }
        let signals = header
            .signals
            .iter()
            .zip(by_signal)
            .map(|(s, v)| (s.description.clone(), v, s.baseline, s.resolution_nv()))
            .collect();
        Record { rate_hz: header.sample_rate_hz as u16, signals }
    }

    /// Known ECG leads with the first lead's whole-nV resolution: (code, baseline-free i16).
    fn leads(&self) -> (u32, Vec<(u8, Vec<i16>)>) {
        let mut res = None;
        let mut out = Vec::new();
        for (desc, v, base, r) in &self.signals {
            let d = desc.trim();
            let Some(code) = lead::code_of(d.strip_prefix("ML").unwrap_or(d)) else { continue };
            let Some(r) = r else { continue };
            if *res.get_or_insert(*r) != *r {
                continue;
            }
            out.push((code, v.iter().map(|x| (x - base).clamp(i16::MIN.into(), i16::MAX.into()) as i16).collect()));
        }
        (res.expect("an ECG lead"), out)
    }
}

struct Corpus {
    root: PathBuf,
    written: BTreeMap<&'static str, (usize, usize)>,
}

impl Corpus {
    fn put(&mut self, target: &'static str, name: &str, bytes: &[u8]) {
        assert!(bytes.len() <= MAX_SEED, "{target}/{name}: {} bytes", bytes.len());
        let dir = self.root.join(target);
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(dir.join(format!("seed-{name}")), bytes).expect("write seed");
        let e = self.written.entry(target).or_default();
        e.0 += 1;
        e.1 += bytes.len();
    }
}

fn visit(n: usize) -> (Priority, &'static str, &'static str, Sex, Option<Date>) {
    const NAMES: [&str; 4] = ["张伟", "王芳", "李娜", "Zhao Min"];
    const QUESTIONS: [&str; 3] = ["胸痛2小时，心电图ST段抬高？请排除急性心梗", "心悸一周，请会诊", ""];
    let p = [Priority::Stat, Priority::Urgent, Priority::Routine][n % 3];
    let sex = [Sex::Male, Sex::Female, Sex::Unknown][n % 3];
    let date = if n % 3 == 2 { None } else { Date::new(1940 + n as u16, 2, 28 + (n % 2) as u8) };
    (p, NAMES[n % NAMES.len()], QUESTIONS[n % QUESTIONS.len()], sex, date)
}

fn study_start(id: u32, n: usize, rate: u16, res: u32, leads: &[(u8, Vec<i16>)]) -> Frame {
    let (priority, name, question, sex, birth_date) = visit(n);
    Frame::StudyStart(StudyStart {
        study_id: id,
        priority,
        sample_rate_hz: rate,
        resolution_nv: res,
        acquired_at_ms: T + n as i64 * 60_000,
        leads: leads.iter().map(|(c, _)| *c).collect(),
        patient_id: format!("MZ{:06}", 1000 + n),
        patient_name: name.into(),
        sex,
        birth_date,
        question: question.into(),
    })
}

fn interleave(leads: &[(u8, Vec<i16>)], start: usize, n: usize) -> Vec<i16> {
    (start..start + n).flat_map(|i| leads.iter().map(move |(_, s)| s[i % s.len()])).collect()
}

fn stream_frame(id: u8, rate: u16, res: u32, leads: &[(u8, Vec<i16>)], first: usize, n: usize) -> Frame {
    Frame::StreamSamples(StreamSamples {
        stream_id: id,
        sample_rate_hz: rate,
        resolution_nv: res,
        leads: leads.iter().map(|(c, _)| *c).collect(),
        first_sample: first as u64,
        time_ms: T + (first as i64 * 1000) / i64::from(rate),
        samples: interleave(leads, first, n),
    })
}

/// A whole cart study as frames: start, samples in blocks of `block` per lead, end.
fn study_frames(
    id: u32,
    n: usize,
    rate: u16,
    res: u32,
    leads: &[(u8, Vec<i16>)],
    len: usize,
    block: usize,
) -> Vec<Frame> {
    let mut out = vec![study_start(id, n, rate, res, leads)];
    let mut s = 0;
    while s < len {
        let k = block.min(len - s);
        out.push(Frame::StudySamples { study_id: id, first_sample: s as u32, samples: interleave(leads, s, k) });
        s += k;
    }
    out.push(Frame::StudyEnd { study_id: id, samples_per_lead: len as u32 });
    out
}

fn wire(frames: &[Frame], first_seq: u16) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, f) in frames.iter().enumerate() {
        out.extend(frame::encode(first_seq.wrapping_add(i as u16), f).expect("frame fits"));
    }
    out
}

/// Runs frames through the agent's own assembler.
fn assemble(frames: Vec<Frame>, chunk_ms: u32) -> Vec<Assembled> {
    let mut a = Assembler::new("cart-1", chunk_ms);
    let mut out: Vec<Assembled> = frames.into_iter().flat_map(|f| a.handle(f)).collect();
    out.extend(a.flush_streams());
    out
}

fn one_study(frames: Vec<Frame>) -> Study {
    assemble(frames, 1000)
        .into_iter()
        .find_map(|a| match a {
            Assembled::Study(s) => Some(*s),
            _ => None,
        })
        .expect("a study")
}

fn chunks(frames: Vec<Frame>, chunk_ms: u32) -> Vec<StreamChunk> {
    assemble(frames, chunk_ms)
        .into_iter()
        .filter_map(|a| match a {
            Assembled::Chunk(c) => Some(c),
            _ => None,
        })
        .collect()
}

fn body(kind: u16, bytes: &[u8]) -> Vec<u8> {
    let mut v = vec![kind as u8];
    v.extend_from_slice(bytes);
    v
}

fn codec_seed(samples: &[i32]) -> Vec<u8> {
    let e = codec::encode(samples);
    let mut v = e.count.to_le_bytes().to_vec();
    v.extend(e.data);
    v
}

fn i32_bytes(samples: &[i32]) -> Vec<u8> {
    samples.iter().flat_map(|s| s.to_le_bytes()).collect()
}

fn main() {
    let data = shared_data().join("wfdb");
    let mit100 = Record::load(&data.join("mitdb"), "100");
    let mit203 = Record::load(&data.join("mitdb"), "203");
    let mit208 = Record::load(&data.join("mitdb"), "208");
    let ptb = Record::load(&data.join("ptbdb"), "s0010_re");
    let ludb = Record::load(&data.join("ludb"), "1");
    let (ptb_res, ptb_leads) = ptb.leads();
    assert_eq!(ptb_leads.len(), 12, "PTB s0010_re has the 12 standard leads");
    let mits: Vec<(&str, u32, Vec<(u8, Vec<i16>)>)> = [("100", &mit100), ("203", &mit203), ("208", &mit208)]
        .into_iter()
        .map(|(n, r)| {
            let (res, l) = r.leads();
            (n, res, l)
        })
        .collect();
    let key_bytes = std::fs::read(golden_dir().join("test-key.pk8")).expect("golden key");
    let key = SigningKey::from_pkcs8(&key_bytes).expect("golden key");
    let mut golden: Vec<(String, Vec<u8>)> = std::fs::read_dir(golden_dir())
        .expect("golden dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "bin"))
        .map(|p| (p.file_stem().expect("stem").to_string_lossy().into_owned(), std::fs::read(&p).expect("golden")))
        .collect();
    golden.sort();

    let mut c = Corpus { root: manifest_dir().join("corpus"), written: BTreeMap::new() };

    // ---- serial frames -------------------------------------------------------------------
    let mut all_golden_frames = Vec::new();
    for (name, bytes) in golden.iter().filter(|(n, _)| n.starts_with("frame_")) {
        c.put("frame_decode", &format!("golden-{name}"), &bytes[1..bytes.len() - 1]);
        all_golden_frames.extend_from_slice(bytes);
    }
    let strip = |w: Vec<u8>| w[1..w.len() - 1].to_vec();
    let enc = |seq: u16, f: &Frame| frame::encode(seq, f).expect("frame fits");
    c.put(
        "frame_decode",
        "hello",
        &strip(enc(0, &Frame::Hello { model: "YL-SIM-12".into(), firmware: "0.1.0".into() })),
    );
    for n in 0..3 {
        c.put(
            "frame_decode",
            &format!("ptb-study-start-{n}"),
            &strip(enc(n as u16, &study_start(7 + n as u32, n, ptb.rate_hz, ptb_res, &ptb_leads))),
        );
    }
    for (i, (start, k)) in [(0, 1), (1000, 16), (5000, 64), (20_000, 256)].into_iter().enumerate() {
        let f =
            Frame::StudySamples { study_id: 7, first_sample: start as u32, samples: interleave(&ptb_leads, start, k) };
        c.put("frame_decode", &format!("ptb-study-samples-{k}"), &strip(enc(10 + i as u16, &f)));
    }
    c.put(
        "frame_decode",
        "study-end",
        &strip(enc(u16::MAX, &Frame::StudyEnd { study_id: 7, samples_per_lead: 38_400 })),
    );
    for (name, res, leads) in &mits {
        for (first, n) in [(0, 90), (360_000, 360)] {
            let f = stream_frame(0, 360, *res, leads, first, n);
            c.put("frame_decode", &format!("mitdb{name}-stream-{n}-at-{first}"), &strip(enc(first as u16, &f)));
        }
    }
    c.put(
        "frame_decode",
        "ptb-stream-12-leads",
        &strip(enc(3, &stream_frame(1, ptb.rate_hz, ptb_res, &ptb_leads, 2000, 100))),
    );

    // ---- the agent's YLF driver: byte streams as a port delivers them ---------------------
    let ylf = "ylf_driver";
    c.put(ylf, "golden-frames", &all_golden_frames);
    let mut session = wire(&[Frame::Hello { model: "YL-SIM-12".into(), firmware: "0.1.0".into() }], 0);
    session.extend(wire(&study_frames(1, 0, ptb.rate_hz, ptb_res, &ptb_leads, 1000, 256), 1));
    c.put(ylf, "ptb-study-session", &session);
    let mut streams = Vec::new();
    for (name, res, leads) in &mits {
        let frames: Vec<Frame> = (0..10).map(|i| stream_frame(0, 360, *res, leads, 3600 + i * 36, 36)).collect();
        let bytes = wire(&frames, 100);
        c.put(ylf, &format!("mitdb{name}-stream"), &bytes);
        streams.push(bytes);
    }
    let s = &streams[0];
    let mut noisy = b"\x13\x37garbage line noise\r\nHR 72\n".to_vec();
    noisy.extend_from_slice(&s[..s.len() / 2]);
    noisy.extend_from_slice(b"\xff\xfe\x01\x02");
    noisy.extend_from_slice(&s[s.len() / 2..]);
    c.put(ylf, "garbage-around-frames", &noisy);
    let second = s.iter().skip(1).position(|b| *b == 0).expect("delimiter") + 2;
    let mut bad_crc = s.clone();
    bad_crc[second + 6] ^= 0x40;
    c.put(ylf, "corrupt-crc", &bad_crc);
    let mut cut = s[..second + 40].to_vec();
    cut.extend_from_slice(&s[second..]);
    c.put(ylf, "truncated-frame", &cut);
    let mitf = |first: usize| stream_frame(0, 360, mits[0].1, &mits[0].2, first, 36);
    let mut gaps = wire(&[mitf(0), mitf(36)], u16::MAX - 1);
    gaps.extend(wire(&[mitf(108)], 1));
    gaps.extend(wire(&[mitf(144)], 1));
    c.put(ylf, "link-gap-wrap-and-repeat", &gaps);
    let mut long = vec![0u8];
    long.extend((0..frame::MAX_ENCODED + 100).map(|i| 1 + (i % 255) as u8));
    long.push(0);
    long.extend_from_slice(&s[..second]);
    c.put(ylf, "over-long-then-frame", &long);
    c.put(ylf, "mid-stream-start", &s[5..]);
    let mut doubled = vec![0u8; 4];
    for w in s.split(|b| *b == 0).filter(|w| !w.is_empty()) {
        doubled.extend_from_slice(w);
        doubled.extend_from_slice(&[0, 0, 0]);
    }
    c.put(ylf, "back-to-back-delimiters", &doubled);

    // ---- the agent's text driver: selector byte (0 UTF-8, 1 GBK, 2 GB18030), then bytes ----
    let printout = "姓名: 张伟  性别: 男  年龄: 66\r\nHR: 72 bpm  PR: 160 ms  QRS: 96 ms  QT/QTc: 380/402 ms\r\n\
                    P/QRS/T 轴: 60/45/50 °\r\n诊断: 窦性心律  ST段抬高（下壁）\r\n请结合临床\r\n";
    let ptb_hea = std::fs::read_to_string(data.join("ptbdb/s0010_re.hea")).expect("ptb header");
    let mit_hea = std::fs::read_to_string(data.join("mitdb/208.hea")).expect("mitdb header");
    let text_seed = |sel: u8, bytes: &[u8]| {
        let mut v = vec![sel];
        v.extend_from_slice(bytes);
        v
    };
    c.put("text_driver", "gbk-printout", &text_seed(1, &encoding_rs::GBK.encode(printout).0));
    c.put("text_driver", "utf8-printout", &text_seed(0, printout.as_bytes()));
    c.put(
        "text_driver",
        "gb18030-printout",
        &text_seed(2, &encoding_rs::GB18030.encode(&format!("{printout}𠀀 € ①\n")).0),
    );
    c.put("text_driver", "gbk-ptb-header", &text_seed(1, &encoding_rs::GBK.encode(&ptb_hea).0));
    c.put("text_driver", "utf8-mitdb-header", &text_seed(0, mit_hea.as_bytes()));
    let mut long_line = vec![b'#'; 5000];
    long_line.extend_from_slice(b"\r\nafter\n");
    c.put("text_driver", "long-line", &text_seed(0, &long_line));
    c.put("text_driver", "invalid-utf8", &text_seed(0, b"HR \xff\xfe 72\n\xe5\xbf\x83\xe7\x8e\n\r\r\n   \n"));
    c.put("text_driver", "invalid-gbk", &text_seed(1, b"\x81\x30\x81\x30 \xd5\xc5\xff\n\xa1\n"));
    c.put("text_driver", "no-final-newline", &text_seed(1, &encoding_rs::GBK.encode("心率 72\n窦性心律").0));
    c.put("text_driver", "cr-only-lines", &text_seed(2, b"a\rb\rc\r"));

    // ---- envelopes: golden, and real data sealed with the golden test key ------------------
    let mut bodies: Vec<(String, u16, Vec<u8>)> = Vec::new();
    for (name, bytes) in golden.iter().filter(|(n, _)| !n.starts_with("frame_")) {
        c.put("envelope", &format!("golden-{name}"), bytes);
        let env = Envelope::decode(bytes).expect("golden envelope");
        bodies.push((format!("golden-{name}"), env.header.kind, env.body));
    }
    let ptb_study_1s = one_study(study_frames(3, 0, ptb.rate_hz, ptb_res, &ptb_leads, 1000, 256));
    let ptb_study_2s = one_study(study_frames(4, 1, ptb.rate_hz, ptb_res, &ptb_leads, 2000, 256));
    let mit_studies: Vec<(String, Study)> = mits
        .iter()
        .enumerate()
        .map(|(i, (name, res, leads))| {
            (format!("mitdb{name}"), one_study(study_frames(10 + i as u32, i, 360, *res, leads, 3600, 256)))
        })
        .collect();
    let mut mit_chunks: Vec<(String, StreamChunk)> = Vec::new();
    let mut mit_gaps: Vec<StreamGap> = Vec::new();
    for (name, res, leads) in &mits {
        let frames: Vec<Frame> = (0..20).map(|i| stream_frame(0, 360, *res, leads, 72_000 + i * 36, 36)).collect();
        let all = chunks(frames, 1000);
        assert!(all.len() >= 2, "20 frames of 36 samples make two 1 s chunks");
        mit_gaps.push(quota::merge(all.iter().map(quota::chunk_gap).collect()).remove(0));
        mit_chunks.push((format!("mitdb{name}"), all[0].clone()));
    }
    let ptb_frames: Vec<Frame> =
        (0..5).map(|i| stream_frame(1, ptb.rate_hz, ptb_res, &ptb_leads, i * 50, 50)).collect();
    let ptb_chunk = chunks(ptb_frames, 250).into_iter().next().expect("a 250 ms chunk");
    let payloads: Vec<(String, Payload)> = vec![
        (mit_chunks[0].0.clone() + "-chunk", Payload::StreamChunk(mit_chunks[0].1.clone())),
        (mit_chunks[1].0.clone() + "-chunk", Payload::StreamChunk(mit_chunks[1].1.clone())),
        (mit_chunks[2].0.clone() + "-chunk", Payload::StreamChunk(mit_chunks[2].1.clone())),
        ("ptb-chunk-12-leads".into(), Payload::StreamChunk(ptb_chunk)),
        ("ptb-study-1s-part".into(), Payload::StudyPart(ptb_study_1s.split().expect("split").remove(0))),
        ("ptb-study-2s-part".into(), Payload::StudyPart(ptb_study_2s.split().expect("split").remove(0))),
        (
            mit_studies[1].0.clone() + "-study-part",
            Payload::StudyPart(mit_studies[1].1.split().expect("split").remove(0)),
        ),
        (mit_chunks[0].0.clone() + "-gap", Payload::StreamGap(quota::chunk_gap(&mit_chunks[0].1))),
        (mit_chunks[2].0.clone() + "-gap-2s-merged", Payload::StreamGap(mit_gaps[2].clone())),
        (
            "device-output".into(),
            Payload::DeviceOutput(DeviceOutput {
                port: "printer".into(),
                line: "诊断: 窦性心律  ST段抬高（下壁）".into(),
                received_at_ms: T,
            }),
        ),
        (
            "report-receipt".into(),
            Payload::ReportReceipt(ReportReceipt {
                report_id: "R000042".into(),
                study_uid: ptb_study_1s.study_uid.clone(),
                stored_at_ms: T,
            }),
        ),
        (
            "status-offline".into(),
            Payload::Status(Status {
                state: LinkState::Offline,
                agent_version: "0.1.0".into(),
                spool_entries: 1 << 20,
                spool_bytes: u64::MAX,
                detail: "serial /dev/ttyUSB0 disconnected".into(),
            }),
        ),
        (
            "ack-many".into(),
            Payload::Ack(Ack::from_seqs(
                "cart-1",
                u64::MAX,
                &(0..200).map(|i| i * i).collect::<Vec<_>>(),
                vec![
                    Refusal { seq: 3, reason: RefusalReason::SeqReused { highest_seq: u64::MAX } },
                    Refusal {
                        seq: 8,
                        reason: RefusalReason::Inconsistent("study uid reused for another recording".into()),
                    },
                ],
            )),
        ),
        (
            "report".into(),
            Payload::Report(Report {
                report_id: "R000042".into(),
                study_uid: ptb_study_1s.study_uid.clone(),
                patient_name: "张伟".into(),
                specialist_id: "li.na".into(),
                specialist_name: "李娜".into(),
                findings: "窦性心律，心率72次/分。II、III、aVF导联ST段抬高0.2 mV。".repeat(4),
                conclusion: "急性下壁心肌梗死，建议立即转诊".into(),
                reported_at_ms: T + 600_000,
            }),
        ),
    ];
    for (i, (name, p)) in payloads.iter().enumerate() {
        let bytes = p.encode().expect("body fits");
        bodies.push((name.clone(), p.kind(), bytes));
        let channel = match p.kind() {
            kind::STATUS => Channel::Status,
            kind::ACK => Channel::Ack,
            kind::REPORT => Channel::Report,
            _ => Channel::Up,
        };
        let topic = Topic::new("xiangzhen-1", "cart-1", channel).expect("topic");
        let signer = if channel.is_uplink() { "cart-1" } else { "hub" };
        let lane = match p {
            Payload::StudyPart(s) => s.priority.lane(),
            _ => Lane::Stream,
        };
        let mut header = Header::new(&key, signer, 1000 + i as u64, T, lane);
        header.epoch = if channel.is_uplink() { 0x5eed } else { 0 };
        let env = envelope::seal(&key, header, &topic, p).expect("seal");
        c.put("envelope", name, &env);
    }

    // ---- every body decoder: kind byte, then the body ------------------------------------
    for (name, kind, bytes) in &bodies {
        c.put("body_decode", name, &body(*kind, bytes));
    }
    c.put("body_decode", "unknown-kind", &body(0, &bodies[0].2));

    // ---- sample codec ----------------------------------------------------------------------
    let golden_study = Study::decode(&match Payload::decode(
        kind::STUDY_PART,
        &bodies.iter().find(|b| b.0 == "golden-study_part").expect("golden part").2,
    ) {
        Some(Ok(Payload::StudyPart(p))) => p.bytes,
        _ => panic!("golden study part"),
    })
    .expect("the golden study fits one part");
    for l in &golden_study.leads {
        let mut v = l.samples.count.to_le_bytes().to_vec();
        v.extend_from_slice(&l.samples.data);
        c.put("codec_decode", &format!("golden-lead-{}", l.lead), &v);
    }
    let raw = |r: &Record, sig: usize, start: usize, n: usize| r.signals[sig].1[start..start + n].to_vec();
    let segments: Vec<(String, Vec<i32>)> = vec![
        ("mitdb100-mlii-1s".into(), raw(&mit100, 0, 0, 360)),
        ("mitdb100-v5-10s".into(), raw(&mit100, 1, 36_000, 3600)),
        ("mitdb203-mlii-3s".into(), raw(&mit203, 0, 100_000, 1080)),
        ("mitdb208-v1-3s".into(), raw(&mit208, 1, 200_000, 1080)),
        ("ptb-i-1s".into(), raw(&ptb, 0, 0, 1000)),
        ("ptb-v2-2s".into(), raw(&ptb, 7, 10_000, 2000)),
        ("ptb-vz-1s".into(), raw(&ptb, 14, 30_000, 1000)),
        ("ludb-ii-2s".into(), raw(&ludb, 1, 0, 1000)),
        ("ludb-v6-block-edges".into(), raw(&ludb, 11, 2500, 129)),
        ("ptb-ii-baseline-free".into(), ptb_leads[1].1[..500].iter().map(|x| i32::from(*x)).collect()),
        ("one".into(), vec![-489]),
        ("block".into(), raw(&mit100, 0, 500, 64)),
        ("block-plus-one".into(), raw(&mit100, 0, 500, 65)),
        ("extremes".into(), vec![i32::MIN, i32::MAX, i32::MIN, i32::MAX, 0, i32::MIN, -1, 1]),
        ("full-scale-square".into(), (0..200).map(|i| if i % 2 == 0 { i32::MAX } else { i32::MIN }).collect()),
        ("constant".into(), vec![1024; 300]),
    ];
    for (name, s) in &segments {
        c.put("codec_decode", name, &codec_seed(s));
        c.put("codec_roundtrip", name, &i32_bytes(s));
    }
    c.put("codec_decode", "empty", &0u32.to_le_bytes());

    // ---- assembled studies -------------------------------------------------------------------
    c.put("study_decode", "golden", &golden_study.encode().expect("encode"));
    c.put("study_decode", "ptb-1s", &ptb_study_1s.encode().expect("encode"));
    c.put("study_decode", "ptb-2s", &ptb_study_2s.encode().expect("encode"));
    for (name, s) in &mit_studies {
        c.put("study_decode", &format!("{name}-10s"), &s.encode().expect("encode"));
    }
    let mut odd = ptb_study_1s.clone();
    odd.leads.truncate(1);
    odd.leads[0].samples = codec::encode(&[]);
    odd.warnings = vec!["V4 lead off".into(), "导联脱落".into()];
    odd.patient.birth_date = None;
    c.put("study_decode", "one-empty-lead-warnings", &odd.encode().expect("encode"));
    let mut none = golden_study.clone();
    none.leads.clear();
    c.put("study_decode", "no-leads", &none.encode().expect("encode"));

    // ---- topics and broker addresses -----------------------------------------------------------
    for ch in ["up", "ack", "report", "status"] {
        c.put("topic", &format!("topic-{ch}"), format!("yl/v1/xiangzhen-1/cart-1/{ch}").as_bytes());
    }
    let texts: [(&str, String); 15] = [
        ("fleet", topic::fleet_topic("stable").expect("fleet")),
        ("fleet-as-device-topic", "yl/v1/fleet/cart-1/up".into()),
        ("up-filter", topic::UP_FILTER.into()),
        ("status-filter", topic::STATUS_FILTER.into()),
        ("long-ids", format!("yl/v1/{}/{}/report", "s".repeat(32), "d_-9".repeat(8))),
        ("too-long-id", format!("yl/v1/{}/d/up", "s".repeat(33))),
        ("extra-segment", "yl/v1/s/d/up/x".into()),
        ("empty-site", "yl/v1//d/up".into()),
        ("chinese-site", "yl/v1/卫生院/d/up".into()),
        ("broker-ipv4", "mqtt://127.0.0.1:1884".into()),
        ("broker-host", "mqtt://hub.county/".into()),
        ("broker-ipv6", "mqtt://[::1]:1883".into()),
        ("broker-empty", "mqtt://".into()),
        ("broker-bad-port", "mqtt://x:65536".into()),
        ("broker-http", "http://x:1".into()),
    ];
    for (name, t) in &texts {
        c.put("topic", name, t.as_bytes());
    }

    let (mut files, mut bytes) = (0, 0);
    for (target, (n, b)) in &c.written {
        println!("{target:16} {n:3} seeds {b:8} bytes");
        files += n;
        bytes += b;
    }
    println!("{:16} {files:3} seeds {bytes:8} bytes", "total");
}
