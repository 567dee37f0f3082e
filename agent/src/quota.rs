//! The spool's disk policy, for a clinic PC whose disk fills up (or the configured quota):
//!
//! - Resting studies, receipts and device output are never dropped. They are written even past
//!   the quota; if the disk itself refuses, the uplink holds them in memory and retries, and the
//!   agent says so loudly in its log and on its status topic.
//! - Monitoring stream chunks give way: the oldest chunk not currently in flight is removed
//!   first, and a new chunk that finds no room is not written. Every dropped range is sent to
//!   the hub as a signed [`StreamGap`], so the hub records the gap instead of silence.

use crate::spool::{Spool, SpoolError};
use std::collections::HashSet;
use yilian_protocol::envelope::Envelope;
use yilian_protocol::message::{Lane, Payload, StreamChunk, StreamGap, kind};

/// Why a gap was declared.
pub const SPOOL_FULL: &str = "spool full at the clinic: oldest monitoring data dropped";

/// The sample range of a chunk.
pub fn chunk_gap(c: &StreamChunk) -> StreamGap {
    let n = u64::from(c.leads.first().map_or(0, |l| l.samples.count));
    StreamGap {
        stream_id: c.stream_id,
        first_sample: c.first_sample,
        end_sample: c.first_sample.saturating_add(n),
        reason: SPOOL_FULL.into(),
    }
}

/// The range of a spooled stream chunk, if `seq` is one.
fn spooled_chunk(spool: &mut Spool, seq: u64) -> Option<StreamGap> {
    let bytes = spool.read(seq).ok()??;
    let env = Envelope::decode(&bytes).ok()?;
    if env.header.kind != kind::STREAM_CHUNK {
        return None;
    }
    match Payload::decode(env.header.kind, &env.body)? {
        Ok(Payload::StreamChunk(c)) => Some(chunk_gap(&c)),
        _ => None,
    }
}

/// Removes the oldest stream chunks not in `protected` until `need` more bytes fit under `max`,
/// returning what was dropped. Stops early when no chunk is left to drop.
pub fn make_room(
    spool: &mut Spool,
    need: u64,
    max: u64,
    protected: &HashSet<u64>,
) -> Result<Vec<StreamGap>, SpoolError> {
    let mut dropped = Vec::new();
    if spool.bytes().saturating_add(need) <= max {
        return Ok(dropped);
    }
    let candidates: Vec<u64> = spool
        .pending()
        .filter(|(lane, seq)| *lane == Lane::Stream && !protected.contains(seq))
        .map(|(_, s)| s)
        .collect();
    for seq in candidates {
        if spool.bytes().saturating_add(need) <= max {
            break;
        }
        if let Some(gap) = spooled_chunk(spool, seq) {
            spool.remove(seq)?;
            dropped.push(gap);
        }
    }
    Ok(dropped)
}

/// Joins adjacent ranges of the same stream.
pub fn merge(mut gaps: Vec<StreamGap>) -> Vec<StreamGap> {
    gaps.sort_by_key(|g| (g.stream_id, g.first_sample));
    let mut out: Vec<StreamGap> = Vec::new();
    for g in gaps {
        match out.last_mut() {
            Some(last) if last.stream_id == g.stream_id && last.end_sample >= g.first_sample => {
                last.end_sample = last.end_sample.max(g.end_sample);
            }
            _ => out.push(g),
        }
    }
    out
}

/// True if the error is the disk being full.
pub fn is_disk_full(e: &SpoolError) -> bool {
    matches!(e, SpoolError::Append { source, .. } | SpoolError::Lease { source, .. }
        if source.kind() == std::io::ErrorKind::StorageFull || source.raw_os_error() == Some(28))
}

#[cfg(test)]
mod tests {
    use super::*;
    use yilian_protocol::envelope::{Header, seal};
    use yilian_protocol::keys::SigningKey;
    use yilian_protocol::message::{DeviceOutput, LeadSamples};
    use yilian_protocol::topic::{Channel, Topic};

    fn put(s: &mut Spool, key: &SigningKey, lane: Lane, payload: &Payload) -> u64 {
        let topic = Topic::new("s", "d", Channel::Up).expect("topic");
        let seq = s.allocate_seq().expect("seq");
        let bytes = seal(key, Header::new(key, "d", seq, 0, lane), &topic, payload).expect("seal");
        s.append(lane, seq, &bytes).expect("append");
        seq
    }

    fn chunk(first: u64) -> Payload {
        let samples: Vec<i32> = (0..360).map(|i| (i * 37 % 101) - 50).collect();
        Payload::StreamChunk(StreamChunk {
            stream_id: 0,
            sample_rate_hz: 360,
            resolution_nv: 5000,
            first_sample: first,
            start_time_ms: 0,
            leads: vec![LeadSamples::encode("II", &samples)],
        })
    }

    #[test]
    fn the_oldest_unprotected_chunks_go_first_and_nothing_else_is_touched() {
        let dir = tempfile::tempdir().expect("tmp");
        let (mut s, _) =
            Spool::open(dir.path(), yilian_protocol::at_rest::DataKey::generate().expect("key")).expect("open");
        let key = SigningKey::generate().expect("key");
        let line = Payload::DeviceOutput(DeviceOutput { port: "p".into(), line: "x".into(), received_at_ms: 0 });
        let out = put(&mut s, &key, Lane::Stream, &line);
        let c0 = put(&mut s, &key, Lane::Stream, &chunk(0));
        let c1 = put(&mut s, &key, Lane::Stream, &chunk(360));
        let c2 = put(&mut s, &key, Lane::Stream, &chunk(720));
        let c3 = put(&mut s, &key, Lane::Stream, &chunk(1080));
        let per_chunk = s.bytes() / 5;
        let protected = HashSet::from([c0]);
        let max = s.bytes();
        let dropped = make_room(&mut s, per_chunk * 2, max, &protected).expect("room");
        assert_eq!(dropped.iter().map(|g| g.first_sample).collect::<Vec<_>>(), vec![360, 720]);
        assert!(s.contains(out) && s.contains(c0) && !s.contains(c1) && !s.contains(c2) && s.contains(c3));
        assert_eq!(merge(dropped).len(), 1, "adjacent ranges merge into one gap");
    }
}
