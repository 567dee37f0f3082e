//! Turns device frames into protocol bodies: resting studies and fixed-length stream chunks.
//!
//! Pure state machine: frames in, [`Assembled`] values out, time passed in by the caller.

use std::collections::HashMap;
use yilian_protocol::frame::{Frame, StreamSamples, StudyStart};
use yilian_protocol::lead;
use yilian_protocol::limits;
use yilian_protocol::message::{LeadSamples, Patient, StreamChunk, Study, StudyLead};

/// What the assembler produced.
#[derive(Debug, Clone, PartialEq)]
pub enum Assembled {
    /// A complete resting study.
    Study(Box<Study>),
    /// A stream chunk.
    Chunk(StreamChunk),
    /// Something the operator must be told (a study that cannot be sent whole).
    Problem(String),
}

/// Studies a cart may have open at once; a cart records one at a time, so more means starts
/// whose end never came.
pub const MAX_PENDING_STUDIES: usize = 4;
/// Samples (all leads) in one stream chunk at most, so the worst-case compressed chunk (8 bytes
/// a sample) fits its body limit.
pub const CHUNK_SAMPLES_MAX: usize = limits::STREAM_CHUNK_MAX / 8;

#[derive(Debug)]
struct PendingStudy {
    started: u64,
    start: StudyStart,
    /// Per lead.
    samples: Vec<Vec<i32>>,
    /// First missing sample range, if frames were lost.
    broken: Option<String>,
}

#[derive(Debug)]
struct PendingChunk {
    sample_rate_hz: u32,
    resolution_nv: u32,
    leads: Vec<u8>,
    first_sample: u64,
    start_time_ms: i64,
    samples: Vec<Vec<i32>>,
}

impl PendingChunk {
    fn len(&self) -> usize {
        self.samples.first().map_or(0, Vec::len)
    }

    fn into_chunk(self, stream_id: u32) -> StreamChunk {
        StreamChunk {
            stream_id,
            sample_rate_hz: self.sample_rate_hz,
            resolution_nv: self.resolution_nv,
            first_sample: self.first_sample,
            start_time_ms: self.start_time_ms,
            leads: self
                .leads
                .iter()
                .zip(&self.samples)
                .map(|(code, s)| LeadSamples::encode(&lead_name(*code), s))
                .collect(),
        }
    }
}

/// `{device}-{acquired_at_ms}-{cart study number}-{8 hex of SHA-256 over the leads}`: the same
/// recording sent twice maps to the same study, and a cart whose study counter or clock went
/// back can never make a new recording collide with an old one.
pub fn study_uid(device: &str, acquired_at_ms: i64, study_id: u32, leads: &[StudyLead]) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for l in leads {
        ctx.update(l.lead.as_bytes());
        ctx.update(&[0]);
        ctx.update(&l.samples.count.to_le_bytes());
        ctx.update(&l.samples.data);
    }
    let digest = ctx.finish();
    format!("{device}-{acquired_at_ms}-{study_id}-{}", hex::encode(&digest.as_ref()[..4]))
}

fn lead_name(code: u8) -> String {
    lead::name_of(code).map_or_else(|| format!("lead-{code}"), str::to_string)
}

/// Study and stream assembler for one device.
#[derive(Debug)]
pub struct Assembler {
    device_id: String,
    model: String,
    chunk_ms: u32,
    studies: HashMap<u32, PendingStudy>,
    chunks: HashMap<u8, PendingChunk>,
    starts: u64,
}

impl Assembler {
    /// An assembler making chunks of `chunk_ms` milliseconds for `device_id`.
    pub fn new(device_id: &str, chunk_ms: u32) -> Self {
        Self {
            device_id: device_id.to_string(),
            model: String::from("unknown"),
            chunk_ms: chunk_ms.max(1),
            studies: HashMap::new(),
            chunks: HashMap::new(),
            starts: 0,
        }
    }

    /// Handles one frame.
    pub fn handle(&mut self, frame: Frame) -> Vec<Assembled> {
        match frame {
            Frame::Hello { model, firmware } => {
                self.model = format!("{model} {firmware}");
                vec![]
            }
            Frame::StudyStart(start) => {
                let id = start.study_id;
                let leads = start.leads.len();
                self.starts += 1;
                let mut out = Vec::new();
                if !self.studies.contains_key(&id) && self.studies.len() >= MAX_PENDING_STUDIES {
                    let oldest = self.studies.iter().min_by_key(|(_, p)| p.started).map(|(k, _)| *k);
                    if let Some(old) = oldest.and_then(|k| self.studies.remove(&k)) {
                        out.push(Assembled::Problem(format!(
                            "study {} started but never ended; discarded after {} samples per lead",
                            old.start.study_id,
                            old.samples.first().map_or(0, Vec::len)
                        )));
                    }
                }
                let pending =
                    PendingStudy { started: self.starts, start, samples: vec![Vec::new(); leads], broken: None };
                if let Some(p) = self.studies.insert(id, pending) {
                    out.push(Assembled::Problem(format!(
                        "study {id} restarted by the cart after {} samples per lead; the earlier attempt is discarded",
                        p.samples.first().map_or(0, Vec::len)
                    )));
                }
                out
            }
            Frame::StudySamples { study_id, first_sample, samples } => {
                self.study_samples(study_id, first_sample, &samples)
            }
            Frame::StudyEnd { study_id, samples_per_lead } => self.study_end(study_id, samples_per_lead),
            Frame::StreamSamples(s) => self.stream(s),
        }
    }

    fn study_samples(&mut self, study_id: u32, first: u32, samples: &[i16]) -> Vec<Assembled> {
        let Some(p) = self.studies.get_mut(&study_id) else {
            return vec![Assembled::Problem(format!("samples for study {study_id} without its start frame; dropped"))];
        };
        let leads = p.samples.len();
        if leads == 0 || !samples.len().is_multiple_of(leads) {
            p.broken.get_or_insert_with(|| {
                format!("a frame of {} samples does not divide into {leads} leads", samples.len())
            });
            return vec![];
        }
        let have = p.samples[0].len() as u32;
        if first != have {
            p.broken.get_or_insert_with(|| format!("samples {have}..{first} missing (frames lost on the cable)"));
            return vec![];
        }
        if p.samples[0].len() + samples.len() / leads > limits::SAMPLES_PER_LEAD_MAX as usize {
            p.broken.get_or_insert_with(|| format!("longer than {} samples per lead", limits::SAMPLES_PER_LEAD_MAX));
            return vec![];
        }
        for frame in samples.chunks_exact(leads) {
            for (lead, s) in p.samples.iter_mut().zip(frame) {
                lead.push(i32::from(*s));
            }
        }
        vec![]
    }

    fn study_end(&mut self, study_id: u32, declared: u32) -> Vec<Assembled> {
        let Some(p) = self.studies.remove(&study_id) else {
            return vec![Assembled::Problem(format!("end of study {study_id} without its start frame"))];
        };
        let have = p.samples.first().map_or(0, Vec::len) as u32;
        if p.broken.is_none() && have != declared {
            return vec![Assembled::Problem(format!(
                "study {study_id} incomplete: cart declared {declared} samples per lead, {have} arrived; not sent, please record again"
            ))];
        }
        if let Some(why) = p.broken {
            return vec![Assembled::Problem(format!(
                "study {study_id} incomplete: {why}; not sent, please record again"
            ))];
        }
        let s = p.start;
        let resolution_nv = f64::from(s.resolution_nv);
        let leads: Vec<StudyLead> = s
            .leads
            .iter()
            .zip(&p.samples)
            .map(|(code, v)| StudyLead::encode(&lead_name(*code), resolution_nv, v))
            .collect();
        let mut study = Study {
            study_uid: study_uid(&self.device_id, s.acquired_at_ms, s.study_id, &leads),
            patient: Patient {
                id: s.patient_id,
                name: s.patient_name,
                sex: s.sex,
                birth_date: s.birth_date,
                age_years: None,
            },
            question: s.question,
            priority: s.priority,
            acquired_at_ms: s.acquired_at_ms,
            sample_rate_hz: u32::from(s.sample_rate_hz),
            device_model: self.model.clone(),
            leads,
            warnings: vec![],
            median_beat: None,
            annotations: vec![],
            measurements: vec![],
            interpretation: vec![],
            source: None,
        };
        crate::gate::check(&mut study);
        vec![Assembled::Study(Box::new(study))]
    }

    fn stream(&mut self, s: StreamSamples) -> Vec<Assembled> {
        let mut out = Vec::new();
        let n_leads = s.leads.len();
        let per_lead = s.samples.len() / n_leads.max(1);
        let rate = u32::from(s.sample_rate_hz);
        let chunk_len = (((u64::from(rate) * u64::from(self.chunk_ms)) / 1000).max(1) as usize)
            .min(CHUNK_SAMPLES_MAX / n_leads.max(1))
            .max(1);
        // A new chunk starts where the stream's parameters change or samples are missing; the
        // hub sees the missing range from `first_sample`.
        let continues = self.chunks.get(&s.stream_id).is_some_and(|c| {
            c.sample_rate_hz == rate
                && c.resolution_nv == s.resolution_nv
                && c.leads == s.leads
                && c.first_sample.checked_add(c.len() as u64) == Some(s.first_sample)
        });
        if !continues && let Some(c) = self.chunks.remove(&s.stream_id) {
            out.push(Assembled::Chunk(c.into_chunk(u32::from(s.stream_id))));
        }
        if s.first_sample.checked_add(per_lead as u64).is_none_or(|end| end > i64::MAX as u64) {
            out.push(Assembled::Problem(format!(
                "stream {} sample index {} out of range; frame dropped",
                s.stream_id, s.first_sample
            )));
            return out;
        }
        for i in 0..per_lead {
            let c = self.chunks.entry(s.stream_id).or_insert_with(|| PendingChunk {
                sample_rate_hz: rate,
                resolution_nv: s.resolution_nv,
                leads: s.leads.clone(),
                first_sample: s.first_sample + i as u64,
                start_time_ms: s.time_ms.saturating_add((i as i64 * 1000) / i64::from(rate.max(1))),
                samples: vec![Vec::with_capacity(chunk_len); n_leads],
            });
            for (lead, v) in c.samples.iter_mut().enumerate() {
                v.push(i32::from(s.samples[i * n_leads + lead]));
            }
            if c.len() >= chunk_len
                && let Some(c) = self.chunks.remove(&s.stream_id)
            {
                out.push(Assembled::Chunk(c.into_chunk(u32::from(s.stream_id))));
            }
        }
        out
    }

    /// The port closed (cable pulled): studies in progress cannot complete, so each is reported
    /// with how far it got; partial stream chunks are emitted.
    pub fn port_closed(&mut self) -> Vec<Assembled> {
        let mut ids: Vec<u32> = self.studies.keys().copied().collect();
        ids.sort_unstable();
        let mut out: Vec<Assembled> = ids
            .into_iter()
            .filter_map(|id| self.studies.remove(&id))
            .map(|p| {
                Assembled::Problem(format!(
                    "study {} interrupted: the serial line closed after {} samples per lead; not sent, please send it again",
                    p.start.study_id,
                    p.samples.first().map_or(0, Vec::len)
                ))
            })
            .collect();
        out.extend(self.flush_streams());
        out
    }

    /// Emits partial stream chunks (the port closed, or the agent is stopping).
    pub fn flush_streams(&mut self) -> Vec<Assembled> {
        let mut ids: Vec<u8> = self.chunks.keys().copied().collect();
        ids.sort_unstable();
        ids.into_iter()
            .filter_map(|id| self.chunks.remove(&id).map(|c| Assembled::Chunk(c.into_chunk(u32::from(id)))))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use yilian_protocol::message::{Payload, Priority, Sex};

    fn start(id: u32) -> Frame {
        Frame::StudyStart(StudyStart {
            study_id: id,
            priority: Priority::Stat,
            sample_rate_hz: 500,
            resolution_nv: 1000,
            acquired_at_ms: 1000,
            leads: vec![1, 2],
            patient_id: "p".into(),
            patient_name: "王芳".into(),
            sex: Sex::Female,
            birth_date: None,
            question: "q".into(),
        })
    }

    #[test]
    fn a_complete_study_is_assembled_sample_exact() {
        let mut a = Assembler::new("cart-1", 1000);
        assert!(a.handle(start(1)).is_empty());
        a.handle(Frame::StudySamples { study_id: 1, first_sample: 0, samples: vec![1, 10, 2, 20] });
        a.handle(Frame::StudySamples { study_id: 1, first_sample: 2, samples: vec![3, 30] });
        let out = a.handle(Frame::StudyEnd { study_id: 1, samples_per_lead: 3 });
        let [Assembled::Study(s)] = out.as_slice() else { panic!("{out:?}") };
        assert!(s.study_uid.starts_with("cart-1-1000-1-"), "{}", s.study_uid);
        assert_eq!(s.study_uid.len(), "cart-1-1000-1-".len() + 8);
        assert_eq!(s.leads[0].lead, "I");
        assert_eq!(s.leads[0].decode().expect("decode"), vec![1, 2, 3]);
        assert_eq!(s.leads[1].decode().expect("decode"), vec![10, 20, 30]);
        assert_eq!(s.patient.name, "王芳");
    }

    #[test]
    fn a_reused_study_number_with_other_samples_gets_another_uid() {
        let mut a = Assembler::new("cart-1", 1000);
        let mut uids = Vec::new();
        for v in [1i16, 2] {
            a.handle(start(1));
            a.handle(Frame::StudySamples { study_id: 1, first_sample: 0, samples: vec![v, v] });
            let out = a.handle(Frame::StudyEnd { study_id: 1, samples_per_lead: 1 });
            let [Assembled::Study(s)] = out.as_slice() else { panic!("{out:?}") };
            uids.push(s.study_uid.clone());
        }
        assert_ne!(uids[0], uids[1]);
    }

    #[test]
    fn a_study_cut_by_a_closed_port_is_reported_and_forgotten() {
        let mut a = Assembler::new("cart-1", 1000);
        a.handle(start(1));
        a.handle(Frame::StudySamples { study_id: 1, first_sample: 0, samples: vec![1, 10, 2, 20] });
        let out = a.port_closed();
        assert!(
            matches!(&out[..], [Assembled::Problem(p)] if p.contains("interrupted") && p.contains("after 2 samples"))
        );
        assert!(a.studies.is_empty());
    }

    #[test]
    fn starts_without_ends_are_bounded() {
        let mut a = Assembler::new("cart-1", 1000);
        let mut problems = 0;
        for id in 0..20 {
            problems += a.handle(start(id)).len();
        }
        assert_eq!(a.studies.len(), MAX_PENDING_STUDIES);
        assert_eq!(problems, 20 - MAX_PENDING_STUDIES);
    }

    #[test]
    fn hostile_stream_indices_and_rates_do_not_overflow_or_balloon() {
        let mut a = Assembler::new("d", 10_000);
        let f = Frame::StreamSamples(StreamSamples {
            stream_id: 3,
            sample_rate_hz: u16::MAX,
            resolution_nv: 1,
            leads: vec![1; 16],
            first_sample: u64::MAX - 1,
            time_ms: i64::MAX,
            samples: vec![0; 32],
        });
        let out = a.handle(f);
        assert!(matches!(&out[..], [Assembled::Problem(_)]), "{out:?}");
        let f = Frame::StreamSamples(StreamSamples {
            stream_id: 3,
            sample_rate_hz: u16::MAX,
            resolution_nv: 1,
            leads: vec![1; 16],
            first_sample: 0,
            time_ms: i64::MAX,
            samples: vec![0; 16 * 2000],
        });
        for c in a.handle(f).into_iter().chain(a.flush_streams()) {
            let Assembled::Chunk(c) = c else { panic!("{c:?}") };
            let n: usize = c.leads.iter().map(|l| l.samples.count as usize).sum();
            assert!(n <= CHUNK_SAMPLES_MAX);
            Payload::StreamChunk(c).encode().expect("fits its body limit");
        }
    }

    #[test]
    fn a_study_with_lost_frames_is_reported_not_sent() {
        let mut a = Assembler::new("cart-1", 1000);
        a.handle(start(1));
        a.handle(Frame::StudySamples { study_id: 1, first_sample: 0, samples: vec![1, 10] });
        a.handle(Frame::StudySamples { study_id: 1, first_sample: 5, samples: vec![3, 30] });
        let out = a.handle(Frame::StudyEnd { study_id: 1, samples_per_lead: 6 });
        assert!(matches!(&out[..], [Assembled::Problem(p)] if p.contains("samples 1..5 missing")), "{out:?}");
    }

    fn stream(first: u64, n: usize) -> Frame {
        Frame::StreamSamples(StreamSamples {
            stream_id: 0,
            sample_rate_hz: 4,
            resolution_nv: 5000,
            leads: vec![2],
            first_sample: first,
            time_ms: first as i64 * 250,
            samples: (first..first + n as u64).map(|v| v as i16).collect(),
        })
    }

    #[test]
    fn stream_is_cut_into_chunks_on_sample_boundaries() {
        let mut a = Assembler::new("d", 1000);
        let mut chunks = Vec::new();
        for f in [stream(0, 3), stream(3, 3), stream(6, 3)] {
            chunks.extend(a.handle(f));
        }
        chunks.extend(a.flush_streams());
        let got: Vec<(u64, i64, Vec<i32>)> = chunks
            .into_iter()
            .map(|c| match c {
                Assembled::Chunk(c) => (c.first_sample, c.start_time_ms, c.leads[0].decode().expect("decode")),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(got, vec![(0, 0, vec![0, 1, 2, 3]), (4, 1000, vec![4, 5, 6, 7]), (8, 2000, vec![8])]);
    }

    #[test]
    fn a_gap_in_the_stream_closes_the_chunk_early() {
        let mut a = Assembler::new("d", 1000);
        let mut out = a.handle(stream(0, 2));
        out.extend(a.handle(stream(10, 4)));
        let firsts: Vec<u64> =
            out.iter().filter_map(|c| if let Assembled::Chunk(c) = c { Some(c.first_sample) } else { None }).collect();
        assert_eq!(firsts, vec![0, 10]);
    }
}
