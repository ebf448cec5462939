//! What a webhook's answer means for the delivery. Any 2xx is delivered. 408, 425, 429 and 5xx
//! may pass later (Retry-After honoured). A 3xx is a failure: redirects are not followed, since
//! following one would let a receiver send us, and a signed body, somewhere the guard never
//! checked. Every other status will not change by retrying: permanent, with the start of the
//! answer so that whoever reads the dead delivery sees the receiver's own reason.

use std::time::{Duration, SystemTime};

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, RETRY_AFTER};

use crate::channels::SendError;

/// How much of an error answer is read; the rest is left unread.
const MAX_READ: usize = 16 * 1024;
/// How much of it is shown in the error.
const MAX_SHOWN_CHARS: usize = 200;

/// Retry-After as delay-seconds or an HTTP date (a date in the past means now).
pub fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let now = chrono::DateTime::<chrono::Utc>::from(now);
    Some(
        (at.with_timezone(&chrono::Utc) - now)
            .to_std()
            .unwrap_or_default(),
    )
}

/// The start of an answer's body, on one line: at most `MAX_READ` bytes are read.
pub async fn excerpt(mut response: reqwest::Response) -> String {
    let mut body = Vec::new();
    while body.len() < MAX_READ {
        match response.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            Ok(None) | Err(_) => break,
        }
    }
    body.truncate(MAX_READ);
    shown(&String::from_utf8_lossy(&body))
}

/// `text` with line breaks and control characters as spaces (it goes into one error line),
/// cut to `MAX_SHOWN_CHARS`.
fn shown(text: &str) -> String {
    let one_line: String = text
        .trim()
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    match one_line.char_indices().nth(MAX_SHOWN_CHARS) {
        None => one_line,
        Some((cut, _)) => format!("{}…", &one_line[..cut]),
    }
}

/// The error for a non-2xx answer. `what` names the request ("webhook POST https://…") and
/// `excerpt` is the start of the answer; both must already be free of secrets.
pub fn classify(
    what: &str,
    status: StatusCode,
    retry_after: Option<Duration>,
    excerpt: &str,
) -> SendError {
    let mut message = format!("{what}: HTTP {status}");
    if status.is_redirection() {
        message
            .push_str(": redirects are not followed; point the webhook at the URL it redirects to");
    } else if !excerpt.is_empty() {
        message.push_str(": ");
        message.push_str(excerpt);
    }
    match status.as_u16() {
        408 | 425 | 429 | 500.. => SendError::Retryable {
            message,
            retry_after,
        },
        _ => SendError::permanent(message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_classified() {
        let retryable = |s: u16| {
            matches!(
                classify("w", StatusCode::from_u16(s).unwrap(), None, ""),
                SendError::Retryable { .. }
            )
        };
        for s in [408, 425, 429, 500, 502, 503, 504, 599] {
            assert!(retryable(s), "{s}");
        }
        for s in [
            300, 301, 302, 304, 307, 308, 400, 401, 403, 404, 405, 410, 413, 422,
        ] {
            assert!(!retryable(s), "{s}");
        }
        assert_eq!(
            classify(
                "webhook POST http://h/p",
                StatusCode::NOT_FOUND,
                None,
                "channel_not_found"
            ),
            SendError::permanent("webhook POST http://h/p: HTTP 404 Not Found: channel_not_found")
        );
        let e = classify(
            "w",
            StatusCode::MOVED_PERMANENTLY,
            None,
            "<html>moved</html>",
        );
        assert!(e.to_string().contains("redirects are not followed"), "{e}");
        assert_eq!(
            classify(
                "w",
                StatusCode::TOO_MANY_REQUESTS,
                Some(Duration::from_secs(2)),
                ""
            ),
            SendError::Retryable {
                message: "w: HTTP 429 Too Many Requests".into(),
                retry_after: Some(Duration::from_secs(2))
            }
        );
    }

    #[test]
    fn the_shown_answer_is_one_bounded_line() {
        assert_eq!(shown(" a\r\nb\tc \n"), "a  b c");
        let long = shown(&"é".repeat(1000));
        assert_eq!(long.chars().count(), MAX_SHOWN_CHARS + 1);
        assert!(long.ends_with('…'));
    }

    #[test]
    fn retry_after_takes_seconds_or_an_http_date() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_480);
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(RETRY_AFTER, v.parse().unwrap());
            retry_after(&h, now)
        };
        assert_eq!(with("2"), Some(Duration::from_secs(2)));
        assert_eq!(
            with("Wed, 21 Oct 2015 07:28:30 GMT"),
            Some(Duration::from_secs(30))
        );
        assert_eq!(with("Wed, 21 Oct 2015 07:00:00 GMT"), Some(Duration::ZERO));
        assert_eq!(with("soon"), None);
        assert_eq!(retry_after(&HeaderMap::new(), now), None);
    }
}
