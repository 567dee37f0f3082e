//! The console's imaging pages: `/imaging` (studies with a thumbnail per series) and
//! `/imaging/{study}` (the viewer). Frames are rendered on the server (DICOMweb `rendered`); the
//! viewer's plain inline script scrolls the stack, windows by drag and presets, zooms, pans,
//! measures lengths from Pixel Spacing, and says so plainly when a transfer syntax cannot be
//! decoded here, still offering the original file.

use super::AppState;
use super::actor;
use super::console::{Lang, Page, esc, layout};
use super::dicomweb::blocking;
use crate::images::render::{can_decode, transfer_syntax_name};
use crate::images::{InstanceMeta, SeriesSummary, StudySummary};
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use serde_json::{Value, json};

/// The routes of this module.
pub fn routes() -> Router<AppState> {
    Router::new().route("/imaging", get(studies_page)).route("/imaging/{study}", get(viewer_page))
}

/// `YYYYMMDD` as `YYYY-MM-DD`.
fn date(d: &str) -> String {
    match (d.get(..4), d.get(4..6), d.get(6..8)) {
        (Some(y), Some(m), Some(dd)) if d.len() == 8 => format!("{y}-{m}-{dd}"),
        _ => d.to_string(),
    }
}

/// `Family^Given^…` as the console shows it.
fn person(name: &str) -> String {
    name.split('^').filter(|p| !p.trim().is_empty()).collect::<Vec<_>>().join(" ")
}

fn thumb_url(study: &str, series: &str) -> String {
    format!("/dicomweb/studies/{}/series/{}/thumbnail", esc(study), esc(series))
}

async fn studies_page(State(s): State<AppState>, page: Page) -> Response {
    let Some(session) = page.session else { return Redirect::to("/login").into_response() };
    let lang = page.lang;
    let listed: Result<Vec<(StudySummary, Vec<SeriesSummary>)>, _> = blocking(&s, |im| {
        let studies = im.studies()?;
        studies.into_iter().map(|st| Ok((im.series(&st.study_uid)?, st))).map(|r| r.map(|(se, st)| (st, se))).collect()
    })
    .await;
    let Ok(listed) = listed else { return StatusCode::SERVICE_UNAVAILABLE.into_response() };
    let mut rows = String::new();
    for (st, series) in &listed {
        let thumbs: String = series
            .iter()
            .map(|se| {
                format!(
                    r#"<a href="/imaging/{}?series={}" title="{} {}"><img class="thumb" src="{}" alt="{}" width="64" height="64" loading="lazy"></a>"#,
                    esc(&st.study_uid),
                    esc(&se.series_uid),
                    esc(&se.modality),
                    esc(&se.series_description),
                    thumb_url(&st.study_uid, &se.series_uid),
                    esc(&se.modality),
                )
            })
            .collect();
        rows.push_str(&format!(
            r#"<tr data-study="{}"><td>{thumbs}</td><td><a href="/imaging/{}">{}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>"#,
            esc(&st.study_uid),
            esc(&st.study_uid),
            esc(&person(&st.patient_name)).replace("\"", ""),
            esc(&st.patient_id),
            esc(&st.modalities.join(", ")),
            esc(&date(&st.study_date)),
            esc(&st.study_description),
            st.instance_count,
        ));
    }
    let head: String = [
        lang.t("缩略图", "Series"),
        lang.t("患者", "Patient"),
        lang.t("患者编号", "Patient ID"),
        lang.t("检查类型", "Modality"),
        lang.t("检查日期", "Study date"),
        lang.t("检查描述", "Description"),
        lang.t("图像数", "Images"),
    ]
    .iter()
    .map(|h| format!("<th>{h}</th>"))
    .collect();
    let empty = if listed.is_empty() {
        format!("<p>{}</p>", lang.t("暂无影像检查", "No imaging studies yet"))
    } else {
        String::new()
    };
    let body = format!(
        "<style>.thumb{{background:#000;object-fit:contain;margin:1px}}</style>{empty}<table class=\"imaging\"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"
    );
    layout(lang, lang.t("影像检查", "Imaging"), Some(&session), &body).into_response()
}

/// What the viewer script knows of one instance.
fn instance_data(m: &InstanceMeta) -> Value {
    // Pixel Spacing is in the patient; Imager Pixel Spacing (CR/DX) is at the detector.
    let (spacing, kind) = match (m.pixel_spacing, m.imager_pixel_spacing) {
        (Some(p), _) => (Some(p), "pixel"),
        (None, Some(p)) => (Some(p), "imager"),
        (None, None) => (None, ""),
    };
    json!({
        "sop": m.sop_uid,
        "number": m.instance_number,
        "frames": m.frames,
        "rows": m.rows,
        "cols": m.columns,
        "spacing": spacing.map(|(r, c)| [r, c]),
        "spacingKind": kind,
        "ts": m.transfer_syntax,
        "tsName": transfer_syntax_name(&m.transfer_syntax),
        "decodable": can_decode(&m.transfer_syntax) && m.rows.is_some(),
    })
}

#[derive(serde::Deserialize)]
struct ViewerQuery {
    series: Option<String>,
}

async fn viewer_page(
    State(s): State<AppState>,
    page: Page,
    Path(study): Path<String>,
    axum::extract::Query(q): axum::extract::Query<ViewerQuery>,
) -> Response {
    let Some(session) = page.session else { return Redirect::to("/login").into_response() };
    let lang = page.lang;
    let st = study.clone();
    let found = blocking(&s, move |im| {
        let series = im.series(&st)?;
        series
            .into_iter()
            .map(|se| {
                let inst = im.instances(&st, &se.series_uid)?;
                Ok((se, inst))
            })
            .collect::<Result<Vec<_>, super::dicomweb::WebError>>()
    })
    .await;
    let Ok(series) = found else { return StatusCode::SERVICE_UNAVAILABLE.into_response() };
    let Some(first) = series.first().and_then(|(_, i)| i.first()).cloned() else {
        return (StatusCode::NOT_FOUND, "no such imaging study").into_response();
    };
    if actor::ok(&s, &session.actor(), "view imaging study", &study).await.is_err() {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    let chosen = q.series.as_deref().and_then(|u| series.iter().position(|(se, _)| se.series_uid == u)).unwrap_or(0);
    let data = json!({
        "study": study,
        "chosen": chosen,
        "patientName": person(&first.patient_name),
        "patientId": first.patient_id,
        "studyDate": date(&first.study_date),
        "series": series.iter().map(|(se, inst)| json!({
            "uid": se.series_uid,
            "modality": se.modality,
            "number": se.series_number,
            "description": se.series_description,
            "instances": inst.iter().map(instance_data).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "text": {
            "unsupported": lang.t(
                "此图像无法在本系统显示：传输语法 {name}（{ts}）不受支持。请下载原始文件，用其他工作站阅读。",
                "This image cannot be shown here: transfer syntax {name} ({ts}) is not supported by this hub. Download the original file to read it on another workstation."),
            "failed": lang.t("此图像无法显示：", "This image cannot be shown: "),
            "auto": lang.t("自动", "auto"),
            "frame": lang.t("帧", "frame"),
            "measureHint": lang.t("在图像上点击两点", "click two points on the image"),
            "noSpacing": lang.t("（无像素间距，单位为像素）", " (no pixel spacing: pixels)"),
            "detector": lang.t("（探测器平面）", " (at the detector)"),
        },
    });
    // Inside <script>, only `<` can end the element early; JSON allows it escaped.
    let data = data.to_string().replace('<', "\\u003c");
    let picker: String = series
        .iter()
        .enumerate()
        .map(|(i, (se, inst))| {
            format!(
                r#"<button type="button" class="series" data-series="{i}"><img src="{}" alt="" width="48" height="48"><br>{} {} · {} ({})</button>"#,
                thumb_url(&study, &se.series_uid),
                esc(&se.modality),
                se.series_number.map(|n| n.to_string()).unwrap_or_default(),
                esc(&se.series_description),
                inst.len()
            )
        })
        .collect();
    let presets = [
        ("lung", "-600,1500", lang.t("肺窗", "Lung")),
        ("mediastinum", "40,400", lang.t("纵隔窗", "Mediastinum")),
        ("bone", "400,1800", lang.t("骨窗", "Bone")),
        ("brain", "40,80", lang.t("脑窗", "Brain")),
    ]
    .iter()
    .map(|(id, wl, label)| format!(r#"<button type="button" data-preset="{id}" data-wl="{wl}">{label}</button>"#))
    .collect::<String>();
    let body = format!(
        r#"<style>
#viewport{{position:relative;overflow:hidden;width:100%;height:70vh;background:#000;user-select:none;touch-action:none}}
#stage{{position:absolute;left:0;top:0;transform-origin:0 0}} #stage img,#stage svg{{position:absolute;left:0;top:0;image-rendering:pixelated}}
.ov{{position:absolute;color:#ff0;font:13px monospace;text-shadow:0 0 2px #000;pointer-events:none;white-space:pre}}
.tl{{left:6px;top:6px}} .tr{{right:6px;top:6px;text-align:right}} .bl{{left:6px;bottom:6px}} .br{{right:6px;bottom:6px;text-align:right}}
#unsupported{{position:absolute;left:10%;right:10%;top:35%;color:#fff;background:#600;padding:1rem}}
.toolbar button.on,button.series.on{{outline:2px solid #06c}} button.series{{font-size:12px}}
</style>
<script type="application/json" id="imaging-data">{data}</script>
<p class="meta"><b>{}</b> · {} · {}</p>
<div class="picker">{picker}</div>
<div class="toolbar">
<button type="button" data-mode="wl" class="on">{}</button> <button type="button" data-mode="pan">{}</button> <button type="button" data-mode="measure">{}</button>
| <button type="button" data-zoom="1.25">＋</button> <button type="button" data-zoom="0.8">－</button> <button type="button" data-zoom="fit">{}</button>
| {presets} <button type="button" data-preset="auto">{}</button>
| <label><input type="checkbox" id="invert"> {}</label>
| <a id="download" href="" download>{}</a>
</div>
<div id="viewport" tabindex="0">
<div id="stage"><img id="frame" alt=""><svg id="marks" xmlns="http://www.w3.org/2000/svg"></svg></div>
<div class="ov tl" id="ov-tl"></div><div class="ov tr" id="ov-tr"></div><div class="ov bl" id="ov-bl"></div><div class="ov br" id="ov-br"></div>
<div id="unsupported" hidden></div>
</div>
<p><input type="range" id="slider" min="0" max="0" value="0" style="width:100%"></p>
<p>{}: <output id="measure">{}</output></p>
<p class="hint">{}</p>
{VIEWER_JS}"#,
        esc(&person(&first.patient_name)),
        esc(&first.patient_id),
        esc(&date(&first.study_date)),
        lang.t("窗宽窗位", "Window/level"),
        lang.t("平移", "Pan"),
        lang.t("测量", "Measure"),
        lang.t("适应窗口", "Fit"),
        lang.t("自动", "Auto"),
        lang.t("反相", "Invert"),
        lang.t("下载原始文件", "Download original"),
        lang.t("长度", "Length"),
        lang.t("在图像上点击两点", "click two points on the image"),
        lang.t(
            "滚轮或方向键翻页；拖动调窗宽窗位；Ctrl+滚轮缩放；Shift+拖动平移。",
            "Wheel or arrow keys: scroll the stack; drag: window/level; Ctrl+wheel: zoom; Shift+drag: pan."
        ),
    );
    let title = match lang {
        Lang::Zh => "影像阅片",
        Lang::En => "Imaging viewer",
    };
    // The report goes back to the clinic by the signed report path ECG reports take.
    let uid = study.clone();
    let u = uid.clone();
    let reported =
        s.store.call(move |db| db.image_study(&u)).await.ok().and_then(Result::ok).flatten().map(|r| r.report_id);
    let form = match reported {
        Some(id) => super::console::imaging_report_form(lang, &uid, &session.csrf, id.as_deref()),
        None => String::new(),
    };
    let body = body + &form;
    layout(lang, title, Some(&session), &body).into_response()
}

/// The viewer: every frame is a server-rendered PNG; the script only asks for the right one.
const VIEWER_JS: &str = r#"<script>
(() => {
  const D = JSON.parse(document.getElementById('imaging-data').textContent);
  const $ = (id) => document.getElementById(id);
  const img = $('frame'), stage = $('stage'), vp = $('viewport'), marks = $('marks'), msg = $('unsupported');
  const slider = $('slider'), out = $('measure'), dl = $('download');
  const ns = 'http://www.w3.org/2000/svg';
  let si = D.chosen, stack = [], pos = 0, win = null, shown = null, invert = false;
  let zoom = 1, fit = 1, panX = 0, panY = 0, mode = 'wl', first = null;
  let busy = false, again = false;
  const series = () => D.series[si];
  const cur = () => { const [i, f] = stack[pos] || [0, 1]; return [series().instances[i], f]; };
  const base = () => `/dicomweb/studies/${encodeURIComponent(D.study)}/series/${encodeURIComponent(series().uid)}/instances/`;
  function buildStack() {
    stack = [];
    series().instances.forEach((ins, i) => { for (let f = 1; f <= Math.max(1, ins.frames); f++) stack.push([i, f]); });
    slider.max = Math.max(0, stack.length - 1); pos = Math.min(pos, stack.length - 1); slider.value = pos;
    document.querySelectorAll('button.series').forEach((b) => b.classList.toggle('on', Number(b.dataset.series) === si));
  }
  function place() {
    const [ins] = cur();
    const cols = ins.cols || 1, rows = ins.rows || 1;
    fit = Math.min(vp.clientWidth / cols, vp.clientHeight / rows) || 1;
    const s = fit * zoom;
    img.style.width = cols + 'px'; img.style.height = rows + 'px';
    marks.setAttribute('width', cols); marks.setAttribute('height', rows); marks.setAttribute('viewBox', `0 0 ${cols} ${rows}`);
    const x = (vp.clientWidth - cols * s) / 2 + panX, y = (vp.clientHeight - rows * s) / 2 + panY;
    stage.style.transform = `translate(${x}px, ${y}px) scale(${s})`;
  }
  function overlay() {
    const [ins, f] = cur(), se = series();
    $('ov-tl').textContent = `${D.patientName}\n${D.patientId}\n${D.studyDate}`;
    $('ov-tr').textContent = `${se.modality}\nSe ${se.number ?? ''}  Im ${ins.number ?? ''}` +
      (ins.frames > 1 ? `\n${D.text.frame} ${f}/${ins.frames}` : '') + `\n${pos + 1}/${stack.length}`;
    const w = win || shown;
    $('ov-bl').textContent = w ? `W ${Math.round(w.w)} L ${Math.round(w.c)}${win ? '' : ' (' + D.text.auto + ')'}` : '';
    $('ov-br').textContent = `${Math.round(fit * zoom * 100)}%`;
    vp.dataset.window = w ? `${w.c},${w.w}` : '';
  }
  function unsupported(ts, name, detail) {
    msg.hidden = false; img.hidden = true;
    msg.textContent = detail && !ts ? D.text.failed + detail : D.text.unsupported.replace('{ts}', ts).replace('{name}', name);
    msg.dataset.transferSyntax = ts || '';
  }
  async function show() {
    const [ins, f] = cur();
    if (!ins) return;
    dl.href = base() + encodeURIComponent(ins.sop) + '?accept=application/dicom';
    place(); overlay();
    if (!ins.decodable) { unsupported(ins.ts, ins.tsName); return; }
    if (busy) { again = true; return; }
    busy = true;
    const q = [];
    if (win) q.push(`window=${win.c.toFixed(1)},${win.w.toFixed(1)}`);
    if (invert) q.push('invert=1');
    const url = base() + `${encodeURIComponent(ins.sop)}/frames/${f}/rendered` + (q.length ? '?' + q.join('&') : '');
    try {
      const r = await fetch(url, {credentials: 'same-origin'});
      if (r.ok) {
        const blob = await r.blob(), old = img.src;
        img.src = URL.createObjectURL(blob); img.dataset.url = url;
        if (old.startsWith('blob:')) URL.revokeObjectURL(old);
        const xw = r.headers.get('x-window');
        if (xw) { const [c, w] = xw.split(',').map(Number); shown = {c, w}; }
        msg.hidden = true; img.hidden = false;
      } else {
        let j = {};
        try { j = await r.json(); } catch (e) { j = {error: String(r.status)}; }
        unsupported(j.transfer_syntax, j.transfer_syntax_name || '', j.error);
      }
    } catch (e) {
      unsupported(null, '', String(e));
    } finally {
      busy = false;
    }
    overlay();
    if (again) { again = false; show(); }
  }
  function go(d) {
    const n = Math.max(0, Math.min(stack.length - 1, pos + d));
    if (n !== pos) { pos = n; slider.value = pos; clearMarks(); show(); }
  }
  function clearMarks() { marks.replaceChildren(); first = null; }
  function pt(e) {
    const [ins] = cur(), r = img.getBoundingClientRect();
    return {x: (e.clientX - r.left) / r.width * (ins.cols || 1), y: (e.clientY - r.top) / r.height * (ins.rows || 1)};
  }
  function dot(p) {
    const c = document.createElementNS(ns, 'circle');
    c.setAttribute('cx', p.x); c.setAttribute('cy', p.y); c.setAttribute('r', 3); c.setAttribute('fill', '#0f0');
    c.setAttribute('vector-effect', 'non-scaling-stroke'); marks.appendChild(c);
  }
  function measure(e) {
    const p = pt(e), [ins] = cur();
    if (!first) { clearMarks(); first = p; dot(p); out.textContent = '…'; return; }
    dot(p);
    const l = document.createElementNS(ns, 'line');
    l.setAttribute('x1', first.x); l.setAttribute('y1', first.y); l.setAttribute('x2', p.x); l.setAttribute('y2', p.y);
    l.setAttribute('stroke', '#0f0'); l.setAttribute('stroke-width', 1.5); l.setAttribute('vector-effect', 'non-scaling-stroke');
    marks.appendChild(l);
    const dx = p.x - first.x, dy = p.y - first.y;
    if (ins.spacing) {
      const mm = Math.hypot(dx * ins.spacing[1], dy * ins.spacing[0]);
      out.dataset.mm = mm.toFixed(2); delete out.dataset.px;
      out.textContent = `${mm.toFixed(1)} mm` + (ins.spacingKind === 'imager' ? D.text.detector : '');
    } else {
      const px = Math.hypot(dx, dy);
      out.dataset.px = px.toFixed(2); delete out.dataset.mm;
      out.textContent = `${px.toFixed(1)} px` + D.text.noSpacing;
    }
    first = null;
  }
  let drag = null;
  vp.addEventListener('pointerdown', (e) => {
    vp.focus();
    if (mode === 'measure' && !e.shiftKey) { measure(e); return; }
    drag = {x: e.clientX, y: e.clientY, pan: mode === 'pan' || e.shiftKey, win: win || shown, px: panX, py: panY};
    vp.setPointerCapture(e.pointerId);
  });
  vp.addEventListener('pointermove', (e) => {
    if (!drag) return;
    const dx = e.clientX - drag.x, dy = e.clientY - drag.y;
    if (drag.pan) { panX = drag.px + dx; panY = drag.py + dy; place(); return; }
    if (!drag.win) return;
    const k = Math.max(drag.win.w, 1) / 300;
    win = {c: drag.win.c + dy * k, w: Math.max(1, drag.win.w + dx * k)};
    show();
  });
  const end = () => { drag = null; };
  vp.addEventListener('pointerup', end); vp.addEventListener('pointercancel', end);
  vp.addEventListener('wheel', (e) => {
    e.preventDefault();
    if (e.ctrlKey) { zoom = Math.max(0.1, Math.min(20, zoom * (e.deltaY < 0 ? 1.1 : 0.9))); place(); overlay(); }
    else go(e.deltaY > 0 ? 1 : -1);
  }, {passive: false});
  vp.addEventListener('keydown', (e) => {
    const d = {ArrowDown: 1, ArrowRight: 1, PageDown: 10, ArrowUp: -1, ArrowLeft: -1, PageUp: -10}[e.key];
    if (d) { e.preventDefault(); go(d); }
    if (e.key === '+') { zoom *= 1.25; place(); overlay(); }
    if (e.key === '-') { zoom *= 0.8; place(); overlay(); }
  });
  slider.addEventListener('input', () => { pos = Number(slider.value); clearMarks(); show(); });
  document.querySelectorAll('[data-mode]').forEach((b) => b.addEventListener('click', () => {
    mode = b.dataset.mode; first = null;
    document.querySelectorAll('[data-mode]').forEach((x) => x.classList.toggle('on', x === b));
  }));
  document.querySelectorAll('[data-zoom]').forEach((b) => b.addEventListener('click', () => {
    if (b.dataset.zoom === 'fit') { zoom = 1; panX = 0; panY = 0; } else zoom *= Number(b.dataset.zoom);
    place(); overlay();
  }));
  document.querySelectorAll('[data-preset]').forEach((b) => b.addEventListener('click', () => {
    if (b.dataset.preset === 'auto') win = null;
    else { const [c, w] = b.dataset.wl.split(',').map(Number); win = {c, w}; }
    show();
  }));
  $('invert').addEventListener('change', (e) => { invert = e.target.checked; show(); });
  document.querySelectorAll('button.series').forEach((b) => b.addEventListener('click', () => {
    si = Number(b.dataset.series); pos = 0; win = null; shown = null; zoom = 1; panX = 0; panY = 0;
    clearMarks(); buildStack(); show();
  }));
  window.addEventListener('resize', () => { place(); overlay(); });
  buildStack(); show();
})();
</script>"#;
