//! Console sign-in: argon2 password hashes, session cookies, roles, CSRF tokens.
//!
//! The session cookie is `HttpOnly; Secure; SameSite=Strict`; the store keeps only its SHA-256.
//! Every state-changing request made with a session cookie must carry the session's CSRF token
//! (header `X-CSRF-Token`, or form field `csrf`); API clients with a bearer token are not
//! cookie-borne and need none.

use super::AppState;
use super::auth::token_hash;
use crate::clock::now_ms;
use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use axum::extract::FromRequestParts;
use axum::http::header::COOKIE;
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};

/// Name of the session cookie.
pub const SESSION_COOKIE: &str = "yl_session";
/// How long a session lasts (a long shift).
pub const SESSION_TTL_MS: i64 = 12 * 3600 * 1000;

/// A console user's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Reads and reports studies.
    Specialist,
    /// County IT: also the fleet pages.
    Admin,
    /// Security officer: reads the audit log, nothing clinical.
    Auditor,
}

impl Role {
    /// Parses the stored name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "specialist" => Some(Role::Specialist),
            "admin" => Some(Role::Admin),
            "auditor" => Some(Role::Auditor),
            _ => None,
        }
    }

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Specialist => "specialist",
            Role::Admin => "admin",
            Role::Auditor => "auditor",
        }
    }
}

/// A signed-in console user.
#[derive(Debug, Clone)]
pub struct Session {
    /// User id.
    pub user_id: String,
    /// Display name.
    pub name: String,
    /// Role.
    pub role: Role,
    /// The session's CSRF token.
    pub csrf: String,
    /// Peer address of the request.
    pub source: String,
}

impl Session {
    /// The actor of this session's requests, for the audit log.
    pub fn actor(&self) -> super::actor::Actor {
        super::actor::Actor { user: self.user_id.clone(), role: self.role.as_str(), source: self.source.clone() }
    }
}

/// Hashes a password with argon2id and a random salt (PHC string).
pub fn hash_password(password: &str) -> Result<String, String> {
    use ring::rand::SecureRandom;
    let mut salt = [0u8; 16];
    ring::rand::SystemRandom::new().fill(&mut salt).map_err(|_| "no randomness".to_string())?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| e.to_string())?;
    Argon2::default().hash_password(password.as_bytes(), &salt).map(|h| h.to_string()).map_err(|e| e.to_string())
}

/// Checks a password against a stored PHC string.
pub fn verify_password(hash: &str, password: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|h| Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
}

/// The value of cookie `name` in a request's headers.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get_all(COOKIE).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(';')).find_map(|kv| {
        let (k, v) = kv.trim().split_once('=')?;
        (k == name).then_some(v)
    })
}

/// The `Set-Cookie` value for a session token.
pub fn session_cookie(token: &str) -> String {
    format!("{SESSION_COOKIE}={token}; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age={}", SESSION_TTL_MS / 1000)
}

/// The `Set-Cookie` value that ends the session cookie.
pub fn clear_session_cookie() -> String {
    format!("{SESSION_COOKIE}=; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age=0")
}

/// Looks up the session a request carries, if any and live.
pub async fn session_of(parts: &Parts, state: &AppState) -> Option<Session> {
    let token = cookie(&parts.headers, SESSION_COOKIE)?;
    let hash = token_hash(token);
    let (user_id, name, role, csrf) = state.store.call(move |db| db.session(&hash, now_ms())).await.ok()?.ok()??;
    Some(Session { user_id, name, role: Role::parse(&role)?, csrf, source: super::actor::source_of(parts) })
}

/// Whether a request's method changes state (and so needs the CSRF token).
pub fn is_write(parts: &Parts) -> bool {
    !matches!(parts.method.as_str(), "GET" | "HEAD" | "OPTIONS")
}

/// Compares two tokens through their SHA-256, so the time taken tells nothing about how much
/// of a guess was right.
pub fn same_token(a: &str, b: &str) -> bool {
    !a.is_empty() && token_hash(a) == token_hash(b)
}

impl Session {
    /// Checks a county IT form post: the form's CSRF token is this session's, and the session
    /// is an admin's. The refusal is the response to send.
    pub fn admin_form(&self, csrf: &str) -> Result<(), (StatusCode, &'static str)> {
        if !same_token(csrf, &self.csrf) {
            return Err((StatusCode::FORBIDDEN, "missing or wrong CSRF token"));
        }
        if self.role != Role::Admin {
            return Err((StatusCode::FORBIDDEN, "county IT only"));
        }
        Ok(())
    }
}

impl FromRequestParts<AppState> for Session {
    type Rejection = (StatusCode, &'static str);

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        session_of(parts, state).await.ok_or((StatusCode::UNAUTHORIZED, "sign in first"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_hash_with_salt_and_verify() {
        let a = hash_password("正确的密码 horse").expect("hash");
        let b = hash_password("正确的密码 horse").expect("hash");
        assert_ne!(a, b, "salted");
        assert!(a.starts_with("$argon2id$"));
        assert!(verify_password(&a, "正确的密码 horse"));
        assert!(!verify_password(&a, "wrong"));
        assert!(!verify_password("not a hash", "x"));
    }
}
