//! Canary patient data: a patient whose name, identity number and question are canaries goes
//! through every path the county has (the cart's serial line and printer port, a cart file in
//! the inbox with the patient's name as its file name, a damaged file so named, a DICOM study
//! from a modality), is viewed, claimed, exported, downloaded and reported at the hub; then not
//! one log line, of the agent process or of this process (the hub), holds a canary.

use crate::common::*;
use crate::dicomgen;
use crate::imaging::{complete_at_hub, node_addr, storescu};
use anyhow::Context;
use std::path::{Path, PathBuf};
use std::time::Duration;
use yilian::county::{self, Clinic, HubHandle, wait_for};
use yilian::{records, sim};
use yilian_protocol::message::{Date, Priority, Sex};

/// The canary patient's name (as Chinese carts record it).
const NAME: &str = "金丝雀测试";
/// The canary identity number.
const ID: &str = "CANARY-ID-7Q3";
/// The name as a DICOM modality writes it (ASCII Person Name).
const LATIN: &str = "JINSIQUE";
/// Everything no log may contain.
const CANARIES: [&str; 4] = [NAME, "金丝雀", ID, LATIN];

/// Copies bytes into the inbox the way a cart's PC software does: a temporary name, a rename.
fn drop_bytes(dir: &Path, name: &str, bytes: &[u8]) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".{name}.part"));
    std::fs::write(&tmp, bytes)?;
    let dest = dir.join(name);
    std::fs::rename(&tmp, &dest)?;
    Ok(dest)
}

/// Log lines holding a canary, with the file they are in.
fn canary_lines(path: &Path) -> anyhow::Result<Vec<String>> {
    let text = String::from_utf8_lossy(&std::fs::read(path).with_context(|| path.display().to_string())?).into_owned();
    Ok(text
        .lines()
        .filter(|l| CANARIES.iter().any(|c| l.contains(c)))
        .map(|l| format!("{}: {l}", path.display()))
        .collect())
}

/// Signs in to the console over HTTP; the session cookie.
pub(crate) async fn console_session(
    http: &reqwest::Client,
    base: &str,
    (user, password): (&str, &str),
) -> anyhow::Result<String> {
    let cookie_of = |r: &reqwest::Response, name: &str| {
        r.headers().get_all("set-cookie").iter().filter_map(|v| v.to_str().ok()).find_map(|v| {
            v.strip_prefix(&format!("{name}=")).map(|r| r.split(';').next().unwrap_or_default().to_string())
        })
    };
    let login = http.get(format!("{base}/login")).send().await?;
    let csrf = cookie_of(&login, "yl_login_csrf").context("login csrf cookie")?;
    let signed_in = http
        .post(format!("{base}/login"))
        .header("cookie", format!("yl_login_csrf={csrf}"))
        .form(&[("user", user), ("password", password), ("csrf", csrf.as_str())])
        .send()
        .await?;
    let session = cookie_of(&signed_in, "yl_session").with_context(|| format!("{user} signs in"))?;
    Ok(format!("yl_session={session}"))
}

/// Every `*.log` file under `dir`.
fn logs_under(dir: &Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    for e in std::fs::read_dir(dir)?.flatten() {
        let p = e.path();
        if p.is_dir() {
            logs_under(&p, out)?;
        } else if p.extension().is_some_and(|x| x == "log") {
            out.push(p);
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn canary_patient_data_reaches_the_hub_and_no_log() -> anyhow::Result<()> {
    let _one = ONE_AT_A_TIME.lock().await;
    init_logs();
    let tmp = tempfile::tempdir()?;
    let hub = HubHandle::start(&tmp.path().join("hub"), county::test_broker()?).await?;
    let (site, device) = ("xz-canary", "cart-canary");
    let mut clinic = Clinic::prepare(&tmp.path().join("clinics"), site, device, &hub.hub_key, &hub.broker_url)?;
    hub.enroll(site, device, &clinic.public_key)?;
    // The agent as a real process, logging everything it has (debug).
    clinic.start_agent_process(&[("RUST_LOG", "debug")]).await?;
    let api = hub.api.clone();

    // 1. The cart's serial line: a study of the canary patient; its printer prints the name.
    let rec = records::ptb_12_lead()?;
    let visit = sim::Visit {
        patient_id: ID.into(),
        name: NAME.into(),
        sex: Sex::Female,
        birth_date: Date::new(1951, 3, 7),
        question: format!("{NAME}胸痛两小时，请会诊"),
        priority: Priority::Stat,
    };
    let acquired = now_ms();
    let (id, _) = clinic
        .cart(move |c| -> anyhow::Result<_> {
            c.hello()?;
            c.study(&rec, 0, 5000, &visit, acquired)
        })
        .await?;
    clinic.print(&format!("病人: {NAME}  ID: {ID}  12导联 10 s 采集完成"))?;
    let prefix = format!("{device}-{acquired}-{id}-");
    let row = wait_for("the serial canary study at the hub", WAIT, || {
        let (api, prefix) = (api.clone(), prefix.clone());
        async move { api.studies().await.ok()?.into_iter().find(|s| uid_of(s).starts_with(&prefix)) }
    })
    .await?;
    // The canary really got there: otherwise a clean log would prove nothing.
    assert_eq!(row["patient_name"], NAME);
    assert_eq!(row["patient_id"], ID);
    let serial_uid = uid_of(&row).to_string();
    wait_for("the printed canary line at the hub", WAIT, || {
        let api = api.clone();
        async move {
            let lines = api.device_output(device).await.ok()?;
            lines.iter().any(|l| l["line"].as_str().is_some_and(|t| t.contains(NAME) && t.contains(ID))).then_some(())
        }
    })
    .await?;

    // 2. A cart file named after the patient, with a question beside it.
    let (status, aecg) = api.get_bytes(&format!("/api/studies/{serial_uid}/export/canary.xml")).await?;
    anyhow::ensure!(status == 200, "export: HTTP {status}");
    let file_name = format!("{NAME}_{ID}.xml");
    let urgent = clinic.inbox().join("urgent");
    let (gbk, _, _) = encoding_rs::GBK.encode("金丝雀测试心悸，请会诊");
    drop_bytes(&urgent, &format!("{file_name}.question.txt"), &gbk)?;
    drop_bytes(&urgent, &file_name, &aecg)?;
    let row =
        wait_for("the inbox canary study at the hub", WAIT, || {
            let (api, serial_uid) = (api.clone(), serial_uid.clone());
            async move {
                api.studies().await.ok()?.into_iter().find(|s| uid_of(s) != serial_uid && s["patient_name"] == NAME)
            }
        })
        .await?;
    assert_eq!(row["patient_id"], ID);
    let file_uid = uid_of(&row).to_string();

    // 3. A damaged file, also named after the patient, is refused.
    let damaged = format!("{NAME}-{ID}-损坏.xml");
    drop_bytes(&clinic.inbox().join("routine"), &damaged, b"<AnnotatedECG><broken")?;
    let rejected = clinic.inbox().join("rejected");
    wait_for("the damaged canary file refused", WAIT, || {
        let rejected = rejected.clone();
        async move {
            std::fs::read_dir(&rejected)
                .ok()?
                .flatten()
                .any(|e| e.file_name().to_string_lossy().contains("损坏"))
                .then_some(())
        }
    })
    .await?;

    // 4. A modality pushes a small CT series of the patient to the clinic's DICOM node.
    let study = format!("1.2.826.0.1.3680043.10.1234.{}", now_ms());
    let series = format!("{study}.1");
    let dcm_dir = tmp.path().join("modality");
    std::fs::create_dir_all(&dcm_dir)?;
    let person = format!("{LATIN}^{ID}");
    let mut files = Vec::new();
    for n in 1..=2u32 {
        let sop = format!("{series}.{n}");
        let path = dcm_dir.join(format!("{n}.dcm"));
        dicomgen::write(
            &path,
            &dicomgen::Slice {
                study_uid: &study,
                series_uid: &series,
                sop_uid: &sop,
                number: n,
                rows: 16,
                cols: 16,
                patient_name: &person,
                modality: "CT",
                sop_class: "1.2.840.10008.5.1.4.1.1.2",
            },
        )?;
        files.push(path);
    }
    storescu(node_addr(&clinic)?, "-xe", &files).await?;
    let image = complete_at_hub(&hub, &study, Duration::from_secs(120)).await?;
    assert!(image["patient_name"].as_str().is_some_and(|n| n.contains(LATIN)), "{image}");

    // 5. The specialist views, claims, downloads, exports and reports.
    let detail = api.study(&serial_uid).await?;
    assert!(detail["leads"].as_array().is_some_and(|l| !l.is_empty()));
    let (status, _) = api.get_bytes(&format!("/api/studies/{file_uid}/original/0")).await?;
    assert_eq!(status, 200);
    let (status, _) = api.get_bytes(&format!("/dicomweb/studies/{study}/metadata")).await?;
    assert_eq!(status, 200);
    api.claim(&serial_uid).await?;
    let report = api.report(&serial_uid, &format!("患者{NAME}（{ID}）窦性心律。"), "未见急性ST段抬高。").await?;
    let report_id = report["report_id"].as_str().context("report id")?.to_string();
    let report_file = clinic.dir.join("reports").join(format!("{report_id}.txt"));
    wait_for("the report at the clinic", WAIT, || {
        let f = report_file.clone();
        async move { f.exists().then_some(()) }
    })
    .await?;
    // Every read above is in the audit log, the chain intact.
    let audit = yilian_hub::store::Db::open(&hub.data_dir.join("yilian.db"))?;
    let chain = audit.audit_verify()?;
    assert!(chain.is_ok(), "{chain:?}");
    let actions: Vec<String> = audit.audit_log(200)?.into_iter().map(|a| a.action).collect();
    for want in ["view study", "export", "download original", "read image metadata", "claim", "report"] {
        assert!(actions.iter().any(|a| a == want), "{want} not audited: {actions:?}");
    }
    drop(audit);
    // Over real TCP: the county's security officer reads the log, with each entry's source
    // address; the county IT admin may not.
    let http = hub.http_client()?.redirect(reqwest::redirect::Policy::none()).build()?;
    let base = hub.base_url.clone();
    let admin = console_session(&http, &base, county::DEMO_LOGIN).await?;
    let status = http.get(format!("{base}/api/audit")).header("cookie", &admin).send().await?.status();
    assert_eq!(status, 403);
    let auditor = console_session(&http, &base, county::DEMO_AUDITOR).await?;
    let page = http.get(format!("{base}/audit")).header("cookie", &auditor).send().await?;
    assert_eq!(page.status(), 200);
    assert!(page.text().await?.contains("审计链完整"));
    let entries: Vec<serde_json::Value> =
        http.get(format!("{base}/api/audit")).header("cookie", &auditor).send().await?.json().await?;
    let from_here = |e: &serde_json::Value| e["source"].as_str().is_some_and(|s| s.starts_with("127.0.0.1:"));
    assert!(entries.iter().any(|e| e["action"] == "sign in" && e["user"] == "auditor" && from_here(e)), "{entries:?}");
    assert!(entries.iter().any(|e| e["action"] == "read audit log" && e["result"] == "denied" && from_here(e)));
    assert!(entries.iter().any(|e| e["action"] == "view study" && e["role"] == "api" && from_here(e)));

    clinic.stop_agent_process().await?;
    hub.stop().await?;

    // Every log: the agent process's, and this process's (the hub ran here).
    let mut logs = vec![inprocess_log_path()];
    logs_under(tmp.path(), &mut logs)?;
    let agent_log = logs.iter().find(|p| p.file_name().is_some_and(|n| n == "agent-1.log")).context("agent log")?;
    let agent_text = std::fs::read_to_string(agent_log)?;
    // The logs did record these events (so a clean scan is not an empty one), with the file
    // names as keyed hashes.
    for want in ["study assembled", "cart file read", "cart file rejected", "instance stored", "report received", "fh:"]
    {
        assert!(agent_text.contains(want), "the agent log has no {want:?}:\n{agent_text}");
    }
    let hub_text = std::fs::read_to_string(inprocess_log_path())?;
    assert!(hub_text.contains("report signed") && hub_text.contains("study viewed"), "hub log too thin");
    let mut found = Vec::new();
    for log in &logs {
        found.extend(canary_lines(log)?);
    }
    assert!(found.is_empty(), "canary patient data in the logs:\n{}", found.join("\n"));
    // Kept when the test fails, for reading; tests after this one write to an unlinked file.
    let _ = std::fs::remove_file(inprocess_log_path());
    Ok(())
}
