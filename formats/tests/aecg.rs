//! HL7 aECG reader and writer against the real files of the test-data README (section 5).

mod common;

use jiff::civil::date;
use proptest::prelude::*;
use yilian_formats::aecg::{self, AecgError};
use yilian_formats::recording::{Annotation, Format, Lead, Limits, Measurement, ReadOptions, Recording, Sex};

fn read(bytes: &[u8]) -> Result<Recording, AecgError> {
    aecg::read(bytes, &ReadOptions::default())
}

fn example1() -> Recording {
    read(&common::data("aecg/Example_aECG.xml")).expect("Example_aECG.xml reads")
}

fn example2() -> Recording {
    read(&common::data("aecg/hl7aecg-Example2.xml")).expect("hl7aecg-Example2.xml reads")
}

fn lead<'a>(rec: &'a Recording, name: &str) -> &'a Lead {
    rec.lead(name).unwrap_or_else(|| panic!("lead {name} present"))
}

fn sums(leads: &[Lead]) -> Vec<(&str, i64)> {
    leads.iter().map(|l| (l.name.as_str(), l.sum())).collect()
}

#[test]
fn example1_rhythm_leads_match_the_readme() {
    let rec = example1();
    assert_eq!(rec.format, Format::Aecg);
    // File order: I, II, V1-V6, III, aVR, aVL, aVF (the codes are MDC_ECG_LEAD_AVR etc.).
    let names: Vec<&str> = rec.leads.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(names, ["I", "II", "V1", "V2", "V3", "V4", "V5", "V6", "III", "aVR", "aVL", "aVF"]);
    for l in &rec.leads {
        assert_eq!(l.samples.len(), 5000, "{}", l.name);
        assert_eq!(l.sample_rate_hz, 500, "{}", l.name);
        assert_eq!(l.resolution_nv, 2500.0, "{}", l.name);
        assert!(!l.derived);
    }
    let expected = [
        ("I", -4921),
        ("II", -4084),
        ("III", 837),
        ("aVR", 4432),
        ("aVL", -2721),
        ("aVF", -1570),
        ("V1", -2299),
        ("V2", -2648),
        ("V3", -3119),
        ("V4", -2499),
        ("V5", -3009),
        ("V6", -1762),
    ];
    for (name, sum) in expected {
        assert_eq!(lead(&rec, name).sum(), sum, "sum of {name}");
    }
    assert_eq!(lead(&rec, "I").samples[..5], [-2, -2, -2, -2, -3]);
    assert_eq!(lead(&rec, "V2").samples[..5], [55, 53, 51, 49, 47]);
    assert_eq!(rec.lead("aVR").map(|l| l.duration_ms()), Some(10_000));
}

#[test]
fn example1_representative_beat_matches_the_readme() {
    let rec = example1();
    assert_eq!(rec.median_beat.len(), 12);
    for l in &rec.median_beat {
        assert_eq!(l.samples.len(), 599, "{}", l.name);
        assert_eq!(l.sample_rate_hz, 500);
        assert_eq!(l.resolution_nv, 2500.0);
    }
    let beat_i = rec.median("I").expect("median I");
    assert_eq!(beat_i.samples[..8], [4, 4, 2, 3, 4, 4, 4, 4]);
    assert_eq!(beat_i.sum(), 6753);
}

#[test]
fn example1_header_fields_match_the_readme() {
    let rec = example1();
    assert_eq!(rec.patient.name, "Clark");
    assert_eq!(rec.patient.id, "SBJ-123");
    assert_eq!(rec.patient.sex, Sex::Male);
    assert_eq!(rec.patient.birth_date, Some(date(1953, 5, 8)));
    // The "Reported Age" control variable (LOINC 21612-7).
    assert_eq!(rec.patient.age_years, Some(46));
    assert_eq!(rec.acquired_at, Some(date(2002, 11, 22).at(9, 10, 0, 0)));
    assert_eq!(rec.device, "Mortara Instrument, Inc. ELI250");
    assert!(rec.warnings.is_empty(), "{:?}", rec.warnings);
}

#[test]
fn example1_statements_and_global_measurements() {
    let rec = example1();
    assert_eq!(rec.interpretation, ["Sinus Rhythm"]);
    // The global values of the representative beat; the per-beat copies are not repeated.
    let got: Vec<(&str, f64, &str)> =
        rec.measurements.iter().map(|m| (m.name.as_str(), m.value, m.unit.as_str())).collect();
    assert_eq!(
        got,
        [
            ("P", 102.0, "ms"),
            ("PR", 148.0, "ms"),
            ("QRS", 120.0, "ms"),
            ("QT", 420.0, "ms"),
            ("QTc", 443.0, "ms"),
            ("P axis", 44.0, "deg"),
            ("QRS axis", -61.0, "deg"),
            ("T axis", 86.0, "deg"),
        ]
    );
}

#[test]
fn example1_wave_annotations_sit_on_rhythm_samples() {
    let rec = example1();
    // The first beat's P wave is 20021122091000.122 - .224 (absolute times, 500 Hz).
    let p_onset = Annotation { sample: 61, lead: None, label: "MDC_ECG_WAVC_PWAVE".into(), text: Some("onset".into()) };
    assert!(rec.annotations.contains(&p_onset), "{:?}", &rec.annotations[..4]);
    let t_offset =
        Annotation { sample: 345, lead: None, label: "MDC_ECG_WAVC_TWAVE".into(), text: Some("offset".into()) };
    assert!(rec.annotations.contains(&t_offset));
    // The reader's R peaks on lead I are relative times (332 ms).
    let r_peak = Annotation { sample: 166, lead: Some("I".into()), label: "MDC_ECG_WAVC_PEAK".into(), text: None };
    assert!(rec.annotations.contains(&r_peak));
    // The representative beat's wave boundaries are not positions on the rhythm leads.
    assert!(rec.annotations.iter().all(|a| a.sample <= 5000));
    assert!(rec.annotations.windows(2).all(|w| w[0].sample <= w[1].sample));
}

#[test]
fn example2_matches_the_readme() {
    let rec = example2();
    let expected = [
        ("I", 379_719),
        ("II", 379_888),
        ("III", 169),
        ("aVR", -377_312),
        ("aVL", 187_181),
        ("aVF", 187_649),
        ("V1", 105_945),
        ("V2", 109_739),
        ("V3", 99_190),
        ("V4", 90_199),
        ("V5", 83_481),
        ("V6", 94_352),
    ];
    assert_eq!(sums(&rec.leads), expected);
    for l in &rec.leads {
        assert_eq!((l.samples.len(), l.sample_rate_hz, l.resolution_nv), (10_000, 1000, 2500.0), "{}", l.name);
    }
    assert_eq!(lead(&rec, "I").samples[..5], [65, 67, 70, 68, 67]);
    assert_eq!(rec.median_beat.len(), 12);
    assert!(rec.median_beat.iter().all(|l| l.samples.len() == 1200 && l.sample_rate_hz == 1000));
    assert_eq!(rec.patient.id, "106_ABC");
    assert_eq!(rec.patient.name, "ABC");
    assert_eq!(rec.patient.sex, Sex::Unknown);
    assert_eq!(rec.patient.birth_date, Some(date(1971, 6, 16)));
    assert_eq!(rec.acquired_at, Some(date(2004, 1, 15).at(11, 20, 4, 0)));
    assert_eq!(rec.device, "Manufacturer ABC 12345");
    // Heart rate 52 "bmp" (sic) in both the rhythm and the beat annotation sets: kept once, with
    // the file's unit.
    assert_eq!(rec.measurements, [Measurement { name: "Heart rate".into(), value: 52.0, unit: "bmp".into() }]);
    assert!(rec.warnings.is_empty(), "{:?}", rec.warnings);
}

/// Reads back what the writer made of `rec` and checks every lead is the same.
fn assert_round_trip(rec: &Recording) -> Recording {
    let bytes = aecg::write(rec).expect("writes");
    assert!(aecg::looks_like(&bytes));
    let back = read(&bytes).expect("reads back");
    assert_eq!(back.leads, rec.leads);
    assert_eq!(back.median_beat, rec.median_beat);
    assert_eq!(back.patient, rec.patient);
    assert_eq!(back.acquired_at, rec.acquired_at);
    assert_eq!(back.device, rec.device);
    assert_eq!(back.measurements, rec.measurements);
    assert_eq!(back.interpretation, rec.interpretation);
    assert_eq!(back.annotations, rec.annotations);
    back
}

#[test]
fn example1_round_trips_through_the_writer() {
    let back = assert_round_trip(&example1());
    assert!(back.warnings.is_empty(), "{:?}", back.warnings);
}

#[test]
fn example2_round_trips_through_the_writer() {
    assert_round_trip(&example2());
}

#[test]
fn written_document_is_hl7_aecg() {
    let bytes = aecg::write(&example1()).expect("writes");
    let xml = std::str::from_utf8(&bytes).expect("UTF-8");
    for needle in [
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>",
        "<AnnotatedECG xmlns=\"urn:hl7-org:v3\"",
        "code=\"93000\"",
        "<center value=\"20021122091000\"/>",
        "code=\"RHYTHM\"",
        "code=\"TIME_ABSOLUTE\"",
        "xsi:type=\"GLIST_TS\"",
        "<head value=\"20021122091000\"/>",
        "<increment value=\"0.002\" unit=\"s\"/>",
        "code=\"MDC_ECG_LEAD_aVR\"",
        "<origin value=\"0\" unit=\"uV\"/>",
        "<scale value=\"2.5\" unit=\"uV\"/>",
        "code=\"REPRESENTATIVE_BEAT\"",
        "code=\"TIME_RELATIVE\"",
        "code=\"MDC_ECG_TIME_PD_QTc\"",
        "<value xsi:type=\"ST\">Sinus Rhythm</value>",
    ] {
        assert!(xml.contains(needle), "missing {needle}");
    }
    assert!(xml.lines().all(|l| l.len() < 400), "no very long lines");
}

fn small_recording() -> Recording {
    let mut rec = Recording::new(Format::Aecg, "test");
    rec.patient.name = "张伟 <&> \"O'Brien\"".into();
    rec.patient.id = "门诊-0042".into();
    rec.patient.sex = Sex::Female;
    rec.patient.birth_date = Some(date(1960, 2, 29));
    rec.acquired_at = Some(date(2026, 11, 23).at(8, 30, 15, 250_000_000));
    rec.device = "Contec ECG90A & co".into();
    rec.leads = vec![
        Lead { name: "II".into(), derived: false, sample_rate_hz: 360, resolution_nv: 183.0, samples: vec![1, -2, 3] },
        Lead {
            name: "MLII".into(),
            derived: false,
            sample_rate_hz: 360,
            resolution_nv: 5000.0,
            samples: vec![0, 0, 7],
        },
        Lead {
            name: "V1".into(),
            derived: false,
            sample_rate_hz: 800,
            resolution_nv: 4.8828125,
            samples: vec![i32::MIN, i32::MAX],
        },
    ];
    rec.measurements = vec![Measurement { name: "QTc".into(), value: 431.5, unit: "ms".into() }];
    rec.interpretation = vec!["窦性心律".into(), "ST < 0.1 mV & T flat".into()];
    rec.annotations =
        vec![Annotation { sample: 2, lead: Some("MLII".into()), label: "N".into(), text: Some("(N".into()) }];
    rec
}

#[test]
fn chinese_names_and_markup_characters_survive() {
    let rec = small_recording();
    let back = read(&aecg::write(&rec).expect("writes")).expect("reads back");
    assert_eq!(back.patient.name, "张伟 <&> \"O'Brien\"");
    assert_eq!(back.patient.id, "门诊-0042");
    assert_eq!(back.interpretation, ["窦性心律", "ST < 0.1 mV & T flat"]);
    assert_eq!(back.device, "Contec ECG90A & co");
    assert_round_trip(&rec);
}

#[test]
fn leads_of_different_rates_keep_their_own_rate() {
    let back = assert_round_trip(&small_recording());
    assert_eq!(back.leads[0].sample_rate_hz, 360);
    assert_eq!(back.leads[2].sample_rate_hz, 800);
    // MLII has no MDC code: it is written under its own name and read back with a warning.
    assert!(back.warnings.iter().any(|w| w.contains("MLII")), "{:?}", back.warnings);
}

#[test]
fn writer_refuses_what_it_cannot_write() {
    let mut rec = small_recording();
    rec.leads[0].sample_rate_hz = 0;
    assert!(matches!(aecg::write(&rec), Err(aecg::AecgWriteError::ZeroRate { .. })));
    let mut rec = small_recording();
    rec.leads[1].resolution_nv = f64::NAN;
    assert!(matches!(aecg::write(&rec), Err(aecg::AecgWriteError::BadResolution { .. })));
    let rec = Recording::new(Format::Aecg, "");
    assert!(matches!(aecg::write(&rec), Err(aecg::AecgWriteError::NoLeads)));
}

/// A minimal aECG document with one rhythm sequence set; `time` and `leads` are its sequences.
fn doc(decl: &str, name: &str, time: &str, leads: &str) -> String {
    format!(
        r#"{decl}
<AnnotatedECG xmlns="urn:hl7-org:v3" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
<componentOf><timepointEvent><componentOf><subjectAssignment><subject><trialSubject>
<id extension="P1"/><subjectDemographicPerson><name>{name}</name></subjectDemographicPerson>
</trialSubject></subject></subjectAssignment></componentOf></timepointEvent></componentOf>
<component><series><code code="RHYTHM"/><component><sequenceSet>
<component><sequence><code code="TIME_RELATIVE"/><value xsi:type="GLIST_PQ"><head value="0" unit="s"/>{time}</value></sequence></component>
{leads}
</sequenceSet></component></series></component></AnnotatedECG>"#
    )
}

fn lead_seq(code: &str, origin: &str, scale: &str, digits: &str) -> String {
    format!(
        r#"<component><sequence><code code="{code}"/><value xsi:type="SLIST_PQ">{origin}{scale}<digits>{digits}</digits></value></sequence></component>"#
    )
}

const MS2: &str = r#"<increment value="2" unit="ms"/>"#;
const UV5: &str = r#"<scale value="5" unit="uV"/>"#;

#[test]
fn gb2312_declared_document_decodes_chinese_names() {
    let xml =
        doc(r#"<?xml version="1.0" encoding="GB2312"?>"#, "张伟", MS2, &lead_seq("MDC_ECG_LEAD_II", "", UV5, "1 2 3"));
    let (bytes, _, unmappable) = encoding_rs::GB18030.encode(&xml);
    assert!(!unmappable);
    assert!(!bytes.windows(6).any(|w| w == "张伟".as_bytes()), "really GB-encoded");
    let rec = read(&bytes).expect("reads");
    assert_eq!(rec.patient.name, "张伟");
    assert_eq!(lead(&rec, "II").samples, [1, 2, 3]);
    assert_eq!(lead(&rec, "II").sample_rate_hz, 500);
    assert_eq!(lead(&rec, "II").resolution_nv, 5000.0);
}

#[test]
fn units_origin_and_lead_code_spellings() {
    let leads = [
        lead_seq("MDC_ECG_LEAD_AVR", r#"<origin value="0.01" unit="mV"/>"#, UV5, "0 -1"),
        lead_seq("mdc_ecg_lead_v1", "", r#"<scale value="0.0025" unit="mV"/>"#, "7"),
        lead_seq("MDC_ECG_LEAD_ES", "", r#"<scale value="100" unit="nV"/>"#, "\r\n 1\t2 \r\n"),
    ]
    .concat();
    let rec = read(doc("", "Li", r#"<increment value="0.004" unit="s"/>"#, &leads).as_bytes()).expect("reads");
    // origin 10 uV = 2 steps of 5 uV, added to every digit.
    assert_eq!(lead(&rec, "aVR").samples, [2, 1]);
    assert_eq!(lead(&rec, "V1").resolution_nv, 2500.0);
    assert_eq!(lead(&rec, "V1").sample_rate_hz, 250);
    let unknown = lead(&rec, "MDC_ECG_LEAD_ES");
    assert_eq!((unknown.samples.as_slice(), unknown.resolution_nv), ([1, 2].as_slice(), 100.0));
    assert!(rec.warnings.iter().any(|w| w.contains("MDC_ECG_LEAD_ES")), "{:?}", rec.warnings);
}

#[test]
fn origin_that_is_not_whole_steps_is_rounded_with_a_warning() {
    let leads = lead_seq("MDC_ECG_LEAD_I", r#"<origin value="2.5" unit="uV"/>"#, UV5, "1 2");
    let rec = read(doc("", "A", MS2, &leads).as_bytes()).expect("reads");
    assert_eq!(lead(&rec, "I").samples, [2, 3]);
    assert!(rec.warnings.iter().any(|w| w.contains("origin")), "{:?}", rec.warnings);
}

#[test]
fn comments_entities_and_cdata_inside_digits() {
    let leads = lead_seq("MDC_ECG_LEAD_I", "", UV5, "1 2<!-- split -->3 4&#32;5 -<![CDATA[6]]> 7");
    let rec = read(doc("<?xml version='1.0'?>", "O&apos;Neil &amp; Co", MS2, &leads).as_bytes()).expect("reads");
    assert_eq!(lead(&rec, "I").samples, [1, 23, 4, 5, -6, 7]);
    assert_eq!(rec.patient.name, "O'Neil & Co");
}

#[test]
fn prefixed_namespace_and_family_given_names() {
    let xml = r#"<?xml version="1.0"?><v3:AnnotatedECG xmlns:v3="urn:hl7-org:v3" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
<v3:effectiveTime><v3:low value="20260101120000"/></v3:effectiveTime>
<v3:componentOf><v3:timepointEvent><v3:componentOf><v3:subjectAssignment><v3:subject><v3:trialSubject>
<v3:subjectDemographicPerson><v3:name><v3:family>王</v3:family><v3:given>小明</v3:given></v3:name>
<v3:administrativeGenderCode code="F"/></v3:subjectDemographicPerson>
</v3:trialSubject></v3:subject></v3:subjectAssignment></v3:componentOf></v3:timepointEvent></v3:componentOf>
<v3:component><v3:series><v3:code code="RHYTHM"/><v3:component><v3:sequenceSet>
<v3:component><v3:sequence><v3:code code="TIME_ABSOLUTE"/><v3:value xsi:type="GLIST_TS"><v3:head value="20260101120000"/><v3:increment value="0.001" unit="s"/></v3:value></v3:sequence></v3:component>
<v3:component><v3:sequence><v3:code code="MDC_ECG_LEAD_I"/><v3:value xsi:type="SLIST_PQ"><v3:origin value="0" unit="uV"/><v3:scale value="1" unit="uV"/><v3:digits>5 6</v3:digits></v3:value></v3:sequence></v3:component>
</v3:sequenceSet></v3:component></v3:series></v3:component></v3:AnnotatedECG>"#;
    assert!(aecg::looks_like(xml.as_bytes()));
    let rec = read(xml.as_bytes()).expect("reads");
    assert_eq!(rec.patient.name, "王小明");
    assert_eq!(rec.patient.sex, Sex::Female);
    assert_eq!(rec.acquired_at, Some(date(2026, 1, 1).at(12, 0, 0, 0)));
    assert_eq!(lead(&rec, "I").samples, [5, 6]);
    assert_eq!(lead(&rec, "I").sample_rate_hz, 1000);
}

#[test]
fn slist_int_needs_a_voltage_unit_on_its_scale() {
    let with_unit = r#"<component><sequence><code code="MDC_ECG_LEAD_I"/><value xsi:type="SLIST_INT"><origin value="0"/><scale value="5" unit="uV"/><digits>1 2</digits></value></sequence></component>"#;
    let rec = read(doc("", "A", MS2, with_unit).as_bytes()).expect("reads");
    assert_eq!((lead(&rec, "I").samples.as_slice(), lead(&rec, "I").resolution_nv), ([1, 2].as_slice(), 5000.0));
    let without = with_unit.replace(r#" unit="uV""#, "");
    let err = read(doc("", "A", MS2, &without).as_bytes()).expect_err("refused");
    assert!(matches!(err, AecgError::UnsupportedValueType { .. }), "{err}");
    let glist = with_unit.replace("SLIST_INT", "GLIST_PQ");
    assert!(matches!(read(doc("", "A", MS2, &glist).as_bytes()), Err(AecgError::UnsupportedValueType { .. })));
}

#[test]
fn utf16_document_with_a_bom_reads() {
    let xml = doc(r#"<?xml version="1.0" encoding="UTF-16"?>"#, "李娜", MS2, &lead_seq("MDC_ECG_LEAD_I", "", UV5, "9"));
    let mut bytes = vec![0xFF, 0xFE];
    for unit in xml.encode_utf16() {
        bytes.extend_from_slice(&unit.to_le_bytes());
    }
    let rec = read(&bytes).expect("reads");
    assert_eq!(rec.patient.name, "李娜");
    assert_eq!(lead(&rec, "I").samples, [9]);
}

#[test]
fn other_series_are_skipped_with_a_warning() {
    let rhythm = doc("", "A", MS2, &lead_seq("MDC_ECG_LEAD_I", "", UV5, "1"));
    let other = rhythm.replacen(r#"<code code="RHYTHM"/>"#, r#"<code code="HOLTER_SUMMARY"/>"#, 1);
    assert!(matches!(read(other.as_bytes()), Err(AecgError::NoWaveforms)));
    let both = rhythm.replace(
        "</series></component></AnnotatedECG>",
        r#"</series></component><component><series><code code="HOLTER_SUMMARY"/><component><sequenceSet>
<component><sequence><code code="MDC_ECG_LEAD_II"/><value xsi:type="SLIST_PQ"><digits>1</digits></value></sequence></component>
</sequenceSet></component></series></component></AnnotatedECG>"#,
    );
    let rec = read(both.as_bytes()).expect("reads");
    assert_eq!(rec.leads.len(), 1);
    assert!(rec.warnings.iter().any(|w| w.contains("HOLTER_SUMMARY")), "{:?}", rec.warnings);
}

#[test]
fn undefined_entities_are_refused() {
    let err =
        read(doc("", "A&nbsp;B", MS2, &lead_seq("MDC_ECG_LEAD_I", "", UV5, "1")).as_bytes()).expect_err("refused");
    assert!(matches!(&err, AecgError::UnknownEntity { name, .. } if name == "nbsp"), "{err}");
}

#[test]
fn a_non_integer_digit_is_a_clear_error() {
    let leads = lead_seq("MDC_ECG_LEAD_V3", "", UV5, "1 2 3.5 4");
    let err = read(doc("", "A", MS2, &leads).as_bytes()).expect_err("refused");
    assert!(matches!(&err, AecgError::BadDigit { lead, index: 2, token } if lead == "V3" && token == "3.5"), "{err}");
    assert_eq!(err.to_string(), "lead V3: digit 2 is \"3.5\", not an integer");
}

#[test]
fn a_missing_increment_is_a_clear_error() {
    let leads = lead_seq("MDC_ECG_LEAD_I", "", UV5, "1 2");
    let err = read(doc("", "A", "", &leads).as_bytes()).expect_err("refused");
    assert!(matches!(&err, AecgError::MissingIncrement { series } if series == "RHYTHM"), "{err}");
}

#[test]
fn a_rate_that_is_not_whole_hz_is_a_clear_error() {
    let leads = lead_seq("MDC_ECG_LEAD_I", "", UV5, "1 2");
    let err = read(doc("", "A", r#"<increment value="0.003" unit="s"/>"#, &leads).as_bytes()).expect_err("refused");
    assert!(matches!(err, AecgError::RateNotWhole { .. }), "{err}");
    let err = read(doc("", "A", r#"<increment value="2" unit="h"/>"#, &leads).as_bytes()).expect_err("refused");
    assert!(matches!(err, AecgError::UnsupportedUnit { .. }), "{err}");
    let bad_scale = lead_seq("MDC_ECG_LEAD_I", "", r#"<scale value="5" unit="mmHg"/>"#, "1");
    let err = read(doc("", "A", MS2, &bad_scale).as_bytes()).expect_err("refused");
    assert!(matches!(err, AecgError::UnsupportedUnit { .. }), "{err}");
}

#[test]
fn xml_that_is_not_aecg_is_a_clear_error() {
    let err = read(b"<?xml version=\"1.0\"?><CardiologyXML><ObservationType/></CardiologyXML>").expect_err("refused");
    assert_eq!(err.to_string(), "XML with root element <CardiologyXML>, not <AnnotatedECG>");
    assert_eq!(aecg::root_element(b"<?xml version=\"1.0\"?><CardiologyXML/>").as_deref(), Some("CardiologyXML"));
    assert!(matches!(read(b"SCPECG"), Err(AecgError::NotXml | AecgError::Xml { .. })));
    assert!(matches!(read(b""), Err(AecgError::NotXml)));
    let empty = read(b"<AnnotatedECG xmlns=\"urn:hl7-org:v3\"/>").expect_err("refused");
    assert!(matches!(empty, AecgError::NoWaveforms), "{empty}");
}

#[test]
fn limits_are_enforced() {
    let leads = lead_seq("MDC_ECG_LEAD_I", "", UV5, "1 2 3 4 5");
    let xml = doc("", "A", MS2, &leads);
    let opts = |limits: Limits| ReadOptions { limits, ..ReadOptions::default() };
    let few_samples = opts(Limits { max_samples_per_lead: 4, ..Limits::default() });
    let err = aecg::read(xml.as_bytes(), &few_samples).expect_err("refused");
    assert!(matches!(&err, AecgError::TooManySamples { lead, limit: 4 } if lead == "I"), "{err}");
    let exact = opts(Limits { max_samples_per_lead: 5, ..Limits::default() });
    assert!(aecg::read(xml.as_bytes(), &exact).is_ok());
    let tiny = opts(Limits { max_input_bytes: 100, ..Limits::default() });
    assert!(matches!(aecg::read(xml.as_bytes(), &tiny), Err(AecgError::TooLarge { limit: 100, .. })));
    let one_lead = opts(Limits { max_leads: 1, ..Limits::default() });
    let two = [lead_seq("MDC_ECG_LEAD_I", "", UV5, "1"), lead_seq("MDC_ECG_LEAD_II", "", UV5, "1")].concat();
    let err = aecg::read(doc("", "A", MS2, &two).as_bytes(), &one_lead).expect_err("refused");
    assert!(matches!(err, AecgError::TooManyLeads { limit: 1, .. }), "{err}");
    let bytes = common::data("aecg/Example_aECG.xml");
    let few_annotations = opts(Limits { max_annotations: 10, ..Limits::default() });
    assert!(matches!(aecg::read(&bytes, &few_annotations), Err(AecgError::TooManyAnnotations { limit: 10 })));
}

#[test]
fn warnings_are_capped() {
    let empty_sequences = r#"<component><sequence><code code="MDC_ECG_LEAD_V9"/></sequence></component>"#.repeat(1000);
    let leads = format!("{}{empty_sequences}", lead_seq("MDC_ECG_LEAD_I", "", UV5, "1"));
    let rec = read(doc("", "A", MS2, &leads).as_bytes()).expect("reads");
    assert_eq!(rec.warnings.len(), 101);
    assert_eq!(rec.warnings.last().map(String::as_str), Some("more warnings were left out"));
}

#[test]
fn deep_nesting_is_refused_not_recursed() {
    let mut xml = String::from("<AnnotatedECG>");
    for _ in 0..10_000 {
        xml.push_str("<a>");
    }
    assert!(matches!(read(xml.as_bytes()), Err(AecgError::TooDeep { .. })));
}

/// Lengths to cut a real file at: every length of its first few KB (the prolog and header),
/// a few places in the start and end tags of each series, sequence set and annotation set, then a
/// stride (each cut in the digits costs a parse of up to half a megabyte).
fn cut_lengths(bytes: &[u8]) -> Vec<usize> {
    let mut lengths: Vec<usize> = (0..3000.min(bytes.len())).collect();
    lengths.extend((3000..bytes.len()).step_by(20_011));
    let marks: [&[u8]; 8] = [
        b"<series",
        b"<sequenceSet",
        b"</sequenceSet",
        b"<annotationSet",
        b"</annotationSet",
        b"<derivedSeries",
        b"</series",
        b"</AnnotatedECG",
    ];
    for mark in marks {
        for (i, _) in bytes.windows(mark.len()).enumerate().filter(|(_, w)| *w == mark).take(2) {
            lengths.extend([i, i + 1, i + mark.len() / 2, i + mark.len(), i + mark.len() + 1]);
        }
    }
    // Cuts after the root's `>` leave a whole document (only trailing whitespace is lost).
    let whole = bytes.iter().rposition(|b| *b == b'>').expect("has a root");
    lengths.retain(|l| *l <= whole);
    lengths.sort_unstable();
    lengths.dedup();
    lengths
}

#[test]
fn truncated_real_documents_are_refused_without_panic() {
    for file in ["aecg/hl7aecg-Example2.xml", "aecg/Example_aECG.xml"] {
        let bytes = common::data(file);
        for len in cut_lengths(&bytes) {
            assert!(read(&bytes[..len]).is_err(), "{file} cut at {len} was accepted");
        }
        let whole = bytes.iter().rposition(|b| *b == b'>').expect("has a root") + 1;
        assert!(read(&bytes[..whole]).is_ok(), "{file} without its trailing newline");
    }
}

#[test]
fn written_document_cut_at_every_length_is_refused_without_panic() {
    let mut rec = small_recording();
    rec.median_beat = rec.leads.clone();
    let bytes = aecg::write(&rec).expect("writes");
    let whole = bytes.iter().rposition(|b| *b == b'>').expect("has a root") + 1;
    for len in 0..whole {
        assert!(read(&bytes[..len]).is_err(), "cut at {len} was accepted");
    }
    assert!(read(&bytes[..whole]).is_ok());
}

#[test]
fn truncation_error_names_where_it_ends() {
    let bytes = common::data("aecg/hl7aecg-Example2.xml");
    let cut = bytes.len() / 2;
    let err = read(&bytes[..cut]).expect_err("refused");
    assert!(matches!(&err, AecgError::Truncated { open, .. } if open == "digits"), "{err}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn flipped_bytes_never_panic(flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8)) {
        let mut bytes = common::data("aecg/hl7aecg-Example2.xml");
        for (at, value) in flips {
            let i = at.index(bytes.len());
            bytes[i] = value;
        }
        let _ = read(&bytes);
    }

    #[test]
    fn flips_in_the_header_never_panic(flips in proptest::collection::vec((0usize..6000, any::<u8>()), 1..8)) {
        let mut bytes = common::data("aecg/Example_aECG.xml");
        for (i, value) in flips {
            bytes[i] = value;
        }
        if let Ok(rec) = read(&bytes) {
            prop_assert!(rec.leads.len() <= 64);
        }
    }

    #[test]
    fn written_leads_read_back_identically(
        samples in proptest::collection::vec(any::<i32>(), 1..300),
        rate in 1u32..20_000,
        resolution in 0.001f64..1e7,
    ) {
        let mut rec = Recording::new(Format::Aecg, "");
        rec.leads.push(Lead { name: "V4".into(), derived: false, sample_rate_hz: rate, resolution_nv: resolution, samples });
        let back = read(&aecg::write(&rec).expect("writes")).expect("reads back");
        prop_assert_eq!(back.leads, rec.leads);
    }
}
