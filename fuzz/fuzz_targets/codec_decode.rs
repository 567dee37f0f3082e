//! `codec::decode` with the per-lead limit: 4 bytes of sample count (little endian), then the
//! bit stream. Whatever decodes must have the stated count and survive encode → decode.
#![no_main]

use libfuzzer_sys::fuzz_target;
use yilian_protocol::message::EncodedSamples;
use yilian_protocol::{codec, limits};

fuzz_target!(|data: &[u8]| {
    let Some((count, bits)) = data.split_first_chunk::<4>() else {
        return;
    };
    let enc = EncodedSamples { count: u32::from_le_bytes(*count), data: bits.to_vec() };
    if let Ok(samples) = codec::decode(&enc, limits::SAMPLES_PER_LEAD_MAX) {
        assert_eq!(samples.len(), enc.count as usize);
        let again = codec::encode(&samples);
        assert_eq!(codec::decode(&again, u32::MAX).expect("re-encoded samples decode"), samples);
    }
});
