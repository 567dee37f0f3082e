//! Lead sequences: digits streamed into integers, units and origin applied, sample rate from
//! the sequence set's time sequence.

use super::{Kind, MAX_WARNINGS, Pq, State, warn};
use crate::aecg::AecgError;
use crate::aecg::text::{self, QuantityError};
use crate::lead;
use crate::recording::Lead;

/// Longest digit token accepted (an i32 with sign is 11 characters; leave room for zeros).
const MAX_TOKEN: usize = 40;

/// The time sequence of a sequence set.
pub(super) struct TimeSeq {
    pub(super) absolute: bool,
    pub(super) head: Option<Pq>,
    pub(super) increment: Option<Pq>,
}

/// A lead sequence read, waiting for its set's sample rate.
pub(super) struct PendingLead {
    pub(super) name: String,
    pub(super) resolution_nv: f64,
    pub(super) samples: Vec<i32>,
}

/// An open `sequenceSet`.
pub(super) struct SetCtx {
    pub(super) depth: usize,
    pub(super) kind: Kind,
    pub(super) series: String,
    pub(super) time: Option<TimeSeq>,
    pub(super) leads: Vec<PendingLead>,
}

/// An open `sequence`.
#[derive(Default)]
pub(super) struct SeqCtx {
    pub(super) depth: usize,
    pub(super) code: Option<String>,
    pub(super) value_type: Option<String>,
    pub(super) head: Option<Pq>,
    pub(super) increment: Option<Pq>,
    pub(super) origin: Option<Pq>,
    pub(super) scale: Option<Pq>,
    pub(super) digits_depth: Option<usize>,
    pub(super) has_digits: bool,
    pub(super) digits: Vec<i32>,
    pub(super) carry: String,
}

impl SeqCtx {
    /// The lead's name for messages: canonical when known, else the code as written.
    pub(super) fn label(&self) -> String {
        match &self.code {
            Some(code) => lead::from_mdc(code).map_or_else(|| code.trim().to_string(), str::to_string),
            None => "(sequence without code)".to_string(),
        }
    }

    pub(super) fn push_token(&mut self, token: &str, limit: usize) -> Result<(), AecgError> {
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

impl State {
    pub(super) fn open_set(&mut self, depth: usize) {
        let (kind, series) = match self.series.last() {
            Some(s) => (s.kind(), s.name()),
            None => (Kind::Other, "(outside any series)".to_string()),
        };
        if kind == Kind::Other && self.skipped_series.len() < MAX_WARNINGS && !self.skipped_series.contains(&series) {
            self.skipped_series.push(series.clone());
        }
        self.set = Some(SetCtx { depth, kind, series, time: None, leads: Vec::new() });
    }

    pub(super) fn open_digits(&mut self, depth: usize) -> Result<(), AecgError> {
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

    /// Appends the integers of one text chunk of `<digits>`. A chunk can end inside a number
    /// (a comment or character reference splits the text), so an unfinished last token is
    /// carried to the next chunk.
    pub(super) fn digits_text(&mut self, chunk: &str) -> Result<(), AecgError> {
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

    pub(super) fn finish_sequence(&mut self, mut seq: SeqCtx) -> Result<(), AecgError> {
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

    pub(super) fn finish_set(&mut self, set: SetCtx) -> Result<(), AecgError> {
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

fn is_space(c: char) -> bool {
    c.is_ascii_whitespace()
}
