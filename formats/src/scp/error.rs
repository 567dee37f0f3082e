//! What can go wrong reading or writing SCP-ECG.

/// A SCP-ECG file could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScpError {
    /// Larger than the reader's input limit.
    #[error("file is {size} bytes, the limit is {limit}")]
    TooLarge {
        /// Size of the input.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// Too short to hold the record header and Section 0.
    #[error("file is {len} bytes, too short for a SCP-ECG record (at least 22)")]
    TooShort {
        /// Size of the input.
        len: usize,
    },
    /// The record length at bytes 2..6 disagrees with the bytes present.
    #[error("record length says {declared} bytes, the file has {actual}")]
    RecordLength {
        /// Length stated in the record header.
        declared: u64,
        /// Bytes present.
        actual: usize,
    },
    /// The CRC over the whole record does not match.
    #[error("record CRC is 0x{stored:04X}, the bytes give 0x{computed:04X}")]
    RecordCrc {
        /// CRC stored at bytes 0..2.
        stored: u16,
        /// CRC computed over bytes 2..end.
        computed: u16,
    },
    /// A section's CRC does not match.
    #[error("Section {section} CRC is 0x{stored:04X}, the bytes give 0x{computed:04X}")]
    SectionCrc {
        /// Section id.
        section: u16,
        /// CRC stored in the section header.
        stored: u16,
        /// CRC computed over the section from its byte 2.
        computed: u16,
    },
    /// Section 0 points outside the record, or a section header disagrees with its pointer.
    #[error("Section {section}: {reason}")]
    BadSection {
        /// Section id.
        section: u16,
        /// What is wrong.
        reason: String,
    },
    /// A field runs past the end of its section.
    #[error("Section {section} ends before {what} (at byte {offset} of the section)")]
    Truncated {
        /// Section id.
        section: u16,
        /// Byte offset inside the section where the field starts.
        offset: usize,
        /// The field that was being read.
        what: &'static str,
    },
    /// A section the data needs is absent.
    #[error("Section {section} is missing, {needed_for} needs it")]
    MissingSection {
        /// Section id.
        section: u16,
        /// What needs it.
        needed_for: &'static str,
    },
    /// A valid SCP-ECG feature Yilian does not decode.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// More leads than the reader's limit.
    #[error("Section {section} declares {count} leads, the limit is {limit}")]
    TooManyLeads {
        /// Section id.
        section: u16,
        /// Leads declared.
        count: usize,
        /// The limit.
        limit: usize,
    },
    /// More samples in a lead than the reader's limit.
    #[error("lead {lead} has {count} samples, the limit is {limit}")]
    TooManySamples {
        /// Lead name.
        lead: String,
        /// Samples declared.
        count: u64,
        /// The limit.
        limit: usize,
    },
    /// Section 2 holds a Huffman table that cannot be used.
    #[error("Section 2 Huffman table {table}: {reason}")]
    HuffmanTable {
        /// 1-based table number.
        table: usize,
        /// What is wrong.
        reason: String,
    },
    /// A lead's bit stream holds a code that is in no Huffman table.
    #[error("Section {section} lead {lead}: no Huffman code matches the bits at bit {bit}")]
    HuffmanCode {
        /// Section id (5 or 6).
        section: u16,
        /// Lead name.
        lead: String,
        /// Bit offset into the lead's data.
        bit: u64,
    },
    /// Undoing the difference encoding gives a value no 32-bit sample can hold.
    #[error("Section {section} lead {lead}: sample {index} overflows")]
    SampleOverflow {
        /// Section id.
        section: u16,
        /// Lead name.
        lead: String,
        /// 0-based sample index.
        index: usize,
    },
    /// A field holds a value the standard does not allow and the data cannot be read without.
    #[error("Section {section}: {what} is {value}, which is invalid")]
    InvalidValue {
        /// Section id.
        section: u16,
        /// The field.
        what: &'static str,
        /// Its value.
        value: i64,
    },
}

/// A recording could not be written as SCP-ECG.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScpWriteError {
    /// Nothing to write.
    #[error("the recording has no leads")]
    NoLeads,
    /// SCP-ECG Section 3 holds at most 255 leads.
    #[error("{count} leads, SCP-ECG holds at most 255")]
    TooManyLeads {
        /// Leads in the recording.
        count: usize,
    },
    /// A lead name has no SCP-ECG lead code.
    #[error("lead {0:?} has no SCP-ECG lead code")]
    UnknownLead(String),
    /// Section 5/6 store one rate and one resolution for all their leads.
    #[error("{what}: lead {lead} has {found}, lead {first} has {expected}; SCP-ECG stores one value for all leads")]
    Mixed {
        /// "sample rate" or "resolution".
        what: &'static str,
        /// The first lead.
        first: String,
        /// The first lead's value.
        expected: String,
        /// The differing lead.
        lead: String,
        /// Its value.
        found: String,
    },
    /// SCP-ECG stores the sample interval as whole microseconds (u16).
    #[error("sample rate {0} Hz is not a whole number of microseconds per sample (1..=65535)")]
    Rate(u32),
    /// SCP-ECG stores the amplitude value multiplier as whole nanovolts (u16).
    #[error("resolution {0} nV is not a whole number of nanovolts in 1..=65535")]
    Resolution(f64),
    /// A sample does not fit the 16 bits SCP-ECG Huffman coding carries.
    #[error("lead {lead} sample {index} is {value}, outside the 16-bit range SCP-ECG stores")]
    SampleRange {
        /// Lead name.
        lead: String,
        /// 0-based sample index.
        index: usize,
        /// The value.
        value: i32,
    },
    /// A lead's encoded bytes exceed the u16 byte count of Sections 5/6.
    #[error("lead {lead} encodes to {bytes} bytes, Section {section} counts at most 65535 per lead")]
    LeadTooLong {
        /// Section id.
        section: u16,
        /// Lead name.
        lead: String,
        /// Encoded size.
        bytes: usize,
    },
    /// The median beat does not match the rhythm leads one to one.
    #[error("median beat: {0}")]
    Median(String),
    /// A text field is longer than a u16 length can state.
    #[error("{field} is {len} bytes, longer than a Section 1 field can hold")]
    TextTooLong {
        /// The field.
        field: &'static str,
        /// Encoded length.
        len: usize,
    },
}
