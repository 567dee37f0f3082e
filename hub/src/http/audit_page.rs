//! The auditor's console: the audit log and its chain check, and the fence that keeps an
//! auditor's session out of clinical pages (an auditor reads who did what, not the studies).

use super::AppState;
use super::console::{Page, esc, layout, local_time};
use super::session::{Role, session_of};
use axum::Router;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

/// The routes of this module.
pub fn routes() -> Router<AppState> {
    Router::new().route("/audit", get(audit_page))
}

/// Paths an auditor's session may use.
fn auditor_may(path: &str) -> bool {
    path == "/audit" || path == "/api/audit" || path.starts_with("/api/audit/") || path == "/login" || path == "/logout"
}

/// Middleware: a request that carries an auditor's session gets 403 outside the audit pages.
pub async fn auditor_fence(State(s): State<AppState>, req: Request, next: Next) -> Response {
    if auditor_may(req.uri().path()) {
        return next.run(req).await;
    }
    let (parts, body) = req.into_parts();
    let auditor = session_of(&parts, &s).await.is_some_and(|x| x.role == Role::Auditor);
    if auditor {
        return (StatusCode::FORBIDDEN, "审计员只能查看审计日志 / auditors see the audit log only").into_response();
    }
    next.run(Request::from_parts(parts, body)).await
}

async fn audit_page(State(s): State<AppState>, page: Page) -> Response {
    let Some(session) = page.session else { return Redirect::to("/login").into_response() };
    let lang = page.lang;
    if let Err(e) = super::api::auditor_only(&s, &session, "read audit log").await {
        return (e.0, e.1).into_response();
    }
    let Ok(chain) = super::api::verify_chain(&s).await else {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    };
    let Ok(Ok(rows)) = s.store.call(|db| db.audit_latest(500)).await else {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    };
    let status = match chain {
        Ok(sum) => format!(
            r#"<p class="ok">{} {} · {} <code>{}</code></p>"#,
            lang.t("审计链完整，条目数", "Audit chain intact, entries"),
            sum.entries,
            lang.t("链头", "head"),
            esc(&sum.head)
        ),
        Err(fault) => format!(
            r#"<p class="bad">{}: {}</p>"#,
            lang.t("审计链已被篡改", "Audit chain broken"),
            esc(&fault.to_string())
        ),
    };
    let head = [
        lang.t("编号", "Id"),
        lang.t("时间", "Time"),
        lang.t("用户", "User"),
        lang.t("角色", "Role"),
        lang.t("操作", "Action"),
        lang.t("对象", "Object"),
        lang.t("结果", "Result"),
        lang.t("来源地址", "Source"),
        lang.t("详情", "Detail"),
    ]
    .map(|h| format!("<th>{h}</th>"))
    .concat();
    let body: String = rows
        .iter()
        .map(|r| {
            format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                r.id,
                esc(&local_time(r.at_ms)),
                esc(&r.user),
                esc(&r.role),
                esc(&r.action),
                esc(&r.object),
                esc(&r.result),
                esc(&r.source),
                esc(&r.detail)
            )
        })
        .collect();
    let html = format!(r#"{status}<table class="audit"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"#);
    layout(lang, lang.t("审计日志", "Audit log"), Some(&session), &html).into_response()
}
