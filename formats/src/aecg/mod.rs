//! HL7 v3 annotated ECG (aECG, `PORT_MT020001`) reader and writer.
//!
//! The reader streams the XML with `quick-xml` (no DOM): a 10 s, 12-lead aECG is half a megabyte of
//! digits, and a long rhythm strip is far more. It keeps a small context (which series, sequence
//! set, sequence, annotation it is in) and turns each element into part of the [`Recording`]:
//! rhythm `series` → leads, `derivedSeries` `REPRESENTATIVE_BEAT` → median beat, global
//! measurement annotations → measurements, rhythm and interpretation statements → interpretation.
//!
//! [`Recording`]: crate::recording::Recording

mod error;
mod read;
mod text;
mod write;

pub use error::{AecgError, AecgWriteError};
pub use read::read;
pub use write::write;

use quick_xml::events::Event;
use quick_xml::reader::Reader;

/// The HL7 v3 namespace every aECG document is in.
pub const NAMESPACE: &str = "urn:hl7-org:v3";

/// The name of an aECG document's root element.
const ROOT: &str = "AnnotatedECG";

/// MDC codes of the global measurements, with the name Yilian gives each.
const MEASUREMENTS: &[(&str, &str)] = &[
    ("MDC_ECG_TIME_PD_P", "P"),
    ("MDC_ECG_TIME_PD_PR", "PR"),
    ("MDC_ECG_TIME_PD_QRS", "QRS"),
    ("MDC_ECG_TIME_PD_QT", "QT"),
    ("MDC_ECG_TIME_PD_QTc", "QTc"),
    ("MDC_ECG_TIME_PD_RR", "RR"),
    ("MDC_ECG_TIME_PD_PP", "PP"),
    ("MDC_ECG_ANGLE_P_FRONT", "P axis"),
    ("MDC_ECG_ANGLE_QRS_FRONT", "QRS axis"),
    ("MDC_ECG_ANGLE_T_FRONT", "T axis"),
    ("MDC_ECG_HEART_RATE", "Heart rate"),
];

/// The measurement name of an MDC code (case-insensitive), if it is one Yilian names.
fn measurement_name(code: &str) -> Option<&'static str> {
    MEASUREMENTS.iter().find(|(c, _)| c.eq_ignore_ascii_case(code.trim())).map(|(_, n)| *n)
}

/// The MDC code of a measurement name, if it has one.
fn measurement_code(name: &str) -> Option<&'static str> {
    MEASUREMENTS.iter().find(|(_, n)| n.eq_ignore_ascii_case(name.trim())).map(|(c, _)| *c)
}

/// True when `bytes` are an XML document whose root element is `AnnotatedECG`.
pub fn looks_like(bytes: &[u8]) -> bool {
    root_element(bytes).is_some_and(|name| name == ROOT)
}

/// The local name (without prefix) of the root element of any XML document, or `None` when the
/// bytes are not XML up to their first element.
///
/// Only the prolog is parsed, so this is cheap on large files; the caller can say "XML with root
/// element <CardiologyXML>" for a cart file no reader knows.
pub fn root_element(bytes: &[u8]) -> Option<String> {
    // The prolog is all ASCII in every encoding Yilian meets except UTF-16, which is decoded first.
    let head = bytes.get(..bytes.len().min(1 << 20)).unwrap_or(bytes);
    let decoded;
    let head: &[u8] = match encoding_rs::Encoding::for_bom(head) {
        Some((enc, bom)) if enc != encoding_rs::UTF_8 => {
            decoded = enc.decode_without_bom_handling(head.get(bom..).unwrap_or_default()).0.into_owned();
            decoded.as_bytes()
        }
        Some((_, bom)) => head.get(bom..).unwrap_or_default(),
        None => head,
    };
    let mut reader = Reader::from_reader(head);
    loop {
        match reader.read_event() {
            Ok(Event::Start(e) | Event::Empty(e)) => {
                return std::str::from_utf8(e.local_name().as_ref()).ok().map(str::to_string);
            }
            Ok(Event::Text(t)) if t.iter().all(u8::is_ascii_whitespace) => {}
            Ok(Event::Decl(_) | Event::Comment(_) | Event::PI(_) | Event::DocType(_)) => {}
            _ => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_element_skips_the_prolog_and_drops_the_prefix() {
        let xml = b"<?xml version = \"1.0\" encoding = \"UTF-8\"?>\r\n<!-- c -->\n<v3:AnnotatedECG xmlns:v3=\"urn:hl7-org:v3\">";
        assert_eq!(root_element(xml).as_deref(), Some("AnnotatedECG"));
        assert!(looks_like(xml));
        assert_eq!(root_element(b"<CardiologyXML/>").as_deref(), Some("CardiologyXML"));
        assert!(!looks_like(b"<CardiologyXML/>"));
        assert_eq!(root_element(b"MZ\x90\x00"), None);
        assert_eq!(root_element(b""), None);
    }

    #[test]
    fn root_element_reads_utf16_with_a_bom() {
        let mut bytes = vec![0xFF, 0xFE];
        for unit in "<?xml version=\"1.0\" encoding=\"UTF-16\"?><AnnotatedECG/>".encode_utf16() {
            bytes.extend_from_slice(&unit.to_le_bytes());
        }
        assert!(looks_like(&bytes));
    }

    #[test]
    fn measurement_codes_map_both_ways() {
        assert_eq!(measurement_name("MDC_ECG_TIME_PD_QTC"), Some("QTc"));
        assert_eq!(measurement_code("Heart rate"), Some("MDC_ECG_HEART_RATE"));
        assert_eq!(measurement_name("MDC_ECG_WAVC"), None);
    }
}
