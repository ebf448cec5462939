//! Who may use the console, and proof that a form came from it.
//!
//! Login: with `flyteNotify.auth` on, the console asks for one of the bearer tokens the gRPC port
//! accepts (or gets one from the issuer, see `issuer_login`), checks it with the same
//! `Authenticator` as a gRPC call, and keeps it in a cookie the page's scripts cannot read
//! (HttpOnly) and other sites cannot send (SameSite=Strict). The token is checked again on every
//! request, so a token taken off the list, or a JWT past its `exp`, stops working here too; and
//! the caller it names decides, by the same permission rules, what each page shows and allows.
//!
//! CSRF: a double-submit token. Each browser gets a random value in a cookie, and every form
//! carries the same value in a hidden field; a POST whose field does not match its cookie is
//! refused. Another site can make a browser send the cookie (not with SameSite=Strict, but older
//! browsers ignore that) yet cannot read it to fill in the field.

use axum::http::{HeaderMap, HeaderValue, header};
use rand::Rng;

use super::ConsoleOptions;
use crate::authz::{self, Action, Caller, Scope, Target};
use crate::error::Error;

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

/// A `Set-Cookie` value for `name`, scoped to the whole console, hidden from scripts and sent
/// only by our own pages; `max_age` 0 deletes it. `Secure` when the console is served over TLS.
pub fn set_cookie(
    options: &ConsoleOptions,
    name: &str,
    value: &str,
    max_age: Option<u64>,
) -> HeaderValue {
    cookie_header(options, name, value, "/", "Strict", max_age)
}

/// The `Set-Cookie` value with every attribute spelled out.
pub fn cookie_header(
    options: &ConsoleOptions,
    name: &str,
    value: &str,
    path: &str,
    same_site: &str,
    max_age: Option<u64>,
) -> HeaderValue {
    let age = max_age
        .map(|s| format!("; Max-Age={s}"))
        .unwrap_or_default();
    let secure = if options.secure_cookies {
        "; Secure"
    } else {
        ""
    };
    HeaderValue::from_str(&format!(
        "{name}={value}; Path={path}; HttpOnly; SameSite={same_site}{secure}{age}"
    ))
    .expect("cookie values here are ASCII without control characters")
}

/// Who is looking at the console: the caller its token cookie names (None with auth off, when
/// anyone who reaches the console may do everything, as on the gRPC port).
#[derive(Clone, Default)]
pub struct Viewer {
    pub caller: Option<Caller>,
}

impl Viewer {
    /// Where the viewer may read: PERMISSION_DENIED when nowhere. Logged and counted like a
    /// gRPC call's decision.
    pub fn read(&self) -> Result<Scope, Error> {
        authz::scope(self.caller.as_ref(), Action::Read)
    }

    /// Where the viewer may change deliveries named by id (redrive, discard), and where it may
    /// see them, as the core's `ActScope` wants them: as on the gRPC port, one it may see but not
    /// change is refused naming its project, one it may not see is "not found".
    pub fn operate_by_ids(&self) -> (Scope, Scope) {
        let operate = authz::scope(self.caller.as_ref(), Action::Operate)
            .unwrap_or(Scope::Within(Vec::new()));
        let read = match &operate {
            Scope::All => Scope::All,
            Scope::Within(_) => self.read().unwrap_or_else(|_| operate.clone()),
        };
        (operate, read)
    }

    /// Whether to offer redrive and discard on a delivery of this project: not a decision (the
    /// action is checked when it is taken), so neither logged nor counted.
    pub fn may_operate_in(&self, project: &str, domain: &str) -> bool {
        authz::allowed_quietly(
            self.caller.as_ref(),
            Action::Operate,
            Target::Project { project, domain },
        )
    }

    /// Whether to offer a test send: like SendTest on the gRPC port, for whoever operates
    /// everywhere (a test goes to any recipient).
    pub fn may_operate_everywhere(&self) -> bool {
        authz::allowed_quietly(self.caller.as_ref(), Action::Operate, Target::Everywhere)
    }

    /// A test send: checked, logged and counted like SendTest's.
    pub fn send_test(&self) -> Result<(), Error> {
        authz::check(self.caller.as_ref(), Action::Operate, Target::Everywhere)
    }

    /// Who is logged in, for the frame: never the token.
    pub fn name(&self) -> Option<String> {
        self.caller.as_ref().map(|c| c.identity.to_string())
    }
}

/// The viewer this request's token cookie names, or None when it holds no accepted token (then
/// the console asks to log in). With auth off, everyone is a viewer who may do everything.
pub async fn viewer(options: &ConsoleOptions, headers: &HeaderMap) -> Option<Viewer> {
    let Some(auth) = &options.auth else {
        return Some(Viewer::default());
    };
    let token = cookie(headers, TOKEN_COOKIE)?;
    match auth.authenticate(token).await {
        Ok(caller) => Some(Viewer {
            caller: Some(caller),
        }),
        Err(refused) => {
            tracing::debug!(
                reason = refused.message(),
                "the console's token cookie is refused"
            );
            None
        }
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
