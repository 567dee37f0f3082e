//! The Yilian serial framing ("YLF/1") for ECG front ends and carts that stream to the agent.
//!
//! # Wire format
//! Each frame is COBS-encoded and sent between two `0x00` delimiters (`00 ‹COBS› 00`), so a
//! receiver that starts mid-stream or sees line noise resynchronises at the next `0x00`, and
//! noise just before a frame cannot merge into it. Empty frames between back-to-back
//! delimiters are ignored. Decoded, a frame is:
//!
//! | bytes | field |
//! | --- | --- |
//! | 1 | version, `1` |
//! | 1 | frame type (below) |
//! | 2 | link sequence number, u16 little endian, +1 per frame, wrapping (gap detection) |
//! | n | payload |
//! | 4 | CRC-32 (ISO-HDLC, as zlib) of all preceding decoded bytes, little endian |
//!
//! A decoded frame is at most [`MAX_FRAME`] bytes. Integers are little endian. `str8` is a u8
//! length then UTF-8 bytes; `str16` a u16 length then UTF-8. Lead codes are SCP-ECG codes
//! ([`crate::lead`]). Samples are i16, interleaved by lead (`s[0][lead0], s[0][lead1], …`).
//!
//! | type | frame | payload |
//! | --- | --- | --- |
//! | `0x01` | Hello | model str8, firmware str8 |
//! | `0x10` | StudyStart | study id u32, priority u8 (0 stat, 1 urgent, 2 routine), rate Hz u16, resolution nV u32, acquired at ms i64, lead count u8, lead codes, patient id str8, patient name str8, sex u8 (0 unknown, 1 male, 2 female), birth year u16, month u8, day u8 (all 0: not recorded), question str16 |
//! | `0x11` | StudySamples | study id u32, first sample u32, samples per lead u16, samples |
//! | `0x12` | StudyEnd | study id u32, samples per lead u32 |
//! | `0x20` | StreamSamples | stream id u8, rate Hz u16, resolution nV u32, lead count u8, lead codes, first sample u64, time of first sample ms i64, samples per lead u16, samples |

use crate::error::FrameError;
use crate::message::{Date, Priority, Sex};

/// Framing version.
pub const VERSION: u8 = 1;
/// Largest decoded frame, header and CRC included.
pub const MAX_FRAME: usize = 8192;
/// Largest COBS-encoded frame (without the delimiter).
pub const MAX_ENCODED: usize = MAX_FRAME + MAX_FRAME / 254 + 2;
const CRC: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);

/// The start of a resting study: patient and acquisition parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StudyStart {
    /// Device-local study number.
    pub study_id: u32,
    /// Urgency chosen at the cart.
    pub priority: Priority,
    /// Sampling rate in Hz.
    pub sample_rate_hz: u16,
    /// Resolution in nV per LSB.
    pub resolution_nv: u32,
    /// Acquisition start, device clock, Unix ms.
    pub acquired_at_ms: i64,
    /// SCP-ECG lead codes, in sample order.
    pub leads: Vec<u8>,
    /// Patient id.
    pub patient_id: String,
    /// Patient name (UTF-8).
    pub patient_name: String,
    /// Sex.
    pub sex: Sex,
    /// Birth date.
    pub birth_date: Option<Date>,
    /// The clinic's question.
    pub question: String,
}

/// A block of samples from a continuous stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamSamples {
    /// Stream number.
    pub stream_id: u8,
    /// Sampling rate in Hz.
    pub sample_rate_hz: u16,
    /// Resolution in nV per LSB.
    pub resolution_nv: u32,
    /// SCP-ECG lead codes, in sample order.
    pub leads: Vec<u8>,
    /// Index of the first sample since the stream started.
    pub first_sample: u64,
    /// Device time of the first sample, Unix ms.
    pub time_ms: i64,
    /// Interleaved samples (`len = samples per lead × leads`).
    pub samples: Vec<i16>,
}

/// A decoded frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// Device identification.
    Hello {
        /// Model.
        model: String,
        /// Firmware version.
        firmware: String,
    },
    /// Start of a resting study.
    StudyStart(StudyStart),
    /// Samples of a resting study.
    StudySamples {
        /// Study number from [`StudyStart`].
        study_id: u32,
        /// Index of the first sample (per lead) in this frame.
        first_sample: u32,
        /// Interleaved samples.
        samples: Vec<i16>,
    },
    /// End of a resting study.
    StudyEnd {
        /// Study number.
        study_id: u32,
        /// Total samples per lead the device sent.
        samples_per_lead: u32,
    },
    /// Samples of a monitoring stream.
    StreamSamples(StreamSamples),
}

impl Frame {
    fn type_byte(&self) -> u8 {
        match self {
            Frame::Hello { .. } => 0x01,
            Frame::StudyStart(_) => 0x10,
            Frame::StudySamples { .. } => 0x11,
            Frame::StudyEnd { .. } => 0x12,
            Frame::StreamSamples(_) => 0x20,
        }
    }
}

/// Encodes a frame for the wire: `0x00`, the COBS bytes, `0x00`.
///
/// # Errors
/// [`FrameError::TooLong`] if the frame exceeds [`MAX_FRAME`] (send fewer samples per frame).
pub fn encode(link_seq: u16, frame: &Frame) -> Result<Vec<u8>, FrameError> {
    let mut b = vec![VERSION, frame.type_byte()];
    b.extend_from_slice(&link_seq.to_le_bytes());
    match frame {
        Frame::Hello { model, firmware } => {
            put_str8(&mut b, model);
            put_str8(&mut b, firmware);
        }
        Frame::StudyStart(s) => {
            b.extend_from_slice(&s.study_id.to_le_bytes());
            b.push(s.priority.rank());
            b.extend_from_slice(&s.sample_rate_hz.to_le_bytes());
            b.extend_from_slice(&s.resolution_nv.to_le_bytes());
            b.extend_from_slice(&s.acquired_at_ms.to_le_bytes());
            put_leads(&mut b, &s.leads);
            put_str8(&mut b, &s.patient_id);
            put_str8(&mut b, &s.patient_name);
            b.push(match s.sex {
                Sex::Unknown => 0,
                Sex::Male => 1,
                Sex::Female => 2,
            });
            let d = s.birth_date.unwrap_or(Date { year: 0, month: 0, day: 0 });
            b.extend_from_slice(&d.year.to_le_bytes());
            b.push(d.month);
            b.push(d.day);
            let q = truncate_utf8(&s.question, u16::MAX as usize);
            b.extend_from_slice(&(q.len() as u16).to_le_bytes());
            b.extend_from_slice(q.as_bytes());
        }
        Frame::StudySamples { study_id, first_sample, samples } => {
            b.extend_from_slice(&study_id.to_le_bytes());
            b.extend_from_slice(&first_sample.to_le_bytes());
            // The count per lead is implied by the StudyStart's lead count; we send the total
            // here and the receiver divides, so the frame stands alone for CRC and length checks.
            b.extend_from_slice(&(samples.len().min(u16::MAX as usize) as u16).to_le_bytes());
            put_samples(&mut b, samples);
        }
        Frame::StudyEnd { study_id, samples_per_lead } => {
            b.extend_from_slice(&study_id.to_le_bytes());
            b.extend_from_slice(&samples_per_lead.to_le_bytes());
        }
        Frame::StreamSamples(s) => {
            b.push(s.stream_id);
            b.extend_from_slice(&s.sample_rate_hz.to_le_bytes());
            b.extend_from_slice(&s.resolution_nv.to_le_bytes());
            put_leads(&mut b, &s.leads);
            b.extend_from_slice(&s.first_sample.to_le_bytes());
            b.extend_from_slice(&s.time_ms.to_le_bytes());
            let per_lead = s.samples.len() / s.leads.len().max(1);
            b.extend_from_slice(&(per_lead.min(u16::MAX as usize) as u16).to_le_bytes());
            put_samples(&mut b, &s.samples);
        }
    }
    let crc = CRC.checksum(&b);
    b.extend_from_slice(&crc.to_le_bytes());
    if b.len() > MAX_FRAME {
        return Err(FrameError::TooLong { len: b.len(), limit: MAX_FRAME });
    }
    let mut out = Vec::with_capacity(b.len() + b.len() / 254 + 3);
    out.push(0);
    out.extend(cobs::encode_vec(&b));
    out.push(0);
    Ok(out)
}

/// Decodes one COBS-encoded frame (the bytes between two `0x00` delimiters, without them).
///
/// Returns the link sequence number and the frame. Nothing is returned unless the CRC matches.
pub fn decode(encoded: &[u8]) -> Result<(u16, Frame), FrameError> {
    if encoded.len() > MAX_ENCODED {
        return Err(FrameError::TooLong { len: encoded.len(), limit: MAX_ENCODED });
    }
    let raw = cobs::decode_vec(encoded).map_err(|_| FrameError::Cobs)?;
    if raw.len() > MAX_FRAME {
        return Err(FrameError::TooLong { len: raw.len(), limit: MAX_FRAME });
    }
    if raw.len() < 8 {
        return Err(FrameError::TooShort(raw.len()));
    }
    let (body, crc_bytes) = raw.split_at(raw.len() - 4);
    let stated = u32::from_le_bytes([crc_bytes[0], crc_bytes[1], crc_bytes[2], crc_bytes[3]]);
    let computed = CRC.checksum(body);
    if stated != computed {
        return Err(FrameError::Crc { stated, computed });
    }
    if body[0] != VERSION {
        return Err(FrameError::Version(body[0]));
    }
    let frame_type = body[1];
    let link_seq = u16::from_le_bytes([body[2], body[3]]);
    let mut r = Reader { b: &body[4..], frame_type };
    let frame = match frame_type {
        0x01 => Frame::Hello { model: r.str8()?, firmware: r.str8()? },
        0x10 => {
            let study_id = r.u32()?;
            let priority = match r.u8()? {
                0 => Priority::Stat,
                1 => Priority::Urgent,
                2 => Priority::Routine,
                _ => return Err(r.err("priority is not 0, 1 or 2")),
            };
            let sample_rate_hz = r.u16()?;
            let resolution_nv = r.u32()?;
            let acquired_at_ms = r.i64()?;
            let leads = r.leads()?;
            let patient_id = r.str8()?;
            let patient_name = r.str8()?;
            let sex = match r.u8()? {
                0 => Sex::Unknown,
                1 => Sex::Male,
                2 => Sex::Female,
                _ => return Err(r.err("sex is not 0, 1 or 2")),
            };
            let (y, m, d) = (r.u16()?, r.u8()?, r.u8()?);
            let birth_date = if (y, m, d) == (0, 0, 0) {
                None
            } else {
                Some(Date::new(y, m, d).ok_or_else(|| r.err("birth date is not a calendar date"))?)
            };
            let qlen = r.u16()? as usize;
            let question = r.utf8(qlen)?;
            if sample_rate_hz == 0 || resolution_nv == 0 {
                return Err(r.err("sample rate and resolution must be non-zero"));
            }
            Frame::StudyStart(StudyStart {
                study_id,
                priority,
                sample_rate_hz,
                resolution_nv,
                acquired_at_ms,
                leads,
                patient_id,
                patient_name,
                sex,
                birth_date,
                question,
            })
        }
        0x11 => {
            let study_id = r.u32()?;
            let first_sample = r.u32()?;
            let total = r.u16()? as usize;
            Frame::StudySamples { study_id, first_sample, samples: r.samples(total)? }
        }
        0x12 => Frame::StudyEnd { study_id: r.u32()?, samples_per_lead: r.u32()? },
        0x20 => {
            let stream_id = r.u8()?;
            let sample_rate_hz = r.u16()?;
            let resolution_nv = r.u32()?;
            let leads = r.leads()?;
            let first_sample = r.u64()?;
            let time_ms = r.i64()?;
            let per_lead = r.u16()? as usize;
            let samples = r.samples(per_lead * leads.len())?;
            if sample_rate_hz == 0 || resolution_nv == 0 || leads.is_empty() {
                return Err(r.err("rate, resolution and lead count must be non-zero"));
            }
            Frame::StreamSamples(StreamSamples {
                stream_id,
                sample_rate_hz,
                resolution_nv,
                leads,
                first_sample,
                time_ms,
                samples,
            })
        }
        t => return Err(FrameError::UnknownType(t)),
    };
    if !r.b.is_empty() {
        return Err(r.err("trailing bytes after the payload"));
    }
    Ok((link_seq, frame))
}

fn put_str8(b: &mut Vec<u8>, s: &str) {
    let s = truncate_utf8(s, u8::MAX as usize);
    b.push(s.len() as u8);
    b.extend_from_slice(s.as_bytes());
}

fn put_leads(b: &mut Vec<u8>, leads: &[u8]) {
    b.push(leads.len().min(u8::MAX as usize) as u8);
    b.extend_from_slice(&leads[..leads.len().min(u8::MAX as usize)]);
}

fn put_samples(b: &mut Vec<u8>, samples: &[i16]) {
    for s in samples.iter().take(u16::MAX as usize) {
        b.extend_from_slice(&s.to_le_bytes());
    }
}

/// Cuts `s` to at most `max` bytes on a character boundary.
fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

struct Reader<'a> {
    b: &'a [u8],
    frame_type: u8,
}

impl<'a> Reader<'a> {
    fn err(&self, reason: &'static str) -> FrameError {
        FrameError::Payload { frame_type: self.frame_type, reason }
    }

    fn bytes(&mut self, n: usize) -> Result<&'a [u8], FrameError> {
        if self.b.len() < n {
            return Err(self.err("payload shorter than its fields"));
        }
        let (head, tail) = self.b.split_at(n);
        self.b = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], FrameError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.bytes(N)?);
        Ok(a)
    }

    fn u8(&mut self) -> Result<u8, FrameError> {
        Ok(self.array::<1>()?[0])
    }
    fn u16(&mut self) -> Result<u16, FrameError> {
        Ok(u16::from_le_bytes(self.array()?))
    }
    fn u32(&mut self) -> Result<u32, FrameError> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    fn u64(&mut self) -> Result<u64, FrameError> {
        Ok(u64::from_le_bytes(self.array()?))
    }
    fn i64(&mut self) -> Result<i64, FrameError> {
        Ok(i64::from_le_bytes(self.array()?))
    }

    fn utf8(&mut self, n: usize) -> Result<String, FrameError> {
        let bytes = self.bytes(n)?;
        std::str::from_utf8(bytes).map(str::to_string).map_err(|_| self.err("text is not UTF-8"))
    }

    fn str8(&mut self) -> Result<String, FrameError> {
        let n = self.u8()? as usize;
        self.utf8(n)
    }

    fn leads(&mut self) -> Result<Vec<u8>, FrameError> {
        let n = self.u8()? as usize;
        if n > crate::limits::LEADS_MAX {
            return Err(self.err("more leads than allowed"));
        }
        Ok(self.bytes(n)?.to_vec())
    }

    fn samples(&mut self, n: usize) -> Result<Vec<i16>, FrameError> {
        let bytes = self.bytes(n * 2)?;
        Ok(bytes.chunks_exact(2).map(|c| i16::from_le_bytes([c[0], c[1]])).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn start() -> Frame {
        Frame::StudyStart(StudyStart {
            study_id: 9,
            priority: Priority::Urgent,
            sample_rate_hz: 500,
            resolution_nv: 2500,
            acquired_at_ms: 1_700_000_000_000,
            leads: vec![1, 2, 61],
            patient_id: "MZ-7".into(),
            patient_name: "李秀英".into(),
            sex: Sex::Female,
            birth_date: Date::new(1949, 10, 1),
            question: "心悸，请会诊".into(),
        })
    }

    fn strip(encoded: &[u8]) -> &[u8] {
        &encoded[1..encoded.len() - 1]
    }

    #[test]
    fn every_frame_type_round_trips() {
        let frames = vec![
            Frame::Hello { model: "YL-SIM".into(), firmware: "1.0".into() },
            start(),
            Frame::StudySamples { study_id: 9, first_sample: 0, samples: vec![0, -1, i16::MAX, i16::MIN, 5, 6] },
            Frame::StudyEnd { study_id: 9, samples_per_lead: 2 },
            Frame::StreamSamples(StreamSamples {
                stream_id: 1,
                sample_rate_hz: 360,
                resolution_nv: 5000,
                leads: vec![2, 7],
                first_sample: 1 << 40,
                time_ms: -5,
                samples: vec![1, 2, 3, 4],
            }),
        ];
        for (i, f) in frames.into_iter().enumerate() {
            let enc = encode(i as u16, &f).expect("encode");
            assert_eq!(enc.iter().filter(|b| **b == 0).count(), 2, "only the delimiters are zero");
            assert_eq!(decode(strip(&enc)).expect("decode"), (i as u16, f));
        }
    }

    #[test]
    fn a_flipped_bit_never_decodes() {
        let enc = encode(1, &start()).expect("encode");
        for i in 1..enc.len() - 1 {
            for bit in 0..8 {
                let mut e = enc.clone();
                e[i] ^= 1 << bit;
                assert!(decode(strip(&e)).is_err(), "byte {i} bit {bit}");
            }
        }
    }

    #[test]
    fn oversized_frames_are_refused() {
        let f = Frame::StudySamples { study_id: 1, first_sample: 0, samples: vec![1; 5000] };
        assert!(matches!(encode(0, &f), Err(FrameError::TooLong { .. })));
        assert!(matches!(decode(&vec![1u8; MAX_ENCODED + 1]), Err(FrameError::TooLong { .. })));
    }

    /// Found by the `frame_decode` fuzz target's checks: an encoded frame can fit
    /// `MAX_ENCODED` while its decoded form exceeds `MAX_FRAME`, which `encode` refuses.
    #[test]
    fn a_frame_over_the_decoded_limit_is_refused_like_encode_refuses_it() {
        let mut raw = vec![VERSION, 0x11, 0, 0];
        raw.resize(MAX_FRAME + 28, 0); // zeros cost COBS nothing extra
        let crc = CRC.checksum(&raw);
        raw.extend_from_slice(&crc.to_le_bytes());
        let encoded = cobs::encode_vec(&raw);
        assert!(encoded.len() <= MAX_ENCODED, "the case needs an encoding within MAX_ENCODED");
        assert!(matches!(decode(&encoded), Err(FrameError::TooLong { .. })));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = decode(&data);
        }
    }
}
