//! Turns device frames into protocol bodies: resting studies and fixed-length stream chunks.
//!
//! Pure state machine: frames in, [`Assembled`] values out, time passed in by the caller.

use std::collections::HashMap;
use yilian_protocol::frame::{Frame, StreamSamples, StudyStart};
use yilian_protocol::lead;
use yilian_protocol::message::{LeadSamples, Patient, StreamChunk, Study};

/// What the assembler produced.
#[derive(Debug, Clone, PartialEq)]
pub enum Assembled {
    /// A complete resting study.
    Study(Study),
    /// A stream chunk.
    Chunk(StreamChunk),
    /// Something the operator must be told (a study that cannot be sent whole).
    Problem(String),
}

#[derive(Debug)]
struct PendingStudy {
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
                let previous =
                    self.studies.insert(id, PendingStudy { start, samples: vec![Vec::new(); leads], broken: None });
                match previous {
                    Some(p) => vec![Assembled::Problem(format!(
                        "study {id} restarted by the cart after {} samples per lead; the earlier attempt is discarded",
                        p.samples.first().map_or(0, Vec::len)
                    ))],
                    None => vec![],
                }
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
        let study = Study {
            study_uid: format!("{}-{}-{}", self.device_id, s.acquired_at_ms, s.study_id),
            patient: Patient { id: s.patient_id, name: s.patient_name, sex: s.sex, birth_date: s.birth_date },
            question: s.question,
            priority: s.priority,
            acquired_at_ms: s.acquired_at_ms,
            sample_rate_hz: u32::from(s.sample_rate_hz),
            resolution_nv: s.resolution_nv,
            device_model: self.model.clone(),
            leads: s.leads.iter().zip(&p.samples).map(|(code, v)| LeadSamples::encode(&lead_name(*code), v)).collect(),
            warnings: vec![],
        };
        vec![Assembled::Study(study)]
    }

    fn stream(&mut self, s: StreamSamples) -> Vec<Assembled> {
        let mut out = Vec::new();
        let n_leads = s.leads.len();
        let per_lead = s.samples.len() / n_leads.max(1);
        let rate = u32::from(s.sample_rate_hz);
        let chunk_len = ((u64::from(rate) * u64::from(self.chunk_ms)) / 1000).max(1) as usize;
        // A new chunk starts where the stream's parameters change or samples are missing; the
        // hub sees the missing range from `first_sample`.
        let continues = self.chunks.get(&s.stream_id).is_some_and(|c| {
            c.sample_rate_hz == rate
                && c.resolution_nv == s.resolution_nv
                && c.leads == s.leads
                && c.first_sample + c.len() as u64 == s.first_sample
        });
        if !continues && let Some(c) = self.chunks.remove(&s.stream_id) {
            out.push(Assembled::Chunk(c.into_chunk(u32::from(s.stream_id))));
        }
        for i in 0..per_lead {
            let c = self.chunks.entry(s.stream_id).or_insert_with(|| PendingChunk {
                sample_rate_hz: rate,
                resolution_nv: s.resolution_nv,
                leads: s.leads.clone(),
                first_sample: s.first_sample + i as u64,
                start_time_ms: s.time_ms + (i as i64 * 1000) / i64::from(rate.max(1)),
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
    use yilian_protocol::message::{Priority, Sex};

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
        assert_eq!(s.study_uid, "cart-1-1000-1");
        assert_eq!(s.leads[0].lead, "I");
        assert_eq!(s.leads[0].decode().expect("decode"), vec![1, 2, 3]);
        assert_eq!(s.leads[1].decode().expect("decode"), vec![10, 20, 30]);
        assert_eq!(s.patient.name, "王芳");
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
