//! Lead names and their SCP-ECG codes (EN 1064 Section 3): one table for the serial link, the
//! cart-file readers and writers, and the viewers. DICOM (CID 3001: schemes `SCPECG`
//! "5.6.3-9-N" and `MDC` "2:N") and HL7 aECG (`MDC_ECG_LEAD_<name>`) reuse the same codes.

/// (SCP-ECG code, canonical name).
const LEADS: &[(u16, &str)] = &[
    (1, "I"),
    (2, "II"),
    (3, "V1"),
    (4, "V2"),
    (5, "V3"),
    (6, "V4"),
    (7, "V5"),
    (8, "V6"),
    (9, "V7"),
    (10, "V2R"),
    (11, "V3R"),
    (12, "V4R"),
    (13, "V5R"),
    (14, "V6R"),
    (15, "V7R"),
    (16, "X"),
    (17, "Y"),
    (18, "Z"),
    (19, "CC5"),
    (20, "CM5"),
    (21, "LA"),
    (22, "RA"),
    (23, "LL"),
    (61, "III"),
    (62, "aVR"),
    (63, "aVL"),
    (64, "aVF"),
    (65, "-aVR"),
    (66, "V8"),
    (67, "V9"),
    (68, "V8R"),
    (69, "V9R"),
    (70, "D"),
    (71, "A"),
    (72, "J"),
];

/// The standard 12 leads in display order.
pub const STANDARD_12: [&str; 12] = ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"];

/// The canonical spelling of a lead name ("AVR" → "aVR"); names Yilian does not know (e.g.
/// WFDB's "MLII") are kept as given.
pub fn canonical(name: &str) -> String {
    let trimmed = name.trim();
    LEADS
        .iter()
        .find(|(_, n)| n.eq_ignore_ascii_case(trimmed))
        .map(|(_, n)| (*n).to_string())
        .unwrap_or_else(|| trimmed.to_string())
}

/// The canonical name of an SCP-ECG lead code.
pub fn from_scp(code: u16) -> Option<&'static str> {
    LEADS.iter().find(|(c, _)| *c == code).map(|(_, n)| *n)
}

/// The SCP-ECG code of a lead name (case-insensitive).
pub fn scp_code(name: &str) -> Option<u16> {
    LEADS.iter().find(|(_, n)| n.eq_ignore_ascii_case(name.trim())).map(|(c, _)| *c)
}

/// The canonical name of a lead code as the serial link carries it (one byte).
pub fn name_of(code: u8) -> Option<&'static str> {
    from_scp(u16::from(code))
}

/// The one-byte serial-link code of a lead name (case-insensitive: "AVR", "avr", "aVR").
pub fn code_of(name: &str) -> Option<u8> {
    scp_code(name).and_then(|c| u8::try_from(c).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_names_agree() {
        for name in STANDARD_12 {
            let code = code_of(name).expect("known");
            assert_eq!(name_of(code), Some(name));
            assert_eq!(from_scp(scp_code(name).expect("code")), Some(name));
        }
        assert_eq!(code_of("AVR"), Some(62));
        assert_eq!(name_of(200), None);
        assert_eq!(canonical("avf"), "aVF");
        assert_eq!(canonical("MLII"), "MLII");
    }
}
