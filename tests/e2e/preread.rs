//! The hub's pre-read reorders the queue: a 12-lead study with inferior ST elevation, sent as
//! routine behind two routine studies, jumps to STAT with its reason on the worklist; the
//! specialist, in Chromium (`tests/browser/preread.mjs`), sets it back to what the clinic sent,
//! and the hub does not raise it again.

use crate::common::*;
use anyhow::Context;
use serde_json::Value;
use yilian::county::{self, Clinic, HubHandle, wait_for};
use yilian::{records, sim};
use yilian_protocol::message::Priority;

/// PTB s0010_re with +300 µV of ST elevation added to II, III and aVF after every QRS.
fn inferior_st_elevation() -> anyhow::Result<records::Recording> {
    let mut rec = records::ptb_12_lead()?;
    let fs = f64::from(rec.sample_rate_hz);
    let uv = f64::from(rec.resolution_nv) / 1000.0;
    let leads: Vec<Vec<f64>> = rec.leads.iter().map(|(_, x)| x.iter().map(|&s| f64::from(s) * uv).collect()).collect();
    let views: Vec<&[f64]> = leads.iter().map(Vec::as_slice).collect();
    let beats = yilian_analysis::qrs::detect(&views, fs).beats;
    anyhow::ensure!(beats.len() > 20, "QRS in the PTB record: {}", beats.len());
    let ms = |m: f64| (m * fs / 1000.0) as usize;
    // SCP-ECG lead codes: II 2, III 61, aVF 64.
    for (_, x) in rec.leads.iter_mut().filter(|(c, _)| [2, 61, 64].contains(c)) {
        for &r in &beats {
            for k in ms(20.0)..ms(380.0) {
                let Some(v) = x.get_mut(r + k) else { break };
                let t = k as f64 * 1000.0 / fs;
                let shape = ((t - 20.0) / 20.0).clamp(0.0, 1.0).min(((380.0 - t) / 20.0).clamp(0.0, 1.0));
                *v = (f64::from(*v) + 300.0 * shape / uv).round().clamp(-32768.0, 32767.0) as i16;
            }
        }
    }
    Ok(rec)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_st_elevation_study_sent_as_routine_jumps_the_queue_with_its_reason() -> anyhow::Result<()> {
    let _one = ONE_AT_A_TIME.lock().await;
    init_logs();
    let tmp = tempfile::tempdir()?;
    let hub = HubHandle::start(&tmp.path().join("hub"), county::test_broker()?).await?;
    let mut clinic = Clinic::start(&tmp.path().join("clinics"), "xz-pre", "cart-pre", &hub).await?;
    let normal = records::ptb_12_lead()?;
    let stemi = inferior_st_elevation()?;
    let acquired = now_ms();
    for (n, rec) in [(1usize, normal.clone()), (2, normal), (3, stemi)] {
        let mut visit = sim::demo_visit(n);
        visit.priority = Priority::Routine;
        clinic.cart(move |c| c.study(&rec, 0, 10_000, &visit, acquired + n as i64)).await?;
    }
    let api = hub.api.clone();
    let queue = wait_for("the ST elevation study raised to the top", WAIT, || {
        let api = api.clone();
        async move {
            let q = api.queue().await.ok()?;
            (q.len() == 3 && q[0]["priority"] == "stat").then_some(q)
        }
    })
    .await?;
    let top = &queue[0];
    let uid = uid_of(top).to_string();
    assert_eq!(top["patient_name"], sim::demo_visit(3).name.as_str(), "{top}");
    assert_eq!(top["priority_sent"], "routine");
    let flag = top["preread_flags"].as_array().and_then(|f| f.first()).context("a flag")?;
    assert_eq!(flag["code"], "st_elevation", "{flag}");
    for lead in ["II", "III", "aVF"] {
        assert!(flag["en"].as_str().is_some_and(|e| e.contains(lead)), "{flag}");
    }
    // The two normal studies were read first (in arrival order) and raised nothing.
    for other in &queue[1..] {
        assert_eq!(other["priority"], "routine", "{other}");
        assert_eq!(other["preread_flags"], Value::Array(vec![]), "{other}");
    }
    // The worklist shows why, in the specialist's language, and the way back.
    let http = hub.http_client()?.redirect(reqwest::redirect::Policy::none()).build()?;
    let cookie = crate::canary::console_session(&http, &hub.base_url, county::DEMO_LOGIN).await?;
    let page = http.get(format!("{}/", hub.base_url)).header("cookie", &cookie).send().await?.text().await?;
    assert!(page.contains(r#"data-preread="st_elevation""#) && page.contains("ST段抬高"), "{page}");
    assert!(page.contains(&format!(r#"data-priority="{uid}" data-to="routine""#)), "{page}");
    // The specialist sees the reason and disagrees: back to routine, behind the two that came
    // first; not raised again.
    let stdout = console_browser(&hub, "preread.mjs", &[&sim::demo_visit(3).name]).await?;
    assert!(stdout.lines().any(|l| l.starts_with("reason ⚑ ST段抬高")), "{stdout}");
    assert!(stdout.lines().any(|l| l == "restored"), "{stdout}");
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let q = hub.api.queue().await?;
    assert_eq!(uid_of(&q[2]), uid, "back in arrival order: {q:?}");
    assert_eq!(q[2]["priority"], "routine");
    let (status, _) =
        hub.api.post_raw(&format!("/api/studies/{uid}/priority"), &serde_json::json!({ "priority": "soon" })).await?;
    assert_eq!(status, 422);
    let audit = format!("{:?}", yilian_hub::store::Db::open(&hub.data_dir.join("yilian.db"))?.audit_latest(50)?);
    assert!(audit.contains("preread-raised") && audit.contains(r#"action: "priority""#), "{audit}");
    clinic.stop_agent().await?;
    hub.stop().await
}

/// The quality gate at the clinic: a 12-lead study with V4 off (its electrode fell: the lead
/// reads flat) goes to the hub as usual, and the clinic page asks for a retake at once, naming
/// the lead. A retake of the same patient closes the request; for another flagged study a named
/// clinician (PIN) records why not, and the specialist sees that beside the study's warnings.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flagged_study_asks_for_a_retake_and_an_override_reaches_the_specialist() -> anyhow::Result<()> {
    let _one = ONE_AT_A_TIME.lock().await;
    init_logs();
    let tmp = tempfile::tempdir()?;
    let hub = HubHandle::start(&tmp.path().join("hub"), county::test_broker()?).await?;
    let mut clinic = Clinic::start(&tmp.path().join("clinics"), "xz-qc", "cart-qc", &hub).await?;
    let page_url = clinic.page_url().context("clinic page")?;
    let mut v4_off = records::ptb_12_lead()?;
    let v4 = yilian_protocol::lead::code_of("V4").context("V4")?;
    for (_, x) in v4_off.leads.iter_mut().filter(|(c, _)| *c == v4) {
        x.iter_mut().for_each(|s| *s = 0);
    }
    let acquired = now_ms();
    let journeys = |url: String| async move {
        let v: Value = reqwest::get(format!("{url}/api/journeys")).await.ok()?.json().await.ok()?;
        Some(v)
    };
    // 1: V4 off, then retaken for the same patient.
    let (rec, visit) = (v4_off.clone(), sim::demo_visit(4));
    clinic.cart(move |c| c.study(&rec, 0, 10_000, &visit, acquired)).await?;
    let waiting = wait_for("the retake request on the clinic page", WAIT, || {
        let url = page_url.clone();
        async move {
            let v = journeys(url).await?;
            v["retakes"].as_array().filter(|r| r.len() == 1).map(|r| r[0].clone())
        }
    })
    .await?;
    assert_eq!(waiting["patient_name"], sim::demo_visit(4).name.as_str());
    let warnings = waiting["warnings"].to_string();
    assert!(warnings.contains("V4") && warnings.contains("Quality"), "{warnings}");
    let page = reqwest::get(&page_url).await?.text().await?;
    assert!(page.contains(r#"class="retake""#) && page.contains("请重做心电图") && page.contains("V4"), "{page}");
    let (rec, visit) = (records::ptb_12_lead()?, sim::demo_visit(4));
    clinic.cart(move |c| c.study(&rec, 0, 10_000, &visit, acquired + 60_000)).await?;
    wait_for("the retake to close the request", WAIT, || {
        let url = page_url.clone();
        async move { journeys(url).await?["retakes"].as_array().is_some_and(|r| r.is_empty()).then_some(()) }
    })
    .await?;

    // 2: V4 off for another patient, who has gone home: 王芳 sends it as it is.
    let (rec, visit) = (v4_off, sim::demo_visit(5));
    clinic.cart(move |c| c.study(&rec, 0, 10_000, &visit, acquired + 120_000)).await?;
    let waiting = wait_for("the second retake request", WAIT, || {
        let url = page_url.clone();
        async move { journeys(url).await?["retakes"].as_array().filter(|r| r.len() == 1).map(|r| r[0].clone()) }
    })
    .await?;
    let uid = waiting["study_uid"].as_str().context("uid")?.to_string();
    let page = reqwest::get(&page_url).await?.text().await?;
    let token = page
        .split(r#"name="token" value=""#)
        .nth(1)
        .and_then(|t| t.split('"').next())
        .context("the page's token")?
        .to_string();
    let (clinician, pin) = county::DEMO_CLINICIANS[0];
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build()?;
    let post = |pin: &str| {
        http.post(format!("{page_url}/quality/override")).form(&[
            ("study", uid.as_str()),
            ("reason", "患者已离开，无法重做 / the patient has left"),
            ("clinician", clinician),
            ("pin", pin),
            ("token", token.as_str()),
        ])
    };
    let wrong = post("0000").send().await?;
    let to = wrong.headers().get("location").and_then(|l| l.to_str().ok()).unwrap_or_default().to_string();
    assert!(to.contains("err=1"), "a wrong PIN is refused: {to}");
    let right = post(pin).send().await?;
    assert_eq!(right.status(), 303);
    let to = right.headers().get("location").and_then(|l| l.to_str().ok()).unwrap_or_default().to_string();
    assert!(!to.contains("err=1"), "{to}");
    let v = journeys(page_url.clone()).await.context("journeys")?;
    assert_eq!(v["retakes"], Value::Array(vec![]), "{v}");
    let mine =
        v["studies"].as_array().and_then(|s| s.iter().find(|j| j["study_uid"] == uid.as_str())).context("journey")?;
    assert_eq!(mine["quality_override"]["clinician"], clinician, "{mine}");

    // The specialist reads the study knowing the clinic chose not to retake, and why.
    let http = hub.http_client()?.redirect(reqwest::redirect::Policy::none()).build()?;
    let cookie = crate::canary::console_session(&http, &hub.base_url, county::DEMO_LOGIN).await?;
    let study_page = wait_for("the override at the hub", WAIT, || {
        let (http, url, cookie) = (http.clone(), format!("{}/studies/{uid}", hub.base_url), cookie.clone());
        async move {
            let page = http.get(url).header("cookie", cookie).send().await.ok()?.text().await.ok()?;
            page.contains(&format!(r#"data-override="{clinician}""#)).then_some(page)
        }
    })
    .await?;
    assert!(study_page.contains("卫生院决定不重做") && study_page.contains("患者已离开"), "{study_page}");
    assert!(study_page.contains("V4"), "the gate's finding is there too");
    let audit = format!("{:?}", yilian_hub::store::Db::open(&hub.data_dir.join("yilian.db"))?.audit_latest(50)?);
    assert!(audit.contains("quality-override") && audit.contains(clinician), "{audit}");
    clinic.stop_agent().await?;
    hub.stop().await
}

/// The patient's earlier ECGs beside the new one: a normal ECG recorded a year ago at another
/// clinic and reported, a study at a third clinic matching only on name and birth date, and
/// today's with inferior ST elevation. The study page lists both (one "same patient", one
/// "possible") with the earlier conclusion, says what is new since the last ECG, and draws the
/// earlier one over and beside the new one in Chromium (`tests/browser/priors.mjs`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_patients_earlier_ecg_is_beside_the_new_one_with_what_is_new() -> anyhow::Result<()> {
    let _one = ONE_AT_A_TIME.lock().await;
    init_logs();
    let tmp = tempfile::tempdir()?;
    let hub = HubHandle::start(&tmp.path().join("hub"), county::test_broker()?).await?;
    let mut here = Clinic::start(&tmp.path().join("clinics"), "xz-now", "cart-now", &hub).await?;
    let mut before = Clinic::start(&tmp.path().join("clinics"), "xz-before", "cart-before", &hub).await?;
    let visit = sim::demo_visit(3);
    let now = now_ms();
    let year_ms = 365 * 86_400_000;
    let (rec, v) = (records::ptb_12_lead()?, visit.clone());
    before.cart(move |c| c.study(&rec, 0, 10_000, &v, now - year_ms)).await?;
    // Same name and birth date, another clinic's number for the patient.
    let (rec, mut v) = (records::ptb_12_lead()?, visit.clone());
    v.patient_id = "XZ-0042".into();
    before.cart(move |c| c.study(&rec, 0, 10_000, &v, now - year_ms / 2)).await?;
    let api = hub.api.clone();
    let earlier = wait_for("the two earlier studies", WAIT, || {
        let api = api.clone();
        async move {
            let mut s = api.studies().await.ok()?;
            s.sort_by_key(|x| x["acquired_at_ms"].as_i64());
            (s.len() == 2).then(|| s.iter().map(|x| uid_of(x).to_string()).collect::<Vec<_>>())
        }
    })
    .await?;
    let (old, possible) = (earlier[0].clone(), earlier[1].clone());
    hub.api.claim(&old).await?;
    let body =
        serde_json::json!({ "findings": "心率72次/分", "conclusion": "窦性心律，正常心电图", "critical": false });
    let (status, report) = hub.api.post_raw(&format!("/api/studies/{old}/report"), &body).await?;
    anyhow::ensure!(status == 201, "{report}");
    let stemi = inferior_st_elevation()?;
    let v = visit.clone();
    here.cart(move |c| c.study(&stemi, 0, 10_000, &v, now)).await?;
    let new = wait_for("today's study, pre-read", WAIT, || {
        let api = api.clone();
        async move {
            let q = api.queue().await.ok()?;
            q.iter()
                .find(|s| s["priority"] == "stat" && s["preread_flags"].as_array().is_some_and(|f| !f.is_empty()))
                .map(|s| uid_of(s).to_string())
        }
    })
    .await?;
    let http = hub.http_client()?.redirect(reqwest::redirect::Policy::none()).build()?;
    let cookie = crate::canary::console_session(&http, &hub.base_url, county::DEMO_LOGIN).await?;
    let get = |path: String| {
        let (http, cookie, url) = (http.clone(), cookie.clone(), format!("{}{path}", hub.base_url));
        async move { anyhow::Ok(http.get(url).header("cookie", cookie).send().await?.text().await?) }
    };
    let page = get(format!("/studies/{new}")).await?;
    assert!(page.contains(&format!(r#"data-prior="{old}" data-match="same""#)), "{page}");
    assert!(page.contains(&format!(r#"data-prior="{possible}" data-match="name_and_birth""#)), "{page}");
    assert!(page.contains("窦性心律，正常心电图") && page.contains("xz-before"), "{page}");
    let changes = page.split(r#"class="changes""#).nth(1).context("what is new since the last ECG")?;
    let changes = changes.split("</ul>").next().unwrap_or_default();
    assert!(changes.contains("ST") && changes.contains("II") && changes.contains("aVF"), "{changes}");
    let overlay = get(format!("/studies/{new}?prior={old}&compare=overlay")).await?;
    assert_eq!(overlay.matches(r#"<polyline class="prior""#).count(), 12, "every lead of the prior over the new one");
    let unrelated = get(format!("/studies/{new}?prior=cart-now-1-x&compare=side")).await?;
    assert!(unrelated.contains("所选心电图不是该患者的既往心电图"), "{unrelated}");
    let audit = format!("{:?}", yilian_hub::store::Db::open(&hub.data_dir.join("yilian.db"))?.audit_latest(50)?);
    assert!(audit.contains("view prior study") && audit.contains(&old), "who looked at the earlier ECG is audited");

    let stdout = console_browser(&hub, "priors.mjs", &[&new]).await?;
    for line in ["prior same 窦性心律，正常心电图", "overlay 12", "side 12"] {
        assert!(stdout.lines().any(|l| l == line), "{line}: {stdout}");
    }
    assert!(stdout.lines().any(|l| l.starts_with("new ") && l.contains("ST")), "{stdout}");
    here.stop_agent().await?;
    before.stop_agent().await?;
    hub.stop().await
}
