//! Section 1: patient and acquisition fields (tag u8, length u16, value; tag 255 ends).
//!
//! Tags used (EN 1064 §5.4.3): 0 last name, 1 first name, 2 patient id, 3 second last name,
//! 4 age (u16 + unit), 5 date of birth, 8 sex, 13 referral indication, 14 acquiring device
//! (its byte 16 is the language support code that names the text charset), 25/26 acquisition
//! date/time, 30 free text.

use encoding_rs::Encoding;
use jiff::civil::{Date, DateTime, Time};

use super::cursor::le_u16;
use crate::recording::{Patient, Sex};

/// Tag numbers.
pub(super) mod tag {
    pub const LAST_NAME: u8 = 0;
    pub const FIRST_NAME: u8 = 1;
    pub const PATIENT_ID: u8 = 2;
    pub const SECOND_LAST_NAME: u8 = 3;
    pub const AGE: u8 = 4;
    pub const BIRTH_DATE: u8 = 5;
    pub const SEX: u8 = 8;
    pub const REFERRAL: u8 = 13;
    pub const ACQUIRING_DEVICE: u8 = 14;
    pub const DATE: u8 = 25;
    pub const TIME: u8 = 26;
    pub const FREE_TEXT: u8 = 30;
    pub const END: u8 = 255;
}

/// Offset of the language support code in tag 14.
pub(super) const LANGUAGE_AT: usize = 16;

/// Language support codes Yilian writes.
pub(super) mod language {
    pub const ASCII: u8 = 0x00;
    pub const LATIN1: u8 = 0x01;
    pub const GB2312: u8 = 0x27;
}

/// Manufacturer codes of tag 14 byte 7 (EN 1064 Annex).
const MANUFACTURERS: &[(u8, &str)] = &[
    (1, "Burdick"),
    (2, "Cambridge Heart"),
    (3, "CompuMed"),
    (4, "Datamed"),
    (5, "Fukuda Denshi"),
    (6, "Hewlett-Packard"),
    (7, "Marquette Electronics"),
    (8, "Mortara Instrument"),
    (9, "Nihon Kohden"),
    (10, "Okin"),
    (11, "Quinton"),
    (12, "Siemens"),
    (13, "Spacelabs"),
    (14, "Telemed"),
    (15, "Hellige"),
    (16, "ESA-OTE"),
    (17, "Schiller"),
    (18, "Picker-Schwarzer"),
    (19, "Elettronica-Trentina"),
    (20, "Zwönitz"),
];

/// What Section 1 says.
#[derive(Debug, Default)]
pub(super) struct Demographics {
    /// Patient fields.
    pub patient: Patient,
    /// Acquisition date and time (tags 25/26).
    pub acquired_at: Option<DateTime>,
    /// Manufacturer and model (tag 14).
    pub device: String,
    /// Referral indication and free text (tags 13 and 30).
    pub question: Option<String>,
    /// SCP protocol revision of the acquiring device (tag 14 byte 14), e.g. 20.
    pub device_protocol: Option<u8>,
    /// Language support code (tag 14 byte 16), for the text of Sections 8 and 11.
    pub language: u8,
}

/// Reads Section 1; problems with single fields become warnings, never errors.
pub(super) fn parse(body: &[u8], warnings: &mut Vec<String>) -> Demographics {
    let fields = fields(body, warnings);
    let language = fields
        .iter()
        .find(|(t, _)| *t == tag::ACQUIRING_DEVICE)
        .and_then(|(_, v)| v.get(LANGUAGE_AT).copied())
        .unwrap_or(language::ASCII);
    let mut text = TextDecoder::new(language);
    let mut d = Demographics { language, ..Demographics::default() };
    let mut last = String::new();
    let mut first = String::new();
    let mut second_last = String::new();
    let mut notes = Vec::new();
    let mut date = None;
    let mut time = None;
    for &(t, value) in &fields {
        match t {
            tag::LAST_NAME => last = text.decode(value, warnings),
            tag::FIRST_NAME => first = text.decode(value, warnings),
            tag::SECOND_LAST_NAME => second_last = text.decode(value, warnings),
            tag::PATIENT_ID => d.patient.id = text.decode(value, warnings),
            tag::AGE => d.patient.age_years = age_years(value),
            tag::BIRTH_DATE => d.patient.birth_date = date_of(value, "date of birth", warnings),
            tag::SEX => {
                d.patient.sex = match value.first() {
                    Some(1) => Sex::Male,
                    Some(2) => Sex::Female,
                    _ => Sex::Unknown,
                }
            }
            tag::REFERRAL | tag::FREE_TEXT => {
                let s = text.decode(value, warnings);
                if !s.is_empty() {
                    notes.push(s);
                }
            }
            tag::ACQUIRING_DEVICE => {
                d.device = device(value, &mut text, warnings);
                d.device_protocol = value.get(14).copied().filter(|&v| v != 0);
            }
            tag::DATE => date = date_of(value, "acquisition date", warnings),
            tag::TIME => time = time_of(value, warnings),
            _ => {}
        }
    }
    let family = [last, second_last].into_iter().filter(|s| !s.is_empty()).collect::<Vec<_>>().join(" ");
    d.patient.name = join_name(&family, &first);
    d.acquired_at = date.map(|day: Date| day.to_datetime(time.unwrap_or(Time::midnight())));
    if !notes.is_empty() {
        d.question = Some(notes.join("\n"));
    }
    d
}

/// The (tag, value) pairs up to the terminator.
fn fields<'a>(body: &'a [u8], warnings: &mut Vec<String>) -> Vec<(u8, &'a [u8])> {
    let mut out = Vec::new();
    let mut at = 0usize;
    while let Some(&t) = body.get(at) {
        if t == tag::END {
            return out;
        }
        let Some(len) = le_u16(body, at + 1) else {
            warnings.push(format!("SCP-ECG Section 1 ends inside tag {t}; later fields are missing"));
            return out;
        };
        let start = at + 3;
        let Some(value) = body.get(start..start + usize::from(len)) else {
            warnings.push(format!(
                "SCP-ECG Section 1 tag {t} says {len} bytes, the section ends first; later fields are missing"
            ));
            return out;
        };
        out.push((t, value));
        at = start + usize::from(len);
    }
    warnings.push("SCP-ECG Section 1 has no terminator tag 255".into());
    out
}

/// "Family Given", or "家名" with no space for CJK names (the way Chinese names are written).
fn join_name(family: &str, given: &str) -> String {
    match (family.is_empty(), given.is_empty()) {
        (true, _) => given.to_string(),
        (false, true) => family.to_string(),
        (false, false) if is_cjk(family) || is_cjk(given) => format!("{family}{given}"),
        (false, false) => format!("{family} {given}"),
    }
}

fn is_cjk(s: &str) -> bool {
    s.chars().any(|c| matches!(c, '\u{2E80}'..='\u{9FFF}' | '\u{F900}'..='\u{FAFF}' | '\u{20000}'..='\u{2FA1F}'))
}

/// Decodes text fields in the charset the file declares.
pub(super) struct TextDecoder {
    language: u8,
    warned: bool,
}

impl TextDecoder {
    /// A decoder for a language support code.
    pub(super) fn new(language: u8) -> Self {
        Self { language, warned: false }
    }

    /// The text of a NUL-terminated field, control characters removed and trimmed.
    pub(super) fn decode(&mut self, value: &[u8], warnings: &mut Vec<String>) -> String {
        // Fields are NUL-terminated (and sometimes NUL-padded).
        let end = value.iter().position(|&b| b == 0).unwrap_or(value.len());
        let raw = value.get(..end).unwrap_or_default();
        let text = match declared_encoding(self.language) {
            Some(enc) => enc.decode_without_bom_handling(raw).0.into_owned(),
            None if raw.is_ascii() => String::from_utf8_lossy(raw).into_owned(),
            None => {
                // Declared ASCII (or an unknown code) but the bytes are not: Chinese carts mostly mean GBK.
                let (enc, name) = match std::str::from_utf8(raw) {
                    Ok(_) => (encoding_rs::UTF_8, "UTF-8"),
                    Err(_) => (encoding_rs::GB18030, "GB 18030"),
                };
                if !self.warned {
                    self.warned = true;
                    warnings.push(format!(
                        "SCP-ECG text declares language code 0x{:02X} but holds non-ASCII text; read as {name}",
                        self.language
                    ));
                }
                enc.decode_without_bom_handling(raw).0.into_owned()
            }
        };
        text.chars().filter(|c| !c.is_control()).collect::<String>().trim().to_string()
    }
}

/// The charset of a language support code (tag 14 byte 16); `None` for 8-bit ASCII or unknown codes.
fn declared_encoding(code: u8) -> Option<&'static Encoding> {
    if code & 1 == 0 {
        return None;
    }
    if code & 3 == 1 {
        // ISO 8859-1; WHATWG maps that label to windows-1252, identical for printable text.
        return Some(encoding_rs::WINDOWS_1252);
    }
    Some(match code {
        0x03 => encoding_rs::ISO_8859_2,
        0x0B => encoding_rs::ISO_8859_4,
        0x13 => encoding_rs::ISO_8859_5,
        0x1B => encoding_rs::ISO_8859_6,
        0x23 => encoding_rs::ISO_8859_7,
        0x2B => encoding_rs::ISO_8859_8,
        0x33 => encoding_rs::WINDOWS_874,
        0x3B => encoding_rs::ISO_8859_15,
        0x07 => encoding_rs::UTF_16LE,
        0x0F | 0x17 | 0x1F => encoding_rs::EUC_JP,
        // GB 2312: GB 18030 is its superset, and carts that say GB 2312 often write GBK.
        0x27 => encoding_rs::GB18030,
        0x2F => encoding_rs::EUC_KR,
        _ => return None,
    })
}

/// Tag 4: u16 value and a unit (1 years, 2 months, 3 weeks, 4 days, 5 hours).
fn age_years(value: &[u8]) -> Option<u16> {
    let n = le_u16(value, 0)?;
    let years = match value.get(2)? {
        1 => n,
        2 => n / 12,
        3 => n / 52,
        4 => n / 365,
        5 => 0,
        _ => return None,
    };
    (n != 0).then_some(years)
}

/// A 4-byte SCP date (u16 year, u8 month, u8 day); all zero means not given.
fn date_of(value: &[u8], what: &str, warnings: &mut Vec<String>) -> Option<Date> {
    let year = le_u16(value, 0)?;
    let (month, day) = (*value.get(2)?, *value.get(3)?);
    if year == 0 && month == 0 && day == 0 {
        return None;
    }
    let date =
        i16::try_from(year).ok().and_then(|y| Date::new(y, i8::try_from(month).ok()?, i8::try_from(day).ok()?).ok());
    if date.is_none() {
        warnings.push(format!("SCP-ECG Section 1 {what} {year}-{month:02}-{day:02} is not a date; ignored"));
    }
    date
}

/// A 3-byte SCP time (hour, minute, second).
fn time_of(value: &[u8], warnings: &mut Vec<String>) -> Option<Time> {
    let (h, m, s) = (*value.first()?, *value.get(1)?, *value.get(2)?);
    let time = Time::new(i8::try_from(h).ok()?, i8::try_from(m).ok()?, i8::try_from(s).ok()?, 0).ok();
    if time.is_none() {
        warnings.push(format!("SCP-ECG Section 1 acquisition time {h:02}:{m:02}:{s:02} is not a time; ignored"));
    }
    time
}

/// Tag 14 as "Manufacturer Model".
fn device(value: &[u8], text: &mut TextDecoder, warnings: &mut Vec<String>) -> String {
    let model = value.get(8..14).map(|m| text.decode(m, warnings)).unwrap_or_default();
    let code = value.get(7).copied().unwrap_or(0);
    let manufacturer = match MANUFACTURERS.iter().find(|(c, _)| *c == code) {
        Some((_, name)) => (*name).to_string(),
        // Strings after byte 35: analysing program revision (its length is byte 35), serial
        // number, system software, SCP implementation software, manufacturer trade name.
        None => value
            .get(36..)
            .and_then(|rest| rest.split(|&b| b == 0).nth(4))
            .map(|name| text.decode(name, warnings))
            .unwrap_or_default(),
    };
    [manufacturer, model].into_iter().filter(|s| !s.is_empty()).collect::<Vec<_>>().join(" ")
}
