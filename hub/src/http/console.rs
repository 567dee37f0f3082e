//! The specialists' console: sign-in, the worklist and the fleet page, rendered on the server
//! (every dynamic string goes through [`esc`]), in Simplified Chinese by default and English
//! with `?lang=en`. The worklist refreshes itself from `/console/worklist` every few seconds.

use super::AppState;
use super::actor::{self, Actor, Source};
use super::auth::{new_token, token_hash};
use super::session::{self, Role, Session, cookie, same_token, session_cookie, session_of};
use crate::clock::now_ms;
use crate::store::StudyRow;
use axum::Router;
use axum::extract::{Form, FromRequestParts, Query, State};
use axum::http::header::SET_COOKIE;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use tracing::{info, warn};

/// Default minutes a study may wait before it is overdue, by priority (stat, urgent, routine).
pub const WAIT_TARGETS: [u64; 3] = [10, 30, 24 * 60];
const LOGIN_CSRF_COOKIE: &str = "yl_login_csrf";

/// Escapes text for HTML element content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Page language.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    /// Simplified Chinese (default).
    Zh,
    /// English.
    En,
}

impl Lang {
    fn of(parts: &Parts, query: Option<&str>) -> Self {
        match query.or_else(|| cookie(&parts.headers, "yl_lang")) {
            Some("en") => Lang::En,
            _ => Lang::Zh,
        }
    }

    pub(crate) fn t(self, zh: &'static str, en: &'static str) -> &'static str {
        match self {
            Lang::Zh => zh,
            Lang::En => en,
        }
    }

    fn code(self) -> &'static str {
        match self {
            Lang::Zh => "zh-CN",
            Lang::En => "en",
        }
    }
}

/// Language and session of a page request.
pub struct Page {
    pub(crate) lang: Lang,
    pub(crate) session: Option<Session>,
}

impl FromRequestParts<AppState> for Page {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let lang = Lang::of(parts, parts.uri.query().and_then(lang_param));
        Ok(Page { lang, session: session_of(parts, state).await })
    }
}

/// The `lang` parameter of a query string.
fn lang_param(q: &str) -> Option<&str> {
    q.split('&').find_map(|kv| kv.strip_prefix("lang="))
}

pub(crate) fn layout(lang: Lang, title: &str, s: Option<&Session>, body: &str) -> Html<String> {
    let nav = match s {
        Some(s) => {
            let mut fleet = format!(
                r#"<a href="/imaging">{}</a> <a href="/monitor">{}</a>"#,
                lang.t("影像", "Imaging"),
                lang.t("监护", "Monitoring")
            );
            if s.role == Role::Admin {
                fleet.push_str(&format!(r#" <a href="/fleet">{}</a>"#, lang.t("设备", "Fleet")));
            }
            if s.role == Role::Auditor {
                fleet = format!(r#"<a href="/audit">{}</a>"#, lang.t("审计日志", "Audit log"));
            }
            format!(
                r#"<nav><a href="/">{}</a> {fleet} <span class="who">{}</span>
<form method="post" action="/logout" class="inline"><input type="hidden" name="csrf" value="{}"><button>{}</button></form>
<a href="?lang=zh">中文</a> <a href="?lang=en">English</a></nav>"#,
                lang.t("待诊列表", "Worklist"),
                esc(&s.name),
                esc(&s.csrf),
                lang.t("退出", "Sign out")
            )
        }
        None => r#"<nav><a href="?lang=zh">中文</a> <a href="?lang=en">English</a></nav>"#.to_string(),
    };
    let csrf = s.map(|s| esc(&s.csrf)).unwrap_or_default();
    Html(format!(
        r#"<!doctype html><html lang="{}"><head><meta charset="utf-8"><meta name="csrf" content="{csrf}">
<title>{} · 医联 Yilian</title><style>
body{{font-family:system-ui,"Noto Sans CJK SC",sans-serif;margin:1rem}} table{{border-collapse:collapse;width:100%}}
td,th{{border-bottom:1px solid #ccc;padding:.3rem;text-align:left}} .stat{{color:#b00;font-weight:bold}}
.urgent{{color:#c60}} .overdue{{background:#fee}} .inline{{display:inline}} nav{{margin-bottom:1rem}}
.error{{color:#b00}}</style></head><body>{nav}<h1>{}</h1>{body}</body></html>"#,
        lang.code(),
        esc(title),
        esc(title)
    ))
}

/// The routes of the console.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route("/", get(worklist_page))
        .route("/console/worklist", get(worklist_rows))
        .route("/fleet", get(fleet_page))
        .route("/studies/{uid}", get(study_page))
        .route("/monitor", get(monitor_list))
        .route("/devices/{device}/monitor", get(monitor_page))
        .route("/studies/{uid}/report", post(report_form))
}

async fn login_page(page: Page, Query(q): Query<LoginQuery>) -> Response {
    let lang = page.lang;
    let csrf = new_token().unwrap_or_default();
    let error = if q.failed.is_some() {
        format!(r#"<p class="error">{}</p>"#, lang.t("用户名或密码错误", "Wrong user id or password"))
    } else {
        String::new()
    };
    let body = format!(
        r#"{error}<form method="post" action="/login">
<input type="hidden" name="csrf" value="{csrf}">
<label>{} <input name="user" autocomplete="username" required></label>
<label>{} <input name="password" type="password" autocomplete="current-password" required></label>
<button>{}</button></form>"#,
        lang.t("用户名", "User id"),
        lang.t("密码", "Password"),
        lang.t("登录", "Sign in")
    );
    let mut resp = layout(lang, lang.t("登录", "Sign in"), None, &body).into_response();
    // Double-submit token: the form's hidden field must match this cookie.
    if let Ok(v) =
        HeaderValue::from_str(&format!("{LOGIN_CSRF_COOKIE}={csrf}; Path=/login; HttpOnly; Secure; SameSite=Strict"))
    {
        resp.headers_mut().append(SET_COOKIE, v);
    }
    if let Ok(v) =
        HeaderValue::from_str(&format!("yl_lang={}; Path=/; SameSite=Lax", if lang == Lang::En { "en" } else { "zh" }))
    {
        resp.headers_mut().append(SET_COOKIE, v);
    }
    resp
}

#[derive(Deserialize)]
struct LoginQuery {
    failed: Option<String>,
}

#[derive(Deserialize)]
struct LoginForm {
    user: String,
    password: String,
    csrf: String,
}

async fn login(
    State(s): State<AppState>,
    Source(source): Source,
    headers: HeaderMap,
    Form(f): Form<LoginForm>,
) -> Response {
    let cookie_csrf = cookie(&headers, LOGIN_CSRF_COOKIE).unwrap_or_default();
    if f.csrf.is_empty() || !same_token(&f.csrf, cookie_csrf) {
        return (StatusCode::FORBIDDEN, "missing or wrong CSRF token").into_response();
    }
    let user = f.user.trim().to_string();
    let u = user.clone();
    let found = s.store.call(move |db| db.user(&u)).await.ok().and_then(Result::ok).flatten();
    // Verify even for unknown users, so timing does not tell which ids exist.
    let hash = found.as_ref().map(|(_, _, h)| h.clone()).unwrap_or_else(|| DUMMY_HASH.clone());
    let pw = f.password.clone();
    let ok = tokio::task::spawn_blocking(move || session::verify_password(&hash, &pw)).await.unwrap_or(false);
    let role = found.as_ref().and_then(|(_, r, _)| Role::parse(r)).map_or("", Role::as_str);
    let who = Actor { user: user.clone(), role, source };
    let Some(role) = found.as_ref().and_then(|(_, r, _)| Role::parse(r)).filter(|_| ok) else {
        warn!(user = %user, source = %who.source, "console sign-in failed");
        let _ = actor::record(&s, &who, "sign-in failed", "", "failed", "").await;
        return Redirect::to("/login?failed=1").into_response();
    };
    let Ok(token) = new_token() else { return StatusCode::SERVICE_UNAVAILABLE.into_response() };
    let Ok(csrf) = new_token() else { return StatusCode::SERVICE_UNAVAILABLE.into_response() };
    let (h, u) = (token_hash(&token), user.clone());
    let created = s.store.call(move |db| db.create_session(&h, &u, &csrf, now_ms(), session::SESSION_TTL_MS)).await;
    if !matches!(created, Ok(Ok(()))) || actor::ok(&s, &who, "sign in", "").await.is_err() {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    info!(user = %user, source = %who.source, "console sign-in");
    // An auditor's console is the audit log.
    let home = if role == Role::Auditor { "/audit" } else { "/" };
    let mut resp = Redirect::to(home).into_response();
    if let Ok(v) = HeaderValue::from_str(&session_cookie(&token)) {
        resp.headers_mut().append(SET_COOKIE, v);
    }
    resp
}

/// An argon2 hash of a random password, verified against for unknown users.
static DUMMY_HASH: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| session::hash_password(&new_token().unwrap_or_default()).unwrap_or_default());

#[derive(Deserialize)]
struct CsrfForm {
    csrf: String,
}

async fn logout(State(s): State<AppState>, headers: HeaderMap, session: Session, Form(f): Form<CsrfForm>) -> Response {
    if !same_token(&f.csrf, &session.csrf) {
        return (StatusCode::FORBIDDEN, "missing or wrong CSRF token").into_response();
    }
    if let Some(token) = cookie(&headers, session::SESSION_COOKIE) {
        let h = token_hash(token);
        let _ = s.store.call(move |db| db.delete_session(&h)).await;
    }
    let _ = actor::ok(&s, &session.actor(), "sign out", "").await;
    let mut resp = Redirect::to("/login").into_response();
    if let Ok(v) = HeaderValue::from_str(&session::clear_session_cookie()) {
        resp.headers_mut().append(SET_COOKIE, v);
    }
    resp
}

fn waited(ms: i64, lang: Lang) -> String {
    let m = ms.max(0) / 60_000;
    match (m / 60, lang) {
        (0, Lang::Zh) => format!("{m} 分钟"),
        (0, Lang::En) => format!("{m} min"),
        (h, Lang::Zh) => format!("{h} 小时 {} 分钟", m % 60),
        (h, Lang::En) => format!("{h} h {} min", m % 60),
    }
}

/// A time as the county reads it (UTC+8).
pub fn local_time(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| {
            t.to_zoned_datetime(jiff::tz::TimeZone::fixed(jiff::tz::offset(8)))
                .strftime("%Y-%m-%d %H:%M:%S")
                .to_string()
        })
        .unwrap_or_default()
}

/// Age in whole years at `at_ms` (UTC+8) of someone born on `birth` (`YYYY-MM-DD`).
pub fn age_years(birth: Option<&str>, at_ms: i64) -> Option<i64> {
    let b = jiff::civil::Date::strptime("%Y-%m-%d", birth?).ok()?;
    let at = jiff::Timestamp::from_millisecond(at_ms)
        .ok()?
        .to_zoned_datetime(jiff::tz::TimeZone::fixed(jiff::tz::offset(8)))
        .date();
    let mut years = i64::from(at.year() - b.year());
    if (at.month(), at.day()) < (b.month(), b.day()) {
        years -= 1;
    }
    (years >= 0).then_some(years)
}

/// The worklist's table rows, as `me` sees them.
pub fn rows_html(rows: &[StudyRow], lang: Lang, now: i64, targets_ms: [i64; 3], me: &str) -> String {
    let mut out = String::new();
    for r in rows {
        let rank = match r.priority.as_str() {
            "stat" => 0,
            "urgent" => 1,
            _ => 2,
        };
        let label = match rank {
            0 => lang.t("危急", "STAT"),
            1 => lang.t("加急", "Urgent"),
            _ => lang.t("常规", "Routine"),
        };
        let wait = now - r.received_at_ms;
        let overdue = wait > targets_ms[rank];
        let sex = match r.sex.as_str() {
            "female" => lang.t("女", "F"),
            "male" => lang.t("男", "M"),
            _ => "",
        };
        let age = age_years(r.birth_date.as_deref(), r.acquired_at_ms).map(|a| format!("{a}")).unwrap_or_default();
        let claim = match &r.claimed_by {
            Some(by) if by == me => format!(
                r#"{} <button data-release="{}">{}</button>"#,
                lang.t("我已认领", "claimed by me"),
                esc(&r.study_uid),
                lang.t("放弃", "Release")
            ),
            Some(by) => format!("{} {}", lang.t("已认领:", "claimed by"), esc(by)),
            None => format!(r#"<button data-claim="{}">{}</button>"#, esc(&r.study_uid), lang.t("认领", "Claim")),
        };
        // Why the hub raised it, and the way back to what the clinic sent.
        let mut label = label.to_string();
        if !r.preread_flags.is_empty() {
            let reasons: Vec<String> =
                r.preread_flags.iter().map(|f| esc(if lang == Lang::En { &f.en } else { &f.zh })).collect();
            let codes: Vec<&str> = r.preread_flags.iter().map(|f| f.code.as_str()).collect();
            label += &format!(
                r#"<div class="preread" data-preread="{}">⚑ {} <small>{}</small></div>"#,
                esc(&codes.join(" ")),
                reasons.join("; "),
                lang.t("（预读，非诊断）", "(pre-read, not a diagnosis)")
            );
        }
        if let Some(sent) = r.priority_sent.as_deref().filter(|p| *p != r.priority) {
            let sent_label = match sent {
                "urgent" => lang.t("加急", "urgent"),
                _ => lang.t("常规", "routine"),
            };
            label += &format!(
                r#"<div><button data-priority="{}" data-to="{}">{} {sent_label}</button></div>"#,
                esc(&r.study_uid),
                esc(sent),
                lang.t("恢复为送检优先级：", "Back to the clinic's priority:")
            );
        }
        out.push_str(&format!(
            r#"<tr class="{}{}" data-uid="{}"><td class="{}">{label}</td><td>{}</td><td><a href="/studies/{}">{}</a></td><td>{sex}</td><td>{age}</td><td>{}</td><td>{}{}</td><td>{claim}</td></tr>"#,
            r.priority,
            if overdue { " overdue" } else { "" },
            esc(&r.study_uid),
            r.priority,
            esc(&r.site_id),
            esc(&r.study_uid),
            esc(&r.patient_name),
            esc(&r.question),
            waited(wait, lang),
            if overdue { lang.t(" ⚠ 超时", " ⚠ overdue") } else { "" },
        ));
    }
    out
}

async fn worklist_page(State(s): State<AppState>, page: Page) -> Response {
    let Some(session) = page.session else { return Redirect::to("/login").into_response() };
    let lang = page.lang;
    let rows = match s.store.call(|db| db.queue(now_ms())).await {
        Ok(Ok(r)) => r,
        _ => return StatusCode::SERVICE_UNAVAILABLE.into_response(),
    };
    let all = s.store.call(|db| db.critical_results(false)).await.ok().and_then(Result::ok).unwrap_or_default();
    let day_ago = now_ms() - 24 * 3600 * 1000;
    let (open, acked): (Vec<_>, Vec<_>) = all.into_iter().partition(|c| c.acknowledged_at_ms.is_none());
    let acked: String = acked
        .iter()
        .filter(|c| c.acknowledged_at_ms.is_some_and(|at| at > day_ago))
        .map(|c| {
            format!(
                r#"<li data-acknowledged="{}">{} · {} · {} · {} {} {}</li>"#,
                esc(&c.report_id),
                esc(&c.site_id),
                esc(&c.patient_name),
                esc(&c.conclusion),
                lang.t("已由", "acknowledged by"),
                esc(c.acknowledged_by.as_deref().unwrap_or("")),
                c.acknowledged_at_ms.map(local_time).unwrap_or_default(),
            )
        })
        .collect();
    let acked = if acked.is_empty() {
        String::new()
    } else {
        format!(
            r#"<section class="critical-acked"><h2>{}</h2><ul>{acked}</ul></section>"#,
            lang.t("24小时内已确认的危急值", "Critical results acknowledged in the last 24 hours")
        )
    };
    let critical: String = if open.is_empty() {
        acked
    } else {
        let items: String = open
            .iter()
            .map(|c| {
                format!(
                    r#"<li data-critical="{}" class="{}">{} · {} · {} · {}</li>"#,
                    esc(&c.report_id),
                    if c.escalated_at_ms.is_some() { "escalated" } else { "waiting" },
                    esc(&c.site_id),
                    esc(&c.patient_name),
                    esc(&c.conclusion),
                    if c.escalated_at_ms.is_some() {
                        lang.t("已上报（超时未确认）", "escalated (not acknowledged in time)")
                    } else {
                        lang.t("等待卫生院确认", "waiting for the clinic's acknowledgement")
                    },
                )
            })
            .collect();
        format!(
            r#"<section class="critical"><h2>{}</h2><ul>{items}</ul></section>{acked}"#,
            lang.t("未确认的危急值", "Critical results not acknowledged")
        )
    };
    let head = [
        lang.t("优先级", "Priority"),
        lang.t("卫生院", "Clinic"),
        lang.t("患者", "Patient"),
        lang.t("性别", "Sex"),
        lang.t("年龄", "Age"),
        lang.t("临床问题", "Question"),
        lang.t("已等待", "Waiting"),
        "",
    ]
    .iter()
    .map(|h| format!("<th>{h}</th>"))
    .collect::<String>();
    let body = format!(
        r#"{critical}<table><thead><tr>{head}</tr></thead><tbody id="rows">{}</tbody></table>
<script>
const csrf = document.querySelector('meta[name=csrf]').content;
async function refresh() {{
  const r = await fetch('/console/worklist', {{credentials: 'same-origin'}});
  if (r.ok) document.getElementById('rows').innerHTML = await r.text();
}}
document.addEventListener('click', async (e) => {{
  const d = e.target.dataset || {{}};
  if (d.priority) {{
    await fetch('/api/studies/' + encodeURIComponent(d.priority) + '/priority', {{method: 'POST',
      headers: {{'X-CSRF-Token': csrf, 'Content-Type': 'application/json'}}, credentials: 'same-origin',
      body: JSON.stringify({{priority: d.to}})}});
    return refresh();
  }}
  const [uid, action] = d.claim ? [d.claim, 'claim'] : d.release ? [d.release, 'release'] : [null, null];
  if (!uid) return;
  await fetch('/api/studies/' + encodeURIComponent(uid) + '/' + action, {{method: 'POST', headers: {{'X-CSRF-Token': csrf}}, credentials: 'same-origin'}});
  refresh();
}});
setInterval(refresh, 3000);
</script>"#,
        rows_html(&rows, lang, now_ms(), s.wait_targets_ms, &session.user_id)
    );
    let images = s.store.call(|db| db.image_studies(200)).await.ok().and_then(Result::ok).unwrap_or_default();
    let body = body + &image_rows(&images, lang);
    layout(lang, lang.t("待诊列表", "Worklist"), Some(&session), &body).into_response()
}

async fn worklist_rows(State(s): State<AppState>, page: Page) -> Response {
    let Some(session) = page.session else {
        return (StatusCode::UNAUTHORIZED, "sign in first").into_response();
    };
    match s.store.call(|db| db.queue(now_ms())).await {
        Ok(Ok(rows)) => {
            Html(rows_html(&rows, page.lang, now_ms(), s.wait_targets_ms, &session.user_id)).into_response()
        }
        _ => StatusCode::SERVICE_UNAVAILABLE.into_response(),
    }
}

/// A device's update state in its language, with the last result's reason.
fn update_cell(d: &crate::store::DeviceRow, lang: Lang) -> String {
    let Some(state) = d.update_state.as_deref() else { return String::new() };
    let word = match state {
        "idle" => lang.t("无", "idle"),
        "downloading" => lang.t("下载中", "downloading"),
        "on trial" => lang.t("试运行", "on trial"),
        "committed" => lang.t("已确认", "committed"),
        "rolled back" => lang.t("已回退", "rolled back"),
        "deferred" => lang.t("推迟（采集中）", "deferred (recording)"),
        other => other,
    };
    match &d.update_detail {
        Some(detail) => format!("{}<br><small>{}</small>", esc(word), esc(detail)),
        None => esc(word),
    }
}

/// A table of what a hospital system has not taken yet: `rows` are (row attributes, the leading
/// escaped cells under `heads`, attempts, last error, next attempt in Unix ms).
fn waiting_table<'a>(
    lang: Lang,
    empty: (&'static str, &'static str),
    heads: &[&str],
    rows: impl Iterator<Item = (String, Vec<String>, i64, &'a str, i64)>,
) -> String {
    let body: String = rows
        .map(|(attrs, cells, attempts, error, next)| {
            let cells: String = cells.iter().map(|c| format!("<td>{c}</td>")).collect();
            format!("<tr {attrs}>{cells}<td>{attempts}</td><td>{}</td><td>{}</td></tr>", esc(error), local_time(next))
        })
        .collect();
    if body.is_empty() {
        return format!("<p>{}</p>", lang.t(empty.0, empty.1));
    }
    let heads: String = heads
        .iter()
        .chain(&[lang.t("尝试次数", "Attempts"), lang.t("最近错误", "Last error"), lang.t("下次重试", "Next attempt")])
        .map(|h| format!("<th>{h}</th>"))
        .collect();
    format!("<table><thead><tr>{heads}</tr></thead><tbody>{body}</tbody></table>")
}

async fn fleet_page(State(s): State<AppState>, page: Page) -> Response {
    let Some(session) = page.session else { return Redirect::to("/login").into_response() };
    if session.role != Role::Admin {
        return (StatusCode::FORBIDDEN, "county IT only").into_response();
    }
    let lang = page.lang;
    let devices = match s.store.call(|db| db.devices()).await {
        Ok(Ok(d)) => d,
        _ => return StatusCode::SERVICE_UNAVAILABLE.into_response(),
    };
    let now = now_ms();
    let mut rows = String::new();
    for d in &devices {
        rows.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&d.site_id),
            esc(&d.device_id),
            esc(&d.state),
            d.status_at_ms.map(|t| waited(now - t, lang)).unwrap_or_default(),
            d.spool_entries.map(|n| n.to_string()).unwrap_or_default(),
            esc(d.installed_version.as_deref().or(d.agent_version.as_deref()).unwrap_or_default()),
            update_cell(d, lang),
            esc(d.last_problem.as_deref().unwrap_or_default()),
        ));
    }
    let outbox = s.store.call(|db| db.hl7_outbox(true, 50)).await.ok().and_then(Result::ok).unwrap_or_default();
    let his = waiting_table(
        lang,
        ("没有未送达的消息。", "No undelivered messages."),
        &[lang.t("报告", "Report"), lang.t("消息编号", "Control id")],
        outbox.iter().map(|m| {
            (
                format!(r#"data-his="{}""#, esc(&m.control_id)),
                vec![esc(&m.report_id), esc(&m.control_id)],
                m.attempts,
                m.last_error.as_str(),
                m.next_attempt_ms,
            )
        }),
    );
    let pacs_rows = s.store.call(|db| db.pacs_outbox(true, 50)).await.ok().and_then(Result::ok).unwrap_or_default();
    let pacs = waiting_table(
        lang,
        ("没有未存入的检查。", "No studies waiting."),
        &[lang.t("检查", "Study")],
        pacs_rows.iter().map(|p| {
            (
                format!(r#"data-pacs="{}""#, esc(&p.study_uid)),
                vec![esc(&p.study_uid)],
                p.attempts,
                p.last_error.as_str(),
                p.next_attempt_ms,
            )
        }),
    );
    let rejects: String = s
        .rejects
        .snapshot()
        .iter()
        .map(|(reason, n)| format!("<tr><td>{}</td><td>{n}</td></tr>", esc(reason)))
        .collect();
    let body = format!(
        "<table><thead><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr></thead><tbody>{rows}</tbody></table>
<h2>{}</h2><table><tbody>{rejects}</tbody></table>
<h2>{}</h2>{his}
<h2>{}</h2>{pacs}
<p><a href=\"/fleet/enrolment\">{}</a> · <a href=\"/fleet/rollouts\">{}</a></p>",
        lang.t("卫生院", "Clinic"),
        lang.t("设备", "Device"),
        lang.t("状态", "State"),
        lang.t("上次联系", "Last seen"),
        lang.t("待发送", "Spool backlog"),
        lang.t("版本", "Version"),
        lang.t("更新", "Update"),
        lang.t("最近问题", "Last problem"),
        lang.t("拒收的消息", "Rejected messages"),
        lang.t("未送达 HIS 的报告", "Reports not yet delivered to the HIS"),
        lang.t("未存入 PACS 的检查", "Studies not yet stored at the PACS"),
        lang.t("设备登记与吊销", "Device enrolment and revocation"),
        lang.t("更新发布", "Update rollouts"),
    );
    layout(lang, lang.t("设备管理", "Fleet"), Some(&session), &body).into_response()
}

/// Calipers: two clicks on the tracing give the interval in ms (and the rate it implies) and the
/// amplitude difference in µV, computed from the paper's own millimetres, so they are right at
/// any zoom and any speed or gain.
const CALIPERS_JS: &str = r#"<script>
(() => {
  const svg = document.querySelector('svg.ecg');
  const out = document.getElementById('caliper');
  if (!svg || !out) return;
  const speed = Number(svg.dataset.speedMmPerS), gain = Number(svg.dataset.gainMmPerMv);
  const ns = 'http://www.w3.org/2000/svg';
  let first = null;
  const mark = (x) => {
    const l = document.createElementNS(ns, 'line');
    l.setAttribute('x1', x); l.setAttribute('x2', x); l.setAttribute('y1', 0); l.setAttribute('y2', svg.viewBox.baseVal.height);
    l.setAttribute('class', 'caliper'); l.setAttribute('stroke', '#06c'); l.setAttribute('stroke-width', '0.2');
    svg.appendChild(l);
  };
  svg.addEventListener('click', (e) => {
    const p = svg.createSVGPoint(); p.x = e.clientX; p.y = e.clientY;
    const mm = p.matrixTransform(svg.getScreenCTM().inverse());
    if (!first) {
      svg.querySelectorAll('line.caliper').forEach((l) => l.remove());
      first = mm; mark(mm.x); out.textContent = '…'; return;
    }
    mark(mm.x);
    const dt = Math.abs(mm.x - first.x) / speed * 1000;
    const dv = (first.y - mm.y) / gain * 1000;
    out.dataset.dtMs = dt.toFixed(1); out.dataset.dvUv = dv.toFixed(1);
    out.textContent = `Δt ${dt.toFixed(0)} ms (${(60000 / dt).toFixed(0)} /min) · ΔV ${dv.toFixed(0)} µV`;
    first = null;
  });
})();
</script>"#;

/// Standard statements offered on the report form (zh, en).
pub const STATEMENTS: &[(&str, &str)] = &[
    ("窦性心律", "Sinus rhythm"),
    ("窦性心动过速", "Sinus tachycardia"),
    ("窦性心动过缓", "Sinus bradycardia"),
    ("心房颤动", "Atrial fibrillation"),
    ("心房扑动", "Atrial flutter"),
    ("房性早搏", "Premature atrial complexes"),
    ("室性早搏", "Premature ventricular complexes"),
    ("一度房室传导阻滞", "First-degree AV block"),
    ("三度房室传导阻滞", "Complete heart block"),
    ("完全性右束支传导阻滞", "Complete right bundle branch block"),
    ("完全性左束支传导阻滞", "Complete left bundle branch block"),
    ("ST段抬高", "ST elevation"),
    ("ST段压低", "ST depression"),
    ("T波改变", "T wave changes"),
    ("左心室肥大", "Left ventricular hypertrophy"),
    ("正常心电图", "Normal ECG"),
];

#[derive(Deserialize)]
struct PaperQuery {
    speed: Option<f64>,
    gain: Option<f64>,
    /// Start of the page shown, in seconds from the start of the recording.
    from: Option<f64>,
}

/// A study page shows this many seconds at a time (a resting ECG is 10 s; a file from a long
/// recording is paged, every sample still drawn).
const PAGE_S: f64 = 10.0;

async fn study_page(
    State(s): State<AppState>,
    page: Page,
    axum::extract::Path(uid): axum::extract::Path<String>,
    Query(q): Query<PaperQuery>,
    Query(cq): Query<super::priors::CompareQuery>,
) -> Response {
    let Some(session) = page.session else { return Redirect::to("/login").into_response() };
    let lang = page.lang;
    let u = uid.clone();
    let Ok(Ok(found)) = s.store.call(move |db| db.study(&u, now_ms())).await else {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    };
    let Some((row, study)) = found else { return (StatusCode::NOT_FOUND, "no such study").into_response() };
    if actor::record(&s, &session.actor(), "view study", &uid, "ok", "console").await.is_err() {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    let paper = super::viewer::Paper::chosen(q.speed, q.gain);
    let rate = f64::from(study.sample_rate_hz.max(1));
    let total_s = study.leads.first().map_or(0.0, |l| f64::from(l.samples.count) / rate);
    // Up to 12 s is one page (some carts record 10.0x s); longer recordings are paged.
    let (from_s, page_s) = if total_s <= PAGE_S * 1.2 {
        (0.0, total_s)
    } else {
        let last = ((total_s / PAGE_S).ceil() - 1.0) * PAGE_S;
        (q.from.unwrap_or(0.0).clamp(0.0, last.max(0.0)).div_euclid(PAGE_S) * PAGE_S, PAGE_S)
    };
    let (first, count) = ((from_s * rate) as usize, (page_s * rate).round() as usize);
    let decoded: Vec<(String, bool, Vec<f64>)> = study
        .leads
        .iter()
        .filter_map(|l| {
            let scale = l.resolution_nv / 1000.0;
            let samples = l.decode().ok()?;
            let window = samples.get(first..(first + count).min(samples.len())).unwrap_or_default();
            Some((l.lead.clone(), l.derived, window.iter().map(|v| f64::from(*v) * scale).collect()))
        })
        .collect();
    let traces: Vec<super::viewer::Trace<'_>> =
        decoded.iter().map(|(n, d, uv)| super::viewer::Trace { name: n, uv, derived: *d }).collect();
    let svg = super::viewer::render(&traces, rate, paper);
    let pages = if total_s > PAGE_S * 1.2 {
        let link = |to: f64, label: &str| {
            format!(r#"<a href="?speed={}&gain={}&from={to}">{label}</a>"#, paper.speed_mm_per_s, paper.gain_mm_per_mv)
        };
        let prev = if from_s > 0.0 {
            link(from_s - PAGE_S, lang.t("◀ 前10秒", "◀ previous 10 s"))
        } else {
            String::new()
        };
        let next = if from_s + PAGE_S < total_s {
            link(from_s + PAGE_S, lang.t("后10秒 ▶", "next 10 s ▶"))
        } else {
            String::new()
        };
        format!(
            "<p>{prev} {} {:.0}–{:.0} s / {:.1} s {next}</p>",
            lang.t("显示", "showing"),
            from_s,
            (from_s + PAGE_S).min(total_s),
            total_s
        )
    } else {
        String::new()
    };
    let age = age_years(row.birth_date.as_deref(), row.acquired_at_ms)
        .or(study.patient.age_years.map(i64::from))
        .map(|a| a.to_string())
        .unwrap_or_default();
    let options = format!(
        r#"<p>{}: <a href="?speed=25&gain={g}&from={f}">25 mm/s</a> · <a href="?speed=50&gain={g}&from={f}">50 mm/s</a> | {}: <a href="?speed={sp}&gain=5&from={f}">5</a> · <a href="?speed={sp}&gain=10&from={f}">10</a> · <a href="?speed={sp}&gain=20&from={f}">20</a> mm/mV</p>"#,
        lang.t("走纸速度", "Paper speed"),
        lang.t("增益", "Gain"),
        g = paper.gain_mm_per_mv,
        sp = paper.speed_mm_per_s,
        f = from_s
    );
    let mut warnings: String = study.warnings.iter().map(|w| format!(r#"<p class="error">⚠ {}</p>"#, esc(w))).collect();
    let u = uid.clone();
    if let Ok(Ok(Some(o))) = s.store.call(move |db| db.quality_override(&u)).await {
        warnings += &format!(
            r#"<p class="override" data-override="{}">{} {} · {} · {}</p>"#,
            esc(&o.clinician),
            lang.t("卫生院决定不重做：", "The clinic chose not to retake:"),
            esc(&o.reason),
            esc(&o.clinician),
            local_time(o.overridden_at_ms)
        );
    }
    let cart_part = cart_reading(lang, &uid, &study, paper);
    let priors = super::priors::lookup(&s, &uid).await;
    let priors_part = super::priors::section(&s, &session.actor(), lang, &study, priors.as_deref(), &cq, paper).await;
    let reading_part = reading(&s, lang, &study, priors.as_deref()).await;
    let report_part = if let Some(report_id) = &row.report_id {
        format!(
            "<p>{} {} · {} · {}: {}</p>",
            lang.t("已出报告", "Reported"),
            esc(report_id),
            row.reported_at_ms.map(local_time).unwrap_or_default(),
            lang.t("卫生院已收到", "received by the clinic"),
            row.delivered_at_ms.map(local_time).unwrap_or_else(|| lang.t("待确认", "not yet").to_string())
        )
    } else {
        let boxes: String = STATEMENTS
            .iter()
            .map(|(zh, en)| {
                let text = if lang == Lang::En { en } else { zh };
                format!(
                    r#"<label><input type="checkbox" name="statement" value="{}"> {}</label> "#,
                    esc(text),
                    esc(text)
                )
            })
            .collect();
        format!(
            r#"<form method="post" action="/studies/{}/report"><input type="hidden" name="csrf" value="{}">
<fieldset><legend>{}</legend>{boxes}</fieldset>
<p><label>{}<br><textarea name="findings" rows="4" cols="80"></textarea></label></p>
<p><label>{}<br><textarea name="conclusion" rows="3" cols="80"></textarea></label></p>
<p><label><input type="checkbox" name="urgent" value="1"> {}</label></p>
<button>{}</button></form>"#,
            esc(&uid),
            esc(&session.csrf),
            lang.t("常用诊断", "Standard statements"),
            lang.t("所见", "Findings"),
            lang.t("结论", "Conclusion"),
            lang.t("危急值，需立即电话回告临床", "Critical: call the clinic back now"),
            lang.t("签发报告", "Sign and send")
        )
    };
    let body = format!(
        r#"<p><b>{}</b> {} {} · {} · {} · {}</p><p>{}: {}</p>{warnings}{options}{pages}<div class="tracing">{svg}</div><p>{}: <output id="caliper">{}</output></p>{CALIPERS_JS}{reading_part}{cart_part}{priors_part}{report_part}"#,
        esc(&row.patient_name),
        esc(match row.sex.as_str() {
            "female" => lang.t("女", "F"),
            "male" => lang.t("男", "M"),
            _ => "",
        }),
        esc(&age),
        esc(&row.site_id),
        esc(&study.device_model),
        esc(&row.priority),
        lang.t("临床问题", "Question"),
        esc(&row.question),
        lang.t("测量尺", "Calipers"),
        lang.t("在波形上点击两点", "click two points on the tracing"),
    );
    layout(lang, lang.t("心电图", "ECG"), Some(&session), &body).into_response()
}

/// The pre-read panel of `study`, with what is new since the patient's last certain ECG.
async fn reading(
    s: &AppState,
    lang: Lang,
    study: &yilian_protocol::message::Study,
    priors: Option<&[crate::store::priors::Prior]>,
) -> String {
    let last = priors.and_then(|p| p.iter().find(|p| p.matched.certain())).map(|p| p.row.clone());
    let st = study.clone();
    let Ok(pre) = tokio::task::spawn_blocking(move || crate::preread::preread_of(&st)).await else {
        return String::new();
    };
    let mut changes = None;
    if let Some(row) = last
        && let Some(before) = super::priors::summary_of(s, &row.study_uid).await
    {
        changes = Some((row.acquired_at_ms, yilian_analysis::preread::changes(&before, &pre.summary())));
    }
    super::reading::panel(
        lang,
        &pre,
        changes.as_ref().map(|(at, c)| super::reading::SinceLast { acquired_at_ms: *at, changes: c }),
    )
}

async fn report_form(
    State(s): State<AppState>,
    session: Session,
    axum::extract::Path(uid): axum::extract::Path<String>,
    body: String,
) -> Response {
    // Repeated fields (`statement`) need all pairs; a struct would keep only one.
    let Ok(pairs) = serde_urlencoded::from_str::<Vec<(String, String)>>(&body) else {
        return (StatusCode::BAD_REQUEST, "malformed form").into_response();
    };
    let field = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()).unwrap_or_default();
    if !same_token(&field("csrf"), &session.csrf) {
        return (StatusCode::FORBIDDEN, "missing or wrong CSRF token").into_response();
    }
    let statements: Vec<String> = pairs.iter().filter(|(n, _)| n == "statement").map(|(_, v)| v.clone()).collect();
    let mut conclusion = statements.join("；");
    let free = field("conclusion");
    if !free.trim().is_empty() {
        if !conclusion.is_empty() {
            conclusion.push('；');
        }
        conclusion.push_str(free.trim());
    }
    // The mark is in the signed text too, so the clinic's copy says it.
    let critical = field("urgent") == "1";
    if critical {
        conclusion = format!("【危急值 CRITICAL】{conclusion}");
    }
    // The imaging viewer posts the same form; it says where to come back to.
    let back = if field("back") == "imaging" { format!("/imaging/{uid}") } else { format!("/studies/{uid}") };
    match super::api::submit_report(&s, &session.actor(), &session.name, &uid, field("findings"), conclusion, critical)
        .await
    {
        Ok(_) => Redirect::to(&back).into_response(),
        Err(e) => (e.0, e.1).into_response(),
    }
}

async fn monitor_list(State(s): State<AppState>, page: Page) -> Response {
    let Some(session) = page.session else { return Redirect::to("/login").into_response() };
    let lang = page.lang;
    let Ok(Ok(devices)) = s.store.call(|db| db.devices()).await else {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    };
    let rows: String = devices
        .iter()
        .map(|d| {
            format!(
                r#"<tr><td>{}</td><td><a href="/devices/{}/monitor">{}</a></td><td>{}</td></tr>"#,
                esc(&d.site_id),
                esc(&d.device_id),
                esc(&d.device_id),
                esc(&d.state)
            )
        })
        .collect();
    let body = format!("<table><tbody>{rows}</tbody></table>");
    layout(lang, lang.t("监护", "Monitoring"), Some(&session), &body).into_response()
}

#[derive(Deserialize)]
struct MonitorQuery {
    stream: Option<i64>,
    seconds: Option<i64>,
    lead: Option<String>,
    speed: Option<f64>,
    gain: Option<f64>,
}

/// The latest seconds of a device's monitoring stream, all leads or one (`?lead=II`).
async fn monitor_page(
    State(s): State<AppState>,
    page: Page,
    axum::extract::Path(device): axum::extract::Path<String>,
    Query(q): Query<MonitorQuery>,
) -> Response {
    let Some(session) = page.session else { return Redirect::to("/login").into_response() };
    let lang = page.lang;
    let stream_id = q.stream.unwrap_or(0);
    let seconds = q.seconds.unwrap_or(10).clamp(1, 60);
    let d = device.clone();
    let Ok(Ok(streams)) = s.store.call(move |db| db.streams(&d)).await else {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    };
    let Some(st) = streams.into_iter().find(|x| x.stream_id == stream_id) else {
        return (StatusCode::NOT_FOUND, "no such stream").into_response();
    };
    let Some(last) = st.runs.last().cloned() else { return (StatusCode::NOT_FOUND, "no samples").into_response() };
    let count = (seconds * st.sample_rate_hz).min(last.end_sample - last.first_sample);
    let from = last.end_sample - count;
    if actor::ok(&s, &session.actor(), "view monitoring", &device).await.is_err() {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    let d = device.clone();
    let fetched = s.store.call(move |db| db.stream_samples(&d, stream_id, from, count)).await;
    let Ok(Ok(leads)) = fetched else { return StatusCode::SERVICE_UNAVAILABLE.into_response() };
    let all: Vec<(String, Vec<f64>)> = leads
        .into_iter()
        .map(|(name, res, v)| (name, v.iter().map(|x| f64::from(*x) * f64::from(res) / 1000.0).collect()))
        .collect();
    let rate_hz = st.sample_rate_hz as f64;
    // The pre-read of every lead in the window, whichever lead is drawn.
    let Ok((all, pre)) = tokio::task::spawn_blocking(move || {
        let views: Vec<(&str, &[f64])> = all.iter().map(|(n, x)| (n.as_str(), x.as_slice())).collect();
        let pre = yilian_analysis::preread::analyze(&views, rate_hz);
        (all, pre)
    })
    .await
    else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let reading = super::reading::monitor_line(lang, &pre);
    let scaled: Vec<(String, Vec<f64>)> =
        all.into_iter().filter(|(name, _)| q.lead.as_deref().is_none_or(|l| l.eq_ignore_ascii_case(name))).collect();
    if scaled.is_empty() {
        return (StatusCode::NOT_FOUND, "no such lead").into_response();
    }
    let traces: Vec<super::viewer::Trace<'_>> =
        scaled.iter().map(|(n, uv)| super::viewer::Trace { name: n, uv, derived: false }).collect();
    let paper = super::viewer::Paper::chosen(q.speed, q.gain);
    let svg = super::viewer::render(&traces, rate_hz, paper);
    let gaps = st.runs.len().saturating_sub(1) + st.declared_gaps.len();
    let lead_links: String =
        scaled.iter().map(|(n, _)| format!(r#" <a href="?lead={}">{}</a>"#, esc(n), esc(n))).collect::<String>();
    let body = format!(
        r#"<p>{} · {} {}–{} ({} Hz) · {}: {gaps}</p><p>{}:{lead_links} · <a href="?">{}</a></p>{reading}<div class="tracing">{svg}</div>{CALIPERS_JS}<p><output id="caliper"></output></p>"#,
        esc(&device),
        lang.t("样本", "samples"),
        from,
        last.end_sample,
        st.sample_rate_hz,
        lang.t("中断", "gaps"),
        lang.t("导联", "Lead"),
        lang.t("全部", "all"),
    );
    layout(lang, lang.t("监护", "Monitoring"), Some(&session), &body).into_response()
}

/// What came with a cart file: derived-lead note, the cart's measurements and statements (for
/// reference: the specialist reads the tracing), the median beat, and the original file(s).
fn cart_reading(lang: Lang, uid: &str, study: &yilian_protocol::message::Study, paper: super::viewer::Paper) -> String {
    let mut out = String::new();
    if study.leads.iter().any(|l| l.derived) {
        out += &format!("<p>* {}</p>", lang.t("由心电图机根据其他导联计算", "computed by the cart from other leads"));
    }
    if !study.measurements.is_empty() || !study.interpretation.is_empty() {
        let rows: String = study
            .measurements
            .iter()
            .map(|m| format!("<tr><td>{}</td><td>{}</td><td>{}</td></tr>", esc(&m.name), m.value, esc(&m.unit)))
            .collect();
        let statements: String = study.interpretation.iter().map(|t| format!("<li>{}</li>", esc(t))).collect();
        out += &format!(
            r#"<section class="cart"><h3>{}</h3><table>{rows}</table><ul>{statements}</ul></section>"#,
            lang.t("心电图机自动分析（仅供参考）", "The cart's own analysis (for reference only)")
        );
    }
    if let Some(m) = &study.median_beat {
        let decoded: Vec<(String, Vec<f64>)> = m
            .leads
            .iter()
            .filter_map(|l| {
                let scale = l.resolution_nv / 1000.0;
                Some((l.lead.clone(), l.decode().ok()?.iter().map(|v| f64::from(*v) * scale).collect()))
            })
            .collect();
        let traces: Vec<super::viewer::Trace<'_>> =
            decoded.iter().map(|(n, uv)| super::viewer::Trace { name: n, uv, derived: false }).collect();
        let svg = super::viewer::render(&traces, f64::from(m.sample_rate_hz), paper);
        out += &format!(r#"<h3>{}</h3><div class="tracing median">{svg}</div>"#, lang.t("中位心搏", "Median beat"));
    }
    if let Some(src) = &study.source {
        let links: String = src
            .files
            .iter()
            .enumerate()
            .map(|(i, f)| {
                format!(
                    r#"<li><a href="/api/studies/{}/original/{i}" download>{}</a> ({} bytes, SHA-256 {})</li>"#,
                    esc(uid),
                    esc(&f.name),
                    f.size,
                    &hex::encode(f.sha256)[..16]
                )
            })
            .collect();
        out += &format!(
            "<section><h3>{}</h3><p>{} {}</p><ul>{links}</ul></section>",
            lang.t("原始文件", "Original file"),
            esc(&src.format),
            esc(&src.format_version)
        );
    }
    let record: String = uid.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
    let link = |file: String, label: &str| {
        format!(r#"<a href="/api/studies/{}/export/{}" download>{label}</a>"#, esc(uid), esc(&file))
    };
    out += &format!(
        "<p>{}: {} · {} · {} · WFDB ({} + {})</p>",
        lang.t("导出", "Export"),
        link(format!("{record}.dcm"), "DICOM"),
        link(format!("{record}.xml"), "HL7 aECG"),
        link(format!("{record}.scp"), "SCP-ECG"),
        link(format!("{record}.hea"), ".hea"),
        link(format!("{record}.dat"), ".dat"),
    );
    out
}

/// The imaging centre's part of the worklist: unreported image studies, most urgent first, with
/// how far their transfer has come.
fn image_rows(rows: &[crate::store::images::ImageStudyRow], lang: Lang) -> String {
    let open: Vec<&crate::store::images::ImageStudyRow> = rows.iter().filter(|r| r.report_id.is_none()).collect();
    if open.is_empty() {
        return String::new();
    }
    let body: String = open
        .iter()
        .map(|r| {
            let state = match r.state.as_str() {
                "complete" => lang.t("已接收", "received").to_string(),
                "partial" => {
                    format!("{}: {}", lang.t("不完整", "partial"), esc(r.missing.as_deref().unwrap_or_default()))
                }
                _ => format!("{} {}/{}", lang.t("传输中", "arriving"), r.instances_stored, r.instances),
            };
            let link = if r.state == "receiving" {
                String::new()
            } else {
                format!(r#"<a href="/imaging/{}">{}</a>"#, esc(&r.study_uid), lang.t("阅片", "Read"))
            };
            format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&r.priority),
                esc(&r.site_id),
                esc(&r.patient_name),
                esc(&r.modality),
                state,
                link
            )
        })
        .collect();
    format!(
        "<h2>{}</h2><table><thead><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th></th></tr></thead><tbody>{body}</tbody></table>",
        lang.t("影像检查", "Image studies"),
        lang.t("优先级", "Priority"),
        lang.t("卫生院", "Clinic"),
        lang.t("患者", "Patient"),
        lang.t("设备类型", "Modality"),
        lang.t("状态", "State"),
    )
}

/// The report form for an image study (posted to the same handler as ECG reports).
pub(crate) fn imaging_report_form(lang: Lang, uid: &str, csrf: &str, reported: Option<&str>) -> String {
    if let Some(id) = reported {
        return format!("<p>{} {}</p>", lang.t("已出报告", "Reported"), esc(id));
    }
    format!(
        r#"<form method="post" action="/studies/{}/report"><input type="hidden" name="csrf" value="{}"><input type="hidden" name="back" value="imaging">
<p><label>{}<br><textarea name="findings" rows="4" cols="80"></textarea></label></p>
<p><label>{}<br><textarea name="conclusion" rows="3" cols="80"></textarea></label></p>
<p><label><input type="checkbox" name="urgent" value="1"> {}</label></p>
<button>{}</button></form>"#,
        esc(uid),
        esc(csrf),
        lang.t("影像所见", "Findings"),
        lang.t("诊断意见", "Impression"),
        lang.t("危急值，需立即电话回告临床", "Critical: call the clinic back now"),
        lang.t("签发报告", "Sign and send")
    )
}
