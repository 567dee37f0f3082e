//! Bounds-checked little-endian reads inside one section.

use super::error::ScpError;

/// Reads fields from a section body; every read names the field so a short section says what was cut.
pub(super) struct Cursor<'a> {
    data: &'a [u8],
    pos: usize,
    section: u16,
    /// Offset of `data[0]` inside the section (the 16-byte header comes first).
    base: usize,
}

impl<'a> Cursor<'a> {
    /// A cursor over a section body that starts `base` bytes into the section.
    pub(super) fn new(data: &'a [u8], section: u16, base: usize) -> Self {
        Self { data, pos: 0, section, base }
    }

    /// Bytes not yet read.
    pub(super) fn remaining(&self) -> usize {
        self.data.len().saturating_sub(self.pos)
    }

    /// The next `n` bytes.
    pub(super) fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], ScpError> {
        let end = self.pos.checked_add(n).ok_or(self.truncated(what))?;
        let out = self.data.get(self.pos..end).ok_or(self.truncated(what))?;
        self.pos = end;
        Ok(out)
    }

    /// Skips `n` bytes.
    pub(super) fn skip(&mut self, n: usize, what: &'static str) -> Result<(), ScpError> {
        self.take(n, what).map(|_| ())
    }

    /// One byte.
    pub(super) fn u8(&mut self, what: &'static str) -> Result<u8, ScpError> {
        let b = self.take(1, what)?;
        b.first().copied().ok_or(self.truncated(what))
    }

    /// Little-endian u16.
    pub(super) fn u16(&mut self, what: &'static str) -> Result<u16, ScpError> {
        let b = self.take(2, what)?;
        let arr: [u8; 2] = b.try_into().map_err(|_| self.truncated(what))?;
        Ok(u16::from_le_bytes(arr))
    }

    /// Little-endian i16.
    pub(super) fn i16(&mut self, what: &'static str) -> Result<i16, ScpError> {
        Ok(self.u16(what)?.cast_signed())
    }

    /// Little-endian u32.
    pub(super) fn u32(&mut self, what: &'static str) -> Result<u32, ScpError> {
        let b = self.take(4, what)?;
        let arr: [u8; 4] = b.try_into().map_err(|_| self.truncated(what))?;
        Ok(u32::from_le_bytes(arr))
    }

    fn truncated(&self, what: &'static str) -> ScpError {
        ScpError::Truncated { section: self.section, offset: self.base.saturating_add(self.pos), what }
    }
}

/// Little-endian u16 at `at`, if present.
pub(super) fn le_u16(bytes: &[u8], at: usize) -> Option<u16> {
    let b = bytes.get(at..at.checked_add(2)?)?;
    Some(u16::from_le_bytes(b.try_into().ok()?))
}

/// Little-endian u32 at `at`, if present.
pub(super) fn le_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let b = bytes.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes(b.try_into().ok()?))
}
