//! The pre-read on the study page (an aid, never a diagnosis): rhythm over time, rate, the
//! median beat's intervals, ventricular ectopy, pauses, ST per lead, the flags that raised the
//! study, and what is new since the patient's last ECG.

use super::console::{Lang, esc, local_time};
use std::fmt::Write;
use yilian_analysis::preread::{Change, PreRead};

fn pick(lang: Lang, zh: &str, en: &str) -> String {
    if lang == Lang::En { en.to_string() } else { zh.to_string() }
}

fn ms(v: Option<f64>) -> String {
    v.map_or_else(|| "—".to_string(), |x| format!("{x:.0} ms"))
}

/// What changed since the last ECG of the same patient: when that was, and the changes.
pub struct SinceLast<'a> {
    /// When the earlier ECG was recorded, Unix ms.
    pub acquired_at_ms: i64,
    /// The changes (empty: none).
    pub changes: &'a [Change],
}

/// The panel.
pub fn panel(lang: Lang, pre: &PreRead, since: Option<SinceLast<'_>>) -> String {
    let rate = pre.sample_rate_hz.max(1.0);
    let mut out = format!(
        r#"<section class="reading"><h3>{} <small>{}</small></h3>"#,
        lang.t("自动预读", "Pre-read"),
        lang.t("辅助参考，非诊断", "an aid, not a diagnosis")
    );
    if !pre.flags.is_empty() {
        out += r#"<ul class="flags">"#;
        for f in &pre.flags {
            let _ = write!(out, "<li>⚑ {}</li>", esc(&pick(lang, &f.zh, &f.en)));
        }
        out += "</ul>";
    }
    if let Some(s) = since {
        let _ = write!(
            out,
            r#"<p>{} ({}):</p><ul class="changes">"#,
            lang.t("与上次心电图比较", "Since the last ECG"),
            local_time(s.acquired_at_ms)
        );
        if s.changes.is_empty() {
            let _ = write!(
                out,
                r#"<li class="none">{}</li>"#,
                lang.t(
                    "节律、心率分级、QRS宽度及ST抬高均无新变化",
                    "no change in rhythm, rate class, QRS width or ST elevation"
                )
            );
        }
        for c in s.changes {
            let _ = write!(out, "<li>{}</li>", esc(&pick(lang, &c.zh, &c.en)));
        }
        out += "</ul>";
    }
    let mut rows = String::new();
    let mut row = |k: &str, v: String| {
        let _ = write!(rows, "<tr><th>{k}</th><td>{v}</td></tr>");
    };
    let rhythm: Vec<String> = pre
        .rhythm
        .iter()
        .map(|s| {
            let (zh, en) = s.rhythm.names();
            format!(
                "{:.1}–{:.1} s {} {:.0} {}",
                s.start as f64 / rate,
                s.end as f64 / rate,
                esc(&pick(lang, zh, en)),
                s.heart_rate_bpm,
                lang.t("次/分", "/min")
            )
        })
        .collect();
    row(lang.t("节律", "Rhythm"), if rhythm.is_empty() { "—".into() } else { rhythm.join("<br>") });
    if let (Some(hr), Some(rr)) = (pre.heart_rate_bpm, &pre.rr) {
        row(
            lang.t("心率", "Heart rate"),
            format!(
                "{hr:.0} {} · RR {:.0}–{:.0} ms, SD {:.0} ms",
                lang.t("次/分", "/min"),
                rr.min_ms,
                rr.max_ms,
                rr.sd_ms
            ),
        );
    }
    if let Some(m) = &pre.median {
        row(
            lang.t("间期（中位心搏）", "Intervals (median beat)"),
            format!(
                "PR {} · QRS {:.0} ms · QT {} · QTc {} (Bazett) / {} (Fridericia)",
                ms(m.pr_ms),
                m.qrs_ms,
                ms(m.qt_ms),
                ms(m.qtc_bazett_ms),
                ms(m.qtc_fridericia_ms)
            ),
        );
    }
    let e = &pre.ectopy;
    let mut ectopy = if lang == Lang::En {
        format!("{} ventricular beats ({} isolated, {} couplets)", e.ventricular, e.isolated, e.couplets)
    } else {
        format!("室性心搏 {} 个（单发 {}，成对 {} 对）", e.ventricular, e.isolated, e.couplets)
    };
    for r in &e.runs {
        let at = r.start as f64 / rate;
        if lang == Lang::En {
            let _ = write!(ectopy, "<br>run of {} at {:.0} /min from {at:.1} s", r.beats, r.heart_rate_bpm);
        } else {
            let _ = write!(ectopy, "<br>连发 {} 次，{:.0} 次/分，始于 {at:.1} s", r.beats, r.heart_rate_bpm);
        }
    }
    row(lang.t("室性异位", "Ventricular ectopy"), ectopy);
    for p in &pre.pauses {
        row(
            lang.t("长间歇", "Pause"),
            format!("{:.1} s {} {:.1} s", p.length_ms / 1000.0, lang.t("于", "at"), p.start as f64 / rate),
        );
    }
    out += &format!(r#"<table class="measures">{rows}</table>"#);
    if let Some(m) = &pre.median {
        let head: String = m.leads.iter().map(|l| format!("<th>{}</th>", esc(&l.lead))).collect();
        let j: String = m.leads.iter().map(|l| format!("<td>{:+.0}</td>", l.st_j_uv)).collect();
        let j60: String = m.leads.iter().map(|l| format!("<td>{:+.0}</td>", l.st_j60_uv)).collect();
        let _ = write!(
            out,
            r#"<table class="st"><tr><th>ST µV</th>{head}</tr><tr><th>J</th>{j}</tr><tr><th>J+60 ms</th>{j60}</tr></table>"#
        );
    }
    out += "</section>";
    out
}

/// One line for the monitoring view: the rate, the rhythm and any flag or quality finding in
/// the seconds shown.
pub fn monitor_line(lang: Lang, pre: &PreRead) -> String {
    let mut parts = Vec::new();
    if let Some(hr) = pre.heart_rate_bpm {
        parts.push(format!("{} {hr:.0} {}", lang.t("心率", "Heart rate"), lang.t("次/分", "/min")));
    }
    if let Some(seg) = pre.rhythm.last() {
        let (zh, en) = seg.rhythm.names();
        parts.push(esc(&pick(lang, zh, en)));
    }
    if pre.ectopy.ventricular > 0 {
        parts.push(format!("{} {}", lang.t("室性心搏", "ventricular beats"), pre.ectopy.ventricular));
    }
    for f in &pre.flags {
        parts.push(format!(r#"<b class="flag">⚑ {}</b>"#, esc(&pick(lang, &f.zh, &f.en))));
    }
    for (zh, en) in &pre.quality.messages {
        parts.push(format!(r#"<span class="error">{}</span>"#, esc(&pick(lang, zh, en))));
    }
    format!(
        r#"<p class="reading" data-heart-rate="{}">{} <small>({})</small></p>"#,
        pre.heart_rate_bpm.map(|h| format!("{h:.0}")).unwrap_or_default(),
        parts.join(" · "),
        lang.t("所示时段自动预读，非诊断", "pre-read of the seconds shown, not a diagnosis")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_panel_shows_the_rate_intervals_and_that_nothing_changed() {
        let fs = 500.0;
        let mut x = vec![0.0; 10 * 500];
        for beat in (200..x.len() - 300).step_by(400) {
            for k in 0..20 {
                x[beat + k] += 1000.0 * (1.0 - (k as f64 - 10.0).abs() / 10.0);
            }
        }
        let pre = yilian_analysis::preread::analyze(&[("II", &x)], fs);
        let html = panel(Lang::En, &pre, Some(SinceLast { acquired_at_ms: 0, changes: &[] }));
        assert!(html.contains("75 /min"), "{html}");
        assert!(html.contains("no change in rhythm"), "{html}");
        assert!(html.contains("0 ventricular beats"), "{html}");
        let line = monitor_line(Lang::En, &pre);
        assert!(line.contains(r#"data-heart-rate="75""#) && line.contains("not a diagnosis"), "{line}");
        let zh = panel(Lang::Zh, &pre, None);
        assert!(zh.contains("辅助参考，非诊断") && !zh.contains("changes"), "{zh}");
    }
}
