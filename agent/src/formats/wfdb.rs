//! PhysioNet WFDB records: the header (`.hea`) and signal files in formats 16 and 212.
//!
//! Reference: the WFDB "header(5)" and "signal(5)" manual pages. Only what Yilian needs for
//! single-segment records is read; anything else is a clear [`WfdbError`].

/// A WFDB record could not be read.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum WfdbError {
    /// The header's record line or a signal line is malformed.
    #[error("header line {line}: {reason}")]
    Header {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// A signal file format this reader does not implement.
    #[error("signal format {0} is not supported (16 and 212 are)")]
    Format(u32),
    /// The signal file is shorter than the header says.
    #[error("{file}: {got} bytes, header needs {need}")]
    Short {
        /// Signal file.
        file: String,
        /// Bytes present.
        got: usize,
        /// Bytes needed.
        need: usize,
    },
    /// A signal's samples do not add up to the header's checksum.
    #[error("signal {signal} ({description}): checksum {computed} does not match header {stated}")]
    Checksum {
        /// Signal index.
        signal: usize,
        /// Description.
        description: String,
        /// From the header.
        stated: i16,
        /// From the data.
        computed: i16,
    },
    /// More samples than this reader accepts.
    #[error("{0} samples per signal exceeds the limit")]
    TooLong(usize),
}

/// One signal line of a header.
#[derive(Debug, Clone, PartialEq)]
pub struct Signal {
    /// Signal file name.
    pub file: String,
    /// Storage format (16, 212).
    pub format: u32,
    /// ADC units per physical unit (per mV for ECG).
    pub gain: f64,
    /// ADC value of 0 physical units.
    pub baseline: i32,
    /// Physical units (default "mV").
    pub units: String,
    /// ADC zero.
    pub adc_zero: i32,
    /// First sample.
    pub initial_value: Option<i32>,
    /// 16-bit sum of all samples.
    pub checksum: Option<i16>,
    /// Description, usually the lead name.
    pub description: String,
}

impl Signal {
    /// Resolution in nV per ADC unit, when it is a whole number (gain in units per mV).
    pub fn resolution_nv(&self) -> Option<u32> {
        let nv = 1.0e6 / self.gain;
        (self.units.eq_ignore_ascii_case("mV") && (nv - nv.round()).abs() < 1e-6 && nv >= 1.0)
            .then_some(nv.round() as u32)
    }
}

/// A parsed header.
#[derive(Debug, Clone, PartialEq)]
pub struct Header {
    /// Record name.
    pub record: String,
    /// Sampling frequency in Hz.
    pub sample_rate_hz: f64,
    /// Samples per signal.
    pub samples_per_signal: usize,
    /// Signals in order.
    pub signals: Vec<Signal>,
    /// `#` comment lines, without the `#`.
    pub comments: Vec<String>,
}

/// Largest record read (samples per signal).
pub const MAX_SAMPLES: usize = 10_000_000;

fn num<T: std::str::FromStr>(s: &str, line: usize, what: &str) -> Result<T, WfdbError> {
    s.parse().map_err(|_| WfdbError::Header { line, reason: format!("{what} {s:?} is not a number") })
}

/// Parses a `.hea` file's text (LF or CRLF).
pub fn parse_header(text: &str) -> Result<Header, WfdbError> {
    let mut lines = text.lines().enumerate().map(|(i, l)| (i + 1, l.trim_end_matches('\r')));
    let mut comments = Vec::new();
    let (n, record_line) = loop {
        match lines.next() {
            None => {
                return Err(WfdbError::Header { line: 1, reason: "no record line".into() });
            }
            Some((_, l)) if l.trim().is_empty() => continue,
            Some((_, l)) if l.starts_with('#') => comments.push(l[1..].trim().to_string()),
            Some(x) => break x,
        }
    };
    let f: Vec<&str> = record_line.split_whitespace().collect();
    if f.len() < 2 {
        return Err(WfdbError::Header { line: n, reason: "record line needs a name and a signal count".into() });
    }
    if f[0].contains('/') {
        return Err(WfdbError::Header { line: n, reason: "multi-segment records are not supported".into() });
    }
    let nsig: usize = num(f[1], n, "signal count")?;
    let sample_rate_hz: f64 = match f.get(2) {
        Some(s) => num(s.split(['/', '(']).next().unwrap_or(s), n, "frequency")?,
        None => 250.0,
    };
    let samples_per_signal: usize = match f.get(3) {
        Some(s) => num(s, n, "sample count")?,
        None => 0,
    };
    if samples_per_signal > MAX_SAMPLES {
        return Err(WfdbError::TooLong(samples_per_signal));
    }
    let mut signals = Vec::with_capacity(nsig.min(64));
    for (n, l) in lines {
        if l.trim().is_empty() {
            continue;
        }
        if let Some(c) = l.strip_prefix('#') {
            comments.push(c.trim().to_string());
            continue;
        }
        if signals.len() == nsig {
            continue;
        }
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.len() < 2 {
            return Err(WfdbError::Header { line: n, reason: "signal line needs a file and a format".into() });
        }
        let format: u32 = num(f[1].split(['x', ':', '+']).next().unwrap_or(f[1]), n, "format")?;
        let (gain, baseline, units) = match f.get(2) {
            Some(g) => {
                let (g, units) = g.split_once('/').map_or((*g, "mV"), |(a, b)| (a, b));
                let (g, base) = match g.split_once('(') {
                    Some((a, b)) => (a, Some(num::<i32>(b.trim_end_matches(')'), n, "baseline")?)),
                    None => (g, None),
                };
                let gain: f64 = num(g, n, "gain")?;
                (if gain == 0.0 { 200.0 } else { gain }, base, units.to_string())
            }
            None => (200.0, None, "mV".to_string()),
        };
        let adc_zero: i32 = f.get(4).map(|s| num(s, n, "ADC zero")).transpose()?.unwrap_or(0);
        signals.push(Signal {
            file: f[0].to_string(),
            format,
            gain,
            baseline: baseline.unwrap_or(adc_zero),
            units,
            adc_zero,
            initial_value: f.get(5).map(|s| num(s, n, "initial value")).transpose()?,
            checksum: f.get(6).map(|s| num(s, n, "checksum")).transpose()?,
            description: f.get(8..).map(|d| d.join(" ")).unwrap_or_default(),
        });
    }
    if signals.len() != nsig {
        return Err(WfdbError::Header {
            line: n,
            reason: format!("{nsig} signals declared, {} described", signals.len()),
        });
    }
    Ok(Header { record: f[0].to_string(), sample_rate_hz, samples_per_signal, signals, comments })
}

/// Decodes the signals stored in `file` (interleaved, in header order).
///
/// Returns `(signal index, samples)` for each signal of that file, checked against the header's
/// checksums.
pub fn read_signals(header: &Header, file: &str, bytes: &[u8]) -> Result<Vec<(usize, Vec<i32>)>, WfdbError> {
    let idx: Vec<usize> = header.signals.iter().enumerate().filter(|(_, s)| s.file == file).map(|(i, _)| i).collect();
    let Some(&first) = idx.first() else {
        return Ok(vec![]);
    };
    let format = header.signals[first].format;
    let n = idx.len();
    let frames = if header.samples_per_signal > 0 {
        header.samples_per_signal
    } else {
        match format {
            16 => bytes.len() / (2 * n),
            _ => bytes.len() * 2 / (3 * n),
        }
    };
    let total = frames * n;
    let flat: Vec<i32> = match format {
        16 => {
            let need = total * 2;
            if bytes.len() < need {
                return Err(WfdbError::Short { file: file.into(), got: bytes.len(), need });
            }
            bytes[..need].chunks_exact(2).map(|c| i32::from(i16::from_le_bytes([c[0], c[1]]))).collect()
        }
        212 => {
            let need = total.div_ceil(2) * 3;
            if bytes.len() < need {
                return Err(WfdbError::Short { file: file.into(), got: bytes.len(), need });
            }
            let mut out = Vec::with_capacity(total + 1);
            for c in bytes[..need].chunks_exact(3) {
                let a = i32::from(c[0]) | (i32::from(c[1] & 0x0f) << 8);
                let b = i32::from(c[2]) | (i32::from(c[1] & 0xf0) << 4);
                // 12-bit two's complement.
                out.push(if a > 2047 { a - 4096 } else { a });
                out.push(if b > 2047 { b - 4096 } else { b });
            }
            out.truncate(total);
            out
        }
        other => return Err(WfdbError::Format(other)),
    };
    let mut result = Vec::with_capacity(n);
    for (k, &sig) in idx.iter().enumerate() {
        let samples: Vec<i32> = flat.iter().skip(k).step_by(n).copied().collect();
        let s = &header.signals[sig];
        if let Some(stated) = s.checksum {
            let computed = samples.iter().fold(0i16, |acc, v| acc.wrapping_add(*v as i16));
            if computed != stated {
                return Err(WfdbError::Checksum { signal: sig, description: s.description.clone(), stated, computed });
            }
        }
        result.push((sig, samples));
    }
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_mitdb_style_header_with_crlf() {
        let h = parse_header("100 2 360 650000\r\n100.dat 212 200 11 1024 995 -22131 0 MLII\r\n100.dat 212 200 11 1024 1011 20052 0 V5\r\n# 69 M 1085 1629 x1\r\n")
            .expect("header");
        assert_eq!(h.signals.len(), 2);
        assert_eq!(h.sample_rate_hz, 360.0);
        assert_eq!(h.signals[0].resolution_nv(), Some(5000));
        assert_eq!(h.signals[1].description, "V5");
        assert_eq!(h.signals[0].baseline, 1024);
        assert_eq!(h.comments, vec!["69 M 1085 1629 x1"]);
    }

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
    fn bad_headers_and_short_files_are_errors() {
        assert!(parse_header("").is_err());
        assert!(parse_header("r 2 360 10\nr.dat 16 200\n").is_err());
        assert!(parse_header("r x 360\n").is_err());
        let h = parse_header("r 1 500 10\nr.dat 16 1000 16 0 0 0 0 I\n").expect("header");
        assert!(matches!(read_signals(&h, "r.dat", &[0; 5]), Err(WfdbError::Short { .. })));
        let h = parse_header("r 1 500 1\nr.dat 8 1000\n").expect("header");
        assert_eq!(read_signals(&h, "r.dat", &[0; 5]), Err(WfdbError::Format(8)));
    }
}
