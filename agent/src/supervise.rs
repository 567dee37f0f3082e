//! `yilian-agent supervise`: runs the agent from `current`, and a new release on trial.
//!
//! The supervisor is the binary installed at a fixed path (not `current`), so a bad release
//! cannot take it down. It starts `current/yilian-agent run` with a health file the agent
//! rewrites every second (its watchdog ping). A release on trial is committed once the agent has
//! connected, had its trial probe (a signed line of device output) acknowledged by the hub, and
//! emptied its spool; within the health window. It is rolled back to `previous`, with the
//! reason kept in `results.json` and never tried again, when it:
//! - exits [`CRASH_LIMIT`] times (a crash loop),
//! - stops pinging for the watchdog time (a hang),
//! - is not healthy when the window closes (e.g. a configuration that cannot reach the hub).
//!
//! Between trials it checks the repository every `check_every`, stages what is new, and
//! installs it only while the agent is idle (spool empty, no device data for `idle`, a minute by
//! default); otherwise it records `deferred` and tries again at the next check.

use crate::install;
use crate::stats::AgentStats;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

/// Exits of a release on trial before it is rolled back.
pub const CRASH_LIMIT: u32 = 3;

/// The environment variable naming the health file `run` keeps.
pub const HEALTH_ENV: &str = "YILIAN_HEALTH_FILE";
/// The environment variable carrying the trial probe's text.
pub const PROBE_ENV: &str = "YILIAN_TRIAL_PROBE";

/// What the running agent says about itself, every second.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Health {
    /// The agent's version.
    pub version: String,
    /// When written, ms since the epoch.
    pub at_ms: i64,
    /// Connected to the broker now.
    pub connected: bool,
    /// Envelopes the hub acknowledged since this process started.
    pub acked: u64,
    /// Envelopes waiting in the spool.
    pub spool_entries: u64,
    /// Device events (frames, lines) since start: the supervisor treats a change as recording.
    pub device_events: u64,
}

impl Health {
    /// Connected, something acknowledged, nothing waiting.
    pub fn healthy(&self) -> bool {
        self.connected && self.acked > 0 && self.spool_entries == 0
    }
}

/// Rewrites `path` every second from `stats` until `shutdown` (the agent's side).
pub async fn write_health(path: PathBuf, stats: Arc<AgentStats>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let h = Health {
            version: env!("CARGO_PKG_VERSION").into(),
            at_ms: crate::clock::now_ms(),
            connected: stats.connected.load(Ordering::Relaxed) == 1,
            acked: stats.acked.load(Ordering::Relaxed),
            spool_entries: stats.spool_entries.load(Ordering::Relaxed),
            device_events: stats.device_events.load(Ordering::Relaxed),
        };
        let tmp = path.with_extension("tmp");
        if let Ok(bytes) = serde_json::to_vec(&h)
            && std::fs::write(&tmp, bytes).is_ok()
        {
            let _ = std::fs::rename(&tmp, &path);
        }
    }
}

fn read_health(path: &Path) -> Option<Health> {
    std::fs::read(path).ok().and_then(|b| serde_json::from_slice(&b).ok())
}

/// One trial's outcome, as kept in `results.json` (newest last) and reported to the hub.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TrialResult {
    /// The release tried.
    pub version: String,
    /// `committed` or `rolled back`.
    pub result: String,
    /// Why it was rolled back.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// When, ms since the epoch.
    pub at_ms: i64,
}

fn results_path(dir: &Path) -> PathBuf {
    dir.join("results.json")
}

/// Every trial's result so far (at most the last 100).
pub fn results(dir: &Path) -> Vec<TrialResult> {
    std::fs::read(results_path(dir)).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default()
}

/// Appends `r` to `dir`'s results (the last 100 are kept).
pub(crate) fn record(dir: &Path, r: TrialResult) {
    let mut all = results(dir);
    all.push(r);
    let skip = all.len().saturating_sub(100);
    let all: Vec<_> = all.into_iter().skip(skip).collect();
    if let Err(e) = crate::durable::write_json(&results_path(dir), &all) {
        warn!(error = %e, "cannot record an update result");
    }
}

/// True if `version` was rolled back here before, or refused before its trial (it is never
/// installed again).
pub fn rolled_back(dir: &Path, version: &str) -> bool {
    results(dir).iter().any(|r| r.version == version && (r.result == "rolled back" || r.result == "refused"))
}

/// A release or a configuration bundle on trial, and the folder whose links it switched.
struct OnTrial {
    /// The update folder, or its bundles' folder.
    slot: PathBuf,
    /// The name its results go by: the version, or `config-<version>` for a bundle.
    label: String,
    trial: install::Trial,
}

/// After a restart: the release on trial, else the configuration bundle on trial.
fn recover_trial(dir: &Path) -> Result<Option<OnTrial>, install::InstallError> {
    if let Some(t) = install::recover(dir)? {
        return Ok(Some(OnTrial { slot: dir.to_path_buf(), label: t.version.clone(), trial: t }));
    }
    let bundles = crate::config::bundles_dir(dir);
    Ok(install::recover(&bundles)?.map(|t| OnTrial { label: bundle_label(&t.version), slot: bundles, trial: t }))
}

/// How a configuration bundle's version is named in results and fleet reports (agent and
/// bundle versions are separate sequences).
pub fn bundle_label(version: &str) -> String {
    format!("config-{version}")
}

/// Supervisor settings.
#[derive(Debug, Clone)]
pub struct Options {
    /// The agent's configuration file (its `[update]` section names the update folder).
    pub config: PathBuf,
    /// A release on trial must be healthy within this.
    pub health_window: Duration,
    /// No health ping for this long is a hang.
    pub watchdog: Duration,
    /// How often to look for a new release (between trials).
    pub check_every: Duration,
    /// The binary to run when no release is installed yet (the supervisor's own).
    pub fallback: PathBuf,
    /// Device data within this long means a recording is in progress: installs wait.
    pub idle: Duration,
}

/// How a child run ended.
enum Ended {
    Shutdown,
    Exited(String),
    Hung,
    TrialWindowClosed(Option<Health>),
    Committed,
    InstallReady,
}

/// Sends `msg` (`READY=1`, `WATCHDOG=1`) to systemd's notification socket `socket` (a path, or
/// `@name` in the abstract namespace).
pub fn sd_notify_to(socket: &str, msg: &str) -> std::io::Result<()> {
    let sock = std::os::unix::net::UnixDatagram::unbound()?;
    match socket.strip_prefix('@') {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
            sock.send_to_addr(msg.as_bytes(), &addr)?;
        }
        None => {
            sock.send_to(msg.as_bytes(), socket)?;
        }
    }
    Ok(())
}

/// [`sd_notify_to`] the socket in `$NOTIFY_SOCKET`, if systemd started us with one.
fn sd_notify(msg: &str) {
    if let Ok(socket) = std::env::var("NOTIFY_SOCKET")
        && let Err(e) = sd_notify_to(&socket, msg)
    {
        warn!(error = %e, "cannot notify systemd");
    }
}

/// Tells systemd the supervisor is up, then pings its watchdog at half the `WatchdogSec` it set.
fn systemd_watchdog(shutdown: CancellationToken) {
    sd_notify("READY=1");
    let Some(usec) = std::env::var("WATCHDOG_USEC").ok().and_then(|v| v.parse::<u64>().ok()) else { return };
    let every = Duration::from_micros(usec / 2).max(Duration::from_millis(100));
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => sd_notify("WATCHDOG=1"),
            }
        }
    });
}

/// Supervises until `shutdown`.
pub async fn run(opts: Options, dir: PathBuf, shutdown: CancellationToken) -> Result<(), install::InstallError> {
    systemd_watchdog(shutdown.clone());
    let mut crashes = 0u32;
    let mut backoff = Duration::from_millis(200);
    let mut last_check = Instant::now();
    loop {
        let trial = recover_trial(&dir)?;
        let bin = install::current_binary(&dir).unwrap_or_else(|| opts.fallback.clone());
        let health_path = dir.join("health.json");
        let _ = std::fs::remove_file(&health_path);
        let mut cmd = tokio::process::Command::new(&bin);
        cmd.arg("run").arg("--config").arg(&opts.config).env(HEALTH_ENV, &health_path).kill_on_drop(true);
        if let Some(t) = &trial {
            cmd.env(PROBE_ENV, format!("yilian-agent {} on trial", t.label));
        }
        info!(binary = %bin.display(), trial = ?trial.as_ref().map(|t| &t.label), "starting the agent");
        let started = Instant::now();
        let mut trial = trial;
        let ended = match cmd.spawn() {
            Ok(mut child) => loop {
                let ended = watch(
                    &mut child,
                    &opts,
                    &dir,
                    &health_path,
                    trial.as_ref().map(|t| &t.trial),
                    started,
                    &mut last_check,
                    &shutdown,
                )
                .await;
                let (Ended::Committed, Some(t)) = (&ended, &trial) else { break ended };
                install::commit(&t.slot)?;
                record(
                    &dir,
                    TrialResult {
                        version: t.label.clone(),
                        result: "committed".into(),
                        reason: String::new(),
                        at_ms: crate::clock::now_ms(),
                    },
                );
                info!(version = %t.label, "committed after its trial");
                crashes = 0;
                // The same process goes on as the committed release (dropping the child would
                // kill it).
                trial = None;
            },
            Err(e) => Ended::Exited(format!("cannot start {}: {e}", bin.display())),
        };
        match (ended, &trial) {
            (Ended::Shutdown, _) => return Ok(()),
            (Ended::InstallReady, _) => {
                crashes = 0;
                continue;
            }
            (Ended::Exited(why), Some(t)) => {
                crashes += 1;
                warn!(version = %t.label, crashes, reason = %why, "agent on trial exited");
                if crashes >= CRASH_LIMIT {
                    roll_back(&dir, t, format!("crashed {crashes} times on trial ({why})"))?;
                    crashes = 0;
                }
            }
            (Ended::Hung, Some(t)) => {
                roll_back(&dir, t, format!("hung: no watchdog ping for {} s", opts.watchdog.as_secs()))?;
                crashes = 0;
            }
            (Ended::TrialWindowClosed(h), Some(t)) => {
                let why = match h {
                    None => "never reported health".to_string(),
                    Some(h) if !h.connected => "never reached the hub's broker".to_string(),
                    Some(h) if h.acked == 0 => "the hub acknowledged nothing".to_string(),
                    Some(h) => format!("{} envelopes still waiting in the spool", h.spool_entries),
                };
                roll_back(&dir, t, format!("not healthy within {} s: {why}", opts.health_window.as_secs()))?;
                crashes = 0;
            }
            (Ended::Exited(why), None) => {
                warn!(reason = %why, backoff_ms = backoff.as_millis() as u64, "agent exited; restarting");
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(30));
                continue;
            }
            (Ended::Hung, None) => warn!("agent hung (no watchdog ping); restarting"),
            // A commit is handled where the child is still in hand, above.
            (Ended::Committed, _) | (_, None) => {}
        }
        backoff = Duration::from_millis(200);
    }
}

fn roll_back(dir: &Path, t: &OnTrial, reason: String) -> Result<(), install::InstallError> {
    error!(version = %t.label, back_to = ?t.trial.previous, reason = %reason, "rolling back what is on trial");
    install::rollback(&t.slot)?;
    record(
        dir,
        TrialResult { version: t.label.clone(), result: "rolled back".into(), reason, at_ms: crate::clock::now_ms() },
    );
    Ok(())
}

/// Watches a running child; returns why it should stop being watched. Kills it when it must go.
#[allow(clippy::too_many_arguments)]
async fn watch(
    child: &mut tokio::process::Child,
    opts: &Options,
    dir: &Path,
    health_path: &Path,
    trial: Option<&install::Trial>,
    started: Instant,
    last_check: &mut Instant,
    shutdown: &CancellationToken,
) -> Ended {
    let trial_deadline = trial.map(|t| {
        let elapsed = Duration::from_millis(u64::try_from(crate::clock::now_ms() - t.started_ms).unwrap_or(0));
        started + opts.health_window.saturating_sub(elapsed)
    });
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    // Device events seen, and when they last changed (a change is a recording in progress).
    let mut events: Option<u64> = None;
    let mut last_activity: Option<Instant> = None;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => {
                stop(child).await;
                return Ended::Shutdown;
            }
            status = child.wait() => {
                return Ended::Exited(status.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string()));
            }
            _ = tick.tick() => {}
        }
        let health = read_health(health_path);
        let last_ping = health.as_ref().map_or(started, |h| {
            let age = Duration::from_millis(u64::try_from(crate::clock::now_ms() - h.at_ms).unwrap_or(0));
            Instant::now().checked_sub(age).unwrap_or(started).max(started)
        });
        if last_ping.elapsed() > opts.watchdog {
            let _ = child.kill().await;
            return Ended::Hung;
        }
        if let (Some(deadline), Some(h)) = (trial_deadline, &health)
            && h.healthy()
            && Instant::now() <= deadline
        {
            return Ended::Committed;
        }
        if let Some(deadline) = trial_deadline
            && Instant::now() > deadline
        {
            let _ = child.kill().await;
            return Ended::TrialWindowClosed(health);
        }
        if let Some(h) = &health {
            if events.is_some_and(|n| n != h.device_events) {
                last_activity = Some(Instant::now());
            }
            events = Some(h.device_events);
        }
        if trial.is_none() && last_check.elapsed() >= opts.check_every {
            *last_check = Instant::now();
            let recording = last_activity.is_some_and(|at| at.elapsed() < opts.idle);
            if let Some(version) = try_update(opts, dir, health.as_ref(), recording).await {
                info!(%version, "new release installed; restarting the agent on it, on trial");
                stop(child).await;
                return Ended::InstallReady;
            }
        }
    }
}

/// Checks, stages and (when the clinic is idle) installs a new release; returns its version.
async fn try_update(opts: &Options, dir: &Path, health: Option<&Health>, recording: bool) -> Option<String> {
    // The device's own file still names where updates come from if a bundle over it is broken.
    let cfg = match crate::config::AgentConfig::load(&opts.config) {
        Ok(c) => c,
        Err(e) => match crate::config::AgentConfig::load_with(&opts.config, crate::config::Bundle::Without) {
            Ok(c) => {
                warn!(error = %e, "update check: the configuration bundle in effect does not load; checking with the device's own file");
                c
            }
            Err(e) => {
                warn!(error = %e, "update check: cannot read the configuration");
                return None;
            }
        },
    };
    // A new release first; a configuration bundle when the release is up to date.
    // `check` takes the installed release as the running version; without one it is this build.
    let (staged, bundle) = match crate::update::check(&cfg, None, crate::update::running_version()).await {
        Ok(crate::update::Outcome::Staged { version, .. }) => (version.to_string(), false),
        Ok(_) => match crate::update::check_bundle(&cfg, &opts.config, None).await {
            Ok(crate::update::BundleOutcome::Staged { version, .. }) => (version.to_string(), true),
            Ok(_) => return None,
            Err(e) => {
                warn!(error = %e, "configuration bundle check failed");
                return None;
            }
        },
        Err(e) => {
            warn!(error = %e, "update check failed");
            return None;
        }
    };
    let label = if bundle { bundle_label(&staged) } else { staged.clone() };
    if rolled_back(dir, &label) {
        return None;
    }
    // Clinical interlock: never restart while a study is recorded or still uploading, nor
    // outside the clinic's maintenance window.
    let busy = recording || health.is_some_and(|h| h.spool_entries > 0);
    let window = cfg.update.as_ref().and_then(|u| u.maintenance.clone());
    let outside = window
        .as_deref()
        .and_then(|w| crate::config::Window::parse(w).ok())
        .is_some_and(|w| !w.contains(crate::config::local_minute()));
    if busy || outside {
        let reason = if busy {
            "recording or upload in progress".to_string()
        } else {
            format!("outside the maintenance window {}", window.unwrap_or_default())
        };
        info!(version = %label, reason = %reason, "update deferred");
        if results(dir).last().is_some_and(|r| r.version == label && r.result == "deferred" && r.reason == reason) {
            return None;
        }
        record(dir, TrialResult { version: label, result: "deferred".into(), reason, at_ms: crate::clock::now_ms() });
        return None;
    }
    let activated = if bundle {
        install::activate_bundle(&crate::config::bundles_dir(dir), &staged, crate::clock::now_ms())
    } else {
        install::activate(dir, &staged, crate::clock::now_ms())
    };
    match activated {
        Ok(_) => Some(label),
        Err(e) => {
            warn!(error = %e, "cannot install the staged release");
            None
        }
    }
}

/// Ctrl-C to the child (it spools what it holds), then kill after 20 s.
async fn stop(child: &mut tokio::process::Child) {
    if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGINT);
    }
    if tokio::time::timeout(Duration::from_secs(20), child.wait()).await.is_err() {
        let _ = child.kill().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn systemd_notifications_reach_a_path_and_an_abstract_socket() {
        let tmp = tempfile::tempdir().expect("tmp");
        let path = tmp.path().join("notify");
        let rx = std::os::unix::net::UnixDatagram::bind(&path).expect("bind");
        sd_notify_to(path.to_str().expect("utf-8"), "READY=1").expect("send");
        let mut buf = [0u8; 64];
        let n = rx.recv(&mut buf).expect("recv");
        assert_eq!(&buf[..n], b"READY=1");
        use std::os::linux::net::SocketAddrExt;
        let name = format!("yilian-test-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).expect("addr");
        let rx = std::os::unix::net::UnixDatagram::bind_addr(&addr).expect("bind abstract");
        sd_notify_to(&format!("@{name}"), "WATCHDOG=1").expect("send");
        let n = rx.recv(&mut buf).expect("recv");
        assert_eq!(&buf[..n], b"WATCHDOG=1");
    }

    #[test]
    fn health_is_connected_acked_and_drained() {
        let h = Health { connected: true, acked: 1, spool_entries: 0, ..Default::default() };
        assert!(h.healthy());
        assert!(!Health { spool_entries: 2, ..h.clone() }.healthy());
        assert!(!Health { acked: 0, ..h.clone() }.healthy());
        assert!(!Health { connected: false, ..h }.healthy());
    }
}
