//! What can go wrong reading or writing an aECG document.

/// A HL7 aECG document could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AecgError {
    /// Larger than `Limits::max_input_bytes`.
    #[error("document is {size} bytes, the limit is {limit}")]
    TooLarge {
        /// Size of the input.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The XML declaration names an encoding Yilian cannot decode.
    #[error("the XML declaration names encoding {0:?}, which Yilian cannot decode")]
    UnsupportedEncoding(String),
    /// The bytes are not well-formed XML.
    #[error("XML is not well-formed at offset {offset}: {message}")]
    Xml {
        /// Offset in the (decoded) document.
        offset: u64,
        /// What the XML parser found.
        message: String,
    },
    /// No root element: not an XML document (or only a prolog).
    #[error("no root element: not an XML document")]
    NotXml,
    /// Well-formed XML, but not an aECG document.
    #[error("XML with root element <{root}>, not <AnnotatedECG>")]
    NotAecg {
        /// The root element's local name.
        root: String,
    },
    /// The document ends before its root element is closed.
    #[error("document is truncated: it ends inside <{open}> at offset {offset}")]
    Truncated {
        /// The innermost element still open.
        open: String,
        /// Where the input ended.
        offset: u64,
    },
    /// Elements nested deeper than any aECG needs (a hostile document).
    #[error("elements are nested deeper than {limit} levels at offset {offset}")]
    TooDeep {
        /// The nesting limit.
        limit: usize,
        /// Where the limit was reached.
        offset: u64,
    },
    /// An entity reference other than the five XML predefines and character references.
    #[error("unknown entity reference &{name}; at offset {offset}")]
    UnknownEntity {
        /// The entity name.
        name: String,
        /// Where it was.
        offset: u64,
    },
    /// A lead's digits hold something that is not an integer.
    #[error("lead {lead}: digit {index} is {token:?}, not an integer")]
    BadDigit {
        /// The lead (its name, or its code when unknown).
        lead: String,
        /// Index of the digit in the sequence, from 0.
        index: usize,
        /// The text found (shortened).
        token: String,
    },
    /// A sample does not fit in 32 bits once the origin is added.
    #[error("lead {lead}: sample {index} overflows once the origin is added")]
    SampleOverflow {
        /// The lead.
        lead: String,
        /// Index of the sample.
        index: usize,
    },
    /// More samples in one lead than `Limits::max_samples_per_lead`.
    #[error("lead {lead} has more than {limit} samples")]
    TooManySamples {
        /// The lead (its code as written).
        lead: String,
        /// The limit.
        limit: usize,
    },
    /// More lead sequences than `Limits::max_leads`.
    #[error("more than {limit} {what} leads")]
    TooManyLeads {
        /// "rhythm" or "representative beat".
        what: &'static str,
        /// The limit.
        limit: usize,
    },
    /// More annotations than `Limits::max_annotations`.
    #[error("more than {limit} annotations")]
    TooManyAnnotations {
        /// The limit.
        limit: usize,
    },
    /// A sequence set has leads but no `TIME_ABSOLUTE` or `TIME_RELATIVE` sequence.
    #[error("{series} sequence set has no TIME_ABSOLUTE or TIME_RELATIVE time sequence")]
    MissingTime {
        /// The series code.
        series: String,
    },
    /// The time sequence has no `increment`, so the sample rate is unknown.
    #[error("{series} time sequence has no increment: the sample rate is unknown")]
    MissingIncrement {
        /// The series code.
        series: String,
    },
    /// The time increment is not a positive duration.
    #[error("{series} time increment {value:?} {unit:?} is not a positive duration")]
    BadIncrement {
        /// The series code.
        series: String,
        /// The value as written.
        value: String,
        /// The unit as written.
        unit: String,
    },
    /// The time increment does not give a whole number of samples per second.
    #[error("{series} time increment {value} {unit} is {rate:.4} Hz, not a whole number of Hz")]
    RateNotWhole {
        /// The series code.
        series: String,
        /// The value as written.
        value: String,
        /// The unit as written.
        unit: String,
        /// The rate it gives.
        rate: f64,
    },
    /// A lead sequence has no `scale`, so its voltage is unknown.
    #[error("lead {lead} has no scale: its voltage is unknown")]
    MissingScale {
        /// The lead.
        lead: String,
    },
    /// A physical quantity that is not a number, or not a positive one where it must be.
    #[error("{what} is {value:?} {unit:?}, not a usable quantity")]
    BadQuantity {
        /// Which quantity (e.g. "lead V1 scale").
        what: String,
        /// The value as written.
        value: String,
        /// The unit as written.
        unit: String,
    },
    /// A unit the reader does not convert.
    #[error("{what} has unit {unit:?}; Yilian understands {expected}")]
    UnsupportedUnit {
        /// Which quantity.
        what: String,
        /// The unit as written.
        unit: String,
        /// The units accepted.
        expected: &'static str,
    },
    /// A lead sequence value type the reader does not decode.
    #[error("lead {lead}: value type {value_type:?} is not supported (only SLIST_PQ and SLIST_INT)")]
    UnsupportedValueType {
        /// The lead.
        lead: String,
        /// The `xsi:type` found.
        value_type: String,
    },
    /// No rhythm leads and no representative beat in the document.
    #[error("the document has no RHYTHM series and no REPRESENTATIVE_BEAT with lead sequences")]
    NoWaveforms,
}

/// A recording could not be written as aECG.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AecgWriteError {
    /// Nothing to write.
    #[error("the recording has no leads and no median beat")]
    NoLeads,
    /// A lead with a sample rate of 0.
    #[error("lead {lead} has sample rate 0")]
    ZeroRate {
        /// The lead.
        lead: String,
    },
    /// A lead whose resolution is not a positive finite number of nV.
    #[error("lead {lead} has resolution {resolution_nv} nV, which is not positive and finite")]
    BadResolution {
        /// The lead.
        lead: String,
        /// The resolution found.
        resolution_nv: f64,
    },
    /// A measurement value that is not finite.
    #[error("measurement {name} has value {value}, which is not finite")]
    BadMeasurement {
        /// The measurement.
        name: String,
        /// The value found.
        value: f64,
    },
    /// The XML writer failed (it writes to memory, so this means a bug).
    #[error("XML writer: {0}")]
    Xml(#[from] std::io::Error),
}
