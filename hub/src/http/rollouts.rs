//! Rollouts over HTTP: each device's signed release assignment, and the console page where
//! county IT watches rollouts device by device and pauses, resumes, approves or aborts them.
//!
//! | method | path | what |
//! | --- | --- | --- |
//! | GET | `/fleet/assignment/{device}` | the device's [`UpdateAssignment`], a hub-signed envelope |
//! | GET | `/api/rollouts` | every rollout with its figures (JSON) |
//! | GET | `/api/rollouts/{id}/devices` | where each device of a rollout stands (JSON) |
//! | GET | `/fleet/rollouts` | console: rollouts and their devices (county IT) |
//! | POST | `/fleet/rollouts/{id}/{pause,resume,approve,abort}` | console form with CSRF (county IT) |

use super::AppState;
use super::auth::Specialist;
use super::console::{Lang, Page, esc, layout, local_time};
use super::session::{Role, Session};
use crate::clock::now_ms;
use crate::store::StoreError;
use crate::store::rollouts::{Action, Rollout, RolloutDevice};
use axum::extract::{Form, Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use tracing::{info, warn};
use yilian_protocol::message::{AssignedTarget, UpdateAssignment};

/// The rollout routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/fleet/assignment/{device}", get(assignment))
        .route("/api/rollouts", get(list))
        .route("/api/rollouts/{id}/devices", get(devices))
        .route("/fleet/rollouts", get(page))
        .route("/fleet/rollouts/{id}/{action}", post(act))
}

fn unavailable(e: impl std::fmt::Display) -> Response {
    (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response()
}

/// The device's assignment, signed for its ack topic. Public like the repository itself: it
/// names only offline-signed targets, and the agent trusts it only under the hub's key.
async fn assignment(State(s): State<AppState>, Path(device): Path<String>) -> Response {
    let d = device.clone();
    let found = s
        .store
        .call(move |db| -> Result<_, StoreError> {
            let Some(keys) = db.device_keys(&d, now_ms())? else { return Ok(None) };
            Ok(Some((keys, db.assignments(&d)?)))
        })
        .await;
    let (keys, assigned) = match found {
        Ok(Ok(Some(v))) => v,
        Ok(Ok(None)) => return (StatusCode::NOT_FOUND, "no such device").into_response(),
        Ok(Err(e)) | Err(e) => return unavailable(e),
    };
    if !keys.state.may_act() {
        return (StatusCode::FORBIDDEN, format!("device {device} is {}", keys.state.as_str())).into_response();
    }
    let mut targets = Vec::new();
    for a in assigned {
        let Ok(sha) = hex::decode(&a.sha256) else { continue };
        let Ok(sha256) = <[u8; 32]>::try_from(sha.as_slice()) else { continue };
        targets.push(AssignedTarget {
            rollout_id: u64::try_from(a.rollout_id).unwrap_or(0),
            name: a.target_name,
            version: a.version,
            sha256,
        });
    }
    let body = UpdateAssignment { issued_at_ms: now_ms(), targets };
    match s.publisher.seal_assignment(&keys.site, &device, &body) {
        Ok(bytes) => ([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response(),
        Err(e) => {
            warn!(device, error = %e, "cannot seal an assignment");
            (StatusCode::INTERNAL_SERVER_ERROR, e).into_response()
        }
    }
}

async fn list(State(s): State<AppState>, _who: Specialist) -> Response {
    match s.store.call(|db| db.rollouts()).await {
        Ok(Ok(r)) => Json(r).into_response(),
        Ok(Err(e)) | Err(e) => unavailable(e),
    }
}

async fn devices(State(s): State<AppState>, _who: Specialist, Path(id): Path<i64>) -> Response {
    match s.store.call(move |db| db.rollout(id).and_then(|r| r.map(|_| db.rollout_devices(id)).transpose())).await {
        Ok(Ok(Some(d))) => Json(d).into_response(),
        Ok(Ok(None)) => (StatusCode::NOT_FOUND, format!("no rollout {id}")).into_response(),
        Ok(Err(e)) | Err(e) => unavailable(e),
    }
}

fn state_word(lang: Lang, state: &str) -> &str {
    match state {
        "running" => lang.t("进行中", "running"),
        "paused" => lang.t("已暂停", "paused"),
        "waiting" => lang.t("待批准", "waiting for approval"),
        "halted" => lang.t("已自动停止", "halted"),
        "aborted" => lang.t("已中止", "aborted"),
        "completed" => lang.t("已完成", "completed"),
        "waiting-stage" => lang.t("未开始", "waiting"),
        "assigned" => lang.t("已指派", "assigned"),
        "downloading" => lang.t("下载中", "downloading"),
        "deferred" => lang.t("推迟", "deferred"),
        "on trial" => lang.t("试运行", "on trial"),
        "committed" => lang.t("已确认", "committed"),
        "rolled back" => lang.t("已回退", "rolled back"),
        "timed out" => lang.t("超时", "timed out"),
        "withdrawn" => lang.t("已撤回", "withdrawn"),
        other => other,
    }
}

fn actions_for(state: &str) -> &'static [Action] {
    match state {
        "running" => &[Action::Pause, Action::Abort],
        "waiting" => &[Action::Approve, Action::Pause, Action::Abort],
        "paused" | "halted" => &[Action::Resume, Action::Abort],
        _ => &[],
    }
}

fn action_form(lang: Lang, id: i64, csrf: &str, a: Action) -> String {
    let label = match a {
        Action::Pause => lang.t("暂停", "Pause"),
        Action::Resume => lang.t("继续", "Resume"),
        Action::Approve => lang.t("批准下一阶段", "Approve next stage"),
        Action::Abort => lang.t("中止", "Abort"),
    };
    format!(
        r#"<form method="post" action="/fleet/rollouts/{id}/{a}" class="inline"><input type="hidden" name="csrf" value="{}"><button data-action="{a}">{label}</button></form>"#,
        esc(csrf),
        a = a.as_str(),
    )
}

fn device_row(lang: Lang, r: &Rollout, d: &RolloutDevice) -> String {
    let state = if d.state == "waiting" { "waiting-stage" } else { d.state.as_str() };
    let mut word = esc(state_word(lang, state));
    if d.state == "downloading" {
        word.push_str(&format!(" {:.0}%", d.download_per_mille as f64 / 10.0));
    }
    format!(
        r#"<tr data-device="{}" data-state="{}"><td>{}</td><td>{}</td><td>{}</td><td>{word}</td><td>{}</td></tr>"#,
        esc(&d.device_id),
        esc(&d.state),
        esc(r.stages.get(d.stage).map_or("", String::as_str)),
        esc(&d.site_id),
        esc(&d.device_id),
        esc(&d.detail),
    )
}

async fn page(State(s): State<AppState>, page: Page) -> Response {
    let Some(session) = page.session else { return Redirect::to("/login").into_response() };
    if session.role != Role::Admin {
        return (StatusCode::FORBIDDEN, "county IT only").into_response();
    }
    let lang = page.lang;
    let found = s
        .store
        .call(|db| -> Result<_, StoreError> {
            let rollouts = db.rollouts()?;
            let mut out = Vec::new();
            for r in rollouts {
                let devices = db.rollout_devices(r.rollout_id)?;
                out.push((r, devices));
            }
            Ok(out)
        })
        .await;
    let rollouts = match found {
        Ok(Ok(r)) => r,
        Ok(Err(e)) | Err(e) => return unavailable(e),
    };
    let mut body = format!(
        "<p>{}</p>",
        lang.t(
            "发布按阶段推进：每一阶段确认成功的设备达到比例后进入下一阶段；失败（回退或超时）超过阈值时整个发布自动停止，后续阶段不受影响。",
            "A rollout goes stage by stage: the next stage opens once enough devices of this one have committed; when too many fail (rolled back or timed out) the whole rollout halts and later stages are left untouched."
        )
    );
    if rollouts.is_empty() {
        body.push_str(&format!(
            "<p>{}</p>",
            lang.t(
                "还没有发布。用 yilian-hub rollout start 开始。",
                "No rollouts yet. Start one with yilian-hub rollout start."
            )
        ));
    }
    for (r, devices) in &rollouts {
        let actions: String =
            actions_for(&r.state).iter().map(|a| action_form(lang, r.rollout_id, &session.csrf, *a)).collect();
        let stages: Vec<String> = r
            .stages
            .iter()
            .zip(&r.stage_devices)
            .enumerate()
            .map(
                |(i, (n, c))| {
                    if i == r.stage { format!("<b>{} ({c})</b>", esc(n)) } else { format!("{} ({c})", esc(n)) }
                },
            )
            .collect();
        let rows: String = devices.iter().map(|d| device_row(lang, r, d)).collect();
        body.push_str(&format!(
            r#"<section class="rollout" data-rollout="{id}" data-state="{state}"><h2>{} {id}: {} {}</h2>
<p>{}: <span class="state">{}</span> {} · {}: {} · {} {} / {} {} / {} {} · {} {}</p><p>{actions}</p>
<table><thead><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr></thead><tbody>{rows}</tbody></table></section>"#,
            lang.t("发布", "Rollout"),
            esc(r.kind.as_str()),
            esc(&r.version),
            lang.t("状态", "State"),
            esc(state_word(lang, &r.state)),
            esc(&r.reason),
            lang.t("阶段", "Stages"),
            stages.join(" → "),
            r.assigned,
            lang.t("已指派", "assigned"),
            r.committed,
            lang.t("已确认", "committed"),
            r.failed,
            lang.t("失败", "failed"),
            lang.t("开始于", "started"),
            local_time(r.created_at_ms),
            lang.t("阶段", "Stage"),
            lang.t("卫生院", "Clinic"),
            lang.t("设备", "Device"),
            lang.t("状态", "State"),
            lang.t("原因", "Reason"),
            id = r.rollout_id,
            state = esc(&r.state),
        ));
    }
    layout(lang, lang.t("发布管理", "Rollouts"), Some(&session), &body).into_response()
}

#[derive(Deserialize)]
struct ActForm {
    csrf: String,
}

async fn act(
    State(s): State<AppState>,
    session: Session,
    Path((id, action)): Path<(i64, String)>,
    Form(f): Form<ActForm>,
) -> Response {
    if let Err(refused) = session.admin_form(&f.csrf) {
        return refused.into_response();
    }
    let Some(action) = Action::parse(&action) else { return StatusCode::NOT_FOUND.into_response() };
    let user = session.user_id.clone();
    match s.store.call(move |db| db.rollout_action(id, action, &user, now_ms())).await {
        Ok(Ok(state)) => {
            info!(rollout = id, user = %session.user_id, state, "rollout {}", action.as_str());
            Redirect::to("/fleet/rollouts").into_response()
        }
        Ok(Err(e @ StoreError::Rollout(_))) => (StatusCode::CONFLICT, e.to_string()).into_response(),
        Ok(Err(e)) | Err(e) => unavailable(e),
    }
}
