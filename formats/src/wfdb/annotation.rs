//! MIT-format annotation files (WFDB annot(5)): 16-bit little-endian words of a 6-bit code and
//! a 10-bit time step, with SKIP, NUM, SUB, CHN and AUX pseudo-words.

use crate::recording::Limits;

use super::WfdbError;

const SKIP: u8 = 59;
const NUM: u8 = 60;
const SUB: u8 = 61;
const CHN: u8 = 62;
const AUX: u8 = 63;
const NOTE: u8 = 22;

/// The mnemonic of each annotation code 0-49 (WFDB `annstr`); "" where WFDB defines none.
const SYMBOLS: [&str; 50] = [
    "", "N", "L", "R", "a", "V", "F", "J", "A", "S", "E", "j", "/", "Q", "~", "", "|", "", "s", "T", "*", "D", "\"",
    "=", "p", "B", "^", "t", "+", "u", "?", "!", "[", "]", "e", "n", "@", "x", "f", "(", ")", "r", "", "", "", "", "",
    "", "", "",
];

/// Codes that mark a beat (the MIT-BIH beat table's symbols).
const BEATS: [u8; 19] = [1, 2, 3, 25, 8, 4, 7, 9, 5, 41, 6, 34, 11, 35, 10, 12, 38, 13, 30];

/// One annotation as the file holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MitAnnotation {
    /// Sample number (frames from the start of the record).
    pub sample: u64,
    /// Annotation code (1-49).
    pub code: u8,
    /// Subtype (WFDB `subtyp`, a signed char).
    pub subtype: i8,
    /// Signal number it applies to (WFDB `chan`).
    pub chan: u8,
    /// Annotator number (WFDB `num`, a signed char).
    pub num: i8,
    /// Auxiliary text, e.g. a rhythm label "(AFIB", cut at its first NUL.
    pub aux: String,
}

impl MitAnnotation {
    /// The code's mnemonic ("N", "V", "+", "(", ...), or "[code]" where WFDB defines none.
    pub fn symbol(&self) -> String {
        symbol(self.code)
    }

    /// True when the code is a beat (N L R B A a J S V r F e j n E / f Q ?).
    pub fn is_beat(&self) -> bool {
        BEATS.contains(&self.code)
    }
}

/// The mnemonic of `code`, or "[code]" where WFDB defines none.
pub fn symbol(code: u8) -> String {
    match SYMBOLS.get(usize::from(code)) {
        Some(s) if !s.is_empty() => (*s).to_string(),
        _ => format!("[{code}]"),
    }
}

/// The code whose mnemonic is `symbol` (also "[n]" for codes without one).
pub fn code_of(symbol: &str) -> Option<u8> {
    if let Some(pos) = SYMBOLS.iter().position(|s| !s.is_empty() && *s == symbol) {
        return u8::try_from(pos).ok();
    }
    let n: u8 = symbol.strip_prefix('[')?.strip_suffix(']')?.parse().ok()?;
    (n < 50).then_some(n)
}

fn word_at(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes([*bytes.get(at)?, *bytes.get(at.checked_add(1)?)?]))
}

/// Sign-extends WFDB's 10-bit data field into the signed char WFDB stores it in.
fn signed_char(data: u16) -> i8 {
    i8::from_le_bytes([data.to_le_bytes()[0]])
}

/// Reads an annotation file.
///
/// # Errors
/// A file that ends without the `00 00` end word, or in the middle of a SKIP or AUX, is refused
/// with the byte offset; so is a time before the record start, or more annotations than
/// `limits.max_annotations`.
pub fn annotations(bytes: &[u8], limits: &Limits) -> Result<Vec<MitAnnotation>, WfdbError> {
    if bytes.len() > limits.max_input_bytes {
        return Err(WfdbError::TooLarge {
            file: "annotation file".into(),
            size: bytes.len(),
            limit: limits.max_input_bytes,
        });
    }
    let bad = |offset: usize, reason: &str| WfdbError::Annotation { offset, reason: reason.into() };
    let mut out: Vec<MitAnnotation> = Vec::new();
    let (mut time, mut chan, mut num) = (0i64, 0u8, 0i8);
    let mut at = 0usize;
    loop {
        let Some(word) = word_at(bytes, at) else {
            return Err(bad(at, if at < bytes.len() { "odd byte at the end" } else { "no end-of-file word (00 00)" }));
        };
        let start = at;
        at += 2;
        let code = u8::try_from(word >> 10).unwrap_or(0);
        let data = word & 0x3ff;
        match code {
            0 if data == 0 => return Ok(out),
            SKIP => {
                let (Some(hi), Some(lo)) = (word_at(bytes, at), word_at(bytes, at + 2)) else {
                    return Err(bad(start, "SKIP without its 4-byte interval"));
                };
                at += 4;
                // PDP-11 long: high word first, each word little-endian.
                let interval = i32::from_be_bytes({
                    let (h, l) = (hi.to_be_bytes(), lo.to_be_bytes());
                    [h[0], h[1], l[0], l[1]]
                });
                time = time.checked_add(i64::from(interval)).ok_or_else(|| bad(start, "time overflows"))?;
            }
            NUM | SUB | CHN | AUX => {
                let Some(last) = out.last_mut() else {
                    return Err(bad(start, "NUM, SUB, CHN or AUX before any annotation"));
                };
                match code {
                    NUM => {
                        num = signed_char(data);
                        last.num = num;
                    }
                    SUB => last.subtype = signed_char(data),
                    CHN => {
                        chan = data.to_le_bytes()[0];
                        last.chan = chan;
                    }
                    _ => {
                        let len = usize::from(data);
                        let text = bytes.get(at..at + len).ok_or_else(|| bad(start, "AUX runs past the end"))?;
                        let text = text.split(|&b| b == 0).next().unwrap_or_default();
                        last.aux = String::from_utf8_lossy(text).into_owned();
                        // The text is padded to an even length.
                        at += len + len % 2;
                    }
                }
            }
            _ => {
                time = time.checked_add(i64::from(data)).ok_or_else(|| bad(start, "time overflows"))?;
                let sample = u64::try_from(time).map_err(|_| bad(start, "annotation before the record start"))?;
                if out.len() >= limits.max_annotations {
                    return Err(WfdbError::TooManyAnnotations { limit: limits.max_annotations });
                }
                // num and chan carry over to later annotations; subtype and aux do not.
                out.push(MitAnnotation { sample, code, subtype: 0, chan, num, aux: String::new() });
            }
        }
    }
}

/// Writes annotations in MIT format, in the order given (times must not decrease by more than a
/// SKIP can say).
///
/// # Errors
/// A code above 49 or AUX text over 255 bytes.
pub fn write_annotations(anns: &[MitAnnotation]) -> Result<Vec<u8>, super::WfdbWriteError> {
    use super::WfdbWriteError as E;
    let mut out = Vec::with_capacity(anns.len().saturating_mul(2).saturating_add(2));
    let push = |out: &mut Vec<u8>, code: u8, data: u16| {
        out.extend_from_slice(&((u16::from(code) << 10) | (data & 0x3ff)).to_le_bytes());
    };
    let (mut time, mut chan, mut num) = (0u64, 0u8, 0i8);
    for a in anns {
        if a.code == 0 || a.code >= 50 {
            return Err(E::AnnotationCode { sample: a.sample, code: a.code });
        }
        let delta = i128::from(a.sample) - i128::from(time);
        let data = match u16::try_from(delta) {
            Ok(d) if d <= 0x3ff => d,
            _ => {
                let skip = i32::try_from(delta).map_err(|_| E::AnnotationGap { sample: a.sample })?;
                push(&mut out, SKIP, 0);
                let b = skip.to_be_bytes();
                out.extend_from_slice(&[b[1], b[0], b[3], b[2]]);
                0
            }
        };
        time = a.sample;
        push(&mut out, a.code, data);
        if a.subtype != 0 {
            push(&mut out, SUB, u16::from_le_bytes([a.subtype.to_le_bytes()[0], 0]) | sign_bits(a.subtype));
        }
        if a.chan != chan {
            push(&mut out, CHN, u16::from(a.chan));
            chan = a.chan;
        }
        if a.num != num {
            push(&mut out, NUM, u16::from_le_bytes([a.num.to_le_bytes()[0], 0]) | sign_bits(a.num));
            num = a.num;
        }
        if !a.aux.is_empty() {
            let text = a.aux.as_bytes();
            let len = u16::try_from(text.len())
                .ok()
                .filter(|&l| l <= 255)
                .ok_or(E::AuxTooLong { sample: a.sample, len: text.len() })?;
            push(&mut out, AUX, len);
            out.extend_from_slice(text);
            if text.len() % 2 == 1 {
                out.push(0);
            }
        }
    }
    out.extend_from_slice(&[0, 0]);
    Ok(out)
}

/// WFDB writes a negative signed char as its 10-bit two's complement.
fn sign_bits(v: i8) -> u16 {
    if v < 0 { 0x300 } else { 0 }
}

/// The MIT code for a recording annotation's label, or NOTE with the label kept in the text.
pub(crate) fn to_mit(a: &crate::recording::Annotation) -> MitAnnotation {
    let text = a.text.clone().unwrap_or_default();
    let (code, aux) = match code_of(&a.label) {
        Some(code) if code != 0 => (code, text),
        _ if text.is_empty() => (NOTE, a.label.clone()),
        _ => (NOTE, format!("{}: {text}", a.label)),
    };
    MitAnnotation { sample: a.sample, code, subtype: 0, chan: 0, num: 0, aux }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_start_of_100_atr() {
        let bytes = [0x12, 0x70, 0x03, 0xfc, b'(', b'N', 0, 0, 0x3b, 0x04, 0, 0];
        let got = annotations(&bytes, &Limits::default()).expect("annotations");
        assert_eq!(got.len(), 2);
        assert_eq!((got[0].sample, got[0].symbol().as_str(), got[0].aux.as_str()), (18, "+", "(N"));
        assert_eq!((got[1].sample, got[1].symbol().as_str(), got[1].aux.as_str()), (77, "N", ""));
        assert!(got[1].is_beat() && !got[0].is_beat());
    }

    #[test]
    fn skip_num_sub_chn_round_trip() {
        let anns = vec![
            MitAnnotation { sample: 5, code: 1, subtype: -1, chan: 2, num: 3, aux: String::new() },
            MitAnnotation { sample: 70_000, code: 5, subtype: 0, chan: 2, num: -4, aux: "odd".into() },
            MitAnnotation { sample: 70_000, code: 28, subtype: 4, chan: 0, num: -4, aux: "(AFIB".into() },
            MitAnnotation { sample: 3, code: 49, subtype: 0, chan: 0, num: -4, aux: String::new() },
        ];
        let bytes = write_annotations(&anns).expect("write");
        assert_eq!(annotations(&bytes, &Limits::default()).expect("read"), anns);
    }

    #[test]
    fn symbols_and_codes_agree() {
        for code in 0..50u8 {
            let s = symbol(code);
            assert_eq!(code_of(&s), Some(code), "{s}");
        }
        assert_eq!(symbol(39), "(");
        assert_eq!(symbol(15), "[15]");
        assert_eq!(code_of("[50]"), None);
    }

    #[test]
    fn malformed_files_name_the_offset() {
        let lim = Limits::default();
        assert!(matches!(annotations(&[0x12, 0x70], &lim), Err(WfdbError::Annotation { offset: 2, .. })));
        assert!(matches!(
            annotations(&[0x12, 0x70, 0x05, 0xfc, b'x'], &lim),
            Err(WfdbError::Annotation { offset: 2, .. })
        ));
        assert!(matches!(annotations(&[0x00, 0xec, 0, 0], &lim), Err(WfdbError::Annotation { offset: 0, .. })));
        assert!(matches!(annotations(&[0x03, 0xfc, 0, 0], &lim), Err(WfdbError::Annotation { offset: 0, .. })));
        let back = [0x00, 0xec, 0xff, 0xff, 0xfe, 0xff, 0x01, 0x04, 0, 0];
        assert!(matches!(annotations(&back, &lim), Err(WfdbError::Annotation { offset: 6, .. })));
        let small = Limits { max_annotations: 1, ..lim };
        assert_eq!(annotations(&[1, 4, 1, 4, 0, 0], &small), Err(WfdbError::TooManyAnnotations { limit: 1 }));
    }
}
