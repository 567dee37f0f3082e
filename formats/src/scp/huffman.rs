//! Section 2 Huffman tables, and decoding/encoding of the per-lead bit streams of Sections 5 and 6.
//!
//! EN 1064 §5.5: a table is a list of code structures (prefix bits, total bits, mode, base value,
//! base code). The base code is stored bit-reversed (its first bit in the least significant bit).
//! Mode 0 switches to the table numbered by the base value; otherwise, when total bits exceed
//! prefix bits, the extra bits that follow are the value itself (two's complement, MSB first).
//! "19999" as the table count means the standard's default table.

use super::cursor::Cursor;
use super::error::ScpError;

/// The table count that stands for the default table.
pub(super) const DEFAULT_MARKER: u16 = 19999;

/// One code structure, with its code turned MSB-first for matching.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Code {
    /// Bits in the code itself.
    pub prefix_bits: u8,
    /// Prefix plus the value bits that follow it.
    pub total_bits: u8,
    /// Mode 0: switch to table `value` (1-based) instead of emitting a value.
    pub switch: bool,
    /// Value emitted (or table to switch to).
    pub value: i16,
    /// The code, first bit most significant, in the low `prefix_bits` bits.
    pub code: u32,
}

/// How Sections 5 and 6 store samples.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Coding {
    /// No Section 2: plain little-endian i16 per sample.
    Raw,
    /// Huffman tables (the first is where each lead starts).
    Huffman(Vec<Vec<Code>>),
}

/// The default table of EN 1064 Annex (0, ±1..±8, then 8- and 16-bit escapes).
pub(super) fn default_table() -> Vec<Code> {
    let mut table = vec![Code { prefix_bits: 1, total_bits: 1, switch: false, value: 0, code: 0 }];
    for n in 1..=8u8 {
        // n ones, a zero, then the sign bit.
        let ones = (1u32 << n) - 1;
        let base = ones << 2;
        let bits = n + 2;
        let magnitude = i16::from(n);
        table.push(Code { prefix_bits: bits, total_bits: bits, switch: false, value: magnitude, code: base });
        table.push(Code { prefix_bits: bits, total_bits: bits, switch: false, value: -magnitude, code: base | 1 });
    }
    table.push(Code { prefix_bits: 10, total_bits: 18, switch: false, value: 0, code: 0b11_1111_1110 });
    table.push(Code { prefix_bits: 10, total_bits: 26, switch: false, value: 0, code: 0b11_1111_1111 });
    table
}

/// Reads Section 2.
pub(super) fn parse_section2(body: &[u8]) -> Result<Coding, ScpError> {
    let mut c = Cursor::new(body, 2, super::sections::HEADER_LEN);
    let count = c.u16("the number of Huffman tables")?;
    if count == DEFAULT_MARKER {
        return Ok(Coding::Huffman(vec![default_table()]));
    }
    if count == 0 {
        return Err(ScpError::HuffmanTable { table: 0, reason: "Section 2 holds no tables".into() });
    }
    let mut tables = Vec::new();
    for t in 1..=usize::from(count) {
        let codes = c.u16("the number of codes in a Huffman table")?;
        if codes == 0 {
            return Err(ScpError::HuffmanTable { table: t, reason: "has no codes".into() });
        }
        // Each code structure is 9 bytes: check before allocating for them.
        if usize::from(codes).saturating_mul(9) > c.remaining() {
            return Err(ScpError::Truncated { section: 2, offset: body.len(), what: "a Huffman table's codes" });
        }
        let mut table = Vec::with_capacity(usize::from(codes));
        for _ in 0..codes {
            let prefix_bits = c.u8("a code's prefix bits")?;
            let total_bits = c.u8("a code's total bits")?;
            let mode = c.u8("a code's mode")?;
            let value = c.i16("a code's base value")?;
            let stored = c.u32("a code's base code")?;
            if !(1..=32).contains(&prefix_bits) || total_bits < prefix_bits || total_bits - prefix_bits > 32 {
                return Err(ScpError::HuffmanTable {
                    table: t,
                    reason: format!("a code has {prefix_bits} prefix bits and {total_bits} total bits"),
                });
            }
            let switch = mode == 0;
            if switch && !(1..=i32::from(count)).contains(&i32::from(value)) {
                return Err(ScpError::HuffmanTable {
                    table: t,
                    reason: format!("a code switches to table {value}, there are {count}"),
                });
            }
            let code = reverse(stored, prefix_bits);
            table.push(Code { prefix_bits, total_bits, switch, value, code });
        }
        tables.push(table);
    }
    Ok(Coding::Huffman(tables))
}

/// The low `bits` bits of `stored`, in reverse order.
pub(super) fn reverse(stored: u32, bits: u8) -> u32 {
    let shift = 32u32.saturating_sub(u32::from(bits));
    stored.reverse_bits().checked_shr(shift).unwrap_or(0)
}

/// Reads bits most significant first.
struct Bits<'a> {
    data: &'a [u8],
    pos: u64,
}

impl Bits<'_> {
    fn next(&mut self) -> Option<u32> {
        let byte = self.data.get(usize::try_from(self.pos / 8).ok()?)?;
        let bit = (byte >> (7 - (self.pos % 8))) & 1;
        self.pos += 1;
        Some(u32::from(bit))
    }

    fn take(&mut self, n: u8) -> Option<u32> {
        let mut v = 0u32;
        for _ in 0..n {
            v = (v << 1) | self.next()?;
        }
        Some(v)
    }
}

/// Decodes up to `want` values (still difference-encoded) from one lead's bytes; fewer when the
/// bytes end first. `Err(bit)` when no code matches the bits from `bit` on.
pub(super) fn decode(tables: &[Vec<Code>], data: &[u8], want: usize) -> Result<Vec<i32>, u64> {
    // Every value takes at least one bit, so the stream bounds the allocation too.
    let cap = want.min(data.len().saturating_mul(8));
    let mut values = Vec::with_capacity(cap);
    let mut bits = Bits { data, pos: 0 };
    let mut table = tables.first().map(Vec::as_slice).unwrap_or_default();
    let mut acc = 0u32;
    let mut len = 0u8;
    let mut start = 0u64;
    while values.len() < want {
        let Some(bit) = bits.next() else {
            return Ok(values);
        };
        acc = (acc << 1) | bit;
        len += 1;
        let Some(code) = table.iter().find(|c| c.prefix_bits == len && c.code == acc) else {
            if len >= 32 {
                return Err(start);
            }
            continue;
        };
        if code.switch {
            let index = usize::try_from(code.value).ok().and_then(|v| v.checked_sub(1));
            table = index.and_then(|i| tables.get(i)).map(Vec::as_slice).ok_or(start)?;
        } else {
            let extra = code.total_bits - code.prefix_bits;
            if extra == 0 {
                values.push(i32::from(code.value));
            } else {
                let Some(raw) = bits.take(extra) else {
                    return Ok(values);
                };
                let shift = 32 - u32::from(extra);
                values.push((raw << shift).cast_signed() >> shift);
            }
        }
        acc = 0;
        len = 0;
        start = bits.pos;
    }
    Ok(values)
}

/// Writes bits most significant first.
#[derive(Default)]
struct BitWriter {
    out: Vec<u8>,
    used: u8,
}

impl BitWriter {
    fn put(&mut self, value: u32, bits: u8) {
        for i in (0..bits).rev() {
            if self.used == 0 {
                self.out.push(0);
            }
            let bit = ((value >> i) & 1) as u8;
            if let Some(last) = self.out.last_mut() {
                *last |= bit << (7 - self.used);
            }
            self.used = (self.used + 1) % 8;
        }
    }
}

/// Encodes values with the default table; `Err(index)` names the first value outside i16.
pub(super) fn encode_default(values: &[i32]) -> Result<Vec<u8>, usize> {
    let mut w = BitWriter::default();
    for (i, &v) in values.iter().enumerate() {
        match v {
            0 => w.put(0, 1),
            -8..=8 => {
                let n = v.unsigned_abs();
                let sign = u32::from(v < 0);
                // n ones, a zero, the sign: n + 2 bits.
                w.put((((1u32 << n) - 1) << 2) | sign, (n + 2) as u8);
            }
            -128..=127 => {
                w.put(0b11_1111_1110, 10);
                w.put(u32::from(v.cast_unsigned() as u8), 8);
            }
            -32768..=32767 => {
                w.put(0b11_1111_1111, 10);
                w.put(u32::from(v.cast_unsigned() as u16), 16);
            }
            _ => return Err(i),
        }
    }
    Ok(w.out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_table_codes_match_the_standard_bit_reversed_values() {
        // ECG Toolkit and the standard list base codes bit-reversed: +1 → 1, -1 → 5, +2 → 3, -2 → 11,
        // 8-bit escape → 511, 16-bit escape → 1023.
        let t = default_table();
        let stored = |c: &Code| reverse(c.code, c.prefix_bits);
        let find = |v: i16, total: u8| t.iter().find(|c| c.value == v && c.total_bits == total).expect("code");
        assert_eq!(stored(find(1, 3)), 1);
        assert_eq!(stored(find(-1, 3)), 5);
        assert_eq!(stored(find(2, 4)), 3);
        assert_eq!(stored(find(-2, 4)), 11);
        assert_eq!(stored(find(0, 18)), 511);
        assert_eq!(stored(find(0, 26)), 1023);
    }

    #[test]
    fn encode_then_decode_gives_the_values_back() {
        let values = vec![0, 1, -1, 8, -8, 9, -9, 127, -128, 128, -129, 32767, -32768, 0, 0, 3];
        let bytes = encode_default(&values).expect("in range");
        let decoded = decode(&[default_table()], &bytes, values.len()).expect("decodes");
        assert_eq!(decoded, values);
        let short = decode(&[default_table()], bytes.get(..2).expect("2 bytes"), values.len()).expect("decodes");
        assert!(short.len() < values.len() && values.starts_with(&short));
        assert_eq!(encode_default(&[40000]), Err(0));
    }
}
