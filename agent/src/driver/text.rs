//! Line-oriented device text output: what carts print (measurements, interpretation, alarms).
//!
//! Lines end in `\n` (a preceding `\r` is dropped). Chinese carts often print GB 2312/GBK; the
//! port's configured encoding converts each line to UTF-8.

use super::{DeviceEvent, Driver, DriverStats};
use encoding_rs::Encoding;
use std::collections::VecDeque;

/// Longest line kept; longer lines are cut there and the rest is counted as skipped.
pub const MAX_LINE: usize = 4096;

/// Text line decoder.
#[derive(Debug)]
pub struct TextDecoder {
    encoding: &'static Encoding,
    line: Vec<u8>,
    overflow: usize,
    events: VecDeque<DeviceEvent>,
    stats: DriverStats,
}

impl TextDecoder {
    /// A decoder for text in `encoding`.
    pub fn new(encoding: &'static Encoding) -> Self {
        Self { encoding, line: Vec::new(), overflow: 0, events: VecDeque::new(), stats: DriverStats::default() }
    }

    fn end_line(&mut self) {
        if self.line.last() == Some(&b'\r') {
            self.line.pop();
        }
        let (text, _, had_errors) = self.encoding.decode(&self.line);
        let text = text.trim_end().to_string();
        if had_errors {
            self.stats.skips += 1;
            self.events.push_back(DeviceEvent::Skipped {
                bytes: 0,
                reason: format!("line had bytes that are not {}; replaced with U+FFFD", self.encoding.name()),
            });
        }
        if self.overflow > 0 {
            self.stats.bytes_skipped += self.overflow as u64;
            self.stats.skips += 1;
            self.events.push_back(DeviceEvent::Skipped {
                bytes: self.overflow,
                reason: format!("line longer than {MAX_LINE} bytes was cut"),
            });
            self.overflow = 0;
        }
        if !text.is_empty() {
            self.stats.events += 1;
            self.events.push_back(DeviceEvent::Text(text));
        }
        self.line.clear();
    }
}

impl Driver for TextDecoder {
    fn push(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if b == b'\n' {
                self.end_line();
            } else if self.line.len() < MAX_LINE {
                self.line.push(b);
            } else {
                self.overflow += 1;
            }
        }
    }

    fn poll_event(&mut self) -> Option<DeviceEvent> {
        self.events.pop_front()
    }

    fn reset(&mut self) {
        if !self.line.is_empty() {
            self.end_line();
        }
    }

    fn stats(&self) -> DriverStats {
        self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(d: &mut TextDecoder) -> Vec<String> {
        std::iter::from_fn(|| d.poll_event())
            .filter_map(|e| match e {
                DeviceEvent::Text(t) => Some(t),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn gbk_lines_become_utf8_at_any_split() {
        let (gbk, _, _) = encoding_rs::GBK.encode("姓名: 张伟\r\nHR: 72 bpm\r\n窦性心律\n");
        for split in 0..gbk.len() {
            let mut d = TextDecoder::new(encoding_rs::GBK);
            d.push(&gbk[..split]);
            d.push(&gbk[split..]);
            assert_eq!(lines(&mut d), vec!["姓名: 张伟", "HR: 72 bpm", "窦性心律"], "split {split}");
        }
    }

    #[test]
    fn long_lines_are_cut_and_counted() {
        let mut d = TextDecoder::new(encoding_rs::UTF_8);
        d.push(&vec![b'a'; MAX_LINE + 10]);
        d.push(b"\n");
        assert_eq!(lines(&mut d)[0].len(), MAX_LINE);
        assert_eq!(d.stats().bytes_skipped, 10);
    }
}
