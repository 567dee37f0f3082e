//! Hostile inputs: every real file of the shared test data, cut short at many lengths and with
//! pseudo-random bit flips, and a few forged files whose length fields lie, fed to its reader
//! with tight limits. No read may panic, and no read may allocate more than its budget.
//!
//! The allocation is measured with a counting global allocator (`peakmem-alloc`): the peak of
//! live heap bytes between a reset just before a read and its end, the returned recording
//! included. A test binary has one global allocator and the counter sees every thread, so this
//! binary holds ONE test and runs the reads one after the other.

mod common;

use std::alloc::System;
use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Instant;

use peakmem_alloc::{INSTRUMENTED_SYSTEM, PeakMemAlloc, PeakMemAllocTrait};
use yilian_formats::{Limits, ReadOptions, Recording, aecg, contec, dicom, scp, wfdb};

#[global_allocator]
static GLOBAL: &PeakMemAlloc<System> = &INSTRUMENTED_SYSTEM;

const MIB: usize = 1024 * 1024;

/// Tight limits: the real files fit (the longest, PTB's 38,400 samples and Contec's 37,855; 32
/// leads because the DICOM reader counts rhythm and median-beat channels together), a 30-minute
/// MIT-BIH record does not.
const LIMITS: Limits =
    Limits { max_input_bytes: 4 * MIB, max_leads: 32, max_samples_per_lead: 40_000, max_annotations: 5_000 };

/// What one read may allocate at its peak, for an input of `input` bytes.
///
/// * `16 × input`: a reader may hold the input a few times over in other shapes: dicom-rs's
///   in-memory object (values, tags, per-element headers), XML text unescaped into strings,
///   digit tokens, per-lead byte buffers before decoding.
/// * `4 × leads × samples × 4 bytes`: the decoded samples (i32) of the most leads the limits
///   allow, for the rhythm and the median beat (2×), with room for a vector's doubling while it
///   grows or one working copy per lead (2×).
/// * `8 MiB`: fixed costs independent of the input (dictionaries, Huffman tables, error and
///   warning texts, the recording's strings).
///
/// A length field that is believed instead of checked breaks this at once: it allocates from
/// the claim, not from the bytes present or the limits.
fn budget(input: usize) -> usize {
    16 * input + 4 * LIMITS.max_leads * LIMITS.max_samples_per_lead * 4 + 8 * MIB
}

/// What reading a small forged file may allocate: "a few MiB", plus one copy of the input.
fn forged_budget(input: usize) -> usize {
    input + 4 * MIB
}

/// A reader's input: one file, or a WFDB record (header and named files).
enum Input {
    Scp(Vec<u8>),
    Dicom(Vec<u8>),
    Aecg(Vec<u8>),
    Contec(Vec<u8>),
    Wfdb(Vec<u8>, BTreeMap<String, Vec<u8>>),
}

impl Input {
    fn len(&self) -> usize {
        match self {
            Self::Scp(b) | Self::Dicom(b) | Self::Aecg(b) | Self::Contec(b) => b.len(),
            Self::Wfdb(h, files) => h.len() + files.values().map(Vec::len).sum::<usize>(),
        }
    }

    fn read(&self, opts: &ReadOptions) -> Result<Recording, String> {
        match self {
            Self::Scp(b) => scp::read(b, opts).map_err(|e| e.to_string()),
            Self::Dicom(b) => dicom::read(b, opts).map_err(|e| e.to_string()),
            Self::Aecg(b) => aecg::read(b, opts).map_err(|e| e.to_string()),
            Self::Contec(b) => contec::read(b, opts).map_err(|e| e.to_string()),
            Self::Wfdb(h, files) => wfdb::read(h, files, opts).map_err(|e| e.to_string()),
        }
    }
}

/// Everything that went wrong, reported together at the end.
#[derive(Default)]
struct Findings {
    reads: usize,
    panics: Vec<String>,
    over_budget: Vec<String>,
    /// Largest peak seen, as (peak, input bytes, case).
    worst: Option<(usize, usize, String)>,
}

impl Findings {
    /// Reads `input` once, measuring its peak allocation against `limit`.
    fn read(
        &mut self,
        case: &str,
        input: &Input,
        opts: &ReadOptions,
        limit: usize,
    ) -> Option<Result<Recording, String>> {
        self.reads += 1;
        GLOBAL.reset_peak_memory();
        let out = catch_unwind(AssertUnwindSafe(|| input.read(opts)));
        let peak = GLOBAL.get_peak_memory();
        if peak > limit {
            self.over_budget.push(format!("{case}: peak {peak} bytes, budget {limit} ({} bytes in)", input.len()));
        }
        if self.worst.as_ref().is_none_or(|w| peak > w.0) {
            self.worst = Some((peak, input.len(), case.to_string()));
        }
        match out {
            Ok(result) => {
                if let Ok(rec) = &result {
                    check_limits(case, rec);
                }
                Some(result)
            }
            Err(_) => {
                self.panics.push(case.to_string());
                None
            }
        }
    }
}

/// What a successful read returns stays inside the limits, whatever the input.
fn check_limits(case: &str, rec: &Recording) {
    assert!(rec.leads.len() <= LIMITS.max_leads, "{case}: {} leads", rec.leads.len());
    assert!(rec.median_beat.len() <= LIMITS.max_leads, "{case}: {} median leads", rec.median_beat.len());
    assert!(rec.annotations.len() <= LIMITS.max_annotations, "{case}: {} annotations", rec.annotations.len());
    for l in rec.leads.iter().chain(&rec.median_beat) {
        assert!(l.samples.len() <= LIMITS.max_samples_per_lead, "{case}: {} has {} samples", l.name, l.samples.len());
        assert!(l.resolution_nv.is_finite() && l.resolution_nv > 0.0, "{case}: {} at {} nV", l.name, l.resolution_nv);
        assert!(l.sample_rate_hz > 0, "{case}: {} at 0 Hz", l.name);
    }
}

/// A small xorshift, so that a failing flip reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % n.max(1) as u64).unwrap_or(0)
    }
}

/// Where to cut a file of `len` bytes: every length up to `dense`, every length within `WINDOW`
/// of each structure boundary, and `strided` evenly spaced lengths beyond.
fn cut_points(len: usize, dense: usize, boundaries: &[usize], strided: usize) -> Vec<usize> {
    const WINDOW: usize = 8;
    let mut cuts: Vec<usize> = (0..len.min(dense)).collect();
    for &b in boundaries {
        cuts.extend(b.saturating_sub(WINDOW)..(b + WINDOW).min(len));
    }
    let stride = (len / strided.max(1)).max(1);
    cuts.extend((dense..len).step_by(stride));
    cuts.sort_unstable();
    cuts.dedup();
    cuts
}

/// One file to mutate, the structure boundaries inside it, and how to make a reader's input
/// from its (mutated) bytes.
struct Subject {
    name: String,
    bytes: Vec<u8>,
    boundaries: Vec<usize>,
    make: Box<dyn Fn(Vec<u8>) -> Input>,
    /// Evenly spaced cuts past the dense first 2 KiB.
    strided: usize,
    /// Bit-flip rounds. Every flipped read decodes the whole file, so the heavy files (tens of
    /// ms each in a debug build) get fewer rounds to keep the test near 20 s;
    /// `YILIAN_HOSTILE_ROUNDS` multiplies them for a longer hunt.
    flips: usize,
}

impl Subject {
    fn single(rel: &str, make: fn(Vec<u8>) -> Input, boundaries: fn(&[u8]) -> Vec<usize>) -> Self {
        let bytes = common::data(rel);
        Self { name: rel.into(), boundaries: boundaries(&bytes), bytes, make: Box::new(make), strided: 48, flips: 200 }
    }

    fn rounds(mut self, strided: usize, flips: usize) -> Self {
        self.strided = strided;
        self.flips = flips;
        self
    }

    /// The file `part` of a WFDB record, the others as they are.
    fn wfdb_part(header: &str, files: &BTreeMap<String, Vec<u8>>, part: &str, boundaries: Vec<usize>) -> Self {
        let others = files.clone();
        let header_name = header.to_string();
        let part_name = part.to_string();
        let bytes = files.get(part).unwrap_or_else(|| panic!("{part} in the record")).clone();
        let make = move |b: Vec<u8>| {
            let mut files = others.clone();
            if part_name == header_name {
                let h = b;
                files.remove(&header_name);
                return Input::Wfdb(h, files);
            }
            let h = files.remove(&header_name).expect("header");
            files.insert(part_name.clone(), b);
            Input::Wfdb(h, files)
        };
        Self { name: format!("wfdb:{part}"), bytes, boundaries, make: Box::new(make), strided: 48, flips: 200 }
    }
}

/// Section starts and ends from an SCP-ECG file's Section 0 pointers (index is 1-based).
fn scp_boundaries(b: &[u8]) -> Vec<usize> {
    let le32 = |at: usize| b.get(at..at + 4).map_or(0, |s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]) as usize);
    let len0 = le32(6 + 4);
    let mut out = vec![6, 22];
    let mut at = 22;
    while at + 10 <= (6 + len0).min(b.len()) {
        let (len, index) = (le32(at + 2), le32(at + 6));
        if len > 0 && index > 0 {
            out.extend([index - 1, index - 1 + 16, index - 1 + len]);
        }
        at += 10;
    }
    out
}

/// The meta group, and where the waveform (or pixel) elements start.
fn dicom_boundaries(b: &[u8]) -> Vec<usize> {
    let tags: [&[u8]; 4] =
        [&[0x00, 0x54, 0x00, 0x01], &[0x3A, 0x00, 0x05, 0x00], &[0x00, 0x54, 0x10, 0x10], &[0xE0, 0x7F, 0x10, 0x00]];
    let mut out = vec![128, 132];
    for tag in tags {
        if let Some(at) = b.windows(4).position(|w| w == tag) {
            out.extend([at, at + 8, at + 12]);
        }
    }
    out
}

/// The first rhythm digits and the first annotation set.
fn aecg_boundaries(b: &[u8]) -> Vec<usize> {
    let find = |needle: &[u8]| b.windows(needle.len()).position(|w| w == needle);
    [&b"<sequence>"[..], b"<digits>", b"</digits>", b"<derivedSeries", b"<annotationSet"]
        .iter()
        .filter_map(|n| find(n))
        .collect()
}

/// Header end, the first frames, the footer.
fn contec_boundaries(b: &[u8]) -> Vec<usize> {
    vec![43, 59, 75, b.len().saturating_sub(37), b.len().saturating_sub(53)]
}

fn load_record(folder: &str, names: &[&str]) -> BTreeMap<String, Vec<u8>> {
    names.iter().map(|n| ((*n).to_string(), common::data(&format!("{folder}/{n}")))).collect()
}

/// A real record cut to its first `frames` frames, so that it fits the tight limits and every
/// read of it is quick: the header's sample count is edited and the signal files cut, so the
/// header checksums no longer match (the reads accept bad checksums).
fn first_frames(
    folder: &str,
    names: &[&str],
    samples: &str,
    frames: usize,
    cut: &[(&str, usize)],
) -> BTreeMap<String, Vec<u8>> {
    let mut files = load_record(folder, names);
    let hea_name = names.first().expect("header first");
    let hea = String::from_utf8(files.get(*hea_name).expect("header").clone()).expect("ASCII");
    files.insert((*hea_name).to_string(), hea.replacen(samples, &frames.to_string(), 1).into_bytes());
    for (name, bytes_per_frame) in cut {
        files.get_mut(*name).expect("signal file").truncate(frames * bytes_per_frame);
    }
    files
}

fn subjects() -> Vec<Subject> {
    let mut out = vec![
        Subject::single("scp/ecgtoolkit_Example.scp", Input::Scp, scp_boundaries).rounds(48, 40),
        Subject::single("scp/ecgviewer_demo.scp", Input::Scp, scp_boundaries).rounds(48, 100),
        Subject::single("contec/0000050.ECG.scp", Input::Scp, scp_boundaries).rounds(24, 24),
        Subject::single("contec/0000050.ECG", Input::Contec, contec_boundaries).rounds(24, 16),
        Subject::single("contec/0000053.ECG", Input::Contec, contec_boundaries).rounds(24, 16),
        Subject::single("aecg/Example_aECG.xml", Input::Aecg, aecg_boundaries).rounds(24, 40),
        Subject::single("aecg/hl7aecg-Example2.xml", Input::Aecg, aecg_boundaries).rounds(24, 40),
    ];
    for f in ["ecg-dicom-web-viewer_test_ecg.dcm", "ecgtoolkit_Example.dcm", "waveform_ecg.dcm"] {
        out.push(Subject::single(&format!("dicom-ecg/{f}"), Input::Dicom, dicom_boundaries).rounds(48, 100));
    }
    let images = std::fs::read_dir(common::data_dir().join("dicom-img")).expect("dicom-img");
    let mut images: Vec<String> =
        images.filter_map(Result::ok).map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    images.sort();
    for f in images {
        out.push(Subject::single(&format!("dicom-img/{f}"), Input::Dicom, dicom_boundaries).rounds(24, 40));
    }

    let ludb_names = [
        "1.hea", "1.dat", "1.i", "1.ii", "1.iii", "1.avr", "1.avl", "1.avf", "1.v1", "1.v2", "1.v3", "1.v4", "1.v5",
        "1.v6",
    ];
    let ludb = load_record("wfdb/ludb", &ludb_names);
    out.push(Subject::wfdb_part("1.hea", &ludb, "1.hea", Vec::new()).rounds(48, 60));
    out.push(Subject::wfdb_part("1.hea", &ludb, "1.dat", vec![ludb["1.dat"].len()]).rounds(48, 60));
    out.push(Subject::wfdb_part("1.hea", &ludb, "1.v6", Vec::new()).rounds(48, 60));
    // PTB's header (CRLF, blank lines, a long comment block) over its first second.
    let ptb_names = ["s0010_re.hea", "s0010_re.dat", "s0010_re.xyz"];
    let ptb = first_frames("wfdb/ptbdb", &ptb_names, "38400", 1000, &[("s0010_re.dat", 24), ("s0010_re.xyz", 6)]);
    out.push(Subject::wfdb_part("s0010_re.hea", &ptb, "s0010_re.hea", Vec::new()).rounds(48, 100));
    out.push(Subject::wfdb_part("s0010_re.hea", &ptb, "s0010_re.xyz", vec![6000]).rounds(48, 100));
    // MIT-BIH 100's first 10 s: format 212 and its beat annotations (those past the end too).
    let mit = first_frames("wfdb/mitdb", &["100.hea", "100.dat", "100.atr"], "650000", 3600, &[("100.dat", 3)]);
    out.push(Subject::wfdb_part("100.hea", &mit, "100.hea", Vec::new()));
    out.push(Subject::wfdb_part("100.hea", &mit, "100.dat", vec![mit["100.dat"].len()]));
    out.push(Subject::wfdb_part("100.hea", &mit, "100.atr", vec![mit["100.atr"].len()]));
    out
}

#[test]
fn truncated_flipped_and_forged_files_never_panic_nor_overallocate() {
    let started = Instant::now();
    let mut findings = Findings::default();
    let opts = ReadOptions { limits: LIMITS, accept_bad_checksums: true };
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let rounds: usize = std::env::var("YILIAN_HOSTILE_ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(1);
    for s in subjects() {
        let t = Instant::now();
        let whole = (s.make)(s.bytes.clone());
        let read = findings.read(&format!("{} whole", s.name), &whole, &opts, budget(whole.len()));
        assert!(
            matches!(read, Some(Ok(_))) || s.name.starts_with("dicom-img/"),
            "{}: the whole file should read: {:?}",
            s.name,
            read.map(|r| r.map(|_| ()))
        );
        for cut in cut_points(s.bytes.len(), 2048, &s.boundaries, s.strided) {
            let input = (s.make)(s.bytes.get(..cut).unwrap_or_default().to_vec());
            findings.read(&format!("{} cut at {cut}", s.name), &input, &opts, budget(input.len()));
        }
        for i in 0..s.flips * rounds {
            let mut bytes = s.bytes.clone();
            // Structure lives in the first KiBs: half the flips land there.
            let span = if i % 2 == 0 { bytes.len().min(4096) } else { bytes.len() };
            let mut what = Vec::new();
            for _ in 0..1 + rng.below(3) {
                let at = rng.below(span);
                let bit = rng.below(8);
                if let Some(b) = bytes.get_mut(at) {
                    *b ^= 1 << bit;
                    what.push(format!("{at}.{bit}"));
                }
            }
            let input = (s.make)(bytes);
            findings.read(&format!("{} flipped {}", s.name, what.join(",")), &input, &opts, budget(input.len()));
        }
        eprintln!("{}: {:.1} s", s.name, t.elapsed().as_secs_f64());
    }
    for (case, input) in forged() {
        // A lie in a field the reader cross-checks may be read past, but never silently.
        let out = findings.read(&format!("forged: {case}"), &input, &opts, forged_budget(input.len()));
        if let Some(Ok(rec)) = out {
            assert!(!rec.warnings.is_empty(), "forged: {case} was read without a warning");
            eprintln!("forged: {case}: read, with {:?}", rec.warnings);
        }
    }
    if let Some((peak, len, case)) = &findings.worst {
        eprintln!("largest peak: {peak} bytes for {len} bytes in ({case})");
    }
    eprintln!("{} reads in {:.1} s", findings.reads, started.elapsed().as_secs_f64());
    assert!(findings.panics.is_empty(), "{} read(s) panicked: {:#?}", findings.panics.len(), findings.panics);
    assert!(
        findings.over_budget.is_empty(),
        "{} read(s) over budget: {:#?}",
        findings.over_budget.len(),
        findings.over_budget
    );
}

// ---- forged files: length fields that lie ----

fn put32(b: &mut [u8], at: usize, v: u32) {
    if let Some(s) = b.get_mut(at..at + 4) {
        s.copy_from_slice(&v.to_le_bytes());
    }
}

fn find(b: &[u8], needle: &[u8]) -> usize {
    b.windows(needle.len()).position(|w| w == needle).unwrap_or_else(|| panic!("{needle:?} not found"))
}

fn forged() -> Vec<(String, Input)> {
    let mut out = Vec::new();

    // DICOM: Waveform Data (5400,1010) OW, and the Waveform Sequence (5400,0100), claiming
    // 0xFFFFFFF0 bytes.
    let dcm = common::data("dicom-ecg/ecg-dicom-web-viewer_test_ecg.dcm");
    let mut b = dcm.clone();
    let at = find(&b, &[0x00, 0x54, 0x10, 0x10, b'O', b'W']);
    put32(&mut b, at + 8, 0xFFFF_FFF0);
    out.push(("DICOM Waveform Data of 0xFFFFFFF0 bytes".into(), Input::Dicom(b)));
    let mut b = dcm.clone();
    let at = find(&b, &[0x00, 0x54, 0x00, 0x01, b'S', b'Q']);
    put32(&mut b, at + 8, 0xFFFF_FFF0);
    out.push(("DICOM Waveform Sequence of 0xFFFFFFF0 bytes".into(), Input::Dicom(b)));
    let mut b = dcm.clone();
    let at = find(&b, &[0x00, 0x54, 0x10, 0x10, b'O', b'W']);
    b.truncate(at + 12);
    put32(&mut b, at + 8, 0xFFFF_FFF0);
    out.push(("DICOM file ending right after a 0xFFFFFFF0 length".into(), Input::Dicom(b)));
    // Found by the dicom_read fuzz target: a 2-byte FL (Waveform Bits Stored re-typed) made
    // dicom-rs read no value, parse the next bytes as a header and allocate 4 GiB from them.
    let mut b = dcm;
    let at = find(&b, &[0x3A, 0x00, 0x1A, 0x02, b'U', b'S', 0x02, 0x00]);
    b.get_mut(at + 4..at + 6).expect("VR").copy_from_slice(b"FL");
    out.push(("DICOM FL element of 2 bytes".into(), Input::Dicom(b)));

    // SCP-ECG: the record length, Section 6's pointer and its section header claiming 2^31.
    let scp_file = common::data("scp/ecgtoolkit_Example.scp");
    let mut b = scp_file.clone();
    put32(&mut b, 2, 1 << 31);
    out.push(("SCP record length 2^31".into(), Input::Scp(b)));
    let mut b = scp_file.clone();
    let six = 3818; // Section 6 at index 3819 (README section 6)
    put32(&mut b, six + 4, 1 << 31);
    out.push(("SCP Section 6 header length 2^31".into(), Input::Scp(b)));
    let mut b = scp_file.clone();
    let pointer = 22 + 10 * 6; // pointers follow Section 0's header; Section 6 is the 7th
    put32(&mut b, pointer + 2, 1 << 31);
    out.push(("SCP Section 0 pointer to Section 6 of length 2^31".into(), Input::Scp(b)));
    let mut b = scp_file;
    // Section 3 at index 329: header 16, 2 bytes (leads, flags), then per lead start u32, end u32, id.
    for lead in 0..12 {
        put32(&mut b, 328 + 16 + 2 + 9 * lead + 4, u32::MAX);
    }
    out.push(("SCP Section 3 leads ending at sample 2^32-1".into(), Input::Scp(b)));

    // aECG: numbers and counts that claim the impossible.
    let xml = String::from_utf8(common::data("aecg/hl7aecg-Example2.xml")).expect("UTF-8");
    let first_digits = xml.find("<digits>").expect("digits") + "<digits>".len();
    let mut huge_number = xml.clone();
    huge_number.insert_str(first_digits, &"9".repeat(100_000));
    out.push(("aECG digit token of 100,000 digits".into(), Input::Aecg(huge_number.into_bytes())));
    let mut many = xml.clone();
    many.insert_str(first_digits, &"0 ".repeat(1_500_000));
    out.push(("aECG lead of 1,500,000 samples (3 MB of digits)".into(), Input::Aecg(many.into_bytes())));
    let tiny_step = xml.replacen("value=\"0.0010000\" unit=\"s\"", "value=\"1e-12\" unit=\"s\"", 1);
    out.push(("aECG increment of 1 ps (10^12 samples a second)".into(), Input::Aecg(tiny_step.into_bytes())));
    let billion = xml.replacen("<digits>", "<digits>1000000000000000000000 ", 1);
    out.push(("aECG sample of 10^21".into(), Input::Aecg(billion.into_bytes())));

    // WFDB: headers claiming 2^40 samples, 2^20 signals, and an open-ended record over the limit.
    let dat = vec![0u8; 8];
    let files = BTreeMap::from([("r.dat".to_string(), dat)]);
    let hea = b"r 1 500 1099511627776\nr.dat 16 200 16 0 0 0 0 I\n".to_vec();
    out.push(("WFDB header of 2^40 samples".into(), Input::Wfdb(hea, files.clone())));
    let hea = b"r 1048576 500 10\nr.dat 16 200 16 0 0 0 0 I\n".to_vec();
    out.push(("WFDB header of 2^20 signals".into(), Input::Wfdb(hea, files.clone())));
    let mut signal_lines = String::from("r 64 500 10\n");
    for _ in 0..64 {
        signal_lines.push_str("r.dat 16 200 16 0 0 0 0 I\n");
    }
    out.push(("WFDB header of 64 signals".into(), Input::Wfdb(signal_lines.into_bytes(), files)));
    let open = BTreeMap::from([("r.dat".to_string(), vec![0u8; 2 * 1_000_000])]);
    let hea = b"r 1 500\nr.dat 16 200 16 0 0 0 0 I\n".to_vec();
    out.push(("WFDB record without a sample count, 1,000,000 samples in its file".into(), Input::Wfdb(hea, open)));
    // 20,000 beats, 4 bytes each: four times the annotation limit.
    let mut atr: Vec<u8> = std::iter::repeat_n([0x01, 0x04], 20_000).flatten().collect();
    atr.extend([0, 0]);
    let anns = BTreeMap::from([("r.dat".to_string(), vec![0u8; 2 * 1000]), ("r.atr".to_string(), atr)]);
    let hea = b"r 1 500 1000\nr.dat 16 200 16 0 0 0 0 I\n".to_vec();
    out.push(("WFDB annotation file of 20,000 beats".into(), Input::Wfdb(hea, anns)));

    // Contec: the size is the claim; 250,000 frames (4 MB) is over the sample limit, 4 MiB + 16
    // bytes over the input limit.
    let mut c = common::data("contec/0000053.ECG");
    let tail = c.split_off(c.len() - 37);
    c.resize(43 + 16 * 250_000, 0x08);
    c.extend_from_slice(&tail);
    out.push(("Contec file of 250,000 frames".into(), Input::Contec(c)));
    let mut big = vec![0u8; 4 * MIB + 80 + 16];
    big.get_mut(10..29).expect("header").copy_from_slice(b"2020-11-24 07:19:13");
    out.push(("Contec file over the input limit".into(), Input::Contec(big)));
    out
}
