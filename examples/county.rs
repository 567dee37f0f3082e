//! The demo county: a hub (embedded MQTT broker + SQLite) and simulated township clinics, each
//! with an ECG cart on a real pseudo-terminal replaying PhysioNet recordings, read by the
//! clinic's agent. Clinics send resting 12-lead studies for consultation and a monitoring stream.
//!
//! ```text
//! cargo run --release --example county                                  # until Ctrl-C
//! cargo run --release --example county -- --auto-report --duration 30s  # scripted specialist, then a summary
//! ```

use anyhow::Context;
use clap::Parser;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use yilian::client::Api;
use yilian::county::{Broker, Clinic, HubHandle, wait_for};
use yilian::records::{self, Recording};
use yilian::sim::{self, CartCounts};
use yilian_agent::AgentStats;

#[derive(Parser, Debug)]
#[command(about = "Run a whole Yilian county on this machine")]
struct Args {
    /// Number of township clinics.
    #[arg(long, default_value_t = 3)]
    clinics: usize,
    /// A scripted specialist claims and reports every study.
    #[arg(long)]
    auto_report: bool,
    /// Stop after this long (e.g. 30s, 5m) and print a summary; default: until Ctrl-C.
    #[arg(long, value_parser = parse_duration)]
    duration: Option<Duration>,
    /// Seconds between resting studies at each clinic.
    #[arg(long, default_value_t = 10)]
    study_every: u64,
    /// Data folder (emptied at start).
    #[arg(long, default_value = "county-data")]
    data: PathBuf,
    /// Use an external broker (mqtt://host:port) instead of the embedded one.
    #[arg(long)]
    broker: Option<String>,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num.parse().map_err(|_| format!("{s:?}: expected e.g. 30s, 5m, 1h"))?;
    Ok(Duration::from_secs(match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => return Err(format!("{s:?}: unit must be s, m or h")),
    }))
}

const TOWNSHIPS: [&str; 8] = ["qiaotou", "shanxia", "hekou", "baima", "longquan", "xinzhuang", "tangfang", "shiqiao"];
const STREAM_RECORDS: [&str; 8] = ["100", "101", "103", "105", "106", "119", "200", "208"];

fn percentile(v: &mut [i64], p: f64) -> i64 {
    if v.is_empty() {
        return 0;
    }
    v.sort_unstable();
    v[((v.len() - 1) as f64 * p).round() as usize]
}

/// Streams a monitoring recording in real time (100 ms frames) until `stop`.
async fn stream_loop(clinic: Arc<Clinic>, rec: Recording, stop: Arc<AtomicBool>) -> anyhow::Result<()> {
    let per_frame = (usize::from(rec.sample_rate_hz) / 10).max(1);
    let t0 = yilian_hub::clock::now_ms();
    let mut next = 0u64;
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        let (r, first) = (rec.clone(), next);
        let time = t0 + (first as i64 * 1000) / i64::from(rec.sample_rate_hz);
        clinic.cart(move |c| c.stream(0, &r, first, per_frame, time)).await?;
        next += per_frame as u64;
    }
    Ok(())
}

/// Sends a resting 12-lead study every `every`, staggered by clinic.
async fn study_loop(
    clinic: Arc<Clinic>,
    index: usize,
    rec: Recording,
    every: Duration,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<()> {
    tokio::time::sleep(Duration::from_millis(700 * index as u64 + 300)).await;
    let mut n = 0usize;
    while !stop.load(Ordering::Relaxed) {
        let visit = sim::demo_visit(index * 101 + n);
        let offset = (n * 7_000 + index * 3_000) % rec.len();
        let r = rec.clone();
        let acquired = yilian_hub::clock::now_ms();
        clinic.cart(move |c| c.study(&r, offset, 10_000, &visit, acquired)).await?;
        n += 1;
        let until = tokio::time::Instant::now() + every;
        while tokio::time::Instant::now() < until && !stop.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(())
}

/// A scripted specialist: claims and reports whatever is queued, most urgent first.
async fn auto_report(api: Api, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::Relaxed) {
        if let Ok(queue) = api.queue().await {
            for s in queue.iter().filter(|s| s["state"] == "queued") {
                let Some(uid) = s["study_uid"].as_str() else {
                    continue;
                };
                if api.claim(uid).await.is_err() {
                    continue;
                }
                let findings = format!(
                    "{}，{} Hz，{} 导联。窦性心律。（演示：脚本化专家自动出具 / scripted demo report）",
                    s["patient_name"].as_str().unwrap_or(""),
                    s["sample_rate_hz"],
                    s["leads"].as_array().map_or(0, Vec::len)
                );
                let _ = api.report(uid, &findings, "演示报告：未见急性异常 / Demo: no acute abnormality").await;
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn status_line(stats: &serde_json::Value, clinics: &[Arc<Clinic>]) -> String {
    let s = &stats["studies"];
    let spool: u64 = clinics.iter().map(|c| c.spool_entries()).sum();
    format!(
        "studies queued {} | claimed {} | reported {} | delivered {} | samples received {} | messages rejected {} | agent spools {}",
        s["queued"], s["claimed"], s["reported"], s["delivered"], s["samples_received"], stats["rejected_total"], spool
    )
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "warn,rumqttd=off".into()))
        .with_writer(std::io::stderr)
        .init();
    if args.clinics == 0 || args.clinics > TOWNSHIPS.len() {
        anyhow::bail!("--clinics must be 1..={}", TOWNSHIPS.len());
    }
    if args.data.exists() {
        std::fs::remove_dir_all(&args.data).with_context(|| format!("clearing {}", args.data.display()))?;
    }
    let ptb = records::ptb_12_lead().context("loading the 12-lead recording from ../shared/data")?;
    let broker = args.broker.clone().map_or(Broker::Embedded, Broker::External);
    let hub = HubHandle::start(&args.data.join("hub"), broker).await?;
    let mut clinics = Vec::new();
    for (i, town) in TOWNSHIPS.iter().take(args.clinics).enumerate() {
        let site = format!("{town}-wsy");
        let clinic = Clinic::start(&args.data.join("clinics"), &site, &format!("{town}-cart1"), &hub).await?;
        clinic.cart(|c| c.hello()).await?;
        clinics.push((Arc::new(clinic), records::mitdb(STREAM_RECORDS[i])?));
    }
    println!("Yilian demo county (医联演示县)");
    println!(
        "  console        {}/   (sign in as {} / {})",
        hub.base_url,
        yilian::county::DEMO_LOGIN.0,
        yilian::county::DEMO_LOGIN.1
    );
    println!(
        "  audit log      {}/audit   (sign in as {} / {})",
        hub.base_url,
        yilian::county::DEMO_AUDITOR.0,
        yilian::county::DEMO_AUDITOR.1
    );
    println!("  hub HTTPS API  {}   (specialist token: {})", hub.base_url, hub.token);
    println!(
        "  try            curl --cacert {} -H 'Authorization: Bearer {}' {}/api/queue",
        hub.ca_pem.display(),
        hub.token,
        hub.base_url
    );
    println!("  MQTT broker    {} (TLS, client certificates from the county CA)", hub.broker_url);
    println!("  county CA      {}", hub.ca_pem.display());
    println!("  {}", yilian_hub::ca::trust_hint(&hub.ca_pem));
    println!("  data folder    {}", args.data.display());
    for (c, rec) in &clinics {
        println!(
            "  clinic {:<18} cart {:<18} on {}  (stream: MIT-BIH {} at {} Hz; studies: PTB 12-lead at {} Hz)",
            c.site,
            c.device,
            c.pty.path().display(),
            rec.name,
            rec.sample_rate_hz,
            ptb.sample_rate_hz
        );
        println!(
            "         inbox  {}   (drop SCP-ECG, DICOM ECG, HL7 aECG, WFDB or Contec files; stat/ urgent/ routine/)",
            c.inbox().display()
        );
        if let Some(page) = c.page_url() {
            println!("         page   {page}   (journeys, reports to print, critical results)");
        }
    }
    let pins: Vec<String> = yilian::county::DEMO_CLINICIANS.iter().map(|(n, p)| format!("{n} PIN {p}")).collect();
    println!("  clinicians who may acknowledge critical results at every clinic: {}", pins.join(", "));
    println!(
        "{}",
        if args.auto_report {
            "  a scripted specialist reports every study"
        } else {
            "  waiting for specialists (use the API, or --auto-report)"
        }
    );

    let stop = Arc::new(AtomicBool::new(false));
    let mut sims = Vec::new();
    for (i, (c, rec)) in clinics.iter().enumerate() {
        sims.push(tokio::spawn(stream_loop(c.clone(), rec.clone(), stop.clone())));
        sims.push(tokio::spawn(study_loop(
            c.clone(),
            i,
            ptb.clone(),
            Duration::from_secs(args.study_every.max(1)),
            stop.clone(),
        )));
    }
    let reporter_stop = Arc::new(AtomicBool::new(false));
    let reporter = args.auto_report.then(|| tokio::spawn(auto_report(hub.api.clone(), reporter_stop.clone())));
    let started = Instant::now();
    let only_clinics: Vec<Arc<Clinic>> = clinics.iter().map(|(c, _)| c.clone()).collect();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = tick.tick() => {
                if let Ok(s) = hub.api.stats().await {
                    print!("\r{}   ", status_line(&s, &only_clinics));
                    let _ = std::io::stdout().flush();
                }
                if args.duration.is_some_and(|d| started.elapsed() >= d) {
                    break;
                }
            }
        }
    }
    println!();
    stop.store(true, Ordering::Relaxed);
    for s in sims {
        s.await.context("simulator task")??;
    }
    let elapsed = started.elapsed();
    drop(only_clinics);
    // Stop the agents: each flushes its last partial stream chunk into its spool.
    let mut clinics: Vec<Clinic> = clinics
        .into_iter()
        .map(|(c, _)| Arc::try_unwrap(c).map_err(|_| anyhow::anyhow!("clinic still shared")))
        .collect::<Result<_, _>>()?;
    let sent: CartCounts = clinics.iter().map(|c| c.cart.lock().map(|g| g.counts()).unwrap_or_default()).fold(
        CartCounts::default(),
        |a, b| CartCounts {
            studies: a.studies + b.studies,
            study_samples: a.study_samples + b.study_samples,
            stream_samples: a.stream_samples + b.stream_samples,
            garbage_bytes: a.garbage_bytes + b.garbage_bytes,
        },
    );
    for c in &mut clinics {
        c.stop_agent().await?;
        c.start_agent().await?; // resend whatever the stop left in the spool
    }
    println!("draining: waiting for every spooled message to be acked by the hub ...");
    let samples_sent = sent.study_samples + sent.stream_samples;
    let api = hub.api.clone();
    let drained = wait_for("every sample at the hub", Duration::from_secs(60), || {
        let api = api.clone();
        let spools: u64 = clinics.iter().map(|c| AgentStats::get(&c.stats.spool_entries)).sum();
        async move {
            let s = api.stats().await.ok()?;
            (spools == 0 && s["studies"]["samples_received"].as_u64()? >= samples_sent).then_some(())
        }
    })
    .await;
    if args.auto_report {
        let _ = wait_for("every study reported and delivered", Duration::from_secs(60), || {
            let api = api.clone();
            async move {
                let s = api.stats().await.ok()?;
                (s["studies"]["delivered"].as_u64()? >= sent.studies).then_some(())
            }
        })
        .await;
    }
    reporter_stop.store(true, Ordering::Relaxed);
    if let Some(r) = reporter {
        let _ = r.await;
    }
    let stats = hub.api.stats().await?;
    let studies = hub.api.studies().await?;
    let mut to_queue: Vec<i64> =
        studies.iter().filter_map(|s| Some(s["received_at_ms"].as_i64()? - s["acquired_at_ms"].as_i64()?)).collect();
    let mut to_clinic: Vec<i64> =
        studies.iter().filter_map(|s| Some(s["delivered_at_ms"].as_i64()? - s["reported_at_ms"].as_i64()?)).collect();
    let stored = stats["studies"]["samples_received"].as_u64().unwrap_or(0);
    let s = &stats["studies"];
    println!("Yilian demo county — summary after {:.1} s", elapsed.as_secs_f64());
    println!("  clinics:             {}", clinics.len());
    println!(
        "  studies sent:        {} | stored: {} | reported: {} | delivered: {}",
        sent.studies,
        s["studies"],
        s["reported"].as_u64().unwrap_or(0) + s["delivered"].as_u64().unwrap_or(0),
        s["delivered"]
    );
    println!("  samples sent:        {samples_sent} (studies {}, streams {})", sent.study_samples, sent.stream_samples);
    println!("  samples stored:      {stored}");
    println!("  samples lost: {}", samples_sent.saturating_sub(stored));
    println!("  samples duplicated:  {}", stored.saturating_sub(samples_sent));
    println!("  messages stored:     {} (duplicates acked again: {})", s["messages"], s["duplicates"]);
    println!("  messages rejected:   {}", stats["rejected_total"]);
    println!(
        "  study latency, cart to queue:        p50 {} ms, max {} ms",
        percentile(&mut to_queue, 0.5),
        to_queue.iter().max().copied().unwrap_or(0)
    );
    if !to_clinic.is_empty() {
        println!(
            "  report latency, signed to delivered: p50 {} ms, max {} ms",
            percentile(&mut to_clinic, 0.5),
            to_clinic.iter().max().copied().unwrap_or(0)
        );
    }
    for c in &mut clinics {
        c.stop_agent().await?;
    }
    hub.stop().await?;
    drained?;
    Ok(())
}
