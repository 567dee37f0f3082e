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
//! - `sealed`: present once every record in `q/` is encrypted (see below).
//!
//! Every record in `q/` is sealed with ChaCha20-Poly1305 under the spool key (a separate 32-byte
//! file, owner-only, never the signing key; see [`yilian_protocol::at_rest`] for the format and
//! why nonces cannot repeat). The record's id (epoch, lane, seq) is its associated data, so a
//! flipped byte, a truncated file, or two records swapped on disk fail to open. Such a record is
//! moved to `corrupt/`, counted ([`Spool::tampered`]) and logged, and never sent; the others go.
//!
//! Plaintext records from agents before encryption are sealed once, in place, the first time
//! the spool opens without the `sealed` marker (they were written by this agent and nothing is
//! lost). Once the marker exists a plaintext record can only have been planted, so it is
//! quarantined like any other record that fails to open.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use tracing::error;
use yilian_protocol::at_rest::{AtRestError, DataKey};
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
    /// A spooled record failed to open (changed, truncated, moved, or sealed under another key);
    /// it was moved to `corrupt/` and will not be sent.
    #[error("spool record {path} rejected: {source}")]
    Tampered {
        /// Where the record is now.
        path: PathBuf,
        /// Why it failed.
        source: AtRestError,
    },
    /// The spool key file is missing, unreadable, not 32 bytes, or readable by others.
    #[error("spool key {path}: {reason}")]
    Key {
        /// File.
        path: PathBuf,
        /// Why it cannot be used.
        reason: String,
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
    /// Plaintext records from before encryption, sealed in place.
    pub migrated: usize,
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
    key: DataKey,
    tampered: u64,
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

/// The associated data of a record: where it belongs.
fn record_aad(epoch: u64, lane: Lane, seq: u64) -> Vec<u8> {
    let mut aad = b"yilian spool record v1".to_vec();
    aad.extend_from_slice(&epoch.to_le_bytes());
    aad.extend_from_slice(&(lane.index() as u64).to_le_bytes());
    aad.extend_from_slice(&seq.to_le_bytes());
    aad
}

/// The default spool key file for a spool folder: `spool.key` beside the folder, so copying
/// the folder alone does not copy its key.
pub fn default_key_path(spool_dir: &Path) -> PathBuf {
    let name = spool_dir.file_name().map_or_else(|| "spool".into(), |n| n.to_string_lossy().into_owned());
    spool_dir.with_file_name(format!("{name}.key"))
}

/// Reads the spool key, or makes one (mode 0600) if the file does not exist yet.
pub fn load_or_create_key(path: &Path) -> Result<DataKey, SpoolError> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let err = |reason: String| SpoolError::Key { path: path.to_path_buf(), reason };
    match fs::read(path) {
        Ok(bytes) => {
            let mode = fs::metadata(path).map_err(|e| err(e.to_string()))?.permissions().mode();
            if mode & 0o077 != 0 {
                return Err(err(format!("mode {:o} lets others read it; chmod 600 it", mode & 0o777)));
            }
            let raw: [u8; 32] =
                bytes.try_into().map_err(|b: Vec<u8>| err(format!("{} bytes, a spool key is 32", b.len())))?;
            Ok(DataKey::from_bytes(raw))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = DataKey::generate().map_err(|e| err(e.to_string()))?;
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                fs::create_dir_all(dir).map_err(|e| err(e.to_string()))?;
            }
            let write = || -> std::io::Result<()> {
                let mut f = OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
                f.write_all(key.as_bytes())?;
                f.sync_all()?;
                path.parent().filter(|d| !d.as_os_str().is_empty()).map_or(Ok(()), sync_dir)
            };
            write().map_err(|e| err(e.to_string()))?;
            Ok(key)
        }
        Err(e) => Err(err(e.to_string())),
    }
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
    /// Opens (or creates) the spool in `dir` with its encryption key, recovering from any crash.
    pub fn open(dir: &Path, key: DataKey) -> Result<(Self, OpenReport), SpoolError> {
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
            key,
            tampered: 0,
        };
        let migrating = !dir.join("sealed").exists();
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
            let mut bytes = fs::read(&path).map_err(|source| SpoolError::Read { path: path.clone(), source })?;
            let named = parse_name(&name);
            let opened = named.map(|(lane, seq)| spool.open_record(lane, seq, &bytes));
            let parsed = match opened {
                Some(Ok(_)) => named,
                Some(Err(AtRestError::NotSealed)) if migrating => {
                    let plain = std::mem::take(&mut bytes);
                    match named.filter(|(_, seq)| Envelope::decode(&plain).is_ok_and(|e| e.header.seq == *seq)) {
                        Some((lane, seq)) => {
                            bytes = spool.seal_record(lane, seq, &plain, &path)?;
                            write_synced(&queue_dir, &name, &bytes)
                                .map_err(|source| SpoolError::Append { path: path.clone(), source })?;
                            report.migrated += 1;
                            named
                        }
                        None => None,
                    }
                }
                _ => None,
            };
            let Some((lane, seq)) = parsed else {
                let to = spool.quarantine_file(&path, &name)?;
                if named.is_some() {
                    spool.tampered += 1;
                }
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
        if migrating {
            write_synced(dir, "sealed", b"chacha20-poly1305\n")
                .map_err(|source| SpoolError::Append { path: dir.join("sealed"), source })?;
        }
        Ok((spool, report))
    }

    fn open_record(&self, lane: Lane, seq: u64, bytes: &[u8]) -> Result<Vec<u8>, AtRestError> {
        let plain = self.key.open(&record_aad(self.epoch, lane, seq), bytes)?;
        // The envelope inside must be the one this name promises: a record sealed for this
        // place but holding another seq would be a bug, and is treated as damage.
        match Envelope::decode(&plain) {
            Ok(e) if e.header.seq == seq => Ok(plain),
            _ => Err(AtRestError::Authentication),
        }
    }

    fn seal_record(&self, lane: Lane, seq: u64, envelope: &[u8], path: &Path) -> Result<Vec<u8>, SpoolError> {
        self.key
            .seal(&record_aad(self.epoch, lane, seq), envelope)
            .map_err(|e| SpoolError::Append { path: path.to_path_buf(), source: std::io::Error::other(e.to_string()) })
    }

    fn quarantine_file(&self, path: &Path, name: &str) -> Result<PathBuf, SpoolError> {
        let corrupt = self.dir.join("corrupt");
        fs::create_dir_all(&corrupt).map_err(|source| SpoolError::Open { path: corrupt.clone(), source })?;
        let to = corrupt.join(name);
        fs::rename(path, &to).map_err(|source| SpoolError::Remove { path: path.to_path_buf(), source })?;
        Ok(to)
    }

    /// Records that failed to open (changed, truncated, moved, another key) since the spool was
    /// opened, including those found while opening. Each is in `corrupt/` and was never sent.
    pub fn tampered(&self) -> u64 {
        self.tampered
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
    pub fn append(&mut self, lane: Lane, seq: u64, envelope: &[u8]) -> Result<(), SpoolError> {
        let path = self.path_of(lane, seq);
        let bytes = &self.seal_record(lane, seq, envelope, &path)?;
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

    /// Reads and opens a spooled envelope. A record that fails to open is moved to `corrupt/`,
    /// counted, logged and forgotten (it is never sent), and the error says where it went.
    pub fn read(&mut self, seq: u64) -> Result<Option<Vec<u8>>, SpoolError> {
        let Some(lane) = self.lanes.get(&seq).copied() else {
            return Ok(None);
        };
        let path = self.path_of(lane, seq);
        let bytes = fs::read(&path).map_err(|source| SpoolError::Read { path: path.clone(), source })?;
        match self.open_record(lane, seq, &bytes) {
            Ok(plain) => Ok(Some(plain)),
            Err(source) => {
                let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                let to = self.quarantine_file(&path, &name)?;
                self.tampered += 1;
                self.lanes.remove(&seq);
                if let Some(len) = self.order.remove(&(lane, seq)) {
                    self.bytes -= len;
                }
                error!(seq, file = %to.display(), error = %source, "spool record rejected and quarantined; it will not be sent");
                Err(SpoolError::Tampered { path: to, source })
            }
        }
    }

    /// True if `seq` is waiting for its ack.
    pub fn contains(&self, seq: u64) -> bool {
        self.lanes.contains_key(&seq)
    }

    /// Waiting seqs in sending order: lane first, then seq (oldest first).
    pub fn pending(&self) -> impl Iterator<Item = (Lane, u64)> + '_ {
        self.order.keys().copied()
    }

    /// Waiting seqs in sending order with their size on disk (the sealed record: the envelope
    /// and a few dozen bytes).
    pub fn pending_sized(&self) -> impl Iterator<Item = (Lane, u64, u64)> + '_ {
        self.order.iter().map(|(&(lane, seq), &len)| (lane, seq, len))
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

    /// The spool key kept beside a test spool (made on first use, like the agent's).
    fn key_of(dir: &Path) -> DataKey {
        load_or_create_key(&dir.join("spool.key")).expect("spool key")
    }

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
        let (mut s, _) = Spool::open(dir.path(), key_of(dir.path())).expect("open");
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
        let (mut s, report) = Spool::open(dir.path(), key_of(dir.path())).expect("reopen");
        assert_eq!(report.pending, 4);
        assert_eq!(s.pending().count(), 4);
        let next = s.allocate_seq().expect("seq");
        assert!(next > 5, "seq {next} must not repeat one used before the restart");
    }

    #[test]
    fn crash_leftovers_are_cleaned_and_damaged_files_quarantined() {
        let dir = tempfile::tempdir().expect("tmp");
        let key = SigningKey::generate().expect("key");
        let (mut s, _) = Spool::open(dir.path(), key_of(dir.path())).expect("open");
        let seq = s.allocate_seq().expect("seq");
        let env = envelope(&key, seq, Lane::Stream);
        s.append(Lane::Stream, seq, &env).expect("append");
        drop(s);
        // A torn write left a tmp; disk damage truncated another entry.
        fs::write(dir.path().join("q/2-00000000000000000007.tmp"), b"half").expect("write");
        fs::write(dir.path().join("q/2-00000000000000000009.env"), &env[..env.len() / 2]).expect("write");
        let (mut s, report) = Spool::open(dir.path(), key_of(dir.path())).expect("reopen");
        assert_eq!(report.removed_tmp, 1);
        assert_eq!(report.quarantined.len(), 1);
        assert_eq!(s.pending().collect::<Vec<_>>(), vec![(Lane::Stream, seq)]);
        assert_eq!(s.read(seq).expect("read"), Some(env));
    }

    #[test]
    fn the_epoch_is_made_once_and_seqs_can_skip_past_what_the_hub_holds() {
        let dir = tempfile::tempdir().expect("tmp");
        let (mut s, _) = Spool::open(dir.path(), key_of(dir.path())).expect("open");
        let epoch = s.epoch();
        assert_ne!(epoch, 0);
        s.skip_past(5000);
        assert_eq!(s.allocate_seq().expect("seq"), 5001);
        drop(s);
        let (mut s, _) = Spool::open(dir.path(), key_of(dir.path())).expect("reopen");
        assert_eq!(s.epoch(), epoch);
        assert!(s.allocate_seq().expect("seq") > 5001, "the lease taken after skipping is honoured");
        let other = tempfile::tempdir().expect("tmp");
        assert_ne!(
            Spool::open(other.path(), key_of(other.path())).expect("open").0.epoch(),
            epoch,
            "a new spool is a new epoch"
        );
    }

    #[test]
    fn seqs_never_repeat_across_many_restarts() {
        let dir = tempfile::tempdir().expect("tmp");
        let mut seen = std::collections::HashSet::new();
        for _ in 0..20 {
            let (mut s, _) = Spool::open(dir.path(), key_of(dir.path())).expect("open");
            for _ in 0..3 {
                assert!(seen.insert(s.allocate_seq().expect("seq")));
            }
        }
    }

    fn spool_with(n: usize) -> (tempfile::TempDir, Spool, Vec<(u64, Vec<u8>)>) {
        let dir = tempfile::tempdir().expect("tmp");
        let key = SigningKey::generate().expect("key");
        let (mut s, _) = Spool::open(dir.path(), key_of(dir.path())).expect("open");
        let mut written = Vec::new();
        for _ in 0..n {
            let seq = s.allocate_seq().expect("seq");
            let env = envelope(&key, seq, Lane::Stream);
            s.append(Lane::Stream, seq, &env).expect("append");
            written.push((seq, env));
        }
        (dir, s, written)
    }

    fn record_path(dir: &Path, seq: u64) -> PathBuf {
        dir.join(format!("q/2-{seq:020}.env"))
    }

    #[test]
    fn records_on_disk_are_sealed_and_hold_no_plaintext() {
        let (dir, _s, written) = spool_with(2);
        let on_disk = fs::read(record_path(dir.path(), written[0].0)).expect("read");
        assert!(yilian_protocol::at_rest::is_sealed(&on_disk));
        assert!(!on_disk.windows(6).any(|w| w == b"line 1"), "the device output line is readable on disk");
        assert!(dir.path().join("sealed").exists());
    }

    #[test]
    fn a_flipped_byte_is_quarantined_counted_and_never_returned_while_the_rest_still_read() {
        let (dir, mut s, written) = spool_with(3);
        let victim = record_path(dir.path(), written[1].0);
        let mut bytes = fs::read(&victim).expect("read");
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x40;
        fs::write(&victim, &bytes).expect("write");
        let err = s.read(written[1].0).expect_err("a changed record must not open");
        assert!(matches!(err, SpoolError::Tampered { source: AtRestError::Authentication, .. }), "{err}");
        assert_eq!(s.tampered(), 1);
        assert!(!s.contains(written[1].0) && !victim.exists());
        assert!(dir.path().join("corrupt").join(victim.file_name().expect("name")).exists());
        assert_eq!(s.read(written[0].0).expect("read"), Some(written[0].1.clone()));
        assert_eq!(s.read(written[2].0).expect("read"), Some(written[2].1.clone()));
        assert_eq!(s.len(), 2);
    }

    #[test]
    fn two_records_swapped_on_disk_are_both_detected_while_running_and_at_open() {
        for at_open in [false, true] {
            let (dir, mut s, written) = spool_with(3);
            let (a, b) = (record_path(dir.path(), written[0].0), record_path(dir.path(), written[1].0));
            let (ba, bb) = (fs::read(&a).expect("a"), fs::read(&b).expect("b"));
            fs::write(&a, bb).expect("write");
            fs::write(&b, ba).expect("write");
            if at_open {
                drop(s);
                let (s2, report) = Spool::open(dir.path(), key_of(dir.path())).expect("reopen");
                s = s2;
                assert_eq!(report.quarantined.len(), 2);
            } else {
                assert!(s.read(written[0].0).is_err());
                assert!(s.read(written[1].0).is_err());
            }
            assert_eq!(s.tampered(), 2, "at_open={at_open}");
            assert_eq!(s.pending().map(|(_, q)| q).collect::<Vec<_>>(), vec![written[2].0]);
            assert_eq!(s.read(written[2].0).expect("read"), Some(written[2].1.clone()));
        }
    }

    #[test]
    fn a_truncated_record_is_detected() {
        let (dir, mut s, written) = spool_with(2);
        let victim = record_path(dir.path(), written[0].0);
        let bytes = fs::read(&victim).expect("read");
        for len in [bytes.len() - 1, 10, 0] {
            fs::write(&victim, &bytes[..len]).expect("write");
            drop(s);
            let (s2, report) = Spool::open(dir.path(), key_of(dir.path())).expect("reopen");
            s = s2;
            assert_eq!(report.quarantined.len(), 1, "cut to {len}");
            assert_eq!(s.tampered(), 1);
            fs::rename(&report.quarantined[0], &victim).expect("put back for the next cut");
        }
        let _ = fs::remove_file(&victim);
        assert_eq!(s.read(written[1].0).expect("read"), Some(written[1].1.clone()));
    }

    #[test]
    fn another_key_opens_nothing_and_the_key_file_is_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let (dir, s, _) = spool_with(2);
        drop(s);
        let mode = fs::metadata(dir.path().join("spool.key")).expect("key").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let (s, report) = Spool::open(dir.path(), DataKey::generate().expect("key")).expect("reopen");
        assert_eq!((s.len(), report.quarantined.len(), s.tampered()), (0, 2, 2));
        fs::set_permissions(dir.path().join("spool.key"), fs::Permissions::from_mode(0o644)).expect("chmod");
        let err = load_or_create_key(&dir.path().join("spool.key")).expect_err("readable by others");
        assert!(err.to_string().contains("chmod 600"), "{err}");
        fs::write(dir.path().join("short.key"), [1u8; 5]).expect("write");
        fs::set_permissions(dir.path().join("short.key"), fs::Permissions::from_mode(0o600)).expect("chmod");
        assert!(load_or_create_key(&dir.path().join("short.key")).is_err());
    }

    #[test]
    fn plaintext_records_from_before_encryption_are_sealed_once_and_later_ones_refused() {
        let dir = tempfile::tempdir().expect("tmp");
        let key = SigningKey::generate().expect("key");
        fs::create_dir_all(dir.path().join("q")).expect("q");
        let old = envelope(&key, 3, Lane::Stream);
        fs::write(record_path(dir.path(), 3), &old).expect("write");
        let (mut s, report) = Spool::open(dir.path(), key_of(dir.path())).expect("open");
        assert_eq!((report.migrated, report.pending), (1, 1));
        assert!(yilian_protocol::at_rest::is_sealed(&fs::read(record_path(dir.path(), 3)).expect("read")));
        assert_eq!(s.read(3).expect("read"), Some(old));
        drop(s);
        let planted = envelope(&key, 9, Lane::Stream);
        fs::write(record_path(dir.path(), 9), &planted).expect("write");
        let (s, report) = Spool::open(dir.path(), key_of(dir.path())).expect("reopen");
        assert_eq!((report.migrated, report.quarantined.len(), s.tampered()), (0, 1, 1));
        assert!(s.contains(3) && !s.contains(9));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(12))]
        /// Across reopen cycles, and even after the spool's `seq` and `epoch` files are put back
        /// from an old backup (so seqs repeat), no two records are ever sealed with the same
        /// key and nonce (each record's key comes from its own random salt).
        #[test]
        fn restarts_and_restored_backups_never_repeat_a_nonce(
            cycles in proptest::collection::vec((1usize..4, proptest::bool::ANY), 1..6)
        ) {
            let dir = tempfile::tempdir().expect("tmp");
            let signer = SigningKey::generate().expect("key");
            let mut salts = std::collections::HashSet::new();
            // The backup is taken right after the spool is first made: no seq lease yet.
            let mut backup: Option<Vec<u8>> = None;
            for (appends, restore) in cycles {
                if restore && let Some(epoch) = &backup {
                    let _ = fs::remove_file(dir.path().join("seq"));
                    fs::write(dir.path().join("epoch"), epoch).expect("restore epoch");
                    let _ = fs::remove_dir_all(dir.path().join("q"));
                }
                let (mut s, _) = Spool::open(dir.path(), key_of(dir.path())).expect("open");
                if backup.is_none() {
                    backup = Some(fs::read(dir.path().join("epoch")).expect("epoch"));
                }
                for _ in 0..appends {
                    let seq = s.allocate_seq().expect("seq");
                    s.append(Lane::Stream, seq, &envelope(&signer, seq, Lane::Stream)).expect("append");
                    let on_disk = fs::read(record_path(dir.path(), seq)).expect("read");
                    let salt = yilian_protocol::at_rest::salt_of(&on_disk).expect("sealed").to_vec();
                    proptest::prop_assert!(salts.insert(salt), "a salt (so a key and nonce) repeated at seq {}", seq);
                }
            }
        }
    }
}
