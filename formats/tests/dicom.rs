//! DICOM waveform reader and writer against the real files of `shared/data` (README sections 4,
//! 7, 8 and 12), plus synthetic files for the cases no real file has.

mod common;

use dicom_core::value::DataSetSequence;
use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::tags;
use dicom_object::{InMemDicomObject, OpenFileOptions};
use jiff::civil::{Date, DateTime};
use yilian_formats::dicom::{self, DicomError, DicomWriteError};
use yilian_formats::{Annotation, Format, Lead, Limits, ReadOptions, Recording, Sex};

const WAVEFORM_ECG: &str = "dicom-ecg/waveform_ecg.dcm";
const ECGTOOLKIT: &str = "dicom-ecg/ecgtoolkit_Example.dcm";
const WEB_VIEWER: &str = "dicom-ecg/ecg-dicom-web-viewer_test_ecg.dcm";
const STANDARD: [&str; 12] = ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"];

fn read_bytes(bytes: &[u8]) -> Result<Recording, DicomError> {
    dicom::read(bytes, &ReadOptions::default())
}

fn read(rel: &str) -> Recording {
    read_bytes(&common::data(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn names(leads: &[Lead]) -> Vec<&str> {
    leads.iter().map(|l| l.name.as_str()).collect()
}

fn sums(rec: &Recording) -> Vec<i64> {
    STANDARD.iter().map(|n| rec.lead(n).expect("lead present").sum()).collect()
}

fn first_frame(leads: &[Lead]) -> Vec<i32> {
    leads.iter().map(|l| *l.samples.first().expect("a sample")).collect()
}

fn measurement<'a>(rec: &'a Recording, name: &str) -> (f64, &'a str) {
    let m = rec.measurements.iter().find(|m| m.name == name).unwrap_or_else(|| panic!("no measurement {name}"));
    (m.value, m.unit.as_str())
}

fn date(y: i16, m: i8, d: i8) -> Option<Date> {
    Date::new(y, m, d).ok()
}

fn civil(y: i16, mo: i8, d: i8, h: i8, mi: i8, s: i8) -> Option<DateTime> {
    DateTime::new(y, mo, d, h, mi, s, 0).ok()
}

#[test]
fn waveform_ecg_reads_with_the_readme_values() {
    let rec = read(WAVEFORM_ECG);
    assert_eq!(rec.format, Format::Dicom);
    assert_eq!(rec.format_version, "12-lead ECG Waveform Storage");
    assert_eq!(names(&rec.leads), STANDARD);
    for l in &rec.leads {
        assert_eq!((l.samples.len(), l.sample_rate_hz, l.resolution_nv, l.derived), (10_000, 1000, 1250.0, false));
    }
    assert_eq!(first_frame(&rec.leads), [80, 90, 10, -85, 35, 50, 40, 15, -10, -20, -55, -40]);
    assert_eq!(
        sums(&rec),
        [741291, 726870, -14421, -731598, 375411, 353730, 286220, 317155, 293860, 304835, 308945, 307350]
    );
    assert_eq!(names(&rec.median_beat), STANDARD);
    assert!(rec.median_beat.iter().all(|l| l.samples.len() == 1200 && l.sample_rate_hz == 1000));
    assert_eq!(first_frame(&rec.median_beat), [10, 80, 70, -45, -30, 75, -40, -10, 80, 90, 60, 40]);

    for (name, value, unit) in [
        ("RR", 982.0, "ms"),
        ("PP", 0.0, "ms"),
        ("PR", 161.0, "ms"),
        ("QRS", 75.0, "ms"),
        ("QT", 368.0, "ms"),
        ("QTc", 370.0, "ms"),
        ("P axis", 74.0, "deg"),
        ("QRS axis", 52.0, "deg"),
        ("T axis", 57.0, "deg"),
    ] {
        assert_eq!(measurement(&rec, name), (value, unit), "{name}");
    }
    assert_eq!(rec.interpretation, ["RITMO SINUSALE", "ECG NORMALE"]);

    // 11 beats × (P on/off, QRS on, fiducial, QRS off, T off); DICOM positions are 1-based,
    // Annotation.sample is a 0-based index, so P onset 299 is sample 298.
    assert_eq!(rec.annotations.len(), 66);
    let first = rec.annotations.first().expect("annotations");
    assert_eq!((first.sample, first.label.as_str(), first.lead.as_deref()), (298, "P Onset", None));
    for (label, position) in [("QRS Onset", 460), ("Fiducial Point", 501), ("QRS Offset", 535), ("T Offset", 828)] {
        assert!(rec.annotations.iter().any(|a| a.label == label && a.sample == position - 1), "{label} at {position}");
    }

    assert_eq!(rec.patient.name, "Anonymous");
    assert_eq!(rec.patient.id, "642341");
    assert_eq!(rec.patient.birth_date, date(1971, 1, 23));
    assert_eq!(rec.patient.sex, Sex::Female);
    assert_eq!(rec.patient.age_years, Some(42));
    assert_eq!(rec.acquired_at, civil(2013, 1, 25, 10, 59, 19));
    assert_eq!(rec.device, "Mortara Instrument, Inc. el250");
    assert!(rec.warnings.is_empty(), "{:?}", rec.warnings);
}

#[test]
fn ecgtoolkit_example_implicit_vr_reads_with_the_readme_values() {
    let rec = read(ECGTOOLKIT);
    assert_eq!(rec.format_version, "12-lead ECG Waveform Storage");
    assert_eq!(names(&rec.leads), STANDARD);
    assert!(rec.leads.iter().all(|l| l.samples.len() == 5000 && l.sample_rate_hz == 500 && l.resolution_nv == 2500.0));
    assert_eq!(first_frame(&rec.leads), [-2, -7, -5, 4, 1, -6, 43, 55, 40, 28, 23, -9]);
    assert_eq!(sums(&rec), [-4921, -4084, 837, 4432, -2721, -1570, -2299, -2648, -3119, -2499, -3009, -1762]);
    let lead_i = rec.lead("I").expect("lead I");
    assert_eq!(lead_i.samples.get(..5), Some(&[-2, -2, -2, -2, -3][..]));

    // The median beat is stored as 600 samples whose last is the padding -32768: 599 remain,
    // equal to the aECG representative beat (lead I starts 4 4 2 3 4 4 4 4, sum 6753).
    assert_eq!(names(&rec.median_beat), STANDARD);
    assert!(rec.median_beat.iter().all(|l| l.samples.len() == 599 && l.sample_rate_hz == 500));
    let beat_i = rec.median("I").expect("median I");
    assert_eq!(beat_i.samples.get(..8), Some(&[4, 4, 2, 3, 4, 4, 4, 4][..]));
    assert_eq!(beat_i.sum(), 6753);
    assert!(rec.median_beat.iter().all(|l| !l.samples.contains(&-32768)));
    assert!(rec.warnings.iter().any(|w| w.contains("MEDIAN BEAT") && w.contains("padding")), "{:?}", rec.warnings);

    for (name, value, unit) in [
        ("PR", 148.0, "ms"),
        ("QRS", 120.0, "ms"),
        ("QT", 420.0, "ms"),
        ("QTc", 443.0, "ms"),
        ("P axis", 44.0, "deg"),
        ("QRS axis", -61.0, "deg"),
        ("T axis", 86.0, "deg"),
    ] {
        assert_eq!(measurement(&rec, name), (value, unit), "{name}");
    }
    assert!(rec.warnings.iter().any(|w| w.contains("axes")), "the ms-coded axes are reported");
    let boundaries: Vec<(&str, u64)> = rec.annotations.iter().map(|a| (a.label.as_str(), a.sample)).collect();
    assert_eq!(
        boundaries,
        [("P onset", 142), ("P offset", 193), ("QRS onset", 216), ("QRS offset", 276), ("T offset", 426)]
    );

    assert_eq!(rec.patient.name, "Clark");
    assert_eq!(rec.patient.id, "SBJ-123");
    assert_eq!(rec.patient.birth_date, date(1953, 5, 8));
    assert_eq!(rec.patient.sex, Sex::Male);
    assert_eq!(rec.patient.age_years, None);
    assert_eq!(rec.acquired_at, civil(2002, 11, 22, 9, 10, 0));
    assert_eq!(rec.device, "Unknown ELI250");
}

#[test]
fn hemodynamic_file_with_ecg_leads_in_millivolts_reads() {
    let rec = read(WEB_VIEWER);
    assert_eq!(rec.format_version, "Hemodynamic Waveform Storage");
    assert_eq!(names(&rec.leads), STANDARD);
    // 0.00122 mV is exactly 1220 nV: the decimal is scaled before it becomes a float.
    assert!(rec.leads.iter().all(|l| l.samples.len() == 2400 && l.sample_rate_hz == 240 && l.resolution_nv == 1220.0));
    assert_eq!(first_frame(&rec.leads), [186, 48, -138, -117, 162, -45, -82, -176, 98, 196, 286, 194]);
    assert_eq!(
        sums(&rec),
        [105800, 25148, -80652, -65474, 93226, -27752, -47952, -105758, 54224, 112734, 171230, 110006]
    );
    assert!(rec.median_beat.is_empty());
    assert_eq!(measurement(&rec, "Heart rate"), (69.0, "/min"));
    assert_eq!(rec.patient.name, "Patient Test");
    assert_eq!(rec.patient.id, "123-654");
    assert_eq!(rec.patient.birth_date, date(1944, 1, 2));
    assert_eq!(rec.patient.sex, Sex::Male);
    assert_eq!(rec.patient.age_years, Some(55));
    assert_eq!(rec.acquired_at, civil(1999, 12, 23, 10, 7, 9));
    assert_eq!(rec.device, "GE Marquette MACLB");
    assert!(rec.warnings.is_empty(), "{:?}", rec.warnings);
}

#[test]
fn a_ct_image_is_refused_as_not_an_ecg_with_its_description() {
    let bytes = common::data("dicom-img/CT_small.dcm");
    let want = "DICOM CT Image Storage (1.2.840.10008.5.1.4.1.1.2), modality CT";
    match read_bytes(&bytes) {
        Err(DicomError::NotEcg { description }) => assert_eq!(description, want),
        other => panic!("expected NotEcg, got {other:?}"),
    }
    assert_eq!(dicom::describe(&bytes).as_deref(), Some(want));
    assert!(dicom::looks_like(&bytes));
}

#[test]
fn every_dicom_image_is_described_and_none_reads_as_an_ecg() {
    for (file, start) in [
        ("CR_dicomdirtests_6154.dcm", "DICOM Computed Radiography Image Storage"),
        ("JPGLosslessP14SV1_1s_1f_8b.dcm", "DICOM Ultrasound Image Storage"),
        ("MR_small.dcm", "DICOM MR Image Storage"),
        ("MR_small_RLE.dcm", "DICOM MR Image Storage"),
        ("MR_small_implicit.dcm", "DICOM MR Image Storage"),
        ("MR_small_jpeg_ls_lossless.dcm", "DICOM MR Image Storage"),
        ("OBXXXX1A_rle.dcm", "DICOM Ultrasound Image Storage"),
        ("RG3_J2KI.dcm", "DICOM Computed Radiography Image Storage"),
        ("examples_rgb_color.dcm", "DICOM Ultrasound Image Storage"),
        ("examples_ybr_color.dcm", "DICOM Ultrasound Multi-frame Image Storage"),
        ("image_dfl.dcm", "DICOM Secondary Capture Image Storage"),
    ] {
        let bytes = common::data(&format!("dicom-img/{file}"));
        let description = dicom::describe(&bytes).unwrap_or_else(|| panic!("{file}: no description"));
        assert!(description.starts_with(start), "{file}: {description}");
        match read_bytes(&bytes) {
            Err(DicomError::NotEcg { description: d }) => assert_eq!(d, description, "{file}"),
            other => panic!("{file}: expected NotEcg, got {other:?}"),
        }
    }
    assert_eq!(dicom::describe(b"not dicom at all"), None);
    assert!(!dicom::looks_like(&common::data("scp/ecgtoolkit_Example.scp")));
}

/// Every lead of `a` is in `b` under the same name with the same integers, rate and resolution.
fn assert_same_leads(a: &[Lead], b: &[Lead], what: &str) {
    assert_eq!(names(a), names(b), "{what}: lead names");
    for (x, y) in a.iter().zip(b) {
        assert_eq!(x.samples, y.samples, "{what}: samples of {}", x.name);
        assert_eq!(x.sample_rate_hz, y.sample_rate_hz, "{what}: rate of {}", x.name);
        assert_eq!(x.resolution_nv, y.resolution_nv, "{what}: resolution of {}", x.name);
        assert_eq!(x.derived, y.derived, "{what}: derived flag of {}", x.name);
    }
}

#[test]
fn the_three_real_files_round_trip_through_the_writer() {
    for file in [WAVEFORM_ECG, ECGTOOLKIT, WEB_VIEWER] {
        let original = read(file);
        let bytes = dicom::write(&original).unwrap_or_else(|e| panic!("{file}: {e}"));
        let again = read_bytes(&bytes).unwrap_or_else(|e| panic!("{file} re-read: {e}"));
        assert_same_leads(&original.leads, &again.leads, file);
        assert_same_leads(&original.median_beat, &again.median_beat, file);
        assert_eq!(again.format_version, "12-lead ECG Waveform Storage", "{file}");
        assert_eq!(original.patient, again.patient, "{file}");
        assert_eq!(original.acquired_at, again.acquired_at, "{file}");
        assert_eq!(original.device, again.device, "{file}");
        assert_eq!(original.measurements, again.measurements, "{file}");
        assert_eq!(original.interpretation, again.interpretation, "{file}");
        assert_eq!(original.annotations, again.annotations, "{file}");
        assert!(again.warnings.is_empty(), "{file}: {:?}", again.warnings);
        // Same recording, same bytes: the UIDs come from the content.
        assert_eq!(dicom::write(&again).expect("rewrite"), bytes, "{file}: deterministic");
    }
}

#[test]
fn leads_are_mapped_by_channel_source_not_position() {
    let mut rec = read(ECGTOOLKIT);
    rec.leads.reverse();
    rec.median_beat.clear();
    let again = read_bytes(&dicom::write(&rec).expect("write")).expect("read");
    assert_eq!(names(&again.leads).first(), Some(&"V6"));
    assert_same_leads(&rec.leads, &again.leads, "reversed");
    assert_eq!(again.lead("III").expect("III").sum(), 837);
}

#[test]
fn a_chinese_patient_name_survives_write_and_read() {
    let mut rec = read(WAVEFORM_ECG);
    rec.patient.name = "张伟".into();
    let bytes = dicom::write(&rec).expect("write");
    assert!(bytes.windows("张伟".len()).any(|w| w == "张伟".as_bytes()), "stored as UTF-8");
    assert!(bytes.windows(10).any(|w| w == b"ISO_IR 192"));
    assert_eq!(read_bytes(&bytes).expect("read").patient.name, "张伟");
}

#[test]
fn writer_picks_general_ecg_when_the_12_lead_limits_do_not_fit() {
    let mut rec = read(WAVEFORM_ECG);
    // 20 s at 1000 Hz is beyond the 16,384 samples of the 12-lead IOD.
    for l in &mut rec.leads {
        let copy = l.samples.clone();
        l.samples.extend(copy);
    }
    let again = read_bytes(&dicom::write(&rec).expect("write")).expect("read");
    assert_eq!(again.format_version, "General ECG Waveform Storage");
    assert_same_leads(&rec.leads, &again.leads, "general");

    // 2 leads at 128 Hz fit only the Ambulatory ECG IOD; with a median beat, nothing.
    let mut slow = read(WEB_VIEWER);
    slow.leads.truncate(2);
    for l in &mut slow.leads {
        l.sample_rate_hz = 128;
    }
    let again = read_bytes(&dicom::write(&slow).expect("write")).expect("read");
    assert_eq!(again.format_version, "Ambulatory ECG Waveform Storage");
    slow.median_beat = slow.leads.clone();
    assert!(matches!(dicom::write(&slow), Err(DicomWriteError::DoesNotFit(_))));
}

#[test]
fn writer_refuses_samples_outside_16_bits_and_empty_recordings() {
    let mut rec = read(WEB_VIEWER);
    if let Some(s) = rec.leads.get_mut(3).and_then(|l| l.samples.get_mut(17)) {
        *s = 40_000;
    }
    match dicom::write(&rec) {
        Err(DicomWriteError::SampleOutOfRange { lead, median: false, index: 17, value: 40_000 }) => {
            assert_eq!(lead, "aVR")
        }
        other => panic!("expected SampleOutOfRange, got {other:?}"),
    }
    let empty = Recording::new(Format::Dicom, "");
    assert!(matches!(dicom::write(&empty), Err(DicomWriteError::NoLeads)));
}

#[test]
fn derived_leads_unknown_leads_and_annotations_on_leads_round_trip() {
    let mut rec = read(WEB_VIEWER);
    if let Some(l) = rec.leads.get_mut(2) {
        l.derived = true;
    }
    if let Some(l) = rec.leads.get_mut(11) {
        l.name = "MLII".into();
    }
    rec.annotations = vec![
        Annotation { sample: 0, lead: None, label: "N".into(), text: None },
        Annotation { sample: 2399, lead: Some("II".into()), label: "QRS Onset".into(), text: Some("(AFIB".into()) },
    ];
    rec.interpretation = vec!["窦性心律".into()];
    let again = read_bytes(&dicom::write(&rec).expect("write")).expect("read");
    assert_same_leads(&rec.leads, &again.leads, "derived/unknown");
    assert_eq!(again.annotations, rec.annotations);
    assert_eq!(again.interpretation, rec.interpretation);
    assert!(again.warnings.is_empty(), "{:?}", again.warnings);
}

// --- independent reader: dcmtk ---

/// Runs a dcmtk tool; fails with a clear message when dcmtk is missing (CI installs it).
fn dcmtk(tool: &str, args: &[&std::ffi::OsStr]) -> std::process::Output {
    std::process::Command::new(tool).args(args).output().unwrap_or_else(|e| {
        panic!("cannot run `{tool}` ({e}): install dcmtk (`apt-get install -y dcmtk`) for the DICOM cross-check")
    })
}

#[test]
fn dcmdump_parses_a_written_file_cleanly_and_sees_our_samples() {
    let mut rec = read(WAVEFORM_ECG);
    rec.patient.name = "张伟".into();
    let bytes = dicom::write(&rec).expect("write");
    let dir = std::env::temp_dir().join(format!("yilian-dicom-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("written.dcm");
    std::fs::write(&path, &bytes).expect("save");

    let out = dcmtk("dcmdump", &["+L".as_ref(), path.as_os_str()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(out.status.success(), "dcmdump failed: {stderr}");
    assert!(stderr.trim().is_empty(), "dcmdump warned: {stderr}");
    for want in [
        "(0002,0002) UI =TwelveLeadECGWaveformStorage",
        "(0008,0016) UI =TwelveLeadECGWaveformStorage",
        "(0008,0005) CS [ISO_IR 192]",
        "(0010,0010) PN [张伟]",
        "(003a,0005) US 12",
        "(003a,0010) UL 10000",
        "(003a,0010) UL 1200",
        "(003a,0210) DS [1.25]",
        "(5400,1006) CS [SS]",
    ] {
        assert!(stdout.contains(want), "dcmdump output lacks {want}");
    }
    // dcmdump's own decoding of the Waveform Data words, frame by frame, equals our integers.
    let groups: Vec<Vec<i16>> = stdout
        .lines()
        .filter(|l| l.trim_start().starts_with("(5400,1010) OW "))
        .map(|l| {
            let words = l.trim_start().trim_start_matches("(5400,1010) OW ").split(' ').next().unwrap_or("");
            words.split('\\').map(|w| u16::from_str_radix(w, 16).expect("hex word") as i16).collect()
        })
        .collect();
    assert_eq!(groups.len(), 2, "rhythm and median Waveform Data");
    for (words, leads) in groups.iter().zip([&rec.leads, &rec.median_beat]) {
        let ours: Vec<i16> =
            (0..leads[0].samples.len()).flat_map(|f| leads.iter().map(move |l| l.samples[f] as i16)).collect();
        assert_eq!(words, &ours);
    }
}

// --- limits and hostile input ---

#[test]
fn limits_are_enforced_before_decoding() {
    let bytes = common::data(WAVEFORM_ECG);
    let opts = |limits: Limits| ReadOptions { limits, ..ReadOptions::default() };
    let small = Limits { max_input_bytes: 1000, ..Limits::default() };
    assert!(matches!(dicom::read(&bytes, &opts(small)), Err(DicomError::TooLarge { size: 291_088, limit: 1000 })));
    let short = Limits { max_samples_per_lead: 5000, ..Limits::default() };
    assert!(matches!(dicom::read(&bytes, &opts(short)), Err(DicomError::Limit { found: 10_000, limit: 5000, .. })));
    let few = Limits { max_leads: 8, ..Limits::default() };
    assert!(matches!(dicom::read(&bytes, &opts(few)), Err(DicomError::Limit { found: 12, limit: 8, .. })));
    let few_marks = Limits { max_annotations: 10, ..Limits::default() };
    assert!(matches!(dicom::read(&bytes, &opts(few_marks)), Err(DicomError::Limit { limit: 10, .. })));
}

#[test]
fn a_length_field_beyond_the_file_is_refused_without_allocating() {
    let mut bytes = common::data(WEB_VIEWER);
    // Waveform Data's 4-byte length (explicit VR OW) becomes 0xFFFFFFF0.
    let at = bytes.windows(6).position(|w| w == [0x00, 0x54, 0x10, 0x10, b'O', b'W']).expect("WaveformData");
    bytes.splice(at + 8..at + 12, 0xFFFF_FFF0_u32.to_le_bytes());
    match read_bytes(&bytes) {
        Err(DicomError::Malformed { offset, reason }) => {
            assert_eq!(offset, at);
            assert!(reason.contains("4294967280"), "{reason}");
        }
        other => panic!("expected Malformed, got {other:?}"),
    }
}

#[test]
fn deeply_nested_sequences_are_refused() {
    let mut bytes = common::data(WEB_VIEWER);
    let mut nest = Vec::new();
    for _ in 0..40 {
        // (0040,B020) SQ undefined length, then an item of undefined length.
        nest.extend_from_slice(&[0x40, 0x00, 0x20, 0xB0, b'S', b'Q', 0, 0, 0xFF, 0xFF, 0xFF, 0xFF]);
        nest.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0, 0xFF, 0xFF, 0xFF, 0xFF]);
    }
    bytes.extend_from_slice(&nest);
    assert!(matches!(read_bytes(&bytes), Err(DicomError::Malformed { .. })));
}

/// Truncation lengths: every length of the first 4 KiB (meta group, patient module,
/// annotation and channel sequences start there), the last bytes, then a stride.
fn cut_points(len: usize) -> Vec<usize> {
    let mut cuts: Vec<usize> = (0..len.min(4096)).collect();
    cuts.extend(len.saturating_sub(32)..len);
    cuts.extend((4096..len).step_by(1999));
    cuts
}

#[test]
fn truncated_files_never_panic() {
    for file in [WAVEFORM_ECG, ECGTOOLKIT, WEB_VIEWER] {
        let bytes = common::data(file);
        for cut in cut_points(bytes.len()) {
            let part = bytes.get(..cut).expect("cut inside");
            let read = read_bytes(part);
            // A file cut anywhere is either refused or (cut inside trailing padding) decoded.
            if let Ok(rec) = read {
                assert!(!rec.leads.is_empty(), "{file} cut at {cut}");
            }
            let _ = dicom::describe(part);
        }
    }
}

#[test]
fn flipped_bytes_never_panic() {
    // A small xorshift so that failures reproduce.
    let mut state = 0x9E37_79B9_7F4A_7C15_u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    // YILIAN_FUZZ_ROUNDS raises the count for a longer hunt (e.g. in release mode).
    let rounds: u64 = std::env::var("YILIAN_FUZZ_ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(150);
    for file in [WAVEFORM_ECG, ECGTOOLKIT, WEB_VIEWER] {
        let original = common::data(file);
        // Flips in the header and element structure matter most: the first 8 KiB and the
        // sequences before the waveform data.
        let hot = original.len().min(8192) as u64;
        for round in 0..rounds {
            let mut bytes = original.clone();
            for _ in 0..(1 + round % 4) {
                let span = if next() % 4 == 0 { original.len() as u64 } else { hot };
                let at = (next() % span) as usize;
                if let Some(b) = bytes.get_mut(at) {
                    *b ^= 1 << (next() % 8);
                }
            }
            let _ = read_bytes(&bytes);
            let _ = dicom::describe(&bytes);
        }
    }
}

// --- synthetic files for the cases the real files do not cover ---

/// A written ECG Toolkit recording, re-opened with dicom-rs so a test can edit it.
fn editable(rec: &Recording) -> dicom_object::DefaultDicomObject {
    let bytes = dicom::write(rec).expect("write");
    OpenFileOptions::new().from_reader(&bytes[..]).expect("dicom-rs reads our file")
}

fn save(obj: &dicom_object::DefaultDicomObject) -> Vec<u8> {
    let mut out = Vec::new();
    obj.write_all(&mut out).expect("dicom-rs writes");
    out
}

/// Applies `edit` to multiplex group `group` (0-based).
fn edit_group(obj: &mut dicom_object::DefaultDicomObject, group: usize, edit: impl FnOnce(&mut InMemDicomObject)) {
    let mut items = obj.get(tags::WAVEFORM_SEQUENCE).and_then(|e| e.items()).expect("groups").to_vec();
    edit(items.get_mut(group).expect("group"));
    obj.put(DataElement::new(tags::WAVEFORM_SEQUENCE, VR::SQ, DataSetSequence::from(items)));
}

/// Applies `edit` to every channel definition of group `group`.
fn edit_channels(item: &mut InMemDicomObject, edit: impl Fn(usize, &mut InMemDicomObject)) {
    let mut defs = item.get(tags::CHANNEL_DEFINITION_SEQUENCE).and_then(|e| e.items()).expect("defs").to_vec();
    for (i, d) in defs.iter_mut().enumerate() {
        edit(i, d);
    }
    item.put(DataElement::new(tags::CHANNEL_DEFINITION_SEQUENCE, VR::SQ, DataSetSequence::from(defs)));
}

fn put_str(obj: &mut InMemDicomObject, tag: Tag, vr: VR, value: &str) {
    obj.put(DataElement::new(tag, vr, PrimitiveValue::from(value)));
}

/// A small recording: 3 leads, 8 samples at 500 Hz, 5 uV.
fn small() -> Recording {
    let mut rec = Recording::new(Format::Dicom, "");
    for (name, base) in [("I", 10), ("II", 20), ("V1", -30)] {
        rec.leads.push(Lead {
            name: name.into(),
            derived: false,
            sample_rate_hz: 500,
            resolution_nv: 5000.0,
            samples: (0..8).map(|i| base + i).collect(),
        });
    }
    rec
}

fn set_samples(item: &mut InMemDicomObject, words: &[i16]) {
    let words: Vec<u16> = words.iter().map(|w| *w as u16).collect();
    item.put(DataElement::new(tags::WAVEFORM_DATA, VR::OW, PrimitiveValue::U16(words.into())));
}

#[test]
fn declared_padding_is_dropped_at_the_end_reported_inside_and_a_padded_channel_is_absent() {
    let mut obj = editable(&small());
    edit_group(&mut obj, 0, |g| {
        g.put(DataElement::new(tags::WAVEFORM_PADDING_VALUE, VR::OW, PrimitiveValue::U16(vec![0x8000].into())));
        let p = i16::MIN;
        // 8 frames of (I, II, V1): V1 is all padding, frame 3 is padding inside, 6-7 at the end.
        #[rustfmt::skip]
        set_samples(g, &[
            1, 2, p,  1, 2, p,  1, 2, p,  p, p, p,  1, 2, p,  1, 2, p,  p, p, p,  p, p, p,
        ]);
    });
    let rec = read_bytes(&save(&obj)).expect("read");
    assert_eq!(names(&rec.leads), ["I", "II"]);
    assert_eq!(rec.lead("I").expect("I").samples, [1, 1, 1, 0, 1, 1]);
    assert!(rec.warnings.iter().any(|w| w.contains("1 sample(s) per channel inside")), "{:?}", rec.warnings);
    assert!(rec.warnings.iter().any(|w| w.contains("lead V1 holds only the padding value")), "{:?}", rec.warnings);
}

#[test]
fn units_correction_factor_and_baseline_are_applied() {
    let mut obj = editable(&small());
    edit_group(&mut obj, 0, |g| {
        edit_channels(g, |i, d| {
            let mut unit = InMemDicomObject::new_empty();
            put_str(&mut unit, tags::CODE_VALUE, VR::SH, "mV");
            put_str(&mut unit, tags::CODING_SCHEME_DESIGNATOR, VR::SH, "UCUM");
            put_str(&mut unit, tags::CODE_MEANING, VR::LO, "millivolt");
            d.put(DataElement::new(
                tags::CHANNEL_SENSITIVITY_UNITS_SEQUENCE,
                VR::SQ,
                DataSetSequence::from(vec![unit]),
            ));
            put_str(d, tags::CHANNEL_SENSITIVITY, VR::DS, "0.005");
            put_str(d, tags::CHANNEL_SENSITIVITY_CORRECTION_FACTOR, VR::DS, "2");
            // 0.02 mV is 2 LSB of 10 uV; 0.015 mV is 1.5 LSB and must be reported.
            put_str(d, tags::CHANNEL_BASELINE, VR::DS, if i == 2 { "0.015" } else { "0.02" });
        });
    });
    let rec = read_bytes(&save(&obj)).expect("read");
    let lead_i = rec.lead("I").expect("I");
    assert_eq!(lead_i.resolution_nv, 10_000.0);
    assert_eq!(lead_i.samples.first(), Some(&12));
    assert!(rec.warnings.iter().any(|w| w.contains("V1") && w.contains("not a whole")), "{:?}", rec.warnings);
}

#[test]
fn sample_interpretations_and_bits_are_honoured_and_others_refused() {
    for (interp, bits, data, want) in [
        ("SB", 8_u16, vec![0x01_u8, 0xFF, 0x80, 0x7F, 0x00, 0x02], vec![1, -128, 0]),
        ("UB", 8, vec![0x01, 0xFF, 0x80, 0x7F, 0x00, 0x02], vec![1, 128, 0]),
        ("US", 16, vec![0xFF, 0xFF, 0, 0, 1, 0, 2, 0, 3, 0, 4, 0], vec![65535, 1, 3]),
        ("SL", 32, [-70000_i32, 5, 6, 7, 8, 9].iter().flat_map(|v| v.to_le_bytes()).collect(), vec![-70000, 6, 8]),
    ] {
        let mut rec = small();
        rec.leads.truncate(2);
        for l in &mut rec.leads {
            l.samples.truncate(3);
        }
        let mut obj = editable(&rec);
        edit_group(&mut obj, 0, |g| {
            put_str(g, tags::WAVEFORM_SAMPLE_INTERPRETATION, VR::CS, interp);
            g.put(DataElement::new(tags::WAVEFORM_BITS_ALLOCATED, VR::US, PrimitiveValue::from(bits)));
            g.put(DataElement::new(tags::WAVEFORM_DATA, VR::OB, PrimitiveValue::U8(data.into())));
        });
        let got = read_bytes(&save(&obj)).unwrap_or_else(|e| panic!("{interp}: {e}"));
        assert_eq!(got.lead("I").expect("I").samples, want, "{interp}");
    }
    for (interp, bits) in [("MB", 8_u16), ("SS", 8), ("XX", 16)] {
        let mut obj = editable(&small());
        edit_group(&mut obj, 0, |g| {
            put_str(g, tags::WAVEFORM_SAMPLE_INTERPRETATION, VR::CS, interp);
            g.put(DataElement::new(tags::WAVEFORM_BITS_ALLOCATED, VR::US, PrimitiveValue::from(bits)));
        });
        assert!(matches!(read_bytes(&save(&obj)), Err(DicomError::Unsupported { group: 1, .. })), "{interp}/{bits}");
    }
}

#[test]
fn a_lead_without_units_is_refused_and_a_pressure_channel_is_skipped() {
    let mut obj = editable(&small());
    edit_group(&mut obj, 0, |g| {
        edit_channels(g, |_, d| {
            d.remove_element(tags::CHANNEL_SENSITIVITY_UNITS_SEQUENCE);
        })
    });
    assert!(matches!(read_bytes(&save(&obj)), Err(DicomError::Invalid { group: 1, .. })));

    let mut obj = editable(&small());
    edit_group(&mut obj, 0, |g| {
        edit_channels(g, |i, d| {
            if i == 1 {
                let mut source = InMemDicomObject::new_empty();
                put_str(&mut source, tags::CODE_VALUE, VR::SH, "122127");
                put_str(&mut source, tags::CODING_SCHEME_DESIGNATOR, VR::SH, "DCM");
                put_str(&mut source, tags::CODE_MEANING, VR::LO, "Aortic pressure");
                d.put(DataElement::new(tags::CHANNEL_SOURCE_SEQUENCE, VR::SQ, DataSetSequence::from(vec![source])));
            }
        })
    });
    let rec = read_bytes(&save(&obj)).expect("read");
    assert_eq!(names(&rec.leads), ["I", "V1"]);
    assert!(rec.warnings.iter().any(|w| w.contains("Aortic pressure")), "{:?}", rec.warnings);
}

#[test]
fn gbk_names_and_files_without_preamble_are_read() {
    let mut obj = editable(&small());
    put_str(&mut obj, tags::SPECIFIC_CHARACTER_SET, VR::CS, "GBK");
    // dicom-rs does not know GBK, so it writes the name as ISO 8859-1 chars: the GBK bytes.
    let gbk: String = [0xD5_u8, 0xC5, 0x5E, 0xCE, 0xB0].iter().map(|&b| char::from(b)).collect();
    put_str(&mut obj, tags::PATIENT_NAME, VR::PN, &gbk);
    let bytes = save(&obj);
    assert!(bytes.windows(5).any(|w| w == [0xD5, 0xC5, 0x5E, 0xCE, 0xB0]), "raw GBK bytes in the file");
    assert_eq!(read_bytes(&bytes).expect("read").patient.name, "张伟");

    // Without the preamble ("DICM" first), and without "DICM" (group 0002 first).
    let bare = bytes.get(128..).expect("preamble");
    assert!(dicom::looks_like(bare));
    assert_eq!(read_bytes(bare).expect("no preamble").patient.name, "张伟");
    let no_magic = bytes.get(132..).expect("magic");
    assert!(dicom::looks_like(no_magic));
    assert_eq!(read_bytes(no_magic).expect("no magic").leads.len(), 3);
}

#[test]
fn a_waveform_file_without_ecg_channels_is_not_an_ecg() {
    let mut obj = editable(&small());
    edit_group(&mut obj, 0, |g| {
        edit_channels(g, |_, d| {
            let mut source = InMemDicomObject::new_empty();
            put_str(&mut source, tags::CODE_VALUE, VR::SH, "122127");
            put_str(&mut source, tags::CODING_SCHEME_DESIGNATOR, VR::SH, "DCM");
            put_str(&mut source, tags::CODE_MEANING, VR::LO, "Aortic pressure");
            d.put(DataElement::new(tags::CHANNEL_SOURCE_SEQUENCE, VR::SQ, DataSetSequence::from(vec![source])));
        })
    });
    match read_bytes(&save(&obj)) {
        Err(DicomError::NotEcg { description }) => {
            assert!(description.contains("no ECG lead channels"), "{description}")
        }
        other => panic!("expected NotEcg, got {other:?}"),
    }
}
