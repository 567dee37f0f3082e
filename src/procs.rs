//! Real processes for fault tests: the `yilian-agent` and `yilian-hub` binaries and Mosquitto,
//! started with their output in a log file and killed with SIGKILL (`kill -9`).

use anyhow::{Context, bail};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Path of a workspace binary (`yilian-agent`, `yilian-hub`) built beside the running test.
pub fn workspace_bin(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    // target/<profile>/deps/<test> or target/<profile>/examples/<example>
    let profile_dir = exe.parent().and_then(Path::parent).context("test binary has no target folder")?;
    let path = profile_dir.join(name);
    if !path.exists() {
        bail!("{} not built; run `cargo build --workspace` (cargo test --workspace builds it)", path.display());
    }
    Ok(path)
}

/// A child process with its log.
pub struct Proc {
    name: String,
    child: Option<Child>,
    log: PathBuf,
}

impl Proc {
    /// Starts `program` with `args` and extra environment, stdout and stderr appended to `log`.
    pub fn spawn(name: &str, program: &Path, args: &[&str], env: &[(&str, &str)], log: &Path) -> anyhow::Result<Self> {
        let out = std::fs::OpenOptions::new().create(true).append(true).open(log)?;
        let mut cmd = Command::new(program);
        cmd.args(args).stdin(Stdio::null()).stdout(out.try_clone()?).stderr(out);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().with_context(|| format!("starting {}", program.display()))?;
        Ok(Self { name: name.to_string(), child: Some(child), log: log.to_path_buf() })
    }

    /// SIGKILL and reap: no chance to flush or say goodbye.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGINT (what Ctrl-C sends) and wait up to `timeout` for a clean exit; SIGKILL after.
    pub async fn interrupt(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let child = self.child.as_mut()?;
        let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).ok()?);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT);
        let deadline = tokio::time::Instant::now() + timeout;
        while tokio::time::Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Some(status);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.kill9();
        None
    }

    /// Process id, while it has not been reaped.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// True while the process runs.
    pub fn running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// The exit status, once it exited by itself.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.as_mut().and_then(|c| c.try_wait().ok().flatten())
    }

    /// The log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Name given at spawn.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Waits until `log` contains `needle` at least `count` times.
pub async fn wait_log(p: &Proc, needle: &str, count: usize, timeout: Duration) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if p.log().matches(needle).count() >= count {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            bail!("{}: no {count}× {needle:?} in its log within {timeout:?}:\n{}", p.name(), tail(&p.log(), 40));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The last `n` lines of a text.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A Mosquitto broker on a loopback port (the Debian `mosquitto` package).
pub struct Mosquitto {
    proc: Proc,
    port: u16,
    conf: PathBuf,
    log: PathBuf,
}

impl Mosquitto {
    /// Starts Mosquitto on `port` with its config and log in `dir`.
    pub async fn start(dir: &Path, port: u16) -> anyhow::Result<Self> {
        let conf = dir.join("mosquitto.conf");
        std::fs::write(&conf, format!("listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"))?;
        let log = dir.join("mosquitto.log");
        let proc = Self::launch(&conf, &log, port).await?;
        Ok(Self { proc, port, conf, log })
    }

    async fn launch(conf: &Path, log: &Path, port: u16) -> anyhow::Result<Proc> {
        let bin = ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"]
            .iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
            .context("mosquitto is not installed (apt-get install mosquitto)")?;
        let conf = conf.to_str().context("config path")?;
        let proc = Proc::spawn("mosquitto", &bin, &["-c", conf], &[], log)?;
        // What a service manager keeps: the hub's `--broker-reload` signals whatever this names.
        if let Some(pid) = proc.pid() {
            std::fs::write(Path::new(conf).with_file_name("mosquitto.pid"), format!("{pid}\n"))?;
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            if tokio::time::Instant::now() >= deadline {
                bail!("mosquitto did not listen on {port}:\n{}", proc.log());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(proc)
    }

    /// Starts Mosquitto from a configuration written by
    /// [`yilian_hub::mosquitto::write_config`] (TLS listener on `port`), logging beside it.
    pub async fn start_with_config(conf: &Path, port: u16) -> anyhow::Result<Self> {
        let log = conf.with_file_name("mosquitto.log");
        let proc = Self::launch(conf, &log, port).await?;
        Ok(Self { proc, port, conf: conf.to_path_buf(), log })
    }

    /// A shell command that makes this Mosquitto re-read its configuration and CRL, whichever
    /// process it currently is (for the hub's `--broker-reload`).
    pub fn reload_command(&self) -> String {
        format!("kill -HUP \"$(cat '{}')\"", self.conf.with_file_name("mosquitto.pid").display())
    }

    /// `mqtts://127.0.0.1:port`.
    pub fn url(&self) -> String {
        format!("mqtts://127.0.0.1:{}", self.port)
    }

    /// The broker's log so far.
    pub fn log(&self) -> String {
        self.proc.log()
    }

    /// The process id while it runs (for reading its CPU and memory in `/proc`).
    pub fn pid(&self) -> Option<u32> {
        self.proc.pid()
    }

    /// kill -9, then start again on the same port (in-memory state is gone).
    pub async fn restart_hard(&mut self) -> anyhow::Result<()> {
        self.proc.kill9();
        self.proc = Self::launch(&self.conf, &self.log, self.port).await?;
        Ok(())
    }

    /// kill -9 and leave it down.
    pub fn kill9(&mut self) {
        self.proc.kill9();
    }

    /// Start again after [`Mosquitto::kill9`].
    pub async fn start_again(&mut self) -> anyhow::Result<()> {
        self.proc = Self::launch(&self.conf, &self.log, self.port).await?;
        Ok(())
    }
}
