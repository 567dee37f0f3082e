//! The agent's footprint on a cart's PC, measured on the real `yilian-agent run` process: its
//! start-up time (process start to serial port open), resident memory while a cart streams
//! 12-lead 500 Hz monitoring over the pty in real time, the CPU it uses for that stream (share of
//! one core), and the binary's size as built and stripped. The targets (issue 11): under 15 MB
//! RSS with one cart, under 2% of one core per stream.
//!
//! ```text
//! cargo build --release --workspace --bins
//! cargo run --release --example agent_footprint -- --seconds 30
//! ```

use clap::Parser;
use std::time::{Duration, Instant};
use yilian::county::{Broker, Clinic, HubHandle};
use yilian::records;

#[derive(Parser)]
struct Args {
    /// How long the cart streams, s.
    #[arg(long, default_value_t = 30)]
    seconds: u64,
}

/// (user + system CPU time in clock ticks, VmRSS kB, VmHWM kB) of process `pid`.
fn usage(pid: u32) -> anyhow::Result<(u64, u64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces) start at ") ".
    let rest = stat.rsplit_once(") ").map(|x| x.1).unwrap_or_default();
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Ok((ticks, kb("VmRSS:"), kb("VmHWM:")))
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let tmp = tempfile::tempdir()?;
    let hub = HubHandle::start(&tmp.path().join("hub"), Broker::Embedded).await?;
    let mut clinic = Clinic::prepare(&tmp.path().join("clinics"), "xz-fp", "cart-fp", &hub.hub_key, &hub.broker_url)?;
    hub.enroll("xz-fp", "cart-fp", &clinic.public_key)?;
    let started = Instant::now();
    clinic.start_agent_process(&[]).await?;
    let startup = started.elapsed();
    let pid = clinic.agent_pid().ok_or_else(|| anyhow::anyhow!("no agent process"))?;
    let rec = records::ptb_12_lead_500hz()?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (idle_ticks, idle_rss, _) = usage(pid)?;
    let t0 = Instant::now();
    let cart = clinic.cart.clone();
    let seconds = args.seconds;
    let writer = tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        // 100 ms frames of 50 samples a lead, in real time.
        let start = Instant::now();
        for i in 0..seconds * 10 {
            let due = Duration::from_millis(i * 100);
            if let Some(wait) = due.checked_sub(start.elapsed()) {
                std::thread::sleep(wait);
            }
            let first = i * 50;
            cart.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.stream(0, &rec, first, 50, first as i64 * 2)?;
        }
        Ok(())
    });
    let mut peak_rss = idle_rss;
    while !writer.is_finished() {
        tokio::time::sleep(Duration::from_millis(500)).await;
        peak_rss = peak_rss.max(usage(pid)?.1);
    }
    writer.await??;
    let (ticks, rss, hwm) = usage(pid)?;
    let wall = t0.elapsed().as_secs_f64();
    // Clock ticks per second of /proc's CPU times (100 on Linux unless told otherwise).
    let hz = std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse::<f64>().ok())
        .unwrap_or(100.0);
    let cpu_pct = 100.0 * (ticks - idle_ticks) as f64 / hz / wall;
    let bin = yilian::procs::workspace_bin("yilian-agent")?;
    let stripped = tmp.path().join("yilian-agent.stripped");
    std::fs::copy(&bin, &stripped)?;
    let stripped_ok = std::process::Command::new("strip").arg(&stripped).status().is_ok_and(|s| s.success());
    let mb = |b: u64| b as f64 / 1e6;
    let (_, streams) = hub.api.get_raw("/api/devices/cart-fp/streams").await?;
    println!("yilian-agent, one cart streaming 12 leads at 500 Hz for {wall:.0} s (real time):");
    println!("  start-up (process start to serial port open)  {:>8.0} ms", startup.as_secs_f64() * 1000.0);
    println!(
        "  RSS idle / streaming now / peak sampled       {:>5.1} / {:.1} / {:.1} MB",
        idle_rss as f64 / 1e3,
        rss as f64 / 1e3,
        peak_rss as f64 / 1e3
    );
    println!("  RSS high-water mark (VmHWM)                   {:>8.1} MB", hwm as f64 / 1e3);
    println!("  CPU while streaming                           {cpu_pct:>8.2} % of one core");
    println!(
        "  binary as built / stripped                    {:>5.1} / {} MB",
        mb(std::fs::metadata(&bin)?.len()),
        if stripped_ok { format!("{:.1}", mb(std::fs::metadata(&stripped)?.len())) } else { "—".into() }
    );
    println!("  at the hub: {}", serde_json::to_string(&streams)?);
    clinic.stop_agent_process().await?;
    hub.stop().await
}
