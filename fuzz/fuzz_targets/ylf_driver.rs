//! The agent's resynchronising YLF decoder: push arbitrary bytes, drain every event.
//!
//! The same bytes pushed whole and in small uneven pieces must give the same events and counters,
//! and the counters must agree with the events.
#![no_main]

use libfuzzer_sys::fuzz_target;
use yilian_agent::driver::ylf::YlfDecoder;
use yilian_agent::driver::{DeviceEvent, Driver};

fn drain(d: &mut dyn Driver, out: &mut Vec<DeviceEvent>) {
    while let Some(e) = d.poll_event() {
        out.push(e);
    }
}

fuzz_target!(|data: &[u8]| {
    let mut whole = YlfDecoder::new();
    let mut whole_events = Vec::new();
    whole.push(data);
    drain(&mut whole, &mut whole_events);

    let mut pieces = YlfDecoder::new();
    let mut piece_events = Vec::new();
    let (mut pos, mut n) = (0, 1);
    while pos < data.len() {
        let end = (pos + n).min(data.len());
        pieces.push(&data[pos..end]);
        drain(&mut pieces, &mut piece_events);
        pos = end;
        n = n % 31 + 1;
    }
    assert_eq!(whole_events, piece_events);
    assert_eq!(whole.stats(), pieces.stats());

    let s = whole.stats();
    let frames = whole_events.iter().filter(|e| matches!(e, DeviceEvent::Frame(_))).count() as u64;
    let gaps = whole_events.iter().filter(|e| matches!(e, DeviceEvent::LinkGap { .. })).count() as u64;
    let skipped: u64 = whole_events
        .iter()
        .map(|e| match e {
            DeviceEvent::Skipped { bytes, .. } => *bytes as u64,
            _ => 0,
        })
        .sum();
    assert_eq!(s.events, frames);
    assert_eq!(s.gaps, gaps);
    assert_eq!(s.bytes_skipped, skipped);
    assert!(skipped <= data.len() as u64);
    assert!(frames <= data.iter().filter(|b| **b == 0).count() as u64);

    whole.reset();
    drain(&mut whole, &mut whole_events);
});
