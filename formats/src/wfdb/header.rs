//! The `.hea` header: record line, signal lines and `#` comments (WFDB header(5)).

use jiff::civil::{Date, Time};

use super::WfdbError;

/// Largest record [`parse_header`] accepts (samples per signal); [`super::read`] applies the
/// tighter [`crate::Limits`].
pub const MAX_SAMPLES: usize = 10_000_000;

/// WFDB's default gain (adu per physical unit) when the header gives none or 0 (uncalibrated).
const DEFAULT_GAIN: f64 = 200.0;

/// WFDB's default sampling frequency when the record line gives none.
const DEFAULT_FREQUENCY: f64 = 250.0;

/// One signal line of a header.
#[derive(Debug, Clone, PartialEq)]
pub struct Signal {
    /// Signal file name.
    pub file: String,
    /// Storage format (16, 212, ...).
    pub format: u32,
    /// ADC units per physical unit (per mV for ECG); 200 when the header gives none or 0.
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
    /// Samples of this signal per frame (the `x` suffix of the format field; 1 when absent).
    pub samples_per_frame: u32,
    /// Skew in frames (the `:` suffix of the format field).
    pub skew: u32,
    /// Bytes to skip at the start of the signal file (the `+` suffix of the format field).
    pub byte_offset: usize,
    /// ADC resolution in bits as stated (0 when absent).
    pub adc_resolution: u32,
    /// Block size as stated (0 when absent).
    pub block_size: u32,
    /// False when the gain was absent or 0, which WFDB defines as "uncalibrated".
    pub calibrated: bool,
}

impl Signal {
    /// Resolution in nV per ADC unit, when it is a whole number (gain in units per mV).
    pub fn resolution_nv(&self) -> Option<u32> {
        let nv = 1.0e6 / self.gain;
        let whole = (nv - nv.round()).abs() < 1e-6 && (1.0..=f64::from(u32::MAX)).contains(&nv);
        // The range check above makes the cast exact.
        (self.units.eq_ignore_ascii_case("mV") && whole).then_some(nv.round() as u32)
    }
}

/// A parsed header.
#[derive(Debug, Clone, PartialEq)]
pub struct Header {
    /// Record name.
    pub record: String,
    /// Sampling frequency in Hz (frames per second).
    pub sample_rate_hz: f64,
    /// Counter frequency, when the record line gives one (`360/720`).
    pub counter_frequency: Option<f64>,
    /// Counter value at sample 0 (`360/720(12)`).
    pub base_counter: Option<f64>,
    /// Samples per signal; 0 when the header does not say (then the file length decides).
    pub samples_per_signal: usize,
    /// Base time of sample 0.
    pub base_time: Option<Time>,
    /// Base date of sample 0.
    pub base_date: Option<Date>,
    /// Signals in order.
    pub signals: Vec<Signal>,
    /// `#` comment lines, without the `#`, trimmed.
    pub comments: Vec<String>,
}

fn num<T: std::str::FromStr>(s: &str, line: usize, what: &str) -> Result<T, WfdbError> {
    s.parse().map_err(|_| WfdbError::Header { line, reason: format!("{what} {s:?} is not a number") })
}

fn finite(v: f64, line: usize, what: &str) -> Result<f64, WfdbError> {
    if v.is_finite() { Ok(v) } else { Err(WfdbError::Header { line, reason: format!("{what} {v} is not finite") }) }
}

/// True for a name WFDB accepts as a record name (letters, digits, underscores).
pub(crate) fn valid_record_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Parses a `.hea` file's text (LF or CRLF).
pub fn parse_header(text: &str) -> Result<Header, WfdbError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut lines = text.lines().enumerate().map(|(i, l)| (i + 1, l.trim_end_matches('\r')));
    let mut comments = Vec::new();
    let (n, record_line) = loop {
        match lines.next() {
            None => return Err(WfdbError::Header { line: 1, reason: "no record line".into() }),
            Some((_, l)) if l.trim().is_empty() => continue,
            Some((_, l)) if l.trim_start().starts_with('#') => comments.push(comment(l)),
            Some(x) => break x,
        }
    };
    let record = parse_record_line(record_line, n)?;
    let mut signals = Vec::with_capacity(record.nsig.min(64));
    for (line, l) in lines {
        if l.trim().is_empty() {
            continue;
        }
        if l.trim_start().starts_with('#') {
            comments.push(comment(l));
            continue;
        }
        // Lines past the declared signals carry nothing WFDB defines; the agent's reader
        // ignored them too.
        if signals.len() == record.nsig {
            continue;
        }
        signals.push(parse_signal_line(l, line)?);
    }
    if signals.len() != record.nsig {
        return Err(WfdbError::Header {
            line: n,
            reason: format!("{} signals declared, {} described", record.nsig, signals.len()),
        });
    }
    Ok(Header {
        record: record.name,
        sample_rate_hz: record.frequency,
        counter_frequency: record.counter_frequency,
        base_counter: record.base_counter,
        samples_per_signal: record.samples,
        base_time: record.base_time,
        base_date: record.base_date,
        signals,
        comments,
    })
}

fn comment(line: &str) -> String {
    let l = line.trim_start();
    l.strip_prefix('#').unwrap_or(l).trim().to_string()
}

struct RecordLine {
    name: String,
    nsig: usize,
    frequency: f64,
    counter_frequency: Option<f64>,
    base_counter: Option<f64>,
    samples: usize,
    base_time: Option<Time>,
    base_date: Option<Date>,
}

fn parse_record_line(line: &str, n: usize) -> Result<RecordLine, WfdbError> {
    let f: Vec<&str> = line.split_whitespace().collect();
    let (Some(name), Some(nsig)) = (f.first(), f.get(1)) else {
        return Err(WfdbError::Header { line: n, reason: "record line needs a name and a signal count".into() });
    };
    if name.contains('/') {
        return Err(WfdbError::Unsupported(format!("multi-segment record {name:?}")));
    }
    let nsig: usize = num(nsig, n, "signal count")?;
    let (mut frequency, mut counter_frequency, mut base_counter) = (DEFAULT_FREQUENCY, None, None);
    if let Some(s) = f.get(2) {
        let (fs, counter) = s.split_once('/').map_or((*s, None), |(a, b)| (a, Some(b)));
        frequency = finite(num(fs, n, "sampling frequency")?, n, "sampling frequency")?;
        if let Some(c) = counter {
            let (cf, base) = match c.split_once('(') {
                Some((a, b)) => (a, Some(b.trim_end_matches(')'))),
                None => (c, None),
            };
            counter_frequency = Some(finite(num(cf, n, "counter frequency")?, n, "counter frequency")?);
            base_counter =
                base.map(|b| num(b, n, "base counter").and_then(|v| finite(v, n, "base counter"))).transpose()?;
        }
    }
    let samples: usize = match f.get(3) {
        Some(s) => num(s, n, "sample count")?,
        None => 0,
    };
    if samples > MAX_SAMPLES {
        return Err(WfdbError::TooLong(samples));
    }
    let base_time = f.get(4).map(|s| parse_time(s, n)).transpose()?;
    let base_date = f.get(5).map(|s| parse_date(s, n)).transpose()?;
    Ok(RecordLine {
        name: (*name).to_string(),
        nsig,
        frequency,
        counter_frequency,
        base_counter,
        samples,
        base_time,
        base_date,
    })
}

/// `[[HH:]MM:]SS[.sss]`.
fn parse_time(s: &str, n: usize) -> Result<Time, WfdbError> {
    let bad = || WfdbError::Header { line: n, reason: format!("base time {s:?} is not HH:MM:SS") };
    let parts: Vec<&str> = s.split(':').collect();
    if parts.is_empty() || parts.len() > 3 {
        return Err(bad());
    }
    let (secs, rest) = parts.split_last().ok_or_else(bad)?;
    let (whole, frac) = secs.split_once('.').unwrap_or((secs, ""));
    let second: i8 = whole.parse().map_err(|_| bad())?;
    let mut nanos: i32 = 0;
    if !frac.is_empty() {
        if frac.len() > 9 || !frac.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let padded = format!("{frac:0<9}");
        nanos = padded.parse().map_err(|_| bad())?;
    }
    let mut hm = [0i8; 2];
    let offset = 2 - rest.len();
    for (i, p) in rest.iter().enumerate() {
        let slot = hm.get_mut(offset + i).ok_or_else(bad)?;
        *slot = p.parse().map_err(|_| bad())?;
    }
    Time::new(hm[0], hm[1], second, nanos).map_err(|_| bad())
}

/// `DD/MM/YYYY`.
fn parse_date(s: &str, n: usize) -> Result<Date, WfdbError> {
    let bad = || WfdbError::Header { line: n, reason: format!("base date {s:?} is not DD/MM/YYYY") };
    let mut it = s.split('/');
    let (Some(d), Some(m), Some(y), None) = (it.next(), it.next(), it.next(), it.next()) else {
        return Err(bad());
    };
    let (d, m, y): (i8, i8, i16) =
        (d.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?, y.parse().map_err(|_| bad())?);
    Date::new(y, m, d).map_err(|_| bad())
}

fn parse_signal_line(l: &str, n: usize) -> Result<Signal, WfdbError> {
    let f: Vec<&str> = l.split_whitespace().collect();
    let (Some(file), Some(fmt)) = (f.first(), f.get(1)) else {
        return Err(WfdbError::Header { line: n, reason: "signal line needs a file and a format".into() });
    };
    let (format, samples_per_frame, skew, byte_offset) = parse_format_field(fmt, n)?;
    let (gain, baseline, units) = match f.get(2) {
        Some(g) => {
            let (g, units) = g.split_once('/').map_or((*g, "mV"), |(a, b)| (a, b));
            let (g, base) = match g.split_once('(') {
                Some((a, b)) => (a, Some(num::<i32>(b.trim_end_matches(')'), n, "baseline")?)),
                None => (g, None),
            };
            (finite(num(g, n, "gain")?, n, "gain")?, base, units.to_string())
        }
        None => (0.0, None, "mV".to_string()),
    };
    let calibrated = gain != 0.0;
    let adc_resolution: u32 = f.get(3).map(|s| num(s, n, "ADC resolution")).transpose()?.unwrap_or(0);
    let adc_zero: i32 = f.get(4).map(|s| num(s, n, "ADC zero")).transpose()?.unwrap_or(0);
    Ok(Signal {
        file: (*file).to_string(),
        format,
        gain: if calibrated { gain } else { DEFAULT_GAIN },
        baseline: baseline.unwrap_or(adc_zero),
        units,
        adc_zero,
        initial_value: f.get(5).map(|s| num(s, n, "initial value")).transpose()?,
        checksum: f.get(6).map(|s| num(s, n, "checksum")).transpose()?,
        description: f.get(8..).map(|d| d.join(" ")).unwrap_or_default(),
        samples_per_frame,
        skew,
        byte_offset,
        adc_resolution,
        block_size: f.get(7).map(|s| num(s, n, "block size")).transpose()?.unwrap_or(0),
        calibrated,
    })
}

/// `format[xsamps][:skew][+offset]`.
fn parse_format_field(s: &str, n: usize) -> Result<(u32, u32, u32, usize), WfdbError> {
    let (rest, offset) = s.split_once('+').map_or((s, None), |(a, b)| (a, Some(b)));
    let (rest, skew) = rest.split_once(':').map_or((rest, None), |(a, b)| (a, Some(b)));
    let (format, spf) = rest.split_once('x').map_or((rest, None), |(a, b)| (a, Some(b)));
    let format: u32 = num(format, n, "format")?;
    let spf: u32 = spf.map(|v| num(v, n, "samples per frame")).transpose()?.unwrap_or(1);
    let skew: u32 = skew.map(|v| num(v, n, "skew")).transpose()?.unwrap_or(0);
    let offset: usize = offset.map(|v| num(v, n, "byte offset")).transpose()?.unwrap_or(0);
    Ok((format, spf.max(1), skew, offset))
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
        assert_eq!(h.signals[0].adc_resolution, 11);
        assert!(h.signals[0].calibrated);
        assert_eq!(h.comments, vec!["69 M 1085 1629 x1"]);
        assert_eq!(h.base_time, None);
    }

    #[test]
    fn record_line_counter_frequency_base_time_and_date() {
        let h = parse_header("rec 1 360/720(12) 10 13:05:07.25 24/11/2020\nrec.dat 16\n").expect("header");
        assert_eq!(h.counter_frequency, Some(720.0));
        assert_eq!(h.base_counter, Some(12.0));
        assert_eq!(h.base_time, Some(Time::new(13, 5, 7, 250_000_000).expect("time")));
        assert_eq!(h.base_date, Some(Date::new(2020, 11, 24).expect("date")));
        let s = &h.signals[0];
        assert_eq!((s.gain, s.calibrated, s.baseline, s.units.as_str()), (200.0, false, 0, "mV"));
        let h = parse_header("rec 1 500 10 5:07\nrec.dat 16 0\n").expect("header");
        assert_eq!(h.base_time, Some(Time::new(0, 5, 7, 0).expect("time")));
        assert!(!h.signals[0].calibrated);
    }

    #[test]
    fn format_field_suffixes() {
        let h = parse_header("r 1 500 1\nr.dat 212x4:2+512 100(-3)/uV 12 7 0 0 0 chest lead\n").expect("header");
        let s = &h.signals[0];
        assert_eq!((s.format, s.samples_per_frame, s.skew, s.byte_offset), (212, 4, 2, 512));
        assert_eq!((s.gain, s.baseline, s.units.as_str(), s.adc_zero), (100.0, -3, "uV", 7));
        assert_eq!(s.description, "chest lead");
    }

    #[test]
    fn malformed_headers_are_errors() {
        assert!(parse_header("").is_err());
        assert!(parse_header("r 2 360 10\nr.dat 16 200\n").is_err());
        assert!(parse_header("r x 360\n").is_err());
        assert!(parse_header("r 1 NaN\nr.dat 16\n").is_err());
        assert!(parse_header("r 1 360 10 25:00:00\nr.dat 16\n").is_err());
        assert!(parse_header("r 1 360 10 1:00:00 31/02/2020\nr.dat 16\n").is_err());
        assert!(matches!(parse_header("r/2 1 360\n"), Err(WfdbError::Unsupported(_))));
        assert_eq!(parse_header("r 1 360 99999999999\nr.dat 16\n"), Err(WfdbError::TooLong(99_999_999_999)));
    }
}
