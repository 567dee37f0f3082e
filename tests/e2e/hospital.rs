//! Results to the hospital. Every signed report goes to the HIS as an HL7 v2.5.1 ORU^R01 over
//! MLLP, here to a listener standing in for the HIS: a refusal (AE) and a lost acknowledgement
//! are retried with the same control id, and once accepted a message is never sent again. Every
//! reported study goes to the PACS by C-STORE, here to dcmtk's `storescp`, retried until the
//! PACS is up, and stored once.

use crate::common::*;
use anyhow::Context;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use yilian::county::{Broker, Clinic, HubHandle, wait_for};
use yilian_hub::hl7::message::{Charset, unescape};
use yilian_hub::hl7::mllp;

/// What the stand-in HIS received: each frame's control id and text, in order.
type Received = Arc<Mutex<Vec<(String, String)>>>;

/// A GB 18030 HIS on loopback: it refuses the first message it sees once (AE), leaves its
/// second delivery unanswered, and accepts from then on.
async fn his_listener() -> anyhow::Result<(std::net::SocketAddr, Received)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let received: Received = Arc::default();
    let got = received.clone();
    tokio::spawn(async move {
        let first: Arc<Mutex<Option<String>>> = Arc::default();
        while let Ok((mut stream, _)) = listener.accept().await {
            let (got, first) = (got.clone(), first.clone());
            tokio::spawn(async move {
                while let Ok(frame) = mllp::read_frame(&mut stream, 1 << 20).await {
                    let text = Charset::Gb18030.decode(&frame);
                    let id =
                        text.split('\r').next().and_then(|msh| msh.split('|').nth(9)).unwrap_or_default().to_string();
                    let seen = {
                        let Ok(mut g) = got.lock() else { return };
                        g.push((id.clone(), text));
                        g.iter().filter(|(i, _)| *i == id).count()
                    };
                    let is_first = {
                        let Ok(mut f) = first.lock() else { return };
                        f.get_or_insert_with(|| id.clone()) == &id
                    };
                    let code = match (is_first, seen) {
                        (true, 1) => "AE|患者编号\\F\\未登记",
                        (true, 2) => continue,
                        _ => "AA",
                    };
                    let ack = format!(
                        "MSH|^~\\&|HIS|县医院|YILIAN|hub|20261207120000||ACK^R01|A{id}|P|2.5.1\rMSA|{code}|{id}\r"
                    );
                    if stream.write_all(&mllp::frame(&Charset::Gb18030.encode(&ack))).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    Ok((addr, received))
}

/// Records the PTB study of 张伟 on `clinic`'s cart and returns its id once it is at the hub.
async fn recorded_study(hub: &HubHandle, clinic: &Clinic, device: &str) -> anyhow::Result<String> {
    let first = record_ptb_study(clinic, device, 0).await?;
    let api = hub.api.clone();
    wait_for("the recorded study", WAIT, || {
        let (api, first) = (api.clone(), first.clone());
        async move { api.studies().await.ok()?.into_iter().map(|s| uid_of(&s).to_string()).find(|u| u.starts_with(&first)) }
    })
    .await
}

async fn outbox(hub: &HubHandle) -> anyhow::Result<Vec<Value>> {
    let (status, v) = hub.api.get_raw("/api/his/outbox").await?;
    anyhow::ensure!(status == 200, "/api/his/outbox: {status} {v}");
    Ok(v.as_array().cloned().unwrap_or_default())
}

/// The unescaped value of field `f` of the `n`th segment `seg` (1-based) of an HL7 message.
fn field(text: &str, seg: &str, n: usize, f: usize) -> String {
    let line = text.split('\r').filter(|l| l.starts_with(&format!("{seg}|"))).nth(n - 1).unwrap_or_default();
    // MSH-1 is the separator itself, so MSH fields are one place further on.
    let at = if seg == "MSH" { f - 1 } else { f };
    unescape(line.split('|').nth(at).unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_reach_the_his_as_hl7_once_each_through_refusals_and_lost_acks() -> anyhow::Result<()> {
    init_logs();
    let tmp = tempfile::tempdir()?;
    let (addr, received) = his_listener().await?;
    let hub = HubHandle::start_with(&tmp.path().join("hub"), Broker::Embedded, |c| {
        let mut his = yilian_hub::hl7::sender::HisConfig::new(&addr.to_string(), "COUNTY-ECG");
        his.charset = Charset::Gb18030;
        his.parties.receiving_facility = "县医院".into();
        his.ack_timeout = Duration::from_secs(1);
        his.retry_max = Duration::from_secs(2);
        his.poll = Duration::from_millis(200);
        c.his = Some(his);
    })
    .await?;
    let mut clinic = Clinic::start(&tmp.path().join("clinics"), "xz-his", "cart-his", &hub).await?;

    // A study recorded on the cart (patient 张伟), and a cart file with the cart's measurements.
    let uid1 = recorded_study(&hub, &clinic, "cart-his").await?;
    let api = hub.api.clone();
    let dir = clinic.inbox().join("routine");
    std::fs::create_dir_all(&dir)?;
    std::fs::copy(yilian::records::shared_data().join("dicom-ecg/waveform_ecg.dcm"), dir.join(".w.part"))?;
    std::fs::rename(dir.join(".w.part"), dir.join("waveform_ecg.dcm"))?;
    let uid2 = wait_for("the cart file's study", WAIT, || {
        let (api, uid1) = (api.clone(), uid1.clone());
        async move { api.studies().await.ok()?.into_iter().map(|s| uid_of(&s).to_string()).find(|u| *u != uid1) }
    })
    .await?;

    let (findings, conclusion) = ("窦性心律 | 心率约75次/分\nPR 0.16 s & QRS正常", "正常心电图");
    for uid in [&uid1, &uid2] {
        hub.api.claim(uid).await?;
        hub.api.report(uid, findings, conclusion).await?;
    }
    let delivered = wait_for("both reports delivered to the HIS", WAIT, || {
        let hub = &hub;
        async move {
            let rows = outbox(hub).await.ok()?;
            (rows.len() == 2 && rows.iter().all(|r| r["state"] == "delivered")).then_some(rows)
        }
    })
    .await?;
    // Anything sent again after an AA would arrive now.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let frames = received.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.clone();
    let mut per_id: BTreeMap<String, usize> = BTreeMap::new();
    for (id, _) in &frames {
        *per_id.entry(id.clone()).or_default() += 1;
    }
    let by_report = |uid: &str| delivered.iter().find(|r| r["study_uid"] == uid).cloned().unwrap_or_default();
    let (r1, r2) = (by_report(&uid1), by_report(&uid2));
    let id1 = r1["control_id"].as_str().context("control id")?.to_string();
    let id2 = r2["control_id"].as_str().context("control id")?.to_string();
    // The first: refused, then unanswered, then accepted; the same bytes each time.
    assert_eq!((per_id.get(&id1), r1["attempts"].as_i64(), r1["ack_code"].as_str()), (Some(&3), Some(3), Some("AA")));
    let copies: Vec<&String> = frames.iter().filter(|(i, _)| *i == id1).map(|(_, t)| t).collect();
    assert!(copies.windows(2).all(|w| w[0] == w[1]), "every retry carries the same message");
    assert_eq!((per_id.get(&id2), r2["attempts"].as_i64()), (Some(&1), Some(1)));
    assert_eq!(frames.len(), 4, "no duplicates once accepted: {per_id:?}");

    // What the HIS holds, decoded from GB 18030.
    let m1 = &copies[0];
    assert_eq!(field(m1, "MSH", 1, 9), "ORU^R01^ORU_R01");
    assert_eq!(field(m1, "MSH", 1, 18), "GB 18030-2000");
    assert_eq!(field(m1, "MSH", 1, 6), "县医院");
    assert_eq!(field(m1, "PID", 1, 5), "张伟");
    assert_eq!(field(m1, "OBR", 1, 2), uid1);
    let obx: Vec<String> = m1.split('\r').filter(|l| l.starts_with("OBX|")).map(str::to_string).collect();
    assert!(obx.iter().any(|l| l.contains("18844-1") && unescape(l).contains(conclusion)), "{obx:?}");
    let ed = obx.iter().find(|l| l.contains("|ED|")).context("the report PDF as an ED segment")?;
    let data = ed.split('|').nth(5).and_then(|v| v.strip_prefix("^AP^PDF^Base64^")).context("ED value")?;
    let pdf = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, data)?;
    assert!(pdf.starts_with(b"%PDF"), "the ED segment holds the PDF");
    let findings_obx = obx.iter().find(|l| l.contains("18842-5")).context("findings")?;
    assert!(findings_obx.contains(r"\F\") && findings_obx.contains(r"\T\") && findings_obx.contains(r"\.br\"));
    let m2 = &frames.iter().find(|(i, _)| *i == id2).context("second message")?.1;
    let vitals: Vec<(String, String, String)> =
        (1..=5).map(|n| (field(m2, "OBX", n, 3), field(m2, "OBX", n, 5), field(m2, "OBX", n, 6))).collect();
    let want = [
        ("8867-4^Heart rate^LN", "61", "/min^/min^UCUM"),
        ("8625-6^P-R Interval^LN", "161", "ms^ms^UCUM"),
        ("8633-0^QRS duration^LN", "75", "ms^ms^UCUM"),
        ("8634-8^Q-T interval^LN", "368", "ms^ms^UCUM"),
        ("8636-3^Q-T interval corrected^LN", "370", "ms^ms^UCUM"),
    ];
    let want: Vec<(String, String, String)> =
        want.iter().map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string())).collect();
    assert_eq!(vitals, want);
    // The printable report: text where pdftotext finds it, the grid to scale in a rendering.
    check_report_pdf(&hub, &uid1, conclusion).await?;

    // The clinic keeps each report's PDF with the hub's signature, and checks it offline.
    let reports = clinic.config.reports_dir.clone();
    let pdf = reports.join("R000001.pdf");
    let p = pdf.clone();
    wait_for("the report PDF at the clinic", WAIT, || {
        let p = p.clone();
        async move { p.exists().then_some(()) }
    })
    .await?;
    let cfg = clinic.write_config()?;
    let agent = yilian::procs::workspace_bin("yilian-agent")?;
    let ok = std::process::Command::new(&agent).arg("verify-report").arg("--config").arg(&cfg).arg(&pdf).output()?;
    let said = String::from_utf8_lossy(&ok.stdout);
    assert!(
        ok.status.success() && said.contains("verified. Report R000001"),
        "{said}{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    // The clinic page links it, and serves it while it verifies.
    let page_url = clinic.page_url().context("clinic page")?;
    let page = reqwest::get(&page_url).await?.text().await?;
    assert!(page.contains(r#"href="/reports/R000001.pdf""#), "{page}");
    let served = reqwest::get(format!("{page_url}/reports/R000001.pdf")).await?;
    assert_eq!(served.headers()["content-type"], "application/pdf");
    assert_eq!(served.bytes().await?.to_vec(), std::fs::read(&pdf)?);
    let text = std::process::Command::new("pdftotext").arg(&pdf).arg("-").output()?;
    assert!(String::from_utf8_lossy(&text.stdout).contains("张伟"), "the clinic's copy is the report");
    let mut bytes = std::fs::read(&pdf)?;
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x20;
    let forged = reports.join("forged.pdf");
    std::fs::write(&forged, &bytes)?;
    std::fs::copy(reports.join("R000001.pdf.sig.json"), reports.join("forged.pdf.sig.json"))?;
    let bad =
        std::process::Command::new(&agent).arg("verify-report").arg("--config").arg(&cfg).arg(&forged).output()?;
    let said = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success() && said.contains("does not match what the hub signed"), "{said}");

    // The same study as FHIR R4: the waveform sample-exact, measurements with units, the report.
    let (status, fhir) = hub.api.get_raw(&format!("/api/studies/{uid2}/fhir")).await?;
    assert_eq!(status, 200, "{fhir}");
    assert_eq!((fhir["resourceType"].as_str(), fhir["type"].as_str()), (Some("Bundle"), Some("collection")));
    let resources: Vec<&Value> = fhir["entry"].as_array().context("entries")?.iter().map(|e| &e["resource"]).collect();
    let of = |t: &str| resources.iter().filter(|r| r["resourceType"] == t).copied().collect::<Vec<_>>();
    let ecg = of("Observation").into_iter().find(|o| o["code"]["coding"][0]["code"] == "11524-6").context("ECG")?;
    let detail = hub.api.study(&uid2).await?;
    let leads = detail["leads"].as_array().context("leads")?;
    let components = ecg["component"].as_array().context("components")?;
    assert_eq!(components.len(), leads.len());
    for (c, l) in components.iter().zip(leads) {
        assert_eq!(c["code"]["text"], l["name"]);
        let sd = &c["valueSampledData"];
        let data: Vec<i32> =
            sd["data"].as_str().unwrap_or_default().split(' ').filter_map(|v| v.parse().ok()).collect();
        assert_eq!(data, ints(&l["samples"]), "lead {}: sample-exact", l["name"]);
        assert_eq!(sd["factor"].as_f64(), l["resolution_nv"].as_f64().map(|nv| nv / 1000.0));
        assert_eq!(sd["origin"]["code"], "uV");
    }
    assert_eq!(components[0]["valueSampledData"]["period"].as_f64(), Some(1.0), "1000 Hz: 1 ms apart");
    let qtc = of("Observation").into_iter().find(|o| o["code"]["coding"][0]["code"] == "8636-3").context("QTc")?;
    assert_eq!(
        (qtc["valueQuantity"]["value"].as_f64(), qtc["valueQuantity"]["code"].as_str()),
        (Some(370.0), Some("ms"))
    );
    let dr = of("DiagnosticReport").into_iter().next().context("report")?;
    assert!(dr["conclusion"].as_str().is_some_and(|c| c.contains(conclusion)));
    assert_eq!(dr["result"].as_array().map(Vec::len), Some(6), "the ECG and its five measurements");
    eprintln!(
        "HIS: {} reports, {} messages sent, {} retries (1 AE, 1 lost ACK), duplicates after acceptance: 0",
        delivered.len(),
        frames.len(),
        frames.len() - delivered.len()
    );
    clinic.stop_agent().await?;
    hub.stop().await
}

/// `dcmdump` (dcmtk, an independent reader) of `tags` in `path`, each value as UTF-8.
fn dcmdump(path: &std::path::Path, tags: &[&str]) -> anyhow::Result<Vec<String>> {
    let mut cmd = std::process::Command::new("dcmdump");
    cmd.args(["-q", "-Un", "+U8"]);
    for t in tags {
        cmd.args(["+P", t]);
    }
    let out = cmd.arg(path).output().context("dcmdump runs (dcmtk installed)")?;
    anyhow::ensure!(out.status.success(), "dcmdump: {}", String::from_utf8_lossy(&out.stderr));
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let v = l.split_once(' ')?.1.trim_start();
            let v = v.split_once(' ')?.1.trim_start();
            Some(match v.strip_prefix('[') {
                Some(rest) => rest.split_once(']').map_or(rest, |(x, _)| x).to_string(),
                None => v.split_whitespace().next().unwrap_or_default().to_string(),
            })
        })
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reported_studies_reach_the_pacs_once_after_it_comes_up() -> anyhow::Result<()> {
    init_logs();
    let tmp = tempfile::tempdir()?;
    let port = yilian_hub::broker::free_port()?;
    let hub = HubHandle::start_with(&tmp.path().join("hub"), Broker::Embedded, |c| {
        let mut p = yilian_hub::pacs::PacsConfig::new(&format!("127.0.0.1:{port}"), "COUNTY-PACS");
        p.timeout = Duration::from_secs(2);
        p.retry_max = Duration::from_secs(2);
        p.poll = Duration::from_millis(200);
        p.report_pdf = true;
        c.pacs = Some(p);
    })
    .await?;
    let mut clinic = Clinic::start(&tmp.path().join("clinics"), "xz-pacs", "cart-pacs", &hub).await?;
    let uid = recorded_study(&hub, &clinic, "cart-pacs").await?;
    let api = hub.api.clone();
    hub.api.claim(&uid).await?;
    hub.api.report(&uid, "窦性心律。", "正常心电图").await?;

    // The PACS is down: the hub keeps the study and says why.
    let pending = wait_for("a failed attempt on the PACS outbox", WAIT, || {
        let api = api.clone();
        async move {
            let rows = api.get_raw("/api/pacs/outbox?undelivered=1").await.ok()?.1;
            rows.as_array()?.iter().find(|r| r["attempts"].as_i64() >= Some(2)).cloned()
        }
    })
    .await?;
    assert!(pending["last_error"].as_str().is_some_and(|e| e.contains("association")), "{pending}");

    let out = tmp.path().join("pacs");
    std::fs::create_dir_all(&out)?;
    let _storescp = tokio::process::Command::new("storescp")
        .args(["-aet", "COUNTY-PACS", "+xa", "-od"])
        .arg(&out)
        .arg(port.to_string())
        .kill_on_drop(true)
        .spawn()
        .context("storescp runs (dcmtk installed)")?;
    let stored = wait_for("the study stored at the PACS", WAIT, || {
        let api = api.clone();
        async move {
            let rows = api.get_raw("/api/pacs/outbox").await.ok()?.1;
            rows.as_array()?.iter().find(|r| r["state"] == "stored").cloned()
        }
    })
    .await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(&out)?.flatten().map(|e| e.path()).collect();
    // storescp names each file by modality: ECG… for the tracing, DOC… for the report.
    files.sort();
    assert_eq!(files.len(), 2, "the tracing and the report, stored once each: {files:?}");
    let doc = dcmdump(&files[0], &["0008,0016", "0010,0010", "0020,000d", "0042,0012", "0042,0015"])?;
    assert_eq!(doc.first().map(String::as_str), Some("1.2.840.10008.5.1.4.1.1.104.1"), "Encapsulated PDF: {doc:?}");
    assert_eq!(
        (doc.get(1).map(String::as_str), doc.get(3).map(String::as_str)),
        (Some("张伟"), Some("application/pdf"))
    );
    let values = dcmdump(&files[1], &["0008,0016", "0008,0018", "0010,0010", "003a,0005"])?;
    let study_of_ecg = dcmdump(&files[1], &["0020,000d"])?;
    assert_eq!(doc.get(2), study_of_ecg.first(), "the report is filed in the tracing's study");
    let pdf_len: usize = doc.get(4).and_then(|v| v.parse().ok()).context("document length")?;
    assert!(pdf_len > 50_000, "a whole report PDF: {pdf_len} bytes");
    assert_eq!(values.first().map(String::as_str), Some("1.2.840.10008.5.1.4.1.1.9.1.1"), "12-lead ECG: {values:?}");
    assert_eq!(values.get(1), stored["sop_instance_uid"].as_str().map(str::to_string).as_ref());
    assert_eq!(values.get(2).map(String::as_str), Some("张伟"), "{values:?}");
    assert!(values.iter().skip(3).all(|v| v == "12"), "12 channels in each multiplex group: {values:?}");
    let attempts = stored["attempts"].as_i64().unwrap_or_default();
    eprintln!(
        "PACS: 1 study (ECG + report PDF of {pdf_len} bytes) stored after {attempts} attempts ({} while the PACS was down), duplicates: 0",
        attempts - 1
    );
    clinic.stop_agent().await?;
    hub.stop().await
}

/// The report PDF of `uid`: `pdftotext` finds the patient, the conclusion and the specialist;
/// `pdftoppm` renders it, and the rendering shows the grid at scale: the 10 s strip 250 mm wide
/// (25 mm/s) and the 1 mV calibration pulses 10 mm tall (10 mm/mV). Both files are kept under
/// `target/tmp/report-artifacts/`.
async fn check_report_pdf(hub: &HubHandle, uid: &str, conclusion: &str) -> anyhow::Result<()> {
    let (status, pdf) = hub.api.get_bytes(&format!("/api/studies/{uid}/report.pdf")).await?;
    anyhow::ensure!(status == 200, "report.pdf: {status} {}", String::from_utf8_lossy(&pdf));
    assert!(pdf.starts_with(b"%PDF"), "a PDF");
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("report-artifacts");
    std::fs::create_dir_all(&dir)?;
    let file = dir.join("report.pdf");
    std::fs::write(&file, &pdf)?;
    let out = std::process::Command::new("pdftotext").args(["-layout"]).arg(&file).arg("-").output()?;
    anyhow::ensure!(out.status.success(), "pdftotext (poppler-utils installed?)");
    let text = String::from_utf8_lossy(&out.stdout);
    for want in ["张伟", conclusion, "演示医师", "25 mm/s", "10 mm/mV", "验证码"] {
        assert!(text.contains(want), "the PDF's text has {want:?}:\n{text}");
    }
    const DPI: f32 = 150.0;
    let png = dir.join("report");
    let out = std::process::Command::new("pdftoppm")
        .args(["-r", "150", "-png", "-singlefile"])
        .arg(&file)
        .arg(&png)
        .output()?;
    anyhow::ensure!(out.status.success(), "pdftoppm: {}", String::from_utf8_lossy(&out.stderr));
    let img = image::open(png.with_extension("png"))?.to_rgb8();
    let mm = |px: usize| px as f32 / DPI * 25.4;
    let pink = |p: &image::Rgb<u8>| p[0] > 200 && i32::from(p[0]) - i32::from(p[1]) > 25 && p[1] < 235;
    let (w, h) = (img.width() as usize, img.height() as usize);
    let pink_cols: Vec<usize> =
        (0..w).filter(|&x| (0..h).filter(|&y| pink(img.get_pixel(x as u32, y as u32))).count() > 40).collect();
    let (left, right) = (*pink_cols.first().context("grid")?, *pink_cols.last().context("grid")?);
    let width_mm = mm(right - left + 1);
    assert!((width_mm - 250.0).abs() < 1.0, "10 s at 25 mm/s is 250 mm, rendered {width_mm:.1} mm");
    // The calibration pulses' left edges: 6 mm left of the grid.
    let x = left - (6.0 / 25.4 * DPI).round() as usize;
    let dark = |y: usize| {
        (x.saturating_sub(1)..=x + 1).any(|cx| img.get_pixel(cx as u32, y as u32).0.iter().all(|c| *c < 110))
    };
    let mut runs = Vec::new();
    let mut y = 0;
    while y < h {
        if dark(y) {
            let start = y;
            while y < h && dark(y) {
                y += 1;
            }
            runs.push(mm(y - start));
        }
        y += 1;
    }
    let pulses: Vec<&f32> = runs.iter().filter(|r| **r > 5.0).collect();
    assert_eq!(pulses.len(), 4, "a calibration pulse per row: {runs:?}");
    assert!(pulses.iter().all(|r| (**r - 10.0).abs() < 0.6), "1 mV is 10 mm: {pulses:?}");
    eprintln!(
        "report PDF: {} ({} bytes), rendered {}; grid {width_mm:.1} mm wide",
        file.display(),
        pdf.len(),
        png.with_extension("png").display()
    );
    Ok(())
}

/// A webhook receiver standing in for the hospital's SMS gateway: keeps each POSTed JSON body.
async fn webhook_receiver() -> anyhow::Result<(String, Arc<Mutex<Vec<Value>>>)> {
    use tokio::io::AsyncReadExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/critical", listener.local_addr()?);
    let got: Arc<Mutex<Vec<Value>>> = Arc::default();
    let keep = got.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            // Headers, then Content-Length bytes of body.
            let body = loop {
                let Ok(n) = stream.read(&mut chunk).await else { break None };
                if n == 0 {
                    break None;
                }
                buf.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&buf).into_owned();
                if let Some((head, rest)) = text.split_once("\r\n\r\n") {
                    let len = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_string())
                        })
                        .and_then(|v| v.parse::<usize>().ok())
                        .unwrap_or(0);
                    if rest.len() >= len {
                        break Some(rest[..len].to_string());
                    }
                }
            };
            if let Some(b) = body.and_then(|b| serde_json::from_str::<Value>(&b).ok())
                && let Ok(mut g) = keep.lock()
            {
                g.push(b);
            }
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").await;
        }
    });
    Ok((url, got))
}

/// Reports study `uid` as critical and returns the report.
async fn critical_report(hub: &HubHandle, uid: &str, conclusion: &str) -> anyhow::Result<Value> {
    hub.api.claim(uid).await?;
    let body = serde_json::json!({
        "findings": "II、III、aVF导联ST段抬高0.3 mV",
        "conclusion": conclusion,
        "critical": true,
    });
    let (status, report) = hub.api.post_raw(&format!("/api/studies/{uid}/report"), &body).await?;
    anyhow::ensure!(status == 201, "{report}");
    Ok(report)
}

/// The closed loop in a real browser (`tests/browser/clinic.mjs` in Debian's headless
/// Chromium): the clinic page, open before the study exists, follows it to delivered; the
/// critical result raises the alarm; 王芳 acknowledges it with her PIN and the hub records it;
/// a second critical result nobody acknowledges is escalated to the webhook once, and only it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_critical_result_is_acknowledged_at_the_clinic_in_chromium_or_escalated() -> anyhow::Result<()> {
    let _one = ONE_AT_A_TIME.lock().await;
    init_logs();
    let (root, out) = browser_dirs()?;
    let tmp = tempfile::tempdir()?;
    let (url, calls) = webhook_receiver().await?;
    let escalate_after = Duration::from_secs(20);
    let hub = HubHandle::start_with(&tmp.path().join("hub"), Broker::Embedded, |c| {
        c.critical.escalate_after = escalate_after;
        c.critical.poll = Duration::from_millis(200);
        c.critical.webhook = Some(url.clone());
    })
    .await?;
    let mut clinic = Clinic::start(&tmp.path().join("clinics"), "xz-crit", "cart-crit", &hub).await?;
    let page_url = clinic.page_url().context("clinic page")?;
    let (clinician, pin) = yilian::county::DEMO_CLINICIANS[0];
    let browser = tokio::process::Command::new("node")
        .arg(root.join("tests/browser/clinic.mjs"))
        .args([page_url.as_str(), "张伟", clinician, pin])
        .arg(&out)
        .kill_on_drop(true)
        .output();
    let first = async {
        let uid = recorded_study(&hub, &clinic, "cart-crit").await?;
        let report = critical_report(&hub, &uid, "急性下壁心肌梗死可能，请立即处理").await?;
        anyhow::Ok((uid, report))
    };
    let (browser, first) = tokio::join!(tokio::time::timeout(Duration::from_secs(180), browser), first);
    let (uid, report) = first?;
    let output = browser.context("the clinic page test took over three minutes")??;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "browser test failed:\n{stdout}\n{stderr}\n(see {})", out.display());
    for line in ["stage delivered", "alarm", "wrong-pin", "acknowledged", "printed", "english"] {
        assert!(stdout.lines().any(|l| l == line), "{line}: {stdout}");
    }
    assert!(stdout.contains("hub 已连接"), "{stdout}");
    for shot in ["clinic-alarm.png", "clinic.png"] {
        assert!(std::fs::metadata(out.join(shot)).map(|m| m.len() > 10_000).unwrap_or(false), "{shot}");
    }

    // The hub has who and when, and an audit entry; the acknowledged result is never escalated.
    let rid = report["report_id"].as_str().context("report id")?.to_string();
    let api = hub.api.clone();
    let acked = wait_for("the acknowledgement at the hub", WAIT, || {
        let (api, rid) = (api.clone(), rid.clone());
        async move {
            let (_, all) = api.get_raw("/api/critical").await.ok()?;
            all.as_array()?.iter().find(|c| c["report_id"] == rid.as_str() && c["acknowledged_by"].is_string()).cloned()
        }
    })
    .await?;
    assert_eq!((acked["acknowledged_by"].as_str(), acked["study_uid"].as_str()), (Some(clinician), Some(uid.as_str())));
    assert!(acked["escalated_at_ms"].is_null(), "{acked}");
    let audit = format!("{:?}", yilian_hub::store::Db::open(&hub.data_dir.join("yilian.db"))?.audit_latest(50)?);
    assert!(audit.contains("critical-acknowledged") && audit.contains(clinician), "{audit}");
    assert!(audit.contains(&format!("{rid} critical")), "marking it is audited too: {audit}");

    // A second critical result, on 黄勇's study, that nobody acknowledges.
    let second = {
        let rec = yilian::records::ptb_12_lead()?;
        let visit = yilian::sim::demo_visit(7);
        let acquired = now_ms();
        let (id, _) = clinic.cart(move |c| c.study(&rec, 0, 10_000, &visit, acquired)).await?;
        let prefix = format!("cart-crit-{acquired}-{id}-");
        wait_for("the second study", WAIT, || {
            let (api, prefix) = (api.clone(), prefix.clone());
            async move {
                api.studies().await.ok()?.into_iter().map(|s| uid_of(&s).to_string()).find(|u| u.starts_with(&prefix))
            }
        })
        .await?
    };
    let report2 = critical_report(&hub, &second, "室性心动过速，请立即处理").await?;
    let posted = wait_for("the escalation at the webhook", WAIT, || {
        let calls = calls.clone();
        async move { calls.lock().ok()?.first().cloned() }
    })
    .await?;
    assert_eq!(posted["event"], "critical-result-unacknowledged");
    assert_eq!(
        (posted["report_id"].clone(), posted["study_uid"].as_str()),
        (report2["report_id"].clone(), Some(second.as_str()))
    );
    assert_eq!((posted["site"].as_str(), posted["patient_name"].as_str()), (Some("xz-crit"), Some("黄勇")));
    assert!(posted["conclusion"].as_str().is_some_and(|c| c.contains("室性心动过速")));
    // Once, and only that one: later polls send nothing, the acknowledged one never goes.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(calls.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.len(), 1);
    let audit = format!("{:?}", yilian_hub::store::Db::open(&hub.data_dir.join("yilian.db"))?.audit_latest(50)?);
    assert!(audit.contains("critical-escalated"), "the escalation is audited");
    // The console's worklist shows the open one escalated and the other acknowledged by name.
    let http = hub.http_client()?.redirect(reqwest::redirect::Policy::none()).build()?;
    let cookie = crate::canary::console_session(&http, &hub.base_url, yilian::county::DEMO_LOGIN).await?;
    let page = http.get(format!("{}/", hub.base_url)).header("cookie", &cookie).send().await?.text().await?;
    assert!(page.contains(r#"class="escalated""#) && page.contains("未确认的危急值"), "{page}");
    assert!(page.contains(&format!(r#"data-acknowledged="{rid}""#)) && page.contains(clinician), "{page}");
    // At the clinic the second alarm is up, and stays up with the hub gone (its broker stays): the
    // page needs nothing from the hub to show what is pending, and says the hub is not answering
    // once a new study waits for it.
    hub.stop().await?;
    let (rec, visit, acquired) = (yilian::records::ptb_12_lead()?, yilian::sim::demo_visit(8), now_ms());
    clinic.cart(move |c| c.study(&rec, 0, 10_000, &visit, acquired)).await?;
    let journeys = wait_for("the clinic page to see the hub gone", WAIT, || {
        let url = format!("{page_url}/api/journeys");
        async move {
            let v: Value = reqwest::get(url).await.ok()?.json().await.ok()?;
            (v["health"]["hub_answering"] == false).then_some(v)
        }
    })
    .await?;
    let alarms = journeys["alarms"].as_array().context("alarms")?;
    assert_eq!(alarms.len(), 1, "{journeys}");
    assert_eq!(alarms[0]["patient_name"], "黄勇");
    assert_eq!(journeys["health"]["studies_waiting"], 1, "周婷's study waits: {journeys}");
    let page = reqwest::get(&page_url).await?.text().await?;
    assert!(page.contains("中心未应答") && page.contains("黄勇") && page.contains("周婷"), "{page}");
    eprintln!(
        "clinic page: journey to delivered, alarm, wrong PIN refused, acknowledged by {clinician}, printed; \
         the unacknowledged one escalated after {} s; screenshots in {}",
        escalate_after.as_secs(),
        out.display()
    );
    clinic.stop_agent().await
}
