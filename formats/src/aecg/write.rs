//! The aECG writer: a [`Recording`] as an HL7 v3 `AnnotatedECG` document (UTF-8).

use quick_xml::Writer;
use quick_xml::events::{BytesDecl, BytesEnd, BytesStart, BytesText, Event};
use sha2::{Digest, Sha256};

use super::text::{decimal_shifted, format_date, format_ts};
use super::{AecgWriteError, NAMESPACE, ROOT, measurement_code};
use crate::lead;
use crate::recording::{Lead, Recording, Sex};

/// HL7 ActCode, the code system of RHYTHM, TIME_ABSOLUTE, ...
const ACT_CODE: &str = "2.16.840.1.113883.5.4";
/// ISO/IEEE 11073 MDC, the code system of leads and ECG measurements.
const MDC: &str = "2.16.840.1.113883.6.24";
/// Digits per line, so that no line is thousands of characters long.
const DIGITS_PER_LINE: usize = 25;

/// Writes `rec` as an HL7 aECG document.
///
/// # Errors
/// [`AecgWriteError`] when the recording has no waveform, a lead has no usable rate or
/// resolution, or a measurement is not a finite number.
pub fn write(rec: &Recording) -> Result<Vec<u8>, AecgWriteError> {
    if rec.leads.is_empty() && rec.median_beat.is_empty() {
        return Err(AecgWriteError::NoLeads);
    }
    for l in rec.leads.iter().chain(&rec.median_beat) {
        if l.sample_rate_hz == 0 {
            return Err(AecgWriteError::ZeroRate { lead: l.name.clone() });
        }
        if !(l.resolution_nv.is_finite() && l.resolution_nv > 0.0) {
            return Err(AecgWriteError::BadResolution { lead: l.name.clone(), resolution_nv: l.resolution_nv });
        }
    }
    if let Some(m) = rec.measurements.iter().find(|m| !m.value.is_finite()) {
        return Err(AecgWriteError::BadMeasurement { name: m.name.clone(), value: m.value });
    }
    let mut x = Xml(Writer::new_with_indent(Vec::new(), b' ', 2));
    x.0.write_event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)))?;
    x.start(
        ROOT,
        &[
            ("xmlns", NAMESPACE),
            ("xmlns:xsi", "http://www.w3.org/2001/XMLSchema-instance"),
            ("classCode", "OBS"),
            ("moodCode", "EVN"),
        ],
    )?;
    x.empty("id", &[("root", &document_id(rec))])?;
    x.empty("code", &[("code", "93000"), ("codeSystem", "2.16.840.1.113883.6.12"), ("codeSystemName", "CPT-4")])?;
    if let Some(at) = rec.acquired_at {
        x.start("effectiveTime", &[])?;
        x.empty("center", &[("value", &format_ts(at))])?;
        x.end("effectiveTime")?;
    }
    write_subject(&mut x, rec)?;
    if let Some(age) = rec.patient.age_years {
        x.start("controlVariable", &[])?;
        x.start("relatedObservation", &[])?;
        x.empty(
            "code",
            &[
                ("code", "21612-7"),
                ("codeSystem", "2.16.840.1.113883.6.1"),
                ("codeSystemName", "LOINC"),
                ("displayName", "Reported Age"),
            ],
        )?;
        x.empty("value", &[("xsi:type", "PQ"), ("value", &age.to_string()), ("unit", "a")])?;
        x.end("relatedObservation")?;
        x.end("controlVariable")?;
    }
    x.start("component", &[])?;
    x.start("series", &[])?;
    x.empty("code", &[("code", "RHYTHM"), ("codeSystem", ACT_CODE), ("codeSystemName", "ActCode")])?;
    write_device(&mut x, &rec.device)?;
    write_sets(&mut x, &rec.leads, rec.acquired_at.map(format_ts))?;
    write_annotations(&mut x, rec)?;
    if !rec.median_beat.is_empty() {
        x.start("derivation", &[])?;
        x.start("derivedSeries", &[])?;
        x.empty("code", &[("code", "REPRESENTATIVE_BEAT"), ("codeSystem", ACT_CODE), ("codeSystemName", "ActCode")])?;
        write_device(&mut x, &rec.device)?;
        write_sets(&mut x, &rec.median_beat, None)?;
        x.end("derivedSeries")?;
        x.end("derivation")?;
    }
    x.end("series")?;
    x.end("component")?;
    x.end(ROOT)?;
    let mut bytes = x.0.into_inner();
    bytes.push(b'\n');
    Ok(bytes)
}

/// A thin helper over quick-xml's writer (which escapes attribute values and text).
struct Xml(Writer<Vec<u8>>);

impl Xml {
    fn start(&mut self, name: &str, attrs: &[(&str, &str)]) -> std::io::Result<()> {
        self.0.write_event(Event::Start(BytesStart::new(name).with_attributes(attrs.iter().copied())))
    }

    fn end(&mut self, name: &str) -> std::io::Result<()> {
        self.0.write_event(Event::End(BytesEnd::new(name)))
    }

    fn empty(&mut self, name: &str, attrs: &[(&str, &str)]) -> std::io::Result<()> {
        self.0.write_event(Event::Empty(BytesStart::new(name).with_attributes(attrs.iter().copied())))
    }

    fn text_element(&mut self, name: &str, attrs: &[(&str, &str)], text: &str) -> std::io::Result<()> {
        self.start(name, attrs)?;
        self.0.write_event(Event::Text(BytesText::new(text)))?;
        self.end(name)
    }
}

/// A stable document id: the same recording always gets the same id (writers are pure, so no
/// random UUID), shaped like a UUID as HL7 `II.root` expects.
fn document_id(rec: &Recording) -> String {
    let mut h = Sha256::new();
    h.update(rec.patient.id.as_bytes());
    h.update(rec.acquired_at.map(format_ts).unwrap_or_default().as_bytes());
    for l in rec.leads.iter().chain(&rec.median_beat) {
        h.update(l.name.as_bytes());
        for s in &l.samples {
            h.update(s.to_le_bytes());
        }
    }
    let d = h.finalize();
    let hex: String = d.iter().take(16).map(|b| format!("{b:02x}")).collect();
    let part = |from: usize, to: usize| hex.get(from..to).unwrap_or_default();
    format!("{}-{}-{}-{}-{}", part(0, 8), part(8, 12), part(12, 16), part(16, 20), part(20, 32))
}

fn write_subject(x: &mut Xml, rec: &Recording) -> std::io::Result<()> {
    let p = &rec.patient;
    for name in ["componentOf", "timepointEvent", "componentOf", "subjectAssignment", "subject", "trialSubject"] {
        x.start(name, &[])?;
    }
    if !p.id.is_empty() {
        x.empty("id", &[("extension", &p.id)])?;
    }
    x.start("subjectDemographicPerson", &[])?;
    if !p.name.is_empty() {
        x.text_element("name", &[], &p.name)?;
    }
    let sex = match p.sex {
        Sex::Male => Some("M"),
        Sex::Female => Some("F"),
        Sex::Unknown => None,
    };
    if let Some(code) = sex {
        x.empty("administrativeGenderCode", &[("code", code), ("codeSystem", "2.16.840.1.113883.5.1")])?;
    }
    if let Some(birth) = p.birth_date {
        x.empty("birthTime", &[("value", &format_date(birth))])?;
    }
    x.end("subjectDemographicPerson")?;
    for name in ["trialSubject", "subject", "subjectAssignment", "componentOf", "timepointEvent", "componentOf"] {
        x.end(name)?;
    }
    Ok(())
}

/// The device as one model name: `Recording.device` is a single display string, and writing it
/// whole is what reads back unchanged.
fn write_device(x: &mut Xml, device: &str) -> std::io::Result<()> {
    if device.is_empty() {
        return Ok(());
    }
    x.start("author", &[])?;
    x.start("seriesAuthor", &[])?;
    x.start("manufacturedSeriesDevice", &[])?;
    x.text_element("manufacturerModelName", &[], device)?;
    x.end("manufacturedSeriesDevice")?;
    x.end("seriesAuthor")?;
    x.end("author")
}

/// One sequence set per run of leads with the same rate and length (a set's sequences are
/// simultaneous and share one time sequence); runs keep the leads in order.
fn write_sets(x: &mut Xml, leads: &[Lead], head: Option<String>) -> std::io::Result<()> {
    let mut rest = leads;
    while let Some(first) = rest.first() {
        let run = rest
            .iter()
            .take_while(|l| l.sample_rate_hz == first.sample_rate_hz && l.samples.len() == first.samples.len())
            .count();
        let (set, tail) = rest.split_at(run);
        rest = tail;
        x.start("component", &[])?;
        x.start("sequenceSet", &[])?;
        write_time(x, first.sample_rate_hz, head.as_deref())?;
        for l in set {
            write_lead(x, l)?;
        }
        x.end("sequenceSet")?;
        x.end("component")?;
    }
    Ok(())
}

fn write_time(x: &mut Xml, rate: u32, head: Option<&str>) -> std::io::Result<()> {
    // Shortest text of 1/rate: it reads back within far less than 1e-6 of the rate.
    let increment = format!("{}", 1.0 / f64::from(rate));
    x.start("component", &[])?;
    x.start("sequence", &[])?;
    match head {
        Some(head) => {
            x.empty("code", &[("code", "TIME_ABSOLUTE"), ("codeSystem", ACT_CODE), ("codeSystemName", "ActCode")])?;
            x.start("value", &[("xsi:type", "GLIST_TS")])?;
            x.empty("head", &[("value", head)])?;
        }
        None => {
            x.empty("code", &[("code", "TIME_RELATIVE"), ("codeSystem", ACT_CODE), ("codeSystemName", "ActCode")])?;
            x.start("value", &[("xsi:type", "GLIST_PQ")])?;
            x.empty("head", &[("value", "0"), ("unit", "s")])?;
        }
    }
    x.empty("increment", &[("value", &increment), ("unit", "s")])?;
    x.end("value")?;
    x.end("sequence")?;
    x.end("component")
}

fn write_lead(x: &mut Xml, l: &Lead) -> std::io::Result<()> {
    // A lead Yilian has no MDC code for keeps its own name as the code; the reader keeps an
    // unknown code as the lead's name, so it reads back the same.
    let mdc = lead::mdc_code(&l.name);
    let mut digits = String::with_capacity(l.samples.len() * 5);
    for (i, s) in l.samples.iter().enumerate() {
        if i > 0 {
            digits.push(if i % DIGITS_PER_LINE == 0 { '\n' } else { ' ' });
        }
        digits.push_str(&s.to_string());
    }
    x.start("component", &[])?;
    x.start("sequence", &[])?;
    match &mdc {
        Some(code) => x.empty("code", &[("code", code), ("codeSystem", MDC), ("codeSystemName", "MDC")])?,
        None => x.empty("code", &[("code", &l.name)])?,
    }
    x.start("value", &[("xsi:type", "SLIST_PQ")])?;
    x.empty("origin", &[("value", "0"), ("unit", "uV")])?;
    x.empty("scale", &[("value", &decimal_shifted(l.resolution_nv, 3)), ("unit", "uV")])?;
    x.text_element("digits", &[], &digits)?;
    x.end("value")?;
    x.end("sequence")?;
    x.end("component")
}

/// Measurements, interpretation statements and timed annotations, in one annotation set on the
/// rhythm series.
fn write_annotations(x: &mut Xml, rec: &Recording) -> std::io::Result<()> {
    let statements: Vec<&String> = rec.interpretation.iter().filter(|s| !s.trim().is_empty()).collect();
    let rate = rec.leads.first().map(|l| l.sample_rate_hz).filter(|r| *r > 0);
    let timed = if rate.is_some() { rec.annotations.as_slice() } else { &[] };
    if rec.measurements.is_empty() && statements.is_empty() && timed.is_empty() {
        return Ok(());
    }
    x.start("subjectOf", &[])?;
    x.start("annotationSet", &[])?;
    for m in &rec.measurements {
        let code = measurement_code(&m.name).unwrap_or(m.name.as_str());
        let value = m.value.to_string();
        let mut attrs = vec![("xsi:type", "PQ"), ("value", value.as_str())];
        if !m.unit.is_empty() {
            attrs.push(("unit", m.unit.as_str()));
        }
        x.start("component", &[])?;
        x.start("annotation", &[])?;
        x.empty("code", &[("code", code), ("codeSystem", MDC), ("codeSystemName", "MDC")])?;
        x.empty("value", &attrs)?;
        x.end("annotation")?;
        x.end("component")?;
    }
    if !statements.is_empty() {
        x.start("component", &[])?;
        x.start("annotation", &[])?;
        x.empty("code", &[("code", "MDC_ECG_INTERPRETATION"), ("codeSystem", MDC), ("codeSystemName", "MDC")])?;
        for s in statements {
            x.start("component", &[])?;
            x.start("annotation", &[])?;
            x.empty(
                "code",
                &[("code", "MDC_ECG_INTERPRETATION_STATEMENT"), ("codeSystem", MDC), ("codeSystemName", "MDC")],
            )?;
            x.text_element("value", &[("xsi:type", "ST")], s)?;
            x.end("annotation")?;
            x.end("component")?;
        }
        x.end("annotation")?;
        x.end("component")?;
    }
    let rate = f64::from(rate.unwrap_or(1));
    for a in timed {
        x.start("component", &[])?;
        x.start("annotation", &[])?;
        x.empty("code", &[("code", &a.label)])?;
        if let Some(text) = &a.text {
            x.text_element("text", &[], text)?;
        }
        x.start("support", &[])?;
        x.start("supportingROI", &[("classCode", "ROIBND")])?;
        x.empty("code", &[("code", "ROIPS"), ("codeSystem", ACT_CODE)])?;
        x.start("component", &[])?;
        x.start("boundary", &[])?;
        x.empty("code", &[("code", "TIME_RELATIVE"), ("codeSystem", ACT_CODE)])?;
        let seconds = (a.sample as f64 / rate).to_string();
        x.empty("value", &[("xsi:type", "PQ"), ("value", &seconds), ("unit", "s")])?;
        x.end("boundary")?;
        x.end("component")?;
        if let Some(name) = &a.lead {
            x.start("component", &[])?;
            x.start("boundary", &[])?;
            match lead::mdc_code(name) {
                Some(code) => x.empty("code", &[("code", &code), ("codeSystem", MDC)])?,
                None => x.empty("code", &[("code", name)])?,
            }
            x.end("boundary")?;
            x.end("component")?;
        }
        x.end("supportingROI")?;
        x.end("support")?;
        x.end("annotation")?;
        x.end("component")?;
    }
    x.end("annotationSet")?;
    x.end("subjectOf")
}
