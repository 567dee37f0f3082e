//! The sample codec is lossless: arbitrary i32s (4 bytes each, little endian) → encode → decode
//! gives them back exactly, and one sample fewer than encoded is refused by the limit.
#![no_main]

use libfuzzer_sys::fuzz_target;
use yilian_protocol::codec;

fuzz_target!(|data: &[u8]| {
    let samples: Vec<i32> = data.chunks_exact(4).map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    let enc = codec::encode(&samples);
    assert_eq!(enc.count as usize, samples.len());
    assert_eq!(codec::decode(&enc, samples.len() as u32).expect("own encoding decodes"), samples);
    if !samples.is_empty() {
        assert!(codec::decode(&enc, samples.len() as u32 - 1).is_err());
    }
});
