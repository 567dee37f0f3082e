//! The load generator's smoke test (issue 11): a few carts for a few seconds through the whole
//! path, against each test broker. It asserts behaviour only; timing targets live in the bench's
//! output (`cargo run --release --example loadgen`), never here.

use crate::common::*;
use std::time::Duration;
use yilian::county::{self, Broker};
use yilian::load::{self, BenchBroker, BenchOutput, LoadConfig};
use yilian_hub::store::testing;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_load_generator_commits_every_chunk_exactly_once_and_writes_its_report() -> anyhow::Result<()> {
    let _one = ONE_AT_A_TIME.lock().await;
    init_logs();
    let tmp = tempfile::tempdir()?;
    let mut runs = Vec::new();
    for broker in county::test_brokers()? {
        let broker = match broker {
            Broker::Embedded => BenchBroker::Embedded,
            Broker::Mosquitto => BenchBroker::Mosquitto,
            // A shared external broker does not trust each run's fresh county CA.
            Broker::External(_) => continue,
        };
        // With Mosquitto, the hub's store is on PostgreSQL when the test run has one (as with
        // several hubs at scale); the embedded broker keeps the embedded SQLite.
        let store = if broker == BenchBroker::Mosquitto { testing::postgres_server() } else { None };
        let on_postgres = store.is_some();
        let cfg = LoadConfig {
            agents: 3,
            duration: Duration::from_secs(4),
            // Every cart records a resting study in the run.
            study_every: Some(Duration::from_secs(3)),
            broker,
            console_watch: 3,
            drain: WAIT,
            store,
        };
        let r = load::run_load(tmp.path(), &cfg).await?;
        let what = format!("{} on {}: {r:#?}", r.broker, r.store);
        assert_eq!(r.store, if on_postgres { "PostgreSQL" } else { "SQLite" }, "{what}");
        assert_eq!(r.chunks_sent, 3 * 4, "{what}");
        assert_eq!(r.chunks_committed, r.chunks_sent, "every chunk acked: {what}");
        assert_eq!(r.chunks_lost, 0, "{what}");
        assert_eq!(r.hub_chunks, r.chunks_sent, "stored once each: {what}");
        assert_eq!(r.carts_mismatched, 0, "each cart's stream at the hub is what it sent: {what}");
        assert_eq!(r.rejects_total, 0, "{what}");
        assert!(r.studies_sent >= 3 && r.studies_committed == r.studies_sent, "{what}");
        assert_eq!(r.study_latency_console.count as u64, r.studies_sent, "every study listed: {what}");
        assert_eq!(r.latency_commit.count as u64, r.chunks_sent, "{what}");
        assert_eq!(r.latency_console.count as u64, r.chunks_sent, "all three carts watched: {what}");
        assert!(r.envelope_bytes_per_chunk > 1000.0 && r.publish_bytes_per_chunk > r.envelope_bytes_per_chunk);
        assert!(r.resources.hub_rss_mb > 0.0, "the hub process measured: {what}");
        runs.push(r);
    }
    let path = tmp.path().join("bench/loadgen.json");
    let out = BenchOutput { machine: load::machine(), args: serde_json::json!({}), runs, ramps: vec![] };
    out.save(&path)?;
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&path)?)?;
    assert!(v["machine"]["cores"].as_u64().is_some_and(|c| c > 0), "{v}");
    assert!(v["machine"]["memory_mb"].as_u64().is_some_and(|m| m > 0), "{v}");
    assert!(v["machine"]["cpu_model"].is_string(), "{v}");
    let run = &v["runs"][0];
    for field in [
        "chunks_per_s",
        "samples_per_s",
        "chunks_lost",
        "rejects_total",
        "envelope_bytes_per_chunk",
        "publish_bytes_per_chunk",
        "ok",
        "limiter",
    ] {
        assert!(!run[field].is_null(), "{field} missing: {run}");
    }
    for p in ["latency_commit", "latency_console", "study_latency_commit"] {
        for q in ["p50_ms", "p99_ms", "p999_ms"] {
            assert!(run[p][q].is_u64(), "{p}.{q} missing: {run}");
        }
    }
    for f in ["hub_cpu_pct", "hub_rss_mb", "broker_cpu_pct", "store_cpu_pct", "agents_cpu_pct", "machine_busy_pct"] {
        assert!(run["resources"][f].is_number(), "resources.{f} missing: {run}");
    }
    Ok(())
}
