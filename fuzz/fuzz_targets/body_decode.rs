//! Every body decoder: the first byte picks the kind (`byte % 16`: 1-10 are the kinds known
//! today, 0 and 11-15 are unknown), the rest is the body. Decoded stream chunks and study parts
//! also have their samples decoded (study parts through `message::assemble`). A decoded body
//! re-encodes to an equal body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use yilian_protocol::message::{self, Payload};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let kind = u16::from(selector % 16);
    let Some(decoded) = Payload::decode(kind, body) else {
        assert!(Payload::kind_name(kind).is_none(), "known kind {kind} decoded to None");
        return;
    };
    let Ok(p) = decoded else {
        return;
    };
    assert_eq!(p.kind(), kind);
    if let Ok(bytes) = p.encode() {
        assert_eq!(Payload::decode(kind, &bytes).expect("known kind").expect("re-encoded body decodes"), p);
    }
    match &p {
        Payload::StreamChunk(c) => {
            let _ = c.validate();
            for l in &c.leads {
                let _ = l.decode();
            }
        }
        Payload::StudyPart(part) => {
            if let Ok(s) = message::assemble(std::slice::from_ref(part)) {
                let _ = s.validate();
                for l in &s.leads {
                    let _ = l.decode();
                }
            }
        }
        _ => {}
    }
});
