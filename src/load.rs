//! The load generator behind `examples/loadgen.rs` and its smoke test: N simulated carts in this
//! process against a real `yilian-hub` process, everything on the real path.
//!
//! Each simulated cart enrols with its own bootstrap token (signed request, approval, its own key
//! and certificate), then runs the agent's own pieces in-process: the [`Assembler`] turns
//! monitoring frames (12 leads, 500 Hz, from a real PTB record at a per-cart offset) into 1 s
//! chunks and resting studies into a study; [`run::outgoing_of`] makes what the agent sends of
//! them; [`uplink::run`] seals, spools (fsync) and publishes over the cart's own TLS MQTT
//! connection and removes what the hub acknowledges. Only the serial port is left out: frames go
//! to the assembler directly instead of through a pty.
//!
//! Latency is measured from the moment the chunk's last sample was due at the cart (the chunk
//! closes then; its first sample is 1 s older) to:
//! - **committed**: the chunk's spool entry is gone, which happens when the hub's signed ack
//!   arrives; the hub acks only after its store committed (`hub::ingest::Ingest::handle_batch`).
//!   Each cart looks every 20 ms, so this carries up to 20 ms of polling.
//! - **console**: the chunk shows in `GET /api/devices/{device}/streams`, polled every 200 ms for
//!   a few carts, so this carries up to 200 ms of polling (studies: `GET /api/studies`, every
//!   500 ms).
//!
//! The hub runs as its own process so its CPU and memory are its own; the embedded broker runs
//! inside it (its threads are counted apart), Mosquitto is a process of its own.

use crate::county::{self, HubProc, wait_for};
use crate::procs::Mosquitto;
use crate::records::{self, Recording};
use anyhow::Context;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use yilian_agent::assemble::{Assembled, Assembler};
use yilian_agent::journey::Journeys;
use yilian_agent::reports::ReportStore;
use yilian_agent::spool::{self, Spool};
use yilian_agent::uplink::{self, Outgoing};
use yilian_agent::{AgentConfig, AgentStats, enrol, run};
use yilian_protocol::frame::{Frame, StreamSamples, StudyStart};
use yilian_protocol::topic::{Channel, Topic};

/// The p99 past which a load is too much (issue 11).
pub const P99_LIMIT_MS: u64 = 1500;
/// Stream samples per lead in one frame from the simulated cart (200 ms at 500 Hz).
const FRAME_SAMPLES: usize = 100;
/// Samples per lead in one frame of a resting study (what the pty cart sends).
const STUDY_FRAME_SAMPLES: usize = 256;
/// The monitoring stream's id on every cart.
const STREAM_ID: u8 = 1;
/// How often each cart looks for acknowledged chunks in its spool.
const COMMIT_POLL: Duration = Duration::from_millis(20);
/// How often the console poller asks for a watched cart's streams.
const CONSOLE_POLL: Duration = Duration::from_millis(200);
/// Linux's clock tick for `/proc/*/stat` times (USER_HZ, 100 on every mainstream architecture).
const TICKS_PER_S: f64 = 100.0;
/// Carts per simulated township clinic (site).
const CARTS_PER_SITE: usize = 10;

/// Which broker the hub and the carts use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BenchBroker {
    /// rumqttd inside the hub process.
    Embedded,
    /// A Mosquitto of the hub's own, started from `yilian-hub broker-config mosquitto`'s
    /// configuration (TLS, client certificates, ACL).
    Mosquitto,
    /// An external broker at this URL; it must trust the hub's county CA.
    External(String),
}

impl BenchBroker {
    /// `embedded`, `mosquitto`, or a broker URL.
    pub fn parse(s: &str) -> Self {
        match s {
            "embedded" => Self::Embedded,
            "mosquitto" => Self::Mosquitto,
            url => Self::External(url.to_string()),
        }
    }

    /// The name used in tables and JSON.
    pub fn name(&self) -> String {
        match self {
            Self::Embedded => "embedded rumqttd".into(),
            Self::Mosquitto => "mosquitto".into(),
            Self::External(url) => url.clone(),
        }
    }
}

/// One load run.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// Simulated carts.
    pub agents: usize,
    /// How long each cart streams (whole seconds).
    pub duration: Duration,
    /// A resting 12-lead 10 s study from each cart this often (spread over the carts); `None`
    /// sends none.
    pub study_every: Option<Duration>,
    /// The broker.
    pub broker: BenchBroker,
    /// Carts whose stream the console poller watches.
    pub console_watch: usize,
    /// How long to wait after the last chunk for everything to be committed; what is still
    /// uncommitted then counts as lost.
    pub drain: Duration,
    /// A PostgreSQL server (`postgres://user@host:port/db`) on which each run makes a new
    /// database for the hub's store; `None` keeps the store in SQLite in the hub's folder.
    pub store: Option<String>,
}

/// Latency percentiles, ms.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Percentiles {
    /// Values measured.
    pub count: usize,
    /// Median.
    pub p50_ms: u64,
    /// 99th percentile.
    pub p99_ms: u64,
    /// 99.9th percentile (the maximum when fewer than 1000 values).
    pub p999_ms: u64,
    /// Maximum.
    pub max_ms: u64,
}

impl Percentiles {
    /// Percentiles of `values` (ms).
    pub fn of(mut values: Vec<u64>) -> Self {
        values.sort_unstable();
        let at = |q: f64| -> u64 {
            if values.is_empty() {
                return 0;
            }
            let i = ((q * values.len() as f64).ceil() as usize).clamp(1, values.len()) - 1;
            values[i]
        };
        Self {
            count: values.len(),
            p50_ms: at(0.50),
            p99_ms: at(0.99),
            p999_ms: at(0.999),
            max_ms: values.last().copied().unwrap_or(0),
        }
    }
}

/// CPU use during the streaming window, in % of one core (200% is both cores of a 2-core
/// machine), and memory.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Resources {
    /// The hub process, every thread (the embedded broker's included).
    pub hub_cpu_pct: f64,
    /// The hub process without the embedded broker's threads.
    pub hub_only_cpu_pct: f64,
    /// The hub's store thread (its one database connection).
    pub store_cpu_pct: f64,
    /// The PostgreSQL server's processes (0 on SQLite, whose work is the store thread's).
    pub database_cpu_pct: f64,
    /// The broker: the embedded broker's threads inside the hub process, or the Mosquitto process.
    pub broker_cpu_pct: f64,
    /// Whether the broker's figure is part of the hub process's.
    pub broker_in_hub_process: bool,
    /// This process: the simulated carts (assembling, sealing, spooling, TLS) and the pollers.
    pub agents_cpu_pct: f64,
    /// The whole machine, every core, every process (other work on it included).
    pub machine_busy_pct: f64,
    /// Hub resident memory at the end, MB.
    pub hub_rss_mb: f64,
    /// Hub peak resident memory, MB.
    pub hub_peak_rss_mb: f64,
    /// Mosquitto's resident memory at the end, MB (0 for the embedded broker).
    pub broker_rss_mb: f64,
}

/// What one run measured.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RunReport {
    /// Broker name.
    pub broker: String,
    /// `SQLite` or `PostgreSQL`.
    pub store: String,
    /// Simulated carts.
    pub agents: usize,
    /// Streaming time, s.
    pub duration_s: f64,
    /// Stream chunks the carts spooled and sent.
    pub chunks_sent: u64,
    /// Of those, acknowledged by the hub (committed).
    pub chunks_committed: u64,
    /// Chunks committed per second during the streaming window.
    pub chunks_per_s: f64,
    /// Samples (all leads) committed per second during the streaming window.
    pub samples_per_s: f64,
    /// Sent but not committed by the end of the drain.
    pub chunks_lost: u64,
    /// Chunks the hub holds for the carts, from the console API after the run.
    pub hub_chunks: u64,
    /// Carts whose stream at the hub is not exactly what they sent (missing, extra or gaps).
    pub carts_mismatched: u64,
    /// Chunk's last sample due → committed (ack received).
    pub latency_commit: Percentiles,
    /// Chunk's last sample due → visible through the console API.
    pub latency_console: Percentiles,
    /// Chunk's last sample due → sealed and on disk in the cart's spool (agent side).
    pub latency_spool: Percentiles,
    /// Resting studies sent.
    pub studies_sent: u64,
    /// Of those, every part committed.
    pub studies_committed: u64,
    /// Recording's end → every part committed.
    pub study_latency_commit: Percentiles,
    /// Recording's end → listed by `GET /api/studies`.
    pub study_latency_console: Percentiles,
    /// Messages the hub rejected, by reason.
    pub rejects: BTreeMap<String, u64>,
    /// Their total.
    pub rejects_total: u64,
    /// Mean signed envelope per 1 s chunk, bytes.
    pub envelope_bytes_per_chunk: f64,
    /// Mean MQTT PUBLISH packet per chunk (envelope, topic, header), bytes; TLS adds about 22
    /// bytes per record on top.
    pub publish_bytes_per_chunk: f64,
    /// CPU and memory.
    pub resources: Resources,
    /// p99 to commit within [`P99_LIMIT_MS`], nothing lost, nothing rejected, every stream
    /// exact.
    pub ok: bool,
    /// Why not, or which resource was closest to its limit.
    pub limiter: String,
}

/// The machine the figures come from.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    /// CPU model.
    pub cpu_model: String,
    /// Logical cores.
    pub cores: usize,
    /// Memory, MB.
    pub memory_mb: u64,
    /// Kernel release.
    pub kernel: String,
    /// Load average (1 min) when the bench started.
    pub load_avg_1m: f64,
}

/// A ramp over one broker: N raised until a run is not good.
#[derive(Debug, Clone, Serialize)]
pub struct Ramp {
    /// Broker name.
    pub broker: String,
    /// Every run, in the order made.
    pub steps: Vec<RunReport>,
    /// The largest N that was good.
    pub last_good: Option<usize>,
    /// The smallest N that was not.
    pub first_bad: Option<usize>,
    /// What limited the first failing N (or came closest, if none failed).
    pub limiter: String,
}

impl Ramp {
    /// Adds the run at `n` carts: it moves the last good or the first failing N, and the
    /// limiter follows the first failing run (or the latest run while none has failed).
    pub fn record(&mut self, n: usize, run: RunReport) {
        if run.ok {
            self.last_good = Some(n);
            if self.first_bad.is_none() {
                self.limiter = run.limiter.clone();
            }
        } else {
            self.first_bad = Some(n);
            self.limiter = run.limiter.clone();
        }
        self.steps.push(run);
    }
}

/// Everything one bench invocation measured, as written to `target/bench/loadgen.json`.
#[derive(Debug, Clone, Serialize)]
pub struct BenchOutput {
    /// Where the figures come from.
    pub machine: Machine,
    /// The invocation's settings.
    pub args: serde_json::Value,
    /// Single runs.
    pub runs: Vec<RunReport>,
    /// Ramps.
    pub ramps: Vec<Ramp>,
}

impl BenchOutput {
    /// Writes the JSON to `path` (its folder is made).
    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, serde_json::to_string_pretty(self)?).with_context(|| path.display().to_string())
    }
}

/// Reads the machine's description from `/proc`.
pub fn machine() -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let field = |text: &str, key: &str| -> Option<String> {
        text.lines().find(|l| l.starts_with(key)).and_then(|l| l.split_once(':')).map(|(_, v)| v.trim().to_string())
    };
    Machine {
        cpu_model: field(&cpuinfo, "model name").unwrap_or_else(|| "unknown".into()),
        cores: std::thread::available_parallelism().map_or(1, usize::from),
        memory_mb: field(&meminfo, "MemTotal")
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .map_or(0, |kb| kb / 1024),
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_string(),
        load_avg_1m: std::fs::read_to_string("/proc/loadavg")
            .ok()
            .and_then(|l| l.split_whitespace().next()?.parse().ok())
            .unwrap_or(0.0),
    }
}

/// user + system clock ticks from a `/proc/.../stat` line.
fn stat_ticks(stat: &str) -> (String, u64) {
    // The command name is in parentheses and may hold spaces; fields resume after ") ".
    let name = stat.split_once('(').and_then(|(_, r)| r.rsplit_once(')')).map(|(n, _)| n.to_string());
    let rest = stat.rsplit_once(") ").map(|x| x.1).unwrap_or_default();
    let f: Vec<&str> = rest.split_whitespace().collect();
    let num = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    (name.unwrap_or_default(), num(11) + num(12))
}

fn process_ticks(pid: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).map(|s| stat_ticks(&s).1).unwrap_or(0)
}

/// Clock ticks per thread name of process `pid`.
fn thread_ticks(pid: u32) -> HashMap<String, u64> {
    let mut out = HashMap::new();
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return out };
    for t in dir.flatten() {
        if let Ok(stat) = std::fs::read_to_string(t.path().join("stat")) {
            let (name, ticks) = stat_ticks(&stat);
            *out.entry(name).or_default() += ticks;
        }
    }
    out
}

/// Clock ticks of every `postgres` process on the machine (the server and its backends).
fn postgres_ticks() -> u64 {
    let Ok(dir) = std::fs::read_dir("/proc") else { return 0 };
    dir.flatten()
        .filter(|e| e.file_name().to_str().is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit())))
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .map(|stat| stat_ticks(&stat))
        .filter(|(name, _)| name == "postgres")
        .map(|(_, ticks)| ticks)
        .sum()
}

/// (busy, total) jiffies of the whole machine.
fn machine_ticks() -> (u64, u64) {
    let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let v: Vec<u64> =
        text.lines().next().unwrap_or_default().split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    (total - idle, total)
}

/// (VmRSS, VmHWM) of `pid`, MB.
fn rss_mb(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kb = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (kb("VmRSS:") as f64 / 1024.0, kb("VmHWM:") as f64 / 1024.0)
}

/// Threads of the embedded broker inside the hub process: rumqttd's server (named after the
/// listener, `yilian-v4`), router and timer threads, and the thread that started it.
fn is_broker_thread(name: &str) -> bool {
    name == "yilian-v4" || name.starts_with("router-") || name == "timer" || name == "yilian-broker"
}

/// CPU counters at one instant.
struct CpuSample {
    at: std::time::Instant,
    hub_threads: HashMap<String, u64>,
    hub_total: u64,
    mosquitto: u64,
    database: u64,
    me: u64,
    machine: (u64, u64),
}

impl CpuSample {
    fn take(hub: Option<u32>, mosquitto: Option<u32>, database: bool) -> Self {
        Self {
            at: std::time::Instant::now(),
            hub_threads: hub.map(thread_ticks).unwrap_or_default(),
            hub_total: hub.map_or(0, |p| process_ticks(&p.to_string())),
            mosquitto: mosquitto.map_or(0, |p| process_ticks(&p.to_string())),
            database: if database { postgres_ticks() } else { 0 },
            me: process_ticks("self"),
            machine: machine_ticks(),
        }
    }

    /// CPU use between `self` and a later sample, % of one core.
    fn since(&self, later: &Self, embedded: bool) -> Resources {
        let secs = later.at.duration_since(self.at).as_secs_f64().max(1e-3);
        let pct = |ticks: u64| ticks as f64 / TICKS_PER_S / secs * 100.0;
        let delta = |f: &dyn Fn(&str) -> bool| -> u64 {
            later
                .hub_threads
                .iter()
                .filter(|(n, _)| f(n))
                .map(|(n, t)| t.saturating_sub(self.hub_threads.get(n).copied().unwrap_or(0)))
                .sum()
        };
        let hub = later.hub_total.saturating_sub(self.hub_total);
        let in_hub_broker = delta(&is_broker_thread);
        let broker = if embedded { in_hub_broker } else { later.mosquitto.saturating_sub(self.mosquitto) };
        let (busy, total) = (later.machine.0 - self.machine.0, later.machine.1 - self.machine.1);
        let cores = std::thread::available_parallelism().map_or(1, usize::from) as f64;
        Resources {
            hub_cpu_pct: pct(hub),
            hub_only_cpu_pct: pct(hub.saturating_sub(in_hub_broker)),
            store_cpu_pct: pct(delta(&|n| n == "yilian-store")),
            database_cpu_pct: pct(later.database.saturating_sub(self.database)),
            broker_cpu_pct: pct(broker),
            broker_in_hub_process: embedded,
            agents_cpu_pct: pct(later.me.saturating_sub(self.me)),
            machine_busy_pct: if total == 0 { 0.0 } else { busy as f64 / total as f64 * 100.0 * cores },
            ..Resources::default()
        }
    }
}

/// A hub process and its broker, for one run.
struct Bench {
    hub: HubProc,
    mosquitto: Option<Mosquitto>,
}

impl Bench {
    async fn start(dir: &Path, broker: &BenchBroker, store: Option<&str>) -> anyhow::Result<Self> {
        let hub_dir = dir.join("hub");
        let (mosquitto, external) = match broker {
            BenchBroker::Embedded => (None, None),
            BenchBroker::Mosquitto => {
                let m = county::mosquitto_for(&hub_dir).await?;
                let url = m.url();
                (Some(m), Some(url))
            }
            BenchBroker::External(url) => (None, Some(url.clone())),
        };
        let store = match store {
            Some(server) => Some(
                yilian_hub::store::testing::fresh_postgres_database(server)
                    .with_context(|| format!("making the hub's database on {server}"))?,
            ),
            None => None,
        };
        let hub = HubProc::start_on(&hub_dir, external.as_deref(), None, store.as_deref()).await?;
        Ok(Self { hub, mosquitto })
    }
}

/// What enrolling a cart needs of the hub (cheap to hand to each enrolling task).
#[derive(Debug, Clone)]
struct EnrolHub {
    data_dir: PathBuf,
    base_url: String,
    broker_url: String,
    ca_pem: String,
}

/// Enrols one cart the way a clinic does: a bootstrap token for its site (`yilian-hub
/// enrol-token`), a signed request with the key it makes, county IT's approval, then the files
/// `yilian-agent enrol` writes.
async fn enrol_cart(hub: EnrolHub, root: PathBuf, site: String, device: String) -> anyhow::Result<AgentConfig> {
    let token = county::enrol_token_in(&hub.data_dir, &site, 3_600_000, yilian_hub::clock::now_ms())?;
    let b = enrol::Bootstrap {
        hub: hub.base_url.clone(),
        broker: hub.broker_url.clone(),
        site: site.clone(),
        token,
        ca_certificate: Some(hub.ca_pem.clone()),
    };
    let dir = root.join(&device);
    let key = enrol::load_or_make_key(&dir, &device)?;
    let status = enrol::request(&b, &device, &key, yilian_hub::clock::now_ms()).await?;
    anyhow::ensure!(status.state == "pending", "{device}: enrolment answered {}", status.state);
    county::device_action_in(&hub.data_dir, &device, "approve", "load test")?;
    let path =
        enrol::wait_for_approval(&b, &device, &dir, &key, Duration::from_millis(100), Duration::from_secs(30)).await?;
    Ok(AgentConfig::load(&path)?)
}

/// A cart's agent pieces, running.
struct Cart {
    index: usize,
    device: String,
    cfg: AgentConfig,
    tx: mpsc::Sender<Outgoing>,
    stats: Arc<AgentStats>,
    spool: Arc<Mutex<Spool>>,
    journeys: Arc<Journeys>,
    uplink: JoinHandle<()>,
}

impl Cart {
    /// Opens the spool and starts the uplink as `yilian-agent run` does.
    fn start(index: usize, cfg: AgentConfig) -> anyhow::Result<Self> {
        let (key, hub_key) = run::load_keys(&cfg)?;
        let spool_key = spool::load_or_create_key(&cfg.spool_key_path())?;
        let (spool, _) = Spool::open(&cfg.spool_dir, spool_key)?;
        let spool = Arc::new(Mutex::new(spool));
        let journeys = Arc::new(Journeys::open(&cfg.reports_dir, yilian_hub::clock::now_ms()));
        let stats = Arc::new(AgentStats::default());
        let (tx, rx) = mpsc::channel(256);
        let uplink = tokio::spawn(uplink::run(
            run::uplink_config(&cfg)?,
            Arc::new(key),
            hub_key,
            spool.clone(),
            uplink::ClinicRecords { reports: ReportStore::new(&cfg.reports_dir), journeys: journeys.clone() },
            rx,
            stats.clone(),
        ));
        Ok(Self { index, device: cfg.device.clone(), cfg, tx, stats, spool, journeys, uplink })
    }
}

/// When one cart sends what.
#[derive(Debug, Clone)]
struct Plan {
    /// Wall time (Unix ms) and instant of the cart's stream sample 0.
    start_ms: i64,
    start: Instant,
    /// Chunks to send.
    chunks: u64,
    /// Where in the record this cart starts.
    offset: usize,
    /// Seconds into the run at which the cart records a resting study.
    studies_at_s: Vec<u64>,
}

impl Plan {
    /// When chunk `j` closes (its last sample is due), Unix ms.
    fn chunk_closed_ms(&self, j: u64) -> i64 {
        self.start_ms + (j as i64 + 1) * 1000
    }
}

/// What a cart handed the uplink, in order (the uplink tells the seqs back in the same order).
#[derive(Debug, Clone, Copy)]
enum Item {
    Chunk { closed_ms: i64 },
    StudyPart { study: usize },
}

/// What one cart measured.
#[derive(Debug, Default)]
struct CartResult {
    chunks_sent: u64,
    commit_ms: Vec<u64>,
    /// Commit instants (Unix ms), for the rate within the window.
    committed_at: Vec<i64>,
    spool_ms: Vec<u64>,
    studies_sent: u64,
    study_commit_ms: Vec<u64>,
    lost_chunks: u64,
    envelope_bytes: Vec<usize>,
}

/// Studies recorded, by uid prefix: when each recording ended (Unix ms).
type StudyEnds = Arc<Mutex<HashMap<String, i64>>>;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Drives one cart: monitoring frames in real time, studies when planned; follows every body to
/// its seq, then to its commit; stops once all are committed or `drain_until` passes.
async fn drive(cart: Cart, plan: Plan, rec: Arc<Recording>, ends: StudyEnds, drain: Duration) -> CartResult {
    let mut out = CartResult::default();
    let mut asm = Assembler::new(&cart.device, cart.cfg.chunk_ms);
    asm.handle(Frame::Hello { model: "YL-LOAD-12".into(), firmware: env!("CARGO_PKG_VERSION").into() });
    let (seq_tx, mut seq_rx) = mpsc::unbounded_channel::<u64>();
    let mut handed: VecDeque<Item> = VecDeque::new();
    let mut outstanding: HashMap<u64, Item> = HashMap::new();
    // Per study: (parts not yet committed, recording ended at).
    let mut studies: Vec<(usize, i64)> = Vec::new();
    let frames_per_chunk = (u64::from(cart.cfg.chunk_ms) * 500 / 1000).div_ceil(FRAME_SAMPLES as u64).max(1);
    let total_frames = plan.chunks * frames_per_chunk;
    let frame_ms = 1000 * FRAME_SAMPLES as i64 / 500;
    let mut frame = 0u64;
    let mut next_study = 0usize;
    let mut acked_seen = 0u64;
    let mut poll = tokio::time::interval(COMMIT_POLL);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut drain_deadline: Option<Instant> = None;
    let leads: Vec<u8> = rec.leads.iter().map(|(c, _)| *c).collect();
    loop {
        let producing = frame < total_frames;
        if !producing && handed.is_empty() && outstanding.is_empty() {
            break;
        }
        if !producing && drain_deadline.is_none() {
            drain_deadline = Some(Instant::now() + drain);
        }
        if drain_deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        let frame_due = plan.start + Duration::from_millis((frame + 1) * frame_ms as u64);
        tokio::select! {
            _ = tokio::time::sleep_until(frame_due), if producing => {
                let mut items = Vec::new();
                // A resting study recorded now (its 10 s end now): the cart sends it whole.
                let elapsed_s = (frame * frame_ms as u64) / 1000;
                if plan.studies_at_s.get(next_study).is_some_and(|at| *at <= elapsed_s) {
                    next_study += 1;
                    let n = cart.index * 31 + next_study;
                    let ended = plan.start_ms + (frame + 1) as i64 * frame_ms;
                    for f in study_frames(&rec, &leads, plan.offset + (frame as usize) * FRAME_SAMPLES, n, ended) {
                        items.extend(asm.handle(f));
                    }
                }
                let first = frame * FRAME_SAMPLES as u64;
                let samples = (0..FRAME_SAMPLES)
                    .flat_map(|i| {
                        let at = (plan.offset + first as usize + i) % rec.len();
                        rec.leads.iter().map(move |(_, s)| s[at])
                    })
                    .collect();
                items.extend(asm.handle(Frame::StreamSamples(StreamSamples {
                    stream_id: STREAM_ID,
                    sample_rate_hz: 500,
                    resolution_nv: rec.resolution_nv,
                    leads: leads.clone(),
                    first_sample: first,
                    time_ms: plan.start_ms + frame as i64 * frame_ms,
                    samples,
                })));
                frame += 1;
                let closed_ms = plan.start_ms + frame as i64 * frame_ms;
                for item in items {
                    let kind = match &item {
                        Assembled::Chunk(_) => {
                            out.chunks_sent += 1;
                            Some(Item::Chunk { closed_ms })
                        }
                        Assembled::Study(s) => {
                            out.studies_sent += 1;
                            let prefix = s.study_uid.rsplit_once('-').map_or(s.study_uid.as_str(), |x| x.0);
                            lock(&ends).insert(format!("{prefix}-"), closed_ms);
                            studies.push((0, closed_ms));
                            Some(Item::StudyPart { study: studies.len() - 1 })
                        }
                        Assembled::Problem(_) => None,
                    };
                    for mut o in run::outgoing_of("load", item, &cart.stats, &cart.journeys).await {
                        let Some(kind) = kind else { continue };
                        if let Item::StudyPart { study } = kind {
                            studies[study].0 += 1;
                        }
                        o.spooled = Some(seq_tx.clone());
                        handed.push_back(kind);
                        if cart.tx.send(o).await.is_err() {
                            return out;
                        }
                    }
                }
            }
            Some(seq) = seq_rx.recv() => {
                let Some(kind) = handed.pop_front() else { continue };
                if let Item::Chunk { closed_ms } = kind {
                    out.spool_ms.push(elapsed_ms(closed_ms));
                    if out.envelope_bytes.len() < 3 {
                        let spool = cart.spool.clone();
                        let read = tokio::task::spawn_blocking(move || lock(&spool).read(seq).ok().flatten()).await;
                        if let Ok(Some(bytes)) = read {
                            out.envelope_bytes.push(bytes.len());
                        }
                    }
                }
                outstanding.insert(seq, kind);
            }
            _ = poll.tick() => {
                let acked = AgentStats::get(&cart.stats.acked);
                if acked == acked_seen || outstanding.is_empty() {
                    continue;
                }
                // Gone from the spool means acked (a refusal also moves it out, to `refused/`,
                // but the hub counts each refusal among its rejects, and the run then fails).
                // The uplink holds the lock across fsyncs: never wait for it on a runtime thread.
                let Ok(s) = cart.spool.try_lock() else { continue };
                let done: Vec<u64> = outstanding.keys().copied().filter(|seq| !s.contains(*seq)).collect();
                drop(s);
                acked_seen = acked;
                let now = yilian_hub::clock::now_ms();
                for seq in done {
                    match outstanding.remove(&seq) {
                        Some(Item::Chunk { closed_ms }) => {
                            out.commit_ms.push((now - closed_ms).max(0) as u64);
                            out.committed_at.push(now);
                        }
                        Some(Item::StudyPart { study }) => {
                            let s = &mut studies[study];
                            s.0 -= 1;
                            if s.0 == 0 {
                                out.study_commit_ms.push((now - s.1).max(0) as u64);
                            }
                        }
                        None => {}
                    }
                }
            }
        }
    }
    out.lost_chunks =
        outstanding.values().chain(handed.iter()).filter(|k| matches!(k, Item::Chunk { .. })).count() as u64;
    // Closing the channel stops the uplink (it spools what it has and disconnects).
    drop(cart.tx);
    let _ = cart.uplink.await;
    out
}

fn elapsed_ms(since_ms: i64) -> u64 {
    (yilian_hub::clock::now_ms() - since_ms).max(0) as u64
}

/// The frames of a 10 s resting 12-lead study from `rec` at `offset`, for demo visit `n`,
/// recorded up to `ended_ms`.
fn study_frames(rec: &Recording, leads: &[u8], offset: usize, n: usize, ended_ms: i64) -> Vec<Frame> {
    let visit = crate::sim::demo_visit(n);
    let id = n as u32;
    let per_lead = 10 * usize::from(rec.sample_rate_hz);
    let mut frames = vec![Frame::StudyStart(StudyStart {
        study_id: id,
        priority: visit.priority,
        sample_rate_hz: rec.sample_rate_hz,
        resolution_nv: rec.resolution_nv,
        acquired_at_ms: ended_ms - 10_000,
        leads: leads.to_vec(),
        patient_id: visit.patient_id,
        patient_name: visit.name,
        sex: visit.sex,
        birth_date: visit.birth_date,
        question: visit.question,
    })];
    let mut start = 0;
    while start < per_lead {
        let end = (start + STUDY_FRAME_SAMPLES).min(per_lead);
        let samples =
            (start..end).flat_map(|i| rec.leads.iter().map(move |(_, s)| s[(offset + i) % s.len()])).collect();
        frames.push(Frame::StudySamples { study_id: id, first_sample: start as u32, samples });
        start = end;
    }
    frames.push(Frame::StudyEnd { study_id: id, samples_per_lead: per_lead as u32 });
    frames
}

/// Samples covered by the runs of stream [`STREAM_ID`] in a `/streams` answer.
fn covered_runs(streams: &[serde_json::Value]) -> Vec<(u64, u64)> {
    streams
        .iter()
        .filter(|s| s["stream_id"].as_u64() == Some(u64::from(STREAM_ID)))
        .flat_map(|s| s["runs"].as_array().cloned().unwrap_or_default())
        .filter_map(|r| Some((r["first_sample"].as_u64()?, r["end_sample"].as_u64()?)))
        .collect()
}

/// Polls the console API for one cart's stream until its `chunks` are all visible or `until`;
/// returns the latency of each chunk seen.
async fn watch_stream(api: crate::client::Api, device: String, plan: Plan, until: Instant) -> Vec<u64> {
    let per_chunk = 500u64;
    let mut seen: HashSet<u64> = HashSet::new();
    let mut out = Vec::new();
    let mut tick = tokio::time::interval(CONSOLE_POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    while (seen.len() as u64) < plan.chunks && Instant::now() < until {
        tick.tick().await;
        let Ok(streams) = api.streams(&device).await else { continue };
        let now = yilian_hub::clock::now_ms();
        for (first, end) in covered_runs(&streams) {
            for j in first.div_ceil(per_chunk)..(end / per_chunk).min(plan.chunks) {
                if seen.insert(j) {
                    out.push((now - plan.chunk_closed_ms(j)).max(0) as u64);
                }
            }
        }
    }
    out
}

/// Polls `/api/studies` for the studies in `ends` until `until` or `stop`; returns the latency
/// of each study seen.
async fn watch_studies(
    api: crate::client::Api,
    ends: StudyEnds,
    until: Instant,
    stop: tokio_util::sync::CancellationToken,
) -> Vec<u64> {
    let mut seen: HashSet<String> = HashSet::new();
    let mut out = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    while Instant::now() < until {
        tick.tick().await;
        let Ok(rows) = api.studies().await else { continue };
        let now = yilian_hub::clock::now_ms();
        let ends = lock(&ends).clone();
        for row in rows {
            let uid = row["study_uid"].as_str().unwrap_or_default();
            let Some((prefix, ended)) = ends.iter().find(|(p, _)| uid.starts_with(p.as_str())) else { continue };
            if seen.insert(prefix.clone()) {
                out.push((now - ended).max(0) as u64);
            }
        }
        // Once the carts are done, every study they recorded has been committed or given up on.
        if stop.is_cancelled() && seen.len() >= ends.len() {
            break;
        }
    }
    out
}

/// Runs `cfg` in a fresh folder under `root`: starts the hub and broker, enrols the carts,
/// streams, drains, checks what the hub holds, and measures.
pub async fn run_load(root: &Path, cfg: &LoadConfig) -> anyhow::Result<RunReport> {
    std::fs::create_dir_all(root)?;
    let dir = tempfile::tempdir_in(root)?;
    let rec = Arc::new(records::ptb_12_lead_500hz()?);
    let bench = Bench::start(dir.path(), &cfg.broker, cfg.store.as_deref()).await?;
    let hub = &bench.hub;
    let carts_dir: PathBuf = dir.path().join("carts");
    let enrol_hub = EnrolHub {
        data_dir: hub.data_dir.clone(),
        base_url: hub.base_url.clone(),
        broker_url: hub.broker_url.clone(),
        ca_pem: std::fs::read_to_string(yilian_hub::ca::ca_pem_path(&hub.data_dir))?,
    };
    // A few at a time, as county IT approves a batch.
    let mut configs: Vec<Option<AgentConfig>> = vec![None; cfg.agents];
    for batch in (0..cfg.agents).collect::<Vec<_>>().chunks(16) {
        let mut set = tokio::task::JoinSet::new();
        for &i in batch {
            let (site, device) = (format!("lg-site-{}", i / CARTS_PER_SITE), format!("lg-cart-{i}"));
            let (hub, dir) = (enrol_hub.clone(), carts_dir.clone());
            set.spawn(async move { (i, enrol_cart(hub, dir, site, device).await) });
        }
        while let Some(r) = set.join_next().await {
            let (i, c) = r?;
            configs[i] = Some(c.with_context(|| format!("enrolling cart {i}"))?);
        }
    }
    let mut carts = Vec::new();
    for (i, c) in configs.into_iter().enumerate() {
        carts.push(Cart::start(i, c.context("cart not enrolled")?)?);
    }
    let stats: Vec<Arc<AgentStats>> = carts.iter().map(|c| c.stats.clone()).collect();
    wait_for("every cart connected", Duration::from_secs(120), || {
        let all = stats.iter().all(|s| AgentStats::get(&s.connected) == 1);
        async move { all.then_some(()) }
    })
    .await?;

    // Carts start within one second of each other, spread evenly, as real carts' clocks are.
    let chunks = cfg.duration.as_secs().max(1);
    let start = Instant::now() + Duration::from_millis(500);
    let start_ms = yilian_hub::clock::now_ms() + 500;
    let ends: StudyEnds = Arc::new(Mutex::new(HashMap::new()));
    let plans: Vec<Plan> = (0..cfg.agents)
        .map(|i| {
            let stagger = (i as u64 * 1000) / cfg.agents as u64;
            let studies_at_s = cfg.study_every.map_or_else(Vec::new, |every| {
                let every = every.as_secs().max(1);
                // Spread the carts' study times over the period.
                let phase = i as u64 * every / cfg.agents as u64;
                (0..).map(|k| phase + k * every).take_while(|s| *s < chunks).collect()
            });
            Plan {
                start_ms: start_ms + stagger as i64,
                start: start + Duration::from_millis(stagger),
                chunks,
                offset: (i * 7919) % rec.len(),
                studies_at_s,
            }
        })
        .collect();
    let window_end = start + Duration::from_millis(1000 + chunks * 1000);
    let watch_until = window_end + cfg.drain;
    let mut watchers = Vec::new();
    for (c, plan) in carts.iter().zip(&plans).take(cfg.console_watch) {
        watchers.push(tokio::spawn(watch_stream(hub.api.clone(), c.device.clone(), plan.clone(), watch_until)));
    }
    let stop_studies = tokio_util::sync::CancellationToken::new();
    let study_watcher = tokio::spawn(watch_studies(hub.api.clone(), ends.clone(), watch_until, stop_studies.clone()));
    let hub_pid = hub.pid();
    let mosq_pid = bench.mosquitto.as_ref().and_then(Mosquitto::pid);
    tokio::time::sleep_until(start).await;
    let before = CpuSample::take(hub_pid, mosq_pid, cfg.store.is_some());
    let mut drivers = Vec::new();
    let devices: Vec<String> = carts.iter().map(|c| c.device.clone()).collect();
    for (cart, plan) in carts.into_iter().zip(plans.iter().cloned()) {
        drivers.push(tokio::spawn(drive(cart, plan, rec.clone(), ends.clone(), cfg.drain)));
    }
    tokio::time::sleep_until(window_end).await;
    let after = CpuSample::take(hub_pid, mosq_pid, cfg.store.is_some());
    let mut resources = before.since(&after, cfg.broker == BenchBroker::Embedded);
    (resources.hub_rss_mb, resources.hub_peak_rss_mb) = hub_pid.map_or((0.0, 0.0), rss_mb);
    resources.broker_rss_mb = mosq_pid.map_or(0.0, |p| rss_mb(p).0);
    let mut results = Vec::new();
    for d in drivers {
        results.push(d.await?);
    }
    stop_studies.cancel();
    let mut console = Vec::new();
    for w in watchers {
        console.extend(w.await?);
    }
    let study_console = study_watcher.await?;

    // What the hub holds, from its console API: exactly the chunks sent, one continuous run.
    let mut hub_chunks = 0;
    let mut mismatched = 0;
    for (device, r) in devices.iter().zip(&results) {
        let streams = hub.api.streams(device).await?;
        let chunks: u64 = streams
            .iter()
            .filter(|s| s["stream_id"].as_u64() == Some(u64::from(STREAM_ID)))
            .filter_map(|s| s["chunks"].as_u64())
            .sum();
        hub_chunks += chunks;
        let runs = covered_runs(&streams);
        if chunks != r.chunks_sent || runs != [(0, r.chunks_sent * 500)] {
            mismatched += 1;
        }
    }
    let stats = hub.api.stats().await?;
    let rejects: BTreeMap<String, u64> = stats["rejected"]
        .as_object()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.as_u64().unwrap_or(0))).collect())
        .unwrap_or_default();

    // Chunks close from 1 s after the start on; in steady state N commit in each second after.
    let window_s = chunks as f64;
    let (w0, w1) = (start_ms + 1000, start_ms + 1000 + chunks as i64 * 1000);
    let sum = |f: &dyn Fn(&CartResult) -> u64| results.iter().map(f).sum::<u64>();
    let in_window = sum(&|r| r.committed_at.iter().filter(|t| (w0..=w1).contains(*t)).count() as u64);
    let leads = rec.leads.len() as f64;
    let env: Vec<usize> = results.iter().flat_map(|r| r.envelope_bytes.iter().copied()).collect();
    let envelope = if env.is_empty() { 0.0 } else { env.iter().sum::<usize>() as f64 / env.len() as f64 };
    let topic = Topic::new("lg-site-0", "lg-cart-0", Channel::Up)?.to_string();
    // Fixed header (1) + remaining length (2 below 16 kB) + topic (2 + len) + packet id (2).
    let publish = if envelope > 0.0 { envelope + (1 + 2 + 2 + topic.len() + 2) as f64 } else { 0.0 };
    let mut report = RunReport {
        broker: cfg.broker.name(),
        store: if cfg.store.is_some() { "PostgreSQL" } else { "SQLite" }.into(),
        agents: cfg.agents,
        duration_s: chunks as f64,
        chunks_sent: sum(&|r| r.chunks_sent),
        chunks_committed: sum(&|r| r.commit_ms.len() as u64),
        chunks_per_s: in_window as f64 / window_s,
        samples_per_s: in_window as f64 * 500.0 * leads / window_s,
        chunks_lost: sum(&|r| r.lost_chunks),
        hub_chunks,
        carts_mismatched: mismatched,
        latency_commit: Percentiles::of(results.iter().flat_map(|r| r.commit_ms.iter().copied()).collect()),
        latency_console: Percentiles::of(console),
        latency_spool: Percentiles::of(results.iter().flat_map(|r| r.spool_ms.iter().copied()).collect()),
        studies_sent: sum(&|r| r.studies_sent),
        studies_committed: sum(&|r| r.study_commit_ms.len() as u64),
        study_latency_commit: Percentiles::of(results.iter().flat_map(|r| r.study_commit_ms.iter().copied()).collect()),
        study_latency_console: Percentiles::of(study_console),
        rejects_total: rejects.values().sum(),
        rejects,
        envelope_bytes_per_chunk: envelope,
        publish_bytes_per_chunk: publish,
        resources,
        ok: false,
        limiter: String::new(),
    };
    (report.ok, report.limiter) = judge(&report);
    drop(bench);
    Ok(report)
}

/// Whether a run is within the limits, and what limited it (or came closest).
pub fn judge(r: &RunReport) -> (bool, String) {
    let mut failed = Vec::new();
    if r.latency_commit.p99_ms > P99_LIMIT_MS {
        failed.push(format!("p99 {} ms > {P99_LIMIT_MS} ms", r.latency_commit.p99_ms));
    }
    if r.chunks_lost > 0 {
        failed.push(format!("{} chunks lost", r.chunks_lost));
    }
    if r.studies_committed < r.studies_sent {
        failed.push(format!("{} studies lost", r.studies_sent - r.studies_committed));
    }
    if r.rejects_total > 0 {
        failed.push(format!("{} rejected", r.rejects_total));
    }
    if r.carts_mismatched > 0 {
        failed.push(format!("{} carts' streams at the hub differ from what they sent", r.carts_mismatched));
    }
    let x = &r.resources;
    let cores = std::thread::available_parallelism().map_or(1, usize::from) as f64 * 100.0;
    let others = (x.machine_busy_pct
        - x.hub_cpu_pct
        - x.agents_cpu_pct
        - x.database_cpu_pct
        - if x.broker_in_hub_process { 0.0 } else { x.broker_cpu_pct })
    .max(0.0);
    // A single-threaded part near a whole core limits first; otherwise the machine as a whole.
    let why = if x.store_cpu_pct >= 80.0 {
        format!("the hub's store (its one {} connection at {:.0}% of a core)", r.store, x.store_cpu_pct)
    } else if x.broker_cpu_pct >= 80.0 && !x.broker_in_hub_process {
        format!("the broker (Mosquitto, one thread, at {:.0}% of a core)", x.broker_cpu_pct)
    } else if x.machine_busy_pct >= 0.85 * cores {
        let mut parts = [
            ("the hub", x.hub_only_cpu_pct),
            ("the broker", x.broker_cpu_pct),
            ("the simulated carts", x.agents_cpu_pct),
            ("PostgreSQL", x.database_cpu_pct),
            ("other processes", others),
        ];
        parts.sort_by(|a, b| b.1.total_cmp(&a.1));
        let shares: Vec<String> =
            parts.iter().filter(|(_, pct)| *pct > 0.0).map(|(who, pct)| format!("{who} {pct:.0}%")).collect();
        // Where the delay built up: before the chunk was on the cart's spool, or after.
        format!(
            "CPU: the machine was {:.0}% busy of {cores:.0}% ({}); chunk due -> on the cart's spool p99 {} ms",
            x.machine_busy_pct,
            shares.join(", "),
            r.latency_spool.p99_ms
        )
    } else if r.latency_spool.p99_ms > P99_LIMIT_MS / 2 {
        format!("the carts' side: chunk to spool p99 {} ms", r.latency_spool.p99_ms)
    } else {
        format!(
            "no resource saturated (machine {:.0}% of {cores:.0}%, hub {:.0}%, broker {:.0}%, store {:.0}%{})",
            x.machine_busy_pct,
            x.hub_cpu_pct,
            x.broker_cpu_pct,
            x.store_cpu_pct,
            if r.store == "SQLite" { String::new() } else { format!(", {} {:.0}%", r.store, x.database_cpu_pct) }
        )
    };
    if failed.is_empty() { (true, why) } else { (false, format!("{}; limited by {why}", failed.join(", "))) }
}

/// The table row header for [`table_row`].
pub const TABLE_HEADER: &str = "| broker | carts | chunks/s | samples/s | to commit p50 / p99 / p99.9 ms | to console p50 / p99 / p99.9 ms | studies (p99 ms) | rejects | lost | hub CPU % | hub RSS MB | broker CPU % | bytes/chunk |\n| --- | ---: | ---: | ---: | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |";

/// One run as a Markdown table row.
pub fn table_row(r: &RunReport) -> String {
    let x = &r.resources;
    let p = |p: &Percentiles| format!("{} / {} / {}", p.p50_ms, p.p99_ms, p.p999_ms);
    format!(
        "| {} | {} | {:.1} | {:.0} | {} | {} | {}/{} ({}) | {} | {} | {:.0} | {:.0} | {:.0}{} | {:.0} |",
        if r.store == "SQLite" {
            r.broker.clone()
        } else {
            format!("{}, {} ({:.0}% CPU)", r.broker, r.store, x.database_cpu_pct)
        },
        r.agents,
        r.chunks_per_s,
        r.samples_per_s,
        p(&r.latency_commit),
        p(&r.latency_console),
        r.studies_committed,
        r.studies_sent,
        r.study_latency_commit.p99_ms,
        r.rejects_total,
        r.chunks_lost,
        x.hub_cpu_pct,
        x.hub_rss_mb,
        x.broker_cpu_pct,
        if x.broker_in_hub_process { " (in hub)" } else { "" },
        r.publish_bytes_per_chunk,
    )
}
