//! Device enrolment over HTTP, and the console page where county IT approves, rejects and
//! revokes devices.
//!
//! | method | path | what |
//! | --- | --- | --- |
//! | POST | `/api/enrol` | [`EnrolRequest`]: a new device with a bootstrap token; 201 pending |
//! | GET | `/api/enrol/{device}?alg=&at_ms=&sig=` | [`EnrolStatus`], signed by the device's key |
//! | GET | `/fleet/enrolment` | console: devices by state, pending ones first (admins) |
//! | POST | `/fleet/devices/{device}/{approve,reject,revoke}` | console form with CSRF (admins) |

use super::AppState;
use super::console::{Lang, Page, esc, layout, local_time};
use super::session::{Role, Session};
use crate::clock::now_ms;
use crate::store::lifecycle::{Action, ActionError, DeviceState, LifecycleRow, TokenError};
use axum::extract::{ConnectInfo, Form, Path, Query, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use std::net::SocketAddr;
use tracing::{info, warn};
use yilian_protocol::enrol::{EnrolError, EnrolRequest, EnrolStatus, verify_poll};

/// The largest enrolment request body accepted.
const BODY_MAX: usize = 16 * 1024;

/// The enrolment routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/enrol", post(enrol))
        .route("/api/enrol/{device}", get(poll))
        .route("/fleet/enrolment", get(page))
        .route("/fleet/devices/{device}/{action}", post(act))
}

fn err(status: StatusCode, code: &str, message: String) -> Response {
    (status, Json(json!({ "error": message, "code": code }))).into_response()
}

fn token_refusal(e: &TokenError) -> Response {
    let (status, code) = match e {
        TokenError::Malformed => (StatusCode::BAD_REQUEST, "token-malformed"),
        TokenError::Unknown => (StatusCode::FORBIDDEN, "token-unknown"),
        TokenError::Expired => (StatusCode::FORBIDDEN, "token-expired"),
        TokenError::Used => (StatusCode::CONFLICT, "token-used"),
        TokenError::WrongSite => (StatusCode::FORBIDDEN, "token-wrong-site"),
        TokenError::DeviceTaken(_) => (StatusCode::CONFLICT, "device-taken"),
    };
    err(status, code, e.to_string())
}

/// The answer about one device. A pending device gets the hub key already, so its agent can
/// start recording at once: what it sends waits in quarantine (and in its spool) until approval.
fn status_of(s: &AppState, row: &LifecycleRow) -> EnrolStatus {
    let may_act = row.state.may_act();
    let key = yilian_protocol::keys::PublicKey::from_hex(&row.public_key).ok();
    EnrolStatus {
        device: row.device_id.clone(),
        site: row.site_id.clone(),
        state: row.state.as_str().to_string(),
        key_id: row.key_id.clone(),
        hub_public_key: row.state.may_act().then(|| s.publisher.public_key().to_hex()),
        certificate: key.filter(|_| may_act).and_then(|k| {
            s.ca.as_deref().and_then(|ca| crate::lifecycle::device_certificate(ca, &row.site_id, &row.device_id, &k))
        }),
        ca_certificate: s.ca.as_deref().filter(|_| may_act).map(|ca| ca.ca_pem().to_string()),
    }
}

async fn row_of(s: &AppState, device: &str) -> Result<Option<LifecycleRow>, Response> {
    let d = device.to_string();
    match s.store.call(move |db| db.lifecycle_devices().map(|rows| rows.into_iter().find(|r| r.device_id == d))).await {
        Ok(Ok(r)) => Ok(r),
        Ok(Err(e)) | Err(e) => Err(err(StatusCode::SERVICE_UNAVAILABLE, "store", e.to_string())),
    }
}

async fn enrol(State(s): State<AppState>, req: Request) -> Response {
    let addr = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or_else(|| "unknown".to_string(), |c| c.0.ip().to_string());
    let Ok(body) = axum::body::to_bytes(req.into_body(), BODY_MAX).await else {
        return err(StatusCode::PAYLOAD_TOO_LARGE, "too-large", format!("the request is over {BODY_MAX} bytes"));
    };
    let Ok(r) = serde_json::from_slice::<EnrolRequest>(&body) else {
        return err(StatusCode::BAD_REQUEST, "malformed", "the request is not an enrolment request".into());
    };
    let now = now_ms();
    let key = match r.verify(now) {
        Ok(k) => k,
        Err(e) => {
            warn!(device = %r.device, site = %r.site, %addr, error = %e, "enrolment request refused");
            let code = match e {
                EnrolError::Stale { .. } => "stale",
                EnrolError::UnknownAlgorithm(_) => "unknown-algorithm",
                _ => "bad-proof",
            };
            return err(StatusCode::BAD_REQUEST, code, e.to_string());
        }
    };
    let Some((token_id, secret)) = crate::lifecycle::parse_token(&r.token) else {
        return token_refusal(&TokenError::Malformed);
    };
    let (site, device, a) = (r.site.clone(), r.device.clone(), addr.clone());
    let result = s.store.call(move |db| db.enrol_with_token(&token_id, &secret, &site, &device, &key, &a, now)).await;
    match result {
        Ok(Ok(Ok(state))) => {
            info!(device = %r.device, site = %r.site, key_id = %key.id(), %addr, state = state.as_str(), "device enrolled; waiting for approval");
            match row_of(&s, &r.device).await {
                Ok(Some(row)) => (StatusCode::CREATED, Json(status_of(&s, &row))).into_response(),
                Ok(None) => err(StatusCode::SERVICE_UNAVAILABLE, "store", "enrolment not found after writing".into()),
                Err(resp) => resp,
            }
        }
        Ok(Ok(Err(e))) => {
            warn!(device = %r.device, site = %r.site, %addr, error = %e, "enrolment token refused");
            token_refusal(&e)
        }
        Ok(Err(e)) | Err(e) => err(StatusCode::SERVICE_UNAVAILABLE, "store", e.to_string()),
    }
}

#[derive(Deserialize)]
struct PollQuery {
    alg: u8,
    at_ms: i64,
    sig: String,
}

async fn poll(State(s): State<AppState>, Path(device): Path<String>, Query(q): Query<PollQuery>) -> Response {
    let now = now_ms();
    let d = device.clone();
    // Keys of any state: a rejected or revoked device learns where it stands.
    let keys = match s
        .store
        .call(move |db| db.lifecycle_devices().map(|rows| rows.into_iter().find(|r| r.device_id == d)))
        .await
    {
        Ok(Ok(Some(row))) => row,
        Ok(Ok(None)) => return err(StatusCode::NOT_FOUND, "unknown-device", format!("no device {device}")),
        Ok(Err(e)) | Err(e) => return err(StatusCode::SERVICE_UNAVAILABLE, "store", e.to_string()),
    };
    let Ok(key) = yilian_protocol::keys::PublicKey::from_hex(&keys.public_key) else {
        return err(StatusCode::SERVICE_UNAVAILABLE, "store", "stored key is damaged".into());
    };
    if let Err(e) = verify_poll(&device, &[key], q.alg, q.at_ms, &q.sig, now) {
        return err(StatusCode::FORBIDDEN, "bad-proof", e.to_string());
    }
    Json(status_of(&s, &keys)).into_response()
}

fn state_label(lang: Lang, state: DeviceState) -> &'static str {
    match state {
        DeviceState::Pending => lang.t("待审批", "pending"),
        DeviceState::Active => lang.t("已启用", "active"),
        DeviceState::Rejected => lang.t("已拒绝", "rejected"),
        DeviceState::Revoked => lang.t("已吊销", "revoked"),
    }
}

fn action_form(lang: Lang, device: &str, csrf: &str, action: Action) -> String {
    let (label, reason) = match action {
        Action::Approve => (lang.t("批准", "Approve"), false),
        Action::Reject => (lang.t("拒绝", "Reject"), true),
        Action::Revoke => (lang.t("吊销", "Revoke"), true),
    };
    let reason = if reason {
        format!(r#"<input name="reason" placeholder="{}" size="12">"#, lang.t("原因", "reason"))
    } else {
        String::new()
    };
    format!(
        r#"<form method="post" action="/fleet/devices/{}/{}" class="inline"><input type="hidden" name="csrf" value="{}">{reason}<button data-action="{}">{label}</button></form>"#,
        esc(device),
        action.as_str(),
        esc(csrf),
        action.as_str(),
    )
}

async fn page(State(s): State<AppState>, page: Page) -> Response {
    let Some(session) = page.session else { return Redirect::to("/login").into_response() };
    if session.role != Role::Admin {
        return (StatusCode::FORBIDDEN, "county IT only").into_response();
    }
    let lang = page.lang;
    let rows = match s.store.call(|db| db.lifecycle_devices()).await {
        Ok(Ok(r)) => r,
        _ => return StatusCode::SERVICE_UNAVAILABLE.into_response(),
    };
    let mut html = String::new();
    for r in &rows {
        let actions: String = [Action::Approve, Action::Reject, Action::Revoke]
            .into_iter()
            .filter(|a| match a {
                Action::Approve | Action::Reject => r.state == DeviceState::Pending,
                Action::Revoke => r.state.may_act(),
            })
            .map(|a| action_form(lang, &r.device_id, &session.csrf, a))
            .collect();
        html.push_str(&format!(
            r#"<tr data-device="{}" data-state="{}"><td>{}</td><td>{}</td><td>{}</td><td><code title="{}">{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{actions}</td></tr>"#,
            esc(&r.device_id),
            r.state.as_str(),
            esc(&r.site_id),
            esc(&r.device_id),
            state_label(lang, r.state),
            esc(&r.public_key),
            esc(&r.key_id),
            local_time(r.enrolled_at_ms),
            esc(r.enrol_addr.as_deref().unwrap_or("CLI")),
            r.quarantined,
            esc(r.state_reason.as_deref().unwrap_or_default()),
        ));
    }
    let body = format!(
        "<p>{}</p><table><thead><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th></th></tr></thead><tbody>{html}</tbody></table>",
        lang.t(
            "核对设备上显示的密钥编号后再批准。待审批设备的消息先隔离，批准后设备会重新发送。",
            "Compare the key id shown on the device before approving. A pending device's messages are held in quarantine; the device sends them again once approved."
        ),
        lang.t("卫生院", "Clinic"),
        lang.t("设备", "Device"),
        lang.t("状态", "State"),
        lang.t("密钥编号", "Key id"),
        lang.t("登记时间", "Enrolled"),
        lang.t("来源地址", "From"),
        lang.t("隔离消息", "Quarantined"),
        lang.t("原因", "Reason"),
    );
    layout(lang, lang.t("设备登记", "Device enrolment"), Some(&session), &body).into_response()
}

#[derive(Deserialize)]
struct ActForm {
    csrf: String,
    #[serde(default)]
    reason: String,
}

async fn act(
    State(s): State<AppState>,
    session: Session,
    Path((device, action)): Path<(String, String)>,
    Form(f): Form<ActForm>,
) -> Response {
    if let Err(refused) = session.admin_form(&f.csrf) {
        return refused.into_response();
    }
    let Some(action) = Action::parse(&action) else { return StatusCode::NOT_FOUND.into_response() };
    let (d, user, reason) = (device.clone(), session.user_id.clone(), f.reason.trim().to_string());
    match s.store.call(move |db| db.device_action(&d, action, &user, &reason, now_ms())).await {
        Ok(Ok(Ok(state))) => {
            info!(device, user = %session.user_id, state = state.as_str(), "device {}d", action.as_str());
            Redirect::to("/fleet/enrolment").into_response()
        }
        Ok(Ok(Err(e @ ActionError::UnknownDevice(_)))) => (StatusCode::NOT_FOUND, e.to_string()).into_response(),
        Ok(Ok(Err(e))) => (StatusCode::CONFLICT, e.to_string()).into_response(),
        Ok(Err(e)) | Err(e) => (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
    }
}
