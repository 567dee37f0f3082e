//! Who acts, for the audit log: user, role and the source address of the request.

use super::AppState;
use super::api::ApiError;
use crate::clock::now_ms;
use crate::store::audit::AuditEvent;
use axum::extract::ConnectInfo;
use axum::http::request::Parts;
use std::net::SocketAddr;

/// Source recorded when the server was started without connection info (in-process tests).
pub const SOURCE_UNKNOWN: &str = "unknown";

/// The acting user of a request.
#[derive(Debug, Clone)]
pub struct Actor {
    /// User id.
    pub user: String,
    /// Role name (`specialist`, `admin`, `auditor`, or `api` for a bearer token).
    pub role: &'static str,
    /// Peer address `ip:port`.
    pub source: String,
}

/// The peer address of a request (the TCP peer; a proxy's forwarding headers are not trusted).
pub fn source_of(parts: &Parts) -> String {
    parts.extensions.get::<ConnectInfo<SocketAddr>>().map_or_else(|| SOURCE_UNKNOWN.to_string(), |c| c.0.to_string())
}

/// Appends one audit entry for `actor`; an entry that cannot be written fails the request, so no
/// view goes unrecorded.
pub async fn record(
    s: &AppState,
    actor: &Actor,
    action: &str,
    object: &str,
    result: &str,
    detail: &str,
) -> Result<(), ApiError> {
    let e = AuditEvent {
        at_ms: now_ms(),
        user: actor.user.clone(),
        role: actor.role.to_string(),
        action: action.to_string(),
        object: object.to_string(),
        result: result.to_string(),
        source: actor.source.clone(),
        detail: detail.to_string(),
    };
    s.store.call(move |db| db.audit_event(&e)).await??;
    Ok(())
}

/// [`record`] with result `ok` and no detail.
pub async fn ok(s: &AppState, actor: &Actor, action: &str, object: &str) -> Result<(), ApiError> {
    record(s, actor, action, object, crate::store::audit::RESULT_OK, "").await
}

/// The peer address of a request, as an extractor that never fails.
#[derive(Debug, Clone)]
pub struct Source(pub String);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Source {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Source(source_of(parts)))
    }
}
