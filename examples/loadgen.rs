//! The end-to-end load benchmark (issue 11): N simulated carts in this process, each enrolled with
//! its own key and certificate and on its own TLS MQTT connection, stream 12-lead 500 Hz
//! monitoring in 1 s chunks from a real PTB record (and a resting 10 s study every few minutes)
//! through the agent's own assembler, spool and uplink to a real `yilian-hub` process, against the
//! embedded rumqttd and against Mosquitto in the same run. See `yilian::load` for what is measured
//! and how.
//!
//! ```text
//! cargo build --release --workspace --bins
//! cargo run --release --example loadgen -- --agents 50 --duration 60s
//! cargo run --release --example loadgen -- --ramp --brokers embedded,mosquitto
//! cargo run --release --example loadgen -- --agents 160 --brokers mosquitto --store postgres://postgres@127.0.0.1/postgres
//! ```
//!
//! `--ramp` doubles N from `--agents` (the brokers taking turns at each N) until p99 (chunk due → committed) passes 1.5 s or anything is
//! lost or rejected, then halves the gap `--refine` times, and reports the last good N and what
//! limited it. Prints Markdown tables; writes `target/bench/loadgen.json`.

use clap::Parser;
use serde_json::json;
use std::io::Write;
use std::time::Duration;
use yilian::load::{self, BenchBroker, BenchOutput, LoadConfig, Ramp, RunReport};

#[derive(Parser)]
struct Args {
    /// Simulated carts (with --ramp: the first step).
    #[arg(long, default_value_t = 10)]
    agents: usize,
    /// How long the carts stream in each run (`60s`, `2m`).
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    duration: Duration,
    /// One broker URL to use instead of --brokers (it must trust the hub's county CA).
    #[arg(long)]
    broker: Option<String>,
    /// Brokers to run against, in order: `embedded`, `mosquitto`, or URLs.
    #[arg(long, default_value = "embedded,mosquitto", value_delimiter = ',')]
    brokers: Vec<String>,
    /// A resting 12-lead 10 s study from each cart this often (`0s`: none).
    #[arg(long, default_value = "180s", value_parser = parse_duration)]
    study_every: Duration,
    /// Raise N until the limits are passed.
    #[arg(long)]
    ramp: bool,
    /// Multiply N by this at each ramp step (ignored with --step).
    #[arg(long, default_value_t = 2.0)]
    factor: f64,
    /// Add this many carts at each ramp step instead of multiplying.
    #[arg(long)]
    step: Option<usize>,
    /// Stop the ramp here even if it is still good.
    #[arg(long, default_value_t = 2000)]
    max_agents: usize,
    /// After the first failing step, halve the gap to the last good N this many times.
    #[arg(long, default_value_t = 2)]
    refine: usize,
    /// Carts whose stream is watched through the console API.
    #[arg(long, default_value_t = 4)]
    console_watch: usize,
    /// How long to wait after the last chunk for everything to be committed (`60s`).
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    drain: Duration,
    /// Keep the hub's store on this PostgreSQL server (`postgres://user@host:port/db`; each run
    /// makes a new database there) instead of SQLite in the hub's folder.
    #[arg(long)]
    store: Option<String>,
    /// Where the JSON goes (default `target/bench/loadgen.json`).
    #[arg(long)]
    out: Option<std::path::PathBuf>,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let (num, unit) = s.find(|c: char| !c.is_ascii_digit()).map_or((s, "s"), |i| s.split_at(i));
    let n: u64 = num.parse().map_err(|_| format!("{s:?}: expected e.g. 60s, 2m, 500ms"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" => Ok(Duration::from_secs(n)),
        "m" | "min" => Ok(Duration::from_secs(n * 60)),
        _ => Err(format!("{s:?}: unit must be ms, s or m")),
    }
}

fn print_row(r: &RunReport) {
    println!("{}", load::table_row(r));
    println!("  → {} {}", if r.ok { "good:" } else { "NOT GOOD:" }, r.limiter);
    let _ = std::io::stdout().flush();
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let brokers: Vec<BenchBroker> = match &args.broker {
        Some(url) => vec![BenchBroker::parse(url)],
        None => args.brokers.iter().map(|b| BenchBroker::parse(b)).collect(),
    };
    let path = args
        .out
        .clone()
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench/loadgen.json"));
    let root = tempfile::tempdir()?;
    let machine = load::machine();
    println!(
        "machine: {} × {}, {} MB, Linux {}, load average {:.2} at start",
        machine.cores, machine.cpu_model, machine.memory_mb, machine.kernel, machine.load_avg_1m
    );
    println!(
        "each cart: 12 leads × 500 Hz in 1 s chunks, a resting 10 s study every {} s; {} s per run",
        args.study_every.as_secs(),
        args.duration.as_secs()
    );
    let mut out = BenchOutput {
        machine,
        runs: vec![],
        ramps: vec![],
        args: json!({
            "agents": args.agents, "duration_s": args.duration.as_secs(), "study_every_s": args.study_every.as_secs(),
            "ramp": args.ramp, "console_watch": args.console_watch, "drain_s": args.drain.as_secs(),
            "store": if args.store.is_some() { "PostgreSQL" } else { "SQLite" },
        }),
    };
    println!("{}", load::TABLE_HEADER);
    let cfg = |broker: &BenchBroker, agents: usize| LoadConfig {
        agents,
        duration: args.duration,
        study_every: (!args.study_every.is_zero()).then_some(args.study_every),
        broker: broker.clone(),
        console_watch: args.console_watch,
        drain: args.drain,
        store: args.store.clone(),
    };
    if !args.ramp {
        for broker in &brokers {
            let r = load::run_load(root.path(), &cfg(broker, args.agents)).await?;
            print_row(&r);
            out.runs.push(r);
            out.save(&path)?;
        }
    } else {
        // The brokers take turns at each N, so whatever else the machine does at the time
        // weighs on both alike.
        for b in &brokers {
            out.ramps.push(Ramp {
                broker: b.name(),
                steps: vec![],
                last_good: None,
                first_bad: None,
                limiter: String::new(),
            });
        }
        let mut n = args.agents.max(1);
        loop {
            for (at, broker) in brokers.iter().enumerate() {
                if out.ramps[at].first_bad.is_some() {
                    continue;
                }
                let r = load::run_load(root.path(), &cfg(broker, n)).await?;
                print_row(&r);
                out.ramps[at].record(n, r);
                out.save(&path)?;
            }
            let next = match args.step {
                Some(step) => n + step.max(1),
                None => ((n as f64 * args.factor).round() as usize).max(n + 1),
            };
            if out.ramps.iter().all(|r| r.first_bad.is_some()) || next > args.max_agents {
                break;
            }
            n = next;
        }
        // Narrow the gap between each broker's last good and first failing N.
        for _ in 0..args.refine {
            for (at, broker) in brokers.iter().enumerate() {
                let (Some(good), Some(bad)) = (out.ramps[at].last_good, out.ramps[at].first_bad) else { continue };
                let mid = (good + bad) / 2;
                if mid <= good || mid >= bad {
                    continue;
                }
                let r = load::run_load(root.path(), &cfg(broker, mid)).await?;
                print_row(&r);
                out.ramps[at].record(mid, r);
                out.save(&path)?;
            }
        }
        for ramp in &out.ramps {
            println!(
                "ramp on {}: last good N = {}, first failing N = {}; {}",
                ramp.broker,
                ramp.last_good.map_or("none".into(), |n| n.to_string()),
                ramp.first_bad.map_or_else(|| format!("none up to {}", args.max_agents), |n| n.to_string()),
                ramp.limiter
            );
        }
    }
    if !out.ramps.is_empty() {
        println!("\n| broker | last good N | first failing N | what limited it |\n| --- | ---: | ---: | --- |");
        for r in &out.ramps {
            println!(
                "| {} | {} | {} | {} |",
                r.broker,
                r.last_good.map_or("none".into(), |n| n.to_string()),
                r.first_bad.map_or("none".into(), |n| n.to_string()),
                r.limiter
            );
        }
    }
    println!("\nJSON: {}", path.display());
    Ok(())
}
