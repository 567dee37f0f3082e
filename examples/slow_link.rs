//! A STAT ECG over a slow township link: the time from the end of a STAT 12-lead recording on
//! the cart to its arrival in the specialist's worklist (`/api/queue`), on a link shaped by the
//! fault proxy (default 1 Mbit/s each way, 300 ms round trip), with the cart monitoring 12 leads
//! at 500 Hz throughout: first with nothing else queued, then behind a spool backlog of routine
//! studies and of monitoring data from an outage, far more than the link carries meanwhile.
//!
//! Afterwards the link opens, everything drains, and the run checks that every study arrived
//! exactly once. Figures go to stdout and, as JSON, to `target/bench/slow_link.json`.
//!
//! ```text
//! cargo run --release --example slow_link
//! cargo run --release --example slow_link -- --rate-kbit 1000 --rtt-ms 300 --routine 200 --outage-s 300 --stat 5
//! ```

use anyhow::Context;
use clap::Parser;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use yilian::client::Api;
use yilian::county::{Broker, Clinic, HubHandle, wait_for};
use yilian::fault::{FaultProxy, LinkMode, Shaper};
use yilian::records::{self, Recording};
use yilian::sim;
use yilian_agent::AgentStats;
use yilian_protocol::message::Priority;

#[derive(Parser)]
struct Args {
    /// Link rate each way, kbit/s.
    #[arg(long, default_value_t = 1000)]
    rate_kbit: u64,
    /// Round-trip time of the link, ms (half of it each way).
    #[arg(long, default_value_t = 300)]
    rtt_ms: u64,
    /// Routine 12-lead studies in the backlog.
    #[arg(long, default_value_t = 200)]
    routine: usize,
    /// Seconds of 12-lead monitoring held back by an outage, in the backlog.
    #[arg(long, default_value_t = 300)]
    outage_s: u64,
    /// STAT studies measured per case.
    #[arg(long, default_value_t = 5)]
    stat: usize,
}

const DEVICE: &str = "cart-slow";

fn visit(n: usize, priority: Priority) -> sim::Visit {
    sim::Visit { priority, ..sim::demo_visit(n) }
}

/// What one STAT study met.
struct StatRun {
    /// From the end of the recording to the worklist, s.
    latency_s: f64,
    /// Bytes the agent had published and the hub not yet acked when the recording ended.
    ahead_bytes: u64,
    /// Routine studies in the worklist when the STAT study arrived.
    routine_in_worklist: usize,
    /// Envelopes still in the agent's spool then.
    spool_left: u64,
}

/// Records a 10 s STAT study and waits until it is in the worklist.
async fn stat_run(clinic: &Clinic, api: &Api, rec: &Recording, n: usize) -> anyhow::Result<StatRun> {
    let rec = rec.clone();
    let acquired = yilian_hub::clock::now_ms();
    let (id, _) = clinic.cart(move |c| c.study(&rec, n * 700, 5000, &visit(n, Priority::Stat), acquired)).await?;
    let ended = Instant::now();
    let ahead_bytes = AgentStats::get(&clinic.stats.inflight_bytes);
    let prefix = format!("{DEVICE}-{acquired}-{id}-");
    let queue = wait_for("the STAT study in the worklist", Duration::from_secs(600), || {
        let (api, prefix) = (api.clone(), prefix.clone());
        async move {
            let q = api.queue().await.ok()?;
            q.iter().any(|s| s["study_uid"].as_str().is_some_and(|u| u.starts_with(&prefix))).then_some(q)
        }
    })
    .await?;
    Ok(StatRun {
        latency_s: ended.elapsed().as_secs_f64(),
        ahead_bytes,
        routine_in_worklist: queue.iter().filter(|s| s["priority"] == "routine").count(),
        spool_left: AgentStats::get(&clinic.stats.spool_entries),
    })
}

fn summary(xs: &[f64]) -> Value {
    let mut s = xs.to_vec();
    s.sort_by(f64::total_cmp);
    json!({ "runs_s": xs, "median_s": s.get(s.len() / 2), "max_s": s.last() })
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let bytes_per_s = args.rate_kbit * 1000 / 8;
    let one_way = Duration::from_millis(args.rtt_ms / 2);
    let tmp = tempfile::tempdir()?;
    let hub = HubHandle::start(&tmp.path().join("hub"), Broker::Embedded).await?;
    let (host, port) = yilian_protocol::topic::broker_addr(&hub.broker_url)?;
    let broker = tokio::net::lookup_host((host.as_str(), port)).await?.next().context("broker address")?;
    let proxy = FaultProxy::start(broker).await?;
    let mut clinic = Clinic::prepare(&tmp.path().join("clinics"), "xz-slow", DEVICE, &hub.hub_key, &proxy.url())?;
    // The agent's own default, not the tests' shorter one.
    clinic.config.ack_timeout_secs = 20;
    clinic.write_config()?;
    hub.enroll("xz-slow", DEVICE, &clinic.public_key)?;
    clinic.start_agent().await?;
    proxy.set(LinkMode::Shape { bytes_per_s, one_way_delay: one_way });
    let rec = records::ptb_12_lead_500hz()?;

    // The cart monitors 12 leads at 500 Hz in real time, 100 ms frames, for the whole run.
    let live = Arc::new(AtomicBool::new(true));
    let monitor = {
        let (cart, rec, live) = (clinic.cart.clone(), rec.clone(), live.clone());
        tokio::task::spawn_blocking(move || -> anyhow::Result<u64> {
            let start = Instant::now();
            let mut i = 0u64;
            while live.load(Ordering::Relaxed) {
                if let Some(wait) = Duration::from_millis(i * 100).checked_sub(start.elapsed()) {
                    std::thread::sleep(wait);
                }
                let first = i * 50;
                cart.lock().map_err(|_| anyhow::anyhow!("cart lock poisoned"))?.stream(
                    0,
                    &rec,
                    first,
                    50,
                    first as i64 * 2,
                )?;
                i += 1;
            }
            Ok(i * 50)
        })
    };
    tokio::time::sleep(Duration::from_secs(5)).await;

    println!(
        "link: {} kbit/s each way, {} ms round trip; cart monitoring 12 leads at 500 Hz throughout",
        args.rate_kbit, args.rtt_ms
    );
    let mut idle = Vec::new();
    for n in 0..args.stat {
        let r = stat_run(&clinic, &hub.api, &rec, n).await?;
        println!(
            "  STAT, no backlog: {:.2} s from the end of the recording to the worklist ({} kB in flight ahead)",
            r.latency_s,
            r.ahead_bytes / 1000
        );
        idle.push(r.latency_s);
        tokio::time::sleep(Duration::from_secs(2)).await;
    }

    // The backlog: routine studies queued at the clinic, and an outage's worth of monitoring
    // (a second stream, written faster than real time: the link was down while it was recorded).
    let entries_before = AgentStats::get(&clinic.stats.spool_entries);
    let bytes_before = AgentStats::get(&clinic.stats.spool_bytes);
    let (routine, outage_s, r) = (args.routine, args.outage_s, rec.clone());
    clinic
        .cart(move |c| -> anyhow::Result<()> {
            for k in 0..routine {
                c.study(
                    &r,
                    (k * 1000) % r.len(),
                    5000,
                    &visit(1000 + k, Priority::Routine),
                    yilian_hub::clock::now_ms(),
                )?;
            }
            for f in 0..outage_s * 10 {
                c.stream(1, &r, f * 50, 50, 1_764_000_000_000 + f as i64 * 100)?;
            }
            Ok(())
        })
        .await?;
    let expected = entries_before + routine as u64 + outage_s;
    let s = clinic.stats.clone();
    wait_for("the backlog in the spool", Duration::from_secs(120), || {
        let s = s.clone();
        async move { (AgentStats::get(&s.spool_entries) + AgentStats::get(&s.acked) >= expected).then_some(()) }
    })
    .await?;
    // Let the agent hand the link what it will before the STAT study comes.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let backlog_entries = AgentStats::get(&clinic.stats.spool_entries);
    let backlog_bytes = AgentStats::get(&clinic.stats.spool_bytes).saturating_sub(bytes_before);
    println!(
        "backlog: {routine} routine studies and {outage_s} s of monitoring: {backlog_entries} envelopes, {:.2} MB \
         ({:.0} s of the link)",
        backlog_bytes as f64 / 1e6,
        backlog_bytes as f64 / bytes_per_s as f64
    );
    let publishes_before = AgentStats::get(&clinic.stats.publishes);
    let (shaped_from, up_from) = (Instant::now(), proxy.bytes_up());
    let mut busy = Vec::new();
    let mut overtaken = Vec::new();
    for n in 0..args.stat {
        let r = stat_run(&clinic, &hub.api, &rec, 100 + n).await?;
        println!(
            "  STAT, behind the backlog: {:.2} s ({} kB in flight ahead); {} of {routine} routine studies in the \
             worklist, {} envelopes still in the spool",
            r.latency_s,
            r.ahead_bytes / 1000,
            r.routine_in_worklist,
            r.spool_left
        );
        busy.push(r.latency_s);
        overtaken.push(json!({
            "latency_s": r.latency_s,
            "in_flight_ahead_bytes": r.ahead_bytes,
            "routine_in_worklist": r.routine_in_worklist,
            "spool_entries_left": r.spool_left,
        }));
        tokio::time::sleep(Duration::from_secs(3)).await;
    }

    // The link's use while the backlog drained and the STAT studies overtook it: a small window
    // must not leave the link idle.
    let utilisation = (proxy.bytes_up() - up_from) as f64 / shaped_from.elapsed().as_secs_f64() / bytes_per_s as f64;
    live.store(false, Ordering::Relaxed);
    let monitored = monitor.await??;
    let publishes_shaped = AgentStats::get(&clinic.stats.publishes) - publishes_before;
    proxy.set(LinkMode::Pass);
    let drain = Instant::now();
    clinic.wait_drained(Duration::from_secs(900)).await?;
    let drained_s = drain.elapsed().as_secs_f64();
    let studies = hub.api.queue().await?;
    let total = routine + 2 * args.stat;
    let mut uids: Vec<&str> = studies.iter().filter_map(|s| s["study_uid"].as_str()).collect();
    uids.sort_unstable();
    uids.dedup();
    anyhow::ensure!(
        studies.len() == total && uids.len() == total,
        "{} studies in the worklist ({} distinct), expected {total}",
        studies.len(),
        uids.len()
    );
    let stats = hub.api.stats().await?;
    let duplicates = stats["studies"]["duplicates"].as_i64().unwrap_or(0);
    println!(
        "drained in {drained_s:.1} s once the link opened; {total} studies in the worklist, each once; \
         {monitored} samples a lead monitored live; {duplicates} envelopes sent twice"
    );
    println!(
        "while the backlog drained on the slow link: {:.0}% of its rate used (agent to hub, with TLS and MQTT); \
         {publishes_shaped} publishes by the agent",
        utilisation * 100.0
    );

    let out = json!({
        "link": {
            "bytes_per_s": bytes_per_s,
            "kbit_per_s": args.rate_kbit,
            "rtt_ms": args.rtt_ms,
            "bottleneck_queue_bytes": Shaper::new(bytes_per_s, one_way).queue_limit(),
        },
        "monitoring": "12 leads, 500 Hz, 100 ms frames, 1 s chunks, real time",
        "stat_study": "12 leads, 10 s, 500 Hz",
        "no_backlog": summary(&idle),
        "backlog": {
            "routine_studies": routine,
            "monitoring_s": outage_s,
            "envelopes": backlog_entries,
            "bytes": backlog_bytes,
            "link_seconds": backlog_bytes as f64 / bytes_per_s as f64,
        },
        "with_backlog": summary(&busy),
        "with_backlog_each": overtaken,
        "link_use_while_backlog_drained": utilisation,
        "publishes_while_shaped": publishes_shaped,
        "hub_duplicates": duplicates,
        "drained_after_link_opened_s": drained_s,
        "studies_once_each": total,
        "machine": yilian::load::machine(),
    });
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("slow_link.json"), serde_json::to_vec_pretty(&out)?)?;
    println!("wrote target/bench/slow_link.json");
    clinic.shutdown(&hub.broker_url).await?;
    hub.stop().await
}
