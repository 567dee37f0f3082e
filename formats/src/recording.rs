//! The canonical recording every reader produces and every writer consumes.
//!
//! Samples are the file's integers with the baseline (offset) already taken out, so that
//! `sample × resolution_nv` is the voltage in nV for every format. Nothing is resampled or
//! rescaled: a lead keeps its own rate and resolution, which is what makes a round trip exact.

use jiff::civil::{Date, DateTime};

/// The file formats Yilian reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// SCP-ECG (EN 1064 / ISO 11073-91064).
    ScpEcg,
    /// DICOM waveform (12-lead ECG, General ECG, or ECG channels in another waveform IOD).
    Dicom,
    /// HL7 v3 annotated ECG (aECG) XML.
    Aecg,
    /// PhysioNet WFDB record (header + signal files, optional annotations).
    Wfdb,
    /// Contec ECG90A `.ECG` file.
    Contec,
}

impl Format {
    /// Short stable name, used in logs, the wire and file extensions.
    pub fn name(self) -> &'static str {
        match self {
            Self::ScpEcg => "scp-ecg",
            Self::Dicom => "dicom",
            Self::Aecg => "hl7-aecg",
            Self::Wfdb => "wfdb",
            Self::Contec => "contec",
        }
    }
}

/// Sex as recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Sex {
    /// Not recorded or unknown.
    #[default]
    Unknown,
    /// Male.
    Male,
    /// Female.
    Female,
}

/// Patient fields as the file states them (all optional in real files).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Patient {
    /// Clinic's patient id.
    pub id: String,
    /// Full display name, e.g. "张伟" or "Clark". Decoded to UTF-8 from the file's charset.
    pub name: String,
    /// Sex.
    pub sex: Sex,
    /// Date of birth.
    pub birth_date: Option<Date>,
    /// Age in years when the file states it (some carts store age, not birth date).
    pub age_years: Option<u16>,
}

/// One lead of a rhythm recording or of a median beat.
#[derive(Debug, Clone, PartialEq)]
pub struct Lead {
    /// Canonical lead name: "I", "II", "III", "aVR", "aVL", "aVF", "V1".."V6", or another name
    /// from [`crate::lead`] ("V7", "X", "MLII", ...). Never a position.
    pub name: String,
    /// True when the device computed this lead from others (e.g. III = II − I) rather than
    /// recording it.
    pub derived: bool,
    /// Sampling rate in Hz.
    pub sample_rate_hz: u32,
    /// Nanovolts per least significant bit.
    pub resolution_nv: f64,
    /// Integer samples, baseline removed.
    pub samples: Vec<i32>,
}

impl Lead {
    /// Duration in milliseconds.
    pub fn duration_ms(&self) -> u64 {
        if self.sample_rate_hz == 0 {
            return 0;
        }
        self.samples.len() as u64 * 1000 / u64::from(self.sample_rate_hz)
    }

    /// Plain integer sum of the samples (what the test-data README calls "sum").
    pub fn sum(&self) -> i64 {
        self.samples.iter().map(|&s| i64::from(s)).sum()
    }
}

/// A labelled point or interval on the recording (a beat, a wave boundary, a rhythm change).
#[derive(Debug, Clone, PartialEq)]
pub struct Annotation {
    /// Sample index on the rhythm leads (at the rate of the first rhythm lead).
    pub sample: u64,
    /// Lead it belongs to, when the file ties it to one.
    pub lead: Option<String>,
    /// Machine label: a MIT code symbol ("N", "V", "+"), an HL7 MDC code ("MDC_ECG_WAVC_PON"),
    /// or a DICOM code meaning.
    pub label: String,
    /// Free text that came with it (MIT AUX string, DICOM unformatted text), if any.
    pub text: Option<String>,
}

/// A device measurement, e.g. PR 161 ms, QRS axis 52 deg.
#[derive(Debug, Clone, PartialEq)]
pub struct Measurement {
    /// What was measured ("PR", "QRS", "QT", "QTc", "RR", "P axis", "Heart rate", ...).
    pub name: String,
    /// Value in `unit`.
    pub value: f64,
    /// Unit as UCUM-ish text: "ms", "deg", "/min", "uV".
    pub unit: String,
}

/// Everything a reader understood from one cart file (or one multi-file record).
#[derive(Debug, Clone, PartialEq)]
pub struct Recording {
    /// Format read.
    pub format: Format,
    /// Format version or flavour as the file states it, e.g. "2.0", "12-lead ECG Waveform Storage".
    pub format_version: String,
    /// Patient.
    pub patient: Patient,
    /// Acquisition start in the cart's local civil time (files carry no time zone).
    pub acquired_at: Option<DateTime>,
    /// Cart manufacturer and model as stated, e.g. "Mortara Instrument, Inc. ELI250".
    pub device: String,
    /// The rhythm (full-length) leads, in the file's order. Absent leads are simply not here.
    pub leads: Vec<Lead>,
    /// The device's median or representative beat, if the file has one.
    pub median_beat: Vec<Lead>,
    /// Annotations (beats, wave boundaries, rhythm labels).
    pub annotations: Vec<Annotation>,
    /// The device's own measurements.
    pub measurements: Vec<Measurement>,
    /// The device's own interpretation statements, in file order.
    pub interpretation: Vec<String>,
    /// The clinic's question, when the file carries one (e.g. a free-text field).
    pub question: Option<String>,
    /// Problems the reader tolerated (shown to the specialist), e.g. a truncated lead.
    pub warnings: Vec<String>,
}

impl Recording {
    /// An empty recording of `format`, for readers to fill in.
    pub fn new(format: Format, format_version: impl Into<String>) -> Self {
        Self {
            format,
            format_version: format_version.into(),
            patient: Patient::default(),
            acquired_at: None,
            device: String::new(),
            leads: Vec::new(),
            median_beat: Vec::new(),
            annotations: Vec::new(),
            measurements: Vec::new(),
            interpretation: Vec::new(),
            question: None,
            warnings: Vec::new(),
        }
    }

    /// The rhythm lead called `name` (case-insensitive), if present.
    pub fn lead(&self, name: &str) -> Option<&Lead> {
        self.leads.iter().find(|l| l.name.eq_ignore_ascii_case(name))
    }

    /// The median-beat lead called `name` (case-insensitive), if present.
    pub fn median(&self, name: &str) -> Option<&Lead> {
        self.median_beat.iter().find(|l| l.name.eq_ignore_ascii_case(name))
    }
}

/// Bounds every reader enforces, so that no file makes it allocate without limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest input accepted, in bytes (per file).
    pub max_input_bytes: usize,
    /// Most leads accepted (DICOM counts rhythm and median-beat channels together).
    pub max_leads: usize,
    /// Most samples per lead accepted.
    pub max_samples_per_lead: usize,
    /// Most annotations accepted.
    pub max_annotations: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_input_bytes: 64 * 1024 * 1024,
            max_leads: 64,
            // 30 min at 1000 Hz: covers MIT-BIH (650,000 at 360 Hz) and long rhythm strips.
            max_samples_per_lead: 1_800_000,
            max_annotations: 200_000,
        }
    }
}

/// How strict a reader is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReadOptions {
    /// Bounds on sizes.
    pub limits: Limits,
    /// Accept a file whose checksums (SCP CRC, WFDB checksum) do not match, with a warning.
    /// Off by default: a bad checksum means the bytes are not what the cart wrote.
    pub accept_bad_checksums: bool,
}
