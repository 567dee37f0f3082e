//! The watched inbox: the cart, its PC software or a nurse with a USB stick drops ECG files into
//! a folder; the agent sends each one to the hub and files it under `sent/` once the hub has
//! acknowledged every part, or under `rejected/` with a `.reason.txt` beside it.
//!
//! ```text
//! inbox/                 files here are routine
//!   stat/ urgent/ routine/
//!   sent/ rejected/
//!   .yilian/sending/<hash>/   files being sent, with manifest.json (the seqs to wait for)
//!   .yilian/sent/<hash>       one marker per content hash: the same file dropped twice is sent once
//! ```
//!
//! A file is taken only when complete: its size and time have not changed for `settle_ms`, and
//! names that copy tools use while writing (`.part`, `.tmp`, `~`, dot files) are left alone until
//! renamed. A WFDB record is taken when its `.hea` and every file the header names are complete;
//! the record's annotation files (`<record>.atr`, ...) go with it.

use crate::cartfile::{self, FileContext, Original};
use crate::config::InboxConfig;
use crate::spool::Spool;
use crate::uplink::Outgoing;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};
use yilian_formats::ReadOptions;
use yilian_formats::sniff::{self, Detected};
use yilian_protocol::message::{DeviceOutput, Lane, Payload, Priority};
use yilian_protocol::redact;

const STATE: &str = ".yilian";
const PRIORITY_DIRS: [(&str, Priority); 3] =
    [("stat", Priority::Stat), ("urgent", Priority::Urgent), ("routine", Priority::Routine)];

/// The files of one manifest being sent.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Manifest {
    study_uid: String,
    /// File names inside the sending folder, main file first.
    files: Vec<String>,
    /// Where they were dropped, relative to the inbox (for the log and `sent/`).
    priority: String,
    question: Option<String>,
    /// Seqs of the study's parts; empty until all are spooled.
    seqs: Vec<u64>,
}

/// Files of one record, ready to be read.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Group {
    /// Main file (the cart file, or the WFDB header).
    main: PathBuf,
    /// Other files that travel with it (signal and annotation files, a question sidecar).
    others: Vec<PathBuf>,
    priority: Priority,
}

#[derive(Debug, Clone, Copy)]
struct Seen {
    size: u64,
    modified: Option<SystemTime>,
    since: Instant,
}

/// Watches one inbox folder.
struct Watcher {
    root: PathBuf,
    settle: Duration,
    parts_wait: Duration,
    seen: HashMap<PathBuf, Seen>,
}

/// Runs the inbox until `shutdown` fires.
pub async fn run(
    cfg: InboxConfig,
    device: String,
    tx: mpsc::Sender<Outgoing>,
    spool: Arc<Mutex<Spool>>,
    journeys: Arc<crate::journey::Journeys>,
    shutdown: CancellationToken,
) {
    let root = cfg.dir.clone();
    if let Err(e) = prepare(&root) {
        error!(inbox = %root.display(), error = %e, "inbox folder cannot be used");
        return;
    }
    info!(inbox = %root.display(), "watching inbox");
    let ctx = Ctx { cfg: cfg.clone(), device, notices: Arc::default(), journeys };
    resume(&ctx, &tx).await;
    let mut w = Watcher {
        root: root.clone(),
        settle: Duration::from_millis(cfg.settle_ms),
        parts_wait: Duration::from_secs(cfg.parts_wait_secs),
        seen: HashMap::new(),
    };
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tick.tick() => {}
        }
        let now = Instant::now();
        let (groups, stale) = w.poll(now);
        for (path, why) in stale {
            let r = ctx.clone();
            blocking(move || r.reject(&[path], &why)).await;
        }
        for g in groups {
            if shutdown.is_cancelled() {
                break;
            }
            for p in std::iter::once(&g.main).chain(&g.others) {
                w.seen.remove(p);
            }
            ctx.take(g, &tx).await;
        }
        let notices: Vec<String> =
            std::mem::take(&mut *ctx.notices.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
        for line in notices {
            let out = DeviceOutput { port: "inbox".into(), line, received_at_ms: crate::clock::now_ms() };
            if tx.send(Outgoing::new(Lane::Stream, Payload::DeviceOutput(out))).await.is_err() {
                return;
            }
        }
        let r = root.clone();
        let sp = spool.clone();
        blocking(move || finish_acked(&r, &sp)).await;
    }
}

#[derive(Clone)]
struct Ctx {
    cfg: InboxConfig,
    device: String,
    /// Rejections not yet reported to the hub (county IT sees them as the device's output).
    notices: Arc<Mutex<Vec<String>>>,
    /// Each study's journey, for the clinic page.
    journeys: Arc<crate::journey::Journeys>,
}

impl Ctx {
    /// Reads, converts and sends one group; files end in `sending/`, `sent/` or `rejected/`.
    async fn take(&self, g: Group, tx: &mpsc::Sender<Outgoing>) {
        let me = self.clone();
        let Some(Some((dir, manifest, study))) = blocking(move || me.prepare_group(&g)).await else { return };
        self.send(dir, manifest, study, tx).await;
    }

    fn prepare_group(&self, g: &Group) -> Option<(PathBuf, Manifest, yilian_protocol::message::Study)> {
        let root = &self.cfg.dir;
        let all: Vec<PathBuf> = std::iter::once(g.main.clone()).chain(g.others.iter().cloned()).collect();
        let (question_file, data_files): (Vec<PathBuf>, Vec<PathBuf>) =
            all.iter().cloned().partition(|p| is_sidecar(p));
        let mut originals = Vec::new();
        for p in &data_files {
            match crate::inspect::read_limited(p, &ReadOptions::default()) {
                Ok(bytes) => originals.push(Original { name: file_name(p), bytes }),
                Err(e) => {
                    self.reject(&all, &format!("cannot read {e}"));
                    return None;
                }
            }
        }
        let question = question_file.first().and_then(|p| std::fs::read(p).ok()).map(|b| decode_text(&b));
        let hash = hex::encode(cartfile::content_hash(&originals));
        if let Ok(uid) = std::fs::read_to_string(root.join(STATE).join("sent").join(&hash)) {
            info!(file = %redact::file_name(&g.main), study = %uid.trim(), "same file already sent; not sent again");
            file_away(&root.join("sent"), &all);
            return None;
        }
        let sending = root.join(STATE).join("sending").join(&hash);
        if sending.exists() {
            info!(file = %redact::file_name(&g.main), "same file is being sent; not sent again");
            file_away(&root.join("sent"), &all);
            return None;
        }
        let opts = ReadOptions::default();
        let recording = match crate::inspect::recording_of(&originals, &opts) {
            Ok(r) => r,
            Err(why) => {
                self.reject(&all, &why);
                return None;
            }
        };
        let ctx = FileContext {
            device_id: self.device.clone(),
            priority: g.priority,
            question: question.clone(),
            utc_offset_minutes: self.cfg.utc_offset_minutes,
            received_at_ms: crate::clock::now_ms(),
        };
        let study = match cartfile::to_study(&recording, &originals, &ctx) {
            Ok(s) => s,
            Err(e) => {
                self.reject(&all, &e.to_string());
                return None;
            }
        };
        // Into the sending folder first: from here on a crash resumes from these files.
        if let Err(e) = std::fs::create_dir_all(&sending) {
            warn!(error = %e, "cannot create the sending folder; will retry");
            return None;
        }
        let mut names = Vec::new();
        for p in &all {
            let name = file_name(p);
            if let Err(e) = std::fs::rename(p, sending.join(&name)) {
                warn!(file = %redact::file_name(p), error = %e, "cannot move file to the sending folder; will retry");
                return None;
            }
            names.push(name);
        }
        let manifest = Manifest {
            study_uid: study.study_uid.clone(),
            files: names,
            priority: g.priority.as_str().into(),
            question,
            seqs: vec![],
        };
        if let Err(e) = write_manifest(&sending, &manifest) {
            warn!(error = %e, "cannot write the inbox manifest; the file will be sent again after a restart");
        }
        self.journeys.recorded(&study, &file_name(&g.main), crate::clock::now_ms());
        info!(
            file = %redact::file_name(&g.main), study = %study.study_uid, format = %recording.format.name(),
            leads = study.leads.len(), warnings = study.warnings.len(), "cart file read"
        );
        Some((sending, manifest, study))
    }

    /// Spools every part and records their seqs in the manifest.
    async fn send(
        &self,
        dir: PathBuf,
        mut manifest: Manifest,
        study: yilian_protocol::message::Study,
        tx: &mpsc::Sender<Outgoing>,
    ) {
        let parts = match study.split() {
            Ok(p) => p,
            Err(e) => {
                let me = self.clone();
                let files: Vec<PathBuf> = manifest.files.iter().map(|f| dir.join(f)).collect();
                let why = format!("too large to send: {e}");
                blocking(move || {
                    me.reject(&files, &why);
                    let _ = std::fs::remove_dir_all(&dir);
                })
                .await;
                return;
            }
        };
        let (seq_tx, mut seq_rx) = mpsc::unbounded_channel();
        let lane = study.priority.lane();
        for p in parts {
            let o = Outgoing { lane, payload: Payload::StudyPart(p), spooled: Some(seq_tx.clone()) };
            if tx.send(o).await.is_err() {
                return;
            }
        }
        drop(seq_tx);
        while let Some(seq) = seq_rx.recv().await {
            manifest.seqs.push(seq);
        }
        blocking(move || {
            if let Err(e) = write_manifest(&dir, &manifest) {
                warn!(error = %e, "cannot record the spooled seqs; the file will be sent again after a restart");
            }
        })
        .await;
    }
}

/// After a restart: files whose parts were never all spooled are read and sent again (the hub
/// keeps one copy per study); the others wait for their acks as before.
async fn resume(ctx: &Ctx, tx: &mpsc::Sender<Outgoing>) {
    let sending = ctx.cfg.dir.join(STATE).join("sending");
    let Ok(entries) = std::fs::read_dir(&sending) else { return };
    for e in entries.flatten() {
        let dir = e.path();
        let Some(m) = read_manifest(&dir) else {
            // Crashed between the move and the manifest: put the files back in the inbox.
            for f in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                let _ = std::fs::rename(f.path(), ctx.cfg.dir.join(f.file_name()));
            }
            let _ = std::fs::remove_dir(&dir);
            continue;
        };
        if !m.seqs.is_empty() {
            continue;
        }
        let originals: Vec<Original> = m
            .files
            .iter()
            .map(|f| dir.join(f))
            .filter(|p| !is_sidecar(p))
            .filter_map(|p| {
                Some(Original {
                    name: file_name(&p),
                    bytes: crate::inspect::read_limited(&p, &ReadOptions::default()).ok()?,
                })
            })
            .collect();
        let Ok(rec) = crate::inspect::recording_of(&originals, &ReadOptions::default()) else { continue };
        let fc = FileContext {
            device_id: ctx.device.clone(),
            priority: Priority::parse(&m.priority).unwrap_or(Priority::Routine),
            question: m.question.clone(),
            utc_offset_minutes: ctx.cfg.utc_offset_minutes,
            received_at_ms: crate::clock::now_ms(),
        };
        if let Ok(study) = cartfile::to_study(&rec, &originals, &fc) {
            info!(study = %study.study_uid, "resending a cart file interrupted by a restart");
            ctx.send(dir, m, study, tx).await;
        }
    }
}

/// Moves every file whose parts the hub has all acknowledged to `sent/`.
fn finish_acked(root: &Path, spool: &Mutex<Spool>) {
    let sending = root.join(STATE).join("sending");
    let Ok(entries) = std::fs::read_dir(&sending) else { return };
    for e in entries.flatten() {
        let dir = e.path();
        let Some(m) = read_manifest(&dir) else { continue };
        if m.seqs.is_empty() {
            continue;
        }
        let pending = {
            let s = spool.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            m.seqs.iter().any(|seq| s.contains(*seq))
        };
        if pending {
            continue;
        }
        let hash = file_name(&dir);
        let marker = root.join(STATE).join("sent").join(&hash);
        if let Err(e) = std::fs::write(&marker, &m.study_uid) {
            warn!(error = %e, "cannot record a sent file's hash");
        }
        let files: Vec<PathBuf> = m.files.iter().map(|f| dir.join(f)).collect();
        file_away(&root.join("sent"), &files);
        let _ = std::fs::remove_file(dir.join("manifest.json"));
        let _ = std::fs::remove_dir(&dir);
        info!(study = %m.study_uid, files = ?redact::file_names(&m.files), "hub confirmed; cart file moved to sent/");
    }
}

impl Watcher {
    /// Looks at the folders; returns the groups that are complete, and files that waited too long
    /// for the rest of their record (with the reason).
    fn poll(&mut self, now: Instant) -> (Vec<Group>, Vec<(PathBuf, String)>) {
        let mut present: Vec<(PathBuf, Priority)> = Vec::new();
        let mut dirs = vec![(self.root.clone(), Priority::Routine)];
        dirs.extend(PRIORITY_DIRS.iter().map(|(d, p)| (self.root.join(d), *p)));
        for (dir, priority) in dirs {
            let Ok(entries) = std::fs::read_dir(&dir) else { continue };
            for e in entries.flatten() {
                let path = e.path();
                let Ok(meta) = e.metadata() else { continue };
                if !meta.is_file() || ignored(&path) {
                    continue;
                }
                let (size, modified) = (meta.len(), meta.modified().ok());
                let seen = self.seen.entry(path.clone()).or_insert(Seen { size, modified, since: now });
                if seen.size != size || seen.modified != modified {
                    *seen = Seen { size, modified, since: now };
                }
                present.push((path, priority));
            }
        }
        self.seen.retain(|p, _| present.iter().any(|(q, _)| q == p));
        let ready = |p: &Path| self.seen.get(p).is_some_and(|s| now.duration_since(s.since) >= self.settle);
        let waited = |p: &Path| self.seen.get(p).is_some_and(|s| now.duration_since(s.since) >= self.parts_wait);
        let mut groups = Vec::new();
        let mut stale = Vec::new();
        let mut claimed: Vec<PathBuf> = Vec::new();
        // WFDB headers first: they claim their signal and annotation files.
        for (path, priority) in present.iter().filter(|(p, _)| extension(p) == "hea") {
            let dir = path.parent().unwrap_or(Path::new("."));
            let text = std::fs::read(path).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default();
            let record = stem(path);
            let signals = wfdb_signal_files(&text);
            let siblings: Vec<PathBuf> = present
                .iter()
                .map(|(p, _)| p.clone())
                .filter(|p| p != path && p.parent() == Some(dir) && stem(p) == record)
                .collect();
            claimed.push(path.clone());
            claimed.extend(siblings.iter().cloned());
            let missing: Vec<&String> = signals.iter().filter(|f| !dir.join(f).exists()).collect();
            if !missing.is_empty() {
                if waited(path) {
                    let names: Vec<&str> = missing.iter().map(|s| s.as_str()).collect();
                    stale.push((path.clone(), format!("WFDB record without its signal file(s) {}", names.join(", "))));
                }
                continue;
            }
            let mut others: Vec<PathBuf> = signals.iter().map(|f| dir.join(f)).collect();
            for s in &siblings {
                if !others.contains(s) {
                    others.push(s.clone());
                }
            }
            if ready(path) && others.iter().all(|p| ready(p)) {
                groups.push(Group { main: path.clone(), others, priority: *priority });
            }
        }
        for (path, priority) in &present {
            if claimed.contains(path) || is_sidecar(path) || !ready(path) {
                continue;
            }
            let head = read_head(path);
            if sniff::detect(&file_name(path), &head) == Detected::WfdbPart {
                if waited(path) {
                    stale.push((path.clone(), "a WFDB signal or annotation file without its .hea header".into()));
                }
                continue;
            }
            let others = sidecar_of(path).into_iter().filter(|p| present.iter().any(|(q, _)| q == p)).collect();
            groups.push(Group { main: path.clone(), others, priority: *priority });
        }
        (groups, stale)
    }
}

/// Signal file names a WFDB header names (the first field of each signal line).
fn wfdb_signal_files(text: &str) -> Vec<String> {
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#'));
    let nsig = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.split('/').next()?.parse::<usize>().ok())
        .unwrap_or(0);
    let mut files: Vec<String> = Vec::new();
    for l in lines.take(nsig.min(256)) {
        if let Some(f) = l.split_whitespace().next()
            && f != "~"
            && !f.contains('/')
            && !files.iter().any(|x| x == f)
        {
            files.push(f.to_string());
        }
    }
    files
}

fn prepare(root: &Path) -> std::io::Result<()> {
    for d in ["stat", "urgent", "routine", "sent", "rejected", ".yilian/sending", ".yilian/sent"] {
        std::fs::create_dir_all(root.join(d))?;
    }
    Ok(())
}

fn ignored(p: &Path) -> bool {
    let name = file_name(p);
    name.starts_with('.')
        || name.ends_with('~')
        || name.ends_with(".reason.txt")
        || [".part", ".tmp", ".crdownload", ".partial", ".swp"].iter().any(|s| name.to_ascii_lowercase().ends_with(s))
}

fn is_sidecar(p: &Path) -> bool {
    file_name(p).to_ascii_lowercase().ends_with(".question.txt")
}

/// `x.scp.question.txt` or `x.question.txt` beside `x.scp`.
fn sidecar_of(p: &Path) -> Option<PathBuf> {
    let name = file_name(p);
    let dir = p.parent()?;
    [format!("{name}.question.txt"), format!("{}.question.txt", stem(p))]
        .into_iter()
        .map(|n| dir.join(n))
        .find(|c| c.exists())
}

fn file_name(p: &Path) -> String {
    p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

fn stem(p: &Path) -> String {
    let name = file_name(p);
    name.split_once('.').map_or(name.clone(), |(s, _)| s.to_string())
}

fn extension(p: &Path) -> String {
    p.extension().map(|e| e.to_string_lossy().to_ascii_lowercase()).unwrap_or_default()
}

fn read_head(p: &Path) -> Vec<u8> {
    use std::io::Read;
    let mut buf = Vec::new();
    if let Ok(f) = std::fs::File::open(p) {
        let _ = f.take(64 * 1024).read_to_end(&mut buf);
    }
    buf
}

/// Sidecar text: UTF-8, else GB 18030 (what Chinese Windows editors save).
fn decode_text(b: &[u8]) -> String {
    let t = match std::str::from_utf8(b) {
        Ok(s) => s.to_string(),
        Err(_) => encoding_rs::GB18030.decode(b).0.into_owned(),
    };
    t.trim_start_matches('\u{feff}').trim().to_string()
}

fn write_manifest(dir: &Path, m: &Manifest) -> std::io::Result<()> {
    crate::durable::write_json(&dir.join("manifest.json"), m)
}

fn read_manifest(dir: &Path) -> Option<Manifest> {
    serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).ok()?).ok()
}

/// Moves files into `dest`, never overwriting: a name taken already gets `.1`, `.2`, ...
fn file_away(dest: &Path, files: &[PathBuf]) -> Vec<PathBuf> {
    let _ = std::fs::create_dir_all(dest);
    let mut out = Vec::new();
    for f in files {
        let name = file_name(f);
        let mut target = dest.join(&name);
        let mut n = 1;
        while target.exists() {
            target = dest.join(format!("{name}.{n}"));
            n += 1;
        }
        match std::fs::rename(f, &target) {
            Ok(()) => out.push(target),
            Err(e) => warn!(file = %redact::file_name(f), error = %e, "cannot move file"),
        }
    }
    out
}

impl Ctx {
    /// Moves the files to `rejected/`, writes the reason beside the first, and queues a notice
    /// for the hub.
    fn reject(&self, files: &[PathBuf], why: &str) {
        // Cart files are often named after the patient: logs carry keyed hashes of the names.
        warn!(files = ?redact::file_names(files), reason = %redact::scrub_paths(why, files), "cart file rejected");
        let moved = file_away(&self.cfg.dir.join("rejected"), files);
        if let Some(first) = moved.first() {
            let text = format!("无法发送此文件 / This file was not sent:\n{why}\n");
            let _ = std::fs::write(format!("{}.reason.txt", first.display()), text);
        }
        let names: Vec<String> = files.iter().map(|f| file_name(f)).collect();
        self.notices
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(format!("REJECTED cart file {}: {why}", names.join(" + ")));
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    tokio::task::spawn_blocking(f).await.ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn watcher(root: &Path) -> Watcher {
        prepare(root).expect("prepare");
        Watcher {
            root: root.into(),
            settle: Duration::from_secs(2),
            parts_wait: Duration::from_secs(60),
            seen: HashMap::new(),
        }
    }

    #[test]
    fn files_are_taken_only_once_they_stop_changing() {
        let dir = tempfile::tempdir().expect("tmp");
        let mut w = watcher(dir.path());
        let t0 = Instant::now();
        std::fs::write(dir.path().join("stat/a.scp"), b"abc").expect("write");
        std::fs::write(dir.path().join("b.xml.part"), b"<").expect("write");
        assert!(w.poll(t0).0.is_empty());
        std::fs::write(dir.path().join("stat/a.scp"), b"abcdef").expect("write");
        assert!(w.poll(t0 + Duration::from_secs(1)).0.is_empty(), "changed: the clock restarts");
        assert!(w.poll(t0 + Duration::from_secs(2)).0.is_empty());
        let (groups, _) = w.poll(t0 + Duration::from_secs(3));
        assert_eq!(groups.len(), 1, "{groups:?}");
        assert_eq!(groups[0].priority, Priority::Stat);
        assert_eq!(file_name(&groups[0].main), "a.scp");
    }

    #[test]
    fn a_wfdb_record_waits_for_its_signal_files_and_takes_its_annotations() {
        let dir = tempfile::tempdir().expect("tmp");
        let mut w = watcher(dir.path());
        let t0 = Instant::now();
        std::fs::write(
            dir.path().join("100.hea"),
            "100 2 360 3\r\n100.dat 212 200 11 1024 0 0 0 MLII\r\n100.dat 212 200 11 1024 0 0 0 V5\r\n",
        )
        .expect("write");
        std::fs::write(dir.path().join("100.atr"), [0u8, 0]).expect("write");
        w.poll(t0);
        assert!(w.poll(t0 + Duration::from_secs(5)).0.is_empty(), "no .dat yet");
        std::fs::write(dir.path().join("100.dat"), [0u8; 9]).expect("write");
        w.poll(t0 + Duration::from_secs(6));
        let (groups, _) = w.poll(t0 + Duration::from_secs(9));
        assert_eq!(groups.len(), 1, "{groups:?}");
        let names: Vec<String> = groups[0].others.iter().map(|p| file_name(p)).collect();
        assert_eq!(names, ["100.dat", "100.atr"]);
        let (_, stale) = w.poll(t0 + Duration::from_secs(100));
        assert!(stale.is_empty());
    }

    #[test]
    fn a_header_whose_signal_file_never_comes_is_given_up_with_the_reason() {
        let dir = tempfile::tempdir().expect("tmp");
        let mut w = watcher(dir.path());
        let t0 = Instant::now();
        std::fs::write(dir.path().join("7.hea"), "7 1 500 10\n7.dat 16 200 16 0 0 0 0 I\n").expect("write");
        w.poll(t0);
        let (groups, stale) = w.poll(t0 + Duration::from_secs(61));
        assert!(groups.is_empty());
        assert_eq!(stale.len(), 1);
        assert!(stale[0].1.contains("7.dat"), "{stale:?}");
    }

    #[test]
    fn sidecar_questions_travel_with_their_file_and_gbk_text_is_read() {
        let dir = tempfile::tempdir().expect("tmp");
        let mut w = watcher(dir.path());
        let t0 = Instant::now();
        std::fs::write(dir.path().join("a.scp"), b"x").expect("write");
        let (gbk, _, _) = encoding_rs::GBK.encode("胸痛两小时");
        std::fs::write(dir.path().join("a.question.txt"), &gbk).expect("write");
        w.poll(t0);
        let (groups, _) = w.poll(t0 + Duration::from_secs(3));
        assert_eq!(groups.len(), 1, "{groups:?}");
        assert_eq!(groups[0].others.len(), 1);
        assert_eq!(decode_text(&std::fs::read(&groups[0].others[0]).expect("read")), "胸痛两小时");
    }
}
