//! `Envelope::decode`, then `verify` with the golden test key on every channel of the golden
//! device's topic; a verified stream chunk or study part then has its samples decoded.
//! A decoded envelope must re-encode to an equal envelope.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::LazyLock;
use yilian_protocol::envelope::Envelope;
use yilian_protocol::keys::{PublicKey, SigningKey};
use yilian_protocol::message::{self, Payload};
use yilian_protocol::topic::{Channel, Topic};
use yilian_protocol::{limits, wire};

static KEY: LazyLock<PublicKey> = LazyLock::new(|| {
    SigningKey::from_pkcs8(include_bytes!("../../protocol/tests/data/golden/v1/test-key.pk8"))
        .expect("golden key")
        .public_key()
});

static TOPICS: LazyLock<Vec<Topic>> = LazyLock::new(|| {
    [Channel::Up, Channel::Ack, Channel::Report, Channel::Status]
        .into_iter()
        .map(|c| Topic::new("xiangzhen-1", "cart-1", c).expect("topic"))
        .collect()
});

fuzz_target!(|data: &[u8]| {
    let Ok(env) = Envelope::decode(data) else {
        return;
    };
    if let Ok(bytes) = wire::encode("envelope", &env, limits::ENVELOPE_MAX) {
        assert_eq!(Envelope::decode(&bytes).expect("re-encoded envelope decodes"), env);
    }
    for topic in TOPICS.iter() {
        let Ok(v) = env.verify(&KEY, topic, None) else {
            continue;
        };
        assert_eq!(v.header(), &env.header);
        match v.payload() {
            Payload::StreamChunk(c) => {
                let _ = c.validate();
                for l in &c.leads {
                    let _ = l.decode();
                }
            }
            Payload::StudyPart(p) => {
                if let Ok(s) = message::assemble(std::slice::from_ref(p)) {
                    for l in &s.leads {
                        let _ = l.decode();
                    }
                }
            }
            _ => {}
        }
    }
});
