//! Throughput of resting studies through the whole path: every clinic's cart sends a burst of
//! 12-lead, 10 s, 1000 Hz studies back to back over its pty; prints studies/s from the first
//! byte on the serial lines until the last study is in the hub's queue, and the per-study
//! latency (acquired at the cart → stored at the hub).
//!
//! ```text
//! cargo run --release --example study_burst -- --clinics 3 --studies 20
//! ```

use clap::Parser;
use std::time::{Duration, Instant};
use yilian::county::{Broker, Clinic, HubHandle, wait_for};
use yilian::{records, sim};

#[derive(Parser)]
struct Args {
    /// Clinics sending at once.
    #[arg(long, default_value_t = 3)]
    clinics: usize,
    /// Studies per clinic.
    #[arg(long, default_value_t = 20)]
    studies: usize,
    /// External broker (mqtt://host:port); default embedded.
    #[arg(long)]
    broker: Option<String>,
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let tmp = tempfile::tempdir()?;
    let hub = HubHandle::start(&tmp.path().join("hub"), args.broker.map_or(Broker::Embedded, Broker::External)).await?;
    let mut clinics = Vec::new();
    for i in 0..args.clinics {
        clinics.push(
            Clinic::start(&tmp.path().join("clinics"), &format!("burst-{i}"), &format!("burst-cart-{i}"), &hub).await?,
        );
    }
    let rec = records::ptb_12_lead()?;
    let started = Instant::now();
    let mut sends = Vec::new();
    for (i, c) in clinics.iter().enumerate() {
        let (rec, n, cart) = (rec.clone(), args.studies, c.cart.clone());
        sends.push(tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
            let mut cart = cart.lock().map_err(|_| anyhow::anyhow!("cart lock poisoned"))?;
            for k in 0..n {
                let acquired = yilian_hub::clock::now_ms();
                cart.study(&rec, (k * 1000) % rec.len(), 10_000, &sim::demo_visit(i * 1000 + k), acquired)?;
            }
            Ok(())
        }));
    }
    for s in sends {
        s.await??;
    }
    let written = started.elapsed();
    let total = args.clinics * args.studies;
    let api = hub.api.clone();
    let studies = wait_for("every study in the queue", Duration::from_secs(600), || {
        let api = api.clone();
        async move { api.studies().await.ok().filter(|s| s.len() >= total) }
    })
    .await?;
    let elapsed = started.elapsed();
    let mut lat: Vec<i64> =
        studies.iter().filter_map(|s| Some(s["received_at_ms"].as_i64()? - s["acquired_at_ms"].as_i64()?)).collect();
    lat.sort_unstable();
    let raw_mb = total as f64 * 12.0 * 10_000.0 * 2.0 / 1e6;
    println!("{total} studies (12 leads × 10 s × 1000 Hz) from {} clinics", args.clinics);
    println!("  written to the serial lines in {:.2} s", written.as_secs_f64());
    println!("  all queued at the hub after   {:.2} s", elapsed.as_secs_f64());
    println!(
        "  throughput: {:.1} studies/s ({:.1} MB/s of raw 16-bit samples)",
        total as f64 / elapsed.as_secs_f64(),
        raw_mb / elapsed.as_secs_f64()
    );
    println!(
        "  latency acquired → stored: p50 {} ms, p99 {} ms, max {} ms",
        lat[lat.len() / 2],
        lat[(lat.len() * 99 / 100).min(lat.len() - 1)],
        lat[lat.len() - 1]
    );
    for c in clinics {
        c.shutdown(&hub.broker_url).await?;
    }
    hub.stop().await
}
