//! Lead names and their SCP-ECG (EN 1064, Section 3 table) codes, as used on the serial link.

/// (SCP-ECG lead code, canonical name) for the leads Yilian names.
const LEADS: &[(u8, &str)] = &[
    (1, "I"),
    (2, "II"),
    (3, "V1"),
    (4, "V2"),
    (5, "V3"),
    (6, "V4"),
    (7, "V5"),
    (8, "V6"),
    (61, "III"),
    (62, "aVR"),
    (63, "aVL"),
    (64, "aVF"),
    (16, "X"),
    (17, "Y"),
    (18, "Z"),
];

/// The standard 12 leads in display order.
pub const STANDARD_12: [&str; 12] = ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"];

/// The canonical name of an SCP-ECG lead code.
pub fn name_of(code: u8) -> Option<&'static str> {
    LEADS.iter().find(|(c, _)| *c == code).map(|(_, n)| *n)
}

/// The SCP-ECG code of a lead name (case-insensitive: "AVR", "avr" and "aVR" all match).
pub fn code_of(name: &str) -> Option<u8> {
    LEADS.iter().find(|(_, n)| n.eq_ignore_ascii_case(name)).map(|(c, _)| *c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_names_agree() {
        for name in STANDARD_12 {
            let code = code_of(name).expect("known");
            assert_eq!(name_of(code), Some(name));
        }
        assert_eq!(code_of("AVR"), Some(62));
        assert_eq!(name_of(200), None);
    }
}
