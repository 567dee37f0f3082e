//! The county's TUF repository over HTTPS, for agents.
//!
//! | method | path | what |
//! | --- | --- | --- |
//! | GET | `/tuf/metadata/{file}` | `N.root.json`, `N.targets.json`, `N.snapshot.json`, `timestamp.json` |
//! | GET | `/tuf/targets/{file}` | `<sha256>.<name>`; `Range: bytes=N-` resumes a cut download |
//!
//! No sign-in: everything here is signed, and an agent trusts it only as far as its TUF
//! signatures go (TUF treats every mirror as untrusted). Names are checked to be plain file
//! names, so nothing outside the repository can be read.

use super::AppState;
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use std::io::SeekFrom;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

/// The repository routes.
pub fn routes() -> Router<AppState> {
    Router::new().route("/tuf/metadata/{file}", get(metadata)).route("/tuf/targets/{file}", get(target))
}

/// A plain file name: letters, digits, `.`, `-`, `_`, `+`; not starting with a dot.
fn plain(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && !name.starts_with('.')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'+'))
}

fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "no such file in the update repository").into_response()
}

async fn metadata(State(s): State<AppState>, Path(file): Path<String>) -> Response {
    let Some(repo) = &s.tuf else { return not_found() };
    if !plain(&file) || !file.ends_with(".json") {
        return not_found();
    }
    match tokio::fs::read(repo.metadata().join(&file)).await {
        Ok(bytes) => {
            // The timestamp changes in place; versioned files never do.
            let cache = if file == "timestamp.json" { "no-store" } else { "max-age=31536000, immutable" };
            ([(header::CONTENT_TYPE, "application/json"), (header::CACHE_CONTROL, cache)], bytes).into_response()
        }
        Err(_) => not_found(),
    }
}

/// `bytes=N-` (what a resuming agent sends); other forms are served whole.
fn range_start(headers: &HeaderMap) -> Option<u64> {
    let v = headers.get(header::RANGE)?.to_str().ok()?;
    let from = v.strip_prefix("bytes=")?.strip_suffix('-')?;
    from.parse().ok()
}

async fn target(State(s): State<AppState>, Path(file): Path<String>, headers: HeaderMap) -> Response {
    let Some(repo) = &s.tuf else { return not_found() };
    if !plain(&file) {
        return not_found();
    }
    let path = repo.targets().join(&file);
    let Ok(mut f) = tokio::fs::File::open(&path).await else { return not_found() };
    let Ok(len) = f.metadata().await.map(|m| m.len()) else { return not_found() };
    let start = range_start(&headers).unwrap_or(0);
    if start > len {
        let mut r = StatusCode::RANGE_NOT_SATISFIABLE.into_response();
        if let Ok(v) = HeaderValue::from_str(&format!("bytes */{len}")) {
            r.headers_mut().insert(header::CONTENT_RANGE, v);
        }
        return r;
    }
    if f.seek(SeekFrom::Start(start)).await.is_err() {
        return not_found();
    }
    let body = Body::from_stream(tokio_util::io::ReaderStream::new(f.take(len - start)));
    let mut r = Response::new(body);
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Ok(v) = HeaderValue::from_str(&(len - start).to_string()) {
        h.insert(header::CONTENT_LENGTH, v);
    }
    if start > 0 {
        *r.status_mut() = StatusCode::PARTIAL_CONTENT;
        if let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{}/{len}", len.saturating_sub(1))) {
            r.headers_mut().insert(header::CONTENT_RANGE, v);
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_names_and_open_ranges_are_taken() {
        for ok in ["1.root.json", "timestamp.json", "ab12.agent-x86_64-unknown-linux-gnu-1.2.0"] {
            assert!(plain(ok), "{ok}");
        }
        for bad in ["", "..", ".hidden", "../keys/timestamp.pk8", "a/b", "a%2fb", "a\\b"] {
            assert!(!plain(bad), "{bad}");
        }
        let mut h = HeaderMap::new();
        assert_eq!(range_start(&h), None);
        h.insert(header::RANGE, HeaderValue::from_static("bytes=4096-"));
        assert_eq!(range_start(&h), Some(4096));
        h.insert(header::RANGE, HeaderValue::from_static("bytes=0-99"));
        assert_eq!(range_start(&h), None);
    }
}
