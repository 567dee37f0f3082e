//! PhysioNet WFDB records: the `.hea` header, signal files (formats 16, 212, and the other
//! simple formats), MIT annotation files, and a format-16 writer.
//!
//! Reference: the WFDB header(5), signal(5) and annot(5) manual pages. Single-segment records
//! with one sample per frame and no skew are read; anything else is a clear [`WfdbError`].
//!
//! ```
//! # use std::collections::BTreeMap;
//! # use yilian_formats::{ReadOptions, wfdb};
//! let hea = b"rec 1 500 2\nrec.dat 16 1000(2)/mV 16 0 3 8 0 ii\n";
//! let files = BTreeMap::from([("rec.dat".to_string(), vec![3, 0, 5, 0])]);
//! let rec = wfdb::read(hea, &files, &ReadOptions::default())?;
//! assert_eq!(rec.leads[0].name, "II");
//! assert_eq!(rec.leads[0].samples, vec![1, 3]);
//! assert_eq!(rec.leads[0].resolution_nv, 1000.0);
//! # Ok::<(), wfdb::WfdbError>(())
//! ```

mod annotation;
mod header;
mod record;
mod signal;
mod write;

pub use annotation::{MitAnnotation, annotations, code_of, symbol, write_annotations};
pub use header::{Header, MAX_SAMPLES, Signal, parse_header};
pub use record::read;
pub use signal::{SUPPORTED_FORMATS, read_signals};
pub use write::write;

/// A WFDB record could not be read.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum WfdbError {
    /// The header's record line or a signal line is malformed.
    #[error("header line {line}: {reason}")]
    Header {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// A signal file format this reader does not implement.
    #[error("signal format {0} is not supported (16, 24, 32, 61, 80, 160 and 212 are)")]
    Format(u32),
    /// A WFDB feature this reader does not implement (multi-segment records, several samples
    /// per frame, skew).
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// The signal file is shorter than the header says.
    #[error("{file}: {got} bytes, header needs {need}")]
    Short {
        /// Signal file.
        file: String,
        /// Bytes present.
        got: usize,
        /// Bytes needed.
        need: usize,
    },
    /// A signal's samples do not add up to the header's checksum.
    #[error("signal {signal} ({description}): checksum {computed} does not match header {stated}")]
    Checksum {
        /// Signal index.
        signal: usize,
        /// Description.
        description: String,
        /// From the header.
        stated: i16,
        /// From the data.
        computed: i16,
    },
    /// More samples than this reader accepts.
    #[error("{0} samples per signal exceeds the limit")]
    TooLong(usize),
    /// More signals than the limit.
    #[error("{count} signals, the limit is {limit}")]
    TooManySignals {
        /// Signals in the header.
        count: usize,
        /// The limit.
        limit: usize,
    },
    /// A file is larger than the limit.
    #[error("{file}: {size} bytes, the limit is {limit}")]
    TooLarge {
        /// File name.
        file: String,
        /// Its size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// A signal file the header names was not given.
    #[error("signal file {0} is missing")]
    MissingFile(String),
    /// The sampling frequency is not a whole number of Hz.
    #[error("sampling frequency {0} Hz is not a whole number")]
    SampleRate(String),
    /// A sample minus its baseline does not fit a 32-bit sample.
    #[error("signal {signal} ({description}): sample {value} minus baseline {baseline} is out of range")]
    SampleRange {
        /// Signal index.
        signal: usize,
        /// Description.
        description: String,
        /// Stored value.
        value: i32,
        /// Baseline.
        baseline: i32,
    },
    /// An annotation file is malformed.
    #[error("annotation file at byte {offset}: {reason}")]
    Annotation {
        /// Byte offset of the word at fault.
        offset: usize,
        /// What is wrong.
        reason: String,
    },
    /// More annotations than the limit.
    #[error("more than {limit} annotations")]
    TooManyAnnotations {
        /// The limit.
        limit: usize,
    },
}

/// A recording could not be written as a WFDB record.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
#[non_exhaustive]
pub enum WfdbWriteError {
    /// WFDB record names are letters, digits and underscores.
    #[error("record name {0:?} is not letters, digits and underscores")]
    RecordName(String),
    /// Nothing to write.
    #[error("the recording has no leads")]
    NoLeads,
    /// One WFDB record has one sampling frequency.
    #[error("lead {lead} is at {rate} Hz but {first_lead} is at {first_rate} Hz; a WFDB record has one rate")]
    MixedRates {
        /// First lead.
        first_lead: String,
        /// Its rate.
        first_rate: u32,
        /// The lead that differs.
        lead: String,
        /// Its rate.
        rate: u32,
    },
    /// One WFDB record has one length per signal.
    #[error("lead {lead} has {len} samples but {first_lead} has {first_len}; a WFDB record has one length")]
    MixedLengths {
        /// First lead.
        first_lead: String,
        /// Its length.
        first_len: usize,
        /// The lead that differs.
        lead: String,
        /// Its length.
        len: usize,
    },
    /// A rate of 0 Hz cannot be written.
    #[error("lead {0} has a sampling rate of 0 Hz")]
    ZeroRate(String),
    /// The resolution gives no usable gain.
    #[error("lead {lead}: resolution {resolution_nv} nV is not a positive finite number")]
    Resolution {
        /// Lead.
        lead: String,
        /// Its resolution.
        resolution_nv: f64,
    },
    /// A lead name that would break the header line or a file name.
    #[error("lead name {0:?} cannot be written in a WFDB header")]
    LeadName(String),
    /// An annotation tied to a lead the recording does not have.
    #[error("annotation at sample {sample} is tied to lead {lead}, which the recording does not have")]
    AnnotationLead {
        /// Sample.
        sample: u64,
        /// Lead named.
        lead: String,
    },
    /// Annotation codes are 1 to 49.
    #[error("annotation at sample {sample}: code {code} cannot be written")]
    AnnotationCode {
        /// Sample.
        sample: u64,
        /// Code.
        code: u8,
    },
    /// A jump between annotations beyond what a SKIP word holds.
    #[error("annotation at sample {sample} is too far from the previous one")]
    AnnotationGap {
        /// Sample.
        sample: u64,
    },
    /// AUX strings are at most 255 bytes.
    #[error("annotation at sample {sample}: text of {len} bytes (255 at most)")]
    AuxTooLong {
        /// Sample.
        sample: u64,
        /// Its length in bytes.
        len: usize,
    },
}

/// True when `bytes` look like a WFDB header: text whose first line that is not a comment is a
/// record line (name, signal count, ...) followed by a signal line with a numeric format.
pub fn looks_like_header(bytes: &[u8]) -> bool {
    let head = bytes.get(..bytes.len().min(4096)).unwrap_or(bytes);
    if head.contains(&0) {
        return false;
    }
    let text = String::from_utf8_lossy(head);
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#'));
    let Some(record) = lines.next() else { return false };
    let f: Vec<&str> = record.split_whitespace().collect();
    let name = f.first().map(|n| n.split('/').next().unwrap_or(n));
    if !name.is_some_and(header::valid_record_name) {
        return false;
    }
    let Some(nsig) = f.get(1).and_then(|n| n.parse::<usize>().ok()) else { return false };
    let rate_ok = f.get(2).is_none_or(|r| r.split('/').next().is_some_and(|r| r.parse::<f64>().is_ok()));
    if !rate_ok || f.len() > 6 {
        return false;
    }
    if nsig == 0 {
        return true;
    }
    let Some(sig) = lines.next() else { return false };
    let s: Vec<&str> = sig.split_whitespace().collect();
    let fmt = s.get(1).map(|f| f.split(['x', ':', '+']).next().unwrap_or(f));
    s.len() >= 2 && fmt.is_some_and(|f| f.parse::<u32>().is_ok())
}

/// The distinct signal files a header names, in the order of first mention.
pub fn signal_files(header: &Header) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for s in &header.signals {
        if !out.contains(&s.file) {
            out.push(s.file.clone());
        }
    }
    out
}

/// The record name on the header's record line.
pub fn record_name(header: &Header) -> &str {
    &header.record
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_sniffing() {
        assert!(looks_like_header(b"100 2 360 650000\r\n100.dat 212 200 11 1024 995 -22131 0 MLII\r\n"));
        assert!(looks_like_header(b"# c\n\ns0010_re 15 1000 38400\ns0010_re.dat 16 2000 16 0 -489 -8337 0 i\n"));
        assert!(looks_like_header(b"multi/3 2 250\nseg_1 100\n"));
        assert!(!looks_like_header(b"hello world\nthis is text\n"));
        assert!(!looks_like_header(b"a,b,c\n1,2,3\n"));
        assert!(!looks_like_header(b"r 1 360\nr.dat\0 16\n"));
        assert!(!looks_like_header(b""));
    }

    #[test]
    fn signal_files_in_order_of_mention() {
        let h = parse_header("r 3 1000 1\nr.dat 16\nr.xyz 16\nr.dat 16\n").expect("header");
        assert_eq!(signal_files(&h), vec!["r.dat", "r.xyz"]);
        assert_eq!(record_name(&h), "r");
    }
}
