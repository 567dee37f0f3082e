//! A simulated ECG cart on a real pseudo-terminal, speaking the Yilian serial framing.
//!
//! The agent opens the pty's slave by path through tokio-serial, exactly as it would open
//! `/dev/ttyUSB0`; nothing in the agent knows it is a pty. The cart writes to the master.

use crate::records::Recording;
use anyhow::Context;
use nix::pty::openpty;
use nix::sys::termios::{SetArg, cfmakeraw, tcgetattr, tcsetattr};
use std::fs::File;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use yilian_protocol::frame::{self, Frame, StreamSamples, StudyStart};
use yilian_protocol::message::{Date, Priority, Sex};

/// Samples per lead per study frame (12 leads × 2 bytes × 256 fits well under the frame limit).
const STUDY_FRAME_SAMPLES: usize = 256;

/// A pseudo-terminal pair standing in for the cart's cable.
pub struct Pty {
    master: File,
    /// Held so the pty stays up while the agent (re)opens the slave.
    _slave: OwnedFd,
    path: PathBuf,
}

impl Pty {
    /// Opens a new pty in raw mode.
    pub fn open() -> anyhow::Result<Self> {
        let pty = openpty(None, None).context("openpty")?;
        let mut t = tcgetattr(&pty.slave).context("tcgetattr")?;
        cfmakeraw(&mut t);
        tcsetattr(&pty.slave, SetArg::TCSANOW, &t).context("tcsetattr")?;
        let path = nix::unistd::ttyname(&pty.slave).context("ttyname")?;
        Ok(Self { master: File::from(pty.master), _slave: pty.slave, path })
    }

    /// A writer to the master side (what the device sends).
    pub fn writer(&self) -> anyhow::Result<File> {
        self.master.try_clone().context("cloning pty master")
    }

    /// The slave's path (`/dev/pts/N`), what the agent opens.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }
}

/// What a simulated cart has written (for "nothing lost" accounting).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CartCounts {
    /// Studies completed (StudyEnd written).
    pub studies: u64,
    /// Samples written in studies (all leads).
    pub study_samples: u64,
    /// Samples written in streams (all leads).
    pub stream_samples: u64,
    /// Bytes of deliberate garbage written.
    pub garbage_bytes: u64,
}

/// A patient and the clinic's question, for a simulated study.
#[derive(Debug, Clone)]
pub struct Visit {
    /// Patient id.
    pub patient_id: String,
    /// Name.
    pub name: String,
    /// Sex.
    pub sex: Sex,
    /// Birth date.
    pub birth_date: Option<Date>,
    /// Question.
    pub question: String,
    /// Priority.
    pub priority: Priority,
}

/// Demo patients (names in Chinese, as the carts record them).
pub fn demo_visit(n: usize) -> Visit {
    const PATIENTS: [(&str, Sex); 10] = [
        ("张伟", Sex::Male),
        ("王芳", Sex::Female),
        ("李娜", Sex::Female),
        ("刘洋", Sex::Male),
        ("陈静", Sex::Female),
        ("杨磊", Sex::Male),
        ("赵敏", Sex::Female),
        ("黄勇", Sex::Male),
        ("周婷", Sex::Female),
        ("吴强", Sex::Male),
    ];
    let (name, sex) = PATIENTS[n % PATIENTS.len()];
    let (question, priority) = match n % 3 {
        0 => ("胸痛2小时，心电图ST段抬高？请排除急性心梗", Priority::Stat),
        1 => ("心悸一周，请会诊", Priority::Urgent),
        _ => ("体检心电图，请出具报告", Priority::Routine),
    };
    Visit {
        patient_id: format!("MZ{:06}", 1000 + n),
        name: name.to_string(),
        sex,
        birth_date: Date::new(1940 + (n % 50) as u16, 1 + (n % 12) as u8, 1 + (n % 28) as u8),
        question: question.to_string(),
        priority,
    }
}

/// A simulated cart writing frames into a pty master.
pub struct Cart {
    out: File,
    link_seq: u16,
    next_study_id: u32,
    counts: CartCounts,
}

impl Cart {
    /// A cart writing to `pty`.
    pub fn new(pty: &Pty) -> anyhow::Result<Self> {
        Ok(Self {
            out: pty.master.try_clone().context("cloning pty master")?,
            link_seq: 0,
            next_study_id: 1,
            counts: CartCounts::default(),
        })
    }

    /// Disconnects the cart (cable out): what it writes now goes nowhere.
    pub fn detach(&mut self) -> anyhow::Result<()> {
        self.out = std::fs::OpenOptions::new().write(true).open("/dev/null")?;
        Ok(())
    }

    /// Moves the cart to another pty (the cable was re-plugged), keeping its link sequence.
    pub fn reattach(&mut self, pty: &Pty) -> anyhow::Result<()> {
        self.out = pty.writer()?;
        Ok(())
    }

    /// What has been written so far.
    pub fn counts(&self) -> CartCounts {
        self.counts
    }

    /// Writes one frame.
    pub fn frame(&mut self, f: &Frame) -> anyhow::Result<()> {
        let bytes = frame::encode(self.link_seq, f)?;
        self.link_seq = self.link_seq.wrapping_add(1);
        self.out.write_all(&bytes).context("writing to the pty")?;
        Ok(())
    }

    /// Writes raw bytes (line noise, truncated frames).
    pub fn garbage(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        self.out.write_all(bytes).context("writing to the pty")?;
        self.counts.garbage_bytes += bytes.len() as u64;
        Ok(())
    }

    /// Says hello (model and firmware).
    pub fn hello(&mut self) -> anyhow::Result<()> {
        self.frame(&Frame::Hello { model: "YL-SIM-12".into(), firmware: env!("CARGO_PKG_VERSION").into() })
    }

    /// Sends a resting study of `samples_per_lead` samples from `rec` starting at `offset`.
    /// Returns the cart's study number and the exact samples per lead sent.
    pub fn study(
        &mut self,
        rec: &Recording,
        offset: usize,
        samples_per_lead: usize,
        visit: &Visit,
        acquired_at_ms: i64,
    ) -> anyhow::Result<(u32, Vec<Vec<i16>>)> {
        let id = self.next_study_id;
        self.next_study_id += 1;
        let n = samples_per_lead.min(rec.len());
        let leads: Vec<Vec<i16>> =
            rec.leads.iter().map(|(_, s)| (0..n).map(|i| s[(offset + i) % s.len()]).collect()).collect();
        self.frame(&Frame::StudyStart(StudyStart {
            study_id: id,
            priority: visit.priority,
            sample_rate_hz: rec.sample_rate_hz,
            resolution_nv: rec.resolution_nv,
            acquired_at_ms,
            leads: rec.leads.iter().map(|(c, _)| *c).collect(),
            patient_id: visit.patient_id.clone(),
            patient_name: visit.name.clone(),
            sex: visit.sex,
            birth_date: visit.birth_date,
            question: visit.question.clone(),
        }))?;
        let mut start = 0;
        while start < n {
            let end = (start + STUDY_FRAME_SAMPLES).min(n);
            let samples = (start..end).flat_map(|i| leads.iter().map(move |l| l[i])).collect();
            self.frame(&Frame::StudySamples { study_id: id, first_sample: start as u32, samples })?;
            start = end;
        }
        self.frame(&Frame::StudyEnd { study_id: id, samples_per_lead: n as u32 })?;
        self.counts.studies += 1;
        self.counts.study_samples += (n * leads.len()) as u64;
        Ok((id, leads))
    }

    /// Sends `count` samples per lead of a monitoring stream starting at stream index `first`.
    pub fn stream(
        &mut self,
        stream_id: u8,
        rec: &Recording,
        first: u64,
        count: usize,
        time_ms: i64,
    ) -> anyhow::Result<()> {
        let len = rec.len() as u64;
        let samples = (0..count as u64)
            .flat_map(|i| rec.leads.iter().map(move |(_, s)| s[((first + i) % len) as usize]))
            .collect();
        self.frame(&Frame::StreamSamples(StreamSamples {
            stream_id,
            sample_rate_hz: rec.sample_rate_hz,
            resolution_nv: rec.resolution_nv,
            leads: rec.leads.iter().map(|(c, _)| *c).collect(),
            first_sample: first,
            time_ms,
            samples,
        }))?;
        self.counts.stream_samples += (count * rec.leads.len()) as u64;
        Ok(())
    }
}
