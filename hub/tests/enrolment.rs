//! The enrolment API and the console's device enrolment page over HTTP: real router, real SQLite.

mod common;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use tower::ServiceExt;
use yilian_hub::http::{router, session};
use yilian_hub::store::Store;
use yilian_protocol::enrol::{EnrolRequest, EnrolStatus, sign_poll};
use yilian_protocol::keys::SigningKey;

struct Hub {
    app: Router,
    store: Store,
    hub_key: String,
    _dir: tempfile::TempDir,
}

async fn hub() -> Hub {
    let dir = tempfile::tempdir().expect("tmp");
    let store = Store::open_test(dir.path()).expect("store");
    let key = SigningKey::generate().expect("key");
    let hub_key = key.public_key().to_hex();
    for (id, role) in [("li", "specialist"), ("it", "admin")] {
        let hash = session::hash_password("correct horse").expect("hash");
        store.call(move |db| db.add_user(id, id, role, &hash, 0)).await.expect("call").expect("user");
    }
    let state = common::app_state(dir.path(), store.clone(), key);
    Hub { app: router(state), store, hub_key, _dir: dir }
}

async fn send(h: &Hub, req: Request<Body>) -> (StatusCode, Vec<(String, String)>, String) {
    let resp = h.app.clone().oneshot(req).await.expect("response");
    let status = resp.status();
    let headers =
        resp.headers().iter().map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().to_string())).collect();
    let body = axum::body::to_bytes(resp.into_body(), 1 << 22).await.expect("body");
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

fn cookie_value(headers: &[(String, String)], name: &str) -> Option<String> {
    headers.iter().filter(|(k, _)| k == "set-cookie").find_map(|(_, v)| {
        v.strip_prefix(&format!("{name}=")).map(|rest| rest.split(';').next().unwrap_or_default().to_string())
    })
}

async fn sign_in(h: &Hub, user: &str) -> (String, String) {
    let (_, headers, _) = send(h, Request::get("/login").body(Body::empty()).expect("req")).await;
    let login_csrf = cookie_value(&headers, "yl_login_csrf").expect("login csrf");
    let req = Request::post("/login")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::COOKIE, format!("yl_login_csrf={login_csrf}"))
        .body(Body::from(format!("user={user}&password=correct+horse&csrf={login_csrf}")))
        .expect("req");
    let (_, headers, _) = send(h, req).await;
    let cookie =
        format!("{}={}", session::SESSION_COOKIE, cookie_value(&headers, session::SESSION_COOKIE).expect("session"));
    let (_, _, page) =
        send(h, Request::get("/").header(header::COOKIE, &cookie).body(Body::empty()).expect("req")).await;
    let csrf = page.split(r#"<meta name="csrf" content=""#).nth(1).and_then(|s| s.split('"').next()).expect("csrf");
    (cookie, csrf.to_string())
}

fn post_form(path: &str, cookie: &str, form: &str) -> Request<Body> {
    Request::post(path)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::COOKIE, cookie)
        .body(Body::from(form.to_string()))
        .expect("req")
}

async fn poll(h: &Hub, device: &str, key: &SigningKey) -> (StatusCode, String) {
    let (alg, at, sig) = sign_poll(device, key, yilian_hub::clock::now_ms());
    let uri = format!("/api/enrol/{device}?alg={alg}&at_ms={at}&sig={sig}");
    let (s, _, body) = send(h, Request::get(uri).body(Body::empty()).expect("req")).await;
    (s, body)
}

#[tokio::test]
async fn a_device_enrols_over_http_and_only_an_admin_with_the_csrf_token_approves_it() {
    let h = hub().await;
    let t = yilian_hub::lifecycle::new_token().expect("rng");
    let (id, hash) = (t.id.clone(), t.secret_sha256);
    h.store
        .call(move |db| db.add_enrol_token(&id, &hash, "clinic-a", "it", i64::MAX, 0))
        .await
        .expect("call")
        .expect("token");
    let key = SigningKey::generate().expect("key");
    let req = EnrolRequest::sign(&t.token, "clinic-a", "cart-9", &key, yilian_hub::clock::now_ms());
    let body = serde_json::to_string(&req).expect("json");
    let http = Request::post("/api/enrol").header(header::CONTENT_TYPE, "application/json").body(Body::from(body));
    let (status, _, answer) = send(&h, http.expect("req")).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    let s: EnrolStatus = serde_json::from_str(&answer).expect("status");
    assert_eq!((s.state.as_str(), s.hub_public_key.as_deref()), ("pending", Some(h.hub_key.as_str())));

    // A poll must be signed by the device's own key.
    assert_eq!(poll(&h, "cart-9", &SigningKey::generate().expect("key")).await.0, StatusCode::FORBIDDEN);
    assert!(poll(&h, "cart-9", &key).await.1.contains(r#""state":"pending""#));

    let (admin, csrf) = sign_in(&h, "it").await;
    let (status, _, page) =
        send(&h, Request::get("/fleet/enrolment").header(header::COOKIE, &admin).body(Body::empty()).expect("req"))
            .await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains(r#"data-device="cart-9" data-state="pending""#), "{page}");
    assert!(page.contains(&key.key_id().to_string()), "the key id to compare");

    let (specialist, s_csrf) = sign_in(&h, "li").await;
    let (status, _, _) =
        send(&h, post_form("/fleet/devices/cart-9/approve", &specialist, &format!("csrf={s_csrf}"))).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "specialists cannot approve devices");
    let (status, _, _) = send(&h, post_form("/fleet/devices/cart-9/approve", &admin, "csrf=wrong")).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "no CSRF token, no approval");
    assert!(poll(&h, "cart-9", &key).await.1.contains(r#""state":"pending""#));

    let (status, _, _) = send(&h, post_form("/fleet/devices/cart-9/approve", &admin, &format!("csrf={csrf}"))).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert!(poll(&h, "cart-9", &key).await.1.contains(r#""state":"active""#));
    let (status, _, _) = send(&h, post_form("/fleet/devices/cart-9/approve", &admin, &format!("csrf={csrf}"))).await;
    assert_eq!(status, StatusCode::CONFLICT, "an active device cannot be approved again");
    let log = h.store.call(|db| db.audit_log(10)).await.expect("call").expect("audit");
    assert!(log.iter().any(|e| e.action == "device-approve" && e.user == "it" && e.subject == "cart-9"));
}
