//! Fleet updates end to end: county IT signs a release offline with the real `yilian-hub
//! release` commands, the running hub serves the repository over HTTPS, and the clinic's real
//! `yilian-agent update` verifies and stages it; an offline bundle goes through the same checks.

use crate::common::*;
use std::path::{Path, PathBuf};
use std::time::Duration;
use yilian::county::{Broker, Clinic, HubHandle};
use yilian::procs::workspace_bin;

pub(crate) fn run(bin: &str, args: &[&str]) -> anyhow::Result<String> {
    let out = std::process::Command::new(workspace_bin(bin)?).args(args).output()?;
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    anyhow::ensure!(out.status.success(), "{bin} {args:?}: {text}");
    Ok(text)
}

pub(crate) fn s(p: &Path) -> &str {
    p.to_str().unwrap_or_default()
}

/// A running hub whose update repository county IT created with its offline key folder.
pub(crate) struct Fleet {
    pub(crate) tmp: tempfile::TempDir,
    pub(crate) hub: HubHandle,
    usb: PathBuf,
}

impl Fleet {
    pub(crate) async fn start() -> anyhow::Result<Self> {
        init_logs();
        let tmp = tempfile::tempdir()?;
        // Rollouts move on every 300 ms here (10 s in production), so stages open quickly.
        let hub = HubHandle::start_with(&tmp.path().join("hub"), Broker::Embedded, |c| {
            c.rollout_tick = Duration::from_millis(300);
        })
        .await?;
        let usb = tmp.path().join("usb");
        run("yilian-hub", &["--data", s(&hub.data_dir), "release", "init", "--offline-keys", s(&usb)])?;
        Ok(Self { tmp, hub, usb })
    }

    pub(crate) fn hub_cli(&self, args: &[&str]) -> anyhow::Result<String> {
        run("yilian-hub", &[&["--data", s(&self.hub.data_dir)], args].concat())
    }

    /// Signs and publishes `file` as agent release `version` for this platform.
    fn release(&self, file: &Path, version: &str, extra: &[&str]) -> anyhow::Result<String> {
        let triple = yilian_agent::update::TRIPLE;
        let args = [
            "release",
            "add",
            "--offline-keys",
            s(&self.usb),
            "--file",
            s(file),
            "--triple",
            triple,
            "--version",
            version,
        ];
        self.hub_cli(&[&args[..], extra].concat())
    }

    /// Releases a shell script with `body` as agent `version`.
    pub(crate) fn release_script(&self, version: &str, body: &str) -> anyhow::Result<PathBuf> {
        let file = self.tmp.path().join(format!("release-{version}"));
        std::fs::write(&file, format!("#!/bin/sh\n{body}\n"))?;
        self.release(&file, version, &[])?;
        Ok(file)
    }

    /// A clinic whose agent updates from `hub_url` (the hub's own by default), pinning the
    /// county's root; returns it, its config file and its update folder.
    pub(crate) fn clinic(
        &self,
        site: &str,
        device: &str,
        hub_url: Option<String>,
    ) -> anyhow::Result<(Clinic, PathBuf, PathBuf)> {
        let hub = &self.hub;
        let mut clinic = Clinic::prepare(&self.tmp.path().join("clinic"), site, device, &hub.hub_key, &hub.broker_url)?;
        let root = clinic.dir.join("update-root.json");
        std::fs::copy(hub.data_dir.join("tuf/root.json"), &root)?;
        let dir = clinic.dir.join("update");
        let hub = hub_url.unwrap_or_else(|| hub.base_url.clone());
        clinic.config.update =
            Some(yilian_agent::config::UpdateConfig { hub, root, dir: dir.clone(), maintenance: None, managed: false });
        let cfg = clinic.write_config()?;
        Ok((clinic, cfg, dir))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_signed_offline_is_served_by_the_hub_verified_and_staged_by_the_agent() -> anyhow::Result<()> {
    let f = Fleet::start().await?;
    // The "new release": a script standing in for the agent binary (a debug agent is ~270 MB,
    // over the agent's download limit; a release build is ~20 MB), padded to a realistic 2 MB.
    let release = f.tmp.path().join("yilian-agent-0.2.0");
    let pad: String = (0..2_000_000).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
    std::fs::write(&release, format!("#!/bin/sh\necho yilian-agent 0.2.0\nexit 0\n# {pad}\n"))?;
    let added = f.release(&release, "0.2.0", &["--min-version", "0.1.0"])?;
    assert!(added.contains(&format!("agent-{}-0.2.0", yilian_agent::update::TRIPLE)), "{added}");
    let listed = f.hub_cli(&["release", "list"])?;
    assert!(listed.contains("0.2.0") && listed.contains("over 0.1.0"), "{listed}");

    // The clinic: its shipped root is the county's, its CA the county CA.
    let (_clinic, cfg, update) = f.clinic("xz-up", "cart-up", None)?;
    let out = run("yilian-agent", &["update", "--config", s(&cfg)])?;
    let staged = update.join("releases/0.2.0/yilian-agent");
    assert!(out.contains("staged 0.2.0"), "{out}");
    assert_eq!(std::fs::read(&staged)?, std::fs::read(&release)?, "staged byte for byte");
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&staged)?.permissions());
    assert_eq!(mode & 0o111, 0o111, "staged executable");

    // The hub refreshes the timestamp with its online keys alone; the agent accepts it.
    f.hub_cli(&["release", "refresh"])?;
    std::fs::remove_file(&staged)?;
    run("yilian-agent", &["update", "--config", s(&cfg)])?;
    assert!(staged.exists());

    // A target file altered at the hub is refused, and nothing is staged.
    std::fs::remove_file(&staged)?;
    let targets = f.hub.data_dir.join("tuf/targets");
    let file =
        std::fs::read_dir(&targets)?.flatten().next().map(|e| e.path()).ok_or_else(|| anyhow::anyhow!("no target"))?;
    let good = std::fs::read(&file)?;
    let mut bad = good.clone();
    let at = bad.len() / 3;
    bad[at] ^= 0x01;
    std::fs::write(&file, &bad)?;
    let refused =
        std::process::Command::new(workspace_bin("yilian-agent")?).args(["update", "--config", s(&cfg)]).output()?;
    let text = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success() && text.contains("tampered"), "{text}");
    assert!(!staged.exists());
    std::fs::write(&file, &good)?;

    // An offline bundle (the repository copied to a USB stick) passes the same checks; the hub
    // can be unreachable.
    let bundle = f.tmp.path().join("usb-bundle");
    f.hub_cli(&["release", "bundle", "--out", s(&bundle)])?;
    let Fleet { tmp: _tmp, hub, .. } = f;
    hub.stop().await?;
    let out = run("yilian-agent", &["update", "--config", s(&cfg), "--bundle", s(&bundle)])?;
    assert!(out.contains("staged 0.2.0"), "{out}");
    assert_eq!(std::fs::read(&staged)?, std::fs::read(&release)?);
    Ok(())
}

/// The version `current` runs, by running it.
fn runs(update: &Path) -> anyhow::Result<String> {
    let bin = yilian_agent::install::current_binary(update).ok_or_else(|| anyhow::anyhow!("no current release"))?;
    let out = std::process::Command::new(bin).output()?;
    anyhow::ensure!(out.status.success(), "current release does not run");
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Starts `yilian-agent supervise` for the agent configured in `cfg`, with `args`, logging to
/// `supervisor.log` beside it.
pub(crate) fn supervise(cfg: &Path, args: &[&str]) -> anyhow::Result<yilian::procs::Proc> {
    let log = cfg.with_file_name("supervisor.log");
    let all = [&["supervise", "--config", s(cfg)][..], args].concat();
    yilian::procs::Proc::spawn("supervisor", &workspace_bin("yilian-agent")?, &all, &[("RUST_LOG", "info")], &log)
}

/// Waits for the supervisor to record `outcome` for `version` in `update`'s results.
pub(crate) async fn trial_result(
    update: &Path,
    version: &'static str,
    outcome: &'static str,
    within: Duration,
) -> anyhow::Result<yilian_agent::supervise::TrialResult> {
    let update = update.to_path_buf();
    yilian::county::wait_for(&format!("{version} {outcome}"), within, move || {
        let update = update.clone();
        async move {
            yilian_agent::supervise::results(&update).into_iter().find(|r| r.version == version && r.result == outcome)
        }
    })
    .await
}

/// A power cut (the process aborted) after each step of switching releases leaves exactly one
/// runnable release, and the trial record agrees with it after recovery.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_power_cut_at_each_install_step_leaves_one_runnable_release() -> anyhow::Result<()> {
    let f = Fleet::start().await?;
    f.release_script("0.2.0", "echo yilian-agent 0.2.0")?;
    let (_clinic, cfg, update) = f.clinic("xz-pc", "cart-pc", None)?;
    let out = run("yilian-agent", &["update", "--config", s(&cfg), "--install"])?;
    assert!(out.contains("0.2.0 on trial (previous: none)"), "{out}");
    assert_eq!(runs(&update)?, "yilian-agent 0.2.0");
    yilian_agent::install::commit(&update)?;

    f.release_script("0.3.0", "echo yilian-agent 0.3.0")?;
    for step in ["previous", "trial", "current"] {
        let cut = std::process::Command::new(workspace_bin("yilian-agent")?)
            .args(["update", "--config", s(&cfg), "--install"])
            .env("YILIAN_INSTALL_CRASH", step)
            .output()?;
        assert!(!cut.status.success(), "the install was cut after {step}");
        let trial = yilian_agent::install::recover(&update)?;
        let running = runs(&update)?;
        match step {
            // Cut before current moved: the old release runs and no trial is left over.
            "previous" | "trial" => {
                assert_eq!((running.as_str(), trial.is_none()), ("yilian-agent 0.2.0", true), "cut after {step}")
            }
            // Cut after: the new release runs on trial, the old one is previous.
            _ => {
                assert_eq!(running, "yilian-agent 0.3.0");
                let t = trial.ok_or_else(|| anyhow::anyhow!("trial record lost"))?;
                assert_eq!((t.version.as_str(), t.previous.as_deref()), ("0.3.0", Some("0.2.0")));
                yilian_agent::install::rollback(&update)?;
                assert_eq!(runs(&update)?, "yilian-agent 0.2.0", "rolled back");
            }
        }
    }
    f.hub.stop().await
}

/// The supervisor runs a release on trial and commits it once the agent connected, had its
/// trial probe acknowledged by the hub and emptied its spool; a release that crashes on start,
/// one that hangs and one whose configuration cannot reach the hub are each rolled back, with
/// the reason, and never tried again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_supervisor_commits_a_good_release_and_rolls_back_crashing_hanging_and_unreachable_ones()
-> anyhow::Result<()> {
    let f = Fleet::start().await?;
    let hub = &f.hub;
    let agent = workspace_bin("yilian-agent")?;
    let add = |version: &str, body: &str| f.release_script(version, body).map(|_| ());
    let (site, device) = ("xz-sv", "cart-sv");
    let (clinic, cfg, update) = f.clinic(site, device, None)?;
    hub.enroll(site, device, &clinic.public_key)?;
    // The same agent with a broker nobody listens on.
    let mut unreachable = clinic.config.clone();
    unreachable.broker = format!("mqtts://127.0.0.1:{}", yilian_hub::broker::free_port()?);
    let bad_cfg = clinic.dir.join("unreachable.toml");
    std::fs::write(&bad_cfg, toml::to_string(&unreachable)?)?;

    add("0.2.0", &format!("exec '{}' \"$@\"", agent.display()))?;
    run("yilian-agent", &["update", "--config", s(&cfg), "--install"])?;
    let sup = supervise(&cfg, &["--health-window-secs", "15", "--watchdog-secs", "4", "--check-every-secs", "2"])?;
    let committed = trial_result(&update, "0.2.0", "committed", Duration::from_secs(60)).await?;
    assert!(committed.reason.is_empty());
    // The committed agent is the one that passed its trial, not a restart of it.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(sup.log().matches("starting the agent").count(), 1, "{}", yilian::procs::tail(&sup.log(), 20));
    let lines = hub.api.device_output(device).await?;
    assert!(
        lines.iter().any(|l| l["line"] == "yilian-agent 0.2.0 on trial"),
        "the hub stored the trial probe: {lines:?}"
    );

    add("0.3.0", "exit 3")?;
    let r = trial_result(&update, "0.3.0", "rolled back", Duration::from_secs(60))
        .await
        .map_err(|e| anyhow::anyhow!("{e}\n{}", yilian::procs::tail(&sup.log(), 30)))?;
    assert!(r.reason.contains("crashed 3 times"), "{r:?}");
    assert_eq!(yilian_agent::install::linked(&update, "current").as_deref(), Some("0.2.0"));

    add("0.4.0", "exec sleep 600")?;
    let r = trial_result(&update, "0.4.0", "rolled back", Duration::from_secs(60)).await?;
    assert!(r.reason.contains("hung"), "{r:?}");

    add("0.5.0", &format!("exec '{}' run --config '{}'", agent.display(), bad_cfg.display()))?;
    let r = trial_result(&update, "0.5.0", "rolled back", Duration::from_secs(90)).await?;
    assert!(r.reason.contains("never reached the hub"), "{r:?}");
    assert_eq!(yilian_agent::install::linked(&update, "current").as_deref(), Some("0.2.0"));

    // None of them is tried again, and the good release is still what runs.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let all = yilian_agent::supervise::results(&update);
    for v in ["0.3.0", "0.4.0", "0.5.0"] {
        assert_eq!(all.iter().filter(|r| r.version == v && r.result == "rolled back").count(), 1, "{v}: {all:?}");
    }
    let health: yilian_agent::supervise::Health = serde_json::from_slice(&std::fs::read(update.join("health.json"))?)?;
    assert!(health.connected, "the committed release runs and is connected");
    // County IT sees it at the hub, from the device's signed fleet report.
    let api = hub.api.clone();
    let row = yilian::county::wait_for("the fleet report at the hub", Duration::from_secs(30), || {
        let api = api.clone();
        async move {
            let devices = api.get_raw("/api/devices").await.ok()?.1;
            devices
                .as_array()?
                .iter()
                .find(|d| {
                    d["device_id"] == device
                        && d["update_detail"].as_str().is_some_and(|t| t.starts_with("0.5.0: not healthy"))
                })
                .cloned()
        }
    })
    .await?;
    assert_eq!(
        (row["installed_version"].as_str(), row["update_state"].as_str()),
        (Some("0.2.0"), Some("rolled back")),
        "{row}"
    );
    drop(sup);
    eprintln!("supervisor results: {all:?}");
    f.hub.stop().await
}

/// A TCP proxy to `to` that cuts the first connection once it has carried `cut_after` bytes
/// towards the client (a clinic link dropping mid-download); returns its address and the bytes
/// it has carried towards clients so far.
async fn cutting_proxy(
    to: std::net::SocketAddr,
    cut_after: u64,
) -> anyhow::Result<(std::net::SocketAddr, std::sync::Arc<std::sync::atomic::AtomicU64>)> {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let down = std::sync::Arc::new(AtomicU64::new(0));
    let cut = std::sync::Arc::new(AtomicBool::new(false));
    let total = down.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let (down, cut) = (down.clone(), cut.clone());
            tokio::spawn(async move {
                let Ok(upstream) = tokio::net::TcpStream::connect(to).await else { return };
                let (mut cr, mut cw) = client.into_split();
                let (mut ur, mut uw) = upstream.into_split();
                let up = tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut cr, &mut uw).await;
                });
                let mut buf = vec![0u8; 16 * 1024];
                let mut here = 0u64;
                loop {
                    let n = match ur.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    if cw.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                    here += n as u64;
                    down.fetch_add(n as u64, Ordering::SeqCst);
                    if here > cut_after && !cut.swap(true, Ordering::SeqCst) {
                        break;
                    }
                }
                up.abort();
            });
        }
    });
    Ok((addr, total))
}

/// A download cut at ~40 % resumes where it stopped (HTTP Range) and is verified whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_cut_at_forty_percent_resumes_and_verifies() -> anyhow::Result<()> {
    use std::sync::atomic::Ordering;
    let f = Fleet::start().await?;
    // 4 MB that do not compress (TLS would not, either way).
    let release = f.tmp.path().join("yilian-agent-0.2.0");
    let mut body = b"#!/bin/sh\necho yilian-agent 0.2.0\nexit 0\n".to_vec();
    let mut x = 0x2545_f491_4f6c_dd1du64;
    while body.len() < 4_000_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        body.extend_from_slice(&x.to_le_bytes());
    }
    std::fs::write(&release, &body)?;
    f.release(&release, "0.2.0", &[])?;
    let length = body.len() as u64;
    let (proxy, carried) = cutting_proxy(f.hub.http, length * 2 / 5).await?;
    let (_clinic, cfg, update) = f.clinic("xz-dl", "cart-dl", Some(format!("https://{proxy}")))?;

    let first =
        std::process::Command::new(workspace_bin("yilian-agent")?).args(["update", "--config", s(&cfg)]).output()?;
    let text = String::from_utf8_lossy(&first.stderr);
    assert!(!first.status.success() && text.contains("unreachable"), "{text}");
    let part = update.join("releases/0.2.0/yilian-agent.part");
    let kept = std::fs::metadata(&part)?.len();
    assert!(kept > length / 4 && kept < length * 3 / 5, "kept {kept} of {length} bytes");
    let before = carried.load(Ordering::SeqCst);
    let out = run("yilian-agent", &["update", "--config", s(&cfg)])?;
    assert!(out.contains("staged 0.2.0"), "{out}");
    let second = carried.load(Ordering::SeqCst) - before;
    let staged = update.join("releases/0.2.0/yilian-agent");
    assert_eq!(std::fs::read(&staged)?, body, "the resumed file is the release, byte for byte");
    assert!(!part.exists());
    // The second attempt carried the rest (plus metadata and TLS), not the whole file again.
    assert!(second < length - kept + 200_000, "second attempt carried {second} bytes; {} were left", length - kept);
    eprintln!("download of {length} bytes cut after {kept}; the resumed attempt carried {second} bytes");
    f.hub.stop().await
}

/// Clinical interlock: a release that arrives while the cart is sending data waits (`deferred`)
/// and goes on trial only once the cart has been quiet; one that arrives outside the clinic's
/// maintenance window waits for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_waits_for_a_quiet_cart_and_the_maintenance_window() -> anyhow::Result<()> {
    let f = Fleet::start().await?;
    let agent = workspace_bin("yilian-agent")?;
    let good = format!("exec '{}' \"$@\"", agent.display());
    let (site, device) = ("xz-rec", "cart-rec");
    let (clinic, cfg, update) = f.clinic(site, device, None)?;
    f.hub.enroll(site, device, &clinic.public_key)?;
    f.release_script("0.2.0", &good)?;
    run("yilian-agent", &["update", "--config", s(&cfg), "--install"])?;
    let sup = supervise(
        &cfg,
        &["--health-window-secs", "30", "--watchdog-secs", "5", "--check-every-secs", "1", "--idle-secs", "4"],
    )?;
    trial_result(&update, "0.2.0", "committed", Duration::from_secs(60)).await?;

    // The cart prints a line every 300 ms (a recording in progress) while 0.3.0 is released.
    let printing = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let (p, clinic) = (printing.clone(), std::sync::Arc::new(clinic));
    let printer = {
        let clinic = clinic.clone();
        tokio::spawn(async move {
            let mut n = 0;
            while p.load(std::sync::atomic::Ordering::SeqCst) {
                n += 1;
                let _ = clinic.print(&format!("记录中 line {n}"));
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    f.release_script("0.3.0", &good)?;
    let deferred = trial_result(&update, "0.3.0", "deferred", Duration::from_secs(30)).await?;
    assert!(deferred.reason.contains("recording"), "{deferred:?}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        yilian_agent::install::linked(&update, "current").as_deref(),
        Some("0.2.0"),
        "nothing restarted while recording"
    );
    printing.store(false, std::sync::atomic::Ordering::SeqCst);
    printer.await?;
    let committed = trial_result(&update, "0.3.0", "committed", Duration::from_secs(60))
        .await
        .map_err(|e| anyhow::anyhow!("{e}\n{}", yilian::procs::tail(&sup.log(), 30)))?;
    assert!(committed.at_ms > deferred.at_ms);
    assert_eq!(yilian_agent::install::linked(&update, "current").as_deref(), Some("0.3.0"));

    // Outside the clinic's maintenance window nothing is installed; inside it, it is.
    let hour = i32::from(yilian_agent::config::local_minute() / 60);
    let window = |from: i32, to: i32| format!("{:02}:00-{:02}:00", from.rem_euclid(24), to.rem_euclid(24));
    let set_window = |w: String| -> anyhow::Result<()> {
        let mut config = clinic.config.clone();
        if let Some(u) = config.update.as_mut() {
            u.maintenance = Some(w);
        }
        std::fs::write(&cfg, toml::to_string(&config)?)?;
        Ok(())
    };
    set_window(window(hour + 2, hour + 4))?;
    f.release_script("0.4.0", &good)?;
    let outside = trial_result(&update, "0.4.0", "deferred", Duration::from_secs(30)).await?;
    assert!(outside.reason.contains("outside the maintenance window"), "{outside:?}");
    set_window(window(hour, hour + 2))?;
    trial_result(&update, "0.4.0", "committed", Duration::from_secs(60)).await?;
    drop(sup);
    f.hub.stop().await
}

/// A pseudo-random "binary" of `len` bytes (it does not compress, as real code barely does).
fn binary_like(len: usize, seed: u64) -> Vec<u8> {
    let mut body = b"#!/bin/sh\nexit 0\n".to_vec();
    let mut x = seed | 1;
    while body.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        body.extend_from_slice(&x.to_le_bytes());
    }
    body
}

/// A cart that runs the delta's base gets the new release as a small signed patch, rebuilt and
/// checked against the full release's signed hash; a cart whose installed binary is not that
/// base (here: altered on disk) falls back to the full download.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delta_is_used_over_its_base_and_a_wrong_base_falls_back_to_the_full_binary() -> anyhow::Result<()> {
    let f = Fleet::start().await?;
    let old = binary_like(4_000_000, 7);
    // The next release: a few hundred scattered changes and 16 KB of new code at the end.
    let mut new = old.clone();
    for i in 0..300 {
        let at = 64 + i * 13_001;
        new[at..at + 8].copy_from_slice(&(i as u64).to_le_bytes());
    }
    new.extend(binary_like(16_384, 11));
    let (old_file, new_file) = (f.tmp.path().join("agent-0.2.0"), f.tmp.path().join("agent-0.3.0"));
    std::fs::write(&old_file, &old)?;
    std::fs::write(&new_file, &new)?;
    f.release(&old_file, "0.2.0", &[])?;
    let (_a, cfg_a, dir_a) = f.clinic("xz-da", "cart-da", None)?;
    let (_b, cfg_b, dir_b) = f.clinic("xz-db", "cart-db", None)?;
    for cfg in [&cfg_a, &cfg_b] {
        run("yilian-agent", &["update", "--config", s(cfg), "--install"])?;
    }
    f.release(&new_file, "0.3.0", &[])?;
    let listed = f.hub_cli(&["release", "list"])?;
    assert!(listed.contains(".from-0.2.0.bsdiff"), "a delta from 0.2.0 is signed with 0.3.0: {listed}");

    let out = run("yilian-agent", &["update", "--config", s(&cfg_a)])?;
    let delta: u64 = out
        .split("rebuilt from a ")
        .nth(1)
        .and_then(|t| t.split('-').next())
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("not rebuilt from a delta: {out}"))?;
    assert_eq!(std::fs::read(dir_a.join("releases/0.3.0/yilian-agent"))?, new, "rebuilt byte for byte");
    assert!(delta * 10 < new.len() as u64, "delta {delta} bytes for a {}-byte release", new.len());

    // Cart B's installed 0.2.0 was altered: the delta does not apply, the full release comes.
    let base_b = dir_b.join("releases/0.2.0/yilian-agent");
    let mut bytes = std::fs::read(&base_b)?;
    bytes[1000] ^= 0xff;
    std::fs::write(&base_b, &bytes)?;
    let out = run("yilian-agent", &["update", "--config", s(&cfg_b)])?;
    assert!(out.contains("full download"), "{out}");
    assert_eq!(std::fs::read(dir_b.join("releases/0.3.0/yilian-agent"))?, new);
    eprintln!("update of {} bytes: full download {} bytes, delta {delta} bytes", new.len(), new.len());
    f.hub.stop().await
}
