//! JSON API under `/api`.
//!
//! | method | path | what |
//! | --- | --- | --- |
//! | GET | `/api/health` | liveness (no auth) |
//! | GET | `/api/stats` | counts, rejects per reason |
//! | GET | `/api/queue` | unreported studies, most urgent then longest waiting |
//! | GET | `/api/studies` | recent studies, any state |
//! | GET | `/api/studies/{uid}` | one study with samples (raw and µV), median beat, the cart's measurements and statements, annotations, original files, and its report |
//! | POST | `/api/studies/{uid}/claim` | claim for the caller |
//! | POST | `/api/studies/{uid}/release` | release the caller's claim |
//! | POST | `/api/studies/{uid}/report` | `{findings, conclusion}`: sign and send to the clinic |
//! | GET | `/api/images` | image studies: receiving, complete or partial (with what is missing), claim and report |
//! | GET | `/api/devices` | enrolled devices and their status |
//! | GET | `/api/audit` | the latest audit entries (who viewed, claimed, reported what, when, from where); auditors only |
//! | GET | `/api/audit/verify` | the audit chain checked end to end: entries and head, or the first bad entry; auditors only |
//! | GET | `/api/devices/{device}/output` | the latest lines the device printed |
//! | GET | `/api/devices/{device}/streams` | monitoring streams, with gaps |
//! | GET | `/api/devices/{device}/streams/{stream}/samples?from=&count=` | stream samples |

use super::AppState;
use super::actor::{self, Actor};
use super::auth::Specialist;
use crate::clock::now_ms;
use crate::queue::ClaimError;
use crate::store::{ReportDraft, StoreError};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tracing::info;

/// An API error with its HTTP status.
#[derive(Debug)]
pub struct ApiError(pub StatusCode, pub String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        Self(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
    }
}

impl From<ClaimError> for ApiError {
    fn from(e: ClaimError) -> Self {
        let status = match e {
            ClaimError::NotFound => StatusCode::NOT_FOUND,
            _ => StatusCode::CONFLICT,
        };
        Self(status, e.to_string())
    }
}

type ApiResult<T> = Result<Json<T>, ApiError>;

async fn call<R: Send + 'static>(
    s: &AppState,
    f: impl FnOnce(&mut crate::store::Db) -> Result<R, StoreError> + Send + 'static,
) -> Result<R, ApiError> {
    Ok(s.store.call(f).await??)
}

/// Writes who did what to which study into the audit log (before the answer goes out), with no
/// role or source address; handlers use [`super::actor::record`], which has both.
pub async fn audit(s: &AppState, who: &str, action: &'static str, subject: &str) -> Result<(), ApiError> {
    let (who, subject) = (who.to_string(), subject.to_string());
    call(s, move |db| db.audit(&who, action, &subject, "", now_ms())).await
}

/// The `/api` routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/health", get(|| async { Json(json!({ "ok": true })) }))
        .route("/api/stats", get(stats))
        .route("/api/queue", get(queue))
        .route("/api/studies", get(studies))
        .route("/api/studies/{uid}", get(study))
        .route("/api/images", get(image_studies))
        .route("/api/studies/{uid}/claim", post(claim))
        .route("/api/studies/{uid}/release", post(release))
        .route("/api/studies/{uid}/priority", post(set_priority))
        .route("/api/studies/{uid}/report", post(report))
        .route("/api/devices", get(devices))
        .route("/api/audit", get(audit_log))
        .route("/api/audit/verify", get(audit_verify))
        .route("/api/devices/{device}/output", get(device_output))
        .route("/api/devices/{device}/streams", get(streams))
        .route("/api/devices/{device}/streams/{stream}/samples", get(stream_samples))
}

async fn stats(State(s): State<AppState>, _who: Specialist) -> Result<Json<serde_json::Value>, ApiError> {
    let counts = call(&s, |db| db.counts(now_ms())).await?;
    let rejects = s.rejects.snapshot();
    Ok(Json(json!({
        "studies": counts,
        "rejected": rejects,
        "rejected_total": rejects.values().sum::<u64>(),
    })))
}

async fn queue(State(s): State<AppState>, _who: Specialist) -> ApiResult<Vec<crate::store::StudyRow>> {
    Ok(Json(call(&s, |db| db.queue(now_ms())).await?))
}

async fn image_studies(
    State(s): State<AppState>,
    _who: Specialist,
) -> ApiResult<Vec<crate::store::images::ImageStudyRow>> {
    Ok(Json(call(&s, |db| db.image_studies(500)).await?))
}

async fn studies(State(s): State<AppState>, _who: Specialist) -> ApiResult<Vec<crate::store::StudyRow>> {
    Ok(Json(call(&s, |db| db.studies(now_ms(), 500)).await?))
}

/// One lead of a study, as the viewer needs it.
#[derive(Serialize)]
struct LeadView {
    name: String,
    /// Computed by the cart from other leads.
    derived: bool,
    /// Nanovolts per stored integer.
    resolution_nv: f64,
    /// Stored integers.
    samples: Vec<i32>,
    /// Microvolts (`samples × resolution_nv / 1000`).
    samples_uv: Vec<f64>,
}

async fn study(
    State(s): State<AppState>,
    who: Specialist,
    Path(uid): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let u = uid.clone();
    let found = call(&s, move |db| db.study(&u, now_ms())).await?;
    let Some((row, body)) = found else {
        return Err(ApiError(StatusCode::NOT_FOUND, "no such study".into()));
    };
    let mut leads = Vec::with_capacity(body.leads.len());
    for l in &body.leads {
        let samples =
            l.decode().map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, format!("lead {}: {e}", l.lead)))?;
        let scale = l.resolution_nv / 1000.0;
        let samples_uv = samples.iter().map(|v| f64::from(*v) * scale).collect();
        leads.push(LeadView {
            name: l.lead.clone(),
            derived: l.derived,
            resolution_nv: l.resolution_nv,
            samples,
            samples_uv,
        });
    }
    info!(specialist = %who.id, study = %uid, "study viewed");
    actor::ok(&s, &who.actor(), "view study", &uid).await?;
    let median = match &body.median_beat {
        Some(m) => {
            let mut beat = Vec::with_capacity(m.leads.len());
            for l in &m.leads {
                let samples = l
                    .decode()
                    .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, format!("median lead {}: {e}", l.lead)))?;
                let samples_uv = samples.iter().map(|v| f64::from(*v) * l.resolution_nv / 1000.0).collect();
                beat.push(LeadView {
                    name: l.lead.clone(),
                    derived: l.derived,
                    resolution_nv: l.resolution_nv,
                    samples,
                    samples_uv,
                });
            }
            json!({ "sample_rate_hz": m.sample_rate_hz, "leads": beat })
        }
        None => serde_json::Value::Null,
    };
    let source = body.source.as_ref().map(|src| {
        json!({
            "format": src.format,
            "format_version": src.format_version,
            "files": src.files.iter().enumerate().map(|(i, f)| json!({
                "name": f.name,
                "size": f.size,
                "sha256": hex::encode(f.sha256),
                "url": format!("/api/studies/{uid}/original/{i}"),
            })).collect::<Vec<_>>(),
        })
    });
    Ok(Json(json!({
        "study": row,
        "device_model": body.device_model,
        "warnings": body.warnings,
        "leads": leads,
        "median_beat": median,
        "measurements": body.measurements.iter().map(|m| json!({ "name": m.name, "value": m.value, "unit": m.unit })).collect::<Vec<_>>(),
        "interpretation": body.interpretation,
        "annotations": body.annotations.iter().map(|a| json!({ "sample": a.sample, "lead": a.lead, "label": a.label, "text": a.text })).collect::<Vec<_>>(),
        "patient_age_years": body.patient.age_years,
        "source": source,
    })))
}

async fn claim(
    State(s): State<AppState>,
    who: Specialist,
    Path(uid): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let (u, id, ttl) = (uid.clone(), who.id.clone(), s.claim_ttl_ms);
    let expires = call(&s, move |db| db.claim(&u, &id, now_ms(), ttl)).await??;
    info!(specialist = %who.id, study = %uid, "claimed");
    actor::ok(&s, &who.actor(), "claim", &uid).await?;
    tell_clinic_of_claim(&s, &uid, &who.name, true).await;
    Ok(Json(json!({ "study_uid": uid, "claimed_by": who.id, "claim_expires_ms": expires })))
}

async fn release(
    State(s): State<AppState>,
    who: Specialist,
    Path(uid): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let (u, id) = (uid.clone(), who.id.clone());
    call(&s, move |db| db.release(&u, &id, now_ms())).await??;
    actor::ok(&s, &who.actor(), "release", &uid).await?;
    tell_clinic_of_claim(&s, &uid, &who.name, false).await;
    Ok(Json(json!({ "study_uid": uid, "released": true })))
}

/// Tells the clinic that sent study `uid` that a specialist took it up or put it back (for its
/// clinic page). Best effort: a lost notice only leaves a step of the page's journey blank
/// until the report arrives.
pub async fn tell_clinic_of_claim(s: &AppState, uid: &str, specialist_name: &str, claimed: bool) {
    let u = uid.to_string();
    let origin = call(s, move |db| {
        let Some((site, device)) = db.study_origin(&u)? else { return Ok(None) };
        let active =
            db.device_keys(&device, now_ms())?.is_some_and(|d| d.state == crate::store::lifecycle::DeviceState::Active);
        Ok(active.then_some((site, device)))
    })
    .await;
    if let Ok(Some((site, device))) = origin {
        let claim = yilian_protocol::message::StudyClaim {
            study_uid: uid.to_string(),
            specialist_name: specialist_name.to_string(),
            claimed,
            at_ms: now_ms(),
        };
        s.publisher.publish_notice(&site, &device, &yilian_protocol::message::Payload::StudyClaim(claim));
    }
}

#[derive(Deserialize)]
struct PriorityForm {
    priority: String,
}

/// The specialist sets a waiting study's priority (e.g. back to what the clinic sent after the
/// pre-read raised it). Audited.
async fn set_priority(
    State(s): State<AppState>,
    who: Specialist,
    Path(uid): Path<String>,
    Json(form): Json<PriorityForm>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Some(priority) = yilian_protocol::message::Priority::parse(&form.priority) else {
        return Err(ApiError(StatusCode::UNPROCESSABLE_ENTITY, "priority must be stat, urgent or routine".into()));
    };
    let u = uid.clone();
    if !call(&s, move |db| db.set_priority(&u, priority)).await? {
        return Err(ApiError(StatusCode::NOT_FOUND, "no such study waiting to be read".into()));
    }
    info!(specialist = %who.id, study = %uid, priority = priority.as_str(), "priority set");
    actor::record(&s, &who.actor(), "priority", &uid, crate::store::audit::RESULT_OK, priority.as_str()).await?;
    Ok(Json(json!({ "study_uid": uid, "priority": priority.as_str() })))
}

/// A specialist's report form.
#[derive(Deserialize)]
struct ReportForm {
    findings: String,
    conclusion: String,
    /// A critical result (the clinic must acknowledge it, or it is escalated).
    #[serde(default)]
    critical: bool,
}

const TEXT_MAX: usize = 16 * 1024;

async fn report(
    State(s): State<AppState>,
    who: Specialist,
    Path(uid): Path<String>,
    Json(form): Json<ReportForm>,
) -> Result<(StatusCode, Json<crate::store::ReportRow>), ApiError> {
    let row = submit_report(&s, &who.actor(), &who.name, &uid, form.findings, form.conclusion, form.critical).await?;
    Ok((StatusCode::CREATED, Json(row)))
}

/// Signs a specialist's report in the store, audits it, and publishes it to the clinic (the
/// API and the console's form both come here).
pub async fn submit_report(
    s: &AppState,
    who: &Actor,
    who_name: &str,
    uid: &str,
    findings: String,
    conclusion: String,
    critical: bool,
) -> Result<crate::store::ReportRow, ApiError> {
    if conclusion.trim().is_empty() {
        return Err(ApiError(StatusCode::UNPROCESSABLE_ENTITY, "conclusion is required".into()));
    }
    if findings.len() > TEXT_MAX || conclusion.len() > TEXT_MAX {
        return Err(ApiError(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("findings and conclusion are limited to {TEXT_MAX} bytes each"),
        ));
    }
    let publisher = s.publisher.clone();
    let draft = ReportDraft {
        study_uid: uid.to_string(),
        specialist_id: who.user.clone(),
        specialist_name: who_name.to_string(),
        findings,
        conclusion,
        critical,
    };
    let row = call(s, move |db| {
        db.create_report(&draft, now_ms(), |r, seq, site, device| publisher.seal_report(r, seq, site, device))
    })
    .await??;
    info!(specialist = %who.user, study = %uid, report = %row.report_id, "report signed");
    crate::failpoint::hit_process("report-signed");
    // A critical result's first step in the audit log: who marked it, on which report.
    let detail = if critical { format!("{} critical", row.report_id) } else { row.report_id.clone() };
    actor::record(s, who, "report", uid, crate::store::audit::RESULT_OK, &detail).await?;
    // Nothing goes down to a revoked device (a stolen cart); the report stays at the hub.
    let dev = row.device_id.clone();
    let may_receive = call(s, move |db| {
        Ok(db.device_keys(&dev, now_ms())?.is_some_and(|d| d.state == crate::store::lifecycle::DeviceState::Active))
    })
    .await?;
    if may_receive && s.publisher.publish_report(&row.site_id, &row.device_id, row.envelope.clone()) {
        let rid = row.report_id.clone();
        call(s, move |db| db.mark_published(&rid, now_ms())).await?;
    }
    if may_receive && critical {
        // Right behind the report on the same topic, so the clinic's alarm names its conclusion.
        let rid = row.report_id.clone();
        if let Some((_, notice)) = call(s, move |db| db.critical_notice(&rid)).await? {
            let payload = yilian_protocol::message::Payload::CriticalNotice(notice);
            s.publisher.publish_notice(&row.site_id, &row.device_id, &payload);
        }
    }
    Ok(row)
}

/// Auditors only (a console session with the auditor role); a refused read is audited too.
async fn audit_log(
    State(s): State<AppState>,
    who: super::session::Session,
) -> ApiResult<Vec<crate::store::AuditEntry>> {
    auditor_only(&s, &who, "read audit log").await?;
    Ok(Json(call(&s, |db| db.audit_log(500)).await?))
}

/// The chain check, for the auditor.
async fn audit_verify(
    State(s): State<AppState>,
    who: super::session::Session,
) -> Result<Json<serde_json::Value>, ApiError> {
    auditor_only(&s, &who, "verify audit log").await?;
    Ok(Json(match verify_chain(&s).await? {
        Ok(sum) => json!({ "ok": true, "entries": sum.entries, "last_id": sum.last_id, "head": sum.head }),
        Err(fault) => json!({ "ok": false, "fault": fault.to_string() }),
    }))
}

/// Checks the audit chain in steps of a few thousand entries, so the store thread goes on
/// serving the clinics in between.
pub(crate) async fn verify_chain(
    s: &AppState,
) -> Result<Result<crate::store::audit::ChainSummary, crate::store::audit::ChainFault>, ApiError> {
    let mut check = crate::store::audit::ChainCheck::default();
    loop {
        let (c, step) = call(s, move |db| {
            let step = db.audit_verify_step(&mut check, 5000)?;
            Ok((check, step))
        })
        .await?;
        check = c;
        if let Some(done) = step {
            return Ok(done);
        }
    }
}

/// Lets auditors through and records the read; anyone else gets 403, also recorded.
pub(crate) async fn auditor_only(s: &AppState, who: &super::session::Session, action: &str) -> Result<(), ApiError> {
    if who.role != super::session::Role::Auditor {
        actor::record(s, &who.actor(), action, "audit log", "denied", "").await?;
        return Err(ApiError(StatusCode::FORBIDDEN, "auditors only / 仅限审计员".into()));
    }
    actor::ok(s, &who.actor(), action, "audit log").await
}

async fn devices(State(s): State<AppState>, _who: Specialist) -> ApiResult<Vec<crate::store::DeviceRow>> {
    Ok(Json(call(&s, |db| db.devices()).await?))
}

async fn device_output(
    State(s): State<AppState>,
    who: Specialist,
    Path(device): Path<String>,
) -> ApiResult<Vec<crate::store::OutputLine>> {
    actor::ok(&s, &who.actor(), "view device output", &device).await?;
    Ok(Json(call(&s, move |db| db.device_output(&device, 200)).await?))
}

async fn streams(
    State(s): State<AppState>,
    _who: Specialist,
    Path(device): Path<String>,
) -> ApiResult<Vec<crate::store::StreamSummary>> {
    Ok(Json(call(&s, move |db| db.streams(&device)).await?))
}

/// Query of `/samples`.
#[derive(Deserialize)]
struct Range {
    from: i64,
    count: i64,
}

async fn stream_samples(
    State(s): State<AppState>,
    who: Specialist,
    Path((device, stream)): Path<(String, i64)>,
    Query(r): Query<Range>,
) -> Result<Json<serde_json::Value>, ApiError> {
    if r.count <= 0 || r.count > 600_000 || r.from < 0 || r.from.checked_add(r.count).is_none() {
        return Err(ApiError(StatusCode::BAD_REQUEST, "count must be 1..=600000 and from >= 0".into()));
    }
    actor::record(
        &s,
        &who.actor(),
        "view monitoring",
        &format!("{device}/{stream}"),
        "ok",
        &format!("from {} count {}", r.from, r.count),
    )
    .await?;
    let leads = call(&s, move |db| db.stream_samples(&device, stream, r.from, r.count)).await?;
    let leads: Vec<_> = leads
        .into_iter()
        .map(|(name, res, samples)| json!({ "name": name, "resolution_nv": res, "samples": samples }))
        .collect();
    Ok(Json(json!({ "from": r.from, "leads": leads })))
}
