//! The console in a real browser: Debian's headless Chromium driven by playwright-core
//! (`tests/browser/console.mjs`). Screenshots land in `target/browser/`.

use crate::common::*;
use anyhow::Context;
use std::time::Duration;
use yilian::county::{self, Clinic, HubHandle, wait_for};
use yilian::{records, sim};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_specialist_signs_in_opens_a_study_in_chromium_and_reports_it() -> anyhow::Result<()> {
    let _one = ONE_AT_A_TIME.lock().await;
    init_logs();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let script = root.join("tests/browser/console.mjs");
    anyhow::ensure!(
        root.join("tests/browser/node_modules/playwright-core").exists(),
        "run `npm ci --prefix tests/browser` first (scripts/test does)"
    );
    let out = root.join("target/browser");
    let tmp = tempfile::tempdir()?;
    let hub = HubHandle::start(&tmp.path().join("hub"), county::test_broker()?).await?;
    let clinic = Clinic::start(&tmp.path().join("clinics"), "xz-web", "cart-web", &hub).await?;
    let rec = records::ptb_12_lead()?;
    let visit = sim::demo_visit(7); // 黄勇
    let name = visit.name.clone();
    let acquired = now_ms();
    // The study arrives while the specialist is already looking at the worklist.
    let browser = tokio::process::Command::new("node")
        .arg(&script)
        .args([&format!("http://{}", hub.http), county::DEMO_LOGIN.0, county::DEMO_LOGIN.1, &name])
        .arg(&out)
        .kill_on_drop(true)
        .output();
    let send = async {
        tokio::time::sleep(Duration::from_secs(2)).await;
        clinic.cart(move |c| c.study(&rec, 0, 10_000, &visit, acquired)).await
    };
    let (browser, sent) = tokio::join!(tokio::time::timeout(Duration::from_secs(120), browser), send);
    sent?;
    let output = browser.context("the browser test took over two minutes")??;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "browser test failed:\n{stdout}\n{stderr}\n(see {})", out.display());
    assert!(stdout.lines().any(|l| l == "traces 13"), "12 leads in 3×4 and the rhythm strip:\n{stdout}");
    assert!(stdout.lines().any(|l| l == "reported"), "{stdout}");
    let opened_ms: u64 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("opened-ms "))
        .and_then(|v| v.trim().parse().ok())
        .context("opened-ms line")?;
    eprintln!(
        "console: a 12-lead study (10 s, 1000 Hz) opened in Chromium in {opened_ms} ms; screenshots in {}",
        out.display()
    );
    for shot in ["worklist.png", "viewer.png"] {
        assert!(std::fs::metadata(out.join(shot)).map(|m| m.len() > 10_000).unwrap_or(false), "{shot}");
    }
    // The report went to the clinic and came back confirmed.
    let api = hub.api.clone();
    wait_for("the report delivered", WAIT, || {
        let api = api.clone();
        async move { api.studies().await.ok()?.into_iter().find(|s| s["state"] == "delivered") }
    })
    .await?;
    clinic.shutdown(&hub.broker_url).await?;
    hub.stop().await
}
