//! The streaming aECG reader: one pass over the XML events, with a small context of where it is.

use std::collections::HashSet;

use jiff::civil::DateTime;
use quick_xml::escape::resolve_predefined_entity;
use quick_xml::events::{BytesRef, BytesStart, Event};
use quick_xml::reader::Reader;

mod annotation;
mod waveform;

use annotation::{AnnCtx, BoundaryCtx, PendingAnnotation};
use waveform::{SeqCtx, SetCtx};

use super::text;
use super::{AecgError, ROOT};
use crate::recording::{Format, Limits, ReadOptions, Recording, Sex};

/// Deeper nesting than any aECG needs; a bound so a hostile document cannot grow the stack.
const MAX_DEPTH: usize = 256;

/// Most warnings kept: a hostile document could otherwise make one per element.
const MAX_WARNINGS: usize = 100;

/// LOINC "Reported Age", the code of the age control variable.
const LOINC_AGE: &str = "21612-7";

/// Reads a HL7 aECG document.
///
/// # Errors
/// [`AecgError`] when the bytes are not a well-formed aECG document, are larger than the limits
/// allow, or hold waveforms Yilian cannot decode faithfully (a non-integer digit, a sample rate
/// that is not a whole number of Hz, an unknown voltage unit, ...).
pub fn read(bytes: &[u8], opts: &ReadOptions) -> Result<Recording, AecgError> {
    let limit = opts.limits.max_input_bytes;
    if bytes.len() > limit {
        return Err(AecgError::TooLarge { size: bytes.len(), limit });
    }
    let (document, warning) = text::decode_document(bytes)?;
    let mut state = State::new(opts.limits);
    state.rec.warnings.extend(warning);
    let mut reader = Reader::from_str(&document);
    loop {
        let event = reader
            .read_event()
            .map_err(|e| AecgError::Xml { offset: reader.error_position(), message: e.to_string() })?;
        state.offset = reader.buffer_position();
        match event {
            Event::Start(e) => state.start(&e)?,
            Event::Empty(e) => {
                state.start(&e)?;
                state.end()?;
            }
            Event::End(_) => state.end()?,
            Event::Text(t) => state.text(&t.decode().map_err(|e| state.xml_error(e))?)?,
            Event::CData(t) => state.text(&t.decode().map_err(|e| state.xml_error(e))?)?,
            Event::GeneralRef(r) => {
                let resolved = state.resolve_reference(&r)?;
                state.text(&resolved)?;
            }
            Event::Eof => break,
            Event::Comment(_) | Event::Decl(_) | Event::PI(_) | Event::DocType(_) => {}
        }
    }
    state.finish()
}

/// A physical quantity as written: value and unit attributes.
#[derive(Debug, Clone, Default)]
struct Pq {
    value: String,
    unit: String,
}

/// What a series holds, from its code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Rhythm,
    Median,
    Other,
}

/// An open `series` or `derivedSeries`.
struct SeriesCtx {
    depth: usize,
    derived: bool,
    code: Option<String>,
}

impl SeriesCtx {
    fn kind(&self) -> Kind {
        match (&self.code, self.derived) {
            // A series without a code is read as rhythm: that is what every cart writes there.
            (None, false) => Kind::Rhythm,
            (Some(c), false) if c.eq_ignore_ascii_case("RHYTHM") => Kind::Rhythm,
            (Some(c), true)
                if c.eq_ignore_ascii_case("REPRESENTATIVE_BEAT") || c.eq_ignore_ascii_case("MEDIAN_BEAT") =>
            {
                Kind::Median
            }
            _ => Kind::Other,
        }
    }

    fn name(&self) -> String {
        self.code.clone().unwrap_or_else(|| if self.derived { "derivedSeries" } else { "series" }.to_string())
    }
}

/// Which text an open element's content goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Name,
    Family,
    Given,
    Model,
    Maker,
    AnnValue,
    AnnNote,
}

/// Text being collected for an element.
struct Capture {
    depth: usize,
    target: Target,
    text: String,
}

/// The reader's context and the recording being filled in.
struct State {
    limits: Limits,
    rec: Recording,
    offset: u64,
    stack: Vec<String>,
    root_seen: bool,
    captures: Vec<Capture>,
    series: Vec<SeriesCtx>,
    set: Option<SetCtx>,
    seq: Option<SeqCtx>,
    anns: Vec<AnnCtx>,
    boundary: Option<BoundaryCtx>,
    pending: Vec<PendingAnnotation>,
    /// Inside a `relatedObservation`: whether its code is the age, and its value.
    age: Option<(bool, Option<Pq>)>,
    doc_center: Option<DateTime>,
    doc_low: Option<DateTime>,
    series_low: Option<DateTime>,
    rhythm_start: Option<DateTime>,
    name_text: Option<String>,
    family: Vec<String>,
    given: Vec<String>,
    model: Option<String>,
    maker: Option<String>,
    skipped_series: Vec<String>,
    /// Measurements already taken, to keep a value repeated in several annotation sets once.
    seen_measurements: HashSet<(String, u64, String)>,
}

/// The value of attribute `name` (local name, any prefix), unescaped.
fn attr(e: &BytesStart<'_>, name: &str, offset: u64) -> Result<Option<String>, AecgError> {
    // Without duplicate checks: they cost time quadratic in the attribute count of a hostile
    // element, and the first of two equal attributes is as good as any.
    for a in e.attributes().with_checks(false) {
        let a = a.map_err(|err| AecgError::Xml { offset, message: err.to_string() })?;
        if a.key.local_name().as_ref() == name.as_bytes() {
            let value = a.unescape_value().map_err(|err| AecgError::Xml { offset, message: err.to_string() })?;
            return Ok(Some(value.into_owned()));
        }
    }
    Ok(None)
}

/// The `value` and `unit` attributes of a quantity element.
fn pq(e: &BytesStart<'_>, offset: u64) -> Result<Pq, AecgError> {
    Ok(Pq { value: attr(e, "value", offset)?.unwrap_or_default(), unit: attr(e, "unit", offset)?.unwrap_or_default() })
}

impl State {
    fn new(limits: Limits) -> Self {
        Self {
            limits,
            rec: Recording::new(Format::Aecg, "HL7 v3 aECG"),
            offset: 0,
            stack: Vec::new(),
            root_seen: false,
            captures: Vec::new(),
            series: Vec::new(),
            set: None,
            seq: None,
            anns: Vec::new(),
            boundary: None,
            pending: Vec::new(),
            age: None,
            doc_center: None,
            doc_low: None,
            series_low: None,
            rhythm_start: None,
            name_text: None,
            family: Vec::new(),
            given: Vec::new(),
            model: None,
            maker: None,
            skipped_series: Vec::new(),
            seen_measurements: HashSet::new(),
        }
    }

    fn xml_error(&self, e: impl std::fmt::Display) -> AecgError {
        AecgError::Xml { offset: self.offset, message: e.to_string() }
    }

    /// The name of the element `up` levels above the current one ("" when there is none).
    fn up(&self, up: usize) -> &str {
        self.stack.len().checked_sub(up + 1).and_then(|i| self.stack.get(i)).map_or("", String::as_str)
    }

    fn resolve_reference(&self, r: &BytesRef<'_>) -> Result<String, AecgError> {
        if let Some(c) = r.resolve_char_ref().map_err(|e| self.xml_error(e))? {
            return Ok(c.to_string());
        }
        let name = r.decode().map_err(|e| self.xml_error(e))?;
        resolve_predefined_entity(&name)
            .map(str::to_string)
            .ok_or_else(|| AecgError::UnknownEntity { name: name.chars().take(40).collect(), offset: self.offset })
    }

    fn start(&mut self, e: &BytesStart<'_>) -> Result<(), AecgError> {
        let name = String::from_utf8_lossy(e.local_name().as_ref()).into_owned();
        if self.stack.is_empty() {
            if self.root_seen {
                return Err(self.xml_error(format!("element <{name}> after the root element")));
            }
            if name != ROOT {
                return Err(AecgError::NotAecg { root: name });
            }
            self.root_seen = true;
        }
        if self.stack.len() >= MAX_DEPTH {
            return Err(AecgError::TooDeep { limit: MAX_DEPTH, offset: self.offset });
        }
        self.stack.push(name);
        self.open(e)
    }

    fn capture(&mut self, target: Target) {
        self.captures.push(Capture { depth: self.stack.len(), target, text: String::new() });
    }

    /// Acts on an element just opened (it is on top of the stack).
    fn open(&mut self, e: &BytesStart<'_>) -> Result<(), AecgError> {
        let depth = self.stack.len();
        let off = self.offset;
        let name = self.up(0).to_string();
        let p1 = self.up(1).to_string();
        let p2 = self.up(2).to_string();
        match (name.as_str(), p1.as_str(), p2.as_str()) {
            ("center", "effectiveTime", ROOT) if depth == 3 => {
                self.doc_center = attr(e, "value", off)?.as_deref().and_then(text::parse_ts);
            }
            ("low", "effectiveTime", ROOT) if depth == 3 => {
                self.doc_low = attr(e, "value", off)?.as_deref().and_then(text::parse_ts);
            }
            ("low", "effectiveTime", "series") if self.series_low.is_none() => {
                self.series_low = attr(e, "value", off)?.as_deref().and_then(text::parse_ts);
            }
            ("series" | "derivedSeries", _, _) => {
                self.series.push(SeriesCtx { depth, derived: name == "derivedSeries", code: None });
            }
            ("code", "series" | "derivedSeries", _) => {
                let code = attr(e, "code", off)?;
                if let Some(s) = self.series.last_mut().filter(|s| s.depth + 1 == depth && s.code.is_none()) {
                    s.code = code;
                }
            }
            ("sequenceSet", _, _) if self.set.is_none() => self.open_set(depth),
            ("sequence", _, _) if self.set.is_some() && self.seq.is_none() => {
                self.seq = Some(SeqCtx { depth, ..SeqCtx::default() });
            }
            ("code", "sequence", _) => {
                let code = attr(e, "code", off)?;
                if let Some(seq) = self.seq.as_mut() {
                    seq.code = code;
                }
            }
            ("value", "sequence", _) => {
                let value_type = attr(e, "type", off)?;
                if let Some(seq) = self.seq.as_mut() {
                    seq.value_type = value_type;
                }
            }
            ("head" | "increment" | "origin" | "scale", "value", "sequence") => {
                let q = pq(e, off)?;
                if let Some(seq) = self.seq.as_mut() {
                    let slot = match name.as_str() {
                        "head" => &mut seq.head,
                        "increment" => &mut seq.increment,
                        "origin" => &mut seq.origin,
                        _ => &mut seq.scale,
                    };
                    *slot = Some(q);
                }
            }
            ("digits", "value", "sequence") => self.open_digits(depth)?,
            ("id", "trialSubject" | "patient", _) if self.rec.patient.id.is_empty() => {
                self.rec.patient.id = attr(e, "extension", off)?.unwrap_or_default().trim().to_string();
            }
            ("name", "subjectDemographicPerson" | "patientPerson", _) => self.capture(Target::Name),
            ("family", "name", "subjectDemographicPerson" | "patientPerson") => self.capture(Target::Family),
            ("given", "name", "subjectDemographicPerson" | "patientPerson") => self.capture(Target::Given),
            ("administrativeGenderCode", "subjectDemographicPerson" | "patientPerson", _) => {
                self.rec.patient.sex = match attr(e, "code", off)?.as_deref().map(str::trim) {
                    Some("M" | "m") => Sex::Male,
                    Some("F" | "f") => Sex::Female,
                    _ => Sex::Unknown,
                };
            }
            ("birthTime", "subjectDemographicPerson" | "patientPerson", _) => {
                let value = attr(e, "value", off)?.unwrap_or_default();
                self.rec.patient.birth_date = text::parse_date(&value);
                if self.rec.patient.birth_date.is_none() && !value.trim().is_empty() {
                    warn(&mut self.rec.warnings, format!("birth time {value:?} is not a date; ignored"));
                }
            }
            ("manufacturerModelName", "manufacturedSeriesDevice", _) if self.model.is_none() => {
                self.capture(Target::Model);
            }
            ("name", "manufacturerOrganization", "seriesAuthor") if self.maker.is_none() => {
                self.capture(Target::Maker);
            }
            ("relatedObservation", _, _) => self.age = Some((false, None)),
            ("code", "relatedObservation", _) => {
                let is_age = attr(e, "code", off)?.is_some_and(|c| c.trim() == LOINC_AGE);
                if let Some(age) = self.age.as_mut() {
                    age.0 = is_age;
                }
            }
            ("value", "relatedObservation", _) => {
                let q = pq(e, off)?;
                if let Some(age) = self.age.as_mut() {
                    age.1 = Some(q);
                }
            }
            ("annotation", _, _) => {
                let kind = self.series.last().map_or(Kind::Rhythm, SeriesCtx::kind);
                let nested = !self.anns.is_empty();
                self.anns.push(AnnCtx {
                    depth,
                    kind,
                    nested,
                    code: None,
                    value_code: None,
                    display: None,
                    pq: None,
                    text_value: None,
                    note: None,
                    times: Vec::new(),
                    lead: None,
                });
            }
            ("code", "annotation", _) => {
                let code = attr(e, "code", off)?;
                if let Some(a) = self.anns.last_mut() {
                    a.code = code;
                }
            }
            ("value", "annotation", _) => self.open_annotation_value(e)?,
            ("text", "annotation", _) => self.capture(Target::AnnNote),
            ("boundary", _, _) if !self.anns.is_empty() && self.boundary.is_none() => {
                self.boundary = Some(BoundaryCtx { depth, ..BoundaryCtx::default() });
            }
            ("code", "boundary", _) => {
                let code = attr(e, "code", off)?;
                if let Some(b) = self.boundary.as_mut() {
                    b.code = code;
                }
            }
            ("value", "boundary", _) => {
                let q = pq(e, off)?;
                if let Some(b) = self.boundary.as_mut() {
                    b.point = Some(q);
                }
            }
            ("low" | "high", "value", "boundary") => {
                let q = pq(e, off)?;
                if let Some(b) = self.boundary.as_mut() {
                    if name == "low" {
                        b.low = Some(q);
                    } else {
                        b.high = Some(q);
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn text(&mut self, chunk: &str) -> Result<(), AecgError> {
        let depth = self.stack.len();
        if self.seq.as_ref().is_some_and(|s| s.digits_depth == Some(depth)) {
            return self.digits_text(chunk);
        }
        if let Some(c) = self.captures.last_mut().filter(|c| c.depth == depth) {
            c.text.push_str(chunk);
        }
        Ok(())
    }

    fn end(&mut self) -> Result<(), AecgError> {
        let depth = self.stack.len();
        if self.captures.last().is_some_and(|c| c.depth == depth)
            && let Some(c) = self.captures.pop()
        {
            self.deliver(c);
        }
        match self.up(0) {
            "digits" if self.seq.as_ref().is_some_and(|s| s.digits_depth == Some(depth)) => {
                let limit = self.limits.max_samples_per_lead;
                if let Some(seq) = self.seq.as_mut() {
                    seq.digits_depth = None;
                    let token = std::mem::take(&mut seq.carry);
                    if !token.is_empty() {
                        seq.push_token(&token, limit)?;
                    }
                }
            }
            "sequence" if self.seq.as_ref().is_some_and(|s| s.depth == depth) => {
                if let Some(seq) = self.seq.take() {
                    self.finish_sequence(seq)?;
                }
            }
            "sequenceSet" if self.set.as_ref().is_some_and(|s| s.depth == depth) => {
                if let Some(set) = self.set.take() {
                    self.finish_set(set)?;
                }
            }
            "series" | "derivedSeries" if self.series.last().is_some_and(|s| s.depth == depth) => {
                self.series.pop();
            }
            "boundary" if self.boundary.as_ref().is_some_and(|b| b.depth == depth) => {
                if let Some(b) = self.boundary.take() {
                    self.finish_boundary(b);
                }
            }
            "annotation" if self.anns.last().is_some_and(|a| a.depth == depth) => {
                if let Some(a) = self.anns.pop() {
                    self.finish_annotation(a)?;
                }
            }
            "relatedObservation" => {
                if let Some((true, Some(q))) = self.age.take() {
                    self.set_age(&q);
                }
            }
            _ => {}
        }
        self.stack.pop();
        Ok(())
    }

    fn deliver(&mut self, c: Capture) {
        let text = c.text.split_whitespace().collect::<Vec<_>>().join(" ");
        match c.target {
            Target::Name => self.name_text = Some(text),
            Target::Family if !text.is_empty() => self.family.push(text),
            Target::Given if !text.is_empty() => self.given.push(text),
            Target::Model if !text.is_empty() => self.model = Some(text),
            Target::Maker if !text.is_empty() => self.maker = Some(text),
            Target::AnnValue => {
                if let Some(a) = self.anns.last_mut() {
                    a.text_value = Some(text);
                }
            }
            Target::AnnNote => {
                if let Some(a) = self.anns.last_mut() {
                    a.note = Some(text);
                }
            }
            Target::Family | Target::Given | Target::Model | Target::Maker => {}
        }
    }

    fn set_age(&mut self, q: &Pq) {
        let years = match q.unit.trim() {
            "a" | "yr" | "" => q.value.trim().parse::<u16>().ok().filter(|y| *y <= 150),
            _ => None,
        };
        match years {
            Some(y) => self.rec.patient.age_years = Some(y),
            None => self
                .rec
                .warnings
                .push(format!("reported age {:?} {:?} is not a whole number of years; ignored", q.value, q.unit)),
        }
    }

    fn finish(mut self) -> Result<Recording, AecgError> {
        if let Some(open) = self.stack.last() {
            return Err(AecgError::Truncated { open: open.clone(), offset: self.offset });
        }
        if !self.root_seen {
            return Err(AecgError::NotXml);
        }
        if self.rec.leads.is_empty() && self.rec.median_beat.is_empty() {
            return Err(AecgError::NoWaveforms);
        }
        for s in std::mem::take(&mut self.skipped_series) {
            warn(&mut self.rec.warnings, format!("series {s} is neither RHYTHM nor REPRESENTATIVE_BEAT; skipped"));
        }
        if self.rec.leads.is_empty() {
            warn(&mut self.rec.warnings, "the document has a representative beat but no rhythm leads".to_string());
        }
        self.rec.acquired_at = self.doc_center.or(self.doc_low).or(self.rhythm_start).or(self.series_low);
        self.rec.patient.name = self.patient_name();
        self.rec.device = match (self.maker.take(), self.model.take()) {
            (Some(maker), Some(model)) => format!("{maker} {model}"),
            (Some(one), None) | (None, Some(one)) => one,
            (None, None) => String::new(),
        };
        self.place_annotations();
        Ok(self.rec)
    }

    fn patient_name(&mut self) -> String {
        if self.family.is_empty() && self.given.is_empty() {
            return self.name_text.take().unwrap_or_default();
        }
        let family = self.family.join(" ");
        let given = self.given.join(" ");
        // Chinese names are family name first with no space; Western display order is given first.
        let cjk = family.chars().any(|c| c >= '\u{2E80}');
        match (family.is_empty(), given.is_empty()) {
            (false, true) => family,
            (true, false) => given,
            _ if cjk => format!("{family}{given}"),
            _ => format!("{given} {family}"),
        }
    }
}

/// Adds a warning for the specialist, up to [`MAX_WARNINGS`].
fn warn(warnings: &mut Vec<String>, warning: String) {
    if warnings.len() < MAX_WARNINGS {
        warnings.push(warning);
    } else if warnings.len() == MAX_WARNINGS {
        warnings.push("more warnings were left out".to_string());
    }
}
