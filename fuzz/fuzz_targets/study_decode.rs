//! `Study::decode` on an assembled study; a decoded study is validated, its leads decoded, and it
//! must survive encode → decode and split → assemble unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use yilian_protocol::message::{self, Study};

fuzz_target!(|data: &[u8]| {
    let Ok(s) = Study::decode(data) else {
        return;
    };
    let _ = s.validate();
    for l in &s.leads {
        let _ = l.decode();
    }
    if let Ok(bytes) = s.encode() {
        assert_eq!(Study::decode(&bytes).expect("re-encoded study decodes"), s);
    }
    if let Ok(parts) = s.split() {
        assert_eq!(message::assemble(&parts).expect("own parts assemble"), s);
    }
});
