//! The tamper-evident audit log: the chain, its verification after edits and removals, the
//! auditor-only console and API, and sign-ins recorded with their source address. Real SQLite
//! files, the real router.

mod common;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode, header};
use rusqlite::Connection;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use tower::ServiceExt;
use yilian_hub::http::{router, session};
use yilian_hub::store::audit::{AuditEvent, ChainFault};
use yilian_hub::store::{Db, Store, schema};
use yilian_protocol::keys::SigningKey;

fn event(i: i64) -> AuditEvent {
    AuditEvent {
        at_ms: 1_764_000_000_000 + i,
        user: format!("user{i}"),
        role: "specialist".into(),
        action: "view study".into(),
        object: format!("study-{i}"),
        result: "ok".into(),
        source: "10.0.0.7:50000".into(),
        detail: String::new(),
    }
}

/// A database with `n` chained entries (ids 1..=n).
fn db_with(n: i64) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tmp");
    // The name `yilian-hub --data DIR` opens.
    let path = dir.path().join("yilian.db");
    let mut db = Db::open(&path).expect("db");
    for i in 1..=n {
        assert_eq!(db.audit_event(&event(i)).expect("append"), i);
    }
    (dir, path)
}

/// Tampers with the file the way someone with an SQL client would, then verifies afresh.
fn tamper_then_verify(path: &Path, sql: &str) -> Result<i64, ChainFault> {
    Connection::open(path).expect("raw").execute_batch(sql).expect("tamper");
    Db::open(path).expect("db").audit_verify().expect("verify").map(|s| s.entries)
}

#[test]
fn an_untouched_chain_verifies_and_db_audit_keeps_working() {
    let (_dir, path) = db_with(5);
    let mut db = Db::open(&path).expect("db");
    db.audit("it", "revoke", "cart-7", "stolen", 1_764_000_000_100).expect("audit");
    let sum = db.audit_verify().expect("verify").expect("intact");
    assert_eq!((sum.entries, sum.last_id), (6, 6));
    let last = db.audit_records(5, 10).expect("records");
    assert_eq!(last.len(), 1);
    assert_eq!((last[0].action.as_str(), last[0].result.as_str(), last[0].source.as_str()), ("revoke", "ok", "local"));
    assert_eq!(last[0].alg.as_deref(), Some("sha256"));
    assert_eq!(last[0].hash.as_deref(), Some(sum.head.as_str()));
}

#[test]
fn editing_one_row_is_detected_at_that_row() {
    let (_dir, path) = db_with(5);
    let got = tamper_then_verify(&path, "UPDATE audit SET user_id = 'someone-else' WHERE id = 3");
    assert_eq!(got, Err(ChainFault::Edited { id: 3 }));
    let (_dir, path) = db_with(5);
    let got = tamper_then_verify(&path, "UPDATE audit SET source = '127.0.0.1:1' WHERE id = 5");
    assert_eq!(got, Err(ChainFault::Edited { id: 5 }));
}

#[test]
fn removing_a_middle_row_is_detected_at_the_next_row() {
    let (_dir, path) = db_with(5);
    let got = tamper_then_verify(&path, "DELETE FROM audit WHERE id = 3");
    assert_eq!(got, Err(ChainFault::Removed { id: 4 }));
}

#[test]
fn removing_the_last_rows_is_detected_by_the_head() {
    let (_dir, path) = db_with(5);
    let got = tamper_then_verify(&path, "DELETE FROM audit WHERE id >= 4");
    assert_eq!(got, Err(ChainFault::TailRemoved { expected: 5, found: 3, last_id: 5 }));
}

#[test]
fn reordered_rows_and_unknown_algorithms_are_refused() {
    let (_dir, path) = db_with(4);
    // Row 2 moved after row 4 (its content and hashes intact, only its place changed).
    let got = tamper_then_verify(
        &path,
        "UPDATE audit SET id = 10 WHERE id = 2; UPDATE audit SET id = 2 WHERE id = 4; UPDATE audit SET id = 4 WHERE id = 10;",
    );
    assert!(matches!(got, Err(ChainFault::Edited { .. } | ChainFault::Reordered { .. })), "{got:?}");
    let (_dir, path) = db_with(3);
    let got = tamper_then_verify(&path, "UPDATE audit SET alg = 'sm3' WHERE id = 2");
    assert_eq!(got, Err(ChainFault::UnknownAlgorithm { id: 2, alg: "sm3".into() }));
    let (_dir, path) = db_with(3);
    let got = tamper_then_verify(
        &path,
        "INSERT INTO audit (at_ms, user_id, action, subject, detail) VALUES (1, 'x', 'sign in', '', '')",
    );
    assert_eq!(got, Err(ChainFault::Unchained { id: 4 }));
}

#[test]
fn entries_written_before_the_chain_are_chained_once_on_upgrade() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("y.db");
    let mine = schema::MIGRATIONS.iter().position(|m| m.contains("CREATE TABLE audit_head")).expect("migration");
    {
        let conn = Connection::open(&path).expect("raw");
        for m in &schema::MIGRATIONS[..mine] {
            conn.execute_batch(m).expect("old migration");
        }
        conn.pragma_update(None, "user_version", mine as i64).expect("version");
        conn.execute_batch(
            "INSERT INTO users VALUES ('li', '李娜', 'specialist', 'x', 0);
             INSERT INTO audit (at_ms, user_id, action, subject, detail) VALUES (1, 'li', 'sign in', '', '');
             INSERT INTO audit (at_ms, user_id, action, subject, detail) VALUES (2, 'li', 'view study', 's1', '');",
        )
        .expect("old rows");
    }
    let mut db = Db::open(&path).expect("upgrade");
    assert_eq!(db.audit_verify().expect("verify").expect("intact").entries, 2);
    db.audit("li", "claim", "s1", "", 3).expect("append");
    assert_eq!(db.audit_verify().expect("verify").expect("intact").entries, 3);
    assert_eq!(db.user("li").expect("user").map(|u| u.1), Some("specialist".into()), "users kept");
    db.add_user("sec", "保密员", "auditor", "x", 4).expect("the auditor role is allowed");
    assert!(db.add_user("bad", "x", "root", "x", 4).is_err(), "other roles are not");
    drop(db);
    // Opening again does not re-chain or move anything.
    let db = Db::open(&path).expect("reopen");
    assert_eq!(db.audit_verify().expect("verify").expect("intact").entries, 3);
}

struct Console {
    app: Router,
    store: Store,
    _dir: tempfile::TempDir,
}

async fn console() -> Console {
    let dir = tempfile::tempdir().expect("tmp");
    let store = Store::open_test(dir.path()).expect("store");
    for (id, name, role) in [("li", "李娜", "specialist"), ("it", "县信息科", "admin"), ("sec", "保密员", "auditor")]
    {
        let hash = session::hash_password("correct horse").expect("hash");
        store.call(move |db| db.add_user(id, name, role, &hash, 0)).await.expect("call").expect("user");
    }
    let state = common::app_state(dir.path(), store.clone(), SigningKey::generate().expect("key"));
    Console { app: router(state), store, _dir: dir }
}

const PEER: &str = "192.0.2.44:51234";

/// Sends a request as if it came from [`PEER`] over TCP.
async fn send(c: &Console, mut req: Request<Body>) -> (StatusCode, Vec<(String, String)>, String) {
    req.extensions_mut().insert(ConnectInfo(PEER.parse::<SocketAddr>().expect("addr")));
    let resp = c.app.clone().oneshot(req).await.expect("response");
    let status = resp.status();
    let headers =
        resp.headers().iter().map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().to_string())).collect();
    let body = axum::body::to_bytes(resp.into_body(), 1 << 22).await.expect("body");
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

fn get(path: &str, cookie: &str) -> Request<Body> {
    Request::get(path).header(header::COOKIE, cookie).body(Body::empty()).expect("request")
}

fn cookie_value(headers: &[(String, String)], name: &str) -> Option<String> {
    headers.iter().filter(|(k, _)| k == "set-cookie").find_map(|(_, v)| {
        v.strip_prefix(&format!("{name}=")).map(|rest| rest.split(';').next().unwrap_or_default().to_string())
    })
}

/// Signs in; the session cookie, and where the console sent the user.
async fn sign_in(c: &Console, user: &str, password: &str) -> Option<(String, String)> {
    let (_, headers, _) = send(c, get("/login", "")).await;
    let login_csrf = cookie_value(&headers, "yl_login_csrf").expect("login csrf cookie");
    let form = format!("user={user}&password={}&csrf={login_csrf}", password.replace(' ', "+"));
    let req = Request::post("/login")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::COOKIE, format!("yl_login_csrf={login_csrf}"))
        .body(Body::from(form))
        .expect("request");
    let (_, headers, _) = send(c, req).await;
    let token = cookie_value(&headers, session::SESSION_COOKIE)?;
    let to = headers.iter().find(|(k, _)| k == "location").map(|x| x.1.clone()).unwrap_or_default();
    Some((format!("{}={token}", session::SESSION_COOKIE), to))
}

#[tokio::test]
async fn only_auditors_read_the_audit_log_and_auditors_read_nothing_clinical() {
    let c = console().await;
    let (li, _) = sign_in(&c, "li", "correct horse").await.expect("specialist");
    let (it, _) = sign_in(&c, "it", "correct horse").await.expect("admin");
    let (sec, home) = sign_in(&c, "sec", "correct horse").await.expect("auditor");
    assert_eq!(home, "/audit", "an auditor lands on the audit log");
    for who in [&li, &it] {
        for path in ["/audit", "/api/audit", "/api/audit/verify"] {
            assert_eq!(send(&c, get(path, who)).await.0, StatusCode::FORBIDDEN, "{path}");
        }
    }
    let (status, _, page) = send(&c, get("/audit", &sec)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("审计日志") && page.contains("审计链完整"), "Chinese by default: {page}");
    assert!(page.contains(PEER), "source addresses shown");
    let (_, _, page) = send(&c, get("/audit?lang=en", &sec)).await;
    assert!(page.contains("Audit chain intact"));
    let (status, _, json) = send(&c, get("/api/audit", &sec)).await;
    assert_eq!(status, StatusCode::OK);
    let entries: Vec<serde_json::Value> = serde_json::from_str(&json).expect("json");
    let denied = entries.iter().filter(|e| e["result"] == "denied" && e["action"] == "read audit log").count();
    assert!(denied >= 4, "refused reads are recorded: {json}");
    let (_, _, verify) = send(&c, get("/api/audit/verify", &sec)).await;
    assert!(verify.contains(r#""ok":true"#), "{verify}");
    // The auditor's session opens no clinical page or API.
    for path in ["/", "/fleet", "/api/queue", "/api/studies", "/api/devices", "/imaging", "/dicomweb/studies"] {
        assert_eq!(send(&c, get(path, &sec)).await.0, StatusCode::FORBIDDEN, "{path}");
    }
}

#[tokio::test]
async fn sign_ins_are_audited_with_role_result_and_source_address() {
    let c = console().await;
    assert!(sign_in(&c, "li", "wrong password").await.is_none());
    assert!(sign_in(&c, "nobody", "correct horse").await.is_none());
    assert!(sign_in(&c, "li", "correct horse").await.is_some());
    let log = c.store.call(|db| db.audit_log(50)).await.expect("call").expect("audit");
    let failed: Vec<_> = log.iter().filter(|a| a.action == "sign-in failed").collect();
    assert_eq!(failed.len(), 2, "{log:?}");
    assert!(failed.iter().all(|a| a.result == "failed" && a.source == PEER), "{failed:?}");
    assert!(failed.iter().any(|a| a.user == "li" && a.role == "specialist"));
    assert!(failed.iter().any(|a| a.user == "nobody" && a.role.is_empty()));
    let ok = log.iter().find(|a| a.action == "sign in").expect("sign in recorded");
    assert_eq!(
        (ok.user.as_str(), ok.role.as_str(), ok.result.as_str(), ok.source.as_str()),
        ("li", "specialist", "ok", PEER)
    );
    let chain = c.store.call(|db| db.audit_verify()).await.expect("call").expect("verify");
    assert!(chain.is_ok(), "{chain:?}");
}

/// `yilian-hub --data DIR args…`: (success, stdout, stderr).
fn hub_cli(data: &Path, args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_yilian-hub"))
        .arg("--data")
        .arg(data)
        .args(args)
        .output()
        .expect("run yilian-hub");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_command_line_verifies_exports_and_names_the_first_bad_entry() {
    let (dir, path) = db_with(4);
    let (ok, out, _) = hub_cli(dir.path(), &["audit", "verify"]);
    assert!(ok && out.contains("intact: 4 entries"), "{out}");
    // Account changes on the command line are audited too.
    let add = std::process::Command::new(env!("CARGO_BIN_EXE_yilian-hub"))
        .arg("--data")
        .arg(dir.path())
        .args(["user", "add", "--id", "sec", "--name", "保密员", "--role", "auditor"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().expect("stdin").write_all(b"a long password\n")?;
            c.wait()
        })
        .expect("user add");
    assert!(add.success());
    let (ok, out, _) = hub_cli(dir.path(), &["audit", "verify"]);
    assert!(ok && out.contains("intact: 5 entries"), "{out}");
    let (ok, out, _) = hub_cli(dir.path(), &["audit", "export"]);
    assert!(ok);
    let lines: Vec<serde_json::Value> = out.lines().map(|l| serde_json::from_str(l).expect("json line")).collect();
    assert_eq!(lines.len(), 5);
    assert_eq!(lines[2]["object"], "study-3");
    assert_eq!(
        (lines[4]["action"].as_str(), lines[4]["object"].as_str(), lines[4]["detail"].as_str()),
        (Some("set user"), Some("sec"), Some("auditor"))
    );
    assert_eq!(lines[3]["prev"], lines[2]["hash"]);
    Connection::open(&path)
        .expect("raw")
        .execute("UPDATE audit SET action = 'nothing' WHERE id = 2", [])
        .expect("edit");
    let (ok, _, err) = hub_cli(dir.path(), &["audit", "verify"]);
    assert!(!ok && err.contains("entry 2 was edited"), "{err}");
}

#[test]
fn log_tags_are_keyed_per_installation() {
    let a = tempfile::tempdir().expect("tmp");
    let b = tempfile::tempdir().expect("tmp");
    let (ok, tag_a, _) = hub_cli(a.path(), &["log-tag", "金丝雀测试"]);
    assert!(ok && tag_a.contains("patient ph:") && !tag_a.contains("金丝雀"), "{tag_a}");
    assert_eq!(hub_cli(a.path(), &["log-tag", "金丝雀测试"]).1, tag_a, "stable under one key");
    assert_ne!(hub_cli(b.path(), &["log-tag", "金丝雀测试"]).1, tag_a, "another county, another tag");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(a.path().join("log.key")).expect("key").permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn a_long_log_is_verified_in_steps_with_the_same_verdict() {
    use yilian_hub::store::audit::ChainCheck;
    let stepwise = |db: &Db| {
        let mut check = ChainCheck::default();
        loop {
            if let Some(done) = db.audit_verify_step(&mut check, 4).expect("step") {
                return done;
            }
        }
    };
    let (_dir, path) = db_with(25);
    let db = Db::open(&path).expect("db");
    let whole = db.audit_verify().expect("verify");
    assert_eq!(whole.as_ref().map(|s| s.entries), Ok(25));
    assert_eq!(stepwise(&db), whole);
    drop(db);
    Connection::open(&path).expect("raw").execute("UPDATE audit SET at_ms = 0 WHERE id = 13", []).expect("edit");
    let db = Db::open(&path).expect("db");
    assert_eq!(stepwise(&db), Err(ChainFault::Edited { id: 13 }));
    assert_eq!(db.audit_verify().expect("verify"), Err(ChainFault::Edited { id: 13 }));
}
