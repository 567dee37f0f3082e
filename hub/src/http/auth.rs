//! Specialist authentication: `Authorization: Bearer <token>`; the store keeps only SHA-256.

use super::AppState;
use axum::extract::FromRequestParts;
use axum::http::StatusCode;
use axum::http::request::Parts;
use sha2::{Digest, Sha256};

/// An authenticated specialist.
#[derive(Debug, Clone)]
pub struct Specialist {
    /// Id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Role name: the session's, or `api` for a bearer token.
    pub role: &'static str,
    /// Peer address of the request.
    pub source: String,
}

impl Specialist {
    /// The actor of this caller's requests, for the audit log.
    pub fn actor(&self) -> super::actor::Actor {
        super::actor::Actor { user: self.id.clone(), role: self.role, source: self.source.clone() }
    }
}

/// SHA-256 (hex) of a token, as stored.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A new random API token (32 bytes, hex).
pub fn new_token() -> Result<String, ring::error::Unspecified> {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 32];
    ring::rand::SystemRandom::new().fill(&mut b)?;
    Ok(hex::encode(b))
}

impl FromRequestParts<AppState> for Specialist {
    type Rejection = (StatusCode, &'static str);

    /// A bearer token (API clients), or a console session; a session's writes must carry its
    /// CSRF token in `X-CSRF-Token`.
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let bearer = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty());
        let Some(token) = bearer else {
            let s =
                super::session::session_of(parts, state).await.ok_or((StatusCode::UNAUTHORIZED, "sign in first"))?;
            // An auditor reads who did what, never the studies themselves.
            if s.role == super::session::Role::Auditor {
                return Err((StatusCode::FORBIDDEN, "auditors see the audit log only"));
            }
            if super::session::is_write(parts) {
                let sent = parts.headers.get("x-csrf-token").and_then(|v| v.to_str().ok()).unwrap_or_default();
                if !super::session::same_token(sent, &s.csrf) {
                    return Err((StatusCode::FORBIDDEN, "missing or wrong CSRF token"));
                }
            }
            return Ok(Specialist { id: s.user_id, name: s.name, role: s.role.as_str(), source: s.source });
        };
        let hash = token_hash(token);
        match state.store.call(move |db| db.specialist_by_token(&hash)).await {
            Ok(Ok(Some((id, name)))) => {
                Ok(Specialist { id, name, role: "api", source: super::actor::source_of(parts) })
            }
            Ok(Ok(None)) => Err((StatusCode::UNAUTHORIZED, "unknown token")),
            _ => Err((StatusCode::SERVICE_UNAVAILABLE, "store unavailable")),
        }
    }
}
