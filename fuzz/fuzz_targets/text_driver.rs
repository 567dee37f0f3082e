//! The agent's text line driver. The first byte picks the port encoding (UTF-8, GBK, GB18030),
//! the rest is what the port delivers. Whole and piecewise pushes must give the same events.
#![no_main]

use libfuzzer_sys::fuzz_target;
use yilian_agent::driver::text::TextDecoder;
use yilian_agent::driver::{DeviceEvent, Driver};

fn drain(d: &mut dyn Driver, out: &mut Vec<DeviceEvent>) {
    while let Some(e) = d.poll_event() {
        out.push(e);
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, bytes)) = data.split_first() else {
        return;
    };
    let encoding = [encoding_rs::UTF_8, encoding_rs::GBK, encoding_rs::GB18030][usize::from(selector % 3)];

    let mut whole = TextDecoder::new(encoding);
    let mut whole_events = Vec::new();
    whole.push(bytes);
    drain(&mut whole, &mut whole_events);

    let mut pieces = TextDecoder::new(encoding);
    let mut piece_events = Vec::new();
    let (mut pos, mut n) = (0, 1);
    while pos < bytes.len() {
        let end = (pos + n).min(bytes.len());
        pieces.push(&bytes[pos..end]);
        drain(&mut pieces, &mut piece_events);
        pos = end;
        n = n % 31 + 1;
    }
    assert_eq!(whole_events, piece_events);
    assert_eq!(whole.stats(), pieces.stats());

    whole.reset();
    drain(&mut whole, &mut whole_events);
    for e in &whole_events {
        if let DeviceEvent::Text(t) = e {
            assert!(!t.is_empty() && !t.contains('\n') && t.trim_end() == t, "{t:?}");
        }
    }
    let texts = whole_events.iter().filter(|e| matches!(e, DeviceEvent::Text(_))).count() as u64;
    assert_eq!(whole.stats().events, texts);
});
