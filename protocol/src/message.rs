//! Bodies carried inside signed envelopes.
//!
//! Field order is the wire format (bincode writes fields in declaration order): append new fields
//! only in a new kind, never reorder. (The one exception: `Study` grew per-lead resolution, the
//! median beat, annotations, measurements and the original file in place for cart files, before
//! any agent was in the field; the golden bytes were re-blessed with that change.) Every clinical
//! value carries its unit in its name.

use crate::codec;
use crate::error::{CodecError, DecodeError, EncodeError};
use crate::limits;
use crate::wire;
use serde::{Deserialize, Serialize};

/// Clinical urgency of a consultation request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Priority {
    /// Immediately life-threatening (suspected STEMI): read within minutes.
    Stat,
    /// Read within the half hour.
    Urgent,
    /// Read within the day.
    Routine,
}

impl Priority {
    /// Lower-case name, as in the HTTP API.
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Stat => "stat",
            Priority::Urgent => "urgent",
            Priority::Routine => "routine",
        }
    }

    /// Parses a lower-case name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "stat" => Priority::Stat,
            "urgent" => Priority::Urgent,
            "routine" => Priority::Routine,
            _ => return None,
        })
    }

    /// Rank for sorting, most urgent first.
    pub fn rank(self) -> u8 {
        self as u8
    }

    /// The spool lane of a study of this priority.
    pub fn lane(self) -> Lane {
        match self {
            Priority::Stat => Lane::Stat,
            Priority::Urgent => Lane::Urgent,
            Priority::Routine => Lane::Routine,
        }
    }
}

/// Spool and link priority lane: earlier variants are sent first (design.md, "Spool and the link").
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Lane {
    /// STAT studies.
    Stat,
    /// Urgent studies.
    Urgent,
    /// Monitoring streams and small control messages (receipts, device output).
    Stream,
    /// Routine studies.
    Routine,
    /// Urgent image transfers: after every ECG, before routine images.
    BulkUrgent,
    /// Routine image transfers.
    Bulk,
}

impl Lane {
    /// All lanes, in sending order.
    pub const ALL: [Lane; 6] = [Lane::Stat, Lane::Urgent, Lane::Stream, Lane::Routine, Lane::BulkUrgent, Lane::Bulk];

    /// True for image transfer lanes, which get only a small share of the link's window so that
    /// an ECG is never stuck behind megabytes of image chunks.
    pub fn is_bulk(self) -> bool {
        matches!(self, Lane::BulkUrgent | Lane::Bulk)
    }

    /// Index into [`Lane::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

/// Compressed samples of one lead (see [`codec`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EncodedSamples {
    /// Number of samples encoded.
    pub count: u32,
    /// The compressed bit stream.
    pub data: Vec<u8>,
}

/// One lead's samples.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeadSamples {
    /// Lead name, e.g. "II", "V5" (see [`crate::lead`]).
    pub lead: String,
    /// Compressed integer samples; multiply by the resolution (nV per LSB) for voltage.
    pub samples: EncodedSamples,
}

impl LeadSamples {
    /// Compresses `samples` for `lead`.
    pub fn encode(lead: &str, samples: &[i32]) -> Self {
        Self { lead: lead.to_string(), samples: codec::encode(samples) }
    }

    /// Decompresses the samples, refusing more than [`limits::SAMPLES_PER_LEAD_MAX`].
    pub fn decode(&self) -> Result<Vec<i32>, CodecError> {
        codec::decode(&self.samples, limits::SAMPLES_PER_LEAD_MAX)
    }
}

/// A block of a continuous monitoring stream (default 1 s).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamChunk {
    /// Stream number on the device (one device may run several).
    pub stream_id: u32,
    /// Sampling rate in Hz.
    pub sample_rate_hz: u32,
    /// Resolution in nanovolts per least significant bit.
    pub resolution_nv: u32,
    /// Index of this chunk's first sample since the stream started (sample-exact gap detection).
    pub first_sample: u64,
    /// Device time of the first sample, Unix ms.
    pub start_time_ms: i64,
    /// Samples per lead, all of equal count.
    pub leads: Vec<LeadSamples>,
}

/// Administrative sex as recorded by the cart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Sex {
    /// Female.
    Female,
    /// Male.
    Male,
    /// Not recorded.
    Unknown,
}

/// A calendar date (birth dates): no time zone, no time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Date {
    /// Year, e.g. 1958.
    pub year: u16,
    /// Month 1-12.
    pub month: u8,
    /// Day 1-31.
    pub day: u8,
}

impl Date {
    /// Builds a date, checking month and day ranges (including leap years).
    pub fn new(year: u16, month: u8, day: u8) -> Option<Self> {
        let leap = (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400);
        let days = match month {
            1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
            4 | 6 | 9 | 11 => 30,
            2 if leap => 29,
            2 => 28,
            _ => return None,
        };
        (day >= 1 && day <= days).then_some(Self { year, month, day })
    }

    /// Parses `YYYY-MM-DD`.
    pub fn parse(s: &str) -> Option<Self> {
        let mut it = s.split('-');
        let (y, m, d) = (it.next()?, it.next()?, it.next()?);
        if it.next().is_some() || y.len() != 4 || m.len() != 2 || d.len() != 2 {
            return None;
        }
        Self::new(y.parse().ok()?, m.parse().ok()?, d.parse().ok()?)
    }
}

impl std::fmt::Display for Date {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

/// The patient, as entered at the cart. Names are UTF-8 (converted from GBK at the edge if needed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Patient {
    /// Clinic's patient id (e.g. outpatient number).
    pub id: String,
    /// Full name, e.g. "张伟".
    pub name: String,
    /// Sex.
    pub sex: Sex,
    /// Birth date, if recorded.
    pub birth_date: Option<Date>,
    /// Age in years when the cart recorded an age instead of a birth date.
    pub age_years: Option<u16>,
}

/// A resting ECG recorded at a clinic, asking for consultation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Study {
    /// Unique id, made by the agent (`{device}-{acquired_at_ms}-{cart study number}`), so the
    /// same recording resent by the cart maps to the same study.
    pub study_uid: String,
    /// The patient.
    pub patient: Patient,
    /// The clinic's question to the specialist (free text, any language).
    pub question: String,
    /// Urgency.
    pub priority: Priority,
    /// Acquisition start on the device clock, Unix ms.
    pub acquired_at_ms: i64,
    /// Sampling rate of the rhythm leads in Hz.
    pub sample_rate_hz: u32,
    /// Cart model and firmware as the cart reported them.
    pub device_model: String,
    /// Rhythm leads, all of equal sample count; a lead the cart did not record is absent.
    pub leads: Vec<StudyLead>,
    /// Problems the agent, a file reader or the cart noticed (e.g. a truncated lead), shown to the
    /// specialist.
    pub warnings: Vec<String>,
    /// The cart's median (representative) beat, when it computed one.
    pub median_beat: Option<MedianBeat>,
    /// Beat labels, wave boundaries and rhythm changes from the cart or file.
    pub annotations: Vec<Annotation>,
    /// The cart's own measurements (PR, QRS, QT, axes, ...).
    pub measurements: Vec<Measurement>,
    /// The cart's own interpretation statements, in order.
    pub interpretation: Vec<String>,
    /// The untouched original file(s) the study was read from, when it came from a file.
    pub source: Option<SourceFile>,
}

/// One lead of a study: its samples and how to read them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StudyLead {
    /// Lead name, e.g. "II", "aVR", "V5" (see [`crate::lead`]).
    pub lead: String,
    /// True when the cart computed this lead from others instead of recording it.
    pub derived: bool,
    /// Nanovolts per least significant bit (per lead: files may differ by lead).
    pub resolution_nv: f64,
    /// Compressed integer samples, baseline removed.
    pub samples: EncodedSamples,
}

impl StudyLead {
    /// Compresses `samples` for a recorded (not derived) lead.
    pub fn encode(lead: &str, resolution_nv: f64, samples: &[i32]) -> Self {
        Self { lead: lead.to_string(), derived: false, resolution_nv, samples: codec::encode(samples) }
    }

    /// Decompresses the samples, refusing more than [`limits::SAMPLES_PER_LEAD_MAX`].
    pub fn decode(&self) -> Result<Vec<i32>, CodecError> {
        codec::decode(&self.samples, limits::SAMPLES_PER_LEAD_MAX)
    }
}

/// A median (representative) beat.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MedianBeat {
    /// Sampling rate in Hz.
    pub sample_rate_hz: u32,
    /// One beat per lead, of equal length.
    pub leads: Vec<StudyLead>,
}

/// A labelled point on the rhythm (beat, wave boundary, rhythm change).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Annotation {
    /// Sample index on the rhythm leads.
    pub sample: u64,
    /// The lead it belongs to, if the file ties it to one.
    pub lead: Option<String>,
    /// Machine label (MIT symbol, MDC code, DICOM code meaning).
    pub label: String,
    /// Free text that came with it.
    pub text: Option<String>,
}

/// A measurement made by the cart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Measurement {
    /// What was measured, e.g. "PR", "QTc", "QRS axis".
    pub name: String,
    /// The value, in `unit`.
    pub value: f64,
    /// Unit, e.g. "ms", "deg", "/min".
    pub unit: String,
}

/// The original cart file(s) behind a study, kept byte for byte and signed with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceFile {
    /// Format read, e.g. "scp-ecg", "dicom", "hl7-aecg", "wfdb", "contec".
    pub format: String,
    /// Version or flavour as the file states it.
    pub format_version: String,
    /// The files (one, or several for a WFDB record).
    pub files: Vec<OriginalFile>,
}

/// An original file could not be unpacked.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum OriginalError {
    /// The deflate stream is damaged.
    #[error("original {name}: damaged compressed data: {reason}")]
    Inflate {
        /// File name.
        name: String,
        /// What the decompressor said.
        reason: String,
    },
    /// The unpacked bytes are not the size or hash the sender signed.
    #[error("original {name}: unpacked bytes do not match the signed size and SHA-256")]
    Mismatch {
        /// File name.
        name: String,
    },
    /// Larger than [`limits::ORIGINAL_MAX`].
    #[error("original {name}: {size} bytes is over the limit")]
    TooLarge {
        /// File name.
        name: String,
        /// Declared size.
        size: u64,
    },
}

impl OriginalFile {
    /// Compresses `bytes` and records their size and SHA-256.
    pub fn pack(name: &str, bytes: &[u8]) -> Self {
        use std::io::Write;
        let mut enc = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
        // Writing to a Vec cannot fail.
        let deflated = enc.write_all(bytes).and_then(|()| enc.finish()).unwrap_or_default();
        Self { name: name.to_string(), size: bytes.len() as u64, sha256: sha256(bytes), deflated }
    }

    /// Decompresses the original, bounded by its signed size, and checks it byte for byte
    /// against the signed SHA-256.
    pub fn unpack(&self) -> Result<Vec<u8>, OriginalError> {
        use std::io::Read;
        let name = self.name.clone();
        if self.size > limits::ORIGINAL_MAX as u64 {
            return Err(OriginalError::TooLarge { name, size: self.size });
        }
        let mut out = Vec::with_capacity(self.size as usize);
        // One byte past the declared size reveals a stream that is longer than signed.
        flate2::read::DeflateDecoder::new(self.deflated.as_slice())
            .take(self.size + 1)
            .read_to_end(&mut out)
            .map_err(|e| OriginalError::Inflate { name: name.clone(), reason: e.to_string() })?;
        if out.len() as u64 != self.size || sha256(&out) != self.sha256 {
            return Err(OriginalError::Mismatch { name });
        }
        Ok(out)
    }
}

/// One original file, deflate-compressed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OriginalFile {
    /// File name as it was dropped (no directories).
    pub name: String,
    /// Size of the original in bytes.
    pub size: u64,
    /// SHA-256 of the original bytes.
    pub sha256: [u8; 32],
    /// The original bytes, raw deflate (RFC 1951).
    pub deflated: Vec<u8>,
}

impl Study {
    /// Each rhythm lead as (name, µV samples); a lead whose samples do not decode is left out
    /// (`validate` names it).
    pub fn leads_uv(&self) -> Vec<(String, Vec<f64>)> {
        self.leads
            .iter()
            .filter_map(|l| {
                let scale = l.resolution_nv / 1000.0;
                Some((l.lead.clone(), l.decode().ok()?.into_iter().map(|s| f64::from(s) * scale).collect()))
            })
            .collect()
    }

    /// Encodes the whole study (before splitting into parts).
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        wire::encode("study", self, limits::STUDY_MAX)
    }

    /// Decodes an assembled study.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        wire::decode::<Self, { limits::STUDY_MAX }>("study", bytes)
    }

    /// Splits the encoded study into parts that each fit an MQTT packet.
    pub fn split(&self) -> Result<Vec<StudyPart>, EncodeError> {
        let bytes = self.encode()?;
        let digest = sha256(&bytes);
        let count = bytes.len().div_ceil(limits::STUDY_PART_PAYLOAD).max(1) as u32;
        Ok((0..count)
            .map(|i| {
                let start = i as usize * limits::STUDY_PART_PAYLOAD;
                let end = (start + limits::STUDY_PART_PAYLOAD).min(bytes.len());
                StudyPart {
                    study_uid: self.study_uid.clone(),
                    priority: self.priority,
                    index: i,
                    count,
                    total_len: bytes.len() as u32,
                    digest_sha256: digest,
                    bytes: bytes[start..end].to_vec(),
                }
            })
            .collect())
    }
}

/// Checks what the wire format cannot: lead count, equal lengths, sample limits, that every
/// lead decompresses, and non-zero rate and resolution.
fn validate_leads(leads: &[LeadSamples], rate_hz: u32, resolution_nv: u32, max_per_lead: u32) -> Result<(), String> {
    if leads.is_empty() || leads.len() > limits::LEADS_MAX {
        return Err(format!("{} leads (1..={} allowed)", leads.len(), limits::LEADS_MAX));
    }
    if rate_hz == 0 || resolution_nv == 0 {
        return Err("sample rate and resolution must be non-zero".into());
    }
    let n = leads[0].samples.count;
    if n > max_per_lead {
        return Err(format!("{n} samples per lead exceeds {max_per_lead}"));
    }
    for l in leads {
        if l.samples.count != n {
            return Err(format!("lead {} has {} samples, lead {} has {n}", l.lead, l.samples.count, leads[0].lead));
        }
        codec::decode(&l.samples, max_per_lead).map_err(|e| format!("lead {}: {e}", l.lead))?;
    }
    Ok(())
}

impl StreamChunk {
    /// Checks leads, lengths, limits and the sample index range.
    pub fn validate(&self) -> Result<(), String> {
        validate_leads(&self.leads, self.sample_rate_hz, self.resolution_nv, limits::SAMPLES_PER_LEAD_MAX)?;
        let n = u64::from(self.leads[0].samples.count);
        if self.first_sample.checked_add(n).is_none_or(|end| end > i64::MAX as u64) {
            return Err(format!("first sample {} out of range", self.first_sample));
        }
        Ok(())
    }
}

impl Study {
    /// Checks what the wire format cannot: lead counts and lengths, rates, resolutions, that
    /// every lead decompresses, and the sizes of annotations and original files.
    pub fn validate(&self) -> Result<(), String> {
        validate_study_leads("rhythm", &self.leads, self.sample_rate_hz)?;
        if let Some(m) = &self.median_beat {
            validate_study_leads("median beat", &m.leads, m.sample_rate_hz)?;
        }
        if self.annotations.len() > limits::ANNOTATIONS_MAX {
            return Err(format!("{} annotations (at most {})", self.annotations.len(), limits::ANNOTATIONS_MAX));
        }
        if let Some(src) = &self.source {
            let total: u64 = src.files.iter().map(|f| f.size).sum();
            if src.files.is_empty() || total > limits::ORIGINAL_MAX as u64 {
                return Err(format!("{} original files of {total} bytes", src.files.len()));
            }
        }
        Ok(())
    }

    /// The resolution of the first lead, nV per LSB (the common case: all leads share it).
    pub fn resolution_nv(&self) -> f64 {
        self.leads.first().map_or(0.0, |l| l.resolution_nv)
    }
}

fn validate_study_leads(what: &str, leads: &[StudyLead], rate_hz: u32) -> Result<(), String> {
    if leads.is_empty() || leads.len() > limits::LEADS_MAX {
        return Err(format!("{what}: {} leads (1..={} allowed)", leads.len(), limits::LEADS_MAX));
    }
    if rate_hz == 0 {
        return Err(format!("{what}: sample rate must be non-zero"));
    }
    let n = leads[0].samples.count;
    if n > limits::SAMPLES_PER_LEAD_MAX {
        return Err(format!("{what}: {n} samples per lead exceeds {}", limits::SAMPLES_PER_LEAD_MAX));
    }
    for l in leads {
        if !(l.resolution_nv.is_finite() && l.resolution_nv > 0.0) {
            return Err(format!("{what}: lead {} has resolution {} nV", l.lead, l.resolution_nv));
        }
        if l.samples.count != n {
            return Err(format!(
                "{what}: lead {} has {} samples, lead {} has {n}",
                l.lead, l.samples.count, leads[0].lead
            ));
        }
        codec::decode(&l.samples, limits::SAMPLES_PER_LEAD_MAX).map_err(|e| format!("{what}: lead {}: {e}", l.lead))?;
    }
    Ok(())
}

/// Joining study parts failed.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AssembleError {
    /// Parts disagree on the study's length, digest or count, or an index is out of range.
    #[error("study parts are inconsistent: {0}")]
    Inconsistent(&'static str),
    /// The joined bytes do not match the digest every part carries.
    #[error("assembled study does not match its SHA-256")]
    Digest,
    /// The joined bytes do not decode as a study.
    #[error(transparent)]
    Decode(#[from] DecodeError),
}

/// Joins parts (in any order, exactly one per index) back into a study.
pub fn assemble(parts: &[StudyPart]) -> Result<Study, AssembleError> {
    let first = parts.first().ok_or(AssembleError::Inconsistent("no parts"))?;
    if parts.len() != first.count as usize {
        return Err(AssembleError::Inconsistent("part count"));
    }
    let mut ordered: Vec<Option<&StudyPart>> = vec![None; parts.len()];
    for p in parts {
        if p.count != first.count || p.total_len != first.total_len || p.digest_sha256 != first.digest_sha256 {
            return Err(AssembleError::Inconsistent("parts disagree"));
        }
        let slot = ordered.get_mut(p.index as usize).ok_or(AssembleError::Inconsistent("index"))?;
        if slot.replace(p).is_some() {
            return Err(AssembleError::Inconsistent("duplicate index"));
        }
    }
    if first.total_len as usize > limits::STUDY_MAX {
        return Err(AssembleError::Inconsistent("total length over limit"));
    }
    let mut bytes = Vec::with_capacity(first.total_len as usize);
    for p in ordered.into_iter().flatten() {
        bytes.extend_from_slice(&p.bytes);
    }
    if bytes.len() != first.total_len as usize || sha256(&bytes) != first.digest_sha256 {
        return Err(AssembleError::Digest);
    }
    let study = Study::decode(&bytes)?;
    if study.study_uid != first.study_uid {
        return Err(AssembleError::Inconsistent("study uid"));
    }
    Ok(study)
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, bytes).as_ref());
    out
}

/// One part of an encoded study; each part is its own signed envelope with its own seq.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StudyPart {
    /// The study this part belongs to.
    pub study_uid: String,
    /// The study's priority (so the hub can queue before decoding the whole study).
    pub priority: Priority,
    /// Zero-based index of this part.
    pub index: u32,
    /// Number of parts.
    pub count: u32,
    /// Length of the whole encoded study in bytes.
    pub total_len: u32,
    /// SHA-256 of the whole encoded study.
    pub digest_sha256: [u8; 32],
    /// This part's slice of the encoded study.
    pub bytes: Vec<u8>,
}

/// A line of text the device printed (measurements, interpretation, alarms).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceOutput {
    /// Which serial port it came from (config name).
    pub port: String,
    /// The line, converted to UTF-8 from the port's encoding.
    pub line: String,
    /// Agent time the line was complete, Unix ms.
    pub received_at_ms: i64,
}

/// The agent dropped part of a monitoring stream (its spool was full): the hub records the gap
/// explicitly instead of showing silence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamGap {
    /// Stream number on the device.
    pub stream_id: u32,
    /// First dropped sample index.
    pub first_sample: u64,
    /// One past the last dropped sample index.
    pub end_sample: u64,
    /// Why (e.g. "spool full").
    pub reason: String,
}

/// The agent confirms that a report reached the clinic and was stored there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportReceipt {
    /// The report.
    pub report_id: String,
    /// The study it answers.
    pub study_uid: String,
    /// Agent time the report was stored, Unix ms.
    pub stored_at_ms: i64,
}

/// What the agent's link is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LinkState {
    /// Just connected (birth message).
    Online,
    /// Periodic heartbeat.
    Heartbeat,
    /// The broker's last will: the agent is gone.
    Offline,
}

/// Agent status, published on the status topic (not spooled: only the latest matters).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// Link state.
    pub state: LinkState,
    /// Agent version.
    pub agent_version: String,
    /// Envelopes waiting in the spool for the hub's ack.
    pub spool_entries: u64,
    /// Bytes waiting in the spool.
    pub spool_bytes: u64,
    /// Free-form detail (e.g. "serial /dev/ttyUSB0 disconnected").
    pub detail: String,
}

/// An inclusive range of sequence numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeqRange {
    /// First seq.
    pub first: u64,
    /// Last seq (inclusive).
    pub last: u64,
}

/// Why the hub refused a validly signed envelope. The agent must not send it again as it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RefusalReason {
    /// The hub already stored other content under this seq (the agent's seq counter went back,
    /// e.g. a wiped spool). The agent seals the body again with a seq above `highest_seq`.
    SeqReused {
        /// The highest seq the hub has stored for this device.
        highest_seq: u64,
    },
    /// The body contradicts what the hub holds or its own fields (e.g. a study id reused for
    /// another recording). The agent keeps it aside and tells the operator.
    Inconsistent(String),
}

/// One refused envelope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    /// Its seq.
    pub seq: u64,
    /// Why.
    pub reason: RefusalReason,
}

/// The hub confirms that it durably stored these sequence numbers of one device, and names the
/// ones it refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    /// The device whose envelopes were stored.
    pub device_id: String,
    /// The spool epoch of the acked envelopes (see [`crate::envelope::Header::epoch`]).
    pub epoch: u64,
    /// Stored ranges.
    pub ranges: Vec<SeqRange>,
    /// Validly signed envelopes the hub will never store as they are.
    pub refused: Vec<Refusal>,
}

impl Ack {
    /// Builds an ack from seqs in any order, merging consecutive ones into ranges.
    pub fn from_seqs(device_id: &str, epoch: u64, seqs: &[u64], refused: Vec<Refusal>) -> Self {
        let mut sorted = seqs.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        let mut ranges: Vec<SeqRange> = Vec::new();
        for s in sorted {
            match ranges.last_mut() {
                Some(r) if r.last + 1 == s => r.last = s,
                _ => ranges.push(SeqRange { first: s, last: s }),
            }
        }
        Self { device_id: device_id.to_string(), epoch, ranges, refused }
    }

    /// True if `seq` is in one of the ranges.
    pub fn contains(&self, seq: u64) -> bool {
        self.ranges.iter().any(|r| r.first <= seq && seq <= r.last)
    }
}

/// A specialist's signed diagnosis, sent back to the clinic that asked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// Unique report id, made by the hub.
    pub report_id: String,
    /// The study it answers.
    pub study_uid: String,
    /// Patient name, repeated so the printed report stands alone.
    pub patient_name: String,
    /// The specialist's id at the hub.
    pub specialist_id: String,
    /// The specialist's display name.
    pub specialist_name: String,
    /// Findings (measurements, description).
    pub findings: String,
    /// Conclusion (diagnosis).
    pub conclusion: String,
    /// Hub time the report was signed, Unix ms.
    pub reported_at_ms: i64,
}

/// A device moves to a new key. The envelope carrying it is signed by the device's current key;
/// `new_key_signature` is the new key's signature over
/// [`crate::enrol::rotation_statement`], proving the device holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRotation {
    /// Signature algorithm id of the new key ([`crate::envelope::ALG_ED25519`]).
    pub alg: u8,
    /// The new public key.
    pub new_public_key: crate::keys::PublicKey,
    /// Device clock when made, Unix ms.
    pub at_ms: i64,
    /// The new key's signature over the rotation statement.
    pub new_key_signature: Vec<u8>,
}

/// Where a device stands with fleet updates: its signed installed-version manifest, sent when
/// it changes (and at start), spooled and acknowledged like clinical data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FleetReport {
    /// The agent version running (the installed release, or the agent's own build).
    pub installed_version: String,
    /// SHA-256 of the installed release's binary; zeros when none is installed yet.
    pub installed_sha256: [u8; 32],
    /// The configuration bundle version applied; empty when none.
    pub config_version: String,
    /// The release on trial, if any.
    pub trial_version: Option<String>,
    /// What the device is doing: `idle`, `downloading`, `on trial`, `committed`,
    /// `rolled back`, `deferred`.
    pub state: String,
    /// Download progress in per mille while `downloading` (0-1000).
    pub download_per_mille: u16,
    /// The last update result: the version it concerned.
    pub last_version: String,
    /// Why (for `rolled back` and `deferred`).
    pub last_reason: String,
    /// Device time of the last result, Unix ms (0 if none).
    pub last_at_ms: i64,
}

/// The hub's assignment of offline-signed releases to one device (Uptane's director): the
/// repository targets it should run now. The hub can only name targets that county IT signed;
/// the agent checks the name and hash against its verified repository before acting on it.
/// Fetched over HTTPS and signed for the device's ack topic, so it is valid for that device only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateAssignment {
    /// Hub time it was made, Unix ms: an agent refuses one older than the last it acted on.
    pub issued_at_ms: i64,
    /// At most one target per kind (agent binary, configuration bundle) and platform; empty:
    /// stay as you are.
    pub targets: Vec<AssignedTarget>,
}

/// One assigned repository target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssignedTarget {
    /// The rollout that assigned it.
    pub rollout_id: u64,
    /// The TUF target name, e.g. `agent-x86_64-unknown-linux-gnu-1.3.0`.
    pub name: String,
    /// Its version.
    pub version: String,
    /// Its SHA-256 as the offline-signed targets metadata gives it.
    pub sha256: [u8; 32],
}

/// The hub tells the clinic that a specialist took up one of its studies (or put it back), so the
/// clinic page can show where the study stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StudyClaim {
    /// The study.
    pub study_uid: String,
    /// The specialist's display name.
    pub specialist_name: String,
    /// True when claimed, false when put back in the queue.
    pub claimed: bool,
    /// Hub time, Unix ms.
    pub at_ms: i64,
}

/// A report the specialist marked critical (suspected STEMI, VT, complete heart block): the
/// clinic raises an alarm until a named clinician acknowledges it with a [`CriticalAck`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CriticalNotice {
    /// The report.
    pub report_id: String,
    /// The study it answers.
    pub study_uid: String,
    /// The patient, as on the report.
    pub patient_name: String,
    /// The conclusion, as on the report.
    pub conclusion: String,
    /// The specialist's display name.
    pub specialist_name: String,
    /// Hub time the report was signed, Unix ms.
    pub reported_at_ms: i64,
}

/// A named clinician at the clinic acknowledged a critical result (the agent checked the
/// clinician's PIN before signing this).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CriticalAck {
    /// The report.
    pub report_id: String,
    /// The study it answers.
    pub study_uid: String,
    /// The clinician's name as the clinic lists it.
    pub clinician: String,
    /// Agent time of the acknowledgement, Unix ms.
    pub acknowledged_at_ms: i64,
}

/// The clinic chose not to retake a study the cart's quality gate flagged (the patient had left,
/// or the tracing is readable as it is): who decided, and why. The specialist sees it beside the
/// gate's findings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QualityOverride {
    /// The flagged study.
    pub study_uid: String,
    /// The clinician's name as the clinic lists it (the agent checked the PIN).
    pub clinician: String,
    /// Why it was not retaken.
    pub reason: String,
    /// Agent time of the decision, Unix ms.
    pub overridden_at_ms: i64,
}

/// Every body kind, decoded. The kind number on the wire is [`Payload::kind`].
#[derive(Debug, Clone, PartialEq)]
pub enum Payload {
    /// Kind 1.
    StreamChunk(StreamChunk),
    /// Kind 2.
    StudyPart(StudyPart),
    /// Kind 3.
    DeviceOutput(DeviceOutput),
    /// Kind 4.
    ReportReceipt(ReportReceipt),
    /// Kind 5.
    Status(Status),
    /// Kind 6.
    Ack(Ack),
    /// Kind 7.
    Report(Report),
    /// Kind 8.
    StreamGap(StreamGap),
    /// Kind 9.
    ImageManifest(crate::imaging::ImageManifest),
    /// Kind 10.
    BlobChunk(crate::imaging::BlobChunk),
    /// Kind 11.
    KeyRotation(KeyRotation),
    /// Kind 12: the hub moves to a new signing key (signer id `hub:{hub id}` in the statement).
    HubKeyRotation(KeyRotation),
    /// Kind 13: the device's update state (installed version and hash, trial, last result).
    FleetReport(FleetReport),
    /// Kind 14: the hub's release assignment for one device.
    UpdateAssignment(UpdateAssignment),
    /// Kind 15: a specialist claimed or released one of the device's studies.
    StudyClaim(StudyClaim),
    /// Kind 16: a critical result the clinic must acknowledge.
    CriticalNotice(CriticalNotice),
    /// Kind 17: a named clinician acknowledged a critical result.
    CriticalAck(CriticalAck),
    /// Kind 18: the clinic sends a flagged study as it is, without a retake.
    QualityOverride(QualityOverride),
}

/// Kind numbers. Numbers are never reused; new kinds get new numbers (design.md keeps the
/// enum open for blob chunks, manifests, key rotation).
pub mod kind {
    /// [`super::StreamChunk`].
    pub const STREAM_CHUNK: u16 = 1;
    /// [`super::StudyPart`].
    pub const STUDY_PART: u16 = 2;
    /// [`super::DeviceOutput`].
    pub const DEVICE_OUTPUT: u16 = 3;
    /// [`super::ReportReceipt`].
    pub const REPORT_RECEIPT: u16 = 4;
    /// [`super::Status`].
    pub const STATUS: u16 = 5;
    /// [`super::Ack`].
    pub const ACK: u16 = 6;
    /// [`super::Report`].
    pub const REPORT: u16 = 7;
    /// [`super::StreamGap`].
    pub const STREAM_GAP: u16 = 8;
    /// [`crate::imaging::ImageManifest`].
    pub const IMAGE_MANIFEST: u16 = 9;
    /// [`crate::imaging::BlobChunk`].
    pub const BLOB_CHUNK: u16 = 10;
    /// [`super::KeyRotation`].
    pub const KEY_ROTATION: u16 = 11;
    /// [`super::KeyRotation`] of the hub's key, on the ack channel.
    pub const HUB_KEY_ROTATION: u16 = 12;
    /// [`super::FleetReport`].
    pub const FLEET_REPORT: u16 = 13;
    /// [`super::UpdateAssignment`], for the device's ack topic.
    pub const UPDATE_ASSIGNMENT: u16 = 14;
    /// [`super::StudyClaim`], hub to device on its report topic.
    pub const STUDY_CLAIM: u16 = 15;
    /// [`super::CriticalNotice`], hub to device on its report topic.
    pub const CRITICAL_NOTICE: u16 = 16;
    /// [`super::CriticalAck`], device to hub on its up topic.
    pub const CRITICAL_ACK: u16 = 17;
    /// [`super::QualityOverride`], device to hub on its up topic.
    pub const QUALITY_OVERRIDE: u16 = 18;
}

impl Payload {
    /// The kind number.
    pub fn kind(&self) -> u16 {
        match self {
            Payload::StreamChunk(_) => kind::STREAM_CHUNK,
            Payload::StudyPart(_) => kind::STUDY_PART,
            Payload::DeviceOutput(_) => kind::DEVICE_OUTPUT,
            Payload::ReportReceipt(_) => kind::REPORT_RECEIPT,
            Payload::Status(_) => kind::STATUS,
            Payload::Ack(_) => kind::ACK,
            Payload::Report(_) => kind::REPORT,
            Payload::StreamGap(_) => kind::STREAM_GAP,
            Payload::ImageManifest(_) => kind::IMAGE_MANIFEST,
            Payload::BlobChunk(_) => kind::BLOB_CHUNK,
            Payload::KeyRotation(_) => kind::KEY_ROTATION,
            Payload::HubKeyRotation(_) => kind::HUB_KEY_ROTATION,
            Payload::FleetReport(_) => kind::FLEET_REPORT,
            Payload::UpdateAssignment(_) => kind::UPDATE_ASSIGNMENT,
            Payload::StudyClaim(_) => kind::STUDY_CLAIM,
            Payload::CriticalNotice(_) => kind::CRITICAL_NOTICE,
            Payload::CriticalAck(_) => kind::CRITICAL_ACK,
            Payload::QualityOverride(_) => kind::QUALITY_OVERRIDE,
        }
    }

    /// The kind's name.
    pub fn kind_name(kind: u16) -> Option<&'static str> {
        Some(match kind {
            kind::STREAM_CHUNK => "stream chunk",
            kind::STUDY_PART => "study part",
            kind::DEVICE_OUTPUT => "device output",
            kind::REPORT_RECEIPT => "report receipt",
            kind::STATUS => "status",
            kind::ACK => "ack",
            kind::REPORT => "report",
            kind::STREAM_GAP => "stream gap",
            kind::IMAGE_MANIFEST => "image manifest",
            kind::BLOB_CHUNK => "blob chunk",
            kind::KEY_ROTATION => "key rotation",
            kind::HUB_KEY_ROTATION => "hub key rotation",
            kind::FLEET_REPORT => "fleet report",
            kind::UPDATE_ASSIGNMENT => "update assignment",
            kind::STUDY_CLAIM => "study claim",
            kind::CRITICAL_NOTICE => "critical notice",
            kind::CRITICAL_ACK => "critical acknowledgement",
            kind::QUALITY_OVERRIDE => "quality override",
            _ => return None,
        })
    }

    /// Encodes the body, refusing bodies over the kind's limit.
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        match self {
            Payload::StreamChunk(b) => wire::encode("stream chunk", b, limits::STREAM_CHUNK_MAX),
            Payload::StudyPart(b) => wire::encode("study part", b, limits::STUDY_PART_MAX),
            Payload::DeviceOutput(b) => wire::encode("device output", b, limits::DEVICE_OUTPUT_MAX),
            Payload::ReportReceipt(b) => wire::encode("report receipt", b, limits::RECEIPT_MAX),
            Payload::Status(b) => wire::encode("status", b, limits::STATUS_MAX),
            Payload::Ack(b) => wire::encode("ack", b, limits::ACK_MAX),
            Payload::Report(b) => wire::encode("report", b, limits::REPORT_MAX),
            Payload::StreamGap(b) => wire::encode("stream gap", b, limits::RECEIPT_MAX),
            Payload::ImageManifest(b) => wire::encode("image manifest", b, limits::IMAGE_MANIFEST_MAX),
            Payload::BlobChunk(b) => wire::encode("blob chunk", b, limits::BLOB_CHUNK_MAX),
            Payload::KeyRotation(b) => wire::encode("key rotation", b, limits::RECEIPT_MAX),
            Payload::HubKeyRotation(b) => wire::encode("hub key rotation", b, limits::RECEIPT_MAX),
            Payload::FleetReport(b) => wire::encode("fleet report", b, limits::STATUS_MAX),
            Payload::UpdateAssignment(b) => wire::encode("update assignment", b, limits::STATUS_MAX),
            Payload::StudyClaim(b) => wire::encode("study claim", b, limits::RECEIPT_MAX),
            Payload::CriticalNotice(b) => wire::encode("critical notice", b, limits::REPORT_MAX),
            Payload::CriticalAck(b) => wire::encode("critical acknowledgement", b, limits::RECEIPT_MAX),
            Payload::QualityOverride(b) => wire::encode("quality override", b, limits::RECEIPT_MAX),
        }
    }

    /// Decodes a body of `kind` with that kind's byte limit. `None` for unknown kinds.
    pub fn decode(kind: u16, body: &[u8]) -> Option<Result<Self, DecodeError>> {
        use wire::decode;
        Some(match kind {
            kind::STREAM_CHUNK => {
                decode::<_, { limits::STREAM_CHUNK_MAX }>("stream chunk", body).map(Payload::StreamChunk)
            }
            kind::STUDY_PART => decode::<_, { limits::STUDY_PART_MAX }>("study part", body).map(Payload::StudyPart),
            kind::DEVICE_OUTPUT => {
                decode::<_, { limits::DEVICE_OUTPUT_MAX }>("device output", body).map(Payload::DeviceOutput)
            }
            kind::REPORT_RECEIPT => {
                decode::<_, { limits::RECEIPT_MAX }>("report receipt", body).map(Payload::ReportReceipt)
            }
            kind::STATUS => decode::<_, { limits::STATUS_MAX }>("status", body).map(Payload::Status),
            kind::ACK => decode::<_, { limits::ACK_MAX }>("ack", body).map(Payload::Ack),
            kind::REPORT => decode::<_, { limits::REPORT_MAX }>("report", body).map(Payload::Report),
            kind::STREAM_GAP => decode::<_, { limits::RECEIPT_MAX }>("stream gap", body).map(Payload::StreamGap),
            kind::IMAGE_MANIFEST => {
                decode::<_, { limits::IMAGE_MANIFEST_MAX }>("image manifest", body).map(Payload::ImageManifest)
            }
            kind::BLOB_CHUNK => decode::<_, { limits::BLOB_CHUNK_MAX }>("blob chunk", body).map(Payload::BlobChunk),
            kind::KEY_ROTATION => decode::<_, { limits::RECEIPT_MAX }>("key rotation", body).map(Payload::KeyRotation),
            kind::HUB_KEY_ROTATION => {
                decode::<_, { limits::RECEIPT_MAX }>("hub key rotation", body).map(Payload::HubKeyRotation)
            }
            kind::FLEET_REPORT => decode::<_, { limits::STATUS_MAX }>("fleet report", body).map(Payload::FleetReport),
            kind::UPDATE_ASSIGNMENT => {
                decode::<_, { limits::STATUS_MAX }>("update assignment", body).map(Payload::UpdateAssignment)
            }
            kind::STUDY_CLAIM => decode::<_, { limits::RECEIPT_MAX }>("study claim", body).map(Payload::StudyClaim),
            kind::CRITICAL_NOTICE => {
                decode::<_, { limits::REPORT_MAX }>("critical notice", body).map(Payload::CriticalNotice)
            }
            kind::CRITICAL_ACK => {
                decode::<_, { limits::RECEIPT_MAX }>("critical acknowledgement", body).map(Payload::CriticalAck)
            }
            kind::QUALITY_OVERRIDE => {
                decode::<_, { limits::RECEIPT_MAX }>("quality override", body).map(Payload::QualityOverride)
            }
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_original_file_comes_back_bit_identical_or_not_at_all() {
        let bytes: Vec<u8> = (0..50_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let packed = OriginalFile::pack("0000050.ECG", &bytes);
        assert!(packed.deflated.len() < bytes.len());
        assert_eq!(packed.unpack().expect("unpack"), bytes);
        let mut longer = packed.clone();
        longer.size -= 1;
        assert!(matches!(longer.unpack(), Err(OriginalError::Mismatch { .. })));
        let mut tampered = OriginalFile::pack("x", b"hello");
        tampered.sha256[0] ^= 1;
        assert!(matches!(tampered.unpack(), Err(OriginalError::Mismatch { .. })));
        let garbage = OriginalFile { deflated: vec![0xff; 16], ..OriginalFile::pack("y", b"abc") };
        assert!(garbage.unpack().is_err());
    }

    fn study(n: usize) -> Study {
        Study {
            study_uid: "cart-1-42".into(),
            patient: Patient {
                id: "MZ0001".into(),
                name: "张伟".into(),
                sex: Sex::Male,
                birth_date: Date::new(1958, 2, 28),
                age_years: None,
            },
            question: "胸痛2小时，请排除急性心梗".into(),
            priority: Priority::Stat,
            acquired_at_ms: 1_700_000_000_000,
            sample_rate_hz: 500,
            device_model: "sim".into(),
            leads: crate::lead::STANDARD_12
                .iter()
                .enumerate()
                .map(|(i, l)| {
                    let s: Vec<i32> = (0..n).map(|k| ((k * 7919 + i * 104729) % 4001) as i32 - 2000).collect();
                    StudyLead::encode(l, 1000.0, &s)
                })
                .collect(),
            warnings: vec![],
            median_beat: None,
            annotations: vec![],
            measurements: vec![],
            interpretation: vec![],
            source: None,
        }
    }

    #[test]
    fn study_splits_into_parts_and_reassembles_in_any_order() {
        let s = study(20_000);
        let mut parts = s.split().expect("split");
        assert!(parts.len() > 1, "a large study needs several parts");
        for p in &parts {
            assert!(Payload::StudyPart(p.clone()).encode().expect("fits").len() <= limits::STUDY_PART_MAX);
        }
        parts.reverse();
        assert_eq!(assemble(&parts).expect("assemble"), s);
    }

    #[test]
    fn assembly_refuses_missing_tampered_and_duplicate_parts() {
        let parts = study(20_000).split().expect("split");
        assert!(assemble(&parts[1..]).is_err());
        let mut bad = parts.clone();
        bad[0].bytes[10] ^= 1;
        assert_eq!(assemble(&bad).err(), Some(AssembleError::Digest));
        let mut dup = parts.clone();
        dup[1] = dup[0].clone();
        assert!(matches!(assemble(&dup), Err(AssembleError::Inconsistent(_))));
    }

    #[test]
    fn ack_merges_seqs_into_ranges() {
        let a = Ack::from_seqs("d", 7, &[5, 3, 4, 9, 10, 4, 1], vec![]);
        assert_eq!(
            a.ranges,
            vec![SeqRange { first: 1, last: 1 }, SeqRange { first: 3, last: 5 }, SeqRange { first: 9, last: 10 }]
        );
        assert!(a.contains(4) && !a.contains(2) && a.contains(10));
    }

    #[test]
    fn dates_are_checked() {
        assert!(Date::new(2024, 2, 29).is_some());
        assert!(Date::new(2023, 2, 29).is_none());
        assert_eq!(Date::parse("1958-02-28").map(|d| d.to_string()), Some("1958-02-28".into()));
        assert!(Date::parse("1958-2-28").is_none());
    }
}
