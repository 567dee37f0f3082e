//! Coded concepts shared by the reader and the writer: measurements, fiducial points and units.

/// Coding scheme for concepts with no standard code (written by Yilian only).
pub(crate) const PRIVATE_SCHEME: &str = "99YILIAN";

/// A coded concept: (code value, coding scheme, code meaning).
pub(crate) type Code = (&'static str, &'static str, &'static str);

/// (Yilian measurement name, code, default unit). SCP-ECG codes as the Mortara and ECG
/// Toolkit files use them; heart rate as LOINC, as the GE file does.
const MEASUREMENTS: &[(&str, Code, &str)] = &[
    ("RR", ("5.10.2.1-3", "SCPECG", "RR Interval"), "ms"),
    ("PP", ("5.10.2.1-5", "SCPECG", "PP Interval"), "ms"),
    ("PR", ("5.13.5-7", "SCPECG", "PR Interval"), "ms"),
    ("QRS", ("5.13.5-9", "SCPECG", "QRS Duration"), "ms"),
    ("QT", ("5.13.5-11", "SCPECG", "QT Interval"), "ms"),
    ("QTc", ("5.10.2.5-5", "SCPECG", "QTc Interval"), "ms"),
    ("P axis", ("5.10.3-11", "SCPECG", "P Axis"), "deg"),
    ("QRS axis", ("5.10.3-13", "SCPECG", "QRS Axis"), "deg"),
    ("T axis", ("5.10.3-15", "SCPECG", "T Axis"), "deg"),
    ("Heart rate", ("8867-4", "LN", "Heart rate"), "/min"),
];

/// Fiducial points by code meaning.
const FIDUCIALS: &[Code] = &[
    ("5.10.3-1", "SCPECG", "P Onset"),
    ("5.10.3-2", "SCPECG", "P Offset"),
    ("5.10.3-3", "SCPECG", "QRS Onset"),
    ("5.10.3-4", "SCPECG", "QRS Offset"),
    ("5.10.3-5", "SCPECG", "T Offset"),
    ("5.7.1-3", "SCPECG", "Fiducial Point"),
];

/// The Yilian name of a measurement concept (by code, else by meaning), and whether its unit
/// must be degrees.
pub(crate) fn measurement_name(value: &str, scheme: &str, meaning: &str) -> (String, bool) {
    let hit = MEASUREMENTS.iter().find(|(_, (v, s, m), _)| {
        (v.eq_ignore_ascii_case(value.trim()) && s.eq_ignore_ascii_case(scheme.trim()))
            || m.eq_ignore_ascii_case(meaning.trim())
    });
    match hit {
        Some((name, _, unit)) => ((*name).to_string(), *unit == "deg"),
        None => {
            let name = if meaning.trim().is_empty() { value.trim() } else { meaning.trim() };
            (name.to_string(), false)
        }
    }
}

/// The concept to write for a measurement name.
pub(crate) fn measurement_code(name: &str) -> (String, String, String) {
    match MEASUREMENTS.iter().find(|(n, _, _)| n.eq_ignore_ascii_case(name.trim())) {
        Some((_, (v, s, m), _)) => ((*v).into(), (*s).into(), (*m).into()),
        None => private_code(name),
    }
}

/// The concept to write for an annotation label.
pub(crate) fn annotation_code(label: &str) -> (String, String, String) {
    match FIDUCIALS.iter().find(|(_, _, m)| m.eq_ignore_ascii_case(label.trim())) {
        Some((v, s, _)) => ((*v).into(), (*s).into(), label.to_string()),
        None => private_code(label),
    }
}

/// A private concept whose meaning is the label itself; the value is the label cut to the
/// 16 characters of SH.
fn private_code(label: &str) -> (String, String, String) {
    let value: String = label.chars().take(16).collect();
    let value = if value.trim().is_empty() { "UNNAMED".to_string() } else { value };
    (value, PRIVATE_SCHEME.into(), label.to_string())
}

/// Yilian's unit text for a UCUM measurement unit.
pub(crate) fn unit_from_ucum(code: &str) -> String {
    match code.trim() {
        "{H.B.}/min" | "{beats}/min" | "{beat}/min" | "/min" | "bpm" | "1/min" => "/min".into(),
        "°" | "deg" => "deg".into(),
        other => other.into(),
    }
}

/// The UCUM code and meaning to write for a Yilian unit text.
pub(crate) fn unit_to_ucum(unit: &str) -> (String, String) {
    let meaning = match unit {
        "ms" => "milliseconds",
        "deg" => "degrees",
        "/min" => "per minute",
        "uV" => "microvolt",
        "mV" => "millivolt",
        other => other,
    };
    (unit.to_string(), meaning.to_string())
}

/// Powers of ten from a voltage unit to nV, by UCUM code or (failing that) by meaning.
pub(crate) fn volt_power_to_nv(code: &str, meaning: &str) -> Option<i32> {
    let by_code = match code.trim() {
        "nV" => Some(0),
        "uV" | "µV" | "μV" => Some(3),
        "mV" => Some(6),
        "V" => Some(9),
        _ => None,
    };
    by_code.or_else(|| match meaning.trim().to_ascii_lowercase().as_str() {
        "nanovolt" => Some(0),
        "microvolt" => Some(3),
        "millivolt" => Some(6),
        "volt" => Some(9),
        _ => None,
    })
}
