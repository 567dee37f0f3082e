//! The streaming aECG reader: one pass over the XML events, with a small context of where it is.

use std::collections::HashSet;

use jiff::civil::DateTime;
use quick_xml::escape::resolve_predefined_entity;
use quick_xml::events::{BytesRef, BytesStart, Event};
use quick_xml::reader::Reader;

use super::text::{self, QuantityError};
use super::{AecgError, ROOT, measurement_name};
use crate::lead;
use crate::recording::{Annotation, Format, Lead, Limits, Measurement, ReadOptions, Recording, Sex};

/// Deeper nesting than any aECG needs; a bound so a hostile document cannot grow the stack.
const MAX_DEPTH: usize = 256;

/// Longest digit token accepted (an i32 with sign is 11 characters; leave room for zeros).
const MAX_TOKEN: usize = 40;

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

/// The time sequence of a sequence set.
struct TimeSeq {
    absolute: bool,
    head: Option<Pq>,
    increment: Option<Pq>,
}

/// A lead sequence read, waiting for its set's sample rate.
struct PendingLead {
    name: String,
    resolution_nv: f64,
    samples: Vec<i32>,
}

/// An open `sequenceSet`.
struct SetCtx {
    depth: usize,
    kind: Kind,
    series: String,
    time: Option<TimeSeq>,
    leads: Vec<PendingLead>,
}

/// An open `sequence`.
#[derive(Default)]
struct SeqCtx {
    depth: usize,
    code: Option<String>,
    value_type: Option<String>,
    head: Option<Pq>,
    increment: Option<Pq>,
    origin: Option<Pq>,
    scale: Option<Pq>,
    digits_depth: Option<usize>,
    has_digits: bool,
    digits: Vec<i32>,
    carry: String,
}

impl SeqCtx {
    /// The lead's name for messages: canonical when known, else the code as written.
    fn label(&self) -> String {
        match &self.code {
            Some(code) => lead::from_mdc(code).map_or_else(|| code.trim().to_string(), str::to_string),
            None => "(sequence without code)".to_string(),
        }
    }

    fn push_token(&mut self, token: &str, limit: usize) -> Result<(), AecgError> {
        let value: i32 = token.parse().map_err(|_| AecgError::BadDigit {
            lead: self.label(),
            index: self.digits.len(),
            token: token.chars().take(20).collect(),
        })?;
        if self.digits.len() >= limit {
            return Err(AecgError::TooManySamples { lead: self.label(), limit });
        }
        self.digits.push(value);
        Ok(())
    }
}

/// Where an annotation's region of interest starts, ends or is.
#[derive(Debug, Clone, Copy)]
enum Role {
    Onset,
    Offset,
    Point,
}

/// A time in an annotation's region of interest.
#[derive(Debug, Clone, Copy)]
enum When {
    /// An absolute `TS`.
    Absolute(DateTime),
    /// Seconds from the start of the series.
    Relative(f64),
}

/// An open `boundary` of a supporting region of interest.
#[derive(Default)]
struct BoundaryCtx {
    depth: usize,
    code: Option<String>,
    point: Option<Pq>,
    low: Option<Pq>,
    high: Option<Pq>,
}

/// An open `annotation`.
struct AnnCtx {
    depth: usize,
    kind: Kind,
    nested: bool,
    code: Option<String>,
    value_code: Option<String>,
    display: Option<String>,
    pq: Option<Pq>,
    text_value: Option<String>,
    note: Option<String>,
    times: Vec<(Role, When)>,
    lead: Option<String>,
}

/// An annotation with a time, placed on a sample at the end (the rate is known by then).
struct PendingAnnotation {
    label: String,
    text: Option<String>,
    lead: Option<String>,
    when: When,
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

fn is_space(c: char) -> bool {
    c.is_ascii_whitespace()
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

    fn open_set(&mut self, depth: usize) {
        let (kind, series) = match self.series.last() {
            Some(s) => (s.kind(), s.name()),
            None => (Kind::Other, "(outside any series)".to_string()),
        };
        if kind == Kind::Other && self.skipped_series.len() < MAX_WARNINGS && !self.skipped_series.contains(&series) {
            self.skipped_series.push(series.clone());
        }
        self.set = Some(SetCtx { depth, kind, series, time: None, leads: Vec::new() });
    }

    fn open_digits(&mut self, depth: usize) -> Result<(), AecgError> {
        let Some(set) = self.set.as_ref() else { return Ok(()) };
        let (existing, what) = match set.kind {
            Kind::Rhythm => (self.rec.leads.len(), "rhythm"),
            Kind::Median => (self.rec.median_beat.len(), "representative beat"),
            Kind::Other => (0, ""),
        };
        if set.kind != Kind::Other && existing.saturating_add(set.leads.len()) >= self.limits.max_leads {
            return Err(AecgError::TooManyLeads { what, limit: self.limits.max_leads });
        }
        if let Some(seq) = self.seq.as_mut() {
            seq.digits_depth = Some(depth);
            seq.has_digits = true;
        }
        Ok(())
    }

    fn open_annotation_value(&mut self, e: &BytesStart<'_>) -> Result<(), AecgError> {
        let off = self.offset;
        let value_type = attr(e, "type", off)?;
        let code = attr(e, "code", off)?;
        let display = attr(e, "displayName", off)?;
        let value = attr(e, "value", off)?;
        let unit = attr(e, "unit", off)?;
        let is_text = value_type.as_deref().is_none_or(|t| t == "ST" || t == "ED");
        if let Some(a) = self.anns.last_mut() {
            a.value_code = code;
            a.display = display;
            if let Some(value) = value {
                a.pq = Some(Pq { value, unit: unit.unwrap_or_default() });
            }
        }
        if is_text {
            self.capture(Target::AnnValue);
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

    /// Appends the integers of one text chunk of `<digits>`. A chunk can end inside a number
    /// (a comment or character reference splits the text), so an unfinished last token is
    /// carried to the next chunk.
    fn digits_text(&mut self, chunk: &str) -> Result<(), AecgError> {
        let limit = self.limits.max_samples_per_lead;
        let Some(seq) = self.seq.as_mut() else { return Ok(()) };
        let mut rest = chunk;
        if !seq.carry.is_empty() {
            let end = rest.find(is_space).unwrap_or(rest.len());
            let (head, tail) = rest.split_at(end);
            seq.carry.push_str(head);
            if seq.carry.len() > MAX_TOKEN {
                let token = std::mem::take(&mut seq.carry);
                return seq.push_token(&token, limit);
            }
            if tail.is_empty() {
                return Ok(());
            }
            let token = std::mem::take(&mut seq.carry);
            seq.push_token(&token, limit)?;
            rest = tail;
        }
        let count = rest.split_ascii_whitespace().count();
        let held = usize::from(count > 0 && !rest.ends_with(is_space));
        let complete = count - held;
        if seq.digits.len().saturating_add(complete) > limit {
            return Err(AecgError::TooManySamples { lead: seq.label(), limit });
        }
        seq.digits.reserve(complete);
        let mut tokens = rest.split_ascii_whitespace();
        for token in tokens.by_ref().take(complete) {
            seq.push_token(token, limit)?;
        }
        if let Some(last) = tokens.next() {
            seq.carry.push_str(last);
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

    fn finish_sequence(&mut self, mut seq: SeqCtx) -> Result<(), AecgError> {
        let Some(set) = self.set.as_mut() else { return Ok(()) };
        if set.kind == Kind::Other {
            return Ok(());
        }
        let code = seq.code.clone().unwrap_or_default();
        let code = code.trim();
        let absolute = code.eq_ignore_ascii_case("TIME_ABSOLUTE");
        if absolute || code.eq_ignore_ascii_case("TIME_RELATIVE") {
            if set.time.is_some() {
                self.rec
                    .warnings
                    .push(format!("{} sequence set has two time sequences; the first is used", set.series));
            } else {
                set.time = Some(TimeSeq { absolute, head: seq.head, increment: seq.increment });
            }
            return Ok(());
        }
        let label = seq.label();
        if !seq.has_digits {
            warn(&mut self.rec.warnings, format!("{} sequence {label} has no digits; skipped", set.series));
            return Ok(());
        }
        let value_type = seq.value_type.clone().unwrap_or_else(|| "SLIST_PQ".to_string());
        let scale = match value_type.as_str() {
            "SLIST_PQ" => seq.scale.take().ok_or_else(|| AecgError::MissingScale { lead: label.clone() })?,
            // SLIST_INT has a dimensionless scale; only a scale that still names a voltage unit
            // says what a digit is worth.
            "SLIST_INT" => seq.scale.take().filter(|s| !s.unit.trim().is_empty()).ok_or_else(|| {
                AecgError::UnsupportedValueType { lead: label.clone(), value_type: value_type.clone() }
            })?,
            _ => return Err(AecgError::UnsupportedValueType { lead: label, value_type }),
        };
        let resolution_nv = quantity_nv(&scale, || format!("lead {label} scale"))?;
        if resolution_nv <= 0.0 {
            return Err(AecgError::BadQuantity {
                what: format!("lead {label} scale"),
                value: scale.value,
                unit: scale.unit,
            });
        }
        let origin_nv = match &seq.origin {
            // An origin without a unit (SLIST_INT's is a plain number) is in the scale's unit.
            Some(origin) if origin.unit.trim().is_empty() => {
                let origin = Pq { value: origin.value.clone(), unit: scale.unit.clone() };
                quantity_nv(&origin, || format!("lead {label} origin"))?
            }
            Some(origin) => quantity_nv(origin, || format!("lead {label} origin"))?,
            None => 0.0,
        };
        let steps = origin_nv / resolution_nv;
        let whole = steps.round();
        if (steps - whole).abs() > 1e-6 {
            self.rec
                .warnings
                .push(format!("lead {label}: origin is {steps} scale steps, not a whole number; rounded to {whole}"));
        }
        if whole.abs() > f64::from(i32::MAX) {
            return Err(AecgError::BadQuantity {
                what: format!("lead {label} origin (in scale steps)"),
                value: seq.origin.map(|o| o.value).unwrap_or_default(),
                unit: String::new(),
            });
        }
        // In range: checked just above.
        let offset = whole as i32;
        let mut samples = std::mem::take(&mut seq.digits);
        if offset != 0 {
            for (index, s) in samples.iter_mut().enumerate() {
                *s = s.checked_add(offset).ok_or(AecgError::SampleOverflow { lead: label.clone(), index })?;
            }
        }
        let name = match seq.code.as_deref().and_then(lead::from_mdc) {
            Some(name) => name.to_string(),
            None => {
                warn(
                    &mut self.rec.warnings,
                    format!("lead code {code:?} is not one Yilian knows; kept under that name"),
                );
                code.to_string()
            }
        };
        if samples.is_empty() {
            warn(&mut self.rec.warnings, format!("lead {name} has no samples; skipped"));
            return Ok(());
        }
        if let Some(set) = self.set.as_mut() {
            set.leads.push(PendingLead { name, resolution_nv, samples });
        }
        Ok(())
    }

    fn finish_set(&mut self, set: SetCtx) -> Result<(), AecgError> {
        if set.kind == Kind::Other || set.leads.is_empty() {
            return Ok(());
        }
        let series = set.series;
        let time = set.time.ok_or_else(|| AecgError::MissingTime { series: series.clone() })?;
        let increment = time.increment.ok_or_else(|| AecgError::MissingIncrement { series: series.clone() })?;
        let seconds = text::to_seconds(&increment.value, &increment.unit).map_err(|e| match e {
            QuantityError::Unit => AecgError::UnsupportedUnit {
                what: format!("{series} time increment"),
                unit: increment.unit.clone(),
                expected: text::TIME_UNITS_TEXT,
            },
            QuantityError::Value => AecgError::BadIncrement {
                series: series.clone(),
                value: increment.value.clone(),
                unit: increment.unit.clone(),
            },
        })?;
        if seconds <= 0.0 {
            return Err(AecgError::BadIncrement { series, value: increment.value, unit: increment.unit });
        }
        let rate = 1.0 / seconds;
        let whole = rate.round();
        if !(1.0..=f64::from(u32::MAX)).contains(&whole) || (rate - whole).abs() > 1e-6 * whole {
            return Err(AecgError::RateNotWhole { series, value: increment.value, unit: increment.unit, rate });
        }
        // In range: checked just above.
        let sample_rate_hz = whole as u32;
        if time.absolute && set.kind == Kind::Rhythm && self.rhythm_start.is_none() {
            self.rhythm_start = time.head.as_ref().and_then(|h| text::parse_ts(&h.value));
        }
        let target = if set.kind == Kind::Rhythm { &mut self.rec.leads } else { &mut self.rec.median_beat };
        for p in set.leads {
            if target.iter().any(|l| l.name == p.name) {
                warn(&mut self.rec.warnings, format!("{series}: lead {} appears more than once; all are kept", p.name));
            }
            target.push(Lead {
                name: p.name,
                derived: false,
                sample_rate_hz,
                resolution_nv: p.resolution_nv,
                samples: p.samples,
            });
        }
        Ok(())
    }

    fn finish_boundary(&mut self, b: BoundaryCtx) {
        let Some(ann) = self.anns.last_mut() else { return };
        let Some(code) = b.code.as_deref().map(str::trim) else { return };
        let absolute = code.eq_ignore_ascii_case("TIME_ABSOLUTE");
        if absolute || code.eq_ignore_ascii_case("TIME_RELATIVE") {
            let when = |q: &Pq| -> Option<When> {
                if absolute {
                    text::parse_ts(&q.value).map(When::Absolute)
                } else {
                    let unit = if q.unit.trim().is_empty() { "s" } else { q.unit.as_str() };
                    text::to_seconds(&q.value, unit).ok().map(When::Relative)
                }
            };
            // An interval value carries low/high; a point value (PQ or TS) carries value only.
            for (role, q) in [(Role::Onset, &b.low), (Role::Offset, &b.high)] {
                if let Some(w) = q.as_ref().and_then(when) {
                    ann.times.push((role, w));
                }
            }
            if b.low.is_none()
                && b.high.is_none()
                && let Some(w) = b.point.as_ref().filter(|p| !p.value.is_empty()).and_then(when)
            {
                ann.times.push((Role::Point, w));
            }
        } else if !code.is_empty() {
            // Any other boundary names the lead the region is on; an unknown code is kept as the
            // lead's name, as for lead sequences.
            ann.lead = Some(lead::from_mdc(code).map_or_else(|| code.to_string(), str::to_string));
        }
    }

    fn count_check(&self, n: usize) -> Result<(), AecgError> {
        if n >= self.limits.max_annotations {
            return Err(AecgError::TooManyAnnotations { limit: self.limits.max_annotations });
        }
        Ok(())
    }

    fn finish_annotation(&mut self, a: AnnCtx) -> Result<(), AecgError> {
        let code = a.code.as_deref().map(str::trim).unwrap_or_default();
        if let Some(text) = a.text_value.as_ref().filter(|t| !t.is_empty()) {
            self.count_check(self.rec.interpretation.len())?;
            self.rec.interpretation.push(text.clone());
            return Ok(());
        }
        let upper = code.to_ascii_uppercase();
        if upper.starts_with("MDC_ECG_RHY") || upper.starts_with("MDC_ECG_INTERPRETATION") {
            let statement = a.display.as_ref().or(a.value_code.as_ref()).filter(|s| !s.trim().is_empty());
            if let Some(statement) = statement {
                self.count_check(self.rec.interpretation.len())?;
                self.rec.interpretation.push(statement.trim().to_string());
            }
            return Ok(());
        }
        // Per-beat values nested in a BEAT annotation repeat the global ones; only the global
        // (top-level) values are the device's measurements.
        if let Some(q) = a.pq.as_ref().filter(|_| !a.nested && !code.is_empty()) {
            let name = measurement_name(code).map_or_else(|| code.to_string(), str::to_string);
            match q.value.trim().parse::<f64>() {
                Ok(value) if value.is_finite() => {
                    let m = Measurement { name, value, unit: q.unit.trim().to_string() };
                    if self.seen_measurements.insert((m.name.clone(), m.value.to_bits(), m.unit.clone())) {
                        self.count_check(self.rec.measurements.len())?;
                        self.rec.measurements.push(m);
                    }
                }
                _ => warn(&mut self.rec.warnings, format!("measurement {name} has value {:?}; ignored", q.value)),
            }
            return Ok(());
        }
        // Times on the representative beat are not positions on the rhythm leads.
        if a.times.is_empty() || a.kind != Kind::Rhythm {
            return Ok(());
        }
        let label = a.value_code.clone().filter(|c| !c.trim().is_empty()).unwrap_or_else(|| code.to_string());
        for (role, when) in a.times {
            self.count_check(self.pending.len())?;
            let text = a.note.clone().filter(|n| !n.is_empty()).or_else(|| match role {
                Role::Onset => Some("onset".to_string()),
                Role::Offset => Some("offset".to_string()),
                Role::Point => None,
            });
            self.pending.push(PendingAnnotation { label: label.clone(), text, lead: a.lead.clone(), when });
        }
        Ok(())
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

    /// Puts each timed annotation on a sample of the rhythm leads (rate of the first lead).
    fn place_annotations(&mut self) {
        let pending = std::mem::take(&mut self.pending);
        if pending.is_empty() {
            return;
        }
        let Some(first) = self.rec.leads.first() else {
            warn(
                &mut self.rec.warnings,
                format!("{} annotations have no rhythm leads to sit on; dropped", pending.len()),
            );
            return;
        };
        let rate = f64::from(first.sample_rate_hz);
        let len = first.samples.len() as f64;
        let start = self.rhythm_start.or(self.series_low).or(self.rec.acquired_at);
        let mut outside = 0usize;
        for p in pending {
            let seconds = match p.when {
                When::Relative(s) => Some(s),
                When::Absolute(t) => start.map(|s| t.duration_since(s).as_secs_f64()),
            };
            let sample = seconds.map(|s| (s * rate).round()).filter(|s| *s >= 0.0 && *s <= len);
            match sample {
                // In range: 0 ≤ sample ≤ the lead's length.
                Some(s) => self.rec.annotations.push(Annotation {
                    sample: s as u64,
                    lead: p.lead,
                    label: p.label,
                    text: p.text,
                }),
                None => outside += 1,
            }
        }
        if outside > 0 {
            warn(&mut self.rec.warnings, format!("{outside} annotation times fall outside the rhythm leads; dropped"));
        }
        self.rec.annotations.sort_by_key(|a| a.sample);
    }
}

/// A voltage quantity in nV, with errors naming `what`.
fn quantity_nv(q: &Pq, what: impl Fn() -> String) -> Result<f64, AecgError> {
    text::to_nv(&q.value, &q.unit).map_err(|e| match e {
        QuantityError::Unit => {
            AecgError::UnsupportedUnit { what: what(), unit: q.unit.clone(), expected: text::VOLT_UNITS_TEXT }
        }
        QuantityError::Value => AecgError::BadQuantity { what: what(), value: q.value.clone(), unit: q.unit.clone() },
    })
}

/// Adds a warning for the specialist, up to [`MAX_WARNINGS`].
fn warn(warnings: &mut Vec<String>, warning: String) {
    if warnings.len() < MAX_WARNINGS {
        warnings.push(warning);
    } else if warnings.len() == MAX_WARNINGS {
        warnings.push("more warnings were left out".to_string());
    }
}
