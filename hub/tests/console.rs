//! The console over HTTP: sign-in, sessions, roles, CSRF, escaping, audit. Real router, real
//! SQLite; the MQTT client is never connected (reports are not published in these tests).

mod common;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use tower::ServiceExt;
use yilian_hub::http::{router, session};
use yilian_hub::store::{Incoming, Store};
use yilian_protocol::envelope::{Envelope, Header, seal};
use yilian_protocol::keys::SigningKey;
use yilian_protocol::message::*;
use yilian_protocol::topic::{Channel, Topic};

struct Console {
    app: Router,
    store: Store,
    _dir: tempfile::TempDir,
}

async fn console() -> Console {
    let dir = tempfile::tempdir().expect("tmp");
    let store = Store::open_test(dir.path()).expect("store");
    for (id, name, role) in [("li", "李娜", "specialist"), ("it", "县信息科", "admin")] {
        let hash = session::hash_password("correct horse").expect("hash");
        store.call(move |db| db.add_user(id, name, role, &hash, 0)).await.expect("call").expect("user");
    }
    let state = common::app_state(dir.path(), store.clone(), SigningKey::generate().expect("key"));
    Console { app: router(state), store, _dir: dir }
}

async fn send(c: &Console, req: Request<Body>) -> (StatusCode, Vec<(String, String)>, String) {
    let resp = c.app.clone().oneshot(req).await.expect("response");
    let status = resp.status();
    let headers =
        resp.headers().iter().map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().to_string())).collect();
    let body = axum::body::to_bytes(resp.into_body(), 1 << 22).await.expect("body");
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

fn get(path: &str, cookie: &str) -> Request<Body> {
    Request::get(path).header(header::COOKIE, cookie).body(Body::empty()).expect("request")
}

fn cookie_value(headers: &[(String, String)], name: &str) -> Option<String> {
    headers.iter().filter(|(k, _)| k == "set-cookie").find_map(|(_, v)| {
        v.strip_prefix(&format!("{name}=")).map(|rest| rest.split(';').next().unwrap_or_default().to_string())
    })
}

/// Signs in; returns the session cookie header value and the CSRF token of the session.
async fn sign_in(c: &Console, user: &str, password: &str) -> Option<(String, String)> {
    let (_, headers, page) = send(c, get("/login", "")).await;
    let login_csrf = cookie_value(&headers, "yl_login_csrf").expect("login csrf cookie");
    assert!(page.contains(&format!(r#"name="csrf" value="{login_csrf}""#)));
    let form = format!("user={user}&password={}&csrf={login_csrf}", password.replace(' ', "+"));
    let req = Request::post("/login")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::COOKIE, format!("yl_login_csrf={login_csrf}"))
        .body(Body::from(form))
        .expect("request");
    let (status, headers, _) = send(c, req).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let token = cookie_value(&headers, session::SESSION_COOKIE)?;
    let set =
        headers.iter().find(|(k, v)| k == "set-cookie" && v.starts_with(session::SESSION_COOKIE)).map(|x| x.1.clone());
    let set = set.unwrap_or_default();
    assert!(set.contains("HttpOnly") && set.contains("Secure") && set.contains("SameSite=Strict"), "{set}");
    let cookie = format!("{}={token}", session::SESSION_COOKIE);
    let (_, _, page) = send(c, get("/", &cookie)).await;
    let csrf = page.split(r#"<meta name="csrf" content=""#).nth(1)?.split('"').next()?.to_string();
    Some((cookie, csrf))
}

async fn queue_study(c: &Console, name: &str, question: &str) -> String {
    let study = Study {
        study_uid: "cart-1-1-abcd0123".into(),
        patient: Patient {
            id: "p1".into(),
            name: name.into(),
            sex: Sex::Female,
            birth_date: Date::new(1950, 1, 1),
            age_years: None,
        },
        question: question.into(),
        priority: Priority::Stat,
        acquired_at_ms: 1_764_000_000_000,
        sample_rate_hz: 500,
        device_model: "m".into(),
        leads: vec![StudyLead::encode("I", 1000.0, &[1, 2, 3])],
        warnings: vec![],
        median_beat: None,
        annotations: vec![],
        measurements: vec![],
        interpretation: vec![],
        source: None,
    };
    ingest_study(c, study).await
}

async fn ingest_study(c: &Console, study: Study) -> String {
    let key = SigningKey::generate().expect("key");
    let topic = Topic::new("xz", "cart", Channel::Up).expect("topic");
    let mut batch = Vec::new();
    for (i, part) in study.split().expect("split").into_iter().enumerate() {
        let header = Header::new(&key, "cart", i as u64 + 1, 0, Lane::Stat);
        let bytes = seal(&key, header, &topic, &Payload::StudyPart(part)).expect("seal");
        let verified =
            Envelope::decode(&bytes).expect("decode").verify(&key.public_key(), &topic, None).expect("verify");
        batch.push(Incoming { site: "xz".into(), verified, envelope: bytes });
    }
    c.store.call(move |db| db.ingest(&batch, 1_764_000_000_000)).await.expect("call").expect("ingest");
    study.study_uid
}

#[tokio::test]
async fn nothing_works_without_a_session() {
    let c = console().await;
    for path in ["/", "/fleet"] {
        let (status, headers, _) = send(&c, get(path, "")).await;
        assert_eq!(status, StatusCode::SEE_OTHER, "{path}");
        assert!(headers.iter().any(|(k, v)| k == "location" && v == "/login"), "{path}");
    }
    for path in ["/console/worklist", "/api/queue", "/api/studies", "/api/devices", "/api/audit", "/api/stats"] {
        assert_eq!(send(&c, get(path, "")).await.0, StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(send(&c, get(path, "yl_session=forged")).await.0, StatusCode::UNAUTHORIZED, "{path}");
    }
    let post = Request::post("/api/studies/x/claim").body(Body::empty()).expect("request");
    assert_eq!(send(&c, post).await.0, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn wrong_passwords_and_forged_login_forms_are_refused() {
    let c = console().await;
    assert!(sign_in(&c, "li", "wrong password").await.is_none());
    assert!(sign_in(&c, "nobody", "correct horse").await.is_none());
    // A login form posted from elsewhere has no matching token.
    let req = Request::post("/login")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from("user=li&password=correct+horse&csrf=abc"))
        .expect("request");
    assert_eq!(send(&c, req).await.0, StatusCode::FORBIDDEN);
    let audit = c.store.call(|db| db.audit_log(10)).await.expect("call").expect("audit");
    assert!(audit.iter().any(|a| a.action == "sign-in failed"));
}

#[tokio::test]
async fn a_specialist_works_the_queue_but_cannot_reach_the_admin_pages() {
    let c = console().await;
    let (cookie, csrf) = sign_in(&c, "li", "correct horse").await.expect("signed in");
    assert_eq!(send(&c, get("/", &cookie)).await.0, StatusCode::OK);
    assert_eq!(send(&c, get("/fleet", &cookie)).await.0, StatusCode::FORBIDDEN);
    assert_eq!(send(&c, get("/api/audit", &cookie)).await.0, StatusCode::FORBIDDEN);
    let (admin, _) = sign_in(&c, "it", "correct horse").await.expect("admin");
    let (status, _, page) = send(&c, get("/fleet", &admin)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("设备管理"), "Chinese by default");
    let (_, _, page) = send(&c, get("/fleet?lang=en", &admin)).await;
    assert!(page.contains("Fleet"));
    // The audit log is the auditor's alone (see tests/audit.rs).
    assert_eq!(send(&c, get("/api/audit", &admin)).await.0, StatusCode::FORBIDDEN);
    let uid = queue_study(&c, "王芳", "胸痛").await;
    // CSRF: a cookie-borne write without the token is refused, with it it works.
    let claim = |token: Option<&str>| {
        let mut r = Request::post(format!("/api/studies/{uid}/claim")).header(header::COOKIE, &cookie);
        if let Some(t) = token {
            r = r.header("x-csrf-token", t);
        }
        r.body(Body::empty()).expect("request")
    };
    assert_eq!(send(&c, claim(None)).await.0, StatusCode::FORBIDDEN);
    assert_eq!(send(&c, claim(Some("guess"))).await.0, StatusCode::FORBIDDEN);
    assert_eq!(send(&c, claim(Some(&csrf))).await.0, StatusCode::OK);
    // The worklist shows it as mine, with Release, and overdue (it arrived long ago).
    let (_, _, rows) = send(&c, get("/console/worklist", &cookie)).await;
    assert!(rows.contains("data-release") && rows.contains("overdue"), "{rows}");
    let (_, _, others) = send(&c, get("/console/worklist", &admin)).await;
    assert!(others.contains("已认领: li") && !others.contains("data-release"), "{others}");
    // Viewing the study is audited.
    assert_eq!(send(&c, get(&format!("/api/studies/{uid}"), &cookie)).await.0, StatusCode::OK);
    let audit = c.store.call(|db| db.audit_log(20)).await.expect("call").expect("audit");
    assert!(audit.iter().any(|a| a.user == "li" && a.action == "view study" && a.subject == uid), "{audit:?}");
    assert!(audit.iter().any(|a| a.user == "li" && a.action == "claim"));
    // Signing out ends the session.
    let req = Request::post("/logout")
        .header(header::COOKIE, &cookie)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(format!("csrf={csrf}")))
        .expect("request");
    assert_eq!(send(&c, req).await.0, StatusCode::SEE_OTHER);
    assert_eq!(send(&c, get("/", &cookie)).await.0, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn html_in_patient_names_and_questions_is_shown_as_text() {
    let c = console().await;
    let (cookie, _) = sign_in(&c, "li", "correct horse").await.expect("signed in");
    queue_study(&c, "<script>alert(1)</script>张", r#""><img src=x onerror=alert(2)>"#).await;
    for path in ["/", "/console/worklist"] {
        let (_, _, page) = send(&c, get(path, &cookie)).await;
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;张"), "{path}: {page}");
        assert!(!page.contains("<script>alert(1)"), "{path}");
        assert!(!page.contains("<img src=x"), "{path}");
        assert!(page.contains("&quot;&gt;&lt;img src=x onerror=alert(2)&gt;"), "{path}");
    }
}

#[tokio::test]
async fn the_study_page_draws_the_tracing_and_its_form_signs_a_report() {
    let c = console().await;
    let (cookie, csrf) = sign_in(&c, "li", "correct horse").await.expect("signed in");
    let uid = queue_study(&c, "王芳", "胸痛").await;
    let (status, _, page) = send(&c, get(&format!("/studies/{uid}"), &cookie)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains(r#"data-speed-mm-per-s="25""#) && page.contains(r#"data-gain-mm-per-mv="10""#));
    assert!(page.contains(r#"class="trace""#) && page.contains(r#"class="cal""#));
    assert!(page.contains("窦性心律"), "standard statements offered");
    let (_, _, page) = send(&c, get(&format!("/studies/{uid}?speed=50&gain=20"), &cookie)).await;
    assert!(page.contains(r#"data-speed-mm-per-s="50""#) && page.contains(r#"data-gain-mm-per-mv="20""#));
    let audit = c.store.call(|db| db.audit_log(20)).await.expect("call").expect("audit");
    assert!(audit.iter().any(|a| a.user == "li" && a.action == "view study" && a.subject == uid));

    let post = |body: String| {
        Request::post(format!("/studies/{uid}/report"))
            .header(header::COOKIE, &cookie)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(body))
            .expect("request")
    };
    let form = "statement=%E7%AA%A6%E6%80%A7%E5%BF%83%E5%BE%8B&statement=ST%E6%AE%B5%E6%8A%AC%E9%AB%98\
                &findings=%E5%BF%83%E7%8E%8775&conclusion=%E8%AF%B7%E8%BD%AC%E8%AF%8A&urgent=1";
    assert_eq!(send(&c, post(form.to_string())).await.0, StatusCode::FORBIDDEN, "no CSRF token");
    let (status, _, _) = send(&c, post(format!("csrf={csrf}&{form}"))).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let u = uid.clone();
    let (row, _) = c.store.call(move |db| db.study(&u, 0)).await.expect("call").expect("query").expect("study");
    assert!(row.report_id.is_some());
    let reports = c.store.call(|db| db.unreceipted_reports(None)).await.expect("call").expect("reports");
    assert_eq!(reports[0].conclusion, "【危急值 CRITICAL】窦性心律；ST段抬高；请转诊");
    assert_eq!(reports[0].findings, "心率75");
    let (_, _, page) = send(&c, get(&format!("/studies/{uid}"), &cookie)).await;
    assert!(page.contains("已出报告"), "the page shows the report instead of the form");
}

#[tokio::test]
async fn the_monitoring_view_shows_the_latest_stream_one_lead_or_all() {
    let c = console().await;
    let key = SigningKey::generate().expect("key");
    let topic = Topic::new("xz", "monitor-1", Channel::Up).expect("topic");
    let mut batch = Vec::new();
    for (seq, first) in [(1u64, 0u64), (2, 360)] {
        let chunk = Payload::StreamChunk(StreamChunk {
            stream_id: 0,
            sample_rate_hz: 360,
            resolution_nv: 5000,
            first_sample: first,
            start_time_ms: 0,
            leads: vec![
                LeadSamples::encode("II", &(0..360).map(|i| (i % 50) - 25).collect::<Vec<i32>>()),
                LeadSamples::encode("V5", &(0..360).map(|i| (i % 30) - 15).collect::<Vec<i32>>()),
            ],
        });
        let bytes = seal(&key, Header::new(&key, "monitor-1", seq, 0, Lane::Stream), &topic, &chunk).expect("seal");
        let verified =
            Envelope::decode(&bytes).expect("decode").verify(&key.public_key(), &topic, None).expect("verify");
        batch.push(Incoming { site: "xz".into(), verified, envelope: bytes });
    }
    c.store.call(move |db| db.ingest(&batch, 0)).await.expect("call").expect("ingest");
    assert_eq!(send(&c, get("/devices/monitor-1/monitor", "")).await.0, StatusCode::SEE_OTHER);
    let (cookie, _) = sign_in(&c, "li", "correct horse").await.expect("signed in");
    let (status, _, page) = send(&c, get("/devices/monitor-1/monitor", &cookie)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page.matches(r#"class="trace""#).count(), 2, "both leads");
    let (_, _, page) = send(&c, get("/devices/monitor-1/monitor?lead=II", &cookie)).await;
    assert_eq!(page.matches(r#"class="trace""#).count(), 1, "the single-lead view");
    assert!(page.contains("0–720"), "the latest samples: {page}");
    assert_eq!(send(&c, get("/devices/monitor-1/monitor?lead=V9", &cookie)).await.0, StatusCode::NOT_FOUND);
    let audit = c.store.call(|db| db.audit_log(20)).await.expect("call").expect("audit");
    assert!(audit.iter().any(|a| a.action == "view monitoring" && a.subject == "monitor-1"));
}

#[tokio::test]
async fn a_long_cart_file_is_paged_with_derived_leads_marked_and_the_carts_own_reading_shown() {
    let c = console().await;
    let (cookie, _) = sign_in(&c, "li", "correct horse").await.expect("signed in");
    // 30 s at 500 Hz: three pages of 10 s.
    let ii: Vec<i32> = (0..15_000).map(|i| (i % 500) - 250).collect();
    let iii: Vec<i32> = ii.iter().map(|v| v / 2).collect();
    let study = Study {
        study_uid: "cart-1-1764000000000-f0011223344556677".into(),
        patient: Patient {
            id: "7".into(),
            name: "赵敏".into(),
            sex: Sex::Female,
            birth_date: None,
            age_years: Some(58),
        },
        question: String::new(),
        priority: Priority::Routine,
        acquired_at_ms: 1_764_000_000_000,
        sample_rate_hz: 500,
        device_model: "Contec ECG90A".into(),
        leads: vec![
            StudyLead::encode("II", 5000.0, &ii),
            StudyLead { derived: true, ..StudyLead::encode("III", 5000.0, &iii) },
        ],
        warnings: vec!["lead V1: every sample marked invalid by the cart; left out".into()],
        median_beat: None,
        annotations: vec![],
        measurements: vec![Measurement { name: "QTc".into(), value: 443.0, unit: "ms".into() }],
        interpretation: vec!["窦性心律".into()],
        source: Some(SourceFile {
            format: "contec".into(),
            format_version: "ECG90A".into(),
            files: vec![OriginalFile::pack("0000050.ECG", b"raw")],
        }),
    };
    let uid = ingest_study(&c, study).await;
    let (status, _, page) = send(&c, get(&format!("/studies/{uid}?lang=en"), &cookie)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("showing 0–10 s / 30.0 s"), "paged");
    assert!(page.contains("from=10"), "a link to the next page");
    assert!(page.contains(">III*<"), "derived lead marked");
    assert!(page.contains("QTc") && page.contains("443") && page.contains("窦性心律"), "the cart's reading");
    assert!(page.contains(&format!("/api/studies/{uid}/original/0")), "the original file");
    assert!(page.contains("every sample marked invalid"), "the reader's warning");
    assert!(page.contains("赵敏</b> F 58"), "age as the cart recorded it");
    let (_, _, page) = send(&c, get(&format!("/studies/{uid}?from=20&lang=en"), &cookie)).await;
    assert!(page.contains("showing 20–30 s / 30.0 s"));
    let (_, _, page) = send(&c, get(&format!("/studies/{uid}?from=9999&lang=en"), &cookie)).await;
    assert!(page.contains("showing 20–30 s"), "past the end shows the last page");
}

#[tokio::test]
async fn the_monitoring_view_reads_the_rate_of_the_seconds_shown() {
    let c = console().await;
    let key = SigningKey::generate().expect("key");
    let topic = Topic::new("xz", "monitor-2", Channel::Up).expect("topic");
    // 12 s at 500 Hz, a narrow 1 mV QRS every 800 ms (75 /min) in both leads, in 1 s chunks.
    let beat = |i: u64| {
        let k = (i % 400) as i32;
        if k < 20 { 1000 - (k - 10).abs() * 100 } else { 0 }
    };
    let batch: Vec<Incoming> = (0..12u64)
        .map(|s| {
            let samples: Vec<i32> = (s * 500..(s + 1) * 500).map(beat).collect();
            let chunk = Payload::StreamChunk(StreamChunk {
                stream_id: 0,
                sample_rate_hz: 500,
                resolution_nv: 1000,
                first_sample: s * 500,
                start_time_ms: 0,
                leads: vec![LeadSamples::encode("II", &samples), LeadSamples::encode("V5", &samples)],
            });
            let header = Header::new(&key, "monitor-2", s + 1, 0, Lane::Stream);
            let bytes = seal(&key, header, &topic, &chunk).expect("seal");
            let verified =
                Envelope::decode(&bytes).expect("decode").verify(&key.public_key(), &topic, None).expect("verify");
            Incoming { site: "xz".into(), verified, envelope: bytes }
        })
        .collect();
    c.store.call(move |db| db.ingest(&batch, 0)).await.expect("call").expect("ingest");
    let (cookie, _) = sign_in(&c, "li", "correct horse").await.expect("signed in");
    let (status, _, page) = send(&c, get("/devices/monitor-2/monitor?lead=V5", &cookie)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains(r#"data-heart-rate="75""#) && page.contains("心率 75 次/分"), "{page}");
    assert!(page.contains("非诊断"), "{page}");
}
