//! Lead names and the codes each format uses for them.
//!
//! One table, keyed by the SCP-ECG lead code (EN 1064 Section 3), which DICOM (CID 3001,
//! coding schemes `SCPECG` "5.6.3-9-N" and `MDC` "2:N") reuses and HL7 aECG spells as
//! `MDC_ECG_LEAD_<name>`. Readers map by these codes, never by a lead's position in the file.

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

/// The lead of a DICOM Channel Source code: scheme `SCPECG` with value "5.6.3-9-N", or scheme
/// `MDC` with value "2:N" (both carry the SCP-ECG code N).
pub fn from_dicom_code(scheme: &str, value: &str) -> Option<&'static str> {
    let value = value.trim();
    let scheme = scheme.trim();
    let n = if scheme.eq_ignore_ascii_case("SCPECG") {
        value.strip_prefix("5.6.3-9-")?
    } else if scheme.eq_ignore_ascii_case("MDC") {
        value.strip_prefix("2:")?
    } else {
        return None;
    };
    from_scp(n.parse().ok()?)
}

/// The DICOM Channel Source code (scheme `SCPECG` 1.3) for a lead: (code value, code meaning).
pub fn dicom_code(name: &str) -> Option<(String, String)> {
    let code = scp_code(name)?;
    Some((format!("5.6.3-9-{code}"), format!("Lead {}", from_scp(code)?)))
}

/// The lead of an HL7 aECG / IEEE 11073 MDC code such as `MDC_ECG_LEAD_AVR` (case-insensitive).
pub fn from_mdc(code: &str) -> Option<&'static str> {
    let code = code.trim();
    let prefix = "MDC_ECG_LEAD_";
    let head = code.get(..prefix.len())?;
    if !head.eq_ignore_ascii_case(prefix) {
        return None;
    }
    let name = &code[prefix.len()..];
    LEADS.iter().find(|(_, n)| n.eq_ignore_ascii_case(name)).map(|(_, n)| *n)
}

/// The MDC code HL7 aECG uses for a lead, e.g. "MDC_ECG_LEAD_aVR".
pub fn mdc_code(name: &str) -> Option<String> {
    let code = scp_code(name)?;
    let canonical = from_scp(code)?;
    if canonical.starts_with('-') {
        return None;
    }
    Some(format!("MDC_ECG_LEAD_{canonical}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_table_for_every_format() {
        for name in STANDARD_12 {
            let code = scp_code(name).expect("standard lead has a code");
            assert_eq!(from_scp(code), Some(name));
            let (value, _) = dicom_code(name).expect("dicom code");
            assert_eq!(from_dicom_code("SCPECG", &value), Some(name));
            let mdc = mdc_code(name).expect("mdc code");
            assert_eq!(from_mdc(&mdc), Some(name));
            assert_eq!(from_mdc(&mdc.to_ascii_uppercase()), Some(name));
        }
        assert_eq!(from_dicom_code("SCPECG", "5.6.3-9-61"), Some("III"));
        assert_eq!(from_dicom_code("MDC", "2:62"), Some("aVR"));
        assert_eq!(from_mdc("MDC_ECG_LEAD_AVR"), Some("aVR"));
        assert_eq!(canonical("avf"), "aVF");
        assert_eq!(canonical("MLII"), "MLII");
        assert_eq!(from_scp(200), None);
    }
}
