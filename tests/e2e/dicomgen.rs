//! Writes small, valid DICOM Part-10 files by hand (explicit VR little endian), so the imaging
//! tests can make a CT series of any size with fresh UIDs.

use std::io::Write;
use std::path::Path;

fn element(out: &mut Vec<u8>, group: u16, elem: u16, vr: &[u8; 2], value: &[u8]) {
    out.extend_from_slice(&group.to_le_bytes());
    out.extend_from_slice(&elem.to_le_bytes());
    out.extend_from_slice(vr);
    if matches!(vr, b"OB" | b"OW" | b"UN" | b"SQ" | b"UT") {
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&(value.len() as u32).to_le_bytes());
    } else {
        out.extend_from_slice(&(value.len() as u16).to_le_bytes());
    }
    out.extend_from_slice(value);
}

fn text(s: &str, pad: u8) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    if v.len() % 2 == 1 {
        v.push(pad);
    }
    v
}

/// One CT slice of `rows × cols` 16-bit pixels (`rows × cols × 2` bytes of pixel data).
pub struct Slice<'a> {
    pub study_uid: &'a str,
    pub series_uid: &'a str,
    pub sop_uid: &'a str,
    pub number: u32,
    pub rows: u16,
    pub cols: u16,
    pub patient_name: &'a str,
    pub modality: &'a str,
    pub sop_class: &'a str,
}

/// Writes the slice to `path`; pixels follow a pattern that changes with the slice number.
pub fn write(path: &Path, s: &Slice<'_>) -> std::io::Result<u64> {
    let mut ds = Vec::new();
    element(&mut ds, 0x0008, 0x0016, b"UI", &text(s.sop_class, 0));
    element(&mut ds, 0x0008, 0x0018, b"UI", &text(s.sop_uid, 0));
    element(&mut ds, 0x0008, 0x0020, b"DA", b"20261125");
    element(&mut ds, 0x0008, 0x0060, b"CS", &text(s.modality, b' '));
    element(&mut ds, 0x0010, 0x0010, b"PN", &text(s.patient_name, b' '));
    element(&mut ds, 0x0010, 0x0020, b"LO", b"IMG-0001");
    element(&mut ds, 0x0020, 0x000D, b"UI", &text(s.study_uid, 0));
    element(&mut ds, 0x0020, 0x000E, b"UI", &text(s.series_uid, 0));
    element(&mut ds, 0x0020, 0x0013, b"IS", &text(&s.number.to_string(), b' '));
    element(&mut ds, 0x0028, 0x0002, b"US", &1u16.to_le_bytes());
    element(&mut ds, 0x0028, 0x0004, b"CS", b"MONOCHROME2 ");
    element(&mut ds, 0x0028, 0x0010, b"US", &s.rows.to_le_bytes());
    element(&mut ds, 0x0028, 0x0011, b"US", &s.cols.to_le_bytes());
    element(&mut ds, 0x0028, 0x0030, b"DS", b"0.7\\0.7 ");
    element(&mut ds, 0x0028, 0x0100, b"US", &16u16.to_le_bytes());
    element(&mut ds, 0x0028, 0x0101, b"US", &16u16.to_le_bytes());
    element(&mut ds, 0x0028, 0x0102, b"US", &15u16.to_le_bytes());
    element(&mut ds, 0x0028, 0x0103, b"US", &1u16.to_le_bytes());
    let n = usize::from(s.rows) * usize::from(s.cols);
    let mut pixels = Vec::with_capacity(n * 2);
    for i in 0..n {
        let v = ((i as u32).wrapping_mul(2_654_435_761).wrapping_add(s.number) >> 20) as i16 - 1024;
        pixels.extend_from_slice(&v.to_le_bytes());
    }
    element(&mut ds, 0x7FE0, 0x0010, b"OW", &pixels);

    let mut meta = Vec::new();
    element(&mut meta, 0x0002, 0x0001, b"OB", &[0, 1]);
    element(&mut meta, 0x0002, 0x0002, b"UI", &text(s.sop_class, 0));
    element(&mut meta, 0x0002, 0x0003, b"UI", &text(s.sop_uid, 0));
    element(&mut meta, 0x0002, 0x0010, b"UI", &text("1.2.840.10008.1.2.1", 0));
    element(&mut meta, 0x0002, 0x0012, b"UI", &text("1.2.826.0.1.3680043.10.1234.7", 0));
    let mut file = std::fs::File::create(path)?;
    file.write_all(&[0u8; 128])?;
    file.write_all(b"DICM")?;
    let mut group_len = Vec::new();
    element(&mut group_len, 0x0002, 0x0000, b"UL", &(meta.len() as u32).to_le_bytes());
    file.write_all(&group_len)?;
    file.write_all(&meta)?;
    file.write_all(&ds)?;
    file.sync_all()?;
    Ok(132 + group_len.len() as u64 + meta.len() as u64 + ds.len() as u64)
}
