//! `frame::decode` on the bytes between two delimiters. A frame that decodes must survive
//! `encode` → `decode` unchanged (whenever it can be encoded at all).
#![no_main]

use libfuzzer_sys::fuzz_target;
use yilian_protocol::frame;

fuzz_target!(|data: &[u8]| {
    if let Ok((seq, f)) = frame::decode(data)
        && let Ok(wire) = frame::encode(seq, &f)
    {
        assert_eq!(wire.first(), Some(&0));
        assert_eq!(wire.last(), Some(&0));
        let again = frame::decode(&wire[1..wire.len() - 1]).expect("a re-encoded frame decodes");
        assert_eq!(again, (seq, f));
    }
});
