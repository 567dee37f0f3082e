//! Signal files (WFDB signal(5)): interleaved frames in formats 16, 24, 32, 61, 80, 160 and 212.

use super::WfdbError;
use super::header::Header;

/// Formats this reader decodes.
pub const SUPPORTED_FORMATS: [u32; 7] = [16, 24, 32, 61, 80, 160, 212];

/// The value WFDB writes for a missing sample, by format (it is not a voltage).
pub(crate) fn invalid_marker(format: u32) -> Option<i32> {
    match format {
        16 | 61 | 160 => Some(-32768),
        212 => Some(-2048),
        80 => Some(-128),
        _ => None,
    }
}

/// The signals of one file, before checksums are looked at.
pub(crate) struct Decoded {
    /// (signal index, raw stored samples), in header order.
    pub signals: Vec<(usize, Vec<i32>)>,
    /// Bytes after the last frame the header asks for (a partial frame, or a longer file).
    pub extra_bytes: usize,
}

/// Bytes that `samples` interleaved samples of `format` take (format 212 packs two in three
/// bytes and ends a lone sample in two).
fn bytes_needed(format: u32, samples: usize) -> Option<usize> {
    match format {
        80 => Some(samples),
        16 | 61 | 160 => samples.checked_mul(2),
        24 => samples.checked_mul(3),
        32 => samples.checked_mul(4),
        212 => samples.checked_mul(3).map(|b| b.div_ceil(2)),
        _ => None,
    }
}

/// Samples that fit in `bytes` bytes of `format` (whole samples only).
fn samples_in(format: u32, bytes: usize) -> usize {
    match format {
        80 => bytes,
        16 | 61 | 160 => bytes / 2,
        24 => bytes / 3,
        32 => bytes / 4,
        // Three bytes per pair, plus one sample in a trailing two.
        212 => bytes / 3 * 2 + usize::from(bytes % 3 == 2),
        _ => 0,
    }
}

/// Sample `k` of a run of `format` samples.
fn sample_at(format: u32, b: &[u8], k: usize) -> Option<i32> {
    let at = |i: usize| b.get(i).copied();
    Some(match format {
        16 => i32::from(i16::from_le_bytes([at(2 * k)?, at(2 * k + 1)?])),
        61 => i32::from(i16::from_be_bytes([at(2 * k)?, at(2 * k + 1)?])),
        160 => i32::from(u16::from_le_bytes([at(2 * k)?, at(2 * k + 1)?])) - 32768,
        80 => i32::from(at(k)?) - 128,
        24 => {
            let v = i32::from_le_bytes([at(3 * k)?, at(3 * k + 1)?, at(3 * k + 2)?, 0]);
            // Sign-extend from 24 bits.
            (v << 8) >> 8
        }
        32 => i32::from_le_bytes([at(4 * k)?, at(4 * k + 1)?, at(4 * k + 2)?, at(4 * k + 3)?]),
        212 => {
            let base = k / 2 * 3;
            let mid = at(base + 1)?;
            let v = if k.is_multiple_of(2) {
                i32::from(at(base)?) | (i32::from(mid & 0x0f) << 8)
            } else {
                i32::from(at(base + 2)?) | (i32::from(mid & 0xf0) << 4)
            };
            // 12-bit two's complement.
            if v > 2047 { v - 4096 } else { v }
        }
        _ => return None,
    })
}

/// The signal indices stored in `file`, in header order.
fn signals_of(header: &Header, file: &str) -> Vec<usize> {
    header.signals.iter().enumerate().filter(|(_, s)| s.file == file).map(|(i, _)| i).collect()
}

/// Refuses what this reader does not decode, before any byte is read.
pub(crate) fn check_supported(header: &Header) -> Result<(), WfdbError> {
    for (i, s) in header.signals.iter().enumerate() {
        if !SUPPORTED_FORMATS.contains(&s.format) {
            return Err(WfdbError::Format(s.format));
        }
        if s.samples_per_frame > 1 {
            return Err(WfdbError::Unsupported(format!(
                "signal {i} ({}) has {} samples per frame",
                s.description, s.samples_per_frame
            )));
        }
        if s.skew != 0 {
            return Err(WfdbError::Unsupported(format!("signal {i} ({}) has a skew of {}", s.description, s.skew)));
        }
        if s.file == "~" || s.file == "-" {
            return Err(WfdbError::Unsupported(format!("signal {i} ({}) has no file ({:?})", s.description, s.file)));
        }
    }
    for f in super::signal_files(header) {
        let idx = signals_of(header, &f);
        let first = idx.first().and_then(|&i| header.signals.get(i));
        if let Some(first) = first {
            let same = idx
                .iter()
                .filter_map(|&i| header.signals.get(i))
                .all(|s| (s.format, s.byte_offset) == (first.format, first.byte_offset));
            if !same {
                return Err(WfdbError::Unsupported(format!("{f}: signals with different formats or offsets")));
            }
        }
    }
    Ok(())
}

/// Decodes the signals stored in `file`, without looking at checksums; more than `max_frames`
/// samples per signal is refused before anything is allocated.
pub(crate) fn decode(header: &Header, file: &str, bytes: &[u8], max_frames: usize) -> Result<Decoded, WfdbError> {
    check_supported(header)?;
    let idx = signals_of(header, file);
    let Some(first) = idx.first().and_then(|&i| header.signals.get(i)) else {
        return Ok(Decoded { signals: vec![], extra_bytes: bytes.len() });
    };
    let format = first.format;
    let data = bytes.get(first.byte_offset..).ok_or_else(|| WfdbError::Short {
        file: file.into(),
        got: bytes.len(),
        need: first.byte_offset,
    })?;
    let n = idx.len();
    let frames =
        if header.samples_per_signal > 0 { header.samples_per_signal } else { samples_in(format, data.len()) / n };
    if frames > max_frames {
        return Err(WfdbError::TooLong(frames));
    }
    let total = frames.checked_mul(n).ok_or(WfdbError::TooLong(frames))?;
    let need = bytes_needed(format, total).ok_or(WfdbError::TooLong(frames))?;
    if data.len() < need {
        return Err(WfdbError::Short {
            file: file.into(),
            got: bytes.len(),
            need: need.saturating_add(first.byte_offset),
        });
    }
    let mut signals: Vec<(usize, Vec<i32>)> = idx.iter().map(|&i| (i, Vec::with_capacity(frames))).collect();
    let mut k = 0usize;
    for _ in 0..frames {
        for (_, out) in &mut signals {
            // The length check above guarantees every sample is present.
            let v = sample_at(format, data, k).ok_or_else(|| WfdbError::Short {
                file: file.into(),
                got: bytes.len(),
                need,
            })?;
            out.push(v);
            k += 1;
        }
    }
    Ok(Decoded { signals, extra_bytes: data.len() - need })
}

/// The WFDB checksum: the 16-bit wrapping sum of the samples.
pub(crate) fn checksum(samples: &[i32]) -> i16 {
    samples.iter().fold(0i16, |acc, &v| acc.wrapping_add(v as i16))
}

/// Decodes the signals stored in `file` (interleaved, in header order).
///
/// Returns `(signal index, samples)` for each signal of that file, checked against the header's
/// checksums. Samples are the stored integers (baseline not removed).
pub fn read_signals(header: &Header, file: &str, bytes: &[u8]) -> Result<Vec<(usize, Vec<i32>)>, WfdbError> {
    let decoded = decode(header, file, bytes, super::MAX_SAMPLES)?;
    for (sig, samples) in &decoded.signals {
        let Some(s) = header.signals.get(*sig) else { continue };
        if let Some(stated) = s.checksum {
            let computed = checksum(samples);
            if computed != stated {
                return Err(WfdbError::Checksum { signal: *sig, description: s.description.clone(), stated, computed });
            }
        }
    }
    Ok(decoded.signals)
}

#[cfg(test)]
mod tests {
    use super::super::parse_header;
    use super::*;

    #[test]
    fn format_212_packs_two_12_bit_samples_in_three_bytes() {
        let h = parse_header("r 2 360 1\nr.dat 212 200 11 1024 995 0 0 A\nr.dat 212 200 11 1024 1011 0 0 B\n")
            .expect("header");
        let mut h = h;
        for s in &mut h.signals {
            s.checksum = None;
        }
        let got = read_signals(&h, "r.dat", &[0xe3, 0x33, 0xf3]).expect("read");
        assert_eq!(got, vec![(0, vec![995]), (1, vec![1011])]);
    }

    #[test]
    fn format_212_odd_count_ends_in_two_bytes_and_negative_values_sign_extend() {
        let h = parse_header("r 1 360 3\nr.dat 212 200 12 0 -1 0 0 A\n").expect("header");
        // -1, -2048 in one triple, then 5 in two bytes.
        let bytes = [0xff, 0x8f, 0x00, 0x05, 0x00];
        let got = decode(&h, "r.dat", &bytes, 10).expect("decode");
        assert_eq!(got.signals, vec![(0, vec![-1, -2048, 5])]);
        assert_eq!(got.extra_bytes, 0);
        assert!(matches!(decode(&h, "r.dat", &bytes[..4], 10), Err(WfdbError::Short { got: 4, need: 5, .. })));
    }

    #[test]
    fn other_simple_formats() {
        let one = |fmt: &str, bytes: &[u8]| {
            let h = parse_header(&format!("r 1 100 1\nr.dat {fmt}\n")).expect("header");
            decode(&h, "r.dat", bytes, 10).expect("decode").signals[0].1[0]
        };
        assert_eq!(one("16", &[0xfe, 0xff]), -2);
        assert_eq!(one("61", &[0xff, 0xfe]), -2);
        assert_eq!(one("160", &[0xfe, 0x7f]), -2);
        assert_eq!(one("80", &[126]), -2);
        assert_eq!(one("24", &[0xfe, 0xff, 0xff]), -2);
        assert_eq!(one("32", &[0xfe, 0xff, 0xff, 0xff]), -2);
        assert_eq!(one("16+2", &[9, 9, 0xfe, 0xff]), -2);
    }

    #[test]
    fn unknown_length_comes_from_the_file_and_leftovers_are_counted() {
        let h = parse_header("r 2 100\nr.dat 16\nr.dat 16\n").expect("header");
        let got = decode(&h, "r.dat", &[1, 0, 2, 0, 3, 0, 4, 0, 5], 10).expect("decode");
        assert_eq!(got.signals, vec![(0, vec![1, 3]), (1, vec![2, 4])]);
        assert_eq!(got.extra_bytes, 1);
        assert!(matches!(decode(&h, "r.dat", &[0; 9], 1), Err(WfdbError::TooLong(2))));
    }

    #[test]
    fn bad_formats_and_short_files_are_errors() {
        let h = parse_header("r 1 500 10\nr.dat 16 1000 16 0 0 0 0 I\n").expect("header");
        assert!(matches!(read_signals(&h, "r.dat", &[0; 5]), Err(WfdbError::Short { .. })));
        let h = parse_header("r 1 500 1\nr.dat 8 1000\n").expect("header");
        assert_eq!(read_signals(&h, "r.dat", &[0; 5]), Err(WfdbError::Format(8)));
        let h = parse_header("r 1 500 1\nr.dat 16x2 1000\n").expect("header");
        assert!(matches!(read_signals(&h, "r.dat", &[0; 5]), Err(WfdbError::Unsupported(_))));
        let h = parse_header("r 1 500 2\nr.dat 16 1000 16 0 1 7 0 I\n").expect("header");
        assert_eq!(
            read_signals(&h, "r.dat", &[1, 0, 5, 0]),
            Err(WfdbError::Checksum { signal: 0, description: "I".into(), stated: 7, computed: 6 })
        );
    }
}
