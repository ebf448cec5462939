//! Times and errors as someone on call reads them: "3 min ago" rather than a timestamp, and what
//! a transport error usually means rather than only its text.

use chrono::{DateTime, Utc};

/// How long before (or after) `now` the instant `at` is, both in Unix milliseconds: "just now",
/// "3 min ago", "in 2 h", "5 days ago".
pub fn relative(at: i64, now: i64) -> String {
    let delta = now - at;
    let secs = delta.unsigned_abs() / 1000;
    let amount = match secs {
        0..10 => return "just now".into(),
        10..60 => format!("{secs} s"),
        60..3600 => format!("{} min", secs / 60),
        3600..86_400 => format!("{} h", secs / 3600),
        _ if secs / 86_400 == 1 => "1 day".into(),
        _ => format!("{} days", secs / 86_400),
    };
    if delta >= 0 {
        format!("{amount} ago")
    } else {
        format!("in {amount}")
    }
}

/// The exact time, in UTC, for a title attribute.
pub fn exact(at: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(at)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|| format!("{at} ms since 1970"))
}

/// A plain-words reading of a send error, when it is one of the usual ones.
pub fn explain(error: &str) -> Option<&'static str> {
    let e = error.to_ascii_lowercase();
    let has = |needle: &str| e.contains(needle);
    Some(if has("connection refused") {
        "Nothing accepted the connection: the server is down, or the address or port in the \
         config is wrong."
    } else if has("timed out") || has("timeout") || has("deadline") {
        "The other side did not answer in time: it is overloaded, or a firewall drops the \
         traffic."
    } else if has("dns") || has("failed to lookup") || has("name or service not known") {
        "The server's name could not be resolved: check the host name in the config."
    } else if has("certificate") || has("tls") || has("handshake") {
        "The secure connection could not be set up: a certificate the service does not trust, \
         or a TLS setting that does not match the server's."
    } else if has("auth") || has("535") || has("401") || has("403") || has("credentials") {
        "The server refused the credentials: a wrong or expired password, key or token."
    } else if has("429") || has("rate") {
        "The provider is limiting how fast we send; it goes through once the rate drops."
    } else if has("mailbox") || has("550") || has("recipient") || has("no such user") {
        "The mail server refused a recipient: the address does not exist or does not accept \
         mail."
    } else if has("no sender is configured") {
        "The service has no sender for this channel: configure one, then redrive."
    } else if has("status 5") || has("server error") {
        "The provider failed on its side; redrive once it is back."
    } else {
        return None;
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_times_read_like_speech() {
        let now = 1_000_000_000;
        assert_eq!(relative(now - 3_000, now), "just now");
        assert_eq!(relative(now - 42_000, now), "42 s ago");
        assert_eq!(relative(now - 180_000, now), "3 min ago");
        assert_eq!(relative(now - 2 * 3_600_000, now), "2 h ago");
        assert_eq!(relative(now - 86_400_000, now), "1 day ago");
        assert_eq!(relative(now - 5 * 86_400_000, now), "5 days ago");
        assert_eq!(relative(now + 120_000, now), "in 2 min");
    }

    #[test]
    fn exact_times_are_utc() {
        assert_eq!(exact(0), "1970-01-01 00:00:00 UTC");
    }

    #[test]
    fn usual_errors_are_explained_and_others_are_not() {
        let refused = explain("smtp: Connection refused (os error 111)").unwrap();
        assert!(refused.contains("Nothing accepted the connection"));
        assert!(
            explain("TLS handshake failed")
                .unwrap()
                .contains("certificate")
        );
        assert_eq!(explain("something odd happened"), None);
    }
}
