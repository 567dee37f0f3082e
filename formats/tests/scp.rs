//! SCP-ECG reader and writer against the real files of the shared test data (README sections 6,
//! 7, 11 and 12), plus hand-built records for what the real files do not exercise.

mod common;

use jiff::civil::{date, datetime};
use proptest::prelude::*;
use yilian_formats::scp::{self, ScpError, ScpWriteError};
use yilian_formats::{Lead, ReadOptions, Recording, Sex};

const EXAMPLE: &str = "scp/ecgtoolkit_Example.scp";
const DEMO: &str = "scp/ecgviewer_demo.scp";
const CONTEC: &str = "contec/0000050.ECG.scp";

const CRC: crc::Crc<u16> = crc::Crc::<u16>::new(&crc::CRC_16_IBM_3740);

fn read(rel: &str) -> Recording {
    scp::read(&common::data(rel), &ReadOptions::default()).expect("reads")
}

fn lenient() -> ReadOptions {
    ReadOptions { accept_bad_checksums: true, ..ReadOptions::default() }
}

fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Section 0's pointers: (id, length, 1-based index) of the non-empty sections.
fn section_table(b: &[u8]) -> Vec<(u16, u32, u32)> {
    let len = le32(b, 10) as usize;
    b[22..6 + len]
        .chunks_exact(10)
        .map(|e| (le16(e, 0), le32(e, 2), le32(e, 6)))
        .filter(|&(_, len, _)| len > 0)
        .collect()
}

/// Byte offset of a section's header.
fn section_at(b: &[u8], id: u16) -> usize {
    let (_, _, index) = section_table(b).into_iter().find(|s| s.0 == id).expect("section present");
    index as usize - 1
}

/// Recomputes every section CRC and the record CRC after a test edited the bytes.
fn fix_crcs(b: &mut [u8]) {
    for (_, len, index) in section_table(b) {
        let at = index as usize - 1;
        let crc = CRC.checksum(&b[at + 2..at + len as usize]);
        b[at..at + 2].copy_from_slice(&crc.to_le_bytes());
    }
    let crc = CRC.checksum(&b[2..]);
    b[0..2].copy_from_slice(&crc.to_le_bytes());
}

/// Every CRC in the record verifies (and, for our own files, every section header carries "SCPECG").
fn assert_crcs_valid(b: &[u8], marked: bool) {
    assert_eq!(le16(b, 0), CRC.checksum(&b[2..]), "record CRC");
    assert_eq!(le32(b, 2) as usize, b.len(), "record length");
    for (id, len, index) in section_table(b) {
        let at = index as usize - 1;
        assert_eq!(le16(b, at), CRC.checksum(&b[at + 2..at + len as usize]), "Section {id} CRC");
        assert_eq!(le16(b, at + 2), id, "Section {id} header id");
        if marked {
            assert_eq!(&b[at + 10..at + 16], b"SCPECG", "Section {id} marker");
        }
    }
}

/// A record built by hand from section bodies (each framed with a v2.0 header), CRCs filled in.
fn build(bodies: &[(u16, Vec<u8>)]) -> Vec<u8> {
    let frame = |id: u16, body: &[u8]| {
        let mut s = vec![0, 0];
        s.extend_from_slice(&id.to_le_bytes());
        let mut len = 16 + body.len();
        len += len % 2;
        s.extend_from_slice(&(len as u32).to_le_bytes());
        s.extend_from_slice(&[20, 20]);
        s.extend_from_slice(b"SCPECG");
        s.extend_from_slice(body);
        s.resize(len, 0);
        s
    };
    let ids: Vec<u16> = (0..=11).collect();
    let mut pointers = Vec::new();
    let mut at = 6 + 16 + 10 * ids.len();
    let framed: Vec<(u16, Vec<u8>)> = bodies.iter().map(|(id, b)| (*id, frame(*id, b))).collect();
    for &id in &ids {
        let (len, index) = match framed.iter().find(|(i, _)| *i == id) {
            _ if id == 0 => (16 + 10 * ids.len(), 7),
            Some((_, f)) => {
                let here = at;
                at += f.len();
                (f.len(), here + 1)
            }
            None => (0, 0),
        };
        pointers.extend_from_slice(&id.to_le_bytes());
        pointers.extend_from_slice(&(len as u32).to_le_bytes());
        pointers.extend_from_slice(&(index as u32).to_le_bytes());
    }
    let mut out = vec![0u8; 6];
    out.extend_from_slice(&frame(0, &pointers));
    for &id in &ids {
        if let Some((_, f)) = framed.iter().find(|(i, _)| *i == id) {
            out.extend_from_slice(f);
        }
    }
    let total = out.len() as u32;
    out[2..6].copy_from_slice(&total.to_le_bytes());
    fix_crcs(&mut out);
    out
}

/// Section 3 body for leads (code, start, end).
fn section3(flags: u8, leads: &[(u8, u32, u32)]) -> Vec<u8> {
    let mut b = vec![leads.len() as u8, flags];
    for &(code, start, end) in leads {
        b.extend_from_slice(&start.to_le_bytes());
        b.extend_from_slice(&end.to_le_bytes());
        b.push(code);
    }
    b
}

/// Section 5/6 body: AVM, interval, encoding, flag, then per-lead data.
fn data_section(avm: u16, interval: u16, encoding: u8, flag: u8, leads: &[Vec<u8>]) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&avm.to_le_bytes());
    b.extend_from_slice(&interval.to_le_bytes());
    b.extend_from_slice(&[encoding, flag]);
    for l in leads {
        b.extend_from_slice(&(l.len() as u16).to_le_bytes());
    }
    for l in leads {
        b.extend_from_slice(l);
    }
    b
}

fn raw(samples: &[i16]) -> Vec<u8> {
    samples.iter().flat_map(|s| s.to_le_bytes()).collect()
}

/// A minimal Section 1: patient id and the terminator.
fn section1_minimal() -> Vec<u8> {
    vec![2, 4, 0, b'I', b'D', b'1', 0, 255, 0, 0]
}

fn sums(r: &Recording) -> Vec<i64> {
    r.leads.iter().map(Lead::sum).collect()
}

fn names(leads: &[Lead]) -> Vec<&str> {
    leads.iter().map(|l| l.name.as_str()).collect()
}

// ---- ecgtoolkit_Example.scp (README §6, §12) ----

#[test]
fn example_record_crc_and_section_table_are_as_the_readme_states() {
    let b = common::data(EXAMPLE);
    assert_eq!(le16(&b, 0), 0x066B);
    assert_eq!(CRC.checksum(&b[2..]), 0x066B);
    assert_eq!(le32(&b, 2), 34144);
    assert!(scp::looks_like(&b));
    assert_eq!(
        section_table(&b),
        vec![
            (0, 136, 7),
            (1, 168, 143),
            (2, 18, 311),
            (3, 126, 329),
            (4, 22, 455),
            (5, 3342, 477),
            (6, 30084, 3819),
            (7, 242, 33903)
        ]
    );
    assert_crcs_valid(&b, false);
}

#[test]
fn example_demographics() {
    let r = read(EXAMPLE);
    assert_eq!(r.format, yilian_formats::Format::ScpEcg);
    assert_eq!(r.format_version, "2.0");
    assert_eq!(r.patient.name, "Clark");
    assert_eq!(r.patient.id, "SBJ-123");
    assert_eq!(r.patient.birth_date, Some(date(1953, 5, 8)));
    assert_eq!(r.patient.sex, Sex::Male);
    assert_eq!(r.acquired_at, Some(datetime(2002, 11, 22, 9, 10, 0, 0)));
    // Tag 14: manufacturer code 255 (not in the table), trade name "ECGConversion", model "ELI250".
    assert_eq!(r.device, "ECGConversion ELI250");
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
}

#[test]
fn example_rhythm_leads_in_section3_order_with_the_readme_sums() {
    let r = read(EXAMPLE);
    assert_eq!(names(&r.leads), ["I", "II", "V1", "V2", "V3", "V4", "V5", "V6", "III", "aVR", "aVL", "aVF"]);
    for l in &r.leads {
        assert_eq!((l.samples.len(), l.sample_rate_hz, l.resolution_nv, l.derived), (5000, 500, 2500.0, false));
    }
    assert_eq!(sums(&r), [-4921, -4084, -2299, -2648, -3119, -2499, -3009, -1762, 837, 4432, -2721, -1570]);
    let i = r.lead("I").expect("lead I");
    assert_eq!(i.samples[..5], [-2, -2, -2, -2, -3]);
    assert_eq!(i.samples.last(), Some(&-13));
    assert_eq!(r.lead("V2").expect("V2").samples[..5], [55, 53, 51, 49, 47]);
}

/// The digits of one lead of the aECG REPRESENTATIVE_BEAT, for the cross-format check of README §12.
fn aecg_beat(lead_code: &str) -> Vec<i32> {
    let xml = String::from_utf8(common::data("aecg/Example_aECG.xml")).expect("utf-8");
    let beat = &xml[xml.find("REPRESENTATIVE_BEAT").expect("beat series")..];
    let lead = &beat[beat.find(&format!("\"{lead_code}\"")).expect("lead")..];
    let digits = &lead[lead.find("<digits>").expect("digits") + 8..];
    digits[..digits.find("</digits>").expect("end")].split_whitespace().map(|d| d.parse().expect("integer")).collect()
}

#[test]
fn example_reference_beat_is_599_samples_and_equals_the_aecg_representative_beat() {
    let r = read(EXAMPLE);
    assert_eq!(names(&r.median_beat), names(&r.leads));
    for m in &r.median_beat {
        assert_eq!((m.samples.len(), m.sample_rate_hz, m.resolution_nv), (599, 500, 2500.0), "{}", m.name);
    }
    let i = r.median("I").expect("median I");
    assert_eq!(i.samples[..8], [4, 4, 2, 3, 4, 4, 4, 4]);
    assert_eq!(i.sum(), 6753);
    for (name, code) in [("I", "MDC_ECG_LEAD_I"), ("aVR", "MDC_ECG_LEAD_AVR"), ("V6", "MDC_ECG_LEAD_V6")] {
        assert_eq!(r.median(name).expect("median").samples, aecg_beat(code), "{name}");
    }
}

#[test]
fn example_global_measurements_match_the_aecg_annotations() {
    let r = read(EXAMPLE);
    let get = |n: &str| r.measurements.iter().find(|m| m.name == n).map(|m| (m.value, m.unit.as_str()));
    // PR 148, QRS 120, QTc 443, QRS axis -61 are also the aECG's values.
    assert_eq!(get("PR"), Some((148.0, "ms")));
    assert_eq!(get("QRS"), Some((120.0, "ms")));
    assert_eq!(get("QT"), Some((420.0, "ms")));
    assert_eq!(get("QTc"), Some((443.0, "ms")));
    assert_eq!(get("QRS axis"), Some((-61.0, "deg")));
    assert_eq!(get("P axis"), Some((44.0, "deg")));
    assert_eq!(get("T axis"), Some((86.0, "deg")));
    // RR and PP are 29999 (not computed), the ventricular rate 0: none is reported.
    assert_eq!(get("RR"), None);
    assert_eq!(get("Heart rate"), None);
}

// ---- ecgviewer_demo.scp ----

#[test]
fn demo_v13_raw_samples_with_start_zero_are_read_leniently() {
    let b = common::data(DEMO);
    assert_eq!(CRC.checksum(&b[2..]), 0x447D);
    assert!(scp::looks_like(&b));
    let r = read(DEMO);
    assert_eq!(r.format_version, "1.3");
    assert_eq!(names(&r.leads), ["I", "II", "V1", "V2", "V3", "V4", "V5", "V6"]);
    for l in &r.leads {
        assert_eq!((l.samples.len(), l.sample_rate_hz, l.resolution_nv), (10000, 1000, 183.0));
    }
    assert_eq!(sums(&r), [10957, -9519, -1959, 4699, 5019, 8012, -6224, 4009]);
    assert_eq!(r.leads[0].samples[..5], [254, 246, 251, 223, 251]);
    assert!(r.median_beat.is_empty());
    // The non-conformant start sample 0 is reported once, never as a truncation.
    assert_eq!(r.warnings.len(), 1, "{:?}", r.warnings);
    assert!(r.warnings[0].contains("from 0"));
}

#[test]
fn demo_demographics() {
    let r = read(DEMO);
    assert_eq!(r.patient.name, "Patient Demo");
    assert_eq!(r.patient.id, "12-678-QW");
    assert_eq!(r.patient.birth_date, Some(date(1957, 6, 24)));
    assert_eq!(r.patient.sex, Sex::Male);
    assert_eq!(r.acquired_at, Some(datetime(2004, 6, 24, 16, 52, 16, 0)));
    assert_eq!(r.question.as_deref(), Some("demo patient"));
}

// ---- contec/0000050.ECG.scp (README §11, §12) ----

#[test]
fn contec_export_is_read_with_its_truncation_reported_and_never_padded() {
    let r = read(CONTEC);
    assert_eq!(r.format_version, "2.0");
    assert_eq!(r.acquired_at, Some(datetime(2020, 11, 16, 21, 44, 39, 0)));
    assert_eq!(names(&r.leads), ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"]);
    for l in &r.leads {
        assert_eq!((l.samples.len(), l.sample_rate_hz, l.resolution_nv), (32767, 800, 5000.0), "{}", l.name);
        let warning = format!("lead {}: declares 37855 samples, holds 32767", l.name);
        assert!(r.warnings.contains(&warning), "{warning} in {:?}", r.warnings);
    }
    // The precordial leads are stored as zeros: kept, and flagged.
    for v in ["V1", "V2", "V3", "V4", "V5", "V6"] {
        assert!(r.lead(v).expect("lead").samples.iter().all(|&s| s == 0));
        assert!(r.warnings.iter().any(|w| w.starts_with(&format!("lead {v}: every sample is 0"))));
    }
}

#[test]
fn contec_export_limb_leads_equal_the_repositorys_csv() {
    let r = read(CONTEC);
    let csv = String::from_utf8(common::data("contec/0000050.ECG.csv")).expect("utf-8");
    let rows: Vec<Vec<i32>> =
        csv.lines().take(32767).map(|l| l.split(',').take(6).map(|v| v.parse().expect("int")).collect()).collect();
    assert_eq!(rows.len(), 32767);
    for (col, name) in ["I", "II", "III", "aVR", "aVL", "aVF"].into_iter().enumerate() {
        let expected: Vec<i32> = rows.iter().map(|row| row[col]).collect();
        assert_eq!(r.lead(name).expect("lead").samples, expected, "{name}");
    }
}

// ---- CRCs ----

#[test]
fn a_flipped_byte_is_refused_naming_the_section_and_both_crcs() {
    let original = common::data(EXAMPLE);
    let mut b = original.clone();
    let at = section_at(&b, 6) + 16 + 100;
    b[at] ^= 0x01;
    let stored = le16(&b, section_at(&b, 6));
    match scp::read(&b, &ReadOptions::default()) {
        Err(ScpError::SectionCrc { section: 6, stored: s, computed }) => {
            assert_eq!(s, stored);
            assert_ne!(computed, stored);
        }
        other => panic!("expected a Section 6 CRC error, got {other:?}"),
    }
    let r = scp::read(&b, &lenient()).expect("accepted");
    assert!(r.warnings.iter().any(|w| w.contains("Section 6 CRC")), "{:?}", r.warnings);
    assert!(r.warnings.iter().any(|w| w.contains("record CRC is 0x066B")), "{:?}", r.warnings);
    assert_eq!(r.leads.len(), 12);

    // A damaged record CRC alone is named as such.
    let mut c = original;
    c[0] ^= 0xFF;
    assert!(matches!(scp::read(&c, &ReadOptions::default()), Err(ScpError::RecordCrc { computed: 0x066B, .. })));
}

// ---- unsupported ----

#[test]
fn bimodal_compression_is_refused_as_unsupported() {
    let mut b = common::data(EXAMPLE);
    let at = section_at(&b, 6) + 16 + 5;
    assert_eq!(b[at], 0);
    b[at] = 1;
    fix_crcs(&mut b);
    match scp::read(&b, &ReadOptions::default()) {
        Err(e @ ScpError::Unsupported(_)) => assert!(e.to_string().contains("bimodal"), "{e}"),
        other => panic!("expected unsupported, got {other:?}"),
    }
}

#[test]
fn scp_ecg_v3_is_refused_as_unsupported() {
    let mut b = common::data(EXAMPLE);
    b[6 + 9] = 30;
    fix_crcs(&mut b);
    match scp::read(&b, &ReadOptions::default()) {
        Err(e @ ScpError::Unsupported(_)) => assert!(e.to_string().contains("3.0"), "{e}"),
        other => panic!("expected unsupported, got {other:?}"),
    }
}

// ---- hand-built records ----

#[test]
fn custom_huffman_tables_with_bit_reversed_codes_and_a_table_switch_decode() {
    // Table 1: "1" → 0, "01" → +1, "001" → −1, "0001" + 16 bits → value, "0000" → table 2.
    // Table 2: "0" → +5, "1" → table 1. Base codes are stored bit-reversed.
    let code = |prefix: u8, total: u8, mode: u8, value: i16, stored: u32| {
        let mut c = vec![prefix, total, mode];
        c.extend_from_slice(&value.to_le_bytes());
        c.extend_from_slice(&stored.to_le_bytes());
        c
    };
    let mut s2 = 2u16.to_le_bytes().to_vec();
    s2.extend_from_slice(&5u16.to_le_bytes());
    s2.extend(code(1, 1, 1, 0, 0b1));
    s2.extend(code(2, 2, 1, 1, 0b10));
    s2.extend(code(3, 3, 1, -1, 0b100));
    s2.extend(code(4, 20, 1, 0, 0b1000));
    s2.extend(code(4, 4, 0, 2, 0b0000));
    s2.extend_from_slice(&2u16.to_le_bytes());
    s2.extend(code(1, 1, 1, 5, 0b0));
    s2.extend(code(1, 1, 0, 1, 0b1));
    // 1 | 01 | 001 | 0001 0000000100101100 | 0000 | 0 | 0 | 1 | 1  → 0, 1, −1, 300, 5, 5, 0
    let bits = "1010010001000000010010110000000011";
    let mut stream = vec![0u8; bits.len().div_ceil(8)];
    for (i, c) in bits.chars().enumerate() {
        if c == '1' {
            stream[i / 8] |= 0x80 >> (i % 8);
        }
    }
    let b = build(&[
        (1, section1_minimal()),
        (2, s2),
        (3, section3(0x0C, &[(1, 1, 7)])),
        (6, data_section(5000, 2000, 0, 0, &[stream])),
    ]);
    let r = scp::read(&b, &ReadOptions::default()).expect("reads");
    assert_eq!(r.leads[0].samples, [0, 1, -1, 300, 5, 5, 0]);
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
}

#[test]
fn reference_beat_is_added_back_in_type_0_subtraction_zones_aligned_at_the_fiducial() {
    // Beat of 5 samples at 500 Hz (10 ms), fiducial at its sample 3.
    let mut s4 = 10u16.to_le_bytes().to_vec();
    s4.extend_from_slice(&3u16.to_le_bytes());
    s4.extend_from_slice(&2u16.to_le_bytes());
    // QRS 1: type 0, zone 5..=9, fiducial 7 → beat samples 1..5 on rhythm samples 5..9 (1-based).
    // QRS 2: type 1, zone 12..=16: not subtracted, left alone.
    for (kind, start, fid, end) in [(0u16, 5u32, 7u32, 9u32), (1, 12, 14, 16)] {
        s4.extend_from_slice(&kind.to_le_bytes());
        s4.extend_from_slice(&start.to_le_bytes());
        s4.extend_from_slice(&fid.to_le_bytes());
        s4.extend_from_slice(&end.to_le_bytes());
    }
    let beat = [10, 20, 30, 20, 10];
    let b = build(&[
        (1, section1_minimal()),
        (3, section3(0x0D, &[(1, 1, 20)])),
        (4, s4),
        (5, data_section(5000, 2000, 0, 0, &[raw(&beat)])),
        (6, data_section(5000, 2000, 0, 0, &[raw(&[1; 20])])),
    ]);
    let r = scp::read(&b, &ReadOptions::default()).expect("reads");
    let mut expected = vec![1; 20];
    for (k, v) in beat.iter().enumerate() {
        expected[4 + k] += i32::from(*v);
    }
    assert_eq!(r.leads[0].samples, expected);
    assert_eq!(r.median_beat[0].samples, beat.map(i32::from));
}

#[test]
fn gbk_text_under_a_declared_ascii_charset_is_read_as_gb18030_with_a_warning() {
    let mut s1 = vec![0u8, 5, 0, 0xD5, 0xC5, 0xCE, 0xB0, 0];
    s1.extend_from_slice(&section1_minimal());
    let b = build(&[(1, s1), (3, section3(0x0C, &[(1, 1, 2)])), (6, data_section(5000, 2000, 0, 0, &[raw(&[1, 2])]))]);
    let r = scp::read(&b, &ReadOptions::default()).expect("reads");
    assert_eq!(r.patient.name, "张伟");
    assert!(r.warnings.iter().any(|w| w.contains("GB 18030")), "{:?}", r.warnings);
}

#[test]
fn limits_are_enforced_before_decoding() {
    let b = common::data(EXAMPLE);
    let small = |f: &dyn Fn(&mut yilian_formats::Limits)| {
        let mut opts = ReadOptions::default();
        f(&mut opts.limits);
        scp::read(&b, &opts)
    };
    assert!(matches!(small(&|l| l.max_leads = 8), Err(ScpError::TooManyLeads { count: 12, limit: 8, .. })));
    assert!(matches!(small(&|l| l.max_samples_per_lead = 1000), Err(ScpError::TooManySamples { .. })));
    assert!(matches!(small(&|l| l.max_input_bytes = 1000), Err(ScpError::TooLarge { size: 34144, .. })));
}

#[test]
fn looks_like_refuses_other_formats() {
    assert!(scp::looks_like(&common::data(CONTEC)));
    assert!(!scp::looks_like(&common::data("dicom-ecg/waveform_ecg.dcm")));
    assert!(!scp::looks_like(&common::data("aecg/Example_aECG.xml")));
    assert!(!scp::looks_like(&common::data("contec/0000050.ECG")));
    assert!(!scp::looks_like(&[]));
}

// ---- writer ----

fn round_trip(rec: &Recording) -> (Vec<u8>, Recording) {
    let bytes = scp::write(rec).expect("writes");
    assert_crcs_valid(&bytes, true);
    assert!(scp::looks_like(&bytes));
    let back = scp::read(&bytes, &ReadOptions::default()).expect("reads back");
    (bytes, back)
}

fn assert_same_leads(a: &[Lead], b: &[Lead]) {
    assert_eq!(names(a), names(b));
    for (x, y) in a.iter().zip(b) {
        assert_eq!((x.sample_rate_hz, x.resolution_nv), (y.sample_rate_hz, y.resolution_nv), "{}", x.name);
        assert!(x.samples == y.samples, "lead {} samples differ", x.name);
    }
}

#[test]
fn each_real_file_round_trips_through_the_writer() {
    for rel in [EXAMPLE, DEMO, CONTEC] {
        let original = read(rel);
        let (bytes, back) = round_trip(&original);
        assert_same_leads(&original.leads, &back.leads);
        assert_same_leads(&original.median_beat, &back.median_beat);
        assert_eq!(back.patient, original.patient, "{rel}");
        assert_eq!(back.acquired_at, original.acquired_at, "{rel}");
        assert_eq!(back.device, original.device, "{rel}");
        assert_eq!(back.question, original.question, "{rel}");
        assert_eq!(back.measurements, original.measurements, "{rel}");
        assert_eq!(back.interpretation, original.interpretation, "{rel}");
        assert_eq!(back.format_version, "2.0");
        // What the writer writes is conformant: nothing to warn about but the flat Contec leads.
        assert!(back.warnings.iter().all(|w| w.contains("every sample is 0")), "{rel}: {:?}", back.warnings);
        // Default Huffman table, second differences.
        assert_eq!(le16(&bytes, section_at(&bytes, 2) + 16), 19999);
        assert_eq!(bytes[section_at(&bytes, 6) + 16 + 4], 2);
    }
}

#[test]
fn the_example_is_smaller_than_raw_and_its_sections_are_where_section0_says() {
    let (bytes, _) = round_trip(&read(EXAMPLE));
    let ids: Vec<u16> = section_table(&bytes).iter().map(|s| s.0).collect();
    assert_eq!(ids, [0, 1, 2, 3, 4, 5, 6, 7]);
    assert!(bytes.len() < 12 * 5000 * 2 / 2, "Huffman should at least halve the raw size: {}", bytes.len());
}

fn synthetic(name: &str) -> Recording {
    let mut r = Recording::new(yilian_formats::Format::Wfdb, "");
    r.patient.name = name.into();
    r.patient.id = "门诊-0042".into();
    r.patient.sex = Sex::Female;
    r.patient.age_years = Some(67);
    r.acquired_at = Some(datetime(2026, 3, 1, 8, 30, 5, 0));
    r.device = "康泰 ECG90A".into();
    r.question = Some("胸痛2小时\n请会诊".into());
    r.interpretation = vec!["窦性心律".into(), "ST段抬高".into()];
    let m = |name: &str, value: f64, unit: &str| yilian_formats::Measurement {
        name: name.into(),
        value,
        unit: unit.into(),
    };
    r.measurements =
        vec![m("QRS", 96.0, "ms"), m("QT", 380.0, "ms"), m("QRS axis", -30.0, "deg"), m("Heart rate", 72.0, "/min")];
    for (k, lead) in ["I", "II", "V1"].into_iter().enumerate() {
        let samples = (0..3000).map(|i: i32| ((i * (k as i32 + 3)) % 700) - 350 + if i % 97 == 0 { 20000 } else { 0 });
        r.leads.push(Lead {
            name: lead.into(),
            derived: false,
            sample_rate_hz: 500,
            resolution_nv: 4880.0,
            samples: samples.collect(),
        });
    }
    r
}

#[test]
fn chinese_text_round_trips_declared_as_gb2312() {
    let rec = synthetic("张伟");
    let (bytes, back) = round_trip(&rec);
    assert_eq!(back.patient, rec.patient);
    assert_eq!(back.device, rec.device);
    assert_eq!(back.question, rec.question);
    assert_eq!(back.interpretation, rec.interpretation);
    assert_eq!(back.measurements, rec.measurements);
    assert_eq!(back.acquired_at, rec.acquired_at);
    assert_same_leads(&rec.leads, &back.leads);
    // The name is GB 2312 bytes (张 D5C5, 伟 CEB0), and tag 14 declares language code 0x27.
    let s1 = &bytes[section_at(&bytes, 1)..];
    assert!(s1.windows(4).any(|w| w == [0xD5, 0xC5, 0xCE, 0xB0]));
    assert!(back.warnings.is_empty(), "{:?}", back.warnings);
}

#[test]
fn large_jumps_fall_back_from_second_differences_without_losing_a_sample() {
    let mut rec = synthetic("X");
    rec.leads[0].samples[10] = 32767;
    rec.leads[0].samples[11] = -32768;
    rec.leads[0].samples[12] = 32767;
    let (bytes, back) = round_trip(&rec);
    assert_same_leads(&rec.leads, &back.leads);
    assert!(bytes[section_at(&bytes, 6) + 16 + 4] < 2);
}

#[test]
fn the_writer_refuses_what_scp_ecg_cannot_hold_instead_of_rescaling() {
    let base = synthetic("X");
    let mut r = base.clone();
    r.leads[1].sample_rate_hz = 250;
    assert!(matches!(scp::write(&r), Err(ScpWriteError::Mixed { what: "sample rate", .. })));
    let mut r = base.clone();
    r.leads.iter_mut().for_each(|l| l.sample_rate_hz = 360);
    assert!(matches!(scp::write(&r), Err(ScpWriteError::Rate(360))));
    let mut r = base.clone();
    r.leads.iter_mut().for_each(|l| l.resolution_nv = 582.75);
    assert!(matches!(scp::write(&r), Err(ScpWriteError::Resolution(_))));
    let mut r = base.clone();
    r.leads[0].name = "MLII".into();
    assert!(matches!(scp::write(&r), Err(ScpWriteError::UnknownLead(n)) if n == "MLII"));
    let mut r = base.clone();
    r.leads[0].samples[3] = 40000;
    assert!(matches!(scp::write(&r), Err(ScpWriteError::SampleRange { index: 3, value: 40000, .. })));
    let mut r = base;
    r.median_beat = vec![r.leads[0].clone()];
    assert!(matches!(scp::write(&r), Err(ScpWriteError::Median(_))));
}

#[test]
fn unknown_lead_codes_keep_a_name_that_writes_back_to_the_same_code() {
    let b = build(&[
        (1, section1_minimal()),
        (3, section3(0x14, &[(87, 1, 3), (1, 1, 3)])),
        (6, data_section(5000, 2000, 0, 0, &[raw(&[1, 2, 3]), raw(&[4, 5, 6])])),
    ]);
    let r = scp::read(&b, &ReadOptions::default()).expect("reads");
    assert_eq!(names(&r.leads), ["SCP lead 87", "I"]);
    let (bytes, back) = round_trip(&r);
    assert_same_leads(&r.leads, &back.leads);
    assert_eq!(bytes[section_at(&bytes, 3) + 16 + 2 + 8], 87);
}

// ---- hostile input ----

#[test]
fn truncation_at_any_length_never_panics_and_is_never_silently_accepted() {
    for rel in [EXAMPLE, DEMO] {
        let b = common::data(rel);
        let mut cuts: Vec<usize> = (0..4096.min(b.len())).collect();
        for (_, len, index) in section_table(&b) {
            let end = (index + len) as usize - 1;
            cuts.extend(end.saturating_sub(40)..(end + 40).min(b.len()));
        }
        cuts.extend((4096..b.len()).step_by(997));
        for cut in cuts {
            let part = &b[..cut];
            assert!(scp::read(part, &ReadOptions::default()).is_err(), "{rel} cut at {cut} was accepted");
            if let Ok(r) = scp::read(part, &lenient()) {
                assert!(!r.warnings.is_empty(), "{rel} cut at {cut} read without a warning");
            }
        }
    }
}

proptest! {
    // Each case decodes two whole files twice; 48 cases keep the debug build under ~6 s.
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn random_byte_flips_never_panic(flips in prop::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 1..8)) {
        for original in originals() {
            let mut b = original.clone();
            for (i, x) in &flips {
                let at = i.index(b.len());
                b[at] ^= x;
            }
            let _ = scp::read(&b, &lenient());
            // With the CRCs made right, every check past them gets exercised too.
            fix_crcs_if_possible(&mut b);
            let _ = scp::read(&b, &ReadOptions::default());
        }
    }

    #[test]
    fn arbitrary_bytes_after_a_valid_frame_never_panic(body in prop::collection::vec(any::<u8>(), 0..600), id in 1u16..12) {
        let b = build(&[(1, section1_minimal()), (3, section3(0x0C, &[(1, 1, 4)])), (id, body)]);
        let _ = scp::read(&b, &ReadOptions::default());
    }
}

/// The two real SCP files, read from disk once.
fn originals() -> &'static [Vec<u8>; 2] {
    static FILES: std::sync::OnceLock<[Vec<u8>; 2]> = std::sync::OnceLock::new();
    FILES.get_or_init(|| [common::data(EXAMPLE), common::data(DEMO)])
}

/// `fix_crcs` for bytes whose Section 0 may itself be damaged.
fn fix_crcs_if_possible(b: &mut [u8]) {
    let ok = b.len() >= 22 && {
        let len = le32(b, 10) as usize;
        len >= 16
            && 6 + len <= b.len()
            && section_table(b).iter().all(|&(_, len, index)| {
                index >= 1 && (index as usize - 1).checked_add(len as usize).is_some_and(|e| e <= b.len()) && len >= 2
            })
    };
    if ok {
        fix_crcs(b);
    }
}
