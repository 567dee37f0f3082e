//! `wfdb::read` on a record cut out of one input: bytes 0-1 are the header's length (LE), then
//! the header text, then 4 bytes of signal-file length (LE), the signal bytes (given under every
//! signal file name the header mentions), and the rest as the annotation file `<record>.atr`.
//! A record that reads must respect the limits; one the WFDB writer accepts (one rate, one
//! length) must read back with the same leads, sample for sample.
#![no_main]

use std::collections::BTreeMap;

#[path = "shared/recording.rs"]
mod recording;

use libfuzzer_sys::fuzz_target;
use recording::{check, same_leads};
use yilian_formats::{ReadOptions, wfdb};

fuzz_target!(|data: &[u8]| {
    let (header, files) = split(data);
    let opts = ReadOptions::default();
    let Ok(rec) = wfdb::read(header, &files, &opts) else {
        return;
    };
    check(&rec, &opts.limits);
    if let Ok(written) = wfdb::write(&rec, "fuzz") {
        let mut out: BTreeMap<String, Vec<u8>> = written.into_iter().collect();
        let hea = out.remove("fuzz.hea").expect("the writer writes a header");
        let again = wfdb::read(&hea, &out, &opts).expect("our own WFDB record reads back");
        same_leads(&rec.leads, &again.leads);
    }
});

/// The header and the named files of a fuzz input (see the module doc).
fn split(data: &[u8]) -> (&[u8], BTreeMap<String, Vec<u8>>) {
    let (hlen, rest) = data.split_first_chunk::<2>().map_or((0, data), |(h, r)| (u16::from_le_bytes(*h), r));
    let (header, rest) = rest.split_at(usize::from(hlen).min(rest.len()));
    let (dlen, rest) = rest.split_first_chunk::<4>().map_or((0, rest), |(d, r)| (u32::from_le_bytes(*d), r));
    let (dat, atr) = rest.split_at(usize::try_from(dlen).unwrap_or(usize::MAX).min(rest.len()));
    let mut files = BTreeMap::new();
    if let Ok(h) = wfdb::parse_header(&String::from_utf8_lossy(header)) {
        for name in wfdb::signal_files(&h) {
            files.insert(name, dat.to_vec());
        }
        files.insert(format!("{}.atr", wfdb::record_name(&h)), atr.to_vec());
    }
    (header, files)
}
