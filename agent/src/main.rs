//! `yilian-agent`: the clinic agent's command line.

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::sync::Arc;
use yilian_agent::{AgentConfig, AgentStats};

#[derive(Parser)]
#[command(name = "yilian-agent", version, about = "Yilian clinic agent: ECG cart → signed MQTT → county hub")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create a device key: writes PREFIX.pk8 (private, mode 0600) and PREFIX.pub (hex, for enrolment).
    Keygen {
        /// Path prefix, e.g. keys/cart-01.
        #[arg(long)]
        out: PathBuf,
    },
    /// Enrol this device with a bootstrap token from county IT: make the key here, prove it to
    /// the hub, wait for approval, then write the hub key and a ready-to-run agent.toml.
    Enrol {
        /// The bootstrap file from `yilian-hub enrol-token`.
        #[arg(long, required_unless_present = "token")]
        bootstrap: Option<PathBuf>,
        /// The hub's address (instead of a bootstrap file).
        #[arg(long, requires_all = ["token", "site", "broker"])]
        hub: Option<String>,
        /// The token (instead of a bootstrap file).
        #[arg(long)]
        token: Option<String>,
        /// The clinic the token is for (instead of a bootstrap file).
        #[arg(long)]
        site: Option<String>,
        /// The broker address (instead of a bootstrap file).
        #[arg(long)]
        broker: Option<String>,
        /// The county CA certificate to pin (instead of a bootstrap file).
        #[arg(long)]
        ca: Option<PathBuf>,
        /// This device's id.
        #[arg(long)]
        device: String,
        /// Folder for the key, credentials, agent.toml, spool and reports.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// Give up waiting for approval after this many minutes (run again to keep waiting).
        #[arg(long, default_value_t = 24 * 60)]
        wait_minutes: u64,
    },
    /// Rotate this device's key: makes the next key beside the current one; the running agent
    /// sends it to the hub (signed by the current key) and switches once the hub has taken it.
    RotateKey {
        /// Configuration file of the agent.
        #[arg(long)]
        config: PathBuf,
    },
    /// Check the county's signed update repository (the hub, or an offline bundle) and stage
    /// the release meant for this agent under the update folder's releases/.
    Update {
        /// Configuration file of the agent (its [update] section).
        #[arg(long)]
        config: PathBuf,
        /// An offline bundle (a folder with metadata/ and targets/, e.g. on a USB stick),
        /// verified exactly as the hub's repository.
        #[arg(long)]
        bundle: Option<PathBuf>,
        /// Also switch to the staged release, on trial (`current` moves; `previous` keeps the
        /// one before).
        #[arg(long)]
        install: bool,
    },
    /// Check a configuration without running it: syntax, ids, keys, TLS material, the update
    /// root, serial ports. Exits 1 and lists every problem if it cannot run.
    CheckConfig {
        /// Configuration file.
        #[arg(long)]
        config: PathBuf,
    },
    /// Check a report PDF against the hub's signature kept beside it (`<file>.sig.json`), with
    /// the hub key this agent pins; offline. Exit 1 if it does not verify.
    VerifyReport {
        /// Configuration file (for the hub key, site and device).
        #[arg(long)]
        config: PathBuf,
        /// The report PDF.
        file: PathBuf,
    },
    /// Make a clinician's entry for the list of who may acknowledge critical results on the
    /// clinic page: reads the PIN (4 to 12 digits) from standard input and prints the TOML to add
    /// to agent.toml (only the salted hash of the PIN is kept).
    ClinicianPin {
        /// The clinician's name as it should be recorded, e.g. 王芳.
        #[arg(long)]
        name: String,
    },
    /// Run the agent under a supervisor: from the installed release (`current`), a new one on
    /// trial with automatic rollback, and update checks between trials. Install this binary at a
    /// fixed path (the systemd unit's ExecStart), not inside the update folder.
    Supervise {
        /// Configuration file of the agent (its [update] section is required).
        #[arg(long)]
        config: PathBuf,
        /// Seconds a release on trial has to become healthy.
        #[arg(long, default_value_t = 600)]
        health_window_secs: u64,
        /// Seconds without a health ping that count as a hang.
        #[arg(long, default_value_t = 60)]
        watchdog_secs: u64,
        /// Seconds between update checks.
        #[arg(long, default_value_t = 3600)]
        check_every_secs: u64,
        /// Seconds without device data before an update may restart the agent (a recording in
        /// progress defers it).
        #[arg(long, default_value_t = 60)]
        idle_secs: u64,
    },
    /// Run the agent.
    Run {
        /// Configuration file (see agent.example.toml).
        #[arg(long)]
        config: PathBuf,
    },
    /// Say what a cart file holds (format, patient, leads, warnings) without sending anything.
    Inspect {
        /// The file (for a WFDB record, its .hea; the other files are found beside it).
        file: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// The pre-read of a cart file (an aid for the specialist, never a diagnosis): QRS positions
    /// at the file's own sampling rate, heart rate and RR statistics.
    Analyze {
        /// The file (for a WFDB record, its .hea; the other files are found beside it).
        file: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Send a cart file through the running agent's inbox (checked first; nothing is copied if it
    /// cannot be read).
    Send {
        /// Configuration file of the running agent (its [inbox] is used).
        #[arg(long)]
        config: PathBuf,
        /// The file (for a WFDB record, its .hea).
        file: PathBuf,
        /// stat, urgent or routine.
        #[arg(long, default_value = "routine")]
        priority: String,
        /// The clinic's question to the specialist.
        #[arg(long)]
        question: Option<String>,
        /// Wait up to this many seconds for the hub's confirmation (0: do not wait).
        #[arg(long, default_value_t = 0)]
        wait: u64,
    },
    /// Record the raw bytes of a serial port with timestamps (for an undocumented cart).
    RawCapture {
        /// Serial device, e.g. /dev/ttyUSB0.
        #[arg(long)]
        port: String,
        /// Baud rate.
        #[arg(long, default_value_t = 115_200)]
        baud: u32,
        /// Output file (must not exist).
        #[arg(long)]
        out: PathBuf,
        /// Stop after this many seconds (default: until Ctrl-C or the port closes).
        #[arg(long)]
        seconds: Option<u64>,
    },
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    match Cli::parse().command {
        Command::Keygen { out } => {
            let (pk8, public) = yilian_agent::run::keygen(&out)?;
            println!(
                "private key: {}\npublic key:  {}\nenrol with:  yilian-hub enroll --site SITE --device DEVICE --public-key {}",
                pk8.display(),
                public.display(),
                public.display()
            );
            Ok(())
        }
        Command::Enrol { bootstrap, hub, token, site, broker, ca, device, dir, wait_minutes } => {
            let b = match (bootstrap, hub, token, site, broker) {
                (Some(path), ..) => yilian_agent::enrol::load_bootstrap(&path)?,
                (None, Some(hub), Some(token), Some(site), Some(broker)) => {
                    let ca_certificate = ca
                        .map(|p| std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display())))
                        .transpose()?;
                    yilian_agent::enrol::Bootstrap { hub, broker, site, token, ca_certificate }
                }
                _ => anyhow::bail!("give --bootstrap FILE, or --hub, --token, --site and --broker"),
            };
            yilian_protocol::topic::check_slug("device", &device)?;
            let rt = tokio::runtime::Runtime::new()?;
            rt.block_on(async {
                let key = yilian_agent::enrol::load_or_make_key(&dir, &device)?;
                let status =
                    yilian_agent::enrol::request(&b, &device, &key, yilian_agent::clock::now_ms()).await?;
                println!(
                    "{device} at {} is {}; key id {} (county IT compares it before approving).",
                    status.site,
                    status.state,
                    key.key_id()
                );
                if status.hub_public_key.is_some() {
                    let config = yilian_agent::enrol::write_credentials(&b, &device, &dir, &status)?;
                    println!(
                        "the agent may run now (yilian-agent run --config {}); the hub holds what it sends until approval. Waiting for approval...",
                        config.display()
                    );
                }
                let config = yilian_agent::enrol::wait_for_approval(
                    &b,
                    &device,
                    &dir,
                    &key,
                    std::time::Duration::from_secs(10),
                    std::time::Duration::from_secs(wait_minutes * 60),
                )
                .await?;
                println!("approved. start the agent with: yilian-agent run --config {}", config.display());
                anyhow::Ok(())
            })
        }
        Command::Update { config, bundle, install } => {
            let cfg = AgentConfig::load(&config).with_context(|| format!("loading {}", config.display()))?;
            let running = yilian_agent::update::running_version();
            let outcome = tokio::runtime::Runtime::new()?
                .block_on(yilian_agent::update::check(&cfg, bundle.as_deref(), running))
                .context("update check")?;
            match outcome {
                yilian_agent::update::Outcome::NoRelease => {
                    println!("no release for {} in the repository", yilian_agent::update::TRIPLE)
                }
                yilian_agent::update::Outcome::NotAssigned => {
                    println!("no release is assigned to this device by the hub's rollouts")
                }
                yilian_agent::update::Outcome::UpToDate(v) => println!("up to date: {v}"),
                yilian_agent::update::Outcome::RolledBackBefore(v) => {
                    println!("{v} was rolled back on this device before; not installing it again")
                }
                yilian_agent::update::Outcome::Staged { version, path, bytes, delta_bytes } => {
                    match delta_bytes {
                        Some(d) => println!(
                            "staged {version}: {} ({bytes} bytes, verified; rebuilt from a {d}-byte delta)",
                            path.display()
                        ),
                        None => {
                            println!("staged {version}: {} ({bytes} bytes, verified; full download)", path.display())
                        }
                    }
                    if install && let Some(u) = &cfg.update {
                        yilian_agent::install::recover(&u.dir)?;
                        let t = yilian_agent::install::activate(
                            &u.dir,
                            &version.to_string(),
                            yilian_agent::clock::now_ms(),
                        )?;
                        println!("{} on trial (previous: {})", t.version, t.previous.as_deref().unwrap_or("none"));
                    }
                    // One change at a time: the bundle waits for the next check.
                    return Ok(());
                }
            }
            use yilian_agent::update::BundleOutcome;
            let outcome = tokio::runtime::Runtime::new()?
                .block_on(yilian_agent::update::check_bundle(&cfg, &config, bundle.as_deref()))
                .context("configuration bundle check")?;
            match outcome {
                BundleOutcome::NoBundle => println!("no configuration bundle in the repository"),
                BundleOutcome::NotAssigned => {
                    println!("no configuration bundle is assigned to this device by the hub's rollouts")
                }
                BundleOutcome::UpToDate(v) => println!("configuration bundle up to date: {v}"),
                BundleOutcome::RefusedBefore(v) => {
                    println!("configuration bundle {v} was refused or rolled back here before; not applying it again")
                }
                BundleOutcome::Refused { version, problems } => {
                    anyhow::bail!(
                        "configuration bundle {version} would not run on this device; kept the current one:\n  {}",
                        problems.join("\n  ")
                    )
                }
                BundleOutcome::Staged { version, path } => {
                    println!("staged configuration bundle {version}: {} (verified, checked)", path.display());
                    if install && let Some(u) = &cfg.update {
                        let dir = yilian_agent::config::bundles_dir(&u.dir);
                        yilian_agent::install::recover(&dir)?;
                        let t = yilian_agent::install::activate_bundle(
                            &dir,
                            &version.to_string(),
                            yilian_agent::clock::now_ms(),
                        )?;
                        println!(
                            "configuration bundle {} on trial (previous: {})",
                            t.version,
                            t.previous.as_deref().unwrap_or("none")
                        );
                    }
                }
            }
            Ok(())
        }
        Command::RotateKey { config } => {
            let cfg = AgentConfig::load(&config).with_context(|| format!("loading {}", config.display()))?;
            let next = yilian_agent::rotation::prepare(&cfg.key)
                .with_context(|| format!("writing {}", yilian_agent::rotation::next_key_path(&cfg.key).display()))?;
            println!(
                "next key id {} written to {}; the running agent sends it to the hub and switches once the hub has taken it",
                next.key_id(),
                yilian_agent::rotation::next_key_path(&cfg.key).display()
            );
            Ok(())
        }
        Command::Inspect { file, json } => {
            let (rec, _) = yilian_agent::inspect::load(&file, &yilian_formats::ReadOptions::default())
                .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&yilian_agent::inspect::to_json(&rec))?);
            } else {
                print!("{}", yilian_agent::inspect::describe(&rec));
            }
            Ok(())
        }
        Command::Analyze { file, json } => {
            let (rec, _) = yilian_agent::inspect::load(&file, &yilian_formats::ReadOptions::default())
                .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            let p = yilian_agent::inspect::preread(&rec).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&p)?);
            } else {
                print!("{}", yilian_agent::inspect::describe_preread(&p));
            }
            Ok(())
        }
        Command::Send { config, file, priority, question, wait } => send(&config, &file, &priority, question, wait),
        Command::RawCapture { port, baud, out, seconds } => {
            let to = out.clone();
            let got = until_ctrl_c(|shutdown| async move {
                yilian_agent::capture::capture(&port, baud, &to, seconds.map(std::time::Duration::from_secs), shutdown)
                    .await
            })??;
            println!("{} bytes in {} reads written to {}", got.bytes, got.reads, out.display());
            Ok(())
        }
        Command::Run { config } => {
            let cfg = AgentConfig::load(&config).with_context(|| format!("loading {}", config.display()))?;
            until_ctrl_c(|shutdown| async move {
                let stats = Arc::new(AgentStats::default());
                // Under the supervisor: a health file as its watchdog ping, and a trial probe.
                if let Ok(path) = std::env::var(yilian_agent::supervise::HEALTH_ENV) {
                    tokio::spawn(yilian_agent::supervise::write_health(path.into(), stats.clone(), shutdown.clone()));
                }
                let probe = std::env::var(yilian_agent::supervise::PROBE_ENV).ok();
                yilian_agent::run::run_with(cfg, stats, shutdown, probe).await
            })??;
            Ok(())
        }
        Command::ClinicianPin { name } => {
            let name = name.trim().to_string();
            anyhow::ensure!(!name.is_empty() && name.chars().count() <= 32, "the name must be 1 to 32 characters");
            let mut pin = String::new();
            std::io::stdin().read_line(&mut pin).context("reading the PIN from standard input")?;
            let pin = pin.trim();
            anyhow::ensure!(
                (4..=12).contains(&pin.len()) && pin.chars().all(|c| c.is_ascii_digit()),
                "the PIN must be 4 to 12 digits"
            );
            let entry = yilian_agent::clinicians::Clinician { name, pin_hash: yilian_agent::clinicians::hash_pin(pin) };
            let toml = toml::to_string(&entry).context("formatting the entry")?;
            println!("[[clinic_page.clinicians]]\n{toml}");
            Ok(())
        }
        Command::VerifyReport { config, file } => {
            let cfg = AgentConfig::load(&config).with_context(|| format!("loading {}", config.display()))?;
            match yilian_agent::report_pdf::verify_file(&cfg, &file) {
                Ok(sig) => {
                    println!(
                        "{}: verified. Report {} for {}/{}, signed by hub key {} (SHA-256 {}).",
                        file.display(),
                        sig.report_id,
                        sig.site,
                        sig.device,
                        sig.key_id,
                        sig.sha256
                    );
                    Ok(())
                }
                Err(e) => {
                    eprintln!("{}: NOT verified: {e}", file.display());
                    std::process::exit(1);
                }
            }
        }
        Command::CheckConfig { config } => {
            let cfg = AgentConfig::load(&config).with_context(|| format!("loading {}", config.display()))?;
            let problems = cfg.problems();
            if problems.is_empty() {
                println!(
                    "{}: OK ({} / {}, broker {}, {} serial port(s))",
                    config.display(),
                    cfg.site,
                    cfg.device,
                    cfg.broker,
                    cfg.serial.len()
                );
                Ok(())
            } else {
                anyhow::bail!("{} cannot run:\n- {}", config.display(), problems.join("\n- "))
            }
        }
        Command::Supervise { config, health_window_secs, watchdog_secs, check_every_secs, idle_secs } => {
            let cfg = AgentConfig::load(&config).with_context(|| format!("loading {}", config.display()))?;
            let update = cfg.update.context("supervise needs an [update] section in the configuration")?;
            let opts = yilian_agent::supervise::Options {
                config: config.clone(),
                health_window: std::time::Duration::from_secs(health_window_secs),
                watchdog: std::time::Duration::from_secs(watchdog_secs.max(2)),
                check_every: std::time::Duration::from_secs(check_every_secs.max(1)),
                fallback: std::env::current_exe().context("own path")?,
                idle: std::time::Duration::from_secs(idle_secs),
            };
            until_ctrl_c(|shutdown| yilian_agent::supervise::run(opts, update.dir, shutdown))??;
            Ok(())
        }
    }
}

/// Runs `f` on a new runtime with a token that Ctrl-C (SIGINT) cancels.
fn until_ctrl_c<T, F: std::future::Future<Output = T>>(
    f: impl FnOnce(tokio_util::sync::CancellationToken) -> F,
) -> anyhow::Result<T> {
    let rt = tokio::runtime::Runtime::new()?;
    Ok(rt.block_on(async {
        let shutdown = tokio_util::sync::CancellationToken::new();
        let s = shutdown.clone();
        tokio::spawn(async move {
            let _ = tokio::signal::ctrl_c().await;
            s.cancel();
        });
        f(shutdown).await
    }))
}

/// Checks the file, then copies it (and a question sidecar) into the inbox's priority folder
/// under a temporary name and renames it, so the agent never sees half a file.
fn send(
    config: &std::path::Path,
    file: &std::path::Path,
    priority: &str,
    question: Option<String>,
    wait: u64,
) -> anyhow::Result<()> {
    let cfg = AgentConfig::load(config).with_context(|| format!("loading {}", config.display()))?;
    let inbox = cfg.inbox.context("the agent's config has no [inbox] section")?;
    let priority =
        yilian_protocol::message::Priority::parse(priority).context("--priority must be stat, urgent or routine")?;
    let (rec, originals) = yilian_agent::inspect::load(file, &yilian_formats::ReadOptions::default())
        .map_err(|e| anyhow::anyhow!("{}: not sent: {e}", file.display()))?;
    let dir = inbox.dir.join(priority.as_str());
    std::fs::create_dir_all(&dir)?;
    let main = &originals[0].name;
    if let Some(q) = question {
        std::fs::write(dir.join(format!("{main}.question.txt")), q)?;
    }
    // The record's other files first, the main file last: the inbox takes a WFDB record by its header.
    for o in originals.iter().skip(1).chain(originals.first()) {
        let tmp = dir.join(format!(".{}.part", o.name));
        std::fs::write(&tmp, &o.bytes)?;
        std::fs::rename(&tmp, dir.join(&o.name))?;
    }
    println!(
        "{} ({} {}, {} leads) queued in {}",
        file.display(),
        rec.format.name(),
        rec.format_version,
        rec.leads.len(),
        dir.display()
    );
    if wait == 0 {
        return Ok(());
    }
    let marker = inbox.dir.join(".yilian/sent").join(hex::encode(yilian_agent::cartfile::content_hash(&originals)));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(wait);
    while std::time::Instant::now() < deadline {
        if let Ok(uid) = std::fs::read_to_string(&marker) {
            println!("the hub has it: study {}", uid.trim());
            return Ok(());
        }
        let reason = inbox.dir.join("rejected").join(format!("{main}.reason.txt"));
        if let Ok(why) = std::fs::read_to_string(&reason) {
            anyhow::bail!("rejected: {}", why.trim());
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
    anyhow::bail!("not confirmed by the hub within {wait} s (it stays queued and will be sent)")
}
