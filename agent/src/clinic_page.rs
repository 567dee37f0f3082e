//! The clinic page: a small local web page on the clinic PC that shows what the agent holds and
//! where it is going: each ECG study's journey (recorded, stored at the hub, claimed, reported,
//! delivered, printed) with its warnings and printable report, critical results with an alarm
//! until a named clinician acknowledges them (name and PIN), the agent's own health (hub
//! reachable, spool backlog, disk), image studies, instances set aside as conflicts, and cart
//! files refused with their reason. It refreshes itself every two seconds without a reload, and
//! needs nothing from the internet or the hub to show what is pending.
//!
//! Simplified Chinese by default, English with `?lang=en`. It listens on the clinic PC only
//! (`127.0.0.1` by default); a change needs the page's own token, so another site cannot make the
//! browser post one.

use crate::clinicians::Roster;
use crate::config::AgentConfig;
use crate::dicom_node::{self, ReadyStudy};
use crate::journey::{Journey, Journeys};
use crate::stats::AgentStats;
use crate::uplink::Outgoing;
use axum::Router;
use axum::extract::{Form, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use std::fmt::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use yilian_protocol::message::{CriticalAck, Lane, Payload, Priority};

/// What the page shares with the running agent.
#[derive(Debug, Clone)]
pub struct Local {
    /// Each study's journey.
    pub journeys: Arc<Journeys>,
    /// The agent's counters (link, spool).
    pub stats: Arc<AgentStats>,
    /// The uplink, for acknowledgements of critical results.
    pub tx: mpsc::Sender<Outgoing>,
}

#[derive(Clone)]
struct PageState {
    cfg: Arc<AgentConfig>,
    token: Arc<String>,
    local: Local,
    roster: Arc<Roster>,
}

#[derive(Deserialize)]
struct LangQuery {
    lang: Option<String>,
    /// A message to show once (after a form).
    msg: Option<String>,
    /// True when `msg` reports a failure.
    err: Option<String>,
}

#[derive(Deserialize)]
struct PriorityForm {
    priority: String,
    token: String,
}

#[derive(Deserialize)]
struct OverrideForm {
    study: String,
    reason: String,
    clinician: String,
    pin: String,
    token: String,
    #[serde(default)]
    lang: String,
}

#[derive(Deserialize)]
struct AckForm {
    clinician: String,
    pin: String,
    token: String,
    #[serde(default)]
    lang: String,
}

/// Studies shown on the page, newest first.
const RECENT: usize = 50;

/// Serves the page on `listen` until `shutdown`.
pub async fn run(listen: &str, cfg: AgentConfig, local: Local, shutdown: CancellationToken) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    info!(addr = %listener.local_addr()?, "clinic page listening");
    let token = {
        use ring::rand::SecureRandom;
        let mut b = [0u8; 16];
        ring::rand::SystemRandom::new().fill(&mut b).map_err(|_| std::io::Error::other("no randomness"))?;
        hex::encode(b)
    };
    let roster = Arc::new(Roster::new(cfg.clinic_page.as_ref().map(|p| p.clinicians.clone()).unwrap_or_default()));
    if roster.names().next().is_none() {
        warn!(
            "no clinicians listed under [clinic_page]: nobody here can acknowledge a critical result (add them with `yilian-agent clinician-pin`)"
        );
    }
    let state = PageState { cfg: Arc::new(cfg), token: Arc::new(token), local, roster };
    let app = Router::new()
        .route("/", get(page))
        .route("/live", get(live))
        .route("/api/journeys", get(journeys_json))
        .route("/images/{folder}/priority", post(set_priority))
        .route("/critical/{report}/ack", post(acknowledge))
        .route("/quality/override", post(override_quality))
        .route("/reports/{file}", get(report_pdf))
        .with_state(state);
    axum::serve(listener, app).with_graceful_shutdown(shutdown.cancelled_owned()).await
}

fn t<'a>(en: bool, zh: &'a str, english: &'a str) -> &'a str {
    if en { english } else { zh }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&#39;")
}

/// Clinic time (China Standard Time, UTC+8): `HH:MM:SS` today, `MM-DD HH:MM` before.
fn when(ms: i64, now_ms: i64) -> String {
    use jiff::tz::{self, TimeZone};
    let zone = TimeZone::fixed(tz::offset(8));
    let at = |ms: i64| jiff::Timestamp::from_millisecond(ms).ok().map(|t| t.to_zoned_datetime(zone.clone()));
    match (at(ms), at(now_ms)) {
        (Some(t), Some(now)) if t.date() == now.date() => t.strftime("%H:%M:%S").to_string(),
        (Some(t), _) => t.strftime("%m-%d %H:%M").to_string(),
        _ => String::new(),
    }
}

async fn page(State(s): State<PageState>, Query(q): Query<LangQuery>) -> Response {
    let en = q.lang.as_deref() == Some("en");
    let flash = q.msg.map(|m| (m, q.err.is_some()));
    let st = s.clone();
    match tokio::task::spawn_blocking(move || shell(&st, en, flash)).await {
        Ok(html) => Html(html).into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

async fn live(State(s): State<PageState>, Query(q): Query<LangQuery>) -> Response {
    let en = q.lang.as_deref() == Some("en");
    match tokio::task::spawn_blocking(move || render_live(&s, en)).await {
        Ok(html) => ([(axum::http::header::CACHE_CONTROL, "no-store")], Html(html)).into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// The journeys and the agent's health as JSON (for the clinic's own tools and the tests).
async fn journeys_json(State(s): State<PageState>) -> Response {
    match tokio::task::spawn_blocking(move || {
        let p = s.local.journeys.page(RECENT, crate::clock::now_ms());
        serde_json::json!({ "health": health(&s, &p.recent), "alarms": p.alarms, "retakes": p.retakes, "studies": p.recent })
    })
    .await
    {
        Ok(v) => axum::Json(v).into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

const SCRIPT: &str = r#"<script>
(() => {
  const live = document.getElementById('live');
  const status = document.getElementById('link');
  const lang = new URLSearchParams(location.search).get('lang') === 'en' ? 'en' : 'zh';
  const title = document.title;
  let last = live.innerHTML, alarmed = false;
  function beep() {
    try {
      const a = new AudioContext(), o = a.createOscillator();
      o.frequency.value = 880; o.connect(a.destination); o.start(); o.stop(a.currentTime + 0.6);
    } catch (e) {}
  }
  async function refresh() {
    try {
      const r = await fetch('/live?lang=' + lang, { cache: 'no-store' });
      if (!r.ok) throw new Error(r.status);
      const html = await r.text();
      // Never replace a form someone is filling in (a PIN being typed).
      const busy = [...live.querySelectorAll('input[type=password]')].some(i => i.value) ||
        (document.activeElement && live.contains(document.activeElement) && document.activeElement.closest('form'));
      if (html !== last && !busy) { live.innerHTML = html; last = html; }
      status.textContent = '';
    } catch (e) {
      status.textContent = lang === 'en' ? 'The agent on this PC is not answering.' : '本机代理程序无响应。';
    }
    const alarms = live.querySelectorAll('.alarm').length;
    document.title = (alarms ? '⚠ ' : '') + title;
    if (alarms && !alarmed) beep();
    alarmed = alarms > 0;
    setTimeout(refresh, 2000);
  }
  setTimeout(refresh, 2000);
})();
</script>"#;

fn shell(s: &PageState, en: bool, flash: Option<(String, bool)>) -> String {
    let cfg = &s.cfg;
    let mut out = format!(
        r#"<!doctype html><html lang="{}"><head><meta charset="utf-8"><title>{}</title>
<style>body{{font-family:sans-serif;margin:1.5em}}table{{border-collapse:collapse;margin-bottom:1em}}td,th{{border:1px solid #ccc;padding:.3em .6em;text-align:left;vertical-align:top}}
.warn{{color:#b00}}.ok{{color:#070}}.stage.done{{background:#e8f5e9}}.stage.pending{{color:#999}}
.alarm{{border:3px solid #c00;background:#fff0f0;padding:.8em;margin:.8em 0;animation:blink 1s step-start infinite alternate}}
.retake{{border:3px solid #d80;background:#fff8e8;padding:.8em;margin:.8em 0}}
@keyframes blink{{50%{{border-color:#fbb}}}}.flash{{padding:.5em;background:#eef}}.flash.bad{{background:#fdd}}</style></head><body>
<p><a href="?lang=zh">中文</a> <a href="?lang=en">English</a> <span id="link" class="warn"></span></p><h1>{} · {} / {}</h1>"#,
        if en { "en" } else { "zh-CN" },
        t(en, "医联 · 卫生院", "Yilian · clinic"),
        t(en, "医联", "Yilian"),
        esc(&cfg.site),
        esc(&cfg.device)
    );
    if let Some((msg, bad)) = flash {
        let _ = write!(out, r#"<p class="flash{}">{}</p>"#, if bad { " bad" } else { "" }, esc(&msg));
    }
    let _ = write!(out, r#"<main id="live">{}</main>{SCRIPT}</body></html>"#, render_live(s, en));
    out
}

/// Everything that changes: rendered for the first load and for every refresh.
fn render_live(s: &PageState, en: bool) -> String {
    let cfg = &s.cfg;
    let now = crate::clock::now_ms();
    let p = s.local.journeys.page(RECENT, now);
    let mut out = alarms(s, &p.alarms, en, now);
    out += &retakes(s, &p.retakes, en, now);
    out += &health_html(&health(s, &p.recent), en, now);
    out += &studies(&p.recent, &cfg.reports_dir, en, now);
    if let Some(node) = &cfg.dicom {
        out += &images(&node.dir, &s.token, en);
        let conflicts = dicom_node::conflicts(&node.dir);
        if !conflicts.is_empty() {
            let _ = write!(
                out,
                "<h2 class=\"warn\">{}</h2><table>",
                t(en, "冲突（同一实例号、内容不同）", "Conflicts (same instance UID, other content)")
            );
            for c in conflicts {
                let _ = write!(
                    out,
                    "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                    esc(&c.calling_ae),
                    esc(&c.sop_instance_uid),
                    esc(&c.file.display().to_string())
                );
            }
            out += "</table>";
        }
    }
    if let Some(inbox) = &cfg.inbox {
        out += &rejected(&inbox.dir.join("rejected"), en);
    }
    out += &reports(&cfg.reports_dir, en);
    out
}

fn alarms(s: &PageState, open: &[Journey], en: bool, now: i64) -> String {
    let mut out = String::new();
    let names: Vec<&str> = s.roster.names().collect();
    for j in open {
        let Some(c) = &j.critical else { continue };
        let _ = write!(
            out,
            r#"<section class="alarm" data-report="{rid}"><h2 class="warn">{head}</h2>
<p><b>{patient}</b> · {conclusion}</p><p>{by} {specialist} · {recv} {at}</p>"#,
            rid = esc(&c.report_id),
            head = t(en, "⚠ 危急值：请立即处理并确认", "⚠ Critical result: act now and acknowledge"),
            patient = esc(&j.patient_name),
            conclusion = esc(&c.conclusion),
            by = t(en, "诊断医师", "Specialist"),
            specialist = esc(&j.specialist),
            recv = t(en, "收到于", "received"),
            at = when(c.notified_at_ms, now),
        );
        if names.is_empty() {
            let _ = write!(
                out,
                "<p>{}</p>",
                t(
                    en,
                    "本院尚未登记可确认危急值的医生，请联系县信息科。",
                    "No clinician is listed here to acknowledge critical results: ask county IT."
                )
            );
        } else {
            let options: String = names.iter().map(|n| format!("<option>{}</option>", esc(n))).collect();
            let _ = write!(
                out,
                r#"<form method="post" action="/critical/{rid}/ack"><input type="hidden" name="token" value="{token}"><input type="hidden" name="lang" value="{lang}">
<label>{who} <select name="clinician">{options}</select></label> <label>PIN <input type="password" name="pin" inputmode="numeric" autocomplete="off" required></label>
<button>{ack}</button></form>"#,
                rid = esc(&c.report_id),
                token = s.token,
                lang = if en { "en" } else { "zh" },
                who = t(en, "确认医生", "Clinician"),
                ack = t(en, "我已知晓并处理", "I have seen it and will act"),
            );
        }
        out += "</section>";
    }
    out
}

/// Why a clinic sends a flagged study as it is (zh / en), offered on the form.
const OVERRIDE_REASONS: [(&str, &str); 3] = [
    ("患者已离开，无法重做", "the patient has left"),
    ("波形可以判读，无需重做", "the tracing is readable as it is"),
    ("患者病情不允许重做", "the patient's condition does not allow a retake"),
];

fn retakes(s: &PageState, waiting: &[Journey], en: bool, now: i64) -> String {
    let mut out = String::new();
    let names: Vec<&str> = s.roster.names().collect();
    for j in waiting {
        let findings: String = j
            .quality_findings()
            .iter()
            .map(|f| {
                // Each finding is "中文 / English": show the page's language.
                let (zh, english) = f.split_once(" / ").unwrap_or((f, f));
                format!("<li>{}</li>", esc(t(en, zh, english)))
            })
            .collect();
        let _ = write!(
            out,
            r#"<section class="retake" data-study="{uid}"><h2 class="warn">{head}</h2><p><b>{patient}</b> · {recorded} {at}</p><ul>{findings}</ul>"#,
            uid = esc(&j.study_uid),
            head = t(en, "⚠ 请重做心电图", "⚠ Retake this ECG"),
            patient = esc(&j.patient_name),
            recorded = t(en, "采集于", "recorded"),
            at = when(j.recorded_at_ms, now),
        );
        out += &format!(
            "<p>{}</p>",
            t(
                en,
                "检查已照常发送到县中心。请趁患者还在时重做；如不重做，请由医生在下方说明。",
                "The study has gone to the hub as usual. Retake it while the patient is here, or a clinician records below why not."
            )
        );
        if !names.is_empty() {
            let options: String = names.iter().map(|n| format!("<option>{}</option>", esc(n))).collect();
            let reasons: String = OVERRIDE_REASONS
                .iter()
                .map(|(zh, english)| {
                    let both = format!("{zh} / {english}");
                    format!(r#"<option value="{}">{}</option>"#, esc(&both), esc(t(en, zh, english)))
                })
                .collect();
            let _ = write!(
                out,
                r#"<form method="post" action="/quality/override"><input type="hidden" name="study" value="{uid}"><input type="hidden" name="token" value="{token}"><input type="hidden" name="lang" value="{lang}">
<label>{why} <select name="reason">{reasons}</select></label> <label>{who} <select name="clinician">{options}</select></label> <label>PIN <input type="password" name="pin" inputmode="numeric" autocomplete="off" required></label>
<button>{send}</button></form>"#,
                uid = esc(&j.study_uid),
                token = s.token,
                lang = if en { "en" } else { "zh" },
                why = t(en, "不重做的原因", "Why not"),
                who = t(en, "医生", "Clinician"),
                send = t(en, "不重做，按原样判读", "Do not retake: read it as it is"),
            );
        }
        out += "</section>";
    }
    out
}

/// The agent's own state, as the page and the JSON show it.
fn health(s: &PageState, journeys: &[Journey]) -> serde_json::Value {
    let st = &s.local.stats;
    let free = nix::sys::statvfs::statvfs(&s.cfg.spool_dir)
        .ok()
        .map(|v| v.blocks_available().saturating_mul(v.fragment_size()));
    let connected = st.connected.load(Ordering::Relaxed) == 1;
    let silent_since = st.hub_silent_since_ms.load(Ordering::Relaxed) as i64;
    // Two ack timeouts without a word while messages wait: the broker is up, the hub is not.
    let patience_ms = 2 * 1000 * s.cfg.ack_timeout_secs.max(1) as i64;
    let answering = connected && (silent_since == 0 || crate::clock::now_ms() - silent_since < patience_ms);
    serde_json::json!({
        "broker_connected": connected,
        "hub_answering": answering,
        "hub_silent_since_ms": silent_since,
        "hub_heard_at_ms": st.hub_heard_at_ms.load(Ordering::Relaxed),
        "spool_entries": st.spool_entries.load(Ordering::Relaxed),
        "spool_bytes": st.spool_bytes.load(Ordering::Relaxed),
        "disk_free_bytes": free,
        "studies_waiting": journeys.iter().filter(|j| j.stored_at_ms.is_none()).count(),
        "reports_without_pdf": crate::reports::ReportStore::new(&s.cfg.reports_dir).missing_pdfs().len(),
    })
}

fn health_html(h: &serde_json::Value, en: bool, now: i64) -> String {
    let connected = h["broker_connected"].as_bool().unwrap_or(false);
    let answering = h["hub_answering"].as_bool().unwrap_or(false);
    let heard = h["hub_heard_at_ms"].as_i64().filter(|ms| *ms > 0);
    let link = match (connected, answering, heard) {
        (true, true, _) => format!(r#"<span class="ok">{}</span>"#, t(en, "已连接", "connected")),
        (true, false, _) => format!(
            r#"<span class="warn">{} {}</span>"#,
            t(en, "无法连接：中心未应答，最后应答于", "unreachable: the hub is not answering, last heard at"),
            heard.map(|ms| when(ms, now)).unwrap_or_else(|| "—".into())
        ),
        (false, _, Some(ms)) => format!(
            r#"<span class="warn">{} {}</span>"#,
            t(en, "无法连接，最后联系于", "unreachable, last heard at"),
            when(ms, now)
        ),
        (false, _, None) => format!(r#"<span class="warn">{}</span>"#, t(en, "无法连接", "unreachable")),
    };
    let mb = |b: u64| format!("{:.1} MB", b as f64 / 1e6);
    let free = h["disk_free_bytes"].as_u64();
    let disk = match free {
        Some(b) if b < 500_000_000 => {
            format!(r#"<span class="warn">{} {}</span>"#, mb(b), t(en, "（空间不足）", "(low)"))
        }
        Some(b) => mb(b),
        None => "?".into(),
    };
    format!(
        r#"<h2>{}</h2><table id="health"><tr><th>{}</th><td data-health="hub">{link}</td></tr>
<tr><th>{}</th><td data-health="spool">{} · {}</td></tr><tr><th>{}</th><td data-health="waiting">{}</td></tr>
<tr><th>{}</th><td data-health="disk">{disk}</td></tr></table>"#,
        t(en, "本机状态", "This cart"),
        t(en, "县中心", "County hub"),
        t(en, "待发送队列", "Waiting to send"),
        h["spool_entries"].as_u64().unwrap_or(0),
        mb(h["spool_bytes"].as_u64().unwrap_or(0)),
        t(en, "尚未送达中心的检查", "Studies not yet at the hub"),
        h["studies_waiting"].as_u64().unwrap_or(0),
        t(en, "磁盘剩余", "Disk free"),
    )
}

fn studies(list: &[Journey], reports_dir: &std::path::Path, en: bool, now: i64) -> String {
    let stages: [(&str, &str, &str); 6] = [
        ("recorded", "已采集", "recorded"),
        ("stored", "中心已收到", "stored at hub"),
        ("claimed", "医生已接诊", "claimed"),
        ("reported", "已出报告", "reported"),
        ("delivered", "报告已送达", "delivered"),
        ("printed", "已打印", "printed"),
    ];
    let mut rows = String::new();
    for j in list {
        let times = [
            Some(j.recorded_at_ms).filter(|ms| *ms > 0),
            j.stored_at_ms,
            j.claimed_at_ms.or(j.reported_at_ms.filter(|_| !j.claimed_by.is_empty())),
            j.reported_at_ms,
            j.delivered_at_ms,
            j.printed_at_ms,
        ];
        let priority = match j.priority.as_str() {
            "stat" => t(en, "危急", "STAT"),
            "urgent" => t(en, "加急", "urgent"),
            "routine" => t(en, "常规", "routine"),
            _ => "",
        };
        let _ = write!(
            rows,
            r#"<tr data-study="{}"><td>{}<br><small>{}</small></td><td>{priority}</td>"#,
            esc(&j.study_uid),
            esc(&j.patient_name),
            esc(&j.source)
        );
        for ((key, _, _), at) in stages.iter().zip(times) {
            match at {
                Some(ms) => {
                    let _ = write!(rows, r#"<td class="stage done" data-stage="{key}">✓ {}</td>"#, when(ms, now));
                }
                None => {
                    let _ = write!(rows, r#"<td class="stage pending" data-stage="{key}">…</td>"#);
                }
            }
        }
        let mut notes = String::new();
        for w in &j.warnings {
            let _ = write!(notes, r#"<div class="warn">{}</div>"#, esc(w));
        }
        if !j.claimed_by.is_empty() {
            let _ = write!(notes, "<div>{} {}</div>", t(en, "医生", "by"), esc(&j.claimed_by));
        }
        if !j.conclusion.is_empty() {
            let _ = write!(notes, "<div><b>{}</b></div>", esc(&j.conclusion));
        }
        if let Some(c) = &j.critical {
            match (&c.acknowledged_by, c.acknowledged_at_ms) {
                (Some(by), Some(at)) => {
                    let _ = write!(
                        notes,
                        r#"<div class="warn" data-critical="acknowledged">{} · {} {} {}</div>"#,
                        t(en, "危急值", "critical"),
                        esc(by),
                        t(en, "已确认", "acknowledged at"),
                        when(at, now)
                    );
                }
                _ => {
                    let _ = write!(
                        notes,
                        r#"<div class="warn" data-critical="open">{}</div>"#,
                        t(en, "危急值，待确认", "critical, not yet acknowledged")
                    );
                }
            }
        }
        if let Some(id) = &j.report_id {
            let pdf = crate::reports::ReportStore::new(reports_dir).pdf_paths(id).0;
            match pdf.file_name().and_then(|n| n.to_str()).filter(|_| pdf.exists()) {
                Some(name) => {
                    let _ = write!(
                        notes,
                        r#"<div><a class="pdf" href="/reports/{}" target="_blank">{}</a></div>"#,
                        esc(name),
                        t(en, "打开并打印报告 (PDF)", "Open and print the report (PDF)")
                    );
                }
                None => {
                    let _ = write!(
                        notes,
                        "<div>{}</div>",
                        t(en, "PDF 报告待从中心下载", "PDF waiting to be fetched from the hub")
                    );
                }
            }
        } else if j.stored_at_ms.is_none() {
            let _ = write!(notes, "<div>{}</div>", t(en, "等待发送到中心", "waiting to reach the hub"));
        }
        let _ = write!(rows, "<td>{notes}</td></tr>");
    }
    let head: String = stages.iter().map(|(_, zh, english)| format!("<th>{}</th>", t(en, zh, english))).collect();
    format!(
        r#"<h2>{}</h2><table id="journeys"><tr><th>{}</th><th>{}</th>{head}<th>{}</th></tr>{rows}</table>"#,
        t(en, "检查进度", "Studies and where they are"),
        t(en, "患者", "Patient"),
        t(en, "优先级", "Priority"),
        t(en, "说明", "Notes"),
    )
}

async fn acknowledge(State(s): State<PageState>, Path(report): Path<String>, Form(f): Form<AckForm>) -> Response {
    let en = f.lang == "en";
    let back = |msg: &str, bad: bool| back_to_page(en, msg, bad);
    if f.token != *s.token {
        return (StatusCode::FORBIDDEN, "stale page: reload it").into_response();
    }
    let now = crate::clock::now_ms();
    if let Err(e) = s.roster.check(&f.clinician, &f.pin, now) {
        warn!(report = %report, error = %e, "critical result acknowledgement refused");
        return back(&e.to_string(), true);
    }
    let Some(j) = ({
        let (js, r) = (s.local.journeys.clone(), report.clone());
        tokio::task::spawn_blocking(move || {
            js.alarms().into_iter().find(|j| j.critical.as_ref().is_some_and(|c| c.report_id == r))
        })
        .await
        .ok()
        .flatten()
    }) else {
        return back(t(en, "该危急值已确认或不存在", "That critical result is already acknowledged or unknown"), true);
    };
    // To the hub first (spooled, so it survives a restart), then on this page.
    let ack = CriticalAck {
        report_id: report.clone(),
        study_uid: j.study_uid.clone(),
        clinician: f.clinician.clone(),
        acknowledged_at_ms: now,
    };
    let Some(spooled) = spool_stat(&s, Payload::CriticalAck(ack)).await else {
        return back(
            t(en, "代理程序正在停止，请稍后再确认", "The agent is stopping: acknowledge again in a moment"),
            true,
        );
    };
    let (js, r, who) = (s.local.journeys.clone(), report.clone(), f.clinician.clone());
    let recorded = tokio::task::spawn_blocking(move || js.acknowledge(&r, &who, now)).await;
    info!(report = %report, clinician = %f.clinician, spooled = ?spooled, "critical result acknowledged at the clinic");
    match recorded {
        Ok(Ok(_)) | Ok(Err(crate::journey::AckError::Already(_))) => {
            back(&format!("{} {}", t(en, "已确认：", "Acknowledged by"), f.clinician), false)
        }
        Ok(Err(e)) => back(&e.to_string(), true),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// Hands what a clinician decided to the uplink in the STAT lane and waits (up to 10 s) for its
/// spool seq, so it survives a restart before the page records it. None when the agent is
/// stopping; Some(None) when the seq did not come in time (it is still queued).
async fn spool_stat(s: &PageState, payload: Payload) -> Option<Option<u64>> {
    let (seq_tx, mut seq_rx) = mpsc::unbounded_channel();
    let out = Outgoing { lane: Lane::Stat, payload, spooled: Some(seq_tx) };
    s.local.tx.send(out).await.ok()?;
    Some(tokio::time::timeout(Duration::from_secs(10), seq_rx.recv()).await.ok().flatten())
}

fn back_to_page(en: bool, msg: &str, bad: bool) -> Response {
    let mut url = format!("/?lang={}", if en { "en" } else { "zh" });
    url += "&msg=";
    url += &url::form_urlencoded::byte_serialize(msg.as_bytes()).collect::<String>();
    if bad {
        url += "&err=1";
    }
    Redirect::to(&url).into_response()
}

/// A clinician sends a flagged study as it is: recorded here, and told to the hub (spooled,
/// signed) so the specialist reads it knowing the clinic chose not to retake.
async fn override_quality(State(s): State<PageState>, Form(f): Form<OverrideForm>) -> Response {
    let en = f.lang == "en";
    if f.token != *s.token {
        return (StatusCode::FORBIDDEN, "stale page: reload it").into_response();
    }
    let reason = f.reason.trim();
    if reason.is_empty() || reason.chars().count() > 200 {
        return back_to_page(en, t(en, "请选择不重做的原因", "Choose why it is not retaken"), true);
    }
    let now = crate::clock::now_ms();
    if let Err(e) = s.roster.check(&f.clinician, &f.pin, now) {
        warn!(study = %f.study, error = %e, "quality override refused");
        return back_to_page(en, &e.to_string(), true);
    }
    let (js, uid) = (s.local.journeys.clone(), f.study.clone());
    let waiting =
        tokio::task::spawn_blocking(move || js.get(&uid).is_some_and(|j| j.retake_pending(now))).await.unwrap_or(false);
    if !waiting {
        return back_to_page(en, t(en, "该检查不在待重做列表中", "That study is not waiting for a retake"), true);
    }
    let decision = yilian_protocol::message::QualityOverride {
        study_uid: f.study.clone(),
        clinician: f.clinician.clone(),
        reason: reason.to_string(),
        overridden_at_ms: now,
    };
    let Some(spooled) = spool_stat(&s, Payload::QualityOverride(decision)).await else {
        return back_to_page(
            en,
            t(en, "代理程序正在停止，请稍后再试", "The agent is stopping: try again in a moment"),
            true,
        );
    };
    let (js, uid, who, why) = (s.local.journeys.clone(), f.study.clone(), f.clinician.clone(), reason.to_string());
    let recorded = tokio::task::spawn_blocking(move || js.override_quality(&uid, &who, &why, now)).await;
    info!(study = %f.study, clinician = %f.clinician, spooled = ?spooled, "flagged study sent without a retake");
    match recorded {
        Ok(Ok(())) => {
            back_to_page(en, &format!("{} {}", t(en, "已记录，不重做：", "Recorded, no retake:"), f.clinician), false)
        }
        Ok(Err(e)) => back_to_page(en, &e.to_string(), true),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

fn read_study(dir: &std::path::Path) -> Option<ReadyStudy> {
    serde_json::from_slice(&std::fs::read(dir.join("study.json")).ok()?).ok()
}

fn images(root: &std::path::Path, token: &str, en: bool) -> String {
    let mut rows = String::new();
    let states: [(&str, &str, &str); 4] = [
        ("incoming", "接收中", "arriving from the modality"),
        ("ready", "等待发送", "waiting to be sent"),
        ("sending", "发送中", "being sent"),
        ("sent", "中心已确认", "confirmed by the hub"),
    ];
    for (folder, zh, english) in states {
        let Ok(entries) = std::fs::read_dir(root.join(folder)) else { continue };
        for e in entries.flatten().filter(|e| e.path().is_dir()) {
            let name = e.file_name().to_string_lossy().into_owned();
            let study = read_study(&e.path());
            let (patient, modality, count, priority) = match &study {
                Some(s) => (s.patient_name.clone(), s.modality.clone(), s.instances.len(), s.priority.as_str()),
                None => {
                    let n = std::fs::read_dir(e.path())
                        .map(|d| d.flatten().filter(|f| f.path().extension().is_some_and(|x| x == "dcm")).count())
                        .unwrap_or(0);
                    (String::new(), String::new(), n, "")
                }
            };
            let mut state = t(en, zh, english).to_string();
            if folder == "sending"
                && let Ok(p) = std::fs::read(e.path().join("progress.json"))
                && let Ok(v) = serde_json::from_slice::<serde_json::Value>(&p)
            {
                let _ = write!(state, " ({}/{})", v["instance"].as_u64().unwrap_or(0), count);
            }
            let form = if matches!(folder, "ready" | "sending") {
                let options: String = ["stat", "urgent", "routine"]
                    .iter()
                    .map(|p| {
                        let label = match *p {
                            "stat" => t(en, "危急", "STAT"),
                            "urgent" => t(en, "加急", "urgent"),
                            _ => t(en, "常规", "routine"),
                        };
                        format!(
                            r#"<option value="{p}"{}>{label}</option>"#,
                            if *p == priority { " selected" } else { "" }
                        )
                    })
                    .collect();
                format!(
                    r#"<form method="post" action="/images/{}/priority"><input type="hidden" name="token" value="{token}"><select name="priority">{options}</select> <button>{}</button></form>"#,
                    esc(&name),
                    t(en, "更改", "Change")
                )
            } else {
                esc(priority)
            };
            let _ = write!(
                rows,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{count}</td><td>{}</td><td>{form}</td></tr>",
                esc(&name),
                esc(&patient),
                esc(&modality),
                esc(&state)
            );
        }
    }
    format!(
        "<h2>{}</h2><table><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr>{rows}</table>",
        t(en, "影像检查", "Image studies"),
        t(en, "检查号", "Study"),
        t(en, "患者", "Patient"),
        t(en, "类型", "Modality"),
        t(en, "图像数", "Images"),
        t(en, "状态", "State"),
        t(en, "优先级", "Priority"),
    )
}

fn rejected(dir: &std::path::Path, en: bool) -> String {
    let Ok(entries) = std::fs::read_dir(dir) else { return String::new() };
    let mut rows = String::new();
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(file) = name.strip_suffix(".reason.txt") else { continue };
        let reason = std::fs::read_to_string(e.path()).unwrap_or_default();
        let _ = write!(rows, "<tr><td>{}</td><td>{}</td></tr>", esc(file), esc(reason.trim()));
    }
    if rows.is_empty() {
        return String::new();
    }
    format!(
        "<h2 class=\"warn\">{}</h2><table>{rows}</table>",
        t(en, "未能发送的心电文件", "Cart files that were not sent")
    )
}

fn reports(dir: &std::path::Path, en: bool) -> String {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "txt")).collect())
        .unwrap_or_default();
    files.sort();
    files.reverse();
    let items: String = files
        .iter()
        .take(50)
        .filter_map(|p| Some((p, std::fs::read_to_string(p).ok()?)))
        .map(|(p, text)| {
            let pdf = p.with_extension("pdf");
            let link = match pdf.file_name().and_then(|n| n.to_str()).filter(|_| pdf.exists()) {
                Some(name) => format!(
                    r#"<p><a class="pdf" href="/reports/{}" target="_blank">{}</a></p>"#,
                    esc(name),
                    t(en, "打开并打印报告 (PDF)", "Open and print the report (PDF)")
                ),
                None => format!("<p>{}</p>", t(en, "PDF 报告待从中心下载", "PDF waiting to be fetched from the hub")),
            };
            format!("<pre>{}</pre>{link}", esc(&text))
        })
        .collect();
    format!("<h2>{}</h2>{items}", t(en, "诊断报告", "Reports received"))
}

async fn set_priority(State(s): State<PageState>, Path(folder): Path<String>, Form(f): Form<PriorityForm>) -> Response {
    if f.token != *s.token {
        return (StatusCode::FORBIDDEN, "stale page: reload it").into_response();
    }
    let Some(priority) = Priority::parse(&f.priority) else {
        return (StatusCode::BAD_REQUEST, "priority must be stat, urgent or routine").into_response();
    };
    let Some(node) = s.cfg.dicom.clone() else { return StatusCode::NOT_FOUND.into_response() };
    if folder.contains(['/', '\\']) || folder.starts_with('.') {
        return StatusCode::BAD_REQUEST.into_response();
    }
    let done = tokio::task::spawn_blocking(move || -> Result<(), String> {
        for state in ["ready", "sending"] {
            let dir = node.dir.join(state).join(&folder);
            if let Some(mut study) = read_study(&dir) {
                study.priority = priority;
                crate::image_uplink::write_study(&dir, &study).map_err(|e| e.to_string())?;
                info!(study = %study.study_uid, priority = priority.as_str(), "priority changed on the clinic page");
                return Ok(());
            }
        }
        Err("no such study waiting or being sent".into())
    })
    .await;
    match done {
        Ok(Ok(())) => Redirect::to("/").into_response(),
        Ok(Err(e)) => (StatusCode::NOT_FOUND, e).into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// A report's PDF, served only if it still verifies against the hub's signature beside it; the
/// first time marks the study's report as printed.
async fn report_pdf(State(s): State<PageState>, Path(file): Path<String>) -> Response {
    let Some(stem) = file.strip_suffix(".pdf") else { return StatusCode::NOT_FOUND.into_response() };
    if stem.is_empty() || !stem.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        return StatusCode::NOT_FOUND.into_response();
    }
    let cfg = s.cfg.clone();
    let path = cfg.reports_dir.join(&file);
    let (journeys, report_id) = (s.local.journeys.clone(), stem.to_string());
    let checked = tokio::task::spawn_blocking(move || {
        let pdf = crate::report_pdf::verify_file(&cfg, &path)
            .map_err(|e| e.to_string())
            .and_then(|_| std::fs::read(&path).map_err(|e| e.to_string()))?;
        // Opened from this page to print: the journey's last step.
        journeys.printed(&report_id, crate::clock::now_ms());
        Ok::<_, String>(pdf)
    })
    .await;
    match checked {
        Ok(Ok(pdf)) => ([(axum::http::header::CONTENT_TYPE, "application/pdf")], pdf).into_response(),
        Ok(Err(e)) => (StatusCode::CONFLICT, format!("this report PDF does not verify: {e}")).into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}
