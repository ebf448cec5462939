//! What the senders that POST JSON to a service's HTTP API (Slack, PagerDuty) do alike: one client
//! with a deadline and no redirects, Retry-After, bounded reads of error answers, errors that say
//! why without the URL, and destination keys that never hold a secret.

use std::time::{Duration, SystemTime};

use reqwest::header::{HeaderMap, RETRY_AFTER};
use sha2::{Digest, Sha256};

use super::{SendError, error_chain};

/// Enough of an error answer to show the service's reason; the rest is not read.
pub const MAX_ERROR_BODY: usize = 64 * 1024;

/// A client whose every request, connecting included, ends within `timeout`. `service` names the
/// peer in the error.
pub fn client(service: &str, timeout: Duration) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        // A redirect means a wrong URL; following it would carry a token or a routing key to
        // wherever it points.
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("flyte-notify/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("cannot set up the HTTPS client for {service}: {e}"))
}

/// Checks that `url` is an absolute http(s) URL. The error never quotes it: it may be a secret
/// (a Slack incoming webhook's URL is its credential).
pub fn check_url(url: &str) -> Result<reqwest::Url, String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("not a URL ({e})"))?;
    match parsed.scheme() {
        "http" | "https" if parsed.host().is_some() => Ok(parsed),
        "http" | "https" => Err("the URL has no host".into()),
        other => Err(format!("the URL's scheme is {other:?}, not http or https")),
    }
}

/// Why a request got no answer, with no URL in it (the caller names the peer without the secret
/// parts).
pub fn transport_error(e: reqwest::Error, timeout: Duration) -> String {
    if e.is_timeout() {
        format!("no answer within {}", humantime::format_duration(timeout))
    } else {
        error_chain(&e.without_url())
    }
}

/// `e` with its message rewritten by `f` (to name the destination, to scrub a secret), its kind
/// and Retry-After kept.
pub fn map_message(e: SendError, f: impl FnOnce(String) -> String) -> SendError {
    match e {
        SendError::Retryable {
            message,
            retry_after,
        } => SendError::Retryable {
            message: f(message),
            retry_after,
        },
        SendError::Permanent { message } => SendError::Permanent {
            message: f(message),
        },
        deferred @ SendError::Deferred { .. } => deferred,
    }
}

/// The peer's Retry-After, as delay-seconds or an HTTP date (a date in the past means now).
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?;
    parse_retry_after(value, SystemTime::now())
}

fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
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

/// The first `MAX_ERROR_BODY` bytes of an answer: a peer (or a proxy in front of it) cannot make
/// us read megabytes to build one error line.
pub async fn read_bounded(mut response: reqwest::Response) -> String {
    let mut body = Vec::new();
    while body.len() < MAX_ERROR_BODY {
        match response.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            Ok(None) | Err(_) => break,
        }
    }
    body.truncate(MAX_ERROR_BODY);
    String::from_utf8_lossy(&body).into_owned()
}

/// `text` trimmed and cut to its first `max` characters, with "…" when cut: for quoting a peer's
/// answer in an error that must stay one readable line.
pub fn excerpt(text: &str, max: usize) -> String {
    let text = text.trim();
    match text.char_indices().nth(max) {
        None => text.to_string(),
        Some((cut, _)) => format!("{}…", &text[..cut]),
    }
}

/// A rate-limit key for a destination named by secrets: `prefix` and a digest of `parts`, so
/// that two routes to the same place share a bucket, and the key can be logged.
pub fn destination_key(prefix: &str, parts: &[&str]) -> String {
    let mut digest = Sha256::new();
    for part in parts {
        // Length-prefixed, so ("ab", "c") and ("a", "bc") differ.
        digest.update((part.len() as u64).to_be_bytes());
        digest.update(part.as_bytes());
    }
    let hex: String = digest
        .finalize()
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("{prefix}:{hex}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_takes_seconds_or_an_http_date() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_480); // 2015-10-21 07:28:00 UTC
        assert_eq!(parse_retry_after("2", now), Some(Duration::from_secs(2)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn url_errors_never_quote_the_url() {
        for bad in [
            "hooks.slack.com/services/T1/B2/s3cr3t",
            "ftp://hooks.slack.com/services/T1/B2/s3cr3t",
            "https://[::1/services/T1/B2/s3cr3t",
            "data:text/plain,s3cr3t",
        ] {
            let e = check_url(bad).unwrap_err();
            assert!(!e.contains("s3cr3t"), "{e}");
        }
        assert!(check_url("https://hooks.slack.com/services/T1/B2/s3cr3t").is_ok());
    }

    #[test]
    fn destination_keys_hide_their_parts_and_tell_them_apart() {
        let a = destination_key("slack", &["xoxb-secret", "#a"]);
        assert!(a.starts_with("slack:") && !a.contains("secret"), "{a}");
        assert_eq!(a, destination_key("slack", &["xoxb-secret", "#a"]));
        assert_ne!(a, destination_key("slack", &["xoxb-secret", "#b"]));
        assert_ne!(
            destination_key("k", &["ab", "c"]),
            destination_key("k", &["a", "bc"])
        );
    }

    #[test]
    fn excerpts_cut_on_a_character() {
        assert_eq!(excerpt("  short \n", 10), "short");
        assert_eq!(excerpt("ééééé", 3), "ééé…");
    }
}
