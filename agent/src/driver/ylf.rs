//! Decoder of the Yilian serial framing (COBS frames, `0x00`-delimited, CRC-32).

use super::{DeviceEvent, Driver, DriverStats};
use std::collections::VecDeque;
use yilian_protocol::frame::{self, MAX_ENCODED};

/// Resynchronising YLF/1 decoder.
#[derive(Debug, Default)]
pub struct YlfDecoder {
    buf: Vec<u8>,
    /// Bytes of an over-long frame being skipped until the next delimiter.
    discarding: usize,
    next_link_seq: Option<u16>,
    events: VecDeque<DeviceEvent>,
    stats: DriverStats,
}

impl YlfDecoder {
    /// A decoder waiting for its first delimiter-terminated frame.
    pub fn new() -> Self {
        Self::default()
    }

    fn skipped(&mut self, bytes: usize, reason: String) {
        self.stats.bytes_skipped += bytes as u64;
        self.stats.skips += 1;
        self.events.push_back(DeviceEvent::Skipped { bytes, reason });
    }

    fn end_of_frame(&mut self) {
        if self.discarding > 0 {
            let n = self.discarding + 1;
            self.discarding = 0;
            self.skipped(n, format!("frame longer than {MAX_ENCODED} bytes"));
            return;
        }
        if self.buf.is_empty() {
            return; // back-to-back delimiters carry nothing
        }
        let raw = std::mem::take(&mut self.buf);
        match frame::decode(&raw) {
            Ok((seq, f)) => {
                if let Some(expected) = self.next_link_seq
                    && expected != seq
                {
                    self.stats.gaps += 1;
                    self.events.push_back(DeviceEvent::LinkGap { expected, got: seq });
                }
                self.next_link_seq = Some(seq.wrapping_add(1));
                self.stats.events += 1;
                self.events.push_back(DeviceEvent::Frame(f));
            }
            Err(e) => self.skipped(raw.len() + 1, e.to_string()),
        }
        self.buf = raw;
        self.buf.clear();
    }
}

impl Driver for YlfDecoder {
    fn push(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if b == 0 {
                self.end_of_frame();
            } else if self.discarding > 0 {
                self.discarding += 1;
            } else if self.buf.len() >= MAX_ENCODED {
                self.discarding = self.buf.len() + 1;
                self.buf.clear();
            } else {
                self.buf.push(b);
            }
        }
    }

    fn poll_event(&mut self) -> Option<DeviceEvent> {
        self.events.pop_front()
    }

    fn reset(&mut self) {
        if !self.buf.is_empty() || self.discarding > 0 {
            let n = self.buf.len() + self.discarding;
            self.buf.clear();
            self.discarding = 0;
            self.skipped(n, "partial frame when the port closed".into());
        }
        self.next_link_seq = None;
    }

    fn stats(&self) -> DriverStats {
        self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use yilian_protocol::frame::{Frame, StreamSamples};

    fn frames(n: u16) -> (Vec<Frame>, Vec<u8>) {
        let mut fs = Vec::new();
        let mut bytes = Vec::new();
        for i in 0..n {
            let f = Frame::StreamSamples(StreamSamples {
                stream_id: 0,
                sample_rate_hz: 360,
                resolution_nv: 5000,
                leads: vec![2],
                first_sample: u64::from(i) * 4,
                time_ms: 0,
                samples: vec![i as i16, 0, -1, 256],
            });
            bytes.extend(frame::encode(i, &f).expect("encode"));
            fs.push(f);
        }
        (fs, bytes)
    }

    fn drain(d: &mut YlfDecoder) -> Vec<DeviceEvent> {
        std::iter::from_fn(|| d.poll_event()).collect()
    }

    fn only_frames(evs: Vec<DeviceEvent>) -> Vec<Frame> {
        evs.into_iter()
            .filter_map(|e| match e {
                DeviceEvent::Frame(f) => Some(f),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn same_frames_whole_byte_by_byte_and_split_at_every_offset() {
        let (fs, bytes) = frames(5);
        let mut whole = YlfDecoder::new();
        whole.push(&bytes);
        assert_eq!(only_frames(drain(&mut whole)), fs);
        let mut single = YlfDecoder::new();
        for b in &bytes {
            single.push(std::slice::from_ref(b));
        }
        assert_eq!(only_frames(drain(&mut single)), fs);
        for split in 0..bytes.len() {
            let mut d = YlfDecoder::new();
            d.push(&bytes[..split]);
            d.push(&bytes[split..]);
            assert_eq!(only_frames(drain(&mut d)), fs, "split at {split}");
            assert_eq!(d.stats().bytes_skipped, 0);
        }
    }

    #[test]
    fn resynchronises_after_garbage_and_counts_it() {
        let (fs, bytes) = frames(3);
        let mut d = YlfDecoder::new();
        d.push(b"\x13\x37garbage line noise");
        d.push(&bytes);
        let evs = drain(&mut d);
        assert_eq!(only_frames(evs.clone()), fs);
        assert!(matches!(evs[0], DeviceEvent::Skipped { bytes: 21, .. }), "{evs:?}");
        assert_eq!(d.stats().bytes_skipped, 21, "20 bytes of noise and the delimiter that ended them");
    }

    #[test]
    fn never_emits_a_frame_whose_crc_fails_and_reports_the_gap() {
        let (fs, bytes) = frames(3);
        let first_end = bytes.iter().skip(1).position(|b| *b == 0).expect("delimiter") + 1;
        let mut corrupt = bytes.clone();
        corrupt[first_end + 4] ^= 0x40; // inside the second frame
        let mut d = YlfDecoder::new();
        d.push(&corrupt);
        let evs = drain(&mut d);
        assert_eq!(only_frames(evs.clone()), vec![fs[0].clone(), fs[2].clone()]);
        assert!(evs.iter().any(|e| matches!(e, DeviceEvent::Skipped { .. })));
        assert!(evs.contains(&DeviceEvent::LinkGap { expected: 1, got: 2 }));
    }

    #[test]
    fn over_long_frames_are_skipped_without_unbounded_buffering() {
        let (fs, bytes) = frames(1);
        let mut d = YlfDecoder::new();
        d.push(&vec![7u8; MAX_ENCODED * 3]);
        d.push(&[0]);
        d.push(&bytes);
        let evs = drain(&mut d);
        assert!(matches!(&evs[0], DeviceEvent::Skipped { bytes, .. } if *bytes == MAX_ENCODED * 3 + 1));
        assert_eq!(only_frames(evs), fs);
        assert!(d.buf.capacity() <= MAX_ENCODED * 2);
    }
}
