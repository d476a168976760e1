//! Bearer tokens. Compared in constant time so that response timing does not
//! reveal how much of a guess was right.

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;

use super::{AppState, error_response};

/// Equal length and equal bytes, without an early exit on the first difference.
pub fn tokens_match(given: &[u8], expected: &[u8]) -> bool {
    let mut difference = given.len() ^ expected.len();
    for (i, byte) in expected.iter().enumerate() {
        difference |= usize::from(given.get(i).copied().unwrap_or(0) ^ byte);
    }
    difference == 0
}

fn bearer(request: &Request) -> Option<&[u8]> {
    request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_token)
        .map(str::as_bytes)
}

/// The token of an `Authorization` value; the scheme's name is
/// case-insensitive (RFC 9110), and some clients and proxies lower it.
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then_some(token)
}

/// Whether the request carries the expected token (always, when none is configured).
fn authorised(expected: Option<&str>, request: &Request) -> bool {
    expected.is_none_or(|token| {
        bearer(request).is_some_and(|given| tokens_match(given, token.as_bytes()))
    })
}

/// A 401 names its scheme (RFC 9110), so clients know to send a bearer token.
fn unauthorised(what: &str) -> Response {
    let mut response = error_response(
        StatusCode::UNAUTHORIZED,
        format!("missing or wrong {what} token"),
    );
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Bearer"),
    );
    response
}

pub async fn require_admin(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    if authorised(state.admin_token.as_deref(), &request) {
        next.run(request).await
    } else {
        unauthorised("admin")
    }
}

pub async fn require_cluster(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    if authorised(state.cluster_token.as_deref(), &request) {
        next.run(request).await
    } else {
        unauthorised("cluster")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bearer_scheme_is_read_in_any_case() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer abc"), Some("abc"));
        assert_eq!(bearer_token("BEARER abc"), Some("abc"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearerabc"), None);
    }

    #[test]
    fn a_refusal_names_the_bearer_scheme() {
        let refused = unauthorised("admin");
        assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(refused.headers()[header::WWW_AUTHENTICATE], "Bearer");
    }

    #[test]
    fn only_the_exact_token_matches() {
        assert!(tokens_match(b"secret", b"secret"));
        assert!(!tokens_match(b"secre", b"secret"));
        assert!(!tokens_match(b"secret!", b"secret"));
        assert!(!tokens_match(b"Secret", b"secret"));
        assert!(!tokens_match(b"", b"secret"));
    }
}
