//! The HL7 v2.5.1 ORU^R01 the hub sends the HIS for each signed report: patient, order,
//! the cart's measurements with UCUM units, the specialist's findings and conclusion.

use crate::store::StudyRow;
use yilian_protocol::message::{Measurement, Report};

/// The character set of messages to the HIS (MSH-18).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Charset {
    /// UTF-8 (`UNICODE UTF-8`).
    Utf8,
    /// GB 18030, a superset of GBK, which many Chinese HIS use (`GB 18030-2000`).
    Gb18030,
}

impl Charset {
    /// Parses `utf-8` or `gb18030` (also `gbk`, which GB 18030 covers).
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().replace('_', "-").as_str() {
            "utf-8" | "utf8" => Some(Charset::Utf8),
            "gb18030" | "gb-18030" | "gbk" => Some(Charset::Gb18030),
            _ => None,
        }
    }

    /// The MSH-18 value (HL7 table 0211).
    pub fn msh18(self) -> &'static str {
        match self {
            Charset::Utf8 => "UNICODE UTF-8",
            Charset::Gb18030 => "GB 18030-2000",
        }
    }

    /// The message's bytes on the wire.
    pub fn encode(self, text: &str) -> Vec<u8> {
        match self {
            Charset::Utf8 => text.as_bytes().to_vec(),
            Charset::Gb18030 => encoding_rs::GB18030.encode(text).0.into_owned(),
        }
    }

    /// Text from the wire (an ACK); undecodable bytes become U+FFFD.
    pub fn decode(self, bytes: &[u8]) -> String {
        match self {
            Charset::Utf8 => String::from_utf8_lossy(bytes).into_owned(),
            Charset::Gb18030 => encoding_rs::GB18030.decode(bytes).0.into_owned(),
        }
    }
}

/// Escapes text for a field: the separators and the escape character itself (`| ^ ~ \ &`), and
/// line breaks as `\.br\` (formatted text).
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push_str("\\E\\"),
            '|' => out.push_str("\\F\\"),
            '^' => out.push_str("\\S\\"),
            '~' => out.push_str("\\R\\"),
            '&' => out.push_str("\\T\\"),
            '\r' => {
                if chars.peek() == Some(&'\n') {
                    chars.next();
                }
                out.push_str("\\.br\\");
            }
            '\n' => out.push_str("\\.br\\"),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// Undoes [`escape`] on a raw field value (`\.br\` and `\X0D\` become line breaks; unknown
/// sequences are kept as they are). Used instead of hl7-parser's decoding display, which slices
/// by character index and panics on text with multi-byte characters before an escape.
pub fn unescape(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(start) = rest.find('\\') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        let Some(end) = after.find('\\') else {
            out.push_str(&rest[start..]);
            return out;
        };
        match &after[..end] {
            "F" => out.push('|'),
            "S" => out.push('^'),
            "R" => out.push('~'),
            "T" => out.push('&'),
            "E" => out.push('\\'),
            ".br" | "X0D" | "X0A" | "X0D0A" => out.push('\n'),
            other => {
                out.push('\\');
                out.push_str(other);
                out.push('\\');
            }
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

/// The message control id of a report's message: the same on every retry, so the HIS can
/// recognise a repeat (MSH-10, at most 20 characters).
pub fn control_id(report_id: &str) -> String {
    let clean: String = report_id.chars().filter(char::is_ascii_alphanumeric).collect();
    let id = format!("YL{clean}");
    id.chars().take(20).collect()
}

/// HL7 date-time at China Standard Time, `YYYYMMDDHHMMSS+0800`.
pub fn timestamp(ms: i64) -> String {
    crate::export::local_format(ms, "%Y%m%d%H%M%S+0800")
}

/// One reported measurement: LOINC code, its display name, value and UCUM unit.
#[derive(Debug, Clone, PartialEq)]
pub struct Vital {
    /// LOINC code.
    pub loinc: &'static str,
    /// LOINC display name.
    pub name: &'static str,
    /// The value, in `unit`.
    pub value: f64,
    /// UCUM unit.
    pub unit: &'static str,
}

/// Heart rate (given, or from the RR interval), PR, QRS, QT and QTc from the cart's
/// measurements, in /min and ms. Intervals given in seconds are converted.
pub fn vitals(measurements: &[Measurement]) -> Vec<Vital> {
    let ms = |names: &[&str]| {
        measurements.iter().find(|m| names.iter().any(|n| m.name.eq_ignore_ascii_case(n))).and_then(|m| {
            match m.unit.as_str() {
                "ms" => Some(m.value),
                "s" => Some(m.value * 1000.0),
                _ => None,
            }
        })
    };
    let rate = measurements
        .iter()
        .find(|m| ["Heart rate", "HR", "Ventricular rate", "Vent rate"].iter().any(|n| m.name.eq_ignore_ascii_case(n)))
        .filter(|m| m.unit == "/min" || m.unit.eq_ignore_ascii_case("bpm"))
        .map(|m| m.value)
        .or_else(|| ms(&["RR"]).filter(|rr| *rr > 0.0).map(|rr| (60_000.0 / rr).round()));
    let mut out = Vec::new();
    if let Some(v) = rate {
        out.push(Vital { loinc: "8867-4", name: "Heart rate", value: v, unit: "/min" });
    }
    for (names, loinc, name) in [
        (&["PR", "PR interval"][..], "8625-6", "P-R Interval"),
        (&["QRS", "QRS duration"][..], "8633-0", "QRS duration"),
        (&["QT", "QT interval"][..], "8634-8", "Q-T interval"),
        (&["QTc", "QTc interval"][..], "8636-3", "Q-T interval corrected"),
    ] {
        if let Some(v) = ms(names) {
            out.push(Vital { loinc, name, value: v, unit: "ms" });
        }
    }
    out
}

/// Who sends and who receives (MSH-3 to MSH-6).
#[derive(Debug, Clone)]
pub struct Parties {
    /// MSH-4: the hub's id (the lead hospital's ECG centre).
    pub sending_facility: String,
    /// MSH-5.
    pub receiving_application: String,
    /// MSH-6.
    pub receiving_facility: String,
}

fn num(v: f64) -> String {
    if v.fract() == 0.0 { format!("{v:.0}") } else { format!("{v}") }
}

fn sex(s: &str) -> &'static str {
    match s {
        "female" => "F",
        "male" => "M",
        _ => "U",
    }
}

/// What MSH says about one message besides its parties.
#[derive(Debug, Clone, Copy)]
pub struct Envelope<'a> {
    /// Who sends and receives.
    pub parties: &'a Parties,
    /// MSH-18.
    pub charset: Charset,
    /// MSH-10.
    pub control_id: &'a str,
    /// MSH-7, Unix ms.
    pub now_ms: i64,
}

/// The ORU^R01 of `report` on `study` (text; [`Charset::encode`] makes the wire bytes).
/// Segments end with a carriage return, as HL7 requires.
pub fn oru_r01(
    msh: Envelope<'_>,
    study: &StudyRow,
    measurements: &[Measurement],
    report: &Report,
    pdf: Option<&[u8]>,
) -> String {
    let e = escape;
    let reported = timestamp(report.reported_at_ms);
    let birth = study.birth_date.as_deref().map(|d| d.replace('-', "")).unwrap_or_default();
    let mut segs = vec![
        format!(
            "MSH|^~\\&|YILIAN|{}|{}|{}|{}||ORU^R01^ORU_R01|{}|P|2.5.1|||AL|NE||{}",
            e(&msh.parties.sending_facility),
            e(&msh.parties.receiving_application),
            e(&msh.parties.receiving_facility),
            timestamp(msh.now_ms),
            e(msh.control_id),
            msh.charset.msh18()
        ),
        format!(
            "PID|1||{}^^^{}^PI||{}||{birth}|{}",
            e(&study.patient_id),
            e(&study.site_id),
            e(&study.patient_name),
            sex(&study.sex)
        ),
        format!("PV1|1|O|{}", e(&study.site_id)),
        format!("ORC|RE|{}|{}||CM", e(&study.study_uid), e(&report.report_id)),
        format!(
            "OBR|1|{}|{}|11524-6^EKG study^LN|||{}|||||||||||||||{reported}|||F|||||||{}&{}",
            e(&study.study_uid),
            e(&report.report_id),
            timestamp(study.acquired_at_ms),
            e(&report.specialist_id),
            e(&report.specialist_name)
        ),
    ];
    let mut n = 0;
    let mut obx = |body: String| {
        n += 1;
        segs.push(format!("OBX|{n}|{body}"));
    };
    for v in vitals(measurements) {
        obx(format!("NM|{}^{}^LN||{}|{}^{}^UCUM|||||F|||{}", v.loinc, v.name, num(v.value), v.unit, v.unit, reported));
    }
    if !study.question.is_empty() {
        obx(format!("FT|QUESTION^Clinic's question^L||{}||||||F", e(&study.question)));
    }
    obx(format!("FT|18842-5^EKG findings^LN||{}||||||F|||{reported}", e(&report.findings)));
    obx(format!("FT|18844-1^EKG impression^LN||{}||||||F|||{reported}", e(&report.conclusion)));
    if let Some(pdf) = pdf {
        use base64::Engine;
        // ED: ^application^subtype^encoding^data; base64 holds no HL7 delimiter.
        let data = base64::engine::general_purpose::STANDARD.encode(pdf);
        obx(format!("ED|PDF^Report document^L||^AP^PDF^Base64^{data}||||||F|||{reported}"));
    }
    let mut text = segs.join("\r");
    text.push('\r');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn study() -> StudyRow {
        StudyRow {
            study_uid: "cart-1-1764000000000-3-".into(),
            site_id: "xz".into(),
            device_id: "cart-1".into(),
            patient_id: "MZ001001".into(),
            patient_name: "张伟|^~\\&".into(),
            sex: "male".into(),
            birth_date: Some("1960-05-04".into()),
            question: "胸痛2小时\n请排除心梗".into(),
            priority: "stat".into(),
            acquired_at_ms: 1_764_000_000_000,
            received_at_ms: 1_764_000_001_000,
            sample_rate_hz: 500,
            resolution_nv: 1000,
            leads: vec![],
            samples_per_lead: 5000,
            claimed_by: None,
            claim_expires_ms: None,
            report_id: Some("R000007".into()),
            reported_at_ms: Some(1_764_000_100_000),
            delivered_at_ms: None,
            state: "reported".into(),
            preread_flags: vec![],
            priority_sent: None,
        }
    }

    fn report() -> Report {
        Report {
            report_id: "R000007".into(),
            study_uid: "cart-1-1764000000000-3-".into(),
            patient_name: "张伟".into(),
            specialist_id: "li".into(),
            specialist_name: "李医生".into(),
            findings: "窦性心律，心率61次/分。".into(),
            conclusion: "正常心电图 & 无ST段改变".into(),
            reported_at_ms: 1_764_000_100_000,
        }
    }

    fn m(name: &str, value: f64, unit: &str) -> Measurement {
        Measurement { name: name.into(), value, unit: unit.into() }
    }

    #[test]
    fn escaping_covers_every_separator_and_line_breaks() {
        assert_eq!(escape(r"a|b^c~d\e&f"), r"a\F\b\S\c\R\d\E\e\T\f");
        assert_eq!(escape("一\r\n二\n三"), r"一\.br\二\.br\三");
        for text in ["张伟|^~\\&", "一\n二", "无转义", "半个\\X", "\\Zunknown\\"] {
            assert_eq!(unescape(&escape(text)), text);
        }
        assert_eq!(unescape(r"\Zunknown\"), r"\Zunknown\");
    }

    #[test]
    fn measurements_become_loinc_observations_with_units() {
        let v = vitals(&[m("RR", 982.0, "ms"), m("PR", 161.0, "ms"), m("QRS", 0.075, "s"), m("QTc", 370.0, "ms")]);
        let got: Vec<(&str, f64, &str)> = v.iter().map(|v| (v.loinc, v.value, v.unit)).collect();
        assert_eq!(
            got,
            [("8867-4", 61.0, "/min"), ("8625-6", 161.0, "ms"), ("8633-0", 75.0, "ms"), ("8636-3", 370.0, "ms")]
        );
        let v = vitals(&[m("Heart rate", 72.0, "/min"), m("RR", 500.0, "ms")]);
        assert_eq!(v[0].value, 72.0, "a given heart rate wins over the RR interval");
    }

    #[test]
    fn the_message_parses_and_keeps_chinese_text_in_both_charsets() {
        let parties = Parties {
            sending_facility: "COUNTY-ECG".into(),
            receiving_application: "HIS".into(),
            receiving_facility: "县医院".into(),
        };
        let ms = [m("RR", 982.0, "ms"), m("QT", 368.0, "ms")];
        for charset in [Charset::Utf8, Charset::Gb18030] {
            let id = control_id("R000007");
            let msh = Envelope { parties: &parties, charset, control_id: &id, now_ms: 1_764_000_200_000 };
            let text = oru_r01(msh, &study(), &ms, &report(), Some(b"%PDF-1.7"));
            let wire = charset.encode(&text);
            let back = charset.decode(&wire);
            assert_eq!(back, text, "{charset:?} round trip");
            let msg = hl7_parser::Message::parse(&back).expect("parses");
            let field = |seg: &str, n: usize, f: usize| {
                unescape(msg.segment_n(seg, n).expect("segment").field(f).expect("field").raw_value())
            };
            assert_eq!(field("MSH", 1, 10), "YLR000007");
            assert_eq!(field("MSH", 1, 18), charset.msh18());
            assert_eq!(field("PID", 1, 5), "张伟|^~\\&", "the name survives escaping");
            assert_eq!(field("PID", 1, 7), "19600504");
            assert_eq!(field("OBX", 1, 3), "8867-4^Heart rate^LN");
            assert_eq!((field("OBX", 1, 5), field("OBX", 1, 6)), ("61".into(), "/min^/min^UCUM".into()));
            assert_eq!((field("OBX", 2, 5), field("OBX", 2, 6)), ("368".into(), "ms^ms^UCUM".into()));
            assert_eq!(field("OBX", 5, 5), "正常心电图 & 无ST段改变");
            assert_eq!(field("OBX", 6, 5), "^AP^PDF^Base64^JVBERi0xLjc=", "the PDF as an ED value");
            assert!(text.ends_with('\r') && !text.contains('\n'));
        }
    }
}
