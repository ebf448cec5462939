//! Who may use the console, and proof that a form came from it.
//!
//! Login: with `flyteNotify.auth` on, the console asks for one of the bearer tokens the gRPC port
//! accepts, checks it with the same `Tokens::accepts`, and keeps it in a cookie the page's
//! scripts cannot read (HttpOnly) and other sites cannot send (SameSite=Strict). The token is
//! checked again on every request, so a token taken off the list stops working here too.
//!
//! CSRF: a double-submit token. Each browser gets a random value in a cookie, and every form
//! carries the same value in a hidden field; a POST whose field does not match its cookie is
//! refused. Another site can make a browser send the cookie (not with SameSite=Strict, but older
//! browsers ignore that) yet cannot read it to fill in the field.

use axum::http::{HeaderMap, HeaderValue, header};
use rand::Rng;

use super::ConsoleOptions;

pub const TOKEN_COOKIE: &str = "flyte_notify_token";
pub const CSRF_COOKIE: &str = "flyte_notify_csrf";

/// The value of cookie `name` in the request, if sent.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// A `Set-Cookie` value for `name`, scoped to the whole console and hidden from scripts;
/// `max_age` 0 deletes it.
pub fn set_cookie(name: &str, value: &str, max_age: Option<u64>) -> HeaderValue {
    let age = max_age
        .map(|s| format!("; Max-Age={s}"))
        .unwrap_or_default();
    HeaderValue::from_str(&format!(
        "{name}={value}; Path=/; HttpOnly; SameSite=Strict{age}"
    ))
    .expect("cookie values here are ASCII without control characters")
}

/// Whether the request may see the console: always with auth off; with it on, when the token
/// cookie holds an accepted token.
pub fn logged_in(options: &ConsoleOptions, headers: &HeaderMap) -> bool {
    match &options.tokens {
        None => true,
        Some(tokens) => cookie(headers, TOKEN_COOKIE).is_some_and(|t| tokens.accepts(t)),
    }
}

/// A token as it may stand in a cookie: the cookie syntax allows no spaces, quotes, commas,
/// semicolons or backslashes, and a token with one of them cannot be one we issued to anyone
/// anyway (they are read one per line, trimmed).
pub fn cookie_safe(token: &str) -> bool {
    !token.is_empty()
        && token.len() <= 4096
        && token
            .bytes()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b'"' | b',' | b';' | b'\\'))
}

/// The browser's CSRF value, and whether it is new (and so must be set in a cookie).
pub fn csrf_value(headers: &HeaderMap) -> (String, bool) {
    match cookie(headers, CSRF_COOKIE) {
        Some(v) if v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()) => {
            (v.to_string(), false)
        }
        _ => {
            let bytes: [u8; 32] = rand::rng().random();
            (bytes.iter().map(|b| format!("{b:02x}")).collect(), true)
        }
    }
}

/// Whether a form's `csrf` field matches the browser's cookie, compared without an early exit.
pub fn csrf_ok(headers: &HeaderMap, field: &str) -> bool {
    let Some(expected) = cookie(headers, CSRF_COOKIE) else {
        return false;
    };
    expected.len() == field.len()
        && !expected.is_empty()
        && expected
            .bytes()
            .zip(field.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_cookie(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn reads_one_cookie_among_several() {
        let headers = with_cookie("a=1; flyte_notify_csrf=abc; b=2");
        assert_eq!(cookie(&headers, CSRF_COOKIE), Some("abc"));
        assert_eq!(cookie(&headers, "c"), None);
    }

    #[test]
    fn csrf_field_must_match_the_cookie() {
        let headers = with_cookie("flyte_notify_csrf=abcd");
        assert!(csrf_ok(&headers, "abcd"));
        assert!(!csrf_ok(&headers, "abce"));
        assert!(!csrf_ok(&headers, "abc"));
        assert!(!csrf_ok(&HeaderMap::new(), ""));
    }

    #[test]
    fn a_fresh_csrf_value_is_made_when_the_cookie_is_missing_or_malformed() {
        let (value, new) = csrf_value(&with_cookie("flyte_notify_csrf=short"));
        assert!(new);
        assert_eq!(value.len(), 64);
        let (again, new) = csrf_value(&with_cookie(&format!("flyte_notify_csrf={value}")));
        assert!(!new);
        assert_eq!(again, value);
    }

    #[test]
    fn tokens_that_cannot_be_cookies_are_refused() {
        assert!(cookie_safe("s3cr3t-token_1"));
        for bad in ["", "a b", "a;b", "a\"b", "a,b", "a\\b", "é"] {
            assert!(!cookie_safe(bad), "{bad:?}");
        }
    }
}
