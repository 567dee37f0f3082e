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
    let (root, out) = browser_dirs()?;
    let script = root.join("tests/browser/console.mjs");
    let tmp = tempfile::tempdir()?;
    let hub = HubHandle::start(&tmp.path().join("hub"), county::test_broker()?).await?;
    let clinic = Clinic::start(&tmp.path().join("clinics"), "xz-web", "cart-web", &hub).await?;
    let rec = records::ptb_12_lead()?;
    let visit = sim::demo_visit(7); // 黄勇
    let name = visit.name.clone();
    let acquired = now_ms();
    // The study arrives while the specialist is already looking at the worklist.
    // A second study from MIT-BIH record 100, whose reference annotations put normal beats at
    // samples 77 and 370 (360 Hz): the calipers must read an RR interval of 293 / 360 s.
    let mit = records::mitdb("100")?;
    let visit2 = sim::demo_visit(8); // 周婷
    let name2 = visit2.name.clone();
    let browser = tokio::process::Command::new("node")
        .arg(&script)
        .args([&hub.base_url, county::DEMO_LOGIN.0, county::DEMO_LOGIN.1, &name])
        .arg(&out)
        .args([name2.as_str(), "77", "370", "360"])
        .env("YILIAN_SPKI", yilian_hub::ca::server_spki_sha256_base64(&hub.data_dir)?)
        .kill_on_drop(true)
        .output();
    let send = async {
        tokio::time::sleep(Duration::from_secs(2)).await;
        clinic.cart(move |c| c.study(&rec, 0, 10_000, &visit, acquired)).await?;
        clinic.cart(move |c| c.study(&mit, 0, 3_600, &visit2, acquired + 1)).await
    };
    let (browser, sent) = tokio::join!(tokio::time::timeout(Duration::from_secs(120), browser), send);
    sent?;
    let output = browser.context("the browser test took over two minutes")??;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "browser test failed:\n{stdout}\n{stderr}\n(see {})", out.display());
    assert!(stdout.lines().any(|l| l == "traces 13"), "12 leads in 3×4 and the rhythm strip:\n{stdout}");
    assert!(stdout.lines().any(|l| l == "reported"), "{stdout}");
    assert!(stdout.lines().any(|l| l == "delivered"), "the browser saw the clinic's receipt: {stdout}");
    let opened_ms: u64 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("opened-ms "))
        .and_then(|v| v.trim().parse().ok())
        .context("opened-ms line")?;
    let caliper_ms: f64 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("caliper-ms "))
        .and_then(|v| v.trim().parse().ok())
        .context("caliper-ms line")?;
    let expected_ms = 293.0 / 360.0 * 1000.0;
    eprintln!(
        "console: a 12-lead study (10 s, 1000 Hz) opened in Chromium in {opened_ms} ms; calipers read RR {caliper_ms} ms \
         (reference {expected_ms:.1} ms); screenshots in {}",
        out.display()
    );
    // At 50 mm/s one screen pixel is about 5 ms: allow a pixel either side.
    assert!((caliper_ms - expected_ms).abs() <= 6.0, "calipers read {caliper_ms} ms, reference {expected_ms:.1} ms");
    for shot in ["worklist.png", "viewer.png", "calipers.png"] {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_radiologist_scrolls_windows_and_measures_a_ct_in_chromium() -> anyhow::Result<()> {
    let _one = ONE_AT_A_TIME.lock().await;
    init_logs();
    let tmp = tempfile::tempdir()?;
    let hub = HubHandle::start(&tmp.path().join("hub"), county::test_broker()?).await?;
    let clinic = Clinic::start(&tmp.path().join("clinics"), "xz-ct-web", "node-web", &hub).await?;
    let study = "2.25.300000000000000000000000000077";
    let (files, _) = crate::imaging::ct_series(&tmp.path().join("ct"), study, 20, 256, 256, "CT")?;
    crate::imaging::storescu(crate::imaging::node_addr(&clinic)?, "-xe", &files).await?;
    crate::imaging::complete_at_hub(&hub, study, WAIT).await?;
    let stdout = console_browser(&hub, "imaging.mjs", &[study]).await?;
    let slice: u32 =
        stdout.lines().find_map(|l| l.strip_prefix("slice ")).and_then(|v| v.parse().ok()).context("slice")?;
    assert!(slice >= 5, "scrolled to slice {slice}");
    assert!(stdout.lines().any(|l| l == "window 400.0,1800.0"), "the bone window: {stdout}");
    let (measured, expected) = stdout
        .lines()
        .find_map(|l| {
            let mut v = l.strip_prefix("length ")?.split(' ').map(|x| x.parse::<f64>().ok());
            Some((v.next()??, v.next()??))
        })
        .context("length line")?;
    assert!((measured - expected).abs() <= 1.0, "measured {measured} mm, expected {expected} mm");
    clinic.shutdown(&hub.broker_url).await?;
    hub.stop().await?;
    Ok(())
}
