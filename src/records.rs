//! Real recordings from `../shared/data` (PhysioNet WFDB) turned into cart-ready leads.

use anyhow::{Context, bail};
use std::path::{Path, PathBuf};
use yilian_formats::wfdb;
use yilian_protocol::lead;

/// A recording: leads of i16 samples at one rate and resolution.
#[derive(Debug, Clone)]
pub struct Recording {
    /// Record name.
    pub name: String,
    /// Sampling rate, Hz.
    pub sample_rate_hz: u16,
    /// nV per LSB.
    pub resolution_nv: u32,
    /// (SCP-ECG lead code, samples), baseline removed.
    pub leads: Vec<(u8, Vec<i16>)>,
}

impl Recording {
    /// Samples per lead.
    pub fn len(&self) -> usize {
        self.leads.first().map_or(0, |l| l.1.len())
    }

    /// True if there are no samples.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The shared test-data folder: `$YILIAN_SHARED_DATA`, else `../shared/data` beside the repo.
pub fn shared_data() -> PathBuf {
    std::env::var_os("YILIAN_SHARED_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data"))
}

fn lead_code(description: &str) -> Option<u8> {
    let d = description.trim();
    // MIT-BIH labels its modified limb lead "MLII".
    let d = d.strip_prefix("ML").unwrap_or(d);
    lead::code_of(d)
}

/// Loads a WFDB record (`dir/record.hea`), keeping signals that are known ECG leads.
pub fn load_wfdb(dir: &Path, record: &str) -> anyhow::Result<Recording> {
    let hea_path = dir.join(format!("{record}.hea"));
    let text = std::fs::read_to_string(&hea_path).with_context(|| format!("reading {}", hea_path.display()))?;
    let header = wfdb::parse_header(&text).with_context(|| hea_path.display().to_string())?;
    let mut files: Vec<&str> = header.signals.iter().map(|s| s.file.as_str()).collect();
    files.dedup();
    let mut by_signal = vec![Vec::new(); header.signals.len()];
    for f in files {
        let path = dir.join(f);
        let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        for (i, samples) in wfdb::read_signals(&header, f, &bytes).with_context(|| path.display().to_string())? {
            by_signal[i] = samples;
        }
    }
    let mut leads = Vec::new();
    let mut resolution = None;
    for (s, samples) in header.signals.iter().zip(by_signal) {
        let Some(code) = lead_code(&s.description) else {
            continue;
        };
        let Some(res) = s.resolution_nv() else {
            continue;
        };
        if *resolution.get_or_insert(res) != res {
            continue; // a cart sends one resolution for all leads
        }
        let v: Vec<i16> =
            samples.iter().map(|x| (x - s.baseline).clamp(i16::MIN.into(), i16::MAX.into()) as i16).collect();
        leads.push((code, v));
    }
    let Some(resolution_nv) = resolution else { bail!("{record}: no ECG lead with a whole-nV resolution") };
    Ok(Recording { name: record.to_string(), sample_rate_hz: header.sample_rate_hz as u16, resolution_nv, leads })
}

/// PTB record s0010_re: 12 leads, 1000 Hz, 500 nV (resting studies).
pub fn ptb_12_lead() -> anyhow::Result<Recording> {
    load_wfdb(&shared_data().join("wfdb/ptbdb"), "s0010_re")
}

/// The PTB 12-lead record at 500 Hz (every other sample of its 1000 Hz), as carts record resting
/// ECGs and monitor.
pub fn ptb_12_lead_500hz() -> anyhow::Result<Recording> {
    let ptb = ptb_12_lead()?;
    Ok(Recording {
        name: format!("{}-500", ptb.name),
        sample_rate_hz: 500,
        resolution_nv: ptb.resolution_nv,
        leads: ptb.leads.iter().map(|(c, x)| (*c, x.iter().step_by(2).copied().collect())).collect(),
    })
}

/// An MIT-BIH Arrhythmia record: 2 leads, 360 Hz, 5000 nV (monitoring streams).
pub fn mitdb(record: &str) -> anyhow::Result<Recording> {
    load_wfdb(&shared_data().join("wfdb/mitdb"), record)
}
