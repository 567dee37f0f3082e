//! Cart files, end to end: a file dropped in a running agent's inbox reaches the hub's API with
//! sample-exact waveforms, and its original bytes come back bit-identical.

use crate::common::*;
use anyhow::Context;
use std::path::{Path, PathBuf};
use yilian::county::{self, Clinic, HubHandle, wait_for};
use yilian::records::shared_data;
use yilian_agent::cartfile::content_hash;
use yilian_agent::inspect;
use yilian_formats::ReadOptions;

/// Copies `src` into `dir` the way a cart's PC software does: a temporary name, then a rename.
fn drop_file(src: &Path, dir: &Path) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let name = src.file_name().context("name")?;
    let tmp = dir.join(format!(".{}.part", name.to_string_lossy()));
    std::fs::copy(src, &tmp)?;
    let dest = dir.join(name);
    std::fs::rename(&tmp, &dest)?;
    Ok(dest)
}

/// Drops the files of one recording (main file last) and checks what the specialist gets.
async fn through_the_inbox(
    hub: &HubHandle,
    clinic: &Clinic,
    files: &[&str],
    priority: &str,
    question: Option<&str>,
) -> anyhow::Result<String> {
    let data = shared_data();
    let main = data.join(files[0]);
    let (expected, originals) = inspect::load(&main, &ReadOptions::default()).map_err(anyhow::Error::msg)?;
    let dir = clinic.inbox().join(priority);
    if let Some(q) = question {
        // Chinese Windows editors save GBK.
        let (gbk, _, _) = encoding_rs::GBK.encode(q);
        std::fs::write(dir.join(format!("{}.question.txt", originals[0].name)), &gbk)?;
    }
    for f in files.iter().skip(1).chain(files.first()) {
        drop_file(&data.join(f), &dir)?;
    }
    let suffix = format!("-f{}", &hex::encode(content_hash(&originals))[..16]);
    let api = hub.api.clone();
    let row = wait_for("the study at the hub", WAIT, || {
        let (api, suffix) = (api.clone(), suffix.clone());
        async move { api.studies().await.ok()?.into_iter().find(|s| uid_of(s).ends_with(&suffix)) }
    })
    .await?;
    let uid = uid_of(&row).to_string();
    assert_eq!(row["priority"], priority);
    if let Some(q) = question {
        assert_eq!(row["question"], q);
    }
    let detail = api.study(&uid).await?;
    let leads = detail["leads"].as_array().context("leads")?;
    assert_eq!(leads.len(), expected.leads.len(), "{}", files[0]);
    for (got, want) in leads.iter().zip(&expected.leads) {
        assert_eq!(got["name"], want.name.as_str());
        assert_eq!(got["derived"], want.derived, "lead {}", want.name);
        assert_eq!(got["resolution_nv"].as_f64(), Some(want.resolution_nv), "lead {}", want.name);
        assert_eq!(ints(&got["samples"]), want.samples, "{} lead {}: not sample-exact", files[0], want.name);
    }
    // Every warning the reader gave reaches the specialist.
    let warnings: Vec<&str> =
        detail["warnings"].as_array().context("warnings")?.iter().filter_map(|w| w.as_str()).collect();
    for w in &expected.warnings {
        assert!(warnings.contains(&w.as_str()), "{}: warning {w:?} not shown: {warnings:?}", files[0]);
    }
    let src = &detail["source"];
    for (i, o) in originals.iter().enumerate() {
        let (status, bytes) = api.get_bytes(&format!("/api/studies/{uid}/original/{i}")).await?;
        assert_eq!(status, 200);
        let name = src["files"][i]["name"].as_str().context("name")?;
        let want = &originals.iter().find(|x| x.name == name).context("original by name")?.bytes;
        assert!(bytes == *want, "original {name} is not bit-identical");
        let _ = o;
    }
    // The files end in sent/ once the hub has acknowledged every part.
    let sent = clinic.inbox().join("sent");
    let names: Vec<String> = originals.iter().map(|o| o.name.clone()).collect();
    wait_for("the files in sent/", WAIT, || {
        let (sent, names) = (sent.clone(), names.clone());
        async move { names.iter().all(|n| sent.join(n).exists()).then_some(()) }
    })
    .await?;
    // The clinic page shows the study stored at the hub, from its file, with the same warnings.
    let page = clinic.page_url().context("clinic page")?;
    let journeys: serde_json::Value = reqwest::get(format!("{page}/api/journeys")).await?.json().await?;
    let j = journeys["studies"]
        .as_array()
        .and_then(|v| v.iter().find(|j| j["study_uid"] == uid.as_str()))
        .with_context(|| format!("{uid} on the clinic page: {journeys}"))?;
    assert!(j["stored_at_ms"].is_i64() && j["source"] == originals[0].name.as_str(), "{j}");
    let html = reqwest::get(&page).await?.text().await?;
    for w in &expected.warnings {
        assert!(j["warnings"].as_array().is_some_and(|v| v.iter().any(|x| x == w.as_str())), "{w}: {j}");
        let shown = w
            .replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
            .replace('\'', "&#39;");
        assert!(html.contains(&shown), "warning {w:?} not on the clinic page");
    }
    Ok(uid)
}

/// The hub's writers: each export of the study reads back (with our readers) to the integers the
/// hub holds, lead by lead.
async fn exports_read_back_identical(hub: &HubHandle, uid: &str) -> anyhow::Result<()> {
    let detail = hub.api.study(uid).await?;
    let held: Vec<(String, Vec<i32>)> = detail["leads"]
        .as_array()
        .context("leads")?
        .iter()
        .map(|l| (l["name"].as_str().unwrap_or_default().to_string(), ints(&l["samples"])))
        .collect();
    let get = |name: &str| {
        let (api, path) = (hub.api.clone(), format!("/api/studies/{uid}/export/{name}"));
        async move {
            let (status, bytes) = api.get_bytes(&path).await?;
            anyhow::ensure!(status == 200, "{path}: HTTP {status}");
            Ok::<_, anyhow::Error>(bytes)
        }
    };
    let opts = ReadOptions::default();
    let mut read_back = vec![
        ("dicom", yilian_formats::dicom::read(&get("ex.dcm").await?, &opts)?),
        ("aecg", yilian_formats::aecg::read(&get("ex.xml").await?, &opts)?),
        ("scp", yilian_formats::scp::read(&get("ex.scp").await?, &opts)?),
    ];
    let header = get("ex.hea").await?;
    let files = std::collections::BTreeMap::from([("ex.dat".to_string(), get("ex.dat").await?)]);
    read_back.push(("wfdb", yilian_formats::wfdb::read(&header, &files, &opts)?));
    for (what, rec) in &read_back {
        for (name, samples) in &held {
            let lead = rec.lead(name).with_context(|| format!("{what}: lead {name}"))?;
            assert_eq!(&lead.samples, samples, "{what} export, lead {name}");
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cart_files_dropped_in_the_inbox_reach_the_specialist_sample_exact_with_their_originals() -> anyhow::Result<()>
{
    let _one = ONE_AT_A_TIME.lock().await;
    init_logs();
    let tmp = tempfile::tempdir()?;
    let hub = HubHandle::start(&tmp.path().join("hub"), county::test_broker()?).await?;
    let clinic = Clinic::start(&tmp.path().join("clinics"), "xiangzhen-files", "cart-files", &hub).await?;

    // A Chinese cart's own file: chest leads absent, limb leads derived.
    let contec = through_the_inbox(&hub, &clinic, &["contec/0000050.ECG"], "urgent", Some("胸闷三天，请会诊")).await?;
    // The cart's quality gate said so before sending, and the line travelled signed with it.
    let gate =
        "质控 Quality: 请重做：缺少胸导联 V1、V2、V3、V4、V5、V6 / retake: chest leads missing: V1, V2, V3, V4, V5, V6";
    let detail = hub.api.study(&contec).await?;
    assert!(detail["warnings"].as_array().is_some_and(|w| w.iter().any(|x| x == gate)), "{}", detail["warnings"]);
    let page = reqwest::get(clinic.page_url().context("clinic page")?).await?.text().await?;
    assert!(page.contains("请重做：缺少胸导联"), "the clinic page says retake at once");
    let detail = hub.api.study(&contec).await?;
    let names: Vec<&str> =
        detail["leads"].as_array().context("leads")?.iter().filter_map(|l| l["name"].as_str()).collect();
    assert_eq!(names, ["I", "II", "III", "aVR", "aVL", "aVF"], "absent chest leads stay absent");
    // Written back in the cart's own format, the sample frames are the cart's, byte for byte.
    let (status, exported) = hub.api.get_bytes(&format!("/api/studies/{contec}/export/back.ECG")).await?;
    assert_eq!(status, 200);
    let original = std::fs::read(shared_data().join("contec/0000050.ECG"))?;
    assert!(exported.len() == original.len() && exported[43..exported.len() - 37] == original[43..original.len() - 37]);

    // A WFDB record of 14 files: per-lead gains and baselines, per-lead annotation files.
    let mut ludb = vec!["wfdb/ludb/1.hea".to_string(), "wfdb/ludb/1.dat".to_string()];
    for l in ["i", "ii", "iii", "avr", "avl", "avf", "v1", "v2", "v3", "v4", "v5", "v6"] {
        ludb.push(format!("wfdb/ludb/1.{l}"));
    }
    let ludb: Vec<&str> = ludb.iter().map(String::as_str).collect();
    let uid = through_the_inbox(&hub, &clinic, &ludb, "stat", None).await?;
    let detail = hub.api.study(&uid).await?;
    assert_eq!(detail["annotations"].as_array().map(Vec::len), Some(12 * 48));
    assert_eq!(detail["source"]["files"].as_array().map(Vec::len), Some(14));

    // The same ECG from three more formats, and the specialist's exports of it.
    let scp = through_the_inbox(&hub, &clinic, &["scp/ecgtoolkit_Example.scp"], "routine", None).await?;
    let detail = hub.api.study(&scp).await?;
    let beat = detail["median_beat"]["leads"].as_array().context("median beat")?;
    assert_eq!(beat.len(), 12);
    assert_eq!(ints(&beat[0]["samples"])[..8], [4, 4, 2, 3, 4, 4, 4, 4]);
    assert!(
        detail["measurements"].as_array().is_some_and(|m| m.iter().any(|m| m["name"] == "QTc" && m["value"] == 443.0))
    );
    through_the_inbox(&hub, &clinic, &["dicom-ecg/waveform_ecg.dcm"], "routine", None).await?;
    through_the_inbox(&hub, &clinic, &["aecg/hl7aecg-Example2.xml"], "routine", None).await?;
    exports_read_back_identical(&hub, &scp).await?;

    // The same file dropped again is sent once.
    let before = hub.api.studies().await?.len();
    drop_file(&shared_data().join("contec/0000050.ECG"), &clinic.inbox())?;
    let inbox = clinic.inbox();
    wait_for("the duplicate filed under sent/", WAIT, || {
        let inbox = inbox.clone();
        async move { (!inbox.join("0000050.ECG").exists() && inbox.join("sent/0000050.ECG.1").exists()).then_some(()) }
    })
    .await?;
    assert_eq!(hub.api.studies().await?.len(), before, "a duplicate is not a new study");

    // A file no reader takes is refused with what it looks like, and loses nothing.
    std::fs::write(clinic.inbox().join("scan.pdf"), b"%PDF-1.4 a scanned paper ECG")?;
    let reason = clinic.inbox().join("rejected/scan.pdf.reason.txt");
    let text = wait_for("the reason beside the rejected file", WAIT, || {
        let reason = reason.clone();
        async move { std::fs::read_to_string(&reason).ok() }
    })
    .await?;
    assert!(text.contains("PDF"), "{text}");
    assert_eq!(std::fs::read(clinic.inbox().join("rejected/scan.pdf"))?, b"%PDF-1.4 a scanned paper ECG");
    // County IT sees it too, without visiting the clinic.
    let api = hub.api.clone();
    let line = wait_for("the rejection in the device's output at the hub", WAIT, || {
        let api = api.clone();
        async move {
            let lines = api.device_output("cart-files").await.ok()?;
            lines.into_iter().find(|l| l["line"].as_str().is_some_and(|t| t.contains("REJECTED cart file scan.pdf")))
        }
    })
    .await?;
    assert_eq!(line["port"], "inbox");

    clinic.shutdown(&hub.broker_url).await?;
    hub.stop().await?;
    Ok(())
}

/// An undocumented cart: county IT records what it sends, byte for byte, with the time it came.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn raw_capture_records_an_unknown_carts_bytes_with_their_times() -> anyhow::Result<()> {
    use std::io::Write;
    let _one = ONE_AT_A_TIME.lock().await;
    init_logs();
    let tmp = tempfile::tempdir()?;
    let pty = yilian::sim::Pty::open()?;
    let out = tmp.path().join("cart.capture");
    let child = tokio::process::Command::new(yilian::procs::workspace_bin("yilian-agent")?)
        .args(["raw-capture", "--baud", "9600", "--seconds", "3", "--port"])
        .arg(pty.path())
        .arg("--out")
        .arg(&out)
        .stdout(std::process::Stdio::piped())
        .spawn()?;
    // Let the capture open the port before the cart talks.
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    let mut w = pty.writer()?;
    let first: Vec<u8> = (0..=255u8).collect();
    w.write_all(&first)?;
    w.flush()?;
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    w.write_all("病人 张伟\r\n".as_bytes())?;
    w.flush()?;
    let done = child.wait_with_output().await?;
    assert!(done.status.success(), "{}", String::from_utf8_lossy(&done.stderr));
    let text = std::fs::read_to_string(&out)?;
    let records = yilian_agent::capture::parse(&text).map_err(anyhow::Error::msg)?;
    let bytes: Vec<u8> = records.iter().flat_map(|(_, b)| b.clone()).collect();
    let mut want = first.clone();
    want.extend_from_slice("病人 张伟\r\n".as_bytes());
    assert_eq!(bytes, want, "every byte, in order");
    let times: Vec<f64> = records.iter().map(|(t, _)| *t).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]));
    assert!(times.last().copied().unwrap_or_default() - times[0] >= 300.0, "the pause shows in the times: {times:?}");
    Ok(())
}
