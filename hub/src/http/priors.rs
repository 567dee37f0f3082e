//! The patient's earlier ECGs on the study page: every one in the county with how it matched
//! and its report's conclusion, one of them drawn beside the new ECG or over it on the same grid,
//! and what the pre-read finds new since the last certain one.

use super::AppState;
use super::actor;
use super::console::{Lang, esc, local_time};
use super::viewer::{CompareMode, Paper, Side, render_compare};
use crate::clock::now_ms;
use crate::store::priors::{Prior, PriorMatch};
use yilian_analysis::preread::Summary;
use yilian_protocol::message::Study;

/// Earlier ECGs listed at most.
const LISTED: usize = 10;
/// The overlay aligns each tracing on its first QRS complex after this much, s.
const ALIGN_S: f64 = 0.4;

/// What the reader asked to compare.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct CompareQuery {
    /// The prior study to draw.
    pub prior: Option<String>,
    /// `side` (default) or `overlay`.
    pub compare: Option<String>,
}

fn match_text(lang: Lang, m: PriorMatch) -> &'static str {
    match m {
        PriorMatch::Same => lang.t("同一患者（患者ID与姓名一致）", "same patient (identifier and name)"),
        PriorMatch::NameAndBirth => lang.t("可能同一人（仅姓名与出生日期一致）", "possible: name and birth date only"),
        PriorMatch::IdOnly => lang.t("可能同一人（患者ID相同，姓名不同）", "possible: same identifier, another name"),
    }
}

/// The first sample at which `leads` has a QRS complex after [`ALIGN_S`], less [`ALIGN_S`].
fn aligned_start(leads: &[(String, Vec<f64>)], rate_hz: f64) -> usize {
    let views: Vec<&[f64]> = leads.iter().map(|(_, x)| x.as_slice()).collect();
    let lead_in = (ALIGN_S * rate_hz) as usize;
    yilian_analysis::qrs::detect(&views, rate_hz).beats.into_iter().find(|&q| q >= lead_in).map_or(0, |q| q - lead_in)
}

fn caption(lang: Lang, label: &str, row: &crate::store::StudyRow, conclusion: Option<&str>) -> String {
    let mut c = format!("{label} {} · {}", local_time(row.acquired_at_ms), row.site_id);
    if let Some(text) = conclusion {
        c += &format!(" · {}: {text}", lang.t("结论", "conclusion"));
    }
    c
}

/// The patient's earlier ECGs (None when they cannot be looked up).
pub async fn lookup(s: &AppState, uid: &str) -> Option<Vec<Prior>> {
    let u = uid.to_string();
    s.store.call(move |db| db.priors(&u, now_ms(), LISTED)).await.ok()?.ok()
}

/// The pre-read summary of study `uid`: stored by the pre-read, or computed now (a study
/// reported before the hub pre-read it) and stored.
pub async fn summary_of(s: &AppState, uid: &str) -> Option<Summary> {
    let u = uid.to_string();
    if let Ok(Ok(Some(json))) = s.store.call(move |db| db.preread_summary(&u)).await
        && let Ok(summary) = serde_json::from_str(&json)
    {
        return Some(summary);
    }
    let u = uid.to_string();
    let (_, study) = s.store.call(move |db| db.study(&u, now_ms())).await.ok()?.ok()??;
    let summary = tokio::task::spawn_blocking(move || crate::preread::preread_of(&study).summary()).await.ok()?;
    let (u, json) = (uid.to_string(), serde_json::to_string(&summary).ok()?);
    let _ = s.store.call(move |db| db.set_preread_summary(&u, &json)).await;
    Some(summary)
}

/// The section of the study page: the list and, when one was chosen, the comparison.
pub async fn section(
    s: &AppState,
    actor: &actor::Actor,
    lang: Lang,
    study: &Study,
    priors: Option<&[Prior]>,
    q: &CompareQuery,
    paper: Paper,
) -> String {
    let priors = match priors {
        Some(p) => p,
        None => {
            return format!(
                r#"<section class="priors"><h3>{}</h3><p class="error">{}</p></section>"#,
                lang.t("既往心电图", "Prior ECGs"),
                lang.t("暂时无法查询既往心电图", "prior ECGs cannot be looked up just now")
            );
        }
    };
    let mut out = format!(r#"<section class="priors"><h3>{}</h3>"#, lang.t("既往心电图", "Prior ECGs"));
    if priors.is_empty() {
        out += &format!(
            "<p>{}</p></section>",
            lang.t("本县未找到该患者的既往心电图", "no earlier ECG of this patient in the county")
        );
        return out;
    }
    let keep = format!("speed={}&gain={}", paper.speed_mm_per_s, paper.gain_mm_per_mv);
    let rows: String = priors
        .iter()
        .map(|p| {
            let id = esc(&p.row.study_uid);
            format!(
                r#"<tr data-prior="{id}" data-match="{}"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><a href="?{keep}&prior={id}&compare=side">{}</a> · <a href="?{keep}&prior={id}&compare=overlay">{}</a></td></tr>"#,
                serde_json::to_value(p.matched).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default(),
                local_time(p.row.acquired_at_ms),
                esc(&p.row.site_id),
                esc(match_text(lang, p.matched)),
                p.conclusion.as_deref().map(esc).unwrap_or_else(|| lang.t("未出报告", "not reported").to_string()),
                lang.t("并排", "side by side"),
                lang.t("叠加", "overlay"),
            )
        })
        .collect();
    out += &format!(
        "<table><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th></th></tr>{rows}</table>",
        lang.t("采集时间", "Recorded"),
        lang.t("机构", "Clinic"),
        lang.t("匹配", "Match"),
        lang.t("既往报告结论", "Previous conclusion"),
    );
    let chosen = q.prior.as_deref().and_then(|want| priors.iter().find(|p| p.row.study_uid == want));
    if let Some(p) = chosen {
        out += &comparison(s, actor, lang, study, p, q, paper).await;
    } else if q.prior.is_some() {
        out += &format!(
            r#"<p class="error">{}</p>"#,
            lang.t("所选心电图不是该患者的既往心电图", "the chosen ECG is not an earlier ECG of this patient")
        );
    }
    out += "</section>";
    out
}

async fn comparison(
    s: &AppState,
    actor: &actor::Actor,
    lang: Lang,
    study: &Study,
    p: &Prior,
    q: &CompareQuery,
    paper: Paper,
) -> String {
    let prior_uid = p.row.study_uid.clone();
    if actor::record(s, actor, "view prior study", &prior_uid, "ok", &format!("beside {}", study.study_uid))
        .await
        .is_err()
    {
        return String::new();
    }
    let Ok(Ok(Some((_, prior)))) = s.store.call(move |db| db.study(&prior_uid, now_ms())).await else {
        return format!(r#"<p class="error">{}</p>"#, lang.t("无法读取既往心电图", "the prior ECG cannot be read"));
    };
    let mode = if q.compare.as_deref() == Some("overlay") { CompareMode::Overlay } else { CompareMode::SideBySide };
    let study = study.clone();
    let (row, conclusion) = (p.row.clone(), p.conclusion.clone());
    let svg = tokio::task::spawn_blocking(move || {
        let (now_leads, prior_leads) = (study.leads_uv(), prior.leads_uv());
        let (now_hz, prior_hz) = (f64::from(study.sample_rate_hz.max(1)), f64::from(prior.sample_rate_hz.max(1)));
        let (now_start, prior_start) = match mode {
            CompareMode::Overlay => (aligned_start(&now_leads, now_hz), aligned_start(&prior_leads, prior_hz)),
            CompareMode::SideBySide => (0, 0),
        };
        let now_caption = format!("{} {}", lang.t("本次", "This ECG"), local_time(study.acquired_at_ms));
        let prior_caption = caption(lang, lang.t("既往", "Prior"), &row, conclusion.as_deref());
        render_compare(
            &Side { leads: &now_leads, rate_hz: now_hz, start: now_start, caption: &now_caption },
            &Side { leads: &prior_leads, rate_hz: prior_hz, start: prior_start, caption: &prior_caption },
            mode,
            paper,
        )
    })
    .await
    .unwrap_or_default();
    let how = match mode {
        CompareMode::Overlay => lang.t(
            "叠加：黑色为本次，蓝色为既往，各自以第一个QRS波对齐",
            "overlay: black is this ECG, blue the prior one, each aligned on its first QRS complex",
        ),
        CompareMode::SideBySide => lang.t(
            "并排：左为本次，右为既往（蓝色）",
            "side by side: this ECG on the left, the prior one (blue) on the right",
        ),
    };
    format!(r#"<p>{how}</p><div class="tracing compare">{svg}</div>"#)
}
