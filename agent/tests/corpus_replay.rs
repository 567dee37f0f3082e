//! Replays the committed fuzz corpus (`fuzz/corpus/<target>/`) and any crash regressions
//! (`fuzz/regressions/<target>/`) of the driver targets through the same calls and checks as the
//! cargo-fuzz targets, on stable and without cargo-fuzz. See `fuzz/README.md`.
//!
//! The checks are written out again here on purpose: this file shares only the input files with
//! the fuzz crate, which is not a workspace member.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use yilian_agent::driver::text::TextDecoder;
use yilian_agent::driver::ylf::YlfDecoder;
use yilian_agent::driver::{DeviceEvent, Driver};

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

fn drain(d: &mut dyn Driver, out: &mut Vec<DeviceEvent>) {
    while let Some(e) = d.poll_event() {
        out.push(e);
    }
}

/// Pushes `data` whole into one driver and in pieces of 1, 2, …, 31, 1, … bytes into another,
/// draining after every push; both must give the same events and counters. Returns the events
/// of the whole push and that driver.
fn whole_and_pieces<D: Driver>(make: impl Fn() -> D, data: &[u8]) -> (Vec<DeviceEvent>, D) {
    let mut whole = make();
    let mut whole_events = Vec::new();
    whole.push(data);
    drain(&mut whole, &mut whole_events);

    let mut pieces = make();
    let mut piece_events = Vec::new();
    let (mut pos, mut n) = (0, 1);
    while pos < data.len() {
        let end = (pos + n).min(data.len());
        pieces.push(&data[pos..end]);
        drain(&mut pieces, &mut piece_events);
        pos = end;
        n = n % 31 + 1;
    }
    assert_eq!(whole_events, piece_events);
    assert_eq!(whole.stats(), pieces.stats());
    (whole_events, whole)
}

#[test]
fn ylf_driver() {
    let frames_seen = std::cell::Cell::new(0usize);
    replay("ylf_driver", |data| {
        let (mut events, mut whole) = whole_and_pieces(YlfDecoder::new, data);
        let s = whole.stats();
        let frames = events.iter().filter(|e| matches!(e, DeviceEvent::Frame(_))).count() as u64;
        let gaps = events.iter().filter(|e| matches!(e, DeviceEvent::LinkGap { .. })).count() as u64;
        let skipped: u64 = events
            .iter()
            .map(|e| match e {
                DeviceEvent::Skipped { bytes, .. } => *bytes as u64,
                _ => 0,
            })
            .sum();
        assert_eq!(s.events, frames);
        assert_eq!(s.gaps, gaps);
        assert_eq!(s.bytes_skipped, skipped);
        assert!(skipped <= data.len() as u64);
        assert!(frames <= data.iter().filter(|b| **b == 0).count() as u64);
        frames_seen.set(frames_seen.get() + frames as usize);

        whole.reset();
        drain(&mut whole, &mut events);
    });
    assert!(frames_seen.get() > 0, "no corpus input decoded to a frame");
}

#[test]
fn text_driver() {
    replay("text_driver", |data| {
        let Some((&selector, bytes)) = data.split_first() else {
            return;
        };
        let encoding = [encoding_rs::UTF_8, encoding_rs::GBK, encoding_rs::GB18030][usize::from(selector % 3)];
        let (mut events, mut whole) = whole_and_pieces(|| TextDecoder::new(encoding), bytes);
        whole.reset();
        drain(&mut whole, &mut events);
        for e in &events {
            if let DeviceEvent::Text(t) = e {
                assert!(!t.is_empty() && !t.contains('\n') && t.trim_end() == t, "{t:?}");
            }
        }
        let texts = events.iter().filter(|e| matches!(e, DeviceEvent::Text(_))).count() as u64;
        assert_eq!(whole.stats().events, texts);
    });
}
