//! Imaging, end to end over real peers: dcmtk's `storescu` pushes to the clinic's DICOM node, the
//! agent sends each complete study as a signed manifest and chunks on the bulk lanes, the hub
//! rebuilds and checks every instance.

use crate::common::*;
use crate::dicomgen;
use anyhow::Context;
use serde_json::Value;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use yilian::county::{self, Clinic, HubHandle, wait_for};
use yilian::records::shared_data;

/// Sends `files` with `storescu`, proposing `propose`'s transfer syntax.
pub async fn storescu(addr: SocketAddr, propose: &str, files: &[PathBuf]) -> anyhow::Result<()> {
    let mut cmd = tokio::process::Command::new("storescu");
    cmd.args(["-R", "-nh", "-aet", "MODALITY", "-aec", "YILIAN", "-to", "10", "-ta", "10", "-td", "120", propose]);
    let out = cmd.arg(addr.ip().to_string()).arg(addr.port().to_string()).args(files).output().await?;
    anyhow::ensure!(out.status.success(), "storescu: {}", String::from_utf8_lossy(&out.stderr));
    Ok(())
}

/// Sends `files` with dicom-rs's `storescu` (a second, independent implementation), never
/// transcoding.
async fn dicom_rs_storescu(addr: SocketAddr, files: &[PathBuf]) -> anyhow::Result<()> {
    let bin = std::env::var_os("YILIAN_DICOM_STORESCU")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/tools/bin/dicom-storescu"));
    anyhow::ensure!(bin.exists(), "{} missing: scripts/test installs dicom-storescu", bin.display());
    let out = tokio::process::Command::new(bin)
        .args(["--calling-ae-title", "MODALITY", "--called-ae-title", "YILIAN", "--never-transcode", "--fail-first"])
        .arg(addr.to_string())
        .args(files)
        .output()
        .await?;
    anyhow::ensure!(out.status.success(), "dicom-storescu: {}", String::from_utf8_lossy(&out.stderr));
    Ok(())
}

pub fn node_addr(clinic: &Clinic) -> anyhow::Result<SocketAddr> {
    Ok(clinic.config.dicom.as_ref().context("dicom node")?.listen.parse()?)
}

/// The image study at the hub once it is complete.
pub async fn complete_at_hub(hub: &HubHandle, study: &str, within: Duration) -> anyhow::Result<Value> {
    let api = hub.api.clone();
    wait_for(&format!("image study {study} complete at the hub"), within, || {
        let (api, study) = (api.clone(), study.to_string());
        async move {
            let (_, rows) = api.get_raw("/api/images").await.ok()?;
            rows.as_array()?.iter().find(|r| r["study_uid"] == study.as_str() && r["state"] == "complete").cloned()
        }
    })
    .await
}

/// The node's sent copy of each instance, and what the hub rebuilt, are the same bytes.
async fn rebuilt_identical(hub: &HubHandle, clinic: &Clinic, study: &str) -> anyhow::Result<usize> {
    let dir = clinic.config.dicom.as_ref().context("dicom")?.dir.join("sent");
    // The agent files the study under sent/ once every chunk's ack is back.
    let entry = wait_for("the study in the node's sent/", WAIT, || {
        let (dir, study) = (dir.clone(), study.to_string());
        async move {
            std::fs::read_dir(&dir).ok()?.flatten().find(|e| {
                std::fs::read(e.path().join("study.json"))
                    .ok()
                    .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
                    .is_some_and(|v| v["study_uid"] == study.as_str())
            })
        }
    })
    .await?;
    let manifest: Value = serde_json::from_slice(&std::fs::read(entry.path().join("study.json"))?)?;
    let mut n = 0;
    for i in manifest["instances"].as_array().context("instances")? {
        let sent = std::fs::read(entry.path().join(i["file"].as_str().context("file")?))?;
        // What a DICOMweb client (a PACS, OHIF) gets back from the hub.
        let path = format!(
            "/dicomweb/studies/{study}/series/{}/instances/{}?accept=application/dicom",
            i["series_uid"].as_str().unwrap_or_default(),
            i["sop_instance_uid"].as_str().unwrap_or_default()
        );
        let (status, at_hub) = hub.api.get_bytes(&path).await?;
        anyhow::ensure!(status == 200, "{path}: HTTP {status}");
        anyhow::ensure!(sent == at_hub, "instance {} differs at the hub", i["sop_instance_uid"]);
        n += 1;
    }
    Ok(n)
}

fn files_under(dir: &std::path::Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            files_under(&p, out);
        } else {
            out.push(p);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn images_pushed_by_a_modality_reach_the_hub_rebuilt_and_checked() -> anyhow::Result<()> {
    let _one = ONE_AT_A_TIME.lock().await;
    init_logs();
    let tmp = tempfile::tempdir()?;
    let hub = HubHandle::start(&tmp.path().join("hub"), county::test_broker()?).await?;
    let clinic = Clinic::start(&tmp.path().join("clinics"), "xz-img", "node-img", &hub).await?;
    let addr = node_addr(&clinic)?;
    let data = shared_data().join("dicom-img");
    // Each file in its own transfer syntax, as a modality would send it.
    let sends = [
        ("CT_small.dcm", "-xe", "1.3.6.1.4.1.5962.1.2.1.20040119072730.12322", "CT"),
        ("CR_dicomdirtests_6154.dcm", "-xe", "1.3.6.1.4.1.5962.1.1.0.0.0.1196527414.5534.0.1", "CR"),
        ("OBXXXX1A_rle.dcm", "-xr", "1.3.46.670589.14.1000.210.4.199999.20110525182825.1.0", "US"),
        (
            "JPGLosslessP14SV1_1s_1f_8b.dcm",
            "-xs",
            "1.2.826.0.1.3680043.2.1143.536994375713558855009808807549617714",
            "US",
        ),
        ("examples_ybr_color.dcm", "-xy", "1.2.840.114340.3.8251017118051.1.20160503.120850.2171", "US"),
        ("RG3_J2KI.dcm", "-xw", "1.3.6.1.4.1.5962.1.2.11.20040826185059.5457", "CR"),
        ("examples_rgb_color.dcm", "-xe", "1.3.6.1.4.1.5962.1.2.13.20040826185059.5457", "US"),
        ("image_dfl.dcm", "-xd", "1.3.6.1.4.1.5962.1.2.0.977067310.6001.0", "OT"),
    ];
    // Two independent senders: dcmtk's storescu for some, dicom-rs's for the others.
    for (i, (file, propose, _, _)) in sends.iter().enumerate() {
        if i % 2 == 0 {
            storescu(addr, propose, &[data.join(file)]).await.with_context(|| file.to_string())?;
        } else {
            dicom_rs_storescu(addr, &[data.join(file)]).await.with_context(|| format!("dicom-rs: {file}"))?;
        }
    }
    for (file, _, study, modality) in &sends {
        let row = complete_at_hub(&hub, study, WAIT).await.with_context(|| file.to_string())?;
        assert_eq!(row["modality"], *modality, "{file}");
        assert_eq!(row["instances_stored"], 1, "{file}");
        assert_eq!(rebuilt_identical(&hub, &clinic, study).await?, 1, "{file}");
    }
    // At rest the hub's imaging folders are sealed: served byte for byte above, yet no file
    // there holds a patient's name or even a DICOM header.
    let mut on_disk = Vec::new();
    for dir in ["images", "image-work"] {
        files_under(&hub.data_dir.join(dir), &mut on_disk);
    }
    assert!(on_disk.len() >= sends.len(), "{on_disk:?}");
    for f in &on_disk {
        let bytes = std::fs::read(f)?;
        for needle in ["CompressedSamples^CT1", "Doe^Archibald", "DICM"] {
            assert!(!bytes.windows(needle.len()).any(|w| w == needle.as_bytes()), "{needle} readable in {f:?}");
        }
    }
    // The same SOP Instance UID with other content is set aside, and county IT sees it.
    storescu(addr, "-xe", &[data.join("MR_small.dcm")]).await?;
    storescu(addr, "-xi", &[data.join("MR_small_implicit.dcm")]).await?;
    let api = hub.api.clone();
    wait_for("the conflict in the device's output at the hub", WAIT, || {
        let api = api.clone();
        async move {
            let lines = api.device_output("node-img").await.ok()?;
            lines.into_iter().find(|l| {
                l["line"].as_str().is_some_and(|t| {
                    t.contains("CONFLICT") && t.contains("1.3.6.1.4.1.5962.1.1.4.1.1.20040826185059.5457")
                })
            })
        }
    })
    .await?;
    // And the clinic sees it on its own page.
    let page = reqwest::get(clinic.page_url().context("clinic page")?).await?.text().await?;
    assert!(page.contains("冲突") && page.contains("1.3.6.1.4.1.5962.1.1.4.1.1.20040826185059.5457"), "{page}");

    // The imaging centre reads the CR and its report goes back to the clinic, signed.
    let cr = "1.3.6.1.4.1.5962.1.1.0.0.0.1196527414.5534.0.1";
    hub.api.claim(cr).await?;
    let report = hub.api.report(cr, "双肺纹理清晰，未见实变。", "胸片未见明显异常。").await?;
    assert!(report["report_id"].as_str().is_some());
    let stats = clinic.stats.clone();
    wait_for("the clinic's agent to store the imaging report", WAIT, || {
        let s = stats.clone();
        async move { (yilian_agent::AgentStats::get(&s.reports) >= 1).then_some(()) }
    })
    .await?;
    let (_, rows) = hub.api.get_raw("/api/images").await?;
    let row = rows.as_array().and_then(|r| r.iter().find(|r| r["study_uid"] == cr).cloned()).context("CR row")?;
    assert!(row["report_id"].as_str().is_some());

    // An ECG a modality pushes goes the ECG way: read, and queued for the ECG centre.
    storescu(addr, "-xe", &[shared_data().join("dicom-ecg/waveform_ecg.dcm")]).await?;
    let api = hub.api.clone();
    wait_for("the pushed ECG in the ECG queue", WAIT, || {
        let api = api.clone();
        async move {
            api.queue().await.ok()?.into_iter().find(|s| s["sample_rate_hz"] == 1000 && s["samples_per_lead"] == 10_000)
        }
    })
    .await?;
    clinic.shutdown(&hub.broker_url).await?;
    hub.stop().await?;
    Ok(())
}

/// Writes a CT series of `slices` slices of `rows × cols` into `dir`; returns the paths and bytes.
pub fn ct_series(
    dir: &Path,
    study: &str,
    slices: u32,
    rows: u16,
    cols: u16,
    modality: &str,
) -> anyhow::Result<(Vec<PathBuf>, u64)> {
    std::fs::create_dir_all(dir)?;
    let series = format!("{study}.1");
    let class = if modality == "CR" { "1.2.840.10008.5.1.4.1.1.1" } else { "1.2.840.10008.5.1.4.1.1.2" };
    let mut files = Vec::new();
    let mut total = 0;
    for n in 1..=slices {
        let sop = format!("{series}.{n}");
        let path = dir.join(format!("{n:04}.dcm"));
        total += dicomgen::write(
            &path,
            &dicomgen::Slice {
                study_uid: study,
                series_uid: &series,
                sop_uid: &sop,
                number: n,
                rows,
                cols,
                patient_name: "LI^LEI",
                modality,
                sop_class: class,
            },
        )?;
        files.push(path);
    }
    Ok((files, total))
}

/// Sends a STAT resting ECG from the cart and returns how long it took to reach the hub's queue.
async fn stat_ecg_latency(hub: &HubHandle, clinic: &Clinic, n: usize) -> anyhow::Result<Duration> {
    let rec = yilian::records::ptb_12_lead()?;
    let visit = yilian::sim::demo_visit(n);
    let acquired = now_ms() + n as i64;
    let device = clinic.device.clone();
    let started = std::time::Instant::now();
    clinic
        .cart(move |c| -> anyhow::Result<_> {
            c.hello()?;
            c.study(&rec, 9000 + n, 5_000, &visit, acquired)
        })
        .await?;
    let prefix = format!("{device}-{acquired}-");
    let api = hub.api.clone();
    wait_for("the STAT ECG in the queue", WAIT, || {
        let (api, prefix) = (api.clone(), prefix.clone());
        async move { api.queue().await.ok()?.into_iter().find(|s| uid_of(s).starts_with(&prefix)) }
    })
    .await?;
    Ok(started.elapsed())
}

/// Uses the clinic page's form to set the priority of the one image study being sent.
async fn raise_on_clinic_page(clinic: &Clinic, priority: &str) -> anyhow::Result<()> {
    let base = clinic.page_url().context("clinic page")?;
    let page = reqwest::get(&base).await?.text().await?;
    let action =
        page.split("action=\"").nth(1).and_then(|s| s.split('"').next()).context("a priority form")?.to_string();
    let token = page.split("name=\"token\" value=\"").nth(1).and_then(|s| s.split('"').next()).context("the token")?;
    let r = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?
        .post(format!("{base}{action}"))
        .form(&[("priority", priority), ("token", token)])
        .send()
        .await?;
    anyhow::ensure!(r.status().is_redirection(), "clinic page answered {}", r.status());
    // A forged post without the page's token changes nothing.
    let forged = reqwest::Client::new()
        .post(format!("{base}{action}"))
        .form(&[("priority", "routine"), ("token", "x")])
        .send()
        .await?;
    anyhow::ensure!(forged.status() == 403, "a post without the page's token got {}", forged.status());
    Ok(())
}

async fn image_bytes(hub: &HubHandle) -> i64 {
    hub.api.stats().await.ok().and_then(|s| s["studies"]["image_bytes_received"].as_i64()).unwrap_or(0)
}

/// A 240-slice CT (126 MB) over a slow link: a STAT ECG and a STAT CR overtake it; a cut and a
/// `kill -9` at half way cost at most a window of resent chunks; every instance arrives whole, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_big_ct_yields_to_stat_traffic_and_resumes_after_a_cut_and_kill_9() -> anyhow::Result<()> {
    let _one = ONE_AT_A_TIME.lock().await;
    init_logs();
    let tmp = tempfile::tempdir()?;
    let hub = HubHandle::start_with(&tmp.path().join("hub"), county::test_broker()?, |c| {
        // The hub's per-device byte budget is for carts; this test measures the link.
        c.limits.bytes_per_s = 1e9;
        c.limits.byte_burst = 1e9;
        c.limits.msgs_per_s = 1e5;
        c.limits.msg_burst = 1e5;
    })
    .await?;
    let (host, port) = yilian_protocol::topic::broker_addr(&hub.broker_url)?;
    let broker = tokio::net::lookup_host((host.as_str(), port)).await?.next().context("broker")?;
    let proxy = yilian::fault::FaultProxy::start(broker).await?;
    let mut clinic = Clinic::prepare(&tmp.path().join("clinics"), "xz-ct", "node-ct", &hub.hub_key, &proxy.url())?;
    hub.enroll("xz-ct", "node-ct", &clinic.public_key)?;
    // dcmtk's storescu cannot set the C-STORE priority: the clinic's rule makes every CR STAT.
    if let Some(d) = clinic.config.dicom.as_mut() {
        d.modality_priority.insert("CR".into(), "stat".into());
    }
    clinic.start_agent_process(&[]).await?;
    let addr = node_addr(&clinic)?;

    // A 4 Mbit/s uplink, as township clinics have.
    proxy.set(yilian::fault::LinkMode::Throttle(500_000));
    let idle = stat_ecg_latency(&hub, &clinic, 1).await?;
    let throttled_since = (std::time::Instant::now(), image_bytes(&hub).await);

    let ct_study = "2.25.300000000000000000000000000001";
    // A chest CT: 240 slices of 512 × 512 at 16 bits.
    let slices = 240;
    let (ct, ct_bytes) = ct_series(&tmp.path().join("ct"), ct_study, slices, 512, 512, "CT")?;
    assert!(ct_bytes >= 120 * 1024 * 1024, "{ct_bytes} bytes");
    storescu(addr, "-xe", &ct).await?;
    wait_for("CT chunks on the link", WAIT, || async { (image_bytes(&hub).await > 1_000_000).then_some(()) }).await?;

    let busy = stat_ecg_latency(&hub, &clinic, 2).await?;
    let ct_before_ecg = image_bytes(&hub).await;

    // At the clinic, the nurse raises the CT to urgent on the clinic page; the hub's worklist follows.
    raise_on_clinic_page(&clinic, "urgent").await?;
    let api = hub.api.clone();
    wait_for("the CT urgent at the hub", WAIT, || {
        let api = api.clone();
        async move {
            let (_, rows) = api.get_raw("/api/images").await.ok()?;
            rows.as_array()?.iter().find(|r| r["study_uid"] == ct_study && r["priority"] == "urgent").cloned()
        }
    })
    .await?;
    // The whole CT was stored at the clinic's node before the ECG was recorded: queued behind it,
    // the ECG would have reached the hub after all of it. It overtook at least half.
    assert!(
        ct_before_ecg < ct_bytes as i64 / 2,
        "the STAT ECG reached the queue after {ct_before_ecg} of the CT's {ct_bytes} B \
         (it took {busy:?} during the upload, {idle:?} on an idle link)"
    );

    let cr_study = "2.25.300000000000000000000000000002";
    let (cr, _) = ct_series(&tmp.path().join("cr"), cr_study, 1, 1024, 1024, "CR")?;
    storescu(addr, "-xe", &cr).await?;
    complete_at_hub(&hub, cr_study, Duration::from_secs(120)).await?;
    let (_, rows) = hub.api.get_raw("/api/images").await?;
    let ct_row =
        rows.as_array().and_then(|r| r.iter().find(|r| r["study_uid"] == ct_study).cloned()).context("CT row")?;
    assert_eq!(ct_row["state"], "receiving", "the STAT CR finished first");

    let throttled_rate =
        (image_bytes(&hub).await - throttled_since.1) as f64 / throttled_since.0.elapsed().as_secs_f64();
    // Full speed to half way, then the link drops and the agent is killed.
    proxy.set(yilian::fault::LinkMode::Pass);
    let fast_since = (std::time::Instant::now(), image_bytes(&hub).await);
    let half = (ct_bytes / 2) as i64;
    wait_for("half the CT at the hub", Duration::from_secs(600), || async {
        (image_bytes(&hub).await >= half).then_some(())
    })
    .await?;
    let fast_rate = (image_bytes(&hub).await - fast_since.1) as f64 / fast_since.0.elapsed().as_secs_f64();
    proxy.set(yilian::fault::LinkMode::Reset);
    clinic.kill9_agent();
    let before_restart = image_bytes(&hub).await;
    let dups_before = hub.api.stats().await?["studies"]["duplicates"].as_i64().unwrap_or(0);
    proxy.set(yilian::fault::LinkMode::Pass);
    clinic.start_agent_process(&[]).await?;
    let row = complete_at_hub(&hub, ct_study, Duration::from_secs(900)).await?;
    assert_eq!(row["instances_stored"], slices);
    let received = image_bytes(&hub).await;
    let chunk = yilian_protocol::limits::BLOB_CHUNK_PAYLOAD as i64;
    let window = yilian_agent::image_uplink::FEED_WINDOW as i64 * chunk;
    let cr_bytes = 2 * 1024 * 1024 + 4096;
    let overhead = received - ct_bytes as i64 - cr_bytes;
    // Envelopes that were spooled before the kill and came again under their own seq.
    let resent = hub.api.stats().await?["studies"]["duplicates"].as_i64().unwrap_or(0) - dups_before;
    println!(
        "CT {ct_bytes} B; image bytes/s on the 500,000 B/s link: {throttled_rate:.0}, unthrottled: {fast_rate:.0}; idle STAT ECG {idle:?}, during upload {busy:?} with {ct_before_ecg} B of the CT at the hub; {before_restart} B before the cut; after kill -9: {resent} envelopes resent, {overhead} B stored twice (window {window} B)"
    );
    assert!(resent <= yilian_agent::image_uplink::FEED_WINDOW as i64 + 2, "{resent} envelopes resent");
    assert!(overhead <= window, "resent {overhead} bytes, more than one window ({window})");
    // Every instance is stored once, and whole (the hub checked each against the signed hash).
    let (_, instances) =
        hub.api.get_raw(&format!("/dicomweb/studies/{ct_study}/series/{ct_study}.1/instances?limit=1000")).await?;
    assert_eq!(instances.as_array().map(Vec::len), Some(slices as usize), "every CT slice, once");
    clinic.kill9_agent();
    hub.stop().await?;
    Ok(())
}
