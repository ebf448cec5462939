//! What a webhook request may carry: its method and headers. Enqueue validates a notification's
//! with these rules and the sender applies the same ones, so what is accepted can be sent.

use reqwest::Method;
use reqwest::header::{HeaderName, HeaderValue};

pub const IDEMPOTENCY_KEY: &str = "idempotency-key";
pub const WEBHOOK_ID: &str = "webhook-id";
pub const WEBHOOK_TIMESTAMP: &str = "webhook-timestamp";
pub const WEBHOOK_SIGNATURE: &str = "webhook-signature";

/// At most this many headers per notification (or destination), each name and value at most
/// `MAX_HEADER_BYTES`: generous for any real webhook, small beside the request limits.
pub const MAX_HEADERS: usize = 32;
pub const MAX_HEADER_BYTES: usize = 8 * 1024;

/// The method a webhook's `method` names. CONNECT opens a tunnel and TRACE echoes the request
/// back: neither delivers a notification, and both are what an attacker would reach for.
pub fn method(name: &str) -> Result<Method, String> {
    match name {
        "GET" | "HEAD" | "POST" | "PUT" | "DELETE" | "OPTIONS" | "PATCH" => {
            Ok(Method::from_bytes(name.as_bytes()).expect("a standard method"))
        }
        "CONNECT" | "TRACE" => Err(format!("{name} cannot deliver a webhook")),
        other => Err(format!(
            "{} is not an HTTP method a webhook can use (GET, HEAD, POST, PUT, DELETE, \
             OPTIONS, PATCH)",
            crate::delivery::quoted(other)
        )),
    }
}

/// Why a header may not be set by a notification or destination, if it may not: the server
/// sets these itself, or the HTTP client must (framing and connection handling).
pub fn reserved(name: &str) -> Option<&'static str> {
    let name = name.to_ascii_lowercase();
    if name == IDEMPOTENCY_KEY {
        return Some("the server sets it to the delivery id");
    }
    if name.starts_with("webhook-") {
        return Some("webhook-* headers carry the server's signature (Standard Webhooks)");
    }
    let framing = [
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "upgrade",
        "te",
        "trailer",
        "expect",
    ];
    if framing.contains(&name.as_str()) || name.starts_with("proxy-") {
        return Some("the HTTP client sets it");
    }
    None
}

/// One header as it goes on the wire: a valid name that is not reserved, and a value of visible
/// ASCII, spaces and tabs (no line breaks, which would start another header).
pub fn header(name: &str, value: &str) -> Result<(HeaderName, HeaderValue), String> {
    if name.len() > MAX_HEADER_BYTES || value.len() > MAX_HEADER_BYTES {
        return Err(format!(
            "a header name or value may have at most {MAX_HEADER_BYTES} bytes"
        ));
    }
    let header_name = HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| "not a valid header name (letters, digits and !#$%&'*+-.^_`|~)".to_string())?;
    if let Some(why) = reserved(name) {
        return Err(format!("{name} cannot be set: {why}"));
    }
    // The HTTP grammar also admits bytes above 0x7f ("obs-text"), which receivers read as
    // they please: refused, like line breaks.
    let printable = value
        .bytes()
        .all(|b| b == b'\t' || (0x20..0x7f).contains(&b));
    let header_value = HeaderValue::from_str(value)
        .ok()
        .filter(|_| printable)
        .ok_or_else(|| {
            "the value may only hold visible ASCII, spaces and tabs (no line breaks)".to_string()
        })?;
    Ok((header_name, header_value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_that_deliver_and_those_that_do_not() {
        for ok in ["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"] {
            assert_eq!(method(ok).unwrap().as_str(), ok);
        }
        for bad in ["CONNECT", "TRACE", "post", "", "BREW"] {
            assert!(method(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn headers_are_checked_and_the_servers_own_are_reserved() {
        assert!(header("X-Team", "ml platform").is_ok());
        assert!(header("Content-Type", "text/plain; charset=utf-8").is_ok());
        assert!(header("Authorization", "Bearer abc").is_ok());
        for (name, value, why) in [
            ("Idempotency-Key", "x", "delivery id"),
            ("webhook-signature", "v1,x", "signature"),
            ("Webhook-Id", "x", "signature"),
            ("Host", "evil.com", "HTTP client"),
            ("Content-Length", "0", "HTTP client"),
            ("Proxy-Authorization", "x", "HTTP client"),
            ("X Bad", "x", "not a valid header name"),
            ("", "x", "not a valid header name"),
            ("X-A", "a\r\nX-Injected: 1", "no line breaks"),
            ("X-A", "é", "visible ASCII"),
        ] {
            let e = header(name, value).unwrap_err();
            assert!(e.contains(why), "{name}: {e}");
        }
        let e = header("X-A", &"a".repeat(MAX_HEADER_BYTES + 1)).unwrap_err();
        assert!(e.contains("at most"), "{e}");
    }
}
