//! Arbitrary bytes never panic a decoder, and no decode allocates beyond its limit.

use proptest::prelude::*;
use yilian_protocol::envelope::Envelope;
use yilian_protocol::keys::SigningKey;
use yilian_protocol::message::{Payload, kind};
use yilian_protocol::topic::{Channel, Topic};
use yilian_protocol::{frame, limits, message, topic};

const KINDS: [u16; 8] = [
    kind::STREAM_CHUNK,
    kind::STUDY_PART,
    kind::DEVICE_OUTPUT,
    kind::REPORT_RECEIPT,
    kind::STATUS,
    kind::ACK,
    kind::REPORT,
    99,
];

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn envelope_and_verify_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        if let Ok(env) = Envelope::decode(&bytes) {
            let key = SigningKey::generate().expect("rng").public_key();
            let t = Topic::new("s", "d", Channel::Up).expect("topic");
            let _ = env.verify(&key, &t, Some(0));
        }
    }

    #[test]
    fn every_body_decoder_never_panics(k in proptest::sample::select(KINDS.to_vec()), bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        if let Some(Ok(p)) = Payload::decode(k, &bytes) {
            // A decoded chunk or study part may still carry hostile sample data.
            match p {
                Payload::StreamChunk(c) => for l in c.leads { let _ = l.decode(); },
                Payload::StudyPart(part) => { let _ = message::assemble(&[part]); },
                _ => {}
            }
        }
    }

    #[test]
    fn study_decoder_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
        if let Ok(s) = message::Study::decode(&bytes) {
            for l in s.leads { let _ = l.decode(); }
        }
    }

    #[test]
    fn frame_and_topic_parsers_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..1024), s in ".{0,80}") {
        let _ = frame::decode(&bytes);
        let _ = topic::Topic::parse(&s);
        let _ = topic::broker_addr(&s);
    }

    /// Length prefixes that claim far more than the input holds fail without allocating them:
    /// bincode is held to the kind's byte limit, and vectors are claimed against it.
    #[test]
    fn huge_length_prefixes_are_refused(prefix in proptest::collection::vec(any::<u8>(), 0..16)) {
        let mut bytes = prefix;
        bytes.extend_from_slice(&[0xfd, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]);
        prop_assert!(Envelope::decode(&bytes).is_err());
        for k in KINDS {
            if let Some(r) = Payload::decode(k, &bytes) { prop_assert!(r.is_err()); }
        }
    }
}

#[test]
fn a_body_one_byte_over_its_limit_is_refused_before_decoding() {
    let body = vec![0u8; limits::DEVICE_OUTPUT_MAX + 1];
    let err = Payload::decode(kind::DEVICE_OUTPUT, &body).expect("known kind").expect_err("too large");
    assert!(matches!(err, yilian_protocol::DecodeError::TooLarge { .. }), "{err}");
}
