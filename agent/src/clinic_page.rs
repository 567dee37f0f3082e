//! The clinic page: a small local web page on the clinic PC that shows what the agent holds and
//! where it is going: image studies (arriving, waiting, being sent with progress, confirmed by the
//! hub), instances set aside as conflicts, cart files refused with their reason, and the reports
//! received. Clinic staff can raise or lower a waiting image study's priority from it.
//!
//! Simplified Chinese by default, English with `?lang=en`. It listens on the clinic PC only
//! (`127.0.0.1` by default); a change needs the page's own token, so another site cannot make the
//! browser post one.

use crate::config::AgentConfig;
use crate::dicom_node::{self, ReadyStudy};
use axum::Router;
use axum::extract::{Form, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use std::fmt::Write;
use std::path::PathBuf;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use tracing::info;
use yilian_protocol::message::Priority;

#[derive(Clone)]
struct PageState {
    cfg: Arc<AgentConfig>,
    token: Arc<String>,
}

#[derive(Deserialize)]
struct LangQuery {
    lang: Option<String>,
}

#[derive(Deserialize)]
struct PriorityForm {
    priority: String,
    token: String,
}

/// Serves the page on `listen` until `shutdown`.
pub async fn run(listen: &str, cfg: AgentConfig, shutdown: CancellationToken) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    info!(addr = %listener.local_addr()?, "clinic page listening");
    let token = {
        use ring::rand::SecureRandom;
        let mut b = [0u8; 16];
        ring::rand::SystemRandom::new().fill(&mut b).map_err(|_| std::io::Error::other("no randomness"))?;
        hex::encode(b)
    };
    let state = PageState { cfg: Arc::new(cfg), token: Arc::new(token) };
    let app = Router::new()
        .route("/", get(page))
        .route("/images/{folder}/priority", post(set_priority))
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

async fn page(State(s): State<PageState>, Query(q): Query<LangQuery>) -> Response {
    let en = q.lang.as_deref() == Some("en");
    let cfg = s.cfg.clone();
    let token = s.token.clone();
    match tokio::task::spawn_blocking(move || render(&cfg, &token, en)).await {
        Ok(html) => Html(html).into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

fn render(cfg: &AgentConfig, token: &str, en: bool) -> String {
    let mut out = format!(
        r#"<!doctype html><html lang="{}"><head><meta charset="utf-8"><title>{}</title>
<style>body{{font-family:sans-serif;margin:1.5em}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:.3em .6em;text-align:left}}.warn{{color:#b00}}</style></head><body>
<p><a href="?lang=zh">中文</a> <a href="?lang=en">English</a></p><h1>{} · {} / {}</h1>"#,
        if en { "en" } else { "zh-CN" },
        t(en, "医联 · 卫生院", "Yilian · clinic"),
        t(en, "医联", "Yilian"),
        esc(&cfg.site),
        esc(&cfg.device)
    );
    if let Some(node) = &cfg.dicom {
        out += &images(&node.dir, token, en);
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
    out += "</body></html>";
    out
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

/// A report's PDF, served only if it still verifies against the hub's signature beside it.
async fn report_pdf(State(s): State<PageState>, Path(file): Path<String>) -> Response {
    let Some(stem) = file.strip_suffix(".pdf") else { return StatusCode::NOT_FOUND.into_response() };
    if stem.is_empty() || !stem.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        return StatusCode::NOT_FOUND.into_response();
    }
    let cfg = s.cfg.clone();
    let path = cfg.reports_dir.join(&file);
    let checked = tokio::task::spawn_blocking(move || {
        crate::report_pdf::verify_file(&cfg, &path)
            .map_err(|e| e.to_string())
            .and_then(|_| std::fs::read(&path).map_err(|e| e.to_string()))
    })
    .await;
    match checked {
        Ok(Ok(pdf)) => ([(axum::http::header::CONTENT_TYPE, "application/pdf")], pdf).into_response(),
        Ok(Err(e)) => (StatusCode::CONFLICT, format!("this report PDF does not verify: {e}")).into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}
