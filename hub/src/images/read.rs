//! Reading Part-10 files: header only (for the index) or whole (for rendering and frames), with
//! Deflated Explicit VR Little Endian inflated here because dicom-rs 0.8 lists it as a stub.

use dicom_core::{DicomValue, Tag};
use dicom_dictionary_std::tags;
use dicom_object::file::ReadPreamble;
use dicom_object::meta::FileMetaTable;
use dicom_object::{DefaultDicomObject, FileMetaTableBuilder, InMemDicomObject, OpenFileOptions};
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::Path;

/// Deflated Explicit VR Little Endian.
pub const DEFLATED: &str = "1.2.840.10008.1.2.1.99";
/// Explicit VR Little Endian.
pub const EXPLICIT_LE: &str = "1.2.840.10008.1.2.1";
/// A file larger than this is not read (a whole instance is held in memory to render it).
pub const MAX_FILE_BYTES: u64 = 2 << 30;
/// A deflated data set may inflate to at most this many bytes.
pub const MAX_INFLATED_BYTES: u64 = 512 << 20;

/// A file could not be read as a DICOM Part-10 file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// I/O on the file.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// No preamble and `DICM`, or a broken meta group or data set.
    #[error("{path} is not a readable DICOM Part-10 file: {reason}")]
    NotDicom {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// Over [`MAX_FILE_BYTES`] or [`MAX_INFLATED_BYTES`].
    #[error("{path} is too large ({size} bytes)")]
    TooLarge {
        /// The file.
        path: String,
        /// Its size, or the inflated size reached.
        size: u64,
    },
}

/// A parsed file and the transfer syntax its bytes are in (the object itself reports Explicit VR
/// Little Endian for a deflated file, since that is what it holds once inflated).
pub struct Parsed {
    /// The object.
    pub obj: DefaultDicomObject,
    /// The transfer syntax UID of the file as stored.
    pub transfer_syntax: String,
}

fn io<'a>(what: &'static str, path: &'a str) -> impl FnOnce(std::io::Error) -> ReadError + 'a {
    move |source| ReadError::Io { what, path: path.to_string(), source }
}

fn not_dicom(path: &str, reason: impl ToString) -> ReadError {
    ReadError::NotDicom { path: path.to_string(), reason: reason.to_string() }
}

/// Reads a file's header (everything before Pixel Data) or, with `whole`, the entire file.
pub fn read(path: &Path, whole: bool) -> Result<Parsed, ReadError> {
    let name = path.display().to_string();
    let f = File::open(path).map_err(io("opening", &name))?;
    let size = f.metadata().map_err(io("reading metadata of", &name))?.len();
    read_from(&name, f, size, whole)
}

/// Reads a Part-10 file held in memory (an image store instance, opened from its sealed file);
/// `name` says which in errors.
pub fn read_bytes(name: &str, bytes: &[u8], whole: bool) -> Result<Parsed, ReadError> {
    read_from(name, std::io::Cursor::new(bytes), bytes.len() as u64, whole)
}

fn read_from<R: Read + Seek>(path: &str, mut f: R, size: u64, whole: bool) -> Result<Parsed, ReadError> {
    if size > MAX_FILE_BYTES {
        return Err(ReadError::TooLarge { path: path.to_string(), size });
    }
    let mut head = [0u8; 132];
    f.read_exact(&mut head).map_err(|_| not_dicom(path, "shorter than the preamble"))?;
    if &head[128..] != b"DICM" {
        return Err(not_dicom(path, "no DICM after the 128-byte preamble"));
    }
    f.seek(SeekFrom::Start(128)).map_err(io("seeking in", path))?;
    let mut r = BufReader::new(f);
    let meta = FileMetaTable::from_reader(&mut r).map_err(|e| not_dicom(path, e))?;
    let ts = meta.transfer_syntax().to_string();
    if ts == DEFLATED {
        let mut inflated = Vec::new();
        flate2::read::DeflateDecoder::new(r)
            .take(MAX_INFLATED_BYTES + 1)
            .read_to_end(&mut inflated)
            .map_err(|e| not_dicom(path, format!("inflating: {e}")))?;
        if inflated.len() as u64 > MAX_INFLATED_BYTES {
            return Err(ReadError::TooLarge { path: path.to_string(), size: inflated.len() as u64 });
        }
        let explicit = dicom_transfer_syntax_registry::entries::EXPLICIT_VR_LITTLE_ENDIAN.erased();
        let ds = InMemDicomObject::read_dataset_with_ts(&inflated[..], &explicit).map_err(|e| not_dicom(path, e))?;
        let obj =
            ds.with_meta(FileMetaTableBuilder::new().transfer_syntax(EXPLICIT_LE)).map_err(|e| not_dicom(path, e))?;
        return Ok(Parsed { obj, transfer_syntax: ts });
    }
    let mut f = r.into_inner();
    f.seek(SeekFrom::Start(128)).map_err(io("seeking in", path))?;
    let mut opts = OpenFileOptions::new().read_preamble(ReadPreamble::Never);
    if !whole {
        opts = opts.read_until(tags::PIXEL_DATA);
    }
    let obj = opts.from_reader(BufReader::new(f)).map_err(|e| not_dicom(path, e))?;
    Ok(Parsed { obj, transfer_syntax: ts })
}

/// The text of an element, trimmed of DICOM padding; empty when absent.
pub fn text(obj: &InMemDicomObject, tag: Tag) -> String {
    obj.get(tag)
        .and_then(|e| e.value().to_str().ok())
        .map(|s| s.trim_end_matches([' ', '\0']).trim_start().to_string())
        .unwrap_or_default()
}

/// An integer element, if present and numeric.
pub fn int(obj: &InMemDicomObject, tag: Tag) -> Option<i64> {
    obj.get(tag).and_then(|e| e.value().to_int::<i64>().ok())
}

/// The floats of a multi-valued numeric element, if present.
pub fn floats(obj: &InMemDicomObject, tag: Tag) -> Option<Vec<f64>> {
    obj.get(tag).and_then(|e| e.value().to_multi_float64().ok()).filter(|v| !v.is_empty())
}

/// A frame's pixel bytes exactly as stored: for native pixel data the frame's slice; for
/// encapsulated pixel data the frame's fragments concatenated (WADO-RS `frames/{n}`).
pub fn frame_bytes(obj: &DefaultDicomObject, frame: u32) -> Result<Vec<u8>, String> {
    let frames = u32::try_from(int(obj, tags::NUMBER_OF_FRAMES).unwrap_or(1).max(1)).unwrap_or(1);
    if frame >= frames {
        return Err(format!("frame {} of {frames}", u64::from(frame) + 1));
    }
    let pd = obj.get(tags::PIXEL_DATA).ok_or("no Pixel Data")?;
    match pd.value() {
        DicomValue::Primitive(p) => {
            let rows = int(obj, tags::ROWS).unwrap_or(0).max(0) as u64;
            let cols = int(obj, tags::COLUMNS).unwrap_or(0).max(0) as u64;
            let spp = int(obj, tags::SAMPLES_PER_PIXEL).unwrap_or(1).max(1) as u64;
            let bits = int(obj, tags::BITS_ALLOCATED).unwrap_or(8).max(1) as u64;
            let frame_bits = rows * cols * spp * bits;
            if !frame_bits.is_multiple_of(8) {
                return Err("frames of 1-bit pixel data that do not end on a byte boundary".into());
            }
            let size = frame_bits / 8;
            let start = size * u64::from(frame);
            let bytes = p.to_bytes();
            usize::try_from(start)
                .ok()
                .zip(usize::try_from(start + size).ok())
                .and_then(|(a, b)| bytes.get(a..b))
                .map(<[u8]>::to_vec)
                .ok_or_else(|| "Pixel Data is shorter than its frames".into())
        }
        DicomValue::PixelSequence(seq) => {
            let fragments = seq.fragments();
            let group = frame_fragments(fragments, seq.offset_table(), frames, frame)?;
            Ok(group.concat())
        }
        DicomValue::Sequence(_) => Err("Pixel Data is a sequence".into()),
    }
}

/// Which fragments make up `frame`: all of them for a single frame, one each when there are as
/// many fragments as frames, else the Basic Offset Table, else JPEG start-of-image markers.
fn frame_fragments<'a>(
    fragments: &'a [Vec<u8>],
    bot: &[u32],
    frames: u32,
    frame: u32,
) -> Result<&'a [Vec<u8>], String> {
    let f = frame as usize;
    if frames == 1 {
        return Ok(fragments);
    }
    if fragments.len() == frames as usize {
        return Ok(fragments.get(f..=f).unwrap_or_default());
    }
    // Start index of each frame's first fragment.
    let starts: Vec<usize> = if bot.len() == frames as usize {
        // Offsets count from the first fragment's item header; each item is 8 + length bytes.
        let mut at = Vec::with_capacity(fragments.len());
        let mut pos = 0u64;
        for frag in fragments {
            at.push(pos);
            pos += 8 + frag.len() as u64;
        }
        bot.iter()
            .map(|o| at.iter().position(|p| *p == u64::from(*o)))
            .collect::<Option<Vec<_>>>()
            .ok_or("the Basic Offset Table does not point at fragment starts")?
    } else {
        fragments.iter().enumerate().filter(|(_, b)| b.starts_with(&[0xFF, 0xD8])).map(|(i, _)| i).collect()
    };
    if starts.len() != frames as usize {
        return Err(format!("cannot tell {frames} frames apart in {} fragments", fragments.len()));
    }
    let a = starts[f];
    let b = starts.get(f + 1).copied().unwrap_or(fragments.len());
    fragments.get(a..b).ok_or_else(|| "fragment offsets out of order".into())
}
