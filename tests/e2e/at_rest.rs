//! Data at rest: the agent's spool is sealed per record and a tampered record is caught and
//! never sent; the hub's database files hold no patient name, identity number or waveform.

use crate::common::*;
use anyhow::Context;
use yilian::county::{self, Clinic, HubHandle, wait_for};
use yilian::records;
use yilian::sim;
use yilian_agent::AgentStats;

/// Where `needle` occurs in any of `files` (missing files are skipped: no WAL yet).
fn found_in(files: &[std::path::PathBuf], needle: &[u8]) -> Vec<String> {
    files
        .iter()
        .filter(|f| std::fs::read(f).is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle)))
        .map(|f| f.display().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_tampered_spool_record_is_detected_reported_and_not_sent_while_the_rest_arrive() -> anyhow::Result<()> {
    let _one = ONE_AT_A_TIME.lock().await;
    init_logs();
    let tmp = tempfile::tempdir()?;
    let hub = HubHandle::start(&tmp.path().join("hub"), county::test_broker()?).await?;
    // The agent first runs with no broker to reach, so every line stays in its spool.
    let nowhere = format!("mqtt://127.0.0.1:{}", yilian_hub::broker::free_port()?);
    let mut clinic = Clinic::prepare(&tmp.path().join("clinics"), "xz-rest", "cart-rest", &hub.hub_key, &nowhere)?;
    hub.enroll("xz-rest", "cart-rest", &clinic.public_key)?;
    clinic.start_agent().await?;
    for i in 0..8 {
        clinic.print(&format!("记录 {i}: 病人 张卫国"))?;
    }
    let stats = clinic.stats.clone();
    wait_for("eight lines in the spool", WAIT, || {
        let s = stats.clone();
        async move { (AgentStats::get(&s.spool_entries) >= 8).then_some(()) }
    })
    .await?;
    clinic.stop_agent().await?;

    let q = clinic.config.spool_dir.join("q");
    let mut files: Vec<_> = std::fs::read_dir(&q)?.filter_map(Result::ok).map(|e| e.path()).collect();
    files.sort();
    anyhow::ensure!(files.len() == 8, "expected 8 spooled records, found {files:?}");
    for f in &files {
        let bytes = std::fs::read(f)?;
        assert!(!bytes.windows("张卫国".len()).any(|w| w == "张卫国".as_bytes()), "{} holds plaintext", f.display());
    }
    // Record 1 gets a flipped byte, records 4 and 6 are swapped, record 7 is cut short.
    let mut b = std::fs::read(&files[1])?;
    let mid = b.len() / 2;
    b[mid] ^= 0x01;
    std::fs::write(&files[1], b)?;
    let (r4, r6) = (std::fs::read(&files[4])?, std::fs::read(&files[6])?);
    std::fs::write(&files[4], r6)?;
    std::fs::write(&files[6], r4)?;
    let r7 = std::fs::read(&files[7])?;
    std::fs::write(&files[7], &r7[..r7.len() - 5])?;

    clinic.config.broker = hub.broker_url.clone();
    clinic.start_agent().await?;
    let api = hub.api.clone();
    let lines = wait_for("the untouched lines at the hub", WAIT, || {
        let api = api.clone();
        async move {
            let out = api.device_output("cart-rest").await.ok()?;
            (out.len() >= 4).then_some(out)
        }
    })
    .await?;
    clinic.wait_drained(WAIT).await?;
    let mut got: Vec<String> = lines.iter().filter_map(|l| l["line"].as_str().map(str::to_string)).collect();
    got.sort();
    let expected: Vec<String> = [0, 2, 3, 5].iter().map(|i| format!("记录 {i}: 病人 张卫国")).collect();
    assert_eq!(got, expected, "exactly the untouched records arrive");
    assert_eq!(AgentStats::get(&clinic.stats.spool_tampered), 4, "the agent counts every rejected record");
    let corrupt = std::fs::read_dir(clinic.config.spool_dir.join("corrupt"))?.count();
    assert_eq!(corrupt, 4, "the rejected records are kept in quarantine for the operator");
    // The agent says so on its status topic, and the hub's device list shows it.
    let problem = wait_for("the hub to show the agent's problem", WAIT, || {
        let api = api.clone();
        async move {
            let devices = api.devices().await.ok()?;
            let dev = devices.into_iter().find(|d| d["device_id"] == "cart-rest")?;
            dev["last_problem"].as_str().filter(|p| p.contains("failed authentication")).map(str::to_string)
        }
    })
    .await?;
    eprintln!("tampered spool: 4 of 8 records rejected at the agent, 4 delivered; hub shows {problem:?}");
    clinic.shutdown(&hub.broker_url).await?;
    hub.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_hub_database_files_hold_no_patient_name_identity_number_or_waveform() -> anyhow::Result<()> {
    let _one = ONE_AT_A_TIME.lock().await;
    init_logs();
    let tmp = tempfile::tempdir()?;
    let hub = HubHandle::start(&tmp.path().join("hub"), county::test_broker()?).await?;
    let clinic = Clinic::start(&tmp.path().join("clinics"), "xz-db", "cart-db", &hub).await?;
    let rec = records::ptb_12_lead()?;
    let mut visit = sim::demo_visit(0);
    visit.name = "张卫国".into();
    visit.patient_id = "330102195001011234".into();
    visit.question = "胸闷三天，请会诊（张卫国）".into();
    let acquired = now_ms();
    let (_, sent) = clinic.cart(move |c| c.study(&rec, 0, 10_000, &visit, acquired)).await?;
    clinic.print("病人: 张卫国  ID: 330102195001011234  12导联 10 s 采集完成")?;
    let api = hub.api.clone();
    let row = wait_for("the study in the queue", WAIT, || {
        let api = api.clone();
        async move { api.queue().await.ok()?.into_iter().find(|s| s["patient_name"] == "张卫国") }
    })
    .await?;
    let uid = uid_of(&row).to_string();
    wait_for("the printed line", WAIT, || {
        let api = api.clone();
        async move { api.device_output("cart-db").await.ok().filter(|o| !o.is_empty()) }
    })
    .await?;
    api.claim(&uid).await?;
    api.report(&uid, "窦性心律（张卫国）", "未见异常").await?;

    // The console still shows everything.
    assert_eq!(row["patient_id"], "330102195001011234");
    assert!(row["question"].as_str().unwrap_or_default().contains("胸闷"));
    let detail = api.study(&uid).await?;
    let leads = detail["leads"].as_array().context("leads")?;
    let lead_ii = ints(&leads[1]["samples"]);
    let expected: Vec<i32> = sent[1].iter().map(|v| i32::from(*v)).collect();
    assert_eq!(lead_ii, expected, "the waveform reads back sample for sample");
    let out = api.device_output("cart-db").await?;
    assert!(out[0]["line"].as_str().unwrap_or_default().contains("张卫国"));

    let data = &hub.data_dir;
    let files: Vec<_> = ["yilian.db", "yilian.db-wal", "images/images.db", "images/images.db-wal"]
        .iter()
        .map(|f| data.join(f))
        .collect();
    assert!(files[0].exists() && files[1].exists());
    // The compressed lead as the cart sent it, and the raw samples, in any run of 48 bytes.
    let encoded = yilian_protocol::codec::encode(&lead_ii).data;
    let raw: Vec<u8> = sent[1].iter().flat_map(|v| v.to_le_bytes()).collect();
    let checks: [(&str, &[u8]); 6] = [
        ("the patient's name", "张卫国".as_bytes()),
        ("the identity number", b"330102195001011234"),
        ("the question", "胸闷三天".as_bytes()),
        ("the report text", "窦性心律（张卫国）".as_bytes()),
        ("a run of the compressed waveform", &encoded[encoded.len() / 2..encoded.len() / 2 + 48]),
        ("a run of the raw samples", &raw[raw.len() / 2..raw.len() / 2 + 48]),
    ];
    for (what, needle) in checks {
        let hits = found_in(&files, needle);
        assert!(hits.is_empty(), "{what} is readable in {hits:?}");
    }
    eprintln!(
        "database files {:?}: no name, identity number, question, report text or waveform in plaintext",
        files
            .iter()
            .filter(|f| f.exists())
            .map(|f| std::fs::metadata(f).map(|m| m.len()).unwrap_or(0))
            .collect::<Vec<_>>()
    );
    clinic.shutdown(&hub.broker_url).await?;
    hub.stop().await
}
