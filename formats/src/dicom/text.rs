//! Text values: character sets dicom-rs does not decode, person names, decimal strings,
//! dates and ages.

use jiff::civil::{Date, DateTime};

/// How the strings dicom-rs returns relate to the file's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Charset {
    /// No Specific Character Set: dicom-rs decoded bytes as ISO 8859-1, one char per byte.
    Undeclared,
    /// dicom-rs decoded the declared charset itself (ISO_IR 100, ISO_IR 192, GB18030, ...).
    Decoded,
    /// GBK / GB2312 (plain or ISO 2022 IR 58), which dicom-rs leaves as ISO 8859-1 chars.
    Chinese,
}

impl Charset {
    /// The charset of a Specific Character Set (0008,0005) value (backslash-separated terms).
    pub(crate) fn from_terms(terms: &str) -> Self {
        let terms: Vec<String> = terms.split('\\').map(|t| t.trim().to_ascii_uppercase()).collect();
        if terms.iter().all(String::is_empty) {
            return Self::Undeclared;
        }
        let chinese = |t: &String| matches!(t.as_str(), "GBK" | "GB2312" | "ISO 2022 IR 58" | "ISO_IR 58");
        if terms.iter().any(chinese) {
            return Self::Chinese;
        }
        Self::Decoded
    }

    /// Re-decodes a string dicom-rs produced, returning the text and a note when it had to guess.
    pub(crate) fn fix(self, s: &str) -> (String, Option<&'static str>) {
        let Some(raw) = latin1_bytes(s) else {
            return (s.to_string(), None);
        };
        if raw.is_ascii() {
            return (s.to_string(), None);
        }
        match self {
            Self::Decoded => (s.to_string(), None),
            Self::Chinese => (gb18030(&strip_iso2022_escapes(&raw)), None),
            Self::Undeclared => match std::str::from_utf8(&raw) {
                Ok(utf8) => (utf8.to_string(), Some("no Specific Character Set is declared; text decoded as UTF-8")),
                Err(_) => (gb18030(&raw), Some("no Specific Character Set is declared; text decoded as GB18030")),
            },
        }
    }
}

/// The bytes behind a string of ISO 8859-1 chars (`None` when a char is above U+00FF).
fn latin1_bytes(s: &str) -> Option<Vec<u8>> {
    s.chars().map(|c| u8::try_from(u32::from(c)).ok()).collect()
}

/// Drops ISO 2022 escape sequences (ESC $ A, ESC ( B, ...), leaving the GB2312 bytes.
fn strip_iso2022_escapes(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while let Some(&b) = raw.get(i) {
        if b == 0x1B {
            // ESC, then intermediate bytes 0x20..=0x2F, then one final byte.
            i += 1;
            while raw.get(i).is_some_and(|c| (0x20..=0x2F).contains(c)) {
                i += 1;
            }
            i += 1;
        } else {
            out.push(b);
            i += 1;
        }
    }
    out
}

fn gb18030(raw: &[u8]) -> String {
    let (text, _, _) = encoding_rs::GB18030.decode(raw);
    text.into_owned()
}

/// A DICOM person name as display text: "Family^Given^Middle^Prefix^Suffix" becomes the
/// non-empty parts joined by spaces (no spaces between Chinese characters). When the name has
/// an ideographic group (after `=`), that is preferred: it is what a Chinese clinic reads.
pub(crate) fn person_name(pn: &str) -> String {
    let groups: Vec<&str> = pn.split('=').collect();
    let group = groups
        .get(1)
        .filter(|g| g.chars().any(|c| c != '^' && !c.is_whitespace()))
        .or_else(|| groups.first())
        .copied()
        .unwrap_or("");
    let parts: Vec<&str> = group.split('^').map(str::trim).filter(|p| !p.is_empty()).collect();
    let cjk = parts.iter().all(|p| p.chars().all(|c| !c.is_ascii()));
    parts.join(if cjk { "" } else { " " })
}

/// A decimal string (DS) as an exact decimal scaled by `10^shift`, correctly rounded to f64.
pub(crate) fn decimal(ds: &str, shift: i32) -> Option<f64> {
    let ds = ds.trim();
    if ds.is_empty() || !ds.bytes().all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'+' | b'e' | b'E')) {
        return None;
    }
    // Parsing "<ds>e<shift>" rounds once from the exact decimal, so "0.00122" mV gives 1220 nV
    // exactly, where 0.00122 * 1e6 in floating point would not.
    let (mantissa, exp) = match ds.find(['e', 'E']) {
        Some(i) => (ds.get(..i)?, ds.get(i + 1..)?.parse::<i32>().ok()?),
        None => (ds, 0),
    };
    let value: f64 = format!("{mantissa}e{}", exp.checked_add(shift)?).parse().ok()?;
    value.is_finite().then_some(value)
}

/// A DA value "YYYYMMDD" (or the old "YYYY.MM.DD").
pub(crate) fn date(da: &str) -> Option<Date> {
    let digits: String = da.trim().chars().filter(|c| *c != '.' && *c != '-').collect();
    let y = digits.get(0..4)?.parse().ok()?;
    let m = digits.get(4..6)?.parse().ok()?;
    let d = digits.get(6..8)?.parse().ok()?;
    if digits.len() != 8 {
        return None;
    }
    Date::new(y, m, d).ok()
}

/// A TM value "HHMMSS.FFFFFF" (minutes and seconds optional; old "HH:MM:SS" accepted) as
/// (hour, minute, second, nanosecond).
pub(crate) fn time(tm: &str) -> Option<(i8, i8, i8, i32)> {
    let tm = tm.trim().replace(':', "");
    let (whole, frac) = match tm.split_once('.') {
        Some((w, f)) => (w.to_string(), f.to_string()),
        None => (tm.clone(), String::new()),
    };
    if whole.len() < 2 || whole.len() > 6 || whole.len() % 2 != 0 || !whole.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let h = whole.get(0..2)?.parse().ok()?;
    let mi = whole.get(2..4).map_or(Some(0), |s| s.parse().ok())?;
    let s = whole.get(4..6).map_or(Some(0), |s| s.parse().ok())?;
    let ns = if frac.is_empty() {
        0
    } else {
        if frac.len() > 6 || !frac.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let padded = format!("{frac:0<9}");
        padded.parse().ok()?
    };
    Some((h, mi, s, ns))
}

/// A DT value "YYYYMMDDHHMMSS.FFFFFF&ZZXX" as civil time (the offset is dropped: the cart's
/// local time is what the ECG centre shows).
pub(crate) fn date_time(dt: &str) -> Option<DateTime> {
    let dt = dt.trim();
    let body = dt.split(['+', '-']).next()?;
    let d = date(body.get(0..8)?)?;
    let rest = body.get(8..).unwrap_or("");
    let (h, mi, s, ns) = if rest.is_empty() { (0, 0, 0, 0) } else { time(rest)? };
    DateTime::new(d.year(), d.month(), d.day(), h, mi, s, ns).ok()
}

/// A date and a time, as civil time.
pub(crate) fn date_and_time(da: &str, tm: Option<&str>) -> Option<DateTime> {
    let d = date(da)?;
    let (h, mi, s, ns) = match tm {
        Some(tm) if !tm.trim().is_empty() => time(tm)?,
        _ => (0, 0, 0, 0),
    };
    DateTime::new(d.year(), d.month(), d.day(), h, mi, s, ns).ok()
}

/// An AS value "042Y" in whole years (months, weeks and days give 0).
pub(crate) fn age_years(age: &str) -> Option<u16> {
    let age = age.trim();
    let (n, unit) = age.split_at_checked(age.len().checked_sub(1)?)?;
    let n: u16 = n.trim().parse().ok()?;
    match unit {
        "Y" | "y" => Some(n),
        "M" | "m" => Some(n / 12),
        "W" | "w" => Some(n / 52),
        "D" | "d" => Some(n / 365),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_strings_scale_exactly() {
        assert_eq!(decimal("0.00122", 6), Some(1220.0));
        assert_eq!(decimal(" 1.25 ", 3), Some(1250.0));
        assert_eq!(decimal("2.5", 3), Some(2500.0));
        assert_eq!(decimal("1.5e-3", 6), Some(1500.0));
        assert_eq!(decimal("abc", 3), None);
        assert_eq!(decimal("", 3), None);
    }

    #[test]
    fn person_names_read_as_people_write_them() {
        assert_eq!(person_name("Patient^Test"), "Patient Test");
        assert_eq!(person_name("Clark"), "Clark");
        assert_eq!(person_name("张^伟"), "张伟");
        assert_eq!(person_name("Zhang^Wei=张^伟=zhang^wei"), "张伟");
        assert_eq!(person_name("OB^^^^"), "OB");
    }

    #[test]
    fn chinese_charsets_dicom_rs_leaves_undecoded_are_decoded() {
        // "张伟" in GBK is d5 c5 ce b0; dicom-rs hands those bytes back as ISO 8859-1 chars.
        let latin1: String = [0xd5u8, 0xc5, 0xce, 0xb0].iter().map(|&b| char::from(b)).collect();
        assert_eq!(Charset::from_terms("GBK").fix(&latin1).0, "张伟");
        let iso2022: String =
            [0x1bu8, b'$', b')', b'A', 0xd5, 0xc5, 0xce, 0xb0].iter().map(|&b| char::from(b)).collect();
        assert_eq!(Charset::from_terms("\\ISO 2022 IR 58").fix(&iso2022).0, "张伟");
        let (text, note) = Charset::from_terms("").fix(&latin1);
        assert_eq!(text, "张伟");
        assert!(note.is_some());
        assert_eq!(Charset::from_terms("ISO_IR 192").fix("张伟").0, "张伟");
        assert_eq!(Charset::from_terms("ISO_IR 100").fix("Müller").0, "Müller");
    }

    #[test]
    fn dates_times_and_ages() {
        assert_eq!(date("19710123"), Date::new(1971, 1, 23).ok());
        assert_eq!(date("1971.01.23"), Date::new(1971, 1, 23).ok());
        assert_eq!(date("1971"), None);
        assert_eq!(date_time("20021122091000"), DateTime::new(2002, 11, 22, 9, 10, 0, 0).ok());
        assert_eq!(date_time("20021122091000.5+0100"), DateTime::new(2002, 11, 22, 9, 10, 0, 500_000_000).ok());
        assert_eq!(date_and_time("20130125", Some("105919")), DateTime::new(2013, 1, 25, 10, 59, 19, 0).ok());
        assert_eq!(age_years("042Y"), Some(42));
        assert_eq!(age_years("018M"), Some(1));
        assert_eq!(age_years(""), None);
        assert_eq!(age_years("Y"), None);
    }
}
