//! Annotations: global measurements, rhythm and interpretation statements, and timed wave
//! and beat annotations placed on rhythm samples.

use jiff::civil::DateTime;
use quick_xml::events::BytesStart;

use super::{Kind, Pq, State, Target, attr, warn};
use crate::aecg::text;
use crate::aecg::{AecgError, measurement_name};
use crate::lead;
use crate::recording::{Annotation, Measurement};

/// Where an annotation's region of interest starts, ends or is.
#[derive(Debug, Clone, Copy)]
pub(super) enum Role {
    Onset,
    Offset,
    Point,
}

/// A time in an annotation's region of interest.
#[derive(Debug, Clone, Copy)]
pub(super) enum When {
    /// An absolute `TS`.
    Absolute(DateTime),
    /// Seconds from the start of the series.
    Relative(f64),
}

/// An open `boundary` of a supporting region of interest.
#[derive(Default)]
pub(super) struct BoundaryCtx {
    pub(super) depth: usize,
    pub(super) code: Option<String>,
    pub(super) point: Option<Pq>,
    pub(super) low: Option<Pq>,
    pub(super) high: Option<Pq>,
}

/// An open `annotation`.
pub(super) struct AnnCtx {
    pub(super) depth: usize,
    pub(super) kind: Kind,
    pub(super) nested: bool,
    pub(super) code: Option<String>,
    pub(super) value_code: Option<String>,
    pub(super) display: Option<String>,
    pub(super) pq: Option<Pq>,
    pub(super) text_value: Option<String>,
    pub(super) note: Option<String>,
    pub(super) times: Vec<(Role, When)>,
    pub(super) lead: Option<String>,
}

/// An annotation with a time, placed on a sample at the end (the rate is known by then).
pub(super) struct PendingAnnotation {
    pub(super) label: String,
    pub(super) text: Option<String>,
    pub(super) lead: Option<String>,
    pub(super) when: When,
}

impl State {
    pub(super) fn open_annotation_value(&mut self, e: &BytesStart<'_>) -> Result<(), AecgError> {
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

    pub(super) fn finish_boundary(&mut self, b: BoundaryCtx) {
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

    pub(super) fn count_check(&self, n: usize) -> Result<(), AecgError> {
        if n >= self.limits.max_annotations {
            return Err(AecgError::TooManyAnnotations { limit: self.limits.max_annotations });
        }
        Ok(())
    }

    pub(super) fn finish_annotation(&mut self, a: AnnCtx) -> Result<(), AecgError> {
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

    /// Puts each timed annotation on a sample of the rhythm leads (rate of the first lead).
    pub(super) fn place_annotations(&mut self) {
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
