//! Prints, for every cart file in `../shared/data`, what the agent makes of it: format, leads,
//! samples, the time to read it, and what travels to the hub (the original deflated, the whole
//! study encoded, and the number of MQTT-sized parts), then the time each hub writer takes.
//!
//! ```text
//! cargo run --release --example cart_files
//! ```

use std::time::Instant;
use yilian::records::shared_data;
use yilian_agent::cartfile::{self, FileContext};
use yilian_agent::inspect;
use yilian_formats::ReadOptions;
use yilian_protocol::message::Priority;

fn main() -> anyhow::Result<()> {
    let files = [
        "scp/ecgtoolkit_Example.scp",
        "scp/ecgviewer_demo.scp",
        "contec/0000050.ECG.scp",
        "dicom-ecg/waveform_ecg.dcm",
        "dicom-ecg/ecgtoolkit_Example.dcm",
        "dicom-ecg/ecg-dicom-web-viewer_test_ecg.dcm",
        "aecg/Example_aECG.xml",
        "aecg/hl7aecg-Example2.xml",
        "contec/0000050.ECG",
        "contec/0000053.ECG",
        "wfdb/ludb/1.hea",
        "wfdb/ptbdb/s0010_re.hea",
        "wfdb/mitdb/100.hea",
        "wfdb/mitdb/203.hea",
    ];
    let ctx = FileContext {
        device_id: "cart-1".into(),
        priority: Priority::Routine,
        question: None,
        utc_offset_minutes: 480,
        received_at_ms: 0,
    };
    println!(
        "{:<44} {:<9} {:>5} {:>9} {:>9} {:>11} {:>11} {:>11} {:>5}",
        "file", "format", "leads", "samples", "read ms", "orig bytes", "deflated", "study bytes", "parts"
    );
    let opts = ReadOptions::default();
    for f in files {
        let path = shared_data().join(f);
        let t = Instant::now();
        let (rec, originals) = inspect::load(&path, &opts).map_err(anyhow::Error::msg)?;
        let read_ms = t.elapsed().as_secs_f64() * 1000.0;
        let study = cartfile::to_study(&rec, &originals, &ctx)?;
        let orig: u64 = originals.iter().map(|o| o.bytes.len() as u64).sum();
        let deflated: usize = study.source.as_ref().map_or(0, |s| s.files.iter().map(|f| f.deflated.len()).sum());
        let encoded = study.encode()?.len();
        let parts = study.split()?.len();
        let samples: usize = rec.leads.iter().map(|l| l.samples.len()).sum();
        println!(
            "{f:<44} {:<9} {:>5} {samples:>9} {read_ms:>9.1} {orig:>11} {deflated:>11} {encoded:>11} {parts:>5}",
            rec.format.name(),
            rec.leads.len()
        );
        let t = Instant::now();
        let size =
            |r: Result<Vec<u8>, String>| r.map_or_else(|e| format!("refused ({e})"), |b| format!("{} B", b.len()));
        let dicom = size(yilian_formats::dicom::write(&rec).map_err(|e| e.to_string()));
        let aecg = size(yilian_formats::aecg::write(&rec).map_err(|e| e.to_string()));
        let scp = size(yilian_formats::scp::write(&rec).map_err(|e| e.to_string()));
        let wfdb = size(
            yilian_formats::wfdb::write(&rec, "x")
                .map(|fs| fs.into_iter().flat_map(|(_, b)| b).collect())
                .map_err(|e| e.to_string()),
        );
        let contec = size(yilian_formats::contec::write(&rec).map_err(|e| e.to_string()));
        let ms = t.elapsed().as_secs_f64() * 1000.0;
        println!("    writers {ms:.1} ms: dicom {dicom}, aecg {aecg}, scp {scp}, wfdb {wfdb}, contec {contec}");
    }
    Ok(())
}
