//! What a webhook's answer means for the delivery. Any 2xx is delivered. 408, 425, 429 and 5xx
//! may pass later (Retry-After honoured). A 3xx is a failure: redirects are not followed, since
//! following one would let a receiver send us, and a signed body, somewhere the guard never
//! checked. Every other status will not change by retrying: permanent, with the start of the
//! answer so that whoever reads the dead delivery sees the receiver's own reason.

use std::time::Duration;

use reqwest::StatusCode;

use crate::channels::{SendError, rest};
/// How much of it is shown in the error.
const MAX_SHOWN_CHARS: usize = 200;

/// The start of an answer's body, on one line.
pub async fn excerpt(response: reqwest::Response) -> String {
    shown(&rest::read_bounded(response).await)
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
}
