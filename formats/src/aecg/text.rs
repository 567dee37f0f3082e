//! Text-level pieces of aECG: the document's character encoding, HL7 `TS` timestamps and
//! physical quantities (`PQ`) with their units.

use std::borrow::Cow;

use jiff::civil::{Date, DateTime};

use super::AecgError;

/// The document as UTF-8, decoded from its BOM or declared encoding, and a warning when bytes
/// had to be replaced.
pub(super) fn decode_document(bytes: &[u8]) -> Result<(Cow<'_, str>, Option<String>), AecgError> {
    let (encoding, body) = match encoding_rs::Encoding::for_bom(bytes) {
        Some((enc, bom)) => (enc, bytes.get(bom..).unwrap_or_default()),
        None => match declared_encoding(bytes) {
            None => (encoding_rs::UTF_8, bytes),
            Some(label) => {
                let enc = encoding_rs::Encoding::for_label(label.as_bytes())
                    .ok_or_else(|| AecgError::UnsupportedEncoding(label.clone()))?;
                // UTF-16 without a BOM cannot have an ASCII declaration we just parsed.
                if enc == encoding_rs::UTF_16LE || enc == encoding_rs::UTF_16BE || enc == encoding_rs::REPLACEMENT {
                    return Err(AecgError::UnsupportedEncoding(label));
                }
                // Chinese carts declare GB2312 or GBK but write GB 18030 characters; GB 18030 is
                // the superset that decodes all three.
                let enc = if enc == encoding_rs::GBK { encoding_rs::GB18030 } else { enc };
                (enc, bytes)
            }
        },
    };
    let (text, had_errors) = encoding.decode_without_bom_handling(body);
    let warning = had_errors.then(|| {
        format!("some bytes are not valid {}: they are shown as \u{FFFD}; names may be garbled", encoding.name())
    });
    Ok((text, warning))
}

/// The `encoding` pseudo-attribute of the XML declaration, if the document starts with one.
/// Spaces around `=` are allowed (XML's `Eq` production), and some carts write them.
fn declared_encoding(bytes: &[u8]) -> Option<String> {
    let head = bytes.get(..bytes.len().min(512))?;
    let rest = head.strip_prefix(b"<?xml")?;
    let end = rest.windows(2).position(|w| w == b"?>")?;
    let decl = rest.get(..end)?;
    let at = decl.windows(8).position(|w| w == b"encoding")?;
    let mut i = at + 8;
    let skip_space = |i: &mut usize| {
        while decl.get(*i).is_some_and(u8::is_ascii_whitespace) {
            *i += 1;
        }
    };
    skip_space(&mut i);
    if decl.get(i) != Some(&b'=') {
        return None;
    }
    i += 1;
    skip_space(&mut i);
    let quote = *decl.get(i).filter(|q| **q == b'"' || **q == b'\'')?;
    let value = decl.get(i + 1..)?;
    let close = value.iter().position(|b| *b == quote)?;
    let label = std::str::from_utf8(value.get(..close)?).ok()?;
    Some(label.trim().to_string())
}

/// An HL7 `TS` value (`YYYYMMDDHHMMSS.UUUU[+|-ZZzz]`, precision may stop after any part) as a
/// civil date-time. A time-zone offset is dropped: Yilian keeps the cart's local civil time.
pub(super) fn parse_ts(value: &str) -> Option<DateTime> {
    let value = value.trim();
    let body = value.find(['+', '-']).map_or(value, |at| value.get(..at).unwrap_or(value));
    let (whole, frac) = match body.split_once('.') {
        Some((w, f)) => (w, Some(f)),
        None => (body, None),
    };
    if !whole.bytes().all(|b| b.is_ascii_digit()) || ![4, 6, 8, 10, 12, 14].contains(&whole.len()) {
        return None;
    }
    let part = |from: usize, to: usize, default: i8| -> Option<i8> {
        match whole.get(from..to) {
            Some(s) => s.parse().ok(),
            None => Some(default),
        }
    };
    let year: i16 = whole.get(..4)?.parse().ok()?;
    let nanos = match frac {
        None => 0,
        Some(f) if whole.len() == 14 && !f.is_empty() && f.len() <= 9 && f.bytes().all(|b| b.is_ascii_digit()) => {
            let digits: i32 = f.parse().ok()?;
            digits.checked_mul(10_i32.checked_pow(9 - u32::try_from(f.len()).ok()?)?)?
        }
        Some(_) => return None,
    };
    DateTime::new(year, part(4, 6, 1)?, part(6, 8, 1)?, part(8, 10, 0)?, part(10, 12, 0)?, part(12, 14, 0)?, nanos).ok()
}

/// An HL7 `TS` value as a date (birth dates are `YYYYMMDD`, sometimes with a time).
pub(super) fn parse_date(value: &str) -> Option<Date> {
    let value = value.trim();
    if value.len() < 8 {
        return None;
    }
    parse_ts(value).map(|dt| dt.date())
}

/// A date-time as an HL7 `TS`, with as many fraction digits as it needs (none when whole).
pub(super) fn format_ts(dt: DateTime) -> String {
    let mut s =
        format!("{:04}{:02}{:02}{:02}{:02}{:02}", dt.year(), dt.month(), dt.day(), dt.hour(), dt.minute(), dt.second());
    let nanos = dt.subsec_nanosecond();
    if nanos != 0 {
        let frac = format!("{nanos:09}");
        s.push('.');
        s.push_str(frac.trim_end_matches('0'));
    }
    s
}

/// A date as an HL7 `TS` of day precision.
pub(super) fn format_date(d: Date) -> String {
    format!("{:04}{:02}{:02}", d.year(), d.month(), d.day())
}

/// Powers of ten from each voltage unit to nV. UCUM is case-sensitive ("MV" would be megavolts).
const VOLT_UNITS: &[(&str, i32)] = &[("nV", 0), ("uV", 3), ("\u{b5}V", 3), ("\u{3bc}V", 3), ("mV", 6), ("V", 9)];

/// Powers of ten from each time unit to seconds.
const TIME_UNITS: &[(&str, i32)] = &[("s", 0), ("ms", -3), ("us", -6), ("\u{b5}s", -6), ("\u{3bc}s", -6)];

/// The units [`to_nv`] accepts, for error messages.
pub(super) const VOLT_UNITS_TEXT: &str = "nV, uV, mV or V";

/// The units [`to_seconds`] accepts, for error messages.
pub(super) const TIME_UNITS_TEXT: &str = "s, ms or us";

/// Why a quantity could not be converted.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum QuantityError {
    /// The unit is not one of the accepted ones.
    Unit,
    /// The value is not a decimal number.
    Value,
}

/// A voltage `value` in `unit` as nanovolts.
///
/// The unit is applied by moving the decimal point in the text before parsing, so "2.5" uV is
/// exactly 2500 nV and "0.183" uV exactly 183 nV (multiplying the parsed float by 1000 is not
/// always exact, and the writer relies on the round trip).
pub(super) fn to_nv(value: &str, unit: &str) -> Result<f64, QuantityError> {
    let power = VOLT_UNITS.iter().find(|(u, _)| *u == unit.trim()).map(|(_, p)| *p).ok_or(QuantityError::Unit)?;
    scaled(value, power)
}

/// A duration `value` in `unit` as seconds.
pub(super) fn to_seconds(value: &str, unit: &str) -> Result<f64, QuantityError> {
    let power = TIME_UNITS.iter().find(|(u, _)| *u == unit.trim()).map(|(_, p)| *p).ok_or(QuantityError::Unit)?;
    scaled(value, power)
}

/// `value × 10^power`, parsed once from the decimal text (correctly rounded).
fn scaled(value: &str, power: i32) -> Result<f64, QuantityError> {
    let value = value.trim();
    let (mantissa, exponent) = match value.split_once(['e', 'E']) {
        Some((m, e)) => (m, e.parse::<i32>().map_err(|_| QuantityError::Value)?),
        None => (value, 0),
    };
    let is_decimal = !mantissa.is_empty()
        && mantissa
            .bytes()
            .enumerate()
            .all(|(i, b)| b.is_ascii_digit() || b == b'.' || (i == 0 && (b == b'-' || b == b'+')))
        && mantissa.bytes().filter(|b| *b == b'.').count() <= 1
        && mantissa.bytes().any(|b| b.is_ascii_digit());
    if !is_decimal {
        return Err(QuantityError::Value);
    }
    let exponent = exponent.checked_add(power).ok_or(QuantityError::Value)?;
    let parsed: f64 = format!("{mantissa}e{exponent}").parse().map_err(|_| QuantityError::Value)?;
    if parsed.is_finite() { Ok(parsed) } else { Err(QuantityError::Value) }
}

/// A number as plain decimal text (no exponent) divided by 10^`places`, by moving the decimal
/// point in its shortest round-trip text, so that [`to_nv`] gives back exactly `value`.
pub(super) fn decimal_shifted(value: f64, places: usize) -> String {
    // Rust's `Display` for f64 is the shortest text that parses back to the same value, and
    // never uses an exponent.
    let text = format!("{value}");
    let (sign, digits) = match text.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", text.as_str()),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    let int =
        if int.len() < places + 1 { format!("{}{int}", "0".repeat(places + 1 - int.len())) } else { int.to_string() };
    let split = int.len() - places;
    let (new_int, moved) = int.split_at(split);
    let new_frac = format!("{moved}{frac}");
    let new_frac = new_frac.trim_end_matches('0');
    let new_int = new_int.trim_start_matches('0');
    let new_int = if new_int.is_empty() { "0" } else { new_int };
    if new_frac.is_empty() { format!("{sign}{new_int}") } else { format!("{sign}{new_int}.{new_frac}") }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;

    #[test]
    fn declared_encoding_allows_spaces_and_single_quotes() {
        assert_eq!(declared_encoding(b"<?xml version = \"1.0\" encoding = \"UTF-8\"?>").as_deref(), Some("UTF-8"));
        assert_eq!(declared_encoding(b"<?xml version='1.0' encoding='GB2312'?><a/>").as_deref(), Some("GB2312"));
        assert_eq!(declared_encoding(b"<?xml version=\"1.0\"?>"), None);
        assert_eq!(declared_encoding(b"<a/>"), None);
    }

    #[test]
    fn gb2312_declared_documents_decode_as_gb18030() {
        let (text, warning) =
            decode_document(b"<?xml version=\"1.0\" encoding=\"GB2312\"?><n>\xd5\xc5\xce\xb0</n>").expect("decodes");
        assert!(text.contains("<n>张伟</n>"), "{text}");
        assert_eq!(warning, None);
        assert!(matches!(
            decode_document(b"<?xml version=\"1.0\" encoding=\"EBCDIC-X\"?>"),
            Err(AecgError::UnsupportedEncoding(_))
        ));
    }

    #[test]
    fn invalid_utf8_is_replaced_with_a_warning() {
        let (text, warning) = decode_document(b"<n>\xff</n>").expect("decodes");
        assert_eq!(text, "<n>\u{FFFD}</n>");
        assert!(warning.is_some());
    }

    #[test]
    fn ts_values_of_any_precision() {
        assert_eq!(parse_ts("20021122091000"), Some(date(2002, 11, 22).at(9, 10, 0, 0)));
        assert_eq!(parse_ts("20021122091000.122"), Some(date(2002, 11, 22).at(9, 10, 0, 122_000_000)));
        assert_eq!(parse_ts("200211220737"), Some(date(2002, 11, 22).at(7, 37, 0, 0)));
        assert_eq!(parse_ts("20040115112004.000+0800"), Some(date(2004, 1, 15).at(11, 20, 4, 0)));
        assert_eq!(parse_ts("19530508"), Some(date(1953, 5, 8).at(0, 0, 0, 0)));
        assert_eq!(parse_ts("2002112209100"), None);
        assert_eq!(parse_ts("20021322091000"), None);
        assert_eq!(parse_ts(""), None);
        assert_eq!(parse_date("19530508"), Some(date(1953, 5, 8)));
        assert_eq!(parse_date("1953"), None);
        let dt = date(2002, 11, 22).at(9, 10, 0, 122_000_000);
        assert_eq!(format_ts(dt), "20021122091000.122");
        assert_eq!(parse_ts(&format_ts(dt)), Some(dt));
        assert_eq!(format_ts(date(2002, 11, 22).at(9, 10, 0, 0)), "20021122091000");
    }

    #[test]
    fn quantities_convert_exactly() {
        assert_eq!(to_nv("2.5", "uV"), Ok(2500.0));
        assert_eq!(to_nv("2.500", "uV"), Ok(2500.0));
        assert_eq!(to_nv("0.183", "uV"), Ok(183.0));
        assert_eq!(to_nv("0.005", "mV"), Ok(5000.0));
        assert_eq!(to_nv("-1", "V"), Ok(-1e9));
        assert_eq!(to_nv("2.5E0", "uV"), Ok(2500.0));
        assert_eq!(to_nv("2.5", "MV"), Err(QuantityError::Unit));
        assert_eq!(to_nv("abc", "uV"), Err(QuantityError::Value));
        assert_eq!(to_nv("1.2.3", "uV"), Err(QuantityError::Value));
        assert_eq!(to_nv("-", "uV"), Err(QuantityError::Value));
        assert_eq!(to_nv("1e999", "uV"), Err(QuantityError::Value));
        assert_eq!(to_seconds("0.002", "s"), Ok(0.002));
        assert_eq!(to_seconds("2", "ms"), Ok(0.002));
    }

    #[test]
    fn shifted_decimals_round_trip() {
        assert_eq!(decimal_shifted(2500.0, 3), "2.5");
        assert_eq!(decimal_shifted(183.0, 3), "0.183");
        assert_eq!(decimal_shifted(4.8828125, 3), "0.0048828125");
        assert_eq!(decimal_shifted(5000.0, 3), "5");
        assert_eq!(decimal_shifted(-1.5, 0), "-1.5");
        for nv in [2500.0, 183.0, 4.8828125, 1000.0 / 3.0, 0.1, 123456789.123, 1e-7] {
            assert_eq!(to_nv(&decimal_shifted(nv, 3), "uV"), Ok(nv), "{nv}");
        }
    }
}
