//! The bearer-token check of the write endpoints (RFC 6750): `Authorization: Bearer <token>`
//! compared in constant time with `http.api_token`. No token configured means writes are
//! disabled (403, saying how to set one), so a gateway never accepts writes from anyone by
//! accident; a missing or wrong token is 401 with `WWW-Authenticate: Bearer`.

use axum::http::{header, HeaderMap, StatusCode};

use super::ApiError;
use crate::config::Secret;

/// Whether the request carries the configured token.
pub(crate) fn check(headers: &HeaderMap, token: &Secret, token_env: &str) -> Result<(), ApiError> {
    if token.is_empty() {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!(
                "writes are disabled: no API token is configured; set `http.api_token_file`, or the environment variable {token_env} (named by `http.api_token_env`), and restart the gateway"
            ),
        ));
    }
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer);
    match given {
        None => Err(unauthorized(
            "missing API token; send the header `Authorization: Bearer <token>`",
        )),
        Some(t) if constant_time_eq(t.as_bytes(), token.expose().as_bytes()) => Ok(()),
        Some(_) => Err(unauthorized("wrong API token")),
    }
}

fn unauthorized(message: &str) -> ApiError {
    ApiError {
        status: StatusCode::UNAUTHORIZED,
        message: message.to_owned(),
        challenge: true,
    }
}

/// The token of an `Authorization` value of the Bearer scheme (the scheme name is
/// case-insensitive, RFC 9110 §11.1).
fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Compares without returning early at the first difference, so the answer time does not
/// tell an attacker how much of a guessed token was right. (The length may leak; the token's
/// secrecy does not rest on its length.)
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = u8::from(a.len() != b.len());
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= x ^ y;
    }
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(auth: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(a) = auth {
            h.insert(
                header::AUTHORIZATION,
                HeaderValue::from_str(a).expect("header"),
            );
        }
        h
    }

    #[test]
    fn compares_whole_tokens() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(!constant_time_eq(b"abcd", b"abc"));
        assert!(!constant_time_eq(b"", b"a"));
        assert!(constant_time_eq(b"", b""));
    }

    #[test]
    fn parses_the_bearer_scheme() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer  abc "), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearer "), None);
        assert_eq!(bearer("Bearer"), None);
    }

    #[test]
    fn missing_wrong_right_and_unconfigured() {
        let token = Secret::new("t0k");
        let e = check(&headers(None), &token, "X").expect_err("missing");
        assert_eq!(e.status, StatusCode::UNAUTHORIZED);
        assert!(e.challenge);
        let e = check(&headers(Some("Bearer nope")), &token, "X").expect_err("wrong");
        assert_eq!(e.status, StatusCode::UNAUTHORIZED);
        assert_eq!(e.message, "wrong API token");
        let e = check(&headers(Some("Basic dDBrOg==")), &token, "X").expect_err("basic");
        assert_eq!(e.status, StatusCode::UNAUTHORIZED);
        assert!(check(&headers(Some("Bearer t0k")), &token, "X").is_ok());

        let e =
            check(&headers(Some("Bearer ")), &Secret::default(), "MY_TOKEN").expect_err("disabled");
        assert_eq!(e.status, StatusCode::FORBIDDEN);
        assert!(e.message.contains("MY_TOKEN"), "{}", e.message);
        assert!(e.message.contains("http.api_token_file"), "{}", e.message);
    }
}
