//! The image store, DICOMweb and the imaging console over the real sample files of
//! `shared/data/dicom-img` (facts from its README, section 8). Real router, real SQLite.

mod common;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tower::ServiceExt;
use yilian_hub::http::{router, session};
use yilian_hub::images::render::{RenderError, decode_frame};
use yilian_hub::images::{ImageError, ImageStore, InstanceMeta, read};
use yilian_hub::store::Store;
use yilian_protocol::keys::SigningKey;

const CT_SOP: &str = "1.3.6.1.4.1.5962.1.1.1.1.1.20040119072730.12322";
const MR_SOP: &str = "1.3.6.1.4.1.5962.1.1.4.1.1.20040826185059.5457";
const JPEG_LS: &str = "1.2.840.10008.1.2.4.80";

fn data_dir() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    [
        here.join("../../shared/data/dicom-img"),
        here.join("../shared/data/dicom-img"),
        "/work/shared/data/dicom-img".into(),
    ]
    .into_iter()
    .find(|p| p.is_dir())
    .expect("shared/data/dicom-img")
}

fn sample(name: &str) -> PathBuf {
    data_dir().join(name)
}

/// A copy of a sample in `dir` (the store moves what it is given).
fn incoming(dir: &Path, name: &str) -> PathBuf {
    let to = dir.join(format!("in-{name}"));
    std::fs::copy(sample(name), &to).expect("copy sample");
    to
}

struct Hub {
    app: Router,
    images: Arc<ImageStore>,
    dir: tempfile::TempDir,
}

async fn hub() -> Hub {
    let dir = tempfile::tempdir().expect("tmp");
    let store = Store::open_test(dir.path()).expect("store");
    let hash = session::hash_password("correct horse").expect("hash");
    store.call(move |db| db.add_user("li", "李娜", "specialist", &hash, 0)).await.expect("call").expect("user");
    let state = common::app_state(dir.path(), store, SigningKey::generate().expect("key"));
    let images = state.images.clone();
    Hub { app: router(state), images, dir }
}

/// Inserts every sample file, returning what each insert answered, by file name.
fn insert_all(h: &Hub) -> Vec<(String, Result<InstanceMeta, ImageError>)> {
    let mut names: Vec<String> = std::fs::read_dir(data_dir())
        .expect("list samples")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".dcm"))
        .collect();
    names.sort();
    names.into_iter().map(|n| (n.clone(), h.images.insert_file(&incoming(h.dir.path(), &n)))).collect()
}

struct Answer {
    status: StatusCode,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> String {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()).unwrap_or_default()
    }
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("json body")
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

async fn send(h: &Hub, req: Request<Body>) -> Answer {
    let resp = h.app.clone().oneshot(req).await.expect("response");
    let status = resp.status();
    let headers =
        resp.headers().iter().map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().to_string())).collect();
    let body = axum::body::to_bytes(resp.into_body(), 1 << 26).await.expect("body").to_vec();
    Answer { status, headers, body }
}

fn get(path: &str, cookie: &str) -> Request<Body> {
    Request::get(path).header(header::COOKIE, cookie).body(Body::empty()).expect("request")
}

fn set_cookie(a: &Answer, name: &str) -> Option<String> {
    a.headers.iter().filter(|(k, _)| k == "set-cookie").find_map(|(_, v)| {
        v.strip_prefix(&format!("{name}=")).map(|rest| rest.split(';').next().unwrap_or_default().to_string())
    })
}

/// Signs in as `li`; returns the session cookie header value.
async fn sign_in(h: &Hub) -> String {
    let page = send(h, get("/login", "")).await;
    let csrf = set_cookie(&page, "yl_login_csrf").expect("login csrf cookie");
    let req = Request::post("/login")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::COOKIE, format!("yl_login_csrf={csrf}"))
        .body(Body::from(format!("user=li&password=correct+horse&csrf={csrf}")))
        .expect("request");
    let a = send(h, req).await;
    assert_eq!(a.status, StatusCode::SEE_OTHER);
    format!("{}={}", session::SESSION_COOKIE, set_cookie(&a, session::SESSION_COOKIE).expect("session cookie"))
}

/// The parts of a `multipart/related` body, by the boundary in its content type.
fn parts(a: &Answer) -> Vec<(String, Vec<u8>)> {
    let ctype = a.header("content-type");
    let boundary = ctype.split("boundary=").nth(1).expect("boundary").trim_matches('"').to_string();
    let delim = format!("--{boundary}").into_bytes();
    let body = &a.body;
    let mut starts = Vec::new();
    let mut i = 0;
    while i + delim.len() <= body.len() {
        if body[i..].starts_with(&delim) {
            starts.push(i);
            i += delim.len();
        } else {
            i += 1;
        }
    }
    let mut out = Vec::new();
    for w in starts.windows(2) {
        let part = &body[w[0] + delim.len()..w[1]];
        let part = part.strip_prefix(b"\r\n").expect("CRLF after boundary");
        let split = part.windows(4).position(|x| x == b"\r\n\r\n").expect("part headers");
        let headers = String::from_utf8_lossy(&part[..split]).into_owned();
        let content = part[split + 4..].strip_suffix(b"\r\n").expect("CRLF before boundary");
        out.push((headers, content.to_vec()));
    }
    assert!(body.ends_with(format!("--{boundary}--\r\n").as_bytes()));
    out
}

fn base(m: &InstanceMeta) -> String {
    format!("/dicomweb/studies/{}/series/{}/instances/{}", m.study_uid, m.series_uid, m.sop_uid)
}

fn stored<'a>(all: &'a [(String, Result<InstanceMeta, ImageError>)], name: &str) -> &'a InstanceMeta {
    all.iter().find(|(n, _)| n == name).and_then(|(_, r)| r.as_ref().ok()).expect(name)
}

#[tokio::test]
async fn every_sample_is_stored_once_and_qido_lists_it() {
    let h = hub().await;
    let all = insert_all(&h);
    // The four MR_small encodings are one SOP instance: the first stored (MR_small.dcm) stays,
    // the other encodings are refused as a conflict and leave the stored file unchanged.
    for (name, r) in &all {
        match name.as_str() {
            "MR_small_RLE.dcm" | "MR_small_implicit.dcm" | "MR_small_jpeg_ls_lossless.dcm" => {
                assert!(matches!(r, Err(ImageError::Conflict { sop_uid, .. }) if sop_uid == MR_SOP), "{name}: {r:?}")
            }
            _ => assert!(r.is_ok(), "{name}: {r:?}"),
        }
    }
    let ct = stored(&all, "CT_small.dcm");
    assert_eq!(ct.sop_uid, CT_SOP);
    assert_eq!(ct.patient_name, "CompressedSamples^CT1");
    assert_eq!(ct.patient_id, "1CT1");
    // Sealed at rest: no file of the image store (index, instances, thumbnails) holds a
    // patient's name or identity number.
    h.images.thumbnail(&ct.study_uid, &ct.series_uid).expect("thumbnail");
    let on_disk = files_under(&h.dir.path().join("images"));
    assert!(on_disk.len() >= 10, "{on_disk:?}");
    for f in &on_disk {
        let bytes = std::fs::read(f).expect("read");
        for needle in ["CompressedSamples^CT1", "Citizen^Jan", "Doe^Archibald", "77654033", "DICM"] {
            assert!(!bytes.windows(needle.len()).any(|w| w == needle.as_bytes()), "{needle} readable in {f:?}");
        }
    }
    assert_eq!(ct.study_date, "20040119");
    assert_eq!(ct.modality, "CT");
    assert_eq!((ct.rows, ct.columns, ct.frames), (Some(128), Some(128), 1));
    assert_eq!(ct.transfer_syntax, "1.2.840.10008.1.2.1");
    assert_eq!(ct.size, 39_206);
    let file = h.images.instance_file(&ct.study_uid, &ct.series_uid, CT_SOP).expect("lookup").expect("file");
    assert_eq!(
        file,
        h.dir.path().join("images").join(&ct.study_uid).join(&ct.series_uid).join(format!("{CT_SOP}.sealed"))
    );
    assert_eq!(h.images.read_instance(ct).expect("stored"), std::fs::read(sample("CT_small.dcm")).expect("sample"));
    let ybr = stored(&all, "examples_ybr_color.dcm");
    assert_eq!((ybr.rows, ybr.columns, ybr.frames), (Some(240), Some(320), 30));
    assert_eq!(ybr.patient_name, "PLA");
    let dfl = stored(&all, "image_dfl.dcm");
    assert_eq!(dfl.transfer_syntax, "1.2.840.10008.1.2.1.99");
    assert_eq!((dfl.rows, dfl.columns), (Some(512), Some(512)));
    let cr = stored(&all, "CR_dicomdirtests_6154.dcm");
    assert_eq!(
        (cr.patient_name.as_str(), cr.patient_id.as_str(), cr.modality.as_str()),
        ("Doe^Archibald", "77654033", "CR")
    );
    let j = stored(&all, "JPGLosslessP14SV1_1s_1f_8b.dcm");
    assert_eq!((j.patient_name.as_str(), j.patient_id.as_str()), ("Citizen^Jan", ""));

    // The same bytes again: accepted, nothing new, the incoming copy removed.
    let again = incoming(h.dir.path(), "CT_small.dcm");
    assert_eq!(&h.images.insert_file(&again).expect("idempotent"), ct);
    assert!(!again.exists());
    let count: u32 = h.images.studies().expect("studies").iter().map(|s| s.instance_count).sum();
    assert_eq!(count, 9);

    let cookie = sign_in(&h).await;
    let a = send(&h, get("/dicomweb/studies", &cookie)).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.header("content-type"), "application/dicom+json");
    let studies = a.json();
    let studies = studies.as_array().expect("array");
    assert_eq!(studies.len(), h.images.studies().expect("studies").len());
    let ct_study = studies.iter().find(|s| s["0020000D"]["Value"][0] == ct.study_uid.as_str()).expect("CT study");
    assert_eq!(ct_study["00100010"]["vr"], "PN");
    assert_eq!(ct_study["00100010"]["Value"][0]["Alphabetic"], "CompressedSamples^CT1");
    assert_eq!(ct_study["00100020"]["Value"][0], "1CT1");
    assert_eq!(ct_study["00080020"]["Value"][0], "20040119");
    assert_eq!(ct_study["00080061"]["Value"], serde_json::json!(["CT"]));

    let by_id = send(&h, get("/dicomweb/studies?PatientID=77654033", &cookie)).await.json();
    assert_eq!(by_id.as_array().map(Vec::len), Some(1));
    assert_eq!(by_id[0]["00100010"]["Value"][0]["Alphabetic"], "Doe^Archibald");
    let us = send(&h, get("/dicomweb/studies?ModalitiesInStudy=US", &cookie)).await.json();
    let names: Vec<&str> =
        us.as_array().expect("array").iter().filter_map(|s| s["00100010"]["Value"][0]["Alphabetic"].as_str()).collect();
    assert!(names.contains(&"PLA") && names.contains(&"OB^^^^") && names.contains(&"Citizen^Jan"), "{names:?}");
    assert!(!names.contains(&"CompressedSamples^CT1"));

    let series = send(&h, get(&format!("/dicomweb/studies/{}/series", ct.study_uid), &cookie)).await.json();
    assert_eq!(series[0]["0020000E"]["Value"][0], ct.series_uid.as_str());
    assert_eq!(series[0]["00080060"]["Value"][0], "CT");
    let inst =
        send(&h, get(&format!("/dicomweb/studies/{}/series/{}/instances", ct.study_uid, ct.series_uid), &cookie))
            .await
            .json();
    assert_eq!(inst[0]["00080018"]["Value"][0], CT_SOP);
    assert_eq!(inst[0]["00080016"]["Value"][0], "1.2.840.10008.5.1.4.1.1.2");
    assert_eq!(inst[0]["00280010"]["Value"][0], 128);
}

#[tokio::test]
async fn wado_returns_every_original_byte_for_byte_and_metadata_names_the_patient() {
    let h = hub().await;
    let all = insert_all(&h);
    let cookie = sign_in(&h).await;
    for (name, r) in &all {
        let Ok(m) = r else { continue };
        let a = send(&h, get(&base(m), &cookie)).await;
        assert_eq!(a.status, StatusCode::OK, "{name}");
        assert!(a.header("content-type").starts_with("multipart/related; type=\"application/dicom\""), "{name}");
        let p = parts(&a);
        assert_eq!(p.len(), 1, "{name}");
        assert!(p[0].0.contains("Content-Type: application/dicom"));
        assert_eq!(p[0].1, std::fs::read(sample(name)).expect("sample"), "{name}: WADO-RS changed the bytes");
        let d = send(&h, get(&format!("{}?accept=application/dicom", base(m)), &cookie)).await;
        assert_eq!(d.body, p[0].1, "{name}: download");
    }
    let ct = stored(&all, "CT_small.dcm");
    let study = send(&h, get(&format!("/dicomweb/studies/{}", ct.study_uid), &cookie)).await;
    let instances = h.images.study_instances(&ct.study_uid).expect("instances");
    assert_eq!(parts(&study).len(), instances.len());

    let meta = send(&h, get(&format!("{}/metadata", base(ct)), &cookie)).await;
    assert_eq!(meta.header("content-type"), "application/dicom+json");
    let meta = meta.json();
    assert_eq!(meta[0]["00100010"]["Value"][0]["Alphabetic"], "CompressedSamples^CT1");
    assert_eq!(meta[0]["00080070"]["Value"][0], "GE MEDICAL SYSTEMS");
    assert!(meta[0].get("7FE00010").is_none(), "no bulk pixel data in metadata");
    let dfl = stored(&all, "image_dfl.dcm");
    let meta = send(&h, get(&format!("{}/metadata", base(dfl)), &cookie)).await.json();
    assert_eq!(meta[0]["00020010"]["Value"][0], "1.2.840.10008.1.2.1.99");
    assert_eq!(meta[0]["00280010"]["Value"][0], 512);

    // Frames: native is the frame's slice; encapsulated is the frame's fragments.
    let f = send(&h, get(&format!("{}/frames/1", base(ct)), &cookie)).await;
    assert!(f.header("content-type").starts_with("multipart/related; type=\"application/octet-stream\""));
    let p = parts(&f);
    assert_eq!(p[0].1.len(), 32_768);
    let rg3 = stored(&all, "RG3_J2KI.dcm");
    let p = parts(&send(&h, get(&format!("{}/frames/1", base(rg3)), &cookie)).await);
    assert!(p[0].1.starts_with(&[0xFF, 0x4F]), "a JPEG 2000 codestream");
    assert!(p[0].0.contains("transfer-syntax=1.2.840.10008.1.2.4.91"));
    let ybr = stored(&all, "examples_ybr_color.dcm");
    let p = parts(&send(&h, get(&format!("{}/frames/1,30", base(ybr)), &cookie)).await);
    assert_eq!(p.len(), 2);
    assert!(p.iter().all(|x| x.1.starts_with(&[0xFF, 0xD8])), "each frame is one JPEG");
    assert_eq!(send(&h, get(&format!("{}/frames/31", base(ybr)), &cookie)).await.status, StatusCode::NOT_FOUND);
    assert_eq!(send(&h, get(&format!("{}/frames/0", base(ybr)), &cookie)).await.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn rendered_frames_are_pngs_of_the_right_size() {
    let h = hub().await;
    let all = insert_all(&h);
    let cookie = sign_in(&h).await;
    for (name, w, hgt) in [
        ("CT_small.dcm", 128, 128),
        ("MR_small.dcm", 64, 64),
        ("CR_dicomdirtests_6154.dcm", 16, 16),
        ("examples_rgb_color.dcm", 320, 240),
        ("OBXXXX1A_rle.dcm", 800, 600),
        ("JPGLosslessP14SV1_1s_1f_8b.dcm", 1024, 768),
        ("image_dfl.dcm", 512, 512),
        ("examples_ybr_color.dcm", 320, 240),
        ("RG3_J2KI.dcm", 1760, 1760),
    ] {
        let m = stored(&all, name);
        let a = send(&h, get(&format!("{}/rendered", base(m)), &cookie)).await;
        assert_eq!(a.status, StatusCode::OK, "{name}: {}", a.text());
        assert_eq!(a.header("content-type"), "image/png");
        let img = image::load_from_memory_with_format(&a.body, image::ImageFormat::Png).expect("png");
        assert_eq!((img.width(), img.height()), (w, hgt), "{name}");
    }
    let ct = stored(&all, "CT_small.dcm");
    // CT_small carries no window: the server windows over the frame's rescaled range and says so.
    let auto = send(&h, get(&format!("{}/frames/1/rendered", base(ct)), &cookie)).await;
    assert!(!auto.header("x-window").is_empty());
    let wl = send(&h, get(&format!("{}/frames/1/rendered?window=40,400", base(ct)), &cookie)).await;
    assert_eq!(wl.header("x-window"), "40,400");
    let inv = send(&h, get(&format!("{}/frames/1/rendered?window=40,400&invert=1", base(ct)), &cookie)).await;
    let (a, b) = (
        image::load_from_memory(&wl.body).expect("png").to_luma8(),
        image::load_from_memory(&inv.body).expect("png").to_luma8(),
    );
    assert!(a.pixels().zip(b.pixels()).all(|(x, y)| x.0[0] == 255 - y.0[0]), "invert flips every grey level");
    let bad = send(&h, get(&format!("{}/rendered?window=40", base(ct)), &cookie)).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    let ybr = stored(&all, "examples_ybr_color.dcm");
    let last = send(&h, get(&format!("{}/frames/30/rendered", base(ybr)), &cookie)).await;
    assert_eq!(last.status, StatusCode::OK);
    assert_eq!(
        send(&h, get(&format!("{}/frames/31/rendered", base(ybr)), &cookie)).await.status,
        StatusCode::NOT_FOUND
    );

    let thumb =
        send(&h, get(&format!("/dicomweb/studies/{}/series/{}/thumbnail", ybr.study_uid, ybr.series_uid), &cookie))
            .await;
    let t = image::load_from_memory(&thumb.body).expect("thumbnail png");
    assert_eq!((t.width(), t.height()), (128, 96));
}

/// Min, max and sum of a frame's stored values, decoded through the hub's decoding path.
fn pixel_facts(name: &str) -> Result<(i64, i64, i64), RenderError> {
    let parsed = read::read(&sample(name), true).expect("read");
    let f = decode_frame(&parsed.obj, &parsed.transfer_syntax, 0)?;
    let v = f.values.iter().map(|v| i64::from(*v));
    Ok((v.clone().min().expect("pixels"), v.clone().max().expect("pixels"), v.sum()))
}

#[test]
fn decoded_pixels_match_the_reference_decoder() {
    assert_eq!(pixel_facts("CT_small.dcm").expect("CT"), (128, 2191, 14_826_310));
    for mr in ["MR_small.dcm", "MR_small_implicit.dcm", "MR_small_RLE.dcm"] {
        assert_eq!(pixel_facts(mr).expect(mr), (127, 2145, 2_125_338), "{mr}");
    }
    // JPEG-LS needs CharLS (C++), which the hub does not link: a clear error naming the syntax.
    match pixel_facts("MR_small_jpeg_ls_lossless.dcm") {
        Err(RenderError::Unsupported { transfer_syntax, name }) => {
            assert_eq!(transfer_syntax, JPEG_LS);
            assert!(name.contains("JPEG-LS"), "{name}");
        }
        other => panic!("JPEG-LS: {other:?}"),
    }
    assert_eq!(pixel_facts("CR_dicomdirtests_6154.dcm").expect("CR"), (1994, 2802, 646_091));
    assert_eq!(pixel_facts("OBXXXX1A_rle.dcm").expect("RLE palette").2, 15_277_394);
    assert_eq!(pixel_facts("JPGLosslessP14SV1_1s_1f_8b.dcm").expect("JPEG lossless").2, 13_572_107);
    assert_eq!(pixel_facts("examples_rgb_color.dcm").expect("RGB").2, 7_895_026);
    assert_eq!(pixel_facts("image_dfl.dcm").expect("deflated").2, 33_322_688);
}

#[tokio::test]
async fn an_undecodable_transfer_syntax_is_explained_and_the_original_still_served() {
    let h = hub().await;
    let m = h.images.insert_file(&incoming(h.dir.path(), "MR_small_jpeg_ls_lossless.dcm")).expect("insert");
    assert_eq!(m.transfer_syntax, JPEG_LS);
    let cookie = sign_in(&h).await;
    for path in [format!("{}/rendered", base(&m)), format!("{}/frames/1/rendered", base(&m))] {
        let a = send(&h, get(&path, &cookie)).await;
        assert_eq!(a.status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{path}");
        let j = a.json();
        assert_eq!(j["transfer_syntax"], JPEG_LS);
        assert!(j["error"].as_str().expect("error").contains(JPEG_LS));
    }
    let thumb =
        send(&h, get(&format!("/dicomweb/studies/{}/series/{}/thumbnail", m.study_uid, m.series_uid), &cookie)).await;
    assert_eq!(thumb.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let original = send(&h, get(&format!("{}?accept=application/dicom", base(&m)), &cookie)).await;
    assert_eq!(original.body, std::fs::read(sample("MR_small_jpeg_ls_lossless.dcm")).expect("sample"));
    let raw = parts(&send(&h, get(&format!("{}/frames/1", base(&m)), &cookie)).await);
    assert!(raw[0].1.starts_with(&[0xFF, 0xD8]), "the JPEG-LS stream as stored");

    let page = send(&h, get(&format!("/imaging/{}?lang=en", m.study_uid), &cookie)).await;
    assert_eq!(page.status, StatusCode::OK);
    let text = page.text();
    assert!(text.contains(r#""decodable":false"#), "the viewer knows before asking");
    assert!(text.contains(r#""ts":"1.2.840.10008.1.2.4.80""#));
    assert!(text.contains("is not supported by this hub"));
    assert!(text.contains("Download original"));
}

#[tokio::test]
async fn imaging_pages_need_a_session() {
    let h = hub().await;
    let all = insert_all(&h);
    let ct = stored(&all, "CT_small.dcm");
    let anon = send(&h, get("/imaging", "")).await;
    assert_eq!(anon.status, StatusCode::SEE_OTHER);
    assert_eq!(anon.header("location"), "/login");
    assert_eq!(send(&h, get(&format!("/imaging/{}", ct.study_uid), "")).await.status, StatusCode::SEE_OTHER);
    for path in ["/dicomweb/studies".to_string(), base(ct), format!("{}/rendered", base(ct))] {
        let a = send(&h, get(&path, "yl_session=forged")).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{path}");
    }

    let cookie = sign_in(&h).await;
    let list = send(&h, get("/imaging", &cookie)).await;
    assert_eq!(list.status, StatusCode::OK);
    let text = list.text();
    assert!(text.contains("影像检查"), "Chinese by default");
    assert!(text.contains("CompressedSamples CT1") && text.contains("Doe Archibald"));
    assert!(text.contains(&format!("/dicomweb/studies/{}/series/{}/thumbnail", ct.study_uid, ct.series_uid)));
    assert!(text.contains("2004-01-19"));

    let viewer = send(&h, get(&format!("/imaging/{}", ct.study_uid), &cookie)).await;
    assert_eq!(viewer.status, StatusCode::OK);
    let text = viewer.text();
    for needle in [r#"data-wl="-600,1500""#, r#"data-wl="40,400""#, r#"data-wl="400,1800""#, r#"data-wl="40,80""#] {
        assert!(text.contains(needle), "{needle}");
    }
    assert!(text.contains("肺窗") && text.contains("下载原始文件") && text.contains(CT_SOP));
    assert!(text.contains(r#""spacing":[0.661468,0.661468]"#), "Pixel Spacing reaches the ruler");
    let cr = stored(&all, "CR_dicomdirtests_6154.dcm");
    let text = send(&h, get(&format!("/imaging/{}?lang=en", cr.study_uid), &cookie)).await.text();
    assert!(text.contains("Window/level") && text.contains("Lung"));
    assert!(text.contains(r#""spacing":[0.1,0.1],"spacingKind":"imager""#), "CR: Imager Pixel Spacing");
    assert_eq!(send(&h, get("/imaging/1.2.3", &cookie)).await.status, StatusCode::NOT_FOUND);
}

fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).expect("read dir").flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// A stored file altered on disk is refused with a clear error, never served or rendered; the
/// rest of the store is untouched. A store from before sealing is sealed when opened.
#[tokio::test]
async fn a_damaged_image_file_is_refused_and_a_plaintext_store_is_sealed_on_open() {
    let h = hub().await;
    let all = insert_all(&h);
    let ct = stored(&all, "CT_small.dcm").clone();
    let mr = stored(&all, "MR_small.dcm").clone();
    let file = h.images.path_of(&ct);
    let mut bytes = std::fs::read(&file).expect("read");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(&file, &bytes).expect("write");
    let err = h.images.read_instance(&ct).expect_err("damaged").to_string();
    assert!(err.contains("damaged") && err.contains(CT_SOP), "{err}");
    let cookie = sign_in(&h).await;
    let uri = format!("/dicomweb/studies/{}/series/{}/instances/{CT_SOP}/rendered", ct.study_uid, ct.series_uid);
    let r = send(&h, get(&uri, &cookie)).await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(h.images.read_instance(&mr).is_ok(), "the other instances are untouched");

    // An instance file from before sealing (plain `<sop>.dcm`) and a plain thumbnail.
    let series = file.parent().expect("series dir").to_path_buf();
    std::fs::remove_file(&file).expect("rm");
    let plain = series.join(format!("{CT_SOP}.dcm"));
    std::fs::copy(sample("CT_small.dcm"), &plain).expect("copy");
    std::fs::write(series.join("thumbnail.png"), b"old png").expect("thumb");
    let key =
        yilian_hub::store::sealed::load_or_create_key_file(&h.dir.path().join("keys").join("store.key")).expect("key");
    let reopened = yilian_hub::images::ImageStore::open_with_key(&h.dir.path().join("images"), key).expect("open");
    assert!(!plain.exists() && !series.join("thumbnail.png").exists());
    assert_eq!(reopened.read_instance(&ct).expect("sealed"), std::fs::read(sample("CT_small.dcm")).expect("sample"));
}
