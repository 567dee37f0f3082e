//! Replays the committed fuzz corpus (`fuzz/corpus/<target>/`) and any crash regressions
//! (`fuzz/regressions/<target>/`) through the same calls and checks as the cargo-fuzz targets
//! of this crate, on stable and without cargo-fuzz. See `fuzz/README.md`.
//!
//! The checks are written out again here on purpose: this file shares only the input files with
//! the fuzz crate, which is not a workspace member.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use yilian_protocol::envelope::Envelope;
use yilian_protocol::keys::{PublicKey, SigningKey};
use yilian_protocol::message::{self, EncodedSamples, Payload, Study};
use yilian_protocol::topic::{self, Channel, Topic};
use yilian_protocol::{codec, frame, limits, wire};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

fn files_in(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries.filter_map(Result::ok).map(|e| e.path()).filter(|p| p.is_file()).collect();
    files.sort();
    files
}

/// Feeds every corpus and regression input of `target` to `check`; fails with the list of
/// inputs that panicked, or if the corpus is empty.
fn replay(target: &str, check: impl Fn(&[u8])) {
    let corpus = files_in(&fuzz_dir().join("corpus").join(target));
    assert!(!corpus.is_empty(), "fuzz/corpus/{target} holds no inputs: nothing was replayed");
    let regressions = files_in(&fuzz_dir().join("regressions").join(target));
    let mut failed = Vec::new();
    for path in corpus.iter().chain(&regressions) {
        let data = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        if catch_unwind(AssertUnwindSafe(|| check(&data))).is_err() {
            failed.push(path.display().to_string());
        }
    }
    assert!(failed.is_empty(), "{target}: {} input(s) panicked: {failed:#?}", failed.len());
    eprintln!("{target}: replayed {} corpus and {} regression inputs", corpus.len(), regressions.len());
}

#[test]
fn frame_decode() {
    replay("frame_decode", |data| {
        if let Ok((seq, f)) = frame::decode(data)
            && let Ok(wire) = frame::encode(seq, &f)
        {
            assert_eq!(wire.first(), Some(&0));
            assert_eq!(wire.last(), Some(&0));
            let again = frame::decode(&wire[1..wire.len() - 1]).expect("a re-encoded frame decodes");
            assert_eq!(again, (seq, f));
        }
    });
}

fn decode_samples(p: &Payload) {
    match p {
        Payload::StreamChunk(c) => {
            let _ = c.validate();
            for l in &c.leads {
                let _ = l.decode();
            }
        }
        Payload::StudyPart(part) => {
            if let Ok(s) = message::assemble(std::slice::from_ref(part)) {
                let _ = s.validate();
                for l in &s.leads {
                    let _ = l.decode();
                }
            }
        }
        _ => {}
    }
}

#[test]
fn envelope() {
    let pk8 = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/golden/v1/test-key.pk8"))
        .expect("golden test key");
    let key: PublicKey = SigningKey::from_pkcs8(&pk8).expect("golden key").public_key();
    let topics: Vec<Topic> = [Channel::Up, Channel::Ack, Channel::Report, Channel::Status]
        .into_iter()
        .map(|c| Topic::new("xiangzhen-1", "cart-1", c).expect("topic"))
        .collect();
    let verified = std::cell::Cell::new(0usize);
    replay("envelope", |data| {
        let Ok(env) = Envelope::decode(data) else {
            return;
        };
        if let Ok(bytes) = wire::encode("envelope", &env, limits::ENVELOPE_MAX) {
            assert_eq!(Envelope::decode(&bytes).expect("re-encoded envelope decodes"), env);
        }
        for topic in &topics {
            let Ok(v) = env.verify(&key, topic, None) else {
                continue;
            };
            verified.set(verified.get() + 1);
            assert_eq!(v.header(), &env.header);
            decode_samples(v.payload());
        }
    });
    assert!(verified.get() > 0, "no corpus envelope verified with the golden key");
}

#[test]
fn body_decode() {
    replay("body_decode", |data| {
        let Some((&selector, body)) = data.split_first() else {
            return;
        };
        let kind = u16::from(selector % 16);
        let Some(decoded) = Payload::decode(kind, body) else {
            assert!(Payload::kind_name(kind).is_none(), "known kind {kind} decoded to None");
            return;
        };
        let Ok(p) = decoded else {
            return;
        };
        assert_eq!(p.kind(), kind);
        if let Ok(bytes) = p.encode() {
            assert_eq!(Payload::decode(kind, &bytes).expect("known kind").expect("re-encoded body decodes"), p);
        }
        decode_samples(&p);
    });
}

#[test]
fn codec_decode() {
    replay("codec_decode", |data| {
        let Some((count, bits)) = data.split_first_chunk::<4>() else {
            return;
        };
        let enc = EncodedSamples { count: u32::from_le_bytes(*count), data: bits.to_vec() };
        if let Ok(samples) = codec::decode(&enc, limits::SAMPLES_PER_LEAD_MAX) {
            assert_eq!(samples.len(), enc.count as usize);
            let again = codec::encode(&samples);
            assert_eq!(codec::decode(&again, u32::MAX).expect("re-encoded samples decode"), samples);
        }
    });
}

#[test]
fn codec_roundtrip() {
    replay("codec_roundtrip", |data| {
        let samples: Vec<i32> = data.chunks_exact(4).map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        let enc = codec::encode(&samples);
        assert_eq!(enc.count as usize, samples.len());
        assert_eq!(codec::decode(&enc, samples.len() as u32).expect("own encoding decodes"), samples);
        if !samples.is_empty() {
            assert!(codec::decode(&enc, samples.len() as u32 - 1).is_err());
        }
    });
}

#[test]
fn study_decode() {
    replay("study_decode", |data| {
        let Ok(s) = Study::decode(data) else {
            return;
        };
        let _ = s.validate();
        for l in &s.leads {
            let _ = l.decode();
        }
        if let Ok(bytes) = s.encode() {
            assert_eq!(Study::decode(&bytes).expect("re-encoded study decodes"), s);
        }
        if let Ok(parts) = s.split() {
            assert_eq!(message::assemble(&parts).expect("own parts assemble"), s);
        }
    });
}

#[test]
fn topic() {
    replay("topic", |data| {
        let Ok(s) = std::str::from_utf8(data) else {
            return;
        };
        if let Ok(t) = Topic::parse(s) {
            assert_eq!(t.to_string(), s);
            for c in [Channel::Up, Channel::Ack, Channel::Report, Channel::Status] {
                let other = t.with_channel(c);
                assert_eq!(Topic::parse(&other.to_string()).expect("same ids, other channel"), other);
            }
        }
        let _ = topic::broker_addr(s);
    });
}
