//! `Topic::parse` and `topic::broker_addr` on arbitrary UTF-8. A parsed topic prints back to
//! exactly the string it came from.
#![no_main]

use libfuzzer_sys::fuzz_target;
use yilian_protocol::topic::{self, Channel, Topic};

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(t) = Topic::parse(s) {
        assert_eq!(t.to_string(), s);
        for c in [Channel::Up, Channel::Ack, Channel::Report, Channel::Status] {
            let other = t.with_channel(c);
            assert_eq!(Topic::parse(&other.to_string()).expect("same ids, other channel"), other);
        }
    }
    let _ = topic::broker_addr(s);
});
