//! Contec ECG90A `.ECG` files: a 43-byte header, little-endian u16 samples in 8 interleaved
//! series (II, III, V1–V6), a 37-byte footer.
//!
//! The layout is the one `RigacciOrg/ecg-contec` reverse-engineered from the device (test-data
//! README section 11): 800 Hz, 5 µV per unit, stored value − 2048, 0x6800 for "no value". The
//! cart records II and III only; I, aVR, aVL and aVF are computed here the way the cart's own
//! export does (integer division toward zero) and marked derived.

use jiff::civil::DateTime;

use crate::recording::{Format, Lead, ReadOptions, Recording, Sex};

/// Header bytes before the first frame.
const HEADER_LEN: usize = 43;
/// Bytes after the last frame.
const FOOTER_LEN: usize = 37;
/// The stored series, in frame order.
const SERIES: [&str; 8] = ["II", "III", "V1", "V2", "V3", "V4", "V5", "V6"];
/// Bytes per frame: one u16 per series.
const FRAME_LEN: usize = 2 * SERIES.len();
/// Stored value of a sample the cart did not measure (electrode off).
const INVALID: u16 = 0x6800;
/// Stored value of 0 µV.
const OFFSET: i32 = 2048;
const RATE_HZ: u32 = 800;
const RESOLUTION_NV: f64 = 5000.0;

/// A Contec file could not be read.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ContecError {
    /// Larger than the limit.
    #[error("{size} bytes, the limit is {limit}")]
    TooLarge {
        /// Size of the input.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The size is not header + whole frames + footer, so the frames cannot be located
    /// (a truncated or padded file).
    #[error("{len} bytes is not 43 + 16·n + 37 (the frames end {remainder} bytes off a frame boundary)")]
    Size {
        /// Size of the input.
        len: usize,
        /// Bytes past the last whole frame.
        remainder: usize,
    },
    /// More samples per lead than the limit.
    #[error("{samples} samples per lead, the limit is {limit}")]
    TooLong {
        /// Samples in the file.
        samples: usize,
        /// The limit.
        limit: usize,
    },
}

/// True when `bytes` have a Contec file's size (43 + 16·n + 37) and a plausible
/// "YYYY-MM-DD HH:MM:SS" at bytes 10..29.
pub fn looks_like(bytes: &[u8]) -> bool {
    let framed = bytes.len().checked_sub(HEADER_LEN + FOOTER_LEN).is_some_and(|n| n % FRAME_LEN == 0);
    framed && timestamp(bytes).is_some()
}

/// The acquisition time at bytes 10..29.
fn timestamp(bytes: &[u8]) -> Option<DateTime> {
    let raw = bytes.get(10..29)?;
    let text = std::str::from_utf8(raw).ok()?;
    let shape = text.bytes().enumerate().all(|(i, b)| match i {
        4 | 7 => b == b'-',
        10 => b == b' ',
        13 | 16 => b == b':',
        _ => b.is_ascii_digit(),
    });
    if !shape {
        return None;
    }
    let t: DateTime = text.replacen(' ', "T", 1).parse().ok()?;
    (1990..=2100).contains(&t.year()).then_some(t)
}

/// A NUL-padded text field: UTF-8 when valid, else GB18030 (Chinese carts write GBK).
fn text_field(raw: &[u8]) -> String {
    let raw = raw.split(|&b| b == 0).next().unwrap_or_default();
    let text = match std::str::from_utf8(raw) {
        Ok(t) => t.to_string(),
        Err(_) => encoding_rs::GB18030.decode_without_bom_handling(raw).0.into_owned(),
    };
    text.trim().to_string()
}

/// Reads a Contec ECG90A `.ECG` file.
///
/// Series that hold only the invalid marker (electrodes not connected) are absent, with a
/// warning; a series with some invalid samples is kept, those samples set to 0, with a warning
/// giving the count.
///
/// # Errors
/// A size that is not 43 + 16·n + 37, or over `opts.limits`.
pub fn read(bytes: &[u8], opts: &ReadOptions) -> Result<Recording, ContecError> {
    let limits = &opts.limits;
    if bytes.len() > limits.max_input_bytes {
        return Err(ContecError::TooLarge { size: bytes.len(), limit: limits.max_input_bytes });
    }
    let body = bytes
        .len()
        .checked_sub(HEADER_LEN + FOOTER_LEN)
        .ok_or(ContecError::Size { len: bytes.len(), remainder: bytes.len().saturating_sub(HEADER_LEN) })?;
    if body % FRAME_LEN != 0 {
        return Err(ContecError::Size { len: bytes.len(), remainder: body % FRAME_LEN });
    }
    let n = body / FRAME_LEN;
    if n > limits.max_samples_per_lead {
        return Err(ContecError::TooLong { samples: n, limit: limits.max_samples_per_lead });
    }
    let frames = bytes.get(HEADER_LEN..HEADER_LEN + body).unwrap_or_default();

    let mut rec = Recording::new(Format::Contec, "ECG90A");
    rec.device = "Contec ECG90A".into();
    read_header(bytes, &mut rec);

    let mut series: Vec<Option<Vec<i32>>> = Vec::with_capacity(SERIES.len());
    let mut absent = Vec::new();
    for (k, name) in SERIES.iter().enumerate() {
        let mut samples = Vec::with_capacity(n);
        let mut invalid = 0usize;
        for frame in frames.chunks_exact(FRAME_LEN) {
            let v = frame
                .get(2 * k..2 * k + 2)
                .and_then(|b| <[u8; 2]>::try_from(b).ok())
                .map_or(INVALID, u16::from_le_bytes);
            if v == INVALID {
                invalid += 1;
                samples.push(0);
            } else {
                samples.push(i32::from(v) - OFFSET);
            }
        }
        if n > 0 && invalid == n {
            absent.push(*name);
            series.push(None);
            continue;
        }
        if invalid > 0 {
            rec.warnings.push(format!(
                "lead {name}: {invalid} of {n} samples are marked invalid (0x6800, electrode off?) and are shown as 0"
            ));
        }
        series.push(Some(samples));
    }
    if !absent.is_empty() {
        rec.warnings.push(format!(
            "{} not recorded: every sample is the invalid marker 0x6800 (electrodes not connected?)",
            absent.join(", ")
        ));
    }
    let [ii, iii, chest @ ..] = <[Option<Vec<i32>>; 8]>::try_from(series).unwrap_or_default();
    let lead = |name: &str, derived: bool, samples: Vec<i32>| Lead {
        name: name.into(),
        derived,
        sample_rate_hz: RATE_HZ,
        resolution_nv: RESOLUTION_NV,
        samples,
    };
    let limb = match (&ii, &iii) {
        (Some(ii), Some(iii)) => Some(derive_limb_leads(ii, iii)),
        _ => None,
    };
    if limb.is_none() {
        rec.warnings.push("I, aVR, aVL and aVF need both II and III; they are absent".into());
    }
    let [i, avr, avl, avf] = limb.map_or([None, None, None, None], |[a, b, c, d]| [Some(a), Some(b), Some(c), Some(d)]);
    let ordered = [
        ("I", true, i),
        ("II", false, ii),
        ("III", false, iii),
        ("aVR", true, avr),
        ("aVL", true, avl),
        ("aVF", true, avf),
    ];
    for (name, derived, samples) in ordered {
        if let Some(s) = samples {
            rec.leads.push(lead(name, derived, s));
        }
    }
    for (name, samples) in SERIES.iter().skip(2).zip(chest) {
        if let Some(s) = samples {
            rec.leads.push(lead(name, false, s));
        }
    }
    Ok(rec)
}

/// I = II − III, aVR = III/2 − II, aVL = II/2 − III, aVF = (II + III)/2, dividing toward zero
/// as the cart's own CSV export does.
fn derive_limb_leads(ii: &[i32], iii: &[i32]) -> [Vec<i32>; 4] {
    let mut out: [Vec<i32>; 4] = std::array::from_fn(|_| Vec::with_capacity(ii.len()));
    // Samples are stored u16 − 2048, so none of these sums can overflow an i32.
    for (&a, &b) in ii.iter().zip(iii) {
        let [i, avr, avl, avf] = &mut out;
        i.push(a - b);
        avr.push(b / 2 - a);
        avl.push(a / 2 - b);
        avf.push((a + b) / 2);
    }
    out
}

/// A recording a Contec ECG90A file cannot hold.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ContecWriteError {
    /// Neither II nor III: the cart's file has nothing to derive the limb leads from.
    #[error("a Contec file needs lead II or III")]
    NoLimbLeads,
    /// A lead at another rate or resolution (the format is fixed at 800 Hz, 5000 nV).
    #[error("lead {lead}: {rate_hz} Hz, {resolution_nv} nV; a Contec file holds 800 Hz, 5000 nV")]
    Scale {
        /// Lead.
        lead: String,
        /// Its rate.
        rate_hz: u32,
        /// Its resolution.
        resolution_nv: String,
    },
    /// Stored leads of different lengths.
    #[error("lead {lead} has {samples} samples, the others {expected}")]
    Length {
        /// Lead.
        lead: String,
        /// Its count.
        samples: usize,
        /// The others' count.
        expected: usize,
    },
    /// A sample the 16-bit store cannot hold, or one that would read back as the invalid marker.
    #[error("lead {lead} sample {index}: {value} cannot be stored")]
    Sample {
        /// Lead.
        lead: String,
        /// Index.
        index: usize,
        /// Value.
        value: i32,
    },
    /// A lead the cart derives (I, aVR, aVL, aVF) that is not what II and III give.
    #[error("lead {0} differs from what II and III derive; a Contec file cannot store it")]
    NotDerivable(String),
    /// A lead the file has no place for.
    #[error("lead {0} has no place in a Contec file (II, III, V1-V6)")]
    UnknownLead(String),
    /// A header field longer than its slot.
    #[error("{field} {value:?} does not fit its {max} bytes")]
    Field {
        /// Field.
        field: &'static str,
        /// Value.
        value: String,
        /// Slot size.
        max: usize,
    },
}

/// Writes a Contec ECG90A file: II, III and V1-V6 as stored series (absent ones as the invalid
/// marker), the limb leads left for the reader to derive, the name in GBK as the cart writes it.
/// For feeding a clinic's inbox the way a real cart does, and for handing a study to Contec's
/// own viewer.
pub fn write(rec: &Recording) -> Result<Vec<u8>, ContecWriteError> {
    let stored: Vec<Option<&Lead>> = SERIES.iter().map(|n| rec.lead(n)).collect();
    if stored[0].is_none() && stored[1].is_none() {
        return Err(ContecWriteError::NoLimbLeads);
    }
    let mut n = None;
    for l in &rec.leads {
        if !SERIES.contains(&l.name.as_str()) && !["I", "aVR", "aVL", "aVF"].contains(&l.name.as_str()) {
            return Err(ContecWriteError::UnknownLead(l.name.clone()));
        }
        if l.sample_rate_hz != RATE_HZ || l.resolution_nv != RESOLUTION_NV {
            return Err(ContecWriteError::Scale {
                lead: l.name.clone(),
                rate_hz: l.sample_rate_hz,
                resolution_nv: l.resolution_nv.to_string(),
            });
        }
        let expected = *n.get_or_insert(l.samples.len());
        if l.samples.len() != expected {
            return Err(ContecWriteError::Length { lead: l.name.clone(), samples: l.samples.len(), expected });
        }
    }
    let n = n.unwrap_or(0);
    if let (Some(ii), Some(iii)) = (stored[0], stored[1]) {
        let derived = derive_limb_leads(&ii.samples, &iii.samples);
        for (name, d) in ["I", "aVR", "aVL", "aVF"].iter().zip(&derived) {
            if rec.lead(name).is_some_and(|l| l.samples != *d) {
                return Err(ContecWriteError::NotDerivable((*name).into()));
            }
        }
    } else if let Some(l) = rec.leads.iter().find(|l| ["I", "aVR", "aVL", "aVF"].contains(&l.name.as_str())) {
        return Err(ContecWriteError::NotDerivable(l.name.clone()));
    }
    let mut out = vec![0u8; HEADER_LEN + n * FRAME_LEN + FOOTER_LEN];
    write_header(rec, &mut out)?;
    for (k, lead) in stored.iter().enumerate() {
        for i in 0..n {
            let v = match lead {
                None => INVALID,
                Some(l) => {
                    let value = l.samples[i];
                    value
                        .checked_add(OFFSET)
                        .and_then(|r| u16::try_from(r).ok())
                        .filter(|&r| r != INVALID)
                        .ok_or_else(|| ContecWriteError::Sample { lead: l.name.clone(), index: i, value })?
                }
            };
            let at = HEADER_LEN + i * FRAME_LEN + 2 * k;
            out[at..at + 2].copy_from_slice(&v.to_le_bytes());
        }
    }
    Ok(out)
}

fn write_header(rec: &Recording, out: &mut [u8]) -> Result<(), ContecWriteError> {
    let put = |out: &mut [u8], field: &'static str, at: usize, max: usize, value: &str, bytes: &[u8]| {
        if bytes.len() > max {
            return Err(ContecWriteError::Field { field, value: value.into(), max });
        }
        out[at..at + bytes.len()].copy_from_slice(bytes);
        Ok(())
    };
    let id = &rec.patient.id;
    if !id.is_ascii() {
        return Err(ContecWriteError::Field { field: "patient id", value: id.clone(), max: 8 });
    }
    put(out, "patient id", 0, 8, id, id.as_bytes())?;
    if let Some(t) = rec.acquired_at {
        let stamp = t.strftime("%Y-%m-%d %H:%M:%S").to_string();
        put(out, "acquisition time", 10, 20, &stamp, stamp.as_bytes())?;
    }
    let (name, _, unmappable) = encoding_rs::GBK.encode(&rec.patient.name);
    if unmappable {
        return Err(ContecWriteError::Field { field: "patient name (GBK)", value: rec.patient.name.clone(), max: 8 });
    }
    put(out, "patient name", 32, 8, &rec.patient.name, &name)?;
    out[40] = match rec.patient.sex {
        Sex::Female => 0,
        Sex::Male => 1,
        Sex::Unknown => 255,
    };
    out[41] = rec.patient.age_years.and_then(|a| u8::try_from(a).ok()).unwrap_or(0);
    Ok(())
}

fn read_header(bytes: &[u8], rec: &mut Recording) {
    rec.patient.id = bytes.get(..8).map(text_field).unwrap_or_default();
    rec.patient.name = bytes.get(32..40).map(text_field).unwrap_or_default();
    rec.acquired_at = timestamp(bytes);
    if rec.acquired_at.is_none() {
        let raw = bytes.get(10..29).map(String::from_utf8_lossy).unwrap_or_default();
        rec.warnings.push(format!("acquisition time {raw:?} is not YYYY-MM-DD HH:MM:SS; left out"));
    }
    rec.patient.sex = match bytes.get(40) {
        Some(0) => Sex::Female,
        Some(1) => Sex::Male,
        _ => Sex::Unknown,
    };
    // The cart writes 0 when the age was not entered.
    rec.patient.age_years = bytes.get(41).copied().filter(|&a| a != 0).map(u16::from);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(header: &[u8], frames: &[[u16; 8]]) -> Vec<u8> {
        let mut b = vec![0u8; HEADER_LEN];
        b[..header.len()].copy_from_slice(header);
        for f in frames {
            for v in f {
                b.extend_from_slice(&v.to_le_bytes());
            }
        }
        b.extend_from_slice(&[0; FOOTER_LEN]);
        b
    }

    fn header(name: &[u8], sex: u8, age: u8) -> Vec<u8> {
        let mut h = vec![0u8; HEADER_LEN];
        h[..7].copy_from_slice(b"0000099");
        h[10..29].copy_from_slice(b"2021-03-04 05:06:07");
        h[32..32 + name.len()].copy_from_slice(name);
        h[40] = sex;
        h[41] = age;
        h
    }

    #[test]
    fn derived_limb_leads_truncate_toward_zero() {
        let [i, avr, avl, avf] = derive_limb_leads(&[-25, 3], &[-5, -4]);
        assert_eq!((i, avr, avl, avf), (vec![-20, 7], vec![23, -5], vec![-7, 5], vec![-15, 0]));
    }

    #[test]
    fn gbk_name_sex_age_and_partly_invalid_series() {
        // "张伟" in GBK.
        let h = header(&[0xd5, 0xc5, 0xce, 0xb0], 1, 57);
        let frames =
            [[2048, 2050, 2048, 2048, INVALID, 2048, 2048, 2048], [2047, 2049, 2049, 2048, 2050, 2048, 2048, 2048]];
        let rec = read(&file(&h, &frames), &ReadOptions::default()).expect("read");
        assert_eq!(rec.patient.name, "张伟");
        assert_eq!((rec.patient.sex, rec.patient.age_years, rec.patient.id.as_str()), (Sex::Male, Some(57), "0000099"));
        assert_eq!(rec.acquired_at, Some(jiff::civil::date(2021, 3, 4).at(5, 6, 7, 0)));
        assert_eq!(rec.lead("V3").expect("V3").samples, vec![0, 2]);
        assert_eq!(
            rec.warnings,
            vec!["lead V3: 1 of 2 samples are marked invalid (0x6800, electrode off?) and are shown as 0"]
        );
        assert_eq!(rec.lead("I").expect("I").samples, vec![-2, -2]);
        assert_eq!(rec.leads.len(), 12);
    }

    #[test]
    fn utf8_name_and_absent_ii_removes_the_derived_leads() {
        let h = header("王芳".as_bytes(), 0, 0);
        let frames = [[INVALID, 2050, 2048, 2048, 2048, 2048, 2048, 2048]];
        let rec = read(&file(&h, &frames), &ReadOptions::default()).expect("read");
        assert_eq!(rec.patient.name, "王芳");
        assert_eq!((rec.patient.sex, rec.patient.age_years), (Sex::Female, None));
        let names: Vec<&str> = rec.leads.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, vec!["III", "V1", "V2", "V3", "V4", "V5", "V6"]);
        assert_eq!(rec.warnings.len(), 2, "{:?}", rec.warnings);
    }

    #[test]
    fn sizes_off_the_frame_grid_are_refused() {
        let good = file(&header(b"", 255, 0), &[[2048; 8]; 3]);
        assert!(looks_like(&good));
        assert!(!looks_like(&good[..good.len() - 1]));
        assert_eq!(
            read(&good[..good.len() - 1], &ReadOptions::default()),
            Err(ContecError::Size { len: good.len() - 1, remainder: 15 })
        );
        assert!(matches!(read(&good[..50], &ReadOptions::default()), Err(ContecError::Size { len: 50, .. })));
        let mut bad_time = good.clone();
        bad_time[14] = b'x';
        assert!(!looks_like(&bad_time));
        let rec = read(&bad_time, &ReadOptions::default()).expect("still read");
        assert_eq!(rec.acquired_at, None);
        assert_eq!(rec.warnings.len(), 1);
    }
}
