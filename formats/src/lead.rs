//! Lead codes of the file formats: DICOM Channel Source codes and HL7 aECG MDC codes, over the one
//! lead table in [`yilian_protocol::lead`] (SCP-ECG codes, which DICOM's CID 3001 schemes `SCPECG`
//! "5.6.3-9-N" and `MDC` "2:N" and aECG's `MDC_ECG_LEAD_<name>` reuse). Readers map by these codes,
//! never by a lead's position in the file.

pub use yilian_protocol::lead::{STANDARD_12, canonical, from_scp, scp_code};

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
    scp_code(name).and_then(from_scp)
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
        assert_eq!(from_scp(200), None);
    }
}
