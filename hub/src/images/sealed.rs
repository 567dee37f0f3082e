//! Image files at rest: a file sealed in segments with the store key, so the imaging folder
//! alone yields neither a patient's name (DICOM headers carry it) nor a picture.
//!
//! Layout: `YLSEALF1`, then segments of up to [`SEGMENT`] plaintext bytes, each framed as
//! `flag (1: last, 0: more) | length (u32 BE) | sealed bytes` and sealed with
//! [`DataKey::seal`] (its own random salt, so its own key) bound to the file's label, the
//! segment's index and its flag. A flipped byte fails that segment; reordered or dropped
//! segments fail on their index; a cut file lacks its last segment; a file moved under another
//! label (another instance) fails on the label.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use yilian_protocol::at_rest::{DataKey, OVERHEAD};

/// First bytes of a sealed file.
pub const FILE_MAGIC: &[u8; 8] = b"YLSEALF1";
/// Plaintext bytes per segment.
pub const SEGMENT: usize = 1 << 20;

/// A sealed file could not be written or read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SealedFileError {
    /// File-system trouble.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The file is damaged, cut, reordered, sealed for another label or with another key.
    #[error("sealed file {path} is damaged: {reason}")]
    Damaged {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Larger than the caller allows.
    #[error("sealed file {path} is too large ({size} bytes)")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        size: u64,
    },
}

fn aad(label: &str, index: u64, last: bool) -> Vec<u8> {
    format!("yilian sealed file v1\0{label}\0{index}\0{}", u8::from(last)).into_bytes()
}

/// Writes a sealed file segment by segment; [`SealedWriter::finish`] seals the last one and
/// syncs. Dropped unfinished, the file lacks its last segment and never opens.
pub struct SealedWriter {
    file: std::io::BufWriter<std::fs::File>,
    path: PathBuf,
    key: DataKey,
    label: String,
    pending: Vec<u8>,
    index: u64,
}

impl SealedWriter {
    /// Creates (truncating) `path`, sealed for `label`.
    pub fn create(path: &Path, key: &DataKey, label: &str) -> Result<Self, SealedFileError> {
        let io = |source| SealedFileError::Io { what: "creating", path: path.to_path_buf(), source };
        let mut file = std::io::BufWriter::new(std::fs::File::create(path).map_err(io)?);
        file.write_all(FILE_MAGIC).map_err(io)?;
        Ok(Self {
            file,
            path: path.to_path_buf(),
            key: key.clone(),
            label: label.to_string(),
            pending: Vec::with_capacity(SEGMENT),
            index: 0,
        })
    }

    fn emit(&mut self, plain_len: usize, last: bool) -> Result<(), SealedFileError> {
        let sealed = self.key.seal(&aad(&self.label, self.index, last), &self.pending[..plain_len]).map_err(|e| {
            SealedFileError::Io { what: "sealing", path: self.path.clone(), source: std::io::Error::other(e) }
        })?;
        self.pending.drain(..plain_len);
        let len = u32::try_from(sealed.len()).unwrap_or(u32::MAX);
        let io = |source| SealedFileError::Io { what: "writing", path: self.path.clone(), source };
        self.file.write_all(&[u8::from(last)]).map_err(io)?;
        self.file.write_all(&len.to_be_bytes()).map_err(io)?;
        self.file.write_all(&sealed).map_err(io)?;
        self.index += 1;
        Ok(())
    }

    /// Appends plaintext.
    pub fn write_all(&mut self, mut data: &[u8]) -> Result<(), SealedFileError> {
        while !data.is_empty() {
            // A full segment is only sealed once more follows: the last one must carry the flag.
            if self.pending.len() == SEGMENT {
                self.emit(SEGMENT, false)?;
            }
            let n = (SEGMENT - self.pending.len()).min(data.len());
            self.pending.extend_from_slice(&data[..n]);
            data = &data[n..];
        }
        Ok(())
    }

    /// Seals the last segment, flushes and syncs the file.
    pub fn finish(mut self) -> Result<(), SealedFileError> {
        self.emit(self.pending.len(), true)?;
        let path = self.path.clone();
        let io = |source| SealedFileError::Io { what: "syncing", path: path.clone(), source };
        let file = self.file.into_inner().map_err(|e| io(e.into_error()))?;
        file.sync_all().map_err(io)
    }
}

/// Writes `data` sealed for `label` to `path` (through `path.part`, synced, renamed).
pub fn write(path: &Path, key: &DataKey, label: &str, data: &[u8]) -> Result<(), SealedFileError> {
    let tmp = path.with_extension("part");
    let mut w = SealedWriter::create(&tmp, key, label)?;
    w.write_all(data)?;
    w.finish()?;
    std::fs::rename(&tmp, path).map_err(|source| SealedFileError::Io {
        what: "renaming into place",
        path: path.to_path_buf(),
        source,
    })
}

/// Reads and opens the file at `path` sealed for `label`; at most `max_plain` bytes of plaintext.
pub fn read(path: &Path, key: &DataKey, label: &str, max_plain: u64) -> Result<Vec<u8>, SealedFileError> {
    let io = |what| move |source| SealedFileError::Io { what, path: path.to_path_buf(), source };
    let mut f = std::fs::File::open(path).map_err(io("opening"))?;
    let size = f.metadata().map_err(io("reading metadata of"))?.len();
    let segments = max_plain / SEGMENT as u64 + 1;
    let most = FILE_MAGIC.len() as u64 + max_plain + segments * (5 + OVERHEAD as u64);
    if size > most {
        return Err(SealedFileError::TooLarge { path: path.to_path_buf(), size });
    }
    let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    f.read_to_end(&mut bytes).map_err(io("reading"))?;
    open(&bytes, key, label).map_err(|reason| SealedFileError::Damaged { path: path.to_path_buf(), reason })
}

/// Opens a sealed file's bytes; the reason it cannot, in words.
pub fn open(bytes: &[u8], key: &DataKey, label: &str) -> Result<Vec<u8>, String> {
    let mut rest = bytes.strip_prefix(FILE_MAGIC.as_slice()).ok_or("not a sealed file (no YLSEALF1)")?;
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0u64;
    loop {
        let Some((&flag, after)) = rest.split_first() else {
            return Err(format!("cut after segment {index}: the last segment is missing"));
        };
        let last = match flag {
            0 => false,
            1 => true,
            f => return Err(format!("segment {index} has flag {f}")),
        };
        let (len, after) = after.split_at_checked(4).ok_or_else(|| format!("segment {index} is cut in its header"))?;
        let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
        if len > SEGMENT + OVERHEAD {
            return Err(format!("segment {index} claims {len} bytes"));
        }
        let (sealed, after) = after.split_at_checked(len).ok_or_else(|| format!("segment {index} is cut"))?;
        let plain = key
            .open(&aad(label, index, last), sealed)
            .map_err(|e| format!("segment {index}: {e} (altered, moved, or sealed with another key)"))?;
        out.extend_from_slice(&plain);
        rest = after;
        index += 1;
        if last {
            if !rest.is_empty() {
                return Err(format!("{} bytes after the last segment", rest.len()));
            }
            return Ok(out);
        }
    }
}

/// True if the file at `path` starts like a sealed file.
pub fn is_sealed_file(path: &Path) -> bool {
    let mut head = [0u8; 8];
    std::fs::File::open(path).and_then(|mut f| f.read_exact(&mut head)).is_ok() && &head == FILE_MAGIC
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealed(key: &DataKey, label: &str, data: &[u8]) -> Vec<u8> {
        let tmp = tempfile::tempdir().expect("tmp");
        let p = tmp.path().join("f");
        write(&p, key, label, data).expect("write");
        std::fs::read(&p).expect("read")
    }

    #[test]
    fn round_trips_at_every_segment_boundary_and_hides_the_plaintext() {
        let key = DataKey::generate().expect("key");
        for n in [0, 1, SEGMENT - 1, SEGMENT, SEGMENT + 1, 2 * SEGMENT, 2 * SEGMENT + 7] {
            let data: Vec<u8> = (0..n).map(|i| (i % 251) as u8).collect();
            let bytes = sealed(&key, "1.2.3", &data);
            assert_eq!(open(&bytes, &key, "1.2.3").expect("open"), data, "{n} bytes");
        }
        let name = "Patient^张伟".as_bytes();
        let bytes = sealed(&key, "1.2.3", &[b"DICM".as_slice(), name].concat());
        assert!(!bytes.windows(name.len()).any(|w| w == name));
    }

    #[test]
    fn flipped_cut_reordered_relabelled_and_foreign_files_are_refused() {
        let key = DataKey::generate().expect("key");
        let data: Vec<u8> = (0..2 * SEGMENT + 100).map(|i| (i % 253) as u8).collect();
        let bytes = sealed(&key, "1.2.3", &data);
        for at in [0, 8, 9, 13, 100, SEGMENT, bytes.len() - 1] {
            let mut bad = bytes.clone();
            bad[at] ^= 0x40;
            assert!(open(&bad, &key, "1.2.3").is_err(), "flip at {at}");
        }
        let seg = 5 + SEGMENT + OVERHEAD;
        assert!(open(&bytes[..8 + 2 * seg], &key, "1.2.3").expect_err("cut").contains("last segment is missing"));
        let swapped = [&bytes[..8], &bytes[8 + seg..8 + 2 * seg], &bytes[8..8 + seg], &bytes[8 + 2 * seg..]].concat();
        assert!(open(&swapped, &key, "1.2.3").is_err(), "reordered segments");
        assert!(open(&[bytes.as_slice(), b"x"].concat(), &key, "1.2.3").is_err(), "trailing bytes");
        assert!(open(&bytes, &key, "1.2.4").is_err(), "another instance's label");
        assert!(open(&bytes, &DataKey::generate().expect("key"), "1.2.3").is_err(), "another key");
        assert!(open(b"\0\0DICM", &key, "1.2.3").is_err());
    }
}
