//! Content sniffing: which reader a file needs, decided by its bytes (the name only breaks ties),
//! and for a file no reader takes, a description of what it looks like instead of a guess.

use crate::error::ReadError;
use crate::recording::{ReadOptions, Recording};

/// What a file's bytes look like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Detected {
    /// SCP-ECG record.
    Scp,
    /// DICOM file or dataset.
    Dicom,
    /// HL7 aECG XML.
    Aecg,
    /// A WFDB header (`.hea`); the record's other files are needed too.
    WfdbHeader,
    /// A WFDB signal or annotation file, useless without its header.
    WfdbPart,
    /// Contec ECG90A `.ECG`.
    Contec,
    /// Nothing Yilian reads; the text says what it looks like.
    Unknown(String),
}

/// Looks at the bytes (and, for WFDB parts, the name) to pick a reader.
pub fn detect(name: &str, bytes: &[u8]) -> Detected {
    if is_scp(bytes) {
        return Detected::Scp;
    }
    if is_dicom(bytes) {
        return Detected::Dicom;
    }
    if let Some(root) = xml_root(bytes) {
        if root == "AnnotatedECG" {
            return Detected::Aecg;
        }
        return Detected::Unknown(format!("an XML document with root element <{root}>, not HL7 aECG"));
    }
    let ext = extension(name);
    if ext == "hea" || is_wfdb_header(bytes) {
        return Detected::WfdbHeader;
    }
    if is_contec(bytes) {
        return Detected::Contec;
    }
    if matches!(ext.as_str(), "dat" | "atr" | "xyz" | "qrs" | "pu" | "pu0") {
        return Detected::WfdbPart;
    }
    Detected::Unknown(describe(bytes))
}

/// Reads a single-file cart record of any format Yilian knows. WFDB records span several files:
/// use [`crate::wfdb::read`] for them (this returns an error that says so).
pub fn read(name: &str, bytes: &[u8], opts: &ReadOptions) -> Result<Recording, ReadError> {
    if bytes.len() > opts.limits.max_input_bytes {
        return Err(ReadError::TooLarge { size: bytes.len(), limit: opts.limits.max_input_bytes });
    }
    match detect(name, bytes) {
        Detected::Scp => Ok(crate::scp::read(bytes, opts)?),
        Detected::Dicom => Ok(crate::dicom::read(bytes, opts)?),
        Detected::Aecg => Ok(crate::aecg::read(bytes, opts)?),
        Detected::Contec => Ok(crate::contec::read(bytes, opts)?),
        Detected::WfdbHeader => {
            Err(ReadError::Unrecognised("a WFDB header: read it together with its signal files".into()))
        }
        Detected::WfdbPart => Err(ReadError::Unrecognised(format!(
            "a WFDB signal or annotation file ({}): it needs its .hea header",
            describe(bytes)
        ))),
        Detected::Unknown(what) => Err(ReadError::Unrecognised(what)),
    }
}

fn extension(name: &str) -> String {
    name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase()).unwrap_or_default()
}

fn is_scp(bytes: &[u8]) -> bool {
    // CRC (2), record length (4), then Section 0's 16-byte header with "SCPECG" at its bytes 10..16.
    let Some(len) = bytes.get(2..6).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]])) else {
        return false;
    };
    bytes.get(16..22) == Some(b"SCPECG".as_slice()) && len as usize >= 22
}

fn is_dicom(bytes: &[u8]) -> bool {
    if bytes.get(128..132) == Some(b"DICM".as_slice()) {
        return true;
    }
    // A dataset without preamble starts with a group 0002 or 0008 element, little endian.
    matches!(bytes.get(0..4), Some([0x02, 0x00, _, 0x00]) | Some([0x08, 0x00, 0x05 | 0x08 | 0x16, 0x00]))
        && bytes.len() > 8
}

fn is_wfdb_header(bytes: &[u8]) -> bool {
    // The record line: "name [nseg] nsig fs nsamp ...", after optional comment lines.
    let Ok(text) = std::str::from_utf8(bytes.get(..bytes.len().min(512)).unwrap_or_default()) else {
        return false;
    };
    let Some(line) = text.lines().map(str::trim).find(|l| !l.is_empty() && !l.starts_with('#')) else {
        return false;
    };
    let f: Vec<&str> = line.split_whitespace().collect();
    f.len() >= 2
        && f[0].chars().all(|c| c.is_ascii_alphanumeric() || "_-/.".contains(c))
        && f[1].split('/').next().is_some_and(|n| n.parse::<u32>().is_ok())
        && f.get(2).is_none_or(|fs| fs.split(['/', '(']).next().is_some_and(|v| v.parse::<f64>().is_ok()))
}

fn is_contec(bytes: &[u8]) -> bool {
    let Some(stamp) = bytes.get(10..29) else { return false };
    let shape = b"dddd-dd-dd dd:dd:dd";
    bytes.len() >= 80
        && (bytes.len() - 80).is_multiple_of(16)
        && stamp.iter().zip(shape).all(|(&c, &s)| if s == b'd' { c.is_ascii_digit() } else { c == s })
}

/// The root element's name of an XML document, if the bytes are XML.
fn xml_root(bytes: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(bytes.get(..bytes.len().min(64 * 1024))?);
    let mut rest = text.trim_start_matches('\u{feff}').trim_start();
    if !rest.starts_with('<') {
        return None;
    }
    loop {
        rest = rest.trim_start();
        if let Some(r) = rest.strip_prefix("<?") {
            rest = r.split_once("?>")?.1;
        } else if let Some(r) = rest.strip_prefix("<!--") {
            rest = r.split_once("-->")?.1;
        } else if let Some(r) = rest.strip_prefix("<!") {
            rest = r.split_once('>')?.1;
        } else if let Some(r) = rest.strip_prefix('<') {
            let name: String = r.chars().take_while(|c| !c.is_whitespace() && *c != '>' && *c != '/').collect();
            let local = name.rsplit(':').next().unwrap_or_default().to_string();
            return (!local.is_empty()).then_some(local);
        } else {
            return None;
        }
    }
}

/// A short description of bytes no reader takes: a known signature, or the first bytes.
pub fn describe(bytes: &[u8]) -> String {
    const SIGNATURES: &[(&[u8], &str)] = &[
        (b"%PDF", "a PDF document"),
        (b"PK\x03\x04", "a ZIP archive (unpack it and drop the files inside)"),
        (b"\x1f\x8b", "a gzip archive"),
        (b"\x89PNG", "a PNG image"),
        (b"\xff\xd8\xff", "a JPEG image"),
        (b"GIF8", "a GIF image"),
        (b"BM", "a BMP image"),
        (b"MZ", "a Windows program"),
        (b"\xd0\xcf\x11\xe0", "a Microsoft Office (OLE) document"),
        (b"Rar!", "a RAR archive"),
    ];
    if bytes.is_empty() {
        return "an empty file".into();
    }
    for (sig, what) in SIGNATURES {
        if bytes.starts_with(sig) {
            return format!("{what}, {} bytes", bytes.len());
        }
    }
    let head = &bytes[..bytes.len().min(16)];
    let hex: Vec<String> = head.iter().map(|b| format!("{b:02x}")).collect();
    let text = std::str::from_utf8(bytes.get(..bytes.len().min(256)).unwrap_or_default()).ok();
    match text {
        Some(t) if t.chars().all(|c| !c.is_control() || c.is_whitespace()) => {
            let first = t.lines().next().unwrap_or_default();
            let first: String = first.chars().take(60).collect();
            format!("a text file, {} bytes, starting {first:?}", bytes.len())
        }
        _ => format!("unknown binary data, {} bytes, starting {}", bytes.len(), hex.join(" ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_files_are_described_not_guessed() {
        assert_eq!(
            detect("x.xml", b"<?xml version=\"1.0\"?>\n<!-- c -->\n<CardiologyXML a=\"1\">"),
            Detected::Unknown("an XML document with root element <CardiologyXML>, not HL7 aECG".into())
        );
        assert_eq!(
            detect("a.xml", b"<?xml version = \"1.0\"?><n:AnnotatedECG xmlns:n=\"urn:hl7-org:v3\">"),
            Detected::Aecg
        );
        assert!(matches!(detect("r.pdf", b"%PDF-1.4 ..."), Detected::Unknown(s) if s.contains("PDF")));
        assert!(matches!(detect("r.bin", &[0u8, 1, 2, 3]), Detected::Unknown(s) if s.contains("00 01 02 03")));
        assert_eq!(
            detect("100.hea", b"100 2 360 650000\r\n100.dat 212 200 11 1024 995 -22131 0 MLII\r\n"),
            Detected::WfdbHeader
        );
        assert_eq!(detect("100.dat", &[0xe3, 0x33, 0xf3]), Detected::WfdbPart);
        assert!(
            matches!(read("e.bin", b"", &ReadOptions::default()), Err(ReadError::Unrecognised(s)) if s == "an empty file")
        );
    }
}
