//! The durable spool: every envelope is on disk (fsynced) before it is published, and leaves the
//! disk only when the hub's application ack for its seq arrives.
//!
//! Layout under the spool folder:
//! - `seq`: the end of the current sequence-number lease. Seqs are handed out from a lease of
//!   [`LEASE`] numbers that is persisted *before* any of them is used, so after a crash the agent
//!   resumes past the whole lease and a seq is never repeated.
//! - `q/{lane}-{seq:020}.env`: one signed envelope per file, written to a `.tmp` name, fsynced,
//!   renamed, and the folder fsynced. A crash leaves either the whole file or a `.tmp` that is
//!   removed on open.
//! - `corrupt/`: files that no longer decode (disk damage) are moved here and reported, never
//!   silently deleted.
//! - `refused/`: envelopes the hub refused as inconsistent, kept for the operator.
//! - `epoch`: a random number made with the spool. Every envelope carries it and the hub's acks
//!   echo it, so acks meant for an earlier spool of the same device (wiped, restored from a
//!   backup) can never remove anything from this one.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use yilian_protocol::envelope::Envelope;
use yilian_protocol::message::Lane;

/// Seqs leased per write of the `seq` file.
pub const LEASE: u64 = 1000;

/// A spool operation failed; the path says which file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SpoolError {
    /// Creating or listing the spool folders failed.
    #[error("spool folder {path}: {source}")]
    Open {
        /// Folder.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// Writing an envelope failed (disk full, read-only, ...); the envelope was not spooled.
    #[error("spooling {path}: {source}")]
    Append {
        /// File.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// Reading a spooled envelope failed.
    #[error("reading {path}: {source}")]
    Read {
        /// File.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// Removing an acked envelope failed.
    #[error("removing {path}: {source}")]
    Remove {
        /// File.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// Persisting the seq lease failed; no seq was handed out.
    #[error("seq lease {path}: {source}")]
    Lease {
        /// File.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The seq file holds something other than a number.
    #[error("seq lease {path} is corrupt: {content:?}")]
    LeaseCorrupt {
        /// File.
        path: PathBuf,
        /// What it held (cut).
        content: String,
    },
}

/// What [`Spool::open`] found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct OpenReport {
    /// Envelopes waiting for an ack.
    pub pending: usize,
    /// Half-written `.tmp` files removed.
    pub removed_tmp: usize,
    /// Files moved to `corrupt/`.
    pub quarantined: Vec<PathBuf>,
}

/// The on-disk spool of one agent.
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    epoch: u64,
    queue_dir: PathBuf,
    next_seq: u64,
    lease_end: u64,
    order: BTreeMap<(Lane, u64), u64>,
    lanes: HashMap<u64, Lane>,
    bytes: u64,
}

fn lane_of(index: u8) -> Option<Lane> {
    Lane::ALL.get(usize::from(index)).copied()
}

fn parse_name(name: &str) -> Option<(Lane, u64)> {
    let stem = name.strip_suffix(".env")?;
    let (lane, seq) = stem.split_once('-')?;
    Some((lane_of(lane.parse().ok()?)?, seq.parse().ok()?))
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

fn write_synced(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    let mut f = File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    fs::rename(&tmp, dir.join(name))?;
    sync_dir(dir)
}

fn read_or_create_epoch(dir: &Path) -> Result<u64, SpoolError> {
    let path = dir.join("epoch");
    match fs::read_to_string(&path) {
        Ok(s) => u64::from_str_radix(s.trim(), 16)
            .map_err(|_| SpoolError::LeaseCorrupt { path: path.clone(), content: s.chars().take(40).collect() }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            use ring::rand::SecureRandom;
            let mut b = [0u8; 8];
            ring::rand::SystemRandom::new().fill(&mut b).map_err(|_| SpoolError::Lease {
                path: path.clone(),
                source: std::io::Error::other("no randomness"),
            })?;
            let epoch = u64::from_le_bytes(b).max(1);
            write_synced(dir, "epoch", format!("{epoch:016x}").as_bytes())
                .map_err(|source| SpoolError::Lease { path: path.clone(), source })?;
            Ok(epoch)
        }
        Err(source) => Err(SpoolError::Lease { path, source }),
    }
}

impl Spool {
    /// Opens (or creates) the spool in `dir`, recovering from any crash.
    pub fn open(dir: &Path) -> Result<(Self, OpenReport), SpoolError> {
        let queue_dir = dir.join("q");
        fs::create_dir_all(&queue_dir).map_err(|source| SpoolError::Open { path: queue_dir.clone(), source })?;
        let mut report = OpenReport::default();
        let epoch = read_or_create_epoch(dir)?;
        let mut spool = Self {
            dir: dir.to_path_buf(),
            epoch,
            queue_dir: queue_dir.clone(),
            next_seq: 0,
            lease_end: 0,
            order: BTreeMap::new(),
            lanes: HashMap::new(),
            bytes: 0,
        };
        let entries =
            fs::read_dir(&queue_dir).map_err(|source| SpoolError::Open { path: queue_dir.clone(), source })?;
        let mut max_seq = None;
        for entry in entries {
            let entry = entry.map_err(|source| SpoolError::Open { path: queue_dir.clone(), source })?;
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".tmp") {
                fs::remove_file(&path).map_err(|source| SpoolError::Remove { path: path.clone(), source })?;
                report.removed_tmp += 1;
                continue;
            }
            let bytes = fs::read(&path).map_err(|source| SpoolError::Read { path: path.clone(), source })?;
            let parsed =
                parse_name(&name).filter(|(_, seq)| Envelope::decode(&bytes).is_ok_and(|e| e.header.seq == *seq));
            let Some((lane, seq)) = parsed else {
                let corrupt = dir.join("corrupt");
                fs::create_dir_all(&corrupt).map_err(|source| SpoolError::Open { path: corrupt.clone(), source })?;
                let to = corrupt.join(&name);
                fs::rename(&path, &to).map_err(|source| SpoolError::Remove { path: path.clone(), source })?;
                report.quarantined.push(to);
                continue;
            };
            max_seq = max_seq.max(Some(seq));
            spool.order.insert((lane, seq), bytes.len() as u64);
            spool.lanes.insert(seq, lane);
            spool.bytes += bytes.len() as u64;
        }
        let lease_path = dir.join("seq");
        let leased = match fs::read_to_string(&lease_path) {
            Ok(s) => s.trim().parse::<u64>().map_err(|_| SpoolError::LeaseCorrupt {
                path: lease_path.clone(),
                content: s.chars().take(40).collect(),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 1,
            Err(source) => {
                return Err(SpoolError::Lease { path: lease_path, source });
            }
        };
        // Resume past the whole previous lease: some of it may have been used before a crash.
        spool.next_seq = leased.max(max_seq.map_or(0, |s| s + 1)).max(1);
        spool.lease_end = spool.next_seq;
        report.pending = spool.order.len();
        Ok((spool, report))
    }

    /// This spool's epoch.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Makes every seq handed out from now on greater than `seq` (the hub has stored up to it).
    pub fn skip_past(&mut self, seq: u64) {
        if self.next_seq <= seq {
            self.next_seq = seq.saturating_add(1);
        }
    }

    /// Hands out the next sequence number, persisting a new lease first when needed.
    pub fn allocate_seq(&mut self) -> Result<u64, SpoolError> {
        if self.next_seq >= self.lease_end {
            let end = self.next_seq.saturating_add(LEASE);
            write_synced(&self.dir, "seq", end.to_string().as_bytes())
                .map_err(|source| SpoolError::Lease { path: self.dir.join("seq"), source })?;
            self.lease_end = end;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        Ok(seq)
    }

    fn path_of(&self, lane: Lane, seq: u64) -> PathBuf {
        self.queue_dir.join(format!("{}-{seq:020}.env", lane.index()))
    }

    /// Durably stores one sealed envelope. On error nothing is recorded.
    pub fn append(&mut self, lane: Lane, seq: u64, bytes: &[u8]) -> Result<(), SpoolError> {
        let path = self.path_of(lane, seq);
        let tmp = path.with_extension("tmp");
        let write = || -> std::io::Result<()> {
            let mut f = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
            f.write_all(bytes)?;
            f.sync_all()?;
            fs::rename(&tmp, &path)?;
            sync_dir(&self.queue_dir)
        };
        if let Err(source) = write() {
            let _ = fs::remove_file(&tmp);
            return Err(SpoolError::Append { path, source });
        }
        self.order.insert((lane, seq), bytes.len() as u64);
        self.lanes.insert(seq, lane);
        self.bytes += bytes.len() as u64;
        Ok(())
    }

    /// Removes an acked envelope; false if it was not (or no longer) spooled.
    pub fn remove(&mut self, seq: u64) -> Result<bool, SpoolError> {
        let Some(lane) = self.lanes.get(&seq).copied() else {
            return Ok(false);
        };
        let path = self.path_of(lane, seq);
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(SpoolError::Remove { path, source }),
        }
        self.lanes.remove(&seq);
        if let Some(len) = self.order.remove(&(lane, seq)) {
            self.bytes -= len;
        }
        Ok(true)
    }

    /// Moves a refused envelope to `refused/` (kept for the operator, never resent).
    pub fn set_aside(&mut self, seq: u64) -> Result<Option<PathBuf>, SpoolError> {
        let Some(lane) = self.lanes.get(&seq).copied() else { return Ok(None) };
        let from = self.path_of(lane, seq);
        let dir = self.dir.join("refused");
        fs::create_dir_all(&dir).map_err(|source| SpoolError::Open { path: dir.clone(), source })?;
        let to = dir.join(from.file_name().unwrap_or_default());
        fs::rename(&from, &to).map_err(|source| SpoolError::Remove { path: from.clone(), source })?;
        self.lanes.remove(&seq);
        if let Some(len) = self.order.remove(&(lane, seq)) {
            self.bytes -= len;
        }
        Ok(Some(to))
    }

    /// The lane a waiting seq is in.
    pub fn lane_of(&self, seq: u64) -> Option<Lane> {
        self.lanes.get(&seq).copied()
    }

    /// Reads a spooled envelope.
    pub fn read(&self, seq: u64) -> Result<Option<Vec<u8>>, SpoolError> {
        let Some(lane) = self.lanes.get(&seq).copied() else {
            return Ok(None);
        };
        let path = self.path_of(lane, seq);
        fs::read(&path).map(Some).map_err(|source| SpoolError::Read { path, source })
    }

    /// True if `seq` is waiting for its ack.
    pub fn contains(&self, seq: u64) -> bool {
        self.lanes.contains_key(&seq)
    }

    /// Waiting seqs in sending order: lane first, then seq (oldest first).
    pub fn pending(&self) -> impl Iterator<Item = (Lane, u64)> + '_ {
        self.order.keys().copied()
    }

    /// Number of envelopes waiting.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// True if nothing waits.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// Bytes waiting.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The next seq that will be handed out.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use yilian_protocol::envelope::{Header, seal};
    use yilian_protocol::keys::SigningKey;
    use yilian_protocol::message::{DeviceOutput, Payload};
    use yilian_protocol::topic::{Channel, Topic};

    fn envelope(key: &SigningKey, seq: u64, lane: Lane) -> Vec<u8> {
        let topic = Topic::new("s", "d", Channel::Up).expect("topic");
        let body =
            Payload::DeviceOutput(DeviceOutput { port: "p".into(), line: format!("line {seq}"), received_at_ms: 0 });
        seal(key, Header::new(key, "d", seq, 0, lane), &topic, &body).expect("seal")
    }

    #[test]
    fn pending_is_ordered_by_lane_then_seq_and_survives_reopen() {
        let dir = tempfile::tempdir().expect("tmp");
        let key = SigningKey::generate().expect("key");
        let (mut s, _) = Spool::open(dir.path()).expect("open");
        let lanes = [Lane::Routine, Lane::Stream, Lane::Stat, Lane::Stream, Lane::Bulk];
        for lane in lanes {
            let seq = s.allocate_seq().expect("seq");
            s.append(lane, seq, &envelope(&key, seq, lane)).expect("append");
        }
        let order: Vec<_> = s.pending().collect();
        assert_eq!(
            order,
            vec![(Lane::Stat, 3), (Lane::Stream, 2), (Lane::Stream, 4), (Lane::Routine, 1), (Lane::Bulk, 5)]
        );
        assert!(s.remove(2).expect("remove"));
        assert!(!s.remove(2).expect("remove twice"));
        drop(s);
        let (mut s, report) = Spool::open(dir.path()).expect("reopen");
        assert_eq!(report.pending, 4);
        assert_eq!(s.pending().count(), 4);
        let next = s.allocate_seq().expect("seq");
        assert!(next > 5, "seq {next} must not repeat one used before the restart");
    }

    #[test]
    fn crash_leftovers_are_cleaned_and_damaged_files_quarantined() {
        let dir = tempfile::tempdir().expect("tmp");
        let key = SigningKey::generate().expect("key");
        let (mut s, _) = Spool::open(dir.path()).expect("open");
        let seq = s.allocate_seq().expect("seq");
        let env = envelope(&key, seq, Lane::Stream);
        s.append(Lane::Stream, seq, &env).expect("append");
        drop(s);
        // A torn write left a tmp; disk damage truncated another entry.
        fs::write(dir.path().join("q/2-00000000000000000007.tmp"), b"half").expect("write");
        fs::write(dir.path().join("q/2-00000000000000000009.env"), &env[..env.len() / 2]).expect("write");
        let (s, report) = Spool::open(dir.path()).expect("reopen");
        assert_eq!(report.removed_tmp, 1);
        assert_eq!(report.quarantined.len(), 1);
        assert_eq!(s.pending().collect::<Vec<_>>(), vec![(Lane::Stream, seq)]);
        assert_eq!(s.read(seq).expect("read"), Some(env));
    }

    #[test]
    fn the_epoch_is_made_once_and_seqs_can_skip_past_what_the_hub_holds() {
        let dir = tempfile::tempdir().expect("tmp");
        let (mut s, _) = Spool::open(dir.path()).expect("open");
        let epoch = s.epoch();
        assert_ne!(epoch, 0);
        s.skip_past(5000);
        assert_eq!(s.allocate_seq().expect("seq"), 5001);
        drop(s);
        let (mut s, _) = Spool::open(dir.path()).expect("reopen");
        assert_eq!(s.epoch(), epoch);
        assert!(s.allocate_seq().expect("seq") > 5001, "the lease taken after skipping is honoured");
        let other = tempfile::tempdir().expect("tmp");
        assert_ne!(Spool::open(other.path()).expect("open").0.epoch(), epoch, "a new spool is a new epoch");
    }

    #[test]
    fn seqs_never_repeat_across_many_restarts() {
        let dir = tempfile::tempdir().expect("tmp");
        let mut seen = std::collections::HashSet::new();
        for _ in 0..20 {
            let (mut s, _) = Spool::open(dir.path()).expect("open");
            for _ in 0..3 {
                assert!(seen.insert(s.allocate_seq().expect("seq")));
            }
        }
    }
}
